/* cnnrt.h -- the cnnc runtime: the I/O that generated code calls.
 *
 * Two libraries are built from runtime/:
 *   libcnnrt.a       error.c crc32.c safetensors.c parallel.c buckets.c net.c
 *                    needs only libc; linked by every program that embeds a
 *                    network (`cnnc --lib`, `cnnc -c`) and by the executables.
 *   libcnnrt_main.a  idx.c csv.c image.c jpeg.c preprocess.c main.c train.c
 *                    data sets, images, the commands and the training loop,
 *                    for the generated executables only;
 *                    link after libcnnrt.a with -ljpeg -lpng -lz.
 *
 * Conventions.
 *   - A function that can fail returns 0 on success and -1 on failure, after
 *     writing a one-line message into the caller's rt_err. The message starts
 *     with the file it concerns and says what is wrong, with the row, column or
 *     offset where there is one:
 *       "w.safetensors: tensor 'conv1.weight' has dtype F16, expected F32"
 *   - A struct filled by a function belongs to the caller and is released with
 *     the matching _free function. On failure the struct is left zeroed,
 *     owning nothing; _free accepts a zeroed struct.
 *   - There is no global mutable state. Little-endian hosts only (x86-64,
 *     AArch64): the file formats store little-endian floats.
 */
#ifndef CNNRT_H
#define CNNRT_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#if defined(__GNUC__) || defined(__clang__)
#define RT_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define RT_PRINTF(f, a)
#endif

/* error.c */

/* A failure's message; msg is always NUL-terminated (empty before a failure). */
typedef struct {
    char msg[512];
} rt_err;

/* Formats the message into e->msg (truncating to fit) and returns -1, so a
 * failing function can `return rt_fail(err, "%s: ...", path)`. e may be NULL. */
int rt_fail(rt_err *e, const char *fmt, ...) RT_PRINTF(2, 3);

/* Reads the whole file at path into a fresh buffer, with a NUL appended that
 * *len does not count. The caller frees *buf. Fails if the file cannot be
 * opened or read ("x.csv: cannot open: No such file or directory"). */
int rt_read_file(const char *path, char **buf, size_t *len, rt_err *err);

/* The shape dims[0..rank) as "[6, 1, 5, 5]" into buf (truncated to fit);
 * returns buf, for messages. */
const char *rt_shape_str(int rank, const int64_t *dims, char *buf, size_t size);

/* crc32.c */

/* The IEEE 802.3 CRC-32 (as zlib's crc32 and Python's zlib.crc32): start with
 * crc = 0 and feed the running value back to continue over more bytes. */
uint32_t rt_crc32(uint32_t crc, const void *p, size_t n);

/* safetensors.c
 *
 * The safetensors format: an 8-byte little-endian header length N; N bytes of
 * JSON mapping each tensor's name to
 *   {"dtype":"F32","shape":[d0,...],"data_offsets":[begin,end]}
 * plus an optional "__metadata__" object of strings; then the data section,
 * which offsets count from. F32 tensors are loaded; tensors of the other
 * dtypes of the format are validated and listed in rt_tensors.other. */

#define RT_MAX_RANK 8

/* One named tensor. count is the product of dims[0..rank) (1 for rank 0).
 * data holds count floats, row-major; NULL when count is 0. */
typedef struct {
    char *name;
    int rank;
    int64_t dims[RT_MAX_RANK];
    int64_t count;
    float *data;
    int dtype;            /* RT_F32 (0) ...: writing converts data to it (rounded to nearest
                             and saturated, NaN as 0; BOOL: nonzero); reading gives RT_F32 */
    int64_t index_step;   /* writing RT_I64: adds b * index_step to the values of dims[0]'s
                             b-th slice, in int64 (indices into an example made into the batch) */
} rt_tensor;

/* The contents of a safetensors file: tensors in the file header's order,
 * metadata pairs meta_key[i] -> meta_val[i] in the header's order. Everything
 * reachable from it is owned by it. */
/* A tensor of another dtype than F32: named and checked; integer and boolean
 * ones also loaded as floats (values). */
typedef struct {
    char *name;
    char dtype[8];
    /* integer and boolean dtypes (U8, I8, BOOL, I16, U16, I32, I64) are also
     * read, converted to float (exactly up to 2^24): values.data; else NULL */
    rt_tensor values;
} rt_other;

typedef struct {
    int n;
    rt_tensor *t;         /* the F32 tensors */
    int nmeta;
    char **meta_key, **meta_val;
    int nother;
    rt_other *other;      /* tensors of other dtypes (e.g. PyTorch's num_batches_tracked) */
} rt_tensors;

/* Reads and validates a safetensors file into *out. Refuses anything that is
 * not exactly the format: truncated files, absurd header lengths, malformed
 * JSON, missing or repeated fields, unknown dtypes, shapes that overflow or
 * disagree with the byte range, ranges outside the data section, overlapping
 * ranges, gaps or unused trailing data, repeated tensor names. */
int rt_st_read(const char *path, rt_tensors *out, rt_err *err);

/* As rt_st_read, from the len bytes at buf (not retained); label names the
 * source in messages. Never reads outside [buf, buf + len). */
int rt_st_read_mem(const void *buf, size_t len, const char *label, rt_tensors *out,
                   rt_err *err);

/* Releases everything *t owns and zeroes it. */
void rt_st_free(rt_tensors *t);

/* The tensor called name, or NULL. Borrowed from t. */
const rt_tensor *rt_st_find(const rt_tensors *t, const char *name);

