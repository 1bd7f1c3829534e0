/* test_runtime.c -- Criterion unit tests for the runtime's I/O layer.
 * Each test runs in its own process with a fresh temporary directory. */
#define _XOPEN_SOURCE 700
#include "cnnrt.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <ftw.h>
#include <math.h>
#include <png.h>
#include <jpeglib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* ---- Fixture: a temporary directory, removed afterwards ---- */

static char dir[64];

static void setup(void)
{
    strcpy(dir, "/tmp/cnnrt_test_XXXXXX");
    cr_assert(mkdtemp(dir), "mkdtemp");
}

static int rm_one(const char *p, const struct stat *s, int flag, struct FTW *f)
{
    (void)s, (void)flag, (void)f;
    return remove(p);
}

static void teardown(void)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(rt, .init = setup, .fini = teardown);

/* dir/name, in one of a few rotating buffers. */
static const char *in_dir(const char *name)
{
    static char buf[8][256];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, 256, "%s/%s", dir, name);
    return b;
}

static void put_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert(f, "cannot create %s", path);
    cr_assert(fwrite(p, 1, n, f) == n);
    cr_assert(fclose(f) == 0);
}

static void put_text(const char *path, const char *s)
{
    put_file(path, s, strlen(s));
}

static void put_gz(const char *path, const void *p, size_t n)
{
    gzFile f = gzopen(path, "wb");
    cr_assert(f);
    cr_assert(gzwrite(f, p, (unsigned)n) == (int)n);
    cr_assert(gzclose(f) == Z_OK);
}

static long file_size(const char *path)
{
    struct stat s;
    return stat(path, &s) ? -1 : (long)s.st_size;
}

/* Files in dir whose name contains ".tmp.". */
static int temp_files(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    cr_assert(d);
    while ((e = readdir(d)))
        n += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}

#define EXPECT_FAIL(call, sub)                                                              \
    do {                                                                                    \
        rt_err e_ = {{0}};                                                                  \
        int r_ = call(&e_);                                                                 \
        cr_assert(r_ == -1, "expected failure (%s)", sub);                                 \
        cr_assert(strstr(e_.msg, sub), "message \"%s\" lacks \"%s\"", e_.msg, sub);       \
    } while (0)

/* ---- crc32.c ---- */

Test(rt, crc32_matches_zlib)
{
    unsigned char b[1000];
    for (int i = 0; i < 1000; i++)
        b[i] = (unsigned char)(i * 7 + i / 13);
    cr_assert_eq(rt_crc32(0, "123456789", 9), 0xCBF43926u);
    cr_assert_eq(rt_crc32(0, b, 0), 0u);
    cr_assert_eq(rt_crc32(0, b, sizeof b), (uint32_t)crc32(0, b, sizeof b));
    cr_assert_eq(rt_crc32(rt_crc32(0, b, 333), b + 333, 667), (uint32_t)crc32(0, b, sizeof b));
}

/* Long inputs take the 8-bytes-a-step path: the same CRC at every alignment
 * and for lengths that are not multiples of 8, alone and continued. */
Test(rt, crc32_long_matches_zlib)
{
    size_t n = (1 << 20) + 13;
    unsigned char *b = malloc(n + 8);
    cr_assert(b);
    for (size_t i = 0; i < n + 8; i++)
        b[i] = (unsigned char)(i * 2654435761u >> 13);
    for (int off = 0; off < 8; off++) {
        size_t len = n - (size_t)off * 3;
        cr_assert_eq(rt_crc32(0, b + off, len), (uint32_t)crc32(0, b + off, (uInt)len), "offset %d", off);
        cr_assert_eq(rt_crc32(rt_crc32(0, b + off, 100000), b + off + 100000, len - 100000),
                     (uint32_t)crc32(0, b + off, (uInt)len));
    }
    free(b);
}

/* ---- safetensors.c ---- */

static float conv_w[2 * 1 * 3 * 3], bias[2], scalar[1];

static rt_tensor tensor(const char *name, int rank, const int64_t *dims, float *data)
{
    rt_tensor t = {(char *)name, rank, {0}, 1, data};
    for (int i = 0; i < rank; i++)
        t.dims[i] = dims[i], t.count *= dims[i];
    return t;
}

/* Writes three tensors and two metadata pairs to path. */
static int write_sample(const char *path, rt_err *err)
{
    static const int64_t d4[] = {2, 1, 3, 3}, d1[] = {2}, d0[] = {0, 3};
    for (int i = 0; i < 18; i++)
        conv_w[i] = (float)i / 7 - 1;
    conv_w[3] = -0.0f;
    conv_w[4] = NAN;
    conv_w[5] = 1e-40f; /* subnormal */
    bias[0] = INFINITY, bias[1] = 3.25f;
    scalar[0] = 42;
    rt_tensor t[4] = {tensor("conv1.weight", 4, d4, conv_w), tensor("conv1.bias", 1, d1, bias),
                      tensor("step", 0, NULL, scalar), tensor("empty", 2, d0, NULL)};
    const char *k[] = {"network", "note \"quoted\"\\\n\x01"};
    const char *v[] = {"lenet", "caf\xc3\xa9 \xf0\x9f\x98\x80"};
    return rt_st_write(path, 4, t, 2, k, v, err);
}

Test(rt, safetensors_round_trip)
{
    rt_err err = {{0}};
    rt_tensors ts;
    const char *p = in_dir("w.safetensors");
    cr_assert(write_sample(p, &err) == 0, "%s", err.msg);
    cr_assert(rt_st_read(p, &ts, &err) == 0, "%s", err.msg);
    cr_assert_eq(ts.n, 4);
    cr_assert_str_eq(ts.t[0].name, "conv1.weight");
    cr_assert_str_eq(ts.t[1].name, "conv1.bias");
    cr_assert_str_eq(ts.t[2].name, "step");
    cr_assert_str_eq(ts.t[3].name, "empty");
    cr_assert(ts.t[0].rank == 4 && ts.t[0].dims[0] == 2 && ts.t[0].dims[3] == 3);
    cr_assert(ts.t[0].count == 18 && !memcmp(ts.t[0].data, conv_w, sizeof conv_w));
    cr_assert(ts.t[1].count == 2 && !memcmp(ts.t[1].data, bias, sizeof bias));
    cr_assert(ts.t[2].rank == 0 && ts.t[2].count == 1 && ts.t[2].data[0] == 42);
    cr_assert(ts.t[3].rank == 2 && ts.t[3].count == 0 && ts.t[3].data == NULL);
    cr_assert_eq(rt_st_find(&ts, "conv1.bias"), &ts.t[1]);
    cr_assert_null(rt_st_find(&ts, "nope"));
    cr_assert_str_eq(rt_st_meta(&ts, "network"), "lenet");
    cr_assert_str_eq(rt_st_meta(&ts, "note \"quoted\"\\\n\x01"), "caf\xc3\xa9 \xf0\x9f\x98\x80");
    cr_assert_null(rt_st_meta(&ts, "epoch"));
    rt_st_free(&ts);
    cr_assert(ts.n == 0 && ts.t == NULL);
    rt_st_free(&ts); /* a zeroed struct is fine */

    /* the data section starts at a multiple of 8 */
    FILE *f = fopen(p, "rb");
    unsigned char len8[8];
    cr_assert(fread(len8, 1, 8, f) == 8);
    fclose(f);
    cr_assert_eq((8 + len8[0] + 256 * len8[1]) % 8, 0);
    cr_assert_eq(file_size(p), 8 + len8[0] + 256 * len8[1] + 4 * 21);
    cr_assert_eq(temp_files(), 0);
}

Test(rt, safetensors_no_metadata_and_overwrite)
{
    rt_err err = {{0}};
    rt_tensors ts;
    const char *p = in_dir("w.safetensors");
    float x[3] = {1, 2, 3};
    rt_tensor t = tensor("x", 1, (int64_t[]){3}, x);
    cr_assert(write_sample(p, &err) == 0, "%s", err.msg);
    cr_assert(rt_st_write(p, 1, &t, 0, NULL, NULL, &err) == 0, "%s", err.msg);
    cr_assert(rt_st_read(p, &ts, &err) == 0, "%s", err.msg);
    cr_assert(ts.n == 1 && ts.nmeta == 0 && ts.t[0].data[2] == 3);
    rt_st_free(&ts);
}

/* A safetensors image: the header text, padded as given, then data_len bytes
 * counting up. The result is malloc'd to the exact size (for ASan). */
static unsigned char *st_bytes(const char *header, size_t data_len, size_t *len)
{
    size_t n = strlen(header);
    unsigned char *b = malloc(8 + n + data_len + 1);
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)((uint64_t)n >> 8 * i);
    memcpy(b + 8, header, n);
    for (size_t i = 0; i < data_len; i++)
        b[8 + n + i] = (unsigned char)i;
    *len = 8 + n + data_len;
    return b;
}

static int st_try(const char *header, size_t data_len, rt_err *err)
{
    size_t len;
    unsigned char *b = st_bytes(header, data_len, &len);
    rt_tensors ts;
    int r = rt_st_read_mem(b, len, "h.safetensors", &ts, err);
    rt_st_free(&ts);
    free(b);
    return r;
}

/* The header of Python's safetensors.torch.save_file for
 * {"fc.weight": zeros(2, 2), "fc.bias": zeros(2)}, metadata {"format": "pt"}:
 * metadata first, tensors sorted, no spaces, padded with spaces to 8. */
static const char python_header[] =
    "{\"__metadata__\":{\"format\":\"pt\"},\"fc.bias\":{\"dtype\":\"F32\",\"shape\":[2],"
    "\"data_offsets\":[0,8]},\"fc.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],"
    "\"data_offsets\":[8,24]}}     ";

