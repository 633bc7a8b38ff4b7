/* unetlab agree: can a cheap run rank the candidates like an expensive one?
 * (issue 16). A setting is the students of one model scored under one
 * calibration set (its samples, size, source) in one dtype, in one DB; a view
 * is a setting ranked by one metric. For every two views of the same model
 * (models matched across DBs by their config and weights hashes, students by
 * their plan hash): Kendall's tau-b, Spearman's rho and top-k overlap of the
 * rankings (ablate/agree.c), with percentile-bootstrap intervals over the
 * calibration samples. Within each view (over the students every setting of
 * its model scored): tau between its first n samples and all of them, and
 * between each timestep bin and all bins; each student's score per bin. Per schedule: the measured loss of each stage's student
 * against the base's plus the sum of the single removals' increases
 * (additivity). Scores come from the stored per-sample rows; everything is
 * printed and stored in the first DB (agree_results). Tested by
 * tests/test_agree.c against values the test computes from the DB with SQL
 * and against evals of the same students run separately. */
#include "agree.h"
#include "cli.h"
#include "db.h"
#include "err.h"
#include "eval.h"
#include "hash.h"
#include "plan.h"
#include "rng.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char USAGE[] =
    "usage: unetlab agree --db DB [--db DB2 ...] [--metric M[,M...]|all] [--bootstrap B] [--seed S]\n"
    "                     [--no-store] [--format text|json|csv]\n"
    "\n"
    "How alike are the rankings of the candidates under different settings? A setting is\n"
    "the students of a model scored under one calibration set (its samples, image size\n"
    "and source: eval's --calib/--synthetic/--latent/--seed) in one dtype (--dtype), in one\n"
    "DB (several --db: engines or machines; models are matched by their weights, students\n"
    "by their plan). For every two settings (and metrics) of a model, over the students\n"
    "both scored: Kendall's tau-b, Spearman's rho (1: the same ranking, 0: unrelated) and\n"
    "the overlap of their top 5, 10 and 20, with 95% bootstrap intervals of tau and rho\n"
    "over the calibration samples (B replicates, default 1000; 0: none). Within each\n"
    "setting (over the students every setting of the model scored): tau between the\n"
    "ranking of its first n samples and of all of them (n = 1, 2, 4, ...: how many\n"
    "samples the ranking needs), tau between each timestep bin's\n"
    "ranking (eval's bins of 100 steps) and all bins' (is a removal harmless at high\n"
    "noise harmless at low noise?), and every student's score per bin. For each schedule\n"
    "in a DB: each stage's measured loss against the base's loss plus the sum of its\n"
    "removals' increases when each was scored alone (at the first stage that scored it):\n"
    "where the schedule's greedy assumption breaks.\n"
    "\n"
    "  --metric M   block_nmse (default, the schedule's loss), nmse_sum, feature_loss,\n"
    "               output_mse, a comma-separated list of them, or all; lower is better, a\n"
    "               student gone non-finite ranks last. Several metrics: each is a view.\n"
    "  --no-store   print only (default: the rows are stored in the first DB, table\n"
    "               agree_results, under this run; `unetlab report` draws them)\n"
    "  --format csv every row the store gets (kinds pair, convergence, bin, bin_score,\n"
    "               additivity), one per line under one header; a field that does not\n"
    "               apply to its kind, or a number that is not one, is empty\n";

static void add_num(cJSON *o, const char *k, double v) {
    if (isfinite(v)) cJSON_AddNumberToObject(o, k, v);
    else cJSON_AddNullToObject(o, k);
}

static const char *const METRICS[4] = {"block_nmse", "nmse_sum", "feature_loss", "output_mse"};
enum { NMETRIC = 4, NBIN = 10 };

typedef struct {
    int db;                       /* index into the --db list */
    char *model_key, *spec, *calib_hash, *calib_source, *dtype, *plan_hash;
    char *name;                   /* the plan's removals joined by '+' ("(none)" for the base) */
    int64_t calib_id, job_id;
    int n_samples, height, width;
    EvalSummary *per;             /* per sample, while the rows are read */
    double *score;                /* [metric][sample], after */
    int *bin;                     /* each sample's timestep bin; -1: no row */
} Job;

typedef struct {
    Job *j;
    int n, cap, db;
} Jobs;

