/* test_cuda_ops: every kernel of kernels/cuda/ops.cu against its CPU
 * reference in kernels/cpu/ops.c, in fp32, fp16 and bf16, on random inputs
 * (core/rng.h). Inputs are rounded to the run dtype before the reference
 * sees them, so a difference is the kernel's own error: fp32 arithmetic
 * order, fast intrinsics, and one rounding of the output (plus, in the flash
 * attention kernel, probabilities rounded to fp16/bf16 for the tensor cores).
 * Activations are NHWC on the GPU; NCHW references are bridged with
 * op_nchw_to_nlc / op_nlc_to_nchw. Every output buffer has guard bytes
 * before and after it (and padding columns for strided outputs) that must
 * come back untouched. Prints one line per case with its measured errors.
 * Without a GPU it prints the skip line and passes nothing. */
#include "cuda_check.h"
#include "cuda_ops.h"
#include "device.h"
#include "dtype.h"
#include "err.h"
#include "half.h"
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

static cudaStream_t S;
static const DType DTS[3] = {DTYPE_F32, DTYPE_F16, DTYPE_BF16};

/* ---------- tolerances ----------
 * An element passes when |got - ref| <= atol * max|ref| + rtol * |ref|, and
 * the array when sum (got - ref)^2 / sum ref^2 <= nmse, with no NaN or Inf.
 *   fp32: rtol 1e-5, atol 1e-5, nmse 1e-10  (float arithmetic in another order)
 *   fp16: rtol 2e-3, atol 2e-3, nmse 1e-5   (4 half ulps; one rounding is 2^-11)
 *   bf16: rtol 1.6e-2, atol 1.6e-2, nmse 4e-4 (4 bf16 ulps; one rounding is 2^-8)
 * Conversions must be exact. The timestep embedding allows 5e-4 absolute on
 * top: sin(t * e) with t near 1000 turns a 1-ulp difference between the CPU's
 * and the GPU's expf into ~2.4e-4. */
typedef struct {
    double rtol, atol, nmse;
} Tol;

static Tol tol_of(DType dt) {
    if (dt == DTYPE_F32) return (Tol){1e-5, 1e-5, 1e-10};
    if (dt == DTYPE_F16) return (Tol){2e-3, 2e-3, 1e-5};
    return (Tol){1.6e-2, 1.6e-2, 4e-4};
}

/* ---------- host-side dtype conversion ---------- */

static void to_dt(const float *x, int64_t n, DType dt, void *out) {
    if (dt == DTYPE_F32) {
        memcpy(out, x, (size_t)n * sizeof(float));
        return;
    }
    uint16_t *o = out;
    for (int64_t i = 0; i < n; i++) o[i] = dt == DTYPE_F16 ? f32_to_half(x[i]) : f32_to_bf16(x[i]);
}

static void from_dt(const void *in, int64_t n, DType dt, float *x) {
    if (dt == DTYPE_F32) {
        memcpy(x, in, (size_t)n * sizeof(float));
        return;
    }
    const uint16_t *h = in;
    for (int64_t i = 0; i < n; i++) x[i] = dt == DTYPE_F16 ? half_to_f32(h[i]) : bf16_to_f32(h[i]);
}

/* x = (float)(dt)x: the values the device will hold */
static void round_dt(float *x, int64_t n, DType dt) {
    if (dt == DTYPE_F32) return;
    for (int64_t i = 0; i < n; i++)
        x[i] = dt == DTYPE_F16 ? half_to_f32(f32_to_half(x[i])) : bf16_to_f32(f32_to_bf16(x[i]));
}

static float *fbuf(int64_t n) { return xmalloc((size_t)(n > 0 ? n : 1) * sizeof(float)); }

/* n normal(mean, std) values under the stream `name`, rounded to dt. */
static float *randbuf(int64_t n, const char *name, float mean, float std, DType dt) {
    float *p = fbuf(n);
    Rng r = rng_for(42, name);
    rng_normal(&r, p, n, mean, std);
    round_dt(p, n, dt);
    return p;
}

/* ---------- device buffers with guard bytes ---------- */

#define GUARD 256
#define PATTERN 0xA5

/* bytes of data at base + lead, lead = GUARD + off (off shifts the data off
 * its natural alignment); everything else is PATTERN and must stay so. */
typedef struct {
    unsigned char *base;
    void *p;
    size_t lead, bytes;
} DBuf;

static DBuf dbuf(size_t bytes, size_t off) {
    DBuf b;
    b.lead = GUARD + off;
    b.bytes = bytes;
    CUDA_CHECK(cudaMalloc((void **)&b.base, b.lead + bytes + GUARD));
    CUDA_CHECK(cudaMemset(b.base, PATTERN, b.lead + bytes + GUARD));
    b.p = b.base + b.lead;
    return b;
}

static void dbuf_free(DBuf *b) {
    CUDA_CHECK(cudaFree(b->base));
    memset(b, 0, sizeof *b);
}

static int dbuf_guards_ok(const DBuf *b) {
    unsigned char *h = xmalloc(b->lead + GUARD);
    CUDA_CHECK(cudaMemcpy(h, b->base, b->lead, cudaMemcpyDeviceToHost));
    CUDA_CHECK(cudaMemcpy(h + b->lead, b->base + b->lead + b->bytes, GUARD, cudaMemcpyDeviceToHost));
    int ok = 1;
    for (size_t i = 0; i < b->lead + GUARD; i++)
        if (h[i] != PATTERN) ok = 0;
    free(h);
    return ok;
}

