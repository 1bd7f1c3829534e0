/* calls.c: where a batch-1 forward's time goes, call by call.
 *
 * At batch 1 the threads share out a kernel's steps through the runtime's
 * rt_gemm, rt_gemm_batch and rt_parallel (runtime/parallel.c). This file
 * wraps those three (it includes parallel.c with them renamed, and is
 * linked before the library, whose parallel.o is then left out) and times
 * each call of a forward and the serial code before it (the gap), over
 * many forwards. bench/probe/calls.sh builds it into cnnc_bench and names
 * each call's routine from the symbol table.
 *
 * Output (to $CALLS_OUT, else stderr), one line per call of a forward:
 *   INDEX KIND ROUTINE A B C call MEAN gap MEAN min MIN MIN
 * KIND gemm (A B C: M N K), batch (A: M * 1000 + count), par (A B: the
 * range, C: 1 if the site runs whole, see rt_parallel); times in ms, the
 * mean and the minimum over the forwards, of the call and of the gap before
 * it. Then a summary line: forwards, their mean time, the calls' sums.
 * The minima of a loaded machine's 2-thread runs add up to what a quiet
 * one would give; a mean far above its minimum is a call that one slow
 * thread held up. */
static const void *probe_site;                       /* the wrapped call's site, for rt_parallel's table */
#define __builtin_return_address(x) probe_site
#define rt_gemm real_rt_gemm
#define rt_parallel real_rt_parallel
#define rt_inner_threads real_rt_inner_threads
#define rt_gemm_batch real_rt_gemm_batch
#include "parallel.c"
#undef rt_gemm
#undef rt_parallel
#undef rt_inner_threads
#undef rt_gemm_batch
#undef __builtin_return_address

#include <stdio.h>
#include <stdlib.h>

enum { MAX_CALLS = 4000 };
enum { K_GEMM = 1, K_PAR, K_BATCH };

typedef struct {
    const void *fn;
    int kind;
    int64_t a, b, c;
    double t, gap, tmin, gmin;     /* seconds: sums and minima */
} Call;

static Call calls[MAX_CALLS];
static int idx, ncalls, nfwd, in_fwd;
static double last, fstart, ftotal;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void record(const void *fn, int kind, int64_t a, int64_t b, int64_t c, double t0, double t1)
{
    if (in_fwd && idx < MAX_CALLS) {
        Call *r = &calls[idx++];
        double t = t1 - t0, g = t0 - last;
        r->fn = fn, r->kind = kind, r->a = a, r->b = b, r->c = c;
        r->t += t, r->gap += g;
        if (!r->tmin || t < r->tmin)
            r->tmin = t;
        if (!r->gmin || g < r->gmin)
            r->gmin = g;
    }
    last = t1;
}

/* net.c calls it before and after a kernel it runs alone: a forward's
 * start and end. */
void rt_inner_threads(int threads)
{
    real_rt_inner_threads(threads);
    if (!in_fwd) {
        in_fwd = 1, idx = 0, fstart = last = now();
        return;
    }
    ftotal += now() - fstart;
    nfwd++, ncalls = idx, in_fwd = 0;
}

void rt_gemm(rt_gemm_fn *fn, int64_t M, int64_t N, int64_t K, const float *A, int64_t sai, int64_t sak,
             const float *B, int64_t ldb, float *C, int64_t ldc, int64_t acc, const float *bias, int64_t how)
{
    double t0 = now();
    real_rt_gemm(fn, M, N, K, A, sai, sak, B, ldb, C, ldc, acc, bias, how);
    record((const void *)fn, K_GEMM, M, N, K, t0, now());
}

void rt_gemm_batch(rt_gemm_fn *fn, int64_t M, int64_t N, int64_t K, const float *A, int64_t sai, int64_t sak,
                   const float *B, int64_t ldb, float *C, int64_t ldc, int64_t acc, const float *bias, int64_t how,
                   int64_t count, int64_t a_step, int64_t b_step, int64_t c_step, int64_t bias_step)
{
    double t0 = now();
    int save = in_fwd;
    in_fwd = 0;                    /* its own rt_gemm calls are part of it */
    real_rt_gemm_batch(fn, M, N, K, A, sai, sak, B, ldb, C, ldc, acc, bias, how, count, a_step, b_step, c_step,
                       bias_step);
    in_fwd = save;
    record((const void *)fn, K_BATCH, M * 1000 + count, N, K, t0, now());
}

void rt_parallel(rt_part_fn *part, void *args, int64_t lo, int64_t hi, int64_t batch)
{
    double t0 = now();
    probe_site = __builtin_return_address(0);
    real_rt_parallel(part, args, lo, hi, batch);
    Site *s = site_of(probe_site, batch);
    record((const void *)part, K_PAR, lo, hi, s && s->calls >= TIMED_CALLS && s->best_ns < SPLIT_MIN_NS, t0, now());
}

__attribute__((destructor)) static void report(void)
{
    if (!nfwd)
        return;
    const char *path = getenv("CALLS_OUT");
    FILE *f = path ? fopen(path, "w") : stderr;
    if (!f)
        return;
    static const char *kinds[] = {"?", "gemm", "par", "batch"};
    double sum = 0, gaps = 0, mins = 0;
    for (int i = 0; i < ncalls; i++) {
        const Call *r = &calls[i];
        double t = r->t / nfwd * 1e3, g = r->gap / nfwd * 1e3;
        fprintf(f, "%d %s %p %ld %ld %ld call %.4f gap %.4f min %.4f %.4f\n", i, kinds[r->kind], r->fn, (long)r->a,
                (long)r->b, (long)r->c, t, g, r->tmin * 1e3, r->gmin * 1e3);
        sum += t, gaps += g, mins += (r->tmin + r->gmin) * 1e3;
    }
    fprintf(f, "forwards %d: %.3f ms each; %d calls %.3f ms, gaps %.3f ms; sum of the minima %.3f ms\n", nfwd,
            ftotal / nfwd * 1e3, ncalls, sum, gaps, mins);
    if (f != stderr)
        fclose(f);
}
