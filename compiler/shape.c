/* shape.c: semantic analysis. Resolves names, expands blocks, applies every
 * layer and operator with its shape rule, and builds the operator Graph.
 * Per-example semantics: shapes here never include the batch dimension.
 */
#include "cnnc.h"

#include <math.h>
#include <string.h>

/* A name bound to a value: the input, a parameter, or a pipeline's result. */
typedef struct { const char *name; Node *node; Loc loc; } Binding;

/* A block being expanded: its parameters' values, for shape_const. */
struct Frame { const Stmt *block; Val *vals; Frame *up; };

#define MAX_DEPTH 64

static const char *const math_functions[] = {
    "max", "min", "exp", "log", "sqrt", "abs", "tanh", "sigmoid", "relu", "sum", "mean", NULL,
};

static const char *const loss_functions[] = {
    "softmax_cross_entropy", "svm_hinge", "mse", "l2", "l1", NULL,
};

/* ---- names ------------------------------------------------------------ */

static Binding *lookup(Builder *b, const char *name)
{
    return map_get(&b->bound, name);
}

static const Stmt *find_block(Builder *b, const char *name)
{
    for (int i = 0; i < b->blocks.n; i++) {
        const Stmt *s = b->blocks.at[i];
        if (strcmp(s->name, name) == 0)
            return s;
    }
    return NULL;
}

static bool is_math_function(const char *name)
{
    for (const char *const *f = math_functions; *f; f++)
        if (strcmp(*f, name) == 0)
            return true;
    return false;
}

static bool is_loss_function(const char *name)
{
    for (const char *const *f = loss_functions; *f; f++)
        if (strcmp(*f, name) == 0)
            return true;
    return false;
}

/* Every name a stage could mean, for "did you mean". */
static const char **stage_words(Builder *b)
{
    const char *const *layers = layer_names();
    int n = 0;
    while (layers[n])
        n++;
    const char **w = arena_alloc(sizeof(char *) * (size_t)(n + b->blocks.n + 16));
    int k = 0;
    for (int i = 0; i < n; i++)
        w[k++] = layers[i];
    for (int i = 0; i < b->blocks.n; i++)
        w[k++] = ((const Stmt *)b->blocks.at[i])->name;
    for (const char *const *f = math_functions; *f; f++)
        w[k++] = *f;
    return w;
}

static const char **value_words(Builder *b)
{
    const char **w = arena_alloc(sizeof(char *) * (size_t)(b->values.n + 1));
    for (int i = 0; i < b->values.n; i++)
        w[i] = ((Binding *)b->values.at[i])->name;
    return w;
}

static bool reserved_name(Builder *b, const char *name, Loc loc)
{
    if (layer_find(name) || is_math_function(name) || is_loss_function(name)) {
        error_at(loc, "'%s' names a built-in layer or function; choose another name", name);
        return true;
    }
    if (find_block(b, name)) {
        error_at(loc, "'%s' is already the name of a block", name);
        return true;
    }
    return false;
}

static void bind(Builder *b, const char *name, Loc loc, Node *n)
{
    Binding *old = lookup(b, name);
    if (old) {
        error_at(loc, "'%s' is already bound", name);
        if (old->loc.line)
            note("'%s' was bound at line %d", name, old->loc.line);
        return;
    }
    const char *labels = b->g->label_name;
    if (labels && strcmp(labels, name) == 0) {
        error_at(loc, "'%s' is the name of the %s", name,
                 b->g->label_kind == LABELS_TARGET ? "target" : "labels");
        return;
    }
    if (reserved_name(b, name, loc))
        return;
    Binding *v = arena_alloc(sizeof *v);
    v->name = name, v->node = n, v->loc = loc;
    vec_push(&b->values, v);
    map_put(&b->bound, name, v);
    if (n && !n->label)
        n->label = name;
}

/* ---- constants (layer arguments) ---------------------------------------- */

static Val *frame_lookup(Builder *b, const char *name)
{
    if (!b->frame)
        return NULL;
    const Stmt *blk = b->frame->block;
    for (int i = 0; i < blk->nparams; i++)
        if (strcmp(blk->params[i], name) == 0)
            return &b->frame->vals[i];
    return NULL;
}

const char **shape_block_params(Builder *b)
{
    int n = b->frame ? b->frame->block->nparams : 0;
    const char **names = arena_alloc(sizeof(char *) * (size_t)(n + 1));
    for (int i = 0; i < n; i++)
        names[i] = b->frame->block->params[i];
    return names;
}

static Val number(double v, Loc loc)
{
    bool whole = v == floor(v) && fabs(v) < 9e15;
    return (Val){whole ? V_INT : V_FLOAT, .num = v, .loc = loc};
}