Test(rt, safetensors_python_layout)
{
    rt_err err = {{0}};
    rt_tensors ts;
    size_t len;
    cr_assert_eq((8 + strlen(python_header)) % 8, 0);
    unsigned char *b = st_bytes(python_header, 24, &len);
    float one = 1.0f, two = -2.5f;
    memcpy(b + len - 8, &one, 4);
    memcpy(b + len - 4, &two, 4);
    const char *p = in_dir("py.safetensors");
    put_file(p, b, len);
    free(b);
    cr_assert(rt_st_read(p, &ts, &err) == 0, "%s", err.msg);
    cr_assert_eq(ts.n, 2);
    cr_assert_str_eq(rt_st_meta(&ts, "format"), "pt");
    const rt_tensor *w = rt_st_find(&ts, "fc.weight");
    cr_assert(w && w->rank == 2 && w->dims[0] == 2 && w->dims[1] == 2);
    cr_assert(w->data[2] == 1.0f && w->data[3] == -2.5f);
    rt_st_free(&ts);
}

Test(rt, safetensors_any_order_spacing_escapes)
{
    rt_err err = {{0}};
    rt_tensors ts;
    size_t len;
    /* data order differs from header order; fields in any order; JSON spacing;
     * escapes in names; an unknown field; __metadata__ last and null */
    const char *h = "{ \"b\\u00e9\\ud83d\\ude00\" : { \"data_offsets\" : [ 8 , 12 ], \"shape\""
                    ": [ ], \"x\": {\"y\": [1, 2.5e-3, true, null]}, \"dtype\" : \"F32\" } ,\n"
                    "\t\"a\\n\\\"\\/\": {\"shape\": [2], \"dtype\": \"F32\", \"data_offsets\":"
                    " [0, 8]}, \"__metadata__\": null }   ";
    unsigned char *b = st_bytes(h, 12, &len);
    cr_assert(rt_st_read_mem(b, len, "m", &ts, &err) == 0, "%s", err.msg);
    cr_assert_eq(ts.n, 2);
    cr_assert_str_eq(ts.t[0].name, "b\xc3\xa9\xf0\x9f\x98\x80");
    cr_assert_str_eq(ts.t[1].name, "a\n\"/");
    cr_assert(ts.t[0].rank == 0 && ts.t[1].count == 2 && ts.nmeta == 0);
    cr_assert(!memcmp(ts.t[0].data, b + len - 4, 4));
    rt_st_free(&ts);
    free(b);
}

/* One refused header: its text, data length, and a word the message must hold. */
typedef struct {
    const char *header;
    size_t data_len;
    const char *word;
} hostile;

static const hostile hostiles[] = {
    {"not json at all", 0, "not a JSON object"},
    {"{\"a\":{", 0, "not valid JSON"},
    {"{\"a\" 1}", 0, "expected ':'"},
    {"{} x", 0, "text after the header"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},}", 4, "expected a string"},
    {"{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'a' has no 'dtype'"},
    {"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "has no 'shape'"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "has no 'data_offsets'"},
    {"{\"conv1.weight\":{\"dtype\":\"F17\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4,
     "tensor 'conv1.weight' has an unknown dtype 'F17'"},
    {"{\"conv1.weight\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
     "has 8 bytes of data but shape [2] of F16 needs 4"},
    {"{\"a\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype is not a string"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
     "\"data_offsets\":[0,4]}}", 4, "too many elements"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "not an integer"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,4]}}", 4, "not an integer"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1e3],\"data_offsets\":[0,4]}}", 4, "not an integer"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[9223372036854775808],\"data_offsets\":[0,4]}}", 4,
     "not an integer"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4,
     "not a number"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[01],\"data_offsets\":[0,4]}}", 4, "malformed number"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
     "more than 8 dimensions"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":5,\"data_offsets\":[0,4]}}", 4, "not an array"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "past the end"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, "end before"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, "needs 8"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "must have 2 entries, not 1"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4, "more than 2"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "overlap"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
     "belong to no tensor"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, "tensors use 4"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
     "tensor 'a' appears twice"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
     "two 'shape' fields"},
    {"{\"a\":7}", 0, "not described by an object"},
    {"{\"__metadata__\":{\"k\":1}}", 0, "not a string"},
    {"{\"__metadata__\":[]}", 0, "not an object"},
    {"{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, "key 'k' appears twice"},
    {"{\"__metadata__\":{},\"__metadata__\":{}}", 0, "two __metadata__"},
    {"{\"a\\x\":1}", 0, "unknown escape"},
    {"{\"a\\ud800\":1}", 0, "surrogate"},
    {"{\"a\\udc00\\ud800\":1}", 0, "surrogate"},
    {"{\"a\\u12\":1}", 0, "\\u escape"},
    {"{\"a\\u0000\":1}", 0, "\\u0000"},
    {"{\"a\xff\":1}", 0, "UTF-8"},
    {"{\"a\xc0\x80\":1}", 0, "UTF-8"},
    {"{\"a\xed\xa0\x80\":1}", 0, "UTF-8"},
    {"{\"a\xe2\x82\":1}", 0, "UTF-8"},
    {"{\"a\tb\":1}", 0, "control character"},
    {"{\"abc", 0, "unterminated string"},
    {"{\"a\":{\"x\":tru}}", 0, "expected a value"},
    {"{\"a\":{\"x\":-}}", 0, "malformed number"},
    {"{\"a\":{\"x\":1.}}", 0, "malformed number"},
    {"{\"a\":{\"x\":1e}}", 0, "malformed number"},
    {"{\"a\":{\"x\":[1 2]}}", 0, "expected ',' or ']'"},
    {"{\"a\":{\"x\":{\"a\":1 \"b\":2}}}", 0, "expected ',' or '}'"},
    {"[]", 0, "not a JSON object"},
};

Test(rt, safetensors_hostile_headers)
{
    for (size_t i = 0; i < sizeof hostiles / sizeof *hostiles; i++) {
        rt_err err = {{0}};
        const hostile *h = &hostiles[i];
        cr_assert(st_try(h->header, h->data_len, &err) == -1, "accepted: %s", h->header);
        cr_assert(strstr(err.msg, h->word), "case %zu: message \"%s\" lacks \"%s\"", i, err.msg,
                  h->word);
        cr_assert(!strncmp(err.msg, "h.safetensors: ", 15), "unlabelled: %s", err.msg);
    }
}

Test(rt, safetensors_nesting_limit)
{
    char h[400];
    rt_err err = {{0}};
    for (int depth = 60; depth <= 70; depth += 10) {
        int k = sprintf(h, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":");
        for (int i = 0; i < depth; i++)
            h[k++] = '[';
        for (int i = 0; i < depth; i++)
            h[k++] = ']';
        strcpy(h + k, "}}");
        int r = st_try(h, 4, &err);
        cr_assert_eq(r, depth <= 60 ? 0 : -1, "depth %d: %s", depth, err.msg);
    }
    cr_assert(strstr(err.msg, "nested deeper than 64"), "%s", err.msg);
}

static int st_len_past_end(rt_err *err)
{
    unsigned char b[412] = {0x7f, 0x96, 0x98}; /* 9999999 */
    rt_tensors ts;
    return rt_st_read_mem(b, sizeof b, "w.safetensors", &ts, err);
}

static int st_len_huge(rt_err *err)
{
    unsigned char b[16];
    memset(b, 0xff, sizeof b);
    rt_tensors ts;
    return rt_st_read_mem(b, sizeof b, "w.safetensors", &ts, err);
}

static int st_empty_file(rt_err *err)
{
    rt_tensors ts;
    put_file(in_dir("empty.safetensors"), "", 0);
    return rt_st_read(in_dir("empty.safetensors"), &ts, err);
}

static int st_missing(rt_err *err)
{
    rt_tensors ts;
    return rt_st_read(in_dir("nope.safetensors"), &ts, err);
}

static int st_short(rt_err *err)
{
    rt_tensors ts;
    return rt_st_read_mem("\x02\0\0\0", 4, "s", &ts, err);
}

Test(rt, safetensors_bad_files)
{
    rt_err err = {{0}};
    st_len_past_end(&err);
    cr_assert_str_eq(err.msg, "w.safetensors: header length 9999999 runs past the end of the "
                              "file (412 bytes)");
    EXPECT_FAIL(st_len_huge, "runs past the end");
    EXPECT_FAIL(st_empty_file, "too short (0 bytes)");
    EXPECT_FAIL(st_short, "too short (4 bytes)");
    EXPECT_FAIL(st_missing, "No such file or directory");
}

/* Every truncation, and many random byte changes, of a valid file are
 * handled without a crash or an out-of-bounds read (under ASan). */
Test(rt, safetensors_truncations_and_mutations)
{
    rt_err err = {{0}};
    char *b;
    size_t len;
    rt_tensors ts;
    const char *p = in_dir("w.safetensors");
    cr_assert(write_sample(p, &err) == 0, "%s", err.msg);
    cr_assert(rt_read_file(p, &b, &len, &err) == 0);
    for (size_t n = 0; n < len; n++) {
        char *c = malloc(n + 1);
        memcpy(c, b, n);
        cr_assert(rt_st_read_mem(c, n, "t", &ts, &err) == -1, "truncated to %zu accepted", n);
        free(c);
    }
    uint32_t seed = 12345;
    for (int i = 0; i < 20000; i++) {
        char *c = malloc(len);
        memcpy(c, b, len);
        for (int k = 0; k < 1 + i % 3; k++) {
            seed = seed * 1664525u + 1013904223u;
            size_t at = (seed >> 8) % (i % 2 ? len : 8 + (len > 300 ? 300 : len - 8));
            c[at] = (char)(seed >> 24);
        }
        rt_st_read_mem(c, len, "t", &ts, &err);
        rt_st_free(&ts);
        free(c);
    }
    free(b);
}

static int st_write_no_dir(rt_err *err)
{
    float x = 1;
    rt_tensor t = tensor("x", 1, (int64_t[]){1}, &x);
    return rt_st_write(in_dir("no/such/dir/w.safetensors"), 1, &t, 0, NULL, NULL, err);
}

static int st_write_dir_is_file(rt_err *err)
{
    float x = 1;
    rt_tensor t = tensor("x", 1, (int64_t[]){1}, &x);
    put_text(in_dir("plain"), "I am a file");
    return rt_st_write(in_dir("plain/w.safetensors"), 1, &t, 0, NULL, NULL, err);
}

static int st_write_over_dir(rt_err *err)
{
    float x = 1;
    rt_tensor t = tensor("x", 1, (int64_t[]){1}, &x);
    mkdir(in_dir("sub"), 0755);
    put_text(in_dir("sub/keep"), "x");
    return rt_st_write(in_dir("sub"), 1, &t, 0, NULL, NULL, err);
}

