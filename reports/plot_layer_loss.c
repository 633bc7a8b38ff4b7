/* plot_layer_loss: layer_loss, the mean NMSE per feature point of one
 * student (--plan's, else the latest schedule's last stage) against its
 * teacher, in forward order (report_forward_cmp, public for its test), from
 * the plan's latest done eval job (db_plan_point_means). No latency here.
 * Tested by tests/test_report.c (rows and means against SQL, forward order). */
#include "report_int.h"
#include "err.h"
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Sort key of a dotted module name: pairs per component, a module after its children. */
static int forward_key(const char *name, long *key, int max) {
    int n = 0;
    const char *s = name;
    while (*s && n + 2 < max) {
        size_t len = strcspn(s, ".");
        char tok[64];
        snprintf(tok, sizeof tok, "%.*s", (int)(len < 63 ? len : 63), s);
        s += len;
        if (*s == '.') s++;
        long idx = -1;
        char *end;
        if (*s >= '0' && *s <= '9') {
            idx = strtol(s, &end, 10);
            if (*end == '.' || *end == '\0') s = *end ? end + 1 : end;
            else idx = -1;
        }
        long i = idx < 0 ? 0 : idx;
        if (!strcmp(tok, "down_blocks")) key[n++] = 0, key[n++] = i;
        else if (!strcmp(tok, "mid_block")) key[n++] = 1, key[n++] = i;
        else if (!strcmp(tok, "up_blocks")) key[n++] = 2, key[n++] = i;
        else if (!strcmp(tok, "output")) key[n++] = 3, key[n++] = i;
        else if (!strcmp(tok, "resnets")) key[n++] = i, key[n++] = 0;       /* resnets.i before attentions.i */
        else if (!strcmp(tok, "attentions")) key[n++] = i, key[n++] = 1;
        else if (!strcmp(tok, "transformer_blocks")) key[n++] = i, key[n++] = 0;
        else if (!strcmp(tok, "downsamplers") || !strcmp(tok, "upsamplers")) key[n++] = 1000000, key[n++] = i;
        else key[n++] = 2000000, key[n++] = i; /* unknown: after the known, by name */
    }
    key[n++] = LONG_MAX; /* a module's own output comes after its children's */
    return n;
}

int report_forward_cmp(const char *a, const char *b) {
    long ka[64], kb[64];
    int na = forward_key(a, ka, 64), nb = forward_key(b, kb, 64);
    for (int i = 0; i < na && i < nb; i++)
        if (ka[i] != kb[i]) return ka[i] < kb[i] ? -1 : 1;
    if (na != nb) return na < nb ? -1 : 1;
    return strcmp(a, b);
}

typedef struct {
    char **point;
    double *mean;
    int *n;
    int cnt, cap;
} Points;

static void keep_point(void *ctx, const char *point, double mean, int n) {
    Points *p = ctx;
    if (p->cnt == p->cap) {
        p->cap = 2 * p->cap + 64;
        p->point = xrealloc(p->point, (size_t)p->cap * sizeof *p->point);
        p->mean = xrealloc(p->mean, (size_t)p->cap * sizeof *p->mean);
        p->n = xrealloc(p->n, (size_t)p->cap * sizeof *p->n);
    }
    p->point[p->cnt] = dup0(point);
    p->mean[p->cnt] = mean;
    p->n[p->cnt++] = n;
}

static const Points *g_points;
static int cmp_point(const void *pa, const void *pb) {
    return report_forward_cmp(g_points->point[*(const int *)pa], g_points->point[*(const int *)pb]);
}

