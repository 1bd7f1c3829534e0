/* loops.c: lowers the operator graph to the loop IR: one buffer per value,
 * one loop nest per operator, every nest looping over the batch outermost.
 * The maths of each operator is written beside its nest.
 */
#include "cnnc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The state of lowering one kernel. */
typedef struct {
    const Graph *g;
    Lowered *l;
    Kernel *k;
    Buf **buf;            /* per node id; NULL for constants */
    Vec *out;             /* where the next nest goes */
    bool training;        /* dropout masks, batch statistics */
    bool *fused;          /* per node id: computed as part of another node (fuse_nodes) */
    const Node **folded;  /* per conv id: the inference batchnorm its GEMM applies, or NULL */
    const Node **act;     /* per depthwise conv id: the ReLU or clip its nest applies, or NULL */
    const Node **pre;     /* per depthwise conv id: the clip or ReLU of its input it applies as it
                             copies the input (inference), or NULL */
    bool fuse;            /* operator fusion on (off: --no-fuse) */
    int64_t fixed, per_example;   /* workspace placed so far */
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

/* Opens `for v in [lo, hi)` with bounds that may depend on outer loops. */
static int open_range(Lower *L, Expr *lo, Expr *hi)
{
    LStmt *s = stmt(L, L_FOR);
    s->var = new_var(L, false);
    s->lo = lo, s->hi = hi;
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

static Buf *new_buf(const char *name, Base base, int64_t offset, int64_t size, bool batched);
static int64_t padded(int64_t n);

/* A scratch buffer in the workspace's shared part, reused by every example. */
static const Buf *scratch(Lower *L, const char *name, int64_t size)
{
    Buf *b = new_buf(name, BASE_WS, L->fixed, size, false);
    b->scratch = true;
    L->fixed += padded(size);
    return b;
}

/* A scratch buffer in the calling thread's private scratch (BASE_PRIV), at
 * `at` floats into it: for a nest over channels whose every iteration
 * writes the buffer whole before reading it (one padded channel). In the
 * workspace such a scratch would need a plane per channel, so that threads
 * running parts of the nest do not share one: MobileNet V2's 96 padded
 * 112x112 channels take 5 MB, written and read back through the L3, where
 * one plane (52 KB) stays in the L1/L2. */
static const Buf *private_scratch(Lower *L, const char *name, int64_t at, int64_t size)
{
    Buf *b = new_buf(name, BASE_PRIV, at, size, false);
    b->scratch = true;
    if (L->l->private_floats < at + padded(size))
        L->l->private_floats = at + padded(size);
    return b;
}

/* The plane of channel c in a scratch of one plane per channel: c, or 0 in
 * a private scratch, which holds the one channel its thread works on. */
static Expr *plane_of(const Buf *scratch, Expr *c)
{
    return scratch->base == BASE_PRIV ? i64(0) : c;
}

/* C[c_at + i ldc + j] (+)= sum_k A[a_at + i sai + k sak] B[b_at + k ldb + j] */
static void gemm(Lower *L, Expr *M, int64_t N, Expr *K, const Buf *a, Expr *a_at, int64_t sai, int64_t sak,
                 const Buf *b, Expr *b_at, int64_t ldb, const Buf *c, Expr *c_at, int64_t ldc, bool acc)
{
    LStmt *s = stmt(L, L_GEMM);
    Gemm *g = arena_alloc(sizeof *g);
    *g = (Gemm){.M = M, .K = K, .N = N, .a = a, .b = b, .c = c, .a_at = a_at, .b_at = b_at, .c_at = c_at,
                .sai = sai, .sak = sak, .ldb = ldb, .ldc = ldc, .accumulate = acc};
    s->gemm = g;
}

/* The GEMM just emitted, of a B with K rows of N floats, takes k in blocks
 * (Gemm.kblock) when B exceeds half the L2. */
static void kblock_when_large(Lower *L, int64_t K, int64_t N)
{
    ((LStmt *)L->out->at[L->out->n - 1])->gemm->kblock = (int64_t)sizeof(float) * K * N > host_l2_bytes() / 2;
}

/* C[c_at + i ldc + j] (+)= sum_k A[a_at + i lda + k] B[b_at + j ldb + k]: both along k */
static void gemm_nt(Lower *L, Expr *M, int64_t N, Expr *K, const Buf *a, Expr *a_at, int64_t lda,
                    const Buf *b, Expr *b_at, int64_t ldb, const Buf *c, Expr *c_at, int64_t ldc, bool acc)
{
    gemm(L, M, N, K, a, a_at, lda, 1, b, b_at, ldb, c, c_at, ldc, acc);
    ((LStmt *)L->out->at[L->out->n - 1])->gemm->bt = true;
}

/* A 2x2 max pooling statement over `rows` output rows (see Pool in cnnc.h). */
static Pool *pool(Lower *L, int64_t rows, int64_t W, bool backward)
{
    LStmt *s = stmt(L, L_POOL);
    Pool *p = arena_alloc(sizeof *p);
    p->rows = rows, p->W = W, p->backward = backward;
    s->pool = p;
    return p;
}

int stmt_operands(LStmt *s, Operand op[MAX_OPERANDS])
{
    int n = 0;
    if (s->kind == L_GEMM) {
        Gemm *g = s->gemm;
        op[n++] = (Operand){g->a, &g->a_at, true, false};
        op[n++] = (Operand){g->b, &g->b_at, true, false};
        op[n++] = (Operand){g->c, &g->c_at, g->accumulate, true};
        if (g->bias)
            op[n++] = (Operand){g->bias, &g->bias_at, true, false};
    } else if (s->kind == L_POOL) {
        Pool *p = s->pool;
        op[n++] = (Operand){p->x, &p->x_at, true, false};
        if (!p->backward) {
            op[n++] = (Operand){p->y, &p->y_at, false, true};
            return n;
        }
        op[n++] = (Operand){p->y, &p->y_at, true, false};
        op[n++] = (Operand){p->dy, &p->dy_at, true, false};
        if (p->mask)
            op[n++] = (Operand){p->mask, &p->mask_at, true, false};
        op[n++] = (Operand){p->dx, &p->dx_at, false, true};
    }
    return n;
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
    const Buf *out = L->buf[n->id];
    int b = open_for(L, out && !out->batched ? 1 : -1);
    LStmt *s = (*top)->at[(*top)->n - 1];
    s->comment = arena_printf("%%%d = %s%s%s : %s", n->id, op_name(n->op), n->label ? " " : "",
                              n->label ? n->label : "", shape_str(n->shape));
    return b;
}

/* n / E, E (n / E), n - E (n / E) */
static Expr *groups_of(int64_t E) { return ex(X_IDIV, var(0), i64(E)); }
static Expr *grouped(int64_t E) { return imul(groups_of(E), i64(E)); }
static Expr *left_over(int64_t E) { return iadd(var(0), imul(grouped(E), i64(-1))); }

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
    case OP_CLIP:    return ex(X_MIN, ex(X_MAX, x, f32(n->alpha)), f32(n->beta));   /* min(max(x, lo), hi) */
    case OP_FILL:    return f32(n->value);
    case OP_WRAP: {  /* t = trunc(x); t - 256 floor((t - lo) / 256): into [lo, lo + 256) */
        float lo = n->aux == ET_I8 ? -128 : 0;
        Expr *t = ex(X_TRUNC, x, NULL);
        return ex(X_SUB, t, ex(X_MUL, f32(256), ex(X_FLOOR, ex(X_DIV, ex(X_SUB, t, f32(lo)), f32(256)), NULL)));
    }
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
    if (n->op == OP_ADD && L->fused[n->id])
        v = ex(X_MAX, v, f32(0));                  /* the ReLU after it (fuse_nodes) */
    store(L, L->buf[n->id], at(L->buf[n->id], b, i), v, false);
    L->out = top;
}

/* ---- layers --------------------------------------------------------------- */

/* y = b before the GEMM of layer n accumulates into y (--no-fuse): per
 * channel for a conv (inside example loop b), per output for a dense layer. */
static void bias_init(Lower *L, const Node *n, int b, bool conv)
{
    Vec *top = L->out;
    const Buf *y = L->buf[n->id];
    if (conv) {
        int64_t P = n->shape.d[1] * n->shape.d[2];
        int c = open_for(L, n->shape.d[0]), p = open_for(L, P);
        store(L, y, at(y, b, imad(var(c), P, var(p))), elem(L, n->in[2], b, var(c)), false);
    } else {
        int e = begin(L, n, &top);
        int o = open_for(L, n->shape.d[0]);
        store(L, y, at(y, e, var(o)), elem(L, n->in[2], e, var(o)), false);
    }
    L->out = top;
}

/* With --no-fuse, a layer's bias is a loop nest of its own before its GEMM
 * (which then accumulates, see epilogue); else nothing. */
static bool bias_first(Lower *L, const Node *n, int b, bool conv)
{
    if (n->nin <= 2 || L->fuse)
        return false;
    bias_init(L, n, b, conv);
    return true;
}

/* The epilogue of the GEMM just emitted for layer n: its bias (the layer's
 * third input, if any; per row of C for a conv, from row0 on, per column for
 * a dense layer) and its ReLU when fused (fuse_nodes). */
static void epilogue(Lower *L, const Node *n, bool conv, Expr *row0)
{
    Gemm *g = ((LStmt *)L->out->at[L->out->n - 1])->gemm;
    g->relu = L->fused[n->id];
    if (n->nin <= 2)
        return;
    if (!L->fuse) {
        g->accumulate = true;
        return;
    }
    g->bias = L->buf[n->in[2]->id];
    g->bias_at = row0, g->bias_rows = conv;
}

/* The GEMM just emitted, over the batch's rows, by weights of `floats`
 * floats: when those are larger than the L2 and the GEMM is at the kernel's
 * top level (called once a kernel call, whatever the batch, as the threads
 * running slices must call it together), the slices share it (Gemm
 * shared_b): each thread had streamed all of AlexNet's 234 MB of dense
 * weights for its own slice. */
static void shared_weights(Lower *L, bool batched, int64_t floats)
{
    if (batched && L->out == &L->k->body && (int64_t)sizeof(float) * floats > host_l2_bytes())
        ((LStmt *)L->out->at[L->out->n - 1])->gemm->shared_b = true;
}

/* dense: Y = X W^T + b, one GEMM of [n, D] by the transpose of W [N, D]:
 * X's rows and W's rows both run along D (gemm_nt), so W is used as it is;
 * b and a following ReLU in its epilogue */
static void lower_dense(Lower *L, const Node *n)
{
    const Node *x = n->in[0];
    int64_t D = x->shape.d[0], N = n->shape.d[0];
    const Buf *y = L->buf[n->id], *xb = L->buf[x->id], *W = L->buf[n->in[1]->id];
    bias_first(L, n, 0, false);
    gemm_nt(L, y->batched ? var(0) : i64(1), N, i64(D), xb, i64(0), xb->batched ? D : 0, W, i64(0), D, y, i64(0), N,
            false);
    shared_weights(L, y->batched, N * D);
    epilogue(L, n, false, i64(0));
}

/* The input row (column) of output position o and kernel tap t:
 * o stride - pad + t dilation; and whether it falls inside the image
 * (padding reads nothing). */
static Expr *tap_h(const Window *w, int o, int t)
{
    return iadd(iadd(imul(var(o), i64(w->sh)), i64(-w->pt)), imul(var(t), i64(w->dh)));
}

static Expr *tap_w(const Window *w, int o, int t)
{
    return iadd(iadd(imul(var(o), i64(w->sw)), i64(-w->pl)), imul(var(t), i64(w->dw)));
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

/* min(max(e, 0), n - 1): an index kept inside [0, n) */
static Expr *clamp(Expr *e, int64_t n)
{
    return ex(X_IMIN, ex(X_IMAX, e, i64(0)), i64(n - 1));
}

/* A 1x1 convolution at stride 1 without padding reads its input as it is. */
static bool pointwise(const Window *w)
{
    return w->kh == 1 && w->kw == 1 && w->sh == 1 && w->sw == 1 && !w->pt && !w->pl && !w->pb && !w->pr;
}

/* At stride 1, the outputs o in [0, O) whose tap o - pad + t d falls inside
 * [0, size): [max(0, pad - t d), min(O, size + pad - t d)). */
static Expr *outs_lo(int t, int d, int64_t pad) { return pad ? ex(X_IMAX, i64(0), iadd(i64(pad), imul(var(t), i64(-d)))) : i64(0); }
static Expr *outs_hi(int t, int d, int64_t pad, int64_t O, int64_t size)
{
    return ex(X_IMIN, i64(O), iadd(i64(size + pad), imul(var(t), i64(-d))));
}

static bool has_padding(const Window *w) { return w->pt || w->pl || w->pb || w->pr; }

/* Row by row (see im2col) when each output row's valid columns form one
 * range: at stride 1, or without left and right padding. */
static bool row_copies(const Window *w) { return w->sw == 1 || (!w->pl && !w->pr); }

/* Whether input row ih is inside the image (padding rows read nothing). */
static Expr *row_inside(Expr *ih, int64_t H, const Window *w)
{
    Expr *c = NULL;
    if (w->pt) c = and2(c, ex(X_LE, i64(0), ih));
    if (w->pb) c = and2(c, ex(X_LT, ih, i64(H)));
    return c;
}

/* Output rows [oh0, oh0 + rows) of an im2col matrix: the loop over oh, and
 * the column of col that (oh, ow) is: (oh - oh0) OW + ow. */
typedef struct { Expr *oh0; int64_t rows; } Rows;

static int open_rows(Lower *L, Rows r) { return open_range(L, r.oh0, iadd(r.oh0, i64(r.rows))); }
static Expr *col_of(Rows r, int oh, int64_t OW, int ow)
{
    return imad(iadd(var(oh), imul(r.oh0, i64(-1))), OW, var(ow));
}

/* Loops over the cells (ci, kh, kw, oh, ow) of an im2col matrix [K, rows OW]
 * of output rows r whose input cell (ci, ih, iw) is inside the image, a row
 * of ow at a time so that the innermost loop runs along contiguous memory;
 * returns the innermost variables through k (the row of col), p (its
 * column) and the input index. Padding cells are left alone. */
static void col_cells(Lower *L, const Window *w, Shape in, Shape out, Rows r, Expr **k, Expr **p, Expr **xi)
{
    int64_t H = in.d[1], W = in.d[2], OW = out.d[2];
    int ci = open_for(L, in.d[0]), kh = open_for(L, w->kh), kw = open_for(L, w->kw), oh = open_rows(L, r);
    Expr *ih = tap_h(w, oh, kh);
    open_if(L, row_inside(ih, H, w));
    bool cut = w->sw == 1 && (w->pl || w->pr);
    int ow = open_range(L, cut ? outs_lo(kw, w->dw, w->pl) : i64(0), cut ? outs_hi(kw, w->dw, w->pl, OW, W) : i64(OW));
    *k = imad(imad(var(ci), w->kh, var(kh)), w->kw, var(kw));
    *p = col_of(r, oh, OW, ow);
    *xi = imad(imad(var(ci), H, ih), W, tap_w(w, ow, kw));
}

/* Zeroes a scratch buffer of `size` floats. */
static void zero_scratch(Lower *L, const Buf *buf, int64_t size)
{
    Vec *here = L->out;
    int i = open_for(L, size);
    store(L, buf, var(i), f32(0), false);
    L->out = here;
}

/* ---- padded copies of an image (convolutions, depthwise convs, pooling) ---- */

/* Channel c (an open loop's variable) of example b of src [C, H, W], copied
 * into its place in the padded scratch dst [C, H + pt + pb, W + pl + pr]:
 * the padding rows and columns set to `fill` (0 around a conv's input,
 * -inf around a max pooling's), the image copied. Done per channel
 * inside the channel loop, so the channel is still in L1/L2 when it is
 * read, and the channel loop stays independent (each iteration writes its
 * own block of dst). */
typedef struct { int64_t t, b, l, r; } Pads;

static Expr *pre_act(const Node *pre, Expr *v) { return pre ? unary(pre, v) : v; }

static void pad_plane(Lower *L, const Node *src, int b, int c, int64_t H, int64_t W, Pads p, const Buf *dst,
                      const Node *pre, float fill)
{
    Vec *here = L->out;
    int64_t Hp = H + p.t + p.b, Wp = W + p.l + p.r;
    Expr *base = imul(plane_of(dst, var(c)), i64(Hp * Wp));
    if (p.t) {
        int i = open_for(L, p.t * Wp);
        store(L, dst, iadd(base, var(i)), f32(fill), false);
        L->out = here;
    }
    if (p.b) {
        int i = open_for(L, p.b * Wp);
        store(L, dst, iadd(base, iadd(i64((p.t + H) * Wp), var(i))), f32(fill), false);
        L->out = here;
    }
    int ih = open_for(L, H);
    Vec *row = L->out;
    Expr *rp = iadd(base, imul(iadd(var(ih), i64(p.t)), i64(Wp)));   /* the padded row's start */
    if (p.l) {
        int j = open_for(L, p.l);
        store(L, dst, iadd(rp, var(j)), f32(fill), false);
        L->out = row;
    }
    if (p.r) {
        int j = open_for(L, p.r);
        store(L, dst, iadd(rp, iadd(i64(p.l + W), var(j))), f32(fill), false);
        L->out = row;
    }
    int iw = open_for(L, W);
    store(L, dst, iadd(rp, iadd(i64(p.l), var(iw))),
          pre_act(pre, elem(L, src, b, imad(imad(var(c), H, var(ih)), W, var(iw)))), false);
    L->out = here;
}

static void pad_channel(Lower *L, const Node *x, int b, int ci, const Window *w, const Buf *xp)
{
    pad_plane(L, x, b, ci, x->shape.d[1], x->shape.d[2], (Pads){w->pt, w->pb, w->pl, w->pr}, xp, NULL, 0);
}

/* At stride s > 1 along the width, the padded copy of channel c is
 * deinterleaved: padded column j of a row goes to phase j % s, at j / s,
 * each row holding its s phases one after the other, Wq = ceil(Wp / s) cells
 * each: xq [C, Hp, s, Wq]. Output column ow's tap kw (column ow s + kw d)
 * is then phase (kw d) % s at ow + (kw d) / s: contiguous in ow, so the
 * taps' loads are plain vector loads instead of gathers. The copy reads each
 * input row once, s cells per step (LLVM's interleaved loads); the few cells
 * at the ends of a row, where a phase falls in the padding, select. */
static int64_t phase_len(const Window *w, int64_t W) { return (W + w->pl + w->pr + w->sw - 1) / w->sw; }

/* One input row (rx its first cell in x) split into its s column phases:
 * phase p's cell q (padded column q s + p) at dst[rq + p ps + q], q < Wq. */
static void phase_row(Lower *L, const Node *x, int b, Expr *rx, const Window *w, int64_t W, const Buf *dst,
                      Expr *rq, int64_t ps, const Node *pre, float fill)
{
    Vec *row = L->out;
    int64_t st = w->sw, Wq = phase_len(w, W);
    /* q in [lo, hi): every phase's column q s + p - pl inside [0, W) */
    int64_t lo = (w->pl + st - 1) / st, hi = (W + w->pl - st) / st + 1;
    if (hi < lo)
        hi = lo;
    if (lo > Wq)
        lo = hi = Wq;
    if (hi > Wq)
        hi = Wq;
    int64_t ends[2][2] = {{0, lo}, {hi, Wq}};
    for (int e = 0; e < 2; e++) {
        if (ends[e][0] >= ends[e][1])
            continue;
        int q = open_range(L, i64(ends[e][0]), i64(ends[e][1]));
        for (int64_t p = 0; p < st; p++) {
            Expr *iw = iadd(imul(var(q), i64(st)), i64(p - w->pl));
            Expr *in = and2(ex(X_LE, i64(0), iw), ex(X_LT, iw, i64(W)));
            store(L, dst, iadd(rq, iadd(i64(p * ps), var(q))),
                  select3(in, pre_act(pre, elem(L, x, b, iadd(rx, clamp(iw, W)))), f32(fill)), false);
        }
        L->out = row;
    }
    if (lo < hi) {
        int q = open_range(L, i64(lo), i64(hi));
        for (int64_t p = 0; p < st; p++)
            store(L, dst, iadd(rq, iadd(i64(p * ps), var(q))),
                  pre_act(pre, elem(L, x, b, iadd(rx, iadd(imul(var(q), i64(st)), i64(p - w->pl))))), false);
        L->out = row;
    }
}

static void pad_channel_phased(Lower *L, const Node *x, int b, int c, const Window *w, const Buf *xq,
                               const Node *pre, float fill)
{
    Vec *here = L->out;
    int64_t H = x->shape.d[1], W = x->shape.d[2], Hp = H + w->pt + w->pb, st = w->sw;
    int64_t Wq = phase_len(w, W), Wr = st * Wq;
    Expr *base = imul(plane_of(xq, var(c)), i64(Hp * Wr));
    if (w->pt) {
        int i = open_for(L, w->pt * Wr);
        store(L, xq, iadd(base, var(i)), f32(fill), false);
        L->out = here;
    }
    if (w->pb) {
        int i = open_for(L, w->pb * Wr);
        store(L, xq, iadd(base, iadd(i64((w->pt + H) * Wr), var(i))), f32(fill), false);
        L->out = here;
    }
    int ih = open_for(L, H);
    Expr *rq = iadd(base, imul(iadd(var(ih), i64(w->pt)), i64(Wr)));      /* the row's phases */
    phase_row(L, x, b, imul(imad(var(c), H, var(ih)), i64(W)), w, W, xq, rq, Wq, pre, fill);
    L->out = here;
}

/* Stride s along both axes: channel c's padded copy split by row and column
 * phase into s^2 planes [Hq, Wq] (Hq = ceil(Hp / s)): padded cell (r, j) at
 * plane (r % s, j % s), cell (r / s, j / s); xs [C, s, s, Hq, Wq], zeroed
 * first (cells past the padded image too). */
static int64_t phase_rows(const Window *w, int64_t H) { return (H + w->pt + w->pb + w->sh - 1) / w->sh; }

static void pad_channel_planes(Lower *L, const Node *x, int b, int c, const Window *w, const Buf *xs)
{
    Vec *here = L->out;
    int64_t H = x->shape.d[1], W = x->shape.d[2], st = w->sh, Hq = phase_rows(w, H), Wq = phase_len(w, W);
    int64_t plane = Hq * Wq;
    Expr *base = imul(var(c), i64(st * st * plane));
    int i = open_for(L, st * st * plane);
    store(L, xs, iadd(base, var(i)), f32(0), false);
    L->out = here;
    for (int64_t rp = 0; rp < st; rp++) {
        /* rows r = i s + rp of the padded image that are input rows ih = r - pt in [0, H) */
        int64_t lo = (w->pt - rp + st - 1) / st, hi = (H - 1 + w->pt - rp) / st + 1;
        if (lo < 0)
            lo = 0;
        if (hi <= lo)
            continue;
        int r = open_range(L, i64(lo), i64(hi));
        Expr *ih = iadd(imul(var(r), i64(st)), i64(rp - w->pt));
        Expr *rq = iadd(base, iadd(i64(rp * st * plane), imul(var(r), i64(Wq))));
        phase_row(L, x, b, imul(imad(var(c), H, ih), i64(W)), w, W, xs, rq, plane, NULL, 0);
        L->out = here;
    }
}

/* The copy of each channel that a window's unrolled taps read (a depthwise
 * conv, a pooling): [C, Hp, Wp] padded, or at stride s > 1 along the width
 * phased, [C, Hp, s, Wq] (pad_channel_phased); Wq = Wp at stride 1. */
static const Buf *window_scratch(Lower *L, const Node *x, const Window *w, const char *name)
{
    int64_t Hp = x->shape.d[1] + w->pt + w->pb;
    return scratch(L, name, x->shape.d[0] * Hp * w->sw * phase_len(w, x->shape.d[2]));
}

/* The floats of one channel's padded (phased) copy, as window_copy writes it. */
static int64_t window_plane(const Node *x, const Window *w)
{
    return (x->shape.d[1] + w->pt + w->pb) * w->sw * phase_len(w, x->shape.d[2]);
}

/* That copy in the thread's private scratch at `at`: for a nest over the
 * channels that copies each channel and then reads only that copy. */
static const Buf *window_private(Lower *L, const Node *x, const Window *w, const char *name, int64_t at)
{
    return private_scratch(L, name, at, window_plane(x, w));
}

/* Channel c of example b of x into that copy, the padding `fill`, with the
 * activation pre (or none) applied. */
static void window_copy(Lower *L, const Node *x, int b, int c, const Window *w, const Buf *xp, const Node *pre,
                        float fill)
{
    if (w->sw > 1)
        pad_channel_phased(L, x, b, c, w, xp, pre, fill);
    else
        pad_plane(L, x, b, c, x->shape.d[1], x->shape.d[2], (Pads){w->pt, w->pb, w->pl, w->pr}, xp, pre, fill);
}

/* Tap (kh, kw) of output (oh, ow) of channel c in that copy (or in x
 * itself, with Hp = H and Wq = W, when there is no padding at stride 1):
 * at stride s > 1, phase (kw d) % s at ow + (kw d) / s, contiguous in ow. */
static Expr *window_tap(const Window *w, Expr *c, int64_t Hp, int64_t Wq, int oh, int ow, int kh, int kw)
{
    Expr *row = iadd(imul(var(oh), i64(w->sh)), i64(kh * w->dh));
    if (w->sw > 1)
        return iadd(imad(imad(c, Hp, row), w->sw * Wq, var(ow)), i64((kw * w->dw) % w->sw * Wq + kw * w->dw / w->sw));
    return imad(imad(c, Hp, row), Wq, iadd(var(ow), i64(kw * w->dw)));
}

/* im2col with padding: the image is first copied into a zeroed, padded
 * scratch copy xp [C, H + pt + pb, W + pl + pr], so every row of col is then
 * one unconditional copy of OW cells (no per-row bounds, no zeroing of col):
 *   col[k, p] = xp[ci, oh s + kh d, ow s + kw d] */
/* The padded copy of example b of x: xp [C, H + pt + pb, W + pl + pr], zeros
 * around the image. */
static const Buf *pad_copy(Lower *L, const Node *x, int b, const Window *w)
{
    Vec *here = L->out;
    int64_t C = x->shape.d[0], H = x->shape.d[1], W = x->shape.d[2];
    int64_t Hp = H + w->pt + w->pb, Wp = W + w->pl + w->pr;
    const Buf *xp = scratch(L, "xpad", C * Hp * Wp);
    zero_scratch(L, xp, C * Hp * Wp);
    int ci = open_for(L, C), ih = open_for(L, H), iw = open_for(L, W);
    store(L, xp, imad(imad(var(ci), Hp, iadd(var(ih), i64(w->pt))), Wp, iadd(var(iw), i64(w->pl))),
          elem(L, x, b, imad(imad(var(ci), H, var(ih)), W, var(iw))), false);
    L->out = here;
    return xp;
}

/* The cell of a padded image [., Hp, Wp] that output (oh, ow) of channel
 * `ch` reads through tap (kh, kw): xp[ch, oh s + kh d, ow s + kw d] */
static Expr *padded_tap(const Window *w, Expr *ch, int64_t Hp, int64_t Wp, int oh, int ow, int kh, int kw)
{
    return imad(imad(ch, Hp, iadd(imul(var(oh), i64(w->sh)), imul(var(kh), i64(w->dh)))), Wp,
                iadd(imul(var(ow), i64(w->sw)), imul(var(kw), i64(w->dw))));
}

/* im2col from the padded copy xp (im2col_source), one contiguous run of OW
 * cells per (k, oh): at stride s > 1 xp is phased [C, Hp, s, Wq], tap kw's
 * cells of a row at phase (kw d) % s from ow + (kw d) / s on (see
 * phase_len), else [C, Hp, Wp]. The outer loop runs over the (ci, kh)
 * pairs, so that threads splitting it share even a 3-channel image evenly. */
static void im2col_padded(Lower *L, const Buf *xp, const Node *x, const Window *w, Shape out, Rows r,
                          int64_t ld, Expr *col0, const Buf *col)
{
    Vec *here = L->out;
    int64_t C = x->shape.d[0], Hp = x->shape.d[1] + w->pt + w->pb, OW = out.d[2];
    int64_t s = w->sw, Wq = phase_len(w, x->shape.d[2]);
    int ck = open_for(L, C * w->kh), kw = open_for(L, w->kw), oh = open_rows(L, r), ow = open_for(L, OW);
    Expr *ci = ex(X_IDIV, var(ck), i64(w->kh)), *kh = iadd(var(ck), imul(ci, i64(-w->kh)));
    Expr *row = iadd(imul(var(oh), i64(w->sh)), imul(kh, i64(w->dh)));         /* the padded row */
    Expr *c = imul(var(kw), i64(w->dw)), *q = s > 1 ? ex(X_IDIV, c, i64(s)) : c;  /* the tap's column */
    Expr *phase = s > 1 ? iadd(c, imul(q, i64(-s))) : i64(0);
    Expr *xi = iadd(imad(imad(imad(ci, Hp, row), s, phase), Wq, var(ow)), q);
    store(L, col, imad(imad(var(ck), w->kw, var(kw)), ld, iadd(col0, col_of(r, oh, OW, ow))), load(xp, xi), false);
    L->out = here;
}

/* im2col of output rows r of example b: col[k, col0 + p] = x[ci, oh s + kh d
 * - pad, ow s + kw d - pad] (0 in the padding) for k = (ci, kh, kw) and p =
 * (oh - oh0, ow): a matrix [K, rows OW] (rows ld floats long, ld = rows OW
 * but where several examples share col side by side).
 * Schedule: with padding, from the padded copy xp (pad_copy, made once per
 * example by the caller); else a row of contiguous copies at a time
 * (col_cells); other windows (strided with left/right padding) select per
 * cell. */
static void im2col_rows(Lower *L, const Node *x, int b, const Buf *xp, const Window *w, Shape out, Rows r,
                        int64_t ld, Expr *col0, const Buf *col)
{
    Vec *here = L->out;
    int64_t C = x->shape.d[0], H = x->shape.d[1], W = x->shape.d[2], OW = out.d[2];
    if (xp) {
        im2col_padded(L, xp, x, w, out, r, ld, col0, col);
        return;
    }
    if (row_copies(w)) {
        Expr *k, *p, *xi;
        col_cells(L, w, x->shape, out, r, &k, &p, &xi);
        store(L, col, imad(k, ld, iadd(col0, p)), elem(L, x, b, xi), false);
        L->out = here;
        return;
    }
    int ci = open_for(L, C), kh = open_for(L, w->kh), kw = open_for(L, w->kw);
    int oh = open_rows(L, r), ow = open_for(L, OW);
    Expr *k = imad(imad(var(ci), w->kh, var(kh)), w->kw, var(kw)), *p = col_of(r, oh, OW, ow);
    Expr *ih = tap_h(w, oh, kh), *iw = tap_w(w, ow, kw), *in = inside(ih, iw, H, W, w);
    Expr *v = elem(L, x, b, imad(imad(var(ci), H, in ? clamp(ih, H) : ih), W, in ? clamp(iw, W) : iw));
    store(L, col, imad(k, ld, iadd(col0, p)), in ? select3(in, v, f32(0)) : v, false);
    L->out = here;
}

/* The padded copy of example b that im2col_rows reads, or NULL: at stride
 * s > 1 phased along the width (window_copy), so that each tap's run of
 * cells is contiguous rather than every s-th (ResNet's 7x7 stride-2 first
 * layer spent as long on its im2col as on its GEMM). */
static const Buf *im2col_source(Lower *L, const Node *x, int b, const Window *w)
{
    if (!has_padding(w))
        return NULL;
    if (w->sw == 1)
        return pad_copy(L, x, b, w);
    Vec *here = L->out;
    const Buf *xq = window_scratch(L, x, w, "xphase");
    int ci = open_for(L, x->shape.d[0]);
    window_copy(L, x, b, ci, w, xq, NULL, 0);
    L->out = here;
    return xq;
}

/* The output rows of a convolution's im2col at a time. Built whole, a
 * matrix [K, OH OW] larger than the L2 goes out to memory and comes back for
 * the GEMM (VGG's first layers: 115 MB per example at 224 x 224); a chunk of
 * rows is used by its GEMM while it is still in the L2. So: the most rows
 * that divide OH and fit in half the host's L2, but not fewer than make
 * min_cols columns (a GEMM a few columns wide wastes its vectors); all OH
 * rows when there are none such. */
/* The forward GEMM runs along a chunk's columns in vectors; the weight
 * gradient's (A B^T) sums along them. */
enum { FWD_COLS = 16, DW_COLS = 256 };

static int64_t col_rows(int64_t K, int64_t OH, int64_t OW, int64_t min_cols)
{
    int64_t budget = host_l2_bytes() / 2;
    for (int64_t r = OH; r >= 1; r--)
        if (OH % r == 0 && r * OW >= min_cols && (int64_t)sizeof(float) * K * r * OW <= budget)
            return r;
    return OH;
}

/* The chunk loop of a convolution's im2col, R of the out's OH rows a chunk
 * (none when R = OH), and the chunk's im2col into col; the chunk's first
 * column of the output (or of its gradient). */
static Expr *im2col_chunk(Lower *L, const Node *x, int b, const Buf *xp, const Window *w, Shape out, int64_t R,
                          const Buf *col)
{
    int64_t OH = out.d[1];
    Rows r = {R < OH ? imul(var(open_for(L, OH / R)), i64(R)) : i64(0), R};
    im2col_rows(L, x, b, xp, w, out, r, R * out.d[2], i64(0), col);
    return imul(r.oh0, i64(out.d[2]));
}

/* A loop over a conv's channel groups (none for one group); returns the group. */
static Expr *group_loop(Lower *L, const Window *w)
{
    return w->groups > 1 ? var(open_for(L, w->groups)) : i64(0);
}

/* ---- depthwise convolution ----------------------------------------------------
 * groups = C: output channel co sees input channel ci = co / m alone (m = c / C,
 * usually 1), through its own kh x kw taps. An im2col would copy each cell
 * kh kw times for a product of one row, so these run directly on a padded
 * copy of the image (pad_copy), row by row, the innermost loop along ow. */

static void zero(Lower *L, const Node *n);

static bool depthwise(const Window *w, const Node *x) { return w->groups > 1 && w->groups == x->shape.d[0]; }

/* Opens the loops over a depthwise conv's channels: each of the C input
 * channels ci and its output channels co = ci m + j, j < m; returns co. */
static Expr *depthwise_channels(Lower *L, int64_t C, int64_t m, int *ci)
{
    *ci = open_for(L, C);
    return m > 1 ? imad(var(*ci), m, var(open_for(L, m))) : var(*ci);
}

/* Up to this many taps, a depthwise conv's taps are unrolled into one sum
 * per output (their weights in scalars); larger windows loop over them. */
enum { DW_UNROLL_TAPS = 49 };

static bool dw_unrolled(const Window *w) { return w->kh * w->kw <= DW_UNROLL_TAPS; }

/* Depthwise conv n's kh kw weights of output channel co, in scalars. */
static void dw_weights(Lower *L, const Node *n, Expr *co, int *wv)
{
    int taps = n->win.kh * n->win.kw;
    for (int t = 0; t < taps; t++)
        wv[t] = set_new(L, load(L->buf[n->in[1]->id], iadd(imul(co, i64(taps)), i64(t))));
}

/* The activation (ReLU or clip) applied as depthwise conv n stores y (see
 * fuse_nodes), or NULL. */
static Expr *dw_activation(const Lower *L, const Node *n, Expr *v)
{
    const Node *a = L->act[n->id];
    if (a)
        return unary(a, v);
    return L->fused[n->id] ? ex(X_MAX, v, f32(0)) : v;
}

/* y[co, oh, ow] = act((b[co] + sum_{kh, kw} W[co, kh, kw] xp[ci, oh s + kh d, ow s + kw d]) s[co] + t[co])
 * with (s, t) = (1, 0), or a folded inference batchnorm's scale and shift
 * (see fold_batchnorm), and act a fused ReLU or clip, or none.
 * Schedule: per input channel, its padded copy (window_copy, into a plane of
 * the thread's private scratch), then per
 * output channel of it the kh kw weights in scalars, and per output row one
 * loop along ow whose body is the whole unrolled sum of taps: each output is
 * stored once, the loop is contiguous in ow (strided by s in xp), and LLVM
 * vectorizes it along ow. */
static void lower_conv_depthwise_unrolled(Lower *L, const Node *n)
{
    Vec *top;
    const Window *w = &n->win;
    const Node *x = n->in[0], *bn = L->folded[n->id];
    int64_t C = x->shape.d[0], OH = n->shape.d[1], OW = n->shape.d[2];
    int64_t Hp = x->shape.d[1] + w->pt + w->pb, Wq = phase_len(w, x->shape.d[2]);
    const Buf *y = L->buf[n->id];
    bool phased = w->sw > 1;
    const Buf *xp = has_padding(w) || phased ? window_private(L, x, w, phased ? "xphase" : "xpad", 0) : NULL;
    int64_t m = n->shape.d[0] / C;
    int b = begin(L, n, &top), ci = open_for(L, C);
    const Node *pre = L->pre[n->id];
    if (xp)
        window_copy(L, x, b, ci, w, xp, pre, 0);
    Expr *co = m > 1 ? imad(var(ci), m, var(open_for(L, m))) : var(ci);
    int wv[DW_UNROLL_TAPS];
    dw_weights(L, n, co, wv);
    Expr *bias = n->nin > 2 ? elem(L, n->in[2], b, co) : NULL;
    int scale = -1, shift = -1;
    if (bn) {           /* (acc + bias - mean) s + beta, s = gamma / sqrt(var + eps) */
        scale = set_new(L, ex(X_DIV, elem(L, bn->in[1], b, co),
                              ex(X_SQRT, ex(X_ADD, elem(L, bn->in[4], b, co), f32(bn->alpha)), NULL)));
        Expr *mean = elem(L, bn->in[3], b, co);
        shift = set_new(L, ex(X_ADD, elem(L, bn->in[2], b, co),
                              ex(X_MUL, bias ? ex(X_SUB, bias, mean) : ex(X_NEG, mean, NULL), get(scale))));
        bias = NULL;
    }
    int oh = open_for(L, OH), ow = open_for(L, OW);
    Expr *sum = bias;
    for (int kh = 0; kh < w->kh; kh++)
        for (int kw = 0; kw < w->kw; kw++) {
            Expr *xi = window_tap(w, xp ? plane_of(xp, var(ci)) : var(ci), Hp, Wq, oh, ow, kh, kw);
            Expr *term = ex(X_MUL, get(wv[kh * w->kw + kw]), xp ? load(xp, xi) : pre_act(pre, elem(L, x, b, xi)));
            sum = sum ? ex(X_ADD, sum, term) : term;
        }
    if (bn)
        sum = ex(X_ADD, ex(X_MUL, sum, get(scale)), get(shift));
    store(L, y, at(y, b, imad(imad(co, OH, var(oh)), OW, var(ow))), dw_activation(L, n, sum), false);
    L->out = top;
}

/* y[co, oh, ow] = b[co] + sum_{kh, kw} W[co, kh, kw] xp[ci, oh s + kh d, ow s + kw d],
 * then max(0, y) when a ReLU is fused into the layer: windows of more than
 * DW_UNROLL_TAPS taps, a loop over the taps accumulating into y */
static void lower_conv_depthwise(Lower *L, const Node *n)
{
    if (dw_unrolled(&n->win)) {
        lower_conv_depthwise_unrolled(L, n);
        return;
    }
    Vec *top;
    const Window *w = &n->win;
    const Node *x = n->in[0];
    int64_t OH = n->shape.d[1], OW = n->shape.d[2];
    int64_t Hp = x->shape.d[1] + w->pt + w->pb, Wp = x->shape.d[2] + w->pl + w->pr;
    const Buf *y = L->buf[n->id], *Wb = L->buf[n->in[1]->id];
    int b = begin(L, n, &top), ci;
    const Buf *xp = pad_copy(L, x, b, w);
    Expr *co = depthwise_channels(L, x->shape.d[0], n->shape.d[0] / x->shape.d[0], &ci);
    int oh = open_for(L, OH);
    Vec *row = L->out;
    int ow = open_for(L, OW);
    Expr *yi = at(y, b, imad(imad(co, OH, var(oh)), OW, var(ow)));
    store(L, y, yi, n->nin > 2 ? elem(L, n->in[2], b, co) : f32(0), false);
    L->out = row;
    int kh = open_for(L, w->kh), kw = open_for(L, w->kw);
    ow = open_for(L, OW);
    yi = at(y, b, imad(imad(co, OH, var(oh)), OW, var(ow)));
    Expr *wt = load(Wb, imad(imad(co, w->kh, var(kh)), w->kw, var(kw)));
    store(L, y, yi, ex(X_MUL, wt, load(xp, padded_tap(w, var(ci), Hp, Wp, oh, ow, kh, kw))), true);
    L->out = row;
    if (L->fused[n->id]) {
        ow = open_for(L, OW);
        yi = at(y, b, imad(imad(co, OH, var(oh)), OW, var(ow)));
        store(L, y, yi, ex(X_MAX, load(y, yi), f32(0)), false);
    }
    L->out = top;
}

/* dx[ci, ih, iw] = sum_{co of ci} sum_{kh, kw} W[co, kh, kw] dy[co, oh, ow] over
 * ih = oh s + kh d - pt (likewise iw): scattered into a zeroed padded
 * scratch dxp, whose inside is then dx */
/* The padding of dy that makes a stride-1 depthwise conv's dx a forward
 * depthwise conv of dy with the taps reversed: (k - 1) d - pad on each side;
 * false if one is negative, the stride is not 1, or the window is too large
 * to unroll. */
static bool dx_as_conv(const Window *w, Pads *p)
{
    *p = (Pads){(w->kh - 1) * w->dh - w->pt, (w->kh - 1) * w->dh - w->pb, (w->kw - 1) * w->dw - w->pl,
                (w->kw - 1) * w->dw - w->pr};
    return w->sh == 1 && w->sw == 1 && dw_unrolled(w) && p->t >= 0 && p->b >= 0 && p->l >= 0 && p->r >= 0;
}

/* Stride 1, one output channel per input channel (m = 1):
 *   dx[c, ih, iw] = sum_{kh, kw} W[c, kh, kw] dyp[c, ih + (KH-1-kh) d, iw + (KW-1-kw) d]
 * with dyp dy padded by dx_as_conv's pads (per channel, pad_plane): the
 * transposed conv is a plain one, run as the forward (taps unrolled into one
 * sum per dx cell, contiguous in iw). */
static void lower_conv_dx_depthwise_unrolled(Lower *L, const Node *n, Pads pd)
{
    Vec *top;
    const Window *w = &n->win;
    const Node *dy = n->in[0];
    int64_t C = n->shape.d[0], H = n->shape.d[1], W = n->shape.d[2], OH = dy->shape.d[1], OW = dy->shape.d[2];
    int64_t Hq = OH + pd.t + pd.b, Wq = OW + pd.l + pd.r;
    const Buf *dx = L->buf[n->id], *dyp = scratch(L, "dypad", C * Hq * Wq);
    int b = begin(L, n, &top), c = open_for(L, C);
    pad_plane(L, dy, b, c, OH, OW, pd, dyp, NULL, 0);
    int wv[DW_UNROLL_TAPS];
    dw_weights(L, n, var(c), wv);
    int ih = open_for(L, H), iw = open_for(L, W);
    Expr *sum = NULL;
    for (int kh = 0; kh < w->kh; kh++)
        for (int kw = 0; kw < w->kw; kw++) {
            Expr *i = imad(imad(var(c), Hq, iadd(var(ih), i64((w->kh - 1 - kh) * w->dh))), Wq,
                           iadd(var(iw), i64((w->kw - 1 - kw) * w->dw)));
            Expr *term = ex(X_MUL, get(wv[kh * w->kw + kw]), load(dyp, i));
            sum = sum ? ex(X_ADD, sum, term) : term;
        }
    store(L, dx, at(dx, b, imad(imad(var(c), H, var(ih)), W, var(iw))), sum, false);
    L->out = top;
}

/* Stride s > 1 (the same along both axes), m = 1. In padded coordinates
 * (r, j) = (ih + pt, iw + pl), dx at row phase a = r % s, r = i s + a, gets
 * the taps kh with kh d = a (mod s), from dy row i - e, e = (kh d - a) / s;
 * likewise along the width. So each of the s^2 phase planes [Hq, Wq] of dx
 * is a plain stride-1 conv of dy with a subset of the taps at offsets e:
 *   dxs[c, a, a', i, j] = sum_{kh ~ a, kw ~ a'} W[c, kh, kw] dyp[c, i + Eh - e(kh), j + Ew - e(kw)]
 * dyp being dy padded by Eh = max e above and Ew = max e on the left (and
 * below and on the right to cover Hq, Wq); then dx is read back from the
 * planes (dx[c, ih, iw] = dxs[c, r % s, j % s, r / s, j / s]), a phase of
 * rows at a time, each row interleaving its s column phases. */
static void lower_conv_dx_depthwise_planes(Lower *L, const Node *n)
{
    Vec *top;
    const Window *w = &n->win;
    const Node *dy = n->in[0];
    int64_t C = n->shape.d[0], H = n->shape.d[1], W = n->shape.d[2], OH = dy->shape.d[1], OW = dy->shape.d[2];
    int64_t st = w->sh, Hq = phase_rows(w, H), Wq = phase_len(w, W), plane = Hq * Wq;
    int64_t Eh = ((w->kh - 1) * w->dh) / st, Ew = ((w->kw - 1) * w->dw) / st;
    int64_t Hd = Eh + (Hq > OH ? Hq : OH), Wd = Ew + (Wq > OW ? Wq : OW);
    const Buf *dx = L->buf[n->id], *dyp = scratch(L, "dypad", C * Hd * Wd);
    const Buf *dxs = scratch(L, "dxplanes", C * st * st * plane);
    int b = begin(L, n, &top), c = open_for(L, C);
    Vec *chan = L->out;
    pad_plane(L, dy, b, c, OH, OW, (Pads){Eh, Hd - Eh - OH, Ew, Wd - Ew - OW}, dyp, NULL, 0);
    int wv[DW_UNROLL_TAPS];
    dw_weights(L, n, var(c), wv);
    for (int64_t a = 0; a < st; a++)
        for (int64_t a2 = 0; a2 < st; a2++) {
            int i = open_for(L, Hq), j = open_for(L, Wq);
            Expr *sum = NULL;
            for (int kh = 0; kh < w->kh; kh++)
                for (int kw = 0; kw < w->kw; kw++) {
                    if ((kh * w->dh) % st != a || (kw * w->dw) % st != a2)
                        continue;
                    int64_t eh = (kh * w->dh - a) / st, ew = (kw * w->dw - a2) / st;
                    Expr *di = imad(imad(var(c), Hd, iadd(var(i), i64(Eh - eh))), Wd, iadd(var(j), i64(Ew - ew)));
                    Expr *term = ex(X_MUL, get(wv[kh * w->kw + kw]), load(dyp, di));
                    sum = sum ? ex(X_ADD, sum, term) : term;
                }
            Expr *at_s = iadd(imul(var(c), i64(st * st * plane)), iadd(i64((a * st + a2) * plane), imad(var(i), Wq, var(j))));
            store(L, dxs, at_s, sum ? sum : f32(0), false);
            L->out = chan;
        }
    for (int64_t rp = 0; rp < st; rp++) {
        /* rows r = i s + rp that are dx rows ih = r - pt in [0, H) */
        int64_t lo = (w->pt - rp + st - 1) / st, hi = (H - 1 + w->pt - rp) / st + 1;
        if (lo < 0)
            lo = 0;
        if (hi <= lo)
            continue;
        int r = open_range(L, i64(lo), i64(hi));
        Vec *row = L->out;
        Expr *ih = iadd(imul(var(r), i64(st)), i64(rp - w->pt));
        Expr *rx = at(dx, b, imul(imad(var(c), H, ih), i64(W)));
        Expr *rq = iadd(imul(var(c), i64(st * st * plane)), iadd(i64(rp * st * plane), imul(var(r), i64(Wq))));
        /* q in [qlo, qhi): every column phase's column q s + p - pl inside [0, W) */
        int64_t qlo = (w->pl + st - 1) / st, qhi = (W + w->pl - st) / st + 1;
        if (qhi < qlo)
            qhi = qlo;
        if (qlo > Wq)
            qlo = qhi = Wq;
        if (qhi > Wq)
            qhi = Wq;
        if (qlo < qhi) {
            int q = open_range(L, i64(qlo), i64(qhi));
            for (int64_t p = 0; p < st; p++)
                store(L, dx, iadd(rx, iadd(imul(var(q), i64(st)), i64(p - w->pl))),
                      load(dxs, iadd(rq, iadd(i64(p * plane), var(q)))), false);
            L->out = row;
        }
        for (int64_t p = 0; p < st; p++) {
            /* phase p's columns inside [0, W): q in [plo, phi) */
            int64_t plo = (w->pl - p + st - 1) / st, phi = (W - 1 + w->pl - p) / st + 1;
            if (plo < 0)
                plo = 0;
            int64_t ends[2][2] = {{plo, phi < qlo ? phi : qlo}, {plo > qhi ? plo : qhi, phi}};
            if (qlo >= qhi)
                ends[0][1] = phi, ends[1][0] = phi;
            for (int e = 0; e < 2; e++) {
                if (ends[e][0] >= ends[e][1])
                    continue;
                int q = open_range(L, i64(ends[e][0]), i64(ends[e][1]));
                store(L, dx, iadd(rx, iadd(imul(var(q), i64(st)), i64(p - w->pl))),
                      load(dxs, iadd(rq, iadd(i64(p * plane), var(q)))), false);
                L->out = row;
            }
        }
        L->out = chan;
    }
    L->out = top;
}

static void lower_conv_dx_depthwise(Lower *L, const Node *n)
{
    Pads pd;
    if (n->win.sh > 1 && n->win.sh == n->win.sw && dw_unrolled(&n->win) && n->in[0]->shape.d[0] == n->shape.d[0]) {
        lower_conv_dx_depthwise_planes(L, n);
        return;
    }
    if (n->in[0]->shape.d[0] == n->shape.d[0] && dx_as_conv(&n->win, &pd)) {
        lower_conv_dx_depthwise_unrolled(L, n, pd);
        return;
    }
    Vec *top;
    const Window *w = &n->win;
    const Node *dy = n->in[0];
    int64_t C = n->shape.d[0], H = n->shape.d[1], W = n->shape.d[2], OH = dy->shape.d[1], OW = dy->shape.d[2];
    int64_t Hp = H + w->pt + w->pb, Wp = W + w->pl + w->pr;
    const Buf *dx = L->buf[n->id], *Wb = L->buf[n->in[1]->id], *dxp = scratch(L, "dxpad", C * Hp * Wp);
    int b = begin(L, n, &top), ci;
    Vec *example = L->out;
    zero_scratch(L, dxp, C * Hp * Wp);
    Expr *co = depthwise_channels(L, C, dy->shape.d[0] / C, &ci);
    int kh = open_for(L, w->kh), kw = open_for(L, w->kw), oh = open_for(L, OH), ow = open_for(L, OW);
    Expr *wt = load(Wb, imad(imad(co, w->kh, var(kh)), w->kw, var(kw)));
    Expr *g = elem(L, dy, b, imad(imad(co, OH, var(oh)), OW, var(ow)));
    store(L, dxp, padded_tap(w, var(ci), Hp, Wp, oh, ow, kh, kw), ex(X_MUL, wt, g), true);
    L->out = example;
    ci = open_for(L, C);
    int ih = open_for(L, H), iw = open_for(L, W);
    store(L, dx, at(dx, b, imad(imad(var(ci), H, var(ih)), W, var(iw))),
          load(dxp, imad(imad(var(ci), Hp, iadd(var(ih), i64(w->pt))), Wp, iadd(var(iw), i64(w->pl)))), false);
    L->out = top;
}

/* The depthwise weight gradient's tap sums over channel c, one flat loop
 * along p (see lower_conv_dw_depthwise_flat): dyp's rows are Wr long, x's
 * channel c starts at c cs in xb, and tap t reads it at p + off[t].
 *   dW[c, t] += sum_p dyp[c, p] xb[c cs + p + off[t]] */
static void dw_tap_sums(Lower *L, const Node *n, int c, const Buf *dyp, int64_t Wr, const Buf *xb, int64_t cs,
                        const int64_t *off)
{
    const Node *dy = n->in[0];
    int64_t OH = dy->shape.d[1], OW = dy->shape.d[2], taps = n->win.kh * n->win.kw;
    int acc[DW_UNROLL_TAPS];
    for (int t = 0; t < taps; t++)
        acc[t] = set_new(L, f32(0));
    Vec *chan = L->out;
    int p = open_for(L, (OH - 1) * Wr + OW);
    Expr *g = load(dyp, imad(var(c), OH * Wr, var(p)));
    for (int t = 0; t < taps; t++)
        set(L, acc[t], ex(X_ADD, get(acc[t]), ex(X_MUL, g, load(xb, iadd(imad(var(c), cs, var(p)), i64(off[t]))))));
    L->out = chan;
    for (int t = 0; t < taps; t++)
        store(L, L->buf[n->id], iadd(imul(var(c), i64(taps)), i64(t)), get(acc[t]), true);
}

/* Stride 1, m = 1: with dy's rows padded to xp's width Wp (zeros past OW,
 * dyp), output (oh, ow) is flat position p = oh Wp + ow of both, and tap
 * (kh, kw) reads xp at p + kh d Wp + kw d: each tap's sum over the channel
 * is one dot product along p, all kh kw of them in one loop (dyp loaded once,
 * a scalar accumulator per tap, vectorized along p with no reduction per
 * row). p stops after the last row's OW cells, so no read leaves xp.
 *   dW[c, kh, kw] += sum_p dyp[c, p] xp[c, p + kh d Wp + kw d]   per example */
static void lower_conv_dw_depthwise_flat(Lower *L, const Node *n)
{
    Vec *top = L->out;
    const Window *w = &n->win;
    const Node *dy = n->in[0], *x = n->in[1];
    int64_t C = x->shape.d[0], OH = dy->shape.d[1], OW = dy->shape.d[2];
    int64_t Hp = x->shape.d[1] + w->pt + w->pb, Wp = x->shape.d[2] + w->pl + w->pr;
    const Buf *xp = scratch(L, "xpad", C * Hp * Wp), *dyp = scratch(L, "dypad", C * OH * Wp);
    zero(L, n);
    int b = open_for(L, -1);
    ((LStmt *)top->at[top->n - 1])->comment = arena_printf("%%%d = conv_dw (depthwise) : %s", n->id,
                                                          shape_str(n->shape));
    int c = open_for(L, C);
    pad_channel(L, x, b, c, w, xp);
    pad_plane(L, dy, b, c, OH, OW, (Pads){0, 0, 0, Wp - OW}, dyp, NULL, 0);
    int64_t off[DW_UNROLL_TAPS];
    for (int kh = 0; kh < w->kh; kh++)
        for (int kw = 0; kw < w->kw; kw++)
            off[kh * w->kw + kw] = kh * w->dh * Wp + kw * w->dw;
    dw_tap_sums(L, n, c, dyp, Wp, xp, Hp * Wp, off);
    L->out = top;
}

/* Stride s > 1 (the same along both axes), m = 1: as lower_conv_dw_depthwise_flat
 * on the phase planes of x (pad_channel_planes), where tap (kh, kw) of
 * output (oh, ow) is cell (oh + kh d / s, ow + kw d / s) of plane
 * ((kh d) % s, (kw d) % s): with dy's rows padded to Wq (dyp), one flat
 * position p = oh Wq + ow serves every plane.
 *   dW[c, kh, kw] += sum_p dyp[c, p] xs[c, plane(kh, kw), p + (kh d / s) Wq + kw d / s] */
static void lower_conv_dw_depthwise_planes(Lower *L, const Node *n)
{
    Vec *top = L->out;
    const Window *w = &n->win;
    const Node *dy = n->in[0], *x = n->in[1];
    int64_t C = x->shape.d[0], OH = dy->shape.d[1], OW = dy->shape.d[2], st = w->sh;
    int64_t Hq = phase_rows(w, x->shape.d[1]), Wq = phase_len(w, x->shape.d[2]), plane = Hq * Wq;
    const Buf *xs = scratch(L, "xplanes", C * st * st * plane), *dyp = scratch(L, "dypad", C * OH * Wq);
    zero(L, n);
    int b = open_for(L, -1);
    ((LStmt *)top->at[top->n - 1])->comment = arena_printf("%%%d = conv_dw (depthwise) : %s", n->id,
                                                          shape_str(n->shape));
    int c = open_for(L, C);
    pad_channel_planes(L, x, b, c, w, xs);
    pad_plane(L, dy, b, c, OH, OW, (Pads){0, 0, 0, Wq - OW}, dyp, NULL, 0);
    int64_t off[DW_UNROLL_TAPS];
    for (int kh = 0; kh < w->kh; kh++)
        for (int kw = 0; kw < w->kw; kw++) {
            int64_t rh = kh * w->dh, rw = kw * w->dw;
            off[kh * w->kw + kw] = ((rh % st) * st + rw % st) * plane + (rh / st) * Wq + rw / st;
        }
    dw_tap_sums(L, n, c, dyp, Wq, xs, st * st * plane, off);
    L->out = top;
}

/* dW[co, kh, kw] = sum_{b, oh, ow} dy[b, co, oh, ow] xp[b, ci, oh s + kh d, ow s + kw d] */
static void lower_conv_dw_depthwise(Lower *L, const Node *n)
{
    if (n->win.sh > 1 && n->win.sh == n->win.sw && dw_unrolled(&n->win) &&
        n->in[0]->shape.d[0] == n->in[1]->shape.d[0]) {
        lower_conv_dw_depthwise_planes(L, n);
        return;
    }
    const Window *v = &n->win;
    if (v->sh == 1 && v->sw == 1 && dw_unrolled(v) && n->in[0]->shape.d[0] == n->in[1]->shape.d[0] &&
        n->in[0]->shape.d[1] + (v->kh - 1) * v->dh == n->in[1]->shape.d[1] + v->pt + v->pb) {
        lower_conv_dw_depthwise_flat(L, n);
        return;
    }
    Vec *top = L->out;
    const Window *w = &n->win;
    const Node *dy = n->in[0], *x = n->in[1];
    int64_t OH = dy->shape.d[1], OW = dy->shape.d[2];
    int64_t Hp = x->shape.d[1] + w->pt + w->pb, Wp = x->shape.d[2] + w->pl + w->pr;
    zero(L, n);
    int b = open_for(L, -1), ci;
    ((LStmt *)top->at[top->n - 1])->comment = arena_printf("%%%d = conv_dw (depthwise) : %s", n->id,
                                                          shape_str(n->shape));
    const Buf *xp = pad_copy(L, x, b, w);
    Expr *co = depthwise_channels(L, x->shape.d[0], n->shape.d[0] / x->shape.d[0], &ci);
    int kh = open_for(L, w->kh), kw = open_for(L, w->kw);
    Vec *tap = L->out;
    int acc = set_new(L, f32(0));
    int oh = open_for(L, OH), ow = open_for(L, OW);
    Expr *g = elem(L, dy, b, imad(imad(co, OH, var(oh)), OW, var(ow)));
    set(L, acc, ex(X_ADD, get(acc), ex(X_MUL, g, load(xp, padded_tap(w, var(ci), Hp, Wp, oh, ow, kh, kw)))));
    L->out = tap;
    store(L, L->buf[n->id], imad(imad(co, w->kh, var(kh)), w->kw, var(kw)), get(acc), true);
    L->out = top;
}

/* conv: y[co, p] = b[co] + sum_k W[co, k] col[k, p], k = (ci, kh, kw), p = (oh, ow):
 * im2col, then a GEMM of [c, K] by [K, OH OW] per example, b and a
 * following ReLU in its epilogue. With G groups, group g's rows of col
 * (its input channels) and of W and y (its output channels) are contiguous
 * blocks: one GEMM of [c/G, K/G] by [K/G, OH OW] per group. */
/* A batchnorm at inference folded into conv n's GEMM (see fuse_nodes):
 * per output channel c, the pair (shift, scale) of
 *   bn(conv) = (acc + b - mean) s + beta = acc s + (beta + (b - mean) s),
 *   s = gamma / sqrt(var + eps)
 * into a scratch buffer, which the GEMM's epilogue applies to the sums acc
 * as it stores them. */
static const Buf *fold_batchnorm(Lower *L, const Node *n, const Node *bn, int b)
{
    int64_t C = n->shape.d[0];
    const Buf *pairs = scratch(L, "bnfold", 2 * C);
    Vec *here = L->out;
    int c = open_for(L, C);
    int s = set_new(L, ex(X_DIV, elem(L, bn->in[1], b, var(c)),
                          ex(X_SQRT, ex(X_ADD, elem(L, bn->in[4], b, var(c)), f32(bn->alpha)), NULL)));
    Expr *shifted = ex(X_NEG, elem(L, bn->in[3], b, var(c)), NULL);
    if (n->nin > 2)
        shifted = ex(X_ADD, elem(L, n->in[2], b, var(c)), shifted);
    store(L, pairs, imul(var(c), i64(2)), ex(X_ADD, elem(L, bn->in[2], b, var(c)), ex(X_MUL, shifted, get(s))), false);
    store(L, pairs, iadd(imul(var(c), i64(2)), i64(1)), get(s), false);
    L->out = here;
    return pairs;
}

/* ---- Winograd F(4x4, 3x3) -----------------------------------------------------
 * A 3x3, stride-1, undilated, ungrouped convolution computed on 6x6 input
 * tiles d (overlapping by 2) that each give a 4x4 block of outputs:
 *   Y = A^T [ (G g G^T) . (B^T d B) ] A
 * (. elementwise) per pair of channels, summed over the input channels; the
 * sum is, per of the 36 cells xi of the 6x6 domain, a GEMM
 *   M_xi [c, tiles] = U_xi [c, C] V_xi [C, tiles]
 * with U = G g G^T (the weights, transformed on each call: training changes
 * them) and V = B^T d B. Points 0, +-1, +-2 and infinity (Lavin & Gray). The
 * input comes from a zeroed padded copy large enough for whole tiles; the
 * last tiles' outputs past the image are not stored. Tiles are taken a chunk
 * of tile rows at a time so that V and M stay in the L2 (see col_rows). */
static const float wino_BT[6][6] = {
    {4, 0, -5, 0, 1, 0}, {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
    {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1},
};
static const float wino_G[6][3] = {
    {1.0f / 4, 0, 0}, {-1.0f / 6, -1.0f / 6, -1.0f / 6}, {-1.0f / 6, 1.0f / 6, -1.0f / 6},
    {1.0f / 24, 1.0f / 12, 1.0f / 6}, {1.0f / 24, -1.0f / 12, 1.0f / 6}, {0, 0, 1},
};
static const float wino_AT[4][6] = {
    {1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1},
};

/* The floats from one cell xi's matrix (of U, V or M) to the next's: its
 * size rounded up to 16, plus 16, so that the 36 matrices' rows, which
 * the transforms read or write together, do not all fall in the same
 * sets of the L1 (a power-of-two stride would put them there). */
static int64_t wino_stride(int64_t size) { return ((size + 15) & ~(int64_t)15) + 16; }

/* sum_j c[j stride] x[j] over the nonzero coefficients (j < n) */
static Expr *lincomb(const float *c, int stride, int n, Expr **x)
{
    Expr *s = NULL;
    for (int j = 0; j < n; j++) {
        float k = c[j * stride];
        if (k == 0)
            continue;
        if (!s)
            s = k == 1 ? x[j] : ex(X_MUL, f32(k), x[j]);
        else if (k == 1 || k == -1)
            s = ex(k == 1 ? X_ADD : X_SUB, s, x[j]);
        else
            s = ex(X_ADD, s, ex(X_MUL, f32(k), x[j]));
    }
    return s ? s : f32(0);
}

/* Whether conv n may take the Winograd path. */
static bool winograd_fits(const Node *n)
{
    const Window *w = &n->win;
    return w->kh == 3 && w->kw == 3 && w->sh == 1 && w->sw == 1 && w->dh == 1 && w->dw == 1 && w->groups == 1;
}

/* The convolution algorithm CNNC_CONV forces (im2col or winograd), or
 * "auto" (the rule of winograd_wins). Read at compile time. */
static const char *conv_forced(void)
{
    static const char *mode;
    if (!mode) {
        const char *env = getenv("CNNC_CONV");
        mode = env && *env ? env : "auto";
        if (strcmp(mode, "auto") && strcmp(mode, "im2col") && strcmp(mode, "winograd")) {
            fprintf(stderr, "cnnc: error: CNNC_CONV=%s: expected im2col, winograd or auto\n", mode);
            exit(EXIT_USAGE);
        }
    }
    return mode;
}

/* The default rule, from measurements on one thread at batch 1 and 16 (see
 * docs/compiler.md): Winograd where it was faster at both, alone and in
 * ResNet-18. It loses with few input channels (the GEMMs' K: VGG's first
 * layer, 3 channels, ran at a third of im2col's speed) and on small images,
 * where U (36 C c floats, remade on every call: 9.4 MB at 256 x 256
 * channels) costs more than an example saves: 7 x 7 always, 14 x 14 at
 * batch 1 (alone 512 x 512 channels lost; in ResNet-18, 256 x 256 did too,
 * with U out of the cache). */
static bool winograd_wins(int64_t C, int64_t c, int64_t OH, int64_t OW)
{
    (void)c;
    return C >= 16 && OH >= 28 && OW >= 28;
}

/* Whether n may take Winograd at all: 3x3 stride 1 (winograd_fits), not
 * forced to im2col, and as an input gradient padded by at most 2. */
static bool winograd_may(const Node *n)
{
    const Window *w = &n->win;
    if (!winograd_fits(n) || !strcmp(conv_forced(), "im2col"))
        return false;
    return n->op != OP_CONV_DX || (w->pt <= 2 && w->pl <= 2 && w->pb <= 2 && w->pr <= 2);
}

/* Whether conv n takes Winograd; its input's gradient (OP_CONV_DX n) is a
 * 3x3 stride-1 convolution too, of dy padded by 2 - pad (see
 * lower_conv_dx_winograd), with the rule's roles of C and c swapped. */
static bool use_winograd(const Node *n)
{
    return winograd_may(n) && (!strcmp(conv_forced(), "winograd") ||
                               winograd_wins(n->in[0]->shape.d[0], n->shape.d[0], n->shape.d[1], n->shape.d[2]));
}

/* A layer the rule leaves to im2col only for its size (14x14 to 27x27
 * outputs, 16+ input channels) takes Winograd for the first WINO_GROUP
 * floor(n / WINO_GROUP) examples of a call and im2col for the rest: U,
 * remade on every call, is paid for by 4 examples or more (at batch 1
 * nothing changes). Measured on one thread at batch 16, ResNet-18's
 * 256@14: forward 17.9 -> 10.2 ms, both gradients 43.8 -> 32.3 ms. */
enum { WINO_GROUP = 4 };

/* Whether conv (or conv_dx) n takes Winograd for groups of WINO_GROUP examples. */
static bool winograd_grouped(const Lower *L, const Node *n)
{
    int64_t OH = n->shape.d[1], OW = n->shape.d[2];
    return winograd_may(n) && !use_winograd(n) && n->in[0]->shape.d[0] >= 16 && OH >= 14 && OW >= 14 &&
           L->buf[n->id]->batched;
}

/* U[xi, co, ci] = (G g[co, ci] G^T)[xi] for the weights g of conv n, or
 * with flip, of its input's gradient n: g[co, ci] = W[ci, co] turned by
 * 180 degrees (co the forward's input channel); the whole tensor, before the
 * loop over the examples. Per output channel co (each co's cells are its
 * own: parallel), its weights are first copied tap-major, wt[k, co, ci] =
 * W[co, ci, k], so that the transform's loops over ci read and write
 * contiguous memory; then a loop over ci per cell xi, U[xi] = sum over the
 * taps of (G_a,i G_e,j) g[i, j], so that each loop stores one stream (with
 * 36 streams of stores into U in one loop, it did not vectorize: 9.6 ms a
 * call for 512 x 512 channels, 1.4 ms one loop per cell). */
static const Buf *winograd_weights(Lower *L, const Node *n, bool flip)
{
    int64_t C = n->in[0]->shape.d[0], c = n->shape.d[0];
    /* not scratch: written here and read by every example's iteration of
     * the next nest, so they live over both nests (plan.c) */
    const Buf *U = new_buf("wino_u", BASE_WS, L->fixed, 36 * wino_stride(c * C), false), *Wb = L->buf[n->in[1]->id];
    L->fixed += padded(36 * wino_stride(c * C));
    const Buf *wt = new_buf("wino_wt", BASE_WS, L->fixed, 9 * wino_stride(c * C), false);
    L->fixed += padded(9 * wino_stride(c * C));
    Vec *here = L->out;
    int co = open_for(L, c);
    ((LStmt *)here->at[here->n - 1])->parallel = true;
    ((LStmt *)here->at[here->n - 1])->comment = arena_printf("%%%d = conv (winograd weights)", n->id);
    Vec *channel = L->out;
    int ci;
    for (int k = 0; k < 9; k++) {         /* a loop per tap, for the same reason */
        L->out = channel;
        ci = open_for(L, C);
        Expr *from = flip ? imad(imad(var(ci), c, var(co)), 9, i64(8 - k)) : imad(imad(var(co), C, var(ci)), 9, i64(k));
        store(L, wt, iadd(i64(k * wino_stride(c * C)), imad(var(co), C, var(ci))), load(Wb, from), false);
    }
    for (int a = 0; a < 6; a++)
        for (int e = 0; e < 6; e++) {     /* a loop each, over ci: one stream of stores vectorizes */
            L->out = channel;
            ci = open_for(L, C);
            float coef[9];
            Expr *g[9];
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 3; j++) {
                    coef[i * 3 + j] = (float)((double)wino_G[a][i] * wino_G[e][j]);
                    g[i * 3 + j] = load(wt, iadd(i64((i * 3 + j) * wino_stride(c * C)), imad(var(co), C, var(ci))));
                }
            store(L, U, iadd(i64((a * 6 + e) * wino_stride(c * C)), imad(var(co), C, var(ci))), lincomb(coef, 1, 9, g),
                  false);
        }
    L->out = here;
    return U;
}

/* The zeroed padded copy of example b of x: xp [C, Hp, Wp] with the image
 * at (pt, pl). */
static const Buf *winograd_pad(Lower *L, const Node *x, int b, int64_t pt, int64_t pl, int64_t Hp, int64_t Wp)
{
    Vec *here = L->out;
    int64_t C = x->shape.d[0], H = x->shape.d[1], W = x->shape.d[2];
    const Buf *xp = scratch(L, "wino_xpad", C * Hp * Wp);
    zero_scratch(L, xp, C * Hp * Wp);
    int ci = open_for(L, C), ih = open_for(L, H), iw = open_for(L, W);
    store(L, xp, imad(imad(var(ci), Hp, iadd(var(ih), i64(pt))), Wp, iadd(var(iw), i64(pl))),
          elem(L, x, b, imad(imad(var(ci), H, var(ih)), W, var(iw))), false);
    L->out = here;
    return xp;
}

/* V[xi, ci, t] = (B^T d B)[xi] for the tiles t = r tW + tc of the chunk's
 * tile rows tr = tr0 + r, d = xp[ci, 4 tr + (0..5), 4 tc + (0..5)]. */
static void winograd_input(Lower *L, const Buf *xp, const Buf *V, int64_t C, int64_t Hp, int64_t Wp, Expr *tr0,
                           int64_t R, int64_t tW)
{
    Vec *here = L->out;
    int ci = open_for(L, C), r = open_for(L, R), tc = open_for(L, tW);
    int64_t T = R * tW;
    Expr *row0 = imul(iadd(tr0, var(r)), i64(4)), *t = imad(var(r), tW, var(tc));
    Expr *d[6][6], *u[6][6];
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 6; j++)
            d[i][j] = load(xp, imad(imad(var(ci), Hp, iadd(row0, i64(i))), Wp, iadd(imul(var(tc), i64(4)), i64(j))));
    for (int i = 0; i < 6; i++)
        for (int e = 0; e < 6; e++)
            u[e][i] = get(set_new(L, lincomb(wino_BT[e], 1, 6, d[i])));   /* (d B)[i, e] */
    for (int a = 0; a < 6; a++)
        for (int e = 0; e < 6; e++)
            store(L, V, iadd(i64((a * 6 + e) * wino_stride(C * T)), imad(var(ci), T, t)), lincomb(wino_BT[a], 1, 6, u[e]),
                  false);
    L->out = here;
}

/* The output transform of a chunk's T tiles, then the outputs into y:
 *   Yt[co, i, 4 t + j] = (A^T M[., co, t] A)[i, j]   (one loop over the tiles t)
 *   y[co, 4 tr + i, ow] = epi(Yt[co, i, 4 r tW + ow])  for the chunk's tile
 * rows tr = tr0 + r, ow < OW and 4 tr + i < OH (the edges cropped).
 * epi: the bias (or the folded batchnorm's pair) and the fused ReLU, or an
 * accumulation into y whose bias is already there (--no-fuse). Both loops
 * vectorize: writing y from the tiles directly, the loop over a row of tiles
 * was too short (14 at 56 x 56) for the run-time overlap checks that it
 * needed, so it ran scalar. */
typedef struct {
    const Node *n;
    int b;
    const Buf *M, *Yt, *pairs;
    Expr *tr0;
    int64_t R, tW, OH, OW;
} WinoOut;

static void winograd_output(Lower *L, const WinoOut *o)
{
    Vec *here = L->out;
    const Node *n = o->n;
    const Buf *y = L->buf[n->id];
    int64_t c = n->shape.d[0], T = o->R * o->tW;
    int co = open_for(L, c), t = open_for(L, T);
    Expr *m[6], *s[4][6];
    for (int e = 0; e < 6; e++) {
        for (int a = 0; a < 6; a++)
            m[a] = load(o->M, iadd(i64((a * 6 + e) * wino_stride(c * T)), imad(var(co), T, var(t))));
        for (int i = 0; i < 4; i++)
            s[i][e] = get(set_new(L, lincomb(wino_AT[i], 1, 6, m)));   /* (A^T M)[i, e] */
    }
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
            store(L, o->Yt, imad(imad(var(co), 4, i64(i)), 4 * T, imad(var(t), 4, i64(j))),
                  lincomb(wino_AT[j], 1, 6, s[i]), false);
    L->out = here;
    co = open_for(L, c);
    Expr *scale = NULL, *shift = NULL;
    if (o->pairs) {
        shift = get(set_new(L, load(o->pairs, imul(var(co), i64(2)))));
        scale = get(set_new(L, load(o->pairs, imad(var(co), 2, i64(1)))));
    } else if (n->op == OP_CONV && n->nin > 2 && L->fuse)
        shift = get(set_new(L, elem(L, n->in[2], o->b, var(co))));
    int r = open_for(L, o->R);
    bool acc = n->op == OP_CONV && n->nin > 2 && !L->fuse, relu = n->op == OP_CONV && L->fused[n->id];
    Vec *rows = L->out;
    for (int i = 0; i < 4; i++) {
        Expr *oh = iadd(imul(iadd(o->tr0, var(r)), i64(4)), i64(i));
        if (o->OH % 4 && i >= o->OH % 4)
            open_if(L, ex(X_LT, oh, i64(o->OH)));
        int ow = open_for(L, o->OW);
        Expr *v = load(o->Yt, imad(imad(var(co), 4, i64(i)), 4 * T, imad(var(r), 4 * o->tW, var(ow))));
        if (scale)
            v = ex(X_MUL, v, scale);
        if (shift)
            v = ex(X_ADD, v, shift);
        Expr *yi = at(y, o->b, imad(imad(var(co), o->OH, oh), o->OW, var(ow)));
        if (relu)
            v = ex(X_MAX, acc ? ex(X_ADD, load(y, yi), v) : v, f32(0));
        store(L, y, yi, v, acc && !relu);
        L->out = rows;
    }
    L->out = here;
}

/* The tile rows at a time: the most that divide tH and keep V and M within
 * half the L2, but enough for 64 tiles (all of them when there are fewer):
 * the tiles are the GEMMs' columns, and each chunk reads the whole of U
 * (36 C c floats), so a narrow chunk wastes the micro-kernel's vectors and
 * streams U from memory (512 channels at 28 x 28 took 7 tiles a chunk and
 * ran at a third of the speed of all 49). */
static int64_t winograd_rows(int64_t C, int64_t c, int64_t tH, int64_t tW)
{
    int64_t budget = host_l2_bytes() / 2, fit = 0, wide = tH;
    for (int64_t r = tH; r >= 1; r--) {
        if (tH % r)
            continue;
        if (!fit && (int64_t)sizeof(float) * 36 * (C + c) * r * tW <= budget)
            fit = r;
        if (r * tW >= 64)
            wide = r;
    }
    return fit > wide ? fit : wide;
}

/* Winograd for node n (a conv, or with flip a conv's input gradient) whose
 * input n->in[0] is padded by (pt, pl) at the top and left; with E > 1, for
 * the examples [0, E floor(n / E)) only, U made only when there are any
 * (see WINO_GROUP; the caller lowers the rest). */
static void lower_winograd(Lower *L, const Node *n, int64_t pt, int64_t pl, bool flip, int64_t E)
{
    Vec *top;
    const Node *x = n->in[0];
    int64_t C = x->shape.d[0], c = n->shape.d[0], OH = n->shape.d[1], OW = n->shape.d[2];
    int64_t tH = (OH + 3) / 4, tW = (OW + 3) / 4, Hp = 4 * tH + 2, Wp = 4 * tW + 2;
    int64_t R = winograd_rows(C, c, tH, tW), T = R * tW;
    Vec *here = L->out;
    if (E > 1)                                   /* U only when some examples take Winograd */
        open_if(L, ex(X_LT, i64(E - 1), var(0)));
    const Buf *U = winograd_weights(L, n, flip);
    L->out = here;
    const Buf *V = scratch(L, "wino_v", 36 * wino_stride(C * T)), *M = scratch(L, "wino_m", 36 * wino_stride(c * T));
    const Buf *Yt = scratch(L, "wino_y", 16 * c * T);
    int b = begin(L, n, &top);
    ((LStmt *)top->at[top->n - 1])->comment = arena_printf("%%%d = %s (winograd)%s%s : %s", n->id, op_name(n->op),
                                                          n->label ? " " : "", n->label ? n->label : "",
                                                          shape_str(n->shape));
    if (E > 1)
        ((LStmt *)top->at[top->n - 1])->hi = grouped(E);
    const Buf *pairs = NULL;
    if (n->op == OP_CONV) {
        bias_first(L, n, b, true);
        pairs = L->folded[n->id] ? fold_batchnorm(L, n, L->folded[n->id], b) : NULL;
    }
    const Buf *xp = winograd_pad(L, x, b, pt, pl, Hp, Wp);
    Expr *tr0 = R < tH ? imul(var(open_for(L, tH / R)), i64(R)) : i64(0);
    winograd_input(L, xp, V, C, Hp, Wp, tr0, R, tW);
    Vec *chunk = L->out;
    int xi = open_for(L, 36);
    gemm(L, i64(c), T, i64(C), U, imul(var(xi), i64(wino_stride(c * C))), C, 1, V, imul(var(xi), i64(wino_stride(C * T))),
         T, M, imul(var(xi), i64(wino_stride(c * T))), T, false);
    L->out = chunk;
    winograd_output(L, &(WinoOut){n, b, M, Yt, pairs, tr0, R, tW, OH, OW});
    L->out = top;
}

static void lower_conv_winograd(Lower *L, const Node *n) { lower_winograd(L, n, n->win.pt, n->win.pl, false, 1); }

/* The input's gradient of a 3x3 stride-1 conv with padding (pt, pl, pb, pr):
 *   dx[ci, ih, iw] = sum_{co, kh, kw} W[co, ci, kh, kw] dy[co, ih + pt - kh, iw + pl - kw]
 * is the 3x3 conv of dy padded by (2 - pt, 2 - pl, 2 - pb, 2 - pr) with the
 * weights W[co, ci] turned by 180 degrees, ci its output channel and co its
 * input one. */
static void lower_conv_dx_winograd(Lower *L, const Node *n) { lower_winograd(L, n, 2 - n->win.pt, 2 - n->win.pl, true, 1); }

/* ---- several examples a GEMM --------------------------------------------------
 * A convolution with few output positions P (ResNet's 7x7 and 14x14 layers)
 * makes a GEMM only a few vectors wide per example: at 7x7, 49 columns ran
 * as three full vectors and one with a single lane, two thirds of the peak.
 * So E examples share one GEMM: their im2col side by side in colE [K, E P],
 * the GEMM (with its epilogue: bias, folded batchnorm, ReLU) into yE
 * [c, E P], then each example's columns copied to y. The examples left over
 * (n mod E) take the per-example form. A pointwise conv, whose GEMM reads
 * x itself, only where its vectors would waste more than a tenth of their
 * lanes (7x7, not 14x14: MobileNet V2's 7x7 stage 7% faster, GoogLeNet's
 * 14x14 no faster). Not for grouped convs, nor with --no-fuse's separate
 * bias (the GEMM would accumulate into yE). */
enum { CONV_BATCH_COLS = 256 };

static int64_t conv_batch(const Lower *L, const Node *n)
{
    const Window *w = &n->win;
    int64_t P = n->shape.d[1] * n->shape.d[2];
    if (P >= CONV_BATCH_COLS || w->groups > 1 || !L->buf[n->id]->batched ||
        (n->nin > 2 && !L->fuse))
        return 1;
    if (pointwise(w) && 10 * P > 9 * (P + 15) / 16 * 16)
        return 1;                 /* its GEMM reads x itself: grouped only where vectors are wasted */
    int64_t E = 2;                /* a power of 2: a thread's share of a batch often is one */
    while (E * P < CONV_BATCH_COLS && E < 16)
        E *= 2;
    return E;
}

/* The column of yE (or colE) where example b's P columns start, in group q. */
static Expr *group_col(int b, int q, int64_t E, int64_t P) { return imul(iadd(var(b), imul(var(q), i64(-E))), i64(P)); }

/* conv n over the full groups of E examples (see above). */
static void lower_conv_groups(Lower *L, const Node *n, int64_t E)
{
    Vec *top = L->out;
    const Window *w = &n->win;
    const Node *x = n->in[0];
    int64_t c = n->shape.d[0], OH = n->shape.d[1], P = OH * n->shape.d[2], D = E * P;
    int64_t K = x->shape.d[0] * w->kh * w->kw;
    const Buf *y = L->buf[n->id], *colE = scratch(L, "colE", K * D), *yE = scratch(L, "yE", c * D);
    int q = open_range(L, i64(0), groups_of(E));
    ((LStmt *)top->at[top->n - 1])->comment = arena_printf("%%%d = conv%s%s (%lld examples a GEMM) : %s", n->id,
                                                          n->label ? " " : "", n->label ? n->label : "",
                                                          (long long)E, shape_str(n->shape));
    Vec *group = L->out;
    const Buf *pairs = L->folded[n->id] ? fold_batchnorm(L, n, L->folded[n->id], q) : NULL;
    int b = open_range(L, imul(var(q), i64(E)), imad(var(q), E, i64(E)));
    im2col_rows(L, x, b, im2col_source(L, x, b, w), w, n->shape, (Rows){i64(0), OH}, D, group_col(b, q, E, P), colE);
    L->out = group;
    gemm(L, i64(c), D, i64(K), L->buf[n->in[1]->id], i64(0), K, 1, colE, i64(0), D, yE, i64(0), D, false);
    kblock_when_large(L, K, D);
    epilogue(L, n, true, i64(0));
    if (pairs) {
        Gemm *gm = ((LStmt *)L->out->at[L->out->n - 1])->gemm;
        gm->bias = pairs, gm->bias_at = i64(0), gm->bias_rows = gm->bn_rows = true;
    }
    b = open_range(L, imul(var(q), i64(E)), imad(var(q), E, i64(E)));
    int co = open_for(L, c), p = open_for(L, P);
    store(L, y, at(y, b, imad(var(co), P, var(p))), load(yE, imad(var(co), D, iadd(group_col(b, q, E, P), var(p)))),
          false);
    L->out = top;
}

static void lower_conv(Lower *L, const Node *n)
{
    if (use_winograd(n)) {
        lower_conv_winograd(L, n);
        return;
    }
    int64_t E = conv_batch(L, n);
    if (winograd_grouped(L, n))
        lower_winograd(L, n, n->win.pt, n->win.pl, false, E = WINO_GROUP);
    else if (E > 1)
        lower_conv_groups(L, n, E);
    Vec *top;
    const Window *w = &n->win;
    const Node *x = n->in[0];
    int64_t co = n->shape.d[0], P = n->shape.d[1] * n->shape.d[2];
    int64_t K = x->shape.d[0] * w->kh * w->kw, cg = co / w->groups, Kg = K / w->groups;
    int64_t OH = n->shape.d[1], OW = n->shape.d[2], R = pointwise(w) ? OH : col_rows(K, OH, OW, FWD_COLS), N = R * OW;
    const Buf *y = L->buf[n->id], *col = pointwise(w) ? NULL : scratch(L, "col", K * N);
    int b = begin(L, n, &top);
    if (E > 1) {                                 /* the examples left over */
        LStmt *s = top->at[top->n - 1];
        s->lo = grouped(E);
        s->comment = arena_printf("%s (the examples left over)", s->comment);
    }
    bias_first(L, n, b, true);
    const Buf *pairs = L->folded[n->id] ? fold_batchnorm(L, n, L->folded[n->id], b) : NULL;
    const Buf *xb = L->buf[x->id], *xp = col ? im2col_source(L, x, b, w) : NULL;
    Expr *p0 = col ? im2col_chunk(L, x, b, xp, w, n->shape, R, col) : i64(0);   /* the chunk's first column of y */
    Expr *g = group_loop(L, w), *in = imul(g, i64(Kg * N));
    gemm(L, i64(cg), N, i64(Kg), L->buf[n->in[1]->id], imul(g, i64(cg * Kg)), Kg, 1, col ? col : xb,
         col ? in : at(xb, b, in), N, y, at(y, b, iadd(imul(g, i64(cg * P)), p0)), P, false);
    kblock_when_large(L, Kg, N);
    epilogue(L, n, true, imul(g, i64(cg)));
    if (pairs) {
        Gemm *gm = ((LStmt *)L->out->at[L->out->n - 1])->gemm;
        gm->bias = pairs, gm->bias_at = imul(g, i64(2 * cg)), gm->bias_rows = gm->bn_rows = true;
    }
    L->out = top;
}

/* Whether pooling windows are 2x2 with stride 2, no padding or dilation, and
 * tile an H x W image exactly: the vectorized L_POOL form. */
static bool tiles_2x2(const Window *w, int64_t H, int64_t W)
{
    return w->kh == 2 && w->kw == 2 && w->sh == 2 && w->sw == 2 && !has_padding(w) && w->dh == 1 && w->dw == 1 &&
           H % 2 == 0 && W % 2 == 0;
}

/* avgpool with count_pad: the number of the window's cells inside the image
 * and its declared padding, as PyTorch counts them (ceil mode's extra cells
 * do not count): (min(h0 + kh, H + pb) - h0) (min(w0 + kw, W + pr) - w0),
 * h0 = oh sh - pt, w0 = ow sw - pl */
static Expr *pad_count(const Window *w, int oh, int ow, int64_t H, int64_t W)
{
    Expr *h0 = iadd(imul(var(oh), i64(w->sh)), i64(-w->pt)), *w0 = iadd(imul(var(ow), i64(w->sw)), i64(-w->pl));
    Expr *nh = iadd(ex(X_IMIN, iadd(h0, i64(w->kh)), i64(H + w->cb)), imul(h0, i64(-1)));
    Expr *nw = iadd(ex(X_IMIN, iadd(w0, i64(w->kw)), i64(W + w->cr)), imul(w0, i64(-1)));
    return ex(X_ITOF, imul(nh, nw), NULL);
}

/* Up to this many cells a pooling window's taps are unrolled (as a depthwise
 * conv's); avgpool's divisor is then in closed form (undilated windows). */
static bool pool_unrolled(const Window *w, bool max)
{
    return w->kh * w->kw <= DW_UNROLL_TAPS && (max || (w->dh == 1 && w->dw == 1));
}

/* avgpool without count_pad: the cells of window (oh, ow) inside the image,
 * (min(h0 + kh, H) - max(h0, 0)) (min(w0 + kw, W) - max(w0, 0)),
 * h0 = oh sh - pt, w0 = ow sw - pl */
static Expr *inside_count(const Window *w, int oh, int ow, int64_t H, int64_t W)
{
    Expr *h0 = iadd(imul(var(oh), i64(w->sh)), i64(-w->pt)), *w0 = iadd(imul(var(ow), i64(w->sw)), i64(-w->pl));
    Expr *nh = iadd(ex(X_IMIN, iadd(h0, i64(w->kh)), i64(H)), imul(ex(X_IMAX, h0, i64(0)), i64(-1)));
    Expr *nw = iadd(ex(X_IMIN, iadd(w0, i64(w->kw)), i64(W)), imul(ex(X_IMAX, w0, i64(0)), i64(-1)));
    return ex(X_ITOF, imul(nh, nw), NULL);
}

/* maxpool and avgpool with the taps unrolled:
 *   y[c, oh, ow] = max_{kh, kw} xp[c, oh s + kh d, ow s + kw d]  (xp: x padded with -inf)
 *   y[c, oh, ow] = sum_{kh, kw} xp[c, oh s + kh, ow s + kw] / count  (xp: padded with 0)
 * Per channel its padded copy (a plane of the thread's private scratch),
 * then per output row one loop along ow whose
 * body is the whole window: no bounds tests, contiguous in ow (the copy is
 * phased at stride > 1), so LLVM vectorizes it along ow. */
static void lower_pool_unrolled(Lower *L, const Node *n)
{
    Vec *top;
    const Window *w = &n->win;
    const Node *x = n->in[0];
    bool max = n->op == OP_MAXPOOL;
    int64_t H = x->shape.d[1], W = x->shape.d[2], OH = n->shape.d[1], OW = n->shape.d[2];
    int64_t Hp = H + w->pt + w->pb, Wq = phase_len(w, W);
    const Buf *y = L->buf[n->id], *xp = window_private(L, x, w, "xpool", 0);
    int b = begin(L, n, &top), c = open_for(L, n->shape.d[0]);
    window_copy(L, x, b, c, w, xp, NULL, max ? -INFINITY : 0);
    int oh = open_for(L, OH), ow = open_for(L, OW);
    Expr *acc = NULL;
    for (int kh = 0; kh < w->kh; kh++)
        for (int kw = 0; kw < w->kw; kw++) {
            Expr *v = load(xp, window_tap(w, plane_of(xp, var(c)), Hp, Wq, oh, ow, kh, kw));
            acc = acc ? ex(max ? X_MAX : X_ADD, acc, v) : v;
        }
    if (!max)
        acc = ex(X_DIV, acc, w->count_pad ? pad_count(w, oh, ow, H, W) : inside_count(w, oh, ow, H, W));
    store(L, y, at(y, b, imad(imad(var(c), OH, var(oh)), OW, var(ow))), acc, false);
    L->out = top;
}

/* maxpool: y = max over the window's cells inside the image;
 * avgpool: y = mean over the same cells (padding does not count), or
 * with count_pad their sum over pad_count. */
static void lower_pool(Lower *L, const Node *n)
{
    Vec *top;
    const Window *w = &n->win;
    Shape xs = n->in[0]->shape;
    int64_t H = xs.d[1], W = xs.d[2];
    bool max = n->op == OP_MAXPOOL;
    if (max && tiles_2x2(w, H, W)) {          /* vectorized along rows */
        int b = begin(L, n, &top);
        Pool *p = pool(L, n->shape.d[0] * n->shape.d[1], W, false);
        p->x = L->buf[n->in[0]->id], p->y = L->buf[n->id];
        p->x_at = at(p->x, b, i64(0)), p->y_at = at(p->y, b, i64(0));
        L->out = top;
        return;
    }
    if (pool_unrolled(w, max)) {
        lower_pool_unrolled(L, n);
        return;
    }
    int b = begin(L, n, &top);
    int c = open_for(L, n->shape.d[0]), oh = open_for(L, n->shape.d[1]), ow = open_for(L, n->shape.d[2]);
    Vec *pixel = L->out;
    bool counted = !max && !w->count_pad;
    int acc = set_new(L, f32(max ? -INFINITY : 0)), cnt = counted ? set_new(L, f32(0)) : 0;
    int kh = open_for(L, w->kh), kw = open_for(L, w->kw);
    Expr *ih = tap_h(w, oh, kh), *iw = tap_w(w, ow, kw);
    open_if(L, inside(ih, iw, H, W, w));
    Expr *x = elem(L, n->in[0], b, imad(imad(var(c), H, ih), W, iw));
    set(L, acc, ex(max ? X_MAX : X_ADD, get(acc), x));
    if (counted)
        set(L, cnt, ex(X_ADD, get(cnt), f32(1)));
    L->out = pixel;
    Expr *yidx = imad(imad(var(c), n->shape.d[1], var(oh)), n->shape.d[2], var(ow));
    Expr *y = max ? get(acc) : ex(X_DIV, get(acc), counted ? get(cnt) : pad_count(w, oh, ow, H, W));
    store(L, L->buf[n->id], at(L->buf[n->id], b, yidx), y, false);
    L->out = top;
}

/* maxpool_indices: where each window's first maximum is, as a flat index into
 * the example [C, H, W] (row-major, or column-major over H and W with aux) */
static void lower_maxpool_idx(Lower *L, const Node *n)
{
    Vec *top;
    const Window *w = &n->win;
    Shape xs = n->in[0]->shape;
    int64_t H = xs.d[1], W = xs.d[2];
    int b = begin(L, n, &top);
    int c = open_for(L, n->shape.d[0]), oh = open_for(L, n->shape.d[1]), ow = open_for(L, n->shape.d[2]);
    Vec *pixel = L->out;
    int best = set_new(L, f32(-INFINITY)), where = set_new(L, f32(-1));
    int kh = open_for(L, w->kh), kw = open_for(L, w->kw);
    Expr *ih = tap_h(w, oh, kh), *iw = tap_w(w, ow, kw);
    open_if(L, inside(ih, iw, H, W, w));
    Expr *x = elem(L, n->in[0], b, imad(imad(var(c), H, ih), W, iw));
    Expr *flat = n->aux ? imad(imad(var(c), W, iw), H, ih) : imad(imad(var(c), H, ih), W, iw);
    Expr *better = ex(X_LT, get(best), x);     /* strictly: the first maximum stays */
    set(L, where, select3(better, ex(X_ITOF, flat, NULL), get(where)));
    set(L, best, select3(better, x, get(best)));
    L->out = pixel;
    Expr *yidx = imad(imad(var(c), n->shape.d[1], var(oh)), n->shape.d[2], var(ow));
    store(L, L->buf[n->id], at(L->buf[n->id], b, yidx), get(where), false);
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

/* The cells of shape s before dimension a, along it, and after it. */
static void around(Shape s, int a, int64_t *outer, int64_t *len, int64_t *inner)
{
    *outer = *inner = 1;
    for (int i = 0; i < s.rank; i++)
        *(i < a ? outer : inner) *= i == a ? 1 : s.d[i];
    *len = s.d[a];
}

/* softmax(axis) of a shape with more than that axis: for each cell o of the
 * dimensions before it and j of those after, the softmax of the line
 * x[o, :, j] (the cells inner apart) */
static void lower_softmax_axis(Lower *L, const Node *n)
{
    Vec *top;
    int64_t outer, len, inner;
    around(n->shape, n->axis, &outer, &len, &inner);
    int b = begin(L, n, &top);
    int o = open_for(L, outer), j = open_for(L, inner);
    Expr *base = iadd(imul(var(o), i64(len * inner)), var(j));
    const Node *x = n->in[0];
    Vec *here = L->out;
    int m = set_new(L, f32(-INFINITY));
    int i = open_for(L, len);
    set(L, m, ex(X_MAX, get(m), elem(L, x, b, imad(var(i), inner, base))));
    L->out = here;
    int sum = set_new(L, f32(0));
    i = open_for(L, len);
    set(L, sum, ex(X_ADD, get(sum), shifted_exp(elem(L, x, b, imad(var(i), inner, base)), get(m))));
    L->out = here;
    int inv = set_new(L, ex(X_DIV, f32(1), get(sum)));
    i = open_for(L, len);
    Expr *idx = imad(var(i), inner, base);
    store(L, L->buf[n->id], at(L->buf[n->id], b, idx), ex(X_MUL, shifted_exp(elem(L, x, b, idx), get(m)), get(inv)),
          false);
    L->out = top;
}

/* softmax: y = exp(x - max x) / sum exp(x - max x);
 * l1norm: y = x / max(sum |x|, eps); l2norm: y = x / max(sqrt(sum x^2), eps) */
static void lower_vector(Lower *L, const Node *n)
{
    Vec *top;
    if (n->op == OP_SOFTMAX && n->shape.rank > 1) {
        lower_softmax_axis(L, n);
        return;
    }
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

/* concat: each branch copied to its range along the axis (of channels, or
 * of the vector): a run of its cells after each cell before the axis */
static void lower_concat(Lower *L, const Node *n)
{
    int64_t off = 0, outer, len, inner;
    around(n->shape, n->axis, &outer, &len, &inner);
    for (int j = 0; j < n->nin; j++) {
        Vec *top;
        int b = begin(L, n, &top);
        int64_t run = n->in[j]->shape.d[n->axis] * inner;
        Expr *from = i64(off), *src = NULL;
        if (outer > 1) {
            int o = open_for(L, outer);
            from = imad(var(o), len * inner, from), src = imul(var(o), i64(run));
        }
        int i = open_for(L, run);
        store(L, L->buf[n->id], at(L->buf[n->id], b, iadd(var(i), from)),
              elem(L, n->in[j], b, src ? iadd(src, var(i)) : var(i)), false);
        off += run;
        L->out = top;
    }
}

/* transpose: y[j, i] = x[i, j] for x [m, n] */
static void lower_transpose(Lower *L, const Node *n)
{
    Vec *top;
    int64_t m = n->shape.d[1], cols = n->shape.d[0];
    int b = begin(L, n, &top);
    int j = open_for(L, cols), i = open_for(L, m);
    store(L, L->buf[n->id], at(L->buf[n->id], b, imad(var(j), m, var(i))), elem(L, n->in[0], b, imad(var(i), cols, var(j))),
          false);
    L->out = top;
}

/* The sizes of a matmul C = A B: A [..., M, K], B [..., K, N], C [..., M, N]
 * (M or N 1 for a vector), and how many leading dimensions of each are its
 * stack (broadcast as in `+`; none for plain matrices). */
typedef struct { int64_t M, K, N; int sa, sb, sc; Shape a, b; } MatSizes;

static MatSizes mat_sizes(const Shape *a, const Shape *b)
{
    MatSizes z = {.a = *a, .b = *b};
    z.K = a->d[a->rank - 1];
    z.M = a->rank >= 2 ? a->d[a->rank - 2] : 1;
    z.N = b->rank >= 2 ? b->d[b->rank - 1] : 1;
    z.sa = a->rank > 2 ? a->rank - 2 : 0, z.sb = b->rank > 2 ? b->rank - 2 : 0;
    z.sc = z.sa > z.sb ? z.sa : z.sb;
    return z;
}

/* The first element of the matrix of a stack of `ns` dimensions (shape s,
 * matrices of `size` elements) that the product's stack coordinates c[0..sc) take. */
static Expr *stack_at(const Shape *s, int ns, int sc, const int *c, int64_t size)
{
    Expr *idx = i64(0);
    for (int i = 0; i < ns; i++) {
        idx = imul(idx, i64(s->d[i]));
        if (s->d[i] != 1)
            idx = iadd(idx, var(c[sc - ns + i]));
    }
    return imul(idx, i64(size));
}

/* matmul: y[i, j] = sum_k A[i, k] B[k, j]  ([m,k]@[k], [m,k]@[k,n], [k]@[k,n],
 * and each matrix of stacks) */
static void lower_matmul(Lower *L, const Node *n)
{
    Vec *top;
    const Node *A = n->in[0], *B = n->in[1];
    MatSizes z = mat_sizes(&A->shape, &B->shape);
    int64_t M = z.M, K = z.K, N = z.N;
    int b = begin(L, n, &top), c[MAX_RANK];
    Shape stack = {.rank = z.sc};
    for (int i = 0; i < z.sc; i++)
        stack.d[i] = n->shape.d[i];
    Expr *cs = imul(open_all(L, stack, c), i64(M * N));
    Expr *as = stack_at(&z.a, z.sa, z.sc, c, M * K), *bs = stack_at(&z.b, z.sb, z.sc, c, K * N);
    int i = open_for(L, M), j = open_for(L, N);
    Vec *cell = L->out;
    int acc = set_new(L, f32(0));
    int k = open_for(L, K);
    set(L, acc, ex(X_ADD, get(acc), ex(X_MUL, elem(L, A, b, iadd(as, imad(var(i), K, var(k)))),
                                       elem(L, B, b, iadd(bs, imad(var(k), N, var(j)))))));
    L->out = cell;
    store(L, L->buf[n->id], at(L->buf[n->id], b, iadd(cs, imad(var(i), N, var(j)))), get(acc), false);
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
static void lower_output(Lower *L, const Node *y, const Buf *out, int64_t size)
{
    Vec *top = L->out;
    int b = open_for(L, -1);
    ((LStmt *)top->at[top->n - 1])->comment = "output";
    int i = open_for(L, size);
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

static int64_t padded(int64_t n) { return (n + 15) & ~(int64_t)15; }

/* A workspace buffer for node n: per example, or one shared by the batch. */
static void place(Lower *L, const Node *n, bool batched)
{
    const char *name = n->label ? n->label : arena_printf("%%%d", n->id);
    int64_t size = shape_count(n->shape);
    int64_t *at = batched ? &L->per_example : &L->fixed;
    L->buf[n->id] = new_buf(name, BASE_WS, *at, size, batched);
    *at += padded(size);
}

/* Ops whose value is their input's, reshaped: they share its buffer. */
static bool aliases(const Lower *L, const Node *n)
{
    return n->op == OP_FLATTEN || (n->op == OP_DROPOUT && !L->training) || ((n->op == OP_RELU || n->op == OP_CLIP) && L->fused[n->id]) ||
           (n->op == OP_BATCHNORM && L->fused[n->id]);
}

/* Whether n is computed inside its consumer (see fuse_nodes): no buffer. */
static bool absorbed(const Lower *L, const Node *n)
{
    return L->fused[n->id] && (n->op == OP_MAXPOOL_DX || n->op == OP_STEP);
}

/* Buffers for the nodes [0, upto): inputs and parameters where they are;
 * forward values per example; gradients per example or shared. */
static void place_values(Lower *L, int upto, int nforward)
{
    const Graph *g = L->g;
    for (int i = 0; i < upto; i++) {
        const Node *n = g->nodes.at[i];
        int64_t size = shape_count(n->shape);
        if (n->op == OP_INPUT)
            L->buf[i] = new_buf(g->input_name, BASE_X, 0, size, true);
        else if (n->op == OP_PARAM)
            L->buf[i] = new_buf(n->label, BASE_PARAMS, L->l->param_offset[n->param], size, false);
        else if (aliases(L, n))
            L->buf[i] = L->buf[n->in[0]->id];
        else if (absorbed(L, n))
            continue;
        else if (n->op != OP_CONST)
            place(L, n, i < nforward || n->batched);
    }
}

/* ---- training-mode forward ------------------------------------------------ */

/* The training kernel's arguments: 0 first, 1 total. */
static Expr *arg(int which)
{
    Expr *e = ex(X_ARG, NULL, NULL);
    e->ival = which;
    return e;
}

/* keep = rand(seed, node, example, element) >= p: the same in backward */
static Expr *dropout_keep(const Node *n, int64_t salt, int b, Expr *i)
{
    Expr *global = iadd(imul(iadd(arg(0), var(b)), i64(shape_count(n->shape))), i);
    Expr *r = ex(X_RAND, global, NULL);
    r->ival = salt;
    return select3(ex(X_LT, r, f32(n->alpha)), f32(0), f32(1 / (1 - n->alpha)));
}

/* dropout (training): y = x keep / (1 - p) */
static void lower_dropout_train(Lower *L, const Node *n)
{
    Vec *top;
    int b = begin(L, n, &top);
    int i = open_for(L, shape_count(n->shape));
    store(L, L->buf[n->id], at(L->buf[n->id], b, var(i)),
          ex(X_MUL, elem(L, n->in[0], b, var(i)), dropout_keep(n, n->id, b, var(i))), false);
    L->out = top;
}

/* Per channel c of x ([C, ...] per example, M = n * inner values): opens
 * `for c`, computes mean and variance over the batch, returns their vars. */
static int channel_stats(Lower *L, const Node *x, int *c, int *mean, int *varv, Vec **chan)
{
    int64_t C = x->shape.d[0], inner = shape_count(x->shape) / C;
    Vec *outer = L->out;
    *c = open_for(L, C);
    ((LStmt *)outer->at[outer->n - 1])->parallel = true;      /* the channels are independent */
    *chan = L->out;
    Expr *M = ex(X_ITOF, imul(var(0), i64(inner)), NULL);
    int sum = set_new(L, f32(0));
    int b = open_for(L, -1), i = open_for(L, inner);
    set(L, sum, ex(X_ADD, get(sum), elem(L, x, b, imad(var(*c), inner, var(i)))));
    L->out = *chan;
    *mean = set_new(L, ex(X_DIV, get(sum), M));
    int sq = set_new(L, f32(0));
    b = open_for(L, -1), i = open_for(L, inner);
    Expr *dev = ex(X_SUB, elem(L, x, b, imad(var(*c), inner, var(i))), get(*mean));
    set(L, sq, ex(X_ADD, get(sq), ex(X_MUL, dev, dev)));
    L->out = *chan;
    *varv = set_new(L, ex(X_DIV, get(sq), M));
    return b;
}

/* batchnorm (training), per channel over the batch:
 *   y = (x - mean) / sqrt(var + eps) gamma + beta
 *   running_mean = (1 - m) running_mean + m mean
 *   running_var  = (1 - m) running_var + m var M / (M - 1) */
static void lower_batchnorm_train(Lower *L, const Node *n)
{
    Vec *top = L->out, *chan;
    const Node *x = n->in[0];
    int64_t inner = shape_count(x->shape) / x->shape.d[0];
    int c, mean, varv;
    channel_stats(L, x, &c, &mean, &varv, &chan);
    ((LStmt *)top->at[top->n - 1])->comment = arena_printf("%%%d = batchnorm (batch statistics) %s : %s",
                                                          n->id, n->label, shape_str(n->shape));
    int scale = set_new(L, ex(X_DIV, elem(L, n->in[1], 0, var(c)),
                              ex(X_SQRT, ex(X_ADD, get(varv), f32(n->alpha)), NULL)));
    int b = open_for(L, -1), i = open_for(L, inner);
    Expr *idx = imad(var(c), inner, var(i));
    store(L, L->buf[n->id], at(L->buf[n->id], b, idx),
          ex(X_ADD, ex(X_MUL, ex(X_SUB, elem(L, x, b, idx), get(mean)), get(scale)), elem(L, n->in[2], 0, var(c))),
          false);
    L->out = chan;
    Expr *M = ex(X_ITOF, imul(var(0), i64(inner)), NULL), *m = f32(n->momentum), *keep = f32(1 - n->momentum);
    Expr *unbiased = ex(X_DIV, ex(X_MUL, get(varv), M), ex(X_MAX, ex(X_SUB, M, f32(1)), f32(1)));
    store(L, L->buf[n->in[3]->id], var(c), ex(X_ADD, ex(X_MUL, keep, elem(L, n->in[3], 0, var(c))),
                                             ex(X_MUL, m, get(mean))), false);
    store(L, L->buf[n->in[4]->id], var(c), ex(X_ADD, ex(X_MUL, keep, elem(L, n->in[4], 0, var(c))),
                                             ex(X_MUL, m, unbiased)), false);
    L->out = top;
}

/* batchnorm_example: per channel c of the example [N, C, inner], the mean and
 * biased variance over its N and inner cells; then y, or an updated statistic */
static void lower_bn_example(Lower *L, const Node *n)
{
    Vec *top;
    const Node *x = n->in[0];
    int64_t N = x->shape.d[0], C = x->shape.d[1], inner = shape_count(x->shape) / (N * C);
    int b = begin(L, n, &top);
    int c = open_for(L, C);
    Vec *chan = L->out;
    Expr *M = f32((double)(N * inner));
    int sum = set_new(L, f32(0));
    int k = open_for(L, N), i = open_for(L, inner);
    set(L, sum, ex(X_ADD, get(sum), elem(L, x, b, imad(imad(var(k), C, var(c)), inner, var(i)))));
    L->out = chan;
    int mean = set_new(L, ex(X_DIV, get(sum), M)), sq = set_new(L, f32(0));
    k = open_for(L, N), i = open_for(L, inner);
    Expr *dev = ex(X_SUB, elem(L, x, b, imad(imad(var(k), C, var(c)), inner, var(i))), get(mean));
    set(L, sq, ex(X_ADD, get(sq), ex(X_MUL, dev, dev)));
    L->out = chan;
    int varv = set_new(L, ex(X_DIV, get(sq), M));
    const Buf *out = L->buf[n->id];
    if (n->aux == 0) {
        int scale = set_new(L, ex(X_DIV, elem(L, n->in[1], b, var(c)),
                                  ex(X_SQRT, ex(X_ADD, get(varv), f32(n->alpha)), NULL)));
        k = open_for(L, N), i = open_for(L, inner);
        Expr *idx = imad(imad(var(k), C, var(c)), inner, var(i));
        store(L, out, at(out, b, idx), ex(X_ADD, ex(X_MUL, ex(X_SUB, elem(L, x, b, idx), get(mean)), get(scale)),
                                          elem(L, n->in[2], b, var(c))), false);
    } else {
        const Node *old = n->in[n->aux == 1 ? 3 : 4];
        store(L, out, at(out, b, var(c)), ex(X_ADD, ex(X_MUL, elem(L, old, b, var(c)), f32(n->momentum)),
                                             ex(X_MUL, get(n->aux == 1 ? mean : varv), f32(1 - n->momentum))), false);
    }
    L->out = top;
}

/* ---- losses ------------------------------------------------------------------ */

/* coef / total: every loss is a mean over the whole batch */
static Expr *per_total(const Node *n)
{
    return ex(X_DIV, f32(n->value), ex(X_ITOF, arg(1), NULL));
}

static Expr *is_label(int i, int b)
{
    return ex(X_EQ, var(i), ex(X_LABEL, var(b), NULL));
}

/* softmax_cross_entropy: loss = log sum_j e^(f_j) - f_y;  df_i = softmax(f)_i - [i = y] */
static void lower_ce(Lower *L, const Node *n, int b)
{
    const Node *f = n->in[0];
    int64_t K = f->shape.d[0];
    int m = row_reduce(L, f, b, i64(0), K, X_MAX, -INFINITY, NULL, NULL);
    int s = row_reduce(L, f, b, i64(0), K, X_ADD, 0, shifted_exp, get(m));
    int fy = set_new(L, load(L->buf[f->id], at(L->buf[f->id], b, ex(X_LABEL, var(b), NULL))));
    set(L, L->k->ret, ex(X_ADD, get(L->k->ret), ex(X_MUL, per_total(n),
        ex(X_SUB, ex(X_ADD, get(m), ex(X_LOG, get(s), NULL)), get(fy)))));
    int i = open_for(L, K);
    Expr *p = ex(X_DIV, shifted_exp(elem(L, f, b, var(i)), get(m)), get(s));
    store(L, L->buf[n->id], at(L->buf[n->id], b, var(i)),
          ex(X_MUL, per_total(n), ex(X_SUB, p, select3(is_label(i, b), f32(1), f32(0)))), false);
}

/* svm_hinge: loss = sum_{j != y} max(0, f_j - f_y + margin);
 * df_j = [j != y][f_j - f_y + margin > 0],  df_y = -sum_{j != y} of those */
static void lower_hinge(Lower *L, const Node *n, int b)
{
    const Node *f = n->in[0];
    int64_t K = f->shape.d[0];
    Vec *here = L->out;
    int fy = set_new(L, load(L->buf[f->id], at(L->buf[f->id], b, ex(X_LABEL, var(b), NULL))));
    int loss = set_new(L, f32(0)), count = set_new(L, f32(0));
    int j = open_for(L, K);
    Expr *margin = ex(X_ADD, ex(X_SUB, elem(L, f, b, var(j)), get(fy)), f32(n->alpha));
    Expr *active = ex(X_AND, ex(X_LT, f32(0), margin), ex(X_LT, f32(0.5f), select3(is_label(j, b), f32(0), f32(1))));
    int on = set_new(L, select3(active, f32(1), f32(0)));
    set(L, loss, ex(X_ADD, get(loss), ex(X_MUL, get(on), margin)));
    set(L, count, ex(X_ADD, get(count), get(on)));
    store(L, L->buf[n->id], at(L->buf[n->id], b, var(j)), ex(X_MUL, per_total(n), get(on)), false);
    L->out = here;
    set(L, L->k->ret, ex(X_ADD, get(L->k->ret), ex(X_MUL, per_total(n), get(loss))));
    store(L, L->buf[n->id], at(L->buf[n->id], b, ex(X_LABEL, var(b), NULL)),
          ex(X_NEG, ex(X_MUL, per_total(n), get(count)), NULL), false);
}

/* mse: loss = sum (f - t)^2 / T;  df = 2 (f - t) / T */
static void lower_mse(Lower *L, const Node *n, int b, const Buf *targets)
{
    const Node *f = n->in[0];
    int64_t T = shape_count(f->shape);
    Vec *here = L->out;
    int loss = set_new(L, f32(0));
    int i = open_for(L, T);
    int diff = set_new(L, ex(X_SUB, elem(L, f, b, var(i)), load(targets, at(targets, b, var(i)))));
    set(L, loss, ex(X_ADD, get(loss), ex(X_MUL, get(diff), get(diff))));
    store(L, L->buf[n->id], at(L->buf[n->id], b, var(i)),
          ex(X_MUL, per_total(n), ex(X_MUL, f32(2.0 / (double)T), get(diff))), false);
    L->out = here;
    set(L, L->k->ret, ex(X_ADD, get(L->k->ret), ex(X_MUL, per_total(n), ex(X_DIV, get(loss), f32((double)T)))));
}

static void lower_loss(Lower *L, const Node *n)
{
    Vec *top;
    int b = begin(L, n, &top);
    if (n->aux == LOSS_SOFTMAX_CE)
        lower_ce(L, n, b);
    else if (n->aux == LOSS_SVM_HINGE)
        lower_hinge(L, n, b);
    else
        lower_mse(L, n, b, new_buf("t", BASE_Y, 0, shape_count(n->shape), true));
    L->out = top;
}

/* ---- gradient ops ------------------------------------------------------------ */

/* Zeroes an unbatched (shared) buffer before a sum over the batch. */
static void zero(Lower *L, const Node *n)
{
    Vec *top = L->out;
    int i = open_for(L, shape_count(n->shape));
    store(L, L->buf[n->id], var(i), f32(0), false);
    L->out = top;
}

/* Zeroes example b's part of a per-example buffer, for scattering ops. */
static void zero_example(Lower *L, const Node *n, int b)
{
    Vec *here = L->out;
    int i = open_for(L, shape_count(n->shape));
    store(L, L->buf[n->id], at(L->buf[n->id], b, var(i)), f32(0), false);
    L->out = here;
}

/* dense: dX = dY W, one GEMM of [n, N] by [N, D] */
static void lower_dense_dx(Lower *L, const Node *n)
{
    const Node *dy = n->in[0];
    int64_t D = n->shape.d[0], N = dy->shape.d[0];
    gemm(L, var(0), D, i64(N), L->buf[dy->id], i64(0), N, 1, L->buf[n->in[1]->id], i64(0), D,
         L->buf[n->id], i64(0), D, false);
}

/* dense: dW = dY^T X, one GEMM of [N, n] by [n, D]: the sum over the batch */
static void lower_dense_dw(Lower *L, const Node *n)
{
    const Node *dy = n->in[0], *x = n->in[1];
    int64_t N = n->shape.d[0], D = n->shape.d[1];
    const Buf *xb = L->buf[x->id];                /* a shared x: every example's row is the same */
    gemm(L, i64(N), D, var(0), L->buf[dy->id], i64(0), 1, N, xb, i64(0), xb->batched ? D : 0,
         L->buf[n->id], i64(0), D, false);
}

/* conv: dcol[k, p] = sum_co W[co, k] dy[co, p] (a GEMM of W^T by dy; per
 * group with G groups: dcol_g = W_g^T dy_g), then
 * col2im: dx[ci, oh s + kh d - pad, ow s + kw d - pad] += dcol[k, p];
 * a chunk of output rows at a time when dcol is larger than the L2 (see
 * col_rows): each chunk's col2im adds what its rows contribute. */
/* dx[b] += col2im of dcol[k, col0 + p] (rows ld floats long) for the output
 * rows r of dy: each column of the convolution's im2col matrix back to the
 * input cell it came from. */
static void col2im_add(Lower *L, const Node *n, int b, const Buf *dcol, int64_t ld, Expr *col0, Rows r)
{
    Vec *here = L->out;
    const Window *w = &n->win;
    const Node *dy = n->in[0];
    const Buf *dx = L->buf[n->id];
    int64_t C = n->shape.d[0], H = n->shape.d[1], Wd = n->shape.d[2], OW = dy->shape.d[2];
    if (row_copies(w)) {         /* contiguous adds, a row at a time */
        Expr *k, *p, *xi;
        col_cells(L, w, n->shape, dy->shape, r, &k, &p, &xi);
        store(L, dx, at(dx, b, xi), load(dcol, imad(k, ld, iadd(col0, p))), true);
        L->out = here;
        return;
    }
    int ci = open_for(L, C), kh = open_for(L, w->kh), kw = open_for(L, w->kw);
    int oh = open_rows(L, r), ow = open_for(L, OW);
    Expr *ih = tap_h(w, oh, kh), *iw = tap_w(w, ow, kw);
    open_if(L, inside(ih, iw, H, Wd, w));
    Expr *k = imad(imad(var(ci), w->kh, var(kh)), w->kw, var(kw));
    store(L, dx, at(dx, b, imad(imad(var(ci), H, ih), Wd, iw)), load(dcol, imad(k, ld, iadd(col0, col_of(r, oh, OW, ow)))),
          true);
    L->out = here;
}

static void dy_run(Lower *L, const Buf *dyb, int b, Expr *p0, int64_t len, Expr *col0, int64_t C, int64_t P,
                   int64_t D, const Buf *dyE);

/* conv_dx over the full groups of E examples (see "several examples a
 * GEMM"): their dy side by side in dyE [c, E P], one GEMM W^T dyE into
 * dcolE [K, E P], then each example's col2im. */
static void lower_conv_dx_groups(Lower *L, const Node *n, int64_t E)
{
    Vec *top = L->out;
    const Window *w = &n->win;
    const Node *dy = n->in[0];
    int64_t OH = dy->shape.d[1], P = OH * dy->shape.d[2], D = E * P, co = dy->shape.d[0];
    int64_t K = n->shape.d[0] * w->kh * w->kw;
    const Buf *dyE = scratch(L, "dyE", co * D), *dcolE = scratch(L, "dcolE", K * D);
    int q = open_range(L, i64(0), groups_of(E));
    ((LStmt *)top->at[top->n - 1])->comment = arena_printf("%%%d = conv_dx (%lld examples a GEMM) : %s", n->id,
                                                          (long long)E, shape_str(n->shape));
    Vec *group = L->out;
    int b = open_range(L, imul(var(q), i64(E)), imad(var(q), E, i64(E)));
    dy_run(L, L->buf[dy->id], b, i64(0), P, group_col(b, q, E, P), co, P, D, dyE);
    L->out = group;
    gemm(L, i64(K), D, i64(co), L->buf[n->in[1]->id], i64(0), 1, K, dyE, i64(0), D, dcolE, i64(0), D, false);
    kblock_when_large(L, co, D);
    b = open_range(L, imul(var(q), i64(E)), imad(var(q), E, i64(E)));
    zero_example(L, n, b);
    col2im_add(L, n, b, dcolE, D, group_col(b, q, E, P), (Rows){i64(0), OH});
    L->out = top;
}

static void lower_conv_dx(Lower *L, const Node *n)
{
    Vec *top;
    const Window *w = &n->win;
    const Node *dy = n->in[0];
    int64_t E = conv_batch(L, n);
    if (winograd_grouped(L, n))
        lower_winograd(L, n, 2 - w->pt, 2 - w->pl, true, E = WINO_GROUP);
    else if (E > 1)
        lower_conv_dx_groups(L, n, E);
    int64_t C = n->shape.d[0], OH = dy->shape.d[1], OW = dy->shape.d[2];
    int64_t K = C * w->kh * w->kw, P = OH * OW, co = dy->shape.d[0], cg = co / w->groups, Kg = K / w->groups;
    int64_t R = pointwise(w) ? OH : col_rows(K, OH, OW, FWD_COLS), N = R * OW;   /* see lower_conv */
    const Buf *dx = L->buf[n->id], *dyb = L->buf[dy->id];
    const Buf *dcol = pointwise(w) ? NULL : scratch(L, "dcol", K * N);
    int b = begin(L, n, &top);
    if (E > 1) {                                 /* the examples left over */
        LStmt *s = top->at[top->n - 1];
        s->lo = grouped(E);
        s->comment = arena_printf("%s (the examples left over)", s->comment);
    }
    Rows r = {i64(0), OH};
    if (dcol) {
        zero_example(L, n, b);
        if (R < OH)
            r.oh0 = imul(var(open_for(L, OH / R)), i64(R));
        r.rows = R;
    }
    Vec *chunk = L->out;
    Expr *g = group_loop(L, w), *out = imul(g, i64(Kg * N));
    gemm(L, i64(Kg), N, i64(cg), L->buf[n->in[1]->id], imul(g, i64(cg * Kg)), 1, Kg, dyb,
         at(dyb, b, iadd(imul(g, i64(cg * P)), imul(r.oh0, i64(OW)))), P, dcol ? dcol : dx, dcol ? out : at(dx, b, out),
         N, false);
    L->out = chunk;
    if (dcol)
        col2im_add(L, n, b, dcol, N, i64(0), r);
    L->out = top;
}

/* ---- the weight gradient by rows (im2row) ----------------------------------
 * dW[co, k] = sum_{b, p} dy[b, co, p] col[b, k, p] is also
 *   dW = sum_b dy_b colT_b,   colT_b[p, k] = col_b[k, p]   (the "im2row"):
 * an ordinary GEMM of [c, P] by [P, K], whose kernel broadcasts dy and runs
 * along dW's rows in vectors (k), where gemm_nt sums along p and reduces
 * across lanes. With C >= 16 input channels colT's columns are in the
 * order (kh, kw, ci), each row kh kw runs of C floats copied from a
 * channels-innermost copy of x, and the GEMM sums into a scratch dWp in
 * that order, put back into dW's (ci, kh, kw) at the end (the same sums in
 * the same order: the gradient's bits do not change).
 * The GEMM sums over D = E R OW columns of dy at a time, D at least
 * DW_DEPTH, so that each tile of dW (up to 9.4 MB in all) is loaded and
 * stored once per D products rather than once per example:
 *   - a small image (ResNet's 7x7, 14x14): E examples a GEMM, their colT
 *     one under another and their dy side by side (the examples left over
 *     at the end of the batch, n mod E, are one more GEMM);
 *   - a large image: one example at a time, R of its OH output rows a
 *     GEMM (the fewest rows, a divisor of OH, that make D >= DW_DEPTH).
 * dy's columns are first copied into dyE [c, D] (contiguous rows: dy's own
 * rows, P apart, can fall into one set of the L1 when P is a multiple of a
 * large power of 2: 224 x 224). The sums of dW run over the examples and
 * rows in one fixed order, whatever the threads that share the GEMM's
 * tiles (rt_gemm): the gradient is the same from run to run.
 * DW_DEPTH: a GEMM moves 8 bytes of dW per cell (load, store) for 2 D
 * flops; at D = 192 that is 1/48 byte a flop, which the L3 (where most of
 * a large dW lives) supplies at a core's peak, the GEMM asking for each
 * tile of dW one tile ahead (prefetch_rows_below in llvm.c). Measured with
 * that: D = 400 no faster for 512 channels at 7x7 and 28x28, and 14%
 * slower for 128 at 28x28 (a colT of 3.7 MB leaves the L2). */
enum { DW_DEPTH = 192 };

/* Conv n's weight gradient: by rows, or by gemm_nt (see dw_plan); E
 * examples a GEMM (E > 1: whole images), or R output rows a GEMM (E = 1);
 * ld: colT's row length (see row_stride). */
typedef struct { bool rows; int64_t E, R, ld; } DwPlan;
enum { LANES_F32 = 16 };   /* floats a vector of the GEMM routines */

/* A row length of at least K floats that is an odd number of 64-byte cache
 * lines: the GEMM reads a few columns of colT down its rows, and rows
 * whose distance is a multiple of 2^s lines (K = 4608: 288 lines) fall
 * into a few sets of the L1. */
static int64_t row_stride(int64_t K)
{
    int64_t ld = (K + 15) / 16 * 16;
    return ld / 16 % 2 ? ld : ld + 16;
}

/* The fewest of OH output rows, a divisor of OH, that make `depth` columns. */
static int64_t rows_for(int64_t OH, int64_t OW, int64_t depth)
{
    for (int64_t r = 1; r < OH; r++)
        if (OH % r == 0 && r * OW >= depth)
            return r;
    return OH;
}

/* The register tile of the weight gradient's GEMM: 8 rows by 3 vectors
 * where the registers hold it (AVX-512: 24 accumulators hide the FMA
 * latency), else the default. */
static void dw_tile(int *r, int *c)
{
    if (gemm_tile_ok(false, 8, 3))
        *r = 8, *c = 3;
    else
        gemm_tile_default(false, r, c);
}

/* By rows when dW's rows (K) fill the tile's vectors at least once: with
 * fewer (a first layer: K = 3 x 3 x 3 = 27) the GEMM's vectors run mostly
 * masked and a row of tiles has too few accumulators, while gemm_nt's run
 * along the image (measured: 3 -> 64 at 224x224, 81 GFLOP/s by rows, 103
 * by gemm_nt). Grouped convolutions keep gemm_nt. Then E whole images a
 * GEMM when one has fewer than DW_DEPTH columns, else R rows of one (the
 * fewest that make DW_DEPTH). colT, D ld floats, need not stay in the
 * cache: the GEMM reads it once, a strip of columns at a time. */
static DwPlan dw_plan(const Node *n)
{
    const Node *dy = n->in[0];
    int64_t K = shape_count(n->shape) / n->shape.d[0], OH = dy->shape.d[1], OW = dy->shape.d[2], P = OH * OW;
    int tr, tc;
    dw_tile(&tr, &tc);
    DwPlan d = {.rows = n->win.groups == 1 && K >= (int64_t)tc * LANES_F32, .E = (DW_DEPTH + P - 1) / P, .R = OH,
                .ld = row_stride(K)};
    if (d.E == 1)
        d.R = rows_for(OH, OW, DW_DEPTH);
    return d;
}

/* The padded copy of example b of x that im2row reads, channels innermost:
 * xhwc[(r Wp + j) C + ci] = x[ci, r - pt, j - pl], 0 in the padding. */
static const Buf *hwc_copy(Lower *L, const Node *x, int b, const Window *w)
{
    Vec *here = L->out;
    int64_t C = x->shape.d[0], H = x->shape.d[1], W = x->shape.d[2];
    int64_t Hp = H + w->pt + w->pb, Wp = W + w->pl + w->pr;
    const Buf *xT = scratch(L, "xhwc", Hp * Wp * C);
    if (has_padding(w))
        zero_scratch(L, xT, Hp * Wp * C);
    int ih = open_for(L, H), iw = open_for(L, W), ci = open_for(L, C);
    store(L, xT, imad(imad(iadd(var(ih), i64(w->pt)), Wp, iadd(var(iw), i64(w->pl))), C, var(ci)),
          elem(L, x, b, imad(imad(var(ci), H, var(ih)), W, var(iw))), false);
    L->out = here;
    return xT;
}

/* im2row of output rows r of example b into colT from row `row0` on, its
 * columns in the order k' = (kh, kw, ci):
 * colT[row0 + (oh - oh0) OW + ow, k'] = xhwc[oh s + kh d, ow s + kw d, ci],
 * so that each row of colT is kh kw runs of C floats copied whole from the
 * channels-innermost copy (hwc_copy). The GEMM then sums dW in that column
 * order (dw_unpermute puts it back). */
static void im2row_hwc(Lower *L, const Buf *xT, int64_t C, int64_t Wp, const Window *w, Shape out, Rows r,
                       Expr *row0, int64_t ld, const Buf *colT)
{
    Vec *here = L->out;
    int64_t OW = out.d[2];
    int oh = open_rows(L, r), ow = open_for(L, OW);
    int kh = open_for(L, w->kh), kw = open_for(L, w->kw), ci = open_for(L, C);
    Expr *ih = iadd(imul(var(oh), i64(w->sh)), imul(var(kh), i64(w->dh)));
    Expr *iw = iadd(imul(var(ow), i64(w->sw)), imul(var(kw), i64(w->dw)));
    Expr *k = imad(imad(var(kh), w->kw, var(kw)), C, var(ci));
    store(L, colT, imad(iadd(row0, col_of(r, oh, OW, ow)), ld, k), load(xT, imad(imad(ih, Wp, iw), C, var(ci))), false);
    L->out = here;
}

/* With fewer channels than a vector (LeNet's 6), runs of C floats are
 * short: im2row in the weights' own column order k = (ci, kh, kw),
 * colT[row0 + (oh - oh0) OW + ow, k] = x[ci, oh s + kh d - pad, ow s + kw d - pad],
 * from the padded copy xp with padding; each row of colT written along k,
 * the reads hopping between channels. */
static bool rows_hwc(const Node *x) { return x->shape.d[0] >= LANES_F32; }

static void im2row_chw(Lower *L, const Node *x, int b, const Buf *xp, const Window *w, Shape out, Rows r,
                       Expr *row0, int64_t ld, const Buf *colT)
{
    Vec *here = L->out;
    int64_t C = x->shape.d[0], H = x->shape.d[1], W = x->shape.d[2], OW = out.d[2];
    int64_t Hp = H + w->pt + w->pb, Wp = W + w->pl + w->pr;
    int oh = open_rows(L, r), ow = open_for(L, OW);
    int ci = open_for(L, C), kh = open_for(L, w->kh), kw = open_for(L, w->kw);
    Expr *k = imad(imad(var(ci), w->kh, var(kh)), w->kw, var(kw));
    Expr *v = xp ? load(xp, padded_tap(w, var(ci), Hp, Wp, oh, ow, kh, kw))
                 : elem(L, x, b, imad(imad(var(ci), H, tap_h(w, oh, kh)), W, tap_w(w, ow, kw)));
    store(L, colT, imad(iadd(row0, col_of(r, oh, OW, ow)), ld, k), v, false);
    L->out = here;
}

/* What im2row reads for example b: the channels-innermost copy, or (few
 * channels) the padded copy (NULL without padding: x itself). */
static const Buf *im2row_source(Lower *L, const Node *x, int b, const Window *w)
{
    return rows_hwc(x) ? hwc_copy(L, x, b, w) : has_padding(w) ? pad_copy(L, x, b, w) : NULL;
}

static void im2row(Lower *L, const Node *x, int b, const Buf *src, const Window *w, Shape out, Rows r, Expr *row0,
                   int64_t ld, const Buf *colT)
{
    if (rows_hwc(x))
        im2row_hwc(L, src, x->shape.d[0], x->shape.d[2] + w->pl + w->pr, w, out, r, row0, ld, colT);
    else
        im2row_chw(L, x, b, src, w, out, r, row0, ld, colT);
}

/* dW[co, (ci, kh, kw)] = dWp[co, (kh, kw, ci)]: the weight gradient from
 * the GEMM's column order (see im2row) to the weights' */
static void dw_unpermute(Lower *L, const Node *n, const Buf *dWp)
{
    Vec *top = L->out;
    int64_t co = n->shape.d[0], C = n->shape.d[1], T = n->win.kh * n->win.kw, K = C * T;
    int o = open_for(L, co), ci = open_for(L, C), t = open_for(L, T);
    store(L, L->buf[n->id], imad(var(o), K, imad(var(ci), T, var(t))), load(dWp, imad(var(o), K, imad(var(t), C, var(ci)))),
          false);
    L->out = top;
}

/* dyE[co, col0 + p] = dy[b, co, p0 + p] for p < len: a run of example b's
 * dy into the GEMM's rows of D columns */
static void dy_run(Lower *L, const Buf *dyb, int b, Expr *p0, int64_t len, Expr *col0, int64_t C, int64_t P,
                   int64_t D, const Buf *dyE)
{
    Vec *here = L->out;
    int c = open_for(L, C), p = open_for(L, len);
    store(L, dyE, iadd(imad(var(c), D, col0), var(p)), load(dyb, at(dyb, b, iadd(imad(var(c), P, p0), var(p)))), false);
    L->out = here;
}

/* dW += dyE colT over `depth` columns (D apart in dyE): 8 x 3 register
 * tiles where the registers hold them (the tuner may choose others),
 * columns outside: a strip of colT stays in the cache while dyE, c D
 * floats, streams past it from the L2. */
static void dw_gemm(Lower *L, const Node *n, const DwPlan *d, int64_t D, Expr *depth, const Buf *dyE, const Buf *colT,
                    const Buf *dWp)
{
    int64_t co = n->shape.d[0], K = shape_count(n->shape) / co;
    gemm(L, i64(co), K, depth, dyE, i64(0), D, 1, colT, i64(0), d->ld, dWp, i64(0), K, true);
    Gemm *g = ((LStmt *)L->out->at[L->out->n - 1])->gemm;
    dw_tile(&g->tile_r, &g->tile_c);
    g->cols_outer = true;
}

/* E = 1: example b, R output rows at a time: im2row and dy's run, then the GEMM. */
static void dw_rows_example(Lower *L, const Node *n, int b, const DwPlan *d, const Buf *colT, const Buf *dyE,
                            const Buf *dWp)
{
    const Window *w = &n->win;
    const Node *dy = n->in[0], *x = n->in[1];
    int64_t OH = dy->shape.d[1], OW = dy->shape.d[2], D = d->R * OW;
    const Buf *src = im2row_source(L, x, b, w);
    Rows r = {d->R < OH ? imul(var(open_for(L, OH / d->R)), i64(d->R)) : i64(0), d->R};
    im2row(L, x, b, src, w, dy->shape, r, i64(0), d->ld, colT);
    dy_run(L, L->buf[dy->id], b, imul(r.oh0, i64(OW)), D, i64(0), n->shape.d[0], OH * OW, D, dyE);
    dw_gemm(L, n, d, D, i64(D), dyE, colT, dWp);
}

/* E > 1: examples [lo, hi) (at most E), their colT one under another and
 * their dy side by side, then one GEMM over `count` examples' columns. */
static void dw_group(Lower *L, const Node *n, const DwPlan *d, Expr *lo, Expr *hi, Expr *count, const Buf *colT,
                     const Buf *dyE, const Buf *dWp)
{
    Vec *here = L->out;
    const Node *dy = n->in[0], *x = n->in[1];
    int64_t P = dy->shape.d[1] * dy->shape.d[2], D = d->E * P;
    int b = open_range(L, lo, hi);
    Expr *col0 = imul(iadd(var(b), imul(lo, i64(-1))), i64(P));      /* (b - lo) P */
    Rows all = {i64(0), dy->shape.d[1]};
    im2row(L, x, b, im2row_source(L, x, b, &n->win), &n->win, dy->shape, all, col0, d->ld, colT);
    dy_run(L, L->buf[dy->id], b, i64(0), P, col0, n->shape.d[0], P, D, dyE);
    L->out = here;
    dw_gemm(L, n, d, D, imul(count, i64(P)), dyE, colT, dWp);
}

/* conv, the weight gradient by rows (see above): E = 1, every example
 * alone; else the full groups of E, then the examples left over. */
static void lower_conv_dw_rows(Lower *L, const Node *n, const DwPlan *d)
{
    Vec *top = L->out;
    const Node *dy = n->in[0];
    int64_t co = n->shape.d[0], E = d->E, D = E * d->R * dy->shape.d[2];
    const Buf *colT = scratch(L, "colT", D * d->ld), *dyE = scratch(L, "dyE", co * D);
    bool hwc = rows_hwc(n->in[1]);
    const Buf *dWp = hwc ? scratch(L, "dWp", shape_count(n->shape)) : L->buf[n->id];    /* see im2row */
    if (hwc)
        zero_scratch(L, dWp, shape_count(n->shape));
    else
        zero(L, n);
    const char *what = arena_printf("%%%d = conv_dw (im2row, %lld %s a GEMM) : %s", n->id,
                                    (long long)(E > 1 ? E : d->R), E > 1 ? "examples" : "rows", shape_str(n->shape));
    if (E == 1) {
        int b = open_for(L, -1);
        ((LStmt *)top->at[top->n - 1])->comment = what;
        dw_rows_example(L, n, b, d, colT, dyE, dWp);
        L->out = top;
        if (hwc)
            dw_unpermute(L, n, dWp);
        return;
    }
    int q = open_range(L, i64(0), groups_of(E));
    ((LStmt *)top->at[top->n - 1])->comment = what;
    dw_group(L, n, d, imul(var(q), i64(E)), imad(var(q), E, i64(E)), i64(E), colT, dyE, dWp);
    L->out = top;
    open_if(L, ex(X_LT, i64(0), left_over(E)));
    ((LStmt *)top->at[top->n - 1])->comment = arena_printf("%%%d = conv_dw : the examples left over", n->id);
    dw_group(L, n, d, grouped(E), var(0), left_over(E), colT, dyE, dWp);
    L->out = top;
    if (hwc)
        dw_unpermute(L, n, dWp);
}

/* conv: dW[co, k] = sum_{b, p} dy[b, co, p] col[b, k, p]: per example the
 * im2col, then dy [c, OH OW] times its transpose (gemm_nt), summed into dW;
 * with G groups, dW_g [c/G, K/G] += dy_g col_g^T per group */
static void lower_conv_dw(Lower *L, const Node *n)
{
    DwPlan d = dw_plan(n);
    if (d.rows) {
        lower_conv_dw_rows(L, n, &d);
        return;
    }
    Vec *top = L->out;
    const Window *w = &n->win;
    const Node *dy = n->in[0], *x = n->in[1];
    int64_t co = n->shape.d[0], Kg = n->shape.d[1] * w->kh * w->kw, P = dy->shape.d[1] * dy->shape.d[2];
    int64_t cg = co / w->groups, OH = dy->shape.d[1], OW = dy->shape.d[2];
    int64_t R = pointwise(w) ? OH : col_rows(Kg * w->groups, OH, OW, DW_COLS), N = R * OW;
    const Buf *xb = L->buf[x->id], *dyb = L->buf[dy->id];
    const Buf *col = pointwise(w) ? NULL : scratch(L, "col", Kg * w->groups * N);
    zero(L, n);
    int b = open_for(L, -1);
    ((LStmt *)top->at[top->n - 1])->comment = arena_printf("%%%d = conv_dw : %s", n->id, shape_str(n->shape));
    const Buf *xp = col ? im2col_source(L, x, b, w) : NULL;
    Expr *p0 = col ? im2col_chunk(L, x, b, xp, w, dy->shape, R, col) : i64(0);  /* the chunk's first column of dy */
    Expr *g = group_loop(L, w), *in = imul(g, i64(Kg * N));
    gemm_nt(L, i64(cg), Kg, i64(N), dyb, at(dyb, b, iadd(imul(g, i64(cg * P)), p0)), P, col ? col : xb,
            col ? in : at(xb, b, in), N, L->buf[n->id], imul(g, i64(cg * Kg)), Kg, true);
    L->out = top;
}

/* db[c] = sum_{b, i} dy[b, c, i] */
static void lower_channel_sum(Lower *L, const Node *n)
{
    Vec *top = L->out;
    const Node *dy = n->in[0];
    int64_t C = n->shape.d[0], inner = shape_count(dy->shape) / C;
    zero(L, n);
    int b = open_for(L, -1);
    ((LStmt *)top->at[top->n - 1])->comment = arena_printf("%%%d = channel_sum : %s", n->id, shape_str(n->shape));
    int c = open_for(L, C);
    int s = row_reduce(L, dy, b, imul(var(c), i64(inner)), inner, X_ADD, 0, NULL, NULL);
    store(L, L->buf[n->id], var(c), get(s), true);
    L->out = top;
}

/* The window loops of pooling gradients: opens b, c, oh, ow; returns b. */
static int pool_window(Lower *L, const Node *n, Vec **top, int *c, int *oh, int *ow, Vec **pixel)
{
    const Node *dy = n->in[0];
    int b = begin(L, n, top);
    zero_example(L, n, b);
    *c = open_for(L, dy->shape.d[0]), *oh = open_for(L, dy->shape.d[1]), *ow = open_for(L, dy->shape.d[2]);
    *pixel = L->out;
    return b;
}

/* maxpool with windows that tile the image (stride = size, no padding):
 * every input cell is in exactly one window, so each is written once, with
 * no zeroing and no branches:
 *   hit = not yet found and x == y;  dx = hit ? dy : 0;  found |= hit */
static void lower_maxpool_dx_tiled(Lower *L, const Node *n)
{
    Vec *top;
    const Window *w = &n->win;
    const Node *dy = n->in[0], *x = n->in[1], *y = n->in[2];
    int64_t H = n->shape.d[1], W = n->shape.d[2];
    int b = begin(L, n, &top);
    int c = open_for(L, dy->shape.d[0]), oh = open_for(L, dy->shape.d[1]), ow = open_for(L, dy->shape.d[2]);
    Expr *yidx = imad(imad(var(c), dy->shape.d[1], var(oh)), dy->shape.d[2], var(ow));
    int m = set_new(L, elem(L, y, b, yidx)), g = set_new(L, elem(L, dy, b, yidx)), found = set_new(L, f32(0));
    int hit = set_new(L, f32(0));
    int kh = open_for(L, w->kh), kw = open_for(L, w->kw);
    Expr *xidx = imad(imad(var(c), H, tap_h(w, oh, kh)), W, tap_w(w, ow, kw));   /* no padding here */
    set(L, hit, select3(ex(X_AND, ex(X_LT, get(found), f32(0.5f)), ex(X_EQ, elem(L, x, b, xidx), get(m))), f32(1), f32(0)));
    store(L, L->buf[n->id], at(L->buf[n->id], b, xidx), select3(ex(X_LT, f32(0.5f), get(hit)), get(g), f32(0)), false);
    set(L, found, ex(X_MAX, get(found), get(hit)));
    L->out = top;
}

/* maxpool with 2x2 windows: the vectorized L_POOL statement, for node p;
 * with `masked` (a MUL by a step), the product, into masked's buffer. */
static void lower_maxpool_dx_2x2(Lower *L, const Node *p, const Node *masked)
{
    Vec *top;
    const Node *dy = p->in[0], *out = masked ? masked : p;
    int b = begin(L, out, &top);
    Pool *q = pool(L, dy->shape.d[0] * dy->shape.d[1], p->shape.d[2], true);
    q->x = L->buf[p->in[1]->id], q->y = L->buf[p->in[2]->id], q->dy = L->buf[dy->id], q->dx = L->buf[out->id];
    q->x_at = at(q->x, b, i64(0)), q->y_at = at(q->y, b, i64(0));
    q->dy_at = at(q->dy, b, i64(0)), q->dx_at = at(q->dx, b, i64(0));
    if (masked) {
        q->mask = L->buf[masked->in[1]->in[0]->id];
        q->mask_at = at(q->mask, b, i64(0));
    }
    L->out = top;
}

/* maxpool with overlapping windows (taps unrolled, see pool_unrolled):
 * dy goes to the first cell of each window holding its maximum, in two
 * passes per output row of channel c:
 *   where[ow] = the offset in the padded plane of the first tap t (row-major)
 *               with xp[t] == y[c, oh, ow]; the plane's extra last cell when
 *               none is (a NaN maximum)    -- vectorized along ow: xp is x
 *               padded with NaN, which equals nothing, so no bounds tests
 *   dxp[where[ow]] += dy[c, oh, ow]        -- one scalar add per output
 * then dx[c] is dxp's inside. xp, dxp and where hold the one channel, in
 * the thread's private scratch, so the channels run in parts across
 * threads, each thread on its own planes. */
static void lower_maxpool_dx_unrolled(Lower *L, const Node *n)
{
    Vec *top;
    const Window *w = &n->win;
    const Node *dy = n->in[0], *x = n->in[1], *y = n->in[2];
    int64_t C = n->shape.d[0], H = n->shape.d[1], W = n->shape.d[2], OH = dy->shape.d[1], OW = dy->shape.d[2];
    int64_t Hp = H + w->pt + w->pb, Wp = W + w->pl + w->pr, Wq = phase_len(w, W), plane = Hp * Wp + 1;
    int64_t at_dxp = padded(window_plane(x, w)), at_where = at_dxp + padded(plane);
    const Buf *xp = window_private(L, x, w, "xpool", 0), *dxp = private_scratch(L, "dxpool", at_dxp, plane);
    const Buf *where = private_scratch(L, "where", at_where, OW), *dx = L->buf[n->id];
    int b = begin(L, n, &top);
    Vec *nest = L->out;
    int c = open_for(L, C);
    ((LStmt *)nest->at[nest->n - 1])->parallel = true;      /* the channels are independent */
    Vec *chan = L->out;
    window_copy(L, x, b, c, w, xp, NULL, NAN);
    Expr *base = imul(plane_of(dxp, var(c)), i64(plane));
    int i = open_for(L, plane);
    store(L, dxp, iadd(base, var(i)), f32(0), false);
    L->out = chan;
    int oh = open_for(L, OH);
    Vec *row = L->out;
    int ow = open_for(L, OW);
    Expr *yi = imad(imad(var(c), OH, var(oh)), OW, var(ow));
    int m = set_new(L, elem(L, y, b, yi));
    Expr *corner = ex(X_ITOF, imad(imul(var(oh), i64(w->sh)), Wp, imul(var(ow), i64(w->sw))), NULL);
    Expr *pick = f32((float)(Hp * Wp));
    for (int kh = w->kh - 1; kh >= 0; kh--)              /* the last test decides: the first tap wins */
        for (int kw = w->kw - 1; kw >= 0; kw--) {
            Expr *hit = ex(X_EQ, load(xp, window_tap(w, plane_of(xp, var(c)), Hp, Wq, oh, ow, kh, kw)), get(m));
            pick = select3(hit, ex(X_ADD, corner, f32((float)(kh * w->dh * Wp + kw * w->dw))), pick);
        }
    store(L, where, imad(plane_of(where, var(c)), OW, var(ow)), pick, false);
    L->out = row;
    ow = open_for(L, OW);
    store(L, dxp, iadd(base, ex(X_FTOI, load(where, imad(plane_of(where, var(c)), OW, var(ow))), NULL)),
          elem(L, dy, b, imad(imad(var(c), OH, var(oh)), OW, var(ow))), true);
    L->out = chan;
    int ih = open_for(L, H), iw = open_for(L, W);
    store(L, dx, at(dx, b, imad(imad(var(c), H, var(ih)), W, var(iw))),
          load(dxp, iadd(base, imad(iadd(var(ih), i64(w->pt)), Wp, iadd(var(iw), i64(w->pl))))), false);
    L->out = top;
}

/* maxpool: dy goes to the first cell of the window holding the maximum */
static void lower_maxpool_dx(Lower *L, const Node *n)
{
    const Window *w = &n->win;
    const Node *dy = n->in[0];
    if (tiles_2x2(w, n->shape.d[1], n->shape.d[2])) {
        lower_maxpool_dx_2x2(L, n, NULL);
        return;
    }
    if (w->sh == w->kh && w->sw == w->kw && !has_padding(w) && w->dh == 1 && w->dw == 1 &&
        n->shape.d[1] == dy->shape.d[1] * w->kh &&
        n->shape.d[2] == dy->shape.d[2] * w->kw) {
        lower_maxpool_dx_tiled(L, n);
        return;
    }
    int64_t H = n->shape.d[1], W = n->shape.d[2];
    if (pool_unrolled(w, true) && (H + w->pt + w->pb) * (W + w->pl + w->pr) < 1 << 24) {    /* offsets exact in float */
        lower_maxpool_dx_unrolled(L, n);
        return;
    }
    Vec *top, *pixel;
    const Node *x = n->in[1], *y = n->in[2];
    int c, oh, ow, b = pool_window(L, n, &top, &c, &oh, &ow, &pixel);
    Expr *yidx = imad(imad(var(c), dy->shape.d[1], var(oh)), dy->shape.d[2], var(ow));
    int m = set_new(L, elem(L, y, b, yidx)), done = set_new(L, f32(0));
    int kh = open_for(L, w->kh), kw = open_for(L, w->kw);
    Expr *ih = tap_h(w, oh, kh), *iw = tap_w(w, ow, kw);
    Expr *xidx = imad(imad(var(c), H, ih), W, iw);
    open_if(L, inside(ih, iw, H, W, w));
    open_if(L, ex(X_AND, ex(X_LT, get(done), f32(0.5f)), ex(X_EQ, elem(L, x, b, xidx), get(m))));
    store(L, L->buf[n->id], at(L->buf[n->id], b, xidx), elem(L, dy, b, yidx), true);
    set(L, done, f32(1));
    L->out = top;
}

/* avgpool: dy / count to each cell of the window inside the image (count:
 * those cells, or pad_count with count_pad) */
static void lower_avgpool_dx(Lower *L, const Node *n)
{
    Vec *top, *pixel;
    const Window *w = &n->win;
    const Node *dy = n->in[0];
    int64_t H = n->shape.d[1], W = n->shape.d[2];
    int c, oh, ow, b = pool_window(L, n, &top, &c, &oh, &ow, &pixel);
    int kh, kw;
    Expr *ih, *iw, *count = w->count_pad ? pad_count(w, oh, ow, H, W) : NULL;
    if (!count) {
        int cnt = set_new(L, f32(0));
        kh = open_for(L, w->kh), kw = open_for(L, w->kw);
        ih = tap_h(w, oh, kh), iw = tap_w(w, ow, kw);
        open_if(L, inside(ih, iw, H, W, w));
        set(L, cnt, ex(X_ADD, get(cnt), f32(1)));
        L->out = pixel;
        count = get(cnt);
    }
    int g = set_new(L, ex(X_DIV, elem(L, dy, b, imad(imad(var(c), dy->shape.d[1], var(oh)), dy->shape.d[2], var(ow))),
                          count));
    kh = open_for(L, w->kh), kw = open_for(L, w->kw);
    ih = tap_h(w, oh, kh), iw = tap_w(w, ow, kw);
    open_if(L, inside(ih, iw, H, W, w));
    store(L, L->buf[n->id], at(L->buf[n->id], b, imad(imad(var(c), H, ih), W, iw)), get(g), true);
    L->out = top;
}

/* global_avgpool: dx[c, i] = dy[c] / (H W) */
static void lower_gap_dx(Lower *L, const Node *n)
{
    Vec *top;
    int64_t C = n->shape.d[0], HW = n->shape.d[1] * n->shape.d[2];
    int b = begin(L, n, &top);
    int c = open_for(L, C), i = open_for(L, HW);
    store(L, L->buf[n->id], at(L->buf[n->id], b, imad(var(c), HW, var(i))),
          ex(X_DIV, elem(L, n->in[0], b, var(c)), f32((double)HW)), false);
    L->out = top;
}

static Expr *product(Expr *x, Expr *y) { return ex(X_MUL, x, y); }

/* Sum over a row of f(a[i], b[i]) for two nodes: returns the sum's variable. */
static int row_dot(Lower *L, const Node *a, const Node *c, int b, int64_t len)
{
    Vec *here = L->out;
    int acc = set_new(L, f32(0));
    int i = open_for(L, len);
    set(L, acc, ex(X_ADD, get(acc), product(elem(L, a, b, var(i)), elem(L, c, b, var(i)))));
    L->out = here;
    return acc;
}

/* softmax(axis) of a shape with more than that axis: dx = y (dy - sum_i dy_i y_i)
 * along each line x[o, :, j] */
static void lower_softmax_axis_dx(Lower *L, const Node *n)
{
    Vec *top;
    const Node *y = n->in[0], *dy = n->in[1];
    int64_t outer, len, inner;
    around(n->shape, n->axis, &outer, &len, &inner);
    int b = begin(L, n, &top);
    int o = open_for(L, outer), j = open_for(L, inner);
    Expr *base = iadd(imul(var(o), i64(len * inner)), var(j));
    Vec *here = L->out;
    int dot = set_new(L, f32(0));
    int i = open_for(L, len);
    Expr *idx = imad(var(i), inner, base);
    set(L, dot, ex(X_ADD, get(dot), product(elem(L, y, b, idx), elem(L, dy, b, idx))));
    L->out = here;
    i = open_for(L, len);
    idx = imad(var(i), inner, base);
    store(L, L->buf[n->id], at(L->buf[n->id], b, idx),
          ex(X_MUL, elem(L, y, b, idx), ex(X_SUB, elem(L, dy, b, idx), get(dot))), false);
    L->out = top;
}

/* softmax: dx = y (dy - sum_j dy_j y_j) */
static void lower_softmax_dx(Lower *L, const Node *n)
{
    Vec *top;
    const Node *y = n->in[0], *dy = n->in[1];
    int64_t K = n->shape.d[0];
    if (n->shape.rank > 1) {
        lower_softmax_axis_dx(L, n);
        return;
    }
    int b = begin(L, n, &top);
    int dot = row_dot(L, y, dy, b, K);
    int i = open_for(L, K);
    store(L, L->buf[n->id], at(L->buf[n->id], b, var(i)),
          ex(X_MUL, elem(L, y, b, var(i)), ex(X_SUB, elem(L, dy, b, var(i)), get(dot))), false);
    L->out = top;
}

static Expr *sign(Expr *x)
{
    return select3(ex(X_LT, f32(0), x), f32(1), select3(ex(X_LT, x, f32(0)), f32(-1), f32(0)));
}

/* l2norm: s = max(|x|, eps): dx = dy / s - x (dy . x) / s^3 (the second term only when |x| > eps)
 * l1norm: s = max(sum |x|, eps): dx = dy / s - sign(x) (dy . x) / s^2 (likewise) */
static void lower_norm_dx(Lower *L, const Node *n)
{
    Vec *top;
    const Node *x = n->in[0], *dy = n->in[1];
    int64_t K = n->shape.d[0];
    bool l2 = n->op == OP_L2NORM_DX;
    int b = begin(L, n, &top);
    int raw = l2 ? row_reduce(L, x, b, i64(0), K, X_ADD, 0, square, NULL)
                 : row_reduce(L, x, b, i64(0), K, X_ADD, 0, absval, NULL);
    int norm = set_new(L, l2 ? ex(X_SQRT, get(raw), NULL) : get(raw));
    int s = set_new(L, ex(X_MAX, get(norm), f32(1e-12)));
    int dot = row_dot(L, dy, x, b, K);
    Expr *den = l2 ? ex(X_MUL, get(s), ex(X_MUL, get(s), get(s))) : ex(X_MUL, get(s), get(s));
    int coef = set_new(L, select3(ex(X_LT, f32(1e-12), get(norm)), ex(X_DIV, get(dot), den), f32(0)));
    int i = open_for(L, K);
    Expr *xi = elem(L, x, b, var(i));
    store(L, L->buf[n->id], at(L->buf[n->id], b, var(i)),
          ex(X_SUB, ex(X_DIV, elem(L, dy, b, var(i)), get(s)), ex(X_MUL, l2 ? xi : sign(xi), get(coef))), false);
    L->out = top;
}

/* D_c = k + alpha/size sum_{c' in W(c)} x_c'^2, W(c) = [c - size/2, c + (size-1)/2] */
static int lrn_denominator(Lower *L, const Node *n, const Node *x, int b, Expr *c, int p)
{
    int64_t C = n->shape.d[0], HW = n->shape.d[1] * n->shape.d[2];
    int size = n->win.kh;
    Vec *here = L->out;
    int acc = set_new(L, f32(0));
    int t = open_for(L, size);
    Expr *cc = iadd(c, iadd(var(t), i64(-(size / 2))));
    open_if(L, ex(X_AND, ex(X_LE, i64(0), cc), ex(X_LT, cc, i64(C))));
    Expr *v = elem(L, x, b, imad(cc, HW, var(p)));
    set(L, acc, ex(X_ADD, get(acc), ex(X_MUL, v, v)));
    L->out = here;
    return set_new(L, ex(X_ADD, f32(n->k), ex(X_MUL, get(acc), f32(n->alpha / size))));
}

/* lrn: dx_j = dy_j D_j^-beta - 2 alpha beta / size x_j sum_{c : j in W(c)} dy_c x_c D_c^(-beta-1) */
static void lower_lrn_dx(Lower *L, const Node *n)
{
    Vec *top;
    const Node *x = n->in[0], *dy = n->in[1];
    int64_t C = n->shape.d[0], HW = n->shape.d[1] * n->shape.d[2];
    int size = n->win.kh;
    int b = begin(L, n, &top);
    int j = open_for(L, C), p = open_for(L, HW);
    Vec *pixel = L->out;
    int Dj = lrn_denominator(L, n, x, b, var(j), p);
    int acc = set_new(L, f32(0));
    int t = open_for(L, size);
    Expr *c = iadd(var(j), iadd(var(t), i64(-((size - 1) / 2))));
    open_if(L, ex(X_AND, ex(X_LE, i64(0), c), ex(X_LT, c, i64(C))));
    int Dc = lrn_denominator(L, n, x, b, c, p);
    Expr *idx = imad(c, HW, var(p));
    set(L, acc, ex(X_ADD, get(acc), ex(X_MUL, ex(X_MUL, elem(L, dy, b, idx), elem(L, x, b, idx)),
                                       ex(X_POW, get(Dc), f32(-n->beta - 1)))));
    L->out = pixel;
    Expr *jdx = imad(var(j), HW, var(p));
    Expr *first = ex(X_MUL, elem(L, dy, b, jdx), ex(X_POW, get(Dj), f32(-n->beta)));
    Expr *second = ex(X_MUL, f32(2 * n->alpha * n->beta / size), ex(X_MUL, elem(L, x, b, jdx), get(acc)));
    store(L, L->buf[n->id], at(L->buf[n->id], b, jdx), ex(X_SUB, first, second), false);
    L->out = top;
}

/* batchnorm with batch statistics, xh = (x - mean) / sigma, M values per channel:
 *   dx = gamma / (M sigma) (M dy - sum dy - xh sum dy xh),  dgamma = sum dy xh */
static void lower_bn_grad(Lower *L, const Node *n)
{
    Vec *top = L->out, *chan;
    bool dx = n->op == OP_BN_DX;
    const Node *x = n->in[0], *dy = n->in[dx ? 2 : 1];
    int64_t inner = shape_count(x->shape) / x->shape.d[0];
    int c, mean, varv;
    channel_stats(L, x, &c, &mean, &varv, &chan);
    ((LStmt *)top->at[top->n - 1])->comment = arena_printf("%%%d = %s : %s", n->id, op_name(n->op), shape_str(n->shape));
    int inv = set_new(L, ex(X_DIV, f32(1), ex(X_SQRT, ex(X_ADD, get(varv), f32(n->alpha)), NULL)));
    int sdy = set_new(L, f32(0)), sdyx = set_new(L, f32(0));
    int b = open_for(L, -1), i = open_for(L, inner);
    Expr *idx = imad(var(c), inner, var(i));
    Expr *xh = ex(X_MUL, ex(X_SUB, elem(L, x, b, idx), get(mean)), get(inv));
    set(L, sdy, ex(X_ADD, get(sdy), elem(L, dy, b, idx)));
    set(L, sdyx, ex(X_ADD, get(sdyx), ex(X_MUL, elem(L, dy, b, idx), xh)));
    L->out = chan;
    if (!dx) {
        store(L, L->buf[n->id], var(c), get(sdyx), false);
        L->out = top;
        return;
    }
    Expr *M = ex(X_ITOF, imul(var(0), i64(inner)), NULL);
    int k = set_new(L, ex(X_DIV, ex(X_MUL, elem(L, n->in[1], 0, var(c)), get(inv)), M));
    b = open_for(L, -1), i = open_for(L, inner);
    idx = imad(var(c), inner, var(i));
    xh = ex(X_MUL, ex(X_SUB, elem(L, x, b, idx), get(mean)), get(inv));
    Expr *v = ex(X_SUB, ex(X_SUB, ex(X_MUL, M, elem(L, dy, b, idx)), get(sdy)), ex(X_MUL, xh, get(sdyx)));
    store(L, L->buf[n->id], at(L->buf[n->id], b, idx), ex(X_MUL, get(k), v), false);
    L->out = top;
}

/* dropout: dx = dy keep / (1 - p), the forward's mask */
static void lower_dropout_dx(Lower *L, const Node *n)
{
    Vec *top;
    int b = begin(L, n, &top);
    int i = open_for(L, shape_count(n->shape));
    store(L, L->buf[n->id], at(L->buf[n->id], b, var(i)),
          ex(X_MUL, elem(L, n->in[0], b, var(i)), dropout_keep(n, n->aux, b, var(i))), false);
    L->out = top;
}

/* concat: the branch's slice of dy along the axis, from aux on */
static void lower_slice(Lower *L, const Node *n)
{
    Vec *top;
    const Node *dy = n->in[0];
    int64_t outer, len, inner;
    around(dy->shape, n->axis, &outer, &len, &inner);
    int64_t run = n->shape.d[n->axis] * inner;
    int b = begin(L, n, &top);
    if (outer == 1) {
        int i = open_for(L, run);
        store(L, L->buf[n->id], at(L->buf[n->id], b, var(i)), elem(L, dy, b, iadd(var(i), i64(n->aux * inner))),
              false);
    } else {
        int o = open_for(L, outer), i = open_for(L, run);
        store(L, L->buf[n->id], at(L->buf[n->id], b, imad(var(o), run, var(i))),
              elem(L, dy, b, iadd(imad(var(o), len * inner, i64(n->aux * inner)), var(i))), false);
    }
    L->out = top;
}

/* sum_to: out[j] = sum of g over the cells that broadcast to j (and over the batch) */
static void lower_sum_to(Lower *L, const Node *n)
{
    Vec *top = L->out;
    const Node *g = n->in[0];
    const Buf *out = L->buf[n->id];
    bool over_batch = !out->batched;
    if (over_batch)
        zero(L, n);
    int b = open_for(L, over_batch && L->buf[g->id]->batched ? -1 : out->batched ? -1 : 1);
    ((LStmt *)top->at[top->n - 1])->comment = arena_printf("%%%d = sum_to : %s", n->id, shape_str(n->shape));
    if (!over_batch)
        zero_example(L, n, b);
    int c[MAX_RANK];
    Expr *i = open_all(L, g->shape, c);
    store(L, out, at(out, b, broadcast_index(n, &g->shape, c)), elem(L, g, b, i), true);
    L->out = top;
}

/* matmul, C = A B with A [M, K], B [K, N] (M or N may be 1):
 *   dA[i, k] = sum_j dC[i, j] B[k, j],  dB[k, j] = sum_i A[i, k] dC[i, j]
 * summed over the batch when the operand is shared by the examples, and over
 * the matrices of C's stack that the operand's matrix broadcast to. */
static void lower_matmul_grad(Lower *L, const Node *n)
{
    Vec *top = L->out;
    bool da = n->op == OP_MATMUL_DA;
    const Node *A = da ? n : n->in[0], *B = da ? n->in[1] : n, *dC = n->in[da ? 0 : 1];
    const Shape *as = da ? &n->shape : &A->shape, *bs = da ? &B->shape : &n->shape;
    MatSizes z = mat_sizes(as, bs);
    int64_t K = z.K, M = z.M, N = z.N;
    const Buf *out = L->buf[n->id];
    bool sum = !out->batched || z.sc > 0;     /* several products add into one cell */
    if (!out->batched)
        zero(L, n);
    int b = open_for(L, -1), c[MAX_RANK];
    ((LStmt *)top->at[top->n - 1])->comment = arena_printf("%%%d = %s : %s", n->id, op_name(n->op), shape_str(n->shape));
    if (out->batched && sum)
        zero_example(L, n, b);
    Shape stack = {.rank = z.sc};
    Expr *ao = i64(0), *bo = i64(0), *co = i64(0);
    if (z.sc) {         /* C's stack: dC's shape, less its last two dimensions */
        for (int i = 0; i < z.sc; i++)
            stack.d[i] = dC->shape.d[i];
        co = imul(open_all(L, stack, c), i64(M * N));
        ao = stack_at(as, z.sa, z.sc, c, M * K), bo = stack_at(bs, z.sb, z.sc, c, K * N);
    }
    int r = open_for(L, da ? M : K), q = open_for(L, da ? K : N);
    Vec *cell = L->out;
    int acc = set_new(L, f32(0));
    int s = open_for(L, da ? N : M);
    Expr *x = da ? elem(L, dC, b, iadd(co, imad(var(r), N, var(s))))
                 : elem(L, n->in[0], b, iadd(ao, imad(var(s), K, var(r))));
    Expr *y = da ? elem(L, n->in[1], b, iadd(bo, imad(var(q), N, var(s))))
                 : elem(L, dC, b, iadd(co, imad(var(s), N, var(q))));
    set(L, acc, ex(X_ADD, get(acc), ex(X_MUL, x, y)));
    L->out = cell;
    store(L, out, at(out, b, iadd(da ? ao : bo, imad(var(r), da ? K : N, var(q)))), get(acc), sum);
    L->out = top;
}

/* expand: dx_i = dy * scale (the gradient of sum and mean) */
static void lower_expand(Lower *L, const Node *n)
{
    Vec *top;
    int b = begin(L, n, &top);
    int i = open_for(L, shape_count(n->shape));
    store(L, L->buf[n->id], at(L->buf[n->id], b, var(i)), ex(X_MUL, elem(L, n->in[0], b, i64(0)), f32(n->value)),
          false);
    L->out = top;
}

/* step: [x > 0];  ge: [a >= b] (with broadcasting);  inside: [lo < x < hi] */
static void lower_indicator(Lower *L, const Node *n)
{
    Vec *top;
    int b = begin(L, n, &top), c[MAX_RANK];
    Expr *i = open_all(L, n->shape, c);
    Expr *a = elem(L, n->in[0], b, broadcast_index(n->in[0], &n->shape, c));
    Expr *cond = n->op == OP_STEP ? ex(X_LT, f32(0), a)
               : n->op == OP_INSIDE ? ex(X_AND, ex(X_LT, f32(n->alpha), a), ex(X_LT, a, f32(n->beta)))
               : ex(X_LE, elem(L, n->in[1], b, broadcast_index(n->in[1], &n->shape, c)), a);
    store(L, L->buf[n->id], at(L->buf[n->id], b, i), select3(cond, f32(1), f32(0)), false);
    L->out = top;
}

/* ---- the kernels ---------------------------------------------------------- */

static void lower_node(Lower *L, const Node *n)
{
    switch (n->op) {
    case OP_INPUT: case OP_PARAM: case OP_CONST: case OP_FLATTEN:
        return;
    case OP_RELU:
    case OP_CLIP:          if (L->fused[n->id]) return; break;   /* in its layer's GEMM or depthwise nest */
    case OP_MUL:           if (L->fused[n->id]) { lower_maxpool_dx_2x2(L, n->in[0], n); return; } break;
    case OP_DROPOUT:       if (L->training) lower_dropout_train(L, n); return;
    case OP_DENSE:         lower_dense(L, n); return;
    case OP_CONV:          depthwise(&n->win, n->in[0]) ? lower_conv_depthwise(L, n) : lower_conv(L, n); return;
    case OP_MAXPOOL:
    case OP_AVGPOOL:       lower_pool(L, n); return;
    case OP_GAP:           lower_gap(L, n); return;
    case OP_SOFTMAX:
    case OP_L1NORM:
    case OP_L2NORM:        lower_vector(L, n); return;
    case OP_BATCHNORM:
        if (!L->fused[n->id])                              /* else in its conv's GEMM */
            L->training ? lower_batchnorm_train(L, n) : lower_batchnorm(L, n);
        return;
    case OP_LRN:           lower_lrn(L, n); return;
    case OP_CONCAT:        lower_concat(L, n); return;
    case OP_TRANSPOSE:     lower_transpose(L, n); return;
    case OP_MATMUL:        lower_matmul(L, n); return;
    case OP_SUM:
    case OP_MEAN:          lower_reduce(L, n); return;
    case OP_LOSS_GRAD:     lower_loss(L, n); return;
    case OP_DENSE_DX:      lower_dense_dx(L, n); return;
    case OP_DENSE_DW:      lower_dense_dw(L, n); return;
    case OP_CONV_DX:       depthwise(&n->win, n) ? lower_conv_dx_depthwise(L, n)
                           : use_winograd(n)     ? lower_conv_dx_winograd(L, n)
                                                 : lower_conv_dx(L, n);
                           return;
    case OP_CONV_DW:       depthwise(&n->win, n->in[1]) ? lower_conv_dw_depthwise(L, n) : lower_conv_dw(L, n); return;
    case OP_CHANNEL_SUM:   lower_channel_sum(L, n); return;
    case OP_MAXPOOL_DX:    if (!L->fused[n->id]) lower_maxpool_dx(L, n); return;
    case OP_AVGPOOL_DX:    lower_avgpool_dx(L, n); return;
    case OP_GAP_DX:        lower_gap_dx(L, n); return;
    case OP_SOFTMAX_DX:    lower_softmax_dx(L, n); return;
    case OP_L1NORM_DX:
    case OP_L2NORM_DX:     lower_norm_dx(L, n); return;
    case OP_LRN_DX:        lower_lrn_dx(L, n); return;
    case OP_BN_DX:
    case OP_BN_DGAMMA:     lower_bn_grad(L, n); return;
    case OP_DROPOUT_DX:    lower_dropout_dx(L, n); return;
    case OP_SLICE:         lower_slice(L, n); return;
    case OP_SUM_TO:        lower_sum_to(L, n); return;
    case OP_MATMUL_DA:
    case OP_MATMUL_DB:     lower_matmul_grad(L, n); return;
    case OP_EXPAND:        lower_expand(L, n); return;
    case OP_STEP:          if (!L->fused[n->id]) lower_indicator(L, n); return;
    case OP_GE:
    case OP_INSIDE:        lower_indicator(L, n); return;
    case OP_MAXPOOL_IDX:   lower_maxpool_idx(L, n); return;
    case OP_BN_EXAMPLE:    lower_bn_example(L, n); return;
    default:               break;
    }
    lower_elementwise(L, n);
}

/* Which of the nodes [0, upto) the roots depend on. */
static bool *live_nodes(const Graph *g, int upto, Node **roots, int nroots)
{
    bool *live = arena_alloc(sizeof(bool) * (size_t)(g->nodes.n + 1));
    for (int i = 0; i < nroots; i++)
        if (roots[i])
            live[roots[i]->id] = true;
    for (int i = upto - 1; i >= 0; i--) {
        const Node *n = g->nodes.at[i];
        for (int j = 0; live[i] && j < n->nin; j++)
            live[n->in[j]->id] = true;
    }
    return live;
}

/* Whether dy * step(z) is a 2x2 max pooling's gradient (used only there)
 * times a ReLU's mask (likewise): then one L_POOL statement computes it. */
static bool pool_dx_masked(const Node *m, const int *uses)
{
    if (m->op != OP_MUL || m->in[0]->op != OP_MAXPOOL_DX || m->in[1]->op != OP_STEP)
        return false;
    const Node *p = m->in[0], *st = m->in[1];
    return uses[p->id] == 1 && uses[st->id] == 1 && tiles_2x2(&p->win, p->shape.d[1], p->shape.d[2]) &&
           shape_count(st->shape) == shape_count(p->shape) && st->in[0]->batched;
}

/* An inference batchnorm whose input is a convolution's output and nothing
 * else's: its GEMM's epilogue or a depthwise convolution's own loops apply it. */
static bool folds_into_conv(const Lower *L, const Node *n, const int *uses)
{
    const Node *y = n->nin ? n->in[0] : NULL;
    return n->op == OP_BATCHNORM && !L->training && y->op == OP_CONV && y->batched && uses[y->id] == 1 &&
           (!depthwise(&y->win, y->in[0]) || dw_unrolled(&y->win));
}

/* A clip or ReLU whose input is a depthwise conv's output (or the inference
 * batchnorm folded into one) and nothing else's: the conv's nest applies it
 * as it stores y; returns that conv, or NULL. */
static const Node *activation_of_depthwise(const Lower *L, const Node *n, const int *uses)
{
    if ((n->op != OP_CLIP && n->op != OP_RELU) || !n->nin)
        return NULL;
    const Node *y = n->in[0];
    if (uses[y->id] != 1)
        return NULL;
    if (y->op == OP_BATCHNORM && L->fused[y->id])
        y = y->in[0];
    return y->op == OP_CONV && y->batched && depthwise(&y->win, y->in[0]) && dw_unrolled(&y->win) &&
           uses[y->id] == 1 ? y : NULL;
}

/* Fusion of operators into their producer or consumer, decided before the
 * buffers are placed; --no-fuse turns it off. The roots count as consumers.
 *  - Epilogue: a dense or conv layer whose one consumer is a ReLU applies it
 *    as its GEMM stores C. The ReLU then aliases the layer's buffer, which
 *    holds max(0, y) only; that is enough, as the backward pass reads the
 *    ReLU's output and never the layer's (relu's adjoint is dy [relu(y) > 0]).
 *  - Batchnorm folding, at inference: a conv whose one consumer is a
 *    batchnorm applies it in its GEMM's epilogue (fold_batchnorm), and the
 *    ReLU after that batchnorm too; the batchnorm aliases the conv's buffer.
 *  - Pooling gradient: maxpool_dx(...) * step(z) is one masked L_POOL; the
 *    two operands get no buffer and no loops of their own.
 *  - A sum whose one consumer is a ReLU (a residual block's end) applies
 *    it as it stores; the ReLU aliases the sum's buffer, as after a layer
 *    (the sum's gradient needs no value). */
static void fuse_nodes(Lower *L, const bool *live, int upto, Node **roots, int nroots, bool enabled)
{
    const Graph *g = L->g;
    L->fused = arena_alloc(sizeof(bool) * (size_t)(g->nodes.n + 1));
    L->folded = arena_alloc(sizeof(Node *) * (size_t)(g->nodes.n + 1));
    L->act = arena_alloc(sizeof(Node *) * (size_t)(g->nodes.n + 1));
    L->pre = arena_alloc(sizeof(Node *) * (size_t)(g->nodes.n + 1));
    L->fuse = enabled;
    if (!enabled)
        return;
    int *uses = arena_alloc(sizeof(int) * (size_t)(g->nodes.n + 1));
    for (int i = 0; i < upto; i++)
        for (int j = 0; live[i] && j < ((Node *)g->nodes.at[i])->nin; j++)
            uses[((Node *)g->nodes.at[i])->in[j]->id]++;
    for (int i = 0; i < nroots; i++)
        if (roots[i])
            uses[roots[i]->id]++;
    for (int i = 0; i < upto; i++) {
        const Node *n = g->nodes.at[i], *y = n->nin ? n->in[0] : NULL;
        if (!live[i])
            continue;
        if (folds_into_conv(L, n, uses))
            L->folded[y->id] = n, L->fused[n->id] = true;
        const Node *dw = activation_of_depthwise(L, n, uses);
        if (dw) {
            L->act[dw->id] = n, L->fused[n->id] = true;
            continue;
        }
        if (n->op == OP_RELU && y->op == OP_BATCHNORM && L->fused[y->id] && uses[y->id] == 1)
            L->fused[n->id] = L->fused[y->in[0]->id] = true;          /* conv -> batchnorm -> relu */
        if (n->op == OP_RELU && (y->op == OP_DENSE || y->op == OP_CONV) && y->batched && uses[y->id] == 1)
            L->fused[n->id] = L->fused[y->id] = true;
        if (n->op == OP_RELU && y->op == OP_ADD && y->batched && uses[y->id] == 1 && shape_eq(y->shape, n->shape))
            L->fused[n->id] = L->fused[y->id] = true;                 /* add -> relu */
        if (!L->training && n->op == OP_CONV && depthwise(&n->win, y) && dw_unrolled(&n->win) &&
            (y->op == OP_CLIP || y->op == OP_RELU) && !L->fused[y->id] && uses[y->id] == 1 && y->batched &&
            y->in[0]->batched)
            L->pre[n->id] = y, L->fused[y->id] = true;     /* clip -> depthwise conv, at inference */
        if (pool_dx_masked(n, uses))
            L->fused[n->id] = L->fused[n->in[0]->id] = L->fused[n->in[1]->id] = true;
    }
}

static Kernel *new_kernel(const char *name)
{
    Kernel *k = arena_alloc(sizeof *k);
    k->name = name;
    k->nvars = 1;                      /* variable 0 is n */
    k->is_float = arena_alloc(sizeof(bool));
    return k;
}

static Lower start(const Graph *g, Lowered *l, const char *name, bool training)
{
    Lower L = {.g = g, .l = l, .training = training};
    L.buf = arena_alloc(sizeof(Buf *) * (size_t)(g->nodes.n + 1));
    L.k = new_kernel(name);
    L.out = &L.k->body;
    return L;
}

static void finish(Lower *L)
{
    L->k->ws_fixed = L->fixed;
}

/* Every output of the network (g->output alone when it lists none). */
static int forward_roots(const Graph *g, Node ***roots)
{
    if (g->noutputs) {
        *roots = g->outputs;
        return g->noutputs;
    }
    *roots = arena_alloc(sizeof(Node *));
    (*roots)[0] = g->output;
    return 1;
}

/* The outputs go to `out` an example after another, each example's outputs
 * one after another (graph_output_stride floats an example): output k is a
 * buffer at its offset in the row whose stride is the row's. */
static void lower_forward(const Graph *g, Lowered *l, int nforward, bool fuse)
{
    Lower L = start(g, l, arena_printf("%s.kernel.forward", g->name), false);
    Node **roots;
    int nroots = forward_roots(g, &roots);
    bool *live = live_nodes(g, nforward, roots, nroots);
    fuse_nodes(&L, live, nforward, roots, nroots, fuse);
    place_values(&L, nforward, nforward);
    for (int i = 0; i < nforward; i++)
        if (live[i])
            lower_node(&L, g->nodes.at[i]);
    int64_t stride = graph_output_stride(g), off = 0;
    for (int k = 0; k < nroots; k++) {
        int64_t size = shape_count(roots[k]->shape);
        const char *name = nroots == 1 ? "out" : arena_printf("out.%s", g->output_names[k]);
        lower_output(&L, roots[k], new_buf(name, BASE_OUT, off, stride, true), size);
        off += size;
    }
    finish(&L);
    l->forward = L.k;
    l->ws_floats = L.per_example;
}

/* Each parameter's gradient goes to its place in the gradient block: the
 * final node of its sum is placed there, or copied when already placed. */
static void place_grads(Lower *L, const Backward *bw)
{
    const Graph *g = L->g;
    for (int i = 0; i < g->nparams; i++) {
        Node *n = bw->param_grad[i];
        if (!n || L->buf[n->id]->base == BASE_GRAD || L->buf[n->id]->base == BASE_PARAMS)
            continue;
        L->buf[n->id] = new_buf(g->params[i].name, BASE_GRAD, L->l->param_offset[i], shape_count(n->shape), false);
    }
}

/* grad[i] = its node, copied if placed elsewhere; zero where the loss does not reach */
static void write_grads(Lower *L, const Backward *bw)
{
    const Graph *g = L->g;
    for (int i = 0; i < g->nparams; i++) {
        Node *n = bw->param_grad[i];
        const Buf *dst = new_buf(g->params[i].name, BASE_GRAD, L->l->param_offset[i], shape_count(g->params[i].shape), false);
        if (n && L->buf[n->id]->base == BASE_GRAD && L->buf[n->id]->offset == dst->offset)
            continue;
        Vec *top = L->out;
        int j = open_for(L, dst->size);
        ((LStmt *)top->at[top->n - 1])->comment = arena_printf("d %s", g->params[i].name);
        store(L, dst, var(j), n ? elem(L, n, 0, var(j)) : f32(0), false);
        L->out = top;
    }
}

static void lower_train(const Graph *g, Lowered *l, const Backward *bw, int nforward, bool fuse)
{
    Lower L = start(g, l, arena_printf("%s.kernel.train", g->name), true);
    L.k->ret = new_var(&L, true);
    set(&L, L.k->ret, f32(0));
    /* roots: every parameter's gradient, and every loss (it is returned) */
    Node **roots = arena_alloc(sizeof(Node *) * (size_t)(g->nparams + bw->losses.n + 1));
    for (int i = 0; i < g->nparams; i++)
        roots[i] = bw->param_grad[i];
    for (int i = 0; i < bw->losses.n; i++)
        roots[g->nparams + i] = bw->losses.at[i];
    bool *live = live_nodes(g, g->nodes.n, roots, g->nparams + bw->losses.n);
    fuse_nodes(&L, live, g->nodes.n, roots, g->nparams + bw->losses.n, fuse);
    place_values(&L, g->nodes.n, nforward);
    place_grads(&L, bw);
    for (int i = 0; i < g->nodes.n; i++) {
        const Node *n = g->nodes.at[i];
        if (live[i] || (n->op == OP_BATCHNORM && i < nforward))
            lower_node(&L, n);
    }
    write_grads(&L, bw);
    finish(&L);
    l->train = L.k;
    l->train_ws_floats = L.per_example;
    l->train_ws_fixed = L.fixed;
    l->train_serial = bw->serial;
}

Lowered *loops_lower(const Graph *g, const Backward *bw, bool fuse)
{
    Lowered *l = arena_alloc(sizeof *l);
    l->g = g;
    place_params(l, g);
    int nforward = bw ? bw->first : g->nodes.n;
    lower_forward(g, l, nforward, fuse);
    if (bw)
        lower_train(g, l, bw, nforward, fuse);
    return l;
}

/* ---- the printer behind --emit=loops -------------------------------------- */

static void print_expr(FILE *out, const Expr *e)
{
    static const char *const ops[] = {
        [X_IADD] = "+", [X_IMUL] = "*", [X_IDIV] = "/", [X_ADD] = "+",
        [X_SUB] = "-", [X_MUL] = "*", [X_DIV] = "/", [X_LT] = "<", [X_LE] = "<=", [X_EQ] = "==",
        [X_AND] = "&&",
    };
    static const char *const fns[] = {
        [X_IMIN] = "min", [X_IMAX] = "max",
        [X_MAX] = "max", [X_MIN] = "min", [X_POW] = "pow", [X_NEG] = "-", [X_EXP] = "exp",
        [X_LOG] = "log", [X_SQRT] = "sqrt", [X_ABS] = "abs", [X_TANH] = "tanh", [X_ITOF] = "float",
        [X_FTOI] = "int",
        [X_FLOOR] = "floor", [X_TRUNC] = "trunc",
    };
    switch (e->kind) {
    case X_INT:  fprintf(out, "%lld", (long long)e->ival); return;
    case X_FLT:  fprintf(out, "%g", e->fval); return;
    case X_VAR:  fprintf(out, e->var ? "i%d" : "n", e->var); return;
    case X_GET:  fprintf(out, "s%d", e->var); return;
    case X_ARG:  fputs(e->ival ? "total" : "first", out); return;
    case X_LABEL:
        fputs("label(", out);
        print_expr(out, e->a);
        fputc(')', out);
        return;
    case X_RAND:
        fprintf(out, "rand(seed, %lld, ", (long long)e->ival);
        print_expr(out, e->a);
        fputc(')', out);
        return;
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
        case L_GEMM: {
            const Gemm *g = s->gemm;
            fputs("gemm ", out);
            print_expr(out, g->M);
            fprintf(out, "x%lldx", (long long)g->N);
            print_expr(out, g->K);
            fprintf(out, ": %s[", g->c->name);
            print_expr(out, g->c_at);
            fprintf(out, " + i*%lld + j] %s %s[", (long long)g->ldc, g->accumulate ? "+=" : "=", g->a->name);
            print_expr(out, g->a_at);
            fprintf(out, " + i*%lld + k*%lld] * %s[", (long long)g->sai, (long long)g->sak, g->b->name);
            print_expr(out, g->b_at);
            if (g->bt)
                fprintf(out, " + j*%lld + k]", (long long)g->ldb);
            else
                fprintf(out, " + k*%lld + j]", (long long)g->ldb);
            if (g->bn_rows) {               /* then the pair of row i: (shift, scale) */
                fprintf(out, ", then * %s[", g->bias->name);
                print_expr(out, g->bias_at);
                fprintf(out, " + 2i + 1] + %s[", g->bias->name);
                print_expr(out, g->bias_at);
                fputs(" + 2i]", out);
            } else if (g->bias) {
                fprintf(out, " + %s[", g->bias->name);
                print_expr(out, g->bias_at);
                fputs(g->bias_rows ? " + i]" : " + j]", out);
            }
            fputs(g->relu ? ", then relu" : "", out);
            if (g->tile_r || g->cols_outer)
                fprintf(out, " [tile %dx%d%s]", g->tile_r, g->tile_c, g->cols_outer ? ", columns outer" : "");
            fputs(g->shared_b ? " [shared by the slices]" : "", out);
            fputc('\n', out);
            break;
        }
        case L_POOL: {
            const Pool *p = s->pool;
            if (p->backward) {
                fprintf(out, "maxpool2x2_dx %lldx%lld: %s[", (long long)p->rows, (long long)p->W, p->dx->name);
                print_expr(out, p->dx_at);
                fprintf(out, "] from dy %s[", p->dy->name);
                print_expr(out, p->dy_at);
                fprintf(out, "], x %s[", p->x->name);
                print_expr(out, p->x_at);
                fprintf(out, "], y %s[", p->y->name);
                print_expr(out, p->y_at);
                if (p->mask) {
                    fprintf(out, "], where %s[", p->mask->name);
                    print_expr(out, p->mask_at);
                    fputs("] > 0", out);
                } else {
                    fputc(']', out);
                }
            } else {
                fprintf(out, "maxpool2x2 %lldx%lld: %s[", (long long)p->rows, (long long)p->W, p->y->name);
                print_expr(out, p->y_at);
                fprintf(out, "] from %s[", p->x->name);
                print_expr(out, p->x_at);
                fputc(']', out);
            }
            fputc('\n', out);
            break;
        }
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
    if (l->train) {
        fprintf(out, "\n# training workspace: %lld floats shared, %lld per example\n",
                (long long)l->train_ws_fixed, (long long)l->train_ws_floats);
        fprintf(out, "kernel %s(n, x, y, params, grads, ws, first, total, seed) -> s%d:\n", l->train->name,
                l->train->ret);
        print_stmts(out, &l->train->body, 1);
    }
}
