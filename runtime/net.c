/* net.c: a network object around the generated kernels: its parameters
 * (initialized from a seed, loaded, saved), its workspace, and the split of
 * a batch across threads. The NAME_* functions of net.h call these.
 */
#include "cnnrt.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- random numbers: splitmix64 seeding xoshiro256** ----------------------- */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void rt_rng_seed(rt_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t rt_rng_next(rt_rng *r)
{
    uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0], s[3] ^= s[1], s[1] ^= s[2], s[0] ^= s[3], s[2] ^= t, s[3] = rotl(s[3], 45);
    return out;
}

/* A double in [0, 1) from the top 53 bits. */
double rt_rng_uniform(rt_rng *r) { return (double)(rt_rng_next(r) >> 11) * 0x1.0p-53; }

/* Box-Muller: a standard normal sample. */
double rt_rng_normal(rt_rng *r)
{
    double u = rt_rng_uniform(r), v = rt_rng_uniform(r);
    return sqrt(-2.0 * log(1.0 - u)) * cos(6.283185307179586 * v);
}

/* ---- the descriptor -------------------------------------------------------- */

int rt_desc_param_count(const rt_net_desc *d) { return (int)d->nparams; }

const char *rt_desc_param_name(const rt_net_desc *d, int i)
{
    return i >= 0 && i < d->nparams ? d->params[i].name : NULL;
}

int rt_desc_param_shape(const rt_net_desc *d, int i, int64_t dims[4])
{
    if (i < 0 || i >= d->nparams || !dims)
        return -1;
    for (int k = 0; k < 4; k++)
        dims[k] = d->params[i].dims[k];
    return (int)d->params[i].rank;
}

bool rt_desc_builtin(const rt_net_desc *d)
{
    for (int i = 0; i < d->nparams; i++)
        if (d->params[i].init != RT_INIT_DATA)
            return false;
    return d->nparams > 0;
}

float rt_input_scale(const rt_net_desc *d, bool bytes)
{
    return d->scale != 0 ? (float)d->scale : bytes ? 1.0f / 255.0f : 1.0f;
}

/* ---- the network ------------------------------------------------------------ */

static int fail(rt_net *net, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(net->err, sizeof net->err, fmt, ap);
    va_end(ap);
    return -1;
}

static float *aligned_floats(int64_t n)
{
    size_t bytes = ((size_t)(n > 0 ? n : 1) * sizeof(float) + 63) & ~(size_t)63;
    float *p = aligned_alloc(64, bytes);
    if (p)
        memset(p, 0, bytes);
    return p;
}

/* Fills one parameter as its initializer says: with its built-in values
 * (RT_INIT_DATA: the weights cnnc built into the program), or else from its
 * own stream of the seed, so that adding a layer does not change the
 * others' values. */
static void init_param(const rt_param_desc *p, float *w, uint64_t seed, int index)
{
    if (p->init == RT_INIT_DATA) {
        if (p->count > 0)
            memcpy(w, p->data, sizeof(float) * (size_t)p->count);
        return;
    }
    rt_rng r;
    rt_rng_seed(&r, seed * 0x100000001B3ull + (uint64_t)index);
    double he = sqrt(2.0 / (double)(p->fan_in > 0 ? p->fan_in : 1));
    double xa = sqrt(6.0 / (double)(p->fan_in + p->fan_out > 0 ? p->fan_in + p->fan_out : 1));
    for (int64_t i = 0; i < p->count; i++) {
        double v;
        switch (p->init) {
        case RT_INIT_ZEROS:   v = 0; break;
        case RT_INIT_ONES:    v = 1; break;
        case RT_INIT_CONSTANT: v = p->a; break;
        case RT_INIT_UNIFORM: v = p->a + (p->b - p->a) * rt_rng_uniform(&r); break;
        case RT_INIT_NORMAL:  v = p->a + p->b * rt_rng_normal(&r); break;
        case RT_INIT_HE:      v = he * rt_rng_normal(&r); break;
        default:              v = xa * (2 * rt_rng_uniform(&r) - 1); break;
        }
        w[i] = (float)v;
    }
}

void rt_net_init(rt_net *net, uint64_t seed)
{
    if (!net)
        return;
    const rt_net_desc *d = net->d;
    for (int i = 0; i < d->nparams; i++)
        init_param(&d->params[i], net->params + d->params[i].offset, seed, i);
    net->seed = seed;
}

