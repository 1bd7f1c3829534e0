/* net.c: a network object around the generated kernels: its parameters
 * (initialized from a seed, loaded, saved), its workspace, and the split of
 * a batch across threads. The NAME_* functions of net.h call these.
 */
#include "cnnrt.h"

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

/* Fills one parameter as its initializer says, from its own stream of the
 * seed, so that adding a layer does not change the others' values. */
static void init_param(const rt_param_desc *p, float *w, uint64_t seed, int index)
{
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
    free(net);
}

const char *rt_net_error(const rt_net *net) { return net ? net->err : "no network (NULL)"; }

float *rt_net_param(rt_net *net, int i)
{
    if (!net || i < 0 || i >= net->d->nparams)
        return NULL;
    return net->params + net->d->params[i].offset;
}

float *rt_net_grad(rt_net *net, int i)
{
    if (!net || i < 0 || i >= net->d->nparams || !net->grads)
        return NULL;
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

/* Grows the workspace to hold n examples' activations. */
static int workspace(rt_net *net, int64_t n)
{
    int64_t need = net->d->ws_floats * n;
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
    if (workspace(net, n))
        return;
    const rt_net_desc *d = net->d;
    int parts = net->threads < n ? net->threads : n;
    if (parts <= 1) {
        d->forward(n, x, out, net->params, net->ws);
        return;
    }
#pragma omp parallel num_threads(parts)
    {
        int64_t lo, hi;
        slice(n, parts, omp_get_thread_num(), &lo, &hi);
        if (hi > lo)
            d->forward(hi - lo, x + lo * d->input_size, out + lo * d->output_size, net->params,
                       net->ws + lo * d->ws_floats);
    }
}

float rt_net_loss_grad(rt_net *net, int n, const float *x, const void *y)
{
    if (net)
        fail(net, "loss_grad: this library was built without training code");
    (void)n, (void)x, (void)y;
    return NAN;
}

float rt_net_train_step(rt_net *net, int n, const float *x, const void *y)
{
    return rt_net_loss_grad(net, n, x, y);
}

/* ---- weights and checkpoints ------------------------------------------------ */

/* Copies tensor t into parameter i, checking its shape. */
static int take(rt_net *net, int i, const rt_tensor *t, const char *path)
{
    const rt_param_desc *p = &net->d->params[i];
    bool same = t->rank == p->rank;
    for (int k = 0; same && k < p->rank; k++)
        same = t->dims[k] == p->dims[k];
    if (!same)
        return fail(net, "%s: tensor '%s' has %lld values in %d dimensions, but the network's has shape "
                    "[%lld, %lld, %lld, %lld] (rank %lld)", path, t->name, (long long)t->count, t->rank,
                    (long long)p->dims[0], (long long)p->dims[1], (long long)p->dims[2],
                    (long long)p->dims[3], (long long)p->rank);
    memcpy(net->params + p->offset, t->data, sizeof(float) * (size_t)t->count);
    return 0;
}

/* Checks the metadata a checkpoint carries against this network. */
static int check_meta(rt_net *net, const rt_tensors *ts, const char *path)
{
    const char *name = rt_st_meta(ts, "network"), *hash = rt_st_meta(ts, "structure");
    if (name && strcmp(name, net->d->name) != 0)
        return fail(net, "%s: a checkpoint of network '%s', not '%s'", path, name, net->d->name);
    char mine[32];
    snprintf(mine, sizeof mine, "%016llx", (unsigned long long)net->d->structure_hash);
    if (hash && strcmp(hash, mine) != 0)
        return fail(net, "%s: written for a network of another structure (%s, this one is %s)", path, hash, mine);
    const char *crc = rt_st_meta(ts, "crc32");
    if (crc) {
        uint32_t c = 0;
        for (int i = 0; i < ts->n; i++)
            c = rt_crc32(c, ts->t[i].data, sizeof(float) * (size_t)ts->t[i].count);
        char got[16];
        snprintf(got, sizeof got, "%08x", c);
        if (strcmp(got, crc) != 0)
            return fail(net, "%s: the data's CRC-32 is %s but the file says %s: the file is damaged", path, got, crc);
    }
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
    int rc = check_meta(net, &ts, path);
    const rt_net_desc *d = net->d;
    float *staged = rc ? NULL : aligned_floats(d->param_floats);
    if (!rc && !staged)
        rc = fail(net, "%s: out of memory", path);
    float *live = net->params;
    if (!rc) {
        memcpy(staged, live, sizeof(float) * (size_t)d->param_floats);
        net->params = staged;               /* load into a copy: all or nothing */
    }
    for (int i = 0; !rc && i < d->nparams; i++) {
        const rt_tensor *t = rt_st_find(&ts, d->params[i].name);
        rc = t ? take(net, i, t, path) : fail(net, "%s: no tensor '%s'", path, d->params[i].name);
    }
    if (rc && staged) {
        net->params = live;
        free(staged);
    } else if (!rc) {
        free(live);
    }
    rt_st_free(&ts);
    return rc;
}

int rt_net_save(const rt_net *cnet, const char *path)
{
    rt_net *net = (rt_net *)cnet;          /* only the error message changes */
    if (!net)
        return -1;
    if (!path)
        return fail(net, "save: no file name");
    const rt_net_desc *d = net->d;
    rt_tensor *t = calloc((size_t)d->nparams + 1, sizeof *t);
    if (!t)
        return fail(net, "save: out of memory");
    uint32_t crc = 0;
    for (int i = 0; i < d->nparams; i++) {
        const rt_param_desc *p = &d->params[i];
        t[i].name = (char *)p->name, t[i].rank = (int)p->rank, t[i].count = p->count;
        for (int k = 0; k < p->rank; k++)
            t[i].dims[k] = p->dims[k];
        t[i].data = net->params + p->offset;
        crc = rt_crc32(crc, t[i].data, sizeof(float) * (size_t)p->count);
    }
    char hash[32], crcs[16];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)d->structure_hash);
    snprintf(crcs, sizeof crcs, "%08x", crc);
    const char *keys[] = {"format", "network", "structure", "cnnc", "crc32"};
    const char *vals[] = {"pt", d->name, hash, d->version, crcs};
    rt_err err = {{0}};
    int rc = rt_st_write(path, (int)d->nparams, t, 5, keys, vals, &err);
    free(t);
    return rc ? fail(net, "%s", err.msg) : 0;
}
