/* sdpa: cuDNN's fused scaled-dot-product attention (forward, inference: no
 * mask, no dropout, scale 1/sqrt(dh)) through the cuDNN backend (graph) API,
 * with the contract of cuk_attention (cuda_ops.h): heads split from the row,
 * row strides in elements, fp16 or bf16 in and out with fp32 softmax and
 * accumulation. fp32 I/O is not something cuDNN's fused attention takes: it
 * is reported unsupported, like anything else cuDNN refuses, so that the
 * caller (kernels/cuda/attn_select.cu) falls back to our own kernels. Plans
 * are made once per shape and cached. Tested by tests/test_cuda_attn.c
 * against a float64 host reference (skipped without a GPU). */
#ifndef UNETLAB_CUDNN_SDPA_H
#define UNETLAB_CUDNN_SDPA_H
#include "dtype.h"
#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

typedef struct CudnnSdpa CudnnSdpa;

/* An SDPA context launching on stream s. Makes no cuDNN call: the handle is
 * created at the first cudnn_sdpa_prepare, so a run that never asks for cuDNN
 * attention never loads it. Never fails. */
CudnnSdpa *cudnn_sdpa_new(cudaStream_t s);
/* Synchronizes the stream, then frees every plan and workspace. NULL is a no-op. */
void cudnn_sdpa_free(CudnnSdpa *c);

/* Plans the attention of this shape, once per key (dt, B, Nq, Nk, heads, dh,
 * ldq, ldk, ldv, ldo, and the pointer alignment, the largest power of two up
 * to 16 dividing all of q, k, v, o): for image b, head h,
 *   O[b, i, h*dh:(h+1)*dh] = softmax_j(Q_i . K_j / sqrt(dh)) V_j
 * with Q row i of image b at q + (b*Nq + i) * ldq elements, K and V rows j at
 * k / v + (b*Nk + j) * ldk / ldv, O rows at o + (b*Nq + i) * ldo. The
 * pointers are read for their alignment only (nothing runs). Returns 0 when
 * the shape is planned and cudnn_sdpa_exec / _run may be called; otherwise
 * -1 with one line in why ("fp32 I/O: ..." or "<call>: <cuDNN status>: <cuDNN
 * message>"), a refusal that is cached too. Never dies for what cuDNN refuses;
 * dies (a message naming the shape) when a shape not yet planned arrives while
 * s is being captured into a CUDA graph, since planning cannot happen then.
 * UNETLAB_LIB_LOG=1 prints one line per planned or refused key to stderr. */
int cudnn_sdpa_prepare(CudnnSdpa *c, DType dt, int64_t B, int64_t Nq, int64_t Nk, int heads, int dh, int64_t ldq,
                       int64_t ldk, int64_t ldv, int64_t ldo, const void *q, const void *k, const void *v,
                       const void *o, char *why, size_t whylen);
/* Launches the planned attention on the stream (asynchronous; no planning:
 * capturable). Returns 0, or -1 with why when the shape is not planned
 * (prepare was not called or refused it) or cudnnBackendExecute failed. */
int cudnn_sdpa_exec(CudnnSdpa *c, DType dt, int64_t B, int64_t Nq, int64_t Nk, int heads, int dh, int64_t ldq,
                    int64_t ldk, int64_t ldv, int64_t ldo, const void *q, const void *k, const void *v, void *o,
                    char *why, size_t whylen);
/* cudnn_sdpa_exec for a shape the caller has chosen cuDNN for: a failure is
 * an environment fault and stops the program with the shape and the reason. */
void cudnn_sdpa_run(CudnnSdpa *c, DType dt, int64_t B, int64_t Nq, int64_t Nk, int heads, int dh, int64_t ldq,
                    int64_t ldk, int64_t ldv, int64_t ldo, const void *q, const void *k, const void *v, void *o);
/* Device bytes held as workspace (retired ones included: they stay until free). */
size_t cudnn_sdpa_workspace_bytes(const CudnnSdpa *c);

#ifdef __cplusplus
}
#endif
#endif
