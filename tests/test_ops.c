/* test_ops: unit tests for the CPU reference ops (kernels/cpu/ops.c), the
 * host tensor helpers (core/tensor.c) and the seeded rng (core/rng.c). Every
 * expected value is either worked out by hand in a comment beside it or comes
 * from a naive double-precision loop written here from the definition; no
 * expectation is ever taken from the op under test. */
#include "err.h"
#include "ops.h"
#include "rng.h"
#include <omp.h>
#include "tensor.h"
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Set to 1 once core/rng.c uses the standard FNV-1a offset basis (see test_rng). */
/* ---------- helpers ---------- */

static float *fbuf(int64_t n) { return xmalloc((size_t)n * sizeof(float)); }
static double *dbuf(int64_t n) { return xcalloc((size_t)n, sizeof(double)); }

/* Output buffers start as NaN so an element the op forgets to write shows. */
static void fill_nan(float *p, int64_t n) {
    for (int64_t i = 0; i < n; i++) p[i] = NAN;
}

static int all_finite(const float *p, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(p[i])) return 0;
    return 1;
}

static void randn(float *p, int64_t n, const char *name) {
    Rng r = rng_for(1234, name);
    rng_normal(&r, p, n, 0.0f, 1.0f);
}

/* One check per array: every got[i] within tol of want[i] (a NaN fails). */
static void check_close(const char *what, const float *got, const double *want, int64_t n, double tol) {
    int64_t worst = -1;
    double wd = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (!(d <= tol)) { /* !(<=) catches NaN too */
            if (worst < 0 || !(d <= wd)) { worst = i; wd = d; }
        }
    }
    CHECK_MSG(worst < 0, "%s: [%lld] got %.9g want %.9g (tol %g)", what, (long long)worst,
              worst < 0 ? 0.0 : (double)got[worst], worst < 0 ? 0.0 : want[worst], tol);
}

/* ---------- reference implementations, straight from the definitions ---------- */

static void ref_gemm(int64_t M, int64_t N, int64_t K, const float *A, const float *B, double *C) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++) s += (double)A[i * K + k] * (double)B[k * N + j];
            C[i * N + j] = s;
        }
}

/* out[b,o,oy,ox] = bias[o] + sum_{c,ky,kx} w[o,c,ky,kx] * x[b,c,oy*s-p+ky,ox*s-p+kx] (zero outside). */
static void ref_conv(const float *x, int64_t B, int64_t C, int64_t H, int64_t W, const float *w, const float *bias,
                     int64_t O, int k, int s, int p, double *out, int64_t Ho, int64_t Wo) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t o = 0; o < O; o++)
            for (int64_t oy = 0; oy < Ho; oy++)
                for (int64_t ox = 0; ox < Wo; ox++) {
                    double acc = bias ? (double)bias[o] : 0.0;
                    for (int64_t c = 0; c < C; c++)
                        for (int ky = 0; ky < k; ky++)
                            for (int kx = 0; kx < k; kx++) {
                                int64_t iy = oy * s - p + ky, ix = ox * s - p + kx;
                                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                                acc += (double)w[((o * C + c) * k + ky) * k + kx] *
                                       (double)x[((b * C + c) * H + iy) * W + ix];
                            }
                    out[((b * O + o) * Ho + oy) * Wo + ox] = acc;
                }
}

static double silu_d(double v) { return v / (1.0 + exp(-v)); }
static double gelu_d(double v) { return 0.5 * v * (1.0 + erf(v / sqrt(2.0))); }

static void ref_group_norm(const float *x, int64_t B, int64_t C, int64_t S, int G, const float *gamma,
                           const float *beta, double eps, int silu, double *out) {
    int64_t cg = C / G;
    for (int64_t b = 0; b < B; b++)
        for (int g = 0; g < G; g++) {
            double sum = 0, sq = 0;
            int64_t n = cg * S;
            for (int64_t c = g * cg; c < (g + 1) * cg; c++)
                for (int64_t i = 0; i < S; i++) sum += x[(b * C + c) * S + i];
            double mean = sum / (double)n;
            for (int64_t c = g * cg; c < (g + 1) * cg; c++)
                for (int64_t i = 0; i < S; i++) {
                    double d = x[(b * C + c) * S + i] - mean;
                    sq += d * d;
                }
            double var = sq / (double)n;
            for (int64_t c = g * cg; c < (g + 1) * cg; c++)
                for (int64_t i = 0; i < S; i++) {
                    int64_t at = (b * C + c) * S + i;
                    double v = (x[at] - mean) / sqrt(var + eps) * gamma[c] + beta[c];
                    out[at] = silu ? silu_d(v) : v;
                }
        }
}

/* Multi-head attention: head h uses channels [h*d, (h+1)*d) of q, k and v. */
static void ref_attention(const float *q, const float *k, const float *v, int64_t B, int64_t Nq, int64_t Nk,
                          int64_t C, int heads, double *out) {
    int64_t d = C / heads;
    double *s = dbuf(Nk);
    for (int64_t b = 0; b < B; b++)
        for (int h = 0; h < heads; h++)
            for (int64_t i = 0; i < Nq; i++) {
                double mx = -INFINITY, sum = 0;
                for (int64_t j = 0; j < Nk; j++) {
                    double dot = 0;
                    for (int64_t e = 0; e < d; e++)
                        dot += (double)q[(b * Nq + i) * C + h * d + e] * (double)k[(b * Nk + j) * C + h * d + e];
                    s[j] = dot / sqrt((double)d);
                    if (s[j] > mx) mx = s[j];
                }
                for (int64_t j = 0; j < Nk; j++) { s[j] = exp(s[j] - mx); sum += s[j]; }
                for (int64_t e = 0; e < d; e++) {
                    double acc = 0;
                    for (int64_t j = 0; j < Nk; j++) acc += s[j] / sum * (double)v[(b * Nk + j) * C + h * d + e];
                    out[(b * Nq + i) * C + h * d + e] = acc;
                }
            }
    free(s);
}

/* ---------- tensor ---------- */

static void test_tensor(void) {
    Tensor t = tensor_new(4, 2, 3, 4, 5);
    char buf[64];
    CHECK_EQ_LL(tensor_numel(&t), 120);
    CHECK(strcmp(tensor_shape_str(&t, buf, sizeof buf), "[2, 3, 4, 5]") == 0);
    int zero = 1;
    for (int i = 0; i < 120; i++) zero &= t.d[i] == 0.0f;
    CHECK(zero);
    t.d[7] = 3.5f;
    Tensor c = tensor_copy(&t);
    CHECK(c.ndim == 4 && c.shape[3] == 5 && c.d != t.d && c.d[7] == 3.5f);
    Tensor l = tensor_like(&t);
    CHECK(l.ndim == 4 && tensor_numel(&l) == 120 && l.d[7] == 0.0f);
    Tensor v = tensor_new(2, 3, 7, 0, 0);
    CHECK_EQ_LL(tensor_numel(&v), 21);
    CHECK(strcmp(tensor_shape_str(&v, buf, sizeof buf), "[3, 7]") == 0);
    tensor_free(&t);
    CHECK(t.d == NULL && t.ndim == 0);
    tensor_free(&c);
    tensor_free(&l);
    tensor_free(&v);
}

