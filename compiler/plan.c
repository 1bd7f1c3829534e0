/* plan.c: memory planning of the workspace, after fusion.
 *
 * Lowering gives every value a buffer of its own, one row per example
 * (batched). After fusion many values are born and die inside one
 * iteration of one loop over the examples: a forward activation that only
 * the next operator of the same loop reads (inference), a gradient passed
 * from maxpool_dx to the relu mask to conv_dx (training). Such a value
 * needs one example's room, not n, and only while it is live. So:
 *
 *   1. a batched workspace buffer all of whose uses are inside one top-level
 *      loop over the examples becomes a per-iteration buffer: its index
 *      loses the `b * size` term, and it moves to the shared part of the
 *      workspace (each thread has its own);
 *   2. per-iteration buffers share memory by liveness: intervals over the
 *      statements of the kernel, first fit into the slots already made;
 *   3. the batched buffers left are packed again, without the holes.
 *
 * The result is what --summary prints as planned bytes.
 */
#include "cnnc.h"

#include <stdlib.h>

/* One use of a buffer: the slot holding its index expression. */
typedef struct {
    Buf *buf;
    Expr **idx;
    int top;              /* the top-level statement */
    int inner;            /* the statement of that loop's body (-1: not in one) */
} Use;

typedef struct {
    Vec uses;             /* Use* */
} Uses;

static void add_use(Uses *u, const Buf *b, Expr **idx, int top, int inner)
{
    Use *x = arena_alloc(sizeof *x);
    *x = (Use){(Buf *)b, idx, top, inner};
    vec_push(&u->uses, x);
}

static void expr_uses(Uses *u, Expr *e, int top, int inner)
{
    if (!e)
        return;
    if (e->kind == X_LOAD)
        add_use(u, e->buf, &e->a, top, inner);
    expr_uses(u, e->a, top, inner), expr_uses(u, e->b, top, inner), expr_uses(u, e->c, top, inner);
}

static void stmt_uses(Uses *u, LStmt *s, int top, int inner)
{
    expr_uses(u, s->lo, top, inner), expr_uses(u, s->hi, top, inner), expr_uses(u, s->idx, top, inner);
    expr_uses(u, s->val, top, inner), expr_uses(u, s->cond, top, inner);
    if (s->kind == L_STORE)
        add_use(u, s->buf, &s->idx, top, inner);
    if (s->kind == L_GEMM)
        expr_uses(u, s->gemm->M, top, inner), expr_uses(u, s->gemm->K, top, inner);
    Operand op[MAX_OPERANDS];
    for (int i = 0, n = stmt_operands(s, op); i < n; i++)
        add_use(u, op[i].buf, op[i].at, top, inner);
    for (int i = 0; i < s->body.n; i++)
        stmt_uses(u, s->body.at[i], top, inner);
}

static Uses collect(Kernel *k)
{
    Uses u = {{0}};
    for (int t = 0; t < k->body.n; t++) {
        LStmt *s = k->body.at[t];
        if (!example_loop(s)) {
            stmt_uses(&u, s, t, -1);
            continue;
        }
        for (int i = 0; i < s->body.n; i++)
            stmt_uses(&u, s->body.at[i], t, i);
    }
    return u;
}

static bool is_term(const Expr *e, int v, int64_t size)
{
    return e->kind == X_IMUL && ((e->a->kind == X_VAR && e->a->var == v && e->b->kind == X_INT && e->b->ival == size) ||
                                 (e->b->kind == X_VAR && e->b->var == v && e->a->kind == X_INT && e->a->ival == size));
}

/* idx without its `v * size` term (as at() in loops.c builds it), or NULL. */
static Expr *strip(Expr *idx, int v, int64_t size)
{
    static Expr zero = {.kind = X_INT};
    if (is_term(idx, v, size))
        return &zero;
    if (idx->kind == X_IADD && is_term(idx->a, v, size))
        return idx->b;
    if (idx->kind == X_IADD && is_term(idx->b, v, size))
        return idx->a;
    return NULL;
}

static int64_t padded(int64_t n) { return (n + 15) & ~(int64_t)15; }

/* A candidate: a buffer living inside one example loop, and its interval. */
typedef struct {
    Buf *buf;
    int top, first, last;
    bool ok;
} Cand;

static int find(Cand *c, int n, const Buf *b)
{
    for (int i = 0; i < n; i++)
        if (c[i].buf == b)
            return i;
    return -1;
}

