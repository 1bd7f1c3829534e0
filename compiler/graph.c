/* graph.c: the operator graph: construction, shapes, the --emit=graph and
 * --emit=dot printers, and a consistency checker run between stages. */
#include "cnnc.h"

#include <stdlib.h>
#include <string.h>

static const char *const op_names[OP_COUNT] = {
    [OP_INPUT] = "input", [OP_PARAM] = "param", [OP_CONST] = "const",
    [OP_DENSE] = "dense", [OP_CONV] = "conv", [OP_MAXPOOL] = "maxpool",
    [OP_AVGPOOL] = "avgpool", [OP_GAP] = "global_avgpool", [OP_SOFTMAX] = "softmax",
    [OP_L1NORM] = "l1norm", [OP_L2NORM] = "l2norm", [OP_FLATTEN] = "flatten",
    [OP_DROPOUT] = "dropout", [OP_BATCHNORM] = "batchnorm", [OP_LRN] = "lrn",
    [OP_CONCAT] = "concat", [OP_TRANSPOSE] = "transpose", [OP_RELU] = "relu", [OP_TANH] = "tanh",
    [OP_SIGMOID] = "sigmoid", [OP_LEAKY] = "leaky_relu", [OP_EXP] = "exp",
    [OP_LOG] = "log", [OP_SQRT] = "sqrt", [OP_ABS] = "abs", [OP_NEG] = "neg",
    [OP_ADD] = "add", [OP_SUB] = "sub", [OP_MUL] = "mul", [OP_DIV] = "div",
    [OP_MAX] = "max", [OP_MIN] = "min", [OP_MATMUL] = "matmul", [OP_SUM] = "sum",
    [OP_MEAN] = "mean", [OP_LOSS_GRAD] = "loss_grad", [OP_DENSE_DX] = "dense_dx",
    [OP_DENSE_DW] = "dense_dw", [OP_CONV_DX] = "conv_dx", [OP_CONV_DW] = "conv_dw",
    [OP_CHANNEL_SUM] = "channel_sum", [OP_MAXPOOL_DX] = "maxpool_dx", [OP_AVGPOOL_DX] = "avgpool_dx",
    [OP_GAP_DX] = "global_avgpool_dx", [OP_SOFTMAX_DX] = "softmax_dx", [OP_L1NORM_DX] = "l1norm_dx",
    [OP_L2NORM_DX] = "l2norm_dx", [OP_LRN_DX] = "lrn_dx", [OP_BN_DX] = "batchnorm_dx",
    [OP_BN_DGAMMA] = "batchnorm_dgamma", [OP_DROPOUT_DX] = "dropout_dx", [OP_SLICE] = "slice",
    [OP_SUM_TO] = "sum_to", [OP_MATMUL_DA] = "matmul_da", [OP_MATMUL_DB] = "matmul_db",
    [OP_EXPAND] = "expand", [OP_STEP] = "step", [OP_GE] = "ge", [OP_CLIP] = "clip", [OP_INSIDE] = "inside",
    [OP_FILL] = "fill", [OP_MAXPOOL_IDX] = "maxpool_indices", [OP_WRAP] = "wrap",
    [OP_BN_EXAMPLE] = "batchnorm_example",
};

const char *op_name(OpKind op)
{
    return op < OP_COUNT && op_names[op] ? op_names[op] : "?";
}

Node *graph_node(Graph *g, OpKind op, Loc loc, Shape shape, int nin, Node **in)
{
    /* the backward pass may add up to seven nodes per forward one */
    if (g->nodes.n >= (g->nforward ? 8 * MAX_NODES : MAX_NODES)) {
        error_at(loc, "the network has more than %d operators", MAX_NODES);
        return NULL;
    }
    int64_t total = 1;
    for (int i = 0; i < shape.rank; i++)
        if (!mul_ok(total, shape.d[i], &total) || total > MAX_TENSOR_ELEMS) {
            error_at(loc, "this value would have shape %s, more than 2^31 - 1 elements", shape_str(shape));
            return NULL;
        }
    Node *n = arena_alloc(sizeof *n);
    n->op = op, n->loc = loc, n->shape = shape, n->nin = nin, n->param = -1;
    n->id = g->nodes.n;
    n->in = arena_alloc(sizeof(Node *) * (size_t)(nin ? nin : 1));
    for (int i = 0; i < nin; i++) {
        n->in[i] = in[i];
        n->batched |= in[i]->batched;
    }
    vec_push(&g->nodes, n);
    return n;
}

int graph_param(Graph *g, Param p)
{
    if (g->nparams == g->capparams) {
        int cap = g->capparams ? 2 * g->capparams : 16;
        Param *at = arena_alloc(sizeof(Param) * (size_t)cap);
        if (g->nparams)
            memcpy(at, g->params, sizeof(Param) * (size_t)g->nparams);
        g->params = at, g->capparams = cap;
    }
    g->params[g->nparams] = p;
    return g->nparams++;
}

