/* fake_net.c -- a generated executable without the compiler: a hand-written
 * rt_net_desc for softmax regression 784 -> 10 (with input dropout, an l2
 * term and a buffer), whose kernels follow the rt_forward_fn and rt_train_fn
 * contracts of cnnrt.h, handed to rt_main. test_train.sh drives it.
 *
 *   fake COMMAND ...    as a generated program (train, eval, info, ...)
 *   fake selftest       checks of the C API: loss_grad, train_step, load/save
 *
 * Environment, for the tests:
 *   FAKE_SLOW_US=N      sleep N microseconds in each training step
 *   FAKE_NAN_AT=K       the K-th training step (from 1, in this process) has a NaN loss
 *   FAKE_SERIAL=1       train_serial: the kernel counts examples in a buffer
 *   FAKE_NESTEROV=1, FAKE_WD=X   the optimizer's nesterov and weight_decay
 */
#include "cnnrt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { IN = 784, K = 10, W_OFF = 0, B_OFF = 7840, SEEN_OFF = 7856, NFLOATS = 7872 };
enum { WS_FIXED = 16, WS_PER = IN + K };     /* per example: dropped input, probabilities */
#define KEEP 0.9f                            /* input dropout keeps 90% */

static long slow_us, nan_at;
static int serial;                           /* FAKE_SERIAL */
static long calls;                           /* training steps so far (first == 0 calls) */

static const rt_param_desc params[] = {
    {.name = "fc.weight", .rank = 2, .dims = {K, IN}, .count = K * IN, .offset = W_OFF,
     .init = RT_INIT_XAVIER, .fan_in = IN, .fan_out = K, .flags = RT_PARAM_WEIGHT},
    {.name = "fc.bias", .rank = 1, .dims = {K}, .count = K, .offset = B_OFF, .init = RT_INIT_ZEROS},
    {.name = "stats.seen", .rank = 1, .dims = {1}, .count = 1, .offset = SEEN_OFF,
     .init = RT_INIT_ZEROS, .flags = RT_PARAM_BUFFER},
};

static const rt_reg_desc regs[] = {{.kind = RT_REG_L2, .coef = 1e-4, .param = 0}};

/* z = W x + b for one example. */
static void logits(const float *p, const float *x, float *z)
{
    for (int k = 0; k < K; k++) {
        float s = p[B_OFF + k];
        for (int i = 0; i < IN; i++)
            s += p[W_OFF + k * IN + i] * x[i];
        z[k] = s;
    }
}

static void fake_forward(int64_t n, const float *x, float *out, const float *p, float *ws)
{
    for (int64_t e = 0; e < n; e++) {
        ws[e] = 0;                           /* ws_floats = 1: touch it all */
        logits(p, x + e * IN, out + e * K);
    }
}

/* Dropout's uniform draw for (seed, example, element): a hash, no state. */
static float draw(uint64_t seed, int64_t example, int64_t element)
{
    uint64_t z = seed ^ ((uint64_t)example * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)element * 0xD6E8FEB86659FD93ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (float)((z ^ (z >> 31)) >> 40) * 0x1.0p-24f;
}

/* softmax cross-entropy of z against y: p = softmax(z), returns -log p[y]. */
static double softmax_ce(const float *z, int32_t y, float *p)
{
    float m = z[0];
    for (int k = 1; k < K; k++)
        m = z[k] > m ? z[k] : m;
    double s = 0;
    for (int k = 0; k < K; k++)
        s += p[k] = expf(z[k] - m);
    for (int k = 0; k < K; k++)
        p[k] = (float)(p[k] / s);
    return -(z[y] - m - log(s));
}

/* The rt_train_fn contract: grads := d(data loss)/d params over this slice,
 * scaled by 1/total; returns the slice's loss sum / total. */
