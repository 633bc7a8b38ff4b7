/* plot_timestep_bins: timestep_bins, is a removal harmless at high noise
 * harmless at low noise? Each candidate's score in each timestep bin (bin b:
 * timesteps 100b to 100b+99) as a heatmap, for the setting of the
 * latest agree run with the most bins (the first of equals): candidates on the y axis, the
 * MAX_ROWS with the lowest mean over the bins (the ones a schedule would
 * pick) best first, the bins present on the x axis, each labelled with its
 * ranking's tau against all bins ('bin' rows). The teacher itself ("(none)",
 * score 0) is left out. Colours on a log scale when the scores span more than
 * a decade. Tested by tests/test_report.c (cells against SQL). */
#include "report_int.h"
#include "err.h"
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { NBIN = 10, MAX_ROWS = 40, MAX_TIC = 60 };

typedef struct {
    const char *model, *setting, *metric;
    Names cand;
    double *score;            /* [candidate][bin], NaN where absent */
    double *mean;             /* over the bins present; INFINITY when one is not finite */
    int has[NBIN];            /* which bins have scores */
    double tau[NBIN];         /* each bin's ranking against all bins' */
    int samples[NBIN];
} Heat;

static int in_setting(const Agree *g, const Heat *h) {
    return !strcmp(g->model, h->model) && !strcmp(g->setting_a, h->setting);
}

/* The setting's scores, bins and taus from the agree rows. */
static void heat_fill(const Report *R, Heat *h) {
    for (int b = 0; b < NBIN; b++) h->tau[b] = NAN, h->samples[b] = -1;
    for (int i = 0; i < R->nagree; i++) {
        const Agree *g = &R->agree[i];
        if (!strcmp(g->kind, "bin_score") && in_setting(g, h) && strcmp(g->candidate, "(none)")) names_add(&h->cand, g->candidate);
    }
    h->score = xmalloc((size_t)(h->cand.n ? h->cand.n : 1) * NBIN * sizeof *h->score);
    for (int k = 0; k < h->cand.n * NBIN; k++) h->score[k] = NAN;
    for (int i = 0; i < R->nagree; i++) {
        const Agree *g = &R->agree[i];
        if (!in_setting(g, h) || g->bin < 0 || g->bin >= NBIN) continue;
        if (!strcmp(g->kind, "bin")) h->tau[g->bin] = g->tau, h->samples[g->bin] = g->samples;
        int c = strcmp(g->kind, "bin_score") ? -1 : names_find(&h->cand, g->candidate);
        if (c >= 0) h->score[c * NBIN + g->bin] = g->measured, h->has[g->bin] = 1;
    }
    h->mean = xmalloc((size_t)(h->cand.n ? h->cand.n : 1) * sizeof *h->mean);
    for (int c = 0; c < h->cand.n; c++) {
        double s = 0;
        int n = 0;
        for (int b = 0; b < NBIN; b++)
            if (h->has[b]) s += isfinite(h->score[c * NBIN + b]) ? h->score[c * NBIN + b] : INFINITY, n++;
        h->mean[c] = n ? s / n : INFINITY;
    }
}

static const Heat *g_heat;
static int cmp_mean(const void *pa, const void *pb) {
    double x = g_heat->mean[*(const int *)pa], y = g_heat->mean[*(const int *)pb];
    if (x != y) return x < y ? -1 : 1;
    return *(const int *)pa - *(const int *)pb; /* stored order breaks ties */
}

/* The rows drawn: candidate indices, lowest mean first, at most MAX_ROWS. */
static int heat_rows(const Heat *h, int *ord) {
    for (int c = 0; c < h->cand.n; c++) ord[c] = c;
    g_heat = h;
    qsort(ord, (size_t)h->cand.n, sizeof *ord, cmp_mean);
    return h->cand.n < MAX_ROWS ? h->cand.n : MAX_ROWS;
}