/* The tensor called name, F32 or of an integer or boolean dtype converted to
 * float (rt_other.values), or NULL. Borrowed from t. */
const rt_tensor *rt_st_find_values(const rt_tensors *t, const char *name);

/* The metadata value for key, or NULL. Borrowed from t. */
const char *rt_st_meta(const rt_tensors *t, const char *key);

/* The checks of loading a file into a network (net.c's NAME_load, and cnnc's
 * --weights at compile time), each failure naming path and the tensor:
 * rt_st_check_meta compares the metadata that is present -- network (the
 * network's name), structure (its hash, 16 hex digits) and crc32 (of the F32
 * tensors' data in file order) -- with the network and the data;
 * rt_st_take finds the tensor for a parameter called name of shape
 * dims[0..rank): present, F32, and of exactly that shape ("w.safetensors: no
 * tensor 'conv1.bias'", "... has dtype F16, expected F32", "... has shape
 * [6, 1, 3, 3], but the network's has shape [6, 1, 5, 5]"). */
int rt_st_check_meta(const rt_tensors *t, const char *network, uint64_t structure,
                     const char *path, rt_err *err);
int rt_st_take(const rt_tensors *t, const char *name, int rank, const int64_t *dims,
               const char *path, const rt_tensor **out, rt_err *err);

/* Writes tensors t[0..n) in that order, with metadata key[i] -> val[i] for
 * i < nmeta, to path. Each t[i].count must equal the product of its dims; names
 * must be distinct, non-empty, not "__metadata__", and all strings valid UTF-8.
 * The write is atomic: the file is written as path.tmp.<pid> in the same
 * directory, synced, renamed over path, and the directory synced. On failure
 * (full disk, missing or read-only directory, ...) the temporary file is
 * removed and an existing file at path is left as it was; only if the final
 * directory sync fails is the new file in place, and the message says so.
 * The header is padded with spaces so the data section starts at a multiple
 * of 8. */
int rt_st_write(const char *path, int n, const rt_tensor *t, int nmeta,
                const char *const *key, const char *const *val, rt_err *err);

/* idx.c
 *
 * The IDX format (MNIST, Fashion-MNIST), plain or gzip-compressed (detected by
 * the magic bytes 1f 8b): bytes 00 00 08 R, then R big-endian u32 dims, then
 * the unsigned bytes of the array, row-major. Only element type 0x08 (unsigned
 * byte) and 1 <= R <= 4 are accepted. */

/* An IDX array, or the slice of it made of items [first, first + n) along the
 * first axis. dims are the whole file's: dims[0] is its item count. */
typedef struct {
    int rank;
    int64_t dims[4];
    int64_t item;     /* bytes per item: dims[1] * ... * dims[rank-1] (1 if rank 1) */
    int64_t first, n; /* the slice held in u8 */
    uint8_t *u8;      /* n * item bytes; NULL when that is 0 */
} rt_idx;

/* Reads the items [first, first + n) of the IDX file at path; n < 0 means
 * through the last item, n == 0 reads the header only. When the whole file is
 * read, trailing bytes and gzip corruption are errors too. */
int rt_idx_read(const char *path, int64_t first, int64_t n, rt_idx *out, rt_err *err);

void rt_idx_free(rt_idx *a);

/* A data set of n examples of dim values each, plus a class label for each.
 * Exactly one of u8 and f32 holds the values: u8 when read from IDX (raw
 * bytes, compact: Fashion-MNIST's 60000 x 784 is 47 MB), f32 when read from
 * CSV. Examples are row-major (images in C, H, W order). */
typedef struct {
    int64_t n, dim;
    uint8_t *u8;        /* n * dim bytes, or NULL */
    float *f32;         /* n * dim values, or NULL */
    int32_t *labels;    /* n labels */
    char *label_file;   /* the file the labels came from, for messages */
    int64_t first_line; /* CSV: the line number of example 0; IDX: 0 */
} rt_data;

/* Loads an IDX image file (n x ...) and its IDX label file (n, or n x 1) into
 * *d, checking that both hold the same number of examples, naming both files
 * when they do not. */
int rt_idx_load(const char *images, const char *labels, rt_data *d, rt_err *err);

/* Checks that every label lies in [0, nclasses), naming the first one that
 * does not (by line for CSV, by example index for IDX). */
int rt_data_check_labels(const rt_data *d, int nclasses, rt_err *err);

/* Gathers examples rows[0..n) into x (n * d->dim floats, value * scale) and,
 * unless y is NULL, their labels into y. Each rows[i] must be in [0, d->n). */
void rt_data_batch(const rt_data *d, const int64_t *rows, int n, float scale, float *x,
                   int32_t *y);

/* Releases what *d owns and zeroes it. */
void rt_data_free(rt_data *d);

/* csv.c */

/* Loads a CSV file of numbers, one example per line: column label_col (from 0)
 * is the integer label, the others are the example's values, in order. If the
 * first line has a field that is not a number it is a header and is skipped.
 * With expect_dim > 0 each example must have exactly that many values;
 * otherwise the first data line sets the count. Accepts \n and \r\n endings
 * and empty lines at the end only. Errors name the line (from 1) and column
 * (from 1): "d.csv:7: column 3: 'abc' is not a number". */
int rt_csv_load(const char *path, int label_col, int64_t expect_dim, rt_data *d,
                rt_err *err);

/* image.c */

