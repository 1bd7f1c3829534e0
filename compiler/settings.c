/* settings.c: the `train { }` and `data { }` blocks: every key checked, with
 * "did you mean" for misspellings, and the defaults language.md gives. */
#include "cnnc.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void settings_defaults(Graph *g)
{
    g->train = (TrainCfg){.lr = 0.01, .momentum = 0.9, .batch = 64, .epochs = 10,
                          .schedule = SCHED_CONSTANT, .step_every = 1, .step_factor = 0.1,
                          .exp_gamma = 0.95, .seed = 1};
    g->data.scale = 0;       /* automatic: 1/255 for image bytes, 1 for CSV numbers */
    for (int i = 0; i < 3; i++)
        g->data.mean[i] = 0, g->data.std[i] = 1;
}

/* A number from `lo` to `hi`, or an error naming the setting. */
static bool number_in(Ast *e, const char *what, double lo, double hi, bool whole, double *out)
{
    Builder b = {0};
    Val v = shape_const(&b, e);
    if (v.kind == V_NONE)
        return false;                   /* already reported (division by zero) */
    if ((v.kind != V_INT && v.kind != V_FLOAT) || v.num < lo || v.num > hi || (whole && v.kind != V_INT)) {
        error_at(e->loc, "%s must be %s from %.16g to %.16g", what, whole ? "a whole number" : "a number", lo, hi);
        return false;
    }
    *out = v.num;
    return true;
}

static bool is_call(const Ast *e, const char *name)
{
    return (e->kind == A_CALL || e->kind == A_NAME) && strcmp(e->str, name) == 0;
}

/* Finds `key` among a call's arguments (keyword, or positional at `pos`). */
static Ast *call_arg(const Ast *call, const char *key, int pos)
{
    if (call->kind != A_CALL)
        return NULL;
    for (int i = 0; i < call->nargs; i++) {
        const Arg *a = &call->args[i];
        if (a->key ? strcmp(a->key, key) == 0 : i == pos)
            return a->val;
    }
    return NULL;
}

/* Every keyword of a call must be one of `keys`; at most `npos` positional. */
static bool call_keys(const Ast *call, const char *const *keys, int npos)
{
    for (int i = 0; call->kind == A_CALL && i < call->nargs; i++) {
        const Arg *a = &call->args[i];
        if (!a->key && i >= npos) {
            error_at(a->val->loc, "%s takes at most %d positional argument%s", call->str, npos, npos == 1 ? "" : "s");
            return false;
        }
        bool known = false;
        for (int k = 0; a->key && keys[k]; k++)
            known |= strcmp(keys[k], a->key) == 0;
        if (a->key && !known) {
            error_at(a->keyloc, "%s has no argument '%s'", call->str, a->key);
            const char *near = closest_word(a->key, keys);
            if (near)
                note("did you mean '%s'?", near);
            return false;
        }
    }
    return true;
}

/* optimizer = sgd(lr, momentum, nesterov) */
static void optimizer(Graph *g, Ast *e)
{
    static const char *const keys[] = {"lr", "momentum", "nesterov", NULL};
    if (!is_call(e, "sgd")) {
        error_at(e->loc, "unknown optimizer; cnnc has `sgd(lr = ..., momentum = ..., nesterov = ...)`");
        return;
    }
    if (!call_keys(e, keys, 2))
        return;
    Ast *lr = call_arg(e, "lr", 0), *m = call_arg(e, "momentum", 1), *nest = call_arg(e, "nesterov", -1);
    double v;
    if (lr && number_in(lr, "the learning rate", 0, 1e6, false, &v))
        g->train.lr = v;
    if (m && number_in(m, "momentum", 0, 1, false, &v))
        g->train.momentum = v;
    if (nest) {
        if (nest->kind != A_NAME || (strcmp(nest->str, "true") && strcmp(nest->str, "false")))
            error_at(nest->loc, "nesterov must be true or false");
        else
            g->train.nesterov = strcmp(nest->str, "true") == 0;
    }
    if (g->train.nesterov && g->train.momentum == 0)
        error_at(e->loc, "nesterov needs a momentum above 0");
}