/* The tics of both axes: bins (with their tau against all bins) and candidates. */
static void heat_tics(Buf *b, const Heat *h, const int *ord, int nrow) {
    int ncol = 0;
    for (int bin = 0; bin < NBIN; bin++) ncol += h->has[bin];
    buf_add(b, "set xtics scale 0%s (", ncol > 7 ? " font \",7\"" : ncol > 5 ? " font \",8\"" : ""); /* labels side by side */
    for (int bin = 0, col = 0; bin < NBIN; bin++) {
        if (!h->has[bin]) continue;
        char t[80];
        if (isfinite(h->tau[bin])) snprintf(t, sizeof t, "%d-%d\ntau %.2f", 100 * bin, 100 * bin + 99, h->tau[bin]);
        else snprintf(t, sizeof t, "%d-%d", 100 * bin, 100 * bin + 99);
        buf_add(b, "%s", col ? ", " : "");
        gp_str(b, t);
        buf_add(b, " %d", col++);
    }
    buf_add(b, ")\nset ytics scale 0%s (", nrow > 30 ? " font \",7\"" : nrow > 20 ? " font \",9\"" : "");
    for (int r = 0; r < nrow; r++) {
        const char *c = h->cand.v[ord[r]];
        char t[MAX_TIC + 8];
        if (strlen(c) > MAX_TIC) snprintf(t, sizeof t, "%.*s...", MAX_TIC - 3, c); /* long combined removals */
        else snprintf(t, sizeof t, "%s", c);
        buf_add(b, "%s", r ? ", " : "");
        gp_str(b, t);
        buf_add(b, " %d", r);
    }
    buf_add(b, ")\n");
}

/* Colour tics at 1, 2 and 5 x 10^k from lo to hi: gnuplot's own log tics
 * label only the powers of ten, often just one on a scale of a decade or two. */
static void log_cbtics(Buf *b, double lo, double hi) {
    static const double STEP[3] = {1, 2, 5};
    buf_add(b, "set cbtics (");
    int n = 0;
    for (double dec = pow(10, floor(log10(lo))); dec <= hi && n < 40; dec *= 10)
        for (int k = 0; k < 3; k++)
            if (dec * STEP[k] >= lo && dec * STEP[k] <= hi) buf_add(b, "%s\"%g\" %g", n++ ? ", " : "", dec * STEP[k], dec * STEP[k]);
    buf_add(b, ")\n");
}

static int heat_dat(Report *R, Artifact *a, const Heat *h, const int *ord, int nrow, double *lo, double *hi) {
    char *path;
    FILE *d = out_open(R, a->name, ".dat", &path);
    if (!d) return ERR_OUTPUT;
    fprintf(d, "# timestep_bins.dat (unetlab report): each candidate's score (%s) per timestep bin (bin b: timesteps\n"
               "# 100b to 100b+99), agree run %" PRId64 ", of\n# setting %s of model %s.\n"
               "# The %d of %d candidates with the lowest mean over the bins, best first; ? = absent or not finite.\n"
               "# row column bin score \"candidate\"\n",
            h->metric, R->agree_run, h->setting, h->model, nrow, h->cand.n);
    *lo = INFINITY, *hi = -INFINITY;
    for (int r = 0; r < nrow; r++)
        for (int bin = 0, col = 0; bin < NBIN; bin++) {
            if (!h->has[bin]) continue;
            double v = h->score[ord[r] * NBIN + bin];
            if (isfinite(v) && v > 0) *lo = fmin(*lo, v), *hi = fmax(*hi, v);
            fprintf(d, "%d %d %d ", r, col++, bin);
            dat_real(d, v);
            fputc(' ', d);
            dat_str(d, h->cand.v[ord[r]]);
            fputc('\n', d);
        }
    return out_close(R, d, path);
}

