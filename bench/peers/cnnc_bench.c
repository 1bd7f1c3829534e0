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
 * (add -DTARGET for a network with a `target` of the output's size, whose
 * loss_grad takes float targets: bench/peers/layers.sh's one-layer programs).
 *
 * Usage: cnnc_bench_NET MODE [--threads T] [--reps R] [--rep-seconds S]
 *                            [--batch B] [--seconds S] [--min-calls M]
 * The small nets (no --seconds): repetitions of many calls.
 *   train    training steps (NET_train_step) at batch 64 on random data and
 *            labels; prints images/s and the process's peak RSS (ru_maxrss
 *            after the training loop: nothing of the forward pass counts, as
 *            it runs in a separate invocation).
 *   forward  inference (NET_forward) throughput at batch 256 and latency at
 *            batch 1.
 *   Method (same as the peers): warm up for about a second, size a timed
 *   repetition to last about --rep-seconds, run --reps repetitions, report
 *   the median (and the minimum/maximum) of the per-repetition rates.
 * The full-size nets and single layers (--seconds S): calls of seconds each.
 *   latency  NET_forward at batch 1: "latency_ms"
 *   forward  NET_forward at batch B (default 16): "fwd_ips"
 *   train    NET_train_step at batch B: "train_ips"
 *   grad     NET_loss_grad at batch B (forward and backward, no step): "grad_ips"
 *   Method (same as the peers): one untimed call (it allocates the
 *   workspace), then timed calls until S seconds have passed and at least M
 *   calls were made (default 2, at most 1000); the median call's time.
 * Output: one JSON object on stdout.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define STR_(a) #a
#define STR(a) STR_(a)
#define NET_T NET
#define NET_NEW CAT(NET, _new)
#define NET_FREE CAT(NET, _free)
#define NET_FORWARD CAT(NET, _forward)
#define NET_TRAIN CAT(NET, _train_step)
#define NET_GRAD CAT(NET, _loss_grad)
#define NET_THREADS CAT(NET, _set_threads)
#define NET_ERROR CAT(NET, _error)
#define IN_SIZE CAT(NETU, _INPUT_SIZE)
#define OUT_SIZE CAT(NETU, _OUTPUT_SIZE)

/* What loss_grad and train_step take as y: class labels, or (-DTARGET)
 * float targets of the output's size. */
#ifdef TARGET
typedef float label_t;
enum { LABEL_SIZE = OUT_SIZE };
#else
typedef int32_t label_t;
enum { LABEL_SIZE = 1 };
#endif

enum { TRAIN_BATCH = 64, FWD_BATCH = 256, MAX_REPS = 101, MAX_CALLS = 1000 };

static int reps = 7, min_calls = 2;
static double rep_seconds = 0.25, warm_seconds = 1.0, seconds = 0;

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
typedef void (*op_fn)(NET_T *net, int n, float *x, label_t *y, float *out);
static void op_train(NET_T *net, int n, float *x, label_t *y, float *out)
{
    (void)out;
    sink += NET_TRAIN(net, n, x, y);
}
static void op_grad(NET_T *net, int n, float *x, label_t *y, float *out)
{
    (void)out;
    sink += NET_GRAD(net, n, x, y);
}
static void op_forward(NET_T *net, int n, float *x, label_t *y, float *out)
{
    (void)y;
    NET_FORWARD(net, n, x, out);
    sink += out[0];
}

