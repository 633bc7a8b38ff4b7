/* attn_select: see attn_select.h. The candidates are one table (PATHS), in
 * auto's order of preference, each either cuDNN (planned per shape through
 * kernels/cudnn/sdpa.cu) or a kernel with cuk_attention's arguments that
 * returns -1 for what it does not take. A shape's choice is made once and
 * kept, so after the engine's eager warm-up a forward (captured or not) only
 * looks it up. The check runs the candidate on scratch buffers with the real
 * call's shape, strides and pointer alignment, because both cuDNN's engine
 * choice and our kernels' vector paths depend on exactly those. */
#include "attn_select.h"
#include "attn_mma.h"
#include "cuda_check.h"
#include "cuda_ops.h"
#include "sdpa.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
extern "C" {
#include "half.h"
#include "rng.h"
}

/* A kernel path: cuk_attention's arguments; 0 launched, -1 not taken (nothing launched). */
typedef int (*AttnKernelFn)(const void *q, int64_t ldq, const void *k, int64_t ldk, const void *v, int64_t ldv,
                            void *o, int64_t ldo, DType dt, int64_t B, int64_t Nq, int64_t Nk, int heads, int dh,
                            cudaStream_t s);

typedef struct {
    const char *name;               /* the UNETLAB_ATTN value, the log's name */
    AttnKernelFn kernel;            /* NULL: cuDNN's fused attention (sdpa.h) */
    int (*takes)(DType dt, int dh); /* a quick "cannot take" before any scratch is made; NULL: ask kernel */
    const char *needs;              /* what takes() asks for, for messages */
} AttnPath;

/* ---- THE CANDIDATES, in auto's order of expected speed ----
 * A new kernel with cuk_attention's arguments returning 0 / -1 is one line
 * here (plus its header above). Its name becomes a UNETLAB_ATTN value and
 * tests/test_cuda_attn.c times and checks it too. The last entry is the last
 * resort and must take every shape. Expected order (none measured yet):
 * cuDNN's fused attention, then the mma.sync kernel (S and P in registers),
 * then the wmma kernel (S and P through shared memory), then plain. */
static const AttnPath PATHS[] = {
    {"cudnn", NULL, NULL, "fp16/bf16, a head dim multiple of 8, sm_80+ and cuDNN 9"},
    {"mma", cuk_attention_mma, cuk_attention_mma_supported, "fp16/bf16 and a head dim of 64 or 128"},
    {"flash", cuk_attention_flash, cuk_attention_flash_ok, "fp16/bf16 and a head dim multiple of 16 up to 128"},
    {"plain", cuk_attention_plain, NULL, "nothing"},
};
#define NPATHS ((int)(sizeof PATHS / sizeof PATHS[0]))

/* Query rows of the check (each with every head). */
#define CHECK_ROWS 16

typedef struct {
    int64_t dt, B, Nq, Nk, heads, dh, ldq, ldk, ldv, ldo, align;
} SelKey; /* int64_t only: no padding, compared with memcmp */

typedef struct {
    SelKey key;
    int path;
} Choice;

struct AttnSelect {
    cudaStream_t s;
    CudnnSdpa *sdpa; /* made at the first cuDNN candidate */
    Choice *choices;
    int n, cap;
    int counts[NPATHS];
    char desc[256];
};

static int64_t min_align(const void *q, const void *k, const void *v, const void *o) {
    int64_t al = cuda_ptr_align(q);
    const void *ptrs[3] = {k, v, o};
    for (int i = 0; i < 3; i++)
        if (cuda_ptr_align(ptrs[i]) < al) al = cuda_ptr_align(ptrs[i]);
    return al;
}

/* ---- names, environment ---- */

extern "C" int attn_path_count(void) { return NPATHS; }

extern "C" const char *attn_path_name(int path) { return path >= 0 && path < NPATHS ? PATHS[path].name : "?"; }

extern "C" int attn_path_index(const char *name) {
    for (int i = 0; i < NPATHS; i++)
        if (!strcmp(PATHS[i].name, name)) return i;
    return -1;
}

