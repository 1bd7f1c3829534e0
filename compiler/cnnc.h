/* cnnc.h: the compiler's shared types, sectioned by the file that exports them.
 *
 * The pipeline (see main.c):
 *   source --lexer.l/parser.y--> Ast --shape.c--> Graph --backward.c--> Graph
 *          [--weights.c--> Graph with its parameters' values, for --weights FILE]
 *          --loops.c--> loop IR --llvm.c--> LLVM module --link.c--> executable/library
 * Read this header first: it is the map of the data structures.
 */
#ifndef CNNC_H
#define CNNC_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CNNC_VERSION "0.1.0"

/* Exit statuses (artifacts.md). */
enum { EXIT_OK = 0, EXIT_USER = 1, EXIT_USAGE = 2, EXIT_BUG = 3 };

/* ------------------------------------------------------------------ util.c */

/* Arena memory: the compiler allocates and never frees inside a pass; the
 * whole arena is released by arena_release() at exit (or between fuzz runs). */
void *arena_alloc(size_t n);                /* zeroed; never NULL (aborts) */
char *arena_strdup(const char *s);
char *arena_strndup(const char *s, size_t n);
char *arena_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void  arena_release(void);

/* A growable array of pointers, allocated in the arena. */
typedef struct { void **at; int n, cap; } Vec;
void vec_push(Vec *v, void *p);

/* A hash map from strings to pointers, allocated in the arena. */
typedef struct { const char **keys; void **vals; int n, cap; } Map;
void *map_get(const Map *m, const char *key);           /* NULL if absent */
void  map_put(Map *m, const char *key, void *val);

/* The closest of `cands` (NULL-terminated) to `word`, or NULL if none is close. */
const char *closest_word(const char *word, const char *const *cands);

/* Checked arithmetic for shape sizes: false on overflow. */
bool mul_ok(int64_t a, int64_t b, int64_t *out);

/* The host's L2 cache per core in bytes (1 MiB when the system does not say;
 * CNNC_L2_BYTES, when set, stands for another machine's, as tests do): the
 * untuned GEMMs' loop order and the convolutions' im2col chunks follow it. */
int64_t host_l2_bytes(void);

/* MT19937 as NumPy's legacy RandomState draws it: np.random.seed(seed) is
 * mt_seed, np.random.uniform(0, 1) (random_sample) mt_double. The ONNX
 * importer draws a seeded training-mode Dropout's mask with it. */
enum { MT_N = 624 };
typedef struct { uint32_t s[MT_N]; int i; } Mt19937;
void     mt_seed(Mt19937 *mt, uint32_t seed);
uint32_t mt_next(Mt19937 *mt);              /* the next 32-bit word */
double   mt_double(Mt19937 *mt);            /* uniform in [0, 1), 53 bits */

/* ------------------------------------------------------------------ diag.c */

/* A place in the source: 1-based line and column (columns count characters,
 * not bytes), and the span's length in characters on that line. */
typedef struct { int line, col, len; } Loc;

typedef struct {
    const char *path;   /* as given on the command line */
    const char *text;   /* NUL-terminated copy of the file */
    size_t size;
} Source;

