/* unparse.c: --emit=cnn. Writes a network's operator Graph back as a cnnc
 * program that compiles to the same graph: the same operators in the same
 * order, the same parameter names and shapes in the same order, the same
 * loss and settings. Any graph, whether shape.c built it from a program or
 * an importer from a model file.
 *
 * The program is a list of statements, each a pipeline
 *     SOURCE -> stage -> stage ... -> NAME     or     NAME = EXPR -> stage ...
 * Values get names only where they must: a value used twice (where the graph
 * branches), the output, what the loss scores, a value nobody uses, a value
 * the source program had bound (its label), and the operands of a join that
 * is not a residual or concat pattern. Everything else is a stage of the
 * pipeline it flows through. Joins are written as the layers that make them
 * when the graph has their shape:
 *     residual(branch)                       add(x, branch(x))
 *     residual(branch, shortcut = s)         add(s(x), branch(x)), the branch made first
 *     concat(b1, b2, ...)                    every bi a chain from one value
 * Maths nodes that are used once become parts of their user's expression
 * (`W1 @ _ + b1`) when that keeps the order in which the nodes are made.
 *
 * A layer's parameters are named by the language (conv1.weight, ...):
 * layers are counted in the order the program is written, and a layer whose
 * parameters' prefix is not the count's gets `name = "..."`. Explicit
 * parameters (those maths uses) become `param` statements.
 *
 * unparse_write also writes the files the program refers to: the built-in
 * weights (INIT_DATA) as STEM.safetensors (with the runtime's writer) and the
 * data block's class names as STEM.classes.txt.
 */
#include "cnnc.h"
#include "../runtime/cnnrt.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The state of one unparse. Per-node arrays are indexed by Node.id. */
typedef struct {
    const Graph *g;
    int n;                /* the forward nodes */
    int *uses;            /* edges from forward nodes, plus one for the output and per loss term */
    int *absorbed;        /* extra uses a residual or concat counts as one */
    bool *forced;         /* must be named: output, loss, unused, a kept label, or (retry) a join's operand */
    bool *composite;      /* written as residual(...) or concat(...) */
    Node **source;        /* a composite's input: where its branches start */
    int *cmin, *cref;     /* a composite's first node, and the last named value its branches use */
    bool *inl;            /* a maths node written inside its user's expression */
    bool *shared;         /* a stage's `_` that its expression reads more than once (`_ * sigmoid(_)`) */
    const char **name;    /* the named values */
    int count[OP_COUNT];  /* layers of each kind written so far, for their automatic names */
    Map taken;            /* every name the program binds or declares */
    const Node *stop;     /* the value the chain being walked starts from (a branch's), or NULL */
    bool retry;           /* a join needed a name: the analysis runs again */
    const char *err;      /* why the graph cannot be written */
    const Node *errnode;
} U;

/* A chain's extent: its first node, its last, the last named value it reads. */
typedef struct { int lo, hi, ref; } Span;

static void fail(U *u, const Node *n, const char *why)
{
    if (!u->err)
        u->err = why, u->errnode = n;
}

/* ---- kinds of nodes ------------------------------------------------------ */

static bool is_leaf(OpKind op) { return op == OP_INPUT || op == OP_PARAM || op == OP_CONST; }

/* A layer with one data input, in[0] (parameters follow it). */
static bool is_layer(OpKind op)
{
    switch (op) {
    case OP_DENSE: case OP_CONV: case OP_MAXPOOL: case OP_AVGPOOL: case OP_GAP: case OP_SOFTMAX:
    case OP_L1NORM: case OP_L2NORM: case OP_FLATTEN: case OP_DROPOUT: case OP_BATCHNORM: case OP_LRN: case OP_TRANSPOSE:
    case OP_LEAKY: case OP_CLIP:
        return true;
    default:
        return false;
    }
}

/* An operator of the maths notation (relu, tanh and sigmoid are also layers). */
static bool is_maths(OpKind op)
{
    switch (op) {
    case OP_RELU: case OP_TANH: case OP_SIGMOID: case OP_EXP: case OP_LOG: case OP_SQRT: case OP_ABS:
    case OP_NEG: case OP_ADD: case OP_SUB: case OP_MUL: case OP_DIV: case OP_MAX: case OP_MIN:
    case OP_MATMUL: case OP_SUM: case OP_MEAN:
        return true;
    default:
        return false;
    }
}

static bool named(const U *u, const Node *m)
{
    return m->op == OP_INPUT || u->forced[m->id] || u->uses[m->id] - u->absorbed[m->id] != 1;
}

/* A value a chain may pass through: made by an operator, used once, unnamed,
 * and not where the chain starts. */
static bool steppable(const U *u, const Node *m)
{
    return !is_leaf(m->op) && m->id < u->n && !named(u, m) && m != u->stop;
}

/* 3-D pooling as the language builds it (layer_pool3d): t the last of
 * reshape [C D, H, W] -> pool -> reshape [C, D, H' W'] -> pool (kd x 1) ->
 * reshape [C, D', H', W'] of a volume [C, D, H, W], the nodes between used
 * once and unnamed. Returns the volume, or NULL. */
static Node *pool3d_from(const U *u, const Node *t)
{
    if (t->op != OP_FLATTEN || t->shape.rank != 4)
        return NULL;
    Node *z = t->in[0];
    Node *r = z->nin ? z->in[0] : NULL, *y = r && r->nin ? r->in[0] : NULL, *p = y && y->nin ? y->in[0] : NULL;
    Node *x = p && p->nin ? p->in[0] : NULL;
    if (!x || (z->op != OP_MAXPOOL && z->op != OP_AVGPOOL) || y->op != z->op || r->op != OP_FLATTEN ||
        p->op != OP_FLATTEN || x->shape.rank != 4)
        return NULL;
    Node *mid[4] = {p, y, r, z};
    for (int i = 0; i < 4; i++)
        if (!steppable(u, mid[i]) || u->uses[mid[i]->id] != 1)
            return NULL;
    int64_t C = x->shape.d[0], D = x->shape.d[1], H2 = y->shape.d[1], W2 = y->shape.d[2];
    const Window *wd = &z->win, *wp = &y->win;
    bool shapes = shape_eq(p->shape, shape_of(3, C * D, x->shape.d[2], x->shape.d[3])) &&
                  y->shape.d[0] == C * D && shape_eq(r->shape, shape_of(3, C, D, H2 * W2)) &&
                  shape_eq(z->shape, shape_of(3, C, z->shape.d[1], H2 * W2)) &&
                  shape_eq(t->shape, shape_of(4, C, z->shape.d[1], H2, W2));
    bool depth_only = wd->kw == 1 && wd->sw == 1 && wd->pl == 0 && wd->pr == 0 && wd->dw == 1 && wd->cr == 0;
    bool alike = wd->ceil == wp->ceil && wd->count_pad == wp->count_pad;
    return shapes && depth_only && alike ? x : NULL;
}

