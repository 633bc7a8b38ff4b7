/* test_cuda_attn: the CUDA engine's attention paths (kernels/cuda/attn_select.h):
 * cuDNN's fused attention (kernels/cudnn/sdpa.cu), the flash and the plain
 * kernel (and any path later added to attn_select.cu's table), on SDXL's
 * attention shapes at batch 2 (self attention at 64x64 latents: 4096 tokens,
 * 10 heads of 64; at 32x32: 1024 tokens, 20 heads; cross attention with 77
 * text tokens for both) in fp16 and bf16, plus a fused-QKV strided case and
 * an fp32 one. For each shape, every path that takes it must match a float64
 * host reference (48 query rows spread over the batch, every head, all keys;
 * bounds of attn_check_tolerance, which are tests/test_cuda_ops.c's), write
 * every output element (the output starts as NaN) and nothing else (guard
 * bytes, padding columns), eagerly and replayed from a captured CUDA graph
 * (as the engine's graph mode runs it); then it is timed with CUDA events
 * (median of 10 after 3 warm-ups; the plain kernel on the largest shapes 3
 * after 1). The path auto mode picks must be one that passed, and
 * UNETLAB_ATTN=<path> must pick that path. One line per shape, e.g.
 *   attn fp16 B2 Nq4096 Nk4096 h10 d64: cudnn 0.215 ms, flash 0.610 ms, plain 9.100 ms; auto picks cudnn
 * so that the first GPU run says which path to keep. Skipped without a GPU. */
#include "attn_select.h"
#include "conv.h"
#include "cuda_check.h"
#include "device.h"
#include "dtype.h"
#include "err.h"
#include "half.h"
#include "rng.h"
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
#define REF_ROWS 48
#define MAXP 8 /* paths this test has room for */

static cudaStream_t S;

/* fused: Q, K and V are column slices of one [B*N, 3C + pad] buffer (self attention), else three
 * [B*N, C] buffers; the output has row stride C + opad. */
typedef struct {
    const char *name;
    int64_t B, Nq, Nk;
    int heads, dh, fused;
    int64_t pad, opad;
} Case;

/* One case's buffers: device (each between guard bytes) and host (the rounded values the device holds). */
typedef struct {
    AttnShape sh;
    unsigned char *base[4]; /* q (all three when fused), k, v, o */
    size_t bytes[4];
    const void *q, *k, *v;
    void *o;
    float *hq, *hk, *hv;
    int64_t rows[REF_ROWS];
    int nrows;
    double *ref; /* [nrows][C] */
} Bufs;

static float rnd_dt(float x, DType dt) {
    if (dt == DTYPE_F16) return half_to_f32(f32_to_half(x));
    if (dt == DTYPE_BF16) return bf16_to_f32(f32_to_bf16(x));
    return x;
}

static void pack(const float *x, void *out, size_t n, DType dt) {
    for (size_t i = 0; i < n; i++) {
        if (dt == DTYPE_F32) ((float *)out)[i] = x[i];
        else ((uint16_t *)out)[i] = dt == DTYPE_F16 ? f32_to_half(x[i]) : f32_to_bf16(x[i]);
    }
}

static float unpack(const void *p, size_t i, DType dt) {
    if (dt == DTYPE_F32) return ((const float *)p)[i];
    uint16_t h = ((const uint16_t *)p)[i];
    return dt == DTYPE_F16 ? half_to_f32(h) : bf16_to_f32(h);
}

/* n random normal values rounded to dt (host) and a guarded device copy; returns the device data pointer. */
static unsigned char *upload_guarded(float *x, size_t n, DType dt, const char *name, unsigned char **base,
                                     size_t *bytes) {
    Rng r = rng_for(7, name);
    rng_normal(&r, x, (int64_t)n, 0.0f, 1.0f); /* std 1: logits q.k/sqrt(dh) are N(0, 1), max over 4096 keys ~4 */
    for (size_t i = 0; i < n; i++) x[i] = rnd_dt(x[i], dt);
    size_t es = dtype_size(dt);
    *bytes = n * es;
    CUDA_CHECK(cudaMalloc((void **)base, *bytes + 2 * GUARD));
    CUDA_CHECK(cudaMemset(*base, GUARD_BYTE, *bytes + 2 * GUARD));
    void *h = xmalloc(*bytes);
    pack(x, h, n, dt);
    CUDA_CHECK(cudaMemcpy(*base + GUARD, h, *bytes, cudaMemcpyHostToDevice));
    free(h);
    return *base + GUARD;
}

