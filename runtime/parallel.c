/* parallel.c: the work of one kernel call spread over the threads.
 *
 * The runtime splits a batch into slices, one per thread (net.c). Where that
 * leaves threads idle (a batch of one, or a batchnorm network, whose batch
 * statistics keep the whole batch on one thread), the kernel spreads its
 * larger steps itself:
 *   - a large GEMM calls rt_gemm, which splits C into blocks of columns (or
 *     of rows) and runs the kernel's own GEMM routine on each, one block per
 *     thread;
 *   - a loop of GEMMs of one shape (the 36 products of a Winograd
 *     transform) calls rt_gemm_batch, which gives each thread whole GEMMs;
 *   - a loop nest whose iterations are independent (the examples of an
 *     elementwise step, the channels of a batchnorm) calls rt_parallel,
 *     which gives each thread a contiguous part of its outer loop.
 *
 * A nest that is quick on one thread is not worth a fork, and a split nest
 * also pays for its data crossing between the cores' caches, which costs
 * more on some machines than the nest saves: each call site of rt_parallel
 * times its first calls whole, then (unless they were too quick to gain,
 * or long enough to gain surely) its next calls split, and from then on
 * runs the quicker way, timing each way again now and then.
 *
 * Each element is computed by the same code, in the same order, as without
 * the split (a GEMM's blocks start on multiples of its register tile): the
 * results do not depend on the number of threads.
 */
#include "cnnrt.h"

#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* The threads a GEMM of the calling thread may use: set by net.c around a
 * kernel it runs alone; 1 (no split) everywhere else. */
static _Thread_local int inner_threads = 1;

void rt_inner_threads(int threads) { inner_threads = threads > 1 ? threads : 1; }

/* Below this many multiply-adds a GEMM runs on its thread alone: forking
 * costs a few microseconds. */
enum { MIN_SPLIT_MACS = 1 << 19, MAX_TEAM = 256 };

/* Part t of `parts` of [0, n) in whole units of `unit` (the last part also
 * takes the remainder): [*lo, *hi). */
static void part(int64_t n, int64_t unit, int parts, int t, int64_t *lo, int64_t *hi)
{
    int64_t units = n / unit;
    *lo = units * t / parts * unit;
    *hi = t == parts - 1 ? n : units * (t + 1) / parts * unit;
}

/* The largest of the `parts` parts of n that part() makes. */
static int64_t largest_part(int64_t n, int64_t unit, int parts)
{
    int64_t most = 0;
    for (int t = 0; t < parts; t++) {
        int64_t lo, hi;
        part(n, unit, parts, t, &lo, &hi);
        most = hi - lo > most ? hi - lo : most;
    }
    return most;
}

