/* test_db: the SQLite store. Schema and keyed puts, bad files (garbage, newer
 * schema, unwritable paths), the eval job flow, 4 processes sharing 40 jobs,
 * runs killed with SIGKILL mid-work, merging shards into one, kernel rows (and
 * the migration from schema version 1 that adds them), and db_query's
 * formats. Works in a mkdtemp dir under /tmp, removed at the end; raw sqlite3
 * is used only to look at (or tamper with) what db.c wrote. */
#include "test.h"
#include "testsql.h"
#include "db.h"
#include "err.h"
#include <sqlite3.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char g_dir[64];

/* A path in the test dir; eight live at a time. */
static const char *tpath(const char *name) {
    static char buf[8][512];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, sizeof buf[0], "%s/%s", g_dir, name);
    return b;
}

/* ---- raw sqlite3, to inspect the files db.c wrote ---- */

/* Column 0 of the first row of sql as an integer; -999 on any error. */
static long long q1(const char *path, const char *sql) {
    sqlite3 *h = NULL;
    sqlite3_stmt *st = NULL;
    long long v = -999;
    if (sqlite3_open_v2(path, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    else
        fprintf(stderr, "q1 '%s': %s: %s\n", path, sql, sqlite3_errmsg(h));
    sqlite3_finalize(st);
    sqlite3_close(h);
    return v;
}

/* Column 0 of the first row as text into b ("" when NULL or on error). */
static const char *qs(const char *path, const char *sql, char *b, size_t n) {
    sqlite3 *h = NULL;
    sqlite3_stmt *st = NULL;
    b[0] = '\0';
    if (sqlite3_open_v2(path, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW &&
        sqlite3_column_text(st, 0))
        snprintf(b, n, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(h);
    return b;
}

/* db_query's output as a string (caller frees); NULL on error. */
static char *query_str(Db *db, const char *sql, const char *fmt) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    int rc = db_query(db, sql, fmt, f);
    fclose(f);
    if (rc) {
        fprintf(stderr, "db_query: %s\n", err_msg());
        free(buf);
        return NULL;
    }
    return buf;
}

/* ---- fixtures: one model, one calibration set, n plans, one job per plan ---- */

enum { R = 3 };   /* rows per finished job */

static int make_jobs(Db *db, int n, int reverse, int64_t *ids) {
    int64_t model, calib, plan;
    int done, rc = db_model_put(db, "sdxl-base", "cfg-hash", "weights-hash", 2567463684LL, &model) ||
                   db_calib_put(db, "calib-hash", 4, "calib.safetensors", 0, 0, &calib);
    for (int i = 0; !rc && i < n; i++) {
        int k = reverse ? n - 1 - i : i;
        char json[64], hash[32];
        snprintf(json, sizeof json, "{\"drop\":[\"layer.%d\"]}", k);
        snprintf(hash, sizeof hash, "plan-%03d", k);
        rc = db_plan_put(db, model, json, hash, 1000 - k, &plan) || db_job_ensure(db, model, plan, calib, 1, "fp32", &ids[k], &done);
    }
    if (rc) fprintf(stderr, "make_jobs: %s\n", err_msg());
    return rc;
}

static void make_rows(DbEvalRow *rows, double value) {
    static const char *points[R] = {"output", "output", "down_blocks.0"};
    static const char *metrics[R] = {"mse", "mse", "cosine"};
    for (int i = 0; i < R; i++)
        rows[i] = (DbEvalRow){.point = points[i], .sample = i, .timestep = 100.0 * i + 1, .tbin = i,
                              .metric = metrics[i], .value = value};
}

static int64_t begin_run(Db *db, const char *cmd) {
    Provenance p = {.command_line = cmd, .git_commit = "abc123", .build_flags = "-O2", .device = "cpu: test",
                    .seed = 7};
    int64_t run = 0;
    if (db_run_begin(db, &p, &run)) fprintf(stderr, "db_run_begin: %s\n", err_msg());
    return run;
}

/* ---- tests ---- */

static void schema_and_puts(void) {
    const char *path = tpath("a.db");
    char b[256];
    Db *db, *db2;
    CHECK(db_open(&db, path) == 0);
    CHECK_EQ_LL(q1(path, "SELECT value FROM meta WHERE key = 'schema_version'"), DB_SCHEMA_VERSION);
    CHECK(!strcmp(qs(path, "PRAGMA journal_mode", b, sizeof b), "wal"));
    long long n_tables = q1(path, "SELECT count(*) FROM sqlite_schema WHERE type = 'table'");
    CHECK_EQ_LL(n_tables, 15);   /* meta + 14 */
    CHECK(!strcmp(db_path(db), path));
    /* Reopening (while the first handle is open) changes nothing. */
    CHECK(db_open(&db2, path) == 0);
    CHECK_EQ_LL(q1(path, "SELECT count(*) FROM sqlite_schema WHERE type = 'table'"), n_tables);
    CHECK_EQ_LL(q1(path, "SELECT count(*) FROM meta"), 1);
    db_close(db2);

    int64_t run = begin_run(db, "unetlab eval --model sdxl-base");
    CHECK(run > 0);
    int64_t m1, m2, m3, p1, p2, p3, c1, c2;
    CHECK(db_model_put(db, "sdxl-base", "c1", "w1", 10, &m1) == 0);
    CHECK(db_model_put(db, "other spec", "c1", "w1", 11, &m2) == 0);
    CHECK(db_model_put(db, "sdxl-base", "c1", "w2", 10, &m3) == 0);
    CHECK(m1 == m2 && m1 != m3);
    CHECK(!strcmp(qs(path, "SELECT spec FROM models WHERE id = 1", b, sizeof b), "sdxl-base")); /* first wins */
    CHECK_EQ_LL(q1(path, "SELECT run_id FROM models WHERE id = 1"), run);
    CHECK(db_plan_put(db, m1, "{}", "h1", 5, &p1) == 0);
    CHECK(db_plan_put(db, m1, "{}", "h1", 5, &p2) == 0);
    CHECK(db_plan_put(db, m3, "{}", "h1", 5, &p3) == 0);
    CHECK(p1 == p2 && p1 != p3);
    CHECK(db_calib_put(db, "k1", 4, "a.safetensors", 0, 0, &c1) == 0);
    CHECK(db_calib_put(db, "k1", 8, NULL, 0, 0, &c2) == 0);
    CHECK(c1 == c2);
    CHECK_ERR(db_plan_put(db, 999, "{}", "h9", 5, &p2), ERR_DB, "FOREIGN KEY constraint failed");
    CHECK(err_msg()[0] == '\'' && !strncmp(err_msg() + 1, path, strlen(path)));   /* the path comes first */

    DbModule mods[3] = {{"down_blocks.0", "CrossAttnDownBlock2D", 100, 1000},
                        {"down_blocks.0.resnets.0", "ResnetBlock2D", 50, 500},
                        {"mid_block", "UNetMidBlock2DCrossAttn", 70, 700}};
    CHECK(db_modules_put(db, m1, "b1_1024x1024_t77", mods, 3) == 0);
    mods[0].params = 1;
    CHECK(db_modules_put(db, m1, "b1_1024x1024_t77", mods, 3) == 0);
    CHECK_EQ_LL(q1(path, "SELECT count(*) FROM modules"), 3);
    CHECK_EQ_LL(q1(path, "SELECT params FROM modules WHERE name = 'down_blocks.0'"), 100);
    DbCandidate cands[2] = {{"down_blocks.1.attentions.0.transformer_blocks.1", "transformer_layer", 30, 300, p1},
                            {"mid_block.attentions.0", "mid_block_reduction", 40, 400, p1}};
    CHECK(db_candidates_put(db, m1, p1, cands, 2) == 0);
    CHECK(db_candidates_put(db, m1, p1, cands, 2) == 0);
    CHECK_EQ_LL(q1(path, "SELECT count(*) FROM candidates"), 2);

    /* Provenance and UTC timestamps with milliseconds: 2024-01-02T03:04:05.678Z */
    CHECK(!strcmp(qs(path, "SELECT command_line FROM runs", b, sizeof b), "unetlab eval --model sdxl-base"));
    CHECK(!strcmp(qs(path, "SELECT git_commit || ' ' || build_flags || ' ' || device FROM runs", b, sizeof b),
                  "abc123 -O2 cpu: test"));
    CHECK_EQ_LL(q1(path, "SELECT seed FROM runs"), 7);
    CHECK_EQ_LL(q1(path, "SELECT pid FROM runs"), getpid());
    CHECK_EQ_LL(q1(path, "SELECT cuda_version IS NULL AND status = 'running' AND ended_at IS NULL FROM runs"), 1);
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    CHECK(!strcmp(qs(path, "SELECT host FROM runs", b, sizeof b), host));
    qs(path, "SELECT started_at FROM runs", b, sizeof b);
    CHECK_MSG(strlen(b) == 24 && b[10] == 'T' && b[19] == '.' && b[23] == 'Z', "started_at '%s'", b);
    CHECK(db_run_end(db, run, "done") == 0);
    qs(path, "SELECT ended_at FROM runs", b, sizeof b);
    CHECK_MSG(strlen(b) == 24 && b[23] == 'Z', "ended_at '%s'", b);
    CHECK_EQ_LL(q1(path, "SELECT status = 'done' AND ended_at >= started_at FROM runs"), 1);
    CHECK_ERR(db_run_end(db, run, "finished"), ERR_DB, "CHECK constraint failed");
    CHECK_ERR(db_run_end(db, 12345, "done"), ERR_DB, "no run 12345");
    db_close(db);
}

static void bad_dbs(void) {
    Db *db = NULL;
    /* Not a SQLite file. */
    const char *garbage = tpath("garbage.db");
    FILE *f = fopen(garbage, "wb");
    for (int i = 0; i < 64; i++) fputs("this is not a SQLite database, ", f);
    fclose(f);
    char want[600];
    snprintf(want, sizeof want, "'%s': file is not a database", garbage);
    CHECK_ERR(db_open(&db, garbage), ERR_DB, want);
    CHECK(db == NULL && !strchr(err_msg(), '\n'));

    /* A newer schema. */
    const char *newer = tpath("newer.db");
    CHECK(db_open(&db, newer) == 0);
    db_close(db);
    CHECK(raw_exec(newer, "UPDATE meta SET value = '99' WHERE key = 'schema_version'") == SQLITE_OK);
    snprintf(want, sizeof want, "'%s': schema version 99 is newer than this unetlab's %d", newer, DB_SCHEMA_VERSION);
    CHECK_ERR(db_open(&db, newer), ERR_DB, want);
    CHECK(db == NULL);

    /* Unwritable paths. chmod cannot stop root, so use places no one can create a file in. */
    const char *nodir = tpath("no/such/dir/x.db");
    snprintf(want, sizeof want, "'%s': unable to open database file", nodir);
    CHECK_ERR(db_open(&db, nodir), ERR_DB, want);
    CHECK_ERR(db_open(&db, "/proc/unetlab-test.db"), ERR_DB, "'/proc/unetlab-test.db': ");
    if (geteuid() != 0) {
        const char *ro = tpath("ro.db");
        CHECK(db_open(&db, ro) == 0);
        db_close(db);
        chmod(ro, 0444);
        CHECK_ERR(db_open(&db, ro), ERR_DB, "read-only");
    } else {
        printf("test_db: running as root: the chmod 0444 case is skipped (root writes anyway)\n");
    }

    /* Some other program's SQLite DB. */
    const char *foreign = tpath("foreign.db");
    CHECK(raw_exec(foreign, "CREATE TABLE runs(x)") == SQLITE_OK);
    CHECK_ERR(db_open(&db, foreign), ERR_DB, "not a unetlab DB");

    /* Refused as found (issue 13): no table added, not switched to WAL. A meta
     * table without a version, of another shape, or a version that is not a
     * positive integer (one ran a wrong migration, one crashed, one re-ran them). */
    static const struct { const char *sql, *msg; } refused[] = {
        {"CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT)", "its meta table has no schema_version"},
        {"CREATE TABLE meta(k, v)", "its meta table is not unetlab's"},
        {"CREATE TABLE meta(key, value); INSERT INTO meta VALUES('schema_version', '-1')", "schema version '-1' is not"},
        {"CREATE TABLE meta(key, value); INSERT INTO meta VALUES('schema_version', -100000)", "'-100000' is not a positive"},
        {"CREATE TABLE meta(key, value); INSERT INTO meta VALUES('schema_version', 'two')", "schema version 'two'"},
        {"CREATE TABLE meta(key, value); INSERT INTO meta VALUES('schema_version', '2.5')", "schema version '2.5'"},
        {"CREATE TABLE meta(key, value); INSERT INTO meta VALUES('schema_version', '0')", "schema version '0'"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        char name[32];
        snprintf(name, sizeof name, "foreign%zu.db", i);
        const char *fp = tpath(name);
        CHECK(raw_exec(fp, refused[i].sql) == SQLITE_OK);
        CHECK_ERR(db_open(&db, fp), ERR_DB, refused[i].msg);
        CHECK_EQ_LL(q1(fp, "SELECT count(*) FROM sqlite_schema"), 1 + (strstr(refused[i].sql, "PRIMARY KEY") != NULL));
        CHECK_EQ_LL(q1(fp, "SELECT journal_mode = 'wal' FROM pragma_journal_mode"), 0);
        CHECK_ERR(db_merge(tpath("merged-foreign.db"), &fp, 1), ERR_DB, refused[i].msg);
    }
    /* A newer DB is refused as found too. */
    const char *newer2 = tpath("newer2.db");
    CHECK(raw_exec(newer2, "CREATE TABLE meta(key, value); INSERT INTO meta VALUES('schema_version', '99')") == SQLITE_OK);
    CHECK_ERR(db_open(&db, newer2), ERR_DB, "is newer than");
    CHECK_EQ_LL(q1(newer2, "SELECT journal_mode = 'wal' FROM pragma_journal_mode"), 0);
    /* Opening an existing DB never creates one (db query --db typo.db). */
    CHECK_ERR(db_open_existing(&db, tpath("typo.db")), ERR_DB, "typo.db");
    CHECK(access(tpath("typo.db"), F_OK) != 0);
}

/* Three GPU activities: a kernel and a memcpy (from a graph) in repeat 0, a
 * memset in repeat 1. The kernel's bytes and the memcpy's launch shape are
 * set to show that db_kernels_put stores NULL where a value does not apply. */
static void make_kernels(DbKernel *k) {
    k[0] = (DbKernel){.repeat = 0, .seq = 0, .kind = "kernel", .name = "_Z6conv2dPKfPf",
                      .module = "down_blocks.0.resnets.0", .grid = {128, 2, 1}, .block = {256, 1, 1}, .registers = 64,
                      .smem_static = 1024, .smem_dynamic = 49152, .bytes = 999, .stream = 7, .start_ns = 0,
                      .duration_ns = 15000, .graph_node = 0};
    k[1] = (DbKernel){.repeat = 0, .seq = 1, .kind = "memcpy", .name = "memcpy DtoD", .module = NULL,
                      .grid = {1, 1, 1}, .block = {1, 1, 1}, .registers = 8, .bytes = 1 << 20, .stream = 7,
                      .start_ns = 16000, .duration_ns = 2000, .graph_node = 42};
    k[2] = (DbKernel){.repeat = 1, .seq = 0, .kind = "memset", .name = "memset", .module = "mid_block",
                      .bytes = 4096, .stream = 13, .start_ns = 0, .duration_ns = 500, .graph_node = 0};
}

static const DbLatencyKey KERNEL_KEY = {.batch = 1, .height = 1024, .width = 1024, .tokens = 77, .dtype = "f16",
                                        .device = "NVIDIA H100", .engine = "cupti", .warmup = 3, .repeats = 2};

/* Makes a schema version 2 DB at path: today's schema less what migration 3 adds. */
/* Makes a schema version 4 DB at path: the current schema less what migration
 * 5 adds (eval_jobs as it was, without dtype; calib_sets without the size). */
static int make_v4(const char *path) {
    Db *db;
    if (db_open(&db, path)) return 1;
    db_close(db);
    return raw_exec(path, "DROP TABLE agree_results;"
                          " ALTER TABLE calib_sets DROP COLUMN height; ALTER TABLE calib_sets DROP COLUMN width;"
                          " CREATE TABLE old_jobs(id INTEGER PRIMARY KEY, model_id INTEGER NOT NULL REFERENCES models(id),"
                          " plan_id INTEGER NOT NULL REFERENCES plans(id),"
                          " calib_id INTEGER NOT NULL REFERENCES calib_sets(id), metric_version INTEGER NOT NULL,"
                          " status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done')),"
                          " run_id INTEGER REFERENCES runs(id), claimed_at TEXT, lease_until TEXT, finished_at TEXT,"
                          " UNIQUE (model_id, plan_id, calib_id, metric_version));"
                          " DROP TABLE eval_jobs; ALTER TABLE old_jobs RENAME TO eval_jobs;"
                          " UPDATE meta SET value = '4' WHERE key = 'schema_version'") != SQLITE_OK;
}

/* Makes a schema version 2 DB at path: version 4 less what migration 3 adds. */
static int make_v2(const char *path) {
    return make_v4(path) ||
           raw_exec(path, "ALTER TABLE latency DROP COLUMN unstable; ALTER TABLE latency DROP COLUMN others_load;"
                          " UPDATE meta SET value = '2' WHERE key = 'schema_version'") != SQLITE_OK;
}

/* Makes a schema version 1 DB at path: version 2 less what migration 2 adds. */
static int make_v1(const char *path) {
    return make_v2(path) || raw_exec(path, "DROP INDEX kernels_run; DROP TABLE kernels;"
                                           " UPDATE meta SET value = '1' WHERE key = 'schema_version'") != SQLITE_OK;
}

typedef struct {
    int n;
    DbForward f[4];
} Fwds;
static void keep_fwd(void *ctx, const DbForward *f) {
    Fwds *x = ctx;
    if (x->n < 4) x->f[x->n++] = *f;
}

/* Latency rows carry their measurement's noise (others' load, unstable), the
 * untraced forward comes back beside the traced one, a merge keeps both, and a
 * version 2 store is migrated with its rows kept and their noise unknown. */
static void latency_noise(void) {
    const char *path = tpath("noise.db");
    Db *db;
    CHECK(db_open(&db, path) == 0);
    int64_t run = begin_run(db, "unetlab profile --model m"), model;
    CHECK(db_model_put(db, "m", "c1", "w1", 10, &model) == 0);
    DbLatencyKey key = KERNEL_KEY;
    key.engine = "cpu", key.others_load = 0.375, key.unstable = 1;
    DbLatency rows[3] = {{"down_blocks.0", "CrossAttnDownBlock2D", 1, 2.0, 1.5, 2.5, 0.2, "[2]"},
                         {"(forward)", "UNet2DConditionModel", 1, 10.0, 9.0, 12.0, 1.0, "[10]"},
                         {"(untraced)", "UNet2DConditionModel", 1, 8.0, 7.5, 8.5, 0.8, "[8]"}};
    CHECK_MSG(db_latency_put(db, run, model, 0, &key, rows, 3) == 0, "%s", err_msg());
    key.others_load = NAN, key.unstable = 0;
    CHECK(db_latency_put(db, begin_run(db, "older"), model, 0, &key, rows + 1, 1) == 0); /* no untraced row */
    Fwds fw = {0};
    CHECK(db_forwards(db, keep_fwd, &fw) == 0);
    CHECK_EQ_LL(fw.n, 2);
    CHECK(fw.f[0].ms == 10.0 && fw.f[0].untraced_ms == 8.0 && fw.f[0].untraced_p10 == 7.5 && fw.f[0].untraced_p90 == 8.5);
    CHECK(fw.f[0].others_load == 0.375 && fw.f[0].unstable == 1);
    CHECK(fw.f[1].ms == 10.0 && isnan(fw.f[1].untraced_ms) && isnan(fw.f[1].others_load) && fw.f[1].unstable == 0);
    CHECK_EQ_LL(q1(path, "SELECT count(*) FROM latency WHERE unstable = 1 AND others_load = 0.375"), 3);
    CHECK(raw_exec(path, "UPDATE latency SET unstable = 2") == SQLITE_CONSTRAINT);
    db_close(db);
    CHECK_MSG(db_merge(tpath("noise-out.db"), &path, 1) == 0, "%s", err_msg());
    CHECK_EQ_LL(q1(tpath("noise-out.db"), "SELECT count(*) FROM latency WHERE unstable = 1 AND others_load = 0.375"), 3);
    CHECK_EQ_LL(q1(tpath("noise-out.db"), "SELECT count(*) FROM latency WHERE unstable = 0 AND others_load IS NULL"), 1);

    const char *v2 = tpath("v2.db");
    CHECK(make_v2(v2) == 0);
    CHECK(raw_exec(v2, "INSERT INTO runs(uid, host, pid, started_at, status) VALUES('u', 'h', 1, 'then', 'done');"
                       " INSERT INTO latency(run_id, module, batch, height, width, dtype, device, engine, ms, created_at)"
                       " VALUES(1, '(forward)', 1, 8, 8, 'fp32', 'cpu', 'cpu', 3.5, 'then')") == SQLITE_OK);
    CHECK(db_open(&db, v2) == 0);
    db_close(db);
    CHECK_EQ_LL(q1(v2, "SELECT value FROM meta WHERE key = 'schema_version'"), DB_SCHEMA_VERSION);
    CHECK_EQ_LL(q1(v2, "SELECT count(*) FROM latency WHERE ms = 3.5 AND unstable = 0 AND others_load IS NULL"), 1);
    CHECK_EQ_LL(q1(v2, "SELECT count(*) FROM runs WHERE uid = 'u' AND status = 'done'"), 1); /* kept through migration 4 */
    CHECK_EQ_LL(q1(v2, "SELECT count(*) FROM pragma_foreign_key_check"), 0);
}

/* A run left 'running' by a process that is gone is marked 'died' by the next
 * open on its host; one whose process lives (this one) stays 'running'. */
static void died(void) {
    const char *path = tpath("died.db");
    Db *db;
    CHECK(db_open(&db, path) == 0);
    db_close(db);
    pid_t gone = fork();
    if (gone == 0) _exit(0);
    waitpid(gone, NULL, 0);
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    char sql[768];
    snprintf(sql, sizeof sql,
             "INSERT INTO runs(uid, host, pid, started_at, status) VALUES('gone', '%s', %d, 'then', 'running'),"
             " ('alive', '%s', %d, 'then', 'running'), ('elsewhere', 'another-host', %d, 'then', 'running')",
             host, (int)gone, host, (int)getpid(), (int)gone);
    CHECK(raw_exec(path, sql) == SQLITE_OK);
    CHECK(db_open(&db, path) == 0);
    db_close(db);
    CHECK_EQ_LL(q1(path, "SELECT count(*) FROM runs WHERE uid = 'gone' AND status = 'died' AND ended_at IS NOT NULL"), 1);
    CHECK_EQ_LL(q1(path, "SELECT count(*) FROM runs WHERE uid IN ('alive', 'elsewhere') AND status = 'running'"), 2);
}

static void kernels(void) {
    const char *path = tpath("kernels.db");
    Db *db;
    CHECK(db_open(&db, path) == 0);
    int64_t run = begin_run(db, "unetlab profile --engine cupti"), model, plan;
    CHECK(db_model_put(db, "sdxl-base", "c1", "w1", 10, &model) == 0);
    CHECK(db_plan_put(db, model, "{}", "h1", 5, &plan) == 0);
    DbKernel k[3];
    make_kernels(k);
    CHECK_MSG(db_kernels_put(db, run, model, 0, &KERNEL_KEY, k, 3) == 0, "%s", err_msg());
    CHECK(db_kernels_put(db, run, model, plan, &KERNEL_KEY, k, 0) == 0);
    CHECK_EQ_LL(q1(path, "SELECT count(*) FROM kernels"), 3);
    char *s = query_str(db, "SELECT repeat, seq, kind, name, module, grid_x, grid_y, grid_z, block_x, registers,"
                            " smem_static, smem_dynamic, bytes, stream, start_ns, duration_ns, graph_node"
                            " FROM kernels ORDER BY id", "csv");
    CHECK_MSG(s && !strcmp(s, "repeat,seq,kind,name,module,grid_x,grid_y,grid_z,block_x,registers,smem_static,"
                              "smem_dynamic,bytes,stream,start_ns,duration_ns,graph_node\n"
                              "0,0,kernel,_Z6conv2dPKfPf,down_blocks.0.resnets.0,128,2,1,256,64,1024,49152,,7,0,15000,\n"
                              "0,1,memcpy,memcpy DtoD,,,,,,,,,1048576,7,16000,2000,42\n"
                              "1,0,memset,memset,mid_block,,,,,,,,4096,13,0,500,\n"), "kernels: %s", s);
    free(s);
    /* The key, the run, the model; plan 0 is NULL. */
    CHECK_EQ_LL(q1(path, "SELECT count(*) FROM kernels k JOIN runs r ON r.id = k.run_id JOIN models m ON m.id = k.model_id"
                         " WHERE k.plan_id IS NULL AND k.batch = 1 AND k.height = 1024 AND k.width = 1024"
                         " AND k.tokens = 77 AND k.dtype = 'f16' AND k.device = 'NVIDIA H100' AND k.engine = 'cupti'"
                         " AND r.command_line = 'unetlab profile --engine cupti' AND m.config_hash = 'c1'"), 3);
    char b[64];
    qs(path, "SELECT created_at FROM kernels WHERE id = 1", b, sizeof b);
    CHECK_MSG(strlen(b) == 24 && b[10] == 'T' && b[23] == 'Z', "created_at '%s'", b);
    CHECK_EQ_LL(q1(path, "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name = 'kernels_run'"), 1);
    /* A batch with one bad row stores nothing. */
    DbKernel bad[2] = {k[0], k[1]};
    bad[1].kind = "launch";
    CHECK_ERR(db_kernels_put(db, run, model, plan, &KERNEL_KEY, bad, 2), ERR_DB, "CHECK constraint failed");
    bad[1].kind = "memcpy", bad[1].name = NULL;
    CHECK_ERR(db_kernels_put(db, run, model, plan, &KERNEL_KEY, bad, 2), ERR_DB, "NOT NULL constraint failed");
    CHECK_ERR(db_kernels_put(db, 999, model, plan, &KERNEL_KEY, k, 1), ERR_DB, "FOREIGN KEY constraint failed");
    CHECK_EQ_LL(q1(path, "SELECT count(*) FROM kernels"), 3);
    db_close(db);

    /* A version 1 DB is migrated on open, its rows kept; merging one unmigrated is refused. */
    const char *v1 = tpath("v1.db");
    CHECK(make_v1(v1) == 0);
    CHECK(raw_exec(v1, "INSERT INTO calib_sets(hash, n_samples, created_at) VALUES('old', 2, 'then')") == SQLITE_OK);
    CHECK_EQ_LL(q1(v1, "SELECT count(*) FROM sqlite_schema WHERE name = 'kernels'"), 0);
    const char *v1b = tpath("v1b.db");
    CHECK(make_v1(v1b) == 0);
    char older[64];
    snprintf(older, sizeof older, "schema version 1 is older than this unetlab's %d", DB_SCHEMA_VERSION);
    CHECK_ERR(db_merge(tpath("v1out.db"), &v1b, 1), ERR_DB, older);
    CHECK(db_open(&db, v1) == 0);
    CHECK_EQ_LL(q1(v1, "SELECT value FROM meta WHERE key = 'schema_version'"), DB_SCHEMA_VERSION);
    CHECK_EQ_LL(q1(v1, "SELECT count(*) FROM sqlite_schema WHERE name IN ('kernels', 'kernels_run')"), 2);
    CHECK_EQ_LL(q1(v1, "SELECT count(*) FROM calib_sets WHERE hash = 'old'"), 1);
    run = begin_run(db, "after migration");
    CHECK(db_kernels_put(db, run, 0, 0, &KERNEL_KEY, k, 3) == 0);
    CHECK_EQ_LL(q1(v1, "SELECT count(*) FROM kernels WHERE model_id IS NULL"), 3);
    db_close(db);
    /* Migrated, it merges. */
    CHECK_MSG(db_merge(tpath("v1out.db"), &v1, 1) == 0, "%s", err_msg());
    CHECK_EQ_LL(q1(tpath("v1out.db"), "SELECT count(*) FROM kernels"), 3);
}

typedef struct {
    int n;
    double sum;
    int nan;
} RowAcc;

static void acc_row(void *ctx, const char *point, int sample, double timestep, const char *metric, double value) {
    RowAcc *a = ctx;
    a->n++;
    if (isnan(value)) a->nan++;
    else a->sum += value;
    (void)point, (void)sample, (void)timestep, (void)metric;
}

static void job_flow(void) {
    const char *path = tpath("jobs.db");
    Db *db;
    CHECK(db_open(&db, path) == 0);
    int64_t ids[4], id, again;
    int done = -1;
    CHECK(make_jobs(db, 4, 0, ids) == 0);
    CHECK(db_job_ensure(db, 1, 1, 1, 1, "fp32", &id, &done) == 0);
    CHECK(id == ids[0] && done == 0);
    int64_t run = begin_run(db, "flow");
    CHECK(db_job_claim(db, run, ids, 4, 60, &id) == 0);
    CHECK_EQ_LL(id, ids[0]);
    CHECK_EQ_LL(q1(path, "SELECT status = 'running' AND lease_until > claimed_at FROM eval_jobs WHERE id = 1"), 1);
    CHECK(db_job_claim(db, run, ids, 4, 60, &again) == 0);
    CHECK_EQ_LL(again, ids[1]);  /* the first is held by a live claimer */

    DbEvalRow rows[R];
    make_rows(rows, 0.5);
    CHECK(db_job_finish(db, ids[0], run, rows, R) == 0);
    CHECK(db_job_ensure(db, 1, 1, 1, 1, "fp32", &id, &done) == 0);
    CHECK(id == ids[0] && done == 1);
    make_rows(rows, 9.0);
    CHECK(db_job_finish(db, ids[0], run, rows, R) == 0);   /* done already: kept as it is */
    CHECK_EQ_LL(q1(path, "SELECT count(*) FROM eval_results"), R);
    CHECK_EQ_LL(q1(path, "SELECT count(*) FROM eval_jobs WHERE status = 'done' AND finished_at IS NOT NULL"
                         " AND lease_until IS NULL"), 1);
    RowAcc a = {0};
    CHECK(db_job_rows(db, ids[0], acc_row, &a) == 0);
    CHECK(a.n == R && a.sum == 0.5 * R);
    CHECK_ERR(db_job_finish(db, 777, run, rows, R), ERR_DB, "no eval job 777");
    /* A batch that fails leaves nothing: a duplicate row aborts the whole finish. */
    DbEvalRow dup[2] = {rows[0], rows[0]};
    CHECK_ERR(db_job_finish(db, ids[1], run, dup, 2), ERR_DB, "UNIQUE constraint failed");
    CHECK_EQ_LL(q1(path, "SELECT count(*) FROM eval_results WHERE job_id = 2"), 0);
    char b[64];
    CHECK(!strcmp(qs(path, "SELECT status FROM eval_jobs WHERE id = 2", b, sizeof b), "running"));
    /* NaN is stored as NULL and read back as NaN. */
    make_rows(rows, NAN);
    CHECK(db_job_finish(db, ids[1], run, rows, R) == 0);
    a = (RowAcc){0};
    CHECK(db_job_rows(db, ids[1], acc_row, &a) == 0);
    CHECK(a.n == R && a.nan == R);

    /* Leases: a claimer on another host is judged by its lease alone. */
    int64_t other = begin_run(db, "other host");
    CHECK(db_job_claim(db, other, &ids[2], 1, 60, &id) == 0 && id == ids[2]);
    CHECK(raw_exec(path, "UPDATE runs SET host = 'elsewhere' WHERE command_line = 'other host'") == SQLITE_OK);
    CHECK(db_job_claim(db, run, &ids[2], 1, 60, &id) == 0);
    CHECK_EQ_LL(id, 0);
    CHECK(raw_exec(path, "UPDATE eval_jobs SET lease_until = '2000-01-01T00:00:00.000Z' WHERE id = 3") == SQLITE_OK);
    CHECK(db_job_claim(db, run, &ids[2], 1, 60, &id) == 0);
    CHECK_EQ_LL(id, ids[2]);
    CHECK_EQ_LL(q1(path, "SELECT run_id FROM eval_jobs WHERE id = 3"), run);
    /* A run that ended leaves its job to others; lease_s 0 means no lease. */
    int64_t ended = begin_run(db, "ended");
    CHECK(db_job_claim(db, ended, &ids[3], 1, 0, &id) == 0 && id == ids[3]);
    CHECK_EQ_LL(q1(path, "SELECT lease_until IS NULL FROM eval_jobs WHERE id = 4"), 1);
    CHECK(db_job_claim(db, run, &ids[3], 1, 60, &id) == 0 && id == 0);
    CHECK(db_run_end(db, ended, "interrupted") == 0);
    CHECK(db_job_claim(db, run, &ids[3], 1, 60, &id) == 0 && id == ids[3]);

    /* A long candidate list (bogus ids, repeats) with one pending job at its end. */
    int64_t more[1], many[600];
    int64_t model, plan, calib;
    CHECK(db_model_put(db, "sdxl-base", "cfg-hash", "weights-hash", 0, &model) == 0);
    CHECK(db_calib_put(db, "calib-hash", 4, NULL, 0, 0, &calib) == 0);
    CHECK(db_plan_put(db, model, "{}", "plan-extra", 1, &plan) == 0);
    CHECK(db_job_ensure(db, model, plan, calib, 1, "fp32", &more[0], &done) == 0 && done == 0);
    for (int i = 0; i < 599; i++) many[i] = i % 3 ? 100000 + i : ids[i % 4];
    many[599] = more[0];
    CHECK(db_job_claim(db, run, many, 600, 60, &id) == 0);
    CHECK_EQ_LL(id, more[0]);
    CHECK(db_job_claim(db, run, many, 600, 60, &id) == 0);
    CHECK_EQ_LL(id, 0);
    CHECK(db_job_claim(db, run, many, 0, 60, &id) == 0 && id == 0);
    db_close(db);
}

/* A worker process: claims and finishes until nothing is left; each row's
 * value is its index k. Exits 0, or 1 with the error on stderr. */
static void worker(const char *path, int k, int barrier_fd, int sleep_us) {
    Db *db;
    char cmd[32];
    snprintf(cmd, sizeof cmd, "child %d", k);
    if (db_open(&db, path)) goto fail;
    int64_t run = begin_run(db, cmd), ids[100], id;
    if (!run) goto fail;
    for (int i = 0; i < 100; i++) ids[i] = i + 1;
    if (barrier_fd >= 0) {
        char c;
        while (read(barrier_fd, &c, 1) > 0) {}
    }
    DbEvalRow rows[R];
    make_rows(rows, k);
    for (;;) {
        if (db_job_claim(db, run, ids, 100, 600, &id)) goto fail;
        if (!id) break;
        usleep((useconds_t)sleep_us);
        if (db_job_finish(db, id, run, rows, R)) goto fail;
    }
    db_close(db);
    _exit(0);
fail:
    fprintf(stderr, "worker %d: %s\n", k, err_msg());
    _exit(1);
}

/* Eight processes creating the same new DB at once all get it, migrated once. */
static void concurrent_create(void) {
    for (int round = 0; round < 3; round++) {
        char name[32];
        snprintf(name, sizeof name, "new%d.db", round);
        const char *path = tpath(name);
        pid_t pids[8];
        for (int k = 0; k < 8; k++)
            if ((pids[k] = fork()) == 0) {
                Db *db;
                if (db_open(&db, path)) {
                    fprintf(stderr, "concurrent open %d: %s\n", k, err_msg());
                    _exit(1);
                }
                db_close(db);
                _exit(0);
            }
        int ok = 0;
        for (int k = 0; k < 8; k++) {
            int status = 0;
            waitpid(pids[k], &status, 0);
            ok += WIFEXITED(status) && WEXITSTATUS(status) == 0;
        }
        CHECK_EQ_LL(ok, 8);
        CHECK_EQ_LL(q1(path, "SELECT value FROM meta WHERE key = 'schema_version'"), DB_SCHEMA_VERSION);
        CHECK_EQ_LL(q1(path, "SELECT count(*) FROM meta"), 1);
    }
}

static void four_processes(void) {
    const char *path = tpath("four.db");
    Db *db;
    int64_t ids[40];
    CHECK(db_open(&db, path) == 0);
    CHECK(make_jobs(db, 40, 0, ids) == 0);
    /* No connection crosses a fork: SQLite's locks are per process. */
    db_close(db);
    int fd[2];
    CHECK(pipe(fd) == 0);
    pid_t pids[4];
    for (int k = 0; k < 4; k++) {
        pids[k] = fork();
        if (pids[k] == 0) {
            close(fd[1]);
            worker(path, k, fd[0], 500 + 300 * k);
        }
    }
    close(fd[0]);
    usleep(20000);   /* let all four open the DB, then start them together */
    close(fd[1]);
    for (int k = 0; k < 4; k++) {
        int status = 0;
        waitpid(pids[k], &status, 0);
        CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "worker %d status %d", k, status);
    }
    CHECK_EQ_LL(q1(path, "SELECT count(*) FROM eval_jobs WHERE status = 'done'"), 40);
    CHECK_EQ_LL(q1(path, "SELECT count(*) FROM eval_results"), 40 * R);
    /* Every job's rows come from one child, and that child is the run the job names. */
    CHECK_EQ_LL(q1(path, "SELECT count(*) FROM (SELECT job_id FROM eval_results GROUP BY job_id"
                         " HAVING count(*) <> 3 OR min(value) <> max(value))"), 0);
    CHECK_EQ_LL(q1(path, "SELECT count(*) FROM eval_jobs j JOIN runs r ON r.id = j.run_id WHERE r.command_line ="
                         " 'child ' || (SELECT CAST(min(value) AS INTEGER) FROM eval_results WHERE job_id = j.id)"),
                40);
    long long workers = q1(path, "SELECT count(DISTINCT run_id) FROM eval_jobs");
    CHECK_MSG(workers >= 2, "only %lld of 4 processes got a job", workers);
    printf("test_db: 4 processes: jobs per process %lld %lld %lld %lld\n",
           q1(path, "SELECT count(*) FROM eval_jobs j JOIN runs r ON r.id = j.run_id WHERE r.command_line = 'child 0'"),
           q1(path, "SELECT count(*) FROM eval_jobs j JOIN runs r ON r.id = j.run_id WHERE r.command_line = 'child 1'"),
           q1(path, "SELECT count(*) FROM eval_jobs j JOIN runs r ON r.id = j.run_id WHERE r.command_line = 'child 2'"),
           q1(path, "SELECT count(*) FROM eval_jobs j JOIN runs r ON r.id = j.run_id WHERE r.command_line = 'child 3'"));
}

static void sigkill(void) {
    enum { N = 100 };
    const char *path = tpath("kill.db");
    Db *db;
    int64_t ids[N];
    CHECK(db_open(&db, path) == 0);
    CHECK(make_jobs(db, N, 0, ids) == 0);
    db_close(db);
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    srand(seed);
    /* Five runs killed after a random few milliseconds, anywhere in their loop. */
    for (int round = 0; round < 5; round++) {
        pid_t pid = fork();
        if (pid == 0) worker(path, 10 + round, -1, 2000);
        usleep((useconds_t)(5000 + 5000 * round + rand() % 5000));
        kill(pid, SIGKILL);
        int status = 0;
        waitpid(pid, &status, 0);   /* reaped: a zombie would still look alive */
        CHECK_MSG(WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) == 0), "round %d status %d",
                  round, status);
    }
    /* One more, killed for certain while it holds a claimed job. */
    int fd[2];
    CHECK(pipe(fd) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        Db *d;
        int64_t run, id = 0, all[N];
        for (int i = 0; i < N; i++) all[i] = i + 1;
        if (db_open(&d, path) || !(run = begin_run(d, "held")) || db_job_claim(d, run, all, N, 600, &id)) id = -1;
        if (write(fd[1], &id, sizeof id) != sizeof id) _exit(1);
        pause();
        _exit(0);
    }
    int64_t held = 0;
    CHECK(read(fd[0], &held, sizeof held) == sizeof held);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(fd[0]);
    close(fd[1]);
    CHECK_MSG(held > 0, "the held job: %lld", (long long)held);
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT j.status = 'running' AND r.pid = %d FROM eval_jobs j JOIN runs r ON r.id = j.run_id"
             " WHERE j.id = %lld", (int)pid, (long long)held);
    CHECK_EQ_LL(q1(path, sql), 1);
    printf("test_db: SIGKILL (seed %u): %lld of %d jobs done before the final run\n", seed,
           q1(path, "SELECT count(*) FROM eval_jobs WHERE status = 'done'"), N);

    /* A fresh run finishes the rest, the dead runs' jobs included. */
    CHECK(db_open(&db, path) == 0);
    int64_t run = begin_run(db, "final"), id;
    DbEvalRow rows[R];
    make_rows(rows, 99);
    int claimed = 0, took_held = 0;
    for (;;) {
        if (db_job_claim(db, run, ids, N, 600, &id)) {
            CHECK_MSG(0, "claim: %s", err_msg());
            break;
        }
        if (!id) break;
        claimed++;
        took_held |= id == held;
        if (db_job_finish(db, id, run, rows, R)) {
            CHECK_MSG(0, "finish: %s", err_msg());
            break;
        }
    }
    db_close(db);
    CHECK(claimed > 0 && took_held);
    CHECK_EQ_LL(q1(path, "SELECT count(*) FROM eval_jobs WHERE status = 'done'"), N);
    CHECK_EQ_LL(q1(path, "SELECT count(*) FROM eval_results"), N * R);
    CHECK_EQ_LL(q1(path, "SELECT count(*) FROM (SELECT job_id FROM eval_results GROUP BY job_id"
                         " HAVING count(*) <> 3 OR min(value) <> max(value))"), 0);
    /* A run killed before its first insert leaves no row, so up to 7. */
    CHECK(q1(path, "SELECT count(*) FROM runs") <= 7);
    CHECK_EQ_LL(q1(path, "SELECT count(*) FROM runs WHERE command_line IN ('held', 'final')"), 2);
}

