/* unetlab agree: can a cheap run rank the candidates like an expensive one?
 * For every model in the store, every pair of calibration sets under which
 * the same students were scored: Kendall's tau-b, Spearman's rho and top-k
 * overlap of the two rankings (ablate/agree.c); and within each set, how the
 * ranking settles as samples are added (tau between the first n samples and
 * all of them). Scores are eval's summaries (lower is better), recomputed from
 * the stored per-sample rows; and each timestep bin's ranking against all
 * bins'. The first part of issue 16: one DB, calibration
 * sets as the settings. Tested by tests/test_agree.c. */
#include "agree.h"
#include "cli.h"
#include "db.h"
#include "err.h"
#include "eval.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char USAGE[] =
    "usage: unetlab agree --db DB [--metric block_nmse|nmse_sum|feature_loss|output_mse] [--format text|json|csv]\n"
    "\n"
    "Compares the rankings of the students scored under two or more calibration sets\n"
    "(eval or schedule runs with different --calib or --synthetic sets, sizes or seeds) of\n"
    "the same model in DB: for each pair of sets, over the students both scored, Kendall's\n"
    "tau-b, Spearman's rho and the overlap of their top 5, 10 and 20 (1: the same). Within\n"
    "each set, tau between the ranking of its first n samples and of all of them (n = 1, 2,\n"
    "4, ...): how many samples the ranking needs; and tau between each timestep bin's\n"
    "ranking (eval's bins of 100 steps) and all bins': whether a removal harmless at high\n"
    "noise stays harmless at low noise. --metric picks the score (default\n"
    "block_nmse, the schedule's loss; lower is better; a student gone non-finite last).\n";

typedef struct {
    int sample, bin;    /* bin: the timestep's, as eval stores it (100 steps a bin, 0..9) */
    char *point;
    const char *metric; /* static strings of eval's metrics */
    double value;
} Row;

typedef struct {
    int64_t job_id, model_id, plan_id, calib_id;
    char *spec, *calib_source;
    int n_samples;
    Row *rows;
    int nrows, cap;
} Job;

typedef struct {
    Job *j;
    int n, cap;
} Jobs;

static void keep_job(void *ctx, const DbDoneJob *d) {
    Jobs *x = ctx;
    if (x->n == x->cap) x->j = xrealloc(x->j, (size_t)(x->cap = x->cap ? 2 * x->cap : 64) * sizeof *x->j);
    x->j[x->n++] = (Job){d->job_id, d->model_id, d->plan_id, d->calib_id, xstrdup(d->spec ? d->spec : ""),
                         xstrdup(d->calib_source ? d->calib_source : ""), d->n_samples, NULL, 0, 0};
}

static const char *metric_name(const char *m) {
    return !strcmp(m, "mse") ? "mse" : !strcmp(m, "nmse") ? "nmse" : !strcmp(m, "cosine") ? "cosine" : NULL;
}

static void keep_row(void *ctx, const char *point, int sample, double timestep, const char *metric, double value) {
    Job *j = ctx;
    const char *m = metric_name(metric);
    if (!m) return;
    if (j->nrows == j->cap) j->rows = xrealloc(j->rows, (size_t)(j->cap = j->cap ? 2 * j->cap : 256) * sizeof *j->rows);
    int bin = (int)floor(timestep / 100.0);
    j->rows[j->nrows++] = (Row){sample, bin < 0 ? 0 : bin > 9 ? 9 : bin, xstrdup(point), m, isnan(value) ? INFINITY : value};
}

/* The job's score from its samples below `upto` (all: 1 << 30) in timestep bin `bin` (all: -1). */
static double score(const Job *j, const char *by, int upto, int bin) {
    EvalSummary s = {0};
    for (int i = 0; i < j->nrows; i++)
        if (j->rows[i].sample < upto && (bin < 0 || j->rows[i].bin == bin))
            summary_add(&s, j->rows[i].point, j->rows[i].metric, j->rows[i].value);
    summary_finish(&s);
    double v = NAN;
    if (!strcmp(by, "block_nmse")) v = s.block_nmse;
    else if (!strcmp(by, "nmse_sum")) v = s.nmse_sum;
    else if (!strcmp(by, "feature_loss")) v = s.feature_loss;
    else
        for (int k = 0; k < s.n; k++)
            if (!strcmp(s.point[k], "output")) v = s.mse[k];
    summary_free(&s);
    return v;
}

static void add_num(cJSON *o, const char *k, double v) {
    if (isfinite(v)) cJSON_AddNumberToObject(o, k, v);
    else cJSON_AddNullToObject(o, k);
}