extern "C" const char *attn_select_forced(void) {
    const char *e = getenv("UNETLAB_ATTN");
    if (!e || !*e || !strcmp(e, "auto")) return NULL;
    int i = attn_path_index(e);
    if (i >= 0) return PATHS[i].name;
    char list[256];
    size_t used = (size_t)snprintf(list, sizeof list, "auto");
    for (int j = 0; j < NPATHS && used < sizeof list; j++)
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", j == NPATHS - 1 ? " or " : ", ",
                                 PATHS[j].name);
    die("UNETLAB_ATTN='%s': expected %s", e, list);
}

extern "C" void attn_shape_str(const AttnShape *sh, char *buf, size_t n) {
    snprintf(buf, n, "B%lld Nq%lld Nk%lld h%d d%d %s", (long long)sh->B, (long long)sh->Nq, (long long)sh->Nk,
             sh->heads, sh->dh, dtype_name(sh->dt));
}

extern "C" void attn_check_tolerance(DType dt, double *atol, double *rtol, double *nmse) {
    /* tests/test_cuda_ops.c: fp32 arithmetic order; 4 half ulps; 4 bf16 ulps */
    if (dt == DTYPE_F32) *atol = 1e-5, *rtol = 1e-5, *nmse = 1e-10;
    else if (dt == DTYPE_F16) *atol = 2e-3, *rtol = 2e-3, *nmse = 1e-5;
    else *atol = 1.6e-2, *rtol = 1.6e-2, *nmse = 4e-4;
}

/* ---- launching one path ---- */

/* Whether path can take the shape, as far as is known without running it:
 * a kernel's takes(), cuDNN's planning (which makes the plan the launch then
 * finds: the key holds the pointers' alignment, not the pointers). 0, or -1
 * with why. */
static int path_takes(AttnSelect *a, int path, const AttnShape *sh, const void *q, const void *k, const void *v,
                      const void *o, char *why, size_t whylen) {
    const AttnPath *p = &PATHS[path];
    if (p->kernel) {
        if (p->takes && !p->takes(sh->dt, sh->dh)) {
            snprintf(why, whylen, "the %s kernel needs %s", p->name, p->needs);
            return -1;
        }
        return 0;
    }
    if (!a->sdpa) a->sdpa = cudnn_sdpa_new(a->s);
    return cudnn_sdpa_prepare(a->sdpa, sh->dt, sh->B, sh->Nq, sh->Nk, sh->heads, sh->dh, sh->ldq, sh->ldk, sh->ldv,
                              sh->ldo, q, k, v, o, why, whylen);
}

extern "C" int attn_select_launch(AttnSelect *a, int path, const AttnShape *sh, const void *q, const void *k,
                                  const void *v, void *o, char *why, size_t whylen) {
    if (path < 0 || path >= NPATHS) die("internal: attention path %d of %d", path, NPATHS);
    const AttnPath *p = &PATHS[path];
    if (path_takes(a, path, sh, q, k, v, o, why, whylen) != 0) return -1;
    if (p->kernel) {
        if (p->kernel(q, sh->ldq, k, sh->ldk, v, sh->ldv, o, sh->ldo, sh->dt, sh->B, sh->Nq, sh->Nk, sh->heads,
                      sh->dh, a->s) != 0) {
            snprintf(why, whylen, "the %s kernel does not take these arguments (it needs %s; aligned pointers and "
                     "row strides may matter too)", p->name, p->needs);
            return -1;
        }
        return 0;
    }
    return cudnn_sdpa_exec(a->sdpa, sh->dt, sh->B, sh->Nq, sh->Nk, sh->heads, sh->dh, sh->ldq, sh->ldk, sh->ldv,
                           sh->ldo, q, k, v, o, why, whylen);
}

/* ---- the check ---- */

static float load_dt(const void *p, size_t i, DType dt) {
    if (dt == DTYPE_F32) return ((const float *)p)[i];
    uint16_t h = ((const uint16_t *)p)[i];
    return dt == DTYPE_F16 ? half_to_f32(h) : bf16_to_f32(h);
}

