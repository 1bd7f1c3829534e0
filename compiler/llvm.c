/* llvm.c: lowers the loop IR to LLVM IR with the LLVM-C API, adds the network's
 * descriptor and its C API, then verifies, optimizes for the target CPU and
 * writes an object file (or IR, or assembly).
 */
#include "cnnc.h"

#include <llvm-c/Analysis.h>
#include <llvm-c/Core.h>
#include <llvm-c/DebugInfo.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include <stdlib.h>
#include <string.h>

/* The state of emitting one module. */
typedef struct {
    LLVMContextRef ctx;
    LLVMModuleRef mod;
    LLVMBuilderRef b;
    LLVMTypeRef i1, i32, i64, f32, f64, ptr, voidt;
    /* the kernel being emitted */
    LLVMValueRef fn, n, base[NBASES];   /* base[BASE_PRIV]: made when first used */
    LLVMValueRef first, total, seed;   /* the training kernel's arguments */
    LLVMValueRef grads_ctx;            /* and its last: rt_grads_ready's context */
    const Ready *ready;                /* its points where gradients are final (ready.c) */
    int nready;
    LLVMTypeRef gemm_type;             /* the GEMM routines' signature (made when first called) */
    bool sanitize;
    bool masks;                        /* AVX-512: short rows end in a masked vector (fold_tail) */
    int64_t private_bytes;             /* what each function asks of rt_private */
    /* --profile: each statement of a kernel that begins a layer (a comment in
     * the loop IR) marks the time (rt_prof_mark); prof_on in kernels only */
    bool profile, prof_on;
    Vec prof_labels;                   /* const char *: the layers, by mark id */
    Map prof_ids;                      /* a statement's address -> its id + 1 */
    LLVMValueRef prof_ns;              /* the table of times (a placeholder until the end) */
    /* alias scopes of the kernel's buffers: one per (base, offset) */
    struct Scope { Base base; int64_t offset; bool batched; LLVMValueRef scope, others; } *scopes;
    int nscopes;
    LLVMValueRef *vars;          /* per loop-IR variable: its alloca */
    const Kernel *k;
    const Buf **cached; LLVMValueRef *cached_ptr; int ncached;
    /* shared loop nests (see share.c) */
    bool share;                  /* emit loop nests as shared functions (not --no-share) */
    const int *refs;             /* the kernel's variable references; NULL: emit nests inline */
    Map units;                   /* a unit's key -> its function */
    int nunits;
    const LStmt *part_loop;      /* in a unit run in parts: its outer loop, */
    LLVMValueRef part_lo, part_hi;   /* which runs over [part_lo, part_hi) */
} Emit;

/* ---- alias scopes ---------------------------------------------------------- */

/* Distinct buffers never overlap, but they are all offsets of the same few
 * pointers, so LLVM cannot know it: without help it versions every vectorized
 * loop behind runtime overlap checks. Each buffer gets an alias scope; every
 * load and store says which scope it is in and that it is in no other. */

/* distinct !{self, ops...} */
static LLVMMetadataRef self_node(Emit *E, LLVMMetadataRef *ops, int n)
{
    LLVMMetadataRef temp = LLVMTemporaryMDNode(E->ctx, NULL, 0), all[4] = {temp};
    for (int i = 0; i < n; i++)
        all[i + 1] = ops[i];
    LLVMMetadataRef node = LLVMMDNodeInContext2(E->ctx, all, (size_t)n + 1);
    LLVMMetadataReplaceAllUsesWith(temp, node);
    return node;
}

static int scope_of(const Emit *E, const Buf *b)
{
    for (int i = 0; i < E->nscopes; i++)
        if (E->scopes[i].base == b->base && E->scopes[i].offset == b->offset && E->scopes[i].batched == b->batched)
            return i;
    return -1;
}

static void add_scope(Emit *E, const Buf *b)
{
    if (!b || scope_of(E, b) >= 0)
        return;
    E->scopes = realloc(E->scopes, sizeof *E->scopes * (size_t)(E->nscopes + 1));
    E->scopes[E->nscopes++] = (struct Scope){b->base, b->offset, b->batched, NULL, NULL};
}

static void collect_expr(Emit *E, const Expr *e)
{
    if (!e)
        return;
    if (e->kind == X_LOAD)
        add_scope(E, e->buf);
    collect_expr(E, e->a), collect_expr(E, e->b), collect_expr(E, e->c);
}

static void collect(Emit *E, const Vec *body)
{
    for (int i = 0; i < body->n; i++) {
        const LStmt *s = body->at[i];
        add_scope(E, s->buf);
        collect_expr(E, s->idx), collect_expr(E, s->val), collect_expr(E, s->cond);
        collect(E, &s->body);
    }
}

/* The metadata of the scopes collected, in a domain called `name`: each
 * scope, and for each the list of all the others. */
static void scope_metadata(Emit *E, const char *name)
{
    LLVMMetadataRef str = LLVMMDStringInContext2(E->ctx, name, strlen(name));
    LLVMMetadataRef domain = self_node(E, &str, 1);
    LLVMMetadataRef *all = malloc(sizeof *all * (size_t)(E->nscopes + 1));
    for (int i = 0; i < E->nscopes; i++)
        all[i] = self_node(E, &domain, 1);
    LLVMMetadataRef *others = malloc(sizeof *others * (size_t)(E->nscopes + 1));
    for (int i = 0; i < E->nscopes; i++) {
        int n = 0;
        for (int j = 0; j < E->nscopes; j++)
            if (j != i)
                others[n++] = all[j];
        E->scopes[i].scope = LLVMMetadataAsValue(E->ctx, LLVMMDNodeInContext2(E->ctx, &all[i], 1));
        E->scopes[i].others = LLVMMetadataAsValue(E->ctx, LLVMMDNodeInContext2(E->ctx, others, (size_t)n));
    }
    free(all), free(others);
}

/* The scopes of every buffer the kernel touches. */
static void make_scopes(Emit *E, const Kernel *k)
{
    free(E->scopes);
    E->scopes = NULL, E->nscopes = 0;
    collect(E, &k->body);
    scope_metadata(E, k->name);
}

static LLVMValueRef tag(Emit *E, LLVMValueRef inst, const Buf *b)
{
    int i = scope_of(E, b);
    if (i < 0)
        return inst;
    LLVMSetMetadata(inst, LLVMGetMDKindIDInContext(E->ctx, "alias.scope", 11), E->scopes[i].scope);
    LLVMSetMetadata(inst, LLVMGetMDKindIDInContext(E->ctx, "noalias", 7), E->scopes[i].others);
    return inst;
}

/* ---- expressions ---------------------------------------------------------- */

static bool int_kind(XKind k) { return k <= X_FTOI; }

static LLVMValueRef expr(Emit *E, const Expr *e);

static LLVMValueRef intrinsic(Emit *E, const char *name, LLVMValueRef *args, int nargs)
{
    LLVMTypeRef types[1] = {E->f32};
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    LLVMValueRef fn = LLVMGetIntrinsicDeclaration(E->mod, id, types, 1);
    LLVMTypeRef fty = LLVMIntrinsicGetType(E->ctx, id, types, 1);
    return LLVMBuildCall2(E->b, fty, fn, args, (unsigned)nargs, "");
}

/* A call to a libm function float(float), for what LLVM has no intrinsic. */
static LLVMValueRef libm(Emit *E, const char *name, LLVMValueRef x)
{
    LLVMTypeRef fty = LLVMFunctionType(E->f32, &E->f32, 1, 0);
    LLVMValueRef fn = LLVMGetNamedFunction(E->mod, name);
    if (!fn)
        fn = LLVMAddFunction(E->mod, name, fty);
    return LLVMBuildCall2(E->b, fty, fn, &x, 1, "");
}

/* Fast-math: reassociation (so reductions vectorize) and contraction (FMA),
 * but NaN and infinity keep their meaning. */
static LLVMValueRef fast(LLVMValueRef v)
{
    if (LLVMCanValueUseFastMathFlags(v))
        LLVMSetFastMathFlags(v, LLVMFastMathAllowReassoc | LLVMFastMathAllowContract |
                                    LLVMFastMathNoSignedZeros);
    return v;
}

/* The calling thread's private scratch (BASE_PRIV), asked of the runtime
 * once per function, at the builder's place in its entry block:
 * rt_private(bytes). Every function asks the same size (the module's
 * largest), so a call never moves what an earlier one returned. */
static LLVMValueRef private_base(Emit *E)
{
    if (E->base[BASE_PRIV])
        return E->base[BASE_PRIV];
    LLVMTypeRef fty = LLVMFunctionType(E->ptr, &E->i64, 1, 0);
    LLVMValueRef rt = LLVMGetNamedFunction(E->mod, "rt_private");
    if (!rt)
        rt = LLVMAddFunction(E->mod, "rt_private", fty);
    LLVMValueRef bytes = LLVMConstInt(E->i64, (unsigned long long)E->private_bytes, 0);
    return E->base[BASE_PRIV] = LLVMBuildCall2(E->b, fty, rt, &bytes, 1, "private");
}

/* The address of buf's element 0: a base argument plus the buffer's offset. */
static LLVMValueRef buf_ptr(Emit *E, const Buf *buf)
{
    for (int i = 0; i < E->ncached; i++)
        if (E->cached[i] == buf)
            return E->cached_ptr[i];
    LLVMBasicBlockRef here = LLVMGetInsertBlock(E->b);
    LLVMBasicBlockRef entry = LLVMGetEntryBasicBlock(E->fn);
    LLVMPositionBuilderBefore(E->b, LLVMGetLastInstruction(entry));     /* before the branch */
    LLVMValueRef off = LLVMConstInt(E->i64, (unsigned long long)buf->offset, 0);
    if (buf->base == BASE_WS && buf->batched)      /* ws + fixed + offset * n */
        off = LLVMBuildAdd(E->b, LLVMBuildMul(E->b, off, E->n, ""),
                           LLVMConstInt(E->i64, (unsigned long long)E->k->ws_fixed, 0), "");
    LLVMValueRef base = buf->base == BASE_PRIV ? private_base(E) : E->base[buf->base];
    LLVMValueRef p = LLVMBuildGEP2(E->b, E->f32, base, &off, 1, buf->name);
    LLVMPositionBuilderAtEnd(E->b, here);
    E->cached = realloc(E->cached, sizeof(Buf *) * (size_t)(E->ncached + 1));
    E->cached_ptr = realloc(E->cached_ptr, sizeof(LLVMValueRef) * (size_t)(E->ncached + 1));
    E->cached[E->ncached] = buf, E->cached_ptr[E->ncached++] = p;
    return p;
}

static LLVMValueRef address(Emit *E, const Buf *buf, const Expr *idx)
{
    LLVMValueRef i = expr(E, idx);
    return LLVMBuildInBoundsGEP2(E->b, E->f32, buf_ptr(E, buf), &i, 1, "");
}

static bool is_int(const Expr *e) { return int_kind(e->kind) || e->kind == X_LABEL || e->kind == X_ARG; }

static LLVMValueRef compare(Emit *E, const Expr *e)
{
    LLVMValueRef a = expr(E, e->a), c = expr(E, e->b);
    if (is_int(e->a))
        return LLVMBuildICmp(E->b, e->kind == X_LT ? LLVMIntSLT : e->kind == X_LE ? LLVMIntSLE : LLVMIntEQ, a, c, "");
    return LLVMBuildFCmp(E->b, e->kind == X_LT ? LLVMRealOLT : e->kind == X_LE ? LLVMRealOLE : LLVMRealOEQ, a, c, "");
}

/* The label of example a: an int32 of the y argument. */
static LLVMValueRef label(Emit *E, const Expr *e)
{
    LLVMValueRef i = expr(E, e->a);
    LLVMValueRef p = LLVMBuildInBoundsGEP2(E->b, E->i32, E->base[BASE_Y], &i, 1, "");
    return LLVMBuildSExt(E->b, LLVMBuildLoad2(E->b, E->i32, p, ""), E->i64, "");
}

/* rand(seed, salt, index): splitmix64's finalizer of a mix of the three,
 * its top 24 bits as a float in [0, 1). Counter-based: no state to carry. */
static LLVMValueRef rand01(Emit *E, const Expr *e)
{
    LLVMValueRef h = LLVMBuildXor(E->b, E->seed, LLVMConstInt(E->i64, (unsigned long long)e->ival * 0x9E3779B97F4A7C15ull, 0), "");
    h = LLVMBuildAdd(E->b, LLVMBuildMul(E->b, h, LLVMConstInt(E->i64, 0x100000001B3ull, 0), ""), expr(E, e->a), "");
    static const unsigned long long mul[2] = {0xBF58476D1CE4E5B9ull, 0x94D049BB133111EBull};
    static const int shift[3] = {30, 27, 31};
    for (int i = 0; i < 3; i++) {
        h = LLVMBuildXor(E->b, h, LLVMBuildLShr(E->b, h, LLVMConstInt(E->i64, (unsigned)shift[i], 0), ""), "");
        if (i < 2)
            h = LLVMBuildMul(E->b, h, LLVMConstInt(E->i64, mul[i], 0), "");
    }
    LLVMValueRef top = LLVMBuildLShr(E->b, h, LLVMConstInt(E->i64, 40, 0), "");
    return LLVMBuildFMul(E->b, LLVMBuildUIToFP(E->b, top, E->f32, ""), LLVMConstReal(E->f32, 0x1.0p-24), "");
}

static LLVMValueRef float_op(Emit *E, const Expr *e)
{
    LLVMValueRef a = expr(E, e->a), c = e->b ? expr(E, e->b) : NULL, args[2] = {a, c};
    switch (e->kind) {
    case X_ADD:  return fast(LLVMBuildFAdd(E->b, a, c, ""));
    case X_SUB:  return fast(LLVMBuildFSub(E->b, a, c, ""));
    case X_MUL:  return fast(LLVMBuildFMul(E->b, a, c, ""));
    case X_DIV:  return fast(LLVMBuildFDiv(E->b, a, c, ""));
    case X_NEG:  return fast(LLVMBuildFNeg(E->b, a, ""));
    case X_MAX:  return intrinsic(E, "llvm.maxnum", args, 2);
    case X_MIN:  return intrinsic(E, "llvm.minnum", args, 2);
    case X_POW:  return intrinsic(E, "llvm.pow", args, 2);
    case X_EXP:  return intrinsic(E, "llvm.exp", args, 1);
    case X_LOG:  return intrinsic(E, "llvm.log", args, 1);
    case X_SQRT: return intrinsic(E, "llvm.sqrt", args, 1);
    case X_ABS:  return intrinsic(E, "llvm.fabs", args, 1);
    case X_TANH: return libm(E, "tanhf", a);
    case X_FLOOR: return intrinsic(E, "llvm.floor", args, 1);
    case X_TRUNC: return intrinsic(E, "llvm.trunc", args, 1);
    default:     internal_error("llvm: float op %d", e->kind);
    }
}

static LLVMValueRef expr(Emit *E, const Expr *e)
{
    switch (e->kind) {
    case X_INT:  return LLVMConstInt(E->i64, (unsigned long long)e->ival, 1);
    case X_FLT:  return LLVMConstReal(E->f32, e->fval);
    case X_VAR:  return e->var ? LLVMBuildLoad2(E->b, E->i64, E->vars[e->var], "") : E->n;
    case X_GET:  return LLVMBuildLoad2(E->b, E->f32, E->vars[e->var], "");
    case X_IADD: return LLVMBuildNSWAdd(E->b, expr(E, e->a), expr(E, e->b), "");
    case X_IMUL: return LLVMBuildNSWMul(E->b, expr(E, e->a), expr(E, e->b), "");
    case X_IDIV: return LLVMBuildUDiv(E->b, expr(E, e->a), expr(E, e->b), "");
    case X_IMIN:
    case X_IMAX: {
        LLVMValueRef a = expr(E, e->a), c = expr(E, e->b);
        LLVMValueRef lt = LLVMBuildICmp(E->b, LLVMIntSLT, a, c, "");
        return e->kind == X_IMIN ? LLVMBuildSelect(E->b, lt, a, c, "") : LLVMBuildSelect(E->b, lt, c, a, "");
    }
    case X_LOAD: return tag(E, LLVMBuildLoad2(E->b, E->f32, address(E, e->buf, e->a), ""), e->buf);
    case X_ITOF: return LLVMBuildSIToFP(E->b, expr(E, e->a), E->f32, "");
    case X_FTOI: return LLVMBuildFPToSI(E->b, expr(E, e->a), E->i64, "");
    case X_LT:
    case X_LE:
    case X_EQ:   return compare(E, e);
    case X_LABEL: return label(E, e);
    case X_ARG:  return e->ival ? E->total : E->first;
    case X_RAND: return rand01(E, e);
    case X_AND:  return LLVMBuildAnd(E->b, expr(E, e->a), expr(E, e->b), "");
    case X_SELECT: {
        LLVMValueRef c = expr(E, e->a), t = expr(E, e->b), f = expr(E, e->c);
        return LLVMBuildSelect(E->b, c, t, f, "");
    }
    default:     return float_op(E, e);
    }
}

/* ---- statements ----------------------------------------------------------- */

static void stmts(Emit *E, const Vec *body);

static bool has_loop(const Vec *body)
{
    for (int i = 0; i < body->n; i++) {
        const LStmt *s = body->at[i];
        if (s->kind == L_FOR || (s->kind == L_IF && has_loop(&s->body)))
            return true;
    }
    return false;
}

/* !llvm.loop !{self, !{"llvm.loop.unroll.disable"}}: unrolling outer loops
 * copies whole inner loop nests, which costs compile time and buys nothing */
