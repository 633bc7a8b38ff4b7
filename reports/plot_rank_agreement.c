/* plot_rank_agreement: rank_agreement, Kendall's tau between the rankings of
 * the candidates under each two settings of the latest agree run (its 'pair'
 * rows), as a matrix: every setting of a model on both axes, each cell
 * coloured by tau and labelled with it, 1 on the diagonal (a setting against
 * itself), blank where agree paired none. One panel per model (at most
 * MAX_PANELS; the table has every pair). Tested by tests/test_report.c (every
 * cell against SQL of agree_results). */
#include "report_int.h"
#include "err.h"
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_PANELS = 4 };

/* The pair row of model between settings a and b, in either order, or NULL. */
static const Agree *pair_of(const Report *R, const char *model, const char *a, const char *b) {
    for (int i = 0; i < R->nagree; i++) {
        const Agree *g = &R->agree[i];
        if (strcmp(g->kind, "pair") || strcmp(g->model, model)) continue;
        if ((!strcmp(g->setting_a, a) && !strcmp(g->setting_b, b)) || (!strcmp(g->setting_a, b) && !strcmp(g->setting_b, a)))
            return g;
    }
    return NULL;
}

/* The settings of model's pair rows, in the order they first appear; metrics the metrics of those rows. */
static void model_settings(const Report *R, const char *model, Names *set, Names *metrics) {
    for (int i = 0; i < R->nagree; i++) {
        const Agree *g = &R->agree[i];
        if (strcmp(g->kind, "pair") || strcmp(g->model, model)) continue;
        names_add(set, g->setting_a);
        names_add(set, g->setting_b);
        names_add(metrics, g->metric);
    }
}

/* Block k of the .dat: every cell of model's matrix, row by row. */
static void matrix_block(FILE *d, const Report *R, int k, const char *model, const Names *set) {
    fprintf(d, "%s# block %d: model %s, %d settings\n", k ? "\n\n" : "", k, model, set->n);
    for (int i = 0; i < set->n; i++)
        for (int j = 0; j < set->n; j++) {
            const Agree *g = i == j ? NULL : pair_of(R, model, set->v[i], set->v[j]);
            fprintf(d, "%d %d ", i, j);
            dat_real(d, i == j ? 1.0 : g ? g->tau : NAN);
            fputc(' ', d);
            dat_real(d, g ? g->tau_lo : NAN);
            fputc(' ', d);
            dat_real(d, g ? g->tau_hi : NAN);
            if (g && g->students >= 0) fprintf(d, " %d ", g->students);
            else fputs(" ? ", d);
            dat_str(d, set->v[i]);
            fputc(' ', d);
            dat_str(d, set->v[j]);
            fputc('\n', d);
        }
}

/* Explicit tics of an axis: setting i at i. */
static void setting_tics(Buf *b, const char *axis, const char *opts, const Names *set) {
    buf_add(b, "set %stics %s (", axis, opts);
    for (int i = 0; i < set->n; i++) buf_add(b, "%s", i ? ", " : ""), gp_str(b, set->v[i]), buf_add(b, " %d", i);
    buf_add(b, ")\n");
}

/* One panel: the settings as tics (row 0 at the top), the cells, their tau. */
static void matrix_panel(Buf *b, const char *name, int k, const char *model, const Names *set, const Names *metrics) {
    int n = set->n;
    const char *font = n > 12 ? " font \",7\"" : n > 6 ? " font \",9\"" : "";
    buf_add(b, "set title ");
    char t[400];
    if (metrics->n == 1) snprintf(t, sizeof t, "%s, metric %s", base_name(model), metrics->v[0]);
    else snprintf(t, sizeof t, "%s, several metrics (named in the settings)", base_name(model));
    gp_str(b, t);
    buf_add(b, "\nset xrange [-0.5:%d.5]\nset yrange [%d.5:-0.5]\nset size ratio -1\n", n - 1, n - 1);
    char opts[80];
    snprintf(opts, sizeof opts, "rotate by 30 right scale 0%s", font);
    setting_tics(b, "x", opts, set);
    snprintf(opts, sizeof opts, "scale 0%s", font);
    setting_tics(b, "y", opts, set);
    buf_add(b, "plot \"%s.dat\" index %d using 2:1:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette notitle, \\\n"
               "     \"\" index %d using 2:1:(sprintf(\"%%.2f\", $3)) with labels%s notitle\n",
            name, k, k, n > 8 ? " font \",8\"" : "");
}

