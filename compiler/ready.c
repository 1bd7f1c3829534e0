/* ready.c: where the training kernel's parameter gradients become final.
 *
 * A training step spread over processes (runtime/buckets.c) sums every
 * gradient across them; the sooner one is final, the sooner its sum can
 * start, behind the rest of the backward pass. Parameter p's gradient is
 * final after the last top-level statement of the training kernel that
 * touches (reads or writes) any of its elements in the gradient block:
 *
 *   ready(p) = max { i : statement i touches grads[offset_p, offset_p + count_p) }
 *
 * llvm.c calls rt_grads_ready(ctx, offset_p, offset_p + count_p) right after
 * statement ready(p), and lists the calls, in the order the kernel makes
 * them, in the descriptor. Buffers (batchnorm's running statistics) get no
 * call: they are not learned, and travel apart after the kernel.
 */
#include "cnnc.h"

/* A walk over the kernel: the statement being visited, and per parameter the
 * last one that touched its gradient (-1: none yet). */
typedef struct {
    const Lowered *l;
    int at;
    int *last;
} Walk;

/* buf lies in the gradient block: every parameter it overlaps is touched. */
static void touch(Walk *w, const Buf *buf)
{
    const Graph *g = w->l->g;
    if (!buf || buf->base != BASE_GRAD)
        return;
    for (int p = 0; p < g->nparams; p++) {
        int64_t lo = w->l->param_offset[p], hi = lo + shape_count(g->params[p].shape);
        if (buf->offset < hi && lo < buf->offset + buf->size)
            w->last[p] = w->at;
    }
}

static void walk_expr(Walk *w, const Expr *e)
{
    if (!e)
        return;
    if (e->kind == X_LOAD)
        touch(w, e->buf);
    walk_expr(w, e->a), walk_expr(w, e->b), walk_expr(w, e->c);
}

static void walk_stmt(Walk *w, LStmt *s)
{
    if (s->kind == L_STORE)
        touch(w, s->buf);
    const Expr *e[] = {s->lo, s->hi, s->idx, s->val, s->cond};
    for (size_t i = 0; i < sizeof e / sizeof e[0]; i++)
        walk_expr(w, e[i]);
    Operand op[MAX_OPERANDS];
    int n = stmt_operands(s, op);
    for (int i = 0; i < n; i++)
        touch(w, op[i].buf);
    for (int i = 0; i < s->body.n; i++)
        walk_stmt(w, s->body.at[i]);
}

int ready_points(const Lowered *l, Ready **out)
{
    const Graph *g = l->g;
    const Kernel *k = l->train;
    Walk w = {l, 0, arena_alloc(sizeof(int) * (size_t)(g->nparams + 1))};
    for (int p = 0; p < g->nparams; p++)
        w.last[p] = -1;
    for (w.at = 0; k && w.at < k->body.n; w.at++)
        walk_stmt(&w, k->body.at[w.at]);
    Ready *r = arena_alloc(sizeof *r * (size_t)(g->nparams + 1));
    int n = 0;
    for (int i = 0; k && i < k->body.n; i++)
        for (int p = g->nparams - 1; p >= 0; p--)     /* the last layers' first, as backward runs */
            if (w.last[p] == i && !g->params[p].is_buffer) {
                int64_t lo = l->param_offset[p];
                r[n++] = (Ready){i, lo, lo + shape_count(g->params[p].shape)};
            }
    *out = r;
    return n;
}
