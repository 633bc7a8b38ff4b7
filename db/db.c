/* db: the SQLite store (contracts in db.h). One connection per Db, WAL mode,
 * the schema as a list of migrations applied in one transaction at open, and
 * every sqlite3 call that returns a result code checked by SQ(), which names
 * the DB path, sqlite's message, the call and the line. Tested by
 * tests/test_db.c (schema, bad files, claims from 4 processes, SIGKILL, merge). */
#include "db.h"
#include "err.h"
#include "numfmt.h"
#include <cjson/cJSON.h>
#include <sqlite3.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct Db {
    sqlite3 *h;
    const char *path;     /* names the DB in every message; owned by db_open's Db */
    char host[256];
    int64_t run_id;       /* the latest db_run_begin on this handle: rows it puts cite it; 0 = none */
};

#define NOW "strftime('%Y-%m-%dT%H:%M:%fZ','now')"

/* ---- the one check ----------------------------------------------------
 * Returns rc (SQLITE_OK, SQLITE_ROW or SQLITE_DONE) or -1 after recording an
 * ERR_DB message "'<path>': <sqlite's message> (<call>, db.c:<line>)".
 * Calls left unchecked, each for its reason: sqlite3_finalize (it repeats the
 * last step's code, already checked), ROLLBACK after an error (its own
 * failure must not hide the first error), and getters with no result code. */
#define SQ(db, call) sq_check((db), (call), #call, __LINE__)

static int sq_check(const Db *db, int rc, const char *call, int line) {
    if (rc == SQLITE_OK || rc == SQLITE_ROW || rc == SQLITE_DONE) return rc;
    const char *msg = db->h ? sqlite3_errmsg(db->h) : sqlite3_errstr(rc);
    /* the failing call and line are for us: shown with UNETLAB_DEBUG=1 */
    if (getenv("UNETLAB_DEBUG"))
        err_set(ERR_DB, "'%s': %s (%.100s%s, db.c:%d)", db->path, msg, call, strlen(call) > 100 ? "..." : "", line);
    else err_set(ERR_DB, "'%s': %s", db->path, msg);
    return -1;
}

/* Prepared statements and scripts name their SQL text as the call. */
#define PREP(db, st, sql) (sq_check((db), sqlite3_prepare_v2((db)->h, (sql), -1, (st), NULL), (sql), __LINE__) < 0)
#define EXEC(db, sql) (sq_check((db), sqlite3_exec((db)->h, (sql), NULL, NULL, NULL), (sql), __LINE__) < 0)
#define STEP(db, st) SQ((db), sqlite3_step(st))

static void fin(sqlite3_stmt *st) { (void)sqlite3_finalize(st); }

static void rollback(Db *db) {
    if (!sqlite3_get_autocommit(db->h)) (void)sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
}

static int bind_text(Db *db, sqlite3_stmt *st, int i, const char *s) {
    int rc = s ? SQ(db, sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT)) : SQ(db, sqlite3_bind_null(st, i));
    return rc < 0 ? ERR_DB : 0;
}
static int bind_i64(Db *db, sqlite3_stmt *st, int i, int64_t v) {
    return SQ(db, sqlite3_bind_int64(st, i, v)) < 0 ? ERR_DB : 0;
}
/* 0 stands for "no row" (SQLite ids start at 1): stored as NULL. */
static int bind_id(Db *db, sqlite3_stmt *st, int i, int64_t id) {
    return (id ? SQ(db, sqlite3_bind_int64(st, i, id)) : SQ(db, sqlite3_bind_null(st, i))) < 0 ? ERR_DB : 0;
}
static int bind_f64(Db *db, sqlite3_stmt *st, int i, double v) {
    return SQ(db, sqlite3_bind_double(st, i, v)) < 0 ? ERR_DB : 0;
}

/* Steps st to its end; *v = column 0 of its first row when it has one
 * (*found says so; found may be NULL when a row is certain). */
