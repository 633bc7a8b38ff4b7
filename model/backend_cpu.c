/* backend_cpu: the reference backend (see backend.h): float32, NCHW maps,
 * every op one call into kernels/cpu/ops.c. Tested as a whole by
 * tests/test_fixtures.c against diffusers' float64 features. */
#include "backend.h"
#include "err.h"
#include "ops.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const float *weight(const Backend *be, const char *prefix, const char *leaf) {
    const Weights *w = be->ctx;
    const float *p = w->data[weights_slot(w, prefix, leaf)];
    if (!p) die("internal: weight '%s.%s' was handed to the fast CPU engine", prefix, leaf);
    return p;
}

static Act act_new(int ndim, const int64_t *shape) {
    Act a = {.ndim = ndim};
    memcpy(a.shape, shape, sizeof a.shape);
    a.d = xcalloc((size_t)act_numel(&a), sizeof(float));
    return a;
}

static Tensor view(const Act *x) {
    Tensor t = {.d = x->d, .ndim = x->ndim};
    memcpy(t.shape, x->shape, sizeof t.shape);
    return t;
}

static Act own(Tensor t) { /* takes t's memory */
    Act a = {.d = t.d, .ndim = t.ndim};
    memcpy(a.shape, t.shape, sizeof a.shape);
    return a;
}

static void begin(Backend *be) { (void)be; }
static Act from_host(Backend *be, const Tensor *t) { (void)be; return own(tensor_copy(t)); }
static void to_host(Backend *be, const Act *x, Tensor *out, int *owned) {
    (void)be;
    *out = view(x);
    *owned = 0;
}
static Act copy(Backend *be, const Act *x) {
    (void)be;
    Tensor t = view(x);
    return own(tensor_copy(&t));
}
static void release(Backend *be, Act *x) {
    (void)be;
    free(x->d);
    memset(x, 0, sizeof *x);
}

/* y += res, where res has y's shape, or is the map [B, C, H, W] of the sequence y [B, HW, C]. */
static void add_res(float *y, const Act *res, int64_t n) {
    if (res->ndim == 4) {
        int64_t B = res->shape[0], C = res->shape[1], HW = res->shape[2] * res->shape[3];
        float *t = xmalloc((size_t)n * sizeof(float));
        op_nchw_to_nlc(res->d, B, C, HW, t);
        op_add(y, t, n);
        free(t);
    } else {
        op_add(y, res->d, n);
    }
}

static Act linear(Backend *be, const char *prefix, const Act *x, int64_t N, int bias, const Act *res) {
    int64_t K = x->shape[x->ndim - 1], rows = act_numel(x) / K, shape[4];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = N;
    Act y = act_new(x->ndim, shape);
    op_linear(x->d, rows, K, weight(be, prefix, "weight"), bias ? weight(be, prefix, "bias") : NULL, N, y.d);
    if (res) add_res(y.d, res, rows * N);
    return y;
}

static Act conv(Backend *be, const char *prefix, const Act *x, int cout, int k, int stride, const Act *res) {
    Tensor t = view(x);
    Act y = own(op_conv2d(&t, weight(be, prefix, "weight"), weight(be, prefix, "bias"), cout, k, stride, (k - 1) / 2));
    if (res) op_add(y.d, res->d, act_numel(&y));
    return y;
}

static void group_norm(Backend *be, const char *prefix, Act *x, int groups, float eps, int silu, const Act *add) {
    if (add) { /* add[b, c] over every pixel */
        int64_t B = x->shape[0], C = x->shape[1], S = act_numel(x) / (B * C);
        const float *a = add->d;
        float *p = x->d;
        for (int64_t bc = 0; bc < B * C; bc++)
            for (int64_t s = 0; s < S; s++) p[bc * S + s] += a[bc];
    }
    Tensor t = view(x);
    op_group_norm(&t, groups, weight(be, prefix, "weight"), weight(be, prefix, "bias"), eps, silu);
}

