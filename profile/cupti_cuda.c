/* cupti_cuda: see cupti.h. CUPTI fills 8 MiB buffers that it hands back on
 * its own thread (or inside cuptiActivityFlushAll); the completion callback
 * copies what CuptiRec needs, under g_mu. Attribution is joined at stop:
 *   - a record with a graph node id takes the module its node was mapped to
 *     (GRAPHNODE_CREATED during stream capture: the module on top of the
 *     stack; GRAPHNODE_CLONED at instantiation: the module of the original
 *     node, since replays report the id of the instantiated copy). This comes
 *     first: a graph's records all carry the correlation id of the one
 *     cudaGraphLaunch;
 *   - otherwise the external correlation record (CUSTOM0, id = module + 1)
 *     that CUPTI wrote for the launching API call. CUPTI writes those only
 *     while API activity is traced, so RUNTIME and DRIVER are enabled too
 *     (their records are read past), and the launch may be either kind.
 * The graph node map outlives a session (a graph captured during warm-up is
 * replayed in the timed repeats and in later sessions); node ids are unique
 * per process. Module push/pop are meant for one application thread;
 * modules open when a trace starts count as pushed then.
 * Tested by tests/test_cuda_cupti.c on a GPU. */
#include "cupti.h"
#include "cuda_check.h"
#include "err.h"
/* CUPTI's headers one by one: with -Iprofile before CUDA's include folder,
 * <cupti.h> would name ours. */
