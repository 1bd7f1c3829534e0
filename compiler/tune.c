/* tune.c: cnnc --tune. Each distinct GEMM of the kernels (its shape, strides
 * and epilogue: its signature) can be built with several register tiles;
 * the tuner JIT-compiles the candidates for this machine, runs them on
 * buffers of the real size, rejects any whose result differs from the
 * default tile's, and keeps the fastest. The choices go to a tuning cache,
 * which later compiles read; a kernel the cache has (same signature, CPU and
 * cnnc version) is not measured again unless --retune, so one source and
 * one cache give one binary.
 *
 *   tune_collect   the GEMM signatures of the lowered kernels
 *   tune_use_cache the cache's tiles for them
 *   tune_search    measures the others (or all: --retune) within the budget
 *   tune_apply     sets each GEMM statement's tile from the choices
 *   cache_read / cache_write   the cache file (JSON, documented in
 *                  docs/compiler.md)
 */
#include "cnnc.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- text and messages ------------------------------------------------------ */

typedef struct { char *buf; size_t len, cap; } Str;

static void str_addn(Str *s, const char *p, size_t n)
{
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 256;
        while (cap < s->len + n + 1)
            cap *= 2;
        char *b = arena_alloc(cap);
        if (s->len)
            memcpy(b, s->buf, s->len);
        s->buf = b, s->cap = cap;
    }
    memcpy(s->buf + s->len, p, n);
    s->len += n;
    s->buf[s->len] = 0;
}

static void str_addc(Str *s, char c) { str_addn(s, &c, 1); }