static void no_unroll(Emit *E, LLVMValueRef branch)
{
    LLVMMetadataRef temp = LLVMTemporaryMDNode(E->ctx, NULL, 0);
    LLVMMetadataRef name = LLVMMDStringInContext2(E->ctx, "llvm.loop.unroll.disable", 24);
    LLVMMetadataRef ops[2] = {temp, LLVMMDNodeInContext2(E->ctx, &name, 1)};
    LLVMMetadataRef id = LLVMMDNodeInContext2(E->ctx, ops, 2);
    LLVMMetadataReplaceAllUsesWith(temp, id);
    unsigned kind = LLVMGetMDKindIDInContext(E->ctx, "llvm.loop", 9);
    LLVMSetMetadata(branch, kind, LLVMMetadataAsValue(E->ctx, id));
}

/* Whether innermost loop s runs a short row whose length is no multiple of
 * the vector (a 28x28 or 56x56 image's rows) and reads and writes only
 * along it (a masked stride-2 read would be a gather: a stride-2 layer's
 * phased copy measured 40% slower folded). Without help LLVM vectorizes
 * such a row with narrower vectors, or leaves its remainder scalar: a
 * 28-cell row is 16 cells in one vector and 12 one at a time. Folded, on
 * AVX-512: two vectors, the second masked. Two depthwise 3x3 layers of 192
 * channels at 28x28, one thread (AMD EPYC Zen 5, alternating runs): 194-219
 * us -> 76-90 us; of 144 channels at 56x56, 330-343 -> 290-304 us. */
enum { SHORT_ROW = 256, ROW_LANES = 16 };

/* The coefficient of loop variable v in index e, or false when e is not
 * affine in v (v under a division, a min or max, a select). Unlike
 * parallel.c's coef_of, the parts without v may be anything (a window's
 * row, n). */
static bool step_of(const Expr *e, int v, int64_t *c)
{
    int64_t a = 0, b = 0;
    switch (e->kind) {
    case X_INT:  *c = 0; return true;
    case X_VAR:  *c = e->var == v; return true;
    case X_IADD: return step_of(e->a, v, &a) && step_of(e->b, v, &b) && (*c = a + b, true);
    case X_IMUL:
        if (e->a->kind == X_INT)
            return step_of(e->b, v, &b) && (*c = e->a->ival * b, true);
        if (e->b->kind == X_INT)
            return step_of(e->a, v, &a) && (*c = a * e->b->ival, true);
        break;
    default:
        break;
    }
    return !mentions_var(e, v) && (*c = 0, true);
}

/* Whether index e steps by one float or none along v. */
static bool unit_step(const Expr *e, int v)
{
    int64_t c;
    return step_of(e, v, &c) && (c == 0 || c == 1);
}

/* Whether every load and store under e / s steps by one float or none
 * along v (no stride-2 reads: masked, they become gathers). */
static bool unit_steps_expr(const Expr *e, int v)
{
    if (!e)
        return true;
    if (e->kind == X_LOAD && !unit_step(e->a, v))
        return false;
    return unit_steps_expr(e->a, v) && unit_steps_expr(e->b, v) && unit_steps_expr(e->c, v);
}

static bool unit_steps(const LStmt *s, int v)
{
    if (s->kind == L_STORE && !unit_step(s->idx, v))
        return false;
    if (!unit_steps_expr(s->val, v) || !unit_steps_expr(s->idx, v) || !unit_steps_expr(s->cond, v))
        return false;
    for (int i = 0; i < s->body.n; i++)
        if (!unit_steps(s->body.at[i], v))
            return false;
    return true;
}

static bool masked_tail(const LStmt *s)
{
    if (s->lo->kind != X_INT || s->hi->kind != X_INT)
        return false;
    int64_t trip = s->hi->ival - s->lo->ival;
    if (trip <= 1 || trip >= SHORT_ROW || trip % ROW_LANES == 0)
        return false;
    for (int i = 0; i < s->body.n; i++)
        if (!unit_steps(s->body.at[i], s->var))
            return false;
    return true;
}

/* !llvm.loop !{self, !{"llvm.loop.vectorize.predicate.enable", true}}: the
 * loop vectorized with full vectors and its last one masked (AVX-512's
 * masked loads and stores), not a scalar remainder. */
static void fold_tail(Emit *E, LLVMValueRef branch)
{
    LLVMMetadataRef temp = LLVMTemporaryMDNode(E->ctx, NULL, 0);
    LLVMMetadataRef opt[2] = {LLVMMDStringInContext2(E->ctx, "llvm.loop.vectorize.predicate.enable", 36),
                              LLVMValueAsMetadata(LLVMConstInt(E->i1, 1, 0))};
    LLVMMetadataRef ops[2] = {temp, LLVMMDNodeInContext2(E->ctx, opt, 2)};
    LLVMMetadataRef id = LLVMMDNodeInContext2(E->ctx, ops, 2);
    LLVMMetadataReplaceAllUsesWith(temp, id);
    LLVMSetMetadata(branch, LLVMGetMDKindIDInContext(E->ctx, "llvm.loop", 9), LLVMMetadataAsValue(E->ctx, id));
}

/*   for v in [lo, hi): body
 * becomes  v = lo; cond: if v < hi goto body else exit; body: ...; v += 1; goto cond */
static void emit_for(Emit *E, const LStmt *s)
{
    LLVMBasicBlockRef cond = LLVMAppendBasicBlockInContext(E->ctx, E->fn, "for.cond");
    LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(E->ctx, E->fn, "for.body");
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(E->ctx, E->fn, "for.end");
    LLVMValueRef v = E->vars[s->var];
    bool part = s == E->part_loop;
    LLVMBuildStore(E->b, part ? E->part_lo : expr(E, s->lo), v);
    LLVMBuildBr(E->b, cond);
    LLVMPositionBuilderAtEnd(E->b, cond);
    LLVMValueRef i = LLVMBuildLoad2(E->b, E->i64, v, "");
    LLVMBuildCondBr(E->b, LLVMBuildICmp(E->b, LLVMIntSLT, i, part ? E->part_hi : expr(E, s->hi), ""), body, done);
    LLVMPositionBuilderAtEnd(E->b, body);
    stmts(E, &s->body);
    LLVMValueRef next = LLVMBuildNSWAdd(E->b, LLVMBuildLoad2(E->b, E->i64, v, ""), LLVMConstInt(E->i64, 1, 0), "");
    LLVMBuildStore(E->b, next, v);
    LLVMValueRef latch = LLVMBuildBr(E->b, cond);
    if (has_loop(&s->body))
        no_unroll(E, latch);
    else if (E->masks && masked_tail(s))
        fold_tail(E, latch);
    LLVMPositionBuilderAtEnd(E->b, done);
}

static void emit_if(Emit *E, const LStmt *s)
{
    LLVMBasicBlockRef then = LLVMAppendBasicBlockInContext(E->ctx, E->fn, "if.then");
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(E->ctx, E->fn, "if.end");
    LLVMBuildCondBr(E->b, expr(E, s->cond), then, done);
    LLVMPositionBuilderAtEnd(E->b, then);
    stmts(E, &s->body);
    LLVMBuildBr(E->b, done);
    LLVMPositionBuilderAtEnd(E->b, done);
}

static void emit_store(Emit *E, const LStmt *s)
{
    LLVMValueRef p = address(E, s->buf, s->idx), v = expr(E, s->val);
    if (s->accumulate)
        v = fast(LLVMBuildFAdd(E->b, tag(E, LLVMBuildLoad2(E->b, E->f32, p, ""), s->buf), v, ""));
    tag(E, LLVMBuildStore(E->b, v, p), s->buf);
}

static void add_attr(Emit *E, LLVMValueRef fn, unsigned idx, const char *name)
{
    unsigned kind = LLVMGetEnumAttributeKindForName(name, strlen(name));
    LLVMAddAttributeAtIndex(fn, idx, LLVMCreateEnumAttribute(E->ctx, kind, 0));
}

static void add_string_attr(Emit *E, LLVMValueRef fn, const char *k, const char *v)
{
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                            LLVMCreateStringAttribute(E->ctx, k, (unsigned)strlen(k), v, (unsigned)strlen(v)));
}

/* ---- the GEMM micro-kernel ------------------------------------------------- */

/* Register blocking: MR rows of C by NV vectors of 16 floats (6 x 32: twelve
 * accumulators, two B vectors and a broadcast fit the 32 zmm registers). */
enum { MR = GEMM_MR, NV = GEMM_NV, LANES = 16 };
enum { MR_MAX = GEMM_MR_MAX, NV_MAX = GEMM_NV_MAX };   /* tiles the tuner may ask for (see tune.c) */

typedef struct { LLVMValueRef var; LLVMBasicBlockRef cond, body, done; } Loop;

/* A stack slot of type t in the entry block (so that mem2reg promotes it). */
static LLVMValueRef entry_alloca(Emit *E, LLVMTypeRef t)
{
    LLVMBasicBlockRef here = LLVMGetInsertBlock(E->b);
    LLVMPositionBuilderBefore(E->b, LLVMGetFirstInstruction(LLVMGetEntryBasicBlock(E->fn)));
    LLVMValueRef slot = LLVMBuildAlloca(E->b, t, "");
    LLVMPositionBuilderAtEnd(E->b, here);
    return slot;
}

/* for (v = lo; v < hi; v += step): opened here, stepped by loop_close */
static Loop loop_open(Emit *E, LLVMValueRef lo, LLVMValueRef hi, LLVMValueRef *v)
{
    Loop l;
    l.var = entry_alloca(E, E->i64);
    l.cond = LLVMAppendBasicBlockInContext(E->ctx, E->fn, "gemm.cond");
    l.body = LLVMAppendBasicBlockInContext(E->ctx, E->fn, "gemm.body");
    l.done = LLVMAppendBasicBlockInContext(E->ctx, E->fn, "gemm.end");
    LLVMBuildStore(E->b, lo, l.var);
    LLVMBuildBr(E->b, l.cond);
    LLVMPositionBuilderAtEnd(E->b, l.cond);
    LLVMValueRef i = LLVMBuildLoad2(E->b, E->i64, l.var, "");
    LLVMBuildCondBr(E->b, LLVMBuildICmp(E->b, LLVMIntSLT, i, hi, ""), l.body, l.done);
    LLVMPositionBuilderAtEnd(E->b, l.body);
    *v = i;
    return l;
}

static void loop_close(Emit *E, Loop *l, int64_t step)
{
    LLVMValueRef i = LLVMBuildLoad2(E->b, E->i64, l->var, "");
    LLVMBuildStore(E->b, LLVMBuildNSWAdd(E->b, i, LLVMConstInt(E->i64, (unsigned long long)step, 0), ""), l->var);
    LLVMBuildBr(E->b, l->cond);
    LLVMPositionBuilderAtEnd(E->b, l->done);
}

/* [0, n) in blocks: a loop over whole blocks of `block`, then for each power
 * of two below it, largest first, one block of that width if it fits (the
 * rest is less than a block, so this covers it). Used as
 *   Blocks b = blocks_open(n, block);
 *   while (blocks_next(E, &b, &start)) emit(start, b.width);   */
typedef struct {
    LLVMValueRef n, cur;      /* cur: an alloca, the start of what is left */
    int block, width, step;   /* step 0: the loop; then widths block/2.. */
    Loop loop;
    LLVMBasicBlockRef next;
} Blocks;

static Blocks blocks_open(LLVMValueRef n, int block)
{
    Blocks b = {.n = n, .block = block};
    return b;
}

static LLVMValueRef i64c(Emit *E, int64_t v);

/* Closes the previous block's code and opens the next; false when done. */
static bool blocks_next(Emit *E, Blocks *b, LLVMValueRef *start)
{
    if (b->step == 0) {                           /* the loop over whole blocks */
        LLVMValueRef full = LLVMBuildNSWMul(E->b, LLVMBuildSDiv(E->b, b->n, i64c(E, b->block), ""), i64c(E, b->block), "");
        b->loop = loop_open(E, i64c(E, 0), full, start);
        b->width = b->block, b->step = 1;
        return true;
    }
    if (b->step == 1) {
        loop_close(E, &b->loop, b->block);
        b->cur = b->loop.var;                     /* where the loop stopped */
        b->width = 1;
        while (b->width * 2 < b->block)
            b->width *= 2;
        b->width *= 2;                            /* halved below */
    } else {
        LLVMValueRef at = LLVMBuildLoad2(E->b, E->i64, b->cur, "");
        LLVMBuildStore(E->b, LLVMBuildNSWAdd(E->b, at, i64c(E, b->width), ""), b->cur);
        LLVMBuildBr(E->b, b->next);
        LLVMPositionBuilderAtEnd(E->b, b->next);
    }
    b->step++;
    b->width /= 2;
    if (b->width == 0)
        return false;
    LLVMValueRef at = LLVMBuildLoad2(E->b, E->i64, b->cur, "");
    LLVMBasicBlockRef then = LLVMAppendBasicBlockInContext(E->ctx, E->fn, "rest");
    b->next = LLVMAppendBasicBlockInContext(E->ctx, E->fn, "rest.end");
    LLVMValueRef fits = LLVMBuildICmp(E->b, LLVMIntSGE, LLVMBuildNSWSub(E->b, b->n, at, ""), i64c(E, b->width), "");
    LLVMBuildCondBr(E->b, fits, then, b->next);
    LLVMPositionBuilderAtEnd(E->b, then);
    *start = at;
    return true;
}

static LLVMValueRef vector_intrinsic(Emit *E, const char *name, LLVMTypeRef *types, int ntypes,
                                     LLVMValueRef *args, int nargs)
{
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    LLVMValueRef fn = LLVMGetIntrinsicDeclaration(E->mod, id, types, (size_t)ntypes);
    LLVMTypeRef fty = LLVMIntrinsicGetType(E->ctx, id, types, (size_t)ntypes);
    return LLVMBuildCall2(E->b, fty, fn, args, (unsigned)nargs, "");
}

static LLVMValueRef i64c(Emit *E, int64_t v) { return LLVMConstInt(E->i64, (unsigned long long)v, 1); }

/* Masked loads and stores under AddressSanitizer. LLVM's ASan pass checks a
 * masked access lane by lane, each lane a branch and a call: the GEMM
 * routines' edges grew 40-fold and a sanitized build took 10x as long to
 * compile. Every mask here is a prefix (lane_mask: the lanes below a bound),
 * so the lanes accessed are one range from p, 4 bytes per set lane: that
 * range is checked with one call (__asan_loadN, __asan_storeN) and the
 * access itself marked nosanitize, so the pass leaves it alone. */
static void asan_range_check(Emit *E, LLVMValueRef p, LLVMValueRef mask, bool store)
{
    const char *name = store ? "__asan_storeN" : "__asan_loadN";
    LLVMTypeRef params[2] = {E->ptr, E->i64}, i16 = LLVMInt16TypeInContext(E->ctx);
    LLVMTypeRef fty = LLVMFunctionType(E->voidt, params, 2, 0);
    LLVMValueRef fn = LLVMGetNamedFunction(E->mod, name);
    if (!fn)
        fn = LLVMAddFunction(E->mod, name, fty);
    LLVMValueRef bits = LLVMBuildBitCast(E->b, mask, i16, "");
    LLVMValueRef lanes = vector_intrinsic(E, "llvm.ctpop", &i16, 1, &bits, 1);
    LLVMValueRef args[2] = {p, LLVMBuildNUWMul(E->b, LLVMBuildZExt(E->b, lanes, E->i64, ""), i64c(E, 4), "")};
    LLVMBuildCall2(E->b, fty, fn, args, 2, "");
}

static LLVMValueRef masked_access(Emit *E, LLVMValueRef v, LLVMValueRef p, LLVMValueRef mask)
{
    LLVMTypeRef vt = LLVMVectorType(E->f32, LANES), types[2] = {vt, E->ptr};
    if (E->sanitize)
        asan_range_check(E, p, mask, v != NULL);
    LLVMValueRef call;
    if (v) {
        LLVMValueRef args[4] = {v, p, LLVMConstInt(E->i32, 4, 0), mask};
        call = vector_intrinsic(E, "llvm.masked.store", types, 2, args, 4);
    } else {
        LLVMValueRef args[4] = {p, LLVMConstInt(E->i32, 4, 0), mask, LLVMConstNull(vt)};
        call = vector_intrinsic(E, "llvm.masked.load", types, 2, args, 4);
    }
    if (E->sanitize)
        LLVMSetMetadata(call, LLVMGetMDKindIDInContext(E->ctx, "nosanitize", 10), LLVMMDNodeInContext(E->ctx, NULL, 0));
    return call;
}

static LLVMValueRef masked_load(Emit *E, LLVMValueRef p, LLVMValueRef mask) { return masked_access(E, NULL, p, mask); }

static void masked_store(Emit *E, LLVMValueRef v, LLVMValueRef p, LLVMValueRef mask) { masked_access(E, v, p, mask); }

static LLVMValueRef splat_of(Emit *E, LLVMTypeRef t, LLVMValueRef x)
{
    LLVMTypeRef vt = LLVMVectorType(t, LANES);
    LLVMValueRef v = LLVMBuildInsertElement(E->b, LLVMGetPoison(vt), x, LLVMConstInt(E->i32, 0, 0), "");
    return LLVMBuildShuffleVector(E->b, v, LLVMGetPoison(vt), LLVMConstNull(LLVMVectorType(E->i32, LANES)), "");
}

/* The bias of a GEMM's epilogue (see Gemm in cnnc.h). */
enum { NO_BIAS, BIAS_ROWS, BIAS_COLS, BN_ROWS /* pairs (shift, scale) per row: gemm only */ };

/* The GEMM routine's arguments, as values inside it (see Gemm in cnnc.h),
 * and the variant being built: its bias and whether it applies a ReLU. */