/* schedule = constant | cosine | step(every, factor) | exp(gamma) */
static void schedule(Graph *g, Ast *e)
{
    static const char *const names[] = {"constant", "cosine", "step", "exp", NULL};
    static const char *const step_keys[] = {"every", "factor", NULL}, *const exp_keys[] = {"gamma", NULL};
    double v;
    TrainCfg *t = &g->train;
    if (is_call(e, "constant") && e->kind == A_NAME) {
        t->schedule = SCHED_CONSTANT;
    } else if (is_call(e, "cosine") && e->kind == A_NAME) {
        t->schedule = SCHED_COSINE;
    } else if (is_call(e, "step") && e->kind == A_CALL && call_keys(e, step_keys, 2)) {
        Ast *every = call_arg(e, "every", 0), *factor = call_arg(e, "factor", 1);
        if (!every || !factor) {
            error_at(e->loc, "step needs every = N and factor = F");
            return;
        }
        t->schedule = SCHED_STEP;
        if (number_in(every, "step's every", 1, 1e6, true, &v))
            t->step_every = (int)v;
        if (number_in(factor, "step's factor", 0, 1e6, false, &v))
            t->step_factor = v;
    } else if (is_call(e, "exp") && e->kind == A_CALL && call_keys(e, exp_keys, 1)) {
        Ast *gamma = call_arg(e, "gamma", 0);
        if (!gamma) {
            error_at(e->loc, "exp needs gamma");
            return;
        }
        t->schedule = SCHED_EXP;
        if (number_in(gamma, "exp's gamma", 0, 1e6, false, &v))
            t->exp_gamma = v;
    } else if (diag_error_count() == 0 || !(e->kind == A_CALL && (is_call(e, "step") || is_call(e, "exp")))) {
        const char *name = e->kind == A_NAME || e->kind == A_CALL ? e->str : "";
        error_at(e->loc, "unknown schedule '%s'; schedules: constant, cosine, step(every, factor), exp(gamma)", name);
        const char *near = *name ? closest_word(name, names) : NULL;
        if (near && strcmp(near, name))
            note("did you mean '%s'?", near);
    }
}

static const char *const train_keys[] = {
    "optimizer", "weight_decay", "batch", "epochs", "schedule", "seed", NULL,
};

static void train_key(Graph *g, const Arg *a)
{
    double v;
    const char *k = a->key;
    if (strcmp(k, "optimizer") == 0)
        optimizer(g, a->val);
    else if (strcmp(k, "schedule") == 0)
        schedule(g, a->val);
    else if (strcmp(k, "weight_decay") == 0 && number_in(a->val, "weight_decay", 0, 1e3, false, &v))
        g->train.weight_decay = v;
    else if (strcmp(k, "batch") == 0 && number_in(a->val, "batch", 1, 65536, true, &v))
        g->train.batch = (int)v;
    else if (strcmp(k, "epochs") == 0 && number_in(a->val, "epochs", 0, 1e6, true, &v))
        g->train.epochs = (int)v;
    else if (strcmp(k, "seed") == 0 && number_in(a->val, "seed", 0, 9007199254740991.0, true, &v))
        g->train.seed = (uint64_t)v;
}

/* Reports unknown and repeated keys; true if `a` may be read. */
static bool key_ok(const Stmt *s, int i, const char *const *keys)
{
    const Arg *a = &s->args[i];
    bool known = false;
    for (int k = 0; keys[k]; k++)
        known |= strcmp(keys[k], a->key) == 0;
    if (!known) {
        error_at(a->keyloc, "unknown %s setting '%s'", s->kind == S_TRAIN ? "train" : "data", a->key);
        const char *near = closest_word(a->key, keys);
        if (near)
            note("did you mean '%s'?", near);
        return false;
    }
    for (int j = 0; j < i; j++)
        if (strcmp(s->args[j].key, a->key) == 0) {
            error_at(a->keyloc, "'%s' is set twice", a->key);
            return false;
        }
    return true;
}

