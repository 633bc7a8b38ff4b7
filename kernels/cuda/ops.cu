/* ops (CUDA): see cuda_ops.h. Every kernel is a template over the element
 * type T (float, __half, __nv_bfloat16); values are widened to float on load
 * and rounded once on store, so all arithmetic is fp32. Memory-bound kernels
 * move V elements at a time (a Pack of at most 16 bytes) where the pointers
 * and the inner size allow it, else one. Indices that can pass 2^31 (an SDXL
 * GEGLU input is 8192 x 10240) are int64. Group norm reads whole NHWC rows
 * in packs, in two kernels: per-group partial sums of pixel chunks into a
 * small per-stream scratch (the last block of an image adds them up in a
 * fixed order), then the normalisation (ops_kernels.cuh, which the emulator
 * runs on the CPU too).
 * Attention has a plain fp32 kernel (any head dim) and a tensor-core flash
 * kernel (nvcuda::wmma, fp16/bf16, head dims 16..128 in steps of 16).
 * The grid-stride kernels (element-wise, GEGLU, upsample, concat, timestep)
 * are in ops_kernels.cuh, which tests/test_cuda_emu.cpp also runs on the CPU.
 * Tested by tests/test_cuda_ops.c. */
#include "cuda_check.h"
#include "attn_select.h" /* attn_select_forced: the one parser of UNETLAB_ATTN */
#include "cuda_ops.h"
#include "ops_kernels.cuh" /* the grid-stride kernels, their helpers, pick_vec */

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

namespace wm = nvcuda::wmma;

#define FULL_MASK 0xffffffffu

static int sm_count(void) {
    static int n = 0;
    if (n == 0) {
        int dev = 0, v = 0;
        CUDA_CHECK(cudaGetDevice(&dev));
        CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev));
        n = v > 0 ? v : 1;
    }
    return n;
}

/* Blocks of `threads` for a grid-stride loop over `work` items: enough to
 * fill the device, no more. */
static unsigned grid_for(int64_t work, int threads) { return grid_for_sms(work, threads, sm_count()); }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, o));
    return v;
}

/* ---------- elementwise ---------- */

template <typename F> static void launch_map(const char *what, void *x, DType dt, int64_t n, F f, cudaStream_t s) {
    if (n <= 0) return;
    int v = pick_vec(dt, 0, x); /* any n: the tail loop takes n % v */
    DISPATCH_T(dt, DISPATCH_V(v, {
        unsigned g = grid_for((n / VW > 0 ? n / VW : 1), 256);
        k_map<T, VW, F><<<g, 256, 0, s>>>((T *)x, n, f);
        CUDA_LAUNCHED(what, s);
    }));
}

extern "C" void cuk_affine(void *x, DType dt, int64_t n, float alpha, float beta, cudaStream_t s) {
    launch_map("affine", x, dt, n, AffineF{alpha, beta}, s);
}

extern "C" void cuk_silu(void *x, DType dt, int64_t n, cudaStream_t s) { launch_map("silu", x, dt, n, SiluF{}, s); }

extern "C" void cuk_add(void *y, const void *x, DType dt, int64_t n, float scale, cudaStream_t s) {
    if (n <= 0) return;
    int v = pick_vec(dt, 0, y, x); /* any n: the tail loop takes n % v */
    DISPATCH_T(dt, DISPATCH_V(v, {
        unsigned g = grid_for((n / VW > 0 ? n / VW : 1), 256);
        k_add<T, VW><<<g, 256, 0, s>>>((T *)y, (const T *)x, n, scale);
        CUDA_LAUNCHED("add", s);
    }));
}

template <typename X> static void convert_from(const X *x, void *y, DType yt, int64_t n, int v, cudaStream_t s) {
    unsigned g = grid_for((n / 4 > 0 ? n / 4 : 1), 256);
    DISPATCH_T(yt, {
        if (v == 4) k_convert<X, T, 4><<<g, 256, 0, s>>>(x, (T *)y, n);
        else k_convert<X, T, 1><<<g, 256, 0, s>>>(x, (T *)y, n);
        CUDA_LAUNCHED("convert", s);
    });
}

extern "C" void cuk_convert(const void *x, DType xt, void *y, DType yt, int64_t n, cudaStream_t s) {
    if (n <= 0 || (xt == yt && x == y)) return;
    int v = aligned_to(x, 4 * dtype_size(xt)) && aligned_to(y, 4 * dtype_size(yt)) ? 4 : 1;
    DISPATCH_T(xt, convert_from<T>((const T *)x, y, yt, n, v, s));
}

/* ---------- group norm ---------- */

/* The pass-1 block program of ops_kernels.cuh with real barriers. */
struct GnDevStep {
    template <typename F> __device__ __forceinline__ void operator()(F f) const {
        f((int)threadIdx.x);
        __syncthreads();
    }
};

static_assert(sizeof(GnSmem) <= 48 * 1024, "group norm pass 1: static shared memory over 48 KiB");

template <typename T, int V> __global__ void __launch_bounds__(GN_THREADS) k_gn_stats(GnArgs<T> a, GnShape s) {
    __shared__ GnSmem sm;
    gn_stats_block<T, V>(a, s, (int64_t)blockIdx.x, sm, GnDevStep{});
}

