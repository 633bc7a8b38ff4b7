/* agree: how alike two rankings of the same candidates are (issue 16). Each
 * ranking is given as the candidates' scores, lower is better (a loss), in
 * the same candidate order; +Inf (a student gone non-finite) ranks last, and
 * equal scores tie. NaN is not a score: the caller leaves such candidates out.
 * Tested by tests/test_agree.c against values worked by hand. */
#ifndef UNETLAB_AGREE_H
#define UNETLAB_AGREE_H
#include <stdint.h>

/* Ranks 1..n of x[0..n-1] (1 for the smallest), ties given the average of
 * the ranks they span (1, 2.5, 2.5, 4). */
void agree_ranks(const double *x, int n, double *rank);

/* Kendall's tau-b: (concordant - discordant pairs) / sqrt((n0 - tx)(n0 - ty)),
 * n0 = n(n-1)/2, tx and ty the pairs tied in x and in y. 1 for the same
 * order, -1 for the reverse; NaN when n < 2 or either ranking is all ties. */
double agree_kendall(const double *x, const double *y, int n);

/* Spearman's rho: the Pearson correlation of the two rankings' average
 * ranks. NaN when n < 2 or either ranking is all ties. */
double agree_spearman(const double *x, const double *y, int n);

/* Top-k overlap: the share of the k best by x that are among the k best by
 * y (k clipped to n). Ties at the k-th place are broken by candidate order,
 * the order the enumeration gives, as the schedule breaks them. */
double agree_topk(const double *x, const double *y, int n, int k);

/* The mean of each of n candidates' per-sample scores: s[i * ns + k] is
 * candidate i's score on sample k; idx[0..m-1] the samples to average (NULL:
 * the first m). A candidate's score over a calibration set is this mean. */
void agree_means(const double *s, int n, int ns, const int *idx, int m, double *out);

/* Percentile bootstrap over calibration samples of tau and rho between two
 * settings: a (n candidates x na samples) and b (n x nb), each a setting's
 * per-sample scores as agree_means takes them. Each of reps replicates draws
 * na samples of a and nb of b with replacement (the same indices for both
 * when paired: one calibration set under two settings, na == nb), and
 * recomputes both; lo and hi are the 2.5th and 97.5th percentiles of the
 * replicates (NaN ones left out; all NaN when reps < 1 or none is finite).
 * Seeded: the same arguments give the same interval. */
typedef struct {
    double tau_lo, tau_hi, rho_lo, rho_hi;
} AgreeInterval;
void agree_bootstrap(const double *a, int na, const double *b, int nb, int n, int paired, int reps, uint64_t seed,
                     AgreeInterval *out);

#endif
