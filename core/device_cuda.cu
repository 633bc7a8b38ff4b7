/* device for CUDA-enabled builds: see device.h. With no driver installed
 * cudaGetDeviceCount returns an error rather than zero devices; both mean
 * "no GPU" here, and desc says which. */
#include <cuda_runtime.h>
#include <cudnn.h>
#include <string.h>
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

extern "C" void device_versions(DeviceVersions *v) {
    memset(v, 0, sizeof *v);
    int drv = 0, rt = 0, n = 0;
    if (cudaDriverGetVersion(&drv) == cudaSuccess && drv)
        snprintf(v->driver, sizeof v->driver, "CUDA %d.%d", drv / 1000, drv % 1000 / 10);
    if (cudaRuntimeGetVersion(&rt) == cudaSuccess)
        snprintf(v->runtime, sizeof v->runtime, "%d.%d (static)", rt / 1000, rt % 1000 / 10);
    size_t cv = cudnnGetVersion();
    snprintf(v->cudnn, sizeof v->cudnn, "cuDNN %zu.%zu.%zu", cv / 10000, cv % 10000 / 100, cv % 100);
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) return;
    int sm = 0, mem = 0;
    if (cudaDeviceGetAttribute(&sm, cudaDevAttrClockRate, 0) == cudaSuccess &&
        cudaDeviceGetAttribute(&mem, cudaDevAttrMemoryClockRate, 0) == cudaSuccess)
        snprintf(v->clocks, sizeof v->clocks, "peak sm %d MHz, memory %d MHz", sm / 1000, mem / 1000);
}