/* The scratch of group norms launched on one stream (layout: ops_kernels.cuh,
 * gn_floats_at): grow-only, allocated and zeroed (the counters) outside
 * graph capture, and a buffer it outgrows is retired, not freed, until
 * cuk_group_norm_release: a graph captured earlier may still name it. One
 * buffer per stream, since calls on one stream run in order and calls on two
 * streams might not; a stream's slot is given back by the release (the CUDA
 * engine's free), so the table holds the live streams only. Not thread-safe,
 * like the engine that calls it. */
#define GN_STREAMS 32
static struct {
    cudaStream_t s;
    void *p;
    size_t cap;     /* bytes */
    int64_t ncount; /* counters at its start */
    void **retired; /* outgrown buffers, freed by the release */
    int nretired;
} gn_scratch_tab[GN_STREAMS];

extern "C" void cuk_group_norm_release(cudaStream_t s) {
    for (int i = 0; i < GN_STREAMS; i++) {
        auto &e = gn_scratch_tab[i];
        if (!e.p || e.s != s) continue;
        CUDA_CHECK(cudaStreamSynchronize(s));
        for (int r = 0; r < e.nretired; r++) CUDA_CHECK(cudaFree(e.retired[r]));
        free(e.retired);
        CUDA_CHECK(cudaFree(e.p));
        memset(&e, 0, sizeof e);
    }
}

/* The buffer of stream s for B images and float_bytes of partials and statistics; *ncount its counters. */
static void *gn_scratch(cudaStream_t s, int64_t B, size_t float_bytes, int64_t *ncount) {
    int i = 0;
    int free_slot = -1;
    for (; i < GN_STREAMS && !(gn_scratch_tab[i].p && gn_scratch_tab[i].s == s); i++)
        if (!gn_scratch_tab[i].p && free_slot < 0) free_slot = i;
    if (i == GN_STREAMS) i = free_slot;
    if (i < 0) die("cuk_group_norm: called on more than %d live streams (cuk_group_norm_release frees one)", GN_STREAMS);
    auto &e = gn_scratch_tab[i];
    if (!e.p || e.ncount < B || e.cap < gn_floats_at(e.ncount) + float_bytes) {
        if (cuda_capturing(s))
            die("cuk_group_norm: its scratch must grow (to %lld images, %zu bytes) while the stream is being"
                " captured into a graph; run the same shapes once eagerly before capturing", (long long)B,
                gn_floats_at(B) + float_bytes);
        const int64_t nc = B > e.ncount ? (B > 64 ? B : 64) : e.ncount;
        const size_t need = gn_floats_at(nc) + float_bytes, cap = 2 * e.cap > need ? 2 * e.cap : need;
        void *p = NULL;
        CUDA_CHECK(cudaMalloc(&p, cap));
        if (e.p) { /* a graph captured before may still use it */
            e.retired = (void **)xrealloc(e.retired, (size_t)(e.nretired + 1) * sizeof *e.retired);
            e.retired[e.nretired++] = e.p;
        }
        CUDA_CHECK(cudaMemsetAsync(p, 0, cap, s)); /* the counters start at 0; each call leaves them there */
        e.s = s;
        e.p = p;
        e.cap = cap;
        e.ncount = nc;
    }
    *ncount = e.ncount;
    return e.p;
}

extern "C" void cuk_group_norm(const void *x, const void *add, void *y, DType dt, int64_t B, int64_t HW, int64_t C,
                               int G, const void *gamma, const void *beta, float eps, int silu, cudaStream_t s) {
    if (B <= 0 || HW <= 0 || C <= 0) return;
    if (G <= 0 || C % G != 0) die("cuk_group_norm: %lld channels do not split into %d groups", (long long)C, G);
    if (C > (1 << 30)) die("cuk_group_norm: %lld channels are too many", (long long)C);
    const int v = pick_vec(dt, C, x, y); /* whole rows: add, gamma and beta are read per element, once a thread */
    const GnShape sh = gn_shape(B, HW, C, G, v, sm_count());
    if (B * sh.nchunk > 0x7fffffffLL) die("cuk_group_norm: %lld images are too many", (long long)B);
    int64_t ncount = 0;
    char *scratch = (char *)gn_scratch(s, B, gn_float_bytes(B, sh), &ncount);
    const unsigned blocks = (unsigned)(B * sh.nchunk), threads = (unsigned)gn_threads(sh);
    DISPATCH_T(dt, DISPATCH_V(v, {
        /* pick_vec never packs more than 16 bytes: no fp32 x 8 kernels to build */
        constexpr int VG = VW * sizeof(T) > 16 ? 16 / (int)sizeof(T) : VW;
        const GnArgs<T> a = gn_args<T>(x, add, gamma, beta, y, scratch, ncount, B, sh, eps, silu);
        k_gn_stats<T, VG><<<blocks, threads, 0, s>>>(a, sh);
        CUDA_LAUNCHED("group_norm (statistics)", s);
        k_gn_apply<T, VG><<<blocks, threads, 0, s>>>(a, sh);
        CUDA_LAUNCHED("group_norm (normalise)", s);
    }));
}

/* ---------- layer norm ---------- */

#define LN_THREADS 256

