/* main.c: the generated program's commands.
 *   NAME info | predict | eval | bench | forward | train
 * Exit status: 0 success, 1 an error in the user's files, 2 a bad command line.
 */
#include "cnnrt.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Options shared by the commands; each command reads the ones it takes. */
typedef struct {
    const char *weights, *save, *resume, *log, *plot;
    const char *train_images, *train_labels, *test_images, *test_labels;   /* labels NULL: CSV */
    const char *schedule, *nesterov;
    double weight_decay, scale;
    bool has_weight_decay, has_scale;
    double seconds;               /* bench: per measure; 0: the default */
    int batch, threads, epochs;
    double lr, momentum;
    int64_t seed;
    bool has_seed, has_epochs, has_lr, has_momentum;
    int nfiles;
    char **files;
    /* predict: overrides of the data block, and --dump-input */
    const char *classes, *dump_input;
    int resize, crop;             /* -1: not given */
    int nmean, nstd;              /* values given (0: not given) */
    double mean[3], std[3];
    const rt_dist *dist;          /* train's processes (rt_main_dist); NULL: one */
} Opts;

static const char *prog;

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "%s: ", prog);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry '%s help'.\n", prog);
    return 2;
}

static void help(const rt_net_desc *d)
{
    printf("usage: %s COMMAND [options]   (network %s, built by cnnc %s)\n\n"
           "  train   [--epochs N] [--lr X] [--momentum M] [--batch B] [--threads T] [--seed S]\n"
           "          [--nesterov true|false] [--weight-decay W] [--scale S]\n"
           "          [--schedule constant|cosine|step:EVERY:FACTOR|exp:GAMMA]\n"
           "          [--train IMAGES LABELS | --train FILE.csv] [--test IMAGES LABELS | --test FILE.csv]\n"
           "          [--save FILE] [--resume CKPT] [--log metrics.csv] [--plot curves.svg]\n"
           "  eval    [--weights W] [--test IMAGES LABELS | --test FILE.csv] [--scale S] [--batch B] [--threads T]\n"
           "  predict [--weights W] [--scale S] [--resize N] [--crop N] [--mean M[,M,M]] [--std S[,S,S]]\n"
           "          [--classes NAMES.txt] [--dump-input X.safetensors] FILE...\n"
           "          top-5 classes of JPEG, PNG, PGM/PPM or IDX images\n"
           "  forward [--weights W] IN OUT    outputs for the tensor 'x' of IN (safetensors)\n"
           "  bench   [--batch B] [--threads T] [--seconds S]\n"
           "  info    the layer table and the memory a training step takes\n",
           prog, d->name, d->version);
}

