/* conv: see conv.h. cuDNN 9's legacy convolution API (libcudnn_cnn).
 * Planning, at the first use of a shape (key: B, H, W, Cin, Cout, k, stride,
 * dtype, bias?, res?, pointer alignment), on scratch outputs:
 *  1. cudnnFindConvolutionForwardAlgorithmEx times the algorithms; the fastest
 *     that runs becomes the unfused path: cudnnConvolutionForward (beta 1 when
 *     res == y, so the residual is accumulated in place), then one elementwise
 *     pass adding bias (and res when res != y).
 *  2. The fused path, cudnnConvolutionBiasActivationForward with an identity
 *     activation, y = conv(x) + alpha2 * z + bias (identity requires
 *     IMPLICIT_PRECOMP_GEMM), z = res (z may alias y) or alpha2 0. It is kept
 *     only if it runs, matches the unfused result (an output poisoned with
 *     NaN for alpha2 0; z aliasing y for a residual) and is not slower.
 * fp32 runs CUDNN_FMA_MATH (no TF32) and only the GEMM-family algorithms, so
 * no Winograd/FFT transform rounding; fp16/bf16 allow tensor cores. All
 * three accumulate in fp32 (convolution compute type FLOAT). A planned shape
 * makes no cuDNN planning call again; planning refuses to run while the
 * stream is being captured. Workspaces are never freed while a graph may
 * still use them (grown ones are retired, freed with the engine).
 * The choices (algorithm, math, fused or not, workspace) are also kept for
 * the process: a second engine (another model, another dtype's run of the
 * same shapes) meeting a key already planned makes its descriptors and
 * skips Find and the timings, so a process planning SDXL's ~30 shapes
 * once pays for it once.
 * UNETLAB_LIB_LOG=1 prints one line per plan to stderr. */
#include "conv.h"
#include "cuda_check.h"
#include "cuda_ops.h"
#include "half.h"
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cudnn.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CUDNN_CHECK(call)                                                                              \
    do {                                                                                               \
        cudnnStatus_t st_ = (call);                                                                    \
        if (st_ != CUDNN_STATUS_SUCCESS) {                                                             \
            char m_[512];                                                                              \
            m_[0] = '\0';                                                                              \
            cudnnGetLastErrorString(m_, sizeof m_);                                                    \
            die("%s failed at %s:%d: %s%s%s", #call, __FILE__, __LINE__, cudnnGetErrorString(st_),     \
                m_[0] ? ": " : "", m_);                                                                \
        }                                                                                              \
    } while (0)

/* Largest workspace an algorithm may use (and what Find is offered). */
#define CONV_WS_MAX ((size_t)64 << 20)
#define CONV_MAX_ALGOS 16

typedef struct {
    int64_t B, H, W, Cin, Cout, k, stride, dt, has_res, has_bias, align;
} ConvKey; /* int64_t only: no padding, compared with memcmp */

typedef struct {
    ConvKey key;
    int64_t Ho, Wo, ny;
    cudnnTensorDescriptor_t xd, yd, bd;
    cudnnFilterDescriptor_t wd;
    cudnnConvolutionDescriptor_t cd;
    int fused;
    cudnnConvolutionFwdAlgo_t algo; /* the unfused path's algorithm */
} ConvPlan;

struct CudnnConv {
    cudnnHandle_t h;
    cudaStream_t s;
    cudnnActivationDescriptor_t act;
    CudaWorkspace ws;
    ConvPlan **plans;
    int nplans, cap;
};

/* What planning decided for a key, remembered for the process (single-threaded use, as the engines). */
typedef struct {
    ConvKey key;
    cudnnConvolutionFwdAlgo_t algo;
    cudnnMathType_t math;
    cudnnTensorFormat_t bias_fmt;
    int fused;
    size_t ws;
} ConvChoice;
static ConvChoice *g_choices;
static int g_nchoices, g_capchoices;

static const ConvChoice *choice_find(const ConvKey *k) {
    for (int i = 0; i < g_nchoices; i++)
        if (!memcmp(&g_choices[i].key, k, sizeof *k)) return &g_choices[i];
    return NULL;
}

