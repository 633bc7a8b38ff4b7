/* ops_kernels: the grid-stride kernels of ops.cu (element-wise maps, add,
 * convert, GEGLU, the convolution's bias/residual epilogue, upsample, concat,
 * timestep embedding), their element and
 * pack helpers and the host helpers that size their launches (pick_vec,
 * grid_for_sms). ops.cu includes it under nvcc; tests/test_cuda_emu.cpp
 * includes it in host C++ after emu.h (UNETLAB_CUDA_EMU), which runs each
 * kernel's threads one after another to check indexing, pack widths and
 * tails without a GPU. Kernels that need shared memory, barriers or warp
 * shuffles stay in ops.cu. */
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

#endif
