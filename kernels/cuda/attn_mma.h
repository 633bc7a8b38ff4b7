/* attn_mma: a FlashAttention-2-style attention kernel for fp16/bf16 (mma.sync
 * m16n8k16 + ldmatrix + cp.async, S and P kept in registers), with the
 * contract of cuk_attention (cuda_ops.h) for the arguments it supports. The
 * C++ part below holds every lane -> matrix element mapping the kernel relies
 * on, as __host__ __device__ constexpr functions that kernels/cuda/attn_mma.cu
 * itself calls, plus the per-lane online-softmax steps; tests/
 * test_cuda_mma_layout.cpp checks them on the host against an emulated warp
 * (ldmatrix and mma written from the PTX ISA tables). The kernel itself is
 * tested on a GPU only. */
#ifndef UNETLAB_ATTN_MMA_H
#define UNETLAB_ATTN_MMA_H
#include "dtype.h"
#include <cuda_runtime_api.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

/* 1 when cuk_attention_mma has a kernel for this dtype and head dim (fp16 or
 * bf16; dh 64 or 128), else 0. */
int cuk_attention_mma_supported(DType dt, int dh);

/* Scaled dot-product attention with the contract of cuk_attention (heads
 * split from the row; Q row i of image b at q + (b*Nq + i) * ldq elements, K
 * and V rows at k/v + (b*Nk + j) * ldk/ldv, O rows at o + (b*Nq + i) * ldo),
 * launched on stream s. Returns 0 when it launched (or when B, Nq or heads is
 * 0: nothing to do), -1 and launches nothing when the arguments are outside
 * what it supports: dtype or dh not supported (see above), Nk < 1 (the output
 * would be zeros, which it does not write), a pointer not 16-byte aligned or
 * a row stride not a multiple of 8 elements (16-byte cp.async and stores), or
 * more than 2^31 - 1 blocks. A launch failure stops the program
 * (cuda_check.h). */
int cuk_attention_mma(const void *q, int64_t ldq, const void *k, int64_t ldk, const void *v, int64_t ldv, void *o,
                      int64_t ldo, DType dt, int64_t B, int64_t Nq, int64_t Nk, int heads, int dh, cudaStream_t s);

#ifdef __cplusplus
}

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>
#include <string.h>

/* ---------- layouts (C++ only) ----------
 * Notation: a lane's "group" is lane >> 2 and its "quad index" lane & 3
 * (the PTX ISA's groupID and threadID_in_group). A 32-bit fragment register
 * holds two 16-bit elements, e = 0 in the low half. Section numbers are from a
 * PTX ISA 9.x edition (they shift between versions; the titles and the anchors
 * on docs.nvidia.com/cuda/parallel-thread-execution are stable):
 *   [MMA]  9.7.14.5.8 "Matrix Fragments for mma.m16n8k16 with floating point
 *          type" (#warp-level-matrix-fragment-mma-16816-float)
 *   [LDSM] 9.7.14.5.15 "Warp-level matrix load instruction: ldmatrix"
 *          (#warp-level-matrix-instructions-ldmatrix): with .x4, lanes 8m..8m+7
 *          give the addresses of rows 0..7 of matrix m, and destination
 *          register m of lane l receives row l/4, columns 2(l%4), 2(l%4)+1 of
 *          matrix m (with .trans: rows 2(l%4), 2(l%4)+1 of column l/4). */
/* full unrolling keeps the fragment arrays in registers; host compilers do not know the pragma */
#ifdef __CUDA_ARCH__
#define AMMA_UNROLL _Pragma("unroll")
#else
#define AMMA_UNROLL
#endif

