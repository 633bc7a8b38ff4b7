/* table_agree: the latest agree run's rows as tables, one a kind, in stored
 * order (the plots of the same names draw them):
 *  - rank_agreement ('pair'): tau and rho with their bootstrap intervals and
 *    the top-k overlaps between two settings;
 *  - rank_convergence ('convergence'): the first n samples against all;
 *  - timestep_bins ('bin'): each timestep bin's ranking against all bins';
 *  - additivity ('additivity'): each schedule stage's measured and predicted
 *    loss.
 * The CSV has the numbers as stored; the interval bounds are shown in their
 * tau or rho cell. Tested by tests/test_report.c (cells against SQL). */
#include "report_int.h"
#include "err.h"
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { CELL = 160 };

/* A number's CSV text (as stored, "" for NaN) and its shown text (fmt, "" for NaN). */
static void num(double v, const char *fmt, char *raw, char *shown) {
    real_text(raw, CELL, v);
    shown[0] = '\0';
    if (isfinite(v)) snprintf(shown, CELL, fmt, v);
}

static void count(int v, char *raw) {
    raw[0] = '\0';
    if (v >= 0) snprintf(raw, CELL, "%d", v);
}

/* "0.848 [0.778, 0.859]": a value with its interval, when it has one. */
static void with_interval(double v, double lo, double hi, char *shown) {
    shown[0] = '\0';
    if (!isfinite(v)) return;
    if (isfinite(lo) && isfinite(hi)) snprintf(shown, CELL, "%.3f [%.3f, %.3f]", v, lo, hi);
    else snprintf(shown, CELL, "%.3f", v);
}

typedef void (*RowFn)(Table *t, const Agree *g);

typedef struct {
    const char *name, *title, *kind, *how;
    int ncol;
    const char *const *csv_head, *const *head;
    const char *align, *csv_only, *caption;
    RowFn row;
} Spec;

/* The table of spec's kind: a row per agree row of it, in stored order. */
static int agree_table(Report *R, const Spec *s) {
    Artifact *a = agree_art(R, s->name, s->title, 0, s->kind, s->how);
    if (!a || a->note) return 0;
    a->table = table_new(s->ncol, s->csv_head, s->head, s->align);
    a->table->csv_only = s->csv_only;
    for (int i = 0; i < R->nagree; i++)
        if (!strcmp(R->agree[i].kind, s->kind)) s->row(a->table, &R->agree[i]);
    ids_add(&a->runs, R->agree_run);
    a->caption = xasprintf("%s From agree run %" PRId64 " (table agree_results).", s->caption, R->agree_run);
    return table_write(R, a);
}

/* ---- rank_agreement ---- */

static const char *const PAIR_CH[15] = {"model", "setting_a", "setting_b", "metric", "students", "kendall_tau", "tau_lo",
                                        "tau_hi", "spearman_rho", "rho_lo", "rho_hi", "top5", "top10", "top20", "bootstrap"};
static const char *const PAIR_H[15] = {"model", "setting A", "setting B", "metric", "students", "Kendall's tau [95% CI]", "",
                                       "", "Spearman's rho [95% CI]", "", "", "top-5", "top-10", "top-20", ""};

static void pair_row(Table *t, const Agree *g) {
    char c[15][CELL], s[15][CELL];
    count(g->students, c[4]);
    const double v[9] = {g->tau, g->tau_lo, g->tau_hi, g->rho, g->rho_lo, g->rho_hi, g->top5, g->top10, g->top20};
    for (int k = 0; k < 9; k++) num(v[k], "%.2f", c[5 + k], s[5 + k]);
    with_interval(g->tau, g->tau_lo, g->tau_hi, s[5]);
    with_interval(g->rho, g->rho_lo, g->rho_hi, s[8]);
    count(g->bootstrap, c[14]);
    const char *raw[15] = {g->model, g->setting_a, g->setting_b, g->metric, c[4], c[5], c[6], c[7], c[8], c[9], c[10],
                           c[11], c[12], c[13], c[14]};
    const char *shown[15] = {base_name(g->model), NULL, NULL, NULL, NULL, s[5], NULL, NULL, s[8], NULL, NULL, s[11], s[12],
                             s[13], NULL};
    table_row(t, raw, shown);
}

int table_rank_agreement(Report *R) {
    const Spec s = {"rank_agreement", "Rank agreement between settings", "pair",
                    "no two settings scored the same students", 15, PAIR_CH, PAIR_H, "llllrrrrrrrrrrr", "000000110110001",
                    "Between two settings' rankings of the students both scored: Kendall's tau-b and Spearman's rho (1: "
                    "the same ranking, 0: unrelated) with their 95% percentile-bootstrap intervals over the calibration "
                    "samples, and the overlap of their top 5, 10 and 20 (the fraction in both).",
                    pair_row};
    return agree_table(R, &s);
}