/* const = number | size | string | name | -const | const op const | call */
Val shape_const(Builder *b, Ast *e)
{
    switch (e->kind) {
    case A_NUM:  return (Val){e->is_int ? V_INT : V_FLOAT, .num = e->num, .loc = e->loc};
    case A_SIZE: return (Val){V_SIZE, .h = e->h, .w = e->w, .d = e->d, .deep = e->deep, .loc = e->loc};
    case A_STR:  return (Val){V_STR, .str = e->str, .loc = e->loc};
    case A_NAME: {
        Val *v = frame_lookup(b, e->str);
        if (v) {
            Val r = *v;
            r.loc = e->loc;
            return r;
        }
        return (Val){V_NAME, .str = e->str, .ast = e, .loc = e->loc};
    }
    case A_NEG: {
        Val a = shape_const(b, e->a);
        if (a.kind == V_INT || a.kind == V_FLOAT)
            return (Val){a.kind, .num = -a.num, .loc = e->loc};
        break;
    }
    case A_BIN: {
        Val x = shape_const(b, e->a), y = shape_const(b, e->b);
        bool nums = (x.kind == V_INT || x.kind == V_FLOAT) && (y.kind == V_INT || y.kind == V_FLOAT);
        if (!nums || e->op == '@')
            break;
        double r = e->op == '+' ? x.num + y.num : e->op == '-' ? x.num - y.num
                 : e->op == '*' ? x.num * y.num : x.num / y.num;
        if (e->op == '/' && y.num == 0) {
            error_at(e->loc, "division by zero in a constant");
            return (Val){V_NONE, .loc = e->loc};
        }
        Val v = number(r, e->loc);
        if (x.kind == V_FLOAT || y.kind == V_FLOAT)
            v.kind = V_FLOAT;
        return v;
    }
    default:
        break;
    }
    return (Val){V_AST, .ast = e, .loc = e->loc};
}

/* A constant number, or an error naming what it is used for. */
static bool const_number(Builder *b, Ast *e, const char *what, double *out)
{
    Val v = shape_const(b, e);
    if (v.kind == V_INT || v.kind == V_FLOAT) {
        *out = v.num;
        return true;
    }
    error_at(e->loc, "%s must be a number", what);
    return false;
}

/* ---- initializers ------------------------------------------------------ */

static const char *const init_names[] = {
    "zeros", "ones", "constant", "uniform", "normal", "he", "xavier", NULL,
};

/* init = zeros | ones | he | xavier | constant(v) | uniform(a, b) | normal(mean, std) */
bool shape_init(Builder *b, Ast *e, Param *p)
{
    const char *name = e->kind == A_NAME || e->kind == A_CALL ? e->str : NULL;
    int kind = -1;
    for (int i = 0; name && init_names[i]; i++)
        if (strcmp(name, init_names[i]) == 0)
            kind = i;
    if (kind < 0) {
        error_at(e->loc, "unknown initializer%s%s%s", name ? " '" : "", name ? name : "", name ? "'" : "");
        const char *near = name ? closest_word(name, init_names) : NULL;
        note(near ? "did you mean '%s'?" : "initializers: zeros, ones, constant(v), uniform(a, b), normal(mean, std), he, xavier%s",
             near ? near : "");
        return false;
    }
    static const int want[] = {0, 0, 1, 2, 2, 0, 0};
    int got = e->kind == A_CALL ? e->nargs : 0;
    if (got != want[kind]) {
        error_at(e->loc, "initializer '%s' takes %d argument%s but got %d", name, want[kind],
                 want[kind] == 1 ? "" : "s", got);
        return false;
    }
    double v[2] = {0, 0};
    for (int i = 0; i < got; i++) {
        if (e->args[i].key) {
            error_at(e->args[i].keyloc, "initializer arguments are positional");
            return false;
        }
        if (!const_number(b, e->args[i].val, "an initializer's argument", &v[i]))
            return false;
    }
    if (kind == INIT_UNIFORM && v[0] >= v[1]) {
        error_at(e->loc, "uniform(a, b) needs a < b");
        return false;
    }
    if (kind == INIT_NORMAL && v[1] < 0) {
        error_at(e->loc, "normal(mean, std) needs std >= 0");
        return false;
    }
    p->init = (InitKind)kind, p->a = (float)v[0], p->b = (float)v[1];
    return true;
}

/* ---- nodes -------------------------------------------------------------- */

Node *shape_param_node(Builder *b, Param p)
{
    int i = graph_param(b->g, p);
    Node *n = graph_node(b->g, OP_PARAM, p.loc, p.shape, 0, NULL);
    if (n)
        n->param = i, n->label = p.name;
    return n;
}

static Node *constant(Builder *b, double v, Loc loc)
{
    Node *n = graph_node(b->g, OP_CONST, loc, (Shape){0}, 0, NULL);
    if (n)
        n->value = (float)v;
    return n;
}

Node *shape_unary(Builder *b, OpKind op, Loc loc, Node *x)
{
    return graph_node(b->g, op, loc, x->shape, 1, &x);
}

static const char *binop_symbol(OpKind op)
{
    switch (op) {
    case OP_ADD: return "+";
    case OP_SUB: return "-";
    case OP_MUL: return "*";
    case OP_DIV: return "/";
    case OP_MAX: return "max";
    default:     return "min";
    }
}

/* NumPy broadcasting: align trailing dimensions; each pair equal or one is 1. */
Node *shape_binary(Builder *b, OpKind op, Loc loc, Node *x, Node *y)
{
    Shape s = {.rank = x->shape.rank > y->shape.rank ? x->shape.rank : y->shape.rank};
    for (int i = 0; i < s.rank; i++) {
        int ix = x->shape.rank - s.rank + i, iy = y->shape.rank - s.rank + i;
        int64_t dx = ix >= 0 ? x->shape.d[ix] : 1, dy = iy >= 0 ? y->shape.d[iy] : 1;
        if (dx != dy && dx != 1 && dy != 1) {
            error_at(loc, "cannot broadcast %s with %s in `%s`", shape_str(x->shape),
                     shape_str(y->shape), binop_symbol(op));
            note("dimension %d is %lld on the left and %lld on the right", i, (long long)dx, (long long)dy);
            return NULL;
        }
        s.d[i] = dx == 1 ? dy : dx;
    }
    Node *in[2] = {x, y};
    return graph_node(b->g, op, loc, s, 2, in);
}

