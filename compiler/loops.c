/* loops.c: lowers the operator graph to the loop IR: one buffer per value,
 * one loop nest per operator, every nest looping over the batch outermost.
 * The maths of each operator is written beside its nest.
 */
#include "cnnc.h"

#include <math.h>
#include <string.h>

/* The state of lowering one kernel. */
typedef struct {
    const Graph *g;
    Lowered *l;
    Kernel *k;
    Buf **buf;            /* per node id; NULL for constants */
    Vec *out;             /* where the next nest goes */
} Lower;

/* ---- expressions ---------------------------------------------------------- */

static Expr *ex(XKind kind, Expr *a, Expr *b)
{
    Expr *e = arena_alloc(sizeof *e);
    e->kind = kind, e->a = a, e->b = b;
    return e;
}

static Expr *i64(int64_t v) { Expr *e = ex(X_INT, NULL, NULL); e->ival = v; return e; }
static Expr *f32(double v)  { Expr *e = ex(X_FLT, NULL, NULL); e->fval = (float)v; return e; }
static Expr *var(int v)     { Expr *e = ex(X_VAR, NULL, NULL); e->var = v; return e; }
static Expr *get(int v)     { Expr *e = ex(X_GET, NULL, NULL); e->var = v; return e; }

/* Integer arithmetic folds constants, so index expressions stay small. */
static Expr *iadd(Expr *a, Expr *b)
{
    if (a->kind == X_INT && b->kind == X_INT) return i64(a->ival + b->ival);
    if (a->kind == X_INT && a->ival == 0) return b;
    if (b->kind == X_INT && b->ival == 0) return a;
    return ex(X_IADD, a, b);
}

static Expr *imul(Expr *a, Expr *b)
{
    if (a->kind == X_INT && b->kind == X_INT) return i64(a->ival * b->ival);
    if ((a->kind == X_INT && a->ival == 0) || (b->kind == X_INT && b->ival == 0)) return i64(0);
    if (a->kind == X_INT && a->ival == 1) return b;
    if (b->kind == X_INT && b->ival == 1) return a;
    return ex(X_IMUL, a, b);
}

static Expr *imad(Expr *a, int64_t m, Expr *b) { return iadd(imul(a, i64(m)), b); }

static Expr *load(const Buf *buf, Expr *idx)
{
    Expr *e = ex(X_LOAD, idx, NULL);
    e->buf = buf;
    return e;
}

static Expr *select3(Expr *c, Expr *a, Expr *b)
{
    Expr *e = ex(X_SELECT, c, a);
    e->c = b;
    return e;
}

static Expr *and2(Expr *a, Expr *b) { return a ? ex(X_AND, a, b) : b; }

/* ---- statements ----------------------------------------------------------- */

static LStmt *stmt(Lower *L, LKind kind)
{
    LStmt *s = arena_alloc(sizeof *s);
    s->kind = kind;
    vec_push(L->out, s);
    return s;
}

static int new_var(Lower *L, bool is_float)
{
    Kernel *k = L->k;
    bool *f = arena_alloc(sizeof(bool) * (size_t)(k->nvars + 1));
    memcpy(f, k->is_float, sizeof(bool) * (size_t)k->nvars);
    f[k->nvars] = is_float;
    k->is_float = f;
    return k->nvars++;
}

/* Opens `for v in [0, hi)` and makes its body the current place; returns v. */
static int open_for(Lower *L, int64_t hi)
{
    LStmt *s = stmt(L, L_FOR);
    s->var = new_var(L, false);
    s->lo = i64(0), s->hi = hi < 0 ? var(0) : i64(hi);
    L->out = &s->body;
    return s->var;
}

/* Opens `if cond`; a NULL cond opens nothing. */
static void open_if(Lower *L, Expr *cond)
{
    if (!cond)
        return;
    LStmt *s = stmt(L, L_IF);
    s->cond = cond;
    L->out = &s->body;
}

static void store(Lower *L, const Buf *buf, Expr *idx, Expr *val, bool acc)
{
    LStmt *s = stmt(L, L_STORE);
    s->buf = buf, s->idx = idx, s->val = val, s->accumulate = acc;
}

static int set_new(Lower *L, Expr *val)
{
    LStmt *s = stmt(L, L_SET);
    s->var = new_var(L, true), s->val = val;
    return s->var;
}

