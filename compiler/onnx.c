/* onnx.c: the ONNX front end, a sibling of parser.y and shape.c. Reads an
 * ONNX model (a ModelProto, decoded by protobuf-c with the C that protoc-c
 * generates in the build from Debian's onnx.proto) and turns its graph
 * directly into the operator Graph that shape.c builds from a .cnn program;
 * nothing after the graph knows where it came from.
 *
 *   model.onnx --read_model--> ModelProto --check_model--> opset, unsupported
 *   operators --graph_input--> OP_INPUT --convert (one rule per operator)-->
 *   nodes and parameters --graph_output--> Graph
 *
 * Shapes. ONNX values carry the batch as their first dimension; the Graph's
 * shapes are per example. A computed ("batched") value's Value.shape is its
 * ONNX shape without the batch; a constant's (initializer, Constant node) is
 * its whole ONNX shape. A value's node may have another shape of the same
 * size: GlobalAveragePool gives [C] where ONNX has [C, 1, 1], and Reshape,
 * Squeeze and Unsqueeze only relabel. node_of() reshapes (OP_FLATTEN, which
 * copies nothing) when an operator needs the ONNX shape itself.
 *
 * Parameters are named as the cnnc language names a layer's (conv1.weight,
 * dense2.bias, batchnorm1.running_mean: layers counted by kind in graph
 * order); an initializer used as an operand of arithmetic keeps its ONNX
 * name, made a C identifier. Their values are the initializers' (INIT_DATA).
 *
 * Unbatched (--unbatched): the model's input has no batch dimension; the
 * whole input tensor is one example, and the program batches examples. Then
 * a computed value's Value.shape is its whole ONNX shape (`lead` is 0), and
 * the operators that take ONNX's dimension 0 as a batch (Conv, pooling,
 * BatchNormalization, LRN) are refused.
 *
 * The reader trusts nothing in the file: every size is checked before use.
 */
#include "cnnc.h"
#include "onnx.pb-c.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

enum { OPSET_MIN = 7, OPSET_MAX = 17, MAX_DIM = 1 << 30, MAX_WINDOW = 1 << 20 };

/* A constant tensor: an initializer, a Constant node's value, or either
 * reshaped. Its values are read (and checked) when first used. */
typedef struct {
    const char *name;
    int rank;
    const int64_t *dims;
    int64_t count;
    const Onnx__TensorProto *p;    /* where the values are */
    const float *f;                /* once read as floats */
    const int64_t *i;              /* once read as integers */
} Tensor;

/* An ONNX value: a computed one (batched: it depends on the input), a
 * constant tensor (c), or a value computed from constants only (node, not
 * batched). shape: see the top of the file. */
typedef struct {
    Node *node;
    Shape shape;
    bool batched;
    Tensor *c;
    ElemType type;                 /* a computed value's: float, or an integer type held exactly in
                                      float (see integer_result), or a mask or indices (outputs) */
} Value;

typedef struct {
    const char *path, *dir;
    Onnx__ModelProto *model;
    Onnx__GraphProto *graph;
    int64_t opset;
    Graph *g;
    Map values;                    /* name -> Value* */
    Map uses;                      /* name -> how many node inputs and graph outputs name it */
    Map pnames;                    /* parameter names taken */
    int count[OP_COUNT];           /* layers of each kind, for their names */
    int64_t batch;                 /* the input's first dimension when fixed, else -1 */
} Imp;

typedef const Onnx__NodeProto ONode;

static const Loc noloc = {0, 0, 0};

/* The ONNX dimensions of a computed value before its per-example shape: 1
 * (the batch), or 0 when the model is read unbatched. Set by import(). */
static int lead = 1;

static bool fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static bool fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char buf[1024];
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    error_at(noloc, "%s", buf);
    return false;
}

static const char *str(const char *s) { return s ? s : ""; }

/* ONNX's TensorProto.DataType by name, for messages: "float", "int64", ... */
static const char *type_name(int type)
{
    static const char *const names[] = {"undefined", "float", "uint8", "int8", "uint16", "int16", "int32",
                                        "int64", "string", "bool", "float16", "double", "uint32", "uint64",
                                        "complex64", "complex128", "bfloat16"};
    return type >= 0 && type < (int)(sizeof names / sizeof *names) ? names[type]
                                                                  : arena_printf("data type %d", type);
}

/* "node 'conv_3' (Conv)", or "node 4 (Conv)" when it has no name */
static const char *node_place(ONode *n, int index)
{
    if (n->name && n->name[0])
        return arena_printf("node '%s' (%s)", n->name, str(n->op_type));
    return arena_printf("node %d (%s)", index + 1, str(n->op_type));
}

static char *dims_str(int rank, const int64_t *d)
{
    char *s = "[";
    for (int i = 0; i < rank && i < 8; i++)
        s = arena_printf("%s%s%lld", s, i ? ", " : "", (long long)d[i]);
    return arena_printf("%s%s]", s, rank > 8 ? ", ..." : "");
}

/* A computed value's ONNX shape: "[N, 3, 224, 224]" ("[3, 224, 224]" unbatched) */
static char *batch_str(Shape s)
{
    if (!lead)
        return shape_str(s);
    return arena_printf("[N%s%s", s.rank ? ", " : "]", s.rank ? shape_str(s) + 1 : "");
}

/* s made a C identifier: other characters become '_', and a leading digit
 * (or nothing) gets a prefix. */
static char *identifier(const char *s, const char *prefix)
{
    char *name = arena_strdup(s);
    for (char *c = name; *c; c++)
        if (!(*c == '_' || (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9')))
            *c = '_';
    if (!*name || (*name >= '0' && *name <= '9'))
        name = arena_printf("%s%s", prefix, name);
    return name;
}

/* ---- recognizing and reading the file ------------------------------------ */

static bool ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), k = strlen(tail);
    return n >= k && strcmp(s + n - k, tail) == 0;
}

/* A .cnn file is UTF-8 text; an ONNX model is binary protobuf, whose first
 * byte is the tag of ir_version (0x08) in every exporter's output. Decided
 * by the content first, then by the name; an unreadable file is left to the
 * reader of its kind to report. */
bool onnx_file(const char *path)
{
    unsigned char head[4096];
    size_t n = 0;
    FILE *f = fopen(path, "rb");
    if (f) {
        n = fread(head, 1, sizeof head, f);
        fclose(f);
    }
    if (n > 0 && head[0] == 0x08)
        return true;
    if (ends_with(path, ".onnx"))
        return true;
    if (ends_with(path, ".cnn"))
        return false;
    for (size_t i = 0; i < n; i++)
        if (head[i] < 0x20 && !strchr("\t\n\r\f\v", head[i]))
            return true;                /* a control byte (NUL included): binary, not a program */
    return false;
}

/* protobuf-c allocates the decoded model in the arena: it lives as long as
 * the graph, whose parameters point into it, and is released with it. */
static void *pb_alloc(void *data, size_t size) { return arena_alloc(size ? size : 1); }
static void pb_free(void *data, void *p) {}
static ProtobufCAllocator pb_arena = {pb_alloc, pb_free, NULL};

/* Reads a varint at *p (before end); false when it is cut short or too long. */
static bool skip_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; *p < end && shift < 64; shift += 7) {
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80))
            return true;
    }
    return false;
}

enum { MAX_NESTING = 100 };

/* Whether the messages of the data nest at most MAX_NESTING deep. protobuf-c
 * decodes a nested message by recursion, so a file of subgraphs within
 * subgraphs a million deep would overflow the stack before it could say
 * anything. This walk follows the schema (protobuf-c's descriptors of
 * onnx.proto) over the tags and lengths only, with a stack of its own;
 * anything malformed is left to protobuf-c to refuse. */
static bool nesting_ok(const uint8_t *p, size_t size)
{
    struct { const ProtobufCMessageDescriptor *d; const uint8_t *end; } st[MAX_NESTING];
    int top = 0;
    st[0].d = &onnx__model_proto__descriptor, st[0].end = p + size;
    while (top >= 0) {
        const uint8_t *end = st[top].end;
        uint64_t tag, len;
        if (p >= end) {
            top--;
            continue;
        }
        if (!skip_varint(&p, end, &tag))
            return true;
        switch (tag & 7) {
        case 0: if (!skip_varint(&p, end, &len)) return true; break;
        case 1: if (end - p < 8) return true; p += 8; break;
        case 5: if (end - p < 4) return true; p += 4; break;
        case 2: {
            if (!skip_varint(&p, end, &len) || len > (uint64_t)(end - p))
                return true;
            const ProtobufCFieldDescriptor *f =
                tag >> 3 <= UINT32_MAX ? protobuf_c_message_descriptor_get_field(st[top].d, (unsigned)(tag >> 3)) : NULL;
            if (f && f->type == PROTOBUF_C_TYPE_MESSAGE) {
                if (++top == MAX_NESTING)
                    return false;
                st[top].d = f->descriptor, st[top].end = p + len;
            } else {
                p += len;
            }
            break;
        }
        default:
            return true;
        }
    }
    return true;
}

static Onnx__ModelProto *unpack(const void *data, size_t size)
{
    if (!nesting_ok(data, size)) {
        fail("not a usable ONNX model: its messages nest more than %d deep", MAX_NESTING);
        return NULL;
    }
    Onnx__ModelProto *m = onnx__model_proto__unpack(&pb_arena, size, data);
    if (!m)
        fail("not a valid ONNX model: the protobuf data is truncated or corrupt");
    return m;
}

static Onnx__ModelProto *read_model(const char *path)
{
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        fprintf(stderr, "cnnc: cannot open '%s': %s\n", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    if (st.st_size == 0) {
        close(fd);
        fail("the file is empty, not an ONNX model");
        return NULL;
    }
    void *data = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (data == MAP_FAILED) {
        fprintf(stderr, "cnnc: cannot read '%s': %s\n", path, strerror(errno));
        return NULL;
    }
    Onnx__ModelProto *m = unpack(data, (size_t)st.st_size);
    munmap(data, (size_t)st.st_size);
    return m;
}

/* ---- attributes ---------------------------------------------------------- */

static const Onnx__AttributeProto *attr(ONode *n, const char *name)
{
    for (size_t i = 0; i < n->n_attribute; i++)
        if (n->attribute[i] && n->attribute[i]->name && strcmp(n->attribute[i]->name, name) == 0)
            return n->attribute[i];
    return NULL;
}

/* The attribute's type, from the field that holds its value when the file
 * does not say (files before IR version 3). */
static int attr_type(const Onnx__AttributeProto *a)
{
    if (a->has_type && a->type)
        return a->type;
    return a->has_f ? ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT : a->has_i ? ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT
         : a->has_s ? ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING : a->t ? ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR
         : a->n_floats ? ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS : a->n_ints ? ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS
         : 0;
}

static bool typed(const Onnx__AttributeProto *a, int type, const char *what)
{
    if (attr_type(a) == type)
        return true;
    return fail("attribute '%s' must be %s", a->name, what);
}

static bool attr_int(ONode *n, const char *name, int64_t dflt, int64_t *out)
{
    const Onnx__AttributeProto *a = attr(n, name);
    *out = a ? a->i : dflt;
    return !a || typed(a, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT, "an integer");
}

static bool attr_float(ONode *n, const char *name, float dflt, float *out)
{
    const Onnx__AttributeProto *a = attr(n, name);
    *out = a ? a->f : dflt;
    if (a && !typed(a, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT, "a float"))
        return false;
    return isfinite(*out) || fail("attribute '%s' is %g", name, *out);
}

/* INTS: *cnt values at *v; absent: *cnt = 0 */
static bool attr_ints(ONode *n, const char *name, const int64_t **v, size_t *cnt)
{
    const Onnx__AttributeProto *a = attr(n, name);
    *v = a ? a->ints : NULL, *cnt = a ? a->n_ints : 0;
    return !a || typed(a, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS, "a list of integers");
}

static bool attr_string(ONode *n, const char *name, const char *dflt, const char **out)
{
    const Onnx__AttributeProto *a = attr(n, name);
    *out = dflt;
    if (!a)
        return true;
    if (!typed(a, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING, "a string"))
        return false;
    *out = arena_strndup(a->s.data ? (const char *)a->s.data : "", a->s.len);
    return true;
}

/* ---- constant tensors ------------------------------------------------------ */

static Tensor *tensor_of(const Onnx__TensorProto *p, const char *name)
{
    Tensor *t = arena_alloc(sizeof *t);
    t->name = name, t->p = p;
    t->rank = p->n_dims > 64 ? -1 : (int)p->n_dims;
    t->dims = p->dims;
    t->count = 1;
    for (int i = 0; i < t->rank; i++)
        if (p->dims[i] < 0 || !mul_ok(t->count, p->dims[i], &t->count) || t->count > ((int64_t)1 << 40))
            t->count = -1, i = t->rank;
    return t;
}

/* The tensor's bytes from its external file, checked against the file. */
static const void *external(Imp *m, const Tensor *t, size_t bytes)
{
    const char *loc = NULL;
    int64_t offset = 0, length = -1;
    for (size_t i = 0; i < t->p->n_external_data; i++) {
        const Onnx__StringStringEntryProto *e = t->p->external_data[i];
        const char *k = e ? str(e->key) : "", *v = e ? str(e->value) : "";
        if (strcmp(k, "location") == 0)
            loc = v;
        else if (strcmp(k, "offset") == 0)
            offset = strtoll(v, NULL, 10);
        else if (strcmp(k, "length") == 0)
            length = strtoll(v, NULL, 10);
    }
    if (!loc || !*loc) {
        fail("initializer '%s' is stored as external data but names no file", t->name);
        return NULL;
    }
    if (loc[0] == '/' || strstr(loc, "..")) {
        fail("initializer '%s' names external data '%s' outside the model's folder", t->name, loc);
        return NULL;
    }
    if (offset < 0 || (length >= 0 && (uint64_t)length != bytes)) {
        fail("initializer '%s': its external data's offset or length (%lld, %lld) do not fit its shape %s (%zu bytes)",
             t->name, (long long)offset, (long long)length, dims_str(t->rank, t->dims), bytes);
        return NULL;
    }
    const char *path = arena_printf("%s/%s", m->dir, loc);
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) != 0) {
        fail("initializer '%s': its external data '%s' cannot be read: %s", t->name, path, strerror(errno));
        if (f)
            fclose(f);
        return NULL;
    }
    void *buf = NULL;
    bool fits = (uint64_t)st.st_size >= (uint64_t)offset && (uint64_t)st.st_size - (uint64_t)offset >= bytes;
    if (fits && fseeko(f, (off_t)offset, SEEK_SET) == 0) {
        buf = arena_alloc(bytes ? bytes : 1);
        if (fread(buf, 1, bytes, f) != bytes)
            buf = NULL;
    }
    fclose(f);
    if (!buf)
        fail("initializer '%s': its external data '%s' is shorter than offset %lld + %zu bytes", t->name, path,
             (long long)offset, bytes);
    return buf;
}