/* The jobs of one model and calibration set: J->j[from .. to). */
typedef struct {
    int from, to;
} Set;

/* Scores of the students both sets hold (by plan), into x and y; returns how many. */
static int common(const Jobs *J, Set a, Set b, const char *by, double *x, double *y) {
    int n = 0;
    for (int i = a.from; i < a.to; i++)
        for (int k = b.from; k < b.to; k++)
            if (J->j[i].plan_id == J->j[k].plan_id) {
                x[n] = score(&J->j[i], by, 1 << 30, -1);
                y[n++] = score(&J->j[k], by, 1 << 30, -1);
            }
    return n;
}

static const char *set_label(const Job *j, char *buf, size_t n) {
    snprintf(buf, n, "calibration set %lld (%s, %d samples)", (long long)j->calib_id, j->calib_source, j->n_samples);
    return buf;
}

/* One row of a set's ranking against its ranking from all samples and bins (all[]):
 * from its first `upto` samples (bin -1), or from timestep bin `bin` alone. */
static void within(const Jobs *J, Set st, const char *by, int upto, int bin, const double *all, double *x, Format f,
                   cJSON *arr) {
    const Job *j0 = &J->j[st.from];
    int n = st.to - st.from;
    for (int i = 0; i < n; i++) x[i] = score(&J->j[st.from + i], by, upto, bin);
    double tau = agree_kendall(x, all, n);
    char samples[16] = "", b[16] = "";
    if (bin < 0) snprintf(samples, sizeof samples, "%d", upto);
    else snprintf(b, sizeof b, "%d", bin);
    if (f == FORMAT_TEXT && bin < 0) printf(" n=%d tau %.3f;", upto, tau);
    else if (f == FORMAT_TEXT) printf(" t %d-%d tau %.3f;", 100 * bin, 100 * bin + 99, tau);
    else if (f == FORMAT_CSV)
        printf("%s,%s,%lld,,%s,%s,%d,%.6g,,,,\n", bin < 0 ? "convergence" : "bin", j0->spec, (long long)j0->calib_id,
               samples, b, n, tau);
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "model", j0->spec);
    cJSON_AddNumberToObject(e, "set", (double)j0->calib_id);
    if (bin < 0) {
        cJSON_AddNumberToObject(e, "samples", upto);
        cJSON_AddNumberToObject(e, "of", j0->n_samples);
    } else cJSON_AddNumberToObject(e, "bin", bin);
    cJSON_AddNumberToObject(e, "students", n);
    add_num(e, "kendall_tau", tau);
    cJSON_AddItemToArray(arr, e);
}