int64_t shape_count(Shape s)
{
    int64_t n = 1;
    for (int i = 0; i < s.rank; i++)
        n *= s.d[i];
    return n;
}

Shape shape_of(int rank, ...)
{
    Shape s = {.rank = rank};
    va_list ap;
    va_start(ap, rank);
    for (int i = 0; i < rank; i++)
        s.d[i] = va_arg(ap, int64_t);
    va_end(ap);
    return s;
}

bool shape_eq(Shape a, Shape b)
{
    if (a.rank != b.rank)
        return false;
    for (int i = 0; i < a.rank; i++)
        if (a.d[i] != b.d[i])
            return false;
    return true;
}

char *shape_str(Shape s)
{
    char buf[256] = "[";          /* 7 dimensions of up to 16 digits fit */
    for (int i = 0; i < s.rank; i++)
        snprintf(buf + strlen(buf), sizeof buf - strlen(buf), i ? ", %lld" : "%lld", (long long)s.d[i]);
    strcat(buf, "]");
    return arena_strdup(buf);
}

/* The attributes of a node worth printing, e.g. "kernel=5x5 stride=1x1 pad=2,2,2,2". */
static char *window_attrs(const Window *w)
{
    return arena_printf(" kernel=%dx%d stride=%dx%d pad=%d,%d,%d,%d%s%s%s%s", w->kh, w->kw, w->sh, w->sw,
                        w->pt, w->pl, w->pb, w->pr,
                        w->dh > 1 || w->dw > 1 ? arena_printf(" dilation=%dx%d", w->dh, w->dw) : "",
                        w->groups > 1 ? arena_printf(" groups=%d", w->groups) : "",
                        w->ceil ? " ceil" : "", w->count_pad ? " count_pad" : "");
}

static char *attrs(const Node *n)
{
    switch (n->op) {
    case OP_CONV: case OP_MAXPOOL: case OP_AVGPOOL: case OP_CONV_DX: case OP_CONV_DW:
    case OP_MAXPOOL_DX: case OP_AVGPOOL_DX:
        return window_attrs(&n->win);
    case OP_MAXPOOL_IDX: return arena_printf("%s%s", window_attrs(&n->win), n->aux ? " column_major" : "");
    case OP_FILL:      return arena_printf(" %g", n->value);
    case OP_WRAP:      return arena_printf(" %s", elem_type_name((ElemType)n->aux));
    case OP_BN_EXAMPLE: return arena_printf(" %s eps=%g momentum=%g", (const char *[]){"y", "mean", "var"}[n->aux % 3],
                                            n->alpha, n->momentum);
    case OP_CLIP: case OP_INSIDE: return arena_printf(" lo=%g hi=%g", n->alpha, n->beta);
    case OP_LEAKY:     return arena_printf(" a=%g", n->alpha);
    case OP_DROPOUT:   return arena_printf(" p=%g", n->alpha);
    case OP_BATCHNORM: return arena_printf(" eps=%g momentum=%g", n->alpha, n->momentum);
    case OP_LRN:       return arena_printf(" size=%d alpha=%g beta=%g k=%g", n->win.kh, n->alpha, n->beta, n->k);
    case OP_CONST:     return arena_printf(" %g", n->value);
    case OP_LOSS_GRAD: return arena_printf(" %s coef=%g%s", (const char *[]){"softmax_cross_entropy",
                                           "svm_hinge", "mse"}[n->aux], n->value,
                                           n->aux == LOSS_SVM_HINGE ? arena_printf(" margin=%g", n->alpha) : "");
    case OP_SLICE:     return arena_printf(" from=%lld%s", (long long)n->aux, n->axis ? arena_printf(" axis=%d", n->axis) : "");
    case OP_SOFTMAX: case OP_SOFTMAX_DX: case OP_CONCAT:
        return n->axis ? arena_printf(" axis=%d", n->axis) : "";
    case OP_EXPAND:    return arena_printf(" scale=%g", n->value);
    case OP_DROPOUT_DX: return arena_printf(" p=%g mask=%%%lld", n->alpha, (long long)n->aux);
    default:           return "";
    }
}

