/* test_cuda_libs: the cuDNN convolution (kernels/cudnn/conv.cu) and the
 * cuBLASLt linear (kernels/cublas/linear.cu) against op_conv2d / op_linear,
 * in fp32, fp16 and bf16, on the shapes the UNet uses. Inputs are drawn on
 * the host, rounded to the dtype, and the CPU reference runs on the rounded
 * values, so only accumulation order and output rounding differ; layouts
 * (NCHW <-> NHWC, [Cout, Cin, k, k] -> KRSC) are converted on the host.
 * Every device buffer sits between guard bytes, an output starts as NaN
 * (unless it holds the residual), inputs must come back unchanged, and each
 * case runs twice (planning, then the cached plan). Bounds, with scale =
 * max |ref| of the case, per element |got - ref| <= atol + rtol * |ref|:
 *   fp32: atol 2e-5 * scale, rtol 1e-5, NMSE <= 1e-10 (TF32 would be ~1e-7)
 *   fp16: atol 2e-3 * scale, rtol 2e-3, NMSE <= 1e-5  (rounding: ~1e-7)
 *   bf16: atol 1.6e-2 * scale, rtol 1.6e-2, NMSE <= 1e-4 (rounding: ~5e-6)
 * One line per case with the measured errors; plan choices go to stderr
 * (UNETLAB_LIB_LOG=1). Skipped without a GPU. */
#include "conv.h"
#include "cuda_check.h"
#include "device.h"
#include "dtype.h"
#include "err.h"
#include "half.h"
#include "linear.h"
#include "ops.h"
#include "rng.h"
#include "tensor.h"
#include "test.h"

#include <cuda_runtime_api.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define GUARD 256
#define GUARD_BYTE 0xA5

static cudaStream_t g_s;

/* ---------- dtype helpers (half.h) ---------- */

static float round_dt(float v, DType dt) {
    if (dt == DTYPE_F16) return half_to_f32(f32_to_half(v));
    if (dt == DTYPE_BF16) return bf16_to_f32(f32_to_bf16(v));
    return v;
}

static void pack(const float *src, void *dst, int64_t n, DType dt) {
    for (int64_t i = 0; i < n; i++) {
        if (dt == DTYPE_F32) ((float *)dst)[i] = src[i];
        else if (dt == DTYPE_F16) ((uint16_t *)dst)[i] = f32_to_half(src[i]);
        else ((uint16_t *)dst)[i] = f32_to_bf16(src[i]);
    }
}

static float unpack1(const void *src, int64_t i, DType dt) {
    if (dt == DTYPE_F32) return ((const float *)src)[i];
    uint16_t v = ((const uint16_t *)src)[i];
    return dt == DTYPE_F16 ? half_to_f32(v) : bf16_to_f32(v);
}

/* n values of N(0, std^2), rounded to dt. */
static float *rand_dt(int64_t n, float std, DType dt, const char *what, const char *tag) {
    char name[200];
    snprintf(name, sizeof name, "%s/%s", what, tag);
    float *p = xmalloc((size_t)n * sizeof(float));
    Rng r = rng_for(20250101, name);
    rng_normal(&r, p, n, 0.0f, std);
    for (int64_t i = 0; i < n; i++) p[i] = round_dt(p[i], dt);
    return p;
}

/* ---------- device buffers between guards ---------- */

typedef struct {
    char *base, *p;
    size_t bytes, lead;
} DevBuf;

/* bytes at p, off bytes past a 256-aligned spot (misaligned when off % 16 != 0) */
static DevBuf dev_new(size_t bytes, size_t off) {
    DevBuf b;
    b.bytes = bytes;
    b.lead = GUARD + off;
    CUDA_CHECK(cudaMalloc((void **)&b.base, b.lead + bytes + GUARD));
    CUDA_CHECK(cudaMemset(b.base, GUARD_BYTE, b.lead + bytes + GUARD));
    b.p = b.base + b.lead;
    return b;
}

static void dev_put(DevBuf *b, const void *h) { CUDA_CHECK(cudaMemcpy(b->p, h, b->bytes, cudaMemcpyHostToDevice)); }
static void dev_get(const DevBuf *b, void *h) { CUDA_CHECK(cudaMemcpy(h, b->p, b->bytes, cudaMemcpyDeviceToHost)); }