/* [m,k] @ [k] -> [m];  [m,k] @ [k,n] -> [m,n];  [k] @ [k,n] -> [n];  and
 * stacks of matrices, [..., m, k] @ [..., k, n] -> [..., m, n], where the
 * dimensions before the last two broadcast as in `+` (a matrix is a stack of
 * one). */
Node *shape_matmul(Builder *b, Loc loc, Node *x, Node *y)
{
    Shape a = x->shape, c = y->shape, s = {0};
    bool stacked = a.rank > 2 || c.rank > 2;
    int64_t ka = a.rank ? a.d[a.rank - 1] : 0, kc = c.rank ? c.d[c.rank >= 2 ? c.rank - 2 : 0] : 0;
    bool ranks = stacked ? a.rank >= 2 && c.rank >= 2
                         : (a.rank == 2 && (c.rank == 1 || c.rank == 2)) || (a.rank == 1 && c.rank == 2);
    if (!ranks || ka != kc) {
        error_at(loc, "`@` cannot multiply %s by %s", shape_str(a), shape_str(c));
        if (ranks)
            note("the inner dimensions differ: %lld and %lld", (long long)ka, (long long)kc);
        else
            note("`@` takes [m, k] @ [k], [m, k] @ [k, n], [k] @ [k, n] or stacks [..., m, k] @ [..., k, n]");
        return NULL;
    }
    if (stacked) {      /* the stack dimensions, broadcast */
        int sa = a.rank - 2, sc = c.rank - 2;
        s.rank = sa > sc ? sa : sc;
        for (int i = 0; i < s.rank; i++) {
            int ia = sa - s.rank + i, ic = sc - s.rank + i;
            int64_t da = ia >= 0 ? a.d[ia] : 1, dc = ic >= 0 ? c.d[ic] : 1;
            if (da != dc && da != 1 && dc != 1) {
                error_at(loc, "`@` cannot multiply %s by %s", shape_str(a), shape_str(c));
                note("the stacks do not broadcast: dimension %d is %lld on the left and %lld on the right", i,
                     (long long)da, (long long)dc);
                return NULL;
            }
            s.d[i] = da == 1 ? dc : da;
        }
    }
    if (a.rank >= 2)
        s.d[s.rank++] = a.d[a.rank - 2];
    if (c.rank >= 2)
        s.d[s.rank++] = c.d[c.rank - 1];
    Node *in[2] = {x, y};
    return graph_node(b->g, OP_MATMUL, loc, s, 2, in);
}

/* ---- maths -------------------------------------------------------------- */

static Node *value(Builder *b, Ast *e, Node *hole);

static bool uses_hole(const Ast *e)
{
    if (!e)
        return false;
    if (e->kind == A_HOLE)
        return true;
    if (e->kind == A_PIPE)
        return uses_hole(e->a);
    if (uses_hole(e->a) || uses_hole(e->b))
        return true;
    for (int i = 0; e->kind == A_CALL && i < e->nargs; i++)
        if (uses_hole(e->args[i].val))
            return true;
    return false;
}

static Node *name_value(Builder *b, Ast *e)
{
    Binding *v = lookup(b, e->str);
    if (v)
        return v->node;
    if (frame_lookup(b, e->str)) {
        error_at(e->loc, "block parameter '%s' is a constant, not a value", e->str);
        return NULL;
    }
    if (layer_find(e->str) || find_block(b, e->str)) {
        error_at(e->loc, "'%s' is a layer and needs an input", e->str);
        note("use it as a pipeline stage: `x -> %s`", e->str);
        return NULL;
    }
    error_at(e->loc, "unknown name '%s'", e->str);
    const char *near = closest_word(e->str, value_words(b));
    if (near)
        note("did you mean '%s'?", near);
    return NULL;
}

static const OpKind unary_ops[] = {
    ['e'] = OP_EXP, ['l'] = OP_LOG, ['s'] = OP_SQRT, ['a'] = OP_ABS,
};

/* call = max(a, b) | min(a, b) | exp(a) | ... | sum(a) | mean(a) */
static Node *math_call(Builder *b, Ast *e, Node *hole)
{
    const char *f = e->str;
    bool two = strcmp(f, "max") == 0 || strcmp(f, "min") == 0;
    int want = two ? 2 : 1;
    if (e->nargs != want) {
        error_at(e->loc, "%s takes %d argument%s but got %d", f, want, want == 1 ? "" : "s", e->nargs);
        return NULL;
    }
    for (int i = 0; i < e->nargs; i++)
        if (e->args[i].key) {
            error_at(e->args[i].keyloc, "%s takes no keyword arguments", f);
            return NULL;
        }
    Node *x = value(b, e->args[0].val, hole);
    Node *y = two ? value(b, e->args[1].val, hole) : NULL;
    if (!x || (two && !y))
        return NULL;
    if (two)
        return shape_binary(b, f[1] == 'a' ? OP_MAX : OP_MIN, e->loc, x, y);
    if (strcmp(f, "sum") == 0 || strcmp(f, "mean") == 0)
        return graph_node(b->g, f[0] == 's' ? OP_SUM : OP_MEAN, e->loc, (Shape){0}, 1, &x);
    OpKind op = strcmp(f, "tanh") == 0 ? OP_TANH : strcmp(f, "sigmoid") == 0 ? OP_SIGMOID
              : strcmp(f, "relu") == 0 ? OP_RELU : strcmp(f, "sqrt") == 0 ? OP_SQRT
              : unary_ops[(unsigned char)f[0]];
    return shape_unary(b, op, e->loc, x);
}

