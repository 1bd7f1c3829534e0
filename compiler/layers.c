/* layers.c: the table of layers. Each rule names its arguments (with their
 * types and defaults) and a builder that checks the input's shape, creates the
 * layer's parameters and adds its operator to the graph.
 */
#include "cnnc.h"

#include <string.h>

typedef enum {
    T_COUNT,     /* a whole number >= 1 */
    T_SIZE,      /* K or HxW */
    T_PAD,       /* P, HxW or `same` */
    T_FLOAT,     /* any number */
    T_PROB,      /* a number in [0, 1) */
    T_BOOL,      /* true | false */
    T_STR,       /* "text" */
    T_INIT,      /* an initializer */
    T_BRANCH,    /* a pipeline fragment */
    T_AXIS,      /* a dimension of the example: 0, 1, ..., or -1 for the last, -2, ... */
} ArgType;

typedef struct { const char *name; ArgType type; bool positional, required; } ArgSpec;

#define MAX_ARGS 10

/* The arguments of one call, matched to the rule's specs by position. */
typedef struct {
    const LayerRule *rule;
    Ast *use;                 /* the call or bare name, for its location */
    Val v[MAX_ARGS];          /* v[i].kind == V_NONE when not given */
    Ast *branches[256];       /* concat's branches */
    int nbranches;
} Args;

typedef Node *ApplyFn(Builder *b, Args *a, Node *x);

struct LayerRule {
    const char *name;         /* canonical name, also the parameter prefix */
    const char *alias[3];
    ArgSpec spec[MAX_ARGS];
    ApplyFn *apply;
    bool variadic;            /* concat: every positional argument is a branch */
};

/* ---- argument access ---------------------------------------------------- */

static bool given(const Args *a, int i) { return a->v[i].kind != V_NONE; }
static double num(const Args *a, int i, double dflt) { return given(a, i) ? a->v[i].num : dflt; }

static void size_arg(const Args *a, int i, int dflt_h, int dflt_w, int *h, int *w)
{
    const Val *v = &a->v[i];
    *h = v->kind == V_SIZE ? v->h : v->kind == V_INT ? (int)v->num : dflt_h;
    *w = v->kind == V_SIZE ? v->w : v->kind == V_INT ? (int)v->num : dflt_w;
}

static const char *const type_names[] = {
    [T_COUNT] = "a whole number of at least 1", [T_SIZE] = "a size of at least 1 (K or HxW)",
    [T_PAD] = "a padding (P, HxW or same)", [T_FLOAT] = "a number",
    [T_PROB] = "a number from 0 up to (not including) 1", [T_BOOL] = "true or false",
    [T_STR] = "a string", [T_INIT] = "an initializer", [T_BRANCH] = "a layer or pipeline",
    [T_AXIS] = "an axis (a whole number: 0 the example's first dimension, -1 its last)",
};

static bool is_num(const Val *v) { return v->kind == V_INT || v->kind == V_FLOAT; }

static bool type_ok(ArgType t, const Val *v)
{
    switch (t) {
    case T_COUNT: return v->kind == V_INT && v->num >= 1 && v->num <= (1 << 30);
    case T_SIZE:  return (v->kind == V_INT && v->num >= 1 && v->num <= (1 << 20)) ||
                         (v->kind == V_SIZE && v->h >= 1 && v->w >= 1 && (!v->deep || v->d >= 1));
    case T_PAD:   return (v->kind == V_INT && v->num >= 0 && v->num <= (1 << 20)) || v->kind == V_SIZE ||
                         (v->kind == V_NAME && strcmp(v->str, "same") == 0);
    case T_FLOAT: return is_num(v);
    case T_PROB:  return is_num(v) && v->num >= 0 && v->num < 1;
    case T_BOOL:  return v->kind == V_NAME && (strcmp(v->str, "true") == 0 || strcmp(v->str, "false") == 0);
    case T_STR:   return v->kind == V_STR && v->str[0] && strlen(v->str) < 64 && !strpbrk(v->str, "\"\\ \t\n");
    case T_INIT:  return v->kind == V_NAME || v->kind == V_AST;
    case T_BRANCH: return true;
    case T_AXIS:  return v->kind == V_INT && v->num >= -MAX_RANK && v->num < MAX_RANK;
    }
    return false;
}

static int spec_index(const LayerRule *r, const char *key)
{
    for (int i = 0; i < MAX_ARGS && r->spec[i].name; i++)
        if (strcmp(r->spec[i].name, key) == 0)
            return i;
    return -1;
}

static void unknown_key(const LayerRule *r, const Arg *arg)
{
    const char *names[MAX_ARGS + 1] = {0};
    for (int i = 0; i < MAX_ARGS && r->spec[i].name; i++)
        names[i] = r->spec[i].name;
    error_at(arg->keyloc, "%s has no argument '%s'", r->name, arg->key);
    const char *near = closest_word(arg->key, names);
    bool pooling = strcmp(arg->key, "ceil") == 0, averaging = strcmp(arg->key, "count_pad") == 0;
    if (pooling || averaging)
        note("'%s' is an argument of %s", arg->key, pooling ? "maxpool and avgpool" : "avgpool");
    else if (near)
        note("did you mean '%s'?", near);
    else if (names[0])
        note("%s takes %s%s%s%s%s", r->name, names[0], names[1] ? ", " : "", names[1] ? names[1] : "",
             names[2] ? ", ..." : "", "");
    else
        note("%s takes no arguments", r->name);
}

