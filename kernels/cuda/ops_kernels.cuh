/* ops_kernels: the grid-stride kernels of ops.cu (element-wise maps, add,
 * convert, GEGLU, the convolution's bias/residual epilogue, upsample, concat,
 * timestep embedding), their element and
 * pack helpers and the host helpers that size their launches (pick_vec,
 * grid_for_sms), and the group norm: its pass-1 block program written as
 * steps between barriers (gn_stats_block), its pass-2 kernel and its launch
 * shape (gn_shape). ops.cu includes it under nvcc; tests/test_cuda_emu.cpp
 * includes it in host C++ after emu.h (UNETLAB_CUDA_EMU), which runs each
 * kernel's threads one after another to check indexing, pack widths and
 * tails without a GPU, and runs gn_stats_block's steps thread by thread.
 * Other kernels that need shared memory, barriers or warp shuffles stay in
 * ops.cu. */
#ifndef UNETLAB_OPS_KERNELS_CUH
#define UNETLAB_OPS_KERNELS_CUH
#include "dtype.h"
extern "C" {
#include "err.h"
}

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <math.h>
#include <stddef.h>
#include <stdint.h>

/* ---------- element types ---------- */

__device__ __forceinline__ float ldf(float v) { return v; }
__device__ __forceinline__ float ldf(__half v) { return __half2float(v); }
__device__ __forceinline__ float ldf(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T stf(float v);
template <> __device__ __forceinline__ float stf<float>(float v) { return v; }
template <> __device__ __forceinline__ __half stf<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 stf<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

/* V consecutive elements moved as one aligned access (16 bytes at most). */
template <typename T, int V> struct alignas(sizeof(T) * V) Pack {
    T v[V];
};
template <typename T, int V> __device__ __forceinline__ Pack<T, V> ldp(const T *p) {
#ifdef UNETLAB_CUDA_EMU /* host emulation (emu.h): a pack not aligned to its size is a fault, as on the GPU */
    Pack<T, V> r;
    emu_vec_access(&r, p, sizeof r);
    return r;
#else
    return *reinterpret_cast<const Pack<T, V> *>(p);
#endif
}
template <typename T, int V> __device__ __forceinline__ void stp(T *p, const Pack<T, V> &x) {
#ifdef UNETLAB_CUDA_EMU
    emu_vec_access(p, &x, sizeof x);
#else
    *reinterpret_cast<Pack<T, V> *>(p) = x;
#endif
}

/* Runs the statement list with T bound to the C type of dt. */
#define DISPATCH_T(dt, ...)                                                           \
    do {                                                                              \
        switch (dt) {                                                                 \
        case DTYPE_F32: { typedef float T; __VA_ARGS__; } break;                      \
        case DTYPE_F16: { typedef __half T; __VA_ARGS__; } break;                     \
        case DTYPE_BF16: { typedef __nv_bfloat16 T; __VA_ARGS__; } break;             \
        default: die("cuda_ops: unknown dtype %d", (int)(dt));                        \
        }                                                                             \
    } while (0)

/* Runs the statement list with the constant VW bound to v (8, 4, 2 or 1). */
#define DISPATCH_V(v, ...)                                                            \
    do {                                                                              \
        switch (v) {                                                                  \
        case 8: { constexpr int VW = 8; __VA_ARGS__; } break;                         \
        case 4: { constexpr int VW = 4; __VA_ARGS__; } break;                         \
        case 2: { constexpr int VW = 2; __VA_ARGS__; } break;                         \
        default: { constexpr int VW = 1; __VA_ARGS__; } break;                        \
        }                                                                             \
    } while (0)

static inline int aligned_to(const void *p, size_t bytes) { return p == NULL || (uintptr_t)p % bytes == 0; }

/* The widest pack (elements, at most 16 bytes) such that `inner` is a
 * multiple of it and every non-NULL pointer is aligned to it. inner 0: any
 * length, for kernels whose tail loop takes what the packs leave (k_map,
 * k_add): then only the alignment limits the pack. */
static inline int pick_vec(DType dt, int64_t inner, const void *p0, const void *p1 = NULL, const void *p2 = NULL,
                           const void *p3 = NULL) {
    size_t es = dtype_size(dt);
    for (int v = (int)(16 / es); v > 1; v /= 2) {
        size_t bytes = (size_t)v * es;
        if (inner % v == 0 && aligned_to(p0, bytes) && aligned_to(p1, bytes) && aligned_to(p2, bytes) &&
            aligned_to(p3, bytes))
            return v;
    }
    return 1;
}

/* Blocks of `threads` for a grid-stride loop over `work` items on a device
 * of `sms` multiprocessors: enough to fill it, no more. */
static inline unsigned grid_for_sms(int64_t work, int threads, int sms) {
    int64_t b = (work + threads - 1) / threads, cap = (int64_t)sms * (2048 / threads);
    if (b > cap) b = cap;
    return (unsigned)(b < 1 ? 1 : b);
}

__device__ __forceinline__ float silu_f(float v) { return v / (1.0f + expf(-v)); }

/* ---------- elementwise ---------- */

/* x[i] = f(x[i]): packs of V over the first n/V*V elements, then the tail one by one. */
template <typename T, int V, typename F> __global__ void k_map(T *x, int64_t n, F f) {
    const int64_t t0 = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, stride = (int64_t)gridDim.x * blockDim.x;
    const int64_t nv = n / V;
    for (int64_t i = t0; i < nv; i += stride) {
        Pack<T, V> p = ldp<T, V>(x + i * V);
#pragma unroll
        for (int k = 0; k < V; k++) p.v[k] = stf<T>(f(ldf(p.v[k])));
        stp<T, V>(x + i * V, p);
    }
    for (int64_t i = nv * V + t0; i < n; i += stride) x[i] = stf<T>(f(ldf(x[i])));
}

struct AffineF {
    float a, b;
    __device__ float operator()(float v) const { return a * v + b; }
};
struct SiluF {
    __device__ float operator()(float v) const { return silu_f(v); }
};

/* y[i] = (y[i] + x[i]) * scale */
template <typename T, int V> __global__ void k_add(T *y, const T *x, int64_t n, float scale) {
    const int64_t t0 = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, stride = (int64_t)gridDim.x * blockDim.x;
    const int64_t nv = n / V;
    for (int64_t i = t0; i < nv; i += stride) {
        Pack<T, V> a = ldp<T, V>(y + i * V);
        const Pack<T, V> b = ldp<T, V>(x + i * V);
#pragma unroll
        for (int k = 0; k < V; k++) a.v[k] = stf<T>((ldf(a.v[k]) + ldf(b.v[k])) * scale);
        stp<T, V>(y + i * V, a);
    }
    for (int64_t i = nv * V + t0; i < n; i += stride) y[i] = stf<T>((ldf(y[i]) + ldf(x[i])) * scale);
}

/* y[i] = (Y) x[i], four at a time where both sides are aligned to four elements. */
template <typename X, typename Y, int V> __global__ void k_convert(const X *x, Y *y, int64_t n) {
    const int64_t t0 = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, stride = (int64_t)gridDim.x * blockDim.x;
    const int64_t nv = n / V;
    for (int64_t i = t0; i < nv; i += stride) {
        const Pack<X, V> a = ldp<X, V>(x + i * V);
        Pack<Y, V> b;
#pragma unroll
        for (int k = 0; k < V; k++) b.v[k] = stf<Y>(ldf(a.v[k]));
        stp<Y, V>(y + i * V, b);
    }
    for (int64_t i = nv * V + t0; i < n; i += stride) y[i] = stf<Y>(ldf(x[i]));
}

/* ---------- GEGLU ---------- */

/* Rows over blockIdx.y (grid-stride), packs of a row over x. */
template <typename T, int V> __global__ void k_geglu(const T *h, T *out, int64_t M, int64_t I) {
    const int64_t ip = I / V;
    for (int64_t m = blockIdx.y; m < M; m += gridDim.y) {
        const T *hr = h + m * 2 * I;
        T *orow = out + m * I;
        for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < ip; i += (int64_t)gridDim.x * blockDim.x) {
            const Pack<T, V> a = ldp<T, V>(hr + i * V), gt = ldp<T, V>(hr + I + i * V);
            Pack<T, V> o;
#pragma unroll
            for (int k = 0; k < V; k++) {
                const float g = ldf(gt.v[k]);
                o.v[k] = stf<T>(ldf(a.v[k]) * (0.5f * g * (1.0f + erff(g * 0.70710678118654752f))));
            }
            stp<T, V>(orow + i * V, o);
        }
    }
}

