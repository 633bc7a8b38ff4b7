/* report: see report.h. Every number comes from the store through db's
 * report reads (no SQL here); gnuplot runs as a child with an argument
 * vector in the output directory, and its exit status is checked. Tested by
 * tests/test_report.c: files and PNG sizes, tables equal to `db query` of the
 * same rows, no gnuplot on PATH (exit 8), bad DB and output paths. */
#include "report.h"
#include "numfmt.h"
#include "err.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- small helpers -------------------------------------------------------- */

typedef struct {
    char *s;
    size_t n, cap;
} Buf;

static void buf_add(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_add(Buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (b->n + (size_t)k + 1 > b->cap) b->s = xrealloc(b->s, b->cap = 2 * (b->n + (size_t)k + 1));
    va_start(ap, fmt);
    vsnprintf(b->s + b->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
}

static char *dup0(const char *s) { return xstrdup(s ? s : ""); }

typedef struct {
    int64_t *v;
    int n, cap;
} Ids;

static void ids_add(Ids *x, int64_t id) {
    if (id <= 0) return;
    for (int i = 0; i < x->n; i++)
        if (x->v[i] == id) return;
    if (x->n == x->cap) x->v = xrealloc(x->v, (size_t)(x->cap = 2 * x->cap + 4) * sizeof *x->v);
    x->v[x->n++] = id;
}

/* Shortest text that reads back as the same double (db query prints so too); "" for NaN. */
static void real_text(char *b, size_t n, double v) { num_shortest(v, b, n); }

static const char *commas(int64_t v, char *buf, int size) { return num_commas(v, buf, (size_t)size); }

/* The last path component of a model spec ("tests/fixtures/mini-public" -> "mini-public"). */
static const char *base_name(const char *spec) {
    const char *s = spec;
    size_t n = strlen(spec);
    while (n > 1 && spec[n - 1] == '/') n--; /* "dir/" names dir */
    for (size_t i = 0; i + 1 < n; i++)
        if (spec[i] == '/') s = spec + i + 1;
    return s;
}

/* Whether a spec names this published model: the preset, or a checkpoint directory of that name. */
static int spec_is(const char *spec, const char *name) {
    const char *b = base_name(spec);
    size_t n = strlen(name);
    return !strncasecmp(b, name, n) && (b[n] == '\0' || b[n] == '/');
}

/* Text for a gnuplot double-quoted string. */
static void gp_str(Buf *b, const char *s) {
    buf_add(b, "\"");
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') buf_add(b, "\\%c", *s);
        else if (*s == '\n') buf_add(b, "\\n");
        else buf_add(b, "%c", *s);
    }
    buf_add(b, "\"");
}

/* A plot title centred on the canvas, not on the plot area (whose centre moves
 * right with long tick labels, pushing a long title off the picture). */
static void gp_title(Buf *b, const char *title) {
    int lines = 1;
    for (const char *s = title; *s; s++) lines += *s == '\n';
    buf_add(b, "reset\nset tmargin %d\nset label 99 front center at screen 0.5,0.975 ", lines + 2);
    gp_str(b, title);
}

/* A quoted string column of a .dat file: gnuplot cannot escape a quote there. */
static void dat_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) fputc(*s == '"' ? '\'' : *s == '\n' ? ' ' : *s, f);
    fputc('"', f);
}

/* ---- what the store holds ----------------------------------------------------- */

typedef struct {
    int64_t id;
    char *cmd, *commit, *flags, *device, *host, *started, *ended, *status;
} Run;

typedef struct {
    int64_t id, params, run_id;
    char *spec;
} Model;

typedef struct {
    int64_t id, run_id, model_id, plan_id, plan_params, model_params;
    char *spec, *dtype, *device, *engine;
    int batch, height, width, tokens;
    double ms;
} Fwd;

typedef struct {
    int64_t id, model_id, run_id, model_params;
    char *spec, *options, *latency;
    int n_stages;
} Sched;

typedef struct {
    int stage;
    int64_t plan_id, params, macs, run_id;
    char *chosen;
    double loss, ms;
} Stage;

typedef struct {
    int stage;
    char *candidate, *kind;
    double increase, ms_saved, score;
    int64_t params_saved;
    int has_params_saved, chosen;
} Score;

/* A table: cells row-major, CSV gets raw text, Markdown/LaTeX/HTML the shown text. */
typedef struct {
    int ncol;
    const char *const *csv_head, *const *head;
    const char *align;   /* 'l' or 'r' per column */
    char **raw, **shown;
    int nrow, cap;
} Table;

typedef struct {
    const char *name, *title;
    int is_plot, drawn;
    char *note;          /* why it was skipped, or NULL */
    char *caption;       /* what it shows and where the numbers come from */
    char *engine;        /* engine(s) and device(s) of its measurements, or NULL */
    Ids runs;
    Table *table;
} Artifact;

typedef struct {
    Db *db;
    const ReportOptions *o;
    ReportResult *res;
    Run *runs;
    int nruns;
    Model *models;
    int nmodels;
    Fwd *fw;
    int nfw;
    Sched *sched;
    int nsched;
    const Sched *latest;      /* the latest schedule, or NULL */
    Stage *stages;            /* of the latest schedule */
    int nstages;
    Score *scores;
    int nscores;
    Artifact art[16];
    int nart;
    char **written;
    int nwritten;
} Report;

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
                            dup0(f->dtype), dup0(f->device), dup0(f->engine), f->batch, f->height, f->width, f->tokens, f->ms};
}

static void keep_sched(void *ctx, const DbSchedule *s) {
    Report *R = ctx;
    R->sched = xrealloc(R->sched, (size_t)(R->nsched + 1) * sizeof *R->sched);
    R->sched[R->nsched++] = (Sched){s->id, s->model_id, s->run_id, s->model_params, dup0(s->spec), dup0(s->options),
                                    s->latency ? xstrdup(s->latency) : NULL, s->n_stages};
}

typedef struct {
    Stage *v;
    int n;
} Stages;

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

static const Run *run_of(const Report *R, int64_t id) {
    for (int i = 0; i < R->nruns; i++)
        if (R->runs[i].id == id) return &R->runs[i];
    return NULL;
}

/* The engine a schedule's milliseconds come from (its stored teacher profile says), and the run's device. */
static void sched_engine(const Report *R, const Sched *s, char *buf, size_t n) {
    const char *engine = "?";
    cJSON *j = s->latency ? cJSON_Parse(s->latency) : NULL;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "engine");
    if (cJSON_IsString(e)) engine = e->valuestring;
    const Run *r = run_of(R, s->run_id);
    snprintf(buf, n, "engine %s, %s", engine, r && *r->device ? r->device : "device unknown");
    cJSON_Delete(j);
}

/* The teacher's forward ms a schedule scored with (NaN when it scored without latency). */
static double sched_teacher_ms(const Sched *s) {
    double v = NAN;
    cJSON *j = s->latency ? cJSON_Parse(s->latency) : NULL;
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "ms"), "(forward)");
    if (cJSON_IsNumber(f)) v = f->valuedouble;
    cJSON_Delete(j);
    return v;
}

static const char *sched_score_name(const Sched *s, char *buf, size_t n) {
    cJSON *j = cJSON_Parse(s->options);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "score");
    snprintf(buf, n, "%s", cJSON_IsString(e) ? e->valuestring : "?");
    cJSON_Delete(j);
    return buf;
}

/* "engine E, DEVICE" of a latency row. */
static void fwd_engine(const Fwd *f, char *buf, size_t n) { snprintf(buf, n, "engine %s, %s", f->engine, f->device); }

/* Same size, tokens, dtype, device and engine: numbers that compare. */
static int fwd_same_setup(const Fwd *a, const Fwd *b) {
    return a->height == b->height && a->width == b->width && a->tokens == b->tokens && !strcmp(a->engine, b->engine) &&
           !strcmp(a->device, b->device) && !strcmp(a->dtype, b->dtype);
}

/* ... and the same batch. */
static int fwd_same_config(const Fwd *a, const Fwd *b) { return a->batch == b->batch && fwd_same_setup(a, b); }

/* ---- output files --------------------------------------------------------------- */

/* Opens DIR/NAME.EXT for writing; *path gets its name (caller passes it to out_close), NULL on failure. */
static FILE *out_open(Report *R, const char *name, const char *ext, char **path) {
    *path = xasprintf("%s/%s%s", R->o->dir, name, ext);
    FILE *f = fopen(*path, "w");
    if (!f) {
        err_set(ERR_OUTPUT, "cannot write '%s': %s", *path, strerror(errno));
        free(*path);
        *path = NULL;
    }
    return f;
}

/* Closes f, checking every write made to it; records the path as written. */
static int out_close(Report *R, FILE *f, char *path) {
    int bad = ferror(f);
    if (fclose(f) || bad) {
        int rc = err_set(ERR_OUTPUT, "cannot write '%s': %s", path, strerror(errno ? errno : EIO));
        free(path);
        return rc;
    }
    R->written = xrealloc(R->written, (size_t)(R->nwritten + 1) * sizeof *R->written);
    R->written[R->nwritten++] = path;
    return 0;
}

static Artifact *art_new(Report *R, const char *name, const char *title, int is_plot) {
    Artifact *a = &R->art[R->nart++];
    memset(a, 0, sizeof *a);
    a->name = name;
    a->title = title;
    a->is_plot = is_plot;
    return a;
}

static void skip(Report *R, Artifact *a, const char *why) {
    a->note = xstrdup(why);
    R->res->plots_skipped++;
    fprintf(stderr, "report: %s skipped: %s\n", a->name, why);
}