rt_net *rt_net_new(const rt_net_desc *d, uint64_t seed)
{
    if (!d || d->magic != RT_DESC_MAGIC)
        return NULL;             /* a library from another cnnc version */
    rt_net *net = calloc(1, sizeof *net);
    if (!net)
        return NULL;
    net->d = d;
    net->params = aligned_floats(d->param_floats);
    net->threads = omp_get_max_threads();
    net->lr = (float)d->lr;
    net->sgd_momentum = (float)d->momentum;
    net->sgd_weight_decay = (float)d->weight_decay;
    net->sgd_nesterov = d->nesterov != 0;
    if (!net->params) {
        free(net);
        return NULL;
    }
    rt_net_init(net, seed);
    return net;
}

void rt_net_free(rt_net *net)
{
    if (!net)
        return;
    free(net->params), free(net->grads), free(net->momentum), free(net->ws);
    for (int t = 0; t < net->tparts; t++)
        free(net->tgrads[t]), free(net->tws[t]);  /* tgrads[0] is unused: NULL */
    free(net->tgrads), free(net->tws), free(net->tloss);
    rt_buckets_free(net->buckets);
    free(net);
}

const char *rt_net_error(const rt_net *net) { return net ? net->err : "no network (NULL)"; }

float *rt_net_param(rt_net *net, int i)
{
    if (!net)
        return NULL;
    if (i < 0 || i >= net->d->nparams) {
        fail(net, "param: index %d is outside [0, %lld)", i, (long long)net->d->nparams);
        return NULL;
    }
    return net->params + net->d->params[i].offset;
}

float *rt_net_grad(rt_net *net, int i)
{
    if (!net)
        return NULL;
    if (i < 0 || i >= net->d->nparams) {
        fail(net, "grad: index %d is outside [0, %lld)", i, (long long)net->d->nparams);
        return NULL;
    }
    if (!net->grads) {
        fail(net, "grad: no gradients yet (loss_grad or train_step computes them)");
        return NULL;
    }
    return net->grads + net->d->params[i].offset;
}

void rt_net_set_threads(rt_net *net, int threads)
{
    if (net)
        net->threads = threads < 1 ? 1 : threads > 1024 ? 1024 : threads;
}

void rt_net_set_lr(rt_net *net, float lr)
{
    if (net && lr >= 0 && isfinite(lr))
        net->lr = lr;
}

int64_t rt_net_bytes(const rt_net *net)
{
    if (!net)
        return 0;
    int64_t blocks = (net->params != NULL) + (net->grads != NULL) + (net->momentum != NULL), ws = net->ws_cap;
    for (int t = 0; t < net->tparts; t++)
        blocks += net->tgrads[t] != NULL, ws += net->tws[t] && net->tws_cap > 0 ? net->tws_cap : 0;
    if (ws > 0)         /* a kernel has run: each thread's private scratch (rt_private) */
        ws += (int64_t)net->threads * net->d->private_floats;
    return (int64_t)sizeof(float) * (blocks * net->d->param_floats + ws);
}

/* Grows the workspace to hold n examples' activations and each of `parts`
 * threads' shared scratch (ws_fixed). */
static int workspace(rt_net *net, int64_t n, int parts)
{
    int64_t need = net->d->ws_floats * n + net->d->ws_fixed * parts;
    if (need <= net->ws_cap)
        return 0;
    free(net->ws);
    net->ws = aligned_floats(need);
    net->ws_cap = net->ws ? need : 0;
    return net->ws ? 0 : fail(net, "out of memory for a batch of %lld", (long long)n);
}

/* The batch split into one contiguous slice per thread. */
static void slice(int64_t n, int parts, int t, int64_t *lo, int64_t *hi)
{
    *lo = n * t / parts;
    *hi = n * (t + 1) / parts;
}

void rt_net_forward(rt_net *net, int n, const float *x, float *out)
{
    if (!net)
        return;
    if (n <= 0 || !x || !out) {
        fail(net, "forward: needs n >= 1 and non-NULL x and out (n = %d)", n);
        return;
    }
    const rt_net_desc *d = net->d;
    int parts = net->threads < n ? net->threads : n;
    if (workspace(net, n, parts))
        return;
    if (parts <= 1) {                           /* one example: its GEMMs use the threads */
        rt_inner_threads(net->threads);
        d->forward(n, x, out, net->params, net->ws);
        rt_inner_threads(1);
        return;
    }
#pragma omp parallel num_threads(parts)
    {
        int64_t lo, hi;
        int t = omp_get_thread_num();           /* thread t: [scratch][its examples] */
        slice(n, omp_get_num_threads(), t, &lo, &hi);   /* fewer than asked inside another region */
        rt_slices_together(true);               /* every thread runs the kernel: slice(...) leaves none empty */
        d->forward(hi - lo, x + lo * d->input_size, out + lo * rt_out_stride(d), net->params,
                   net->ws + lo * d->ws_floats + t * d->ws_fixed);
        rt_slices_together(false);
    }
}

