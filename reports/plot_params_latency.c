/* plot_params_latency: params_vs_latency, UNet parameters against forward
 * latency, with two kinds of milliseconds never in one series:
 *  - measured here: every model and student profiled with --db (db_forwards),
 *    the median of the untraced forwards with a p10-p90 error bar (in stores
 *    without untraced rows the traced forwards, labelled "(traced)"), one
 *    series per measurement setup; unstable measurements hollow, in a series
 *    of their own titled "(unstable)";
 *  - the schedules' stage milliseconds (schedule_stages.ms), "predicted
 *    (schedule)" or "measured (schedule)" as the stored profile says, without
 *    error bars (they have no spread); hollow when that profile was unstable;
 *    stage labels thinned where they would overlap.
 * Tested by tests/test_report.c (.dat values against SQL of the '(untraced)'
 * rows; error bars and hollow points in the .gp). */
#include "report_int.h"
#include "err.h"
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Filled and hollow point types of a series (pngcairo and svg: 7/6 circles,
 * 5/4 squares, 9/8 triangles). */
enum { PT_PLAN = 7, PT_PLAN_OPEN = 6, PT_MODEL = 5, PT_MODEL_OPEN = 4, PT_STAGE = 9, PT_STAGE_OPEN = 8 };

/* Two stage labels closer than this (fractions of the axes) would overlap:
 * a label is a short number, about 3% of the width and 4% of the height. */
static const double LABEL_W = 0.035, LABEL_H = 0.04;

typedef struct {
    Report *R;
    Artifact *a;
    FILE *d;
    Buf plot;                 /* the plot command's clauses */
    int block;                /* the next gnuplot index */
    double xmin, xmax, ymax;  /* of everything drawn (x: ms, y: params) */
    int logx;
} Ctx;

static void clause(Ctx *c, const char *fmt_using, int pt, const char *ps, int lc, const char *style, const char *title) {
    buf_add(&c->plot, "%s\"%s.dat\" index %d using %s with %s pt %d ps %s lc %d title ", c->plot.n ? ", \\\n     " : "plot ",
            c->a->name, c->block, fmt_using, style, pt, ps, lc);
    gp_str(&c->plot, title);
}

/* The latest row per (model, plan, configuration) with a known size and latency: use[i]. */
static void pick_latest(const Report *R, int *use) {
    for (int i = R->nfw - 1; i >= 0; i--) {
        const Fwd *f = &R->fw[i];
        if (f->plan_id ? f->plan_params <= 0 : f->model_params <= 0) continue;
        if (!isfinite(fwd_lat(f).ms)) continue;
        int dup = 0;
        for (int k = i + 1; k < R->nfw && !dup; k++)
            dup = use[k] && R->fw[k].model_id == f->model_id && R->fw[k].plan_id == f->plan_id && fwd_same_config(f, &R->fw[k]);
        use[i] = !dup;
    }
}

static int64_t fwd_params(const Fwd *f) { return f->plan_id ? f->plan_params : f->model_params; }

