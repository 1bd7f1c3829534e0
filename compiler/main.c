/* main.c: the driver. Reads the command line, then runs the pipeline as a
 * straight list of stages, stopping after the one the user asked to see:
 *   read -> parse -> shape -> backward -> [weights] -> loops -> llvm -> link
 * An ONNX model enters the same pipeline as a graph:
 *   read -> import (onnx.c) -> backward -> [weights] -> loops -> llvm -> link
 */
#include "cnnc.h"

#include <errno.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef enum { EMIT_NONE, EMIT_AST, EMIT_GRAPH, EMIT_DOT, EMIT_BACKWARD, EMIT_LOOPS, EMIT_LLVM, EMIT_ASM,
               EMIT_CNN, EMIT_WEIGHTS } Emit;
typedef enum { MAKE_EXE, MAKE_LIB, MAKE_OBJ } Make;

typedef struct {
    const char *input, *output;
    const char *weights;          /* --weights: built into the output (weights.c) */
    bool check, summary, verbose, no_fuse;
    bool tune, retune, tune_fault;
    double tune_budget;           /* seconds */
    const char *tune_cache;       /* NULL: the default (tune_default_cache) */
    const char *loss;             /* --loss: an imported model's loss, or NULL */
    bool unbatched;               /* --unbatched: an ONNX model's input is one example */
    Emit emit;
    Make make;
    CodegenOptions cg;
} Options;

static const char usage[] =
    "usage: cnnc FILE.cnn [options]\n"
    "       cnnc MODEL.onnx [options]\n"
    "\n"
    "  -o PATH            the output (default: the network's name, libNAME.a, NAME.o)\n"
    "  --lib              a static library libNAME.a and its header NAME.h\n"
    "  -c                 the object file alone (with NAME.h)\n"
    "  --weights FILE     build the weights of a safetensors file into the output:\n"
    "                     NAME_new() returns the network holding them, and the\n"
    "                     program's predict, eval and forward need no --weights\n"
    "                     (every parameter must be in FILE, F32, of its shape)\n"
    "  --check            parse and shape-check only\n"
    "  --summary          the layer table: shapes, parameters, FLOPs\n"
    "  --emit=KIND        a stage's output: ast, graph, dot, backward, loops, llvm, asm;\n"
    "                     cnn: the network as a cnnc program (built-in weights in\n"
    "                     STEM.safetensors and class names in STEM.classes.txt\n"
    "                     beside -o STEM.cnn)\n"
    "                     weights: the built-in weights as safetensors (-o FILE)\n"
    "  --loss KIND        an ONNX model's loss for `./NAME train`:\n"
    "                     softmax_cross_entropy (on the scores) or mse\n"
    "  --unbatched        an ONNX model whose input has no batch dimension: the\n"
    "                     whole input tensor is one example (the program batches)\n"
    "  -O0 .. -O3         optimization level (default -O2)\n"
    "  --no-fuse          keep every operator in a loop nest of its own (for\n"
    "                     debugging, and to measure what fusion brings)\n"
    "  --no-share         emit every loop nest inline in its kernel instead of\n"
    "                     sharing one function between nests that differ only in\n"
    "                     sizes (to measure what sharing brings)\n"
    "  --target-cpu=CPU   native (default), x86-64-v3, znver4, ...\n"
    "  --tune             measure each GEMM's register tiles on this machine and\n"
    "                     keep the fastest, saved in the tuning cache; a kernel\n"
    "                     the cache already has for this CPU is not measured\n"
    "                     again (one source and one cache give one binary)\n"
    "  --retune           --tune measuring every kernel, cached or not, and\n"
    "                     replacing their entries in the cache\n"
    "  --tune-budget T    the time --tune may take: 60s (default), 2m, 500ms\n"
    "  --tune-cache PATH  the tuning cache (default $XDG_CACHE_HOME/cnnc/tune.json);\n"
    "                     every native compile uses the tiles it holds\n"
    "  --sanitize         instrument generated code with AddressSanitizer and link\n"
    "                     the sanitized runtime (for testing)\n"
    "  --profile          an executable that times each layer: its `bench` prints,\n"
    "                     per measure, the layers' share of the time (docs/program.md)\n"
    "  --mpi              an executable whose `train` runs data-parallel over Open\n"
    "                     MPI (mpirun -np N ./NAME train ...; see docs/distributed.md)\n"
    "  -v                 report the time of each compiler stage, and per GEMM\n"
    "                     kernel whether --tune measured it or took the cache's\n"
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

