/* test_report: `unetlab report` through the built binary ($UNETLAB) on a store
 * made here (profiles of both fixtures, a schedule, an eval): every file is
 * written, PNGs are 1000x700, table numbers equal `db query` of the same rows,
 * layer_loss follows forward order; without gnuplot on PATH exit 8 and one
 * line; a failing gnuplot, a missing DB, an unwritable DIR and bad flags fail.
 * What each number is: latencies are the untraced forwards' median, p10, p90
 * as SQL reads them (raw sqlite3 here, not unetlab), with error bars in the
 * .gp; module_latency one tree level a block, stacks adding up to the stored
 * medians; on a copy of the store edited here with known values: unstable
 * rows hollow and flagged, a store without untraced rows marked "(traced)",
 * negative savings left out, k/M tics without decimals, stage labels thinned.
 * On a second store with `unetlab agree` run: the four agree plots and tables
 * (rank_agreement, rank_convergence, timestep_bins, additivity), every .dat
 * number against agree_results; without an agree run they are not made. */
#include "report.h"
#include "test.h"
#include "testcli.h"
#include "testsql.h"
#include <limits.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char ABSBIN[PATH_MAX];

static int exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && sb.st_size > 0;
}

/* Splits one CSV line into at most max fields (quotes handled); returns the count. Fields point into line. */
static int csv_split(char *line, char **f, int max) {
    int n = 0;
    char *s = line, *o;
    while (n < max) {
        f[n++] = o = s;
        if (*s == '"') {
            s++;
            for (;;) {
                if (*s == '"' && s[1] == '"') { *o++ = '"'; s += 2; }
                else if (*s == '"') { s++; break; }
                else if (!*s) break;
                else *o++ = *s++;
            }
        } else
            while (*s && *s != ',' && *s != '\n') *o++ = *s++;
        int end = *s != ',';
        if (*s) s++;
        *o = '\0';
        if (end) break;
    }
    return n;
}

/* The CSV row (after the header) whose first field is key, split into f; 0 when none. */
static int csv_row(const char *text, const char *key, char *copy, size_t size, char **f, int max) {
    const char *line = strchr(text, '\n');
    while (line && *++line) {
        size_t len = strcspn(line, "\n");
        if (len >= size) len = size - 1;
        memcpy(copy, line, len);
        copy[len] = '\0';
        int n = csv_split(copy, f, max);
        if (n && !strcmp(f[0], key)) return n;
        line = strchr(line, '\n');
    }
    return 0;
}

static int count_lines(const char *s) {
    int n = 0;
    for (; s && *s; s++) n += *s == '\n';
    return n;
}

/* Data rows of a .dat file: lines that are neither comments nor blank. */
static int dat_rows(const char *path) {
    char *s = slurp(path, NULL);
    int n = 0;
    for (char *l = s; l && *l;) {
        size_t len = strcspn(l, "\n");
        if (len && *l != '#') n++;
        l += len + (l[len] == '\n');
    }
    free(s);
    return n;
}