/* One block of measured forwards: the rows of configuration g, students (who 0) or whole models (who 1). */
static void measured_block(Ctx *c, const int *use, const Fwd *g, int who, int lc, int nth) {
    Report *R = c->R;
    int n = 0, nunst = 0, ntraced = 0;
    for (int i = 0; i < R->nfw; i++) {
        const Fwd *f = &R->fw[i];
        if (!use[i] || !fwd_same_config(f, g) || (who ? !!f->plan_id : !f->plan_id)) continue;
        n++;
        nunst += f->unstable;
        ntraced += fwd_lat(f).traced;
    }
    if (!n) return;
    char cfgname[256];
    snprintf(cfgname, sizeof cfgname, "batch %d, %dx%d px, %d tokens, %s", g->batch, g->height, g->width, g->tokens,
             g->dtype);
    fprintf(c->d, "%s# block %d: measured, %s, %s (engine %s, %s)\n", c->block ? "\n\n" : "", c->block,
            who ? "models" : "students (plans)", cfgname, g->engine, g->device);
    for (int i = 0; i < R->nfw; i++) {
        const Fwd *f = &R->fw[i];
        if (!use[i] || !fwd_same_config(f, g) || (who ? !!f->plan_id : !f->plan_id)) continue;
        Lat l = fwd_lat(f);
        ids_add(&c->a->runs, f->run_id);
        dat_real(c->d, l.ms);
        fputc(' ', c->d);
        dat_real(c->d, l.p10);
        fputc(' ', c->d);
        dat_real(c->d, l.p90);
        fprintf(c->d, " %" PRId64 " %d %d ", fwd_params(f), f->unstable, l.traced);
        char lab[300];
        if (who) snprintf(lab, sizeof lab, "%s%s", base_name(f->spec), l.traced ? " (traced)" : "");
        else snprintf(lab, sizeof lab, "plan %" PRId64 "%s", f->plan_id, l.traced ? " (traced)" : "");
        dat_str(c->d, lab);
        fputc('\n', c->d);
        double lo = isfinite(l.p10) ? fmin(l.p10, l.ms) : l.ms, hi = isfinite(l.p90) ? fmax(l.p90, l.ms) : l.ms;
        c->xmin = fmin(c->xmin, lo), c->xmax = fmax(c->xmax, hi), c->ymax = fmax(c->ymax, (double)fwd_params(f));
    }
    char title[500];
    snprintf(title, sizeof title, "measured %s: %s, engine %s; %s median, p10-p90", who ? "models" : "students (profile --plan)",
             cfgname, g->engine, ntraced == n ? "traced" : ntraced ? "untraced (labelled: traced)" : "untraced");
    const char *ps = who ? "2" : "1.3";
    if (n > nunst) clause(c, "($5==0?$1:NaN):($4/1e6):2:3", who ? PT_MODEL : PT_PLAN, ps, lc, "xerrorbars", title);
    if (nunst) {
        char t2[560];
        snprintf(t2, sizeof t2, "%s (unstable)", title);
        clause(c, "($5!=0?$1:NaN):($4/1e6):2:3", who ? PT_MODEL_OPEN : PT_PLAN_OPEN, ps, lc, "xerrorbars", t2);
    }
    if (who)
        buf_add(&c->plot, ", \\\n     \"\" index %d using 1:($4/1e6):7 with labels left offset char 1,%s tc lt %d notitle",
                c->block, nth % 2 ? "-0.9" : "0.9", lc);
    c->block++;
}

/* Where a point sits across and up the axes (0..1), for thinning labels. */
static double frac_x(const Ctx *c, double x) {
    if (!(c->xmax > c->xmin)) return 0; /* one point: nothing to keep apart across */
    if (c->logx) return (log(x) - log(c->xmin)) / (log(c->xmax) - log(c->xmin));
    return x / c->xmax;
}

