/* dnn: see dnn.h. oneDNN's C API (2.x): one engine and stream, a primitive
 * per (weight, shape, residual), and per weight its reordered copy, shared
 * by every primitive that wants that layout. */
#include "dnn.h"
#include "err.h"
#include "fastops.h"
#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DNN(call)                                                                               \
    do {                                                                                        \
        dnnl_status_t st_ = (call);                                                             \
        if (st_ != dnnl_success) die("internal: oneDNN: %s failed (status %d)", #call, (int)st_); \
    } while (0)

typedef struct WEnt { /* a weight in the layout some primitive wants */
    const void *w;     /* the weight's identity (see dnn.h) */
    dnnl_memory_desc_t md;
    void *buf;
    struct WEnt *next;
} WEnt;

enum { KEY_N = 8 };
typedef struct PEnt { /* a primitive for one weight at one shape */
    const void *w;
    int64_t key[KEY_N];
    dnnl_primitive_t prim;
    dnnl_memory_t src, wei, bias, dst, src1; /* src1: a binary post-op's operand */
    const WEnt *wq;
    struct PEnt *next;
} PEnt;

enum { TAB = 4096 };
struct Dnn {
    DType dt;
    dnnl_engine_t eng;
    dnnl_stream_t st;
    PEnt *prims[TAB];
    WEnt *weights[TAB];
    size_t wbytes;
    void *xb; /* the input rounded to bf16 */
    size_t xb_bytes;
    void *g; /* GEGLU's gate */
    size_t g_bytes;
};

/* A scratch buffer of at least `bytes`, kept and grown as needed. */
static void *scratch(void **p, size_t *have, size_t bytes) {
    if (bytes > *have) {
        free(*p);
        *p = xmalloc_big(bytes);
        *have = bytes;
    }
    return *p;
}

static size_t slot(const void *w, const int64_t *key) {
    uint64_t h = (uint64_t)(uintptr_t)w * 0x9E3779B97F4A7C15ull;
    for (int i = 0; key && i < KEY_N; i++) h = (h ^ (uint64_t)key[i]) * 0x100000001B3ull;
    return (size_t)(h >> 40) % TAB;
}

Dnn *dnn_new(DType dt) {
    if (dt != DTYPE_F32 && dt != DTYPE_BF16) die("internal: dnn_new: the CPU engine runs fp32 or bf16");
    Dnn *d = xcalloc(1, sizeof *d);
    d->dt = dt;
    DNN(dnnl_engine_create(&d->eng, dnnl_cpu, 0));
    DNN(dnnl_stream_create(&d->st, d->eng, dnnl_stream_default_flags));
    return d;
}

void dnn_free(Dnn *d) {
    if (!d) return;
    for (int i = 0; i < TAB; i++) {
        for (PEnt *p = d->prims[i], *n; p; p = n) {
            n = p->next;
            dnnl_primitive_destroy(p->prim);
            dnnl_memory_destroy(p->src);
            dnnl_memory_destroy(p->wei);
            if (p->bias) dnnl_memory_destroy(p->bias);
            if (p->src1) dnnl_memory_destroy(p->src1);
            dnnl_memory_destroy(p->dst);
            free(p);
        }
        for (WEnt *w = d->weights[i], *n; w; w = n) {
            n = w->next;
            free(w->buf);
            free(w);
        }
    }
    dnnl_stream_destroy(d->st);
    dnnl_engine_destroy(d->eng);
    free(d->xb);
    free(d->g);
    free(d);
}

size_t dnn_weight_bytes(const Dnn *d) { return d->wbytes; }

static const char *isa_name(dnnl_cpu_isa_t isa) {
    switch (isa) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "other";
    }
}

const char *dnn_describe(void) {
    static char buf[96];
    const dnnl_version_t *v = dnnl_version();
    snprintf(buf, sizeof buf, "oneDNN %d.%d.%d, %s", v->major, v->minor, v->patch,
             isa_name(dnnl_get_effective_cpu_isa()));
    return buf;
}

int dnn_bf16_native(void) {
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    return isa == dnnl_cpu_isa_avx512_core_bf16 || isa == dnnl_cpu_isa_avx512_core_amx;
}

/* Weight w in layout `want`: found, or reordered now and kept; from data
 * (layout `user`), or, once data has been released, from a copy already held. */