/* Puts the call's argument `arg` into slot i, checking its type. */
static bool put(Builder *b, Args *a, int i, const Arg *arg)
{
    const ArgSpec *s = &a->rule->spec[i];
    if (given(a, i)) {
        error_at(arg->key ? arg->keyloc : arg->val->loc, "%s's argument '%s' is given twice", a->rule->name, s->name);
        return false;
    }
    Val v = s->type == T_BRANCH ? (Val){V_AST, .ast = arg->val, .loc = arg->val->loc}
                                : shape_const(b, arg->val);
    if (s->type == T_COUNT && v.kind == V_INT && v.num > (1 << 30)) {
        error_at(arg->val->loc, "%s's argument '%s' must be at most 2^30", a->rule->name, s->name);
        return false;
    }
    bool wants_number = s->type == T_COUNT || s->type == T_SIZE || s->type == T_FLOAT || s->type == T_PROB ||
                        s->type == T_AXIS;
    if (v.kind == V_NAME && wants_number) {
        error_at(arg->val->loc, "unknown name '%s' in %s's argument '%s'", v.str, a->rule->name, s->name);
        const char *near = closest_word(v.str, shape_block_params(b));
        if (near)
            note("did you mean '%s'?", near);
        return false;
    }
    if (!type_ok(s->type, &v)) {
        error_at(arg->val->loc, "%s's argument '%s' must be %s", a->rule->name, s->name, type_names[s->type]);
        return false;
    }
    if (v.kind == V_SIZE && v.deep && strcmp(a->rule->name, "maxpool") != 0 && strcmp(a->rule->name, "avgpool") != 0) {
        error_at(arg->val->loc, "%s's argument '%s' must be K or HxW", a->rule->name, s->name);
        note("a size of three numbers (DxHxW) is for maxpool and avgpool over a [C, D, H, W] value");
        return false;
    }
    a->v[i] = v;
    return true;
}

static int positional_count(const LayerRule *r)
{
    int n = 0;
    for (int i = 0; i < MAX_ARGS && r->spec[i].name; i++)
        n += r->spec[i].positional;
    return n;
}

/* Matches a call's arguments to the rule: positional first, then by keyword. */
static bool match(Builder *b, Args *a)
{
    const LayerRule *r = a->rule;
    Ast *e = a->use;
    int n = e->kind == A_CALL ? e->nargs : 0, pos = 0, npos = positional_count(r);
    bool ok = true;
    for (int k = 0; k < n; k++) {
        const Arg *arg = &e->args[k];
        if (arg->key) {
            int i = spec_index(r, arg->key);
            if (i < 0) {
                unknown_key(r, arg);
                ok = false;
            } else
                ok &= put(b, a, i, arg);
        } else if (r->variadic) {
            if (a->nbranches == 256) {
                error_at(arg->val->loc, "%s takes at most 256 branches", r->name);
                return false;
            }
            a->branches[a->nbranches++] = arg->val;
        } else if (pos >= npos) {
            error_at(arg->val->loc, "%s takes %d positional argument%s but got more", r->name, npos,
                     npos == 1 ? "" : "s");
            return false;
        } else
            ok &= put(b, a, pos++, arg);
    }
    for (int i = 0; ok && i < MAX_ARGS && r->spec[i].name; i++)
        if (r->spec[i].required && !given(a, i)) {
            error_at(e->loc, "%s needs its argument '%s'", r->name, r->spec[i].name);
            ok = false;
        }
    if (ok && r->variadic && a->nbranches == 0) {
        error_at(e->loc, "%s needs at least one branch", r->name);
        ok = false;
    }
    return ok;
}

/* ---- helpers for builders ------------------------------------------------ */

static bool need_rank(const Args *a, Node *x, int rank, const char *what)
{
    if (x->shape.rank == rank)
        return true;
    error_at(a->use->loc, "%s expects %s input but got %s", a->rule->name, what, shape_str(x->shape));
    if (rank == 1 && x->shape.rank > 1)
        note("insert `-> flatten` before it");
    return false;
}

/* "<layer><k>", or the layer's name="..." */
static const char *prefix(Builder *b, Args *a, OpKind op, int name_slot)
{
    if (name_slot >= 0 && given(a, name_slot))
        return a->v[name_slot].str;
    return arena_printf("%s%d", a->rule->name, ++b->count[op]);
}

static bool param_exists(Builder *b, const char *name)
{
    return map_get(&b->layer_params, name) != NULL;
}

static Node *new_param(Builder *b, Args *a, const char *pre, const char *suffix, Shape s, InitKind init,
                       int init_slot)
{
    Param p = {.name = arena_printf("%s.%s", pre, suffix), .shape = s, .init = init, .loc = a->use->loc};
    if (param_exists(b, p.name)) {
        error_at(a->use->loc, "two parameters are named '%s'", p.name);
        note("give the layer another name=\"...\"");
        return NULL;
    }
    layer_fans(&p);
    p.is_weight = strcmp(suffix, "weight") == 0 && strcmp(a->rule->name, "batchnorm") != 0;
    p.is_buffer = strncmp(suffix, "running", 7) == 0;
    if (init_slot >= 0 && given(a, init_slot) && !shape_init(b, a->v[init_slot].ast, &p))
        return NULL;
    map_put(&b->layer_params, p.name, (void *)(intptr_t)(b->g->nparams + 1));
    return shape_param_node(b, p);
}

