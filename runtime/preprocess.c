/* preprocess.c -- from an image to a network input, as the data { } block
 * says, and from output rows to class names.
 *
 * The pipeline is torchvision's, through PIL, step for step, in 8-bit
 * samples until the last step, so that a photo gives the same tensor here
 * as in Python:
 *   convert    to the input's channels     PIL's convert("RGB") / ("L")
 *   resize     shorter side to N, bilinear Resize(N)      (PIL resample)
 *   crop       centre N x N                CenterCrop(N)
 *   normalize  (v * scale - mean) / std    ToTensor(), Normalize(mean, std)
 * Without resize and crop the image is stretched to the input's size. */
#include "cnnrt.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the input's shape ---- */

/* The side of a square of n pixels, or 0. */
static int64_t square_side(int64_t n)
{
    int64_t q = n > 0 ? (int64_t)sqrt((double)n + 0.5) : 0;
    return q * q == n ? q : 0;
}

/* A flat input of d values as [C, H, W] for img: see rt_image_to_input. */
static void flat_size(const rt_image *img, int64_t d, int64_t s[3])
{
    int64_t q = square_side(d), q3 = d % 3 ? 0 : square_side(d / 3);
    int same = d == (int64_t)img->c * img->h * img->w;
    s[0] = same ? img->c : q ? 1 : 3;
    s[1] = same ? img->h : q ? q : q3;
    s[2] = same ? img->w : s[1];
}

/* The input's channels and size for img: see rt_image_to_input. */
static int input_size(const rt_image *img, int rank, const int64_t *dims, int64_t s[3])
{
    if (rank == 1)
        flat_size(img, dims[0], s);
    for (int i = 0; i < 3 && rank > 1; i++)
        s[i] = i < 3 - rank ? 1 : dims[i - (3 - rank)];
    for (int i = 0; i < 3; i++)
        if (s[i] < 1 || s[i] > RT_IMAGE_MAX_SIDE)
            return -1;
    return img->c == s[0] || img->c == 1 || (img->c == 3 && s[0] == 1) ? 0 : -1;
}

/* ---- channels ---- */

/* img with c channels, as PIL converts: gray to RGB by replication, RGB to
 * gray by ITU-R 601-2 luma in 16-bit fixed point, rounded,
 *   L = (19595 R + 38470 G + 7471 B + 2^15) >> 16. */
static int convert(const rt_image *img, int c, rt_image *out, const char *label, rt_err *err)
{
    if (rt_image_alloc(out, c, img->h, img->w, label, err))
        return -1;
    size_t hw = (size_t)img->h * (size_t)img->w;
    const uint8_t *p = img->px;
    for (int k = 0; k < c; k++)
        for (size_t i = 0; i < hw; i++)
            out->px[k * hw + i] = img->c == c ? p[k * hw + i]
                                  : img->c == 1 ? p[i]
                                  : (uint8_t)((19595u * p[i] + 38470u * p[hw + i] +
                                               7471u * p[2 * hw + i] + 32768u) >> 16);
    return 0;
}

/* ---- resampling, as PIL's Image.resize(size, BILINEAR) ----
 *
 * Each axis separately, width first, each pass rounding to 8 bits. Output i
 * of an axis resized from `in` to `out` samples (scale s = in / out) is
 * centred at x = (i + 0.5) s in input coordinates and is the weighted sum of
 * inputs j in [lo, hi), lo = trunc(x - f + 0.5), hi = trunc(x + f + 0.5)
 * clipped to [0, in], with f = max(s, 1) the filter's support:
 *   w_j = tri((j + 0.5 - x) / f),  tri(t) = max(0, 1 - |t|),
 * normalized to sum to 1. When shrinking (f = s > 1) the triangle widens so
 * every input counts (antialiasing); at f = 1 it is linear interpolation.
 * Weights are fixed point with 22 fraction bits, each rounded; a sum starts
 * at 2^21 (rounding) and is shifted down and clamped to 0..255. */

