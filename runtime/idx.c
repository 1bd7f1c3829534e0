/* idx.c -- IDX arrays, plain or gzip, and the data set helpers.
 *
 *   idx = 00 00 08 R, R x u32be dim, dim[0] * ... * dim[R-1] unsigned bytes
 *
 * zlib's gzread reads both kinds: it inflates a file that starts with the
 * gzip magic 1f 8b and passes any other file through unchanged. */
#define _POSIX_C_SOURCE 200809L
#include "cnnrt.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define MAX_BYTES ((int64_t)1 << 34) /* 16 GiB: a larger IDX array is refused */

/* Opens path for gzread, with the system's reason on failure. */
static gzFile open_gz(const char *path, rt_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rt_fail(err, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    gzFile f = gzdopen(fd, "rb");
    if (!f) {
        close(fd);
        rt_fail(err, "%s: out of memory", path);
        return NULL;
    }
    gzbuffer(f, 1 << 17);
    return f;
}

/* Why the last gzread came up short: zlib's complaint, or truncation after
 * `got` of the n bytes of `what`. */
static int gz_short(gzFile f, int64_t got, int64_t n, const char *path, const char *what,
                    rt_err *err)
{
    int zerr;
    const char *m = gzerror(f, &zerr);
    if (zerr == Z_ERRNO)
        return rt_fail(err, "%s: cannot read: %s", path, strerror(errno));
    if (zerr != Z_OK && zerr != Z_BUF_ERROR)
        return rt_fail(err, "%s: corrupt gzip data: %s", path, m);
    return rt_fail(err, "%s: truncated: %s needs %" PRId64 " bytes but only %" PRId64
                        " are left", path, what, n, got);
}

/* Reads exactly n bytes of `what` into buf. */
static int gz_read(gzFile f, void *buf, int64_t n, const char *path, const char *what,
                   rt_err *err)
{
    int64_t got = 0;
    while (got < n) {
        unsigned chunk = n - got < (1 << 30) ? (unsigned)(n - got) : 1u << 30;
        int k = gzread(f, (char *)buf + got, chunk);
        if (k <= 0)
            return gz_short(f, got, n, path, what, err);
        got += k;
    }
    return 0;
}

/* Reads exactly n bytes of `what` into a fresh *out that grows as the data
 * arrives, so that a header promising more than the file holds costs no
 * more memory than the file does. */
static int gz_read_new(gzFile f, int64_t n, uint8_t **out, const char *path,
                       const char *what, rt_err *err)
{
    int64_t got = 0, cap = 0;
    uint8_t *b = NULL;
    while (got < n) {
        if (got == cap) {
            cap = n - cap > cap + (1 << 20) ? cap * 2 + (1 << 20) : n;
            uint8_t *nb = realloc(b, (size_t)cap);
            if (!nb) {
                free(b);
                return rt_fail(err, "%s: out of memory for %" PRId64 " bytes", path, cap);
            }
            b = nb;
        }
        int64_t want = cap - got < (1 << 30) ? cap - got : 1 << 30;
        int k = gzread(f, b + got, (unsigned)want);
        if (k <= 0) {
            free(b);
            return gz_short(f, got, n, path, what, err);
        }
        got += k;
    }
    *out = b;
    return 0;
}

/* a * b for 0 <= a <= MAX_BYTES + 1 and 0 <= b < 2^32, or MAX_BYTES + 1 if
 * that is more than MAX_BYTES. */
static int64_t mul_cap(int64_t a, int64_t b)
{
    return b && a > MAX_BYTES / b ? MAX_BYTES + 1 : a * b;
}

static const char *type_name(int t)
{
    return t == 0x09 ? "signed byte" : t == 0x0B ? "short" : t == 0x0C ? "int"
           : t == 0x0D ? "float" : t == 0x0E ? "double" : "unknown";
}

/* The magic (00 00 08 R) and the R dims; sets rank, dims and item. */
static int read_header(gzFile f, const char *path, rt_idx *a, rt_err *err)
{
    unsigned char m[4], d[16];
    char sh[96];
    if (gz_read(f, m, 4, path, "the IDX magic number", err))
        return -1;
    if (m[0] || m[1] || m[3] < 1 || m[3] > 4)
        return rt_fail(err, "%s: not an IDX file (magic bytes %02x %02x %02x %02x, expected "
                            "00 00 08 01..04)", path, m[0], m[1], m[2], m[3]);
    if (m[2] != 0x08)
        return rt_fail(err, "%s: IDX element type 0x%02x (%s) is not supported, only unsigned "
                            "bytes (0x08)", path, m[2], type_name(m[2]));
    a->rank = m[3];
    if (gz_read(f, d, 4 * a->rank, path, "the IDX dimensions", err))
        return -1;
    for (int i = 0; i < a->rank; i++) {
        const unsigned char *b = d + 4 * i;
        a->dims[i] = (int64_t)b[0] << 24 | b[1] << 16 | b[2] << 8 | b[3];
    }
    a->item = 1;
    for (int i = 1; i < a->rank; i++)
        a->item = mul_cap(a->item, a->dims[i]);
    if (mul_cap(a->dims[0], a->item) > MAX_BYTES)
        return rt_fail(err, "%s: IDX dimensions %s hold more than 16 GiB", path,
                       rt_shape_str(a->rank, a->dims, sh, sizeof sh));
    return 0;
}

/* After the whole array: the file must end there, and a gzip stream must
 * end with its trailer and pass its check. */
static int read_end(gzFile f, const char *path, rt_err *err)
{
    char c;
    int zerr, k = gzread(f, &c, 1);
    if (k > 0)
        return rt_fail(err, "%s: the file goes on after the IDX data it declares", path);
    gzerror(f, &zerr);
    if (zerr == Z_BUF_ERROR)
        return rt_fail(err, "%s: truncated: the gzip stream ends before its trailer", path);
    return k < 0 || zerr != Z_OK ? gz_short(f, 0, 0, path, "", err) : 0;
}

/* Items [first, first + n) of the array whose header has been read. */
static int read_items(gzFile f, const char *path, int64_t first, int64_t n, rt_idx *a,
                      rt_err *err)
{
    int64_t total = a->dims[0];
    if (first < 0 || first > total)
        n = 1;
    else if (n < 0)
        n = total - first;
    if (first < 0 || first > total || n > total - first)
        return rt_fail(err, "%s: item %" PRId64 " (from 0) requested but the file holds %"
                            PRId64, path, first < 0 || first > total ? first : first + n - 1,
                       total);
    a->first = first;
    a->n = n;
    if (!n)
        return 0;
    if (first && gzseek(f, (z_off_t)(first * a->item), SEEK_CUR) < 0)
        return gz_short(f, 0, first * a->item, path, "skipping to the item", err);
    if (gz_read_new(f, n * a->item, &a->u8, path, "the IDX data", err))
        return -1;
    return first == 0 && n == total ? read_end(f, path, err) : 0;
}

int rt_idx_read(const char *path, int64_t first, int64_t n, rt_idx *out, rt_err *err)
{
    memset(out, 0, sizeof *out);
    gzFile f = open_gz(path, err);
    if (!f)
        return -1;
    int r = read_header(f, path, out, err) || read_items(f, path, first, n, out, err);
    gzclose(f);
    if (r)
        rt_idx_free(out);
    return r ? -1 : 0;
}

void rt_idx_free(rt_idx *a)
{
    free(a->u8);
    memset(a, 0, sizeof *a);
}

/* An image file is [n, ...] with at least one more axis; a label file [n] or
 * [n, 1]; both have the same n > 0. */
static int check_pair(const char *images, const rt_idx *im, const char *labels,
                      const rt_idx *lb, rt_err *err)
{
    char sh[96];
    if (im->rank < 2)
        return rt_fail(err, "%s: has shape %s, but an image file needs a count and image "
                            "dimensions", images, rt_shape_str(im->rank, im->dims, sh, sizeof sh));
    if (lb->item != 1)
        return rt_fail(err, "%s: has shape %s, but a label file holds one label per example",
                       labels, rt_shape_str(lb->rank, lb->dims, sh, sizeof sh));
    if (im->dims[0] != lb->dims[0])
        return rt_fail(err, "%s holds %" PRId64 " images but %s holds %" PRId64 " labels",
                       images, im->dims[0], labels, lb->dims[0]);
    if (!im->dims[0] || !im->item)
        return rt_fail(err, "%s: holds no image data", images);
    return 0;
}

/* Moves im's bytes into d and widens lb's labels. */
static int fill(rt_data *d, rt_idx *im, const rt_idx *lb, const char *labels, rt_err *err)
{
    d->n = im->dims[0];
    d->dim = im->item;
    d->u8 = im->u8;
    im->u8 = NULL;
    d->labels = malloc((size_t)d->n * sizeof *d->labels);
    d->label_file = strdup(labels);
    if (!d->labels || !d->label_file)
        return rt_fail(err, "%s: out of memory", labels);
    for (int64_t i = 0; i < d->n; i++)
        d->labels[i] = lb->u8[i];
    return 0;
}

int rt_idx_load(const char *images, const char *labels, rt_data *d, rt_err *err)
{
    rt_idx im, lb;
    memset(d, 0, sizeof *d);
    memset(&im, 0, sizeof im);
    int r = rt_idx_read(labels, 0, -1, &lb, err) || rt_idx_read(images, 0, -1, &im, err) ||
            check_pair(images, &im, labels, &lb, err) || fill(d, &im, &lb, labels, err);
    rt_idx_free(&im);
    rt_idx_free(&lb);
    if (r)
        rt_data_free(d);
    return r ? -1 : 0;
}

int rt_data_check_labels(const rt_data *d, int nclasses, rt_err *err)
{
    for (int64_t i = 0; i < d->n; i++) {
        int32_t y = d->labels[i];
        if (y >= 0 && y < nclasses)
            continue;
        if (d->first_line)
            return rt_fail(err, "%s:%" PRId64 ": label %" PRId32 " is outside [0, %d)",
                           d->label_file, d->first_line + i, y, nclasses);
        return rt_fail(err, "%s: label %" PRId32 " of example %" PRId64 " (from 0) is outside "
                            "[0, %d)", d->label_file, y, i, nclasses);
    }
    return 0;
}

void rt_data_batch(const rt_data *d, const int64_t *rows, int n, float scale, float *x,
                   int32_t *y)
{
    size_t dim = (size_t)d->dim;
    for (int i = 0; i < n; i++) {
        size_t r = (size_t)rows[i];
        float *o = x + (size_t)i * dim;
        if (d->u8)
            for (size_t k = 0; k < dim; k++)
                o[k] = (float)d->u8[r * dim + k] * scale;
        else
            for (size_t k = 0; k < dim; k++)
                o[k] = d->f32[r * dim + k] * scale;
        if (y)
            y[i] = d->labels[r];
    }
}

void rt_data_free(rt_data *d)
{
    free(d->u8);
    free(d->f32);
    free(d->labels);
    free(d->label_file);
    memset(d, 0, sizeof *d);
}
