/* train.c: the generated program's `train` command. The loop over epochs and
 * minibatches around rt_net_train_step, with what a long run needs: the
 * learning-rate schedule, a progress bar, a metrics log and plot, a test
 * evaluation and an atomic checkpoint after each epoch, resumption that ends
 * bit-identical to a run that never stopped, and clean stops on divergence
 * and on Ctrl-C.
 *
 * Determinism. Epoch e's shuffle is a permutation drawn from an rt_rng seeded
 * by (seed, e); dropout's masks come from (seed, step) inside net.c; the
 * threads' gradients are summed in thread order. So the weights after any
 * step are a function of the seed, the thread count, the settings, the data
 * and nothing else, and a checkpoint (parameters, momentum, step, epoch, the
 * position inside the epoch) is all that a resumed run needs.
 */
#include "cnnrt.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The one exception to "no global mutable state": the signal that asked the
 * run to stop (SIGINT, SIGTERM), 0 until then. Read between steps. */
static volatile sig_atomic_t stop_signal;

static void on_signal(int sig) { stop_signal = sig; }

/* The settings of a run: command line, else checkpoint, else descriptor. */
typedef struct {
    double lr, momentum;          /* base rate (before the schedule) */
    int batch, threads, epochs;
    uint64_t seed;
    const char *save;             /* the checkpoint written after each epoch */
} Settings;

/* One completed epoch, as printed, logged and plotted. test_* are NAN
 * without a test set; seconds is 0 for epochs before a resumption. */
typedef struct {
    double lr, train_loss, test_loss, test_acc, seconds;
} Epoch;

/* Field k of h in the order above: 0 lr, 1 train loss, 2 test loss, 3 test acc. */
static double field(const Epoch *h, int k)
{
    return k == 0 ? h->lr : k == 1 ? h->train_loss : k == 2 ? h->test_loss : h->test_acc;
}

/* Where a run stands: what a checkpoint records besides the network. */
typedef struct {
    int epoch;                    /* epochs completed */
    int64_t epoch_step;           /* minibatches done in epoch `epoch` */
    double epoch_loss;            /* the sum of their loss x examples */
    rt_rng rng;                   /* draws epoch `epoch`'s shuffle */
    Epoch *hist;                  /* hist[0..epoch) */
    int cap;
} Progress;

/* The progress bar (on a terminal) or the occasional plain line (otherwise). */
typedef struct {
    bool tty;
    double t0, drawn;             /* when the epoch started, last drawn */
    int64_t done, total;          /* examples */
    int64_t from;                 /* examples already done when timing began */
    int tenth;                    /* the last 10% mark printed (plain lines) */
} Bar;

typedef struct {
    const rt_net_desc *d;
    const rt_train_opts *o;
    const char *prog;
    Settings s;
    Progress p;
    rt_net *net;
    rt_data train, test;          /* test.n == 0: no test set */
    float *x, *out;               /* a minibatch's inputs, outputs */
    int32_t *y;
    /* Several processes: the next minibatch's share, copied while a step's
     * last sums are in flight (copy_next); ready: its position in the
     * epoch's order once copied, else -1. */
    float *x2;
    int32_t *y2;
    int64_t next, ready;
    int next_n;
    int64_t *perm;                /* the epoch's order of the training examples */
    double *probs;
    const char *last_good;        /* the last checkpoint written or resumed */
    bool log_failed, plot_failed; /* warned once */
    const rt_dist *dist;          /* the processes of the run; NULL: this one alone */
    bool lead;                    /* rank 0 (or alone): prints and writes the files */
    Bar bar;
    char default_save[300];
} Run;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

const char *rt_grouped(double v, char *buf, size_t size)
{
    char digits[32];
    snprintf(digits, sizeof digits, "%.0f", v < 0 ? 0 : v > 9e18 ? 9e18 : v);
    size_t n = strlen(digits), k = 0;
    for (size_t i = 0; i < n && k + 2 < size; i++) {
        if (i && (n - i) % 3 == 0)
            buf[k++] = ',';
        buf[k++] = digits[i];
    }
    buf[k] = 0;
    return buf;
}

/* A duration as m:ss or h:mm:ss. */
static const char *clock_time(double s, char *buf, size_t size)
{
    long t = isfinite(s) && s > 0 ? (long)(s + 0.5) : 0;
    if (t >= 3600)
        snprintf(buf, size, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, size, "%ld:%02ld", t / 60, t % 60);
    return buf;
}

/* ---- the schedule and the shuffle -------------------------------------------- */

/* The rate at the start of epoch e (from 0) of E:
 *   constant lr;  step lr factor^floor(e/every);  cosine lr (1 + cos(pi e/E))/2;
 *   exp lr gamma^e */
static double scheduled_lr(const rt_net_desc *d, double lr, int e, int E)
{
    switch (d->schedule) {
    case RT_SCHED_STEP:
        return lr * pow(d->step_factor, (double)(e / (d->step_every > 0 ? d->step_every : 1)));
    case RT_SCHED_COSINE:
        return lr * (1 + cos(3.141592653589793 * e / (E > 0 ? E : 1))) / 2;
    case RT_SCHED_EXP:
        return lr * pow(d->exp_gamma, (double)e);
    default:
        return lr;
    }
}

static const char *schedule_name(const rt_net_desc *d)
{
    static const char *names[] = {"constant", "step", "cosine", "exp"};
    return d->schedule >= 0 && d->schedule <= RT_SCHED_EXP ? names[d->schedule] : "constant";
}

/* The generator of epoch e's shuffle: a function of (seed, e) only. */
static void epoch_rng(rt_rng *r, uint64_t seed, int e)
{
    rt_rng_seed(r, (seed * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)e * 0xC2B2AE3D27D4EB4Full) ^ 0x73687566ull);
}

/* perm = a uniformly random permutation of 0..n-1 (Fisher-Yates), drawn from
 * a copy of *rng, which stays the epoch's starting state. */