static void set(Lower *L, int v, Expr *val)
{
    LStmt *s = stmt(L, L_SET);
    s->var = v, s->val = val;
}

/* Starts the nest of node n: `for b in [0, n)`, with a comment. Returns b. */
static int begin(Lower *L, const Node *n, Vec **top)
{
    *top = L->out;
    int b = open_for(L, -1);
    LStmt *s = (*top)->at[(*top)->n - 1];
    s->comment = arena_printf("%%%d = %s%s%s : %s", n->id, op_name(n->op), n->label ? " " : "",
                              n->label ? n->label : "", shape_str(n->shape));
    return b;
}

/* ---- element access ------------------------------------------------------- */

/* buf[b, i]: batched buffers hold `size` floats per example. */
static Expr *at(const Buf *buf, int b, Expr *i)
{
    return buf->batched ? iadd(imul(var(b), i64(buf->size)), i) : i;
}

/* The value of node x at flat index i of example b. */
static Expr *elem(Lower *L, const Node *x, int b, Expr *i)
{
    if (x->op == OP_CONST)
        return f32(x->value);
    const Buf *buf = L->buf[x->id];
    return load(buf, at(buf, b, i));
}

/* The flat index into x of output coordinates c[0..rank) under broadcasting. */
static Expr *broadcast_index(const Node *x, const Shape *out, const int *c)
{
    Expr *idx = i64(0);
    int off = out->rank - x->shape.rank;
    for (int i = 0; i < x->shape.rank; i++) {
        int64_t d = x->shape.d[i];
        idx = imul(idx, i64(d));
        if (d != 1)
            idx = iadd(idx, var(c[off + i]));
    }
    return idx;
}

/* Loops over every coordinate of shape s; returns the flat index. */
static Expr *open_all(Lower *L, Shape s, int *c)
{
    Expr *flat = i64(0);
    for (int i = 0; i < s.rank; i++) {
        c[i] = open_for(L, s.d[i]);
        flat = imad(flat, s.d[i], var(c[i]));
    }
    return flat;
}

/* ---- elementwise ---------------------------------------------------------- */

static Expr *unary(const Node *n, Expr *x)
{
    switch (n->op) {
    case OP_RELU:    return ex(X_MAX, x, f32(0));                       /* max(0, x) */
    case OP_LEAKY:   return select3(ex(X_LT, x, f32(0)), ex(X_MUL, x, f32(n->alpha)), x);
    case OP_TANH:    return ex(X_TANH, x, NULL);
    case OP_SIGMOID: return ex(X_DIV, f32(1), ex(X_ADD, f32(1), ex(X_EXP, ex(X_NEG, x, NULL), NULL)));
    case OP_EXP:     return ex(X_EXP, x, NULL);
    case OP_LOG:     return ex(X_LOG, x, NULL);
    case OP_SQRT:    return ex(X_SQRT, x, NULL);
    case OP_ABS:     return ex(X_ABS, x, NULL);
    case OP_NEG:     return ex(X_NEG, x, NULL);
    default:         internal_error("unary: %s", op_name(n->op));
    }
}

static const XKind binary_kinds[OP_COUNT] = {
    [OP_ADD] = X_ADD, [OP_SUB] = X_SUB, [OP_MUL] = X_MUL, [OP_DIV] = X_DIV,
    [OP_MAX] = X_MAX, [OP_MIN] = X_MIN,
};

/* y[i] = f(x[i]) or y[i] = f(x[bcast(i)], z[bcast(i)]) */
static void lower_elementwise(Lower *L, const Node *n)
{
    Vec *top;
    int b = begin(L, n, &top), c[MAX_RANK];
    Expr *i = open_all(L, n->shape, c);
    Expr *x = elem(L, n->in[0], b, broadcast_index(n->in[0], &n->shape, c));
    Expr *v = n->nin == 1 ? unary(n, x)
            : ex(binary_kinds[n->op], x, elem(L, n->in[1], b, broadcast_index(n->in[1], &n->shape, c)));
    store(L, L->buf[n->id], at(L->buf[n->id], b, i), v, false);
    L->out = top;
}

/* ---- layers --------------------------------------------------------------- */

