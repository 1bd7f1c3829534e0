/* conform.c: the helper of tests/onnx/conformance.sh, which runs Debian's
 * libonnx-testdata (ONNX's own operator tests) through cnnc. Built against
 * the C that protoc-c generates from onnx.proto (as compiler/onnx.c is) and
 * the runtime's safetensors reader and writer.
 *
 *   conform prepare TESTDIR SET OUTDIR
 *     Decides whether the test is in scope: the default domain's opset is 7
 *     to 17 and every node's operator is one cnnc imports. If not, prints
 *     "out of scope: REASON" and exits 3. Otherwise writes
 *       OUTDIR/model.onnx   the model, its graph inputs after the first bound
 *                           to the test's values (TESTDIR/test_data_set_SET/
 *                           input_K.pb) as initializers of the same name;
 *       OUTDIR/x.safetensors the first input's values as the tensor 'x'
 *                           (when they are float32: its dimension 0 is the
 *                           batch of `./model forward`);
 *       OUTDIR/x1.safetensors the same values with a dimension of 1 put
 *                           first: one example, for the model read
 *                           unbatched (`cnnc --unbatched`);
 *     and prints how many inputs it bound. Inputs that are not tensors
 *     (sequences, optionals) are neither bound nor written: cnnc refuses
 *     them.
 *   conform compare OUT.safetensors OUTPUT.pb [TOL]
 *     Compares the tensor 'out' of `./model forward` with the expected
 *     output: the same number of values, the same dimensions once the
 *     dimensions of size 1 are left out, and a relative error (the largest
 *     absolute difference over the largest expected magnitude, at least
 *     1e-6; NaN where a number is expected counts as infinite) of at most TOL
 *     (default 1e-4). Prints one line; exits 0 if within, 1 if not.
 * Exit 2 for a file it cannot read. */
#include "cnnrt.h"
#include "onnx.pb-c.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const supported[] = {
    "Conv", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh",
    "Softmax", "MaxPool", "AveragePool", "GlobalAveragePool", "BatchNormalization", "LRN", "Concat",
    "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Dropout", "Identity", "Constant",
};

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "conform: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

/* The whole file in memory, or NULL if it does not exist. */
static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0)
        if ((n += got) == cap)
            buf = realloc(buf, cap *= 2);
    fclose(f);
    if (!buf)
        die("out of memory reading %s", path);
    *len = n;
    return buf;
}

static Onnx__TensorProto *read_tensor(const char *path)
{
    size_t len;
    uint8_t *buf = slurp(path, &len);
    if (!buf)
        return NULL;
    Onnx__TensorProto *t = onnx__tensor_proto__unpack(NULL, len, buf);
    free(buf);
    if (!t)
        die("%s: not a TensorProto", path);
    return t;
}

static bool is_supported(const Onnx__NodeProto *n)
{
    if (n->domain && n->domain[0] && strcmp(n->domain, "ai.onnx") != 0)
        return false;
    for (size_t i = 0; i < sizeof supported / sizeof supported[0]; i++)
        if (n->op_type && strcmp(n->op_type, supported[i]) == 0)
            return true;
    return false;
}

/* NULL when in scope, else why not */
static char *out_of_scope(const Onnx__ModelProto *m)
{
    static char why[4096];
    int64_t opset = -1;
    for (size_t i = 0; i < m->n_opset_import; i++) {
        const char *d = m->opset_import[i]->domain;
        if (!d || !d[0] || strcmp(d, "ai.onnx") == 0)
            opset = m->opset_import[i]->version;
    }
    if (opset < 7 || opset > 17) {
        snprintf(why, sizeof why, "opset %lld", (long long)opset);
        return why;
    }
    if (!m->graph)
        return "no graph";
    why[0] = 0;
    for (size_t i = 0; i < m->graph->n_node; i++) {
        const Onnx__NodeProto *n = m->graph->node[i];
        if (is_supported(n))
            continue;
        const char *op = n->op_type ? n->op_type : "?";
        char item[256];
        snprintf(item, sizeof item, "%s ", op);
        if (!strstr(why, item) && strlen(why) + strlen(item) < sizeof why - 16)
            strcat(why, item);
    }
    if (!why[0])
        return NULL;
    why[strlen(why) - 1] = 0;
    memmove(why + 10, why, strlen(why) + 1);
    memcpy(why, "operators ", 10);
    return why;
}

static bool is_initializer(const Onnx__GraphProto *g, const char *name)
{
    for (size_t i = 0; i < g->n_initializer; i++)
        if (g->initializer[i]->name && strcmp(g->initializer[i]->name, name) == 0)
            return true;
    return false;
}

/* Any numeric tensor's values as doubles (float, double, the integers, bool:
 * raw little-endian bytes or the typed lists); NULL for other element types. */
