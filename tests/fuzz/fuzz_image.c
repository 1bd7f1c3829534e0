/* fuzz_image.c: libFuzzer target over the image readers (runtime/image.c:
 * PGM/PPM, PNG through libpng, JPEG through libjpeg in jpeg.c, IDX through
 * idx.c) and the conversion to a network input (preprocess.c). The input is
 * the file. It is sniffed, counted, read as image 0 (and image 1 of an IDX
 * file holding more), and each image read is converted to inputs of shape
 * [1, 28, 28], [3, 32, 32] and [784], then prepared as data blocks say:
 * resize and crop with mean and std into [3, 32, 32], and a crop alone
 * (padding small images) into [1, 32, 32] and [4, 32, 32]. Every step must succeed or fail with a message naming the file. */
#include "cnnrt.h"
#include "fuzz_file.h"

#include <math.h>
#include <string.h>

static float x[4 * 32 * 32];

static void to_input(const rt_image *img, const char *path, int rank, int64_t d0, int64_t d1,
                     int64_t d2)
{
    int64_t dims[3] = {d0, d1, d2};
    int64_t count = rank == 1 ? d0 : d0 * d1 * d2;
    rt_err err = {{0}};
    if (rt_image_to_input(img, rank, dims, 1 / 255.0f, x, path, &err)) {
        if (!strstr(err.msg, path))
            abort();
        return;
    }
    for (int64_t i = 0; i < count; i++)
        if (!(x[i] >= -1e-4f && x[i] <= 1.0001f))
            abort();                   /* resampling stays within the pixels' range */
}

/* rt_image_prepare with p into [c, 32, 32]: finite values, or a message. */
static void prepare(const rt_image *img, const char *path, const rt_prep *p, int64_t c)
{
    int64_t dims[3] = {c, 32, 32};
    rt_err err = {{0}};
    if (rt_image_prepare(img, p, 3, dims, x, path, &err)) {
        if (!strstr(err.msg, path))
            abort();
        return;
    }
    for (int64_t i = 0; i < c * 32 * 32; i++)
        if (!isfinite(x[i]) || fabsf(x[i]) > 1e3f)
            abort();
}

static void read_image(const char *path, int64_t index)
{
    rt_image img;
    rt_err err = {{0}};
    if (rt_image_read(path, index, &img, &err)) {
        if (!strstr(err.msg, path) || img.px)
            abort();
        return;
    }
    if ((img.c != 1 && img.c != 3) || img.h < 1 || img.w < 1 || !img.px)
        abort();
    to_input(&img, path, 3, 1, 28, 28);
    to_input(&img, path, 3, 3, 32, 32);
    to_input(&img, path, 1, 784, 0, 0);
    rt_prep imagenet = {.resize = 36, .crop = 32, .scale = 1 / 255.0f,
                        .mean = {0.485f, 0.456f, 0.406f}, .std = {0.229f, 0.224f, 0.225f}};
    rt_prep crop = {.crop = 32, .scale = 1 / 255.0f, .mean = {0.5f}, .std = {0.5f, 1, 1}};
    prepare(&img, path, &imagenet, 3);
    prepare(&img, path, &crop, 1);
    prepare(&img, path, &crop, 4);      /* gray images only: C > 3 channels */
    rt_image_free(&img);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file(0, data, size);
    int64_t n = 0;
    rt_err err = {{0}};
    if (rt_image_count(path, &n, &err) && !strstr(err.msg, path))
        abort();
    read_image(path, 0);
    if (n > 1)
        read_image(path, 1);
    return 0;
}
