/* share.c: one function for the loop nests that differ only in their sizes.
 *
 * A kernel is a long list of loop nests (padding copies, im2col, batchnorm,
 * elementwise maths, their gradients), and in a deep network most of them
 * repeat the same code with other sizes, strides and buffer offsets: the
 * basic blocks of a ResNet stage, the convolutions of a VGG stage. Lowered
 * inline, every nest costs LLVM's optimizer and code generator the same
 * again, and one huge kernel function costs more than its parts (several
 * passes grow faster than the function). So llvm.c cuts each kernel into
 * units, one loop nest each, and emits one function per distinct *shape of
 * code*, which it calls with the unit's buffers and sizes as arguments.
 *
 * share_unit() makes a unit's key: its code with every buffer replaced by a
 * pointer argument (one per distinct buffer) and most constants replaced by
 * scalar arguments (one per distinct value, so that sizes that are equal stay
 * equal for the optimizer). Units with equal keys compute the same function
 * of their arguments, so they share one.
 *
 * What stays a constant, because specializing on it pays for itself:
 *   - the integers 0 and 1 and the floats 0, 1, -1 and +-inf;
 *   - an integer multiplied by the innermost loop's variable: the stride of
 *     the fastest-moving index (1 vectorizes with plain loads; 2, im2col at
 *     stride 2, with interleaved ones);
 *   - the trip count of an innermost loop up to SMALL_TRIP (64): a row of a
 *     small image (LeNet's 28, ResNet's 7 to 56) or a window of 3x3 or 7x7
 *     is a few vector steps (or unrolls fully) instead of a vector loop with
 *     a scalar remainder as long as the vector part (with a limit of 16
 *     instead, LeNet's forward latency at batch 1 was 8.6-9.1 us against
 *     7.4-7.7 us inline).
 * Everything else (trip counts of long loops, the strides of outer loops,
 * offsets, padding, channel counts, a batchnorm's epsilon, 1/count) is an
 * argument: a long loop runs as fast whether its bound is a constant or not.
 *
 * A kernel's scalar that the nest reads is passed by value; one that it
 * sets and code outside it also uses (the loss being summed), by reference.
 * A nest that reads labels, the training kernel's arguments or its random
 * numbers takes those too. A nest that holds a GEMM or pooling statement is
 * not a unit: llvm.c emits the loop itself, and the nests inside it are units.
 */
#include "cnnc.h"

#include <stdlib.h>
#include <string.h>

enum { SMALL_TRIP = 64 };

/* ---- references to variables ---------------------------------------------- */

static void count_expr(const Expr *e, int *uses)
{
    if (!e)
        return;
    if (e->kind == X_VAR || e->kind == X_GET)
        uses[e->var]++;
    count_expr(e->a, uses), count_expr(e->b, uses), count_expr(e->c, uses);
}

static void count_gemm(const Gemm *g, int *uses)
{
    count_expr(g->M, uses), count_expr(g->K, uses);
    count_expr(g->a_at, uses), count_expr(g->b_at, uses), count_expr(g->c_at, uses), count_expr(g->bias_at, uses);
}

static void count_pool(const Pool *p, int *uses)
{
    count_expr(p->x_at, uses), count_expr(p->y_at, uses), count_expr(p->dy_at, uses);
    count_expr(p->dx_at, uses), count_expr(p->mask_at, uses);
}

/* Every mention of a variable in s: reads, and the writes of a loop's or a
 * scalar's own variable (counted in *writes too, when not NULL). */
static void count_stmt(const LStmt *s, int *uses, int *writes)
{
    if (s->kind == L_FOR || s->kind == L_SET) {
        uses[s->var]++;
        if (writes)
            writes[s->var]++;
    }
    count_expr(s->lo, uses), count_expr(s->hi, uses), count_expr(s->idx, uses);
    count_expr(s->val, uses), count_expr(s->cond, uses);
    if (s->kind == L_GEMM)
        count_gemm(s->gemm, uses);
    if (s->kind == L_POOL)
        count_pool(s->pool, uses);
    for (int i = 0; i < s->body.n; i++)
        count_stmt(s->body.at[i], uses, writes);
}

int *share_refs(const Kernel *k)
{
    int *refs = arena_alloc(sizeof(int) * (size_t)(k->nvars + 1));
    for (int i = 0; i < k->body.n; i++)
        count_stmt(k->body.at[i], refs, NULL);
    if (k->ret)
        refs[k->ret]++;                  /* the kernel returns it */
    refs[0]++;                           /* n: an argument of the kernel */
    return refs;
}