/* The tensor's values as raw little-endian bytes of `size` each, when it
 * holds them so (raw_data or external data); NULL with *none when it does
 * not, NULL after an error. */
static const void *raw_values(Imp *m, const Tensor *t, size_t size, bool *none)
{
    size_t bytes = (size_t)t->count * size;
    *none = false;
    if (t->p->has_data_location && t->p->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
        return external(m, t, bytes);
    if (!t->p->has_raw_data) {
        *none = true;
        return NULL;
    }
    if (t->p->raw_data.len != bytes) {
        fail("initializer '%s' holds %zu bytes, but its shape %s needs %zu", t->name, t->p->raw_data.len,
             dims_str(t->rank, t->dims), bytes);
        return NULL;
    }
    return t->p->raw_data.data ? t->p->raw_data.data : (const void *)"";
}

static bool count_ok(const Tensor *t)
{
    if (t->count >= 0 && t->count <= MAX_TENSOR_ELEMS)
        return true;
    return fail("initializer '%s' has shape %s, more than 2^31 - 1 values", t->name, dims_str(t->rank, t->dims));
}

static bool listed(const Tensor *t, size_t n)
{
    if (n == (size_t)t->count)
        return true;
    return fail("initializer '%s' holds %zu values, but its shape %s needs %lld", t->name, n,
                dims_str(t->rank, t->dims), (long long)t->count);
}

/* The values as floats (float, double and integer tensors); NULL after an error. */
static const float *floats(Imp *m, Tensor *t)
{
    if (t->f || !count_ok(t))
        return t->f;
    if (t->count == 0)
        return t->f = arena_alloc(sizeof(float));     /* no values: a valid empty array */
    int type = t->p->data_type;
    bool none;
    size_t n = (size_t)t->count;
    float *f = NULL;
    double d = 0;
    if (type == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT) {
        const void *raw = raw_values(m, t, 4, &none);
        if (raw && ((uintptr_t)raw % 4) == 0)
            return t->f = raw;          /* the decoded message lives as long as the graph */
        if (raw)
            f = memcpy(arena_alloc(4 * n + 1), raw, 4 * n);
        else if (none && listed(t, t->p->n_float_data))
            f = t->p->float_data;
    } else if (type == ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE) {
        const void *raw = raw_values(m, t, 8, &none);
        if ((raw || (none && listed(t, t->p->n_double_data))) && (f = arena_alloc(4 * n + 1)))
            for (size_t i = 0; i < n; i++) {
                if (raw)
                    memcpy(&d, (const char *)raw + 8 * i, 8);
                f[i] = (float)(raw ? d : t->p->double_data[i]);
            }
        if (!raw && !none)
            f = NULL;
    } else if (type == ONNX__TENSOR_PROTO__DATA_TYPE__UINT8 || type == ONNX__TENSOR_PROTO__DATA_TYPE__INT8) {
        const void *raw = raw_values(m, t, 1, &none);      /* a byte each, or int32_data */
        if ((raw || (none && listed(t, t->p->n_int32_data))) && (f = arena_alloc(4 * n + 1)))
            for (size_t i = 0; i < n; i++) {
                int32_t x = raw ? ((const uint8_t *)raw)[i] : t->p->int32_data[i];
                f[i] = (float)(type == ONNX__TENSOR_PROTO__DATA_TYPE__INT8 ? (int8_t)x : (uint8_t)x);
            }
    } else {
        fail("'%s' is a tensor of %s; cnnc takes float tensors here", t->name, type_name(type));
    }
    return t->f = f;
}

/* The values as integers (int64, int32 and bool tensors); NULL after an error. */
static const int64_t *ints(Imp *m, Tensor *t)
{
    if (t->i || !count_ok(t))
        return t->i;
    if (t->count == 0)
        return t->i = arena_alloc(sizeof(int64_t));
    int type = t->p->data_type;
    bool none;
    size_t n = (size_t)t->count;
    int64_t *v = NULL;                  /* allocated once the file is known to hold the values */
    if (type == ONNX__TENSOR_PROTO__DATA_TYPE__INT64) {
        const void *raw = raw_values(m, t, 8, &none);
        if (raw)
            v = memcpy(arena_alloc(8 * n + 1), raw, 8 * n);
        else if (none && listed(t, t->p->n_int64_data))
            v = memcpy(arena_alloc(8 * n + 1), t->p->int64_data, 8 * n);
    } else if (type == ONNX__TENSOR_PROTO__DATA_TYPE__INT32) {
        const void *raw = raw_values(m, t, 4, &none);
        if (raw || (none && listed(t, t->p->n_int32_data))) {
            v = arena_alloc(8 * n + 1);
            for (size_t i = 0; i < n; i++) {
                int32_t x;
                if (raw)
                    memcpy(&x, (const char *)raw + 4 * i, 4);
                v[i] = raw ? x : t->p->int32_data[i];
            }
        }
    } else if (type == ONNX__TENSOR_PROTO__DATA_TYPE__BOOL) {     /* a byte each, or int32_data */
        const void *raw = raw_values(m, t, 1, &none);
        if (raw || (none && listed(t, t->p->n_int32_data))) {
            v = arena_alloc(8 * n + 1);
            for (size_t i = 0; i < n; i++)
                v[i] = raw ? ((const uint8_t *)raw)[i] != 0 : t->p->int32_data[i] != 0;
        }
    } else {
        fail("'%s' must be an integer tensor (int64), but is of %s", t->name, type_name(type));
    }
    return t->i = v;
}

/* A constant's values as floats, integers (and booleans, 0 or 1) converted. */
static const float *numbers(Imp *m, Tensor *t)
{
    int type = t->p->data_type;
    if (type != ONNX__TENSOR_PROTO__DATA_TYPE__INT64 && type != ONNX__TENSOR_PROTO__DATA_TYPE__INT32 &&
        type != ONNX__TENSOR_PROTO__DATA_TYPE__BOOL)
        return floats(m, t);
    const int64_t *v = ints(m, t);
    if (!v)
        return NULL;
    float *f = arena_alloc(4 * (size_t)t->count + 1);
    for (int64_t i = 0; i < t->count; i++)
        f[i] = (float)v[i];
    return t->f = f;
}

/* A constant of a new shape with the same values. */
static Tensor *reshaped(const Tensor *t, Shape s)
{
    Tensor *r = arena_alloc(sizeof *r);
    *r = *t;
    int64_t *d = arena_alloc(sizeof(int64_t) * MAX_RANK);
    for (int i = 0; i < s.rank; i++)
        d[i] = s.d[i];
    r->rank = s.rank, r->dims = d;
    return r;
}

/* ---- values ---------------------------------------------------------------- */

static Value *lookup(Imp *m, const char *name) { return map_get(&m->values, name); }

static bool define(Imp *m, const char *name, Value *v)
{
    if (!name || !*name)
        return true;                    /* an output nobody may use */
    if (lookup(m, name))
        return fail("value '%s' is defined twice", name);
    map_put(&m->values, name, v);
    return true;
}

static bool given(ONode *n, size_t i) { return i < n->n_input && n->input[i] && n->input[i][0]; }
static bool given_output(ONode *n, size_t i) { return i < n->n_output && n->output[i] && n->output[i][0]; }

/* Input i of n (which must be given), defined by an earlier node. */
static Value *input(Imp *m, ONode *n, size_t i)
{
    if (!given(n, i)) {
        fail("input %zu is missing", i + 1);
        return NULL;
    }
    Value *v = lookup(m, n->input[i]);
    if (!v)
        fail("input %zu ('%s') is not defined by an earlier node, an initializer or the graph's input", i + 1,
             n->input[i]);
    return v;
}

/* Input i as a constant tensor, or an error saying it must be one. */
static Tensor *constant(Imp *m, ONode *n, size_t i, const char *what)
{
    Value *v = input(m, n, i);
    if (v && !v->c)
        fail("%s (input %zu, '%s') must be an initializer or a Constant", what, i + 1, n->input[i]);
    return v ? v->c : NULL;
}

static Value *result(Node *node, Shape s, bool batched)
{
    Value *v = arena_alloc(sizeof *v);
    v->node = node, v->shape = s, v->batched = batched;
    return v;
}

/* Whether the first of n's outputs is the only one used. */
static bool one_output(Imp *m, ONode *n)
{
    for (size_t i = 1; i < n->n_output; i++)
        if (n->output[i] && n->output[i][0] && map_get(&m->uses, n->output[i]) && !lookup(m, n->output[i]))
            return fail("its output %zu ('%s') is used, and cnnc computes only the first", i + 1, n->output[i]);
    return true;
}

static bool shape_from(const Tensor *t, int drop, Shape *s)
{
    if (t->rank - drop > MAX_RANK || t->rank < drop)
        return fail("'%s' has rank %d; cnnc takes at most %d dimensions", t->name, t->rank, MAX_RANK + drop);
    s->rank = t->rank - drop;
    for (int i = 0; i < s->rank; i++)
        s->d[i] = t->dims[i + drop];
    return true;
}

/* ---- parameters ------------------------------------------------------------ */

static Node *param(Imp *m, const char *name, Shape s, const float *data, bool weight, bool buffer)
{
    if (shape_count(s) < 1) {
        fail("parameter '%s' would have shape %s, which holds no values", name, shape_str(s));
        return NULL;
    }
    if (s.rank > MAX_PARAM_RANK) {
        fail("parameter '%s' would have shape %s; cnnc's parameters have at most %d dimensions", name,
             shape_str(s), MAX_PARAM_RANK);
        return NULL;
    }
    if (map_get(&m->pnames, name)) {
        for (int k = 2;; k++) {
            const char *alt = arena_printf("%s_%d", name, k);
            if (!map_get(&m->pnames, alt)) {
                name = alt;
                break;
            }
        }
    }
    map_put(&m->pnames, name, (void *)1);
    Param p = {.name = name, .shape = s, .init = INIT_DATA, .data = data, .is_weight = weight,
               .is_buffer = buffer, .loc = noloc};
    layer_fans(&p);
    int i = graph_param(m->g, p);
    Node *n = graph_node(m->g, OP_PARAM, noloc, s, 0, NULL);
    if (n)
        n->param = i, n->label = name;
    return n;
}

/* "conv3", as the language names the third conv layer */
static const char *layer_name(Imp *m, OpKind op, const char *rule)
{
    return arena_printf("%s%d", rule, ++m->count[op]);
}

/* A constant as a node of shape s (its values, in order): a scalar is a
 * const, anything else a parameter named after the tensor. */
static Node *const_node(Imp *m, Tensor *t, Shape s)
{
    const float *f = numbers(m, t);
    if (!f)
        return NULL;
    if (t->count == 1 && s.rank == 0) {
        Node *n = graph_node(m->g, OP_CONST, noloc, s, 0, NULL);
        if (n)
            n->value = f[0];
        return n;
    }
    return param(m, identifier(t->name, "t_"), s, f, false, false);
}

/* The node of v with v's ONNX shape (a constant: its whole shape). */
static Node *node_of(Imp *m, Value *v)
{
    if (v->c && !v->node) {
        Shape s;
        if (!shape_from(v->c, 0, &s))
            return NULL;
        if (v->c->count == 1)
            s.rank = 0;                 /* a scalar: a const */
        v->node = const_node(m, v->c, s);
        return v->node;
    }
    if (v->node && !shape_eq(v->node->shape, v->shape)) {
        Node *r = graph_node(m->g, OP_FLATTEN, noloc, v->shape, 1, &v->node);
        if (r)
            v->node = r;
        return r;
    }
    return v->node;
}

/* Conv, pooling, BatchNormalization and LRN take ONNX's dimension 0 as the
 * batch (N of [N, C, H, W]): a model read unbatched has none. */
static bool batch_needed(void)
{
    return lead || fail("it takes dimension 0 of its input as the batch ([N, C, H, W]), and the model is read "
                        "unbatched (--unbatched)");
}

/* x must be computed from the input, with `rank` dimensions after the batch
 * (rank < 0: any); what: the operator's expectation, for the message. */
static Node *batched_input(Imp *m, ONode *n, size_t i, int rank, const char *what)
{
    Value *v = input(m, n, i);
    if (!v)
        return NULL;
    if (!v->batched) {
        fail("input %zu ('%s') is a constant; cnnc takes %s computed from the network's input", i + 1,
             n->input[i], what);
        return NULL;
    }
    if (rank >= 0 && v->shape.rank != rank) {
        fail("input %zu ('%s') has shape %s; cnnc takes %s", i + 1, n->input[i], batch_str(v->shape), what);
        return NULL;
    }
    return node_of(m, v);
}

/* ---- windows: Conv, MaxPool, AveragePool ------------------------------------ */

/* A window's attribute of one value per spatial dimension: dims 2 (height
 * *a and width *b), or 1 (1-D pooling, seen as an image of height 1: the
 * width *b); absent, *a and *b are left as they are. */
static bool per_dim(ONode *n, const char *name, int dims, int64_t lo, int64_t hi, int *a, int *b)
{
    const int64_t *v;
    size_t cnt;
    if (!attr_ints(n, name, &v, &cnt))
        return false;
    if (cnt == 0)
        return true;
    if (cnt != (size_t)dims)
        return fail("attribute '%s' has %zu values; cnnc takes %s", name, cnt,
                    dims == 2 ? "2-D windows (2 values)" : "1-D windows here (1 value)");
    for (size_t i = 0; i < cnt; i++)
        if (v[i] < lo || v[i] > hi)
            return fail("attribute '%s' has %lld; its values must be from %lld to %lld", name, (long long)v[i],
                        (long long)lo, (long long)hi);
    if (dims == 2)
        *a = (int)v[0];
    *b = (int)v[dims - 1];
    return true;
}

/* auto_pad SAME_UPPER / SAME_LOWER: the output is ceil(in / stride); the
 * padding it takes goes to the end (UPPER) or the start (LOWER) when odd. */
static bool same_pad(int64_t in, int64_t span, int stride, bool upper, int *begin, int *end)
{
    int64_t out = (in + stride - 1) / stride, total = (out - 1) * stride + span - in;
    if (total < 0)
        total = 0;
    if (total > 2 * (int64_t)MAX_WINDOW)
        return false;
    *begin = (int)(upper ? total / 2 : total - total / 2);
    *end = (int)(total - *begin);
    return true;
}

/* The window of a Conv (op) or pooling node over x [C, H, W] with a kernel
 * of kh x kw, in dims spatial dimensions (1: pooling of [C, W], x [C, 1, W]):
 * strides, dilations, pads or auto_pad, and for pooling ceil_mode. */
static bool window(ONode *n, Shape x, int kh, int kw, OpKind op, int dims, Window *w)
{
    *w = (Window){.kh = kh, .kw = kw, .sh = 1, .sw = 1, .dh = 1, .dw = 1, .groups = 1};
    const int64_t *p;
    size_t np;
    const char *autopad, *why;
    int64_t ceil = 0;
    bool pool = op != OP_CONV;
    if (!per_dim(n, "strides", dims, 1, MAX_WINDOW, &w->sh, &w->sw) ||
        !per_dim(n, "dilations", dims, 1, MAX_WINDOW, &w->dh, &w->dw) || !attr_ints(n, "pads", &p, &np) ||
        !attr_string(n, "auto_pad", "NOTSET", &autopad) || (pool && !attr_int(n, "ceil_mode", 0, &ceil)))
        return false;
    if (op == OP_AVGPOOL && (w->dh != 1 || w->dw != 1))
        return fail("dilations other than 1 in AveragePool are not supported");
    bool upper = strcmp(autopad, "SAME_UPPER") == 0, lower = strcmp(autopad, "SAME_LOWER") == 0;
    bool valid = strcmp(autopad, "VALID") == 0, notset = strcmp(autopad, "NOTSET") == 0 || !*autopad;
    if (!upper && !lower && !valid && !notset)
        return fail("attribute auto_pad = '%s' is not NOTSET, SAME_UPPER, SAME_LOWER or VALID", autopad);
    int64_t eh = (int64_t)(kh - 1) * w->dh + 1, ew = (int64_t)(kw - 1) * w->dw + 1;   /* the spans */
    if (np && !notset)
        return fail("attributes pads and auto_pad = %s are both given", autopad);
    if (np && np != 2 * (size_t)dims)
        return fail("attribute 'pads' has %zu values; a %d-D window takes %d", np, dims, 2 * dims);
    for (size_t i = 0; i < np; i++)
        if (p[i] < 0 || p[i] > MAX_WINDOW)
            return fail("attribute 'pads' has %lld; cnnc takes pads from 0 to %d", (long long)p[i], MAX_WINDOW);
    if (np == 4)
        w->pt = (int)p[0], w->pl = (int)p[1], w->pb = (int)p[2], w->pr = (int)p[3];
    else if (np == 2)
        w->pl = (int)p[0], w->pr = (int)p[1];
    if (upper || lower) {
        if (!same_pad(x.d[1], eh, w->sh, upper, &w->pt, &w->pb) ||
            !same_pad(x.d[2], ew, w->sw, upper, &w->pl, &w->pr))
            return fail("auto_pad = %s would pad by more than %d", autopad, MAX_WINDOW);
    }
    if (pool && (!layer_pool_pads_ok(x.d[1], w->pt, w->pb, kh, w->dh, &why) ||
                 !layer_pool_pads_ok(x.d[2], w->pl, w->pr, kw, w->dw, &why)))
        return fail("its window (kernel %dx%d, padding %d,%d,%d,%d, dilation %dx%d) does not fit its input %lldx%lld: %s",
                    kh, kw, w->pt, w->pl, w->pb, w->pr, w->dh, w->dw, (long long)x.d[1], (long long)x.d[2], why);
    if (layer_extent(x.d[1], w->pt + w->pb, kh, w->dh, w->sh) < 1 ||
        layer_extent(x.d[2], w->pl + w->pr, kw, w->dw, w->sw) < 1)
        return fail("its kernel %dx%d (spanning %lldx%lld) is larger than its input %lldx%lld padded by %d,%d,%d,%d",
                    kh, kw, (long long)eh, (long long)ew, (long long)x.d[1], (long long)x.d[2], w->pt, w->pl, w->pb, w->pr);
    w->cb = w->pb, w->cr = w->pr;
    if (ceil && notset) {
        w->ceil = true;
        layer_ceil_extent(x.d[1], w->pt, &w->pb, (int)eh, w->sh);
        layer_ceil_extent(x.d[2], w->pl, &w->pr, (int)ew, w->sw);
    }
    return true;
}

static Shape windowed(Shape x, int64_t c, const Window *w)
{
    return shape_of(3, c, layer_extent(x.d[1], w->pt + w->pb, w->kh, w->dh, w->sh),
                    layer_extent(x.d[2], w->pl + w->pr, w->kw, w->dw, w->sw));
}

/* kernel_shape, when given, must agree with the weights' */
static bool kernel_shape(ONode *n, int *kh, int *kw, int dims, bool required)
{
    int h = *kh, w = *kw;
    if (!attr(n, "kernel_shape")) {
        return !required || fail("attribute 'kernel_shape' is missing");
    }
    if (!per_dim(n, "kernel_shape", dims, 1, MAX_WINDOW, &h, &w))
        return false;
    if (!required && (h != *kh || w != *kw))
        return fail("attribute kernel_shape = [%d, %d] disagrees with the weights' %dx%d", h, w, *kh, *kw);
    *kh = h, *kw = w;
    return true;
}

/* ---- the operators ----------------------------------------------------------- */

typedef bool Convert(Imp *m, ONode *n);

/* The node's first output is y. */
static bool out(Imp *m, ONode *n, Value *y)
{
    if (!y || (y->node == NULL && !y->c))
        return false;
    if (n->n_output < 1)
        return fail("it has no output");
    return one_output(m, n) && define(m, n->output[0], y);
}

static bool out_node(Imp *m, ONode *n, Node *y)
{
    return y && out(m, n, result(y, y->shape, y->batched));
}

/* Conv: y = W * x + B, W [M, C / group, kh, kw], B [M] */
static bool op_conv(Imp *m, ONode *n)
{
    Node *x = !batch_needed() ? NULL : batched_input(m, n, 0, 3, "an image [N, C, H, W] (2-D convolutions)");
    Tensor *wt = x ? constant(m, n, 1, "the weights") : NULL;
    if (!wt)
        return false;
    if (wt->rank != 4)
        return fail("its weights '%s' have shape %s; a 2-D convolution's are [M, C / group, kh, kw]", wt->name,
                    dims_str(wt->rank, wt->dims));
    const float *wd = floats(m, wt);
    int64_t group, C = x->shape.d[0], M = wt->dims[0];
    if (!wd || !attr_int(n, "group", 1, &group))
        return false;
    if (group < 1 || group > C || C % group || M % group || wt->dims[1] != C / group)
        return fail("group = %lld does not fit %lld input channels and weights %s", (long long)group, (long long)C,
                    dims_str(4, wt->dims));
    if (wt->dims[2] > MAX_WINDOW || wt->dims[3] > MAX_WINDOW || wt->dims[2] < 1 || wt->dims[3] < 1)
        return fail("its kernel %lldx%lld is too large", (long long)wt->dims[2], (long long)wt->dims[3]);
    int kh = (int)wt->dims[2], kw = (int)wt->dims[3];
    Window w;
    if (!kernel_shape(n, &kh, &kw, 2, false) || !window(n, x->shape, kh, kw, OP_CONV, 2, &w))
        return false;
    w.groups = (int)group;
    Tensor *bt = given(n, 2) ? constant(m, n, 2, "the bias") : NULL;
    const float *bd = bt ? floats(m, bt) : NULL;
    if (given(n, 2) && !bd)
        return false;
    if (bt && bt->count != M)
        return fail("its bias '%s' has %lld values for %lld output channels", bt->name, (long long)bt->count,
                    (long long)M);
    const char *pre = layer_name(m, OP_CONV, "conv");
    Node *in[3] = {x, param(m, arena_printf("%s.weight", pre), shape_of(4, M, C / group, (int64_t)kh, (int64_t)kw),
                            wd, true, false), NULL};
    if (bt)
        in[2] = param(m, arena_printf("%s.bias", pre), shape_of(1, M), bd, false, false);
    if (!in[1] || (bt && !in[2]))
        return false;
    Node *y = graph_node(m->g, OP_CONV, noloc, windowed(x->shape, M, &w), bt ? 3 : 2, in);
    if (y)
        y->win = w, y->label = pre;
    return out_node(m, n, y);
}

/* A dense layer on x [K]: W [N, K] (PyTorch's layout), b [N] or none. */
static Node *dense(Imp *m, Node *x, int64_t N, const float *w, const float *b)
{
    int64_t K = x->shape.d[0];
    const char *pre = layer_name(m, OP_DENSE, "dense");
    Node *in[3] = {x, param(m, arena_printf("%s.weight", pre), shape_of(2, N, K), w, true, false), NULL};
    if (b)
        in[2] = param(m, arena_printf("%s.bias", pre), shape_of(1, N), b, false, false);
    if (!in[1] || (b && !in[2]))
        return NULL;
    Node *y = graph_node(m->g, OP_DENSE, noloc, shape_of(1, N), b ? 3 : 2, in);
    if (y)
        y->label = pre;
    return y;
}

/* B [rows, cols] transposed and scaled: [cols, rows] */
static float *transposed(const float *b, int64_t rows, int64_t cols, float scale)
{
    float *t = arena_alloc(sizeof(float) * (size_t)(rows * cols) + 1);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++)
            t[j * rows + i] = scale * b[i * cols + j];
    return t;
}

