/* linear: see linear.h. One cuBLASLt matmul, bias as CUBLASLT_EPILOGUE_BIAS
 * and the residual as C with beta 1 (C == D is allowed when Cdesc == Ddesc,
 * so res == y runs in place; the same layout object serves both).
 *
 * cuBLASLt is column-major. A row-major [R, C] array read column-major with
 * ld C is the C x R matrix, its transpose. So, for y = x w^T:
 *   A = w: stored K x N (ld K), opA = T -> N x K  (A^T(n, k) = w[n, k])
 *   B = x: stored K x M (ld K), opB = N -> K x M  (B(k, m) = x[m, k])
 *   D = y: stored N x M (ld N)                    (D(n, m) = y[m, n])
 *   D(n, m) = sum_k w[n, k] x[m, k] = y[m, n].
 * Worked example, M = 2, K = 3, N = 2: x = [[1,2,3],[4,5,6]],
 * w = [[1,0,1],[0,1,0]], so y = x w^T = [[4,2],[10,5]].
 *   w's bytes 1 0 1 0 1 0 as 3x2 col-major: A = [[1,0],[0,1],[1,0]], A^T = w.
 *   x's bytes 1 2 3 4 5 6 as 3x2 col-major: B = [[1,4],[2,5],[3,6]].
 *   A^T B = [[1+3, 4+6], [2, 5]] = [[4,10],[2,5]], stored by columns:
 *   4 2 10 5, which read row-major [2, 2] is [[4,2],[10,5]] = y.
 * The bias vector must have D's row count (N) and is broadcast along D's
 * columns: bias[n] is added to y[m, n] for every m, as nn.Linear does.
 * Types: A/B/C/D and bias in the run dtype (the bias type must equal D's for
 * fp16/bf16/fp32 outputs), CUBLAS_COMPUTE_32F with fp32 scale for all three
 * (never _FAST_TF32). Plans (descriptors and the heuristic's first algorithm)
 * are cached per (M, N, K, dtype, bias?, res?, pointer alignments); the
 * alignments (up to 16 bytes) are given to the heuristic as minimums, so an
 * arena pointer that is only 2- or 4-byte aligned gets an algorithm that
 * accepts it. A 32 MiB workspace is allocated once and never grows, so a
 * forward after planning is capture-safe (one matmul launch on the stream).
 * UNETLAB_LIB_LOG=1 prints one line per plan. */
#include "cuda_check.h"
#include "linear.h"
#include <cublasLt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CUBLAS_CHECK(call)                                                                                 \
    do {                                                                                                   \
        cublasStatus_t st_ = (call);                                                                       \
        if (st_ != CUBLAS_STATUS_SUCCESS)                                                                  \
            die("%s failed at %s:%d: %s (%s)", #call, __FILE__, __LINE__, cublasLtGetStatusString(st_),    \
                cublasLtGetStatusName(st_));                                                               \
    } while (0)

#define LT_WS_BYTES ((size_t)32 << 20)
#define LT_MAX_ALGOS 8

typedef struct {
    int64_t M, N, K, dt, has_bias, has_res, al_w, al_x, al_c, al_y, al_b;
} LtKey; /* int64_t only: no padding, compared with memcmp */

typedef struct {
    LtKey key;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t a, b, d; /* d is also C's layout */
    cublasLtMatmulAlgo_t algo;
    size_t ws;
} LtPlan;

struct LtLinear {
    cublasLtHandle_t h;
    cudaStream_t s;
    void *ws;
    size_t ws_bytes;
    LtPlan **plans;
    int nplans, cap;
};

static void key_str(const LtKey *k, char *buf, size_t n) {
    snprintf(buf, n, "%s M%lld N%lld K%lld%s%s align w%lld x%lld c%lld y%lld b%lld", dtype_name((DType)k->dt),
             (long long)k->M, (long long)k->N, (long long)k->K, k->has_bias ? " bias" : "", k->has_res ? " res" : "",
             (long long)k->al_w, (long long)k->al_x, (long long)k->al_c, (long long)k->al_y, (long long)k->al_b);
}

static void set_pref_u32(cublasLtMatmulPreference_t pref, cublasLtMatmulPreferenceAttributes_t attr, int64_t v) {
    uint32_t u = (uint32_t)v;
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attr, &u, sizeof u));
}

