/* store: the store read into a Report, through db's report reads: runs,
 * models, every measured forward (traced and untraced, with p10, p90, the
 * others' load and the unstable flag), schedules with their stored teacher
 * profile, the latest schedule's stages and scores, the latest agree run's
 * rows, and a profile's module rows. Also what the outputs ask of those rows (which latency a forward
 * shows, which engine a schedule's milliseconds came from). Tested by
 * tests/test_report.c (the report's numbers against SQL of the same rows). */
#include "report_int.h"
#include "err.h"
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void keep_run(void *ctx, const DbRun *r) {
    Report *R = ctx;
    R->runs = xrealloc(R->runs, (size_t)(R->nruns + 1) * sizeof *R->runs);
    R->runs[R->nruns++] = (Run){r->id, dup0(r->command_line), dup0(r->git_commit), dup0(r->build_flags), dup0(r->device),
                                dup0(r->host), dup0(r->started_at), dup0(r->ended_at), dup0(r->status)};
}

static void keep_model(void *ctx, const DbModelRow *m) {
    Report *R = ctx;
    R->models = xrealloc(R->models, (size_t)(R->nmodels + 1) * sizeof *R->models);
    R->models[R->nmodels++] = (Model){m->id, m->params, m->run_id, dup0(m->spec)};
}

static void keep_fwd(void *ctx, const DbForward *f) {
    Report *R = ctx;
    R->fw = xrealloc(R->fw, (size_t)(R->nfw + 1) * sizeof *R->fw);
    R->fw[R->nfw++] = (Fwd){f->id, f->run_id, f->model_id, f->plan_id, f->plan_params, f->model_params, dup0(f->spec),
                            dup0(f->dtype), dup0(f->device), dup0(f->engine), f->batch, f->height, f->width, f->tokens,
                            f->repeats, f->ms, f->ms_p10, f->ms_p90, f->untraced_ms, f->untraced_p10, f->untraced_p90,
                            f->others_load, f->unstable};
}

static double json_num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* What a schedule's stored teacher profile says about its milliseconds. Keys
 * absent in older stores read as: engine "?", stable, "predicted". */
static void sched_profile(Sched *s) {
    snprintf(s->engine, sizeof s->engine, "?");
    s->teacher_ms = s->teacher_untraced_ms = s->others_load = s->spread = NAN;
    cJSON *j = s->latency ? cJSON_Parse(s->latency) : NULL;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "engine");
    if (cJSON_IsString(e)) snprintf(s->engine, sizeof s->engine, "%s", e->valuestring);
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(j, "ms");
    s->teacher_ms = json_num(ms, "(forward)");
    s->teacher_untraced_ms = json_num(ms, "(untraced)");
    s->unstable = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "unstable"));
    s->others_load = json_num(j, "others_load");
    s->spread = json_num(j, "spread");
    const cJSON *sm = cJSON_GetObjectItemCaseSensitive(j, "stage_ms");
    s->stage_measured = cJSON_IsString(sm) && !strcmp(sm->valuestring, "measured");
    cJSON_Delete(j);
}

static void keep_sched(void *ctx, const DbSchedule *s) {
    Report *R = ctx;
    R->sched = xrealloc(R->sched, (size_t)(R->nsched + 1) * sizeof *R->sched);
    Sched *x = &R->sched[R->nsched++];
    *x = (Sched){.id = s->id, .model_id = s->model_id, .run_id = s->run_id, .model_params = s->model_params,
                 .spec = dup0(s->spec), .options = dup0(s->options), .latency = s->latency ? xstrdup(s->latency) : NULL,
                 .n_stages = s->n_stages};
    sched_profile(x);
}

static void keep_stage(void *ctx, const DbStageRow *s) {
    Stages *x = ctx;
    x->v = xrealloc(x->v, (size_t)(x->n + 1) * sizeof *x->v);
    x->v[x->n++] = (Stage){s->stage, s->plan_id, s->params, s->macs, s->run_id, dup0(s->chosen), s->loss, s->ms};
}

static void keep_score(void *ctx, const DbScoreRow *s) {
    Report *R = ctx;
    R->scores = xrealloc(R->scores, (size_t)(R->nscores + 1) * sizeof *R->scores);
    R->scores[R->nscores++] = (Score){s->stage, dup0(s->candidate), dup0(s->kind), s->increase, s->ms_saved, s->score,
                                      s->params_saved, s->has_params_saved, s->chosen};
}

static void keep_agree(void *ctx, const DbAgreeRow *r) {
    Report *R = ctx;
    R->agree = xrealloc(R->agree, (size_t)(R->nagree + 1) * sizeof *R->agree);
    R->agree[R->nagree++] = (Agree){dup0(r->model), dup0(r->kind), dup0(r->metric), dup0(r->setting_a),
                                    dup0(r->setting_b), dup0(r->candidate), r->samples, r->of_samples, r->bin,
                                    r->students, r->bootstrap, r->stage, r->kendall_tau, r->tau_lo, r->tau_hi,
                                    r->spearman_rho, r->rho_lo, r->rho_hi, r->top5, r->top10, r->top20, r->measured,
                                    r->predicted};
}

