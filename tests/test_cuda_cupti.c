/* test_cuda_cupti: the CUPTI tracer (profile/cupti_cuda.c) on a GPU. A C
 * test has no kernels of its own, so the work is memsets and device-to-device
 * copies of distinct sizes, issued inside nested modules on one stream:
 *   - eager, after a warm-up that cupti_trace_discard drops;
 *   - captured into a graph (each node under its own module), instantiated
 *     and replayed twice inside another module, which must not win;
 *   - a second session replaying the same graph (the node map outlives it).
 * Checks each record's kind, bytes, module and graph node, the order by
 * start, start < end, the counts and that nothing was dropped; on a mismatch
 * it prints every record. Skipped without a GPU; when CUPTI may not trace
 * here (insufficient privileges, another CUPTI client) it says so and skips. */
#include "test.h"
#include "cupti.h"
#include "cuda_check.h"
#include "device.h"
#include "err.h"
#include <cuda_runtime_api.h>
#include <inttypes.h>
#include <stdint.h>

#define NAME "test_cuda_cupti"

enum { N = 4 << 20 };

typedef struct {
    CuptiRecKind kind;
    uint64_t bytes;
    int module;
    int graph;   /* replayed from a graph: graph_node != 0 */
} Want;

static const char *kind_name(CuptiRecKind k) {
    return k == CUPTI_REC_KERNEL ? "kernel" : k == CUPTI_REC_MEMCPY ? "memcpy" : "memset";
}

static void dump(const CuptiRec *r, int n) {
    uint64_t t0 = n ? r[0].start : 0;
    for (int i = 0; i < n; i++)
        fprintf(stderr, "  [%d] %s '%s' bytes %" PRIu64 " module %d graph_node %" PRIu64 " corr %u stream %u"
                " start +%" PRIu64 " ns, %" PRIu64 " ns\n", i, kind_name(r[i].kind), r[i].name, r[i].bytes,
                r[i].module, r[i].graph_node, r[i].correlation, r[i].stream, r[i].start - t0,
                r[i].end - r[i].start);
}

