/* safetensors.c -- reading and writing the safetensors format (F32 data; other dtypes set aside).
 *
 *   file   = u64le N, header (N bytes of JSON, may end in spaces), data
 *   header = { name: {"dtype": "F32", "shape": [d...], "data_offsets": [b, e]},
 *              ..., "__metadata__": { key: "value", ... } }
 *
 * Reading follows the reference implementation's rules: every tensor's byte
 * range [b, e) lies in the data section and holds exactly shape's product
 * times 4 bytes, and the ranges, sorted, tile the data section exactly. */
#define _POSIX_C_SOURCE 200809L
#include "cnnrt.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "cnnrt stores floats in host order and needs a little-endian host"
#endif

enum {
    MAX_HEADER = 100000000, /* the reference implementation's limit, in bytes */
    MAX_DEPTH = 64,         /* deepest nesting of JSON arrays and objects */
};

/* ---- A strict JSON reader (RFC 8259), by recursive descent ---- */

/* A cursor over the header text [s, end); depth counts the open arrays and
 * objects. label and err serve the messages. */
typedef struct {
    const char *s, *p, *end;
    int depth;
    const char *label;
    rt_err *err;
} json;

static int jfail(json *j, const char *fmt, ...) RT_PRINTF(2, 3);

static int jfail(json *j, const char *fmt, ...)
{
    char what[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return rt_fail(j->err, "%s: header is not valid JSON: %s at header byte %td", j->label,
                   what, j->p - j->s);
}

static int oom(rt_err *err, const char *label)
{
    return rt_fail(err, "%s: out of memory", label);
}

/* ws = *( " " | "\t" | "\n" | "\r" ) */
static void ws(json *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

/* The next non-blank character, or -1 at the end. */
static int peek(json *j)
{
    ws(j);
    return j->p < j->end ? (unsigned char)*j->p : -1;
}

static int expect(json *j, char c)
{
    if (peek(j) != c)
        return jfail(j, "expected '%c'", c);
    j->p++;
    return 0;
}

static int isdigit_(int c)
{
    return c >= '0' && c <= '9';
}

static const char *skip_digits(const char *p, const char *e)
{
    while (p < e && isdigit_(*p))
        p++;
    return p;
}

/* The length of the well-formed UTF-8 sequence at p (left bytes remain), or
 * 0: no stray continuation bytes, overlong forms, surrogates, or code points
 * above U+10FFFF. */
static int utf8_len(const unsigned char *p, size_t left)
{
    static const uint32_t least[5] = {0, 0, 0x80, 0x800, 0x10000};
    int n = p[0] < 0x80 ? 1 : p[0] < 0xC0 ? 0 : p[0] < 0xE0 ? 2 : p[0] < 0xF0 ? 3 : 4;
    if (n == 1)
        return 1;
    if (!n || (size_t)n > left)
        return 0;
    uint32_t cp = p[0] & (0x7F >> n);
    for (int i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3F);
    }
    if (cp < least[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000))
        return 0;
    return n;
}

static int utf8_valid(const char *s)
{
    size_t left = strlen(s);
    for (int k; left; s += k, left -= k)
        if (!(k = utf8_len((const unsigned char *)s, left)))
            return 0;
    return 1;
}

/* Writes code point u as UTF-8 at o: a lead byte marking the length n, then
 * n - 1 continuation bytes of 6 bits each. Returns n. */
static int put_utf8(char *o, uint32_t u)
{
    static const unsigned char lead[5] = {0, 0x00, 0xC0, 0xE0, 0xF0};
    int n = u < 0x80 ? 1 : u < 0x800 ? 2 : u < 0x10000 ? 3 : 4;
    for (int i = n - 1; i > 0; i--, u >>= 6)
        o[i] = (char)(0x80 | (u & 0x3F));
    o[0] = (char)(lead[n] | u);
    return n;
}

/* hex4 = 4 hexadecimal digits at p, before e. */
static int hex4(const char *p, const char *e, uint32_t *v)
{
    if (e - p < 4)
        return -1;
    *v = 0;
    for (int i = 0; i < 4; i++) {
        int c = p[i], d = isdigit_(c) ? c - '0'
                        : c >= 'a' && c <= 'f' ? c - 'a' + 10
                        : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return -1;
        *v = *v << 4 | (uint32_t)d;
    }
    return 0;
}

/* "\u" hex4 [ "\u" hex4 ], the second for the low half of a surrogate pair;
 * the cursor is on the backslash and e ends the string. */
static int uescape(json *j, const char *e, char **o)
{
    uint32_t u, lo;
    if (hex4(j->p + 2, e, &u))
        return jfail(j, "malformed \\u escape");
    if (u >= 0xD800 && u < 0xDC00) {
        const char *q = j->p + 6;
        if (e - q < 6 || q[0] != '\\' || q[1] != 'u' || hex4(q + 2, e, &lo) || lo < 0xDC00 ||
            lo >= 0xE000)
            return jfail(j, "unpaired surrogate in \\u escape");
        u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
        j->p += 6;
    } else if (u >= 0xDC00 && u < 0xE000) {
        return jfail(j, "unpaired surrogate in \\u escape");
    }
    if (u == 0)
        return jfail(j, "\\u0000 in a string");
    *o += put_utf8(*o, u);
    j->p += 6;
    return 0;
}

/* escape = "\" ( ["\/bfnrt] | "u" hex4 ); the cursor is on the backslash,
 * which is followed by at least one character before e. */
static int escape(json *j, const char *e, char **o)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    char c = j->p[1];
    const char *f = c ? strchr(from, c) : NULL;
    if (c == 'u')
        return uescape(j, e, o);
    if (!f)
        return jfail(j, "unknown escape '\\%c'", c);
    *(*o)++ = to[f - from];
    j->p += 2;
    return 0;
}

