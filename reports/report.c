/* report: report_write, the orchestration (see report.h): the store is read
 * once (store.c), then each plot, table and index.html is written by its own
 * file (plot_*.c, table_*.c, index.c). Here too the plumbing they share:
 * growing text buffers, number texts, output files and the artifacts' list.
 * No SQL anywhere in reports/: every number comes through db's reads. Tested
 * by tests/test_report.c (the built binary). */
#include "report_int.h"
#include "numfmt.h"
#include "err.h"
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- text ------------------------------------------------------------------------ */

void buf_add(Buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (b->n + (size_t)k + 1 > b->cap) b->s = xrealloc(b->s, b->cap = 2 * (b->n + (size_t)k + 1));
    va_start(ap, fmt);
    vsnprintf(b->s + b->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
}

void buf_add_once(Buf *b, const char *s) {
    if (!b->s || !strstr(b->s, s)) buf_add(b, "%s%s", b->n ? "; " : "", s);
}

char *dup0(const char *s) { return xstrdup(s ? s : ""); }

void real_text(char *b, size_t n, double v) { num_shortest(v, b, n); }

const char *commas(int64_t v, char *buf, int size) { return num_commas(v, buf, (size_t)size); }

void ids_add(Ids *x, int64_t id) {
    if (id <= 0) return;
    for (int i = 0; i < x->n; i++)
        if (x->v[i] == id) return;
    if (x->n == x->cap) x->v = xrealloc(x->v, (size_t)(x->cap = 2 * x->cap + 4) * sizeof *x->v);
    x->v[x->n++] = id;
}

int names_find(const Names *x, const char *s) {
    for (int i = 0; i < x->n; i++)
        if (!strcmp(x->v[i], s)) return i;
    return -1;
}

int names_add(Names *x, const char *s) {
    int i = names_find(x, s);
    if (i >= 0) return i;
    if (x->n == x->cap) x->v = xrealloc(x->v, (size_t)(x->cap = 2 * x->cap + 8) * sizeof *x->v);
    x->v[x->n] = dup0(s);
    return x->n++;
}

void names_free(Names *x) {
    for (int i = 0; i < x->n; i++) free(x->v[i]);
    free(x->v);
    memset(x, 0, sizeof *x);
}

/* ---- output files ------------------------------------------------------------------ */

FILE *out_open(Report *R, const char *name, const char *ext, char **path) {
    *path = xasprintf("%s/%s%s", R->o->dir, name, ext);
    FILE *f = fopen(*path, "w");
    if (!f) {
        err_set(ERR_OUTPUT, "cannot write '%s': %s", *path, strerror(errno));
        free(*path);
        *path = NULL;
    }
    return f;
}

void out_written(Report *R, char *path) {
    R->written = xrealloc(R->written, (size_t)(R->nwritten + 1) * sizeof *R->written);
    R->written[R->nwritten++] = path;
}

int out_close(Report *R, FILE *f, char *path) {
    int bad = ferror(f);
    if (fclose(f) || bad) {
        int rc = err_set(ERR_OUTPUT, "cannot write '%s': %s", path, strerror(errno ? errno : EIO));
        free(path);
        return rc;
    }
    out_written(R, path);
    return 0;
}

Artifact *art_new(Report *R, const char *name, const char *title, int is_plot) {
    if (R->nart == (int)(sizeof R->art / sizeof *R->art)) die("report: more than %d artifacts", R->nart);
    Artifact *a = &R->art[R->nart++];
    memset(a, 0, sizeof *a);
    a->name = name;
    a->title = title;
    a->is_plot = is_plot;
    return a;
}

void art_skip(Report *R, Artifact *a, const char *why) {
    a->note = xstrdup(why);
    if (a->is_plot) R->res->plots_skipped++;
    fprintf(stderr, "report: %s%s skipped: %s\n", a->is_plot ? "" : "table ", a->name, why);
}

/* mkdir -p dir; ERR_OUTPUT naming the part that cannot be made, or dir when it is not a writable directory. */
static int make_dir(const char *dir) {
    char *p = xstrdup(dir);
    int rc = 0;
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0') continue;
        char c = *s;
        *s = '\0';
        struct stat sb;
        if (stat(p, &sb)) {
            if (mkdir(p, 0777) && errno != EEXIST) { rc = err_set(ERR_OUTPUT, "cannot create '%s': %s", p, strerror(errno)); break; }
        } else if (!S_ISDIR(sb.st_mode)) {
            rc = err_set(ERR_OUTPUT, "cannot write into '%s': '%s' is not a directory", dir, p);
            break;
        }
        *s = c;
        if (!c) break;
    }
    free(p);
    if (!rc && access(dir, W_OK | X_OK)) rc = err_set(ERR_OUTPUT, "cannot write into '%s': %s", dir, strerror(errno));
    return rc;
}

/* ---- the whole report ------------------------------------------------------------------ */

int report_write(Db *db, const ReportOptions *o, ReportResult *res) {
    memset(res, 0, sizeof *res);
    Report R = {.db = db, .o = o, .res = res};
    int rc = make_dir(o->dir);
    if (!rc) rc = store_load(&R);
    /* index.html lists them in this order */
    int (*const outputs[])(Report *) = {
        plot_params_latency,  plot_loss_saving,       plot_module_latency, plot_schedule,    plot_layer_loss,
        plot_rank_agreement,  plot_rank_convergence,  plot_timestep_bins,  plot_additivity,  table_comparison,
        table_schedule,       table_candidates,       table_rank_agreement, table_rank_convergence,
        table_timestep_bins,  table_additivity};
    for (size_t i = 0; !rc && i < sizeof outputs / sizeof *outputs; i++) rc = outputs[i](&R);
    for (int i = 0; i < R.nart; i++) res->plots += R.art[i].is_plot && !R.art[i].note;
    if (!rc) rc = index_write(&R);
    if (!rc)
        for (int i = 0; i < R.nwritten; i++) printf("%s\n", R.written[i]);
    for (int i = 0; i < R.nwritten; i++) free(R.written[i]);
    free(R.written);
    for (int i = 0; i < R.nart; i++) {
        free(R.art[i].note);
        free(R.art[i].caption);
        free(R.art[i].engine);
        free(R.art[i].runs.v);
        table_free(R.art[i].table);
    }
    store_free(&R);
    return rc;
}