/* n values times s */
static float *scaled(const float *v, int64_t n, float s)
{
    float *t = arena_alloc(sizeof(float) * (size_t)n + 1);
    for (int64_t i = 0; i < n; i++)
        t[i] = s * v[i];
    return t;
}

/* Gemm read unbatched, A a computed matrix [M, K]: a matmul by alpha B'
 * (a parameter named after B), plus beta C (of any shape that broadcasts). */
static bool gemm_matrix(Imp *m, ONode *n, Node *x, bool tb, float alpha, float beta)
{
    Tensor *bt = constant(m, n, 1, "B");
    const float *bd = bt ? floats(m, bt) : NULL;
    if (!bd)
        return false;
    int64_t M = x->shape.d[0], K = x->shape.d[1];
    if (bt->rank != 2 || bt->dims[tb ? 1 : 0] != K)
        return fail("B '%s' has shape %s, which cannot multiply %s%s", bt->name, dims_str(bt->rank, bt->dims),
                    shape_str(x->shape), tb ? " (transB = 1)" : "");
    int64_t N = bt->dims[tb ? 0 : 1];
    const float *w = tb ? transposed(bd, N, K, alpha) : scaled(bd, K * N, alpha);
    Node *in[2] = {x, param(m, identifier(bt->name, "t_"), shape_of(2, K, N), w, true, false)};
    Node *y = in[1] ? graph_node(m->g, OP_MATMUL, noloc, shape_of(2, M, N), 2, in) : NULL;
    if (y && given(n, 2) && beta != 0) {
        Tensor *ct = constant(m, n, 2, "C");
        const float *cd = ct ? floats(m, ct) : NULL;
        Shape cs;
        if (!cd || !shape_from(ct, 0, &cs))
            return false;
        Node *cn = ct->count == 1 ? graph_node(m->g, OP_CONST, noloc, shape_of(0), 0, NULL)
                                  : param(m, identifier(ct->name, "t_"), cs, scaled(cd, ct->count, beta), false, false);
        if (cn && ct->count == 1)
            cn->value = beta * cd[0];
        Builder bld = {.g = m->g};
        y = cn ? shape_binary(&bld, OP_ADD, noloc, y, cn) : NULL;
    }
    return out_node(m, n, y);
}

