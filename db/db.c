/* db: the store's rows (contracts in db.h): runs with their provenance,
 * models, plans, candidates and calibration sets by natural key, eval jobs
 * claimed by one process at a time with a lease, removal schedules, latency
 * and kernel rows. Schema and opening: schema.c; user queries: query.c;
 * merging shards: merge.c; the report's reads: read.c. Tested by
 * tests/test_db.c (claims from 4 processes, SIGKILL, latency rows). */
#include "db_int.h"
#include "numfmt.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

/* The run this process is recording (db_run_begin .. db_run_end), so that a
 * signal can mark it 'interrupted' (db_interrupt). */
static char g_run_path[4096];
static volatile int64_t g_run_id;

/* ---- runs and keyed rows ---------------------------------------------- */

int db_run_begin(Db *db, const Provenance *p, int64_t *run_id) {
    sqlite3_stmt *st;
    if (PREP(db, &st,
             "INSERT INTO runs(uid, command_line, git_commit, build_flags, device, driver_version, cuda_version,"
             " cudnn_version, cupti_version, seed, host, pid, started_at, status)"
             " VALUES(?10 || ':' || ?11 || ':' || " NOW " || ':' || lower(hex(randomblob(8))),"
             " ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, " NOW ", 'running') RETURNING id"))
        return ERR_DB;
    int rc = bind_text(db, st, 1, p->command_line) || bind_text(db, st, 2, p->git_commit) ||
             bind_text(db, st, 3, p->build_flags) || bind_text(db, st, 4, p->device) ||
             bind_text(db, st, 5, p->driver_version) || bind_text(db, st, 6, p->cuda_version) ||
             bind_text(db, st, 7, p->cudnn_version) || bind_text(db, st, 8, p->cupti_version) ||
             bind_i64(db, st, 9, p->seed) || bind_text(db, st, 10, db->host) || bind_i64(db, st, 11, getpid()) ||
             step_i64(db, st, run_id, NULL);
    fin(st);
    if (rc) return ERR_DB;
    db->run_id = *run_id;
    snprintf(g_run_path, sizeof g_run_path, "%s", db->path);
    g_run_id = *run_id;
    return 0;
}

