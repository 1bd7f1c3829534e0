/* summary.c: `--summary`: each layer's output shape, parameters and FLOPs per
 * example, then the totals and the activation memory per example. */
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
    case OP_MATMUL:    return 2 * out * n->in[1]->shape.d[0];
    case OP_SOFTMAX:   return 4 * out;
    case OP_L1NORM:
    case OP_L2NORM:    return 3 * out;
    case OP_LRN:       return out * (w->kh + 4);
    case OP_BATCHNORM: return 2 * out;
    case OP_SUM:
    case OP_MEAN:      return in;
    case OP_INPUT: case OP_PARAM: case OP_CONST: case OP_FLATTEN: case OP_CONCAT: case OP_DROPOUT:
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

void summary_print(FILE *out, const Graph *g)
{
    fprintf(out, "network %s: input %s %s, output %s\n\n", g->name, g->input_name,
            shape_str(g->input->shape), shape_str(g->output->shape));
    fprintf(out, "%-4s %-20s %-16s %12s %14s\n", "#", "layer", "output", "params", "FLOPs");
    int64_t flops = 0, acts = 0, row = 0;
    for (int i = 0; i < g->nforward; i++) {          /* not the gradients */
        const Node *n = g->nodes.at[i];
        if (n->op == OP_PARAM || n->op == OP_CONST)
            continue;
        const char *label = n->op == OP_INPUT ? arena_printf("input %s", g->input_name)
                          : n->label && n->op != OP_PARAM ? arena_printf("%s (%s)", n->label, op_name(n->op))
                          : op_name(n->op);
        if (n->label && strcmp(n->label, op_name(n->op)) == 0)
            label = n->label;
        fprintf(out, "%-4lld %-20s %-16s %12s %14s\n", (long long)++row, label, shape_str(n->shape),
                grouped(node_params(g, n)), grouped(node_flops(n)));
        flops += node_flops(n);
        if (n->batched)
            acts += shape_count(n->shape);
    }
    int64_t params = 0, buffers = 0;
    for (int i = 0; i < g->nparams; i++)
        *(g->params[i].is_buffer ? &buffers : &params) += shape_count(g->params[i].shape);
    fprintf(out, "\ntotal: %s parameters (%.1f KiB)", grouped(params), params * 4 / 1024.0);
    if (buffers)
        fprintf(out, " and %s buffer values", grouped(buffers));
    fprintf(out, "\nforward: %s FLOPs per example (%.3f MFLOP)\n", grouped(flops), flops / 1e6);
    fprintf(out, "activations: %s values per example (%.1f KiB)\n", grouped(acts), acts * 4 / 1024.0);
}

static const char *kib(int64_t floats) { return arena_printf("%.1f KiB", floats * 4 / 1024.0); }

/* The workspace as planned (plan.c): what NAME_new and a call allocate. */
void summary_memory(FILE *out, const Lowered *l, int64_t batch)
{
    fprintf(out, "\nmemory, as planned (floats are 4 bytes):\n");
    fprintf(out, "  parameters:  %s\n", kib(l->param_floats));
    fprintf(out, "  inference:   %s per example + %s per thread; batch %lld, one thread: %s\n", kib(l->ws_floats),
            kib(l->forward->ws_fixed), (long long)batch, kib(l->ws_floats * batch + l->forward->ws_fixed));
    if (l->train)
        fprintf(out, "  training:    %s per example + %s per thread; batch %lld, one thread: %s\n",
                kib(l->train_ws_floats), kib(l->train_ws_fixed), (long long)batch,
                kib(l->train_ws_floats * batch + l->train_ws_fixed));
}