static void shuffle(int64_t *perm, int64_t n, const rt_rng *rng)
{
    rt_rng r = *rng;
    for (int64_t i = 0; i < n; i++)
        perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(((unsigned __int128)rt_rng_next(&r) * (uint64_t)(i + 1)) >> 64);
        int64_t t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
}

/* ---- data -------------------------------------------------------------------- */

/* Loads one data set, from the command line's files or the data block,
 * and checks it fits the network; *have is false if neither names one.
 * 0, or 1 after a message naming the file. */
static int load_set(Run *r, const char *images, const char *labels, const rt_data_desc *dd,
                    rt_data *data, bool *have)
{
    const rt_net_desc *d = r->d;
    rt_err err = {{0}};
    int rc;
    const char *file = images ? images : dd->path;
    *have = true;
    if (images && !labels)                 /* --train FILE.csv: the label in column 0 */
        rc = rt_csv_load(images, 0, d->input_size, data, &err);
    else if (images)
        rc = rt_idx_load(images, labels, data, &err);
    else if (dd->kind == RT_DATA_IDX)
        rc = rt_idx_load(dd->path, dd->labels, data, &err);
    else if (dd->kind == RT_DATA_CSV)
        rc = rt_csv_load(dd->path, (int)dd->label_col, d->input_size, data, &err);
    else
        return *have = false, 0;
    if (!rc && data->dim != d->input_size)
        rc = rt_fail(&err, "%s: examples have %lld values but the network's input has %lld", file,
                     (long long)data->dim, (long long)d->input_size);
    if (!rc && data->n < 1)
        rc = rt_fail(&err, "%s: holds no examples", file);
    if (!rc)
        rc = rt_data_check_labels(data, (int)d->nclasses, &err);
    if (rc) {
        fprintf(stderr, "%s: %s\n", r->prog, err.msg);
        rt_data_free(data);
        return 1;
    }
    return 0;
}

static int load_data(Run *r)
{
    const rt_train_opts *o = r->o;
    bool have;
    if (load_set(r, o->train_images, o->train_labels, &r->d->train_set, &r->train, &have))
        return 1;
    if (!have) {
        fprintf(stderr, "%s: no training data: give --train IMAGES LABELS or a data { train = ... } block\n",
                r->prog);
        return 2;
    }
    if (load_set(r, o->test_images, o->test_labels, &r->d->test_set, &r->test, &have))
        return 1;
    if (!have && r->lead)
        fprintf(stderr, "%s: note: no test data (--test IMAGES LABELS): reporting the training loss only\n",
                r->prog);
    return 0;
}

/* ---- checkpoints --------------------------------------------------------------- */

/* A growing string. */
typedef struct {
    char *p;
    size_t n, cap;
} Str;

static void str_add(Str *s, const char *fmt, ...) RT_PRINTF(2, 3);

static void str_add(Str *s, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int k = vsnprintf(s->p ? s->p + s->n : NULL, s->p ? s->cap - s->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0)
            return;
        if (s->p && s->n + (size_t)k < s->cap) {
            s->n += (size_t)k;
            return;
        }
        size_t cap = (s->cap + (size_t)k + 64) * 2;
        char *p = realloc(s->p, cap);
        if (!p)
            return;                    /* the string stays as it was */
        s->p = p, s->cap = cap;
    }
}

/* The per-epoch history, "lr,train,test,acc;..." (deterministic: no times). */
static void history_string(const Progress *p, Str *s)
{
    str_add(s, "%s", "");
    for (int i = 0; i < p->epoch; i++) {
        const Epoch *h = &p->hist[i];
        str_add(s, "%s%.9g,%.9g,%.9g,%.9g", i ? ";" : "", h->lr, h->train_loss, h->test_loss, h->test_acc);
    }
}

/* v in the fewest digits that read back as exactly v: "0.05", not
 * "0.050000000000000003". */
