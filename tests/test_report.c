/* test_report: `unetlab report` through the built binary ($UNETLAB) on a store
 * made here (profiles of both fixtures, a schedule, an eval): every file is
 * written, PNGs are 1000x700, table numbers equal `db query` of the same rows,
 * layer_loss follows forward order; without gnuplot on PATH exit 8 and one
 * line; a failing gnuplot, a missing DB, an unwritable DIR and bad flags fail. */
#include "report.h"
#include "test.h"
#include "testcli.h"
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char ABSBIN[PATH_MAX];

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    b[fread(b, 1, (size_t)n, f)] = '\0';
    fclose(f);
    return b;
}

static int exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && sb.st_size > 0;
}

/* The first cell of the first row of `db query --format csv SQL` (caller frees), or NULL. */
static char *query1(const char *db, const char *sql) {
    char *out = NULL;
    if (run(fmt("%s db query --db %s --format csv \"%s\" 2>/dev/null", BIN, db, sql), &out)) { free(out); return NULL; }
    char *nl = strchr(out, '\n'); /* skip the header */
    char *v = NULL;
    if (nl) {
        nl++;
        size_t len = strcspn(nl, ",\n");
        v = strndup(nl, len);
    }
    free(out);
    return v;
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
    char *s = slurp(path);
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
        char *gp = slurp(fmt("%s/%s.gp", out, PLOTS[i]));
        CHECK(gp && strstr(gp, "set terminal pngcairo size 1000,700") && strstr(gp, "set terminal svg size 1000,700"));
        CHECK(gp && strstr(gp, fmt("\"%s.dat\"", PLOTS[i])));
        free(gp);
        char *svg = slurp(fmt("%s/%s.svg", out, PLOTS[i]));
        CHECK(svg && strstr(svg, "<svg") && strstr(svg, "width=\"1000\" height=\"700\""));
        free(svg);
        CHECK(!exists(fmt("%s/%s.gnuplot.log", out, PLOTS[i]))); /* kept only when gnuplot fails */
    }
    for (size_t i = 0; i < sizeof TABLES / sizeof *TABLES; i++) {
        const char *ext[] = {"md", "tex", "csv"};
        for (int e = 0; e < 3; e++) CHECK_MSG(exists(fmt("%s/%s.%s", out, TABLES[i], ext[e])), "%s.%s missing", TABLES[i], ext[e]);
        char *tex = slurp(fmt("%s/%s.tex", out, TABLES[i]));
        CHECK(tex && strstr(tex, "\\toprule") && strstr(tex, "\\midrule") && strstr(tex, "\\bottomrule"));
        free(tex);
        char *md = slurp(fmt("%s/%s.md", out, TABLES[i]));
        CHECK(md && strstr(md, "|---"));
        free(md);
    }
    char *err = slurp(fmt("%s/err", T));
    CHECK_MSG(err && !strstr(err, "skipped") && !strstr(err, "error"), "stderr: %s", err ? err : "");
    free(err);

    /* the plot that says where its milliseconds come from */
    char *gp = slurp(fmt("%s/params_vs_latency.gp", out));
    char *dev = query1(db, "SELECT device FROM runs WHERE id = 1");
    CHECK_MSG(gp && dev && strstr(gp, fmt("ms (engine cpu, %s)", dev)), "params_vs_latency's x label names engine and device");
    free(gp);

    /* index.html: every picture and table, with the runs behind them */
    char *html = slurp(fmt("%s/index.html", out));
    for (size_t i = 0; html && i < sizeof PLOTS / sizeof *PLOTS; i++)
        CHECK_MSG(strstr(html, fmt("<img src=\"%s.png\"", PLOTS[i])), "index.html lacks %s.png", PLOTS[i]);
    CHECK(html && strstr(html, "<th>UNet params</th>") && strstr(html, "<th>removed</th>") && strstr(html, "<th>candidate</th>"));
    char *commit = query1(db, "SELECT git_commit FROM runs WHERE id = 4");
    CHECK(html && commit && strstr(html, commit));
    CHECK(html && strstr(html, "unetlab schedule --model tests/fixtures/mini-public"));
    CHECK(html && dev && strstr(html, dev) && strstr(html, "engine cpu"));
    free(commit);
    free(html);
    free(dev);

    /* comparison: each number equals the store's */
    char *csv = slurp(fmt("%s/comparison.csv", out)), row[8192], *f[16];
    CHECK(csv && !strncmp(csv, "model,params,flops,flops_at,latency_b1_ms,latency_b2_ms,", 56));
    CHECK_EQ_LL(count_lines(csv), 3); /* header + one row per model */
    int nf = csv ? csv_row(csv, "tests/fixtures/mini-public", row, sizeof row, f, 16) : 0;
    CHECK_EQ_LL(nf, 10);
    if (nf == 10) {
        char *params = query1(db, "SELECT params FROM models WHERE spec = 'tests/fixtures/mini-public'");
        CHECK_MSG(params && !strcmp(f[1], params), "params %s vs %s", f[1], params ? params : "?");
        const char *latest = "SELECT ms FROM latency l JOIN models m ON m.id = l.model_id WHERE m.spec = "
                             "'tests/fixtures/mini-public' AND l.module = '(forward)' AND l.plan_id IS NULL AND l.batch = %d"
                             " ORDER BY l.created_at DESC, l.id DESC LIMIT 1";
        char *b1 = query1(db, fmt(latest, 1)), *b2 = query1(db, fmt(latest, 2));
        CHECK_MSG(near_rel(f[4], b1, 1e-12), "batch-1 latency %s vs %s", f[4], b1 ? b1 : "?");
        CHECK_MSG(near_rel(f[5], b2, 1e-12), "batch-2 latency %s vs %s", f[5], b2 ? b2 : "?");
        /* FLOPs: 2 x the root's MACs at the largest stored size (the eval's 256x256) */
        char *macs = query1(db, "SELECT o.macs FROM modules o JOIN models m ON m.id = o.model_id WHERE m.spec ="
                                " 'tests/fixtures/mini-public' AND o.name = '' AND o.size_label = 'b1_256x256_t8'");
        CHECK_MSG(macs && strtoll(f[2], NULL, 10) == 2 * strtoll(macs, NULL, 10), "flops %s vs 2 x %s", f[2], macs ? macs : "?");
        CHECK(strstr(f[3], "256x256") != NULL);
        CHECK(strstr(f[7], "engine cpu") != NULL);
        CHECK(!*f[8] && !*f[9]); /* no sdxl-base here; no published claim for a fixture */
        free(params), free(b1), free(b2), free(macs);
    }
    nf = csv ? csv_row(csv, "tests/fixtures/mini-ssd", row, sizeof row, f, 16) : 0;
    CHECK_EQ_LL(nf, 10);
    if (nf == 10) {
        char *params = query1(db, "SELECT params FROM models WHERE spec = 'tests/fixtures/mini-ssd'");
        CHECK(params && !strcmp(f[1], params));
        /* profiled only: its FLOPs come from the module rows profile stores; never profiled at batch 2 */
        char *macs = query1(db, "SELECT o.macs FROM modules o JOIN models m ON m.id = o.model_id WHERE m.spec ="
                                " 'tests/fixtures/mini-ssd' AND o.name = '' AND o.size_label = 'b1_128x128_t8'");
        CHECK_MSG(macs && strtoll(f[2], NULL, 10) == 2 * strtoll(macs, NULL, 10), "mini-ssd flops %s vs 2 x %s", f[2], macs ? macs : "?");
        CHECK(!*f[5]);
        free(macs);
        char *b1 = query1(db, "SELECT l.ms FROM latency l JOIN models m ON m.id = l.model_id WHERE m.spec ="
                              " 'tests/fixtures/mini-ssd' AND l.module = '(forward)' AND l.batch = 1");
        CHECK(near_rel(f[4], b1, 1e-12));
        free(params), free(b1);
    }
    free(csv);

    /* schedule: the stages as stored */
    char *stages = NULL;
    CHECK(run(fmt("%s db query --db %s --format csv \"SELECT stage, chosen, params, macs, loss, ms FROM schedule_stages"
                  " ORDER BY stage\"", BIN, db), &stages) == 0);
    csv = slurp(fmt("%s/schedule.csv", out));
    CHECK(csv && !strncmp(csv, "stage,removed,params,macs,loss,ms\n", 34));
    CHECK_EQ_LL(count_lines(csv), 4);
    for (int s = 1; s <= 3 && csv && stages; s++) {
        char want[4096], *g[8], key[16];
        snprintf(key, sizeof key, "%d", s);
        int nw = csv_row(stages, key, want, sizeof want, g, 8);
        nf = csv_row(csv, key, row, sizeof row, f, 16);
        CHECK_EQ_LL(nf, 6);
        if (nf == 6 && nw == 6) {
            CHECK_MSG(!strcmp(f[1], g[1]) && !strcmp(f[2], g[2]) && !strcmp(f[3], g[3]), "stage %d: %s %s vs %s %s", s, f[1],
                      f[2], g[1], g[2]);
            CHECK(near_rel(f[4], g[4], 1e-12) && near_rel(f[5], g[5], 1e-12));
        }
    }
    free(stages);
    free(csv);

    /* candidates: the lowest scores of stage 1, best first */
    csv = slurp(fmt("%s/candidates.csv", out));
    CHECK_EQ_LL(count_lines(csv), 16); /* header + the default top 15 */
    char *best = query1(db, "SELECT candidate FROM schedule_scores WHERE stage = 1 ORDER BY score LIMIT 1");
    nf = csv ? csv_row(csv, "1", row, sizeof row, f, 16) : 0;
    CHECK(nf == 8 && best && !strcmp(f[1], best) && !strcmp(f[7], "yes"));
    if (nf == 8 && best) {
        char *sc = query1(db, fmt("SELECT score FROM schedule_scores WHERE stage = 1 AND candidate = '%s'", best));
        char *ps = query1(db, fmt("SELECT params_saved FROM schedule_scores WHERE stage = 1 AND candidate = '%s'", best));
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
    CHECK_EQ_LL(dat_rows(fmt("%s/module_latency.dat", out2)), 5);
    csv = slurp(fmt("%s/candidates.csv", out2));
    CHECK_EQ_LL(count_lines(csv), 6);
    free(csv);
    CHECK(exists(fmt("%s/layer_loss.svg", out2)) && !exists(fmt("%s/layer_loss.png", out2)));
    char *ll = slurp(fmt("%s/layer_loss.dat", out2));
    CHECK_MSG(ll && strstr(ll, "tests/fixtures/mini-public/io.safetensors"), "layer_loss names its calibration set");
    char *npts = query1(db, "SELECT count(DISTINCT r.point) FROM eval_results r JOIN eval_jobs j ON j.id = r.job_id"
                            " JOIN calib_sets c ON c.id = j.calib_id WHERE c.source LIKE '%io.safetensors' AND r.metric = 'nmse'");
    CHECK_MSG(npts && dat_rows(fmt("%s/layer_loss.dat", out2)) == atoi(npts), "layer_loss rows vs %s points", npts ? npts : "?");
    CHECK(ll && strstr(ll, "\n0 \"down_blocks.0.resnets.0\" ") && strstr(ll, " \"output\" "));
    char *mean = query1(db, "SELECT avg(r.value) FROM eval_results r JOIN eval_jobs j ON j.id = r.job_id JOIN calib_sets c"
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
    csv = slurp(fmt("%s/o8/comparison.csv", T));
    char row2[8192], *g[16];
    int n1 = csv ? csv_row(csv, fmt("%s/sdxl-base", T), row, sizeof row, f, 16) : 0;
    int n2 = csv ? csv_row(csv, fmt("%s/SSD-1B", T), row2, sizeof row2, g, 16) : 0;
    CHECK(n1 == 10 && n2 == 10);
    if (n1 == 10 && n2 == 10) {
        CHECK_MSG(near_rel(g[8], fmt("%.17g", strtod(f[4], NULL) / strtod(g[4], NULL)), 1e-12), "speedup %s", g[8]);
        CHECK_NEAR(strtod(f[8], NULL), 1.0, 1e-12);
        CHECK(!strcmp(g[9], "up to 60% faster (A100, end to end)") && !*f[9]);
        for (int c = 1; c < 9; c++) CHECK(!strstr(g[c], "faster") && !strstr(g[c], "A100"));
    }
    free(csv);

    /* an empty store: every plot skipped with a note, the comparison table without rows, still exit 0 */
    snprintf(empty, sizeof empty, "%s/empty.db", T);
    { Db *d = NULL; CHECK(db_open(&d, empty) == 0); db_close(d); } /* db query no longer creates a DB */
    char *notes = NULL;
    CHECK(run(fmt("%s report --db %s --out %s/o7 2>&1 >/dev/null", BIN, empty, T), &notes) == 0);
    int skipped = 0;
    for (const char *s = notes; s && (s = strstr(s, "skipped")); s++) skipped++;
    CHECK_MSG(skipped == 7, "%d skip notes: %s", skipped, notes ? notes : "");
    free(notes);
    CHECK(exists(fmt("%s/o7/index.html", T)) && exists(fmt("%s/o7/comparison.csv", T)));
    CHECK(!exists(fmt("%s/o7/schedule.png", T)));

    cli_cleanup();
    TEST_MAIN_END("test_report");
}