/* One warp per row; three passes over the row (mean, squared deviations,
 * output), the first two done before any write, so y == x is safe. */
template <typename T, int V>
__global__ void __launch_bounds__(LN_THREADS)
    k_layer_norm(const T *x, T *y, int64_t M, int64_t C, const T *gamma, const T *beta, float eps) {
    const int lane = threadIdx.x & 31;
    const int64_t m = (int64_t)blockIdx.x * (LN_THREADS / 32) + (threadIdx.x >> 5);
    if (m >= M) return;
    const T *xr = x + m * C;
    T *yr = y + m * C;
    const int64_t cp = C / V;
    float s = 0.0f;
    for (int64_t i = lane; i < cp; i += 32) {
        const Pack<T, V> p = ldp<T, V>(xr + i * V);
#pragma unroll
        for (int k = 0; k < V; k++) s += ldf(p.v[k]);
    }
    const float mean = warp_sum(s) / (float)C;
    float q = 0.0f;
    for (int64_t i = lane; i < cp; i += 32) {
        const Pack<T, V> p = ldp<T, V>(xr + i * V);
#pragma unroll
        for (int k = 0; k < V; k++) {
            const float d = ldf(p.v[k]) - mean;
            q += d * d;
        }
    }
    const float rstd = rsqrtf(warp_sum(q) / (float)C + eps);
    for (int64_t i = lane; i < cp; i += 32) {
        Pack<T, V> p = ldp<T, V>(xr + i * V);
        const Pack<T, V> ga = ldp<T, V>(gamma + i * V), be = ldp<T, V>(beta + i * V);
#pragma unroll
        for (int k = 0; k < V; k++) p.v[k] = stf<T>((ldf(p.v[k]) - mean) * rstd * ldf(ga.v[k]) + ldf(be.v[k]));
        stp<T, V>(yr + i * V, p);
    }
}

extern "C" void cuk_layer_norm(const void *x, void *y, DType dt, int64_t M, int64_t C, const void *gamma,
                               const void *beta, float eps, cudaStream_t s) {
    if (M <= 0 || C <= 0) return;
    const int v = pick_vec(dt, C, x, y, gamma, beta);
    const int64_t blocks = (M + LN_THREADS / 32 - 1) / (LN_THREADS / 32);
    if (blocks > 0x7fffffffLL) die("cuk_layer_norm: %lld rows are too many", (long long)M);
    DISPATCH_T(dt, DISPATCH_V(v, {
        k_layer_norm<T, VW><<<(unsigned)blocks, LN_THREADS, 0, s>>>((const T *)x, (T *)y, M, C, (const T *)gamma,
                                                                     (const T *)beta, eps);
        CUDA_LAUNCHED("layer_norm", s);
    }));
}

/* ---------- GEGLU ---------- */

extern "C" void cuk_bias_res(void *y, const void *bias, const void *res, DType dt, int64_t rows, int64_t C,
                             cudaStream_t s) {
    if (rows <= 0 || C <= 0 || (!bias && !res)) return;
    const int v = pick_vec(dt, C, y, bias, res);
    DISPATCH_T(dt, DISPATCH_V(v, {
        unsigned g = grid_for(rows * (C / VW), 256);
        k_bias_res<T, VW><<<g, 256, 0, s>>>((T *)y, (const T *)bias, (const T *)res, rows, C);
        CUDA_LAUNCHED("bias_res", s);
    }));
}

extern "C" void cuk_geglu(const void *h, void *out, DType dt, int64_t M, int64_t I, cudaStream_t s) {
    if (M <= 0 || I <= 0) return;
    const int v = pick_vec(dt, I, h, out);
    const int64_t ip = I / v;
    int64_t gx = (ip + 255) / 256;
    if (gx > 1024) gx = 1024;
    const unsigned gy = (unsigned)(M < 65535 ? M : 65535);
    DISPATCH_T(dt, DISPATCH_V(v, {
        k_geglu<T, VW><<<dim3((unsigned)gx, gy), 256, 0, s>>>((const T *)h, (T *)out, M, I);
        CUDA_LAUNCHED("geglu", s);
    }));
}

/* ---------- upsample, concat ---------- */

extern "C" void cuk_upsample2x(const void *x, void *y, DType dt, int64_t B, int64_t H, int64_t W, int64_t C,
                               cudaStream_t s) {
    if (B <= 0 || H <= 0 || W <= 0 || C <= 0) return;
    const int v = pick_vec(dt, C, x, y);
    DISPATCH_T(dt, DISPATCH_V(v, {
        k_upsample2x<T, VW><<<grid_for(B * H * W * (C / VW), 256), 256, 0, s>>>((const T *)x, (T *)y, B, H, W, C);
        CUDA_LAUNCHED("upsample2x", s);
    }));
}

extern "C" void cuk_concat_last(const void *a, int64_t Ca, const void *b, int64_t Cb, void *y, DType dt, int64_t rows,
                                cudaStream_t s) {
    if (rows <= 0 || Ca + Cb <= 0) return;
    /* both widths must split into whole packs so that no pack straddles a and b */
    int v = pick_vec(dt, Ca, a, b, y);
    while (v > 1 && Cb % v) v /= 2;
    DISPATCH_T(dt, DISPATCH_V(v, {
        k_concat_last<T, VW><<<grid_for(rows * ((Ca + Cb) / VW), 256), 256, 0, s>>>((const T *)a, Ca, (const T *)b,
                                                                                    Cb, (T *)y, rows);
        CUDA_LAUNCHED("concat_last", s);
    }));
}