/* dense: y[o] = b[o] + sum_k W[o, k] x[k] */
static void lower_dense(Lower *L, const Node *n)
{
    Vec *top;
    int b = begin(L, n, &top);
    int64_t D = n->in[0]->shape.d[0];
    int o = open_for(L, n->shape.d[0]);
    Vec *row = L->out;
    int acc = set_new(L, n->nin > 2 ? elem(L, n->in[2], b, var(o)) : f32(0));
    int k = open_for(L, D);
    set(L, acc, ex(X_ADD, get(acc), ex(X_MUL, elem(L, n->in[1], b, imad(var(o), D, var(k))),
                                       elem(L, n->in[0], b, var(k)))));
    L->out = row;
    store(L, L->buf[n->id], at(L->buf[n->id], b, var(o)), get(acc), false);
    L->out = top;
}

/* The input row/column of output position o and kernel tap t, and whether
 * it falls inside the image (padding reads nothing). */
static Expr *tap(int o, int t, int stride, int pad)
{
    return iadd(iadd(imul(var(o), i64(stride)), i64(-pad)), var(t));
}

static Expr *inside(Expr *ih, Expr *iw, int64_t H, int64_t W, const Window *w)
{
    if (!w->pt && !w->pl && !w->pb && !w->pr)
        return NULL;
    Expr *c = NULL;
    if (w->pt) c = and2(c, ex(X_LE, i64(0), ih));
    if (w->pb) c = and2(c, ex(X_LT, ih, i64(H)));
    if (w->pl) c = and2(c, ex(X_LE, i64(0), iw));
    if (w->pr) c = and2(c, ex(X_LT, iw, i64(W)));
    return c;
}

/* conv: y[co, oh, ow] = b[co] + sum_{ci, kh, kw} W[co, ci, kh, kw] x[ci, oh*s + kh - p, ow*s + kw - p] */
static void lower_conv(Lower *L, const Node *n)
{
    Vec *top;
    const Window *w = &n->win;
    Shape xs = n->in[0]->shape;
    int64_t C = xs.d[0], H = xs.d[1], W = xs.d[2];
    int b = begin(L, n, &top);
    int co = open_for(L, n->shape.d[0]), oh = open_for(L, n->shape.d[1]), ow = open_for(L, n->shape.d[2]);
    Vec *pixel = L->out;
    int acc = set_new(L, n->nin > 2 ? elem(L, n->in[2], b, var(co)) : f32(0));
    int ci = open_for(L, C), kh = open_for(L, w->kh), kw = open_for(L, w->kw);
    Expr *ih = tap(oh, kh, w->sh, w->pt), *iw = tap(ow, kw, w->sw, w->pl);
    open_if(L, inside(ih, iw, H, W, w));
    Expr *widx = imad(imad(imad(var(co), C, var(ci)), w->kh, var(kh)), w->kw, var(kw));
    Expr *xidx = imad(imad(var(ci), H, ih), W, iw);
    set(L, acc, ex(X_ADD, get(acc), ex(X_MUL, elem(L, n->in[1], b, widx), elem(L, n->in[0], b, xidx))));
    L->out = pixel;
    Expr *yidx = imad(imad(var(co), n->shape.d[1], var(oh)), n->shape.d[2], var(ow));
    store(L, L->buf[n->id], at(L->buf[n->id], b, yidx), get(acc), false);
    L->out = top;
}

/* maxpool: y = max over the window's cells inside the image;
 * avgpool: y = mean over the same cells (padding does not count). */
static void lower_pool(Lower *L, const Node *n)
{
    Vec *top;
    const Window *w = &n->win;
    Shape xs = n->in[0]->shape;
    int64_t H = xs.d[1], W = xs.d[2];
    bool max = n->op == OP_MAXPOOL;
    int b = begin(L, n, &top);
    int c = open_for(L, n->shape.d[0]), oh = open_for(L, n->shape.d[1]), ow = open_for(L, n->shape.d[2]);
    Vec *pixel = L->out;
    int acc = set_new(L, f32(max ? -INFINITY : 0)), cnt = max ? 0 : set_new(L, f32(0));
    int kh = open_for(L, w->kh), kw = open_for(L, w->kw);
    Expr *ih = tap(oh, kh, w->sh, w->pt), *iw = tap(ow, kw, w->sw, w->pl);
    open_if(L, inside(ih, iw, H, W, w));
    Expr *x = elem(L, n->in[0], b, imad(imad(var(c), H, ih), W, iw));
    set(L, acc, ex(max ? X_MAX : X_ADD, get(acc), x));
    if (!max)
        set(L, cnt, ex(X_ADD, get(cnt), f32(1)));
    L->out = pixel;
    Expr *yidx = imad(imad(var(c), n->shape.d[1], var(oh)), n->shape.d[2], var(ow));
    store(L, L->buf[n->id], at(L->buf[n->id], b, yidx), max ? get(acc) : ex(X_DIV, get(acc), get(cnt)), false);
    L->out = top;
}