/* x (already rounded to dt) into a fresh guarded buffer, `off` elements past alignment. */
static DBuf upload(const float *x, int64_t n, DType dt, int off) {
    size_t es = dtype_size(dt), bytes = (size_t)n * es;
    DBuf b = dbuf(bytes, (size_t)off * es);
    void *h = xmalloc(bytes > 0 ? bytes : 1);
    to_dt(x, n, dt, h);
    CUDA_CHECK(cudaMemcpy(b.p, h, bytes, cudaMemcpyHostToDevice));
    free(h);
    return b;
}

static void download(const DBuf *b, int64_t n, DType dt, float *x) {
    size_t bytes = (size_t)n * dtype_size(dt);
    void *h = xmalloc(bytes > 0 ? bytes : 1);
    CUDA_CHECK(cudaMemcpy(h, b->p, bytes, cudaMemcpyDeviceToHost));
    from_dt(h, n, dt, x);
    free(h);
}

/* Waits for the stream; a kernel fault stops the program naming the case. */
static void sync_case(const char *label) {
    cudaError_t e = cudaStreamSynchronize(S);
    if (e != cudaSuccess) die("%s: %s (%s)", label, cudaGetErrorString(e), cudaGetErrorName(e));
}

/* ---------- comparison ---------- */

static void compare(const char *label, const float *got, const float *ref, int64_t n, Tol t, int guards_ok) {
    double refmax = 0, num = 0, den = 0, max_abs = 0, worst_excess = 0;
    int64_t nonfinite = 0, bad = 0, worst = -1;
    for (int64_t i = 0; i < n; i++)
        if (fabs((double)ref[i]) > refmax) refmax = fabs((double)ref[i]);
    for (int64_t i = 0; i < n; i++) {
        double g = got[i], r = ref[i];
        if (!isfinite(g)) {
            nonfinite++;
            continue;
        }
        double e = fabs(g - r), bound = t.atol * refmax + t.rtol * fabs(r);
        num += e * e;
        den += r * r;
        if (e > max_abs) max_abs = e;
        if (e > bound) {
            bad++;
            if (worst < 0 || e - bound > worst_excess) {
                worst = i;
                worst_excess = e - bound;
            }
        }
    }
    double nmse = den > 0 ? num / den : num;
    int ok = nonfinite == 0 && bad == 0 && nmse <= t.nmse && guards_ok;
    printf("  %-56s max_abs %.2e (ref max %.2e) nmse %.2e %s\n", label, max_abs, refmax, nmse, ok ? "ok" : "FAIL");
    CHECK_MSG(nonfinite == 0, "%s: %lld NaN/Inf values", label, (long long)nonfinite);
    CHECK_MSG(bad == 0, "%s: %lld elements out of tolerance, worst [%lld] got %.9g want %.9g", label, (long long)bad,
              (long long)worst, worst < 0 ? 0.0 : (double)got[worst], worst < 0 ? 0.0 : (double)ref[worst]);
    CHECK_MSG(nmse <= t.nmse, "%s: nmse %.3g > %.3g", label, nmse, t.nmse);
    CHECK_MSG(guards_ok, "%s: guard bytes around the output were overwritten", label);
}

/* ---------- elementwise ---------- */

static void test_convert(void) {
    for (int a = 0; a < 3; a++)
        for (int c = 0; c < 3; c++)
            for (int off = 0; off < 2; off++) {
                DType xt = DTS[a], yt = DTS[c];
                int64_t n = off ? 1001 : 100003;
                float *x = randbuf(n, "convert", 0.0f, 3.0f, xt), *ref = fbuf(n), *got = fbuf(n);
                memcpy(ref, x, (size_t)n * sizeof(float));
                round_dt(ref, n, yt);
                DBuf dx = upload(x, n, xt, off), dy = dbuf((size_t)n * dtype_size(yt), (size_t)off * dtype_size(yt));
                cuk_convert(dx.p, xt, dy.p, yt, n, S);
                char label[128];
                snprintf(label, sizeof label, "convert %s -> %s n%lld off%d", dtype_name(xt), dtype_name(yt),
                         (long long)n, off);
                sync_case(label);
                download(&dy, n, yt, got);
                compare(label, got, ref, n, (Tol){0, 0, 0}, dbuf_guards_ok(&dy));
                dbuf_free(&dx);
                dbuf_free(&dy);
                free(x);
                free(ref);
                free(got);
            }
    /* same type, same buffer: nothing changes */
    for (int a = 0; a < 3; a++) {
        DType dt = DTS[a];
        int64_t n = 4099;
        float *x = randbuf(n, "convert-same", 0.0f, 1.0f, dt), *got = fbuf(n);
        DBuf d = upload(x, n, dt, 0);
        cuk_convert(d.p, dt, d.p, dt, n, S);
        char label[128];
        snprintf(label, sizeof label, "convert %s in place n%lld", dtype_name(dt), (long long)n);
        sync_case(label);
        download(&d, n, dt, got);
        compare(label, got, x, n, (Tol){0, 0, 0}, dbuf_guards_ok(&d));
        dbuf_free(&d);
        free(x);
        free(got);
    }
}

