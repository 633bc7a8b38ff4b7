/* fastops: see fastops.h. The pattern throughout: an OpenMP region splits the
 * work, and each thread calls a plain-loop worker compiled three times
 * (CLONES) so that the compiler vectorises it for the CPU it runs on; the
 * outlined OpenMP body itself is not cloned, so no hot loop lives there.
 * Reductions keep a fixed order for a fixed thread count, so a forward is
 * deterministic: prefix reuse depends on that. */
#include "fastops.h"
#include "clones.h"
#include "err.h"
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define PAR_MIN (1 << 15) /* below this many values one thread does it all */

/* expf to ~2 ulp on [-87, 88] (Cephes' range reduction and polynomial),
 * written so that it vectorises; inputs beyond the range are clamped. */
static inline float fexp(float x) {
    float x0 = x; /* a NaN passes through (the exponent below must not be built from one: UB) */
    x = x != x ? 0.0f : x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;
    float n = floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t e = ((int32_t)n + 127) << 23;
    float s;
    memcpy(&s, &e, sizeof s);
    return x0 != x0 ? x0 : p * s;
}

static inline float fsilu(float v) { return v / (1.0f + fexp(-v)); }

/* 0.5 * g * (1 + erf(g / sqrt 2)): erfc of |z| by Abramowitz & Stegun 7.1.26
 * (absolute error <= 1.5e-7), so that negative g loses nothing to cancellation. */