static void keep_job(void *ctx, const DbDoneJob *d) {
    Jobs *x = ctx;
    if (x->n == x->cap) x->j = xrealloc(x->j, (size_t)(x->cap = x->cap ? 2 * x->cap : 64) * sizeof *x->j);
    Job *j = &x->j[x->n++];
    memset(j, 0, sizeof *j);
    j->db = x->db;
    j->model_key = xasprintf("%s:%s", d->config_hash, d->weights_hash);
    j->spec = xstrdup(d->spec ? d->spec : "");
    j->calib_hash = xstrdup(d->calib_hash ? d->calib_hash : "");
    j->calib_source = xstrdup(d->calib_source ? d->calib_source : "");
    j->dtype = xstrdup(d->dtype ? d->dtype : "fp32");
    j->plan_hash = xstrdup(d->plan_hash ? d->plan_hash : "");
    Plan p;
    plan_init(&p);
    size_t len = 0;
    if (d->plan_json && !plan_parse(&p, d->plan_json, strlen(d->plan_json), "stored plan"))
        for (int i = 0; i < p.n; i++) len += strlen(p.remove[i]) + 1;
    j->name = xmalloc(len + 8);
    strcpy(j->name, p.n ? "" : "(none)");
    for (int i = 0; i < p.n; i++) strcat(strcat(j->name, i ? "+" : ""), p.remove[i]);
    plan_free(&p);
    j->calib_id = d->calib_id, j->job_id = d->job_id;
    j->n_samples = d->n_samples > 0 ? d->n_samples : 1, j->height = d->height, j->width = d->width;
    j->per = xcalloc((size_t)j->n_samples, sizeof *j->per);
    j->bin = xmalloc((size_t)j->n_samples * sizeof *j->bin);
    for (int s = 0; s < j->n_samples; s++) j->bin[s] = -1;
}

static void keep_row(void *ctx, const char *point, int sample, double timestep, const char *metric, double value) {
    Job *j = ctx;
    if (sample < 0 || sample >= j->n_samples) return;
    int bin = (int)floor(timestep / 100.0);
    j->bin[sample] = bin < 0 ? 0 : bin > NBIN - 1 ? NBIN - 1 : bin;
    summary_add(&j->per[sample], point, metric, isnan(value) ? INFINITY : value);
}

/* One sample's summary into its four metric scores; frees the summary. */
static void finish_job(Job *j) {
    j->score = xmalloc((size_t)NMETRIC * j->n_samples * sizeof *j->score);
    for (int s = 0; s < j->n_samples; s++) {
        EvalSummary *e = &j->per[s];
        summary_finish(e);
        double out = NAN;
        for (int k = 0; k < e->n; k++)
            if (!strcmp(e->point[k], "output")) out = e->mse[k];
        const double v[NMETRIC] = {e->block_nmse, e->nmse_sum, e->feature_loss, out};
        for (int m = 0; m < NMETRIC; m++) j->score[(size_t)m * j->n_samples + s] = e->n ? v[m] : NAN;
        summary_free(e);
    }
    free(j->per);
    j->per = NULL;
}

/* A setting: jobs [from, to) of one DB, model, calibration set and dtype. */
typedef struct {
    int from, to;
    char label[160];
} Setting;

static void setting_label(const Job *j, int ndb, char *out, size_t n) {
    char size[32] = "size ?", db[24] = "";
    if (j->height > 0) snprintf(size, sizeof size, "%dx%d", j->height, j->width);
    if (ndb > 1) snprintf(db, sizeof db, " db%d", j->db + 1);
    const char *src = strrchr(j->calib_source, '/') ? strrchr(j->calib_source, '/') + 1 : j->calib_source;
    snprintf(out, n, "%s n=%d %s %.24s:%.6s%s", size, j->n_samples, j->dtype, src, j->calib_hash, db);
}

/* Students' per-sample scores of metric m, for the students both settings
 * hold: a (n x na), b (n x nb); returns n. */
static int common(const Jobs *J, const Setting *sa, const Setting *sb, int ma, int mb, double *a, double *b) {
    int n = 0;
    for (int i = sa->from; i < sa->to; i++)
        for (int k = sb->from; k < sb->to; k++) {
            const Job *x = &J->j[i], *y = &J->j[k];
            if (strcmp(x->plan_hash, y->plan_hash)) continue;
            memcpy(a + (size_t)n * x->n_samples, x->score + (size_t)ma * x->n_samples, (size_t)x->n_samples * sizeof *a);
            memcpy(b + (size_t)n * y->n_samples, y->score + (size_t)mb * y->n_samples, (size_t)y->n_samples * sizeof *b);
            n++;
        }
    return n;
}

typedef struct {
    DbAgreeRow *r;
    int n, cap;
    char **strs;                  /* owned strings the rows point to */
    int ns, scap;
} Rows;