/* Opens a loop summing f(x[i]) over a row of `len` values; returns the sum's variable. */
static int row_reduce(Lower *L, const Node *x, int b, Expr *base, int64_t len, XKind op, double init,
                      Expr *(*f)(Expr *x, Expr *m), Expr *m)
{
    Vec *here = L->out;
    int acc = set_new(L, f32(init));
    int i = open_for(L, len);
    Expr *v = elem(L, x, b, iadd(base, var(i)));
    set(L, acc, ex(op, get(acc), f ? f(v, m) : v));
    L->out = here;
    return acc;
}

static Expr *shifted_exp(Expr *x, Expr *m) { return ex(X_EXP, ex(X_SUB, x, m), NULL); }
static Expr *absval(Expr *x, Expr *m)      { (void)m; return ex(X_ABS, x, NULL); }
static Expr *square(Expr *x, Expr *m)      { (void)m; return ex(X_MUL, x, x); }

/* global_avgpool: y[c] = mean_{h, w} x[c, h, w] */
static void lower_gap(Lower *L, const Node *n)
{
    Vec *top;
    Shape xs = n->in[0]->shape;
    int64_t HW = xs.d[1] * xs.d[2];
    int b = begin(L, n, &top);
    int c = open_for(L, xs.d[0]);
    int s = row_reduce(L, n->in[0], b, imul(var(c), i64(HW)), HW, X_ADD, 0, NULL, NULL);
    store(L, L->buf[n->id], at(L->buf[n->id], b, var(c)), ex(X_DIV, get(s), f32((double)HW)), false);
    L->out = top;
}

/* softmax: y = exp(x - max x) / sum exp(x - max x);
 * l1norm: y = x / max(sum |x|, eps); l2norm: y = x / max(sqrt(sum x^2), eps) */
static void lower_vector(Lower *L, const Node *n)
{
    Vec *top;
    int64_t len = n->shape.d[0];
    int b = begin(L, n, &top);
    const Node *x = n->in[0];
    Expr *scale;
    int m = -1;
    if (n->op == OP_SOFTMAX) {
        m = row_reduce(L, x, b, i64(0), len, X_MAX, -INFINITY, NULL, NULL);
        scale = get(row_reduce(L, x, b, i64(0), len, X_ADD, 0, shifted_exp, get(m)));
    } else if (n->op == OP_L1NORM) {
        scale = ex(X_MAX, get(row_reduce(L, x, b, i64(0), len, X_ADD, 0, absval, NULL)), f32(1e-12));
    } else {
        scale = ex(X_MAX, ex(X_SQRT, get(row_reduce(L, x, b, i64(0), len, X_ADD, 0, square, NULL)), NULL),
                   f32(1e-12));
    }
    int inv = set_new(L, ex(X_DIV, f32(1), scale));
    int i = open_for(L, len);
    Expr *v = elem(L, x, b, var(i));
    if (m >= 0)
        v = shifted_exp(v, get(m));
    store(L, L->buf[n->id], at(L->buf[n->id], b, var(i)), ex(X_MUL, v, get(inv)), false);
    L->out = top;
}

/* batchnorm (inference): y = (x - mean[c]) / sqrt(var[c] + eps) * gamma[c] + beta[c] */
static void lower_batchnorm(Lower *L, const Node *n)
{
    Vec *top;
    int64_t C = n->shape.d[0], inner = shape_count(n->shape) / C;
    int b = begin(L, n, &top);
    int c = open_for(L, C);
    Expr *inv = ex(X_DIV, elem(L, n->in[1], b, var(c)),
                   ex(X_SQRT, ex(X_ADD, elem(L, n->in[4], b, var(c)), f32(n->alpha)), NULL));
    int scale = set_new(L, inv);
    int shift = set_new(L, ex(X_SUB, elem(L, n->in[2], b, var(c)),
                              ex(X_MUL, elem(L, n->in[3], b, var(c)), get(scale))));
    int i = open_for(L, inner);
    Expr *idx = imad(var(c), inner, var(i));
    store(L, L->buf[n->id], at(L->buf[n->id], b, idx),
          ex(X_ADD, ex(X_MUL, elem(L, n->in[0], b, idx), get(scale)), get(shift)), false);
    L->out = top;
}

