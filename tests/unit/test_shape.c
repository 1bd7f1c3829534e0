/* test_shape.c: shape checking (shape.c, layers.c, settings.c): the output shape
 * of every layer and operator, parameter names, order, shapes, fans and
 * initializers, loss terms, and the train/data settings. */
#include "unit.h"

TestSuite(shape, .fini = unit_teardown);

/* The output shape of `x -> STAGES -> f` for an input of shape `in`. */
static Graph *net(const char *in, const char *stages)
{
    return check_ok(arena_printf("input x : %s\nx -> %s -> f\n", in, stages));
}

static Shape out(const char *in, const char *stages)
{
    Graph *g = net(in, stages);
    cr_assert_not_null(g->output);
    return g->output->shape;
}

/* The error a stage gives, with its location. */
static const char *stage_error(const char *in, const char *stages)
{
    Graph *g = check(arena_printf("input x : %s\nx -> %s -> f\n", in, stages));
    cr_assert_null(g, "`%s` on %s was accepted", stages, in);
    cr_assert_geq(diag_error_count(), 1);
    return diags();
}

#define S1(a) shape_of(1, (int64_t)(a))
#define S2(a, b) shape_of(2, (int64_t)(a), (int64_t)(b))
#define S3(a, b, c) shape_of(3, (int64_t)(a), (int64_t)(b), (int64_t)(c))

/* ---- layers ---------------------------------------------------------------- */

Test(shape, dense)
{
    assert_shape(out("[784]", "dense(100)"), S1(100));
    assert_shape(out("[784]", "fc(10)"), S1(10));
    assert_shape(out("[784]", "affine(3)"), S1(3));
    Graph *g = net("[20]", "dense(5)");
    assert_shape(param_named(g, "dense1.weight")->shape, S2(5, 20));
    assert_shape(param_named(g, "dense1.bias")->shape, S1(5));
    cr_assert_eq(g->output->op, OP_DENSE);
    cr_assert_eq(g->output->nin, 3);
}

Test(shape, dense_without_bias)
{
    Graph *g = net("[20]", "dense(5, bias = false)");
    cr_assert_eq(g->nparams, 1);
    cr_assert_str_eq(g->params[0].name, "dense1.weight");
    cr_assert_eq(g->output->nin, 2);
}

Test(shape, dense_needs_a_vector)
{
    const char *d = stage_error("[6, 4, 4]", "dense(10)");
    cr_assert(strstr(d, "t.cnn:2:6: error: dense expects a vector input but got [6, 4, 4]"), "%s", d);
    cr_assert(strstr(d, "note: insert `-> flatten` before it"), "%s", d);
}

Test(shape, conv_valid)
{
    assert_shape(out("[1, 28, 28]", "conv(6, 5x5)"), S3(6, 24, 24));
    assert_shape(out("[1, 28, 28]", "conv(6, 5)"), S3(6, 24, 24));
    assert_shape(out("[3, 10, 12]", "conv(4, 3x5)"), S3(4, 8, 8));
}

Test(shape, conv_padding_and_stride)
{
    assert_shape(out("[1, 28, 28]", "conv(6, 5x5, pad = 2)"), S3(6, 28, 28));
    assert_shape(out("[1, 28, 28]", "conv(4, 3, stride = 2)"), S3(4, 13, 13));
    assert_shape(out("[1, 28, 28]", "conv(4, 3, stride = 2, pad = 1)"), S3(4, 14, 14));
    assert_shape(out("[3, 32, 30]", "conv(8, 5x3, stride = 2x1, pad = 2x1)"), S3(8, 16, 30));
    assert_shape(out("[1, 7, 7]", "conv(2, 7)"), S3(2, 1, 1));
    Graph *g = net("[3, 32, 30]", "conv(8, 5x3, stride = 2x1, pad = 2x1)");
    Window w = g->output->win;
    cr_assert_eq(w.kh, 5); cr_assert_eq(w.kw, 3);
    cr_assert_eq(w.sh, 2); cr_assert_eq(w.sw, 1);
    cr_assert_eq(w.pt, 2); cr_assert_eq(w.pb, 2);
    cr_assert_eq(w.pl, 1); cr_assert_eq(w.pr, 1);
    assert_shape(param_named(g, "conv1.weight")->shape, shape_of(4, (int64_t)8, (int64_t)3, (int64_t)5, (int64_t)3));
    assert_shape(param_named(g, "conv1.bias")->shape, S1(8));
}

Test(shape, conv_same_keeps_height_and_width)
{
    assert_shape(out("[2, 8, 7]", "conv(3, 3x3, pad = same)"), S3(3, 8, 7));
    assert_shape(out("[2, 8, 7]", "conv(3, 5, pad = same)"), S3(3, 8, 7));
}

Test(shape, conv_same_with_even_kernels_pads_more_after)
{
    /* as PyTorch: total k-1, (k-1)/2 before, the rest after */
    Graph *g = net("[2, 8, 7]", "conv(3, 2x2, pad = same)");
    assert_shape(g->output->shape, S3(3, 8, 7));
    Window w = g->output->win;
    cr_assert_eq(w.pt, 0); cr_assert_eq(w.pb, 1);
    cr_assert_eq(w.pl, 0); cr_assert_eq(w.pr, 1);
    arena_release();
    g = net("[2, 8, 7]", "conv(3, 4x3, pad = same)");
    assert_shape(g->output->shape, S3(3, 8, 7));
    w = g->output->win;
    cr_assert_eq(w.pt, 1); cr_assert_eq(w.pb, 2);
    cr_assert_eq(w.pl, 1); cr_assert_eq(w.pr, 1);
}