typedef struct {
    LLVMValueRef M, N, K, a, sai, sak, b, ldb, c, ldc, acc, bias;
    int bias_kind;
    bool relu;
    int tile_r, tile_c;       /* the register tile (see Gemm in cnnc.h), never 0 here */
    bool cols_outer;          /* the loop order (see Gemm) */
    bool kblock;              /* k in blocks (see Gemm) */
    /* the block of k being summed, [k0, k1): C starts from C itself when
     * from_c (accumulating, or a later block), and the epilogue's scale and
     * ReLU wait while `more` blocks follow; without kblock, [0, K), acc, false */
    LLVMValueRef k0, k1, from_c, more;
    /* with tail (see gemm_tail in cnnc.h): the columns [nmain, nmain +
     * ntail) are dot products along k of A's rows and btail's (B's last
     * columns copied, K floats each); N is nmain. ntail is 0 for a call
     * whose columns do not end so (or whose A does not run along k). */
    bool tail;
    LLVMValueRef btail, nmain, ntail;
} GemmArgs;

/* &p[i0 * s0 + i1 * s1 + off] */
static LLVMValueRef at2(Emit *E, LLVMValueRef p, LLVMValueRef i0, LLVMValueRef s0, LLVMValueRef i1,
                        LLVMValueRef s1, int64_t off)
{
    LLVMValueRef i = LLVMBuildNSWAdd(E->b, LLVMBuildNSWMul(E->b, i0, s0, ""), LLVMBuildNSWMul(E->b, i1, s1, ""), "");
    i = LLVMBuildNSWAdd(E->b, i, i64c(E, off), "");
    return LLVMBuildInBoundsGEP2(E->b, E->f32, p, &i, 1, "");
}

/* lanes j0 + 16 v + l < N: the mask of vector v of the column block at j0 */
static LLVMValueRef lane_mask(Emit *E, LLVMValueRef j0, LLVMValueRef N, int v)
{
    LLVMValueRef lanes[LANES];
    for (int l = 0; l < LANES; l++)
        lanes[l] = LLVMConstInt(E->i64, (unsigned long long)(v * LANES + l), 0);
    LLVMValueRef idx = LLVMBuildAdd(E->b, splat_of(E, E->i64, j0), LLVMConstVector(lanes, LANES), "");
    return LLVMBuildICmp(E->b, LLVMIntSLT, idx, splat_of(E, E->i64, N), "");
}

/* max(0, v) when the routine's epilogue has a ReLU (scalar or vector v) */
static LLVMValueRef relu_of(Emit *E, const GemmArgs *g, LLVMValueRef v)
{
    if (!g->relu)
        return v;
    LLVMTypeRef types[1] = {LLVMTypeOf(v)};
    LLVMValueRef args[2] = {v, LLVMConstNull(LLVMTypeOf(v))};
    return vector_intrinsic(E, "llvm.maxnum", types, 1, args, 2);
}

/* With the columns outer, the next tile down the strip, rows [i0 + mr,
 * i0 + 2 mr): its cells of C asked for (prefetched, for writing) while this
 * tile's k loop runs, so that a C larger than the caches (a convolution's
 * weight gradient, up to 9.4 MB, rows K floats apart) arrives in time
 * rather than at the start of that tile. Past C's last row the addresses
 * are only hints: a prefetch never faults. */
static void prefetch_rows_below(Emit *E, const GemmArgs *g, LLVMValueRef i0, int mr, LLVMValueRef j0, int nv)
{
    LLVMTypeRef types[1] = {E->ptr};
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < nv; v++) {
            LLVMValueRef i = LLVMBuildAdd(E->b, LLVMBuildMul(E->b, LLVMBuildAdd(E->b, i0, i64c(E, mr + r), ""), g->ldc, ""),
                                          LLVMBuildAdd(E->b, j0, i64c(E, v * LANES), ""), "");
            LLVMValueRef args[4] = {LLVMBuildGEP2(E->b, E->f32, g->c, &i, 1, ""), LLVMConstInt(E->i32, 1, 0),
                                    LLVMConstInt(E->i32, 3, 0), LLVMConstInt(E->i32, 1, 0)};
            vector_intrinsic(E, "llvm.prefetch", types, 1, args, 4);
        }
}

/* Row i's pair (shift, scale) of a folded batchnorm (BN_ROWS), as scalars. */
static void bn_pair(Emit *E, const GemmArgs *g, LLVMValueRef i, LLVMValueRef *shift, LLVMValueRef *scale)
{
    LLVMValueRef one = i64c(E, 1), two = i64c(E, 2);
    *shift = LLVMBuildLoad2(E->b, E->f32, at2(E, g->bias, i, two, one, i64c(E, 0), 0), "");
    *scale = LLVMBuildLoad2(E->b, E->f32, at2(E, g->bias, i, two, one, i64c(E, 0), 1), "");
}

/* What a tile stores for a finished sum (a vector, or a scalar of the
 * tail): scale sum + shift with a folded batchnorm, then the ReLU; with
 * kblock, the partial sum itself while more blocks of k follow. */
static LLVMValueRef epilogue(Emit *E, const GemmArgs *g, LLVMValueRef sum, LLVMValueRef shift, LLVMValueRef scale)
{
    LLVMValueRef out = sum;
    if (g->bias_kind == BN_ROWS) {
        LLVMTypeRef types[1] = {LLVMTypeOf(sum)};
        LLVMValueRef args[3] = {sum, scale, shift};
        out = vector_intrinsic(E, "llvm.fma", types, 1, args, 3);
    }
    out = relu_of(E, g, out);
    return out != sum && g->kblock ? LLVMBuildSelect(E->b, g->more, sum, out, "") : out;
}

/* The tile rows [i0, i0 + mr) by columns [j0, j0 + 16 nv) of C: mr x nv
 * accumulators in registers through the whole k loop, B read once per k,
 * A broadcast. A tile that is `full` (j0 + 16 nv <= N) reads and writes
 * whole vectors; the others mask the lanes from N on. */
static void gemm_tile(Emit *E, const GemmArgs *g, LLVMValueRef i0, int mr, LLVMValueRef j0, int nv, bool full)
{
    LLVMTypeRef vt = LLVMVectorType(E->f32, LANES), types[1] = {vt};
    LLVMValueRef acc[MR_MAX][NV_MAX], mask[NV_MAX], row[MR_MAX], k, one = i64c(E, 1);
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < nv; v++)
            acc[r][v] = entry_alloca(E, vt);
    for (int r = 0; r < mr; r++)
        row[r] = LLVMBuildNSWAdd(E->b, i0, i64c(E, r), "");
    for (int v = 0; v < nv; v++)
        mask[v] = full ? LLVMConstAllOnes(LLVMVectorType(LLVMInt1TypeInContext(E->ctx), LANES)) : lane_mask(E, j0, g->N, v);
    for (int r = 0; r < mr; r++)                 /* acc = accumulate ? C : bias (or 0) */
        for (int v = 0; v < nv; v++) {
            LLVMValueRef c = masked_load(E, at2(E, g->c, row[r], g->ldc, j0, one, v * LANES), mask[v]);
            LLVMValueRef init = LLVMConstNull(vt);
            if (g->bias_kind == BIAS_ROWS)
                init = splat_of(E, E->f32, LLVMBuildLoad2(E->b, E->f32, at2(E, g->bias, row[r], one, one, i64c(E, 0), 0), ""));
            else if (g->bias_kind == BIAS_COLS)
                init = masked_load(E, at2(E, g->bias, j0, one, one, i64c(E, 0), v * LANES), mask[v]);
            LLVMBuildStore(E->b, LLVMBuildSelect(E->b, g->from_c, c, init, ""), acc[r][v]);
        }
    LLVMValueRef shift[MR_MAX] = {0}, scale[MR_MAX] = {0};
    for (int r = 0; r < mr && g->bias_kind == BN_ROWS; r++) {
        bn_pair(E, g, row[r], &shift[r], &scale[r]);
        shift[r] = splat_of(E, E->f32, shift[r]), scale[r] = splat_of(E, E->f32, scale[r]);
    }
    if (g->cols_outer)
        prefetch_rows_below(E, g, i0, mr, j0, nv);
    Loop kl = loop_open(E, g->k0, g->k1, &k);
    LLVMValueRef bv[NV_MAX];
    for (int v = 0; v < nv; v++)
        bv[v] = masked_load(E, at2(E, g->b, k, g->ldb, j0, one, v * LANES), mask[v]);
    for (int r = 0; r < mr; r++) {
        LLVMValueRef a = LLVMBuildLoad2(E->b, E->f32, at2(E, g->a, row[r], g->sai, k, g->sak, 0), "");
        a = splat_of(E, E->f32, a);
        for (int v = 0; v < nv; v++) {
            LLVMValueRef args[3] = {a, bv[v], LLVMBuildLoad2(E->b, vt, acc[r][v], "")};
            LLVMBuildStore(E->b, vector_intrinsic(E, "llvm.fma", types, 1, args, 3), acc[r][v]);
        }
    }
    loop_close(E, &kl, 1);
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < nv; v++) {
            LLVMValueRef out = epilogue(E, g, LLVMBuildLoad2(E->b, vt, acc[r][v], ""), shift[r], scale[r]);
            masked_store(E, out, at2(E, g->c, row[r], g->ldc, j0, one, v * LANES), mask[v]);
        }
}

/* the sum of a vector's 16 lanes (defined with the A B^T micro-kernel) */
static LLVMValueRef lane_sum(Emit *E, LLVMValueRef v);

/* 16 floats from p: the lanes `mask` sets (masked_load), or all of them
 * (mask NULL; p need only be float-aligned). */
static LLVMValueRef load_or_masked(Emit *E, LLVMValueRef p, LLVMValueRef mask)
{
    if (mask)
        return masked_load(E, p, mask);
    LLVMValueRef v = LLVMBuildLoad2(E->b, LLVMVectorType(E->f32, LANES), p, "");
    LLVMSetAlignment(v, 4);
    return v;
}

/* 16 k of the tail columns' dot products: acc[r] += A[row r, k..] btail[t, k..] */
static void tail_step(Emit *E, const GemmArgs *g, LLVMValueRef *acc, LLVMValueRef *row, int mr, LLVMValueRef t,
                      LLVMValueRef k, LLVMValueRef mask)
{
    LLVMTypeRef vt = LLVMVectorType(E->f32, LANES), types[1] = {vt};
    LLVMValueRef one = i64c(E, 1), bv = load_or_masked(E, at2(E, g->btail, t, g->K, k, one, 0), mask);
    for (int r = 0; r < mr; r++) {
        LLVMValueRef args[3] = {load_or_masked(E, at2(E, g->a, row[r], g->sai, k, one, 0), mask), bv,
                                LLVMBuildLoad2(E->b, vt, acc[r], "")};
        LLVMBuildStore(E->b, vector_intrinsic(E, "llvm.fma", types, 1, args, 3), acc[r]);
    }
}

/* The tail columns of rows [i0, i0 + mr) (see GemmArgs): per column, mr
 * accumulators along k, 16 lanes at a time (the last step masked past k1), each reduced
 * across its lanes, then the tile's epilogue. Row i's kc floats of A were
 * just read by the tile to the left, so they come from the L1 or L2.
 *   C[i, nmain + t] (+)= sum_k A[i, k] btail[t, k] */
static void gemm_tail_rows(Emit *E, const GemmArgs *g, LLVMValueRef i0, int mr)
{
    LLVMTypeRef vt = LLVMVectorType(E->f32, LANES);
    LLVMValueRef acc[MR_MAX], row[MR_MAX], t, k, one = i64c(E, 1);
    for (int r = 0; r < mr; r++)
        acc[r] = entry_alloca(E, vt), row[r] = LLVMBuildNSWAdd(E->b, i0, i64c(E, r), "");
    Loop tl = loop_open(E, i64c(E, 0), g->ntail, &t);
    for (int r = 0; r < mr; r++)
        LLVMBuildStore(E->b, LLVMConstNull(vt), acc[r]);
    /* whole vectors of k, then the last (masked: see column_blocks) */
    LLVMValueRef whole = LLVMBuildNSWSub(E->b, g->k1, i64c(E, LANES - 1), "");
    Loop kl = loop_open(E, g->k0, whole, &k);
    tail_step(E, g, acc, row, mr, t, k, NULL);
    loop_close(E, &kl, LANES);
    Loop ml = loop_open(E, LLVMBuildLoad2(E->b, E->i64, kl.var, ""), g->k1, &k);
    tail_step(E, g, acc, row, mr, t, k, lane_mask(E, k, g->k1, 0));
    loop_close(E, &ml, LANES);
    LLVMValueRef j = LLVMBuildNSWAdd(E->b, g->nmain, t, "");
    for (int r = 0; r < mr; r++) {
        LLVMValueRef cp = at2(E, g->c, row[r], g->ldc, j, one, 0), init = LLVMConstReal(E->f32, 0);
        if (g->bias_kind == BIAS_ROWS)
            init = LLVMBuildLoad2(E->b, E->f32, at2(E, g->bias, row[r], one, one, i64c(E, 0), 0), "");
        else if (g->bias_kind == BIAS_COLS)
            init = LLVMBuildLoad2(E->b, E->f32, at2(E, g->bias, j, one, one, i64c(E, 0), 0), "");
        LLVMValueRef from = LLVMBuildSelect(E->b, g->from_c, LLVMBuildLoad2(E->b, E->f32, cp, ""), init, "");
        LLVMValueRef sum = LLVMBuildFAdd(E->b, from, lane_sum(E, LLVMBuildLoad2(E->b, vt, acc[r], "")), "");
        LLVMValueRef shift = NULL, scale = NULL;
        if (g->bias_kind == BN_ROWS)
            bn_pair(E, g, row[r], &shift, &scale);
        LLVMBuildStore(E->b, epilogue(E, g, sum, shift, scale), cp);
    }
    loop_close(E, &tl, 1);
}

/* With tail: whether this call's columns end in a tail (N a multiple of 16
 * plus 1 to GEMM_TAIL_MAX, A along k, K at most GEMM_TAIL_K_MAX), and if so
 * its columns copied into btail (a stack array) and N cut to the whole
 * vectors; else ntail = 0 and N as it is. */
static void gemm_tail_setup(Emit *E, GemmArgs *g)
{
    LLVMValueRef rest = LLVMBuildSRem(E->b, g->N, i64c(E, LANES), ""), main = LLVMBuildNSWSub(E->b, g->N, rest, "");
    LLVMValueRef ok = LLVMBuildAnd(E->b, LLVMBuildICmp(E->b, LLVMIntSGT, rest, i64c(E, 0), ""),
                                   LLVMBuildICmp(E->b, LLVMIntSLE, rest, i64c(E, GEMM_TAIL_MAX), ""), "");
    ok = LLVMBuildAnd(E->b, ok, LLVMBuildICmp(E->b, LLVMIntSGT, main, i64c(E, 0), ""), "");
    ok = LLVMBuildAnd(E->b, ok, LLVMBuildICmp(E->b, LLVMIntEQ, g->sak, i64c(E, 1), ""), "");
    ok = LLVMBuildAnd(E->b, ok, LLVMBuildICmp(E->b, LLVMIntSLE, g->K, i64c(E, GEMM_TAIL_K_MAX), ""), "");
    g->ntail = LLVMBuildSelect(E->b, ok, rest, i64c(E, 0), "");
    g->nmain = main;
    g->N = LLVMBuildSelect(E->b, ok, main, g->N, "");
    g->btail = entry_alloca(E, LLVMArrayType(E->f32, GEMM_TAIL_MAX * GEMM_TAIL_K_MAX));
    LLVMValueRef t, k;
    Loop tl = loop_open(E, i64c(E, 0), g->ntail, &t);
    Loop kl = loop_open(E, i64c(E, 0), g->K, &k);
    LLVMValueRef v = LLVMBuildLoad2(E->b, E->f32, at2(E, g->b, k, g->ldb, LLVMBuildNSWAdd(E->b, main, t, ""), i64c(E, 1), 0), "");
    LLVMBuildStore(E->b, v, at2(E, g->btail, t, g->K, k, i64c(E, 1), 0));
    loop_close(E, &kl, 1);
    loop_close(E, &tl, 1);
}

/* The blocks of columns of C, left to right: whole tiles of tile_c vectors
 * (unmasked), then one tile of tile_c vectors whose last is partial, then
 * single vectors, the last one partial (masked); `tiles` does a block at
 * j0, nv vectors wide. Masks cost nothing with AVX-512 (mask registers),
 * but with AVX2 a mask takes a vector register: a 6 x 16 tile's 12
 * accumulators, 2 vectors of B and the broadcast of A leave no room for
 * its 2 masks, which LLVM then rebuilt from the stack at every k. */
typedef void ColumnTiles(Emit *E, const GemmArgs *g, LLVMValueRef fixed, int mr, LLVMValueRef j0, int nv, bool full);

static void column_blocks(Emit *E, const GemmArgs *g, ColumnTiles *tiles, LLVMValueRef fixed, int mr)
{
    int nv = g->tile_c;
    LLVMValueRef j0, whole = LLVMBuildNSWSub(E->b, g->N, i64c(E, nv * LANES - 1), "");
    Loop fl = loop_open(E, i64c(E, 0), whole, &j0);
    tiles(E, g, fixed, mr, j0, nv, true);
    loop_close(E, &fl, nv * LANES);
    LLVMValueRef from = LLVMBuildLoad2(E->b, E->i64, fl.var, "");
    if (nv > 1) {
        Loop jl = loop_open(E, from, LLVMBuildNSWSub(E->b, g->N, i64c(E, (nv - 1) * LANES), ""), &j0);
        tiles(E, g, fixed, mr, j0, nv, false);
        loop_close(E, &jl, nv * LANES);
        from = LLVMBuildLoad2(E->b, E->i64, jl.var, "");
    }
    Loop tl = loop_open(E, from, g->N, &j0);
    tiles(E, g, fixed, mr, j0, 1, false);
    loop_close(E, &tl, LANES);
}

/* Rows [i0, i0 + mr) of C, block by block of columns (so a short tail
 * costs only the vectors it needs), then the tail columns' dot products. */
static void gemm_rows(Emit *E, const GemmArgs *g, LLVMValueRef i0, int mr)
{
    column_blocks(E, g, gemm_tile, i0, mr);
    if (g->tail)
        gemm_tail_rows(E, g, i0, mr);
}