/* lrn: y[c] = x[c] / (k + alpha/size * sum_{c' = c - size/2}^{c + (size-1)/2} x[c']^2)^beta */
static void lower_lrn(Lower *L, const Node *n)
{
    Vec *top;
    int64_t C = n->shape.d[0], HW = n->shape.d[1] * n->shape.d[2];
    int size = n->win.kh;
    int b = begin(L, n, &top);
    int c = open_for(L, C), p = open_for(L, HW);
    Vec *pixel = L->out;
    int acc = set_new(L, f32(0));
    int t = open_for(L, size);
    Expr *cc = iadd(var(c), iadd(var(t), i64(-(size / 2))));
    open_if(L, ex(X_AND, ex(X_LE, i64(0), cc), ex(X_LT, cc, i64(C))));
    Expr *v = elem(L, n->in[0], b, imad(cc, HW, var(p)));
    set(L, acc, ex(X_ADD, get(acc), ex(X_MUL, v, v)));
    L->out = pixel;
    Expr *den = ex(X_POW, ex(X_ADD, f32(n->k), ex(X_MUL, get(acc), f32(n->alpha / size))), f32(n->beta));
    Expr *idx = imad(var(c), HW, var(p));
    store(L, L->buf[n->id], at(L->buf[n->id], b, idx), ex(X_DIV, elem(L, n->in[0], b, idx), den), false);
    L->out = top;
}

/* concat: each branch copied to its range of channels (or of the vector) */
static void lower_concat(Lower *L, const Node *n)
{
    int64_t off = 0, inner = n->shape.rank == 3 ? n->shape.d[1] * n->shape.d[2] : 1;
    for (int j = 0; j < n->nin; j++) {
        Vec *top;
        int b = begin(L, n, &top);
        int64_t len = shape_count(n->in[j]->shape);
        int i = open_for(L, len);
        store(L, L->buf[n->id], at(L->buf[n->id], b, iadd(var(i), i64(off))), elem(L, n->in[j], b, var(i)), false);
        off += n->in[j]->shape.d[0] * inner;
        L->out = top;
    }
}

/* matmul: y[i, j] = sum_k A[i, k] B[k, j]  ([m,k]@[k], [m,k]@[k,n], [k]@[k,n]) */
static void lower_matmul(Lower *L, const Node *n)
{
    Vec *top;
    const Node *A = n->in[0], *B = n->in[1];
    int64_t K = B->shape.d[0], M = A->shape.rank == 2 ? A->shape.d[0] : 1;
    int64_t N = B->shape.rank == 2 ? B->shape.d[1] : 1;
    int b = begin(L, n, &top);
    int i = open_for(L, M), j = open_for(L, N);
    Vec *cell = L->out;
    int acc = set_new(L, f32(0));
    int k = open_for(L, K);
    set(L, acc, ex(X_ADD, get(acc), ex(X_MUL, elem(L, A, b, imad(var(i), K, var(k))),
                                       elem(L, B, b, imad(var(k), N, var(j))))));
    L->out = cell;
    store(L, L->buf[n->id], at(L->buf[n->id], b, imad(var(i), N, var(j))), get(acc), false);
    L->out = top;
}

/* sum: y = sum_i x[i];  mean: y = sum_i x[i] / size */
static void lower_reduce(Lower *L, const Node *n)
{
    Vec *top;
    int64_t len = shape_count(n->in[0]->shape);
    int b = begin(L, n, &top);
    int s = row_reduce(L, n->in[0], b, i64(0), len, X_ADD, 0, NULL, NULL);
    store(L, L->buf[n->id], at(L->buf[n->id], b, i64(0)),
          n->op == OP_SUM ? get(s) : ex(X_DIV, get(s), f32((double)len)), false);
    L->out = top;
}