/* One 8-bit image, planar: px[(ch * h + y) * w + x]. c is 1 (gray) or 3 (RGB). */
typedef struct {
    int c, h, w;
    uint8_t *px;
} rt_image;

/* Images over RT_IMAGE_MAX_SIDE pixels a side or RT_IMAGE_MAX_SAMPLES
 * samples (channels x height x width) are refused, from their header, before
 * anything of their size is allocated. */
#define RT_IMAGE_MAX_SIDE 16384
#define RT_IMAGE_MAX_SAMPLES (1 << 27)

/* Allocates img's pixels for c x h x w, or fails naming path with the size
 * when it is outside the limits above. */
int rt_image_alloc(rt_image *img, int c, int64_t h, int64_t w, const char *path, rt_err *err);

/* Reads image number index (from 0) of the file at path. Formats, told apart
 * by their first bytes: PGM/PPM (P2, P5, P3, P6; maxval up to 65535, scaled
 * to 8 bits), PNG (any color type and bit depth, reduced to 8-bit gray or RGB:
 * alpha and transparency dropped, palettes expanded to RGB), JPEG (jpeg.c),
 * and IDX (plain or gzip, items as rt_image_from_idx takes them). index must
 * be 0 except for IDX, where reading decompresses everything before the
 * image: to visit many, use rt_idx_read once and rt_image_from_idx. Unknown
 * formats are named by their first bytes. */
int rt_image_read(const char *path, int64_t index, rt_image *img, rt_err *err);

/* The number of images in the file at path: 1, or an IDX file's item count. */
int rt_image_count(const char *path, int64_t *n, rt_err *err);

/* Copies image number index (counting in the file, so first <= index <
 * first + n) of the IDX slice a into *img. Items of shape [H, W] are gray,
 * [H, W, 3] RGB, [C, H, W] with C in {1, 3} planar; label is a name for
 * messages. */
int rt_image_from_idx(const rt_idx *a, int64_t index, const char *label, rt_image *img,
                      rt_err *err);

void rt_image_free(rt_image *img);

/* jpeg.c: JPEG through libjpeg(-turbo), its own file so that only what
 * reads images links libjpeg.
 *
 * Decodes the len bytes at b (a JPEG file; path names it in messages) as
 * PIL does: gray stays gray, YCbCr and RGB become RGB, CMYK and YCCK become
 * RGB as PIL's convert("RGB") makes them. No EXIF orientation is applied (PIL applies none either). The
 * size is checked from the header before decoding. libjpeg's errors, and its
 * warnings that mean missing or corrupt data (a truncated file), fail with
 * libjpeg's message: "x.jpg: bad JPEG: Premature end of JPEG file". */
int rt_jpeg_read(const unsigned char *b, size_t len, const char *path, rt_image *img,
                 rt_err *err);

/* preprocess.c: from an image to a network input, as the data { } block
 * says, the steps of torchvision's Resize(resize), CenterCrop(crop),
 * ToTensor() and Normalize(mean, std) through PIL, with PIL's arithmetic
 * (8-bit samples, fixed-point bilinear weights) so that the input tensor is
 * the one torchvision makes. */
typedef struct {
    int resize;           /* > 0: the shorter side becomes resize pixels, bilinear */
    int crop;             /* > 0: then the centre crop x crop square */
    float scale;          /* then each sample times scale (ToTensor: 1/255) */
    float mean[3], std[3];/* then (v - mean[k]) / std[k] on channel k */
} rt_prep;

/* Fills x with img as a network input of shape dims[0..rank): [C, H, W],
 * [H, W] (one channel) or [D]. A flat [D] takes the image as it is if D
 * equals c * h * w, and otherwise a square gray (D = S*S) or RGB (D = 3*S*S)
 * S x S image. Channels are converted as PIL converts (gray to RGB by
 * replication, RGB to gray by luma 0.299 R + 0.587 G + 0.114 B rounded);
 * then, with p->resize, the shorter side is resized to p->resize as
 * torchvision's Resize does (the longer side in proportion, truncated), or
 * without resize and crop the image is stretched to the input's H x W
 * (bilinear: PIL's triangle filter, widened when shrinking); with p->crop
 * (which must equal the input's H and W) the centre is cut out, padded with
 * zeros where the image is smaller, offsets rounded as torchvision's
 * CenterCrop; then values become (v * scale - mean) / std. label names the
 * image in messages, which say what does not fit. */
int rt_image_prepare(const rt_image *img, const rt_prep *p, int rank, const int64_t *dims,
                     float *x, const char *label, rt_err *err);

/* rt_image_prepare with no resize, crop, mean or std: the image stretched to
 * the input's size, values times scale. */
int rt_image_to_input(const rt_image *img, int rank, const int64_t *dims, float scale,
                      float *x, const char *label, rt_err *err);

/* Class names, one per output class, for predict's top-5. */
typedef struct {
    int64_t n, cap;
    char *text;           /* the names, each NUL-terminated */
    char **name;          /* name[0..n) point into text */
} rt_classes;

/* Splits text (len bytes, not retained) into one name per line: lines end
 * with \n or \r\n, the last newline is optional, no name is empty. Fails,
 * naming label and the line, on an empty name, and naming label when the
 * count is not nclasses: "x.txt: 999 class names (one per line), but the
 * network has 1000 classes". */
int rt_classes_parse(const char *text, size_t len, int64_t nclasses, const char *label,
                     rt_classes *c, rt_err *err);