/* Gemm: y = alpha A' B' + beta C, A the batch [N, K] (transA = 0); read
 * unbatched, A may be a matrix, transposed too (gemm_matrix) */
static bool op_gemm(Imp *m, ONode *n)
{
    int64_t ta, tb;
    float alpha, beta;
    if (!attr_int(n, "transA", 0, &ta) || !attr_int(n, "transB", 0, &tb) || !attr_float(n, "alpha", 1, &alpha) ||
        !attr_float(n, "beta", 1, &beta))
        return false;
    Value *a = input(m, n, 0);
    if (!lead && a && a->batched && a->shape.rank == 2) {      /* read unbatched: A' a transpose if need be */
        Node *x = node_of(m, a);
        if (x && ta)
            x = graph_node(m->g, OP_TRANSPOSE, noloc, shape_of(2, x->shape.d[1], x->shape.d[0]), 1, &x);
        return x && gemm_matrix(m, n, x, tb, alpha, beta);
    }
    if (ta)
        return fail(lead ? "transA = 1 would transpose the batch; cnnc takes the batch as A's rows (unless the model "
                           "is read unbatched, --unbatched)"
                         : "transA = 1 needs A a matrix");
    Node *x = a ? batched_input(m, n, 0, 1, lead ? "a matrix [N, K]" : "a matrix [M, K] or a vector [K]") : NULL;
    Tensor *bt = x ? constant(m, n, 1, "B") : NULL;
    const float *bd = bt ? floats(m, bt) : NULL;
    if (!bd)
        return false;
    int64_t K = x->shape.d[0];
    if (bt->rank != 2 || bt->dims[tb ? 1 : 0] != K)
        return fail("B '%s' has shape %s, which cannot multiply [N, %lld]%s", bt->name, dims_str(bt->rank, bt->dims),
                    (long long)K, tb ? " (transB = 1)" : "");
    int64_t N = bt->dims[tb ? 0 : 1];
    const float *w = bd;
    if (!tb)
        w = transposed(bd, K, N, alpha);
    else if (alpha != 1)
        w = scaled(bd, N * K, alpha);
    float *bias = NULL;
    if (given(n, 2) && beta != 0) {
        Tensor *ct = constant(m, n, 2, "C");
        const float *cd = ct ? floats(m, ct) : NULL;
        if (!cd)
            return false;
        bool row = ct->rank <= 2 && (ct->rank < 2 || ct->dims[0] == 1) && (ct->count == N || ct->count == 1);
        if (!row)
            return fail("C '%s' has shape %s; cnnc takes a bias [%lld] (or [1, %lld], or one value)", ct->name,
                        dims_str(ct->rank, ct->dims), (long long)N, (long long)N);
        bias = arena_alloc(sizeof(float) * (size_t)N + 1);
        for (int64_t j = 0; j < N; j++)
            bias[j] = beta * cd[ct->count == 1 ? 0 : j];
    }
    return out_node(m, n, dense(m, x, N, w, bias));
}

static Node *operand(Imp *m, ONode *n, Value *v, int rank, size_t i);

/* MatMul: the batch [N, K] by a constant [K, M] is a dense layer without a
 * bias; [N, S, K] by [K, M], stacks of matrices ([N, ..., M, K] by [..., K,
 * P], the stacks broadcast) and products of computed values are matmuls. */
static bool op_matmul(Imp *m, ONode *n)
{
    Value *a = input(m, n, 0), *b = a ? input(m, n, 1) : NULL;
    if (!b)
        return false;
    if (!a->batched)
        return fail("its first input '%s' is a constant; cnnc takes the batch as the first operand", n->input[0]);
    if (b->c && b->c->rank == 2 && a->shape.rank == 1) {
        const float *bd = floats(m, b->c);
        Node *x = node_of(m, a);
        if (!bd || !x)
            return false;
        if (b->c->dims[0] != x->shape.d[0])
            return fail("cannot multiply [N, %lld] by '%s' %s", (long long)x->shape.d[0], b->c->name,
                        dims_str(2, b->c->dims));
        return out_node(m, n, dense(m, x, b->c->dims[1], transposed(bd, b->c->dims[0], b->c->dims[1], 1), NULL));
    }
    Node *x = node_of(m, a);
    int p = x ? x->shape.rank : 0;
    if (x && lead && (p < 2 ? b->batched || (b->c && b->c->rank > 2) : b->batched && b->shape.rank != p))
        return fail("cnnc cannot multiply these shapes (%s after the batch by %s%s): the product would mix the "
                    "batch with the matrices' dimensions", shape_str(x->shape),
                    b->c ? dims_str(b->c->rank, b->c->dims) : shape_str(b->shape), b->batched ? " after the batch" : "");
    /* a constant B with one more dimension than A's example has it for the batch, of 1 */
    Node *y = x ? (b->c && p >= 2 ? operand(m, n, b, p, 1) : node_of(m, b)) : NULL;
    if (!y)
        return false;
    Shape q = y->shape;
    bool stacked = p > 2 || q.rank > 2;
    bool ranks = stacked ? p >= 2 && q.rank >= 2 : (p == 2 && (q.rank == 1 || q.rank == 2)) || (p == 1 && q.rank == 2);
    if (!ranks || x->shape.d[p - 1] != q.d[q.rank >= 2 ? q.rank - 2 : 0])
        return fail("cnnc cannot multiply these shapes (%s by %s after the batch)", shape_str(x->shape),
                    shape_str(q));
    Builder bld = {.g = m->g};
    return out_node(m, n, shape_matmul(&bld, noloc, x, y));
}

/* An operand of a binary operator whose other operand has `rank` dimensions
 * after the batch (-1: it is a constant too): a constant with the batch's
 * dimension too (of 1) loses it. */
static Node *operand(Imp *m, ONode *n, Value *v, int rank, size_t i)
{
    if (!v->batched && !v->c && rank >= 0 && lead && v->node->shape.rank > rank) {
        fail("input %zu ('%s') of shape %s would broadcast over the batch", i + 1, n->input[i],
             shape_str(v->node->shape));
        return NULL;
    }
    if (v->batched || rank < 0 || !v->c)
        return node_of(m, v);
    Shape s;
    int drop = lead && v->c->rank == rank + 1 ? 1 : 0;
    if ((lead && v->c->rank > rank + 1) || (drop && v->c->dims[0] != 1)) {
        fail("input %zu ('%s') of shape %s would broadcast over the batch", i + 1, n->input[i],
             dims_str(v->c->rank, v->c->dims));
        return NULL;
    }
    if (!shape_from(v->c, drop, &s))
        return NULL;
    if (v->c->count == 1)
        s.rank = 0;
    return const_node(m, v->c, s);
}

/* Add, Sub, Mul, Div with NumPy broadcasting */
static bool binary(Imp *m, ONode *n, OpKind op)
{
    Value *a = input(m, n, 0), *b = a ? input(m, n, 1) : NULL;
    if (!b)
        return false;
    if (a->batched && b->batched && a->shape.rank != b->shape.rank)
        return fail("its inputs have %d and %d dimensions; cnnc broadcasts two computed values of equal rank only",
                    a->shape.rank + lead, b->shape.rank + lead);
    Node *x = operand(m, n, a, b->batched ? b->shape.rank : -1, 0);
    Node *y = x ? operand(m, n, b, a->batched ? a->shape.rank : -1, 1) : NULL;
    if (!y)
        return false;
    Builder bld = {.g = m->g};
    Node *z = shape_binary(&bld, op, noloc, x, y);
    return out_node(m, n, z);
}

static bool op_add(Imp *m, ONode *n) { return binary(m, n, OP_ADD); }
static bool op_sub(Imp *m, ONode *n) { return binary(m, n, OP_SUB); }
static bool op_mul(Imp *m, ONode *n) { return binary(m, n, OP_MUL); }
static bool op_div(Imp *m, ONode *n) { return binary(m, n, OP_DIV); }

/* An elementwise operator on x: the node on x's node, x's ONNX shape. */
static Node *unary(Imp *m, ONode *n, OpKind op, Value **x)
{
    *x = input(m, n, 0);
    Node *in = *x ? ((*x)->batched && (*x)->node ? (*x)->node : node_of(m, *x)) : NULL;
    return in ? graph_node(m->g, op, noloc, in->shape, 1, &in) : NULL;
}

static bool elementwise(Imp *m, ONode *n, OpKind op, float alpha, float beta)
{
    Value *x;
    Node *y = unary(m, n, op, &x);
    if (!y)
        return false;
    y->alpha = alpha, y->beta = beta;
    return out(m, n, result(y, x->batched ? x->shape : y->shape, y->batched));
}

static bool op_relu(Imp *m, ONode *n) { return elementwise(m, n, OP_RELU, 0, 0); }
static bool op_sigmoid(Imp *m, ONode *n) { return elementwise(m, n, OP_SIGMOID, 0, 0); }
static bool op_tanh(Imp *m, ONode *n) { return elementwise(m, n, OP_TANH, 0, 0); }

static bool op_leaky(Imp *m, ONode *n)
{
    float a;
    return attr_float(n, "alpha", 0.01f, &a) && elementwise(m, n, OP_LEAKY, a, 0);
}

/* An optional scalar input (Clip's min and max from opset 11, Dropout's ratio). */
static bool scalar_input(Imp *m, ONode *n, size_t i, const char *what, float *v)
{
    if (!given(n, i))
        return true;
    Tensor *t = constant(m, n, i, what);
    const float *f = t ? numbers(m, t) : NULL;
    if (!f)
        return false;
    if (t->count != 1)
        return fail("%s '%s' has %lld values; it must be one", what, t->name, (long long)t->count);
    *v = f[0];
    return true;
}

