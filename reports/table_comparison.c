/* table_comparison: comparison, one row per model in the store: UNet params
 * (models.params), FLOPs (2 x the root module's MACs at the largest stored
 * size), the latency measured here at batch 1 and 2 (the latest whole-model
 * measurement: the median and p10, p90 of its untraced forwards, or of the
 * traced ones, marked "(traced)", in stores without them; "(unstable)" when
 * judged too noisy), the speedup over sdxl-base measured here, and the
 * papers' claims in their own column. Tested by tests/test_report.c (cells
 * against SQL of the '(untraced)' rows). */
#include "report_int.h"
#include "err.h"
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { NCOL = 16 };
static const char *const CH[NCOL] = {"model", "params", "flops", "flops_at", "latency_b1_ms", "latency_b1_p10_ms",
                                     "latency_b1_p90_ms", "latency_b2_ms", "latency_b2_p10_ms", "latency_b2_p90_ms",
                                     "latency_forward", "latency_at", "measured_on", "unstable", "speedup_vs_sdxl_base",
                                     "reported_paper"};
static const char *const H[NCOL] = {"model", "UNet params", "FLOPs", "FLOPs at", "latency b1, ms (p10-p90)", "",
                                    "", "latency b2, ms (p10-p90)", "", "", "forward", "latency at",
                                    "measured on (device, engine)", "unstable", "speedup over sdxl-base (measured here)",
                                    "reported (paper)"};
/* p10, p90, which forward and the flag are in the shown latency cell already */
static const char ALIGN[] = "lrrlrrrrrrllllrl", CSV_ONLY[] = "0000011011100100";

typedef struct {
    char label[64];
    int64_t macs;
    long pixels, tokens, batch;
} Size;

/* The largest stored size of a model (pixels, then tokens). */
static void keep_size(void *ctx, const char *label, int64_t params, int64_t macs) {
    (void)params;
    Size *s = ctx;
    int b, h, w, t;
    if (sscanf(label, "b%d_%dx%d_t%d", &b, &h, &w, &t) != 4) return;
    long px = (long)h * w;
    if (px > s->pixels || (px == s->pixels && t > s->tokens)) {
        snprintf(s->label, sizeof s->label, "%dx%d px, batch %d, %d tokens", h, w, b, t);
        s->macs = macs;
        s->pixels = px;
        s->tokens = t;
        s->batch = b;
    }
}

/* The cells of one measurement: raw median, p10, p90 (CSV) and the shown "12.34 (11.20-14.75)" with its markers. */
static void lat_cells(const Fwd *f, char raw[3][40], char *shown, size_t n) {
    raw[0][0] = raw[1][0] = raw[2][0] = shown[0] = '\0';
    if (!f) return;
    Lat l = fwd_lat(f);
    real_text(raw[0], sizeof raw[0], l.ms);
    real_text(raw[1], sizeof raw[1], l.p10);
    real_text(raw[2], sizeof raw[2], l.p90);
    size_t k = (size_t)snprintf(shown, n, "%.2f", l.ms);
    if (isfinite(l.p10) && isfinite(l.p90) && k < n) k += (size_t)snprintf(shown + k, n - k, " (%.2f-%.2f)", l.p10, l.p90);
    if (l.traced && k < n) k += (size_t)snprintf(shown + k, n - k, " (traced)");
    if (f->unstable && k < n) snprintf(shown + k, n - k, " (unstable)");
}

