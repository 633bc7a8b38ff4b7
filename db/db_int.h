/* db_int: what the store's files share (db.h is the contract for everyone
 * else; only db/ includes SQLite). One connection per Db; every sqlite3 call
 * that returns a result code is checked by SQ(), which names the DB path and
 * sqlite's message (with the call and line under UNETLAB_DEBUG=1). */
#ifndef UNETLAB_DB_INT_H
#define UNETLAB_DB_INT_H
#include "db.h"
#include "err.h"
#include <sqlite3.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

static inline int sq_check(const Db *db, int rc, const char *call, int line) {
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

static inline void fin(sqlite3_stmt *st) { (void)sqlite3_finalize(st); }

static inline void rollback(Db *db) {
    if (!sqlite3_get_autocommit(db->h)) (void)sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
}

static inline int bind_text(Db *db, sqlite3_stmt *st, int i, const char *s) {
    int rc = s ? SQ(db, sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT)) : SQ(db, sqlite3_bind_null(st, i));
    return rc < 0 ? ERR_DB : 0;
}
static inline int bind_i64(Db *db, sqlite3_stmt *st, int i, int64_t v) {
    return SQ(db, sqlite3_bind_int64(st, i, v)) < 0 ? ERR_DB : 0;
}
/* 0 stands for "no row" (SQLite ids start at 1): stored as NULL. */
/* agree_results' columns after run_id, in DbAgreeRow's order: what db_agree_put writes and db_agree_rows reads. */
#define AGREE_COLS                                                                                                    \
    "model, kind, metric, setting_a, setting_b, samples, of_samples, bin, students, bootstrap, stage, kendall_tau,"   \
    " tau_lo, tau_hi, spearman_rho, rho_lo, rho_hi, top5, top10, top20, candidate, measured, predicted"

static inline int bind_id(Db *db, sqlite3_stmt *st, int i, int64_t id) {
    return (id ? SQ(db, sqlite3_bind_int64(st, i, id)) : SQ(db, sqlite3_bind_null(st, i))) < 0 ? ERR_DB : 0;
}
/* -1 stands for "not applicable" (a count or index that does not apply): stored as NULL. */
static inline int bind_count(Db *db, sqlite3_stmt *st, int i, int64_t v) {
    return (v >= 0 ? SQ(db, sqlite3_bind_int64(st, i, v)) : SQ(db, sqlite3_bind_null(st, i))) < 0 ? ERR_DB : 0;
}
/* Doubles: SQLite stores a NaN as NULL itself. */
static inline int bind_f64(Db *db, sqlite3_stmt *st, int i, double v) {
    return SQ(db, sqlite3_bind_double(st, i, v)) < 0 ? ERR_DB : 0;
}

/* Steps st to its end; *v = column 0 of its first row when it has one
 * (*found says so; found may be NULL when a row is certain). */
static inline int step_i64(Db *db, sqlite3_stmt *st, int64_t *v, int *found) {
    int rc, got = 0;
    while ((rc = STEP(db, st)) == SQLITE_ROW)
        if (!got++) *v = sqlite3_column_int64(st, 0);
    if (rc < 0) return ERR_DB;
    if (found) *found = got > 0;
    else if (!got) return err_set(ERR_DB, "'%s': %s returned no row", db->path, sqlite3_sql(st));
    return 0;
}

/* Runs a statement with no parameters or one integer ?1, to its end. */
static inline int run1(Db *db, const char *sql, int64_t a) {
    sqlite3_stmt *st;
    if (PREP(db, &st, sql)) return ERR_DB;
    int r = sqlite3_bind_parameter_count(st) && bind_i64(db, st, 1, a) ? -1 : SQLITE_ROW;
    while (r == SQLITE_ROW) r = STEP(db, st);
    fin(st);
    return r < 0 ? ERR_DB : 0;
}

/* A REAL column; NULL (SQLite stores NaN so) comes back as NaN. */
static inline double col_f64(sqlite3_stmt *st, int i) {
    return sqlite3_column_type(st, i) == SQLITE_NULL ? NAN : sqlite3_column_double(st, i);
}
static inline const char *col_text(sqlite3_stmt *st, int i) { return (const char *)sqlite3_column_text(st, i); }

/* The schema version of the DB attached as `schema` (schema.c). */
int db_schema_version(Db *db, const char *schema, int64_t *version);
/* Opens db->path with flags and a busy timeout (schema.c). */
int db_open_conn(Db *db, int flags);

#endif