#include <cupti_result.h>
#include <cupti_version.h>
#include <cupti_activity.h>
#include <cupti_callbacks.h>
#include <cuda_runtime_api.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A CUPTI call that must not fail once tracing runs. */
#define CUPTI_CHECK(call)                                                                          \
    do {                                                                                           \
        CUptiResult r_ = (call);                                                                   \
        if (r_ != CUPTI_SUCCESS) die("%s failed at %s:%d: %s", #call, __FILE__, __LINE__, cupti_str(r_)); \
    } while (0)

/* The kernel record of this CUPTI version. Later versions append fields, so
 * the ones read here sit where they sat in CUpti_ActivityKernel5 (checked
 * below): a newer libcupti of the same major version reads the same. */
typedef CUpti_ActivityKernel10 KernelRec;
#define KERNEL_REC_NAME "CUpti_ActivityKernel10"
#define SAME_OFFSET(f) \
    _Static_assert(offsetof(KernelRec, f) == offsetof(CUpti_ActivityKernel5, f), "kernel record field " #f " moved")
SAME_OFFSET(start);
SAME_OFFSET(end);
SAME_OFFSET(streamId);
SAME_OFFSET(gridX);
SAME_OFFSET(blockZ);
SAME_OFFSET(registersPerThread);
SAME_OFFSET(staticSharedMemory);
SAME_OFFSET(dynamicSharedMemory);
SAME_OFFSET(correlationId);
SAME_OFFSET(name);
SAME_OFFSET(graphNodeId);
_Static_assert(offsetof(CUpti_ActivityMemcpy6, graphNodeId) == offsetof(CUpti_ActivityMemcpy5, graphNodeId),
               "memcpy record moved");
_Static_assert(offsetof(CUpti_ActivityMemset4, graphNodeId) == offsetof(CUpti_ActivityMemset3, graphNodeId),
               "memset record moved");

enum { BUF_SIZE = 8 << 20 };

static const char *cupti_str(CUptiResult r) {
    const char *s = NULL;
    if (cuptiGetResultString(r, &s) != CUPTI_SUCCESS || !s) return "unknown CUPTI error";
    return s;
}

/* ---- state ------------------------------------------------------------- */

typedef struct {
    CuptiRec r;
    uint32_t runtime_corr;  /* memcpy: the runtime API's correlation id as well */
} Raw;

typedef struct {
    uint32_t corr;
    uint64_t ext;
} Ext;

/* node id -> module (-1: created outside any module), open addressing */
typedef struct {
    uint64_t *key;
    int *mod;
    unsigned char *used;
    size_t cap, n;
} NodeMap;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_on;                       /* between a successful start and stop (application thread only) */
static CUpti_SubscriberHandle g_sub;
static Raw *g_raw;                     /* records gathered since start (or discard) */
static size_t g_nraw, g_capraw;
static Ext *g_ext;
static size_t g_next, g_capext;
static uint64_t g_dropped;
static NodeMap g_nodes;
/* The module stack; pushed[i]: whether entry i also went to CUPTI's stack. */
static int *g_stack;
static unsigned char *g_pushed;
static int g_depth, g_capstack;

static const CUpti_ActivityKind KINDS[] = {
    CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL, CUPTI_ACTIVITY_KIND_MEMCPY, CUPTI_ACTIVITY_KIND_MEMSET,
    CUPTI_ACTIVITY_KIND_RUNTIME,           CUPTI_ACTIVITY_KIND_DRIVER, CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION,
};
static const char *const KIND_NAMES[] = {"CONCURRENT_KERNEL", "MEMCPY", "MEMSET", "RUNTIME", "DRIVER",
                                         "EXTERNAL_CORRELATION"};
enum { NKINDS = sizeof KINDS / sizeof *KINDS };
_Static_assert(sizeof KIND_NAMES / sizeof *KIND_NAMES == NKINDS, "one name per kind");

/* ---- graph node map ------------------------------------------------------ */

static uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static size_t node_slot(const NodeMap *m, uint64_t id) {
    size_t s = (size_t)mix64(id) & (m->cap - 1);
    while (m->used[s] && m->key[s] != id) s = (s + 1) & (m->cap - 1);
    return s;
}

/* *mod = the node's module; returns 0 when the node is unknown. */
static int node_get(const NodeMap *m, uint64_t id, int *mod) {
    if (!m->cap) return 0;
    size_t s = node_slot(m, id);
    if (!m->used[s]) return 0;
    *mod = m->mod[s];
    return 1;
}

/* Sets the node's module; an existing entry is kept unless overwrite. */
static void node_put(NodeMap *m, uint64_t id, int mod, int overwrite) {
    if (2 * (m->n + 1) > m->cap) {
        NodeMap g = {0};
        g.cap = m->cap ? 2 * m->cap : 1024;
        g.key = xmalloc(g.cap * sizeof *g.key);
        g.mod = xmalloc(g.cap * sizeof *g.mod);
        g.used = xcalloc(g.cap, 1);
        for (size_t i = 0; i < m->cap; i++)
            if (m->used[i]) {
                size_t s = node_slot(&g, m->key[i]);
                g.used[s] = 1, g.key[s] = m->key[i], g.mod[s] = m->mod[i], g.n++;
            }
        free(m->key), free(m->mod), free(m->used);
        *m = g;
    }
    size_t s = node_slot(m, id);
    if (m->used[s]) {
        if (overwrite) m->mod[s] = mod;
        return;
    }
    m->used[s] = 1, m->key[s] = id, m->mod[s] = mod, m->n++;
}

/* ---- CUPTI callbacks ------------------------------------------------------ */

static void CUPTIAPI buf_requested(uint8_t **buffer, size_t *size, size_t *max_records) {
    /* CUPTI wants ACTIVITY_RECORD_ALIGNMENT (8); a declined buffer (NULL)
     * makes CUPTI drop records, which the dropped count then reports. */
    *buffer = aligned_alloc(ACTIVITY_RECORD_ALIGNMENT, BUF_SIZE);
    *size = *buffer ? BUF_SIZE : 0;
    *max_records = 0;
}

static void raw_push(const Raw *r) {
    if (g_nraw == g_capraw) g_raw = xrealloc(g_raw, (g_capraw = g_capraw ? 2 * g_capraw : 4096) * sizeof *g_raw);
    g_raw[g_nraw++] = *r;
}

static const char *memcpy_name(uint8_t kind) {
    switch (kind) {
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOD: return "memcpy HtoD";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOH: return "memcpy DtoH";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOD: return "memcpy DtoD";
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOH: return "memcpy HtoH";
    case CUPTI_ACTIVITY_MEMCPY_KIND_PTOP: return "memcpy PtoP";
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOA: return "memcpy HtoA";
    case CUPTI_ACTIVITY_MEMCPY_KIND_ATOH: return "memcpy AtoH";
    case CUPTI_ACTIVITY_MEMCPY_KIND_ATOA: return "memcpy AtoA";
    case CUPTI_ACTIVITY_MEMCPY_KIND_ATOD: return "memcpy AtoD";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOA: return "memcpy DtoA";
    default: return "memcpy";
    }
}

/* One record into the gathered arrays (g_mu held). API records and any
 * other kind are read past. */
static void take_record(const CUpti_Activity *a) {
    Raw x = {.r = {.module = -1}};
    switch (a->kind) {
    case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL: {
        const KernelRec *k = (const KernelRec *)a;
        x.r.kind = CUPTI_REC_KERNEL;
        x.r.name = xstrdup(k->name ? k->name : "(unnamed kernel)");
        x.r.start = k->start, x.r.end = k->end;
        x.r.grid[0] = k->gridX, x.r.grid[1] = k->gridY, x.r.grid[2] = k->gridZ;
        x.r.block[0] = k->blockX, x.r.block[1] = k->blockY, x.r.block[2] = k->blockZ;
        x.r.registers = k->registersPerThread;
        x.r.smem_static = k->staticSharedMemory, x.r.smem_dynamic = k->dynamicSharedMemory;
        x.r.correlation = k->correlationId;
        x.r.graph_node = k->graphNodeId;
        x.r.stream = k->streamId;
        raw_push(&x);
        break;
    }
    case CUPTI_ACTIVITY_KIND_MEMCPY: {
        const CUpti_ActivityMemcpy6 *m = (const CUpti_ActivityMemcpy6 *)a;
        x.r.kind = CUPTI_REC_MEMCPY;
        x.r.name = xstrdup(memcpy_name(m->copyKind));
        x.r.start = m->start, x.r.end = m->end;
        x.r.bytes = m->bytes;
        x.r.correlation = m->correlationId;
        x.runtime_corr = m->runtimeCorrelationId;
        x.r.graph_node = m->graphNodeId;
        x.r.stream = m->streamId;
        raw_push(&x);
        break;
    }
    case CUPTI_ACTIVITY_KIND_MEMSET: {
        const CUpti_ActivityMemset4 *m = (const CUpti_ActivityMemset4 *)a;
        x.r.kind = CUPTI_REC_MEMSET;
        x.r.name = xstrdup("memset");
        x.r.start = m->start, x.r.end = m->end;
        x.r.bytes = m->bytes;
        x.r.correlation = m->correlationId;
        x.r.graph_node = m->graphNodeId;
        x.r.stream = m->streamId;
        raw_push(&x);
        break;
    }
    case CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION: {
        const CUpti_ActivityExternalCorrelation *e = (const CUpti_ActivityExternalCorrelation *)a;
        if (e->externalKind != CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0 || !e->externalId) break;
        if (g_next == g_capext) g_ext = xrealloc(g_ext, (g_capext = g_capext ? 2 * g_capext : 4096) * sizeof *g_ext);
        g_ext[g_next++] = (Ext){e->correlationId, e->externalId};
        break;
    }
    default: break;
    }
}

static void CUPTIAPI buf_completed(CUcontext ctx, uint32_t stream, uint8_t *buffer, size_t size, size_t valid) {
    (void)size;
    size_t dropped = 0;
    CUPTI_CHECK(cuptiActivityGetNumDroppedRecords(ctx, stream, &dropped));
    pthread_mutex_lock(&g_mu);
    g_dropped += dropped;
    CUpti_Activity *a = NULL;
    for (;;) {
        CUptiResult r = cuptiActivityGetNextRecord(buffer, valid, &a);
        if (r == CUPTI_ERROR_MAX_LIMIT_REACHED) break;
        if (r == CUPTI_ERROR_INVALID_KIND) { /* an incomplete record ends the buffer */
            g_dropped++;
            break;
        }
        if (r != CUPTI_SUCCESS) {
            pthread_mutex_unlock(&g_mu);
            die("cuptiActivityGetNextRecord failed at %s:%d: %s", __FILE__, __LINE__, cupti_str(r));
        }
        take_record(a);
    }
    pthread_mutex_unlock(&g_mu);
    free(buffer);
}

/* Resource callbacks, on the thread that makes the graph. */
static void CUPTIAPI on_resource(void *userdata, CUpti_CallbackDomain domain, CUpti_CallbackId cbid, const void *cbdata) {
    (void)userdata;
    if (domain != CUPTI_CB_DOMAIN_RESOURCE) return;
    if (cbid != CUPTI_CBID_RESOURCE_GRAPHNODE_CREATED && cbid != CUPTI_CBID_RESOURCE_GRAPHNODE_CLONED) return;
    const CUpti_ResourceData *rd = cbdata;
    const CUpti_GraphData *gd = rd ? rd->resourceDescriptor : NULL;
    if (!gd || !gd->node) return;
    uint64_t id = 0, orig = 0;
    CUPTI_CHECK(cuptiGetGraphNodeId(gd->node, &id));
    if (cbid == CUPTI_CBID_RESOURCE_GRAPHNODE_CLONED && gd->originalNode)
        CUPTI_CHECK(cuptiGetGraphNodeId(gd->originalNode, &orig));
    pthread_mutex_lock(&g_mu);
    if (cbid == CUPTI_CBID_RESOURCE_GRAPHNODE_CREATED) {
        /* A node made by capture or cudaGraphAdd*Node. Instantiation fires
         * CREATED for its copies too (before or after CLONED): an entry that
         * CLONED made is kept. */
        if (g_depth > 0) node_put(&g_nodes, id, g_stack[g_depth - 1], 0);
    } else {
        int mod = -1;
        if (orig && !node_get(&g_nodes, orig, &mod)) mod = -1;
        node_put(&g_nodes, id, mod, 1);
    }
    pthread_mutex_unlock(&g_mu);
}

/* ---- start / stop ------------------------------------------------------- */

static void clear_gathered(void) {
    for (size_t i = 0; i < g_nraw; i++) free(g_raw[i].r.name);
    g_nraw = 0;
    g_next = 0;
    g_dropped = 0;
}

/* Undoes a partial start: kinds[0..n-1] enabled, the subscriber if any. */
static void undo_start(int n) {
    for (int i = n - 1; i >= 0; i--) (void)cuptiActivityDisable(KINDS[i]);
    if (g_sub) {
        (void)cuptiEnableDomain(0, g_sub, CUPTI_CB_DOMAIN_RESOURCE);
        (void)cuptiUnsubscribe(g_sub);
        g_sub = NULL;
    }
}

int cupti_trace_start(void) {
    if (g_on) return err_set(ERR_RUNTIME, "CUPTI tracing already started");
    pthread_mutex_lock(&g_mu);
    clear_gathered();
    pthread_mutex_unlock(&g_mu);
    static int registered;   /* the buffer callbacks, once per process */
    const char *what = "cuptiActivityRegisterCallbacks";
    char buf[64];
    int n = 0;
    CUptiResult r = registered ? CUPTI_SUCCESS : cuptiActivityRegisterCallbacks(buf_requested, buf_completed);
    if (r == CUPTI_SUCCESS) {
        registered = 1;
        what = "cuptiSubscribe";
        r = cuptiSubscribe(&g_sub, on_resource, NULL);
        if (r != CUPTI_SUCCESS) g_sub = NULL;
    }
    if (r == CUPTI_SUCCESS) {
        what = "cuptiEnableCallback(GRAPHNODE_CREATED)";
        r = cuptiEnableCallback(1, g_sub, CUPTI_CB_DOMAIN_RESOURCE, CUPTI_CBID_RESOURCE_GRAPHNODE_CREATED);
    }
    if (r == CUPTI_SUCCESS) {
        what = "cuptiEnableCallback(GRAPHNODE_CLONED)";
        r = cuptiEnableCallback(1, g_sub, CUPTI_CB_DOMAIN_RESOURCE, CUPTI_CBID_RESOURCE_GRAPHNODE_CLONED);
    }
    for (; r == CUPTI_SUCCESS && n < NKINDS; n++) {
        snprintf(buf, sizeof buf, "cuptiActivityEnable(%s)", KIND_NAMES[n]);
        what = buf;
        r = cuptiActivityEnable(KINDS[n]);
    }
    if (r != CUPTI_SUCCESS) {
        undo_start(n);
        return err_set(ERR_RUNTIME, "CUPTI unavailable: %s: %s", what, cupti_str(r));
    }
    /* Modules still open from before the trace count too: they go to CUPTI's
     * stack now. They are the top of ours (each start pushes all). */
    pthread_mutex_lock(&g_mu);
    for (int i = 0; i < g_depth; i++)
        if (!g_pushed[i]) {
            CUPTI_CHECK(cuptiActivityPushExternalCorrelationId(CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0,
                                                               (uint64_t)g_stack[i] + 1));
            g_pushed[i] = 1;
        }
    pthread_mutex_unlock(&g_mu);
    g_on = 1;
    return 0;
}

/* Waits for the device, then has CUPTI hand over every buffer (forced: the
 * device is idle, so no record is left incomplete). Not under g_mu: the
 * completion callback may run inside the flush on this thread. */
static void flush_all(void) {
    CUDA_CHECK(cudaDeviceSynchronize());
    CUPTI_CHECK(cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED));
}

void cupti_trace_discard(void) {
    if (!g_on) return;
    flush_all();
    pthread_mutex_lock(&g_mu);
    clear_gathered();
    pthread_mutex_unlock(&g_mu);
}

static int cmp_ext(const void *a, const void *b) {
    const Ext *x = a, *y = b;
    return x->corr < y->corr ? -1 : x->corr > y->corr;
}

/* The module of correlation id c, or -1 (ext sorted by corr). */
static int ext_module(const Ext *ext, size_t n, uint32_t c) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ext[mid].corr < c) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && ext[lo].corr == c ? (int)(ext[lo].ext - 1) : -1;
}