static Node *call_value(Builder *b, Ast *e, Node *hole)
{
    if (is_math_function(e->str))
        return math_call(b, e, hole);
    if (layer_find(e->str) || find_block(b, e->str)) {
        error_at(e->loc, "layer '%s' needs an input", e->str);
        note("use it as a pipeline stage: `x -> %s(...)`", e->str);
        return NULL;
    }
    if (is_loss_function(e->str)) {
        error_at(e->loc, "'%s' may only appear in the loss", e->str);
        return NULL;
    }
    error_at(e->loc, "unknown function '%s'", e->str);
    const char *near = closest_word(e->str, stage_words(b));
    if (near)
        note("did you mean '%s'?", near);
    return NULL;
}

static Node *pipeline(Builder *b, Ast *e, Node *hole, const Stmt *bind_in);

/* value = number | name | _ | -value | value op value | call | pipeline */
static Node *value(Builder *b, Ast *e, Node *hole)
{
    Node *x, *y;
    switch (e->kind) {
    case A_NUM:
        return constant(b, e->num, e->loc);
    case A_NAME:
        return name_value(b, e);
    case A_HOLE:
        if (!hole)
            error_at(e->loc, "`_` stands for a pipeline stage's input and is used outside one");
        return hole;
    case A_NEG:
        x = value(b, e->a, hole);
        return x ? shape_unary(b, OP_NEG, e->loc, x) : NULL;
    case A_BIN:
        x = value(b, e->a, hole);
        y = value(b, e->b, hole);
        if (!x || !y)
            return NULL;
        switch (e->op) {
        case '+': return shape_binary(b, OP_ADD, e->loc, x, y);
        case '-': return shape_binary(b, OP_SUB, e->loc, x, y);
        case '*': return shape_binary(b, OP_MUL, e->loc, x, y);
        case '/': return shape_binary(b, OP_DIV, e->loc, x, y);
        default:  return shape_matmul(b, e->loc, x, y);
        }
    case A_CALL:
        return call_value(b, e, hole);
    case A_PIPE:
        return pipeline(b, e, hole, NULL);
    case A_SIZE:
        error_at(e->loc, "a size like %s%dx%d is not a value", e->deep ? arena_printf("%dx", e->d) : "", e->h, e->w);
        return NULL;
    case A_STR:
        error_at(e->loc, "a string is not a value");
        return NULL;
    case A_SHAPE:
        break;
    }
    internal_error("value: unexpected syntax node %d", e->kind);
}

/* ---- stages ------------------------------------------------------------- */

static Node *expand_block(Builder *b, const Stmt *blk, Ast *call, Node *x)
{
    int nargs = call->kind == A_CALL ? call->nargs : 0;
    Loc loc = call->loc;
    if (nargs != blk->nparams) {
        error_at(loc, "block '%s' takes %d argument%s but got %d", blk->name, blk->nparams,
                 blk->nparams == 1 ? "" : "s", nargs);
        note("block '%s' is defined at line %d", blk->name, blk->loc.line);
        return NULL;
    }
    for (Frame *f = b->frame; f; f = f->up)
        if (f->block == blk) {
            const char *chain = blk->name;
            for (Frame *g = b->frame; g != f; g = g->up)
                chain = arena_printf("%s -> %s", g->block->name, chain);
            error_at(loc, "block '%s' is recursive: %s -> %s", blk->name, blk->name, chain);
            note("blocks may not call themselves, directly or through other blocks");
            return NULL;
        }
    Frame fr = {blk, arena_alloc(sizeof(Val) * (size_t)(nargs + 1)), b->frame};
    for (int i = 0; i < nargs; i++) {
        if (call->args[i].key) {
            error_at(call->args[i].keyloc, "block arguments are positional");
            return NULL;
        }
        fr.vals[i] = shape_const(b, call->args[i].val);
    }
    b->frame = &fr;
    Node *y = shape_stage(b, blk->expr, x);
    b->frame = fr.up;
    return y;
}

static Node *layer_call(Builder *b, const LayerRule *rule, Ast *e, Node *x)
{
    b->depth++;
    Node *y = layer_apply(b, rule, e, x);
    b->depth--;
    return y;
}

static Node *named_stage(Builder *b, Ast *e, Node *x)
{
    const LayerRule *rule = layer_find(e->str);
    if (rule)
        return layer_call(b, rule, e, x);
    const Stmt *blk = find_block(b, e->str);
    if (blk)
        return expand_block(b, blk, e, x);
    if (e->kind == A_CALL && is_math_function(e->str)) {
        if (!uses_hole(e)) {
            error_at(e->loc, "this stage does not use its input");
            bool two = strcmp(e->str, "max") == 0 || strcmp(e->str, "min") == 0;
            note(two ? "write `_` where the incoming value goes, e.g. `%s(0, _)`"
                     : "write `_` where the incoming value goes, e.g. `%s(_)`", e->str);
            return NULL;
        }
        return math_call(b, e, x);
    }
    if (e->kind == A_NAME && (lookup(b, e->str) || frame_lookup(b, e->str))) {
        error_at(e->loc, "'%s' is a value, not a layer", e->str);
        note("a stage is a layer, a block, or an expression using `_`");
        return NULL;
    }
    error_at(e->loc, "unknown layer '%s'", e->str);
    const char *near = closest_word(e->str, stage_words(b));
    if (near)
        note("did you mean '%s'?", near);
    return NULL;
}

static int pipe_elems(Ast *e, Ast **out, int max);