static int dev_guards_ok(const DevBuf *b) {
    size_t total = b->lead + b->bytes + GUARD;
    unsigned char *h = xmalloc(total);
    CUDA_CHECK(cudaMemcpy(h, b->base, total, cudaMemcpyDeviceToHost));
    int ok = 1;
    for (size_t i = 0; i < b->lead && ok; i++) ok = h[i] == GUARD_BYTE;
    for (size_t i = b->lead + b->bytes; i < total && ok; i++) ok = h[i] == GUARD_BYTE;
    free(h);
    return ok;
}

/* The device copy still holds exactly h (an input the op must not write). */
static int dev_same(const DevBuf *b, const void *h) {
    void *t = xmalloc(b->bytes);
    dev_get(b, t);
    int same = !memcmp(t, h, b->bytes);
    free(t);
    return same;
}

static void dev_free(DevBuf *b) {
    if (b->base) CUDA_CHECK(cudaFree(b->base));
    b->base = b->p = NULL;
}

/* ---------- comparison ---------- */

typedef struct {
    double rtol, atol_scale, nmse_max;
} Tol;

static Tol tol_for(DType dt) {
    if (dt == DTYPE_F32) return (Tol){1e-5, 2e-5, 1e-10};
    if (dt == DTYPE_F16) return (Tol){2e-3, 2e-3, 1e-5};
    return (Tol){1.6e-2, 1.6e-2, 1e-4};
}

typedef struct {
    double max_abs, max_rel, nmse, atol;
    int64_t bad, nonfinite;
} Err;

static Err compare(const void *got, const float *ref, int64_t n, DType dt) {
    Tol t = tol_for(dt);
    double scale = 0.0, se = 0.0, sr = 0.0;
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs((double)ref[i]));
    Err e = {0.0, 0.0, 0.0, t.atol_scale * scale, 0, 0};
    for (int64_t i = 0; i < n; i++) {
        double g = unpack1(got, i, dt), r = ref[i], d = fabs(g - r);
        if (!isfinite(g)) {
            e.nonfinite++;
            continue;
        }
        e.max_abs = fmax(e.max_abs, d);
        if (fabs(r) > 1e-3 * scale) e.max_rel = fmax(e.max_rel, d / fabs(r));
        if (d > e.atol + t.rtol * fabs(r)) e.bad++;
        se += d * d;
        sr += r * r;
    }
    e.nmse = sr > 0.0 ? se / sr : se;
    return e;
}

static int err_ok(const Err *e, DType dt) {
    return e->nonfinite == 0 && e->bad == 0 && e->nmse <= tol_for(dt).nmse_max;
}

typedef enum { RES_NONE = 0, RES_SEP = 1, RES_Y = 2 } ResMode;
static const char *const res_name[] = {"none", "separate", "y"};

/* Checks and prints one case: e[0] first call (planning), e[1] cached plan. */
static void report(const char *tag, DType dt, const Err e[2], const double ms[2], int guards, int inputs) {
    Tol t = tol_for(dt);
    int ok = err_ok(&e[0], dt) && err_ok(&e[1], dt) && guards && inputs;
    printf("  %-52s max|d| %.2e (atol %.1e) rel %.2e nmse %.2e (<= %.0e) | 2nd %.2e %.2e | %.1f + %.2f ms: %s\n", tag,
           e[0].max_abs, e[0].atol, e[0].max_rel, e[0].nmse, t.nmse_max, e[1].max_abs, e[1].nmse, ms[0], ms[1],
           ok ? "ok" : "FAIL");
    for (int c = 0; c < 2; c++) {
        CHECK_MSG(e[c].nonfinite == 0, "%s call %d: %lld non-finite outputs", tag, c + 1, (long long)e[c].nonfinite);
        CHECK_MSG(e[c].bad == 0, "%s call %d: %lld elements out of tolerance (max |d| %.3e)", tag, c + 1,
                  (long long)e[c].bad, e[c].max_abs);
        CHECK_MSG(e[c].nmse <= t.nmse_max, "%s call %d: nmse %.3e > %.0e", tag, c + 1, e[c].nmse, t.nmse_max);
    }
    CHECK_MSG(guards, "%s: guard bytes around a buffer were overwritten", tag);
    CHECK_MSG(inputs, "%s: an input buffer was modified", tag);
}

/* ---------- convolution ---------- */

typedef struct {
    int B, H, W, Cin, Cout, k, stride;
    ResMode res;
} ConvCase;