/* ---------- gemm / linear ---------- */

static void test_gemm(void) {
    /* [1 2 3; 4 5 6] x [7 8; 9 10; 11 12]:
     * 1*7+2*9+3*11 = 58, 1*8+2*10+3*12 = 64, 4*7+5*9+6*11 = 139, 4*8+5*10+6*12 = 154 */
    const float A[6] = {1, 2, 3, 4, 5, 6}, B[6] = {7, 8, 9, 10, 11, 12};
    float C[4];
    fill_nan(C, 4);
    op_gemm(2, 2, 3, A, B, C);
    CHECK(C[0] == 58.0f && C[1] == 64.0f && C[2] == 139.0f && C[3] == 154.0f);

    /* K = 1: an outer product [1;2;3] x [4 5] = [4 5; 8 10; 12 15] */
    const float u[3] = {1, 2, 3}, w[2] = {4, 5};
    float o[6];
    fill_nan(o, 6);
    op_gemm(3, 2, 1, u, w, o);
    CHECK(o[0] == 4 && o[1] == 5 && o[2] == 8 && o[3] == 10 && o[4] == 12 && o[5] == 15);

    /* random sizes, none a multiple of 4 (the 4-row blocks and the tail), and
     * one big enough for the OpenMP branch (M*N*K > 100000) */
    const int64_t sz[][3] = {{7, 13, 5}, {1, 9, 3}, {5, 1, 17}, {4, 4, 4}, {8, 3, 2}, {67, 45, 41}};
    for (size_t t = 0; t < sizeof sz / sizeof *sz; t++) {
        int64_t M = sz[t][0], N = sz[t][1], K = sz[t][2];
        float *a = fbuf(M * K), *b = fbuf(K * N), *c = fbuf(M * N);
        double *want = dbuf(M * N);
        randn(a, M * K, "gemm.a");
        randn(b, K * N, "gemm.b");
        fill_nan(c, M * N);
        op_gemm(M, N, K, a, b, c);
        ref_gemm(M, N, K, a, b, want);
        char what[64];
        snprintf(what, sizeof what, "gemm %lldx%lldx%lld", (long long)M, (long long)N, (long long)K);
        /* K <= 41 terms of size ~1: float rounding stays well below 1e-4; the
         * brief's 1e-5 holds for the small cases */
        check_close(what, c, want, M * N, K <= 17 ? 1e-5 : 1e-4);
        free(a), free(b), free(c), free(want);
    }
}

static void test_linear(void) {
    /* x = [1 2 3; 4 5 6], W = [1 0 -1; 2 1 0] ([N=2, K=3]), y = x W^T:
     * row 0: 1-3 = -2, 2+2 = 4;  row 1: 4-6 = -2, 8+5 = 13.  b = [0.5, -1]. */
    const float x[6] = {1, 2, 3, 4, 5, 6}, W[6] = {1, 0, -1, 2, 1, 0}, b[2] = {0.5f, -1.0f};
    float y[4];
    fill_nan(y, 4);
    op_linear(x, 2, 3, W, NULL, 2, y);
    CHECK(y[0] == -2 && y[1] == 4 && y[2] == -2 && y[3] == 13);
    fill_nan(y, 4);
    op_linear(x, 2, 3, W, b, 2, y);
    CHECK(y[0] == -1.5f && y[1] == 3 && y[2] == -1.5f && y[3] == 12);

    /* random, against y[m,n] = b[n] + sum_k x[m,k] w[n,k] */
    int64_t M = 5, K = 7, N = 3;
    float *xr = fbuf(M * K), *wr = fbuf(N * K), *br = fbuf(N), *yr = fbuf(M * N);
    double *want = dbuf(M * N);
    randn(xr, M * K, "linear.x");
    randn(wr, N * K, "linear.w");
    randn(br, N, "linear.b");
    for (int withb = 0; withb < 2; withb++) {
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) {
                double s = withb ? br[n] : 0.0;
                for (int64_t k = 0; k < K; k++) s += (double)xr[m * K + k] * wr[n * K + k];
                want[m * N + n] = s;
            }
        fill_nan(yr, M * N);
        op_linear(xr, M, K, wr, withb ? br : NULL, N, yr);
        check_close(withb ? "linear random, bias" : "linear random, no bias", yr, want, M * N, 1e-5);
    }
    free(xr), free(wr), free(br), free(yr), free(want);
}

/* ---------- conv2d ---------- */