namespace attn_mma {

constexpr int WARPS = 4;           /* a CTA: 4 warps */
constexpr int BM = 16 * WARPS;     /* query rows a CTA; each warp owns 16 */
constexpr int BN = 64;             /* keys a K/V tile */
constexpr int NT = BN / 8;         /* n8 tiles of S per warp (one C fragment each) */
constexpr int THREADS = WARPS * 32;

/* [MMA] A, 16x16 row-major: register r (0..3), element e holds a_{2r+e}, at
 * row group + 8 (r & 1), column 2 quad + e + 8 (r >> 1). */
__host__ __device__ constexpr int a_row(int lane, int r) { return (lane >> 2) + 8 * (r & 1); }
__host__ __device__ constexpr int a_col(int lane, int r, int e) { return 2 * (lane & 3) + e + 8 * (r >> 1); }
/* [MMA] B, 16x8 (k x n, "col" = each column's k elements contiguous):
 * register r (0..1), element e holds b_{2r+e}, at k = 2 quad + e + 8 r, n = group. */
__host__ __device__ constexpr int b_k(int lane, int r, int e) { return 2 * (lane & 3) + e + 8 * r; }
__host__ __device__ constexpr int b_n(int lane) { return lane >> 2; }
/* [MMA] C/D, 16x8 fp32: element i (0..3) at row group + 8 (i >> 1), column 2 quad + (i & 1).
 * So a lane holds rows group (i = 0, 1) and group + 8 (i = 2, 3): its two "row slots" h = i >> 1. */
__host__ __device__ constexpr int c_row(int lane, int i) { return (lane >> 2) + 8 * (i >> 1); }
__host__ __device__ constexpr int c_col(int lane, int i) { return 2 * (lane & 3) + (i & 1); }

/* P re-use, C -> A: the A fragment of P.V k-step kk (keys 16kk..16kk+15)
 * register r, element e is element p_c_elem(r, e) of S's C fragment
 * p_c_tile(kk, r). Holds because a_row(l, r) == c_row(l, 2(r&1)+e) and
 * 16kk + a_col(l, r, e) == 8 p_c_tile(kk, r) + c_col(l, 2(r&1)+e) for
 * every lane (checked below, and against the PTX tables in the host test). */
__host__ __device__ constexpr int p_c_tile(int kk, int r) { return 2 * kk + (r >> 1); }
__host__ __device__ constexpr int p_c_elem(int r, int e) { return 2 * (r & 1) + e; }

/* ldmatrix addresses: the (row, column) of the tile whose address lane l
 * gives to one .x4 load, relative to the load's origin.
 * Q as A (x4, no .trans), a 16x16 block at (row0, col0): matrix m = l >> 3 is
 * rows 8 (m & 1).., columns 8 (m >> 1).., so registers 0..3 are [MMA] A
 * registers 0..3 (register r: rows + 8 (r & 1), columns + 8 (r >> 1)). */
__host__ __device__ constexpr int ldsm_q_row(int lane) { return lane & 15; }
__host__ __device__ constexpr int ldsm_q_col(int lane) { return (lane >> 4) * 8; }
/* K as B of S = Q K^T (x4, no .trans): B[k][n] = K[key n][dim k], and a K
 * row (one key) is a B column, contiguous in k as "col" wants. One load
 * covers 16 keys x 16 dims: matrix m is keys 8 (m >> 1).., dims 8 (m & 1)..;
 * registers {0, 1} are the B fragment of keys +0..7, {2, 3} of keys +8..15
 * (register r of a B fragment: k = dims + 8 r). */
__host__ __device__ constexpr int ldsm_k_key(int lane) { return (lane & 7) + ((lane >> 4) << 3); }
__host__ __device__ constexpr int ldsm_k_dim(int lane) { return ((lane >> 3) & 1) * 8; }
/* V as B of O = P V (x4, .trans): B[k][n] = V[key k][dim n], V rows are
 * keys, so the load transposes. One load covers 16 keys x 16 dims: matrix m
 * is keys 8 (m & 1).., dims 8 (m >> 1)..; registers {0, 1} are the B
 * fragment of dims +0..7, {2, 3} of dims +8..15. */
__host__ __device__ constexpr int ldsm_v_key(int lane) { return (lane & 7) + (((lane >> 3) & 1) << 3); }
__host__ __device__ constexpr int ldsm_v_dim(int lane) { return (lane >> 4) * 8; }

/* Shared-memory tiles: ROWS x DH 16-bit elements, row-major with no padding
 * (a row is DH/8 16-byte chunks), chunk c of row r stored at chunk
 * c ^ (r & 7). An ldmatrix phase reads the same logical chunk of 8
 * consecutive rows; the XOR puts them in 8 distinct 16-byte bank groups, so
 * ldmatrix, the cp.async stores and the output staging are conflict-free
 * (checked in the host test). Needs at least 8 chunks a row: DH >= 64. */
template <int DH> __host__ __device__ constexpr int smem_off(int row, int col) {
    static_assert(DH % 64 == 0, "the XOR swizzle needs rows of at least 8 16-byte chunks");
    return row * DH + ((((col >> 3) ^ row) & 7) | ((col >> 3) & ~7)) * 8 + (col & 7);
}
/* Tile loads: 16-byte chunk number e = tid + THREADS i of a tile is row
 * e / (DH/8), chunk e % (DH/8) (consecutive threads: consecutive chunks of a row). */
template <int DH> __host__ __device__ constexpr int load_row(int e) { return e / (DH / 8); }
template <int DH> __host__ __device__ constexpr int load_col(int e) { return e % (DH / 8) * 8; }

/* ---------- the layouts agree with each other (compile-time) ---------- */
constexpr bool p_reuse_consistent() {
    for (int l = 0; l < 32; l++)
        for (int kk = 0; kk < BN / 16; kk++)
            for (int r = 0; r < 4; r++)
                for (int e = 0; e < 2; e++) {
                    const int i = p_c_elem(r, e);
                    if (a_row(l, r) != c_row(l, i)) return false;
                    if (16 * kk + a_col(l, r, e) != 8 * p_c_tile(kk, r) + c_col(l, i)) return false;
                }
    return true;
}
static_assert(p_reuse_consistent(), "P's C fragments must map onto the A fragment of P.V");
/* what ldmatrix (no .trans) delivers: register m of lane l = row l/4, cols 2(l%4)+e
 * of the matrix whose rows lanes 8m..8m+7 address ([LDSM]) */
constexpr bool ldsm_q_consistent() {
    for (int l = 0; l < 32; l++)
        for (int m = 0; m < 4; m++)
            for (int e = 0; e < 2; e++) {
                const int src = 8 * m + (l >> 2); /* the lane that gave the row address */
                if (ldsm_q_row(src) != a_row(l, m) || ldsm_q_col(src) + 2 * (l & 3) + e != a_col(l, m, e))
                    return false;
            }
    return true;
}
static_assert(ldsm_q_consistent(), "ldmatrix.x4 of Q must deliver the A fragment");
constexpr bool ldsm_k_consistent() {
    for (int l = 0; l < 32; l++)
        for (int m = 0; m < 4; m++)
            for (int e = 0; e < 2; e++) {
                const int src = 8 * m + (l >> 2); /* register m = B fragment m >> 1, register m & 1 */
                if (ldsm_k_key(src) != 8 * (m >> 1) + b_n(l)) return false;
                if (ldsm_k_dim(src) + 2 * (l & 3) + e != b_k(l, m & 1, e)) return false;
            }
    return true;
}
static_assert(ldsm_k_consistent(), "ldmatrix.x4 of K must deliver two B fragments of K^T");
/* .trans: register m of lane l = rows 2(l%4)+e, column l/4 of matrix m */
constexpr bool ldsm_v_consistent() {
    for (int l = 0; l < 32; l++)
        for (int m = 0; m < 4; m++)
            for (int e = 0; e < 2; e++) {
                const int src = 8 * m + 2 * (l & 3) + e; /* the lane that gave that row's address */
                if (ldsm_v_key(src) != b_k(l, m & 1, e)) return false;
                if (ldsm_v_dim(src) + (l >> 2) != 8 * (m >> 1) + b_n(l)) return false;
            }
    return true;
}
static_assert(ldsm_v_consistent(), "ldmatrix.x4.trans of V must deliver two B fragments of V");

/* ---------- per-lane arithmetic, shared by the kernel and the host emulation ---------- */

__host__ __device__ inline float exp2_fast(float x) {
#ifdef __CUDA_ARCH__
    float y; /* MUFU.EX2; ex2(-inf) = +0 */
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
#else
    return exp2f(x);
#endif
}

/* Two floats as one 32-bit A-fragment register of T: lo in the low half (element e = 0), rounded to nearest. */
template <typename T> __host__ __device__ inline uint32_t pack2(float lo, float hi);
template <> __host__ __device__ inline uint32_t pack2<__half>(float lo, float hi) {
    const __half2 h = __floats2half2_rn(lo, hi);
    uint32_t u;
    memcpy(&u, &h, 4);
    return u;
}
template <> __host__ __device__ inline uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    uint32_t u;
    memcpy(&u, &h, 4);
    return u;
}