static void conv_case(CudnnConv *cv, const ConvCase *cc, DType dt) {
    int64_t B = cc->B, H = cc->H, W = cc->W, Cin = cc->Cin, Cout = cc->Cout, k = cc->k, st = cc->stride;
    int64_t pad = (k - 1) / 2, Ho = (H + 2 * pad - k) / st + 1, Wo = (W + 2 * pad - k) / st + 1;
    int64_t nx = B * Cin * H * W, nw = Cout * Cin * k * k, ny = B * Cout * Ho * Wo;
    size_t esz = dtype_size(dt);
    char tag[128];
    snprintf(tag, sizeof tag, "conv %s B%lld %lldx%lld %lld->%lld k%lld s%lld res=%s", dtype_name(dt), (long long)B,
             (long long)H, (long long)W, (long long)Cin, (long long)Cout, (long long)k, (long long)st,
             res_name[cc->res]);

    /* host values (rounded to dt): x NCHW, w [Cout, Cin, k, k], b, res NHWC */
    float *x = rand_dt(nx, 1.0f, dt, "x", tag), *w = rand_dt(nw, 1.0f / sqrtf((float)(Cin * k * k)), dt, "w", tag);
    float *b = rand_dt(Cout, 0.5f, dt, "b", tag), *r = cc->res ? rand_dt(ny, 1.0f, dt, "r", tag) : NULL;

    /* reference: op_conv2d (NCHW), then NHWC plus the residual */
    Tensor xt = tensor_new(4, B, Cin, H, W);
    memcpy(xt.d, x, (size_t)nx * sizeof(float));
    Tensor yt = op_conv2d(&xt, w, b, (int)Cout, (int)k, (int)st, (int)pad);
    float *ref = xmalloc((size_t)ny * sizeof(float));
    for (int64_t bi = 0; bi < B; bi++)
        for (int64_t o = 0; o < Cout; o++)
            for (int64_t yy = 0; yy < Ho; yy++)
                for (int64_t xx = 0; xx < Wo; xx++) {
                    int64_t i = ((bi * Ho + yy) * Wo + xx) * Cout + o;
                    ref[i] = yt.d[((bi * Cout + o) * Ho + yy) * Wo + xx] + (r ? r[i] : 0.0f);
                }

    /* device layouts: x NHWC, w KRSC */
    float *xn = xmalloc((size_t)nx * sizeof(float)), *wk = xmalloc((size_t)nw * sizeof(float));
    for (int64_t bi = 0; bi < B; bi++)
        for (int64_t c = 0; c < Cin; c++)
            for (int64_t yy = 0; yy < H; yy++)
                for (int64_t xx = 0; xx < W; xx++)
                    xn[((bi * H + yy) * W + xx) * Cin + c] = x[((bi * Cin + c) * H + yy) * W + xx];
    for (int64_t o = 0; o < Cout; o++)
        for (int64_t c = 0; c < Cin; c++)
            for (int64_t ky = 0; ky < k; ky++)
                for (int64_t kx = 0; kx < k; kx++)
                    wk[((o * k + ky) * k + kx) * Cin + c] = w[((o * Cin + c) * k + ky) * k + kx];
    void *hx = xmalloc((size_t)nx * esz), *hw = xmalloc((size_t)nw * esz), *hb = xmalloc((size_t)Cout * esz);
    void *hr = r ? xmalloc((size_t)ny * esz) : NULL, *hy = xmalloc((size_t)ny * esz);
    pack(xn, hx, nx, dt);
    pack(wk, hw, nw, dt);
    pack(b, hb, Cout, dt);
    if (r) pack(r, hr, ny, dt);

    DevBuf dx = dev_new((size_t)nx * esz, 0), dw = dev_new((size_t)nw * esz, 0), db = dev_new((size_t)Cout * esz, 0);
    DevBuf dy = dev_new((size_t)ny * esz, 0), dr = {0};
    dev_put(&dx, hx);
    dev_put(&dw, hw);
    dev_put(&db, hb);
    if (cc->res == RES_SEP) {
        dr = dev_new((size_t)ny * esz, 0);
        dev_put(&dr, hr);
    }
    Err e[2];
    double ms[2];
    for (int call = 0; call < 2; call++) {
        if (cc->res == RES_Y) dev_put(&dy, hr);
        else CUDA_CHECK(cudaMemset(dy.p, 0xFF, dy.bytes)); /* NaN in all three dtypes */
        CUDA_CHECK(cudaDeviceSynchronize());
        const void *res = cc->res == RES_SEP ? (const void *)dr.p : cc->res == RES_Y ? (const void *)dy.p : NULL;
        double t0 = cuda_now_ms();
        cudnn_conv_forward(cv, dx.p, B, H, W, Cin, dw.p, db.p, Cout, (int)k, (int)st, res, dy.p, dt);
        CUDA_CHECK(cudaStreamSynchronize(g_s));
        ms[call] = cuda_now_ms() - t0;
        dev_get(&dy, hy);
        e[call] = compare(hy, ref, ny, dt);
    }
    int guards = dev_guards_ok(&dx) && dev_guards_ok(&dw) && dev_guards_ok(&db) && dev_guards_ok(&dy) &&
                 (cc->res != RES_SEP || dev_guards_ok(&dr));
    int inputs = dev_same(&dx, hx) && dev_same(&dw, hw) && dev_same(&db, hb) && (cc->res != RES_SEP || dev_same(&dr, hr));
    report(tag, dt, e, ms, guards, inputs);

    dev_free(&dx);
    dev_free(&dw);
    dev_free(&db);
    dev_free(&dy);
    dev_free(&dr);
    tensor_free(&xt);
    tensor_free(&yt);
    free(x), free(w), free(b), free(r), free(ref), free(xn), free(wk);
    free(hx), free(hw), free(hb), free(hr), free(hy);
}

