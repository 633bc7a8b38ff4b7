/* dnn: convolutions and linear layers of the fast CPU engine, on oneDNN.
 * Activations are float32 (maps NHWC, rows row-major); weights are handed
 * over in PyTorch's layout once and reordered into the layout the chosen
 * implementation wants (blocked, for AVX2/AVX-512/AMX) the first time a
 * weight is used, then kept: never reordered per call. Bias and the residual
 * sum are fused as oneDNN post-ops. In bf16 the weights are held in bfloat16,
 * the input is rounded to bfloat16 on the way in, and accumulation and the
 * output stay float32. Primitives are cached per (weight, shape).
 * Judged by tests/test_fastops.c against ops.c's op_conv2d and op_linear. */
#ifndef UNETLAB_DNN_H
#define UNETLAB_DNN_H
#include "dtype.h"
#include <stddef.h>
#include <stdint.h>

typedef struct Dnn Dnn;

/* dt: DTYPE_F32 or DTYPE_BF16 (the caller checks dnn_bf16_native first). */
Dnn *dnn_new(DType dt);
void dnn_free(Dnn *d);
/* Bytes held in reordered weights. */
size_t dnn_weight_bytes(const Dnn *d);
/* oneDNN's version and the instruction set it dispatches to, e.g.
 * "oneDNN 2.6.3, avx512_core_bf16". */
const char *dnn_describe(void);
/* 1 when the CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX). */
int dnn_bf16_native(void);

/* A weight is named by w, any pointer unique to it, and handed over as data
 * in PyTorch's layout; after the first call with it, data may be NULL (the
 * caller has freed it): every later layout is reordered from the copy held.
 *
 * y[M, N] = x[M, K] data^T + b (+ res): torch.nn.Linear, data [N, K]
 * row-major, b [N] or NULL, res [M, N] or NULL. */
void dnn_linear(Dnn *d, const void *w, const float *data, const float *b, int64_t M, int64_t K, int64_t N,
                const float *x, const float *res, float *y);
/* diffusers' GEGLU as one op: h = x data^T + b with data [2I, K], then
 * y[M, I] = h[:, :I] * gelu(h[:, I:]) (erf GELU), fused into the two halves'
 * products as oneDNN post-ops: no [M, 2I] intermediate. w names the weight
 * (w + 1 is taken for its second half). */
void dnn_linear_geglu(Dnn *d, const void *w, const float *data, const float *b, int64_t M, int64_t K, int64_t I,
                      const float *x, float *y);
/* torch.nn.Conv2d on NHWC maps, padding (k - 1) / 2: x [B, H, W, Cin],
 * data [cout, Cin, k, k], b [cout], res [B, Ho, Wo, cout] or NULL -> y. */
void dnn_conv(Dnn *d, const void *w, const float *data, const float *b, int64_t B, int64_t Cin, int64_t H, int64_t W,
              int cout, int k, int stride, const float *x, const float *res, float *y);
#endif
