/* prof_cuda: per-module GPU time of the CUDA forward (see prof.h). Two engines:
 *   cupti        every kernel, memcpy and memset the forward runs is traced
 *                (profile/cupti_cuda.c) and attributed to the innermost module
 *                open when it was launched (eager) or captured (graph); a
 *                module's time is its records' share of the GPU timeline
 *                (each record from the previous one's end to its own end: the
 *                idle gap before a kernel is its launch, paid by the module
 *                that launched it), its children's included. The records'
 *                own durations summed are PROF_BUSY. The whole forward is
 *                timed with CUDA events, so the attributed sum is checked
 *                against a clock that CUPTI does not drive.
 *   cuda-events  where CUPTI cannot trace: an event pair around each module of
 *                an eager forward (launch gaps inside a module count as its time).
 * Tested on a GPU through scripts/gpu-check.sh (profile of SDXL); the CPU
 * engine's tests (tests/test_profile.c) cover what both share. */
#include "backend_cuda.h"
#include "cuda_check.h"
#include <cuda_runtime.h>
#include <algorithm>
#include <map>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <string>
#include <vector>
extern "C" {
#include "cupti.h"
#include "prof.h"
}

namespace {

/* Module names of the forward, interned in the order they first open; the
 * parent is the module open around it then. */
struct Modules {
    std::vector<std::string> name;
    std::vector<int> parent;
    std::map<std::string, int> id;
    std::vector<int> stack;
    int intern(const char *n) {
        auto it = id.find(n);
        if (it != id.end()) return it->second;
        int k = (int)name.size();
        name.push_back(n);
        parent.push_back(stack.empty() ? -1 : stack.back());
        id[n] = k;
        return k;
    }
};

struct CuptiCtx {
    Modules *m;
};

void cupti_begin(void *ctx, const char *module) {
    Modules *m = ((CuptiCtx *)ctx)->m;
    int k = m->intern(module);
    m->stack.push_back(k);
    cupti_module_push(k);
}

void cupti_end(void *ctx, const char *module, double ms) {
    (void)module;
    (void)ms;
    Modules *m = ((CuptiCtx *)ctx)->m;
    cupti_module_pop();
    m->stack.pop_back();
}

/* cuda-events engine: one event pair per module per forward, from a pool. */
struct EventsCtx {
    Modules m;
    std::vector<cudaEvent_t> pool;
    size_t used = 0;
    std::vector<std::pair<int, std::pair<cudaEvent_t, cudaEvent_t>>> spans; /* module, begin, end */
    std::vector<std::pair<int, cudaEvent_t>> open;
    cudaStream_t s;
    cudaEvent_t get() {
        if (used == pool.size()) {
            cudaEvent_t ev;
            CUDA_CHECK(cudaEventCreate(&ev));
            pool.push_back(ev);
        }
        return pool[used++];
    }
};

void events_begin(void *ctx, const char *module) {
    EventsCtx *c = (EventsCtx *)ctx;
    int k = c->m.intern(module);
    c->m.stack.push_back(k);
    cudaEvent_t ev = c->get();
    CUDA_CHECK(cudaEventRecord(ev, c->s));
    c->open.push_back({k, ev});
}

void events_end(void *ctx, const char *module, double ms) {
    (void)module;
    (void)ms;
    EventsCtx *c = (EventsCtx *)ctx;
    cudaEvent_t ev = c->get();
    CUDA_CHECK(cudaEventRecord(ev, c->s));
    auto o = c->open.back();
    c->open.pop_back();
    c->m.stack.pop_back();
    c->spans.push_back({o.first, {o.second, ev}});
}

/* Times one forward (eager or a graph replay) with an event pair. */
struct Timer {
    cudaEvent_t a, b;
    cudaStream_t s;
    Timer(cudaStream_t st) : s(st) {
        CUDA_CHECK(cudaEventCreate(&a));
        CUDA_CHECK(cudaEventCreate(&b));
    }
    ~Timer() {
        cudaEventDestroy(a);
        cudaEventDestroy(b);
    }
    void start() { CUDA_CHECK(cudaEventRecord(a, s)); }
    double stop() {
        CUDA_CHECK(cudaEventRecord(b, s));
        CUDA_CHECK(cudaEventSynchronize(b));
        float ms = 0;
        CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
        return ms;
    }
};

int forward(CudaEngine *e, const Arch *a, const UnetInputs *in, const UnetTimer *t) {
    return unet_forward_be(cuda_engine_backend(e), a, in, NULL, NULL, NULL, NULL, NULL, t);
}

/* Captures one forward (with timer t, may be NULL) into an instantiated graph. */
int capture(CudaEngine *e, const Arch *a, const UnetInputs *in, const UnetTimer *t, cudaGraph_t *g, cudaGraphExec_t *ge) {
    cudaStream_t s = cuda_engine_stream(e);
    CUDA_CHECK(cudaStreamSynchronize(s));
    CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed));
    int rc = forward(e, a, in, t);
    CUDA_CHECK(cudaStreamEndCapture(s, g));
    if (rc) {
        CUDA_CHECK(cudaGraphDestroy(*g));
        return rc;
    }
    CUDA_CHECK(cudaGraphInstantiate(ge, *g, 0));
    CUDA_CHECK(cudaGraphLaunch(*ge, s)); /* the first launch uploads the graph */
    CUDA_CHECK(cudaStreamSynchronize(s));
    return 0;
}