void layer_fans(Param *p)
{
    Shape s = p->shape;
    int64_t rest = 1;
    for (int i = 2; i < s.rank; i++)
        rest *= s.d[i];
    p->fan_in = s.rank >= 2 ? s.d[1] * rest : s.rank ? s.d[0] : 1;
    p->fan_out = s.rank >= 2 ? s.d[0] * rest : s.rank ? s.d[0] : 1;
}

static bool size_ok(const Args *a, Shape s)
{
    int64_t total = 1;
    for (int i = 0; i < s.rank; i++)
        if (!mul_ok(total, s.d[i], &total) || total > MAX_TENSOR_ELEMS) {
            error_at(a->use->loc, "%s would need a tensor of shape %s, more than 2^31 - 1 elements",
                     a->rule->name, shape_str(s));
            return false;
        }
    return true;
}

/* ---- builders ------------------------------------------------------------ */

enum { DENSE_N, DENSE_BIAS, DENSE_INIT, DENSE_BINIT, DENSE_NAME };

/* dense(n): [D] -> [n] = W x + b, W [n, D], b [n] */
static Node *apply_dense(Builder *b, Args *a, Node *x)
{
    if (!need_rank(a, x, 1, "a vector"))
        return NULL;
    int64_t n = (int64_t)num(a, DENSE_N, 0), d = x->shape.d[0];
    Shape ws = shape_of(2, n, d);
    if (!size_ok(a, ws))
        return NULL;
    const char *pre = prefix(b, a, OP_DENSE, DENSE_NAME);
    Node *in[3] = {x, new_param(b, a, pre, "weight", ws, INIT_HE, DENSE_INIT), NULL};
    bool bias = !given(a, DENSE_BIAS) || strcmp(a->v[DENSE_BIAS].str, "true") == 0;
    if (bias)
        in[2] = new_param(b, a, pre, "bias", shape_of(1, n), INIT_ZEROS, DENSE_BINIT);
    if (!in[1] || (bias && !in[2]))
        return NULL;
    Node *y = graph_node(b->g, OP_DENSE, a->use->loc, shape_of(1, n), bias ? 3 : 2, in);
    if (y)
        y->label = pre;
    return y;
}

/* Output extent of a window of k taps d apart: (in + pads - (k - 1) d - 1) / stride + 1,
 * or 0 if it does not fit. */
int64_t layer_extent(int64_t in, int pad, int k, int d, int stride)
{
    int64_t span = (int64_t)(k - 1) * d + 1;
    return in + pad < span ? 0 : (in + pad - span) / stride + 1;
}

/* Ceil mode (PyTorch's ceil_mode): the output size rounded up, less a last
 * window that would start in the bottom padding; the extra cells go to the
 * bottom padding *pb. */
void layer_ceil_extent(int64_t in, int pt, int *pb, int k, int stride)
{
    int64_t out = (in + pt + *pb - k + stride - 1) / stride + 1;
    if ((out - 1) * stride >= in + pt)
        out--;
    int64_t need = (out - 1) * stride + k - in - pt;
    if (need > *pb)
        *pb = (int)need;
}

/* Every window has a tap inside when the padding on either side is less
 * than the window's span (the first window reaches the image, and the last
 * starts in it; ceil mode never adds a window that starts in the padding)
 * and the taps are no farther apart than the image is wide (they cannot
 * step over it). */
bool layer_pool_pads_ok(int64_t in, int pt, int pb, int k, int d, const char **why)
{
    int64_t span = (int64_t)(k - 1) * d + 1;
    if (pt >= span || pb >= span) {
        *why = "a window would lie wholly in the padding (pad at most the window's span less 1)";
        return false;
    }
    if (d > 1 && d > in) {
        *why = "the dilation is larger than the input, so a window's taps could step over it";
        return false;
    }
    return true;
}

static bool true_arg(const Args *a, int i) { return given(a, i) && strcmp(a->v[i].str, "true") == 0; }

/* The window of a conv or pooling layer from its arguments: kernel, stride
 * and pad slots, the dilation slot (conv and maxpool; else -1), for pooling
 * the ceil slot (else -1). */
