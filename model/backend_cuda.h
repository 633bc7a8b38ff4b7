/* backend_cuda: the forward on one CUDA device (see backend.h): weights
 * uploaded once and converted to the run dtype (convolution filters to
 * cuDNN's KRSC), activations NHWC in the run dtype from a caching arena
 * (after the first forward no cudaMalloc happens; a captured CUDA graph
 * replays on the same buffers), convolutions on cuDNN, linears on cuBLASLt,
 * attention, norms and element-wise work on kernels/cuda. Everything runs
 * on one stream in launch order. Only in CUDA builds (UNETLAB_CUDA).
 * Tested by tests/test_cuda_forward.c against the CPU backend on the
 * diffusers fixtures (skipped without a GPU). */
#ifndef UNETLAB_BACKEND_CUDA_H
#define UNETLAB_BACKEND_CUDA_H
#include <cuda_runtime_api.h>
#include <stddef.h>
#ifdef __cplusplus
extern "C" {
#endif
#include "backend.h"
#include "dtype.h"
#include "unet.h"
#include "weights.h"

typedef struct CudaEngine CudaEngine;

/* Uploads w (float32 tensors of the teacher tree, whose TensorSpecs give the
 * shapes) in dtype dt to device 0. ERR_RUNTIME with a one-line reason when
 * there is no usable GPU. */
int cuda_engine_new(CudaEngine **out, const Weights *w, const ModuleTree *teacher, DType dt);
void cuda_engine_free(CudaEngine *e);
Backend *cuda_engine_backend(CudaEngine *e);
cudaStream_t cuda_engine_stream(const CudaEngine *e);
DType cuda_engine_dtype(const CudaEngine *e);

typedef struct {
    size_t weights;       /* weight bytes on the device */
    size_t arena;         /* activation arena: bytes held (cached blocks included) */
    size_t arena_peak;    /* most activation bytes live at once */
    size_t workspace;     /* cuDNN (convolutions, attention) + cuBLASLt workspaces */
    size_t device_used;   /* cudaMemGetInfo: total minus free now (context included) */
    size_t device_total;
} CudaMemStats;
void cuda_engine_mem(const CudaEngine *e, CudaMemStats *m);
/* The output of the last forward run without a host output (out NULL in
 * unet_forward_be; a graph replay included) as a float32 host tensor in
 * PyTorch order; clear_output zeroes it (asynchronously, on the stream). */
int cuda_engine_output(CudaEngine *e, Tensor *out);
void cuda_engine_clear_output(CudaEngine *e);
/* Forgets arena_peak (the next forwards set it again). */
void cuda_engine_reset_peak(CudaEngine *e);
/* Returns the arena's cached free blocks to the device (blocks are reused at
 * their exact size only, so another input size would keep the old ones).
 * Not while a captured graph that uses them is still to be replayed. */
void cuda_engine_trim(CudaEngine *e);
/* "NVIDIA H100 80GB HBM3, sm_90, driver 13.0, runtime 13.0, cuDNN 9.x, cuBLASLt 13.x" */
const char *cuda_engine_describe(const CudaEngine *e);
/* Which attention path each shape seen so far runs, e.g. "attention: 8
 * shapes: cudnn 8" (kernels/cuda/attn_select.h); valid until the next call. */
const char *cuda_engine_attention(CudaEngine *e);

#ifdef __cplusplus
}
#endif
#endif
