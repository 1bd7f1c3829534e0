/* profile.c: the layers' times of a network compiled with `cnnc --profile`.
 *
 * The kernels mark the start of each layer's statements (rt_prof_mark, see
 * cnnrt.h); `bench` resets the table before a measure and prints it after.
 * A mark costs a clock read on thread 0 and nothing on the others.
 */
#include "cnnrt.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* The open mark of the calling thread: its table, its layer, its time. */
static _Thread_local int64_t *open_ns;
static _Thread_local int64_t open_id, open_t;

void rt_prof_mark(int64_t *ns, int64_t id)
{
    if (omp_get_thread_num() != 0)
        return;
    int64_t t = now_ns();
    if (open_ns)                                 /* a relaxed add: callers on other threads */
        __atomic_fetch_add(&open_ns[open_id], t - open_t, __ATOMIC_RELAXED);
    open_ns = id >= 0 ? ns : NULL, open_id = id, open_t = t;
}

/* The layers' times of each timed call of one measure. The profile keeps
 * the calls at or below the median time: on a shared machine a call that
 * lost a core for a while (a thread waiting at a join for one that was
 * descheduled) would otherwise charge its wait to whichever layer it was in. */
struct rt_prof_calls {
    const rt_net_desc *d;
    int64_t *last;          /* the table's layer times after the last call */
    int64_t *delta;         /* [calls][nprof]: each call's time per layer */
    double *seconds;        /* each call's time */
    int calls, cap;
};

enum { MAX_CALLS = 4096, MAX_ROWS = 30 };

rt_prof_calls *rt_prof_begin(const rt_net_desc *d)
{
    if (!d->prof_ns || d->nprof <= 0)
        return NULL;
    rt_prof_calls *p = calloc(1, sizeof *p);
    if (!p || !(p->last = calloc((size_t)d->nprof, sizeof *p->last))) {
        free(p);
        return NULL;
    }
    p->d = d;
    memset(d->prof_ns, 0, sizeof(int64_t) * (size_t)d->nprof);
    return p;
}

void rt_prof_call(rt_prof_calls *p, double seconds)
{
    if (!p || p->calls == MAX_CALLS)
        return;
    int64_t n = p->d->nprof;
    if (p->calls == p->cap) {
        int cap = p->cap ? 2 * p->cap : 64;
        int64_t *delta = realloc(p->delta, sizeof *delta * (size_t)cap * (size_t)n);
        double *sec = delta ? realloc(p->seconds, sizeof *sec * (size_t)cap) : NULL;
        if (delta)
            p->delta = delta;
        if (!sec)
            return;
        p->seconds = sec, p->cap = cap;
    }
    int64_t *row = p->delta + (size_t)p->calls * (size_t)n;
    for (int64_t i = 0; i < n; i++) {
        int64_t now = p->d->prof_ns[i];
        row[i] = now - p->last[i], p->last[i] = now;
    }
    p->seconds[p->calls++] = seconds;
}

typedef struct { int64_t ns; const char *label; } Row;

static int by_time(const void *a, const void *b)
{
    const Row *x = a, *y = b;
    return (x->ns < y->ns) - (x->ns > y->ns);
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The calls at or below the median: their count, and their time per layer
 * summed into row[] (layers with no time left out); returns the rows. */
static int fast_calls(const rt_prof_calls *p, Row *row, int *kept)
{
    double *sorted = malloc(sizeof *sorted * (size_t)p->calls);
    if (!sorted)
        return 0;
    memcpy(sorted, p->seconds, sizeof *sorted * (size_t)p->calls);
    qsort(sorted, (size_t)p->calls, sizeof *sorted, by_value);
    double median = sorted[p->calls / 2];
    free(sorted);
    int64_t n = p->d->nprof;
    int rows = 0;
    *kept = 0;
    for (int64_t i = 0; i < n; i++)
        row[i] = (Row){0, p->d->prof_labels[i]};
    for (int c = 0; c < p->calls; c++)
        if (p->seconds[c] <= median) {
            ++*kept;
            for (int64_t i = 0; i < n; i++)
                row[i].ns += p->delta[(size_t)c * (size_t)n + (size_t)i];
        }
    for (int64_t i = 0; i < n; i++)
        if (row[i].ns > 0)
            row[rows++] = row[i];
    return rows;
}

void rt_prof_end(rt_prof_calls *p, const char *what)
{
    if (!p)
        return;
    Row *row = p->calls ? malloc(sizeof *row * (size_t)p->d->nprof) : NULL;
    int kept = 0, n = row ? fast_calls(p, row, &kept) : 0;
    int64_t total = 0;
    for (int i = 0; i < n; i++)
        total += row[i].ns;
    if (what && n > 0 && total > 0 && kept > 0) {
        qsort(row, (size_t)n, sizeof *row, by_time);
        printf("  profile of %s: %.1f us a call on thread 0 (the %d calls at or below the median), by layer:\n",
               what, (double)total / kept * 1e-3, kept);
        int shown = n < MAX_ROWS ? n : MAX_ROWS;
        int64_t rest = 0;
        for (int i = 0; i < n; i++)
            if (i < shown)
                printf("  %6.1f%%  %10.1f us  %s\n", 100.0 * (double)row[i].ns / (double)total,
                       (double)row[i].ns / kept * 1e-3, row[i].label);
            else
                rest += row[i].ns;
        if (shown < n)
            printf("  %6.1f%%  %10.1f us  (%d more layers)\n", 100.0 * (double)rest / (double)total,
                   (double)rest / kept * 1e-3, n - shown);
        fflush(stdout);
    }
    free(row);
    free(p->last), free(p->delta), free(p->seconds), free(p);
}