/* ---- the A B^T micro-kernel ------------------------------------------------- */

/* C[i ldc + j] (+)= sum_k A[i lda + k] B[j ldb + k]: both operands run along
 * k, so a block of RT x CT dot products is vectorized along k, 16 lanes at a
 * time (a masked step for the tail), and each accumulator is reduced across
 * its lanes at the end. Used where the usual form would need a transposed
 * copy first: a dense layer's X W^T, and a convolution's dy col^T. */
enum { RT = GEMM_RT, CT = GEMM_CT };
enum { RT_MAX = GEMM_RT_MAX, CT_MAX = GEMM_CT_MAX };   /* tiles the tuner may ask for */

/* the sum of a vector's 16 lanes, by halving */
static LLVMValueRef lane_sum(Emit *E, LLVMValueRef v)
{
    for (int w = LANES / 2; w >= 1; w /= 2) {
        LLVMValueRef idx[LANES];
        for (int l = 0; l < LANES; l++)
            idx[l] = LLVMConstInt(E->i32, (unsigned long long)((l + w) % LANES), 0);
        LLVMValueRef hi = LLVMBuildShuffleVector(E->b, v, LLVMGetPoison(LLVMTypeOf(v)), LLVMConstVector(idx, LANES), "");
        v = LLVMBuildFAdd(E->b, v, hi, "");
    }
    return LLVMBuildExtractElement(E->b, v, LLVMConstInt(E->i32, 0, 0), "");
}

/* The sums of 16 vectors' lanes, as one vector: lane i = sum of v[i]. Four
 * rounds each add pairs of vectors after shuffling their halves, quarters,
 * eighths, then single lanes apart: 15 adds instead of 16 x 4. */
static LLVMValueRef sums16(Emit *E, LLVMValueRef *v)
{
    int n = LANES;
    for (int w = LANES / 2; w >= 1; w /= 2, n /= 2)
        for (int m = 0; m < n / 2; m++) {
            LLVMValueRef lo[LANES], hi[LANES];
            int half = LANES / (2 * w);             /* sources per input vector, 2w lanes each */
            for (int l = 0; l < LANES; l++) {       /* groups of w lanes: a's sources, then b's */
                int group = l / w, src = (group < half ? 0 : LANES) + (group % half) * 2 * w + l % w;
                lo[l] = LLVMConstInt(E->i32, (unsigned long long)src, 0);
                hi[l] = LLVMConstInt(E->i32, (unsigned long long)(src + w), 0);
            }
            LLVMValueRef a = LLVMBuildShuffleVector(E->b, v[2 * m], v[2 * m + 1], LLVMConstVector(lo, LANES), "");
            LLVMValueRef b = LLVMBuildShuffleVector(E->b, v[2 * m], v[2 * m + 1], LLVMConstVector(hi, LANES), "");
            v[m] = LLVMBuildFAdd(E->b, a, b, "");
        }
    return v[0];
}

/* C[row r][j0 .. j0 + ct) (+)= lanes ct r .. ct (r + 1) of s, with the
 * epilogue, for the rt x ct = 16 dot products of a block. */
static void nt_store_rows(Emit *E, const GemmArgs *g, LLVMValueRef *row, LLVMValueRef j0, LLVMValueRef s, int rt, int ct)
{
    LLVMTypeRef vc = LLVMVectorType(E->f32, (unsigned)ct);
    LLVMValueRef one = i64c(E, 1);
    for (int r = 0; r < rt; r++) {
        LLVMValueRef idx[LANES];
        for (int c = 0; c < ct; c++)
            idx[c] = LLVMConstInt(E->i32, (unsigned long long)(r * ct + c), 0);
        LLVMValueRef sum = LLVMBuildShuffleVector(E->b, s, LLVMGetPoison(LLVMTypeOf(s)), LLVMConstVector(idx, (unsigned)ct), "");
        LLVMValueRef p = at2(E, g->c, row[r], g->ldc, j0, one, 0);
        LLVMValueRef old = LLVMBuildLoad2(E->b, vc, p, ""), init = LLVMConstNull(vc);
        LLVMSetAlignment(old, 4);
        if (g->bias_kind == BIAS_COLS) {
            init = LLVMBuildLoad2(E->b, vc, at2(E, g->bias, j0, one, one, i64c(E, 0), 0), "");
            LLVMSetAlignment(init, 4);
        } else if (g->bias_kind == BIAS_ROWS) {
            LLVMValueRef b = LLVMBuildLoad2(E->b, E->f32, at2(E, g->bias, row[r], one, one, i64c(E, 0), 0), "");
            init = LLVMBuildShuffleVector(E->b, LLVMBuildInsertElement(E->b, LLVMGetPoison(vc), b, LLVMConstInt(E->i32, 0, 0), ""),
                                          LLVMGetPoison(vc), LLVMConstNull(LLVMVectorType(E->i32, (unsigned)ct)), "");
        }
        LLVMValueRef st = LLVMBuildStore(E->b, relu_of(E, g, LLVMBuildFAdd(E->b, LLVMBuildSelect(E->b, g->acc, old, init, ""), sum, "")), p);
        LLVMSetAlignment(st, 4);
    }
}

/* lanes k0 + l < K */
static LLVMValueRef k_mask(Emit *E, LLVMValueRef k0, LLVMValueRef K) { return lane_mask(E, k0, K, 0); }

/* One block: rows [i0, i0 + rt), columns [j0, j0 + ct) of C. */
static void gemm_nt_block(Emit *E, const GemmArgs *g, LLVMValueRef i0, LLVMValueRef j0, int rt, int ct)
{
    LLVMTypeRef vt = LLVMVectorType(E->f32, LANES), types[1] = {vt};
    LLVMValueRef acc[RT_MAX][CT_MAX], k, one = i64c(E, 1);
    for (int r = 0; r < rt; r++)
        for (int c = 0; c < ct; c++) {
            acc[r][c] = entry_alloca(E, vt);
            LLVMBuildStore(E->b, LLVMConstNull(vt), acc[r][c]);
        }
    LLVMValueRef row[RT_MAX], col[CT_MAX];
    for (int r = 0; r < rt; r++)
        row[r] = LLVMBuildNSWAdd(E->b, i0, i64c(E, r), "");
    for (int c = 0; c < ct; c++)
        col[c] = LLVMBuildNSWAdd(E->b, j0, i64c(E, c), "");
    /* full steps of 16, then one masked step */
    LLVMValueRef full = LLVMBuildAnd(E->b, g->K, i64c(E, -LANES), "");
    for (int tail = 0; tail < 2; tail++) {
        Loop kl = loop_open(E, tail ? full : i64c(E, 0), tail ? g->K : full, &k);
        LLVMValueRef mask = tail ? k_mask(E, k, g->K) : NULL, av[RT_MAX], bv[CT_MAX];
        for (int r = 0; r < rt; r++)
            av[r] = load_or_masked(E, at2(E, g->a, row[r], g->sai, k, one, 0), mask);
        for (int c = 0; c < ct; c++)
            bv[c] = load_or_masked(E, at2(E, g->b, col[c], g->ldb, k, one, 0), mask);
        for (int r = 0; r < rt; r++)
            for (int c = 0; c < ct; c++) {
                LLVMValueRef args[3] = {av[r], bv[c], LLVMBuildLoad2(E->b, vt, acc[r][c], "")};
                LLVMBuildStore(E->b, vector_intrinsic(E, "llvm.fma", types, 1, args, 3), acc[r][c]);
            }
        loop_close(E, &kl, LANES);
    }
    if (rt * ct == LANES) {                  /* the 16 sums as one vector */
        LLVMValueRef v[LANES];
        for (int i = 0; i < LANES; i++)
            v[i] = LLVMBuildLoad2(E->b, vt, acc[i / ct][i % ct], "");
        nt_store_rows(E, g, row, j0, sums16(E, v), rt, ct);
        return;
    }
    for (int r = 0; r < rt; r++)
        for (int c = 0; c < ct; c++) {
            LLVMValueRef p = at2(E, g->c, row[r], g->ldc, col[c], one, 0);
            LLVMValueRef sum = lane_sum(E, LLVMBuildLoad2(E->b, vt, acc[r][c], ""));
            LLVMValueRef old = LLVMBuildLoad2(E->b, E->f32, p, ""), init = LLVMConstReal(E->f32, 0);
            if (g->bias_kind != NO_BIAS)
                init = LLVMBuildLoad2(E->b, E->f32, at2(E, g->bias, g->bias_kind == BIAS_ROWS ? row[r] : col[c], one,
                                                        one, i64c(E, 0), 0), "");
            LLVMValueRef add = LLVMBuildFAdd(E->b, LLVMBuildSelect(E->b, g->acc, old, init, ""), sum, "");
            LLVMBuildStore(E->b, relu_of(E, g, add), p);
        }
}

/* Columns of a block row: blocks of tile_c, then halving widths for the rest. */
static void gemm_nt_rows(Emit *E, const GemmArgs *g, LLVMValueRef i0, int rt)
{
    LLVMValueRef j0;
    Blocks b = blocks_open(g->N, g->tile_c);
    while (blocks_next(E, &b, &j0))
        gemm_nt_block(E, g, i0, j0, rt, b.width);
}

/* Starts routine fn (a GEMM or pooling routine): zmm-wide vectors, the
 * sanitizer when asked, and an entry block that falls into "start". */
static void begin_routine(Emit *E, LLVMValueRef fn)
{
    add_string_attr(E, fn, "prefer-vector-width", "512");
    add_string_attr(E, fn, "min-legal-vector-width", "512");
    if (E->sanitize)
        add_attr(E, fn, LLVMAttributeFunctionIndex, "sanitize_address");
    E->fn = fn;
    LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(E->ctx, fn, "entry");
    LLVMBasicBlockRef start = LLVMAppendBasicBlockInContext(E->ctx, fn, "start");
    LLVMPositionBuilderAtEnd(E->b, entry);
    LLVMBuildBr(E->b, start);
    LLVMPositionBuilderAtEnd(E->b, start);
}

/* A function of the GEMM routines' signature, its body emitted by `body`
 * for the variant (bias kind, relu) in *proto. */
static LLVMValueRef gemm_routine(Emit *E, const char *name, const GemmArgs *proto,
                                 void (*body)(Emit *E, const GemmArgs *g))
{
    enum { NARGS = 12 };
    LLVMTypeRef p[NARGS] = {E->i64, E->i64, E->i64, E->ptr, E->i64, E->i64, E->ptr, E->i64, E->ptr, E->i64, E->i1, E->ptr};
    LLVMValueRef saved_fn = E->fn, fn;
    LLVMBasicBlockRef saved_block = LLVMGetInsertBlock(E->b);
    E->gemm_type = LLVMFunctionType(E->voidt, p, NARGS, 0);
    fn = LLVMAddFunction(E->mod, name, E->gemm_type);
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    add_attr(E, fn, LLVMAttributeFunctionIndex, "nounwind");
    add_attr(E, fn, LLVMAttributeFunctionIndex, "noinline");
    add_attr(E, fn, 4, "noalias"), add_attr(E, fn, 7, "noalias"), add_attr(E, fn, 9, "noalias");
    begin_routine(E, fn);
    GemmArgs g = *proto;
    LLVMValueRef *f = &g.M;
    for (unsigned i = 0; i < NARGS; i++)
        f[i] = LLVMGetParam(fn, i);
    g.k0 = i64c(E, 0), g.k1 = g.K, g.from_c = g.acc, g.more = LLVMConstInt(E->i1, 0, 0);
    body(E, &g);
    LLVMBuildRetVoid(E->b);
    E->fn = saved_fn;
    LLVMPositionBuilderAtEnd(E->b, saved_block);
    return fn;
}

/* Rows [0, M) in blocks of `block` rows by `rows`, then the rest in blocks
 * of 4, 2 and 1 (fewer accumulators, but never a row alone that could have
 * company: one row's two accumulators cannot hide the FMA latency). */
static void row_blocks(Emit *E, const GemmArgs *g, int block, void (*rows)(Emit *, const GemmArgs *, LLVMValueRef, int))
{
    LLVMValueRef i0;
    Blocks b = blocks_open(g->M, block);
    while (blocks_next(E, &b, &i0))
        rows(E, g, i0, b.width);
}

/* Columns outer: for each block of tile_c columns (then halving widths),
 * every block of rows, so that the block's columns of B stay in the cache
 * while A streams past them. */
static void gemm_nt_cols_outer(Emit *E, const GemmArgs *g)
{
    LLVMValueRef i0, j0;
    Blocks cb = blocks_open(g->N, g->tile_c);
    while (blocks_next(E, &cb, &j0)) {
        Blocks rb = blocks_open(g->M, g->tile_r);
        while (blocks_next(E, &rb, &i0))
            gemm_nt_block(E, g, i0, j0, rb.width, cb.width);
    }
}

/* cnnc.gemm_nt(M, N, K, A, lda, (unused), B, ldb, C, ldc, acc) */
static void gemm_nt_body(Emit *E, const GemmArgs *g)
{
    if (g->cols_outer)
        gemm_nt_cols_outer(E, g);
    else
        row_blocks(E, g, g->tile_r, gemm_nt_rows);
}

/* Every block of rows of the column strip at j0, nv vectors wide. */
static void strip_rows(Emit *E, const GemmArgs *g, LLVMValueRef no_row, int no_mr, LLVMValueRef j0, int nv, bool full)
{
    LLVMValueRef i0;
    Blocks b = blocks_open(g->M, g->tile_r);
    while (blocks_next(E, &b, &i0))
        gemm_tile(E, g, i0, b.width, j0, nv, full);
}

/* Columns outer: strips of tile_c vectors (then of one), each through every
 * block of rows, so that the strip of B stays in the cache while A streams
 * past it. */
static void gemm_cols_outer(Emit *E, const GemmArgs *g) { column_blocks(E, g, strip_rows, NULL, 0); }

/* cnnc.gemm(M, N, K, A, sai, sak, B, ldb, C, ldc, acc). One routine per
 * module, called by every GEMM of every kernel, keeps the code (and compile
 * time) small. */
static void gemm_order(Emit *E, const GemmArgs *g)
{
    if (g->cols_outer)
        gemm_cols_outer(E, g);
    else
        row_blocks(E, g, g->tile_r, gemm_rows);
}

/* With kblock, k in blocks of kc, each block through the whole of C before
 * the next: kc rows of B, kc N floats, take at most a quarter of the host's
 * L2 (the whole of K when B fits), so that B stays in the L2 while each
 * block of rows of A (a few rows by kc, in the L1) runs along it; without,
 * B larger than the L2 would come from the L3 once per block of rows. C is
 * loaded and stored once per block of k (a partial sum), which costs
 * little next to the kc M N multiply-adds. */
static void gemm_body(Emit *E, const GemmArgs *given)
{
    GemmArgs tailed = *given, *g = &tailed;
    if (g->tail)
        gemm_tail_setup(E, g);
    if (!g->kblock) {
        gemm_order(E, g);
        return;
    }
    LLVMValueRef kc = LLVMBuildSDiv(E->b, i64c(E, host_l2_bytes() / 4 / (int64_t)sizeof(float)),
                                    LLVMBuildNSWMul(E->b, g->N, i64c(E, 1), ""), "");
    LLVMValueRef few = LLVMBuildICmp(E->b, LLVMIntSLT, kc, i64c(E, 16), "");
    kc = LLVMBuildSelect(E->b, few, i64c(E, 16), kc, "");
    LLVMValueRef k0;
    Loop kl = loop_open(E, i64c(E, 0), g->K, &k0);
    GemmArgs h = *g;
    LLVMValueRef end = LLVMBuildNSWAdd(E->b, k0, kc, "");
    h.more = LLVMBuildICmp(E->b, LLVMIntSLT, end, g->K, "");
    h.k0 = k0, h.k1 = LLVMBuildSelect(E->b, h.more, end, g->K, "");
    h.from_c = LLVMBuildOr(E->b, g->acc, LLVMBuildICmp(E->b, LLVMIntSGT, k0, i64c(E, 0), ""), "");
    gemm_order(E, &h);
    LLVMValueRef i = LLVMBuildLoad2(E->b, E->i64, kl.var, "");
    LLVMBuildStore(E->b, LLVMBuildNSWAdd(E->b, i, kc, ""), kl.var);
    LLVMBuildBr(E->b, kl.cond);
    LLVMPositionBuilderAtEnd(E->b, kl.done);
}

/* The routine for a GEMM statement: cnnc.gemm or cnnc.gemm_nt, suffixed by
 * its epilogue (.bias_rows, .bias_cols, .relu); made on first use. */
static LLVMValueRef gemm_function(Emit *E, const Gemm *gm)
{
    GemmArgs proto = {.bias_kind = !gm->bias ? NO_BIAS : gm->bn_rows ? BN_ROWS : gm->bias_rows ? BIAS_ROWS : BIAS_COLS,
                      .relu = gm->relu, .kblock = gm->kblock && !gm->bt};
    if (gm->bn_rows && gm->bt)
        internal_error("a folded batchnorm in an A B^T GEMM");
    int dr, dc;                                  /* the target's default tile: no suffix */
    gemm_tile_default(gm->bt, &dr, &dc);
    gemm_tile_for(gm, &proto.tile_r, &proto.tile_c);
    if (gm->tile_r)
        proto.tile_r = gm->tile_r, proto.tile_c = gm->tile_c;
    bool tiled = proto.tile_r != dr || proto.tile_c != dc;
    proto.cols_outer = gm->tile_r ? gm->cols_outer : gemm_cols_outer_default(gm);
    proto.tail = gemm_tail(gm) && !proto.cols_outer;
    static const char *const bias[] = {"", ".bias_rows", ".bias_cols", ".bn_rows"};
    const char *name = arena_printf("cnnc.gemm%s%s%s%s%s%s%s", gm->bt ? "_nt" : "", bias[proto.bias_kind],
                                    gm->relu ? ".relu" : "",
                                    tiled ? arena_printf(".%dx%d", proto.tile_r, proto.tile_c) : "",
                                    proto.cols_outer ? ".cols" : "", proto.kblock ? ".kblock" : "",
                                    proto.tail ? ".tail" : "");
    LLVMValueRef fn = LLVMGetNamedFunction(E->mod, name);
    return fn ? fn : gemm_routine(E, name, &proto, gm->bt ? gemm_nt_body : gemm_body);
}