static void test_conv2d_hand(void) {
    /* input 1..9 as [[1 2 3],[4 5 6],[7 8 9]], kernel 1..9 likewise, bias 1,
     * pad 1, stride 1 (cross-correlation, as torch):
     * centre (1,1): 1*1+2*2+...+9*9 = 285, +1 = 286
     * corner (0,0): w11*x00 + w12*x01 + w21*x10 + w22*x11 = 5*1+6*2+8*4+9*5 = 94, +1 = 95
     * top-right (0,2): w10*x01 + w11*x02 + w20*x11 + w21*x12 = 4*2+5*3+7*5+8*6 = 106, +1 = 107
     * (a flipped kernel, true convolution, would give 26 at (0,0)) */
    Tensor x = tensor_new(4, 1, 1, 3, 3);
    float w[9], bias = 1.0f;
    for (int i = 0; i < 9; i++) x.d[i] = w[i] = (float)(i + 1);
    Tensor y = op_conv2d(&x, w, &bias, 1, 3, 1, 1);
    CHECK(y.ndim == 4 && y.shape[0] == 1 && y.shape[1] == 1 && y.shape[2] == 3 && y.shape[3] == 3);
    CHECK_NEAR(y.d[4], 286.0, 0);
    CHECK_NEAR(y.d[0], 95.0, 0);
    CHECK_NEAR(y.d[2], 107.0, 0);
    /* bottom-right (2,2): w00*x11 + w01*x12 + w10*x21 + w11*x22 = 5+12+32+45 = 94, +1 */
    CHECK_NEAR(y.d[8], 95.0, 0);
    tensor_free(&y);
    /* no bias: the same minus 1 */
    y = op_conv2d(&x, w, NULL, 1, 3, 1, 1);
    CHECK(y.d[0] == 94.0f && y.d[4] == 285.0f && y.d[2] == 106.0f);
    tensor_free(&y);
    tensor_free(&x);

    /* stride 2, pad 1, input 3x5 with x[r][c] = 5r+c+1:
     *    1  2  3  4  5
     *    6  7  8  9 10
     *   11 12 13 14 15
     * Ho = (3+2-3)/2+1 = 2, Wo = (5+2-3)/2+1 = 3; kernel 1..9, no bias.
     * (0,0): rows 0-1, cols 0-1 under w11 w12 / w21 w22: 5*1+6*2+8*6+9*7 = 128
     * (0,1): rows 0-1, cols 1-3 under kernel rows 1-2: 4*2+5*3+6*4 + 7*7+8*8+9*9 = 47+194 = 241
     * (0,2): rows 0-1, cols 3-4 under w10 w11 / w20 w21: 4*4+5*5+7*9+8*10 = 184
     * (1,0): rows 1-2, cols 0-1 under w01 w02 / w11 w12: 2*6+3*7+5*11+6*12 = 160
     * (1,1): rows 1-2, cols 1-3 under kernel rows 0-1: 1*7+2*8+3*9 + 4*12+5*13+6*14 = 50+197 = 247
     * (1,2): rows 1-2, cols 3-4 under w00 w01 / w10 w11: 1*9+2*10+4*14+5*15 = 160 */
    x = tensor_new(4, 1, 1, 3, 5);
    for (int i = 0; i < 15; i++) x.d[i] = (float)(i + 1);
    y = op_conv2d(&x, w, NULL, 1, 3, 2, 1);
    CHECK(y.shape[0] == 1 && y.shape[1] == 1 && y.shape[2] == 2 && y.shape[3] == 3);
    const float s2[6] = {128, 241, 184, 160, 247, 160};
    for (int i = 0; i < 6; i++) CHECK_MSG(y.d[i] == s2[i], "stride-2 [%d] got %g want %g", i, y.d[i], s2[i]);
    tensor_free(&y);
    tensor_free(&x);

    /* 1x1 conv (the direct path, no im2col), B=2, Cin=2, Cout=3, 2x2:
     * w = [[1,0],[0,1],[2,-1]], b = [0,0,0.5]: out0 = x0, out1 = x1, out2 = 2 x0 - x1 + 0.5
     * batch 0: x0 = [1 2 3 4], x1 = [10 20 30 40] -> out2 = [-7.5 -15.5 -23.5 -31.5]
     * batch 1: x0 = [5 6 7 8], x1 = [0 1 0 1]     -> out2 = [10.5 11.5 14.5 15.5] */
    x = tensor_new(4, 2, 2, 2, 2);
    const float xin[16] = {1, 2, 3, 4, 10, 20, 30, 40, 5, 6, 7, 8, 0, 1, 0, 1};
    memcpy(x.d, xin, sizeof xin);
    const float w1[6] = {1, 0, 0, 1, 2, -1}, b1[3] = {0, 0, 0.5f};
    y = op_conv2d(&x, w1, b1, 3, 1, 1, 0);
    CHECK(y.shape[0] == 2 && y.shape[1] == 3 && y.shape[2] == 2 && y.shape[3] == 2);
    const float want1[24] = {1, 2, 3, 4, 10, 20, 30, 40, -7.5f, -15.5f, -23.5f, -31.5f,
                             5, 6, 7, 8, 0, 1, 0, 1, 10.5f, 11.5f, 14.5f, 15.5f};
    int ok = 1;
    for (int i = 0; i < 24; i++) ok &= y.d[i] == want1[i];
    CHECK_MSG(ok, "1x1 conv values");
    tensor_free(&y);
    tensor_free(&x);
}

static void test_conv2d_random(void) {
    struct { int64_t B, C, O, H, W; int k, s, p, bias; } cs[] = {
        {2, 3, 4, 5, 6, 3, 1, 1, 1}, /* the brief's case, stride 1 */
        {2, 3, 4, 5, 6, 3, 2, 1, 1}, /* stride 2: Ho = (5+2-3)/2+1 = 3, Wo = (6+2-3)/2+1 = 3 */
        {2, 3, 4, 5, 6, 3, 2, 1, 0}, /* no bias */
        {2, 3, 4, 5, 6, 3, 1, 0, 1}, /* valid conv, Ho 3, Wo 4 */
        {2, 3, 5, 5, 6, 1, 1, 0, 1}, /* 1x1 direct path */
        {2, 3, 5, 5, 6, 1, 2, 0, 1}, /* 1x1 strided: im2col path */
        {1, 2, 3, 7, 7, 5, 2, 2, 1}, /* 5x5 kernel */
        {1, 8, 5, 40, 40, 3, 1, 1, 1}, /* big enough for the OpenMP im2col */
    };
    for (size_t t = 0; t < sizeof cs / sizeof *cs; t++) {
        int64_t B = cs[t].B, C = cs[t].C, O = cs[t].O, H = cs[t].H, W = cs[t].W;
        int k = cs[t].k, s = cs[t].s, p = cs[t].p;
        int64_t Ho = (H + 2 * p - k) / s + 1, Wo = (W + 2 * p - k) / s + 1;
        Tensor x = tensor_new(4, B, C, H, W);
        float *w = fbuf(O * C * k * k), *b = fbuf(O);
        randn(x.d, tensor_numel(&x), "conv.x");
        randn(w, O * C * k * k, "conv.w");
        randn(b, O, "conv.b");
        Tensor y = op_conv2d(&x, w, cs[t].bias ? b : NULL, (int)O, k, s, p);
        char what[96];
        snprintf(what, sizeof what, "conv B%lld C%lld O%lld %lldx%lld k%d s%d p%d%s", (long long)B,
                 (long long)C, (long long)O, (long long)H, (long long)W, k, s, p, cs[t].bias ? "" : " nobias");
        CHECK_MSG(y.ndim == 4 && y.shape[0] == B && y.shape[1] == O && y.shape[2] == Ho && y.shape[3] == Wo,
                  "%s: shape [%lld %lld %lld %lld]", what, (long long)y.shape[0], (long long)y.shape[1],
                  (long long)y.shape[2], (long long)y.shape[3]);
        double *want = dbuf(B * O * Ho * Wo);
        ref_conv(x.d, B, C, H, W, w, cs[t].bias ? b : NULL, O, k, s, p, want, Ho, Wo);
        check_close(what, y.d, want, B * O * Ho * Wo, 1e-4); /* up to 75 terms of size ~1 */
        free(want), free(w), free(b);
        tensor_free(&x);
        tensor_free(&y);
    }
    /* the stride-2 shape written out: 5x6, k3, p1, s2 -> 3x3 */
    Tensor x = tensor_new(4, 1, 1, 5, 6);
    float w9[9] = {0};
    Tensor y = op_conv2d(&x, w9, NULL, 1, 3, 2, 1);
    CHECK(y.shape[2] == 3 && y.shape[3] == 3);
    tensor_free(&y);
    tensor_free(&x);
}