static void bufs_make(Bufs *b, const Case *c, DType dt) {
    memset(b, 0, sizeof *b);
    int64_t C = (int64_t)c->heads * c->dh, rq = c->B * c->Nq, rk = c->B * c->Nk;
    AttnShape sh = {dt, c->B, c->Nq, c->Nk, c->heads, c->dh, C, C, C, C + c->opad};
    size_t es = dtype_size(dt);
    if (c->fused) {
        int64_t ld = 3 * C + c->pad;
        sh.ldq = sh.ldk = sh.ldv = ld;
        float *f = (float *)xmalloc((size_t)(rq * ld) * sizeof(float));
        unsigned char *d = upload_guarded(f, (size_t)(rq * ld), dt, "attn-fused", &b->base[0], &b->bytes[0]);
        b->q = d;
        b->k = d + (size_t)C * es;
        b->v = d + (size_t)(2 * C) * es;
        b->hq = f;
        b->hk = f + C;
        b->hv = f + 2 * C;
    } else {
        b->hq = (float *)xmalloc((size_t)(rq * C) * sizeof(float));
        b->hk = (float *)xmalloc((size_t)(rk * C) * sizeof(float));
        b->hv = (float *)xmalloc((size_t)(rk * C) * sizeof(float));
        b->q = upload_guarded(b->hq, (size_t)(rq * C), dt, "attn-q", &b->base[0], &b->bytes[0]);
        b->k = upload_guarded(b->hk, (size_t)(rk * C), dt, "attn-k", &b->base[1], &b->bytes[1]);
        b->v = upload_guarded(b->hv, (size_t)(rk * C), dt, "attn-v", &b->base[2], &b->bytes[2]);
    }
    b->bytes[3] = (size_t)(rq * sh.ldo) * es;
    CUDA_CHECK(cudaMalloc((void **)&b->base[3], b->bytes[3] + 2 * GUARD));
    CUDA_CHECK(cudaMemset(b->base[3], GUARD_BYTE, b->bytes[3] + 2 * GUARD));
    b->o = b->base[3] + GUARD;
    b->sh = sh;

    /* the float64 reference on REF_ROWS query rows spread over [0, B*Nq) */
    b->nrows = rq < REF_ROWS ? (int)rq : REF_ROWS;
    b->ref = (double *)xmalloc((size_t)b->nrows * (size_t)C * sizeof(double));
    double *sc = (double *)xmalloc((size_t)c->Nk * sizeof(double)), scale = 1.0 / sqrt((double)c->dh);
    for (int ri = 0; ri < b->nrows; ri++) {
        int64_t row = b->nrows > 1 ? (int64_t)ri * (rq - 1) / (b->nrows - 1) : 0, bi = row / c->Nq;
        b->rows[ri] = row;
        for (int h = 0; h < c->heads; h++) {
            const float *qr = b->hq + (size_t)(row * sh.ldq) + (size_t)h * c->dh;
            double m = -INFINITY, l = 0.0;
            for (int64_t j = 0; j < c->Nk; j++) {
                const float *kr = b->hk + (size_t)((bi * c->Nk + j) * sh.ldk) + (size_t)h * c->dh;
                double acc = 0.0;
                for (int d = 0; d < c->dh; d++) acc += (double)qr[d] * kr[d];
                sc[j] = acc * scale;
                if (sc[j] > m) m = sc[j];
            }
            for (int64_t j = 0; j < c->Nk; j++) l += (sc[j] = exp(sc[j] - m));
            double *out = b->ref + (size_t)ri * (size_t)C + (size_t)h * c->dh;
            for (int d = 0; d < c->dh; d++) out[d] = 0.0;
            for (int64_t j = 0; j < c->Nk; j++) {
                const float *vr = b->hv + (size_t)((bi * c->Nk + j) * sh.ldv) + (size_t)h * c->dh;
                for (int d = 0; d < c->dh; d++) out[d] += sc[j] / l * vr[d];
            }
        }
    }
    free(sc);
}

