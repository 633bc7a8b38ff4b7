/* schema: the store's schema as a list of migrations applied in one
 * transaction at open; what a file is, read before anything is written to it
 * (a DB that is not ours, or newer, is refused as found); opening and closing.
 * Tested by tests/test_db.c (schema, bad and foreign files, migrations). */
#include "db_int.h"
#include "numfmt.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- schema ------------------------------------------------------------
 * MIGRATIONS[v] takes the schema from version v to v + 1. Append, never edit:
 * a DB records the version it reached, and db_merge relies on two DBs of the
 * same version having the same columns in the same order. */
static const char *const MIGRATIONS[] = {
    /* 1: runs, models and their modules, plans, candidates, calibration sets,
     * eval jobs and results, removal schedules (keyed by model, calibration
     * set and options, so a rerun continues one); latency is reserved for the
     * profiler. */
    "CREATE TABLE runs("
    "  id INTEGER PRIMARY KEY,"
    "  uid TEXT NOT NULL UNIQUE," /* host:pid:started_at:random, so that a merge knows a run it already holds */
    "  command_line TEXT, git_commit TEXT, build_flags TEXT, device TEXT, driver_version TEXT,"
    "  cuda_version TEXT, cudnn_version TEXT, cupti_version TEXT, seed INTEGER,"
    "  host TEXT NOT NULL, pid INTEGER NOT NULL, started_at TEXT NOT NULL, ended_at TEXT,"
    "  status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'interrupted')));"
    "CREATE TABLE models("
    "  id INTEGER PRIMARY KEY, spec TEXT NOT NULL, config_hash TEXT NOT NULL, weights_hash TEXT NOT NULL,"
    "  params INTEGER NOT NULL, run_id INTEGER REFERENCES runs(id), created_at TEXT NOT NULL,"
    "  UNIQUE (config_hash, weights_hash));"
    "CREATE TABLE modules("
    "  model_id INTEGER NOT NULL REFERENCES models(id), size_label TEXT NOT NULL, name TEXT NOT NULL,"
    "  kind TEXT NOT NULL, params INTEGER NOT NULL, macs INTEGER NOT NULL,"
    "  PRIMARY KEY (model_id, size_label, name)) WITHOUT ROWID;"
    "CREATE TABLE plans("
    "  id INTEGER PRIMARY KEY, model_id INTEGER NOT NULL REFERENCES models(id), plan_hash TEXT NOT NULL,"
    "  plan_json TEXT NOT NULL, total_params INTEGER NOT NULL, run_id INTEGER REFERENCES runs(id),"
    "  created_at TEXT NOT NULL, UNIQUE (model_id, plan_hash));"
    "CREATE TABLE candidates("
    "  model_id INTEGER NOT NULL REFERENCES models(id), base_plan_id INTEGER NOT NULL REFERENCES plans(id),"
    "  name TEXT NOT NULL, kind TEXT NOT NULL, params_removed INTEGER NOT NULL, macs_removed INTEGER NOT NULL,"
    "  plan_id INTEGER NOT NULL REFERENCES plans(id),"
    "  PRIMARY KEY (model_id, base_plan_id, name)) WITHOUT ROWID;"
    "CREATE TABLE calib_sets("
    "  id INTEGER PRIMARY KEY, hash TEXT NOT NULL UNIQUE, n_samples INTEGER NOT NULL, source TEXT,"
    "  run_id INTEGER REFERENCES runs(id), created_at TEXT NOT NULL);"
    "CREATE TABLE eval_jobs("
    "  id INTEGER PRIMARY KEY, model_id INTEGER NOT NULL REFERENCES models(id),"
    "  plan_id INTEGER NOT NULL REFERENCES plans(id), calib_id INTEGER NOT NULL REFERENCES calib_sets(id),"
    "  metric_version INTEGER NOT NULL,"
    "  status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done')),"
    "  run_id INTEGER REFERENCES runs(id)," /* the claimer, then the run that finished it */
    "  claimed_at TEXT, lease_until TEXT, finished_at TEXT,"
    "  UNIQUE (model_id, plan_id, calib_id, metric_version));"
    "CREATE TABLE eval_results("
    "  job_id INTEGER NOT NULL REFERENCES eval_jobs(id), point TEXT NOT NULL, sample INTEGER NOT NULL,"
    "  timestep REAL NOT NULL, tbin INTEGER NOT NULL, metric TEXT NOT NULL,"
    "  value REAL," /* NULL: SQLite stores a NaN as NULL */
    "  PRIMARY KEY (job_id, point, sample, metric)) WITHOUT ROWID;"
    "CREATE TABLE latency("
    "  id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id),"
    "  model_id INTEGER REFERENCES models(id), plan_id INTEGER REFERENCES plans(id),"
    "  module TEXT NOT NULL, kind TEXT, batch INTEGER NOT NULL, height INTEGER NOT NULL, width INTEGER NOT NULL,"
    "  tokens INTEGER, dtype TEXT NOT NULL, device TEXT NOT NULL, engine TEXT NOT NULL, warmup INTEGER,"
    "  repeats INTEGER, calls INTEGER, ms REAL NOT NULL, ms_p10 REAL, ms_p90 REAL, share REAL, samples TEXT,"
    "  created_at TEXT NOT NULL);"
    "CREATE INDEX latency_run ON latency(run_id);"
    "CREATE TABLE schedules("
    "  id INTEGER PRIMARY KEY, model_id INTEGER NOT NULL REFERENCES models(id),"
    "  calib_id INTEGER NOT NULL REFERENCES calib_sets(id), key TEXT NOT NULL, options TEXT NOT NULL,"
    "  latency TEXT, run_id INTEGER REFERENCES runs(id), created_at TEXT NOT NULL, UNIQUE (model_id, calib_id, key));"
    "CREATE TABLE schedule_stages("
    "  schedule_id INTEGER NOT NULL REFERENCES schedules(id), stage INTEGER NOT NULL,"
    "  plan_id INTEGER NOT NULL REFERENCES plans(id), chosen TEXT NOT NULL, params INTEGER NOT NULL,"
    "  macs INTEGER NOT NULL, loss REAL, ms REAL, run_id INTEGER REFERENCES runs(id), created_at TEXT NOT NULL,"
    "  PRIMARY KEY (schedule_id, stage));"
    "CREATE TABLE schedule_scores("
    "  schedule_id INTEGER NOT NULL, stage INTEGER NOT NULL, candidate TEXT NOT NULL, kind TEXT,"
    "  loss REAL, loss_increase REAL, params_saved INTEGER, ms_saved REAL, score REAL, chosen INTEGER NOT NULL,"
    "  PRIMARY KEY (schedule_id, stage, candidate),"
    "  FOREIGN KEY (schedule_id, stage) REFERENCES schedule_stages(schedule_id, stage));",
    /* 2: kernels, one row per GPU activity (kernel, memcpy, memset) of each
     * timed repeat of a traced forward, under the configuration its latency
     * rows have; grid, block, registers and shared memory for kernels, bytes
     * for the others (NULL where they do not apply). */
    "CREATE TABLE kernels("
    "  id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id),"
    "  model_id INTEGER REFERENCES models(id), plan_id INTEGER REFERENCES plans(id),"
    "  batch INTEGER NOT NULL, height INTEGER NOT NULL, width INTEGER NOT NULL, tokens INTEGER, dtype TEXT NOT NULL,"
    "  device TEXT NOT NULL, engine TEXT NOT NULL, repeat INTEGER NOT NULL, seq INTEGER NOT NULL,"
    "  kind TEXT NOT NULL CHECK (kind IN ('kernel', 'memcpy', 'memset')), name TEXT NOT NULL, module TEXT,"
    "  grid_x INTEGER, grid_y INTEGER, grid_z INTEGER, block_x INTEGER, block_y INTEGER, block_z INTEGER,"
    "  registers INTEGER, smem_static INTEGER, smem_dynamic INTEGER, bytes INTEGER, stream INTEGER,"
    "  start_ns INTEGER, duration_ns INTEGER NOT NULL, graph_node INTEGER, created_at TEXT NOT NULL);"
    "CREATE INDEX kernels_run ON kernels(run_id);",
    /* 3: noise (issue 12): per latency row, the share of its CPUs' time other
     * processes (and the hypervisor) took while it was measured, and whether
     * the measurement was judged unstable (profile/noise.h says when). */
    "ALTER TABLE latency ADD COLUMN others_load REAL;"
    "ALTER TABLE latency ADD COLUMN unstable INTEGER NOT NULL DEFAULT 0 CHECK (unstable IN (0, 1));",
    /* 4: a run whose process is gone while its row says 'running' is marked
     * 'died' when the DB is next opened (issue 13). SQLite cannot change a
     * CHECK in place: the table is rebuilt (migrations run before foreign
     * keys are enforced, so the tables citing runs(id) keep citing it). */
    "CREATE TABLE runs_new("
    "  id INTEGER PRIMARY KEY,"
    "  uid TEXT NOT NULL UNIQUE,"
    "  command_line TEXT, git_commit TEXT, build_flags TEXT, device TEXT, driver_version TEXT,"
    "  cuda_version TEXT, cudnn_version TEXT, cupti_version TEXT, seed INTEGER,"
    "  host TEXT NOT NULL, pid INTEGER NOT NULL, started_at TEXT NOT NULL, ended_at TEXT,"
    "  status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'interrupted', 'died')));"
    "INSERT INTO runs_new SELECT * FROM runs;"
    "DROP TABLE runs;"
    "ALTER TABLE runs_new RENAME TO runs;",
    /* 5: issue 16. An eval job is keyed by the dtype its forwards ran in too:
     * a bf16 eval is another setting, never a reuse of fp32's results (rows
     * before this are fp32: the only dtype eval had). Calibration sets keep
     * their image size (NULL: stored before). agree_results holds `unetlab
     * agree`'s numbers, one set of rows per run of it: rank agreement between
     * two settings (kind 'pair': setting_b set), within one (kind
     * 'convergence': the first `samples` samples against all; 'bin': timestep
     * bin `bin` against all bins), each candidate's score per timestep bin
     * ('bin_score': measured), and loss additivity per schedule stage
     * ('additivity': candidate the removals chosen at `stage`, measured the
     * combined student's loss, predicted the base's plus the sum of the single
     * removals' increases). */
    "CREATE TABLE eval_jobs_new("
    "  id INTEGER PRIMARY KEY, model_id INTEGER NOT NULL REFERENCES models(id),"
    "  plan_id INTEGER NOT NULL REFERENCES plans(id), calib_id INTEGER NOT NULL REFERENCES calib_sets(id),"
    "  metric_version INTEGER NOT NULL,"
    "  status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done')),"
    "  run_id INTEGER REFERENCES runs(id),"
    "  claimed_at TEXT, lease_until TEXT, finished_at TEXT,"
    "  dtype TEXT NOT NULL DEFAULT 'fp32',"
    "  UNIQUE (model_id, plan_id, calib_id, metric_version, dtype));"
    "INSERT INTO eval_jobs_new(id, model_id, plan_id, calib_id, metric_version, status, run_id, claimed_at,"
    "  lease_until, finished_at) SELECT id, model_id, plan_id, calib_id, metric_version, status, run_id, claimed_at,"
    "  lease_until, finished_at FROM eval_jobs;"
    "DROP TABLE eval_jobs;"
    "ALTER TABLE eval_jobs_new RENAME TO eval_jobs;"
    "ALTER TABLE calib_sets ADD COLUMN height INTEGER;"
    "ALTER TABLE calib_sets ADD COLUMN width INTEGER;"
    "CREATE TABLE agree_results("
    "  id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id), model TEXT NOT NULL,"
    "  kind TEXT NOT NULL CHECK (kind IN ('pair', 'convergence', 'bin', 'bin_score', 'additivity')),"
    "  metric TEXT NOT NULL, setting_a TEXT NOT NULL, setting_b TEXT, samples INTEGER, of_samples INTEGER,"
    "  bin INTEGER, students INTEGER, kendall_tau REAL, tau_lo REAL, tau_hi REAL, spearman_rho REAL, rho_lo REAL,"
    "  rho_hi REAL, top5 REAL, top10 REAL, top20 REAL, bootstrap INTEGER,"
    "  stage INTEGER, candidate TEXT, measured REAL, predicted REAL, created_at TEXT NOT NULL);"
    "CREATE INDEX agree_results_run ON agree_results(run_id);",
};
_Static_assert(sizeof MIGRATIONS / sizeof *MIGRATIONS == DB_SCHEMA_VERSION, "one migration per schema version");

