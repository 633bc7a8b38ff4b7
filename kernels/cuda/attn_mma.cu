/* attn_mma (CUDA): FlashAttention-2-style forward attention for fp16/bf16,
 * head dims 64 and 128 (see attn_mma.h for the contract). S = Q K^T and P
 * stay in registers (mma.sync m16n8k16, fp32 accumulation), operands come
 * from XOR-swizzled shared memory through ldmatrix, K/V tiles are
 * double-buffered with cp.async. The lane -> element mappings are the
 * functions of attn_mma.h, checked on the host by
 * tests/test_cuda_mma_layout.cpp; the kernel runs only on a GPU (sm_80+;
 * built for sm_90 here). */
#include "attn_mma.h"
#include "cuda_check.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stdint.h>

using namespace attn_mma;

/* ---------- PTX wrappers ---------- */

static __device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

/* 16 bytes global -> shared, bypassing L1 (.cg); src_bytes 0 writes 16 zero
 * bytes and reads nothing (PTX "cp.async": src-size < cp-size zero-fills). */
static __device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(__cvta_generic_to_global(src)),
                 "r"(src_bytes)
                 : "memory");
}
static __device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
/* wait until at most N of this thread's committed groups are pending */
template <int N> static __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

/* [LDSM] four 8x8 b16 matrices; lanes 8m..8m+7 address matrix m's rows */
static __device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
}
static __device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
}

