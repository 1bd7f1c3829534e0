/* parallel.c: which loop nests may run in parts across threads.
 *
 * A kernel called on a batch the runtime cannot split (one example, or a
 * batchnorm network's training batch) leaves threads idle. llvm.c then
 * gives each thread a contiguous part of a nest's outer loop (runtime
 * rt_parallel), where the parts cannot interfere:
 *
 *   for v in [lo, hi):  body
 *
 * Legality, checked on the loop IR:
 *   - every buffer the body writes is accessed (stored, accumulated or
 *     loaded) only at affine indices c v + r(inner variables) + k with one
 *     stride c > 0 for the buffer, and the offsets r + k of all its accesses
 *     span less than c: iteration v stays inside [c v + min, c v + min + c),
 *     which no other iteration touches. Inner loops need constant bounds,
 *     or bounds [e, e + t) with t constant and e in the variables of loops
 *     around the nest (e is then part of the terms in those);
 *     Or, with T iterations (constant bounds), the offsets are a small part
 *     spanning less than c plus a large part, the terms and constants of at
 *     least c T, all multiples of some G >= c T: iteration v then touches a
 *     row [c v + min, c v + min + c) in each block of G, and the rows of
 *     the T iterations share no block (a Winograd input transform writes
 *     its 36 planes so, one row per channel in each);
 *   - every scalar the body sets is set before it is read in each iteration
 *     (its first mention, in program order, is a plain assignment that does
 *     not read it, reached through loops that run at least once): nothing
 *     flows from one iteration to the next. Scalars of the kernel that the
 *     nest sets (a loss being summed) are refused by llvm.c (they are the
 *     unit's references);
 *   - or the lowering marked the loop (LStmt.parallel) because it knows more
 *     than the indices show: a batchnorm's channels, each over the whole batch.
 * Writes to the private scratch (BASE_PRIV) need nothing: each thread that
 * runs a part has its own, and the lowering puts there only a plane that
 * each iteration writes whole before it reads it (a padded channel).
 * Buffers only read need nothing. Each element is computed by the same code
 * in the same order whatever the split, so results do not depend on it.
 */
#include "cnnc.h"

#include <stdlib.h>

/* ---- affine indices ----------------------------------------------------------- */

enum { MAX_TERMS = 16 };

/* k + sum coef[i] var[i] */
typedef struct {
    int n;
    int var[MAX_TERMS];
    int64_t coef[MAX_TERMS], k;
} Affine;

static bool add_term(Affine *a, int var, int64_t coef)
{
    for (int i = 0; i < a->n; i++)
        if (a->var[i] == var) {
            a->coef[i] += coef;
            return true;
        }
    if (a->n == MAX_TERMS)
        return false;
    a->var[a->n] = var, a->coef[a->n++] = coef;
    return true;
}

/* *a += scale e; false if e is not affine in the loop variables */
static bool affine(const Expr *e, int64_t scale, Affine *a)
{
    switch (e->kind) {
    case X_INT:
        a->k += scale * e->ival;
        return true;
    case X_VAR:                                  /* var 0 is n: not a loop variable */
        return e->var != 0 && add_term(a, e->var, scale);
    case X_IADD:
        return affine(e->a, scale, a) && affine(e->b, scale, a);
    case X_IMUL:
        if (e->a->kind == X_INT)
            return affine(e->b, scale * e->a->ival, a);
        if (e->b->kind == X_INT)
            return affine(e->a, scale * e->b->ival, a);
        return false;
    default:
        return false;
    }
}

/* ---- the loops inside the nest ------------------------------------------------ */

typedef struct {
    int top;               /* the outer loop's variable */
    int nvars;
    bool *inner;           /* per variable: a loop of the nest's own */
    int64_t *lo, *hi;      /* per inner loop variable: its constant bounds */
    bool *bounded;
    Affine *shift;         /* per inner loop variable: for v in [e, e + t), e the
                              shift (in variables around the nest), lo 0, hi t */
    int64_t trip;          /* the outer loop's iterations, 0 unless constant */
    bool ok;
    /* per written buffer: its stride, the extent of its accesses' offsets,
     * and the terms in variables of loops around the nest (fixed during it);
     * the extent of the small parts of the offsets and the gcd of the large
     * parts (see above; 0: none) */
    Vec bufs;              /* const Buf * */
    int64_t *stride, *min, *max;
    int64_t *small_min, *small_max, *block;
    Affine *outer;
} Check;

static int64_t gcd(int64_t a, int64_t b)
{
    a = a < 0 ? -a : a, b = b < 0 ? -b : b;
    while (b) {
        int64_t t = a % b;
        a = b, b = t;
    }
    return a;
}