static double fake_train(int64_t n, const float *x, const void *yv, float *p, float *g, float *ws,
                         int64_t first, int64_t total, uint64_t seed, rt_grads *ctx)
{
    (void)ctx;                               /* no rt_grads_ready calls (nready 0): one process only */
    const int32_t *y = yv;
    memset(g, 0, sizeof(float) * NFLOATS);
    g[SEEN_OFF] = 1e30f;                     /* a buffer's "gradient": must be ignored */
    ws[WS_FIXED + n * WS_PER - 1] = 0;       /* the promised workspace exists */
    double loss = 0;
    for (int64_t e = 0; e < n; e++) {
        float *xd = ws + WS_FIXED + e * WS_PER, *pr = xd + IN, z[K];
        for (int i = 0; i < IN; i++)         /* inverted dropout of the input */
            xd[i] = draw(seed, first + e, i) < KEEP ? x[e * IN + i] / KEEP : 0;
        logits(p, xd, z);
        loss += softmax_ce(z, y[e], pr);
        for (int k = 0; k < K; k++) {
            /* d/dz CE = softmax(z) - onehot(y);  d/dW (W x) = dz x^T */
            float dz = (pr[k] - (k == y[e])) / (float)total;
            g[B_OFF + k] += dz;
            for (int i = 0; i < IN; i++)
                g[W_OFF + k * IN + i] += dz * xd[i];
        }
    }
    if (serial)
        p[SEEN_OFF] += (float)n;             /* as batchnorm's running statistics */
    if (first == 0) {
        long c = __atomic_add_fetch(&calls, 1, __ATOMIC_SEQ_CST);
        if (slow_us)
            usleep((useconds_t)slow_us);
        if (nan_at && c == nan_at)
            return NAN;
    }
    return loss / (double)total;
}

static rt_net_desc desc = {
    .magic = RT_DESC_MAGIC, .name = "fake", .version = "test", .structure_hash = 0xfa4e0123456789abull,
    .input_rank = 3, .input_dims = {1, 28, 28}, .input_size = IN,
    .output_rank = 1, .output_dims = {K}, .output_size = K,
    .label_kind = RT_LABELS_CLASS, .nclasses = K, .loss_kind = RT_LOSS_CE,
    .nparams = 3, .params = params, .param_floats = NFLOATS, .ws_floats = 1,
    .forward = fake_forward, .train = fake_train,
    .train_ws_floats = WS_PER, .train_ws_fixed = WS_FIXED, .nreg = 1, .reg = regs,
    .lr = 0.05, .momentum = 0.9, .batch = 64, .epochs = 3,
    .schedule = RT_SCHED_STEP, .step_every = 2, .step_factor = 0.5, .seed = 1,
    .scale = 1.0 / 255,
    .summary = "layer   output   params\nfc      [10]     7850\n",
};

/* ---- selftest: the C API ------------------------------------------------------- */

static int failures;
#define CHECK(c, ...) ((c) ? (void)0 : (failures++, printf("FAIL %s:%d: ", __FILE__, __LINE__), \
                                          printf(__VA_ARGS__), printf("\n")))

static void batch(int n, float *x, int32_t *y)
{
    rt_rng r;
    rt_rng_seed(&r, 42);
    for (int i = 0; i < n * IN; i++)
        x[i] = (float)rt_rng_uniform(&r);
    for (int i = 0; i < n; i++)
        y[i] = (int32_t)(rt_rng_next(&r) % K);
}

static void test_errors(const float *x, const int32_t *y)
{
    CHECK(isnan(rt_net_loss_grad(NULL, 4, x, y)), "NULL net");
    rt_net *net = rt_net_new(&desc, 1);
    CHECK(isnan(rt_net_loss_grad(net, 0, x, y)) && strstr(rt_net_error(net), "n >= 1"), "n = 0: %s",
          rt_net_error(net));
    CHECK(isnan(rt_net_train_step(net, 4, NULL, y)), "NULL x");
    CHECK(isnan(rt_net_train_step(net, 4, x, NULL)), "NULL y");
    rt_net_free(net);
    rt_net_desc nt = desc;
    nt.train = NULL;
    net = rt_net_new(&nt, 1);
    CHECK(isnan(rt_net_loss_grad(net, 4, x, y)) && strstr(rt_net_error(net), "no training code"),
          "no kernel: %s", rt_net_error(net));
    rt_net_free(net);
}

