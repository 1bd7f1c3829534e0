/* image.c -- single images for `predict` (preprocess.c makes them inputs).
 *
 * Formats are told apart by their first bytes:
 *   "P2" "P3" "P5" "P6"   netpbm gray / RGB, ASCII / binary
 *   89 "PNG" 0d 0a 1a 0a  PNG, through libpng
 *   ff d8 ff              JPEG, through libjpeg (jpeg.c)
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
    MAX_SIDE = RT_IMAGE_MAX_SIDE,       /* a larger width or height is refused */
    MAX_SAMPLES = RT_IMAGE_MAX_SAMPLES, /* and so is a larger channels x height x width */
    FMT_PNM = 1, FMT_PNG, FMT_JPEG, FMT_IDX,
};

/* Whether a c x h x w image is within the limits. */
static int size_ok(int c, int64_t h, int64_t w)
{
    return h >= 1 && w >= 1 && h <= MAX_SIDE && w <= MAX_SIDE && c * h * w <= MAX_SAMPLES;
}

int rt_image_alloc(rt_image *img, int c, int64_t h, int64_t w, const char *path, rt_err *err)
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
    if (rt_image_alloc(img, ch, h, w, path, err))
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
    int64_t too_big_h, too_big_w;   /* the header's size, when over the limits */
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
    png_set_user_limits(j->png, 0x7fffffff, 0x7fffffff);    /* size_ok decides */
    png_read_info(j->png, j->info);
    png_transforms(j->png, j->info);
    png_read_update_info(j->png, j->info);
    j->c = png_get_channels(j->png, j->info);
    int64_t h = png_get_image_height(j->png, j->info), w = png_get_image_width(j->png, j->info);
    if (!size_ok(j->c, h, w)) {
        j->too_big_h = h, j->too_big_w = w;
        return -1;
    }
    j->h = (int)h, j->w = (int)w;
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
    png_job j = {{b, len, "out of memory"}, NULL, NULL, NULL, NULL, 0, 0, 0, 0, 0};
    j.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &j.src, png_on_error, png_on_warning);
    j.info = j.png ? png_create_info_struct(j.png) : NULL;
    int r = j.info ? png_decode(&j) : -1;
    if (r && j.too_big_h)
        rt_image_alloc(img, j.c, j.too_big_h, j.too_big_w, path, err);   /* fails: says why */
    else if (r)
        rt_fail(err, "%s: bad PNG: %s", path, j.src.msg);
    else if (!(r = rt_image_alloc(img, j.c, j.h, j.w, path, err)))
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
        if (rt_image_alloc(img, c, d[a->rank - 3], d[a->rank - 2], label, err))
            return -1;
        memcpy(img->px, s, (size_t)a->item);
        return 0;
    }
    if (hwc) {
        if (rt_image_alloc(img, 3, d[0], d[1], label, err))
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
    if (n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff)
        return FMT_JPEG;
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
        return rt_fail(err, "%s: unknown image format (first bytes%s); expected PGM, PPM, PNG, "
                            "JPEG or IDX", path, hex);
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
        : fmt == FMT_PNG     ? read_png(b, len, path, img, err)
                             : rt_jpeg_read(b, len, path, img, err);
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