static Act layer_norm(Backend *be, const char *prefix, const Act *x, float eps) {
    Act y = act_new(x->ndim, x->shape);
    int64_t C = x->shape[x->ndim - 1];
    op_layer_norm(x->d, act_numel(x) / C, C, weight(be, prefix, "weight"), weight(be, prefix, "bias"), eps, y.d);
    return y;
}

static Act attention(Backend *be, const Act *q, const Act *k, const Act *v, int heads) {
    (void)be;
    Act o = act_new(q->ndim, q->shape);
    op_attention(q->d, k->d, v->d, q->shape[0], q->shape[1], k->shape[1], q->shape[2], heads, o.d);
    return o;
}

static Act geglu(Backend *be, const Act *h) {
    (void)be;
    int64_t shape[4], I2 = h->shape[h->ndim - 1];
    memcpy(shape, h->shape, sizeof shape);
    shape[h->ndim - 1] = I2 / 2;
    Act y = act_new(h->ndim, shape);
    op_geglu(h->d, act_numel(h) / I2, I2 / 2, y.d);
    return y;
}

static void add(Backend *be, Act *y, const Act *x, float div) {
    (void)be;
    int64_t n = act_numel(y);
    op_add(y->d, x->d, n);
    if (div != 1.0f)
        for (int64_t i = 0; i < n; i++) ((float *)y->d)[i] /= div;
}

static void silu(Backend *be, Act *x) { (void)be; op_silu(x->d, act_numel(x)); }

static void affine(Backend *be, Act *x, float alpha, float beta) {
    (void)be;
    float *p = x->d;
    for (int64_t i = 0, n = act_numel(x); i < n; i++) p[i] = alpha * p[i] + beta;
}

static Act upsample2x(Backend *be, const Act *x) {
    (void)be;
    Tensor t = view(x);
    return own(op_upsample2x(&t));
}

static Act concat(Backend *be, const Act *a, const Act *b) {
    (void)be;
    if (a->ndim == 4) {
        Tensor ta = view(a), tb = view(b);
        return own(op_concat_channels(&ta, &tb));
    }
    int64_t rows = a->shape[0], na = a->shape[1], nb = b->shape[1], shape[4] = {rows, na + nb, 0, 0};
    Act y = act_new(2, shape);
    for (int64_t r = 0; r < rows; r++) {
        memcpy((float *)y.d + r * (na + nb), (const float *)a->d + r * na, (size_t)na * sizeof(float));
        memcpy((float *)y.d + r * (na + nb) + na, (const float *)b->d + r * nb, (size_t)nb * sizeof(float));
    }
    return y;
}

static Act to_seq(Backend *be, Act *x) {
    int64_t B = x->shape[0], C = x->shape[1], N = x->shape[2] * x->shape[3], shape[4] = {B, N, C, 0};
    Act y = act_new(3, shape);
    op_nchw_to_nlc(x->d, B, C, N, y.d);
    release(be, x);
    return y;
}

static Act to_map(Backend *be, Act *x, int64_t H, int64_t W) {
    int64_t B = x->shape[0], C = x->shape[2], shape[4] = {B, C, H, W};
    Act y = act_new(4, shape);
    op_nlc_to_nchw(x->d, B, C, H * W, y.d);
    release(be, x);
    return y;
}

static Act timestep_embedding(Backend *be, const float *t, int64_t n, int dim, int flip, float shift) {
    (void)be;
    int64_t shape[4] = {n, dim, 0, 0};
    Act y = act_new(2, shape);
    op_timestep_embedding(t, n, dim, flip, shift, y.d);
    return y;
}

Backend backend_cpu(const Weights *w) {
    return (Backend){"cpu", (void *)w, begin, from_host, to_host, copy, release, linear, conv, group_norm, NULL,
                     layer_norm, attention, geglu, NULL, add, silu, affine, upsample2x, concat, to_seq, to_map,
                     timestep_embedding, NULL};
}