int table_comparison(Report *R) {
    Artifact *a = art_new(R, "comparison", "Models in the store: size, cost and latency measured here", 0);
    a->table = table_new(NCOL, CH, H, ALIGN);
    a->table->csv_only = CSV_ONLY;
    const Fwd *base = NULL; /* sdxl-base's batch-1 latency, when measured here */
    for (int m = 0; m < R->nmodels && !base; m++)
        if (spec_is(R->models[m].spec, "sdxl-base")) base = latest_fwd(R, R->models[m].id, 1);
    Buf eng = {0};
    int ntraced = 0, nunst = 0;
    for (int m = 0; m < R->nmodels; m++) {
        const Model *md = &R->models[m];
        Size sz = {{0}, 0, -1, -1, 0};
        int rc = db_model_sizes(R->db, md->id, keep_size, &sz);
        if (rc) { free(eng.s); return rc; }
        char params[32], params_s[40], flops[32] = "", flops_s[48] = "", sp[40] = "", sps[60] = "";
        char lat[2][3][40], shown[2][120], at[400] = "", on[600] = "", fwd[80] = "";
        snprintf(params, sizeof params, "%" PRId64, md->params);
        commas(md->params, params_s, sizeof params_s);
        if (sz.pixels > 0) {
            snprintf(flops, sizeof flops, "%" PRId64, 2 * sz.macs);
            commas(2 * sz.macs, flops_s, sizeof flops_s);
        }
        const Fwd *fs[2] = {latest_fwd(R, md->id, 1), latest_fwd(R, md->id, 2)};
        int unstable = 0;
        for (int k = 0; k < 2; k++) {
            const Fwd *f = fs[k];
            lat_cells(f, lat[k], shown[k], sizeof shown[k]);
            if (!f) continue;
            unstable |= f->unstable;
            ntraced += fwd_lat(f).traced;
            nunst += f->unstable;
            ids_add(&a->runs, f->run_id);
            char e[512], s[300];
            fwd_engine(f, e, sizeof e);
            buf_add_once(&eng, e);
            /* b2 repeats b1's configuration only where it differs */
            if (k == 1 && fs[0] && fwd_same_setup(fs[0], fs[1])) continue;
            snprintf(s, sizeof s, "%dx%d px, %d tokens, %s", f->height, f->width, f->tokens, f->dtype);
            int n = (int)strlen(at);
            int o = (int)strlen(on);
            snprintf(at + n, sizeof at - (size_t)n, "%s%s", k && fs[0] ? " | b2: " : "", s);
            snprintf(on + o, sizeof on - (size_t)o, "%s%s, engine %s", k && fs[0] ? " | b2: " : "", f->device, f->engine);
        }
        /* which forwards the latency cells are: one word, or one per batch where they differ */
        const char *kind[2];
        for (int k = 0; k < 2; k++) kind[k] = !fs[k] ? NULL : fwd_lat(fs[k]).traced ? "traced" : "untraced";
        if (kind[0] && kind[1] && strcmp(kind[0], kind[1])) snprintf(fwd, sizeof fwd, "b1: %s; b2: %s", kind[0], kind[1]);
        else snprintf(fwd, sizeof fwd, "%s", kind[0] ? kind[0] : kind[1] ? kind[1] : "");
        /* measured against measured only: same device, engine and size, and the same kind of forward */
        const Fwd *f1 = fs[0];
        if (base && f1 && fwd_same_setup(base, f1) && fwd_lat(base).traced == fwd_lat(f1).traced && fwd_lat(f1).ms > 0) {
            double v = fwd_lat(base).ms / fwd_lat(f1).ms;
            real_text(sp, sizeof sp, v);
            snprintf(sps, sizeof sps, "%.2fx%s", v, base->unstable || f1->unstable ? " (unstable)" : "");
            ids_add(&a->runs, base->run_id);
        }
        /* the papers' own claims, never mixed with what was measured here */
        const char *paper = spec_is(md->spec, "ssd-1b")        ? "up to 60% faster (A100, end to end)"
                            : spec_is(md->spec, "segmind-vega") ? "100% faster (A100, end to end)"
                                                                : "";
        const char *raw[NCOL] = {md->spec, params, flops, sz.pixels > 0 ? sz.label : "", lat[0][0], lat[0][1], lat[0][2],
                                 lat[1][0], lat[1][1], lat[1][2], fwd, at, on, fs[0] || fs[1] ? (unstable ? "1" : "0") : "",
                                 sp, paper};
        const char *sh[NCOL] = {NULL, params_s, flops_s, NULL, shown[0], NULL, NULL, shown[1], NULL, NULL, NULL, NULL, NULL,
                                NULL, sps, NULL};
        table_row(a->table, raw, sh);
        ids_add(&a->runs, md->run_id);
    }
    a->engine = eng.s;
    Buf cap = {0};
    buf_add(&cap, "One row per model in the store. Params: the UNet's (models.params). FLOPs: 2 x the root module's MACs "
                  "(as FlopCounterMode counts) at the largest size stored for it. Latency: the latest whole-model "
                  "measurement here at batch 1 and 2, the median of its untraced forwards (ms) with p10-p90 in brackets");
    if (ntraced) buf_add(&cap, "; marked (traced): from a store without untraced rows, the traced forwards (every module "
                               "timed), slower by the tracing overhead");
    if (nunst) buf_add(&cap, "; marked (unstable): judged too noisy to trust (others' load, spread)");
    if (eng.s) buf_add(&cap, "; measured on %s", eng.s);
    buf_add(&cap, ". The speedup is sdxl-base's batch-1 latency over the model's, on the same device, engine, size and "
                  "kind of forward only. 'reported (paper)' quotes the published claims (end to end on an A100); no "
                  "measured column holds a reported number.");
    a->caption = cap.s;
    return table_write(R, a);
}
