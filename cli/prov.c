/* prov: the provenance every stored row ties to: git commit and build flags
 * (compiled in), device and library versions, seed, command line. */
#include "cli.h"
#include "device.h"
#include "err.h"
#ifdef UNETLAB_CUDA
#include "cupti.h"
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef UNETLAB_GIT
#define UNETLAB_GIT "unknown"
#endif
#ifndef UNETLAB_BUILD_FLAGS
#define UNETLAB_BUILD_FLAGS "unknown"
#endif

/* "model name" of the first CPU, from /proc/cpuinfo. */
static void cpu_name(char *buf, size_t size) {
    snprintf(buf, size, "cpu");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10)) {
            char *c = strchr(line, ':');
            if (c) {
                c += 2;
                c[strcspn(c, "\n")] = '\0';
                snprintf(buf, size, "cpu: %s", c);
            }
            break;
        }
    fclose(f);
}

void prov_fill(CliProvenance *p, int argc, char **argv, long seed) {
    memset(p, 0, sizeof *p);
    size_t len = 0;
    for (int i = 0; i < argc; i++) len += strlen(argv[i]) + 3;
    p->cmdline = xcalloc(len + 16, 1);
    strcat(p->cmdline, "unetlab");
    for (int i = 0; i < argc; i++) {
        strcat(p->cmdline, " ");
        int quote = strchr(argv[i], ' ') != NULL;
        if (quote) strcat(p->cmdline, "'");
        strcat(p->cmdline, argv[i]);
        if (quote) strcat(p->cmdline, "'");
    }
    cpu_name(p->device, sizeof p->device);
    char desc[256];
    if (device_cuda_built()) {
        if (device_probe(desc, sizeof desc) > 0) snprintf(p->gpu, sizeof p->gpu, "%s", desc);
        else snprintf(p->gpu, sizeof p->gpu, "none: %s", desc);
    } else snprintf(p->gpu, sizeof p->gpu, "none: CPU-only build");
    device_versions(&p->v);
    if (p->v.driver[0]) { /* "NVIDIA H100 ... (sm_90, ...); driver CUDA 13.0; peak sm 1980 MHz, memory 2619 MHz" */
        size_t n = strlen(p->gpu);
        snprintf(p->gpu + n, sizeof p->gpu - n, "; driver %s%s%s", p->v.driver, p->v.clocks[0] ? "; " : "", p->v.clocks);
    }
    p->p.command_line = p->cmdline;
    p->p.git_commit = UNETLAB_GIT;
    p->p.build_flags = UNETLAB_BUILD_FLAGS;
    p->p.device = p->device;
    p->p.driver_version = p->gpu;
    p->p.cuda_version = p->v.runtime[0] ? p->v.runtime : NULL;
    p->p.cudnn_version = p->v.cudnn[0] ? p->v.cudnn : NULL;
#ifdef UNETLAB_CUDA
    p->p.cupti_version = cupti_version();
#endif
    p->p.seed = seed;
}

void prov_free(CliProvenance *p) { free(p->cmdline); }

const char *prov_build(void) { return UNETLAB_GIT ", " UNETLAB_BUILD_FLAGS; }
