/* backend_cuda: see backend_cuda.h. The ops of backend.h on device memory:
 * an Act's d is a device pointer to NHWC data in the engine's dtype, so a
 * map [B, C, H, W] and the sequence [B, H*W, C] share their bytes and
 * to_seq/to_map only relabel the shape. */
#include "backend_cuda.h"
#include "attn_select.h"
#include "conv.h"
#include "cuda_check.h"
#include "cuda_ops.h"
#include "linear.h"
#include <cuda_runtime.h>
#include <map>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>
extern "C" {
#include "half.h"
}

namespace {

/* Host float32 -> dt, n values. */
void host_to_dt(const float *x, void *y, DType dt, int64_t n) {
    if (dt == DTYPE_F32) { memcpy(y, x, (size_t)n * 4); return; }
    uint16_t *o = (uint16_t *)y;
    if (dt == DTYPE_F16) {
#pragma omp parallel for if (n > (1 << 20))
        for (int64_t i = 0; i < n; i++) o[i] = f32_to_half(x[i]);
    } else {
#pragma omp parallel for if (n > (1 << 20))
        for (int64_t i = 0; i < n; i++) o[i] = f32_to_bf16(x[i]);
    }
}

struct Staging { /* pinned host buffer the H2D copies of one forward read from */
    void *p = nullptr;
    size_t cap = 0;
};

} // namespace

struct CudaEngine {
    DType dt;
    cudaStream_t s;
    CudnnConv *conv;
    LtLinear *lt;
    AttnSelect *attn;          /* which attention path each shape runs (attn_select.h) */
    const Weights *w;          /* names for lookup (borrowed) */
    std::vector<void *> dw;    /* device pointer of each weight, index as w->names */
    void *wpool = nullptr;
    size_t wbytes = 0;
    /* the activation arena: cached blocks by size, and the size of each live pointer */
    std::multimap<size_t, void *> free_blocks;
    std::map<void *, size_t> live;
    size_t held = 0, live_bytes = 0, peak = 0;
    std::vector<Staging> staging;
    size_t staging_next = 0;
    void *host_f32 = nullptr;  /* pinned download buffer */
    size_t host_f32_cap = 0;
    Act out = {};              /* keep_output's copy (outside the arena) */
    char desc[512];
    Backend be;
};