/* n seeded normal values rounded to dt: x (the float values the device sees) and raw (their dt bytes). */
static void fill_input(float *x, void *raw, size_t n, DType dt, const char *name) {
    Rng r = rng_for(20251202, name);
    rng_normal(&r, x, (int64_t)n, 0.0f, 1.0f);
    for (size_t i = 0; i < n; i++) {
        if (dt == DTYPE_F32) {
            ((float *)raw)[i] = x[i];
        } else {
            uint16_t h = dt == DTYPE_F16 ? f32_to_half(x[i]) : f32_to_bf16(x[i]);
            ((uint16_t *)raw)[i] = h;
            x[i] = dt == DTYPE_F16 ? half_to_f32(h) : bf16_to_f32(h);
        }
    }
}

/* The float64 reference for nrows query rows spread over [0, B*Nq), every head, all keys, into
 * ref [nrows][C] (rows[] gets the row indices), from the rounded host inputs. */
static void reference(const AttnShape *sh, const float *hq, const float *hk, const float *hv, int nrows,
                      int64_t *rows, double *ref) {
    const int64_t C = (int64_t)sh->heads * sh->dh, rq = sh->B * sh->Nq;
    const double scale = 1.0 / sqrt((double)sh->dh);
    double *sc = (double *)xmalloc((size_t)sh->Nk * sizeof(double));
    for (int ri = 0; ri < nrows; ri++) {
        const int64_t row = nrows > 1 ? (int64_t)ri * (rq - 1) / (nrows - 1) : 0, b = row / sh->Nq;
        rows[ri] = row;
        for (int h = 0; h < sh->heads; h++) {
            const float *qr = hq + (size_t)(row * sh->ldq) + (size_t)h * sh->dh;
            double m = -INFINITY, l = 0.0;
            for (int64_t j = 0; j < sh->Nk; j++) {
                const float *kr = hk + (size_t)((b * sh->Nk + j) * sh->ldk) + (size_t)h * sh->dh;
                double acc = 0.0;
                for (int d = 0; d < sh->dh; d++) acc += (double)qr[d] * (double)kr[d];
                sc[j] = acc * scale;
                if (sc[j] > m) m = sc[j];
            }
            for (int64_t j = 0; j < sh->Nk; j++) {
                sc[j] = exp(sc[j] - m);
                l += sc[j];
            }
            double *out = ref + (size_t)ri * (size_t)C + (size_t)h * sh->dh;
            for (int d = 0; d < sh->dh; d++) out[d] = 0.0;
            for (int64_t j = 0; j < sh->Nk; j++) {
                const float *vr = hv + (size_t)((b * sh->Nk + j) * sh->ldv) + (size_t)h * sh->dh;
                const double pj = sc[j] / l;
                for (int d = 0; d < sh->dh; d++) out[d] += pj * (double)vr[d];
            }
        }
    }
    free(sc);
}

/* The device output ho (host copy, ldo-strided rows) against ref: r's error fields, finite, pad_ok, pass. */
static void evaluate(const AttnShape *sh, const unsigned char *ho, int nrows, const int64_t *rows, const double *ref,
                     AttnCheck *r) {
    const DType dt = sh->dt;
    const size_t es = dtype_size(dt);
    const int64_t C = (int64_t)sh->heads * sh->dh, rq = sh->B * sh->Nq;
    r->finite = 1;
    r->pad_ok = 1;
    for (int64_t row = 0; row < rq; row++) {
        const unsigned char *orow = ho + (size_t)(row * sh->ldo) * es;
        for (int64_t c = 0; c < C && r->finite; c++)
            if (!isfinite(load_dt(orow, (size_t)c, dt))) r->finite = 0;
        for (size_t b = (size_t)C * es; b < (size_t)sh->ldo * es && r->pad_ok; b++)
            if (orow[b] != 0xFF) r->pad_ok = 0;
    }
    double atol, rtol, tol_nmse, se = 0.0, sr = 0.0;
    attn_check_tolerance(dt, &atol, &rtol, &tol_nmse);
    const size_t cnt = (size_t)nrows * (size_t)C;
    r->max_ref = r->max_err = r->worst = 0.0;
    for (size_t i = 0; i < cnt; i++)
        if (fabs(ref[i]) > r->max_ref) r->max_ref = fabs(ref[i]);
    for (int ri = 0; ri < nrows; ri++)
        for (int64_t c = 0; c < C; c++) {
            const double want = ref[(size_t)ri * (size_t)C + (size_t)c];
            const double got = load_dt(ho + (size_t)(rows[ri] * sh->ldo) * es, (size_t)c, dt);
            const double e = fabs(got - want), bound = atol * r->max_ref + rtol * fabs(want);
            if (!(e <= r->max_err)) r->max_err = e; /* NaN sticks */
            const double w = bound > 0.0 ? e / bound : (e > 0.0 ? INFINITY : 0.0);
            if (!(w <= r->worst)) r->worst = w;
            se += e * e;
            sr += want * want;
        }
    r->nmse = sr > 0.0 ? se / sr : se;
    r->rows = nrows;
    r->pass = r->finite && r->pad_ok && r->worst <= 1.0 && r->nmse <= tol_nmse;
}

