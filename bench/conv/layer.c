/* layer.c: the driver of bench/conv/algos.sh for a one-convolution network
 * NET (its header included with -include, NETU its name in capitals).
 *   layer time N [S]      one thread: one untimed forward call at batch N,
 *                         then calls for S CPU seconds (default 1, at least
 *                         3); prints the median call's thread CPU time in
 *                         seconds and the number of calls
 *   layer dump N 0 FILE   writes x, every parameter and the forward's output
 *                         at batch N (float32, in that order) to FILE
 * x is uniform in [0, 1) (activations after a ReLU), a bias uniform in
 * [-0.5, 0.5); the weights are the network's default initialization. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define F(s) CAT(NET, s)
static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float uni(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return ((uint32_t)(rng >> 40)) * (1.0f / 16777216.0f); }
static double cpu(void) { struct timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }
int main(int argc, char **argv)
{
    const char *mode = argv[1];
    int n = atoi(argv[2]);
    double secs = argc > 3 ? atof(argv[3]) : 1.0;
    NET *net = F(_new)(1);
    F(_set_threads)(net, 1);
    int64_t in = CAT(NETU, _INPUT_SIZE), outn = CAT(NETU, _OUTPUT_SIZE);
    float *x = malloc(sizeof(float) * in * n), *out = malloc(sizeof(float) * outn * n);
    for (int64_t i = 0; i < in * n; i++) x[i] = uni();          /* post-ReLU-like activations */
    for (int p = 0; p < F(_param_count)(); p++) {                /* bias: small random */
        int64_t d[4]; int r = F(_param_shape)(p, d); int64_t c = 1;
        for (int i = 0; i < r; i++) c *= d[i];
        if (r == 1) { float *b = F(_param)(net, p); for (int64_t i = 0; i < c; i++) b[i] = uni() - 0.5f; }
    }
    if (!strcmp(mode, "dump")) {
        F(_forward)(net, n, x, out);
        FILE *f = fopen(argv[4], "wb");
        fwrite(x, sizeof(float), in * n, f);
        for (int p = 0; p < F(_param_count)(); p++) {
            int64_t d[4]; int r = F(_param_shape)(p, d); int64_t c = 1;
            for (int i = 0; i < r; i++) c *= d[i];
            fwrite(F(_param)(net, p), sizeof(float), c, f);
        }
        fwrite(out, sizeof(float), outn * n, f);
        fclose(f);
        return 0;
    }
    F(_forward)(net, n, x, out);
    double t[1000]; int k = 0; double start = cpu();
    do { double a = cpu(); F(_forward)(net, n, x, out); t[k++] = cpu() - a; } while ((cpu() - start < secs || k < 3) && k < 1000);
    qsort(t, k, sizeof t[0], cmp);
    printf("%.6f %d\n", t[k / 2], k);
    return 0;
}
