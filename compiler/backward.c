/* backward.c: reverse-mode differentiation of the operator graph.
 *
 * Each forward operator has one adjoint rule, written below with its
 * derivative. A rule receives dy, the gradient of the loss with respect to the
 * operator's output, and adds a contribution to the gradient of each input
 * that needs one; contributions to a value used twice accumulate. Parameters
 * are shared by every example, so their gradients are summed over the batch.
 * The rules append ordinary graph nodes (and the gradient ops of cnnc.h), so
 * the backward pass is lowered, printed and checked like the forward one.
 */
#include "cnnc.h"

#include <string.h>

typedef struct {
    Graph *g;
    Node **grad;          /* per node id: the gradient so far, or NULL */
    bool *needs;          /* per node id: some learned parameter flows into it */
} Diff;

/* ---- building blocks ------------------------------------------------------- */

static Node *op(Diff *d, OpKind kind, const Node *like, Shape s, int nin, Node **in)
{
    Node *n = graph_node(d->g, kind, like->loc, s, nin, in);
    if (!n)
        internal_error("backward: the graph grew past its limit");
    return n;
}

static Node *op1(Diff *d, OpKind kind, const Node *like, Shape s, Node *a)
{
    return op(d, kind, like, s, 1, &a);
}

static Node *op2(Diff *d, OpKind kind, const Node *like, Shape s, Node *a, Node *b)
{
    Node *in[2] = {a, b};
    return op(d, kind, like, s, 2, in);
}

static Node *constant(Diff *d, const Node *like, float v)
{
    Node *n = op(d, OP_CONST, like, (Shape){0}, 0, NULL);
    n->value = v;
    return n;
}

/* Elementwise maths with broadcasting, for the rules of elementwise ops. */
static Node *bin(Diff *d, OpKind kind, Node *a, Node *b)
{
    Shape s = a->shape.rank >= b->shape.rank ? a->shape : b->shape;
    return op2(d, kind, a, s, a, b);
}

/* g reduced to x's shape: summed over broadcast dimensions, and over the
 * batch when x is the same for every example. */
static Node *sum_to(Diff *d, Node *g, const Node *x)
{
    if (shape_eq(g->shape, x->shape) && g->batched == x->batched)
        return g;
    Node *n = op1(d, OP_SUM_TO, g, x->shape, g);
    n->batched = x->batched;
    return n;
}

/* Adds a contribution to x's gradient. */
static void add(Diff *d, const Node *x, Node *g)
{
    if (!d->needs[x->id])
        return;
    g = sum_to(d, g, x);
    Node *old = d->grad[x->id];
    if (old) {
        g = op2(d, OP_ADD, g, x->shape, old, g);
        g->batched = x->batched;
    }
    d->grad[x->id] = g;
}

static Node *unbatched(Node *n)
{
    n->batched = false;
    return n;
}

/* ---- adjoint rules --------------------------------------------------------- */

/* y = f(x) elementwise: dx = dy * f'(x) */
static void elementwise_unary(Diff *d, Node *y, Node *dy)
{
    Node *x = y->in[0], *one = NULL, *g;
    switch (y->op) {
    case OP_RELU:     /* d/dx max(0, x) = [x > 0] = [y > 0]: y, so x may go (epilogue fusion) */
        g = bin(d, OP_MUL, dy, op1(d, OP_STEP, y, y->shape, y));
        break;
    case OP_LEAKY:    /* d/dx (x > 0 ? x : a x) = [x > 0] (1 - a) + a */
        g = op1(d, OP_STEP, x, x->shape, x);
        g = bin(d, OP_ADD, bin(d, OP_MUL, g, constant(d, y, 1 - y->alpha)), constant(d, y, y->alpha));
        g = bin(d, OP_MUL, dy, g);
        break;
    case OP_TANH:     /* d/dx tanh x = 1 - y^2 */
        one = constant(d, y, 1);
        g = bin(d, OP_MUL, dy, bin(d, OP_SUB, one, bin(d, OP_MUL, y, y)));
        break;
    case OP_SIGMOID:  /* d/dx s(x) = y (1 - y) */
        one = constant(d, y, 1);
        g = bin(d, OP_MUL, dy, bin(d, OP_MUL, y, bin(d, OP_SUB, one, y)));
        break;
    case OP_EXP:      /* d/dx e^x = y */
        g = bin(d, OP_MUL, dy, y);
        break;
    case OP_LOG:      /* d/dx log x = 1 / x */
        g = bin(d, OP_DIV, dy, x);
        break;
    case OP_SQRT:     /* d/dx sqrt x = 1 / (2 y) */
        g = bin(d, OP_DIV, bin(d, OP_MUL, dy, constant(d, y, 0.5f)), y);
        break;
    case OP_ABS:      /* d/dx |x| = sign x = [x > 0] - [-x > 0] */
        g = bin(d, OP_SUB, op1(d, OP_STEP, x, x->shape, x),
                op1(d, OP_STEP, x, x->shape, op1(d, OP_NEG, x, x->shape, x)));
        g = bin(d, OP_MUL, dy, g);
        break;
    case OP_CLIP:     /* d/dx min(max(x, lo), hi) = [lo < x < hi] = [lo < y < hi]: y, so x may go */
        g = op1(d, OP_INSIDE, y, y->shape, y);
        g->alpha = y->alpha, g->beta = y->beta;
        g = bin(d, OP_MUL, dy, g);
        break;
    case OP_NEG:      /* d/dx -x = -1 */
        g = op1(d, OP_NEG, dy, dy->shape, dy);
        break;
    default:
        internal_error("backward: no unary rule for %s", op_name(y->op));
    }
    add(d, x, g);
}

