/* eval: see eval.h. */
#include "eval.h"
#include "err.h"
#include "hash.h"
#include "rng.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void calib_synthetic(const Arch *a, int n, int lh, int lw, int tokens, uint64_t seed, UnetInputs *in) {
    memset(in, 0, sizeof *in);
    int S = a->sample_size > 0 ? a->sample_size : 64;
    int H = lh > 0 ? lh : S, Wd = lw > 0 ? lw : S;
    int cross = 0;
    for (int i = 0; i < a->n_blocks; i++) {
        if (a->down[i].n_attn) cross = a->down[i].cross_dim;
        if (a->up[i].n_attn) cross = a->up[i].cross_dim;
    }
    if (a->has_mid && a->mid.n_attn) cross = a->mid.cross_dim;
    if (!cross) cross = a->down[0].cross_dim;
    in->sample = tensor_new(4, n, a->in_channels, H, Wd);
    in->timestep = tensor_new(1, n, 0, 0, 0);
    in->encoder_hidden_states = tensor_new(3, n, tokens, cross, 0);
    Rng r = rng_for(seed, "calibration/sample");
    rng_normal(&r, in->sample.d, tensor_numel(&in->sample), 0.0f, 1.0f);
    r = rng_for(seed, "calibration/encoder_hidden_states");
    rng_normal(&r, in->encoder_hidden_states.d, tensor_numel(&in->encoder_hidden_states), 0.0f, 1.0f);
    for (int i = 0; i < n; i++) in->timestep.d[i] = n > 1 ? roundf(999.0f * (float)i / (float)(n - 1)) : 500.0f;
    if (a->text_time) {
        int te = a->add_in_dim - 6 * a->add_time_dim;
        in->text_embeds = tensor_new(2, n, te, 0, 0);
        r = rng_for(seed, "calibration/text_embeds");
        rng_normal(&r, in->text_embeds.d, tensor_numel(&in->text_embeds), 0.0f, 1.0f);
        in->time_ids = tensor_new(2, n, 6, 0, 0);
        float ph = (float)(H * 8), pw = (float)(Wd * 8), ids[6] = {ph, pw, 0, 0, ph, pw}; /* original size, crop, target */
        for (int i = 0; i < n; i++) memcpy(in->time_ids.d + 6 * i, ids, sizeof ids);
    }
}

static uint64_t hash_tensor(uint64_t h, const Tensor *t) {
    h = hash_bytes(h, &t->ndim, sizeof t->ndim);
    h = hash_bytes(h, t->shape, sizeof t->shape);
    return t->d ? hash_bytes(h, t->d, (size_t)tensor_numel(t) * sizeof(float)) : h;
}

void calib_hash(const UnetInputs *in, char out[17]) {
    uint64_t h = HASH_INIT;
    h = hash_tensor(h, &in->sample);
    h = hash_tensor(h, &in->timestep);
    h = hash_tensor(h, &in->encoder_hidden_states);
    h = hash_tensor(h, &in->text_embeds);
    h = hash_tensor(h, &in->time_ids);
    hash_hex(h, out);
}

int calib_samples(const UnetInputs *in) { return (int)in->sample.shape[0]; }

/* Rows [start, start+count) of t's outer dimension (a broadcast scalar or [1] stays as it is). */
static Tensor rows(const Tensor *t, int start, int count) {
    if (!t->d) return (Tensor){0};
    if (t->ndim == 0 || (t->ndim == 1 && t->shape[0] == 1)) return tensor_copy(t); /* one timestep for all */
    Tensor r = *t;
    r.shape[0] = count;
    int64_t per = tensor_numel(t) / t->shape[0];
    Tensor c = tensor_new(r.ndim, r.shape[0], r.shape[1], r.shape[2], r.shape[3]);
    memcpy(c.d, t->d + (int64_t)start * per, (size_t)(count * per) * sizeof(float));
    return c;
}