static const char *own(Rows *R, char *s) {
    if (R->ns == R->scap) R->strs = xrealloc(R->strs, (size_t)(R->scap = R->scap ? 2 * R->scap : 64) * sizeof *R->strs);
    return R->strs[R->ns++] = s;
}

static DbAgreeRow *add_row(Rows *R, const char *model, const char *kind, const char *metric, const char *a) {
    if (R->n == R->cap) R->r = xrealloc(R->r, (size_t)(R->cap = R->cap ? 2 * R->cap : 256) * sizeof *R->r);
    DbAgreeRow *r = &R->r[R->n++];
    *r = (DbAgreeRow){model, kind, metric, a, NULL, -1, -1, -1, -1, -1, -1, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN,
                      NULL, NAN, NAN};
    return r;
}

/* One row as a line of --format csv (the header in cmd_agree): a count that
 * does not apply (-1) and a number that is not one (NaN) are empty fields. */
static void csv_row(const DbAgreeRow *r) {
    const int ints[] = {r->samples, r->bin, r->students};
    const double nums[] = {r->kendall_tau, r->tau_lo, r->tau_hi, r->spearman_rho, r->rho_lo, r->rho_hi,
                           r->top5,        r->top10,  r->top20};
    printf("%s,%s,\"%s\",", r->kind, r->model, r->setting_a);
    if (r->setting_b) printf("\"%s\"", r->setting_b);
    printf(",%s", r->metric);
    for (int k = 0; k < 3; k++) ints[k] >= 0 ? printf(",%d", ints[k]) : printf(",");
    for (int k = 0; k < 9; k++) isnan(nums[k]) ? printf(",") : printf(",%.9g", nums[k]);
    r->stage >= 0 ? printf(",%d,", r->stage) : printf(",,");
    if (r->candidate) printf("\"%s\"", r->candidate);
    isnan(r->measured) ? printf(",") : printf(",%.9g", r->measured);
    isnan(r->predicted) ? printf(",\n") : printf(",%.9g\n", r->predicted);
}

/* ---- additivity: per schedule of each DB -------------------------------- */

typedef struct {
    int64_t id, calib_id;
    char *spec, *options;
} Sched;
typedef struct {
    Sched *s;
    int n;
} Scheds;
static void keep_sched(void *ctx, const DbSchedule *s) {
    Scheds *x = ctx;
    x->s = xrealloc(x->s, (size_t)(x->n + 1) * sizeof *x->s);
    x->s[x->n++] = (Sched){s->id, s->calib_id, xstrdup(s->spec ? s->spec : ""), xstrdup(s->options ? s->options : "")};
}

typedef struct {
    int n;
    char **name;
    double *inc;   /* the increase when first scored */
    int *stage;    /* the stage it was first scored at */
    double base;   /* the teacher's loss: the first score's base */
} Alone;
static void keep_score(void *ctx, const DbScoreRow *r) {
    Alone *a = ctx;
    for (int i = 0; i < a->n; i++)
        if (!strcmp(a->name[i], r->candidate)) return; /* scored at an earlier stage */
    a->name = xrealloc(a->name, (size_t)(a->n + 1) * sizeof *a->name);
    a->inc = xrealloc(a->inc, (size_t)(a->n + 1) * sizeof *a->inc);
    a->stage = xrealloc(a->stage, (size_t)(a->n + 1) * sizeof *a->stage);
    a->name[a->n] = xstrdup(r->candidate);
    a->inc[a->n] = r->increase, a->stage[a->n] = r->stage;
    if (!a->n) a->base = r->loss - r->increase;
    a->n++;
}

typedef struct {
    int n;
    int stage[512];
    char *chosen[512];
    double loss[512];
} Stages;
static void keep_stage(void *ctx, const DbStageRow *s) {
    Stages *x = ctx;
    if (x->n == 512) return;
    x->stage[x->n] = s->stage, x->chosen[x->n] = xstrdup(s->chosen ? s->chosen : ""), x->loss[x->n] = s->loss;
    x->n++;
}

/* The additivity rows of every schedule of DB d (its calibration sets
 * labelled from the jobs read from it). */