void settings_train(Graph *g, const Stmt *s)
{
    for (int i = 0; i < s->nargs; i++)
        if (key_ok(s, i, train_keys))
            train_key(g, &s->args[i]);
}

static const char *string_arg(Ast *e, const char *what)
{
    if (!e || e->kind != A_STR || !*e->str) {
        error_at(e ? e->loc : (Loc){0, 0, 0}, "%s must be a file name in quotes", what);
        return NULL;
    }
    return e->str;
}

/* dataset = idx("images", "labels") | csv("path", label = 0) */
static void dataset(DataSet *d, Ast *e)
{
    static const char *const idx_keys[] = {"images", "labels", NULL}, *const csv_keys[] = {"path", "label", NULL};
    double v;
    if (is_call(e, "idx") && e->kind == A_CALL && call_keys(e, idx_keys, 2)) {
        d->path = string_arg(call_arg(e, "images", 0), "idx's images");
        d->labels = string_arg(call_arg(e, "labels", 1), "idx's labels");
        d->kind = DATA_IDX;
    } else if (is_call(e, "csv") && e->kind == A_CALL && call_keys(e, csv_keys, 2)) {
        d->path = string_arg(call_arg(e, "path", 0), "csv's path");
        Ast *label = call_arg(e, "label", 1);
        if (label && number_in(label, "csv's label column", 0, 1e6, true, &v))
            d->label_col = (int)v;
        d->kind = DATA_CSV;
    } else if (!(e->kind == A_CALL && (is_call(e, "idx") || is_call(e, "csv")))) {
        error_at(e->loc, "a data set is idx(\"images\", \"labels\") or csv(\"path\", label = 0)");
    }
}

/* The input's channels when its shape says them: C of [C, H, W], 1 of
 * [H, W]; 0 for a flat [D] (predict decides from the image). */
static int input_channels(const Graph *g)
{
    if (!g->input)
        return 0;
    Shape s = g->input->shape;
    return s.rank == 3 ? (int)s.d[0] : s.rank == 2 ? 1 : 0;
}

/* mean = [m0, m1, m2] | m     one value per input channel, or one for all
 * std  = [s0, s1, s2] | s     likewise, none 0 */
static void per_channel(Graph *g, const Arg *a, double out[3])
{
    bool is_std = strcmp(a->key, "std") == 0;
    Ast *e = a->val;
    int n = e->kind == A_SHAPE ? e->nargs : 1, c = input_channels(g);
    if (e->kind == A_STR || e->kind == A_NAME || e->kind == A_CALL) {
        error_at(e->loc, "%s must be a number, or a list of one per channel: [%s]", a->key,
                 is_std ? "0.229, 0.224, 0.225" : "0.485, 0.456, 0.406");
        return;
    }
    int want = c ? c : 3;             /* a flat input: an RGB image's 3 */
    if (e->kind == A_SHAPE && n != 1 && !(n == want && n <= 3)) {
        error_at(e->loc, "%s has %d value%s; the input has %d channel%s: give %s", a->key, n,
                 n == 1 ? "" : "s", c ? c : 3, c == 1 ? "" : "s",
                 c == 3 || !c ? "one value or one per channel" : "one value");
        return;
    }
    double v[3];
    for (int i = 0; i < n; i++) {
        Ast *x = e->kind == A_SHAPE ? e->args[i].val : e;
        if (!number_in(x, a->key, -1e30, 1e30, false, &v[i]))
            return;
        if (is_std && v[i] == 0) {
            error_at(x->loc, "std must not be 0");
            return;
        }
    }
    for (int i = 0; i < 3; i++)
        out[i] = v[n == 1 ? 0 : i];
}

/* The class names file: `path` relative to the .cnn's folder unless absolute. */
static const char *beside_source(const char *path)
{
    const char *src = diag_path(), *slash = src ? strrchr(src, '/') : NULL;
    if (path[0] == '/' || !slash)
        return path;
    return arena_printf("%.*s/%s", (int)(slash - src), src, path);
}

