/* query: `unetlab db query`, one read-only statement of the user's on a
 * connection of its own, printed as text, CSV or JSON. Tested by
 * tests/test_db.c (formats, refusals) and tests/cli.sh. */
#include "db_int.h"
#include "numfmt.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

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
    int rc = db_open_conn(&q, SQLITE_OPEN_READONLY);
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
