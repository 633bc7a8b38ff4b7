/* agree: how alike two rankings of the same candidates are (issue 16). Each
 * ranking is given as the candidates' scores, lower is better (a loss), in
 * the same candidate order; +Inf (a student gone non-finite) ranks last, and
 * equal scores tie. NaN is not a score: the caller leaves such candidates out.
 * Tested by tests/test_agree.c against values worked by hand. */
#ifndef UNETLAB_AGREE_H
#define UNETLAB_AGREE_H

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

#endif