extern "C" int attn_select_check(AttnSelect *a, int path, const AttnShape *sh, const void *like_q, const void *like_k,
                                 const void *like_v, const void *like_o, AttnCheck *r, char *why, size_t whylen) {
    memset(r, 0, sizeof *r);
    const DType dt = sh->dt;
    const int64_t C = (int64_t)sh->heads * sh->dh, rq = sh->B * sh->Nq, rk = sh->B * sh->Nk;
    if (sh->B < 1 || sh->Nq < 1 || sh->Nk < 1 || sh->heads < 1 || sh->dh < 1 || sh->ldq < C || sh->ldk < C ||
        sh->ldv < C || sh->ldo < C) {
        snprintf(why, whylen, "no check for an empty shape or row strides under heads * dh");
        return -1;
    }
    if (path < 0 || path >= NPATHS) die("internal: attention path %d of %d", path, NPATHS);
    if (cuda_capturing(a->s)) { /* the check synchronizes the device and captures a graph of its own */
        snprintf(why, whylen, "not checked while the stream is being captured");
        return -1;
    }
    /* before any scratch is made: a path that cannot take the shape costs nothing */
    if (path_takes(a, path, sh, like_q, like_k, like_v, like_o, why, whylen) != 0) return -1;
    const size_t es = dtype_size(dt), nq = (size_t)(rq * sh->ldq), nk = (size_t)(rk * sh->ldk),
                 nv = (size_t)(rk * sh->ldv), no = (size_t)(rq * sh->ldo);
    /* inputs on the host: every element random, padding columns included (a path reading them goes wrong) */
    float *hq = (float *)xmalloc(nq * sizeof(float)), *hk = (float *)xmalloc(nk * sizeof(float)),
          *hv = (float *)xmalloc(nv * sizeof(float));
    void *raw = xmalloc((nq > nk ? (nq > nv ? nq : nv) : (nk > nv ? nk : nv)) * es);
    void *bq, *bk, *bv, *bo;
    char *dq = cuda_scratch_like(&bq, nq * es, like_q), *dk = cuda_scratch_like(&bk, nk * es, like_k),
         *dv = cuda_scratch_like(&bv, nv * es, like_v), *dout = cuda_scratch_like(&bo, no * es, like_o);
    fill_input(hq, raw, nq, dt, "attn-check-q");
    CUDA_CHECK(cudaMemcpy(dq, raw, nq * es, cudaMemcpyHostToDevice));
    fill_input(hk, raw, nk, dt, "attn-check-k");
    CUDA_CHECK(cudaMemcpy(dk, raw, nk * es, cudaMemcpyHostToDevice));
    fill_input(hv, raw, nv, dt, "attn-check-v");
    CUDA_CHECK(cudaMemcpy(dv, raw, nv * es, cudaMemcpyHostToDevice));
    free(raw);
    const int nrows = rq < CHECK_ROWS ? (int)rq : CHECK_ROWS;
    int64_t rows[CHECK_ROWS];
    double *ref = (double *)xmalloc((size_t)nrows * (size_t)C * sizeof(double));
    reference(sh, hq, hk, hv, nrows, rows, ref);
    free(hq);
    free(hk);
    free(hv);
    unsigned char *ho = (unsigned char *)xmalloc(no * es);

    /* 1. eagerly; the output starts as all-ones bytes: NaN in fp32, fp16 and bf16, so an unwritten element shows */
    CUDA_CHECK(cudaMemset(dout, 0xFF, no * es));
    CUDA_CHECK(cudaDeviceSynchronize()); /* the copies are done whatever stream the path runs on */
    int rc = attn_select_launch(a, path, sh, dq, dk, dv, dout, why, whylen);
    if (rc == 0) {
        CUDA_CHECK(cudaStreamSynchronize(a->s));
        CUDA_CHECK(cudaMemcpy(ho, dout, no * es, cudaMemcpyDeviceToHost));
        evaluate(sh, ho, nrows, rows, ref, r);

        /* 2. captured into a CUDA graph and replayed, as the engine's graph mode runs it: a path that cannot
         * be captured (cuDNN may do work at execute time that a capture does not allow) must lose here, where
         * there is a fallback, not in the middle of the engine's capture */
        CUDA_CHECK(cudaMemset(dout, 0xFF, no * es));
        CUDA_CHECK(cudaDeviceSynchronize());
        cudaGraph_t g = NULL;
        cudaGraphExec_t ge = NULL;
        char gwhy[256] = "";
        CUDA_CHECK(cudaStreamBeginCapture(a->s, cudaStreamCaptureModeRelaxed));
        int crc = attn_select_launch(a, path, sh, dq, dk, dv, dout, gwhy, sizeof gwhy);
        cudaError_t ce = cudaStreamEndCapture(a->s, &g);
        if (crc != 0) {
            snprintf(r->graph_note, sizeof r->graph_note, "refused while capturing: %s", gwhy);
        } else if (ce != cudaSuccess || !g) {
            snprintf(r->graph_note, sizeof r->graph_note, "capture failed: %s", cudaGetErrorString(ce));
        } else if ((ce = cudaGraphInstantiate(&ge, g, 0)) != cudaSuccess) {
            snprintf(r->graph_note, sizeof r->graph_note, "graph instantiation failed: %s", cudaGetErrorString(ce));
        } else {
            CUDA_CHECK(cudaGraphLaunch(ge, a->s));
            CUDA_CHECK(cudaStreamSynchronize(a->s));
            CUDA_CHECK(cudaMemcpy(ho, dout, no * es, cudaMemcpyDeviceToHost));
            AttnCheck rg;
            memset(&rg, 0, sizeof rg);
            evaluate(sh, ho, nrows, rows, ref, &rg);
            r->graph_ok = rg.pass;
            if (!rg.pass)
                snprintf(r->graph_note, sizeof r->graph_note,
                         "graph replay wrong: max error %.3g of max |ref| %.3g, nmse %.2g%s%s", rg.max_err, rg.max_ref,
                         rg.nmse, rg.finite ? "" : ", NaN/Inf or unwritten output",
                         rg.pad_ok ? "" : ", wrote past heads * dh");
        }
        if (ge) CUDA_CHECK(cudaGraphExecDestroy(ge));
        if (g) CUDA_CHECK(cudaGraphDestroy(g));
        if (!r->graph_ok) cudaGetLastError(); /* a failed capture is not sticky: leave no error for the next launch check */
        r->pass = r->pass && r->graph_ok;
    } else {
        (void)cudaGetLastError(); /* a refused launch leaves nothing for the next kernel's launch check to blame */
    }
    CUDA_CHECK(cudaFree(bq));
    CUDA_CHECK(cudaFree(bk));
    CUDA_CHECK(cudaFree(bv));
    CUDA_CHECK(cudaFree(bo));
    free(ho);
    free(ref);
    return rc == 0 ? 0 : -1;
}