/* ---- whether a nest can be a unit ----------------------------------------- */

static bool stmt_ok(const LStmt *s)
{
    if (s->kind == L_GEMM || s->kind == L_POOL)
        return false;
    for (int i = 0; i < s->body.n; i++)
        if (!stmt_ok(s->body.at[i]))
            return false;
    return true;
}

/* ---- the key and the copy -------------------------------------------------- */

typedef struct {
    char *text; size_t len, cap;
} Text;

static void put(Text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(Text *t, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(t->text + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        t->cap = 2 * t->cap + (size_t)n + 64;
        t->text = realloc(t->text, t->cap);
        if (!t->text)
            internal_error("out of memory");
    }
}

/* The state of cutting one unit. */
typedef struct {
    const int *refs;       /* per kernel variable, its mentions in the whole kernel */
    const int *uses;       /* and in this unit */
    const int *writes;     /* the unit's writes per kernel variable */
    int *map;              /* kernel variable -> the unit's (0: none yet) */
    Map consts;            /* a constant's text -> the unit's variable that holds it */
    Unit *u;
    Text key;
    int cap;               /* of u->is_float */
} Cut;

/* A new variable of the unit: a local, an argument (`arg`: the kernel's
 * variable the caller passes, by value or by reference) or a constant of the
 * unit's table (`arg`: its value). */
typedef enum { LOCAL, ARG, REF, CONST } Role;

static int new_var(Cut *c, bool is_float, Role role, Expr *arg)
{
    Unit *u = c->u;
    if (u->nvars >= c->cap) {
        c->cap = 2 * c->cap + 16;
        bool *f = arena_alloc(sizeof(bool) * (size_t)c->cap);
        if (u->is_float)
            memcpy(f, u->is_float, sizeof(bool) * (size_t)u->nvars);
        u->is_float = f;
    }
    int v = u->nvars++;
    u->is_float[v] = is_float;
    if (role != LOCAL) {
        vec_push(role == CONST ? &u->consts : role == REF ? &u->refs : &u->args, arg);
        vec_push(role == CONST ? &u->const_vars : role == REF ? &u->ref_vars : &u->arg_vars, (void *)(intptr_t)v);
    }
    put(&c->key, "v%d%c%c", v, is_float ? 'f' : 'i', "larc"[role]);
    return v;
}

/* The unit's variable for kernel variable v: local when nothing outside the
 * unit mentions v, else an argument: v's value, or v itself when the unit
 * sets it. The batch size n stays itself: every unit's function takes it. */
static int unit_var(Cut *c, int v, bool is_float)
{
    if (v == 0 || c->map[v]) {
        put(&c->key, "v%d", c->map[v]);
        return c->map[v];
    }
    if (c->uses[v] == c->refs[v])
        return c->map[v] = new_var(c, is_float, LOCAL, NULL);
    Expr *arg = arena_alloc(sizeof *arg);
    arg->kind = is_float ? X_GET : X_VAR, arg->var = v;
    return c->map[v] = new_var(c, is_float, c->writes[v] ? REF : ARG, arg);
}

/* The unit's variable holding constant e. */
static int const_var(Cut *c, const Expr *e)
{
    bool f = e->kind == X_FLT;
    const char *text = f ? arena_printf("f%a", (double)e->fval) : arena_printf("i%lld", (long long)e->ival);
    intptr_t v = (intptr_t)map_get(&c->consts, text);
    if (v) {
        put(&c->key, "v%d", (int)v);
        return (int)v;
    }
    Expr *val = arena_alloc(sizeof *val);
    *val = *e;
    v = new_var(c, f, CONST, val);
    map_put(&c->consts, text, (void *)v);
    return (int)v;
}

/* The unit's buffer for b: one per address (a batched workspace buffer's
 * offset counts per example, so it is not another's at the same offset).
 * Its base is part of the code; where in the base it lies is not. */
static const Buf *unit_buf(Cut *c, const Buf *b)
{
    Vec *bufs = &c->u->bufs;
    for (int i = 0; i < bufs->n; i++) {
        const Buf *o = bufs->at[i];
        if (o->base == b->base && o->offset == b->offset && o->batched == b->batched) {
            put(&c->key, "b%d", i);
            return o;
        }
    }
    put(&c->key, "b%d.%d", bufs->n, b->base);
    vec_push(bufs, (void *)b);
    return b;
}

static bool float_kept(float v)
{
    return v == 0 || v == 1 || v == -1 || v == 1.0f / 0.0f || v == -1.0f / 0.0f;
}

/* A copy of e over the unit's variables; `keep`: a constant stays one.
 * `inner` is the kernel variable of the innermost loop around e. */
static Expr *copy_expr(Cut *c, const Expr *e, int inner, bool keep)
{
    if (!e)
        return NULL;
    Expr *x = arena_alloc(sizeof *x);
    *x = *e;
    if (e->kind == X_INT && !keep && e->ival != 0 && e->ival != 1) {
        x->kind = X_VAR, x->var = const_var(c, e);
        return x;
    }
    if (e->kind == X_FLT && !float_kept(e->fval)) {
        x->kind = X_GET, x->var = const_var(c, e);
        return x;
    }
    put(&c->key, "(%d", e->kind);
    if (e->kind == X_LABEL || e->kind == X_ARG || e->kind == X_RAND)
        c->u->train = true;
    if (e->kind == X_INT)
        put(&c->key, " %lld", (long long)e->ival);
    else if (e->kind == X_FLT)
        put(&c->key, " %a", (double)e->fval);
    else if (e->kind == X_ARG || e->kind == X_RAND)
        put(&c->key, " %lld", (long long)e->ival);
    else if (e->kind == X_VAR || e->kind == X_GET)
        x->var = unit_var(c, e->var, e->kind == X_GET);
    else if (e->kind == X_LOAD)
        x->buf = unit_buf(c, e->buf);
    /* i * s with i the innermost loop's variable: s is the stride that matters */
    bool stride = e->kind == X_IMUL && inner >= 0;
    x->a = copy_expr(c, e->a, inner, stride && e->a->kind == X_INT && mentions_var(e->b, inner));
    x->b = copy_expr(c, e->b, inner, stride && e->b->kind == X_INT && mentions_var(e->a, inner));
    x->c = copy_expr(c, e->c, inner, false);
    put(&c->key, ")");
    return x;
}

static bool has_for(const LStmt *s)
{
    for (int i = 0; i < s->body.n; i++) {
        const LStmt *b = s->body.at[i];
        if (b->kind == L_FOR || has_for(b))
            return true;
    }
    return false;
}

static LStmt *copy_stmt(Cut *c, const LStmt *s, int inner)
{
    LStmt *x = arena_alloc(sizeof *x);
    *x = *s;
    x->body = (Vec){0};
    put(&c->key, "[%d%s", s->kind, s->accumulate ? "+" : "");
    bool innermost = s->kind == L_FOR && !has_for(s);
    if (s->kind == L_FOR)
        inner = s->var;
    x->lo = copy_expr(c, s->lo, inner, false);
    x->hi = copy_expr(c, s->hi, inner, innermost && s->hi->kind == X_INT && s->hi->ival <= SMALL_TRIP);
    if (s->kind == L_FOR || s->kind == L_SET)
        x->var = unit_var(c, s->var, s->kind == L_SET);
    if (s->buf)
        x->buf = unit_buf(c, s->buf);
    x->idx = copy_expr(c, s->idx, inner, false);
    x->val = copy_expr(c, s->val, inner, false);
    x->cond = copy_expr(c, s->cond, inner, false);
    for (int i = 0; i < s->body.n; i++)
        vec_push(&x->body, copy_stmt(c, s->body.at[i], inner));
    put(&c->key, "]");
    return x;
}

bool share_unit(const Kernel *k, const int *refs, const LStmt *s, Unit *u)
{
    if (s->kind != L_FOR || !stmt_ok(s))
        return false;
    int *uses = calloc((size_t)k->nvars + 1, sizeof(int)), *writes = calloc((size_t)k->nvars + 1, sizeof(int));
    count_stmt(s, uses, writes);
    *u = (Unit){.nvars = 1};
    Cut c = {.refs = refs, .uses = uses, .writes = writes, .map = calloc((size_t)k->nvars + 1, sizeof(int)), .u = u};
    u->body = copy_stmt(&c, s, -1);
    u->key = arena_strndup(c.key.text, c.key.len);
    free(c.key.text), free(c.map), free(uses), free(writes);
    return true;
}