/* &buf[at] */
static LLVMValueRef buf_at(Emit *E, const Buf *buf, const Expr *at)
{
    LLVMValueRef i = expr(E, at);
    return LLVMBuildInBoundsGEP2(E->b, E->f32, buf_ptr(E, buf), &i, 1, "");
}

/* Below this many multiply-adds (known at compile time) a GEMM calls its
 * routine directly; above, or when M or K depends on the batch, it goes
 * through the runtime's rt_gemm, which spreads it over the threads the
 * batch leaves idle (runtime/gemm.c; the same value as its own threshold). */
enum { SPLIT_MACS = 1 << 19 };

static bool gemm_small(LLVMValueRef M, int64_t N, LLVMValueRef K)
{
    return LLVMIsAConstantInt(M) && LLVMIsAConstantInt(K) &&
           LLVMConstIntGetSExtValue(M) * N * LLVMConstIntGetSExtValue(K) < SPLIT_MACS;
}

/* rt_gemm's `how`: runtime/cnnrt.h's RT_GEMM_BT, RT_GEMM_BIAS_ROWS,
 * RT_GEMM_BIAS_PAIRS, then the register tile's rows and columns of C. */
static int64_t gemm_how(const Gemm *g)
{
    int r, c;
    gemm_tile_for(g, &r, &c);
    if (g->tile_r)
        r = g->tile_r, c = g->tile_c;
    int64_t cols = g->bt ? c : (int64_t)c * LANES;      /* the tile's columns of C */
    return (g->bt ? 1 : 0) | (g->bias_rows ? 2 : 0) | (g->bn_rows ? 4 : 0) | (int64_t)r << 16 | cols << 24;
}

/* name(routine, the routine's 12 arguments, how, the `extra` arguments
 * after them): rt_gemm or rt_gemm_batch, see runtime/cnnrt.h. */
static void call_rt(Emit *E, const char *name, const Gemm *g, LLVMValueRef fn, LLVMValueRef *args,
                    LLVMValueRef *extra, int nextra)
{
    LLVMTypeRef p[19] = {E->ptr, E->i64, E->i64, E->i64, E->ptr, E->i64, E->i64,
                         E->ptr, E->i64, E->ptr, E->i64, E->i64, E->ptr, E->i64};
    LLVMValueRef a[19];
    a[0] = fn;
    for (int i = 0; i < 12; i++)
        a[i + 1] = args[i];
    a[11] = LLVMConstInt(E->i64, g->accumulate, 0);
    a[13] = i64c(E, gemm_how(g));
    for (int i = 0; i < nextra; i++)
        p[14 + i] = LLVMTypeOf(extra[i]), a[14 + i] = extra[i];
    LLVMTypeRef fty = LLVMFunctionType(E->voidt, p, 14 + (unsigned)nextra, 0);
    LLVMValueRef rt = LLVMGetNamedFunction(E->mod, name);
    if (!rt)
        rt = LLVMAddFunction(E->mod, name, fty);
    LLVMBuildCall2(E->b, fty, rt, a, 14 + (unsigned)nextra, "");
}

/* The routine's 12 arguments for GEMM g at the loop variables' values. */
static void gemm_args(Emit *E, const Gemm *g, LLVMValueRef args[12])
{
    LLVMValueRef a[12] = {
        expr(E, g->M), i64c(E, g->N), expr(E, g->K), buf_at(E, g->a, g->a_at), i64c(E, g->sai), i64c(E, g->sak),
        buf_at(E, g->b, g->b_at), i64c(E, g->ldb), buf_at(E, g->c, g->c_at), i64c(E, g->ldc),
        LLVMConstInt(E->i1, g->accumulate, 0), g->bias ? buf_at(E, g->bias, g->bias_at) : LLVMConstNull(E->ptr),
    };
    memcpy(args, a, sizeof a);
}

static void emit_gemm(Emit *E, const Gemm *g)
{
    LLVMValueRef fn = gemm_function(E, g), args[12];
    gemm_args(E, g, args);
    if (gemm_small(args[0], g->N, args[2]) && !g->shared_b)
        LLVMBuildCall2(E->b, E->gemm_type, fn, args, 12, "");
    else
        call_rt(E, g->shared_b ? "rt_gemm_shared" : "rt_gemm", g, fn, args, NULL, 0);
}

/*   for v in [lo, hi): one GEMM    (parallel_gemms: they may run apart)
 * becomes rt_gemm_batch(the GEMM at v = lo, hi - lo, each operand's step
 * from v to v + 1), which gives the threads whole GEMMs at batch 1 rather
 * than a fork for each (the Winograd transform's 36). */
static void emit_gemm_loop(Emit *E, const LStmt *s)
{
    const Gemm *g = ((const LStmt *)s->body.at[0])->gemm;
    LLVMValueRef fn = gemm_function(E, g), first[12], next[12], v = E->vars[s->var];
    LLVMValueRef lo = expr(E, s->lo), count = LLVMBuildSub(E->b, expr(E, s->hi), lo, "");
    LLVMBuildStore(E->b, lo, v);
    gemm_args(E, g, first);
    LLVMBuildStore(E->b, LLVMBuildAdd(E->b, lo, i64c(E, 1), ""), v);
    gemm_args(E, g, next);
    LLVMValueRef extra[5] = {count};
    int ptrs[4] = {3, 6, 8, 11};       /* A, B, C, the bias */
    for (int i = 0; i < 4; i++)
        extra[i + 1] = g->bias || i < 3 ? LLVMBuildPtrDiff2(E->b, E->f32, next[ptrs[i]], first[ptrs[i]], "") : i64c(E, 0);
    call_rt(E, "rt_gemm_batch", g, fn, first, extra, 5);
}

/* ---- 2x2 max pooling along rows ------------------------------------------- */

/* The even (odd = 0) or odd cells of the 32 floats a, b, as 16 lanes. */
static LLVMValueRef deinterleave(Emit *E, LLVMValueRef a, LLVMValueRef b, int odd)
{
    LLVMValueRef idx[LANES];
    for (int l = 0; l < LANES; l++)
        idx[l] = LLVMConstInt(E->i32, (unsigned long long)(2 * l + odd), 0);
    return LLVMBuildShuffleVector(E->b, a, b, LLVMConstVector(idx, LANES), "");
}

/* ev[8h], od[8h], ev[8h + 1], od[8h + 1], ...: half h of the interleaving. */
static LLVMValueRef interleave(Emit *E, LLVMValueRef ev, LLVMValueRef od, int h)
{
    LLVMValueRef idx[LANES];
    for (int l = 0; l < LANES; l++)
        idx[l] = LLVMConstInt(E->i32, (unsigned long long)(8 * h + l / 2 + (l % 2) * LANES), 0);
    return LLVMBuildShuffleVector(E->b, ev, od, LLVMConstVector(idx, LANES), "");
}

static LLVMValueRef vmax(Emit *E, LLVMValueRef a, LLVMValueRef b)
{
    LLVMTypeRef types[1] = {LLVMVectorType(E->f32, LANES)};
    LLVMValueRef args[2] = {a, b};
    return vector_intrinsic(E, "llvm.maxnum", types, 1, args, 2);
}

/* One input row's 32 cells from column 2 j0 on (masked to the row's width)
 * as its even and odd cells, 16 windows' worth. */
static void pool_pair(Emit *E, LLVMValueRef row, LLVMValueRef j2, LLVMValueRef W, LLVMValueRef *ev, LLVMValueRef *od)
{
    LLVMValueRef v[2];
    for (int h = 0; h < 2; h++)
        v[h] = masked_load(E, at2(E, row, j2, i64c(E, 1), i64c(E, 0), i64c(E, 0), h * LANES), lane_mask(E, j2, W, h));
    *ev = deinterleave(E, v[0], v[1], 0), *od = deinterleave(E, v[0], v[1], 1);
}

/* The gradient of one input row a (0 or 1) of the windows at j0: each cell
 * gets dy where it is the first cell equal to the maximum (tracked in
 * *found), then is masked by mask > 0 when there is a mask. */
/* The addresses of a pooling statement's operands (NULL: not used). */
typedef struct { LLVMValueRef x, y, dy, dx, mask; } PoolAt;

static void pool_dx_row(Emit *E, const Pool *p, const PoolAt *at, LLVMValueRef r, LLVMValueRef j2, int a,
                        LLVMValueRef m, LLVMValueRef g, LLVMValueRef *found)
{
    LLVMValueRef W = i64c(E, p->W), zero = LLVMConstNull(LLVMVectorType(E->f32, LANES));
    LLVMValueRef row = LLVMBuildNSWAdd(E->b, LLVMBuildNSWMul(E->b, r, i64c(E, 2 * p->W), ""), i64c(E, a * p->W), "");
    LLVMValueRef cell[2], d[2];
    pool_pair(E, at2(E, at->x, row, i64c(E, 1), i64c(E, 0), i64c(E, 0), 0), j2, W, &cell[0], &cell[1]);
    for (int b = 0; b < 2; b++) {
        LLVMValueRef hit = LLVMBuildAnd(E->b, LLVMBuildNot(E->b, *found, ""),
                                        LLVMBuildFCmp(E->b, LLVMRealOEQ, cell[b], m, ""), "");
        *found = LLVMBuildOr(E->b, *found, hit, "");
        d[b] = LLVMBuildSelect(E->b, hit, g, zero, "");
    }
    LLVMValueRef dx = at2(E, at->dx, row, i64c(E, 1), j2, i64c(E, 1), 0);
    LLVMValueRef mk = at->mask ? at2(E, at->mask, row, i64c(E, 1), j2, i64c(E, 1), 0) : NULL;
    for (int h = 0; h < 2; h++) {
        LLVMValueRef v = interleave(E, d[0], d[1], h), lanes = lane_mask(E, j2, W, h);
        if (mk) {
            LLVMValueRef k = masked_load(E, at2(E, mk, i64c(E, 0), i64c(E, 0), i64c(E, 0), i64c(E, 0), h * LANES), lanes);
            v = LLVMBuildSelect(E->b, LLVMBuildFCmp(E->b, LLVMRealOGT, k, zero, ""), v, zero, "");
        }
        masked_store(E, v, at2(E, dx, i64c(E, 0), i64c(E, 0), i64c(E, 0), i64c(E, 0), h * LANES), lanes);
    }
}

/* For each output row r, 16 windows at a time (see Pool in cnnc.h). */
static void pool_body(Emit *E, const Pool *p, const PoolAt *at)
{
    LLVMValueRef r, j0, OW = i64c(E, p->W / 2), W = i64c(E, p->W), one = i64c(E, 1);
    Loop rl = loop_open(E, i64c(E, 0), i64c(E, p->rows), &r);
    Loop jl = loop_open(E, i64c(E, 0), OW, &j0);
    LLVMValueRef j2 = LLVMBuildNSWMul(E->b, j0, i64c(E, 2), ""), out = lane_mask(E, j0, OW, 0);
    if (!p->backward) {
        LLVMValueRef m = NULL;
        for (int a = 0; a < 2; a++) {
            LLVMValueRef row = LLVMBuildNSWAdd(E->b, LLVMBuildNSWMul(E->b, r, i64c(E, 2 * p->W), ""), i64c(E, a * p->W), "");
            LLVMValueRef ev, od;
            pool_pair(E, at2(E, at->x, row, one, i64c(E, 0), i64c(E, 0), 0), j2, W, &ev, &od);
            LLVMValueRef v = vmax(E, ev, od);
            m = m ? vmax(E, m, v) : v;
        }
        masked_store(E, m, at2(E, at->y, r, OW, j0, one, 0), out);
    } else {
        LLVMValueRef m = masked_load(E, at2(E, at->y, r, OW, j0, one, 0), out);
        LLVMValueRef g = masked_load(E, at2(E, at->dy, r, OW, j0, one, 0), out);
        LLVMValueRef found = LLVMConstNull(LLVMVectorType(E->i1, LANES));
        for (int a = 0; a < 2; a++)
            pool_dx_row(E, p, at, r, j2, a, m, g, &found);
    }
    loop_close(E, &jl, LANES);
    loop_close(E, &rl, 1);
}

/* void cnnc.pool2x2[_dx].RxW[.mask](x, y, dy, dx, mask): the statement's
 * code, specialized on its sizes as inline code would be, in a function of
 * the operands' addresses (one per distinct pooling of the module). */
static LLVMValueRef pool_function(Emit *E, const Pool *p)
{
    const char *name = arena_printf("cnnc.pool2x2%s.%lldx%lld%s", p->backward ? "_dx" : "", (long long)p->rows,
                                    (long long)p->W, p->mask ? ".mask" : "");
    LLVMValueRef fn = LLVMGetNamedFunction(E->mod, name);
    if (fn)
        return fn;
    LLVMTypeRef params[5] = {E->ptr, E->ptr, E->ptr, E->ptr, E->ptr};
    fn = LLVMAddFunction(E->mod, name, LLVMFunctionType(E->voidt, params, 5, 0));
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    add_attr(E, fn, LLVMAttributeFunctionIndex, "nounwind");
    add_attr(E, fn, LLVMAttributeFunctionIndex, "noinline");
    add_attr(E, fn, p->backward ? 4 : 2, "noalias");       /* what it writes */
    LLVMValueRef saved_fn = E->fn;
    LLVMBasicBlockRef here = LLVMGetInsertBlock(E->b);
    begin_routine(E, fn);
    PoolAt at = {LLVMGetParam(fn, 0), LLVMGetParam(fn, 1), LLVMGetParam(fn, 2), LLVMGetParam(fn, 3),
                 p->mask ? LLVMGetParam(fn, 4) : NULL};
    pool_body(E, p, &at);
    LLVMBuildRetVoid(E->b);
    E->fn = saved_fn;
    LLVMPositionBuilderAtEnd(E->b, here);
    return fn;
}

static void emit_pool(Emit *E, const Pool *p)
{
    LLVMValueRef null = LLVMConstNull(E->ptr);
    PoolAt at = {
        buf_at(E, p->x, p->x_at), p->y ? buf_at(E, p->y, p->y_at) : null, p->dy ? buf_at(E, p->dy, p->dy_at) : null,
        p->dx ? buf_at(E, p->dx, p->dx_at) : null, p->mask ? buf_at(E, p->mask, p->mask_at) : null,
    };
    if (!E->share) {
        if (!p->mask)
            at.mask = NULL;
        pool_body(E, p, &at);
        return;
    }
    LLVMValueRef fn = pool_function(E, p), args[5] = {at.x, at.y, at.dy, at.dx, at.mask};
    LLVMBuildCall2(E->b, LLVMGlobalGetValueType(fn), fn, args, 5, "");
}

/* ---- shared loop nests (see share.c) -------------------------------------- */

/* A unit's function is
 *   void cnnc.nestN(float *base..., i64 n, const Table *t, scalars...)
 * with one base per kind of buffer the nest touches (the kernel's own
 * arguments: x, params, ws, ...), the batch size, a constant table per call
 * and the kernel's variables the nest reads. The table holds where each
 * buffer lies, buffer i at base + t[2i] + t[2i+1] n floats (the second for
 * batched workspace buffers), then the nest's constants. So a call is a few
 * register moves whatever the nest, and the kernel, a long list of calls,
 * stays cheap to compile. */
static LLVMTypeRef table_type(Emit *E, const Unit *u)
{
    int nb = u->bufs.n, nc = u->consts.n;
    LLVMTypeRef *f = malloc(sizeof *f * (size_t)(2 * nb + nc + 1));
    for (int i = 0; i < 2 * nb; i++)
        f[i] = E->i64;
    for (int i = 0; i < nc; i++)
        f[2 * nb + i] = ((const Expr *)u->consts.at[i])->kind == X_FLT ? E->f32 : E->i64;
    LLVMTypeRef t = LLVMStructTypeInContext(E->ctx, f, (unsigned)(2 * nb + nc), 0);
    free(f);
    return t;
}

/* Which bases the unit's buffers lie in, in Base order. */
static int unit_bases(const Unit *u, Base *bases)
{
    int n = 0;
    for (int b = BASE_X; b <= BASE_GRAD; b++)
        for (int i = 0; i < u->bufs.n; i++)
            if (((const Buf *)u->bufs.at[i])->base == (Base)b) {
                bases[n++] = (Base)b;
                break;
            }
    return n;
}

enum { TRAIN_ARGS = 4 };    /* y, first, total, seed */

/* Where the unit's scalar arguments start, after the bases, n, the table
 * and (for a training unit) the training kernel's arguments. */
static int unit_first_arg(const Unit *u, int nbase)
{
    return nbase + 2 + (u->train ? TRAIN_ARGS : 0);
}

static LLVMTypeRef unit_type(Emit *E, const Unit *u)
{
    Base bases[NBASES];
    int nbase = unit_bases(u, bases), a0 = unit_first_arg(u, nbase), na = u->args.n, nr = u->refs.n;
    LLVMTypeRef *p = malloc(sizeof *p * (size_t)(a0 + na + nr + 2));
    for (int i = 0; i < nbase; i++)
        p[i] = E->ptr;
    p[nbase] = E->i64, p[nbase + 1] = E->ptr;
    if (u->train)
        p[nbase + 2] = E->ptr, p[nbase + 3] = E->i64, p[nbase + 4] = E->i64, p[nbase + 5] = E->i64;
    for (int i = 0; i < na; i++)
        p[a0 + i] = u->is_float[(intptr_t)u->arg_vars.at[i]] ? E->f32 : E->i64;
    for (int i = 0; i < nr; i++)
        p[a0 + na + i] = E->ptr;
    if (u->parts)
        p[a0 + na + nr] = E->i64, p[a0 + na + nr + 1] = E->i64;
    LLVMTypeRef t = LLVMFunctionType(E->voidt, p, (unsigned)(a0 + na + nr + (u->parts ? 2 : 0)), 0);
    free(p);
    return t;
}