/* ---- choosing ---- */

static SelKey sel_key(const AttnShape *sh, int64_t align) {
    SelKey k = {(int64_t)sh->dt, sh->B, sh->Nq, sh->Nk, sh->heads, sh->dh, sh->ldq, sh->ldk, sh->ldv, sh->ldo, align};
    return k;
}


static void check_str(const AttnCheck *r, DType dt, char *buf, size_t n) {
    double atol, rtol, nm;
    attn_check_tolerance(dt, &atol, &rtol, &nm);
    snprintf(buf, n, "max error %.3g of max |ref| %.3g over %d rows (%.2f of the bound), nmse %.2g (limit %.0e)%s%s%s%s",
             r->max_err, r->max_ref, r->rows, r->worst, r->nmse, nm, r->finite ? "" : ", NaN/Inf or unwritten output",
             r->pad_ok ? "" : ", wrote past heads * dh", r->graph_ok ? "" : "; in a CUDA graph: ", r->graph_note);
}

/* Decides the path of a new shape (see attn_select.h); returns its index. */
static int decide(AttnSelect *a, const AttnShape *sh, const void *q, const void *k, const void *v, const void *o) {
    char ss[96];
    attn_shape_str(sh, ss, sizeof ss);
    const char *forced = attn_select_forced();
    double t0 = cuda_now_ms();
    if (forced) {
        int pi = attn_path_index(forced);
        const AttnPath *p = &PATHS[pi];
        char why[512];
        if (p->kernel) {
            if (p->takes && !p->takes(sh->dt, sh->dh))
                die("UNETLAB_ATTN=%s: the %s kernel cannot take attention %s (it needs %s)", forced, p->name, ss,
                    p->needs);
        } else {
            if (!a->sdpa) a->sdpa = cudnn_sdpa_new(a->s);
            if (cudnn_sdpa_prepare(a->sdpa, sh->dt, sh->B, sh->Nq, sh->Nk, sh->heads, sh->dh, sh->ldq, sh->ldk,
                                   sh->ldv, sh->ldo, q, k, v, o, why, sizeof why) != 0)
                die("UNETLAB_ATTN=cudnn: cuDNN cannot take attention %s: %s", ss, why);
        }
        if (cuda_lib_log())
            fprintf(stderr, "attention: %s ld %lld/%lld/%lld/%lld align%lld: %s (UNETLAB_ATTN=%s, not checked)\n", ss,
                    (long long)sh->ldq, (long long)sh->ldk, (long long)sh->ldv, (long long)sh->ldo,
                    (long long)min_align(q, k, v, o), p->name, forced);
        return pi;
    }
    if (cuda_capturing(a->s))
        die("attention: shape %s first seen while the stream is being captured (choosing its path runs kernels); "
            "run one forward before capturing",
            ss);
    /* the rejections worth a line even without UNETLAB_LIB_LOG: paths that could have taken the shape */
    char rejected[NPATHS][640];
    int loud[NPATHS] = {0};
    AttnCheck r;
    char detail[512] = "";
    int chosen = NPATHS - 1;
    for (int pi = 0; pi < NPATHS; pi++) {
        const AttnPath *p = &PATHS[pi];
        char why[512];
        rejected[pi][0] = '\0';
        /* fp32 is outside cuDNN's fused attention by design, and takes() failing is a kernel's stated limit:
         * said only in the log; anything else is news for whoever reads stderr */
        int by_design = p->kernel ? (p->takes && !p->takes(sh->dt, sh->dh)) : sh->dt == DTYPE_F32;
        if (attn_select_check(a, pi, sh, q, k, v, o, &r, why, sizeof why) != 0) {
            snprintf(rejected[pi], sizeof rejected[pi], "%s", why);
            loud[pi] = !by_design;
            if (pi == NPATHS - 1) die("internal: the last-resort attention path %s refused %s: %s", p->name, ss, why);
            continue;
        }
        check_str(&r, sh->dt, detail, sizeof detail);
        if (r.pass || pi == NPATHS - 1) {
            chosen = pi;
            if (!r.pass)
                err_warn("attention: even the %s kernel fails its check for %s (%s); using it anyway", p->name, ss,
                         detail);
            break;
        }
        snprintf(rejected[pi], sizeof rejected[pi], "fails its check: %s", detail);
        loud[pi] = 1;
    }
    for (int pi = 0; pi < chosen; pi++)
        if (loud[pi])
            fprintf(stderr, "attention: %s rejected for %s: %s; using %s\n", PATHS[pi].name, ss, rejected[pi],
                    PATHS[chosen].name);
    if (cuda_lib_log()) {
        for (int pi = 0; pi < chosen; pi++)
            if (!loud[pi]) fprintf(stderr, "attention: %s not for %s: %s\n", PATHS[pi].name, ss, rejected[pi]);
        fprintf(stderr, "attention: %s ld %lld/%lld/%lld/%lld align%lld: %s (checked: %s; decided in %.0f ms)\n", ss,
                (long long)sh->ldq, (long long)sh->ldk, (long long)sh->ldv, (long long)sh->ldo,
                (long long)min_align(q, k, v, o), PATHS[chosen].name, detail, cuda_now_ms() - t0);
    }
    return chosen;
}