Test(shape, conv_errors)
{
    const char *d = stage_error("[784]", "conv(6, 3x3)");
    cr_assert(strstr(d, "conv expects an image [C, H, W] input but got [784]"), "%s", d);
    d = stage_error("[1, 28, 28]", "conv(6, 29x29)");
    cr_assert(strstr(d, "conv's kernel 29x29 is larger than its input 28x28"), "%s", d);
    d = stage_error("[1, 28, 28]", "conv(6, 3x3, stride = 2, pad = same)");
    cr_assert(strstr(d, "t.cnn:2:37: error: pad=same needs stride 1"), "%s", d);
}

Test(shape, pools)
{
    assert_shape(out("[6, 28, 28]", "maxpool(2)"), S3(6, 14, 14));
    assert_shape(out("[6, 28, 28]", "avgpool(2)"), S3(6, 14, 14));
    assert_shape(out("[6, 27, 27]", "maxpool(2)"), S3(6, 13, 13));
    assert_shape(out("[6, 28, 28]", "maxpool(3, stride = 1, pad = 1)"), S3(6, 28, 28));
    assert_shape(out("[8, 16, 30]", "maxpool(3, stride = 2, pad = 1)"), S3(8, 8, 15));
    assert_shape(out("[8, 8, 15]", "avgpool(2x3, stride = 1x3)"), S3(8, 7, 5));
    Graph *g = net("[6, 28, 28]", "maxpool(2)");
    Window w = g->output->win;
    cr_assert_eq(w.sh, 2, "a pool's stride defaults to its kernel");
    cr_assert_eq(w.sw, 2);
    cr_assert_eq(g->nparams, 0);
}

Test(shape, pool_errors)
{
    const char *d = stage_error("[784]", "maxpool(2)");
    cr_assert(strstr(d, "maxpool expects an image [C, H, W] or volume [C, D, H, W] input but got [784]"), "%s", d);
    d = stage_error("[2, 4, 8, 8]", "maxpool(2x2)");
    cr_assert(strstr(d, "maxpool of a [C, D, H, W] value takes K or DxHxW, not HxW"), "%s", d);
    d = stage_error("[2, 8, 8]", "avgpool(2x2x2)");
    cr_assert(strstr(d, "avgpool of [2, 8, 8] takes K or HxW; DxHxW is for a [C, D, H, W] value"), "%s", d);
    d = stage_error("[2, 2, 8, 8]", "maxpool(3x2x2)");
    cr_assert(strstr(d, "maxpool's window (kernel 3x2x2, padding 0x0x0) does not fit its input 2x8x8"), "%s", d);
    d = stage_error("[1, 28, 28]", "maxpool(2, pad = 2)");
    cr_assert(strstr(d, "maxpool's window (kernel 2x2, padding 2x2) does not fit its input 28x28"), "%s", d);
    d = stage_error("[1, 4, 4]", "maxpool(2, stride = 1, dilation = 5)");
    cr_assert(strstr(d, "a window's taps could step over it"), "%s", d);
    d = stage_error("[1, 28, 28]", "avgpool(2, dilation = 2)");
    cr_assert(strstr(d, "avgpool"), "%s", d);
}

Test(shape, pools_padded_wide_and_dilated)
{
    assert_shape(out("[2, 8, 8]", "maxpool(3, stride = 1, pad = 2)"), S3(2, 10, 10));     /* past half the window */
    assert_shape(out("[2, 9, 10]", "maxpool(3, stride = 1, pad = 1, dilation = 2)"), S3(2, 7, 8));
    assert_shape(out("[2, 8, 8]", "avgpool(3, stride = 2, pad = 2, count_pad = true)"), S3(2, 5, 5));
}

Test(shape, axes_and_reshape)
{
    assert_shape(out("[3, 4, 5]", "softmax(axis = 1)"), S3(3, 4, 5));
    assert_shape(out("[3, 4, 5]", "softmax(axis = -1)"), S3(3, 4, 5));
    assert_shape(out("[3, 4, 5]", "concat(_, relu, axis = 2)"), S3(3, 4, 10));
    assert_shape(out("[3, 4, 5]", "concat(_, _, _, axis = -3)"), S3(9, 4, 5));
    assert_shape(out("[3, 4]", "concat(_, tanh, axis = 1)"), S2(3, 8));
    assert_shape(out("[3, 4, 5]", "reshape(6, 10)"), S2(6, 10));
    assert_shape(out("[60]", "reshape(3, 4, 5)"), S3(3, 4, 5));
    assert_shape(out("[3, 4]", "transpose"), S2(4, 3));
    const char *d = stage_error("[3, 4]", "softmax(axis = 2)");
    cr_assert(strstr(d, "softmax's axis 2 is not a dimension of its input [3, 4]"), "%s", d);
    d = stage_error("[3, 4]", "softmax");
    cr_assert(strstr(d, "softmax expects a vector"), "%s", d);
    d = stage_error("[3, 4]", "reshape(5, 2)");
    cr_assert(strstr(d, "reshape to [5, 2] needs 10 values, but its input [3, 4] has 12"), "%s", d);
    d = stage_error("[3, 4, 5]", "transpose");
    cr_assert(strstr(d, "transpose expects a matrix [m, n] input but got [3, 4, 5]"), "%s", d);
    d = stage_error("[3, 4]", "concat(_, _)");
    cr_assert(strstr(d, "concat joins [C, H, W] or [n] values, not [3, 4]"), "%s", d);
}

Test(shape, global_avgpool_and_flatten)
{
    assert_shape(out("[32, 7, 7]", "global_avgpool"), S1(32));
    assert_shape(out("[16, 5, 5]", "flatten"), S1(400));
    assert_shape(out("[10]", "flatten"), S1(10));
    assert_shape(out("[4, 6]", "flatten"), S1(24));
}