/* Entry code of a unit's function: each buffer's address from the table,
 * each constant and argument into its variable's slot; a scalar passed by
 * reference is the caller's slot itself. */
static void unit_entry(Emit *E, const Unit *u, LLVMTypeRef tt, int nbase, const Base *bases)
{
    LLVMValueRef table = LLVMGetParam(E->fn, (unsigned)nbase + 1);
    int nb = u->bufs.n, a0 = unit_first_arg(u, nbase), na = u->args.n;
    for (int i = 0; i < nb; i++) {
        const Buf *buf = u->bufs.at[i];
        int k = 0;
        while (k < nbase && bases[k] != buf->base)
            k++;
        LLVMValueRef c0 = LLVMBuildLoad2(E->b, E->i64, LLVMBuildStructGEP2(E->b, tt, table, (unsigned)(2 * i), ""), "");
        LLVMValueRef c1 = LLVMBuildLoad2(E->b, E->i64, LLVMBuildStructGEP2(E->b, tt, table, (unsigned)(2 * i + 1), ""), "");
        LLVMValueRef off = LLVMBuildNSWAdd(E->b, c0, LLVMBuildNSWMul(E->b, c1, E->n, ""), "");
        E->cached[i] = buf;
        LLVMValueRef base = buf->base == BASE_PRIV ? private_base(E) : LLVMGetParam(E->fn, (unsigned)k);
        E->cached_ptr[i] = LLVMBuildInBoundsGEP2(E->b, E->f32, base, &off, 1, buf->name);
    }
    E->ncached = nb;
    for (int i = 0; i < u->consts.n; i++) {
        int v = (int)(intptr_t)u->const_vars.at[i];
        LLVMValueRef p = LLVMBuildStructGEP2(E->b, tt, table, (unsigned)(2 * nb + i), "");
        LLVMBuildStore(E->b, LLVMBuildLoad2(E->b, u->is_float[v] ? E->f32 : E->i64, p, ""), E->vars[v]);
    }
    if (u->train) {
        E->base[BASE_Y] = LLVMGetParam(E->fn, (unsigned)nbase + 2);
        E->first = LLVMGetParam(E->fn, (unsigned)nbase + 3);
        E->total = LLVMGetParam(E->fn, (unsigned)nbase + 4);
        E->seed = LLVMGetParam(E->fn, (unsigned)nbase + 5);
    }
    for (int i = 0; i < na; i++)
        LLVMBuildStore(E->b, LLVMGetParam(E->fn, (unsigned)(a0 + i)), E->vars[(intptr_t)u->arg_vars.at[i]]);
    for (int i = 0; i < u->refs.n; i++)
        E->vars[(intptr_t)u->ref_vars.at[i]] = LLVMGetParam(E->fn, (unsigned)(a0 + na + i));
}

static void unit_attributes(Emit *E, const Unit *u, LLVMValueRef fn, int nbase)
{
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    add_attr(E, fn, LLVMAttributeFunctionIndex, "nounwind");
    add_attr(E, fn, LLVMAttributeFunctionIndex, "noinline");
    for (int i = 0; i < nbase; i++)             /* the kernel's arguments: they never alias */
        add_attr(E, fn, (unsigned)i + 1, "noalias");
    add_attr(E, fn, (unsigned)nbase + 2, "noalias");
    add_attr(E, fn, (unsigned)nbase + 2, "readonly");
    int refs = unit_first_arg(u, nbase) + u->args.n;
    for (int i = 0; i < u->refs.n; i++)          /* the caller's stack slots */
        add_attr(E, fn, (unsigned)(refs + i + 1), "noalias");
    add_string_attr(E, fn, "prefer-vector-width", "512");
    add_string_attr(E, fn, "min-legal-vector-width", "512");
    if (E->sanitize)
        add_attr(E, fn, LLVMAttributeFunctionIndex, "sanitize_address");
}

/* The function of a unit, its body the unit's copy; its buffers get alias
 * scopes of their own, as a kernel's do. */
static LLVMValueRef unit_function(Emit *E, const Unit *u)
{
    Base bases[NBASES];
    int nbase = unit_bases(u, bases), nb = u->bufs.n;
    const char *name = arena_printf("cnnc.nest%d", E->nunits++);
    LLVMValueRef fn = LLVMAddFunction(E->mod, name, unit_type(E, u));
    unit_attributes(E, u, fn, nbase);

    Emit saved = *E;
    LLVMBasicBlockRef here = LLVMGetInsertBlock(E->b);
    E->fn = fn, E->refs = NULL, E->n = LLVMGetParam(fn, (unsigned)nbase), E->base[BASE_PRIV] = NULL;
    E->prof_on = false;
    E->scopes = NULL, E->nscopes = 0;
    for (int i = 0; i < nb; i++)
        add_scope(E, u->bufs.at[i]);
    scope_metadata(E, name);
    LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(E->ctx, fn, "entry");
    LLVMBasicBlockRef start = LLVMAppendBasicBlockInContext(E->ctx, fn, "start");
    LLVMPositionBuilderAtEnd(E->b, entry);
    E->vars = calloc((size_t)u->nvars + 1, sizeof(LLVMValueRef));
    for (int v = 1; v < u->nvars; v++)
        E->vars[v] = LLVMBuildAlloca(E->b, u->is_float[v] ? E->f32 : E->i64, "");
    E->cached = malloc(sizeof(Buf *) * (size_t)(nb + 1)), E->cached_ptr = malloc(sizeof(LLVMValueRef) * (size_t)(nb + 1));
    unit_entry(E, u, table_type(E, u), nbase, bases);
    if (u->parts) {
        unsigned last = LLVMCountParams(fn);
        E->part_loop = u->body, E->part_lo = LLVMGetParam(fn, last - 2), E->part_hi = LLVMGetParam(fn, last - 1);
    }
    LLVMBuildBr(E->b, start);
    LLVMPositionBuilderAtEnd(E->b, start);
    Vec one = {0};
    vec_push(&one, u->body);
    stmts(E, &one);
    LLVMBuildRetVoid(E->b);
    free(E->vars), free(E->cached), free(E->cached_ptr), free(E->scopes);
    *E = saved;
    LLVMPositionBuilderAtEnd(E->b, here);
    return fn;
}

/* The constant table of one call: where the buffers lie in this kernel's
 * bases, then the constants. */
static LLVMValueRef unit_table(Emit *E, const Unit *u)
{
    int nb = u->bufs.n, nc = u->consts.n;
    LLVMValueRef *v = malloc(sizeof *v * (size_t)(2 * nb + nc + 1));
    for (int i = 0; i < nb; i++) {
        const Buf *b = u->bufs.at[i];
        bool per_example = b->base == BASE_WS && b->batched;
        v[2 * i] = i64c(E, per_example ? E->k->ws_fixed : b->offset);
        v[2 * i + 1] = i64c(E, per_example ? b->offset : 0);
    }
    for (int i = 0; i < nc; i++) {
        const Expr *c = u->consts.at[i];
        v[2 * nb + i] = c->kind == X_FLT ? LLVMConstReal(E->f32, c->fval) : i64c(E, c->ival);
    }
    LLVMTypeRef tt = table_type(E, u);
    LLVMValueRef t = LLVMAddGlobal(E->mod, tt, "cnnc.table");
    LLVMSetInitializer(t, LLVMConstNamedStruct(tt, v, (unsigned)(2 * nb + nc)));
    LLVMSetLinkage(t, LLVMPrivateLinkage);
    LLVMSetUnnamedAddress(t, LLVMGlobalUnnamedAddr);
    free(v);
    return t;
}

/* ---- nests in parts across threads ------------------------------------------ */

/* Below this many statements a nest runs on its thread alone: forking
 * costs a few microseconds (LeNet's layers stay whole). */
enum { PARALLEL_WORK = 1 << 14 };

/* Whether nest s runs in parts across threads: legal (parallel.c), worth
 * it, and not setting a scalar of the kernel's (a sum over the batch). */
static bool nest_parallel(const LStmt *s, const Unit *u)
{
    bool per_n;
    return !u->refs.n && parallel_work(s, &per_n) >= PARALLEL_WORK && parallel_nest(s);
}

/* fn.parts(block, lo, hi): fn(the arguments in *block, lo, hi), the entry
 * point the runtime calls once per part. */
static LLVMValueRef parts_entry(Emit *E, LLVMValueRef fn, LLVMTypeRef block, unsigned nargs)
{
    const char *name = arena_printf("%s.parts", LLVMGetValueName(fn));
    LLVMValueRef t = LLVMGetNamedFunction(E->mod, name);
    if (t)
        return t;
    LLVMTypeRef p[3] = {E->ptr, E->i64, E->i64};
    t = LLVMAddFunction(E->mod, name, LLVMFunctionType(E->voidt, p, 3, 0));
    LLVMSetLinkage(t, LLVMInternalLinkage);
    add_attr(E, t, LLVMAttributeFunctionIndex, "nounwind");
    LLVMBasicBlockRef here = LLVMGetInsertBlock(E->b);
    LLVMPositionBuilderAtEnd(E->b, LLVMAppendBasicBlockInContext(E->ctx, t, "entry"));
    LLVMValueRef *args = malloc(sizeof *args * (nargs + 2));
    for (unsigned i = 0; i < nargs; i++)
        args[i] = LLVMBuildLoad2(E->b, LLVMStructGetTypeAtIndex(block, i),
                                 LLVMBuildStructGEP2(E->b, block, LLVMGetParam(t, 0), i, ""), "");
    args[nargs] = LLVMGetParam(t, 1), args[nargs + 1] = LLVMGetParam(t, 2);
    LLVMBuildCall2(E->b, LLVMGlobalGetValueType(fn), fn, args, nargs + 2, "");
    LLVMBuildRetVoid(E->b);
    free(args);
    LLVMPositionBuilderAtEnd(E->b, here);
    return t;
}

/* fn(args..., part) for the parts of [lo, hi): rt_parallel(fn.parts,
 * &block, lo, hi, n) with the arguments in a block on the stack. The runtime
 * splits the range over the threads the batch leaves idle (or runs it
 * whole: inside the batch's own parallel region, on one thread, or when
 * its first calls were quick). */
static void call_parts(Emit *E, LLVMValueRef fn, LLVMValueRef *args, unsigned nargs, const LStmt *s)
{
    LLVMTypeRef *types = malloc(sizeof *types * (nargs + 2));
    LLVMGetParamTypes(LLVMGlobalGetValueType(fn), types);
    LLVMTypeRef block = LLVMStructTypeInContext(E->ctx, types, nargs, 0);
    free(types);
    LLVMValueRef entry = parts_entry(E, fn, block, nargs), at = entry_alloca(E, block);
    for (unsigned i = 0; i < nargs; i++)
        LLVMBuildStore(E->b, args[i], LLVMBuildStructGEP2(E->b, block, at, i, ""));
    LLVMTypeRef p[5] = {E->ptr, E->ptr, E->i64, E->i64, E->i64}, fty = LLVMFunctionType(E->voidt, p, 5, 0);
    LLVMValueRef rt = LLVMGetNamedFunction(E->mod, "rt_parallel");
    if (!rt)
        rt = LLVMAddFunction(E->mod, "rt_parallel", fty);
    LLVMValueRef a[5] = {entry, at, expr(E, s->lo), expr(E, s->hi), E->n};
    LLVMBuildCall2(E->b, fty, rt, a, 5, "");
}

/* A call of the unit's function (made on the first call) for nest s. */
static void emit_unit(Emit *E, Unit *u, const LStmt *s)
{
    u->parts = nest_parallel(s, u);
    const char *key = u->parts ? arena_printf("%s|parts", u->key) : u->key;
    LLVMValueRef fn = map_get(&E->units, key);
    if (!fn) {
        fn = unit_function(E, u);
        map_put(&E->units, key, fn);
    }
    Base bases[NBASES];
    int nbase = unit_bases(u, bases), a0 = unit_first_arg(u, nbase), na = u->args.n, nr = u->refs.n;
    LLVMValueRef *args = malloc(sizeof *args * (size_t)(a0 + na + nr));
    for (int i = 0; i < nbase; i++)
        args[i] = E->base[bases[i]];
    args[nbase] = E->n, args[nbase + 1] = unit_table(E, u);
    if (u->train)
        args[nbase + 2] = E->base[BASE_Y], args[nbase + 3] = E->first, args[nbase + 4] = E->total, args[nbase + 5] = E->seed;
    for (int i = 0; i < na; i++)
        args[a0 + i] = expr(E, u->args.at[i]);
    for (int i = 0; i < nr; i++)
        args[a0 + na + i] = E->vars[((const Expr *)u->refs.at[i])->var];
    if (u->parts)
        call_parts(E, fn, args, (unsigned)(a0 + na + nr), s);
    else
        LLVMBuildCall2(E->b, LLVMGlobalGetValueType(fn), fn, args, (unsigned)(a0 + na + nr), "");
    free(args);
}

/* Whether nest s, a loop over the examples that runs in parts across
 * threads, holds one nest that could run in parts itself (a depthwise
 * convolution's channels, between GEMMs batched over the examples). */
static bool split_inside(const LStmt *s, const Unit *u)
{
    if (!example_loop(s) || s->body.n != 1 || !nest_parallel(s, u))
        return false;
    const LStmt *in = s->body.at[0];
    bool per_n;
    return in->kind == L_FOR && parallel_work(in, &per_n) >= PARALLEL_WORK && parallel_nest(in);
}

/* Such a nest split over one example would leave every thread but one
 * idle: on one example (a forward call at batch 1) the example loop runs
 * inline and its nest is a unit of its own, in parts by its outer loop;
 * on more, the whole nest is one unit in parts by the examples. */
static void emit_split_inside(Emit *E, Unit *u, const LStmt *s)
{
    LLVMBasicBlockRef one = LLVMAppendBasicBlockInContext(E->ctx, E->fn, "one");
    LLVMBasicBlockRef many = LLVMAppendBasicBlockInContext(E->ctx, E->fn, "many");
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(E->ctx, E->fn, "split.end");
    LLVMBuildCondBr(E->b, LLVMBuildICmp(E->b, LLVMIntEQ, E->n, i64c(E, 1), ""), one, many);
    LLVMPositionBuilderAtEnd(E->b, one);
    emit_for(E, s);
    LLVMBuildBr(E->b, done);
    LLVMPositionBuilderAtEnd(E->b, many);
    emit_unit(E, u, s);
    LLVMBuildBr(E->b, done);
    LLVMPositionBuilderAtEnd(E->b, done);
}

/* A loop nest: a loop of GEMMs whose GEMMs may run apart is one
 * rt_gemm_batch; else a call of its shared function (see emit_split_inside
 * for a loop over the examples), or, when it holds GEMM or pooling
 * statements, inline with its nests as units. */
static void emit_loop(Emit *E, const LStmt *s)
{
    Unit u;
    if (parallel_gemms(s))
        emit_gemm_loop(E, s);
    else if (E->refs && share_unit(E->k, E->refs, s, &u)) {
        if (split_inside(s, &u))
            emit_split_inside(E, &u, s);
        else
            emit_unit(E, &u, s);
    } else
        emit_for(E, s);
}

/* --profile: rt_prof_mark(table, id), the time from here on counted to
 * layer `id` (-1: the kernel's end). */
static void prof_mark(Emit *E, int64_t id)
{
    LLVMTypeRef p[2] = {E->ptr, E->i64}, fty = LLVMFunctionType(E->voidt, p, 2, 0);
    LLVMValueRef rt = LLVMGetNamedFunction(E->mod, "rt_prof_mark");
    if (!rt)
        rt = LLVMAddFunction(E->mod, "rt_prof_mark", fty);
    LLVMValueRef a[2] = {E->prof_ns, i64c(E, id)};
    LLVMBuildCall2(E->b, fty, rt, a, 2, "");
}

/* The mark id of statement s, which begins a layer called `label`: one per
 * statement, the same where a statement is emitted twice
 * (emit_split_inside). */
static int64_t prof_id(Emit *E, const LStmt *s, const char *label)
{
    const char *key = arena_printf("%p", (const void *)s);
    intptr_t id = (intptr_t)map_get(&E->prof_ids, key);
    if (!id) {
        vec_push(&E->prof_labels, (void *)label);
        id = E->prof_labels.n;
        map_put(&E->prof_ids, key, (void *)id);
    }
    return id - 1;
}

static void stmts(Emit *E, const Vec *body)
{
    for (int i = 0; i < body->n; i++) {
        const LStmt *s = body->at[i];
        if (E->prof_on && s->comment)
            prof_mark(E, prof_id(E, s, s->comment));
        switch (s->kind) {
        case L_FOR:   emit_loop(E, s); break;
        case L_IF:    emit_if(E, s); break;
        case L_STORE: emit_store(E, s); break;
        case L_SET:   LLVMBuildStore(E->b, expr(E, s->val), E->vars[s->var]); break;
        case L_GEMM:  emit_gemm(E, s->gemm); break;
        case L_POOL:  emit_pool(E, s->pool); break;
        }
    }
}

/* ---- kernels -------------------------------------------------------------- */

/* A kernel function: attributes, then an entry block holding every
 * variable's alloca, then the body. Returns with `ret` (NULL: void). */
