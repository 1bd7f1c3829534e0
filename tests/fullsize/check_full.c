/* check_full.c: checks one compiled full-size network against torchvision.
 *
 * Built once per network and build with -DNET=name -DUPPER=NAME, including the generated
 * NET.h and linking libNET.a (tests/fullsize/run.sh). Usage:
 *   check_full names              every parameter and buffer, in order, as
 *                                 "name d0,d1,..." (gen.py maps torchvision's
 *                                 state_dict onto these)
 *   check_full forward W IO       NET_forward on x, against out
 *   check_full train W IO         NET_loss_grad on x, y: the loss, every
 *                                 gradient grad.<name>, and batchnorm's
 *                                 buffers after the step (after.<name>);
 *                                 a gradient zero in exact arithmetic comes
 *                                 with gscale.<name>, the magnitude its error
 *                                 is relative to (its layer's largest entry);
 *                                 where PyTorch's own float32 gradients miss
 *                                 1e-3, tol is the bound (4 times their worst
 *                                 error) instead of 1e-3
 * W is the weights file (NET_load), IO the reference file gen.py wrote.
 * The relative error of a tensor is as in tests/reference/check_net.c: the
 * largest absolute difference over the largest reference magnitude. Bounds:
 * forward 1e-4, loss 1e-4, gradients 1e-3 (or tol), buffers after the
 * step 1e-4.
 * Prints one line per check and "N passed, N failed".
 */
#include "cnnrt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define API(f) CAT(NET, CAT(_, f))
#define SIZE(f) CAT(UPPER, CAT(_, f))      /* -DUPPER=ALEXNET: the header's enum */
#define STR_(x) #x
#define STR(x) STR_(x)

static int passed, failed;

/* max_i |got_i - want_i| / max(max_i |want_i|, floor); a NaN counts as infinite */
static double rel_error_floor(const float *got, const float *want, int64_t n, double floor)
{
    double diff = 0, mag = floor;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        diff = isnan(d) ? INFINITY : fmax(diff, d);
        mag = fmax(mag, fabs((double)want[i]));
    }
    return diff / mag;
}

static double rel_error(const float *got, const float *want, int64_t n) { return rel_error_floor(got, want, n, 1e-6); }

static void verdict(const char *what, int n, double err, double tol)
{
    bool ok = err <= tol;
    printf("%-5s %-13s %-34s batch %d rel. error %.2e (max %.0e)\n", ok ? "ok" : "FAIL", STR(NET), what,
           n, err, tol);
    ok ? passed++ : failed++;
}

/* A check that two runs give the same bits. */
static void same_verdict(const char *what, bool same)
{
    printf("%-5s %-13s %-34s %s\n", same ? "ok" : "FAIL", STR(NET), what, same ? "bit-identical" : "differ");
    same ? passed++ : failed++;
}

static void fail(const char *what, const char *why)
{
    printf("FAIL  %-13s %s: %s\n", STR(NET), what, why);
    failed++;
}

static const rt_tensor *need(const rt_tensors *ts, const char *name)
{
    const rt_tensor *t = rt_st_find(ts, name);
    if (!t)
        fail(name, "not in the reference file");
    return t;
}

static int64_t param_count_of(int i)
{
    int64_t dims[4], count = 1;
    int rank = API(param_shape)(i, dims);
    for (int k = 0; k < rank; k++)
        count *= dims[k];
    return count;
}

static void print_names(void)
{
    for (int i = 0; i < API(param_count)(); i++) {
        int64_t dims[4];
        int rank = API(param_shape)(i, dims);
        printf("%s ", API(param_name)(i));
        for (int k = 0; k < rank; k++)
            printf("%s%lld", k ? "," : "", (long long)dims[k]);
        printf("\n");
    }
}

/* The first example alone on 1 and on 2 threads (where its GEMMs and loop
 * nests are split across the threads): the same bits as in the batch. */
static void same_on_threads(NET *net, const float *x, const float *batch_out)
{
    int64_t k = SIZE(OUTPUT_SIZE);
    float *out = malloc(sizeof(float) * (size_t)k);
    for (int threads = 1; threads <= 2; threads++) {
        API(set_threads)(net, threads);
        API(forward)(net, 1, x, out);
        char what[64];
        snprintf(what, sizeof what, "one example's output, %d thread%s", threads, threads > 1 ? "s" : "");
        same_verdict(what, memcmp(out, batch_out, sizeof(float) * (size_t)k) == 0);
    }
    free(out);
}

/* The inference-mode output at the reference's batch. */
static void check_forward(NET *net, const rt_tensors *ts)
{
    const rt_tensor *x = need(ts, "x"), *want = need(ts, "out");
    if (!x || !want)
        return;
    int n = (int)x->dims[0];
    if (want->count != (int64_t)n * SIZE(OUTPUT_SIZE) || x->count != (int64_t)n * SIZE(INPUT_SIZE)) {
        fail("forward", "x or out has the wrong size for this network");
        return;
    }
    float *out = malloc(sizeof(float) * (size_t)want->count);
    API(forward)(net, n, x->data, out);
    verdict("forward (inference mode)", n, rel_error(out, want->data, want->count), 1e-4);
    same_on_threads(net, x->data, out);
    free(out);
}

