/* mpi.c: the generated program over Open MPI (`cnnc --mpi`). The only file
 * of the runtime that includes mpi.h; built into libcnnrt_mpi.a, which only
 * an MPI build links. It supplies the rt_dist that train.c and net.c spread a
 * training run with: every rank holds the whole network, takes its share of
 * each batch, and the gradient sums are added bucket by bucket behind the
 * backward pass (buckets.c starts them): on 2 ranks by exchanging the
 * buckets, on more with MPI_Iallreduce (see Sum).
 *
 * Errors: MPI_COMM_WORLD keeps MPI_ERRORS_ARE_FATAL (and its duplicate for
 * the sums inherits it), so a failed collective or message (a rank that
 * died) aborts the whole job instead of returning; mpirun then ends the
 * other ranks and exits non-zero.
 */
#include "cnnrt.h"

#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One sum across the processes: a piece of the gradient, or the step's
 * status (a few doubles). With two processes it is an exchange: each sends
 * its values to the other (req[1]) and receives the other's into `in`
 * (req[0]); when both are done it adds them, the lower rank's first, so
 * both get the same bits, those of one process summing two threads'
 * (a + b) and of Open MPI's Iallreduce. That is one message's time where
 * the Iallreduce (libnbc's binomial tree: up to rank 0, then back) takes
 * two, and the ranks' messages cross instead of following each other. The
 * status is one more sum, started with the gradient's last (a blocking
 * allreduce after them was another message's time). With more processes a
 * sum is one MPI_Iallreduce (req[0]; req[1] stays MPI_REQUEST_NULL). */
typedef struct {
    MPI_Request req[2];
    void *v, *in;                 /* in: kept from step to step (the same sums each step) */
    size_t in_size;
    int count;
    MPI_Datatype type;
    bool added;                   /* the sum is in v (and counted as done) */
} Sum;

/* The gradient's sums in flight, and what they cost, for CNNC_MPI_STATS=1
 * (rt_dist.self). */
typedef struct {
    MPI_Comm comm;                /* MPI_COMM_WORLD's duplicate: the sums' messages alone */
    int rank, size;
    Sum *sum;
    int nsum, cap;
    /* the current step */
    int sums;                     /* started: the gradient's buckets */
    double bytes, done;           /* started, done (seen by poll) */
    double started;               /* when the first sum started */
    /* all steps */
    long steps;
    int buckets;                  /* per step (the same every step) */
    double step_bytes;            /* per step */
    double hidden;                /* bytes done before the backward pass ended */
    double behind;                /* seconds from the first sum's start to the backward pass's end */
    double waited;                /* in wait_sums: not hidden behind the backward pass (nor the copy after it) */
    double first, last;           /* when the first step's wait ended, the last one's */
    double first_wait;
} Sums;

/* The next sum of the step, its buffer for the other's values at least
 * `size` bytes when there are two processes; NULL when out of memory. */
static Sum *new_sum(Sums *s, size_t size)
{
    if (s->nsum == s->cap) {
        int cap = s->cap ? 2 * s->cap : 64;
        Sum *n = realloc(s->sum, sizeof *n * (size_t)cap);
        if (!n)
            return NULL;
        memset(n + s->cap, 0, sizeof *n * (size_t)(cap - s->cap));
        s->sum = n, s->cap = cap;
    }
    Sum *u = &s->sum[s->nsum];
    if (s->size == 2 && u->in_size < size) {
        free(u->in);
        u->in_size = 0;
        if (!(u->in = malloc(size)))
            return NULL;
        u->in_size = size;
    }
    s->nsum++;
    return u;
}

/* Starts v[0..count) of `type` summed across the processes, in place. */
static void start(Sums *s, void *v, int count, MPI_Datatype type, const char *what)
{
    int esize;
    MPI_Type_size(type, &esize);
    Sum *u = new_sum(s, (size_t)count * (size_t)esize);
    if (!u) {                     /* a blocking sum would not match the others' */
        fprintf(stderr, "out of memory for %s: this process cannot take part\n", what);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    u->v = v, u->count = count, u->type = type, u->added = false;
    if (s->size == 2) {
        MPI_Irecv(u->in, count, type, 1 - s->rank, 0, s->comm, &u->req[0]);
        MPI_Isend(v, count, type, 1 - s->rank, 0, s->comm, &u->req[1]);
    } else {
        MPI_Iallreduce(MPI_IN_PLACE, v, count, type, MPI_SUM, s->comm, &u->req[0]);
        u->req[1] = MPI_REQUEST_NULL;
    }
}

/* With two processes, v = (lower rank's values) + (higher rank's). */
static void add_in(const Sums *s, Sum *u)
{
    if (s->size != 2)
        return;
    if (u->type == MPI_FLOAT) {
        float *restrict v = u->v;
        const float *restrict in = u->in;
        if (s->rank == 0)                          /* (GCC's -O2 leaves these scalar */
#pragma omp simd                                   /* without the pragma) */
            for (int i = 0; i < u->count; i++)
                v[i] = v[i] + in[i];
        else
#pragma omp simd
            for (int i = 0; i < u->count; i++)
                v[i] = in[i] + v[i];
    } else {
        double *restrict v = u->v;
        const double *restrict in = u->in;
        for (int i = 0; i < u->count; i++)
            v[i] = s->rank == 0 ? v[i] + in[i] : in[i] + v[i];
    }
}

/* MPI counts are ints: a longer vector goes in pieces of at most INT_MAX. */
static void start_sum(const rt_dist *dist, float *v, int64_t n)
{
    Sums *s = dist->self;
    for (int64_t at = 0; at < n; at += INT_MAX)
        start(s, v + at, (int)(n - at < INT_MAX ? n - at : INT_MAX), MPI_FLOAT, "the gradient's sums");
    s->started = s->sums++ ? s->started : MPI_Wtime();
    s->bytes += (double)n * sizeof(float);
}

/* Open MPI moves a non-blocking sum on only inside MPI calls: each test is
 * one of those. A sum done is added (two processes) and counted. */
static void poll(const rt_dist *dist)
{
    Sums *s = dist->self;
    for (int i = 0; i < s->nsum; i++) {
        Sum *u = &s->sum[i];
        int got = 0, sent = 0;     /* MPI_Test looks again after moving them on; */
        if (u->added)              /* MPI_Testall would not until the next call */
            continue;
        MPI_Test(&u->req[0], &got, MPI_STATUS_IGNORE);
        MPI_Test(&u->req[1], &sent, MPI_STATUS_IGNORE);
        if (got && sent) {
            add_in(s, u);
            u->added = true;
            s->done += u->type == MPI_FLOAT ? (double)u->count * sizeof(float) : 0;
        }
    }
}

/* Every sum started done and added. */
static void wait_all(Sums *s)
{
    for (int i = 0; i < s->nsum; i++)
        if (!s->sum[i].added) {
            MPI_Waitall(2, s->sum[i].req, MPI_STATUSES_IGNORE);
            add_in(s, &s->sum[i]);
            s->sum[i].added = true;
        }
    s->nsum = 0;
}

/* Called when the backward pass has ended (and the gradient's last sums are
 * started): the stats look at what it hid then, before the work that
 * rt_buckets_end does while waiting (the next batch's copy). */
static void start_status(const rt_dist *dist, double *status, int n)
{
    Sums *s = dist->self;
    start(s, status, n, MPI_DOUBLE, "the step's status");
    poll(dist);
    s->behind += s->sums ? MPI_Wtime() - s->started : 0;
    s->hidden += s->done;
}

static void wait_sums(const rt_dist *dist)
{
    Sums *s = dist->self;
    double t0 = MPI_Wtime();
    wait_all(s);
    double t1 = MPI_Wtime();
    if (s->steps++ == 0)
        s->first = t1, s->first_wait = t1 - t0;
    s->last = t1, s->waited += t1 - t0;
    s->buckets = s->sums, s->step_bytes = s->bytes;
    s->sums = 0, s->bytes = 0, s->done = 0;
}

/* The seconds a sum of `bytes` takes as one bucket when every rank is ready
 * for it (after a barrier): the transfer alone, without waiting for a
 * slower rank. The median of 21. Every rank calls it. */
static double lone_allreduce(Sums *s, double bytes)
{
    int n = (int)(bytes / sizeof(float)), reps = 21;
    float *v = calloc((size_t)(n > 0 ? n : 1), sizeof *v);
    double t[21];
    for (int i = 0; i < reps; i++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        start(s, v, v ? n : 0, MPI_FLOAT, "a sum");
        wait_all(s);
        t[i] = MPI_Wtime() - t0;
    }
    free(v);
    for (int i = 1; i < reps; i++)                 /* insertion sort: 21 values */
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
            double x = t[j];
            t[j] = t[j - 1], t[j - 1] = x;
        }
    return t[reps / 2];
}

/* Whether rank 0's environment sets `name` to something other than 0. */
static bool env_on(const char *name)
{
    const char *env = getenv(name);
    return env && *env && strcmp(env, "0") != 0;
}

/* CNNC_MPI_STATS=1 (rank 0's environment decides for all): rank 0 says on
 * stderr how many steps there were, the bytes of gradient each summed and in
 * how many buckets, the share of those bytes whose sums were done when its
 * backward pass ended, the time each step waited for the others after it
 * (not hidden behind it; it includes waiting for the slowest rank), the
 * time between those waits (a step's computation), the time of one sum
 * of the whole gradient with every rank ready, and the time the first
 * bucket's sum had before the backward pass ended (the most it could hide). */
static void report_stats(Sums *s, int rank, int size)
{
    double want[2] = {env_on("CNNC_MPI_STATS") && s->steps >= 2, s->step_bytes};
    MPI_Bcast(want, 2, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    if (!want[0])
        return;
    double lone = lone_allreduce(s, want[1]);
    if (rank != 0)
        return;
    double steps = (double)(s->steps - 1), later = s->waited - s->first_wait;
    fprintf(stderr, "mpi: %d ranks, %ld steps, each summing %.0f bytes of gradient in %d bucket%s, "
            "%.0f%% of them done when the backward pass ended; "
            "%.3f ms per step waiting for the sums after the backward pass (not hidden), "
            "%.3f ms of computation between; %.3f ms for one allreduce of it all with every rank ready; "
            "the first bucket started %.3f ms before the backward pass ended\n",
            size, s->steps, s->step_bytes, s->buckets, s->buckets == 1 ? "" : "s",
            100 * s->hidden / (s->step_bytes * (double)s->steps), 1e3 * s->waited / (double)s->steps,
            1e3 * (s->last - s->first - later) / steps, 1e3 * lone, 1e3 * s->behind / (double)s->steps);
}

/* The least size of a gradient bucket: rank 0's CNNC_MPI_BUCKET_KB (KiB),
 * else 64 KiB; the same on every rank, as the buckets must be. */
static int64_t bucket_bytes(int rank)
{
    double kb = 64;
    const char *env = getenv("CNNC_MPI_BUCKET_KB");
    if (rank == 0 && env && *env) {
        char *end;
        double v = strtod(env, &end);
        if (*end || !(v >= 0 && v <= 1e12))
            fprintf(stderr, "warning: CNNC_MPI_BUCKET_KB=%s is not a size in KiB; using %g\n", env, kb);
        else
            kb = v;
    }
    MPI_Bcast(&kb, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    return (int64_t)(kb * 1024);
}

static void sum_doubles(const rt_dist *dist, double *v, int n)
{
    (void)dist;                           /* the ranks are MPI_COMM_WORLD's */
    MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}

static int max_int(const rt_dist *dist, int v)
{
    (void)dist;
    int out = v;
    MPI_Allreduce(&v, &out, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return out;
}

/* Open MPI's TCP transport sends a message longer than its eager limit
 * (64 KiB by default) by rendezvous: the sender offers it and waits for the
 * receiver to answer, and a rank answers only inside an MPI call, which the
 * backward pass makes only between layers. A bucket, 64 KiB or more, then
 * waits a layer or more for each handshake. With a limit of 1 MiB a bucket
 * of up to that goes in one message as soon as it is started (on LeNet over
 * loopback TCP, the wait after the backward pass fell from 0.069 to 0.036
 * ms per step). Set before MPI_Init, and only where the environment (mpirun
 * --mca, OMPI_MCA_*) does not set them already; as environment variables
 * they outrank Open MPI's parameter files (mca-params.conf), so a value for
 * them there is not used (docs/distributed.md). Shared memory is unaffected. */
static void tcp_defaults(void)
{
    setenv("OMPI_MCA_btl_tcp_eager_limit", "1048576", 0);
    setenv("OMPI_MCA_btl_tcp_max_send_size", "1048576", 0);
}

int rt_mpi_main(const rt_net_desc *d, int argc, char **argv)
{
    int provided, rank = 0, size = 1;
    tcp_defaults();
    /* only the thread that called MPI_Init calls MPI: OpenMP's threads compute */
    if (MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "%s: cannot start MPI\n", argc > 0 ? argv[0] : d->name);
        return 1;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    Sums sums = {.rank = rank, .size = size};
    MPI_Comm_dup(MPI_COMM_WORLD, &sums.comm);
    rt_dist dist = {.rank = rank, .size = size, .start_sum = start_sum, .start_status = start_status,
                    .poll = poll, .wait_sums = wait_sums, .sum_doubles = sum_doubles, .max_int = max_int,
                    .bucket_bytes = bucket_bytes(rank), .self = &sums};
    bool train = argc > 1 && strcmp(argv[1], "train") == 0;
    int rc = 0;
    if (train)
        rc = rt_main_dist(d, &dist, argc, argv);
    else if (rank == 0)                   /* info, eval, predict ...: once, not once per rank */
        rc = rt_main(d, argc, argv);
    if (!train)
        rc = max_int(&dist, rc);
    if (train)
        report_stats(&sums, rank, size);
    for (int i = 0; i < sums.cap; i++)
        free(sums.sum[i].in);
    free(sums.sum);
    MPI_Comm_free(&sums.comm);
    MPI_Finalize();
    return rc;
}
