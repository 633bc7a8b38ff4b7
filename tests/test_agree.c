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
 * x for the jobs of calibration set 1, y for set 2 (both of dtype `dt`), by plan. */
static int sql_scores2(const char *db, int upto, int bin, int c1, int c2, const char *dt1, const char *dt2, int64_t *plan,
                       double *x, double *y, int max) {
    char *csv = NULL;
    const char *q = fmt("%s db query --db %s --format csv \"SELECT j.plan_id, j.calib_id = %d AND j.dtype = '%s', sum(r.a)"
                        " FROM (SELECT job_id, point, avg(value) AS a FROM eval_results WHERE metric = 'nmse' AND sample < %d"
                        " AND (%d < 0 OR tbin = %d) AND (point GLOB 'down_blocks.[0-9]' OR point GLOB 'up_blocks.[0-9]' OR"
                        " point = 'output') GROUP BY job_id, point) r JOIN eval_jobs j ON j.id = r.job_id WHERE"
                        " j.status = 'done' AND ((j.calib_id = %d AND j.dtype = '%s') OR (j.calib_id = %d AND j.dtype = '%s'))"
                        " GROUP BY j.id ORDER BY j.plan_id, 2 DESC\"",
                        BIN, db, c1, dt1, upto, bin, bin, c1, dt1, c2, dt2);
    if (run(q, &csv) != 0) { free(csv); return -1; }
    int n = 0, first;
    long long p;
    double v;
    for (char *l = strtok(strchr(csv, '\n') ? strchr(csv, '\n') + 1 : csv, "\n"); l; l = strtok(NULL, "\n")) {
        if (sscanf(l, "%lld,%d,%lf", &p, &first, &v) != 3) continue;
        if (n && plan[n - 1] == p && !first) y[n - 1] = v; /* the second setting of the same student */
        else if (first && n < max) plan[n] = p, x[n] = v, y[n] = NAN, n++;
    }
    free(csv);
    return n;
}
static int sql_scores(const char *db, int upto, int bin, int64_t *plan, double *x, double *y, int max) {
    return sql_scores2(db, upto, bin, 1, 2, "fp32", "fp32", plan, x, y, max);
}

static double jnum(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}
static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

/* The pair of settings whose labels contain a and b (in either order), or NULL. */
static const cJSON *find_pair(const cJSON *o, const char *a, const char *b) {
    const cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItem(o, "pairs")) {
        const char *x = jstr(p, "setting_a"), *y = jstr(p, "setting_b");
        if ((strstr(x, a) && strstr(y, b)) || (strstr(x, b) && strstr(y, a))) return p;
    }
    return NULL;
}

static void check_pair(const cJSON *p, const char *db, int c1, int c2, const char *d1, const char *d2) {
    int64_t plan[256];
    double x[256], y[256];
    int n = sql_scores2(db, 1 << 30, -1, c1, c2, d1, d2, plan, x, y, 256);
    CHECK_MSG(p && n > 10 && jnum(p, "students") == n, "students: agree %g, SQL %d", p ? jnum(p, "students") : -1, n);
    if (!p || n <= 10) return;
    CHECK_MSG(fabs(jnum(p, "kendall_tau") - agree_kendall(x, y, n)) < 1e-9, "tau %g vs %g", jnum(p, "kendall_tau"),
              agree_kendall(x, y, n));
    CHECK(fabs(jnum(p, "spearman_rho") - agree_spearman(x, y, n)) < 1e-9);
    CHECK(fabs(jnum(p, "top5") - agree_topk(x, y, n, 5)) < 1e-12 && fabs(jnum(p, "top20") - agree_topk(x, y, n, 20)) < 1e-12);
    CHECK_MSG(jnum(p, "tau_lo") <= jnum(p, "tau_hi") && jnum(p, "tau_lo") >= -1 && jnum(p, "tau_hi") <= 1 &&
                  jnum(p, "rho_lo") <= jnum(p, "rho_hi"),
              "interval [%g, %g]", jnum(p, "tau_lo"), jnum(p, "tau_hi"));
}

