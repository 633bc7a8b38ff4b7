/* test_cuda_forward: the whole CUDA forward against the CPU reference
 * (itself within ~1e-6 of diffusers, tests/test_fixtures.c). For both
 * fixtures, in fp32 (no TF32), fp16 and bf16: the output and every feature
 * point within a relative L2 error of 1e-4, 1e-2 and 3e-2 of the CPU's, and
 * finite. Then, in fp16: each student of expected.json (run from the start,
 * and with prefix reuse from the CPU teacher's features), and a CUDA graph
 * replay, which must give the eager forward's output. Skipped (one line)
 * without a GPU. */
#include "test.h"
#include "fixture.h"
#include "backend.h"
#include "backend_cuda.h"
#include "cuda_check.h"
#include "device.h"
#include "err.h"
#include "forward.h"
#include "plan.h"
#include "unet.h"
#include "weights.h"
#include <cjson/cJSON.h>
#include <cuda_runtime_api.h>
#include <stdlib.h>


/* GPU features compared as they arrive with the CPU's of the same name. */
typedef struct {
    const Cache *cpu;
    double tol, worst;
    char worst_name[256];
    int n, nonfinite;
    const char *label;
} Cmp;

static void compare(void *p, const char *name, const Tensor *t) {
    Cmp *c = p;
    const Tensor *r = lookup((void *)c->cpu, name);
    CHECK_MSG(r != NULL, "%s: the CPU forward has no feature '%s'", c->label, name);
    if (!r) return;
    int64_t n = tensor_numel(t);
    CHECK_MSG(n == tensor_numel(r), "%s: feature %s has %lld elements, the CPU's %lld", c->label, name, (long long)n,
              (long long)tensor_numel(r));
    if (n != tensor_numel(r)) return;
    int bad = 0;
    for (int64_t i = 0; i < n; i++) bad += !isfinite(t->d[i]);
    c->nonfinite += bad;
    double e = rel_l2(t->d, r->d, n);
    CHECK_MSG(bad == 0 && e <= c->tol, "%s: feature %s: relative L2 %.3g (bound %g), %d non-finite", c->label, name, e,
              c->tol, bad);
    if (e > c->worst) { c->worst = e; snprintf(c->worst_name, sizeof c->worst_name, "%s", name); }
    c->n++;
}

static void check_output(const char *label, const Tensor *y, const Tensor *ref, double tol) {
    int64_t n = tensor_numel(y);
    CHECK(n == tensor_numel(ref));
    if (n != tensor_numel(ref)) return;
    int bad = 0;
    for (int64_t i = 0; i < n; i++) bad += !isfinite(y->d[i]);
    double e = rel_l2(y->d, ref->d, n);
    CHECK_MSG(bad == 0 && e <= tol, "%s: output relative L2 %.3g (bound %g), %d non-finite", label, e, tol, bad);
    printf("  %-44s output rel L2 %.2e (bound %g)%s\n", label, e, tol, bad ? " NON-FINITE" : "");
}

/* Forward on the engine's backend, output downloaded. */
static int gpu_forward(CudaEngine *e, const Arch *a, const UnetInputs *in, const UnetResume *res, Tensor *y,
                       FeatureFn fn, void *ctx) {
    return unet_forward_be(cuda_engine_backend(e), a, in, res, y, fn, ctx, NULL, NULL);
}

/* A forward captured into a CUDA graph and replayed gives the eager
 * forward's output (the same kernels on the same buffers: equal unless a
 * kernel reduces in a run-dependent order, so the bound is 1e-5, not 0). */
static void graph_replay(CudaEngine *e, const Arch *a, const UnetInputs *in, const Tensor *eager, const char *label) {
    cudaStream_t s = cuda_engine_stream(e);
    Backend *be = cuda_engine_backend(e);
    CHECK(unet_forward_be(be, a, in, NULL, NULL, NULL, NULL, NULL, NULL) == 0); /* sizes the kept output */
    cudaGraph_t g;
    cudaGraphExec_t ge;
    CUDA_CHECK(cudaStreamSynchronize(s));
    CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed));
    int rc = unet_forward_be(be, a, in, NULL, NULL, NULL, NULL, NULL, NULL);
    CUDA_CHECK(cudaStreamEndCapture(s, &g));
    CHECK(rc == 0);
    CUDA_CHECK(cudaGraphInstantiate(&ge, g, 0));
    size_t nodes = 0;
    CUDA_CHECK(cudaGraphGetNodes(g, NULL, &nodes));
    cuda_engine_clear_output(e);
    CUDA_CHECK(cudaGraphLaunch(ge, s));
    CUDA_CHECK(cudaGraphLaunch(ge, s));
    CUDA_CHECK(cudaStreamSynchronize(s));
    Tensor y;
    CHECK(cuda_engine_output(e, &y) == 0);
    int64_t n = tensor_numel(&y);
    double e2 = n == tensor_numel(eager) ? rel_l2(y.d, eager->d, n) : 1;
    int same = n == tensor_numel(eager) && !memcmp(y.d, eager->d, (size_t)n * sizeof(float));
    CHECK_MSG(e2 <= 1e-5, "%s: graph replay's output differs from the eager forward's: rel L2 %.3g", label, e2);
    printf("  %-44s graph of %zu nodes: replay vs eager rel L2 %.2e%s\n", label, nodes, e2, same ? " (bit-identical)" : "");
    tensor_free(&y);
    CUDA_CHECK(cudaGraphExecDestroy(ge));
    CUDA_CHECK(cudaGraphDestroy(g));
}

