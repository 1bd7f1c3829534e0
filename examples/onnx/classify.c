/* classify.c: the C half of examples/onnx (see README.md). Classifies
 * Fashion-MNIST's test images with the network that `cnnc fmnist.onnx --lib`
 * built, weights and all, and prints its test accuracy:
 *
 *   classify IMAGES.idx.gz LABELS.idx.gz
 *
 * No weights file: fmnist_new returns the trained network the ONNX file
 * held. Exit status: 0 success, 1 a file could not be read, 2 bad usage. */
#include "fmnist.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <zlib.h>

/* An IDX file's bytes (gzip or not) after its header, and its dimensions. */
static unsigned char *read_idx(const char *path, int ndim, uint32_t *dims)
{
    gzFile f = gzopen(path, "rb");
    unsigned char head[16];
    if (!f || gzread(f, head, 4 + 4 * ndim) != 4 + 4 * ndim || head[2] != 0x08 || head[3] != ndim) {
        fprintf(stderr, "%s: not an IDX file of unsigned bytes in %d dimensions\n", path, ndim);
        if (f)
            gzclose(f);
        return NULL;
    }
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        const unsigned char *d = head + 4 + 4 * i;
        dims[i] = (uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 | (uint32_t)d[2] << 8 | d[3];
        n *= dims[i];
    }
    unsigned char *data = malloc(n ? n : 1);
    if (!data || gzread(f, data, (unsigned)n) != (int)n) {
        fprintf(stderr, "%s: truncated\n", path);
        free(data);
        data = NULL;
    }
    gzclose(f);
    return data;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s IMAGES.idx.gz LABELS.idx.gz\n", argv[0]);
        return 2;
    }
    uint32_t idims[3], ldims[1];
    unsigned char *images = read_idx(argv[1], 3, idims), *labels = read_idx(argv[2], 1, ldims);
    if (!images || !labels || idims[0] != ldims[0] || idims[1] * idims[2] != FMNIST_INPUT_SIZE) {
        if (images && labels)
            fprintf(stderr, "%s: the images are not %d pixels each, or not one per label\n", argv[0],
                    FMNIST_INPUT_SIZE);
        return 1;
    }
    enum { BATCH = 100 };
    fmnist *net = fmnist_new(0);                  /* the ONNX file's trained weights */
    float x[BATCH * FMNIST_INPUT_SIZE], out[BATCH * FMNIST_OUTPUT_SIZE];
    long right = 0, n = (long)ldims[0];
    for (long first = 0; first < n; first += BATCH) {
        int b = n - first < BATCH ? (int)(n - first) : BATCH;
        for (long i = 0; i < (long)b * FMNIST_INPUT_SIZE; i++)
            x[i] = images[first * FMNIST_INPUT_SIZE + i] / 255.0f;
        fmnist_forward(net, b, x, out);
        for (int i = 0; i < b; i++) {
            int best = 0;
            for (int k = 1; k < FMNIST_OUTPUT_SIZE; k++)
                best = out[i * FMNIST_OUTPUT_SIZE + k] > out[i * FMNIST_OUTPUT_SIZE + best] ? k : best;
            right += best == labels[first + i];
        }
    }
    printf("cnnc test accuracy: %.2f%% (%ld of %ld)\n", 100.0 * (double)right / (double)n, right, n);
    fmnist_free(net);
    free(images), free(labels);
    return 0;
}
