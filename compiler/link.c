/* link.c: the last stage. Writes the C header of the network's API, links the
 * object with the runtime into an executable, or bundles both into a static
 * library that needs only libc, libm and the OpenMP runtime.
 */
#include "cnnc.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#ifndef CNNC_CC
#define CNNC_CC "cc"
#endif

/* The folder holding libcnnrt.a: $CNNC_LIBDIR, else ../lib beside the cnnc binary. */
static const char *lib_dir(void)
{
    const char *env = getenv("CNNC_LIBDIR");
    if (env && *env)
        return env;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return "lib";
    exe[n] = 0;
    return arena_printf("%s/../lib", dirname(exe));
}

static const char *lib_path(const char *name)
{
    const char *p = arena_printf("%s/%s", lib_dir(), name);
    if (access(p, R_OK) != 0) {
        fprintf(stderr, "cnnc: cannot find the runtime library '%s' (%s); set CNNC_LIBDIR\n", p, strerror(errno));
        return NULL;
    }
    return p;
}

/* Runs argv (a NULL-terminated list) with `input` on its stdin; true on exit 0. */
static bool run(char **argv, const char *input)
{
    int fds[2] = {-1, -1};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (input) {
        if (pipe(fds) != 0)
            return false;
        posix_spawn_file_actions_adddup2(&fa, fds[0], 0);
        posix_spawn_file_actions_addclose(&fa, fds[1]);
    }
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (input) {
        close(fds[0]);
        if (rc == 0 && write(fds[1], input, strlen(input)) < 0)
            rc = errno;
        close(fds[1]);
    }
    if (rc != 0) {
        fprintf(stderr, "cnnc: cannot run '%s': %s\n", argv[0], strerror(rc));
        return false;
    }
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "cnnc: '%s' failed while linking\n", argv[0]);
        return false;
    }
    return true;
}

/* With --mpi: the linker is Open MPI's compiler wrapper ($CNNC_MPICC, else
 * mpicc) driving the C compiler, and libcnnrt_mpi.a (main's rt_mpi_main)
 * comes first. */
static const char *mpi_linker(void)
{
    const char *mpicc = getenv("CNNC_MPICC");
    return mpicc && *mpicc ? mpicc : "mpicc";
}

static const char *mpi_lib(void)
{
    const char *p = arena_printf("%s/libcnnrt_mpi.a", lib_dir());
    if (access(p, R_OK) != 0)
        fprintf(stderr, "cnnc: --mpi needs the runtime library '%s', built when Open MPI is installed "
                "(apt-get install libopenmpi-dev openmpi-bin, then make)\n", p);
    return access(p, R_OK) == 0 ? p : NULL;
}

bool link_executable(const char *object, const char *out, bool sanitize, bool mpi)
{
    const char *cc = getenv("CNNC_CC") && *getenv("CNNC_CC") ? getenv("CNNC_CC") : CNNC_CC;
    const char *rt_main = lib_path(sanitize ? "libcnnrt_main_asan.a" : "libcnnrt_main.a");
    const char *rt = lib_path(sanitize ? "libcnnrt_asan.a" : "libcnnrt.a");
    const char *rt_mpi = mpi ? mpi_lib() : NULL;
    if (!rt_main || !rt || (mpi && !rt_mpi))
        return false;
    char *argv[16] = {(char *)(mpi ? mpi_linker() : cc), "-o", (char *)out, (char *)object};
    int n = 4;
    if (mpi)
        argv[n++] = (char *)rt_mpi;
    const char *rest[] = {rt_main, rt, "-fopenmp", "-ljpeg", "-lpng", "-lz", "-lm"};
    for (int i = 0; i < 7; i++)
        argv[n++] = (char *)rest[i];
    if (sanitize)
        argv[n++] = "-fsanitize=address,undefined";
    argv[n] = NULL;
    return run(argv, NULL);
}

/* An ar MRI script: the object and every member of libcnnrt.a in one archive. */
bool link_library(const char *object, const char *out, bool sanitize)
{
    const char *rt = lib_path(sanitize ? "libcnnrt_asan.a" : "libcnnrt.a");
    if (!rt)
        return false;
    char *tmp = arena_printf("%s.tmp%d", out, (int)getpid());
    char *script = arena_printf("CREATE %s\nADDLIB %s\nADDMOD %s\nSAVE\nEND\n", tmp, rt, object);
    char *argv[] = {"ar", "-M", NULL};
    if (!run(argv, script) || rename(tmp, out) != 0) {
        unlink(tmp);
        fprintf(stderr, "cnnc: cannot write '%s'\n", out);
        return false;
    }
    return true;
}