/* Keys at tile columns >= valid (past Nk) score -inf. */
__host__ __device__ inline void mask_keys(float (&s)[NT][4], int lane, int valid) {
AMMA_UNROLL
    for (int j = 0; j < NT; j++)
AMMA_UNROLL
        for (int i = 0; i < 4; i++)
            if (8 * j + c_col(lane, i) >= valid) s[j][i] = -INFINITY;
}

/* This lane's share of the tile's row maxima, raw scores: mx[h] over row slot h. */
__host__ __device__ inline void tile_row_max(const float (&s)[NT][4], float (&mx)[2]) {
    mx[0] = mx[1] = -INFINITY;
AMMA_UNROLL
    for (int j = 0; j < NT; j++) {
        mx[0] = fmaxf(mx[0], fmaxf(s[j][0], s[j][1]));
        mx[1] = fmaxf(mx[1], fmaxf(s[j][2], s[j][3]));
    }
}

/* Online softmax step for one tile, given mx = the tile's row maxima already
 * reduced over the quad (all four lanes of a row agree). m: running max (raw
 * score units), l: this lane's part of the running sum (reduced over the
 * quad only at the end), o: output accumulators with ND n8 tiles. s becomes
 * p = exp2(s sl2 - m sl2) (sl2 = log2(e)/sqrt(dh), one FFMA a score);
 * l and o are rescaled by exp2((m_old - m_new) sl2). mx is finite (every
 * tile holds a valid key), so m_new is too and m_old = -inf gives 0. */