void rt_gemm(rt_gemm_fn *fn, int64_t M, int64_t N, int64_t K, const float *A, int64_t sai, int64_t sak,
             const float *B, int64_t ldb, float *C, int64_t ldc, int64_t acc, const float *bias, int64_t how)
{
    if (M * N * K < MIN_SPLIT_MACS || inner_threads == 1) {      /* the cheap tests first */
        fn(M, N, K, A, sai, sak, B, ldb, C, ldc, acc != 0, bias);
        return;
    }
    int64_t tile_m = how >> 16 & 0xff, tile_n = how >> 24 & 0xfff;
    bool bt = how & RT_GEMM_BT, bias_rows = how & RT_GEMM_BIAS_ROWS;
    int64_t per_row = how & RT_GEMM_BIAS_PAIRS ? 2 : 1;
    int threads = omp_in_parallel() ? 1 : inner_threads;
    /* by columns or by rows: whichever leaves the busiest thread the smaller
     * share of C (169 columns in tiles of 32 split 64 + 105; 256 rows in
     * tiles of 6, 126 + 130), columns when equal */
    int cparts = N / tile_n < threads ? (int)(N / tile_n) : threads;
    int rparts = M / tile_m < threads ? (int)(M / tile_m) : threads;
    double cshare = cparts > 1 ? (double)largest_part(N, tile_n, cparts) / (double)N : 1;
    double rshare = rparts > 1 ? (double)largest_part(M, tile_m, rparts) / (double)M : 1;
    bool by_cols = cshare <= rshare;
    int parts = by_cols ? cparts : rparts;
    if (parts <= 1) {
        fn(M, N, K, A, sai, sak, B, ldb, C, ldc, acc != 0, bias);
        return;
    }
#pragma omp parallel for num_threads(parts) schedule(static, 1)
    for (int t = 0; t < parts; t++) {
        int64_t lo, hi;
        if (by_cols) {           /* columns [lo, hi): B's columns (bt: its rows), C's, and the bias per column */
            part(N, tile_n, parts, t, &lo, &hi);
            fn(M, hi - lo, K, A, sai, sak, B + lo * (bt ? ldb : 1), ldb, C + lo, ldc, acc != 0,
               bias && !bias_rows ? bias + lo : bias);
        } else {                 /* rows [lo, hi): A's rows, C's, and the bias per row */
            part(M, tile_m, parts, t, &lo, &hi);
            fn(hi - lo, N, K, A + lo * sai, sai, sak, B, ldb, C + lo * ldc, ldc, acc != 0,
               bias && bias_rows ? bias + lo * per_row : bias);
        }
    }
}

/* The thread's private scratch: grown, never shrunk, freed when the thread
 * ends (a key's destructor; the main thread's lasts until the process ends). */
static _Thread_local float *private_mem;
static _Thread_local int64_t private_cap;
static pthread_key_t private_key;
static pthread_once_t private_once = PTHREAD_ONCE_INIT;

static void private_free(void *p) { free(p); }
static void private_init(void) { pthread_key_create(&private_key, private_free); }

float *rt_private(int64_t bytes)
{
    if (bytes <= private_cap)
        return private_mem;
    size_t size = ((size_t)bytes + 63) & ~(size_t)63;
    float *p = aligned_alloc(64, size);
    if (!p) {
        fprintf(stderr, "cnnc runtime: out of memory for a thread's scratch of %lld bytes\n", (long long)bytes);
        exit(1);
    }
    pthread_once(&private_once, private_init);
    free(private_mem);
    private_mem = p, private_cap = (int64_t)size;
    pthread_setspecific(private_key, p);
    return p;
}

static _Thread_local bool slices_together;

void rt_slices_together(bool on) { slices_together = on; }

/* One thread's slice in rt_gemm_shared: its rows of A and of C. */
typedef struct { int64_t M; const float *A; float *C; } Slice;

/* Columns of C (of B) in a block whose part of B takes about a quarter of
 * the L2 (sysconf's, 1 MB if it does not say), in whole register tiles. */
static int64_t shared_block(int64_t K, int64_t tile_n)
{
    static _Thread_local int64_t l2;
    if (!l2) {
        long got = sysconf(_SC_LEVEL2_CACHE_SIZE);
        l2 = got > 0 ? got : 1 << 20;
    }
    int64_t cols = l2 / 4 / (int64_t)sizeof(float) / (K > 0 ? K : 1) / tile_n * tile_n;
    return cols > tile_n ? cols : tile_n;
}

