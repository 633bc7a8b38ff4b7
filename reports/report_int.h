/* report_int: what the files of reports/ share; report.h is the public
 * contract. The store read into a Report (store.c), the artifacts made from
 * it (one file per kind of output: plot_*.c, table_*.c, index.c) and their
 * plumbing: text buffers and output files (report.c), gnuplot data and
 * scripts (gnuplot.c), tables as CSV, Markdown and LaTeX (table.c). Tested
 * through report.h by tests/test_report.c. */
#ifndef UNETLAB_REPORT_INT_H
#define UNETLAB_REPORT_INT_H
#include "report.h"
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- text (report.c) ------------------------------------------------------- */

typedef struct {
    char *s;
    size_t n, cap;
} Buf;

void buf_add(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends "; "-separated s to b unless b already holds it (lists of engines). */
void buf_add_once(Buf *b, const char *s);
char *dup0(const char *s);                       /* xstrdup, "" for NULL */
/* Shortest text that reads back as the same double (db query prints so too); "" for NaN. */
void real_text(char *b, size_t n, double v);
const char *commas(int64_t v, char *buf, int size);

/* A set of run ids (0 and below are not runs). */
typedef struct {
    int64_t *v;
    int n, cap;
} Ids;
void ids_add(Ids *x, int64_t id);

/* A list of distinct strings in the order first added (settings, models, candidates). */
typedef struct {
    char **v;
    int n, cap;
} Names;
/* The index of s in x, added (copied) at the end when absent. */
int names_add(Names *x, const char *s);
/* The index of s in x, -1 when absent. */
int names_find(const Names *x, const char *s);
void names_free(Names *x);

/* ---- what the store holds (store.c) ----------------------------------------- */

typedef struct {
    int64_t id;
    char *cmd, *commit, *flags, *device, *host, *started, *ended, *status;
} Run;

typedef struct {
    int64_t id, params, run_id;
    char *spec;
} Model;

/* One measurement of a whole forward: the traced one ('(forward)': every
 * module timed) and, where stored, the same forwards untraced ('(untraced)'). */
typedef struct {
    int64_t id, run_id, model_id, plan_id, plan_params, model_params;
    char *spec, *dtype, *device, *engine;
    int batch, height, width, tokens, repeats;
    double ms, p10, p90;       /* traced */
    double ums, up10, up90;    /* untraced; NaN when the store has none */
    double others_load;        /* NaN unknown */
    int unstable;
} Fwd;

/* The latency a user gets of a measurement: the untraced forwards, or, in
 * stores without them, the traced ones (traced = 1: say so where shown). */
typedef struct {
    double ms, p10, p90;
    int traced;
} Lat;
Lat fwd_lat(const Fwd *f);

typedef struct {
    int64_t id, model_id, run_id, model_params;
    char *spec, *options, *latency;
    int n_stages;
    /* from the teacher profile it scores with (schedules.latency), when it has one */
    char engine[64];           /* "?" when the profile does not say */
    double teacher_ms;         /* its '(forward)': what a predicted stage starts from; NaN when absent */
    double teacher_untraced_ms;/* its '(untraced)'; NaN when absent (older stores) */
    int unstable;              /* the stored profile was judged too noisy */
    double others_load, spread;/* NaN when absent */
    int stage_measured;        /* stage ms measured (1) or predicted from the profile (0, the default) */
} Sched;

typedef struct {
    int stage;
    int64_t plan_id, params, macs, run_id;
    char *chosen;
    double loss, ms;
} Stage;

typedef struct {
    Stage *v;
    int n;
} Stages;

typedef struct {
    int stage;
    char *candidate, *kind;
    double increase, ms_saved, score;
    int64_t params_saved;
    int has_params_saved, chosen;
} Score;

/* One row of the latest `unetlab agree` run (agree_results; db.h's
 * DbAgreeRow with its strings owned, "" for NULL). NaN and -1: stored NULL. */
typedef struct {
    char *model, *kind, *metric, *setting_a, *setting_b, *candidate;
    int samples, of_samples, bin, students, bootstrap, stage;
    double tau, tau_lo, tau_hi, rho, rho_lo, rho_hi, top5, top10, top20;
    double measured, predicted;
} Agree;

/* A table: cells row-major, CSV gets raw text, Markdown/LaTeX/HTML the shown text. */
typedef struct {
    int ncol;
    const char *const *csv_head, *const *head;
    const char *align;   /* 'l' or 'r' per column */
    const char *csv_only;/* NULL, or per column '1': in the CSV only (its number is in a shown cell already) */
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
    Fwd *fw;                  /* oldest first */
    int nfw;
    Sched *sched;             /* least recently extended first */
    int nsched;
    const Sched *latest;      /* the latest schedule, or NULL */
    Stage *stages;            /* of the latest schedule */
    int nstages;
    Score *scores;            /* of the latest schedule */
    int nscores;
    Agree *agree;             /* of the latest agree run, in stored order */
    int nagree;
    int64_t agree_run;        /* that run; 0 when the store has none */
    Artifact art[24];
    int nart;
    char **written;
    int nwritten;
} Report;

/* Reads runs, models, forwards, schedules, the latest schedule's stages and
 * scores, and the latest agree run's rows into R (R->db set). ERR_DB from the
 * store. store_free frees. */
int store_load(Report *R);
void store_free(Report *R);
/* How many rows of the latest agree run are of kind ('pair', 'bin', ...). */
int agree_count(const Report *R, const char *kind);
/* The series of the rows of kind: each distinct (model, setting_a), settings
 * being named per model, as its first row, in order of appearance. Returns
 * how many (*first: caller frees); *nmodels how many models they span. */
int agree_series(const Report *R, const char *kind, const Agree ***first, int *nmodels);
/* Whether row g is of the series whose first row is s. */
int agree_in_series(const Agree *g, const Agree *s);
/* A series' setting, after its model's base name when with_model. Caller frees. */
char *agree_series_title(const Agree *s, int with_model);
/* The stages of schedule id into *st (caller frees with stages_free). */
int store_stages(Report *R, int64_t schedule_id, Stages *st);
void stages_free(Stages *st);

/* One module row of a profile, with its spread over the repeats. */
typedef struct {
    char *name, *kind;
    double ms, p10, p90;
} ModRow;
/* Every latency row of (run, model, plan 0: none) in stored order, the
 * whole-forward rows ('(forward)', '(untraced)', ...) included. Caller frees
 * with modrows_free. */
int store_module_rows(Report *R, int64_t run_id, int64_t model_id, int64_t plan_id, ModRow **rows, int *n);
void modrows_free(ModRow *rows, int n);

const Run *run_of(const Report *R, int64_t id);
/* "engine E, DEVICE" of a schedule's milliseconds (its profile's engine, its run's device). */
void sched_engine(const Report *R, const Sched *s, char *buf, size_t n);
const char *sched_score_name(const Sched *s, char *buf, size_t n);
/* "predicted" or "measured": how the schedule's stage ms were made. */
const char *sched_ms_source(const Sched *s);
/* "" for a stable profile, else a sentence saying it was unstable and why
 * (the others' load, the spread) for a caption. */
const char *sched_noise(const Sched *s, char *buf, size_t n);
/* The teacher's ms a schedule's stage 0 stands at (its stored profile's), NaN none. */
double sched_stage0_ms(const Sched *s);
/* "engine E, DEVICE" of a measurement. */
void fwd_engine(const Fwd *f, char *buf, size_t n);
/* Same size, tokens, dtype, device and engine: numbers that compare. */
int fwd_same_setup(const Fwd *a, const Fwd *b);
/* ... and the same batch. */
int fwd_same_config(const Fwd *a, const Fwd *b);
/* The latest whole-model forward of model_id at batch b, or NULL. */
const Fwd *latest_fwd(const Report *R, int64_t model_id, int b);
/* The teacher: the latest schedule's model, else the model of the latest whole-model forward; 0 none. */
int64_t teacher_id(const Report *R);
/* The last path component of a model spec ("tests/fixtures/mini-public" -> "mini-public"). */
const char *base_name(const char *spec);
/* Whether a spec names this published model: the preset, or a checkpoint directory of that name. */
int spec_is(const char *spec, const char *name);

/* ---- output files (report.c) -------------------------------------------------- */

/* Opens DIR/NAME.EXT for writing; *path gets its name (pass it to out_close);
 * NULL (ERR_OUTPUT set, *path NULL) on failure. */
FILE *out_open(Report *R, const char *name, const char *ext, char **path);
/* Closes f, checking every write made to it; records path as written (and owns it). */
int out_close(Report *R, FILE *f, char *path);
/* Records a file written by someone else (a picture); takes path. */
void out_written(Report *R, char *path);
Artifact *art_new(Report *R, const char *name, const char *title, int is_plot);
/* Marks a plot or table skipped, with a one-line note on stderr. */
void art_skip(Report *R, Artifact *a, const char *why);

/* ---- gnuplot (gnuplot.c) ------------------------------------------------------- */

/* Text for a gnuplot double-quoted string. */
void gp_str(Buf *b, const char *s);
/* A plot title centred on the canvas (reset first). */
void gp_title(Buf *b, const char *title);
/* Explicit tics for an axis from 0 to max, labelled with k or M and no
 * decimals ("0", "250k", "500k", ...): `set AXIStics (...)`. */
void gp_si_tics(Buf *b, const char *axis, double max);
/* A quoted string column of a .dat file. */
void dat_str(FILE *f, const char *s);
/* A real column: the shortest text that reads back as v, or "?" (missing). */
void dat_real(FILE *f, double v);
/* Which of n labels at (x[i], y[i]) (fractions of the axes) to draw so that
 * no two kept ones are closer than w across and h up: greedy in order, the
 * first and the last always kept. keep[i] gets 0 or 1. */
void gp_thin_labels(const double *x, const double *y, int n, double w, double h, char *keep);
/* Writes NAME.gp: a header, then body once per picture format. */
int gp_write(Report *R, Artifact *a, const char *body);
/* Runs `gnuplot NAME.gp` in the output directory (see gnuplot.c). */
int gp_run(Report *R, Artifact *a);

/* ---- tables (table.c) ------------------------------------------------------------ */

Table *table_new(int ncol, const char *const *csv_head, const char *const *head, const char *align);
/* Appends a row: raw[c] for the CSV, shown[c] (NULL: the raw text) for the rest. Copies both. */
void table_row(Table *t, const char *const *raw, const char *const *shown);
void table_free(Table *t);
/* Whether column c is shown (in Markdown, LaTeX, HTML), not only in the CSV. */
int table_shows(const Table *t, int c);
/* NAME.csv, NAME.md and NAME.tex of a table artifact. */
int table_write(Report *R, Artifact *a);

/* ---- the outputs, one file each ----------------------------------------------------- */

int plot_params_latency(Report *R);   /* plot_params_latency.c */
int plot_loss_saving(Report *R);      /* plot_loss_saving.c */
int plot_module_latency(Report *R);   /* plot_module_latency.c */
int plot_schedule(Report *R);         /* plot_schedule.c */
int plot_layer_loss(Report *R);       /* plot_layer_loss.c */
int table_comparison(Report *R);      /* table_comparison.c */
int table_schedule(Report *R);        /* table_schedule.c */
int table_candidates(Report *R);      /* table_candidates.c */
/* the latest agree run (issue 16's rank agreement), a plot and a table each */
int plot_rank_agreement(Report *R);   /* plot_rank_agreement.c */
int plot_rank_convergence(Report *R); /* plot_rank_convergence.c */
int plot_timestep_bins(Report *R);    /* plot_timestep_bins.c */
int plot_additivity(Report *R);       /* plot_additivity.c */
int table_rank_agreement(Report *R);  /* table_agree.c, all four */
int table_rank_convergence(Report *R);
int table_timestep_bins(Report *R);
int table_additivity(Report *R);
/* The artifact of an agree output, or NULL when the store has no agree run:
 * then it is not made at all, and the report of a store that never ran agree
 * is what it was before. Skipped (a->note set) when that run stored no rows
 * of kind (how: what such rows need). */
Artifact *agree_art(Report *R, const char *name, const char *title, int is_plot, const char *kind, const char *how);
int index_write(Report *R);           /* index.c: index.html */

#endif
