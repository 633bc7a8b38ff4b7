/* plot_additivity: additivity, where a schedule's greedy assumption breaks:
 * each stage's measured loss (the student with every removal so far)
 * against the loss predicted by adding the removals' increases when each
 * was scored alone to the base's, from the latest agree run's 'additivity'
 * rows. One series per schedule, points labelled with their stage, and the
 * diagonal measured = predicted; both axes alike (log scale when the losses
 * span more than a decade). Tested by tests/test_report.c (rows against SQL
 * of agree_results). */
#include "report_int.h"
#include "err.h"
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Block k: the stages of schedule s (its first row); lo, hi widened to its positive losses. */
static void series_block(FILE *d, const Report *R, int k, const Agree *s, double *lo, double *hi) {
    int first = 1;
    for (int i = 0; i < R->nagree; i++) {
        const Agree *g = &R->agree[i];
        if (strcmp(g->kind, "additivity") || !agree_in_series(g, s)) continue;
        if (first) fprintf(d, "%s# block %d: model %s, %s\n", k ? "\n\n" : "", k, g->model, g->setting_a);
        first = 0;
        fprintf(d, "%d ", g->stage);
        dat_real(d, g->measured);
        fputc(' ', d);
        dat_real(d, g->predicted);
        fputc(' ', d);
        dat_real(d, g->measured / g->predicted);
        fputc(' ', d);
        dat_str(d, g->candidate);
        fputc('\n', d);
        const double v[2] = {g->measured, g->predicted};
        for (int j = 0; j < 2; j++)
            if (isfinite(v[j]) && v[j] > 0) *lo = fmin(*lo, v[j]), *hi = fmax(*hi, v[j]);
    }
}

/* The same range on both axes, so that the diagonal is the diagonal. */
static void square_ranges(Buf *b, double lo, double hi, int logs) {
    if (!isfinite(lo)) { buf_add(b, "set xrange [0:*]\nset yrange [0:*]\n"); return; }
    double a = logs ? lo / 1.3 : fmax(0, lo - 0.1 * (hi - lo) - 0.05 * hi), z = logs ? hi * 1.3 : hi + 0.1 * (hi - lo) + 0.05 * hi;
    buf_add(b, "%sset xrange [%.9g:%.9g]\nset yrange [%.9g:%.9g]\n", logs ? "set logscale xy\n" : "", a, z, a, z);
}

int plot_additivity(Report *R) {
    Artifact *a = agree_art(R, "additivity", "Additivity: each stage's measured loss against the sum of single removals", 1,
                            "additivity", "no schedule in the store, or none with a stage");
    if (!a || a->note) return 0;
    const Agree **series;
    int nmodels, nseries = agree_series(R, "additivity", &series, &nmodels);
    char *path;
    int rc = 0;
    Buf body = {0}, plot = {0};
    double lo = INFINITY, hi = -INFINITY;
    FILE *d = out_open(R, a->name, ".dat", &path);
    if (!d) { rc = ERR_OUTPUT; goto done; }
    fprintf(d, "# additivity.dat (unetlab report): each schedule stage's measured loss (block NMSE of the student with\n"
               "# every removal so far) and the predicted one (the base's plus each removal's increase when scored\n"
               "# alone), agree run %" PRId64 ". Blocks (gnuplot index 0, 1, ...), one a schedule, are separated by two\n"
               "# blank lines. ? = absent.\n# stage measured predicted measured/predicted \"removed at the stage\"\n",
            R->agree_run);
    for (int k = 0; k < nseries; k++) series_block(d, R, k, series[k], &lo, &hi);
    if ((rc = out_close(R, d, path))) goto done;
    ids_add(&a->runs, R->agree_run);
    int logs = isfinite(lo) && hi / lo > 10;
    a->caption = xasprintf("For each schedule stage (labelled by its number; agree run %" PRId64 "): the measured loss "
                           "(block NMSE) of the student with every removal so far against the loss predicted by adding "
                           "each removal's increase, scored alone, to the base's. On the dashed diagonal the removals add "
                           "up; below it they hurt less together than apart, above it more.%s",
                           R->agree_run, logs ? " Both axes on a log scale." : "");
    for (int k = 0; k < nseries; k++) {
        char *title = agree_series_title(series[k], nmodels > 1);
        buf_add(&plot, "%s\"%s.dat\" index %d using 3:2 with points pt 7 ps 1.5 lc %d title ", k ? ", \\\n     " : "plot ",
                a->name, k, k + 1);
        gp_str(&plot, title);
        buf_add(&plot, ", \\\n     \"\" index %d using 3:2:(sprintf(\"%%d\", $1)) with labels offset 1.2,0.8 tc lt %d notitle", k,
                k + 1);
        free(title);
    }
    gp_title(&body, a->title);
    buf_add(&body, "\nset size square\nset grid\nset key top left Left reverse box opaque\nset xlabel ");
    gp_str(&body, logs ? "predicted loss: base + single removals' increases (log scale)" : "predicted loss: base + single removals' increases");
    buf_add(&body, "\nset ylabel ");
    gp_str(&body, logs ? "measured loss, block NMSE (log scale)" : "measured loss, block NMSE");
    buf_add(&body, "\n");
    square_ranges(&body, lo, hi, logs);
    buf_add(&body, "%s, \\\n     x with lines dt 2 lc rgb \"gray40\" title \"measured = predicted\"\n", plot.s);
    rc = gp_write(R, a, body.s);
    if (!rc) rc = gp_run(R, a);
done:
    free(series);
    free(body.s);
    free(plot.s);
    return rc;
}