static int st_write_dup(rt_err *err)
{
    float x = 1;
    rt_tensor t[2] = {tensor("x", 1, (int64_t[]){1}, &x), tensor("x", 1, (int64_t[]){1}, &x)};
    return rt_st_write(in_dir("d.safetensors"), 2, t, 0, NULL, NULL, err);
}

static int st_write_bad_count(rt_err *err)
{
    float x[2] = {1, 2};
    rt_tensor t = tensor("x", 1, (int64_t[]){2}, x);
    t.count = 3;
    return rt_st_write(in_dir("d.safetensors"), 1, &t, 0, NULL, NULL, err);
}

static int st_write_reserved(rt_err *err)
{
    float x = 1;
    rt_tensor t = tensor("__metadata__", 1, (int64_t[]){1}, &x);
    return rt_st_write(in_dir("d.safetensors"), 1, &t, 0, NULL, NULL, err);
}

static int st_write_bad_utf8(rt_err *err)
{
    const char *k[] = {"k"}, *v[] = {"\xff"};
    return rt_st_write(in_dir("d.safetensors"), 0, NULL, 1, k, v, err);
}

Test(rt, safetensors_write_failures)
{
    EXPECT_FAIL(st_write_no_dir, "No such file or directory");
    EXPECT_FAIL(st_write_dir_is_file, "Not a directory");
    EXPECT_FAIL(st_write_over_dir, "rename");
    EXPECT_FAIL(st_write_dup, "tensor 'x' appears twice");
    EXPECT_FAIL(st_write_bad_count, "count 3");
    EXPECT_FAIL(st_write_reserved, "reserved");
    EXPECT_FAIL(st_write_bad_utf8, "UTF-8");
    cr_assert_eq(temp_files(), 0);
    cr_assert_eq(file_size(in_dir("d.safetensors")), -1);
}

/* A write that fails half way (the file size limit stands in for a full
 * disk) leaves the old file as it was and no temporary file. */