/* Decodes the string body [j->p, e) into o (room for e - j->p bytes, which
 * always suffices), NUL-terminating it. */
static int unescape(json *j, const char *e, char *o)
{
    while (j->p < e) {
        unsigned char c = (unsigned char)*j->p;
        int k = c == '\\' || c < 0x20 ? 0 : utf8_len((const unsigned char *)j->p, e - j->p);
        if (c == '\\') {
            if (escape(j, e, &o))
                return -1;
        } else if (c < 0x20) {
            return jfail(j, "unescaped control character 0x%02x in a string", (unsigned)c);
        } else if (!k) {
            return jfail(j, "invalid UTF-8 in a string");
        } else {
            memcpy(o, j->p, (size_t)k);
            o += k;
            j->p += k;
        }
    }
    *o = '\0';
    return 0;
}

/* string = '"' *( char | escape ) '"'; chars are UTF-8 at or above 0x20.
 * *out receives the decoded text, which the caller frees. */
static int jstring(json *j, char **out)
{
    *out = NULL;
    if (peek(j) != '"')
        return jfail(j, "expected a string");
    j->p++;
    size_t n = 0, left = (size_t)(j->end - j->p);
    while (n < left && j->p[n] != '"')
        n += j->p[n] == '\\' ? 2 : 1;
    if (n >= left)
        return jfail(j, "unterminated string");
    char *s = malloc(n + 1);
    if (!s)
        return oom(j->err, j->label);
    if (unescape(j, j->p + n, s)) {
        free(s);
        return -1;
    }
    j->p++; /* the closing quote */
    *out = s;
    return 0;
}

/* number = [ "-" ] ( "0" | [1-9] *digit ) [ "." 1*digit ] [ [eE] [+-] 1*digit ]
 * Leaves the number's text in [*start, j->p). */
static int jnumber(json *j, const char **start)
{
    const char *p = j->p, *e = j->end, *d;
    if (p < e && *p == '-')
        p++;
    d = skip_digits(p, e);
    if (d == p || (*p == '0' && d - p > 1))
        return jfail(j, "malformed number");
    p = d;
    if (p < e && *p == '.') {
        p++;
        if ((d = skip_digits(p, e)) == p)
            return jfail(j, "malformed number");
        p = d;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        if (++p < e && (*p == '+' || *p == '-'))
            p++;
        if ((d = skip_digits(p, e)) == p)
            return jfail(j, "malformed number");
        p = d;
    }
    *start = j->p;
    j->p = p;
    return 0;
}

/* The text [s, e) as an integer in [0, 2^63): digits only. */
static int span_int(const char *s, const char *e, int64_t *v)
{
    *v = 0;
    if (s == e)
        return -1;
    for (; s < e; s++) {
        if (!isdigit_(*s) || *v > (INT64_MAX - (*s - '0')) / 10)
            return -1;
        *v = *v * 10 + (*s - '0');
    }
    return 0;
}

static int jliteral(json *j)
{
    static const char *const lit[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(lit[i]);
        if ((size_t)(j->end - j->p) >= n && !memcmp(j->p, lit[i], n)) {
            j->p += n;
            return 0;
        }
    }
    return jfail(j, "expected a value");
}

static int enter(json *j)
{
    if (++j->depth > MAX_DEPTH)
        return jfail(j, "nested deeper than %d levels", MAX_DEPTH);
    return 0;
}

/* A member's handler: the cursor is on the value, which it must consume. It
 * may keep *key by setting it to NULL; otherwise the key is freed. */
typedef int (*jmember)(json *j, char **key, void *ctx);

/* An element's handler: the cursor is on element number i, which it consumes. */
typedef int (*jelem)(json *j, int i, void *ctx);

/* object = "{" [ string ":" value *( "," string ":" value ) ] "}" */
static int jobject(json *j, jmember f, void *ctx)
{
    if (expect(j, '{') || enter(j))
        return -1;
    for (int c = peek(j); c != '}';) {
        char *key;
        if (jstring(j, &key))
            return -1;
        int r = expect(j, ':') ? -1 : f(j, &key, ctx);
        free(key);
        if (r)
            return -1;
        c = peek(j);
        if (c != ',' && c != '}')
            return jfail(j, "expected ',' or '}'");
        j->p += c == ',';
    }
    j->p++;
    j->depth--;
    return 0;
}

/* array = "[" [ value *( "," value ) ] "]" */
static int jarray(json *j, jelem f, void *ctx)
{
    if (expect(j, '[') || enter(j))
        return -1;
    for (int i = 0, c = peek(j); c != ']'; i++) {
        if (f(j, i, ctx))
            return -1;
        c = peek(j);
        if (c != ',' && c != ']')
            return jfail(j, "expected ',' or ']'");
        j->p += c == ',';
    }
    j->p++;
    j->depth--;
    return 0;
}