/* ---- training: the gradient, split across threads, and SGD ------------------ */

/* The dropout seed of the current step: a pure function of (seed, step), so
 * that a resumed run draws the masks an uninterrupted one would. */
static uint64_t step_seed(const rt_net *net)
{
    uint64_t s = net->seed ^ ((uint64_t)net->step * 0xD1B54A32D192ED03ull);
    return splitmix64(&s);
}

/* Makes room for `parts` threads' gradient blocks and workspaces of `per`
 * examples each, and the momentum buffer if `step`. Allocates only when a
 * call needs more than any call before it. */
static int train_buffers(rt_net *net, int parts, int64_t per, bool step)
{
    const rt_net_desc *d = net->d;
    if (!net->grads && !(net->grads = aligned_floats(d->param_floats)))
        return fail(net, "out of memory for the gradients");
    if (step && !net->momentum && !(net->momentum = aligned_floats(d->param_floats)))
        return fail(net, "out of memory for the momentum buffers");
    if (parts > net->tparts) {
        float **g = realloc(net->tgrads, sizeof *g * (size_t)parts);
        if (g)
            net->tgrads = g;
        float **w = g ? realloc(net->tws, sizeof *w * (size_t)parts) : NULL;
        if (w)
            net->tws = w;
        double *l = w ? realloc(net->tloss, sizeof *l * 2 * (size_t)parts) : NULL;
        if (!l)
            return fail(net, "out of memory for %d threads", parts);
        net->tloss = l;
        for (int t = net->tparts; t < parts; t++)
            g[t] = NULL, w[t] = NULL;
        net->tparts = parts;
        net->tws_cap = -1;                         /* the new threads have no workspace */
    }
    for (int t = 1; t < parts; t++)                /* thread 0 writes net->grads */
        if (!net->tgrads[t] && !(net->tgrads[t] = aligned_floats(d->param_floats)))
            return fail(net, "out of memory for %d threads' gradients", parts);
    int64_t need = d->train_ws_fixed + per * d->train_ws_floats;
    if (need > net->tws_cap) {
        net->tws_cap = -1;
        for (int t = 0; t < net->tparts; t++) {
            free(net->tws[t]);
            if (!(net->tws[t] = aligned_floats(need)))
                return fail(net, "out of memory for a batch of %lld", (long long)per);
        }
        net->tws_cap = need;
    }
    return 0;
}

/* One SGD step (PyTorch's, dampening 0) on elements [lo, hi) of parameter p:
 *   g = dL/dp + wd p;  v = m v + g;  p -= lr (g + m v) if nesterov, else lr v */
static void sgd(rt_net *net, const rt_param_desc *p, int64_t lo, int64_t hi)
{
    float *restrict w = net->params + p->offset, *restrict v = net->momentum + p->offset;
    const float *restrict g = net->grads + p->offset;
    const float lr = net->lr, m = net->sgd_momentum, wd = net->sgd_weight_decay;
    if (net->sgd_nesterov)
        for (int64_t i = lo; i < hi; i++) {
            float gi = wd != 0 ? g[i] + wd * w[i] : g[i];
            v[i] = m * v[i] + gi;
            w[i] -= lr * (gi + m * v[i]);
        }
    else if (wd != 0)                              /* the test out of the loop, so that */
#pragma omp simd                                   /* it is vectorized: without, GCC's -O2 */
        for (int64_t i = lo; i < hi; i++) {        /* left it scalar, a few % of a step */
            v[i] = m * v[i] + (g[i] + wd * w[i]);
            w[i] -= lr * v[i];
        }
    else
#pragma omp simd
        for (int64_t i = lo; i < hi; i++) {
            v[i] = m * v[i] + g[i];
            w[i] -= lr * v[i];
        }
}

/* sgd() with the threads' gradients summed into net->grads on the way (in
 * thread order, as finish_range does), in one pass: the memory traffic of
 * the step is most of its cost, and across cores it is dear. */