/* The loss and gradients again on 1 and on 2 threads: the same bits. (A
 * batchnorm network trains its batch on one thread, with its GEMMs and loop
 * nests split across the others.) The batch statistics do not depend on
 * the running statistics the first pass updated. */
static void grads_on_threads(NET *net, int n, const float *x, const int32_t *y, double loss)
{
    int np = API(param_count)();
    float **first = calloc((size_t)np, sizeof *first);
    for (int i = 0; i < np; i++)
        if (API(grad)(net, i)) {
            first[i] = malloc(sizeof(float) * (size_t)param_count_of(i));
            memcpy(first[i], API(grad)(net, i), sizeof(float) * (size_t)param_count_of(i));
        }
    for (int threads = 1; threads <= 2; threads++) {
        API(set_threads)(net, threads);
        bool same = API(loss_grad)(net, n, x, y) == loss;
        for (int i = 0; i < np && same; i++)
            same = !first[i] || memcmp(first[i], API(grad)(net, i), sizeof(float) * (size_t)param_count_of(i)) == 0;
        char what[64];
        snprintf(what, sizeof what, "loss and gradients, %d thread%s", threads, threads > 1 ? "s" : "");
        same_verdict(what, same);
    }
    for (int i = 0; i < np; i++)
        free(first[i]);
    free(first);
}

/* Training-mode loss, every parameter's gradient, and the buffers after. */
static void check_train(NET *net, const rt_tensors *ts)
{
    const rt_tensor *x = need(ts, "x"), *y = need(ts, "y"), *loss = need(ts, "loss");
    if (!x || !y || !loss)
        return;
    int n = (int)x->dims[0];
    int32_t *classes = malloc(sizeof(int32_t) * (size_t)y->count);
    for (int64_t i = 0; i < y->count; i++)
        classes[i] = (int32_t)y->data[i];
    double got = API(loss_grad)(net, n, x->data, classes);
    verdict("loss (training mode)", n, fabs(got - loss->data[0]) / fmax(fabs((double)loss->data[0]), 1e-6), 1e-4);
    double worst_g = 0, worst_b = 0;
    const char *wg = "", *wb = "";
    int grads = 0, buffers = 0, zeros = 0;
    const rt_tensor *tol = rt_st_find(ts, "tol");    /* float32's own accuracy, if above 1e-3 */
    double bound = tol ? fmax(tol->data[0], 1e-3) : 1e-3;
    char name[256];
    for (int i = 0; i < API(param_count)(); i++) {
        const char *p = API(param_name)(i);
        const rt_tensor *want;
        snprintf(name, sizeof name, "after.%s", p);
        if ((want = rt_st_find(ts, name))) {         /* a batchnorm buffer */
            double e = want->count == param_count_of(i) ? rel_error(API(param)(net, i), want->data, want->count)
                                                         : INFINITY;
            if (e > worst_b)
                worst_b = e, wb = p;
            buffers++;
            continue;
        }
        snprintf(name, sizeof name, "grad.%s", p);
        if (!(want = need(ts, name)))
            continue;
        /* a gradient zero in exact arithmetic: its rounding noise against its layer's scale */
        snprintf(name, sizeof name, "gscale.%s", p);
        const rt_tensor *scale = rt_st_find(ts, name);
        double floor = scale ? scale->data[0] : 1e-6;
        zeros += scale != NULL;
        const float *g = API(grad)(net, i);
        double e = g && want->count == param_count_of(i) ? rel_error_floor(g, want->data, want->count, floor)
                                                         : INFINITY;
        if (!(e <= worst_g))
            worst_g = e, wg = p;
        grads++;
    }
    snprintf(name, sizeof name, "%d gradients (%d zero; worst %s)", grads, zeros, grads ? wg : "-");
    verdict(name, n, worst_g, bound);
    if (buffers) {
        snprintf(name, sizeof name, "%d buffers after (worst %s)", buffers, wb);
        verdict(name, n, worst_b, 1e-4);
    }
    grads_on_threads(net, n, x->data, classes, got);
    free(classes);
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "names")) {
        print_names();
        return 0;
    }
    if (argc != 4 || (strcmp(argv[1], "forward") && strcmp(argv[1], "train"))) {
        fprintf(stderr, "usage: %s names | forward W IO | train W IO\n", argv[0]);
        return 2;
    }
    rt_tensors ts;
    rt_err err = {{0}};
    if (rt_st_read(argv[3], &ts, &err)) {
        fail(argv[3], err.msg);
        printf("%d passed, %d failed\n", passed, failed);
        return 1;
    }
    NET *net = API(new)(1);
    if (API(load)(net, argv[2]) != 0)
        fail("load", API(error)(net));
    else if (!strcmp(argv[1], "forward"))
        check_forward(net, &ts);
    else
        check_train(net, &ts);
    API(free)(net);
    rt_st_free(&ts);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