static const WEnt *weight_as(Dnn *d, const void *w, const float *data, const dnnl_memory_desc_t *user,
                             const dnnl_memory_desc_t *want) {
    size_t s = slot(w, NULL);
    const WEnt *held = NULL;
    for (WEnt *e = d->weights[s]; e; e = e->next)
        if (e->w == w) {
            if (dnnl_memory_desc_equal(&e->md, want)) return e;
            held = e;
        }
    if (!data && !held) die("internal: a weight was released before the CPU engine reordered it");
    const void *src = data ? (const void *)data : held->buf;
    if (!data) user = &held->md;
    WEnt *e = xcalloc(1, sizeof *e);
    e->w = w;
    e->md = *want;
    size_t bytes = dnnl_memory_desc_get_size(want);
    e->buf = xmalloc_big(bytes);
    dnnl_memory_t from, to;
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t r;
    DNN(dnnl_memory_create(&from, user, d->eng, (void *)src));
    DNN(dnnl_memory_create(&to, want, d->eng, e->buf));
    DNN(dnnl_reorder_primitive_desc_create(&pd, user, d->eng, want, d->eng, NULL));
    DNN(dnnl_primitive_create(&r, pd));
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
    DNN(dnnl_primitive_execute(r, d->st, 2, args));
    DNN(dnnl_stream_wait(d->st));
    dnnl_primitive_destroy(r);
    dnnl_primitive_desc_destroy(pd);
    dnnl_memory_destroy(from);
    dnnl_memory_destroy(to);
    d->wbytes += bytes;
    e->next = d->weights[s];
    d->weights[s] = e;
    return e;
}

static PEnt *find(Dnn *d, const void *w, const int64_t *key) {
    for (PEnt *p = d->prims[slot(w, key)]; p; p = p->next)
        if (p->w == w && !memcmp(p->key, key, sizeof p->key)) return p;
    return NULL;
}

/* What is fused after the product: nothing, += the destination's old values
 * (a residual), GELU (erf), or * an operand of the destination's shape. */
enum { POST_NONE, POST_SUM, POST_GELU, POST_MUL };

/* Finishes a primitive from its op descriptor and post-op (POST_MUL's operand
 * has descriptor dst), the weights reordered from `user` into what the
 * implementation chose. */
static PEnt *make(Dnn *d, const void *w, const float *data, const int64_t *key, const_dnnl_op_desc_t op, int post,
                  const dnnl_memory_desc_t *dst, int bias, const dnnl_memory_desc_t *user) {
    dnnl_primitive_attr_t attr;
    DNN(dnnl_primitive_attr_create(&attr));
    if (post != POST_NONE) {
        dnnl_post_ops_t po;
        DNN(dnnl_post_ops_create(&po));
        if (post == POST_SUM) DNN(dnnl_post_ops_append_sum(po, 1.0f));
        if (post == POST_GELU) DNN(dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_gelu_erf, 0.0f, 0.0f));
        if (post == POST_MUL) DNN(dnnl_post_ops_append_binary(po, dnnl_binary_mul, dst));
        DNN(dnnl_primitive_attr_set_post_ops(attr, po));
        dnnl_post_ops_destroy(po);
    }
    dnnl_primitive_desc_t pd;
    DNN(dnnl_primitive_desc_create(&pd, op, attr, d->eng, NULL));
    dnnl_primitive_attr_destroy(attr);
    PEnt *p = xcalloc(1, sizeof *p);
    p->w = w;
    memcpy(p->key, key, sizeof p->key);
    DNN(dnnl_primitive_create(&p->prim, pd));
    p->wq = weight_as(d, w, data, user, dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0));
    DNN(dnnl_memory_create(&p->src, dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0), d->eng, DNNL_MEMORY_NONE));
    DNN(dnnl_memory_create(&p->wei, &p->wq->md, d->eng, p->wq->buf));
    if (bias)
        DNN(dnnl_memory_create(&p->bias, dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 1), d->eng,
                               DNNL_MEMORY_NONE));
    DNN(dnnl_memory_create(&p->dst, dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0), d->eng, DNNL_MEMORY_NONE));
    if (post == POST_MUL) DNN(dnnl_memory_create(&p->src1, dst, d->eng, DNNL_MEMORY_NONE));
    dnnl_primitive_desc_destroy(pd);
    size_t s = slot(w, key);
    p->next = d->prims[s];
    d->prims[s] = p;
    return p;
}

/* Runs p on x (n values: rounded to bf16 first in bf16 mode), b, y; y holds
 * res first when res; mul is POST_MUL's operand. */
static void run(Dnn *d, PEnt *p, const float *x, int64_t n, const float *b, const float *res, const float *mul, float *y,
                int64_t ny) {
    const void *src = x;
    if (d->dt == DTYPE_BF16) {
        uint16_t *xb = scratch(&d->xb, &d->xb_bytes, (size_t)n * sizeof(uint16_t));
        fop_to_bf16(x, n, xb);
        src = xb;
    }
    if (res && res != y) memcpy(y, res, (size_t)ny * sizeof(float));
    DNN(dnnl_memory_set_data_handle(p->src, (void *)src));
    DNN(dnnl_memory_set_data_handle(p->dst, y));
    dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, p->src}, {DNNL_ARG_WEIGHTS, p->wei}, {DNNL_ARG_DST, p->dst}};
    int na = 3;
    if (mul) {
        DNN(dnnl_memory_set_data_handle(p->src1, (void *)mul));
        args[na++] = (dnnl_exec_arg_t){DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, p->src1};
    }
    if (b) {
        DNN(dnnl_memory_set_data_handle(p->bias, (void *)b));
        args[na++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, p->bias};
    }
    DNN(dnnl_primitive_execute(p->prim, d->st, na, args));
    DNN(dnnl_stream_wait(d->st));
}