static int additivity(Db *db, int d, int ndb, const Jobs *J, Rows *R, Format f, cJSON *arr) {
    Scheds S = {0};
    int rc = db_schedules(db, keep_sched, &S);
    for (int s = 0; s < S.n && !rc; s++) {
        Alone A = {0};
        Stages G = {0};
        if ((rc = db_schedule_scores(db, S.s[s].id, keep_score, &A)) || (rc = db_schedule_stages(db, S.s[s].id, keep_stage, &G)))
            goto next;
        char set[160] = "", dt[16] = "fp32";
        cJSON *opt = cJSON_Parse(S.s[s].options);
        const cJSON *odt = cJSON_GetObjectItemCaseSensitive(opt, "dtype");
        if (cJSON_IsString(odt)) snprintf(dt, sizeof dt, "%s", odt->valuestring);
        cJSON_Delete(opt);
        for (int i = 0; i < J->n && !set[0]; i++)
            if (J->j[i].db == d && J->j[i].calib_id == S.s[s].calib_id && !strcmp(J->j[i].dtype, dt))
                setting_label(&J->j[i], ndb, set, sizeof set);
        const char *label = own(R, xasprintf("%s schedule %lld", set[0] ? set : "?", (long long)S.s[s].id));
        double base = A.n ? A.base : NAN, sum = 0;
        if (f == FORMAT_TEXT && G.n)
            printf("%s: %s: stage, removed, measured loss, predicted (base + single increases), measured/predicted\n",
                   S.s[s].spec, label);
        for (int g = 0; g < G.n; g++) {
            int later = 0;
            char *names = xstrdup(G.chosen[g]);
            for (char *tok = strtok(names, " "); tok; tok = strtok(NULL, " ")) {
                int k = 0;
                while (k < A.n && strcmp(A.name[k], tok)) k++;
                sum += k < A.n ? A.inc[k] : NAN;
                later |= k < A.n && A.stage[k] > 1;
            }
            free(names);
            DbAgreeRow *r = add_row(R, own(R, xstrdup(S.s[s].spec)), "additivity", "block_nmse", label);
            r->stage = G.stage[g], r->candidate = own(R, xstrdup(G.chosen[g])), r->measured = G.loss[g];
            r->predicted = base + sum;
            if (f == FORMAT_TEXT)
                printf("  %d %s %.6g %.6g %.3f%s\n", G.stage[g], G.chosen[g], r->measured, r->predicted,
                       r->measured / r->predicted, later ? " (a removal first scored after stage 1)" : "");
            else if (f == FORMAT_CSV)
                csv_row(r);
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "model", S.s[s].spec);
            cJSON_AddStringToObject(e, "schedule", label);
            cJSON_AddNumberToObject(e, "stage", G.stage[g]);
            cJSON_AddStringToObject(e, "removed", G.chosen[g]);
            add_num(e, "measured", r->measured);
            add_num(e, "predicted", r->predicted);
            cJSON_AddBoolToObject(e, "scored_alone_after_stage_1", later);
            cJSON_AddItemToArray(arr, e);
        }
    next:
        for (int i = 0; i < A.n; i++) free(A.name[i]);
        free(A.name), free(A.inc), free(A.stage);
        for (int i = 0; i < G.n; i++) free(G.chosen[i]);
    }
    for (int s = 0; s < S.n; s++) free(S.s[s].spec), free(S.s[s].options);
    free(S.s);
    return rc;
}

/* ---- the command ------------------------------------------------------------ */

typedef struct {
    const Jobs *J;
    const Setting *set;
    int nset;
    const int *metric;
    int nmetric, reps;
    long seed;
    Format f;
    Rows *R;
    const char **view; /* [setting * nmetric + m]: the setting's label, with the metric when there are several */
    cJSON *pairs, *conv, *bins, *bin_scores;
} Ctx;

