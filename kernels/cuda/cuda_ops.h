/* cuda_ops: the CUDA kernels of the forward, each with the contract of its
 * CPU reference in kernels/cpu/ops.h, on device memory, in the run dtype dt
 * (fp32, fp16 or bf16) with fp32 arithmetic inside. Activations are NHWC:
 * a 4-D activation [B, C, H, W] is stored [B, H*W, C], so the token sequence
 * of a transformer is the same memory as its feature map. Every function
 * launches on stream s and returns at once (asynchronous); a launch failure
 * stops the program (cuda_check.h). Parameters (gamma, beta, biases, the
 * group norm's add) are in dt too. Tested by tests/test_cuda_ops.c against
 * kernels/cpu/ops.c (skipped without a GPU). */
#ifndef UNETLAB_CUDA_OPS_H
#define UNETLAB_CUDA_OPS_H
#include "dtype.h"
#include <cuda_runtime_api.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

/* y[i] = (type yt) x[i] for n elements; x and y do not overlap unless xt == yt and x == y. */
void cuk_convert(const void *x, DType xt, void *y, DType yt, int64_t n, cudaStream_t s);
/* x[i] = alpha * x[i] + beta (center_input_sample: alpha 2, beta -1). */
void cuk_affine(void *x, DType dt, int64_t n, float alpha, float beta, cudaStream_t s);
/* x[i] = silu(x[i]) = x / (1 + exp(-x)). */
void cuk_silu(void *x, DType dt, int64_t n, cudaStream_t s);
/* y[i] = (y[i] + x[i]) * scale: residual adds (scale 1) and the mid block's
 * output_scale_factor (scale 1 / factor). */
void cuk_add(void *y, const void *x, DType dt, int64_t n, float scale, cudaStream_t s);
/* GroupNorm(G groups over C channels) of x + add, NHWC x [B, HW, C]:
 *   v = x[b, p, c] + (add ? add[b, c] : 0)
 *   y[b, p, c] = (v - mean_bg) / sqrt(var_bg + eps) * gamma[c] + beta[c], then SiLU if silu,
 * mean and (biased) variance over the HW * C/G values of group g of image b,
 * accumulated in fp32. add ([B, C]) may be NULL: it fuses a resnet's time
 * embedding add into its second norm. y may equal x. The statistics go
 * through a scratch buffer of stream s that grows on the first call of a
 * larger shape: that call must not be under graph capture (it stops with a
 * message if it is); an eager call of the same shapes first is enough. */
void cuk_group_norm(const void *x, const void *add, void *y, DType dt, int64_t B, int64_t HW, int64_t C, int G,
                    const void *gamma, const void *beta, float eps, int silu, cudaStream_t s);
/* Frees stream s's group norm scratch (after synchronizing s); before the
 * stream is destroyed, when no graph that used it will be replayed again. */
void cuk_group_norm_release(cudaStream_t s);
/* LayerNorm over the last dim of x [M, C] into y [M, C] (y may equal x). */
void cuk_layer_norm(const void *x, void *y, DType dt, int64_t M, int64_t C, const void *gamma, const void *beta,
                    float eps, cudaStream_t s);
/* y[r, c] += bias[c] + res[r, c] for NHWC y [rows, C] (bias or res may be
 * NULL): the epilogue of a convolution whose bias and residual cuDNN did not
 * fuse. Packs of up to 16 bytes where C and the pointers allow. */
void cuk_bias_res(void *y, const void *bias, const void *res, DType dt, int64_t rows, int64_t C, cudaStream_t s);
/* out[m, i] = h[m, i] * gelu(h[m, I + i]) for h [M, 2I], exact erf GELU. */
void cuk_geglu(const void *h, void *out, DType dt, int64_t M, int64_t I, cudaStream_t s);
/* Nearest 2x upsample, NHWC: x [B, H, W, C] -> y [B, 2H, 2W, C]. */
void cuk_upsample2x(const void *x, void *y, DType dt, int64_t B, int64_t H, int64_t W, int64_t C, cudaStream_t s);
/* Concatenation along the last dim: y[r, :Ca] = a[r, :], y[r, Ca:] = b[r, :]
 * for r < rows (torch.cat(dim=1) of NCHW maps, in NHWC). */
void cuk_concat_last(const void *a, int64_t Ca, const void *b, int64_t Cb, void *y, DType dt, int64_t rows,
                     cudaStream_t s);
/* Sinusoidal embedding of n float32 values t (device) into out [n, dim] in dt,
 * as op_timestep_embedding. */
void cuk_timestep_embedding(const float *t, int64_t n, int dim, int flip_sin_to_cos, float freq_shift, void *out,
                            DType dt, cudaStream_t s);
/* Scaled dot-product attention, heads split from the row: for image b, head h,
 *   O[b, i, h*dh:(h+1)*dh] = softmax_j(Q_i . K_j / sqrt(dh)) V_j
 * Q rows are q + (b*Nq + i) * ldq (elements), K rows k + (b*Nk + j) * ldk,
 * V rows v + (b*Nk + j) * ldv, O rows o + (b*Nq + i) * ldo; row strides let
 * Q, K and V be column slices of one fused projection. Any dh; head dims that
 * are multiples of 16 up to 128 (SDXL's 64) in fp16/bf16 use the tensor-core
 * flash kernel, others a plain fp32-accumulating kernel (SD 1.5's dh 40
 * too). UNETLAB_ATTN=plain, read at every call, forces the plain kernel (a
 * cross-check on the GPU); the variable's other values (auto, cudnn, flash)
 * are for the CUDA engine's per-shape choice (attn_select.h) and leave this
 * function's own choice alone; a value not in that list stops the program. */
void cuk_attention(const void *q, int64_t ldq, const void *k, int64_t ldk, const void *v, int64_t ldv, void *o,
                   int64_t ldo, DType dt, int64_t B, int64_t Nq, int64_t Nk, int heads, int dh, cudaStream_t s);
/* Which attention kernel cuk_attention picks for these arguments ("flash-wmma" or "plain"). */
const char *cuk_attention_kernel(DType dt, int dh);
/* 1 when the flash kernel takes this dtype and head dim (fp16/bf16, dh 16..128 in steps of 16). */
int cuk_attention_flash_ok(DType dt, int dh);
/* The two kernels of cuk_attention by name, whatever UNETLAB_ATTN says, with
 * its contract and arguments. Each returns 0 when it launched (or when B, Nq
 * or heads is 0: nothing to do) and -1, launching nothing, for arguments it
 * does not take: flash needs cuk_attention_flash_ok and Nk >= 1; plain takes
 * any shape (Nk 0: zeros). The engine's attention choice (attn_select.h)
 * calls these and cuDNN's. */
int cuk_attention_flash(const void *q, int64_t ldq, const void *k, int64_t ldk, const void *v, int64_t ldv, void *o,
                        int64_t ldo, DType dt, int64_t B, int64_t Nq, int64_t Nk, int heads, int dh, cudaStream_t s);
int cuk_attention_plain(const void *q, int64_t ldq, const void *k, int64_t ldk, const void *v, int64_t ldv, void *o,
                        int64_t ldo, DType dt, int64_t B, int64_t Nq, int64_t Nk, int heads, int dh, cudaStream_t s);

#ifdef __cplusplus
}
#endif
#endif
