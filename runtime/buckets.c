/* buckets.c: a training step's gradient summed across processes while the
 * backward pass is still running (rt_net_train_shard, over rt_dist).
 *
 * The training kernel calls rt_grads_ready(ctx, lo, hi) as each learned
 * parameter's gradient becomes final (compiler/ready.c), always in the same
 * order, which the descriptor lists. The calls are grouped, by the network
 * and the bucket size alone (never by timing): a group is closed by the call
 * that brings it to at least `bytes`, and the last call closes the last one.
 * A group's parameters, sorted by offset and joined across the padding
 * between them, are its buckets: contiguous ranges of the gradient block,
 * one sum across the processes each. When every thread of the process has
 * passed a group's closing call, the last of them to get there adds the
 * threads' blocks into net->grads over its buckets, in thread order:
 *
 *   g = ((g_0 + g_1) + g_2) + ...      (as finish_range in net.c sums them)
 *
 * and thread 0, the one thread that talks to the other processes (MPI's
 * THREAD_FUNNELED), starts the buckets' sums across them, without waiting,
 * in group order; at each later call it lets the started sums progress.
 * After the kernel the tail follows, a last group: the parameters no call
 * names (batchnorm's running statistics, whose values travel in their
 * gradients' places to be averaged). Then the process waits for every sum:
 * the wait is the part of the communication the backward pass did not hide.
 *
 * Every process starts the same sums in the same order, each a sum of the
 * same floats, so the result is the same from run to run, and with one
 * bucket or many (each element's sum is over the same values: with two
 * processes, a + b, whatever the algorithm).
 */
#include "cnnrt.h"

#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One thread's context in the kernel: which call it makes next. */
struct rt_grads {
    rt_buckets *b;
    int t, next;
};

struct rt_buckets {
    const rt_net_desc *d;
    int ncalls;
    int *closes;                  /* [call] the group that call closes, or -1 */
    int ng;                       /* the groups calls close (the tail is not one of them) */
    int *first;                   /* group j's buckets are [first[j], first[j + 1]); the */
    int64_t *lo, *hi;             /* tail's [first[ng], first[ng + 1]); bucket [lo, hi) */
    int ntail, *tail;             /* the tail's parameters */
    /* the step */
    rt_net *net;
    const rt_dist *dist;
    int parts;                    /* threads running the kernel */
    int launched;                 /* groups whose sums thread 0 has started */
    bool ran;                     /* thread 0 finished its kernel */
    atomic_int *arrived;          /* [group] threads past its closing call */
    atomic_int *summed;           /* [group] its threads' blocks added */
    rt_grads *ctx;                /* [cap] */
    int cap;
};

/* ---- the plan -------------------------------------------------------------- */

/* The parameter whose elements are exactly [lo, hi), or -1. */
static int param_at(const rt_net_desc *d, int64_t lo, int64_t hi)
{
    for (int i = 0; i < d->nparams; i++)
        if (d->params[i].offset == lo && d->params[i].offset + d->params[i].count == hi)
            return i;
    return -1;
}

/* Whether [lo, hi) holds no element of a parameter (only padding). */
static bool padding(const rt_net_desc *d, int64_t lo, int64_t hi)
{
    for (int i = 0; i < d->nparams; i++)
        if (d->params[i].offset < hi && lo < d->params[i].offset + d->params[i].count)
            return false;
    return true;
}

/* The parameters p[0..n) as buckets appended at b->lo, b->hi: sorted by
 * offset, neighbours joined across padding. Returns the buckets' count. */
static int add_buckets(rt_buckets *b, int at, const int *p, int n)
{
    const rt_param_desc *ps = b->d->params;
    int s[n > 0 ? n : 1];
    memcpy(s, p, sizeof(int) * (size_t)n);
    for (int i = 1; i < n; i++)                    /* insertion sort: a layer's few */
        for (int j = i; j > 0 && ps[s[j]].offset < ps[s[j - 1]].offset; j--) {
            int x = s[j];
            s[j] = s[j - 1], s[j - 1] = x;
        }
    int k = at;
    for (int i = 0; i < n; i++) {
        int64_t lo = ps[s[i]].offset, hi = lo + ps[s[i]].count;
        if (k > at && padding(b->d, b->hi[k - 1], lo))
            b->hi[k - 1] = hi;
        else
            b->lo[k] = lo, b->hi[k++] = hi;
    }
    return k - at;
}