/* ---- the header ----------------------------------------------------------- */

/* NAME_step: the optimizer alone, for a program's own distributed loop. */
static void header_step(FILE *f, const char *N)
{
    fprintf(f,
        "/* One optimizer step (train_step's) with the gradients in %s_grad() as\n"
        " * they are: after %s_loss_grad, and after the program has combined them\n"
        " * across processes however it likes (e.g. MPI_Allreduce and a division by\n"
        " * the process count). The l2/l1 terms are already in them: not added\n"
        " * again. 0, or < 0 with %s_error() before any loss_grad. */\n"
        "int %s_step(%s *net);\n", N, N, N, N, N);
}

/* Whether every parameter has built-in values (INIT_DATA): NAME_new's seed
 * then draws none of them. */
static bool builtin(const Graph *g)
{
    for (int i = 0; i < g->nparams; i++)
        if (g->params[i].init != INIT_DATA)
            return false;
    return g->nparams > 0;
}

/* s for a C comment: printable ASCII, no end of comment */
static const char *comment_safe(const char *s)
{
    char *t = arena_strdup(s);
    for (char *p = t; *p; p++)
        if (*p < ' ' || *p > '~' || (*p == '*' && p[1] == '/'))
            *p = '?';
    return t;
}

/* A network of several outputs, or of an integer or boolean one: where each
 * lies in an example's row of out, and its type. */
static void header_outputs(FILE *f, const Graph *g, const char *upper)
{
    bool typed = false;
    for (int i = 0; i < g->noutputs; i++)
        typed |= g->output_types[i] != ET_F32;
    if (g->noutputs <= 1 && !typed)
        return;
    fprintf(f, "/* The outputs: each example's row of out holds %s_OUTPUT_SIZE floats, the\n"
               " * outputs one after another. An integer or boolean output's values are\n"
               " * floats here (exact up to 2^24); `forward` writes them as their type. */\n"
               "enum {\n    %s_NUM_OUTPUTS = %d,\n", upper, upper, g->noutputs);
    int64_t off = 0;
    for (int i = 0; i < g->noutputs; i++) {
        int64_t size = shape_count(g->outputs[i]->shape);
        fprintf(f, "    %s_OUTPUT%d_OFFSET = %lld, %s_OUTPUT%d_SIZE = %lld%s   /* '%s' %s %s */\n", upper, i,
                (long long)off, upper, i, (long long)size, i + 1 < g->noutputs ? "," : "",
                comment_safe(g->output_names[i]), shape_str(g->outputs[i]->shape), elem_type_name(g->output_types[i]));
        off += size;
    }
    fprintf(f, "};\n\n");
}