/* layer_loss: mean NMSE per feature point of one plan's done eval job. */
int plot_layer_loss(Report *R) {
    Artifact *a = art_new(R, "layer_loss", "Layer-level loss of a student: mean NMSE per feature point", 1);
    int64_t plan_id = 0;
    char which[700];
    int rc = 0, found = 0;
    if (R->o->plan_hash) {
        if ((rc = db_plan_find(R->db, R->o->plan_hash, &plan_id, &found))) return rc;
        if (!found) {
            char why[800];
            snprintf(why, sizeof why, "no plan in the store has the removal set of '%s'", R->o->plan_label);
            art_skip(R, a, why);
            return 0;
        }
        snprintf(which, sizeof which, "plan %s", R->o->plan_label);
    } else if (R->latest && R->nstages) {
        plan_id = R->stages[R->nstages - 1].plan_id;
        snprintf(which, sizeof which, "the plan after stage %d of schedule %" PRId64, R->stages[R->nstages - 1].stage,
                 R->latest->id);
    } else {
        art_skip(R, a, "no --plan given and no schedule stage in the store");
        return 0;
    }
    DbEvalJob job;
    Points pts = {0};
    int *ord = NULL;
    char *path = NULL;
    FILE *d = NULL;
    Buf body = {0};
    if ((rc = db_plan_point_means(R->db, plan_id, "nmse", &job, keep_point, &pts))) goto done;
    if (!job.job_id || !pts.cnt) {
        char why[900];
        snprintf(why, sizeof why, "%s (plan %" PRId64 ") has no done eval job with NMSE results", which, plan_id);
        art_skip(R, a, why);
        goto done;
    }
    ord = xmalloc((size_t)pts.cnt * sizeof *ord);
    for (int i = 0; i < pts.cnt; i++) ord[i] = i;
    g_points = &pts;
    qsort(ord, (size_t)pts.cnt, sizeof *ord, cmp_point);
    /* the removals, for the title */
    Buf rem = {0};
    int nrem = 0;
    cJSON *pj = cJSON_Parse(job.plan_json);
    const cJSON *it;
    Buf wrapped = {0}; /* the title's: two names a line */
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(pj, "remove")) {
        if (!cJSON_IsString(it)) continue;
        buf_add(&rem, "%s%s", nrem ? ", " : "", it->valuestring);
        if (nrem < 6) buf_add(&wrapped, "%s%s", !nrem ? "" : nrem % 2 ? ", " : ",\n", it->valuestring);
        nrem++;
    }
    cJSON_Delete(pj);
    if (nrem > 6) buf_add(&wrapped, ", ... (%d in all)", nrem);
    if (!nrem) buf_add(&rem, "nothing"), buf_add(&wrapped, "nothing");
    char calib[900];
    snprintf(calib, sizeof calib, "calibration set %s (%d sample%s, hash %s)", job.calib_source, job.n_samples,
             job.n_samples == 1 ? "" : "s", job.calib_hash);
    if (!(d = out_open(R, a->name, ".dat", &path))) { rc = ERR_OUTPUT; free(rem.s); free(wrapped.s); goto done; }
    fprintf(d, "# layer_loss.dat (unetlab report): mean NMSE per feature point, in forward order, of %s\n"
               "# (removes: %s) against its teacher %s; eval job %" PRId64 ", %s.\n# index \"point\" mean_nmse samples\n",
            which, rem.s, job.spec, job.job_id, calib);
    for (int k = 0; k < pts.cnt; k++) {
        int i = ord[k];
        fprintf(d, "%d ", k);
        dat_str(d, pts.point[i]);
        if (isfinite(pts.mean[i])) fprintf(d, " %.9g %d\n", pts.mean[i], pts.n[i]);
        else fprintf(d, " ? %d\n", pts.n[i]);
    }
    rc = out_close(R, d, path);
    d = NULL;
    if (rc) { free(rem.s); free(wrapped.s); goto done; }
    ids_add(&a->runs, job.run_id);
    a->caption = xasprintf("Mean NMSE (the student's feature against the teacher's, over the teacher feature's mean square) "
                           "per feature point, in forward order, for %s (removes: %s) of teacher %s, from eval job %" PRId64
                           " on the %s.",
                           which, rem.s, job.spec, job.job_id, calib);
    char *title = xasprintf("Mean NMSE per feature point: %s\n%s\nremoves %s", which, calib, wrapped.s);
    free(rem.s);
    free(wrapped.s);
    gp_title(&body, title);
    free(title);
    buf_add(&body, "\nset xlabel \"mean NMSE over the calibration samples (student vs teacher)\"\n"
                   "set yrange [%d.5:-0.5]\nset xrange [0:*]\nset ytics scale 0%s\nset grid x\n"
                   "set style fill solid 0.85 border rgb \"white\"\n"
                   "plot \"%s.dat\" using ($3/2):1:(0):3:($1-0.4):($1+0.4):ytic(2) with boxxyerror lc rgb \"#4e79a7\" notitle\n",
            pts.cnt - 1, pts.cnt > 60 ? " font \",6\"" : pts.cnt > 35 ? " font \",8\"" : "", a->name);
    rc = gp_write(R, a, body.s);
    if (!rc) rc = gp_run(R, a);
done:
    if (d) { fclose(d); free(path); }
    for (int i = 0; i < pts.cnt; i++) free(pts.point[i]);
    free(pts.point);
    free(pts.mean);
    free(pts.n);
    free(ord);
    free(job.plan_json);
    free(body.s);
    return rc;
}