void diag_begin(const Source *src, FILE *out);
void error_at(Loc loc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void warning_at(Loc loc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A warning or an error about no place in the source (a file the compiler
 * reads, say): "cnnc: warning: ...", "cnnc: error: ..." (counted). */
void warning(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void file_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int  diag_error_count(void);
/* Names the place of the messages that have no line (an ONNX node, say:
 * "node 'conv_3' (Conv)"), put after "error: "; NULL: none. */
void diag_context(const char *place);
/* The path of the source being compiled, as given (NULL before diag_begin). */
const char *diag_path(void);
bool diag_too_many(void);                   /* stop reporting past a limit */
/* A compiler bug: says so and exits with EXIT_BUG. */
_Noreturn void internal_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Checks the whole file is valid UTF-8 in lines of at most 65536
 * characters; reports the first bad byte or overlong line. */
bool utf8_check(const Source *src);

/* ------------------------------------------------------------------- ast.c */

typedef enum {
    A_NUM,      /* num, is_int */
    A_SIZE,     /* h, w: the literal 5x5; d, deep: 2x5x5 (depth first) */
    A_STR,      /* str */
    A_NAME,     /* str: an identifier */
    A_HOLE,     /* `_` or `·`: the incoming value of a pipeline stage */
    A_BIN,      /* op: one of + - * / @; a, b */
    A_NEG,      /* a */
    A_CALL,     /* str: callee, args/nargs */
    A_PIPE,     /* a -> b (left-associative: a is the pipeline so far) */
    A_SHAPE,    /* args/nargs: [d0, d1, ...], each an A_NUM */
} AstKind;

typedef struct Ast Ast;

/* An argument of a call or a setting of a train/data block: `key = val`, or
 * just `val` when key is NULL. */
typedef struct { const char *key; Loc keyloc; Ast *val; } Arg;

struct Ast {
    AstKind kind;
    Loc loc;            /* the whole span */
    double num;         /* A_NUM */
    bool is_int;        /* A_NUM: written without '.' or exponent */
    int h, w;           /* A_SIZE */
    int d; bool deep;   /* A_SIZE of three numbers: d the first */
    const char *str;    /* A_STR, A_NAME, A_CALL */
    int op;             /* A_BIN */
    Ast *a, *b;         /* A_BIN, A_NEG, A_PIPE */
    Arg *args;          /* A_CALL, A_SHAPE */
    int nargs;
    int depth;          /* height of the tree below, bounded by MAX_AST_DEPTH */
};

/* Deeper expressions are refused by the parser, so later passes may recurse. */
#define MAX_AST_DEPTH 1000

typedef enum {
    S_NETWORK,  /* name */
    S_INPUT,    /* name : shape */
    S_LABELS,   /* name : expr (class(K)) */
    S_TARGET,   /* name : shape */
    S_PARAM,    /* name : shape [= expr] */
    S_OUTPUT,   /* name[, params...]: the output, and any further ones */
    S_BIND,     /* name = expr */
    S_PIPE,     /* expr: a pipeline whose last stage is a fresh name */
    S_BLOCK,    /* name(params) = expr */
    S_LOSS,     /* loss = expr */
    S_TRAIN,    /* train { args } */
    S_DATA,     /* data { args } */
} StmtKind;

typedef struct Stmt {
    StmtKind kind;
    Loc loc;            /* the keyword or the start of the statement */
    const char *name;   /* declared or bound name */
    Loc nameloc;
    Ast *shape;         /* S_INPUT, S_TARGET, S_PARAM */
    Ast *expr;          /* S_LABELS, S_PARAM (initializer, may be NULL), S_BIND,
                           S_PIPE, S_BLOCK, S_LOSS */
    const char **params; Loc *paramlocs; int nparams;   /* S_BLOCK; S_OUTPUT: the further outputs */
    Arg *args; int nargs;                               /* S_TRAIN, S_DATA */
    struct Stmt *next;
} Stmt;

typedef struct { const Source *src; Stmt *stmts; } Program;

Ast *ast_new(AstKind kind, Loc loc);
void ast_print(FILE *out, const Program *p);

/* -------------------------------------------------------------- parser.y */

/* Parses src; reports syntax errors through diag.c. Returns the statements
 * it could recover, even after errors. */
Program *parse_program(const Source *src);

/* ------------------------------------------------------------------ graph.c */

/* A per-example shape: rank 0 is a scalar. At most 7 dimensions, so that a
 * batch of them has at most 8, which is what safetensors files and the
 * runtime take (RT_MAX_RANK). Parameters have at most MAX_PARAM_RANK (the
 * C API's NAME_param_shape fills an int64_t[4]). */
#define MAX_RANK 7
#define MAX_PARAM_RANK 4

typedef struct { int rank; int64_t d[MAX_RANK]; } Shape;

typedef enum {
    /* leaves */
    OP_INPUT, OP_PARAM, OP_CONST,
    /* layers */
    OP_DENSE, OP_CONV, OP_MAXPOOL, OP_AVGPOOL, OP_GAP,
    OP_SOFTMAX, OP_L1NORM, OP_L2NORM, OP_FLATTEN, OP_DROPOUT, OP_BATCHNORM,
    OP_LRN, OP_CONCAT, OP_TRANSPOSE,   /* transpose: [m, n] -> [n, m] */
    /* elementwise, unary */
    OP_RELU, OP_TANH, OP_SIGMOID, OP_LEAKY, OP_EXP, OP_LOG, OP_SQRT, OP_ABS, OP_NEG,
    OP_CLIP,          /* min(max(x, alpha), beta): clip(lo, hi) and relu6 */
    /* elementwise, binary with broadcasting */
    OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_MAX, OP_MIN,
    /* linear algebra and reductions */
    OP_MATMUL, OP_SUM, OP_MEAN,
    /* gradients (backward.c): dX is the gradient of the forward op's input X */
    OP_LOSS_GRAD,     /* (f): dL/df of a loss term; aux = LossKind, value = coef, alpha = margin */
    OP_DENSE_DX,      /* (dy, W) */
    OP_DENSE_DW,      /* (dy, x): summed over the batch */
    OP_CONV_DX,       /* (dy, W) win */
    OP_CONV_DW,       /* (dy, x) win: summed over the batch */
    OP_CHANNEL_SUM,   /* (dy): sum over batch and positions per channel (conv and batchnorm bias) */
    OP_MAXPOOL_DX,    /* (dy, x, y) win */
    OP_AVGPOOL_DX,    /* (dy) win */
    OP_GAP_DX,        /* (dy) */
    OP_SOFTMAX_DX,    /* (y, dy) along axis */
    OP_L1NORM_DX,     /* (x, dy) */
    OP_L2NORM_DX,     /* (x, dy) */
    OP_LRN_DX,        /* (x, dy) win.kh = size, alpha, beta, k */
    OP_BN_DX,         /* (x, gamma, dy) alpha = eps: batch statistics */
    OP_BN_DGAMMA,     /* (x, dy) alpha = eps */
    OP_DROPOUT_DX,    /* (dy) alpha = p, aux = the forward node's id (the mask's salt) */
    OP_SLICE,         /* (dy): [aux, aux + shape.d[axis]) along axis of a concat's gradient */
    OP_SUM_TO,        /* (g): g summed down to this node's shape (broadcasting, batch) */
    OP_MATMUL_DA,     /* (dC, B) */
    OP_MATMUL_DB,     /* (A, dC) */
    OP_EXPAND,        /* (dy): a scalar spread over this shape, times value */
    OP_STEP,          /* (x): 1 where x > 0, else 0 */
    OP_GE,            /* (a, b): 1 where a >= b, else 0 */
    OP_INSIDE,        /* (x): 1 where alpha < x < beta, else 0 (clip's adjoint mask) */
    /* forward only, no gradient (the importer's second outputs and integer arithmetic) */
    OP_FILL,          /* (x): value everywhere, of x's shape (an inference-mode dropout's mask) */
    OP_MAXPOOL_IDX,   /* (x) win: where each window's maximum is (the first, on ties), as the
                         flat index into the example [C, H, W], row-major (aux = 0) or with H and
                         W swapped (aux = 1: ONNX's storage_order); as a network output the
                         runtime adds the example's offset, so that it indexes the whole batch
                         as ONNX MaxPool's Indices do (exact below 2^24) */
    OP_WRAP,          /* (x): x rounded toward 0, then wrapped into the range of the integer
                         type aux (an ElemType: ET_U8 or ET_I8), mod 2^8 */
    OP_BN_EXAMPLE,    /* (x, gamma, beta, mean, var): ONNX's BatchNormalization in training mode
                         over an example [N, C, ...] (read unbatched): per channel, the mean and
                         (biased) variance over its N and positions; aux 0: y, normalized with
                         them; aux 1, 2: mean m + batch mean (1 - m), var m + batch var (1 - m)
                         (the updated statistics, [C]); alpha = eps, momentum = m (ONNX's) */
    OP_COUNT
} OpKind;

/* A sliding window (conv, pooling): kernel, stride, padding top/left/bottom/right,
 * and dilation (1 but for a dilated conv). groups: a conv's channel groups (1:
 * dense). ceil: pooling's output size rounded up, done by extending pb and pr
 * past the declared padding, which cb and cr keep; count_pad: avgpool divides
 * by the cells of the window inside the image and its declared padding. */
typedef struct {
    int kh, kw, sh, sw, pt, pl, pb, pr;
    int dh, dw;
    int groups;
    bool ceil, count_pad;
    int cb, cr;
} Window;

/* One operator of the graph. Which fields are valid:
 *   in/nin       every op but leaves; OP_DENSE (x, W[, b]), OP_CONV (x, W[, b]),
 *                OP_BATCHNORM (x, gamma, beta, running_mean, running_var),
 *                OP_CONCAT (any number of branches)
 *   param        OP_PARAM: index into Graph.params
 *   value        OP_CONST
 *   win          OP_CONV, OP_MAXPOOL, OP_AVGPOOL
 *   alpha        OP_LEAKY (slope), OP_DROPOUT (p), OP_LRN (alpha), OP_BATCHNORM (eps),
 *                OP_CLIP and OP_INSIDE (lo)
 *   beta, k      OP_LRN; size in win.kh; beta: OP_CLIP and OP_INSIDE (hi)
 *   momentum     OP_BATCHNORM
 */
typedef struct Node {
    OpKind op;
    int id;
    Loc loc;
    Shape shape;          /* per example; for unbatched nodes the whole value */
    bool batched;         /* depends on the input (else: a parameter or constant) */
    struct Node **in;
    int nin;
    int param;
    float value;
    Window win;
    float alpha, beta, k, momentum;
    int64_t aux;          /* see the gradient ops */
    int axis;             /* OP_SOFTMAX, OP_SOFTMAX_DX, OP_CONCAT, OP_SLICE: the dimension of the
                             example they work along (0 by default: a vector's, an image's channels) */
    const char *label;    /* the layer's name ("conv1") or bound name, for dumps */
} Node;

/* INIT_DATA: the values are given (Param.data): weights built into the output,
 * from `--weights FILE` at compile time or an imported model's initializers. */
typedef enum { INIT_ZEROS, INIT_ONES, INIT_CONSTANT, INIT_UNIFORM, INIT_NORMAL, INIT_HE, INIT_XAVIER,
               INIT_DATA } InitKind;

/* A learned tensor, or a buffer (batchnorm running statistics). */
typedef struct {
    const char *name;     /* "conv1.weight", or an explicit param's name */
    Shape shape;
    InitKind init;
    float a, b;           /* constant(a), uniform(a, b), normal(a = mean, b = std) */
    const float *data;    /* INIT_DATA: shape_count(shape) values, row-major */
    int64_t fan_in, fan_out;
    bool is_weight;       /* counted by `weights` in l2/l1 */
    bool is_buffer;       /* not learned (running_mean, running_var) */
    Loc loc;
} Param;

typedef enum { LOSS_SOFTMAX_CE, LOSS_SVM_HINGE, LOSS_MSE, LOSS_L2, LOSS_L1 } LossKind;

/* One term of `loss = c1 * term1 + c2 * term2 ...`. */
typedef struct {
    LossKind kind;
    float coef;
    Node *f;              /* the scored value (CE, hinge, mse) */
    float margin;         /* svm_hinge */
    int *params; int nparams;   /* l2, l1 */
    Loc loc;
} LossTerm;

typedef enum { SCHED_CONSTANT, SCHED_STEP, SCHED_COSINE, SCHED_EXP } SchedKind;

typedef struct {
    double lr, momentum, weight_decay;   /* double: 0.02 stays 0.02 in checkpoints */
    bool nesterov;
    int batch, epochs;
    SchedKind schedule;
    int step_every; double step_factor; double exp_gamma;
    uint64_t seed;
} TrainCfg;

typedef enum { DATA_NONE, DATA_IDX, DATA_CSV } DataKind;
typedef struct { DataKind kind; const char *path, *labels; int label_col; } DataSet;
/* The data { } block. resize, crop, mean, std and classes are for the
 * generated program's predict (preprocess.c in the runtime). */
typedef struct {
    DataSet train, test;
    double scale;         /* 0: automatic */
    int resize, crop;     /* 0: none */
    double mean[3], std[3];   /* per input channel (one value given: all three) */
    const char *classes;  /* the class names file's lines, each ending in "\n"; NULL: none */
} DataCfg;

typedef enum { LABELS_NONE, LABELS_CLASS, LABELS_TARGET } LabelKind;

/* The element type of the network's input and outputs in files (safetensors).
 * The network computes in float32 whatever they are: an integer or boolean
 * input is converted to float as it is read, an output converted from float
 * as it is written (integers of up to 24 bits are exact in float32). */
typedef enum { ET_F32, ET_U8, ET_I8, ET_BOOL, ET_I64 } ElemType;

typedef struct Graph {
    const char *name;     /* the network's name: a C identifier */
    Vec nodes;            /* Node*, in topological (creation) order */
    int nforward;         /* nodes[0, nforward) are the forward pass; then gradients */
    Param *params; int nparams, capparams;
    Node *input, *output;
    /* Several outputs (an imported model's, or `output a, b`): outputs[0] is
     * `output`, the one that losses, predict and eval use; each has a name
     * (its tensor's in `forward`'s file) and an element type. noutputs = 0:
     * just `output`, named "out", float32 (graph_outputs fills that in). */
    Node **outputs; const char **output_names; ElemType *output_types; int noutputs;
    ElemType input_type;  /* an imported model's input's (forward's file may hold any type) */
    const char *input_name, *label_name;
    LabelKind label_kind;
    int nclasses;         /* LABELS_CLASS */
    Shape target_shape;   /* LABELS_TARGET */
    LossTerm *loss; int nloss;
    bool has_loss;
    TrainCfg train;
    DataCfg data;
} Graph;

Node *graph_node(Graph *g, OpKind op, Loc loc, Shape shape, int nin, Node **in);
/* Makes g->outputs list g->output alone (named "out", float32) unless it
 * lists outputs already; returns how many there are. */
int   graph_outputs(Graph *g);
/* The floats an example's outputs take, all of them one after another. */
int64_t graph_output_stride(const Graph *g);
const char *elem_type_name(ElemType t);    /* safetensors' "F32", "U8", "I8", "BOOL", "I64" */
int   graph_param(Graph *g, Param p);
int64_t shape_count(Shape s);
char *shape_str(Shape s);              /* "[6, 28, 28]" */
Shape shape_of(int rank, ...);
bool  shape_eq(Shape a, Shape b);
const char *op_name(OpKind op);
void  graph_print(FILE *out, const Graph *g);
void  graph_dot(FILE *out, const Graph *g);
/* The network's structure hash, which checkpoints carry ("structure"): FNV-1a
 * of graph_print's text, so of the gradients too once backward_derive has
 * added them (llvm.c hashes the graph as it lowers it). Parameters'
 * initializers and values are not part of it. */
uint64_t graph_hash(const Graph *g);
void  graph_check(const Graph *g);     /* internal consistency; aborts on a bug */

/* --------------------------------------------------------------- layers.c */

/* A constant value in a layer's arguments, after block parameters are
 * substituted. */
typedef enum { V_NONE, V_INT, V_FLOAT, V_SIZE, V_NAME, V_STR, V_AST } ValKind;
typedef struct { ValKind kind; double num; int h, w; const char *str; Ast *ast; Loc loc; int d; bool deep; } Val;

typedef struct LayerRule LayerRule;
const LayerRule *layer_find(const char *name);
const char *const *layer_names(void);
/* Applies the layer `rule`, written as `use` (a name or a call), to x. */
struct Builder;
Node *layer_apply(struct Builder *b, const LayerRule *rule, Ast *use, Node *x);
/* The output extent of a window of k taps d apart over `in` cells with `pad`
 * cells of padding in all, or 0 when it does not fit. */
int64_t layer_extent(int64_t in, int pad, int k, int d, int stride);
/* Pooling's ceil mode: extends the bottom (right) padding *pb so that the
 * output is rounded up, less a last window that would start in the padding. */
void layer_ceil_extent(int64_t in, int pt, int *pb, int k, int stride);
/* Pooling's padding pt and pb (as declared) around `in` cells, with windows
 * of k taps d apart: whether every window has a tap inside (a window wholly
 * in the padding would have no maximum and no mean); *why says what fails. */
bool layer_pool_pads_ok(int64_t in, int pt, int pb, int k, int d, const char **why);
/* 3-D pooling of x [C, D, H, W] (op: OP_MAXPOOL or OP_AVGPOOL), built of 2-D
 * pooling: whw over each depth plane [H, W], then wd (kw 1) along the depth
 * of [C, D, H' W'] (see layers.c); both windows checked by the caller. */
Node *layer_pool3d(Graph *g, Loc loc, OpKind op, Node *x, const Window *wd, const Window *whw);
/* A parameter's fan_in and fan_out from its PyTorch-layout shape. */
void layer_fans(Param *p);

/* ------------------------------------------------------------------ onnx.c */

/* The ONNX front end, a sibling of parse_program + shape_check: an ONNX
 * model's graph turned into the operator Graph (see onnx.c for what it takes).
 * Parameters hold the initializers' values (INIT_DATA). */

/* Whether the file is an ONNX model rather than a .cnn program (by its first
 * byte, then its name, then whether it is text). */
bool onnx_file(const char *path);
/* Reads and converts the model; NULL after errors (reported through diag.c,
 * which diag_begin must have been given the path). unbatched: the input has
 * no batch dimension, the whole tensor is one example (--unbatched). */
Graph *onnx_import(const char *path, bool unbatched);
/* The same for a model in memory (for fuzzing); path as the model's name. */
Graph *onnx_import_data(const char *path, const void *data, size_t size, bool unbatched);
/* --loss KIND ("softmax_cross_entropy" or "mse") for an imported graph. */
bool onnx_loss(Graph *g, const char *kind);

/* -------------------------------------------------------------- backward.c */

/* The gradients of the loss, appended to the graph after the forward nodes. */
typedef struct {
    int first;            /* the first gradient node's id */
    Node **param_grad;    /* per parameter: its gradient (unbatched), or NULL (zero) */
    Vec losses;           /* Node* of kind OP_LOSS_GRAD: they also sum the loss */
    bool serial;          /* batch statistics: the batch may not be split */
} Backward;

/* Derives the backward pass of g's loss (which must exist). */
Backward *backward_derive(Graph *g);
void backward_print(FILE *out, const Graph *g, const Backward *bw);

/* ----------------------------------------------------------------- shape.c */

/* Resolves names, expands blocks, checks every shape; NULL after errors. */
Graph *shape_check(const Program *p);
/* A network's name from its file's: the stem made a C identifier. */
const char *shape_stem_name(const char *path);

/* The state of shape checking, shared with layers.c. */
typedef struct Frame Frame;       /* a block expansion: its parameters' values */
typedef struct Builder {
    Graph *g;
    const Program *prog;
    Vec values;                   /* Binding*: every bound name, in order */
    Map bound;                    /* name -> Binding* */
    Map layer_params;             /* "conv1.weight" -> its Param index + 1 */
    Vec blocks;                   /* Stmt* of kind S_BLOCK */
    int count[OP_COUNT];          /* layers of each kind so far, for naming */
    Frame *frame;                 /* innermost block being expanded, or NULL */
    int depth;                    /* nesting of blocks, branches and repeats */
} Builder;

/* Applies a pipeline fragment (every element a stage) to x; NULL on error. */
Node *shape_stage(Builder *b, Ast *stage, Node *x);
/* Evaluates a layer argument to a constant (block parameters substituted). */
Val shape_const(Builder *b, Ast *e);
/* The parameters of the block being expanded, NULL-terminated (for "did you mean"). */
const char **shape_block_params(Builder *b);
/* Reads an initializer (`he`, `uniform(a, b)`, ...) into p; false on error. */
bool shape_init(Builder *b, Ast *e, Param *p);
Node *shape_param_node(Builder *b, Param p);
Node *shape_unary(Builder *b, OpKind op, Loc loc, Node *x);
Node *shape_binary(Builder *b, OpKind op, Loc loc, Node *x, Node *y);
/* `@`: matrix-vector, matrix and stacked matrix products (see shape.c). */
Node *shape_matmul(Builder *b, Loc loc, Node *x, Node *y);

/* Limits that keep absurd programs from exhausting memory. */
#define MAX_TENSOR_ELEMS (((int64_t)1 << 31) - 1)   /* sizes fit a C int */
#define MAX_NODES 100000

/* --------------------------------------------------------------- settings.c */

void settings_defaults(Graph *g);
void settings_train(Graph *g, const Stmt *s);
void settings_data(Graph *g, const Stmt *s);

/* ---------------------------------------------------------------- weights.c */

/* --weights FILE at compile time: every parameter and buffer of g gets its
 * values from the safetensors file at path (INIT_DATA), checked as the
 * runtime's NAME_load checks them; false after reporting every problem.
 * Call it after backward_derive (the file's structure hash covers the
 * gradients). */
bool weights_attach(Graph *g, const char *path);

/* ------------------------------------------------------------------ loops.c */

/* The loop IR: kernels made of loop nests over flat float buffers, with
 * element expressions. It is what llvm.c lowers, and what --emit=loops shows.
 *
 * A kernel's buffers live in one of four places, each a function argument:
 *   BASE_X       the input batch (read-only)
 *   BASE_OUT     the output batch
 *   BASE_PARAMS  the parameter block: every parameter at a fixed offset
 *   BASE_WS      the workspace: buffers shared by the examples first (ws_fixed
 *                floats), then per-example activations at ws_fixed + offset * n
 *   BASE_Y       the labels (int32) or targets (float) of the batch (training)
 *   BASE_GRAD    the gradient block, laid out as the parameters (training)
 * and one that is not an argument:
 *   BASE_PRIV    the calling thread's private scratch (runtime rt_private),
 *                Lowered.private_floats floats: a plane that each
 *                iteration of a nest writes before it reads it (a depthwise
 *                conv's padded channel), so that threads running parts of
 *                the nest each use their own, and it stays in the L1/L2
 */
typedef enum { BASE_X, BASE_OUT, BASE_PARAMS, BASE_WS, BASE_Y, BASE_GRAD, BASE_PRIV } Base;
enum { NBASES = BASE_PRIV + 1 };

typedef struct {
    const char *name;     /* for dumps: the node's label or "%id" */
    Base base;
    int64_t offset;       /* floats from the base; for BASE_WS, times n */
    int64_t size;         /* floats per example (batched) or in all */
    bool batched;
    bool scratch;         /* an operator's temporary: written before it is read, each use */
} Buf;

typedef enum {
    /* integer */
    X_INT,      /* ival */
    X_VAR,      /* var: a loop variable, or the batch size n (var 0) */
    X_IADD, X_IMUL, X_IDIV, X_IMIN, X_IMAX,   /* idiv: a / b rounded down, a >= 0, b > 0 */
    X_FTOI,     /* a (float, holding an integer) as an integer: an index kept in a float buffer */
    /* float */
    X_FLT,      /* fval */
    X_LOAD,     /* buf[a] */
    X_GET,      /* var: a float scalar */
    X_ADD, X_SUB, X_MUL, X_DIV, X_MAX, X_MIN, X_POW,
    X_NEG, X_EXP, X_LOG, X_SQRT, X_ABS, X_TANH,
    X_FLOOR, X_TRUNC,   /* rounded down, toward 0 */
    X_ITOF,     /* a (integer) as float */
    /* conditions (integer or float operands) and choice */
    X_LT, X_LE, X_EQ, X_AND, X_SELECT,   /* select: a ? b : c */
    /* training */
    X_LABEL,    /* the class label of example a (integer) */
    X_ARG,      /* ival: 0 first, 1 total (the training kernel's arguments) */
    X_RAND,     /* a uniform float in [0, 1) from (seed, ival = salt, a = index) */
} XKind;

typedef struct Expr {
    XKind kind;
    int64_t ival;
    float fval;
    int var;
    const Buf *buf;
    struct Expr *a, *b, *c;
} Expr;

typedef enum {
    L_FOR,      /* for var in [lo, hi): body */
    L_STORE,    /* buf[idx] = val (or += val when accumulate) */
    L_SET,      /* float scalar var = val */
    L_IF,       /* if cond: body */
    L_GEMM,     /* gemm: C (+)= A B, a register-blocked micro-kernel (see Gemm) */
    L_POOL,     /* pool: 2x2 max pooling of whole rows, or its gradient (see Pool) */
} LKind;

/* C[i ldc + j] (+)= sum_k A[i sai + k sak] B[k ldb + j] for i < M, j < N,
 * k < K; each operand at its buffer's element `at` (which may depend on the
 * loop variables around it). B and C are contiguous along j. M and K may
 * depend on the batch size (a dense layer's GEMM runs over the batch).
 * With bt, B is transposed: C[i ldc + j] (+)= sum_k A[i sai + k] B[j ldb + k]
 * (sak is 1: both operands run along k).
 * The epilogue, fused: without accumulate, C starts from a bias (one per row i
 * of C with bias_rows, else one per column j) instead of 0; with relu, C gets
 * max(0, C) as it is stored. */
typedef struct {
    struct Expr *M, *K;
    int64_t N;
    const Buf *a, *b, *c, *bias;
    struct Expr *a_at, *b_at, *c_at, *bias_at;
    int64_t sai, sak, ldb, ldc;
    bool accumulate;
    bool bt;
    bool bias_rows, relu;
    bool bn_rows;         /* with bias_rows: the bias holds a pair (shift, scale) per row,
                             and C = scale sum + shift (a batchnorm folded in, loops.c) */
    int tile_r, tile_c;   /* the register tile: rows x 16-float vectors of C (gemm) or
                             rows x columns (bt); 0: the default (the tuner sets it) */
    bool cols_outer;      /* the loop order: blocks of columns outside the blocks of
                             rows (default: rows outside) */
    bool kblock;          /* k in blocks whose rows of B fit in the L2, each through the
                             whole of C (not bt; llvm.c gemm_body): for a B too large for
                             the L2 that every block of rows of A would read again */
    bool shared_b;        /* B is a large layer's weights and A, C the batch's rows, at the
                             kernel's top level: the threads' slices of a batch compute it
                             together (runtime rt_gemm_shared), B streamed once */
} Gemm;

/* Max pooling with 2x2 windows that tile the image (stride 2, no padding),
 * vectorized along rows: `rows` output rows of W / 2 values, each from two
 * input rows of W values (a channel's rows follow each other, so the
 * channels of an example are one run of rows).
 *   forward:  y[r][j] = max(x[2r][2j], x[2r][2j+1], x[2r+1][2j], x[2r+1][2j+1])
 *   backward: dx[2r+a][2j+b] = dy[r][j] at the first of those four cells that
 *             equals y[r][j] (in that order), else 0; with a mask, also 0
 *             where mask <= 0 (the ReLU before the pooling, fused). */
typedef struct {
    int64_t rows, W;
    bool backward;
    const Buf *x, *y, *dy, *dx, *mask;
    struct Expr *x_at, *y_at, *dy_at, *dx_at, *mask_at;
} Pool;

typedef struct LStmt {
    LKind kind;
    int var;
    Expr *lo, *hi, *idx, *val, *cond;
    const Buf *buf;
    bool accumulate;
    Vec body;             /* LStmt* */
    Gemm *gemm;           /* L_GEMM */
    Pool *pool;           /* L_POOL */
    const char *comment;  /* the node this nest computes, for dumps */
    bool parallel;        /* L_FOR: its iterations write disjoint data and read none of
                             each other's writes, so they may run on different threads */
} LStmt;

typedef struct {
    const char *name;     /* function name, e.g. "lenet.kernel.forward" */
    Vec body;             /* LStmt* */
    int nvars;            /* variables 1..nvars-1 (0 is n) */
    bool *is_float;       /* per variable: a float scalar rather than an index */
    int64_t ws_fixed;     /* workspace floats before the per-example part */
    int ret;              /* training: the float variable returned (the loss), or 0 */
} Kernel;

/* What the generated code needs to know of a network besides its kernels. */
typedef struct {
    const Graph *g;
    int64_t *param_offset;      /* per parameter, in floats into the block */
    int64_t param_floats;       /* the whole parameter block */
    int64_t ws_floats;          /* workspace floats per example */
    Kernel *forward;            /* (n, x, out, params, ws) */
    Kernel *train;              /* (n, x, y, params, grads, ws, first, total, seed); NULL without a loss */
    int64_t train_ws_floats;    /* its workspace per example */
    int64_t train_ws_fixed;     /* and per call */
    bool train_serial;          /* batch statistics: the batch may not be split */
    int64_t private_floats;     /* the largest private scratch (BASE_PRIV) */
} Lowered;

/* bw may be NULL; fuse: epilogue fusion (see fuse_epilogues), off for --no-fuse */
Lowered *loops_lower(const Graph *g, const Backward *bw, bool fuse);

/* A buffer that an L_GEMM or L_POOL statement touches from element *at on. */
enum { MAX_OPERANDS = 5 };
typedef struct { const Buf *buf; struct Expr **at; bool read, write; } Operand;
/* The operands of s (none for other statements); returns their count. */
int stmt_operands(LStmt *s, Operand op[MAX_OPERANDS]);
void loops_print(FILE *out, const Lowered *l);

/* ------------------------------------------------------------------ fuse.c */

/* Merges adjacent loops over the examples where that is legal (see fuse.c). */
void fuse_loops(Lowered *l);
/* Whether s is `for v in [0, n)`, a loop over the examples. */
bool example_loop(const LStmt *s);

/* ------------------------------------------------------------------ plan.c */

/* Shrinks and shares the workspace by liveness (see plan.c). */
void plan_memory(Lowered *l);

/* ----------------------------------------------------------------- tiles.c */

/* GEMM register tiles (see Gemm): the defaults, the largest llvm.c builds,
 * and which tiles are valid. */
enum { GEMM_MR = 6, GEMM_NV = 2, GEMM_RT = 4, GEMM_CT = 4,
       GEMM_MR_MAX = 14, GEMM_NV_MAX = 5, GEMM_RT_MAX = 8, GEMM_CT_MAX = 8 };
void gemm_target(bool avx512);       /* the target's registers (default: AVX-512's) */
void gemm_tile_default(bool bt, int *r, int *c);
/* A GEMM (not bt) whose columns are whole vectors and one or two more (7x7
 * images: 49): its last columns are computed as dot products along k (the
 * "tail", llvm.c) instead of a vector of mostly idle lanes. */
enum { GEMM_TAIL_MAX = 2, GEMM_TAIL_K_MAX = 4608 };
bool gemm_tail(const Gemm *g);
/* The default tile of GEMM g: the target's, but for a tail GEMM whose
 * whole vectors come in threes 6x3 (49 columns: 48 + 1), in fives 4x5 (81:
 * 80 + 1). */
void gemm_tile_for(const Gemm *g, int *r, int *c);
/* The untuned loop order of GEMM g: true for columns outside (see Gemm). */
bool gemm_cols_outer_default(const Gemm *g);
bool gemm_tile_ok(bool bt, int r, int c);                   /* for the target */
bool gemm_tile_fits(bool bt, int r, int c, bool avx512);    /* for AVX-512's or AVX2's registers */

/* ------------------------------------------------------------------ tune.c */

/* --tune: the register tile of each distinct GEMM, measured on this
 * machine within a time budget, and the tuning cache (see tune.c). */
typedef struct TuneKernel TuneKernel;
typedef struct {
    Vec kernels;          /* TuneKernel*: one per GEMM signature */
    Vec gemms;            /* Gemm*: every GEMM statement of the kernels */
    Vec owners;           /* TuneKernel*: the kernel (signature) of each statement */
} Tuning;
typedef struct {
    double budget_s;
    bool verbose;
    bool fault;           /* testing: the first candidate of each kernel computes a wrong result */
    bool retune;          /* measure the kernels the cache has too */
} TuneOptions;

Tuning *tune_collect(Lowered *l);
void tune_use_cache(Tuning *t, const char *path);         /* warns about a damaged or foreign file */
double tune_search(Tuning *t, const TuneOptions *opt);     /* the kernels not from the cache; returns the seconds spent */
int tune_measured(const Tuning *t);                       /* how many kernels tune_search measured */
bool tune_save_cache(const Tuning *t, const char *path);  /* atomic; false (said why) on failure */
void tune_apply(Tuning *t);                               /* the chosen tiles into the statements */
void tune_report(FILE *out, const Tuning *t, double spent, double budget);   /* budget 0: not tuned, one line */
void tune_summary(FILE *out, const Tuning *t);
const char *tune_default_cache(void);                    /* $XDG_CACHE_HOME/cnnc/tune.json; NULL: no home */
/* Parses the cache's text; false with *why on a damaged or foreign file. */
bool tune_cache_parse(const char *text, size_t len, Vec *entries, const char **why);

/* -------------------------------------------------------------- parallel.c */

/* Whether the iterations of loop nest s's outer loop may run on different
 * threads (see parallel.c). */
bool parallel_nest(const LStmt *s);
/* Whether s is `for v: one GEMM` (the Winograd transform's 36 products,
 * say) whose GEMMs may run on different threads: M and K do not depend on v,
 * the operands' positions are affine in v, and C's of different v do not
 * overlap (nor A, B or the bias). */
bool parallel_gemms(const LStmt *s);
/* The statements nest s executes, with n counted as 1 (*per_n: some loop
 * runs over n). */
double parallel_work(const LStmt *s, bool *per_n);
/* Whether loop variable var occurs in e. */
bool mentions_var(const Expr *e, int var);

/* ----------------------------------------------------------------- share.c */

/* A loop nest of a kernel as a function of its buffers and sizes (see
 * share.c): nests whose keys are equal compute the same function of their
 * arguments, so llvm.c emits one function per key and calls it. */
typedef struct {
    const char *key;      /* the nest's code with its buffers and sizes abstracted */
    LStmt *body;          /* a copy of the nest over the unit's own variables 1..nvars-1 (0 is n) */
    int nvars;
    bool *is_float;       /* per variable of the copy */
    Vec bufs;             /* const Buf*: the buffers, one per distinct address */
    Vec consts;           /* Expr* (X_INT, X_FLT): the sizes and constants made arguments */
    Vec const_vars;       /* (intptr_t): the copy's variable that holds each */
    Vec args;             /* Expr* (X_VAR, X_GET): the kernel's variables the nest reads */
    Vec arg_vars;         /* (intptr_t): the copy's variable that holds each */
    Vec refs;             /* Expr* (X_VAR, X_GET): those it also sets, passed by reference */
    Vec ref_vars;
    bool train;           /* reads labels, the training arguments or random numbers */
    bool parts;           /* its outer loop runs in parts across threads (llvm.c): the
                             function takes the part's bounds as its last two arguments */
} Unit;

/* Per variable of k, how many statements mention it (for share_unit). */
int *share_refs(const Kernel *k);
/* The unit of loop nest s of kernel k, or false when s cannot be one. */
bool share_unit(const Kernel *k, const int *refs, const LStmt *s, Unit *u);

/* ------------------------------------------------------------------ ready.c */

/* A point of the training kernel after which a parameter's gradient is final:
 * after top-level statement `after`, elements [lo, hi) of the gradient block
 * are no longer touched (llvm.c calls rt_grads_ready there). */
typedef struct { int after; int64_t lo, hi; } Ready;
/* The training kernel's points, one per learned parameter, in the order the
 * kernel passes them; returns their count (0 without a training kernel). */
int ready_points(const Lowered *l, Ready **out);

/* ------------------------------------------------------------------ llvm.c */

typedef struct {
    int opt_level;              /* 0..3 */
    const char *cpu;            /* NULL: the host's */
    bool executable;            /* emit main() calling the runtime */
    bool mpi;                   /* main() calls rt_mpi_main (runtime/mpi.c), not rt_main */
    bool sanitize;              /* instrument with AddressSanitizer */
    bool verbose;
    bool no_share;              /* every loop nest inline (see share.c) */
    bool profile;               /* time each layer's statements (rt_prof_mark) for `bench` */
} CodegenOptions;

typedef enum { OUT_OBJECT, OUT_LLVM, OUT_ASM } OutputKind;


/* The tuner's measuring device: the routine a GEMM statement calls (with the
 * statement's tile), JIT-compiled for this machine inside a wrapper that
 * passes the statement's sizes and strides, with M = m where M depends on
 * the batch. `fault` builds a wrong variant (for testing the tuner). */
typedef void (*GemmBenchFn)(const float *a, const float *b, float *c, const float *bias);
typedef struct GemmJit GemmJit;
GemmJit *gemm_jit(const Gemm *g, int64_t m, bool fault, GemmBenchFn *fn);   /* NULL: failed (said why) */
void gemm_jit_free(GemmJit *j);
/* This machine's CPU for the tuning cache: LLVM's name for it and a hash of
 * its features, e.g. "znver5/1a2b3c4d5e6f7788". */
const char *host_cpu_id(void);
/* Whether code for cpu (NULL or "native": this machine) may use AVX-512. */
bool cpu_has_avx512(const char *cpu);

/* Builds, verifies, optimizes and writes the module; false after an error. */
bool llvm_emit(const Lowered *l, const CodegenOptions *o, OutputKind kind, const char *path);

/* ------------------------------------------------------------------ link.c */

/* Writes NAME.h beside `header_dir`: the C API of artifacts.md. */
bool link_header(const Graph *g, const char *path);
/* Links the object with the runtime into an executable or a static library. */
bool link_executable(const char *object, const char *out, bool sanitize, bool mpi);
bool link_library(const char *object, const char *out, bool sanitize);

/* --------------------------------------------------------------- unparse.c */

/* --emit=cnn: g written back as a cnnc program that compiles to the same
 * graph (operators in the same order, parameters with the same names and
 * shapes), for any graph, from a program or an importer. Layers' parameters
 * must be named as the language names them, PREFIX.weight, PREFIX.bias (and
 * batchnorm's PREFIX.running_mean, PREFIX.running_var); other parameters
 * are explicit `param`s and need names that are identifiers.
 * unparse_program: the text; the comment names `weights` (the file of the
 * built-in values) and the data block names `classes` (the class names'
 * file) when given. NULL (said why) when g cannot be written.
 * unparse_write: the program to path (NULL or "-": stdout), with the
 * parameters that have built-in values (INIT_DATA) in STEM.safetensors and
 * the data block's class names in STEM.classes.txt beside it (those need a
 * path); every file atomic. false (said why) on failure. */
char *unparse_program(const Graph *g, const char *weights, const char *classes);
bool unparse_write(const Graph *g, const char *path);

/* ------------------------------------------------------------ weights_out.c */

/* --emit=weights: every parameter's built-in value (INIT_DATA) as a
 * safetensors file (atomic); false (said why) when one has none. */
bool weights_write(const Graph *g, const char *path);

/* ---------------------------------------------------------------- summary.c */

int64_t node_flops(const Node *n);
/* The memory the program allocates at the configured batch (planned
 * workspaces, parameters, gradients, momentum), after summary_print. */
void summary_memory(FILE *out, const Lowered *l);
void summary_print(FILE *out, const Graph *g);

#endif