enum { PREC = 22 };

/* The taps of one axis: output i reads n[i] inputs from lo[i], weights
 * k[i * ksize + 0 .. n[i]). */
typedef struct {
    int *lo, *n, ksize;
    int32_t *k;
} taps;

static void taps_free(taps *t)
{
    free(t->lo);
    free(t->n);
    free(t->k);
}

static int taps_make(taps *t, int in, int out)
{
    double s = (double)in / out, f = s < 1 ? 1 : s;
    t->ksize = (int)ceil(f) * 2 + 1;
    t->lo = malloc((size_t)out * sizeof *t->lo);
    t->n = malloc((size_t)out * sizeof *t->n);
    t->k = calloc((size_t)out * (size_t)t->ksize, sizeof *t->k);
    double *w = malloc((size_t)t->ksize * sizeof *w);
    if (!t->lo || !t->n || !t->k || !w) {
        free(w);
        return -1;
    }
    for (int i = 0; i < out; i++) {
        double x = (i + 0.5) * s, sum = 0;
        int lo = (int)(x - f + 0.5), hi = (int)(x + f + 0.5);
        lo = lo < 0 ? 0 : lo;
        hi = hi > in ? in : hi;
        for (int j = lo; j < hi; j++) {
            double d = fabs((j - x + 0.5) / f);
            sum += w[j - lo] = d < 1 ? 1 - d : 0;
        }
        for (int j = lo; j < hi; j++)
            t->k[(size_t)i * t->ksize + (size_t)(j - lo)] =
                (int32_t)(0.5 + (sum != 0 ? w[j - lo] / sum : w[j - lo]) * (1 << PREC));
        t->lo[i] = lo;
        t->n[i] = hi - lo;
    }
    free(w);
    return 0;
}