static int skip_member(json *j, char **key, void *ctx);
static int skip_elem(json *j, int i, void *ctx);

/* value = object | array | string | number | "true" | "false" | "null" */
static int jskip(json *j)
{
    int c = peek(j);
    const char *num;
    char *s;
    if (c == '{')
        return jobject(j, skip_member, NULL);
    if (c == '[')
        return jarray(j, skip_elem, NULL);
    if (c == '"') {
        int r = jstring(j, &s);
        free(s);
        return r;
    }
    if (c == '-' || isdigit_(c))
        return jnumber(j, &num);
    return jliteral(j);
}

static int skip_member(json *j, char **key, void *ctx)
{
    (void)key, (void)ctx;
    return jskip(j);
}

static int skip_elem(json *j, int i, void *ctx)
{
    (void)i, (void)ctx;
    return jskip(j);
}

/* ---- The header's meaning ---- */

enum { F_DTYPE = 1, F_SHAPE = 2, F_OFFSETS = 4 };

/* One tensor as the header describes it: t.name and, once loaded, t.data are
 * owned. seen collects the F_ fields met; noff counts data_offsets' entries. */
typedef struct {
    rt_tensor t;
    int64_t off[2]; /* data_offsets: [begin, end) in the data section */
    int seen, noff;
    int esize;      /* bytes per element of its dtype */
    char dtype[8];  /* as the header names it; only F32 tensors are loaded */
} entry;

/* The header being read: its tensors and metadata pairs, in header order. */
typedef struct {
    entry *e;
    int n, cap;
    char **mkey, **mval;
    int nmeta, kcap, vcap;
    int has_meta;
} header;

static void header_free(header *h)
{
    for (int i = 0; i < h->n; i++)
        free(h->e[i].t.name), free(h->e[i].t.data);
    for (int i = 0; i < h->nmeta; i++)
        free(h->mkey[i]), free(h->mval[i]);
    free(h->e);
    free(h->mkey);
    free(h->mval);
    memset(h, 0, sizeof *h);
}

/* Makes room for one more item in the array *p of *cap items of size bytes. */
static int grow(void **p, int n, int *cap, size_t size)
{
    if (n < *cap)
        return 0;
    if (*cap > (int)((INT32_MAX / 2) / size))
        return -1;
    int ncap = *cap ? *cap * 2 : 16;
    void *q = realloc(*p, (size_t)ncap * size);
    if (!q)
        return -1;
    *p = q;
    *cap = ncap;
    return 0;
}

/* An integer in [0, 2^63) that the header holds for `what` of tensor e. */
static int jint(json *j, const entry *e, const char *what, int64_t *v)
{
    const char *s;
    int c = peek(j);
    if (c != '-' && !isdigit_(c))
        return rt_fail(j->err, "%s: tensor '%s': %s is not a number", j->label, e->t.name, what);
    if (jnumber(j, &s))
        return -1;
    if (span_int(s, j->p, v))
        return rt_fail(j->err, "%s: tensor '%s': %s %.*s is not an integer in [0, 2^63)",
                       j->label, e->t.name, what, (int)(j->p - s < 40 ? j->p - s : 40), s);
    return 0;
}

static int shape_elem(json *j, int i, void *ctx)
{
    entry *e = ctx;
    if (i >= RT_MAX_RANK)
        return rt_fail(j->err, "%s: tensor '%s' has more than %d dimensions", j->label,
                       e->t.name, RT_MAX_RANK);
    e->t.rank = i + 1;
    return jint(j, e, "a shape entry", &e->t.dims[i]);
}

static int offset_elem(json *j, int i, void *ctx)
{
    entry *e = ctx;
    if (i >= 2)
        return rt_fail(j->err, "%s: tensor '%s': data_offsets has more than 2 entries",
                       j->label, e->t.name);
    e->noff = i + 1;
    return jint(j, e, "a data offset", &e->off[i]);
}

/* The dtypes of the format and their sizes. Tensors of a dtype other than
 * F32 are checked like the others but set aside (rt_tensors.other): PyTorch
 * files carry some, such as batchnorm's I64 num_batches_tracked. */
static const struct { const char *name; int size; } dtypes[] = {
    {"F32", 4}, {"F64", 8}, {"F16", 2}, {"BF16", 2}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
    {"I64", 8}, {"I32", 4}, {"I16", 2}, {"I8", 1}, {"U64", 8}, {"U32", 4}, {"U16", 2},
    {"U8", 1}, {"BOOL", 1},
};

/* "dtype": "F32" */
static int read_dtype(json *j, entry *e)
{
    char *d;
    if (peek(j) != '"')
        return rt_fail(j->err, "%s: tensor '%s': dtype is not a string", j->label, e->t.name);
    if (jstring(j, &d))
        return -1;
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (!strcmp(d, dtypes[i].name)) {
            e->esize = dtypes[i].size;
            snprintf(e->dtype, sizeof e->dtype, "%s", d);
        }
    int r = e->esize ? 0 : rt_fail(j->err, "%s: tensor '%s' has an unknown dtype '%.32s'", j->label, e->t.name, d);
    free(d);
    return r;
}

/* "shape": [d, ...] */
static int read_shape(json *j, entry *e)
{
    if (peek(j) != '[')
        return rt_fail(j->err, "%s: tensor '%s': shape is not an array", j->label, e->t.name);
    return jarray(j, shape_elem, e);
}