static int buf_slot(Check *c, const Buf *b)
{
    for (int i = 0; i < c->bufs.n; i++)
        if (c->bufs.at[i] == b)
            return i;
    return -1;
}

/* The buffers the nest writes, each with a slot; not the private scratch
 * (see above). */
static void collect_writes(Check *c, const LStmt *s)
{
    if (s->kind == L_STORE && s->buf->base != BASE_PRIV && buf_slot(c, s->buf) < 0)
        vec_push(&c->bufs, (void *)s->buf);
    if (s->kind == L_GEMM || s->kind == L_POOL)
        c->ok = false;
    for (int i = 0; i < s->body.n; i++)
        collect_writes(c, s->body.at[i]);
}

static bool is_inner(const Check *c, int var) { return var < c->nvars && c->inner[var]; }

/* The same terms in the same variables (order aside). */
static bool same_terms(const Affine *a, const Affine *b)
{
    if (a->n != b->n)
        return false;
    for (int i = 0; i < a->n; i++) {
        int j = 0;
        while (j < b->n && b->var[j] != a->var[i])
            j++;
        if (j == b->n || b->coef[j] != a->coef[i])
            return false;
    }
    return true;
}

/* An access of written buffer slot b at index e: affine, one stride for
 * the outer variable, the same terms in the variables around the nest as
 * the buffer's other accesses, and the offset's range folded into the
 * buffer's. */
static void access(Check *c, int b, const Expr *e)
{
    Affine a = {0}, outer = {0}, raw = {0};
    if (!affine(e, 1, &raw)) {
        c->ok = false;
        return;
    }
    /* an inner variable over [e, e + t): its shift e put in the terms */
    a.k = raw.k;
    for (int i = 0; i < raw.n; i++) {
        const Affine *sh = is_inner(c, raw.var[i]) ? &c->shift[raw.var[i]] : NULL;
        bool fits = add_term(&a, raw.var[i], raw.coef[i]);
        for (int j = 0; sh && j < sh->n; j++)
            fits = fits && add_term(&a, sh->var[j], raw.coef[i] * sh->coef[j]);
        a.k += sh ? raw.coef[i] * sh->k : 0;
        if (!fits) {
            c->ok = false;
            return;
        }
    }
    int64_t stride = 0;
    for (int i = 0; i < a.n; i++)
        if (a.var[i] == c->top)
            stride = a.coef[i];
    if (stride <= 0 || (c->stride[b] && c->stride[b] != stride)) {
        c->ok = false;
        return;
    }
    /* large: a term or constant of at least stride * trip (none without a trip) */
    int64_t large = c->trip ? stride * c->trip : INT64_MAX, lo = a.k, hi = a.k, slo = 0, shi = 0;
    if (a.k >= large || -a.k >= large)
        c->block[b] = gcd(c->block[b], a.k);
    else
        slo = shi = a.k;
    for (int i = 0; i < a.n; i++) {
        int64_t k = a.coef[i];
        if (a.var[i] == c->top || k == 0)
            continue;
        if (!is_inner(c, a.var[i])) {
            add_term(&outer, a.var[i], k);
            continue;
        }
        if (!c->bounded[a.var[i]]) {
            c->ok = false;
            return;
        }
        int64_t first = k * c->lo[a.var[i]], last = k * (c->hi[a.var[i]] - 1);
        lo += first < last ? first : last, hi += first < last ? last : first;
        if (k >= large || -k >= large)
            c->block[b] = gcd(c->block[b], k);
        else
            slo += first < last ? first : last, shi += first < last ? last : first;
    }
    if (c->stride[b] && !same_terms(&c->outer[b], &outer)) {
        c->ok = false;
        return;
    }
    c->stride[b] = stride, c->outer[b] = outer;
    if (c->min[b] > lo)
        c->min[b] = lo;
    if (c->max[b] < hi)
        c->max[b] = hi;
    if (c->small_min[b] > slo)
        c->small_min[b] = slo;
    if (c->small_max[b] < shi)
        c->small_max[b] = shi;
}

/* Iterations touch disjoint parts of written buffer slot b (see above). */
static bool disjoint(const Check *c, int b)
{
    if (c->max[b] - c->min[b] < c->stride[b])
        return true;
    return c->trip && c->block[b] >= c->stride[b] * c->trip && c->small_max[b] - c->small_min[b] < c->stride[b];
}

static void expr_accesses(Check *c, const Expr *e)
{
    if (!e)
        return;
    if (e->kind == X_LOAD) {
        int b = buf_slot(c, e->buf);
        if (b >= 0)
            access(c, b, e->a);
    }
    expr_accesses(c, e->a), expr_accesses(c, e->b), expr_accesses(c, e->c);
}