static int step_i64(Db *db, sqlite3_stmt *st, int64_t *v, int *found) {
    int rc, got = 0;
    while ((rc = STEP(db, st)) == SQLITE_ROW)
        if (!got++) *v = sqlite3_column_int64(st, 0);
    if (rc < 0) return ERR_DB;
    if (found) *found = got > 0;
    else if (!got) return err_set(ERR_DB, "'%s': %s returned no row", db->path, sqlite3_sql(st));
    return 0;
}

/* Runs a statement with no parameters or one integer ?1, to its end. */
static int run1(Db *db, const char *sql, int64_t a) {
    sqlite3_stmt *st;
    if (PREP(db, &st, sql)) return ERR_DB;
    int r = sqlite3_bind_parameter_count(st) && bind_i64(db, st, 1, a) ? -1 : SQLITE_ROW;
    while (r == SQLITE_ROW) r = STEP(db, st);
    fin(st);
    return r < 0 ? ERR_DB : 0;
}

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
};
_Static_assert(sizeof MIGRATIONS / sizeof *MIGRATIONS == DB_SCHEMA_VERSION, "one migration per schema version");

/* The schema version of the DB attached as `schema` ("main" or "src"): 0 for
 * a DB without tables (a new file), else the positive integer in its meta
 * table. Anything else is not a unetlab DB and is refused before a byte of it
 * is changed: tables but no meta table, a meta table without schema_version,
 * a version that is not a positive integer (text, 2.5, -1). */
