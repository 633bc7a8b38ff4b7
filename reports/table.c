/* table: a table of the report as NAME.csv (the raw numbers, as stored),
 * NAME.md and NAME.tex (booktabs) (the numbers as shown, with their markers:
 * "(traced)", "(unstable)"). What goes in each table is table_*.c's; this
 * file only writes them. Tested by tests/test_report.c (cells against SQL). */
#include "report_int.h"
#include "err.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

Table *table_new(int ncol, const char *const *csv_head, const char *const *head, const char *align) {
    Table *t = xcalloc(1, sizeof *t);
    t->ncol = ncol;
    t->csv_head = csv_head;
    t->head = head;
    t->align = align;
    return t;
}

void table_row(Table *t, const char *const *raw, const char *const *shown) {
    if (t->nrow == t->cap) {
        t->cap = 2 * t->cap + 8;
        t->raw = xrealloc(t->raw, (size_t)t->cap * (size_t)t->ncol * sizeof *t->raw);
        t->shown = xrealloc(t->shown, (size_t)t->cap * (size_t)t->ncol * sizeof *t->shown);
    }
    for (int c = 0; c < t->ncol; c++) {
        t->raw[t->nrow * t->ncol + c] = dup0(raw[c]);
        t->shown[t->nrow * t->ncol + c] = dup0(shown && shown[c] ? shown[c] : raw[c]);
    }
    t->nrow++;
}

void table_free(Table *t) {
    if (!t) return;
    for (int i = 0; i < t->nrow * t->ncol; i++) { free(t->raw[i]); free(t->shown[i]); }
    free(t->raw);
    free(t->shown);
    free(t);
}

int table_shows(const Table *t, int c) { return !t->csv_only || t->csv_only[c] != '1'; }

static void csv_cell(FILE *f, const char *s) {
    if (!strpbrk(s, ",\"\r\n")) { fputs(s, f); return; }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void md_cell(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '|') fputs("\\|", f);
        else if (*s == '\n') fputc(' ', f);
        else fputc(*s, f);
    }
}

static void tex_cell(FILE *f, const char *s) {
    for (; *s; s++) switch (*s) {
        case '\\': fputs("\\textbackslash{}", f); break;
        case '~': fputs("\\textasciitilde{}", f); break;
        case '^': fputs("\\textasciicircum{}", f); break;
        case '&': case '%': case '$': case '#': case '_': case '{': case '}': fprintf(f, "\\%c", *s); break;
        case '\n': fputc(' ', f); break;
        default: fputc(*s, f);
        }
}

static int write_csv(Report *R, const Artifact *a) {
    const Table *t = a->table;
    char *path;
    FILE *f = out_open(R, a->name, ".csv", &path);
    if (!f) return ERR_OUTPUT;
    for (int c = 0; c < t->ncol; c++) {
        if (c) fputc(',', f);
        csv_cell(f, t->csv_head[c]);
    }
    fputc('\n', f);
    for (int r = 0; r < t->nrow; r++) {
        for (int c = 0; c < t->ncol; c++) {
            if (c) fputc(',', f);
            csv_cell(f, t->raw[r * t->ncol + c]);
        }
        fputc('\n', f);
    }
    return out_close(R, f, path);
}

static int write_md(Report *R, const Artifact *a) {
    const Table *t = a->table;
    char *path;
    FILE *f = out_open(R, a->name, ".md", &path);
    if (!f) return ERR_OUTPUT;
    fprintf(f, "**%s**\n\n|", a->title);
    for (int c = 0; c < t->ncol; c++)
        if (table_shows(t, c)) { fputc(' ', f); md_cell(f, t->head[c]); fputs(" |", f); }
    fputs("\n|", f);
    for (int c = 0; c < t->ncol; c++)
        if (table_shows(t, c)) fputs(t->align[c] == 'r' ? "---:|" : "---|", f);
    fputc('\n', f);
    for (int r = 0; r < t->nrow; r++) {
        fputc('|', f);
        for (int c = 0; c < t->ncol; c++)
            if (table_shows(t, c)) { fputc(' ', f); md_cell(f, t->shown[r * t->ncol + c]); fputs(" |", f); }
        fputc('\n', f);
    }
    if (a->caption) fprintf(f, "\n%s\n", a->caption);
    return out_close(R, f, path);
}

static int write_tex(Report *R, const Artifact *a) {
    const Table *t = a->table;
    char *path;
    FILE *f = out_open(R, a->name, ".tex", &path);
    if (!f) return ERR_OUTPUT;
    char *align = xcalloc((size_t)t->ncol + 1, 1);
    for (int c = 0, k = 0; c < t->ncol; c++)
        if (table_shows(t, c)) align[k++] = t->align[c];
    fprintf(f, "%% %s.tex (unetlab report from %s): %s. Needs \\usepackage{booktabs}.\n\\begin{tabular}{%s}\n\\toprule\n",
            a->name, db_path(R->db), a->title, align);
    free(align);
    for (int c = 0, k = 0; c < t->ncol; c++)
        if (table_shows(t, c)) { if (k++) fputs(" & ", f); tex_cell(f, t->head[c]); }
    fputs(" \\\\\n\\midrule\n", f);
    for (int r = 0; r < t->nrow; r++) {
        for (int c = 0, k = 0; c < t->ncol; c++)
            if (table_shows(t, c)) { if (k++) fputs(" & ", f); tex_cell(f, t->shown[r * t->ncol + c]); }
        fputs(" \\\\\n", f);
    }
    fputs("\\bottomrule\n\\end{tabular}\n", f);
    return out_close(R, f, path);
}

int table_write(Report *R, Artifact *a) {
    int rc = write_csv(R, a);
    if (!rc) rc = write_md(R, a);
    if (!rc) rc = write_tex(R, a);
    if (!rc) R->res->tables++;
    return rc;
}