static bool window(Args *a, Node *x, Window *w, int k, int stride, int pad, int dil, int ceil)
{
    bool pool = ceil >= 0;
    *w = (Window){.dh = 1, .dw = 1, .groups = 1};
    size_arg(a, k, 1, 1, &w->kh, &w->kw);
    size_arg(a, stride, w->kh, w->kw, &w->sh, &w->sw);
    if (pool && !given(a, stride))
        w->sh = w->kh, w->sw = w->kw;
    else if (!pool && !given(a, stride))
        w->sh = w->sw = 1;
    if (dil >= 0)
        size_arg(a, dil, 1, 1, &w->dh, &w->dw);
    int64_t eh64 = (int64_t)(w->kh - 1) * w->dh + 1, ew64 = (int64_t)(w->kw - 1) * w->dw + 1;
    if (eh64 > (1 << 20) || ew64 > (1 << 20)) {
        error_at(a->use->loc, "%s's kernel %dx%d with dilation %dx%d spans %lldx%lld cells, more than 2^20",
                 a->rule->name, w->kh, w->kw, w->dh, w->dw, (long long)eh64, (long long)ew64);
        return false;
    }
    int eh = (int)eh64, ew = (int)ew64;     /* the dilated kernel's span */
    const Val *p = &a->v[pad];
    if (p->kind == V_NAME) {                    /* same: keep H, W at stride 1 */
        if (w->sh != 1 || w->sw != 1) {
            error_at(p->loc, "pad=same needs stride 1");
            return false;
        }
        w->pt = (eh - 1) / 2, w->pb = eh - 1 - w->pt;
        w->pl = (ew - 1) / 2, w->pr = ew - 1 - w->pl;
    } else {
        size_arg(a, pad, 0, 0, &w->pt, &w->pl);
        w->pb = w->pt, w->pr = w->pl;
    }
    int64_t h = x->shape.d[1], wd = x->shape.d[2];
    const char *why;
    if (pool && (!layer_pool_pads_ok(h, w->pt, w->pb, w->kh, w->dh, &why) ||
                 !layer_pool_pads_ok(wd, w->pl, w->pr, w->kw, w->dw, &why))) {
        error_at(p->kind != V_NONE ? p->loc : a->use->loc, "%s's window (kernel %dx%d, padding %dx%d%s) does not fit "
                 "its input %lldx%lld: %s", a->rule->name, w->kh, w->kw, w->pt, w->pl,
                 w->dh > 1 || w->dw > 1 ? arena_printf(", dilation %dx%d", w->dh, w->dw) : "", (long long)h,
                 (long long)wd, why);
        return false;
    }
    if (layer_extent(h, w->pt + w->pb, w->kh, w->dh, w->sh) < 1 || layer_extent(wd, w->pl + w->pr, w->kw, w->dw, w->sw) < 1) {
        error_at(a->use->loc, "%s's kernel %dx%d%s is larger than its input %lldx%lld (padded %lldx%lld)",
                 a->rule->name, w->kh, w->kw, eh != w->kh || ew != w->kw ? arena_printf(" (dilated %dx%d)", eh, ew) : "",
                 (long long)h, (long long)wd, (long long)(h + w->pt + w->pb), (long long)(wd + w->pl + w->pr));
        return false;
    }
    w->cb = w->pb, w->cr = w->pr;
    if (pool && true_arg(a, ceil)) {
        w->ceil = true;
        layer_ceil_extent(h, w->pt, &w->pb, eh, w->sh);
        layer_ceil_extent(wd, w->pl, &w->pr, ew, w->sw);
    }
    return true;
}

static Shape windowed(Shape in, int64_t c, const Window *w)
{
    return shape_of(3, c, layer_extent(in.d[1], w->pt + w->pb, w->kh, w->dh, w->sh),
                    layer_extent(in.d[2], w->pl + w->pr, w->kw, w->dw, w->sw));
}

enum { CONV_C, CONV_K, CONV_STRIDE, CONV_PAD, CONV_BIAS, CONV_INIT, CONV_BINIT, CONV_NAME, CONV_GROUPS,
       CONV_DILATION };

/* groups = g splits the C input and c output channels into g groups, each
 * output group seeing its input group only: both must divide by g. */
static bool groups_ok(Args *a, int64_t C, int64_t c, int g)
{
    if (C % g == 0 && c % g == 0)
        return true;
    int64_t bad = C % g ? C : c;
    error_at(a->v[CONV_GROUPS].loc, "conv's groups = %d does not divide its %s %lld channels", g,
             C % g ? "input's" : "output's", (long long)bad);
    note("groups must divide both the input's channels (%lld) and the output's (%lld)", (long long)C, (long long)c);
    return false;
}

/* conv(c, KxK, stride, pad, groups, dilation): [C,H,W] -> [c,H',W'],
 * W [c, C / groups, K, K], b [c] */
static Node *apply_conv(Builder *b, Args *a, Node *x)
{
    Window w;
    if (!need_rank(a, x, 3, "an image [C, H, W]") ||
        !window(a, x, &w, CONV_K, CONV_STRIDE, CONV_PAD, CONV_DILATION, -1))
        return NULL;
    int64_t c = (int64_t)num(a, CONV_C, 0), C = x->shape.d[0];
    w.groups = (int)num(a, CONV_GROUPS, 1);
    if (!groups_ok(a, C, c, w.groups))
        return NULL;
    Shape ws = shape_of(4, c, C / w.groups, (int64_t)w.kh, (int64_t)w.kw), ys = windowed(x->shape, c, &w);
    if (!size_ok(a, ws) || !size_ok(a, ys))
        return NULL;
    const char *pre = prefix(b, a, OP_CONV, CONV_NAME);
    Node *in[3] = {x, new_param(b, a, pre, "weight", ws, INIT_HE, CONV_INIT), NULL};
    bool bias = !given(a, CONV_BIAS) || strcmp(a->v[CONV_BIAS].str, "true") == 0;
    if (bias)
        in[2] = new_param(b, a, pre, "bias", shape_of(1, c), INIT_ZEROS, CONV_BINIT);
    if (!in[1] || (bias && !in[2]))
        return NULL;
    Node *y = graph_node(b->g, OP_CONV, a->use->loc, ys, bias ? 3 : 2, in);
    if (y)
        y->win = w, y->label = pre;
    return y;
}

enum { POOL_K, POOL_STRIDE, POOL_PAD, POOL_CEIL, POOL_COUNT_PAD, POOL_DILATION = POOL_COUNT_PAD };

/* maxpool(k, stride=k, pad=0, ceil=false), avgpool(..., count_pad=false): [C,H,W] -> [C,H',W'] */
/* Pooling of a [C, D, H, W] value with a window of kd x kh x kw, as two
 * passes of 2-D pooling (max and mean over a box are a max and a mean of
 * maxima and means over its planes, the cells that count, inside the volume
 * and its padding, being a box too): over each plane, [C D, H, W] ->
 * [C D, H', W'], then along the depth, [C, D, H' W'] with windows of kd x 1
 * -> [C, D', H' W']; reshapes around them (which copy nothing). whw is the
 * planes' window, wd the depth's (kw 1, no padding across). */