static bool whole(const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static bool is_csv(const char *path)
{
    size_t n = strlen(path);
    return n > 4 && strcasecmp(path + n - 4, ".csv") == 0;
}

/* --mean / --std: one number, or three separated by commas; the count, or 0. */
static int number_list(const char *v, double out[3], bool nonzero)
{
    int n = 0;
    for (const char *p = v;; n++) {
        char *end;
        double x = strtod(p, &end);
        if (n == 3 || end == p || !isfinite(x) || (nonzero && x == 0) || (*end && *end != ','))
            return 0;
        out[n] = x;
        if (!*end)
            return n == 0 || n == 2 ? n + 1 : 0;
        p = end + 1;
    }
}

/* The options of predict; 1 if a is one of them (then v was used), -1
 * after a usage error (its exit status in *rc). */
static int parse_predict(const char *a, const char *v, Opts *o, int *rc)
{
    long long n;
    if (strcmp(a, "--classes") == 0)           o->classes = v;
    else if (strcmp(a, "--dump-input") == 0)   o->dump_input = v;
    else if (strcmp(a, "--resize") == 0 || strcmp(a, "--crop") == 0) {
        if (!whole(v, 0, 16384, &n))
            return *rc = usage_error(a[2] == 'r' ? "--resize needs a whole number from 0 (none) to 16384, not '%s'"
                                                 : "--crop needs a whole number from 0 (none) to 16384, not '%s'", v), -1;
        *(a[2] == 'r' ? &o->resize : &o->crop) = (int)n;
    } else if (strcmp(a, "--mean") == 0 || strcmp(a, "--std") == 0) {
        bool std = a[2] == 's';
        int k = number_list(v, std ? o->std : o->mean, std);
        if (!k)
            return *rc = usage_error(std ? "--std needs one number or three, comma-separated, none 0, not '%s'"
                                         : "--mean needs one number or three, comma-separated, not '%s'", v), -1;
        *(std ? &o->nstd : &o->nmean) = k;
    } else
        return 0;
    return 1;
}

/* Reads "--flag VALUE" pairs and positional files; 0, or an exit status. */
static int parse(int argc, char **argv, Opts *o)
{
    o->files = calloc((size_t)argc + 1, sizeof(char *));
    o->resize = o->crop = -1;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long n;
        if (a[0] != '-' || !a[1]) {
            o->files[o->nfiles++] = argv[i];
            continue;
        }
        bool two = (strcmp(a, "--train") == 0 || strcmp(a, "--test") == 0) && v && !is_csv(v);
        if (!v || (two && i + 2 >= argc))
            return usage_error("%s needs a value", a);
        int rc = 0, took = parse_predict(a, v, o, &rc);
        if (took < 0)
            return rc;
        if (took)                              ;
        else if (strcmp(a, "--weights") == 0)  o->weights = v;
        else if (strcmp(a, "--save") == 0)     o->save = v;
        else if (strcmp(a, "--resume") == 0)   o->resume = v;
        else if (strcmp(a, "--log") == 0)      o->log = v;
        else if (strcmp(a, "--plot") == 0)     o->plot = v;
        else if (strcmp(a, "--train") == 0)    o->train_images = v, o->train_labels = two ? argv[++i + 1] : NULL;
        else if (strcmp(a, "--test") == 0)     o->test_images = v, o->test_labels = two ? argv[++i + 1] : NULL;
        else if (strcmp(a, "--schedule") == 0) o->schedule = v;
        else if (strcmp(a, "--nesterov") == 0) o->nesterov = v;
        else if (strcmp(a, "--weight-decay") == 0 || strcmp(a, "--scale") == 0) {
            char *end;
            double x = strtod(v, &end);
            bool wd = a[2] == 'w';
            if (end == v || *end || !isfinite(x) || (wd && x < 0) || (!wd && x == 0))
                return usage_error(wd ? "--weight-decay needs a number >= 0, not '%s'"
                                      : "--scale needs a number other than 0, not '%s'", v);
            if (wd)
                o->weight_decay = x, o->has_weight_decay = true;
            else
                o->scale = x, o->has_scale = true;
        }
        else if (strcmp(a, "--seconds") == 0) {
            char *end;
            o->seconds = strtod(v, &end);
            if (end == v || *end || !(o->seconds > 0 && o->seconds <= 86400))
                return usage_error("--seconds needs a number of seconds above 0 and at most 86400, not '%s'", v);
        }
        else if (strcmp(a, "--batch") == 0)    { if (!whole(v, 1, 65536, &n)) return usage_error("--batch needs a whole number from 1 to 65536, not '%s'", v); o->batch = (int)n; }
        else if (strcmp(a, "--threads") == 0)  { if (!whole(v, 1, 1024, &n)) return usage_error("--threads needs a whole number from 1 to 1024, not '%s'", v); o->threads = (int)n; }
        else if (strcmp(a, "--epochs") == 0)   { if (!whole(v, 0, 1000000, &n)) return usage_error("--epochs needs a whole number from 0 to 1000000, not '%s'", v); o->epochs = (int)n, o->has_epochs = true; }
        else if (strcmp(a, "--seed") == 0)     { if (!whole(v, 0, INT64_MAX, &n)) return usage_error("--seed needs a whole number, not '%s'", v); o->seed = n, o->has_seed = true; }
        else if (strcmp(a, "--lr") == 0) {
            char *end;
            o->lr = strtod(v, &end), o->has_lr = true;
            if (end == v || *end || !(o->lr >= 0) || !isfinite(o->lr))
                return usage_error("--lr needs a number >= 0, not '%s'", v);
        } else if (strcmp(a, "--momentum") == 0) {
            char *end;
            o->momentum = strtod(v, &end), o->has_momentum = true;
            if (end == v || *end || !(o->momentum >= 0 && o->momentum < 1))
                return usage_error("--momentum needs a number in [0, 1), not '%s'", v);
        } else
            return usage_error("unknown option '%s'", a);
        i++;
    }
    return 0;
}