Test(shape, elementwise_layers_keep_the_shape)
{
    static const char *const layers[] = {
        "relu", "tanh", "sigmoid", "leaky_relu", "leaky_relu(0.2)", "dropout(0.5)", "batchnorm",
    };
    for (size_t i = 0; i < sizeof layers / sizeof layers[0]; i++) {
        assert_shape(out("[3, 5, 6]", layers[i]), S3(3, 5, 6));
        arena_release();
        assert_shape(out("[7]", layers[i]), S1(7));
        arena_release();
    }
    Graph *g = net("[7]", "leaky_relu(a = 0.2) -> dropout(0.25)");
    cr_assert_float_eq(first_node(g, OP_LEAKY)->alpha, 0.2f, 1e-7);
    cr_assert_float_eq(first_node(g, OP_DROPOUT)->alpha, 0.25f, 1e-7);
}

Test(shape, vector_layers)
{
    assert_shape(out("[10]", "softmax"), S1(10));
    assert_shape(out("[10]", "l1norm"), S1(10));
    assert_shape(out("[10]", "l2norm"), S1(10));
    const char *d = stage_error("[1, 28, 28]", "softmax");
    cr_assert(strstr(d, "softmax expects a vector input but got [1, 28, 28]"), "%s", d);
}

Test(shape, lrn)
{
    Graph *g = net("[8, 5, 5]", "lrn(3, alpha = 1e-3, beta = 0.5, k = 1)");
    assert_shape(g->output->shape, S3(8, 5, 5));
    cr_assert_eq(g->output->win.kh, 3);
    cr_assert_float_eq(g->output->alpha, 1e-3f, 1e-9);
    cr_assert_float_eq(g->output->beta, 0.5f, 1e-7);
    cr_assert_float_eq(g->output->k, 1.0f, 1e-7);
    arena_release();
    g = net("[8, 5, 5]", "lrn");
    cr_assert_eq(g->output->win.kh, 5);
    cr_assert_float_eq(g->output->alpha, 1e-4f, 1e-9);
    cr_assert_float_eq(g->output->beta, 0.75f, 1e-7);
    cr_assert_float_eq(g->output->k, 2.0f, 1e-7);
    const char *d = stage_error("[10]", "lrn");
    cr_assert(strstr(d, "lrn expects an image"), "%s", d);
}

Test(shape, batchnorm_parameters_and_buffers)
{
    Graph *g = net("[6, 4, 4]", "batchnorm(momentum = 0.2, eps = 1e-3)");
    cr_assert_eq(g->nparams, 4);
    static const char *const names[] = {
        "batchnorm1.weight", "batchnorm1.bias", "batchnorm1.running_mean", "batchnorm1.running_var",
    };
    for (int i = 0; i < 4; i++) {
        cr_assert_str_eq(g->params[i].name, names[i]);
        assert_shape(g->params[i].shape, S1(6));
        cr_assert(!g->params[i].is_weight, "%s is not a weight for l2(weights)", names[i]);
        cr_assert_eq(g->params[i].is_buffer, i >= 2, "%s", names[i]);
    }
    cr_assert_eq(g->params[0].init, INIT_ONES);
    cr_assert_eq(g->params[1].init, INIT_ZEROS);
    cr_assert_eq(g->params[2].init, INIT_ZEROS);
    cr_assert_eq(g->params[3].init, INIT_ONES);
    cr_assert_float_eq(g->output->momentum, 0.2f, 1e-7);
    cr_assert_float_eq(g->output->alpha, 1e-3f, 1e-9);
    cr_assert_eq(g->output->nin, 5);
}

Test(shape, batchnorm_on_a_matrix_is_an_error)
{
    const char *d = stage_error("[3, 5]", "batchnorm");
    cr_assert(strstr(d, "batchnorm expects [C, H, W] or [n] but got [3, 5]"), "%s", d);
}

Test(shape, concat_of_images_joins_channels)
{
    Graph *g = net("[16, 14, 14]", "concat(conv(8, 1x1), conv(16, 3x3, pad = 1), maxpool(3, stride = 1, pad = 1))");
    assert_shape(g->output->shape, S3(40, 14, 14));
    cr_assert_eq(g->output->op, OP_CONCAT);
    cr_assert_eq(g->output->nin, 3);
}

Test(shape, concat_of_vectors_joins_the_axis)
{
    assert_shape(out("[20]", "concat(dense(8), dense(4) -> tanh, _ * 2, sigmoid)"), S1(52));
    assert_shape(out("[20]", "concat(relu)"), S1(20));
}

Test(shape, concat_errors)
{
    const char *d = stage_error("[1, 28, 28]", "concat(conv(4, 3x3), conv(4, 1x1))");
    cr_assert(strstr(d, "concat's branch 2 gives [4, 28, 28], which cannot join [4, 26, 26]"), "%s", d);
    d = stage_error("[1, 28, 28]", "concat(flatten, conv(4, 1x1))");
    cr_assert(strstr(d, "concat's branch 2 gives [4, 28, 28], which cannot join [784]"), "%s", d);
}

Test(shape, residual)
{
    Graph *g = net("[8, 6, 6]", "residual(conv(8, 3x3, pad = 1) -> relu)");
    assert_shape(g->output->shape, S3(8, 6, 6));
    cr_assert_eq(g->output->op, OP_ADD);
    cr_assert_eq(g->output->in[0], g->input);
    const char *d = stage_error("[1, 6, 6]", "residual(conv(8, 3x3, pad = 1))");
    cr_assert(strstr(d, "residual's branch turns [1, 6, 6] into [8, 6, 6]; they must match"), "%s", d);
}