/* Clip: min(max(x, min), max); attributes before opset 11, inputs from it */
static bool op_clip(Imp *m, ONode *n)
{
    float lo = -FLT_MAX, hi = FLT_MAX;
    bool ok = m->opset < 11 ? attr_float(n, "min", -FLT_MAX, &lo) && attr_float(n, "max", FLT_MAX, &hi)
                            : scalar_input(m, n, 1, "min", &lo) && scalar_input(m, n, 2, "max", &hi);
    if (!ok)
        return false;
    if (!(lo <= hi) || !isfinite(lo) || !isfinite(hi))
        return fail("its bounds min = %g, max = %g must be finite with min <= max", lo, hi);
    return elementwise(m, n, OP_CLIP, lo, hi);
}

/* Dropout's second output, its mask: all true where nothing is dropped
 * (inference, or ratio 0), else the drawn mask `keep` (0 or 1, a constant of
 * the input's shape) broadcast over the batch. */
static bool dropout_mask(Imp *m, ONode *n, Node *keep)
{
    Value *x = input(m, n, 0);
    Node *in = x ? node_of(m, x) : NULL;
    if (!in)
        return false;
    if (!x->batched)
        return fail("its input '%s' is a constant", str(n->input[0]));
    Node *k = graph_node(m->g, OP_FILL, noloc, in->shape, 1, &in);
    if (!k)
        return false;
    k->value = 1, k->batched = true;
    if (keep) {
        Builder bld = {.g = m->g};
        if (!(k = shape_binary(&bld, OP_MUL, noloc, k, keep)))
            return false;
    }
    Value *v = result(k, x->shape, true);
    v->type = ET_BOOL;
    return define(m, n->output[1], v);
}

enum { MAX_MASK = 1 << 24 };           /* values of a drawn mask: 64 MB of floats */

/* The mask of `count` values ONNX's reference Dropout draws with NumPy:
 * np.random.seed(seed); np.random.uniform(0, 1, X.shape) >= ratio (1 kept, 0
 * dropped), compared as NumPy does, float64 against the float32 ratio. */
static float *draw_mask(int64_t count, uint32_t seed, float p)
{
    float *k = arena_alloc(sizeof(float) * (size_t)count);
    Mt19937 mt;
    mt_seed(&mt, seed);
    for (int64_t i = 0; i < count; i++)
        k[i] = mt_double(&mt) >= (double)p;
    return k;
}

/* Dropout in training mode with ratio p > 0 and a seed, read unbatched: the
 * mask ONNX's reference implementation draws, np.random.seed(seed);
 * mask = np.random.uniform(0, 1, X.shape) >= ratio, drawn here at compile
 * time (util.c's MT19937 repeats NumPy's draws), so y = x * mask / (1 - p)
 * with a constant mask (a buffer, dropout1_mask: `train` leaves it). The
 * batched reading cannot: the mask spans the whole input, batch included. */
static bool dropout_seeded(Imp *m, ONode *n, float p)
{
    int64_t seed;
    if (!attr(n, "seed"))
        return fail("training_mode is true with ratio %g and no seed: its output would be random; cnnc applies "
                    "dropout only when training (`./NAME train`), or, given a seed attribute, draws ONNX's "
                    "mask when compiling", p);
    if (!attr_int(n, "seed", 0, &seed))
        return false;
    if (seed < 0 || seed > (int64_t)UINT32_MAX)
        return fail("its seed %lld is not from 0 to 4294967295 (NumPy's np.random.seed, which draws ONNX's "
                    "mask, takes those)", (long long)seed);
    if (lead)
        return fail("training_mode is true with ratio %g: its mask (from seed %lld) spans the whole input, the "
                    "batch included, so the batched reading cannot apply it example by example; read the "
                    "model unbatched (--unbatched: the whole input one example)", p, (long long)seed);
    Value *x = input(m, n, 0);
    Node *in = x ? node_of(m, x) : NULL;
    if (!in)
        return false;
    if (!x->batched)
        return fail("its input '%s' is a constant; cnnc drops out of a value computed from the network's input",
                    str(n->input[0]));
    int64_t count = shape_count(in->shape);
    if (count > MAX_MASK)
        return fail("its input '%s' of shape %s has %lld values; cnnc draws a mask of at most %d when compiling",
                    str(n->input[0]), batch_str(x->shape), (long long)count, MAX_MASK);
    const char *name = arena_printf("%s_mask", layer_name(m, OP_DROPOUT, "dropout"));
    Node *keep = param(m, name, in->shape, draw_mask(count, (uint32_t)seed, p), false, true);   /* a buffer */
    Node *c = keep ? graph_node(m->g, OP_CONST, noloc, (Shape){0}, 0, NULL) : NULL;
    if (!c)
        return false;
    c->value = 1 - p;
    Builder bld = {.g = m->g};
    Node *y = shape_binary(&bld, OP_MUL, noloc, in, keep);
    y = y ? shape_binary(&bld, OP_DIV, noloc, y, c) : NULL;
    if (!y)
        return false;
    if (given_output(n, 1) && map_get(&m->uses, n->output[1]) && !dropout_mask(m, n, keep))
        return false;
    return out(m, n, result(y, x->shape, true));
}

/* Dropout: the identity at inference, dropout(ratio) in training;
 * training_mode (a constant boolean) true with ratio 0 is the identity, with
 * a ratio above 0 and a seed, read unbatched, a drawn mask (dropout_seeded) */
static bool op_dropout(Imp *m, ONode *n)
{
    float p = 0.5f, train = 0;
    bool ok = m->opset < 12 ? attr_float(n, "ratio", 0.5f, &p)
                            : scalar_input(m, n, 1, "ratio", &p) && scalar_input(m, n, 2, "training_mode", &train);
    if (!ok)
        return false;
    if (!(p >= 0 && p < 1))
        return fail("its ratio %g must be from 0 up to 1", p);
    if (train != 0 && p != 0)
        return dropout_seeded(m, n, p);
    if (given_output(n, 1) && map_get(&m->uses, n->output[1]) && !dropout_mask(m, n, NULL))
        return false;
    return elementwise(m, n, OP_DROPOUT, p, 0);
}

static bool op_identity(Imp *m, ONode *n)
{
    Value *x = input(m, n, 0);
    return x && out(m, n, x);
}

/* Constant: value (a tensor); from opset 12 also value_float(s), value_int(s) */
static bool op_constant(Imp *m, ONode *n)
{
    Onnx__TensorProto *p = NULL;
    for (size_t i = 0; i < n->n_attribute && !p; i++) {
        const Onnx__AttributeProto *a = n->attribute[i];
        const char *k = a ? str(a->name) : "";
        p = arena_alloc(sizeof *p);
        onnx__tensor_proto__init(p);
        int type = a ? attr_type(a) : 0;
        if (strcmp(k, "value") == 0 && type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR && a->t)
            p = a->t;
        else if (strcmp(k, "value_float") == 0 && type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT)
            p->data_type = 1, p->n_float_data = 1, p->float_data = (float *)&a->f;
        else if (strcmp(k, "value_floats") == 0 && type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS)
            p->data_type = 1, p->n_float_data = a->n_floats, p->float_data = a->floats, p->n_dims = 1,
            p->dims = arena_alloc(sizeof(int64_t)), p->dims[0] = (int64_t)a->n_floats;
        else if (strcmp(k, "value_int") == 0 && type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT)
            p->data_type = 7, p->n_int64_data = 1, p->int64_data = (int64_t *)&a->i;
        else if (strcmp(k, "value_ints") == 0 && type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS)
            p->data_type = 7, p->n_int64_data = a->n_ints, p->int64_data = a->ints, p->n_dims = 1,
            p->dims = arena_alloc(sizeof(int64_t)), p->dims[0] = (int64_t)a->n_ints;
        else
            p = NULL;
    }
    if (!p)
        return fail("cnnc takes a Constant's value as a tensor, a float, floats, an int or ints");
    Value *v = arena_alloc(sizeof *v);
    v->c = tensor_of(p, arena_strdup(n->n_output ? str(n->output[0]) : ""));
    if (v->c->rank < 0 || v->c->count < 0)
        return fail("its value has an impossible shape");
    return out(m, n, v);
}

/* Softmax within each example: before opset 13 over the axes from `axis`
 * on (the example seen as a matrix [before, after], softmax along its rows),
 * from 13 along `axis` alone. Over all of the example, it is a vector's. */
static bool op_softmax(Imp *m, ONode *n)
{
    Value *x = input(m, n, 0);
    int64_t axis;
    if (!x || !attr_int(n, "axis", m->opset < 13 ? 1 : -1, &axis))
        return false;
    if (!x->batched)
        return fail("its input is a constant");
    int rank = x->shape.rank + lead;
    if (axis < 0)
        axis += rank;
    int64_t a = axis - lead, count = shape_count(x->shape), before = 1;     /* a: the axis in the example */
    if (a < 0 || a >= x->shape.rank)
        return fail("axis = %lld on %s: %s", (long long)axis, batch_str(x->shape),
                    a == -1 ? "cnnc's softmax works within each example, not across the batch" : "out of range");
    for (int i = 0; i < a; i++)
        before *= x->shape.d[i];
    Shape s = x->shape;
    int along = (int)a;
    if (m->opset < 13 ? before == 1 : count == x->shape.d[a])
        s = shape_of(1, count), along = 0;
    else if (m->opset < 13)
        s = shape_of(2, before, count / before), along = 1;
    Node *v = shape_eq(s, x->shape) ? node_of(m, x) : x->node;
    if (v && !shape_eq(v->shape, s))
        v = graph_node(m->g, OP_FLATTEN, noloc, s, 1, &v);
    Node *y = v ? graph_node(m->g, OP_SOFTMAX, noloc, s, 1, &v) : NULL;
    if (y)
        y->axis = along;
    return y && out(m, n, result(y, x->shape, true));
}

/* MaxPool's second output, Indices: where each maximum is in the batch
 * [N, C, H, W], an int64 flat index, row-major or (storage_order = 1) with H
 * and W swapped */
static bool maxpool_indices(Imp *m, ONode *n, Node *x, const Window *w, int dims)
{
    int64_t order = 0;
    if (!attr_int(n, "storage_order", 0, &order))
        return false;
    if (dims != 2 || (order != 0 && order != 1))
        return fail("its Indices output is supported for 2-D pooling with storage_order 0 or 1");
    if (shape_count(x->shape) >= (int64_t)1 << 24)     /* the network's floats hold them exactly */
        return fail("its Indices output needs an example [C, H, W] of fewer than 2^24 values");
    Node *k = graph_node(m->g, OP_MAXPOOL_IDX, noloc, windowed(x->shape, x->shape.d[0], w), 1, &x);
    if (!k)
        return false;
    k->win = *w, k->aux = order, k->batched = true;
    Value *v = result(k, k->shape, true);
    v->type = ET_I64;
    return define(m, n->output[1], v);
}

/* An attribute of cnt values (depth, height, width), each from lo to hi,
 * into v; absent, v is left as it is. */
static bool attr3(ONode *n, const char *name, size_t cnt, int64_t lo, int64_t hi, int *v)
{
    const int64_t *a;
    size_t got;
    if (!attr_ints(n, name, &a, &got))
        return false;
    if (got && got != cnt)
        return fail("attribute '%s' has %zu values; a 3-D window takes %zu", name, got, cnt);
    for (size_t i = 0; i < got; i++) {
        if (a[i] < lo || a[i] > hi)
            return fail("attribute '%s' has %lld; its values must be from %lld to %lld", name, (long long)a[i],
                        (long long)lo, (long long)hi);
        v[i] = (int)a[i];
    }
    return true;
}

/* MaxPool, AveragePool over [N, C, D, H, W]: the window axis by axis, then
 * layer_pool3d (2-D pooling of each plane, then along the depth) */