static inline float fgelu(float g) {
    float z = fabsf(g) * 0.70710678118654752f;
    float t = 1.0f / (1.0f + 0.3275911f * z);
    float ec = ((((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t - 0.284496736f) * t + 0.254829592f) * t *
               fexp(-z * z);
    return 0.5f * g * (g >= 0.0f ? 2.0f - ec : ec);
}

/* [lo, hi) of n split into nt near-equal parts, part t. */
static void split(int64_t n, int nt, int t, int64_t *lo, int64_t *hi) {
    *lo = n * t / nt;
    *hi = n * (t + 1) / nt;
}

/* Runs body over [lo, hi) slices of n items (rows or values) on the threads;
 * one thread when the whole job is `work` values or fewer than PAR_MIN. */
#define SPLIT(n, work, body)                                                      \
    do {                                                                          \
        int nt_ = (work) > PAR_MIN ? omp_get_max_threads() : 1;                   \
        _Pragma("omp parallel num_threads(nt_)") {                                \
            int64_t lo, hi;                                                       \
            split((n), omp_get_num_threads(), omp_get_thread_num(), &lo, &hi);    \
            body;                                                                 \
        }                                                                         \
    } while (0)
#define ELEMENTWISE(n, body) SPLIT(n, n, body)

/* ---- GroupNorm on NHWC ------------------------------------------------- */

/* acc[c] += sum over P pixels of x[p, c] (after x += add, written back). */
CLONES static void gn_sum(float *x, int64_t P, int64_t C, const float *add, double *acc) {
    for (int64_t p = 0; p < P; p++) {
        float *r = x + p * C;
        if (add)
            for (int64_t c = 0; c < C; c++) r[c] += add[c];
        for (int64_t c = 0; c < C; c++) acc[c] += r[c];
    }
}

/* acc[c] += sum over pixels of (x[p, c] - mean[c])^2 */
CLONES static void gn_sq(const float *x, int64_t P, int64_t C, const double *mean, double *acc) {
    for (int64_t p = 0; p < P; p++) {
        const float *r = x + p * C;
        for (int64_t c = 0; c < C; c++) {
            double d = r[c] - mean[c];
            acc[c] += d * d;
        }
    }
}

/* x = x * scale[c] + shift[c], then SiLU */
CLONES static void gn_apply(float *x, int64_t P, int64_t C, const float *scale, const float *shift, int silu) {
    for (int64_t p = 0; p < P; p++) {
        float *r = x + p * C;
        if (silu)
            for (int64_t c = 0; c < C; c++) r[c] = fsilu(r[c] * scale[c] + shift[c]);
        else
            for (int64_t c = 0; c < C; c++) r[c] = r[c] * scale[c] + shift[c];
    }
}

/* Sums the nt per-thread rows of part [nt, C] group by group: out[g]. */
static void gn_groups(const double *part, int nt, int64_t C, int groups, double *out) {
    int64_t cg = C / groups;
    for (int g = 0; g < groups; g++) {
        double s = 0;
        for (int t = 0; t < nt; t++)
            for (int64_t c = g * cg; c < (g + 1) * cg; c++) s += part[t * C + c];
        out[g] = s;
    }
}

void fop_group_norm(float *x, int64_t B, int64_t HW, int64_t C, int groups, const float *gamma, const float *beta,
                    float eps, int silu, const float *add) {
    int nt = HW * C > PAR_MIN ? omp_get_max_threads() : 1;
    if (nt > HW) nt = (int)HW;
    int64_t cg = C / groups;
    double n = (double)(HW * cg);
    double *part = xmalloc((size_t)nt * (size_t)C * sizeof(double)), *gs = xmalloc((size_t)groups * sizeof(double)),
           *mean = xmalloc((size_t)C * sizeof(double));
    float *scale = xmalloc((size_t)C * sizeof(float)), *shift = xmalloc((size_t)C * sizeof(float));
    for (int64_t b = 0; b < B; b++) {
        float *xb = x + b * HW * C;
        memset(part, 0, (size_t)nt * (size_t)C * sizeof(double));
#pragma omp parallel num_threads(nt)
        {
            int64_t lo, hi;
            split(HW, nt, omp_get_thread_num(), &lo, &hi);
            gn_sum(xb + lo * C, hi - lo, C, add ? add + b * C : NULL, part + (int64_t)omp_get_thread_num() * C);
        }
        gn_groups(part, nt, C, groups, gs);
        for (int64_t c = 0; c < C; c++) mean[c] = gs[c / cg] / n;
        memset(part, 0, (size_t)nt * (size_t)C * sizeof(double));
#pragma omp parallel num_threads(nt)
        {
            int64_t lo, hi;
            split(HW, nt, omp_get_thread_num(), &lo, &hi);
            gn_sq(xb + lo * C, hi - lo, C, mean, part + (int64_t)omp_get_thread_num() * C);
        }
        gn_groups(part, nt, C, groups, gs);
        for (int64_t c = 0; c < C; c++) {
            float rstd = (float)(1.0 / sqrt(gs[c / cg] / n + eps)), m = (float)mean[c];
            scale[c] = gamma[c] * rstd;
            shift[c] = beta[c] - m * scale[c];
        }
#pragma omp parallel num_threads(nt)
        {
            int64_t lo, hi;
            split(HW, nt, omp_get_thread_num(), &lo, &hi);
            gn_apply(xb + lo * C, hi - lo, C, scale, shift, silu);
        }
    }
    free(part);
    free(gs);
    free(mean);
    free(scale);
    free(shift);
}

/* ---- LayerNorm, GEGLU, element-wise ------------------------------------ */

CLONES static void ln_rows(const float *x, int64_t M, int64_t C, const float *gamma, const float *beta, float eps,
                           float *y) {
    for (int64_t m = 0; m < M; m++) {
        const float *p = x + m * C;
        double sum = 0, sq = 0;
        for (int64_t c = 0; c < C; c++) sum += p[c];
        double mean = sum / (double)C;
        for (int64_t c = 0; c < C; c++) {
            double d = p[c] - mean;
            sq += d * d;
        }
        float rstd = (float)(1.0 / sqrt(sq / (double)C + eps)), mu = (float)mean;
        float *q = y + m * C;
        for (int64_t c = 0; c < C; c++) q[c] = (p[c] - mu) * rstd * gamma[c] + beta[c];
    }
}

void fop_layer_norm(const float *x, int64_t M, int64_t C, const float *gamma, const float *beta, float eps, float *y) {
    SPLIT(M, M * C, ln_rows(x + lo * C, hi - lo, C, gamma, beta, eps, y + lo * C));
}

CLONES static void geglu_rows(const float *h, int64_t M, int64_t I, float *out) {
    for (int64_t m = 0; m < M; m++) {
        const float *a = h + m * 2 * I, *g = a + I;
        float *o = out + m * I;
        for (int64_t i = 0; i < I; i++) o[i] = a[i] * fgelu(g[i]);
    }
}

void fop_geglu(const float *h, int64_t M, int64_t I, float *out) {
    SPLIT(M, M * I, geglu_rows(h + lo * 2 * I, hi - lo, I, out + lo * I));
}

CLONES static void silu_n(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = fsilu(x[i]);
}
CLONES static void add_n(float *y, const float *x, int64_t n, float div) {
    if (div == 1.0f)
        for (int64_t i = 0; i < n; i++) y[i] += x[i];
    else
        for (int64_t i = 0; i < n; i++) y[i] = (y[i] + x[i]) / div;
}
CLONES static void affine_n(float *x, int64_t n, float alpha, float beta) {
    for (int64_t i = 0; i < n; i++) x[i] = alpha * x[i] + beta;
}


void fop_silu(float *x, int64_t n) { ELEMENTWISE(n, silu_n(x + lo, hi - lo)); }
void fop_add(float *y, const float *x, int64_t n, float div) { ELEMENTWISE(n, add_n(y + lo, x + lo, hi - lo, div)); }
void fop_affine(float *x, int64_t n, float alpha, float beta) { ELEMENTWISE(n, affine_n(x + lo, hi - lo, alpha, beta)); }

/* ---- attention --------------------------------------------------------- */

/* Query rows per block, keys per block, query rows per register tile. The
 * tiles are GCC vectors of 16 floats: one zmm on AVX-512, two ymm on AVX2. */
enum { QB = 256, KB = 64, RB = 4, VW = 16, KV = KB / VW };
typedef float v16 __attribute__((vector_size(VW * sizeof(float))));
static inline __attribute__((always_inline)) v16 vload(const float *p) {
    v16 r;
    memcpy(&r, p, sizeof r);
    return r;
}
static inline __attribute__((always_inline)) void vstore(float *p, v16 x) { memcpy(p, &x, sizeof x); }
typedef int32_t v16i __attribute__((vector_size(VW * sizeof(int32_t))));
static inline __attribute__((always_inline)) v16 vmax(v16 a, v16 b) {
    v16i m = a > b;
    return (v16)(((v16i)a & m) | ((v16i)b & ~m));
}
static inline __attribute__((always_inline)) float hsum(v16 x) {
    float s = 0;
    for (int i = 0; i < VW; i++) s += x[i];
    return s;
}
static inline __attribute__((always_inline)) float hmax(v16 x) {
    float m = x[0];
    for (int i = 1; i < VW; i++) m = x[i] > m ? x[i] : m;
    return m;
}

typedef struct {
    float *kt; /* [D, KB]: the key block, transposed, zero past the last key */
    float *s;  /* [QB, KB]: scores, then probabilities */
    float *o;  /* [QB, D]: unnormalised output */
    float *m, *l; /* [QB]: running max and sum */
    float *zero;  /* [D]: the query row of a tile's missing rows */
} AttnBuf;

/* s[r, :] = scale * q_r . k_j for RB rows (rows past rn read zeros, are not stored). */
static inline __attribute__((always_inline)) void attn_scores(const float *const *qr, int64_t rn, const float *kt, int64_t D, float scale, float *s) {
    v16 acc[RB][KV];
    for (int r = 0; r < RB; r++)
        for (int u = 0; u < KV; u++) acc[r][u] = (v16){0};
    for (int64_t c = 0; c < D; c++) {
        v16 kv[KV];
        for (int u = 0; u < KV; u++) kv[u] = vload(kt + c * KB + u * VW);
        for (int r = 0; r < RB; r++) {
            float a = qr[r][c];
            for (int u = 0; u < KV; u++) acc[r][u] += a * kv[u];
        }
    }
    for (int r = 0; r < rn; r++)
        for (int u = 0; u < KV; u++) vstore(s + r * KB + u * VW, acc[r][u] * scale);
}

/* o[r, dc..dc+64) += sum_j p[r, j] v[j, dc..dc+64) for RB rows (p rows past rn are zero). */
static inline __attribute__((always_inline)) void attn_pv(const float *p, int64_t rn, const float *v, int64_t C, int64_t kn, float *o, int64_t D) {
    v16 acc[RB][KV];
    for (int r = 0; r < RB; r++)
        for (int u = 0; u < KV; u++) acc[r][u] = r < rn ? vload(o + r * D + u * VW) : (v16){0};
    for (int64_t j = 0; j < kn; j++) {
        v16 vv[KV];
        for (int u = 0; u < KV; u++) vv[u] = vload(v + j * C + u * VW);
        for (int r = 0; r < RB; r++) {
            float pr = r < rn ? p[r * KB + j] : 0.0f;
            for (int u = 0; u < KV; u++) acc[r][u] += pr * vv[u];
        }
    }
    for (int r = 0; r < rn; r++)
        for (int u = 0; u < KV; u++) vstore(o + r * D + u * VW, acc[r][u]);
}

/* One block of QB (qn) query rows of one head against every key, online softmax. */
CLONES static void attn_block(const float *q, const float *k, const float *v, int64_t Nk, int64_t C, int64_t D,
                              int64_t qn, float scale, AttnBuf *bf, float *out) {
    float *restrict kt = bf->kt, *restrict s = bf->s, *restrict o = bf->o, *m = bf->m, *l = bf->l;
    int tiled_pv = D % KB == 0; /* head dims of 64, 128, ...: P.V in register tiles too */
    for (int64_t i = 0; i < qn; i++) {
        m[i] = -INFINITY;
        l[i] = 0;
        for (int64_t c = 0; c < D; c++) o[i * D + c] = 0;
    }
    for (int64_t j0 = 0; j0 < Nk; j0 += KB) {
        int64_t kn = Nk - j0 < KB ? Nk - j0 : KB;
        for (int64_t c = 0; c < D; c++) {
            for (int64_t j = 0; j < kn; j++) kt[c * KB + j] = k[(j0 + j) * C + c];
            for (int64_t j = kn; j < KB; j++) kt[c * KB + j] = 0;
        }
        for (int64_t i0 = 0; i0 < qn; i0 += RB) {
            int64_t rn = qn - i0 < RB ? qn - i0 : RB;
            const float *qr[RB];
            for (int r = 0; r < RB; r++) qr[r] = r < rn ? q + (i0 + r) * C : bf->zero;
            attn_scores(qr, rn, kt, D, scale, s + i0 * KB);
        }
        for (int64_t i = 0; i < qn; i++) { /* the online softmax over this block's kn scores */
            float *restrict si = s + i * KB;
            for (int64_t j = kn; j < KB; j++) si[j] = -INFINITY;
            v16 vm = vload(si);
            for (int u = 1; u < KV; u++) vm = vmax(vm, vload(si + u * VW));
            float mx = hmax(vm);
            mx = mx > m[i] ? mx : m[i];
            float corr = m[i] == -INFINITY ? 0.0f : fexp(m[i] - mx);
            for (int64_t j = 0; j < KB; j++) si[j] = fexp(si[j] - mx);
            for (int64_t j = kn; j < KB; j++) si[j] = 0;
            v16 vs = vload(si);
            for (int u = 1; u < KV; u++) vs += vload(si + u * VW);
            l[i] = l[i] * corr + hsum(vs);
            m[i] = mx;
            float *restrict oi = o + i * D;
            for (int64_t c = 0; c < D; c++) oi[c] *= corr;
            if (!tiled_pv)
                for (int64_t j = 0; j < kn; j++) {
                    float p = si[j];
                    const float *restrict vj = v + (j0 + j) * C;
                    for (int64_t c = 0; c < D; c++) oi[c] += p * vj[c];
                }
        }
        if (tiled_pv)
            for (int64_t i0 = 0; i0 < qn; i0 += RB)
                for (int64_t dc = 0; dc < D; dc += KB)
                    attn_pv(s + i0 * KB, qn - i0 < RB ? qn - i0 : RB, v + j0 * C + dc, C, kn, o + i0 * D + dc, D);
    }
    for (int64_t i = 0; i < qn; i++) {
        float inv = 1.0f / l[i];
        for (int64_t c = 0; c < D; c++) out[i * C + c] = o[i * D + c] * inv;
    }
}

void fop_attention(const float *q, const float *k, const float *v, int64_t B, int64_t Nq, int64_t Nk, int64_t C,
                   int heads, float *out) {
    int64_t D = C / heads, nqb = (Nq + QB - 1) / QB, tasks = B * heads * nqb;
    float scale = 1.0f / sqrtf((float)D);
    int nt = B * Nq * Nk * C > PAR_MIN ? omp_get_max_threads() : 1;
#pragma omp parallel num_threads(nt)
    {
        AttnBuf bf;
        float *mem = xmalloc_big(((size_t)D * KB + (size_t)QB * KB + (size_t)QB * (size_t)D + 2 * QB + (size_t)D) * sizeof(float));
        bf.kt = mem;
        bf.s = bf.kt + D * KB;
        bf.o = bf.s + QB * KB;
        bf.m = bf.o + QB * D;
        bf.l = bf.m + QB;
        bf.zero = bf.l + QB;
        memset(bf.zero, 0, (size_t)D * sizeof(float));
#pragma omp for schedule(dynamic)
        for (int64_t t = 0; t < tasks; t++) {
            int64_t b = t / (heads * nqb), h = t / nqb % heads, i0 = t % nqb * QB;
            int64_t qn = Nq - i0 < QB ? Nq - i0 : QB;
            attn_block(q + (b * Nq + i0) * C + h * D, k + b * Nk * C + h * D, v + b * Nk * C + h * D, Nk, C, D, qn,
                       scale, &bf, out + (b * Nq + i0) * C + h * D);
        }
        free(mem);
    }
}

/* ---- layout moves ------------------------------------------------------ */

void fop_upsample2x(const float *x, int64_t B, int64_t H, int64_t W, int64_t C, float *y) {
    size_t row = (size_t)C * sizeof(float);
#pragma omp parallel for collapse(2) schedule(static) if (B * H * W * C > PAR_MIN)
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < 2 * H; i++) {
            float *yr = y + ((b * 2 * H + i) * 2 * W) * C;
            const float *xr = x + ((b * H + i / 2) * W) * C;
            for (int64_t j = 0; j < 2 * W; j++) memcpy(yr + j * C, xr + (j / 2) * C, row);
        }
}

void fop_concat(const float *a, int64_t Ca, const float *b, int64_t Cb, int64_t P, float *y) {
#pragma omp parallel for schedule(static) if (P * (Ca + Cb) > PAR_MIN)
    for (int64_t p = 0; p < P; p++) {
        memcpy(y + p * (Ca + Cb), a + p * Ca, (size_t)Ca * sizeof(float));
        memcpy(y + p * (Ca + Cb) + Ca, b + p * Cb, (size_t)Cb * sizeof(float));
    }
}

CLONES static void bf16_n(const float *x, int64_t n, uint16_t *y) {
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], sizeof u);
        uint32_t nan = (u & 0x7fffffffu) > 0x7f800000u;
        uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
        y[i] = (uint16_t)(nan ? (u >> 16) | 0x40u : r);
    }
}

void fop_to_bf16(const float *x, int64_t n, uint16_t *y) { ELEMENTWISE(n, bf16_n(x + lo, hi - lo, y + lo)); }