static void test_affine_silu_add(void) {
    for (int a = 0; a < 3; a++)
        for (int off = 0; off < 2; off++) {
            DType dt = DTS[a];
            int64_t n = 100003;
            char label[128];
            float *x = randbuf(n, "ew-x", 0.0f, 2.0f, dt), *y = randbuf(n, "ew-y", 0.5f, 1.0f, dt);
            float *ref = fbuf(n), *got = fbuf(n);

            /* affine: center_input_sample */
            DBuf d = upload(x, n, dt, off);
            cuk_affine(d.p, dt, n, 2.0f, -1.0f, S);
            snprintf(label, sizeof label, "affine %s n%lld off%d", dtype_name(dt), (long long)n, off);
            sync_case(label);
            download(&d, n, dt, got);
            for (int64_t i = 0; i < n; i++) ref[i] = 2.0f * x[i] - 1.0f;
            compare(label, got, ref, n, tol_of(dt), dbuf_guards_ok(&d));
            dbuf_free(&d);

            /* silu */
            d = upload(x, n, dt, off);
            cuk_silu(d.p, dt, n, S);
            snprintf(label, sizeof label, "silu %s n%lld off%d", dtype_name(dt), (long long)n, off);
            sync_case(label);
            download(&d, n, dt, got);
            memcpy(ref, x, (size_t)n * sizeof(float));
            op_silu(ref, n);
            compare(label, got, ref, n, tol_of(dt), dbuf_guards_ok(&d));
            dbuf_free(&d);

            /* add, with and without a scale */
            for (int k = 0; k < 2; k++) {
                float scale = k ? 0.5f : 1.0f;
                DBuf dy = upload(y, n, dt, off), dx = upload(x, n, dt, off);
                cuk_add(dy.p, dx.p, dt, n, scale, S);
                snprintf(label, sizeof label, "add %s n%lld off%d scale %g", dtype_name(dt), (long long)n, off,
                         (double)scale);
                sync_case(label);
                download(&dy, n, dt, got);
                memcpy(ref, y, (size_t)n * sizeof(float));
                op_add(ref, x, n);
                for (int64_t i = 0; i < n; i++) ref[i] *= scale;
                compare(label, got, ref, n, tol_of(dt), dbuf_guards_ok(&dy) && dbuf_guards_ok(&dx));
                dbuf_free(&dy);
                dbuf_free(&dx);
            }
            free(x);
            free(y);
            free(ref);
            free(got);
        }
}

/* ---------- group norm ----------
 * cuk_group_norm reads whole NHWC rows in packs of up to 16 bytes, so the
 * cases cover packs that straddle groups (C/G not a multiple of the pack),
 * rows wider than one block (fp32 beyond 2048 channels: column rounds, and
 * groups that cross them), in place and out of place (x must come back
 * untouched), add or not, misaligned pointers (one element at a time), and
 * more images than the scratch's first counters. A second run must give the
 * same bits, and so must a replay of a captured graph (no allocation may
 * happen in capture: the eager call before it sized the scratch). */

typedef struct {
    int64_t B, HW, C;
    int G, add, silu, inplace, off;
    float mean; /* of x: a mean far above the spread must not cost precision */
} GnCase;