/* [MMA] d += a b, 16x8x16, fp32 accumulators; a: 4 regs, b: 2 regs (b0, b1 of a B fragment) */
template <typename T> static __device__ __forceinline__ void mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                                                       uint32_t b1);
template <>
__device__ __forceinline__ void mma16816<__half>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                 "{%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma16816<__nv_bfloat16>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                                        uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                 "{%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* ---------- the kernel ---------- */

/* A thread's part of a ROWS x DH tile load: 16-byte chunks e = tid + THREADS i,
 * i < PER, which are rows r0 + RSTEP i of one column c0 (load_row / load_col
 * of attn_mma.h), so one global pointer and one shared offset a thread cover
 * them all (RSTEP is a multiple of 8: the swizzle repeats every 8 rows). */
template <int DH, int ROWS> struct TilePart {
    static constexpr int CH = DH / 8, PER = ROWS * CH / THREADS, RSTEP = THREADS / CH;
    static_assert(THREADS % CH == 0 && ROWS * CH % THREADS == 0 && RSTEP % 8 == 0, "tile chunks must split evenly");
    int r0, c0;      /* first chunk's row and column */
    uint32_t soff;   /* its byte offset in the swizzled tile */
    __device__ explicit TilePart(int tid)
        : r0(load_row<DH>(tid)), c0(load_col<DH>(tid)), soff(2u * (uint32_t)smem_off<DH>(r0, c0)) {}
};

/* Rows row0 + r (r < ROWS) of src (stride ld), from g = src + (row0 + r0) * ld + c0,
 * into the swizzled tile at shared address dst; rows r >= nvalid (0..ROWS) as zeros (padded
 * keys must hold V = 0, never garbage that 0 * x would keep as NaN). Asynchronous:
 * the caller commits and waits. */
template <typename T, int DH, int ROWS>
static __device__ __forceinline__ void load_tile(uint32_t dst, const TilePart<DH, ROWS> &tp, const T *g, int64_t ld,
                                                 const T *any, int nvalid) {
    typedef TilePart<DH, ROWS> TP;
#pragma unroll
    for (int i = 0; i < TP::PER; i++) {
        const bool in = tp.r0 + i * TP::RSTEP < nvalid; /* else any (a valid address) with 0 bytes read */
        /* 16-bit elements: row step RSTEP rows = RSTEP * DH * 2 bytes in shared memory */
        cp_async16(dst + tp.soff + i * TP::RSTEP * DH * 2, in ? g + i * TP::RSTEP * ld : any, in ? 16 : 0);
    }
}

/* min(n, cap) as an int, for row counts that may pass 2^31 */
static __device__ __forceinline__ int clamp_rows(int64_t n, int cap) { return n < cap ? (int)n : cap; }

/* Dynamic shared memory: Q [BM][DH], then K[2] and V[2] [BN][DH], all T, swizzled. */
template <int DH> static constexpr size_t amma_smem_bytes() { return (size_t)(BM + 4 * BN) * DH * 2; }

/* One CTA per (query tile of BM rows, image b, head h), blockIdx.x = qt +
 * qtiles * (b * heads + h) (the query tiles of one head run together and
 * share its K/V in L2). Warp w owns query rows q0 + 16w .. +15, lane l rows
 * c_row(l, 0) and c_row(l, 2) of those (its "row slots"). Per K/V tile t:
 *   start loading tile t+1 into the other buffer (cp.async), wait for tile t, barrier
 *   S[16 x 64] = Q K^T      NT C fragments (fp32 registers), K by ldmatrix
 *   mask, row max over the quad (shuffles), online softmax in exp2 units
 *   P -> A fragments (pack_p: two C tiles = one A tile), O = O corr + P V (V by ldmatrix.trans)
 *   barrier (everyone is done with the buffer before it is refilled)
 * At the end O / l goes through this warp's rows of the Q tile (free by
 * then) so the global stores are 16-byte and row-contiguous.
 * MINB: CTAs per SM the register budget is sized for (smem allows 5 at DH 64, 2 at 128). */
template <typename T, int DH, int MINB>
__global__ void __launch_bounds__(THREADS, MINB)
    k_attn_mma(const T *q, int64_t ldq, const T *k, int64_t ldk, const T *v, int64_t ldv, T *o, int64_t ldo, int64_t Nq,
               int64_t Nk, int heads, int64_t qtiles, float sl2) {
    constexpr int KS = DH / 16; /* k16 steps of Q K^T */
    constexpr int ND = DH / 8;  /* n8 tiles of O */
    extern __shared__ __align__(128) unsigned char amma_smem[];
    T *Qs = reinterpret_cast<T *>(amma_smem);
    T *Ks = Qs + BM * DH; /* buffer i at Ks + i * BN * DH */
    T *Vs = Ks + 2 * BN * DH;

    const int warp = (int)threadIdx.x >> 5, lane = (int)threadIdx.x & 31;
    const int64_t qt = blockIdx.x % qtiles, bh = blockIdx.x / qtiles, b = bh / heads;
    const int h = (int)(bh % heads);
    const int64_t q0 = qt * BM;
    const T *qb = q + b * Nq * ldq + (int64_t)h * DH;
    const T *kb = k + b * Nk * ldk + (int64_t)h * DH;
    const T *vb = v + b * Nk * ldv + (int64_t)h * DH;
    const int ntiles = (int)((Nk + BN - 1) / BN);
    const uint32_t sQ = smem_u32(Qs), sK = smem_u32(Ks), sV = smem_u32(Vs);

    const TilePart<DH, BM> qpart((int)threadIdx.x);
    const TilePart<DH, BN> kvpart((int)threadIdx.x);
    load_tile<T, DH, BM>(sQ, qpart, qb + (q0 + qpart.r0) * ldq + qpart.c0, ldq, qb, clamp_rows(Nq - q0, BM));
    cp_async_commit();
    const T *kg = kb + (int64_t)kvpart.r0 * ldk + kvpart.c0; /* this thread's chunks of the next K tile */
    const T *vg = vb + (int64_t)kvpart.r0 * ldv + kvpart.c0;
    load_tile<T, DH, BN>(sK, kvpart, kg, ldk, kb, clamp_rows(Nk, BN));
    load_tile<T, DH, BN>(sV, kvpart, vg, ldv, vb, clamp_rows(Nk, BN));
    cp_async_commit();

    cp_async_wait<1>(); /* Q is in (K/V tile 0 may still be on its way) */
    __syncthreads();
    uint32_t qf[KS][4]; /* [MMA] A fragments of this warp's 16 Q rows, one per 16 dims */
#pragma unroll
    for (int kk = 0; kk < KS; kk++)
        ldsm_x4(qf[kk], sQ + 2 * smem_off<DH>(16 * warp + ldsm_q_row(lane), 16 * kk + ldsm_q_col(lane)));

    /* ldmatrix byte offsets of this lane, per 16 dims of K and per 16 dims of V,
     * for the first 16 keys; key block +16n adds 16n rows, which leaves the swizzle
     * (row & 7) alone, so it is an immediate offset in the loop */
    uint32_t koff[KS], voff[ND / 2];
#pragma unroll
    for (int kk = 0; kk < KS; kk++) koff[kk] = 2 * smem_off<DH>(ldsm_k_key(lane), 16 * kk + ldsm_k_dim(lane));
#pragma unroll
    for (int dp = 0; dp < ND / 2; dp++) voff[dp] = 2 * smem_off<DH>(ldsm_v_key(lane), 16 * dp + ldsm_v_dim(lane));

    float oacc[ND][4]; /* [MMA] C fragments: O rows of this warp, dims 8d.. */
#pragma unroll
    for (int d = 0; d < ND; d++)
#pragma unroll
        for (int i = 0; i < 4; i++) oacc[d][i] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

    constexpr uint32_t TILE_BYTES = BN * DH * 2;
    for (int t = 0; t < ntiles; t++) {
        if (t + 1 < ntiles) { /* buffer (t+1)&1 was last read in iteration t-1, before its closing barrier */
            const uint32_t nb = ((t + 1) & 1) * TILE_BYTES;
            const int left1 = clamp_rows(Nk - (int64_t)(t + 1) * BN, BN);
            kg += (int64_t)BN * ldk;
            vg += (int64_t)BN * ldv;
            load_tile<T, DH, BN>(sK + nb, kvpart, kg, ldk, kb, left1);
            load_tile<T, DH, BN>(sV + nb, kvpart, vg, ldv, vb, left1);
            cp_async_commit();
            cp_async_wait<1>(); /* tile t is in, t+1 in flight */
        } else {
            cp_async_wait<0>();
        }
        __syncthreads(); /* every thread's part of tile t is visible */
        const uint32_t kt = sK + (t & 1) * TILE_BYTES, vt = sV + (t & 1) * TILE_BYTES;

        /* S = Q K^T: s[j] is the C fragment of keys 8j..8j+7 */
        float s[NT][4];
#pragma unroll
        for (int j = 0; j < NT; j++)
#pragma unroll
            for (int i = 0; i < 4; i++) s[j][i] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < KS; kk++)
#pragma unroll
            for (int np = 0; np < NT / 2; np++) {
                uint32_t kf[4]; /* B fragments of keys 16np.. (regs 0, 1) and 16np+8.. (regs 2, 3) */
                ldsm_x4(kf, kt + koff[kk] + np * 16 * DH * 2);
                mma16816<T>(s[2 * np], qf[kk], kf[0], kf[1]);
                mma16816<T>(s[2 * np + 1], qf[kk], kf[2], kf[3]);
            }
        const int64_t left = Nk - (int64_t)t * BN;
        if (left < BN) mask_keys(s, lane, (int)left);

        /* online softmax: the four lanes of a quad share rows (c_row depends on lane >> 2 only) */
        float mx[2];
        tile_row_max(s, mx);
#pragma unroll
        for (int hh = 0; hh < 2; hh++) {
            mx[hh] = fmaxf(mx[hh], __shfl_xor_sync(0xffffffffu, mx[hh], 1));
            mx[hh] = fmaxf(mx[hh], __shfl_xor_sync(0xffffffffu, mx[hh], 2));
        }
        softmax_step<ND>(s, mx, m, l, oacc, sl2);

        /* O += P V with P straight from the S registers */
        uint32_t p[BN / 16][4];
        pack_p<T>(s, p);
#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++)
#pragma unroll
            for (int dp = 0; dp < ND / 2; dp++) {
                uint32_t vf[4]; /* B fragments of dims 16dp.. (regs 0, 1) and 16dp+8.. (regs 2, 3) */
                ldsm_x4_trans(vf, vt + voff[dp] + kk * 16 * DH * 2);
                mma16816<T>(oacc[2 * dp], p[kk], vf[0], vf[1]);
                mma16816<T>(oacc[2 * dp + 1], p[kk], vf[2], vf[3]);
            }
        __syncthreads(); /* the buffer of tile t is refilled in iteration t+1 */
    }

    /* O / l, staged in this warp's 16 rows of Qs (read only by this warp, into qf, before the loop) */
#pragma unroll
    for (int hh = 0; hh < 2; hh++) {
        l[hh] += __shfl_xor_sync(0xffffffffu, l[hh], 1);
        l[hh] += __shfl_xor_sync(0xffffffffu, l[hh], 2);
        l[hh] = 1.0f / l[hh]; /* l >= 1: the row max's own term is exp2(0) */
    }
    T *Ow = Qs + 16 * warp * DH;
#pragma unroll
    for (int d = 0; d < ND; d++)
#pragma unroll
        for (int hh = 0; hh < 2; hh++)
            *reinterpret_cast<uint32_t *>(Ow + smem_off<DH>(c_row(lane, 2 * hh), 8 * d + c_col(lane, 2 * hh))) =
                pack2<T>(oacc[d][2 * hh] * l[hh], oacc[d][2 * hh + 1] * l[hh]);
    __syncwarp();
    T *ob = o + b * Nq * ldo + (int64_t)h * DH;
    constexpr int OCH = 16 * DH / 8; /* 16-byte chunks of the warp's rows */
#pragma unroll
    for (int i = 0; i < OCH / 32; i++) {
        const int e = lane + 32 * i, r = load_row<DH>(e), c = load_col<DH>(e);
        const int64_t row = q0 + 16 * warp + r;
        if (row < Nq)
            *reinterpret_cast<uint4 *>(ob + row * ldo + c) = *reinterpret_cast<const uint4 *>(Ow + smem_off<DH>(r, c));
    }
}