static void sum_and_step(rt_net *net, int parts, const rt_param_desc *p, int64_t lo, int64_t hi)
{
    float *restrict w = net->params + p->offset, *restrict v = net->momentum + p->offset;
    float *restrict g = net->grads + p->offset;
    const float lr = net->lr, m = net->sgd_momentum, wd = net->sgd_weight_decay;
    if (parts != 2 || net->sgd_nesterov) {
        for (int t = 1; t < parts; t++) {
            const float *restrict gt = net->tgrads[t] + p->offset;
            for (int64_t i = lo; i < hi; i++)
                g[i] += gt[i];
        }
        sgd(net, p, lo, hi);
        return;
    }
    const float *restrict g1 = net->tgrads[1] + p->offset;
    if (wd != 0) {
#pragma omp simd
        for (int64_t i = lo; i < hi; i++) {
            float gi = g[i] + g1[i];
            g[i] = gi;
            v[i] = m * v[i] + (gi + wd * w[i]);
            w[i] -= lr * v[i];
        }
    } else {
#pragma omp simd
        for (int64_t i = lo; i < hi; i++) {
            float gi = g[i] + g1[i];
            g[i] = gi;
            v[i] = m * v[i] + gi;
            w[i] -= lr * v[i];
        }
    }
}

/* The regularizer term's loss over elements [lo, hi) of its parameter, and
 * its gradient added into net->grads:
 *   d/dp coef sum p^2 = 2 coef p;   d/dp coef sum |p| = coef sign(p) */
static double regularize(rt_net *net, const rt_reg_desc *r, int64_t lo, int64_t hi)
{
    const rt_param_desc *p = &net->d->params[r->param];
    const float *restrict w = net->params + p->offset;
    float *restrict g = net->grads + p->offset;
    const float c = (float)r->coef;
    double s = 0;
    if (r->kind == RT_REG_L2)
        for (int64_t i = lo; i < hi; i++) {
            s += (double)w[i] * w[i];
            g[i] += 2 * c * w[i];
        }
    else
        for (int64_t i = lo; i < hi; i++) {
            s += fabs((double)w[i]);
            g[i] += w[i] > 0 ? c : w[i] < 0 ? -c : 0;
        }
    return r->coef * s;
}

/* The clipping of [lo, hi) of the parameter block to parameter p, in p's own
 * element indices; false if they do not meet. */
static bool clip(const rt_param_desc *p, int64_t lo, int64_t hi, int64_t *a, int64_t *b)
{
    *a = lo > p->offset ? lo - p->offset : 0;
    *b = hi < p->offset + p->count ? hi - p->offset : p->count;
    return *a < *b;
}

/* What finish_range does to its range of the parameter block. */
enum {
    FIN_SUM = 1,     /* the threads' gradients summed into net->grads, in thread order */
    FIN_REG = 2,     /* the regularizers' gradients added (and their loss returned) */
    FIN_STEP = 4,    /* the SGD update */
    FIN_ALL = FIN_SUM | FIN_REG | FIN_STEP
};

/* After every thread's kernel has run: elements [lo, hi) of the parameter
 * block get what `what` says (FIN_*), in that order, so that the result
 * depends only on the thread count. Returns the regularizers' loss over the
 * range. */
static double finish_range(rt_net *net, int parts, int64_t lo, int64_t hi, unsigned what)
{
    const rt_net_desc *d = net->d;
    float *g = net->grads;
    int64_t a, b;
    if (what == FIN_ALL && d->nreg == 0) {         /* the common case: one pass over memory */
        for (int i = 0; i < d->nparams; i++)
            if (!(d->params[i].flags & RT_PARAM_BUFFER) && clip(&d->params[i], lo, hi, &a, &b))
                sum_and_step(net, parts, &d->params[i], a, b);
        return 0;
    }
    for (int t = 1; (what & FIN_SUM) && t < parts; t++) {
        const float *gt = net->tgrads[t];
        for (int64_t i = lo; i < hi; i++)
            g[i] += gt[i];
    }
    double reg = 0;
    for (int k = 0; (what & FIN_REG) && k < d->nreg; k++)
        if (clip(&d->params[d->reg[k].param], lo, hi, &a, &b))
            reg += regularize(net, &d->reg[k], a, b);
    for (int i = 0; (what & FIN_STEP) && i < d->nparams; i++)
        if (!(d->params[i].flags & RT_PARAM_BUFFER) && clip(&d->params[i], lo, hi, &a, &b))
            sgd(net, &d->params[i], a, b);
    return reg;
}

/* Share t of `parts` of the parameter block, in whole cache lines. */
static void block_share(const rt_net *net, int parts, int t, int64_t *lo, int64_t *hi)
{
    int64_t chunks = (net->d->param_floats + 15) / 16;
    slice(chunks, parts, t, lo, hi);
    *lo *= 16, *hi = *hi * 16 < net->d->param_floats ? *hi * 16 : net->d->param_floats;
}

/* A training call's examples: n of them in x and y, which are examples
 * [first, first + n) of a batch of `total` (first = 0 and total = n unless
 * the batch is spread over several processes, whose sums `buckets` starts
 * over `dist` as the kernels go; NULL for one process). */
typedef struct {
    int64_t n, first, total;
    const float *x;
    const void *y;
    rt_buckets *buckets;
    const rt_dist *dist;
} Batch;