/* The schema version of the DB attached as `schema` ("main" or "src"): 0 for
 * a DB without tables (a new file), else the positive integer in its meta
 * table. Anything else is not a unetlab DB and is refused before a byte of it
 * is changed: tables but no meta table, a meta table without schema_version,
 * a version that is not a positive integer (text, 2.5, -1). */
int db_schema_version(Db *db, const char *schema, int64_t *version) {
    *version = 0;
    char sql[160];
    sqlite3_stmt *st;
    int64_t n_tables = 0, has_meta = 0;
    snprintf(sql, sizeof sql, "SELECT count(*), count(*) FILTER (WHERE name = 'meta') FROM %s.sqlite_schema"
             " WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%%' ESCAPE '\\'", schema);
    if (PREP(db, &st, sql)) return ERR_DB;
    int r = STEP(db, st);
    if (r == SQLITE_ROW) n_tables = sqlite3_column_int64(st, 0), has_meta = sqlite3_column_int64(st, 1);
    fin(st);
    if (r < 0) return ERR_DB;
    if (!n_tables) return 0;
    if (!has_meta) return err_set(ERR_DB, "'%s': not a unetlab DB (it has tables but no schema version)", db->path);
    snprintf(sql, sizeof sql, "SELECT value FROM %s.meta WHERE key = 'schema_version'", schema);
    if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) != SQLITE_OK) /* a meta table of another shape */
        return err_set(ERR_DB, "'%s': not a unetlab DB (its meta table is not unetlab's)", db->path);
    r = STEP(db, st);
    char text[32] = "";
    if (r == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(text, sizeof text, "%s", (const char *)sqlite3_column_text(st, 0));
    fin(st);
    if (r < 0) return ERR_DB;
    if (r != SQLITE_ROW) return err_set(ERR_DB, "'%s': not a unetlab DB (its meta table has no schema_version)", db->path);
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (!text[0] || *end || errno || v < 1)
        return err_set(ERR_DB, "'%s': schema version '%s' is not a positive integer: not a DB this unetlab wrote", db->path,
                       text);
    *version = v;
    return 0;
}