/* ---------- linear ---------- */

typedef struct {
    int M, K, N, bias;
    ResMode res;
    int misalign; /* x, y and res one element past 256-byte alignment */
} LinCase;

static void linear_case(LtLinear *lt, const LinCase *lc, DType dt) {
    int64_t M = lc->M, K = lc->K, N = lc->N;
    size_t esz = dtype_size(dt), off = lc->misalign ? esz : 0;
    char tag[128];
    snprintf(tag, sizeof tag, "linear %s M%lld K%lld N%lld bias=%d res=%s%s", dtype_name(dt), (long long)M,
             (long long)K, (long long)N, lc->bias, res_name[lc->res], lc->misalign ? " misaligned" : "");

    float *x = rand_dt(M * K, 1.0f, dt, "x", tag), *w = rand_dt(N * K, 1.0f / sqrtf((float)K), dt, "w", tag);
    float *b = lc->bias ? rand_dt(N, 0.5f, dt, "b", tag) : NULL, *r = lc->res ? rand_dt(M * N, 1.0f, dt, "r", tag) : NULL;
    float *ref = xmalloc((size_t)(M * N) * sizeof(float));
    op_linear(x, M, K, w, b, N, ref);
    if (r)
        for (int64_t i = 0; i < M * N; i++) ref[i] += r[i];

    void *hx = xmalloc((size_t)(M * K) * esz), *hw = xmalloc((size_t)(N * K) * esz), *hy = xmalloc((size_t)(M * N) * esz);
    void *hb = b ? xmalloc((size_t)N * esz) : NULL, *hr = r ? xmalloc((size_t)(M * N) * esz) : NULL;
    pack(x, hx, M * K, dt);
    pack(w, hw, N * K, dt);
    if (b) pack(b, hb, N, dt);
    if (r) pack(r, hr, M * N, dt);

    DevBuf dx = dev_new((size_t)(M * K) * esz, off), dw = dev_new((size_t)(N * K) * esz, 0);
    DevBuf dy = dev_new((size_t)(M * N) * esz, off), db = {0}, dr = {0};
    dev_put(&dx, hx);
    dev_put(&dw, hw);
    if (b) {
        db = dev_new((size_t)N * esz, 0);
        dev_put(&db, hb);
    }
    if (lc->res == RES_SEP) {
        dr = dev_new((size_t)(M * N) * esz, off);
        dev_put(&dr, hr);
    }
    Err e[2];
    double ms[2];
    for (int call = 0; call < 2; call++) {
        if (lc->res == RES_Y) dev_put(&dy, hr);
        else CUDA_CHECK(cudaMemset(dy.p, 0xFF, dy.bytes));
        CUDA_CHECK(cudaDeviceSynchronize());
        const void *res = lc->res == RES_SEP ? (const void *)dr.p : lc->res == RES_Y ? (const void *)dy.p : NULL;
        double t0 = cuda_now_ms();
        lt_linear(lt, dx.p, M, K, dw.p, b ? db.p : NULL, N, res, dy.p, dt);
        CUDA_CHECK(cudaStreamSynchronize(g_s));
        ms[call] = cuda_now_ms() - t0;
        dev_get(&dy, hy);
        e[call] = compare(hy, ref, M * N, dt);
    }
    int guards = dev_guards_ok(&dx) && dev_guards_ok(&dw) && dev_guards_ok(&dy) && (!b || dev_guards_ok(&db)) &&
                 (lc->res != RES_SEP || dev_guards_ok(&dr));
    int inputs = dev_same(&dx, hx) && dev_same(&dw, hw) && (!b || dev_same(&db, hb)) &&
                 (lc->res != RES_SEP || dev_same(&dr, hr));
    report(tag, dt, e, ms, guards, inputs);

    dev_free(&dx);
    dev_free(&dw);
    dev_free(&dy);
    dev_free(&db);
    dev_free(&dr);
    free(x), free(w), free(b), free(r), free(ref);
    free(hx), free(hw), free(hy), free(hb), free(hr);
}