/* ---------- timestep embedding ---------- */

extern "C" void cuk_timestep_embedding(const float *t, int64_t n, int dim, int flip_sin_to_cos, float freq_shift,
                                       void *out, DType dt, cudaStream_t s) {
    if (n <= 0 || dim <= 0) return;
    const int half = dim / 2;
    const float neg_log = (float)-log(10000.0), denom = (float)half - freq_shift;
    const int64_t work = n * (half > 0 ? half : 1);
    DISPATCH_T(dt, {
        k_timestep<T><<<grid_for(work, 256), 256, 0, s>>>(t, n, dim, flip_sin_to_cos, neg_log, denom, (T *)out);
        CUDA_LAUNCHED("timestep_embedding", s);
    });
}

/* ---------- attention: plain ---------- */

/* One warp per (b, head, query row); blocks of `nw` warps. The warp walks the
 * keys 32 at a time, lane j scoring key j0 + j over the whole head (q scaled
 * by 1/sqrt(dh), kept in shared memory), then folds the chunk into a running
 * max m and sum l (online softmax) and into the output accumulator in shared
 * memory, where lane owns dims lane, lane + 32, ... Shared: 2 * dh floats a warp. */
template <typename T>
__global__ void k_attn_plain(const T *q, int64_t ldq, const T *k, int64_t ldk, const T *v, int64_t ldv, T *o,
                             int64_t ldo, int64_t Nq, int64_t Nk, int heads, int dh, int64_t rows, float scale) {
    extern __shared__ float plain_smem[];
    const int nw = blockDim.x >> 5, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int64_t row = (int64_t)blockIdx.x * nw + warp;
    if (row >= rows) return; /* whole warps only: no block barrier below */
    const int64_t i = row % Nq, bh = row / Nq, b = bh / heads;
    const int h = (int)(bh % heads);
    float *qs = plain_smem + (size_t)warp * 2 * dh, *os = qs + dh;
    const T *qr = q + (b * Nq + i) * ldq + (int64_t)h * dh;
    for (int d = lane; d < dh; d += 32) {
        qs[d] = ldf(qr[d]) * scale;
        os[d] = 0.0f;
    }
    __syncwarp();
    const T *kb = k + b * Nk * ldk + (int64_t)h * dh, *vb = v + b * Nk * ldv + (int64_t)h * dh;
    const int nt = (dh + 31) / 32;
    float m = -INFINITY, l = 0.0f;
    for (int64_t j0 = 0; j0 < Nk; j0 += 32) {
        const int64_t j = j0 + lane;
        float sc = -INFINITY;
        if (j < Nk) {
            const T *kr = kb + j * ldk;
            float acc = 0.0f;
            for (int d = 0; d < dh; d++) acc += qs[d] * ldf(kr[d]);
            sc = acc;
        }
        const float mnew = fmaxf(m, warp_max(sc)); /* finite: key j0 exists */
        const float corr = expf(m - mnew);          /* 0 on the first chunk */
        const float p = j < Nk ? expf(sc - mnew) : 0.0f;
        l = l * corr + warp_sum(p);
        m = mnew;
        const int nv = Nk - j0 < 32 ? (int)(Nk - j0) : 32;
        for (int t = 0; t < nt; t++) { /* uniform trip counts: the shuffles see every lane */
            const int d = lane + 32 * t;
            const bool ok = d < dh;
            float acc = ok ? os[d] * corr : 0.0f;
            for (int jj = 0; jj < nv; jj++) {
                const float pj = __shfl_sync(FULL_MASK, p, jj);
                if (ok) acc += pj * ldf(vb[(j0 + jj) * ldv + d]);
            }
            if (ok) os[d] = acc;
        }
    }
    const float inv = l > 0.0f ? 1.0f / l : 0.0f; /* Nk == 0: zeros, as op_attention */
    T *orow = o + (b * Nq + i) * ldo + (int64_t)h * dh;
    for (int d = lane; d < dh; d += 32) orow[d] = stf<T>(os[d] * inv);
}

