/* cuda_check: one check macro per library, and the few helpers the library
 * wrappers (conv, linear, sdpa, attn_select) share. A failed CUDA, cuDNN, cuBLAS or
 * CUPTI call is an environment fault: it stops with the call text, file,
 * line and the library's own message (die, exit code 1). Never compiled out.
 * UNETLAB_CUDA_SYNC=1 adds a synchronize after every kernel launch so that an
 * asynchronous fault is reported at the kernel that caused it (skipped while
 * a stream is being captured into a graph). Usable from C and CUDA C++. */
#ifndef UNETLAB_CUDA_CHECK_H
#define UNETLAB_CUDA_CHECK_H
#include <cuda_runtime_api.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif
#include "err.h"
/* 1 when UNETLAB_CUDA_SYNC=1 is set (read once). */
int cuda_debug_sync(void);
/* After a launch on stream s: checks cudaGetLastError, and synchronizes s
 * under UNETLAB_CUDA_SYNC=1 unless s is capturing. what names the kernel. */
void cuda_launch_check(const char *what, cudaStream_t s, const char *file, int line);
/* 1 while stream s is being captured into a CUDA graph (planning, allocating
 * and synchronizing are not allowed then). */
int cuda_capturing(cudaStream_t s);
/* A device buffer of bytes whose address has the low 8 bits of like's, in
 * *base (cudaFree it): planning and checks run at the real call's alignment. */
char *cuda_scratch_like(void **base, size_t bytes, const void *like);
/* 1 when UNETLAB_LIB_LOG=1 is set (read once): the wrappers print one line per plan. */
int cuda_lib_log(void);
/* Milliseconds on the monotonic clock (how long planning took). */
double cuda_now_ms(void);
/* The largest power of two up to 16 dividing the address: plans are keyed by
 * it, since vector paths and library algorithms depend on alignment. */
int64_t cuda_ptr_align(const void *p);
/* A device workspace that only grows, in whole MiB: a buffer it outgrows is
 * retired, not freed, since a captured graph may still name it; all are
 * freed by cuda_ws_free (after the stream is synchronized). */
typedef struct {
    void *p;
    size_t bytes;         /* of p */
    size_t retired_bytes; /* of the outgrown buffers still held */
    void **retired;
    int nretired;
} CudaWorkspace;
void cuda_ws_ensure(CudaWorkspace *w, size_t need);
void cuda_ws_free(CudaWorkspace *w);
#ifdef __cplusplus
}
#endif

#define CUDA_CHECK(call)                                                                           \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess)                                                                     \
            die("%s failed at %s:%d: %s (%s)", #call, __FILE__, __LINE__, cudaGetErrorString(e_), \
                cudaGetErrorName(e_));                                                             \
    } while (0)
#define CUDA_LAUNCHED(what, s) cuda_launch_check((what), (s), __FILE__, __LINE__)

#endif