/* Warm up, calibrate, time `reps` repetitions; rates[r] = calls per second. */
static void timed(op_fn op, NET_T *net, int n, float *x, label_t *y, float *out,
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

/* Bounded in time: one untimed call, then calls until `seconds` have passed
 * and `min_calls` were made. Returns the median call's seconds; *calls and
 * *lo, *hi (the fastest and slowest call) as well. */
static double bounded(op_fn op, NET_T *net, int n, float *x, label_t *y, float *out,
                      int *calls, double *lo, double *hi)
{
    static double t[MAX_CALLS];
    int k = 0;
    op(net, n, x, y, out);
    double t0 = now(), a = t0, b;
    do {
        op(net, n, x, y, out);
        b = now();
        t[k++] = b - a;
        a = b;
    } while (k < MAX_CALLS && (b - t0 < seconds || k < min_calls));
    qsort(t, k, sizeof t[0], cmp);
    *calls = k;
    *lo = t[0];
    *hi = t[k - 1];
    return k % 2 ? t[k / 2] : 0.5 * (t[k / 2 - 1] + t[k / 2]);
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

/* The small nets' measures: repetitions of many calls. */
static void small(NET_T *net, int train, int threads, float *x, label_t *y, float *out,
                  long base_kb)
{
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
        return;
    }
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

/* The full-size nets' and single layers' measures: bounded in time.
 * latency: milliseconds per call at batch 1; the others: images/s at batch. */
static void full(NET_T *net, const char *mode, int batch, int threads, float *x, label_t *y,
                 float *out)
{
    int lat = !strcmp(mode, "latency"), n = lat ? 1 : batch, calls;
    op_fn op = lat || !strcmp(mode, "forward") ? op_forward
             : !strcmp(mode, "train") ? op_train : op_grad;
    double lo, hi, med = bounded(op, net, n, x, y, out, &calls, &lo, &hi);
    const char *key = lat ? "latency_ms" : !strcmp(mode, "forward") ? "fwd_ips"
                    : !strcmp(mode, "train") ? "train_ips" : "grad_ips";
    printf("{\"system\": \"cnnc\", \"net\": \"%s\", \"threads\": %d, \"batch\": %d, ",
           STR(NET), threads, n);
    if (lat)
        printf("\"%s\": %.3f, \"%s_min\": %.3f, \"%s_max\": %.3f", key, 1e3 * med, key,
               1e3 * lo, key, 1e3 * hi);
    else
        printf("\"%s\": %.2f, \"%s_min\": %.2f, \"%s_max\": %.2f", key, n / med, key, n / hi,
               key, n / lo);
    printf(", \"%.*s_calls\": %d}\n", (int)strcspn(key, "_"), key, calls);
    if (sink != sink)
        fprintf(stderr, "warning: %s is NaN: %s\n", op == op_forward ? "output" : "loss",
                NET_ERROR(net));
}

static const char *usage =
    "usage: %s train|forward|latency|grad [--threads T] [--reps R] [--rep-seconds S]\n"
    "          [--batch B] [--seconds S] [--min-calls M]\n";

int main(int argc, char **argv)
{
    int threads = 2, batch = 16;
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
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
            batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--min-calls") && i + 1 < argc)
            min_calls = atoi(argv[++i]);
        else {
            fprintf(stderr, "unknown argument: %s\n", argv[i]);
            return 2;
        }
    }
    if (reps < 1 || reps > MAX_REPS)
        reps = 7;
    if (batch < 1)
        batch = 16;
    if (min_calls < 1 || min_calls > MAX_CALLS)
        min_calls = 2;
    int train = !strcmp(mode, "train");
    int known = train || !strcmp(mode, "forward") ||
                (seconds > 0 && (!strcmp(mode, "latency") || !strcmp(mode, "grad")));
    if (!known) {
        fprintf(stderr, usage, argv[0]);
        return 2;
    }

    int nmax = seconds > 0 ? batch : train ? TRAIN_BATCH : FWD_BATCH;
    float *x = malloc(sizeof(float) * (size_t)nmax * IN_SIZE);
    float *out = malloc(sizeof(float) * (size_t)nmax * OUT_SIZE);
    label_t *y = malloc(sizeof(label_t) * (size_t)nmax * LABEL_SIZE);
    if (!x || !out || !y)
        return 1;
    for (long i = 0; i < (long)nmax * IN_SIZE; i++)
        x[i] = uniform();
    for (long i = 0; i < (long)nmax * LABEL_SIZE; i++)
#ifdef TARGET
        y[i] = uniform();
#else
        y[i] = (int32_t)(next() % OUT_SIZE);
#endif

    NET_T *net = NET_NEW(1);
    if (!net) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    NET_THREADS(net, threads);
    long base_kb = rss_kb("VmRSS");
    if (seconds > 0)
        full(net, mode, batch, threads, x, y, out);
    else
        small(net, train, threads, x, y, out, base_kb);
    NET_FREE(net);
    free(x);
    free(out);
    free(y);
    return 0;
}