Test(shape, repeat_makes_fresh_parameters)
{
    Graph *g = net("[10]", "repeat(3, dense(10) -> relu)");
    assert_shape(g->output->shape, S1(10));
    cr_assert_eq(count_nodes(g, OP_DENSE), 3);
    cr_assert_eq(count_nodes(g, OP_RELU), 3);
    cr_assert_eq(g->nparams, 6);
    cr_assert_str_eq(g->params[0].name, "dense1.weight");
    cr_assert_str_eq(g->params[2].name, "dense2.weight");
    cr_assert_str_eq(g->params[5].name, "dense3.bias");
}

Test(shape, repeat_chains_shapes)
{
    assert_shape(out("[1, 32, 32]", "repeat(3, maxpool(2))"), S3(1, 4, 4));
}

/* ---- blocks ---------------------------------------------------------------- */

Test(shape, blocks_with_size_parameters)
{
    Graph *g = check_ok("input x : [3, 16, 16]\n"
                        "block cr(c, k) = conv(c, k, pad = same) -> relu\n"
                        "block two(c) = cr(c, 3x3) -> cr(c, 1x3)\n"
                        "x -> cr(8, 5) -> two(4) -> f\n");
    assert_shape(g->output->shape, S3(4, 16, 16));
    assert_shape(param_named(g, "conv1.weight")->shape, shape_of(4, (int64_t)8, (int64_t)3, (int64_t)5, (int64_t)5));
    assert_shape(param_named(g, "conv2.weight")->shape, shape_of(4, (int64_t)4, (int64_t)8, (int64_t)3, (int64_t)3));
    assert_shape(param_named(g, "conv3.weight")->shape, shape_of(4, (int64_t)4, (int64_t)4, (int64_t)1, (int64_t)3));
}

Test(shape, vgg_stage_block)
{
    Graph *g = check_ok("input x : [1, 28, 28]\n"
                        "block stage(c, n) = repeat(n, conv(c, 3x3, pad = 1) -> relu) -> maxpool(2)\n"
                        "x -> stage(32, 2) -> stage(64, 2) -> f\n");
    assert_shape(g->output->shape, S3(64, 7, 7));
    cr_assert_eq(count_nodes(g, OP_CONV), 4);
    cr_assert_str_eq(g->params[6].name, "conv4.weight");
}

Test(shape, recursive_blocks_are_errors)
{
    Graph *g = check("input x : [4]\nblock a = relu -> b\nblock b = tanh -> a\nx -> a -> f\n");
    cr_assert_null(g);
    cr_assert_eq(diag_error_count(), 1, "%s", diags());
    cr_assert(strstr(diags(), "block 'a' is recursive: a -> b -> a"), "%s", diags());
}

Test(shape, block_argument_count)
{
    Graph *g = check("input x : [4]\nblock fcr(n) = dense(n) -> relu\nx -> fcr(1, 2) -> f\n");
    cr_assert_null(g);
    cr_assert(strstr(diags(), "t.cnn:3:6: error: block 'fcr' takes 1 argument but got 2"), "%s", diags());
}

/* ---- maths --------------------------------------------------------------- */

Test(shape, matmul_variants)
{
    Graph *g = check_ok("input x : [4, 6]\n"
                        "param A : [3, 4]\nparam B : [6, 2]\nparam v : [4]\nparam w : [6]\n"
                        "m = A @ x\n"          /* [3,4] @ [4,6] */
                        "g = m @ B\n"          /* [3,6] @ [6,2] */
                        "q = m @ w\n"          /* [3,6] @ [6]   */
                        "r = v @ x\n"          /* [4] @ [4,6]   */
                        "f = r\n");
    const Node *mm[4];
    int k = 0;
    for (int i = 0; i < g->nodes.n && k < 4; i++)
        if (((Node *)g->nodes.at[i])->op == OP_MATMUL)
            mm[k++] = g->nodes.at[i];
    cr_assert_eq(k, 4);
    assert_shape(mm[0]->shape, S2(3, 6));
    assert_shape(mm[1]->shape, S2(3, 2));
    assert_shape(mm[2]->shape, S1(3));
    assert_shape(mm[3]->shape, S1(6));
}

Test(shape, matmul_errors)
{
    Graph *g = check("input x : [784]\nparam W : [10, 100]\nf = W @ x\n");
    cr_assert_null(g);
    cr_assert(strstr(diags(), "t.cnn:3:5: error: `@` cannot multiply [10, 100] by [784]"), "%s", diags());
    cr_assert(strstr(diags(), "note: the inner dimensions differ: 100 and 784"), "%s", diags());
    g = check("input x : [1, 28, 28]\nparam v : [28]\nf = v @ x\n");
    cr_assert_null(g);
    cr_assert(strstr(diags(), "`@` takes [m, k] @ [k], [m, k] @ [k, n], [k] @ [k, n] or stacks"), "%s", diags());
    /* stacks of matrices: the stack dimensions broadcast */
    g = check("input x : [2, 3, 4]\nparam P : [5, 1, 4, 6]\nf = x @ P\n");
    cr_assert_not_null(g, "%s", diags());
    cr_assert(shape_eq(g->output->shape, shape_of(4, 5, 2, 3, 6)), "%s", shape_str(g->output->shape));
    g = check("input x : [2, 3, 4]\nparam P : [3, 4, 6]\nf = x @ P\n");
    cr_assert_null(g);
    cr_assert(strstr(diags(), "dimension 0 is 2 on the left and 3 on the right"), "%s", diags());
}

