/* unit.h: helpers shared by the Criterion unit tests of the front end.
 *
 * Every test parses a program held in memory; diagnostics go to a memory stream
 * so a test can read them back. The fixture releases the arena after each test.
 */
#ifndef UNIT_H
#define UNIT_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnnc.h"

static char *diag_buf;
static size_t diag_len;
static FILE *diag_out;
static Source unit_src;

/* Starts diagnostics for `text`, named t.cnn (or `path`), into a memory stream. */
static inline const Source *unit_source_named(const char *path, const char *text)
{
    unit_src = (Source){path, text, strlen(text)};
    if (diag_out)
        fclose(diag_out);
    free(diag_buf);
    diag_buf = NULL, diag_len = 0;
    diag_out = open_memstream(&diag_buf, &diag_len);
    cr_assert_not_null(diag_out);
    diag_begin(&unit_src, diag_out);
    return &unit_src;
}

static inline const Source *unit_source(const char *text)
{
    return unit_source_named("t.cnn", text);
}

/* Everything reported so far. */
static inline const char *diags(void)
{
    fflush(diag_out);
    return diag_buf ? diag_buf : "";
}

static inline Program *parse(const char *text)
{
    return parse_program(unit_source(text));
}

/* Parses and shape-checks; NULL after errors. */
static inline Graph *check(const char *text)
{
    Program *p = parse(text);
    if (diag_error_count())
        return NULL;
    return shape_check(p);
}

/* Parses and shape-checks a program that must be valid. */
static inline Graph *check_ok(const char *text)
{
    Graph *g = check(text);
    cr_assert_not_null(g, "the program was rejected:\n%s\n%s", text, diags());
    cr_assert_eq(diag_error_count(), 0);
    return g;
}

/* The statement's --emit=ast line without its "line:col " prefix. */
static inline char *stmt_text(const Program *p, int index)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ast_print(f, p);
    fclose(f);
    char *line = buf;
    for (int i = 0; i < index && line; i++) {
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    cr_assert(line && *line, "no statement %d in:\n%s", index, buf);
    char *end = strchr(line, '\n');
    if (end)
        *end = 0;
    char *text = strchr(line, ' ');
    text = arena_strdup(text ? text + 1 : line);
    free(buf);
    return text;
}

static inline const Stmt *stmt_at(const Program *p, int index)
{
    const Stmt *s = p->stmts;
    for (int i = 0; i < index && s; i++)
        s = s->next;
    cr_assert_not_null(s, "no statement %d", index);
    return s;
}

static inline int param_index(const Graph *g, const char *name)
{
    for (int i = 0; i < g->nparams; i++)
        if (strcmp(g->params[i].name, name) == 0)
            return i;
    return -1;
}

static inline const Param *param_named(const Graph *g, const char *name)
{
    int i = param_index(g, name);
    cr_assert(i >= 0, "no parameter '%s'", name);
    return &g->params[i];
}

static inline void assert_shape(Shape s, Shape want)
{
    cr_assert(shape_eq(s, want), "shape %s, expected %s", shape_str(s), shape_str(want));
}

/* The first node of kind `op`, or NULL. */
static inline const Node *first_node(const Graph *g, OpKind op)
{
    for (int i = 0; i < g->nodes.n; i++) {
        const Node *n = g->nodes.at[i];
        if (n->op == op)
            return n;
    }
    return NULL;
}

static inline int count_nodes(const Graph *g, OpKind op)
{
    int k = 0;
    for (int i = 0; i < g->nodes.n; i++)
        k += ((const Node *)g->nodes.at[i])->op == op;
    return k;
}

static inline void unit_teardown(void)
{
    if (diag_out)
        fclose(diag_out);
    diag_out = NULL;
    free(diag_buf);
    diag_buf = NULL;
    arena_release();
}

#endif
