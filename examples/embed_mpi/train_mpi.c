/* train_mpi.c: a program's own data-parallel training loop over MPI, through
 * the C API of `cnnc examples/mlp.cnn --lib`. Every rank holds the whole
 * network and takes a contiguous share of each batch; the gradients are
 * combined with MPI_Allreduce and every rank takes the same step with
 * mlp_step. (The generated program's `train` does all this itself under
 * `cnnc --mpi`; this is for programs that run their own loop.)
 *
 *   mpirun -np 2 ./train_mpi IMAGES LABELS     (uncompressed IDX files)
 *
 * The loss of each rank's share is a mean over its n_r examples, so rank r
 * scales its gradient by n_r / B before the sum: the sum is then the mean
 * over the whole batch of B, whatever the shares.
 */
#include "mlp.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { BATCH = 64, EPOCHS = 3 };

/* A big-endian u32 of an IDX header. */
static long be32(const unsigned char *p)
{
    return (long)p[0] << 24 | (long)p[1] << 16 | (long)p[2] << 8 | (long)p[3];
}

/* The whole file at path into a fresh buffer; NULL (with a message) if it cannot be read. */
static unsigned char *slurp(const char *path, long *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    if (f && fseek(f, 0, SEEK_END) == 0 && (*len = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)*len)) && fread(buf, 1, (size_t)*len, f) != (size_t)*len) {
        free(buf);
        buf = NULL;
    }
    if (f)
        fclose(f);
    if (!buf)
        fprintf(stderr, "train_mpi: %s: cannot read\n", path);
    return buf;
}

/* n 28 x 28 images scaled to [0, 1] and their labels; the count, or -1. */
static long load(const char *images, const char *labels, float **x, int32_t **y)
{
    long ilen, llen;
    unsigned char *im = slurp(images, &ilen), *lb = im ? slurp(labels, &llen) : NULL;
    long n = lb && ilen >= 16 && llen >= 8 ? be32(im + 4) : -1;
    if (n < 1 || be32(im) != 0x803 || be32(lb) != 0x801 || be32(lb + 4) != n ||
        ilen != 16 + n * MLP_INPUT_SIZE || llen != 8 + n) {
        fprintf(stderr, "train_mpi: %s, %s: not IDX images and labels of the same count\n", images, labels);
        n = -1;
    }
    *x = n > 0 ? malloc(sizeof **x * (size_t)(n * MLP_INPUT_SIZE)) : NULL;
    *y = n > 0 ? malloc(sizeof **y * (size_t)n) : NULL;
    for (long i = 0; *x && *y && i < n * MLP_INPUT_SIZE; i++)
        (*x)[i] = im[16 + i] / 255.0f;
    for (long i = 0; *x && *y && i < n; i++)
        (*y)[i] = lb[8 + i];
    free(im), free(lb);
    return n > 0 && *x && *y ? n : -1;
}

/* The number of floats in all the parameters. */
static long param_floats(void)
{
    long total = 0;
    for (int i = 0; i < MLP_NUM_PARAMS; i++) {
        int64_t dims[4], count = 1;
        int rank = mlp_param_shape(i, dims);
        for (int k = 0; k < rank; k++)
            count *= dims[k];
        total += (long)count;
    }
    return total;
}

/* Copies every gradient, times `scale`, into buf (to_buf) or buf back into
 * the gradients; the count of each parameter from its shape. */
static void pack(mlp *net, float *buf, float scale, int to_buf)
{
    for (int i = 0; i < MLP_NUM_PARAMS; i++) {
        int64_t dims[4], count = 1;
        int rank = mlp_param_shape(i, dims);
        float *g = mlp_grad(net, i);
        for (int k = 0; k < rank; k++)
            count *= dims[k];
        for (int64_t k = 0; k < count; k++)
            if (to_buf)
                buf[k] = g[k] * scale;
            else
                g[k] = buf[k];
        buf += count;
    }
}