static void test_group_norm(void) {
    static const GnCase cases[] = {
        {2, 256, 64, 8, 0, 0, 0, 0, 0.0f},     /* mini fixture */
        {2, 256, 64, 8, 1, 1, 0, 0, 0.0f},     /* + temb add, silu */
        {2, 1024, 192, 8, 1, 0, 1, 0, 0.0f},   /* mini 32x32, in place */
        {1, 64, 32, 8, 0, 1, 0, 0, 100.0f},    /* mean >> std */
        {2, 4096, 320, 32, 1, 1, 1, 0, 0.0f},  /* SDXL 64x64 block (10 channels a group), in place */
        {1, 4096, 320, 32, 1, 0, 0, 0, 50.0f}, /* mean >> std, out of place */
        {2, 99, 320, 32, 1, 1, 0, 0, 0.0f},    /* odd HW, packs of 8 across groups of 10 */
        {1, 64, 32, 32, 1, 1, 0, 0, 0.0f},     /* one channel a group: a pack spans 8 groups */
        {2, 1024, 2560, 32, 1, 1, 0, 0, 0.0f}, /* SDXL up block concat width (fp32: two column rounds) */
        {2, 16384, 320, 32, 0, 1, 1, 0, 0.0f}, /* SDXL 128x128, in place */
        {2, 16384, 320, 32, 1, 1, 0, 0, 0.0f}, /* SDXL 128x128, out of place */
        {2, 100, 96, 32, 1, 0, 0, 0, 0.0f},    /* 3 channels a group */
        {1, 40, 2100, 20, 1, 0, 0, 0, 0.0f},   /* a group across a column round's end */
        {1, 9, 4104, 1, 0, 1, 1, 0, 0.0f},     /* one group over every round, in place */
        {80, 16, 320, 32, 1, 1, 0, 0, 0.0f},   /* one block an image; the counters grow past 64 */
        {2, 1024, 640, 32, 1, 1, 0, 1, 0.0f},  /* misaligned: one element at a time */
        {2, 1024, 640, 32, 1, 0, 1, 1, 0.0f},  /* misaligned, in place */
    };
    const float eps = 1e-6f;
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++)
        for (int a = 0; a < 3; a++) {
            const GnCase *c = &cases[ci];
            DType dt = DTS[a];
            int64_t B = c->B, HW = c->HW, C = c->C, n = B * HW * C;
            float *x = randbuf(n, "gn-x", c->mean, 1.0f, dt);
            float *add = c->add ? randbuf(B * C, "gn-add", 0.0f, 1.0f, dt) : NULL;
            float *gamma = randbuf(C, "gn-gamma", 1.0f, 0.2f, dt), *beta = randbuf(C, "gn-beta", 0.0f, 0.2f, dt);
            float *ref = fbuf(n), *got = fbuf(n), *again = fbuf(n);

            /* reference: v = x + add in NHWC, then NCHW GroupNorm */
            float *v = fbuf(n);
            for (int64_t b = 0; b < B; b++)
                for (int64_t p = 0; p < HW; p++)
                    for (int64_t ch = 0; ch < C; ch++) {
                        int64_t i = (b * HW + p) * C + ch;
                        v[i] = x[i] + (add ? add[b * C + ch] : 0.0f);
                    }
            Tensor t = tensor_new(4, B, C, HW, 1);
            op_nlc_to_nchw(v, B, C, HW, t.d);
            op_group_norm(&t, c->G, gamma, beta, eps, c->silu);
            op_nchw_to_nlc(t.d, B, C, HW, ref);
            tensor_free(&t);
            free(v);

            DBuf dx = upload(x, n, dt, c->off), dg = upload(gamma, C, dt, 0), db = upload(beta, C, dt, 0);
            DBuf da = {0}, dy = {0};
            if (add) da = upload(add, B * C, dt, 0);
            if (!c->inplace) dy = dbuf((size_t)n * dtype_size(dt), (size_t)c->off * dtype_size(dt));
            DBuf *out = c->inplace ? &dx : &dy;
            cuk_group_norm(dx.p, add ? da.p : NULL, out->p, dt, B, HW, C, c->G, dg.p, db.p, eps, c->silu, S);
            char label[160];
            snprintf(label, sizeof label, "group_norm %s B%lld HW%lld C%lld G%d%s%s%s%s mean%g", dtype_name(dt),
                     (long long)B, (long long)HW, (long long)C, c->G, c->add ? " add" : "", c->silu ? " silu" : "",
                     c->inplace ? " inplace" : "", c->off ? " off1" : "", (double)c->mean);
            sync_case(label);
            download(out, n, dt, got);
            compare(label, got, ref, n, tol_of(dt), dbuf_guards_ok(out));
            if (!c->inplace) {
                download(&dx, n, dt, again);
                CHECK_MSG(!memcmp(again, x, (size_t)n * sizeof(float)), "%s: x changed out of place", label);
                /* the same call again: the same bits (statistics summed in a fixed order) */
                cuk_group_norm(dx.p, add ? da.p : NULL, dy.p, dt, B, HW, C, c->G, dg.p, db.p, eps, c->silu, S);
                sync_case(label);
                download(&dy, n, dt, again);
                CHECK_MSG(!memcmp(again, got, (size_t)n * sizeof(float)), "%s: a second run differs", label);
            }
            dbuf_free(&dx);
            dbuf_free(&dg);
            dbuf_free(&db);
            if (add) dbuf_free(&da);
            if (!c->inplace) dbuf_free(&dy);
            free(x);
            free(add);
            free(gamma);
            free(beta);
            free(ref);
            free(got);
            free(again);
        }
}

/* A group norm captured into a graph after an eager call of the same shape
 * (as the engine's warm-up forward does): its replays equal the eager result. */
static void test_group_norm_graph(void) {
    const int64_t B = 2, HW = 4096, C = 640, n = B * HW * C;
    const DType dt = DTYPE_F16;
    float *x = randbuf(n, "gn-graph-x", 0.0f, 1.0f, dt), *add = randbuf(B * C, "gn-graph-add", 0.0f, 1.0f, dt);
    float *gb = randbuf(2 * C, "gn-graph-gb", 1.0f, 0.2f, dt), *eager = fbuf(n), *replay = fbuf(n);
    DBuf dx = upload(x, n, dt, 0), da = upload(add, B * C, dt, 0), dg = upload(gb, C, dt, 0),
         db = upload(gb + C, C, dt, 0), dy = dbuf((size_t)n * 2, 0);
    cuk_group_norm(dx.p, da.p, dy.p, dt, B, HW, C, 32, dg.p, db.p, 1e-5f, 1, S);
    sync_case("group_norm graph: eager");
    download(&dy, n, dt, eager);
    CUDA_CHECK(cudaMemsetAsync(dy.p, 0, (size_t)n * 2, S));
    cudaGraph_t g = NULL;
    cudaGraphExec_t ge = NULL;
    CUDA_CHECK(cudaStreamBeginCapture(S, cudaStreamCaptureModeRelaxed));
    cuk_group_norm(dx.p, da.p, dy.p, dt, B, HW, C, 32, dg.p, db.p, 1e-5f, 1, S);
    CUDA_CHECK(cudaStreamEndCapture(S, &g));
    CUDA_CHECK(cudaGraphInstantiate(&ge, g, 0));
    int same = 1;
    for (int r = 0; r < 2; r++) { /* twice: the counters must be back at 0 after a replay */
        CUDA_CHECK(cudaGraphLaunch(ge, S));
        sync_case("group_norm graph: replay");
        download(&dy, n, dt, replay);
        const int ok = !memcmp(replay, eager, (size_t)n * sizeof(float));
        CHECK_MSG(ok, "group_norm graph: replay %d differs from the eager run", r);
        same &= ok;
    }
    printf("  %-56s %s\n", "group_norm fp16 B2 HW4096 C640 G32 graph replays = eager", same ? "ok" : "FAIL");
    CUDA_CHECK(cudaGraphExecDestroy(ge));
    CUDA_CHECK(cudaGraphDestroy(g));
    dbuf_free(&dx);
    dbuf_free(&da);
    dbuf_free(&dg);
    dbuf_free(&db);
    dbuf_free(&dy);
    free(x);
    free(add);
    free(gb);
    free(eager);
    free(replay);
}

