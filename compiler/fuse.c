/* fuse.c: loop fusion on the loop IR (off with --no-fuse).
 *
 * Lowering gives every operator its own nest, most of them looping over the
 * examples outermost: `for b in [0, n)`. Run one after another, each nest
 * streams the whole batch through the caches. This pass merges adjacent
 * example loops into one, so that an example's values go from operator to
 * operator while they are still in L1: conv -> relu -> maxpool -> conv ...
 * forward, and maxpool_dx -> relu mask -> conv_dx -> conv_dw ... backward.
 *
 * Legality. Iteration b of an example loop touches example b of the batched
 * buffers and nothing of any other example; shared (unbatched) buffers are
 * either scratch, written before being read within the iteration of the
 * operator that owns them, or real shared state (a gradient summed over the
 * batch, batch statistics). Two example loops F and S may be merged unless
 * they share a non-scratch, unbatched buffer that one of them writes: then
 * S would see a partial sum, or F a value S has already changed.
 * Statements between F and S (zeroing a gradient, a GEMM over the batch)
 * move before F when they touch nothing F writes and write nothing F
 * reads; or else stay after F (now F and S) when they touch nothing S
 * writes and write nothing S reads: a convolution's weight gradient over
 * groups of examples (loops.c), which reads F's values of the whole batch.
 * Scalar variables belong to the nest that sets them.
 */
#include "cnnc.h"

/* The buffers a statement reads and writes. */
typedef struct {
    Vec reads, writes;     /* const Buf * */
} Access;

static void expr_reads(const Expr *e, Access *a)
{
    if (!e)
        return;
    if (e->kind == X_LOAD)
        vec_push(&a->reads, (void *)e->buf);
    expr_reads(e->a, a), expr_reads(e->b, a), expr_reads(e->c, a);
}

static void stmt_access(const LStmt *s, Access *a)
{
    expr_reads(s->lo, a), expr_reads(s->hi, a), expr_reads(s->idx, a);
    expr_reads(s->val, a), expr_reads(s->cond, a);
    if (s->kind == L_STORE) {
        vec_push(&a->writes, (void *)s->buf);
        if (s->accumulate)
            vec_push(&a->reads, (void *)s->buf);
    }
    if (s->kind == L_GEMM)
        expr_reads(s->gemm->M, a), expr_reads(s->gemm->K, a);
    Operand op[MAX_OPERANDS];
    for (int i = 0, n = stmt_operands((LStmt *)s, op); i < n; i++) {
        if (op[i].read)
            vec_push(&a->reads, (void *)op[i].buf);
        if (op[i].write)
            vec_push(&a->writes, (void *)op[i].buf);
    }
    for (int i = 0; i < s->body.n; i++)
        stmt_access(s->body.at[i], a);
}

/* Whether two buffers may share memory: the same base, overlapping extents
 * (per-example buffers of the workspace are a region of their own). */
static bool overlap(const Buf *x, const Buf *y)
{
    if (x->base != y->base || (x->base == BASE_WS && x->batched != y->batched))
        return false;
    if (x->base != BASE_WS && x->base != BASE_PARAMS && x->base != BASE_GRAD)
        return true;                     /* x, out, labels: one region each */
    return x->offset < y->offset + y->size && y->offset < x->offset + x->size;
}

/* Whether some buffer of `xs` overlaps one of `ys`, ignoring per-example
 * buffers and scratch when `per_example` (iterations of example loops). */
static bool any_overlap(const Vec *xs, const Vec *ys, bool per_example)
{
    for (int i = 0; i < xs->n; i++) {
        const Buf *x = xs->at[i];
        if (per_example && (x->batched || x->scratch))
            continue;
        for (int j = 0; j < ys->n; j++)
            if (overlap(x, ys->at[j]))
                return true;
    }
    return false;
}

static bool conflict(const Access *f, const Access *s, bool per_example)
{
    return any_overlap(&f->writes, &s->reads, per_example) || any_overlap(&f->writes, &s->writes, per_example) ||
           any_overlap(&f->reads, &s->writes, per_example);
}

/* A loop over the examples: `for v in [0, n)`. */
bool example_loop(const LStmt *s)
{
    return s->kind == L_FOR && s->lo->kind == X_INT && s->lo->ival == 0 && s->hi->kind == X_VAR && s->hi->var == 0;
}

/* Renames loop variable `from` to `to` in an expression tree. */
static void rename_expr(Expr *e, int from, int to)
{
    if (!e)
        return;
    if (e->kind == X_VAR && e->var == from)
        e->var = to;
    rename_expr(e->a, from, to), rename_expr(e->b, from, to), rename_expr(e->c, from, to);
}