namespace {

CudaEngine *E(Backend *be) { return (CudaEngine *)be->ctx; }

void *arena_alloc(CudaEngine *e, size_t bytes) {
    size_t sz = (bytes + 511) & ~(size_t)511;
    if (sz == 0) sz = 512;
    void *p;
    auto it = e->free_blocks.find(sz);
    if (it != e->free_blocks.end()) {
        p = it->second;
        e->free_blocks.erase(it);
    } else {
        CUDA_CHECK(cudaMalloc(&p, sz));
        e->held += sz;
    }
    e->live[p] = sz;
    e->live_bytes += sz;
    if (e->live_bytes > e->peak) e->peak = e->live_bytes;
    return p;
}

void arena_free(CudaEngine *e, void *p) {
    if (!p) return;
    auto it = e->live.find(p);
    if (it == e->live.end()) die("internal: cuda arena: freeing %p it does not hold", p);
    e->free_blocks.emplace(it->second, p);
    e->live_bytes -= it->second;
    e->live.erase(it);
}

Act act_new(CudaEngine *e, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    Act a = {};
    a.ndim = ndim;
    int64_t d[4] = {d0, d1, d2, d3};
    for (int i = 0; i < ndim; i++) a.shape[i] = d[i];
    a.d = arena_alloc(e, (size_t)act_numel(&a) * dtype_size(e->dt));
    return a;
}

Act act_like(CudaEngine *e, const Act *x) { return act_new(e, x->ndim, x->shape[0], x->shape[1], x->shape[2], x->shape[3]); }

/* A pinned buffer of at least bytes for this forward's next upload. Within
 * one forward each upload has its own slot; begin() waits for the previous
 * forward's copies before the slots are written again. */
void *staging_get(CudaEngine *e, size_t bytes) {
    if (e->staging_next == e->staging.size()) e->staging.push_back(Staging());
    Staging &st = e->staging[e->staging_next++];
    if (st.cap < bytes) {
        if (st.p) CUDA_CHECK(cudaFreeHost(st.p));
        CUDA_CHECK(cudaMallocHost(&st.p, bytes));
        st.cap = bytes;
    }
    return st.p;
}

/* Copies bytes of host data to new device memory of the arena. */
void *upload(CudaEngine *e, const void *host, size_t bytes) {
    void *st = staging_get(e, bytes);
    memcpy(st, host, bytes);
    void *d = arena_alloc(e, bytes);
    CUDA_CHECK(cudaMemcpyAsync(d, st, bytes, cudaMemcpyHostToDevice, e->s));
    return d;
}

int weight_index(const CudaEngine *e, const char *prefix, const char *leaf) { return weights_slot(e->w, prefix, leaf); }

const void *W(const CudaEngine *e, const char *prefix, const char *leaf) { return e->dw[weight_index(e, prefix, leaf)]; }

/* ---- the ops of backend.h ---- */

void be_begin(Backend *be) {
    CudaEngine *e = E(be);
    if (!cuda_capturing(e->s)) CUDA_CHECK(cudaStreamSynchronize(e->s)); /* the staging slots are free again */
    e->staging_next = 0;
}

Act be_from_host(Backend *be, const Tensor *t) {
    CudaEngine *e = E(be);
    Act a = {};
    a.ndim = t->ndim;
    memcpy(a.shape, t->shape, sizeof a.shape);
    int64_t n = act_numel(&a);
    size_t bytes = (size_t)n * dtype_size(e->dt);
    void *st = staging_get(e, bytes ? bytes : 1);
    if (t->ndim == 4) { /* NCHW -> NHWC while converting */
        int64_t B = t->shape[0], C = t->shape[1], HW = t->shape[2] * t->shape[3];
        float *tmp = (float *)xmalloc((size_t)n * sizeof(float));
        for (int64_t b = 0; b < B; b++)
            for (int64_t c = 0; c < C; c++)
                for (int64_t p = 0; p < HW; p++) tmp[(b * HW + p) * C + c] = t->d[(b * C + c) * HW + p];
        host_to_dt(tmp, st, e->dt, n);
        free(tmp);
    } else {
        host_to_dt(t->d, st, e->dt, n);
    }
    a.d = arena_alloc(e, bytes);
    if (bytes) CUDA_CHECK(cudaMemcpyAsync(a.d, st, bytes, cudaMemcpyHostToDevice, e->s));
    return a;
}

void be_to_host(Backend *be, const Act *x, Tensor *out, int *owned) {
    CudaEngine *e = E(be);
    int64_t n = act_numel(x);
    size_t bytes = (size_t)n * sizeof(float);
    float *d32 = (float *)arena_alloc(e, bytes);
    cuk_convert(x->d, e->dt, d32, DTYPE_F32, n, e->s);
    if (e->host_f32_cap < bytes) {
        if (e->host_f32) CUDA_CHECK(cudaFreeHost(e->host_f32));
        CUDA_CHECK(cudaMallocHost(&e->host_f32, bytes));
        e->host_f32_cap = bytes;
    }
    CUDA_CHECK(cudaMemcpyAsync(e->host_f32, d32, bytes, cudaMemcpyDeviceToHost, e->s));
    CUDA_CHECK(cudaStreamSynchronize(e->s));
    arena_free(e, d32);
    const float *h = (const float *)e->host_f32;
    *out = tensor_new(x->ndim, x->shape[0], x->shape[1], x->shape[2], x->shape[3]);
    if (x->ndim == 4) { /* NHWC -> NCHW */
        int64_t B = x->shape[0], C = x->shape[1], HW = x->shape[2] * x->shape[3];
        for (int64_t b = 0; b < B; b++)
            for (int64_t p = 0; p < HW; p++)
                for (int64_t c = 0; c < C; c++) out->d[(b * C + c) * HW + p] = h[(b * HW + p) * C + c];
    } else {
        memcpy(out->d, h, bytes);
    }
    *owned = 1;
}

Act be_copy(Backend *be, const Act *x) {
    CudaEngine *e = E(be);
    Act y = act_like(e, x);
    size_t bytes = (size_t)act_numel(x) * dtype_size(e->dt);
    if (bytes) CUDA_CHECK(cudaMemcpyAsync(y.d, x->d, bytes, cudaMemcpyDeviceToDevice, e->s));
    return y;
}

void be_release(Backend *be, Act *x) {
    arena_free(E(be), x->d);
    memset(x, 0, sizeof *x);
}

Act be_linear(Backend *be, const char *prefix, const Act *x, int64_t N, int bias, const Act *res) {
    CudaEngine *e = E(be);
    int64_t K = x->shape[x->ndim - 1], rows = act_numel(x) / K;
    Act y = *x;
    y.shape[x->ndim - 1] = N;
    y.d = arena_alloc(e, (size_t)(rows * N) * dtype_size(e->dt));
    /* res: the same shape, or the NHWC map whose sequence y is: the same bytes either way */
    lt_linear(e->lt, x->d, rows, K, W(e, prefix, "weight"), bias ? W(e, prefix, "bias") : NULL, N,
              res ? res->d : NULL, y.d, e->dt);
    return y;
}

Act be_conv(Backend *be, const char *prefix, const Act *x, int cout, int k, int stride, const Act *res) {
    CudaEngine *e = E(be);
    int64_t B = x->shape[0], Cin = x->shape[1], H = x->shape[2], Wd = x->shape[3], pad = (k - 1) / 2;
    int64_t Ho = (H + 2 * pad - k) / stride + 1, Wo = (Wd + 2 * pad - k) / stride + 1;
    Act y = act_new(e, 4, B, cout, Ho, Wo);
    cudnn_conv_forward(e->conv, x->d, B, H, Wd, Cin, W(e, prefix, "weight"), W(e, prefix, "bias"), cout, k, stride,
                       res ? res->d : NULL, y.d, e->dt);
    return y;
}

void be_group_norm(Backend *be, const char *prefix, Act *x, int groups, float eps, int silu, const Act *add) {
    CudaEngine *e = E(be);
    int64_t B = x->shape[0], C = x->shape[1], HW = act_numel(x) / (B * C);
    cuk_group_norm(x->d, add ? add->d : NULL, x->d, e->dt, B, HW, C, groups, W(e, prefix, "weight"),
                   W(e, prefix, "bias"), eps, silu, e->s);
}

/* The same norm into a new act: one read of x for the statistics, one read
 * and one write for the result, where a copy and an in-place norm took five. */
Act be_group_norm_out(Backend *be, const char *prefix, const Act *x, int groups, float eps, int silu, const Act *add) {
    CudaEngine *e = E(be);
    int64_t B = x->shape[0], C = x->shape[1], HW = act_numel(x) / (B * C);
    Act y = act_like(e, x);
    cuk_group_norm(x->d, add ? add->d : NULL, y.d, e->dt, B, HW, C, groups, W(e, prefix, "weight"),
                   W(e, prefix, "bias"), eps, silu, e->s);
    return y;
}

Act be_layer_norm(Backend *be, const char *prefix, const Act *x, float eps) {
    CudaEngine *e = E(be);
    Act y = act_like(e, x);
    int64_t C = x->shape[x->ndim - 1];
    cuk_layer_norm(x->d, y.d, e->dt, act_numel(x) / C, C, W(e, prefix, "weight"), W(e, prefix, "bias"), eps, e->s);
    return y;
}

Act be_attention(Backend *be, const Act *q, const Act *k, const Act *v, int heads) {
    CudaEngine *e = E(be);
    Act o = act_like(e, q);
    int64_t C = q->shape[2];
    /* cuDNN's fused attention or our kernels, chosen per shape at its first (eager) use */
    attn_select_run(e->attn, q->d, C, k->d, C, v->d, C, o.d, C, e->dt, q->shape[0], q->shape[1], k->shape[1], heads,
                    (int)(C / heads));
    return o;
}

Act be_geglu(Backend *be, const Act *h) {
    CudaEngine *e = E(be);
    int64_t I2 = h->shape[h->ndim - 1], rows = act_numel(h) / I2;
    Act y = *h;
    y.shape[h->ndim - 1] = I2 / 2;
    y.d = arena_alloc(e, (size_t)(rows * (I2 / 2)) * dtype_size(e->dt));
    cuk_geglu(h->d, y.d, e->dt, rows, I2 / 2, e->s);
    return y;
}

void be_add(Backend *be, Act *y, const Act *x, float div) {
    CudaEngine *e = E(be);
    cuk_add(y->d, x->d, e->dt, act_numel(y), 1.0f / div, e->s);
}

void be_silu(Backend *be, Act *x) { cuk_silu(x->d, E(be)->dt, act_numel(x), E(be)->s); }

void be_affine(Backend *be, Act *x, float alpha, float beta) {
    cuk_affine(x->d, E(be)->dt, act_numel(x), alpha, beta, E(be)->s);
}

Act be_upsample2x(Backend *be, const Act *x) {
    CudaEngine *e = E(be);
    int64_t B = x->shape[0], C = x->shape[1], H = x->shape[2], Wd = x->shape[3];
    Act y = act_new(e, 4, B, C, 2 * H, 2 * Wd);
    cuk_upsample2x(x->d, y.d, e->dt, B, H, Wd, C, e->s);
    return y;
}

Act be_concat(Backend *be, const Act *a, const Act *b) {
    CudaEngine *e = E(be);
    if (a->ndim == 4) { /* channels are the last dim in NHWC */
        int64_t B = a->shape[0], H = a->shape[2], Wd = a->shape[3], Ca = a->shape[1], Cb = b->shape[1];
        Act y = act_new(e, 4, B, Ca + Cb, H, Wd);
        cuk_concat_last(a->d, Ca, b->d, Cb, y.d, e->dt, B * H * Wd, e->s);
        return y;
    }
    int64_t rows = a->shape[0], Ca = a->shape[1], Cb = b->shape[1];
    Act y = act_new(e, 2, rows, Ca + Cb, 0, 0);
    cuk_concat_last(a->d, Ca, b->d, Cb, y.d, e->dt, rows, e->s);
    return y;
}

Act be_to_seq(Backend *be, Act *x) {
    (void)be;
    Act y = *x; /* NHWC: the map's bytes are the sequence */
    y.ndim = 3;
    y.shape[0] = x->shape[0];
    y.shape[1] = x->shape[2] * x->shape[3];
    y.shape[2] = x->shape[1];
    y.shape[3] = 0;
    memset(x, 0, sizeof *x);
    return y;
}

Act be_to_map(Backend *be, Act *x, int64_t H, int64_t Wd) {
    (void)be;
    Act y = *x;
    y.ndim = 4;
    y.shape[0] = x->shape[0];
    y.shape[1] = x->shape[2];
    y.shape[2] = H;
    y.shape[3] = Wd;
    memset(x, 0, sizeof *x);
    return y;
}

Act be_timestep_embedding(Backend *be, const float *t, int64_t n, int dim, int flip, float shift) {
    CudaEngine *e = E(be);
    float *dt32 = (float *)upload(e, t, (size_t)n * sizeof(float));
    Act y = act_new(e, 2, n, dim, 0, 0);
    cuk_timestep_embedding(dt32, n, dim, flip, shift, y.d, e->dt, e->s);
    arena_free(e, dt32); /* stream order keeps it alive until the kernel has read it */
    return y;
}

/* The first forward allocates the buffer; a captured forward only copies into it. */
void be_keep_output(Backend *be, const Act *y) {
    CudaEngine *e = E(be);
    size_t bytes = (size_t)act_numel(y) * dtype_size(e->dt);
    if (!e->out.d || (size_t)act_numel(&e->out) * dtype_size(e->dt) != bytes) {
        if (cuda_capturing(e->s)) die("internal: cuda engine: first output kept inside a graph capture");
        if (e->out.d) CUDA_CHECK(cudaFree(e->out.d));
        CUDA_CHECK(cudaMalloc(&e->out.d, bytes));
    }
    void *d = e->out.d;
    e->out = *y;
    e->out.d = d;
    CUDA_CHECK(cudaMemcpyAsync(d, y->d, bytes, cudaMemcpyDeviceToDevice, e->s));
}

} // namespace

