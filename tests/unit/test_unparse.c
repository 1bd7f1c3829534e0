/* test_unparse.c: --emit=cnn (unparse.c) on graphs the command line cannot
 * make: built-in weights (INIT_DATA, as --weights and the ONNX importer give),
 * layers named as another framework names them, and graphs the language
 * cannot write. tests/unparse/run.sh checks the round trips of whole programs. */
#include "unit.h"
#include "../runtime/cnnrt.h"

#include <unistd.h>

TestSuite(unparse, .fini = unit_teardown);

static char *graph_text(const Graph *g)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    graph_print(f, g);
    fclose(f);
    char *s = arena_strdup(buf);
    free(buf);
    return s;
}

/* src's graph written as a program, which must compile to the same graph
 * text; returns the program. */
static const char *round_trip(const char *src)
{
    Graph *g = check_ok(src);
    const char *want = graph_text(g);
    char *text = unparse_program(g, NULL, NULL);
    cr_assert_not_null(text, "cannot write:\n%s", src);
    Graph *back = check_ok(text);
    cr_assert_str_eq(graph_text(back), want, "the program\n%s\nmakes another graph", text);
    return text;
}

Test(unparse, chain_and_names)
{
    const char *p = round_trip("network n\ninput x : [1, 8, 8]\nlabels y : class(3)\n"
                               "x -> conv(4, 3x3, pad = 1) -> relu -> flatten -> h\n"
                               "h -> dense(3) -> f\nloss = softmax_cross_entropy(f, y)\n");
    cr_assert(strstr(p, "x -> conv(4, 3x3, pad = 1) -> relu -> flatten -> h\n"), "%s", p);
    cr_assert(strstr(p, "h -> dense(3) -> f\n"), "%s", p);
}

Test(unparse, join_that_is_no_residual)
{
    /* add(branch, x): the operands in the other order than residual makes */
    const char *p = round_trip("input x : [4]\nh = x -> relu\nf = h -> dense(4) -> _ + h\n");
    cr_assert(strstr(p, "h -> dense(4) -> _ + h -> f"), "%s", p);
    round_trip("input x : [4]\na = x -> dense(4)\nb = x -> dense(4, name = \"other\")\nf = a * b - a\n");
}

Test(unparse, pool3d)
{
    /* 3-D pooling, five nodes in the graph, written back as one layer; the
     * same reshapes and poolings written by hand come back as it too */
    const char *p = round_trip("input x : [2, 4, 6, 6]\n"
                               "x -> avgpool(2x3x2, stride = 1, pad = same) -> maxpool(2, pad = 0x1x1, ceil = true) -> f\n");
    cr_assert(strstr(p, "x -> avgpool(2x3x2, stride = 1, pad = same) -> maxpool(2, pad = 0x1x1, ceil = true) -> f"),
              "%s", p);
    p = round_trip("input x : [2, 4, 6, 6]\nx -> reshape(8, 6, 6) -> maxpool(2) -> reshape(2, 4, 9) -> maxpool(2x1)\n"
                   "  -> reshape(2, 2, 3, 3) -> f\n");
    cr_assert(strstr(p, "x -> maxpool(2) -> f"), "%s", p);
    /* an intermediate value used twice: written as it is */
    p = round_trip("input x : [2, 4, 6, 6]\nx -> reshape(8, 6, 6) -> maxpool(2) -> m\n"
                   "m -> reshape(2, 4, 9) -> maxpool(2x1) -> reshape(2, 2, 3, 3) -> f\ng = m * m\noutput f\n");
    cr_assert(strstr(p, "reshape(2, 4, 9)"), "%s", p);
}

Test(unparse, residual_and_concat)
{
    const char *p = round_trip("input x : [4, 6, 6]\n"
                               "x -> residual(conv(4, 3x3, pad = 1) -> relu, shortcut = conv(4, 1x1))\n"
                               "  -> concat(_, maxpool(3, stride = 1, pad = 1), conv(2, 1x1) -> relu) -> f\n");
    cr_assert(strstr(p, "residual(") && strstr(p, "shortcut = conv(4, 1x1)") && strstr(p, "concat(_,"), "%s", p);
}

