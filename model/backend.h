/* backend: where the forward's arithmetic runs. model/forward.c walks the
 * UNet once, for every backend, and calls these ops; a backend holds the
 * weights in its own form and the activations in its own layout:
 *   cpu-ref  float32, NCHW maps, plain loops: the reference that judges the
 *        others (model/backend_cpu.c over kernels/cpu/ops.c);
 *   cpu  the fast CPU engine: fp32 or bf16 weights, NHWC maps, oneDNN and our
 *        vectorised kernels (model/backend_fast.c);
 *   cuda fp16, bf16 or fp32, NHWC maps, so that a map [B, C, H, W] and its
 *        token sequence [B, H*W, C] are the same bytes (model/backend_cuda.cu).
 * An Act's shape is logical, in PyTorch order; only the backend reads d.
 * Weights are named by their diffusers prefix ("down_blocks.1.resnets.0.conv1")
 * and looked up by the backend. Ops that take `res` add it to their result
 * (a residual fused where the backend can); res may have the result's shape,
 * or for a linear over a token sequence be the map whose sequence it is.
 * Ops returning Act return new memory the caller releases. */
#ifndef UNETLAB_BACKEND_H
#define UNETLAB_BACKEND_H
#include "dtype.h"
#include "tensor.h"
#include "weights.h"
#include <stdint.h>

typedef struct {
    void *d;
    int ndim;
    int64_t shape[4];
} Act;

static inline int64_t act_numel(const Act *x) {
    int64_t n = 1;
    for (int i = 0; i < x->ndim; i++) n *= x->shape[i];
    return n;
}

typedef struct Backend Backend;
struct Backend {
    const char *name; /* "cpu", "cuda" */
    void *ctx;
    /* Start of one forward (the cuda backend recycles its staging buffers). */
    void (*begin)(Backend *be);
    /* New act holding host tensor t (float32, PyTorch order). */
    Act (*from_host)(Backend *be, const Tensor *t);
    /* x as a float32 host tensor in PyTorch order: *out borrows x's memory
     * (*owned 0) or is new (*owned 1, caller frees). */
    void (*to_host)(Backend *be, const Act *x, Tensor *out, int *owned);
    Act (*copy)(Backend *be, const Act *x);
    void (*release)(Backend *be, Act *x);

    /* torch.nn.Linear `prefix` over the last dim of x [..., K] -> [..., N]. */
    Act (*linear)(Backend *be, const char *prefix, const Act *x, int64_t N, int bias, const Act *res);
    /* torch.nn.Conv2d `prefix` (bias always), padding (k-1)/2: x [B, Cin, H, W] -> [B, cout, Ho, Wo]. */
    Act (*conv)(Backend *be, const char *prefix, const Act *x, int cout, int k, int stride, const Act *res);
    /* GroupNorm `prefix` in place on x [B, C, H, W] of x + add ([B, C], may be NULL), then SiLU if silu. */
    void (*group_norm)(Backend *be, const char *prefix, Act *x, int groups, float eps, int silu, const Act *add);
    /* May be NULL. group_norm of x + add into a new act, x unchanged: where the
     * backend normalises out of place, the copy that precedes an in-place norm
     * of a still-needed input (a resnet's norm1, a transformer's norm) goes. */
    Act (*group_norm_out)(Backend *be, const char *prefix, const Act *x, int groups, float eps, int silu,
                          const Act *add);
    /* LayerNorm `prefix` over the last dim -> new. */
    Act (*layer_norm)(Backend *be, const char *prefix, const Act *x, float eps);
    /* Scaled dot-product attention: q [B, Nq, C], k and v [B, Nk, C] -> [B, Nq, C]. */
    Act (*attention)(Backend *be, const Act *q, const Act *k, const Act *v, int heads);
    /* GEGLU gating: h [..., 2I] -> [..., I]. */
    Act (*geglu)(Backend *be, const Act *h);
    /* May be NULL. linear `prefix` (weight [2I, K]) then geglu, as one op: x [..., K] -> [..., I]. */
    Act (*linear_geglu)(Backend *be, const char *prefix, const Act *x, int64_t I);
    /* y = (y + x) / div, same shapes (div: a block's output_scale_factor, mostly 1). */
    void (*add)(Backend *be, Act *y, const Act *x, float div);
    void (*silu)(Backend *be, Act *x);
    /* x = alpha * x + beta */
    void (*affine)(Backend *be, Act *x, float alpha, float beta);
    /* Nearest 2x: [B, C, H, W] -> [B, C, 2H, 2W]. */
    Act (*upsample2x)(Backend *be, const Act *x);
    /* Maps: torch.cat(dim=1); 2-D rows: along the last dim. */
    Act (*concat)(Backend *be, const Act *a, const Act *b);
    /* Takes x [B, C, H, W] and returns it as the sequence [B, H*W, C]; to_map undoes it. */
    Act (*to_seq)(Backend *be, Act *x);
    Act (*to_map)(Backend *be, Act *x, int64_t H, int64_t W);
    /* Sinusoidal embedding of n host values -> [n, dim] (op_timestep_embedding). */
    Act (*timestep_embedding)(Backend *be, const float *t, int64_t n, int dim, int flip_sin_to_cos, float shift);
    /* May be NULL. A forward run without a host output hands its output here
     * before releasing it: the cuda backend copies it into a buffer of its
     * own, so that a captured graph's replays can be read back. */
    void (*keep_output)(Backend *be, const Act *y);
};

/* The CPU reference backend over float32 weights w (borrowed). */
Backend backend_cpu(const Weights *w);

/* The fast CPU engine over w in dt (DTYPE_F32, or DTYPE_BF16 where
 * cpu_bf16_native()): its reordered weights and primitives are kept with w
 * (w->engine) and freed by weights_free. NULL when built without oneDNN. */
Backend *backend_fast(const Weights *w, DType dt);
int cpu_fast_built(void);
/* 1 when the CPU multiplies bf16 in hardware (AVX512-BF16 or AMX). */
int cpu_bf16_native(void);

/* The engine the CPU forward (unet_forward_from, and so eval, profile and
 * schedule) runs in this process: the fast one by default, or the reference
 * (--device ref). Built without oneDNN, always the reference. */
typedef enum { CPU_FAST, CPU_REF } CpuEngine;
void cpu_engine_set(CpuEngine e, DType dt);
/* "cpu" (fast) or "cpu-ref": the engine label in profiles and the store. */
const char *cpu_engine_name(void);
/* For people: "CPU, fast engine (oneDNN 2.6.3, avx512_core), fp32". */
const char *cpu_engine_describe(void);
/* The selected engine's backend over w; ref is storage for the reference's. */
Backend *cpu_backend(const Weights *w, Backend *ref);

#endif