static const char *const emit_names[] = {"ast", "graph", "dot", "backward", "loops", "llvm", "asm", "cnn", "weights", NULL};

static Emit emit_kind(const char *s)
{
    for (int i = 0; emit_names[i]; i++)
        if (strcmp(s, emit_names[i]) == 0)
            return (Emit)(i + 1);
    const char *near = closest_word(s, emit_names);
    fprintf(stderr, "cnnc: unknown --emit kind '%s'%s%s%s; kinds: ast, graph, dot, backward, loops, llvm, asm, cnn, weights\n", s,
            near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "");
    exit(EXIT_USAGE);
}

/* x86-64 CPUs LLVM knows (LLVM aborts on a name it does not). */
static const char *const cpus[] = {
    "native", "x86-64", "x86-64-v2", "x86-64-v3", "x86-64-v4", "haswell", "broadwell", "skylake",
    "skylake-avx512", "cascadelake", "cooperlake", "icelake-client", "icelake-server", "tigerlake",
    "sapphirerapids", "alderlake", "raptorlake", "meteorlake", "graniterapids", "znver1", "znver2",
    "znver3", "znver4", "znver5", NULL,
};

static const char *target_cpu(const char *name)
{
    for (int i = 0; cpus[i]; i++)
        if (strcmp(name, cpus[i]) == 0)
            return name;
    const char *near = closest_word(name, cpus);
    fprintf(stderr, "cnnc: unknown --target-cpu '%s'%s%s%s\ncnnc: CPUs: native, x86-64, x86-64-v2..v4, "
            "haswell, skylake-avx512, icelake-server, sapphirerapids, znver1..znver5, ...\n", name,
            near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "");
    exit(EXIT_USAGE);
}

/* --tune-budget: a duration, 60s, 2m or 500ms (seconds without a unit) */
static double tune_budget(const char *t)
{
    char *end;
    double v = strtod(t, &end), scale = 1;
    if (strcmp(end, "ms") == 0)
        scale = 1e-3;
    else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
        scale = 60;
    else if (*end && strcmp(end, "s") != 0)
        end = NULL;
    if (end == t || !end || !(v > 0) || v * scale > 86400)
        bad_usage("--tune-budget needs a duration from 1ms to 24h, such as 60s, 2m or 500ms (got '%s')", t);
    return v * scale;
}

static const char *loss_kind(const char *s)
{
    if (strcmp(s, "softmax_cross_entropy") != 0 && strcmp(s, "mse") != 0)
        bad_usage("--loss takes softmax_cross_entropy or mse, not '%s'", s);
    return s;
}