Test(unparse, maths_and_settings)
{
    round_trip("input x : [3, 4, 4]\ntarget t : [3, 4, 4]\nparam s : [3, 1, 1] = normal(0, 0.5)\n"
               "x -> (_ - 0.25) * s -> exp(-abs(_)) / (1 + sqrt(_ * _)) -> f\n"
               "loss = 0.5 * mse(f, t) - -2 * l1(s)\n"
               "train { optimizer = sgd(lr = 0.3, momentum = 0) batch = 7 seed = 9 schedule = exp(0.5) }\n"
               "data { scale = 0.25 mean = [0.1, 0.2, 0.3] std = 2 }\n");
}

/* The conv's and the dense's parameters named as PyTorch names them. */
Test(unparse, foreign_layer_names)
{
    Graph *g = check_ok("input x : [1, 6, 6]\nx -> conv(2, 3x3) -> flatten -> dense(3) -> f\n");
    const char *names[] = {"features.0.weight", "features.0.bias", "conv1.weight", "conv1.bias"};
    for (int i = 0; i < 4; i++)
        g->params[i].name = names[i];
    char *text = unparse_program(g, NULL, NULL);
    cr_assert_not_null(text);
    cr_assert(strstr(text, "conv(2, 3x3, name = \"features.0\")"), "%s", text);
    cr_assert(strstr(text, "dense(3, name = \"conv1\")"), "%s", text);
    Graph *back = check_ok(text);
    for (int i = 0; i < 4; i++)
        cr_assert_str_eq(back->params[i].name, names[i]);
}

Test(unparse, what_the_language_cannot_write)
{
    Graph *g = check_ok("input x : [1, 6, 6]\nx -> conv(2, 3x3, stride = 2) -> f\n");
    const Node *c = first_node(g, OP_CONV);
    ((Node *)c)->win.pb = 1;                 /* an ONNX pads = [0, 0, 1, 0] */
    cr_assert_null(unparse_program(g, NULL, NULL));
    g = check_ok("input x : [4]\nx -> dense(2) -> f\n");
    g->params[0].name = "w";                 /* not PREFIX.weight */
    cr_assert_null(unparse_program(g, NULL, NULL));
    g = check_ok("input x : [4]\nparam p : [4] = ones\nf = x * p\n");
    g->params[0].name = "onnx::Mul_7";       /* not an identifier */
    cr_assert_null(unparse_program(g, NULL, NULL));
}

/* Built-in weights: STEM.safetensors beside the program, under the program's names. */
Test(unparse, built_in_weights)
{
    Graph *g = check_ok("network w\ninput x : [4]\nparam s : [4] = ones\nx -> _ * s -> dense(2) -> f\n");
    for (int i = 0; i < g->nparams; i++) {
        int64_t n = shape_count(g->params[i].shape);
        float *v = arena_alloc(sizeof(float) * (size_t)n);
        for (int64_t k = 0; k < n; k++)
            v[k] = (float)(i * 100 + k) / 8;
        g->params[i].init = INIT_DATA, g->params[i].data = v;
    }
    char dir[] = "/tmp/unparse.XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    cr_assert(!unparse_write(g, NULL), "built-in weights cannot go to stdout");
    const char *path = arena_printf("%s/net.cnn", dir), *wpath = arena_printf("%s/net.safetensors", dir);
    cr_assert(unparse_write(g, path));
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    char text[4096] = {0};
    cr_assert_gt(fread(text, 1, sizeof text - 1, f), 0);
    fclose(f);
    cr_assert(strstr(text, "# built-in weights: net.safetensors"), "%s", text);
    cr_assert(strstr(text, "param s : [4]\n"), "an INIT_DATA param has no initializer:\n%s", text);
    rt_tensors t = {0};
    rt_err err = {{0}};
    cr_assert_eq(rt_st_read(wpath, &t, &err), 0, "%s", err.msg);
    cr_assert_eq(t.n, g->nparams);
    for (int i = 0; i < t.n; i++) {
        cr_assert_str_eq(t.t[i].name, g->params[i].name);
        cr_assert_eq(t.t[i].count, shape_count(g->params[i].shape));
        cr_assert(memcmp(t.t[i].data, g->params[i].data, sizeof(float) * (size_t)t.t[i].count) == 0);
    }
    cr_assert_str_eq(rt_st_meta(&t, "network"), "w");
    rt_st_free(&t);
    Graph *back = check_ok(text);
    cr_assert_str_eq(graph_text(back), graph_text(check_ok("network w\ninput x : [4]\nparam s : [4] = ones\n"
                                                           "x -> _ * s -> dense(2) -> f\n")));
    unlink(path), unlink(wpath), rmdir(dir);
}
