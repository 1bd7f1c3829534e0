/* jpeg.c -- JPEG images through libjpeg(-turbo), decoded as PIL decodes them
 * (libjpeg's defaults: the accurate integer DCT, fancy upsampling), so that
 * a photo gives PIL's pixels. Its own file: only the generated executables
 * link libjpeg, never the library that embeds a network.
 *
 * libjpeg reports a fatal error by calling error_exit, which by default
 * exits the process; here it longjmps back to decode() with the message. */
#define _POSIX_C_SOURCE 200809L
#include "cnnrt.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

/* The error manager: libjpeg's, plus where to jump and the message. */
typedef struct {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
} jpeg_fail;

/* A job's state, kept outside decode() (which calls setjmp) so that nothing
 * decode() changes after setjmp is one of its locals. */
typedef struct {
    struct jpeg_decompress_struct cinfo;
    jpeg_fail fail;
    uint8_t *rows;        /* interleaved output, h * w * nc bytes */
    int nc, c, h, w;      /* components out of libjpeg; channels kept */
    int64_t big_h, big_w; /* the header's size, when over the limits */
} jpeg_job;

_Noreturn static void on_error(j_common_ptr c)
{
    jpeg_fail *f = (jpeg_fail *)c->err;
    c->err->format_message(c, f->msg);
    longjmp(f->jump, 1);
}

/* Warnings (level -1) that mean the data is missing or damaged are errors:
 * by default libjpeg would fill a truncated image with gray and go on. Other
 * warnings and trace messages are ignored. */
static void on_message(j_common_ptr c, int level)
{
    int code = c->err->msg_code;
    if (level == -1 && (code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER ||
                        code == JWRN_MUST_RESYNC || code == JWRN_NOT_SEQUENTIAL ||
                        code == JWRN_BOGUS_PROGRESSION || code == JWRN_HUFF_BAD_CODE))
        on_error(c);
}

/* The output color space: gray, RGB, or CMYK (turned into RGB below). */
static void choose_color(jpeg_job *j)
{
    J_COLOR_SPACE in = j->cinfo.jpeg_color_space;
    j->cinfo.out_color_space = in == JCS_GRAYSCALE                ? JCS_GRAYSCALE
                               : in == JCS_CMYK || in == JCS_YCCK ? JCS_CMYK
                                                                  : JCS_RGB;
}

static int decode(jpeg_job *j, const unsigned char *b, size_t len)
{
    if (setjmp(j->fail.jump))
        return -1;
    jpeg_create_decompress(&j->cinfo);
    jpeg_mem_src(&j->cinfo, b, (unsigned long)len);
    jpeg_read_header(&j->cinfo, TRUE);
    choose_color(j);
    int64_t h = j->cinfo.image_height, w = j->cinfo.image_width;
    j->c = j->cinfo.out_color_space == JCS_GRAYSCALE ? 1 : 3;
    if (h < 1 || w < 1 || h > RT_IMAGE_MAX_SIDE || w > RT_IMAGE_MAX_SIDE ||
        j->c * h * w > RT_IMAGE_MAX_SAMPLES) {
        j->big_h = h, j->big_w = w;
        return -1;                      /* refused before libjpeg allocates the image */
    }
    jpeg_start_decompress(&j->cinfo);
    j->nc = j->cinfo.output_components, j->h = (int)h, j->w = (int)w;
    if ((int64_t)j->cinfo.output_height != h || (int64_t)j->cinfo.output_width != w ||
        j->nc != (j->c == 1 ? 1 : j->cinfo.out_color_space == JCS_CMYK ? 4 : 3))
        ERREXIT(&j->cinfo, JERR_BAD_DROP_SAMPLING); /* cannot happen without scaling */
    size_t stride = (size_t)j->nc * (size_t)j->w;
    if (!(j->rows = malloc(stride * (size_t)j->h)))
        ERREXIT1(&j->cinfo, JERR_OUT_OF_MEMORY, 0);
    while (j->cinfo.output_scanline < j->cinfo.output_height) {
        JSAMPROW row = j->rows + stride * j->cinfo.output_scanline;
        jpeg_read_scanlines(&j->cinfo, &row, 1);
    }
    jpeg_finish_decompress(&j->cinfo);
    return 0;
}

/* a * b / 255, rounded, as PIL's MULDIV255. */
static int muldiv255(int a, int b)
{
    int t = a * b + 128;
    return ((t >> 8) + t) >> 8;
}

/* Pixel i of the interleaved rows into img's planes. CMYK becomes RGB as
 * PIL's convert("RGB"): R = (255 - K) - C (255 - K) / 255, ..., after
 * undoing the inversion that PIL always assumes (Adobe's convention, its
 * "CMYK;I" raw mode): C = 255 - stored C, and so on. */
static void put_pixel(const jpeg_job *j, size_t i, rt_image *img)
{
    size_t hw = (size_t)j->h * (size_t)j->w;
    const uint8_t *s = j->rows + i * (size_t)j->nc;
    if (j->nc != 4) {
        for (int k = 0; k < j->nc; k++)
            img->px[(size_t)k * hw + i] = s[k];
        return;
    }
    int nk = s[3];                      /* 255 - K, K = 255 - stored */
    for (int k = 0; k < 3; k++) {
        int v = nk - muldiv255(255 - s[k], nk);
        img->px[(size_t)k * hw + i] = (uint8_t)(v < 0 ? 0 : v);
    }
}

int rt_jpeg_read(const unsigned char *b, size_t len, const char *path, rt_image *img,
                 rt_err *err)
{
    jpeg_job *j = calloc(1, sizeof *j);
    memset(img, 0, sizeof *img);
    if (!j)
        return rt_fail(err, "%s: out of memory", path);
    j->cinfo.err = jpeg_std_error(&j->fail.mgr);
    j->fail.mgr.error_exit = on_error;
    j->fail.mgr.emit_message = on_message;
    int r = decode(j, b, len);
    if (r && j->big_h)
        rt_image_alloc(img, j->c, j->big_h, j->big_w, path, err);   /* fails: says why */
    else if (r)
        rt_fail(err, "%s: bad JPEG: %s", path, j->fail.msg);
    else if (!(r = rt_image_alloc(img, j->c, j->h, j->w, path, err)))
        for (size_t i = 0; i < (size_t)j->h * (size_t)j->w; i++)
            put_pixel(j, i, img);
    jpeg_destroy_decompress(&j->cinfo);
    free(j->rows);
    free(j);
    return r;
}