/* PNG signature, then IHDR width and height (bytes 16-23, big-endian). */
static void check_png(const char *path) {
    unsigned char b[24] = {0};
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(b, 1, sizeof b, f) : 0;
    if (f) fclose(f);
    static const unsigned char SIG[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    CHECK_MSG(n == 24 && !memcmp(b, SIG, 8), "%s: no PNG signature", path);
    uint32_t w = (uint32_t)b[16] << 24 | (uint32_t)b[17] << 16 | (uint32_t)b[18] << 8 | b[19];
    uint32_t h = (uint32_t)b[20] << 24 | (uint32_t)b[21] << 16 | (uint32_t)b[22] << 8 | b[23];
    CHECK_MSG(w == 1000 && h == 700, "%s: %ux%u, want 1000x700", path, w, h);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int near_rel(const char *a, const char *b, double tol) {
    if (!a || !b || !*a || !*b) return 0;
    double x = strtod(a, NULL), y = strtod(b, NULL);
    return fabs(x - y) <= tol * fmax(fabs(x), fabs(y));
}


/* ---- the store read directly (raw sqlite3, read-only): what the report must equal ---- */

/* The first row of sql: column c as text into txt[c] ("" for NULL) and as a double into num[c]
 * (NaN for NULL); returns the column count, 0 when there is no row (or on error, said on stderr). */
static int sql_row(const char *path, const char *sql, char txt[][256], double *num, int max) {
    sqlite3 *h = NULL;
    sqlite3_stmt *st = NULL;
    int n = 0;
    if (sqlite3_open_v2(path, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW) {
            n = sqlite3_column_count(st);
            if (n > max) n = max;
            for (int c = 0; c < n; c++) {
                const unsigned char *t = sqlite3_column_text(st, c);
                snprintf(txt[c], 256, "%s", t ? (const char *)t : "");
                num[c] = sqlite3_column_type(st, c) == SQLITE_NULL ? NAN : sqlite3_column_double(st, c);
            }
        }
    } else
        fprintf(stderr, "sql_row '%s': %s: %s\n", path, sql, sqlite3_errmsg(h));
    sqlite3_finalize(st);
    sqlite3_close(h);
    return n;
}

/* Column 0 of every row of sql as text (caller frees each and *v); the count, -1 on error. */
static int sql_texts(const char *path, const char *sql, char ***v) {
    sqlite3 *h = NULL;
    sqlite3_stmt *st = NULL;
    int n = 0, r;
    *v = NULL;
    if (sqlite3_open_v2(path, &h, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(h, sql, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "sql_texts '%s': %s: %s\n", path, sql, sqlite3_errmsg(h));
        n = -1;
    } else
        while ((r = sqlite3_step(st)) == SQLITE_ROW) {
            *v = realloc(*v, (size_t)(n + 1) * sizeof **v);
            const unsigned char *t = sqlite3_column_text(st, 0);
            (*v)[n++] = strdup(t ? (const char *)t : "");
        }
    sqlite3_finalize(st);
    sqlite3_close(h);
    return n;
}

static double sql_num(const char *path, const char *sql) {
    char t[1][256];
    double v[1] = {NAN};
    return sql_row(path, sql, t, v, 1) ? v[0] : NAN;
}

/* ---- .dat files, read back ---- */

typedef struct {
    int block;          /* the gnuplot index it is under (its "# block N:" line) */
    char head[512];     /* that line */
    int n;              /* fields */
    char f[16][256];    /* whitespace-separated, a quoted field as one (quotes removed) */
} DatRow;

/* Every data row of a .dat file (caller frees *rows); the count, -1 when it cannot be read. */
static int dat_read(const char *path, DatRow **rows) {
    char *s = slurp(path, NULL);
    *rows = NULL;
    if (!s) return -1;
    int n = 0, cap = 0, block = -1;
    char head[512] = "";
    for (char *l = s; *l;) {
        size_t len = strcspn(l, "\n");
        char line[4096];
        snprintf(line, sizeof line, "%.*s", (int)(len < sizeof line ? len : sizeof line - 1), l);
        l += len + (l[len] == '\n');
        if (!strncmp(line, "# block ", 8)) {
            block = atoi(line + 8);
            snprintf(head, sizeof head, "%.511s", line);
        }
        if (!*line || *line == '#') continue;
        if (n == cap) *rows = realloc(*rows, (size_t)(cap = 2 * cap + 16) * sizeof **rows);
        DatRow *r = &(*rows)[n++];
        memset(r, 0, sizeof *r);
        r->block = block;
        snprintf(r->head, sizeof r->head, "%s", head);
        for (char *p = line; *p && r->n < 16;) {
            while (*p == ' ') p++;
            if (!*p) break;
            char *o = r->f[r->n++];
            if (*p == '"') {
                p++;
                while (*p && *p != '"') *o++ = *p++;
                if (*p) p++;
            } else
                while (*p && *p != ' ') *o++ = *p++;
            *o = '\0';
        }
    }
    free(s);
    return n;
}

static int eq_num(const char *text, double want) {
    if (isnan(want)) return !strcmp(text, "?");
    char *end;
    double v = strtod(text, &end);
    return *text && !*end && fabs(v - want) <= 1e-12 * fmax(fabs(v), fabs(want));
}

/* Depth of a module in the tree: dotted components, list indices not counted. */
static int depth(const char *name) {
    int n = 0;
    for (const char *s = name; *s;) {
        size_t len = strcspn(s, ".");
        if (strspn(s, "0123456789") != len) n++;
        s += len + (s[len] == '.');
    }
    return n;
}

static int is_under(const char *name, const char *parent) {
    size_t l = strlen(parent);
    return !strncmp(name, parent, l) && name[l] == '.';
}

/* The .dat row of a measured model: label lab in the block whose header says batch b. */
static const DatRow *measured_row(const DatRow *r, int n, const char *lab, int b) {
    for (int i = 0; i < n; i++)
        if (r[i].n == 7 && !strcmp(r[i].f[6], lab) && strstr(r[i].head, "measured, models") &&
            strstr(r[i].head, fmt("batch %d,", b)))
            return &r[i];
    return NULL;
}

/* The latest measurement (untraced when u, else traced) of a whole model at batch b: ms, p10, p90, unstable, run_id. */
static int latest_lat(const char *db, const char *spec, int b, int u, double *v) {
    char t[5][256];
    return sql_row(db, fmt("SELECT l.ms, l.ms_p10, l.ms_p90, l.unstable, l.run_id FROM latency l JOIN models m ON"
                           " m.id = l.model_id WHERE m.spec = '%s' AND l.module = '%s' AND l.plan_id IS NULL AND l.batch = %d"
                           " ORDER BY l.created_at DESC, l.id DESC LIMIT 1", spec, u ? "(untraced)" : "(forward)", b),
                   t, v, 5) == 5;
}

/* ---- the latest agree run's plots and tables ---- */

static const char *const AGREE[] = {"rank_agreement", "rank_convergence", "timestep_bins", "additivity"};
#define AGREE_RUN "run_id = (SELECT max(run_id) FROM agree_results)"

/* The text of a .dat block header after key up to the end (or to stop), for looking a row up in SQL. */
static void head_part(const char *head, const char *key, const char *stop, char *out, size_t n) {
    const char *s = strstr(head, key);
    out[0] = '\0';
    if (!s) return;
    s += strlen(key);
    const char *e = stop && strstr(s, stop) ? strstr(s, stop) : s + strlen(s);
    snprintf(out, n, "%.*s", (int)(e - s), s);
}

/* rank_agreement: every cell of the matrix is the stored pair's tau (either order), 1 on the diagonal. */
static void check_agree_matrix(const char *db, const char *out) {
    DatRow *dr = NULL;
    int nd = dat_read(fmt("%s/rank_agreement.dat", out), &dr), diag = 0, cells = 0;
    double nset = sql_num(db, "SELECT count(*) FROM (SELECT setting_a FROM agree_results WHERE kind = 'pair' AND " AGREE_RUN
                              " UNION SELECT setting_b FROM agree_results WHERE kind = 'pair' AND " AGREE_RUN ")");
    CHECK_MSG(nset >= 2 && nd == (int)(nset * nset), "rank_agreement.dat: %d cells for %.0f settings", nd, nset);
    for (int i = 0; i < nd; i++) {
        const DatRow *r = &dr[i];
        CHECK_MSG(r->n == 8, "rank_agreement.dat row %d: %d fields", i, r->n);
        if (r->n != 8) continue;
        if (!strcmp(r->f[0], r->f[1])) {
            diag++;
            CHECK(!strcmp(r->f[2], "1") && !strcmp(r->f[6], r->f[7]));
            continue;
        }
        char t[4][256];
        double v[4];
        int got = sql_row(db, fmt("SELECT kendall_tau, tau_lo, tau_hi, students FROM agree_results WHERE kind = 'pair' AND "
                                  AGREE_RUN " AND ((setting_a = '%s' AND setting_b = '%s') OR (setting_a = '%s' AND"
                                  " setting_b = '%s'))", r->f[6], r->f[7], r->f[7], r->f[6]), t, v, 4);
        cells += got == 4;
        CHECK_MSG(got == 4 && eq_num(r->f[2], v[0]) && eq_num(r->f[3], v[1]) && eq_num(r->f[4], v[2]) && eq_num(r->f[5], v[3]),
                  "%s vs %s: tau %s [%s, %s] vs the stored %s [%s, %s]", r->f[6], r->f[7], r->f[2], r->f[3], r->f[4], t[0],
                  t[1], t[2]);
    }
    CHECK_EQ_LL(diag, (int)nset);
    CHECK_EQ_LL(cells, (int)(2 * sql_num(db, "SELECT count(*) FROM agree_results WHERE kind = 'pair' AND " AGREE_RUN)));
    free(dr);
    char *gp = slurp(fmt("%s/rank_agreement.gp", out), NULL);
    CHECK(gp && strstr(gp, "using 2:1:(0.5):(0.5):3 with boxxyerror") && strstr(gp, "with labels") && strstr(gp, "set cbrange [-1:1]"));
    free(gp);
    /* its table: the stored numbers in the CSV, tau with its interval in the shown cell */
    char *csv = slurp(fmt("%s/rank_agreement.csv", out), NULL), *md = slurp(fmt("%s/rank_agreement.md", out), NULL), row[8192], *f[16];
    char t[6][256];
    double v[6];
    CHECK(sql_row(db, "SELECT kendall_tau, tau_lo, tau_hi, spearman_rho, top10, students FROM agree_results WHERE kind = 'pair' AND "
                  AGREE_RUN " ORDER BY id", t, v, 6) == 6);
    int nf = csv ? csv_row(csv, "tests/fixtures/mini-public", row, sizeof row, f, 16) : 0;
    CHECK_MSG(nf == 15 && eq_num(f[5], v[0]) && eq_num(f[6], v[1]) && eq_num(f[7], v[2]) && eq_num(f[8], v[3]) &&
                  eq_num(f[12], v[4]) && eq_num(f[4], v[5]), "rank_agreement.csv: %d fields", nf);
    CHECK_EQ_LL(count_lines(csv), 1 + (int)sql_num(db, "SELECT count(*) FROM agree_results WHERE kind = 'pair' AND " AGREE_RUN));
    CHECK_MSG(md && strstr(md, fmt("| %.3f [%.3f, %.3f] |", v[0], v[1], v[2])), "rank_agreement.md: the tau cell");
    free(csv), free(md);
}

/* rank_convergence: every stored row of each setting, then its end point (all samples, tau 1). */
static void check_agree_convergence(const char *db, const char *out) {
    DatRow *dr = NULL;
    int nd = dat_read(fmt("%s/rank_convergence.dat", out), &dr), stored = 0, ends = 0;
    for (int i = 0; i < nd; i++) {
        const DatRow *r = &dr[i];
        char set[256], t[5][256];
        double v[5];
        head_part(r->head, ", setting ", " (metric", set, sizeof set);
        CHECK_MSG(r->n == 7 && *set, "rank_convergence.dat row %d: %d fields, setting '%s'", i, r->n, set);
        if (r->n != 7) continue;
        if (!strcmp(r->f[6], "0")) {
            ends++;
            CHECK(!strcmp(r->f[0], r->f[1]) && !strcmp(r->f[2], "1"));
            continue;
        }
        stored++;
        int got = sql_row(db, fmt("SELECT kendall_tau, spearman_rho, top10, of_samples, students FROM agree_results WHERE"
                                  " kind = 'convergence' AND " AGREE_RUN " AND setting_a = '%s' AND samples = %s", set, r->f[0]),
                          t, v, 5);
        CHECK_MSG(got == 5 && eq_num(r->f[2], v[0]) && eq_num(r->f[3], v[1]) && eq_num(r->f[4], v[2]) &&
                      eq_num(r->f[1], v[3]) && eq_num(r->f[5], v[4]),
                  "%s, %s samples: tau %s vs the stored %s", set, r->f[0], r->f[2], t[0]);
    }
    double n = sql_num(db, "SELECT count(*) FROM agree_results WHERE kind = 'convergence' AND " AGREE_RUN);
    CHECK_MSG(n > 0 && stored == (int)n, "rank_convergence.dat: %d of %.0f stored rows", stored, n);
    CHECK_EQ_LL(ends, (int)sql_num(db, "SELECT count(DISTINCT setting_a) FROM agree_results WHERE kind = 'convergence' AND " AGREE_RUN));
    free(dr);
    char *gp = slurp(fmt("%s/rank_convergence.gp", out), NULL), *csv = slurp(fmt("%s/rank_convergence.csv", out), NULL);
    CHECK(gp && strstr(gp, "set logscale x 2") && strstr(gp, "index 0 using 1:3 with linespoints"));
    CHECK_EQ_LL(count_lines(csv), 1 + (int)n);
    free(gp), free(csv);
}

/* timestep_bins: the first setting's stored bin scores, the 40 lowest means first, the teacher left out; bins' taus in the tics. */
static void check_agree_bins(const char *db, const char *out) {
    char **set = NULL;
    CHECK(sql_texts(db, "SELECT setting_a FROM agree_results WHERE kind = 'bin_score' AND " AGREE_RUN " ORDER BY id LIMIT 1", &set) == 1);
    if (!set) return;
    double nbin = sql_num(db, fmt("SELECT count(DISTINCT bin) FROM agree_results WHERE kind = 'bin_score' AND " AGREE_RUN
                                  " AND setting_a = '%s'", set[0]));
    double ncand = sql_num(db, fmt("SELECT count(DISTINCT candidate) FROM agree_results WHERE kind = 'bin_score' AND " AGREE_RUN
                                   " AND setting_a = '%s' AND candidate <> '(none)'", set[0]));
    DatRow *dr = NULL;
    int nd = dat_read(fmt("%s/timestep_bins.dat", out), &dr), nrow = ncand < 40 ? (int)ncand : 40, sorted = 1;
    CHECK_MSG(nbin >= 2 && nd == nrow * (int)nbin, "timestep_bins.dat: %d cells, want %d x %.0f", nd, nrow, nbin);
    double mean = 0, prev = -INFINITY;
    for (int i = 0; i < nd; i++) {
        const DatRow *r = &dr[i];
        CHECK_MSG(r->n == 5 && strcmp(r->f[4], "(none)"), "timestep_bins.dat row %d", i);
        if (r->n != 5) continue;
        char t[1][256];
        double v[1];
        int got = sql_row(db, fmt("SELECT measured FROM agree_results WHERE kind = 'bin_score' AND " AGREE_RUN " AND"
                                  " setting_a = '%s' AND candidate = '%s' AND bin = %s", set[0], r->f[4], r->f[2]), t, v, 1);
        CHECK_MSG(got == 1 && eq_num(r->f[3], v[0]), "%s in bin %s: %s vs the stored %s", r->f[4], r->f[2], r->f[3], t[0]);
        mean += strtod(r->f[3], NULL) / nbin;
        if ((i + 1) % (int)nbin == 0) { /* a candidate's last bin: its mean is no lower than the one above */
            sorted &= mean >= prev * (1 - 1e-12);
            prev = mean, mean = 0;
        }
    }
    CHECK_MSG(sorted, "timestep_bins.dat: candidates not lowest mean first");
    free(dr);
    char t[2][256];
    double v[2];
    CHECK(sql_row(db, fmt("SELECT bin, kendall_tau FROM agree_results WHERE kind = 'bin' AND " AGREE_RUN " AND setting_a = '%s'"
                          " ORDER BY bin LIMIT 1", set[0]), t, v, 2) == 2);
    char *gp = slurp(fmt("%s/timestep_bins.gp", out), NULL), *csv = slurp(fmt("%s/timestep_bins.csv", out), NULL);
    CHECK_MSG(gp && strstr(gp, fmt("\"%.0f-%.0f\\ntau %.2f\"", 100 * v[0], 100 * v[0] + 99, v[1])), "timestep_bins.gp: bin tau tic");
    CHECK_EQ_LL(count_lines(csv), 1 + (int)sql_num(db, "SELECT count(*) FROM agree_results WHERE kind = 'bin' AND " AGREE_RUN));
    free(gp), free(csv), free(set[0]), free(set);
}

/* additivity: each stage's stored measured and predicted loss, what it removed, and their ratio. */
static void check_agree_additivity(const char *db, const char *out) {
    DatRow *dr = NULL;
    int nd = dat_read(fmt("%s/additivity.dat", out), &dr);
    CHECK_EQ_LL(nd, (int)sql_num(db, "SELECT count(*) FROM agree_results WHERE kind = 'additivity' AND " AGREE_RUN));
    for (int i = 0; i < nd; i++) {
        const DatRow *r = &dr[i];
        char t[3][256];
        double v[3];
        int got = r->n == 5 ? sql_row(db, fmt("SELECT measured, predicted, candidate FROM agree_results WHERE kind = 'additivity'"
                                              " AND " AGREE_RUN " AND stage = %s", r->f[0]), t, v, 3) : 0;
        CHECK_MSG(got == 3 && eq_num(r->f[1], v[0]) && eq_num(r->f[2], v[1]) && near_rel(r->f[3], fmt("%.17g", v[0] / v[1]), 1e-9) &&
                      !strcmp(r->f[4], t[2]),
                  "stage %s: %s %s (%s) vs the stored %s %s (%s)", r->f[0], r->f[1], r->f[2], r->f[4], t[0], t[1], t[2]);
    }
    free(dr);
    char *gp = slurp(fmt("%s/additivity.gp", out), NULL), *csv = slurp(fmt("%s/additivity.csv", out), NULL), row[8192], *f[16];
    CHECK(gp && strstr(gp, "x with lines dt 2") && strstr(gp, "with labels"));
    int nf = csv ? csv_row(csv, "tests/fixtures/mini-public", row, sizeof row, f, 16) : 0;
    CHECK_MSG(nf == 7 && !strcmp(f[2], "1") && eq_num(f[4], sql_num(db, "SELECT measured FROM agree_results WHERE kind ="
                                                                        " 'additivity' AND " AGREE_RUN " AND stage = 1")),
              "additivity.csv: %d fields", nf);
    CHECK_EQ_LL(count_lines(csv), 1 + nd);
    free(gp), free(csv);
}

/* A store with two settings of the same students and a schedule, agree run on it: the four pictures and tables. */
static void check_agree(void) {
    static char db[128], out[128];
    snprintf(db, sizeof db, "%s/agree.db", T);
    snprintf(out, sizeof out, "%s/agree", T);
    double t0 = now();
    const char *syn = "--model tests/fixtures/mini-public --synthetic 4 --latent 8 --tokens 4";
    for (int seed = 0; seed < 2; seed++)
        CHECK(run(fmt("%s eval %s --candidates all --seed %d --db %s >/dev/null 2>&1", BIN, syn, seed, db), NULL) == 0);
    CHECK(run(fmt("%s schedule %s --stages 3 --db %s >/dev/null 2>&1", BIN, syn, db), NULL) == 0);
    CHECK(run(fmt("%s agree --db %s --bootstrap 200 >/dev/null", BIN, db), NULL) == 0);
    fprintf(stderr, "test_report: agree store built in %.1f s\n", now() - t0);
    CHECK(run(fmt("%s report --db %s --out %s >/dev/null 2>%s/agree.err", BIN, db, out, T), NULL) == 0);
    char *err = slurp(fmt("%s/agree.err", T), NULL), *html = slurp(fmt("%s/index.html", out), NULL);
    for (size_t i = 0; i < sizeof AGREE / sizeof *AGREE; i++) {
        CHECK_MSG(err && !strstr(err, fmt(" %s skipped", AGREE[i])), "%s skipped: %s", AGREE[i], err ? err : "");
        for (int e = 0; e < 2; e++) CHECK_MSG(exists(fmt("%s/%s.%s", out, AGREE[i], e ? "gp" : "dat")), "%s missing", AGREE[i]);
        check_png(fmt("%s/%s.png", out, AGREE[i]));
        CHECK_MSG(html && strstr(html, fmt("<img src=\"%s.png\"", AGREE[i])) && strstr(html, fmt("href=\"#table-%s\"", AGREE[i])) &&
                      strstr(html, fmt("<a href=\"%s.csv\">", AGREE[i])), "index.html lacks %s", AGREE[i]);
        const char *ext[] = {"csv", "md", "tex"};
        for (int e = 0; e < 3; e++) CHECK_MSG(exists(fmt("%s/%s.%s", out, AGREE[i], ext[e])), "%s.%s missing", AGREE[i], ext[e]);
    }
    free(err), free(html);
    check_agree_matrix(db, out);
    check_agree_convergence(db, out);
    check_agree_bins(db, out);
    check_agree_additivity(db, out);

    /* an agree run without one kind of rows: that plot and table skipped with a note, the rest made */
    static char cut[128];
    snprintf(cut, sizeof cut, "%s/agree-cut.db", T);
    CHECK(raw_exec(db, fmt("VACUUM INTO '%s'", cut)) == 0 && raw_exec(cut, "DELETE FROM agree_results WHERE kind = 'additivity'") == 0);
    char *notes = NULL;
    CHECK(run(fmt("%s report --db %s --out %s/agree-cut 2>&1 >/dev/null", BIN, cut, T), &notes) == 0);
    CHECK_MSG(notes && strstr(notes, "report: additivity skipped: agree run ") && strstr(notes, "stored no 'additivity' rows") &&
                  strstr(notes, "report: table additivity skipped: ") && !strstr(notes, "rank_agreement skipped"),
              "stderr: %s", notes ? notes : "");
    free(notes);
    CHECK(exists(fmt("%s/agree-cut/rank_agreement.png", T)) && !exists(fmt("%s/agree-cut/additivity.dat", T)));
}

static const char *const PLOTS[] = {"params_vs_latency", "loss_vs_saving", "module_latency", "schedule", "layer_loss"};
static const char *const TABLES[] = {"comparison", "schedule", "candidates"};

int main(void) {
    cli_setup("report");
    if (!realpath(BIN, ABSBIN)) { perror(BIN); return 1; }

    /* forward order of feature points, as layer_loss draws them */
    CHECK(report_forward_cmp("down_blocks.0.resnets.0", "down_blocks.0.attentions.0") < 0);
    CHECK(report_forward_cmp("down_blocks.0.attentions.0", "down_blocks.0.resnets.1") < 0);
    CHECK(report_forward_cmp("down_blocks.1.resnets.1", "down_blocks.1.downsamplers.0") < 0);
    CHECK(report_forward_cmp("down_blocks.1.downsamplers.0", "down_blocks.1") < 0);
    CHECK(report_forward_cmp("down_blocks.1.attentions.0.transformer_blocks.1", "down_blocks.1.attentions.0") < 0);
    CHECK(report_forward_cmp("down_blocks.2", "mid_block.resnets.0") < 0);
    CHECK(report_forward_cmp("mid_block.attentions.0", "mid_block.resnets.1") < 0);
    CHECK(report_forward_cmp("mid_block", "up_blocks.0.resnets.0") < 0);
    CHECK(report_forward_cmp("up_blocks.0.upsamplers.0", "up_blocks.0") < 0);
    CHECK(report_forward_cmp("up_blocks.2.resnets.10", "up_blocks.2.resnets.9") > 0);
    CHECK(report_forward_cmp("up_blocks.2", "output") < 0);

    /* the store: both fixtures profiled (mini-public at batch 1 and 2), a schedule, an eval */
    static char db[128], out[128], out2[128], out3[128], plan[128], corrupt[128], empty[128];
    snprintf(db, sizeof db, "%s/x.db", T);
    double t0 = now();
    const char *size = "--height 128 --width 128 --tokens 8 --repeats 2 --warmup 0";
    CHECK(run(fmt("%s profile --model tests/fixtures/mini-public %s --db %s >/dev/null 2>&1", BIN, size, db), NULL) == 0);
    CHECK(run(fmt("%s profile --model tests/fixtures/mini-public %s --batch 2 --db %s >/dev/null 2>&1", BIN, size, db), NULL) == 0);
    CHECK(run(fmt("%s profile --model tests/fixtures/mini-ssd %s --db %s >/dev/null 2>&1", BIN, size, db), NULL) == 0);
    CHECK(run(fmt("%s schedule --model tests/fixtures/mini-public --db %s --stages 3 --score loss-per-ms --synthetic 1"
                  " --latent 8 --tokens 4 --repeats 2 --allow-unstable >/dev/null 2>&1", BIN, db), NULL) == 0);
    CHECK(run(fmt("%s eval --model tests/fixtures/mini-public --calib tests/fixtures/mini-public/io.safetensors"
                  " --drop mid_block.attentions.0.transformer_blocks.0 --db %s >/dev/null 2>&1", BIN, db), NULL) == 0);
    fprintf(stderr, "test_report: store built in %.1f s\n", now() - t0);
    /* the data contract the latency numbers rest on: every measurement has its untraced forwards too */
    CHECK_MSG(sql_num(db, "SELECT count(*) FROM latency WHERE module = '(untraced)'") == 3 &&
                  sql_num(db, "SELECT count(*) FROM latency WHERE module = '(forward)'") == 3,
              "profile stores one '(untraced)' row per '(forward)' row, one of each per measurement");

    /* everything, both picture formats */
    snprintf(out, sizeof out, "%s/out", T);
    char *listing = NULL;
    CHECK(run(fmt("%s report --db %s --out %s --format both 2>%s/err", BIN, db, out, T), &listing) == 0);
    CHECK_MSG(listing && strstr(listing, "index.html"), "stdout lists the files written");
    free(listing);
    for (size_t i = 0; i < sizeof PLOTS / sizeof *PLOTS; i++) {
        const char *ext[] = {"dat", "gp", "png", "svg"};
        for (int e = 0; e < 4; e++) CHECK_MSG(exists(fmt("%s/%s.%s", out, PLOTS[i], ext[e])), "%s.%s missing", PLOTS[i], ext[e]);
        check_png(fmt("%s/%s.png", out, PLOTS[i]));
        char *gp = slurp(fmt("%s/%s.gp", out, PLOTS[i]), NULL);
        CHECK(gp && strstr(gp, "set terminal pngcairo size 1000,700") && strstr(gp, "set terminal svg size 1000,700"));
        CHECK(gp && strstr(gp, fmt("\"%s.dat\"", PLOTS[i])));
        free(gp);
        char *svg = slurp(fmt("%s/%s.svg", out, PLOTS[i]), NULL);
        CHECK(svg && strstr(svg, "<svg") && strstr(svg, "width=\"1000\" height=\"700\""));
        free(svg);
        CHECK(!exists(fmt("%s/%s.gnuplot.log", out, PLOTS[i]))); /* kept only when gnuplot fails */
    }
    for (size_t i = 0; i < sizeof TABLES / sizeof *TABLES; i++) {
        const char *ext[] = {"md", "tex", "csv"};
        for (int e = 0; e < 3; e++) CHECK_MSG(exists(fmt("%s/%s.%s", out, TABLES[i], ext[e])), "%s.%s missing", TABLES[i], ext[e]);
        char *tex = slurp(fmt("%s/%s.tex", out, TABLES[i]), NULL);
        CHECK(tex && strstr(tex, "\\toprule") && strstr(tex, "\\midrule") && strstr(tex, "\\bottomrule"));
        free(tex);
        char *md = slurp(fmt("%s/%s.md", out, TABLES[i]), NULL);
        CHECK(md && strstr(md, "|---"));
        free(md);
    }
    char *err = slurp(fmt("%s/err", T), NULL);
    CHECK_MSG(err && !strstr(err, "skipped") && !strstr(err, "error"), "stderr: %s", err ? err : "");
    free(err);

    /* the plot that says where its milliseconds come from */
    char *gp = slurp(fmt("%s/params_vs_latency.gp", out), NULL);
    char *dev = db_cell(db, "SELECT device FROM runs WHERE id = 1");
    CHECK_MSG(gp && dev && strstr(gp, fmt("ms (engine cpu, %s)", dev)), "params_vs_latency's x label names engine and device");
    free(gp);

    /* index.html: every picture and table, with the runs behind them */
    char *html = slurp(fmt("%s/index.html", out), NULL);
    for (size_t i = 0; html && i < sizeof PLOTS / sizeof *PLOTS; i++)
        CHECK_MSG(strstr(html, fmt("<img src=\"%s.png\"", PLOTS[i])), "index.html lacks %s.png", PLOTS[i]);
    CHECK(html && strstr(html, "<th>UNet params</th>") && strstr(html, "<th>removed</th>") && strstr(html, "<th>candidate</th>"));
    char *commit = db_cell(db, "SELECT git_commit FROM runs WHERE id = 4");
    CHECK(html && commit && strstr(html, commit));
    CHECK(html && strstr(html, "unetlab schedule --model tests/fixtures/mini-public"));
    CHECK(html && dev && strstr(html, dev) && strstr(html, "engine cpu"));
    CHECK_MSG(html && !strstr(html, "rank_agreement") && !strstr(html, "additivity"), "no agree run: its outputs are not listed");
    free(commit);
    free(html);
    free(dev);

    /* comparison: each number equals the store's; the latency cells are the untraced forwards' median, p10, p90 */
    char *csv = slurp(fmt("%s/comparison.csv", out), NULL), row[8192], *f[16];
    const char *head = "model,params,flops,flops_at,latency_b1_ms,latency_b1_p10_ms,latency_b1_p90_ms,latency_b2_ms,"
                       "latency_b2_p10_ms,latency_b2_p90_ms,latency_forward,latency_at,measured_on,unstable,"
                       "speedup_vs_sdxl_base,reported_paper\n";
    CHECK_MSG(csv && !strncmp(csv, head, strlen(head)), "comparison.csv header: %.300s", csv ? csv : "");
    CHECK_EQ_LL(count_lines(csv), 3); /* header + one row per model */
    char *md = slurp(fmt("%s/comparison.md", out), NULL);
    int nf = csv ? csv_row(csv, "tests/fixtures/mini-public", row, sizeof row, f, 16) : 0;
    CHECK_EQ_LL(nf, 16);
    if (nf == 16) {
        char *params = db_cell(db, "SELECT params FROM models WHERE spec = 'tests/fixtures/mini-public'");
        CHECK_MSG(params && !strcmp(f[1], params), "params %s vs %s", f[1], params ? params : "?");
        double u1[5], u2[5];
        CHECK(latest_lat(db, "tests/fixtures/mini-public", 1, 1, u1) && latest_lat(db, "tests/fixtures/mini-public", 2, 1, u2));
        for (int k = 0; k < 3; k++) {
            CHECK_MSG(eq_num(f[4 + k], u1[k]), "batch-1 latency column %d: %s vs %.17g", 4 + k, f[4 + k], u1[k]);
            CHECK_MSG(eq_num(f[7 + k], u2[k]), "batch-2 latency column %d: %s vs %.17g", 7 + k, f[7 + k], u2[k]);
        }
        CHECK_MSG(!strcmp(f[10], "untraced"), "latency_forward '%s'", f[10]);
        CHECK(!strcmp(f[13], u1[3] || u2[3] ? "1" : "0"));
        /* the shown cell: the median with its p10-p90, flagged when unstable */
        char cell[200];
        snprintf(cell, sizeof cell, "| %.2f (%.2f-%.2f)%s |", u1[0], u1[1], u1[2], u1[3] ? " (unstable)" : "");
        CHECK_MSG(md && strstr(md, cell), "comparison.md lacks '%s'", cell);
        /* FLOPs: 2 x the root's MACs at the largest stored size (the eval's 256x256) */
        char *macs = db_cell(db, "SELECT o.macs FROM modules o JOIN models m ON m.id = o.model_id WHERE m.spec ="
                                " 'tests/fixtures/mini-public' AND o.name = '' AND o.size_label = 'b1_256x256_t8'");
        CHECK_MSG(macs && strtoll(f[2], NULL, 10) == 2 * strtoll(macs, NULL, 10), "flops %s vs 2 x %s", f[2], macs ? macs : "?");
        CHECK(strstr(f[3], "256x256") != NULL);
        CHECK(strstr(f[12], "engine cpu") != NULL);
        CHECK(!*f[14] && !*f[15]); /* no sdxl-base here; no published claim for a fixture */
        free(params), free(macs);
    }
    nf = csv ? csv_row(csv, "tests/fixtures/mini-ssd", row, sizeof row, f, 16) : 0;
    CHECK_EQ_LL(nf, 16);
    if (nf == 16) {
        char *params = db_cell(db, "SELECT params FROM models WHERE spec = 'tests/fixtures/mini-ssd'");
        CHECK(params && !strcmp(f[1], params));
        /* profiled only: its FLOPs come from the module rows profile stores; never profiled at batch 2 */
        char *macs = db_cell(db, "SELECT o.macs FROM modules o JOIN models m ON m.id = o.model_id WHERE m.spec ="
                                " 'tests/fixtures/mini-ssd' AND o.name = '' AND o.size_label = 'b1_128x128_t8'");
        CHECK_MSG(macs && strtoll(f[2], NULL, 10) == 2 * strtoll(macs, NULL, 10), "mini-ssd flops %s vs 2 x %s", f[2], macs ? macs : "?");
        CHECK(!*f[7] && !*f[8] && !*f[9]);
        free(macs);
        /* `db query`, as a user would read it, says the same */
        char *b1 = db_cell(db, "SELECT l.ms FROM latency l JOIN models m ON m.id = l.model_id WHERE m.spec ="
                              " 'tests/fixtures/mini-ssd' AND l.module = '(untraced)' AND l.batch = 1");
        CHECK_MSG(near_rel(f[4], b1, 1e-12), "mini-ssd latency %s vs db query's %s", f[4], b1 ? b1 : "?");
        free(params), free(b1);
    }
    free(csv);
    free(md);

    /* params_vs_latency: the measured points are the untraced forwards' median with p10-p90 error bars */
    DatRow *dr = NULL;
    int nd = dat_read(fmt("%s/params_vs_latency.dat", out), &dr);
    char *pgp = slurp(fmt("%s/params_vs_latency.gp", out), NULL);
    const char *const SPECS[3] = {"tests/fixtures/mini-public", "tests/fixtures/mini-public", "tests/fixtures/mini-ssd"};
    const int BATCH[3] = {1, 2, 1};
    for (int k = 0; k < 3; k++) {
        double u[5];
        CHECK(latest_lat(db, SPECS[k], BATCH[k], 1, u));
        const DatRow *r = measured_row(dr, nd, SPECS[k] + 15, BATCH[k]);
        CHECK_MSG(r, "params_vs_latency.dat has no row for %s at batch %d", SPECS[k], BATCH[k]);
        if (!r) continue;
        for (int c = 0; c < 3; c++)
            CHECK_MSG(eq_num(r->f[c], u[c]), "%s b%d column %d: %s vs %.17g", SPECS[k], BATCH[k], c + 1, r->f[c], u[c]);
        CHECK(eq_num(r->f[3], sql_num(db, fmt("SELECT params FROM models WHERE spec = '%s'", SPECS[k]))));
        CHECK_MSG(atoi(r->f[4]) == (int)u[3] && !strcmp(r->f[5], "0"), "unstable %s traced %s", r->f[4], r->f[5]);
        /* its block is drawn with x error bars from p10 to p90, a hollow point when unstable */
        CHECK_MSG(pgp && strstr(pgp, fmt("index %d using ($5%s?$1:NaN):($4/1e6):2:3 with xerrorbars pt %d", r->block,
                                         u[3] ? "!=0" : "==0", u[3] ? 4 : 5)),
                  "params_vs_latency.gp: no error bars for block %d", r->block);
    }
    /* the schedule's milliseconds are their own series, named as predicted, without error bars */
    int nstage_rows = 0;
    for (int i = 0; i < nd; i++) nstage_rows += strstr(dr[i].head, ": schedule ") != NULL;
    CHECK_EQ_LL(nstage_rows, 4); /* stage 0 (the teacher) and 3 stages */
    CHECK(pgp && strstr(pgp, "title \"predicted (schedule 1 of mini-public)") && strstr(pgp, "using 1:($2/1e6) with linespoints"));
    free(pgp);
    free(dr);

    /* module_latency: one level of the tree a block, every stack adding up to the module's median as stored */
    nd = dat_read(fmt("%s/module_latency.dat", out), &dr);
    double prof_run = sql_num(db, "SELECT l.run_id FROM latency l JOIN models m ON m.id = l.model_id WHERE m.spec ="
                                  " 'tests/fixtures/mini-public' AND l.module = '(forward)' AND l.plan_id IS NULL"
                                  " ORDER BY l.created_at DESC, l.id DESC LIMIT 1");
    int nblock[3] = {0}, nlevel[3] = {0};
    char **mods = NULL; /* the teacher's modules as stored, counted by level */
    int nmods = sql_texts(db, fmt("SELECT module FROM latency WHERE run_id = %.0f AND module NOT LIKE '(%%'", prof_run), &mods);
    for (int i = 0; i < nmods; i++) {
        if (depth(mods[i]) <= 3) nlevel[depth(mods[i]) - 1]++;
        free(mods[i]);
    }
    free(mods);
    for (int i = 0; i < nd; i++) {
        const DatRow *r = &dr[i];
        CHECK_MSG(r->n == 12 && r->block >= 0 && r->block < 3, "module_latency.dat row %d: %d fields", i, r->n);
        if (r->n != 12 || r->block < 0 || r->block >= 3) continue;
        nblock[r->block]++;
        CHECK_MSG(r->f[1][0] != '(' && depth(r->f[1]) == r->block + 1, "'%s' in the level-%d block", r->f[1], r->block + 1);
        double sum = 0;
        for (int c = 2; c < 7; c++) sum += strtod(r->f[c], NULL);
        char t[3][256];
        double v[3];
        int got = sql_row(db, fmt("SELECT ms, ms_p10, ms_p90 FROM latency WHERE run_id = %.0f AND module = '%s'", prof_run,
                                  r->f[1]), t, v, 3);
        CHECK_MSG(got == 3 && eq_num(r->f[7], v[0]) && eq_num(r->f[8], v[1]) && eq_num(r->f[9], v[2]),
                  "%s: total %s p10 %s p90 %s vs the stored %s %s %s", r->f[1], r->f[7], r->f[8], r->f[9], t[0], t[1], t[2]);
        CHECK_MSG(fabs(sum - v[0]) <= 1e-9 * v[0], "%s: stack %.17g vs median %.17g", r->f[1], sum, v[0]);
        for (int j = 0; j < nd; j++) /* no module with its parent or child, sorted by median */
            if (dr[j].block == r->block && j != i) CHECK(!is_under(r->f[1], dr[j].f[1]));
        if (i > 0 && dr[i - 1].block == r->block) CHECK(strtod(dr[i - 1].f[7], NULL) >= strtod(r->f[7], NULL));
    }
    for (int b = 0; b < 3; b++) /* the top 15 of each level, every level */
        CHECK_MSG(nlevel[b] > 0 && nblock[b] == (nlevel[b] < 15 ? nlevel[b] : 15), "level %d: %d rows of %d modules", b + 1,
                  nblock[b], nlevel[b]);
    free(dr);
    char *mgp = slurp(fmt("%s/module_latency.gp", out), NULL);
    for (int b = 0; b < 3; b++) /* the error bar on each total: p10 to p90 */
        CHECK_MSG(mgp && strstr(mgp, fmt("index %d using 8:1:9:10 with xerrorbars", b)), "module_latency.gp block %d", b);
    free(mgp);

    /* schedule: the stages as stored */
    char *stages = NULL;
    CHECK(run(fmt("%s db query --db %s --format csv \"SELECT stage, chosen, params, macs, loss, ms FROM schedule_stages"
                  " ORDER BY stage\"", BIN, db), &stages) == 0);
    csv = slurp(fmt("%s/schedule.csv", out), NULL);
    CHECK(csv && !strncmp(csv, "stage,removed,params,macs,loss,ms,ms_source,unstable\n", 52));
    CHECK_EQ_LL(count_lines(csv), 4);
    for (int s = 1; s <= 3 && csv && stages; s++) {
        char want[4096], *g[8], key[16];
        snprintf(key, sizeof key, "%d", s);
        int nw = csv_row(stages, key, want, sizeof want, g, 8);
        nf = csv_row(csv, key, row, sizeof row, f, 16);
        CHECK_EQ_LL(nf, 8);
        if (nf == 8 && nw == 6) {
            CHECK_MSG(!strcmp(f[1], g[1]) && !strcmp(f[2], g[2]) && !strcmp(f[3], g[3]), "stage %d: %s %s vs %s %s", s, f[1],
                      f[2], g[1], g[2]);
            CHECK(near_rel(f[4], g[4], 1e-12) && near_rel(f[5], g[5], 1e-12));
            char *sched_unst = db_cell(db, "SELECT json_extract(latency, '$.unstable') FROM schedules");
            CHECK_MSG(!strcmp(f[6], "predicted") && sched_unst && !strcmp(f[7], sched_unst), "ms_source %s unstable %s vs %s",
                      f[6], f[7], sched_unst ? sched_unst : "?");
            free(sched_unst);
        }
    }
    free(stages);
    free(csv);

    /* candidates: the lowest scores of stage 1, best first */
    csv = slurp(fmt("%s/candidates.csv", out), NULL);
    CHECK_EQ_LL(count_lines(csv), 16); /* header + the default top 15 */
    char *best = db_cell(db, "SELECT candidate FROM schedule_scores WHERE stage = 1 ORDER BY score LIMIT 1");
    nf = csv ? csv_row(csv, "1", row, sizeof row, f, 16) : 0;
    CHECK(nf == 10 && best && !strcmp(f[1], best) && !strcmp(f[7], "yes"));
    if (nf == 10 && best) {
        char *sc = db_cell(db, fmt("SELECT score FROM schedule_scores WHERE stage = 1 AND candidate = '%s'", best));
        char *ps = db_cell(db, fmt("SELECT params_saved FROM schedule_scores WHERE stage = 1 AND candidate = '%s'", best));
        CHECK(near_rel(f[6], sc, 1e-12) && ps && !strcmp(f[4], ps));
        free(sc), free(ps);
    }
    free(best);
    free(csv);

    /* --top, --plan, svg only */
    snprintf(plan, sizeof plan, "%s/drop.json", T);
    FILE *pf = fopen(plan, "w");
    fputs("{\"format\": \"unetlab-plan\", \"version\": 1, \"remove\": [\"mid_block.attentions.0.transformer_blocks.0\"]}\n", pf);
    fclose(pf);
    snprintf(out2, sizeof out2, "%s/out2", T);
    CHECK(run(fmt("%s report --db %s --out %s --format svg --top 5 --plan %s >/dev/null 2>&1", BIN, db, out2, plan), NULL) == 0);
    CHECK_EQ_LL(dat_rows(fmt("%s/module_latency.dat", out2)), 15); /* 5 a level */
    csv = slurp(fmt("%s/candidates.csv", out2), NULL);
    CHECK_EQ_LL(count_lines(csv), 6);
    free(csv);
    CHECK(exists(fmt("%s/layer_loss.svg", out2)) && !exists(fmt("%s/layer_loss.png", out2)));
    char *ll = slurp(fmt("%s/layer_loss.dat", out2), NULL);
    CHECK_MSG(ll && strstr(ll, "tests/fixtures/mini-public/io.safetensors"), "layer_loss names its calibration set");
    char *npts = db_cell(db, "SELECT count(DISTINCT r.point) FROM eval_results r JOIN eval_jobs j ON j.id = r.job_id"
                            " JOIN calib_sets c ON c.id = j.calib_id WHERE c.source LIKE '%io.safetensors' AND r.metric = 'nmse'");
    CHECK_MSG(npts && dat_rows(fmt("%s/layer_loss.dat", out2)) == atoi(npts), "layer_loss rows vs %s points", npts ? npts : "?");
    CHECK(ll && strstr(ll, "\n0 \"down_blocks.0.resnets.0\" ") && strstr(ll, " \"output\" "));
    char *mean = db_cell(db, "SELECT avg(r.value) FROM eval_results r JOIN eval_jobs j ON j.id = r.job_id JOIN calib_sets c"
                            " ON c.id = j.calib_id WHERE c.source LIKE '%io.safetensors' AND r.metric = 'nmse' AND r.point = 'output'");
    const char *o = ll ? strstr(ll, " \"output\" ") : NULL;
    CHECK_MSG(o && mean && near_rel(o + 10, mean, 1e-8), "output's mean NMSE %s vs %s", o ? o + 10 : "?", mean ? mean : "?");
    free(ll), free(npts), free(mean);

    /* no gnuplot on PATH: everything but the pictures, one line, exit 8 */
    snprintf(out3, sizeof out3, "%s/nognu", T);
    char *line = NULL;
    CHECK_EQ_LL(run(fmt("PATH=/nonexistent %s report --db %s --out %s --format both 2>&1 >/dev/null", ABSBIN, db, out3), &line), 8);
    CHECK_MSG(line && !strcmp(line, fmt("unetlab: gnuplot not found: data and scripts are in %s; run `gnuplot NAME.gp` there"
                                        " to draw them\n", out3)), "stderr: '%s'", line ? line : "");
    free(line);
    for (size_t i = 0; i < sizeof PLOTS / sizeof *PLOTS; i++) {
        CHECK(exists(fmt("%s/%s.dat", out3, PLOTS[i])) && exists(fmt("%s/%s.gp", out3, PLOTS[i])));
        CHECK(!exists(fmt("%s/%s.png", out3, PLOTS[i])) && !exists(fmt("%s/%s.svg", out3, PLOTS[i])));
    }
    for (size_t i = 0; i < sizeof TABLES / sizeof *TABLES; i++) CHECK(exists(fmt("%s/%s.csv", out3, TABLES[i])));
    CHECK(exists(fmt("%s/index.html", out3)));
    /* ... and the scripts draw there as they are */
    CHECK(run(fmt("cd %s && gnuplot module_latency.gp 2>&1", out3), NULL) == 0);
    check_png(fmt("%s/module_latency.png", out3));

    /* a failing gnuplot is an error naming the script */
    CHECK(mkdir(fmt("%s/bin", T), 0755) == 0);
    pf = fopen(fmt("%s/bin/gnuplot", T), "w");
    fputs("#!/bin/sh\necho \"line 3: undefined variable: nothing\" >&2\nexit 1\n", pf);
    fclose(pf);
    chmod(fmt("%s/bin/gnuplot", T), 0755);
    char *e1 = NULL;
    CHECK_EQ_LL(run(fmt("PATH=%s/bin:/usr/bin:/bin %s report --db %s --out %s/fail 2>&1 >/dev/null", T, ABSBIN, db, T), &e1), 1);
    CHECK_MSG(e1 && count_lines(e1) == 1 && strstr(e1, "unetlab: error: gnuplot failed on '") &&
                  strstr(e1, "params_vs_latency.gp") && strstr(e1, "undefined variable"), "stderr: %s", e1 ? e1 : "");
    free(e1);

    /* errors: a missing DB (not created), an output path under a file, bad flags */
    char *e2 = NULL;
    CHECK_EQ_LL(run(fmt("%s report --db %s/none.db --out %s/o4 2>&1 >/dev/null", BIN, T, T), &e2), 6);
    CHECK_MSG(e2 && count_lines(e2) == 1 && !strncmp(e2, "unetlab: error: ", 16) && strstr(e2, "none.db"), "stderr: %s", e2 ? e2 : "");
    CHECK(access(fmt("%s/none.db", T), F_OK) != 0);
    free(e2);
    char *e3 = NULL;
    CHECK_EQ_LL(run(fmt("%s report --db %s --out %s/drop.json/sub 2>&1 >/dev/null", BIN, db, T), &e3), 5);
    CHECK_MSG(e3 && count_lines(e3) == 1 && strstr(e3, "drop.json"), "stderr: %s", e3 ? e3 : "");
    free(e3);
    CHECK_EQ_LL(run(fmt("%s report --db %s --out %s/o5 --format jpg 2>/dev/null", BIN, db, T), NULL), 2);
    CHECK_EQ_LL(run(fmt("%s report --db %s 2>/dev/null", BIN, db), NULL), 2);
    CHECK_EQ_LL(run(fmt("%s report --db %s --out %s/o5 --top 0 2>/dev/null", BIN, db, T), NULL), 2);
    CHECK_EQ_LL(run(fmt("%s report --db %s --out %s/o5 --bogus 2>/dev/null", BIN, db, T), NULL), 2);
    snprintf(corrupt, sizeof corrupt, "%s/corrupt.db", T);
    pf = fopen(corrupt, "w");
    fputs("this is not a database, only text long enough to be read as a header. ................................\n", pf);
    fclose(pf);
    CHECK_EQ_LL(run(fmt("%s report --db %s --out %s/o6 2>/dev/null", BIN, corrupt, T), NULL), 6);

    /* published models (checkpoint directories named as SDXL base and SSD-1B): the speedup is measured here,
     * the papers' claim sits in its own column only */
    static char pub[128];
    snprintf(pub, sizeof pub, "%s/pub.db", T);
    CHECK(run(fmt("cp -r tests/fixtures/mini-public %s/sdxl-base && cp -r tests/fixtures/mini-ssd %s/SSD-1B", T, T), NULL) == 0);
    CHECK(run(fmt("%s profile --compare %s/sdxl-base,%s/SSD-1B %s --db %s >/dev/null 2>&1", BIN, T, T, size, pub), NULL) == 0);
    CHECK(run(fmt("%s report --db %s --out %s/o8 >/dev/null 2>&1", BIN, pub, T), NULL) == 0);
    csv = slurp(fmt("%s/o8/comparison.csv", T), NULL);
    char row2[8192], *g[16];
    int n1 = csv ? csv_row(csv, fmt("%s/sdxl-base", T), row, sizeof row, f, 16) : 0;
    int n2 = csv ? csv_row(csv, fmt("%s/SSD-1B", T), row2, sizeof row2, g, 16) : 0;
    CHECK(n1 == 16 && n2 == 16);
    if (n1 == 16 && n2 == 16) {
        CHECK_MSG(near_rel(g[14], fmt("%.17g", strtod(f[4], NULL) / strtod(g[4], NULL)), 1e-12), "speedup %s", g[14]);
        CHECK_NEAR(strtod(f[14], NULL), 1.0, 1e-12);
        CHECK(!strcmp(g[15], "up to 60% faster (A100, end to end)") && !*f[15]);
        for (int c = 1; c < 15; c++) CHECK(!strstr(g[c], "faster") && !strstr(g[c], "A100"));
    }
    free(csv);

    /* A copy of the store edited with known values: mini-ssd's measurement unstable, with untraced and traced
     * forwards set apart; mini-public's batch-2 measurement without its untraced row (an older store); the
     * schedule's profile unstable, 27 more stages 1% of the ms and 100k params apart (their labels
     * closer than a label's height: about one in four fits), one candidate timed slower without its module. */
    static char mut[128];
    snprintf(mut, sizeof mut, "%s/mut.db", T);
    CHECK(raw_exec(db, fmt("VACUUM INTO '%s'", mut)) == 0);
    double ssd_run = sql_num(mut, "SELECT l.run_id FROM latency l JOIN models m ON m.id = l.model_id WHERE m.spec ="
                                  " 'tests/fixtures/mini-ssd' AND l.module = '(forward)'");
    double b2_run = sql_num(mut, "SELECT l.run_id FROM latency l JOIN models m ON m.id = l.model_id WHERE m.spec ="
                                 " 'tests/fixtures/mini-public' AND l.module = '(forward)' AND l.batch = 2");
    CHECK(raw_exec(mut, fmt("DELETE FROM latency WHERE run_id = %.0f AND module = '(untraced)';"
                            "INSERT INTO latency(run_id, model_id, plan_id, module, kind, batch, height, width, tokens, dtype,"
                            " device, engine, warmup, repeats, calls, ms, ms_p10, ms_p90, created_at)"
                            " SELECT run_id, model_id, plan_id, '(untraced)', kind, batch, height, width, tokens, dtype, device,"
                            " engine, warmup, repeats, calls, 12.5, 11.25, 14.75, created_at FROM latency"
                            " WHERE run_id = %.0f AND module = '(forward)';"
                            "UPDATE latency SET ms = 20, ms_p10 = 19, ms_p90 = 21 WHERE run_id = %.0f AND module = '(forward)';"
                            "UPDATE latency SET unstable = 1, others_load = 0.4 WHERE run_id = %.0f;"
                            "DELETE FROM latency WHERE run_id = %.0f AND module = '(untraced)';"
                            "UPDATE schedules SET latency = json_set(latency, '$.unstable', json('true'));"
                            "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 27)"
                            " INSERT INTO schedule_stages(schedule_id, stage, plan_id, chosen, params, macs, loss, ms, run_id,"
                            " created_at) SELECT s.schedule_id, s.stage + k.i, s.plan_id, 'more', s.params - 100000 * k.i, s.macs,"
                            " s.loss, s.ms * (1 - 0.01 * k.i), s.run_id, s.created_at FROM schedule_stages s, k WHERE s.stage = 3;"
                            "UPDATE schedule_scores SET ms_saved = -0.5 WHERE rowid ="
                            " (SELECT rowid FROM schedule_scores WHERE stage = 2 ORDER BY candidate LIMIT 1);",
                            ssd_run, ssd_run, ssd_run, ssd_run, b2_run)) == 0);
    static char out4[128];
    snprintf(out4, sizeof out4, "%s/out4", T);
    CHECK(run(fmt("%s report --db %s --out %s >/dev/null 2>&1", BIN, mut, out4), NULL) == 0);
    nd = dat_read(fmt("%s/params_vs_latency.dat", out4), &dr);
    pgp = slurp(fmt("%s/params_vs_latency.gp", out4), NULL);
    /* unstable: the untraced numbers as set, flagged, drawn hollow in a clause of their own */
    const DatRow *r = measured_row(dr, nd, "mini-ssd", 1);
    CHECK_MSG(r && !strcmp(r->f[0], "12.5") && !strcmp(r->f[1], "11.25") && !strcmp(r->f[2], "14.75") &&
                  !strcmp(r->f[4], "1") && !strcmp(r->f[5], "0"),
              "mini-ssd: %s %s %s unstable %s traced %s", r ? r->f[0] : "?", r ? r->f[1] : "", r ? r->f[2] : "",
              r ? r->f[4] : "", r ? r->f[5] : "");
    CHECK_MSG(r && pgp && strstr(pgp, fmt("index %d using ($5!=0?$1:NaN):($4/1e6):2:3 with xerrorbars pt 4", r->block)),
              "params_vs_latency.gp: no hollow points for the unstable block");
    CHECK(pgp && strstr(pgp, "tokens, fp32, engine cpu; untraced median, p10-p90 (unstable)\""));
    /* no untraced row: the traced forwards, said so */
    double tr[5];
    CHECK(latest_lat(mut, "tests/fixtures/mini-public", 2, 0, tr));
    r = measured_row(dr, nd, "mini-public (traced)", 2);
    CHECK_MSG(r && eq_num(r->f[0], tr[0]) && eq_num(r->f[1], tr[1]) && eq_num(r->f[2], tr[2]) && !strcmp(r->f[5], "1"),
              "mini-public b2 without untraced rows: %s %s %s traced %s", r ? r->f[0] : "?", r ? r->f[1] : "",
              r ? r->f[2] : "", r ? r->f[5] : "");
    /* the schedule: unstable profile hollow, and of its 31 stage labels the overlapping left out, never the ends */
    int nsr = 0, nlab = 0, unst = 1;
    const DatRow *s0 = NULL, *slast = NULL;
    for (int i = 0; i < nd; i++)
        if (strstr(dr[i].head, ": schedule ") && dr[i].n == 5) {
            if (!nsr++) s0 = &dr[i];
            slast = &dr[i];
            nlab += dr[i].f[4][0] != '\0';
            unst &= !strcmp(dr[i].f[3], "1");
        }
    CHECK_EQ_LL(nsr, 31);
    CHECK_MSG(s0 && slast && !strcmp(s0->f[4], "0") && !strcmp(slast->f[4], "30") && nlab >= 5 && nlab <= 16 && unst,
              "stage labels: first '%s', last '%s', %d of %d kept", s0 ? s0->f[4] : "?", slast ? slast->f[4] : "?", nlab, nsr);
    CHECK(pgp && strstr(pgp, "with linespoints lw 1.5 pt 8") && strstr(pgp, "(unstable profile)\""));
    free(pgp);
    free(dr);
    /* the tables: numbers as set, markers on the cells, the CSV's unstable and latency_forward columns */
    csv = slurp(fmt("%s/comparison.csv", out4), NULL);
    md = slurp(fmt("%s/comparison.md", out4), NULL);
    nf = csv ? csv_row(csv, "tests/fixtures/mini-ssd", row, sizeof row, f, 16) : 0;
    CHECK(nf == 16 && !strcmp(f[4], "12.5") && !strcmp(f[5], "11.25") && !strcmp(f[6], "14.75") &&
          !strcmp(f[10], "untraced") && !strcmp(f[13], "1"));
    CHECK_MSG(md && strstr(md, "| 12.50 (11.25-14.75) (unstable) |"), "comparison.md: the unstable cell");
    nf = csv ? csv_row(csv, "tests/fixtures/mini-public", row, sizeof row, f, 16) : 0;
    CHECK_MSG(nf == 16 && eq_num(f[7], tr[0]) && strstr(f[10], "b2: traced"), "mini-public b2 %s (%s)", nf ? f[7] : "?",
              nf ? f[10] : "?");
    CHECK_MSG(md && strstr(md, fmt("%.2f (%.2f-%.2f) (traced)", tr[0], tr[1], tr[2])), "comparison.md: the traced cell");
    free(csv);
    free(md);
    csv = slurp(fmt("%s/schedule.csv", out4), NULL);
    md = slurp(fmt("%s/schedule.md", out4), NULL);
    CHECK_EQ_LL(count_lines(csv), 31);
    nf = csv ? csv_row(csv, "2", row, sizeof row, f, 16) : 0;
    CHECK(nf == 8 && !strcmp(f[6], "predicted") && !strcmp(f[7], "1"));
    CHECK(md && strstr(md, "| ms (predicted) |") && strstr(md, " (unstable) |"));
    free(csv);
    free(md);
    csv = slurp(fmt("%s/candidates.csv", out4), NULL);
    nf = csv ? csv_row(csv, "1", row, sizeof row, f, 16) : 0;
    CHECK(nf == 10 && !strcmp(f[8], "predicted") && !strcmp(f[9], "1"));
    free(csv);
    /* loss_vs_saving: from 0, the negative saving left out and counted */
    nd = dat_read(fmt("%s/loss_vs_saving.dat", out4), &dr);
    int neg = 0;
    for (int i = 0; i < nd; i++) neg += strtod(dr[i].f[0], NULL) < 0;
    CHECK_MSG(nd > 0 && !neg, "%d negative savings drawn", neg);
    free(dr);
    char *lgp = slurp(fmt("%s/loss_vs_saving.gp", out4), NULL);
    CHECK(lgp && strstr(lgp, "set xrange [0:*]") && strstr(lgp, "(unstable profile)"));
    free(lgp);
    html = slurp(fmt("%s/index.html", out4), NULL);
    CHECK_MSG(html && strstr(html, "Left out: 1 candidate with a negative saving"), "the caption counts the negative saving");
    free(html);

    /* parameters saved (a schedule scored without latency): k/M tics without decimals or signs */
    CHECK(raw_exec(mut, "UPDATE schedule_scores SET ms_saved = NULL") == 0);
    CHECK(run(fmt("%s report --db %s --out %s/out5 >/dev/null 2>&1", BIN, mut, T), NULL) == 0);
    lgp = slurp(fmt("%s/out5/loss_vs_saving.gp", T), NULL);
    const char *tics = lgp ? strstr(lgp, "set xtics (") : NULL;
    CHECK_MSG(tics && lgp && strstr(lgp, "parameters saved"), "loss_vs_saving.gp: explicit x tics");
    int ntics = 0, bad = 0;
    for (const char *q = tics ? tics + 11 : NULL; q && *q == '"'; ntics++) { /* "LABEL" VALUE, ... */
        size_t len = strcspn(q + 1, "\"");
        char lab[64];
        snprintf(lab, sizeof lab, "%.*s", (int)(len < 63 ? len : 63), q + 1);
        size_t digits = strspn(lab, "0123456789");
        bad += !digits || !(lab[digits] == '\0' || ((lab[digits] == 'k' || lab[digits] == 'M') && !lab[digits + 1]));
        q = strchr(q + len + 2, ',');
        if (q) q += 2;
    }
    CHECK_MSG(ntics >= 3 && !bad, "%d tics, %d not whole k/M numbers: %.200s", ntics, bad, tics ? tics : "");
    free(lgp);

    /* an empty store: every plot skipped with a note, the comparison table without rows, still exit 0 */
    snprintf(empty, sizeof empty, "%s/empty.db", T);
    pf = fopen(empty, "w"); /* an empty file is an empty SQLite database: the report's open gives it the schema */
    CHECK(pf && fclose(pf) == 0);
    char *notes = NULL;
    CHECK(run(fmt("%s report --db %s --out %s/o7 2>&1 >/dev/null", BIN, empty, T), &notes) == 0);
    int skipped = 0;
    for (const char *s = notes; s && (s = strstr(s, "skipped")); s++) skipped++;
    CHECK_MSG(skipped == 7, "%d skip notes: %s", skipped, notes ? notes : "");
    free(notes);
    CHECK(exists(fmt("%s/o7/index.html", T)) && exists(fmt("%s/o7/comparison.csv", T)));
    CHECK(!exists(fmt("%s/o7/schedule.png", T)));

    check_agree();

    cli_cleanup();
    TEST_MAIN_END("test_report");
}
