/* device for builds without nvcc: see device.h. */
#include "device.h"
#include <string.h>
#include <stdio.h>

int device_probe(char *desc, int desc_size) {
    snprintf(desc, (size_t)desc_size, "this build has no CUDA (built without nvcc)");
    return 0;
}

void device_versions(DeviceVersions *v) { memset(v, 0, sizeof *v); }

int device_cuda_built(void) { return 0; }
