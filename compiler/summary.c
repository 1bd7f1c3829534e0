/* summary.c: `--summary` and the generated program's `info`: each layer's
 * output shape, parameters and FLOPs per example, the totals, and the memory
 * the program allocates to train at the configured batch. */
#include "cnnc.h"

#include <string.h>

/* Floating-point operations for one example (a multiply-add counts 2). */
int64_t node_flops(const Node *n)
{
    int64_t out = shape_count(n->shape), in = n->nin ? shape_count(n->in[0]->shape) : 0;
    const Window *w = &n->win;
    switch (n->op) {
    case OP_DENSE:     return 2 * out * in + (n->nin > 2 ? out : 0);
    case OP_CONV:      return 2 * out * (n->in[0]->shape.d[0] / w->groups) * w->kh * w->kw + (n->nin > 2 ? out : 0);
    case OP_MAXPOOL:
    case OP_AVGPOOL:   return out * w->kh * w->kw;
    case OP_GAP:       return in;
    case OP_MATMUL:    return 2 * out * n->in[0]->shape.d[n->in[0]->shape.rank - 1];
    case OP_SOFTMAX:   return 4 * out;
    case OP_L1NORM:
    case OP_L2NORM:    return 3 * out;
    case OP_LRN:       return out * (w->kh + 4);
    case OP_BATCHNORM: return 2 * out;
    case OP_SUM:
    case OP_MEAN:      return in;
    case OP_INPUT: case OP_PARAM: case OP_CONST: case OP_FLATTEN: case OP_CONCAT: case OP_DROPOUT: case OP_TRANSPOSE:
        return 0;
    default:           return out;
    }
}

/* 1234567 -> "1,234,567" */
static const char *grouped(int64_t v)
{
    char digits[32], *out = arena_alloc(48), *o = out;
    int n = snprintf(digits, sizeof digits, "%lld", (long long)v);
    for (int i = 0; i < n; i++) {
        if (i && digits[i - 1] != '-' && (n - i) % 3 == 0)
            *o++ = ',';
        *o++ = digits[i];
    }
    return out;
}

static int64_t node_params(const Graph *g, const Node *n)
{
    int64_t total = 0;
    for (int i = 0; i < n->nin; i++)
        if (n->in[i]->op == OP_PARAM && !g->params[n->in[i]->param].is_buffer)
            total += shape_count(n->in[i]->shape);
    return total;
}

/* A size for people: KiB below 1 MiB, MiB below 1 GiB, then GiB. */
static const char *size_str(int64_t bytes)
{
    double b = (double)bytes;
    if (b < 1024.0 * 1024)
        return arena_printf("%.1f KiB", b / 1024);
    if (b < 1024.0 * 1024 * 1024)
        return arena_printf("%.1f MiB", b / (1024.0 * 1024));
    return arena_printf("%.2f GiB", b / (1024.0 * 1024 * 1024));
}

/* One row of the layer table, its cells as printed. */
typedef struct {
    const char *cell[5];  /* #, layer, output, params, FLOPs */
} Row;

static const char *row_label(const Graph *g, const Node *n)
{
    if (n->op == OP_INPUT)
        return arena_printf("input %s", g->input_name);
    if (n->label && strcmp(n->label, op_name(n->op)) != 0)
        return arena_printf("%s (%s)", n->label, op_name(n->op));
    return op_name(n->op);
}

/* The table's columns, each as wide as its widest cell (and at least as
 * wide as it has always been: LeNet's table is the docs' example). The
 * first three are aligned left, the numbers right. */
static void print_rows(FILE *out, const Row *rows, int n)
{
    int width[5] = {4, 20, 16, 12, 14};
    for (int i = 0; i < n; i++)
        for (int c = 0; c < 5; c++) {
            int len = (int)strlen(rows[i].cell[c]);
            width[c] = len > width[c] ? len : width[c];
        }
    for (int i = 0; i < n; i++) {
        const char *const *r = rows[i].cell;
        fprintf(out, "%-*s %-*s %-*s %*s %*s\n", width[0], r[0], width[1], r[1], width[2], r[2], width[3], r[3],
                width[4], r[4]);
    }
}