/* ---------- the convolution's epilogue ---------- */

/* y[r][c] += bias[c] + res[r][c] over NHWC y of `rows` pixels x C channels
 * (bias, res may be NULL): what cuDNN's unfused path leaves to us. Packs of
 * V channels (V divides C); the channel of a pack comes from one division
 * per pack, not a 64-bit remainder per element. */
template <typename T, int V>
__global__ void k_bias_res(T *y, const T *bias, const T *res, int64_t rows, int64_t C) {
    const int64_t cpn = C / V, total = rows * cpn;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t c = (e - e / cpn * cpn) * V, at = e * V; /* e * V = row * C + c */
        Pack<T, V> a = ldp<T, V>(y + at);
        float v[V];
#pragma unroll
        for (int k = 0; k < V; k++) v[k] = ldf(a.v[k]);
        if (bias) {
            const Pack<T, V> b = ldp<T, V>(bias + c);
#pragma unroll
            for (int k = 0; k < V; k++) v[k] += ldf(b.v[k]);
        }
        if (res) {
            const Pack<T, V> r = ldp<T, V>(res + at);
#pragma unroll
            for (int k = 0; k < V; k++) v[k] += ldf(r.v[k]);
        }
#pragma unroll
        for (int k = 0; k < V; k++) a.v[k] = stf<T>(v[k]);
        stp<T, V>(y + at, a);
    }
}