void rt_gemm_shared(rt_gemm_fn *fn, int64_t M, int64_t N, int64_t K, const float *A, int64_t sai, int64_t sak,
                    const float *B, int64_t ldb, float *C, int64_t ldc, int64_t acc, const float *bias, int64_t how)
{
    int parts = omp_get_num_threads();
    if (!slices_together || parts <= 1 || parts > MAX_TEAM || how & RT_GEMM_BIAS_ROWS) {
        rt_gemm(fn, M, N, K, A, sai, sak, B, ldb, C, ldc, acc, bias, how);
        return;
    }
    int t = omp_get_thread_num();
    Slice own[MAX_TEAM], *slices;                 /* the table: on the stack of one thread */
#pragma omp single copyprivate(slices)
    slices = own;
    slices[t] = (Slice){M, A, C};
#pragma omp barrier
    int64_t tile_n = how >> 24 & 0xfff, lo, hi, block = shared_block(K, tile_n);
    bool bt = how & RT_GEMM_BT;
    part(N, tile_n, parts, t, &lo, &hi);
    for (int64_t j = lo; j < hi; j += block) {    /* B's columns [j, j + w): for every slice */
        int64_t w = hi - j < block ? hi - j : block;
        for (int s = 0; s < parts; s++)
            fn(slices[s].M, w, K, slices[s].A, sai, sak, B + j * (bt ? ldb : 1), ldb, slices[s].C + j, ldc,
               acc != 0, bias ? bias + j : NULL);
    }
#pragma omp barrier                               /* every slice's C is whole, and the table may go */
}

void rt_gemm_batch(rt_gemm_fn *fn, int64_t M, int64_t N, int64_t K, const float *A, int64_t sai, int64_t sak,
                   const float *B, int64_t ldb, float *C, int64_t ldc, int64_t acc, const float *bias, int64_t how,
                   int64_t count, int64_t a_step, int64_t b_step, int64_t c_step, int64_t bias_step)
{
    int threads = omp_in_parallel() ? 1 : inner_threads;
    /* whole GEMMs per thread: one fork for all, when they share out evenly
     * enough (a remainder of one GEMM in four or more per thread) */
    bool whole = count % threads == 0 || count >= 4 * threads;
    if (threads == 1 || count <= 1 || count * M * N * K < MIN_SPLIT_MACS || !whole) {
        for (int64_t g = 0; g < count; g++)
            rt_gemm(fn, M, N, K, A + g * a_step, sai, sak, B + g * b_step, ldb, C + g * c_step, ldc, acc,
                    bias ? bias + g * bias_step : NULL, how);
        return;
    }
    int parts = count < threads ? (int)count : threads;
#pragma omp parallel for num_threads(parts) schedule(static, 1)
    for (int t = 0; t < parts; t++)
        for (int64_t g = count * t / parts; g < count * (t + 1) / parts; g++)
            fn(M, N, K, A + g * a_step, sai, sak, B + g * b_step, ldb, C + g * c_step, ldc, acc != 0,
               bias ? bias + g * bias_step : NULL);
}

/* A nest split across threads gains at most half its time and pays a fork
 * and a join, which cost 0.5-1 us on one 2-core VM (threads spinning
 * between regions) and more where waking a thread is slower: each thread
 * measures that cost once (split_min_ns), and nests that take less than
 * four times it on one thread run whole (between 1 and 12 us) without a
 * trial. A nest above that but under 50 us is timed split too, for the
 * fork is not the whole cost: on an Intel Xeon VM whose empty regions took
 * 26 ns, LeNet's one split nest at batch 1 took 5.2 us split against 1.6 us
 * whole (its data crossing between the cores' caches), and the batch-1
 * forward 24 us against 12.5 us. A nest of 50 us or more works on more
 * than a core's caches hold and is split without a trial, as before
 * trials: a split trial that meets other load on the machine would keep
 * such a nest whole until its next re-timing, 64 calls later, and a
 * batchnorm net's training step calls each site once (MobileNet V2's long
 * nests at batch 16, run alongside another job: 160 us whole against 208
 * us split). Split or whole, the nest computes each element by the same
 * code: the choice never changes a result. */
enum { SPLIT_MIN_FLOOR_NS = 1000, SPLIT_MIN_CAP_NS = 12000, TRIAL_MAX_NS = 50000, MAX_SPLIT = 64, TIMED_CALLS = 3,
       RETIME_EVERY = 64, SITES = 1024 };

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* The quickest of 16 empty parallel regions of `threads` threads (after 4
 * to wake them), times four, within [1, 12] us: the least time on one
 * thread that a nest must take to be split. Measured once per thread and
 * thread count. */