static int cmp_rec(const void *a, const void *b) {
    const CuptiRec *x = a, *y = b;
    if (x->start != y->start) return x->start < y->start ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->correlation < y->correlation ? -1 : x->correlation > y->correlation;
}

int cupti_trace_stop(CuptiRec **recs, int *n, uint64_t *dropped) {
    *recs = NULL;
    *n = 0;
    *dropped = 0;
    if (!g_on) return err_set(ERR_RUNTIME, "CUPTI tracing was not started");
    flush_all();
    for (int i = NKINDS - 1; i >= 0; i--) CUPTI_CHECK(cuptiActivityDisable(KINDS[i]));
    CUPTI_CHECK(cuptiEnableCallback(0, g_sub, CUPTI_CB_DOMAIN_RESOURCE, CUPTI_CBID_RESOURCE_GRAPHNODE_CREATED));
    CUPTI_CHECK(cuptiEnableCallback(0, g_sub, CUPTI_CB_DOMAIN_RESOURCE, CUPTI_CBID_RESOURCE_GRAPHNODE_CLONED));
    CUPTI_CHECK(cuptiUnsubscribe(g_sub));
    g_sub = NULL;
    CUPTI_CHECK(cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED));
    size_t late = 0;
    CUPTI_CHECK(cuptiActivityGetNumDroppedRecords(NULL, 0, &late));
    g_on = 0;

    pthread_mutex_lock(&g_mu);
    if (g_nraw > (size_t)0x7fffffff) {
        pthread_mutex_unlock(&g_mu);
        die("CUPTI: %zu records in one trace", g_nraw);
    }
    qsort(g_ext, g_next, sizeof *g_ext, cmp_ext);
    CuptiRec *out = g_nraw ? xmalloc(g_nraw * sizeof *out) : NULL;
    for (size_t i = 0; i < g_nraw; i++) {
        const Raw *x = &g_raw[i];
        CuptiRec r = x->r;
        int mod = -1;
        if (!(r.graph_node && node_get(&g_nodes, r.graph_node, &mod) && mod >= 0)) {
            mod = ext_module(g_ext, g_next, r.correlation);
            if (mod < 0 && x->runtime_corr) mod = ext_module(g_ext, g_next, x->runtime_corr);
        }
        r.module = mod;
        out[i] = r;
    }
    *n = (int)g_nraw;
    *dropped = g_dropped + late;
    g_nraw = 0;   /* the names now belong to out */
    g_next = 0;
    g_dropped = 0;
    pthread_mutex_unlock(&g_mu);
    if (out) qsort(out, (size_t)*n, sizeof *out, cmp_rec);
    *recs = out;
    return 0;
}