static void rename_stmt(LStmt *s, int from, int to)
{
    rename_expr(s->lo, from, to), rename_expr(s->hi, from, to), rename_expr(s->idx, from, to);
    rename_expr(s->val, from, to), rename_expr(s->cond, from, to);
    if (s->kind == L_GEMM)
        rename_expr(s->gemm->M, from, to), rename_expr(s->gemm->K, from, to);
    Operand op[MAX_OPERANDS];
    for (int i = 0, n = stmt_operands(s, op); i < n; i++)
        rename_expr(*op[i].at, from, to);
    for (int i = 0; i < s->body.n; i++)
        rename_stmt(s->body.at[i], from, to);
}

/* Appends S's body to F's: one iteration does both. S's comment goes with
 * its first statement, so dumps still say where each operator starts. */
static void merge(LStmt *f, LStmt *s)
{
    for (int i = 0; i < s->body.n; i++) {
        LStmt *t = s->body.at[i];
        rename_stmt(t, s->var, f->var);
        if (i == 0 && s->comment && !t->comment)
            t->comment = s->comment;
        vec_push(&f->body, t);
    }
}

static Access access_of(const LStmt *s)
{
    Access a = {{0}, {0}};
    stmt_access(s, &a);
    return a;
}

/* Whether the statements between F (out[f]) and S can make way for S's
 * merging into F: each either moves ahead of F (it touches nothing F
 * writes and writes nothing F reads) or stays behind, after both (it
 * touches nothing S writes and writes nothing S reads: a sum over the
 * batch that reads F's values, such as a convolution's weight gradient
 * over groups of examples). One that moves ahead may not pass one that
 * stays and conflicts with it. ahead[j]: the choice for out[j]. */
static bool make_way(const Vec *acc, int f, const Access *s, bool *ahead)
{
    for (int j = f + 1; j < acc->n; j++) {
        ahead[j] = !conflict(acc->at[f], acc->at[j], false);
        if (!ahead[j] && conflict(acc->at[j], s, false))
            return false;
        for (int i = f + 1; ahead[j] && i < j; i++)
            if (!ahead[i] && conflict(acc->at[i], acc->at[j], false))
                return false;
    }
    return true;
}

/* out[f + 1 ..]: those ahead, then F, then those behind; returns F's index. */
static int reorder(Vec *out, Vec *acc, int f, const bool *ahead)
{
    int n = out->n, k = f;
    void **so = arena_alloc(sizeof(void *) * (size_t)n), **sa = arena_alloc(sizeof(void *) * (size_t)n);
    for (int j = f; j < n; j++)
        so[j] = out->at[j], sa[j] = acc->at[j];
    for (int j = f + 1; j < n; j++)
        if (ahead[j])
            out->at[k] = so[j], acc->at[k++] = sa[j];
    int at = k;
    out->at[k] = so[f], acc->at[k++] = sa[f];
    for (int j = f + 1; j < n; j++)
        if (!ahead[j])
            out->at[k] = so[j], acc->at[k++] = sa[j];
    return at;
}

/* Fuses the example loops of one kernel's top level. */
static void fuse_kernel(Kernel *k)
{
    Vec out = {0};
    Vec acc = {0};            /* Access * per statement of out */
    int f = -1;               /* index in out of the last example loop */
    bool *ahead = arena_alloc(sizeof(bool) * (size_t)(k->body.n + 1));
    for (int i = 0; i < k->body.n; i++) {
        LStmt *s = k->body.at[i];
        Access *a = arena_alloc(sizeof *a);
        *a = access_of(s);
        bool ok = f >= 0 && example_loop(s) && !conflict(acc.at[f], a, true) && make_way(&acc, f, a, ahead);
        if (!ok) {
            vec_push(&out, s), vec_push(&acc, a);
            if (example_loop(s))
                f = out.n - 1;
            continue;
        }
        f = reorder(&out, &acc, f, ahead);
        LStmt *fs = out.at[f];
        Access *fa = acc.at[f];
        merge(fs, s);
        for (int j = 0; j < a->reads.n; j++)
            vec_push(&fa->reads, a->reads.at[j]);
        for (int j = 0; j < a->writes.n; j++)
            vec_push(&fa->writes, a->writes.at[j]);
    }
    k->body = out;
}

void fuse_loops(Lowered *l)
{
    fuse_kernel(l->forward);
    if (l->train)
        fuse_kernel(l->train);
}