extern "C" int attn_select_choose(AttnSelect *a, const AttnShape *sh, const void *q, const void *k, const void *v,
                                  const void *o) {
    SelKey key = sel_key(sh, min_align(q, k, v, o));
    for (int i = 0; i < a->n; i++)
        if (!memcmp(&a->choices[i].key, &key, sizeof key)) return a->choices[i].path;
    int path = decide(a, sh, q, k, v, o);
    if (a->n == a->cap) {
        a->cap = a->cap ? 2 * a->cap : 16;
        a->choices = (Choice *)xrealloc(a->choices, (size_t)a->cap * sizeof *a->choices);
    }
    a->choices[a->n].key = key;
    a->choices[a->n].path = path;
    a->n++;
    a->counts[path]++;
    return path;
}

/* ---- public ---- */

extern "C" AttnSelect *attn_select_new(cudaStream_t s) {
    AttnSelect *a = (AttnSelect *)xcalloc(1, sizeof *a);
    a->s = s;
    return a;
}

extern "C" void attn_select_free(AttnSelect *a) {
    if (!a) return;
    if (cuda_lib_log() && a->n) fprintf(stderr, "%s\n", attn_select_describe(a));
    cudnn_sdpa_free(a->sdpa); /* synchronizes the stream */
    free(a->choices);
    free(a);
}