/* The gradient (data term + l2) against central differences of the loss. */
static void test_gradient(const float *x, const int32_t *y, int n)
{
    rt_net *net = rt_net_new(&desc, 3);
    rt_net_set_threads(net, 2);
    rt_net_loss_grad(net, n, x, y);
    const int probe[] = {0, 5, 300, 4000, 7839, B_OFF, B_OFF + 9};
    for (size_t i = 0; i < sizeof probe / sizeof *probe; i++) {
        float *p = net->params + probe[i], keep = *p, h = 1e-2f;
        double g = net->grads[probe[i]];
        *p = keep + h;
        double up = rt_net_loss_grad(net, n, x, y);
        *p = keep - h;
        double down = rt_net_loss_grad(net, n, x, y);
        *p = keep;
        double fd = (up - down) / (2 * h);
        CHECK(fabs(fd - g) <= 2e-3 + 0.05 * fabs(g), "d/dp[%d]: kernel %g, differences %g", probe[i], g, fd);
    }
    rt_net_free(net);
}

/* Threads: 2 agrees with 1 to rounding and with itself exactly. */
static void test_threads(const float *x, const int32_t *y, int n)
{
    rt_net *a = rt_net_new(&desc, 3), *b = rt_net_new(&desc, 3);
    rt_net_set_threads(a, 1), rt_net_set_threads(b, 2);
    float la = rt_net_loss_grad(a, n, x, y), lb = rt_net_loss_grad(b, n, x, y);
    CHECK(fabsf(la - lb) < 1e-5f * fabsf(la), "loss: 1 thread %g, 2 threads %g", la, lb);
    double worst = 0;
    for (int i = 0; i < SEEN_OFF; i++)
        worst = fmax(worst, fabs(a->grads[i] - b->grads[i]));
    CHECK(worst < 1e-6, "gradients differ by %g between 1 and 2 threads", worst);
    float *first = malloc(sizeof(float) * NFLOATS);
    memcpy(first, b->grads, sizeof(float) * NFLOATS);
    rt_net_loss_grad(b, n, x, y);
    CHECK(memcmp(first, b->grads, sizeof(float) * NFLOATS) == 0, "2 threads twice: not identical");
    rt_net_set_threads(b, 7);                 /* more threads than examples of a small batch */
    CHECK(isfinite(rt_net_loss_grad(b, 3, x, y)), "7 threads, 3 examples");
    free(first);
    rt_net_free(a), rt_net_free(b);
}

/* train_step against the SGD formulas applied by hand to loss_grad's gradient. */
static void test_sgd(const float *x, const int32_t *y, int n, int nesterov, float wd)
{
    rt_net *net = rt_net_new(&desc, 5), *ref = rt_net_new(&desc, 5);
    net->sgd_nesterov = ref->sgd_nesterov = nesterov;
    net->sgd_weight_decay = ref->sgd_weight_decay = wd;
    rt_net_set_lr(net, 0.1f), rt_net_set_lr(ref, 0.1f);
    rt_net_set_threads(net, 2), rt_net_set_threads(ref, 2);   /* the gradient sum fused into the step */
    float *v = calloc(NFLOATS, sizeof(float)), m = net->sgd_momentum;
    for (int step = 0; step < 3; step++) {
        float lref = rt_net_loss_grad(ref, n, x, y);
        for (int i = 0; i < SEEN_OFF; i++) {
            float *p = &ref->params[i], g = ref->grads[i];
            g = wd != 0 ? g + wd * *p : g;
            v[i] = m * v[i] + g;
            *p -= 0.1f * (nesterov ? g + m * v[i] : v[i]);
        }
        ref->step++;
        float l = rt_net_train_step(net, n, x, y);
        CHECK(l == lref, "step %d: loss %g, by hand %g", step, l, lref);
    }
    CHECK(memcmp(net->params, ref->params, sizeof(float) * NFLOATS) == 0,
          "nesterov %d wd %g: train_step differs from the formulas", nesterov, wd);
    CHECK(net->params[SEEN_OFF] == 0, "the buffer was updated: %g", net->params[SEEN_OFF]);
    CHECK(net->step == 3, "step %lld", (long long)net->step);
    free(v);
    rt_net_free(net), rt_net_free(ref);
}

