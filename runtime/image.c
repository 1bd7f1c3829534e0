/* image.c -- single images for `predict`, and their conversion to inputs.
 *
 * Formats are told apart by their first bytes:
 *   "P2" "P3" "P5" "P6"   netpbm gray / RGB, ASCII / binary
 *   89 "PNG" 0d 0a 1a 0a  PNG, through libpng
 *   1f 8b, or 00 00 t R   IDX, gzip or plain (idx.c) */
#define _POSIX_C_SOURCE 200809L
#include "cnnrt.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    MAX_SIDE = 16384,       /* a larger width or height is refused */
    MAX_SAMPLES = 1 << 27,  /* and so is a larger channels x height x width */
    FMT_PNM = 1, FMT_PNG, FMT_IDX,
};

/* Whether a c x h x w image is within the limits. */
static int size_ok(int c, int64_t h, int64_t w)
{
    return h >= 1 && w >= 1 && h <= MAX_SIDE && w <= MAX_SIDE && c * h * w <= MAX_SAMPLES;
}

static int alloc_image(rt_image *img, int c, int64_t h, int64_t w, const char *path,
                       rt_err *err)
{
    if (!size_ok(c, h, w))
        return rt_fail(err, "%s: image size %" PRId64 "x%" PRId64 "x%d is outside 1..%d per "
                            "side, %d samples in all", path, w, h, c, MAX_SIDE, MAX_SAMPLES);
    img->c = c;
    img->h = (int)h;
    img->w = (int)w;
    if (!(img->px = malloc((size_t)(c * h * w))))
        return rt_fail(err, "%s: out of memory", path);
    return 0;
}

void rt_image_free(rt_image *img)
{
    free(img->px);
    memset(img, 0, sizeof *img);
}

/* Interleaved samples s (h*w pixels of c) into img's planes. */
static void deinterleave(rt_image *img, const uint8_t *s)
{
    size_t hw = (size_t)img->h * (size_t)img->w;
    for (size_t i = 0; i < hw; i++)
        for (int k = 0; k < img->c; k++)
            img->px[k * hw + i] = s[i * (size_t)img->c + (size_t)k];
}

/* ---- netpbm: P2, P3 (ASCII), P5, P6 (binary) ----
 *   pnm = magic ws width ws height ws maxval one-whitespace raster
 * where ws may hold "#" comments to the end of the line. */

typedef struct {
    const unsigned char *p, *end;
} cursor;

