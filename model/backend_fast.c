/* backend_fast: the fast CPU engine (see backend.h): NHWC maps, so that a map
 * [B, C, H, W] and its token sequence [B, H*W, C] are the same bytes and
 * to_seq/to_map move nothing; convolutions and linears on oneDNN
 * (kernels/dnnl), everything else on kernels/cpu/fastops.c; activations from
 * a pool of freed blocks reused by exact size, so that a forward after the
 * first allocates (and page-faults) almost nothing. Judged by the reference
 * backend (backend_cpu.c): tests/test_fastops.c op by op, tests/test_fixtures.c
 * against diffusers. */
#include "backend.h"
#include "err.h"
#include "ops.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static CpuEngine g_engine = CPU_FAST;
static DType g_dtype = DTYPE_F32;

#ifdef UNETLAB_DNNL
#include "dnn.h"
#include "fastops.h"

enum { POOL_MAX = 96 }; /* free blocks kept; beyond that the oldest is freed */
typedef struct {
    const Weights *w;
    Dnn *dnn;
    struct { void *p; size_t bytes; } free[POOL_MAX];
    int n_free;
    Backend be;
} Fast;

static void *pool_get(Fast *f, size_t bytes) {
    for (int i = f->n_free - 1; i >= 0; i--)
        if (f->free[i].bytes == bytes) {
            void *p = f->free[i].p;
            memmove(&f->free[i], &f->free[i + 1], (size_t)(f->n_free - i - 1) * sizeof f->free[0]);
            f->n_free--;
            return p;
        }
    return xmalloc_big(bytes);
}

static void pool_put(Fast *f, void *p, size_t bytes) {
    if (f->n_free == POOL_MAX) {
        free(f->free[0].p);
        memmove(&f->free[0], &f->free[1], (size_t)(POOL_MAX - 1) * sizeof f->free[0]);
        f->n_free--;
    }
    f->free[f->n_free].p = p;
    f->free[f->n_free++].bytes = bytes;
}

static Fast *F(Backend *be) { return be->ctx; }

static Act act_new(Backend *be, int ndim, const int64_t *shape) {
    Act a = {.ndim = ndim};
    memcpy(a.shape, shape, sizeof a.shape);
    a.d = pool_get(F(be), (size_t)act_numel(&a) * sizeof(float));
    return a;
}

static void release(Backend *be, Act *x) {
    if (x->d) pool_put(F(be), x->d, (size_t)act_numel(x) * sizeof(float));
    memset(x, 0, sizeof *x);
}

/* x's shape with the last dim n: a new act (linear, GEGLU). */
static Act act_last(Backend *be, const Act *x, int64_t n) {
    int64_t shape[4];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = n;
    return act_new(be, x->ndim, shape);
}

static const float *weight(Backend *be, const char *prefix, const char *leaf) {
    const float *p = F(be)->w->data[weights_slot(F(be)->w, prefix, leaf)];
    if (!p) die("internal: weight '%s.%s' was handed to the CPU engine", prefix, leaf);
    return p;
}

/* A matrix for oneDNN: its identity (its slot in the weights) and its data;
 * release() frees the float32 data once oneDNN holds its copy, when the
 * engine owns the weights. */
typedef struct {
    int i;
    const void *key;
    const float *data;
} Mat;

static Mat mat(Backend *be, const char *prefix) {
    Weights *w = (Weights *)F(be)->w;
    int i = weights_slot(w, prefix, "weight");
    return (Mat){i, &w->data[i], w->data[i]};
}

static void mat_done(Backend *be, const Mat *m) {
    Weights *w = (Weights *)F(be)->w;
    if (w->engine_owns && w->data[m->i]) {
        free(w->data[m->i]);
        w->data[m->i] = NULL;
    }
}

static void begin(Backend *be) { (void)be; }

/* Maps cross in PyTorch's NCHW and live as NHWC; other shapes are the same bytes. */
static Act from_host(Backend *be, const Tensor *t) {
    Act a = act_new(be, t->ndim, t->shape);
    if (t->ndim == 4) op_nchw_to_nlc(t->d, t->shape[0], t->shape[1], t->shape[2] * t->shape[3], a.d);
    else memcpy(a.d, t->d, (size_t)act_numel(&a) * sizeof(float));
    return a;
}