/* rt_classes_parse of the file at path. */
int rt_classes_read(const char *path, int64_t nclasses, rt_classes *c, rt_err *err);
void rt_classes_free(rt_classes *c);

/* parallel.c: a generated kernel's large GEMMs and independent loop nests
 * spread over the threads that net.c leaves idle (see the file).
 *
 * fn is the kernel's GEMM routine: C[i ldc + j] (+)= sum_k A[i sai + k sak]
 * B[k ldb + j] (with RT_GEMM_BT: B[j ldb + k]) for i < M, j < N, k < K,
 * starting from 0 or the bias (per row with RT_GEMM_BIAS_ROWS, else per
 * column) unless acc. `how` holds the RT_GEMM_* flags and the routine's
 * register tile: rows << 16 | columns << 24. */
typedef void rt_gemm_fn(int64_t M, int64_t N, int64_t K, const float *A, int64_t sai, int64_t sak,
                        const float *B, int64_t ldb, float *C, int64_t ldc, bool acc, const float *bias);
enum { RT_GEMM_BT = 1, RT_GEMM_BIAS_ROWS = 2, RT_GEMM_BIAS_PAIRS = 4 /* two floats per row */ };
void rt_gemm(rt_gemm_fn *fn, int64_t M, int64_t N, int64_t K, const float *A, int64_t sai, int64_t sak,
             const float *B, int64_t ldb, float *C, int64_t ldc, int64_t acc, const float *bias, int64_t how);
/* `count` GEMMs of one shape (a loop whose body is one GEMM): GEMM g reads
 * A + g a_step, B + g b_step, the bias + g bias_step and writes C + g c_step
 * (steps in floats; the Cs do not overlap). Whole GEMMs to each thread when
 * there are enough of them, else each one split as rt_gemm does. */
void rt_gemm_batch(rt_gemm_fn *fn, int64_t M, int64_t N, int64_t K, const float *A, int64_t sai, int64_t sak,
                   const float *B, int64_t ldb, float *C, int64_t ldc, int64_t acc, const float *bias, int64_t how,
                   int64_t count, int64_t a_step, int64_t b_step, int64_t c_step, int64_t bias_step);
/* rt_gemm for a GEMM whose B every thread's slice of the batch shares (a
 * large dense layer's weights, A and C the slice's rows). Inside
 * rt_net_forward's region (rt_slices_together), the team's threads, each
 * calling it for its slice, compute it together: each takes a share of the
 * columns, for the rows of every slice, in blocks whose part of B stays in
 * its L2, so B streams from memory once, not once a thread. Elsewhere it is
 * rt_gemm. Every thread of the team must call it, in the same order. */
void rt_gemm_shared(rt_gemm_fn *fn, int64_t M, int64_t N, int64_t K, const float *A, int64_t sai, int64_t sak,
                    const float *B, int64_t ldb, float *C, int64_t ldc, int64_t acc, const float *bias, int64_t how);
/* Whether the calling thread runs its slice of a batch alongside the rest
 * of its team, every thread through the same kernel (net.c, inference). */
void rt_slices_together(bool on);
/* part(args, lo, hi) for parts of [lo, hi) that together cover it, on the
 * idle threads: a loop nest's outer loop (args: its arguments), in a
 * kernel called on `batch` examples. Quick nests run whole (on the calling
 * thread): each call site times its first calls at each batch size. */
typedef void rt_part_fn(void *args, int64_t lo, int64_t hi);
void rt_parallel(rt_part_fn *part, void *args, int64_t lo, int64_t hi, int64_t batch);
/* rt_parallel's choice for a call site's call number `call`, given its
 * quickest whole and split calls so far (INT64_MAX: none) and the least
 * time worth a split: whether to run it split, and (*timed) whether to time
 * it. (Apart for its test.) */
bool rt_split_choice(int64_t whole_ns, int64_t split_ns, int64_t split_min, int64_t call, bool *timed);
/* The threads the calling thread's GEMMs and nests may use from now on (1: none). */
void rt_inner_threads(int threads);
/* The calling thread's private scratch, at least `bytes` long, 64-byte
 * aligned (the generated code's BASE_PRIV: one padded channel that a nest
 * writes and reads back, each thread running a part of it in its own). It
 * is kept for the thread's next calls and moves only when a call asks for
 * more than the last. Exits with a message when memory runs out. */
float *rt_private(int64_t bytes);

/* net.c
 *
 * A network object around the kernels that cnnc generates. The generated
 * object defines one rt_net_desc, NAME_desc, and the NAME_* functions of
 * NAME.h, each of which calls the rt_net_* function of the same name. */

/* The layout of rt_net_desc: cnnc's llvm.c emits it field by field, every
 * field 8 bytes wide. Bump the low word when the layout changes. */
#define RT_DESC_MAGIC 0x636e6e630000000bll

/* RT_INIT_DATA: the parameter's values are built into the program or
 * library (cnnc --weights FILE at compile time, an imported model's
 * initializers): rt_param_desc.data. */
enum { RT_INIT_ZEROS, RT_INIT_ONES, RT_INIT_CONSTANT, RT_INIT_UNIFORM, RT_INIT_NORMAL,
       RT_INIT_HE, RT_INIT_XAVIER, RT_INIT_DATA };