static const char *exact(double v, char *buf, size_t size)
{
    for (int digits = 6; digits <= 17; digits++) {
        snprintf(buf, size, "%.*g", digits, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    return buf;
}

/* Writes the checkpoint at r->s.save; 0, or 1 after a message. */
static int write_checkpoint(Run *r)
{
    const Progress *p = &r->p;
    char epoch[24], estep[24], eloss[40], examples[24], lr[40], mom[40], batch[24], threads[24], rng[72];
    snprintf(epoch, sizeof epoch, "%d", p->epoch);
    snprintf(estep, sizeof estep, "%lld", (long long)p->epoch_step);
    exact(p->epoch_loss, eloss, sizeof eloss);
    snprintf(examples, sizeof examples, "%lld", (long long)r->train.n);
    exact(r->s.lr, lr, sizeof lr);
    exact(r->s.momentum, mom, sizeof mom);
    snprintf(batch, sizeof batch, "%d", r->s.batch);
    snprintf(threads, sizeof threads, "%d", r->s.threads);
    snprintf(rng, sizeof rng, "%016llx%016llx%016llx%016llx", (unsigned long long)p->rng.s[0],
             (unsigned long long)p->rng.s[1], (unsigned long long)p->rng.s[2], (unsigned long long)p->rng.s[3]);
    Str hist = {0};
    history_string(p, &hist);
    char ranks[24];
    snprintf(ranks, sizeof ranks, "%d", r->dist ? r->dist->size : 1);
    const char *key[] = {"epoch", "epoch_step", "epoch_loss", "examples", "lr", "momentum", "batch",
                         "threads", "rng", "history", "ranks"};
    const char *val[] = {epoch, estep, eloss, examples, lr, mom, batch, threads, rng, hist.p ? hist.p : "",
                         ranks};
    int nmeta = r->dist && r->dist->size > 1 ? 11 : 10;     /* "ranks" only when there are several */
    int rc = rt_net_save_checkpoint(r->net, r->s.save, nmeta, key, val);
    free(hist.p);
    if (rc) {
        fprintf(stderr, "%s: cannot write the checkpoint: %s\n", r->prog, rt_net_error(r->net));
        return 1;
    }
    r->last_good = r->s.save;
    return 0;
}

/* ---- several processes --------------------------------------------------------- */

/* The largest of the processes' exit statuses: each stops if one does. */
static int agree(const Run *r, int rc)
{
    return r->dist ? r->dist->max_int(r->dist, rc) : rc;
}

/* The checkpoint, written by the lead alone; 0, or 1 on every process. */
static int checkpoint(Run *r)
{
    return agree(r, r->lead ? write_checkpoint(r) : 0);
}

/* This process's share [*lo, *hi) of n examples: contiguous, in rank order. */
static void rank_share(const Run *r, int64_t n, int64_t *lo, int64_t *hi)
{
    int k = r->dist ? r->dist->rank : 0, size = r->dist ? r->dist->size : 1;
    *lo = n * k / size, *hi = n * (k + 1) / size;
}

/* Whether every process holds the same parameters, as every step should
 * leave them: the largest and smallest CRC-32 of them (31 bits) agree.
 * Checked after each epoch; a difference is a bug, said by the lead. */
static int same_weights(const Run *r)
{
    if (!r->dist)
        return 0;
    const rt_net_desc *d = r->d;
    int c = (int)(rt_crc32(0, r->net->params, sizeof(float) * (size_t)d->param_floats) >> 1);
    bool same = r->dist->max_int(r->dist, c) == -r->dist->max_int(r->dist, -c);
    if (!same && r->lead)
        fprintf(stderr, "%s: internal error: the ranks' weights differ after epoch %d; this is a bug in the "
                "cnnc runtime\n", r->prog, r->p.epoch);
    return same ? 0 : 1;
}

/* The signal that stops the run, the same on every process (0: none). */
static int agreed_signal(const Run *r)
{
    return agree(r, stop_signal);
}

/* Metadata value `key` of the checkpoint as a number in [lo, hi]; 0, or -1
 * after a message. A missing key leaves *v alone when `optional`. */
static int meta_num(const Run *r, const rt_tensors *ts, const char *key, double lo, double hi,
                    bool optional, double *v)
{
    const char *s = rt_st_meta(ts, key);
    char *end;
    if (!s && optional)
        return 0;
    if (!s) {
        fprintf(stderr, "%s: %s: not a training checkpoint (no '%s' in its metadata)\n", r->prog,
                r->o->resume, key);
        return -1;
    }
    errno = 0;
    double x = strtod(s, &end);
    if (errno || end == s || *end || !(x >= lo && x <= hi)) {
        fprintf(stderr, "%s: %s: metadata '%s' is '%s', which is not a number in [%g, %g]\n", r->prog,
                r->o->resume, key, s, lo, hi);
        return -1;
    }
    *v = x;
    return 0;
}

/* The shuffling generator's state from the checkpoint's "rng" (64 hex digits). */
static int meta_rng(const Run *r, const rt_tensors *ts, rt_rng *rng)
{
    const char *s = rt_st_meta(ts, "rng");
    if (!s)
        return 0;                      /* derived from (seed, epoch) instead */
    bool ok = strlen(s) == 64 && strspn(s, "0123456789abcdefABCDEF") == 64;
    for (int i = 0; ok && i < 4; i++) {
        char word[17] = {0};
        memcpy(word, s + 16 * i, 16);
        rng->s[i] = strtoull(word, NULL, 16);
    }
    if (!ok)
        fprintf(stderr, "%s: %s: metadata 'rng' is not 64 hex digits\n", r->prog, r->o->resume);
    return ok ? 0 : -1;
}

/* The epochs before the checkpoint, from its "history" (for the plot). */
static void meta_history(Run *r, const rt_tensors *ts)
{
    const char *s = rt_st_meta(ts, "history");
    for (int i = 0; i < r->p.epoch; i++) {
        Epoch *h = &r->p.hist[i];
        *h = (Epoch){NAN, NAN, NAN, NAN, 0};
        if (!s || !*s)
            continue;
        char *end;
        double v[4];
        for (int k = 0; k < 4; k++) {
            v[k] = strtod(s, &end);
            s = end + (*end == ',' || *end == ';');
        }
        *h = (Epoch){v[0], v[1], v[2], v[3], 0};
    }
}

/* Says so when a command-line setting differs from the checkpoint's. */
static void note_override(const Run *r, const rt_tensors *ts, const char *key, long long given)
{
    const char *s = rt_st_meta(ts, key);
    if (r->lead && given >= 0 && s && strtoll(s, NULL, 10) != given)
        fprintf(stderr, "%s: note: --%s %lld differs from the checkpoint's %s: the run will not end "
                "as one that never stopped\n", r->prog, key, given, s);
}

/* Settings the checkpoint recorded, where the command line gives none. */
static int resumed_settings(Run *r, const rt_tensors *ts)
{
    const rt_train_opts *o = r->o;
    double seed = (double)r->s.seed, lr = r->s.lr, mom = r->s.momentum, batch = r->s.batch,
           threads = r->s.threads;
    if ((o->seed < 0 && meta_num(r, ts, "seed", 0, 1.8e19, true, &seed)) ||
        (o->lr < 0 && meta_num(r, ts, "lr", 0, INFINITY, true, &lr)) ||
        (o->momentum < 0 && meta_num(r, ts, "momentum", 0, 1, true, &mom)) ||
        (o->batch <= 0 && meta_num(r, ts, "batch", 1, 65536, true, &batch)) ||
        (o->threads <= 0 && meta_num(r, ts, "threads", 1, 1024, true, &threads)))
        return -1;
    note_override(r, ts, "seed", o->seed);
    note_override(r, ts, "batch", o->batch > 0 ? o->batch : -1);
    note_override(r, ts, "threads", o->threads > 0 ? o->threads : -1);
    if (o->seed < 0) {
        const char *s = rt_st_meta(ts, "seed");
        r->s.seed = s ? strtoull(s, NULL, 10) : r->s.seed;     /* exactly, not via a double */
    }
    r->s.lr = lr, r->s.momentum = mom, r->s.batch = (int)batch, r->s.threads = (int)threads;
    return 0;
}

/* Reads the checkpoint to resume: its settings into r->s, before the network
 * exists. Leaves the file's contents in *ts. 0, or 1 after a message. */
static int read_resume(Run *r, rt_tensors *ts)
{
    rt_err err = {{0}};
    if (rt_st_read(r->o->resume, ts, &err)) {
        fprintf(stderr, "%s: %s\n", r->prog, err.msg);
        return 1;
    }
    return resumed_settings(r, ts) ? 1 : 0;
}

/* Restores the network and the run's progress from the checkpoint read. */
static int restore(Run *r, const rt_tensors *ts)
{
    double epoch, estep = 0, eloss = 0, examples = -1;
    if (rt_net_load_tensors(r->net, ts, r->o->resume)) {
        fprintf(stderr, "%s: %s\n", r->prog, rt_net_error(r->net));
        return 1;
    }
    r->net->seed = r->s.seed;          /* the checkpoint's, unless --seed says otherwise */
    if (meta_num(r, ts, "epoch", 0, 1e6, false, &epoch) ||
        meta_num(r, ts, "epoch_step", 0, 1e15, true, &estep) ||
        meta_num(r, ts, "epoch_loss", -INFINITY, INFINITY, true, &eloss) ||
        meta_num(r, ts, "examples", 0, 1e15, true, &examples))
        return 1;
    Progress *p = &r->p;
    p->epoch = (int)epoch, p->epoch_step = (int64_t)estep, p->epoch_loss = eloss;
    epoch_rng(&p->rng, r->s.seed, p->epoch);
    if (meta_rng(r, ts, &p->rng))
        return 1;
    p->cap = p->epoch + 1;
    if (!(p->hist = calloc((size_t)p->cap, sizeof *p->hist)))
        return fprintf(stderr, "%s: out of memory\n", r->prog), 1;
    meta_history(r, ts);
    bool same_batches = (int64_t)examples == r->train.n && rt_st_meta(ts, "batch") &&
                        atoi(rt_st_meta(ts, "batch")) == r->s.batch;
    if (p->epoch_step && !same_batches) {
        if (r->lead)
            printf("note: the checkpoint stopped inside epoch %d with another batch size or training set; "
               "that epoch starts again from its beginning\n", p->epoch + 1);
        p->epoch_step = 0, p->epoch_loss = 0;
    }
    r->last_good = r->o->resume;
    return 0;
}

/* ---- the metrics log and the plot ------------------------------------------------ */

static const char log_header[] = "epoch,lr,train_loss,test_loss,test_acc,seconds\n";

/* Writes text to path atomically: path.tmp.<pid>, then renamed over path. */
static int write_atomic(const char *path, const char *text, size_t len)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return -1;
    bool ok = fwrite(text, 1, len, f) == len;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        return -1;
    }
    return 0;
}