/* Brings the schema to DB_SCHEMA_VERSION. Always inside BEGIN IMMEDIATE: that
 * is also the write probe, since a read-only file, directory or mount fails
 * there even when the open succeeded (as root, permissions alone never do). */
static int migrate(Db *db) {
    if (EXEC(db, "BEGIN IMMEDIATE")) return ERR_DB;
    int64_t version;
    int rc = db_schema_version(db, "main", &version);
    if (rc) goto fail;
    if (version > DB_SCHEMA_VERSION) {
        rc = err_set(ERR_DB, "'%s': schema version %" PRId64 " is newer than this unetlab's %d", db->path, version,
                     DB_SCHEMA_VERSION);
        goto fail;
    }
    rc = ERR_DB;
    if (!version && EXEC(db, "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)")) goto fail;
    for (int64_t v = version; v < DB_SCHEMA_VERSION; v++)
        if (EXEC(db, MIGRATIONS[v])) goto fail;
    if (version < DB_SCHEMA_VERSION &&
        run1(db, "INSERT INTO meta(key, value) VALUES('schema_version', ?1)"
                 " ON CONFLICT(key) DO UPDATE SET value = excluded.value", DB_SCHEMA_VERSION))
        goto fail;
    if (EXEC(db, "COMMIT")) goto fail;
    return 0;
fail:
    rollback(db);
    return rc;
}