static void choice_keep(const ConvChoice *c) {
    if (g_nchoices == g_capchoices) {
        g_capchoices = g_capchoices ? 2 * g_capchoices : 32;
        g_choices = (ConvChoice *)xrealloc(g_choices, (size_t)g_capchoices * sizeof *g_choices);
    }
    g_choices[g_nchoices++] = *c;
}

static cudnnDataType_t cudnn_type(DType dt) {
    return dt == DTYPE_F32 ? CUDNN_DATA_FLOAT : dt == DTYPE_F16 ? CUDNN_DATA_HALF : CUDNN_DATA_BFLOAT16;
}

static void key_str(const ConvKey *k, char *buf, size_t n) {
    snprintf(buf, n, "%s B%lld %lldx%lld %lld->%lld k%lld s%lld%s%s align%lld", dtype_name((DType)k->dt),
             (long long)k->B, (long long)k->H, (long long)k->W, (long long)k->Cin, (long long)k->Cout,
             (long long)k->k, (long long)k->stride, k->has_bias ? " bias" : "", k->has_res ? " res" : "",
             (long long)k->align);
}

/* ---- the two execution paths (return the cuDNN status, never die) ---- */

static cudnnStatus_t exec_unfused(CudnnConv *c, const ConvPlan *p, const void *x, const void *w, const void *bias,
                                  const void *res, void *y) {
    const float one = 1.0f, zero = 0.0f;
    cudnnStatus_t st = cudnnConvolutionForward(c->h, &one, p->xd, x, p->wd, w, p->cd, p->algo, c->ws.p, c->ws.bytes,
                                               res == y ? &one : &zero, p->yd, y);
    if (st != CUDNN_STATUS_SUCCESS) return st;
    const void *r = res == y ? NULL : res;
    if (bias || r) /* the bias / residual pass (kernels/cuda/ops_kernels.cuh) */
        cuk_bias_res(y, bias, r, (DType)p->key.dt, p->ny / p->key.Cout, p->key.Cout, c->s);
    return st;
}

static cudnnStatus_t exec_fused(CudnnConv *c, const ConvPlan *p, const void *x, const void *w, const void *bias,
                                const void *res, void *y) {
    const float one = 1.0f, zero = 0.0f;
    /* without a residual z is y with alpha2 0: planning checked it is not read */
    return cudnnConvolutionBiasActivationForward(c->h, &one, p->xd, x, p->wd, w, p->cd,
                                                 CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, c->ws.p, c->ws.bytes,
                                                 res ? &one : &zero, p->yd, res ? res : y, p->bd, bias, c->act, p->yd,
                                                 y);
}

static cudnnStatus_t exec_path(CudnnConv *c, const ConvPlan *p, int fused, const void *x, const void *w,
                               const void *bias, const void *res, void *y) {
    return fused ? exec_fused(c, p, x, w, bias, res, y) : exec_unfused(c, p, x, w, bias, res, y);
}

/* ---- planning ---- */

static void ensure_ws(CudnnConv *c, size_t need) { cuda_ws_ensure(&c->ws, need); }

static float elem(const void *p, int64_t i, DType dt) {
    if (dt == DTYPE_F32) return ((const float *)p)[i];
    uint16_t v = ((const uint16_t *)p)[i];
    return dt == DTYPE_F16 ? half_to_f32(v) : bf16_to_f32(v);
}

/* Whether got (device layout, dtype dt) matches want within a loose bound:
 * this guards against a path that is wrong (missing bias, z read with
 * alpha2 0, bad aliasing), not against rounding. */
static int close_enough(const void *got, const float *want, int64_t n, DType dt) {
    double tol = dt == DTYPE_F32 ? 1e-4 : dt == DTYPE_F16 ? 1e-2 : 5e-2;
    double mx = 0.0, md = 0.0;
    for (int64_t i = 0; i < n; i++) {
        float g = elem(got, i, dt), e = want[i];
        if (!isfinite(g) || !isfinite(e)) return 0;
        mx = fmax(mx, fabs((double)e));
        md = fmax(md, fabs((double)g - (double)e));
    }
    return md <= tol * mx;
}

