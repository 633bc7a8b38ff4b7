/* test_agree: rank agreement (ablate/agree.c) against values worked by hand
 * on small rankings, ties and infinities included. */
#include "test.h"
#include "agree.h"
#include <math.h>

#define NEAR(a, b) (fabs((a) - (b)) < 1e-12)

int main(void) {
    const double up[5] = {1, 2, 3, 4, 5}, down[5] = {5, 4, 3, 2, 1};
    CHECK(NEAR(agree_kendall(up, up, 5), 1) && NEAR(agree_spearman(up, up, 5), 1) && NEAR(agree_topk(up, up, 5, 2), 1));
    CHECK(NEAR(agree_kendall(up, down, 5), -1) && NEAR(agree_spearman(up, down, 5), -1) && NEAR(agree_topk(up, down, 5, 2), 0));
    /* one swapped pair of four: 5 concordant, 1 discordant of 6 -> 4/6; sum d^2 = 2 -> 1 - 6*2/(4*15) = 0.8 */
    const double a[4] = {1, 2, 3, 4}, b[4] = {1, 3, 2, 4};
    CHECK_MSG(NEAR(agree_kendall(a, b, 4), 4.0 / 6), "tau %g", agree_kendall(a, b, 4));
    CHECK_MSG(NEAR(agree_spearman(a, b, 4), 0.8), "rho %g", agree_spearman(a, b, 4));
    /* ties: x ties pair (0,1), y ties pair (1,2); C = 4, D = 0 -> tau-b 4/sqrt(5*5) = 0.8;
     * average ranks [1.5,1.5,3,4] and [1,2.5,2.5,4]: 3.75 / sqrt(4.5*4.5) */
    const double tx[4] = {1, 1, 2, 3}, ty[4] = {1, 2, 2, 3};
    CHECK_MSG(NEAR(agree_kendall(tx, ty, 4), 0.8), "tau-b %g", agree_kendall(tx, ty, 4));
    CHECK_MSG(NEAR(agree_spearman(tx, ty, 4), 3.75 / 4.5), "rho %g", agree_spearman(tx, ty, 4));
    double r[4];
    agree_ranks(ty, 4, r);
    CHECK(r[0] == 1 && r[1] == 2.5 && r[2] == 2.5 && r[3] == 4);
    /* +Inf (a non-finite student) ranks last; two of them tie */
    const double inf[4] = {INFINITY, 0.5, INFINITY, 0.1}, fin[4] = {9, 0.5, 8, 0.1};
    agree_ranks(inf, 4, r);
    CHECK(r[0] == 3.5 && r[1] == 2 && r[2] == 3.5 && r[3] == 1);
    CHECK_MSG(NEAR(agree_kendall(inf, fin, 4), 5 / sqrt(5 * 6.0)), "tau-b with infinities %g", agree_kendall(inf, fin, 4));
    /* top-k: the best of x are candidates 1, 3, 4; of y 0, 1, 2 */
    const double x[5] = {5, 1, 4, 2, 3};
    CHECK(NEAR(agree_topk(x, up, 5, 2), 0.5) && NEAR(agree_topk(x, up, 5, 3), 1.0 / 3) && NEAR(agree_topk(x, up, 5, 9), 1));
    /* ties at the k-th place broken by candidate order */
    const double t3[3] = {1, 2, 2}, u3[3] = {1, 3, 2};
    CHECK(NEAR(agree_topk(t3, u3, 3, 2), 0.5));
    /* undefined: fewer than two candidates, or a ranking of ties only */
    const double same[3] = {7, 7, 7};
    CHECK(isnan(agree_kendall(up, up, 1)) && isnan(agree_kendall(same, up, 3)) && isnan(agree_spearman(same, up, 3)));
    CHECK(isnan(agree_topk(up, up, 5, 0)));
    TEST_MAIN_END("test_agree");
}