/* ---------- norms and activations ---------- */

static void test_group_norm(void) {
    const float eps = 1e-5f;
    /* [1, 2, 1, 2]: channel 0 = [1 3] (mean 2, biased var 1), channel 1 = [0 4]
     * (mean 2, var 4); 2 groups so each channel is its own group.
     * gamma = [2 -1], beta = [0.5 1]:
     * ch0: 0.5 + 2 * (+-1)/sqrt(1+eps);  ch1: 1 - (+-2)/sqrt(4+eps) */
    const float gamma[2] = {2, -1}, beta[2] = {0.5f, 1};
    double e = eps;
    double want[4] = {0.5 - 2 / sqrt(1 + e), 0.5 + 2 / sqrt(1 + e), 1 + 2 / sqrt(4 + e), 1 - 2 / sqrt(4 + e)};
    /* about -1.49999, 2.49999, 1.9999988, 1.25e-6 */
    CHECK_NEAR(want[0], -1.49999, 1e-5);
    CHECK_NEAR(want[3], 1.25e-6, 1e-8);
    for (int silu = 0; silu < 2; silu++) {
        Tensor x = tensor_new(4, 1, 2, 1, 2);
        const float xin[4] = {1, 3, 0, 4};
        memcpy(x.d, xin, sizeof xin);
        op_group_norm(&x, 2, gamma, beta, eps, silu);
        for (int i = 0; i < 4; i++) {
            double wv = silu ? want[i] / (1 + exp(-want[i])) : want[i];
            CHECK_MSG(fabs(x.d[i] - wv) <= 1e-6, "group_norm silu=%d [%d] got %.9g want %.9g", silu, i, x.d[i], wv);
        }
        tensor_free(&x);
    }

    /* one group over both channels, two batches kept apart, 3-dim tensor [2, 2, 2]:
     * batch 0 = [1 3 | 5 7]: mean 4, var (9+1+1+9)/4 = 5 -> (x-4)/sqrt(5+eps)
     * batch 1 = [0 0 | 0 8]: mean 2, var (4+4+4+36)/4 = 12 -> (x-2)/sqrt(12+eps) */
    {
        Tensor x = tensor_new(3, 2, 2, 2, 0);
        const float xin[8] = {1, 3, 5, 7, 0, 0, 0, 8}, g1[2] = {1, 1}, b0[2] = {0, 0};
        memcpy(x.d, xin, sizeof xin);
        op_group_norm(&x, 1, g1, b0, eps, 0);
        double r0 = 1 / sqrt(5 + e), r1 = 1 / sqrt(12 + e);
        const double w2[8] = {-3 * r0, -1 * r0, 1 * r0, 3 * r0, -2 * r1, -2 * r1, -2 * r1, 6 * r1};
        for (int i = 0; i < 8; i++) CHECK_NEAR(x.d[i], w2[i], 1e-6);
        tensor_free(&x);
    }

    /* constant group: variance 0, output beta (no NaN from 0/0) */
    {
        Tensor x = tensor_new(4, 1, 2, 2, 2);
        for (int i = 0; i < 8; i++) x.d[i] = 3.0f;
        const float g1[2] = {1, 5}, bb[2] = {0.25f, -2};
        op_group_norm(&x, 1, g1, bb, eps, 0);
        CHECK(all_finite(x.d, 8));
        CHECK(x.d[0] == 0.25f && x.d[3] == 0.25f && x.d[4] == -2.0f && x.d[7] == -2.0f);
        tensor_free(&x);
    }

    /* large offset, small spread: 1000 +- 1 must still normalise to +-1 */
    {
        Tensor x = tensor_new(4, 1, 1, 1, 4);
        const float xin[4] = {999, 1001, 999, 1001}, g1[1] = {1}, b0[1] = {0};
        memcpy(x.d, xin, sizeof xin);
        op_group_norm(&x, 1, g1, b0, eps, 0);
        for (int i = 0; i < 4; i++) CHECK_NEAR(x.d[i], (i % 2 ? 1 : -1) / sqrt(1 + e), 1e-5);
        tensor_free(&x);
    }

    /* random: B=2, C=6, 3 groups, 4x5 spatial, with and without SiLU */
    for (int silu = 0; silu < 2; silu++) {
        Tensor x = tensor_new(4, 2, 6, 4, 5);
        float g[6], b[6];
        randn(x.d, tensor_numel(&x), "gn.x");
        for (int64_t i = 0; i < tensor_numel(&x); i++) x.d[i] = 3.0f * x.d[i] + 0.7f;
        randn(g, 6, "gn.gamma");
        randn(b, 6, "gn.beta");
        double *ref = dbuf(tensor_numel(&x));
        ref_group_norm(x.d, 2, 6, 20, 3, g, b, eps, silu, ref);
        op_group_norm(&x, 3, g, b, eps, silu);
        check_close(silu ? "group_norm random silu" : "group_norm random", x.d, ref, tensor_numel(&x), 1e-5);
        free(ref);
        tensor_free(&x);
    }
}

static void test_layer_norm(void) {
    const float eps = 1e-5f;
    double e = eps;
    /* row 0 = [1 2 3 4]: mean 2.5, var (2.25+0.25+0.25+2.25)/4 = 1.25
     * row 1 = [2 2 2 2]: var 0 -> output beta
     * gamma = [1 1 2 0.5], beta = [0 1 0 -1] */
    const float x[8] = {1, 2, 3, 4, 2, 2, 2, 2}, gamma[4] = {1, 1, 2, 0.5f}, beta[4] = {0, 1, 0, -1};
    double r = 1 / sqrt(1.25 + e);
    const double want[8] = {-1.5 * r, -0.5 * r + 1, 0.5 * r * 2, 1.5 * r * 0.5 - 1, 0, 1, 0, -1};
    float y[8];
    fill_nan(y, 8);
    op_layer_norm(x, 2, 4, gamma, beta, eps, y);
    for (int i = 0; i < 8; i++) CHECK_NEAR(y[i], want[i], 1e-6);
    /* in place (y == x) */
    float z[8];
    memcpy(z, x, sizeof z);
    op_layer_norm(z, 2, 4, gamma, beta, eps, z);
    for (int i = 0; i < 8; i++) CHECK_NEAR(z[i], want[i], 1e-6);
    /* rows normalise independently: row 1 alone gives the same */
    float y1[4];
    op_layer_norm(x + 4, 1, 4, gamma, beta, eps, y1);
    CHECK(y1[0] == 0 && y1[1] == 1 && y1[2] == 0 && y1[3] == -1);
}