static uint8_t clip8(int32_t v)
{
    v >>= PREC;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* Output i of an axis, reading inputs s[j * stride]. */
static uint8_t tap(const taps *t, int i, const uint8_t *s, size_t stride)
{
    const int32_t *k = t->k + (size_t)i * t->ksize;
    const uint8_t *p = s + (size_t)t->lo[i] * stride;
    int32_t v = 1 << (PREC - 1);
    for (int j = 0; j < t->n[i]; j++)
        v += p[(size_t)j * stride] * k[j];
    return clip8(v);
}

/* One plane of h x w along x into h x ow (dst), or along y into oh x w. */
static void pass_x(const uint8_t *src, int h, int w, const taps *t, uint8_t *dst, int ow)
{
    for (int y = 0; y < h; y++)
        for (int x = 0; x < ow; x++)
            dst[(size_t)y * ow + x] = tap(t, x, src + (size_t)y * w, 1);
}

static void pass_y(const uint8_t *src, int w, const taps *t, uint8_t *dst, int oh)
{
    for (int y = 0; y < oh; y++)
        for (int x = 0; x < w; x++)
            dst[(size_t)y * w + x] = tap(t, y, src + x, (size_t)w);
}

/* img resized to oh x ow into *out. A pass whose axis keeps its size is
 * skipped, as PIL does (it would copy anyway). */
static int resample(const rt_image *img, int oh, int ow, rt_image *out, const char *label,
                    rt_err *err)
{
    if (rt_image_alloc(out, img->c, oh, ow, label, err))
        return -1;
    int h = img->h, w = img->w;
    taps tx = {0}, ty = {0};
    uint8_t *mid = malloc((size_t)h * (size_t)ow);
    int r = !mid || taps_make(&tx, w, ow) || taps_make(&ty, h, oh);
    for (int k = 0; k < img->c && !r; k++) {
        const uint8_t *src = img->px + (size_t)k * h * w;
        uint8_t *dst = out->px + (size_t)k * oh * ow;
        if (ow != w)
            pass_x(src, h, w, &tx, h == oh ? dst : mid, ow);
        const uint8_t *m = ow != w ? mid : src;
        if (oh != h)
            pass_y(m, ow, &ty, dst, oh);
        else if (ow == w)
            memcpy(dst, src, (size_t)h * w);
    }
    taps_free(&tx);
    taps_free(&ty);
    free(mid);
    if (r) {
        rt_image_free(out);
        return rt_fail(err, "%s: out of memory", label);
    }
    return 0;
}

/* The size Resize(n) gives an h x w image, as torchvision computes it: the
 * shorter side becomes n, the longer one trunc(n * long / short). */
static void resize_size(int h, int w, int n, int64_t *oh, int64_t *ow)
{
    int64_t lng = (int64_t)((double)n * (h > w ? h : w) / (h > w ? w : h));
    *oh = w <= h ? lng : n;
    *ow = w <= h ? n : lng;
}

/* ---- centre crop, as torchvision's CenterCrop ----
 * The offset of an n-sample window in `len` samples: round((len - n) / 2),
 * halves to even as Python's round; a window larger than the image is
 * padded with zeros, (n - len) / 2 (floored) before it. */
static int crop_offset(int len, int n)
{
    if (n > len)
        return -((n - len) / 2);
    int d = len - n, q = d / 2;
    return d % 2 == 0 || q % 2 == 0 ? q : q + 1;
}

/* The n x n centre of img, as floats v * scale, then (v - mean) / std per
 * channel, into x. Samples outside the image (padding) are 0 before the
 * normalization, as torchvision pads. Channels past the third (a gray image
 * copied to C > 3 channels) take the third's mean and std: with more than
 * three channels, the data block gives one value for all. */
static void crop_to_input(const rt_image *img, int oh, int ow, const rt_prep *p, float *x)
{
    int top = crop_offset(img->h, oh), left = crop_offset(img->w, ow);
    for (int k = 0; k < img->c; k++) {
        const uint8_t *plane = img->px + (size_t)k * img->h * img->w;
        float mean = p->mean[k < 3 ? k : 2], std = p->std[k < 3 ? k : 2];
        for (int y = 0; y < oh; y++)
            for (int i = 0; i < ow; i++) {
                int sy = y + top, sx = i + left;
                int in = sy >= 0 && sy < img->h && sx >= 0 && sx < img->w;
                float v = in ? plane[(size_t)sy * img->w + sx] * p->scale : 0;
                x[((size_t)k * oh + y) * ow + i] = (v - mean) / std;
            }
    }
}

/* ---- the whole pipeline ---- */

static int bad_shape(const rt_image *img, int rank, const int64_t *dims, const char *label,
                     rt_err *err)
{
    char sh[96] = "[";
    for (int i = 0; i < rank && i < 3; i++)
        snprintf(sh + strlen(sh), sizeof sh - strlen(sh), "%s%" PRId64, i ? ", " : "", dims[i]);
    return rt_fail(err, "%s: a %d-channel %dx%d image cannot become an input of shape %s]", label,
                   img->c, img->w, img->h, sh);
}

/* The size to resample img to (before cropping), or -1 after a message. */
static int resampled_size(const rt_image *img, const rt_prep *p, int oh, int ow, int64_t *rh,
                          int64_t *rw, const char *label, rt_err *err)
{
    if (p->resize > 0)
        resize_size(img->h, img->w, p->resize, rh, rw);
    else if (p->crop > 0)
        *rh = img->h, *rw = img->w;
    else
        *rh = oh, *rw = ow;
    if (*rh > RT_IMAGE_MAX_SIDE || *rw > RT_IMAGE_MAX_SIDE)
        return rt_fail(err, "%s: resize = %d makes this %dx%d image %" PRId64 "x%" PRId64
                            ", over %d pixels a side", label, p->resize, img->w, img->h, *rw,
                       *rh, RT_IMAGE_MAX_SIDE);
    if (p->crop <= 0 && (*rh != oh || *rw != ow))
        return rt_fail(err, "%s: resize = %d makes this %dx%d image %" PRId64 "x%" PRId64
                            ", but the network takes %dx%d: add a crop", label, p->resize,
                       img->w, img->h, *rw, *rh, ow, oh);
    return 0;
}

int rt_image_prepare(const rt_image *img, const rt_prep *p, int rank, const int64_t *dims,
                     float *x, const char *label, rt_err *err)
{
    int64_t s[3], rh, rw;
    if (rank < 1 || rank > 3 || input_size(img, rank, dims, s))
        return bad_shape(img, rank, dims, label, err);
    int c = (int)s[0], oh = (int)s[1], ow = (int)s[2];
    if (p->crop > 0 && (p->crop != oh || p->crop != ow))
        return rt_fail(err, "%s: crop = %d makes %dx%d images, but the network takes %dx%d",
                       label, p->crop, p->crop, p->crop, ow, oh);
    if (resampled_size(img, p, oh, ow, &rh, &rw, label, err))
        return -1;
    rt_image conv = {0}, sized = {0};
    int r = convert(img, c, &conv, label, err) ||
            resample(&conv, (int)rh, (int)rw, &sized, label, err);
    if (!r)
        crop_to_input(&sized, oh, ow, p, x);
    rt_image_free(&conv);
    rt_image_free(&sized);
    return r ? -1 : 0;
}

int rt_image_to_input(const rt_image *img, int rank, const int64_t *dims, float scale,
                      float *x, const char *label, rt_err *err)
{
    rt_prep p = {.scale = scale, .std = {1, 1, 1}};
    return rt_image_prepare(img, &p, rank, dims, x, label, err);
}

/* ---- class names ----
 *   names = (name ("\n" | "\r\n"))* name?     one per class, none empty */

void rt_classes_free(rt_classes *c)
{
    free(c->text);
    free(c->name);
    memset(c, 0, sizeof *c);
}

/* Splits c->text in place into lines. */
static int split_names(rt_classes *c, size_t len, const char *label, rt_err *err)
{
    char *p = c->text, *end = c->text + len;
    for (int64_t line = 1; p < end; line++) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *e = nl ? nl : end;
        if (e > p && e[-1] == '\r')
            e--;
        *e = 0;
        if (e == p)
            return rt_fail(err, "%s:%" PRId64 ": an empty class name", label, line);
        if (c->n < c->cap)
            c->name[c->n] = p;
        c->n++;
        p = nl ? nl + 1 : end;
    }
    return 0;
}

