/* cuda_check: see cuda_check.h. */
#include "cuda_check.h"
#include <stdlib.h>
#include <string.h>
#include <time.h>

extern "C" int cuda_debug_sync(void) {
    static int v = -1;
    if (v < 0) {
        const char *e = getenv("UNETLAB_CUDA_SYNC");
        v = e && !strcmp(e, "1");
    }
    return v;
}

extern "C" void cuda_launch_check(const char *what, cudaStream_t s, const char *file, int line) {
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) die("kernel %s failed to launch at %s:%d: %s", what, file, line, cudaGetErrorString(e));
    if (!cuda_debug_sync() || cuda_capturing(s)) return;
    e = cudaStreamSynchronize(s);
    if (e != cudaSuccess) die("kernel %s failed at %s:%d: %s", what, file, line, cudaGetErrorString(e));
}

extern "C" int cuda_lib_log(void) {
    static int v = -1;
    if (v < 0) {
        const char *e = getenv("UNETLAB_LIB_LOG");
        v = e && !strcmp(e, "1");
    }
    return v;
}

extern "C" double cuda_now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

extern "C" int64_t cuda_ptr_align(const void *p) {
    uintptr_t a = (uintptr_t)p;
    int64_t al = 16;
    while (al > 1 && (a & (uintptr_t)(al - 1))) al >>= 1;
    return al;
}

extern "C" void cuda_ws_ensure(CudaWorkspace *w, size_t need) {
    if (need <= w->bytes) return;
    size_t mb = (size_t)1 << 20, sz = (need + mb - 1) / mb * mb;
    if (w->p) {
        w->retired = (void **)xrealloc(w->retired, (size_t)(w->nretired + 1) * sizeof *w->retired);
        w->retired[w->nretired++] = w->p;
        w->retired_bytes += w->bytes;
    }
    w->p = NULL;
    w->bytes = 0;
    CUDA_CHECK(cudaMalloc(&w->p, sz));
    w->bytes = sz;
}

extern "C" void cuda_ws_free(CudaWorkspace *w) {
    for (int i = 0; i < w->nretired; i++) cudaFree(w->retired[i]);
    free(w->retired);
    if (w->p) cudaFree(w->p);
    memset(w, 0, sizeof *w);
}

extern "C" int cuda_capturing(cudaStream_t s) {
    cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    CUDA_CHECK(cudaStreamIsCapturing(s, &cs));
    return cs != cudaStreamCaptureStatusNone;
}

extern "C" char *cuda_scratch_like(void **base, size_t bytes, const void *like) {
    CUDA_CHECK(cudaMalloc(base, bytes + 256));
    return (char *)*base + ((uintptr_t)like & 255);
}