static bool flag(Options *o, const char *a)
{
    if (strcmp(a, "--check") == 0)           o->check = true;
    else if (strcmp(a, "--summary") == 0)    o->summary = true;
    else if (strcmp(a, "-v") == 0)           o->verbose = o->cg.verbose = true;
    else if (strcmp(a, "--lib") == 0)        o->make = MAKE_LIB;
    else if (strcmp(a, "-c") == 0)           o->make = MAKE_OBJ;
    else if (strcmp(a, "--sanitize") == 0)   o->cg.sanitize = true;
    else if (strcmp(a, "--profile") == 0)    o->cg.profile = true;
    else if (strcmp(a, "--mpi") == 0)        o->cg.mpi = true;
    else if (strcmp(a, "--no-fuse") == 0)    o->no_fuse = true;
    else if (strcmp(a, "--unbatched") == 0)  o->unbatched = true;
    else if (strcmp(a, "--no-share") == 0)   o->cg.no_share = true;
    else if (strcmp(a, "--tune") == 0)       o->tune = true;
    else if (strcmp(a, "--retune") == 0)     o->tune = o->retune = true;
    else if (strcmp(a, "--tune-fault") == 0) o->tune_fault = true;     /* testing: see TuneOptions */
    else if (strncmp(a, "--tune-budget=", 14) == 0) o->tune_budget = tune_budget(a + 14);
    else if (strncmp(a, "--tune-cache=", 13) == 0 && a[13]) o->tune_cache = a + 13;
    else if (strcmp(a, "--tune-cache=") == 0) bad_usage("%s", "--tune-cache needs a file name");
    else if (strncmp(a, "--weights=", 10) == 0 && a[10]) o->weights = a + 10;
    else if (strcmp(a, "--weights=") == 0)   bad_usage("%s", "--weights needs a file name");
    else if (strncmp(a, "--emit=", 7) == 0)  o->emit = emit_kind(a + 7);
    else if (strncmp(a, "--loss=", 7) == 0)  o->loss = loss_kind(a + 7);
    else if (strncmp(a, "--target-cpu=", 13) == 0) o->cg.cpu = target_cpu(a + 13);
    else if (a[0] == '-' && a[1] == 'O' && a[2] >= '0' && a[2] <= '3' && !a[3]) o->cg.opt_level = a[2] - '0';
    else return false;
    return true;
}