/* Groups the calls, makes their buckets and finds the tail; false if a call
 * does not name one whole learned parameter, or names one twice (a bug). */
static bool plan(rt_buckets *b, int64_t bytes)
{
    const rt_net_desc *d = b->d;
    int np = (int)d->nparams, *group = malloc(sizeof(int) * (size_t)(np + 1));
    char *named = calloc((size_t)np + 1, 1);
    int n = 0, nb = 0;
    int64_t size = 0;
    bool ok = group && named;
    for (int k = 0; ok && k < b->ncalls; k++) {
        int p = param_at(d, d->ready[2 * k], d->ready[2 * k + 1]);
        ok = p >= 0 && !named[p] && !(d->params[p].flags & RT_PARAM_BUFFER);
        if (!ok)
            break;
        named[p] = 1, group[n++] = p;
        size += (int64_t)sizeof(float) * d->params[p].count;
        b->closes[k] = -1;
        if (size >= bytes || k == b->ncalls - 1) {
            b->closes[k] = b->ng;
            b->first[b->ng++] = nb;
            nb += add_buckets(b, nb, group, n);
            n = 0, size = 0;
        }
    }
    for (int i = 0; ok && i < np; i++)
        if (!named[i])
            b->tail[b->ntail++] = i;
    if (ok) {
        b->first[b->ng] = nb;
        b->first[b->ng + 1] = nb + add_buckets(b, nb, b->tail, b->ntail);
    }
    free(group), free(named);
    return ok;
}

rt_buckets *rt_buckets_new(const rt_net_desc *d, int64_t bytes)
{
    rt_buckets *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    size_t nc = (size_t)d->nready, np = (size_t)d->nparams;
    b->d = d, b->ncalls = (int)nc;
    b->closes = malloc(sizeof(int) * (nc + 1));
    b->first = malloc(sizeof(int) * (nc + 2));
    b->lo = malloc(sizeof(int64_t) * (np + 1)), b->hi = malloc(sizeof(int64_t) * (np + 1));
    b->tail = malloc(sizeof(int) * (np + 1));
    b->arrived = malloc(sizeof(atomic_int) * (nc + 1)), b->summed = malloc(sizeof(atomic_int) * (nc + 1));
    b->ctx = malloc(sizeof *b->ctx), b->cap = 1;  /* rt_buckets_begin for one thread cannot fail */
    if (!b->closes || !b->first || !b->lo || !b->hi || !b->tail || !b->arrived || !b->summed || !b->ctx ||
        !plan(b, bytes)) {
        rt_buckets_free(b);
        return NULL;
    }
    return b;
}

void rt_buckets_free(rt_buckets *b)
{
    if (!b)
        return;
    free(b->closes), free(b->first), free(b->lo), free(b->hi), free(b->tail);
    free(b->arrived), free(b->summed), free(b->ctx);
    free(b);
}

/* ---- a step -------------------------------------------------------------------- */

int rt_buckets_begin(rt_buckets *b, rt_net *net, const rt_dist *dist, int parts)
{
    if (parts > b->cap) {
        rt_grads *c = realloc(b->ctx, sizeof *c * (size_t)parts);
        if (!c)
            return -1;
        b->ctx = c, b->cap = parts;
    }
    b->net = net, b->dist = dist, b->parts = parts, b->launched = 0, b->ran = false;
    for (int j = 0; j < b->ng; j++)
        atomic_init(&b->arrived[j], 0), atomic_init(&b->summed[j], 0);
    for (int t = 0; t < parts; t++)
        b->ctx[t] = (rt_grads){b, t, 0};
    return 0;
}

rt_grads *rt_buckets_ctx(rt_buckets *b, int t)
{
    return b ? &b->ctx[t] : NULL;
}