/* A network with weights from --weights, if given. NULL after a message. */
static rt_net *open_net(const rt_net_desc *d, const Opts *o)
{
    rt_net *net = rt_net_new(d, (uint64_t)d->seed);
    if (!net) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return NULL;
    }
    if (o->threads)
        rt_net_set_threads(net, o->threads);
    if (o->weights && rt_net_load(net, o->weights)) {
        fprintf(stderr, "%s: %s\n", prog, rt_net_error(net));
        rt_net_free(net);
        return NULL;
    }
    if (!o->weights && d->nparams > 0 && !rt_desc_builtin(d))   /* nothing to train, or built in: no note */
        fprintf(stderr, "%s: note: no --weights given; using the initial (untrained) parameters\n", prog);
    return net;
}

/* ---- scores --------------------------------------------------------------- */

/* Probabilities of one output row: the row itself if the network ends in a
 * softmax, otherwise softmax(row). */
void rt_probabilities(const rt_net_desc *d, const float *row, double *p)
{
    int64_t k = d->output_size;
    if (d->output_probs) {
        for (int64_t i = 0; i < k; i++)
            p[i] = row[i];
        return;
    }
    double m = -INFINITY, s = 0;
    for (int64_t i = 0; i < k; i++)
        m = row[i] > m ? row[i] : m;
    for (int64_t i = 0; i < k; i++)
        s += p[i] = exp(row[i] - m);
    for (int64_t i = 0; i < k; i++)
        p[i] /= s;
}

/* The indices of the `top` largest of p[0..k), largest first. */
static int top_k(const double *p, int64_t k, int top, int *idx)
{
    int n = 0;
    for (; n < top && n < k; n++) {
        int64_t best = -1;
        for (int64_t i = 0; i < k; i++) {
            bool taken = false;
            for (int j = 0; j < n; j++)
                taken |= idx[j] == i;
            if (!taken && (best < 0 || p[i] > p[best]))
                best = i;
        }
        idx[n] = (int)best;
    }
    return n;
}

/* ---- commands ------------------------------------------------------------- */

static int cmd_info(const rt_net_desc *d)
{
    fputs(d->summary, stdout);
    printf("\nparameters (safetensors names, PyTorch layouts):\n");
    int width = 28;                                   /* the names' column: the longest */
    for (int i = 0; i < d->nparams; i++)
        width = (int)strlen(d->params[i].name) > width ? (int)strlen(d->params[i].name) : width;
    for (int i = 0; i < d->nparams; i++) {
        const rt_param_desc *p = &d->params[i];
        printf("  %-*s [", width, p->name);
        for (int k = 0; k < p->rank; k++)
            printf(k ? ", %lld" : "%lld", (long long)p->dims[k]);
        printf("]%s\n", p->flags & RT_PARAM_BUFFER ? "  (buffer)" : "");
    }
    bool typed = false;
    for (int64_t k = 0; k < d->noutputs; k++)
        typed |= d->outputs[k].dtype != RT_F32;
    if (d->noutputs > 1 || typed) {                   /* several outputs, or not float: forward's tensors */
        static const char *const types[] = {"F32", "U8", "I8", "BOOL", "I64"};
        printf("\noutputs (forward's tensors, per example):\n");
        for (int64_t k = 0; k < d->noutputs; k++) {
            const rt_output_desc *od = &d->outputs[k];
            printf("  %-28s [", od->name);
            for (int j = 0; j < od->rank; j++)
                printf(j ? ", %lld" : "%lld", (long long)od->dims[j]);
            printf("]  %s\n", od->dtype >= RT_F32 && od->dtype <= RT_I64 ? types[od->dtype] : "?");
        }
    }
    if (rt_desc_builtin(d))
        printf("\nweights: built into the program; predict, eval and forward use them unless given\n"
               "--weights, and train starts from them\n");
    return 0;
}

/* The preprocessing of predict: the data block's, with the command line's
 * overrides. 0, or an exit status after a message. */