/* Kernel, memcpy and memset nodes of a graph: the records one replay should give. */
size_t graph_activity_nodes(cudaGraph_t g) {
    size_t n = 0, count = 0;
    CUDA_CHECK(cudaGraphGetNodes(g, NULL, &n));
    std::vector<cudaGraphNode_t> nodes(n);
    if (n) CUDA_CHECK(cudaGraphGetNodes(g, nodes.data(), &n));
    for (size_t i = 0; i < n; i++) {
        cudaGraphNodeType t;
        CUDA_CHECK(cudaGraphNodeGetType(nodes[i], &t));
        count += t == cudaGraphNodeTypeKernel || t == cudaGraphNodeTypeMemcpy || t == cudaGraphNodeTypeMemset;
    }
    return count;
}

const char *kind_name(CuptiRecKind k) { return k == CUPTI_REC_KERNEL ? "kernel" : k == CUPTI_REC_MEMCPY ? "memcpy" : "memset"; }

} // namespace

extern "C" int prof_forward_cuda(CudaEngine *e, const Arch *const *a, int n, const UnetInputs *in, int warmup,
                                 int repeats, int graph, int use_cupti, Prof *p, double *plain_ms, ProfKernels *kern,
                                 const char **engine) {
    cudaStream_t s = cuda_engine_stream(e);
    Timer tm(s);
    int rc = 0;
    *engine = "cupti";
    const char *env = getenv("UNETLAB_CUPTI");
    if (env && !strcmp(env, "0")) use_cupti = 0;
    int probed = !use_cupti;
    /* CUPTI is probed only after every model's untraced baseline: once
     * initialised it may slow every launch, traced or not, and the baseline
     * is what the overhead is measured against */
    auto probe = [&]() {
        probed = 1;
        if (cupti_trace_start() != 0) {
            fprintf(stderr, "profile: %s; timing modules with CUDA events instead (engine cuda-events)\n", err_msg());
            use_cupti = 0;
            *engine = "cuda-events";
            if (graph) fprintf(stderr, "profile: CUDA events time modules of eager forwards only: --graph is not used\n");
            return;
        }
        CuptiRec *none = NULL; /* only probed here: each model's traced forwards trace on their own below */
        int nn = 0;
        uint64_t dropped = 0;
        cupti_trace_stop(&none, &nn, &dropped);
        cupti_recs_free(none, nn);
    };
    if (!use_cupti) {
        *engine = "cuda-events";
        if (graph) fprintf(stderr, "profile: CUDA events time modules of eager forwards only: --graph is not used\n");
    }
    /* untraced: the same forwards without tracing, as the traced ones will run
     * (graph replays for cupti, eager for events); the overhead is the difference */
    std::vector<std::vector<double>> plain((size_t)n, std::vector<double>((size_t)repeats));
    auto baseline = [&](int k) -> int {
        cudaGraph_t g0 = NULL;
        cudaGraphExec_t ge0 = NULL;
        int brc = 0;
        if (graph && use_cupti && (brc = capture(e, a[k], in, NULL, &g0, &ge0))) return brc;
        for (int r = 0; r < repeats && !brc; r++) {
            tm.start();
            if (ge0) CUDA_CHECK(cudaGraphLaunch(ge0, s));
            else brc = forward(e, a[k], in, NULL);
            plain[(size_t)k][(size_t)r] = tm.stop();
        }
        if (ge0) {
            CUDA_CHECK(cudaGraphExecDestroy(ge0));
            CUDA_CHECK(cudaGraphDestroy(g0));
        }
        return brc;
    };
    memset(kern, 0, sizeof *kern);
    if (graph && warmup < 1) warmup = 1; /* caches fill in an eager forward: capture must not plan */
    /* every model's baseline before CUPTI is first touched */
    for (int k = 0; k < n && !rc; k++) {
        for (int i = 0; i < warmup && !rc; i++) rc = forward(e, a[k], in, NULL);
        if (!rc) rc = baseline(k);
    }
    if (!rc && !probed) {
        int was_graph = graph && use_cupti;
        probe();
        for (int k = 0; k < n && !rc && was_graph && !use_cupti; k++) rc = baseline(k); /* events: eager ones */
    }
    for (int k = 0; k < n && !rc; k++) {
        plain_ms[k] = prof_quantile(plain[(size_t)k].data(), repeats, 0.5);
        for (int r = 0; r < repeats; r++) {
            p[k].cur = r;
            prof_add(&p[k], PROF_PLAIN, plain[(size_t)k][(size_t)r]);
        }
    }
    for (int k = 0; k < n && !rc; k++) {
        if (use_cupti) {
            Modules mods;
            CuptiCtx cc = {&mods};
            UnetTimer t = {cupti_end, &cc, cupti_begin};
            if ((rc = cupti_trace_start())) break;
            cudaGraph_t g = NULL;
            cudaGraphExec_t ge = NULL;
            if (graph && (rc = capture(e, a[k], in, &t, &g, &ge))) {
                CuptiRec *none = NULL;
                int nn = 0;
                uint64_t dr = 0;
                cupti_trace_stop(&none, &nn, &dr);
                cupti_recs_free(none, nn);
                break;
            }
            size_t nodes = ge ? graph_activity_nodes(g) : 0;
            CUDA_CHECK(cudaStreamSynchronize(s));
            cupti_trace_discard(); /* capture and the upload launch are not timed */
            std::vector<double> fw((size_t)repeats);
            for (int r = 0; r < repeats && !rc; r++) {
                tm.start();
                if (ge) CUDA_CHECK(cudaGraphLaunch(ge, s));
                else rc = forward(e, a[k], in, &t);
                fw[(size_t)r] = tm.stop();
            }
            CuptiRec *rec = NULL;
            int nrec = 0;
            uint64_t dropped = 0;
            int src = cupti_trace_stop(&rec, &nrec, &dropped);
            if (ge) {
                CUDA_CHECK(cudaGraphExecDestroy(ge));
                CUDA_CHECK(cudaGraphDestroy(g));
            }
            if (rc || src) { cupti_recs_free(rec, nrec); rc = rc ? rc : src; break; }
            if (dropped) fprintf(stderr, "profile: CUPTI dropped %llu records: module times are short by those\n", (unsigned long long)dropped);
            if (nrec == 0 || nrec % repeats) {
                cupti_recs_free(rec, nrec);
                rc = err_set(ERR_RUNTIME, "profile: CUPTI gave %d records over %d forwards (%s); rerun with --device cuda"
                             " and no CUPTI (UNETLAB_CUPTI=0) for CUDA-event timing", nrec, repeats,
                             nrec ? "not the same number each forward" : "tracing delivered nothing");
                break;
            }
            if (ge && (size_t)(nrec / repeats) != nodes)
                fprintf(stderr, "profile: %d CUPTI records per replay, the graph has %zu kernel, memcpy and memset nodes\n",
                        nrec / repeats, nodes);
            int per = nrec / repeats; /* records are sorted by start: forward r owns [r*per, (r+1)*per) */
            size_t nm = mods.name.size();
            std::vector<std::vector<double>> ms(nm, std::vector<double>((size_t)repeats, 0.0));
            std::vector<int64_t> cnt(nm, 0);
            size_t base = (size_t)kern->n;
            kern->n += nrec;
            kern->k = (ProfKernel *)xrealloc(kern->k, (size_t)kern->n * sizeof(ProfKernel));
            std::vector<double> busy((size_t)repeats, 0.0);
            for (int r = 0; r < repeats; r++) {
                uint64_t t0 = rec[(size_t)r * per].start, prev_end = t0;
                for (int i = 0; i < per; i++) {
                    const CuptiRec *c = &rec[(size_t)r * per + i];
                    /* a record's share of the timeline: from the previous record's end (or its own
                     * start, after idle time) to its end, so the idle gap before a kernel (its
                     * launch) counts to the module that launched it and the parts add up */
                    uint64_t from = prev_end, end = c->end > prev_end ? c->end : prev_end;
                    double span = (double)(end - from) * 1e-6;
                    prev_end = end;
                    busy[(size_t)r] += (double)(c->end - c->start) * 1e-6;
                    for (int m = c->module; m >= 0 && m < (int)nm; m = mods.parent[(size_t)m]) {
                        ms[(size_t)m][(size_t)r] += span;
                        cnt[(size_t)m] += c->kind == CUPTI_REC_KERNEL;
                    }
                    ProfKernel *pk = &kern->k[base + (size_t)r * per + i];
                    memset(pk, 0, sizeof *pk);
                    pk->model = k;
                    pk->repeat = r;
                    pk->seq = i;
                    pk->kind = kind_name(c->kind);
                    pk->name = xstrdup(c->name ? c->name : "");
                    pk->module = c->module >= 0 && c->module < (int)nm ? xstrdup(mods.name[(size_t)c->module].c_str()) : NULL;
                    memcpy(pk->grid, c->grid, sizeof pk->grid);
                    memcpy(pk->block, c->block, sizeof pk->block);
                    pk->registers = c->registers;
                    pk->smem_static = c->smem_static;
                    pk->smem_dynamic = c->smem_dynamic;
                    pk->bytes = c->bytes;
                    pk->start_ns = c->start - t0;
                    pk->duration_ns = c->end - c->start;
                    pk->graph_node = c->graph_node;
                    pk->stream = c->stream;
                }
            }
            cupti_recs_free(rec, nrec);
            for (size_t m = 0; m < nm; m++)
                for (int r = 0; r < repeats; r++) {
                    p[k].cur = r;
                    prof_add(&p[k], mods.name[m].c_str(), ms[m][(size_t)r]);
                }
            for (size_t m = 0; m < nm; m++) prof_set_calls(&p[k], mods.name[m].c_str(), cnt[m]);
            for (int r = 0; r < repeats; r++) {
                p[k].cur = r;
                prof_add(&p[k], PROF_FORWARD, fw[(size_t)r]);
                prof_add(&p[k], PROF_BUSY, busy[(size_t)r]);
            }
        } else {
            EventsCtx ec;
            ec.s = s;
            UnetTimer t = {events_end, &ec, events_begin};
            for (int r = 0; r < repeats && !rc; r++) {
                ec.used = 0;
                ec.spans.clear();
                tm.start();
                rc = forward(e, a[k], in, &t);
                double whole = tm.stop(); /* synchronizes: every module's events have completed */
                p[k].cur = r;
                for (auto &sp : ec.spans) {
                    float ms = 0;
                    CUDA_CHECK(cudaEventElapsedTime(&ms, sp.second.first, sp.second.second));
                    prof_add(&p[k], ec.m.name[(size_t)sp.first].c_str(), ms);
                }
                prof_add(&p[k], PROF_FORWARD, whole);
            }
            for (cudaEvent_t ev : ec.pool) cudaEventDestroy(ev);
        }
    }
    return rc;
}
