/* plot_loss_saving: loss_vs_saving, every candidate the latest schedule
 * scored (schedule_scores, all stages): its loss increase over the stage's
 * start against what it saves: milliseconds (ms_saved, predicted from the
 * teacher's profile or measured, as the stored profile says; no spread, so no
 * error bars), or parameters when the schedule scored without latency; with
 * the Pareto front. The x axis starts at 0: a negative saving (a removal
 * timed slower, noise) is left out and counted in the caption. Hollow points
 * when the schedule's profile was unstable. Tested by tests/test_report.c. */
#include "report_int.h"
#include "err.h"
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    double x, y;
    int stage, chosen;
} Pt;

static int cmp_pt_x_desc(const void *pa, const void *pb) {
    const Pt *a = pa, *b = pb;
    if (a->x != b->x) return a->x > b->x ? -1 : 1;
    return (a->y > b->y) - (a->y < b->y);
}

/* The front: the min loss increase among the candidates saving at least x, by saving (descending). */
static int pareto(const Pt *p, int n, Pt *front) {
    Pt *q = xmalloc((size_t)n * sizeof *q);
    memcpy(q, p, (size_t)n * sizeof *q);
    qsort(q, (size_t)n, sizeof *q, cmp_pt_x_desc);
    int nf = 0;
    double best = INFINITY;
    for (int i = 0; i < n; i++)
        if (q[i].y < best) { best = q[i].y; front[nf++] = q[i]; }
    free(q);
    return nf;
}

static void dat_pt(FILE *d, const Pt *p) {
    dat_real(d, p->x);
    fputc(' ', d);
    dat_real(d, p->y);
    fprintf(d, " %d %d\n", p->stage, p->chosen);
}