static int predict_prep(const rt_net_desc *d, const Opts *o, rt_prep *p)
{
    int c = d->input_rank == 3 ? (int)d->input_dims[0] : d->input_rank == 2 ? 1 : 0;
    *p = (rt_prep){.resize = (int)d->resize, .crop = (int)d->crop, .scale = rt_input_scale(d, true)};
    for (int k = 0; k < 3; k++) {
        p->mean[k] = (float)(o->nmean ? o->mean[o->nmean == 1 ? 0 : k] : d->mean[k]);
        p->std[k] = (float)(o->nstd ? o->std[o->nstd == 1 ? 0 : k] : d->std[k]);
    }
    if (o->resize >= 0)
        p->resize = o->resize;
    if (o->crop >= 0)
        p->crop = o->crop;
    if ((c == 1 || c > 3) && (o->nmean == 3 || o->nstd == 3))
        return usage_error("%s", "this network's input has other than 3 channels: --mean and --std take one value");
    return 0;
}

/* The class names: --classes, else the program's own (from the data block),
 * else none (c->n == 0). 0, or 1 after a message. */
static int predict_classes(const rt_net_desc *d, const Opts *o, rt_classes *c)
{
    rt_err err = {{0}};
    memset(c, 0, sizeof *c);
    int r = o->classes ? rt_classes_read(o->classes, d->output_size, c, &err)
            : d->classes ? rt_classes_parse(d->classes, strlen(d->classes), d->output_size,
                                            "the program's class names", c, &err)
                         : 0;
    if (r)
        fprintf(stderr, "%s: %s\n", prog, err.msg);
    return r ? 1 : 0;
}

/* Image f of the command line as the input x; 0, or 1 after a message. */
static int predict_input(const rt_net_desc *d, const rt_prep *p, const char *path, float *x)
{
    rt_image img;
    rt_err err = {{0}};
    int r = rt_image_read(path, 0, &img, &err) ||
            rt_image_prepare(&img, p, (int)d->input_rank, d->input_dims, x, path, &err);
    if (r)
        fprintf(stderr, "%s: %s\n", prog, err.msg);
    rt_image_free(&img);
    return r ? 1 : 0;
}

/* --dump-input: the n inputs as the tensor "x" [n, input dims...], which
 * `forward` takes. */
static int dump_inputs(const rt_net_desc *d, const char *path, int n, float *x)
{
    rt_tensor t = {.name = "x", .rank = 1 + (int)d->input_rank, .count = n * d->input_size, .data = x};
    t.dims[0] = n;
    for (int k = 0; k < d->input_rank; k++)
        t.dims[k + 1] = d->input_dims[k];
    rt_err err = {{0}};
    if (rt_st_write(path, 1, &t, 0, NULL, NULL, &err)) {
        fprintf(stderr, "%s: %s\n", prog, err.msg);
        return 1;
    }
    return 0;
}

static void print_top5(const rt_net_desc *d, const char *path, const double *p, const rt_classes *c)
{
    int idx[5], n = top_k(p, d->output_size, 5, idx);
    printf("%s:\n", path);
    for (int i = 0; i < n; i++)
        printf(c->n ? "  class %-4d %7.4f  %s\n" : "  class %-4d %7.4f\n", idx[i], p[idx[i]],
               c->n ? c->name[idx[i]] : "");
}

static int cmd_predict(const rt_net_desc *d, const Opts *o)
{
    if (o->nfiles == 0)
        return usage_error("%s", "predict needs at least one image file");
    if (d->input_rank == 0)
        return usage_error("%s", "this network's input is not an image");
    rt_prep prep;
    rt_classes names;
    int rc = predict_prep(d, o, &prep);
    if (rc || (rc = predict_classes(d, o, &names)))
        return rc;
    rt_net *net = open_net(d, o);
    if (!net) {
        rt_classes_free(&names);
        return 1;
    }
    size_t nx = o->dump_input ? (size_t)o->nfiles : 1;
    float *xs = malloc(sizeof(float) * nx * (size_t)d->input_size), *out = malloc(sizeof(float) * (size_t)rt_out_stride(d));
    double *p = malloc(sizeof(double) * (size_t)d->output_size);
    for (int f = 0; f < o->nfiles && !rc; f++) {
        float *x = xs + (o->dump_input ? (size_t)f * (size_t)d->input_size : 0);
        if ((rc = predict_input(d, &prep, o->files[f], x)))
            break;
        rt_net_forward(net, 1, x, out);
        rt_probabilities(d, out, p);
        print_top5(d, o->files[f], p, &names);
    }
    if (!rc && o->dump_input)
        rc = dump_inputs(d, o->dump_input, o->nfiles, xs);
    free(xs), free(out), free(p);
    rt_classes_free(&names);
    rt_net_free(net);
    return rc;
}