static double *any_values(const Onnx__TensorProto *t, int64_t *count)
{
    int64_t n = 1;
    for (size_t i = 0; i < t->n_dims; i++)
        n *= t->dims[i];
    int size;
    switch (t->data_type) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: size = 4; break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: size = 8; break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8: case ONNX__TENSOR_PROTO__DATA_TYPE__INT8:
    case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL: size = 1; break;
    default: return NULL;
    }
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    const uint8_t *raw = t->raw_data.len ? t->raw_data.data : NULL;
    if (raw && t->raw_data.len != (size_t)n * (size_t)size)
        die("tensor '%s': %zu raw bytes for %lld values", t->name ? t->name : "", t->raw_data.len, (long long)n);
    for (int64_t i = 0; i < n; i++) {
        float f; double d; int32_t i32; int64_t i64;
        switch (t->data_type) {
        case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT:
            if (raw) memcpy(&f, raw + 4 * i, 4); else f = t->float_data[i];
            v[i] = f; break;
        case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE:
            if (raw) memcpy(&d, raw + 8 * i, 8); else d = t->double_data[i];
            v[i] = d; break;
        case ONNX__TENSOR_PROTO__DATA_TYPE__INT64:
            if (raw) memcpy(&i64, raw + 8 * i, 8); else i64 = t->int64_data[i];
            v[i] = (double)i64; break;
        case ONNX__TENSOR_PROTO__DATA_TYPE__INT8:
            v[i] = raw ? (int8_t)raw[i] : (int8_t)t->int32_data[i]; break;
        case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL:
            v[i] = raw ? raw[i] != 0 : t->int32_data[i] != 0; break;
        default:                /* uint8 and int32 */
            if (raw && size == 4) memcpy(&i32, raw + 4 * i, 4);
            else i32 = raw ? raw[i] : t->int32_data[i];
            v[i] = i32; break;
        }
    }
    if (!raw && n > 0) {
        size_t listed = t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT ? t->n_float_data
                      : t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE ? t->n_double_data
                      : t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 ? t->n_int64_data : t->n_int32_data;
        if (listed != (size_t)n)
            die("tensor '%s': %zu values for %lld", t->name ? t->name : "", listed, (long long)n);
    }
    *count = n;
    return v;
}

/* The safetensors dtype (rt_tensor.dtype) an input of ONNX type `type` is
 * written as: float32, uint8 and int8 as themselves; -1: none. */
static int input_dtype(int type)
{
    return type == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT ? RT_F32
         : type == ONNX__TENSOR_PROTO__DATA_TYPE__UINT8 ? RT_U8
         : type == ONNX__TENSOR_PROTO__DATA_TYPE__INT8  ? RT_I8 : -1;
}

static void write_file(const char *path, const void *p, size_t n)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0 || rename(tmp, path) != 0)
        die("cannot write %s", path);
}

static int prepare(const char *dir, const char *set, const char *outdir)
{
    char path[4096];
    size_t len;
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    uint8_t *buf = slurp(path, &len);
    if (!buf)
        die("cannot read %s", path);
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, buf);
    free(buf);
    if (!m)
        die("%s: not a ModelProto", path);
    const char *why = out_of_scope(m);
    if (why) {
        printf("out of scope: %s\n", why);
        return 3;
    }
    Onnx__GraphProto *g = m->graph;
    int k = 0, bound = 0;
    for (size_t i = 0; i < g->n_input; i++) {
        const char *name = g->input[i]->name ? g->input[i]->name : "";
        if (is_initializer(g, name))
            continue;
        snprintf(path, sizeof path, "%s/test_data_set_%s/input_%d.pb", dir, set, k++);
        const Onnx__TypeProto *type = g->input[i]->type;
        if (!type || type->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE)
            continue;                    /* a sequence, map or optional: left for cnnc to refuse */
        Onnx__TensorProto *t = read_tensor(path);
        if (!t)
            die("%s: missing (the graph's input '%s')", path, name);
        if (k == 1) {                    /* the program's input */
            int64_t count;
            int dtype = input_dtype(t->data_type);
            double *d = dtype >= 0 ? any_values(t, &count) : NULL;
            float *v = d ? malloc(sizeof(float) * (size_t)(count ? count : 1)) : NULL;
            for (int64_t i = 0; v && i < count; i++)
                v[i] = (float)d[i];
            free(d);
            if (v && t->n_dims >= 1 && t->n_dims < RT_MAX_RANK) {
                rt_tensor x = {.name = "x", .rank = (int)t->n_dims, .count = count, .data = v, .dtype = dtype};
                rt_tensor x1 = {.name = "x", .rank = (int)t->n_dims + 1, .count = count, .data = v, .dtype = dtype};
                x1.dims[0] = 1;
                for (size_t d = 0; d < t->n_dims; d++)
                    x.dims[d] = x1.dims[d + 1] = t->dims[d];
                rt_err err = {{0}};
                snprintf(path, sizeof path, "%s/x.safetensors", outdir);
                if (rt_st_write(path, 1, &x, 0, NULL, NULL, &err))
                    die("%s", err.msg);
                snprintf(path, sizeof path, "%s/x1.safetensors", outdir);
                if (rt_st_write(path, 1, &x1, 0, NULL, NULL, &err))
                    die("%s", err.msg);
            }
            free(v);
            onnx__tensor_proto__free_unpacked(t, NULL);
            continue;
        }
        free(t->name);                   /* bound: an initializer of the input's name */
        t->name = strdup(name);
        g->initializer = realloc(g->initializer, sizeof *g->initializer * (g->n_initializer + 1));
        g->initializer[g->n_initializer++] = t;
        bound++;
    }
    size_t n = onnx__model_proto__get_packed_size(m);
    uint8_t *out = malloc(n ? n : 1);
    onnx__model_proto__pack(m, out);
    snprintf(path, sizeof path, "%s/model.onnx", outdir);
    write_file(path, out, n);
    free(out);
    printf("bound %d\n", bound);
    onnx__model_proto__free_unpacked(m, NULL);
    return 0;
}