/* Thread t of `parts`: its slice of the batch through the kernel, then (after
 * all have finished) its share of the parameter block through finish_range.
 * net->tloss[t] gets the slice's data loss, net->tloss[parts + t] the
 * share's regularizer loss. */
static void train_thread(rt_net *net, int t, int parts, const Batch *b, unsigned what)
{
    const rt_net_desc *d = net->d;
    int64_t lo, hi;
    slice(b->n, parts, t, &lo, &hi);
    size_t ysize = d->label_kind == RT_LABELS_TARGET ? sizeof(float) * (size_t)d->target_size
                                                     : sizeof(int32_t);
    net->tloss[t] = d->train(hi - lo, b->x + lo * d->input_size, (const char *)b->y + (size_t)lo * ysize,
                             net->params, t ? net->tgrads[t] : net->grads, net->tws[t], b->first + lo,
                             b->total, step_seed(net), rt_buckets_ctx(b->buckets, t));
    if (b->buckets && t == 0)
        rt_buckets_drain(b->buckets);              /* the buckets the other threads finish */
#pragma omp barrier
    double data = 0;
    for (int k = 0; k < parts; k++)
        data += net->tloss[k];
    if (!isfinite(data))
        what &= ~(unsigned)FIN_STEP;               /* a diverged step changes nothing */
    block_share(net, parts, t, &lo, &hi);
    net->tloss[parts + t] = finish_range(net, parts, lo, hi, what);
}

/* Whether a class label of y[0..n) lies outside [0, nclasses), which the
 * kernel would use as an index; says which. */
static bool bad_label(rt_net *net, int n, const int32_t *y, const char *what)
{
    for (int i = 0; i < n; i++)
        if (y[i] < 0 || y[i] >= net->d->nclasses) {
            fail(net, "%s: label %d of example %d is outside [0, %lld)", what, (int)y[i], i,
                 (long long)net->d->nclasses);
            return true;
        }
    return false;
}

/* The checks of a training call; `what` names it in messages. */
static bool train_args_bad(rt_net *net, int n, const float *x, const void *y, const char *what)
{
    const rt_net_desc *d = net->d;
    if (n <= 0 || !x || !y) {
        fail(net, "%s: needs n >= 1 and non-NULL x and y (n = %d)", what, n);
        return true;
    }
    if (!d->train) {
        fail(net, "%s: network '%s' has no training code (no loss, or built without it)", what, d->name);
        return true;
    }
    return d->label_kind == RT_LABELS_CLASS && bad_label(net, n, y, what);
}

/* Runs the batch through the kernel in one parallel region, split into
 * contiguous slices across the threads, then finish_range with `what`.
 * *parts gets the thread count used; the data loss is the sum of
 * tloss[0..parts), the regularizers' of tloss[parts..2 parts). */
static int run_threads(rt_net *net, const Batch *b, unsigned what, int *parts)
{
    int p = net->d->train_serial ? 1 : net->threads < b->n ? net->threads : (int)b->n;
    for (;;) {
        if (train_buffers(net, p, (b->n + p - 1) / p, what & FIN_STEP))
            return -1;
        if (b->buckets && rt_buckets_begin(b->buckets, net, b->dist, p))
            return fail(net, "out of memory for %d threads", p);
        if (p == 1) {                              /* one thread: its GEMMs use the others */
            rt_inner_threads(net->threads);
            train_thread(net, 0, 1, b, what);
            rt_inner_threads(1);
            break;
        }
        int got = p;
#pragma omp parallel num_threads(p)
        {
            if (omp_get_num_threads() == p)
                train_thread(net, omp_get_thread_num(), p, b, what);
            else if (omp_get_thread_num() == 0)
                got = omp_get_num_threads();   /* fewer threads than asked (nesting) */
        }
        if (got == p)
            break;
        p = got;                                   /* again with the slices they can take */
    }
    *parts = p;
    return 0;
}

/* Training-mode forward and backward over a batch (and with `step` the SGD
 * update). Returns the loss, data term plus regularizers. */
static float train_batch(rt_net *net, int n, const float *x, const void *y, bool step)
{
    if (!net)
        return NAN;
    if (train_args_bad(net, n, x, y, step ? "train_step" : "loss_grad"))
        return NAN;
    Batch b = {n, 0, n, x, y, NULL, NULL};
    int parts;
    if (run_threads(net, &b, step ? FIN_ALL : FIN_SUM | FIN_REG, &parts))
        return NAN;
    double data = 0, reg = 0;
    for (int t = 0; t < parts; t++)
        data += net->tloss[t], reg += net->tloss[parts + t];
    if (step && isfinite(data))
        net->step++;
    return (float)(data + reg);
}