static void test_silu(void) {
    float v[7] = {0, 1, -1, 2, 20, -100, -1000};
    op_silu(v, 7);
    CHECK(v[0] == 0.0f);
    CHECK_NEAR(v[1], 0.7310585786, 1e-7);
    CHECK_NEAR(v[2], -0.2689414214, 1e-7);
    CHECK_NEAR(v[3], 1.7615941560, 1e-6); /* 2 / (1 + e^-2) */
    CHECK_NEAR(v[4], 20.0, 1e-6);          /* 20 / (1 + 2.06e-9) */
    CHECK(all_finite(v, 7));               /* e^100 and e^1000 overflow float: -100/inf = -0, not NaN */
    CHECK_NEAR(v[5], 0.0, 1e-30);
    CHECK_NEAR(v[6], 0.0, 1e-30);
    op_silu(v, 0); /* n = 0 touches nothing */
}

static void test_geglu(void) {
    /* h [2, 6], I = 3: out = h[:, :3] * gelu(h[:, 3:]), gelu(g) = g * Phi(g)
     * row 0: a = [1 2 3],     g = [1 -1 0]  -> [0.8413447461, 2 * -0.1586552539, 0]
     * row 1: a = [-1 0.5 2],  g = [2 3 -2]  -> gelu(2) = 2*Phi(2) = 1.9544997361,
     *        gelu(3) = 3*Phi(3) = 2.9959503059, gelu(-2) = -2*Phi(-2) = -0.0455002639 */
    const float h[12] = {1, 2, 3, 1, -1, 0, -1, 0.5f, 2, 2, 3, -2};
    float out[6];
    fill_nan(out, 6);
    op_geglu(h, 2, 3, out);
    CHECK_NEAR(out[0], 0.8413447461, 1e-6);
    CHECK_NEAR(out[1], 2 * -0.1586552539, 1e-6);
    CHECK(out[2] == 0.0f);
    CHECK_NEAR(out[3], -1.9544997361, 1e-6);
    CHECK_NEAR(out[4], 0.5 * 2.9959503059, 1e-6);
    CHECK_NEAR(out[5], 2 * -0.0455002639, 1e-6);
    /* the same numbers from the erf definition, as a check on the literals */
    CHECK_NEAR(gelu_d(1), 0.8413447461, 1e-9);
    CHECK_NEAR(gelu_d(-1), -0.1586552539, 1e-9);
    CHECK_NEAR(gelu_d(3), 2.9959503059, 1e-9);
    /* not the tanh approximation: gelu_tanh(1) = 0.8411919906, 1.5e-4 away */
    CHECK(fabs(out[0] - 0.8411919906) > 1e-4);

    /* random, M=5, I=7 */
    int64_t M = 5, I = 7;
    float *hr = fbuf(M * 2 * I), *o = fbuf(M * I);
    double *want = dbuf(M * I);
    randn(hr, M * 2 * I, "geglu.h");
    for (int64_t m = 0; m < M; m++)
        for (int64_t i = 0; i < I; i++) want[m * I + i] = hr[m * 2 * I + i] * gelu_d(hr[m * 2 * I + I + i]);
    fill_nan(o, M * I);
    op_geglu(hr, M, I, o);
    check_close("geglu random", o, want, M * I, 1e-5);
    free(hr), free(o), free(want);
}

/* ---------- attention ---------- */