/* "data_offsets": [begin, end] */
static int read_offsets(json *j, entry *e)
{
    if (peek(j) != '[')
        return rt_fail(j->err, "%s: tensor '%s': data_offsets is not an array", j->label,
                       e->t.name);
    if (jarray(j, offset_elem, e))
        return -1;
    if (e->noff != 2)
        return rt_fail(j->err, "%s: tensor '%s': data_offsets must have 2 entries, not %d",
                       j->label, e->t.name, e->noff);
    return 0;
}

/* A member of a tensor's object; other members than these three are ignored,
 * as the reference implementation does. */
static int tensor_field(json *j, char **key, void *ctx)
{
    entry *e = ctx;
    int bit = !strcmp(*key, "dtype")          ? F_DTYPE
              : !strcmp(*key, "shape")        ? F_SHAPE
              : !strcmp(*key, "data_offsets") ? F_OFFSETS
                                              : 0;
    if (!bit)
        return jskip(j);
    if (e->seen & bit)
        return rt_fail(j->err, "%s: tensor '%s' has two '%s' fields", j->label, e->t.name,
                       *key);
    e->seen |= bit;
    return bit == F_DTYPE ? read_dtype(j, e) : bit == F_SHAPE ? read_shape(j, e)
                                                             : read_offsets(j, e);
}

/* name: {"dtype": ..., "shape": ..., "data_offsets": ...} */
static int read_tensor(json *j, header *h, char **key)
{
    if (grow((void **)&h->e, h->n, &h->cap, sizeof *h->e))
        return oom(j->err, j->label);
    entry *e = &h->e[h->n++];
    memset(e, 0, sizeof *e);
    e->t.name = *key;
    *key = NULL;
    if (peek(j) != '{')
        return rt_fail(j->err, "%s: tensor '%s' is not described by an object", j->label,
                       e->t.name);
    if (jobject(j, tensor_field, e))
        return -1;
    const char *missing = !(e->seen & F_DTYPE)   ? "dtype"
                          : !(e->seen & F_SHAPE) ? "shape"
                          : !(e->seen & F_OFFSETS) ? "data_offsets" : NULL;
    if (missing)
        return rt_fail(j->err, "%s: tensor '%s' has no '%s'", j->label, e->t.name, missing);
    return 0;
}

/* key: "value", inside "__metadata__" */
static int meta_member(json *j, char **key, void *ctx)
{
    header *h = ctx;
    char *val;
    if (peek(j) != '"')
        return rt_fail(j->err, "%s: __metadata__ value for '%s' is not a string", j->label,
                       *key);
    if (grow((void **)&h->mkey, h->nmeta, &h->kcap, sizeof *h->mkey) ||
        grow((void **)&h->mval, h->nmeta, &h->vcap, sizeof *h->mval))
        return oom(j->err, j->label);
    if (jstring(j, &val))
        return -1;
    h->mkey[h->nmeta] = *key;
    h->mval[h->nmeta++] = val;
    *key = NULL;
    return 0;
}

/* "__metadata__": { key: "value", ... } (or null) */
static int read_meta(json *j, header *h)
{
    if (h->has_meta++)
        return rt_fail(j->err, "%s: header has two __metadata__ objects", j->label);
    if (peek(j) == 'n')
        return jliteral(j);
    if (peek(j) != '{')
        return rt_fail(j->err, "%s: __metadata__ is not an object", j->label);
    return jobject(j, meta_member, h);
}

static int top_member(json *j, char **key, void *ctx)
{
    return strcmp(*key, "__metadata__") ? read_tensor(j, ctx, key) : read_meta(j, ctx);
}

static int parse_header(const char *s, size_t n, const char *label, header *h, rt_err *err)
{
    json j = {s, s, s + n, 0, label, err};
    if (peek(&j) != '{')
        return rt_fail(err, "%s: header is not a JSON object (starts with byte 0x%02x)", label,
                       j.p < j.end ? (unsigned)(unsigned char)*j.p : 0u);
    if (jobject(&j, top_member, h))
        return -1;
    ws(&j);
    if (j.p != j.end)
        return jfail(&j, "text after the header object");
    return 0;
}

/* ---- Checking the header against the data section ---- */

/* Sets e->t.count, checking that e's byte range fits in data_len bytes and
 * holds its shape's product of floats. */
static int check_entry(entry *e, int64_t data_len, const char *label, rt_err *err)
{
    char sh[160];
    const char *nm = e->t.name;
    int64_t count = 1, b = e->off[0], end = e->off[1];
    for (int i = 0; i < e->t.rank; i++) {
        int64_t d = e->t.dims[i];
        if (d && count > INT64_MAX / 8 / d)
            return rt_fail(err, "%s: tensor '%s': shape %s has too many elements", label, nm,
                           rt_shape_str(e->t.rank, e->t.dims, sh, sizeof sh));
        count *= d;
    }
    e->t.count = count;
    if (end < b)
        return rt_fail(err, "%s: tensor '%s': data_offsets [%" PRId64 ", %" PRId64
                            "] end before they begin", label, nm, b, end);
    if (end > data_len)
        return rt_fail(err, "%s: tensor '%s': data_offsets [%" PRId64 ", %" PRId64
                            "] run past the end of the data section (%" PRId64 " bytes)",
                       label, nm, b, end, data_len);
    if (end - b != count * e->esize)
        return rt_fail(err, "%s: tensor '%s' has %" PRId64 " bytes of data but shape %s of %s needs %"
                            PRId64, label, nm, end - b, rt_shape_str(e->t.rank, e->t.dims, sh, sizeof sh), e->dtype,
                       count * e->esize);
    return 0;
}