/* Runs of this host still 'running' whose process is gone: 'died' (they were
 * killed, or the machine went down). A pid reused since stays 'running'. */
static int mark_dead_runs(Db *db) {
    sqlite3_stmt *sel = NULL, *up = NULL;
    int rc = PREP(db, &sel, "SELECT id, pid FROM runs WHERE status = 'running' AND host = ?1") ||
             bind_text(db, sel, 1, db->host) ||
             PREP(db, &up, "UPDATE runs SET status = 'died', ended_at = " NOW " WHERE id = ?1 AND status = 'running'");
    int r = rc ? -1 : SQLITE_ROW;
    while (r == SQLITE_ROW && (r = STEP(db, sel)) == SQLITE_ROW) {
        pid_t pid = (pid_t)sqlite3_column_int64(sel, 1);
        if (pid <= 0 || kill(pid, 0) == 0 || errno != ESRCH) continue;
        if (bind_i64(db, up, 1, sqlite3_column_int64(sel, 0)) || STEP(db, up) < 0 || SQ(db, sqlite3_reset(up)) < 0) r = -1;
    }
    fin(sel);
    fin(up);
    return r < 0 ? ERR_DB : 0;
}


int db_open_conn(Db *db, int flags) {
    if (SQ(db, sqlite3_open_v2(db->path, &db->h, flags, NULL)) < 0) return ERR_DB;
    /* Concurrent processes wait for each other's transactions instead of failing. */
    if (SQ(db, sqlite3_busy_timeout(db->h, 30000)) < 0) return ERR_DB;
    return 0;
}