/* y = a op b with broadcasting; each contribution is summed back to its operand's shape */
static void elementwise_binary(Diff *d, Node *y, Node *dy)
{
    Node *a = y->in[0], *b = y->in[1], *ge;
    switch (y->op) {
    case OP_ADD:      /* d(a + b) = da + db */
        add(d, a, dy), add(d, b, dy);
        break;
    case OP_SUB:      /* d(a - b) = da - db */
        add(d, a, dy), add(d, b, op1(d, OP_NEG, dy, dy->shape, dy));
        break;
    case OP_MUL:      /* d(a b) = b da + a db */
        if (d->needs[a->id]) add(d, a, bin(d, OP_MUL, dy, b));
        if (d->needs[b->id]) add(d, b, bin(d, OP_MUL, dy, a));
        break;
    case OP_DIV:      /* d(a / b) = da / b - (a / b^2) db = da / b - y / b db */
        if (d->needs[a->id]) add(d, a, bin(d, OP_DIV, dy, b));
        if (d->needs[b->id]) add(d, b, op1(d, OP_NEG, y, y->shape, bin(d, OP_DIV, bin(d, OP_MUL, dy, y), b)));
        break;
    case OP_MAX:      /* d max(a, b) = [a >= b] da + [a < b] db */
    case OP_MIN:      /* d min(a, b) = [b >= a] da + [b < a] db */
        ge = y->op == OP_MAX ? bin(d, OP_GE, a, b) : bin(d, OP_GE, b, a);
        if (d->needs[a->id]) add(d, a, bin(d, OP_MUL, dy, ge));
        if (d->needs[b->id]) add(d, b, bin(d, OP_MUL, dy, bin(d, OP_SUB, constant(d, y, 1), ge)));
        break;
    default:
        internal_error("backward: no binary rule for %s", op_name(y->op));
    }
}

/* y = W x + b:  dx = W^T dy,  dW = sum_batch dy x^T,  db = sum_batch dy */
static void dense(Diff *d, Node *y, Node *dy)
{
    Node *x = y->in[0], *W = y->in[1];
    if (d->needs[x->id]) add(d, x, op2(d, OP_DENSE_DX, y, x->shape, dy, W));
    if (d->needs[W->id]) add(d, W, unbatched(op2(d, OP_DENSE_DW, y, W->shape, dy, x)));
    if (y->nin > 2) add(d, y->in[2], dy);
}

/* y = W * x + b (cross-correlation):  dx = W^T * dy (the transposed
 * convolution),  dW = sum_batch dy * x,  db[c] = sum_{batch, h, w} dy[c] */
static void conv(Diff *d, Node *y, Node *dy)
{
    Node *x = y->in[0], *W = y->in[1];
    if (d->needs[x->id]) {
        Node *g = op2(d, OP_CONV_DX, y, x->shape, dy, W);
        g->win = y->win;
        add(d, x, g);
    }
    if (d->needs[W->id]) {
        Node *g = unbatched(op2(d, OP_CONV_DW, y, W->shape, dy, x));
        g->win = y->win;
        add(d, W, g);
    }
    if (y->nin > 2 && d->needs[y->in[2]->id])
        add(d, y->in[2], unbatched(op1(d, OP_CHANNEL_SUM, y, y->in[2]->shape, dy)));
}

/* maxpool: dx routes dy to the first cell of each window that equals the max;
 * avgpool: dx spreads dy over the window's cells inside the image */
static void pool(Diff *d, Node *y, Node *dy)
{
    Node *x = y->in[0];
    Node *in[3] = {dy, x, y};
    Node *g = y->op == OP_MAXPOOL ? op(d, OP_MAXPOOL_DX, y, x->shape, 3, in) : op1(d, OP_AVGPOOL_DX, y, x->shape, dy);
    g->win = y->win;
    add(d, x, g);
}

