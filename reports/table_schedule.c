/* table_schedule: schedule, the latest schedule's stages as stored
 * (schedule_stages): what each removed, the student's params, MACs and loss,
 * and its milliseconds as the schedule scored them: predicted from the
 * teacher's profile or measured (the stored profile says; column ms_source),
 * marked "(unstable)" when that profile was judged too noisy (column
 * unstable). Tested by tests/test_report.c (cells against SQL). */
#include "report_int.h"
#include "err.h"
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { NCOL = 8 };
static const char *const CH[NCOL] = {"stage", "removed", "params", "macs", "loss", "ms", "ms_source", "unstable"};
static const char *const H_PRED[NCOL] = {"stage", "removed", "params", "MACs", "loss (block NMSE)", "ms (predicted)", "", ""};
static const char *const H_MEAS[NCOL] = {"stage", "removed", "params", "MACs", "loss (block NMSE)", "ms (measured)", "", ""};

int table_schedule(Report *R) {
    Artifact *a = art_new(R, "schedule", "The latest schedule's stages", 0);
    if (!R->latest || !R->nstages) {
        art_skip(R, a, R->latest ? "the latest schedule has no stage yet" : "no schedule in the store");
        return 0;
    }
    const Sched *sc = R->latest;
    a->table = table_new(NCOL, CH, sc->stage_measured ? H_MEAS : H_PRED, "rlrrrrll");
    a->table->csv_only = "00000011"; /* the header and the cell's marker say them */
    char e[512], score[64], noise[300];
    sched_engine(R, sc, e, sizeof e);
    int has_ms = 0;
    for (int i = 0; i < R->nstages; i++) {
        const Stage *s = &R->stages[i];
        char st[16], p[32], ps[40], m[32], ms_[40], l[40], ls[40], t[40], ts[60];
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
        if (isfinite(s->ms)) snprintf(ts, sizeof ts, "%.2f%s", s->ms, sc->unstable ? " (unstable)" : ""), has_ms = 1;
        const char *raw[NCOL] = {st, s->chosen, p, m, l, t, isfinite(s->ms) ? sched_ms_source(sc) : "",
                                 sc->unstable ? "1" : "0"};
        const char *shown[NCOL] = {NULL, NULL, ps, ms_, ls, ts, NULL, NULL};
        table_row(a->table, raw, shown);
        ids_add(&a->runs, s->run_id);
    }
    ids_add(&a->runs, sc->run_id);
    a->engine = has_ms ? xstrdup(e) : NULL;
    Buf cap = {0};
    buf_add(&cap, "Schedule %" PRId64 " of %s (score %s): the module(s) each stage removed and the student after it. "
                  "MACs at the calibration size, batch 1.",
            sc->id, sc->spec, sched_score_name(sc, score, sizeof score));
    if (has_ms)
        buf_add(&cap, " ms: %s by the schedule (%s), not a measured forward of the student.%s", sched_ms_source(sc), e,
                sched_noise(sc, noise, sizeof noise));
    a->caption = cap.s;
    return table_write(R, a);
}