static int by_range(const void *a, const void *b)
{
    const entry *x = *(entry *const *)a, *y = *(entry *const *)b;
    return x->off[0] != y->off[0] ? (x->off[0] > y->off[0]) - (x->off[0] < y->off[0])
                                  : (x->off[1] > y->off[1]) - (x->off[1] < y->off[1]);
}

static int by_name(const void *a, const void *b)
{
    return strcmp((*(entry *const *)a)->t.name, (*(entry *const *)b)->t.name);
}

static int by_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The sorted byte ranges must tile [0, data_len): no overlap, no gap. */
static int check_tiling(entry **by, int n, int64_t data_len, const char *label, rt_err *err)
{
    int64_t at = 0;
    qsort(by, (size_t)n, sizeof *by, by_range);
    for (int i = 0; i < n; at = by[i++]->off[1]) {
        if (by[i]->off[0] < at)
            return rt_fail(err, "%s: tensors '%s' and '%s' overlap in the data section", label,
                           by[i - 1]->t.name, by[i]->t.name);
        if (by[i]->off[0] > at)
            return rt_fail(err, "%s: bytes [%" PRId64 ", %" PRId64 ") of the data section "
                                "belong to no tensor", label, at, by[i]->off[0]);
    }
    if (at != data_len)
        return rt_fail(err, "%s: the data section has %" PRId64 " bytes but the tensors use %"
                            PRId64, label, data_len, at);
    return 0;
}

/* Names and metadata keys must be unique. */
static int check_unique(entry **by, const header *h, const char *label, rt_err *err)
{
    qsort(by, (size_t)h->n, sizeof *by, by_name);
    for (int i = 1; i < h->n; i++)
        if (!strcmp(by[i - 1]->t.name, by[i]->t.name))
            return rt_fail(err, "%s: tensor '%s' appears twice", label, by[i]->t.name);
    char **k = malloc(((size_t)h->nmeta + 1) * sizeof *k);
    if (!k)
        return oom(err, label);
    for (int i = 0; i < h->nmeta; i++)
        k[i] = h->mkey[i];
    qsort(k, (size_t)h->nmeta, sizeof *k, by_str);
    int r = 0;
    for (int i = 1; i < h->nmeta && !r; i++)
        if (!strcmp(k[i - 1], k[i]))
            r = rt_fail(err, "%s: __metadata__ key '%s' appears twice", label, k[i]);
    free(k);
    return r;
}

static int check_header(header *h, int64_t data_len, const char *label, rt_err *err)
{
    for (int i = 0; i < h->n; i++)
        if (check_entry(&h->e[i], data_len, label, err))
            return -1;
    entry **by = malloc(((size_t)h->n + 1) * sizeof *by);
    if (!by)
        return oom(err, label);
    for (int i = 0; i < h->n; i++)
        by[i] = &h->e[i];
    int r = check_unique(by, h, label, err) || check_tiling(by, h->n, data_len, label, err);
    free(by);
    return r ? -1 : 0;
}

/* An integer or boolean tensor's values as floats in o->values (little-endian
 * in the file); nothing for other dtypes. -1: out of memory. */
static int int_values(const entry *e, const unsigned char *data, rt_other *o)
{
    static const char *const kinds[] = {"U8", "I8", "BOOL", "I16", "U16", "I32", "I64"};
    int kind = -1;
    for (int k = 0; k < 7; k++)
        if (!strcmp(e->dtype, kinds[k]))
            kind = k;
    if (kind < 0)
        return 0;
    rt_tensor *v = &o->values;
    v->name = o->name, v->rank = e->t.rank, v->count = e->t.count;
    memcpy(v->dims, e->t.dims, sizeof v->dims);
    if (!v->count)
        return 0;
    if (!(v->data = malloc((size_t)v->count * sizeof *v->data)))
        return -1;
    const unsigned char *p = data + e->off[0];
    for (int64_t i = 0; i < v->count; i++) {
        const unsigned char *b = p + i * e->esize;
        uint64_t u = 0;
        for (int k = e->esize - 1; k >= 0; k--)
            u = u << 8 | b[k];
        double x = kind == 0 || kind == 4 ? (double)u
                 : kind == 2 ? (double)(u != 0)
                 : kind == 1 ? (double)(int8_t)u : kind == 3 ? (double)(int16_t)u
                 : kind == 5 ? (double)(int32_t)u : (double)(int64_t)u;
        v->data[i] = (float)x;
    }
    return 0;
}

/* Copies each tensor's bytes out of the data section, then hands everything
 * from h over to out. */