/* Starts the log: a fresh run writes the header; a resumed one keeps the
 * rows of the epochs its checkpoint completed (dropping any written after
 * it) and appends from there. 0, or 1 after a message. */
static int start_log(Run *r)
{
    const char *path = r->o->log;
    char *old = NULL;
    size_t len = 0;
    rt_err err = {{0}};
    Str s = {0};
    str_add(&s, "%s", log_header);
    if (r->o->resume && rt_read_file(path, &old, &len, &err) == 0) {
        char *line = old, *next;
        for (; line && *line; line = next) {
            next = strchr(line, '\n');
            if (next)
                *next++ = 0;
            char *end;
            long e = strtol(line, &end, 10);
            if (end != line && *end == ',' && e >= 1 && e <= r->p.epoch)
                str_add(&s, "%s\n", line);
        }
    }
    free(old);
    int rc = s.p ? write_atomic(path, s.p, s.n) : -1;
    free(s.p);
    if (rc) {
        fprintf(stderr, "%s: %s: cannot write the log: %s\n", r->prog, path, strerror(errno));
        return 1;
    }
    return 0;
}

static void log_epoch(Run *r, const Epoch *h)
{
    FILE *f = fopen(r->o->log, "a");
    bool ok = f != NULL;
    if (f) {
        fprintf(f, "%d,%.9g,%.6f,", r->p.epoch, h->lr, h->train_loss);
        if (isnan(h->test_loss))
            fprintf(f, ",,");
        else
            fprintf(f, "%.6f,%.6f,", h->test_loss, h->test_acc);
        fprintf(f, "%.3f\n", h->seconds);
        ok = fclose(f) == 0;
    }
    if (!ok && !r->log_failed) {
        fprintf(stderr, "%s: warning: %s: cannot append to the log: %s\n", r->prog, r->o->log, strerror(errno));
        r->log_failed = true;
    }
}