enum { RT_PARAM_WEIGHT = 1, RT_PARAM_BUFFER = 2 };
enum { RT_LABELS_NONE, RT_LABELS_CLASS, RT_LABELS_TARGET };
enum { RT_SCHED_CONSTANT, RT_SCHED_STEP, RT_SCHED_COSINE, RT_SCHED_EXP };
enum { RT_DATA_NONE, RT_DATA_IDX, RT_DATA_CSV };
enum { RT_LOSS_NONE, RT_LOSS_CE, RT_LOSS_HINGE, RT_LOSS_MSE };

/* One parameter (or buffer) in the parameter block. */
typedef struct {
    const char *name;             /* "conv1.weight" */
    int64_t rank, dims[4], count;
    int64_t offset;               /* floats from the block's start (64-byte aligned) */
    int64_t init;                 /* RT_INIT_* */
    double a, b;                  /* constant(a), uniform(a, b), normal(a, b) */
    int64_t fan_in, fan_out;
    int64_t flags;                /* RT_PARAM_* */
    const float *data;            /* RT_INIT_DATA: count values, row-major (64-byte aligned);
                                     else NULL */
} rt_param_desc;

typedef void rt_forward_fn(int64_t n, const float *x, float *out, const float *params, float *ws);

/* The training kernel: training-mode forward and backward over examples
 * [first, first + n) of a batch of `total`. x holds those n examples, y their
 * labels (int32_t) or targets (float, target_size each). It writes into grads
 * (a block laid out as params) the gradient of the loss's data term scaled by
 * 1/total, summed over its n examples, for every parameter (zero where the
 * loss does not depend on it), and returns its n examples' share of the mean
 * data loss: sum over them / total. Batchnorm's running statistics are
 * updated in params. ws holds train_ws_fixed + n * train_ws_floats floats.
 * seed drives dropout: the mask of an element depends only on (seed, first +
 * example, element), never on how the batch is split.
 * As the backward pass goes, right after the last statement that touches a
 * learned parameter's gradient, it calls rt_grads_ready(ctx, lo, hi) with
 * [lo, hi) that parameter's elements of grads (offset, offset + count): it
 * will neither read nor write them again. The calls come in the same order
 * every time, the one rt_net_desc.ready lists; ctx is NULL when nobody
 * listens (buckets.c). */
typedef struct rt_grads rt_grads;
typedef double rt_train_fn(int64_t n, const float *x, const void *y, float *params, float *grads,
                           float *ws, int64_t first, int64_t total, uint64_t seed, rt_grads *ctx);

/* A regularizer term of the loss: coef * sum p^2 (l2) or coef * sum |p| (l1). */
enum { RT_REG_L2 = 1, RT_REG_L1 = 2 };
typedef struct {
    int64_t kind;                 /* RT_REG_* */
    double coef;
    int64_t param;                /* index into params */
} rt_reg_desc;

typedef struct {
    int64_t kind;                 /* RT_DATA_* */
    const char *path, *labels;    /* idx(images, labels) or csv(path) */
    int64_t label_col;
} rt_data_desc;

/* The element types of the outputs in files (cnnc's ElemType): the network
 * computes in float, `forward` writes each output converted to its type. */
enum { RT_F32, RT_U8, RT_I8, RT_BOOL, RT_I64 };

/* One output of the network. An example's outputs lie one after another in
 * a row of out_stride floats: this one at offset, size floats. index_step: its
 * values are indices into the example (MaxPool's, exact in float below 2^24);
 * `forward` adds the example's number times index_step in int64 as it writes
 * them, so that in its file they index the batch, as ONNX's do. */
typedef struct {
    const char *name;             /* its tensor's in forward's file ("out" for a lone output) */
    int64_t rank, dims[RT_MAX_RANK - 1], size;  /* per example */
    int64_t offset;
    int64_t dtype;                /* RT_F32 ... */
    int64_t index_step;
} rt_output_desc;

/* Everything the runtime knows of a network, emitted by cnnc. */
typedef struct {
    int64_t magic;                /* RT_DESC_MAGIC */
    const char *name, *version;
    uint64_t structure_hash;      /* of the operator graph: checkpoints name it */
    int64_t input_rank, input_dims[RT_MAX_RANK - 1], input_size;   /* per example: up to 7 dimensions */
    int64_t output_rank, output_dims[RT_MAX_RANK - 1], output_size;
    int64_t label_kind, nclasses, target_size;
    int64_t loss_kind;            /* RT_LOSS_*: the loss's data term */
    double margin;                /* svm_hinge */
    int64_t output_probs;         /* the output is already a softmax */
    int64_t nparams;
    const rt_param_desc *params;
    int64_t param_floats;         /* the parameter block */
    int64_t ws_floats;            /* workspace per example */
    int64_t ws_fixed;             /* and per call (scratch shared by the examples) */
    rt_forward_fn *forward;       /* inference over n examples */
    rt_train_fn *train;           /* NULL when the network has no loss */
    int64_t train_ws_floats;      /* training workspace per example */
    int64_t train_ws_fixed;       /* and per call */
    int64_t train_serial;         /* batch statistics (batchnorm): one thread */
    int64_t nreg;
    const rt_reg_desc *reg;       /* the loss's l2/l1 terms */
    int64_t nready;               /* the training kernel's rt_grads_ready calls, */
    const int64_t *ready;         /* in order: call k names [ready[2k], ready[2k + 1]) */
    /* the train { } block */
    double lr, momentum, weight_decay;
    int64_t nesterov, batch, epochs, schedule, step_every;
    double step_factor, exp_gamma;
    int64_t seed;
    /* the data { } block */
    rt_data_desc train_set, test_set;
    double scale;                 /* applied to the data; 0: rt_input_scale decides */
    const char *summary;          /* the --summary table */
    /* the data { } block's preprocessing for predict (rt_prep) */
    int64_t resize, crop;         /* 0: none */
    double mean[3], std[3];       /* per input channel; 0 and 1 when not given */
    const char *classes;          /* the class names, each followed by "\n"; NULL: none */
    /* the outputs: output_* above describe outputs[0], the one predict,
     * eval and the loss use */
    int64_t out_stride;           /* an example's floats in out: every output's */
    int64_t noutputs;
    const rt_output_desc *outputs;
    int64_t private_floats;       /* each thread's private scratch (rt_private) */
    /* cnnc --profile: the layers the kernels mark (rt_prof_mark), and the
     * table the marks add to; 0, NULL, NULL without */
    int64_t nprof;
    const char *const *prof_labels;
    int64_t *prof_ns;
} rt_net_desc;