Test(rt, safetensors_failed_write_keeps_old_file)
{
    rt_err err = {{0}};
    rt_tensors ts;
    const char *p = in_dir("w.safetensors");
    cr_assert(write_sample(p, &err) == 0, "%s", err.msg);
    long before = file_size(p);

    static float big[100000];
    rt_tensor t = tensor("big", 1, (int64_t[]){100000}, big);
    struct rlimit lim = {4096, 4096};
    signal(SIGXFSZ, SIG_IGN);
    cr_assert(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    cr_assert(rt_st_write(p, 1, &t, 0, NULL, NULL, &err) == -1);
    cr_assert(strstr(err.msg, "cannot write") && strstr(err.msg, "File too large"), "%s",
              err.msg);
    cr_assert_eq(temp_files(), 0);
    cr_assert_eq(file_size(p), before);
    cr_assert(rt_st_read(p, &ts, &err) == 0, "%s", err.msg);
    cr_assert(ts.n == 4 && !memcmp(ts.t[0].data, conv_w, sizeof conv_w));
    rt_st_free(&ts);
}

/* ---- idx.c ---- */

/* An IDX file of unsigned bytes with the given dims, filled with f(i). */
static void put_idx(const char *path, int gz, int rank, const uint32_t *dims, int (*f)(size_t))
{
    size_t n = 1, k = 4;
    for (int i = 0; i < rank; i++)
        n *= dims[i];
    unsigned char *b = malloc(4 + 4 * (size_t)rank + n);
    memcpy(b, (unsigned char[]){0, 0, 8, (unsigned char)rank}, 4);
    for (int i = 0; i < rank; i++, k += 4)
        for (int j = 0; j < 4; j++)
            b[k + (size_t)j] = (unsigned char)(dims[i] >> (24 - 8 * j));
    for (size_t i = 0; i < n; i++)
        b[k + i] = (unsigned char)f(i);
    if (gz)
        put_gz(path, b, k + n);
    else
        put_file(path, b, k + n);
    free(b);
}

static int pix(size_t i)
{
    return (int)(i * 37 % 256);
}

static int lab(size_t i)
{
    return (int)(i * 3 % 10);
}

/* 5 images of 2 x 3 and their 5 labels, as img.idx/lab.idx (plain) or
 * img.gz/lab.gz. */
static void put_set(int gz)
{
    put_idx(in_dir(gz ? "img.gz" : "img.idx"), gz, 3, (uint32_t[]){5, 2, 3}, pix);
    put_idx(in_dir(gz ? "lab.gz" : "lab.idx"), gz, 1, (uint32_t[]){5}, lab);
}

static void check_set(const rt_data *d)
{
    cr_assert(d->n == 5 && d->dim == 6 && d->u8 && !d->f32);
    for (int i = 0; i < 30; i++)
        cr_assert_eq(d->u8[i], pix((size_t)i));
    for (int i = 0; i < 5; i++)
        cr_assert_eq(d->labels[i], lab((size_t)i));
}

Test(rt, idx_plain_and_gzip)
{
    rt_err err = {{0}};
    rt_data d;
    for (int gz = 0; gz < 2; gz++) {
        put_set(gz);
        cr_assert(rt_idx_load(in_dir(gz ? "img.gz" : "img.idx"),
                              in_dir(gz ? "lab.gz" : "lab.idx"), &d, &err) == 0, "%s", err.msg);
        check_set(&d);
        cr_assert(rt_data_check_labels(&d, 10, &err) == 0);
        float x[12];
        int32_t y[2];
        rt_data_batch(&d, (int64_t[]){4, 1}, 2, 1.0f / 255, x, y);
        cr_assert(fabsf(x[0] - pix(24) / 255.0f) < 1e-6f && fabsf(x[11] - pix(11) / 255.0f) < 1e-6f);
        cr_assert(y[0] == lab(4) && y[1] == lab(1));
        rt_data_free(&d);
        rt_data_free(&d);
    }
}

Test(rt, idx_slice)
{
    rt_err err = {{0}};
    rt_idx a;
    put_set(1);
    cr_assert(rt_idx_read(in_dir("img.gz"), 3, 2, &a, &err) == 0, "%s", err.msg);
    cr_assert(a.rank == 3 && a.dims[0] == 5 && a.item == 6 && a.first == 3 && a.n == 2);
    cr_assert(a.u8[0] == pix(18) && a.u8[11] == pix(29));
    rt_idx_free(&a);
    cr_assert(rt_idx_read(in_dir("img.gz"), 0, 0, &a, &err) == 0 && !a.u8 && a.dims[2] == 3);
    cr_assert(rt_idx_read(in_dir("img.gz"), 4, 2, &a, &err) == -1);
    cr_assert(strstr(err.msg, "item 5 (from 0) requested but the file holds 5"), "%s", err.msg);
}

static int idx_wrong_magic(rt_err *err)
{
    rt_data d;
    put_set(0);
    put_text(in_dir("bad.idx"), "PK\3\4 this is a zip");
    return rt_idx_load(in_dir("bad.idx"), in_dir("lab.idx"), &d, err);
}

static int idx_float_type(rt_err *err)
{
    rt_data d;
    put_set(0);
    put_file(in_dir("f.idx"), "\0\0\x0d\x01\0\0\0\1abcd", 12);
    return rt_idx_load(in_dir("img.idx"), in_dir("f.idx"), &d, err);
}

static int idx_truncated_plain(rt_err *err)
{
    rt_data d;
    put_set(0);
    truncate(in_dir("img.idx"), 20);
    return rt_idx_load(in_dir("img.idx"), in_dir("lab.idx"), &d, err);
}

static int idx_truncated_header(rt_err *err)
{
    rt_data d;
    put_set(0);
    truncate(in_dir("img.idx"), 9);
    return rt_idx_load(in_dir("img.idx"), in_dir("lab.idx"), &d, err);
}

/* The gzip stream cut at `keep` bytes from its end. */
static int idx_cut_gzip(rt_err *err, long cut)
{
    rt_data d;
    put_set(1);
    cr_assert(truncate(in_dir("img.gz"), file_size(in_dir("img.gz")) - cut) == 0);
    return rt_idx_load(in_dir("img.gz"), in_dir("lab.gz"), &d, err);
}

static int idx_gzip_half(rt_err *err)
{
    return idx_cut_gzip(err, 20);
}

static int idx_gzip_no_trailer(rt_err *err)
{
    return idx_cut_gzip(err, 4);
}

static int idx_gzip_bad_crc(rt_err *err)
{
    rt_data d;
    put_set(1);
    FILE *f = fopen(in_dir("img.gz"), "r+b");
    fseek(f, -8, SEEK_END);
    fputc(0x55, f);
    fclose(f);
    return rt_idx_load(in_dir("img.gz"), in_dir("lab.gz"), &d, err);
}

static int idx_count_mismatch(rt_err *err)
{
    rt_data d;
    put_set(0);
    put_idx(in_dir("lab4.idx"), 0, 1, (uint32_t[]){4}, lab);
    return rt_idx_load(in_dir("img.idx"), in_dir("lab4.idx"), &d, err);
}

static int idx_swapped(rt_err *err)
{
    rt_data d;
    put_set(0);
    return rt_idx_load(in_dir("lab.idx"), in_dir("img.idx"), &d, err);
}

static int idx_trailing(rt_err *err)
{
    rt_data d;
    put_set(0);
    FILE *f = fopen(in_dir("lab.idx"), "ab");
    fputc(7, f);
    fclose(f);
    return rt_idx_load(in_dir("img.idx"), in_dir("lab.idx"), &d, err);
}

static int idx_absurd(rt_err *err)
{
    rt_data d;
    put_set(0);
    put_file(in_dir("huge.idx"), "\0\0\x08\x03\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
             16);
    return rt_idx_load(in_dir("huge.idx"), in_dir("lab.idx"), &d, err);
}

static int idx_missing(rt_err *err)
{
    rt_data d;
    put_set(0);
    return rt_idx_load(in_dir("img.idx"), in_dir("nolabels.idx"), &d, err);
}

static int idx_bad_label(rt_err *err)
{
    rt_data d;
    put_set(0);
    cr_assert(rt_idx_load(in_dir("img.idx"), in_dir("lab.idx"), &d, err) == 0);
    int r = rt_data_check_labels(&d, 9, err); /* lab(3) == 9 */
    rt_data_free(&d);
    return r;
}

Test(rt, idx_errors)
{
    EXPECT_FAIL(idx_wrong_magic, "bad.idx: not an IDX file (magic bytes 50 4b 03 04");
    EXPECT_FAIL(idx_float_type, "element type 0x0d (float)");
    EXPECT_FAIL(idx_truncated_plain, "img.idx: truncated: the IDX data needs 30 bytes");
    EXPECT_FAIL(idx_truncated_header, "img.idx: truncated: the IDX dimensions");
    EXPECT_FAIL(idx_gzip_half, "img.gz: truncated");
    EXPECT_FAIL(idx_gzip_no_trailer, "img.gz: truncated: the gzip stream ends before its trailer");
    EXPECT_FAIL(idx_gzip_bad_crc, "img.gz: corrupt gzip data");
    EXPECT_FAIL(idx_count_mismatch, "img.idx holds 5 images but");
    EXPECT_FAIL(idx_count_mismatch, "lab4.idx holds 4 labels");
    EXPECT_FAIL(idx_swapped, "lab.idx: has shape [5], but an image file");
    EXPECT_FAIL(idx_trailing, "lab.idx: the file goes on after");
    EXPECT_FAIL(idx_absurd, "more than 16 GiB");
    EXPECT_FAIL(idx_missing, "nolabels.idx: cannot open: No such file");
    EXPECT_FAIL(idx_bad_label, "lab.idx: label 9 of example 3 (from 0) is outside [0, 9)");
}

Test(rt, idx_fashion_mnist)
{
    const char *base = "/usr/share/datasets/fashion-mnist/";
    char im[256], lb[256];
    snprintf(im, sizeof im, "%strain-images-idx3-ubyte.gz", base);
    snprintf(lb, sizeof lb, "%strain-labels-idx1-ubyte.gz", base);
    if (access(im, R_OK) || access(lb, R_OK))
        cr_skip_test("Fashion-MNIST is not installed in %s", base);
    rt_err err = {{0}};
    rt_data d;
    cr_assert(rt_idx_load(im, lb, &d, &err) == 0, "%s", err.msg);
    cr_assert(d.n == 60000 && d.dim == 784);
    cr_assert(rt_data_check_labels(&d, 10, &err) == 0, "%s", err.msg);
    int per_class[10] = {0};
    for (int64_t i = 0; i < d.n; i++)
        per_class[d.labels[i]]++;
    for (int k = 0; k < 10; k++)
        cr_assert_eq(per_class[k], 6000);
    rt_data_free(&d);

    int64_t n;
    rt_image img;
    snprintf(im, sizeof im, "%st10k-images-idx3-ubyte.gz", base);
    cr_assert(rt_image_count(im, &n, &err) == 0 && n == 10000, "%s", err.msg);
    cr_assert(rt_image_read(im, 9999, &img, &err) == 0, "%s", err.msg);
    cr_assert(img.c == 1 && img.h == 28 && img.w == 28);
    rt_image_free(&img);
}

/* ---- csv.c ---- */

Test(rt, csv_good)
{
    rt_err err = {{0}};
    rt_data d;
    const char *p = in_dir("d.csv");
    put_text(p, "label,a,b,c\r\n3, 0.5,1e2 ,-2\r\n7,0,0,0x10\r\n\r\n  \n\n");
    cr_assert(rt_csv_load(p, 0, 3, &d, &err) == 0, "%s", err.msg);
    cr_assert(d.n == 2 && d.dim == 3 && d.f32 && !d.u8 && d.first_line == 2);
    cr_assert(d.labels[0] == 3 && d.labels[1] == 7);
    cr_assert(d.f32[0] == 0.5f && d.f32[1] == 100 && d.f32[2] == -2 && d.f32[5] == 16);
    float x[3];
    int32_t y;
    rt_data_batch(&d, (int64_t[]){1}, 1, 0.5f, x, &y);
    cr_assert(x[2] == 8 && y == 7);
    rt_data_free(&d);

    put_text(p, "1,2,3.0\n4,5,6");
    cr_assert(rt_csv_load(p, 2, 0, &d, &err) == 0, "%s", err.msg);
    cr_assert(d.n == 2 && d.dim == 2 && d.first_line == 1 && d.labels[1] == 6 && d.f32[3] == 5);
    cr_assert(rt_data_check_labels(&d, 5, &err) == -1);
    cr_assert_str_eq(err.msg, strcat(strcpy((char[300]){0}, p), ":2: label 6 is outside [0, 5)"));
    rt_data_free(&d);
}

/* Loads text as dir/b.csv with the label in column 0 and 3 values. */
static int csv_text(const char *text, rt_err *err)
{
    rt_data d;
    put_text(in_dir("b.csv"), text);
    return rt_csv_load(in_dir("b.csv"), 0, 3, &d, err);
}

static int csv_text_row(rt_err *e)
{
    return csv_text("y,a,b,c\n1,2,3,4\n1,2,3,4\n1,2,abc,4\n", e);
}

static int csv_columns(rt_err *e)
{
    return csv_text("1,2,3,4\n1,2,3\n", e);
}

static int csv_label(rt_err *e)
{
    return csv_text("1,2,3,4\n2.5,2,3,4\n", e);
}

static int csv_empty_field(rt_err *e)
{
    return csv_text("1,2,3,4\n1,2,,4\n", e);
}

static int csv_inf(rt_err *e)
{
    return csv_text("1,2,3,4\n1,2,inf,4\n", e);
}

static int csv_gap(rt_err *e)
{
    return csv_text("1,2,3,4\n\n1,2,3,4\n", e);
}

static int csv_dim(rt_err *e)
{
    return csv_text("1,2,3\n", e);
}

static int csv_empty(rt_err *e)
{
    return csv_text("", e);
}

static int csv_header_only(rt_err *e)
{
    return csv_text("y,a,b,c\n", e);
}

static int csv_missing(rt_err *e)
{
    rt_data d;
    return rt_csv_load(in_dir("none.csv"), 0, 0, &d, e);
}

Test(rt, csv_errors)
{
    EXPECT_FAIL(csv_text_row, "b.csv:4: column 3: 'abc' is not a number");
    EXPECT_FAIL(csv_columns, "b.csv:2: 3 columns, expected 4");
    EXPECT_FAIL(csv_label, "b.csv:2: column 1: label '2.5' is not an integer");
    EXPECT_FAIL(csv_empty_field, "b.csv:2: column 3: '' is not a number");
    EXPECT_FAIL(csv_inf, "b.csv:2: column 3: 'inf' is not a number");
    EXPECT_FAIL(csv_gap, "b.csv:2: empty line inside the data");
    EXPECT_FAIL(csv_dim, "b.csv:1: 2 values besides the label, expected 3");
    EXPECT_FAIL(csv_empty, "b.csv:1: expected a row of numbers");
    EXPECT_FAIL(csv_header_only, "b.csv:2: expected a row of numbers");
    EXPECT_FAIL(csv_missing, "none.csv: cannot open: No such file");
}

/* ---- image.c ---- */

static void check_px(const rt_image *img, int c, int h, int w, const uint8_t *px)
{
    cr_assert(img->c == c && img->h == h && img->w == w, "got %dx%dx%d", img->c, img->h, img->w);
    for (int i = 0; i < c * h * w; i++)
        cr_assert_eq(img->px[i], px[i], "pixel %d: %d != %d", i, img->px[i], px[i]);
}

static void read_ok(const char *name, int c, int h, int w, const uint8_t *px)
{
    rt_err err = {{0}};
    rt_image img;
    cr_assert(rt_image_read(in_dir(name), 0, &img, &err) == 0, "%s: %s", name, err.msg);
    check_px(&img, c, h, w, px);
    rt_image_free(&img);
}

Test(rt, image_pnm)
{
    put_text(in_dir("a.pgm"), "P2\n# a comment\n3 2\n# another\n15\n0 15 7\n 1 2 3\n");
    read_ok("a.pgm", 1, 2, 3, (uint8_t[]){0, 255, 119, 17, 34, 51});
    put_file(in_dir("b.pgm"), "P5 2 2 255\n\x00\x10\x80\xff", 15);
    read_ok("b.pgm", 1, 2, 2, (uint8_t[]){0, 16, 128, 255});
    put_file(in_dir("c.pgm"), "P5\n2 1\n65535\n\xff\xff\x01\x01", 17);
    read_ok("c.pgm", 1, 1, 2, (uint8_t[]){255, 1});
    put_file(in_dir("d.ppm"), "P6 2 1 255\n\x01\x02\x03\x04\x05\x06", 17);
    read_ok("d.ppm", 3, 1, 2, (uint8_t[]){1, 4, 2, 5, 3, 6});
    put_text(in_dir("e.ppm"), "P3 1 1 255 10 20 30");
    read_ok("e.ppm", 3, 1, 1, (uint8_t[]){10, 20, 30});
}

/* A PNG written with libpng: rows are packed samples as the format stores them. */
static void put_png(const char *path, int w, int h, int type, int depth, int interlace,
                    const uint8_t *rows, const png_color *pal, int npal, const uint8_t *trns,
                    int ntrns)
{
    FILE *f = fopen(path, "wb");
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    cr_assert(f && png && info);
    if (setjmp(png_jmpbuf(png)))
        cr_assert_fail("libpng failed writing %s", path);
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, type, interlace,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (pal)
        png_set_PLTE(png, info, pal, npal);
    if (trns)
        png_set_tRNS(png, info, trns, ntrns, NULL);
    png_write_info(png, info);
    size_t stride = png_get_rowbytes(png, info);
    png_bytep rp[16];
    for (int y = 0; y < h; y++)
        rp[y] = (png_bytep)rows + (size_t)y * stride;
    png_write_image(png, rp);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    fclose(f);
}

Test(rt, image_png)
{
    put_png(in_dir("g8.png"), 2, 2, PNG_COLOR_TYPE_GRAY, 8, PNG_INTERLACE_NONE,
            (uint8_t[]){0, 50, 100, 255}, NULL, 0, NULL, 0);
    read_ok("g8.png", 1, 2, 2, (uint8_t[]){0, 50, 100, 255});
    put_png(in_dir("g2.png"), 3, 1, PNG_COLOR_TYPE_GRAY, 2, PNG_INTERLACE_NONE,
            (uint8_t[]){0x1b}, NULL, 0, NULL, 0); /* samples 0 1 2 (3) */
    read_ok("g2.png", 1, 1, 3, (uint8_t[]){0, 85, 170});
    put_png(in_dir("g16.png"), 2, 1, PNG_COLOR_TYPE_GRAY, 16, PNG_INTERLACE_NONE,
            (uint8_t[]){0xff, 0xff, 0x64, 0x64}, NULL, 0, NULL, 0);
    read_ok("g16.png", 1, 1, 2, (uint8_t[]){255, 100});
    put_png(in_dir("ga.png"), 2, 1, PNG_COLOR_TYPE_GRAY_ALPHA, 8, PNG_INTERLACE_NONE,
            (uint8_t[]){100, 0, 200, 255}, NULL, 0, NULL, 0);
    read_ok("ga.png", 1, 1, 2, (uint8_t[]){100, 200});
    put_png(in_dir("rgb.png"), 2, 1, PNG_COLOR_TYPE_RGB, 8, PNG_INTERLACE_NONE,
            (uint8_t[]){1, 2, 3, 4, 5, 6}, NULL, 0, NULL, 0);
    read_ok("rgb.png", 3, 1, 2, (uint8_t[]){1, 4, 2, 5, 3, 6});
    put_png(in_dir("rgba.png"), 2, 1, PNG_COLOR_TYPE_RGB_ALPHA, 8, PNG_INTERLACE_NONE,
            (uint8_t[]){1, 2, 3, 0, 4, 5, 6, 9}, NULL, 0, NULL, 0);
    read_ok("rgba.png", 3, 1, 2, (uint8_t[]){1, 4, 2, 5, 3, 6});
    png_color pal[2] = {{10, 20, 30}, {40, 50, 60}};
    put_png(in_dir("pal.png"), 3, 1, PNG_COLOR_TYPE_PALETTE, 1, PNG_INTERLACE_NONE,
            (uint8_t[]){0x40}, pal, 2, (uint8_t[]){0, 128}, 2); /* indices 0 1 0, tRNS */
    read_ok("pal.png", 3, 1, 3, (uint8_t[]){10, 40, 10, 20, 50, 20, 30, 60, 30});
    uint8_t big[8 * 8];
    for (int i = 0; i < 64; i++)
        big[i] = (uint8_t)(i * 4);
    put_png(in_dir("adam7.png"), 8, 8, PNG_COLOR_TYPE_GRAY, 8, PNG_INTERLACE_ADAM7, big, NULL, 0,
            NULL, 0);
    read_ok("adam7.png", 1, 8, 8, big);
}

static int img_read(const char *name, int64_t index, rt_err *err)
{
    rt_image img;
    int r = rt_image_read(in_dir(name), index, &img, err);
    rt_image_free(&img);
    return r;
}

static int img_missing(rt_err *e)
{
    return img_read("missing.png", 0, e);
}

static int img_gif(rt_err *e)
{
    put_text(in_dir("x.gif"), "GIF89a....");
    return img_read("x.gif", 0, e);
}

static int img_empty(rt_err *e)
{
    put_text(in_dir("e.pgm"), "");
    return img_read("e.pgm", 0, e);
}

static int img_pgm_truncated(rt_err *e)
{
    put_file(in_dir("t.pgm"), "P5 4 4 255\n\1\2\3", 14);
    return img_read("t.pgm", 0, e);
}

static int img_pgm_p2_truncated(rt_err *e)
{
    put_text(in_dir("t2.pgm"), "P2 2 2 255\n1 2 3");
    return img_read("t2.pgm", 0, e);
}

static int img_pgm_over_maxval(rt_err *e)
{
    put_text(in_dir("m.pgm"), "P2 2 1 10\n1 11");
    return img_read("m.pgm", 0, e);
}

static int img_pgm_header(rt_err *e)
{
    put_text(in_dir("h.pgm"), "P5 2 x 255\n");
    return img_read("h.pgm", 0, e);
}

static int img_png_truncated(rt_err *e)
{
    uint8_t px[64] = {0};
    put_png(in_dir("t.png"), 8, 8, PNG_COLOR_TYPE_GRAY, 8, PNG_INTERLACE_NONE, px, NULL, 0,
            NULL, 0);
    truncate(in_dir("t.png"), file_size(in_dir("t.png")) - 20);
    return img_read("t.png", 0, e);
}

static int img_png_index(rt_err *e)
{
    put_png(in_dir("g.png"), 1, 1, PNG_COLOR_TYPE_GRAY, 8, PNG_INTERLACE_NONE, (uint8_t[]){0},
            NULL, 0, NULL, 0);
    return img_read("g.png", 1, e);
}

static int img_idx_index(rt_err *e)
{
    put_set(1);
    return img_read("img.gz", 5, e);
}

static int img_idx_labels(rt_err *e)
{
    put_set(0);
    return img_read("lab.idx", 0, e);
}

Test(rt, image_errors)
{
    EXPECT_FAIL(img_missing, "missing.png: cannot open: No such file or directory");
    EXPECT_FAIL(img_gif, "x.gif: unknown image format (first bytes 47 49 46 38 39 61)");
    EXPECT_FAIL(img_empty, "e.pgm: the file is empty");
    EXPECT_FAIL(img_pgm_truncated, "t.pgm: truncated: 16 samples expected, the file has 4 bytes left");
    EXPECT_FAIL(img_pgm_p2_truncated, "sample 4 of 4 is missing");
    EXPECT_FAIL(img_pgm_over_maxval, "sample 2 is 11, above maxval 10");
    EXPECT_FAIL(img_pgm_header, "malformed P5 header");
    EXPECT_FAIL(img_png_truncated, "t.png: bad PNG: the file is truncated");
    EXPECT_FAIL(img_png_index, "holds one image, but image 1");
    EXPECT_FAIL(img_idx_index, "img.gz: item 5 (from 0) requested but the file holds 5");
    EXPECT_FAIL(img_idx_labels, "not images");
}

Test(rt, image_idx)
{
    rt_err err = {{0}};
    rt_image img;
    rt_idx a;
    int64_t n;
    put_set(1);
    cr_assert(rt_image_count(in_dir("img.gz"), &n, &err) == 0 && n == 5, "%s", err.msg);
    cr_assert(rt_image_read(in_dir("img.gz"), 2, &img, &err) == 0, "%s", err.msg);
    check_px(&img, 1, 2, 3, (uint8_t[]){pix(12), pix(13), pix(14), pix(15), pix(16), pix(17)});
    rt_image_free(&img);
    /* [n, H, W, 3] items are RGB, stored interleaved */
    put_idx(in_dir("rgb.idx"), 0, 4, (uint32_t[]){2, 1, 2, 3}, pix);
    cr_assert(rt_idx_read(in_dir("rgb.idx"), 0, -1, &a, &err) == 0, "%s", err.msg);
    cr_assert(rt_image_from_idx(&a, 1, "rgb.idx", &img, &err) == 0, "%s", err.msg);
    check_px(&img, 3, 1, 2, (uint8_t[]){pix(6), pix(9), pix(7), pix(10), pix(8), pix(11)});
    rt_image_free(&img);
    rt_idx_free(&a);
    put_text(in_dir("one.pgm"), "P2 1 1 1 1");
    cr_assert(rt_image_count(in_dir("one.pgm"), &n, &err) == 0 && n == 1);
}

/* An image with the given planes, for conversion tests. */
static rt_image mk_image(int c, int h, int w, const uint8_t *px)
{
    rt_image img = {c, h, w, malloc((size_t)(c * h * w))};
    memcpy(img.px, px, (size_t)(c * h * w));
    return img;
}

static void close_to(const float *x, const float *want, int n)
{
    for (int i = 0; i < n; i++)
        cr_assert(fabsf(x[i] - want[i]) < 1e-4f, "x[%d] = %g, want %g", i, x[i], want[i]);
}

Test(rt, image_to_input)
{
    rt_err err = {{0}};
    float x[48];
    rt_image g = mk_image(1, 2, 2, (uint8_t[]){0, 51, 102, 255});
    rt_image rgb = mk_image(3, 1, 2, (uint8_t[]){255, 0, 0, 255, 0, 0});
    rt_image row = mk_image(1, 1, 2, (uint8_t[]){0, 100});

    /* the same size: values times scale */
    cr_assert(rt_image_to_input(&g, 3, (int64_t[]){1, 2, 2}, 1.0f / 255, x, "g", &err) == 0);
    close_to(x, (float[]){0, 0.2f, 0.4f, 1}, 4);
    /* a flat input of the image's size */
    cr_assert(rt_image_to_input(&g, 1, (int64_t[]){4}, 1, x, "g", &err) == 0);
    close_to(x, (float[]){0, 51, 102, 255}, 4);
    /* gray replicated to 3 channels */
    cr_assert(rt_image_to_input(&g, 3, (int64_t[]){3, 2, 2}, 1, x, "g", &err) == 0);
    close_to(x + 8, (float[]){0, 51, 102, 255}, 4);
    /* RGB to gray by luma, rounded as PIL's convert("L"): 76.2 -> 76, 149.7 -> 150 */
    cr_assert(rt_image_to_input(&rgb, 2, (int64_t[]){1, 2}, 1, x, "rgb", &err) == 0);
    close_to(x, (float[]){76, 150}, 2);
    /* bilinear upsampling, half-pixel centers: [0, 100] -> [0, 25, 75, 100] */
    cr_assert(rt_image_to_input(&row, 2, (int64_t[]){1, 4}, 1, x, "row", &err) == 0);
    close_to(x, (float[]){0, 25, 75, 100}, 4);
    /* shrinking keeps a constant image constant; a square flat input */
    uint8_t flat[36];
    memset(flat, 77, sizeof flat);
    rt_image c6 = mk_image(1, 6, 6, flat);
    cr_assert(rt_image_to_input(&c6, 1, (int64_t[]){4}, 2, x, "c6", &err) == 0);
    close_to(x, (float[]){154, 154, 154, 154}, 4);
    /* shrinking by 2 with the widened triangle: weights 1/4 3/4 3/4 1/4, then
     * rounded to 8 bits as PIL does: 28.6 -> 29, 91.4 -> 91 */
    rt_image r4 = mk_image(1, 1, 4, (uint8_t[]){0, 40, 80, 120});
    cr_assert(rt_image_to_input(&r4, 2, (int64_t[]){1, 2}, 1, x, "r4", &err) == 0);
    close_to(x, (float[]){29, 91}, 2);
    /* impossible shapes */
    cr_assert(rt_image_to_input(&g, 1, (int64_t[]){5}, 1, x, "g", &err) == -1);
    cr_assert(strstr(err.msg, "g: a 1-channel 2x2 image cannot become an input of shape [5]"),
              "%s", err.msg);
    cr_assert(rt_image_to_input(&rgb, 3, (int64_t[]){2, 2, 2}, 1, x, "rgb", &err) == -1);
    rt_image_free(&g);
    rt_image_free(&rgb);
    rt_image_free(&row);
    rt_image_free(&c6);
    rt_image_free(&r4);
}

/* ---- jpeg.c ---- */

/* A JPEG of w x h pixels of nc interleaved components in color space cs,
 * written with libjpeg at quality 100. */
static void put_jpeg(const char *path, int w, int h, int nc, J_COLOR_SPACE cs,
                     const uint8_t *px)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    FILE *f = fopen(path, "wb");
    cr_assert(f);
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, f);
    c.image_width = (JDIMENSION)w, c.image_height = (JDIMENSION)h;
    c.input_components = nc, c.in_color_space = cs;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 100, TRUE);
    jpeg_start_compress(&c, TRUE);
    for (int y = 0; y < h; y++) {
        JSAMPROW row = (JSAMPROW)px + (size_t)y * w * nc;
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    fclose(f);
}

