/* index: index.html, every plot and table of the report with its caption
 * (what it shows, where its numbers come from, which are measured and which
 * predicted or published) and the runs behind it (table runs: date, command
 * line, commit, device, build). Tested by tests/test_report.c. */
#include "report_int.h"
#include "err.h"
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void html_text(FILE *f, const char *s) {
    for (; *s; s++) switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
}

static void html_table(FILE *f, const Table *t) {
    fputs("<table class=\"data\">\n<tr>", f);
    for (int c = 0; c < t->ncol; c++)
        if (table_shows(t, c)) { fputs("<th>", f); html_text(f, t->head[c]); fputs("</th>", f); }
    fputs("</tr>\n", f);
    for (int r = 0; r < t->nrow; r++) {
        fputs("<tr>", f);
        for (int c = 0; c < t->ncol; c++) {
            if (!table_shows(t, c)) continue;
            const char *cell = t->shown[r * t->ncol + c];
            /* a number too noisy to trust stands out where it is read */
            fprintf(f, "<td%s%s>", t->align[c] == 'r' ? " class=\"num\"" : "",
                    strstr(cell, "(unstable") ? " style=\"color: #a00\"" : "");
            html_text(f, cell);
            fputs("</td>", f);
        }
        fputs("</tr>\n", f);
    }
    fputs("</table>\n", f);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void html_provenance(FILE *f, const Report *R, const Artifact *a) {
    fputs("<details open><summary>Provenance</summary>\n<p>", f);
    if (a->engine) { fputs("Measured on: ", f); html_text(f, a->engine); fputs(". ", f); }
    fprintf(f, "Runs behind these numbers (table <code>runs</code>):</p>\n");
    if (!a->runs.n) { fputs("<p>(none recorded)</p>\n</details>\n", f); return; }
    int64_t *ids = xmalloc((size_t)a->runs.n * sizeof *ids);
    memcpy(ids, a->runs.v, (size_t)a->runs.n * sizeof *ids);
    qsort(ids, (size_t)a->runs.n, sizeof *ids, cmp_i64);
    fputs("<table class=\"prov\">\n<tr><th>run</th><th>date (UTC)</th><th>command line</th><th>git commit</th>"
          "<th>device</th><th>build</th><th>status</th></tr>\n", f);
    for (int i = 0; i < a->runs.n; i++) {
        const Run *r = run_of(R, ids[i]);
        if (!r) continue;
        fprintf(f, "<tr><td class=\"num\">%" PRId64 "</td>", r->id);
        const char *cell[] = {r->started, r->cmd, r->commit, r->device, r->flags, r->status};
        for (size_t c = 0; c < sizeof cell / sizeof *cell; c++) {
            fputs(c == 1 ? "<td><code>" : "<td>", f); /* the command line as code */
            html_text(f, cell[c]);
            fputs(c == 1 ? "</code></td>" : "</td>", f);
        }
        fputs("</tr>\n", f);
    }
    fputs("</table>\n</details>\n", f);
    free(ids);
}

static void html_artifact(FILE *f, const Report *R, const Artifact *a) {
    fprintf(f, "<h2 id=\"%s-%s\">", a->is_plot ? "plot" : "table", a->name);
    html_text(f, a->title);
    fprintf(f, " <small>(%s)</small></h2>\n", a->name);
    if (a->note) {
        fputs("<p class=\"note\">Skipped: ", f);
        html_text(f, a->note);
        fputs(".</p>\n", f);
        return;
    }
    if (a->caption) { fputs("<p>", f); html_text(f, a->caption); fputs("</p>\n", f); }
    if (a->is_plot) {
        if (a->drawn)
            fprintf(f, "<p><img src=\"%s.%s\" width=\"1000\" height=\"700\" alt=\"%s\"></p>\n", a->name,
                    R->o->png ? "png" : "svg", a->name);
        else
            fprintf(f, "<p class=\"note\">Not drawn (gnuplot not found): run <code>gnuplot %s.gp</code> in this "
                       "directory.</p>\n", a->name);
        fprintf(f, "<p>Files: <a href=\"%s.dat\">%s.dat</a>, <a href=\"%s.gp\">%s.gp</a>", a->name, a->name, a->name,
                a->name);
        if (a->drawn && R->o->png) fprintf(f, ", <a href=\"%s.png\">%s.png</a>", a->name, a->name);
        if (a->drawn && R->o->svg) fprintf(f, ", <a href=\"%s.svg\">%s.svg</a>", a->name, a->name);
        fputs("</p>\n", f);
    } else {
        html_table(f, a->table);
        fprintf(f, "<p>Files: <a href=\"%s.md\">%s.md</a>, <a href=\"%s.tex\">%s.tex</a>, <a href=\"%s.csv\">%s.csv</a></p>\n",
                a->name, a->name, a->name, a->name, a->name, a->name);
    }
    html_provenance(f, R, a);
}

int index_write(Report *R) {
    char *path;
    FILE *f = out_open(R, "index", ".html", &path);
    if (!f) return ERR_OUTPUT;
    char now[32];
    time_t t = time(NULL);
    strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>unetlab report</title>\n<style>\n"
          "body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; }\n"
          "table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }\n"
          "th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }\n"
          "td.num { text-align: right; font-variant-numeric: tabular-nums; }\n"
          "table.prov { font-size: 0.8em; }\nimg { max-width: 100%; border: 1px solid #eee; }\n"
          ".note { color: #a00; }\n</style>\n</head>\n<body>\n<h1>unetlab report</h1>\n<p>From <code>", f);
    html_text(f, db_path(R->db));
    fprintf(f, "</code>, written %s by <code>", now);
    html_text(f, R->o->command_line ? R->o->command_line : "unetlab report");
    fputs("</code>. Every number below is read from that store; each section names the runs that measured it. "
          "Measured and published numbers are kept in separate columns, measured and predicted milliseconds in "
          "separate series. A latency is the median of the untraced forwards with its p10-p90 spread, unless marked "
          "(traced); one marked (unstable) was judged too noisy to trust.</p>\n<ul>\n", f);
    for (int i = 0; i < R->nart; i++) {
        fprintf(f, "<li><a href=\"#%s-%s\">", R->art[i].is_plot ? "plot" : "table", R->art[i].name);
        html_text(f, R->art[i].title);
        fprintf(f, "</a>%s</li>\n", R->art[i].note ? " (skipped)" : "");
    }
    fputs("</ul>\n", f);
    for (int i = 0; i < R->nart; i++) html_artifact(f, R, &R->art[i]);
    fputs("</body>\n</html>\n", f);
    return out_close(R, f, path);
}