/* net->grads over bucket r += the other threads' blocks, in thread order. */
static void sum_bucket(rt_buckets *b, int r)
{
    float *restrict g = b->net->grads;
    for (int t = 1; t < b->parts; t++) {
        const float *restrict gt = b->net->tgrads[t];
        for (int64_t i = b->lo[r]; i < b->hi[r]; i++)
            g[i] += gt[i];
    }
}

/* The sums across the processes of buckets [from, to). */
static void start(rt_buckets *b, int from, int to)
{
    for (int r = from; r < to; r++)
        b->dist->start_sum(b->dist, b->net->grads + b->lo[r], b->hi[r] - b->lo[r]);
}

/* Thread 0: starts the sums of the groups whose blocks are added, in order. */
static void launch_ready(rt_buckets *b)
{
    while (b->launched < b->ng && atomic_load_explicit(&b->summed[b->launched], memory_order_acquire)) {
        start(b, b->first[b->launched], b->first[b->launched + 1]);
        b->launched++;
    }
}

void rt_grads_ready(rt_grads *c, int64_t lo, int64_t hi)
{
    if (!c)
        return;                                   /* one process: nothing to do */
    rt_buckets *b = c->b;
    int k = c->next++;
    if (k >= b->ncalls || b->d->ready[2 * k] != lo || b->d->ready[2 * k + 1] != hi) {
        fprintf(stderr, "internal error: the training kernel's gradient call %d names [%lld, %lld), not the "
                "descriptor's; this is a bug in cnnc\n", k, (long long)lo, (long long)hi);
        abort();
    }
    int j = b->closes[k];
    if (j >= 0 && atomic_fetch_add(&b->arrived[j], 1) == b->parts - 1) {
        for (int r = b->first[j]; r < b->first[j + 1]; r++)
            sum_bucket(b, r);
        atomic_store_explicit(&b->summed[j], 1, memory_order_release);
    }
    if (c->t == 0) {
        launch_ready(b);
        b->dist->poll(b->dist);
    }
}

void rt_buckets_drain(rt_buckets *b)
{
    for (;;) {
        launch_ready(b);
        if (b->launched == b->ng)
            break;
        b->dist->poll(b->dist);
        sched_yield();                            /* the other threads may share the core */
    }
    b->ran = true;
}

/* The tail: learned parameters' blocks added over the threads; buffers'
 * values (each process's running statistics) in their gradients' places. */
static void tail_values(rt_buckets *b)
{
    rt_net *net = b->net;
    for (int i = 0; i < b->ntail; i++) {
        const rt_param_desc *p = &b->d->params[b->tail[i]];
        float *g = net->grads + p->offset;
        if (p->flags & RT_PARAM_BUFFER) {
            memcpy(g, net->params + p->offset, sizeof(float) * (size_t)p->count);
            continue;
        }
        for (int t = 1; t < b->parts; t++)
            for (int64_t k = 0; k < p->count; k++)
                g[k] += net->tgrads[t][p->offset + k];
    }
}

void rt_buckets_end(rt_buckets *b, double *status, int n, void (*meanwhile)(void *ctx), void *ctx)
{
    rt_net *net = b->net;
    if (!b->ran) {                                /* no kernel: this process adds zeros */
        if (!net->grads && !(net->grads = aligned_alloc(64, ((size_t)b->d->param_floats * 4 + 63) & ~(size_t)63))) {
            fprintf(stderr, "out of memory for the gradients: this process cannot take part\n");
            exit(1);                              /* the job ends with it (MPI's faults) */
        }
        memset(net->grads, 0, sizeof(float) * (size_t)b->d->param_floats);
        b->parts = 1;
        start(b, b->first[b->launched], b->first[b->ng]);
    }
    tail_values(b);
    start(b, b->first[b->ng], b->first[b->ng + 1]);
    b->dist->start_status(b->dist, status, n);
    if (meanwhile)
        meanwhile(ctx);                           /* while the last sums are in flight */
    b->dist->wait_sums(b->dist);
}
