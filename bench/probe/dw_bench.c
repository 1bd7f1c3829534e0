/* dw_bench.c: one convolution's weight gradient, timed on one thread.
 *
 * Built per layer by bench/probe/dw_layers.sh against a program
 *   input x; x -> conv(...) -> f; loss = mse(f, t)
 * whose conv reads the input, so loss_grad computes no data gradient:
 * loss_grad - forward is the weight gradient (plus the mse's gradient and
 * the bias's sum: a pass or two over the output, small beside it).
 * Times are thread CPU time (CLOCK_THREAD_CPUTIME_ID, the minimum of the
 * calls), so other jobs on the machine count little.
 *
 *   dw_bench_NET BATCH CALLS FLOPS_PER_EXAMPLE
 * prints: {"fwd_ms": ..., "grad_ms": ..., "dw_ms": ..., "dw_gflops": ...}
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)

static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    int n = atoi(argv[1]), calls = atoi(argv[2]);
    double flops = atof(argv[3]) * n;
    NET *net = CAT(NET, _new)(n);
    CAT(NET, _set_threads)(net, 1);
    float *x = malloc(sizeof(float) * n * CAT(NETU, _INPUT_SIZE));
    float *t = malloc(sizeof(float) * n * CAT(NETU, _OUTPUT_SIZE));
    float *out = malloc(sizeof(float) * n * CAT(NETU, _OUTPUT_SIZE));
    for (long i = 0; i < (long)n * CAT(NETU, _INPUT_SIZE); i++)
        x[i] = (float)((i * 7919 % 1000) / 1000.0 - 0.5);
    for (long i = 0; i < (long)n * CAT(NETU, _OUTPUT_SIZE); i++)
        t[i] = (float)((i * 104729 % 1000) / 1000.0 - 0.5);
    double best_f = 1e30, best_g = 1e30, sink = 0;
    CAT(NET, _loss_grad)(net, n, x, t);
    for (int c = 0; c < calls; c++) {
        double a = cpu_now();
        CAT(NET, _forward)(net, n, x, out);
        double b = cpu_now();
        sink += CAT(NET, _loss_grad)(net, n, x, t);
        double d = cpu_now();
        if (b - a < best_f) best_f = b - a;
        if (d - b < best_g) best_g = d - b;
    }
    double dw = best_g - best_f;
    printf("{\"fwd_ms\": %.3f, \"grad_ms\": %.3f, \"dw_ms\": %.3f, \"dw_gflops\": %.1f, \"sink\": %g}\n",
           best_f * 1e3, best_g * 1e3, dw * 1e3, flops / dw * 1e-9, sink);
    return 0;
}
