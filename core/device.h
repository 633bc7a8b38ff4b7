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

#endif