/* ---------- layer norm ---------- */

static void test_layer_norm(void) {
    static const struct {
        int64_t M, C;
        int inplace, off;
    } cases[] = {{512, 64, 0, 0}, {1000, 320, 1, 0}, {333, 1280, 0, 0}, {77, 40, 0, 1}, {8, 2048, 1, 0}, {130, 3, 0, 0}};
    const float eps = 1e-5f;
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++)
        for (int a = 0; a < 3; a++) {
            DType dt = DTS[a];
            int64_t M = cases[ci].M, C = cases[ci].C, n = M * C;
            int inplace = cases[ci].inplace, off = cases[ci].off;
            float *x = randbuf(n, "ln-x", 3.0f, 1.0f, dt);
            float *gamma = randbuf(C, "ln-gamma", 1.0f, 0.2f, dt), *beta = randbuf(C, "ln-beta", 0.0f, 0.2f, dt);
            float *ref = fbuf(n), *got = fbuf(n);
            op_layer_norm(x, M, C, gamma, beta, eps, ref);
            DBuf dx = upload(x, n, dt, off), dg = upload(gamma, C, dt, 0), db = upload(beta, C, dt, 0), dy = {0};
            if (!inplace) dy = dbuf((size_t)n * dtype_size(dt), (size_t)off * dtype_size(dt));
            DBuf *out = inplace ? &dx : &dy;
            cuk_layer_norm(dx.p, out->p, dt, M, C, dg.p, db.p, eps, S);
            char label[128];
            snprintf(label, sizeof label, "layer_norm %s M%lld C%lld%s%s", dtype_name(dt), (long long)M, (long long)C,
                     inplace ? " inplace" : "", off ? " off1" : "");
            sync_case(label);
            download(out, n, dt, got);
            compare(label, got, ref, n, tol_of(dt), dbuf_guards_ok(out));
            dbuf_free(&dx);
            dbuf_free(&dg);
            dbuf_free(&db);
            if (!inplace) dbuf_free(&dy);
            free(x);
            free(gamma);
            free(beta);
            free(ref);
            free(got);
        }
}

/* ---------- GEGLU ---------- */

static void test_geglu(void) {
    static const struct {
        int64_t M, I;
        int off;
    } cases[] = {{256, 128, 0}, {512, 5120, 0}, {77, 77, 0}, {100, 1280, 1}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++)
        for (int a = 0; a < 3; a++) {
            DType dt = DTS[a];
            int64_t M = cases[ci].M, I = cases[ci].I;
            int off = cases[ci].off;
            float *h = randbuf(M * 2 * I, "geglu-h", 0.0f, 1.5f, dt), *ref = fbuf(M * I), *got = fbuf(M * I);
            op_geglu(h, M, I, ref);
            DBuf dh = upload(h, M * 2 * I, dt, off);
            DBuf dout = dbuf((size_t)(M * I) * dtype_size(dt), (size_t)off * dtype_size(dt));
            cuk_geglu(dh.p, dout.p, dt, M, I, S);
            char label[128];
            snprintf(label, sizeof label, "geglu %s M%lld I%lld%s", dtype_name(dt), (long long)M, (long long)I,
                     off ? " off1" : "");
            sync_case(label);
            download(&dout, M * I, dt, got);
            compare(label, got, ref, M * I, tol_of(dt), dbuf_guards_ok(&dout));
            dbuf_free(&dh);
            dbuf_free(&dout);
            free(h);
            free(ref);
            free(got);
        }
}

/* ---------- upsample, concat ---------- */

static void test_upsample(void) {
    static const struct {
        int64_t B, H, W, C;
        int off;
    } cases[] = {{2, 16, 16, 64, 0}, {1, 8, 12, 3, 0}, {2, 32, 32, 1280, 0}, {2, 5, 7, 320, 1}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++)
        for (int a = 0; a < 3; a++) {
            DType dt = DTS[a];
            int64_t B = cases[ci].B, H = cases[ci].H, W = cases[ci].W, C = cases[ci].C, n = B * H * W * C;
            int off = cases[ci].off;
            float *x = randbuf(n, "up-x", 0.0f, 1.0f, dt), *ref = fbuf(4 * n), *got = fbuf(4 * n);
            Tensor tx = tensor_new(4, B, C, H, W);
            op_nlc_to_nchw(x, B, C, H * W, tx.d);
            Tensor ty = op_upsample2x(&tx);
            op_nchw_to_nlc(ty.d, B, C, 4 * H * W, ref);
            tensor_free(&tx);
            tensor_free(&ty);
            DBuf dx = upload(x, n, dt, off), dy = dbuf((size_t)(4 * n) * dtype_size(dt), (size_t)off * dtype_size(dt));
            cuk_upsample2x(dx.p, dy.p, dt, B, H, W, C, S);
            char label[128];
            snprintf(label, sizeof label, "upsample2x %s B%lld H%lld W%lld C%lld%s", dtype_name(dt), (long long)B,
                     (long long)H, (long long)W, (long long)C, off ? " off1" : "");
            sync_case(label);
            download(&dy, 4 * n, dt, got);
            compare(label, got, ref, 4 * n, (Tol){0, 0, 0}, dbuf_guards_ok(&dy));
            dbuf_free(&dx);
            dbuf_free(&dy);
            free(x);
            free(ref);
            free(got);
        }
}