/* A round step for about `ticks` ticks from 0 to max: 1, 2 or 5 x 10^k. */
static double nice_step(double max, int ticks)
{
    double raw = max / ticks, mag = pow(10, floor(log10(raw)));
    double f = raw / mag;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

/* Geometry of the chart: the plot area and its scales. */
typedef struct {
    double x0, y0, w, h;          /* the plot area in SVG units */
    double xmax, lossmax;         /* epochs and loss at the right and top edges */
} Chart;

static double cx(const Chart *c, double epoch) { return c->x0 + c->w * epoch / c->xmax; }
static double cy(const Chart *c, double v, double vmax) { return c->y0 + c->h * (1 - v / vmax); }

/* One series as a polyline with a dot at each point; k picks the field. */
static void plot_series(Str *s, const Chart *c, const Progress *p, int k, double vmax,
                        const char *color, const char *dash)
{
    Str pts = {0};
    str_add(&pts, "%s", "");
    for (int i = 0; i < p->epoch; i++) {
        double y = field(&p->hist[i], k) * (k == 3 ? 100 : 1);
        if (!isfinite(y))
            continue;
        str_add(&pts, "%.1f,%.1f ", cx(c, i + 1), cy(c, y, vmax));
        str_add(s, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"/>\n", cx(c, i + 1),
                cy(c, y, vmax), color);
    }
    str_add(s, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"%s\"/>\n", color, dash,
            pts.p ? pts.p : "");
    free(pts.p);
}

/* The axes, their ticks and labels. */
static void plot_axes(Str *s, const Chart *c, double lstep)
{
    double right = c->x0 + c->w, bottom = c->y0 + c->h;
    str_add(s, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"#444\"/>\n",
            c->x0, c->y0, c->w, c->h);
    int xstep = (int)ceil(c->xmax / 10);
    for (int e = 0; e <= c->xmax; e += xstep)
        str_add(s, "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" stroke=\"#444\"/>"
                   "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%d</text>\n",
                cx(c, e), bottom, cx(c, e), bottom + 5, cx(c, e), bottom + 20, e);
    for (double v = 0; v <= c->lossmax * 1.0001; v += lstep)
        str_add(s, "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                   "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
                c->x0, cy(c, v, c->lossmax), right, cy(c, v, c->lossmax), c->x0 - 6,
                cy(c, v, c->lossmax) + 4, v);
    for (int a = 0; a <= 100; a += 20)
        str_add(s, "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#444\"/>"
                   "<text x=\"%.0f\" y=\"%.1f\">%d%%</text>\n",
                right, cy(c, a, 100), right + 5, cy(c, a, 100), right + 8, cy(c, a, 100) + 4, a);
    str_add(s, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">epoch</text>\n", c->x0 + c->w / 2, bottom + 42);
    str_add(s, "<text transform=\"translate(%.0f %.0f) rotate(-90)\" text-anchor=\"middle\">loss</text>\n",
            c->x0 - 48, c->y0 + c->h / 2);
    str_add(s, "<text transform=\"translate(%.0f %.0f) rotate(90)\" text-anchor=\"middle\">test accuracy</text>\n",
            right + 52, c->y0 + c->h / 2);
}

static void plot_legend(Str *s, const Chart *c)
{
    static const char *label[] = {"train loss", "test loss", "test accuracy"};
    static const char *color[] = {"#1f77b4", "#ff7f0e", "#2ca02c"};
    double x = c->x0 + c->w - 150, y = c->y0 + 10;
    str_add(s, "<rect x=\"%.0f\" y=\"%.0f\" width=\"140\" height=\"66\" fill=\"white\" stroke=\"#999\"/>\n", x, y);
    for (int i = 0; i < 3; i++)
        str_add(s, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"%s\" stroke-width=\"2\"%s/>"
                   "<text x=\"%.0f\" y=\"%.0f\">%s</text>\n",
                x + 8, y + 15 + 20 * i, x + 32, y + 15 + 20 * i, color[i],
                i == 2 ? " stroke-dasharray=\"6 3\"" : "", x + 40, y + 19 + 20 * i, label[i]);
}

/* Writes the network's name with XML's special characters escaped. */
static void xml_text(Str *s, const char *t)
{
    for (; *t; t++)
        switch (*t) {
        case '<': str_add(s, "&lt;"); break;
        case '>': str_add(s, "&gt;"); break;
        case '&': str_add(s, "&amp;"); break;
        default:  str_add(s, "%c", *t);
        }
}

/* Rewrites the SVG chart of the epochs so far: train and test loss on the
 * left axis, test accuracy on the right, epochs along the bottom. */
static void plot(Run *r)
{
    const Progress *p = &r->p;
    double lmax = 0;
    for (int i = 0; i < p->epoch; i++)
        for (int k = 1; k <= 2; k++) {
            double v = field(&p->hist[i], k);
            lmax = isfinite(v) && v > lmax ? v : lmax;
        }
    double lstep = nice_step(lmax > 0 ? lmax : 1, 5);
    Chart c = {80, 50, 560, 320, r->s.epochs > p->epoch ? r->s.epochs : p->epoch, 0};
    c.xmax = c.xmax < 1 ? 1 : c.xmax;
    c.lossmax = lstep * ceil((lmax > 0 ? lmax : 1) / lstep);
    Str s = {0};
    str_add(&s, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"720\" height=\"440\" viewBox=\"0 0 720 440\" "
                "font-family=\"sans-serif\" font-size=\"12\">\n"
                "<rect width=\"720\" height=\"440\" fill=\"white\"/>\n"
                "<text x=\"360\" y=\"28\" text-anchor=\"middle\" font-size=\"15\">");
    xml_text(&s, r->d->name);
    str_add(&s, ": training curves, epoch %d of %d</text>\n", p->epoch, r->s.epochs);
    plot_axes(&s, &c, lstep);
    plot_series(&s, &c, p, 1, c.lossmax, "#1f77b4", "");
    plot_series(&s, &c, p, 2, c.lossmax, "#ff7f0e", "");
    plot_series(&s, &c, p, 3, 100, "#2ca02c", " stroke-dasharray=\"6 3\"");
    plot_legend(&s, &c);
    str_add(&s, "</svg>\n");
    if ((!s.p || write_atomic(r->o->plot, s.p, s.n)) && !r->plot_failed) {
        fprintf(stderr, "%s: warning: %s: cannot write the plot: %s\n", r->prog, r->o->plot, strerror(errno));
        r->plot_failed = true;
    }
    free(s.p);
}

/* ---- progress ------------------------------------------------------------------- */

static void bar_start(Run *r, int64_t done)
{
    Bar *b = &r->bar;
    b->t0 = b->drawn = now_s();
    b->done = b->from = done;
    b->total = r->train.n;
    b->tenth = (int)(10 * done / b->total);
}

/* Redraws the bar at most 10 times a second (a terminal), or prints a plain
 * line at each 10% mark at least 30 s after the last (not a terminal). */
static void bar_update(Run *r, int e, int64_t done)
{
    Bar *b = &r->bar;
    b->done = done;
    if (!r->lead)
        return;
    double t = now_s(), rate = (double)(done - b->from) / (t - b->t0 > 1e-9 ? t - b->t0 : 1e-9);
    int tenth = (int)(10 * done / b->total);
    if (b->tty ? t - b->drawn < 0.1 : tenth == b->tenth || t - b->drawn < 30)
        return;
    b->drawn = t, b->tenth = tenth;
    char eta[32], ips[32];
    clock_time((double)(b->total - done) / rate, eta, sizeof eta);
    rt_grouped(rate, ips, sizeof ips);
    double loss = r->p.epoch_loss / (double)done;
    if (!b->tty) {
        fprintf(stderr, "  epoch %d/%d: %d%%, %s img/s, ETA %s, loss %.4f\n", e + 1, r->s.epochs, 10 * tenth,
                ips, eta, loss);
        return;
    }
    char bar[31];
    int fill = (int)(30 * done / b->total);
    for (int i = 0; i < 30; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[30] = 0;
    fprintf(stderr, "\r  epoch %d/%d [%s] %3d%%  %s img/s  ETA %s  loss %.4f\033[K", e + 1, r->s.epochs, bar,
            (int)(100 * done / b->total), ips, eta, loss);
    fflush(stderr);
}

static void bar_end(Run *r)
{
    if (r->lead && r->bar.tty && r->bar.drawn > r->bar.t0) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
    }
}

/* ---- the epoch ------------------------------------------------------------------- */

/* The test set's mean data loss and top-1 accuracy, in inference mode. */
static void evaluate(Run *r, double *loss, double *acc)
{
    const rt_net_desc *d = r->d;
    int64_t K = d->output_size, right = 0, lo, hi;
    int B = r->s.batch > 256 ? r->s.batch : 256;
    double sum = 0;
    rank_share(r, r->test.n, &lo, &hi);            /* each process its share, then the sums */
    for (int64_t start = lo; start < hi; start += B) {
        int n = (int)(hi - start < B ? hi - start : B);
        for (int i = 0; i < n; i++)
            r->perm[i] = start + i;
        rt_data_batch(&r->test, r->perm, n, rt_input_scale(d, r->test.u8 != NULL), r->x, r->y);
        rt_net_forward(r->net, n, r->x, r->out);
        for (int i = 0; i < n; i++) {
            const float *row = r->out + (size_t)i * (size_t)rt_out_stride(d);
            int64_t best = 0;
            for (int64_t k = 1; k < K; k++)
                best = row[k] > row[best] ? k : best;
            rt_probabilities(d, row, r->probs);
            sum += rt_example_loss(d, row, r->probs, r->y[i]);
            right += best == r->y[i];
        }
    }
    double total[2] = {sum, (double)right};
    if (r->dist)
        r->dist->sum_doubles(r->dist, total, 2);
    *loss = total[0] / (double)r->test.n;
    *acc = total[1] / (double)r->test.n;
}

/* Says the loss diverged and where; the exit status. */
static int diverged(Run *r, int e, int64_t b, float loss)
{
    bar_end(r);
    if (!r->lead)
        return 1;
    fprintf(stderr, "error: the loss diverged (%s) at epoch %d, step %lld; ",
            isnan(loss) ? "nan" : loss > 0 ? "inf" : "-inf", e + 1, (long long)b + 1);
    if (r->last_good)
        fprintf(stderr, "the last good checkpoint is %s\n", r->last_good);
    else
        fprintf(stderr, "there is no checkpoint yet (it diverged in the first epoch)\n");
    return 1;
}

/* Stops on a signal: a checkpoint of the state after the last step (unless
 * the epoch's own was just written), then where it stands. The exit status. */
static int interrupted(Run *r, bool written)
{
    bar_end(r);
    int sig = agreed_signal(r);
    if (!written && checkpoint(r))
        return 1;
    if (!r->lead)
        return 128 + sig;
    const Progress *p = &r->p;
    int64_t nb = (r->train.n + r->s.batch - 1) / r->s.batch;
    if (p->epoch_step)
        fprintf(stderr, "%s: interrupted in epoch %d after step %lld of %lld; wrote %s "
                "(--resume %s continues with the next step)\n", r->prog, p->epoch + 1,
                (long long)p->epoch_step, (long long)nb, r->s.save, r->s.save);
    else
        fprintf(stderr, "%s: interrupted after epoch %d; wrote %s (--resume %s continues with epoch %d)\n",
                r->prog, p->epoch, r->s.save, r->s.save, p->epoch + 1);
    return 128 + sig;
}

/* This process's share of the n examples from position `at` of the
 * epoch's order into x, y. */
static void copy_share(Run *r, int64_t at, int n, float *x, int32_t *y)
{
    int64_t lo, hi;
    rank_share(r, n, &lo, &hi);
    rt_data_batch(&r->train, r->perm + at + lo, (int)(hi - lo), rt_input_scale(r->d, r->train.u8 != NULL), x, y);
}

/* rt_net_train_shard's meanwhile: the next minibatch's share copied while
 * the step waits for its last sums (on TCP, ~27 us of LeNet's 32 examples
 * that would otherwise come after the wait). */
static void copy_next(void *ctx)
{
    Run *r = ctx;
    copy_share(r, r->next, r->next_n, r->x2, r->y2);
    r->ready = r->next;
}

/* One step on the n examples from position `at` of the epoch's order: this
 * process's share of them when there are several, the next n_next from
 * `at + n` (none: n_next = 0) copied during its wait (*stop in: this one was
 * asked to stop; out: one of them was). */
static float train_batch(Run *r, int64_t at, int n, int n_next, bool *stop)
{
    if (!r->dist) {
        copy_share(r, at, n, r->x, r->y);
        return rt_net_train_step(r->net, n, r->x, r->y);
    }
    if (r->ready != at)                           /* not copied during the last step */
        copy_share(r, at, n, r->x, r->y);
    r->ready = -1, r->next = at + n, r->next_n = n_next;
    int64_t lo, hi;
    rank_share(r, n, &lo, &hi);
    float loss = rt_net_train_shard(r->net, r->dist, n, lo, (int)(hi - lo), r->x, r->y, stop,
                                    n_next > 0 ? copy_next : NULL, r);
    if (r->ready == r->next) {                    /* the next share is in x2, y2 */
        float *x = r->x;
        int32_t *y = r->y;
        r->x = r->x2, r->y = r->y2, r->x2 = x, r->y2 = y;
    }
    return loss;
}

/* The minibatches of epoch e from the one the progress says; 0, -1 when
 * stopped by a signal, or an exit status. */
static int train_epoch(Run *r, int e)
{
    Progress *p = &r->p;
    int64_t N = r->train.n, B = r->s.batch, nb = (N + B - 1) / B;
    shuffle(r->perm, N, &p->rng);
    bar_start(r, p->epoch_step * B);
    for (int64_t b = p->epoch_step; b < nb; b++) {
        int n = (int)(N - b * B < B ? N - b * B : B);
        bool stop = stop_signal != 0;
        r->net->err[0] = 0;
        int n_next = b + 1 < nb ? (int)(N - (b + 1) * B < B ? N - (b + 1) * B : B) : 0;
        float loss = train_batch(r, b * B, n, n_next, &stop);
        if (r->net->err[0]) {
            bar_end(r);
            if (r->lead || strncmp(rt_net_error(r->net), "stopped:", 8) != 0)
                fprintf(stderr, "%s: %s\n", r->prog, rt_net_error(r->net));
            return 1;
        }
        if (!isfinite(loss))
            return diverged(r, e, b, loss);
        p->epoch_loss += (double)loss * n;
        p->epoch_step = b + 1;
        bar_update(r, e, b * B + n);
        if (stop && b + 1 < nb)
            return -1;
    }
    bar_end(r);
    return 0;
}

/* Prints, logs and plots a finished epoch. */
static void report_epoch(Run *r, const Epoch *h, double images_per_s)
{
    char ips[32];
    if (!r->lead)
        return;
    rt_grouped(images_per_s, ips, sizeof ips);
    printf("epoch %d/%d  train loss %.4f", r->p.epoch, r->s.epochs, h->train_loss);
    if (r->test.n)
        printf("  test loss %.4f  test acc %.2f%%", h->test_loss, 100 * h->test_acc);
    printf("  %.1f s  %s img/s\n", h->seconds, ips);
    fflush(stdout);
    if (r->o->log)
        log_epoch(r, h);
    if (r->o->plot)
        plot(r);
}

/* One epoch: train, evaluate, report, checkpoint. 0, or an exit status. */
static int epoch(Run *r, int e)
{
    Progress *p = &r->p;
    double t0 = now_s(), lr = scheduled_lr(r->d, r->s.lr, e, r->s.epochs);
    int64_t resumed_at = p->epoch_step * r->s.batch;
    rt_net_set_lr(r->net, (float)lr);
    int rc = train_epoch(r, e);
    if (rc)
        return rc < 0 ? interrupted(r, false) : rc;
    double t1 = now_s();
    Epoch h = {lr, p->epoch_loss / (double)r->train.n, NAN, NAN, 0};
    if (r->test.n)
        evaluate(r, &h.test_loss, &h.test_acc);
    h.seconds = now_s() - t0;
    p->hist[e] = h;
    p->epoch = e + 1, p->epoch_step = 0, p->epoch_loss = 0;
    epoch_rng(&p->rng, r->s.seed, p->epoch);
    report_epoch(r, &h, (double)(r->train.n - resumed_at) / (t1 - t0 > 1e-9 ? t1 - t0 : 1e-9));
    if (same_weights(r) || checkpoint(r))
        return 1;
    return agreed_signal(r) ? interrupted(r, true) : 0;
}

/* ---- the run ---------------------------------------------------------------------- */

/* The settings from the command line, else the descriptor (a checkpoint's
 * come in between, in read_resume). */
static void settings(Run *r)
{
    const rt_net_desc *d = r->d;
    const rt_train_opts *o = r->o;
    Settings *s = &r->s;
    s->lr = o->lr >= 0 ? o->lr : d->lr;
    s->momentum = o->momentum >= 0 ? o->momentum : d->momentum;
    s->batch = o->batch > 0 ? o->batch : d->batch > 0 ? (int)d->batch : 64;
    s->threads = o->threads > 0 ? o->threads : omp_get_max_threads();
    s->epochs = o->epochs >= 0 ? o->epochs : d->epochs > 0 ? (int)d->epochs : 10;
    s->seed = o->seed >= 0 ? (uint64_t)o->seed : (uint64_t)d->seed;
    snprintf(r->default_save, sizeof r->default_save, "%s.ckpt.safetensors", d->name);
    s->save = o->save ? o->save : r->default_save;
}

/* Fails early, before an epoch's work, if checkpoints cannot be written
 * where --save says. */
static int check_save_dir(const Run *r)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", r->s.save);
    char *slash = strrchr(dir, '/');
    if (!slash)
        strcpy(dir, ".");
    else
        slash[slash == dir] = 0;           /* "/x" keeps "/" */
    if (access(dir, W_OK | X_OK) == 0)
        return 0;
    fprintf(stderr, "%s: cannot write the checkpoint %s: %s: %s\n", r->prog, r->s.save, dir, strerror(errno));
    return 1;
}