/* One step: this rank's share of examples [b, b + n), the gradients summed
 * over the ranks, then mlp_step. Each share must hold an example. */
static float step(mlp *net, const float *x, const int32_t *y, long b, int n, float *buf, long nbuf)
{
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    long lo = b + (long)n * rank / size, hi = b + (long)n * (rank + 1) / size;
    float loss = mlp_loss_grad(net, (int)(hi - lo), x + lo * MLP_INPUT_SIZE, y + lo);
    pack(net, buf, (float)(hi - lo) / (float)n, 1);
    MPI_Allreduce(MPI_IN_PLACE, buf, (int)nbuf, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    pack(net, buf, 1, 0);
    mlp_step(net);
    float share = loss * (float)(hi - lo) / (float)n, total;
    MPI_Allreduce(&share, &total, 1, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    return total;
}

/* The fraction of the n examples the network classifies right. */
static double accuracy(mlp *net, const float *x, const int32_t *y, long n)
{
    float out[MLP_OUTPUT_SIZE];
    long right = 0;
    for (long i = 0; i < n; i++) {
        mlp_forward(net, 1, x + i * MLP_INPUT_SIZE, out);
        int best = 0;
        for (int k = 1; k < MLP_OUTPUT_SIZE; k++)
            best = out[k] > out[best] ? k : best;
        right += best == y[i];
    }
    return (double)right / (double)n;
}

/* FNV-1a of every parameter's bytes: equal on every rank if they agree. */
static unsigned long long weights_hash(mlp *net)
{
    unsigned long long h = 14695981039346656037ull;
    long nbuf = param_floats(), at = 0;
    for (int i = 0; i < MLP_NUM_PARAMS; i++) {
        int64_t dims[4], count = 1;
        int rank = mlp_param_shape(i, dims);
        const unsigned char *p = (const unsigned char *)mlp_param(net, i);
        for (int k = 0; k < rank; k++)
            count *= dims[k];
        for (size_t k = 0; k < sizeof(float) * (size_t)count; k++)
            h = (h ^ p[k]) * 1099511628211ull;
        at += (long)count;
    }
    return at == nbuf ? h : 0;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size, rc = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    float *x = NULL;
    int32_t *y = NULL;
    long n = argc == 3 ? load(argv[1], argv[2], &x, &y) : -1;
    mlp *net = mlp_new(1);                  /* the same seed on every rank: the same start */
    long nbuf = param_floats();
    float *buf = malloc(sizeof *buf * (size_t)nbuf);
    if (argc != 3)
        fprintf(stderr, "usage: mpirun -np N train_mpi IMAGES LABELS\n");
    int bad = n < 1 || !net || !buf || BATCH < size, any;
    MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (any)
        rc = 1;
    mlp_set_threads(net, 1);
    for (int e = 0; !rc && e < EPOCHS; e++) {
        double sum = 0;
        for (long b = 0; b < n; b += BATCH) {
            int bn = (int)(n - b < BATCH ? n - b : BATCH);
            if (bn < size)
                break;                      /* a last batch smaller than the ranks: dropped */
            sum += step(net, x, y, b, bn, buf, nbuf) * bn;
        }
        if (rank == 0)
            printf("epoch %d: loss %.4f\n", e + 1, sum / (double)n);
    }
    unsigned long long h = rc ? 0 : weights_hash(net), lo = h, hi = h;
    MPI_Allreduce(&h, &lo, 1, MPI_UNSIGNED_LONG_LONG, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&h, &hi, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, MPI_COMM_WORLD);
    if (!rc && rank == 0) {
        printf(lo == hi ? "weights identical on %d ranks\n" : "weights DIFFER across %d ranks\n", size);
        printf("training accuracy: %.2f%%\n", 100 * accuracy(net, x, y, n));
    }
    rc = rc || lo != hi;
    mlp_free(net);
    free(x), free(y), free(buf);
    MPI_Finalize();
    return rc;
}