/* ---------- upsample, concat ---------- */

/* One input pack of V channels at (b, iy, ix) goes to the four output pixels (2iy + dy, 2ix + dx). */
template <typename T, int V> __global__ void k_upsample2x(const T *x, T *y, int64_t B, int64_t H, int64_t W, int64_t C) {
    const int64_t cpn = C / V, total = B * H * W * cpn;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t cp = e % cpn, pix = e / cpn; /* pix = (b*H + iy)*W + ix */
        const int64_t ix = pix % W, r = pix / W, iy = r % H, b = r / H;
        const Pack<T, V> p = ldp<T, V>(x + pix * C + cp * V);
        T *o = y + ((b * 2 * H + 2 * iy) * 2 * W + 2 * ix) * C + cp * V;
        stp<T, V>(o, p);
        stp<T, V>(o + C, p);
        stp<T, V>(o + 2 * W * C, p);
        stp<T, V>(o + 2 * W * C + C, p);
    }
}

template <typename T, int V>
__global__ void k_concat_last(const T *a, int64_t Ca, const T *b, int64_t Cb, T *y, int64_t rows) {
    const int64_t cap = Ca / V, ctp = cap + Cb / V, total = rows * ctp;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = e / ctp, c = e % ctp;
        const Pack<T, V> p = c < cap ? ldp<T, V>(a + r * Ca + c * V) : ldp<T, V>(b + r * Cb + (c - cap) * V);
        stp<T, V>(y + r * (Ca + Cb) + c * V, p);
    }
}

/* ---------- timestep embedding ---------- */

/* The same float32 steps as op_timestep_embedding: e = exp(neg_log * j / denom). */
template <typename T>
__global__ void k_timestep(const float *t, int64_t n, int dim, int flip, float neg_log, float denom, T *out) {
    const int half = dim / 2, per = half > 0 ? half : 1;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n * per; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t i = e / per;
        const int j = (int)(e % per);
        T *o = out + i * dim;
        if (j < half) {
            const float ex = expf(neg_log * (float)j / denom);
            const float arg = t[i] * ex;
            o[flip ? half + j : j] = stf<T>(sinf(arg));
            o[flip ? j : half + j] = stf<T>(cosf(arg));
        }
        if (j == 0 && (dim & 1)) o[dim - 1] = stf<T>(0.0f);
    }
}