/* The network, its buffers, and the state to start from. 0 or an exit status. */
static int prepare(Run *r, rt_tensors *ck)
{
    const rt_net_desc *d = r->d;
    int64_t B = r->s.batch > 256 ? r->s.batch : 256, N = r->train.n > B ? r->train.n : B;
    r->net = rt_net_new(d, r->s.seed);
    r->x = malloc(sizeof(float) * (size_t)(B * d->input_size));
    r->out = malloc(sizeof(float) * (size_t)(B * rt_out_stride(d)));
    r->y = malloc(sizeof(int32_t) * (size_t)B);
    r->ready = -1;
    if (r->dist) {                                /* the next minibatch's, copied meanwhile */
        r->x2 = malloc(sizeof(float) * (size_t)(B * d->input_size));
        r->y2 = malloc(sizeof(int32_t) * (size_t)B);
        if (!r->x2 || !r->y2)
            return fprintf(stderr, "%s: out of memory\n", r->prog), 1;
    }
    r->perm = malloc(sizeof(int64_t) * (size_t)N);
    r->probs = malloc(sizeof(double) * (size_t)d->output_size);
    if (!r->net || !r->x || !r->out || !r->y || !r->perm || !r->probs)
        return fprintf(stderr, "%s: out of memory\n", r->prog), 1;
    rt_net_set_threads(r->net, r->s.threads);
    r->net->sgd_momentum = (float)r->s.momentum;
    if (r->o->resume && restore(r, ck))
        return 1;
    if (!r->o->resume)
        epoch_rng(&r->p.rng, r->s.seed, 0);
    Progress *p = &r->p;
    int need = r->s.epochs > p->epoch ? r->s.epochs : p->epoch;
    Epoch *h = realloc(p->hist, sizeof *h * ((size_t)need + 1));
    if (!h)
        return fprintf(stderr, "%s: out of memory\n", r->prog), 1;
    p->hist = h, p->cap = need + 1;
    return r->o->log && r->lead ? start_log(r) : 0;
}