Test(shape, broadcasting)
{
    Graph *g = check_ok("input x : [3, 5, 6]\n"
                        "param c : [3, 1, 1]\nparam r : [6]\nparam u : [5, 1]\n"
                        "a = x - c\nb = x + r\nd = u * r\ne = 2 / x\nf = a + b + e\n");
    int found = 0;
    for (int i = 0; i < g->nodes.n; i++) {
        const Node *n = g->nodes.at[i];
        if (n->label && strcmp(n->label, "d") == 0) {
            assert_shape(n->shape, S2(5, 6));
            cr_assert(!n->batched, "u * r depends on no input");
            found++;
        } else if (n->label && (strcmp(n->label, "a") == 0 || strcmp(n->label, "b") == 0 ||
                                strcmp(n->label, "e") == 0)) {
            assert_shape(n->shape, S3(3, 5, 6));
            cr_assert(n->batched);
            found++;
        }
    }
    cr_assert_eq(found, 4);
    assert_shape(g->output->shape, S3(3, 5, 6));
}

Test(shape, broadcasting_error)
{
    Graph *g = check("input x : [4]\nparam b : [3]\nf = x + b\n");
    cr_assert_null(g);
    cr_assert(strstr(diags(), "t.cnn:3:5: error: cannot broadcast [4] with [3] in `+`"), "%s", diags());
}

Test(shape, maths_functions_and_reductions)
{
    Graph *g = check_ok("input x : [5]\n"
                        "a = max(0, x)\nb = min(x, 1)\nc = exp(x) + log(x) + sqrt(x) + abs(x) + tanh(x)\n"
                        "d = sigmoid(x) * relu(x) - -x\n"
                        "s = sum(x)\nm = mean(x * x)\nf = a + b + c + d + s * m\n");
    assert_shape(g->output->shape, S1(5));
    cr_assert_not_null(first_node(g, OP_MAX));
    cr_assert_not_null(first_node(g, OP_MIN));
    cr_assert_not_null(first_node(g, OP_EXP));
    cr_assert_not_null(first_node(g, OP_LOG));
    cr_assert_not_null(first_node(g, OP_SQRT));
    cr_assert_not_null(first_node(g, OP_ABS));
    cr_assert_not_null(first_node(g, OP_TANH));
    cr_assert_not_null(first_node(g, OP_SIGMOID));
    cr_assert_not_null(first_node(g, OP_RELU));
    cr_assert_not_null(first_node(g, OP_NEG));
    cr_assert_eq(first_node(g, OP_SUM)->shape.rank, 0);
    cr_assert_eq(first_node(g, OP_MEAN)->shape.rank, 0);
}

Test(shape, placeholder_stages)
{
    Graph *g = check_ok("input x : [8]\nparam W : [6, 8]\nparam b : [6]\n"
                        "x -> W @ _ + b -> _ * sigmoid(_) -> max(0, \xC2\xB7) -> f\n");
    assert_shape(g->output->shape, S1(6));
    cr_assert_eq(g->output->op, OP_MAX);
    /* `_` twice in one stage is the same value */
    const Node *mul = first_node(g, OP_MUL);
    cr_assert_eq(mul->in[1]->op, OP_SIGMOID);
    cr_assert_eq(mul->in[1]->in[0], mul->in[0]);
}

Test(shape, constants_are_unbatched_scalars)
{
    Graph *g = check_ok("input x : [3]\nf = x * 2\n");
    const Node *c = first_node(g, OP_CONST);
    cr_assert_not_null(c);
    cr_assert_eq(c->shape.rank, 0);
    cr_assert(!c->batched);
    cr_assert_float_eq(c->value, 2.0f, 0);
    cr_assert(g->input->batched);
    cr_assert(g->output->batched);
}

/* ---- parameters ---------------------------------------------------------- */

static const char lenet[] =
    "network lenet\n"
    "input  x : [1, 28, 28]\n"
    "labels y : class(10)\n"
    "x -> conv(6, 5x5, pad = 2) -> relu -> maxpool(2)\n"
    "  -> conv(16, 5x5) -> relu -> maxpool(2)\n"
    "  -> flatten\n"
    "  -> dense(120) -> relu\n"
    "  -> dense(84) -> relu\n"
    "  -> dense(10) -> f\n"
    "loss = softmax_cross_entropy(f, y)\n";

Test(shape, lenet_parameter_names_and_order)
{
    Graph *g = check_ok(lenet);
    static const char *const names[] = {
        "conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "dense1.weight",
        "dense1.bias", "dense2.weight", "dense2.bias", "dense3.weight", "dense3.bias",
    };
    cr_assert_eq(g->nparams, 10);
    for (int i = 0; i < 10; i++)
        cr_assert_str_eq(g->params[i].name, names[i]);
    assert_shape(g->params[0].shape, shape_of(4, (int64_t)6, (int64_t)1, (int64_t)5, (int64_t)5));
    assert_shape(g->params[2].shape, shape_of(4, (int64_t)16, (int64_t)6, (int64_t)5, (int64_t)5));
    assert_shape(g->params[4].shape, S2(120, 400));
    assert_shape(g->params[8].shape, S2(10, 84));
    assert_shape(g->output->shape, S1(10));
    cr_assert_str_eq(g->name, "lenet");
}

Test(shape, lenet_has_61706_parameters)
{
    Graph *g = check_ok(lenet);
    int64_t total = 0;
    for (int i = 0; i < g->nparams; i++)
        if (!g->params[i].is_buffer)
            total += shape_count(g->params[i].shape);
    cr_assert_eq(total, 61706);
}