static void test_attention(void) {
    /* 1 batch, 1 head, d = 2, scale 1/sqrt(2).
     * q0 = [1 0], q1 = [2 2];  k0 = [1 0], k1 = [0 1];  v0 = [1 2], v1 = [3 4]
     * q0: scores [1/sqrt2, 0] -> p0 = 1/(1+e^-0.7071067812) = 0.6697615493, p1 = 0.3302384507
     *     out = p0*v0 + p1*v1 = [1 + 2 p1, 2 + 2 p1] = [1.6604769014, 2.6604769014]
     * q1: scores [2/sqrt2, 2/sqrt2] -> p = [0.5 0.5] -> out = [2 3] */
    const float q[4] = {1, 0, 2, 2}, k[4] = {1, 0, 0, 1}, v[4] = {1, 2, 3, 4};
    float o[4];
    fill_nan(o, 4);
    op_attention(q, k, v, 1, 2, 2, 2, 1, o);
    CHECK_NEAR(1 / (1 + exp(-1 / sqrt(2.0))), 0.6697615493, 1e-9);
    CHECK_NEAR(o[0], 1.6604769014, 1e-6);
    CHECK_NEAR(o[1], 2.6604769014, 1e-6);
    CHECK_NEAR(o[2], 2.0, 1e-6);
    CHECK_NEAR(o[3], 3.0, 1e-6);

    /* one key: softmax is 1, every query gets v0 */
    {
        const float q1[6] = {5, -3, 0.1f, 7, -2, 0}, k1[2] = {0.3f, -0.9f}, v1[2] = {4.5f, -1.25f};
        float o1[6];
        fill_nan(o1, 6);
        op_attention(q1, k1, v1, 1, 3, 1, 2, 1, o1);
        for (int i = 0; i < 3; i++) CHECK(o1[2 * i] == 4.5f && o1[2 * i + 1] == -1.25f);
    }

    /* a huge score gap: no overflow, all weight on the larger, no NaN
     * q = [1000 0], k0 = [1000 0], k1 = [-1000 0] -> scores +-707106.78 */
    {
        const float qh[2] = {1000, 0}, kh[4] = {1000, 0, -1000, 0}, vh[4] = {1, 2, 3, 4};
        float oh[2];
        op_attention(qh, kh, vh, 1, 1, 2, 2, 1, oh);
        CHECK(all_finite(oh, 2));
        CHECK(oh[0] == 1.0f && oh[1] == 2.0f);
    }

    /* 2 heads over C = 4: head 0 uses channels 0-1, head 1 channels 2-3, each
     * with scale 1/sqrt(2) (not 1/sqrt(4)). Each head must equal a 1-head call
     * on its slice. B = 2, Nq = 3, Nk = 4. */
    {
        int64_t B = 2, Nq = 3, Nk = 4, C = 4, d = 2;
        float *qa = fbuf(B * Nq * C), *ka = fbuf(B * Nk * C), *va = fbuf(B * Nk * C), *oa = fbuf(B * Nq * C);
        randn(qa, B * Nq * C, "attn.q");
        randn(ka, B * Nk * C, "attn.k");
        randn(va, B * Nk * C, "attn.v");
        for (int64_t i = 0; i < B * Nq * C; i++) qa[i] *= 2.0f; /* sharper softmax, so the scale matters */
        fill_nan(oa, B * Nq * C);
        op_attention(qa, ka, va, B, Nq, Nk, C, 2, oa);
        CHECK(all_finite(oa, B * Nq * C));
        float *qs = fbuf(B * Nq * d), *ks = fbuf(B * Nk * d), *vs = fbuf(B * Nk * d), *os = fbuf(B * Nq * d);
        for (int h = 0; h < 2; h++) {
            for (int64_t r = 0; r < B * Nq; r++)
                for (int64_t e = 0; e < d; e++) qs[r * d + e] = qa[r * C + h * d + e];
            for (int64_t r = 0; r < B * Nk; r++)
                for (int64_t e = 0; e < d; e++) {
                    ks[r * d + e] = ka[r * C + h * d + e];
                    vs[r * d + e] = va[r * C + h * d + e];
                }
            op_attention(qs, ks, vs, B, Nq, Nk, d, 1, os);
            double maxd = 0;
            for (int64_t r = 0; r < B * Nq; r++)
                for (int64_t e = 0; e < d; e++) maxd = fmax(maxd, fabs(os[r * d + e] - oa[r * C + h * d + e]));
            CHECK_MSG(maxd <= 1e-6, "head %d differs from its 1-head slice by %g", h, maxd);
        }
        /* and the whole against the naive double reference */
        double *want = dbuf(B * Nq * C);
        ref_attention(qa, ka, va, B, Nq, Nk, C, 2, want);
        check_close("attention 2 heads vs reference", oa, want, B * Nq * C, 1e-5);
        /* a scale of 1/sqrt(C) would be visibly different */
        double *wrong = dbuf(B * Nq * C);
        ref_attention(qa, ka, va, B, Nq, Nk, C, 1, wrong); /* one head of dim 4: not the same op */
        double far = 0;
        for (int64_t i = 0; i < B * Nq * C; i++) far = fmax(far, fabs(wrong[i] - want[i]));
        CHECK_MSG(far > 1e-3, "2-head and 1-head references coincide (%g); test is blind", far);
        free(want), free(wrong), free(qa), free(ka), free(va), free(oa), free(qs), free(ks), free(vs), free(os);
    }

    /* larger random: B=2, Nq=5, Nk=7, C=16, 4 heads (cross-attention shape Nq != Nk) */
    {
        int64_t B = 2, Nq = 5, Nk = 7, C = 16;
        float *qa = fbuf(B * Nq * C), *ka = fbuf(B * Nk * C), *va = fbuf(B * Nk * C), *oa = fbuf(B * Nq * C);
        randn(qa, B * Nq * C, "attn2.q");
        randn(ka, B * Nk * C, "attn2.k");
        randn(va, B * Nk * C, "attn2.v");
        fill_nan(oa, B * Nq * C);
        op_attention(qa, ka, va, B, Nq, Nk, C, 4, oa);
        double *want = dbuf(B * Nq * C);
        ref_attention(qa, ka, va, B, Nq, Nk, C, 4, want);
        check_close("attention 4 heads vs reference", oa, want, B * Nq * C, 1e-5);
        free(want), free(qa), free(ka), free(va), free(oa);
    }
}

/* ---------- layout ops ---------- */

static void test_upsample(void) {
    /* [1, 2, 2, 3], channel 0 = [[1 2 3],[4 5 6]], channel 1 = channel 0 + 10
     * -> [1, 2, 4, 6], every pixel repeated 2x2 */
    Tensor x = tensor_new(4, 1, 2, 2, 3);
    for (int i = 0; i < 6; i++) { x.d[i] = (float)(i + 1); x.d[6 + i] = (float)(i + 11); }
    Tensor y = op_upsample2x(&x);
    CHECK(y.ndim == 4 && y.shape[0] == 1 && y.shape[1] == 2 && y.shape[2] == 4 && y.shape[3] == 6);
    const float want0[24] = {1, 1, 2, 2, 3, 3,
                             1, 1, 2, 2, 3, 3,
                             4, 4, 5, 5, 6, 6,
                             4, 4, 5, 5, 6, 6};
    int ok = 1;
    for (int i = 0; i < 24; i++) ok &= y.d[i] == want0[i] && y.d[24 + i] == want0[i] + 10;
    CHECK_MSG(ok, "upsample2x values");
    tensor_free(&y);
    tensor_free(&x);
    /* batch 2, 1x1: each batch keeps its own value */
    x = tensor_new(4, 2, 1, 1, 1);
    x.d[0] = 7, x.d[1] = -3;
    y = op_upsample2x(&x);
    CHECK(y.shape[2] == 2 && y.shape[3] == 2);
    CHECK(y.d[0] == 7 && y.d[3] == 7 && y.d[4] == -3 && y.d[7] == -3);
    tensor_free(&y);
    tensor_free(&x);
}

static void test_concat(void) {
    /* a [2,1,1,2] = [1 2 | 3 4], b [2,2,1,2] = [10 11 12 13 | 20 21 22 23]
     * -> [2,3,1,2] = [1 2 10 11 12 13 | 3 4 20 21 22 23] */
    Tensor a = tensor_new(4, 2, 1, 1, 2), b = tensor_new(4, 2, 2, 1, 2);
    const float av[4] = {1, 2, 3, 4}, bv[8] = {10, 11, 12, 13, 20, 21, 22, 23};
    memcpy(a.d, av, sizeof av);
    memcpy(b.d, bv, sizeof bv);
    Tensor y = op_concat_channels(&a, &b);
    CHECK(y.ndim == 4 && y.shape[0] == 2 && y.shape[1] == 3 && y.shape[2] == 1 && y.shape[3] == 2);
    const float want[12] = {1, 2, 10, 11, 12, 13, 3, 4, 20, 21, 22, 23};
    CHECK(memcmp(y.d, want, sizeof want) == 0);
    tensor_free(&y);
    tensor_free(&a);
    tensor_free(&b);
}

