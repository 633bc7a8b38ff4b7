/* plot_schedule: schedule, the latest schedule stage by stage in stacked
 * panels: the student's parameters, its milliseconds as the schedule scored
 * them (schedule_stages.ms: "predicted (schedule)" from the teacher's
 * profile, or "measured (schedule)", as the stored profile says; no spread,
 * so no error bars; hollow when the profile was unstable), and its loss
 * (block NMSE). Stage 0 is the teacher. Tested by tests/test_report.c. */
#include "report_int.h"
#include "err.h"
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int plot_schedule(Report *R) {
    Artifact *a = art_new(R, "schedule", "The latest removal schedule, stage by stage", 1);
    if (!R->latest || !R->nstages) {
        art_skip(R, a, R->latest ? "the latest schedule has no stage yet" : "no schedule in the store (run unetlab schedule)");
        return 0;
    }
    const Sched *sc = R->latest;
    const char *src = sched_ms_source(sc);
    double t0 = sched_stage0_ms(sc);
    int has_ms = isfinite(t0);
    for (int i = 0; i < R->nstages; i++) has_ms |= isfinite(R->stages[i].ms);
    char *path;
    FILE *d = out_open(R, a->name, ".dat", &path);
    if (!d) return ERR_OUTPUT;
    fprintf(d, "# schedule.dat (unetlab report): schedule %" PRId64 " of %s. Stage 0 is the teacher (loss 0; its\n"
               "# ms from the profile the schedule scored with). ms: %s by the schedule, no spread. unstable 1: that\n"
               "# profile was judged too noisy. ? = absent.\n# stage params ms loss unstable \"removed\"\n",
            sc->id, sc->spec, src);
    fprintf(d, "0 %" PRId64 " ", sc->model_params);
    dat_real(d, t0);
    fprintf(d, " 0 %d \"(teacher)\"\n", sc->unstable);
    for (int i = 0; i < R->nstages; i++) {
        const Stage *s = &R->stages[i];
        fprintf(d, "%d %" PRId64 " ", s->stage, s->params);
        dat_real(d, s->ms);
        fputc(' ', d);
        dat_real(d, s->loss);
        fprintf(d, " %d ", sc->unstable);
        dat_str(d, s->chosen);
        fputc('\n', d);
        ids_add(&a->runs, s->run_id);
    }
    int rc = out_close(R, d, path);
    if (rc) return rc;
    ids_add(&a->runs, sc->run_id);
    char e[512], score[64], title[800], noise[300];
    sched_engine(R, sc, e, sizeof e);
    sched_score_name(sc, score, sizeof score);
    a->engine = has_ms ? xstrdup(e) : NULL;
    Buf cap = {0};
    buf_add(&cap, "Schedule %" PRId64 " of %s (score %s, %d stages): the student's parameters%s and loss (block NMSE) "
                  "after each stage; stage 0 is the teacher.",
            sc->id, sc->spec, score, R->nstages, has_ms ? ", milliseconds" : "");
    if (has_ms)
        buf_add(&cap, " Milliseconds %s by the schedule (%s), not measured forwards of the students: no spread, no error "
                      "bars.%s%s", src, e, sched_noise(sc, noise, sizeof noise), sc->unstable ? " Hollow points: that profile." : "");
    a->caption = cap.s;
    int last = R->stages[R->nstages - 1].stage;
    snprintf(title, sizeof title, "Schedule %" PRId64 " of %s: score %s, %d stages (stage 0: the teacher)%s%s%s%s", sc->id,
             base_name(sc->spec), score, R->nstages, has_ms ? "; ms " : "", has_ms ? src : "", has_ms ? ", " : "",
             has_ms ? e : "");
    Buf body = {0};
    buf_add(&body, "reset\nset multiplot layout %d,1 title ", has_ms ? 3 : 2);
    gp_str(&body, title);
    buf_add(&body, "\nset grid\nset lmargin 13\nset xrange [-0.5:%d.5]\n%s\nunset xlabel\n"
                   "set ylabel \"params (millions)\"\nplot \"%s.dat\" using 1:($2/1e6) with linespoints pt 7 lw 2 lc 1 notitle\n",
            last, last <= 30 ? "set xtics 1" : "set xtics", a->name);
    if (has_ms)
        buf_add(&body, "set ylabel \"forward ms\"\nset key top right\n"
                       "plot \"%s.dat\" using 1:3 with linespoints pt %d lw 2 lc 2 title \"%s (schedule)%s, no spread\"\n"
                       "unset key\n",
                a->name, sc->unstable ? 6 : 7, src, sc->unstable ? " (unstable profile)" : "");
    buf_add(&body, "set xlabel \"stage\"\nset ylabel \"loss (block NMSE)\"\n"
                   "plot \"%s.dat\" using 1:4 with linespoints pt 7 lw 2 lc 7 notitle\nunset multiplot\n",
            a->name);
    rc = gp_write(R, a, body.s);
    if (!rc) rc = gp_run(R, a);
    free(body.s);
    return rc;
}