static void test_concat(void) {
    static const struct {
        int64_t B, HW, Ca, Cb;
        int off;
    } cases[] = {{2, 512, 64, 32, 0}, {2, 256, 1280, 640, 0}, {1, 100, 3, 5, 0}, {1, 50, 8, 4, 1}, {2, 64, 16, 12, 0}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++)
        for (int a = 0; a < 3; a++) {
            DType dt = DTS[a];
            int64_t B = cases[ci].B, HW = cases[ci].HW, Ca = cases[ci].Ca, Cb = cases[ci].Cb, rows = B * HW;
            int64_t n = rows * (Ca + Cb);
            int off = cases[ci].off;
            float *xa = randbuf(rows * Ca, "cat-a", 0.0f, 1.0f, dt), *xb = randbuf(rows * Cb, "cat-b", 1.0f, 1.0f, dt);
            float *ref = fbuf(n), *got = fbuf(n);
            Tensor ta = tensor_new(4, B, Ca, HW, 1), tb = tensor_new(4, B, Cb, HW, 1);
            op_nlc_to_nchw(xa, B, Ca, HW, ta.d);
            op_nlc_to_nchw(xb, B, Cb, HW, tb.d);
            Tensor ty = op_concat_channels(&ta, &tb);
            op_nchw_to_nlc(ty.d, B, Ca + Cb, HW, ref);
            tensor_free(&ta);
            tensor_free(&tb);
            tensor_free(&ty);
            DBuf da = upload(xa, rows * Ca, dt, off), db = upload(xb, rows * Cb, dt, 0);
            DBuf dy = dbuf((size_t)n * dtype_size(dt), 0);
            cuk_concat_last(da.p, Ca, db.p, Cb, dy.p, dt, rows, S);
            char label[128];
            snprintf(label, sizeof label, "concat_last %s rows%lld Ca%lld Cb%lld%s", dtype_name(dt), (long long)rows,
                     (long long)Ca, (long long)Cb, off ? " off1" : "");
            sync_case(label);
            download(&dy, n, dt, got);
            compare(label, got, ref, n, (Tol){0, 0, 0}, dbuf_guards_ok(&dy));
            dbuf_free(&da);
            dbuf_free(&db);
            dbuf_free(&dy);
            free(xa);
            free(xb);
            free(ref);
            free(got);
        }
}

/* ---------- timestep embedding ---------- */

static void test_timestep(void) {
    static const struct {
        int64_t n;
        int dim, flip;
        float shift;
    } cases[] = {{2, 320, 1, 0.0f}, {3, 7, 0, 1.0f}, {5, 1280, 0, 1.0f}, {5, 256, 1, 0.0f}};
    static const float tv[5] = {999.0f, 500.5f, 1.0f, 0.0f, 37.0f};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++)
        for (int a = 0; a < 3; a++) {
            DType dt = DTS[a];
            int64_t n = cases[ci].n, m = n * cases[ci].dim;
            float *ref = fbuf(m), *got = fbuf(m);
            op_timestep_embedding(tv, n, cases[ci].dim, cases[ci].flip, cases[ci].shift, ref);
            DBuf dtv = dbuf((size_t)n * sizeof(float), 0), dout = dbuf((size_t)m * dtype_size(dt), 0);
            CUDA_CHECK(cudaMemcpy(dtv.p, tv, (size_t)n * sizeof(float), cudaMemcpyHostToDevice));
            cuk_timestep_embedding(dtv.p, n, cases[ci].dim, cases[ci].flip, cases[ci].shift, dout.p, dt, S);
            char label[128];
            snprintf(label, sizeof label, "timestep_embedding %s n%lld dim%d flip%d shift%g", dtype_name(dt),
                     (long long)n, cases[ci].dim, cases[ci].flip, (double)cases[ci].shift);
            sync_case(label);
            download(&dout, m, dt, got);
            Tol t = tol_of(dt);
            t.atol += 5e-4; /* max|ref| is 1 here */
            if (t.nmse < 1e-6) t.nmse = 1e-6;
            compare(label, got, ref, m, t, dbuf_guards_ok(&dout));
            dbuf_free(&dtv);
            dbuf_free(&dout);
            free(ref);
            free(got);
        }
}

/* ---------- attention ---------- */

/* fused: q, k and v are column slices of one [B*N, 3C + pad] buffer (self
 * attention only); else three contiguous [B*N, C] buffers. The output has
 * row stride C + opad, and its padding columns must stay untouched. */
typedef struct {
    const char *name;
    int64_t B, Nq, Nk;
    int heads, dh, fused;
    int64_t pad, opad;
    float qstd;
} AttnCase;

static int expect_flash(DType dt, int dh) {
    const char *e = getenv("UNETLAB_ATTN");
    if (e && !strcmp(e, "plain")) return 0;
    return dt != DTYPE_F32 && dh % 16 == 0 && dh <= 128;
}