/* ---------- launch ---------- */

template <typename T, int DH, int MINB>
static void amma_launch(const void *q, int64_t ldq, const void *k, int64_t ldk, const void *v, int64_t ldv, void *o,
                        int64_t ldo, int64_t blocks, int64_t Nq, int64_t Nk, int heads, int64_t qtiles,
                        cudaStream_t s) {
    constexpr size_t smem = amma_smem_bytes<DH>();
    static int attr_set = 0; /* one per instantiation; set at the first call (before any graph capture) */
    if (!attr_set) {
        CUDA_CHECK(cudaFuncSetAttribute(k_attn_mma<T, DH, MINB>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        attr_set = 1;
    }
    const float sl2 = 1.4426950408889634f / sqrtf((float)DH); /* log2(e) / sqrt(dh) */
    k_attn_mma<T, DH, MINB><<<(unsigned)blocks, THREADS, smem, s>>>((const T *)q, ldq, (const T *)k, ldk, (const T *)v,
                                                                   ldv, (T *)o, ldo, Nq, Nk, heads, qtiles, sl2);
    CUDA_LAUNCHED(DH == 64 ? "attention_mma_d64" : "attention_mma_d128", s);
}

extern "C" int cuk_attention_mma_supported(DType dt, int dh) {
    return (dt == DTYPE_F16 || dt == DTYPE_BF16) && (dh == 64 || dh == 128);
}

static int amma_aligned(const void *p) { return (uintptr_t)p % 16 == 0; }

extern "C" int cuk_attention_mma(const void *q, int64_t ldq, const void *k, int64_t ldk, const void *v, int64_t ldv,
                                 void *o, int64_t ldo, DType dt, int64_t B, int64_t Nq, int64_t Nk, int heads, int dh,
                                 cudaStream_t s) {
    if (!cuk_attention_mma_supported(dt, dh) || B < 0 || Nq < 0 || heads < 0) return -1;
    if (B == 0 || Nq == 0 || heads == 0) return 0;
    if (Nk < 1) return -1;
    if (!amma_aligned(q) || !amma_aligned(k) || !amma_aligned(v) || !amma_aligned(o) || ldq % 8 || ldk % 8 ||
        ldv % 8 || ldo % 8)
        return -1;
    const int64_t qtiles = (Nq + BM - 1) / BM;
    if (qtiles > 0x7fffffffLL / B / heads) return -1;
    const int64_t blocks = qtiles * B * heads;
    /* MINB: DH 64 needs ~110 registers, so 4 CTAs (128 regs/thread) fit; DH 128 ~170, 2 CTAs (smem allows 2) */
    if (dt == DTYPE_F16) {
        if (dh == 64) amma_launch<__half, 64, 4>(q, ldq, k, ldk, v, ldv, o, ldo, blocks, Nq, Nk, heads, qtiles, s);
        else amma_launch<__half, 128, 2>(q, ldq, k, ldk, v, ldv, o, ldo, blocks, Nq, Nk, heads, qtiles, s);
    } else {
        if (dh == 64) amma_launch<__nv_bfloat16, 64, 4>(q, ldq, k, ldk, v, ldv, o, ldo, blocks, Nq, Nk, heads, qtiles, s);
        else amma_launch<__nv_bfloat16, 128, 2>(q, ldq, k, ldk, v, ldv, o, ldo, blocks, Nq, Nk, heads, qtiles, s);
    }
    return 0;
}