/* Every sample of plane k of img is within 2 of v (JPEG is lossy). */
static void plane_near(const rt_image *img, int k, int v)
{
    for (int i = 0; i < img->h * img->w; i++) {
        int got = img->px[k * img->h * img->w + i];
        cr_assert(abs(got - v) <= 2, "plane %d, pixel %d: %d, expected %d", k, i, got, v);
    }
}

/* An image of 16 x 8 pixels, each the nc samples s. */
static const char *put_flat_jpeg(const char *name, int nc, J_COLOR_SPACE cs, const uint8_t *s)
{
    uint8_t px[16 * 8 * 4];
    for (int i = 0; i < 16 * 8; i++)
        memcpy(px + i * nc, s, (size_t)nc);
    put_jpeg(in_dir(name), 16, 8, nc, cs, px);
    return in_dir(name);
}

Test(rt, image_jpeg)
{
    rt_err err = {{0}};
    rt_image img;
    cr_assert(rt_image_read(put_flat_jpeg("g.jpg", 1, JCS_GRAYSCALE, (uint8_t[]){100}), 0, &img,
                            &err) == 0, "%s", err.msg);
    cr_assert(img.c == 1 && img.w == 16 && img.h == 8);
    plane_near(&img, 0, 100);
    rt_image_free(&img);
    cr_assert(rt_image_read(put_flat_jpeg("c.jpg", 3, JCS_RGB, (uint8_t[]){200, 100, 50}), 0,
                            &img, &err) == 0, "%s", err.msg);
    cr_assert(img.c == 3 && img.w == 16 && img.h == 8);
    plane_near(&img, 0, 200), plane_near(&img, 1, 100), plane_near(&img, 2, 50);
    rt_image_free(&img);
    /* CMYK stored inverted (PIL's convention): stored (255, 0, 255, 255) is
     * C = 0, M = 255, Y = 0, K = 0: magenta */
    cr_assert(rt_image_read(put_flat_jpeg("k.jpg", 4, JCS_CMYK, (uint8_t[]){255, 0, 255, 255}),
                            0, &img, &err) == 0, "%s", err.msg);
    cr_assert(img.c == 3);
    plane_near(&img, 0, 255), plane_near(&img, 1, 0), plane_near(&img, 2, 255);
    rt_image_free(&img);
    /* and with K: stored K 127 is 50% black, stored C 0 is full cyan */
    cr_assert(rt_image_read(put_flat_jpeg("k2.jpg", 4, JCS_CMYK, (uint8_t[]){0, 255, 255, 127}),
                            0, &img, &err) == 0, "%s", err.msg);
    plane_near(&img, 0, 0), plane_near(&img, 1, 127), plane_near(&img, 2, 127);
    rt_image_free(&img);
}

