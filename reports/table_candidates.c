/* table_candidates: candidates, the --top N best-scored candidates of the
 * latest schedule's first stage (schedule_scores, lowest score first): loss
 * increase, params and milliseconds saved (predicted from the teacher's
 * profile or measured, as the stored profile says: column ms_source; marked
 * "(unstable)" when that profile was judged too noisy: column unstable),
 * score, and whether the stage chose it. Tested by tests/test_report.c. */
#include "report_int.h"
#include "err.h"
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { NCOL = 10 };
static const char *const CH[NCOL] = {"rank", "candidate", "kind", "loss_increase", "params_saved", "ms_saved", "score",
                                     "chosen", "ms_source", "unstable"};
static const char *const H_PRED[NCOL] = {"rank", "candidate", "kind", "loss increase", "params saved",
                                         "ms saved (predicted)", "score", "chosen", "", ""};
static const char *const H_MEAS[NCOL] = {"rank", "candidate", "kind", "loss increase", "params saved",
                                         "ms saved (measured)", "score", "chosen", "", ""};

int table_candidates(Report *R) {
    Artifact *a = art_new(R, "candidates", "The best candidates of the latest schedule's first stage", 0);
    int first = R->nstages ? R->stages[0].stage : 1, n = 0;
    for (int i = 0; i < R->nscores; i++) n += R->scores[i].stage == first;
    if (!R->latest || !n) {
        art_skip(R, a, R->latest ? "the latest schedule has no scored stage" : "no schedule in the store");
        return 0;
    }
    const Sched *sc = R->latest;
    a->table = table_new(NCOL, CH, sc->stage_measured ? H_MEAS : H_PRED, "rllrrrrlll");
    a->table->csv_only = "0000000011"; /* the header and the cell's marker say them */
    int rank = 0;
    /* the scores come ordered by stage, then score (lowest first) */
    for (int i = 0; i < R->nscores && rank < R->o->top; i++) {
        const Score *s = &R->scores[i];
        if (s->stage != first) continue;
        char rk[16], inc[40], incs[40], ps[32], pss[40], ms[40], mss[60], scr[40], scs[40];
        snprintf(rk, sizeof rk, "%d", ++rank);
        real_text(inc, sizeof inc, s->increase);
        snprintf(incs, sizeof incs, "%.4g", s->increase);
        if (s->has_params_saved) {
            snprintf(ps, sizeof ps, "%" PRId64, s->params_saved);
            commas(s->params_saved, pss, sizeof pss);
        } else ps[0] = pss[0] = '\0';
        real_text(ms, sizeof ms, s->ms_saved);
        if (isfinite(s->ms_saved)) snprintf(mss, sizeof mss, "%.2f%s", s->ms_saved, sc->unstable ? " (unstable)" : "");
        else mss[0] = '\0';
        real_text(scr, sizeof scr, s->score);
        if (isnan(s->score)) scs[0] = '\0';
        else snprintf(scs, sizeof scs, "%.4g", s->score);
        if (isnan(s->increase)) incs[0] = '\0';
        const char *raw[NCOL] = {rk, s->candidate, s->kind, inc, ps, ms, scr, s->chosen ? "yes" : "no",
                                 isfinite(s->ms_saved) ? sched_ms_source(sc) : "", sc->unstable ? "1" : "0"};
        const char *shown[NCOL] = {NULL, NULL, NULL, incs, pss, mss, scs, NULL, NULL, NULL};
        table_row(a->table, raw, shown);
    }
    for (int i = 0; i < R->nstages; i++)
        if (R->stages[i].stage == first) ids_add(&a->runs, R->stages[i].run_id);
    ids_add(&a->runs, sc->run_id);
    char e[512], score[64], noise[300];
    sched_engine(R, sc, e, sizeof e);
    int has_ms = 0;
    for (int i = 0; i < R->nscores; i++) has_ms |= R->scores[i].stage == first && isfinite(R->scores[i].ms_saved);
    a->engine = has_ms ? xstrdup(e) : NULL;
    Buf cap = {0};
    buf_add(&cap, "The %d lowest-scored of the %d candidates of stage %d of schedule %" PRId64 " of %s (score %s: lower "
                  "is better); loss increase over the teacher (block NMSE).",
            rank, n, first, sc->id, sc->spec, sched_score_name(sc, score, sizeof score));
    if (has_ms)
        buf_add(&cap, " ms saved: %s by the schedule (%s).%s", sched_ms_source(sc), e, sched_noise(sc, noise, sizeof noise));
    a->caption = cap.s;
    return table_write(R, a);
}