extern "C" void attn_select_run(AttnSelect *a, const void *q, int64_t ldq, const void *k, int64_t ldk, const void *v,
                                int64_t ldv, void *o, int64_t ldo, DType dt, int64_t B, int64_t Nq, int64_t Nk,
                                int heads, int dh) {
    if (B <= 0 || Nq <= 0 || heads <= 0 || dh <= 0) return;
    if (Nk <= 0) { /* zeros, as op_attention: only the plain kernel writes them */
        cuk_attention_plain(q, ldq, k, ldk, v, ldv, o, ldo, dt, B, Nq, 0, heads, dh, a->s);
        return;
    }
    AttnShape sh = {dt, B, Nq, Nk, heads, dh, ldq, ldk, ldv, ldo};
    int path = attn_select_choose(a, &sh, q, k, v, o);
    char why[512];
    if (attn_select_launch(a, path, &sh, q, k, v, o, why, sizeof why) != 0) {
        char ss[96];
        attn_shape_str(&sh, ss, sizeof ss);
        die("attention %s: the %s path chosen for it failed: %s", ss, PATHS[path].name, why);
    }
}

extern "C" const char *attn_select_describe(AttnSelect *a) {
    size_t used = (size_t)snprintf(a->desc, sizeof a->desc, "attention: %d shape%s", a->n, a->n == 1 ? "" : "s");
    int first = 1;
    for (int i = 0; i < NPATHS && used < sizeof a->desc; i++)
        if (a->counts[i]) {
            used += (size_t)snprintf(a->desc + used, sizeof a->desc - used, "%s%s %d", first ? ": " : ", ",
                                     PATHS[i].name, a->counts[i]);
            first = 0;
        }
    return a->desc;
}

size_t attn_select_workspace_bytes(const AttnSelect *a) { return a && a->sdpa ? cudnn_sdpa_workspace_bytes(a->sdpa) : 0; }