extern "C" int cuda_engine_output(CudaEngine *e, Tensor *out) {
    if (!e->out.d) return err_set(ERR_RUNTIME, "cuda engine: no forward output kept yet");
    int owned;
    be_to_host(&e->be, &e->out, out, &owned);
    return 0;
}

extern "C" void cuda_engine_clear_output(CudaEngine *e) {
    if (e->out.d) CUDA_CHECK(cudaMemsetAsync(e->out.d, 0, (size_t)act_numel(&e->out) * dtype_size(e->dt), e->s));
}

extern "C" int cuda_engine_new(CudaEngine **out, const Weights *w, const ModuleTree *teacher, DType dt) {
    *out = NULL;
    int n = 0;
    cudaError_t ce = cudaGetDeviceCount(&n);
    if (ce != cudaSuccess || n == 0)
        return err_set(ERR_RUNTIME, "no CUDA device (%s)", ce != cudaSuccess ? cudaGetErrorString(ce) : "0 devices");
    CUDA_CHECK(cudaSetDevice(0));
    CudaEngine *e = new CudaEngine();
    e->dt = dt;
    e->w = w;
    CUDA_CHECK(cudaStreamCreateWithFlags(&e->s, cudaStreamNonBlocking));
    e->conv = cudnn_conv_new(e->s);
    e->lt = lt_linear_new(e->s);
    e->attn = attn_select_new(e->s);

    /* one device block for every weight, each 256-byte aligned */
    std::vector<size_t> off((size_t)w->n);
    size_t es = dtype_size(dt);
    for (int i = 0; i < w->n; i++) {
        off[(size_t)i] = e->wbytes;
        e->wbytes += ((size_t)w->numel[i] * es + 255) & ~(size_t)255;
    }
    CUDA_CHECK(cudaMalloc(&e->wpool, e->wbytes ? e->wbytes : 256));
    e->dw.resize((size_t)w->n);
    /* shapes from the tree: 4-D tensors are convolution filters, [O, I, kh, kw] -> KRSC [O, kh, kw, I] */
    std::vector<const TensorSpec *> spec((size_t)w->n, nullptr);
    for (int t = 0; t < teacher->n_tensors; t++) {
        const TensorSpec *ts = &teacher->t[t];
        int lo = 0, hi = w->n - 1;
        while (lo <= hi) {
            int mid = (lo + hi) / 2, c = strcmp(w->names[mid], ts->src);
            if (!c) { spec[(size_t)mid] = ts; break; }
            if (c < 0) lo = mid + 1;
            else hi = mid - 1;
        }
    }
    size_t chunk = 64u << 20;
    void *pin;
    CUDA_CHECK(cudaMallocHost(&pin, chunk));
    for (int i = 0; i < w->n; i++) {
        int64_t cnt = w->numel[i];
        const float *src = w->data[i];
        float *perm = NULL;
        const TensorSpec *ts = spec[(size_t)i];
        if (ts && ts->ndim == 4 && (ts->shape[2] > 1 || ts->shape[3] > 1)) {
            int64_t O = ts->shape[0], I = ts->shape[1], R = ts->shape[2] * ts->shape[3];
            perm = (float *)xmalloc((size_t)cnt * sizeof(float));
            for (int64_t o = 0; o < O; o++)
                for (int64_t c = 0; c < I; c++)
                    for (int64_t r = 0; r < R; r++) perm[(o * R + r) * I + c] = src[(o * I + c) * R + r];
            src = perm;
        }
        e->dw[(size_t)i] = (char *)e->wpool + off[(size_t)i];
        int64_t per = (int64_t)(chunk / es);
        for (int64_t at = 0; at < cnt; at += per) { /* through one pinned chunk, synchronously */
            int64_t m = cnt - at < per ? cnt - at : per;
            host_to_dt(src + at, pin, dt, m);
            CUDA_CHECK(cudaMemcpy((char *)e->dw[(size_t)i] + (size_t)at * es, pin, (size_t)m * es,
                                  cudaMemcpyHostToDevice));
        }
        free(perm);
    }
    CUDA_CHECK(cudaFreeHost(pin));
    CUDA_CHECK(cudaDeviceSynchronize()); /* the weights are in place before any stream uses them */

    cudaDeviceProp p;
    CUDA_CHECK(cudaGetDeviceProperties(&p, 0));
    int drv = 0, rt = 0;
    cudaDriverGetVersion(&drv);
    cudaRuntimeGetVersion(&rt);
    snprintf(e->desc, sizeof e->desc, "%s, sm_%d%d, driver CUDA %d.%d, runtime %d.%d, %s", p.name, p.major, p.minor,
             drv / 1000, drv % 1000 / 10, rt / 1000, rt % 1000 / 10, cudnn_conv_version());
    e->be = Backend{"cuda", e, be_begin, be_from_host, be_to_host, be_copy, be_release, be_linear, be_conv,
                    be_group_norm, be_group_norm_out, be_layer_norm, be_attention, be_geglu, NULL, be_add, be_silu,
                    be_affine, be_upsample2x, be_concat, be_to_seq, be_to_map, be_timestep_embedding, be_keep_output};
    *out = e;
    return 0;
}

