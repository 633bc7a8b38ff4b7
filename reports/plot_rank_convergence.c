/* plot_rank_convergence: rank_convergence, how many calibration samples a
 * ranking needs: Kendall's tau between the candidates' ranking on a
 * setting's first n samples and on all of them, against n (log2 axis), one
 * line per setting, from the latest agree run's 'convergence' rows. Each line
 * ends at n = all samples, where tau is 1 by definition (a hollow point, not
 * a stored row). Tested by tests/test_report.c (rows against SQL of
 * agree_results). */
#include "report_int.h"
#include "err.h"
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Block k: the rows of line key, then the end point (all samples, tau 1). */
static void line_block(FILE *d, const Report *R, int k, const Agree *s) {
    const Agree *last = NULL;
    for (int i = 0; i < R->nagree; i++) {
        const Agree *g = &R->agree[i];
        if (strcmp(g->kind, "convergence") || !agree_in_series(g, s)) continue;
        if (!last) fprintf(d, "%s# block %d: model %s, setting %s (metric %s)\n", k ? "\n\n" : "", k, g->model,
                           g->setting_a, g->metric);
        fprintf(d, "%d %d ", g->samples, g->of_samples);
        dat_real(d, g->tau);
        fputc(' ', d);
        dat_real(d, g->rho);
        fputc(' ', d);
        dat_real(d, g->top10);
        fprintf(d, " %d 1\n", g->students);
        last = g;
    }
    if (last && last->of_samples > last->samples) fprintf(d, "%d %d 1 1 1 %d 0\n", last->of_samples, last->of_samples, last->students);
}

int plot_rank_convergence(Report *R) {
    Artifact *a = agree_art(R, "rank_convergence", "How many samples a ranking needs: tau of the first n samples against all", 1,
                            "convergence", "no setting has two students scored on more than one sample");
    if (!a || a->note) return 0;
    const Agree **lines;
    int nmodels, nlines = agree_series(R, "convergence", &lines, &nmodels);
    char *path;
    int rc = 0;
    Buf body = {0}, plot = {0};
    FILE *d = out_open(R, a->name, ".dat", &path);
    if (!d) { rc = ERR_OUTPUT; goto done; }
    fprintf(d, "# rank_convergence.dat (unetlab report): Kendall's tau, Spearman's rho and the top-10 overlap between the\n"
               "# ranking on a setting's first n samples and on all of them, agree run %" PRId64 ". Blocks (gnuplot index\n"
               "# 0, 1, ...), one a setting, are separated by two blank lines. stored 0: the end point, all samples\n"
               "# against themselves (1 by definition, not a stored row).\n"
               "# samples of_samples tau rho top10 students stored\n",
            R->agree_run);
    for (int k = 0; k < nlines; k++) line_block(d, R, k, lines[k]);
    if ((rc = out_close(R, d, path))) goto done;
    ids_add(&a->runs, R->agree_run);
    a->caption = xasprintf("Kendall's tau-b between the ranking of the candidates on the first n calibration samples of a "
                           "setting and on all of them, for n = 1, 2, 4, ... (agree run %" PRId64 "): how many samples "
                           "a ranking needs. One line per setting; the hollow end point (n = all) is 1 by definition.",
                           R->agree_run);
    for (int k = 0; k < nlines; k++) {
        char *title = agree_series_title(lines[k], nmodels > 1);
        buf_add(&plot, "%s\"%s.dat\" index %d using 1:3 with linespoints pt 7 lw 2 lc %d title ", k ? ", \\\n     " : "plot ",
                a->name, k, k + 1);
        gp_str(&plot, title);
        buf_add(&plot, ", \\\n     \"\" index %d using 1:($7 == 0 ? $3 : NaN) with points pt 6 ps 2 lc %d notitle", k, k + 1);
        free(title);
    }
    gp_title(&body, a->title);
    buf_add(&body, "\nset logscale x 2\nset xlabel \"calibration samples (the setting's first n; log scale)\"\n"
                   "set ylabel \"Kendall's tau against all samples\"\nset yrange [*:1.05]\nset offsets graph 0.05, graph 0.05, 0, 0\n"
                   "set grid\nset key bottom right\n%s\n", plot.s);
    rc = gp_write(R, a, body.s);
    if (!rc) rc = gp_run(R, a);
done:
    free(lines);
    free(body.s);
    free(plot.s);
    return rc;
}