int rt_classes_parse(const char *text, size_t len, int64_t nclasses, const char *label,
                     rt_classes *c, rt_err *err)
{
    memset(c, 0, sizeof *c);
    c->cap = nclasses > 0 ? nclasses : 0;
    c->text = malloc(len + 1);
    c->name = calloc((size_t)c->cap + 1, sizeof *c->name);
    if (!c->text || !c->name) {
        rt_classes_free(c);
        return rt_fail(err, "%s: out of memory", label);
    }
    memcpy(c->text, text, len);
    c->text[len] = 0;
    if (memchr(text, 0, len)) {
        rt_classes_free(c);
        return rt_fail(err, "%s: holds a NUL byte: not a text file of class names", label);
    }
    int r = split_names(c, len, label, err);
    if (!r && c->n != nclasses)
        r = rt_fail(err, "%s: %" PRId64 " class name%s (one per line), but the network has %"
                         PRId64 " classes", label, c->n, c->n == 1 ? "" : "s", nclasses);
    if (r)
        rt_classes_free(c);
    return r;
}

int rt_classes_read(const char *path, int64_t nclasses, rt_classes *c, rt_err *err)
{
    char *buf;
    size_t len;
    memset(c, 0, sizeof *c);
    if (rt_read_file(path, &buf, &len, err))
        return -1;
    int r = rt_classes_parse(buf, len, nclasses, path, c, err);
    free(buf);
    return r;
}