/* A valid 16 x 8 RGB JPEG, then changed by f; read back. */
static int jpeg_variant(const char *name, void (*f)(const char *path), rt_err *e)
{
    const char *path = put_flat_jpeg(name, 3, JCS_RGB, (uint8_t[]){1, 2, 3});
    f(path);
    rt_image img;
    int r = rt_image_read(path, 0, &img, e);
    cr_assert(r == 0 || !img.px, "a failed read leaves no pixels");
    rt_image_free(&img);
    return r;
}

/* Overwrites the file's bytes at offset `at` (negative: from the end). */
static void patch(const char *path, long at, const void *b, size_t n)
{
    FILE *f = fopen(path, "r+b");
    cr_assert(f);
    fseek(f, at, at < 0 ? SEEK_END : SEEK_SET);
    fwrite(b, 1, n, f);
    fclose(f);
}

/* The offset of SOF0's precision byte (after FF C0 and a 2-byte length). */
static long sof_at(const char *path)
{
    char *b;
    size_t n;
    rt_err e = {{0}};
    cr_assert(rt_read_file(path, &b, &n, &e) == 0);
    long at = -1;
    for (size_t i = 0; i + 1 < n && at < 0; i++)
        if ((uint8_t)b[i] == 0xff && (uint8_t)b[i + 1] == 0xc0)
            at = (long)i + 4;
    free(b);
    cr_assert(at > 0, "no SOF0");
    return at;
}

static void cut_half(const char *p) { cr_assert(truncate(p, file_size(p) / 2) == 0); }
static void precision_12(const char *p) { patch(p, sof_at(p), "\x0c", 1); }
static void huge_size(const char *p) { patch(p, sof_at(p) + 1, "\x3f\xff\x3f\xff", 4); }
static void zero_size(const char *p) { patch(p, sof_at(p) + 1, "\0\0\0\0", 4); }
static void no_eoi(const char *p) { cr_assert(truncate(p, file_size(p) - 2) == 0); }
static int jpeg_truncated(rt_err *e) { return jpeg_variant("t.jpg", cut_half, e); }
static int jpeg_precision(rt_err *e) { return jpeg_variant("p.jpg", precision_12, e); }
static int jpeg_huge(rt_err *e) { return jpeg_variant("h.jpg", huge_size, e); }
static int jpeg_zero(rt_err *e) { return jpeg_variant("z.jpg", zero_size, e); }
static int jpeg_no_eoi(rt_err *e) { return jpeg_variant("e.jpg", no_eoi, e); }
static int jpeg_soi_only(rt_err *e)
{
    put_file(in_dir("s.jpg"), "\xff\xd8\xff", 3);
    rt_image img;
    return rt_image_read(in_dir("s.jpg"), 0, &img, e);
}

static int png_huge(rt_err *e)
{
    uint8_t px[4] = {0};
    put_png(in_dir("h.png"), 2, 2, PNG_COLOR_TYPE_GRAY, 8, PNG_INTERLACE_NONE, px, NULL, 0, NULL,
            0);
    /* IHDR's width and height (at 16), then its CRC (at 29) made right */
    uint8_t ihdr[17] = "IHDR\0\1\x86\xa0\0\1\x86\xa0\x08\0\0\0\0";
    uint32_t crc = rt_crc32(0, ihdr, 17);
    uint8_t be[4] = {crc >> 24, crc >> 16, crc >> 8, crc};
    patch(in_dir("h.png"), 16, ihdr + 4, 8);
    patch(in_dir("h.png"), 29, be, 4);
    return img_read("h.png", 0, e);
}

Test(rt, image_jpeg_errors)
{
    EXPECT_FAIL(jpeg_truncated, "t.jpg: bad JPEG: Premature end of JPEG file");
    EXPECT_FAIL(jpeg_precision, "p.jpg: bad JPEG: Unsupported JPEG data precision 12");
    EXPECT_FAIL(jpeg_huge, "h.jpg: image size 16383x16383x3 is outside 1..16384 per side, "
                           "134217728 samples in all");
    EXPECT_FAIL(jpeg_zero, "z.jpg: bad JPEG: Empty JPEG image");
    EXPECT_FAIL(jpeg_soi_only, "s.jpg: bad JPEG:");
    EXPECT_FAIL(png_huge, "h.png: image size 100000x100000x1 is outside");
    EXPECT_FAIL(jpeg_no_eoi, "e.jpg: bad JPEG: Premature end of JPEG file");
}

/* ---- preprocess.c ---- */

