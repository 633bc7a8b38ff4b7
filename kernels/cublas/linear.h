/* linear: torch.nn.Linear on cuBLASLt, row-major, in the run dtype with fp32
 * accumulation (fp32 mode: CUBLAS_COMPUTE_32F, no TF32), bias fused as an
 * epilogue and a residual fused as the C operand (beta 1). Matmul
 * descriptors and the heuristic's algorithm are cached per shape, so a
 * forward after the first plans nothing (graph capture needs that).
 * Tested by tests/test_cuda_libs.c against op_linear (skipped without a GPU). */
#ifndef UNETLAB_CUBLAS_LINEAR_H
#define UNETLAB_CUBLAS_LINEAR_H
#include "dtype.h"
#include <cuda_runtime_api.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

typedef struct LtLinear LtLinear;
LtLinear *lt_linear_new(cudaStream_t s);
void lt_linear_free(LtLinear *l);
/* y[M, N] = x[M, K] w[N, K]^T + bias[N] (bias may be NULL) + res[M, N] (res
 * may be NULL, or equal y). All contiguous row-major. */
void lt_linear(LtLinear *l, const void *x, int64_t M, int64_t K, const void *w, const void *bias, int64_t N,
               const void *res, void *y, DType dt);
size_t lt_linear_workspace_bytes(const LtLinear *l);

#ifdef __cplusplus
}
#endif
#endif