static void header_text(FILE *f, const Graph *g)
{
    const char *N = g->name;
    char upper[256], ydoc[160];
    size_t i = 0;
    for (; N[i] && i < sizeof upper - 1; i++)
        upper[i] = (char)(N[i] >= 'a' && N[i] <= 'z' ? N[i] - 32 : N[i]);
    upper[i] = 0;
    const char *ytype = g->label_kind == LABELS_TARGET ? "float" : "int32_t";
    if (g->label_kind == LABELS_TARGET)
        snprintf(ydoc, sizeof ydoc, "y: n targets of the target shape (floats)");
    else if (g->label_kind == LABELS_CLASS)
        snprintf(ydoc, sizeof ydoc, "y: class indices in [0, %d)", g->nclasses);
    else
        snprintf(ydoc, sizeof ydoc, "this network has no loss: always NaN, with an error");
    fprintf(f,
        "/* %s.h: the C API of the network '%s', generated by cnnc %s.\n"
        " *\n"
        " * Link:  cc app.c lib%s.a -fopenmp -lm\n"
        " * The library needs only libc, libm and the OpenMP runtime.\n"
        " *\n"
        " * x is n examples of the input shape, row-major and contiguous (NCHW for\n"
        " * images); out is n rows of the output. Functions that can fail return 0,\n"
        " * or a negative number with the reason in %s_error().\n"
        " *\n"
        " * Preconditions, checked by every function: a NULL net is accepted and\n"
        " * nothing is done (the result is < 0, NULL or NaN); n >= 1; x, out, y and\n"
        " * paths non-NULL; parameter indices in [0, %s_NUM_PARAMS). A call that\n"
        " * breaks one fails without writing anything and %s_error() says why.\n"
        " * The buffers must hold n examples: that, no function can check.\n"
        " */\n"
        "#ifndef %s_H\n#define %s_H\n\n#include <stdint.h>\n\n"
        "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n"
        "typedef struct %s %s;\n\n",
        N, N, CNNC_VERSION, N, N, upper, N, upper, upper, N, N);
    Shape in = g->input->shape, out = g->output->shape;
    fprintf(f, "/* input %s, output %s */\nenum {\n", shape_str(in), shape_str(out));
    fprintf(f, "    %s_INPUT_SIZE = %lld,\n    %s_OUTPUT_SIZE = %lld,\n    %s_NUM_PARAMS = %d\n};\n\n",
            upper, (long long)shape_count(in), upper, (long long)graph_output_stride(g), upper, g->nparams);
    header_outputs(f, g, upper);
    fprintf(f, "%s", builtin(g) ? "/* A network holding the weights built in at compile time (the seed only\n"
                                   " * seeds dropout); NULL if out of memory. */\n"
                                 : "/* A network with parameters initialized as the .cnn says, from `seed`; NULL if out of memory. */\n");
    fprintf(f,
        "%s *%s_new(uint64_t seed);\n"
        "/* Releases net and all it owns; NULL is accepted. */\n"
        "void %s_free(%s *net);\n", N, N, N, N);
    fprintf(f,
        "/* Loads weights or a checkpoint (safetensors), all or nothing: 0, or < 0\n"
        " * with the parameters unchanged and %s_error() naming the file and what is\n"
        " * wrong with it (damaged, truncated, of another network, a tensor missing\n"
        " * or of the wrong shape or dtype). */\n"
        "int %s_load(%s *net, const char *path);\n"
        "/* Saves the parameters (a weights file) atomically: never a half-written\n"
        " * file; a failed write leaves an existing file at path as it was. 0, or < 0\n"
        " * with %s_error(). */\n"
        "int %s_save(const %s *net, const char *path);\n"
        "/* The last failure's message, or \"\" (for a NULL net, a message saying so). */\n"
        "const char *%s_error(const %s *net);\n", N, N, N, N, N, N, N, N);
    fprintf(f,
        "/* Inference: out = f(x) for n >= 1 examples. With n < 1 or a NULL x or out\n"
        " * it writes nothing and %s_error() says why. */\n"
        "void %s_forward(%s *net, int n, const float *x, float *out);\n"
        "/* Training-mode forward and backward over n >= 1 examples; returns the loss\n"
        " * and leaves the gradients in %s_grad(). %s.\n"
        " * NaN, with the network unchanged and the reason in %s_error(), for n < 1,\n"
        " * a NULL x or y, or a label out of range. */\n"
        "float %s_loss_grad(%s *net, int n, const float *x, const %s *y);\n"
        "/* %s_loss_grad, then one optimizer step (none after NaN). */\n"
        "float %s_train_step(%s *net, int n, const float *x, const %s *y);\n",
        N, N, N, N, ydoc, N, N, N, ytype, N, N, N, ytype);
    fprintf(f,
        "int %s_param_count(void);\n"
        "/* \"conv1.weight\", ...: source order, PyTorch-compatible layouts; NULL if i\n"
        " * is outside [0, %s_NUM_PARAMS). */\n"
        "const char *%s_param_name(int i);\n"
        "/* Fills dims, returns the rank (or -1, dims untouched, if i is out of range\n"
        " * or dims is NULL). */\n"
        "int %s_param_shape(int i, int64_t dims[4]);\n"
        "/* Parameter i's values, or its gradient (after a loss_grad or train_step),\n"
        " * inside net; NULL with %s_error() if i is out of range or there is none. */\n"
        "float *%s_param(%s *net, int i);\n"
        "float *%s_grad(%s *net, int i);\n"
        "/* The threads a call may use, clamped to [1, 1024]. */\n"
        "void %s_set_threads(%s *net, int threads);\n"
        "/* The learning rate of train_step; a negative or non-finite lr is ignored. */\n"
        "void %s_set_lr(%s *net, float lr);\n",
        N, upper, N, N, N, N, N, N, N, N, N, N, N);
    header_step(f, N);
    fprintf(f, "\n#ifdef __cplusplus\n}\n#endif\n\n#endif\n");
}

bool link_header(const Graph *g, const char *path)
{
    char *tmp = arena_printf("%s.tmp%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "cnnc: cannot write '%s': %s\n", path, strerror(errno));
        return false;
    }
    header_text(f, g);
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        fprintf(stderr, "cnnc: cannot write '%s': %s\n", path, strerror(errno));
        unlink(tmp);
        return false;
    }
    return true;
}
