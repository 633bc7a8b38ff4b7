/* read: the read-only views of the store `unetlab report` draws from.
 * Tested by tests/test_report.c against SQL of the same rows. */
#include "db_int.h"
#include "numfmt.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- reads for reports ----------------------------------------------------
 * Read-only views of the store for `unetlab report`: each walks its rows in a
 * stated order and hands them to a callback one at a time (strings valid only
 * during the call). REAL columns that are NULL (SQLite stores NaN so) come back
 * as NaN. Tested by tests/test_report.c against `db query` of the same rows. */



int db_runs(Db *db, DbRunFn fn, void *ctx) {
    sqlite3_stmt *st;
    if (PREP(db, &st,
             "SELECT id, command_line, git_commit, build_flags, device, driver_version, host, started_at, ended_at,"
             " status FROM runs ORDER BY id"))
        return ERR_DB;
    int r;
    while ((r = STEP(db, st)) == SQLITE_ROW) {
        DbRun x = {sqlite3_column_int64(st, 0), col_text(st, 1), col_text(st, 2), col_text(st, 3), col_text(st, 4),
                   col_text(st, 5), col_text(st, 6), col_text(st, 7), col_text(st, 8), col_text(st, 9)};
        fn(ctx, &x);
    }
    fin(st);
    return r < 0 ? ERR_DB : 0;
}

int db_models(Db *db, DbModelFn fn, void *ctx) {
    sqlite3_stmt *st;
    if (PREP(db, &st, "SELECT id, spec, params, run_id, created_at FROM models ORDER BY id")) return ERR_DB;
    int r;
    while ((r = STEP(db, st)) == SQLITE_ROW) {
        DbModelRow x = {sqlite3_column_int64(st, 0), col_text(st, 1), sqlite3_column_int64(st, 2),
                        sqlite3_column_int64(st, 3), col_text(st, 4)};
        fn(ctx, &x);
    }
    fin(st);
    return r < 0 ? ERR_DB : 0;
}

int db_model_sizes(Db *db, int64_t model_id, DbSizeFn fn, void *ctx) {
    sqlite3_stmt *st;
    if (PREP(db, &st, "SELECT size_label, params, macs FROM modules WHERE model_id = ?1 AND name = '' ORDER BY size_label"))
        return ERR_DB;
    int r = bind_i64(db, st, 1, model_id) ? -1 : SQLITE_ROW;
    while (r == SQLITE_ROW && (r = STEP(db, st)) == SQLITE_ROW)
        fn(ctx, col_text(st, 0), sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2));
    fin(st);
    return r < 0 ? ERR_DB : 0;
}

int db_forwards(Db *db, DbForwardFn fn, void *ctx) {
    sqlite3_stmt *st;
    if (PREP(db, &st,
             "SELECT l.id, l.run_id, l.model_id, l.plan_id, coalesce(p.total_params, 0), coalesce(m.params, 0), m.spec,"
             " l.batch, l.height, l.width, coalesce(l.tokens, 0), l.dtype, l.device, l.engine, l.ms, l.ms_p10, l.ms_p90,"
             " coalesce(l.repeats, 0), l.created_at, u.ms, u.ms_p10, u.ms_p90, l.others_load, l.unstable"
             " FROM latency l LEFT JOIN models m ON m.id = l.model_id LEFT JOIN plans p ON p.id = l.plan_id"
             /* the untraced forwards of the same measurement */
             " LEFT JOIN latency u ON u.module = '(untraced)' AND u.run_id = l.run_id AND u.model_id IS l.model_id"
             " AND u.plan_id IS l.plan_id AND u.batch = l.batch AND u.height = l.height AND u.width = l.width"
             " AND u.tokens IS l.tokens AND u.dtype = l.dtype AND u.engine = l.engine"
             " WHERE l.module = '(forward)' ORDER BY l.created_at, l.id"))
        return ERR_DB;
    int r;
    while ((r = STEP(db, st)) == SQLITE_ROW) {
        DbForward x = {sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2),
                       sqlite3_column_int64(st, 3), sqlite3_column_int64(st, 4), sqlite3_column_int64(st, 5),
                       col_text(st, 6), sqlite3_column_int(st, 7), sqlite3_column_int(st, 8), sqlite3_column_int(st, 9),
                       sqlite3_column_int(st, 10), col_text(st, 11), col_text(st, 12), col_text(st, 13),
                       col_f64(st, 14), col_f64(st, 15), col_f64(st, 16), col_f64(st, 19), col_f64(st, 20),
                       col_f64(st, 21), col_f64(st, 22), sqlite3_column_int(st, 23), sqlite3_column_int(st, 17),
                       col_text(st, 18)};
        fn(ctx, &x);
    }
    fin(st);
    return r < 0 ? ERR_DB : 0;
}