static void bufs_free(Bufs *b) {
    for (int i = 0; i < 4; i++)
        if (b->base[i]) CUDA_CHECK(cudaFree(b->base[i]));
    int fused = b->hk == b->hq + (size_t)b->sh.heads * (size_t)b->sh.dh; /* one host array for all three */
    free(b->hq);
    if (!fused) {
        free(b->hk);
        free(b->hv);
    }
    free(b->ref);
    memset(b, 0, sizeof *b);
}

/* Everything but the output's data region stays GUARD_BYTE; the output data starts as 0xFF bytes (NaN). */
static void reset_output(Bufs *b) { CUDA_CHECK(cudaMemset(b->o, 0xFF, b->bytes[3])); }

static int guards_ok(const Bufs *b) {
    unsigned char g[GUARD];
    for (int i = 0; i < 4; i++) {
        if (!b->base[i]) continue;
        for (int side = 0; side < 2; side++) {
            CUDA_CHECK(cudaMemcpy(g, b->base[i] + (side ? GUARD + b->bytes[i] : 0), GUARD, cudaMemcpyDeviceToHost));
            for (int j = 0; j < GUARD; j++)
                if (g[j] != GUARD_BYTE) return 0;
        }
    }
    return 1;
}

typedef struct {
    int ok;
    double max_abs, ref_max, nmse;
} Verdict;

