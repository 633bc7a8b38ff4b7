/* gnuplot: what every plot writes and draws with: quoted strings for scripts
 * and .dat files, titles, k/M tics, label thinning, NAME.gp's header and
 * terminals, and running `gnuplot NAME.gp` as a child (posix_spawn with an
 * argument vector, in the output directory) with its exit status and picture
 * checked. Tested by tests/test_report.c (PNG and SVG sizes, a failing
 * gnuplot named, no gnuplot on PATH). */
#include "report_int.h"
#include "err.h"
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

void gp_str(Buf *b, const char *s) {
    buf_add(b, "\"");
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') buf_add(b, "\\%c", *s);
        else if (*s == '\n') buf_add(b, "\\n");
        else buf_add(b, "%c", *s);
    }
    buf_add(b, "\"");
}

/* Centred on the canvas, not on the plot area, whose centre moves right with
 * long tick labels and would push a long title off the picture. */
void gp_title(Buf *b, const char *title) {
    int lines = 1;
    for (const char *s = title; *s; s++) lines += *s == '\n';
    buf_add(b, "reset\nset tmargin %d\nset label 99 front center at screen 0.5,0.975 ", lines + 2);
    gp_str(b, title);
}

/* gnuplot's own "%.0s%c" rounds 1.5M to "2M" and "%.3s%c" prints
 * "-500.000k": tics at whole steps of 1, 2 or 5 x 10^k, each labelled exactly
 * in the unit of the step, read better. */
void gp_si_tics(Buf *b, const char *axis, double max) {
    if (!(max > 0)) max = 1;
    double raw = max / 6, mag = pow(10, floor(log10(raw))), step = mag;
    if (raw / mag > 5) step = 10 * mag;
    else if (raw / mag > 2) step = 5 * mag;
    else if (raw / mag > 1) step = 2 * mag;
    double unit = step >= 1e6 ? 1e6 : step >= 1e3 ? 1e3 : 1;
    const char *suffix = unit == 1e6 ? "M" : unit == 1e3 ? "k" : "";
    buf_add(b, "set %stics (", axis);
    int n = 0;
    for (double v = 0; v <= max + step / 2 && n < 40; v += step, n++)
        buf_add(b, "%s\"%.0f%s\" %.0f", n ? ", " : "", v / unit, v ? suffix : "", v);
    buf_add(b, ")\n");
}

void dat_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) fputc(*s == '"' ? '\'' : *s == '\n' ? ' ' : *s, f); /* gnuplot cannot escape a quote there */
    fputc('"', f);
}

void dat_real(FILE *f, double v) {
    char b[40];
    real_text(b, sizeof b, v);
    fputs(isfinite(v) && *b ? b : "?", f);
}

void gp_thin_labels(const double *x, const double *y, int n, double w, double h, char *keep) {
    for (int i = 0; i < n; i++) {
        int last = i == n - 1, clash = 0;
        for (int k = 0; k < i; k++) {
            if (!keep[k] || fabs(x[i] - x[k]) >= w || fabs(y[i] - y[k]) >= h) continue;
            if (last && k > 0) keep[k] = 0; /* the last always shows: one in the middle gives way */
            else clash = 1;
        }
        keep[i] = last || !clash; /* the first clashes with nothing */
    }
}

int gp_write(Report *R, Artifact *a, const char *body) {
    char *path;
    FILE *f = out_open(R, a->name, ".gp", &path);
    if (!f) return ERR_OUTPUT;
    fprintf(f, "# %s.gp: %s\n# Written by unetlab report from %s. Reads %s.dat; writes", a->name, a->title,
            db_path(R->db), a->name);
    if (R->o->png) fprintf(f, " %s.png", a->name);
    if (R->o->svg) fprintf(f, " %s.svg", a->name);
    fprintf(f, ".\n# Run it in this directory: gnuplot %s.gp\nset encoding utf8\nset datafile missing \"?\"\n", a->name);
    if (R->o->png)
        fprintf(f, "\nset terminal pngcairo size 1000,700 noenhanced font \"Sans,11\"\nset output \"%s.png\"\n%s", a->name,
                body);
    if (R->o->svg)
        fprintf(f, "\nset terminal svg size 1000,700 noenhanced font \"Sans,11\" background \"white\"\nset output \"%s.svg\"\n%s",
                a->name, body);
    fprintf(f, "unset output\n");
    return out_close(R, f, path);
}

/* gnuplot's first line naming a problem in its log (an error, else a warning, else its first line). */
static void first_problem(const char *logpath, char *first, size_t n) {
    first[0] = '\0';
    FILE *l = fopen(logpath, "r");
    char line[240];
    while (l && fgets(line, sizeof line, l)) {
        line[strcspn(line, "\n")] = '\0';
        if (strstr(line, "rror") || strstr(line, "arning") || !*first) snprintf(first, n, "%s", line);
        if (strstr(line, "rror")) break;
    }
    if (l) fclose(l);
}

/* Its output goes to NAME.gnuplot.log there, removed when it succeeds. A
 * missing gnuplot is not an error: res->gnuplot_missing is set and nothing
 * more is drawn. */
int gp_run(Report *R, Artifact *a) {
    if (R->res->gnuplot_missing) return 0;
    char *script = xasprintf("%s.gp", a->name), *log = xasprintf("%s.gnuplot.log", a->name);
    char *argv[] = {"gnuplot", script, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    /* In order: into the directory (the script's relative paths), then its output to the log. */
    int e = posix_spawn_file_actions_addchdir_np(&fa, R->o->dir);
    if (!e) e = posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (!e) e = posix_spawn_file_actions_adddup2(&fa, 1, 2);
    if (!e) e = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    pid_t pid = 0;
    if (!e) e = posix_spawnp(&pid, "gnuplot", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    int rc = 0;
    if (e == ENOENT) {
        R->res->gnuplot_missing = 1;
    } else if (e) {
        rc = err_set(ERR_RUNTIME, "cannot run gnuplot on '%s/%s': %s", R->o->dir, script, strerror(e));
    } else {
        int st = 0;
        pid_t w;
        while ((w = waitpid(pid, &st, 0)) < 0 && errno == EINTR) {}
        char *logpath = xasprintf("%s/%s", R->o->dir, log);
        if (w < 0 || !WIFEXITED(st) || WEXITSTATUS(st)) {
            char first[240];
            first_problem(logpath, first, sizeof first);
            rc = err_set(ERR_RUNTIME, "gnuplot failed on '%s/%s' (%s %d; its output is in %s): %s", R->o->dir, script,
                         w >= 0 && WIFEXITED(st) ? "exit" : "signal",
                         w >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : w >= 0 ? WTERMSIG(st) : -1, logpath, first);
        } else {
            unlink(logpath);
            const char *ext[2] = {".png", ".svg"};
            int want[2] = {R->o->png, R->o->svg};
            for (int k = 0; k < 2 && !rc; k++) {
                if (!want[k]) continue;
                char *pic = xasprintf("%s/%s%s", R->o->dir, a->name, ext[k]);
                struct stat sb;
                if (stat(pic, &sb) || sb.st_size == 0) {
                    rc = err_set(ERR_RUNTIME, "gnuplot ran '%s/%s' but wrote no '%s'", R->o->dir, script, pic);
                    free(pic);
                } else
                    out_written(R, pic);
            }
            if (!rc) a->drawn = 1;
        }
        free(logpath);
    }
    free(script);
    free(log);
    return rc;
}