static void pair_rows(Ctx *c) {
    static const int K[3] = {5, 10, 20};
    const Jobs *J = c->J;
    int nv = c->nset * c->nmetric;
    double *a = NULL, *b = NULL, *x = NULL, *y = NULL;
    for (int va = 0; va < nv; va++)
        for (int vb = va + 1; vb < nv; vb++) {
            const Setting *sa = &c->set[va / c->nmetric], *sb = &c->set[vb / c->nmetric];
            int ma = c->metric[va % c->nmetric], mb = c->metric[vb % c->nmetric];
            const Job *ja = &J->j[sa->from], *jb = &J->j[sb->from];
            if (strcmp(ja->model_key, jb->model_key)) continue;
            int cap = (sa->to - sa->from) + 1;
            a = xrealloc(a, (size_t)cap * ja->n_samples * sizeof *a);
            b = xrealloc(b, (size_t)cap * jb->n_samples * sizeof *b);
            x = xrealloc(x, (size_t)cap * sizeof *x), y = xrealloc(y, (size_t)cap * sizeof *y);
            int n = common(J, sa, sb, ma, mb, a, b);
            if (n < 2) continue;
            agree_means(a, n, ja->n_samples, NULL, ja->n_samples, x);
            agree_means(b, n, jb->n_samples, NULL, jb->n_samples, y);
            int paired = !strcmp(ja->calib_hash, jb->calib_hash);
            AgreeInterval ci;
            agree_bootstrap(a, ja->n_samples, b, jb->n_samples, n, paired, c->reps,
                            (uint64_t)c->seed ^ rng_hash(sa->label) ^ (rng_hash(sb->label) << 1) ^ (uint64_t)(ma * 8 + mb),
                            &ci);
            const char *la = c->view[va], *lb = c->view[vb];
            DbAgreeRow *r = add_row(c->R, ja->spec, "pair", ma == mb ? METRICS[ma] : own(c->R, xasprintf("%s/%s", METRICS[ma], METRICS[mb])), la);
            r->setting_b = lb, r->students = n, r->bootstrap = c->reps;
            r->kendall_tau = agree_kendall(x, y, n), r->spearman_rho = agree_spearman(x, y, n);
            r->tau_lo = ci.tau_lo, r->tau_hi = ci.tau_hi, r->rho_lo = ci.rho_lo, r->rho_hi = ci.rho_hi;
            double top[3];
            for (int k = 0; k < 3; k++) top[k] = agree_topk(x, y, n, K[k]);
            r->top5 = top[0], r->top10 = top[1], r->top20 = top[2];
            if (c->f == FORMAT_TEXT) {
                printf("%s: %s vs %s%s: %d students; tau %.3f", ja->spec, la, lb, paired ? " (same samples)" : "", n,
                       r->kendall_tau);
                if (c->reps > 0) printf(" [%.3f, %.3f]", ci.tau_lo, ci.tau_hi);
                printf(", rho %.3f", r->spearman_rho);
                if (c->reps > 0) printf(" [%.3f, %.3f]", ci.rho_lo, ci.rho_hi);
                printf(", top-5 %.2f, top-10 %.2f, top-20 %.2f\n", top[0], top[1], top[2]);
            } else if (c->f == FORMAT_CSV)
                csv_row(r);
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "model", ja->spec);
            cJSON_AddStringToObject(e, "setting_a", la);
            cJSON_AddStringToObject(e, "setting_b", lb);
            cJSON_AddStringToObject(e, "metric", r->metric);
            cJSON_AddBoolToObject(e, "same_samples", paired);
            cJSON_AddNumberToObject(e, "students", n);
            add_num(e, "kendall_tau", r->kendall_tau);
            add_num(e, "tau_lo", ci.tau_lo);
            add_num(e, "tau_hi", ci.tau_hi);
            add_num(e, "spearman_rho", r->spearman_rho);
            add_num(e, "rho_lo", ci.rho_lo);
            add_num(e, "rho_hi", ci.rho_hi);
            add_num(e, "top5", top[0]);
            add_num(e, "top10", top[1]);
            add_num(e, "top20", top[2]);
            cJSON_AddItemToArray(c->pairs, e);
        }
    free(a), free(b), free(x), free(y);
}

/* A row of one view's ranking from a subset of its samples (x: each
 * student's mean over them) against its ranking from all (all): its first
 * `samples` of `of` (bin -1, kind 'convergence') or those of timestep bin `bin`
 * (kind 'bin'). Printed, kept for the DB and the JSON. */
static void subset_row(Ctx *c, const char *spec, const char *label, int m, int samples, int of, int bin, const double *x,
                       const double *all, int n) {
    int conv = bin < 0;
    DbAgreeRow *r = add_row(c->R, spec, conv ? "convergence" : "bin", METRICS[m], label);
    r->samples = samples, r->of_samples = conv ? of : -1, r->bin = bin, r->students = n;
    r->kendall_tau = agree_kendall(x, all, n), r->spearman_rho = agree_spearman(x, all, n), r->top10 = agree_topk(x, all, n, 10);
    if (c->f == FORMAT_TEXT && conv) printf(" n=%d tau %.3f;", samples, r->kendall_tau);
    else if (c->f == FORMAT_TEXT) printf(" t %d-%d tau %.3f;", 100 * bin, 100 * bin + 99, r->kendall_tau);
    else if (c->f == FORMAT_CSV)
        csv_row(r);
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "model", spec);
    cJSON_AddStringToObject(e, "setting", label);
    if (!conv) cJSON_AddNumberToObject(e, "bin", bin);
    cJSON_AddNumberToObject(e, "samples", samples);
    if (conv) cJSON_AddNumberToObject(e, "of", of);
    cJSON_AddNumberToObject(e, "students", n);
    add_num(e, "kendall_tau", r->kendall_tau);
    add_num(e, "spearman_rho", r->spearman_rho);
    add_num(e, "top10", r->top10);
    cJSON_AddItemToArray(conv ? c->conv : c->bins, e);
}