static int take(header *h, const unsigned char *data, const char *label, rt_tensors *out,
                rt_err *err)
{
    for (int i = 0; i < h->n; i++) {
        rt_tensor *t = &h->e[i].t;
        if (!t->count || strcmp(h->e[i].dtype, "F32"))
            continue;
        if (!(t->data = malloc((size_t)t->count * sizeof *t->data)))
            return oom(err, label);
        memcpy(t->data, data + h->e[i].off[0], (size_t)t->count * sizeof *t->data);
    }
    if (!(out->t = malloc(((size_t)h->n + 1) * sizeof *out->t)) ||
        !(out->other = calloc((size_t)h->n + 1, sizeof *out->other)))
        return oom(err, label);
    for (int i = 0; i < h->n; i++) {
        if (!strcmp(h->e[i].dtype, "F32")) {
            out->t[out->n++] = h->e[i].t;
            continue;
        }
        rt_other *o = &out->other[out->nother++];
        o->name = h->e[i].t.name;
        snprintf(o->dtype, sizeof o->dtype, "%s", h->e[i].dtype);
        if (int_values(&h->e[i], data, o))
            return oom(err, label);
    }
    out->nmeta = h->nmeta;
    out->meta_key = h->mkey;
    out->meta_val = h->mval;
    free(h->e);
    memset(h, 0, sizeof *h);
    return 0;
}

static uint64_t get_le64(const unsigned char *b)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | b[i];
    return v;
}

int rt_st_read_mem(const void *buf, size_t len, const char *label, rt_tensors *out,
                   rt_err *err)
{
    const unsigned char *b = buf;
    memset(out, 0, sizeof *out);
    if (len < 8)
        return rt_fail(err, "%s: file is too short (%zu bytes) to hold a safetensors header",
                       label, len);
    uint64_t n = get_le64(b);
    if (n > len - 8)
        return rt_fail(err, "%s: header length %" PRIu64 " runs past the end of the file (%zu "
                            "bytes)", label, n, len);
    if (n > MAX_HEADER)
        return rt_fail(err, "%s: header length %" PRIu64 " is absurd (the limit is %d)", label,
                       n, MAX_HEADER);
    header h = {0};
    int r = parse_header((const char *)b + 8, (size_t)n, label, &h, err) ||
            check_header(&h, (int64_t)(len - 8 - n), label, err) ||
            take(&h, b + 8 + n, label, out, err);
    header_free(&h);
    return r ? -1 : 0;
}

int rt_st_read(const char *path, rt_tensors *out, rt_err *err)
{
    char *buf;
    size_t len;
    memset(out, 0, sizeof *out);
    if (rt_read_file(path, &buf, &len, err))
        return -1;
    int r = rt_st_read_mem(buf, len, path, out, err);
    free(buf);
    return r;
}

void rt_st_free(rt_tensors *t)
{
    for (int i = 0; i < t->n; i++)
        free(t->t[i].name), free(t->t[i].data);
    for (int i = 0; i < t->nother; i++)
        free(t->other[i].name), free(t->other[i].values.data);
    free(t->other);
    for (int i = 0; i < t->nmeta; i++)
        free(t->meta_key[i]), free(t->meta_val[i]);
    free(t->t);
    free(t->meta_key);
    free(t->meta_val);
    memset(t, 0, sizeof *t);
}

const rt_tensor *rt_st_find(const rt_tensors *t, const char *name)
{
    for (int i = 0; i < t->n; i++)
        if (!strcmp(t->t[i].name, name))
            return &t->t[i];
    return NULL;
}

const rt_tensor *rt_st_find_values(const rt_tensors *t, const char *name)
{
    const rt_tensor *f = rt_st_find(t, name);
    for (int i = 0; !f && i < t->nother; i++)
        if (!strcmp(t->other[i].name, name) && (t->other[i].values.data || !t->other[i].values.count) &&
            t->other[i].values.name)
            f = &t->other[i].values;
    return f;
}

const char *rt_st_meta(const rt_tensors *t, const char *key)
{
    for (int i = 0; i < t->nmeta; i++)
        if (!strcmp(t->meta_key[i], key))
            return t->meta_val[i];
    return NULL;
}

/* ---- Loading into a network ---- */

int rt_st_check_meta(const rt_tensors *t, const char *network, uint64_t structure,
                     const char *path, rt_err *err)
{
    const char *name = rt_st_meta(t, "network"), *hash = rt_st_meta(t, "structure");
    if (name && strcmp(name, network) != 0)
        return rt_fail(err, "%s: a checkpoint of network '%s', not '%s'", path, name, network);
    char mine[32];
    snprintf(mine, sizeof mine, "%016llx", (unsigned long long)structure);
    if (hash && strcmp(hash, mine) != 0)
        return rt_fail(err, "%s: written for a network of another structure (%s, this one is %s)",
                       path, hash, mine);
    const char *crc = rt_st_meta(t, "crc32");
    if (crc) {
        uint32_t c = 0;
        for (int i = 0; i < t->n; i++)
            c = rt_crc32(c, t->t[i].data, sizeof(float) * (size_t)t->t[i].count);
        char got[16];
        snprintf(got, sizeof got, "%08x", c);
        if (strcmp(got, crc) != 0)
            return rt_fail(err, "%s: the data's CRC-32 is %s but the file says %s: the file is "
                                "damaged", path, got, crc);
    }
    return 0;
}