Test(rt, image_prepare)
{
    rt_err err = {{0}};
    float x[3 * 4 * 4];
    /* a 4 x 6 gray ramp (value = 10 * column), resize = 4 keeps the short side
     * (4 rows), so only the width shrinks: 6 -> trunc(4 * 6 / 4) = 6, unchanged;
     * crop = 4 then takes columns round((6 - 4) / 2) = 1 .. 4 */
    uint8_t ramp[24];
    for (int i = 0; i < 24; i++)
        ramp[i] = (uint8_t)(10 * (i % 6));
    rt_image g = mk_image(1, 4, 6, ramp);
    rt_prep p = {.resize = 4, .crop = 4, .scale = 1, .mean = {5, 5, 5}, .std = {2, 2, 2}};
    cr_assert(rt_image_prepare(&g, &p, 3, (int64_t[]){1, 4, 4}, x, "g", &err) == 0, "%s",
              err.msg);
    close_to(x, (float[]){2.5f, 7.5f, 12.5f, 17.5f}, 4);    /* (10 c - 5) / 2, c = 1..4 */
    /* an odd margin rounds half to even, as Python: 7 - 4 = 3 -> round(1.5) = 2 */
    uint8_t r7[7] = {0, 1, 2, 3, 4, 5, 6};
    rt_image row = mk_image(1, 1, 7, r7);
    rt_prep c = {.crop = 4, .scale = 1, .std = {1, 1, 1}};
    /* a 1 x 7 image cropped to 4 x 4: padded with zeros above and below
     * ((4 - 1) / 2 = 1 row above), columns 2..5 */
    cr_assert(rt_image_prepare(&row, &c, 2, (int64_t[]){4, 4}, x, "row", &err) == 0, "%s",
              err.msg);
    close_to(x, (float[]){0, 0, 0, 0, 2, 3, 4, 5, 0, 0, 0, 0, 0, 0, 0, 0}, 16);
    /* gray to three channels, each normalized with its own mean and std */
    rt_prep n = {.scale = 1.0f / 255, .mean = {0.5f, 0, 1}, .std = {0.5f, 1, 0.25f}};
    uint8_t w1[1] = {255};
    rt_image white = mk_image(1, 1, 1, w1);
    cr_assert(rt_image_prepare(&white, &n, 3, (int64_t[]){3, 1, 1}, x, "w", &err) == 0);
    close_to(x, (float[]){1, 1, 0}, 3);
    /* gray to four channels: the fourth takes the third's mean and std */
    cr_assert(rt_image_prepare(&white, &n, 3, (int64_t[]){4, 1, 1}, x, "w", &err) == 0);
    close_to(x, (float[]){1, 1, 0, 0}, 4);
    /* resize without the crop its aspect needs; a crop that is not the input's size */
    rt_prep r = {.resize = 2, .scale = 1, .std = {1, 1, 1}};
    cr_assert(rt_image_prepare(&g, &r, 3, (int64_t[]){1, 2, 2}, x, "g", &err) == -1);
    cr_assert(strstr(err.msg, "g: resize = 2 makes this 6x4 image 3x2, but the network takes "
                              "2x2: add a crop"), "%s", err.msg);
    rt_prep bad = {.crop = 3, .scale = 1, .std = {1, 1, 1}};
    cr_assert(rt_image_prepare(&g, &bad, 3, (int64_t[]){1, 2, 2}, x, "g", &err) == -1);
    cr_assert(strstr(err.msg, "g: crop = 3 makes 3x3 images, but the network takes 2x2"), "%s",
              err.msg);
    /* a resize whose long side would pass the limit */
    uint8_t thin[2] = {0, 0};
    rt_image t = mk_image(1, 1, 2, thin);
    rt_prep big = {.resize = 10000, .crop = 2, .scale = 1, .std = {1, 1, 1}};
    cr_assert(rt_image_prepare(&t, &big, 3, (int64_t[]){1, 2, 2}, x, "t", &err) == -1);
    cr_assert(strstr(err.msg, "t: resize = 10000 makes this 2x1 image 20000x10000, over 16384"),
              "%s", err.msg);
    rt_image_free(&g), rt_image_free(&row), rt_image_free(&white), rt_image_free(&t);
}

Test(rt, classes)
{
    rt_err err = {{0}};
    rt_classes c;
    cr_assert(rt_classes_parse("cat\r\ndog\nbig bird", 17, 3, "n", &c, &err) == 0, "%s", err.msg);
    cr_assert(c.n == 3 && !strcmp(c.name[0], "cat") && !strcmp(c.name[1], "dog") &&
              !strcmp(c.name[2], "big bird"));
    rt_classes_free(&c);
    cr_assert(rt_classes_parse("a\nb\n", 4, 3, "n.txt", &c, &err) == -1 && !c.name);
    cr_assert(strstr(err.msg, "n.txt: 2 class names (one per line), but the network has 3 classes"),
              "%s", err.msg);
    cr_assert(rt_classes_parse("a\nb\nc\nd\n", 8, 3, "n.txt", &c, &err) == -1);
    cr_assert(strstr(err.msg, "n.txt: 4 class names"), "%s", err.msg);
    cr_assert(rt_classes_parse("a\n\nc\n", 5, 3, "n.txt", &c, &err) == -1);
    cr_assert(strstr(err.msg, "n.txt:2: an empty class name"), "%s", err.msg);
    cr_assert(rt_classes_parse("a\0b\nc\n", 5, 2, "n.txt", &c, &err) == -1);
    cr_assert(strstr(err.msg, "NUL"), "%s", err.msg);
    put_text(in_dir("names.txt"), "x\ny\n");
    cr_assert(rt_classes_read(in_dir("names.txt"), 2, &c, &err) == 0 && c.n == 2);
    rt_classes_free(&c);
    cr_assert(rt_classes_read(in_dir("none.txt"), 2, &c, &err) == -1);
    cr_assert(strstr(err.msg, "none.txt: cannot open"), "%s", err.msg);
}

/* ---- error.c ---- */

Test(rt, read_file_and_fail)
{
    rt_err err = {{0}};
    char *b;
    size_t n;
    put_text(in_dir("t.txt"), "hello");
    cr_assert(rt_read_file(in_dir("t.txt"), &b, &n, &err) == 0 && n == 5 && b[5] == 0);
    free(b);
    cr_assert(rt_read_file(dir, &b, &n, &err) == -1 && b == NULL);
    cr_assert(strstr(err.msg, "cannot read: Is a directory"), "%s", err.msg);
    char longer[1000];
    memset(longer, 'x', sizeof longer - 1);
    longer[999] = 0;
    cr_assert(rt_fail(&err, "%s", longer) == -1 && strlen(err.msg) == 511);
    cr_assert(rt_fail(NULL, "nothing") == -1);
}

/* PyTorch files hold tensors of other dtypes (num_batches_tracked is I64):
 * they are checked and listed in `other`, the F32 ones load as usual. */
Test(rt, safetensors_other_dtypes_set_aside)
{
    const char *hdr = "{\"bn.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]},"
                      "\"bn.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}";
    size_t hl = strlen(hdr);
    unsigned char buf[512] = {0};
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)(hl >> (8 * i));
    memcpy(buf + 8, hdr, hl);
    float w[2] = {1.5f, -2.0f};
    memcpy(buf + 8 + hl + 8, w, sizeof w);
    rt_tensors ts;
    rt_err err = {{0}};
    cr_assert_eq(rt_st_read_mem(buf, 8 + hl + 16, "pt", &ts, &err), 0, "%s", err.msg);
    cr_assert_eq(ts.n, 1);
    cr_assert_eq(ts.nother, 1);
    cr_assert_str_eq(ts.other[0].name, "bn.num_batches_tracked");
    cr_assert_str_eq(ts.other[0].dtype, "I64");
    cr_assert_null(rt_st_find(&ts, "bn.num_batches_tracked"));
    cr_assert_float_eq(rt_st_find(&ts, "bn.weight")->data[1], -2.0f, 0);
    rt_st_free(&ts);
}

/* forward's typed outputs and inputs: floats written as U8, I8, BOOL and I64
 * (rounded, saturated, NaN as 0) and read back as floats (rt_st_find_values) */
Test(rt, safetensors_integer_dtypes)
{
    rt_err err = {{0}};
    rt_tensors ts;
    const char *p = in_dir("typed.safetensors");
    float v[5] = {-300.0f, -1.6f, 0.0f, NAN, 300.0f}, big[2] = {-3e9f, 16777216.0f};
    rt_tensor t[5] = {tensor("u8", 1, (int64_t[]){5}, v), tensor("i8", 1, (int64_t[]){5}, v),
                      tensor("bool", 1, (int64_t[]){5}, v), tensor("i64", 1, (int64_t[]){2}, big),
                      tensor("f32", 1, (int64_t[]){2}, big)};
    t[0].dtype = RT_U8, t[1].dtype = RT_I8, t[2].dtype = RT_BOOL, t[3].dtype = RT_I64;
    cr_assert(rt_st_write(p, 5, t, 0, NULL, NULL, &err) == 0, "%s", err.msg);
    cr_assert(rt_st_read(p, &ts, &err) == 0, "%s", err.msg);
    cr_assert_eq(ts.n, 1);                          /* only F32 is a parameter's */
    cr_assert_eq(ts.nother, 4);
    cr_assert_str_eq(ts.other[0].dtype, "U8");
    cr_assert_str_eq(ts.other[3].dtype, "I64");
    static const float want[3][5] = {{0, 0, 0, 0, 255}, {-128, -2, 0, 0, 127}, {1, 1, 0, 0, 1}};
    const char *names[3] = {"u8", "i8", "bool"};
    for (int k = 0; k < 3; k++) {
        const rt_tensor *r = rt_st_find_values(&ts, names[k]);
        cr_assert(r && r->count == 5 && r->rank == 1, "%s", names[k]);
        for (int i = 0; i < 5; i++)
            cr_assert_float_eq(r->data[i], want[k][i], 0, "%s[%d] = %g", names[k], i, r->data[i]);
    }
    const rt_tensor *r = rt_st_find_values(&ts, "i64");
    cr_assert(r && r->data[0] == -3e9f && r->data[1] == 16777216.0f);
    cr_assert(rt_st_find_values(&ts, "f32") == rt_st_find(&ts, "f32"));
    cr_assert_null(rt_st_find_values(&ts, "nothing"));
    rt_st_free(&ts);
}

/* ---- rt_parallel and rt_gemm_batch (parallel.c) ------------------------------ */

#include <omp.h>
#include <time.h>

/* Each call of the part spins whole_ns, or split_ns when split (on any
 * thread), whatever its range: a nest made quicker or slower by a split on
 * any machine, loaded or not. */
typedef struct { int *hits; int64_t whole_ns, split_ns; int in_parallel; } PartArgs;

static void part_mark(void *p, int64_t lo, int64_t hi)
{
    PartArgs *a = p;
    int64_t spin = omp_in_parallel() ? a->split_ns : a->whole_ns;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do
        clock_gettime(CLOCK_MONOTONIC, &t);
    while ((t.tv_sec - t0.tv_sec) * 1000000000 + (t.tv_nsec - t0.tv_nsec) < spin);
    for (int64_t i = lo; i < hi; i++)
#pragma omp atomic
        a->hits[i]++;
    if (omp_in_parallel())
#pragma omp atomic write
        a->in_parallel = 1;
}