/* ---------- cases ---------- */

/* conv_in 4->32, resnet 3x3 (with its skip), downsamplers (stride 2, odd
 * size), 1x1 shortcuts, Cin != Cout, SD-like 96/160 channels, SDXL-like 320. */
static const ConvCase conv_cases[] = {
    {2, 8, 8, 4, 32, 3, 1, RES_NONE},      {2, 16, 16, 32, 32, 3, 1, RES_SEP},   {2, 16, 16, 32, 32, 3, 2, RES_NONE},
    {2, 16, 16, 32, 64, 3, 1, RES_NONE},   {2, 16, 16, 32, 64, 1, 1, RES_NONE},  {2, 8, 8, 64, 64, 3, 1, RES_Y},
    {1, 12, 12, 96, 160, 3, 1, RES_SEP},   {2, 8, 8, 160, 96, 1, 1, RES_Y},      {2, 9, 9, 64, 64, 3, 2, RES_NONE},
    {2, 32, 32, 320, 320, 3, 1, RES_Y},    {2, 32, 32, 320, 320, 3, 2, RES_NONE}, {2, 32, 32, 320, 4, 3, 1, RES_NONE},
};

/* 77 * 2 text tokens (M not a multiple of 8), attention projections with and
 * without bias, cross-attention K = 2048 (SDXL), time embedding (M = 2),
 * GEGLU 320 -> 2560, feed-forward out with its residual (in place or not). */
static const LinCase lin_cases[] = {
    {154, 320, 320, 1, RES_NONE, 0}, {154, 2048, 320, 0, RES_NONE, 0}, {64, 320, 1280, 1, RES_SEP, 0},
    {256, 1280, 320, 1, RES_Y, 0},   {154, 64, 64, 0, RES_SEP, 0},     {2, 320, 1280, 1, RES_NONE, 0},
    {2, 1280, 1280, 1, RES_NONE, 0}, {1024, 320, 2560, 1, RES_NONE, 0}, {1024, 1280, 320, 1, RES_Y, 0},
    {77, 2048, 64, 0, RES_Y, 0},
};

/* Pointers 2- or 4-byte aligned: run last, after every aligned case has reported. */
static const LinCase lin_misaligned[] = {
    {77, 320, 320, 1, RES_SEP, 1},
    {154, 64, 1280, 1, RES_Y, 1},
};

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0); /* a killed hang keeps the line naming its case */
    char desc[256];
    if (device_probe(desc, sizeof desc) == 0) TEST_SKIP("test_cuda_libs", "%s", desc);
    setenv("UNETLAB_LIB_LOG", "1", 0);
    printf("test_cuda_libs: %s; %s\n", desc, cudnn_conv_version());
    CUDA_CHECK(cudaStreamCreateWithFlags(&g_s, cudaStreamNonBlocking));
    CudnnConv *cv = cudnn_conv_new(g_s);
    LtLinear *lt = lt_linear_new(g_s);
    const DType dts[3] = {DTYPE_F32, DTYPE_F16, DTYPE_BF16};
    double t0 = cuda_now_ms();
    for (int d = 0; d < 3; d++) {
        for (size_t i = 0; i < sizeof conv_cases / sizeof conv_cases[0]; i++) conv_case(cv, &conv_cases[i], dts[d]);
        for (size_t i = 0; i < sizeof lin_cases / sizeof lin_cases[0]; i++) linear_case(lt, &lin_cases[i], dts[d]);
    }
    for (int d = 0; d < 3; d++)
        for (size_t i = 0; i < sizeof lin_misaligned / sizeof lin_misaligned[0]; i++)
            linear_case(lt, &lin_misaligned[i], dts[d]);
    printf("  workspaces: cuDNN %zu B, cuBLASLt %zu B; %.1f s in all\n", cudnn_conv_workspace_bytes(cv),
           lt_linear_workspace_bytes(lt), (cuda_now_ms() - t0) / 1e3);
    cudnn_conv_free(cv);
    lt_linear_free(lt);
    CUDA_CHECK(cudaStreamDestroy(g_s));
    TEST_MAIN_END("test_cuda_libs");
}
