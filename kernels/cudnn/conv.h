/* conv: torch.nn.Conv2d on cuDNN, NHWC activations and KRSC filters
 * ([Cout, k, k, Cin], made from PyTorch's [Cout, Cin, k, k] at upload), in
 * the run dtype with fp32 accumulation (fp32 mode: no TF32). Padding (k-1)/2.
 * One handle per engine; descriptors and the algorithm chosen for each shape
 * are cached, so a forward after the first makes no cuDNN planning calls
 * (graph capture needs that). Tested by tests/test_cuda_libs.c against
 * op_conv2d (skipped without a GPU). */
#ifndef UNETLAB_CUDNN_CONV_H
#define UNETLAB_CUDNN_CONV_H
#include "dtype.h"
#include <cuda_runtime_api.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

typedef struct CudnnConv CudnnConv;
CudnnConv *cudnn_conv_new(cudaStream_t s);
void cudnn_conv_free(CudnnConv *c);
/* y [B, Ho, Wo, Cout] = conv(x [B, H, W, Cin], w [Cout, k, k, Cin], stride) + bias [Cout]
 * (+ res [B, Ho, Wo, Cout] when res is not NULL: a resnet's skip, fused).
 * Ho = (H + 2*((k-1)/2) - k) / stride + 1. y must not overlap x; res may equal y. */
void cudnn_conv_forward(CudnnConv *c, const void *x, int64_t B, int64_t H, int64_t W, int64_t Cin, const void *w,
                        const void *bias, int64_t Cout, int k, int stride, const void *res, void *y, DType dt);
/* Device bytes held as workspace. */
size_t cudnn_conv_workspace_bytes(const CudnnConv *c);
/* "cuDNN 9.x.y" (the library loaded at run time). */
const char *cudnn_conv_version(void);

#ifdef __cplusplus
}
#endif
#endif
