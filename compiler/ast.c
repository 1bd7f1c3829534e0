/* ast.c: syntax tree constructors and the printer behind --emit=ast. */
#include "cnnc.h"

Ast *ast_new(AstKind kind, Loc loc)
{
    Ast *e = arena_alloc(sizeof *e);
    e->kind = kind, e->loc = loc;
    return e;
}

static void print_args(FILE *out, const Arg *args, int n);

/* Prints an expression in prefix form: (op a b), (call name args...). */
static void print_expr(FILE *out, const Ast *e)
{
    if (!e) {
        fputs("<missing>", out);
        return;
    }
    switch (e->kind) {
    case A_NUM:   fprintf(out, e->is_int ? "%.0f" : "%g", e->num); break;
    case A_SIZE:
        if (e->deep)
            fprintf(out, "%dx", e->d);
        fprintf(out, "%dx%d", e->h, e->w);
        break;
    case A_STR:   fprintf(out, "\"%s\"", e->str); break;
    case A_NAME:  fputs(e->str, out); break;
    case A_HOLE:  fputs("_", out); break;
    case A_NEG:   fputs("(neg ", out); print_expr(out, e->a); fputc(')', out); break;
    case A_BIN:
    case A_PIPE:
        fprintf(out, "(%s ", e->kind == A_PIPE ? "->" : (char[]){(char)e->op, 0});
        print_expr(out, e->a);
        fputc(' ', out);
        print_expr(out, e->b);
        fputc(')', out);
        break;
    case A_CALL:
        fprintf(out, "(call %s", e->str);
        print_args(out, e->args, e->nargs);
        fputc(')', out);
        break;
    case A_SHAPE:
        fputc('[', out);
        for (int i = 0; i < e->nargs; i++)
            fprintf(out, i ? ", %.0f" : "%.0f", e->args[i].val->num);
        fputc(']', out);
        break;
    }
}

static void print_args(FILE *out, const Arg *args, int n)
{
    for (int i = 0; i < n; i++) {
        fputc(' ', out);
        if (args[i].key)
            fprintf(out, "%s=", args[i].key);
        print_expr(out, args[i].val);
    }
}

static const char *const stmt_names[] = {
    [S_NETWORK] = "network", [S_INPUT] = "input", [S_LABELS] = "labels",
    [S_TARGET] = "target", [S_PARAM] = "param", [S_OUTPUT] = "output",
    [S_BIND] = "bind", [S_PIPE] = "pipe", [S_BLOCK] = "block", [S_LOSS] = "loss",
    [S_TRAIN] = "train", [S_DATA] = "data",
};

static void print_stmt(FILE *out, const Stmt *s)
{
    fprintf(out, "%d:%d %s", s->loc.line, s->loc.col, stmt_names[s->kind]);
    if (s->name)
        fprintf(out, " %s", s->name);
    if (s->kind == S_BLOCK) {
        fputc('(', out);
        for (int i = 0; i < s->nparams; i++)
            fprintf(out, i ? ", %s" : "%s", s->params[i]);
        fputc(')', out);
    }
    if (s->shape) {
        fputs(" : ", out);
        print_expr(out, s->shape);
    }
    if (s->expr) {
        fputs(s->kind == S_LABELS ? " : " : " = ", out);
        print_expr(out, s->expr);
    }
    if (s->kind == S_TRAIN || s->kind == S_DATA) {
        fputs(" {", out);
        print_args(out, s->args, s->nargs);
        fputs(" }", out);
    }
    fputc('\n', out);
}

void ast_print(FILE *out, const Program *p)
{
    for (const Stmt *s = p->stmts; s; s = s->next)
        print_stmt(out, s);
}