/* ---------- group norm ----------
 * cuk_group_norm on NHWC x [B, HW, C] in two kernels over the same grid of
 * B * nchunk blocks: block blk takes image b = blk / nchunk and its pixels
 * [HW * k / nchunk, HW * (k + 1) / nchunk), k = blk % nchunk, as whole rows.
 * A block is lanes x rstep threads: thread t reads pack column
 * t % lanes (packs of V channels) of every rstep-th row from row t / lanes,
 * so consecutive threads read consecutive 16-byte packs of consecutive rows.
 * When a row has more than GN_THREADS packs the columns go in `rounds`.
 *   pass 1 (gn_stats_block): shifted sums (Chan, Golub & LeVeque) per
 *     channel in registers, s1 = sum(v - K), s2 = sum((v - K)^2) with K the
 *     group's value at pixel 0 (x + add there: every block can read it), so
 *     a mean far above the spread costs no precision; then reduced over the
 *     block in shared memory to one (s1, s2) a group, written to
 *     part[b][g][k]. The last block of image b to finish (a counter) adds
 *     each group's nchunk partials in chunk order and writes (mean, rstd)
 *     to stat[b][g]: whichever block it is, the sums are taken in the same
 *     order, so the statistics are the same bits run to run. (Once an
 *     image, where having every pass-2 block add them would read all
 *     nchunk x G partials nchunk times.)
 *   pass 2 (k_gn_apply): y = ((x + add) - mean) * gamma * rstd + beta (the
 *     CPU reference's order), SiLU if asked, in the same rows and packs.
 * A pack may straddle groups (SDXL: 10 channels a group, packs of 8): the
 * group is taken per element. Pass 2 reads only the statistics and the
 * elements it writes, so y == x is safe. All sums are fp32. */

#define GN_THREADS 512                   /* threads a block, at most: lanes * rstep */
#define GN_SH (GN_THREADS * 8)           /* floats of a round's row slots x channels: packs of <= 8 */
#ifdef UNETLAB_CUDA_EMU
#define GN_BOUNDS
#else
#define GN_BOUNDS __launch_bounds__(GN_THREADS)
#endif

/* The launch shape of both passes, made on the host by gn_shape. */
struct GnShape {
    int64_t HW;
    int C, G, cg;     /* channels, groups, channels a group */
    int cpr;          /* packs a row: C / V */
    int lanes, rstep; /* a block: lanes pack columns x rstep row slots */
    int rounds;       /* column rounds: lanes * rounds >= cpr */
    int nchunk;       /* blocks an image */
    int tpg;          /* pass 1's last block: threads adding one group's partials */
};

/* Threads a block of both passes. */
__host__ __device__ static inline int gn_threads(const GnShape &s) { return s.lanes * s.rstep; }

/* The shape for B images of HW pixels x C channels in G groups, packs of V,
 * on a device of `sms` multiprocessors: about two blocks a multiprocessor
 * over all images (fewer where a thread would get under 4 rows). C must be
 * a multiple of G and of V and fit an int (cuk_group_norm checks). */
static inline GnShape gn_shape(int64_t B, int64_t HW, int64_t C, int G, int V, int sms) {
    GnShape s;
    s.HW = HW;
    s.C = (int)C;
    s.G = G;
    s.cg = (int)(C / G);
    s.cpr = (int)(C / V);
    s.rounds = (s.cpr + GN_THREADS - 1) / GN_THREADS;
    s.lanes = (s.cpr + s.rounds - 1) / s.rounds; /* rounds of equal width: no round of a few columns */
    s.rstep = GN_THREADS / s.lanes;
    int64_t want = (2 * (int64_t)sms + B - 1) / B;
    const int64_t most = HW / (4 * (int64_t)s.rstep);
    if (want > most) want = most;
    if (want < 1) want = 1;
    s.nchunk = (int)want;
    const int nt = gn_threads(s);
    s.tpg = nt / (G < nt ? G : nt);
    if (s.tpg > s.nchunk) s.tpg = s.nchunk;
    return s;
}