static int pnm_space(int c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Skips whitespace and comments, then reads a decimal integer below 10^9. */
static int pnm_int(cursor *c, long *v)
{
    for (;;) {
        while (c->p < c->end && pnm_space(*c->p))
            c->p++;
        if (c->p >= c->end || *c->p != '#')
            break;
        while (c->p < c->end && *c->p != '\n')
            c->p++;
    }
    const unsigned char *s = c->p;
    for (*v = 0; c->p < c->end && *c->p >= '0' && *c->p <= '9' && c->p - s < 9; c->p++)
        *v = *v * 10 + (*c->p - '0');
    return c->p > s && (c->p >= c->end || pnm_space(*c->p) || *c->p == '#') ? 0 : -1;
}

/* 0..maxval to 0..255, rounded. */
static uint8_t to8(long v, long maxval)
{
    return (uint8_t)((v * 255 + maxval / 2) / maxval);
}

/* The n samples of an ASCII raster, each at most maxval. */
static int pnm_ascii(cursor *c, uint8_t *s, int64_t n, long maxval, const char *path,
                     rt_err *err)
{
    long v;
    for (int64_t i = 0; i < n; i++) {
        if (pnm_int(c, &v))
            return rt_fail(err, "%s: sample %" PRId64 " of %" PRId64 " is missing or malformed "
                                "(truncated?)", path, i + 1, n);
        if (v > maxval)
            return rt_fail(err, "%s: sample %" PRId64 " is %ld, above maxval %ld", path, i + 1, v,
                           maxval);
        s[i] = to8(v, maxval);
    }
    return 0;
}

/* The n samples of a binary raster: bytes, or big-endian pairs if maxval > 255. */
static int pnm_binary(cursor *c, uint8_t *s, int64_t n, long maxval, const char *path,
                      rt_err *err)
{
    int bps = maxval > 255 ? 2 : 1;
    if (c->p >= c->end || !pnm_space(*c->p))
        return rt_fail(err, "%s: malformed header: no whitespace after maxval", path);
    c->p++;
    if (c->end - c->p < n * bps)
        return rt_fail(err, "%s: truncated: %" PRId64 " bytes of pixels expected, %td present",
                       path, n * bps, c->end - c->p);
    for (int64_t i = 0; i < n; i++) {
        long v = bps == 1 ? c->p[i] : c->p[2 * i] << 8 | c->p[2 * i + 1];
        if (v > maxval)
            return rt_fail(err, "%s: sample %" PRId64 " is %ld, above maxval %ld", path, i + 1, v,
                           maxval);
        s[i] = to8(v, maxval);
    }
    return 0;
}

static int read_pnm(const unsigned char *b, size_t len, const char *path, rt_image *img,
                    rt_err *err)
{
    cursor c = {b + 2, b + len};
    long w, h, maxval;
    int kind = b[1], ch = kind == '3' || kind == '6' ? 3 : 1;
    if (pnm_int(&c, &w) || pnm_int(&c, &h) || pnm_int(&c, &maxval))
        return rt_fail(err, "%s: malformed P%c header (width, height, maxval)", path, kind);
    if (maxval < 1 || maxval > 65535)
        return rt_fail(err, "%s: maxval %ld is outside 1..65535", path, maxval);
    int64_t n = (int64_t)ch * h * w;
    if (size_ok(ch, h, w) && n > c.end - c.p) /* a sample takes a byte at least */
        return rt_fail(err, "%s: truncated: %" PRId64 " samples expected, the file has %td "
                            "bytes left", path, n, c.end - c.p);
    if (alloc_image(img, ch, h, w, path, err))
        return -1;
    uint8_t *s = malloc((size_t)n);
    if (!s)
        return rt_fail(err, "%s: out of memory", path);
    int r = kind == '2' || kind == '3' ? pnm_ascii(&c, s, n, maxval, path, err)
                                       : pnm_binary(&c, s, n, maxval, path, err);
    if (!r)
        deinterleave(img, s);
    free(s);
    return r;
}

/* ---- PNG, through libpng ---- */

/* The bytes libpng reads, and its error message. */
typedef struct {
    const unsigned char *p;
    size_t left;
    char msg[200];
} png_src;

/* libpng's state and the decoded rows (interleaved 8-bit gray or RGB). Kept
 * outside png_decode, which calls setjmp, so that nothing it changes after
 * setjmp is one of its own locals. */
typedef struct {
    png_src src;
    png_structp png;
    png_infop info;
    uint8_t *buf;
    png_bytep *rows;
    int c, h, w;
} png_job;

_Noreturn static void png_on_error(png_structp png, png_const_charp msg)
{
    png_src *s = png_get_error_ptr(png);
    snprintf(s->msg, sizeof s->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
    (void)png, (void)msg;
}

static void png_on_read(png_structp png, png_bytep out, size_t n)
{
    png_src *s = png_get_io_ptr(png);
    if (n > s->left)
        png_error(png, "the file is truncated");
    memcpy(out, s->p, n);
    s->p += n;
    s->left -= n;
}

/* Asks libpng for 8-bit gray or RGB: 16-bit samples scaled, small gray
 * depths and palettes expanded, alpha and transparency dropped. */
static void png_transforms(png_structp png, png_infop info)
{
    int type = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
    if (depth == 16)
        png_set_scale_16(png);
    if (type == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if (type == PNG_COLOR_TYPE_GRAY && depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if ((type & PNG_COLOR_MASK_ALPHA) || png_get_valid(png, info, PNG_INFO_tRNS))
        png_set_strip_alpha(png);
    png_set_interlace_handling(png);
}

/* Decodes j->src into j->buf; libpng's errors longjmp back here. */
static int png_decode(png_job *j)
{
    if (setjmp(png_jmpbuf(j->png)))
        return -1;
    png_set_read_fn(j->png, &j->src, png_on_read);
    png_set_user_limits(j->png, MAX_SIDE, MAX_SIDE);
    png_read_info(j->png, j->info);
    png_transforms(j->png, j->info);
    png_read_update_info(j->png, j->info);
    j->c = png_get_channels(j->png, j->info);
    j->h = (int)png_get_image_height(j->png, j->info);
    j->w = (int)png_get_image_width(j->png, j->info);
    if ((j->c != 1 && j->c != 3) || png_get_rowbytes(j->png, j->info) != (size_t)(j->c * j->w))
        png_error(j->png, "unexpected pixel layout after conversion");
    j->buf = malloc((size_t)j->c * (size_t)j->h * (size_t)j->w);
    j->rows = malloc((size_t)j->h * sizeof *j->rows);
    if (!j->buf || !j->rows)
        png_error(j->png, "out of memory");
    for (int y = 0; y < j->h; y++)
        j->rows[y] = j->buf + (size_t)y * (size_t)(j->c * j->w);
    png_read_image(j->png, j->rows);
    png_read_end(j->png, NULL);
    return 0;
}

static int read_png(const unsigned char *b, size_t len, const char *path, rt_image *img,
                    rt_err *err)
{
    png_job j = {{b, len, "out of memory"}, NULL, NULL, NULL, NULL, 0, 0, 0};
    j.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &j.src, png_on_error, png_on_warning);
    j.info = j.png ? png_create_info_struct(j.png) : NULL;
    int r = j.info ? png_decode(&j) : -1;
    if (r)
        rt_fail(err, "%s: bad PNG: %s", path, j.src.msg);
    else if (!(r = alloc_image(img, j.c, j.h, j.w, path, err)))
        deinterleave(img, j.buf);
    png_destroy_read_struct(&j.png, &j.info, NULL);
    free(j.buf);
    free(j.rows);
    return r;
}

/* ---- IDX ---- */

int rt_image_from_idx(const rt_idx *a, int64_t index, const char *label, rt_image *img,
                      rt_err *err)
{
    const int64_t *d = a->dims + 1;
    memset(img, 0, sizeof *img);
    if (index < a->first || index >= a->first + a->n)
        return rt_fail(err, "%s: image %" PRId64 " is not among the %" PRId64 " read", label,
                       index, a->n);
    if (!a->u8)
        return rt_fail(err, "%s: the IDX items hold no pixels", label);
    const uint8_t *s = a->u8 + (index - a->first) * a->item;
    int hwc = a->rank == 4 && d[2] == 3, chw = a->rank == 4 && (d[0] == 1 || d[0] == 3);
    if (a->rank == 3 || (chw && !hwc)) {
        int c = a->rank == 3 ? 1 : (int)d[0];
        if (alloc_image(img, c, d[a->rank - 3], d[a->rank - 2], label, err))
            return -1;
        memcpy(img->px, s, (size_t)a->item);
        return 0;
    }
    if (hwc) {
        if (alloc_image(img, 3, d[0], d[1], label, err))
            return -1;
        deinterleave(img, s);
        return 0;
    }
    return rt_fail(err, "%s: IDX items of rank %d are not images ([H, W], [H, W, 3], or "
                        "[C, H, W] with C = 1 or 3)", label, a->rank - 1);
}

/* ---- Reading by format ---- */

/* The format of the file whose first n bytes are b, or 0. */
static int sniff(const unsigned char *b, size_t n)
{
    if (n >= 2 && b[0] == 'P' && (b[1] == '2' || b[1] == '3' || b[1] == '5' || b[1] == '6'))
        return FMT_PNM;
    if (n >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8))
        return FMT_PNG;
    if ((n >= 2 && b[0] == 0x1f && b[1] == 0x8b) ||
        (n >= 4 && !b[0] && !b[1] && b[3] >= 1 && b[3] <= 4))
        return FMT_IDX;
    return 0;
}

/* The format of the file at path, from its first bytes. */
static int format(const char *path, rt_err *err)
{
    unsigned char b[8];
    FILE *f = fopen(path, "rb");
    if (!f)
        return rt_fail(err, "%s: cannot open: %s", path, strerror(errno));
    size_t n = fread(b, 1, sizeof b, f);
    int bad = ferror(f), fmt = sniff(b, n);
    fclose(f);
    if (bad)
        return rt_fail(err, "%s: cannot read: %s", path, strerror(errno));
    if (!n)
        return rt_fail(err, "%s: the file is empty", path);
    if (!fmt) {
        char hex[32] = "";
        for (size_t i = 0; i < n && i < 6; i++)
            snprintf(hex + 3 * i, sizeof hex - 3 * i, " %02x", b[i]);
        return rt_fail(err, "%s: unknown image format (first bytes%s); expected PGM, PPM, PNG "
                            "or IDX", path, hex);
    }
    return fmt;
}

int rt_image_read(const char *path, int64_t index, rt_image *img, rt_err *err)
{
    char *buf;
    size_t len;
    rt_idx a;
    memset(img, 0, sizeof *img);
    int fmt = format(path, err), r;
    if (fmt < 0)
        return -1;
    if (fmt == FMT_IDX) {
        r = rt_idx_read(path, index, 1, &a, err) || rt_image_from_idx(&a, index, path, img, err);
        rt_idx_free(&a);
        return r ? -1 : 0;
    }
    if (index != 0)
        return rt_fail(err, "%s: holds one image, but image %" PRId64 " (from 0) was asked for",
                       path, index);
    if (rt_read_file(path, &buf, &len, err))
        return -1;
    const unsigned char *b = (const unsigned char *)buf;
    r = sniff(b, len) != fmt ? rt_fail(err, "%s: the file changed while being read", path)
        : fmt == FMT_PNM     ? read_pnm(b, len, path, img, err)
                             : read_png(b, len, path, img, err);
    free(buf);
    if (r)
        rt_image_free(img);
    return r;
}

int rt_image_count(const char *path, int64_t *n, rt_err *err)
{
    rt_idx a;
    int fmt = format(path, err);
    *n = 0;
    if (fmt < 0)
        return -1;
    if (fmt != FMT_IDX)
        a.dims[0] = 1;
    else if (rt_idx_read(path, 0, 0, &a, err))
        return -1;
    *n = a.dims[0];
    return 0;
}

/* ---- Conversion to a network input ---- */

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
        if (s[i] < 1 || s[i] > MAX_SIDE)
            return -1;
    return img->c == s[0] || img->c == 1 || (img->c == 3 && s[0] == 1) ? 0 : -1;
}

/* Output channel k of c, at the image's size: a copy of plane k, the gray
 * plane replicated, or the luma Y = 0.299 R + 0.587 G + 0.114 B. */
static void make_plane(const rt_image *img, int c, int k, float *out)
{
    size_t hw = (size_t)img->h * (size_t)img->w;
    const uint8_t *p = img->px + (img->c == c ? (size_t)k * hw : 0);
    for (size_t i = 0; i < hw; i++)
        out[i] = img->c == 3 && c == 1
                     ? 0.299f * p[i] + 0.587f * p[hw + i] + 0.114f * p[2 * hw + i]
                     : p[i];
}

/* The taps of resampling an axis of length in to length out: output i is
 * the sum over j in [lo[i], lo[i] + n[i]) of w[i * taps + j - lo[i]] * in_j. */
typedef struct {
    int *lo, *n, taps;
    float *w;
} axis;

static void axis_free(axis *a)
{
    free(a->lo);
    free(a->n);
    free(a->w);
}

/* Bilinear weights, as PIL's BILINEAR and torchvision's antialiased resize:
 * output i is centered at x = (i + 0.5) * in / out in input coordinates and
 * averages inputs j with the triangle weight 1 - |j + 0.5 - x| / support,
 * support = max(1, in / out), normalized to sum to 1. At support 1 this is
 * plain bilinear interpolation; when shrinking, the widened triangle lets
 * every input pixel count instead of aliasing. */
static int axis_make(axis *a, int in, int out)
{
    double scale = (double)in / out, support = scale > 1 ? scale : 1;
    a->taps = (int)ceil(2 * support) + 2;
    a->lo = malloc((size_t)out * sizeof *a->lo);
    a->n = malloc((size_t)out * sizeof *a->n);
    a->w = calloc((size_t)out * (size_t)a->taps, sizeof *a->w);
    if (!a->lo || !a->n || !a->w)
        return -1;
    for (int i = 0; i < out; i++) {
        double x = (i + 0.5) * scale, sum = 0;
        int lo = (int)floor(x - support + 0.5), hi = (int)floor(x + support + 0.5);
        lo = lo < 0 ? 0 : lo;
        hi = hi > in ? in : hi;
        hi = hi - lo > a->taps ? lo + a->taps : hi;
        float *w = a->w + (size_t)i * (size_t)a->taps;
        for (int j = lo; j < hi; j++) {
            double t = fabs((j + 0.5 - x) / support);
            sum += w[j - lo] = (float)(t < 1 ? 1 - t : 0);
        }
        for (int j = lo; j < hi && sum > 0; j++)
            w[j - lo] = (float)(w[j - lo] / sum);
        a->lo[i] = lo;
        a->n[i] = hi - lo;
    }
    return 0;
}

/* One sample through the taps of output i, reading inputs s[j * stride]. */
static float tap(const axis *a, int i, const float *s, size_t stride)
{
    const float *w = a->w + (size_t)i * (size_t)a->taps;
    float v = 0;
    for (int j = 0; j < a->n[i]; j++)
        v += w[j] * s[(size_t)(a->lo[i] + j) * stride];
    return v;
}

/* Resizes plane src (ih x iw) into dst (oh x ow) times scale, rows first
 * into tmp (ih x ow). */
static void resize(const float *src, int ih, int iw, float *tmp, const axis *ax,
                   const axis *ay, float *dst, int oh, int ow, float scale)
{
    for (int y = 0; y < ih; y++)
        for (int x = 0; x < ow; x++)
            tmp[(size_t)y * ow + x] = tap(ax, x, src + (size_t)y * iw, 1);
    for (int y = 0; y < oh; y++)
        for (int x = 0; x < ow; x++)
            dst[(size_t)y * ow + x] = tap(ay, y, tmp + x, (size_t)ow) * scale;
}

int rt_image_to_input(const rt_image *img, int rank, const int64_t *dims, float scale,
                      float *x, const char *label, rt_err *err)
{
    int64_t s[3];
    if (rank < 1 || rank > 3 || input_size(img, rank, dims, s)) {
        char sh[96] = "[";
        for (int i = 0; i < rank && i < 3; i++)
            snprintf(sh + strlen(sh), sizeof sh - strlen(sh), "%s%" PRId64, i ? ", " : "",
                     dims[i]);
        return rt_fail(err, "%s: a %d-channel %dx%d image cannot become an input of shape %s]",
                       label, img->c, img->w, img->h, sh);
    }
    int c = (int)s[0], oh = (int)s[1], ow = (int)s[2];
    size_t ihw = (size_t)img->h * (size_t)img->w;
    float *plane = malloc(ihw * sizeof *plane);
    float *tmp = malloc((size_t)img->h * (size_t)ow * sizeof *tmp);
    axis ax = {0}, ay = {0};
    int r = !plane || !tmp || axis_make(&ax, img->w, ow) || axis_make(&ay, img->h, oh);
    if (r)
        rt_fail(err, "%s: out of memory", label);
    for (int k = 0; k < c && !r; k++) {
        make_plane(img, c, k, plane);
        resize(plane, img->h, img->w, tmp, &ax, &ay, x + (size_t)k * oh * ow, oh, ow, scale);
    }
    axis_free(&ax);
    axis_free(&ay);
    free(plane);
    free(tmp);
    return r ? -1 : 0;
}