Node *layer_pool3d(Graph *g, Loc loc, OpKind op, Node *x, const Window *wd, const Window *whw)
{
    int64_t C = x->shape.d[0], D = x->shape.d[1], H = x->shape.d[2], W = x->shape.d[3];
    int64_t H2 = layer_extent(H, whw->pt + whw->pb, whw->kh, whw->dh, whw->sh);
    int64_t W2 = layer_extent(W, whw->pl + whw->pr, whw->kw, whw->dw, whw->sw);
    int64_t D2 = layer_extent(D, wd->pt + wd->pb, wd->kh, wd->dh, wd->sh);
    Node *p = graph_node(g, OP_FLATTEN, loc, shape_of(3, C * D, H, W), 1, &x);
    Node *y = p ? graph_node(g, op, loc, shape_of(3, C * D, H2, W2), 1, &p) : NULL;
    if (y)
        y->win = *whw;
    Node *r = y ? graph_node(g, OP_FLATTEN, loc, shape_of(3, C, D, H2 * W2), 1, &y) : NULL;
    Node *z = r ? graph_node(g, op, loc, shape_of(3, C, D2, H2 * W2), 1, &r) : NULL;
    if (z)
        z->win = *wd;
    return z ? graph_node(g, OP_FLATTEN, loc, shape_of(4, C, D2, H2, W2), 1, &z) : NULL;
}

/* Argument i as three sizes (depth, height, width): DxHxW, or K for all
 * three; dflt when not given. false (said why) for HxW. */
static bool size3(const Args *a, int i, const int *dflt, int *v)
{
    const Val *s = &a->v[i];
    if (s->kind == V_SIZE && !s->deep) {
        error_at(s->loc, "%s of a [C, D, H, W] value takes K or DxHxW, not HxW", a->rule->name);
        return false;
    }
    for (int k = 0; k < 3; k++)
        v[k] = s->kind == V_SIZE ? (k == 0 ? s->d : k == 1 ? s->h : s->w) : s->kind == V_INT ? (int)s->num : dflt[k];
    return true;
}

/* maxpool, avgpool over [C, D, H, W]: the window checked axis by axis, then
 * layer_pool3d */
static Node *pool3d(Builder *b, Args *a, Node *x, OpKind op, int kp, int sp, int pp, int dp, int cp)
{
    static const int one[3] = {1, 1, 1}, none[3] = {0, 0, 0};
    int k[3], s[3], dl[3] = {1, 1, 1}, pf[3], pk[3];
    if (!size3(a, kp, one, k) || !size3(a, sp, k, s) || (dp >= 0 && !size3(a, dp, one, dl)))
        return NULL;
    const Val *p = &a->v[pp];
    bool same = p->kind == V_NAME;
    if (same && (s[0] != 1 || s[1] != 1 || s[2] != 1)) {
        error_at(p->loc, "pad=same needs stride 1");
        return NULL;
    }
    if (!same && !size3(a, pp, none, pf))
        return NULL;
    int64_t span[3];
    for (int i = 0; i < 3; i++) {
        span[i] = (int64_t)(k[i] - 1) * dl[i] + 1;
        if (span[i] > (1 << 20)) {
            error_at(a->use->loc, "%s's kernel %dx%dx%d with dilation %dx%dx%d spans more than 2^20 cells",
                     a->rule->name, k[0], k[1], k[2], dl[0], dl[1], dl[2]);
            return NULL;
        }
        if (same)
            pf[i] = (int)((span[i] - 1) / 2);
        pk[i] = same ? (int)(span[i] - 1 - pf[i]) : pf[i];
    }
    for (int i = 0; i < 3; i++) {
        int64_t in = x->shape.d[i + 1];
        const char *why = "the window is larger than the input and its padding";
        if (!layer_pool_pads_ok(in, pf[i], pk[i], k[i], dl[i], &why) ||
            layer_extent(in, pf[i] + pk[i], k[i], dl[i], s[i]) < 1) {
            error_at(p->kind != V_NONE ? p->loc : a->use->loc, "%s's window (kernel %dx%dx%d, padding %dx%dx%d%s) "
                     "does not fit its input %lldx%lldx%lld: %s", a->rule->name, k[0], k[1], k[2], pf[0], pf[1], pf[2],
                     dl[0] > 1 || dl[1] > 1 || dl[2] > 1 ? arena_printf(", dilation %dx%dx%d", dl[0], dl[1], dl[2]) : "",
                     (long long)x->shape.d[1], (long long)x->shape.d[2], (long long)x->shape.d[3], why);
            return NULL;
        }
    }
    bool ceil = true_arg(a, cp), count_pad = op == OP_AVGPOOL && true_arg(a, POOL_COUNT_PAD);
    Window whw = {.kh = k[1], .kw = k[2], .sh = s[1], .sw = s[2], .pt = pf[1], .pl = pf[2], .pb = pk[1], .pr = pk[2],
                  .dh = dl[1], .dw = dl[2], .groups = 1, .ceil = ceil, .count_pad = count_pad, .cb = pk[1], .cr = pk[2]};
    Window wd = {.kh = k[0], .kw = 1, .sh = s[0], .sw = 1, .pt = pf[0], .pb = pk[0], .dh = dl[0], .dw = 1,
                 .groups = 1, .ceil = ceil, .count_pad = count_pad, .cb = pk[0]};
    if (ceil) {
        layer_ceil_extent(x->shape.d[2], whw.pt, &whw.pb, (int)span[1], whw.sh);
        layer_ceil_extent(x->shape.d[3], whw.pl, &whw.pr, (int)span[2], whw.sw);
        layer_ceil_extent(x->shape.d[1], wd.pt, &wd.pb, (int)span[0], wd.sh);
    }
    return layer_pool3d(b->g, a->use->loc, op, x, &wd, &whw);
}