/* profile.c
 *
 * cnnc --profile: a kernel calls rt_prof_mark(ns, id) as it begins each
 * layer's statements (id: the layer's index in the descriptor's
 * prof_labels) and rt_prof_mark(ns, -1) as it returns. The time from one
 * mark to the next goes to the first one's layer: ns[id] adds the
 * nanoseconds. Only the team's thread 0 marks (a
 * batch split into slices runs the same kernel on every thread): the
 * times are that thread's, GEMMs and nests it splits across the others
 * included. */
void rt_prof_mark(int64_t *ns, int64_t id);
/* One measure's profile (bench): rt_prof_begin zeroes the table (NULL
 * without --profile), rt_prof_call takes each timed call's layer times
 * (the first 4096 calls), and rt_prof_end prints on stdout, under a line
 * naming `what`, the layers' mean time over the calls at or below the
 * median, largest first (nothing with `what` NULL), and frees. Each
 * accepts NULL. */
typedef struct rt_prof_calls rt_prof_calls;
rt_prof_calls *rt_prof_begin(const rt_net_desc *d);
void rt_prof_call(rt_prof_calls *p, double seconds);
void rt_prof_end(rt_prof_calls *p, const char *what);

/* The floats of an example's row of out (descriptors before layout 8, as the
 * runtime's tests write, have no out_stride: output_size). */
static inline int64_t rt_out_stride(const rt_net_desc *d)
{
    return d->out_stride ? d->out_stride : d->output_size;
}

typedef struct { uint64_t s[4]; } rt_rng;
void     rt_rng_seed(rt_rng *r, uint64_t seed);
uint64_t rt_rng_next(rt_rng *r);
double   rt_rng_uniform(rt_rng *r);     /* [0, 1) */
double   rt_rng_normal(rt_rng *r);      /* N(0, 1) */

/* A network: owns its parameter block, gradients, optimizer state and workspace.
 *
 * Preconditions. Every rt_net_* function accepts a NULL net and then does
 * nothing: it returns -1, NULL or NAN as its type allows (rt_net_error(NULL)
 * is "no network (NULL)"). Any other argument that breaks a function's
 * contract (n < 1, a NULL pointer, an index out of range, a class label
 * outside [0, nclasses)) makes it fail the same way without touching the
 * network or the caller's buffers, leaving the reason in rt_net_error. */
typedef struct rt_net {
    const rt_net_desc *d;
    float *params;                /* d->param_floats */
    float *grads, *momentum;      /* NULL until training */
    float *ws;                    /* workspace, ws_cap floats */
    int64_t ws_cap;
    int threads;
    float lr;
    uint64_t seed;
    char err[512];
    /* training: the optimizer's state and settings, and each thread's share
     * of a training batch (rt_net_loss_grad, rt_net_train_step) */
    int64_t step;                 /* SGD steps taken; dropout's seed is f(seed, step) */
    float sgd_momentum, sgd_weight_decay;   /* from the descriptor; may be changed */
    int sgd_nesterov;
    int tparts;                   /* threads with blocks below */
    float **tgrads;               /* [t] thread t's gradients (t >= 1; thread 0 uses grads) */
    float **tws;                  /* [t] thread t's training workspace, tws_cap floats */
    int64_t tws_cap;
    double *tloss;                /* [t] thread t's data loss, [tparts + t] its regularizers' */
    struct rt_buckets *buckets;   /* the gradient's buckets over processes (train_shard) */
} rt_net;

/* A network with its parameters initialized by rt_net_init; NULL: out of
 * memory, or a descriptor of another layout (RT_DESC_MAGIC). */
rt_net     *rt_net_new(const rt_net_desc *d, uint64_t seed);
/* Sets every parameter and buffer to its initial value: built-in values
 * (RT_INIT_DATA) are copied, whatever the seed; the others are drawn as
 * their initializer says from seed. The seed is also dropout's. */
void        rt_net_init(rt_net *net, uint64_t seed);
/* Whether d has parameters and every one (buffers too) has built-in
 * values: then the program's commands need no --weights. */
bool        rt_desc_builtin(const rt_net_desc *d);
void        rt_net_free(rt_net *net);
/* The last failure's message ("" before any); kept until the next failure. */
const char *rt_net_error(const rt_net *net);
/* Loads parameters and buffers by name, all or nothing, checking the
 * metadata network, structure and crc32 when present. A checkpoint's
 * momentum.<name> tensors, step and seed also restore the optimizer and the
 * dropout stream; a weights file (no momentum) resets the optimizer (momentum
 * zero, step 0). */