/* finish_range(what) over the whole parameter block, in the shares of
 * `parts` threads (whatever number OpenMP gives); the regularizers' loss,
 * summed in share order. */
static double finish_all(rt_net *net, int parts, unsigned what)
{
#pragma omp parallel for num_threads(parts) schedule(static)
    for (int t = 0; t < parts; t++) {
        int64_t lo, hi;
        block_share(net, parts, t, &lo, &hi);
        net->tloss[parts + t] = finish_range(net, 1, lo, hi, what);
    }
    double reg = 0;
    for (int t = 0; t < parts; t++)
        reg += net->tloss[parts + t];
    return reg;
}

int rt_net_step(rt_net *net)
{
    if (!net)
        return -1;
    if (!net->grads || net->tparts < 1)
        return fail(net, "step: no gradients yet (loss_grad computes them)");
    if (!net->momentum && !(net->momentum = aligned_floats(net->d->param_floats)))
        return fail(net, "step: out of memory for the momentum buffers");
    finish_all(net, net->tparts, FIN_STEP);
    net->step++;
    return 0;
}

/* ---- training over several processes ---------------------------------------- */

/* Buffers (batchnorm's running statistics), which each process updated from
 * its own examples, travel in their gradients' places (buckets.c puts them
 * there): the sum over the processes, divided by their count, is the mean
 * of their values. */
static void buffers_in(rt_net *net, int size)
{
    const rt_net_desc *d = net->d;
    for (int i = 0; i < d->nparams; i++)
        if (d->params[i].flags & RT_PARAM_BUFFER) {
            float *g = net->grads + d->params[i].offset, *p = net->params + d->params[i].offset;
            for (int64_t k = 0; k < d->params[i].count; k++)
                p[k] = g[k] / (float)size, g[k] = 0;
        }
}

/* This process's share of a step: its examples through the kernel on its
 * threads, their gradients summed by b->buckets (nothing to run when it has
 * no examples), its data loss in *data. 0, or -1 after a failure
 * (rt_net_error says which), always before the kernel. */
static int shard_grad(rt_net *net, const Batch *b, int *parts, double *data)
{
    *parts = net->threads, *data = 0;
    if (train_buffers(net, *parts, 0, true))
        return -1;
    if (b->n == 0)
        return 0;
    if (train_args_bad(net, (int)b->n, b->x, b->y, "train_step") || run_threads(net, b, 0, parts))
        return -1;
    for (int t = 0; t < *parts; t++)
        *data += net->tloss[t];
    return 0;
}

/* The buckets of net's gradient over dist, made at its first step. A
 * process that cannot make them cannot take part: it ends, and the job
 * with it. */
static rt_buckets *buckets(rt_net *net, const rt_dist *dist)
{
    if (!net->buckets && !(net->buckets = rt_buckets_new(net->d, dist->bucket_bytes))) {
        fprintf(stderr, "%s: cannot plan the gradient's buckets (out of memory, or a network built by "
                "another cnnc)\n", net->d->name);
        exit(1);
    }
    return net->buckets;
}

float rt_net_train_shard(rt_net *net, const rt_dist *dist, int64_t total, int64_t first, int n,
                         const float *x, const void *y, bool *stop, void (*meanwhile)(void *ctx), void *ctx)
{
    if (!net)
        return NAN;
    if (!dist || !stop || total < 1 || first < 0 || n < 0 || first + n > total) {
        fail(net, "train_shard: examples [%lld, %lld) are not inside a batch of %lld", (long long)first,
             (long long)first + n, (long long)total);
        return NAN;
    }
    Batch b = {n, first, total, x, y, buckets(net, dist), dist};
    int parts;
    double data;
    rt_buckets_begin(b.buckets, net, dist, 1);     /* for one thread: cannot fail */
    bool failed = shard_grad(net, &b, &parts, &data) != 0;
    double status[3] = {failed ? 0 : data, failed, *stop};   /* agreed by every process */
    rt_buckets_end(b.buckets, status, 3, meanwhile, ctx);   /* with the gradient summed across them */
    *stop = status[2] > 0;
    if (status[1] > 0) {
        if (!failed)
            fail(net, "stopped: %.0f other process%s failed", status[1], status[1] > 1 ? "es" : "");
        return NAN;
    }
    if (!isfinite(status[0]))
        return (float)status[0];                   /* diverged: no step, on every process */
    buffers_in(net, dist->size);
    double reg = finish_all(net, parts, FIN_REG | FIN_STEP);
    net->step++;
    return (float)(status[0] + reg);
}