static void to_host(Backend *be, const Act *x, Tensor *out, int *owned) {
    (void)be;
    memset(out, 0, sizeof *out);
    out->ndim = x->ndim;
    memcpy(out->shape, x->shape, sizeof out->shape);
    if (x->ndim == 4) {
        out->d = xmalloc((size_t)act_numel(x) * sizeof(float));
        op_nlc_to_nchw(x->d, x->shape[0], x->shape[1], x->shape[2] * x->shape[3], out->d);
        *owned = 1;
    } else {
        out->d = x->d;
        *owned = 0;
    }
}

static Act copy(Backend *be, const Act *x) {
    Act y = act_new(be, x->ndim, x->shape);
    memcpy(y.d, x->d, (size_t)act_numel(x) * sizeof(float));
    return y;
}

/* res of a linear is a tensor of y's shape or the NHWC map of y's sequence: the same bytes either way. */
static Act linear(Backend *be, const char *prefix, const Act *x, int64_t N, int bias, const Act *res) {
    int64_t K = x->shape[x->ndim - 1], M = act_numel(x) / K;
    Act y = act_last(be, x, N);
    Mat m = mat(be, prefix);
    dnn_linear(F(be)->dnn, m.key, m.data, bias ? weight(be, prefix, "bias") : NULL, M, K, N, x->d, res ? res->d : NULL,
               y.d);
    mat_done(be, &m);
    return y;
}

static Act conv(Backend *be, const char *prefix, const Act *x, int cout, int k, int stride, const Act *res) {
    int64_t B = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3], pad = (k - 1) / 2;
    int64_t shape[4] = {B, cout, (H + 2 * pad - k) / stride + 1, (W + 2 * pad - k) / stride + 1};
    Act y = act_new(be, 4, shape);
    Mat m = mat(be, prefix);
    dnn_conv(F(be)->dnn, m.key, m.data, weight(be, prefix, "bias"), B, C, H, W, cout, k, stride, x->d,
             res ? res->d : NULL, y.d);
    mat_done(be, &m);
    return y;
}

static void group_norm(Backend *be, const char *prefix, Act *x, int groups, float eps, int silu, const Act *add) {
    int64_t B = x->shape[0], C = x->shape[1], HW = act_numel(x) / (B * C);
    fop_group_norm(x->d, B, HW, C, groups, weight(be, prefix, "weight"), weight(be, prefix, "bias"), eps, silu,
                   add ? add->d : NULL);
}

static Act layer_norm(Backend *be, const char *prefix, const Act *x, float eps) {
    Act y = act_new(be, x->ndim, x->shape);
    int64_t C = x->shape[x->ndim - 1];
    fop_layer_norm(x->d, act_numel(x) / C, C, weight(be, prefix, "weight"), weight(be, prefix, "bias"), eps, y.d);
    return y;
}

static Act attention(Backend *be, const Act *q, const Act *k, const Act *v, int heads) {
    Act o = act_new(be, q->ndim, q->shape);
    fop_attention(q->d, k->d, v->d, q->shape[0], q->shape[1], k->shape[1], q->shape[2], heads, o.d);
    return o;
}

static Act geglu(Backend *be, const Act *h) {
    int64_t I2 = h->shape[h->ndim - 1];
    Act y = act_last(be, h, I2 / 2);
    fop_geglu(h->d, act_numel(h) / I2, I2 / 2, y.d);
    return y;
}

static Act linear_geglu(Backend *be, const char *prefix, const Act *x, int64_t I) {
    int64_t K = x->shape[x->ndim - 1], M = act_numel(x) / K;
    Act y = act_last(be, x, I);
    Mat m = mat(be, prefix);
    dnn_linear_geglu(F(be)->dnn, m.key, m.data, weight(be, prefix, "bias"), M, K, I, x->d, y.d);
    mat_done(be, &m);
    return y;
}

static void add(Backend *be, Act *y, const Act *x, float div) { (void)be; fop_add(y->d, x->d, act_numel(y), div); }
static void silu(Backend *be, Act *x) { (void)be; fop_silu(x->d, act_numel(x)); }
static void affine(Backend *be, Act *x, float alpha, float beta) { (void)be; fop_affine(x->d, act_numel(x), alpha, beta); }