/* y[c] = mean_{h,w} x[c, h, w]:  dx[c, h, w] = dy[c] / (H W) */
static void gap(Diff *d, Node *y, Node *dy)
{
    add(d, y->in[0], op1(d, OP_GAP_DX, y, y->in[0]->shape, dy));
}

/* softmax:  dx = y (dy - sum_j dy_j y_j)
 * l2norm:   y = x / s, s = max(|x|, eps):  dx = dy / s - x (dy . x) / s^3
 * l1norm:   y = x / s, s = max(sum |x|, eps):  dx = dy / s - sign(x) (dy . x) / s^2 */
static void vector(Diff *d, Node *y, Node *dy)
{
    Node *x = y->in[0];
    if (y->op == OP_SOFTMAX) {
        Node *g = op2(d, OP_SOFTMAX_DX, y, x->shape, y, dy);
        g->axis = y->axis;               /* along it, as y */
        add(d, x, g);
    } else
        add(d, x, op2(d, y->op == OP_L1NORM ? OP_L1NORM_DX : OP_L2NORM_DX, y, x->shape, x, dy));
}

/* lrn: y_c = x_c D_c^-beta, D_c = k + alpha/n sum_{c' in W(c)} x_c'^2:
 *   dx_j = dy_j D_j^-beta - 2 alpha beta / n x_j sum_{c : j in W(c)} dy_c x_c D_c^(-beta-1) */
static void lrn(Diff *d, Node *y, Node *dy)
{
    Node *g = op2(d, OP_LRN_DX, y, y->shape, y->in[0], dy);
    g->win = y->win, g->alpha = y->alpha, g->beta = y->beta, g->k = y->k;
    add(d, y->in[0], g);
}

/* batchnorm with batch statistics, M values per channel, xh = (x - mean) / sigma:
 *   dgamma = sum dy xh,  dbeta = sum dy,
 *   dx = gamma / (M sigma) (M dy - sum dy - xh sum dy xh) */
static void batchnorm(Diff *d, Node *y, Node *dy)
{
    Node *x = y->in[0], *gamma = y->in[1];
    if (d->needs[x->id]) {
        Node *in[3] = {x, gamma, dy};
        Node *g = op(d, OP_BN_DX, y, x->shape, 3, in);
        g->alpha = y->alpha;
        add(d, x, g);
    }
    if (d->needs[gamma->id]) {
        Node *g = unbatched(op2(d, OP_BN_DGAMMA, y, gamma->shape, x, dy));
        g->alpha = y->alpha;
        add(d, gamma, g);
    }
    if (d->needs[y->in[2]->id])
        add(d, y->in[2], unbatched(op1(d, OP_CHANNEL_SUM, y, y->in[2]->shape, dy)));
}

/* dropout in training: y = x m / (1 - p), m the example's mask:  dx = dy m / (1 - p) */
static void dropout(Diff *d, Node *y, Node *dy)
{
    Node *g = op1(d, OP_DROPOUT_DX, y, y->shape, dy);
    g->alpha = y->alpha, g->aux = y->id;
    add(d, y->in[0], g);
}

/* concat: each branch's gradient is its slice of dy along the axis */
static void concat(Diff *d, Node *y, Node *dy)
{
    int64_t from = 0;
    for (int j = 0; j < y->nin; j++) {
        Node *x = y->in[j];
        if (d->needs[x->id]) {
            Node *g = op1(d, OP_SLICE, y, x->shape, dy);
            g->aux = from, g->axis = y->axis;
            add(d, x, g);
        }
        from += x->shape.d[y->axis];
    }
}

/* C = A B:  dA = dC B^T,  dB = A^T dC (summed over the batch for a shared operand) */
static void matmul(Diff *d, Node *y, Node *dy)
{
    Node *A = y->in[0], *B = y->in[1];
    if (d->needs[A->id]) {
        Node *g = op2(d, OP_MATMUL_DA, y, A->shape, dy, B);
        g->batched = A->batched;
        add(d, A, g);
    }
    if (d->needs[B->id]) {
        Node *g = op2(d, OP_MATMUL_DB, y, B->shape, A, dy);
        g->batched = B->batched;
        add(d, B, g);
    }
}

/* sum: dx_i = dy;  mean: dx_i = dy / size */
static void reduce(Diff *d, Node *y, Node *dy)
{
    Node *x = y->in[0];
    Node *g = op1(d, OP_EXPAND, y, x->shape, dy);
    g->value = y->op == OP_SUM ? 1.0f : 1.0f / (float)shape_count(x->shape);
    add(d, x, g);
}