int         rt_net_load(rt_net *net, const char *path);
/* As rt_net_load, from a file already read (path names it in messages). */
int         rt_net_load_tensors(rt_net *net, const rt_tensors *ts, const char *path);
/* Writes the parameters and buffers (a weights file), atomically: a failed
 * write leaves an existing file at path as it was. path must not be NULL. */
int         rt_net_save(const rt_net *net, const char *path);
/* Writes a checkpoint, atomically: parameters and buffers, then
 * momentum.<name> for each learned parameter; metadata format, network,
 * structure, cnnc, seed, step, then key[i] -> val[i] for i < nmeta (which must
 * not repeat those), then crc32 (rt_crc32 of all tensors' data in file order). */
int         rt_net_save_checkpoint(const rt_net *net, const char *path, int nmeta,
                                   const char *const *key, const char *const *val);
/* Inference over n >= 1 examples: out (n * output_size floats) = f(x) (n *
 * input_size floats). With n < 1 or a NULL x or out it writes nothing and
 * fails (rt_net_error). */
void        rt_net_forward(rt_net *net, int n, const float *x, float *out);
/* Training-mode forward and backward over n examples, the batch split into
 * one contiguous slice per thread (one thread if the descriptor says
 * train_serial), the threads' gradients summed in thread order, so results
 * depend on the thread count but not on timing. Leaves the whole gradient
 * (data term plus the l2/l1 terms) in grads and returns the loss; NAN after
 * an error (rt_net_error says which). Needs n >= 1, non-NULL x and y, and
 * with class labels every y[i] in [0, nclasses); otherwise nothing is
 * computed and the network is unchanged. */
float       rt_net_loss_grad(rt_net *net, int n, const float *x, const void *y);
/* rt_net_loss_grad, then one SGD step on every learned parameter (not
 * buffers), as PyTorch's SGD with dampening 0:
 *   g = grad + weight_decay p;  v = momentum v + g;
 *   p -= lr (g + momentum v) with nesterov, else p -= lr v.
 * If the data loss is not finite the parameters and step are left as they
 * were. Allocates only when n or the thread count exceeds any before. */
float       rt_net_train_step(rt_net *net, int n, const float *x, const void *y);
/* One SGD step (as rt_net_train_step's) with the gradients in grads as they
 * are, e.g. after the caller summed them over processes: regularizers are
 * not added again. Then step + 1. 0, or -1 before any loss_grad. */
int         rt_net_step(rt_net *net);

/* The processes a training run is spread over: MPI's ranks (mpi.c, linked
 * by `cnnc --mpi`), or none (NULL) for one process. Every function is a
 * collective: each process calls it, in the same order, and all get the
 * same result. A process that dies ends them all (MPI's errors are fatal). */
typedef struct rt_dist rt_dist;
struct rt_dist {
    int rank, size;               /* this process, of size; rank 0 does the I/O */
    /* The gradient's sums, behind the backward pass (buckets.c): start_sum
     * begins v[0..n) = the sum over the processes of their v[0..n), in
     * place, and returns at once: v is not to be touched until wait_sums,
     * which returns when every sum started is done. start_status does the
     * same for the step's status (its loss and flags), started with the
     * last of the gradient, not after it. poll lets the started sums
     * progress. Called by the thread that started MPI only. */
    void (*start_sum)(const rt_dist *dist, float *v, int64_t n);
    void (*start_status)(const rt_dist *dist, double *status, int n);
    void (*poll)(const rt_dist *dist);
    void (*wait_sums)(const rt_dist *dist);
    /* v[0..n) = the sum over the processes of their v[0..n), in place */
    void (*sum_doubles)(const rt_dist *dist, double *v, int n);
    /* the largest of the processes' v */
    int (*max_int)(const rt_dist *dist, int v);
    int64_t bucket_bytes;         /* the least size of a gradient bucket, the same on every process */
    void *self;                   /* the implementation's own state */
};

/* One SGD step on a batch of `total` examples spread over dist's processes,
 * of which this one holds examples [first, first + n) in x and y (n may be
 * 0). Each computes its examples' gradient with its threads (as
 * rt_net_train_step splits a batch); the sums are added across processes
 * in buckets, each started as the backward pass finishes it (buckets.c),
 * then the regularizers added, and every process takes the same step. Batchnorm's statistics are
 * each process's own examples'; its running statistics are averaged over the
 * processes. *stop in: this process asks to stop; out: one of them did. The
 * loss of the whole batch, the same in every process; NAN on every process
 * if one failed (rt_net_error says why, or that another one failed), and a
 * non-finite loss without a step if the loss diverged. meanwhile(ctx), if
 * not NULL, is called once, while the step's last sums are in flight (the
 * caller copies its next batch then: work done while waiting for them). */
float       rt_net_train_shard(rt_net *net, const rt_dist *dist, int64_t total, int64_t first,
                               int n, const float *x, const void *y, bool *stop,
                               void (*meanwhile)(void *ctx), void *ctx);
/* Parameter i's values (count floats, in the network's block) or its
 * gradient; NULL (and rt_net_error) when i is outside [0, nparams), and for
 * the gradient before any loss_grad or train_step. */