int db_latency_rows(Db *db, int64_t run_id, int64_t model_id, int64_t plan_id, DbLatencyRowFn fn, void *ctx) {
    sqlite3_stmt *st;
    if (PREP(db, &st,
             "SELECT module, kind, ms, ms_p10, ms_p90, coalesce(calls, 0) FROM latency WHERE run_id = ?1 AND model_id IS ?2"
             " AND plan_id IS ?3 ORDER BY id"))
        return ERR_DB;
    int r = bind_i64(db, st, 1, run_id) || bind_id(db, st, 2, model_id) || bind_id(db, st, 3, plan_id) ? -1 : SQLITE_ROW;
    while (r == SQLITE_ROW && (r = STEP(db, st)) == SQLITE_ROW)
        fn(ctx, col_text(st, 0), col_text(st, 1), col_f64(st, 2), col_f64(st, 3), col_f64(st, 4), sqlite3_column_int64(st, 5));
    fin(st);
    return r < 0 ? ERR_DB : 0;
}

int db_schedules(Db *db, DbScheduleFn fn, void *ctx) {
    sqlite3_stmt *st;
    if (PREP(db, &st,
             "SELECT s.id, s.model_id, s.calib_id, coalesce(s.run_id, 0), m.spec, coalesce(m.params, 0), s.options,"
             " s.latency, s.created_at, (SELECT count(*) FROM schedule_stages g WHERE g.schedule_id = s.id),"
             " coalesce((SELECT max(g.created_at) FROM schedule_stages g WHERE g.schedule_id = s.id), s.created_at) AS last"
             " FROM schedules s LEFT JOIN models m ON m.id = s.model_id ORDER BY last, s.id"))
        return ERR_DB;
    int r;
    while ((r = STEP(db, st)) == SQLITE_ROW) {
        DbSchedule x = {sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2),
                        sqlite3_column_int64(st, 3), col_text(st, 4), sqlite3_column_int64(st, 5), col_text(st, 6),
                        col_text(st, 7), col_text(st, 8), sqlite3_column_int(st, 9), col_text(st, 10)};
        fn(ctx, &x);
    }
    fin(st);
    return r < 0 ? ERR_DB : 0;
}

int db_schedule_stages(Db *db, int64_t schedule_id, DbStageRowFn fn, void *ctx) {
    sqlite3_stmt *st;
    if (PREP(db, &st,
             "SELECT stage, plan_id, chosen, params, macs, loss, ms, coalesce(run_id, 0), created_at FROM schedule_stages"
             " WHERE schedule_id = ?1 ORDER BY stage"))
        return ERR_DB;
    int r = bind_i64(db, st, 1, schedule_id) ? -1 : SQLITE_ROW;
    while (r == SQLITE_ROW && (r = STEP(db, st)) == SQLITE_ROW) {
        DbStageRow x = {sqlite3_column_int(st, 0), sqlite3_column_int64(st, 1), col_text(st, 2),
                        sqlite3_column_int64(st, 3), sqlite3_column_int64(st, 4), col_f64(st, 5), col_f64(st, 6),
                        sqlite3_column_int64(st, 7), col_text(st, 8)};
        fn(ctx, &x);
    }
    fin(st);
    return r < 0 ? ERR_DB : 0;
}