static float time_path(CudnnConv *c, const ConvPlan *p, int fused, const void *x, const void *w, const void *bias,
                       const void *res, void *y) {
    const int reps = 5;
    cudaEvent_t e0, e1;
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    CUDNN_CHECK(exec_path(c, p, fused, x, w, bias, res, y)); /* warm-up */
    CUDA_CHECK(cudaEventRecord(e0, c->s));
    for (int r = 0; r < reps; r++) CUDNN_CHECK(exec_path(c, p, fused, x, w, bias, res, y));
    CUDA_CHECK(cudaEventRecord(e1, c->s));
    CUDA_CHECK(cudaEventSynchronize(e1));
    float ms = 0.0f;
    CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    CUDA_CHECK(cudaEventDestroy(e0));
    CUDA_CHECK(cudaEventDestroy(e1));
    return ms / reps;
}

static int gemm_family(cudnnConvolutionFwdAlgo_t a) {
    return a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM || a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM ||
           a == CUDNN_CONVOLUTION_FWD_ALGO_GEMM || a == CUDNN_CONVOLUTION_FWD_ALGO_DIRECT;
}

static ConvPlan *plan_conv(CudnnConv *c, const ConvKey *key, const void *x, const void *w, const void *bias,
                           const void *res, const void *y) {
    char ks[160];
    key_str(key, ks, sizeof ks);
    if (cuda_capturing(c->s))
        die("cudnn_conv_forward: shape %s first seen while the stream is being captured (planning runs "
            "kernels); run one forward before capturing",
            ks);
    double t0 = cuda_now_ms();
    DType dt = (DType)key->dt;
    int64_t B = key->B, H = key->H, W = key->W, Cin = key->Cin, Cout = key->Cout, k = key->k, st = key->stride;
    int64_t pad = (k - 1) / 2, Ho = (H + 2 * pad - k) / st + 1, Wo = (W + 2 * pad - k) / st + 1;
    if (Ho < 1 || Wo < 1) die("cudnn_conv_forward %s: empty output", ks);
    int64_t cmax = Cin > Cout ? Cin : Cout;
    if (B * H * W * cmax > INT_MAX || B * Ho * Wo * cmax > INT_MAX || Cout * k * k * Cin > INT_MAX)
        die("cudnn_conv_forward %s: tensor too large for cuDNN's int descriptors", ks);

    ConvPlan *p = (ConvPlan *)xcalloc(1, sizeof *p);
    p->key = *key;
    p->Ho = Ho;
    p->Wo = Wo;
    p->ny = B * Ho * Wo * Cout;
    cudnnDataType_t t = cudnn_type(dt);
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->xd));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->yd));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->bd));
    CUDNN_CHECK(cudnnCreateFilterDescriptor(&p->wd));
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&p->cd));
    /* dims are given in N, C, H, W order; the format says the memory is NHWC (KRSC for the filter) */
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->xd, CUDNN_TENSOR_NHWC, t, (int)B, (int)Cin, (int)H, (int)W));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->yd, CUDNN_TENSOR_NHWC, t, (int)B, (int)Cout, (int)Ho, (int)Wo));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->bd, CUDNN_TENSOR_NHWC, t, 1, (int)Cout, 1, 1));
    CUDNN_CHECK(cudnnSetFilter4dDescriptor(p->wd, t, CUDNN_TENSOR_NHWC, (int)Cout, (int)Cin, (int)k, (int)k));
    CUDNN_CHECK(cudnnSetConvolution2dDescriptor(p->cd, (int)pad, (int)pad, (int)st, (int)st, 1, 1,
                                                CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    int on, oc, oh, ow;
    CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(p->cd, p->xd, p->wd, &on, &oc, &oh, &ow));
    if (on != B || oc != Cout || oh != Ho || ow != Wo)
        die("cudnn_conv_forward %s: cuDNN output %dx%dx%dx%d, expected %lldx%lldx%lldx%lld", ks, on, oc, oh, ow,
            (long long)B, (long long)Cout, (long long)Ho, (long long)Wo);

    const ConvChoice *known = choice_find(key);
    if (known) { /* planned before in this process: the same decisions, no Find, no timing */
        p->algo = known->algo;
        p->fused = known->fused;
        CUDNN_CHECK(cudnnSetConvolutionMathType(p->cd, known->math));
        CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->bd, known->bias_fmt, t, 1, (int)Cout, 1, 1));
        ensure_ws(c, known->ws);
        if (cuda_lib_log())
            fprintf(stderr, "cudnn plan %s: %s (algo %d math %d), the process's earlier choice; ws %zu B\n", ks,
                    p->fused ? "fused" : "unfused", (int)p->algo, (int)known->math, c->ws.bytes);
        return p;
    }

    /* scratch outputs (and a zero residual) at the real call's alignment; x and w are the real ones */
    size_t ybytes = (size_t)p->ny * dtype_size(dt);
    void *ba = NULL, *bb = NULL, *br = NULL, *fws = NULL;
    char *ya = cuda_scratch_like(&ba, ybytes, y), *yb = cuda_scratch_like(&bb, ybytes, y), *rbuf = NULL;
    if (res) {
        rbuf = cuda_scratch_like(&br, ybytes, res);
        CUDA_CHECK(cudaMemsetAsync(rbuf, 0, ybytes, c->s));
    }
    CUDA_CHECK(cudaStreamSynchronize(c->s)); /* x is ready whatever stream Find uses */

    /* 1. the unfused path: the fastest algorithm that runs (beta 0 and beta 1) */
    cudnnMathType_t base_math = dt == DTYPE_F32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH;
    CUDNN_CHECK(cudnnSetConvolutionMathType(p->cd, base_math));
    int maxc = 0, nperf = 0;
    CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(c->h, &maxc));
    if (maxc > CONV_MAX_ALGOS) maxc = CONV_MAX_ALGOS;
    if (maxc < 1) maxc = 1;
    cudnnConvolutionFwdAlgoPerf_t perf[CONV_MAX_ALGOS];
    CUDA_CHECK(cudaMalloc(&fws, CONV_WS_MAX));
    CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(c->h, p->xd, x, p->wd, w, p->cd, p->yd, ya, maxc, &nperf, perf,
                                                       fws, CONV_WS_MAX));
    CUDA_CHECK(cudaStreamSynchronize(c->s));
    CUDA_CHECK(cudaFree(fws));
    int chosen = -1;
    cudnnMathType_t umath = base_math;
    for (int i = 0; i < nperf && chosen < 0; i++) {
        if (perf[i].status != CUDNN_STATUS_SUCCESS || perf[i].memory > CONV_WS_MAX) continue;
        if (dt == DTYPE_F32 && !gemm_family(perf[i].algo)) continue;
        umath = dt == DTYPE_F32 ? CUDNN_FMA_MATH : perf[i].mathType;
        CUDNN_CHECK(cudnnSetConvolutionMathType(p->cd, umath));
        p->algo = perf[i].algo;
        size_t need = perf[i].memory, q = 0;
        if (cudnnGetConvolutionForwardWorkspaceSize(c->h, p->xd, p->wd, p->cd, p->yd, p->algo, &q) ==
                CUDNN_STATUS_SUCCESS &&
            q > need)
            need = q;
        if (need > CONV_WS_MAX) continue;
        ensure_ws(c, need);
        cudnnStatus_t s1 = exec_unfused(c, p, x, w, bias, NULL, ya);
        if (s1 == CUDNN_STATUS_SUCCESS && res) s1 = exec_unfused(c, p, x, w, bias, yb, yb);
        if (s1 == CUDNN_STATUS_SUCCESS) chosen = i;
    }
    if (chosen < 0) die("cudnn_conv_forward %s: no cuDNN algorithm runs (%d tried)", ks, nperf);

    /* 2. the fused path: runs, matches, not slower */
    cudnnMathType_t fmath = base_math;
    int fused_ok = 0;
    float t_unf = -1.0f, t_fus = -1.0f;
    cudnnTensorFormat_t bfmt = CUDNN_TENSOR_NHWC;
    if (bias) {
        CUDNN_CHECK(cudnnSetConvolutionMathType(p->cd, fmath));
        size_t need = 0;
        if (cudnnGetConvolutionForwardWorkspaceSize(c->h, p->xd, p->wd, p->cd, p->yd,
                                                    CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
                                                    &need) == CUDNN_STATUS_SUCCESS &&
            need <= CONV_WS_MAX) {
            ensure_ws(c, need);
            void *hgot = xmalloc(ybytes);
            float *want = (float *)xmalloc((size_t)p->ny * sizeof(float));
            CUDA_CHECK(cudaStreamSynchronize(c->s));
            CUDA_CHECK(cudaMemcpy(hgot, ya, ybytes, cudaMemcpyDeviceToHost));
            for (int64_t i = 0; i < p->ny; i++) want[i] = (res ? 2.0f : 1.0f) * elem(hgot, i, dt);
            const cudnnTensorFormat_t fmts[2] = {CUDNN_TENSOR_NHWC, CUDNN_TENSOR_NCHW}; /* same bytes for [1,C,1,1] */
            for (int f = 0; f < 2; f++) {
                CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->bd, fmts[f], t, 1, (int)Cout, 1, 1));
                if (res) /* z aliasing y, holding the unfused result: expect twice it */
                    CUDA_CHECK(cudaMemcpyAsync(yb, ya, ybytes, cudaMemcpyDeviceToDevice, c->s));
                else /* NaN: alpha2 0 must not read z (which is y) */
                    CUDA_CHECK(cudaMemsetAsync(yb, 0xFF, ybytes, c->s));
                if (exec_fused(c, p, x, w, bias, res ? yb : NULL, yb) != CUDNN_STATUS_SUCCESS) continue;
                CUDA_CHECK(cudaStreamSynchronize(c->s));
                CUDA_CHECK(cudaMemcpy(hgot, yb, ybytes, cudaMemcpyDeviceToHost));
                fused_ok = close_enough(hgot, want, p->ny, dt);
                bfmt = fmts[f];
                break;
            }
            free(hgot);
            free(want);
        }
        if (fused_ok) {
            CUDNN_CHECK(cudnnSetConvolutionMathType(p->cd, umath));
            t_unf = time_path(c, p, 0, x, w, bias, rbuf, ya);
            CUDNN_CHECK(cudnnSetConvolutionMathType(p->cd, fmath));
            t_fus = time_path(c, p, 1, x, w, bias, rbuf, yb);
            p->fused = t_fus <= 1.05f * t_unf;
        }
    }
    CUDNN_CHECK(cudnnSetConvolutionMathType(p->cd, p->fused ? fmath : umath));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->bd, p->fused ? bfmt : CUDNN_TENSOR_NHWC, t, 1, (int)Cout, 1, 1));
    ConvChoice kept = {*key, p->algo, p->fused ? fmath : umath, p->fused ? bfmt : CUDNN_TENSOR_NHWC, p->fused,
                       c->ws.bytes /* covers what the chosen path needs (grown for it above) */};
    choice_keep(&kept);
    CUDA_CHECK(cudaStreamSynchronize(c->s));
    CUDA_CHECK(cudaFree(ba));
    CUDA_CHECK(cudaFree(bb));
    if (br) CUDA_CHECK(cudaFree(br));
    if (cuda_lib_log()) {
        char tf[64] = "not timed";
        if (fused_ok) snprintf(tf, sizeof tf, "unfused %.1f us, fused %.1f us", t_unf * 1e3f, t_fus * 1e3f);
        fprintf(stderr, "cudnn plan %s: %s (unfused algo %d math %d; fused %s; %s); ws %zu B; planned in %.0f ms\n", ks,
                p->fused ? "fused" : "unfused", (int)p->algo, (int)umath,
                !bias ? "n/a" : fused_ok ? "ok" : "unusable", tf, c->ws.bytes, cuda_now_ms() - t0);
    }
    return p;
}

