/* mpi.c: the generated program over Open MPI (`cnnc --mpi`). The only file
 * of the runtime that includes mpi.h; built into libcnnrt_mpi.a, which only
 * an MPI build links. It supplies the rt_dist that train.c and net.c spread a
 * training run with: every rank holds the whole network, takes its share of
 * each batch, and the gradient sums are added with MPI_Allreduce.
 *
 * Errors: MPI_COMM_WORLD keeps MPI_ERRORS_ARE_FATAL, so a failed collective
 * (a rank that died) aborts the whole job instead of returning; mpirun then
 * ends the other ranks and exits non-zero.
 */
#include "cnnrt.h"

#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What the gradient sums cost, for CNNC_MPI_STATS=1 (rt_dist.self). */
typedef struct {
    long calls;
    double bytes;                 /* per call */
    double seconds;               /* inside MPI_Allreduce: not hidden, it blocks */
    double first, last;           /* when the first call began, the last ended */
} Stats;

/* MPI counts are ints: a longer vector goes in pieces of at most INT_MAX. */
static void sum_floats(const rt_dist *dist, float *v, int64_t n)
{
    Stats *s = dist->self;
    double t0 = MPI_Wtime();
    for (int64_t at = 0; at < n; at += INT_MAX) {
        int k = (int)(n - at < INT_MAX ? n - at : INT_MAX);
        MPI_Allreduce(MPI_IN_PLACE, v + at, k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    }
    s->last = MPI_Wtime();
    s->first = s->calls++ ? s->first : t0;
    s->bytes = (double)n * sizeof(float), s->seconds += s->last - t0;
}

/* The seconds an allreduce of `bytes` takes when every rank is ready for it
 * (after a barrier): the transfer alone, without waiting for a slower rank.
 * The median of 21. Every rank calls it. */
static double lone_allreduce(double bytes)
{
    int n = (int)(bytes / sizeof(float)), reps = 21;
    float *v = calloc((size_t)(n > 0 ? n : 1), sizeof *v);
    double t[21];
    for (int i = 0; i < reps; i++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        MPI_Allreduce(MPI_IN_PLACE, v, v ? n : 0, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
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

/* CNNC_MPI_STATS=1 (rank 0's environment decides for all): rank 0 says on
 * stderr how many gradient allreduces there were, their size, the time spent
 * in them (which includes waiting for the slowest rank), the time between
 * them (a step's computation), and the time of one with every rank ready. */
static void report_stats(const Stats *s, int rank, int size)
{
    const char *env = getenv("CNNC_MPI_STATS");
    double want[2] = {env && *env && strcmp(env, "0") != 0 && s->calls >= 2, s->bytes};
    MPI_Bcast(want, 2, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    if (!want[0])
        return;
    double lone = lone_allreduce(want[1]);
    if (rank != 0)
        return;
    double span = s->last - s->first, steps = (double)(s->calls - 1);
    fprintf(stderr, "mpi: %d ranks, %ld gradient allreduces of %.0f bytes; %.3f ms in each (not hidden), "
            "%.3f ms of computation between them; %.3f ms for one with every rank ready\n", size, s->calls,
            s->bytes, 1e3 * s->seconds / (double)s->calls, 1e3 * (span - s->seconds) / steps, 1e3 * lone);
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

int rt_mpi_main(const rt_net_desc *d, int argc, char **argv)
{
    int provided, rank = 0, size = 1;
    /* only the thread that called MPI_Init calls MPI: OpenMP's threads compute */
    if (MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "%s: cannot start MPI\n", argc > 0 ? argv[0] : d->name);
        return 1;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    Stats stats = {0};
    rt_dist dist = {rank, size, sum_floats, sum_doubles, max_int, &stats};
    bool train = argc > 1 && strcmp(argv[1], "train") == 0;
    int rc = 0;
    if (train)
        rc = rt_main_dist(d, &dist, argc, argv);
    else if (rank == 0)                   /* info, eval, predict ...: once, not once per rank */
        rc = rt_main(d, argc, argv);
    if (!train)
        rc = max_int(&dist, rc);
    if (train)
        report_stats(&stats, rank, size);
    MPI_Finalize();
    return rc;
}