static void str_add(Str *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void str_add(Str *s, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    str_addn(s, buf, n < 0 ? 0 : (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

static const char *str_done(Str *s) { return s->buf ? s->buf : ""; }

/* "6x3", or "6x3/cols" with the columns outer: the cache's and -v's name */
static const char *tile_name(int r, int c, bool cols_outer)
{
    return arena_printf("%dx%d%s", r, c, cols_outer ? "/cols" : "");
}

/* ---- signatures ------------------------------------------------------------ */

/* A GEMM as the tuner sees it: one per signature, standing for every
 * statement that has it. */
struct TuneKernel {
    const char *sig;          /* "gemm M=6 N=784 K=25 sai=25 sak=1 ldb=784 ldc=784 acc=0 bias=rows relu=1" */
    Gemm *g;                  /* a statement with it (the first) */
    int64_t m;                /* M (and K) where they depend on the batch: the slice a thread runs */
    double weight;            /* FLOPs per training step, all its statements together */
    int tile_r, tile_c;       /* the chosen tile (the default if none better) */
    bool cols_outer;          /* and loop order */
    bool from_cache;          /* the tile is the cache's (and the times) */
    bool tuned;               /* measured by this compile */
    int tried, rejected;      /* variants measured, and those rejected as wrong */
    double default_ns, best_ns;
};

static int64_t resolved(const Expr *e, int64_t m) { return e->kind == X_INT ? e->ival : m; }

static const char *signature(const Gemm *g, int64_t m)
{
    static const char *const bias[] = {"none", "rows", "cols", "bn"};
    return arena_printf("%s M=%lld N=%lld K=%lld sai=%lld sak=%lld ldb=%lld ldc=%lld acc=%d bias=%s relu=%d",
                        g->bt ? "gemm_nt" : "gemm", (long long)resolved(g->M, m), (long long)g->N,
                        (long long)resolved(g->K, m), (long long)g->sai, (long long)g->sak, (long long)g->ldb,
                        (long long)g->ldc, g->accumulate, bias[!g->bias ? 0 : g->bn_rows ? 3 : g->bias_rows ? 1 : 2], g->relu);
}

static void collect_stmts(Tuning *t, const Vec *body, int64_t m, int64_t times)
{
    Vec *out = &t->kernels;
    for (int i = 0; i < body->n; i++) {
        LStmt *s = body->at[i];
        if (s->kind == L_FOR)
            collect_stmts(t, &s->body, m, example_loop(s) ? times * m : times);
        else if (s->kind == L_IF)
            collect_stmts(t, &s->body, m, times);
        if (s->kind != L_GEMM)
            continue;
        Gemm *g = s->gemm;
        const char *sig = signature(g, m);
        double flops = 2.0 * (double)resolved(g->M, m) * (double)g->N * (double)resolved(g->K, m) * (double)times;
        TuneKernel *k = NULL;
        for (int j = 0; j < out->n && !k; j++)
            if (strcmp(((TuneKernel *)out->at[j])->sig, sig) == 0)
                k = out->at[j];
        if (!k) {
            k = arena_alloc(sizeof *k);
            k->sig = sig, k->g = g, k->m = m;
            gemm_tile_for(g, &k->tile_r, &k->tile_c);
            k->cols_outer = gemm_cols_outer_default(g);
            vec_push(out, k);
        }
        k->weight += flops;
        vec_push(&t->gemms, g), vec_push(&t->owners, k);
    }
}

/* The rows of a GEMM that depends on the batch, in one thread's share of a
 * training batch: the batch over the CPUs. */
static int64_t thread_slice(const Graph *g)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int64_t batch = g->train.batch > 0 ? g->train.batch : 64;
    if (cpus < 1)
        cpus = 1;
    return (batch + cpus - 1) / cpus;
}

Tuning *tune_collect(Lowered *l)
{
    Tuning *t = arena_alloc(sizeof *t);
    int64_t m = thread_slice(l->g);
    collect_stmts(t, &l->forward->body, m, 1);
    if (l->train)
        collect_stmts(t, &l->train->body, m, 1);
    return t;
}

void tune_apply(Tuning *t)
{
    for (int i = 0; i < t->gemms.n; i++) {
        Gemm *g = t->gemms.at[i];
        const TuneKernel *k = t->owners.at[i];
        if (k->tuned || k->from_cache)   /* a choice, even of the default tile: the loop order is explicit */
            g->tile_r = k->tile_r, g->tile_c = k->tile_c, g->cols_outer = k->cols_outer;
    }
}

/* ---- measuring ------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* The operands of one kernel, sized from its strides, random in [-1, 1). */
typedef struct {
    float *a, *b, *c, *c0, *ref, *bias;
    int64_t na, nb, nc;
} Operands;

static float *random_floats(int64_t n, uint64_t *state)
{
    float *p = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    if (!p)
        internal_error("out of memory for the tuner's buffers");
    for (int64_t i = 0; i < n; i++) {
        *state = *state * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = (float)((double)(*state >> 40) / (double)(1ull << 24) * 2 - 1);
    }
    return p;
}

static Operands operands(const TuneKernel *k)
{
    const Gemm *g = k->g;
    int64_t M = resolved(g->M, k->m), K = resolved(g->K, k->m), N = g->N;
    uint64_t seed = 12345;
    Operands o;
    o.na = (M - 1) * g->sai + (K - 1) * (g->bt ? 1 : g->sak) + 1;
    o.nb = g->bt ? (N - 1) * g->ldb + K : (K - 1) * g->ldb + N;
    o.nc = (M - 1) * g->ldc + N;
    o.a = random_floats(o.na, &seed), o.b = random_floats(o.nb, &seed);
    o.c0 = random_floats(o.nc, &seed), o.bias = random_floats(2 * (M > N ? M : N), &seed);   /* bn: pairs */
    o.c = malloc(sizeof(float) * (size_t)o.nc), o.ref = malloc(sizeof(float) * (size_t)o.nc);
    if (!o.c || !o.ref)
        internal_error("out of memory for the tuner's buffers");
    return o;
}

static void free_operands(Operands *o)
{
    free(o->a), free(o->b), free(o->c), free(o->c0), free(o->ref), free(o->bias);
}

/* Whether c matches the default tile's result: the sums are the same up to
 * the order of the additions. */
static bool same_result(const float *c, const float *ref, int64_t n)
{
    double scale = 0, worst = 0;
    for (int64_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(ref[i]));
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(c[i]))
            return false;
        worst = fmax(worst, fabs((double)c[i] - ref[i]));
    }
    return worst <= 1e-4 * (1 + scale);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median time of one call, in ns: warm-up, then 5 samples of enough
 * calls to take about half a millisecond each. */
static double time_calls(GemmBenchFn fn, Operands *o)
{
    memcpy(o->c, o->c0, sizeof(float) * (size_t)o->nc);
    double t = now_s();
    fn(o->a, o->b, o->c, o->bias);
    double once = now_s() - t;
    long reps = once > 0 ? (long)(0.5e-3 / once) : 1000;
    reps = reps < 1 ? 1 : reps > 100000 ? 100000 : reps;
    double sample[5];
    for (int s = 0; s < 5; s++) {
        memcpy(o->c, o->c0, sizeof(float) * (size_t)o->nc);
        t = now_s();
        for (long r = 0; r < reps; r++)
            fn(o->a, o->b, o->c, o->bias);
        sample[s] = (now_s() - t) / (double)reps * 1e9;
    }
    qsort(sample, 5, sizeof sample[0], cmp_double);
    return sample[2];
}

/* A candidate: a register tile and a loop order. */
typedef struct { int r, c; bool cols_outer; } Variant;

/* Runs variant t once from c0 into o->c, and with ns times it; false if it
 * could not be built. */
static bool run_variant(const TuneKernel *k, Variant t, bool fault, Operands *o, double *ns)
{
    Gemm v = *k->g;
    v.tile_r = t.r, v.tile_c = t.c, v.cols_outer = t.cols_outer;
    GemmBenchFn fn;
    GemmJit *j = gemm_jit(&v, k->m, fault, &fn);
    if (!j)
        return false;
    memcpy(o->c, o->c0, sizeof(float) * (size_t)o->nc);
    fn(o->a, o->b, o->c, o->bias);
    if (ns) {
        float *once = malloc(sizeof(float) * (size_t)o->nc);
        if (!once)
            internal_error("out of memory for the tuner's buffers");
        memcpy(once, o->c, sizeof(float) * (size_t)o->nc);
        *ns = time_calls(fn, o);
        memcpy(o->c, once, sizeof(float) * (size_t)o->nc);
        free(once);
    }
    gemm_jit_free(j);
    return true;
}

/* The candidates, known good shapes first, each with the rows outer and
 * then the columns outer; the default (its tile in its loop order,
 * gemm_cols_outer_default) is measured before them, so of the default tile
 * only the other order is a candidate.
 * Tiles larger than the GEMM (more rows than M, more columns than N) cannot
 * win and are left out, and so is the columns-outer order when one block of
 * rows or columns covers the whole GEMM (it is then the same loop). */
static int candidates(const TuneKernel *k, Variant *out, int max)
{
    static const int gemm_tiles[][2] = {{4, 3}, {8, 2}, {6, 3}, {4, 2}, {12, 1}, {8, 3}, {14, 2}, {6, 4}, {4, 4}, {2, 2}};
    static const int nt_tiles[][2] = {{2, 8}, {8, 2}, {4, 2}, {2, 4}, {3, 4}, {4, 3}, {6, 2}, {2, 6}, {4, 5}, {1, 8}};
    const Gemm *g = k->g;
    int64_t M = resolved(g->M, k->m), N = g->N;
    int n = 0, dr, dc;
    gemm_tile_for(g, &dr, &dc);
    bool default_cols = gemm_cols_outer_default(g);   /* the default variant: measured already */
    const int(*list)[2] = g->bt ? nt_tiles : gemm_tiles;
    int count = g->bt ? (int)(sizeof nt_tiles / sizeof nt_tiles[0]) : (int)(sizeof gemm_tiles / sizeof gemm_tiles[0]);
    for (int i = -1; i < count && n < max; i++) {
        int r = i < 0 ? dr : list[i][0], c = i < 0 ? dc : list[i][1];
        int64_t cols = g->bt ? c : (int64_t)(c - 1) * 16 + 1;   /* the fewest columns that fill c vectors */
        int64_t width = g->bt ? c : (int64_t)c * 16;           /* the columns one block covers */
        if (!gemm_tile_ok(g->bt, r, c) || (i >= 0 && r == dr && c == dc) || r > M || cols > N)
            continue;
        bool both = M > r && N > width;           /* else the two orders are one loop */
        for (int cols_outer = 0; cols_outer < 2 && n < max; cols_outer++) {
            /* the default tile: only its other order, where there are two */
            bool keep = i >= 0 ? !cols_outer || both : both && cols_outer != default_cols;
            if (keep)
                out[n++] = (Variant){r, c, cols_outer};
        }
    }
    return n;
}

/* Tunes kernel k until `deadline` (seconds on the now_s clock), from the
 * default tile (not the cache's, with --retune). */
static void tune_kernel(TuneKernel *k, double deadline, const TuneOptions *opt)
{
    gemm_tile_for(k->g, &k->tile_r, &k->tile_c);
    k->cols_outer = gemm_cols_outer_default(k->g);
    k->from_cache = false, k->default_ns = k->best_ns = 0;
    Operands o = operands(k);
    double t0 = now_s();
    if (!run_variant(k, (Variant){k->tile_r, k->tile_c, k->cols_outer}, false, &o, &k->default_ns)) {
        free_operands(&o);
        return;
    }
    memcpy(o.ref, o.c, sizeof(float) * (size_t)o.nc);
    double cost = now_s() - t0;          /* what one candidate takes: build and time */
    k->best_ns = k->default_ns, k->tried = 1, k->tuned = true;
    Variant cand[32];
    int n = candidates(k, cand, 32);
    for (int i = 0; i < n && now_s() + cost <= deadline; i++) {
        double ns, t = now_s();
        bool fault = opt->fault && i == 0;
        if (!run_variant(k, cand[i], fault, &o, &ns))
            continue;
        cost = now_s() - t;
        k->tried++;
        if (!same_result(o.c, o.ref, o.nc)) {
            k->rejected++;
            if (opt->verbose)
                fprintf(stderr, "cnnc: --tune: %s: tile %s rejected: its result differs from the default's\n",
                        k->sig, tile_name(cand[i].r, cand[i].c, cand[i].cols_outer));
            continue;
        }
        if (ns < k->best_ns * 0.97) {    /* a clear win only: timing noise is a few percent */
            k->best_ns = ns;
            k->tile_r = cand[i].r, k->tile_c = cand[i].c, k->cols_outer = cand[i].cols_outer;
        }
    }
    /* The winner against the default once more, the best time of each: a
     * default measured in a moment of other load must not lose by that. */
    Variant def = {k->tile_r, k->tile_c, k->cols_outer}, best = def;
    gemm_tile_for(k->g, &def.r, &def.c), def.cols_outer = gemm_cols_outer_default(k->g);
    double again;
    if ((best.r != def.r || best.c != def.c || best.cols_outer != def.cols_outer) && now_s() + 2 * cost <= deadline) {
        if (run_variant(k, def, false, &o, &again))
            k->default_ns = fmin(k->default_ns, again);
        if (run_variant(k, best, false, &o, &again))
            k->best_ns = fmin(k->best_ns, again);
        if (!(k->best_ns < k->default_ns * 0.97))
            k->tile_r = def.r, k->tile_c = def.c, k->cols_outer = def.cols_outer, k->best_ns = k->default_ns;
    }
    free_operands(&o);
}

static int by_weight(const void *a, const void *b)
{
    double x = (*(TuneKernel *const *)a)->weight, y = (*(TuneKernel *const *)b)->weight;
    return (x < y) - (x > y);
}

/* Whether the search measures k: not when the cache has it, unless --retune. */
static bool to_measure(const TuneKernel *k, const TuneOptions *opt) { return opt->retune || !k->from_cache; }

double tune_search(Tuning *t, const TuneOptions *opt)
{
    double start = now_s(), end = start + opt->budget_s, left_weight = 0;
    TuneKernel **ks = (TuneKernel **)t->kernels.at;
    qsort(ks, (size_t)t->kernels.n, sizeof *ks, by_weight);
    for (int i = 0; i < t->kernels.n; i++)
        left_weight += to_measure(ks[i], opt) ? ks[i]->weight : 0;
    /* each kernel gets its share of what is left, by its share of the FLOPs */
    for (int i = 0; i < t->kernels.n; i++) {
        if (!to_measure(ks[i], opt))
            continue;
        double now = now_s(), share = left_weight > 0 ? (end - now) * ks[i]->weight / left_weight : 0;
        left_weight -= ks[i]->weight;
        if (now >= end)
            break;
        tune_kernel(ks[i], now + share, opt);
    }
    return now_s() - start;
}

int tune_measured(const Tuning *t)
{
    int n = 0;
    for (int i = 0; i < t->kernels.n; i++)
        n += ((const TuneKernel *)t->kernels.at[i])->tuned;
    return n;
}

/* ---- reporting ------------------------------------------------------------- */

/* One row of -v's table: the tile, how many candidates were measured
 * ("cache": none, the cache had it; 0: none, the budget ended first), the
 * default's time and the best (the cache's for a cached kernel), the kernel. */
static void report_row(FILE *out, const TuneKernel *k)
{
    const char *tile = tile_name(k->tile_r, k->tile_c, k->cols_outer);
    const char *tried = k->tuned ? arena_printf("%d", k->tried) : k->from_cache ? "cache" : "0";
    if (!(k->default_ns > 0 && k->best_ns > 0)) {
        fprintf(out, "  %-9s %5s %10s %10s %8s  %s\n", tile, tried, "-", "-", "-", k->sig);
        return;
    }
    fprintf(out, "  %-9s %5s %8.2fus %8.2fus %7.2fx  %s%s\n", tile, tried, k->default_ns / 1e3, k->best_ns / 1e3,
            k->default_ns / k->best_ns, k->sig, k->rejected ? arena_printf(" (%d rejected)", k->rejected) : "");
}

void tune_report(FILE *out, const Tuning *t, double spent, double budget)
{
    int cached = 0, measured = tune_measured(t);
    for (int i = 0; i < t->kernels.n; i++)
        cached += ((const TuneKernel *)t->kernels.at[i])->from_cache;
    if (budget <= 0) {                   /* no --tune: where the tiles came from */
        fprintf(out, "cnnc: tuning: %d GEMM kernels: %d from the cache, %d default (not tuned)\n", t->kernels.n,
                cached, t->kernels.n - cached);
        return;
    }
    fprintf(out, "cnnc: tuning: %d GEMM kernels, %.1f s of a %.0f s budget: %d measured, %d from the cache, "
            "%d not reached\n", t->kernels.n, spent, budget, measured, cached, t->kernels.n - measured - cached);
    fprintf(out, "  %-9s %5s %10s %10s %8s  %s\n", "tile", "tried", "default", "best", "speedup", "kernel");
    for (int i = 0; i < t->kernels.n; i++)
        report_row(out, t->kernels.at[i]);
}

void tune_summary(FILE *out, const Tuning *t)
{
    fprintf(out, "\nGEMM kernels (tile: rows x vectors for gemm, rows x columns for gemm_nt; /cols: columns outer):\n");
    for (int i = 0; i < t->kernels.n; i++) {
        const TuneKernel *k = t->kernels.at[i];
        const char *how = k->tuned ? "tuned" : k->from_cache ? "tuned (cache)" : "default";
        fprintf(out, "  %-9s %-14s %s\n", tile_name(k->tile_r, k->tile_c, k->cols_outer), how, k->sig);
    }
}

/* ---- the cache: a small JSON reader ---------------------------------------- */

/* Just what the cache needs: objects, arrays, strings (with the escapes
 * JSON has), numbers, true, false, null; nesting at most 16 deep. */
typedef enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ } JKind;
typedef struct JVal {
    JKind kind;
    size_t at;                /* where it starts: its byte offset in the text */
    double num;
    const char *str;          /* J_STR */
    struct JVal **items;      /* J_ARR, J_OBJ (values) */
    const char **keys;        /* J_OBJ */
    int n;
} JVal;

typedef struct {
    const char *text, *p, *end, *err;
    int depth;
} JParse;

static JVal *jvalue(JParse *j);

static void jspace(JParse *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static JVal *jfail(JParse *j, const char *msg)
{
    if (!j->err)
        j->err = msg;
    return NULL;
}

static JVal *jnew(JParse *j, JKind kind)
{
    JVal *v = arena_alloc(sizeof *v);
    v->kind = kind, v->at = (size_t)(j->p - j->text);
    return v;
}

static const char *jstring(JParse *j)
{
    if (j->p >= j->end || *j->p != '"')
        return jfail(j, "expected a string"), NULL;
    j->p++;
    Str s = {0};
    while (j->p < j->end && *j->p != '"') {
        unsigned char ch = (unsigned char)*j->p++;
        if (ch < 0x20)
            return jfail(j, "a control character in a string"), NULL;
        if (ch != '\\') {
            str_addc(&s, (char)ch);
            continue;
        }
        if (j->p >= j->end)
            break;
        char e = *j->p++;
        const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
        const char *at = strchr(from, e);
        if (e && at) {
            str_addc(&s, to[at - from]);
        } else if (e == 'u' && j->end - j->p >= 4) {
            unsigned cp = 0;
            for (int i = 0; i < 4; i++) {
                char h = *j->p++;
                int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
                if (d < 0)
                    return jfail(j, "a bad \\u escape"), NULL;
                cp = cp * 16 + (unsigned)d;
            }
            str_addc(&s, cp < 0x80 ? (char)cp : '?');   /* the cache's strings are ASCII */
        } else {
            return jfail(j, "a bad escape in a string"), NULL;
        }
    }
    if (j->p >= j->end)
        return jfail(j, "an unterminated string"), NULL;
    j->p++;
    return str_done(&s);
}

static JVal *jnumber(JParse *j)
{
    char buf[64];
    size_t n = 0;
    const char *start = j->p;
    while (j->p < j->end && n < sizeof buf - 1 && *j->p && strchr("+-0123456789.eE", *j->p))
        buf[n++] = *j->p++;
    buf[n] = 0;
    char *end;
    errno = 0;
    double d = strtod(buf, &end);
    if (n == 0 || *end || errno || !isfinite(d))
        return jfail(j, "a bad number");
    JVal *v = jnew(j, J_NUM);
    v->num = d, v->at = (size_t)(start - j->text);
    return v;
}

static JVal *jlist(JParse *j, bool object)
{
    JVal *v = jnew(j, object ? J_OBJ : J_ARR);
    Vec items = {0}, keys = {0};
    j->p++;
    jspace(j);
    if (j->p < j->end && *j->p == (object ? '}' : ']')) {
        j->p++;
        return v;
    }
    for (;;) {
        jspace(j);
        if (object) {
            const char *k = jstring(j);
            if (!k)
                return NULL;
            jspace(j);
            if (j->p >= j->end || *j->p != ':')
                return jfail(j, "expected ':'");
            j->p++;
            vec_push(&keys, (void *)k);
        }
        JVal *x = jvalue(j);
        if (!x)
            return NULL;
        vec_push(&items, x);
        jspace(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        if (j->p < j->end && *j->p == (object ? '}' : ']')) {
            j->p++;
            break;
        }
        return jfail(j, object ? "expected ',' or '}'" : "expected ',' or ']'");
    }
    v->items = (JVal **)items.at, v->keys = (const char **)keys.at, v->n = items.n;
    return v;
}

static JVal *jvalue(JParse *j)
{
    jspace(j);
    if (j->p >= j->end)
        return jfail(j, "unexpected end of file");
    if (++j->depth > 16)
        return jfail(j, "nested too deeply");
    JVal *v = NULL;
    char c = *j->p;
    if (c == '{' || c == '[') {
        v = jlist(j, c == '{');
    } else if (c == '"') {
        size_t at = (size_t)(j->p - j->text);
        const char *s = jstring(j);
        if (s)
            v = jnew(j, J_STR), v->str = s, v->at = at;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
        v = jnumber(j);
    } else {
        static const char *const words[] = {"true", "false", "null"};
        for (int i = 0; i < 3 && !v; i++) {
            size_t n = strlen(words[i]);
            if ((size_t)(j->end - j->p) >= n && memcmp(j->p, words[i], n) == 0) {
                v = jnew(j, i == 2 ? J_NULL : J_BOOL);
                j->p += n;
                v->num = i == 0;
            }
        }
        if (!v)
            jfail(j, "unexpected character");
    }
    j->depth--;
    return v;
}

static const JVal *jget(const JVal *o, const char *key, JKind kind)
{
    if (!o || o->kind != J_OBJ)
        return NULL;
    for (int i = 0; i < o->n; i++)
        if (strcmp(o->keys[i], key) == 0)
            return o->items[i]->kind == kind ? o->items[i] : NULL;
    return NULL;
}

/* ---- the cache file -------------------------------------------------------- */

/* One entry: a kernel's tile on one machine and cnnc version. */
typedef struct {
    const char *cnnc, *cpu, *kernel;
    int tile_r, tile_c;
    bool cols_outer;
    double default_us, best_us;
} Entry;

/* "line 3, column 12" of byte `at` of text */
static const char *place(const char *text, size_t at)
{
    int line = 1, col = 1;
    for (size_t i = 0; i < at; i++)
        line += text[i] == '\n', col = text[i] == '\n' ? 1 : col + 1;
    return arena_printf("line %d, column %d", line, col);
}

/* Entry i (0-based) of the cache as an Entry, or NULL with *why. */
static Entry *parse_entry(const char *text, const JVal *e, int i, const char **why)
{
    static const char *const fields[] = {"cnnc", "cpu", "kernel", "tile"};
    if (e->kind != J_OBJ) {
        *why = arena_printf("%s: entry %d is not an object", place(text, e->at), i + 1);
        return NULL;
    }
    const JVal *str[4];
    for (int f = 0; f < 4; f++)
        if (!(str[f] = jget(e, fields[f], J_STR))) {
            *why = arena_printf("%s: entry %d has no \"%s\" string", place(text, e->at), i + 1, fields[f]);
            return NULL;
        }
    const JVal *d = jget(e, "default_us", J_NUM), *b = jget(e, "best_us", J_NUM);
    const char *kernel = str[2]->str, *tile = str[3]->str;
    int r = 0, c = 0, end = -1;
    sscanf(tile, "%2dx%2d%n", &r, &c, &end);
    const char *rest = end > 0 ? tile + end : "?";
    /* a tile some target can build: AVX-512's registers are the most */
    if ((*rest && strcmp(rest, "/cols") != 0) || !gemm_tile_fits(strncmp(kernel, "gemm_nt ", 8) == 0, r, c, true)) {
        *why = arena_printf("%s: the tile \"%s\" is not one the GEMM routines build", place(text, str[3]->at), tile);
        return NULL;
    }
    /* the times are written with %.3f: one outside [0, 1e9] us (16 minutes)
     * was not measured by cnnc, and would not be read back */
    const JVal *times[2] = {d, b};
    for (int t = 0; t < 2; t++)
        if (times[t] && !(times[t]->num >= 0 && times[t]->num <= 1e9)) {
            *why = arena_printf("%s: entry %d's %s is not a time in microseconds", place(text, times[t]->at), i + 1,
                                t ? "best_us" : "default_us");
            return NULL;
        }
    Entry *x = arena_alloc(sizeof *x);
    *x = (Entry){str[0]->str, str[1]->str, kernel, r, c, *rest != 0, d ? d->num : 0, b ? b->num : 0};
    return x;
}

/* Parses cache text into entries; on a malformed file returns false with
 * *why saying what is wrong and where ("line 3, column 12: ..."). Entries
 * that are well-formed JSON but not ours (missing fields) make the file
 * foreign: also false. */
bool tune_cache_parse(const char *text, size_t len, Vec *entries, const char **why)
{
    JParse j = {text, text, text + len, NULL, 0};
    JVal *root = jvalue(&j);
    jspace(&j);
    if (root && j.p != j.end)
        jfail(&j, "text after the end of the JSON value");
    if (!root || j.err) {
        *why = arena_printf("%s: not JSON: %s", place(text, (size_t)(j.p - text)), j.err ? j.err : "?");
        return false;
    }
    const JVal *format = jget(root, "format", J_STR), *list = jget(root, "entries", J_ARR);
    if (!format || strcmp(format->str, "cnnc-tune-cache-1") != 0 || !list) {
        *why = arena_printf("%s: not a cnnc tuning cache (no \"format\": \"cnnc-tune-cache-1\" with \"entries\")",
                            place(text, format ? format->at : root->at));
        return false;
    }
    for (int i = 0; i < list->n; i++) {
        Entry *x = parse_entry(text, list->items[i], i, why);
        if (!x)
            return false;
        vec_push(entries, x);
    }
    return true;
}

const char *tune_default_cache(void)
{
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && *xdg == '/')
        return arena_printf("%s/cnnc/tune.json", xdg);
    if (home && *home)
        return arena_printf("%s/.cache/cnnc/tune.json", home);
    return NULL;
}

/* Reads the cache at path into *entries. A missing file is an empty cache;
 * an unreadable, damaged or foreign one is ignored, with a warning unless
 * `quiet` (the second reading of one compile). */
static void cache_read(const char *path, Vec *entries, bool quiet)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno != ENOENT && !quiet)
            warning("ignoring the tuning cache '%s': %s", path, strerror(errno));
        return;
    }
    Str s = {0};
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0 && s.len < (64 << 20))
        str_addn(&s, buf, n);
    bool bad = ferror(f) || s.len >= (64 << 20);
    fclose(f);
    const char *why = bad ? "cannot read it, or it is over 64 MiB" : NULL;
    Vec got = {0};
    if (bad || !tune_cache_parse(s.buf ? s.buf : "", s.len, &got, &why)) {
        if (!quiet)
            warning("ignoring the tuning cache '%s': %s", path, why);
        return;
    }
    *entries = got;
}