/* ---- public ---- */

CudnnConv *cudnn_conv_new(cudaStream_t s) {
    CudnnConv *c = (CudnnConv *)xcalloc(1, sizeof *c);
    c->s = s;
    CUDNN_CHECK(cudnnCreate(&c->h));
    CUDNN_CHECK(cudnnSetStream(c->h, s));
    CUDNN_CHECK(cudnnCreateActivationDescriptor(&c->act));
    CUDNN_CHECK(cudnnSetActivationDescriptor(c->act, CUDNN_ACTIVATION_IDENTITY, CUDNN_NOT_PROPAGATE_NAN, 0.0));
    return c;
}

void cudnn_conv_free(CudnnConv *c) {
    if (!c) return;
    CUDA_CHECK(cudaStreamSynchronize(c->s));
    for (int i = 0; i < c->nplans; i++) {
        ConvPlan *p = c->plans[i];
        cudnnDestroyTensorDescriptor(p->xd);
        cudnnDestroyTensorDescriptor(p->yd);
        cudnnDestroyTensorDescriptor(p->bd);
        cudnnDestroyFilterDescriptor(p->wd);
        cudnnDestroyConvolutionDescriptor(p->cd);
        free(p);
    }
    free(c->plans);
    cuda_ws_free(&c->ws);
    cudnnDestroyActivationDescriptor(c->act);
    cudnnDestroy(c->h);
    free(c);
}