int rt_st_take(const rt_tensors *t, const char *name, int rank, const int64_t *dims,
               const char *path, const rt_tensor **out, rt_err *err)
{
    *out = NULL;
    const rt_tensor *f = rt_st_find(t, name);
    if (!f) {
        for (int i = 0; i < t->nother; i++)
            if (!strcmp(t->other[i].name, name))
                return rt_fail(err, "%s: tensor '%s' has dtype %s, expected F32", path, name,
                               t->other[i].dtype);
        return rt_fail(err, "%s: no tensor '%s'", path, name);
    }
    bool same = f->rank == rank;
    for (int k = 0; same && k < rank; k++)
        same = f->dims[k] == dims[k];
    char have[200], want[200];
    if (!same)
        return rt_fail(err, "%s: tensor '%s' has shape %s, but the network's has shape %s", path,
                       name, rt_shape_str(f->rank, f->dims, have, sizeof have),
                       rt_shape_str(rank, dims, want, sizeof want));
    *out = f;
    return 0;
}

/* ---- Writing ---- */

/* A growing string; oom records a failed allocation, after which appends do
 * nothing. */
typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void put(sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->cap - b->len <= n) {
        size_t ncap = b->cap * 2 + n + 64;
        char *q = realloc(b->p, ncap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = ncap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void puts_(sbuf *b, const char *s)
{
    put(b, s, strlen(s));
}

static void put_i64(sbuf *b, int64_t v)
{
    char t[24];
    put(b, t, (size_t)snprintf(t, sizeof t, "%" PRId64, v));
}

/* s as a JSON string: quotes, backslashes and control characters escaped. */
static void put_jstr(sbuf *b, const char *s)
{
    put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char t[8];
        if (c == '"' || c == '\\')
            put(b, (char[]){'\\', (char)c}, 2);
        else if (c < 0x20)
            put(b, t, (size_t)snprintf(t, sizeof t, "\\u%04x", c));
        else
            put(b, s, 1);
    }
    put(b, "\"", 1);
}

/* Checks what rt_st_write's contract asks of its arguments. */
static int check_args(const char *path, int n, const rt_tensor *t, int nmeta,
                      const char *const *key, const char *const *val, rt_err *err)
{
    if (n < 0 || nmeta < 0 || (n && !t) || (nmeta && (!key || !val)))
        return rt_fail(err, "%s: bad arguments to rt_st_write", path);
    for (int i = 0; i < n; i++) {
        const rt_tensor *x = &t[i];
        int64_t count = 1;
        if (!x->name || !*x->name || !utf8_valid(x->name) || !strcmp(x->name, "__metadata__"))
            return rt_fail(err, "%s: tensor %d has an empty, reserved or non-UTF-8 name", path, i);
        if (x->rank < 0 || x->rank > RT_MAX_RANK)
            return rt_fail(err, "%s: tensor '%s' has rank %d", path, x->name, x->rank);
        for (int k = 0; k < x->rank; k++) {
            if (x->dims[k] < 0 || (x->dims[k] && count > INT64_MAX / 4 / x->dims[k]))
                return rt_fail(err, "%s: tensor '%s' has a bad shape", path, x->name);
            count *= x->dims[k];
        }
        if (count != x->count || (count && !x->data))
            return rt_fail(err, "%s: tensor '%s' has count %" PRId64 " (data %s) but its shape "
                                "holds %" PRId64, path, x->name, x->count,
                           x->data ? "set" : "NULL", count);
    }
    for (int i = 0; i < nmeta; i++)
        if (!key[i] || !val[i] || !utf8_valid(key[i]) || !utf8_valid(val[i]))
            return rt_fail(err, "%s: metadata entry %d is NULL or not UTF-8", path, i);
    return 0;
}

/* Names and metadata keys must be unique (a sorted copy shows repeats). */
static int check_repeats(const char *path, int n, const rt_tensor *t, int nmeta,
                         const char *const *key, rt_err *err)
{
    int r = 0, m = n > nmeta ? n : nmeta;
    const char **s = malloc(((size_t)m + 1) * sizeof *s);
    if (!s)
        return oom(err, path);
    for (int pass = 0; pass < 2 && !r; pass++) {
        int c = pass ? nmeta : n;
        for (int i = 0; i < c; i++)
            s[i] = pass ? key[i] : t[i].name;
        qsort(s, (size_t)c, sizeof *s, by_str);
        for (int i = 1; i < c && !r; i++)
            if (!strcmp(s[i - 1], s[i]))
                r = rt_fail(err, "%s: %s '%s' appears twice", path,
                            pass ? "metadata key" : "tensor", s[i]);
    }
    free(s);
    return r;
}

/* A written tensor's dtype (rt_tensor.dtype) as the header names it, and its bytes per value. */
static const char *out_dtype(int dtype, int *size)
{
    static const char *const names[] = {"F32", "U8", "I8", "BOOL", "I64"};
    static const int sizes[] = {4, 1, 1, 1, 8};
    int k = dtype >= RT_F32 && dtype <= RT_I64 ? dtype : RT_F32;
    *size = sizes[k];
    return names[k];
}

/* The header JSON, padded with spaces so that 8 + its length is a multiple of 8. */
static int build_header(const char *path, int n, const rt_tensor *t, int nmeta,
                        const char *const *key, const char *const *val, sbuf *b, rt_err *err)
{
    int64_t at = 0;
    put(b, "{", 1);
    if (nmeta) {
        puts_(b, "\"__metadata__\":{");
        for (int i = 0; i < nmeta; i++) {
            put(b, ",", i > 0);
            put_jstr(b, key[i]);
            put(b, ":", 1);
            put_jstr(b, val[i]);
        }
        puts_(b, n ? "}," : "}");
    }
    for (int i = 0; i < n; i++) {
        put(b, ",", i > 0);
        put_jstr(b, t[i].name);
        int size;
        puts_(b, ":{\"dtype\":\"");
        puts_(b, out_dtype(t[i].dtype, &size));
        puts_(b, "\",\"shape\":[");
        for (int k = 0; k < t[i].rank; k++) {
            put(b, ",", k > 0);
            put_i64(b, t[i].dims[k]);
        }
        puts_(b, "],\"data_offsets\":[");
        put_i64(b, at);
        put(b, ",", 1);
        put_i64(b, at += t[i].count * size);
        puts_(b, "]}");
    }
    put(b, "}", 1);
    while (b->len % 8)
        put(b, " ", 1);
    return b->oom ? oom(err, path) : 0;
}

static int sys_fail(rt_err *err, const char *path, const char *verb, const char *file)
{
    return rt_fail(err, "%s: cannot %s %s: %s", path, verb, file, strerror(errno));
}

/* Writes all n bytes at p to fd; errno tells why not. */
static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t k = write(fd, c, n < (1u << 30) ? n : (1u << 30));
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            errno = k ? errno : EIO;
            return -1;
        }
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Writes tensor t's values converted to its dtype (not F32): rounded to the
 * nearest, saturated to the type's range, NaN as 0; BOOL: nonzero. */
