/* api.c: the generated C API's preconditions and refusals, run by run.sh
 * against the sanitized liblenet.a (cnnc --lib --sanitize). Every call with
 * a bad argument must fail cleanly: no crash, no sanitizer report, nothing
 * written out of bounds, and an error message where the function has one.
 *
 *   api pre         the precondition checks; one "ok"/"FAIL" line each
 *   api load FILE   lenet_load; prints lenet_error, exits 1 if refused
 *   api save FILE   lenet_save of a fresh network; prints lenet_error,
 *                   exits 1 if refused
 */
#include "lenet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failed;

static void check(const char *what, int ok)
{
    printf("%s %s\n", ok ? "ok  " : "FAIL", what);
    failed += !ok;
}

/* A refusal that says why: the message holds `word`. */
static void says(const char *what, const lenet *net, const char *word)
{
    const char *e = lenet_error(net);
    int ok = e && strstr(e, word);
    printf("%s %s: %s\n", ok ? "ok  " : "FAIL", what, e ? e : "(NULL)");
    failed += !ok;
}

/* Guard values around the output rows: a call that fails must not write. */
enum { N = 4, GUARD = 16 };
static float xbuf[N * LENET_INPUT_SIZE], obuf[GUARD + N * LENET_OUTPUT_SIZE + GUARD];

static int untouched(void)
{
    for (size_t i = 0; i < sizeof obuf / sizeof obuf[0]; i++)
        if (obuf[i] != -7)
            return 0;
    return 1;
}

static void forward_checks(lenet *net)
{
    float *out = obuf + GUARD;
    for (size_t i = 0; i < sizeof obuf / sizeof obuf[0]; i++)
        obuf[i] = -7;
    lenet_forward(NULL, N, xbuf, out);
    check("forward(NULL net) returns, writes nothing", untouched());
    check("error(NULL) is a message", lenet_error(NULL) && *lenet_error(NULL));
    lenet_forward(net, 0, xbuf, out);
    check("forward(n = 0) writes nothing", untouched());
    says("forward(n = 0) says so", net, "n >= 1");
    lenet_forward(net, -3, xbuf, out);
    check("forward(n = -3) writes nothing", untouched());
    says("forward(n = -3) says so", net, "n = -3");
    lenet_forward(net, N, NULL, out);
    check("forward(x = NULL) writes nothing", untouched());
    says("forward(x = NULL) says so", net, "non-NULL");
    lenet_forward(net, N, xbuf, NULL);
    says("forward(out = NULL) says so", net, "non-NULL");
    lenet_forward(net, N, xbuf, out);
    check("forward(n = 4) fills exactly 4 rows", obuf[GUARD - 1] == -7 &&
          obuf[GUARD + N * LENET_OUTPUT_SIZE] == -7 && out[0] != -7 &&
          out[N * LENET_OUTPUT_SIZE - 1] != -7);
}

typedef float step_fn(lenet *, int, const float *, const int32_t *);

static void train_checks(lenet *net, step_fn *f, const char *name)
{
    int32_t y[N] = {1, 2, 3, 4}, bad[N] = {1, 10, 3, 4}, neg[N] = {1, 2, -1, 4};
    char what[128];
    float *w = lenet_param(net, 0), w0 = w ? w[0] : 0;
#define TRY(cond, args, word)                                                   \
    do {                                                                       \
        snprintf(what, sizeof what, "%s(%s)", name, cond);                     \
        check(what, isnan(f args) && w[0] == w0);                              \
        snprintf(what, sizeof what, "%s(%s) says so", name, cond);             \
        says(what, net, word);                                                 \
    } while (0)
    snprintf(what, sizeof what, "%s(NULL net) is NaN", name);
    check(what, isnan(f(NULL, N, xbuf, y)));
    TRY("n = 0", (net, 0, xbuf, y), "n >= 1");
    TRY("n = -1", (net, -1, xbuf, y), "n = -1");
    TRY("x = NULL", (net, N, NULL, y), "non-NULL");
    TRY("y = NULL", (net, N, xbuf, NULL), "non-NULL");
    TRY("label 10 of 10 classes", (net, N, xbuf, bad), "label");
    TRY("label -1", (net, N, xbuf, neg), "label");
#undef TRY
    snprintf(what, sizeof what, "%s(n = 4) works after the refusals", name);
    check(what, isfinite(f(net, N, xbuf, y)));
}