/* out[b, i] = y[b, i]: the output node copied to the caller's buffer */
static void lower_output(Lower *L, const Node *y, const Buf *out)
{
    Vec *top = L->out;
    int b = open_for(L, -1);
    ((LStmt *)top->at[top->n - 1])->comment = "output";
    int i = open_for(L, out->size);
    store(L, out, at(out, b, var(i)), elem(L, y, b, var(i)), false);
    L->out = top;
}

/* ---- buffers ------------------------------------------------------------- */

static Buf *new_buf(const char *name, Base base, int64_t offset, int64_t size, bool batched)
{
    Buf *b = arena_alloc(sizeof *b);
    b->name = name, b->base = base, b->offset = offset, b->size = size, b->batched = batched;
    return b;
}

/* Parameters sit in one block, each aligned to 16 floats (64 bytes). */
static void place_params(Lowered *l, const Graph *g)
{
    l->param_offset = arena_alloc(sizeof(int64_t) * (size_t)(g->nparams + 1));
    int64_t off = 0;
    for (int i = 0; i < g->nparams; i++) {
        l->param_offset[i] = off;
        off += (shape_count(g->params[i].shape) + 15) & ~(int64_t)15;
    }
    l->param_floats = off;
}

/* Every computed value gets its own workspace buffer; flatten and dropout
 * (at inference) share their input's. */
static void place_values(Lower *L)
{
    const Graph *g = L->g;
    int64_t ws = 0;
    for (int i = 0; i < g->nodes.n; i++) {
        const Node *n = g->nodes.at[i];
        const char *name = n->label ? n->label : arena_printf("%%%d", n->id);
        int64_t size = shape_count(n->shape);
        if (n->op == OP_INPUT)
            L->buf[i] = new_buf(g->input_name, BASE_X, 0, size, true);
        else if (n->op == OP_PARAM)
            L->buf[i] = new_buf(name, BASE_PARAMS, L->l->param_offset[n->param], size, false);
        else if (n->op == OP_FLATTEN || n->op == OP_DROPOUT)
            L->buf[i] = L->buf[n->in[0]->id];
        else if (n->op != OP_CONST) {
            L->buf[i] = new_buf(name, BASE_WS, ws, size, true);
            ws += (size + 15) & ~(int64_t)15;
        }
    }
    L->l->ws_floats = ws;
}

/* ---- the forward kernel --------------------------------------------------- */

static void lower_node(Lower *L, const Node *n)
{
    switch (n->op) {
    case OP_INPUT: case OP_PARAM: case OP_CONST: case OP_FLATTEN: case OP_DROPOUT:
        return;
    case OP_DENSE:     lower_dense(L, n); return;
    case OP_CONV:      lower_conv(L, n); return;
    case OP_MAXPOOL:
    case OP_AVGPOOL:   lower_pool(L, n); return;
    case OP_GAP:       lower_gap(L, n); return;
    case OP_SOFTMAX:
    case OP_L1NORM:
    case OP_L2NORM:    lower_vector(L, n); return;
    case OP_BATCHNORM: lower_batchnorm(L, n); return;
    case OP_LRN:       lower_lrn(L, n); return;
    case OP_CONCAT:    lower_concat(L, n); return;
    case OP_MATMUL:    lower_matmul(L, n); return;
    case OP_SUM:
    case OP_MEAN:      lower_reduce(L, n); return;
    default:           lower_elementwise(L, n); return;
    }
}

/* Only what the output depends on is computed. */
static bool *live_nodes(const Graph *g, const Node *root)
{
    bool *live = arena_alloc(sizeof(bool) * (size_t)(g->nodes.n + 1));
    live[root->id] = true;
    for (int i = g->nodes.n - 1; i >= 0; i--) {
        const Node *n = g->nodes.at[i];
        for (int j = 0; live[i] && j < n->nin; j++)
            live[n->in[j]->id] = true;
    }
    return live;
}

static Kernel *new_kernel(const char *name)
{
    Kernel *k = arena_alloc(sizeof *k);
    k->name = name;
    k->nvars = 1;                      /* variable 0 is n */
    k->is_float = arena_alloc(sizeof(bool));
    return k;
}

