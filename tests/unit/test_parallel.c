/* test_parallel.c: which loop nests may run in parts across threads
 * (parallel.c), on nests built by hand: disjoint writes are accepted, any
 * overlap between iterations, a value carried from one iteration to the
 * next, or an index the check cannot bound is refused. */
#include "unit.h"

TestSuite(parallel, .fini = unit_teardown);

/* ---- building loop IR ------------------------------------------------------- */

static Buf bx = {.name = "x"}, by = {.name = "y"};

static Expr *ex(XKind k, Expr *a, Expr *b)
{
    Expr *e = arena_alloc(sizeof *e);
    e->kind = k, e->a = a, e->b = b;
    return e;
}

static Expr *num(int64_t v)
{
    Expr *e = ex(X_INT, NULL, NULL);
    e->ival = v;
    return e;
}

static Expr *var(int v)
{
    Expr *e = ex(X_VAR, NULL, NULL);
    e->var = v;
    return e;
}

static Expr *get(int v)
{
    Expr *e = ex(X_GET, NULL, NULL);
    e->var = v;
    return e;
}

/* a v + b */
static Expr *lin(int64_t a, int v, Expr *b) { return ex(X_IADD, ex(X_IMUL, num(a), var(v)), b); }

static Expr *load(Buf *b, Expr *i)
{
    Expr *e = ex(X_LOAD, i, NULL);
    e->buf = b;
    return e;
}

static LStmt *loop(int v, Expr *hi, LStmt *a, LStmt *b)
{
    LStmt *s = arena_alloc(sizeof *s);
    s->kind = L_FOR, s->var = v, s->lo = num(0), s->hi = hi;
    vec_push(&s->body, a);
    if (b)
        vec_push(&s->body, b);
    return s;
}

static LStmt *store(Buf *b, Expr *i, Expr *val, bool acc)
{
    LStmt *s = arena_alloc(sizeof *s);
    s->kind = L_STORE, s->buf = b, s->idx = i, s->val = val, s->accumulate = acc;
    return s;
}

static LStmt *set(int v, Expr *val)
{
    LStmt *s = arena_alloc(sizeof *s);
    s->kind = L_SET, s->var = v, s->val = val;
    return s;
}

/* ---- the cases -------------------------------------------------------------- */

/* for v in [0, 8): for i in [0, 4): y[4 v + i] = x[4 v + i] */
Test(parallel, disjoint_rows)
{
    LStmt *s = loop(1, num(8), loop(2, num(4), store(&by, lin(4, 1, var(2)), load(&bx, lin(4, 1, var(2))), false), NULL), NULL);
    cr_assert(parallel_nest(s));
}

/* a padded copy: y[(v 58 + i + 1) 58 + j + 1], i, j < 56: rows stay inside a channel */
Test(parallel, padded_copy)
{
    Expr *row = ex(X_IADD, ex(X_IMUL, ex(X_IADD, ex(X_IMUL, var(1), num(58)), ex(X_IADD, var(2), num(1))), num(58)),
                   ex(X_IADD, var(3), num(1)));
    LStmt *s = loop(1, num(64), loop(2, num(56), loop(3, num(56), store(&by, row, num(0), false), NULL), NULL), NULL);
    cr_assert(parallel_nest(s));
}

/* for v: for i in [0, 5): y[4 v + i] = 0: iterations overlap by one */
Test(parallel, overlapping_writes)
{
    LStmt *s = loop(1, num(8), loop(2, num(5), store(&by, lin(4, 1, var(2)), num(0), false), NULL), NULL);
    cr_assert_not(parallel_nest(s));
}

/* for v: y[v] = y[v + 1]: reads what the next iteration writes */
Test(parallel, reads_next_iteration)
{
    LStmt *s = loop(1, num(8), store(&by, var(1), load(&by, ex(X_IADD, var(1), num(1))), false), NULL);
    cr_assert_not(parallel_nest(s));
}

/* for v: for i: y[i] += x[4 v + i]: a sum over v */
Test(parallel, sum_over_outer)
{
    LStmt *s = loop(1, num(8), loop(2, num(4), store(&by, var(2), load(&bx, lin(4, 1, var(2))), true), NULL), NULL);
    cr_assert_not(parallel_nest(s));
}

/* for v: s = s + x[v]; y[v] = s: a running sum carried across iterations */
Test(parallel, carried_scalar)
{
    LStmt *s = loop(1, num(8), set(3, ex(X_ADD, get(3), load(&bx, var(1)))), store(&by, var(1), get(3), false));
    cr_assert_not(parallel_nest(s));
}

/* for v: s = x[v]; y[v] = s s: a scalar set afresh each iteration */
Test(parallel, fresh_scalar)
{
    LStmt *s = loop(1, num(8), set(3, load(&bx, var(1))), store(&by, var(1), ex(X_MUL, get(3), get(3)), false));
    cr_assert(parallel_nest(s));
}

/* for v: for b in [0, n): y[8 b + v] = 0: the inner bound is not known */
Test(parallel, unbounded_inner)
{
    LStmt *s = loop(1, num(8), loop(2, var(0), store(&by, lin(8, 2, var(1)), num(0), false), NULL), NULL);
    cr_assert_not(parallel_nest(s));
    s->parallel = true;                 /* the lowering knows better (a batchnorm's channels) */
    cr_assert(parallel_nest(s));
}

/* for v: y[32 w + v] = 0, w a loop around the nest: fixed during it */
Test(parallel, outer_variable)
{
    LStmt *s = loop(1, num(32), store(&by, lin(32, 9, var(1)), num(0), false), NULL);
    cr_assert(parallel_nest(s));
}