/* ---- rank_convergence ---- */

static const char *const CONV_CH[9] = {"model", "setting", "metric", "samples", "of_samples", "students", "kendall_tau",
                                       "spearman_rho", "top10"};
static const char *const CONV_H[9] = {"model", "setting", "metric", "first n samples", "of", "students",
                                      "Kendall's tau vs all", "Spearman's rho vs all", "top-10 overlap"};

static void conv_row(Table *t, const Agree *g) {
    char c[9][CELL], s[9][CELL];
    count(g->samples, c[3]);
    count(g->of_samples, c[4]);
    count(g->students, c[5]);
    num(g->tau, "%.3f", c[6], s[6]);
    num(g->rho, "%.3f", c[7], s[7]);
    num(g->top10, "%.2f", c[8], s[8]);
    const char *raw[9] = {g->model, g->setting_a, g->metric, c[3], c[4], c[5], c[6], c[7], c[8]};
    const char *shown[9] = {base_name(g->model), NULL, NULL, NULL, NULL, NULL, s[6], s[7], s[8]};
    table_row(t, raw, shown);
}

int table_rank_convergence(Report *R) {
    const Spec s = {"rank_convergence", "The ranking on the first n samples against all", "convergence",
                    "no setting has two students scored on more than one sample", 9, CONV_CH, CONV_H, "lllrrrrrr", NULL,
                    "Within each setting: the ranking of its students on the first n calibration samples against the "
                    "ranking on all of them.",
                    conv_row};
    return agree_table(R, &s);
}

/* ---- timestep_bins ---- */

static const char *const BIN_CH[10] = {"model", "setting", "metric", "bin", "timesteps", "samples", "students",
                                       "kendall_tau", "spearman_rho", "top10"};
static const char *const BIN_H[10] = {"model", "setting", "metric", "bin", "timesteps", "samples", "students",
                                      "Kendall's tau vs all bins", "Spearman's rho vs all bins", "top-10 overlap"};

static void bin_row(Table *t, const Agree *g) {
    char c[10][CELL], s[10][CELL];
    count(g->bin, c[3]);
    c[4][0] = '\0';
    if (g->bin >= 0) snprintf(c[4], CELL, "%d-%d", 100 * g->bin, 100 * g->bin + 99);
    count(g->samples, c[5]);
    count(g->students, c[6]);
    num(g->tau, "%.3f", c[7], s[7]);
    num(g->rho, "%.3f", c[8], s[8]);
    num(g->top10, "%.2f", c[9], s[9]);
    const char *raw[10] = {g->model, g->setting_a, g->metric, c[3], c[4], c[5], c[6], c[7], c[8], c[9]};
    const char *shown[10] = {base_name(g->model), NULL, NULL, NULL, NULL, NULL, NULL, s[7], s[8], s[9]};
    table_row(t, raw, shown);
}

int table_timestep_bins(Report *R) {
    const Spec s = {"timestep_bins", "Each timestep bin's ranking against all bins'", "bin",
                    "no setting has samples in two timestep bins", 10, BIN_CH, BIN_H, "lllrlrrrrr", NULL,
                    "Within each setting: the ranking of its students on the calibration samples of one timestep bin "
                    "against the ranking on all of them (is a removal harmless at high noise harmless at low noise?).",
                    bin_row};
    return agree_table(R, &s);
}

/* ---- additivity ---- */

static const char *const ADD_CH[7] = {"model", "schedule", "stage", "removed", "measured", "predicted",
                                      "measured_over_predicted"};
static const char *const ADD_H[7] = {"model", "schedule", "stage", "removed", "measured loss",
                                     "predicted (base + single increases)", "measured / predicted"};

static void add_row(Table *t, const Agree *g) {
    char c[7][CELL], s[7][CELL];
    count(g->stage, c[2]);
    num(g->measured, "%.4g", c[4], s[4]);
    num(g->predicted, "%.4g", c[5], s[5]);
    num(g->measured / g->predicted, "%.3f", c[6], s[6]);
    const char *raw[7] = {g->model, g->setting_a, c[2], g->candidate, c[4], c[5], c[6]};
    const char *shown[7] = {base_name(g->model), NULL, NULL, NULL, s[4], s[5], s[6]};
    table_row(t, raw, shown);
}

int table_additivity(Report *R) {
    const Spec s = {"additivity", "Additivity of removals, stage by stage", "additivity",
                    "no schedule in the store, or none with a stage", 7, ADD_CH, ADD_H, "llrlrrr", NULL,
                    "For each schedule stage: what it removed, the measured loss (block NMSE) of the student with every "
                    "removal so far, and the loss predicted by adding each removal's increase, scored alone, to the "
                    "base's; measured / predicted below 1: the removals hurt less together than apart.",
                    add_row};
    return agree_table(R, &s);
}