void db_interrupt(void) {
    if (!g_run_id) return;
    /* a connection of its own: the interrupted code may be inside the main one's
     * calls; a second's wait at most for a write lock this process may hold */
    sqlite3 *h = NULL;
    char sql[160];
    snprintf(sql, sizeof sql, "UPDATE runs SET status = 'interrupted', ended_at = %s WHERE id = %lld", NOW,
             (long long)g_run_id);
    if (sqlite3_open_v2(g_run_path, &h, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK) {
        sqlite3_busy_timeout(h, 1000);
        (void)sqlite3_exec(h, sql, NULL, NULL, NULL);
    }
    sqlite3_close(h);
    g_run_id = 0;
}

int db_run_end(Db *db, int64_t run_id, const char *status) {
    if (run_id == g_run_id) g_run_id = 0;
    sqlite3_stmt *st;
    if (PREP(db, &st, "UPDATE runs SET ended_at = " NOW ", status = ?1 WHERE id = ?2")) return ERR_DB;
    int rc = bind_text(db, st, 1, status) || bind_i64(db, st, 2, run_id) || STEP(db, st) < 0;
    fin(st);
    if (rc) return ERR_DB;
    if (!sqlite3_changes(db->h)) return err_set(ERR_DB, "'%s': no run %" PRId64, db->path, run_id);
    return 0;
}

/* Runs the INSERT ... ON CONFLICT DO NOTHING `ins` (already bound), then the
 * SELECT id `sel` (already bound): the id of the row with that key. */
static int put_keyed(Db *db, sqlite3_stmt *ins, sqlite3_stmt *sel, int64_t *id) {
    if (STEP(db, ins) < 0) return ERR_DB;
    return step_i64(db, sel, id, NULL);
}

int db_model_put(Db *db, const char *spec, const char *config_hash, const char *weights_hash, int64_t params,
                 int64_t *model_id) {
    sqlite3_stmt *ins = NULL, *sel = NULL;
    int rc = PREP(db, &ins,
                  "INSERT INTO models(spec, config_hash, weights_hash, params, run_id, created_at)"
                  " VALUES(?1, ?2, ?3, ?4, ?5, " NOW ") ON CONFLICT(config_hash, weights_hash) DO NOTHING") ||
             PREP(db, &sel, "SELECT id FROM models WHERE config_hash = ?1 AND weights_hash = ?2") ||
             bind_text(db, ins, 1, spec) || bind_text(db, ins, 2, config_hash) ||
             bind_text(db, ins, 3, weights_hash) || bind_i64(db, ins, 4, params) || bind_id(db, ins, 5, db->run_id) ||
             bind_text(db, sel, 1, config_hash) || bind_text(db, sel, 2, weights_hash) ||
             put_keyed(db, ins, sel, model_id);
    fin(ins);
    fin(sel);
    return rc ? ERR_DB : 0;
}

int db_plan_put(Db *db, int64_t model_id, const char *plan_json, const char *plan_hash, int64_t total_params,
                int64_t *plan_id) {
    sqlite3_stmt *ins = NULL, *sel = NULL;
    int rc = PREP(db, &ins,
                  "INSERT INTO plans(model_id, plan_hash, plan_json, total_params, run_id, created_at)"
                  " VALUES(?1, ?2, ?3, ?4, ?5, " NOW ") ON CONFLICT(model_id, plan_hash) DO NOTHING") ||
             PREP(db, &sel, "SELECT id FROM plans WHERE model_id = ?1 AND plan_hash = ?2") ||
             bind_i64(db, ins, 1, model_id) || bind_text(db, ins, 2, plan_hash) || bind_text(db, ins, 3, plan_json) ||
             bind_i64(db, ins, 4, total_params) || bind_id(db, ins, 5, db->run_id) ||
             bind_i64(db, sel, 1, model_id) || bind_text(db, sel, 2, plan_hash) || put_keyed(db, ins, sel, plan_id);
    fin(ins);
    fin(sel);
    return rc ? ERR_DB : 0;
}

int db_calib_put(Db *db, const char *hash, int n_samples, const char *source, int height, int width, int64_t *calib_id) {
    sqlite3_stmt *ins = NULL, *sel = NULL;
    int rc = PREP(db, &ins,
                  "INSERT INTO calib_sets(hash, n_samples, source, run_id, created_at, height, width)"
                  " VALUES(?1, ?2, ?3, ?4, " NOW ", ?5, ?6) ON CONFLICT(hash) DO UPDATE SET"
                  " height = coalesce(height, excluded.height), width = coalesce(width, excluded.width)") ||
             PREP(db, &sel, "SELECT id FROM calib_sets WHERE hash = ?1") ||
             bind_text(db, ins, 1, hash) || bind_i64(db, ins, 2, n_samples) || bind_text(db, ins, 3, source) ||
             bind_id(db, ins, 4, db->run_id) || bind_id(db, ins, 5, height) || bind_id(db, ins, 6, width) ||
             bind_text(db, sel, 1, hash) || put_keyed(db, ins, sel, calib_id);
    fin(ins);
    fin(sel);
    return rc ? ERR_DB : 0;
}

int db_modules_put(Db *db, int64_t model_id, const char *size_label, const DbModule *m, int n) {
    sqlite3_stmt *st = NULL;
    if (EXEC(db, "BEGIN IMMEDIATE")) return ERR_DB;
    int rc = PREP(db, &st,
                  "INSERT INTO modules(model_id, size_label, name, kind, params, macs) VALUES(?1, ?2, ?3, ?4, ?5, ?6)"
                  " ON CONFLICT DO NOTHING") ||
             bind_i64(db, st, 1, model_id) || bind_text(db, st, 2, size_label);
    for (int i = 0; !rc && i < n; i++)
        rc = bind_text(db, st, 3, m[i].name) || bind_text(db, st, 4, m[i].kind) || bind_i64(db, st, 5, m[i].params) ||
             bind_i64(db, st, 6, m[i].macs) || STEP(db, st) < 0 || SQ(db, sqlite3_reset(st)) < 0;
    fin(st);
    if (rc || EXEC(db, "COMMIT")) {
        rollback(db);
        return ERR_DB;
    }
    return 0;
}

int db_candidates_put(Db *db, int64_t model_id, int64_t base_plan_id, const DbCandidate *c, int n) {
    sqlite3_stmt *st = NULL;
    if (EXEC(db, "BEGIN IMMEDIATE")) return ERR_DB;
    int rc = PREP(db, &st,
                  "INSERT INTO candidates(model_id, base_plan_id, name, kind, params_removed, macs_removed, plan_id)"
                  " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING") ||
             bind_i64(db, st, 1, model_id) || bind_i64(db, st, 2, base_plan_id);
    for (int i = 0; !rc && i < n; i++)
        rc = bind_text(db, st, 3, c[i].name) || bind_text(db, st, 4, c[i].kind) ||
             bind_i64(db, st, 5, c[i].params_removed) || bind_i64(db, st, 6, c[i].macs_removed) ||
             bind_i64(db, st, 7, c[i].plan_id) || STEP(db, st) < 0 || SQ(db, sqlite3_reset(st)) < 0;
    fin(st);
    if (rc || EXEC(db, "COMMIT")) {
        rollback(db);
        return ERR_DB;
    }
    return 0;
}

/* ---- eval jobs ---------------------------------------------------------- */

int db_job_ensure(Db *db, int64_t model_id, int64_t plan_id, int64_t calib_id, int metric_version, const char *dtype,
                  int64_t *job_id, int *done) {
    sqlite3_stmt *ins = NULL, *sel = NULL;
    int rc = PREP(db, &ins,
                  "INSERT INTO eval_jobs(model_id, plan_id, calib_id, metric_version, dtype) VALUES(?1, ?2, ?3, ?4, ?5)"
                  " ON CONFLICT(model_id, plan_id, calib_id, metric_version, dtype) DO NOTHING") ||
             PREP(db, &sel,
                  "SELECT id, status = 'done' FROM eval_jobs"
                  " WHERE model_id = ?1 AND plan_id = ?2 AND calib_id = ?3 AND metric_version = ?4 AND dtype = ?5");
    for (int i = 1; !rc && i <= 2; i++) {
        sqlite3_stmt *st = i == 1 ? ins : sel;
        rc = bind_i64(db, st, 1, model_id) || bind_i64(db, st, 2, plan_id) || bind_i64(db, st, 3, calib_id) ||
             bind_i64(db, st, 4, metric_version) || bind_text(db, st, 5, dtype);
    }
    if (!rc) rc = STEP(db, ins) < 0;
    int r = rc ? -1 : STEP(db, sel);
    if (r == SQLITE_ROW) {
        *job_id = sqlite3_column_int64(sel, 0);
        *done = sqlite3_column_int(sel, 1);
    }
    fin(ins);
    fin(sel);
    if (r < 0) return ERR_DB;
    if (r != SQLITE_ROW) return err_set(ERR_DB, "'%s': eval job vanished after its insert", db->path);
    return 0;
}

/* A claimer on this host whose process is gone. kill(pid, 0) still succeeds
 * for a zombie, so a killed run counts as dead once its parent has reaped it. */
static int pid_dead(int64_t pid) {
    if (pid <= 0 || pid != (pid_t)pid) return 1;
    return kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

int db_job_claim(Db *db, int64_t run_id, const int64_t *job_ids, int n, int lease_s, int64_t *job_id) {
    *job_id = 0;
    if (n <= 0) return 0;
    sqlite3_stmt *ins = NULL, *sel = NULL, *upd = NULL;
    if (EXEC(db, "BEGIN IMMEDIATE")) return ERR_DB;
    /* The ids go through a TEMP table in this transaction: one prepared
     * INSERT reused, however long the list. */
    int rc = EXEC(db, "DELETE FROM temp.claim_ids") ||
             PREP(db, &ins, "INSERT INTO temp.claim_ids(id) VALUES(?1) ON CONFLICT DO NOTHING");
    for (int i = 0; !rc && i < n; i++)
        rc = bind_i64(db, ins, 1, job_ids[i]) || STEP(db, ins) < 0 || SQ(db, sqlite3_reset(ins)) < 0;
    /* Liveness of a claimer's pid is a question for this machine's kernel, so
     * SQL lists the candidates and C decides. */
    if (!rc)
        rc = PREP(db, &sel,
                  "SELECT j.id, j.status = 'pending', j.lease_until < " NOW ", r.id IS NULL OR r.ended_at IS NOT NULL,"
                  " r.host, r.pid FROM temp.claim_ids c JOIN eval_jobs j ON j.id = c.id"
                  " LEFT JOIN runs r ON r.id = j.run_id WHERE j.status <> 'done' ORDER BY j.id");
    int r = rc ? -1 : SQLITE_ROW;
    int64_t pick = 0;
    while (!rc && !pick && (r = STEP(db, sel)) == SQLITE_ROW) {
        const char *host = (const char *)sqlite3_column_text(sel, 4);
        if (sqlite3_column_int(sel, 1) || sqlite3_column_int(sel, 2) || sqlite3_column_int(sel, 3) ||
            (host && !strcmp(host, db->host) && pid_dead(sqlite3_column_int64(sel, 5))))
            pick = sqlite3_column_int64(sel, 0);
    }
    if (r < 0) rc = 1;
    /* lease_s <= 0: no lease; only the claimer's death frees the job. */
    if (!rc && pick)
        rc = PREP(db, &upd,
                  "UPDATE eval_jobs SET status = 'running', run_id = ?1, claimed_at = " NOW ","
                  " lease_until = CASE WHEN ?2 > 0 THEN strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+' || ?2 || ' seconds')"
                  " END WHERE id = ?3") ||
             bind_i64(db, upd, 1, run_id) || bind_i64(db, upd, 2, lease_s) || bind_i64(db, upd, 3, pick) ||
             STEP(db, upd) < 0;
    fin(ins);
    fin(sel);
    fin(upd);
    if (rc || EXEC(db, "COMMIT")) {
        rollback(db);
        return ERR_DB;
    }
    *job_id = pick;
    return 0;
}

int db_job_finish(Db *db, int64_t job_id, int64_t run_id, const DbEvalRow *rows, int n) {
    sqlite3_stmt *sel = NULL, *ins = NULL, *upd = NULL;
    if (EXEC(db, "BEGIN IMMEDIATE")) return ERR_DB;
    int rc = PREP(db, &sel, "SELECT status = 'done' FROM eval_jobs WHERE id = ?1") || bind_i64(db, sel, 1, job_id);
    int r = rc ? -1 : STEP(db, sel);
    int done = r == SQLITE_ROW && sqlite3_column_int(sel, 0);
    fin(sel);
    if (r < 0) goto fail;
    if (r != SQLITE_ROW) {
        rollback(db);
        return err_set(ERR_DB, "'%s': no eval job %" PRId64, db->path, job_id);
    }
    if (!done) {
        rc = PREP(db, &ins,
                  "INSERT INTO eval_results(job_id, point, sample, timestep, tbin, metric, value)"
                  " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)") ||
             bind_i64(db, ins, 1, job_id);
        for (int i = 0; !rc && i < n; i++)
            rc = bind_text(db, ins, 2, rows[i].point) || bind_i64(db, ins, 3, rows[i].sample) ||
                 bind_f64(db, ins, 4, rows[i].timestep) || bind_i64(db, ins, 5, rows[i].tbin) ||
                 bind_text(db, ins, 6, rows[i].metric) || bind_f64(db, ins, 7, rows[i].value) ||
                 STEP(db, ins) < 0 || SQ(db, sqlite3_reset(ins)) < 0;
        if (!rc)
            rc = PREP(db, &upd,
                      "UPDATE eval_jobs SET status = 'done', run_id = ?1, lease_until = NULL, finished_at = " NOW
                      " WHERE id = ?2") ||
                 bind_i64(db, upd, 1, run_id) || bind_i64(db, upd, 2, job_id) || STEP(db, upd) < 0;
        fin(ins);
        fin(upd);
        if (rc) goto fail;
    }
    if (EXEC(db, "COMMIT")) goto fail;
    return 0;
fail:
    rollback(db);
    return ERR_DB;
}

int db_job_rows(Db *db, int64_t job_id, DbRowFn fn, void *ctx) {
    sqlite3_stmt *st;
    if (PREP(db, &st,
             "SELECT point, sample, timestep, metric, value FROM eval_results WHERE job_id = ?1"
             " ORDER BY point, sample, metric"))
        return ERR_DB;
    int r = bind_i64(db, st, 1, job_id) ? -1 : SQLITE_ROW;
    while (r == SQLITE_ROW && (r = STEP(db, st)) == SQLITE_ROW) {
        double v = sqlite3_column_type(st, 4) == SQLITE_NULL ? NAN : sqlite3_column_double(st, 4);
        fn(ctx, (const char *)sqlite3_column_text(st, 0), sqlite3_column_int(st, 1), sqlite3_column_double(st, 2),
           (const char *)sqlite3_column_text(st, 3), v);
    }
    fin(st);
    return r < 0 ? ERR_DB : 0;
}


/* ---- removal schedules ------------------------------------------------- */

int db_schedule_put(Db *db, int64_t model_id, int64_t calib_id, const char *key, const char *options,
                    int64_t *schedule_id) {
    sqlite3_stmt *ins = NULL, *sel = NULL;
    int rc = PREP(db, &ins,
                  "INSERT INTO schedules(model_id, calib_id, key, options, run_id, created_at)"
                  " VALUES(?1, ?2, ?3, ?4, ?5, " NOW ") ON CONFLICT(model_id, calib_id, key) DO NOTHING") ||
             PREP(db, &sel, "SELECT id FROM schedules WHERE model_id = ?1 AND calib_id = ?2 AND key = ?3") ||
             bind_i64(db, ins, 1, model_id) || bind_i64(db, ins, 2, calib_id) || bind_text(db, ins, 3, key) ||
             bind_text(db, ins, 4, options) || bind_id(db, ins, 5, db->run_id) || bind_i64(db, sel, 1, model_id) ||
             bind_i64(db, sel, 2, calib_id) || bind_text(db, sel, 3, key) || put_keyed(db, ins, sel, schedule_id);
    fin(ins);
    fin(sel);
    return rc ? ERR_DB : 0;
}

int db_stage_put(Db *db, int64_t schedule_id, const DbStage *s, const DbStageScore *c, int n) {
    sqlite3_stmt *st = NULL, *sc = NULL;
    if (EXEC(db, "BEGIN IMMEDIATE")) return ERR_DB;
    int rc = PREP(db, &st,
                  "INSERT INTO schedule_stages(schedule_id, stage, plan_id, chosen, params, macs, loss, ms, run_id,"
                  " created_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, " NOW ") ON CONFLICT DO NOTHING") ||
             bind_i64(db, st, 1, schedule_id) || bind_i64(db, st, 2, s->stage) || bind_i64(db, st, 3, s->plan_id) ||
             bind_text(db, st, 4, s->chosen) || bind_i64(db, st, 5, s->params) || bind_i64(db, st, 6, s->macs) ||
             bind_f64(db, st, 7, s->loss) || bind_f64(db, st, 8, s->ms) || bind_id(db, st, 9, db->run_id) ||
             STEP(db, st) < 0;
    int fresh = !rc && sqlite3_changes(db->h) > 0; /* a stage another process stored first is kept as it is */
    if (!rc && fresh)
        rc = PREP(db, &sc,
                  "INSERT INTO schedule_scores(schedule_id, stage, candidate, kind, loss, loss_increase, params_saved,"
                  " ms_saved, score, chosen) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)") ||
             bind_i64(db, sc, 1, schedule_id) || bind_i64(db, sc, 2, s->stage);
    for (int i = 0; !rc && fresh && i < n; i++)
        rc = bind_text(db, sc, 3, c[i].candidate) || bind_text(db, sc, 4, c[i].kind) || bind_f64(db, sc, 5, c[i].loss) ||
             bind_f64(db, sc, 6, c[i].increase) || bind_i64(db, sc, 7, c[i].params_saved) ||
             bind_f64(db, sc, 8, c[i].ms_saved) || bind_f64(db, sc, 9, c[i].score) || bind_i64(db, sc, 10, c[i].chosen) ||
             STEP(db, sc) < 0 || SQ(db, sqlite3_reset(sc)) < 0;
    fin(st);
    fin(sc);
    if (rc || EXEC(db, "COMMIT")) {
        rollback(db);
        return ERR_DB;
    }
    return 0;
}

int db_stages(Db *db, int64_t schedule_id, DbStageFn fn, void *ctx) {
    sqlite3_stmt *st;
    if (PREP(db, &st,
             "SELECT s.stage, p.plan_json, s.chosen, s.params, s.macs, s.loss, s.ms FROM schedule_stages s"
             " JOIN plans p ON p.id = s.plan_id WHERE s.schedule_id = ?1 ORDER BY s.stage"))
        return ERR_DB;
    int r = bind_i64(db, st, 1, schedule_id) ? -1 : SQLITE_ROW;
    while (r == SQLITE_ROW && (r = STEP(db, st)) == SQLITE_ROW) {
        double loss = sqlite3_column_type(st, 5) == SQLITE_NULL ? NAN : sqlite3_column_double(st, 5);
        double ms = sqlite3_column_type(st, 6) == SQLITE_NULL ? NAN : sqlite3_column_double(st, 6);
        fn(ctx, sqlite3_column_int(st, 0), (const char *)sqlite3_column_text(st, 1),
           (const char *)sqlite3_column_text(st, 2), sqlite3_column_int64(st, 3), sqlite3_column_int64(st, 4), loss, ms);
    }
    fin(st);
    return r < 0 ? ERR_DB : 0;
}

/* ---- latency ------------------------------------------------------------ */

int db_latency_put(Db *db, int64_t run_id, int64_t model_id, int64_t plan_id, const DbLatencyKey *k, const DbLatency *r,
                   int n) {
    sqlite3_stmt *st = NULL;
    if (EXEC(db, "BEGIN IMMEDIATE")) return ERR_DB;
    int rc = PREP(db, &st,
                  "INSERT INTO latency(run_id, model_id, plan_id, module, kind, batch, height, width, tokens, dtype,"
                  " device, engine, warmup, repeats, calls, ms, ms_p10, ms_p90, share, samples, others_load, unstable,"
                  " created_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,"
                  " ?19, ?20, ?21, ?22, " NOW ")") ||
             bind_i64(db, st, 1, run_id) || bind_id(db, st, 2, model_id) || bind_id(db, st, 3, plan_id) ||
             bind_i64(db, st, 6, k->batch) || bind_i64(db, st, 7, k->height) || bind_i64(db, st, 8, k->width) ||
             bind_i64(db, st, 9, k->tokens) || bind_text(db, st, 10, k->dtype) || bind_text(db, st, 11, k->device) ||
             bind_text(db, st, 12, k->engine) || bind_i64(db, st, 13, k->warmup) || bind_i64(db, st, 14, k->repeats) ||
             bind_f64(db, st, 21, k->others_load) || bind_i64(db, st, 22, k->unstable != 0);
    for (int i = 0; !rc && i < n; i++)
        rc = bind_text(db, st, 4, r[i].module) || bind_text(db, st, 5, r[i].kind) || bind_i64(db, st, 15, r[i].calls) ||
             bind_f64(db, st, 16, r[i].ms) || bind_f64(db, st, 17, r[i].ms_p10) || bind_f64(db, st, 18, r[i].ms_p90) ||
             bind_f64(db, st, 19, r[i].share) || bind_text(db, st, 20, r[i].samples) || STEP(db, st) < 0 ||
             SQ(db, sqlite3_reset(st)) < 0;
    fin(st);
    if (rc || EXEC(db, "COMMIT")) {
        rollback(db);
        return ERR_DB;
    }
    return 0;
}

int db_kernels_put(Db *db, int64_t run_id, int64_t model_id, int64_t plan_id, const DbLatencyKey *k,
                   const DbKernel *rows, int n) {
    sqlite3_stmt *st = NULL;
    if (EXEC(db, "BEGIN IMMEDIATE")) return ERR_DB;
    int rc = PREP(db, &st,
                  "INSERT INTO kernels(run_id, model_id, plan_id, batch, height, width, tokens, dtype, device, engine,"
                  " repeat, seq, kind, name, module, grid_x, grid_y, grid_z, block_x, block_y, block_z, registers,"
                  " smem_static, smem_dynamic, bytes, stream, start_ns, duration_ns, graph_node, created_at)"
                  " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20,"
                  " ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, " NOW ")") ||
             bind_i64(db, st, 1, run_id) || bind_id(db, st, 2, model_id) || bind_id(db, st, 3, plan_id) ||
             bind_i64(db, st, 4, k->batch) || bind_i64(db, st, 5, k->height) || bind_i64(db, st, 6, k->width) ||
             bind_i64(db, st, 7, k->tokens) || bind_text(db, st, 8, k->dtype) || bind_text(db, st, 9, k->device) ||
             bind_text(db, st, 10, k->engine);
    for (int i = 0; !rc && i < n; i++) {
        const DbKernel *r = &rows[i];
        /* Launch shape for kernels, bytes for copies and sets; NULL where a value does not apply. */
        int kern = r->kind && !strcmp(r->kind, "kernel");
        rc = bind_i64(db, st, 11, r->repeat) || bind_i64(db, st, 12, r->seq) || bind_text(db, st, 13, r->kind) ||
             bind_text(db, st, 14, r->name) || bind_text(db, st, 15, r->module);
        for (int d = 0; !rc && d < 3; d++)
            rc = (kern ? bind_i64(db, st, 16 + d, r->grid[d]) : bind_text(db, st, 16 + d, NULL)) ||
                 (kern ? bind_i64(db, st, 19 + d, r->block[d]) : bind_text(db, st, 19 + d, NULL));
        rc = rc || (kern ? bind_i64(db, st, 22, r->registers) || bind_i64(db, st, 23, r->smem_static) ||
                               bind_i64(db, st, 24, r->smem_dynamic) || bind_text(db, st, 25, NULL)
                         : bind_text(db, st, 22, NULL) || bind_text(db, st, 23, NULL) ||
                               bind_text(db, st, 24, NULL) || bind_i64(db, st, 25, r->bytes)) ||
             bind_i64(db, st, 26, r->stream) || bind_i64(db, st, 27, r->start_ns) ||
             bind_i64(db, st, 28, r->duration_ns) || bind_id(db, st, 29, r->graph_node) || STEP(db, st) < 0 ||
             SQ(db, sqlite3_reset(st)) < 0;
    }
    fin(st);
    if (rc || EXEC(db, "COMMIT")) {
        rollback(db);
        return ERR_DB;
    }
    return 0;
}

int db_schedule_latency(Db *db, int64_t schedule_id, const char *json, char **stored) {
    sqlite3_stmt *up = NULL, *sel = NULL;
    *stored = NULL;
    int rc = PREP(db, &up, "UPDATE schedules SET latency = ?1 WHERE id = ?2 AND latency IS NULL") ||
             bind_text(db, up, 1, json) || bind_i64(db, up, 2, schedule_id) || (json && STEP(db, up) < 0) ||
             PREP(db, &sel, "SELECT latency FROM schedules WHERE id = ?1") || bind_i64(db, sel, 1, schedule_id);
    int r = rc ? -1 : STEP(db, sel);
    if (r == SQLITE_ROW && sqlite3_column_type(sel, 0) != SQLITE_NULL) *stored = xstrdup((const char *)sqlite3_column_text(sel, 0));
    fin(up);
    fin(sel);
    return r < 0 ? ERR_DB : 0;
}

int db_schedule_latency_set(Db *db, int64_t schedule_id, const char *json) {
    sqlite3_stmt *up = NULL;
    int rc = PREP(db, &up, "UPDATE schedules SET latency = ?1 WHERE id = ?2") || bind_text(db, up, 1, json) ||
             bind_i64(db, up, 2, schedule_id) || STEP(db, up) < 0;
    fin(up);
    return rc ? ERR_DB : 0;
}

/* ---- agree ---------------------------------------------------------------- */

int db_agree_put(Db *db, int64_t run_id, const DbAgreeRow *rows, int n) {
    sqlite3_stmt *st = NULL;
    if (EXEC(db, "BEGIN IMMEDIATE")) return ERR_DB;
    int rc = PREP(db, &st,
                  "INSERT INTO agree_results(run_id, " AGREE_COLS ", created_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7,"
                  " ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, " NOW ")") ||
             bind_i64(db, st, 1, run_id);
    for (int i = 0; !rc && i < n; i++) {
        const DbAgreeRow *r = &rows[i];
        const char *txt[] = {r->model, r->kind, r->metric, r->setting_a, r->setting_b};
        for (int k = 0; !rc && k < 5; k++) rc = bind_text(db, st, 2 + k, txt[k]);
        const int ints[] = {r->samples, r->of_samples, r->bin, r->students, r->bootstrap, r->stage};
        for (int k = 0; !rc && k < 6; k++) rc = bind_count(db, st, 7 + k, ints[k]);
        const double dbl[] = {r->kendall_tau, r->tau_lo, r->tau_hi, r->spearman_rho, r->rho_lo, r->rho_hi,
                              r->top5, r->top10, r->top20};
        for (int k = 0; !rc && k < 9; k++) rc = bind_f64(db, st, 13 + k, dbl[k]);
        rc = rc || bind_text(db, st, 22, r->candidate) || bind_f64(db, st, 23, r->measured) ||
             bind_f64(db, st, 24, r->predicted) || STEP(db, st) < 0 || SQ(db, sqlite3_reset(st)) < 0;
    }
    fin(st);
    if (rc || EXEC(db, "COMMIT")) {
        rollback(db);
        return ERR_DB;
    }
    return 0;
}