/* One block of a schedule's stages (stage 0: the teacher). */
static void schedule_block(Ctx *c, const Sched *sc, const Stages *st, int lc) {
    int n = 0, last = 0;
    double *x = xmalloc((size_t)(st->n + 1) * sizeof *x), *y = xmalloc((size_t)(st->n + 1) * sizeof *y);
    int *stage = xmalloc((size_t)(st->n + 1) * sizeof *stage);
    double t0 = sched_stage0_ms(sc);
    if (isfinite(t0) && sc->model_params > 0) x[n] = t0, y[n] = (double)sc->model_params, stage[n++] = 0;
    for (int k = 0; k < st->n; k++)
        if (isfinite(st->v[k].ms)) x[n] = st->v[k].ms, y[n] = (double)st->v[k].params, stage[n++] = st->v[k].stage;
    char *keep = xmalloc((size_t)n + 1);
    double *fx = xmalloc((size_t)n * sizeof *fx + 1), *fy = xmalloc((size_t)n * sizeof *fy + 1);
    for (int k = 0; k < n; k++) fx[k] = frac_x(c, x[k]), fy[k] = c->ymax > 0 ? y[k] / c->ymax : 0;
    gp_thin_labels(fx, fy, n, LABEL_W, LABEL_H, keep);
    char e[512];
    sched_engine(c->R, sc, e, sizeof e);
    const char *src = sched_ms_source(sc);
    int shown = 0;
    for (int k = 0; k < n; k++) shown += keep[k];
    fprintf(c->d, "%s# block %d: schedule %" PRId64 " of %s, stages (stage 0: the teacher, from its profile);\n"
                  "# ms %s by the schedule (%s), no spread%s. Columns: ms params stage unstable \"label\" (\"\": label\n"
                  "# left out, %d of %d, where it would overlap another)\n",
            c->block ? "\n\n" : "", c->block, sc->id, sc->spec, src, e, sc->unstable ? "; its profile was unstable" : "",
            n - shown, n);
    for (int k = 0; k < n; k++) {
        dat_real(c->d, x[k]);
        fprintf(c->d, " %.0f %d %d \"", y[k], stage[k], sc->unstable);
        if (keep[k]) fprintf(c->d, "%d", stage[k]);
        fputs("\"\n", c->d);
        last = stage[k];
    }
    ids_add(&c->a->runs, sc->run_id);
    for (int k = 0; k < st->n; k++)
        if (isfinite(st->v[k].ms)) ids_add(&c->a->runs, st->v[k].run_id);
    char title[700];
    snprintf(title, sizeof title, "%s (schedule %" PRId64 " of %s): stages %d-%d, %s, calibration size, batch 1%s", src,
             sc->id, base_name(sc->spec), stage[0], last, e, sc->unstable ? " (unstable profile)" : "");
    clause(c, "1:($2/1e6)", sc->unstable ? PT_STAGE_OPEN : PT_STAGE, "1.3", lc, "linespoints lw 1.5", title);
    buf_add(&c->plot, ", \\\n     \"\" index %d using 1:($2/1e6):5 with labels left offset char 0.8,-0.5 tc lt %d notitle",
            c->block, lc);
    c->block++;
    free(x), free(y), free(stage), free(keep), free(fx), free(fy);
}

/* Whether a schedule's stages give any point. */
static int sched_points(const Sched *sc, const Stages *st) {
    int n = isfinite(sched_stage0_ms(sc)) && sc->model_params > 0;
    for (int k = 0; k < st->n; k++) n += isfinite(st->v[k].ms);
    return n;
}