/* The scratch: `ncount` unsigned counters, one an image (zero before a
 * call, and again after it), at the start of the buffer and so at the same
 * place for every shape; from gn_floats_at(ncount) bytes on, the floats of
 * one call: part [B][G][nchunk][2], then stat [B][G][2]. A shape's floats
 * may land where another's counters were, never its counters where floats were. */
static inline size_t gn_floats_at(int64_t ncount) { return ((size_t)ncount * sizeof(unsigned) + 15) / 16 * 16; }
static inline size_t gn_part_floats(int64_t B, const GnShape &s) { return (size_t)(B * s.G * s.nchunk * 2); }
static inline size_t gn_stat_floats(int64_t B, const GnShape &s) { return (size_t)(B * s.G * 2); }
static inline size_t gn_float_bytes(int64_t B, const GnShape &s) {
    return (gn_part_floats(B, s) + gn_stat_floats(B, s)) * sizeof(float);
}

template <typename T> struct GnArgs {
    const T *x, *add, *gamma, *beta; /* add [B, C] may be NULL */
    T *y;                            /* may equal x */
    float *part, *stat;              /* the scratch, as above */
    unsigned *count;                 /* [B] at least */
    float eps;
    int silu;
};

/* The arguments of both passes, the scratch laid out as above (its counters
 * first, ncount of them). The launcher and the emulator both build them here. */
template <typename T>
__host__ GnArgs<T> gn_args(const void *x, const void *add, const void *gamma, const void *beta, void *y, char *scratch,
                           int64_t ncount, int64_t B, const GnShape &sh, float eps, int silu) {
    GnArgs<T> a;
    a.x = (const T *)x;
    a.add = (const T *)add;
    a.gamma = (const T *)gamma;
    a.beta = (const T *)beta;
    a.y = (T *)y;
    a.count = (unsigned *)scratch;
    a.part = (float *)(scratch + gn_floats_at(ncount));
    a.stat = a.part + gn_part_floats(B, sh);
    a.eps = eps;
    a.silu = silu;
    return a;
}

/* Pass 1's shared memory. */
struct GnSmem {
    float s1[GN_SH], s2[GN_SH]; /* a round's sums: [row slot][channel], then per channel, then per group */
    float carry[2][2];          /* [round parity][s1, s2] of the group a round leaves unfinished */
    unsigned last;              /* this block is the image's last to finish its partials */
};

/* K of the group starting at channel c: x + add of pixel 0 of the image. */
template <typename T> __device__ __forceinline__ float gn_shift(const T *xb, const T *ab, int c) {
    return ldf(xb[c]) + (ab ? ldf(ab[c]) : 0.0f);
}

/* Channels [*lo, *hi) of a round [c0, c1), relative to c0, that share round channel i's group. */
__device__ __forceinline__ void gn_segment(int cg, int c0, int c1, int i, int *lo, int *hi) {
    const int gc = (c0 + i) / cg * cg;
    *lo = (gc > c0 ? gc : c0) - c0;
    *hi = (gc + cg < c1 ? gc + cg : c1) - c0;
}

/* One block's arrival at the image's counter: its old value. The fences
 * order this block's partials (written before the barrier that precedes the
 * call) before the count, and the count before the last block's reads. */
__device__ __forceinline__ unsigned gn_arrive(unsigned *count) {
#ifdef UNETLAB_CUDA_EMU
    return (*count)++;
#else
    __threadfence();
    const unsigned n = atomicAdd(count, 1u);
    __threadfence();
    return n;
#endif
}

/* Another block's partial: through L2 (ld.global.cg), never a stale L1 line. */
__device__ __forceinline__ float gn_ldcg(const float *p) {
#ifdef UNETLAB_CUDA_EMU
    return *p;
#else
    return __ldcg(p);
#endif
}

__device__ __forceinline__ float gn_rsqrt(float v) {
#ifdef UNETLAB_CUDA_EMU
    return 1.0f / sqrtf(v);
#else
    return rsqrtf(v);
#endif
}