extern "C" void cuda_engine_free(CudaEngine *e) {
    if (!e) return;
    CUDA_CHECK(cudaStreamSynchronize(e->s));
    if (!e->live.empty()) fprintf(stderr, "unetlab: internal: %zu activation buffers still live at engine free\n", e->live.size());
    for (auto &kv : e->free_blocks) CUDA_CHECK(cudaFree(kv.second));
    for (auto &kv : e->live) CUDA_CHECK(cudaFree(kv.first));
    for (auto &st : e->staging)
        if (st.p) CUDA_CHECK(cudaFreeHost(st.p));
    if (e->host_f32) CUDA_CHECK(cudaFreeHost(e->host_f32));
    if (e->out.d) CUDA_CHECK(cudaFree(e->out.d));
    CUDA_CHECK(cudaFree(e->wpool));
    cudnn_conv_free(e->conv);
    lt_linear_free(e->lt);
    attn_select_free(e->attn); /* UNETLAB_LIB_LOG=1: its summary line, "attention: N shapes: ..." */
    cuk_group_norm_release(e->s);
    CUDA_CHECK(cudaStreamDestroy(e->s));
    delete e;
}

extern "C" Backend *cuda_engine_backend(CudaEngine *e) { return &e->be; }
extern "C" cudaStream_t cuda_engine_stream(const CudaEngine *e) { return e->s; }
extern "C" DType cuda_engine_dtype(const CudaEngine *e) { return e->dt; }
extern "C" const char *cuda_engine_describe(const CudaEngine *e) { return e->desc; }

extern "C" void cuda_engine_mem(const CudaEngine *e, CudaMemStats *m) {
    m->weights = e->wbytes;
    m->arena = e->held;
    m->arena_peak = e->peak;
    m->workspace = cudnn_conv_workspace_bytes(e->conv) + lt_linear_workspace_bytes(e->lt) +
                   attn_select_workspace_bytes(e->attn);
    size_t fr = 0, tot = 0;
    CUDA_CHECK(cudaMemGetInfo(&fr, &tot));
    m->device_used = tot - fr;
    m->device_total = tot;
}

extern "C" void cuda_engine_reset_peak(CudaEngine *e) { e->peak = e->live_bytes; }

extern "C" void cuda_engine_trim(CudaEngine *e) {
    CUDA_CHECK(cudaStreamSynchronize(e->s));
    for (auto &kv : e->free_blocks) {
        CUDA_CHECK(cudaFree(kv.second));
        e->held -= kv.first;
    }
    e->free_blocks.clear();
}

extern "C" const char *cuda_engine_attention(CudaEngine *e) { return attn_select_describe(e->attn); }