/* Runs the case on the device in dt; the result (contiguous [B*Nq, C]) into got. */
static void attn_run(const AttnCase *c, DType dt, const float *q, const float *k, const float *v, float *got,
                     const char *label) {
    int64_t C = (int64_t)c->heads * c->dh, rq = c->B * c->Nq, rk = c->B * c->Nk, ldo = C + c->opad;
    size_t es = dtype_size(dt);
    DBuf dq = {0}, dk = {0}, dv = {0};
    const void *pq, *pk, *pv;
    int64_t ldq, ldk, ldv;
    if (c->fused) {
        int64_t ld = 3 * C + c->pad;
        float *f = fbuf(rq * ld);
        for (int64_t r = 0; r < rq; r++) {
            memcpy(f + r * ld, q + r * C, (size_t)C * sizeof(float));
            memcpy(f + r * ld + C, k + r * C, (size_t)C * sizeof(float));
            memcpy(f + r * ld + 2 * C, v + r * C, (size_t)C * sizeof(float));
            for (int64_t j = 3 * C; j < ld; j++) f[r * ld + j] = 1e4f; /* would show in any output */
        }
        dq = upload(f, rq * ld, dt, 0);
        free(f);
        pq = dq.p;
        pk = (const char *)dq.p + (size_t)C * es;
        pv = (const char *)dq.p + (size_t)(2 * C) * es;
        ldq = ldk = ldv = ld;
    } else {
        dq = upload(q, rq * C, dt, 0);
        dk = upload(k, rk * C, dt, 0);
        dv = upload(v, rk * C, dt, 0);
        pq = dq.p;
        pk = dk.p;
        pv = dv.p;
        ldq = ldk = ldv = C;
    }
    DBuf dout = dbuf((size_t)(rq * ldo) * es, 0);
    cuk_attention(pq, ldq, pk, ldk, pv, ldv, dout.p, ldo, dt, c->B, c->Nq, c->Nk, c->heads, c->dh, S);
    sync_case(label);
    unsigned char *raw = xmalloc((size_t)(rq * ldo) * es);
    CUDA_CHECK(cudaMemcpy(raw, dout.p, (size_t)(rq * ldo) * es, cudaMemcpyDeviceToHost));
    int pad_ok = 1;
    for (int64_t r = 0; r < rq; r++) {
        from_dt(raw + (size_t)(r * ldo) * es, C, dt, got + r * C);
        for (size_t b = (size_t)C * es; b < (size_t)ldo * es; b++)
            if (raw[(size_t)(r * ldo) * es + b] != PATTERN) pad_ok = 0;
    }
    free(raw);
    CHECK_MSG(pad_ok, "%s: output padding columns were written", label);
    CHECK_MSG(dbuf_guards_ok(&dout), "%s: guard bytes around the output were overwritten", label);
    dbuf_free(&dout);
    dbuf_free(&dq);
    if (!c->fused) {
        dbuf_free(&dk);
        dbuf_free(&dv);
    }
}

static void test_attention_case(const AttnCase *c) {
    int64_t C = (int64_t)c->heads * c->dh, rq = c->B * c->Nq, rk = c->B * c->Nk;
    for (int a = 0; a < 3; a++) {
        DType dt = DTS[a];
        float *q = randbuf(rq * C, "attn-q", 0.0f, c->qstd, dt);
        float *k = randbuf(rk * C, "attn-k", 0.0f, 1.0f, dt), *v = randbuf(rk * C, "attn-v", 0.0f, 1.0f, dt);
        float *ref = fbuf(rq * C), *got = fbuf(rq * C);
        op_attention(q, k, v, c->B, c->Nq, c->Nk, C, c->heads, ref);
        /* the dispatched kernel, then (where that was flash) the plain one forced by UNETLAB_ATTN */
        for (int pass = 0; pass < 2; pass++) {
            if (pass == 1) {
                if (!expect_flash(dt, c->dh)) break;
                setenv("UNETLAB_ATTN", "plain", 1);
            }
            const char *kname = cuk_attention_kernel(dt, c->dh);
            char label[192];
            snprintf(label, sizeof label, "attention %s %s %s B%lld Nq%lld Nk%lld h%d dh%d%s", dtype_name(dt), kname,
                     c->name, (long long)c->B, (long long)c->Nq, (long long)c->Nk, c->heads, c->dh,
                     c->fused ? (c->pad % 8 ? " fused-unaligned" : " fused") : "");
            CHECK_MSG(!strcmp(kname, expect_flash(dt, c->dh) ? "flash-wmma" : "plain"), "%s: kernel %s", label, kname);
            attn_run(c, dt, q, k, v, got, label);
            compare(label, got, ref, rq * C, tol_of(dt), 1);
            if (pass == 1) unsetenv("UNETLAB_ATTN");
        }
        free(q);
        free(k);
        free(v);
        free(ref);
        free(got);
    }
}

static void test_attention(void) {
    static const AttnCase cases[] = {
        {"mini-self", 2, 256, 256, 4, 16, 0, 0, 0, 1.0f},
        {"sdxl-self", 2, 1024, 1024, 10, 64, 0, 0, 0, 1.0f},
        {"sdxl-cross", 2, 1024, 77, 10, 64, 0, 0, 0, 1.0f},
        {"tails", 1, 200, 300, 2, 32, 0, 0, 0, 1.0f},
        {"strided", 2, 256, 256, 4, 64, 1, 0, 8, 1.0f},
        {"strided", 2, 130, 130, 2, 64, 1, 3, 3, 1.0f},
        {"sd15", 2, 300, 300, 8, 40, 0, 0, 0, 1.0f},
        {"peaky", 1, 64, 4096, 2, 64, 0, 0, 0, 6.0f},
        {"dh48", 1, 100, 130, 2, 48, 0, 0, 0, 1.0f},
        {"dh80", 1, 100, 130, 2, 80, 0, 0, 0, 1.0f},
        {"dh96", 1, 100, 130, 2, 96, 0, 0, 0, 1.0f},
        {"dh112", 1, 100, 130, 2, 112, 0, 0, 0, 1.0f},
        {"dh128", 1, 100, 130, 2, 128, 0, 0, 0, 1.0f},
        {"single-key", 2, 70, 1, 2, 64, 0, 0, 0, 1.0f},
    };
    unsetenv("UNETLAB_ATTN");
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) test_attention_case(&cases[ci]);
}