/* Reads the checkpoint to resume and the data, and makes the network. 0, or
 * an exit status after a message. */
static int setup(Run *r, rt_tensors *ck)
{
    int rc = r->o->resume ? read_resume(r, ck) : 0;
    if (!rc && r->lead)
        rc = check_save_dir(r);
    if (!rc)
        rc = load_data(r);
    if (!rc)
        rc = prepare(r, ck);
    return rc;
}

/* setup() on the lead first, then on the others, so that a mistake every
 * process makes (a missing file) is said once, by the lead; one that only
 * another process makes (its copy of the data) is said by that one, and the
 * lead says which. The same exit status on every process. */
static int setup_all(Run *r, rt_tensors *ck)
{
    int rc = agree(r, r->lead ? setup(r, ck) : 0);
    if (rc)
        return rc;
    int mine = r->lead ? 0 : setup(r, ck);
    int culprit = r->dist->max_int(r->dist, mine ? r->dist->rank : -1);
    if (culprit >= 0 && r->lead)
        fprintf(stderr, "%s: stopping: rank %d of %d failed to start (its message is above)\n", r->prog,
                culprit, r->dist->size);
    return agree(r, mine);
}

static void banner(const Run *r)
{
    char n[32], t[32];
    if (!r->lead)
        return;
    rt_grouped((double)r->train.n, n, sizeof n);
    rt_grouped((double)r->test.n, t, sizeof t);
    printf("training %s on %s examples (test %s): %d epoch%s, batch %d, lr %g (%s), momentum %g%s, "
           "%d thread%s, seed %llu\n", r->d->name, n, t, r->s.epochs, r->s.epochs == 1 ? "" : "s", r->s.batch, r->s.lr, schedule_name(r->d),
           r->s.momentum, r->d->nesterov ? " (nesterov)" : "", r->s.threads, r->s.threads == 1 ? "" : "s",
           (unsigned long long)r->s.seed);
    if (r->dist)
        printf("data-parallel over %d processes (MPI ranks), %d thread%s each\n", r->dist->size, r->s.threads,
               r->s.threads == 1 ? "" : "s");
    if (r->o->resume)
        printf("resuming from %s: %d epochs done, step %lld\n", r->o->resume, r->p.epoch,
               (long long)r->net->step);
    fflush(stdout);
}

