/* ops: see ops.h. Loops are written for the compiler to vectorise (unit-stride
 * inner loops); OpenMP spreads the outer ones over the cores, only where the
 * work (PAR_MIN multiply-adds or more) outweighs waking the thread team. */
#include "ops.h"
#include "err.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PAR_MIN 200000

/* One MR x NR tile of C, accumulated in registers over all of K. Built for
 * x86-64-v3 (AVX2 + FMA) too, picked at run time where the CPU has it. */
#define MR 4
#define NR 16
__attribute__((target_clones("arch=x86-64-v3", "default")))
static void gemm_tile(int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb, float *C, int64_t ldc) {
    float acc[MR][NR] = {{0}};
    for (int64_t k = 0; k < K; k++) {
        const float *b = B + k * ldb;
        for (int r = 0; r < MR; r++) {
            float a = A[r * lda + k];
            for (int j = 0; j < NR; j++) acc[r][j] += a * b[j];
        }
    }
    for (int r = 0; r < MR; r++)
        for (int j = 0; j < NR; j++) C[r * ldc + j] = acc[r][j];
}

/* The ragged edge: rows x cols of C with plain loops. */
static void gemm_edge(int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb, float *C, int64_t ldc,
                      int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++) {
        float *c = C + r * ldc;
        for (int64_t j = 0; j < cols; j++) c[j] = 0.0f;
        for (int64_t k = 0; k < K; k++) {
            float a = A[r * lda + k];
            const float *b = B + k * ldb;
            for (int64_t j = 0; j < cols; j++) c[j] += a * b[j];
        }
    }
}

void op_gemm(int64_t M, int64_t N, int64_t K, const float *A, const float *B, float *C) {
    int64_t mt = (M + MR - 1) / MR, nt = (N + NR - 1) / NR;
#pragma omp parallel for collapse(2) schedule(static) if (M * N * K > PAR_MIN)
    for (int64_t ti = 0; ti < mt; ti++)
        for (int64_t tj = 0; tj < nt; tj++) {
            int64_t i = ti * MR, j = tj * NR, rows = M - i < MR ? M - i : MR, cols = N - j < NR ? N - j : NR;
            if (rows == MR && cols == NR) gemm_tile(K, A + i * K, K, B + j, N, C + i * N + j, N);
            else gemm_edge(K, A + i * K, K, B + j, N, C + i * N + j, N, rows, cols);
        }
}

void op_linear(const float *x, int64_t M, int64_t K, const float *w, const float *b, int64_t N, float *y) {
    float *wt = xmalloc((size_t)(K * N) * sizeof(float)); /* w^T [K,N] so the GEMM runs unit-stride */
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < K; k++) wt[k * N + n] = w[n * K + k];
    op_gemm(M, N, K, x, wt, y);
    free(wt);
    if (b)
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) y[m * N + n] += b[n];
}

Tensor op_conv2d(const Tensor *x, const float *w, const float *b, int cout, int k, int stride, int pad) {
    int64_t B = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t Ho = (H + 2 * pad - k) / stride + 1, Wo = (W + 2 * pad - k) / stride + 1;
    Tensor y = tensor_new(4, B, cout, Ho, Wo);
    int64_t K = C * k * k, P = Ho * Wo;
    int direct = k == 1 && stride == 1 && pad == 0;
    float *col = direct ? NULL : xmalloc((size_t)(K * P) * sizeof(float)); /* im2col [C*k*k, Ho*Wo] */
    for (int64_t bi = 0; bi < B; bi++) {
        const float *xb = x->d + bi * C * H * W;
        if (!direct) {
#pragma omp parallel for schedule(static) if (K * P > PAR_MIN)
            for (int64_t r = 0; r < K; r++) {
                int64_t c = r / (k * k), ky = r / k % k, kx = r % k;
                float *dst = col + r * P;
                for (int64_t oy = 0; oy < Ho; oy++) {
                    int64_t iy = oy * stride - pad + ky;
                    for (int64_t ox = 0; ox < Wo; ox++) {
                        int64_t ix = ox * stride - pad + kx;
                        dst[oy * Wo + ox] = (iy >= 0 && iy < H && ix >= 0 && ix < W) ? xb[(c * H + iy) * W + ix] : 0.0f;
                    }
                }
            }
        }
        float *yb = y.d + bi * cout * P;
        op_gemm(cout, P, K, w, direct ? xb : col, yb);
        if (b)
            for (int64_t o = 0; o < cout; o++)
                for (int64_t p = 0; p < P; p++) yb[o * P + p] += b[o];
    }
    free(col);
    return y;
}

static inline float silu1(float v) { return v / (1.0f + expf(-v)); }

void op_group_norm(Tensor *x, int groups, const float *gamma, const float *beta, float eps, int silu) {
    int64_t B = x->shape[0], C = x->shape[1], S = tensor_numel(x) / (B * C), cg = C / groups;
#pragma omp parallel for collapse(2) schedule(static) if (B * C * S > PAR_MIN)
    for (int64_t bi = 0; bi < B; bi++)
        for (int64_t g = 0; g < groups; g++) {
            float *p = x->d + (bi * C + g * cg) * S;
            int64_t n = cg * S;
            double sum = 0, sq = 0;
            for (int64_t i = 0; i < n; i++) sum += p[i];
            double mean = sum / (double)n;
            for (int64_t i = 0; i < n; i++) { double d = p[i] - mean; sq += d * d; }
            float rstd = (float)(1.0 / sqrt(sq / (double)n + eps)), m = (float)mean;
            for (int64_t c = 0; c < cg; c++) {
                float ga = gamma[g * cg + c] * rstd, be = beta[g * cg + c];
                float *q = p + c * S;
                for (int64_t i = 0; i < S; i++) {
                    float v = (q[i] - m) * ga + be;
                    q[i] = silu ? silu1(v) : v;
                }
            }
        }
}