/* for v: y[v] = 0; y[32 w + v] = 1: the same buffer at two different shifts */
Test(parallel, two_shifts)
{
    LStmt *s = loop(1, num(32), store(&by, var(1), num(0), false), store(&by, lin(32, 9, var(1)), num(1), false));
    cr_assert_not(parallel_nest(s));
}

/* a nest of 64 x 56 x 56 statements is worth splitting; n counts once */
Test(parallel, work)
{
    bool per_n;
    LStmt *s = loop(1, num(64), loop(2, num(56), loop(3, var(0), store(&by, var(2), num(0), false), NULL), NULL), NULL);
    cr_assert_float_eq(parallel_work(s, &per_n), 64.0 * 56, 1e-9);
    cr_assert(per_n);
}

/* for v in [0, 8): for i in [0, 4): y[4 v + i] = x; y[100 + 4 v + i] = x:
 * the rows of each iteration in two blocks of 100 (a Winograd input
 * transform's planes), which the 8 iterations' 32 cells fit */
Test(parallel, interleaved_blocks)
{
    LStmt *s = loop(1, num(8), loop(2, num(4), store(&by, lin(4, 1, var(2)), load(&bx, var(2)), false),
                                    store(&by, ex(X_IADD, num(100), lin(4, 1, var(2))), num(1), false)), NULL);
    cr_assert(parallel_nest(s));
    /* and a loop over the blocks inside: y[100 j + 4 v + i] */
    LStmt *t = loop(1, num(8), loop(3, num(36), loop(2, num(4), store(&by, lin(100, 3, lin(4, 1, var(2))), num(0), false), NULL), NULL), NULL);
    cr_assert(parallel_nest(t));
}

/* blocks of 30 are too small for 8 rows of 4: iteration 7's row in block 0
 * (cells 28..31) meets iteration 0's in block 1 (30..33) */
Test(parallel, blocks_too_small)
{
    LStmt *s = loop(1, num(8), loop(2, num(4), store(&by, lin(4, 1, var(2)), num(0), false),
                                    store(&by, ex(X_IADD, num(30), lin(4, 1, var(2))), num(1), false)), NULL);
    cr_assert_not(parallel_nest(s));
}

/* blocks of 100 but a row of 5 cells at stride 4: neighbours overlap */
Test(parallel, blocks_rows_overlap)
{
    LStmt *s = loop(1, num(8), loop(2, num(5), store(&by, lin(4, 1, var(2)), num(0), false),
                                    store(&by, ex(X_IADD, num(100), lin(4, 1, var(2))), num(1), false)), NULL);
    cr_assert_not(parallel_nest(s));
}

/* with the outer loop over n (no constant trip), blocks prove nothing */
Test(parallel, blocks_need_trip)
{
    LStmt *s = loop(1, var(0), loop(2, num(4), store(&by, lin(4, 1, var(2)), num(0), false),
                                    store(&by, ex(X_IADD, num(100), lin(4, 1, var(2))), num(1), false)), NULL);
    cr_assert_not(parallel_nest(s));
}

/* for v in [0, 3): for i in [7 w, 7 w + 7): y[16 v + i - 7 w] = x, w a loop
 * around the nest (an im2col chunk of rows): rows of 7 under the stride 16 */
static LStmt *shifted(int64_t stride, Expr *hi)
{
    Expr *row = ex(X_IADD, lin(stride, 1, var(2)), ex(X_IMUL, num(-7), var(9)));
    LStmt *in = loop(2, hi, store(&by, row, load(&bx, var(2)), false), NULL);
    in->lo = ex(X_IMUL, num(7), var(9));
    return loop(1, num(3), in, NULL);
}

Test(parallel, shifted_bounds)
{
    cr_assert(parallel_nest(shifted(16, ex(X_IADD, ex(X_IMUL, num(7), var(9)), num(7)))));
    /* rows of 7 at stride 4 overlap */
    cr_assert_not(parallel_nest(shifted(4, ex(X_IADD, ex(X_IMUL, num(7), var(9)), num(7)))));
    /* [7 w, 8 w): a trip that depends on w */
    cr_assert_not(parallel_nest(shifted(16, ex(X_IMUL, num(8), var(9)))));
}

/* for v in [0, 36): C[100 v ...] = A[64 v ...] B[..]: 8 x 12 GEMMs whose
 * Cs (7 ldc + 12 cells) fit their step of `c_step` */
static LStmt *gemm_loop(int64_t c_step, Buf *c)
{
    static Buf ba = {.name = "a"}, bb = {.name = "b"};
    Gemm *g = arena_alloc(sizeof *g);
    g->M = num(8), g->K = num(4), g->N = 12;
    g->a = &ba, g->b = &bb, g->c = c;
    g->a_at = lin(64, 1, num(0)), g->b_at = num(0), g->c_at = lin(c_step, 1, num(0));
    g->sai = 4, g->sak = 1, g->ldb = 12, g->ldc = 12;
    LStmt *s = arena_alloc(sizeof *s);
    s->kind = L_GEMM, s->gemm = g;
    return loop(1, num(36), s, NULL);
}

Test(parallel, gemms)
{
    cr_assert(parallel_gemms(gemm_loop(96, &by)));
    cr_assert_not(parallel_gemms(gemm_loop(95, &by)));        /* the Cs overlap */
    cr_assert_not(parallel_gemms(gemm_loop(0, &by)));         /* one C for all */
    LStmt *s = gemm_loop(96, &by);
    ((LStmt *)s->body.at[0])->gemm->b = ((LStmt *)s->body.at[0])->gemm->c;
    cr_assert_not(parallel_gemms(s));                         /* C is B */
}