/* A student's block_nmse from `unetlab eval --drop LIST` run on its own, in a DB of its own. */
static double eval_alone(const char *drop, int k) {
    char *js = NULL;
    double v = NAN;
    if (run(fmt("%s eval --model tests/fixtures/mini-public --drop %s --synthetic 4 --latent 8 --tokens 4 --seed 0"
                " --db %s/alone%d.db --format json 2>/dev/null", BIN, drop, T, k), &js) == 0) {
        cJSON *o = cJSON_Parse(js);
        v = jnum(cJSON_GetArrayItem(cJSON_GetObjectItem(o, "students"), 0), "block_nmse");
        cJSON_Delete(o);
    }
    free(js);
    return v;
}

/* Additivity: each stage's measured loss equals an eval of that stage's
 * student run separately, and its prediction the sum of separate evals of
 * each removal alone (the base, the fixture itself, scores 0). */
static void additivity(const cJSON *o) {
    const cJSON *a;
    char drops[4096] = "";
    double sum = 0;
    int stages = 0, k = 0;
    cJSON_ArrayForEach(a, cJSON_GetObjectItem(o, "additivity")) {
        char removed[1024];
        snprintf(removed, sizeof removed, "%s", jstr(a, "removed"));
        for (char *c = strtok(removed, " "); c; c = strtok(NULL, " ")) {
            char one[512];
            snprintf(one, sizeof one, "%s", c);
            for (char *q = one; *q; q++)
                if (*q == '+') *q = ',';
            sum += eval_alone(one, k++);
            snprintf(drops + strlen(drops), sizeof drops - strlen(drops), "%s%s", drops[0] ? "," : "", one);
        }
        double measured = eval_alone(drops, k++);
        stages++;
        CHECK_MSG(fabs(jnum(a, "measured") - measured) <= 1e-9 * fabs(measured), "stage %g measured %.12g, separately %.12g",
                  jnum(a, "stage"), jnum(a, "measured"), measured);
        CHECK_MSG(fabs(jnum(a, "predicted") - sum) <= 1e-9 * fabs(sum), "stage %g predicted %.12g, separately %.12g",
                  jnum(a, "stage"), jnum(a, "predicted"), sum);
    }
    CHECK_MSG(stages == 3, "%d additivity rows for a 3-stage schedule", stages);
}