void calib_slice(const UnetInputs *all, int start, int count, UnetInputs *out) {
    out->sample = rows(&all->sample, start, count);
    out->timestep = rows(&all->timestep, start, count);
    out->encoder_hidden_states = rows(&all->encoder_hidden_states, start, count);
    out->text_embeds = rows(&all->text_embeds, start, count);
    out->time_ids = rows(&all->time_ids, start, count);
}

void features_keep(void *ctx, const char *name, const Tensor *t) {
    FeatureSet *f = ctx;
    if (f->n == f->cap) {
        f->cap = f->cap ? 2 * f->cap : 128;
        f->name = xrealloc(f->name, (size_t)f->cap * sizeof *f->name);
        f->t = xrealloc(f->t, (size_t)f->cap * sizeof *f->t);
    }
    f->name[f->n] = xstrdup(name);
    f->t[f->n++] = tensor_copy(t);
}

const Tensor *features_get(void *ctx, const char *name) {
    const FeatureSet *f = ctx;
    if (!strcmp(name, "output")) return f->output.d ? &f->output : NULL;
    for (int i = f->n - 1; i >= 0; i--) /* the last of a name: a block's output follows its last unit's */
        if (!strcmp(f->name[i], name)) return &f->t[i];
    return NULL;
}

void features_free(FeatureSet *f) {
    for (int i = 0; i < f->n; i++) { free(f->name[i]); tensor_free(&f->t[i]); }
    free(f->name);
    free(f->t);
    tensor_free(&f->output);
    memset(f, 0, sizeof *f);
}

static void add_row(EvalRows *rows, const char *point, int sample, double timestep, const char *metric, double v) {
    if (rows->n == rows->cap) rows->r = xrealloc(rows->r, (size_t)(rows->cap = rows->cap ? 2 * rows->cap : 256) * sizeof *rows->r);
    rows->r[rows->n++] = (EvalRow){xstrdup(point), sample, timestep, metric, v};
}

void eval_rows_free(EvalRows *rows) {
    for (int i = 0; i < rows->n; i++) free(rows->r[i].point);
    free(rows->r);
    memset(rows, 0, sizeof *rows);
}

typedef struct {
    const FeatureSet *tf;
    const UnetInputs *batch;
    int sample0;
    EvalRows *rows;
} MetricCtx;

/* Per-sample MSE, NMSE and cosine of student feature s against teacher t. */
static void compare(MetricCtx *c, const char *point, const Tensor *s, const Tensor *t) {
    int64_t B = s->shape[0], per = tensor_numel(s) / B;
    for (int64_t b = 0; b < B; b++) {
        const float *x = s->d + b * per, *y = t->d + b * per;
        double se = 0, yy = 0, xx = 0, xy = 0;
        for (int64_t i = 0; i < per; i++) {
            double d = (double)x[i] - y[i];
            se += d * d;
            yy += (double)y[i] * y[i];
            xx += (double)x[i] * x[i];
            xy += (double)x[i] * y[i];
        }
        double mse = se / (double)per, ms = yy / (double)per;
        double cosv = xx > 0 && yy > 0 ? xy / sqrt(xx * yy) : (xx == yy ? 1.0 : 0.0);
        /* a feature that went non-finite (NaN, infinity): infinitely far from the teacher, so it is
         * stored (SQLite keeps infinities, not NaN) and ranks last, never as NULL or 0 */
        if (!isfinite(se) || !isfinite(xx) || !isfinite(xy)) mse = INFINITY, ms = 1, cosv = -INFINITY;
        const Tensor *ts = &c->batch->timestep;
        double tstep = ts->d[ts->shape[0] == B ? b : 0];
        int sample = c->sample0 + (int)b;
        add_row(c->rows, point, sample, tstep, "mse", mse);
        add_row(c->rows, point, sample, tstep, "nmse", ms > 0 ? mse / ms : (mse == 0 ? 0.0 : INFINITY));
        add_row(c->rows, point, sample, tstep, "cosine", cosv);
    }
}