static dnnl_data_type_t run_type(const Dnn *d) { return d->dt == DTYPE_BF16 ? dnnl_bf16 : dnnl_f32; }

/* y = x data^T + b, then the post-op (its operand: res for POST_SUM, mul for POST_MUL). */
static void linear_post(Dnn *d, const void *w, const float *data, const float *b, int64_t M, int64_t K, int64_t N,
                        const float *x, int post, const float *operand, float *y) {
    int64_t key[KEY_N] = {1, M, K, N, post, b != NULL};
    PEnt *p = find(d, w, key);
    if (!p) {
        dnnl_memory_desc_t src, wei, user, bias, dst;
        dnnl_dims_t sd = {M, K}, wd = {K, N}, bd = {1, N}, dd = {M, N};
        DNN(dnnl_memory_desc_init_by_tag(&src, 2, sd, run_type(d), dnnl_ab));
        DNN(dnnl_memory_desc_init_by_tag(&wei, 2, wd, run_type(d), dnnl_format_tag_any));
        DNN(dnnl_memory_desc_init_by_tag(&user, 2, wd, dnnl_f32, dnnl_ba)); /* torch's [N, K] is [K, N] transposed */
        DNN(dnnl_memory_desc_init_by_tag(&bias, 2, bd, dnnl_f32, dnnl_ab));
        DNN(dnnl_memory_desc_init_by_tag(&dst, 2, dd, dnnl_f32, dnnl_ab));
        dnnl_matmul_desc_t md;
        DNN(dnnl_matmul_desc_init(&md, &src, &wei, b ? &bias : NULL, &dst));
        p = make(d, w, data, key, &md, post, &dst, b != NULL, &user);
    }
    run(d, p, x, M * K, b, post == POST_SUM ? operand : NULL, post == POST_MUL ? operand : NULL, y, M * N);
}

void dnn_linear(Dnn *d, const void *w, const float *data, const float *b, int64_t M, int64_t K, int64_t N,
                const float *x, const float *res, float *y) {
    linear_post(d, w, data, b, M, K, N, x, res ? POST_SUM : POST_NONE, res, y);
}

void dnn_linear_geglu(Dnn *d, const void *w, const float *data, const float *b, int64_t M, int64_t K, int64_t I,
                      const float *x, float *y) {
    float *g = scratch(&d->g, &d->g_bytes, (size_t)(M * I) * sizeof(float));
    /* the gate half (rows I..2I of the weight) with GELU, then the value half times it */
    linear_post(d, (const char *)w + 1, data ? data + I * K : NULL, b + I, M, K, I, x, POST_GELU, NULL, g);
    linear_post(d, w, data, b, M, K, I, x, POST_MUL, g, y);
}

void dnn_conv(Dnn *d, const void *w, const float *data, const float *b, int64_t B, int64_t Cin, int64_t H, int64_t W,
              int cout, int k, int stride, const float *x, const float *res, float *y) {
    int64_t pad = (k - 1) / 2, Ho = (H + 2 * pad - k) / stride + 1, Wo = (W + 2 * pad - k) / stride + 1;
    int64_t key[KEY_N] = {2, B, Cin, H, W, cout, k * 16 + stride, res != NULL};
    PEnt *p = find(d, w, key);
    if (!p) {
        dnnl_memory_desc_t src, wei, user, bias, dst;
        dnnl_dims_t sd = {B, Cin, H, W}, wd = {cout, Cin, k, k}, bd = {cout}, dd = {B, cout, Ho, Wo};
        dnnl_dims_t strides = {stride, stride}, pads = {pad, pad};
        DNN(dnnl_memory_desc_init_by_tag(&src, 4, sd, run_type(d), dnnl_nhwc));
        DNN(dnnl_memory_desc_init_by_tag(&wei, 4, wd, run_type(d), dnnl_format_tag_any));
        DNN(dnnl_memory_desc_init_by_tag(&user, 4, wd, dnnl_f32, dnnl_oihw));
        DNN(dnnl_memory_desc_init_by_tag(&bias, 1, bd, dnnl_f32, dnnl_a));
        DNN(dnnl_memory_desc_init_by_tag(&dst, 4, dd, dnnl_f32, dnnl_nhwc));
        dnnl_convolution_desc_t cd;
        DNN(dnnl_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct, &src, &wei, &bias,
                                               &dst, strides, pads, pads));
        p = make(d, w, data, key, &cd, res ? POST_SUM : POST_NONE, &dst, 1, &user);
    }
    run(d, p, x, B * H * W * Cin, b, res, NULL, y, B * Ho * Wo * cout);
}
