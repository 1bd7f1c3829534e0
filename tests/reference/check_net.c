/* check_net.c: checks one compiled network against PyTorch's numbers.
 *
 * Built once per network with -DNET=name, including the generated NET.h and
 * linking libNET.a. Usage: check_net DIR EXE
 *   DIR/NET.weights.safetensors   the weights, loaded through NET_load
 *   DIR/NET.io.safetensors        x.N and PyTorch's out.N for N in 1, 7, 64
 *   EXE                           the generated executable, run as
 *                                 `EXE forward --weights W IN OUT`
 * Every output must match within a relative error of 1e-4 (the largest
 * absolute difference over the largest reference magnitude). Where the file
 * has loss.N (N in 1, 7), NET_loss_grad must give PyTorch's training-mode
 * loss within 1e-4 and every parameter's gradient grad.N.<name> within 1e-3,
 * and batchnorm's buffers after the step (after.N.<name>) within 1e-4.
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
#define STR_(x) #x
#define STR(x) STR_(x)

static int passed, failed;

static double rel_error(const float *got, const float *want, int64_t n)
{
    double diff = 0, mag = 1e-6;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        diff = isnan(d) ? INFINITY : fmax(diff, d);
        mag = fmax(mag, fabs((double)want[i]));
    }
    return diff / mag;
}

static void verdict_tol(const char *what, int n, double err, double tol)
{
    bool ok = err <= tol;
    printf("%-5s %-24s %-10s batch %-3d rel. error %.2e\n", ok ? "ok" : "FAIL", STR(NET), what, n, err);
    ok ? passed++ : failed++;
}

static void verdict(const char *what, int n, double err) { verdict_tol(what, n, err, 1e-4); }

static const rt_tensor *need(const rt_tensors *ts, const char *name, const char *file)
{
    const rt_tensor *t = rt_st_find(ts, name);
    if (!t) {
        printf("FAIL  %s: %s has no tensor '%s'\n", STR(NET), file, name);
        failed++;
    }
    return t;
}

/* Runs the executable's `forward` on x and compares with want. */
static void through_executable(const char *exe, const char *weights, const rt_tensor *x,
                               const rt_tensor *want, int n)
{
    char in[256], out[256], cmd[1024];
    snprintf(in, sizeof in, "%s.x%d.safetensors", exe, n);
    snprintf(out, sizeof out, "%s.out%d.safetensors", exe, n);
    rt_tensor t = *x;
    t.name = "x";
    rt_err err = {{0}};
    rt_tensors got = {0};
    snprintf(cmd, sizeof cmd, "'%s' forward --weights '%s' '%s' '%s' 2>/dev/null", exe, weights, in, out);
    if (rt_st_write(in, 1, &t, 0, NULL, NULL, &err) || system(cmd) != 0 || rt_st_read(out, &got, &err) ||
        !rt_st_find(&got, "out") || rt_st_find(&got, "out")->count != want->count) {
        printf("FAIL  %s executable batch %d: %s\n", STR(NET), n, err.msg[0] ? err.msg : cmd);
        failed++;
    } else {
        verdict("executable", n, rel_error(rt_st_find(&got, "out")->data, want->data, want->count));
    }
    rt_st_free(&got);
    remove(in), remove(out);
}

/* Labels are stored as floats (y.N); targets as t.N. */
static void *labels_of(const rt_tensors *ts, int n, int32_t **classes)
{
    char name[32];
    snprintf(name, sizeof name, "y.%d", n);
    const rt_tensor *y = rt_st_find(ts, name);
    if (y) {
        *classes = malloc(sizeof(int32_t) * (size_t)y->count);
        for (int64_t i = 0; i < y->count; i++)
            (*classes)[i] = (int32_t)y->data[i];
        return *classes;
    }
    snprintf(name, sizeof name, "t.%d", n);
    const rt_tensor *t = rt_st_find(ts, name);
    return t ? t->data : NULL;
}

/* Training-mode loss and gradients at batch n, from freshly loaded weights. */
static void check_gradients(const rt_tensors *ts, const char *weights, int n)
{
    char name[160];
    snprintf(name, sizeof name, "loss.%d", n);
    const rt_tensor *loss = rt_st_find(ts, name), *x;
    snprintf(name, sizeof name, "x.%d", n);
    x = rt_st_find(ts, name);
    if (!loss || !x)
        return;                                 /* not a reference for this batch */
    NET *net = API(new)(1);
    int32_t *classes = NULL;
    void *y = labels_of(ts, n, &classes);
    if (API(load)(net, weights) != 0 || !y) {
        printf("FAIL  %s gradients batch %d: %s\n", STR(NET), n, y ? API(error)(net) : "no labels");
        failed++;
        API(free)(net);
        return;
    }
    float got = API(loss_grad)(net, n, x->data, y);
    verdict("loss", n, fabs((double)got - loss->data[0]) / fmax(fabs((double)loss->data[0]), 1e-6));
    double worst = 0;
    const char *worst_name = "";
    for (int i = 0; i < API(param_count)(); i++) {
        snprintf(name, sizeof name, "after.%d.%s", n, API(param_name)(i));
        const rt_tensor *want = rt_st_find(ts, name);
        if (want)                               /* batchnorm's running statistics */
            verdict_tol(API(param_name)(i), n, rel_error(API(param)(net, i), want->data, want->count), 1e-4);
        snprintf(name, sizeof name, "grad.%d.%s", n, API(param_name)(i));
        if (!(want = rt_st_find(ts, name)))
            continue;                           /* buffers have no gradient */
        const float *g = API(grad)(net, i);
        double e = g ? rel_error(g, want->data, want->count) : INFINITY;
        if (e > worst)
            worst = e, worst_name = API(param_name)(i);
    }
    if (worst > 1e-3)
        printf("      worst gradient: %s\n", worst_name);
    verdict_tol("gradients", n, worst, 1e-3);
    free(classes);
    API(free)(net);
}

