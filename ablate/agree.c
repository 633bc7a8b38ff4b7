/* agree: see agree.h. O(n^2) pair counts: candidates number in the hundreds. */
#include "agree.h"
#include "err.h"
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
