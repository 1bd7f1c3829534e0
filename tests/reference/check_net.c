/* check_net.c: checks one compiled network against PyTorch's numbers.
 *
 * Built once per network with -DNET=name, including the generated NET.h and
 * linking libNET.a. Usage: check_net DIR EXE
 *   DIR/NET.weights.safetensors   the weights, loaded through NET_load
 *   DIR/NET.io.safetensors        x.N and PyTorch's out.N for N in 1, 7, 64
 *   EXE                           the generated executable, run as
 *                                 `EXE forward --weights W IN OUT`
 * Every output must match within a relative error of 1e-4 (the largest
 * absolute difference over the largest reference magnitude).
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

static void verdict(const char *what, int n, double err)
{
    bool ok = err <= 1e-4;
    printf("%-5s %-24s %-10s batch %-3d rel. error %.2e\n", ok ? "ok" : "FAIL", STR(NET), what, n, err);
    ok ? passed++ : failed++;
}

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
    API(free)(net);
    rt_st_free(&ts);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
