/* fuzz_idx.c: libFuzzer target over the IDX reader (runtime/idx.c), plain
 * and gzip. The input is read as a file as it is (a gzip input, starting
 * 1f 8b, takes the gzip path with whatever corruption it holds) and, unless
 * it is gzip already, also as a well-formed gzip stream of its bytes, so
 * that every IDX structure is met inside gzip too. Each file is read whole,
 * header only, and as the slice of item 1; the whole file is also loaded
 * as images with a valid label file of the same count. Every reading must
 * succeed or fail with a message naming the file. */
#include "cnnrt.h"
#include "fuzz_file.h"

#include <string.h>
#include <zlib.h>

/* data as one gzip member (deflate with a gzip wrapper) into *out. */
static size_t gzip(const uint8_t *data, size_t size, uint8_t **out)
{
    z_stream z = {0};
    if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        abort();
    size_t cap = deflateBound(&z, (uLong)size) + 32;
    *out = malloc(cap);
    z.next_in = (Bytef *)data, z.avail_in = (uInt)size;
    z.next_out = *out, z.avail_out = (uInt)cap;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END)
        abort();
    size_t n = z.total_out;
    deflateEnd(&z);
    return n;
}

static void check(int rc, const rt_idx *a, const char *path, const rt_err *err)
{
    if (rc && (!strstr(err->msg, path) || a->u8 || a->n))
        abort();                       /* a message naming the file; nothing owned */
    if (!rc && (a->rank < 1 || a->rank > 4 || a->item < 0 || (a->n && a->item && !a->u8)))
        abort();
}

/* Images from path, labels from a valid label file of as many examples as
 * the images claim (if that is small). */
static void load(const char *path, const rt_idx *whole)
{
    if (whole->dims[0] > 4096)
        return;
    size_t n = (size_t)whole->dims[0];
    uint8_t *lab = malloc(8 + n);
    memcpy(lab, "\0\0\x08\x01", 4);
    for (int i = 0; i < 4; i++)
        lab[4 + i] = (uint8_t)(n >> (24 - 8 * i));
    for (size_t i = 0; i < n; i++)
        lab[8 + i] = (uint8_t)(i * 7 % 13);    /* some beyond 10 classes */
    const char *labels = fuzz_file(1, lab, 8 + n);
    rt_data d;
    rt_err err = {{0}};
    if (rt_idx_load(path, labels, &d, &err) == 0) {
        if (d.n != whole->dims[0] || d.dim != whole->item || !d.u8)
            abort();
        rt_data_check_labels(&d, 10, &err);
        float *x = malloc(sizeof(float) * (size_t)d.dim);
        int32_t y;
        int64_t last = d.n - 1;
        rt_data_batch(&d, &last, 1, 1 / 255.0f, x, &y);
        free(x);
        rt_data_free(&d);
    } else if (!err.msg[0]) {
        abort();
    }
    free(lab);
}

static void read_file(const char *path)
{
    rt_idx a;
    rt_err err = {{0}};
    int rc = rt_idx_read(path, 0, -1, &a, &err);
    check(rc, &a, path, &err);
    if (!rc && a.n != a.dims[0])
        abort();
    if (!rc)
        load(path, &a);
    rt_idx_free(&a);
    check(rt_idx_read(path, 0, 0, &a, &err), &a, path, &err);
    rt_idx_free(&a);
    rc = rt_idx_read(path, 1, 1, &a, &err);
    check(rc, &a, path, &err);
    if (!rc && (a.first != 1 || a.n != 1))
        abort();
    rt_idx_free(&a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    read_file(fuzz_file(0, data, size));
    if (size >= 2 && data[0] == 0x1f && data[1] == 0x8b)
        return 0;
    uint8_t *z;
    size_t n = gzip(data, size, &z);
    read_file(fuzz_file(0, z, n));
    free(z);
    return 0;
}