int cmd_agree(int argc, char **argv) {
    const char *dbpath = NULL, *metric = "block_nmse", *fmt = "text";
    const Opt opts[] = {{"--db", 1, &dbpath}, {"--metric", 1, &metric}, {"--format", 1, &fmt}, {NULL, 0, NULL}};
    int rc = cli_parse(argc, argv, opts, USAGE);
    if (rc) return rc;
    if (!dbpath) return err_set(ERR_USAGE, "agree: --db is required (see unetlab agree --help)");
    if (strcmp(metric, "block_nmse") && strcmp(metric, "nmse_sum") && strcmp(metric, "feature_loss") &&
        strcmp(metric, "output_mse"))
        return err_set(ERR_USAGE, "option '--metric': '%s' is not one of block_nmse, nmse_sum, feature_loss, output_mse",
                       metric);
    Format f;
    if ((rc = cli_format(fmt, &f, 1))) return rc;
    Db *db;
    if ((rc = db_open_existing(&db, dbpath))) return rc;
    Jobs J = {0};
    rc = db_done_jobs(db, METRIC_VERSION, keep_job, &J);
    for (int i = 0; i < J.n && !rc; i++) rc = db_job_rows(db, J.j[i].job_id, keep_row, &J.j[i]);
    db_close(db);
    /* the sets: runs of equal (model, calibration set), in the walk's order */
    Set *sets = xmalloc((size_t)(J.n + 1) * sizeof *sets);
    int ns = 0;
    for (int i = 0; i < J.n; i++)
        if (!i || J.j[i].model_id != J.j[i - 1].model_id || J.j[i].calib_id != J.j[i - 1].calib_id) sets[ns++] = (Set){i, i + 1};
        else sets[ns - 1].to = i + 1;
    double *x = xmalloc((size_t)(J.n + 1) * sizeof *x), *y = xmalloc((size_t)(J.n + 1) * sizeof *y);
    cJSON *out = cJSON_CreateObject(), *pairs = cJSON_AddArrayToObject(out, "pairs"), *conv = cJSON_AddArrayToObject(out, "convergence"),
          *bins = cJSON_AddArrayToObject(out, "timestep_bins");
    cJSON_AddStringToObject(out, "metric", metric);
    static const int K[3] = {5, 10, 20};
    char la[600], lb[600];
    if (!rc && f == FORMAT_TEXT) printf("rank agreement by %s (lower is better; 1 = the same ranking)\n", metric);
    if (!rc && f == FORMAT_CSV) printf("kind,model,set_a,set_b,samples,bin,students,kendall_tau,spearman_rho,top5,top10,top20\n");
    for (int a = 0; a < ns && !rc; a++)
        for (int b = a + 1; b < ns; b++) {
            const Job *ja = &J.j[sets[a].from], *jb = &J.j[sets[b].from];
            if (ja->model_id != jb->model_id) continue;
            int n = common(&J, sets[a], sets[b], metric, x, y);
            if (n < 2) continue;
            double tau = agree_kendall(x, y, n), rho = agree_spearman(x, y, n), top[3];
            for (int k = 0; k < 3; k++) top[k] = agree_topk(x, y, n, K[k]);
            set_label(ja, la, sizeof la), set_label(jb, lb, sizeof lb);
            if (f == FORMAT_TEXT)
                printf("%s: %s vs %s: %d students; tau %.3f, rho %.3f, top-5 %.2f, top-10 %.2f, top-20 %.2f\n", ja->spec,
                       la, lb, n, tau, rho, top[0], top[1], top[2]);
            else if (f == FORMAT_CSV)
                printf("pair,%s,%lld,%lld,,,%d,%.6g,%.6g,%.6g,%.6g,%.6g\n", ja->spec, (long long)ja->calib_id,
                       (long long)jb->calib_id, n, tau, rho, top[0], top[1], top[2]);
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "model", ja->spec);
            cJSON_AddNumberToObject(e, "set_a", (double)ja->calib_id);
            cJSON_AddStringToObject(e, "set_a_source", ja->calib_source);
            cJSON_AddNumberToObject(e, "set_b", (double)jb->calib_id);
            cJSON_AddStringToObject(e, "set_b_source", jb->calib_source);
            cJSON_AddNumberToObject(e, "students", n);
            add_num(e, "kendall_tau", tau);
            add_num(e, "spearman_rho", rho);
            add_num(e, "top5", top[0]);
            add_num(e, "top10", top[1]);
            add_num(e, "top20", top[2]);
            cJSON_AddItemToArray(pairs, e);
        }
    /* within a set: the first n samples against all of them */
    for (int s = 0; s < ns && !rc; s++) {
        const Job *j0 = &J.j[sets[s].from];
        int n = sets[s].to - sets[s].from;
        if (n < 2) continue;
        for (int i = 0; i < n; i++) y[i] = score(&J.j[sets[s].from + i], metric, 1 << 30, -1);
        set_label(j0, la, sizeof la);
        if (f == FORMAT_TEXT && j0->n_samples > 1) printf("%s: %s, the first n samples against all:", j0->spec, la);
        for (int m = 1; m < j0->n_samples; m *= 2) within(&J, sets[s], metric, m, -1, y, x, f, conv);
        if (f == FORMAT_TEXT && j0->n_samples > 1) printf("\n");
        /* timestep bins: does a removal harmless at high noise stay harmless at low noise? */
        int has[10] = {0}, nb = 0;
        for (int k = 0; k < j0->nrows; k++) has[j0->rows[k].bin] = 1;
        for (int b = 0; b < 10; b++) nb += has[b];
        if (nb < 2) continue;
        if (f == FORMAT_TEXT) printf("%s: %s, each timestep bin's ranking against all bins':", j0->spec, la);
        for (int b = 0; b < 10; b++)
            if (has[b]) within(&J, sets[s], metric, 1 << 30, b, y, x, f, bins);
        if (f == FORMAT_TEXT) printf("\n");
    }
    if (!rc && f == FORMAT_TEXT && !cJSON_GetArraySize(pairs))
        printf("no two calibration sets scored the same students (run eval or schedule with another --calib or"
               " --synthetic set)\n");
    if (!rc && f == FORMAT_JSON) {
        char *t = cJSON_Print(out);
        puts(t);
        free(t);
    }
    cJSON_Delete(out);
    free(x);
    free(y);
    free(sets);
    for (int i = 0; i < J.n; i++) {
        for (int k = 0; k < J.j[i].nrows; k++) free(J.j[i].rows[k].point);
        free(J.j[i].rows);
        free(J.j[i].spec);
        free(J.j[i].calib_source);
    }
    free(J.j);
    return rc;
}