void cudnn_conv_forward(CudnnConv *c, const void *x, int64_t B, int64_t H, int64_t W, int64_t Cin, const void *w,
                        const void *bias, int64_t Cout, int k, int stride, const void *res, void *y, DType dt) {
    if (B < 1 || H < 1 || W < 1 || Cin < 1 || Cout < 1 || k < 1 || stride < 1)
        die("cudnn_conv_forward: bad shape B%lld %lldx%lld %lld->%lld k%d s%d", (long long)B, (long long)H,
            (long long)W, (long long)Cin, (long long)Cout, k, stride);
    int64_t al = cuda_ptr_align(x);
    const void *ptrs[4] = {w, bias, res, y};
    for (int i = 0; i < 4; i++)
        if (ptrs[i] && cuda_ptr_align(ptrs[i]) < al) al = cuda_ptr_align(ptrs[i]);
    ConvKey key = {B, H, W, Cin, Cout, k, stride, (int64_t)dt, res != NULL, bias != NULL, al};
    ConvPlan *p = NULL;
    for (int i = 0; i < c->nplans && !p; i++)
        if (!memcmp(&c->plans[i]->key, &key, sizeof key)) p = c->plans[i];
    if (!p) {
        p = plan_conv(c, &key, x, w, bias, res, y);
        if (c->nplans == c->cap) {
            c->cap = c->cap ? 2 * c->cap : 16;
            c->plans = (ConvPlan **)xrealloc(c->plans, (size_t)c->cap * sizeof *c->plans);
        }
        c->plans[c->nplans++] = p;
    }
    cudnnStatus_t st = exec_path(c, p, p->fused, x, w, bias, res, y);
    if (st != CUDNN_STATUS_SUCCESS) {
        char ks[160], m[512];
        key_str(&key, ks, sizeof ks);
        m[0] = '\0';
        cudnnGetLastErrorString(m, sizeof m);
        die("cudnn_conv_forward %s: %s failed: %s%s%s", ks,
            p->fused ? "cudnnConvolutionBiasActivationForward" : "cudnnConvolutionForward", cudnnGetErrorString(st),
            m[0] ? ": " : "", m);
    }
}

size_t cudnn_conv_workspace_bytes(const CudnnConv *c) { return c->ws.bytes; }

const char *cudnn_conv_version(void) {
    static char buf[48];
    size_t v = cudnnGetVersion(); /* 9.x: major*10000 + minor*100 + patch; 8.x: major*1000 + minor*100 + patch */
    unsigned maj, min, pat = (unsigned)(v % 100);
    if (v >= 90000) {
        maj = (unsigned)(v / 10000);
        min = (unsigned)(v / 100 % 100);
    } else {
        maj = (unsigned)(v / 1000);
        min = (unsigned)(v / 100 % 10);
    }
    snprintf(buf, sizeof buf, "cuDNN %u.%u.%u", maj, min, pat);
    return buf;
}