/* A shard: its own key insertion order (reverse shifts every id), the same
 * natural keys, and only the jobs whose index has parity `part` (2 = all). */
static int make_shard(const char *path, int reverse, int part, int64_t *run_out) {
    enum { N = 8 };
    Db *db;
    int64_t ids[N], id, model, other, run = 0;
    if (db_open(&db, path)) return 1;
    int rc = 0;
    if (reverse) rc = db_model_put(db, "segmind-vega", "cfg-vega", "weights-vega", 745225604, &other);
    rc = rc || !(run = begin_run(db, path)) || make_jobs(db, N, reverse, ids) ||
         db_model_put(db, "sdxl-base", "cfg-hash", "weights-hash", 0, &model);
    DbModule mods[2] = {{"mid_block", "UNetMidBlock2DCrossAttn", 70, 700}, {"conv_in", "Conv2d", 3, 30}};
    DbCandidate cand = {"mid_block.attentions.0", "mid_block_reduction", 40, 400, 0};
    if (!rc) {
        int64_t base, student;
        rc = db_modules_put(db, model, "b1_1024x1024_t77", mods, 2) ||
             db_plan_put(db, model, "{}", "plan-base", 2567, &base) ||
             db_plan_put(db, model, "{\"drop\":[\"mid\"]}", "plan-nomid", 2527, &student);
        cand.plan_id = student;
        rc = rc || db_candidates_put(db, model, base, &cand, 1);
    }
    for (int k = 0; !rc && k < N; k++) {
        if (part != 2 && k % 2 != part) continue;
        DbEvalRow rows[R];
        make_rows(rows, 10 * k + 0.25);
        rc = db_job_claim(db, run, &ids[k], 1, 60, &id) || id != ids[k] || db_job_finish(db, id, run, rows, R);
    }
    rc = rc || db_run_end(db, run, "done");
    if (rc) fprintf(stderr, "make_shard '%s': %s\n", path, err_msg());
    *run_out = run;
    db_close(db);
    return rc;
}