void summary_print(FILE *out, const Graph *g)
{
    fprintf(out, "network %s: input %s %s, output %s\n\n", g->name, g->input_name,
            shape_str(g->input->shape), shape_str(g->output->shape));
    Row *rows = arena_alloc(sizeof *rows * (size_t)(g->nforward + 1));
    int nrows = 0;
    rows[nrows++] = (Row){{"#", "layer", "output", "params", "FLOPs"}};
    int64_t flops = 0, acts = 0;
    for (int i = 0; i < g->nforward; i++) {          /* not the gradients */
        const Node *n = g->nodes.at[i];
        if (n->op == OP_PARAM || n->op == OP_CONST)
            continue;
        rows[nrows] = (Row){{arena_printf("%d", nrows), row_label(g, n), shape_str(n->shape),
                             grouped(node_params(g, n)), grouped(node_flops(n))}};
        nrows++;
        flops += node_flops(n);
        if (n->batched)
            acts += shape_count(n->shape);
    }
    print_rows(out, rows, nrows);
    int64_t params = 0, buffers = 0;
    for (int i = 0; i < g->nparams; i++)
        *(g->params[i].is_buffer ? &buffers : &params) += shape_count(g->params[i].shape);
    fprintf(out, "\ntotal: %s parameters (%s)", grouped(params), size_str(params * 4));
    if (buffers)
        fprintf(out, " and %s buffer values", grouped(buffers));
    fprintf(out, "\nforward: %s FLOPs per example (%.3f MFLOP)\n", grouped(flops), flops / 1e6);
    fprintf(out, "activations: %s values per example (%s)\n", grouped(acts), size_str(acts * 4));
}
/* ---- memory ----------------------------------------------------------------- */

static int64_t padded(int64_t n) { return (n + 15) & ~(int64_t)15; }

typedef struct {
    const char *what, *size, *note;
} Line;

static void print_lines(FILE *out, const Line *line, int n)
{
    int w0 = 0, w1 = 0;
    for (int i = 0; i < n; i++) {
        w0 = (int)strlen(line[i].what) > w0 ? (int)strlen(line[i].what) : w0;
        w1 = (int)strlen(line[i].size) > w1 ? (int)strlen(line[i].size) : w1;
    }
    for (int i = 0; i < n; i++)
        fprintf(out, "  %-*s  %*s%s%s\n", w0, line[i].what, w1, line[i].size, *line[i].note ? "  " : "", line[i].note);
}

/* What the generated program allocates (runtime/net.c) to train at the
 * configured batch B and to run a forward call at B, on one thread:
 *   parameter block   param_floats: each parameter and batchnorm buffer
 *                     aligned to 16 floats
 *   gradients         param_floats (a block laid out as the parameters)
 *   momentum          param_floats
 *   training ws       train_ws_floats B + train_ws_fixed
 *   inference ws      ws_floats B + ws_fixed
 *   private scratch   private_floats (rt_private: one padded channel)
 * Each further thread has its own scratch (ws_fixed, private_floats, and
 * train_ws_fixed with a gradient block when the batch is split across
 * threads); its examples come out of the B. `./NAME bench --threads 1` at
 * the same batch reports the bytes the network really holds: the same
 * total. */
void summary_memory(FILE *out, const Lowered *l)
{
    const Graph *g = l->g;
    int64_t B = g->train.batch > 0 ? g->train.batch : 64, learned = 0, buffers = 0;
    for (int i = 0; i < g->nparams; i++)
        *(g->params[i].is_buffer ? &buffers : &learned) += padded(shape_count(g->params[i].shape));
    int64_t grads = l->train ? l->param_floats : 0;
    int64_t train = l->train ? l->train_ws_floats * B + l->train_ws_fixed : 0;
    int64_t infer = l->ws_floats * B + l->forward->ws_fixed;
    int64_t total = 4 * (l->param_floats + 2 * grads + train + infer + l->private_floats);
    int64_t more = l->forward->ws_fixed + l->private_floats +
                   (l->train && !l->train_serial ? l->param_floats + l->train_ws_fixed : 0);
    Line line[9];
    int n = 0;
    line[n++] = (Line){"parameters", size_str(4 * learned), ""};
    if (buffers)
        line[n++] = (Line){"batchnorm buffers", size_str(4 * buffers), "running means and variances"};
    if (l->train) {
        line[n++] = (Line){"gradients", size_str(4 * grads), ""};
        line[n++] = (Line){"momentum", size_str(4 * grads), ""};
        line[n++] = (Line){"training workspace", size_str(4 * train),
                           arena_printf("%s per example + %s scratch", size_str(4 * l->train_ws_floats),
                                        size_str(4 * l->train_ws_fixed))};
    }
    line[n++] = (Line){"inference workspace", size_str(4 * infer),
                       arena_printf("%s per example + %s scratch", size_str(4 * l->ws_floats),
                                    size_str(4 * l->forward->ws_fixed))};
    if (l->private_floats)
        line[n++] = (Line){"private scratch", size_str(4 * l->private_floats),
                           "one padded channel at a time (depthwise convolutions, pooling)"};
    line[n++] = (Line){"total", size_str(total), arena_printf("%s bytes", grouped(total))};
    fprintf(out, "\nmemory at batch %lld%s, one thread:\n", (long long)B,
            g->train.batch > 0 ? " (train { batch })" : " (the default; no train { batch })");
    print_lines(out, line, n);
    fprintf(out, "  each further thread adds %s: its own scratch%s\n", size_str(4 * more),
            !l->train ? "" : l->train_serial ? " (batch statistics: the training batch stays whole)" : " and gradients");
}
