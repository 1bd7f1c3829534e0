/* cnnc_bench.c: a cnnc-compiled network's speed through its C API, measured
 * the way bench/peers/torch_bench.py measures PyTorch.
 *
 * Built once per network, with the generated header forced in:
 *
 *   bin/cnnc examples/lenet.cnn --lib -o build/bench/peers/liblenet.a
 *   cc -O2 -DNET=lenet -DNETU=LENET -include build/bench/peers/lenet.h \
 *      bench/peers/cnnc_bench.c build/bench/peers/liblenet.a -fopenmp -lm \
 *      -o build/bench/peers/cnnc_bench_lenet
 *
 * Usage: cnnc_bench_NET train|forward [--threads T] [--reps R] [--rep-seconds S]
 *   train    training steps (NET_train_step) at batch 64 on random data and
 *            labels; prints images/s and the process's peak RSS (ru_maxrss
 *            after the training loop: nothing of the forward pass counts, as
 *            it runs in a separate invocation).
 *   forward  inference (NET_forward) throughput at batch 256 and latency at
 *            batch 1.
 * Method (same as the peers): warm up for about a second, size a timed
 * repetition to last about --rep-seconds, run --reps repetitions, report the
 * median (and the minimum/maximum) of the per-repetition rates.
 * Output: one JSON object on stdout.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#ifndef NET
#error "build with -DNET=name -DNETU=NAME -include NAME.h"
#endif
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define STR_(a) #a
#define STR(a) STR_(a)
#define NET_T NET
#define NET_NEW CAT(NET, _new)
#define NET_FREE CAT(NET, _free)
#define NET_FORWARD CAT(NET, _forward)
#define NET_TRAIN CAT(NET, _train_step)
#define NET_THREADS CAT(NET, _set_threads)
#define NET_ERROR CAT(NET, _error)
#define IN_SIZE CAT(NETU, _INPUT_SIZE)
#define OUT_SIZE CAT(NETU, _OUTPUT_SIZE)

enum { TRAIN_BATCH = 64, FWD_BATCH = 256, MAX_REPS = 101 };

static int reps = 7;
static double rep_seconds = 0.25, warm_seconds = 1.0;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}
static float uniform(void) { return (next() >> 8) * (1.0f / 16777216.0f); }

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double sink;

/* One call of the measured operation. */
typedef void (*op_fn)(NET_T *net, int n, float *x, int32_t *y, float *out);
static void op_train(NET_T *net, int n, float *x, int32_t *y, float *out)
{
    (void)out;
    sink += NET_TRAIN(net, n, x, y);
}
static void op_forward(NET_T *net, int n, float *x, int32_t *y, float *out)
{
    (void)y;
    NET_FORWARD(net, n, x, out);
    sink += out[0];
}

/* Warm up, calibrate, time `reps` repetitions; rates[r] = calls per second. */
static void timed(op_fn op, NET_T *net, int n, float *x, int32_t *y, float *out,
                  double *med, double *lo, double *hi)
{
    double t0 = now(), t;
    long calls = 0;
    do {
        op(net, n, x, y, out);
        calls++;
    } while ((t = now()) - t0 < warm_seconds || calls < 3);
    double per = (t - t0) / calls;
    long k = (long)(rep_seconds / per);
    if (k < 1)
        k = 1;
    double r[MAX_REPS];
    for (int i = 0; i < reps; i++) {
        double a = now();
        for (long j = 0; j < k; j++)
            op(net, n, x, y, out);
        r[i] = k / (now() - a);
    }
    qsort(r, reps, sizeof r[0], cmp);
    *med = r[reps / 2];
    *lo = r[0];
    *hi = r[reps - 1];
}

static long rss_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t len = strlen(field);
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, len) && line[len] == ':')
            v = atol(line + len + 1);
    fclose(f);
    return v;
}

int main(int argc, char **argv)
{
    int threads = 2;
    const char *mode = argc > 1 ? argv[1] : "";
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rep-seconds") && i + 1 < argc)
            rep_seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--warm-seconds") && i + 1 < argc)
            warm_seconds = atof(argv[++i]);
        else {
            fprintf(stderr, "unknown argument: %s\n", argv[i]);
            return 2;
        }
    }
    if (reps < 1 || reps > MAX_REPS)
        reps = 7;
    int train = !strcmp(mode, "train");
    if (!train && strcmp(mode, "forward")) {
        fprintf(stderr, "usage: %s train|forward [--threads T] [--reps R] [--rep-seconds S]\n",
                argv[0]);
        return 2;
    }

    int nmax = train ? TRAIN_BATCH : FWD_BATCH;
    float *x = malloc(sizeof(float) * (size_t)nmax * IN_SIZE);
    float *out = malloc(sizeof(float) * (size_t)nmax * OUT_SIZE);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)nmax);
    if (!x || !out || !y)
        return 1;
    for (long i = 0; i < (long)nmax * IN_SIZE; i++)
        x[i] = uniform();
    for (int i = 0; i < nmax; i++)
        y[i] = (int32_t)(next() % OUT_SIZE);

    NET_T *net = NET_NEW(1);
    if (!net) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    NET_THREADS(net, threads);
    long base_kb = rss_kb("VmRSS");

    if (train) {
        double med, lo, hi;
        timed(op_train, net, TRAIN_BATCH, x, y, out, &med, &lo, &hi);
        if (sink != sink)
            fprintf(stderr, "warning: loss is NaN: %s\n", NET_ERROR(net));
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        printf("{\"system\": \"cnnc\", \"net\": \"%s\", \"threads\": %d, "
               "\"train_ips\": %.1f, \"train_ips_min\": %.1f, \"train_ips_max\": %.1f, "
               "\"base_rss_mb\": %.1f, \"peak_rss_mb\": %.1f, \"reps\": %d}\n",
               STR(NET), threads, med * TRAIN_BATCH, lo * TRAIN_BATCH, hi * TRAIN_BATCH,
               base_kb / 1024.0, ru.ru_maxrss / 1024.0, reps);
    } else {
        double fm, fl, fh, lm, ll, lh;
        timed(op_forward, net, FWD_BATCH, x, y, out, &fm, &fl, &fh);
        timed(op_forward, net, 1, x, y, out, &lm, &ll, &lh);
        printf("{\"system\": \"cnnc\", \"net\": \"%s\", \"threads\": %d, "
               "\"fwd_ips\": %.1f, \"fwd_ips_min\": %.1f, \"fwd_ips_max\": %.1f, "
               "\"latency_us\": %.2f, \"latency_us_min\": %.2f, \"latency_us_max\": %.2f, "
               "\"reps\": %d}\n",
               STR(NET), threads, fm * FWD_BATCH, fl * FWD_BATCH, fh * FWD_BATCH, 1e6 / lm,
               1e6 / lh, 1e6 / ll, reps);
        if (sink != sink)
            fprintf(stderr, "warning: output is NaN: %s\n", NET_ERROR(net));
    }
    NET_FREE(net);
    free(x);
    free(out);
    free(y);
    return 0;
}
