/* testsql: SQL straight to a DB file, past unetlab's store (db.h): what the
 * tests use to make a store the tool must cope with (a foreign DB, an old
 * schema, a row edited to a known value). */
#ifndef UNETLAB_TESTSQL_H
#define UNETLAB_TESTSQL_H
#include <sqlite3.h>
#include <stdio.h>

/* Runs sql on the DB file at path (created if absent); SQLite's result code,
 * with its message on stderr when it is not SQLITE_OK. */
static inline int raw_exec(const char *path, const char *sql) {
    sqlite3 *h = NULL;
    char *msg = NULL;
    int rc = sqlite3_open(path, &h);
    if (rc == SQLITE_OK) rc = sqlite3_exec(h, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) fprintf(stderr, "raw_exec '%s': %s: %s\n", path, sql, msg ? msg : sqlite3_errmsg(h));
    sqlite3_free(msg);
    sqlite3_close(h);
    return rc;
}

#endif