static LtPlan *plan_linear(LtLinear *l, const LtKey *key, const void *bias) {
    char ks[160];
    key_str(key, ks, sizeof ks);
    LtPlan *p = (LtPlan *)xcalloc(1, sizeof *p);
    p->key = *key;
    DType dt = (DType)key->dt;
    cudaDataType_t t = dt == DTYPE_F32 ? CUDA_R_32F : dt == DTYPE_F16 ? CUDA_R_16F : CUDA_R_16BF;

    CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    if (bias) {
        cublasLtEpilogue_t ep = CUBLASLT_EPILOGUE_BIAS;
        int32_t bt = (int32_t)t; /* = D's type: what the default (-1) means, said explicitly */
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof ep));
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt));
        /* the heuristic reads the pointer's alignment; each call sets its own */
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    }
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->a, t, (uint64_t)key->K, (uint64_t)key->N, key->K));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->b, t, (uint64_t)key->K, (uint64_t)key->M, key->K));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->d, t, (uint64_t)key->N, (uint64_t)key->M, key->N));

    cublasLtMatmulPreference_t pref;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    uint64_t wsmax = l->ws_bytes;
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsmax,
                                                      sizeof wsmax));
    set_pref_u32(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key->al_w);
    set_pref_u32(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key->al_x);
    set_pref_u32(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key->al_c);
    set_pref_u32(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key->al_y);
    cublasLtMatmulHeuristicResult_t r[LT_MAX_ALGOS];
    int nr = 0;
    cublasStatus_t st =
        cublasLtMatmulAlgoGetHeuristic(l->h, p->op, p->a, p->b, p->d, p->d, pref, LT_MAX_ALGOS, r, &nr);
    CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
    if (st != CUBLAS_STATUS_SUCCESS)
        die("lt_linear %s: cublasLtMatmulAlgoGetHeuristic failed: %s (%s)", ks, cublasLtGetStatusString(st),
            cublasLtGetStatusName(st));
    int chosen = -1; /* results come fastest first */
    for (int i = 0; i < nr && chosen < 0; i++)
        if (r[i].state == CUBLAS_STATUS_SUCCESS && r[i].workspaceSize <= l->ws_bytes) chosen = i;
    if (chosen < 0) die("lt_linear %s: cuBLASLt has no algorithm (%d candidates)", ks, nr);
    p->algo = r[chosen].algo;
    p->ws = r[chosen].workspaceSize;
    if (cuda_lib_log())
        fprintf(stderr, "cublasLt plan %s: heuristic %d of %d, ws %zu B, waves %.2f\n", ks, chosen, nr, p->ws,
                (double)r[chosen].wavesCount);
    return p;
}

LtLinear *lt_linear_new(cudaStream_t s) {
    LtLinear *l = (LtLinear *)xcalloc(1, sizeof *l);
    l->s = s;
    CUBLAS_CHECK(cublasLtCreate(&l->h));
    CUDA_CHECK(cudaMalloc(&l->ws, LT_WS_BYTES)); /* 256-byte aligned, as cublasLtMatmul requires */
    l->ws_bytes = LT_WS_BYTES;
    return l;
}

void lt_linear_free(LtLinear *l) {
    if (!l) return;
    CUDA_CHECK(cudaStreamSynchronize(l->s));
    for (int i = 0; i < l->nplans; i++) {
        LtPlan *p = l->plans[i];
        cublasLtMatrixLayoutDestroy(p->a);
        cublasLtMatrixLayoutDestroy(p->b);
        cublasLtMatrixLayoutDestroy(p->d);
        cublasLtMatmulDescDestroy(p->op);
        free(p);
    }
    free(l->plans);
    cudaFree(l->ws);
    cublasLtDestroy(l->h);
    free(l);
}

void lt_linear(LtLinear *l, const void *x, int64_t M, int64_t K, const void *w, const void *bias, int64_t N,
               const void *res, void *y, DType dt) {
    if (M < 1 || K < 1 || N < 1)
        die("lt_linear: bad shape M%lld K%lld N%lld", (long long)M, (long long)K, (long long)N);
    const void *c = res ? res : y; /* beta 0: C is not read */
    LtKey key = {M,           N, K, (int64_t)dt, bias != NULL, res != NULL, cuda_ptr_align(w), cuda_ptr_align(x), cuda_ptr_align(c),
                 cuda_ptr_align(y), bias ? cuda_ptr_align(bias) : 0};
    LtPlan *p = NULL;
    for (int i = 0; i < l->nplans && !p; i++)
        if (!memcmp(&l->plans[i]->key, &key, sizeof key)) p = l->plans[i];
    if (!p) {
        p = plan_linear(l, &key, bias);
        if (l->nplans == l->cap) {
            l->cap = l->cap ? 2 * l->cap : 16;
            l->plans = (LtPlan **)xrealloc(l->plans, (size_t)l->cap * sizeof *l->plans);
        }
        l->plans[l->nplans++] = p;
    }
    if (bias) CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    const float alpha = 1.0f, beta = res ? 1.0f : 0.0f;
    CUBLAS_CHECK(cublasLtMatmul(l->h, p->op, &alpha, w, p->a, x, p->b, &beta, c, p->d, y, p->d, &p->algo, l->ws,
                                l->ws_bytes, l->s));
}

size_t lt_linear_workspace_bytes(const LtLinear *l) { return l->ws_bytes; }