/* The epochs, with SIGINT and SIGTERM caught between steps. */
static int loop(Run *r)
{
    struct sigaction sa = {0}, old_int, old_term;
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND;        /* a second Ctrl-C stops at once */
    sigemptyset(&sa.sa_mask);
    stop_signal = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    r->bar.tty = isatty(STDERR_FILENO);
    int rc = 0;
    for (int e = r->p.epoch; e < r->s.epochs && !rc; e++)
        rc = epoch(r, e);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    return rc;
}

static int finish(Run *r)
{
    if (!r->test.n)
        return 0;
    double loss, acc;
    if (r->p.epoch > 0 && isfinite(r->p.hist[r->p.epoch - 1].test_acc) && r->p.epoch_step == 0)
        acc = r->p.hist[r->p.epoch - 1].test_acc;
    else
        evaluate(r, &loss, &acc);
    if (r->lead)
        printf("test accuracy: %.2f%%\n", 100 * acc);
    return 0;
}

int rt_train(const rt_net_desc *d, const rt_train_opts *o, const char *prog)
{
    Run r = {.d = d, .o = o, .prog = prog};
    rt_tensors ck = {0};
    if (!d->train) {
        fprintf(stderr, "%s: network '%s' has no training code (it has no loss)\n", prog, d->name);
        return 1;
    }
    if (d->label_kind != RT_LABELS_CLASS) {
        fprintf(stderr, "%s: network '%s' learns target values (mse); the data loaders read class labels "
                "only, so it cannot be trained from the command line yet (use the C API)\n", prog, d->name);
        return 1;
    }
    r.dist = o->dist && o->dist->size > 1 ? o->dist : NULL;
    r.lead = !r.dist || r.dist->rank == 0;
    settings(&r);
    int rc = r.dist ? setup_all(&r, &ck) : setup(&r, &ck);
    rt_st_free(&ck);
    if (!rc) {
        banner(&r);
        rc = loop(&r);
    }
    if (!rc)
        rc = finish(&r);
    rt_net_free(r.net);
    rt_data_free(&r.train), rt_data_free(&r.test);
    free(r.x), free(r.out), free(r.y), free(r.x2), free(r.y2), free(r.perm), free(r.probs), free(r.p.hist);
    return rc;
}