static int64_t split_min_ns(int threads)
{
    static _Thread_local int64_t min_ns[MAX_SPLIT + 1];
    int i = threads < MAX_SPLIT ? threads : MAX_SPLIT;
    if (min_ns[i])
        return min_ns[i];
    int64_t best = INT64_MAX;
    for (int r = 0; r < 20; r++) {
        int64_t t0 = now_ns();
#pragma omp parallel num_threads(threads)
        {
        }
        int64_t t = now_ns() - t0;
        best = r >= 4 && t < best ? t : best;
    }
    best *= 4;
    min_ns[i] = best < SPLIT_MIN_FLOOR_NS ? SPLIT_MIN_FLOOR_NS : best > SPLIT_MIN_CAP_NS ? SPLIT_MIN_CAP_NS : best;
    return min_ns[i];
}

/* Per call site of rt_parallel in the generated code (its return address)
 * and batch size (a nest's size depends on nothing else): its calls so far,
 * and its quickest whole and split calls. Each thread that runs kernels has
 * its table. The first calls (all in the first forward, from cold caches,
 * when the site is inside a loop over chunks) are timed whole, then split;
 * every 64th call is timed whole again and, 32 calls later, split again, so
 * a choice made on a cold or busy start is found out later. */
typedef struct { const void *site; int64_t n; int64_t calls; int64_t whole_ns, split_ns; } Site;
static _Thread_local Site sites[SITES];

/* The site's slot (NULL: the table is full, and the nest is split). */
static Site *site_of(const void *site, int64_t n)
{
    size_t h = ((uintptr_t)site >> 2 ^ (uintptr_t)n << 20) * 0x9E3779B97F4A7C15ull >> 54;     /* 10 bits */
    for (int i = 0; i < SITES; i++) {
        Site *s = &sites[(h + (size_t)i) % SITES];
        if (s->site == site && s->n == n)
            return s;
        if (!s->site) {
            s->site = site, s->n = n, s->whole_ns = s->split_ns = INT64_MAX;
            return s;
        }
    }
    return NULL;
}

static void run_split(rt_part_fn *part, void *args, int64_t lo, int64_t hi, int parts)
{
    int64_t n = hi - lo;
#pragma omp parallel for num_threads(parts) schedule(static, 1)
    for (int t = 0; t < parts; t++)
        part(args, lo + n * t / parts, lo + n * (t + 1) / parts);
}

bool rt_split_choice(int64_t whole_ns, int64_t split_ns, int64_t split_min, int64_t call, bool *timed)
{
    bool may_gain = whole_ns >= split_min, trial = whole_ns < TRIAL_MAX_NS;
    *timed = true;
    if (call < TIMED_CALLS || call % RETIME_EVERY == 0)
        return false;
    if (may_gain && trial && (call < 2 * TIMED_CALLS || call % RETIME_EVERY == RETIME_EVERY / 2))
        return true;
    *timed = false;
    return may_gain && (!trial || split_ns < whole_ns);
}

void rt_parallel(rt_part_fn *part, void *args, int64_t lo, int64_t hi, int64_t batch)
{
    int64_t n = hi - lo;
    int threads = omp_in_parallel() ? 1 : inner_threads;
    int parts = n < threads ? (int)n : threads;
    if (parts <= 1) {
        part(args, lo, hi);
        return;
    }
    Site *s = site_of(__builtin_return_address(0), batch);
    if (!s) {
        run_split(part, args, lo, hi, parts);
        return;
    }
    bool timed, split = rt_split_choice(s->whole_ns, s->split_ns, split_min_ns(parts), s->calls++, &timed);
    int64_t t0 = timed ? now_ns() : 0;
    if (split)
        run_split(part, args, lo, hi, parts);
    else
        part(args, lo, hi);
    if (timed) {
        int64_t t = now_ns() - t0, *best = split ? &s->split_ns : &s->whole_ns;
        *best = t < *best ? t : *best;
    }
}
