/* test_agree: rank agreement (ablate/agree.c) against values worked by hand
 * on small rankings, ties and infinities included; then `unetlab agree`
 * ($UNETLAB) on two calibration sets of the mini fixture against scores the
 * test computes from the DB itself (SQL over eval_results). */
#include "test.h"
#include "testcli.h"
#include "agree.h"
#include <cjson/cJSON.h>
#include <math.h>

/* block_nmse per student from SQL: the mean NMSE over samples (those below `upto`, in
 * timestep bin `bin` unless -1) of each down and up block output and the output, summed;
 * x for calibration set 1, y for set 2, by plan. */
static int sql_scores(const char *db, int upto, int bin, int64_t *plan, double *x, double *y, int max) {
    char *csv = NULL;
    const char *q = fmt("%s db query --db %s --format csv \"SELECT j.plan_id, j.calib_id, sum(r.a) FROM (SELECT job_id, point,"
                        " avg(value) AS a FROM eval_results WHERE metric = 'nmse' AND sample < %d AND (%d < 0 OR tbin = %d) AND (point GLOB"
                        " 'down_blocks.[0-9]' OR point GLOB 'up_blocks.[0-9]' OR point = 'output') GROUP BY job_id, point)"
                        " r JOIN eval_jobs j ON j.id = r.job_id WHERE j.status = 'done' GROUP BY j.plan_id, j.calib_id"
                        " ORDER BY j.plan_id, j.calib_id\"", BIN, db, upto, bin, bin);
    if (run(q, &csv) != 0) { free(csv); return -1; }
    int n = 0;
    long long p, c;
    double v;
    for (char *l = strtok(strchr(csv, '\n') ? strchr(csv, '\n') + 1 : csv, "\n"); l; l = strtok(NULL, "\n")) {
        if (sscanf(l, "%lld,%lld,%lf", &p, &c, &v) != 3) continue;
        if (n && plan[n - 1] == p && c == 2) y[n - 1] = v; /* set 2 of the same student */
        else if (c == 1 && n < max) plan[n] = p, x[n] = v, y[n] = NAN, n++;
    }
    free(csv);
    return n;
}

static double jnum(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static void command(void) {
    cli_setup("agree");
    const char *db = fmt("%s/a.db", T);
    char dbp[256];
    snprintf(dbp, sizeof dbp, "%s", db);
    for (int seed = 0; seed < 2; seed++) /* two calibration sets: the same size, other samples */
        CHECK(run(fmt("%s eval --model tests/fixtures/mini-public --candidates all --synthetic 4 --latent 8 --tokens 4"
                      " --seed %d --db %s >/dev/null 2>&1", BIN, seed, dbp), NULL) == 0);
    char *js = NULL;
    CHECK(run(fmt("%s agree --db %s --format json", BIN, dbp), &js) == 0);
    cJSON *o = cJSON_Parse(js);
    const cJSON *p0 = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "pairs"), 0);
    int64_t plan[256];
    double x[256], y[256];
    int n = sql_scores(dbp, 1 << 30, -1, plan, x, y, 256);
    CHECK_MSG(p0 && n > 10 && jnum(p0, "students") == n, "students: agree %g, SQL %d", p0 ? jnum(p0, "students") : -1, n);
    if (p0 && n > 10) {
        CHECK_MSG(fabs(jnum(p0, "kendall_tau") - agree_kendall(x, y, n)) < 1e-9, "tau %g vs %g", jnum(p0, "kendall_tau"),
                  agree_kendall(x, y, n));
        CHECK(fabs(jnum(p0, "spearman_rho") - agree_spearman(x, y, n)) < 1e-9);
        CHECK(fabs(jnum(p0, "top5") - agree_topk(x, y, n, 5)) < 1e-12 && fabs(jnum(p0, "top20") - agree_topk(x, y, n, 20)) < 1e-12);
    }
    /* convergence: the first sample of set 1 against all four */
    double x1[256], y1[256];
    int64_t plan1[256];
    int n1 = sql_scores(dbp, 1, -1, plan1, x1, y1, 256);
    const cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "convergence"), 0);
    CHECK(c0 && n1 == n && jnum(c0, "samples") == 1 && jnum(c0, "set") == 1);
    if (c0 && n1 == n)
        CHECK_MSG(fabs(jnum(c0, "kendall_tau") - agree_kendall(x1, x, n)) < 1e-9, "convergence tau %g vs %g",
                  jnum(c0, "kendall_tau"), agree_kendall(x1, x, n));
    /* timestep bins: set 1's bin 9 (its sample at t = 999) against all of set 1 */
    const cJSON *b;
    int found = 0;
    cJSON_ArrayForEach(b, cJSON_GetObjectItem(o, "timestep_bins")) {
        if (jnum(b, "set") != 1 || jnum(b, "bin") != 9) continue;
        int nb = sql_scores(dbp, 1 << 30, 9, plan1, x1, y1, 256);
        found = nb == n;
        if (found)
            CHECK_MSG(fabs(jnum(b, "kendall_tau") - agree_kendall(x1, x, n)) < 1e-9, "bin tau %g vs %g",
                      jnum(b, "kendall_tau"), agree_kendall(x1, x, n));
    }
    CHECK_MSG(found, "no timestep bin 9 for set 1: %s", js);
    cJSON_Delete(o);
    free(js);
    CHECK(run(fmt("%s agree --db %s --metric bogus 2>/dev/null", BIN, dbp), NULL) == 2);
    CHECK(run(fmt("%s agree --db %s/none.db 2>/dev/null", BIN, T), NULL) == 6);
    cli_cleanup();
}

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
    command();
    TEST_MAIN_END("test_agree");
}
