/* plot_module_latency: module_latency, where the teacher's time goes, from
 * the module rows of its latest profile (the traced forward: every module
 * timed; rows named '(...)', the whole forwards, are not modules). One panel
 * per level of the module tree (1: the top-level blocks, 2: their resnets,
 * attentions and samplers, 3: transformer layers and the parts' own layers),
 * so no module shares a panel with its parent or child and no time is
 * counted twice. Each panel has the level's --top N modules by median, each
 * bar the module's median (p10-p90 error bar) split by the classes of the ops
 * inside it: shares of the median in proportion to the classes' summed self
 * times, the unattributed remainder as 'other', so the stack adds up to the
 * median exactly. Bars hollow when the profile was judged unstable. Tested
 * by tests/test_report.c (stacks against SQL medians, levels, order). */
#include "report_int.h"
#include "err.h"
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Level 3 holds the transformer layers, the finest unit a plan removes; below them, single ops. */
enum { LEVELS = 3 };
enum { CLS_CONV, CLS_LINEAR, CLS_ATTN, CLS_NORM, CLS_OTHER, NCLS };
static const char *const CLS[NCLS] = {"convolution (Conv2d)", "GEMM (Linear)", "attention (Attention minus its Linears)",
                                      "normalisation (GroupNorm, LayerNorm)", "other (the rest of the median)"};
static const char *const COL[NCLS] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#bab0ac"};
static const char *const LEVEL_NAME[LEVELS] = {"level 1: the blocks", "level 2: the blocks' parts",
                                               "level 3: their parts (transformer layers, ...)"};

static int op_class(const char *kind) {
    if (!strcmp(kind, "Conv2d")) return CLS_CONV;
    if (!strcmp(kind, "Linear")) return CLS_LINEAR;
    if (!strcmp(kind, "Attention")) return CLS_ATTN;
    if (!strcmp(kind, "GroupNorm") || !strcmp(kind, "LayerNorm")) return CLS_NORM;
    return CLS_OTHER;
}

/* Depth in the module tree: dotted components, list indices not counted
 * ("down_blocks.1" 1, "down_blocks.1.attentions.0" 2). */
static int level_of(const char *name) {
    int n = 0;
    for (const char *s = name; *s;) {
        size_t len = strcspn(s, ".");
        if (strspn(s, "0123456789") != len) n++;
        s += len + (s[len] == '.');
    }
    return n;
}

static const ModRow *g_rows; /* qsort and bsearch context */

static int cmp_name(const void *a, const void *b) {
    return strcmp(g_rows[*(const int *)a].name, g_rows[*(const int *)b].name);
}

static int cmp_ms_desc(const void *pa, const void *pb) {
    const ModRow *a = &g_rows[*(const int *)pa], *b = &g_rows[*(const int *)pb];
    if (a->ms != b->ms) return a->ms > b->ms ? -1 : 1;
    return strcmp(a->name, b->name);
}

/* The row named name (n chars) among the rows sorted by name, or -1. */
static int find(const ModRow *r, const int *sorted, int n, const char *name, size_t len) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, c = strncmp(r[sorted[mid]].name, name, len);
        if (!c && r[sorted[mid]].name[len]) c = 1;
        if (!c) return sorted[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

/* The tree's arithmetic over rows r[0..n-1] (modules only): parent[i] (the
 * nearest ancestor row, -1 none) and cls[i*NCLS + c], the summed self time
 * (own median minus its children's, at least 0) of class c in i's subtree. */
static void classes(const ModRow *r, int n, int *parent, double *cls) {
    int *sorted = xmalloc((size_t)n * sizeof *sorted + 1);
    for (int i = 0; i < n; i++) sorted[i] = i;
    g_rows = r;
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_name);
    for (int i = 0; i < n; i++) {
        parent[i] = -1;
        for (size_t len = strlen(r[i].name); parent[i] < 0 && len > 0;) {
            while (len > 0 && r[i].name[len - 1] != '.') len--; /* strip the last component */
            if (len == 0) break;
            parent[i] = find(r, sorted, n, r[i].name, --len);
        }
    }
    double *self = xmalloc((size_t)n * sizeof *self + 1);
    for (int i = 0; i < n; i++) self[i] = isfinite(r[i].ms) ? r[i].ms : 0;
    for (int i = 0; i < n; i++)
        if (parent[i] >= 0 && isfinite(r[i].ms)) self[parent[i]] -= r[i].ms;
    memset(cls, 0, (size_t)n * NCLS * sizeof *cls);
    for (int i = 0; i < n; i++) {
        int c = op_class(r[i].kind);
        double t = fmax(self[i], 0);
        for (int a = i; a >= 0; a = parent[a]) cls[a * NCLS + c] += t;
    }
    free(self);
    free(sorted);
}