void op_layer_norm(const float *x, int64_t M, int64_t C, const float *gamma, const float *beta, float eps, float *y) {
#pragma omp parallel for schedule(static) if (M * C > PAR_MIN)
    for (int64_t m = 0; m < M; m++) {
        const float *p = x + m * C;
        double sum = 0, sq = 0;
        for (int64_t c = 0; c < C; c++) sum += p[c];
        double mean = sum / (double)C;
        for (int64_t c = 0; c < C; c++) { double d = p[c] - mean; sq += d * d; }
        float rstd = (float)(1.0 / sqrt(sq / (double)C + eps)), mu = (float)mean;
        float *q = y + m * C;
        for (int64_t c = 0; c < C; c++) q[c] = (p[c] - mu) * rstd * gamma[c] + beta[c];
    }
}

void op_silu(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = silu1(x[i]);
}

void op_geglu(const float *h, int64_t M, int64_t I, float *out) {
#pragma omp parallel for schedule(static) if (M * I > PAR_MIN)
    for (int64_t m = 0; m < M; m++)
        for (int64_t i = 0; i < I; i++) {
            float a = h[m * 2 * I + i], g = h[m * 2 * I + I + i];
            out[m * I + i] = a * (0.5f * g * (1.0f + erff(g * (float)M_SQRT1_2)));
        }
}

void op_attention(const float *q, const float *k, const float *v, int64_t B, int64_t Nq, int64_t Nk, int64_t C,
                  int heads, float *out) {
    int64_t d = C / heads;
    float scale = 1.0f / sqrtf((float)d);
    /* one query row at a time: scores, softmax, weighted sum of values */
#pragma omp parallel if (B * heads * Nq * Nk * d > PAR_MIN)
    {
        float *s = xmalloc((size_t)Nk * sizeof(float));
#pragma omp for collapse(3) schedule(static)
        for (int64_t b = 0; b < B; b++)
            for (int64_t h = 0; h < heads; h++)
                for (int64_t i = 0; i < Nq; i++) {
                    const float *qi = q + (b * Nq + i) * C + h * d;
                    float mx = -INFINITY;
                    for (int64_t j = 0; j < Nk; j++) {
                        const float *kj = k + (b * Nk + j) * C + h * d;
                        float acc = 0;
                        for (int64_t e = 0; e < d; e++) acc += qi[e] * kj[e];
                        s[j] = acc * scale;
                        if (s[j] > mx) mx = s[j];
                    }
                    double sum = 0;
                    for (int64_t j = 0; j < Nk; j++) { s[j] = expf(s[j] - mx); sum += s[j]; }
                    float inv = (float)(1.0 / sum);
                    float *o = out + (b * Nq + i) * C + h * d;
                    memset(o, 0, (size_t)d * sizeof(float));
                    for (int64_t j = 0; j < Nk; j++) {
                        const float *vj = v + (b * Nk + j) * C + h * d;
                        float p = s[j] * inv;
                        for (int64_t e = 0; e < d; e++) o[e] += p * vj[e];
                    }
                }
        free(s);
    }
}

Tensor op_upsample2x(const Tensor *x) {
    int64_t B = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    Tensor y = tensor_new(4, B, C, 2 * H, 2 * W);
    for (int64_t p = 0; p < B * C; p++)
        for (int64_t oy = 0; oy < 2 * H; oy++)
            for (int64_t ox = 0; ox < 2 * W; ox++)
                y.d[(p * 2 * H + oy) * 2 * W + ox] = x->d[(p * H + oy / 2) * W + ox / 2];
    return y;
}

Tensor op_concat_channels(const Tensor *a, const Tensor *b) {
    int64_t B = a->shape[0], Ca = a->shape[1], Cb = b->shape[1], S = a->shape[2] * a->shape[3];
    Tensor y = tensor_new(4, B, Ca + Cb, a->shape[2], a->shape[3]);
    for (int64_t bi = 0; bi < B; bi++) {
        memcpy(y.d + bi * (Ca + Cb) * S, a->d + bi * Ca * S, (size_t)(Ca * S) * sizeof(float));
        memcpy(y.d + (bi * (Ca + Cb) + Ca) * S, b->d + bi * Cb * S, (size_t)(Cb * S) * sizeof(float));
    }
    return y;
}

void op_nchw_to_nlc(const float *x, int64_t B, int64_t C, int64_t HW, float *y) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t p = 0; p < HW; p++) y[(b * HW + p) * C + c] = x[(b * C + c) * HW + p];
}

void op_nlc_to_nchw(const float *x, int64_t B, int64_t C, int64_t HW, float *y) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t p = 0; p < HW; p++)
            for (int64_t c = 0; c < C; c++) y[(b * C + c) * HW + p] = x[(b * HW + p) * C + c];
}

void op_add(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}

void op_timestep_embedding(const float *t, int64_t n, int dim, int flip_sin_to_cos, float freq_shift, float *out) {
    int half = dim / 2;
    /* the same float32 steps as torch: exponent = -ln(10000) * arange(half) / (half - shift) */
    float neg_log = (float)-log(10000.0), denom = (float)half - freq_shift;
    for (int64_t i = 0; i < n; i++) {
        float *o = out + i * dim;
        for (int j = 0; j < half; j++) {
            float e = expf(neg_log * (float)j / denom);
            float arg = t[i] * e;
            float s = sinf(arg), c = cosf(arg);
            o[flip_sin_to_cos ? half + j : j] = s;
            o[flip_sin_to_cos ? j : half + j] = c;
        }
        if (dim % 2) o[dim - 1] = 0.0f;
    }
}