static void attn_plain(const void *q, int64_t ldq, const void *k, int64_t ldk, const void *v, int64_t ldv, void *o,
                       int64_t ldo, DType dt, int64_t B, int64_t Nq, int64_t Nk, int heads, int dh, cudaStream_t s) {
    int nw = 4;
    while (nw > 1 && (size_t)nw * 2 * dh * sizeof(float) > 48 * 1024) nw /= 2;
    const size_t smem = (size_t)nw * 2 * dh * sizeof(float);
    if (smem > 200 * 1024) die("cuk_attention: head dim %d is too large", dh);
    const int64_t rows = B * heads * Nq, blocks = (rows + nw - 1) / nw;
    if (blocks > 0x7fffffffLL) die("cuk_attention: %lld query rows are too many", (long long)rows);
    const float scale = 1.0f / sqrtf((float)dh);
    DISPATCH_T(dt, {
        if (smem > 48 * 1024)
            CUDA_CHECK(cudaFuncSetAttribute(k_attn_plain<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        k_attn_plain<T><<<(unsigned)blocks, nw * 32, smem, s>>>((const T *)q, ldq, (const T *)k, ldk, (const T *)v,
                                                                ldv, (T *)o, ldo, Nq, Nk, heads, dh, rows, scale);
        CUDA_LAUNCHED("attention_plain", s);
    });
}

/* ---------- attention: flash (wmma) ---------- */

/* A block takes FA_BM query rows of one (b, head), FA_WARPS warps of 16 rows
 * each, and walks the keys FA_BN at a time. Shared memory (each region 128-byte
 * aligned, rows padded so wmma's ldm is a multiple of 8 halves / 4 floats and
 * every fragment pointer is 32-byte aligned):
 *   Qs, Ks, Vs  [64][DH+8]  T      the query tile and the current key/value tile
 *   Ss          [64][max(64,DH)+4] float  scores; at the end the output
 *   Ps          [64][72]    T      probabilities
 *   rm, rl, rc  [64]        float  running max (log2 units), running sum, last rescale
 * S = Q K^T goes through Ss; each warp's softmax touches only its own 16
 * rows, so only the K/V tile loads need block barriers. The output stays in
 * accumulator fragments, rescaled per row through a fragment that maps each
 * accumulator element to its row (loaded from a matrix of row numbers).
 * Rows past Nq and keys past Nk load as zeros; keys past Nk score -inf. */
#define FA_BM 64
#define FA_BN 64
#define FA_WARPS 4

static constexpr size_t fa_al(size_t n) { return (n + 127) / 128 * 128; }

template <int DH> struct FaLayout {
    static constexpr int LDH = DH + 8;
    static constexpr int LDS = (DH > FA_BN ? DH : FA_BN) + 4;
    static constexpr int LDP = FA_BN + 8;
    static constexpr size_t q_off = 0;
    static constexpr size_t k_off = q_off + fa_al((size_t)FA_BM * LDH * 2);
    static constexpr size_t v_off = k_off + fa_al((size_t)FA_BN * LDH * 2);
    static constexpr size_t s_off = v_off + fa_al((size_t)FA_BN * LDH * 2);
    static constexpr size_t p_off = s_off + fa_al((size_t)FA_BM * LDS * 4);
    static constexpr size_t m_off = p_off + fa_al((size_t)FA_BM * LDP * 2);
    static constexpr size_t l_off = m_off + fa_al((size_t)FA_BM * 4);
    static constexpr size_t c_off = l_off + fa_al((size_t)FA_BM * 4);
    static constexpr size_t bytes = c_off + fa_al((size_t)FA_BM * 4);
};

/* Tile loads. A tile is ROWS rows of DH elements from src + (row0 + r) * ld,
 * rows r >= nvalid as zeros, into shared memory with row stride DH + 8.
 * Vector path (src 16-byte aligned, ld a multiple of 8): each thread moves
 * PER 16-byte chunks, fetched into registers first (all loads in flight at
 * once, and for the next K/V tile while the current one is used) and put
 * into shared memory after. Otherwise element by element. */
template <int DH, int ROWS> struct FaTile {
    static constexpr int CH = DH / 8;                      /* 16-byte chunks a row */
    static constexpr int PER = ROWS * CH / (FA_WARPS * 32); /* chunks a thread */
    static_assert(ROWS * CH % (FA_WARPS * 32) == 0, "tile chunks must split evenly over the block");
};

template <typename T, int DH, int ROWS>
__device__ __forceinline__ void fa_fetch(uint4 (&buf)[FaTile<DH, ROWS>::PER], const T *src, int64_t ld, int64_t row0,
                                         int64_t nvalid) {
    constexpr int CH = FaTile<DH, ROWS>::CH, PER = FaTile<DH, ROWS>::PER;
#pragma unroll
    for (int i = 0; i < PER; i++) {
        const int e = threadIdx.x + i * FA_WARPS * 32, r = e / CH, c = e % CH;
        buf[i] = r < nvalid ? *reinterpret_cast<const uint4 *>(src + (row0 + r) * ld + c * 8)
                            : make_uint4(0u, 0u, 0u, 0u);
    }
}

template <typename T, int DH, int ROWS>
__device__ __forceinline__ void fa_put(T *dst, const uint4 (&buf)[FaTile<DH, ROWS>::PER]) {
    constexpr int CH = FaTile<DH, ROWS>::CH, PER = FaTile<DH, ROWS>::PER;
#pragma unroll
    for (int i = 0; i < PER; i++) {
        const int e = threadIdx.x + i * FA_WARPS * 32, r = e / CH, c = e % CH;
        *reinterpret_cast<uint4 *>(dst + r * (DH + 8) + c * 8) = buf[i];
    }
}

template <typename T, int DH, int ROWS>
__device__ __forceinline__ void fa_load_scalar(T *dst, const T *src, int64_t ld, int64_t row0, int64_t nvalid) {
    for (int e = threadIdx.x; e < ROWS * DH; e += FA_WARPS * 32) {
        const int r = e / DH, c = e % DH;
        dst[r * (DH + 8) + c] = r < nvalid ? src[(row0 + r) * ld + c] : stf<T>(0.0f);
    }
}

template <typename T, int DH>
__global__ void __launch_bounds__(FA_WARPS * 32)
    k_attn_flash(const T *q, int64_t ldq, const T *k, int64_t ldk, const T *v, int64_t ldv, T *o, int64_t ldo,
                 int64_t Nq, int64_t Nk, int heads, int64_t qtiles, float sl2, int vec) {
    typedef FaLayout<DH> L;
    typedef wm::fragment<wm::accumulator, 16, 16, 16, float> AccFrag;
    typedef wm::fragment<wm::matrix_a, 16, 16, 16, T, wm::row_major> AFrag;
    typedef wm::fragment<wm::matrix_b, 16, 16, 16, T, wm::col_major> KFrag;
    typedef wm::fragment<wm::matrix_b, 16, 16, 16, T, wm::row_major> VFrag;
    constexpr int NF = DH / 16; /* fragments across the head dim */
    extern __shared__ __align__(128) unsigned char fa_smem[];
    T *Qs = reinterpret_cast<T *>(fa_smem + L::q_off);
    T *Ks = reinterpret_cast<T *>(fa_smem + L::k_off);
    T *Vs = reinterpret_cast<T *>(fa_smem + L::v_off);
    float *Ss = reinterpret_cast<float *>(fa_smem + L::s_off);
    T *Ps = reinterpret_cast<T *>(fa_smem + L::p_off);
    float *rm = reinterpret_cast<float *>(fa_smem + L::m_off);
    float *rl = reinterpret_cast<float *>(fa_smem + L::l_off);
    float *rc = reinterpret_cast<float *>(fa_smem + L::c_off);

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, r0 = warp * 16;
    const int64_t qt = blockIdx.x % qtiles, bh = blockIdx.x / qtiles, b = bh / heads;
    const int h = (int)(bh % heads);
    const int64_t q0 = qt * FA_BM;
    const T *qb = q + b * Nq * ldq + (int64_t)h * DH;
    const T *kb = k + b * Nk * ldk + (int64_t)h * DH;
    const T *vb = v + b * Nk * ldv + (int64_t)h * DH;
    float *Sw = Ss + r0 * L::LDS; /* this warp's 16 rows of Ss */
    T *Pw = Ps + r0 * L::LDP;

    /* PF: prefetch the next K/V tile into registers during this one's math
     * (register room allows it up to DH 64; above, each tile is fetched at
     * the top of its iteration) */
    constexpr bool PF = DH <= 64;
    typedef FaTile<DH, FA_BN> KV;
    uint4 kr[KV::PER], vr[KV::PER];
    if (vec) {
        uint4 qr[FaTile<DH, FA_BM>::PER];
        fa_fetch<T, DH, FA_BM>(qr, qb, ldq, q0, Nq - q0);
        if (PF) {
            fa_fetch<T, DH, FA_BN>(kr, kb, ldk, 0, Nk);
            fa_fetch<T, DH, FA_BN>(vr, vb, ldv, 0, Nk);
        }
        fa_put<T, DH, FA_BM>(Qs, qr);
    } else {
        fa_load_scalar<T, DH, FA_BM>(Qs, qb, ldq, q0, Nq - q0);
    }
    if (lane < 16) {
        rm[r0 + lane] = -INFINITY;
        rl[r0 + lane] = 0.0f;
    }
    /* rid[i]: the block row of accumulator element i (the same for every fragment of this type) */
    for (int e = lane; e < 256; e += 32) Sw[(e >> 4) * L::LDS + (e & 15)] = (float)(e >> 4);
    __syncwarp();
    AccFrag idf;
    wm::load_matrix_sync(idf, Sw, L::LDS, wm::mem_row_major);
    int rid[AccFrag::num_elements];
#pragma unroll
    for (int i = 0; i < AccFrag::num_elements; i++) rid[i] = r0 + (int)idf.x[i];
    __syncthreads(); /* Q tile in */

    AFrag qf[NF];
#pragma unroll
    for (int kk = 0; kk < NF; kk++) wm::load_matrix_sync(qf[kk], Qs + r0 * L::LDH + kk * 16, L::LDH);
    AccFrag of[NF];
#pragma unroll
    for (int f = 0; f < NF; f++) wm::fill_fragment(of[f], 0.0f);

    for (int64_t j0 = 0; j0 < Nk; j0 += FA_BN) {
        if (vec && !PF) { /* registers only: may run ahead of the barrier */
            fa_fetch<T, DH, FA_BN>(kr, kb, ldk, j0, Nk - j0);
            fa_fetch<T, DH, FA_BN>(vr, vb, ldv, j0, Nk - j0);
        }
        __syncthreads(); /* every warp is done with the previous K/V tile */
        if (vec) {
            fa_put<T, DH, FA_BN>(Ks, kr);
            fa_put<T, DH, FA_BN>(Vs, vr);
        } else {
            fa_load_scalar<T, DH, FA_BN>(Ks, kb, ldk, j0, Nk - j0);
            fa_load_scalar<T, DH, FA_BN>(Vs, vb, ldv, j0, Nk - j0);
        }
        __syncthreads();
        if (vec && PF && j0 + FA_BN < Nk) { /* next tile, in flight during this one's math */
            fa_fetch<T, DH, FA_BN>(kr, kb, ldk, j0 + FA_BN, Nk - j0 - FA_BN);
            fa_fetch<T, DH, FA_BN>(vr, vb, ldv, j0 + FA_BN, Nk - j0 - FA_BN);
        }

        /* S[16 x 64] = Q K^T for this warp's rows */
#pragma unroll
        for (int n = 0; n < FA_BN / 16; n++) {
            AccFrag sf;
            wm::fill_fragment(sf, 0.0f);
#pragma unroll
            for (int kk = 0; kk < NF; kk++) {
                KFrag kf;
                wm::load_matrix_sync(kf, Ks + n * 16 * L::LDH + kk * 16, L::LDH);
                wm::mma_sync(sf, qf[kk], kf, sf);
            }
            wm::store_matrix_sync(Sw + n * 16, sf, L::LDS, wm::mem_row_major);
        }
        __syncwarp();

        /* online softmax in log2 units: lanes 2r and 2r+1 share row r, columns c = 2t + (lane & 1) */
        {
            const int r = lane >> 1, par = lane & 1;
            const int valid = Nk - j0 < FA_BN ? (int)(Nk - j0) : FA_BN;
            const float *srow = Sw + r * L::LDS;
            float sv[FA_BN / 2], mt = -INFINITY;
#pragma unroll
            for (int t = 0; t < FA_BN / 2; t++) {
                const int c = 2 * t + par;
                sv[t] = c < valid ? srow[c] * sl2 : -INFINITY;
                mt = fmaxf(mt, sv[t]);
            }
            mt = fmaxf(mt, __shfl_xor_sync(FULL_MASK, mt, 1));
            const float mold = rm[r0 + r], mnew = fmaxf(mold, mt); /* mt finite: column 0 is a key */
            const float corr = exp2f(mold - mnew);
            float ls = 0.0f;
            T *prow = Pw + r * L::LDP;
#pragma unroll
            for (int t = 0; t < FA_BN / 2; t++) {
                const float p = exp2f(sv[t] - mnew);
                ls += p;
                prow[2 * t + par] = stf<T>(p);
            }
            ls += __shfl_xor_sync(FULL_MASK, ls, 1);
            __syncwarp(); /* both lanes of the pair have read rm */
            if (par == 0) {
                rm[r0 + r] = mnew;
                rl[r0 + r] = rl[r0 + r] * corr + ls;
                rc[r0 + r] = corr;
            }
        }
        __syncwarp();

        /* O = O * corr(row) + P V */
        {
            float cr[AccFrag::num_elements];
#pragma unroll
            for (int i = 0; i < AccFrag::num_elements; i++) cr[i] = rc[rid[i]];
#pragma unroll
            for (int f = 0; f < NF; f++)
#pragma unroll
                for (int i = 0; i < AccFrag::num_elements; i++) of[f].x[i] *= cr[i];
        }
#pragma unroll
        for (int kk = 0; kk < FA_BN / 16; kk++) {
            AFrag pf;
            wm::load_matrix_sync(pf, Pw + kk * 16, L::LDP);
#pragma unroll
            for (int f = 0; f < NF; f++) {
                VFrag vf;
                wm::load_matrix_sync(vf, Vs + kk * 16 * L::LDH + f * 16, L::LDH);
                wm::mma_sync(of[f], pf, vf, of[f]);
            }
        }
        /* the next iteration's S store into Sw follows this warp's own reads of it (program order) */
    }

    /* O / l through this warp's rows of Ss, then out with bounds on the query rows */
    __syncwarp();
#pragma unroll
    for (int f = 0; f < NF; f++) wm::store_matrix_sync(Sw + f * 16, of[f], L::LDS, wm::mem_row_major);
    __syncwarp();
    T *ob = o + b * Nq * ldo + (int64_t)h * DH;
    for (int e = lane; e < 16 * DH; e += 32) {
        const int r = e / DH, c = e % DH;
        const int64_t row = q0 + r0 + r;
        if (row < Nq) ob[row * ldo + c] = stf<T>(Sw[r * L::LDS + c] / rl[r0 + r]);
    }
}

template <typename T, int DH>
static void attn_flash_dh(const void *q, int64_t ldq, const void *k, int64_t ldk, const void *v, int64_t ldv, void *o,
                          int64_t ldo, int64_t B, int64_t Nq, int64_t Nk, int heads, cudaStream_t s) {
    typedef FaLayout<DH> L;
    static int attr_set = 0; /* one per instantiation; set before any graph capture (first call) */
    if (!attr_set) {
        CUDA_CHECK(cudaFuncSetAttribute(k_attn_flash<T, DH>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)L::bytes));
        attr_set = 1;
    }
    const int64_t qtiles = (Nq + FA_BM - 1) / FA_BM, blocks = qtiles * B * heads;
    if (blocks > 0x7fffffffLL) die("cuk_attention: %lld query tiles are too many", (long long)blocks);
    const int vec = aligned_to(q, 16) && aligned_to(k, 16) && aligned_to(v, 16) && ldq % 8 == 0 && ldk % 8 == 0 &&
                    ldv % 8 == 0;
    const float sl2 = 1.4426950408889634f / sqrtf((float)DH); /* log2(e) / sqrt(dh) */
    k_attn_flash<T, DH><<<(unsigned)blocks, FA_WARPS * 32, L::bytes, s>>>(
        (const T *)q, ldq, (const T *)k, ldk, (const T *)v, ldv, (T *)o, ldo, Nq, Nk, heads, qtiles, sl2, vec);
    CUDA_LAUNCHED("attention_flash", s);
}

template <typename T>
static void attn_flash(const void *q, int64_t ldq, const void *k, int64_t ldk, const void *v, int64_t ldv, void *o,
                       int64_t ldo, int64_t B, int64_t Nq, int64_t Nk, int heads, int dh, cudaStream_t s) {
    switch (dh) {
    case 16: attn_flash_dh<T, 16>(q, ldq, k, ldk, v, ldv, o, ldo, B, Nq, Nk, heads, s); break;
    case 32: attn_flash_dh<T, 32>(q, ldq, k, ldk, v, ldv, o, ldo, B, Nq, Nk, heads, s); break;
    case 48: attn_flash_dh<T, 48>(q, ldq, k, ldk, v, ldv, o, ldo, B, Nq, Nk, heads, s); break;
    case 64: attn_flash_dh<T, 64>(q, ldq, k, ldk, v, ldv, o, ldo, B, Nq, Nk, heads, s); break;
    case 80: attn_flash_dh<T, 80>(q, ldq, k, ldk, v, ldv, o, ldo, B, Nq, Nk, heads, s); break;
    case 96: attn_flash_dh<T, 96>(q, ldq, k, ldk, v, ldv, o, ldo, B, Nq, Nk, heads, s); break;
    case 112: attn_flash_dh<T, 112>(q, ldq, k, ldk, v, ldv, o, ldo, B, Nq, Nk, heads, s); break;
    case 128: attn_flash_dh<T, 128>(q, ldq, k, ldk, v, ldv, o, ldo, B, Nq, Nk, heads, s); break;
    default: die("cuk_attention: no flash kernel for head dim %d", dh);
    }
}

/* UNETLAB_ATTN=plain, read at every call (a getenv is cheap beside an
 * attention), so a test can compare both kernels in one process. The variable
 * is parsed in one place, attn_select.cu, which also owns the other values
 * (auto, cudnn, flash, ...): for cuk_attention they mean "not plain". */
static int attn_forced_plain(void) {
    const char *f = attn_select_forced();
    return f && !strcmp(f, "plain");
}

extern "C" int cuk_attention_flash_ok(DType dt, int dh) {
    return (dt == DTYPE_F16 || dt == DTYPE_BF16) && dh >= 16 && dh <= 128 && dh % 16 == 0;
}

extern "C" const char *cuk_attention_kernel(DType dt, int dh) {
    return !attn_forced_plain() && cuk_attention_flash_ok(dt, dh) ? "flash-wmma" : "plain";
}

extern "C" int cuk_attention_flash(const void *q, int64_t ldq, const void *k, int64_t ldk, const void *v, int64_t ldv,
                                   void *o, int64_t ldo, DType dt, int64_t B, int64_t Nq, int64_t Nk, int heads, int dh,
                                   cudaStream_t s) {
    if (!cuk_attention_flash_ok(dt, dh) || Nk < 1) return -1; /* Nk 0: zeros, which only plain writes */
    if (B <= 0 || Nq <= 0 || heads <= 0) return 0;
    if (dt == DTYPE_F16) attn_flash<__half>(q, ldq, k, ldk, v, ldv, o, ldo, B, Nq, Nk, heads, dh, s);
    else attn_flash<__nv_bfloat16>(q, ldq, k, ldk, v, ldv, o, ldo, B, Nq, Nk, heads, dh, s);
    return 0;
}

extern "C" int cuk_attention_plain(const void *q, int64_t ldq, const void *k, int64_t ldk, const void *v, int64_t ldv,
                                   void *o, int64_t ldo, DType dt, int64_t B, int64_t Nq, int64_t Nk, int heads, int dh,
                                   cudaStream_t s) {
    if (B <= 0 || Nq <= 0 || heads <= 0 || dh <= 0) return 0;
    attn_plain(q, ldq, k, ldk, v, ldv, o, ldo, dt, B, Nq, Nk < 0 ? 0 : Nk, heads, dh, s);
    return 0;
}

extern "C" void cuk_attention(const void *q, int64_t ldq, const void *k, int64_t ldk, const void *v, int64_t ldv,
                              void *o, int64_t ldo, DType dt, int64_t B, int64_t Nq, int64_t Nk, int heads, int dh,
                              cudaStream_t s) {
    if (B <= 0 || Nq <= 0 || heads <= 0 || dh <= 0) return;
    /* Nk == 0 takes the plain kernel, which writes zeros as op_attention does */
    if (!attn_forced_plain() && cuk_attention_flash(q, ldq, k, ldk, v, ldv, o, ldo, dt, B, Nq, Nk, heads, dh, s) == 0)
        return;
    cuk_attention_plain(q, ldq, k, ldk, v, ldv, o, ldo, dt, B, Nq, Nk, heads, dh, s);
}