/* The jobs of setting st whose student every other setting of its model
 * scored too (into who; returns how many), so that each setting's
 * within-setting rows rank the same students (a schedule adds students to
 * the one it ran on); all of st's when fewer than two are shared. */
static int shared_students(const Ctx *c, const Setting *st, int *who) {
    const Jobs *J = c->J;
    int n = 0;
    for (int i = st->from; i < st->to; i++) {
        int everywhere = 1;
        for (int k = 0; k < c->nset && everywhere; k++) {
            const Setting *o = &c->set[k];
            if (o == st || strcmp(J->j[o->from].model_key, J->j[st->from].model_key)) continue;
            int has = 0;
            for (int q = o->from; q < o->to && !has; q++) has = !strcmp(J->j[q].plan_hash, J->j[i].plan_hash);
            everywhere = has;
        }
        if (everywhere) who[n++] = i;
    }
    if (n >= 2) return n;
    for (n = 0; n < st->to - st->from; n++) who[n] = st->from + n;
    return n;
}

/* Within one view (setting st, metric index mi), over its students who[0..n-1]: the first n
 * samples against all; each bin against all; each student's score per bin. */
static void within_rows(Ctx *c, int st, int mi, const int *who, int n) {
    const Jobs *J = c->J;
    const Job *j0 = &J->j[c->set[st].from];
    const int m = c->metric[mi], ns = j0->n_samples;
    const char *label = c->view[st * c->nmetric + mi];
    double *s = xmalloc((size_t)n * ns * sizeof *s), *all = xmalloc((size_t)n * sizeof *all), *x = xmalloc((size_t)n * sizeof *x);
    for (int i = 0; i < n; i++) memcpy(s + (size_t)i * ns, J->j[who[i]].score + (size_t)m * ns, (size_t)ns * sizeof *s);
    agree_means(s, n, ns, NULL, ns, all);
    if (n >= 2 && ns > 1) {
        if (c->f == FORMAT_TEXT) printf("%s: %s, the first n samples against all %d:", j0->spec, label, ns);
        for (int k = 1; k < ns; k *= 2) {
            agree_means(s, n, ns, NULL, k, x);
            subset_row(c, j0->spec, label, m, k, ns, -1, x, all, n);
        }
        if (c->f == FORMAT_TEXT) printf("\n");
    }
    /* timestep bins: the samples of each bin, as eval stored them */
    int *idx = xmalloc((size_t)ns * sizeof *idx), nb = 0, has[NBIN] = {0};
    for (int k = 0; k < ns; k++)
        if (j0->bin[k] >= 0) has[j0->bin[k]] = 1;
    for (int b = 0; b < NBIN; b++) nb += has[b];
    if (nb >= 2 && c->f == FORMAT_TEXT) printf("%s: %s, each timestep bin's ranking against all bins':", j0->spec, label);
    for (int b = 0; b < NBIN && nb >= 2; b++) {
        if (!has[b]) continue;
        int m_in = 0;
        for (int k = 0; k < ns; k++)
            if (j0->bin[k] == b) idx[m_in++] = k;
        agree_means(s, n, ns, idx, m_in, x);
        subset_row(c, j0->spec, label, m, m_in, -1, b, x, all, n);
        /* each student's score in this bin, by its plan's name (the candidate it is) */
        for (int i = 0; i < n; i++) {
            DbAgreeRow *q = add_row(c->R, j0->spec, "bin_score", METRICS[m], label);
            q->bin = b, q->samples = m_in, q->candidate = J->j[who[i]].name, q->measured = x[i];
            if (c->f == FORMAT_CSV) csv_row(q);
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "setting", label);
            cJSON_AddStringToObject(o, "student", J->j[who[i]].name);
            cJSON_AddNumberToObject(o, "bin", b);
            add_num(o, "score", x[i]);
            cJSON_AddItemToArray(c->bin_scores, o);
        }
    }
    if (nb >= 2 && c->f == FORMAT_TEXT) printf("\n");
    free(s), free(all), free(x), free(idx);
}