static bool pool3d(Imp *m, ONode *n, OpKind op, Node *x)
{
    int k[3] = {0, 0, 0}, s[3] = {1, 1, 1}, dl[3] = {1, 1, 1}, p[6] = {0};
    int64_t ceil = 0, count_pad = 0;
    const char *autopad, *why;
    if (!attr(n, "kernel_shape"))
        return fail("attribute 'kernel_shape' is missing");
    if (!attr3(n, "kernel_shape", 3, 1, MAX_WINDOW, k) || !attr3(n, "strides", 3, 1, MAX_WINDOW, s) ||
        !attr3(n, "dilations", 3, 1, MAX_WINDOW, dl) || !attr3(n, "pads", 6, 0, MAX_WINDOW, p) ||
        !attr_string(n, "auto_pad", "NOTSET", &autopad) || !attr_int(n, "ceil_mode", 0, &ceil) ||
        (op == OP_AVGPOOL && !attr_int(n, "count_include_pad", 0, &count_pad)))
        return false;
    if (op == OP_AVGPOOL && (dl[0] != 1 || dl[1] != 1 || dl[2] != 1))
        return fail("dilations other than 1 in AveragePool are not supported");
    bool upper = strcmp(autopad, "SAME_UPPER") == 0, lower = strcmp(autopad, "SAME_LOWER") == 0;
    bool notset = strcmp(autopad, "NOTSET") == 0 || !*autopad;
    if (!upper && !lower && !notset && strcmp(autopad, "VALID") != 0)
        return fail("attribute auto_pad = '%s' is not NOTSET, SAME_UPPER, SAME_LOWER or VALID", autopad);
    if (attr(n, "pads") && !notset)
        return fail("attributes pads and auto_pad = %s are both given", autopad);
    int64_t span[3];
    for (int i = 0; i < 3; i++) {
        int64_t in = x->shape.d[i + 1];
        span[i] = (int64_t)(k[i] - 1) * dl[i] + 1;
        if ((upper || lower) && !same_pad(in, span[i], s[i], upper, &p[i], &p[i + 3]))
            return fail("auto_pad = %s would pad by more than %d", autopad, MAX_WINDOW);
        why = "the window is larger than the input and its padding";
        if (span[i] > MAX_WINDOW || !layer_pool_pads_ok(in, p[i], p[i + 3], k[i], dl[i], &why) ||
            layer_extent(in, p[i] + p[i + 3], k[i], dl[i], s[i]) < 1)
            return fail("its window (kernel %dx%dx%d, pads %d,%d,%d,%d,%d,%d, dilations %dx%dx%d) does not fit its "
                        "input %lldx%lldx%lld: %s", k[0], k[1], k[2], p[0], p[1], p[2], p[3], p[4], p[5], dl[0], dl[1],
                        dl[2], (long long)x->shape.d[1], (long long)x->shape.d[2], (long long)x->shape.d[3], why);
    }
    bool c = ceil && notset;
    Window whw = {.kh = k[1], .kw = k[2], .sh = s[1], .sw = s[2], .pt = p[1], .pl = p[2], .pb = p[4], .pr = p[5],
                  .dh = dl[1], .dw = dl[2], .groups = 1, .ceil = c, .count_pad = count_pad != 0, .cb = p[4], .cr = p[5]};
    Window wd = {.kh = k[0], .kw = 1, .sh = s[0], .sw = 1, .pt = p[0], .pb = p[3], .dh = dl[0], .dw = 1,
                 .groups = 1, .ceil = c, .count_pad = count_pad != 0, .cb = p[3]};
    if (c) {
        layer_ceil_extent(x->shape.d[2], whw.pt, &whw.pb, (int)span[1], whw.sh);
        layer_ceil_extent(x->shape.d[3], whw.pl, &whw.pr, (int)span[2], whw.sw);
        layer_ceil_extent(x->shape.d[1], wd.pt, &wd.pb, (int)span[0], wd.sh);
    }
    return out_node(m, n, layer_pool3d(m->g, noloc, op, x, &wd, &whw));
}

/* MaxPool, AveragePool: 2-D over [N, C, H, W]; 1-D over [N, C, W], as 2-D
 * over [N, C, 1, W] (a reshape before and after); 3-D over [N, C, D, H, W]
 * (pool3d) */
static bool pool(Imp *m, ONode *n, OpKind op)
{
    Value *v = batch_needed() ? input(m, n, 0) : NULL;
    int dims = v && v->batched && v->shape.rank == 2 ? 1 : v && v->batched && v->shape.rank == 4 ? 3 : 2;
    if (dims == 3) {
        Node *x = node_of(m, v);
        if (op == OP_MAXPOOL && given_output(n, 1) && map_get(&m->uses, n->output[1]))
            return fail("its Indices output is supported for 2-D pooling with storage_order 0 or 1");
        return x && pool3d(m, n, op, x);
    }
    Node *x = v ? batched_input(m, n, 0, dims + 1, "an image [N, C, H, W] (2-D pooling), [N, C, W] (1-D) or a "
                                "volume [N, C, D, H, W] (3-D)") : NULL;
    if (x && dims == 1)
        x = graph_node(m->g, OP_FLATTEN, noloc, shape_of(3, x->shape.d[0], (int64_t)1, x->shape.d[1]), 1, &x);
    int kh = 1, kw = 1;
    int64_t count_pad = 0;
    Window w;
    if (!x || !kernel_shape(n, &kh, &kw, dims, true) || !window(n, x->shape, kh, kw, op, dims, &w) ||
        (op == OP_AVGPOOL && !attr_int(n, "count_include_pad", 0, &count_pad)))
        return false;
    w.count_pad = count_pad != 0;
    if (op == OP_MAXPOOL && given_output(n, 1) && map_get(&m->uses, n->output[1]) && !maxpool_indices(m, n, x, &w, dims))
        return false;
    Node *y = graph_node(m->g, op, noloc, windowed(x->shape, x->shape.d[0], &w), 1, &x);
    if (y)
        y->win = w;
    if (y && dims == 1)
        return out(m, n, result(y, shape_of(2, y->shape.d[0], y->shape.d[2]), true));
    return out_node(m, n, y);
}

static bool op_maxpool(Imp *m, ONode *n) { return pool(m, n, OP_MAXPOOL); }
static bool op_avgpool(Imp *m, ONode *n) { return pool(m, n, OP_AVGPOOL); }

/* GlobalAveragePool: [C, H, W] -> [C] (ONNX's [C, 1, 1]) */
static bool op_gap(Imp *m, ONode *n)
{
    Node *x = !batch_needed() ? NULL : batched_input(m, n, 0, 3, "an image [N, C, H, W]");
    Node *y = x ? graph_node(m->g, OP_GAP, noloc, shape_of(1, x->shape.d[0]), 1, &x) : NULL;
    return y && out(m, n, result(y, shape_of(3, x->shape.d[0], (int64_t)1, (int64_t)1), true));
}

/* BatchNormalization with training_mode = 1, read unbatched: the statistics
 * of the example [N, C, ...] (its N and positions), and as outputs 2 and 3
 * (when used) the running statistics updated with them */
static bool bn_training(Imp *m, ONode *n)
{
    Value *v = input(m, n, 0);
    if (!v)
        return false;
    Node *x = v->batched ? node_of(m, v) : NULL;
    if (!x || x->shape.rank < 2)
        return x ? fail("its input has shape %s; it takes [N, C, ...]", shape_str(x->shape))
                 : fail("its input '%s' is a constant", str(n->input[0]));
    float eps, momentum;
    if (!attr_float(n, "epsilon", 1e-5f, &eps) || !attr_float(n, "momentum", 0.9f, &momentum))
        return false;
    if (!(eps > 0) || !(momentum >= 0 && momentum <= 1))
        return fail("epsilon = %g must be above 0 and momentum = %g from 0 to 1", eps, momentum);
    int64_t C = x->shape.d[1];
    static const char *const names[] = {"scale", "B", "input_mean", "input_var"};
    static const char *const suffix[] = {"weight", "bias", "running_mean", "running_var"};
    const char *pre = layer_name(m, OP_BATCHNORM, "batchnorm");
    Node *in[5] = {x};
    for (int i = 1; i < 5; i++) {
        Tensor *t = constant(m, n, (size_t)i, names[i - 1]);
        const float *f = t ? floats(m, t) : NULL;
        if (!f)
            return false;
        if (t->count != C)
            return fail("its %s '%s' has %lld values for %lld channels", names[i - 1], t->name, (long long)t->count,
                        (long long)C);
        if (!(in[i] = param(m, arena_printf("%s.%s", pre, suffix[i - 1]), shape_of(1, C), f, false, i >= 3)))
            return false;
    }
    Node *y = NULL;
    for (int k = 2; k >= 0; k--) {             /* the statistics first: then output 1 is one_output's */
        if (k > 0 && !(given_output(n, (size_t)k) && map_get(&m->uses, n->output[k])))
            continue;
        Node *o = graph_node(m->g, OP_BN_EXAMPLE, noloc, k ? shape_of(1, C) : x->shape, 5, in);
        if (!o)
            return false;
        o->aux = k, o->alpha = eps, o->momentum = momentum, o->label = pre, o->batched = true;
        if (k && !define(m, n->output[k], result(o, o->shape, true)))
            return false;
        y = o;
    }
    return out(m, n, result(y, v->shape, true));
}

/* BatchNormalization at inference: the running statistics are buffers */
static bool op_batchnorm(Imp *m, ONode *n)
{
    int64_t training_mode;
    if (!attr_int(n, "training_mode", 0, &training_mode))
        return false;
    if (training_mode && !lead)
        return bn_training(m, n);
    if (training_mode)
        return fail("training_mode = 1 normalizes with statistics over the batch; cnnc takes it only with the "
                    "model read unbatched (--unbatched: the whole input one example)");
    Value *v = batch_needed() ? input(m, n, 0) : NULL;
    if (!v)
        return false;
    if (v->batched && v->shape.rank != 1 && v->shape.rank != 3)
        return fail("its input has shape %s; cnnc's batchnorm takes [N, C, H, W] or [N, C]", batch_str(v->shape));
    Node *x = batched_input(m, n, 0, v->shape.rank, "a value");
    float eps, momentum;
    int64_t spatial, training;
    if (!x || !attr_float(n, "epsilon", 1e-5f, &eps) || !attr_float(n, "momentum", 0.9f, &momentum) ||
        !attr_int(n, "spatial", 1, &spatial) || !attr_int(n, "training_mode", 0, &training))
        return false;
    if (!spatial || training)
        return fail("%s is not supported", !spatial ? "spatial = 0" : "training_mode = 1");
    if (!(eps > 0) || !(momentum >= 0 && momentum <= 1))
        return fail("epsilon = %g must be above 0 and momentum = %g from 0 to 1", eps, momentum);
    int64_t C = x->shape.d[0];
    static const char *const names[] = {"scale", "B", "input_mean", "input_var"};
    static const char *const suffix[] = {"weight", "bias", "running_mean", "running_var"};
    const char *pre = layer_name(m, OP_BATCHNORM, "batchnorm");
    Node *in[5] = {x};
    for (int i = 1; i < 5; i++) {
        Tensor *t = constant(m, n, (size_t)i, names[i - 1]);
        const float *f = t ? floats(m, t) : NULL;
        if (!f)
            return false;
        if (t->count != C)
            return fail("its %s '%s' has %lld values for %lld channels", names[i - 1], t->name, (long long)t->count,
                        (long long)C);
        if (!(in[i] = param(m, arena_printf("%s.%s", pre, suffix[i - 1]), shape_of(1, C), f, false, i >= 3)))
            return false;
    }
    Node *y = graph_node(m->g, OP_BATCHNORM, noloc, x->shape, 5, in);
    if (y)
        y->alpha = eps, y->momentum = 1 - momentum, y->label = pre;
    return out_node(m, n, y);
}

/* LRN: x / (bias + alpha / size * sum of squares over `size` channels)^beta */
static bool op_lrn(Imp *m, ONode *n)
{
    Node *x = !batch_needed() ? NULL : batched_input(m, n, 0, 3, "an image [N, C, H, W]");
    int64_t size;
    float alpha, beta, bias;
    if (!x || !attr_int(n, "size", 0, &size) || !attr_float(n, "alpha", 1e-4f, &alpha) ||
        !attr_float(n, "beta", 0.75f, &beta) || !attr_float(n, "bias", 1, &bias))
        return false;
    if (size < 1 || size > 1024 || size % 2 == 0)
        return fail("size = %lld: cnnc takes an odd size from 1 to 1023 (ONNX and PyTorch center even sizes "
                    "differently)", (long long)size);
    Node *y = graph_node(m->g, OP_LRN, noloc, x->shape, 1, &x);
    if (y)
        y->win.kh = (int)size, y->alpha = alpha, y->beta = beta, y->k = bias;
    return out_node(m, n, y);
}

/* Concat along any axis of the example; read unbatched, constants may join
 * too (batched, a constant would have to vary along the batch). */