float rt_net_loss_grad(rt_net *net, int n, const float *x, const void *y)
{
    return train_batch(net, n, x, y, false);
}

float rt_net_train_step(rt_net *net, int n, const float *x, const void *y)
{
    return train_batch(net, n, x, y, true);
}

/* ---- weights and checkpoints ------------------------------------------------ */

/* Copies the file's tensor for parameter i into it, checking name, dtype
 * and shape. */
static int take(rt_net *net, int i, const rt_tensors *ts, const char *path)
{
    const rt_param_desc *p = &net->d->params[i];
    const rt_tensor *t;
    rt_err err = {{0}};
    if (rt_st_take(ts, p->name, (int)p->rank, p->dims, path, &t, &err))
        return fail(net, "%s", err.msg);
    if (t->count)
        memcpy(net->params + p->offset, t->data, sizeof(float) * (size_t)t->count);
    return 0;
}

/* Checks the metadata a checkpoint carries against this network. */
static int check_meta(rt_net *net, const rt_tensors *ts, const char *path)
{
    rt_err err = {{0}};
    return rt_st_check_meta(ts, net->d->name, net->d->structure_hash, path, &err) ? fail(net, "%s", err.msg) : 0;
}

/* The name of parameter p's momentum tensor in a checkpoint. */
static const char *momentum_name(const rt_param_desc *p, char *buf, size_t size)
{
    snprintf(buf, size, "momentum.%s", p->name);
    return buf;
}

/* The optimizer state a checkpoint carries, "momentum.<name>" for each learned
 * parameter, staged into *mom; *mom stays NULL if the file has none (a
 * weights file). A file with some momentum tensors must have all of them. */
static int take_momentum(rt_net *net, const rt_tensors *ts, const char *path, float **mom)
{
    const rt_net_desc *d = net->d;
    char name[320];
    int have = 0, missing = -1;
    for (int i = 0; i < d->nparams; i++)
        if (!(d->params[i].flags & RT_PARAM_BUFFER)) {
            bool found = rt_st_find(ts, momentum_name(&d->params[i], name, sizeof name)) != NULL;
            have += found;
            missing = found || missing >= 0 ? missing : i;
        }
    *mom = NULL;
    if (!have)
        return 0;
    if (missing >= 0)
        return fail(net, "%s: has momentum tensors but not '%s'", path,
                    momentum_name(&d->params[missing], name, sizeof name));
    if (!(*mom = aligned_floats(d->param_floats)))
        return fail(net, "%s: out of memory", path);
    for (int i = 0; i < d->nparams; i++) {
        const rt_param_desc *p = &d->params[i];
        const rt_tensor *t = p->flags & RT_PARAM_BUFFER ? NULL : rt_st_find(ts, momentum_name(p, name, sizeof name));
        if (t && t->count != p->count)
            return fail(net, "%s: tensor '%s' has %lld values, but '%s' has %lld", path, name,
                        (long long)t->count, p->name, (long long)p->count);
        if (t)
            memcpy(*mom + p->offset, t->data, sizeof(float) * (size_t)t->count);
    }
    return 0;
}

/* A whole number >= 0 from the metadata under key, if there is one. */
static int take_count(rt_net *net, const rt_tensors *ts, const char *path, const char *key,
                      uint64_t *v)
{
    const char *s = rt_st_meta(ts, key);
    char *end;
    if (!s)
        return 0;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno || end == s || *end || *s == '-' || (!strcmp(key, "step") && x > INT64_MAX))
        return fail(net, "%s: metadata '%s' is '%s', not a whole number", path, key, s);
    *v = x;
    return 0;
}

int rt_net_load(rt_net *net, const char *path)
{
    if (!net)
        return -1;
    if (!path)
        return fail(net, "load: no file name");
    rt_tensors ts;
    rt_err err = {{0}};
    if (rt_st_read(path, &ts, &err))
        return fail(net, "%s", err.msg);
    int rc = rt_net_load_tensors(net, &ts, path);
    rt_st_free(&ts);
    return rc;
}