/* The test set from --test or the .cnn's data block; 0 or an exit status. */
static int load_test(const rt_net_desc *d, const Opts *o, rt_data *data)
{
    rt_err err = {{0}};
    int rc;
    if (o->test_images && !o->test_labels)
        rc = rt_csv_load(o->test_images, 0, d->input_size, data, &err);
    else if (o->test_images)
        rc = rt_idx_load(o->test_images, o->test_labels, data, &err);
    else if (d->test_set.kind == RT_DATA_IDX)
        rc = rt_idx_load(d->test_set.path, d->test_set.labels, data, &err);
    else if (d->test_set.kind == RT_DATA_CSV)
        rc = rt_csv_load(d->test_set.path, (int)d->test_set.label_col, d->input_size, data, &err);
    else
        return usage_error("%s", "no test data: give --test IMAGES LABELS or a data { test = ... } block");
    if (!rc && data->dim != d->input_size)
        rc = rt_fail(&err, "%s: examples have %lld values but the network's input has %lld",
                     o->test_images ? o->test_images : d->test_set.path, (long long)data->dim, (long long)d->input_size);
    if (!rc && d->label_kind == RT_LABELS_CLASS)
        rc = rt_data_check_labels(data, (int)d->nclasses, &err);
    if (rc) {
        fprintf(stderr, "%s: %s\n", prog, err.msg);
        rt_data_free(data);
        return 1;
    }
    return 0;
}

/* The data term of the loss for one example, in inference mode. */
double rt_example_loss(const rt_net_desc *d, const float *row, const double *p, int32_t y)
{
    if (d->loss_kind == RT_LOSS_HINGE) {
        double s = 0;
        for (int64_t j = 0; j < d->output_size; j++)
            if (j != y)
                s += fmax(0, row[j] - row[y] + d->margin);
        return s;
    }
    return -log(fmax(p[y], 1e-30));
}

static int cmd_eval(const rt_net_desc *d, const Opts *o)
{
    if (d->label_kind != RT_LABELS_CLASS)
        return usage_error("%s", "eval reports accuracy, and this network has no class labels");
    rt_data data;
    int rc = load_test(d, o, &data);
    if (rc)
        return rc;
    rt_net *net = open_net(d, o);
    if (!net) {
        rt_data_free(&data);
        return 1;
    }
    int B = o->batch ? o->batch : 256, K = (int)d->nclasses;
    size_t S = (size_t)rt_out_stride(d);           /* an example's row: its outputs, the first the scores */
    float *x = malloc(sizeof(float) * (size_t)(B * d->input_size)), *out = malloc(sizeof(float) * (size_t)B * S);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)B);
    int64_t *rows = malloc(sizeof(int64_t) * (size_t)B), *confusion = calloc((size_t)(K * K), sizeof(int64_t));
    double *p = malloc(sizeof(double) * (size_t)K), loss = 0;
    int64_t top1 = 0, top5 = 0;
    for (int64_t start = 0; start < data.n; start += B) {
        int n = (int)(data.n - start < B ? data.n - start : B);
        for (int i = 0; i < n; i++)
            rows[i] = start + i;
        rt_data_batch(&data, rows, n, rt_input_scale(d, data.u8 != NULL), x, y);
        rt_net_forward(net, n, x, out);
        for (int i = 0; i < n; i++) {
            rt_probabilities(d, out + (size_t)i * S, p);
            int idx[5], m = top_k(p, K, 5, idx);
            loss += rt_example_loss(d, out + (size_t)i * S, p, y[i]);
            top1 += idx[0] == y[i];
            for (int j = 0; j < m; j++)
                top5 += idx[j] == y[i];
            confusion[y[i] * K + idx[0]]++;
        }
    }
    printf("test examples: %lld\nloss:  %.4f\ntop-1: %.2f%%\ntop-5: %.2f%%\n", (long long)data.n,
           loss / (double)data.n, 100.0 * (double)top1 / (double)data.n, 100.0 * (double)top5 / (double)data.n);
    printf("\nconfusion matrix (rows: true class, columns: predicted)\n      ");
    for (int j = 0; j < K; j++)
        printf("%6d", j);
    for (int i = 0; i < K; i++) {
        printf("\n%6d", i);
        for (int j = 0; j < K; j++)
            printf("%6lld", (long long)confusion[i * K + j]);
    }
    printf("\n");
    free(x), free(out), free(y), free(rows), free(confusion), free(p);
    rt_net_free(net);
    rt_data_free(&data);
    return 0;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* One measure of bench: a forward call or a training step at batch n. */