static Node *apply_pool(Builder *b, Args *a, Node *x)
{
    Window w;
    OpKind op = a->rule->name[0] == 'm' ? OP_MAXPOOL : OP_AVGPOOL;
    int dil = op == OP_MAXPOOL ? POOL_DILATION : -1;
    if (x->shape.rank == 4)
        return pool3d(b, a, x, op, POOL_K, POOL_STRIDE, POOL_PAD, dil, POOL_CEIL);
    for (int i = 0; i < MAX_ARGS; i++)
        if (a->v[i].kind == V_SIZE && a->v[i].deep) {
            error_at(a->v[i].loc, "%s of %s takes K or HxW; DxHxW is for a [C, D, H, W] value", a->rule->name,
                     shape_str(x->shape));
            return NULL;
        }
    if (!need_rank(a, x, 3, "an image [C, H, W] or volume [C, D, H, W]") ||
        !window(a, x, &w, POOL_K, POOL_STRIDE, POOL_PAD, dil, POOL_CEIL))
        return NULL;
    w.count_pad = op == OP_AVGPOOL && true_arg(a, POOL_COUNT_PAD);
    Node *y = graph_node(b->g, op, a->use->loc, windowed(x->shape, x->shape.d[0], &w), 1, &x);
    if (y)
        y->win = w;
    return y;
}

/* global_avgpool: [C,H,W] -> [C] */
static Node *apply_gap(Builder *b, Args *a, Node *x)
{
    if (!need_rank(a, x, 3, "an image [C, H, W]"))
        return NULL;
    return graph_node(b->g, OP_GAP, a->use->loc, shape_of(1, x->shape.d[0]), 1, &x);
}

static OpKind elementwise_op(const char *name)
{
    return strcmp(name, "relu") == 0 ? OP_RELU : strcmp(name, "tanh") == 0 ? OP_TANH
         : strcmp(name, "sigmoid") == 0 ? OP_SIGMOID : OP_LEAKY;
}

/* relu, tanh, sigmoid, leaky_relu(a): same shape */
static Node *apply_elementwise(Builder *b, Args *a, Node *x)
{
    Node *y = shape_unary(b, elementwise_op(a->rule->name), a->use->loc, x);
    if (y)
        y->alpha = (float)num(a, 0, 0.01);
    return y;
}

/* clip(lo, hi): min(max(x, lo), hi); relu6: clip(0, 6). Same shape. */
static Node *apply_clip(Builder *b, Args *a, Node *x)
{
    bool relu6 = strcmp(a->rule->name, "relu6") == 0;
    double lo = relu6 ? 0 : num(a, 0, 0), hi = relu6 ? 6 : num(a, 1, 0);
    if (!(lo < hi)) {
        error_at(a->use->loc, "clip's bounds must be lo < hi, but got clip(%g, %g)", lo, hi);
        return NULL;
    }
    Node *y = shape_unary(b, OP_CLIP, a->use->loc, x);
    if (y)
        y->alpha = (float)lo, y->beta = (float)hi;
    return y;
}

/* Argument i, an axis of shape s (negative: from the last), as 0..rank-1;
 * -1 (said why) when s has no such dimension. */
static int axis_arg(const Args *a, int i, Shape s)
{
    int k = (int)num(a, i, 0), ax = k < 0 ? k + s.rank : k;
    if (ax >= 0 && ax < s.rank)
        return ax;
    error_at(a->v[i].loc, "%s's axis %d is not a dimension of its input %s", a->rule->name, k, shape_str(s));
    note("axis 0 is the example's first dimension (the batch is not counted), -1 its last");
    return -1;
}

/* softmax, l1norm, l2norm: [n] -> [n]; softmax(axis = k): any -> same,
 * normalized along dimension k */
static Node *apply_vector(Builder *b, Args *a, Node *x)
{
    bool along = a->rule->name[0] == 's' && given(a, 0);
    int axis = along ? axis_arg(a, 0, x->shape) : 0;
    if (axis < 0 || (!along && !need_rank(a, x, 1, "a vector")))
        return NULL;
    OpKind op = a->rule->name[0] == 's' ? OP_SOFTMAX : a->rule->name[1] == '1' ? OP_L1NORM : OP_L2NORM;
    Node *y = shape_unary(b, op, a->use->loc, x);
    if (y)
        y->axis = axis;
    return y;
}

/* flatten: any -> [product] */
static Node *apply_flatten(Builder *b, Args *a, Node *x)
{
    return graph_node(b->g, OP_FLATTEN, a->use->loc, shape_of(1, shape_count(x->shape)), 1, &x);
}

/* transpose: [m, n] -> [n, m] */
static Node *apply_transpose(Builder *b, Args *a, Node *x)
{
    if (!need_rank(a, x, 2, "a matrix [m, n]"))
        return NULL;
    return graph_node(b->g, OP_TRANSPOSE, a->use->loc, shape_of(2, x->shape.d[1], x->shape.d[0]), 1, &x);
}

/* reshape(d0, d1, ...): any -> [d0, d1, ...] of as many values, in row-major
 * order (as flatten, which is reshape(product)) */
