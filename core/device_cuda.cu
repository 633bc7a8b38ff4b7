/* device for CUDA-enabled builds: see device.h. With no driver installed
 * cudaGetDeviceCount returns an error rather than zero devices; both mean
 * "no GPU" here, and desc says which. */
#include <cuda_runtime.h>
#include <stdio.h>
extern "C" {
#include "device.h"
}

extern "C" int device_probe(char *desc, int desc_size) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        snprintf(desc, (size_t)desc_size, "no CUDA device (cudaGetDeviceCount: %s)", cudaGetErrorString(e));
        return 0;
    }
    if (n == 0) {
        snprintf(desc, (size_t)desc_size, "no CUDA device (cudaGetDeviceCount: 0 devices)");
        return 0;
    }
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, 0) != cudaSuccess) {
        snprintf(desc, (size_t)desc_size, "CUDA device 0 (properties unavailable)");
        return n;
    }
    int drv = 0, rt = 0;
    cudaDriverGetVersion(&drv);
    cudaRuntimeGetVersion(&rt);
    snprintf(desc, (size_t)desc_size, "%s (sm_%d%d, %.1f GiB, driver CUDA %d.%d, runtime %d.%d)", p.name, p.major,
             p.minor, (double)p.totalGlobalMem / (1 << 30), drv / 1000, drv % 1000 / 10, rt / 1000, rt % 1000 / 10);
    return n;
}

extern "C" int device_cuda_built(void) { return 1; }