int store_stages(Report *R, int64_t schedule_id, Stages *st) {
    memset(st, 0, sizeof *st);
    return db_schedule_stages(R->db, schedule_id, keep_stage, st);
}

void stages_free(Stages *st) {
    for (int k = 0; k < st->n; k++) free(st->v[k].chosen);
    free(st->v);
    memset(st, 0, sizeof *st);
}

int store_load(Report *R) {
    int rc = db_runs(R->db, keep_run, R);
    if (!rc) rc = db_models(R->db, keep_model, R);
    if (!rc) rc = db_forwards(R->db, keep_fwd, R);
    if (!rc) rc = db_schedules(R->db, keep_sched, R);
    if (!rc && R->nsched) {
        R->latest = &R->sched[R->nsched - 1];
        Stages st;
        rc = store_stages(R, R->latest->id, &st);
        R->stages = st.v;
        R->nstages = st.n;
        if (!rc) rc = db_schedule_scores(R->db, R->latest->id, keep_score, R);
    }
    if (!rc) rc = db_agree_rows(R->db, &R->agree_run, keep_agree, R);
    return rc;
}

void store_free(Report *R) {
    for (int i = 0; i < R->nruns; i++) {
        Run *r = &R->runs[i];
        free(r->cmd), free(r->commit), free(r->flags), free(r->device), free(r->host), free(r->started), free(r->ended),
            free(r->status);
    }
    free(R->runs);
    for (int i = 0; i < R->nmodels; i++) free(R->models[i].spec);
    free(R->models);
    for (int i = 0; i < R->nfw; i++) free(R->fw[i].spec), free(R->fw[i].dtype), free(R->fw[i].device), free(R->fw[i].engine);
    free(R->fw);
    for (int i = 0; i < R->nsched; i++) free(R->sched[i].spec), free(R->sched[i].options), free(R->sched[i].latency);
    free(R->sched);
    Stages st = {R->stages, R->nstages};
    stages_free(&st);
    for (int i = 0; i < R->nscores; i++) free(R->scores[i].candidate), free(R->scores[i].kind);
    free(R->scores);
    for (int i = 0; i < R->nagree; i++) {
        Agree *g = &R->agree[i];
        free(g->model), free(g->kind), free(g->metric), free(g->setting_a), free(g->setting_b), free(g->candidate);
    }
    free(R->agree);
}

/* ---- a profile's module rows --------------------------------------------------------- */

typedef struct {
    ModRow *r;
    int n, cap;
} ModRows;

static void keep_module_row(void *ctx, const char *module, const char *kind, double ms, double p10, double p90,
                            int64_t calls) {
    (void)calls;
    ModRows *x = ctx;
    if (x->n == x->cap) x->r = xrealloc(x->r, (size_t)(x->cap = x->cap ? 2 * x->cap : 256) * sizeof *x->r);
    x->r[x->n++] = (ModRow){xstrdup(module ? module : ""), xstrdup(kind ? kind : ""), ms, p10, p90};
}

int store_module_rows(Report *R, int64_t run_id, int64_t model_id, int64_t plan_id, ModRow **rows, int *n) {
    ModRows x = {0};
    int rc = db_latency_rows(R->db, run_id, model_id, plan_id, keep_module_row, &x);
    if (rc) {
        modrows_free(x.r, x.n);
        x = (ModRows){0};
    }
    *rows = x.r;
    *n = x.n;
    return rc;
}

void modrows_free(ModRow *rows, int n) {
    for (int i = 0; i < n; i++) free(rows[i].name), free(rows[i].kind);
    free(rows);
}

/* ---- what the outputs ask of the rows ------------------------------------------------- */

Lat fwd_lat(const Fwd *f) {
    if (isfinite(f->ums)) return (Lat){f->ums, f->up10, f->up90, 0};
    return (Lat){f->ms, f->p10, f->p90, 1};
}

const Run *run_of(const Report *R, int64_t id) {
    for (int i = 0; i < R->nruns; i++)
        if (R->runs[i].id == id) return &R->runs[i];
    return NULL;
}

void sched_engine(const Report *R, const Sched *s, char *buf, size_t n) {
    const Run *r = run_of(R, s->run_id);
    snprintf(buf, n, "engine %s, %s", s->engine, r && *r->device ? r->device : "device unknown");
}

const char *sched_score_name(const Sched *s, char *buf, size_t n) {
    cJSON *j = cJSON_Parse(s->options);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "score");
    snprintf(buf, n, "%s", cJSON_IsString(e) ? e->valuestring : "?");
    cJSON_Delete(j);
    return buf;
}