/* Pass 1 of block blk, as a program of steps: step(f) runs f(t) for every
 * thread t of the block and then waits for all of them (ops.cu's kernel:
 * f(threadIdx.x), __syncthreads(); the emulator: a loop over t). A step's
 * threads share nothing but what they write to sm for the next step, and no
 * two threads of a step write the same place or read what another writes. */
template <typename T, int V, typename Step>
__device__ __forceinline__ void gn_stats_block(const GnArgs<T> &a, const GnShape &s, int64_t blk, GnSmem &sm,
                                               Step step) {
    const int nt = gn_threads(s), lv = s.lanes * V, cg = s.cg;
    const int64_t b = blk / s.nchunk;
    const int k = (int)(blk - b * s.nchunk);
    const int64_t p0 = s.HW * k / s.nchunk, p1 = s.HW * (k + 1) / s.nchunk;
    const T *xb = a.x + b * s.HW * s.C;
    const T *ab = a.add ? a.add + b * s.C : NULL;
    float *part = a.part + b * s.G * s.nchunk * 2;

    for (int j = 0; j < s.rounds; j++) {
        const int c0 = j * lv, c1 = c0 + lv < s.C ? c0 + lv : s.C, nc = c1 - c0;
        /* each thread: its channels' shifted sums over its rows, into row slot r */
        step([&](int t) {
            const int l = t % s.lanes, r = t / s.lanes, cp = j * s.lanes + l;
            if (cp >= s.cpr) return;
            float av[V], kk[V], u1[V], u2[V];
#pragma unroll
            for (int e = 0; e < V; e++) {
                const int c = cp * V + e;
                av[e] = ab ? ldf(ab[c]) : 0.0f;
                kk[e] = gn_shift(xb, ab, c / cg * cg);
                u1[e] = u2[e] = 0.0f;
            }
#pragma unroll 4
            for (int64_t p = p0 + r; p < p1; p += s.rstep) {
                const Pack<T, V> pk = ldp<T, V>(xb + p * s.C + cp * V);
#pragma unroll
                for (int e = 0; e < V; e++) {
                    const float d = (ldf(pk.v[e]) + av[e]) - kk[e];
                    u1[e] += d;
                    u2[e] += d * d;
                }
            }
            float *o1 = sm.s1 + r * lv + l * V, *o2 = sm.s2 + r * lv + l * V;
#pragma unroll
            for (int e = 0; e < V; e++) {
                o1[e] = u1[e];
                o2[e] = u2[e];
            }
        });
        /* per channel: the row slots in slot order, into slot 0 */
        step([&](int t) {
            for (int i = t; i < nc; i += nt) {
                float u1 = sm.s1[i], u2 = sm.s2[i];
                for (int r = 1; r < s.rstep; r++) {
                    u1 += sm.s1[r * lv + i];
                    u2 += sm.s2[r * lv + i];
                }
                sm.s1[i] = u1;
                sm.s2[i] = u2;
            }
        });
        /* per group: a pairwise tree over its channels in place, the sum
         * landing on its first channel; level h adds channel rel + h into
         * rel (rel a multiple of 2h), which no thread writes at this level */
        const int span = cg < nc ? cg : nc;
        for (int h = 1; h < span; h *= 2)
            step([&](int t) {
                for (int i = t; i < nc; i += nt) {
                    int lo, hi;
                    gn_segment(cg, c0, c1, i, &lo, &hi);
                    const int rel = i - lo;
                    if ((rel & (2 * h - 1)) == 0 && rel + h < hi - lo) {
                        sm.s1[i] += sm.s1[i + h];
                        sm.s2[i] += sm.s2[i + h];
                    }
                }
            });
        /* one (s1, s2) a group: out to part, or carried to the next round
         * (carry slots alternate, so a round's reader and writer differ) */
        step([&](int t) {
            for (int g = c0 / cg + t; g <= (c1 - 1) / cg; g += nt) {
                const int gc = g * cg, lo = (gc > c0 ? gc : c0) - c0;
                float u1 = sm.s1[lo], u2 = sm.s2[lo];
                if (gc < c0) {
                    u1 = sm.carry[j & 1][0] + u1;
                    u2 = sm.carry[j & 1][1] + u2;
                }
                if (gc + cg > c1) {
                    sm.carry[(j + 1) & 1][0] = u1;
                    sm.carry[(j + 1) & 1][1] = u2;
                } else {
                    float *o = part + ((int64_t)g * s.nchunk + k) * 2;
                    o[0] = u1;
                    o[1] = u2;
                }
            }
        });
    }

    step([&](int t) {
        if (t == 0) sm.last = gn_arrive(a.count + b) == (unsigned)(s.nchunk - 1);
    });
    if (!sm.last) return;
    /* the image's last block: each group's partials in chunk order, tpg
     * threads a group taking every tpg-th chunk, then their sums in order */
    const int gpb = nt / s.tpg; /* groups a batch */
    for (int g0 = 0; g0 < s.G; g0 += gpb) {
        step([&](int t) {
            const int gl = t / s.tpg, sub = t - gl * s.tpg, g = g0 + gl;
            if (gl >= gpb || g >= s.G) return;
            const float *q = part + (int64_t)g * s.nchunk * 2;
            float u1 = 0.0f, u2 = 0.0f;
#pragma unroll 4
            for (int i = sub; i < s.nchunk; i += s.tpg) {
                u1 += gn_ldcg(q + 2 * i);
                u2 += gn_ldcg(q + 2 * i + 1);
            }
            sm.s1[t] = u1;
            sm.s2[t] = u2;
        });
        step([&](int t) {
            const int g = g0 + t;
            if (t >= gpb || g >= s.G) return;
            float u1 = 0.0f, u2 = 0.0f;
            for (int i = 0; i < s.tpg; i++) {
                u1 += sm.s1[t * s.tpg + i];
                u2 += sm.s2[t * s.tpg + i];
            }
            const float n = (float)(s.HW * cg), m1 = u1 / n, var = fmaxf(u2 / n - m1 * m1, 0.0f);
            float *o = a.stat + (b * s.G + g) * 2;
            o[0] = gn_shift(xb, ab, g * cg) + m1;
            o[1] = gn_rsqrt(var + a.eps);
        });
    }
    step([&](int t) {
        if (t == 0) a.count[b] = 0; /* ready for the next call (or graph replay) */
    });
}

