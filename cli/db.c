/* unetlab db query / unetlab db merge: the store, for users and for Slurm
 * job arrays (each shard writes its own DB; merge joins them). */
#include "cli.h"
#include "db.h"
#include "err.h"
#include <stdio.h>
#include <string.h>

static const char USAGE[] =
    "usage: unetlab db query --db DB SQL [--format text|csv|json]\n"
    "       unetlab db merge A.db B.db ... -o OUT.db\n"
    "\n"
    "query runs one read-only SQL statement (the schema is in README.md, \"The store\").\n"
    "merge copies models, plans, candidates, calibration sets, runs and finished results\n"
    "of each input into OUT.db (created if absent), matched by their natural keys, so\n"
    "that N merged shards equal one run; merging the same input twice adds nothing.\n";

int cmd_db(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        if (argc >= 2) { fputs(USAGE, stdout); return -1; }
        return err_set(ERR_USAGE, "db: expected 'db query' or 'db merge' (see unetlab db --help)");
    }
    if (!strcmp(argv[1], "query")) {
        const char *dbpath = NULL, *fmt = "text", *sql = NULL;
        for (int i = 2; i < argc; i++) {
            if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { fputs(USAGE, stdout); return -1; }
            if (!strcmp(argv[i], "--db") && i + 1 < argc) dbpath = argv[++i];
            else if (!strncmp(argv[i], "--db=", 5)) dbpath = argv[i] + 5;
            else if (!strcmp(argv[i], "--format") && i + 1 < argc) fmt = argv[++i];
            else if (!strncmp(argv[i], "--format=", 9)) fmt = argv[i] + 9;
            else if (argv[i][0] == '-' && argv[i][1] == '-') return err_set(ERR_USAGE, "db query: unknown option '%s' (see unetlab db --help)", argv[i]);
            else if (!sql) sql = argv[i];
            else return err_set(ERR_USAGE, "db query: give the SQL as one argument (quote it)");
        }
        if (!dbpath || !sql) return err_set(ERR_USAGE, "db query: --db DB and an SQL statement are required");
        Format f;
        int rc = cli_format(fmt, &f, 1);
        if (rc) return rc;
        Db *db;
        if ((rc = db_open_existing(&db, dbpath))) return rc; /* a typo must not create an empty DB */
        rc = db_query(db, sql, fmt, stdout);
        db_close(db);
        return rc;
    }
    if (!strcmp(argv[1], "merge")) {
        const char *out = NULL, *in[256];
        int n = 0;
        for (int i = 2; i < argc; i++) {
            if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { fputs(USAGE, stdout); return -1; }
            if ((!strcmp(argv[i], "-o") || !strcmp(argv[i], "--out")) && i + 1 < argc) out = argv[++i];
            else if (argv[i][0] == '-') return err_set(ERR_USAGE, "db merge: unknown option '%s' (see unetlab db --help)", argv[i]);
            else if (n < 256) in[n++] = argv[i];
            else return err_set(ERR_USAGE, "db merge: at most 256 inputs at once");
        }
        if (!out || !n) return err_set(ERR_USAGE, "db merge: inputs and -o OUT.db are required");
        int rc = db_merge(out, in, n);
        if (!rc) fprintf(stderr, "unetlab: merged %d database%s into %s\n", n, n == 1 ? "" : "s", out);
        return rc;
    }
    return err_set(ERR_USAGE, "db: unknown subcommand '%s' (query, merge)", argv[1]);
}