void cupti_recs_free(CuptiRec *recs, int n) {
    for (int i = 0; i < n; i++) free(recs[i].name);
    free(recs);
}

/* ---- modules ------------------------------------------------------------ */

void cupti_module_push(int module) {
    if (module < 0) die("cupti_module_push: module id %d < 0", module);
    /* Outside a trace only our stack moves (CUPTI is not woken up for
     * nothing); cupti_trace_start hands the open entries over. */
    int to_cupti = g_on;
    if (to_cupti)
        CUPTI_CHECK(cuptiActivityPushExternalCorrelationId(CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0,
                                                           (uint64_t)module + 1));
    pthread_mutex_lock(&g_mu);
    if (g_depth == g_capstack) {
        g_capstack = g_capstack ? 2 * g_capstack : 64;
        g_stack = xrealloc(g_stack, (size_t)g_capstack * sizeof *g_stack);
        g_pushed = xrealloc(g_pushed, (size_t)g_capstack);
    }
    g_stack[g_depth] = module;
    g_pushed[g_depth++] = (unsigned char)to_cupti;
    pthread_mutex_unlock(&g_mu);
}

void cupti_module_pop(void) {
    pthread_mutex_lock(&g_mu);
    if (g_depth == 0) {
        pthread_mutex_unlock(&g_mu);
        die("cupti_module_pop: no module pushed");
    }
    int module = g_stack[--g_depth], pushed = g_pushed[g_depth];
    pthread_mutex_unlock(&g_mu);
    if (pushed) {
        uint64_t last = 0;
        CUPTI_CHECK(cuptiActivityPopExternalCorrelationId(CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0, &last));
        if (last != (uint64_t)module + 1)
            die("cupti_module_pop: CUPTI's stack gave external id %llu, expected %d + 1", (unsigned long long)last,
                module);
    }
}

const char *cupti_version(void) {
    static char buf[160];
    uint32_t v = 0;
    CUptiResult r = cuptiGetVersion(&v);
    if (r == CUPTI_SUCCESS)
        snprintf(buf, sizeof buf, "CUPTI API %u (built against %d, activity record %s)", v, CUPTI_API_VERSION,
                 KERNEL_REC_NAME);
    else
        snprintf(buf, sizeof buf, "CUPTI API unknown (%s; built against %d, activity record %s)", cupti_str(r),
                 CUPTI_API_VERSION, KERNEL_REC_NAME);
    return buf;
}