/* The output of the last launch against the reference, with every check that test_cuda_ops makes. */
static Verdict verify(const Bufs *b, const char *label) {
    const AttnShape *sh = &b->sh;
    DType dt = sh->dt;
    size_t es = dtype_size(dt);
    int64_t C = (int64_t)sh->heads * sh->dh, rq = sh->B * sh->Nq;
    unsigned char *h = (unsigned char *)xmalloc(b->bytes[3]);
    CUDA_CHECK(cudaMemcpy(h, b->o, b->bytes[3], cudaMemcpyDeviceToHost));
    int64_t nonfinite = 0, padbad = 0, bad = 0;
    for (int64_t r = 0; r < rq; r++) {
        const unsigned char *orow = h + (size_t)(r * sh->ldo) * es;
        for (int64_t c = 0; c < C; c++)
            if (!isfinite(unpack(orow, (size_t)c, dt))) nonfinite++;
        for (size_t x = (size_t)C * es; x < (size_t)sh->ldo * es; x++)
            if (orow[x] != 0xFF) padbad++;
    }
    double atol, rtol, tnmse, refmax = 0, num = 0, den = 0, max_abs = 0;
    attn_check_tolerance(dt, &atol, &rtol, &tnmse);
    size_t n = (size_t)b->nrows * (size_t)C;
    for (size_t i = 0; i < n; i++)
        if (fabs(b->ref[i]) > refmax) refmax = fabs(b->ref[i]);
    for (int ri = 0; ri < b->nrows; ri++)
        for (int64_t c = 0; c < C; c++) {
            double g = unpack(h + (size_t)(b->rows[ri] * sh->ldo) * es, (size_t)c, dt),
                   r = b->ref[(size_t)ri * (size_t)C + (size_t)c], e = fabs(g - r);
            if (!isfinite(g)) continue; /* counted above */
            num += e * e;
            den += r * r;
            if (e > max_abs) max_abs = e;
            if (e > atol * refmax + rtol * fabs(r)) bad++;
        }
    free(h);
    double nmse = den > 0 ? num / den : num;
    int gok = guards_ok(b);
    Verdict v = {nonfinite == 0 && padbad == 0 && bad == 0 && nmse <= tnmse && gok, max_abs, refmax, nmse};
    printf("  %-62s max_abs %.2e (ref max %.2e) nmse %.2e %s\n", label, max_abs, refmax, nmse, v.ok ? "ok" : "FAIL");
    CHECK_MSG(nonfinite == 0, "%s: %lld output elements NaN/Inf or never written", label, (long long)nonfinite);
    CHECK_MSG(padbad == 0, "%s: %lld padding bytes of the output written", label, (long long)padbad);
    CHECK_MSG(bad == 0, "%s: %lld sampled elements out of tolerance", label, (long long)bad);
    CHECK_MSG(nmse <= tnmse, "%s: nmse %.3g > %.3g", label, nmse, tnmse);
    CHECK_MSG(gok, "%s: guard bytes around a buffer were overwritten", label);
    return v;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* Median milliseconds of reps launches (each between its own pair of events) after warm warm-ups. */
static double time_path(AttnSelect *a, int path, Bufs *b, int warm, int reps) {
    char why[512];
    for (int i = 0; i < warm; i++)
        if (attn_select_launch(a, path, &b->sh, b->q, b->k, b->v, b->o, why, sizeof why) != 0) return -1.0;
    cudaEvent_t ev[2 * 16];
    if (reps > 16) reps = 16;
    for (int i = 0; i < 2 * reps; i++) CUDA_CHECK(cudaEventCreate(&ev[i]));
    int ok = 1;
    for (int i = 0; i < reps && ok; i++) {
        CUDA_CHECK(cudaEventRecord(ev[2 * i], S));
        ok = attn_select_launch(a, path, &b->sh, b->q, b->k, b->v, b->o, why, sizeof why) == 0;
        CUDA_CHECK(cudaEventRecord(ev[2 * i + 1], S));
    }
    CUDA_CHECK(cudaStreamSynchronize(S));
    float ms[16];
    for (int i = 0; i < reps && ok; i++) CUDA_CHECK(cudaEventElapsedTime(&ms[i], ev[2 * i], ev[2 * i + 1]));
    for (int i = 0; i < 2 * reps; i++) CUDA_CHECK(cudaEventDestroy(ev[i]));
    if (!ok) return -1.0;
    qsort(ms, (size_t)reps, sizeof ms[0], cmp_float);
    return reps % 2 ? ms[reps / 2] : 0.5 * (ms[reps / 2 - 1] + ms[reps / 2]);
}

static void sync_case(const char *label) {
    cudaError_t e = cudaStreamSynchronize(S);
    if (e != cudaSuccess) die("%s: %s (%s)", label, cudaGetErrorString(e), cudaGetErrorName(e));
}

/* One launch of path captured into a CUDA graph (relaxed mode, as the engine's graph mode) and replayed
 * once; 0 when it replayed (the output is then the replay's), -1 with why. */
static int graph_replay(AttnSelect *sel, int path, Bufs *b, char *why, size_t n) {
    cudaGraph_t g = NULL;
    cudaGraphExec_t ge = NULL;
    CUDA_CHECK(cudaStreamBeginCapture(S, cudaStreamCaptureModeRelaxed));
    int rc = attn_select_launch(sel, path, &b->sh, b->q, b->k, b->v, b->o, why, n);
    cudaError_t ce = cudaStreamEndCapture(S, &g);
    if (rc == 0 && (ce != cudaSuccess || !g)) {
        snprintf(why, n, "capture failed: %s", cudaGetErrorString(ce));
        rc = -1;
    }
    if (rc == 0 && (ce = cudaGraphInstantiate(&ge, g, 0)) != cudaSuccess) {
        snprintf(why, n, "instantiation failed: %s", cudaGetErrorString(ce));
        rc = -1;
    }
    if (rc == 0) CUDA_CHECK(cudaGraphLaunch(ge, S));
    if (ge) CUDA_CHECK(cudaGraphExecDestroy(ge));
    if (g) CUDA_CHECK(cudaGraphDestroy(g));
    if (rc != 0) cudaGetLastError(); /* a failed capture is not sticky */
    return rc;
}

/* One shape: every path (correctness, then timing), auto's pick, the forced picks. */
static void test_case(AttnSelect *sel, const Case *c, DType dt) {
    double t0 = cuda_now_ms();
    Bufs b;
    bufs_make(&b, c, dt);
    char head[160];
    snprintf(head, sizeof head, "attn %s B%lld Nq%lld Nk%lld h%d d%d%s", dtype_name(dt), (long long)c->B,
             (long long)c->Nq, (long long)c->Nk, c->heads, c->dh, c->fused ? " fused-qkv" : "");
    int np = attn_path_count();
    if (np > MAXP) np = MAXP;
    int passed[MAXP] = {0}, ran[MAXP] = {0};
    double ms[MAXP];
    char why[MAXP][512];
    for (int p = 0; p < np; p++) {
        char label[224];
        snprintf(label, sizeof label, "%s %s", head, attn_path_name(p));
        reset_output(&b);
        why[p][0] = '\0';
        if (attn_select_launch(sel, p, &b.sh, b.q, b.k, b.v, b.o, why[p], sizeof why[p]) != 0) {
            printf("  %-62s not taken: %s\n", label, why[p]);
            ms[p] = -1.0;
            continue;
        }
        ran[p] = 1;
        sync_case(label);
        passed[p] = verify(&b, label).ok;
        /* the engine's graph mode replays it from a capture: that must work and give the same answer */
        char glabel[240], gwhy[512];
        snprintf(glabel, sizeof glabel, "%s in a CUDA graph", label);
        reset_output(&b);
        CUDA_CHECK(cudaDeviceSynchronize());
        int grc = graph_replay(sel, p, &b, gwhy, sizeof gwhy);
        CHECK_MSG(grc == 0, "%s: %s", glabel, gwhy);
        if (grc == 0) {
            sync_case(glabel);
            passed[p] = verify(&b, glabel).ok && passed[p];
        } else {
            printf("  %-62s FAIL: %s\n", glabel, gwhy);
            passed[p] = 0;
        }
        /* the plain kernel is ~100x slower on the biggest shapes: fewer repeats keep the test short */
        double work = (double)c->B * c->heads * (double)c->Nq * (double)c->Nk * c->dh;
        int slow = !strcmp(attn_path_name(p), "plain") && work > 1e9;
        ms[p] = time_path(sel, p, &b, slow ? 1 : 3, slow ? 3 : 10);
        CHECK_MSG(ms[p] >= 0.0, "%s: a timed launch was refused after the first one ran", label);
    }
    /* the last path takes every shape */
    CHECK_MSG(ran[np - 1], "%s: the last-resort path %s refused: %s", head, attn_path_name(np - 1), why[np - 1]);

    /* auto: a fresh choice for this shape must be a path that passed above */
    unsetenv("UNETLAB_ATTN");
    int pick = attn_select_choose(sel, &b.sh, b.q, b.k, b.v, b.o);
    CHECK_MSG(pick >= 0 && pick < np && passed[pick], "%s: auto picks %s, which did not pass here", head,
              attn_path_name(pick));
    /* and it runs through attn_select_run as the engine calls it */
    reset_output(&b);
    attn_select_run(sel, b.q, b.sh.ldq, b.k, b.sh.ldk, b.v, b.sh.ldv, b.o, b.sh.ldo, dt, b.sh.B, b.sh.Nq, b.sh.Nk,
                    b.sh.heads, b.sh.dh);
    char label[224];
    snprintf(label, sizeof label, "%s auto (%s) via attn_select_run", head, attn_path_name(pick));
    sync_case(label);
    verify(&b, label);

    char line[512];
    size_t used = (size_t)snprintf(line, sizeof line, "%s:", head);
    for (int p = 0; p < np && used < sizeof line; p++) {
        if (ms[p] >= 0.0)
            used += (size_t)snprintf(line + used, sizeof line - used, "%s %s %.3f ms%s", p ? "," : "",
                                     attn_path_name(p), ms[p], passed[p] ? "" : " (WRONG)");
        else
            used += (size_t)snprintf(line + used, sizeof line - used, "%s %s n/a", p ? "," : "", attn_path_name(p));
    }
    printf("%s; auto picks %s (%.1f s)\n", line, attn_path_name(pick), (cuda_now_ms() - t0) * 1e-3);
    bufs_free(&b);
}

/* UNETLAB_ATTN: the parse, and each forced path picked for a shape it takes
 * (sel, whose cuDNN plans are kept, says which paths take it). */
static void test_forced(AttnSelect *sel) {
    unsetenv("UNETLAB_ATTN");
    CHECK(attn_select_forced() == NULL);
    setenv("UNETLAB_ATTN", "", 1);
    CHECK(attn_select_forced() == NULL);
    setenv("UNETLAB_ATTN", "auto", 1);
    CHECK(attn_select_forced() == NULL);
    for (int p = 0; p < attn_path_count(); p++) {
        setenv("UNETLAB_ATTN", attn_path_name(p), 1);
        const char *f = attn_select_forced();
        CHECK_MSG(f && !strcmp(f, attn_path_name(p)), "UNETLAB_ATTN=%s parsed as %s", attn_path_name(p),
                  f ? f : "auto");
    }
    unsetenv("UNETLAB_ATTN");

    const Case c = {"forced", 2, 256, 77, 4, 64, 0, 0, 0};
    {
        DType dt = DTYPE_F16;
        Bufs b;
        bufs_make(&b, &c, dt);
        for (int p = 0; p < attn_path_count(); p++) {
            /* forcing a path that cannot take the shape stops the program: only those that can */
            char why[512];
            int takes = attn_select_launch(sel, p, &b.sh, b.q, b.k, b.v, b.o, why, sizeof why) == 0;
            sync_case("forced probe");
            if (!takes) {
                printf("  forced %s %s: not taken (%s)\n", dtype_name(dt), attn_path_name(p), why);
                continue;
            }
            setenv("UNETLAB_ATTN", attn_path_name(p), 1);
            AttnSelect *f = attn_select_new(S);
            int pick = attn_select_choose(f, &b.sh, b.q, b.k, b.v, b.o);
            CHECK_MSG(pick == p, "UNETLAB_ATTN=%s picks %s", attn_path_name(p), attn_path_name(pick));
            reset_output(&b);
            attn_select_run(f, b.q, b.sh.ldq, b.k, b.sh.ldk, b.v, b.sh.ldv, b.o, b.sh.ldo, dt, b.sh.B, b.sh.Nq,
                            b.sh.Nk, b.sh.heads, b.sh.dh);
            char label[160];
            snprintf(label, sizeof label, "forced UNETLAB_ATTN=%s %s B2 Nq256 Nk77 h4 d64", attn_path_name(p),
                     dtype_name(dt));
            sync_case(label);
            verify(&b, label);
            const char *d = attn_select_describe(f);
            char want[64];
            snprintf(want, sizeof want, "attention: 1 shape: %s 1", attn_path_name(p));
            CHECK_MSG(!strcmp(d, want), "describe '%s', want '%s'", d, want);
            attn_select_free(f);
            unsetenv("UNETLAB_ATTN");
        }
        bufs_free(&b);
    }
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    char desc[256];
    if (device_probe(desc, sizeof desc) == 0) TEST_SKIP("test_cuda_attn", "%s", desc);
    printf("test_cuda_attn: on %s, %s\n", desc, cudnn_conv_version());
    CUDA_CHECK(cudaStreamCreate(&S));
    unsetenv("UNETLAB_ATTN");
    double t0 = cuda_now_ms();

    AttnSelect *sel = attn_select_new(S);
    test_forced(sel);

    static const Case sdxl[] = {
        {"self 64x64", 2, 4096, 4096, 10, 64, 0, 0, 0},
        {"cross 64x64", 2, 4096, 77, 10, 64, 0, 0, 0},
        {"self 32x32", 2, 1024, 1024, 20, 64, 0, 0, 0},
        {"cross 32x32", 2, 1024, 77, 20, 64, 0, 0, 0},
    };
    int shapes = 0;
    for (int di = 0; di < 2; di++)
        for (size_t ci = 0; ci < sizeof sdxl / sizeof sdxl[0]; ci++, shapes++)
            test_case(sel, &sdxl[ci], di ? DTYPE_BF16 : DTYPE_F16);
    /* Q, K and V as column slices of one fused projection, an output with padding columns: the strides reach
     * every path (cuDNN's included) as they would from a fused QKV linear */
    const Case fused = {"fused", 2, 256, 256, 4, 64, 1, 8, 8};
    test_case(sel, &fused, DTYPE_F16);
    shapes++;
    /* fp32: cuDNN's fused attention does not take it (said, not a failure); the plain kernel does */
    const Case f32 = {"fp32", 1, 128, 77, 2, 64, 0, 0, 0};
    test_case(sel, &f32, DTYPE_F32);
    shapes++;

    const char *d = attn_select_describe(sel);
    char want[64];
    snprintf(want, sizeof want, "attention: %d shapes: ", shapes);
    CHECK_MSG(!strncmp(d, want, strlen(want)), "describe '%s', want it to start '%s'", d, want);
    printf("  %s (%.1f s in all)\n", d, (cuda_now_ms() - t0) * 1e-3);
    attn_select_free(sel);
    CUDA_CHECK(cudaStreamDestroy(S));
    TEST_MAIN_END("test_cuda_attn");
}