typedef struct {
    rt_net *net;
    int n;
    const float *x;
    float *out;              /* forward */
    const int32_t *y;        /* training step */
} Call;

/* false after a failure (out of memory), with rt_net_error; a training
 * step whose loss is not finite is no failure here. */
static bool run(const Call *c)
{
    c->net->err[0] = 0;
    if (c->y)
        rt_net_train_step(c->net, c->n, c->x, c->y);
    else
        rt_net_forward(c->net, c->n, c->x, c->out);
    return c->net->err[0] == 0;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median time of c in seconds: a warm-up call (it allocates the
 * workspace), then timed calls until `seconds` have passed, at least one.
 * A negative number after a failure. *prof: the timed calls' profile
 * (cnnc --profile), for rt_prof_end. */
static double measure(const Call *c, double seconds, rt_prof_calls **prof)
{
    *prof = NULL;
    if (!run(c))
        return -1;
    *prof = rt_prof_begin(c->net->d);           /* --profile: the timed calls alone */
    int n = 0, cap = 64;
    double *t = malloc(sizeof *t * (size_t)cap), start = now_s();
    while (t && (n == 0 || now_s() - start < seconds)) {
        if (n == cap) {
            double *more = realloc(t, sizeof *t * (size_t)(cap *= 2));
            if (!more)
                break;
            t = more;
        }
        double t0 = now_s();
        if (!run(c)) {
            n = 0;
            break;
        }
        t[n++] = now_s() - t0;
        rt_prof_call(*prof, t[n - 1]);
    }
    double med = -1;
    if (n) {
        qsort(t, (size_t)n, sizeof *t, by_value);
        med = t[n / 2];
    }
    free(t);
    return med;
}

/* Prints one result line at once: a big network takes a while per measure. */
static void report(const char *fmt, double v)
{
    printf(fmt, v);
    fflush(stdout);
}

static int bench_failed(rt_net *net, float *x, float *out, int32_t *y)
{
    if (net && x && out && y)
        fprintf(stderr, "%s: %s\n", prog, rt_net_error(net));
    else
        fprintf(stderr, "%s: out of memory\n", prog);
    free(x), free(out), free(y);
    rt_net_free(net);
    return 1;
}

/* bench: forward latency at batch 1, forward throughput and training steps
 * at batch B (--batch, else train { batch }, else 64), each measured for
 * about --seconds (default 2), then the memory the network holds. */
static int cmd_bench(const rt_net_desc *d, const Opts *o)
{
    int B = o->batch ? o->batch : d->batch > 0 ? (int)d->batch : 64;
    double S = o->seconds > 0 ? o->seconds : 2;
    rt_net *net = rt_net_new(d, (uint64_t)d->seed);
    float *x = malloc(sizeof(float) * (size_t)B * (size_t)d->input_size);
    float *out = malloc(sizeof(float) * (size_t)B * (size_t)rt_out_stride(d));
    int32_t *y = malloc(sizeof(int32_t) * (size_t)B);
    if (!net || !x || !out || !y)
        return bench_failed(net, x, out, y);
    if (o->threads)
        rt_net_set_threads(net, o->threads);
    rt_rng r;
    rt_rng_seed(&r, 7);
    for (int64_t i = 0; i < B * d->input_size; i++)
        x[i] = (float)rt_rng_uniform(&r);
    printf("network %s, %d thread%s, about %g s per measure\n", d->name, net->threads, net->threads == 1 ? "" : "s", S);
    fflush(stdout);
    rt_prof_calls *prof = NULL;
    double t = measure(&(Call){net, 1, x, out, NULL}, S, &prof);
    if (t < 0)
        return rt_prof_end(prof, NULL), bench_failed(net, x, out, y);
    report("forward latency, batch 1:      %10.1f us\n", t * 1e6);
    rt_prof_end(prof, "the forward call at batch 1");
    if ((t = measure(&(Call){net, B, x, out, NULL}, S, &prof)) < 0)
        return rt_prof_end(prof, NULL), bench_failed(net, x, out, y);
    printf("forward throughput, batch %-4d", B);
    report(" %10.0f images/s\n", B / t);
    rt_prof_end(prof, "the forward call at this batch");
    if (d->train && d->label_kind == RT_LABELS_CLASS) {   /* random labels, learning rate 0 */
        for (int i = 0; i < B; i++)
            y[i] = (int32_t)(rt_rng_next(&r) % (uint64_t)d->nclasses);
        rt_net_set_lr(net, 0);                         /* keep the weights as they are */
        if ((t = measure(&(Call){net, B, x, NULL, y}, S, &prof)) < 0)
            return rt_prof_end(prof, NULL), bench_failed(net, x, out, y);
        printf("training step, batch %-4d     ", B);
        report(" %10.0f images/s\n", B / t);
        rt_prof_end(prof, "the training kernel at this batch");
    }
    char bytes[32];
    printf("memory held:                   %10.1f MiB   %s bytes: parameters, gradients, momentum, workspaces\n",
           (double)rt_net_bytes(net) / (1024.0 * 1024.0), rt_grouped((double)rt_net_bytes(net), bytes, sizeof bytes));
    free(x), free(out), free(y);
    rt_net_free(net);
    return 0;
}

/* forward: the outputs for the tensor "x" of a safetensors file (F32, or an
 * integer or boolean dtype, converted to float): one tensor per output, [n,
 * ...] of its dtype, named as the network names it ("out" for a lone one). */
static int cmd_forward(const rt_net_desc *d, const Opts *o)
{
    if (o->nfiles != 2)
        return usage_error("%s", "forward needs IN.safetensors and OUT.safetensors");
    rt_tensors in;
    rt_err err = {{0}};
    if (rt_st_read(o->files[0], &in, &err)) {
        fprintf(stderr, "%s: %s\n", prog, err.msg);
        return 1;
    }
    const rt_tensor *x = rt_st_find_values(&in, "x");
    if (!x || x->rank < 1 || x->dims[0] < 1 || x->count != x->dims[0] * d->input_size || x->dims[0] > INT32_MAX) {
        fprintf(stderr, "%s: %s: needs a tensor 'x' of shape [n, ...] with %lld values per example\n", prog,
                o->files[0], (long long)d->input_size);
        rt_st_free(&in);
        return 1;
    }
    rt_net *net = open_net(d, o);
    int rc = 1;
    int64_t n = x->dims[0], S = rt_out_stride(d), K = d->noutputs ? d->noutputs : 1;
    rt_output_desc lone = {.name = "out", .rank = d->output_rank, .size = d->output_size};
    memcpy(lone.dims, d->output_dims, sizeof lone.dims);
    float *rows = net ? malloc(sizeof(float) * (size_t)(n * S)) : NULL;
    rt_tensor *outs = rows ? calloc((size_t)K, sizeof *outs) : NULL;
    if (outs) {
        rt_net_forward(net, (int)n, x->data, rows);
        for (int64_t k = 0; k < K && outs; k++) {          /* each output's part of the rows */
            const rt_output_desc *od = d->noutputs ? &d->outputs[k] : &lone;
            rt_tensor *t = &outs[k];
            t->name = (char *)od->name, t->rank = 1 + (int)od->rank, t->count = n * od->size;
            t->dtype = (int)od->dtype, t->dims[0] = n, t->index_step = od->index_step;
            for (int j = 0; j < od->rank; j++)
                t->dims[j + 1] = od->dims[j];
            t->data = malloc(sizeof(float) * (size_t)(t->count ? t->count : 1));
            for (int64_t b = 0; t->data && b < n; b++)
                memcpy(t->data + b * od->size, rows + b * S + od->offset, sizeof(float) * (size_t)od->size);
        }
        bool fits = true;
        for (int64_t k = 0; k < K; k++)
            fits = fits && outs[k].data;
        rc = !fits || rt_st_write(o->files[1], (int)K, outs, 0, NULL, NULL, &err) ? 1 : 0;
        if (rc)
            fprintf(stderr, "%s: %s\n", prog, fits ? err.msg : "out of memory");
        for (int64_t k = 0; k < K; k++)
            free(outs[k].data);
    } else if (net)
        fprintf(stderr, "%s: out of memory\n", prog);
    free(outs), free(rows);
    rt_net_free(net);
    rt_st_free(&in);
    return rc;
}

/* --schedule constant | cosine | step:EVERY:FACTOR | exp:GAMMA */
static int parse_schedule(const char *v, rt_net_desc *d)
{
    double a = 0, b = 0;
    char tail;
    if (strcmp(v, "constant") == 0)
        d->schedule = RT_SCHED_CONSTANT;
    else if (strcmp(v, "cosine") == 0)
        d->schedule = RT_SCHED_COSINE;
    else if (sscanf(v, "step:%lf:%lf%c", &a, &b, &tail) == 2 && a >= 1 && a == floor(a) && b >= 0)
        d->schedule = RT_SCHED_STEP, d->step_every = (int64_t)a, d->step_factor = b;
    else if (sscanf(v, "exp:%lf%c", &a, &tail) == 1 && a >= 0)
        d->schedule = RT_SCHED_EXP, d->exp_gamma = a;
    else
        return usage_error("--schedule takes constant, cosine, step:EVERY:FACTOR or exp:GAMMA, not '%s'", v);
    return 0;
}

/* The settings of the .cnn that the command line overrides, in a copy of
 * the descriptor. 0, or an exit status. */
static int override(const Opts *o, rt_net_desc *d)
{
    if (o->has_weight_decay)
        d->weight_decay = o->weight_decay;
    if (o->has_scale)
        d->scale = o->scale;
    if (o->nesterov && strcmp(o->nesterov, "true") && strcmp(o->nesterov, "false"))
        return usage_error("--nesterov takes true or false, not '%s'", o->nesterov);
    if (o->nesterov)
        d->nesterov = strcmp(o->nesterov, "true") == 0;
    return o->schedule ? parse_schedule(o->schedule, d) : 0;
}

static int cmd_train(const rt_net_desc *d, const Opts *o)
{
    if (o->nfiles)
        return usage_error("train takes no file arguments, not '%s'", o->files[0]);
    rt_train_opts t = {
        .train_images = o->train_images, .train_labels = o->train_labels,
        .test_images = o->test_images, .test_labels = o->test_labels,
        .save = o->save, .resume = o->resume, .log = o->log, .plot = o->plot,
        .epochs = o->has_epochs ? o->epochs : -1, .batch = o->batch, .threads = o->threads,
        .lr = o->has_lr ? o->lr : -1, .momentum = o->has_momentum ? o->momentum : -1,
        .seed = o->has_seed ? o->seed : -1, .dist = o->dist,
    };
    return rt_train(d, &t, prog);
}

int rt_main(const rt_net_desc *d, int argc, char **argv)
{
    return rt_main_dist(d, NULL, argc, argv);
}

int rt_main_dist(const rt_net_desc *d, const rt_dist *dist, int argc, char **argv)
{
    prog = argc > 0 ? argv[0] : d->name;
    if (d->magic != RT_DESC_MAGIC) {
        fprintf(stderr, "%s: built against another version of the cnnc runtime\n", prog);
        return 1;
    }
    if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0) {
        help(d);
        return argc < 2 ? 2 : 0;
    }
    Opts o = {.dist = dist};
    rt_net_desc local = *d;
    int rc = parse(argc, argv, &o);
    if (!rc)
        rc = override(&o, &local);
    d = &local;
    const char *cmd = argv[1];
    if (rc)
        ;
    else if (strcmp(cmd, "info") == 0)    rc = cmd_info(d);
    else if (strcmp(cmd, "predict") == 0) rc = cmd_predict(d, &o);
    else if (strcmp(cmd, "eval") == 0)    rc = cmd_eval(d, &o);
    else if (strcmp(cmd, "bench") == 0)   rc = cmd_bench(d, &o);
    else if (strcmp(cmd, "forward") == 0) rc = cmd_forward(d, &o);
    else if (strcmp(cmd, "train") == 0)   rc = cmd_train(d, &o);
    else rc = usage_error("unknown command '%s'", cmd);
    free(o.files);
    return rc;
}
