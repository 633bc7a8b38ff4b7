/* device: which compute device a command runs on. A CUDA-enabled build probes
 * the driver (any error from cudaGetDeviceCount means "no GPU"); a CPU-only
 * build always answers "no GPU". Tested by tests/cli.sh (fallback line). */
#ifndef UNETLAB_DEVICE_H
#define UNETLAB_DEVICE_H

/* Returns the number of usable CUDA devices (0 on any error) and writes a
 * one-line description (device name, or why there is none) into desc. */
int device_probe(char *desc, int desc_size);
/* Whether this binary was built with CUDA. */
int device_cuda_built(void);

/* What a GPU run's numbers depend on, for the store's provenance: driver and
 * runtime versions, device 0's peak clocks, the cuDNN loaded. Fields are ""
 * where unknown (no GPU, CPU-only build). */
typedef struct {
    char driver[32], runtime[32], clocks[96], cudnn[32];
} DeviceVersions;
void device_versions(DeviceVersions *v);

#endif