static void json_string(Str *s, const char *t)
{
    str_addc(s, '"');
    for (; *t; t++) {
        if (*t == '"' || *t == '\\')
            str_addc(s, '\\');
        if ((unsigned char)*t < 0x20)
            str_add(s, "\\u%04x", (unsigned char)*t);
        else
            str_addc(s, *t);
    }
    str_addc(s, '"');
}

/* mkdir -p of path's folder */
static void make_dirs(const char *path)
{
    char *dir = arena_printf("%s", path);
    for (char *p = dir + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(dir, 0777);
            *p = '/';
        }
}

/* Writes entries to path atomically: a temporary file beside it, flushed,
 * then renamed over it. Returns false (having said why) on failure. */
static bool cache_write(const char *path, const Vec *entries)
{
    Str s = {0};
    str_add(&s, "{\n  \"format\": \"cnnc-tune-cache-1\",\n  \"entries\": [");
    for (int i = 0; i < entries->n; i++) {
        const Entry *e = entries->at[i];
        str_add(&s, "%s\n    {\"cnnc\": ", i ? "," : "");
        json_string(&s, e->cnnc);
        str_add(&s, ", \"cpu\": ");
        json_string(&s, e->cpu);
        str_add(&s, ", \"kernel\": ");
        json_string(&s, e->kernel);
        str_add(&s, ", \"tile\": \"%s\", \"default_us\": %.3f, \"best_us\": %.3f}",
                tile_name(e->tile_r, e->tile_c, e->cols_outer), e->default_us, e->best_us);
    }
    str_add(&s, "\n  ]\n}\n");
    make_dirs(path);
    const char *tmp = arena_printf("%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    bool ok = f && fwrite(s.buf, 1, s.len, f) == s.len;
    ok = f && fflush(f) == 0 && fsync(fileno(f)) == 0 && ok;
    if (f && fclose(f) != 0)
        ok = false;
    if (ok && rename(tmp, path) == 0)
        return true;
    warning("cannot write the tuning cache '%s': %s", path, strerror(errno));
    remove(tmp);
    return false;
}

/* Takes the cached tiles of this machine and version for the kernels (the
 * last entry where the file has two for one kernel). */
void tune_use_cache(Tuning *t, const char *path)
{
    Vec entries = {0};
    cache_read(path, &entries, false);
    const char *cpu = host_cpu_id();
    int ours = 0;
    for (int i = 0; i < entries.n; i++) {
        const Entry *e = entries.at[i];
        if (strcmp(e->cnnc, CNNC_VERSION) != 0 || strcmp(e->cpu, cpu) != 0)
            continue;
        ours++;
        for (int j = 0; j < t->kernels.n; j++) {
            TuneKernel *k = t->kernels.at[j];
            if (strcmp(k->sig, e->kernel) == 0 && gemm_tile_ok(k->g->bt, e->tile_r, e->tile_c)) {
                k->tile_r = e->tile_r, k->tile_c = e->tile_c, k->cols_outer = e->cols_outer, k->from_cache = true;
                k->default_ns = e->default_us * 1e3, k->best_ns = e->best_us * 1e3;
            }
        }
    }
    if (entries.n && !ours)
        warning("ignoring the tuning cache '%s': it has no entries for this CPU (%s) and cnnc %s", path, cpu,
                CNNC_VERSION);
}

/* Adds the tuned kernels to the cache at path (replacing their old
 * entries for this machine and version; keeping all others). */
bool tune_save_cache(const Tuning *t, const char *path)
{
    Vec old = {0}, keep = {0};
    cache_read(path, &old, true);      /* again: another compile may have added entries */
    const char *cpu = host_cpu_id();
    for (int i = 0; i < old.n; i++) {
        const Entry *e = old.at[i];
        bool replaced = false;
        for (int j = 0; j < t->kernels.n && !replaced; j++) {
            const TuneKernel *k = t->kernels.at[j];
            replaced = k->tuned && strcmp(e->kernel, k->sig) == 0 && strcmp(e->cpu, cpu) == 0 &&
                       strcmp(e->cnnc, CNNC_VERSION) == 0;
        }
        if (!replaced)
            vec_push(&keep, (void *)e);
    }
    for (int j = 0; j < t->kernels.n; j++) {
        const TuneKernel *k = t->kernels.at[j];
        if (!k->tuned)
            continue;
        Entry *e = arena_alloc(sizeof *e);
        *e = (Entry){CNNC_VERSION, cpu, k->sig, k->tile_r, k->tile_c, k->cols_outer, k->default_ns / 1e3,
                     k->best_ns / 1e3};
        vec_push(&keep, e);
    }
    return cache_write(path, &keep);
}