/* The stack of a module of median ms: the four op classes share the median
 * in proportion to their times (scaled down when they exceed it: medians of
 * parts need not add up to the median of the whole), 'other' the rest. */
static void stack(double ms, const double *cls, double *seg) {
    double att = 0;
    for (int c = 0; c < CLS_OTHER; c++) att += cls[c];
    double k = att > ms && att > 0 ? ms / att : 1;
    double sum = 0;
    for (int c = 0; c < CLS_OTHER; c++) sum += seg[c] = cls[c] * k;
    seg[CLS_OTHER] = fmax(ms - sum, 0);
}

/* Panel origins and sizes (screen fractions) for np panels: side by side, or
 * levels 1 and 2 above a full-width level 3 (its names are the longest). */
static void panel_box(int np, int k, double *x, double *y, double *w, double *h) {
    const double bottom = 0.09, top = 0.93;
    if (np == 3) {
        double mid = (bottom + top) / 2;
        *x = k == 1 ? 0.5 : 0, *w = k == 2 ? 1 : 0.5;
        *y = k == 2 ? bottom : mid, *h = k == 2 ? mid - bottom : top - mid;
    } else {
        *x = (double)k / np, *w = 1.0 / np, *y = bottom, *h = top - bottom;
    }
}

static void panel(Buf *b, const char *name, int block, int level, int rows, int hollow) {
    buf_add(b, "set title \"%s\"\nset yrange [%d.5:0.5]\nset ytics scale 0%s\nplot ", LEVEL_NAME[level - 1], rows,
            rows > 20 ? " font \",7\"" : rows > 12 ? " font \",8\"" : "");
    for (int c = 0; c < NCLS; c++) {
        Buf lo = {0}, hi = {0};
        buf_add(&lo, "0");
        for (int k = 0; k < c; k++) buf_add(&lo, "+$%d", 3 + k);
        buf_add(&hi, "%s+$%d", lo.s, 3 + c);
        buf_add(b, "%s\"%s.dat\" index %d using (0):1:(%s):(%s):($1-0.4):($1+0.4)%s with boxxyerror lc rgb \"%s\"%s notitle",
                c ? ", \\\n     " : "", name, block, lo.s, hi.s, c ? "" : ":ytic(2)", COL[c], hollow ? " lw 1.5" : "");
        free(lo.s);
        free(hi.s);
    }
    buf_add(b, ", \\\n     \"\" index %d using 8:1:9:10 with xerrorbars lc rgb \"black\" pt 7 ps 0.4 notitle\n", block);
}

/* The key, once for all panels, in a strip of its own under them: a panel's
 * key is laid out within that panel's width. */
static void key_strip(Buf *b, int hollow) {
    buf_add(b, "set origin 0,0\nset size 1,0.09\nunset border\nunset tics\nunset xlabel\nunset ylabel\nunset title\n"
               "unset grid\nset xrange [0:1]\nset yrange [0:1]\nset key center center horizontal maxrows 2 width 1\nplot ");
    for (int c = 0; c < NCLS; c++)
        buf_add(b, "%sNaN with boxes lc rgb \"%s\"%s title \"%s\"", c ? ", \\\n     " : "", COL[c], hollow ? " lw 1.5" : "",
                CLS[c]);
    buf_add(b, ", \\\n     NaN with xerrorbars lc rgb \"black\" pt 7 ps 0.4 title \"median and p10-p90 of the module%s\"\n",
            hollow ? " (unstable)" : "");
}