Test(shape, fan_in_and_fan_out)
{
    Graph *g = check_ok(lenet);
    const Param *p = param_named(g, "conv1.weight");       /* [6, 1, 5, 5] */
    cr_assert_eq(p->fan_in, 25);
    cr_assert_eq(p->fan_out, 150);
    p = param_named(g, "conv2.weight");                    /* [16, 6, 5, 5] */
    cr_assert_eq(p->fan_in, 150);
    cr_assert_eq(p->fan_out, 400);
    p = param_named(g, "dense1.weight");                   /* [120, 400] */
    cr_assert_eq(p->fan_in, 400);
    cr_assert_eq(p->fan_out, 120);
    arena_release();
    g = check_ok("input x : [784]\nparam W1 : [100, 784] = xavier\nparam b : [100]\nf = W1 @ x + b\n");
    p = param_named(g, "W1");
    cr_assert_eq(p->fan_in, 784);
    cr_assert_eq(p->fan_out, 100);
    cr_assert_eq(p->init, INIT_XAVIER);
    cr_assert(p->is_weight);
    p = param_named(g, "b");
    cr_assert_eq(p->init, INIT_HE, "an explicit param without initializer defaults to he");
    cr_assert(!p->is_weight);
}

Test(shape, weights_and_biases)
{
    Graph *g = check_ok(lenet);
    for (int i = 0; i < g->nparams; i++) {
        bool weight = strstr(g->params[i].name, ".weight") != NULL;
        cr_assert_eq(g->params[i].is_weight, weight, "%s", g->params[i].name);
        cr_assert(!g->params[i].is_buffer);
        cr_assert_eq(g->params[i].init, weight ? INIT_HE : INIT_ZEROS, "%s", g->params[i].name);
    }
}

Test(shape, named_layers_and_initializers)
{
    Graph *g = check_ok("input x : [20]\n"
                        "x -> dense(8, name = \"fc1\", init = uniform(-0.1, 0.1)) -> relu\n"
                        "  -> dense(4, init = normal(0, 0.5), bias_init = constant(0.25))\n"
                        "  -> dense(3, name = \"head\", init = xavier, bias = false) -> f\n");
    cr_assert_eq(g->nparams, 5);
    cr_assert_str_eq(g->params[0].name, "fc1.weight");
    cr_assert_str_eq(g->params[1].name, "fc1.bias");
    cr_assert_str_eq(g->params[2].name, "dense1.weight");
    cr_assert_str_eq(g->params[3].name, "dense1.bias");
    cr_assert_str_eq(g->params[4].name, "head.weight");
    cr_assert_eq(g->params[0].init, INIT_UNIFORM);
    cr_assert_float_eq(g->params[0].a, -0.1f, 1e-7);
    cr_assert_float_eq(g->params[0].b, 0.1f, 1e-7);
    cr_assert_eq(g->params[1].init, INIT_ZEROS);
    cr_assert_eq(g->params[2].init, INIT_NORMAL);
    cr_assert_float_eq(g->params[2].a, 0.0f, 0);
    cr_assert_float_eq(g->params[2].b, 0.5f, 1e-7);
    cr_assert_eq(g->params[3].init, INIT_CONSTANT);
    cr_assert_float_eq(g->params[3].a, 0.25f, 1e-7);
    cr_assert_eq(g->params[4].init, INIT_XAVIER);
}

Test(shape, explicit_params_in_source_order)
{
    Graph *g = check_ok("input x : [10]\n"
                        "param A : [8, 10] = ones\n"
                        "x -> dense(8) -> h\n"
                        "param B : [8] = constant(2)\n"
                        "f = A @ x + h * B\n");
    cr_assert_eq(g->nparams, 4);
    cr_assert_str_eq(g->params[0].name, "A");
    cr_assert_str_eq(g->params[1].name, "dense1.weight");
    cr_assert_str_eq(g->params[2].name, "dense1.bias");
    cr_assert_str_eq(g->params[3].name, "B");
    cr_assert_eq(g->params[0].init, INIT_ONES);
    cr_assert_eq(g->params[3].init, INIT_CONSTANT);
    cr_assert_float_eq(g->params[3].a, 2.0f, 0);
}

Test(shape, layer_kinds_are_counted_separately)
{
    Graph *g = check_ok("input x : [1, 8, 8]\n"
                        "x -> conv(2, 3) -> batchnorm -> conv(2, 3) -> flatten -> dense(4) -> batchnorm -> dense(2) -> f\n");
    static const char *const names[] = {
        "conv1.weight", "conv1.bias", "batchnorm1.weight", "batchnorm1.bias", "batchnorm1.running_mean",
        "batchnorm1.running_var", "conv2.weight", "conv2.bias", "dense1.weight", "dense1.bias",
        "batchnorm2.weight", "batchnorm2.bias", "batchnorm2.running_mean", "batchnorm2.running_var",
        "dense2.weight", "dense2.bias",
    };
    cr_assert_eq(g->nparams, 16);
    for (int i = 0; i < 16; i++)
        cr_assert_str_eq(g->params[i].name, names[i]);
}

/* ---- outputs, labels, loss ------------------------------------------------- */

Test(shape, output_defaults_to_the_last_value_before_the_loss)
{
    Graph *g = check_ok("input x : [6]\nlabels y : class(4)\n"
                        "x -> dense(4) -> f\np = f -> softmax\nloss = softmax_cross_entropy(f, y)\nq = p * 2\n");
    cr_assert_eq(g->output->op, OP_SOFTMAX);
    arena_release();
    g = check_ok("input x : [6]\nlabels y : class(4)\noutput p\n"
                 "x -> dense(4) -> f\np = f -> softmax\nloss = softmax_cross_entropy(f, y)\n");
    cr_assert_eq(g->output->op, OP_SOFTMAX);
    cr_assert_eq(g->loss[0].f->op, OP_DENSE);
}