/* dims without the 1s, as "[a, b]" */
static void squeezed(char *s, size_t cap, int rank, const int64_t *d)
{
    size_t n = (size_t)snprintf(s, cap, "[");
    for (int i = 0; i < rank; i++)
        if (d[i] != 1 && n < cap)
            n += (size_t)snprintf(s + n, cap - n, "%s%lld", n > 1 ? ", " : "", (long long)d[i]);
    if (n < cap)
        snprintf(s + n, cap - n, "]");
}

/* The dtype a tensor that rt_st_find_values found has in its file */
static const char *file_dtype(const rt_tensors *got, const rt_tensor *o)
{
    for (int i = 0; i < got->nother; i++)
        if (o == &got->other[i].values)
            return got->other[i].dtype;
    return "F32";
}

/* The safetensors dtype of an ONNX element type cnnc writes (else "?") */
static const char *safetensors_dtype(int type)
{
    switch (type) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: return "F32";
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8: return "U8";
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT8:  return "I8";
    case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL:  return "BOOL";
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: return "I64";
    default: return "?";
    }
}

/* The output in outpath (safetensors) that want_path (an output_K.pb) holds:
 * the tensor of its name (a network of several outputs names each so), else
 * "out" (a lone output). Floats within tol (relative to the largest expected
 * magnitude), integers and booleans exactly. */
static int compare(const char *outpath, const char *want_path, double tol)
{
    rt_tensors got;
    rt_err err = {{0}};
    if (rt_st_read(outpath, &got, &err))
        die("%s", err.msg);
    Onnx__TensorProto *t = read_tensor(want_path);
    if (!t)
        die("cannot read %s", want_path);
    const rt_tensor *o = t->name && t->name[0] ? rt_st_find_values(&got, t->name) : NULL;
    if (!o && got.n + got.nother == 1)         /* a lone output is "out" */
        o = rt_st_find_values(&got, "out");
    if (!o) {
        printf("no tensor '%s' (nor a lone 'out') in the output\n", t->name ? t->name : "");
        return 1;
    }
    const char *dtype = file_dtype(&got, o), *wtype = safetensors_dtype((int)t->data_type);
    if (strcmp(dtype, wtype) != 0) {
        printf("output '%s' written as %s; ONNX's is %s\n", o->name, dtype, wtype);
        return 1;
    }
    int64_t count;
    double *want = any_values(t, &count);
    if (!want) {
        printf("expected output of element type %d, which the runner does not read\n", (int)t->data_type);
        return 1;
    }
    bool exact = t->data_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT &&
                 t->data_type != ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE;
    char gs[512], ws[512];
    squeezed(gs, sizeof gs, o->rank, o->dims);
    int64_t wd[64];
    int wr = t->n_dims < 64 ? (int)t->n_dims : 64;
    for (int i = 0; i < wr; i++)
        wd[i] = t->dims[i];
    squeezed(ws, sizeof ws, wr, wd);
    if (o->count != count || strcmp(gs, ws) != 0) {
        printf("shape %s (%lld values) where %s (%lld) is expected\n", gs, (long long)o->count, ws,
               (long long)count);
        return 1;
    }
    double maxdiff = 0, maxref = 1e-6;
    for (int64_t i = 0; i < count; i++) {
        double w = want[i], v = o->data[i];
        double d = isnan(w) && isnan(v) ? 0 : fabs(v - w);
        if (isnan(d))
            d = INFINITY;
        if (d > maxdiff)
            maxdiff = d;
        if (fabs(w) > maxref)
            maxref = fabs(w);
    }
    double rel = maxdiff / maxref;
    if (exact)
        printf("'%s': %lld values, %s\n", o->name, (long long)count, maxdiff == 0 ? "exact" : "not exact");
    else
        printf("'%s': %lld values, rel. error %.2e\n", o->name, (long long)count, rel);
    free(want);
    onnx__tensor_proto__free_unpacked(t, NULL);
    rt_st_free(&got);
    return (exact ? maxdiff == 0 : rel <= tol) ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "prepare") == 0)
        return prepare(argv[2], argv[3], argv[4]);
    if ((argc == 4 || argc == 5) && strcmp(argv[1], "compare") == 0)
        return compare(argv[2], argv[3], argc == 5 ? atof(argv[4]) : 1e-4);
    fprintf(stderr, "usage: conform prepare TESTDIR SET OUTDIR\n"
                    "       conform compare OUT.safetensors OUTPUT.pb [TOL]\n");
    return 2;
}