Lowered *loops_lower(const Graph *g)
{
    Lowered *l = arena_alloc(sizeof *l);
    l->g = g;
    place_params(l, g);
    Lower L = {.g = g, .l = l, .buf = arena_alloc(sizeof(Buf *) * (size_t)(g->nodes.n + 1))};
    place_values(&L);
    L.k = l->forward = new_kernel(arena_printf("%s.kernel.forward", g->name));
    L.out = &L.k->body;
    bool *live = live_nodes(g, g->output);
    for (int i = 0; i < g->nodes.n; i++)
        if (live[i])
            lower_node(&L, g->nodes.at[i]);
    lower_output(&L, g->output, new_buf("out", BASE_OUT, 0, shape_count(g->output->shape), true));
    return l;
}

/* ---- the printer behind --emit=loops -------------------------------------- */

static void print_expr(FILE *out, const Expr *e)
{
    static const char *const ops[] = {
        [X_IADD] = "+", [X_IMUL] = "*", [X_IDIV] = "/", [X_IMOD] = "%", [X_ADD] = "+",
        [X_SUB] = "-", [X_MUL] = "*", [X_DIV] = "/", [X_LT] = "<", [X_LE] = "<=", [X_AND] = "&&",
    };
    static const char *const fns[] = {
        [X_MAX] = "max", [X_MIN] = "min", [X_POW] = "pow", [X_NEG] = "-", [X_EXP] = "exp",
        [X_LOG] = "log", [X_SQRT] = "sqrt", [X_ABS] = "abs", [X_TANH] = "tanh", [X_ITOF] = "float",
    };
    switch (e->kind) {
    case X_INT:  fprintf(out, "%lld", (long long)e->ival); return;
    case X_FLT:  fprintf(out, "%g", e->fval); return;
    case X_VAR:  fprintf(out, e->var ? "i%d" : "n", e->var); return;
    case X_GET:  fprintf(out, "s%d", e->var); return;
    case X_LOAD:
        fprintf(out, "%s[", e->buf->name);
        print_expr(out, e->a);
        fputc(']', out);
        return;
    case X_SELECT:
        fputc('(', out);
        print_expr(out, e->a);
        fputs(" ? ", out);
        print_expr(out, e->b);
        fputs(" : ", out);
        print_expr(out, e->c);
        fputc(')', out);
        return;
    default:
        break;
    }
    if (ops[e->kind]) {
        fputc('(', out);
        print_expr(out, e->a);
        fprintf(out, " %s ", ops[e->kind]);
        print_expr(out, e->b);
        fputc(')', out);
        return;
    }
    fprintf(out, "%s(", fns[e->kind]);
    print_expr(out, e->a);
    if (e->b) {
        fputs(", ", out);
        print_expr(out, e->b);
    }
    fputc(')', out);
}

static void print_stmts(FILE *out, const Vec *body, int depth)
{
    for (int i = 0; i < body->n; i++) {
        const LStmt *s = body->at[i];
        if (s->comment)
            fprintf(out, "%*s# %s\n", 2 * depth, "", s->comment);
        fprintf(out, "%*s", 2 * depth, "");
        switch (s->kind) {
        case L_FOR:
            fprintf(out, "for i%d in [", s->var);
            print_expr(out, s->lo);
            fputs(", ", out);
            print_expr(out, s->hi);
            fputs("):\n", out);
            print_stmts(out, &s->body, depth + 1);
            break;
        case L_IF:
            fputs("if ", out);
            print_expr(out, s->cond);
            fputs(":\n", out);
            print_stmts(out, &s->body, depth + 1);
            break;
        case L_SET:
            fprintf(out, "s%d = ", s->var);
            print_expr(out, s->val);
            fputc('\n', out);
            break;
        case L_STORE:
            fprintf(out, "%s[", s->buf->name);
            print_expr(out, s->idx);
            fprintf(out, "] %s ", s->accumulate ? "+=" : "=");
            print_expr(out, s->val);
            fputc('\n', out);
            break;
        }
    }
}

void loops_print(FILE *out, const Lowered *l)
{
    const Graph *g = l->g;
    fprintf(out, "# parameters: %lld floats; workspace: %lld floats per example\n",
            (long long)l->param_floats, (long long)l->ws_floats);
    for (int i = 0; i < g->nparams; i++)
        fprintf(out, "#   %s = params + %lld\n", g->params[i].name, (long long)l->param_offset[i]);
    fprintf(out, "kernel %s(n, x, out, params, ws):\n", l->forward->name);
    print_stmts(out, &l->forward->body, 1);
}