static bool op_concat(Imp *m, ONode *n)
{
    int64_t axis;
    if (n->n_input < 1 || n->n_input > 4096)
        return fail("it has %zu inputs", n->n_input);
    if (!attr_int(n, "axis", 1, &axis))
        return false;
    Node **in = arena_alloc(sizeof(Node *) * n->n_input);
    Shape s = {0};
    int a = 0;
    for (size_t i = 0; i < n->n_input; i++) {
        Value *v = input(m, n, i);
        if (!v)
            return false;
        if (!lead && v->c) {
            Shape cs;
            if (!shape_from(v->c, 0, &cs) || !(in[i] = const_node(m, v->c, cs)))
                return false;
        } else if (v->c) {
            return fail("input %zu ('%s') is a constant, which would have to have the batch's size; cnnc joins "
                        "constants only to a model read unbatched (--unbatched)", i + 1, n->input[i]);
        } else if (!(in[i] = batched_input(m, n, i, -1, "values")))
            return false;
        Shape t = in[i]->shape;
        if (i == 0) {
            int rank = t.rank + lead;
            if (axis < 0)
                axis += rank;
            a = (int)(axis - lead);
            if (a < 0 || a >= t.rank)
                return fail("axis = %lld on %s: %s", (long long)axis, batch_str(t),
                            a == -1 ? "cnnc concatenates within each example, not along the batch" : "out of range");
            s = t;
            continue;
        }
        bool fits = t.rank == s.rank;
        for (int k = 0; fits && k < s.rank; k++)
            fits = k == a || t.d[k] == s.d[k];
        if (!fits)
            return fail("its input %zu %s cannot join %s along axis %lld", i + 1, batch_str(t),
                        batch_str(in[0]->shape), (long long)axis);
        if ((s.d[a] += t.d[a]) > MAX_DIM)
            return fail("it would have %lld values along axis %lld", (long long)s.d[a], (long long)axis);
    }
    Node *y = graph_node(m->g, OP_CONCAT, noloc, s, (int)n->n_input, in);
    if (y)
        y->axis = a;
    return out_node(m, n, y);
}

/* ---- reshaping: Flatten, Reshape, Squeeze, Unsqueeze --------------------------- */

/* y is x with per-example shape s (same size): a rank-1 shape is a flatten
 * node, others only relabel x's node (node_of reshapes where needed). */
static bool reshape_to(Imp *m, ONode *n, Value *x, Shape s)
{
    if (shape_count(s) != (x->c ? x->c->count : shape_count(x->shape)))   /* a constant's shape is its Tensor's */
        return fail("it would turn %s into %s", x->c ? dims_str(x->c->rank, x->c->dims) : batch_str(x->shape),
                    x->c ? shape_str(s) : batch_str(s));
    if (x->c) {
        Value *v = arena_alloc(sizeof *v);
        v->c = reshaped(x->c, s);
        return out(m, n, v);
    }
    if (!x->batched)
        return fail("cnnc does not reshape values computed from constants only");
    Node *y = x->node;
    if (s.rank == 1 && !shape_eq(y->shape, s))
        y = graph_node(m->g, OP_FLATTEN, noloc, s, 1, &y);
    return y && out(m, n, result(y, s, true));
}

/* The ONNX shape of a value, the batch (if any) as -1 */
static int full_shape(const Value *x, int64_t *d)
{
    if (x->c) {
        for (int i = 0; i < x->c->rank && i < MAX_RANK + 1; i++)
            d[i] = x->c->dims[i];
        return x->c->rank;
    }
    if (lead)
        d[0] = -1;
    for (int i = 0; i < x->shape.rank; i++)
        d[i + lead] = x->shape.d[i];
    return x->shape.rank + lead;
}

/* Builds y's shape from dims d[0..rank) (the batch first, if any, unless constant) */
static bool reshape_dims(Imp *m, ONode *n, Value *x, const int64_t *d, int rank)
{
    Shape s = {0};
    int skip = x->c ? 0 : lead;
    if (rank - skip > MAX_RANK || rank - skip < 0)
        return fail("it gives %d dimensions; cnnc takes at most %d", rank, MAX_RANK + skip);
    s.rank = rank - skip;
    for (int i = 0; i < s.rank; i++)
        s.d[i] = d[i + skip];
    return reshape_to(m, n, x, s);
}

static bool op_flatten(Imp *m, ONode *n)
{
    Value *x = input(m, n, 0);
    int64_t axis, d[MAX_RANK + 2];
    if (!x || !attr_int(n, "axis", 1, &axis))
        return false;
    int rank = full_shape(x, d);
    if (x->c && rank > MAX_RANK + 1)
        return fail("its input has rank %d", rank);
    if (axis < 0)
        axis += rank;
    if (axis < 0 || axis > rank)
        return fail("axis = %lld is out of range", (long long)axis);
    if (!x->c && lead && axis != 1)
        return fail("axis = %lld would mix the batch with the other dimensions; cnnc flattens from axis 1",
                    (long long)axis);
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < rank; i++)
        *(i < axis ? &outer : &inner) *= d[i];
    int64_t two[2] = {x->c || !lead ? outer : -1, inner};
    return reshape_dims(m, n, x, two, 2);
}

/* Reshape: 0 copies the input's dimension (unless allowzero), -1 takes what
 * is left; the batch must stay first. */
static bool op_reshape(Imp *m, ONode *n)
{
    Value *x = input(m, n, 0);
    Tensor *st = x ? constant(m, n, 1, "the shape") : NULL;
    const int64_t *want = st ? ints(m, st) : NULL;
    int64_t allowzero, d[MAX_RANK + 2], r[MAX_RANK + 2];
    if (!want || !attr_int(n, "allowzero", 0, &allowzero))
        return false;
    int rank = full_shape(x, d);
    if (rank > MAX_RANK + 1)                 /* a constant's: d holds MAX_RANK + 1 */
        return fail("its input has %d dimensions; cnnc takes at most %d", rank, MAX_RANK + 1);
    if (st->count > MAX_RANK + 1 || st->count < 1)
        return fail("the shape '%s' has %lld dimensions; cnnc takes 1 to %d", st->name, (long long)st->count,
                    MAX_RANK + 1);
    int nd = (int)st->count, infer = -1;
    int64_t known = 1, total = x->c ? x->c->count : shape_count(x->shape);
    for (int i = 0; i < nd; i++) {
        r[i] = want[i];
        if (want[i] == 0 && !allowzero)
            r[i] = i < rank ? d[i] : -2;
        if (!x->c && lead && i == 0 && (r[0] == m->batch || want[0] == -1 || r[0] == -1)) {
            r[0] = -1;                  /* the batch: inferred, copied, or the input's fixed batch */
            continue;
        }
        if (r[i] == -1 && infer < 0)
            infer = i;
        else if (r[i] < 0 || !mul_ok(known, r[i], &known))
            return fail("its shape %s does not fit the input %s", dims_str(nd, want), dims_str(rank, d));
    }
    if (!x->c && lead && r[0] != -1)
        return fail("its shape %s does not keep the batch first", dims_str(nd, want));
    if (infer >= 0) {
        if (known == 0 || total % known)
            return fail("its shape %s does not fit the input %s", dims_str(nd, want), dims_str(rank, d));
        r[infer] = total / known;
    }
    return reshape_dims(m, n, x, r, nd);
}

/* The axes of Squeeze and Unsqueeze: an attribute before opset 13, an
 * input from it (*cnt = 0: none given). */
static bool axes(Imp *m, ONode *n, const int64_t **v, int *cnt)
{
    size_t k = 0;
    *v = NULL;
    if (m->opset < 13 && !attr_ints(n, "axes", v, &k))
        return false;
    if (m->opset >= 13 && given(n, 1)) {
        Tensor *t = constant(m, n, 1, "the axes");
        if (!t || !(*v = ints(m, t)))
            return false;
        k = (size_t)t->count;
    }
    if (k > MAX_RANK + 1)
        return fail("it has %zu axes", k);
    *cnt = (int)k;
    return true;
}

/* Marks the axes, each normalized against rank. */
static bool mark_axes(const int64_t *v, int cnt, int rank, bool *mark)
{
    for (int i = 0; i < cnt; i++) {
        int64_t a = v[i] < 0 ? v[i] + rank : v[i];
        if (a < 0 || a >= rank || mark[a])
            return fail("axis %lld is out of range or repeated for rank %d", (long long)v[i], rank);
        mark[a] = true;
    }
    return true;
}

static bool op_squeeze(Imp *m, ONode *n)
{
    Value *x = input(m, n, 0);
    int64_t d[MAX_RANK + 2], r[MAX_RANK + 2];
    bool mark[MAX_RANK + 2] = {0};
    const int64_t *v;
    int cnt, rank = x ? full_shape(x, d) : 0, k = 0;
    if (!x)
        return false;
    if (rank > MAX_RANK + 1)
        return fail("its input has rank %d", rank);
    if (!axes(m, n, &v, &cnt) || !mark_axes(v, cnt, rank, mark))
        return false;
    for (int i = 0; i < rank; i++) {
        bool batch = i == 0 && !x->c && lead;
        if (batch && mark[i])
            return fail("it would squeeze the batch");
        if (mark[i] && d[i] != 1)
            return fail("axis %d has %lld values, not 1", i, (long long)d[i]);
        if (!(mark[i] || (cnt == 0 && !batch && d[i] == 1)))
            r[k++] = d[i];
    }
    return reshape_dims(m, n, x, r, k);
}

static bool op_unsqueeze(Imp *m, ONode *n)
{
    Value *x = input(m, n, 0);
    int64_t d[MAX_RANK + 2], r[2 * MAX_RANK + 4];
    bool mark[2 * MAX_RANK + 4] = {0};
    const int64_t *v;
    int cnt, rank = x ? full_shape(x, d) : 0;
    if (!x)
        return false;
    if (rank > MAX_RANK + 1)
        return fail("its input has rank %d", rank);
    if (!axes(m, n, &v, &cnt) || !mark_axes(v, cnt, rank + cnt, mark))
        return false;
    if (!x->c && lead && mark[0])
        return fail("it would put a dimension before the batch");
    for (int i = 0, k = 0; i < rank + cnt; i++)
        r[i] = mark[i] ? 1 : d[k++];
    return reshape_dims(m, n, x, r, rank + cnt);
}

/* ---- the operator table ------------------------------------------------------- */

static const struct { const char *op; Convert *fn; } rules[] = {
    {"Conv", op_conv}, {"Gemm", op_gemm}, {"MatMul", op_matmul},
    {"Add", op_add}, {"Sub", op_sub}, {"Mul", op_mul}, {"Div", op_div},
    {"Relu", op_relu}, {"Clip", op_clip}, {"LeakyRelu", op_leaky}, {"Sigmoid", op_sigmoid}, {"Tanh", op_tanh},
    {"Softmax", op_softmax}, {"MaxPool", op_maxpool}, {"AveragePool", op_avgpool},
    {"GlobalAveragePool", op_gap}, {"BatchNormalization", op_batchnorm}, {"LRN", op_lrn},
    {"Concat", op_concat}, {"Flatten", op_flatten}, {"Reshape", op_reshape}, {"Squeeze", op_squeeze},
    {"Unsqueeze", op_unsqueeze}, {"Dropout", op_dropout}, {"Identity", op_identity}, {"Constant", op_constant},
};

static Convert *rule(ONode *n)
{
    const char *d = str(n->domain);
    if (*d && strcmp(d, "ai.onnx") != 0)
        return NULL;
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++)
        if (strcmp(rules[i].op, str(n->op_type)) == 0)
            return rules[i].fn;
    return NULL;
}

/* ---- the model ---------------------------------------------------------------- */

/* The default domain's opset, 7 to 17; every unsupported operator named. */
static bool check_model(Imp *m)
{
    m->opset = -1;
    for (size_t i = 0; i < m->model->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *o = m->model->opset_import[i];
        const char *d = o ? str(o->domain) : "x";
        if (!*d || strcmp(d, "ai.onnx") == 0)
            m->opset = o->version;
    }
    if (m->opset < 0)
        return fail("the model imports no version of the ONNX operator set");
    if (m->opset < OPSET_MIN || m->opset > OPSET_MAX)
        return fail("the model uses ONNX opset %lld; cnnc supports opsets %d to %d", (long long)m->opset, OPSET_MIN,
                    OPSET_MAX);
    if (!(m->graph = m->model->graph))
        return fail("the model has no graph");
    int bad = 0;
    for (size_t i = 0; i < m->graph->n_node; i++) {
        ONode *n = m->graph->node[i];
        if (n && rule(n))
            continue;
        diag_context(n ? node_place(n, (int)i) : arena_printf("node %zu", i + 1));
        if (!n)
            fail("the node is empty");
        else if (str(n->domain)[0] && strcmp(n->domain, "ai.onnx") != 0)
            fail("unsupported operator '%s' of domain '%s'", str(n->op_type), n->domain);
        else
            fail("unsupported operator '%s'", str(n->op_type));
        bad++;
    }
    diag_context(NULL);
    if (bad) {
        char *list = "";
        for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++)
            list = arena_printf("%s%s%s", list, i ? ", " : "", rules[i].op);
        note("cnnc imports %s", list);
    }
    return !bad;
}