/* stage = layer | layer(args) | block | block(args) | expression with `_` | (stage -> stage) */
Node *shape_stage(Builder *b, Ast *e, Node *x)
{
    if (!x)
        return NULL;
    if (++b->depth > MAX_DEPTH) {
        error_at(e->loc, "blocks and branches are nested more than %d deep", MAX_DEPTH);
        b->depth--;
        return NULL;
    }
    Node *y;
    if (e->kind == A_PIPE) {                    /* a chain of stages is not nesting */
        Ast **el = arena_alloc(sizeof(Ast *) * (size_t)(e->depth + 2));
        int n = pipe_elems(e, el, e->depth + 2);
        y = x;
        for (int i = 0; i < n && y; i++)
            y = shape_stage(b, el[i], y);
    } else if (e->kind == A_NAME || e->kind == A_CALL) {
        y = named_stage(b, e, x);
    } else if (e->kind == A_HOLE) {
        y = x;
    } else if (uses_hole(e)) {
        y = value(b, e, x);
    } else {
        error_at(e->loc, "this stage does not use its input");
        note("write `_` where the incoming value goes, e.g. `W @ _ + b`");
        y = NULL;
    }
    b->depth--;
    return y;
}

/* Flattens a -> b -> c into its elements, first to last. */
static int pipe_elems(Ast *e, Ast **out, int max)
{
    if (e->kind != A_PIPE) {
        out[0] = e;
        return 1;
    }
    int n = pipe_elems(e->a, out, max);
    if (n < max)
        out[n++] = e->b;
    return n;
}

static bool fresh_name(Builder *b, const Ast *e)
{
    return e->kind == A_NAME && !lookup(b, e->str) && !layer_find(e->str) &&
           !find_block(b, e->str) && !frame_lookup(b, e->str);
}

/* pipeline = value ("->" stage)*; a fresh name as a stage binds the value
 * there (only in a statement, `bind_in`), the lecture's `-> h`. */
static Node *pipeline(Builder *b, Ast *e, Node *hole, const Stmt *bind_in)
{
    Ast **el = arena_alloc(sizeof(Ast *) * (size_t)(e->depth + 2));   /* depth <= MAX_AST_DEPTH */
    int n = pipe_elems(e, el, e->depth + 2);
    Node *x = value(b, el[0], hole);
    for (int i = 1; i < n && x; i++) {
        if (bind_in && i == n - 1 && fresh_name(b, el[i])) {
            bind(b, el[i]->str, el[i]->loc, x);
            continue;
        }
        x = shape_stage(b, el[i], x);
    }
    return x;
}

/* ---- statements ------------------------------------------------------- */

static bool read_shape(Ast *e, Shape *s)
{
    if (e->nargs > MAX_RANK) {
        error_at(e->loc, "a shape has at most %d dimensions but this one has %d", MAX_RANK, e->nargs);
        return false;
    }
    s->rank = e->nargs;
    for (int i = 0; i < e->nargs; i++) {
        Ast *d = e->args[i].val;
        if (!d->is_int || d->num < 1 || d->num > 9e15) {
            error_at(d->loc, "a dimension must be a whole number of at least 1");
            return false;
        }
        s->d[i] = (int64_t)d->num;
    }
    int64_t total = 1;
    for (int i = 0; i < e->nargs; i++) {
        if (!mul_ok(total, s->d[i], &total) || total > MAX_TENSOR_ELEMS) {
            error_at(e->loc, "shape %s is too large: a tensor may hold at most 2^31 - 1 elements",
                     shape_str(*s));
            return false;
        }
    }
    return true;
}

static void declare_input(Builder *b, const Stmt *s)
{
    if (b->g->input) {
        error_at(s->loc, "a network has one input; '%s' is the second", s->name);
        return;
    }
    Shape sh;
    if (!read_shape(s->shape, &sh))
        return;
    if (sh.rank == 0 || sh.rank > MAX_RANK) {
        error_at(s->shape->loc, "an input is a vector [D], a matrix [H, W], an image [C, H, W] or a tensor of "
                 "up to %d dimensions, not %s", MAX_RANK, shape_str(sh));
        return;
    }
    b->g->input = graph_node(b->g, OP_INPUT, s->nameloc, sh, 0, NULL);
    b->g->input->batched = true;
    b->g->input_name = s->name;
    bind(b, s->name, s->nameloc, b->g->input);
}

static void declare_labels(Builder *b, const Stmt *s)
{
    Graph *g = b->g;
    if (g->label_kind != LABELS_NONE) {
        error_at(s->loc, "labels or a target is already declared");
        return;
    }
    Ast *e = s->expr;
    double k;
    if (lookup(b, s->name)) {
        error_at(s->nameloc, "'%s' is already bound", s->name);
        return;
    }
    g->label_kind = LABELS_CLASS, g->nclasses = 0, g->label_name = s->name;   /* 0: rejected */
    if (e->kind != A_CALL || strcmp(e->str, "class") != 0 || e->nargs != 1) {
        error_at(e->loc, "labels are declared as `class(K)`, K the number of classes");
        return;
    }
    if (!const_number(b, e->args[0].val, "the number of classes", &k))
        return;
    if (k < 2 || k > 1e6 || k != floor(k)) {
        error_at(e->args[0].val->loc, "the number of classes must be a whole number from 2 to 1000000");
        return;
    }
    g->label_kind = LABELS_CLASS, g->nclasses = (int)k, g->label_name = s->name;
}