int rt_net_load_tensors(rt_net *net, const rt_tensors *ts, const char *path)
{
    if (!net)
        return -1;
    if (!ts || !path)
        return fail(net, "load: no tensors or no file name");
    const rt_net_desc *d = net->d;
    float *mom = NULL, *staged = NULL, *live = net->params;
    uint64_t step = 0, seed = net->seed;
    int rc = check_meta(net, ts, path);
    if (!rc)
        rc = take_count(net, ts, path, "step", &step) || take_count(net, ts, path, "seed", &seed);
    if (!rc)
        rc = take_momentum(net, ts, path, &mom);
    if (!rc && !(staged = aligned_floats(d->param_floats)))
        rc = fail(net, "%s: out of memory", path);
    if (!rc) {
        memcpy(staged, live, sizeof(float) * (size_t)d->param_floats);
        net->params = staged;               /* load into a copy: all or nothing */
    }
    for (int i = 0; !rc && i < d->nparams; i++)
        rc = take(net, i, ts, path);
    net->params = live;                     /* the block callers hold pointers into */
    if (rc) {
        free(staged), free(mom);
        return rc;
    }
    memcpy(live, staged, sizeof(float) * (size_t)d->param_floats);
    free(staged);
    if (mom || net->momentum) {             /* a weights file starts the optimizer afresh */
        free(net->momentum);
        net->momentum = mom;
    }
    net->step = (int64_t)step, net->seed = seed;
    return 0;
}
/* Tensor t describing n floats at data in the shape of parameter p. */
static rt_tensor tensor_of(const rt_param_desc *p, const char *name, float *data)
{
    rt_tensor t = {.name = (char *)name, .rank = (int)p->rank, .count = p->count, .data = data};
    for (int k = 0; k < p->rank; k++)
        t.dims[k] = p->dims[k];
    return t;
}

/* Writes the parameters (and with `checkpoint` the momentum buffers and the
 * step count), then the caller's metadata, then the CRC-32 of the data. */
static int save(rt_net *net, const char *path, bool checkpoint, int nextra, const char *const *xkey,
                const char *const *xval)
{
    if (!path)
        return fail(net, "save: no file name");
    if (nextra < 0 || (nextra && (!xkey || !xval)))
        return fail(net, "%s: bad metadata for the checkpoint", path);
    const rt_net_desc *d = net->d;
    int nt = 0, nmeta = 0;
    rt_tensor *t = calloc(2 * (size_t)d->nparams + 1, sizeof *t);
    char *names = calloc((size_t)d->nparams + 1, 320);
    const char **key = calloc((size_t)nextra + 8, sizeof *key), **val = calloc((size_t)nextra + 8, sizeof *val);
    float *zeros = checkpoint && !net->momentum ? aligned_floats(d->param_floats) : NULL;
    int rc = -1;
    if (!t || !names || !key || !val || (checkpoint && !net->momentum && !zeros)) {
        fail(net, "%s: out of memory", path);
        goto out;
    }
    for (int i = 0; i < d->nparams; i++)
        t[nt++] = tensor_of(&d->params[i], d->params[i].name, net->params + d->params[i].offset);
    for (int i = 0; checkpoint && i < d->nparams; i++)
        if (!(d->params[i].flags & RT_PARAM_BUFFER)) {
            const rt_param_desc *p = &d->params[i];
            float *m = (net->momentum ? net->momentum : zeros) + p->offset;
            t[nt++] = tensor_of(p, momentum_name(p, names + 320 * (size_t)i, 320), m);
        }
    uint32_t crc = 0;
    for (int i = 0; i < nt; i++)
        crc = rt_crc32(crc, t[i].data, sizeof(float) * (size_t)t[i].count);
    char hash[32], crcs[16], step[32], seed[32];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)d->structure_hash);
    snprintf(crcs, sizeof crcs, "%08x", crc);
    snprintf(step, sizeof step, "%lld", (long long)net->step);
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)net->seed);
    key[nmeta] = "format", val[nmeta++] = "pt";
    key[nmeta] = "network", val[nmeta++] = d->name;
    key[nmeta] = "structure", val[nmeta++] = hash;
    key[nmeta] = "cnnc", val[nmeta++] = d->version;
    if (checkpoint) {
        key[nmeta] = "seed", val[nmeta++] = seed;
        key[nmeta] = "step", val[nmeta++] = step;
    }
    for (int i = 0; i < nextra; i++)
        key[nmeta] = xkey[i], val[nmeta++] = xval[i];
    key[nmeta] = "crc32", val[nmeta++] = crcs;
    rt_err err = {{0}};
    rc = rt_st_write(path, nt, t, nmeta, key, val, &err) ? fail(net, "%s", err.msg) : 0;
out:
    free(t), free(names), free(key), free(val), free(zeros);
    return rc;
}

int rt_net_save(const rt_net *cnet, const char *path)
{
    rt_net *net = (rt_net *)cnet;          /* only the error message changes */
    return net ? save(net, path, false, 0, NULL, NULL) : -1;
}

int rt_net_save_checkpoint(const rt_net *cnet, const char *path, int nmeta, const char *const *key,
                           const char *const *val)
{
    rt_net *net = (rt_net *)cnet;
    return net ? save(net, path, true, nmeta, key, val) : -1;
}