int db_schedule_scores(Db *db, int64_t schedule_id, DbScoreRowFn fn, void *ctx) {
    sqlite3_stmt *st;
    if (PREP(db, &st,
             "SELECT stage, candidate, kind, loss, loss_increase, params_saved, ms_saved, score, chosen,"
             " params_saved IS NOT NULL FROM schedule_scores WHERE schedule_id = ?1"
             " ORDER BY stage, score IS NULL, score, candidate"))
        return ERR_DB;
    int r = bind_i64(db, st, 1, schedule_id) ? -1 : SQLITE_ROW;
    while (r == SQLITE_ROW && (r = STEP(db, st)) == SQLITE_ROW) {
        DbScoreRow x = {sqlite3_column_int(st, 0), col_text(st, 1), col_text(st, 2), col_f64(st, 3), col_f64(st, 4),
                        sqlite3_column_int64(st, 5), col_f64(st, 6), col_f64(st, 7), sqlite3_column_int(st, 8),
                        sqlite3_column_int(st, 9)};
        fn(ctx, &x);
    }
    fin(st);
    return r < 0 ? ERR_DB : 0;
}

int db_plan_find(Db *db, const char *plan_hash, int64_t *plan_id, int *found) {
    sqlite3_stmt *st;
    /* Plans of that removal set (one per teacher model): the one whose eval finished last. */
    if (PREP(db, &st,
             "SELECT p.id FROM plans p LEFT JOIN eval_jobs j ON j.plan_id = p.id AND j.status = 'done'"
             " WHERE p.plan_hash = ?1 GROUP BY p.id ORDER BY count(j.id) > 0 DESC, max(j.finished_at) DESC, p.id DESC"))
        return ERR_DB;
    int rc = bind_text(db, st, 1, plan_hash) || step_i64(db, st, plan_id, found);
    fin(st);
    return rc ? ERR_DB : 0;
}

int db_plan_point_means(Db *db, int64_t plan_id, const char *metric, DbEvalJob *job, DbPointFn fn, void *ctx) {
    sqlite3_stmt *sj = NULL, *st = NULL;
    memset(job, 0, sizeof *job);
    int rc = PREP(db, &sj,
                  "SELECT j.id, coalesce(j.run_id, 0), j.calib_id, c.n_samples, c.source, c.hash, j.finished_at,"
                  " p.plan_json, m.spec FROM eval_jobs j JOIN calib_sets c ON c.id = j.calib_id"
                  " JOIN plans p ON p.id = j.plan_id JOIN models m ON m.id = j.model_id"
                  " WHERE j.plan_id = ?1 AND j.status = 'done' ORDER BY j.finished_at DESC, j.id DESC LIMIT 1") ||
             bind_i64(db, sj, 1, plan_id);
    int r = rc ? -1 : STEP(db, sj);
    if (r == SQLITE_ROW) {
        job->job_id = sqlite3_column_int64(sj, 0);
        job->run_id = sqlite3_column_int64(sj, 1);
        job->calib_id = sqlite3_column_int64(sj, 2);
        job->n_samples = sqlite3_column_int(sj, 3);
        /* copied: the statement is finalized before the rows are walked */
        snprintf(job->calib_source, sizeof job->calib_source, "%s", col_text(sj, 4) ? col_text(sj, 4) : "");
        snprintf(job->calib_hash, sizeof job->calib_hash, "%s", col_text(sj, 5) ? col_text(sj, 5) : "");
        snprintf(job->finished_at, sizeof job->finished_at, "%s", col_text(sj, 6) ? col_text(sj, 6) : "");
        job->plan_json = xstrdup(col_text(sj, 7) ? col_text(sj, 7) : "");
        snprintf(job->spec, sizeof job->spec, "%s", col_text(sj, 8) ? col_text(sj, 8) : "");
    }
    fin(sj);
    if (r < 0) return ERR_DB;
    if (r != SQLITE_ROW) return 0; /* job->job_id stays 0: no done eval of this plan */
    if (PREP(db, &st,
             "SELECT point, avg(value), count(value) FROM eval_results WHERE job_id = ?1 AND metric = ?2 GROUP BY point"))
        return ERR_DB;
    r = bind_i64(db, st, 1, job->job_id) || bind_text(db, st, 2, metric) ? -1 : SQLITE_ROW;
    while (r == SQLITE_ROW && (r = STEP(db, st)) == SQLITE_ROW)
        fn(ctx, col_text(st, 0), col_f64(st, 1), sqlite3_column_int(st, 2));
    fin(st);
    return r < 0 ? ERR_DB : 0;
}

