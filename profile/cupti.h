/* cupti: kernel-level tracing of the CUDA forward with the CUPTI Activity
 * API (CONCURRENT_KERNEL, never KERNEL, which serialises kernels; plus
 * MEMCPY and MEMSET), every record attributed to the module that launched it.
 * Modules are the caller's integer ids, pushed and popped around the work of
 * each module (nested: the innermost wins):
 *   - eager launches: each push is an external correlation id
 *     (CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0), joined to the records by
 *     correlation id at the end;
 *   - CUDA graphs: while a stream is captured, the graph-node-created
 *     callback maps each new node to the module on top of the stack, and the
 *     node-cloned callback carries that over to the instantiated graph, so a
 *     replay's records (which carry the graph node id) map back too.
 * Only built with CUDA (profile/cupti_cuda.c). Tested by tests/test_cuda_cupti.c
 * on a GPU (skipped without one). */
#ifndef UNETLAB_CUPTI_H
#define UNETLAB_CUPTI_H
#include <stdint.h>

typedef enum { CUPTI_REC_KERNEL = 0, CUPTI_REC_MEMCPY = 1, CUPTI_REC_MEMSET = 2 } CuptiRecKind;

typedef struct {
    CuptiRecKind kind;
    char *name;                /* kernel name as the driver reports it (mangled); "memcpy HtoD" etc. */
    int module;                /* the caller's module id, -1 when launched outside any module */
    uint64_t start, end;       /* GPU timestamps, ns */
    int grid[3], block[3];     /* kernels */
    int registers;             /* per thread */
    int smem_static, smem_dynamic; /* bytes per block */
    uint64_t bytes;            /* memcpy / memset */
    uint32_t correlation;      /* CUPTI correlation id of the launch */
    uint64_t graph_node;       /* 0 outside graphs */
    uint32_t stream;           /* CUPTI stream id */
} CuptiRec;

/* Starts tracing (activity kinds, buffer callbacks, the graph-node callbacks).
 * Returns 0, or ERR_RUNTIME with a one-line message (err_msg) when CUPTI
 * cannot trace here, e.g. CUPTI_ERROR_INSUFFICIENT_PRIVILEGES, so the caller
 * falls back to CUDA events. */
int cupti_trace_start(void);
/* Module scope for the launches (and graph nodes captured) that follow;
 * module >= 0. From the one thread that launches the work; a module still
 * open when a trace starts counts from then on. */
void cupti_module_push(int module);
void cupti_module_pop(void);
/* Synchronizes the device, flushes every buffer (cuptiActivityFlushAll with
 * forced flush), stops tracing and hands over the records gathered since
 * cupti_trace_start, sorted by start time; *dropped counts records CUPTI
 * reported lost. The caller frees with cupti_recs_free. ERR_RUNTIME when no
 * trace runs. Graph nodes stay mapped to their modules for later traces. */
int cupti_trace_stop(CuptiRec **recs, int *n, uint64_t *dropped);
/* Drops the records gathered so far without stopping (between warm-up and
 * timed repeats); synchronizes the device first. */
void cupti_trace_discard(void);
void cupti_recs_free(CuptiRec *recs, int n);
/* "CUPTI API 130000 (activity record CUpti_ActivityKernel9)" or similar:
 * the version the binary was built against and loaded. */
const char *cupti_version(void);

#endif
