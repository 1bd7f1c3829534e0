/* peak.c: the machine's fp32 FMA peak, measured.
 *
 * Each thread runs CHAINS independent chains of AVX-512 FMAs
 * (acc[i] = acc[i] * a + b, 16 lanes, 2 FLOP per lane), enough chains to hide
 * the FMA latency (4 cycles on Zen 4/5, 2 FMA pipes: 8 needed, 24 used). It
 * runs on 1 thread and on 2 threads (OpenMP), several times each, and prints
 * the median GFLOP/s of each as one JSON object:
 *
 *   {"chains": 24, "runs": 7, "gflops_1t": ..., "gflops_2t": ..., ...}
 *
 * The accumulators are summed and printed (as "checksum"), so the compiler
 * cannot drop the work, and the loop is written with no reassociation
 * allowed (no -ffast-math), so the chains stay chains.
 *
 * Build: cc -O2 -mavx512f -fopenmp bench/probe/peak.c -o build/bench/peak
 * Run:   build/bench/peak [iterations per run, default 20000000]
 */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define CHAINS 24
#define RUNS 7

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* CHAINS independent FMA chains for `iters` iterations; returns their sum. */
__attribute__((noinline)) static float chains(long iters, float seed)
{
    __m512 a = _mm512_set1_ps(0.9999999f), b = _mm512_set1_ps(1e-7f);
    __m512 c0 = _mm512_set1_ps(seed + 0), c1 = _mm512_set1_ps(seed + 1),
           c2 = _mm512_set1_ps(seed + 2), c3 = _mm512_set1_ps(seed + 3),
           c4 = _mm512_set1_ps(seed + 4), c5 = _mm512_set1_ps(seed + 5),
           c6 = _mm512_set1_ps(seed + 6), c7 = _mm512_set1_ps(seed + 7),
           c8 = _mm512_set1_ps(seed + 8), c9 = _mm512_set1_ps(seed + 9),
           c10 = _mm512_set1_ps(seed + 10), c11 = _mm512_set1_ps(seed + 11),
           c12 = _mm512_set1_ps(seed + 12), c13 = _mm512_set1_ps(seed + 13),
           c14 = _mm512_set1_ps(seed + 14), c15 = _mm512_set1_ps(seed + 15),
           c16 = _mm512_set1_ps(seed + 16), c17 = _mm512_set1_ps(seed + 17),
           c18 = _mm512_set1_ps(seed + 18), c19 = _mm512_set1_ps(seed + 19),
           c20 = _mm512_set1_ps(seed + 20), c21 = _mm512_set1_ps(seed + 21),
           c22 = _mm512_set1_ps(seed + 22), c23 = _mm512_set1_ps(seed + 23);
    for (long i = 0; i < iters; i++) {
#define F(c) c = _mm512_fmadd_ps(c, a, b)
        F(c0); F(c1); F(c2); F(c3); F(c4); F(c5); F(c6); F(c7);
        F(c8); F(c9); F(c10); F(c11); F(c12); F(c13); F(c14); F(c15);
        F(c16); F(c17); F(c18); F(c19); F(c20); F(c21); F(c22); F(c23);
#undef F
        /* keep the compiler from collapsing iterations */
        __asm__ volatile("" : "+v"(c0), "+v"(c1), "+v"(c2), "+v"(c3), "+v"(c4), "+v"(c5),
                         "+v"(c6), "+v"(c7), "+v"(c8), "+v"(c9), "+v"(c10), "+v"(c11));
        __asm__ volatile("" : "+v"(c12), "+v"(c13), "+v"(c14), "+v"(c15), "+v"(c16),
                         "+v"(c17), "+v"(c18), "+v"(c19), "+v"(c20), "+v"(c21),
                         "+v"(c22), "+v"(c23));
    }
    __m512 s = _mm512_add_ps(
        _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
                      _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7))),
        _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11)),
                      _mm512_add_ps(_mm512_add_ps(c12, c13), _mm512_add_ps(c14, c15))));
    s = _mm512_add_ps(s, _mm512_add_ps(
        _mm512_add_ps(_mm512_add_ps(c16, c17), _mm512_add_ps(c18, c19)),
        _mm512_add_ps(_mm512_add_ps(c20, c21), _mm512_add_ps(c22, c23))));
    return _mm512_reduce_add_ps(s);
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double checksum;

/* Median GFLOP/s over RUNS runs of `iters` iterations on each of `t` threads. */
static double measure(int t, long iters, double *best)
{
    double g[RUNS];
    for (int r = 0; r < RUNS; r++) {
        double sum = 0;
        double t0 = now();
#pragma omp parallel num_threads(t) reduction(+ : sum)
        sum += chains(iters, (float)omp_get_thread_num() + r);
        double dt = now() - t0;
        checksum += sum;
        g[r] = (double)iters * CHAINS * 16 * 2 * t / dt * 1e-9;
    }
    qsort(g, RUNS, sizeof g[0], cmp);
    *best = g[RUNS - 1];
    return g[RUNS / 2];
}

int main(int argc, char **argv)
{
    long iters = argc > 1 ? atol(argv[1]) : 20000000;
    if (iters < 1)
        iters = 1;
    double best1, best2;
    chains(iters / 4, 0.0f); /* warm up: clocks, page in */
    double g1 = measure(1, iters, &best1);
    double g2 = measure(2, iters, &best2);
    printf("{\"chains\": %d, \"runs\": %d, \"iterations\": %ld, \"gflops_1t\": %.1f, "
           "\"gflops_2t\": %.1f, \"best_1t\": %.1f, \"best_2t\": %.1f, \"checksum\": %g}\n",
           CHAINS, RUNS, iters, g1, g2, best1, best2, checksum);
    return 0;
}
