/* agree: see agree.h. O(n^2) pair counts: candidates number in the hundreds. */
#include "agree.h"
#include "err.h"
#include "prof.h"
#include "rng.h"
#include <math.h>
#include <stdlib.h>

static const double *g_key; /* qsort context: the scores being ordered */

/* by score, then by candidate index (a stable, deterministic order) */
static int cmp_idx(const void *pa, const void *pb) {
    int a = *(const int *)pa, b = *(const int *)pb;
    if (g_key[a] != g_key[b]) return g_key[a] < g_key[b] ? -1 : 1;
    return a - b;
}

static int *order(const double *x, int n) {
    int *ix = xmalloc((size_t)(n ? n : 1) * sizeof *ix);
    for (int i = 0; i < n; i++) ix[i] = i;
    g_key = x;
    qsort(ix, (size_t)n, sizeof *ix, cmp_idx);
    return ix;
}

void agree_ranks(const double *x, int n, double *rank) {
    int *ix = order(x, n);
    for (int i = 0; i < n;) {
        int j = i;
        while (j + 1 < n && x[ix[j + 1]] == x[ix[i]]) j++;
        double r = 0.5 * (double)(i + j) + 1.0; /* the average of ranks i+1 .. j+1 */
        for (int k = i; k <= j; k++) rank[ix[k]] = r;
        i = j + 1;
    }
    free(ix);
}

double agree_kendall(const double *x, const double *y, int n) {
    if (n < 2) return NAN;
    double c = 0, d = 0, tx = 0, ty = 0;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            int sx = (x[i] > x[j]) - (x[i] < x[j]), sy = (y[i] > y[j]) - (y[i] < y[j]);
            tx += sx == 0;
            ty += sy == 0;
            if (sx && sy) { if (sx == sy) c++; else d++; }
        }
    double n0 = 0.5 * n * (n - 1.0), den = sqrt((n0 - tx) * (n0 - ty));
    return den > 0 ? (c - d) / den : NAN;
}

double agree_spearman(const double *x, const double *y, int n) {
    if (n < 2) return NAN;
    double *rx = xmalloc((size_t)n * sizeof *rx), *ry = xmalloc((size_t)n * sizeof *ry);
    agree_ranks(x, n, rx);
    agree_ranks(y, n, ry);
    double mean = 0.5 * (n + 1.0), sxy = 0, sxx = 0, syy = 0; /* average ranks always average (n+1)/2 */
    for (int i = 0; i < n; i++) {
        double a = rx[i] - mean, b = ry[i] - mean;
        sxy += a * b, sxx += a * a, syy += b * b;
    }
    free(rx);
    free(ry);
    return sxx > 0 && syy > 0 ? sxy / sqrt(sxx * syy) : NAN;
}

double agree_topk(const double *x, const double *y, int n, int k) {
    if (k > n) k = n;
    if (k < 1) return NAN;
    int *ox = order(x, n), *oy = order(y, n), both = 0;
    char *in_y = xcalloc((size_t)n, 1);
    for (int i = 0; i < k; i++) in_y[oy[i]] = 1;
    for (int i = 0; i < k; i++) both += in_y[ox[i]];
    free(ox);
    free(oy);
    free(in_y);
    return (double)both / k;
}

void agree_means(const double *s, int n, int ns, const int *idx, int m, double *out) {
    for (int i = 0; i < n; i++) {
        double t = 0;
        for (int k = 0; k < m; k++) t += s[(size_t)i * ns + (idx ? idx[k] : k)];
        out[i] = m ? t / m : NAN;
    }
}

void agree_bootstrap(const double *a, int na, const double *b, int nb, int n, int paired, int reps, uint64_t seed,
                     AgreeInterval *out) {
    *out = (AgreeInterval){NAN, NAN, NAN, NAN};
    if (reps < 1 || n < 2 || na < 1 || nb < 1) return;
    Rng r = rng_for(seed, "agree_bootstrap");
    int *ia = xmalloc((size_t)na * sizeof *ia), *ib = xmalloc((size_t)nb * sizeof *ib), ntau = 0, nrho = 0;
    double *x = xmalloc((size_t)n * sizeof *x), *y = xmalloc((size_t)n * sizeof *y);
    double *taus = xmalloc((size_t)reps * sizeof *taus), *rhos = xmalloc((size_t)reps * sizeof *rhos);
    for (int k = 0; k < reps; k++) {
        for (int i = 0; i < na; i++) ia[i] = (int)(rng_next(&r) % (uint64_t)na);
        for (int i = 0; i < nb; i++) ib[i] = paired && nb == na ? ia[i] : (int)(rng_next(&r) % (uint64_t)nb);
        agree_means(a, n, na, ia, na, x);
        agree_means(b, n, nb, ib, nb, y);
        double t = agree_kendall(x, y, n), h = agree_spearman(x, y, n);
        if (!isnan(t)) taus[ntau++] = t;
        if (!isnan(h)) rhos[nrho++] = h;
    }
    /* percentile intervals: the profiler's quantile (interpolated between order statistics) */
    if (ntau) out->tau_lo = prof_quantile(taus, ntau, 0.025), out->tau_hi = prof_quantile(taus, ntau, 0.975);
    if (nrho) out->rho_lo = prof_quantile(rhos, nrho, 0.025), out->rho_hi = prof_quantile(rhos, nrho, 0.975);
    free(ia), free(ib), free(x), free(y), free(taus), free(rhos);
}