static const char RESULTS_SQL[] =
    "SELECT m.config_hash, m.weights_hash, p.plan_hash, c.hash, j.metric_version, r.point, r.sample, r.metric, r.value"
    " FROM eval_results r JOIN eval_jobs j ON j.id = r.job_id JOIN models m ON m.id = j.model_id"
    " JOIN plans p ON p.id = j.plan_id JOIN calib_sets c ON c.id = j.calib_id ORDER BY 1, 2, 3, 4, 5, 6, 7, 8";
static const char COUNTS_SQL[] =
    "SELECT (SELECT count(*) FROM runs) AS runs, (SELECT count(*) FROM models) AS models,"
    " (SELECT count(*) FROM modules) AS modules, (SELECT count(*) FROM plans) AS plans,"
    " (SELECT count(*) FROM candidates) AS candidates, (SELECT count(*) FROM calib_sets) AS calib,"
    " (SELECT count(*) FROM eval_jobs) AS jobs, (SELECT count(*) FROM eval_jobs WHERE status = 'done') AS done,"
    " (SELECT count(*) FROM eval_results) AS results, (SELECT count(*) FROM latency) AS latency,"
    " (SELECT count(*) FROM kernels) AS kernels";

static void merge(void) {
    const char *full = tpath("full.db"), *s1 = tpath("s1.db"), *s2 = tpath("s2.db"), *out = tpath("merged.db");
    int64_t r_full, r1, r2;
    CHECK(make_shard(full, 0, 2, &r_full) == 0);
    CHECK(make_shard(s1, 0, 0, &r1) == 0);
    CHECK(make_shard(s2, 1, 1, &r2) == 0);
    CHECK(raw_exec(s1, "INSERT INTO latency(run_id, module, batch, height, width, dtype, device, engine, ms, created_at)"
                       " VALUES(1, 'mid_block', 1, 1024, 1024, 'f16', 'H100', 'cupti', 1.5, '2024-01-01T00:00:00.000Z')")
          == SQLITE_OK);
    /* Kernel rows in the shard whose ids are shifted (its model and plans came second). */
    Db *db;
    int64_t model, plan, calib, job;
    int done;
    DbKernel k[3];
    make_kernels(k);
    CHECK(db_open(&db, s2) == 0);
    CHECK(db_model_put(db, "sdxl-base", "cfg-hash", "weights-hash", 0, &model) == 0);
    CHECK(db_plan_put(db, model, "{}", "plan-base", 2567, &plan) == 0);
    CHECK(model == 2);
    CHECK(db_kernels_put(db, r2, model, plan, &KERNEL_KEY, k, 3) == 0);
    db_close(db);
    /* The output already holds one of the jobs, pending. */
    CHECK(db_open(&db, out) == 0);
    CHECK(db_model_put(db, "sdxl-base", "cfg-hash", "weights-hash", 0, &model) == 0);
    CHECK(db_calib_put(db, "calib-hash", 4, NULL, 0, 0, &calib) == 0);
    CHECK(db_plan_put(db, model, "{}", "plan-003", 997, &plan) == 0);
    CHECK(db_job_ensure(db, model, plan, calib, 1, "fp32", &job, &done) == 0 && !done);
    db_close(db);

    const char *in[2] = {s1, s2};
    CHECK_MSG(db_merge(out, in, 2) == 0, "%s", err_msg());
    Db *dfull, *dout;
    CHECK(db_open(&dfull, full) == 0 && db_open(&dout, out) == 0);
    char *want = query_str(dfull, RESULTS_SQL, "csv"), *got = query_str(dout, RESULTS_SQL, "csv");
    CHECK(want && got && strlen(want) > 100);
    CHECK_MSG(want && got && !strcmp(want, got), "merged results differ:\n%s\nvs one run:\n%s", got, want);
    CHECK(db_job_ensure(dout, model, plan, calib, 1, "fp32", &job, &done) == 0 && done);
    char *counts = query_str(dout, COUNTS_SQL, "csv");
    CHECK_MSG(counts && !strcmp(counts, "runs,models,modules,plans,candidates,calib,jobs,done,results,latency,kernels\n"
                                        "2,2,2,10,1,1,8,8,24,1,3\n"), "counts: %s", counts);
    /* Kernel rows point at the merged run, model and plan. */
    CHECK_EQ_LL(q1(out, "SELECT count(*) FROM kernels k JOIN runs r ON r.id = k.run_id JOIN models m ON m.id = k.model_id"
                        " JOIN plans p ON p.id = k.plan_id WHERE r.command_line LIKE '%s2.db' AND m.config_hash = 'cfg-hash'"
                        " AND p.plan_hash = 'plan-base' AND p.model_id = m.id"), 3);
    CHECK_EQ_LL(q1(out, "SELECT sum(duration_ns) FROM kernels"), 17500);
    /* Merging again, or an input twice, adds nothing. */
    const char *again[3] = {s1, s2, s1};
    CHECK_MSG(db_merge(out, again, 3) == 0, "%s", err_msg());
    char *got2 = query_str(dout, RESULTS_SQL, "csv"), *counts2 = query_str(dout, COUNTS_SQL, "csv");
    CHECK(got && got2 && !strcmp(got, got2));
    CHECK(counts && counts2 && !strcmp(counts, counts2));
    /* Runs keep their provenance and the jobs point at them. */
    CHECK_EQ_LL(q1(out, "SELECT count(*) FROM eval_jobs j JOIN runs r ON r.id = j.run_id"
                        " WHERE r.git_commit = 'abc123' AND r.status = 'done'"), 8);
    CHECK_EQ_LL(q1(out, "SELECT count(*) FROM runs WHERE command_line LIKE '%s1.db'"), 1);
    free(want), free(got), free(got2), free(counts), free(counts2);
    db_close(dfull);
    db_close(dout);

    /* Bad inputs name themselves; the output is left as it was. */
    const char *missing = tpath("missing.db"), *garbage = tpath("garbage.db"), *newer = tpath("newer.db");
    char msg[600];
    snprintf(msg, sizeof msg, "'%s': cannot read", missing);
    CHECK_ERR(db_merge(out, &missing, 1), ERR_DB, msg);
    snprintf(msg, sizeof msg, "'%s': file is not a database", garbage);
    const char *bad[2] = {s1, garbage};
    CHECK_ERR(db_merge(out, bad, 2), ERR_DB, msg);
    CHECK_ERR(db_merge(out, &newer, 1), ERR_DB, "schema version 99 is newer");
    CHECK_ERR(db_merge(out, &out, 1), ERR_DB, "is the merge output itself");
    CHECK_EQ_LL(q1(out, "SELECT count(*) FROM runs"), 2);
}