static void declare_target(Builder *b, const Stmt *s)
{
    Graph *g = b->g;
    if (g->label_kind != LABELS_NONE) {
        error_at(s->loc, "labels or a target is already declared");
        return;
    }
    if (lookup(b, s->name)) {
        error_at(s->nameloc, "'%s' is already bound", s->name);
        return;
    }
    if (read_shape(s->shape, &g->target_shape))
        g->label_kind = LABELS_TARGET, g->label_name = s->name;
}

static void fans(Param *p)
{
    int64_t rest = 1;
    for (int i = 2; i < p->shape.rank; i++)
        rest *= p->shape.d[i];
    p->fan_in = p->shape.rank >= 2 ? p->shape.d[1] * rest : p->shape.rank ? p->shape.d[0] : 1;
    p->fan_out = p->shape.rank >= 2 ? p->shape.d[0] * rest : p->fan_in;
}

static void declare_param(Builder *b, const Stmt *s)
{
    Param p = {.name = s->name, .loc = s->nameloc, .init = INIT_HE};
    bool ok = read_shape(s->shape, &p.shape);
    if (ok && p.shape.rank > MAX_PARAM_RANK) {
        error_at(s->shape->loc, "a param has at most %d dimensions but '%s' has %d", MAX_PARAM_RANK, s->name,
                 p.shape.rank);
        ok = false;
    }
    if (ok) {
        fans(&p);
        p.is_weight = p.shape.rank >= 2;
    }
    if (!ok || (s->expr && !shape_init(b, s->expr, &p))) {
        if (!lookup(b, s->name))
            bind(b, s->name, s->nameloc, NULL);     /* reported: uses stay quiet */
        return;
    }
    if (lookup(b, s->name) || reserved_name(b, s->name, s->nameloc)) {
        if (lookup(b, s->name))
            bind(b, s->name, s->nameloc, NULL);     /* reports the duplicate */
        return;
    }
    bind(b, s->name, s->nameloc, shape_param_node(b, p));
}

static void declare_block(Builder *b, const Stmt *s)
{
    if (find_block(b, s->name)) {
        error_at(s->nameloc, "block '%s' is defined twice", s->name);
        return;
    }
    if (layer_find(s->name) || is_math_function(s->name)) {
        error_at(s->nameloc, "'%s' names a built-in layer or function; choose another name", s->name);
        return;
    }
    for (int i = 0; i < s->nparams; i++)
        for (int j = 0; j < i; j++)
            if (strcmp(s->params[i], s->params[j]) == 0)
                error_at(s->paramlocs[i], "parameter '%s' appears twice", s->params[i]);
    vec_push(&b->blocks, (void *)s);
}

static Node *last_bound;

static void statement_value(Builder *b, const Stmt *s)
{
    if (s->kind == S_BIND) {
        if (lookup(b, s->name)) {
            bind(b, s->name, s->nameloc, NULL);     /* reports the duplicate */
            return;
        }
        Node *x = pipeline(b, s->expr, NULL, NULL);
        bind(b, s->name, s->nameloc, x);            /* NULL after an error: uses stay quiet */
        if (x)
            last_bound = x;
        return;
    }
    /* S_PIPE: its last element must be a fresh name, which binds the result */
    Ast *e = s->expr;
    if (e->kind != A_PIPE || !fresh_name(b, e->b)) {
        error_at(e->kind == A_PIPE ? e->b->loc : e->loc, "the pipeline's result is not bound to a name");
        note("end it with a new name (`-> f`) or write `f = ...`");
        if (e->kind == A_PIPE)
            pipeline(b, e, NULL, s);                /* still check its shapes */
        return;
    }
    Node *x = pipeline(b, e, NULL, s);
    if (x)
        last_bound = x;
    else if (!lookup(b, e->b->str))
        bind(b, e->b->str, e->b->loc, NULL);        /* after an error: uses stay quiet */
}

/* ---- loss --------------------------------------------------------------- */

static void add_loss(Builder *b, LossTerm t)
{
    Graph *g = b->g;
    LossTerm *at = arena_alloc(sizeof(LossTerm) * (size_t)(g->nloss + 1));
    if (g->nloss)
        memcpy(at, g->loss, sizeof(LossTerm) * (size_t)g->nloss);
    at[g->nloss++] = t;
    g->loss = at;
}

static bool is_labels(Builder *b, Ast *e, LabelKind want, const char *fn)
{
    Graph *g = b->g;
    if (e->kind == A_NAME && g->label_name && strcmp(e->str, g->label_name) == 0 && g->label_kind == want)
        return true;
    error_at(e->loc, "the second argument of %s must be the %s", fn,
             want == LABELS_CLASS ? "labels (declare `labels y : class(K)`)"
                                  : "target (declare `target t : [...]`)");
    return false;
}

/* softmax_cross_entropy(f, y) | svm_hinge(f, y, margin=m) */
static void class_loss(Builder *b, Ast *e, float coef, LossKind kind)
{
    LossTerm t = {.kind = kind, .coef = coef, .margin = 1.0f, .loc = e->loc};
    int max = kind == LOSS_SVM_HINGE ? 3 : 2;
    if (e->nargs < 2 || e->nargs > max) {
        error_at(e->loc, "%s takes %s arguments but got %d", e->str,
                 kind == LOSS_SVM_HINGE ? "2 or 3" : "2", e->nargs);
        return;
    }
    for (int i = 2; i < e->nargs; i++) {
        if (e->args[i].key && strcmp(e->args[i].key, "margin") != 0) {
            error_at(e->args[i].keyloc, "svm_hinge has no argument '%s'; it takes margin=", e->args[i].key);
            return;
        }
        double m;
        if (!const_number(b, e->args[i].val, "the margin", &m))
            return;
        t.margin = (float)m;
    }
    t.f = value(b, e->args[0].val, NULL);
    if (!t.f || !is_labels(b, e->args[1].val, LABELS_CLASS, e->str))
        return;
    int k = b->g->nclasses;
    if (k == 0)
        return;                                     /* the labels' error is reported */
    if (t.f->shape.rank != 1 || t.f->shape.d[0] != k) {
        error_at(e->args[0].val->loc, "%s needs scores of shape [%d] for labels %s : class(%d), but got %s",
                 e->str, k, b->g->label_name, k, shape_str(t.f->shape));
        if (t.f->shape.rank == 1)
            note("the last layer should have %d outputs, e.g. `dense(%d)`", k, k);
        return;
    }
    add_loss(b, t);
}