static int write_converted(int fd, const rt_tensor *t)
{
    int size;
    out_dtype(t->dtype, &size);
    unsigned char *bytes = malloc((size_t)t->count * (size_t)size);
    if (!bytes) {
        errno = ENOMEM;
        return -1;
    }
    double lo = t->dtype == RT_U8 ? 0 : t->dtype == RT_I8 ? -128 : -9.2e18;
    double hi = t->dtype == RT_U8 ? 255 : t->dtype == RT_I8 ? 127 : 9.2e18;
    int64_t per = t->rank > 0 && t->dims[0] > 0 ? t->count / t->dims[0] : t->count;
    for (int64_t i = 0; i < t->count; i++) {
        double v = t->data[i];
        v = v != v ? 0 : t->dtype == RT_BOOL ? (v != 0) : v < lo ? lo : v > hi ? hi : v;
        uint64_t u = (uint64_t)(v >= 0 ? (int64_t)(v + 0.5) : -(int64_t)(0.5 - v));
        if (t->dtype == RT_I64 && t->index_step)
            u += (uint64_t)(i / per) * (uint64_t)t->index_step;
        for (int k = 0; k < size; k++)
            bytes[i * size + k] = (unsigned char)(u >> 8 * k);
    }
    int r = write_all(fd, bytes, (size_t)t->count * (size_t)size);
    free(bytes);
    return r;
}

/* Writes length, header and data to fd, syncs and closes it (always). */
static int write_body(int fd, const char *path, const char *tmp, const sbuf *h, int n,
                      const rt_tensor *t, rt_err *err)
{
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)h->len >> 8 * i);
    int r = write_all(fd, len8, 8) || write_all(fd, h->p, h->len);
    for (int i = 0; i < n && !r; i++)
        r = t[i].count && (t[i].dtype > RT_F32 ? write_converted(fd, &t[i])
                                               : write_all(fd, t[i].data, (size_t)t[i].count * sizeof *t[i].data));
    if (r)
        sys_fail(err, path, "write", tmp);
    else if (fsync(fd))
        r = sys_fail(err, path, "sync", tmp);
    if (close(fd) && !r)
        r = sys_fail(err, path, "close", tmp);
    return r ? -1 : 0;
}

/* Syncs the directory holding path, so that the rename survives a crash. */
static int sync_dir(const char *path, rt_err *err)
{
    const char *slash = strrchr(path, '/');
    char *dir = !slash ? strdup(".") : strndup(path, slash == path ? 1 : (size_t)(slash - path));
    if (!dir)
        return oom(err, path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), r = 0;
    if (fd < 0 || (fsync(fd) && errno != EINVAL))
        r = rt_fail(err, "%s: written, but cannot sync its directory %s: %s", path, dir,
                    strerror(errno));
    if (fd >= 0)
        close(fd);
    free(dir);
    return r;
}

/* Writes to path.tmp.<pid>, then renames it over path. */
static int write_atomic(const char *path, const sbuf *h, int n, const rt_tensor *t,
                        rt_err *err)
{
    size_t size = strlen(path) + 32;
    char *tmp = malloc(size);
    if (!tmp)
        return oom(err, path);
    snprintf(tmp, size, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0666), r = -1;
    if (fd < 0)
        sys_fail(err, path, "create", tmp);
    else if (write_body(fd, path, tmp, h, n, t, err) == 0)
        r = rename(tmp, path) ? sys_fail(err, path, "rename over it", tmp) : 0;
    if (r && fd >= 0)
        unlink(tmp);
    free(tmp);
    return r ? -1 : sync_dir(path, err);
}

int rt_st_write(const char *path, int n, const rt_tensor *t, int nmeta,
                const char *const *key, const char *const *val, rt_err *err)
{
    sbuf h = {0};
    int r = check_args(path, n, t, nmeta, key, val, err) ||
            check_repeats(path, n, t, nmeta, key, err) ||
            build_header(path, n, t, nmeta, key, val, &h, err) ||
            write_atomic(path, &h, n, t, err);
    free(h.p);
    return r ? -1 : 0;
}