static void query(void) {
    const char *path = tpath("a.db");
    Db *db;
    CHECK(db_open(&db, path) == 0);
    char *s = query_str(db, "SELECT 1 AS a, 'x,y' AS b, NULL AS c, 2.5 AS d, 'say \"hi\"' AS e", "csv");
    CHECK_MSG(s && !strcmp(s, "a,b,c,d,e\n1,\"x,y\",,2.5,\"say \"\"hi\"\"\"\n"), "csv: %s", s);
    free(s);
    s = query_str(db, "SELECT 1 AS a, 'x,y' AS b, NULL AS c, 2.5 AS d, 'say \"hi\"' AS e,"
                      " 9007199254740993 AS big", "json");
    CHECK_MSG(s && !strcmp(s, "[{\"a\":1,\"b\":\"x,y\",\"c\":null,\"d\":2.5,\"e\":\"say \\\"hi\\\"\","
                              "\"big\":9007199254740993}]\n"), "json: %s", s);
    free(s);
    s = query_str(db, "SELECT 'ab' AS name, 12345 AS n UNION ALL SELECT 'abcdef', 7", "text");
    CHECK_MSG(s && !strcmp(s, "name        n\nab      12345\nabcdef      7\n"), "text: [%s]", s);
    free(s);
    s = query_str(db, "SELECT spec, params FROM models WHERE id = 1;", "json");
    CHECK_MSG(s && !strcmp(s, "[{\"spec\":\"sdxl-base\",\"params\":10}]\n"), "json: %s", s);
    free(s);
    s = query_str(db, "SELECT name FROM modules WHERE 0", "json");
    CHECK(s && !strcmp(s, "[]\n"));
    free(s);

    FILE *devnull = fopen("/dev/null", "w");
    CHECK_ERR(db_query(db, "INSERT INTO calib_sets(hash, n_samples, created_at) VALUES('x', 1, 'now')", "csv",
                       devnull), ERR_DB, "readonly");
    CHECK_EQ_LL(q1(path, "SELECT count(*) FROM calib_sets WHERE hash = 'x'"), 0);
    CHECK_ERR(db_query(db, "CREATE TEMP TABLE t(x)", "csv", devnull), ERR_DB, "'");
    CHECK_ERR(db_query(db, "SELEC * FROM runs", "csv", devnull), ERR_USAGE, "syntax error");
    CHECK_ERR(db_query(db, "SELECT * FROM no_such_table", "text", devnull), ERR_USAGE, "no such table: no_such_table");
    CHECK_ERR(db_query(db, "SELECT 1; DELETE FROM runs", "csv", devnull), ERR_USAGE, "more than one statement");
    CHECK_ERR(db_query(db, "  ", "csv", devnull), ERR_USAGE, "no SQL statement");
    CHECK_ERR(db_query(db, "SELECT 1", "xml", devnull), ERR_USAGE, "'xml'");
    fclose(devnull);
    db_close(db);
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

/* Schema 5: a version 4 DB's jobs become fp32 jobs, rows kept; a bf16 job of
 * the same student is another job (never a reuse of the fp32 one), and a merge
 * keeps the two apart; a calibration set stored without its size gets it. */
static void dtype_jobs(void) {
    const char *v4 = tpath("v4.db");
    CHECK(make_v4(v4) == 0);
    CHECK(raw_exec(v4, "INSERT INTO runs(uid, host, pid, started_at, status) VALUES('u4', 'h', 1, 'then', 'done');"
                       " INSERT INTO models(spec, config_hash, weights_hash, params, created_at) VALUES('m', 'c', 'w', 9, 't');"
                       " INSERT INTO plans(model_id, plan_hash, plan_json, total_params, created_at) VALUES(1, 'p', '{}', 9, 't');"
                       " INSERT INTO calib_sets(hash, n_samples, created_at) VALUES('k', 2, 't');"
                       " INSERT INTO eval_jobs(model_id, plan_id, calib_id, metric_version, status, run_id)"
                       " VALUES(1, 1, 1, 3, 'done', 1);"
                       " INSERT INTO eval_results VALUES(1, 'output', 0, 500, 5, 'nmse', 0.25)") == SQLITE_OK);
    Db *db;
    CHECK(db_open(&db, v4) == 0);
    CHECK_EQ_LL(q1(v4, "SELECT count(*) FROM eval_jobs WHERE dtype = 'fp32' AND status = 'done'"), 1);
    CHECK_EQ_LL(q1(v4, "SELECT count(*) FROM eval_results WHERE job_id = 1"), 1);
    int64_t job, calib;
    int done;
    CHECK(db_job_ensure(db, 1, 1, 1, 3, "fp32", &job, &done) == 0 && job == 1 && done);
    CHECK(db_job_ensure(db, 1, 1, 1, 3, "bf16", &job, &done) == 0 && job != 1 && !done);
    CHECK(db_calib_put(db, "k", 2, NULL, 256, 128, &calib) == 0 && calib == 1);
    CHECK_EQ_LL(q1(v4, "SELECT height * 1000 + width FROM calib_sets WHERE id = 1"), 256128);
    CHECK(db_calib_put(db, "k", 2, NULL, 64, 64, &calib) == 0); /* a size once known stays */
    CHECK_EQ_LL(q1(v4, "SELECT height * 1000 + width FROM calib_sets WHERE id = 1"), 256128);
    int64_t run = begin_run(db, "eval --dtype bf16");
    DbEvalRow r = {"output", 0, 500, 5, "nmse", 0.5};
    CHECK(db_job_finish(db, job, run, &r, 1) == 0);
    db_close(db);
    const char *out = tpath("v4merged.db");
    CHECK_MSG(db_merge(out, &v4, 1) == 0, "%s", err_msg());
    CHECK_EQ_LL(q1(out, "SELECT count(*) FROM eval_jobs WHERE status = 'done'"), 2);
    CHECK_EQ_LL(q1(out, "SELECT round(1000 * sum(r.value * (j.dtype = 'bf16'))) FROM eval_results r"
                        " JOIN eval_jobs j ON j.id = r.job_id"), 500);
    CHECK_EQ_LL(q1(out, "SELECT height FROM calib_sets"), 256);
}

int main(void) {
    if (!test_tmpdir(g_dir, sizeof g_dir, "test_db.")) {
        perror("mkdtemp");
        return 1;
    }
    fflush(stdout);   /* children must not inherit buffered output */
    schema_and_puts();
    bad_dbs();
    job_flow();
    fflush(stdout);
    concurrent_create();
    four_processes();
    fflush(stdout);
    sigkill();
    merge();
    kernels();
    latency_noise();
    dtype_jobs();
    died();
    query();
    nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    TEST_MAIN_END("test_db");
}