static Options parse_options(int argc, char **argv)
{
    Options o = {.cg = {.opt_level = 2}};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            exit(EXIT_OK);
        } else if (strcmp(a, "--version") == 0) {
            printf("cnnc %s\n", CNNC_VERSION);
            exit(EXIT_OK);
        } else if (strcmp(a, "-o") == 0) {
            if (++i == argc)
                bad_usage("%s needs a file name", a);
            o.output = argv[i];
        } else if (strcmp(a, "--loss") == 0) {
            if (++i == argc)
                bad_usage("%s needs a value", a);
            o.loss = loss_kind(argv[i]);
        } else if (strcmp(a, "--weights") == 0) {
            if (++i == argc || !argv[i][0])
                bad_usage("%s needs a file name", a);
            o.weights = argv[i];
        } else if (strcmp(a, "--tune-budget") == 0 || strcmp(a, "--tune-cache") == 0) {
            if (++i == argc)                      /* also spelled with '=' (flag()) */
                bad_usage("%s needs a value", a);
            if (a[7] == 'b')
                o.tune_budget = tune_budget(argv[i]);
            else if (argv[i][0])
                o.tune_cache = argv[i];
            else
                bad_usage("%s", "--tune-cache needs a file name");
        } else if (flag(&o, a)) {
            continue;
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
    if (o.tune && o.cg.cpu && strcmp(o.cg.cpu, "native") != 0)
        bad_usage(o.retune ? "--retune measures on this machine, so it needs the native target, not --target-cpu=%s"
                           : "--tune measures on this machine, so it needs the native target, not --target-cpu=%s",
                  o.cg.cpu);
    if (!o.tune_budget)
        o.tune_budget = 60;
    if (o.emit == EMIT_WEIGHTS && (!o.output || strcmp(o.output, "-") == 0))
        bad_usage("%s", "--emit=weights writes a safetensors file: give -o FILE.safetensors");
    if (o.cg.mpi && o.make != MAKE_EXE)
        bad_usage("%s", "--mpi builds an executable; a library's program links MPI itself (see docs/c-api.md)");
    if (o.cg.profile && o.make != MAKE_EXE)
        bad_usage("%s", "--profile builds an executable, whose bench prints the profile; a library has no way to show it");
    gemm_target(cpu_has_avx512(o.cg.cpu));
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

/* The GEMMs' register tiles: from the tuning cache where it has them (its
 * entries are this machine's: not for another --target-cpu), else measured
 * with --tune (and saved), else the defaults. With --retune all are measured. */
static Tuning *tune(const Options *o, Lowered *l)
{
    Tuning *t = tune_collect(l);
    bool native = !o->cg.cpu || strcmp(o->cg.cpu, "native") == 0;
    const char *cache = !native ? NULL : o->tune_cache ? o->tune_cache : tune_default_cache();
    if (cache)
        tune_use_cache(t, cache);
    if (o->tune) {
        TuneOptions opt = {.budget_s = o->tune_budget, .verbose = o->verbose, .fault = o->tune_fault,
                           .retune = o->retune};
        double spent = tune_search(t, &opt);
        if (o->verbose)
            tune_report(stderr, t, spent, o->tune_budget);
        bool save = cache && tune_measured(t);   /* nothing measured: the file stays as it is */
        if (save)
            tune_save_cache(t, cache);
        if (o->verbose && cache)
            fprintf(stderr, "cnnc: tuning cache '%s': %s\n", cache,
                    save ? arena_printf("%d kernels measured, saved", tune_measured(t)) : "nothing measured, not rewritten");
    } else if (o->verbose) {
        tune_report(stderr, t, 0, 0);
    }
    tune_apply(t);
    return t;
}

/* --summary: the layer table, then the memory the planned kernels take */
static int print_summary(const Options *o, Graph *g, const Backward *bw)
{
    FILE *out = open_output(o);
    summary_print(out, g);
    Lowered *l = loops_lower(g, bw, !o->no_fuse);
    if (!o->no_fuse)
        fuse_loops(l);
    plan_memory(l);
    summary_memory(out, l);
    tune_summary(out, tune(o, l));
    return finish(out);
}

/* -v: the time of each stage */
static double clock_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static double stage_start;
static void stage_done(const Options *o, const char *stage)
{
    double now = clock_ms();
    if (o->verbose)
        fprintf(stderr, "cnnc: %-8s %8.1f ms\n", stage, now - stage_start);
    stage_start = now;
}

/* The default output's name, and where the header goes. */
static const char *output_path(const Options *o, const Graph *g)
{
    if (o->output)
        return o->output;
    return o->make == MAKE_EXE ? g->name : o->make == MAKE_LIB ? arena_printf("lib%s.a", g->name)
                                                               : arena_printf("%s.o", g->name);
}

static const char *header_path(const char *out, const Graph *g)
{
    char *copy = arena_strdup(out);
    return arena_printf("%s/%s.h", dirname(copy), g->name);
}

/* The object a library or executable is linked from: cnnc-NAME.o in a
 * folder of its own beside the output. Its name becomes the library's
 * member's, so it holds no process id or random part: two builds of one
 * source are the same bytes. NULL (said why) when the folder cannot be made. */
static const char *temp_object(const char *out, const Graph *g, char **dir)
{
    *dir = arena_printf("%s.tmpXXXXXX", out);
    if (!mkdtemp(*dir)) {
        fprintf(stderr, "cnnc: cannot make a temporary folder beside '%s': %s\n", out, strerror(errno));
        return NULL;
    }
    return arena_printf("%s/cnnc-%s.o", *dir, g->name);
}

/* Writes the object, then links it as asked. */
static int build(const Options *o, const Lowered *l)
{
    const Graph *g = l->g;
    const char *out = output_path(o, g);
    char *dir = NULL;
    const char *obj = o->make == MAKE_OBJ ? out : temp_object(out, g, &dir);
    if (!obj)
        return EXIT_USER;
    CodegenOptions cg = o->cg;
    cg.executable = o->make == MAKE_EXE;
    bool ok = llvm_emit(l, &cg, OUT_OBJECT, obj);
    stage_done(o, "llvm");
    if (ok && o->make != MAKE_EXE)
        ok = link_header(g, header_path(out, g));
    if (ok && o->make == MAKE_EXE)
        ok = link_executable(obj, out, cg.sanitize, cg.mpi);
    else if (ok && o->make == MAKE_LIB)
        ok = link_library(obj, out, cg.sanitize);
    if (o->make != MAKE_OBJ)
        unlink(obj), rmdir(dir);
    stage_done(o, "link");
    return ok ? EXIT_OK : EXIT_USER;
}

/* An ONNX model: read -> import, and --loss. NULL after errors. */
static Graph *import(const Options *o)
{
    if (o->emit == EMIT_AST)
        bad_usage("--emit=ast shows a .cnn program's syntax; '%s' is an ONNX model (try --emit=graph)", o->input);
    static Source src;
    src = (Source){o->input, "", 0};
    diag_begin(&src, stderr);
    Graph *g = onnx_import(o->input, o->unbatched);
    stage_done(o, "import");
    if (g && o->loss && !onnx_loss(g, o->loss))
        return NULL;
    return g;
}

/* A .cnn program: read -> parse -> shape. NULL after errors, or after
 * --emit=ast (*rc says which). */
static Graph *compile_source(const Options *o, int *rc)
{
    *rc = EXIT_USER;
    if (o->loss)
        bad_usage("--loss is for ONNX models; '%s' declares its own loss (`loss = ...`)", o->input);
    if (o->unbatched)
        bad_usage("--unbatched is for ONNX models; '%s' is a cnnc program, whose input is one example", o->input);
    Source *src = read_source(o->input);
    if (!src)
        return NULL;
    diag_begin(src, stderr);
    if (!utf8_check(src))
        return NULL;

    Program *prog = parse_program(src);
    stage_done(o, "parse");
    if (diag_error_count())
        return NULL;
    if (o->emit == EMIT_AST) {
        FILE *out = open_output(o);
        ast_print(out, prog);
        *rc = finish(out);
        return NULL;
    }
    Graph *g = shape_check(prog);
    stage_done(o, "shape");
    return g;
}

int main(int argc, char **argv)
{
    Options o = parse_options(argc, argv);
    stage_start = clock_ms();
    double t0 = stage_start;
    int rc = EXIT_USER;
    Graph *g = onnx_file(o.input) ? import(&o) : compile_source(&o, &rc);
    if (!g)
        return rc;
    if (o.emit == EMIT_GRAPH || o.emit == EMIT_DOT) {
        FILE *out = open_output(&o);
        if (o.emit == EMIT_GRAPH)
            graph_print(out, g);
        else
            graph_dot(out, g);
        return finish(out);
    }

    Backward *bw = g->has_loss && g->nloss ? backward_derive(g) : NULL;
    stage_done(&o, "backward");
    if (o.weights) {
        if (!weights_attach(g, o.weights))
            return EXIT_USER;
        stage_done(&o, "weights");
    }
    if (o.emit == EMIT_WEIGHTS)
        return weights_write(g, o.output) ? EXIT_OK : EXIT_USER;
    if (o.emit == EMIT_CNN)
        return unparse_write(g, o.output) ? EXIT_OK : EXIT_USER;
    if (o.check)
        return EXIT_OK;
    if (o.summary)
        return print_summary(&o, g, bw);
    if (o.emit == EMIT_BACKWARD) {
        FILE *out = open_output(&o);
        if (bw)
            backward_print(out, g, bw);
        else
            fprintf(out, "# network %s has no loss, so no backward pass\n", g->name);
        return finish(out);
    }

    Lowered *l = loops_lower(g, bw, !o.no_fuse);
    stage_done(&o, "loops");
    if (!o.no_fuse) {
        fuse_loops(l);
        stage_done(&o, "fuse");
    }
    plan_memory(l);
    stage_done(&o, "plan");
    tune(&o, l);
    stage_done(&o, "tune");
    if (o.emit == EMIT_LOOPS) {
        FILE *out = open_output(&o);
        loops_print(out, l);
        return finish(out);
    }
    if (o.emit == EMIT_LLVM || o.emit == EMIT_ASM) {
        CodegenOptions cg = o.cg;
        cg.executable = false;
        return llvm_emit(l, &cg, o.emit == EMIT_LLVM ? OUT_LLVM : OUT_ASM, o.output) ? EXIT_OK : EXIT_USER;
    }
    rc = build(&o, l);
    if (o.verbose)
        fprintf(stderr, "cnnc: %-8s %8.1f ms\n", "total", clock_ms() - t0);
    return rc;
}