int plot_module_latency(Report *R) {
    Artifact *a = art_new(R, "module_latency", "Where the teacher's time goes: modules by median ms, one tree level a panel", 1);
    int64_t tid = teacher_id(R);
    const Fwd *prof = NULL;
    for (int i = R->nfw - 1; i >= 0 && !prof; i--)
        if (R->fw[i].model_id == tid && !R->fw[i].plan_id) prof = &R->fw[i];
    if (!prof) {
        art_skip(R, a, "no profile of the teacher in the store (run unetlab profile --model T --db)");
        return 0;
    }
    ModRow *all = NULL;
    int nall = 0, rc = store_module_rows(R, prof->run_id, prof->model_id, 0, &all, &nall);
    if (rc) return rc;
    /* modules only: '(forward)', '(untraced)' and the like are whole forwards */
    ModRow *r = xmalloc((size_t)nall * sizeof *r + 1);
    int n = 0;
    for (int i = 0; i < nall; i++)
        if (all[i].name[0] && all[i].name[0] != '(') r[n++] = all[i];
    int *parent = xmalloc((size_t)n * sizeof *parent + 1);
    double *cls = xmalloc((size_t)n * NCLS * sizeof *cls + 1);
    int *pick = xmalloc((size_t)n * sizeof *pick + 1), np[LEVELS] = {0}, npanels = 0;
    classes(r, n, parent, cls);
    char *path = NULL;
    FILE *d = NULL;
    Buf body = {0};
    for (int lv = 1; lv <= LEVELS; lv++)
        for (int i = 0; i < n; i++) np[lv - 1] += level_of(r[i].name) == lv && isfinite(r[i].ms);
    for (int lv = 0; lv < LEVELS; lv++) npanels += np[lv] > 0;
    if (!npanels) {
        art_skip(R, a, "the teacher's latest profile has no module rows");
        goto done;
    }
    if (!(d = out_open(R, a->name, ".dat", &path))) { rc = ERR_OUTPUT; goto done; }
    char e[512];
    fwd_engine(prof, e, sizeof e);
    Lat lat = fwd_lat(prof);
    fprintf(d, "# module_latency.dat (unetlab report): the top %d modules per level of the module tree by median ms in\n"
               "# run %" PRId64 " of %s: batch %d, %dx%d px, %d tokens, %s, %s%s. Module times come from the\n"
               "# traced forward (every module timed). Blocks: one per level (1: top-level blocks, 2: their parts,\n"
               "# 3: the parts' parts). Classes: each descendant's self time (its median minus its children's, at\n"
               "# least 0) by its kind: Conv2d -> convolution, Linear -> GEMM, Attention -> attention (minus its\n"
               "# Linears, its children), GroupNorm/LayerNorm -> normalisation; they share the module's median in\n"
               "# proportion (scaled down when they exceed it) and other is the rest: the five add up to total.\n"
               "# rank \"module\" convolution gemm attention normalisation other total p10 p90 unstable \"kind\"\n",
            R->o->top, prof->run_id, prof->spec, prof->batch, prof->height, prof->width, prof->tokens, prof->dtype, e,
            prof->unstable ? "; judged unstable" : "");
    int block = 0;
    const char *sep = "";
    for (int lv = 1; lv <= LEVELS; lv++) {
        if (!np[lv - 1]) continue;
        int m = 0;
        for (int i = 0; i < n; i++)
            if (level_of(r[i].name) == lv && isfinite(r[i].ms)) pick[m++] = i;
        g_rows = r;
        qsort(pick, (size_t)m, sizeof *pick, cmp_ms_desc);
        if (m > R->o->top) m = R->o->top;
        np[lv - 1] = m;
        fprintf(d, "%s# block %d: %s\n", sep, block, LEVEL_NAME[lv - 1]);
        sep = "\n\n";
        for (int k = 0; k < m; k++) {
            const ModRow *x = &r[pick[k]];
            double seg[NCLS];
            stack(x->ms, &cls[pick[k] * NCLS], seg);
            fprintf(d, "%d ", k + 1);
            dat_str(d, x->name);
            for (int c = 0; c < NCLS; c++) fputc(' ', d), dat_real(d, seg[c]);
            fputc(' ', d), dat_real(d, x->ms);
            fputc(' ', d), dat_real(d, x->p10);
            fputc(' ', d), dat_real(d, x->p90);
            fprintf(d, " %d ", prof->unstable);
            dat_str(d, x->kind);
            fputc('\n', d);
        }
        block++;
    }
    rc = out_close(R, d, path);
    d = NULL;
    if (rc) goto done;
    ids_add(&a->runs, prof->run_id);
    a->engine = xstrdup(e);
    char untraced[160];
    if (lat.traced) snprintf(untraced, sizeof untraced, "; this store holds no untraced forwards to compare");
    else snprintf(untraced, sizeof untraced, "; the same forwards untraced, the latency a user gets, took %.4g ms", lat.ms);
    a->caption = xasprintf(
        "The modules with the largest median time in the latest profile of the teacher %s (run %" PRId64 ": batch %d, "
        "%dx%d px, %d tokens, %s), the top %d of each level of the module tree in its own panel, so that no module's "
        "time is counted with its parent's. Module times come from the traced forward (every module timed: %.4g ms "
        "median)%s. Each bar is the module's median, stacked by the classes of the ops inside it (their share of the "
        "median; 'other' the rest), with its p10-p90 as an error bar.%s Measured on: %s.",
        prof->spec, prof->run_id, prof->batch, prof->height, prof->width, prof->tokens, prof->dtype, R->o->top, prof->ms,
        untraced, prof->unstable ? " Hollow bars: the profile was judged unstable." : "", e);
    char title[800], xl[64];
    snprintf(title, sizeof title, "Where the time goes: %s, batch %d, %dx%d px, %d tokens; forward %.4g ms traced",
             base_name(prof->spec), prof->batch, prof->height, prof->width, prof->tokens, prof->ms);
    if (!lat.traced) snprintf(title + strlen(title), sizeof title - strlen(title), ", %.4g ms untraced", lat.ms);
    if (prof->unstable) snprintf(title + strlen(title), sizeof title - strlen(title), " (unstable)");
    snprintf(title + strlen(title), sizeof title - strlen(title), "\nmodule times from the traced forward; %s", e);
    snprintf(xl, sizeof xl, "median ms, traced");
    buf_add(&body, "reset\nset multiplot title ");
    gp_str(&body, title);
    buf_add(&body, "\nset xlabel ");
    gp_str(&body, xl);
    buf_add(&body, "\nunset key\nset xrange [0:*]\nset grid x\nset errorbars small\n%s",
            prof->unstable ? "set style fill empty border\n" : "set style fill solid 0.85 border rgb \"white\"\n");
    for (int lv = 1, k = 0; lv <= LEVELS; lv++) {
        if (!np[lv - 1]) continue;
        double x, y, w, h;
        panel_box(npanels, k, &x, &y, &w, &h);
        buf_add(&body, "set origin %.3f,%.3f\nset size %.3f,%.3f\n", x, y, w, h);
        panel(&body, a->name, k, lv, np[lv - 1], prof->unstable);
        k++;
    }
    key_strip(&body, prof->unstable);
    buf_add(&body, "unset multiplot\n");
    rc = gp_write(R, a, body.s);
    if (!rc) rc = gp_run(R, a);
done:
    if (d) { fclose(d); free(path); }
    free(r);
    modrows_free(all, nall);
    free(parent);
    free(cls);
    free(pick);
    free(body.s);
    return rc;
}