static void count_uses(Imp *m)
{
    for (size_t i = 0; i < m->graph->n_node; i++)
        for (size_t j = 0; j < m->graph->node[i]->n_input; j++) {
            const char *s = m->graph->node[i]->input[j];
            if (s && *s)
                map_put(&m->uses, s, (void *)((intptr_t)map_get(&m->uses, s) + 1));
        }
    for (size_t i = 0; i < m->graph->n_output; i++)
        if (m->graph->output[i] && m->graph->output[i]->name)
            map_put(&m->uses, m->graph->output[i]->name, (void *)1);
}

static bool initializers(Imp *m)
{
    for (size_t i = 0; i < m->graph->n_initializer; i++) {
        const Onnx__TensorProto *p = m->graph->initializer[i];
        const char *name = p ? str(p->name) : "";
        Value *v = arena_alloc(sizeof *v);
        v->c = tensor_of(p, name);
        if (v->c->rank < 0 || v->c->count < 0)
            return fail("initializer '%s' has an impossible shape", name);
        if (!*name)
            return fail("initializer %zu has no name", i + 1);
        if (!define(m, name, v))
            return false;
    }
    if (m->graph->n_sparse_initializer)
        return fail("the graph has sparse initializers, which cnnc does not read");
    return true;
}

/* The one graph input that is not an initializer: its first dimension is
 * the batch (a number or a name), the others fixed; unbatched, every
 * dimension is fixed and the whole tensor is one example. */
static bool graph_input(Imp *m)
{
    const Onnx__ValueInfoProto *in = NULL;
    int count = 0;
    char *names = "";
    for (size_t i = 0; i < m->graph->n_input; i++) {
        const Onnx__ValueInfoProto *v = m->graph->input[i];
        if (!v || (v->name && lookup(m, v->name)))
            continue;
        in = v, count++;
        names = arena_printf("%s%s'%s'", names, count > 1 ? ", " : "", str(v->name));
    }
    if (count != 1)
        return fail("the graph has %d inputs%s%s; a cnnc network has one", count, count ? ": " : "", names);
    const char *name = str(in->name);
    const Onnx__TypeProto *t = in->type;
    int et = t && t->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE && t->tensor_type ? t->tensor_type->elem_type : 0;
    if (!t || t->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !t->tensor_type ||
        (et != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT && et != ONNX__TENSOR_PROTO__DATA_TYPE__UINT8 &&
         et != ONNX__TENSOR_PROTO__DATA_TYPE__INT8) || !t->tensor_type->shape)
        return fail("the input '%s' must be a float, uint8 or int8 tensor of known shape", name);
    m->g->input_type = et == ONNX__TENSOR_PROTO__DATA_TYPE__UINT8 ? ET_U8
                     : et == ONNX__TENSOR_PROTO__DATA_TYPE__INT8 ? ET_I8 : ET_F32;
    const Onnx__TensorShapeProto *s = t->tensor_type->shape;
    if (s->n_dim < (size_t)lead + 1 || s->n_dim > (size_t)lead + MAX_RANK)
        return fail("the input '%s' has %zu dimensions; cnnc takes %d to %d%s", name, s->n_dim, lead + 1,
                    lead + MAX_RANK, lead ? ", the batch's included" : " (read unbatched, --unbatched)");
    Shape sh = {.rank = (int)s->n_dim - lead};
    m->batch = -1;
    for (size_t i = 0; i < s->n_dim; i++) {
        const Onnx__TensorShapeProto__Dimension *d = s->dim[i];
        bool fixed = d && d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
        if (i == 0 && lead) {
            m->batch = fixed && d->dim_value > 0 ? d->dim_value : -1;
            continue;
        }
        if (!fixed && d && d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM)
            return fail("the input '%s' has a symbolic dimension '%s' at position %zu; cnnc needs every dimension "
                        "%s fixed", name, str(d->dim_param), i + 1, lead ? "but the batch (the first)" : "of it");
        if (!fixed || d->dim_value < 1 || d->dim_value > MAX_DIM)
            return fail("the input '%s' has no fixed size at dimension %zu; cnnc needs every dimension %s fixed",
                        name, i + 1, lead ? "but the batch" : "of it");
        sh.d[i - lead] = d->dim_value;
    }
    Node *x = graph_node(m->g, OP_INPUT, noloc, sh, 0, NULL);
    if (!x)
        return false;
    x->batched = true;
    m->g->input = x;
    m->g->input_name = identifier(name, "x_");
    Value *v = result(x, sh, true);
    v->type = m->g->input_type;
    return define(m, name, v);
}

/* ONNX's element type of a value cnnc computes as type t */
static int onnx_type(ElemType t)
{
    static const int types[] = {
        [ET_F32] = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, [ET_U8] = ONNX__TENSOR_PROTO__DATA_TYPE__UINT8,
        [ET_I8] = ONNX__TENSOR_PROTO__DATA_TYPE__INT8, [ET_BOOL] = ONNX__TENSOR_PROTO__DATA_TYPE__BOOL,
        [ET_I64] = ONNX__TENSOR_PROTO__DATA_TYPE__INT64,
    };
    return types[t];
}

/* Every graph output, in order: the first is the one a loss, predict and
 * eval use. A lone output is named "out" in forward's file (as a .cnn
 * program's), several by their ONNX names. */
static bool graph_output(Imp *m)
{
    size_t k = m->graph->n_output;
    if (k < 1)
        return fail("the graph has no outputs");
    Graph *g = m->g;
    g->outputs = arena_alloc(sizeof(Node *) * k);
    g->output_names = arena_alloc(sizeof(char *) * k);
    g->output_types = arena_alloc(sizeof(ElemType) * k);
    for (size_t i = 0; i < k; i++) {
        const Onnx__ValueInfoProto *o = m->graph->output[i];
        const char *name = o ? str(o->name) : "";
        Value *v = lookup(m, name);
        if (!v)
            return fail("the graph's output '%s' is not computed by any node", name);
        if (!v->batched)
            return fail("the graph's output '%s' does not depend on its input", name);
        const Onnx__TypeProto *t = o->type;
        int declared = t && t->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE && t->tensor_type
                     ? t->tensor_type->elem_type : 0;
        if (declared && declared != onnx_type(v->type))
            return fail("the graph's output '%s' is declared %s, but cnnc computes it as %s", name,
                        type_name(declared), type_name(onnx_type(v->type)));
        for (size_t j = 0; j < i; j++)
            if (strcmp(g->output_names[j], name) == 0)
                return fail("the graph lists the output '%s' twice", name);
        if (!(g->outputs[i] = node_of(m, v)))
            return false;
        g->output_names[i] = k == 1 ? "out" : arena_strdup(name);
        g->output_types[i] = v->type;
    }
    g->noutputs = (int)k;
    g->output = g->outputs[0];
    return true;
}

/* The element type of n's first input, and whether an integer one may go in
 * (the operators that keep integers exact, or make them so: integer_result). */
static bool integer_input(Imp *m, ONode *n, ElemType *t)
{
    static const char *const take[] = {"Add", "Sub", "Mul", "Div", "Clip", "MaxPool", "Relu", "Identity",
                                       "Flatten", "Reshape", "Squeeze", "Unsqueeze", NULL};
    *t = ET_F32;
    if (strcmp(str(n->op_type), "Identity") == 0)
        return true;                    /* any value, of its type */
    for (size_t i = 0; i < n->n_input; i++) {
        Value *v = given(n, i) ? lookup(m, n->input[i]) : NULL;
        if (v && v->type != ET_F32 && *t == ET_F32)
            *t = v->type;
    }
    if (*t != ET_U8 && *t != ET_I8)
        return *t == ET_F32 || fail("its input is a %s (another operator's mask or indices); cnnc takes those "
                                    "only as outputs of the graph", *t == ET_BOOL ? "mask" : "tensor of indices");
    for (int i = 0; take[i]; i++)
        if (strcmp(str(n->op_type), take[i]) == 0)
            return true;
    return fail("its input is of type %s; cnnc takes uint8 and int8 values only in Add, Sub, Mul, Div, Clip, "
                "MaxPool, Relu and the reshapes", *t == ET_U8 ? "uint8" : "int8");
}

/* After an operator on integers: its output is of their type. Integer
 * arithmetic is computed in float, exact for 8-bit operands, and each Add,
 * Sub, Mul and Div's result is then wrapped into the type (Div's truncated
 * toward 0 first): what integer arithmetic gives. */
static bool integer_result(Imp *m, ONode *n, ElemType t)
{
    Value *y = n->n_output ? lookup(m, str(n->output[0])) : NULL;
    if (t == ET_F32 || !y)
        return true;
    const char *op = str(n->op_type);
    bool arith = !strcmp(op, "Add") || !strcmp(op, "Sub") || !strcmp(op, "Mul") || !strcmp(op, "Div");
    if (arith) {
        if (!y->batched || !y->node)
            return fail("integer arithmetic on constants only is not supported");
        Node *w = graph_node(m->g, OP_WRAP, noloc, y->node->shape, 1, &y->node);
        if (!w)
            return false;
        w->aux = t, w->batched = true;
        Value *v = result(w, y->shape, true);
        v->type = t;
        map_put(&m->values, str(n->output[0]), v);
        return true;
    }
    y->type = t;
    return true;
}

static bool convert(Imp *m)
{
    for (size_t i = 0; i < m->graph->n_node; i++) {
        ONode *n = m->graph->node[i];
        diag_context(node_place(n, (int)i));
        ElemType t;
        if (!integer_input(m, n, &t) || !rule(n)(m, n) || !integer_result(m, n, t))
            return false;
    }
    diag_context(NULL);
    return true;
}

/* The model's graph as a Graph; path names the network and the folder of
 * external data. */
static Graph *import(Onnx__ModelProto *model, const char *path, bool unbatched)
{
    Imp m = {.path = path, .model = model};
    lead = unbatched ? 0 : 1;
    char *dir = arena_strdup(path), *slash = strrchr(dir, '/');
    m.dir = slash ? (*slash = 0, dir) : ".";
    if (slash && !*dir)
        m.dir = "/";
    if (!m.model || !check_model(&m))
        return NULL;
    m.g = arena_alloc(sizeof(Graph));
    settings_defaults(m.g);
    m.g->name = shape_stem_name(path);
    count_uses(&m);
    bool ok = initializers(&m) && graph_input(&m) && convert(&m) && graph_output(&m);
    diag_context(NULL);
    if (!ok || diag_error_count())
        return NULL;
    m.g->nforward = m.g->nodes.n;
    graph_check(m.g);
    return m.g;
}

Graph *onnx_import(const char *path, bool unbatched) { return import(read_model(path), path, unbatched); }

Graph *onnx_import_data(const char *path, const void *data, size_t size, bool unbatched)
{
    return import(size ? unpack(data, size) : (fail("the file is empty, not an ONNX model"), NULL), path, unbatched);
}

/* --loss: softmax_cross_entropy on the scores (a final Softmax's input), or
 * mse against a target of the output's shape. */
bool onnx_loss(Graph *g, const char *kind)
{
    LossTerm t = {.coef = 1, .margin = 1, .f = g->output, .loc = noloc};
    if (g->noutputs && g->output_types[0] != ET_F32)
        return fail("--loss %s needs a float output; the model's first output is of type %s", kind,
                    elem_type_name(g->output_types[0]));
    for (int i = 0; i < g->nodes.n; i++) {       /* a layer without an adjoint would train nothing */
        const Node *n = g->nodes.at[i];
        if (n->op == OP_BN_EXAMPLE)
            return fail("--loss %s: a BatchNormalization with training_mode = 1 (imported as '%s') is "
                        "imported for inference only; --loss cannot train through it", kind, n->label);
    }
    if (strcmp(kind, "softmax_cross_entropy") == 0) {
        if (t.f->op == OP_SOFTMAX)
            t.f = t.f->in[0];
        if (t.f->shape.rank != 1 || t.f->shape.d[0] < 2 || t.f->shape.d[0] > 1000000)
            return fail("--loss softmax_cross_entropy needs class scores [N, K] as the output, not %s",
                        batch_str(t.f->shape));
        t.kind = LOSS_SOFTMAX_CE;
        g->label_kind = LABELS_CLASS, g->nclasses = (int)t.f->shape.d[0], g->label_name = "labels";
    } else {
        t.kind = LOSS_MSE;
        g->label_kind = LABELS_TARGET, g->target_shape = t.f->shape, g->label_name = "target";
    }
    g->loss = arena_alloc(sizeof(LossTerm));
    g->loss[0] = t;
    g->nloss = 1, g->has_loss = true;
    return true;
}