/* ---------- timings (information only) ---------- */

/* Mean milliseconds of `reps` back-to-back launches of fn after one warm-up. */
typedef void (*LaunchFn)(void *ctx);
static double time_ms(LaunchFn fn, void *ctx, int reps) {
    cudaEvent_t e0, e1;
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    fn(ctx);
    CUDA_CHECK(cudaEventRecord(e0, S));
    for (int i = 0; i < reps; i++) fn(ctx);
    CUDA_CHECK(cudaEventRecord(e1, S));
    CUDA_CHECK(cudaEventSynchronize(e1));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    CUDA_CHECK(cudaEventDestroy(e0));
    CUDA_CHECK(cudaEventDestroy(e1));
    return ms / reps;
}

typedef struct {
    void *q, *k, *v, *o;
    int64_t B, N, C;
    int heads, dh;
} AttnCtx;

static void attn_launch(void *p) {
    AttnCtx *c = p;
    cuk_attention(c->q, c->C, c->k, c->C, c->v, c->C, c->o, c->C, DTYPE_F16, c->B, c->N, c->N, c->heads, c->dh, S);
}

typedef struct {
    void *x;
    void *g, *b;
    int64_t B, HW, C;
} GnCtx;

static void gn_launch(void *p) {
    GnCtx *c = p;
    cuk_group_norm(c->x, NULL, c->x, DTYPE_F16, c->B, c->HW, c->C, 32, c->g, c->b, 1e-6f, 1, S);
}

/* SDXL's largest self attention (B2, 4096 tokens, 10 heads of 64) in fp16:
 * flash against plain (they must agree), and one SDXL group norm. */
static void test_timings(void) {
    AttnCtx a = {0};
    a.B = 2;
    a.N = 4096;
    a.heads = 10;
    a.dh = 64;
    a.C = 640;
    int64_t n = a.B * a.N * a.C;
    float *h = randbuf(3 * n, "time-attn", 0.0f, 1.0f, DTYPE_F16), *o1 = fbuf(n), *o2 = fbuf(n);
    DBuf dq = upload(h, n, DTYPE_F16, 0), dk = upload(h + n, n, DTYPE_F16, 0), dv = upload(h + 2 * n, n, DTYPE_F16, 0);
    DBuf dout = dbuf((size_t)n * 2, 0);
    a.q = dq.p;
    a.k = dk.p;
    a.v = dv.p;
    a.o = dout.p;
    unsetenv("UNETLAB_ATTN");
    double t_flash = time_ms(attn_launch, &a, 10);
    sync_case("timing flash");
    download(&dout, n, DTYPE_F16, o1);
    setenv("UNETLAB_ATTN", "plain", 1);
    double t_plain = time_ms(attn_launch, &a, 1);
    sync_case("timing plain");
    download(&dout, n, DTYPE_F16, o2);
    unsetenv("UNETLAB_ATTN");
    printf("  timing attention fp16 B2 N4096 h10 dh64: flash-wmma %.3f ms, plain %.3f ms"
           " (PyTorch cuDNN on H100: 0.215 ms)\n", t_flash, t_plain);
    compare("attention fp16 flash-wmma vs plain B2 N4096 h10 dh64", o1, o2, n, tol_of(DTYPE_F16), dbuf_guards_ok(&dout));
    dbuf_free(&dq);
    dbuf_free(&dk);
    dbuf_free(&dv);
    dbuf_free(&dout);
    free(h);
    free(o1);
    free(o2);

    GnCtx g = {0};
    g.B = 2;
    g.HW = 16384;
    g.C = 320;
    int64_t m = g.B * g.HW * g.C;
    float *x = randbuf(m, "time-gn", 0.0f, 1.0f, DTYPE_F16), *gb = randbuf(2 * g.C, "time-gn-gb", 1.0f, 0.1f, DTYPE_F16);
    DBuf dx = upload(x, m, DTYPE_F16, 0), dg = upload(gb, g.C, DTYPE_F16, 0), db = upload(gb + g.C, g.C, DTYPE_F16, 0);
    g.x = dx.p;
    g.g = dg.p;
    g.b = db.p;
    double t_gn = time_ms(gn_launch, &g, 20);
    sync_case("timing group norm");
    printf("  timing group_norm fp16 B2 HW16384 C320 G32 silu in place: %.3f ms (%.0f GB/s at 3 passes)\n", t_gn,
           3.0 * (double)m * 2 / (t_gn * 1e-3) / 1e9);
    dbuf_free(&dx);
    dbuf_free(&dg);
    dbuf_free(&db);
    free(x);
    free(gb);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    char desc[256];
    if (device_probe(desc, sizeof desc) == 0) TEST_SKIP("test_cuda_ops", "%s", desc);
    printf("test_cuda_ops: on %s\n", desc);
    CUDA_CHECK(cudaStreamCreate(&S));
    test_convert();
    test_affine_silu_add();
    test_group_norm();
    test_group_norm_graph();
    test_layer_norm();
    test_geglu();
    test_upsample();
    test_concat();
    test_timestep();
    test_attention();
    test_timings();
    CUDA_CHECK(cudaStreamDestroy(S));
    TEST_MAIN_END("test_cuda_ops");
}