static void run_fixture(const char *name) {
    char label[300];
    Fixture fx;
    if (fixture_open(&fx, name)) return;
    /* read-only views of what fx holds (fixture_close frees it) */
    const ModelSource m = fx.m;
    const UnetInputs in = fx.in;
    const ModuleTree tree = fx.tree;
    const Weights *w = &fx.w; /* not a copy: the fast engine keeps its state in it */
    int rc;
    Cache cpu = {0};
    Tensor ycpu;
    CHECK(unet_forward(&m.arch, w, &in, &ycpu, keep, &cpu) == 0);

    static const DType dts[] = {DTYPE_F32, DTYPE_F16, DTYPE_BF16};
    static const double tols[] = {1e-4, 1e-2, 3e-2};
    for (int k = 0; k < 3; k++) {
        CudaEngine *e;
        rc = cuda_engine_new(&e, w, &tree, dts[k]);
        CHECK_MSG(rc == 0, "%s", err_msg());
        if (rc) continue;
        snprintf(label, sizeof label, "%s teacher %s", name, dtype_name(dts[k]));
        Cmp c = {.cpu = &cpu, .tol = tols[k], .label = label};
        Tensor y;
        CHECK(gpu_forward(e, &m.arch, &in, NULL, &y, compare, &c) == 0);
        CHECK_MSG(c.n == cpu.n, "%s: %d features compared, the CPU emitted %d", label, c.n, cpu.n);
        check_output(label, &y, &ycpu, tols[k]);
        printf("  %-44s %d features, worst rel L2 %.2e (%s)\n", label, c.n, c.worst, c.worst_name);

        if (dts[k] == DTYPE_F16) {
            graph_replay(e, &m.arch, &in, &y, label);
            /* students: from the start and with prefix reuse from the CPU teacher's features */
            const cJSON *st, *students = cJSON_GetObjectItem(fx.expected, "students");
            cJSON_ArrayForEach(st, students) {
                Arch a = m.arch;
                const cJSON *d;
                cJSON_ArrayForEach(d, cJSON_GetObjectItem(st, "drop")) CHECK(plan_remove(&a, d->valuestring) == 0);
                Tensor ys_cpu, ys, yr;
                CHECK(unet_forward(&a, w, &in, &ys_cpu, NULL, NULL) == 0);
                snprintf(label, sizeof label, "%s student %s fp16", name, st->string);
                CHECK(gpu_forward(e, &a, &in, NULL, &ys, NULL, NULL) == 0);
                check_output(label, &ys, &ys_cpu, tols[k]);
                UnetResume res = {&m.arch, lookup, &cpu};
                snprintf(label, sizeof label, "%s student %s fp16 reuse", name, st->string);
                CHECK(gpu_forward(e, &a, &in, &res, &yr, NULL, NULL) == 0);
                check_output(label, &yr, &ys_cpu, tols[k]);
                tensor_free(&ys_cpu);
                tensor_free(&ys);
                tensor_free(&yr);
            }
        }
        CudaMemStats ms;
        cuda_engine_mem(e, &ms);
        printf("  %-44s weights %.1f MiB, activations peak %.1f MiB\n", "", ms.weights / 1048576.0,
               ms.arena_peak / 1048576.0);
        tensor_free(&y);
        cuda_engine_free(e);
    }
    cache_free(&cpu);
    tensor_free(&ycpu);
    fixture_close(&fx);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0); /* a killed hang keeps the line naming its case */
    char desc[256];
    if (device_probe(desc, sizeof desc) == 0) TEST_SKIP("test_cuda_forward", "%s", desc);
    printf("device: %s\n", desc);
    cpu_engine_set(CPU_REF, DTYPE_F32); /* the judge: the plain-loop reference */
    run_fixture("mini-public");
    run_fixture("mini-ssd");
    TEST_MAIN_END("test_cuda_forward");
}
