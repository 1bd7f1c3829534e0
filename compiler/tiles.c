/* tiles.c: the GEMM routines' register tiles: the default for the target,
 * and which tiles its vector registers can hold. Used when lowering (a
 * statement's own tile), by the code generator and by the tuner; no LLVM. */
#include "cnnc.h"

/* The target's vector registers: 32 of 16 floats with AVX-512, else 16 of
 * 8 (AVX2), where each of the routines' 16-float vectors takes two. */
static bool wide_registers = true;

void gemm_target(bool avx512) { wide_registers = avx512; }

void gemm_tile_default(bool bt, int *r, int *c)
{
    if (wide_registers)
        *r = bt ? GEMM_RT : GEMM_MR, *c = bt ? GEMM_CT : GEMM_NV;
    else
        *r = bt ? 2 : 6, *c = bt ? 2 : 1;
}

/* Whether the routine can be built with this tile and keeps its accumulators
 * and operands in the vector registers: AVX-512's (wide) or AVX2's. */
bool gemm_tile_fits(bool bt, int r, int c, bool wide)
{
    /* gemm: r c accumulators, c vectors of B, a broadcast of A (one register);
     * gemm_nt: r c accumulators, r vectors of A, c of B */
    int need = bt ? r * c + r + c : r * c + c, regs = wide ? 32 : 16;
    int used = wide ? need + !bt : 2 * need + !bt;
    if (bt)
        return r >= 1 && c >= 1 && r <= GEMM_RT_MAX && c <= GEMM_CT_MAX && used <= regs;
    return r >= 1 && c >= 1 && r <= GEMM_MR_MAX && c <= GEMM_NV_MAX && used <= regs;
}

/* ... for the target */
bool gemm_tile_ok(bool bt, int r, int c) { return gemm_tile_fits(bt, r, c, wide_registers); }

bool gemm_tail(const Gemm *g)
{
    int64_t rest = g->N % 16;
    return !g->bt && g->sak == 1 && g->N > 16 && rest >= 1 && rest <= GEMM_TAIL_MAX;
}

/* A GEMM whose A runs along its rows (sak > 1: the transposed weights of a
 * convolution's data gradient) reads a tile's r values of A at each k from
 * one run of r floats: with r = 8 from one cache line, however far apart
 * the k are. Rows are then cheap and columns are not (each is a vector of
 * B from the L2 at every k), so such a GEMM takes 8 rows by 3 vectors (24
 * accumulators, the most that leave room for 3 vectors of B), where it has
 * many columns and k (at least 8 vectors and 128 k: the strips of 3 leave
 * little over, and each tile of C is loaded and stored for a long run of k).
 * ResNet-18's largest such GEMM, M=4608 N=392 K=512, one thread, three
 * alternating tuner runs of the old and this default (Intel Xeon):
 * 29.2-36.4 ms with 6x2, 18.5-23.4 ms with 8x3. */
static bool a_along_rows_tall(const Gemm *g)
{
    return !g->bt && g->sak != 1 && g->N >= 8 * 16 && g->K->kind == X_INT && g->K->ival >= 128 &&
           gemm_tile_ok(false, 8, 3);
}

void gemm_tile_for(const Gemm *g, int *r, int *c)
{
    gemm_tile_default(g->bt, r, c);
    if (a_along_rows_tall(g)) {
        *r = 8, *c = 3;
        return;
    }
    int64_t vectors = g->N / 16;
    if (!gemm_tail(g) || vectors % *c == 0)
        return;
    if (vectors % 3 == 0 && gemm_tile_ok(false, *r, 3))
        *c = 3;
    else if (vectors % 5 == 0 && gemm_tile_ok(false, 4, 5))
        *r = 4, *c = 5;
}

/* The untuned loop order: rows outside reads all of B once per block of
 * rows, columns outside reads all of A once per strip of columns. B stays
 * in the cache across the blocks of rows only while it takes no more than
 * half the L2; beyond that (a convolution's im2col matrix at full size, a
 * large dense layer's weights), columns go outside, where a strip of B stays
 * and A, a layer's weights or a few rows of the batch, streams past it. A K
 * or M that depends on the batch counts as large. */
bool gemm_cols_outer_default(const Gemm *gm)
{
    if (gm->M->kind == X_INT && gm->M->ival <= 1)
        return false;                                   /* one row: one pass either way */
    if (gm->kblock)
        return false;                                   /* B's block of k stays in the L2 */
    return gm->K->kind != X_INT || 4 * gm->K->ival * gm->N > host_l2_bytes() / 2;
}
