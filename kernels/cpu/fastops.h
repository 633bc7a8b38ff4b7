/* fastops: the fast CPU engine's own kernels, for the ops no library has:
 * vectorised (each hot loop is compiled for AVX-512, AVX2+FMA and baseline
 * x86-64 and picked at run time) and threaded with OpenMP. Maps are NHWC
 * here, so that a map [B, C, H, W] and its token sequence [B, H*W, C] are
 * the same bytes. Convolutions and matrix products are oneDNN's
 * (kernels/dnnl). Every kernel is judged by its reference in ops.c:
 * tests/test_fastops.c on random and ragged shapes. */
#ifndef UNETLAB_FASTOPS_H
#define UNETLAB_FASTOPS_H
#include <stdint.h>

/* In place on x [B, HW, C] (NHWC): x += add[b, c] (add may be NULL), then
 * GroupNorm(groups) with gamma, beta, then SiLU if silu. */
void fop_group_norm(float *x, int64_t B, int64_t HW, int64_t C, int groups, const float *gamma, const float *beta,
                    float eps, int silu, const float *add);
/* y[M, C] = LayerNorm over the last dim of x (y may equal x). */
void fop_layer_norm(const float *x, int64_t M, int64_t C, const float *gamma, const float *beta, float eps, float *y);
/* out[M, I] = h[:, :I] * gelu(h[:, I:]) for h [M, 2I] (erf GELU, to ~1e-7). */
void fop_geglu(const float *h, int64_t M, int64_t I, float *out);
void fop_silu(float *x, int64_t n);
/* y = (y + x) / div */
void fop_add(float *y, const float *x, int64_t n, float div);
/* x = alpha * x + beta */
void fop_affine(float *x, int64_t n, float alpha, float beta);
/* Scaled dot-product attention, heads split from the last dim: q [B, Nq, C],
 * k and v [B, Nk, C] -> out [B, Nq, C], scale 1/sqrt(C/heads). Blocked with an
 * online softmax: never more than a block of scores per thread. */
void fop_attention(const float *q, const float *k, const float *v, int64_t B, int64_t Nq, int64_t Nk, int64_t C,
                   int heads, float *out);
/* Nearest 2x on NHWC: x [B, H, W, C] -> y [B, 2H, 2W, C]. */
void fop_upsample2x(const float *x, int64_t B, int64_t H, int64_t W, int64_t C, float *y);
/* Channel concat on NHWC: a [P, Ca], b [P, Cb] -> y [P, Ca + Cb] (P pixels). */
void fop_concat(const float *a, int64_t Ca, const float *b, int64_t Cb, int64_t P, float *y);
/* float32 -> bfloat16 (round to nearest even; NaN stays NaN), n values. */
void fop_to_bf16(const float *x, int64_t n, uint16_t *y);
#endif