void graph_print(FILE *out, const Graph *g)
{
    fprintf(out, "network %s\n", g->name);
    for (int i = 0; i < g->nodes.n; i++) {
        const Node *n = g->nodes.at[i];
        fprintf(out, "%%%d = %s", n->id, op_name(n->op));
        if (n->op == OP_PARAM)
            fprintf(out, " %s", g->params[n->param].name);
        else if (n->op == OP_INPUT)
            fprintf(out, " %s", g->input_name);
        for (int j = 0; j < n->nin; j++)
            fprintf(out, j ? ", %%%d" : " %%%d", n->in[j]->id);
        fprintf(out, "%s : %s%s", attrs(n), shape_str(n->shape), n->batched ? "" : " unbatched");
        if (n->label && n->op != OP_PARAM && n->op != OP_INPUT)
            fprintf(out, "  # %s", n->label);
        fputc('\n', out);
    }
    if (g->output && g->noutputs <= 1 && (!g->noutputs || g->output_types[0] == ET_F32))
        fprintf(out, "output %%%d\n", g->output->id);
    else if (g->output)        /* several, or typed (single float outputs print as they always did) */
        for (int i = 0; i < g->noutputs; i++)
            fprintf(out, "output %%%d %s %s\n", g->outputs[i]->id, g->output_names[i],
                    elem_type_name(g->output_types[i]));
    static const char *const loss_names[] = {"softmax_cross_entropy", "svm_hinge", "mse", "l2", "l1"};
    for (int i = 0; i < g->nloss; i++) {
        const LossTerm *t = &g->loss[i];
        fprintf(out, "loss %g * %s(", t->coef, loss_names[t->kind]);
        if (t->f)
            fprintf(out, "%%%d, %s", t->f->id, g->label_name ? g->label_name : "?");
        if (t->kind == LOSS_SVM_HINGE)
            fprintf(out, ", margin=%g", t->margin);
        for (int j = 0; j < t->nparams; j++)
            fprintf(out, j ? ", %s" : "%s", g->params[t->params[j]].name);
        fputs(")\n", out);
    }
}

uint64_t graph_hash(const Graph *g)
{
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    graph_print(m, g);
    fclose(m);
    uint64_t h = 1469598103934665603ull;         /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)text[i]) * 1099511628211ull;
    free(text);
    return h;
}

void graph_dot(FILE *out, const Graph *g)
{
    fprintf(out, "digraph \"%s\" {\n  rankdir=TB;\n  node [shape=box, fontname=\"Helvetica\"];\n", g->name);
    for (int i = 0; i < g->nodes.n; i++) {
        const Node *n = g->nodes.at[i];
        const char *what = n->op == OP_PARAM ? g->params[n->param].name
                         : n->op == OP_INPUT ? g->input_name : op_name(n->op);
        fprintf(out, "  n%d [label=\"%s\\n%s\"%s];\n", n->id, what, shape_str(n->shape),
                n->op == OP_PARAM || n->op == OP_CONST ? ", style=dashed" : "");
        for (int j = 0; j < n->nin; j++)
            fprintf(out, "  n%d -> n%d;\n", n->in[j]->id, n->id);
    }
    if (g->output && g->noutputs <= 1)
        fprintf(out, "  out [label=\"output\", shape=oval];\n  n%d -> out;\n", g->output->id);
    else if (g->output)
        for (int i = 0; i < g->noutputs; i++)
            fprintf(out, "  out%d [label=\"output %s\", shape=oval];\n  n%d -> out%d;\n", i, g->output_names[i],
                    g->outputs[i]->id, i);
    fputs("}\n", out);
}

int graph_outputs(Graph *g)
{
    if (!g->noutputs && g->output) {
        g->outputs = arena_alloc(sizeof(Node *));
        g->output_names = arena_alloc(sizeof(char *));
        g->output_types = arena_alloc(sizeof(ElemType));
        g->outputs[0] = g->output, g->output_names[0] = "out", g->noutputs = 1;
    }
    return g->noutputs;
}

int64_t graph_output_stride(const Graph *g)
{
    if (!g->noutputs)
        return g->output ? shape_count(g->output->shape) : 0;
    int64_t n = 0;
    for (int i = 0; i < g->noutputs; i++)
        n += shape_count(g->outputs[i]->shape);
    return n;
}

const char *elem_type_name(ElemType t)
{
    static const char *const names[] = {"F32", "U8", "I8", "BOOL", "I64"};
    return t >= ET_F32 && t <= ET_I64 ? names[t] : "?";
}

/* Every input precedes its user, ids are positions, shapes are in range. */
void graph_check(const Graph *g)
{
    for (int i = 0; i < g->nodes.n; i++) {
        const Node *n = g->nodes.at[i];
        if (n->id != i)
            internal_error("graph: node %d has id %d", i, n->id);
        if (n->shape.rank < 0 || n->shape.rank > MAX_RANK)
            internal_error("graph: node %d has rank %d", i, n->shape.rank);
        for (int j = 0; j < n->nin; j++)
            if (!n->in[j] || n->in[j]->id >= i)
                internal_error("graph: node %d uses a later node", i);
        if (n->op == OP_PARAM && (n->param < 0 || n->param >= g->nparams))
            internal_error("graph: node %d names parameter %d", i, n->param);
    }
}