static Act upsample2x(Backend *be, const Act *x) {
    int64_t shape[4] = {x->shape[0], x->shape[1], 2 * x->shape[2], 2 * x->shape[3]};
    Act y = act_new(be, 4, shape);
    fop_upsample2x(x->d, x->shape[0], x->shape[2], x->shape[3], x->shape[1], y.d);
    return y;
}

/* Maps: channels, the last NHWC dim; 2-D rows: the last dim. Both are rows of a matrix. */
static Act concat(Backend *be, const Act *a, const Act *b) {
    int cd = a->ndim == 4 ? 1 : a->ndim - 1;
    int64_t shape[4];
    memcpy(shape, a->shape, sizeof shape);
    shape[cd] += b->shape[cd];
    Act y = act_new(be, a->ndim, shape);
    fop_concat(a->d, a->shape[cd], b->d, b->shape[cd], act_numel(a) / a->shape[cd], y.d);
    return y;
}

static Act to_seq(Backend *be, Act *x) {
    (void)be;
    Act y = {.d = x->d, .ndim = 3, .shape = {x->shape[0], x->shape[2] * x->shape[3], x->shape[1]}};
    memset(x, 0, sizeof *x);
    return y;
}

static Act to_map(Backend *be, Act *x, int64_t H, int64_t W) {
    (void)be;
    Act y = {.d = x->d, .ndim = 4, .shape = {x->shape[0], x->shape[2], H, W}};
    memset(x, 0, sizeof *x);
    return y;
}

static Act timestep_embedding(Backend *be, const float *t, int64_t n, int dim, int flip, float shift) {
    int64_t shape[4] = {n, dim, 0, 0};
    Act y = act_new(be, 2, shape);
    op_timestep_embedding(t, n, dim, flip, shift, y.d);
    return y;
}

static void fast_free(void *p) {
    Fast *f = p;
    for (int i = 0; i < f->n_free; i++) free(f->free[i].p);
    dnn_free(f->dnn);
    free(f);
}

Backend *backend_fast(const Weights *w, DType dt) {
    Weights *mw = (Weights *)w; /* the engine is a cache of the weights' other form, kept with them */
    if (!mw->engine[dt]) {
        Fast *f = xcalloc(1, sizeof *f);
        f->w = w;
        f->dnn = dnn_new(dt);
        f->be = (Backend){"cpu", f, begin, from_host, to_host, copy, release, linear, conv, group_norm, NULL,
                          layer_norm, attention, geglu, linear_geglu, add, silu, affine, upsample2x, concat, to_seq,
                          to_map, timestep_embedding, NULL};
        mw->engine[dt] = f;
        mw->engine_free = fast_free;
    }
    return &((Fast *)mw->engine[dt])->be;
}

int cpu_fast_built(void) { return 1; }
int cpu_bf16_native(void) { return dnn_bf16_native(); }
static const char *fast_describe(void) { return dnn_describe(); }
#else
Backend *backend_fast(const Weights *w, DType dt) { (void)w; (void)dt; return NULL; }
int cpu_fast_built(void) { return 0; }
int cpu_bf16_native(void) { return 0; }
static const char *fast_describe(void) { return "built without oneDNN"; }
#endif

void cpu_engine_set(CpuEngine e, DType dt) {
    g_engine = cpu_fast_built() ? e : CPU_REF;
    g_dtype = g_engine == CPU_REF ? DTYPE_F32 : dt;
}

const char *cpu_engine_name(void) { return g_engine == CPU_FAST ? "cpu" : "cpu-ref"; }

const char *cpu_engine_describe(void) {
    static char buf[160];
    if (g_engine == CPU_FAST)
        snprintf(buf, sizeof buf, "CPU, fast engine (%s), %s", fast_describe(), dtype_name(g_dtype));
    else
        snprintf(buf, sizeof buf, "CPU, reference engine (plain loops%s%s), fp32", cpu_fast_built() ? "" : "; ",
                 cpu_fast_built() ? "" : fast_describe());
    return buf;
}

Backend *cpu_backend(const Weights *w, Backend *ref) {
    if (g_engine == CPU_FAST) return backend_fast(w, g_dtype);
    *ref = backend_cpu(w);
    return ref;
}