static void param_checks(lenet *net)
{
    int64_t dims[4] = {-5, -5, -5, -5};
    check("param(net, -1) is NULL", lenet_param(net, -1) == NULL);
    says("param(net, -1) says so", net, "-1");
    check("param(net, 999) is NULL", lenet_param(net, 999) == NULL);
    says("param(net, 999) says so", net, "999");
    check("param(NULL, 0) is NULL", lenet_param(NULL, 0) == NULL);
    check("grad(net, 999) is NULL", lenet_grad(net, 999) == NULL);
    check("grad(NULL, 0) is NULL", lenet_grad(NULL, 0) == NULL);
    check("param_name(-1) is NULL", lenet_param_name(-1) == NULL);
    check("param_name(NUM_PARAMS) is NULL", lenet_param_name(LENET_NUM_PARAMS) == NULL);
    check("param_name(0) is conv1.weight", !strcmp(lenet_param_name(0), "conv1.weight"));
    check("param_shape(99) is -1, dims untouched",
          lenet_param_shape(99, dims) == -1 && dims[0] == -5 && dims[3] == -5);
    check("param_shape(-1) is -1", lenet_param_shape(-1, dims) == -1);
    check("param_shape(0, NULL) is -1", lenet_param_shape(0, NULL) == -1);
    check("param_shape(0) is [6, 1, 5, 5]", lenet_param_shape(0, dims) == 4 && dims[0] == 6 &&
          dims[1] == 1 && dims[2] == 5 && dims[3] == 5);
    check("param_count() is NUM_PARAMS", lenet_param_count() == LENET_NUM_PARAMS);
}

static void misc_checks(lenet *net)
{
    check("load(NULL, path) < 0", lenet_load(NULL, "x.safetensors") < 0);
    check("load(net, NULL) < 0", lenet_load(net, NULL) < 0);
    says("load(net, NULL) says so", net, "no file name");
    check("load(net, missing file) < 0", lenet_load(net, "/nonexistent/w.safetensors") < 0);
    says("load(net, missing file) names it", net, "/nonexistent/w.safetensors");
    check("save(NULL, path) < 0", lenet_save(NULL, "x.safetensors") < 0);
    check("save(net, NULL) < 0", lenet_save(net, NULL) < 0);
    says("save(net, NULL) says so", net, "no file name");
    lenet_set_threads(NULL, 2);
    lenet_set_lr(NULL, 0.1f);
    lenet_set_threads(net, 0);
    lenet_set_threads(net, -5);
    lenet_set_threads(net, 1 << 30);
    lenet_set_lr(net, -1);
    lenet_set_lr(net, NAN);
    lenet_free(NULL);
    check("set_threads/set_lr/free with bad arguments return", 1);
}

static int pre(void)
{
    lenet *net = lenet_new(1);
    if (!net)
        return 2;
    for (size_t i = 0; i < sizeof xbuf / sizeof xbuf[0]; i++)
        xbuf[i] = (float)(i % 255) / 255;
    check("a new network has no error", !strcmp(lenet_error(net), ""));
    forward_checks(net);
    train_checks(net, lenet_loss_grad, "loss_grad");
    train_checks(net, lenet_train_step, "train_step");
    param_checks(net);
    misc_checks(net);
    lenet_free(net);
    return failed ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "pre"))
        return pre();
    if (argc != 3 || (strcmp(argv[1], "load") && strcmp(argv[1], "save"))) {
        fprintf(stderr, "usage: api pre | api load FILE | api save FILE\n");
        return 2;
    }
    lenet *net = lenet_new(1);
    if (!net)
        return 2;
    int rc = argv[1][0] == 'l' ? lenet_load(net, argv[2]) : lenet_save(net, argv[2]);
    printf("%s\n", lenet_error(net));
    lenet_free(net);
    return rc < 0 ? 1 : 0;
}