template <int ND>
__host__ __device__ inline void softmax_step(float (&s)[NT][4], const float (&mx)[2], float (&m)[2], float (&l)[2],
                                             float (&o)[ND][4], float sl2) {
    float corr[2], ms[2], sum[2] = {0.0f, 0.0f};
AMMA_UNROLL
    for (int h = 0; h < 2; h++) {
        const float mn = fmaxf(m[h], mx[h]);
        corr[h] = exp2_fast((m[h] - mn) * sl2);
        ms[h] = mn * sl2;
        m[h] = mn;
    }
AMMA_UNROLL
    for (int j = 0; j < NT; j++)
AMMA_UNROLL
        for (int i = 0; i < 4; i++) {
            s[j][i] = exp2_fast(fmaf(s[j][i], sl2, -ms[i >> 1]));
            sum[i >> 1] += s[j][i];
        }
AMMA_UNROLL
    for (int h = 0; h < 2; h++) l[h] = l[h] * corr[h] + sum[h];
AMMA_UNROLL
    for (int d = 0; d < ND; d++)
AMMA_UNROLL
        for (int i = 0; i < 4; i++) o[d][i] *= corr[i >> 1];
}

/* P (fp32 C fragments) -> the A fragments of P.V, one per 16 keys, in T. */
template <typename T> __host__ __device__ inline void pack_p(const float (&s)[NT][4], uint32_t (&p)[BN / 16][4]) {
AMMA_UNROLL
    for (int kk = 0; kk < BN / 16; kk++)
AMMA_UNROLL
        for (int r = 0; r < 4; r++)
            p[kk][r] = pack2<T>(s[p_c_tile(kk, r)][p_c_elem(r, 0)], s[p_c_tile(kk, r)][p_c_elem(r, 1)]);
}

} /* namespace attn_mma */
#endif /* __cplusplus */
#endif