Test(shape, labels_and_target)
{
    Graph *g = check_ok("input x : [6]\nlabels y : class(4)\nx -> dense(4) -> f\n");
    cr_assert_eq(g->label_kind, LABELS_CLASS);
    cr_assert_eq(g->nclasses, 4);
    cr_assert_str_eq(g->label_name, "y");
    cr_assert_str_eq(g->input_name, "x");
    arena_release();
    g = check_ok("input x : [6]\ntarget t : [3]\nx -> dense(3) -> f\nloss = mse(f, t)\n");
    cr_assert_eq(g->label_kind, LABELS_TARGET);
    assert_shape(g->target_shape, S1(3));
    cr_assert_eq(g->nloss, 1);
    cr_assert_eq(g->loss[0].kind, LOSS_MSE);
}

Test(shape, loss_with_regularization)
{
    Graph *g = check_ok("input x : [1, 28, 28]\nlabels y : class(10)\n"
                        "x -> conv(4, 3) -> flatten -> dense(10) -> f\n"
                        "loss = softmax_cross_entropy(f, y) + 1e-4 * l2(weights)\n");
    cr_assert(g->has_loss);
    cr_assert_eq(g->nloss, 2);
    cr_assert_eq(g->loss[0].kind, LOSS_SOFTMAX_CE);
    cr_assert_float_eq(g->loss[0].coef, 1.0f, 0);
    cr_assert_eq(g->loss[0].f, g->output);
    cr_assert_eq(g->loss[1].kind, LOSS_L2);
    cr_assert_float_eq(g->loss[1].coef, 1e-4f, 1e-10);
    cr_assert_null(g->loss[1].f);
    cr_assert_eq(g->loss[1].nparams, 2);
    cr_assert_str_eq(g->params[g->loss[1].params[0]].name, "conv1.weight");
    cr_assert_str_eq(g->params[g->loss[1].params[1]].name, "dense1.weight");
}

Test(shape, loss_of_named_params)
{
    Graph *g = check_ok("input x : [784]\nlabels y : class(10)\n"
                        "param W1 : [100, 784] = he\nparam b1 : [100] = zeros\n"
                        "param W2 : [10, 100] = he\nparam b2 : [10] = zeros\n"
                        "x -> W1 @ _ + b1 -> max(0, _) -> h\nf = W2 @ h + b2\n"
                        "loss = softmax_cross_entropy(f, y) + 1e-4 * l2(W1, W2) - 0.5 * l1(b1)\n");
    cr_assert_eq(g->nloss, 3);
    cr_assert_eq(g->loss[1].nparams, 2);
    cr_assert_eq(g->loss[1].params[0], 0);
    cr_assert_eq(g->loss[1].params[1], 2);
    cr_assert_eq(g->loss[2].kind, LOSS_L1);
    cr_assert_float_eq(g->loss[2].coef, -0.5f, 1e-7);
    cr_assert_eq(g->loss[2].params[0], 1);
}

Test(shape, loss_coefficients_on_either_side)
{
    Graph *g = check_ok("input x : [10]\nlabels y : class(2)\nx -> dense(2) -> f\n"
                        "loss = softmax_cross_entropy(f, y) * 0.5 + l2(weights) / 4 - -svm_hinge(f, y, margin = 2)\n");
    cr_assert_eq(g->nloss, 3);
    cr_assert_float_eq(g->loss[0].coef, 0.5f, 1e-7);
    cr_assert_float_eq(g->loss[1].coef, 0.25f, 1e-7);
    cr_assert_eq(g->loss[2].kind, LOSS_SVM_HINGE);
    cr_assert_float_eq(g->loss[2].coef, 1.0f, 1e-7);
    cr_assert_float_eq(g->loss[2].margin, 2.0f, 1e-7);
}

Test(shape, svm_margin_defaults_to_one)
{
    Graph *g = check_ok("input x : [10]\nlabels y : class(3)\nx -> dense(3) -> f\nloss = svm_hinge(f, y)\n");
    cr_assert_eq(g->loss[0].kind, LOSS_SVM_HINGE);
    cr_assert_float_eq(g->loss[0].margin, 1.0f, 0);
}

Test(shape, class_count_must_match)
{
    Graph *g = check("input x : [10]\nlabels y : class(3)\nx -> dense(4) -> f\nloss = softmax_cross_entropy(f, y)\n");
    cr_assert_null(g);
    cr_assert(strstr(diags(), "t.cnn:4:30: error: softmax_cross_entropy needs scores of shape [3]"), "%s", diags());
}

/* ---- settings ---------------------------------------------------------------- */

Test(shape, train_defaults)
{
    Graph *g = check_ok("input x : [4]\nx -> relu -> f\n");
    TrainCfg t = g->train;
    cr_assert_float_eq(t.lr, 0.01f, 1e-9);
    cr_assert_float_eq(t.momentum, 0.9f, 1e-7);
    cr_assert(!t.nesterov);
    cr_assert_eq(t.batch, 64);
    cr_assert_eq(t.epochs, 10);
    cr_assert_eq(t.schedule, SCHED_CONSTANT);
    cr_assert_eq(t.seed, 1);
    cr_assert_float_eq(t.weight_decay, 0.0f, 0);
    cr_assert_eq(g->data.train.kind, DATA_NONE);
    cr_assert_eq(g->data.test.kind, DATA_NONE);
    cr_assert_float_eq(g->data.scale, 0.0f, 0);   /* automatic: 1/255 for bytes, 1 for CSV */
}