int plot_loss_saving(Report *R) {
    Artifact *a = art_new(R, "loss_vs_saving", "Loss increase vs saving of every candidate scored", 1);
    if (!R->latest || !R->nscores) {
        art_skip(R, a, R->latest ? "the latest schedule has no candidate scores" : "no schedule in the store (run unetlab schedule)");
        return 0;
    }
    const Sched *sc = R->latest;
    int by_ms = 1;
    for (int i = 0; i < R->nscores; i++) by_ms &= !isnan(R->scores[i].ms_saved);
    Pt *p = xmalloc((size_t)R->nscores * sizeof *p);
    int n = 0, negative = 0;
    double xmax = 0;
    for (int i = 0; i < R->nscores; i++) {
        const Score *s = &R->scores[i];
        double x = by_ms ? s->ms_saved : s->has_params_saved ? (double)s->params_saved : NAN;
        if (!isfinite(x) || !isfinite(s->increase)) continue;
        if (x < 0) { negative++; continue; }
        p[n++] = (Pt){x, s->increase, s->stage, s->chosen};
        xmax = fmax(xmax, x);
    }
    if (!n) {
        art_skip(R, a, "the latest schedule's scores hold no finite loss increase and saving of 0 or more");
        free(p);
        return 0;
    }
    char e[512], score[64], xl[700], noise[300];
    const char *src = sched_ms_source(sc);
    sched_engine(R, sc, e, sizeof e);
    if (by_ms) snprintf(xl, sizeof xl, "ms saved, %s (%s; no spread)", src, e);
    else snprintf(xl, sizeof xl, "parameters saved (ms_saved absent from this schedule's scores: it scored without latency)");
    Pt *front = xmalloc((size_t)n * sizeof *front);
    int nf = pareto(p, n, front);
    char *path;
    FILE *d = out_open(R, a->name, ".dat", &path);
    if (!d) { free(p); free(front); return ERR_OUTPUT; }
    fprintf(d, "# loss_vs_saving.dat (unetlab report): schedule %" PRId64 " of %s, every candidate of every stage.\n"
               "# x = %s%s; y = loss increase over the stage's start (block NMSE).\n"
               "# Left out: %d candidate%s with a negative saving.%s\n"
               "# Blocks: one per stage (columns: saving increase stage chosen), then the Pareto front, then the chosen.\n",
            sc->id, sc->spec, by_ms ? "ms_saved, " : "params_saved", by_ms ? src : "", negative, negative == 1 ? "" : "s",
            sc->unstable ? " The schedule's profile was judged unstable." : "");
    Buf plot = {0}, body = {0};
    int block = 0, maxstage = 0;
    for (int i = 0; i < n; i++) maxstage = p[i].stage > maxstage ? p[i].stage : maxstage;
    int many = maxstage > 8; /* beyond a legend's worth of stages, colour by stage */
    const char *unst = sc->unstable ? " (unstable profile)" : "";
    int pt = sc->unstable ? 6 : 7;
    for (int stg = 0; stg <= maxstage; stg++) {
        int m = 0;
        for (int i = 0; i < n; i++) m += many || p[i].stage == stg;
        if (!m) continue;
        fprintf(d, "%s# block %d: %s\n", block ? "\n\n" : "", block, many ? "every stage" : "stage");
        if (!many) fprintf(d, "# stage %d\n", stg);
        for (int i = 0; i < n; i++)
            if (many || p[i].stage == stg) dat_pt(d, &p[i]);
        if (many)
            buf_add(&plot, "plot \"%s.dat\" index %d using 1:2:3 with points pt %d ps 1.1 lc palette "
                           "title \"candidates (colour: stage)%s\"", a->name, block, pt, unst);
        else
            buf_add(&plot, "%s\"%s.dat\" index %d using 1:2 with points pt %d ps 1.1 lc %d title \"stage %d candidates%s\"",
                    plot.n ? ", \\\n     " : "plot ", a->name, block, pt, stg, stg, unst);
        block++;
        if (many) break;
    }
    fprintf(d, "\n\n# block %d: Pareto front (min loss increase for at least that saving), by saving\n", block);
    for (int i = nf - 1; i >= 0; i--) dat_pt(d, &front[i]);
    buf_add(&plot, ", \\\n     \"\" index %d using 1:2 with fsteps lw 2 lc rgb \"black\" "
                   "title \"Pareto front: min loss increase for at least that saving\"", block++);
    int nch = 0;
    for (int i = 0; i < n; i++) nch += p[i].chosen;
    if (nch) {
        fprintf(d, "\n\n# block %d: the candidates each stage chose\n", block);
        for (int i = 0; i < n; i++)
            if (p[i].chosen) dat_pt(d, &p[i]);
        buf_add(&plot, ", \\\n     \"\" index %d using 1:2 with points pt 6 ps 2.6 lw 2 lc rgb \"black\" title \"chosen\"", block++);
    }
    free(p);
    free(front);
    int rc = out_close(R, d, path);
    if (rc) { free(plot.s); return rc; }
    for (int i = 0; i < R->nstages; i++) ids_add(&a->runs, R->stages[i].run_id);
    ids_add(&a->runs, sc->run_id);
    a->engine = by_ms ? xstrdup(e) : NULL;
    Buf cap = {0};
    buf_add(&cap, "Schedule %" PRId64 " of %s (score %s): every candidate of every stage, its loss increase over the "
                  "stage's start against what it saves (%s), with the Pareto front over all of them.",
            sc->id, sc->spec, sched_score_name(sc, score, sizeof score), by_ms ? "milliseconds" : "parameters");
    if (by_ms)
        buf_add(&cap, " Milliseconds %s by the schedule (%s), without error bars: they have no spread.%s%s", src, e,
                sched_noise(sc, noise, sizeof noise), sc->unstable ? " Hollow points: that profile." : "");
    else
        buf_add(&cap, " No milliseconds: the schedule scored without latency, so the x axis is parameters saved.");
    if (negative)
        buf_add(&cap, " Left out: %d candidate%s with a negative saving (slower without the module: noise).", negative,
                negative == 1 ? "" : "s");
    a->caption = cap.s;
    char title[700];
    snprintf(title, sizeof title, "Loss increase vs saving: schedule %" PRId64 " of %s (score %s), stages 1-%d%s", sc->id,
             base_name(sc->spec), score, maxstage, unst);
    gp_title(&body, title);
    buf_add(&body, "\nset xlabel ");
    gp_str(&body, xl);
    buf_add(&body, "\nset ylabel \"loss increase (block NMSE over the stage's start)\"\nset grid\nset cblabel \"stage\"\n"
                   "set xrange [0:*]\nset offsets 0, graph 0.03, graph 0.05, 0\n");
    if (!by_ms) gp_si_tics(&body, "x", xmax * 1.03);
    buf_add(&body, "set bmargin %d\nset key at screen 0.03,0.01 left bottom Left reverse vertical\n%s\n", 4 + block, plot.s);
    rc = gp_write(R, a, body.s);
    if (!rc) rc = gp_run(R, a);
    free(plot.s);
    free(body.s);
    return rc;
}