/* Pass 2: block blk normalises the rows pass 1's block blk summed. */
template <typename T, int V> __global__ void GN_BOUNDS k_gn_apply(GnArgs<T> a, GnShape s) {
    const int t = (int)threadIdx.x, l = t % s.lanes, r = t / s.lanes;
    const int64_t blk = blockIdx.x, b = blk / s.nchunk;
    const int k = (int)(blk - b * s.nchunk);
    const int64_t p0 = s.HW * k / s.nchunk, p1 = s.HW * (k + 1) / s.nchunk;
    const T *xb = a.x + b * s.HW * s.C;
    T *yb = a.y + b * s.HW * s.C;
    const T *ab = a.add ? a.add + b * s.C : NULL;
    const float *st = a.stat + b * s.G * 2;
    for (int cp = l; cp < s.cpr; cp += s.lanes) {
        float av[V], mu[V], sc[V], be[V];
#pragma unroll
        for (int e = 0; e < V; e++) {
            const int c = cp * V + e, g = c / s.cg;
            av[e] = ab ? ldf(ab[c]) : 0.0f;
            mu[e] = st[2 * g];
            sc[e] = ldf(a.gamma[c]) * st[2 * g + 1];
            be[e] = ldf(a.beta[c]);
        }
#pragma unroll 4
        for (int64_t p = p0 + r; p < p1; p += s.rstep) {
            Pack<T, V> pk = ldp<T, V>(xb + p * s.C + cp * V);
#pragma unroll
            for (int e = 0; e < V; e++) {
                float o = ((ldf(pk.v[e]) + av[e]) - mu[e]) * sc[e] + be[e];
                if (a.silu) o = silu_f(o);
                pk.v[e] = stf<T>(o);
            }
            stp<T, V>(yb + p * s.C + cp * V, pk);
        }
    }
}

#endif