static int schema_version(Db *db, const char *schema, int64_t *version) {
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
    int rc = schema_version(db, "main", &version);
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

/* The run this process is recording (db_run_begin .. db_run_end), so that a
 * signal can mark it 'interrupted' (db_interrupt). */
static char g_run_path[4096];
static volatile int64_t g_run_id;

static int open_conn(Db *db, int flags) {
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
    int rc = open_conn(db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    if (!rc && sqlite3_db_readonly(db->h, "main") == 1)
        rc = err_set(ERR_DB, "'%s': read-only: cannot write to it (file permissions or a read-only mount)", path);
    /* what the file is, read before anything is written to it: a DB that is
     * not ours (or is newer) is refused as it was found, not switched to WAL */
    int64_t version = 0;
    if (!rc && !(rc = schema_version(db, "main", &version)) && version > DB_SCHEMA_VERSION)
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

int db_calib_put(Db *db, const char *hash, int n_samples, const char *source, int64_t *calib_id) {
    sqlite3_stmt *ins = NULL, *sel = NULL;
    int rc = PREP(db, &ins,
                  "INSERT INTO calib_sets(hash, n_samples, source, run_id, created_at)"
                  " VALUES(?1, ?2, ?3, ?4, " NOW ") ON CONFLICT(hash) DO NOTHING") ||
             PREP(db, &sel, "SELECT id FROM calib_sets WHERE hash = ?1") ||
             bind_text(db, ins, 1, hash) || bind_i64(db, ins, 2, n_samples) || bind_text(db, ins, 3, source) ||
             bind_id(db, ins, 4, db->run_id) || bind_text(db, sel, 1, hash) || put_keyed(db, ins, sel, calib_id);
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

int db_job_ensure(Db *db, int64_t model_id, int64_t plan_id, int64_t calib_id, int metric_version, int64_t *job_id,
                  int *done) {
    sqlite3_stmt *ins = NULL, *sel = NULL;
    int rc = PREP(db, &ins,
                  "INSERT INTO eval_jobs(model_id, plan_id, calib_id, metric_version) VALUES(?1, ?2, ?3, ?4)"
                  " ON CONFLICT(model_id, plan_id, calib_id, metric_version) DO NOTHING") ||
             PREP(db, &sel,
                  "SELECT id, status = 'done' FROM eval_jobs"
                  " WHERE model_id = ?1 AND plan_id = ?2 AND calib_id = ?3 AND metric_version = ?4");
    for (int i = 1; !rc && i <= 2; i++) {
        sqlite3_stmt *st = i == 1 ? ins : sel;
        rc = bind_i64(db, st, 1, model_id) || bind_i64(db, st, 2, plan_id) || bind_i64(db, st, 3, calib_id) ||
             bind_i64(db, st, 4, metric_version);
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

/* ---- db_query ------------------------------------------------------------ */

enum { QF_TEXT, QF_CSV, QF_JSON };

/* Shortest text that reads back as the same double (as cJSON prints them). */
static void fmt_real(char *b, size_t n, double v) { num_shortest(v, b, n); }

/* The text of one cell; NULL for SQL NULL. Caller frees. */
static char *cell_text(sqlite3_stmt *st, int i) {
    char b[64];
    switch (sqlite3_column_type(st, i)) {
    case SQLITE_INTEGER: snprintf(b, sizeof b, "%lld", (long long)sqlite3_column_int64(st, i)); return xstrdup(b);
    case SQLITE_FLOAT: fmt_real(b, sizeof b, sqlite3_column_double(st, i)); return xstrdup(b);
    case SQLITE_NULL: return NULL;
    case SQLITE_BLOB: {
        const unsigned char *p = sqlite3_column_blob(st, i);
        int len = sqlite3_column_bytes(st, i);
        char *s = xmalloc(2 * (size_t)len + 4), *o = s;
        *o++ = 'x', *o++ = '\'';
        for (int k = 0; k < len; k++) o += sprintf(o, "%02x", p[k]);
        *o++ = '\'', *o = '\0';
        return s;
    }
    default: return xstrdup((const char *)sqlite3_column_text(st, i));
    }
}

static void csv_field(FILE *out, const char *s) {
    if (!s) return;
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, out);
        return;
    }
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"') fputc('"', out);
        fputc(*s, out);
    }
    fputc('"', out);
}

/* Display width of UTF-8 text: code points, not bytes. */
static int utf8_width(const char *s) {
    int w = 0;
    for (; *s; s++) w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

static cJSON *json_cell(sqlite3_stmt *st, int i) {
    char b[32];
    switch (sqlite3_column_type(st, i)) {
    case SQLITE_INTEGER:
        /* A raw integer literal keeps int64 exact; cJSON numbers are doubles. */
        snprintf(b, sizeof b, "%lld", (long long)sqlite3_column_int64(st, i));
        return cJSON_CreateRaw(b);
    case SQLITE_FLOAT: return cJSON_CreateNumber(sqlite3_column_double(st, i));
    case SQLITE_NULL: return cJSON_CreateNull();
    default: {
        char *s = cell_text(st, i);
        cJSON *j = cJSON_CreateString(s);
        free(s);
        return j;
    }
    }
}

/* Runs st to its end and prints it in format f. */
static int query_print(Db *q, sqlite3_stmt *st, int f, FILE *out) {
    int nc = sqlite3_column_count(st), r, rc = 0;
    char **cells = NULL;           /* text: row-major, header first */
    size_t ncells = 0, cap = 0;
    cJSON *arr = f == QF_JSON ? cJSON_CreateArray() : NULL;
    if (f == QF_CSV && nc) {
        for (int i = 0; i < nc; i++) {
            if (i) fputc(',', out);
            csv_field(out, sqlite3_column_name(st, i));
        }
        fputc('\n', out);
    }
    int *num = NULL;               /* text: column holds only numbers and NULLs */
    if (f == QF_TEXT) {
        num = xmalloc(((size_t)nc + 1) * sizeof *num);
        for (int i = 0; i < nc; i++) num[i] = 1;
        cells = xmalloc((cap = (size_t)nc * 16 + 1) * sizeof *cells);
        for (int i = 0; i < nc; i++) cells[ncells++] = xstrdup(sqlite3_column_name(st, i));
    }
    while ((r = STEP(q, st)) == SQLITE_ROW) {
        if (f == QF_CSV) {
            for (int i = 0; i < nc; i++) {
                char *s = cell_text(st, i);
                if (i) fputc(',', out);
                csv_field(out, s);
                free(s);
            }
            fputc('\n', out);
        } else if (f == QF_JSON) {
            cJSON *o = cJSON_CreateObject();
            for (int i = 0; i < nc; i++) cJSON_AddItemToObject(o, sqlite3_column_name(st, i), json_cell(st, i));
            cJSON_AddItemToArray(arr, o);
        } else {
            if (ncells + (size_t)nc > cap) cells = xrealloc(cells, (cap = 2 * cap + (size_t)nc) * sizeof *cells);
            for (int i = 0; i < nc; i++) {
                int t = sqlite3_column_type(st, i);
                if (t == SQLITE_TEXT || t == SQLITE_BLOB) num[i] = 0;
                char *s = cell_text(st, i);
                cells[ncells++] = s ? s : xstrdup("NULL");
            }
        }
    }
    if (r < 0) rc = ERR_DB;
    if (f == QF_JSON) {
        if (!rc) {
            char *txt = cJSON_PrintUnformatted(arr);
            if (!txt) die("cJSON_PrintUnformatted: out of memory");
            fprintf(out, "%s\n", txt);
            free(txt);
        }
        cJSON_Delete(arr);
    } else if (f == QF_TEXT) {
        /* Columns two spaces apart; numeric columns right-aligned. */
        int *w = xcalloc((size_t)nc + 1, sizeof *w);
        for (size_t k = 0; k < ncells; k++) {
            int i = (int)(k % (size_t)nc), cw = utf8_width(cells[k]);
            if (cw > w[i]) w[i] = cw;
        }
        for (size_t k = 0; !rc && k < ncells; k++) {
            int i = (int)(k % (size_t)nc), pad = w[i] - utf8_width(cells[k]), last = i == nc - 1;
            if (i) fputs("  ", out);
            if (num[i]) fprintf(out, "%*s%s", pad, "", cells[k]);
            else fprintf(out, "%s%*s", cells[k], last ? 0 : pad, "");
            if (last) fputc('\n', out);
        }
        free(w);
    }
    free(num);
    for (size_t k = 0; k < ncells; k++) free(cells[k]);
    free(cells);
    return rc;
}

int db_query(Db *db, const char *sql, const char *format, FILE *out) {
    int f = !strcmp(format, "text") ? QF_TEXT : !strcmp(format, "csv") ? QF_CSV : !strcmp(format, "json") ? QF_JSON : -1;
    if (f < 0) return err_set(ERR_USAGE, "unknown query format '%s' (text, csv or json)", format);
    /* A connection of its own, opened read-only and query_only, so that the
     * user's SQL cannot write whatever it says. */
    Db q = {.path = db->path};
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    int rc = open_conn(&q, SQLITE_OPEN_READONLY);
    if (!rc && EXEC(&q, "PRAGMA query_only=ON")) rc = ERR_DB;
    /* the user's SQL that does not compile is a usage error, not a broken store */
    if (!rc && sqlite3_prepare_v2(q.h, sql, -1, &st, &tail) != SQLITE_OK)
        rc = err_set(ERR_USAGE, "db query: the SQL does not compile: %s", sqlite3_errmsg(q.h));
    if (!rc && !st) rc = err_set(ERR_USAGE, "db query: the query holds no SQL statement");
    if (!rc && tail[strspn(tail, " \t\r\n;")])
        rc = err_set(ERR_USAGE, "db query: the query holds more than one statement (from '%.40s'); give one", tail);
    if (!rc) rc = query_print(&q, st, f, out);
    fin(st);
    if (q.h) (void)SQ(&q, sqlite3_close_v2(q.h));
    return rc;
}

/* ---- db_merge -------------------------------------------------------------
 * ATTACH cannot run inside a transaction, so each input is first copied, as
 * it is (in a read transaction: one snapshot), into TEMP staging tables tagged
 * with its index; then one transaction re-keys everything into out by natural
 * keys. A merge is therefore all or nothing, and merging again adds nothing. */

static const char MERGE_STAGING[] =
    "CREATE TEMP TABLE in_runs AS SELECT 0 AS src, * FROM main.runs WHERE 0;"
    "CREATE TEMP TABLE in_models AS SELECT 0 AS src, * FROM main.models WHERE 0;"
    "CREATE TEMP TABLE in_modules AS SELECT 0 AS src, * FROM main.modules WHERE 0;"
    "CREATE TEMP TABLE in_plans AS SELECT 0 AS src, * FROM main.plans WHERE 0;"
    "CREATE TEMP TABLE in_candidates AS SELECT 0 AS src, * FROM main.candidates WHERE 0;"
    "CREATE TEMP TABLE in_calib AS SELECT 0 AS src, * FROM main.calib_sets WHERE 0;"
    "CREATE TEMP TABLE in_jobs AS SELECT 0 AS src, * FROM main.eval_jobs WHERE 0;"
    "CREATE TEMP TABLE in_results AS SELECT 0 AS src, * FROM main.eval_results WHERE 0;"
    "CREATE TEMP TABLE in_latency AS SELECT 0 AS src, * FROM main.latency WHERE 0;"
    "CREATE TEMP TABLE in_kernels AS SELECT 0 AS src, * FROM main.kernels WHERE 0;"
    "CREATE INDEX temp.in_results_job ON in_results(src, job_id);"
    /* (src, old id) -> id in out; fresh: the run is new to out, so its
     * latency and kernel rows are copied too (once, from one input).
     * Schedules are not merged: a schedule runs its stages in one DB. */
    "CREATE TEMP TABLE map_runs(src INTEGER, old INTEGER, uid TEXT, fresh INTEGER, new INTEGER,"
    " PRIMARY KEY (src, old));"
    "CREATE TEMP TABLE map_models(src INTEGER, old INTEGER, new INTEGER, PRIMARY KEY (src, old));"
    "CREATE TEMP TABLE map_plans(src INTEGER, old INTEGER, new INTEGER, PRIMARY KEY (src, old));"
    "CREATE TEMP TABLE map_calib(src INTEGER, old INTEGER, new INTEGER, PRIMARY KEY (src, old));"
    "CREATE TEMP TABLE map_jobs(src INTEGER, old INTEGER, new INTEGER, PRIMARY KEY (src, old));";

/* Per input, ?1 = its index. Same schema version, so `*` lines up. */
static const char *const MERGE_STAGE[] = {
    "INSERT INTO temp.in_runs SELECT ?1, * FROM src.runs",
    "INSERT INTO temp.in_models SELECT ?1, * FROM src.models",
    "INSERT INTO temp.in_modules SELECT ?1, * FROM src.modules",
    "INSERT INTO temp.in_plans SELECT ?1, * FROM src.plans",
    "INSERT INTO temp.in_candidates SELECT ?1, * FROM src.candidates",
    "INSERT INTO temp.in_calib SELECT ?1, * FROM src.calib_sets",
    "INSERT INTO temp.in_jobs SELECT ?1, * FROM src.eval_jobs WHERE status = 'done'",
    "INSERT INTO temp.in_results SELECT ?1, r.* FROM src.eval_results r JOIN src.eval_jobs j ON j.id = r.job_id"
    " WHERE j.status = 'done'",
    "INSERT INTO temp.in_latency SELECT ?1, * FROM src.latency",
    "INSERT INTO temp.in_kernels SELECT ?1, * FROM src.kernels",
};

/* In out's transaction, in dependency order. `WHERE true` before ON CONFLICT:
 * SQLite's parser needs it after a SELECT with joins. */
static const char *const MERGE_STEPS[] = {
    "INSERT INTO map_runs(src, old, uid, fresh) SELECT r.src, r.id, r.uid,"
    " NOT EXISTS (SELECT 1 FROM main.runs m WHERE m.uid = r.uid)"
    " AND r.src = (SELECT min(x.src) FROM in_runs x WHERE x.uid = r.uid) FROM in_runs r",
    "INSERT INTO main.runs(uid, command_line, git_commit, build_flags, device, driver_version, cuda_version,"
    " cudnn_version, cupti_version, seed, host, pid, started_at, ended_at, status)"
    " SELECT r.uid, r.command_line, r.git_commit, r.build_flags, r.device, r.driver_version, r.cuda_version,"
    " r.cudnn_version, r.cupti_version, r.seed, r.host, r.pid, r.started_at, r.ended_at, r.status"
    " FROM in_runs r JOIN map_runs m ON m.src = r.src AND m.old = r.id WHERE m.fresh ORDER BY r.src, r.id",
    "UPDATE map_runs SET new = (SELECT id FROM main.runs m WHERE m.uid = map_runs.uid)",

    "INSERT INTO main.models(spec, config_hash, weights_hash, params, run_id, created_at)"
    " SELECT x.spec, x.config_hash, x.weights_hash, x.params, mr.new, x.created_at FROM in_models x"
    " LEFT JOIN map_runs mr ON mr.src = x.src AND mr.old = x.run_id WHERE true ORDER BY x.src, x.id"
    " ON CONFLICT(config_hash, weights_hash) DO NOTHING",
    "INSERT INTO map_models(src, old, new) SELECT x.src, x.id, m.id FROM in_models x"
    " JOIN main.models m ON m.config_hash = x.config_hash AND m.weights_hash = x.weights_hash",
    "INSERT INTO main.modules(model_id, size_label, name, kind, params, macs)"
    " SELECT mm.new, x.size_label, x.name, x.kind, x.params, x.macs FROM in_modules x"
    " JOIN map_models mm ON mm.src = x.src AND mm.old = x.model_id WHERE true ORDER BY x.src ON CONFLICT DO NOTHING",

    "INSERT INTO main.plans(model_id, plan_hash, plan_json, total_params, run_id, created_at)"
    " SELECT mm.new, x.plan_hash, x.plan_json, x.total_params, mr.new, x.created_at FROM in_plans x"
    " JOIN map_models mm ON mm.src = x.src AND mm.old = x.model_id"
    " LEFT JOIN map_runs mr ON mr.src = x.src AND mr.old = x.run_id WHERE true ORDER BY x.src, x.id"
    " ON CONFLICT(model_id, plan_hash) DO NOTHING",
    "INSERT INTO map_plans(src, old, new) SELECT x.src, x.id, p.id FROM in_plans x"
    " JOIN map_models mm ON mm.src = x.src AND mm.old = x.model_id"
    " JOIN main.plans p ON p.model_id = mm.new AND p.plan_hash = x.plan_hash",
    "INSERT INTO main.candidates(model_id, base_plan_id, name, kind, params_removed, macs_removed, plan_id)"
    " SELECT mm.new, bp.new, x.name, x.kind, x.params_removed, x.macs_removed, pp.new FROM in_candidates x"
    " JOIN map_models mm ON mm.src = x.src AND mm.old = x.model_id"
    " JOIN map_plans bp ON bp.src = x.src AND bp.old = x.base_plan_id"
    " JOIN map_plans pp ON pp.src = x.src AND pp.old = x.plan_id WHERE true ORDER BY x.src ON CONFLICT DO NOTHING",

    "INSERT INTO main.calib_sets(hash, n_samples, source, run_id, created_at)"
    " SELECT x.hash, x.n_samples, x.source, mr.new, x.created_at FROM in_calib x"
    " LEFT JOIN map_runs mr ON mr.src = x.src AND mr.old = x.run_id WHERE true ORDER BY x.src, x.id"
    " ON CONFLICT(hash) DO NOTHING",
    "INSERT INTO map_calib(src, old, new) SELECT x.src, x.id, c.id FROM in_calib x"
    " JOIN main.calib_sets c ON c.hash = x.hash",

    /* Done jobs: created pending when out lacks them, then filled from one
     * input each (the first that has it), unless out has it done already. */
    "INSERT INTO main.eval_jobs(model_id, plan_id, calib_id, metric_version)"
    " SELECT mm.new, mp.new, mc.new, x.metric_version FROM in_jobs x"
    " JOIN map_models mm ON mm.src = x.src AND mm.old = x.model_id"
    " JOIN map_plans mp ON mp.src = x.src AND mp.old = x.plan_id"
    " JOIN map_calib mc ON mc.src = x.src AND mc.old = x.calib_id WHERE true ORDER BY x.src, x.id"
    " ON CONFLICT(model_id, plan_id, calib_id, metric_version) DO NOTHING",
    /* A bare column beside min() takes the min row's value (SQLite documents this). */
    "INSERT INTO map_jobs(src, old, new) SELECT min(x.src), x.id, j.id FROM in_jobs x"
    " JOIN map_models mm ON mm.src = x.src AND mm.old = x.model_id"
    " JOIN map_plans mp ON mp.src = x.src AND mp.old = x.plan_id"
    " JOIN map_calib mc ON mc.src = x.src AND mc.old = x.calib_id"
    " JOIN main.eval_jobs j ON j.model_id = mm.new AND j.plan_id = mp.new AND j.calib_id = mc.new"
    " AND j.metric_version = x.metric_version WHERE j.status <> 'done' GROUP BY j.id",
    "INSERT INTO main.eval_results(job_id, point, sample, timestep, tbin, metric, value)"
    " SELECT mj.new, r.point, r.sample, r.timestep, r.tbin, r.metric, r.value FROM map_jobs mj"
    " JOIN in_results r ON r.src = mj.src AND r.job_id = mj.old",
    "UPDATE main.eval_jobs AS j SET status = 'done', run_id = x.run_new, claimed_at = x.claimed_at,"
    " lease_until = NULL, finished_at = x.finished_at"
    " FROM (SELECT mj.new AS id, mr.new AS run_new, s.claimed_at, s.finished_at FROM map_jobs mj"
    " JOIN in_jobs s ON s.src = mj.src AND s.id = mj.old"
    " LEFT JOIN map_runs mr ON mr.src = s.src AND mr.old = s.run_id) AS x WHERE j.id = x.id",

    "INSERT INTO main.latency(run_id, model_id, plan_id, module, kind, batch, height, width, tokens, dtype, device,"
    " engine, warmup, repeats, calls, ms, ms_p10, ms_p90, share, samples, others_load, unstable, created_at)"
    " SELECT mr.new, mm.new, mp.new, x.module, x.kind, x.batch, x.height, x.width, x.tokens, x.dtype, x.device,"
    " x.engine, x.warmup, x.repeats, x.calls, x.ms, x.ms_p10, x.ms_p90, x.share, x.samples, x.others_load,"
    " x.unstable, x.created_at"
    " FROM in_latency x JOIN map_runs mr ON mr.src = x.src AND mr.old = x.run_id AND mr.fresh"
    " LEFT JOIN map_models mm ON mm.src = x.src AND mm.old = x.model_id"
    " LEFT JOIN map_plans mp ON mp.src = x.src AND mp.old = x.plan_id ORDER BY x.src, x.id",
    "INSERT INTO main.kernels(run_id, model_id, plan_id, batch, height, width, tokens, dtype, device, engine, repeat,"
    " seq, kind, name, module, grid_x, grid_y, grid_z, block_x, block_y, block_z, registers, smem_static,"
    " smem_dynamic, bytes, stream, start_ns, duration_ns, graph_node, created_at)"
    " SELECT mr.new, mm.new, mp.new, x.batch, x.height, x.width, x.tokens, x.dtype, x.device, x.engine, x.repeat,"
    " x.seq, x.kind, x.name, x.module, x.grid_x, x.grid_y, x.grid_z, x.block_x, x.block_y, x.block_z, x.registers,"
    " x.smem_static, x.smem_dynamic, x.bytes, x.stream, x.start_ns, x.duration_ns, x.graph_node, x.created_at"
    " FROM in_kernels x JOIN map_runs mr ON mr.src = x.src AND mr.old = x.run_id AND mr.fresh"
    " LEFT JOIN map_models mm ON mm.src = x.src AND mm.old = x.model_id"
    " LEFT JOIN map_plans mp ON mp.src = x.src AND mp.old = x.plan_id ORDER BY x.src, x.id",
};

/* Copies input i (attached as src) into the staging tables. Messages name
 * the input: `in` is the out connection under the input's name. */
static int merge_stage(Db *in, int i) {
    int64_t v = 0;
    int rc = 0;
    if (EXEC(in, "BEGIN")) return ERR_DB;
    rc = schema_version(in, "src", &v);
    if (!rc && !v) rc = err_set(ERR_DB, "'%s': not a unetlab DB (no schema version)", in->path);
    if (!rc && v > DB_SCHEMA_VERSION)
        rc = err_set(ERR_DB, "'%s': schema version %" PRId64 " is newer than this unetlab's %d", in->path, v,
                     DB_SCHEMA_VERSION);
    else if (!rc && v < DB_SCHEMA_VERSION)
        rc = err_set(ERR_DB, "'%s': schema version %" PRId64 " is older than this unetlab's %d; open it once with"
                     " this unetlab to migrate it, then merge", in->path, v, DB_SCHEMA_VERSION);
    for (size_t k = 0; !rc && k < sizeof MERGE_STAGE / sizeof *MERGE_STAGE; k++) rc = run1(in, MERGE_STAGE[k], i);
    if (rc || EXEC(in, "COMMIT")) {
        rollback(in);
        return ERR_DB;
    }
    return 0;
}

int db_merge(const char *out, const char *const *inputs, int n) {
    Db *db;
    int rc = db_open(&db, out);
    if (rc) return rc;
    struct stat so, si;
    int have_out = stat(out, &so) == 0;
    if (EXEC(db, MERGE_STAGING)) rc = ERR_DB;
    for (int i = 0; !rc && i < n; i++) {
        /* ATTACH would create a missing file; say so instead. */
        if (stat(inputs[i], &si)) {
            rc = err_set(ERR_DB, "'%s': cannot read: %s", inputs[i], strerror(errno));
            break;
        }
        if (!S_ISREG(si.st_mode)) {
            rc = err_set(ERR_DB, "'%s': not a regular file", inputs[i]);
            break;
        }
        if (have_out && si.st_dev == so.st_dev && si.st_ino == so.st_ino) {
            rc = err_set(ERR_DB, "'%s': is the merge output itself", inputs[i]);
            break;
        }
        Db in = *db;
        in.path = inputs[i];
        sqlite3_stmt *st = NULL;
        rc = PREP(&in, &st, "ATTACH DATABASE ?1 AS src") || bind_text(&in, st, 1, inputs[i]) || STEP(&in, st) < 0;
        fin(st);
        if (rc) {
            rc = ERR_DB;
            break;
        }
        rc = merge_stage(&in, i);
        if (!rc && EXEC(&in, "DETACH DATABASE src")) rc = ERR_DB;
    }
    if (!rc && EXEC(db, "BEGIN IMMEDIATE")) rc = ERR_DB;
    for (size_t k = 0; !rc && k < sizeof MERGE_STEPS / sizeof *MERGE_STEPS; k++) rc = run1(db, MERGE_STEPS[k], 0);
    if (!rc && EXEC(db, "COMMIT")) rc = ERR_DB;
    if (rc) rollback(db);
    db_close(db);
    return rc;
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

/* ---- reads for reports ----------------------------------------------------
 * Read-only views of the store for `unetlab report`: each walks its rows in a
 * stated order and hands them to a callback one at a time (strings valid only
 * during the call). REAL columns that are NULL (SQLite stores NaN so) come back
 * as NaN. Tested by tests/test_report.c against `db query` of the same rows. */

static double col_f64(sqlite3_stmt *st, int i) {
    return sqlite3_column_type(st, i) == SQLITE_NULL ? NAN : sqlite3_column_double(st, i);
}
static const char *col_text(sqlite3_stmt *st, int i) { return (const char *)sqlite3_column_text(st, i); }

int db_open_existing(Db **db, const char *path) {
    struct stat sb;
    *db = NULL;
    /* db_open would create a missing file: a report of nothing hides a wrong path. */
    if (stat(path, &sb)) return err_set(ERR_DB, "'%s': cannot read: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode)) return err_set(ERR_DB, "'%s': not a regular file", path);
    return db_open(db, path);
}

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