static Node *apply_reshape(Builder *b, Args *a, Node *x)
{
    Shape s = {0};
    for (int i = 0; i < MAX_RANK && given(a, i); i++)
        s.d[s.rank++] = (int64_t)num(a, i, 1);
    if (!size_ok(a, s))
        return NULL;
    int64_t count = shape_count(s);
    if (count != shape_count(x->shape)) {
        error_at(a->use->loc, "reshape to %s needs %lld values, but its input %s has %lld", shape_str(s),
                 (long long)count, shape_str(x->shape), (long long)shape_count(x->shape));
        return NULL;
    }
    return graph_node(b->g, OP_FLATTEN, a->use->loc, s, 1, &x);
}

/* dropout(p): same shape; identity at inference, mask / (1 - p) in training */
static Node *apply_dropout(Builder *b, Args *a, Node *x)
{
    Node *y = shape_unary(b, OP_DROPOUT, a->use->loc, x);
    if (y)
        y->alpha = (float)num(a, 0, 0.5);
    return y;
}

enum { BN_MOMENTUM, BN_EPS, BN_NAME };

/* batchnorm: [C,H,W] or [n]; weight, bias [C]; buffers running_mean, running_var [C] */
static Node *apply_batchnorm(Builder *b, Args *a, Node *x)
{
    if (x->shape.rank != 1 && x->shape.rank != 3) {
        error_at(a->use->loc, "batchnorm expects [C, H, W] or [n] but got %s", shape_str(x->shape));
        return NULL;
    }
    Shape cs = shape_of(1, x->shape.d[0]);
    const char *pre = prefix(b, a, OP_BATCHNORM, BN_NAME);
    Node *in[5] = {x, new_param(b, a, pre, "weight", cs, INIT_ONES, -1),
                   new_param(b, a, pre, "bias", cs, INIT_ZEROS, -1),
                   new_param(b, a, pre, "running_mean", cs, INIT_ZEROS, -1),
                   new_param(b, a, pre, "running_var", cs, INIT_ONES, -1)};
    for (int i = 1; i < 5; i++)
        if (!in[i])
            return NULL;
    Node *y = graph_node(b->g, OP_BATCHNORM, a->use->loc, x->shape, 5, in);
    if (y)
        y->momentum = (float)num(a, BN_MOMENTUM, 0.1), y->alpha = (float)num(a, BN_EPS, 1e-5), y->label = pre;
    return y;
}

enum { LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K };

/* lrn(size, alpha, beta, k): [C,H,W] -> same; PyTorch's LocalResponseNorm */
static Node *apply_lrn(Builder *b, Args *a, Node *x)
{
    if (!need_rank(a, x, 3, "an image [C, H, W]"))
        return NULL;
    if (num(a, LRN_SIZE, 5) > 1024) {
        error_at(a->v[LRN_SIZE].loc, "lrn's size must be at most 1024");
        return NULL;
    }
    Node *y = shape_unary(b, OP_LRN, a->use->loc, x);
    if (y) {
        y->win.kh = (int)num(a, LRN_SIZE, 5);
        y->alpha = (float)num(a, LRN_ALPHA, 1e-4), y->beta = (float)num(a, LRN_BETA, 0.75);
        y->k = (float)num(a, LRN_K, 2);
    }
    return y;
}

/* concat(a, b, ...): each branch gets x; joined on channels (rank 3) or the
 * axis (rank 1); concat(..., axis = k): values of any equal rank joined along
 * dimension k, the others equal */
static Node *apply_concat(Builder *b, Args *a, Node *x)
{
    Node **ys = arena_alloc(sizeof(Node *) * (size_t)a->nbranches);
    for (int i = 0; i < a->nbranches; i++)
        if (!(ys[i] = shape_stage(b, a->branches[i], x)))
            return NULL;
    Shape s = ys[0]->shape;
    bool along = given(a, 0);
    int axis = along ? axis_arg(a, 0, s) : 0;
    if (axis < 0)
        return NULL;
    if (!along && s.rank != 1 && s.rank != 3) {
        error_at(a->branches[0]->loc, "concat joins [C, H, W] or [n] values, not %s", shape_str(s));
        note("concat(..., axis = k) joins values of any rank along dimension k");
        return NULL;
    }
    for (int i = 1; i < a->nbranches; i++) {
        Shape t = ys[i]->shape;
        bool fits = t.rank == s.rank;
        for (int k = 0; fits && k < s.rank; k++)
            fits = k == axis || t.d[k] == s.d[k];
        if (!fits) {
            error_at(a->branches[i]->loc, "concat's branch %d gives %s, which cannot join %s", i + 1,
                     shape_str(t), shape_str(ys[0]->shape));
            if (along)
                note("branches must have the same rank and agree on every dimension but axis %d", axis);
            else if (s.rank == 3 && t.rank == 3)
                note("branches must agree on height and width");
            else
                note("branches must be all images [C, H, W] or all vectors [n]");
            return NULL;
        }
        s.d[axis] += t.d[axis];
    }
    if (!size_ok(a, s))
        return NULL;
    Node *y = graph_node(b->g, OP_CONCAT, a->use->loc, s, a->nbranches, ys);
    if (y)
        y->axis = axis;
    return y;
}

/* residual(f): x + f(x), shapes equal; residual(f, shortcut = s): f(x) + s(x),
 * the branch's parameters before the shortcut's */