static void test_layout(void) {
    /* B=2, C=3, HW=4, x[i] = i. nlc[(b*HW + p)*C + c] = nchw[(b*C + c)*HW + p]:
     * (b=1, c=0, p=2): nchw index (3+0)*4+2 = 14 -> nlc index (4+2)*3+0 = 18
     * (b=0, c=1, p=0): nchw index 4 -> nlc index 1 */
    float x[24], y[24], z[24];
    for (int i = 0; i < 24; i++) x[i] = (float)i;
    fill_nan(y, 24);
    op_nchw_to_nlc(x, 2, 3, 4, y);
    CHECK(y[18] == 14.0f);
    CHECK(y[1] == 4.0f);
    CHECK(y[0] == 0.0f && y[23] == 23.0f);
    /* first token of batch 0 is channel values at pixel 0: [0, 4, 8] */
    CHECK(y[0] == 0 && y[1] == 4 && y[2] == 8);
    fill_nan(z, 24);
    op_nlc_to_nchw(y, 2, 3, 4, z);
    CHECK(memcmp(x, z, sizeof x) == 0);
    /* and the other way round */
    fill_nan(z, 24);
    op_nlc_to_nchw(x, 2, 3, 4, z);
    CHECK(z[14] == 18.0f && z[4] == 1.0f);
    op_nchw_to_nlc(z, 2, 3, 4, y);
    CHECK(memcmp(x, y, sizeof x) == 0);

    float s[3] = {1, 2, 3};
    const float d[3] = {0.5f, -2, 0};
    op_add(s, d, 3);
    CHECK(s[0] == 1.5f && s[1] == 0 && s[2] == 3);
}

/* ---------- timestep embedding ---------- */

static void test_timestep(void) {
    /* t = 0: every sin is 0 and every cos is 1. dim 8, half 4. */
    {
        const float t0[1] = {0};
        float o[8];
        fill_nan(o, 8);
        op_timestep_embedding(t0, 1, 8, 1, 0, o); /* cos first */
        CHECK(o[0] == 1 && o[1] == 1 && o[2] == 1 && o[3] == 1 && o[4] == 0 && o[5] == 0 && o[6] == 0 && o[7] == 0);
        fill_nan(o, 8);
        op_timestep_embedding(t0, 1, 8, 0, 0, o); /* sin first */
        CHECK(o[0] == 0 && o[1] == 0 && o[2] == 0 && o[3] == 0 && o[4] == 1 && o[5] == 1 && o[6] == 1 && o[7] == 1);
    }
    /* dim 4, t = 1, shift 0: half 2, freq_j = exp(-ln(10000) j / 2) = 1, 0.01
     * flip 1: [cos 1, cos 0.01, sin 1, sin 0.01]; flip 0: [sin 1, sin 0.01, cos 1, cos 0.01] */
    const double s1 = 0.8414709848, s01 = 0.0099998333, c1 = 0.5403023059, c01 = 0.9999500004;
    {
        const float t1[1] = {1};
        float o[4];
        fill_nan(o, 4);
        op_timestep_embedding(t1, 1, 4, 1, 0, o);
        CHECK_NEAR(o[0], c1, 1e-6);
        CHECK_NEAR(o[1], c01, 1e-6);
        CHECK_NEAR(o[2], s1, 1e-6);
        CHECK_NEAR(o[3], s01, 1e-7);
        fill_nan(o, 4);
        op_timestep_embedding(t1, 1, 4, 0, 0, o);
        CHECK_NEAR(o[0], s1, 1e-6);
        CHECK_NEAR(o[1], s01, 1e-7);
        CHECK_NEAR(o[2], c1, 1e-6);
        CHECK_NEAR(o[3], c01, 1e-6);
    }
    /* several t at once: rows independent; t = [0, 1] with dim 4, flip 1 */
    {
        const float t2[2] = {0, 1};
        float o[8];
        fill_nan(o, 8);
        op_timestep_embedding(t2, 2, 4, 1, 0, o);
        CHECK(o[0] == 1 && o[1] == 1 && o[2] == 0 && o[3] == 0);
        CHECK_NEAR(o[4], c1, 1e-6);
        CHECK_NEAR(o[7], s01, 1e-7);
    }
    /* odd dim 5: half 2, same four values as dim 4, then a trailing 0 */
    {
        const float t1[1] = {1};
        float o[5];
        fill_nan(o, 5);
        op_timestep_embedding(t1, 1, 5, 0, 0, o);
        CHECK_NEAR(o[0], s1, 1e-6);
        CHECK_NEAR(o[1], s01, 1e-7);
        CHECK_NEAR(o[2], c1, 1e-6);
        CHECK_NEAR(o[3], c01, 1e-6);
        CHECK(o[4] == 0.0f);
        const float t2[2] = {1, 0};
        float o2[10];
        fill_nan(o2, 10);
        op_timestep_embedding(t2, 2, 5, 1, 0, o2); /* the row stride is dim, not 2*half */
        CHECK(o2[4] == 0.0f && o2[5] == 1.0f && o2[6] == 1.0f && o2[7] == 0.0f && o2[8] == 0.0f && o2[9] == 0.0f);
        CHECK_NEAR(o2[0], c1, 1e-6);
    }
    /* freq_shift = 1: divisor half - 1. dim 4, t = 100: freq = 1, exp(-ln(10000)) = 1e-4;
     * args 100 and 0.01: sin(100) = -0.5063656411, cos(100) = 0.8623188723 */
    {
        const float t100[1] = {100};
        float o[4];
        fill_nan(o, 4);
        op_timestep_embedding(t100, 1, 4, 0, 1.0f, o);
        CHECK_NEAR(o[0], -0.5063656411, 1e-6);
        CHECK_NEAR(o[1], s01, 1e-7);
        CHECK_NEAR(o[2], 0.8623188723, 1e-6);
        CHECK_NEAR(o[3], c01, 1e-6);
        /* with shift 0 the second frequency would be 0.01: sin(1) at o[1] */
        fill_nan(o, 4);
        op_timestep_embedding(t100, 1, 4, 0, 0.0f, o);
        CHECK_NEAR(o[1], s1, 1e-5);
    }
    /* dim 6: shift 0 divides by 3: freqs 1, 10000^(-1/3) = 0.0464158883, 10000^(-2/3) = 0.0021544347;
     * shift 1 divides by 2: freqs 1, 0.01, 0.0001. t = 10, flip 0 (sin first). */
    {
        const float t10[1] = {10};
        float o[6];
        const double f0[3] = {1, 0.0464158883, 0.0021544347}, f1[3] = {1, 0.01, 0.0001};
        for (int sh = 0; sh < 2; sh++) {
            const double *f = sh ? f1 : f0;
            fill_nan(o, 6);
            op_timestep_embedding(t10, 1, 6, 0, (float)sh, o);
            for (int j = 0; j < 3; j++) {
                CHECK_NEAR(o[j], sin(10 * f[j]), 2e-6);
                CHECK_NEAR(o[3 + j], cos(10 * f[j]), 2e-6);
            }
        }
    }
    /* a realistic size against double: dim 320, t = 999. The float32 argument
     * t*freq carries ~1e-4 absolute error at t ~ 1000, as in torch. */
    {
        const float tb[3] = {999, 500.5f, 1};
        int dim = 320, half = 160;
        float *o = fbuf(3 * dim);
        double *want = dbuf(3 * dim);
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < half; j++) {
                double fr = exp(-log(10000.0) * j / half), a = tb[i] * fr;
                want[i * dim + j] = cos(a);
                want[i * dim + half + j] = sin(a);
            }
        fill_nan(o, 3 * dim);
        op_timestep_embedding(tb, 3, dim, 1, 0, o);
        check_close("timestep dim 320", o, want, 3 * dim, 1e-3);
        free(o), free(want);
    }
}