float      *rt_net_param(rt_net *net, int i);
float      *rt_net_grad(rt_net *net, int i);
/* The thread count, clamped to [1, 1024]. */
void        rt_net_set_threads(rt_net *net, int threads);
/* The learning rate; a negative or non-finite lr is ignored. */
void        rt_net_set_lr(rt_net *net, float lr);
/* The bytes of the blocks the network holds now: parameters, gradients,
 * momentum, the threads' gradient blocks and training workspaces, the
 * inference workspace (as asked for: each block's 64-byte rounding is not
 * counted). 0 for NULL. cnnc --summary's "total" predicts it for one thread. */
int64_t     rt_net_bytes(const rt_net *net);
int         rt_desc_param_count(const rt_net_desc *d);
/* Parameter i's name, or NULL when i is outside [0, nparams). */
const char *rt_desc_param_name(const rt_net_desc *d, int i);
/* Fills dims with parameter i's shape and returns its rank; -1 (dims
 * untouched) when i is outside [0, nparams) or dims is NULL. */
int         rt_desc_param_shape(const rt_net_desc *d, int i, int64_t dims[4]);
/* The factor applied to input values: the data block's scale, or without one
 * 1/255 for image bytes (IDX, PGM, PNG) and 1 for numbers (CSV). */
float       rt_input_scale(const rt_net_desc *d, bool bytes);

/* buckets.c: the gradient's sums across processes, started bucket by
 * bucket as the training kernel calls rt_grads_ready (see the file). */
typedef struct rt_buckets rt_buckets;
/* The buckets of d's gradient: its calls in groups, each closed by the call
 * that brings it to at least `bytes` (the last call closes the last), then
 * the tail, the parameters no call names (buffers); a group's parameters,
 * joined across padding, are its buckets (contiguous: one sum each). NULL:
 * out of memory, or calls that do not each name one whole learned
 * parameter. */
rt_buckets *rt_buckets_new(const rt_net_desc *d, int64_t bytes);
void        rt_buckets_free(rt_buckets *b);
/* Before a step's kernels (again before each attempt): `parts` threads of
 * net, summing over dist. 0, or -1 when out of memory. */
int         rt_buckets_begin(rt_buckets *b, rt_net *net, const rt_dist *dist, int parts);
/* Thread t's ctx for the training kernel (NULL when b is). */
rt_grads   *rt_buckets_ctx(rt_buckets *b, int t);
/* The kernel's call: [lo, hi) of its grads is final (a no-op for NULL). */
void        rt_grads_ready(rt_grads *ctx, int64_t lo, int64_t hi);
/* Thread 0 after its kernel: starts each remaining group's sums as soon as
 * the other threads have finished it. */
void        rt_buckets_drain(rt_buckets *b);
/* After the step's kernels: the tail's sum started and status[0..n)'s
 * (summed over the processes with the gradient), meanwhile(ctx) called if
 * not NULL, then every sum waited for. If no kernel ran (no examples, or a
 * failure before it) the process takes part in each sum with zeros, so that
 * every process starts the same. */
void        rt_buckets_end(rt_buckets *b, double *status, int n, void (*meanwhile)(void *ctx), void *ctx);

/* main.c: the generated program's commands (info, predict, eval, bench, ...) */
int rt_main(const rt_net_desc *d, int argc, char **argv);
/* rt_main with `train` spread over dist's processes (mpi.c calls it). */
int rt_main_dist(const rt_net_desc *d, const rt_dist *dist, int argc, char **argv);
/* mpi.c (libcnnrt_mpi.a, linked by `cnnc --mpi` before the others): the
 * main() of an MPI build. Initializes MPI, runs `train` on every rank through
 * rt_main_dist and the other commands on rank 0 alone, then finalizes. */
int rt_mpi_main(const rt_net_desc *d, int argc, char **argv);

/* The probabilities of one output row: the row itself if the network ends in
 * a softmax, otherwise softmax(row); p holds output_size values. */
void   rt_probabilities(const rt_net_desc *d, const float *row, double *p);
/* The data term of the loss for one example in inference mode (cross-entropy
 * or multiclass hinge), from its output row and its probabilities. */
double rt_example_loss(const rt_net_desc *d, const float *row, const double *p, int32_t y);

/* v, rounded, with thousands separators into buf: "48,000"; returns buf. */
const char *rt_grouped(double v, char *buf, size_t size);

/* train.c: the generated program's `train` command.
 *
 * Each setting comes from the command line if given there, else from the
 * checkpoint being resumed (lr, momentum, batch, threads, seed), else from the
 * descriptor's train and data blocks. A run is a pure function of the seed,
 * the thread count, the settings and the data: the epoch's shuffle comes from
 * an rt_rng seeded by (seed, epoch), dropout's from (seed, step), so a run
 * resumed from a checkpoint ends with the weights of one that never stopped. */
typedef struct {
    const char *train_images, *train_labels;    /* IDX files; NULL: the data block */
    const char *test_images, *test_labels;
    const char *save;             /* checkpoint; NULL: NAME.ckpt.safetensors */
    const char *resume, *log, *plot;            /* NULL: none */
    int epochs;                   /* < 0: not given */
    int batch, threads;           /* 0: not given */
    double lr, momentum;          /* < 0: not given */
    int64_t seed;                 /* < 0: not given */
    const rt_dist *dist;          /* the processes to spread over; NULL: this one */
} rt_train_opts;

/* Trains as the options say, printing progress; returns the exit status: 0,
 * 1 (bad data, divergence, a failed write), 2 (bad command line) or 128 + the
 * signal that stopped it (SIGINT: 130) after writing a checkpoint. prog
 * prefixes messages. */
int rt_train(const rt_net_desc *d, const rt_train_opts *o, const char *prog);

#endif