int db_open(Db **out, const char *path) {
    *out = NULL;
    Db *db = xcalloc(1, sizeof *db);
    db->path = xstrdup(path);
    if (gethostname(db->host, sizeof db->host - 1)) strcpy(db->host, "unknown");
    int rc = db_open_conn(db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    if (!rc && sqlite3_db_readonly(db->h, "main") == 1)
        rc = err_set(ERR_DB, "'%s': read-only: cannot write to it (file permissions or a read-only mount)", path);
    /* what the file is, read before anything is written to it: a DB that is
     * not ours (or is newer) is refused as it was found, not switched to WAL */
    int64_t version = 0;
    if (!rc && !(rc = db_schema_version(db, "main", &version)) && version > DB_SCHEMA_VERSION)
        rc = err_set(ERR_DB, "'%s': schema version %" PRId64 " is newer than this unetlab's %d", path, version,
                     DB_SCHEMA_VERSION);
    sqlite3_stmt *st = NULL;
    if (!rc && PREP(db, &st, "PRAGMA journal_mode=WAL")) rc = ERR_DB;
    if (!rc) {
        /* Switching a new file to WAL needs an exclusive lock, and SQLite
         * answers SQLITE_BUSY there without calling the busy handler when
         * other processes are opening the same new file: wait here instead,
         * as long as busy_timeout would. */
        int r;
        for (int tries = 3000; (r = sqlite3_step(st)) == SQLITE_BUSY && tries > 0; tries--) {
            (void)sqlite3_reset(st);   /* repeats the BUSY just seen */
            usleep(10000);
        }
        r = sq_check(db, r, "sqlite3_step(PRAGMA journal_mode=WAL)", __LINE__);
        const char *mode = r == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
        if (r < 0) rc = ERR_DB;
        else if (!mode || strcmp(mode, "wal"))
            rc = err_set(ERR_DB, "'%s': cannot switch to WAL mode (journal mode stays '%s')", path, mode ? mode : "?");
    }
    fin(st);
    if (!rc && EXEC(db, "PRAGMA synchronous=NORMAL")) rc = ERR_DB;
    if (!rc) rc = migrate(db);
    if (!rc && EXEC(db, "PRAGMA foreign_keys=ON")) rc = ERR_DB; /* after migrating: see migration 4 */
    if (!rc) rc = mark_dead_runs(db);
    /* The candidate ids of db_job_claim, per connection. */
    if (!rc && EXEC(db, "CREATE TEMP TABLE claim_ids(id INTEGER PRIMARY KEY)")) rc = ERR_DB;
    if (rc) {
        db_close(db);
        return rc;
    }
    *out = db;
    return 0;
}

void db_close(Db *db) {
    if (!db) return;
    /* close_v2 fails only on misuse; the message stays in the error slot. */
    if (db->h) (void)SQ(db, sqlite3_close_v2(db->h));
    free((char *)db->path);
    free(db);
}

const char *db_path(const Db *db) { return db->path; }


int db_open_existing(Db **db, const char *path) {
    struct stat sb;
    *db = NULL;
    /* db_open would create a missing file: a report of nothing hides a wrong path. */
    if (stat(path, &sb)) return err_set(ERR_DB, "'%s': cannot read: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode)) return err_set(ERR_DB, "'%s': not a regular file", path);
    return db_open(db, path);
}