Test(shape, train_settings)
{
    Graph *g = check_ok("input x : [4]\nx -> relu -> f\n"
                        "train {\n"
                        "  optimizer = sgd(lr = 0.05, momentum = 0.8, nesterov = true)\n"
                        "  weight_decay = 5e-4\n"
                        "  batch = 128\n"
                        "  epochs = 15\n"
                        "  schedule = step(every = 6, factor = 0.2)\n"
                        "  seed = 42\n"
                        "}\n");
    TrainCfg t = g->train;
    cr_assert_float_eq(t.lr, 0.05f, 1e-9);
    cr_assert_float_eq(t.momentum, 0.8f, 1e-7);
    cr_assert(t.nesterov);
    cr_assert_float_eq(t.weight_decay, 5e-4f, 1e-10);
    cr_assert_eq(t.batch, 128);
    cr_assert_eq(t.epochs, 15);
    cr_assert_eq(t.schedule, SCHED_STEP);
    cr_assert_eq(t.step_every, 6);
    cr_assert_float_eq(t.step_factor, 0.2f, 1e-7);
    cr_assert_eq(t.seed, 42);
}

Test(shape, schedules)
{
    Graph *g = check_ok("input x : [4]\nx -> relu -> f\ntrain { schedule = cosine }\n");
    cr_assert_eq(g->train.schedule, SCHED_COSINE);
    arena_release();
    g = check_ok("input x : [4]\nx -> relu -> f\ntrain { schedule = exp(gamma = 0.9) }\n");
    cr_assert_eq(g->train.schedule, SCHED_EXP);
    cr_assert_float_eq(g->train.exp_gamma, 0.9f, 1e-7);
    arena_release();
    g = check_ok("input x : [4]\nx -> relu -> f\ntrain { schedule = exp(0.5) }\n");
    cr_assert_float_eq(g->train.exp_gamma, 0.5f, 1e-7);
    arena_release();
    g = check_ok("input x : [4]\nx -> relu -> f\ntrain { schedule = step(3, 0.5) }\n");
    cr_assert_eq(g->train.schedule, SCHED_STEP);
    cr_assert_eq(g->train.step_every, 3);
    arena_release();
    g = check_ok("input x : [4]\nx -> relu -> f\ntrain { schedule = constant  optimizer = sgd(0.2) }\n");
    cr_assert_eq(g->train.schedule, SCHED_CONSTANT);
    cr_assert_float_eq(g->train.lr, 0.2f, 1e-7);
}

Test(shape, settings_errors)
{
    Graph *g = check("input x : [4]\nx -> relu -> f\ntrain { epoch = 5  batch = 0 }\n");
    cr_assert_null(g);
    cr_assert_eq(diag_error_count(), 2, "%s", diags());
    cr_assert(strstr(diags(), "t.cnn:3:9: error: unknown train setting 'epoch'"), "%s", diags());
    cr_assert(strstr(diags(), "note: did you mean 'epochs'?"), "%s", diags());
    cr_assert(strstr(diags(), "t.cnn:3:28: error: batch must be a whole number"), "%s", diags());
}

Test(shape, data_settings)
{
    Graph *g = check_ok("input x : [1, 28, 28]\nx -> flatten -> f\n"
                        "data {\n"
                        "  test = idx(\"/d/t10k-images-idx3-ubyte.gz\", \"/d/t10k-labels-idx1-ubyte.gz\")\n"
                        "  scale = 1 / 255\n"
                        "}\n");
    cr_assert_eq(g->data.test.kind, DATA_IDX);
    cr_assert_str_eq(g->data.test.path, "/d/t10k-images-idx3-ubyte.gz");
    cr_assert_str_eq(g->data.test.labels, "/d/t10k-labels-idx1-ubyte.gz");
    cr_assert_float_eq(g->data.scale, 1.0f / 255, 1e-9);
    cr_assert_eq(g->data.train.kind, DATA_NONE);
    arena_release();
    g = check_ok("input x : [4]\nx -> relu -> f\ndata { test = csv(\"iris.csv\", label = 4) }\n");
    cr_assert_eq(g->data.test.kind, DATA_CSV);
    cr_assert_str_eq(g->data.test.path, "iris.csv");
    cr_assert_eq(g->data.test.label_col, 4);
}

/* ---- names ------------------------------------------------------------------- */

Test(shape, network_name_defaults_to_the_file_stem)
{
    const Source *s = unit_source_named("dir/my-net.v2.cnn", "input x : [4]\nx -> relu -> f\n");
    Graph *g = shape_check(parse_program(s));
    cr_assert_not_null(g, "%s", diags());
    cr_assert_str_eq(g->name, "my_net");
    s = unit_source_named("3d.cnn", "input x : [4]\nx -> relu -> f\n");
    g = shape_check(parse_program(s));
    cr_assert_not_null(g, "%s", diags());
    cr_assert_str_eq(g->name, "net_3d");
}

Test(shape, unknown_names_suggest_the_closest)
{
    Graph *g = check("input x : [784]\nparam Weight : [10, 784]\nf = Wieght @ x\n");
    cr_assert_null(g);
    cr_assert(strstr(diags(), "t.cnn:3:5: error: unknown name 'Wieght'"), "%s", diags());
    cr_assert(strstr(diags(), "note: did you mean 'Weight'?"), "%s", diags());
    arena_release();
    g = check("input x : [784]\nx -> dens(10) -> f\n");
    cr_assert_null(g);
    cr_assert(strstr(diags(), "unknown layer 'dens'"), "%s", diags());
    cr_assert(strstr(diags(), "note: did you mean 'dense'?"), "%s", diags());
}

Test(shape, several_errors_in_one_run)
{
    Graph *g = check("input x : [784]\n"
                     "a = x -> conv(4, 3)\n"
                     "b = x -> maxpool(2)\n"
                     "c = x -> softmax -> dense(10, bias = maybe)\n");
    cr_assert_null(g);
    cr_assert_eq(diag_error_count(), 3, "%s", diags());
}