/* Loop s over [e, e + t), e affine in variables around the nest (not the
 * nest's own), t a constant: bounded, as [0, t) shifted by e. (An im2col
 * nest for a chunk of rows: for i in [7 r, 7 r + 7), r the chunk's.) */
static void shifted_bounds(Check *c, const LStmt *s)
{
    Affine lo = {0}, hi = {0}, d = {0};
    if (!affine(s->lo, 1, &lo) || !affine(s->hi, 1, &hi) || !affine(s->hi, 1, &d) || !affine(s->lo, -1, &d))
        return;
    for (int i = 0; i < d.n; i++)
        if (d.coef[i])
            return;                     /* t depends on a variable */
    for (int i = 0; i < lo.n; i++)
        if (lo.coef[i] && (lo.var[i] == c->top || is_inner(c, lo.var[i])))
            return;
    if (d.k <= 0)
        return;
    c->bounded[s->var] = true;
    c->lo[s->var] = 0, c->hi[s->var] = d.k;
    c->shift[s->var] = lo;
}

static void stmt_accesses(Check *c, const LStmt *s)
{
    if (s->kind == L_FOR && s->var < c->nvars) {
        bool constant = s->lo->kind == X_INT && s->hi->kind == X_INT;
        c->bounded[s->var] = constant;
        c->lo[s->var] = constant ? s->lo->ival : 0, c->hi[s->var] = constant ? s->hi->ival : 0;
        c->shift[s->var] = (Affine){0};
        if (!constant)
            shifted_bounds(c, s);
    }
    expr_accesses(c, s->lo), expr_accesses(c, s->hi), expr_accesses(c, s->idx);
    expr_accesses(c, s->val), expr_accesses(c, s->cond);
    if (s->kind == L_STORE && s->buf->base != BASE_PRIV)
        access(c, buf_slot(c, s->buf), s->idx);
    for (int i = 0; i < s->body.n && c->ok; i++)
        stmt_accesses(c, s->body.at[i]);
}

/* ---- scalars ---------------------------------------------------------------- */

static bool expr_reads_var(const Expr *e, int var)
{
    return e && ((e->kind == X_GET && e->var == var) || expr_reads_var(e->a, var) ||
                 expr_reads_var(e->b, var) || expr_reads_var(e->c, var));
}

/* The first mention of scalar `var` in s, in program order: 1 a plain
 * assignment that does not read it and is sure to run, -1 anything else,
 * 0 none. `sure`: every loop around s runs at least once, and no if. */
static int first_mention(const LStmt *s, int var, bool sure)
{
    const Expr *parts[4] = {s->lo, s->hi, s->idx, s->cond};
    for (int i = 0; i < 4; i++)
        if (expr_reads_var(parts[i], var))
            return -1;
    if (s->kind == L_SET && s->var == var)
        return sure && !expr_reads_var(s->val, var) ? 1 : -1;
    if (expr_reads_var(s->val, var))
        return -1;
    if (s->kind == L_FOR)
        sure = sure && s->lo->kind == X_INT && s->hi->kind == X_INT && s->hi->ival > s->lo->ival;
    else if (s->kind == L_IF)
        sure = false;
    for (int i = 0; i < s->body.n; i++) {
        int m = first_mention(s->body.at[i], var, sure);
        if (m)
            return m;
    }
    return 0;
}

/* Every scalar set in the body is set afresh in each iteration. */
static bool scalars_fresh(const LStmt *top, const LStmt *s)
{
    if (s->kind == L_SET) {
        int m = 0;
        for (int i = 0; i < top->body.n && !m; i++)
            m = first_mention(top->body.at[i], s->var, true);
        if (m != 1)
            return false;
    }
    for (int i = 0; i < s->body.n; i++)
        if (!scalars_fresh(top, s->body.at[i]))
            return false;
    return true;
}

static int max_var(const LStmt *s)
{
    int m = s->var;
    for (int i = 0; i < s->body.n; i++) {
        int v = max_var(s->body.at[i]);
        if (v > m)
            m = v;
    }
    return m;
}

static void mark_loops(Check *c, const LStmt *s)
{
    if (s->kind == L_FOR && s->var != c->top)
        c->inner[s->var] = true;
    for (int i = 0; i < s->body.n; i++)
        mark_loops(c, s->body.at[i]);
}

