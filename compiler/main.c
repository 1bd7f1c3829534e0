/* main.c: the driver. Reads the command line, then runs the pipeline as a
 * straight list of stages, stopping after the one the user asked to see. */
#include "cnnc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef enum { EMIT_NONE, EMIT_AST, EMIT_GRAPH, EMIT_DOT } Emit;

typedef struct {
    const char *input, *output;
    bool check, summary, verbose;
    Emit emit;
} Options;

static const char usage[] =
    "usage: cnnc FILE.cnn [options]\n"
    "\n"
    "  --check            parse and shape-check only\n"
    "  --summary          print the layer table: shapes, parameters, FLOPs\n"
    "  --emit=KIND        print a stage's IR: ast, graph, dot\n"
    "  -o PATH            write the output to PATH (default: stdout for --emit)\n"
    "  -v                 report the time of each compiler stage\n"
    "  --version          print the version\n"
    "  --help             print this help\n"
    "\n"
    "Exit status: 0 success, 1 an error in the program or its files,\n"
    "2 a bad command line, 3 an internal compiler error.\n";

static _Noreturn void bad_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "cnnc: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'cnnc --help'.\n");
    exit(EXIT_USAGE);
}

static Emit emit_kind(const char *s)
{
    static const char *const kinds[] = {"ast", "graph", "dot", NULL};
    if (strcmp(s, "ast") == 0) return EMIT_AST;
    if (strcmp(s, "graph") == 0) return EMIT_GRAPH;
    if (strcmp(s, "dot") == 0) return EMIT_DOT;
    const char *near = closest_word(s, kinds);
    fprintf(stderr, "cnnc: unknown --emit kind '%s'%s%s%s; kinds: ast, graph, dot\n", s,
            near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "");
    exit(EXIT_USAGE);
}

static Options parse_options(int argc, char **argv)
{
    Options o = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            exit(EXIT_OK);
        } else if (strcmp(a, "--version") == 0) {
            printf("cnnc %s\n", CNNC_VERSION);
            exit(EXIT_OK);
        } else if (strcmp(a, "--check") == 0) {
            o.check = true;
        } else if (strcmp(a, "--summary") == 0) {
            o.summary = true;
        } else if (strcmp(a, "-v") == 0) {
            o.verbose = true;
        } else if (strncmp(a, "--emit=", 7) == 0) {
            o.emit = emit_kind(a + 7);
        } else if (strcmp(a, "-o") == 0) {
            if (++i == argc)
                bad_usage("%s needs a file name", a);
            o.output = argv[i];
        } else if (a[0] == '-' && a[1]) {
            bad_usage("unknown option '%s'", a);
        } else if (o.input) {
            bad_usage("more than one input file ('%s')", a);
        } else {
            o.input = a;
        }
    }
    if (!o.input)
        bad_usage("%s", "no input file");
    return o;
}

#define MAX_SOURCE (64 << 20)

/* Reads the whole file; NULL with a message on failure. */
static Source *read_source(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cnnc: cannot open '%s': %s\n", path, strerror(errno));
        return NULL;
    }
    Source *s = arena_alloc(sizeof *s);
    s->path = path;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap && cap < MAX_SOURCE) {
            cap *= 2;
            char *grown = realloc(buf, cap + 1);
            if (!grown)
                free(buf);
            buf = grown;
        } else if (n == cap)
            break;
    }
    bool err = ferror(f) || !buf;
    fclose(f);
    if (err || n >= MAX_SOURCE) {
        fprintf(stderr, "cnnc: cannot read '%s': %s\n", path, err ? strerror(errno) : "larger than 64 MiB");
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    s->text = arena_strndup(buf, n);
    s->size = n;
    free(buf);
    return s;
}

static FILE *open_output(const Options *o)
{
    if (!o->output || strcmp(o->output, "-") == 0)
        return stdout;
    FILE *f = fopen(o->output, "w");
    if (!f) {
        fprintf(stderr, "cnnc: cannot write '%s': %s\n", o->output, strerror(errno));
        exit(EXIT_USER);
    }
    return f;
}

static int finish(FILE *out)
{
    if (out != stdout && fclose(out) != 0) {
        perror("cnnc: writing the output");
        return EXIT_USER;
    }
    return EXIT_OK;
}

int main(int argc, char **argv)
{
    Options o = parse_options(argc, argv);
    Source *src = read_source(o.input);
    if (!src)
        return EXIT_USER;
    diag_begin(src, stderr);
    if (!utf8_check(src))
        return EXIT_USER;

    Program *prog = parse_program(src);
    if (diag_error_count())
        return EXIT_USER;
    if (o.emit == EMIT_AST) {
        FILE *out = open_output(&o);
        ast_print(out, prog);
        return finish(out);
    }

    Graph *g = shape_check(prog);
    if (!g)
        return EXIT_USER;
    if (o.emit == EMIT_GRAPH || o.emit == EMIT_DOT || o.summary) {
        FILE *out = open_output(&o);
        if (o.summary)
            summary_print(out, g);
        else if (o.emit == EMIT_GRAPH)
            graph_print(out, g);
        else
            graph_dot(out, g);
        return finish(out);
    }
    if (o.check)
        return EXIT_OK;
    fprintf(stderr, "cnnc: code generation is not available in this build; use --check, --summary or --emit\n");
    return EXIT_USER;
}