static Node *apply_residual(Builder *b, Args *a, Node *x)
{
    Node *y = shape_stage(b, a->v[0].ast, x), *s = x;
    if (!y)
        return NULL;
    if (given(a, 1) && !(s = shape_stage(b, a->v[1].ast, x)))
        return NULL;
    if (!shape_eq(s->shape, y->shape)) {
        if (given(a, 1)) {
            error_at(a->v[1].loc, "residual's shortcut gives %s but its branch gives %s; they must match",
                     shape_str(s->shape), shape_str(y->shape));
            note("the input %s goes through both", shape_str(x->shape));
        } else {
            error_at(a->v[0].loc, "residual's branch turns %s into %s; they must match", shape_str(x->shape),
                     shape_str(y->shape));
            note("a branch that changes the shape needs a shortcut: residual(branch, shortcut = ...)");
        }
        return NULL;
    }
    return shape_binary(b, OP_ADD, a->use->loc, s, y);
}

/* repeat(n, f): f -> f -> ... -> f, fresh parameters each time */
static Node *apply_repeat(Builder *b, Args *a, Node *x)
{
    int n = (int)num(a, 0, 1);
    if (n > 10000) {
        error_at(a->v[0].loc, "repeat(%d, ...) is more than 10000 copies", n);
        return NULL;
    }
    for (int i = 0; i < n && x; i++)
        x = shape_stage(b, a->v[1].ast, x);
    return x;
}

/* ---- the table ----------------------------------------------------------- */

#define P(n, t) {n, t, true, true}      /* positional and required */
#define O(n, t) {n, t, true, false}     /* positional, optional */
#define K(n, t) {n, t, false, false}    /* keyword only */

static const LayerRule rules[] = {
    {"dense", {"fc", "affine"}, {P("n", T_COUNT), K("bias", T_BOOL), K("init", T_INIT),
        K("bias_init", T_INIT), K("name", T_STR)}, apply_dense, false},
    {"conv", {0}, {P("c", T_COUNT), P("kernel", T_SIZE), K("stride", T_SIZE), K("pad", T_PAD),
        K("bias", T_BOOL), K("init", T_INIT), K("bias_init", T_INIT), K("name", T_STR), K("groups", T_COUNT),
        K("dilation", T_SIZE)}, apply_conv, false},
    {"maxpool", {0}, {P("k", T_SIZE), K("stride", T_SIZE), K("pad", T_PAD), K("ceil", T_BOOL), K("dilation", T_SIZE)},
        apply_pool, false},
    {"avgpool", {0}, {P("k", T_SIZE), K("stride", T_SIZE), K("pad", T_PAD), K("ceil", T_BOOL),
        K("count_pad", T_BOOL)}, apply_pool, false},
    {"global_avgpool", {0}, {{0}}, apply_gap, false},
    {"relu", {0}, {{0}}, apply_elementwise, false},
    {"tanh", {0}, {{0}}, apply_elementwise, false},
    {"sigmoid", {0}, {{0}}, apply_elementwise, false},
    {"leaky_relu", {0}, {O("a", T_FLOAT)}, apply_elementwise, false},
    {"relu6", {0}, {{0}}, apply_clip, false},
    {"clip", {0}, {P("lo", T_FLOAT), P("hi", T_FLOAT)}, apply_clip, false},
    {"softmax", {0}, {K("axis", T_AXIS)}, apply_vector, false},
    {"l1norm", {0}, {{0}}, apply_vector, false},
    {"l2norm", {0}, {{0}}, apply_vector, false},
    {"flatten", {0}, {{0}}, apply_flatten, false},
    {"transpose", {0}, {{0}}, apply_transpose, false},
    {"reshape", {0}, {P("d0", T_COUNT), O("d1", T_COUNT), O("d2", T_COUNT), O("d3", T_COUNT), O("d4", T_COUNT),
                      O("d5", T_COUNT), O("d6", T_COUNT)}, apply_reshape, false},
    {"dropout", {0}, {P("p", T_PROB)}, apply_dropout, false},
    {"batchnorm", {0}, {K("momentum", T_PROB), K("eps", T_FLOAT), K("name", T_STR)}, apply_batchnorm, false},
    {"lrn", {0}, {O("size", T_COUNT), K("alpha", T_FLOAT), K("beta", T_FLOAT), K("k", T_FLOAT)}, apply_lrn, false},
    {"concat", {0}, {K("axis", T_AXIS)}, apply_concat, true},
    {"residual", {0}, {P("branch", T_BRANCH), K("shortcut", T_BRANCH)}, apply_residual, false},
    {"repeat", {0}, {P("n", T_COUNT), P("branch", T_BRANCH)}, apply_repeat, false},
};

#define NRULES (int)(sizeof rules / sizeof rules[0])

const LayerRule *layer_find(const char *name)
{
    for (int i = 0; i < NRULES; i++) {
        if (strcmp(rules[i].name, name) == 0)
            return &rules[i];
        for (int j = 0; j < 3 && rules[i].alias[j]; j++)
            if (strcmp(rules[i].alias[j], name) == 0)
                return &rules[i];
    }
    return NULL;
}

const char *const *layer_names(void)
{
    static const char *names[4 * NRULES + 1];
    int k = 0;
    for (int i = 0; i < NRULES; i++) {
        names[k++] = rules[i].name;
        for (int j = 0; j < 3 && rules[i].alias[j]; j++)
            names[k++] = rules[i].alias[j];
    }
    names[k] = NULL;
    return names;
}

Node *layer_apply(Builder *b, const LayerRule *rule, Ast *use, Node *x)
{
    Args *a = arena_alloc(sizeof *a);
    a->rule = rule, a->use = use;
    if (!match(b, a))
        return NULL;
    return rule->apply(b, a, x);
}