/* Runs `gnuplot NAME.gp` in the output directory; its output goes to
 * NAME.gnuplot.log there, removed when it succeeds. A missing gnuplot is not
 * an error: res->gnuplot_missing is set and nothing more is drawn. */
static int gnuplot(Report *R, Artifact *a) {
    if (R->res->gnuplot_missing) return 0;
    char *script = xasprintf("%s.gp", a->name), *log = xasprintf("%s.gnuplot.log", a->name);
    char *argv[] = {"gnuplot", script, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    /* In order: into the directory (the script's relative paths), then its output to the log. */
    int e = posix_spawn_file_actions_addchdir_np(&fa, R->o->dir);
    if (!e) e = posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (!e) e = posix_spawn_file_actions_adddup2(&fa, 1, 2);
    if (!e) e = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    pid_t pid = 0;
    if (!e) e = posix_spawnp(&pid, "gnuplot", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    int rc = 0;
    if (e == ENOENT) {
        R->res->gnuplot_missing = 1;
    } else if (e) {
        rc = err_set(ERR_RUNTIME, "cannot run gnuplot on '%s/%s': %s", R->o->dir, script, strerror(e));
    } else {
        int st = 0;
        pid_t w;
        while ((w = waitpid(pid, &st, 0)) < 0 && errno == EINTR) {}
        char *logpath = xasprintf("%s/%s", R->o->dir, log);
        if (w < 0 || !WIFEXITED(st) || WEXITSTATUS(st)) {
            char first[240] = "";
            FILE *l = fopen(logpath, "r");
            char line[240];
            while (l && fgets(line, sizeof line, l)) { /* gnuplot's first line naming a problem */
                line[strcspn(line, "\n")] = '\0';
                if (strstr(line, "rror") || strstr(line, "arning") || !*first) snprintf(first, sizeof first, "%s", line);
                if (strstr(line, "rror")) break;
            }
            if (l) fclose(l);
            rc = err_set(ERR_RUNTIME, "gnuplot failed on '%s/%s' (%s %d; its output is in %s): %s", R->o->dir, script,
                         w >= 0 && WIFEXITED(st) ? "exit" : "signal",
                         w >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : w >= 0 ? WTERMSIG(st) : -1, logpath, first);
        } else {
            unlink(logpath);
            const char *ext[2] = {".png", ".svg"};
            int want[2] = {R->o->png, R->o->svg};
            for (int k = 0; k < 2 && !rc; k++) {
                if (!want[k]) continue;
                char *pic = xasprintf("%s/%s%s", R->o->dir, a->name, ext[k]);
                struct stat sb;
                if (stat(pic, &sb) || sb.st_size == 0) {
                    rc = err_set(ERR_RUNTIME, "gnuplot ran '%s/%s' but wrote no '%s'", R->o->dir, script, pic);
                    free(pic);
                } else {
                    R->written = xrealloc(R->written, (size_t)(R->nwritten + 1) * sizeof *R->written);
                    R->written[R->nwritten++] = pic;
                }
            }
            if (!rc) a->drawn = 1;
        }
        free(logpath);
    }
    free(script);
    free(log);
    return rc;
}

/* Writes NAME.gp: a header, then body once per picture format. */
static int write_gp(Report *R, Artifact *a, const char *body) {
    char *path;
    FILE *f = out_open(R, a->name, ".gp", &path);
    if (!f) { free(path); return ERR_OUTPUT; }
    fprintf(f, "# %s.gp: %s\n# Written by unetlab report from %s. Reads %s.dat; writes", a->name, a->title,
            db_path(R->db), a->name);
    if (R->o->png) fprintf(f, " %s.png", a->name);
    if (R->o->svg) fprintf(f, " %s.svg", a->name);
    fprintf(f, ".\n# Run it in this directory: gnuplot %s.gp\nset encoding utf8\nset datafile missing \"?\"\n", a->name);
    if (R->o->png)
        fprintf(f, "\nset terminal pngcairo size 1000,700 noenhanced font \"Sans,11\"\nset output \"%s.png\"\n%s", a->name,
                body);
    if (R->o->svg)
        fprintf(f, "\nset terminal svg size 1000,700 noenhanced font \"Sans,11\" background \"white\"\nset output \"%s.svg\"\n%s",
                a->name, body);
    fprintf(f, "unset output\n");
    return out_close(R, f, path);
}

/* ---- plots ---------------------------------------------------------------------- */

/* params_vs_latency: every measured forward (students of plans, and whole
 * models) and every schedule stage with milliseconds, one series per
 * measurement configuration, so that no two sizes or engines share a line. */
static int plot_params_latency(Report *R) {
    Artifact *a = art_new(R, "params_vs_latency", "UNet parameters vs forward latency, measured here", 1);
    int *cfg = xmalloc((size_t)(R->nfw + 1) * sizeof *cfg), ncfg = 0, rc = 0;
    int *use = xcalloc((size_t)R->nfw + 1, sizeof *use);
    /* the latest row per (model, plan, configuration); plans of unknown size are left out */
    for (int i = R->nfw - 1; i >= 0; i--) {
        const Fwd *f = &R->fw[i];
        if (f->plan_id ? f->plan_params <= 0 : f->model_params <= 0) continue;
        if (!isfinite(f->ms)) continue;
        int dup = 0;
        for (int k = i + 1; k < R->nfw && !dup; k++)
            dup = use[k] && R->fw[k].model_id == f->model_id && R->fw[k].plan_id == f->plan_id && fwd_same_config(f, &R->fw[k]);
        if (dup) continue;
        use[i] = 1;
        int seen = 0;
        for (int c = 0; c < ncfg && !seen; c++) seen = fwd_same_config(&R->fw[cfg[c]], f);
        if (!seen) cfg[ncfg++] = i;
    }
    Buf body = {0}, plot = {0}, eng = {0};
    char *path = NULL;
    FILE *d = NULL;
    int block = 0;
    double xmin = INFINITY, xmax = -INFINITY;
    char e[512];
    for (int c = 0; c < ncfg; c++) { /* the axis names every engine and device */
        fwd_engine(&R->fw[cfg[c]], e, sizeof e);
        if (!eng.s || !strstr(eng.s, e)) buf_add(&eng, "%s%s", eng.n ? "; " : "", e);
    }
    int nsched_pts = 0;
    for (int s = 0; s < R->nsched; s++) {
        Stages st = {0};
        if ((rc = db_schedule_stages(R->db, R->sched[s].id, keep_stage, &st))) goto done;
        int n = 0;
        for (int k = 0; k < st.n; k++) n += isfinite(st.v[k].ms);
        for (int k = 0; k < st.n; k++) free(st.v[k].chosen);
        free(st.v);
        nsched_pts += n;
        if (n) {
            sched_engine(R, &R->sched[s], e, sizeof e);
            if (!eng.s || !strstr(eng.s, e)) buf_add(&eng, "%s%s", eng.n ? "; " : "", e);
        }
    }
    if (!ncfg && !nsched_pts) {
        skip(R, a, "no forward latency in the store (run unetlab profile --db) and no schedule stage with milliseconds");
        goto done;
    }
    if (!(d = out_open(R, a->name, ".dat", &path))) { rc = ERR_OUTPUT; goto done; }
    fprintf(d, "# params_vs_latency.dat (unetlab report): UNet parameters vs forward latency in ms.\n"
               "# Blocks (gnuplot index 0, 1, ...) are separated by two blank lines; columns: ms params \"label\"\n");
    static const int PT_PLAN = 7, PT_MODEL = 5, PT_STAGE = 9;
    int lc = 1;
    for (int c = 0; c < ncfg; c++) {
        const Fwd *g = &R->fw[cfg[c]];
        char cfgname[256];
        snprintf(cfgname, sizeof cfgname, "batch %d, %dx%d px, %d tokens, %s", g->batch, g->height, g->width, g->tokens,
                 g->dtype);
        for (int who = 0; who < 2; who++) { /* students (plans), then whole models */
            int n = 0;
            for (int i = 0; i < R->nfw; i++)
                n += use[i] && fwd_same_config(&R->fw[i], g) && (who ? !R->fw[i].plan_id : !!R->fw[i].plan_id);
            if (!n) continue;
            fprintf(d, "%s# block %d: %s, %s (engine %s, %s)\n", block ? "\n\n" : "", block, who ? "models" : "students (plans)",
                    cfgname, g->engine, g->device);
            for (int i = 0; i < R->nfw; i++) {
                const Fwd *f = &R->fw[i];
                if (!use[i] || !fwd_same_config(f, g) || (who ? !!f->plan_id : !f->plan_id)) continue;
                ids_add(&a->runs, f->run_id);
                char lab[300];
                if (who) snprintf(lab, sizeof lab, "%s", base_name(f->spec));
                else snprintf(lab, sizeof lab, "plan %" PRId64, f->plan_id);
                fprintf(d, "%.9g %" PRId64 " ", f->ms, who ? f->model_params : f->plan_params);
                xmin = fmin(xmin, f->ms), xmax = fmax(xmax, f->ms);
                dat_str(d, lab);
                fputc('\n', d);
            }
            char title[400];
            snprintf(title, sizeof title, "%s: %s, engine %s", who ? "models" : "students (profile --plan)", cfgname,
                     g->engine);
            buf_add(&plot, "%s\"%s.dat\" index %d using 1:($2/1e6) with points pt %d ps %s lc %d title ", plot.n ? ", \\\n     " : "plot ",
                    a->name, block, who ? PT_MODEL : PT_PLAN, who ? "2" : "1.3", lc);
            gp_str(&plot, title);
            if (who)
                buf_add(&plot, ", \\\n     \"\" index %d using 1:($2/1e6):3 with labels left offset char 1,%s tc lt %d notitle",
                        block, c % 2 ? "-0.9" : "0.9", lc);
            block++;
        }
        lc++;
    }
    for (int s = 0; s < R->nsched; s++) {
        const Sched *sc = &R->sched[s];
        Stages st = {0};
        if ((rc = db_schedule_stages(R->db, sc->id, keep_stage, &st))) goto done;
        int n = 0;
        for (int k = 0; k < st.n; k++) n += isfinite(st.v[k].ms);
        double t0 = sched_teacher_ms(sc);
        if (n) {
            sched_engine(R, sc, e, sizeof e);
            fprintf(d, "%s# block %d: schedule %" PRId64 " of %s, stages (stage 0: the teacher; ms as the schedule scored them, %s)\n",
                    block ? "\n\n" : "", block, sc->id, sc->spec, e);
            if (isfinite(t0) && sc->model_params > 0) {
                fprintf(d, "%.9g %" PRId64 " \"0\"\n", t0, sc->model_params);
                xmin = fmin(xmin, t0), xmax = fmax(xmax, t0);
            }
            for (int k = 0; k < st.n; k++)
                if (isfinite(st.v[k].ms)) {
                    fprintf(d, "%.9g %" PRId64 " \"%d\"\n", st.v[k].ms, st.v[k].params, st.v[k].stage);
                    xmin = fmin(xmin, st.v[k].ms), xmax = fmax(xmax, st.v[k].ms);
                    ids_add(&a->runs, st.v[k].run_id);
                }
            ids_add(&a->runs, sc->run_id);
            char title[600];
            snprintf(title, sizeof title, "schedule %" PRId64 " of %s: stages 0-%d (labels; %s, calibration size, batch 1)",
                     sc->id, base_name(sc->spec), st.v[st.n - 1].stage, e);
            buf_add(&plot, "%s\"%s.dat\" index %d using 1:($2/1e6) with linespoints pt %d ps 1.3 lw 1.5 lc %d title ",
                    plot.n ? ", \\\n     " : "plot ", a->name, block, PT_STAGE, lc);
            gp_str(&plot, title);
            buf_add(&plot, ", \\\n     \"\" index %d using 1:($2/1e6):3 with labels left offset char 0.8,-0.5 tc lt %d notitle",
                    block, lc);
            block++;
            lc++;
        }
        for (int k = 0; k < st.n; k++) free(st.v[k].chosen);
        free(st.v);
    }
    if ((rc = out_close(R, d, path))) { d = NULL; goto done; }
    d = NULL;
    a->engine = xstrdup(eng.s);
    a->caption = xasprintf("Every student profiled with --plan and every whole model (labelled) at each measured size, and "
                           "the stages of every schedule with milliseconds (labelled by stage; ms as the schedule scored "
                           "them). Measured on: %s.", eng.s);
    gp_title(&body, a->title);
    buf_add(&body, "\nset xlabel ");
    /* sizes and batches span decades of milliseconds: a log axis keeps the small ones apart */
    int logx = xmin > 0 && xmax / xmin > 10;
    char xl[700];
    snprintf(xl, sizeof xl, "forward latency, ms (%s)%s", eng.s, logx ? ", log scale" : "");
    gp_str(&body, xl);
    /* the key under the plot, one entry a line, with room made for it (gnuplot's own sizing clips long keys) */
    int nkeys = 0;
    for (const char *t = plot.s; (t = strstr(t, " title ")); t++) nkeys++;
    buf_add(&body, "\nset ylabel \"UNet parameters (millions)\"\nset grid\n"
                   "set bmargin %d\nset key at screen 0.03,0.01 left bottom Left reverse vertical\n"
                   "%s\nset yrange [0:*]\nset offsets %s, graph 0.15, graph 0.12, 0\n%s\n",
            4 + nkeys, logx ? "set logscale x\nset xrange [*:*]" : "set xrange [0:*]", logx ? "graph 0.05" : "0", plot.s);
    rc = write_gp(R, a, body.s);
    if (!rc) rc = gnuplot(R, a);
done:
    if (d) { fclose(d); free(path); }
    free(cfg);
    free(use);
    free(body.s);
    free(plot.s);
    free(eng.s);
    return rc;
}

typedef struct {
    double x, y;
    int stage, chosen;
} Pt;

static int cmp_pt_x_desc(const void *pa, const void *pb) {
    const Pt *a = pa, *b = pb;
    if (a->x != b->x) return a->x > b->x ? -1 : 1;
    return (a->y > b->y) - (a->y < b->y);
}

/* loss_vs_saving: every candidate of the latest schedule (all stages), loss
 * increase vs milliseconds saved, with the Pareto front. */
static int plot_loss_saving(Report *R) {
    Artifact *a = art_new(R, "loss_vs_saving", "Loss increase vs saving of every candidate scored", 1);
    if (!R->latest || !R->nscores) {
        skip(R, a, R->latest ? "the latest schedule has no candidate scores" : "no schedule in the store (run unetlab schedule)");
        return 0;
    }
    const Sched *sc = R->latest;
    int by_ms = 1;
    for (int i = 0; i < R->nscores; i++) by_ms &= !isnan(R->scores[i].ms_saved);
    Pt *p = xmalloc((size_t)R->nscores * sizeof *p);
    int n = 0;
    for (int i = 0; i < R->nscores; i++) {
        const Score *s = &R->scores[i];
        double x = by_ms ? s->ms_saved : s->has_params_saved ? (double)s->params_saved : NAN;
        if (!isfinite(x) || !isfinite(s->increase)) continue;
        p[n++] = (Pt){x, s->increase, s->stage, s->chosen};
    }
    int rc = 0;
    if (!n) {
        skip(R, a, "the latest schedule's scores hold no finite loss increase and saving");
        free(p);
        return 0;
    }
    char e[512], score[64], xl[700];
    sched_engine(R, sc, e, sizeof e);
    if (by_ms) snprintf(xl, sizeof xl, "ms saved (%s; predicted from the teacher's profile, or measured)", e);
    else snprintf(xl, sizeof xl, "parameters saved (ms_saved absent from this schedule's scores: it scored without latency)");
    /* the front: min loss increase among the candidates saving at least x */
    Pt *q = xmalloc((size_t)n * sizeof *q);
    memcpy(q, p, (size_t)n * sizeof *q);
    qsort(q, (size_t)n, sizeof *q, cmp_pt_x_desc);
    Pt *front = xmalloc((size_t)n * sizeof *front);
    int nf = 0;
    double best = INFINITY;
    for (int i = 0; i < n; i++)
        if (q[i].y < best) { best = q[i].y; front[nf++] = q[i]; }
    char *path;
    FILE *d = out_open(R, a->name, ".dat", &path);
    if (!d) { free(path); free(p); free(q); free(front); return ERR_OUTPUT; }
    fprintf(d, "# loss_vs_saving.dat (unetlab report): schedule %" PRId64 " of %s, every candidate of every stage.\n"
               "# x = %s; y = loss increase over the stage's start (block NMSE).\n"
               "# Blocks: one per stage (columns: saving increase stage chosen), then the Pareto front, then the chosen.\n",
            sc->id, sc->spec, by_ms ? "ms_saved" : "params_saved");
    Buf plot = {0}, body = {0};
    int block = 0, maxstage = 0;
    for (int i = 0; i < n; i++) maxstage = p[i].stage > maxstage ? p[i].stage : maxstage;
    int many = maxstage > 8; /* beyond a legend's worth of stages, colour by stage */
    for (int stg = 0; stg <= maxstage; stg++) {
        int m = 0;
        for (int i = 0; i < n; i++) m += many || p[i].stage == stg;
        if (!m) continue;
        fprintf(d, "%s# block %d: %s\n", block ? "\n\n" : "", block, many ? "every stage" : "stage");
        if (!many) fprintf(d, "# stage %d\n", stg);
        for (int i = 0; i < n; i++)
            if (many || p[i].stage == stg) fprintf(d, "%.9g %.9g %d %d\n", p[i].x, p[i].y, p[i].stage, p[i].chosen);
        if (many)
            buf_add(&plot, "plot \"%s.dat\" index %d using 1:2:3 with points pt 7 ps 1.1 lc palette "
                           "title \"candidates (colour: stage)\"", a->name, block);
        else
            buf_add(&plot, "%s\"%s.dat\" index %d using 1:2 with points pt 7 ps 1.1 lc %d title \"stage %d candidates\"",
                    plot.n ? ", \\\n     " : "plot ", a->name, block, stg, stg);
        block++;
        if (many) break;
    }
    fprintf(d, "\n\n# block %d: Pareto front (min loss increase for at least that saving), by saving\n", block);
    for (int i = nf - 1; i >= 0; i--) fprintf(d, "%.9g %.9g %d %d\n", front[i].x, front[i].y, front[i].stage, front[i].chosen);
    buf_add(&plot, ", \\\n     \"\" index %d using 1:2 with fsteps lw 2 lc rgb \"black\" "
                   "title \"Pareto front: min loss increase for at least that saving\"", block++);
    int nch = 0;
    for (int i = 0; i < n; i++) nch += p[i].chosen;
    if (nch) {
        fprintf(d, "\n\n# block %d: the candidates each stage chose\n", block);
        for (int i = 0; i < n; i++)
            if (p[i].chosen) fprintf(d, "%.9g %.9g %d %d\n", p[i].x, p[i].y, p[i].stage, p[i].chosen);
        buf_add(&plot, ", \\\n     \"\" index %d using 1:2 with points pt 6 ps 2.6 lw 2 lc rgb \"black\" title \"chosen\"", block++);
    }
    free(p);
    free(q);
    free(front);
    if ((rc = out_close(R, d, path))) { free(plot.s); return rc; }
    for (int i = 0; i < R->nstages; i++) ids_add(&a->runs, R->stages[i].run_id);
    ids_add(&a->runs, sc->run_id);
    a->engine = by_ms ? xstrdup(e) : NULL;
    a->caption = xasprintf("Schedule %" PRId64 " of %s (score %s): every candidate of every stage, its loss increase over the "
                           "stage's start against what it saves (%s), with the Pareto front over all of them. %s%s.",
                           sc->id, sc->spec, sched_score_name(sc, score, sizeof score), by_ms ? "milliseconds" : "parameters",
                           by_ms ? "Milliseconds: " : "No milliseconds: ",
                           by_ms ? e : "the schedule scored without latency, so the x axis is parameters saved");
    char title[700];
    snprintf(title, sizeof title, "Loss increase vs saving: schedule %" PRId64 " of %s (score %s), stages 1-%d", sc->id,
             base_name(sc->spec), score, maxstage);
    gp_title(&body, title);
    buf_add(&body, "\nset xlabel ");
    gp_str(&body, xl);
    buf_add(&body, "\nset ylabel \"loss increase (block NMSE over the stage's start)\"\nset grid\nset cblabel \"stage\"\n%s"
                   "set offsets graph 0.03, graph 0.03, graph 0.05, 0\n"
                   "set bmargin %d\nset key at screen 0.03,0.01 left bottom Left reverse vertical\n%s\n",
            by_ms ? "" : "set format x \"%.3s%c\"\n", 4 + block, plot.s);
    rc = write_gp(R, a, body.s);
    if (!rc) rc = gnuplot(R, a);
    free(plot.s);
    free(body.s);
    return rc;
}

typedef struct {
    char **name, **kind;
    double *ms;
    int n, cap;
} Rows;

static void keep_row(void *ctx, const char *module, const char *kind, double ms, int64_t calls) {
    (void)calls;
    Rows *r = ctx;
    if (r->n == r->cap) {
        r->cap = 2 * r->cap + 64;
        r->name = xrealloc(r->name, (size_t)r->cap * sizeof *r->name);
        r->kind = xrealloc(r->kind, (size_t)r->cap * sizeof *r->kind);
        r->ms = xrealloc(r->ms, (size_t)r->cap * sizeof *r->ms);
    }
    r->name[r->n] = dup0(module);
    r->kind[r->n] = dup0(kind);
    r->ms[r->n++] = ms;
}

/* Whether name is a descendant of parent in diffusers' dotted names. */
static int child_of(const char *name, const char *parent) {
    size_t l = strlen(parent);
    return !strncmp(name, parent, l) && name[l] == '.';
}

static const Rows *g_rows; /* qsort context: the rows ranked */
static int cmp_row_ms_desc(const void *pa, const void *pb) {
    int a = *(const int *)pa, b = *(const int *)pb;
    double x = g_rows->ms[a], y = g_rows->ms[b];
    if (x != y) return x > y ? -1 : 1;
    return a - b;
}

/* The teacher: the latest schedule's model, else the model of the latest whole-model forward. */
static int64_t teacher_id(const Report *R) {
    if (R->latest) return R->latest->model_id;
    for (int i = R->nfw - 1; i >= 0; i--)
        if (!R->fw[i].plan_id) return R->fw[i].model_id;
    return 0;
}

/* module_latency: the top N modules of the teacher's latest profile, split by the classes of their ops. */
static int plot_module_latency(Report *R) {
    Artifact *a = art_new(R, "module_latency", "Where the teacher's time goes: top modules by median ms", 1);
    int64_t tid = teacher_id(R);
    const Fwd *prof = NULL;
    for (int i = R->nfw - 1; i >= 0 && !prof; i--)
        if (R->fw[i].model_id == tid && !R->fw[i].plan_id) prof = &R->fw[i];
    if (!prof) {
        skip(R, a, "no profile of the teacher in the store (run unetlab profile --model T --db)");
        return 0;
    }
    Rows r = {0};
    int rc = db_latency_rows(R->db, prof->run_id, prof->model_id, 0, keep_row, &r);
    static const char *const KINDS[] = {"ResnetBlock2D", "Transformer2DModel", "BasicTransformerBlock", "Downsample2D",
                                        "Upsample2D"};
    int *pick = xmalloc((size_t)(r.n + 1) * sizeof *pick), np = 0;
    for (int i = 0; !rc && i < r.n; i++)
        for (size_t k = 0; k < sizeof KINDS / sizeof *KINDS; k++)
            if (!strcmp(r.kind[i], KINDS[k]) && isfinite(r.ms[i])) { pick[np++] = i; break; }
    char *path = NULL;
    FILE *d = NULL;
    Buf body = {0};
    if (rc) goto done;
    if (!np) {
        skip(R, a, "the teacher's latest profile has no module rows of the ranked kinds");
        goto done;
    }
    g_rows = &r;
    qsort(pick, (size_t)np, sizeof *pick, cmp_row_ms_desc);
    if (np > R->o->top) np = R->o->top;
    if (!(d = out_open(R, a->name, ".dat", &path))) { rc = ERR_OUTPUT; goto done; }
    char e[512];
    fwd_engine(prof, e, sizeof e);
    fprintf(d, "# module_latency.dat (unetlab report): top %d modules (kinds ResnetBlock2D, Transformer2DModel,\n"
               "# BasicTransformerBlock, Downsample2D, Upsample2D) by median ms in run %" PRId64 " of %s: batch %d,\n"
               "# %dx%d px, %d tokens, %s, %s. Classes from the module's descendants: Conv2d -> convolution, Linear ->\n"
               "# GEMM, Attention minus its Linears -> attention, GroupNorm/LayerNorm -> normalisation, the rest -> other\n"
               "# (clamped at 0; total is the module's own median).\n"
               "# rank \"module\" convolution gemm attention normalisation other total \"kind\"\n",
            np, prof->run_id, prof->spec, prof->batch, prof->height, prof->width, prof->tokens, prof->dtype, e);
    for (int k = 0; k < np; k++) {
        int i = pick[k];
        double conv = 0, gemm = 0, attn = 0, norm = 0;
        for (int j = 0; j < r.n; j++) {
            if (!child_of(r.name[j], r.name[i]) || !isfinite(r.ms[j])) continue;
            const char *kd = r.kind[j];
            if (!strcmp(kd, "Conv2d")) conv += r.ms[j];
            else if (!strcmp(kd, "Linear")) gemm += r.ms[j];
            else if (!strcmp(kd, "GroupNorm") || !strcmp(kd, "LayerNorm")) norm += r.ms[j];
            else if (!strcmp(kd, "Attention")) {
                double own = r.ms[j];
                for (int m = 0; m < r.n; m++)
                    if (child_of(r.name[m], r.name[j]) && !strcmp(r.kind[m], "Linear") && isfinite(r.ms[m])) own -= r.ms[m];
                attn += own > 0 ? own : 0;
            }
        }
        double other = r.ms[i] - conv - gemm - attn - norm;
        fprintf(d, "%d ", k + 1);
        dat_str(d, r.name[i]);
        fprintf(d, " %.6g %.6g %.6g %.6g %.6g %.6g ", conv, gemm, attn, norm, other > 0 ? other : 0, r.ms[i]);
        dat_str(d, r.kind[i]);
        fputc('\n', d);
    }
    rc = out_close(R, d, path);
    d = NULL;
    if (rc) goto done;
    ids_add(&a->runs, prof->run_id);
    a->engine = xstrdup(e);
    a->caption = xasprintf("The %d modules (ResNets, attentions, transformer layers, samplers) with the largest median time "
                           "in the latest profile of the teacher %s (run %" PRId64 ": batch %d, %dx%d px, %d tokens, %s), "
                           "each split by the ops inside it. Measured on: %s.",
                           np, prof->spec, prof->run_id, prof->batch, prof->height, prof->width, prof->tokens, prof->dtype, e);
    char title[800], xl[700];
    snprintf(title, sizeof title, "Top %d modules by median ms: %s, batch %d, %dx%d px, %d tokens", np, base_name(prof->spec),
             prof->batch, prof->height, prof->width, prof->tokens);
    snprintf(xl, sizeof xl, "median ms per forward (%s)", e);
    gp_title(&body, title);
    buf_add(&body, "\nset xlabel ");
    gp_str(&body, xl);
    buf_add(&body, "\nset yrange [%d.5:0.5]\nset xrange [0:*]\nset ytics scale 0\nset grid x\nset bmargin 7\n"
                   "set key at screen 0.5,0.015 center bottom horizontal maxcols 3 width 1\n"
                   "set style fill solid 0.85 border rgb \"white\"\n",
            np);
    static const char *const CLS[] = {"convolution (Conv2d)", "GEMM (Linear)", "attention (Attention minus its Linears)",
                                      "normalisation (GroupNorm, LayerNorm)", "other"};
    static const char *const COL[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#bab0ac"};
    buf_add(&body, "plot ");
    for (int c = 0; c < 5; c++) {
        Buf lo = {0}, hi = {0};
        buf_add(&lo, "0");
        for (int k = 0; k < c; k++) buf_add(&lo, "+$%d", 3 + k);
        buf_add(&hi, "%s+$%d", lo.s, 3 + c);
        buf_add(&body, "%s\"%s.dat\" using (0):1:(%s):(%s):($1-0.4):($1+0.4)%s with boxxyerror lc rgb \"%s\" title \"%s\"",
                c ? ", \\\n     " : "", a->name, lo.s, hi.s, c ? "" : ":ytic(2)", COL[c], CLS[c]);
        free(lo.s);
        free(hi.s);
    }
    buf_add(&body, "\n");
    rc = write_gp(R, a, body.s);
    if (!rc) rc = gnuplot(R, a);
done:
    if (d) { fclose(d); free(path); }
    for (int i = 0; i < r.n; i++) { free(r.name[i]); free(r.kind[i]); }
    free(r.name);
    free(r.kind);
    free(r.ms);
    free(pick);
    free(body.s);
    return rc;
}

/* schedule: params, ms and loss per stage of the latest schedule, stacked panels. */
static int plot_schedule(Report *R) {
    Artifact *a = art_new(R, "schedule", "The latest removal schedule, stage by stage", 1);
    if (!R->latest || !R->nstages) {
        skip(R, a, R->latest ? "the latest schedule has no stage yet" : "no schedule in the store (run unetlab schedule)");
        return 0;
    }
    const Sched *sc = R->latest;
    double t0 = sched_teacher_ms(sc);
    int has_ms = isfinite(t0);
    for (int i = 0; i < R->nstages; i++) has_ms |= isfinite(R->stages[i].ms);
    char *path;
    FILE *d = out_open(R, a->name, ".dat", &path);
    if (!d) { free(path); return ERR_OUTPUT; }
    fprintf(d, "# schedule.dat (unetlab report): schedule %" PRId64 " of %s. Stage 0 is the teacher (loss 0; its\n"
               "# ms from the profile the schedule scored with). ? = absent.\n# stage params ms loss \"removed\"\n",
            sc->id, sc->spec);
    fprintf(d, "0 %" PRId64 " ", sc->model_params);
    if (isfinite(t0)) fprintf(d, "%.9g", t0);
    else fputc('?', d);
    fprintf(d, " 0 \"(teacher)\"\n");
    for (int i = 0; i < R->nstages; i++) {
        const Stage *s = &R->stages[i];
        fprintf(d, "%d %" PRId64 " ", s->stage, s->params);
        if (isfinite(s->ms)) fprintf(d, "%.9g ", s->ms);
        else fprintf(d, "? ");
        if (isfinite(s->loss)) fprintf(d, "%.9g ", s->loss);
        else fprintf(d, "? ");
        dat_str(d, s->chosen);
        fputc('\n', d);
        ids_add(&a->runs, s->run_id);
    }
    int rc = out_close(R, d, path);
    if (rc) return rc;
    ids_add(&a->runs, sc->run_id);
    char e[512], score[64], title[800];
    sched_engine(R, sc, e, sizeof e);
    sched_score_name(sc, score, sizeof score);
    a->engine = has_ms ? xstrdup(e) : NULL;
    a->caption = xasprintf("Schedule %" PRId64 " of %s (score %s, %d stages): the student's parameters%s and loss (block NMSE) "
                           "after each stage; stage 0 is the teacher.%s%s",
                           sc->id, sc->spec, score, R->nstages, has_ms ? ", predicted or measured milliseconds" : "",
                           has_ms ? " Milliseconds: " : "", has_ms ? e : "");
    int last = R->stages[R->nstages - 1].stage;
    snprintf(title, sizeof title, "Schedule %" PRId64 " of %s: score %s, %d stages (stage 0: the teacher)%s%s", sc->id,
             base_name(sc->spec), score, R->nstages, has_ms ? "; ms: " : "", has_ms ? e : "");
    Buf body = {0};
    buf_add(&body, "reset\nset multiplot layout %d,1 title ", has_ms ? 3 : 2);
    gp_str(&body, title);
    buf_add(&body, "\nset grid\nset lmargin 13\nset xrange [-0.5:%d.5]\n%s\nunset xlabel\n"
                   "set ylabel \"params (millions)\"\nplot \"%s.dat\" using 1:($2/1e6) with linespoints pt 7 lw 2 lc 1 notitle\n",
            last, last <= 30 ? "set xtics 1" : "set xtics", a->name);
    if (has_ms)
        buf_add(&body, "set ylabel \"forward ms\"\nplot \"%s.dat\" using 1:3 with linespoints pt 7 lw 2 lc 2 notitle\n", a->name);
    buf_add(&body, "set xlabel \"stage\"\nset ylabel \"loss (block NMSE)\"\n"
                   "plot \"%s.dat\" using 1:4 with linespoints pt 7 lw 2 lc 7 notitle\nunset multiplot\n",
            a->name);
    rc = write_gp(R, a, body.s);
    if (!rc) rc = gnuplot(R, a);
    free(body.s);
    return rc;
}

/* ---- forward order of feature points ----------------------------------------- */

/* Sort key of a dotted module name: pairs per component, a module after its children. */
static int forward_key(const char *name, long *key, int max) {
    int n = 0;
    const char *s = name;
    while (*s && n + 2 < max) {
        size_t len = strcspn(s, ".");
        char tok[64];
        snprintf(tok, sizeof tok, "%.*s", (int)(len < 63 ? len : 63), s);
        s += len;
        if (*s == '.') s++;
        long idx = -1;
        char *end;
        if (*s >= '0' && *s <= '9') {
            idx = strtol(s, &end, 10);
            if (*end == '.' || *end == '\0') s = *end ? end + 1 : end;
            else idx = -1;
        }
        long i = idx < 0 ? 0 : idx;
        if (!strcmp(tok, "down_blocks")) key[n++] = 0, key[n++] = i;
        else if (!strcmp(tok, "mid_block")) key[n++] = 1, key[n++] = i;
        else if (!strcmp(tok, "up_blocks")) key[n++] = 2, key[n++] = i;
        else if (!strcmp(tok, "output")) key[n++] = 3, key[n++] = i;
        else if (!strcmp(tok, "resnets")) key[n++] = i, key[n++] = 0;       /* resnets.i before attentions.i */
        else if (!strcmp(tok, "attentions")) key[n++] = i, key[n++] = 1;
        else if (!strcmp(tok, "transformer_blocks")) key[n++] = i, key[n++] = 0;
        else if (!strcmp(tok, "downsamplers") || !strcmp(tok, "upsamplers")) key[n++] = 1000000, key[n++] = i;
        else key[n++] = 2000000, key[n++] = i; /* unknown: after the known, by name */
    }
    key[n++] = LONG_MAX; /* a module's own output comes after its children's */
    return n;
}

int report_forward_cmp(const char *a, const char *b) {
    long ka[64], kb[64];
    int na = forward_key(a, ka, 64), nb = forward_key(b, kb, 64);
    for (int i = 0; i < na && i < nb; i++)
        if (ka[i] != kb[i]) return ka[i] < kb[i] ? -1 : 1;
    if (na != nb) return na < nb ? -1 : 1;
    return strcmp(a, b);
}

typedef struct {
    char **point;
    double *mean;
    int *n;
    int cnt, cap;
} Points;

static void keep_point(void *ctx, const char *point, double mean, int n) {
    Points *p = ctx;
    if (p->cnt == p->cap) {
        p->cap = 2 * p->cap + 64;
        p->point = xrealloc(p->point, (size_t)p->cap * sizeof *p->point);
        p->mean = xrealloc(p->mean, (size_t)p->cap * sizeof *p->mean);
        p->n = xrealloc(p->n, (size_t)p->cap * sizeof *p->n);
    }
    p->point[p->cnt] = dup0(point);
    p->mean[p->cnt] = mean;
    p->n[p->cnt++] = n;
}

static const Points *g_points;
static int cmp_point(const void *pa, const void *pb) {
    return report_forward_cmp(g_points->point[*(const int *)pa], g_points->point[*(const int *)pb]);
}

/* layer_loss: mean NMSE per feature point of one plan's done eval job. */
static int plot_layer_loss(Report *R) {
    Artifact *a = art_new(R, "layer_loss", "Layer-level loss of a student: mean NMSE per feature point", 1);
    int64_t plan_id = 0;
    char which[700];
    int rc = 0, found = 0;
    if (R->o->plan_hash) {
        if ((rc = db_plan_find(R->db, R->o->plan_hash, &plan_id, &found))) return rc;
        if (!found) {
            char why[800];
            snprintf(why, sizeof why, "no plan in the store has the removal set of '%s'", R->o->plan_label);
            skip(R, a, why);
            return 0;
        }
        snprintf(which, sizeof which, "plan %s", R->o->plan_label);
    } else if (R->latest && R->nstages) {
        plan_id = R->stages[R->nstages - 1].plan_id;
        snprintf(which, sizeof which, "the plan after stage %d of schedule %" PRId64, R->stages[R->nstages - 1].stage,
                 R->latest->id);
    } else {
        skip(R, a, "no --plan given and no schedule stage in the store");
        return 0;
    }
    DbEvalJob job;
    Points pts = {0};
    int *ord = NULL;
    char *path = NULL;
    FILE *d = NULL;
    Buf body = {0};
    if ((rc = db_plan_point_means(R->db, plan_id, "nmse", &job, keep_point, &pts))) goto done;
    if (!job.job_id || !pts.cnt) {
        char why[900];
        snprintf(why, sizeof why, "%s (plan %" PRId64 ") has no done eval job with NMSE results", which, plan_id);
        skip(R, a, why);
        goto done;
    }
    ord = xmalloc((size_t)pts.cnt * sizeof *ord);
    for (int i = 0; i < pts.cnt; i++) ord[i] = i;
    g_points = &pts;
    qsort(ord, (size_t)pts.cnt, sizeof *ord, cmp_point);
    /* the removals, for the title */
    Buf rem = {0};
    int nrem = 0;
    cJSON *pj = cJSON_Parse(job.plan_json);
    const cJSON *it;
    Buf wrapped = {0}; /* the title's: two names a line */
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(pj, "remove")) {
        if (!cJSON_IsString(it)) continue;
        buf_add(&rem, "%s%s", nrem ? ", " : "", it->valuestring);
        if (nrem < 6) buf_add(&wrapped, "%s%s", !nrem ? "" : nrem % 2 ? ", " : ",\n", it->valuestring);
        nrem++;
    }
    cJSON_Delete(pj);
    if (nrem > 6) buf_add(&wrapped, ", ... (%d in all)", nrem);
    if (!nrem) buf_add(&rem, "nothing"), buf_add(&wrapped, "nothing");
    char calib[900];
    snprintf(calib, sizeof calib, "calibration set %s (%d sample%s, hash %s)", job.calib_source, job.n_samples,
             job.n_samples == 1 ? "" : "s", job.calib_hash);
    if (!(d = out_open(R, a->name, ".dat", &path))) { rc = ERR_OUTPUT; free(rem.s); free(wrapped.s); goto done; }
    fprintf(d, "# layer_loss.dat (unetlab report): mean NMSE per feature point, in forward order, of %s\n"
               "# (removes: %s) against its teacher %s; eval job %" PRId64 ", %s.\n# index \"point\" mean_nmse samples\n",
            which, rem.s, job.spec, job.job_id, calib);
    for (int k = 0; k < pts.cnt; k++) {
        int i = ord[k];
        fprintf(d, "%d ", k);
        dat_str(d, pts.point[i]);
        if (isfinite(pts.mean[i])) fprintf(d, " %.9g %d\n", pts.mean[i], pts.n[i]);
        else fprintf(d, " ? %d\n", pts.n[i]);
    }
    rc = out_close(R, d, path);
    d = NULL;
    if (rc) { free(rem.s); free(wrapped.s); goto done; }
    ids_add(&a->runs, job.run_id);
    a->caption = xasprintf("Mean NMSE (the student's feature against the teacher's, over the teacher feature's mean square) "
                           "per feature point, in forward order, for %s (removes: %s) of teacher %s, from eval job %" PRId64
                           " on the %s.",
                           which, rem.s, job.spec, job.job_id, calib);
    char *title = xasprintf("Mean NMSE per feature point: %s\n%s\nremoves %s", which, calib, wrapped.s);
    free(rem.s);
    free(wrapped.s);
    gp_title(&body, title);
    free(title);
    buf_add(&body, "\nset xlabel \"mean NMSE over the calibration samples (student vs teacher)\"\n"
                   "set yrange [%d.5:-0.5]\nset xrange [0:*]\nset ytics scale 0%s\nset grid x\n"
                   "set style fill solid 0.85 border rgb \"white\"\n"
                   "plot \"%s.dat\" using ($3/2):1:(0):3:($1-0.4):($1+0.4):ytic(2) with boxxyerror lc rgb \"#4e79a7\" notitle\n",
            pts.cnt - 1, pts.cnt > 60 ? " font \",6\"" : pts.cnt > 35 ? " font \",8\"" : "", a->name);
    rc = write_gp(R, a, body.s);
    if (!rc) rc = gnuplot(R, a);
done:
    if (d) { fclose(d); free(path); }
    for (int i = 0; i < pts.cnt; i++) free(pts.point[i]);
    free(pts.point);
    free(pts.mean);
    free(pts.n);
    free(ord);
    free(job.plan_json);
    free(body.s);
    return rc;
}

/* ---- tables ----------------------------------------------------------------------- */

static Table *table_new(int ncol, const char *const *csv_head, const char *const *head, const char *align) {
    Table *t = xcalloc(1, sizeof *t);
    t->ncol = ncol;
    t->csv_head = csv_head;
    t->head = head;
    t->align = align;
    return t;
}

/* Appends a row: raw[c] for the CSV, shown[c] (NULL: the raw text) for the rest. Copies both. */
static void table_row(Table *t, const char *const *raw, const char *const *shown) {
    if (t->nrow == t->cap) {
        t->cap = 2 * t->cap + 8;
        t->raw = xrealloc(t->raw, (size_t)t->cap * (size_t)t->ncol * sizeof *t->raw);
        t->shown = xrealloc(t->shown, (size_t)t->cap * (size_t)t->ncol * sizeof *t->shown);
    }
    for (int c = 0; c < t->ncol; c++) {
        t->raw[t->nrow * t->ncol + c] = dup0(raw[c]);
        t->shown[t->nrow * t->ncol + c] = dup0(shown && shown[c] ? shown[c] : raw[c]);
    }
    t->nrow++;
}

static void table_free(Table *t) {
    if (!t) return;
    for (int i = 0; i < t->nrow * t->ncol; i++) { free(t->raw[i]); free(t->shown[i]); }
    free(t->raw);
    free(t->shown);
    free(t);
}

static void csv_cell(FILE *f, const char *s) {
    if (!strpbrk(s, ",\"\r\n")) { fputs(s, f); return; }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void md_cell(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '|') fputs("\\|", f);
        else if (*s == '\n') fputc(' ', f);
        else fputc(*s, f);
    }
}

static void tex_cell(FILE *f, const char *s) {
    for (; *s; s++) switch (*s) {
        case '\\': fputs("\\textbackslash{}", f); break;
        case '~': fputs("\\textasciitilde{}", f); break;
        case '^': fputs("\\textasciicircum{}", f); break;
        case '&': case '%': case '$': case '#': case '_': case '{': case '}': fprintf(f, "\\%c", *s); break;
        case '\n': fputc(' ', f); break;
        default: fputc(*s, f);
        }
}

static void html_text(FILE *f, const char *s) {
    for (; *s; s++) switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
}

/* NAME.csv, NAME.md and NAME.tex of a table. */
static int write_table(Report *R, Artifact *a) {
    const Table *t = a->table;
    char *path;
    FILE *f = out_open(R, a->name, ".csv", &path);
    if (!f) { free(path); return ERR_OUTPUT; }
    for (int c = 0; c < t->ncol; c++) {
        if (c) fputc(',', f);
        csv_cell(f, t->csv_head[c]);
    }
    fputc('\n', f);
    for (int r = 0; r < t->nrow; r++) {
        for (int c = 0; c < t->ncol; c++) {
            if (c) fputc(',', f);
            csv_cell(f, t->raw[r * t->ncol + c]);
        }
        fputc('\n', f);
    }
    int rc = out_close(R, f, path);
    if (rc) return rc;

    if (!(f = out_open(R, a->name, ".md", &path))) { free(path); return ERR_OUTPUT; }
    fprintf(f, "**%s**\n\n|", a->title);
    for (int c = 0; c < t->ncol; c++) { fputc(' ', f); md_cell(f, t->head[c]); fputs(" |", f); }
    fputs("\n|", f);
    for (int c = 0; c < t->ncol; c++) fputs(t->align[c] == 'r' ? "---:|" : "---|", f);
    fputc('\n', f);
    for (int r = 0; r < t->nrow; r++) {
        fputc('|', f);
        for (int c = 0; c < t->ncol; c++) { fputc(' ', f); md_cell(f, t->shown[r * t->ncol + c]); fputs(" |", f); }
        fputc('\n', f);
    }
    if (a->caption) fprintf(f, "\n%s\n", a->caption);
    if ((rc = out_close(R, f, path))) return rc;

    if (!(f = out_open(R, a->name, ".tex", &path))) { free(path); return ERR_OUTPUT; }
    fprintf(f, "%% %s.tex (unetlab report from %s): %s. Needs \\usepackage{booktabs}.\n\\begin{tabular}{%s}\n\\toprule\n",
            a->name, db_path(R->db), a->title, t->align);
    for (int c = 0; c < t->ncol; c++) { if (c) fputs(" & ", f); tex_cell(f, t->head[c]); }
    fputs(" \\\\\n\\midrule\n", f);
    for (int r = 0; r < t->nrow; r++) {
        for (int c = 0; c < t->ncol; c++) { if (c) fputs(" & ", f); tex_cell(f, t->shown[r * t->ncol + c]); }
        fputs(" \\\\\n", f);
    }
    fputs("\\bottomrule\n\\end{tabular}\n", f);
    if ((rc = out_close(R, f, path))) return rc;
    R->res->tables++;
    return 0;
}

typedef struct {
    char label[64];
    int64_t macs;
    long pixels, tokens, batch;
} Size;

static void keep_size(void *ctx, const char *label, int64_t params, int64_t macs) {
    (void)params;
    Size *s = ctx;
    int b, h, w, t;
    if (sscanf(label, "b%d_%dx%d_t%d", &b, &h, &w, &t) != 4) return;
    long px = (long)h * w;
    if (px > s->pixels || (px == s->pixels && t > s->tokens)) {
        snprintf(s->label, sizeof s->label, "%dx%d px, batch %d, %d tokens", h, w, b, t);
        s->macs = macs;
        s->pixels = px;
        s->tokens = t;
        s->batch = b;
    }
}

/* The latest whole-model forward of model_id at batch b, or NULL. */
static const Fwd *latest_fwd(const Report *R, int64_t model_id, int b) {
    for (int i = R->nfw - 1; i >= 0; i--)
        if (R->fw[i].model_id == model_id && !R->fw[i].plan_id && R->fw[i].batch == b) return &R->fw[i];
    return NULL;
}

static int table_comparison(Report *R) {
    Artifact *a = art_new(R, "comparison", "Models in the store: size, cost and latency measured here", 0);
    static const char *const CH[] = {"model", "params", "flops", "flops_at", "latency_b1_ms", "latency_b2_ms", "latency_at",
                                     "measured_on", "speedup_vs_sdxl_base", "reported_paper"};
    static const char *const H[] = {"model", "UNet params", "FLOPs", "FLOPs at", "latency b1 (ms)", "latency b2 (ms)",
                                    "latency at", "measured on (device, engine)", "speedup over sdxl-base (measured here)",
                                    "reported (paper)"};
    a->table = table_new(10, CH, H, "lrrlrrllrl");
    const Fwd *base = NULL; /* sdxl-base's batch-1 latency, when measured here */
    for (int m = 0; m < R->nmodels && !base; m++)
        if (spec_is(R->models[m].spec, "sdxl-base")) base = latest_fwd(R, R->models[m].id, 1);
    Buf eng = {0};
    for (int m = 0; m < R->nmodels; m++) {
        const Model *md = &R->models[m];
        Size sz = {{0}, 0, -1, -1, 0};
        int rc = db_model_sizes(R->db, md->id, keep_size, &sz);
        if (rc) { free(eng.s); return rc; }
        char params[32], params_s[40], flops[32] = "", flops_s[48] = "", b1[40] = "", b2[40] = "", b1s[32] = "", b2s[32] = "";
        char at[400] = "", on[600] = "", sp[40] = "", sps[40] = "";
        snprintf(params, sizeof params, "%" PRId64, md->params);
        commas(md->params, params_s, sizeof params_s);
        if (sz.pixels > 0) {
            snprintf(flops, sizeof flops, "%" PRId64, 2 * sz.macs);
            commas(2 * sz.macs, flops_s, sizeof flops_s);
        }
        const Fwd *f1 = latest_fwd(R, md->id, 1), *f2 = latest_fwd(R, md->id, 2);
        const Fwd *fs[2] = {f1, f2};
        for (int k = 0; k < 2; k++) {
            const Fwd *f = fs[k];
            if (!f) continue;
            real_text(k ? b2 : b1, sizeof b1, f->ms);
            snprintf(k ? b2s : b1s, sizeof b1s, "%.2f", f->ms);
            ids_add(&a->runs, f->run_id);
            char e[512], s[300];
            fwd_engine(f, e, sizeof e);
            snprintf(s, sizeof s, "%dx%d px, %d tokens, %s", f->height, f->width, f->tokens, f->dtype);
            if (!eng.s || !strstr(eng.s, e)) buf_add(&eng, "%s%s", eng.n ? "; " : "", e);
            /* b2 repeats b1's configuration only where it differs */
            if (k == 1 && f1 && fwd_same_setup(f1, f2)) continue;
            int n = (int)strlen(at), o = (int)strlen(on);
            snprintf(at + n, sizeof at - (size_t)n, "%s%s", k && f1 ? " | b2: " : "", s);
            snprintf(on + o, sizeof on - (size_t)o, "%s%s, engine %s", k && f1 ? " | b2: " : "", f->device, f->engine);
        }
        if (base && f1 && fwd_same_setup(base, f1) && f1->ms > 0) {
            real_text(sp, sizeof sp, base->ms / f1->ms);
            snprintf(sps, sizeof sps, "%.2fx", base->ms / f1->ms);
            ids_add(&a->runs, base->run_id);
        }
        /* the papers' own claims, never mixed with what was measured here */
        const char *paper = spec_is(md->spec, "ssd-1b")        ? "up to 60% faster (A100, end to end)"
                            : spec_is(md->spec, "segmind-vega") ? "100% faster (A100, end to end)"
                                                                : "";
        const char *raw[10] = {md->spec, params, flops, sz.pixels > 0 ? sz.label : "", b1, b2, at, on, sp, paper};
        const char *shown[10] = {NULL, params_s, flops_s, NULL, b1s, b2s, NULL, NULL, sps, NULL};
        table_row(a->table, raw, shown);
        ids_add(&a->runs, md->run_id);
    }
    a->engine = eng.s;
    a->caption = xasprintf("One row per model in the store. Params: the UNet's (models.params). FLOPs: 2 x the root module's "
                           "MACs (as FlopCounterMode counts) at the largest size stored for it. Latency: the latest whole-model "
                           "forward measured here at batch 1 and 2 (median, ms)%s%s. The speedup is sdxl-base's batch-1 latency "
                           "over the model's, on the same device, engine and size only. 'reported (paper)' quotes the "
                           "published claims (end to end on an A100); no measured column holds a reported number.",
                           eng.s ? "; measured on " : "", eng.s ? eng.s : "");
    return write_table(R, a);
}

static int table_schedule(Report *R) {
    Artifact *a = art_new(R, "schedule", "The latest schedule's stages", 0);
    if (!R->latest || !R->nstages) {
        a->note = xstrdup(R->latest ? "the latest schedule has no stage yet" : "no schedule in the store");
        fprintf(stderr, "report: table schedule skipped: %s\n", a->note);
        return 0;
    }
    static const char *const CH[] = {"stage", "removed", "params", "macs", "loss", "ms"};
    static const char *const H[] = {"stage", "removed", "params", "MACs", "loss (block NMSE)", "ms"};
    a->table = table_new(6, CH, H, "rlrrrr");
    char e[512], score[64];
    sched_engine(R, R->latest, e, sizeof e);
    int has_ms = 0;
    for (int i = 0; i < R->nstages; i++) {
        const Stage *s = &R->stages[i];
        char st[16], p[32], ps[40], m[32], ms_[40], l[40], ls[40], t[40], ts[40];
        snprintf(st, sizeof st, "%d", s->stage);
        snprintf(p, sizeof p, "%" PRId64, s->params);
        snprintf(m, sizeof m, "%" PRId64, s->macs);
        commas(s->params, ps, sizeof ps);
        commas(s->macs, ms_, sizeof ms_);
        real_text(l, sizeof l, s->loss);
        ls[0] = '\0';
        if (isfinite(s->loss)) snprintf(ls, sizeof ls, "%.4g", s->loss);
        real_text(t, sizeof t, s->ms);
        ts[0] = '\0';
        if (isfinite(s->ms)) snprintf(ts, sizeof ts, "%.2f", s->ms), has_ms = 1;
        const char *raw[6] = {st, s->chosen, p, m, l, t};
        const char *shown[6] = {NULL, NULL, ps, ms_, ls, ts};
        table_row(a->table, raw, shown);
        ids_add(&a->runs, s->run_id);
    }
    ids_add(&a->runs, R->latest->run_id);
    a->engine = has_ms ? xstrdup(e) : NULL;
    a->caption = xasprintf("Schedule %" PRId64 " of %s (score %s): the module(s) each stage removed and the student after it. "
                           "MACs at the calibration size, batch 1.%s%s",
                           R->latest->id, R->latest->spec, sched_score_name(R->latest, score, sizeof score),
                           has_ms ? " ms: as the schedule scored them, " : "", has_ms ? e : "");
    return write_table(R, a);
}

static int table_candidates(Report *R) {
    Artifact *a = art_new(R, "candidates", "The best candidates of the latest schedule's first stage", 0);
    int first = R->nstages ? R->stages[0].stage : 1, n = 0;
    for (int i = 0; i < R->nscores; i++) n += R->scores[i].stage == first;
    if (!R->latest || !n) {
        a->note = xstrdup(R->latest ? "the latest schedule has no scored stage" : "no schedule in the store");
        fprintf(stderr, "report: table candidates skipped: %s\n", a->note);
        return 0;
    }
    static const char *const CH[] = {"rank", "candidate", "kind", "loss_increase", "params_saved", "ms_saved", "score", "chosen"};
    static const char *const H[] = {"rank", "candidate", "kind", "loss increase", "params saved", "ms saved", "score", "chosen"};
    a->table = table_new(8, CH, H, "rllrrrrl");
    int rank = 0;
    /* the scores come ordered by stage, then score (lowest first) */
    for (int i = 0; i < R->nscores && rank < R->o->top; i++) {
        const Score *s = &R->scores[i];
        if (s->stage != first) continue;
        char rk[16], inc[40], incs[40], ps[32], pss[40], ms[40], mss[40], sc[40], scs[40];
        snprintf(rk, sizeof rk, "%d", ++rank);
        real_text(inc, sizeof inc, s->increase);
        snprintf(incs, sizeof incs, "%.4g", s->increase);
        if (s->has_params_saved) {
            snprintf(ps, sizeof ps, "%" PRId64, s->params_saved);
            commas(s->params_saved, pss, sizeof pss);
        } else ps[0] = pss[0] = '\0';
        real_text(ms, sizeof ms, s->ms_saved);
        if (isfinite(s->ms_saved)) snprintf(mss, sizeof mss, "%.2f", s->ms_saved);
        else mss[0] = '\0';
        real_text(sc, sizeof sc, s->score);
        if (isnan(s->score)) scs[0] = '\0';
        else snprintf(scs, sizeof scs, "%.4g", s->score);
        if (isnan(s->increase)) incs[0] = '\0';
        const char *raw[8] = {rk, s->candidate, s->kind, inc, ps, ms, sc, s->chosen ? "yes" : "no"};
        const char *shown[8] = {NULL, NULL, NULL, incs, pss, mss, scs, NULL};
        table_row(a->table, raw, shown);
    }
    for (int i = 0; i < R->nstages; i++)
        if (R->stages[i].stage == first) ids_add(&a->runs, R->stages[i].run_id);
    ids_add(&a->runs, R->latest->run_id);
    char e[512], score[64];
    sched_engine(R, R->latest, e, sizeof e);
    int has_ms = 0;
    for (int i = 0; i < R->nscores; i++) has_ms |= R->scores[i].stage == first && isfinite(R->scores[i].ms_saved);
    a->engine = has_ms ? xstrdup(e) : NULL;
    a->caption = xasprintf("The %d lowest-scored of the %d candidates of stage %d of schedule %" PRId64 " of %s (score %s: lower "
                           "is better); loss increase over the teacher (block NMSE).%s%s",
                           rank, n, first, R->latest->id, R->latest->spec, sched_score_name(R->latest, score, sizeof score),
                           has_ms ? " ms saved: " : "", has_ms ? e : "");
    return write_table(R, a);
}

/* ---- index.html -------------------------------------------------------------------- */

static void html_table(FILE *f, const Table *t) {
    fputs("<table class=\"data\">\n<tr>", f);
    for (int c = 0; c < t->ncol; c++) { fputs("<th>", f); html_text(f, t->head[c]); fputs("</th>", f); }
    fputs("</tr>\n", f);
    for (int r = 0; r < t->nrow; r++) {
        fputs("<tr>", f);
        for (int c = 0; c < t->ncol; c++) {
            fprintf(f, "<td%s>", t->align[c] == 'r' ? " class=\"num\"" : "");
            html_text(f, t->shown[r * t->ncol + c]);
            fputs("</td>", f);
        }
        fputs("</tr>\n", f);
    }
    fputs("</table>\n", f);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void html_provenance(FILE *f, const Report *R, const Artifact *a) {
    fputs("<details open><summary>Provenance</summary>\n<p>", f);
    if (a->engine) { fputs("Measured on: ", f); html_text(f, a->engine); fputs(". ", f); }
    fprintf(f, "Runs behind these numbers (table <code>runs</code>):</p>\n");
    if (!a->runs.n) { fputs("<p>(none recorded)</p>\n</details>\n", f); return; }
    int64_t *ids = xmalloc((size_t)a->runs.n * sizeof *ids);
    memcpy(ids, a->runs.v, (size_t)a->runs.n * sizeof *ids);
    qsort(ids, (size_t)a->runs.n, sizeof *ids, cmp_i64);
    fputs("<table class=\"prov\">\n<tr><th>run</th><th>date (UTC)</th><th>command line</th><th>git commit</th>"
          "<th>device</th><th>build</th><th>status</th></tr>\n", f);
    for (int i = 0; i < a->runs.n; i++) {
        const Run *r = run_of(R, ids[i]);
        if (!r) continue;
        fprintf(f, "<tr><td class=\"num\">%" PRId64 "</td><td>", r->id);
        html_text(f, r->started);
        fputs("</td><td><code>", f);
        html_text(f, r->cmd);
        fputs("</code></td><td>", f);
        html_text(f, r->commit);
        fputs("</td><td>", f);
        html_text(f, r->device);
        fputs("</td><td>", f);
        html_text(f, r->flags);
        fputs("</td><td>", f);
        html_text(f, r->status);
        fputs("</td></tr>\n", f);
    }
    fputs("</table>\n</details>\n", f);
    free(ids);
}

static int write_index(Report *R) {
    char *path;
    FILE *f = out_open(R, "index", ".html", &path);
    if (!f) { free(path); return ERR_OUTPUT; }
    char now[32];
    time_t t = time(NULL);
    strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>unetlab report</title>\n<style>\n"
          "body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; }\n"
          "table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }\n"
          "th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }\n"
          "td.num { text-align: right; font-variant-numeric: tabular-nums; }\n"
          "table.prov { font-size: 0.8em; }\nimg { max-width: 100%; border: 1px solid #eee; }\n"
          ".note { color: #a00; }\n</style>\n</head>\n<body>\n<h1>unetlab report</h1>\n<p>From <code>", f);
    html_text(f, db_path(R->db));
    fprintf(f, "</code>, written %s by <code>", now);
    html_text(f, R->o->command_line ? R->o->command_line : "unetlab report");
    fputs("</code>. Every number below is read from that store; each section names the runs that measured it. "
          "Measured and published numbers are kept in separate columns.</p>\n<ul>\n", f);
    for (int i = 0; i < R->nart; i++) {
        fprintf(f, "<li><a href=\"#%s-%s\">", R->art[i].is_plot ? "plot" : "table", R->art[i].name);
        html_text(f, R->art[i].title);
        fprintf(f, "</a>%s</li>\n", R->art[i].note ? " (skipped)" : "");
    }
    fputs("</ul>\n", f);
    for (int i = 0; i < R->nart; i++) {
        const Artifact *a = &R->art[i];
        fprintf(f, "<h2 id=\"%s-%s\">", a->is_plot ? "plot" : "table", a->name);
        html_text(f, a->title);
        fprintf(f, " <small>(%s)</small></h2>\n", a->name);
        if (a->note) {
            fputs("<p class=\"note\">Skipped: ", f);
            html_text(f, a->note);
            fputs(".</p>\n", f);
            continue;
        }
        if (a->caption) { fputs("<p>", f); html_text(f, a->caption); fputs("</p>\n", f); }
        if (a->is_plot) {
            if (a->drawn)
                fprintf(f, "<p><img src=\"%s.%s\" width=\"1000\" height=\"700\" alt=\"%s\"></p>\n", a->name,
                        R->o->png ? "png" : "svg", a->name);
            else
                fprintf(f, "<p class=\"note\">Not drawn (gnuplot not found): run <code>gnuplot %s.gp</code> in this "
                           "directory.</p>\n", a->name);
            fprintf(f, "<p>Files: <a href=\"%s.dat\">%s.dat</a>, <a href=\"%s.gp\">%s.gp</a>", a->name, a->name, a->name,
                    a->name);
            if (a->drawn && R->o->png) fprintf(f, ", <a href=\"%s.png\">%s.png</a>", a->name, a->name);
            if (a->drawn && R->o->svg) fprintf(f, ", <a href=\"%s.svg\">%s.svg</a>", a->name, a->name);
            fputs("</p>\n", f);
        } else {
            html_table(f, a->table);
            fprintf(f, "<p>Files: <a href=\"%s.md\">%s.md</a>, <a href=\"%s.tex\">%s.tex</a>, <a href=\"%s.csv\">%s.csv</a></p>\n",
                    a->name, a->name, a->name, a->name, a->name, a->name);
        }
        html_provenance(f, R, a);
    }
    fputs("</body>\n</html>\n", f);
    return out_close(R, f, path);
}

/* ---- the whole report --------------------------------------------------------------- */

/* mkdir -p dir; ERR_OUTPUT naming the part that cannot be made, or dir when it is not a writable directory. */
static int make_dir(const char *dir) {
    char *p = xstrdup(dir);
    int rc = 0;
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0') continue;
        char c = *s;
        *s = '\0';
        struct stat sb;
        if (stat(p, &sb)) {
            if (mkdir(p, 0777) && errno != EEXIST) { rc = err_set(ERR_OUTPUT, "cannot create '%s': %s", p, strerror(errno)); break; }
        } else if (!S_ISDIR(sb.st_mode)) {
            rc = err_set(ERR_OUTPUT, "cannot write into '%s': '%s' is not a directory", dir, p);
            break;
        }
        *s = c;
        if (!c) break;
    }
    free(p);
    if (!rc && access(dir, W_OK | X_OK)) rc = err_set(ERR_OUTPUT, "cannot write into '%s': %s", dir, strerror(errno));
    return rc;
}