/* Reads a regular file of at most 16 MiB into the arena; NULL after an error at loc. */
static char *read_text(const char *path, Loc loc, size_t *len)
{
    struct stat st;
    FILE *f = NULL;
    const char *why = stat(path, &st) != 0                            ? strerror(errno)
                      : !S_ISREG(st.st_mode) || st.st_size > (16 << 20) ? "not a file of at most 16 MiB"
                      : !(f = fopen(path, "rb"))                      ? strerror(errno)
                                                                      : NULL;
    if (why) {
        error_at(loc, "cannot read the class names '%s': %s", path, why);
        return NULL;
    }
    char *buf = arena_alloc((size_t)st.st_size + 1);
    *len = fread(buf, 1, (size_t)st.st_size, f);
    buf[*len] = 0;
    fclose(f);
    return buf;
}

/* classes = "names.txt": one name per line, as many as the network's classes
 * (its outputs). Kept as the lines, each ending in "\n", for the program. */
static void class_names(Graph *g, const Arg *a)
{
    const char *path = string_arg(a->val, "classes");
    size_t len;
    char *text = path ? read_text(beside_source(path), a->val->loc, &len) : NULL;
    if (!text)
        return;
    char *out = arena_alloc(len + 2), *o = out;
    int64_t n = 0, want = g->output ? shape_count(g->output->shape) : 0;
    for (char *p = text; p < text + len; n++) {
        char *nl = memchr(p, '\n', (size_t)(text + len - p)), *e = nl ? nl : text + len;
        size_t k = (size_t)(e - p) - (e > p && e[-1] == '\r');
        if (k == 0 || memchr(p, 0, k)) {
            error_at(a->val->loc, "%s:%lld: %s", path, (long long)n + 1,
                     k ? "a NUL byte in a class name" : "an empty class name");
            return;
        }
        memcpy(o, p, k), o += k, *o++ = '\n';
        p = nl ? nl + 1 : text + len;
    }
    *o = 0;
    if (g->output && n != want) {
        error_at(a->val->loc, "%s has %lld class name%s (one per line), but the network has %lld "
                 "classes", path, (long long)n, n == 1 ? "" : "s", (long long)want);
        return;
    }
    g->data.classes = out;
}

/* resize = N (the shorter side), crop = N (a centre square, the input's size) */
static void image_size(Graph *g, const Arg *a)
{
    double v;
    bool crop = strcmp(a->key, "crop") == 0;
    if (!number_in(a->val, a->key, 1, 16384, true, &v))
        return;
    Shape s = g->input ? g->input->shape : (Shape){0};
    if (crop && s.rank >= 2 && (s.d[s.rank - 1] != v || s.d[s.rank - 2] != v)) {
        error_at(a->val->loc, "crop = %d makes %dx%d images, but the input is %s", (int)v,
                 (int)v, (int)v, shape_str(s));
        return;
    }
    *(crop ? &g->data.crop : &g->data.resize) = (int)v;
}

static const char *const data_keys[] = {
    "train", "test", "scale", "resize", "crop", "mean", "std", "classes", NULL,
};

void settings_data(Graph *g, const Stmt *s)
{
    double v;
    for (int i = 0; i < s->nargs; i++) {
        if (!key_ok(s, i, data_keys))
            continue;
        const Arg *a = &s->args[i];
        const char *k = a->key;
        if (strcmp(k, "train") == 0)
            dataset(&g->data.train, a->val);
        else if (strcmp(k, "test") == 0)
            dataset(&g->data.test, a->val);
        else if (strcmp(k, "resize") == 0 || strcmp(k, "crop") == 0)
            image_size(g, a);
        else if (strcmp(k, "mean") == 0 || strcmp(k, "std") == 0)
            per_channel(g, a, k[0] == 'm' ? g->data.mean : g->data.std);
        else if (strcmp(k, "classes") == 0)
            class_names(g, a);
        else if (number_in(a->val, "scale", -1e30, 1e30, false, &v)) {
            if (v == 0)
                error_at(a->val->loc, "scale must not be 0");
            g->data.scale = v;
        }
    }
}