/* mse(f, t) */
static void mse_loss(Builder *b, Ast *e, float coef)
{
    if (e->nargs != 2) {
        error_at(e->loc, "mse takes 2 arguments but got %d", e->nargs);
        return;
    }
    LossTerm t = {.kind = LOSS_MSE, .coef = coef, .loc = e->loc};
    t.f = value(b, e->args[0].val, NULL);
    if (!t.f || !is_labels(b, e->args[1].val, LABELS_TARGET, "mse"))
        return;
    Shape ts = b->g->target_shape;
    if (shape_count(t.f->shape) != shape_count(ts) || (t.f->shape.rank > 1 && !shape_eq(t.f->shape, ts))) {
        error_at(e->loc, "mse compares %s with target %s : %s", shape_str(t.f->shape),
                 b->g->label_name, shape_str(ts));
        return;
    }
    add_loss(b, t);
}

/* l2(p, ...) | l1(p, ...), `weights` naming every weight tensor */
static void norm_loss(Builder *b, Ast *e, float coef, LossKind kind)
{
    Graph *g = b->g;
    LossTerm t = {.kind = kind, .coef = coef, .loc = e->loc};
    t.params = arena_alloc(sizeof(int) * (size_t)(g->nparams + e->nargs + 1));
    if (e->nargs == 0)
        error_at(e->loc, "%s needs the parameters it regularizes, e.g. `%s(weights)`", e->str, e->str);
    for (int i = 0; i < e->nargs; i++) {
        Ast *a = e->args[i].val;
        if (a->kind == A_NAME && strcmp(a->str, "weights") == 0) {
            for (int j = 0; j < g->nparams; j++)
                if (g->params[j].is_weight)
                    t.params[t.nparams++] = j;
            continue;
        }
        Binding *v = a->kind == A_NAME ? lookup(b, a->str) : NULL;
        if (v && !v->node)
            return;                                 /* its error is reported */
        if (!v || v->node->op != OP_PARAM) {
            error_at(a->loc, "%s takes parameters (or `weights`), and this is not one", e->str);
            return;
        }
        t.params[t.nparams++] = v->node->param;
    }
    add_loss(b, t);
}

/* A constant number (`2`, `5e-4 / 2`, `-1`), silently. */
static bool is_number(Builder *b, Ast *e, double *out)
{
    Val v = shape_const(b, e);
    *out = v.num;
    return v.kind == V_INT || v.kind == V_FLOAT;
}

/* loss = term | loss + loss | loss - loss | c * loss | loss * c | loss / c | -loss */
static void loss_terms(Builder *b, Ast *e, float coef)
{
    double c;
    if (e->kind == A_BIN && (e->op == '+' || e->op == '-')) {
        loss_terms(b, e->a, coef);
        loss_terms(b, e->b, e->op == '+' ? coef : -coef);
    } else if (e->kind == A_NEG) {
        loss_terms(b, e->a, -coef);
    } else if (e->kind == A_BIN && e->op == '*' && is_number(b, e->a, &c)) {
        loss_terms(b, e->b, coef * (float)c);
    } else if (e->kind == A_BIN && (e->op == '*' || e->op == '/') && const_number(b, e->b, "a loss coefficient", &c)) {
        if (e->op == '/' && c == 0)
            error_at(e->b->loc, "division by zero in the loss");
        else
            loss_terms(b, e->a, coef * (float)(e->op == '*' ? c : 1 / c));
    } else if (e->kind == A_CALL && strcmp(e->str, "softmax_cross_entropy") == 0) {
        class_loss(b, e, coef, LOSS_SOFTMAX_CE);
    } else if (e->kind == A_CALL && strcmp(e->str, "svm_hinge") == 0) {
        class_loss(b, e, coef, LOSS_SVM_HINGE);
    } else if (e->kind == A_CALL && strcmp(e->str, "mse") == 0) {
        mse_loss(b, e, coef);
    } else if (e->kind == A_CALL && (strcmp(e->str, "l2") == 0 || strcmp(e->str, "l1") == 0)) {
        norm_loss(b, e, coef, e->str[1] == '2' ? LOSS_L2 : LOSS_L1);
    } else if (!(e->kind == A_BIN && (e->op == '*' || e->op == '/'))) {
        error_at(e->loc, "a loss is a weighted sum of softmax_cross_entropy, svm_hinge, mse, l2 and l1");
        if (e->kind == A_CALL) {
            const char *near = closest_word(e->str, loss_functions);
            if (near)
                note("did you mean '%s'?", near);
        }
    }
}

static void declare_loss(Builder *b, const Stmt *s)
{
    if (b->g->has_loss) {
        error_at(s->loc, "the loss is defined twice");
        return;
    }
    b->g->has_loss = true;
    loss_terms(b, s->expr, 1.0f);
}