static LLVMValueRef kernel_function(Emit *E, const Kernel *k, const CodegenOptions *o, LLVMTypeRef type)
{
    LLVMValueRef fn = LLVMAddFunction(E->mod, k->name, type);
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    add_attr(E, fn, LLVMAttributeFunctionIndex, "nounwind");
    add_string_attr(E, fn, "prefer-vector-width", "512");
    add_string_attr(E, fn, "min-legal-vector-width", "512");
    if (o->sanitize)
        add_attr(E, fn, LLVMAttributeFunctionIndex, "sanitize_address");
    if (E->share) {
        /* a list of calls (its loop nests are shared functions, see share.c):
         * optimizing it would gain nothing and cost as much as the nests */
        add_attr(E, fn, LLVMAttributeFunctionIndex, "optnone");
        add_attr(E, fn, LLVMAttributeFunctionIndex, "noinline");
    }
    E->fn = fn, E->k = k, E->n = LLVMGetParam(fn, 0), E->ncached = 0, E->base[BASE_PRIV] = NULL;
    return fn;
}

/* rt_grads_ready(ctx, lo, hi): the training kernel will not touch
 * grads[lo, hi) again (ready.c). The fence keeps every store to them before
 * the call: the runtime reads them, and a process's sum writes them, while
 * the kernel goes on. */
static void grads_ready(Emit *E, const Ready *r)
{
    LLVMTypeRef args[3] = {E->ptr, E->i64, E->i64};
    LLVMTypeRef type = LLVMFunctionType(E->voidt, args, 3, 0);
    LLVMValueRef fn = LLVMGetNamedFunction(E->mod, "rt_grads_ready");
    if (!fn)
        fn = LLVMAddFunction(E->mod, "rt_grads_ready", type);
    LLVMBuildFence(E->b, LLVMAtomicOrderingRelease, 0, "");
    LLVMValueRef v[3] = {E->grads_ctx, i64c(E, r->lo), i64c(E, r->hi)};
    LLVMBuildCall2(E->b, type, fn, v, 3, "");
}

static void kernel_body(Emit *E, const Kernel *k)
{
    make_scopes(E, k);
    E->refs = E->share ? share_refs(k) : NULL;
    LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(E->ctx, E->fn, "entry");
    LLVMBasicBlockRef start = LLVMAppendBasicBlockInContext(E->ctx, E->fn, "start");
    LLVMPositionBuilderAtEnd(E->b, entry);
    E->vars = calloc((size_t)k->nvars + 1, sizeof(LLVMValueRef));
    for (int v = 1; v < k->nvars; v++)
        E->vars[v] = LLVMBuildAlloca(E->b, k->is_float[v] ? E->f32 : E->i64, "");
    LLVMBuildBr(E->b, start);
    LLVMPositionBuilderAtEnd(E->b, start);
    bool train = k->ret != 0;
    E->prof_on = E->profile;
    for (int i = 0, r = 0; i < k->body.n; i++) {
        const LStmt *s = k->body.at[i];
        Vec one = {&k->body.at[i], 1, 1};
        if (E->prof_on && !s->comment && s->kind == L_GEMM)      /* a dense layer's, over the batch */
            prof_mark(E, prof_id(E, s, arena_printf("%s (gemm)", s->gemm->c->name)));
        stmts(E, &one);
        for (; train && r < E->nready && E->ready[r].after == i; r++)
            grads_ready(E, &E->ready[r]);
    }
    if (E->prof_on)
        prof_mark(E, -1);
    E->prof_on = false;
    if (k->ret)
        LLVMBuildRet(E->b, LLVMBuildFPExt(E->b, LLVMBuildLoad2(E->b, E->f32, E->vars[k->ret], ""), E->f64, ""));
    else
        LLVMBuildRetVoid(E->b);
    free(E->vars);
    free(E->cached), free(E->cached_ptr);
    E->cached = NULL, E->cached_ptr = NULL;
}

/* void forward(i64 n, const float *x, float *out, const float *params, float *ws):
 * the four pointers never alias. */
static LLVMValueRef emit_kernel(Emit *E, const Kernel *k, const CodegenOptions *o)
{
    LLVMTypeRef params[5] = {E->i64, E->ptr, E->ptr, E->ptr, E->ptr};
    LLVMValueRef fn = kernel_function(E, k, o, LLVMFunctionType(E->voidt, params, 5, 0));
    for (unsigned i = 2; i <= 5; i++)
        add_attr(E, fn, i, "noalias");
    static const Base order[4] = {BASE_X, BASE_OUT, BASE_PARAMS, BASE_WS};
    for (int i = 0; i < 4; i++)
        E->base[order[i]] = LLVMGetParam(fn, (unsigned)i + 1);
    kernel_body(E, k);
    return fn;
}

/* double train(i64 n, const float *x, const void *y, float *params, float *grads,
 *              float *ws, i64 first, i64 total, u64 seed, rt_grads *ctx) (rt_train_fn) */
static LLVMValueRef emit_train_kernel(Emit *E, const Kernel *k, const CodegenOptions *o)
{
    LLVMTypeRef params[10] = {E->i64, E->ptr, E->ptr, E->ptr, E->ptr, E->ptr, E->i64, E->i64, E->i64, E->ptr};
    LLVMValueRef fn = kernel_function(E, k, o, LLVMFunctionType(E->f64, params, 10, 0));
    for (unsigned i = 2; i <= 6; i++)
        add_attr(E, fn, i, "noalias");
    static const Base order[5] = {BASE_X, BASE_Y, BASE_PARAMS, BASE_GRAD, BASE_WS};
    for (int i = 0; i < 5; i++)
        E->base[order[i]] = LLVMGetParam(fn, (unsigned)i + 1);
    E->base[BASE_OUT] = NULL;
    E->first = LLVMGetParam(fn, 6), E->total = LLVMGetParam(fn, 7), E->seed = LLVMGetParam(fn, 8);
    E->grads_ctx = LLVMGetParam(fn, 9);
    kernel_body(E, k);
    return fn;
}

/* ---- the descriptor and the C API ----------------------------------------- */

/* Fields of rt_net_desc (runtime/cnnrt.h), every one 8 bytes wide, in order. */
typedef struct { LLVMValueRef *v; int n, cap; } Fields;

static void field(Fields *f, LLVMValueRef v)
{
    if (f->n == f->cap) {
        f->cap = f->cap ? 2 * f->cap : 64;
        f->v = realloc(f->v, sizeof(LLVMValueRef) * (size_t)f->cap);
    }
    f->v[f->n++] = v;
}

static LLVMValueRef cstr(Emit *E, const char *s)
{
    if (!s)
        return LLVMConstNull(E->ptr);
    return LLVMBuildGlobalStringPtr(E->b, s, ".str");
}

static void fi(Emit *E, Fields *f, int64_t v) { field(f, LLVMConstInt(E->i64, (unsigned long long)v, 1)); }
static void fd(Emit *E, Fields *f, double v)  { field(f, LLVMConstReal(E->f64, v)); }

static LLVMValueRef global_struct(Emit *E, Fields *f, const char *name, bool external)
{
    LLVMTypeRef *types = malloc(sizeof(LLVMTypeRef) * (size_t)f->n);
    for (int i = 0; i < f->n; i++)
        types[i] = LLVMTypeOf(f->v[i]);
    LLVMValueRef init = LLVMConstStructInContext(E->ctx, f->v, (unsigned)f->n, 0);
    LLVMValueRef g = LLVMAddGlobal(E->mod, LLVMStructTypeInContext(E->ctx, types, (unsigned)f->n, 0), name);
    LLVMSetInitializer(g, init);
    LLVMSetGlobalConstant(g, 1);
    LLVMSetLinkage(g, external ? LLVMExternalLinkage : LLVMPrivateLinkage);
    free(types);
    free(f->v);
    return g;
}

static void shape_fields(Emit *E, Fields *f, Shape s, int slots)
{
    fi(E, f, s.rank);
    for (int i = 0; i < slots; i++)
        fi(E, f, i < s.rank ? s.d[i] : 0);
    fi(E, f, shape_count(s));
}

/* Parameter i's built-in values (INIT_DATA) as a constant of their bytes,
 * 64-byte aligned, or NULL. One i8 array per tensor: LLVM keeps it as one
 * blob and writes it out with one copy, where an array of floats would go
 * element by element (VGG-16's weights are 528 MB). The section is x86-64's
 * large read-only data (.lrodata, placed after the program's other data),
 * so that weights over 2 GiB do not push the code's own constants out of
 * reach of its 32-bit offsets. */
_Static_assert(INIT_XAVIER == 6 && INIT_DATA == 7, "InitKind is emitted as runtime/cnnrt.h's RT_INIT_*");

static LLVMValueRef param_data(Emit *E, const Param *p, int i)
{
    size_t bytes = sizeof(float) * (size_t)shape_count(p->shape);
    if (p->init != INIT_DATA || bytes == 0)
        return LLVMConstNull(E->ptr);
    if (!p->data)
        internal_error("parameter '%s' has INIT_DATA but no data", p->name);
    LLVMValueRef init = LLVMConstStringInContext2(E->ctx, (const char *)p->data, bytes, 1);
    LLVMValueRef gv = LLVMAddGlobal(E->mod, LLVMTypeOf(init), arena_printf("cnnc.data.%d", i));
    LLVMSetInitializer(gv, init);
    LLVMSetGlobalConstant(gv, 1);
    LLVMSetLinkage(gv, LLVMPrivateLinkage);
    LLVMSetUnnamedAddress(gv, LLVMGlobalUnnamedAddr);
    LLVMSetAlignment(gv, 64);
    LLVMSetSection(gv, ".lrodata.cnnc");
    return gv;
}

/* rt_param_desc[]: name, rank, dims[4], count, offset, init, a, b, fan_in, fan_out, flags, data */
static LLVMValueRef param_table(Emit *E, const Lowered *l)
{
    const Graph *g = l->g;
    Fields f = {0};
    for (int i = 0; i < g->nparams; i++) {
        const Param *p = &g->params[i];
        field(&f, cstr(E, p->name));
        shape_fields(E, &f, p->shape, MAX_PARAM_RANK);
        fi(E, &f, l->param_offset[i]);
        fi(E, &f, p->init);
        fd(E, &f, p->a), fd(E, &f, p->b);
        fi(E, &f, p->fan_in), fi(E, &f, p->fan_out);
        fi(E, &f, (p->is_weight ? 1 : 0) | (p->is_buffer ? 2 : 0));
        field(&f, param_data(E, p, i));
    }
    if (!f.n)
        fi(E, &f, 0);
    return global_struct(E, &f, "cnnc.params", false);
}

/* `info`'s text: the layer table and the memory of --summary. */
static char *summary_text(const Lowered *l)
{
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    summary_print(m, l->g);
    summary_memory(m, l);
    fclose(m);
    char *s = arena_strdup(text);
    free(text);
    return s;
}

#define RT_DESC_MAGIC 0x636e6e630000000bll   /* "cnnc", layout version 11 */

/* Where an output's values index: an OP_MAXPOOL_IDX's (through reshapes)
 * index the example it pools, whose size the runtime adds per example. */
static int64_t index_step(const Node *n)
{
    while (n->op == OP_FLATTEN)
        n = n->in[0];
    return n->op == OP_MAXPOOL_IDX ? shape_count(n->in[0]->shape) : 0;
}

/* rt_output_desc[]: name, shape, offset in the example's row, dtype, index step */
static LLVMValueRef output_table(Emit *E, const Graph *g)
{
    Fields f = {0};
    int64_t off = 0;
    for (int i = 0; i < (g->noutputs ? g->noutputs : 1); i++) {
        const Node *n = g->noutputs ? g->outputs[i] : g->output;
        field(&f, cstr(E, g->noutputs ? g->output_names[i] : "out"));
        shape_fields(E, &f, n->shape, MAX_RANK);
        fi(E, &f, off);
        fi(E, &f, g->noutputs ? g->output_types[i] : ET_F32);
        fi(E, &f, index_step(n));
        off += shape_count(n->shape);
    }
    return global_struct(E, &f, "cnnc.outputs", false);
}

static void train_fields(Emit *E, Fields *f, const Graph *g)
{
    const TrainCfg *t = &g->train;
    fd(E, f, t->lr), fd(E, f, t->momentum), fd(E, f, t->weight_decay);
    fi(E, f, t->nesterov), fi(E, f, t->batch), fi(E, f, t->epochs), fi(E, f, t->schedule);
    fi(E, f, t->step_every), fd(E, f, t->step_factor), fd(E, f, t->exp_gamma), fi(E, f, (int64_t)t->seed);
    const DataCfg *d = &g->data;
    const DataSet *sets[2] = {&d->train, &d->test};
    for (int i = 0; i < 2; i++) {
        fi(E, f, sets[i]->kind);
        field(f, cstr(E, sets[i]->path)), field(f, cstr(E, sets[i]->labels));
        fi(E, f, sets[i]->label_col);
    }
    fd(E, f, d->scale);
}

/* The data block's preprocessing: resize, crop, mean[3], std[3], classes. */
static void prep_fields(Emit *E, Fields *f, const DataCfg *d)
{
    fi(E, f, d->resize), fi(E, f, d->crop);
    for (int i = 0; i < 3; i++)
        fd(E, f, d->mean[i]);
    for (int i = 0; i < 3; i++)
        fd(E, f, d->std[i]);
    field(f, cstr(E, d->classes));
}

/* rt_reg_desc[]: kind, coef, param — one per parameter of each l2/l1 term */
static LLVMValueRef reg_table(Emit *E, const Graph *g, int *count)
{
    Fields f = {0};
    *count = 0;
    for (int i = 0; i < g->nloss; i++) {
        const LossTerm *t = &g->loss[i];
        for (int j = 0; (t->kind == LOSS_L2 || t->kind == LOSS_L1) && j < t->nparams; j++, ++*count) {
            fi(E, &f, t->kind == LOSS_L2 ? 1 : 2);
            fd(E, &f, t->coef);
            fi(E, &f, t->params[j]);
        }
    }
    if (!f.n)
        fi(E, &f, 0);
    return global_struct(E, &f, "cnnc.reg", false);
}

/* The training kernel's rt_grads_ready calls in order, [lo, hi) each (i64[2 n]). */
static LLVMValueRef ready_table(Emit *E)
{
    Fields f = {0};
    for (int i = 0; i < E->nready; i++)
        fi(E, &f, E->ready[i].lo), fi(E, &f, E->ready[i].hi);
    if (!f.n)
        fi(E, &f, 0);
    return global_struct(E, &f, "cnnc.ready", false);
}

/* --profile: the layers' labels (NULL without), and the table of times
 * the marks add to, n int64s (see rt_prof_mark), replacing the
 * placeholder the kernels' calls name. */
static LLVMValueRef prof_table(Emit *E)
{
    if (!E->profile)
        return LLVMConstNull(E->ptr);
    int n = E->prof_labels.n;
    LLVMTypeRef at = LLVMArrayType2(E->i64, (uint64_t)n);
    LLVMValueRef ns = LLVMAddGlobal(E->mod, at, "cnnc.prof_ns");
    LLVMSetInitializer(ns, LLVMConstNull(at));
    LLVMSetLinkage(ns, LLVMInternalLinkage);
    LLVMReplaceAllUsesWith(E->prof_ns, ns);
    LLVMDeleteGlobal(E->prof_ns);
    E->prof_ns = ns;
    LLVMValueRef *v = malloc(sizeof *v * (size_t)(n + 1));
    for (int i = 0; i < n; i++)
        v[i] = cstr(E, E->prof_labels.at[i]);
    LLVMTypeRef lt = LLVMArrayType2(E->ptr, (uint64_t)n);
    LLVMValueRef labels = LLVMAddGlobal(E->mod, lt, "cnnc.prof_labels");
    LLVMSetInitializer(labels, LLVMConstArray2(E->ptr, v, (uint64_t)n));
    LLVMSetLinkage(labels, LLVMPrivateLinkage);
    LLVMSetGlobalConstant(labels, 1);
    free(v);
    return labels;
}

/* The rt_net_desc NAME_desc: everything the runtime knows of the network. */
static LLVMValueRef descriptor(Emit *E, const Lowered *l, LLVMValueRef forward, LLVMValueRef train)
{
    const Graph *g = l->g;
    LLVMValueRef params = param_table(E, l);
    int nreg;
    LLVMValueRef reg = reg_table(E, g, &nreg);
    Fields f = {0};
    fi(E, &f, RT_DESC_MAGIC);
    field(&f, cstr(E, g->name)), field(&f, cstr(E, CNNC_VERSION));
    fi(E, &f, (int64_t)graph_hash(g));
    shape_fields(E, &f, g->input->shape, MAX_RANK);
    shape_fields(E, &f, g->output->shape, MAX_RANK);
    fi(E, &f, g->label_kind), fi(E, &f, g->nclasses), fi(E, &f, shape_count(g->target_shape));
    const LossTerm *data_term = NULL;
    for (int i = 0; i < g->nloss && !data_term; i++)
        if (g->loss[i].f)
            data_term = &g->loss[i];
    fi(E, &f, !data_term ? 0 : data_term->kind == LOSS_SOFTMAX_CE ? 1 : data_term->kind == LOSS_SVM_HINGE ? 2 : 3);
    fd(E, &f, data_term ? data_term->margin : 0);
    fi(E, &f, g->output->op == OP_SOFTMAX);
    fi(E, &f, g->nparams), field(&f, params);
    fi(E, &f, l->param_floats), fi(E, &f, l->ws_floats), fi(E, &f, l->forward->ws_fixed);
    field(&f, forward);
    field(&f, train ? train : LLVMConstNull(E->ptr));
    fi(E, &f, l->train_ws_floats), fi(E, &f, l->train_ws_fixed), fi(E, &f, l->train_serial);
    fi(E, &f, nreg), field(&f, reg);
    fi(E, &f, E->nready), field(&f, ready_table(E));
    train_fields(E, &f, g);
    field(&f, cstr(E, summary_text(l)));
    prep_fields(E, &f, &g->data);
    fi(E, &f, graph_output_stride(g));
    fi(E, &f, g->noutputs ? g->noutputs : 1), field(&f, output_table(E, g));
    fi(E, &f, l->private_floats);
    fi(E, &f, E->prof_labels.n), field(&f, prof_table(E)), field(&f, E->profile ? E->prof_ns : LLVMConstNull(E->ptr));
    return global_struct(E, &f, arena_printf("%s_desc", g->name), true);
}

