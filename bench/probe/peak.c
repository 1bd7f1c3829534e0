/* peak.c: the machine's fp32 FMA peak, measured.
 *
 * Each thread runs CHAINS independent chains of FMAs on the widest vectors
 * the build targets (acc[i] = acc[i] * a + b, 2 FLOP per lane): with
 * AVX-512, 24 chains of 16 lanes (FMA latency 4 cycles on Zen 4/5, 2 FMA
 * pipes: 8 needed); with AVX2 and FMA only, 12 chains of 8 lanes (latency 4-5
 * cycles, 2 pipes: 10 needed; 12 chains, a and b fill 14 of the 16 ymm
 * registers, so nothing spills). It runs on 1 thread and on 2 threads
 * (OpenMP), several times each, and prints the median GFLOP/s of each as one
 * JSON object:
 *
 *   {"chains": 24, "lanes": 16, "runs": 7, "gflops_1t": ..., "gflops_2t": ..., ...}
 *
 * The accumulators are summed and printed (as "checksum"), so the compiler
 * cannot drop the work, and the loop is written with no reassociation
 * allowed (no -ffast-math), so the chains stay chains.
 *
 * Build: cc -O2 -march=native -fopenmp bench/probe/peak.c -o build/bench/peak
 * Run:   build/bench/peak [iterations per run, default 20000000]
 */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#if defined(__AVX512F__)
typedef __m512 V;
#define LANES 16
#define CHAINS 24
#define SET1 _mm512_set1_ps
#define FMA _mm512_fmadd_ps
#define ADD _mm512_add_ps
#elif defined(__AVX2__) && defined(__FMA__)
typedef __m256 V;
#define LANES 8
#define CHAINS 12
#define SET1 _mm256_set1_ps
#define FMA _mm256_fmadd_ps
#define ADD _mm256_add_ps
#else
#error "peak.c needs AVX-512 or AVX2 with FMA: build it with -march=native"
#endif
#define RUNS 7

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static float sum_lanes(V v)
{
    float f[LANES];
    __builtin_memcpy(f, &v, sizeof f);
    float s = 0;
    for (int i = 0; i < LANES; i++)
        s += f[i];
    return s;
}

/* CHAINS independent FMA chains for `iters` iterations; returns their sum. */
__attribute__((noinline)) static float chains(long iters, float seed)
{
    V a = SET1(0.9999999f), b = SET1(1e-7f);
    V c0 = SET1(seed + 0), c1 = SET1(seed + 1), c2 = SET1(seed + 2), c3 = SET1(seed + 3),
      c4 = SET1(seed + 4), c5 = SET1(seed + 5), c6 = SET1(seed + 6), c7 = SET1(seed + 7),
      c8 = SET1(seed + 8), c9 = SET1(seed + 9), c10 = SET1(seed + 10), c11 = SET1(seed + 11);
#if CHAINS == 24
    V c12 = SET1(seed + 12), c13 = SET1(seed + 13), c14 = SET1(seed + 14),
      c15 = SET1(seed + 15), c16 = SET1(seed + 16), c17 = SET1(seed + 17),
      c18 = SET1(seed + 18), c19 = SET1(seed + 19), c20 = SET1(seed + 20),
      c21 = SET1(seed + 21), c22 = SET1(seed + 22), c23 = SET1(seed + 23);
#endif
    for (long i = 0; i < iters; i++) {
#define F(c) c = FMA(c, a, b)
        F(c0); F(c1); F(c2); F(c3); F(c4); F(c5); F(c6); F(c7); F(c8); F(c9); F(c10); F(c11);
        /* keep the compiler from collapsing iterations */
        __asm__ volatile("" : "+v"(c0), "+v"(c1), "+v"(c2), "+v"(c3), "+v"(c4), "+v"(c5),
                         "+v"(c6), "+v"(c7), "+v"(c8), "+v"(c9), "+v"(c10), "+v"(c11));
#if CHAINS == 24
        F(c12); F(c13); F(c14); F(c15); F(c16); F(c17);
        F(c18); F(c19); F(c20); F(c21); F(c22); F(c23);
        __asm__ volatile("" : "+v"(c12), "+v"(c13), "+v"(c14), "+v"(c15), "+v"(c16),
                         "+v"(c17), "+v"(c18), "+v"(c19), "+v"(c20), "+v"(c21),
                         "+v"(c22), "+v"(c23));
#endif
#undef F
    }
    V s = ADD(ADD(ADD(ADD(c0, c1), ADD(c2, c3)), ADD(ADD(c4, c5), ADD(c6, c7))),
              ADD(ADD(c8, c9), ADD(c10, c11)));
#if CHAINS == 24
    s = ADD(s, ADD(ADD(ADD(ADD(c12, c13), ADD(c14, c15)), ADD(ADD(c16, c17), ADD(c18, c19))),
                   ADD(ADD(c20, c21), ADD(c22, c23))));
#endif
    return sum_lanes(s);
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
        g[r] = (double)iters * CHAINS * LANES * 2 * t / dt * 1e-9;
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
    printf("{\"chains\": %d, \"lanes\": %d, \"runs\": %d, \"iterations\": %ld, \"gflops_1t\": %.1f, "
           "\"gflops_2t\": %.1f, \"best_1t\": %.1f, \"best_2t\": %.1f, \"checksum\": %g}\n",
           CHAINS, LANES, RUNS, iters, g1, g2, best1, best2, checksum);
    return 0;
}