static void command(void) {
    cli_setup("agree");
    const char *db = fmt("%s/a.db", T);
    char dbp[256], dbr[256];
    snprintf(dbp, sizeof dbp, "%s", db);
    snprintf(dbr, sizeof dbr, "%s/ref.db", T);
    for (int seed = 0; seed < 2; seed++) /* two calibration sets: the same size, other samples */
        CHECK(run(fmt("%s eval --model tests/fixtures/mini-public --candidates all --synthetic 4 --latent 8 --tokens 4"
                      " --seed %d --db %s >/dev/null 2>&1", BIN, seed, dbp), NULL) == 0);
    char *js = NULL, *js2 = NULL;
    CHECK(run(fmt("%s agree --db %s --format json --no-store", BIN, dbp), &js) == 0);
    CHECK(run(fmt("%s agree --db %s --format json --no-store", BIN, dbp), &js2) == 0);
    CHECK_MSG(js && js2 && !strcmp(js, js2), "two runs differ (the bootstrap is seeded)");
    free(js2);
    cJSON *o = cJSON_Parse(js);
    const cJSON *s0 = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "settings"), 0);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(o, "settings")) == 2 && !strcmp(jstr(s0, "dtype"), "fp32") &&
          jnum(s0, "height") == 64 && jnum(s0, "samples") == 4);
    const cJSON *p0 = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "pairs"), 0);
    check_pair(p0, dbp, 1, 2, "fp32", "fp32");
    CHECK(p0 && cJSON_IsFalse(cJSON_GetObjectItem(p0, "same_samples")));
    int64_t plan[256];
    double x[256], y[256];
    int n = sql_scores(dbp, 1 << 30, -1, plan, x, y, 256);
    /* convergence: the first sample of set 1 against all four */
    double x1[256], y1[256];
    int64_t plan1[256];
    int n1 = sql_scores(dbp, 1, -1, plan1, x1, y1, 256);
    const cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "convergence"), 0);
    CHECK(c0 && n1 == n && jnum(c0, "samples") == 1 && !strcmp(jstr(c0, "setting"), jstr(s0, "label")));
    if (c0 && n1 == n)
        CHECK_MSG(fabs(jnum(c0, "kendall_tau") - agree_kendall(x1, x, n)) < 1e-9, "convergence tau %g vs %g",
                  jnum(c0, "kendall_tau"), agree_kendall(x1, x, n));
    /* timestep bins: set 1's bin 9 (its sample at t = 999) against all of set 1 */
    const cJSON *b;
    int found = 0;
    cJSON_ArrayForEach(b, cJSON_GetObjectItem(o, "timestep_bins")) {
        if (strcmp(jstr(b, "setting"), jstr(s0, "label")) || jnum(b, "bin") != 9) continue;
        int nb = sql_scores(dbp, 1 << 30, 9, plan1, x1, y1, 256);
        found = nb == n;
        if (found)
            CHECK_MSG(fabs(jnum(b, "kendall_tau") - agree_kendall(x1, x, n)) < 1e-9, "bin tau %g vs %g",
                      jnum(b, "kendall_tau"), agree_kendall(x1, x, n));
    }
    CHECK_MSG(found, "no timestep bin 9 for set 1: %.300s", js);
    cJSON_Delete(o);
    free(js);

    /* bf16: the same samples in another dtype is another setting (where the CPU has bf16), never a reuse */
    char *err = NULL;
    CHECK(run(fmt("%s eval --model tests/fixtures/mini-public --candidates all --synthetic 4 --latent 8 --tokens 4"
                  " --seed 0 --dtype bf16 --db %s 2>&1 >/dev/null", BIN, dbp), &err) == 0);
    long long bf = db_count(dbp, "SELECT count(*) FROM eval_jobs WHERE dtype = 'bf16' AND status = 'done'");
    if (err && strstr(err, "running fp32, not bf16")) CHECK_MSG(bf == 0, "%lld bf16 jobs from a CPU without bf16", bf);
    else CHECK_MSG(bf == n, "%lld bf16 jobs of %d students", bf, n);
    free(err);
    /* the reference engine in a DB of its own: a setting of another DB, the same samples */
    CHECK(run(fmt("%s eval --model tests/fixtures/mini-public --candidates all --synthetic 4 --latent 8 --tokens 4"
                  " --seed 0 --device ref --db %s >/dev/null 2>&1", BIN, dbr), NULL) == 0);
    CHECK(run(fmt("%s schedule --model tests/fixtures/mini-public --synthetic 4 --latent 8 --tokens 4 --seed 0 --stages 3"
                  " --db %s >/dev/null 2>&1", BIN, dbp), NULL) == 0);
    CHECK(run(fmt("%s agree --db %s --db %s --bootstrap 200 --format json", BIN, dbp, dbr), &js) == 0);
    o = cJSON_Parse(js);
    if (bf) {
        const cJSON *p = find_pair(o, "fp32 synthetic", "bf16 synthetic");
        for (const cJSON *q = p; q && strstr(jstr(q, "setting_a"), "db1") && strstr(jstr(q, "setting_b"), "db1");) {
            check_pair(q, dbp, 1, 1, strstr(jstr(q, "setting_a"), "bf16") ? "bf16" : "fp32",
                       strstr(jstr(q, "setting_a"), "bf16") ? "fp32" : "bf16");
            CHECK(cJSON_IsTrue(cJSON_GetObjectItem(q, "same_samples")));
            break;
        }
        CHECK_MSG(p, "no fp32/bf16 pair: %.400s", js);
    }
    /* fast engine against the reference: the same calibration set, another DB: the same ranking, near enough */
    const cJSON *r;
    found = 0;
    cJSON_ArrayForEach(r, cJSON_GetObjectItem(o, "pairs")) {
        const char *a = jstr(r, "setting_a"), *bb = jstr(r, "setting_b");
        if (!strstr(a, "fp32") || !strstr(bb, "fp32") || !((strstr(a, " db1") && strstr(bb, " db2")) || (strstr(a, " db2") && strstr(bb, " db1"))))
            continue;
        if (!cJSON_IsTrue(cJSON_GetObjectItem(r, "same_samples"))) continue;
        found = 1;
        CHECK_MSG(jnum(r, "students") == n && jnum(r, "kendall_tau") > 0.99, "engines: %g students, tau %g",
                  jnum(r, "students"), jnum(r, "kendall_tau"));
    }
    CHECK_MSG(found, "no pair across the two DBs: %.400s", js);
    additivity(o);
    /* within a setting, the students every setting scored: the schedule's extra students of set 1 are left out */
    const cJSON *cv;
    int conv_rows = 0, conv_all = 1;
    cJSON_ArrayForEach(cv, cJSON_GetObjectItem(o, "convergence")) conv_rows++, conv_all &= jnum(cv, "students") == n;
    CHECK_MSG(conv_rows > 0 && conv_all, "%d convergence rows, not all over the %d shared students", conv_rows, n);
    CHECK(db_count(dbp, "SELECT count(*) FROM eval_jobs WHERE calib_id = 1 AND dtype = 'fp32'") > n);
    /* stored: this run's rows in the first DB, as many as printed, tau as printed */
    long long stored_run = (long long)jnum(o, "stored_run"), want = 0;
    const char *kinds[] = {"pairs", "convergence", "timestep_bins", "bin_scores", "additivity"};
    for (int k = 0; k < 5; k++) want += cJSON_GetArraySize(cJSON_GetObjectItem(o, kinds[k]));
    CHECK_MSG(stored_run > 0 && db_count(dbp, fmt("SELECT count(*) FROM agree_results WHERE run_id = %lld", stored_run)) == want,
              "stored %lld rows, printed %lld", db_count(dbp, fmt("SELECT count(*) FROM agree_results WHERE run_id = %lld", stored_run)),
              want);
    const cJSON *pf = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "pairs"), 0);
    const char *tq = pf ? fmt("SELECT count(*) FROM agree_results WHERE run_id = %lld AND kind = 'pair' AND"
                              " abs(kendall_tau - %.17g) < 1e-12 AND setting_a = '%s' AND setting_b = '%s'",
                              stored_run, jnum(pf, "kendall_tau"), jstr(pf, "setting_a"), jstr(pf, "setting_b")) : "";
    long long tn = db_count(dbp, tq);
    CHECK_MSG(pf && tn == 1, "%lld rows for %s", tn, tq);
    CHECK(db_count(dbr, "SELECT count(*) FROM agree_results") == 0);
    cJSON_Delete(o);
    free(js);
    /* CSV: every row as many fields as the header, the additivity rows' stage in its column */
    char *csv_all = NULL;
    CHECK(run(fmt("%s agree --db %s --no-store --bootstrap 20 --format csv", BIN, dbp), &csv_all) == 0);
    int nf_head = -1, rows_ok = 1, add_rows = 0;
    for (char *l = csv_all ? strtok(csv_all, "\n") : NULL; l; l = strtok(NULL, "\n")) {
        int nf = 1, q = 0, field = 0, stage_col = -1;
        for (char *c = l; *c; c++) {
            if (*c == '"') q = !q;
            else if (*c == ',' && !q) nf++;
        }
        if (nf_head < 0) { /* the header: which field is "stage" */
            nf_head = nf;
            continue;
        }
        rows_ok &= nf == nf_head;
        if (strncmp(l, "additivity,", 11)) continue;
        add_rows++;
        q = 0;
        for (char *c = l; *c && stage_col < 0; c++) { /* the 18th field (stage) holds the stage number */
            if (*c == '"') q = !q;
            else if (*c == ',' && !q && ++field == 17) stage_col = atoi(c + 1);
        }
        CHECK_MSG(stage_col == add_rows, "additivity CSV row %d: stage column holds %d: %s", add_rows, stage_col, l);
    }
    CHECK_MSG(nf_head == 21 && rows_ok && add_rows == 3, "CSV: %d header fields, rows %s, %d additivity rows", nf_head,
              rows_ok ? "aligned" : "NOT aligned", add_rows);
    free(csv_all);
    CHECK(run(fmt("%s agree --db %s --no-store >/dev/null", BIN, dbp), NULL) == 0);
    CHECK(db_count(dbp, "SELECT count(DISTINCT run_id) FROM agree_results") == 1);
    /* every metric at once: four views per setting */
    CHECK(run(fmt("%s agree --db %s --metric all --bootstrap 0 --no-store --format csv >%s/all.csv", BIN, dbr, T), NULL) == 0);
    CHECK(db_count(dbr, "SELECT 1") == 1);
    char *csv = NULL;
    CHECK(run(fmt("grep -c '^pair,' %s/all.csv", T), &csv) == 0 && csv && atoi(csv) == 6); /* 4 views: 6 pairs */
    free(csv);
    CHECK(run(fmt("%s agree --db %s --metric bogus 2>/dev/null", BIN, dbp), NULL) == 2);
    CHECK(run(fmt("%s agree --db %s --bootstrap -1 2>/dev/null", BIN, dbp), NULL) == 2);
    CHECK(run(fmt("%s agree 2>/dev/null", BIN), NULL) == 2);
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
