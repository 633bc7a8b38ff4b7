/* unetlab report: the store as plots (gnuplot data, scripts, pictures),
 * tables (Markdown, LaTeX, CSV) and an index.html with the provenance of
 * every number. The work is in reports/ (one file per output); this file parses the options
 * and maps the outcome to an exit code. Tested by tests/test_report.c. */
#include "cli.h"
#include "err.h"
#include "report.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char USAGE[] =
    "usage: unetlab report --db DB --out DIR [--format png|svg|both] [--plan P] [--top N]\n"
    "\n"
    "Reads the store and writes into DIR (created if absent):\n"
    "  plots   params_vs_latency, loss_vs_saving, module_latency, schedule, layer_loss:\n"
    "          NAME.dat (data), NAME.gp (gnuplot script) and NAME.png and/or NAME.svg\n"
    "          (1000x700; --format, default png), drawn by running gnuplot;\n"
    "  tables  comparison (every model: params, FLOPs, latency measured here, the papers'\n"
    "          claims apart), schedule (the latest schedule's stages), candidates (the\n"
    "          --top N best of its first stage): NAME.md, NAME.tex (booktabs), NAME.csv;\n"
    "  index.html with every picture and table and the runs behind them (device, engine,\n"
    "          commit, date, command line).\n"
    "Latencies are the untraced forwards (profile's '(untraced)' rows; a store older than that\n"
    "shows the traced ones, labelled so), with p10-p90 error bars wherever they are plotted;\n"
    "rows measured unstable (see `unetlab profile --help`, Noise) are drawn hollow and\n"
    "flagged '(unstable)' in tables; a schedule's milliseconds are a series of their own,\n"
    "labelled predicted (or measured). module_latency shows one level of the module tree\n"
    "per panel (no module beside its own parts), the --top N (default 15) of each level,\n"
    "each bar stacked by op class to exactly its median. layer_loss shows the NMSE per\n"
    "feature point of plan P's eval (default: the latest schedule's last stage).\n"
    "A plot without data is skipped with a note. Without gnuplot on PATH everything but the\n"
    "pictures is written and the exit code is 8.\n";

int cmd_report(int argc, char **argv) {
    const char *dbpath = NULL, *out = NULL, *fmt = "png", *plan_path = NULL, *top_s = "15";
    const Opt opts[] = {{"--db", 1, &dbpath}, {"--out", 1, &out}, {"--format", 1, &fmt}, {"--plan", 1, &plan_path},
                        {"--top", 1, &top_s}, {NULL, 0, NULL}};
    int rc = cli_parse(argc, argv, opts, USAGE);
    if (rc) return rc;
    if (!dbpath || !out) return err_set(ERR_USAGE, "report: --db DB and --out DIR are required (see unetlab report --help)");
    if (!*out) return err_set(ERR_USAGE, "option '--out': give a directory");
    long top;
    if ((rc = cli_int("--top", top_s, 1, 10000, &top))) return rc;
    int png = !strcmp(fmt, "png") || !strcmp(fmt, "both"), svg = !strcmp(fmt, "svg") || !strcmp(fmt, "both");
    if (!png && !svg) return err_set(ERR_USAGE, "option '--format': '%s' is not one of png, svg, both", fmt);
    char hash[17] = "";
    if (plan_path) { /* the store knows plans by the hash of their removal set */
        Plan p;
        plan_init(&p);
        rc = plan_load(&p, plan_path);
        if (!rc) plan_hash(&p, hash);
        plan_free(&p);
        if (rc) return rc;
    }
    CliProvenance prov;
    prov_fill(&prov, argc, argv, 0);
    Db *db;
    if ((rc = db_open_existing(&db, dbpath))) {
        prov_free(&prov);
        return rc;
    }
    ReportOptions o = {out, png, svg, (int)top, plan_path ? hash : NULL, plan_path, prov.cmdline};
    ReportResult res;
    rc = report_write(db, &o, &res);
    db_close(db);
    prov_free(&prov);
    if (!rc && res.gnuplot_missing) {
        /* Not an error, so not main's "unetlab: error:" line: the one line
         * below, then the documented exit code (README, "Exit codes"). */
        fprintf(stderr, "unetlab: gnuplot not found: data and scripts are in %s; run `gnuplot NAME.gp` there to draw them\n",
                out);
        fflush(stdout);
        exit(REPORT_EXIT_NO_GNUPLOT);
    }
    if (!rc)
        fprintf(stderr, "report: %d of %d plots, %d table%s and index.html in %s\n", res.plots,
                res.plots + res.plots_skipped, res.tables, res.tables == 1 ? "" : "s", out);
    return rc;
}