/* Steps 1 and 2: returns the shared floats the per-iteration buffers take. */
static int64_t plan_iteration_buffers(Kernel *k, Uses *u, int64_t fixed)
{
    Cand *c = calloc((size_t)u->uses.n + 1, sizeof *c);
    int nc = 0;
    for (int i = 0; i < u->uses.n; i++) {
        Use *x = u->uses.at[i];
        if (x->buf->base != BASE_WS || !x->buf->batched)
            continue;
        int j = find(c, nc, x->buf);
        if (j < 0) {
            j = nc++;
            c[j] = (Cand){x->buf, x->top, x->inner, x->inner, true};
        }
        LStmt *loop = k->body.at[x->top];
        if (x->top != c[j].top || x->inner < 0 || !strip(*x->idx, loop->var, x->buf->size))
            c[j].ok = false;
        if (x->inner < c[j].first) c[j].first = x->inner;
        if (x->inner > c[j].last) c[j].last = x->inner;
    }
    /* slots: first fit by interval, in order of first use */
    typedef struct { int64_t offset, size; int top, last; } Slot;
    Slot *slot = calloc((size_t)nc + 1, sizeof *slot);
    int nslots = 0;
    int64_t end = fixed;
    for (int pass_top = 0; pass_top < k->body.n; pass_top++)
        for (int pos = 0; pos < ((LStmt *)k->body.at[pass_top])->body.n; pos++)
            for (int j = 0; j < nc; j++) {
                if (!c[j].ok || c[j].top != pass_top || c[j].first != pos)
                    continue;
                int s = -1;
                for (int q = 0; q < nslots; q++)
                    if ((slot[q].top < pass_top || slot[q].last < pos) && slot[q].size >= c[j].buf->size &&
                        (s < 0 || slot[q].size < slot[s].size))
                        s = q;
                if (s < 0) {
                    s = nslots++;
                    slot[s] = (Slot){end, padded(c[j].buf->size), 0, 0};
                    end += slot[s].size;
                }
                slot[s].top = pass_top, slot[s].last = c[j].last;
                c[j].buf->offset = slot[s].offset;
                c[j].buf->batched = false;
            }
    for (int i = 0; i < u->uses.n; i++) {
        Use *x = u->uses.at[i];
        int j = find(c, nc, x->buf);
        if (j < 0 || !c[j].ok)
            continue;
        Expr *e = strip(*x->idx, ((LStmt *)k->body.at[x->top])->var, x->buf->size);
        if (e)                        /* NULL: a load shared by two places of a tree, done */
            *x->idx = e;
    }
    free(c), free(slot);
    return end - fixed;
}

static int by_offset(const void *a, const void *b)
{
    const Buf *x = *(const Buf *const *)a, *y = *(const Buf *const *)b;
    return (x->offset > y->offset) - (x->offset < y->offset);
}

/* Step 3: the batched workspace buffers packed again; returns their floats per example. */
static int64_t pack_batched(Uses *u)
{
    Buf **b = calloc((size_t)u->uses.n + 1, sizeof *b);
    int nb = 0;
    for (int i = 0; i < u->uses.n; i++) {
        Use *x = u->uses.at[i];
        if (x->buf->base != BASE_WS || !x->buf->batched)
            continue;
        bool seen = false;
        for (int j = 0; j < nb && !seen; j++)
            seen = b[j] == x->buf;
        if (!seen)
            b[nb++] = x->buf;
    }
    qsort(b, (size_t)nb, sizeof *b, by_offset);
    int64_t at = 0, old = -1, was = 0;
    for (int i = 0; i < nb; i++) {
        if (b[i]->offset == old) {           /* the same memory seen through another buffer */
            b[i]->offset = was;
            continue;
        }
        old = b[i]->offset, was = at;
        b[i]->offset = at;
        at += padded(b[i]->size);
    }
    free(b);
    return at;
}

/* Plans one kernel; its shared part grows, its per-example part shrinks. */
static void plan_kernel(Kernel *k, int64_t *per_example)
{
    Uses u = collect(k);
    k->ws_fixed += plan_iteration_buffers(k, &u, k->ws_fixed);
    *per_example = pack_batched(&u);
}

void plan_memory(Lowered *l)
{
    plan_kernel(l->forward, &l->ws_floats);
    if (l->train) {
        plan_kernel(l->train, &l->train_ws_floats);
        l->train_ws_fixed = l->train->ws_fixed;
    }
}