static int parse_metrics(const char *s, int *metric, int *n) {
    *n = 0;
    if (!strcmp(s, "all")) {
        for (int m = 0; m < NMETRIC; m++) metric[(*n)++] = m;
        return 0;
    }
    char *t = xstrdup(s), *save = NULL;
    int rc = 0;
    for (char *tok = strtok_r(t, ",", &save); tok && !rc; tok = strtok_r(NULL, ",", &save)) {
        int m = 0;
        while (m < NMETRIC && strcmp(tok, METRICS[m])) m++;
        if (m == NMETRIC)
            rc = err_set(ERR_USAGE, "option '--metric': '%s' is not one of block_nmse, nmse_sum, feature_loss, output_mse, all",
                         tok);
        for (int k = 0; k < *n && !rc; k++)
            if (metric[k] == m) m = -1;
        if (!rc && m >= 0) metric[(*n)++] = m;
    }
    free(t);
    if (!rc && !*n) rc = err_set(ERR_USAGE, "option '--metric': no metric given");
    return rc;
}

int cmd_agree(int argc, char **argv) {
    /* --db may repeat: its values are taken out before the common parser sees argv */
    const char **dbs = xcalloc((size_t)argc + 1, sizeof *dbs);
    char **rest = xcalloc((size_t)argc + 1, sizeof *rest);
    int ndb = 0, nrest = 0, rc = 0;
    for (int i = 0; i < argc; i++) {
        if (i && !strcmp(argv[i], "--db") && i + 1 < argc) dbs[ndb++] = argv[++i];
        else if (i && !strncmp(argv[i], "--db=", 5)) dbs[ndb++] = argv[i] + 5;
        else rest[nrest++] = argv[i];
    }
    const char *metric_s = "block_nmse", *fmt = "text", *reps_s = "1000", *seed_s = "0", *nostore = NULL, *dbopt = NULL;
    const Opt opts[] = {{"--metric", 1, &metric_s}, {"--format", 1, &fmt}, {"--bootstrap", 1, &reps_s},
                        {"--seed", 1, &seed_s}, {"--no-store", 0, &nostore}, {"--db", 1, &dbopt}, {NULL, 0, NULL}};
    int metric[NMETRIC], nmetric;
    long reps = 0, seed = 0;
    Format f = FORMAT_TEXT;
    rc = cli_parse(nrest, rest, opts, USAGE);
    if (!rc && !ndb) rc = err_set(ERR_USAGE, "agree: --db is required (see unetlab agree --help)");
    if (!rc) rc = parse_metrics(metric_s, metric, &nmetric);
    if (!rc) rc = cli_int("--bootstrap", reps_s, 0, 1000000, &reps);
    if (!rc) rc = cli_int("--seed", seed_s, 0, 0x7fffffffL, &seed);
    if (!rc) rc = cli_format(fmt, &f, 1);
    if (rc) {
        free(dbs), free(rest);
        return rc;
    }
    Jobs J = {0};
    Rows R = {0};
    cJSON *out = cJSON_CreateObject();
    cJSON *jset = cJSON_AddArrayToObject(out, "settings"), *add = NULL;
    Ctx c = {&J, NULL, 0, metric, nmetric, (int)reps, seed, f, &R, NULL, NULL, NULL, NULL, NULL};
    /* every DB's done jobs and their per-sample scores */
    for (int d = 0; d < ndb && !rc; d++) {
        Db *db;
        if ((rc = db_open_existing(&db, dbs[d]))) break;
        int from = J.n;
        J.db = d;
        rc = db_done_jobs(db, METRIC_VERSION, keep_job, &J);
        for (int i = from; i < J.n && !rc; i++) rc = db_job_rows(db, J.j[i].job_id, keep_row, &J.j[i]);
        db_close(db);
    }
    for (int i = 0; i < J.n; i++)
        if (J.j[i].per) finish_job(&J.j[i]);
    /* the settings: runs of equal (DB, model, calibration set, dtype), in the walk's order */
    Setting *set = xmalloc((size_t)(J.n + 1) * sizeof *set);
    int ns = 0;
    for (int i = 0; i < J.n && !rc; i++) {
        const Job *a = &J.j[i], *b = i ? &J.j[i - 1] : NULL;
        if (!b || a->db != b->db || strcmp(a->model_key, b->model_key) || strcmp(a->calib_hash, b->calib_hash) ||
            strcmp(a->dtype, b->dtype)) {
            set[ns] = (Setting){i, i + 1, ""};
            setting_label(a, ndb, set[ns].label, sizeof set[ns].label);
            ns++;
        } else set[ns - 1].to = i + 1;
    }
    c.set = set, c.nset = ns;
    c.view = xmalloc((size_t)(ns * nmetric) * sizeof *c.view);
    for (int v = 0; v < ns * nmetric; v++)
        c.view[v] = nmetric > 1 ? own(&R, xasprintf("%s %s", set[v / nmetric].label, METRICS[metric[v % nmetric]]))
                                : set[v / nmetric].label;
    for (int s = 0; s < ns; s++) {
        const Job *j = &J.j[set[s].from];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "label", set[s].label);
        cJSON_AddStringToObject(e, "db", dbs[j->db]);
        cJSON_AddStringToObject(e, "model", j->spec);
        cJSON_AddStringToObject(e, "calib_hash", j->calib_hash);
        cJSON_AddStringToObject(e, "calib_source", j->calib_source);
        cJSON_AddNumberToObject(e, "samples", j->n_samples);
        if (j->height > 0) cJSON_AddNumberToObject(e, "height", j->height), cJSON_AddNumberToObject(e, "width", j->width);
        cJSON_AddStringToObject(e, "dtype", j->dtype);
        cJSON_AddNumberToObject(e, "students", set[s].to - set[s].from);
        cJSON_AddItemToArray(jset, e);
    }
    cJSON *jm = cJSON_AddArrayToObject(out, "metrics");
    for (int m = 0; m < nmetric; m++) cJSON_AddItemToArray(jm, cJSON_CreateString(METRICS[metric[m]]));
    cJSON_AddNumberToObject(out, "bootstrap", (double)reps);
    c.pairs = cJSON_AddArrayToObject(out, "pairs");
    c.conv = cJSON_AddArrayToObject(out, "convergence");
    c.bins = cJSON_AddArrayToObject(out, "timestep_bins");
    c.bin_scores = cJSON_AddArrayToObject(out, "bin_scores");
    add = cJSON_AddArrayToObject(out, "additivity");
    if (!rc && f == FORMAT_TEXT) {
        printf("rank agreement by %s (lower is better; 1 = the same ranking)", metric_s);
        if (reps) printf("; [95%% bootstrap interval over the calibration samples, %ld replicates]", reps);
        printf("\n");
    }
    if (!rc && f == FORMAT_CSV)
        printf("kind,model,setting_a,setting_b,metric,samples,bin,students,kendall_tau,tau_lo,tau_hi,spearman_rho,rho_lo,"
               "rho_hi,top5,top10,top20,stage,removed,measured,predicted\n");
    if (!rc) pair_rows(&c);
    if (!rc && f == FORMAT_TEXT && !cJSON_GetArraySize(c.pairs))
        printf("no two settings scored the same students (eval or schedule again with another --calib, --synthetic"
               " set, --latent or --dtype, or give another --db)\n");
    for (int s = 0; s < ns && !rc; s++) { /* the students a setting shares with the others: the same for every metric */
        int *who = xmalloc((size_t)(set[s].to - set[s].from) * sizeof *who), n = shared_students(&c, &set[s], who);
        for (int m = 0; m < nmetric; m++) within_rows(&c, s, m, who, n);
        free(who);
    }
    for (int d = 0; d < ndb && !rc; d++) {
        Db *db;
        if ((rc = db_open_existing(&db, dbs[d]))) break;
        rc = additivity(db, d, ndb, &J, &R, f, add);
        db_close(db);
    }
    if (!rc && !nostore) { /* the first DB keeps the rows, under a run of this command */
        Db *db;
        CliProvenance prov;
        prov_fill(&prov, argc, argv, seed);
        int64_t run = 0;
        if (!(rc = db_open(&db, dbs[0]))) {
            if (!(rc = db_run_begin(db, &prov.p, &run))) {
                rc = db_agree_put(db, run, R.r, R.n);
                db_run_end(db, run, rc ? "failed" : "done");
            }
            db_close(db);
        }
        prov_free(&prov);
        if (!rc && f == FORMAT_TEXT) printf("stored %d rows in %s (agree_results, run %lld)\n", R.n, dbs[0], (long long)run);
        if (!rc) cJSON_AddNumberToObject(out, "stored_run", (double)run);
    }
    if (!rc && f == FORMAT_JSON) {
        char *t = cJSON_Print(out);
        puts(t);
        free(t);
    }
    cJSON_Delete(out);
    free(c.view);
    free(set);
    for (int i = 0; i < J.n; i++) {
        Job *j = &J.j[i];
        free(j->model_key), free(j->spec), free(j->calib_hash), free(j->calib_source), free(j->dtype), free(j->plan_hash);
        free(j->name), free(j->score), free(j->bin);
    }
    free(J.j);
    for (int i = 0; i < R.ns; i++) free(R.strs[i]);
    free(R.strs), free(R.r);
    free(dbs), free(rest);
    return rc;
}
