/* classify.c: classifies one 28x28 gray image with LeNet, through the C API
 * that `cnnc examples/lenet.cnn --lib` generates (lenet.h, liblenet.a).
 *
 *   classify WEIGHTS.safetensors IMAGE.pgm
 *
 * prints the most probable class and its softmax probability:
 *
 *   IMAGE.pgm: class 5, probability 0.1776
 *
 * The library has no image reader, so this file carries a small one for PGM
 * (P5 binary and P2 ASCII). Pixels are reduced to 8 bits and scaled by 1/255,
 * as the generated program `lenet predict` does (lenet.cnn has no data block).
 *
 * Build (from the repository's root; see README.md beside this file):
 *   bin/cnnc examples/lenet.cnn --lib -o build/embed/liblenet.a
 *   cc -std=c99 -Wall -Wextra -pedantic -Ibuild/embed examples/embed/classify.c \
 *      build/embed/liblenet.a -fopenmp -lm -o build/embed/classify
 *
 * Exit status: 0 success, 1 a file could not be read, 2 bad usage.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lenet.h"

#define SIDE 28                 /* lenet's input is [1, 28, 28] */

/* ---- a tiny PGM reader ----------------------------------------------------
 *   pgm = ("P5" | "P2") ws width ws height ws maxval ws raster
 * where ws is whitespace and "#" comments; P5's raster is bytes (pairs of
 * bytes, big-endian, when maxval > 255), P2's decimal numbers. */

/* Skips whitespace and comments, then reads a decimal number; -1 if none. */
static long pgm_number(FILE *f)
{
    int c = fgetc(f);
    for (;;) {
        while (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f')
            c = fgetc(f);
        if (c != '#')
            break;
        while (c != '\n' && c != EOF)
            c = fgetc(f);
    }
    if (c < '0' || c > '9')
        return -1;
    long v = 0;
    for (; c >= '0' && c <= '9' && v < 1000000; c = fgetc(f))
        v = 10 * v + (c - '0');
    if (c != EOF && c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != '#')
        return -1;                              /* "12x": not a number */
    if (c == '#')
        ungetc(c, f);
    return v;
}

/* One raw sample of a P5 raster: a byte, or two when maxval > 255. */
static long pgm_binary_sample(FILE *f, long maxval)
{
    int hi = fgetc(f);
    if (hi == EOF || maxval <= 255)
        return hi == EOF ? -1 : hi;
    int lo = fgetc(f);
    return lo == EOF ? -1 : hi << 8 | lo;
}

/* Reads a SIDE x SIDE PGM into x as floats: each sample reduced to 0..255
 * (rounded), then times 1/255. 0, or -1 after a message on stderr. */
static int read_pgm(const char *path, float *x)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    char magic[2] = {0, 0}, problem[80] = "";
    long w = 0, h = 0, maxval = 255;
    if (fread(magic, 1, 2, f) != 2 || magic[0] != 'P' || (magic[1] != '5' && magic[1] != '2'))
        strcpy(problem, "not a PGM image (P5 or P2)");
    else if ((w = pgm_number(f)) < 0 || (h = pgm_number(f)) < 0 || (maxval = pgm_number(f)) < 0)
        strcpy(problem, "malformed PGM header");
    else if (maxval < 1 || maxval > 65535)
        strcpy(problem, "maxval outside 1..65535");
    else if (w != SIDE || h != SIDE)
        sprintf(problem, "a %ldx%ld image, but the network needs %dx%d", w, h, SIDE, SIDE);
    for (int i = 0; !problem[0] && i < SIDE * SIDE; i++) {
        long v = magic[1] == '5' ? pgm_binary_sample(f, maxval) : pgm_number(f);
        if (v < 0 || v > maxval)
            strcpy(problem, v < 0 ? "truncated or malformed pixel data" : "a pixel above maxval");
        else
            x[i] = (float)((v * 255 + maxval / 2) / maxval) * (1.0f / 255.0f);
    }
    fclose(f);
    if (problem[0]) {
        fprintf(stderr, "%s: %s\n", path, problem);
        return -1;
    }
    return 0;
}

/* ---- the classification ---------------------------------------------------- */

/* p = softmax(z) over k scores, computed stably (the largest score is 0). */
static void softmax(const float *z, double *p, int k)
{
    double max = z[0], sum = 0;
    for (int i = 1; i < k; i++)
        max = z[i] > max ? z[i] : max;
    for (int i = 0; i < k; i++)
        sum += p[i] = exp(z[i] - max);
    for (int i = 0; i < k; i++)
        p[i] /= sum;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s WEIGHTS.safetensors IMAGE.pgm\n", argv[0]);
        return 2;
    }
    static float x[LENET_INPUT_SIZE];
    float out[LENET_OUTPUT_SIZE];
    double p[LENET_OUTPUT_SIZE];

    lenet *net = lenet_new(1);
    if (!net) {
        fprintf(stderr, "%s: out of memory\n", argv[0]);
        return 1;
    }
    if (lenet_load(net, argv[1]) != 0) {
        fprintf(stderr, "%s: %s\n", argv[0], lenet_error(net));
        lenet_free(net);
        return 1;
    }
    if (read_pgm(argv[2], x) != 0) {
        lenet_free(net);
        return 1;
    }
    lenet_forward(net, 1, x, out);              /* one example in, one row out */
    lenet_free(net);

    softmax(out, p, LENET_OUTPUT_SIZE);
    int best = 0;
    for (int i = 1; i < LENET_OUTPUT_SIZE; i++)
        best = p[i] > p[best] ? i : best;
    printf("%s: class %d, probability %.4f\n", argv[2], best, p[best]);
    return 0;
}