bool parallel_nest(const LStmt *s)
{
    if (s->kind != L_FOR)
        return false;
    if (s->parallel)
        return true;
    Check c = {.top = s->var, .nvars = max_var(s) + 1, .ok = true};
    if (s->lo->kind == X_INT && s->hi->kind == X_INT && s->hi->ival > s->lo->ival)
        c.trip = s->hi->ival - s->lo->ival;
    collect_writes(&c, s);
    if (!c.ok || !c.bufs.n)
        return false;
    c.lo = calloc((size_t)c.nvars, sizeof(int64_t)), c.hi = calloc((size_t)c.nvars, sizeof(int64_t));
    c.bounded = calloc((size_t)c.nvars, sizeof(bool)), c.inner = calloc((size_t)c.nvars, sizeof(bool));
    c.shift = calloc((size_t)c.nvars, sizeof(Affine));
    mark_loops(&c, s);
    c.stride = calloc((size_t)c.bufs.n, sizeof(int64_t)), c.outer = calloc((size_t)c.bufs.n, sizeof(Affine));
    size_t nb = (size_t)c.bufs.n;
    c.min = malloc(sizeof(int64_t) * nb), c.max = malloc(sizeof(int64_t) * nb);
    c.small_min = malloc(sizeof(int64_t) * nb), c.small_max = malloc(sizeof(int64_t) * nb);
    c.block = calloc(nb, sizeof(int64_t));
    for (int i = 0; i < c.bufs.n; i++)
        c.min[i] = c.small_min[i] = INT64_MAX, c.max[i] = c.small_max[i] = INT64_MIN;
    for (int i = 0; i < s->body.n && c.ok; i++)
        stmt_accesses(&c, s->body.at[i]);
    for (int i = 0; i < c.bufs.n && c.ok; i++)
        c.ok = disjoint(&c, i);
    bool ok = c.ok && scalars_fresh(s, s);
    free(c.lo), free(c.hi), free(c.bounded), free(c.inner), free(c.stride), free(c.min), free(c.max), free(c.outer);
    free(c.small_min), free(c.small_max), free(c.block), free(c.shift);
    return ok;
}

/* ---- the work of a nest ------------------------------------------------------- */

/* The statements a nest executes, counting n as 1 (*per_n when a loop runs
 * over n); loops with other bounds count 16 iterations. */
static double stmts_work(const Vec *body, bool *per_n)
{
    double w = 0;
    for (int i = 0; i < body->n; i++) {
        const LStmt *s = body->at[i];
        if (s->kind != L_FOR) {
            w += s->body.n ? stmts_work(&s->body, per_n) : 1;
            continue;
        }
        double trip = 16;
        if (s->lo->kind == X_INT && s->hi->kind == X_INT)
            trip = (double)(s->hi->ival - s->lo->ival);
        else if (s->lo->kind == X_INT && s->hi->kind == X_VAR && s->hi->var == 0)
            trip = 1, *per_n = true;
        w += trip * (s->body.n ? stmts_work(&s->body, per_n) : 1);
    }
    return w;
}

double parallel_work(const LStmt *s, bool *per_n)
{
    Vec one = {0};
    vec_push(&one, (void *)s);
    *per_n = false;
    return stmts_work(&one, per_n);
}

/* ---- loops of GEMMs ------------------------------------------------------------ */

bool mentions_var(const Expr *e, int var)
{
    return e && ((e->kind == X_VAR && e->var == var) || mentions_var(e->a, var) || mentions_var(e->b, var) ||
                 mentions_var(e->c, var));
}

/* The coefficient of var in the affine index e (0: e does not depend on it,
 * or is not affine, which *ok says). */
static int64_t coef_of(const Expr *e, int var, bool *ok)
{
    Affine a = {0};
    if (!e || !affine(e, 1, &a)) {
        *ok = *ok && e && !mentions_var(e, var);
        return 0;
    }
    for (int i = 0; i < a.n; i++)
        if (a.var[i] == var)
            return a.coef[i];
    return 0;
}

bool parallel_gemms(const LStmt *s)
{
    if (s->kind != L_FOR || s->body.n != 1 || ((const LStmt *)s->body.at[0])->kind != L_GEMM)
        return false;
    const Gemm *g = ((const LStmt *)s->body.at[0])->gemm;
    int v = s->var;
    if (mentions_var(g->M, v) || mentions_var(g->K, v) || g->M->kind != X_INT)
        return false;
    if (g->c == g->a || g->c == g->b || (g->bias && g->c == g->bias))
        return false;
    bool ok = true;
    int64_t step = coef_of(g->c_at, v, &ok);
    coef_of(g->a_at, v, &ok), coef_of(g->b_at, v, &ok);
    if (g->bias)
        coef_of(g->bias_at, v, &ok);
    int64_t extent = (g->M->ival - 1) * g->ldc + g->N;     /* the cells of C one GEMM touches */
    return ok && (step >= extent || -step >= extent);
}