/* How far the derived gradient g of the entry *p is from the loss's slope:
 * central and one-sided differences, each at two step sizes (a step too
 * small drowns in float32 rounding, one too large crosses kinks of relu,
 * max and hinge, where the derivative is one of the one-sided slopes). */
static double slope_error(NET *net, int n, const float *x, const void *y, float *p, float g)
{
    float keep = *p;
    double best = INFINITY, mid = API(loss_grad)(net, n, x, y);
    for (int s = 0; s < 2; s++) {
        float h = (s ? 1e-3f : 2.5e-4f) * fmaxf(1.0f, fabsf(keep));
        *p = keep + h;
        double up = API(loss_grad)(net, n, x, y);
        *p = keep - h;
        double down = API(loss_grad)(net, n, x, y);
        *p = keep;
        best = fmin(best, fabs((up - down) / (2.0 * h) - g));
        best = fmin(best, fmin(fabs((up - mid) / h - g), fabs((mid - down) / h - g)));
    }
    return best;
}

/* Finite differences: for a sample of each parameter's entries, the slope
 * (L(p + h) - L(p - h)) / 2h against the derived gradient, within 5% of the
 * parameter's largest gradient entry plus the float32 noise floor (a wrong
 * rule is off by far more; PyTorch's gradients are checked to 1e-3 above). */
static void check_finite_differences(const rt_tensors *ts, const char *weights, int n)
{
    char name[32];
    snprintf(name, sizeof name, "x.%d", n);
    const rt_tensor *x = rt_st_find(ts, name);
    snprintf(name, sizeof name, "loss.%d", n);
    if (!x || !rt_st_find(ts, name))
        return;
    NET *net = API(new)(1);
    int32_t *classes = NULL;
    void *y = labels_of(ts, n, &classes);
    if (API(load)(net, weights) != 0 || !y)
        return;
    /* differences of float32 losses cannot resolve slopes below about
     * two float32 ulps of L over h: that floor is added to each comparison's scale */
    double noise = 4e-7 * fabs(API(loss_grad)(net, n, x->data, y)) / 2.5e-4;
    double worst = 0;
    const char *worst_name = "";
    for (int i = 0; i < API(param_count)(); i++) {
        const float *g = API(grad)(net, i);
        float *p = API(param)(net, i);
        int64_t dims[4], count = 1;
        int rank = API(param_shape)(i, dims);
        for (int k = 0; k < rank; k++)
            count *= dims[k];
        if (!g || strstr(API(param_name)(i), "running_"))
            continue;
        float *copy = malloc(sizeof(float) * (size_t)count);
        memcpy(copy, g, sizeof(float) * (size_t)count);
        double gmax = 1e-6, err = 0;
        for (int64_t k = 0; k < count; k++)
            gmax = fmax(gmax, fabs(copy[k]));
        int64_t step = count > 12 ? count / 12 : 1;
        for (int64_t k = 0; k < count; k += step)
            err = fmax(err, slope_error(net, n, x->data, y, &p[k], copy[k]) / (gmax + noise));
        if (err > worst)
            worst = err, worst_name = API(param_name)(i);
        free(copy);
    }
    if (worst > 5e-2)
        printf("      worst finite difference: %s\n", worst_name);
    verdict_tol("finite diff", n, worst, 5e-2);
    free(classes);
    API(free)(net);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s DIR EXE\n", argv[0]);
        return 2;
    }
    char weights[512], io[512];
    snprintf(weights, sizeof weights, "%s/%s.weights.safetensors", argv[1], STR(NET));
    snprintf(io, sizeof io, "%s/%s.io.safetensors", argv[1], STR(NET));
    rt_tensors ts;
    rt_err err = {{0}};
    if (rt_st_read(io, &ts, &err)) {
        printf("FAIL  %s: %s\n", STR(NET), err.msg);
        return 1;
    }
    NET *net = API(new)(1);
    if (API(load)(net, weights) != 0) {
        printf("FAIL  %s: load: %s\n", STR(NET), API(error)(net));
        return 1;
    }
    static const int batches[] = {1, 7, 64};
    for (int b = 0; b < 3; b++) {
        char xn[32], on[32];
        snprintf(xn, sizeof xn, "x.%d", batches[b]);
        snprintf(on, sizeof on, "out.%d", batches[b]);
        const rt_tensor *x = need(&ts, xn, io), *want = need(&ts, on, io);
        if (!x || !want)
            continue;
        float *out = malloc(sizeof(float) * (size_t)want->count);
        API(forward)(net, batches[b], x->data, out);
        verdict("C API", batches[b], rel_error(out, want->data, want->count));
        free(out);
        through_executable(argv[2], weights, x, want, batches[b]);
    }
    for (int b = 0; b < 2; b++) {
        check_gradients(&ts, weights, batches[b]);
        check_finite_differences(&ts, weights, batches[b]);
    }
    API(free)(net);
    rt_st_free(&ts);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
