/* plan.c: memory planning of the workspace, after fusion.
 *
 * Lowering gives every value a buffer of its own, one row per example
 * (batched), and every operator's scratch (im2col's `col`, `xpad`, `dcol`)
 * a buffer of its own in the shared part. Most of them are dead most of
 * the time: a forward activation that only the next operator of the same
 * loop reads, a gradient passed from one backward operator to the next, the
 * `col` of a conv that has run. So:
 *
 *   1. a batched workspace buffer all of whose uses are inside one top-level
 *      loop over the examples becomes a per-iteration buffer: its index
 *      loses the `b * size` term, and it moves to the shared part of the
 *      workspace (each thread has its own);
 *   2. the shared part (per-iteration buffers, scratch, values shared by the
 *      batch) is packed by liveness: each buffer lives from its first use
 *      to its last, and takes the smallest free slot that holds it (a slot
 *      is free once the last buffer in it is dead);
 *   3. the batched buffers left are packed the same way, by the top-level
 *      statements that use them (a row per example: one that a loop over
 *      the examples writes in iteration b may not be reused by another
 *      buffer of the same loop in iteration b + 1).
 *
 * Liveness is counted in positions: each statement of a top-level loop over
 * the examples is a position, and so is every other top-level statement.
 * Per-iteration buffers and scratch live from the position of their first
 * use to that of their last: each iteration writes them before reading
 * them. Other values live over the whole top-level statements that use
 * them. Buffers that share memory share an offset, so the alias scopes of
 * llvm.c (one per offset) never claim that two overlapping buffers are
 * apart.
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

/* ---- lives ------------------------------------------------------------------ */

/* The memory of one or more buffers of the workspace that overlap (a value
 * seen through two buffers), in one region: batched or shared. */
typedef struct {
    Vec bufs;             /* Buf*: the members */
    int64_t *delta;       /* per member: its offset from the group's */
    int64_t old, size;    /* the group's offset and extent before planning */
    bool batched;
    bool scratch;         /* every member is scratch */
    bool local;           /* every use inside the body of example loop `top0` */
    bool iteration;       /* made a per-iteration buffer (step 1) */
    int first, last;      /* positions of the first and last use */
    int top0, top1;       /* the top-level statements of those */
    int64_t at;           /* the offset planned */
} Group;

typedef struct {
    Kernel *k;
    Uses u;
    int *start;           /* per top-level statement, its first position; [ntop]: the end */
    Group **g;
    int ng;
} Plan;

static int position(const Plan *p, const Use *x) { return p->start[x->top] + (x->inner > 0 ? x->inner : 0); }

static void positions(Plan *p)
{
    Vec *body = &p->k->body;
    p->start = calloc((size_t)body->n + 1, sizeof *p->start);
    for (int t = 0; t < body->n; t++) {
        const LStmt *s = body->at[t];
        p->start[t + 1] = p->start[t] + (example_loop(s) && s->body.n > 1 ? s->body.n : 1);
    }
}

static Group *group_of(const Plan *p, const Buf *b)
{
    for (int i = 0; i < p->ng; i++)
        for (int j = 0; j < p->g[i]->bufs.n; j++)
            if (p->g[i]->bufs.at[j] == b)
                return p->g[i];
    return NULL;
}

static bool overlaps(const Group *g, const Buf *b)
{
    return g->batched == b->batched && b->offset < g->old + g->size && g->old < b->offset + b->size;
}

/* Adds b to the group it overlaps, or to a new one. Groups that b joins
 * together become one. */
static void join(Plan *p, Buf *b)
{
    Group *g = NULL;
    for (int i = 0; i < p->ng; i++) {
        if (!overlaps(p->g[i], b))
            continue;
        if (!g) {
            g = p->g[i];
            continue;
        }
        Group *h = p->g[i];                      /* merge h into g */
        for (int j = 0; j < h->bufs.n; j++)
            vec_push(&g->bufs, h->bufs.at[j]);
        int64_t end = g->old + g->size > h->old + h->size ? g->old + g->size : h->old + h->size;
        g->old = g->old < h->old ? g->old : h->old, g->size = end - g->old;
        g->scratch &= h->scratch;
        p->g[i--] = p->g[--p->ng];
    }
    if (!g) {
        g = arena_alloc(sizeof *g);
        *g = (Group){.old = b->offset, .size = b->size, .batched = b->batched, .scratch = true};
        p->g[p->ng++] = g;
    }
    vec_push(&g->bufs, b);
    int64_t end = g->old + g->size > b->offset + b->size ? g->old + g->size : b->offset + b->size;
    g->old = g->old < b->offset ? g->old : b->offset, g->size = end - g->old;
    g->scratch &= b->scratch;
}

