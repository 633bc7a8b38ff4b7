/* cuda_check: see cuda_check.h. */
#include "cuda_check.h"
#include <stdlib.h>
#include <string.h>

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
    if (!cuda_debug_sync()) return;
    cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(s, &cs) == cudaSuccess && cs != cudaStreamCaptureStatusNone) return;
    e = cudaStreamSynchronize(s);
    if (e != cudaSuccess) die("kernel %s failed at %s:%d: %s", what, file, line, cudaGetErrorString(e));
}