int plot_timestep_bins(Report *R) {
    Artifact *a = agree_art(R, "timestep_bins", "Each candidate's score per timestep bin", 1, "bin_score",
                            "no setting has samples in two timestep bins");
    if (!a || a->note) return 0;
    Heat h = {0};
    const Agree **settings;
    int nmodels, nsettings = agree_series(R, "bin_score", &settings, &nmodels);
    int most = 0; /* drawn: the setting with the most timestep bins (its 'bin' rows), the first of equals */
    for (int k = 0; k < nsettings; k++) {
        const Agree *g = settings[k];
        int bins = 0;
        for (int j = 0; j < R->nagree; j++) {
            const Agree *b = &R->agree[j];
            bins += !strcmp(b->kind, "bin") && agree_in_series(b, g) && !strcmp(b->metric, g->metric);
        }
        if (bins > most) most = bins, h.model = g->model, h.setting = g->setting_a, h.metric = g->metric;
    }
    free(settings);
    heat_fill(R, &h);
    int *ord = xmalloc((size_t)(h.cand.n ? h.cand.n : 1) * sizeof *ord), nrow = heat_rows(&h, ord), ncol = 0, rc = 0;
    for (int b = 0; b < NBIN; b++) ncol += h.has[b];
    Buf body = {0};
    double lo, hi;
    if (!nrow || !ncol) {
        art_skip(R, a, "the first setting with per-bin scores has none of a candidate other than the teacher");
        goto done;
    }
    if ((rc = heat_dat(R, a, &h, ord, nrow, &lo, &hi))) goto done;
    ids_add(&a->runs, R->agree_run);
    int logcb = isfinite(lo) && hi / lo > 10; /* losses spanning decades would leave all but the worst one colour */
    Buf cap = {0};
    buf_add(&cap, "The score (%s, lower is better) of each candidate on the calibration samples of each timestep bin "
                  "(bin b: timesteps 100b to 100b+99; only bins with samples), setting %s of %s, agree run %" PRId64
                  ". The %d of %d candidates with the lowest mean over the bins, best at the top; the teacher itself is "
                  "left out. Under each bin: Kendall's tau between that bin's ranking and all bins'.",
            h.metric, h.setting, h.model, R->agree_run, nrow, h.cand.n);
    if (logcb) buf_add(&cap, " Colours on a log scale; a score of 0 or below is blank.");
    if (nsettings > 1)
        buf_add(&cap, " Drawn for the one of %d settings with the most bins; the table has every setting's bin taus.",
                nsettings);
    a->caption = cap.s;
    char title[600];
    snprintf(title, sizeof title, "Score (%s) per timestep bin: %s, setting %s\n%d of %d candidates, lowest mean first",
             h.metric, base_name(h.model), h.setting, nrow, h.cand.n);
    gp_title(&body, title);
    /* the bins' tics are two lines: room for them under the axis, and the label under them */
    buf_add(&body, "\nset xrange [-0.5:%d.5]\nset yrange [%d.5:-0.5]\nset bmargin 6\n"
                   "set xlabel \"timesteps (under each bin: its ranking's tau against all bins')\" offset 0,-1\n",
            ncol - 1, nrow - 1);
    heat_tics(&body, &h, ord, nrow);
    buf_add(&body, "set palette defined (0 \"#fde725\", 0.5 \"#21918c\", 1 \"#440154\")\n");
    if (logcb) buf_add(&body, "set logscale cb\nset cbrange [%.9g:%.9g]\n", lo, hi), log_cbtics(&body, lo, hi);
    else buf_add(&body, "set cbrange [0:*]\n");
    buf_add(&body, "set cblabel ");
    char cbl[120];
    snprintf(cbl, sizeof cbl, "%s%s", h.metric, logcb ? " (log scale)" : "");
    gp_str(&body, cbl);
    buf_add(&body, "\nunset key\nplot \"%s.dat\" using 2:1:(0.5):(0.5):(%s) with boxxyerror fs solid 1.0 noborder fc palette\n",
            a->name, logcb ? "$4 > 0 ? $4 : NaN" : "$4");
    rc = gp_write(R, a, body.s);
    if (!rc) rc = gp_run(R, a);
done:
    names_free(&h.cand);
    free(h.score);
    free(h.mean);
    free(ord);
    free(body.s);
    return rc;
}