static void check_trace(const char *what, const CuptiRec *r, int n, uint64_t dropped, const Want *w, int nw) {
    int failed = t_fail;
    CHECK_MSG(n == nw, "%s: %d records, want %d", what, n, nw);
    CHECK_MSG(dropped == 0, "%s: %" PRIu64 " records dropped", what, dropped);
    for (int i = 0; i < n && i < nw; i++) {
        CHECK_MSG(r[i].kind == w[i].kind && r[i].bytes == w[i].bytes, "%s [%d]: %s of %" PRIu64 " bytes, want %s of %"
                  PRIu64, what, i, kind_name(r[i].kind), r[i].bytes, kind_name(w[i].kind), w[i].bytes);
        CHECK_MSG(r[i].module == w[i].module, "%s [%d]: module %d, want %d", what, i, r[i].module, w[i].module);
        CHECK_MSG(!!r[i].graph_node == w[i].graph, "%s [%d]: graph node %" PRIu64, what, i, r[i].graph_node);
        CHECK_MSG(r[i].start > 0 && r[i].start < r[i].end, "%s [%d]: start %" PRIu64 ", end %" PRIu64, what, i,
                  r[i].start, r[i].end);
        if (i) CHECK_MSG(r[i - 1].start <= r[i].start, "%s [%d]: not sorted by start", what, i);
        CHECK_MSG(r[i].correlation != 0, "%s [%d]: no correlation id", what, i);
        const char *want_name = w[i].kind == CUPTI_REC_MEMCPY ? "memcpy DtoD" : "memset";
        CHECK_MSG(r[i].name && !strcmp(r[i].name, want_name), "%s [%d]: name '%s', want '%s'", what, i,
                  r[i].name ? r[i].name : "(null)", want_name);
    }
    if (t_fail != failed) {
        fprintf(stderr, "%s: the records:\n", what);
        dump(r, n);
    }
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0); /* a killed hang keeps the line naming its case */
    char desc[256];
    if (device_probe(desc, sizeof desc) == 0) TEST_SKIP(NAME, "%s", desc);
    printf("%s: %s; %s\n", NAME, desc, cupti_version());
    CHECK(strstr(cupti_version(), "CUpti_ActivityKernel") != NULL);

    CuptiRec *r = NULL;
    int n = -1;
    uint64_t dropped = 1;
    CHECK_ERR(cupti_trace_stop(&r, &n, &dropped), ERR_RUNTIME, "not started");
    CHECK(r == NULL && n == 0 && dropped == 0);

    unsigned char *a, *b;
    cudaStream_t s;
    CUDA_CHECK(cudaMalloc((void **)&a, N));
    CUDA_CHECK(cudaMalloc((void **)&b, N));
    CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));

    if (cupti_trace_start()) {
        const char *m = err_msg();
        if (strstr(m, "INSUFFICIENT_PRIVILEGES") || strstr(m, "MULTIPLE_SUBSCRIBERS"))
            TEST_SKIP(NAME, "%s (CUPTI cannot trace in this environment; the profiler falls back to CUDA events)", m);
        CHECK_MSG(0, "cupti_trace_start: %s", m);
        TEST_MAIN_END(NAME);
    }
    CHECK_ERR(cupti_trace_start(), ERR_RUNTIME, "already started");

    /* Warm-up, dropped by discard. */
    cupti_module_push(5);
    CUDA_CHECK(cudaMemsetAsync(a, 0, N, s));
    cupti_module_pop();
    cupti_trace_discard();

    /* Eager: nested modules, the innermost wins; the last one is outside any. */
    cupti_module_push(0);
    CUDA_CHECK(cudaMemsetAsync(a, 1, N, s));
    cupti_module_push(1);
    CUDA_CHECK(cudaMemcpyAsync(b, a, N, cudaMemcpyDeviceToDevice, s));
    cupti_module_pop();
    CUDA_CHECK(cudaMemsetAsync(b, 2, N / 2, s));
    cupti_module_pop();
    CUDA_CHECK(cudaMemsetAsync(a, 3, N / 4, s));

    /* A graph: each node made under its module while the stream is captured. */
    cudaGraph_t g;
    cudaGraphExec_t ge;
    CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    cupti_module_push(2);
    CUDA_CHECK(cudaMemsetAsync(a, 4, N / 8, s));
    cupti_module_push(3);
    CUDA_CHECK(cudaMemcpyAsync(b, a, N / 2, cudaMemcpyDeviceToDevice, s));
    cupti_module_pop();
    cupti_module_pop();
    cupti_module_push(4);
    CUDA_CHECK(cudaMemsetAsync(b, 5, N / 16, s));
    cupti_module_pop();
    CUDA_CHECK(cudaStreamEndCapture(s, &g));
    CUDA_CHECK(cudaGraphInstantiate(&ge, g, 0));
    /* Launched inside module 7: one launch, so its correlation id would give
     * 7 to every node; the node ids must win. */
    cupti_module_push(7);
    CUDA_CHECK(cudaGraphLaunch(ge, s));
    CUDA_CHECK(cudaGraphLaunch(ge, s));
    cupti_module_pop();
    CUDA_CHECK(cudaStreamSynchronize(s));

    CHECK(cupti_trace_stop(&r, &n, &dropped) == 0);
    const Want want1[] = {
        {CUPTI_REC_MEMSET, N, 0, 0},      {CUPTI_REC_MEMCPY, N, 1, 0},      {CUPTI_REC_MEMSET, N / 2, 0, 0},
        {CUPTI_REC_MEMSET, N / 4, -1, 0}, {CUPTI_REC_MEMSET, N / 8, 2, 1},  {CUPTI_REC_MEMCPY, N / 2, 3, 1},
        {CUPTI_REC_MEMSET, N / 16, 4, 1}, {CUPTI_REC_MEMSET, N / 8, 2, 1},  {CUPTI_REC_MEMCPY, N / 2, 3, 1},
        {CUPTI_REC_MEMSET, N / 16, 4, 1},
    };
    enum { NW1 = sizeof want1 / sizeof *want1 };
    check_trace("session 1", r, n, dropped, want1, NW1);
    uint64_t nodes[3] = {0, 0, 0};
    if (n == NW1) {
        /* Both replays run the same instantiated nodes; the three differ. */
        for (int k = 0; k < 3; k++) {
            nodes[k] = r[4 + k].graph_node;
            CHECK_MSG(r[7 + k].graph_node == nodes[k], "replay node %d: %" PRIu64 " vs %" PRIu64, k,
                      r[7 + k].graph_node, nodes[k]);
        }
        CHECK(nodes[0] != nodes[1] && nodes[1] != nodes[2] && nodes[0] != nodes[2]);
        printf("%s: session 1: eager memset of %d MiB took %" PRIu64 " ns, graph replay %" PRIu64 " ns\n", NAME,
               N >> 20, r[0].end - r[0].start, r[6].end - r[4].start);
    }
    cupti_recs_free(r, n);

    /* Session 2: the graph made in session 1, replayed inside module 9. */
    CHECK(cupti_trace_start() == 0);
    cupti_module_push(9);
    CUDA_CHECK(cudaGraphLaunch(ge, s));
    cupti_module_pop();
    CHECK(cupti_trace_stop(&r, &n, &dropped) == 0);
    const Want want2[] = {{CUPTI_REC_MEMSET, N / 8, 2, 1}, {CUPTI_REC_MEMCPY, N / 2, 3, 1}, {CUPTI_REC_MEMSET, N / 16, 4, 1}};
    check_trace("session 2", r, n, dropped, want2, 3);
    if (n == 3 && nodes[0])
        for (int k = 0; k < 3; k++) CHECK_EQ_LL(r[k].graph_node, nodes[k]);
    cupti_recs_free(r, n);

    /* Outside a trace the stack still nests (no CUPTI call is made). */
    cupti_module_push(11);
    cupti_module_push(12);
    cupti_module_pop();
    cupti_module_pop();

    CUDA_CHECK(cudaGraphExecDestroy(ge));
    CUDA_CHECK(cudaGraphDestroy(g));
    CUDA_CHECK(cudaStreamDestroy(s));
    CUDA_CHECK(cudaFree(a));
    CUDA_CHECK(cudaFree(b));
    TEST_MAIN_END(NAME);
}
