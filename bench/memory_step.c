/* memory_step.c: the peak RSS of cnnc training steps, through the C API.
 *
 * Built once per network, with the generated header forced in:
 *
 *   bin/cnnc NET.cnn --lib -o build/bench/memory/libNET.a
 *   cc -O2 -DNET=name -DNETU=NAME -include build/bench/memory/NET.h bench/memory_step.c \
 *      build/bench/memory/libNET.a -fopenmp -lm -o build/bench/memory/memory_NET
 *
 * Usage: memory_NET BATCH THREADS STEPS [forward]
 * Fills a batch of BATCH random inputs and labels, then makes the network
 * (NET_new), with `forward` runs one forward call at BATCH, and runs STEPS
 * training steps (NET_train_step: SGD with the .cnn file's momentum) on
 * THREADS threads. Prints one JSON object:
 *   rss_start_mb   the resident set before NET_new (program, libc, the batch)
 *   rss_net_mb     after NET_new (the parameters: allocated and initialized)
 *   peak_rss_mb    the peak resident set of the process (ru_maxrss) at the end
 *   seconds        the training steps' time; loss the last step's loss
 * peak - start is what the network took: `cnnc --summary`'s "total" predicts
 * it, with `forward`, for THREADS = 1.
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

/* The resident set now, in MiB, from /proc/self/statm (pages of 4 KiB). */
static double rss_mb(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f && fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = 0;
    if (f)
        fclose(f);
    return resident * 4 / 1024.0;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    int batch = argc > 3 ? atoi(argv[1]) : 0, threads = argc > 3 ? atoi(argv[2]) : 0;
    int steps = argc > 3 ? atoi(argv[3]) : 0;
    int forward = argc > 4 && strcmp(argv[4], "forward") == 0;
    if (batch < 1 || threads < 1 || steps < 1 || (argc > 4 && !forward)) {
        fprintf(stderr, "usage: %s BATCH THREADS STEPS [forward]\n", argv[0]);
        return 2;
    }
    size_t in = (size_t)batch * CAT(NETU, _INPUT_SIZE);
    float *x = malloc(sizeof(float) * in), *out = malloc(sizeof(float) * (size_t)batch * CAT(NETU, _OUTPUT_SIZE));
    int32_t *y = malloc(sizeof(int32_t) * (size_t)batch);
    if (!x || !out || !y) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < in; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)(s >> 40) / (float)(1 << 24);
    }
    memset(out, 0, sizeof(float) * (size_t)batch * CAT(NETU, _OUTPUT_SIZE));
    for (int i = 0; i < batch; i++)
        y[i] = (int32_t)(i % CAT(NETU, _OUTPUT_SIZE));
    double start = rss_mb();
    NET *net = CAT(NET, _new)(1);
    if (!net) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    double made = rss_mb();
    CAT(NET, _set_threads)(net, threads);
    if (forward)
        CAT(NET, _forward)(net, batch, x, out);
    double t0 = now();
    float loss = 0;
    for (int k = 0; k < steps; k++)
        loss = CAT(NET, _train_step)(net, batch, x, y);
    double secs = now() - t0;
    if (loss != loss) {
        fprintf(stderr, "train_step: %s\n", CAT(NET, _error)(net));
        return 1;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"system\": \"cnnc\", \"net\": \"%s\", \"batch\": %d, \"threads\": %d, \"steps\": %d, \"forward\": %s, "
           "\"rss_start_mb\": %.1f, \"rss_net_mb\": %.1f, \"peak_rss_mb\": %.1f, \"seconds\": %.2f, \"loss\": %.4f}\n",
           STR(NET), batch, threads, steps, forward ? "true" : "false", start, made, ru.ru_maxrss / 1024.0, secs, loss);
    free(x), free(out), free(y);
    CAT(NET, _free)(net);
    return 0;
}