/* ---- the program -------------------------------------------------------- */

/* The stem of the file's name made a C identifier: "nets/le-net.cnn" is le_net. */
const char *shape_stem_name(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strcspn(base, ".");
    char *name = arena_strndup(base, n ? n : strlen(base));
    for (char *c = name; *c; c++)
        if (!(*c == '_' || (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9')))
            *c = '_';
    if (!*name || (*name >= '0' && *name <= '9'))
        name = arena_printf("net_%s", name);
    return name;
}

static void network_name(Graph *g, const Program *p, const Stmt *s)
{
    g->name = s ? s->name : shape_stem_name(p->src->path);
}

static void declarations(Builder *b, const Program *p)
{
    const Stmt *net = NULL;
    bool declared = false;
    for (const Stmt *s = p->stmts; s; s = s->next) {
        switch (s->kind) {
        case S_NETWORK:
            if (net)
                error_at(s->loc, "the network is named twice");
            net = s;
            break;
        case S_INPUT:  declared = true; declare_input(b, s); break;
        case S_LABELS: declare_labels(b, s); break;
        case S_TARGET: declare_target(b, s); break;
        case S_BLOCK:  declare_block(b, s); break;
        default: break;
        }
    }
    network_name(b->g, p, net);
    if (!declared)
        error_at((Loc){0, 0, 0}, "the network has no input; declare one, e.g. `input x : [1, 28, 28]`");
}

/* Values in source order; explicit params take their place in that order. */
static const Stmt *values(Builder *b, const Program *p)
{
    const Stmt *output = NULL;
    for (const Stmt *s = p->stmts; s && !diag_too_many(); s = s->next) {
        switch (s->kind) {
        case S_PARAM:  declare_param(b, s); break;
        case S_BIND:
        case S_PIPE:   if (b->g->input) statement_value(b, s); break;
        case S_LOSS:   if (!b->g->output) b->g->output = last_bound; break;
        case S_OUTPUT:
            if (output)
                error_at(s->loc, "the output is declared twice");
            output = s;
            break;
        default: break;
        }
    }
    return output;
}

/* `output f, m, ...`: every output, each named by its binding */
static void more_outputs(Builder *b, const Stmt *out)
{
    Graph *g = b->g;
    int n = 1 + out->nparams;
    g->outputs = arena_alloc(sizeof(Node *) * (size_t)n);
    g->output_names = arena_alloc(sizeof(char *) * (size_t)n);
    g->output_types = arena_alloc(sizeof(ElemType) * (size_t)n);
    g->outputs[0] = g->output, g->output_names[0] = out->name;
    for (int i = 1; i < n; i++) {
        const char *name = out->params[i - 1];
        Loc loc = out->paramlocs[i - 1];
        Binding *v = lookup(b, name);
        for (int j = 0; j < i; j++)
            if (strcmp(g->output_names[j], name) == 0) {
                error_at(loc, "'%s' is listed twice as an output", name);
                return;
            }
        const char *labels = g->label_name;
        if (!v && labels && strcmp(labels, name) == 0) {
            error_at(loc, "'%s' is the %s; an output is a value the network computes from its input", name,
                     g->label_kind == LABELS_TARGET ? "target" : "labels");
            return;
        }
        if (!v) {
            error_at(loc, "unknown name '%s'", name);
            return;
        }
        if (!v->node)                   /* its statement failed, and said so */
            return;
        if (!v->node->batched) {
            error_at(loc, "the output '%s' does not depend on the input", name);
            return;
        }
        g->outputs[i] = v->node, g->output_names[i] = name;
    }
    g->noutputs = n;
}

static void choose_output(Builder *b, const Stmt *out)
{
    Graph *g = b->g;
    if (out) {
        Binding *v = lookup(b, out->name);
        if (!v) {
            error_at(out->nameloc, "unknown name '%s'", out->name);
            return;
        }
        g->output = v->node;
    }
    if (!g->output)
        g->output = last_bound;
    if (!g->output) {
        if (g->input && diag_error_count() == 0)
            error_at((Loc){0, 0, 0}, "the network computes nothing: bind a pipeline, e.g. `x -> dense(10) -> f`");
        return;
    }
    if (!g->output->batched)
        error_at(out ? out->nameloc : g->output->loc, "the output does not depend on the input");
    if (out && out->nparams)
        more_outputs(b, out);
    graph_outputs(g);
}

static void settings(Builder *b, const Program *p)
{
    bool train = false, data = false;
    for (const Stmt *s = p->stmts; s; s = s->next) {
        if (s->kind == S_TRAIN) {
            if (train)
                error_at(s->loc, "a second train block");
            train = true;
            settings_train(b->g, s);
        } else if (s->kind == S_DATA) {
            if (data)
                error_at(s->loc, "a second data block");
            data = true;
            settings_data(b->g, s);
        }
    }
}

Graph *shape_check(const Program *p)
{
    Builder b = {.prog = p};
    b.g = arena_alloc(sizeof(Graph));
    last_bound = NULL;
    settings_defaults(b.g);
    declarations(&b, p);
    const Stmt *out = values(&b, p);
    choose_output(&b, out);
    for (const Stmt *s = p->stmts; s; s = s->next)
        if (s->kind == S_LOSS && b.g->output)
            declare_loss(&b, s);
    settings(&b, p);
    if (diag_error_count())
        return NULL;
    b.g->nforward = b.g->nodes.n;
    graph_check(b.g);
    return b.g;
}