int report_write(Db *db, const ReportOptions *o, ReportResult *res) {
    memset(res, 0, sizeof *res);
    Report R = {.db = db, .o = o, .res = res};
    int rc = make_dir(o->dir);
    if (!rc) rc = db_runs(db, keep_run, &R);
    if (!rc) rc = db_models(db, keep_model, &R);
    if (!rc) rc = db_forwards(db, keep_fwd, &R);
    if (!rc) rc = db_schedules(db, keep_sched, &R);
    if (!rc && R.nsched) {
        R.latest = &R.sched[R.nsched - 1];
        Stages st = {0};
        rc = db_schedule_stages(db, R.latest->id, keep_stage, &st);
        R.stages = st.v;
        R.nstages = st.n;
        if (!rc) rc = db_schedule_scores(db, R.latest->id, keep_score, &R);
    }
    int (*const plots[])(Report *) = {plot_params_latency, plot_loss_saving, plot_module_latency, plot_schedule,
                                      plot_layer_loss, table_comparison, table_schedule, table_candidates};
    for (size_t i = 0; !rc && i < sizeof plots / sizeof *plots; i++) rc = plots[i](&R);
    for (int i = 0; i < R.nart; i++) res->plots += R.art[i].is_plot && !R.art[i].note;
    if (!rc) rc = write_index(&R);
    if (!rc)
        for (int i = 0; i < R.nwritten; i++) printf("%s\n", R.written[i]);
    for (int i = 0; i < R.nwritten; i++) free(R.written[i]);
    free(R.written);
    for (int i = 0; i < R.nart; i++) {
        free(R.art[i].note);
        free(R.art[i].caption);
        free(R.art[i].engine);
        free(R.art[i].runs.v);
        table_free(R.art[i].table);
    }
    for (int i = 0; i < R.nruns; i++) {
        Run *r = &R.runs[i];
        free(r->cmd), free(r->commit), free(r->flags), free(r->device), free(r->host), free(r->started), free(r->ended),
            free(r->status);
    }
    free(R.runs);
    for (int i = 0; i < R.nmodels; i++) free(R.models[i].spec);
    free(R.models);
    for (int i = 0; i < R.nfw; i++) free(R.fw[i].spec), free(R.fw[i].dtype), free(R.fw[i].device), free(R.fw[i].engine);
    free(R.fw);
    for (int i = 0; i < R.nsched; i++) free(R.sched[i].spec), free(R.sched[i].options), free(R.sched[i].latency);
    free(R.sched);
    for (int i = 0; i < R.nstages; i++) free(R.stages[i].chosen);
    free(R.stages);
    for (int i = 0; i < R.nscores; i++) free(R.scores[i].candidate), free(R.scores[i].kind);
    free(R.scores);
    return rc;
}