int plot_params_latency(Report *R) {
    Artifact *a = art_new(R, "params_vs_latency",
                          "UNet parameters vs forward latency: measured here (untraced, p10-p90) and as schedules predict", 1);
    int *cfg = xmalloc((size_t)(R->nfw + 1) * sizeof *cfg), ncfg = 0, rc = 0;
    int *use = xcalloc((size_t)R->nfw + 1, sizeof *use);
    Stages *sst = xcalloc((size_t)R->nsched + 1, sizeof *sst);
    Ctx c = {R, a, NULL, {0}, 0, INFINITY, -INFINITY, 0, 0};
    Buf body = {0}, eng = {0};
    char *path = NULL, e[512];
    pick_latest(R, use);
    for (int i = 0; i < R->nfw; i++) {
        if (!use[i]) continue;
        int seen = 0;
        for (int k = 0; k < ncfg && !seen; k++) seen = fwd_same_config(&R->fw[cfg[k]], &R->fw[i]);
        if (!seen) cfg[ncfg++] = i;
    }
    for (int k = 0; k < ncfg; k++) { /* the axis names every engine and device */
        fwd_engine(&R->fw[cfg[k]], e, sizeof e);
        buf_add_once(&eng, e);
    }
    int nsched_pts = 0, nmeasured = 0, ntraced = 0, nunst = 0;
    for (int i = 0; i < R->nfw; i++)
        if (use[i]) nmeasured++, ntraced += fwd_lat(&R->fw[i]).traced, nunst += R->fw[i].unstable;
    for (int s = 0; s < R->nsched; s++) {
        if ((rc = store_stages(R, R->sched[s].id, &sst[s]))) goto done;
        int n = sched_points(&R->sched[s], &sst[s]);
        nsched_pts += n;
        if (n) {
            sched_engine(R, &R->sched[s], e, sizeof e);
            buf_add_once(&eng, e);
            for (int k = 0; k < sst[s].n; k++) c.ymax = fmax(c.ymax, (double)sst[s].v[k].params);
            c.ymax = fmax(c.ymax, (double)R->sched[s].model_params);
            for (int k = 0; k < sst[s].n; k++)
                if (isfinite(sst[s].v[k].ms)) c.xmin = fmin(c.xmin, sst[s].v[k].ms), c.xmax = fmax(c.xmax, sst[s].v[k].ms);
            double t0 = sched_stage0_ms(&R->sched[s]);
            if (isfinite(t0) && R->sched[s].model_params > 0) c.xmin = fmin(c.xmin, t0), c.xmax = fmax(c.xmax, t0);
        }
    }
    if (!ncfg && !nsched_pts) {
        art_skip(R, a, "no forward latency in the store (run unetlab profile --db) and no schedule stage with milliseconds");
        goto done;
    }
    if (!(c.d = out_open(R, a->name, ".dat", &path))) { rc = ERR_OUTPUT; goto done; }
    fprintf(c.d, "# params_vs_latency.dat (unetlab report): UNet parameters vs forward latency in ms.\n"
                 "# Blocks (gnuplot index 0, 1, ...) are separated by two blank lines. Measured blocks: columns\n"
                 "# ms p10 p90 params unstable traced \"label\": the median and p10, p90 of the untraced forwards\n"
                 "# (traced 0), or of the traced ones where the store has no untraced row (traced 1); unstable 1:\n"
                 "# judged too noisy. Schedule blocks: their own columns, said above each.\n");
    /* measured first, so that their extent is known before the schedules' labels are thinned */
    int lc = 1;
    for (int k = 0; k < ncfg; k++, lc++)
        for (int who = 0; who < 2; who++) measured_block(&c, use, &R->fw[cfg[k]], who, lc, k);
    /* sizes and batches span decades of milliseconds: a log axis keeps the small ones apart */
    c.logx = c.xmin > 0 && c.xmax / c.xmin > 10;
    for (int s = 0; s < R->nsched; s++)
        if (sched_points(&R->sched[s], &sst[s])) schedule_block(&c, &R->sched[s], &sst[s], lc++);
    rc = out_close(R, c.d, path);
    c.d = NULL;
    if (rc) goto done;
    a->engine = xstrdup(eng.s);
    Buf cap = {0};
    buf_add(&cap, "Measured here: every student profiled with --plan and every whole model (labelled) at each measured "
                  "size, the median of its untraced forwards with a p10-p90 error bar");
    if (ntraced)
        buf_add(&cap, "; labelled (traced): %d of %d from stores without untraced rows, the traced forwards (every module "
                      "timed), slower by the tracing overhead", ntraced, nmeasured);
    if (nunst) buf_add(&cap, "; hollow: %d of %d measurements judged unstable", nunst, nmeasured);
    buf_add(&cap, ". The stages of every schedule with milliseconds (labelled by stage; labels left out where they would "
                  "overlap): the milliseconds the schedule scored with, predicted from the teacher's profile (or measured, "
                  "as the profile says), without error bars: they have no spread; hollow where that profile was unstable. "
                  "Measured on: %s.", eng.s);
    a->caption = cap.s;
    gp_title(&body, a->title);
    buf_add(&body, "\nset xlabel ");
    char xl[700];
    snprintf(xl, sizeof xl, "forward latency, ms (%s)%s", eng.s, c.logx ? ", log scale" : "");
    gp_str(&body, xl);
    /* the key under the plot, one entry a line, with room made for it (gnuplot's own sizing clips long keys) */
    int nkeys = 0;
    for (const char *t = c.plot.s; (t = strstr(t, " title ")); t++) nkeys++;
    buf_add(&body, "\nset ylabel \"UNet parameters (millions)\"\nset grid\nset errorbars small\n"
                   "set bmargin %d\nset key at screen 0.03,0.01 left bottom Left reverse vertical\n"
                   "%s\nset yrange [0:*]\nset offsets %s, graph 0.15, graph 0.12, 0\n%s\n",
            4 + nkeys, c.logx ? "set logscale x\nset xrange [*:*]" : "set xrange [0:*]", c.logx ? "graph 0.05" : "0", c.plot.s);
    rc = gp_write(R, a, body.s);
    if (!rc) rc = gp_run(R, a);
done:
    if (c.d) { fclose(c.d); free(path); }
    for (int s = 0; s < R->nsched; s++) stages_free(&sst[s]);
    free(sst);
    free(cfg);
    free(use);
    free(body.s);
    free(c.plot.s);
    free(eng.s);
    return rc;
}