/* flatten is a reshape: dx is dy with x's shape */
static void reshape(Diff *d, Node *y, Node *dy)
{
    Node *x = y->in[0];
    Node *g = op1(d, OP_FLATTEN, y, x->shape, dy);
    add(d, x, g);
}

static void rule(Diff *d, Node *y, Node *dy)
{
    switch (y->op) {
    case OP_INPUT: case OP_PARAM: case OP_CONST:
    case OP_FILL: case OP_MAXPOOL_IDX: case OP_WRAP:     /* piecewise constant: no gradient */
    case OP_BN_EXAMPLE:                                  /* an imported model's forward only */
        return;
    case OP_DENSE:     dense(d, y, dy); return;
    case OP_CONV:      conv(d, y, dy); return;
    case OP_MAXPOOL:
    case OP_AVGPOOL:   pool(d, y, dy); return;
    case OP_GAP:       gap(d, y, dy); return;
    case OP_SOFTMAX:
    case OP_L1NORM:
    case OP_L2NORM:    vector(d, y, dy); return;
    case OP_LRN:       lrn(d, y, dy); return;
    case OP_BATCHNORM: batchnorm(d, y, dy); return;
    case OP_DROPOUT:   dropout(d, y, dy); return;
    case OP_CONCAT:    concat(d, y, dy); return;
    case OP_MATMUL:    matmul(d, y, dy); return;
    case OP_SUM:
    case OP_MEAN:      reduce(d, y, dy); return;
    case OP_FLATTEN:   reshape(d, y, dy); return;
    case OP_TRANSPOSE: add(d, y->in[0], op1(d, OP_TRANSPOSE, y, y->in[0]->shape, dy)); return;   /* dx = dy' */
    case OP_ADD: case OP_SUB: case OP_MUL: case OP_DIV: case OP_MAX: case OP_MIN:
        elementwise_binary(d, y, dy);
        return;
    default:
        elementwise_unary(d, y, dy);
        return;
    }
}

/* ---- the pass -------------------------------------------------------------- */

/* A node needs a gradient when a learned parameter flows into it. */
static bool *needs_grad(const Graph *g)
{
    bool *needs = arena_alloc(sizeof(bool) * (size_t)(g->nodes.n + 1));
    for (int i = 0; i < g->nodes.n; i++) {
        const Node *n = g->nodes.at[i];
        if (n->op == OP_PARAM)
            needs[i] = !g->params[n->param].is_buffer;
        for (int j = 0; j < n->nin; j++)
            needs[i] |= needs[n->in[j]->id];
    }
    return needs;
}

/* Seeds the gradient of each scored value with its loss term's dL/df. */
static void seed_losses(Diff *d, Backward *bw)
{
    Graph *g = d->g;
    for (int i = 0; i < g->nloss; i++) {
        const LossTerm *t = &g->loss[i];
        if (!t->f)
            continue;                       /* l2/l1: in the runtime */
        Node *f = t->f, *lg = op1(d, OP_LOSS_GRAD, f, f->shape, f);
        lg->aux = t->kind, lg->value = t->coef, lg->alpha = t->margin;
        vec_push(&bw->losses, lg);
        add(d, f, lg);
        if (!d->needs[f->id])
            d->grad[f->id] = NULL;
    }
}

Backward *backward_derive(Graph *g)
{
    Backward *bw = arena_alloc(sizeof *bw);
    int nforward = g->nodes.n;
    bw->first = nforward;
    /* grad[] and needs[] are indexed by forward nodes only */
    Diff d = {g, arena_alloc(sizeof(Node *) * (size_t)(nforward + 1)), needs_grad(g)};
    seed_losses(&d, bw);
    for (int i = nforward - 1; i >= 0; i--) {
        Node *y = g->nodes.at[i];
        if (y->op == OP_BATCHNORM)
            bw->serial = true;
        if (d.grad[i] && d.needs[i])
            rule(&d, y, d.grad[i]);
    }
    bw->param_grad = arena_alloc(sizeof(Node *) * (size_t)(g->nparams + 1));
    for (int i = 0; i < nforward; i++) {
        Node *n = g->nodes.at[i];
        if (n->op == OP_PARAM)
            bw->param_grad[n->param] = d.grad[i];
    }
    graph_check(g);
    return bw;
}

void backward_print(FILE *out, const Graph *g, const Backward *bw)
{
    graph_print(out, g);
    fputs("gradients\n", out);
    for (int i = 0; i < g->nparams; i++)
        if (!g->params[i].is_buffer)
            fprintf(out, "d %s = %s\n", g->params[i].name,
                    bw->param_grad[i] ? arena_printf("%%%d", bw->param_grad[i]->id) : "0");
}