/* ---- names --------------------------------------------------------------- */

static bool identifier(const char *s)
{
    if (!s || !(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')) || !strcmp(s, "_"))
        return false;
    for (const char *c = s; *c; c++)
        if (!(*c == '_' || (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9')))
            return false;
    return true;
}

/* Words a value may not be called: keywords, layers, functions, losses,
 * initializers, and the words the language gives a meaning in arguments. */
static bool reserved(const char *s)
{
    static const char *const words[] = {
        "network", "input", "labels", "target", "param", "output", "block", "loss", "train", "data",
        "max", "min", "exp", "log", "sqrt", "abs", "tanh", "sigmoid", "relu", "sum", "mean",
        "softmax_cross_entropy", "svm_hinge", "mse", "l2", "l1", "zeros", "ones", "constant", "uniform",
        "normal", "he", "xavier", "weights", "true", "false", "same", "class", NULL,
    };
    for (int i = 0; words[i]; i++)
        if (strcmp(words[i], s) == 0)
            return true;
    return layer_find(s) != NULL;
}

static bool free_name(U *u, const char *s)
{
    return identifier(s) && !reserved(s) && !map_get(&u->taken, s);
}

static const char *take(U *u, const char *s)
{
    map_put(&u->taken, s, (void *)s);
    return s;
}

/* `want` if it is free, else want1, want2, ... */
static const char *fresh(U *u, const char *want)
{
    if (free_name(u, want))
        return take(u, want);
    for (int k = 1;; k++) {
        const char *s = arena_printf("%s%d", want, k);
        if (free_name(u, s))
            return take(u, s);
    }
}

/* ---- uses and the names they force ---------------------------------------- */

static void count_uses(U *u)
{
    const Graph *g = u->g;
    for (int i = 0; i < u->n; i++) {
        const Node *t = g->nodes.at[i];
        for (int j = 0; j < t->nin; j++)
            u->uses[t->in[j]->id]++;
    }
    u->uses[g->output->id]++;
    u->forced[g->output->id] = true;
    for (int i = 1; i < g->noutputs; i++) {
        u->uses[g->outputs[i]->id]++;
        u->forced[g->outputs[i]->id] = true;
    }
    for (int i = 0; i < g->nloss; i++)
        if (g->loss[i].f) {
            u->uses[g->loss[i].f->id]++;
            u->forced[g->loss[i].f->id] = true;
        }
    for (int i = 0; i < u->n; i++) {
        const Node *t = g->nodes.at[i];
        if (!is_leaf(t->op) && u->uses[i] == 0)
            u->forced[i] = true;          /* made for nothing: its statement still binds it */
    }
}

/* A layer's parameters are made by the layer; any other parameter is
 * explicit. A layer parameter used elsewhere too cannot be written. */
static bool layer_param(const U *u, const Node *p)
{
    for (int i = 0; i < u->n; i++) {
        const Node *t = u->g->nodes.at[i];
        if (t->op == OP_DENSE || t->op == OP_CONV || t->op == OP_BATCHNORM)
            for (int j = 1; j < t->nin; j++)
                if (t->in[j] == p)
                    return true;
    }
    return false;
}

/* The labels of values the source program bound (`-> h`, `h = ...`) are kept
 * as their names, so the program reads as it was written. */
static void keep_labels(U *u)
{
    for (int i = 0; i < u->n; i++) {
        const Node *t = u->g->nodes.at[i];
        bool layer = t->op == OP_DENSE || t->op == OP_CONV || t->op == OP_BATCHNORM;
        if (is_leaf(t->op) || layer || !t->label || !free_name(u, t->label))
            continue;
        u->forced[i] = true;
        u->name[i] = take(u, t->label);
    }
}

/* ---- expressions ----------------------------------------------------------- */

/* Plans the expression of maths node t: which maths operands it writes
 * inline (u->inl), the values it reads that a stage must feed it (front: at
 * most one can be the stage's `_`), the nodes it makes in the order the
 * expression makes them (made), and the last named value it reads (*ref). */
static void plan(U *u, Node *t, Vec *front, Vec *made, int *ref);

static void plan_with(U *u, Node *t, Vec *front, Vec *made, int *ref, bool inline_ok)
{
    for (int i = 0; i < t->nin; i++) {
        Node *m = t->in[i];
        if (m->op == OP_CONST) {
            vec_push(made, m);
        } else if (steppable(u, m) && is_maths(m->op) && !u->composite[m->id] && !u->shared[m->id] && inline_ok) {
            plan(u, m, front, made, ref);
            u->inl[m->id] = true;
        } else if (steppable(u, m)) {
            bool seen = false;
            for (int k = 0; k < front->n; k++)
                seen |= front->at[k] == m;
            if (!seen)
                vec_push(front, m);
        } else if (m->id > *ref) {
            *ref = m->id;
        }
    }
    vec_push(made, t);
}

static bool ascending(const Vec *made, int from)
{
    for (int i = from + 1; i < made->n; i++)
        if (((Node *)made->at[i])->id <= ((Node *)made->at[i - 1])->id)
            return false;
    return true;
}

static void plan(U *u, Node *t, Vec *front, Vec *made, int *ref)
{
    int f0 = front->n, m0 = made->n, r0 = *ref;
    plan_with(u, t, front, made, ref, true);
    if (ascending(made, m0))
        return;
    for (int i = m0; i < made->n; i++)                  /* inlining would reorder: one operator */
        u->inl[((Node *)made->at[i])->id] = false;
    front->n = f0, made->n = m0, *ref = r0;
    plan_with(u, t, front, made, ref, false);
}

/* A stage's expression: relu, tanh and sigmoid as a stage are the layers,
 * which take `_` alone. */
static void plan_stage(U *u, Node *t, Vec *front, Vec *made, int *ref)
{
    if (t->op == OP_RELU || t->op == OP_TANH || t->op == OP_SIGMOID)
        plan_with(u, t, front, made, ref, false);
    else
        plan(u, t, front, made, ref);
}

/* Precedence, loosest first: + -, * /, @, unary -, atoms. */
enum { P_ADD = 1, P_MUL, P_AT, P_NEG, P_ATOM };
typedef struct { const char *s; int prec; } Ex;

/* The shortest decimal that reads back as the float v. */
static const char *num_f(float v)
{
    for (int digits = 1; digits < 9; digits++) {
        const char *s = arena_printf("%.*g", digits, (double)v);
        if ((float)strtod(s, NULL) == v)
            return s;
    }
    return arena_printf("%.9g", (double)v);
}

/* The shortest decimal that reads back as the double v. */
static const char *num_d(double v)
{
    for (int digits = 1; digits < 17; digits++) {
        const char *s = arena_printf("%.*g", digits, v);
        if (strtod(s, NULL) == v)
            return s;
    }
    return arena_printf("%.17g", v);
}

static Ex ex(U *u, const Node *t, const Node *tip);

static Ex operand(U *u, const Node *m, const Node *tip)
{
    if (m == tip)
        return (Ex){"_", P_ATOM};
    if (m->op == OP_CONST) {
        if (!isfinite(m->value))
            fail(u, m, "a constant that is not a finite number");
        const char *s = num_f(m->value);
        return (Ex){s, s[0] == '-' ? P_NEG : P_ATOM};
    }
    if (m->op == OP_PARAM)
        return (Ex){u->g->params[m->param].name, P_ATOM};
    if (u->inl[m->id])
        return ex(u, m, tip);
    if (!u->name[m->id])
        internal_error("unparse: node %d reads unnamed node %d", tip ? tip->id : -1, m->id);
    return (Ex){u->name[m->id], P_ATOM};
}

static const char *paren(Ex e, bool need)
{
    return need ? arena_printf("(%s)", e.s) : e.s;
}

/* a op b, left-associative at precedence p */
static Ex infix(Ex a, const char *op, Ex b, int p)
{
    return (Ex){arena_printf("%s %s %s", paren(a, a.prec < p), op, paren(b, b.prec <= p)), p};
}

static Ex ex(U *u, const Node *t, const Node *tip)
{
    Ex a = operand(u, t->in[0], tip), b = t->nin > 1 ? operand(u, t->in[1], tip) : (Ex){0};
    switch (t->op) {
    case OP_ADD:    return infix(a, "+", b, P_ADD);
    case OP_SUB:    return infix(a, "-", b, P_ADD);
    case OP_MUL:    return infix(a, "*", b, P_MUL);
    case OP_DIV:    return infix(a, "/", b, P_MUL);
    case OP_MATMUL: return infix(a, "@", b, P_AT);
    case OP_NEG:    return (Ex){arena_printf("-%s", paren(a, a.prec < P_NEG)), P_NEG};
    case OP_MAX: case OP_MIN:
        return (Ex){arena_printf("%s(%s, %s)", op_name(t->op), a.s, b.s), P_ATOM};
    default:        /* relu, tanh, sigmoid, exp, log, sqrt, abs, sum, mean */
        return (Ex){arena_printf("%s(%s)", op_name(t->op), a.s), P_ATOM};
    }
}

/* The batched values a head expression reads by name (not inline), at most two. */
static int named_leaves(U *u, const Node *t, const Node **out, int k)
{
    for (int i = 0; i < t->nin; i++) {
        const Node *m = t->in[i];
        if (u->inl[m->id]) {
            k = named_leaves(u, m, out, k);
        } else if (m->batched && m->op != OP_CONST) {
            if (k == 0 || (out[0] != m && k < 2))
                out[k++] = m;
            else if (out[0] != m)
                k = 3;
        }
    }
    return k;
}

/* ---- chains --------------------------------------------------------------- */

/* Walks back from t along the stages that make it, pushing each stage's node
 * (last first) onto stages, to `stop` when given. Returns the value the chain
 * starts from (named, or stop), or NULL when its first stage is an
 * expression of named values. */
static Node *walk_back(U *u, Node *t, Vec *stages, Span *sp);

static Node *walk(U *u, Node *t, const Node *stop, Vec *stages, Span *sp)
{
    const Node *outer = u->stop;
    u->stop = stop;
    Node *from = walk_back(u, t, stages, sp);
    u->stop = outer;
    return from;
}

static Node *walk_back(U *u, Node *t, Vec *stages, Span *sp)
{
    *sp = (Span){t->id, t->id, -1};
    for (;;) {
        if (stages)
            vec_push(stages, t);
        if (t->id < sp->lo)
            sp->lo = t->id;
        Node *d;
        if (u->composite[t->id]) {
            d = u->source[t->id];
            if (u->cmin[t->id] < sp->lo)
                sp->lo = u->cmin[t->id];
            if (u->cref[t->id] > sp->ref)
                sp->ref = u->cref[t->id];
        } else if (t->op == OP_CONCAT) {
            fail(u, t, "a concat whose branches do not all start from one value");
            return NULL;
        } else if ((d = pool3d_from(u, t))) {      /* its first node: the reshape of d */
            int first = t->in[0]->in[0]->in[0]->in[0]->id;
            if (first < sp->lo)
                sp->lo = first;
        } else if (is_layer(t->op)) {
            d = t->in[0];
        } else if (is_maths(t->op)) {
            Vec front = {0}, made = {0};
            plan_stage(u, t, &front, &made, &sp->ref);
            for (int i = 0; i < made.n; i++)
                if (((Node *)made.at[i])->id < sp->lo)
                    sp->lo = ((Node *)made.at[i])->id;
            for (int i = 0; i + 1 < front.n; i++) {     /* a join: all but one operand get names */
                u->forced[((Node *)front.at[i])->id] = true;
                u->retry = true;
            }
            const Node *leaves[3];
            if (front.n == 0 && named_leaves(u, t, leaves, 0) == 1)
                d = (Node *)leaves[0];     /* `x -> W @ _ + b` rather than `W @ x + b` */
            else if (front.n == 0)
                return NULL;
            else
                d = front.at[front.n - 1];
        } else {
            fail(u, t, arena_printf("the operator '%s', which the language has no way to write", op_name(t->op)));
            return NULL;
        }
        if (!steppable(u, d)) {
            if (d->id > sp->ref)
                sp->ref = d->id;
            return d;
        }
        t = d;
    }
}

/* concat(b1, b2, ...): every branch a chain from one value S (or S itself,
 * `_`), each branch's nodes made after the one before's. */
static void try_concat(U *u, Node *c)
{
    Node *s = NULL;
    int prev = -1, lo = c->id, ref = -1;
    for (int i = 0; i < c->nin; i++) {
        Node *b = c->in[i], *from = b;
        if (steppable(u, b)) {
            Span sp;
            from = walk(u, b, NULL, NULL, &sp);
            if (!from || sp.lo <= prev)
                return;
            prev = sp.hi;
            lo = sp.lo < lo ? sp.lo : lo;
            ref = sp.ref > ref ? sp.ref : ref;
        }
        if (i && from != s)
            return;
        s = from;
    }
    u->composite[c->id] = true, u->source[c->id] = s, u->cmin[c->id] = lo, u->cref[c->id] = ref;
    u->absorbed[s->id] += c->nin - 1;
}

/* residual(branch): add(x, branch(x)); residual(branch, shortcut = sc):
 * add(sc(x), branch(x)) with the branch's nodes made before the shortcut's.
 * Both need equal shapes, as the layer does. */
static void try_residual(U *u, Node *t)
{
    Node *a = t->in[0], *b = t->in[1];
    if (a == b || !a->batched || !b->batched || !shape_eq(a->shape, b->shape) || !shape_eq(a->shape, t->shape) ||
        !steppable(u, b))
        return;
    Span sb, sa;
    Node *from = walk(u, b, NULL, NULL, &sb);
    if (!from)
        return;
    if (from != a) {
        if (!steppable(u, a) || walk(u, a, NULL, NULL, &sa) != from || sb.hi >= sa.lo)
            return;
        sb.ref = sa.ref > sb.ref ? sa.ref : sb.ref;
    }
    u->composite[t->id] = true, u->source[t->id] = from, u->cmin[t->id] = sb.lo, u->cref[t->id] = sb.ref;
    u->absorbed[from->id]++;
}

/* A value that one maths stage reads several times and nothing else reads
 * is that stage's `_`, every time: `x -> _ * sigmoid(_)`. */
static void try_shared(U *u, Node *t)
{
    Vec front = {0}, made = {0};
    int ref = -1;
    plan_stage(u, t, &front, &made, &ref);
    for (int i = 0; i < made.n; i++) {
        const Node *m = made.at[i];
        for (int j = 0; j < m->nin; j++) {
            Node *o = m->in[j];
            if (is_leaf(o->op) || u->inl[o->id] || u->forced[o->id] || o->id >= u->n)
                continue;
            int k = 0;
            for (int a = 0; a < made.n; a++)
                for (int b = 0; b < ((Node *)made.at[a])->nin; b++)
                    k += ((Node *)made.at[a])->in[b] == o;
            if (k >= 2 && u->uses[o->id] - u->absorbed[o->id] == k) {
                u->absorbed[o->id] += k - 1;
                u->shared[o->id] = true;
            }
        }
    }
}

/* Finds the composites and the names, again while a join needs more names. */
static void analyse(U *u)
{
    size_t n = (size_t)u->n;
    for (int round = 0; round <= u->n && !u->err; round++) {
        memset(u->absorbed, 0, n * sizeof(int));
        memset(u->composite, 0, n * sizeof(bool));
        memset(u->inl, 0, n * sizeof(bool));
        memset(u->shared, 0, n * sizeof(bool));
        u->retry = false;
        for (int i = 0; i < u->n; i++) {
            Node *t = u->g->nodes.at[i];
            if (t->op == OP_CONCAT)
                try_concat(u, t);
            else if (t->op == OP_ADD)
                try_residual(u, t);
            if (is_maths(t->op) && !u->composite[t->id])
                try_shared(u, t);
        }
        for (int i = 0; i < u->n; i++) {
            Node *t = u->g->nodes.at[i];
            Span sp;
            if (!is_leaf(t->op) && named(u, t))
                walk(u, t, NULL, NULL, &sp);
        }
        if (!u->retry)
            return;
    }
}

/* ---- layers --------------------------------------------------------------- */

/* "K" when square, else "HxW" */
static const char *size2(int h, int w)
{
    return h == w ? arena_printf("%d", h) : arena_printf("%dx%d", h, w);
}

static const char *init_str(const Param *p)
{
    switch (p->init) {
    case INIT_ZEROS:    return "zeros";
    case INIT_ONES:     return "ones";
    case INIT_CONSTANT: return arena_printf("constant(%s)", num_f(p->a));
    case INIT_UNIFORM:  return arena_printf("uniform(%s, %s)", num_f(p->a), num_f(p->b));
    case INIT_NORMAL:   return arena_printf("normal(%s, %s)", num_f(p->a), num_f(p->b));
    case INIT_HE:       return "he";
    case INIT_XAVIER:   return "xavier";
    case INIT_DATA:     return NULL;
    }
    return NULL;
}

static const Param *param_of(const U *u, const Node *t, int i)
{
    return i < t->nin && t->in[i]->op == OP_PARAM ? &u->g->params[t->in[i]->param] : NULL;
}

static bool ends_with(const char *s, const char *suffix, size_t *stem)
{
    size_t n = strlen(s), k = strlen(suffix);
    *stem = n - k;
    return n > k && strcmp(s + n - k, suffix) == 0;
}

/* The parameters' prefix of a dense, conv or batchnorm layer, as an argument:
 * "" when the language's count gives it, `, name = "..."` otherwise. */
static const char *prefix_arg(U *u, const Node *t, const char *kind)
{
    static const char *const suffixes[] = {".weight", ".bias", ".running_mean", ".running_var"};
    const Param *w = param_of(u, t, 1);
    size_t stem;
    if (!w || !ends_with(w->name, ".weight", &stem)) {
        fail(u, t, arena_printf("a %s layer whose weight is not named PREFIX.weight", kind));
        return "";
    }
    const char *pre = arena_strndup(w->name, stem);
    for (int i = 2; i < t->nin; i++) {
        const Param *p = param_of(u, t, i);
        if (!p || strcmp(p->name, arena_printf("%s%s", pre, suffixes[i - 1])) != 0)
            fail(u, t, arena_printf("a %s layer whose parameters are not named %s.weight, %s%s, ...", kind, pre, pre,
                                    suffixes[i - 1]));
    }
    if (strcmp(pre, arena_printf("%s%d", kind, u->count[t->op] + 1)) == 0) {
        u->count[t->op]++;
        return "";
    }
    if (!*pre || strlen(pre) > 63 || strpbrk(pre, "\"\\ \t\n\r"))
        fail(u, t, arena_printf("a %s layer whose parameters' prefix '%s' is no name the language takes", kind, pre));
    return arena_printf(", name = \"%s\"", pre);
}

/* , init = ..., bias_init = ... where they are not the defaults */
static const char *inits(const U *u, const Node *t)
{
    const Param *w = param_of(u, t, 1), *b = param_of(u, t, 2);
    const char *s = "";
    if (w && w->init != INIT_HE && w->init != INIT_DATA)
        s = arena_printf(", init = %s", init_str(w));
    if (b && b->init != INIT_ZEROS && b->init != INIT_DATA)
        s = arena_printf("%s, bias_init = %s", s, init_str(b));
    return s;
}

/* pad = ... of a window: symmetric, or `same` at stride 1; declared
 * bottom and right (pooling's ceil mode extends pb and pr past them). */
static const char *pad_arg(U *u, const Node *t, const Window *w, int pb, int pr)
{
    if (w->pt == pb && w->pl == pr)
        return w->pt || w->pl ? arena_printf(", pad = %s", size2(w->pt, w->pl)) : "";
    int eh = (w->kh - 1) * w->dh + 1, ew = (w->kw - 1) * w->dw + 1;
    if (w->sh == 1 && w->sw == 1 && w->pt == (eh - 1) / 2 && pb == eh - 1 - w->pt && w->pl == (ew - 1) / 2 &&
        pr == ew - 1 - w->pl)
        return ", pad = same";
    fail(u, t, arena_printf("padding %d, %d, %d, %d (top, left, bottom, right), which is neither symmetric nor "
                            "`same`", w->pt, w->pl, pb, pr));
    return "";
}

static const char *conv_str(U *u, const Node *t)
{
    const Window *w = &t->win;
    const char *s = arena_printf("conv(%lld, %dx%d", (long long)t->shape.d[0], w->kh, w->kw);
    if (w->sh != 1 || w->sw != 1)
        s = arena_printf("%s, stride = %s", s, size2(w->sh, w->sw));
    s = arena_printf("%s%s", s, pad_arg(u, t, w, w->pb, w->pr));
    if (w->groups != 1)
        s = arena_printf("%s, groups = %d", s, w->groups);
    if (w->dh != 1 || w->dw != 1)
        s = arena_printf("%s, dilation = %s", s, size2(w->dh, w->dw));
    if (t->nin == 2)
        s = arena_printf("%s, bias = false", s);
    return arena_printf("%s%s%s)", s, inits(u, t), prefix_arg(u, t, "conv"));
}

static const char *pool_str(U *u, const Node *t)
{
    const Window *w = &t->win;
    const char *s = arena_printf("%s(%s", op_name(t->op), size2(w->kh, w->kw));
    if (w->sh != w->kh || w->sw != w->kw)
        s = arena_printf("%s, stride = %s", s, size2(w->sh, w->sw));
    const char *why;
    Shape xs = t->in[0]->shape;
    if (!layer_pool_pads_ok(xs.d[1], w->pt, w->cb, w->kh, w->dh, &why) ||
        !layer_pool_pads_ok(xs.d[2], w->pl, w->cr, w->kw, w->dw, &why))
        fail(u, t, "pooling whose padding the language refuses");
    s = arena_printf("%s%s", s, pad_arg(u, t, w, w->cb, w->cr));
    if (w->dh != 1 || w->dw != 1)
        s = arena_printf("%s, dilation = %s", s, size2(w->dh, w->dw));
    if (w->ceil)
        s = arena_printf("%s, ceil = true", s);
    if (w->count_pad)
        s = arena_printf("%s, count_pad = true", s);
    return arena_printf("%s)", s);
}

/* K when the three are equal, else DxHxW */
static const char *size3(const int *v)
{
    return v[0] == v[1] && v[1] == v[2] ? arena_printf("%d", v[0]) : arena_printf("%dx%dx%d", v[0], v[1], v[2]);
}

/* maxpool, avgpool of a volume (pool3d_from): the depth's window wd and
 * the planes' wp as one of DxHxW (each axis's padding symmetric, or all
 * `same`) */
static const char *pool3d_str(U *u, const Node *t)
{
    const Window *wd = &t->in[0]->win, *wp = &t->in[0]->in[0]->in[0]->win;
    int k[3] = {wd->kh, wp->kh, wp->kw}, s[3] = {wd->sh, wp->sh, wp->sw}, dl[3] = {wd->dh, wp->dh, wp->dw};
    int pf[3] = {wd->pt, wp->pt, wp->pl}, pk[3] = {wd->cb, wp->cb, wp->cr};
    const char *str = arena_printf("%s(%s", op_name(t->in[0]->op), size3(k));
    if (s[0] != k[0] || s[1] != k[1] || s[2] != k[2])
        str = arena_printf("%s, stride = %s", str, size3(s));
    bool sym = pf[0] == pk[0] && pf[1] == pk[1] && pf[2] == pk[2], same = s[0] == 1 && s[1] == 1 && s[2] == 1;
    for (int i = 0; i < 3; i++) {
        int span = (k[i] - 1) * dl[i] + 1;
        same = same && pf[i] == (span - 1) / 2 && pk[i] == span - 1 - pf[i];
    }
    if (sym && (pf[0] || pf[1] || pf[2]))
        str = arena_printf("%s, pad = %s", str, size3(pf));
    else if (!sym && same)
        str = arena_printf("%s, pad = same", str);
    else if (!sym)
        fail(u, t, arena_printf("3-D pooling with padding %d, %d, %d before and %d, %d, %d after (depth, height, "
                                "width), which is neither symmetric nor `same`", pf[0], pf[1], pf[2], pk[0], pk[1],
                                pk[2]));
    if (dl[0] != 1 || dl[1] != 1 || dl[2] != 1)
        str = arena_printf("%s, dilation = %s", str, size3(dl));
    if (wd->ceil)
        str = arena_printf("%s, ceil = true", str);
    if (wd->count_pad)
        str = arena_printf("%s, count_pad = true", str);
    return arena_printf("%s)", str);
}

static const char *batchnorm_str(U *u, const Node *t)
{
    const char *s = "";
    if (t->momentum != 0.1f)
        s = arena_printf("%s, momentum = %s", s, num_f(t->momentum));
    if (t->alpha != 1e-5f)
        s = arena_printf("%s, eps = %s", s, num_f(t->alpha));
    s = arena_printf("%s%s", s, prefix_arg(u, t, "batchnorm"));
    return *s ? arena_printf("batchnorm(%s)", s + 2) : "batchnorm";
}

static const char *lrn_str(const Node *t)
{
    const char *s = t->win.kh != 5 ? arena_printf(", %d", t->win.kh) : "";
    if (t->alpha != 1e-4f)
        s = arena_printf("%s, alpha = %s", s, num_f(t->alpha));
    if (t->beta != 0.75f)
        s = arena_printf("%s, beta = %s", s, num_f(t->beta));
    if (t->k != 2.0f)
        s = arena_printf("%s, k = %s", s, num_f(t->k));
    return *s ? arena_printf("lrn(%s)", s + 2) : "lrn";
}

static const char *layer_str(U *u, const Node *t)
{
    switch (t->op) {
    case OP_DENSE:
        return arena_printf("dense(%lld%s%s%s)", (long long)t->shape.d[0], t->nin == 2 ? ", bias = false" : "",
                            inits(u, t), prefix_arg(u, t, "dense"));
    case OP_CONV:      return conv_str(u, t);
    case OP_MAXPOOL: case OP_AVGPOOL: return pool_str(u, t);
    case OP_BATCHNORM: return batchnorm_str(u, t);
    case OP_LRN:       return lrn_str(t);
    case OP_DROPOUT:   return arena_printf("dropout(%s)", num_f(t->alpha));
    case OP_LEAKY:     return t->alpha == 0.01f ? "leaky_relu" : arena_printf("leaky_relu(%s)", num_f(t->alpha));
    case OP_CLIP:
        return t->alpha == 0 && t->beta == 6 ? "relu6" : arena_printf("clip(%s, %s)", num_f(t->alpha), num_f(t->beta));
    case OP_SOFTMAX:
        return t->shape.rank == 1 ? "softmax" : arena_printf("softmax(axis = %d)", t->axis);
    case OP_FLATTEN: {
        if (t->shape.rank == 1)
            return "flatten";
        const char *s = arena_printf("reshape(%lld", (long long)t->shape.d[0]);
        for (int i = 1; i < t->shape.rank; i++)
            s = arena_printf("%s, %lld", s, (long long)t->shape.d[i]);
        return arena_printf("%s)", s);
    }
    default:           return op_name(t->op);   /* global_avgpool, l1norm, l2norm, transpose */
    }
}

/* ---- statements ----------------------------------------------------------- */

/* A growing text in the arena. */
typedef struct { char *s; size_t n, cap; } Text;

static void put(Text *t, const char *s)
{
    size_t k = strlen(s);
    if (t->n + k + 1 > t->cap) {
        size_t cap = 2 * (t->n + k + 1) + 256;
        char *grown = arena_alloc(cap);
        if (t->n)
            memcpy(grown, t->s, t->n);
        t->s = grown, t->cap = cap;
    }
    memcpy(t->s + t->n, s, k + 1);
    t->n += k;
}

/* The column at which the next character of t goes; t's first line starts at column base. */
static size_t column(const Text *t, size_t base)
{
    size_t k = t->n;
    while (k && t->s[k - 1] != '\n')
        k--;
    return k ? t->n - k : base + t->n;
}

enum { WIDTH = 96 };

static const char *stage_str(U *u, const Node *t, const Node *tip, size_t col);

/* The stages of a chain (stages: last first) from tip, joined by arrows. The
 * text starts at column base; a line that would pass the width continues on
 * the next, `indent` spaces in, with the arrow first; a residual or concat
 * starts a line of its own (but right after the head) and ends it. Returns
 * whether the last stage ended a block. */
static bool chain(U *u, Text *out, Vec *stages, const Node *tip, size_t base, size_t indent)
{
    bool after_block = false;
    for (int i = stages->n - 1; i >= 0; i--) {
        const Node *t = stages->at[i];
        size_t col = column(out, base);
        bool block = u->composite[t->id], brk = false;
        const char *s = block ? NULL : stage_str(u, t, tip, 0);
        if (out->n && block)
            brk = after_block || col > indent + 4;
        else if (out->n)
            brk = after_block || (col + 4 + strcspn(s, "\n") > WIDTH && col > indent + 4);
        if (brk)
            put(out, arena_printf("\n%*s-> ", (int)indent, ""));
        else if (out->n)
            put(out, " -> ");
        if (block)
            s = stage_str(u, t, tip, column(out, base));
        put(out, s);
        after_block = strchr(s, '\n') != NULL;
        tip = t;
    }
    return after_block;
}

/* A branch of a composite starting at column col: the chain from `from` to b, or `_`. */
static const char *branch(U *u, Node *b, const Node *from, size_t col)
{
    if (b == from)
        return "_";
    Vec st = {0};
    Span sp;
    if (walk(u, b, from, &st, &sp) != from)
        internal_error("unparse: branch %d does not start from node %d", b->id, from->id);
    Text t = {0};
    chain(u, &t, &st, from, col, col + 2);
    return t.s;
}

/*   residual(branch stages            concat(branch,
 *              -> more stages,               branch
 *            shortcut = stages)                -> more stages) */
static const char *composite_str(U *u, const Node *t, size_t col)
{
    Node *from = u->source[t->id];
    if (t->op == OP_ADD) {
        size_t at = col + strlen("residual(");
        const char *br = branch(u, t->in[1], from, at);
        if (t->in[0] == from)
            return arena_printf("residual(%s)", br);
        return arena_printf("residual(%s,\n%*sshortcut = %s)", br, (int)at, "",
                            branch(u, t->in[0], from, at + strlen("shortcut = ")));
    }
    size_t at = col + strlen("concat(");
    Text s = {0};
    put(&s, "concat(");
    for (int i = 0; i < t->nin; i++) {
        if (i)
            put(&s, arena_printf(",\n%*s", (int)at, ""));
        put(&s, branch(u, t->in[i], from, at));
    }
    if (t->axis != 0 || (t->shape.rank != 1 && t->shape.rank != 3))   /* the default joins channels or vectors */
        put(&s, arena_printf(",\n%*saxis = %d", (int)at, "", t->axis));
    put(&s, ")");
    return s.s;
}

static const char *stage_str(U *u, const Node *t, const Node *tip, size_t col)
{
    if (u->composite[t->id])
        return composite_str(u, t, col);
    if (pool3d_from(u, t))
        return pool3d_str(u, t);
    if (is_layer(t->op))
        return layer_str(u, t);
    const char *e = ex(u, t, tip).s;
    const char *bare = t->op == OP_RELU ? "relu(_)" : t->op == OP_TANH ? "tanh(_)" : t->op == OP_SIGMOID ? "sigmoid(_)" : NULL;
    return bare && strcmp(e, bare) == 0 ? op_name(t->op) : e;
}

/* One statement, bound to t's name:
 *   SOURCE -> stages -> NAME             (lecture style)
 *   NAME = EXPR -> stages                an expression of several values first */
static void statement(U *u, Text *out, Node *t)
{
    Vec st = {0};
    Span sp;
    const Node *from = walk(u, t, NULL, &st, &sp);
    Text s = {0};
    if (from) {
        put(&s, u->name[from->id]);
        bool block = chain(u, &s, &st, from, 0, 2);
        put(&s, block || column(&s, 0) + 4 + strlen(u->name[t->id]) > WIDTH ? "\n  -> " : " -> ");
        put(&s, u->name[t->id]);
    } else {
        put(&s, arena_printf("%s = ", u->name[t->id]));
        Node *head = st.at[--st.n];
        put(&s, ex(u, head, NULL).s);
        chain(u, &s, &st, head, 0, 2);
    }
    put(out, s.s);
    put(out, "\n");
}

/* ---- declarations, loss, settings ---------------------------------------------- */

static const char *shape_list(Shape s)
{
    return shape_str(s);      /* "[1, 28, 28]" is the language's shape */
}

static void explicit_param(U *u, Text *out, const Node *p)
{
    const Param *q = &u->g->params[p->param];
    if (!identifier(q->name) || reserved(q->name))
        fail(u, p, arena_printf("a parameter named '%s', which is no name the language takes", q->name));
    const char *init = init_str(q);
    put(out, arena_printf("param %s : %s%s%s\n", q->name, shape_list(q->shape), init ? " = " : "", init ? init : ""));
}

static const char *quoted(const char *s)
{
    Text t = {0};
    put(&t, "\"");
    for (const char *c = s; *c; c++)
        put(&t, *c == '"' ? "\\\"" : *c == '\\' ? "\\\\" : (char[]){*c, 0});
    put(&t, "\"");
    return t.s;
}

static const char *const loss_names[] = {"softmax_cross_entropy", "svm_hinge", "mse", "l2", "l1"};

static const char *loss_term(U *u, const LossTerm *t, const char *labels)
{
    const Graph *g = u->g;
    if (t->kind == LOSS_SOFTMAX_CE || t->kind == LOSS_MSE)
        return arena_printf("%s(%s, %s)", loss_names[t->kind], u->name[t->f->id], labels);
    if (t->kind == LOSS_SVM_HINGE)
        return arena_printf("svm_hinge(%s, %s%s)", u->name[t->f->id], labels,
                            t->margin != 1.0f ? arena_printf(", margin = %s", num_f(t->margin)) : "");
    int nw = 0, k = 0;
    for (int i = 0; i < g->nparams; i++)
        nw += g->params[i].is_weight;
    bool all = t->nparams == nw;
    for (int i = 0; all && i < g->nparams; i++)
        if (g->params[i].is_weight && (k >= t->nparams || t->params[k++] != i))
            all = false;
    if (all)
        return arena_printf("%s(weights)", loss_names[t->kind]);
    const char *s = "";
    for (int i = 0; i < t->nparams; i++) {
        const Param *p = &g->params[t->params[i]];
        if (!identifier(p->name))
            fail(u, NULL, arena_printf("%s regularizes the layer parameter '%s' alone, which the language cannot name",
                                       loss_names[t->kind], p->name));
        s = arena_printf("%s%s%s", s, i ? ", " : "", p->name);
    }
    return arena_printf("%s(%s)", loss_names[t->kind], s);
}

static void loss(U *u, Text *out, const char *labels)
{
    const Graph *g = u->g;
    if (!g->has_loss || !g->nloss)
        return;
    put(out, "loss =");
    for (int i = 0; i < g->nloss; i++) {
        const LossTerm *t = &g->loss[i];
        float c = t->coef < 0 ? -t->coef : t->coef;
        const char *term = loss_term(u, t, labels);
        put(out, arena_printf("%s%s%s%s", i == 0 ? (t->coef < 0 ? " -" : " ") : t->coef < 0 ? " - " : " + ",
                              c != 1.0f ? num_f(c) : "", c != 1.0f ? " * " : "", term));
    }
    put(out, "\n");
}

static const char *schedule(const TrainCfg *t)
{
    switch (t->schedule) {
    case SCHED_CONSTANT: return "constant";
    case SCHED_COSINE:   return "cosine";
    case SCHED_STEP:     return arena_printf("step(every = %d, factor = %s)", t->step_every, num_d(t->step_factor));
    case SCHED_EXP:      return arena_printf("exp(gamma = %s)", num_d(t->exp_gamma));
    }
    return "constant";
}

/* train { } with the settings that are not the defaults (none: no block) */
static void train_block(U *u, Text *out)
{
    Graph d = {0};
    settings_defaults(&d);
    const TrainCfg *t = &u->g->train, *z = &d.train;
    const char *s = "";
    if (t->lr != z->lr || t->momentum != z->momentum || t->nesterov)
        s = arena_printf("%s  optimizer = sgd(lr = %s, momentum = %s%s)\n", s, num_d(t->lr), num_d(t->momentum),
                         t->nesterov ? ", nesterov = true" : "");
    if (t->weight_decay != z->weight_decay)
        s = arena_printf("%s  weight_decay = %s\n", s, num_d(t->weight_decay));
    if (t->batch != z->batch)
        s = arena_printf("%s  batch = %d\n", s, t->batch);
    if (t->epochs != z->epochs)
        s = arena_printf("%s  epochs = %d\n", s, t->epochs);
    if (t->schedule != SCHED_CONSTANT)
        s = arena_printf("%s  schedule = %s\n", s, schedule(t));
    if (t->seed != z->seed)
        s = arena_printf("%s  seed = %llu\n", s, (unsigned long long)t->seed);
    if (*s)
        put(out, arena_printf("train {\n%s}\n", s));
}

static const char *dataset(U *u, const DataSet *d)
{
    if (d->kind == DATA_IDX)
        return arena_printf("idx(%s, %s)", quoted(d->path), quoted(d->labels));
    return arena_printf("csv(%s%s)", quoted(d->path), d->label_col ? arena_printf(", label = %d", d->label_col) : "");
}

static const char *per_channel(const double v[3])
{
    if (v[0] == v[1] && v[1] == v[2])
        return num_d(v[0]);
    return arena_printf("[%s, %s, %s]", num_d(v[0]), num_d(v[1]), num_d(v[2]));
}

/* data { } as the graph holds it; the class names are in the file `classes` */
static void data_block(U *u, Text *out, const char *classes)
{
    const DataCfg *d = &u->g->data;
    const char *s = "";
    if (d->train.kind != DATA_NONE)
        s = arena_printf("%s  train = %s\n", s, dataset(u, &d->train));
    if (d->test.kind != DATA_NONE)
        s = arena_printf("%s  test = %s\n", s, dataset(u, &d->test));
    if (d->scale != 0)
        s = arena_printf("%s  scale = %s\n", s, num_d(d->scale));
    if (d->resize)
        s = arena_printf("%s  resize = %d\n", s, d->resize);
    if (d->crop)
        s = arena_printf("%s  crop = %d\n", s, d->crop);
    int c = u->g->input->shape.rank == 3 ? (int)u->g->input->shape.d[0] : 1;
    bool one_mean = d->mean[0] == d->mean[1] && d->mean[1] == d->mean[2];
    bool one_std = d->std[0] == d->std[1] && d->std[1] == d->std[2];
    if (!(one_mean && d->mean[0] == 0))
        s = arena_printf("%s  mean = %s\n", s, c == 3 || one_mean ? per_channel(d->mean) : num_d(d->mean[0]));
    if (!(one_std && d->std[0] == 1))
        s = arena_printf("%s  std = %s\n", s, c == 3 || one_std ? per_channel(d->std) : num_d(d->std[0]));
    if (d->classes && classes)
        s = arena_printf("%s  classes = %s\n", s, quoted(classes));
    if (*s)
        put(out, arena_printf("data {\n%s}\n", s));
}

/* ---- the program -------------------------------------------------------------- */

/* A statement or an explicit param, with the place it takes in the program. */
typedef struct { Node *node; bool param; int64_t key; } Item;

static int by_key(const void *a, const void *b)
{
    const Item *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->node->id - y->node->id;
}

/* Statements in an order that binds every name before its use and makes the
 * nodes in the graph's order: by their first node, after what they read. */
static Item *order(U *u, int *count)
{
    Item *it = arena_alloc(sizeof(Item) * (size_t)(u->n + 1));
    int k = 0;
    for (int i = 0; i < u->n; i++) {
        Node *t = u->g->nodes.at[i];
        if (t->op == OP_PARAM && !layer_param(u, t)) {
            it[k++] = (Item){t, true, 2 * (int64_t)t->id};
        } else if (!is_leaf(t->op) && named(u, t)) {
            Span sp;
            walk(u, t, NULL, NULL, &sp);
            int64_t key = 2 * (int64_t)sp.lo;
            if (2 * (int64_t)sp.ref + 1 > key)
                key = 2 * (int64_t)sp.ref + 1;
            it[k++] = (Item){t, false, key};
        }
    }
    qsort(it, (size_t)k, sizeof(Item), by_key);
    *count = k;
    return it;
}

static const char *declared_name(U *u, const char *want, const char *dflt);

/* Names every named value: kept labels first (keep_labels), then the output
 * `f`, then h1, h2, ... in the graph's order. */
static void name_values(U *u)
{
    const Graph *g = u->g;
    for (int i = 0; i < g->noutputs && g->noutputs > 1; i++)   /* several: named as the network names them */
        if (!u->name[g->outputs[i]->id])
            u->name[g->outputs[i]->id] = declared_name(u, g->output_names[i], "f");
    if (!u->name[g->output->id])
        u->name[g->output->id] = fresh(u, "f");
    int k = 0;
    for (int i = 0; i < u->n; i++) {
        Node *t = g->nodes.at[i];
        if (!is_leaf(t->op) && named(u, t) && !u->name[i]) {
            const char *s;
            do
                s = arena_printf("h%d", ++k);
            while (!free_name(u, s));
            u->name[i] = take(u, s);
        }
    }
}

static const char *declared_name(U *u, const char *want, const char *dflt)
{
    return free_name(u, want ? want : "") ? take(u, want) : fresh(u, dflt);
}

static U *unparse_begin(const Graph *g)
{
    U *u = arena_alloc(sizeof *u);
    u->g = g;
    u->n = g->nforward ? g->nforward : g->nodes.n;
    size_t n = (size_t)u->n;
    u->uses = arena_alloc(n * sizeof(int));
    u->absorbed = arena_alloc(n * sizeof(int));
    u->cmin = arena_alloc(n * sizeof(int));
    u->cref = arena_alloc(n * sizeof(int));
    u->forced = arena_alloc(n * sizeof(bool));
    u->composite = arena_alloc(n * sizeof(bool));
    u->inl = arena_alloc(n * sizeof(bool));
    u->shared = arena_alloc(n * sizeof(bool));
    u->source = arena_alloc(n * sizeof(Node *));
    u->name = arena_alloc(n * sizeof(char *));
    return u;
}

char *unparse_program(const Graph *g, const char *weights, const char *classes)
{
    if (!g->input || !g->output) {
        fprintf(stderr, "cnnc: --emit=cnn: the network has no %s\n", g->input ? "output" : "input");
        return NULL;
    }
    U *u = unparse_begin(g);
    for (int i = 0; i < g->nparams; i++)
        take(u, g->params[i].name);
    u->name[g->input->id] = declared_name(u, g->input_name, "x");
    const char *labels = g->label_kind == LABELS_NONE ? NULL
                       : declared_name(u, g->label_name, g->label_kind == LABELS_CLASS ? "y" : "t");
    count_uses(u);
    keep_labels(u);
    analyse(u);
    name_values(u);

    Text out = {0};
    put(&out, arena_printf("# written by cnnc %s --emit=cnn\n", CNNC_VERSION));
    if (weights)
        put(&out, arena_printf("# built-in weights: %s (give it as --weights)\n", weights));
    put(&out, arena_printf("network %s\n", g->name));
    put(&out, arena_printf("input %s : %s\n", u->name[g->input->id], shape_list(g->input->shape)));
    if (g->label_kind == LABELS_CLASS)
        put(&out, arena_printf("labels %s : class(%d)\n", labels, g->nclasses));
    else if (g->label_kind == LABELS_TARGET)
        put(&out, arena_printf("target %s : %s\n", labels, shape_list(g->target_shape)));
    int k;
    Item *it = order(u, &k);
    Node *last = NULL;
    for (int i = 0; i < k && !u->err; i++) {
        if (it[i].param) {
            explicit_param(u, &out, it[i].node);
        } else {
            statement(u, &out, it[i].node);
            last = it[i].node;
        }
    }
    if (g->noutputs > 1) {
        put(&out, arena_printf("output %s", u->name[g->output->id]));
        for (int i = 1; i < g->noutputs; i++)
            put(&out, arena_printf(", %s", u->name[g->outputs[i]->id]));
        put(&out, "\n");
    } else if (last != g->output)
        put(&out, arena_printf("output %s\n", u->name[g->output->id]));
    loss(u, &out, labels);
    train_block(u, &out);
    data_block(u, &out, classes);
    if (u->err) {
        const Node *n = u->errnode;
        fprintf(stderr, "cnnc: --emit=cnn: the network %s cannot be written as a program: it has %s%s\n", g->name,
                u->err, n ? arena_printf(" (operator %%%d %s%s%s)", n->id, op_name(n->op), n->label ? " " : "",
                                         n->label ? n->label : "") : "");
        return NULL;
    }
    return out.s;
}

/* ---- files ------------------------------------------------------------------- */

/* path without its extension: "net.cnn" -> "net" */
static const char *stem_of(const char *path)
{
    const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');
    return dot && (!slash || dot > slash + 1) ? arena_strndup(path, (size_t)(dot - path)) : path;
}

static const char *base_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* Writes text to path atomically: path.tmp.PID, then renamed over path. */
static bool write_atomic(const char *path, const char *text)
{
    const char *tmp = arena_printf("%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "cnnc: cannot write '%s': %s\n", path, strerror(errno));
        return false;
    }
    size_t n = strlen(text);
    bool ok = fwrite(text, 1, n, f) == n;
    ok &= fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok &= fclose(f) == 0;
    if (!ok || rename(tmp, path) != 0) {
        fprintf(stderr, "cnnc: cannot write '%s': %s\n", path, strerror(errno));
        unlink(tmp);
        return false;
    }
    return true;
}

static bool has_data(const Graph *g)
{
    for (int i = 0; i < g->nparams; i++)
        if (g->params[i].init == INIT_DATA)
            return true;
    return false;
}

bool unparse_write(const Graph *g, const char *path)
{
    bool to_stdout = !path || strcmp(path, "-") == 0;
    bool data = has_data(g), classes = g->data.classes != NULL;
    if (to_stdout && (data || classes)) {
        fprintf(stderr, "cnnc: --emit=cnn: the network has %s, which go in files beside the program: give -o FILE.cnn\n",
                data && classes ? "built-in weights and class names" : data ? "built-in weights" : "class names");
        return false;
    }
    const char *stem = to_stdout ? NULL : stem_of(path);
    const char *wpath = data ? arena_printf("%s.safetensors", stem) : NULL;
    const char *cpath = classes ? arena_printf("%s.classes.txt", stem) : NULL;
    char *text = unparse_program(g, wpath ? base_of(wpath) : NULL, cpath ? base_of(cpath) : NULL);
    if (!text)
        return false;
    if (to_stdout)
        return fputs(text, stdout) >= 0 && fflush(stdout) == 0;
    if ((wpath && !weights_write(g, wpath)) || (cpath && !write_atomic(cpath, g->data.classes)))
        return false;
    return write_atomic(path, text);
}