static void on_student_feature(void *p, const char *name, const Tensor *s) {
    MetricCtx *c = p;
    if (!strcmp(name, "conv_in")) return; /* the input stem: never differs, not a loss point */
    const Tensor *t = features_get((void *)c->tf, name);
    if (!t || tensor_numel(t) != tensor_numel(s)) die("internal: teacher has no feature '%s' of the student's shape", name);
    compare(c, name, s, t);
}

int eval_batch(const Arch *teacher, const Arch *student, const Weights *w, const UnetInputs *batch,
               const FeatureSet *tf, int sample0, int reuse, EvalRows *rows, UnetRunStats *stats) {
    MetricCtx c = {tf, batch, sample0, rows};
    UnetResume res = {teacher, features_get, (void *)tf};
    Tensor y;
    int rc = unet_forward_from(student, w, batch, reuse ? &res : NULL, &y, on_student_feature, &c, stats, NULL);
    if (rc) return rc;
    compare(&c, "output", &y, &tf->output);
    tensor_free(&y);
    return 0;
}

int eval_is_block_output(const char *p) {
    int i, n = 0;
    if (!strcmp(p, "mid_block")) return 1;
    if (sscanf(p, "down_blocks.%d%n", &i, &n) == 1 && p[n] == '\0') return 1;
    n = 0;
    return sscanf(p, "up_blocks.%d%n", &i, &n) == 1 && p[n] == '\0';
}

static int metric_index(const char *m) { return !strcmp(m, "mse") ? 0 : !strcmp(m, "nmse") ? 1 : !strcmp(m, "cosine") ? 2 : -1; }

void summary_add(EvalSummary *s, const char *point, const char *metric, double value) {
    int mi = metric_index(metric), k;
    if (mi < 0) return;
    for (k = 0; k < s->n && strcmp(s->point[k], point); k++) {}
    if (k == s->n) {
        s->point = xrealloc(s->point, (size_t)(s->n + 1) * sizeof *s->point);
        s->sum = xrealloc(s->sum, (size_t)(s->n + 1) * 6 * sizeof *s->sum);
        s->point[k] = xstrdup(point);
        memset(s->sum + 6 * k, 0, 6 * sizeof *s->sum);
        s->n++;
    }
    s->sum[6 * k + mi] += value;
    if (mi == 0 && !isfinite(value)) s->nonfinite++;
    s->sum[6 * k + 3 + mi] += 1;
}

void summary_finish(EvalSummary *s) {
    s->mse = xcalloc((size_t)s->n + 1, sizeof(double));
    s->nmse = xcalloc((size_t)s->n + 1, sizeof(double));
    s->cosine = xcalloc((size_t)s->n + 1, sizeof(double));
    s->feature_loss = s->nmse_sum = s->block_nmse = 0;
    for (int k = 0; k < s->n; k++) {
        double *v = s->sum + 6 * k;
        s->mse[k] = v[3] ? v[0] / v[3] : NAN;
        s->nmse[k] = v[4] ? v[1] / v[4] : NAN;
        s->cosine[k] = v[5] ? v[2] / v[5] : NAN;
        if (!strcmp(s->point[k], "output")) { s->block_nmse += s->nmse[k]; continue; }
        if (eval_is_block_output(s->point[k])) {
            s->feature_loss += s->mse[k];
            if (strcmp(s->point[k], "mid_block")) s->block_nmse += s->nmse[k]; /* a student may have no mid block */
        }
        s->nmse_sum += s->nmse[k];
    }
}

void summary_free(EvalSummary *s) {
    for (int k = 0; k < s->n; k++) free(s->point[k]);
    free(s->point);
    free(s->sum);
    free(s->mse);
    free(s->nmse);
    free(s->cosine);
    memset(s, 0, sizeof *s);
}