int db_done_jobs(Db *db, int metric_version, DbDoneJobFn fn, void *ctx) {
    sqlite3_stmt *st;
    if (PREP(db, &st,
             "SELECT j.id, j.model_id, j.plan_id, j.calib_id, m.spec, p.plan_json, c.source, c.n_samples, j.dtype, c.hash,"
             " p.plan_hash, m.config_hash, m.weights_hash, coalesce(c.height, 0), coalesce(c.width, 0) FROM eval_jobs j"
             " JOIN models m ON m.id = j.model_id JOIN plans p ON p.id = j.plan_id JOIN calib_sets c ON c.id = j.calib_id"
             " WHERE j.status = 'done' AND j.metric_version = ?1 ORDER BY j.model_id, j.calib_id, j.dtype, j.plan_id"))
        return ERR_DB;
    int r = bind_i64(db, st, 1, metric_version) ? -1 : SQLITE_ROW;
    while (r == SQLITE_ROW && (r = STEP(db, st)) == SQLITE_ROW) {
        DbDoneJob j = {sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2),
                       sqlite3_column_int64(st, 3), col_text(st, 4), col_text(st, 5), col_text(st, 6),
                       sqlite3_column_int(st, 7), col_text(st, 8), col_text(st, 9), col_text(st, 10), col_text(st, 11),
                       col_text(st, 12), sqlite3_column_int(st, 13), sqlite3_column_int(st, 14)};
        fn(ctx, &j);
    }
    fin(st);
    return r < 0 ? ERR_DB : 0;
}

int db_agree_rows(Db *db, int64_t *run_id, DbAgreeFn fn, void *ctx) {
    sqlite3_stmt *st;
    int found = 0;
    *run_id = 0;
    if (PREP(db, &st, "SELECT max(run_id) FROM agree_results")) return ERR_DB;
    int rc = step_i64(db, st, run_id, &found);
    fin(st);
    if (rc) return ERR_DB;
    if (!*run_id) return 0;
    if (PREP(db, &st, "SELECT " AGREE_COLS " FROM agree_results WHERE run_id = ?1 ORDER BY id")) return ERR_DB;
    int r = bind_i64(db, st, 1, *run_id) ? -1 : SQLITE_ROW;
    while (r == SQLITE_ROW && (r = STEP(db, st)) == SQLITE_ROW) {
        int k = 0;
        DbAgreeRow x;
        x.model = col_text(st, k++), x.kind = col_text(st, k++), x.metric = col_text(st, k++);
        x.setting_a = col_text(st, k++), x.setting_b = col_text(st, k++);
        int *ints[] = {&x.samples, &x.of_samples, &x.bin, &x.students, &x.bootstrap, &x.stage};
        for (int i = 0; i < 6; i++, k++) *ints[i] = sqlite3_column_type(st, k) == SQLITE_NULL ? -1 : sqlite3_column_int(st, k);
        double *dbl[] = {&x.kendall_tau, &x.tau_lo, &x.tau_hi, &x.spearman_rho, &x.rho_lo, &x.rho_hi, &x.top5, &x.top10, &x.top20};
        for (int i = 0; i < 9; i++) *dbl[i] = col_f64(st, k++);
        x.candidate = col_text(st, k++);
        x.measured = col_f64(st, k++), x.predicted = col_f64(st, k++);
        fn(ctx, &x);
    }
    fin(st);
    return r < 0 ? ERR_DB : 0;
}