/* A non-finite loss leaves the parameters and the step count alone. */
static void test_divergence(float *x, const int32_t *y, int n)
{
    rt_net *net = rt_net_new(&desc, 5);
    float *before = malloc(sizeof(float) * NFLOATS), *keep = malloc(sizeof(float) * n);
    memcpy(before, net->params, sizeof(float) * NFLOATS);
    for (int e = 0; e < n; e++)
        keep[e] = x[e * IN], x[e * IN] = INFINITY;
    float l = rt_net_train_step(net, n, x, y);
    for (int e = 0; e < n; e++)
        x[e * IN] = keep[e];
    CHECK(!isfinite(l), "loss %g", l);
    CHECK(memcmp(before, net->params, sizeof(float) * NFLOATS) == 0 && net->step == 0,
          "a diverged step changed the parameters or the step");
    free(before), free(keep);
    rt_net_free(net);
}

/* Checkpoints restore momentum and step; weights files reset them. */
static void test_checkpoint(const float *x, const int32_t *y, int n)
{
    char ck[64], wf[64];
    snprintf(ck, sizeof ck, "/tmp/fake_ck_%d.safetensors", (int)getpid());
    snprintf(wf, sizeof wf, "/tmp/fake_w_%d.safetensors", (int)getpid());
    rt_net *a = rt_net_new(&desc, 5), *b = rt_net_new(&desc, 9);
    rt_net_train_step(a, n, x, y), rt_net_train_step(a, n, x, y);
    const char *key[] = {"epoch"}, *val[] = {"1"};
    CHECK(rt_net_save_checkpoint(a, ck, 1, key, val) == 0, "save: %s", rt_net_error(a));
    CHECK(rt_net_load(b, ck) == 0, "load: %s", rt_net_error(b));
    CHECK(b->step == 2 && b->momentum && memcmp(a->momentum, b->momentum, sizeof(float) * NFLOATS) == 0 &&
          memcmp(a->params, b->params, sizeof(float) * NFLOATS) == 0, "checkpoint round trip");
    rt_net_train_step(a, n, x, y), rt_net_train_step(b, n, x, y);
    CHECK(memcmp(a->params, b->params, sizeof(float) * NFLOATS) == 0, "the step after a reload differs");
    CHECK(rt_net_save(a, wf) == 0, "save weights: %s", rt_net_error(a));
    CHECK(rt_net_load(b, wf) == 0 && b->step == 0 && !b->momentum, "a weights file resets the optimizer");
    const char *dup[] = {"step"};
    CHECK(rt_net_save_checkpoint(a, ck, 1, dup, val) != 0, "a repeated metadata key is refused");
    rt_tensors ts;
    rt_err err = {{0}};
    CHECK(rt_st_read(ck, &ts, &err) == 0 && ts.n == 5, "tensors: %d", ts.n);
    CHECK(rt_st_find(&ts, "momentum.fc.weight") && !rt_st_find(&ts, "momentum.stats.seen"), "momentum names");
    rt_st_free(&ts);
    remove(ck), remove(wf);
    rt_net_free(a), rt_net_free(b);
}

static int selftest(void)
{
    enum { N = 37 };
    float *x = malloc(sizeof(float) * N * IN);
    int32_t y[N];
    batch(N, x, y);
    test_errors(x, y);
    test_gradient(x, y, N);
    test_threads(x, y, N);
    test_sgd(x, y, N, 0, 0);
    test_sgd(x, y, N, 1, 0);
    test_sgd(x, y, N, 0, 1e-3f);
    test_divergence(x, y, N);
    test_checkpoint(x, y, N);
    free(x);
    printf("selftest: %d failures\n", failures);
    return failures != 0;
}

int main(int argc, char **argv)
{
    const char *s;
    slow_us = (s = getenv("FAKE_SLOW_US")) ? atol(s) : 0;
    nan_at = (s = getenv("FAKE_NAN_AT")) ? atol(s) : 0;
    desc.train_serial = serial = (s = getenv("FAKE_SERIAL")) && *s == '1';
    desc.nesterov = (s = getenv("FAKE_NESTEROV")) && *s == '1';
    desc.weight_decay = (s = getenv("FAKE_WD")) ? atof(s) : 0;
    if (argc == 2 && strcmp(argv[1], "selftest") == 0)
        return selftest();
    return rt_main(&desc, argc, argv);
}