const char *sched_ms_source(const Sched *s) { return s->stage_measured ? "measured" : "predicted"; }

const char *sched_noise(const Sched *s, char *buf, size_t n) {
    buf[0] = '\0';
    if (!s->unstable) return buf;
    size_t k = (size_t)snprintf(buf, n, " The teacher profile these milliseconds come from was judged unstable");
    if (isfinite(s->others_load) && k < n) k += (size_t)snprintf(buf + k, n - k, " (others took %.0f%% of the CPUs", 100 * s->others_load);
    if (isfinite(s->spread) && k < n)
        k += (size_t)snprintf(buf + k, n - k, "%s p90/p10 %.2f", isfinite(s->others_load) ? ";" : " (", s->spread);
    if ((isfinite(s->others_load) || isfinite(s->spread)) && k < n) k += (size_t)snprintf(buf + k, n - k, ")");
    if (k < n) snprintf(buf + k, n - k, ": read them as rough.");
    return buf;
}

/* Predicted stages start from the profile's traced forward (prof_predict
 * subtracts the removed modules' times from it), so stage 0 is that one and
 * the line runs on; measured stages are untraced forwards, so the profile's
 * '(untraced)' where it has one. */
double sched_stage0_ms(const Sched *s) {
    /* predicted stages are on the untraced scale when the profile has the untraced forward (cli/schedule.c) */
    return isfinite(s->teacher_untraced_ms) ? s->teacher_untraced_ms : s->teacher_ms;
}

void fwd_engine(const Fwd *f, char *buf, size_t n) { snprintf(buf, n, "engine %s, %s", f->engine, f->device); }

int fwd_same_setup(const Fwd *a, const Fwd *b) {
    return a->height == b->height && a->width == b->width && a->tokens == b->tokens && !strcmp(a->engine, b->engine) &&
           !strcmp(a->device, b->device) && !strcmp(a->dtype, b->dtype);
}

int fwd_same_config(const Fwd *a, const Fwd *b) { return a->batch == b->batch && fwd_same_setup(a, b); }

const Fwd *latest_fwd(const Report *R, int64_t model_id, int b) {
    for (int i = R->nfw - 1; i >= 0; i--)
        if (R->fw[i].model_id == model_id && !R->fw[i].plan_id && R->fw[i].batch == b) return &R->fw[i];
    return NULL;
}

int64_t teacher_id(const Report *R) {
    if (R->latest) return R->latest->model_id;
    for (int i = R->nfw - 1; i >= 0; i--)
        if (!R->fw[i].plan_id) return R->fw[i].model_id;
    return 0;
}

const char *base_name(const char *spec) {
    const char *s = spec;
    size_t n = strlen(spec);
    while (n > 1 && spec[n - 1] == '/') n--; /* "dir/" names dir */
    for (size_t i = 0; i + 1 < n; i++)
        if (spec[i] == '/') s = spec + i + 1;
    return s;
}

int spec_is(const char *spec, const char *name) {
    const char *b = base_name(spec);
    size_t n = strlen(name);
    return !strncasecmp(b, name, n) && (b[n] == '\0' || b[n] == '/');
}

int agree_count(const Report *R, const char *kind) {
    int n = 0;
    for (int i = 0; i < R->nagree; i++) n += !strcmp(R->agree[i].kind, kind);
    return n;
}

int agree_in_series(const Agree *g, const Agree *s) {
    return !strcmp(g->model, s->model) && !strcmp(g->setting_a, s->setting_a);
}

int agree_series(const Report *R, const char *kind, const Agree ***first, int *nmodels) {
    int n = 0;
    *nmodels = 0;
    *first = NULL;
    for (int i = 0; i < R->nagree; i++) {
        const Agree *g = &R->agree[i];
        if (strcmp(g->kind, kind)) continue;
        int seen = 0, model_seen = 0;
        for (int k = 0; k < n && !seen; k++) seen = agree_in_series(g, (*first)[k]);
        if (seen) continue;
        for (int k = 0; k < n && !model_seen; k++) model_seen = !strcmp(g->model, (*first)[k]->model);
        *nmodels += !model_seen;
        *first = xrealloc(*first, (size_t)(n + 1) * sizeof **first);
        (*first)[n++] = g;
    }
    return n;
}

char *agree_series_title(const Agree *s, int with_model) {
    return with_model ? xasprintf("%s: %s", base_name(s->model), s->setting_a) : xstrdup(s->setting_a);
}

Artifact *agree_art(Report *R, const char *name, const char *title, int is_plot, const char *kind, const char *how) {
    if (!R->agree_run) return NULL;
    Artifact *a = art_new(R, name, title, is_plot);
    if (!agree_count(R, kind)) {
        char why[600];
        snprintf(why, sizeof why, "agree run %" PRId64 " stored no '%s' rows (%s)", R->agree_run, kind, how);
        art_skip(R, a, why);
    }
    return a;
}
