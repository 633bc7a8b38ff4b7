/* ops: the CPU reference of every operation the UNet forward uses. Plain
 * loops, float32 storage, wider accumulation where a sum is long (norms).
 * These judge every GPU kernel later. Tested by tests/test_ops.c against
 * values worked out by hand, and as a whole by tests/test_fixtures.c. */
#ifndef UNETLAB_OPS_H
#define UNETLAB_OPS_H
#include "tensor.h"
#include <stdint.h>

/* C[M,N] = A[M,K] B[K,N], all row-major. */
void op_gemm(int64_t M, int64_t N, int64_t K, const float *A, const float *B, float *C);
/* y[M,N] = x[M,K] w[N,K]^T + b[N] (b may be NULL): torch.nn.Linear. */
void op_linear(const float *x, int64_t M, int64_t K, const float *w, const float *b, int64_t N, float *y);
/* x [B,Cin,H,W], w [Cout,Cin,k,k], b [Cout] -> new [B,Cout,Ho,Wo]: torch.nn.Conv2d. */
Tensor op_conv2d(const Tensor *x, const float *w, const float *b, int cout, int k, int stride, int pad);
/* In place over x [B,C,...]: torch.nn.GroupNorm(G, C, eps), then SiLU if silu. */
void op_group_norm(Tensor *x, int groups, const float *gamma, const float *beta, float eps, int silu);
/* y[M,C] = LayerNorm over the last dim of x[M,C] (y may equal x). */
void op_layer_norm(const float *x, int64_t M, int64_t C, const float *gamma, const float *beta, float eps, float *y);
void op_silu(float *x, int64_t n);
/* out[M,I] = h[:, :I] * gelu(h[:, I:]) for h[M,2I] (exact erf GELU): diffusers' GEGLU. */
void op_geglu(const float *h, int64_t M, int64_t I, float *out);
/* Scaled dot-product attention, heads split from the last dim:
 * q [B,Nq,C], k and v [B,Nk,C] -> out [B,Nq,C], scale 1/sqrt(C/heads). */
void op_attention(const float *q, const float *k, const float *v, int64_t B, int64_t Nq, int64_t Nk, int64_t C,
                  int heads, float *out);
/* x [B,C,H,W] -> new [B,C,2H,2W], nearest neighbour. */
Tensor op_upsample2x(const Tensor *x);
/* a [B,Ca,H,W], b [B,Cb,H,W] -> new [B,Ca+Cb,H,W]: torch.cat(dim=1). */
Tensor op_concat_channels(const Tensor *a, const Tensor *b);
/* [B,C,H,W] <-> [B,H*W,C] */
void op_nchw_to_nlc(const float *x, int64_t B, int64_t C, int64_t HW, float *y);
void op_nlc_to_nchw(const float *x, int64_t B, int64_t C, int64_t HW, float *y);
/* y += x over n elements */
void op_add(float *y, const float *x, int64_t n);
/* Sinusoidal embedding of n values t[i] into out[n,dim], computed in float32 as
 * diffusers' get_timestep_embedding does (max_period 10000, scale 1). */
void op_timestep_embedding(const float *t, int64_t n, int dim, int flip_sin_to_cos, float freq_shift, float *out);

#endif