/* Calls 0-2 of a call site at a batch size run whole and are timed, 3-5
 * split and timed (unless the nest is too quick to gain, or long: 50 us or
 * more), then the quicker way; every call covers the range once. Three
 * nests whose outcome does not depend on other load on the machine: a
 * quick one (never split), one of 20 us whole and 40 us split (data
 * crossing between the cores, made up: whole from then on), and a long one,
 * 200 us whole (split from call 3 on, even if 500 us so). */
Test(rt, parallel_covers_the_range_once)
{
    rt_inner_threads(2);
    int hits[100];
    PartArgs kinds[3] = {{hits, 0, 0, 0}, {hits, 20000, 40000, 0}, {hits, 200000, 500000, 0}};
    for (int k = 0; k < 3; k++)
        for (int call = 0; call < 12; call++) {
            memset(hits, 0, sizeof hits);
            PartArgs a = kinds[k];
            rt_parallel(part_mark, &a, 3, 100, 1 + k);      /* one call site: apart by the batch */
            for (int i = 0; i < 100; i++)
                cr_assert_eq(hits[i], i >= 3, "nest %d call %d: cell %d hit %d times", k, call, i, hits[i]);
            bool split = call >= 3 && (k == 2 || (k == 1 && call < 6));
            cr_assert_eq(a.in_parallel, split, "nest %d call %d: split %d", k, call, a.in_parallel);
        }
    rt_inner_threads(1);
}

/* The choice itself, from given times (a split that is quicker, which a
 * real one on a loaded machine need not be): a nest of 40 us whole and 5
 * us split runs split after its trials, except the whole and split
 * re-timings at calls 64 and 96; of 40 and 45 us, whole; of 500 ns, whole
 * and untimed (under the 1 us that a split must save). */
Test(rt, parallel_split_choice)
{
    bool timed;
    for (int64_t call = 0; call < 130; call++) {
        bool split = rt_split_choice(40000, 5000, 1000, call, &timed);
        bool trial = call < 6 || call % 64 == 0 || call % 64 == 32;
        cr_assert_eq(split, call >= 3 && call % 64 != 0, "call %lld: split %d", (long long)call, split);
        cr_assert_eq(timed, trial, "call %lld: timed %d", (long long)call, timed);
        cr_assert_eq(rt_split_choice(40000, 45000, 1000, call, &timed),
                     (call >= 3 && call < 6) || call % 64 == 32, "slower split, call %lld", (long long)call);
        split = rt_split_choice(500, 100, 1000, call, &timed);
        cr_assert(!split && timed == (call < 3 || call % 64 == 0), "quick nest, call %lld", (long long)call);
    }
}

static void gemm_ref(int64_t M, int64_t N, int64_t K, const float *A, int64_t sai, int64_t sak, const float *B,
                     int64_t ldb, float *C, int64_t ldc, bool acc, const float *bias)
{
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            float s = acc ? C[i * ldc + j] : bias ? bias[i] : 0;
            for (int64_t k = 0; k < K; k++)
                s += A[i * sai + k * sak] * B[k * ldb + j];
            C[i * ldc + j] = s;
        }
}

/* The cells of C each call of gemm_count computed (its M N), the most of them. */
static int64_t gemm_cells_most;

static void gemm_count(int64_t M, int64_t N, int64_t K, const float *A, int64_t sai, int64_t sak, const float *B,
                       int64_t ldb, float *C, int64_t ldc, bool acc, const float *bias)
{
    gemm_ref(M, N, K, A, sai, sak, B, ldb, C, ldc, acc, bias);
#pragma omp critical
    gemm_cells_most = M * N > gemm_cells_most ? M * N : gemm_cells_most;
}

/* rt_gemm on 2 threads: the same cells as on one, for C of 256 x 169 in
 * tiles of 6 x 32 (AlexNet's 13x13 layers at batch 1) and of 64 x 275, and
 * the busier thread gets at most 55% of C (169 columns split on tiles of
 * 32 would be 64 + 105: the rows are split instead). */
Test(rt, gemm_split_balanced_and_exact)
{
    static const int64_t shapes[][3] = {{256, 169, 40}, {64, 275, 36}, {8, 1000, 80}};
    for (int s = 0; s < 3; s++) {
        int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N);
        float *C = calloc((size_t)(M * N), sizeof(float)), *D = calloc((size_t)(M * N), sizeof(float));
        for (int64_t i = 0; i < M * K; i++)
            A[i] = (float)(i % 7) * 0.25f - 0.75f;
        for (int64_t i = 0; i < K * N; i++)
            B[i] = (float)(i % 5) * 0.5f - 1;
        gemm_ref(M, N, K, A, K, 1, B, N, D, N, false, NULL);
        gemm_cells_most = 0;
        rt_inner_threads(2);
        rt_gemm(gemm_count, M, N, K, A, K, 1, B, N, C, N, 0, NULL, 6 << 16 | 32 << 24);
        rt_inner_threads(1);
        for (int64_t i = 0; i < M * N; i++)
            cr_assert_eq(C[i], D[i], "%lld x %lld: cell %lld: %g, want %g", (long long)M, (long long)N, (long long)i,
                         C[i], D[i]);
        cr_assert(gemm_cells_most <= M * N * 55 / 100, "%lld x %lld: a thread computed %lld of %lld cells",
                  (long long)M, (long long)N, (long long)gemm_cells_most, (long long)(M * N));
        free(A), free(B), free(C), free(D);
    }
}

/* 36 GEMMs of 64 x 98 x 64 (a Winograd transform's), at steps, with a bias
 * per row: the same result on 2 threads (whole GEMMs each) as one by one. */
Test(rt, gemm_batch_matches_one_by_one)
{
    enum { G = 36, M = 64, N = 98, K = 64, CS = M * N + 16 };
    float *A = malloc(sizeof(float) * G * M * K), *B = malloc(sizeof(float) * G * K * N);
    float *C = calloc(G * CS, sizeof(float)), *D = calloc(G * CS, sizeof(float)), *bias = malloc(sizeof(float) * M);
    for (int i = 0; i < G * M * K; i++)
        A[i] = (float)(i % 7) - 3;
    for (int i = 0; i < G * K * N; i++)
        B[i] = (float)(i % 5) - 2;
    for (int i = 0; i < M; i++)
        bias[i] = (float)i;
    for (int g = 0; g < G; g++)
        gemm_ref(M, N, K, A + g * M * K, K, 1, B + g * K * N, N, D + g * CS, N, false, bias);
    rt_inner_threads(2);
    rt_gemm_batch(gemm_ref, M, N, K, A, K, 1, B, N, C, N, 0, bias, RT_GEMM_BIAS_ROWS | 6 << 16 | 32 << 24, G, M * K,
                  K * N, CS, 0);
    rt_inner_threads(1);
    for (int i = 0; i < G * CS; i++)
        cr_assert_eq(C[i], D[i], "cell %d: %g, want %g", i, C[i], D[i]);
    free(A), free(B), free(C), free(D), free(bias);
}

/* A B^T reference (RT_GEMM_BT) with a bias per column, recording which
 * columns of which slice (told apart by C) each thread computed. */
static float *shared_c[2];
static int shared_by[2][200];

static void gemm_ref_bt(int64_t M, int64_t N, int64_t K, const float *A, int64_t sai, int64_t sak, const float *B,
                        int64_t ldb, float *C, int64_t ldc, bool acc, const float *bias)
{
    (void)sak;
    int s = C >= shared_c[1] ? 1 : 0, t = omp_get_thread_num();
    for (int64_t j = 0; j < N; j++)
        shared_by[s][C - shared_c[s] + j] |= 1 << t;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            float v = acc ? C[i * ldc + j] : bias ? bias[j] : 0;
            for (int64_t k = 0; k < K; k++)
                v += A[i * sai + k] * B[j * ldb + k];
            C[i * ldc + j] = v;
        }
}

/* rt_gemm_shared: two threads, each with its slice of rows (3 and 2), in
 * rt_net_forward's way: every cell as the reference computes it, each
 * thread working on both slices (its half of the columns of each); with
 * rt_slices_together off, each thread on its own slice. */
Test(rt, gemm_shared_by_the_slices)
{
    enum { N = 200, K = 4096, M0 = 3, M1 = 2 };
    float *A = malloc(sizeof(float) * (M0 + M1) * K), *B = malloc(sizeof(float) * N * K), *bias = malloc(sizeof(float) * N);
    float *want = malloc(sizeof(float) * (M0 + M1) * N), *C = malloc(sizeof(float) * (M0 + M1) * N);
    for (int i = 0; i < (M0 + M1) * K; i++)
        A[i] = (float)(i % 7) - 3;
    for (int i = 0; i < N * K; i++)
        B[i] = (float)(i % 5) - 2;
    for (int j = 0; j < N; j++)
        bias[j] = (float)j;
    shared_c[0] = want, shared_c[1] = want + M0 * N;
    gemm_ref_bt(M0 + M1, N, K, A, K, 1, B, K, want, N, false, bias);
    for (int together = 0; together < 2; together++) {
        memset(C, 0, sizeof(float) * (M0 + M1) * N);
        memset(shared_by, 0, sizeof shared_by);
        shared_c[0] = C, shared_c[1] = C + M0 * N;
        int threads = 0;
#pragma omp parallel num_threads(2)
        {
            int t = omp_get_thread_num();
            if (t == 0)
                threads = omp_get_num_threads();
            rt_slices_together(together);
            rt_gemm_shared(gemm_ref_bt, t ? M1 : M0, N, K, A + (t ? M0 * K : 0), K, 1, B, K, shared_c[t], N, 0, bias,
                           RT_GEMM_BT | 4 << 16 | 4 << 24);
            rt_slices_together(false);
        }
        cr_assert_eq(threads, 2, "the test needs two threads");
        for (int i = 0; i < (M0 + M1) * N; i++)
            cr_assert_eq(C[i], want[i], "together %d: cell %d: %g, want %g", together, i, C[i], want[i]);
        for (int s = 0; s < 2; s++)
            for (int j = 0; j < N; j++)
                cr_assert_eq(shared_by[s][j], together ? 1 << (j >= N / 2) : 1 << s,
                             "together %d: slice %d column %d computed by threads %#x", together, s, j, shared_by[s][j]);
    }
    free(A), free(B), free(bias), free(want), free(C);
}