int plot_rank_agreement(Report *R) {
    Artifact *a = agree_art(R, "rank_agreement", "Rank agreement between settings: Kendall's tau", 1, "pair",
                            "no two settings scored the same students: eval again with another calibration set, size or dtype");
    if (!a || a->note) return 0;
    Names models = {0};
    for (int i = 0; i < R->nagree; i++)
        if (!strcmp(R->agree[i].kind, "pair")) names_add(&models, R->agree[i].model);
    int np = models.n < MAX_PANELS ? models.n : MAX_PANELS, rc = 0;
    Names *set = xcalloc((size_t)np, sizeof *set), *metrics = xcalloc((size_t)np, sizeof *metrics);
    for (int k = 0; k < np; k++) model_settings(R, models.v[k], &set[k], &metrics[k]);
    char *path;
    FILE *d = out_open(R, a->name, ".dat", &path);
    Buf body = {0};
    if (!d) { rc = ERR_OUTPUT; goto done; }
    fprintf(d, "# rank_agreement.dat (unetlab report): Kendall's tau between the rankings of the candidates under two\n"
               "# settings, agree run %" PRId64 ". Blocks (gnuplot index 0, 1, ...), one a model, are separated by two blank\n"
               "# lines: every cell of its matrix, row by row. tau 1 on the diagonal (a setting against itself); tau_lo,\n"
               "# tau_hi: its 95%% bootstrap interval; ? = agree paired none.\n"
               "# row column tau tau_lo tau_hi students \"row setting\" \"column setting\"\n",
            R->agree_run);
    for (int k = 0; k < np; k++) matrix_block(d, R, k, models.v[k], &set[k]);
    if ((rc = out_close(R, d, path))) goto done;
    ids_add(&a->runs, R->agree_run);
    Buf cap = {0};
    buf_add(&cap, "Kendall's tau-b between the rankings of the candidates (the students both settings scored) under "
                  "each two settings of agree run %" PRId64 " (1: the same ranking, 0: unrelated, -1: reversed); a "
                  "setting is a model's students scored on one calibration set in one dtype. The diagonal is 1 by "
                  "definition; blank: not paired.", R->agree_run);
    if (models.n > np) buf_add(&cap, " Only the first %d of %d models are drawn.", np, models.n);
    buf_add(&cap, " The table gives the bootstrap intervals, Spearman's rho and the top-k overlaps.");
    a->caption = cap.s;
    char title[200];
    snprintf(title, sizeof title, "Rank agreement between settings (Kendall's tau), agree run %" PRId64, R->agree_run);
    buf_add(&body, "reset\nset multiplot layout %d,%d title ", np > 2 ? 2 : 1, np > 1 ? 2 : 1);
    gp_str(&body, title);
    buf_add(&body, "\nset palette defined (-1 \"#d6604d\", 0 \"#f7f7f7\", 1 \"#4393c3\")\nset cbrange [-1:1]\n"
                   "set cblabel \"Kendall's tau\"\nunset key\n");
    for (int k = 0; k < np; k++) matrix_panel(&body, a->name, k, models.v[k], &set[k], &metrics[k]);
    buf_add(&body, "unset multiplot\n");
    rc = gp_write(R, a, body.s);
    if (!rc) rc = gp_run(R, a);
done:
    for (int k = 0; k < np; k++) names_free(&set[k]), names_free(&metrics[k]);
    free(set);
    free(metrics);
    names_free(&models);
    free(body.s);
    return rc;
}