/* ---------- rng ---------- */

static void test_rng(void) {
    /* FNV-1a step: h = (h ^ byte) * 0x100000001b3, starting from the offset basis */
    const uint64_t prime = 1099511628211ull;
    CHECK(rng_hash("a") == ((rng_hash("") ^ (uint64_t)'a') * prime));
    CHECK(rng_hash("ab") == ((rng_hash("a") ^ (uint64_t)'b') * prime));
    CHECK(rng_hash("ab") != rng_hash("ba"));
    /* published FNV-1a 64 vectors (basis 14695981039346656037 = 0xcbf29ce484222325) */
    CHECK(rng_hash("") == 0xcbf29ce484222325ull);
    CHECK(rng_hash("a") == 0xaf63dc4c8601ec8cull);
    CHECK(rng_hash("foobar") == 0x85944171f73967e8ull);
    /* splitmix64 from state 0: the reference first two outputs */
    Rng z = {0};
    CHECK(rng_next(&z) == 0xe220a8397b1dcdafull);
    CHECK(rng_next(&z) == 0x6e789e6aa1b965f4ull);

    /* same (seed, name) -> same stream; a different name or seed -> a different one */
    Rng a = rng_for(7, "down.0.conv.weight"), b = rng_for(7, "down.0.conv.weight");
    Rng c = rng_for(7, "down.0.conv.bias"), d = rng_for(8, "down.0.conv.weight");
    int same = 1, diffc = 0, diffd = 0;
    for (int i = 0; i < 100; i++) {
        uint64_t x = rng_next(&a), y = rng_next(&b), u = rng_next(&c), v = rng_next(&d);
        same &= x == y;
        diffc += x != u;
        diffd += x != v;
    }
    CHECK(same);
    CHECK(diffc == 100);
    CHECK(diffd == 100);
    /* the stream does not depend on what was drawn from other streams */
    Rng e = rng_for(7, "down.0.conv.weight");
    Rng other = rng_for(7, "x");
    for (int i = 0; i < 10; i++) rng_next(&other);
    float f1[4], f2[4];
    rng_normal(&e, f1, 4, 0, 1);
    Rng e2 = rng_for(7, "down.0.conv.weight");
    rng_normal(&e2, f2, 4, 0, 1);
    CHECK(memcmp(f1, f2, sizeof f1) == 0);

    /* uniform in the open interval (0, 1), mean about 1/2 */
    Rng u = rng_for(1, "uniform");
    int inside = 1;
    double us = 0;
    for (int i = 0; i < 100000; i++) {
        double x = rng_uniform(&u);
        inside &= x > 0.0 && x < 1.0;
        us += x;
    }
    CHECK(inside);
    CHECK_NEAR(us / 100000, 0.5, 0.005);

    /* normal moments for two targets; never exactly 0, never NaN */
    const float targets[2][2] = {{0.0f, 1.0f}, {3.0f, 0.5f}};
    int64_t n = 100000;
    float *buf = fbuf(n);
    for (int t = 0; t < 2; t++) {
        float mean = targets[t][0], std = targets[t][1];
        Rng r = rng_for(42, t ? "normal.b" : "normal.a");
        fill_nan(buf, n);
        rng_normal(&r, buf, n, mean, std);
        double s = 0, sq = 0;
        int zeros = 0;
        for (int64_t i = 0; i < n; i++) { s += buf[i]; zeros += buf[i] == 0.0f; }
        double m = s / (double)n;
        for (int64_t i = 0; i < n; i++) sq += (buf[i] - m) * (buf[i] - m);
        double sd = sqrt(sq / (double)(n - 1));
        CHECK(all_finite(buf, n));
        CHECK_MSG(fabs(m - mean) <= 0.02, "normal(%g,%g) mean %g", mean, std, m);
        CHECK_MSG(fabs(sd - std) <= 0.02 * std, "normal(%g,%g) std %g", mean, std, sd);
        CHECK_MSG(zeros == 0, "normal(%g,%g): %d exact zeros", mean, std, zeros);
    }
    free(buf);
    /* odd n: the last value is written too */
    float odd[5];
    fill_nan(odd, 5);
    Rng r5 = rng_for(3, "odd");
    rng_normal(&r5, odd, 5, 0, 1);
    CHECK(all_finite(odd, 5));

    /* counter-based: the same bits on 1 and 2 threads (n odd, above the threaded size),
     * and the tails of a normal: P(|x| > 2) = 4.55%, P(|x| > 3) = 0.27% */
    int64_t big = 400001;
    float *x1 = fbuf(big), *x2 = fbuf(big);
    Rng g1 = rng_for(9, "threads"), g2 = rng_for(9, "threads");
    omp_set_num_threads(1);
    rng_normal(&g1, x1, big, 0, 1);
    omp_set_num_threads(2);
    rng_normal(&g2, x2, big, 0, 1);
    CHECK_MSG(memcmp(x1, x2, (size_t)big * sizeof(float)) == 0, "rng_normal differs between 1 and 2 threads");
    int64_t t2 = 0, t3 = 0;
    for (int64_t i = 0; i < big; i++) { t2 += fabsf(x1[i]) > 2.0f; t3 += fabsf(x1[i]) > 3.0f; }
    CHECK_NEAR((double)t2 / (double)big, 0.0455, 0.0015);
    CHECK_NEAR((double)t3 / (double)big, 0.0027, 0.0004);
    free(x1);
    free(x2);
}

int main(void) {
    test_tensor();
    test_gemm();
    test_linear();
    test_conv2d_hand();
    test_conv2d_random();
    test_group_norm();
    test_layer_norm();
    test_silu();
    test_geglu();
    test_attention();
    test_upsample();
    test_concat();
    test_layout();
    test_timestep();
    test_rng();
    TEST_MAIN_END("test_ops");
}