/* The groups of the workspace's buffers and the span of their uses. */
static void lives(Plan *p)
{
    p->g = calloc((size_t)p->u.uses.n + 1, sizeof *p->g);
    for (int i = 0; i < p->u.uses.n; i++) {
        Use *x = p->u.uses.at[i];
        if (x->buf->base == BASE_WS && !group_of(p, x->buf))
            join(p, x->buf);
    }
    for (int i = 0; i < p->ng; i++) {
        Group *g = p->g[i];
        g->first = -1, g->local = true;
        g->delta = arena_alloc(sizeof(int64_t) * (size_t)(g->bufs.n + 1));
        for (int j = 0; j < g->bufs.n; j++)
            g->delta[j] = ((Buf *)g->bufs.at[j])->offset - g->old;
    }
    for (int i = 0; i < p->u.uses.n; i++) {
        Use *x = p->u.uses.at[i];
        Group *g = x->buf->base == BASE_WS ? group_of(p, x->buf) : NULL;
        if (!g)
            continue;
        int at = position(p, x);
        if (g->first < 0)
            g->first = g->last = at, g->top0 = g->top1 = x->top;
        g->first = at < g->first ? at : g->first, g->last = at > g->last ? at : g->last;
        g->top0 = x->top < g->top0 ? x->top : g->top0, g->top1 = x->top > g->top1 ? x->top : g->top1;
        g->local &= x->inner >= 0 && x->top == g->top0 && x->top == g->top1;
    }
}

/* ---- step 1: per-iteration buffers ---------------------------------------- */

/* Whether batched group g can hold one example's row: one buffer, every use
 * inside one loop over the examples, indexed `b * size + ...` by its variable. */
static bool per_iteration(const Plan *p, const Group *g)
{
    if (!g->batched || !g->local || g->bufs.n != 1)
        return false;
    const LStmt *loop = p->k->body.at[g->top0];
    for (int i = 0; i < p->u.uses.n; i++) {
        const Use *x = p->u.uses.at[i];
        if (x->buf == g->bufs.at[0] && !strip(*x->idx, loop->var, x->buf->size))
            return false;
    }
    return true;
}

static void make_per_iteration(Plan *p, Group *g)
{
    Buf *b = g->bufs.at[0];
    const LStmt *loop = p->k->body.at[g->top0];
    for (int i = 0; i < p->u.uses.n; i++) {
        Use *x = p->u.uses.at[i];
        Expr *e = x->buf == b ? strip(*x->idx, loop->var, b->size) : NULL;
        if (e)                        /* NULL: a load shared by two places of a tree, done */
            *x->idx = e;
    }
    b->batched = g->batched = false;
    g->iteration = true;
}

/* ---- steps 2 and 3: slots by liveness --------------------------------------- */

static int by_first(const void *a, const void *b)
{
    const Group *x = *(const Group *const *)a, *y = *(const Group *const *)b;
    if (x->first != y->first)
        return (x->first > y->first) - (x->first < y->first);
    return (x->old > y->old) - (x->old < y->old);
}

/* Places the groups of one region (batched or not) in slots, first use
 * first: each takes the smallest free slot that holds it, or grows the last
 * slot if that one is free, or opens a new slot. Returns the region's
 * floats (per example, for the batched one). */
static int64_t pack(Plan *p, bool batched)
{
    typedef struct { int64_t offset, size; int last; } Slot;
    Group **g = calloc((size_t)p->ng + 1, sizeof *g);
    Slot *slot = calloc((size_t)p->ng + 1, sizeof *slot);
    int n = 0, nslots = 0;
    for (int i = 0; i < p->ng; i++)
        if (p->g[i]->batched == batched) {
            Group *x = g[n++] = p->g[i];
            if (!x->scratch && !x->iteration)     /* values: whole top-level statements */
                x->first = p->start[x->top0], x->last = p->start[x->top1 + 1] - 1;
        }
    qsort(g, (size_t)n, sizeof *g, by_first);
    int64_t end = 0;
    for (int i = 0; i < n; i++) {
        int64_t size = padded(g[i]->size);
        int s = -1;
        for (int q = 0; q < nslots; q++)
            if (slot[q].last < g[i]->first && slot[q].size >= size && (s < 0 || slot[q].size < slot[s].size))
                s = q;
        if (s < 0 && nslots && slot[nslots - 1].last < g[i]->first) {
            s = nslots - 1;                        /* the last slot, free: grow it */
            end += size - slot[s].size;
            slot[s].size = size;
        }
        if (s < 0) {
            s = nslots++;
            slot[s] = (Slot){end, size, 0};
            end += size;
        }
        slot[s].last = g[i]->last;
        g[i]->at = slot[s].offset;
    }
    free(g), free(slot);
    return end;
}

/* The members of every group at their planned offsets. */
static void place(Plan *p)
{
    for (int i = 0; i < p->ng; i++)
        for (int j = 0; j < p->g[i]->bufs.n; j++)
            ((Buf *)p->g[i]->bufs.at[j])->offset = p->g[i]->at + p->g[i]->delta[j];
}

/* Plans one kernel: its shared part (ws_fixed) and its floats per example. */
static void plan_kernel(Kernel *k, int64_t *per_example)
{
    Plan p = {.k = k, .u = collect(k)};
    positions(&p);
    lives(&p);
    for (int i = 0; i < p.ng; i++)
        if (per_iteration(&p, p.g[i]))
            make_per_iteration(&p, p.g[i]);
    k->ws_fixed = pack(&p, false);
    *per_example = pack(&p, true);
    place(&p);
    free(p.start), free(p.g);
}

void plan_memory(Lowered *l)
{
    plan_kernel(l->forward, &l->ws_floats);
    if (l->train) {
        plan_kernel(l->train, &l->train_ws_floats);
        l->train_ws_fixed = l->train->ws_fixed;
    }
}
