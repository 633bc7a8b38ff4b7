/* report: the store as pictures and tables. Reads models, latency, schedules,
 * eval results and the latest agree run through db's report reads and
 * writes, into one directory, gnuplot data (.dat) and scripts (.gp) with their
 * pictures, tables as Markdown, LaTeX (booktabs) and CSV, and an index.html
 * citing the runs behind every number. Tested by tests/test_report.c (the built binary). */
#ifndef UNETLAB_REPORT_H
#define UNETLAB_REPORT_H
#include "db.h"

/* Exit code of `unetlab report` when gnuplot is not on PATH: the data,
 * scripts, tables and index.html are written, the pictures are not. */
#define REPORT_EXIT_NO_GNUPLOT 8

typedef struct {
    const char *dir;           /* output directory, created (with its parents) if absent */
    int png, svg;              /* which pictures gnuplot draws */
    int top;                   /* modules per tree level in module_latency, rows in candidates */
    const char *plan_hash;     /* layer_loss: plan_hash of --plan's removal set, or NULL (the latest schedule's end) */
    const char *plan_label;    /* --plan's path, for titles */
    const char *command_line;  /* this run's, for index.html */
} ReportOptions;

typedef struct {
    int plots, plots_skipped, tables;
    int gnuplot_missing;       /* no gnuplot on PATH: nothing drawn */
} ReportResult;

/* Writes every plot and table of db into o->dir, and index.html. A plot
 * whose data are absent is skipped with a one-line note on stderr. Prints
 * the paths written on stdout. Returns 0 (res->gnuplot_missing says whether
 * the pictures were drawn), ERR_OUTPUT naming the file or directory that
 * cannot be written, ERR_DB from the store, or ERR_RUNTIME naming the .gp
 * script when gnuplot fails on it. */
int report_write(Db *db, const ReportOptions *o, ReportResult *res);

/* Compares two feature-point names (diffusers' dotted module names, or
 * "output") in forward order: down blocks, mid block, up blocks, output;
 * within a block resnets.i, attentions.i, then the samplers; a module after
 * its children (its feature is its output). strcmp breaks ties. */
int report_forward_cmp(const char *a, const char *b);

#endif