/* One function of the C API: NAME_suffix(args) { return rt_fn([&desc,] args); } */
typedef struct { const char *suffix, *rt; char ret; const char *args; bool desc; } ApiFn;

static const ApiFn api[] = {
    {"new", "rt_net_new", 'p', "i", true},
    {"free", "rt_net_free", 'v', "p", false},
    {"load", "rt_net_load", 'w', "pp", false},
    {"save", "rt_net_save", 'w', "pp", false},
    {"error", "rt_net_error", 'p', "p", false},
    {"forward", "rt_net_forward", 'v', "pwpp", false},
    {"loss_grad", "rt_net_loss_grad", 'f', "pwpp", false},
    {"train_step", "rt_net_train_step", 'f', "pwpp", false},
    {"param_count", "rt_desc_param_count", 'w', "", true},
    {"param_name", "rt_desc_param_name", 'p', "w", true},
    {"param_shape", "rt_desc_param_shape", 'w', "wp", true},
    {"param", "rt_net_param", 'p', "pw", false},
    {"grad", "rt_net_grad", 'p', "pw", false},
    {"set_threads", "rt_net_set_threads", 'v', "pw", false},
    {"set_lr", "rt_net_set_lr", 'v', "pf", false},
    {"step", "rt_net_step", 'w', "p", false},
};

/* 'p' pointer, 'i' i64, 'w' i32 (C int), 'f' float, 'v' void */
static LLVMTypeRef api_type(Emit *E, char c)
{
    return c == 'p' ? E->ptr : c == 'i' ? E->i64 : c == 'w' ? E->i32 : c == 'f' ? E->f32 : E->voidt;
}

static void emit_api(Emit *E, const Graph *g, LLVMValueRef desc)
{
    for (size_t i = 0; i < sizeof api / sizeof api[0]; i++) {
        const ApiFn *a = &api[i];
        int n = (int)strlen(a->args);
        LLVMTypeRef types[6], rtypes[7];
        LLVMValueRef args[7];
        for (int j = 0; j < n; j++)
            types[j] = api_type(E, a->args[j]);
        int off = a->desc ? 1 : 0;
        rtypes[0] = E->ptr;
        memcpy(rtypes + off, types, sizeof(LLVMTypeRef) * (size_t)n);
        LLVMTypeRef ret = api_type(E, a->ret);
        LLVMValueRef fn = LLVMAddFunction(E->mod, arena_printf("%s_%s", g->name, a->suffix),
                                          LLVMFunctionType(ret, types, (unsigned)n, 0));
        LLVMTypeRef rty = LLVMFunctionType(ret, rtypes, (unsigned)(n + off), 0);
        LLVMValueRef rt = LLVMGetNamedFunction(E->mod, a->rt);
        if (!rt)
            rt = LLVMAddFunction(E->mod, a->rt, rty);
        LLVMPositionBuilderAtEnd(E->b, LLVMAppendBasicBlockInContext(E->ctx, fn, "entry"));
        args[0] = desc;
        for (int j = 0; j < n; j++)
            args[j + off] = LLVMGetParam(fn, (unsigned)j);
        LLVMValueRef r = LLVMBuildCall2(E->b, rty, rt, args, (unsigned)(n + off), "");
        if (a->ret == 'v')
            LLVMBuildRetVoid(E->b);
        else
            LLVMBuildRet(E->b, r);
    }
}

/* int main(int argc, char **argv) { return rt_main(&NAME_desc, argc, argv); }
 * (rt_mpi_main with --mpi) */
static void emit_main(Emit *E, LLVMValueRef desc, bool mpi)
{
    LLVMTypeRef margs[2] = {E->i32, E->ptr}, rargs[3] = {E->ptr, E->i32, E->ptr};
    LLVMValueRef fn = LLVMAddFunction(E->mod, "main", LLVMFunctionType(E->i32, margs, 2, 0));
    LLVMTypeRef rty = LLVMFunctionType(E->i32, rargs, 3, 0);
    LLVMValueRef rt = LLVMAddFunction(E->mod, mpi ? "rt_mpi_main" : "rt_main", rty);
    LLVMPositionBuilderAtEnd(E->b, LLVMAppendBasicBlockInContext(E->ctx, fn, "entry"));
    LLVMValueRef args[3] = {desc, LLVMGetParam(fn, 0), LLVMGetParam(fn, 1)};
    LLVMBuildRet(E->b, LLVMBuildCall2(E->b, rty, rt, args, 3, ""));
}

/* ---- the target and the pipeline ------------------------------------------ */

/* The target's features: the host's (or none for a named CPU), and on x86
 * "prefer-no-gather". LLVM vectorizes a strided copy (a stride-2 layer's
 * phased input, a depthwise conv's or pooling's) with 8-lane gathers by
 * default; without them it loads whole vectors and shuffles. Measured on
 * AMD Zen 5, 2 threads: MobileNet V2 latency 2.86 -> 2.73 ms, forward at
 * batch 16 +3-4% for MobileNet V2, GoogLeNet and ResNet-18, MobileNet V2
 * training +5%, the small nets unchanged. Intel CPUs with the Gather Data
 * Sampling fix run gathers slower still. */
static char *target_features(const char *triple, bool host)
{
    char *host_features = host ? LLVMGetHostCPUFeatures() : NULL;
    const char *extra = strncmp(triple, "x86_64", 6) == 0 ? "+prefer-no-gather" : "";
    char *features = arena_printf("%s%s%s", host ? host_features : "", host && *extra ? "," : "", extra);
    if (host_features)
        LLVMDisposeMessage(host_features);
    return features;
}

static LLVMTargetMachineRef target_machine(const CodegenOptions *o, LLVMCodeGenOptLevel level)
{
    LLVMInitializeNativeTarget();
    LLVMInitializeNativeAsmPrinter();
    LLVMInitializeNativeAsmParser();
    char *triple = LLVMGetDefaultTargetTriple(), *err = NULL;
    LLVMTargetRef target;
    if (LLVMGetTargetFromTriple(triple, &target, &err))
        internal_error("no LLVM target for %s: %s", triple, err);
    bool host = !o->cpu || strcmp(o->cpu, "native") == 0;
    char *cpu = host ? LLVMGetHostCPUName() : NULL;
    LLVMTargetMachineRef tm = LLVMCreateTargetMachine(target, triple, host ? cpu : o->cpu, target_features(triple, host),
                                                      level, LLVMRelocPIC, LLVMCodeModelDefault);
    LLVMDisposeMessage(triple);
    if (host)
        LLVMDisposeMessage(cpu);
    return tm;
}

static bool optimize(Emit *E, LLVMTargetMachineRef tm, const CodegenOptions *o)
{
    LLVMPassBuilderOptionsRef opts = LLVMCreatePassBuilderOptions();
    LLVMPassBuilderOptionsSetLoopVectorization(opts, o->opt_level >= 2);
    LLVMPassBuilderOptionsSetSLPVectorization(opts, o->opt_level >= 2);
    LLVMPassBuilderOptionsSetLoopUnrolling(opts, o->opt_level >= 2);
    const char *pipeline = arena_printf("default<O%d>%s", o->opt_level, o->sanitize ? ",asan" : "");
    LLVMErrorRef err = LLVMRunPasses(E->mod, pipeline, tm, opts);
    LLVMDisposePassBuilderOptions(opts);
    if (err) {
        char *msg = LLVMGetErrorMessage(err);
        fprintf(stderr, "cnnc: internal compiler error: LLVM passes failed: %s\n", msg);
        LLVMDisposeErrorMessage(msg);
        return false;
    }
    return true;
}

static bool write_output(Emit *E, LLVMTargetMachineRef tm, OutputKind kind, const char *path)
{
    char *err = NULL;
    if (kind == OUT_LLVM) {
        if (!path || strcmp(path, "-") == 0) {
            char *s = LLVMPrintModuleToString(E->mod);
            fputs(s, stdout);
            LLVMDisposeMessage(s);
            return true;
        }
        if (!LLVMPrintModuleToFile(E->mod, path, &err))
            return true;
    } else if (kind == OUT_ASM && (!path || strcmp(path, "-") == 0)) {
        LLVMMemoryBufferRef buf;
        if (!LLVMTargetMachineEmitToMemoryBuffer(tm, E->mod, LLVMAssemblyFile, &err, &buf)) {
            fwrite(LLVMGetBufferStart(buf), 1, LLVMGetBufferSize(buf), stdout);
            LLVMDisposeMemoryBuffer(buf);
            return true;
        }
    } else if (!LLVMTargetMachineEmitToFile(tm, E->mod, (char *)path,
                                            kind == OUT_ASM ? LLVMAssemblyFile : LLVMObjectFile, &err)) {
        return true;
    }
    fprintf(stderr, "cnnc: cannot write '%s': %s\n", path ? path : "-", err ? err : "unknown error");
    LLVMDisposeMessage(err);
    return false;
}

/* A module `name` in ctx, its builder and the types every emitter uses. */
static void emit_init(Emit *E, LLVMContextRef ctx, const char *name)
{
    E->ctx = ctx;
    E->mod = LLVMModuleCreateWithNameInContext(name, E->ctx);
    E->b = LLVMCreateBuilderInContext(E->ctx);
    E->i1 = LLVMInt1TypeInContext(E->ctx), E->i32 = LLVMInt32TypeInContext(E->ctx);
    E->i64 = LLVMInt64TypeInContext(E->ctx), E->f32 = LLVMFloatTypeInContext(E->ctx);
    E->f64 = LLVMDoubleTypeInContext(E->ctx), E->ptr = LLVMPointerTypeInContext(E->ctx, 0);
    E->voidt = LLVMVoidTypeInContext(E->ctx);
}

static void set_target(Emit *E, LLVMTargetMachineRef tm, LLVMTargetDataRef *layout)
{
    char *triple = LLVMGetTargetMachineTriple(tm);
    LLVMSetTarget(E->mod, triple);
    LLVMDisposeMessage(triple);
    *layout = LLVMCreateTargetDataLayout(tm);
    LLVMSetModuleDataLayout(E->mod, *layout);
}

bool llvm_emit(const Lowered *l, const CodegenOptions *o, OutputKind kind, const char *path)
{
    Emit E = {0};
    emit_init(&E, LLVMContextCreate(), l->g->name);

    LLVMCodeGenOptLevel level = o->opt_level == 0 ? LLVMCodeGenLevelNone
                              : o->opt_level == 1 ? LLVMCodeGenLevelLess
                              : o->opt_level == 2 ? LLVMCodeGenLevelDefault : LLVMCodeGenLevelAggressive;
    LLVMTargetMachineRef tm = target_machine(o, level);
    LLVMTargetDataRef layout;
    set_target(&E, tm, &layout);

    E.sanitize = o->sanitize, E.share = !o->no_share, E.private_bytes = (int64_t)sizeof(float) * l->private_floats;
    E.profile = o->profile, E.masks = cpu_has_avx512(o->cpu);
    if (E.profile)
        E.prof_ns = LLVMAddGlobal(E.mod, E.i64, "cnnc.prof_placeholder");
    LLVMValueRef forward = emit_kernel(&E, l->forward, o);
    Ready *ready;
    E.nready = ready_points(l, &ready), E.ready = ready;
    LLVMValueRef train = l->train ? emit_train_kernel(&E, l->train, o) : NULL;
    /* globals need an insertion point for their strings: a scratch function */
    LLVMValueRef scratch = LLVMAddFunction(E.mod, "cnnc.scratch", LLVMFunctionType(E.voidt, NULL, 0, 0));
    LLVMPositionBuilderAtEnd(E.b, LLVMAppendBasicBlockInContext(E.ctx, scratch, "entry"));
    LLVMValueRef desc = descriptor(&E, l, forward, train);
    LLVMBuildRetVoid(E.b);
    emit_api(&E, l->g, desc);
    if (o->executable)
        emit_main(&E, desc, o->mpi);
    LLVMDeleteFunction(scratch);

    char *msg = NULL;
    bool ok = !LLVMVerifyModule(E.mod, LLVMReturnStatusAction, &msg);
    if (!ok)
        fprintf(stderr, "cnnc: internal compiler error: the generated module is invalid:\n%s\n", msg);
    LLVMDisposeMessage(msg);
    ok = ok && optimize(&E, tm, o) && write_output(&E, tm, kind, path);

    LLVMDisposeTargetData(layout);
    LLVMDisposeBuilder(E.b);
    LLVMDisposeModule(E.mod);
    LLVMDisposeTargetMachine(tm);
    LLVMContextDispose(E.ctx);
    free(E.scopes);
    return ok;
}

/* ---- the tuner's measuring device ----------------------------------------- */

struct GemmJit {
    LLVMOrcLLJITRef jit;
};

static bool jit_error(LLVMErrorRef err, const char *what)
{
    if (!err)
        return false;
    char *msg = LLVMGetErrorMessage(err);
    fprintf(stderr, "cnnc: --tune: %s: %s\n", what, msg);
    LLVMDisposeErrorMessage(msg);
    return true;
}

/* `void cnnc.bench(a, b, c, bias)`: the statement's call with its sizes and
 * strides as constants, as in the kernel, and M = m (so LLVM may specialize
 * the routine as it would there). */
static void bench_wrapper(Emit *E, const Gemm *g, int64_t m, LLVMValueRef routine)
{
    LLVMTypeRef p[4] = {E->ptr, E->ptr, E->ptr, E->ptr};
    LLVMValueRef fn = LLVMAddFunction(E->mod, "cnnc.bench", LLVMFunctionType(E->voidt, p, 4, 0));
    LLVMPositionBuilderAtEnd(E->b, LLVMAppendBasicBlockInContext(E->ctx, fn, "entry"));
    int64_t k = g->K->kind == X_INT ? g->K->ival : m;
    LLVMValueRef args[12] = {
        i64c(E, g->M->kind == X_INT ? g->M->ival : m), i64c(E, g->N), i64c(E, k), LLVMGetParam(fn, 0),
        i64c(E, g->sai), i64c(E, g->sak), LLVMGetParam(fn, 1), i64c(E, g->ldb), LLVMGetParam(fn, 2),
        i64c(E, g->ldc), LLVMConstInt(E->i1, g->accumulate, 0), LLVMGetParam(fn, 3),
    };
    LLVMBuildCall2(E->b, E->gemm_type, routine, args, 12, "");
    LLVMBuildRetVoid(E->b);
}

GemmJit *gemm_jit(const Gemm *g, int64_t m, bool fault, GemmBenchFn *fn)
{
    LLVMInitializeNativeTarget();
    LLVMInitializeNativeAsmPrinter();
    LLVMOrcThreadSafeContextRef tsc = LLVMOrcCreateNewThreadSafeContext();
    Emit E = {0};
    emit_init(&E, LLVMOrcThreadSafeContextGetContext(tsc), "cnnc.tune");
    CodegenOptions o = {.opt_level = 2};
    LLVMTargetMachineRef tm = target_machine(&o, LLVMCodeGenLevelDefault);
    LLVMTargetDataRef layout;
    set_target(&E, tm, &layout);
    Gemm probe = *g;
    if (fault)                      /* for the tests: a variant that computes the wrong thing */
        probe.relu = !probe.relu;
    LLVMValueRef routine = gemm_function(&E, &probe);
    bench_wrapper(&E, g, m, routine);
    bool ok = optimize(&E, tm, &o);
    LLVMDisposeBuilder(E.b);
    LLVMDisposeTargetData(layout);
    LLVMDisposeTargetMachine(tm);
    GemmJit *j = calloc(1, sizeof *j);
    LLVMOrcExecutorAddress addr = 0;
    if (!ok || jit_error(LLVMOrcCreateLLJIT(&j->jit, NULL), "cannot create the JIT")) {
        LLVMDisposeModule(E.mod);
        LLVMOrcDisposeThreadSafeContext(tsc);
        free(j);
        return NULL;
    }
    LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(E.mod, tsc);
    LLVMOrcDisposeThreadSafeContext(tsc);     /* the module holds it now */
    if (jit_error(LLVMOrcLLJITAddLLVMIRModule(j->jit, LLVMOrcLLJITGetMainJITDylib(j->jit), tsm), "cannot add a module") ||
        jit_error(LLVMOrcLLJITLookup(j->jit, &addr, "cnnc.bench"), "cannot compile a variant")) {
        gemm_jit_free(j);
        return NULL;
    }
    *fn = (GemmBenchFn)(uintptr_t)addr;
    free(E.scopes);
    return j;
}

void gemm_jit_free(GemmJit *j)
{
    if (!j)
        return;
    jit_error(LLVMOrcDisposeLLJIT(j->jit), "cannot dispose of the JIT");
    free(j);
}

const char *host_cpu_id(void)
{
    char *cpu = LLVMGetHostCPUName(), *features = LLVMGetHostCPUFeatures();
    uint64_t h = 0xcbf29ce484222325ull;            /* FNV-1a */
    for (const char *p = features; *p; p++)
        h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
    const char *id = arena_printf("%s/%016llx", cpu, (unsigned long long)h);
    LLVMDisposeMessage(cpu), LLVMDisposeMessage(features);
    return id;
}

bool cpu_has_avx512(const char *cpu)
{
    if (!cpu || strcmp(cpu, "native") == 0) {
        char *features = LLVMGetHostCPUFeatures();
        bool yes = strstr(features, "+avx512f") != NULL;
        LLVMDisposeMessage(features);
        return yes;
    }
    static const char *const avx512[] = {"x86-64-v4", "skylake-avx512", "cascadelake", "cooperlake",
                                         "icelake-client", "icelake-server", "tigerlake", "sapphirerapids",
                                         "graniterapids", "znver4", "znver5", NULL};
    for (int i = 0; avx512[i]; i++)
        if (strcmp(cpu, avx512[i]) == 0)
            return true;
    return false;
}
