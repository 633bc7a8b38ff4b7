/* session: see session.h. */
#include "session.h"
#include "numfmt.h"
#include "err.h"
#include "hash.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int session_open(Session *s, const SessionOptions *o) {
    memset(s, 0, sizeof *s);
    s->o = *o;
    int rc = model_resolve(&s->m, o->model);
    if (rc) return rc;
    if (!s->m.dir) /* losses of random weights rank nothing a trained model would */
        err_warn("'%s' has no trained weights (%s): students are scored on seeded random weights (seed %ld), which"
                 " says nothing about a trained model's losses; give a checkpoint directory to rank for real", o->model,
                 s->m.config_label, o->seed);
    if (o->calib) rc = unet_inputs_load(o->calib, &s->m.arch, &s->in);
    else {
        calib_synthetic(&s->m.arch, o->synthetic, o->latent, o->latent, o->tokens, (uint64_t)o->seed, &s->in);
        if ((rc = unet_check_inputs(&s->m.arch, &s->in))) err_wrap(rc, "--synthetic: ");
    }
    if (rc) return rc;
    s->n_samples = calib_samples(&s->in);
    const Tensor *ts = &s->in.timestep; /* results are binned by timestep in [0, 1000), 100 a bin */
    int64_t nt = ts->ndim ? tensor_numel(ts) : 1, outside = 0;
    for (int64_t i = 0; i < nt; i++) outside += ts->d[i] < 0 || ts->d[i] >= 1000;
    if (outside)
        err_warn("'%s': %lld of %lld timesteps are outside [0, 1000): their results are counted in timestep bin %s",
                 o->calib ? o->calib : "--synthetic", (long long)outside, (long long)nt, "0 (below) or 9 (above)");
    s->shape = (Shape){1, (int)s->in.sample.shape[2], (int)s->in.sample.shape[3], (int)s->in.encoder_hidden_states.shape[1]};
    const Shape cs = s->shape;
    Shape bs = cs; /* a batch of calibration samples at once, the teacher's features of every sample kept */
    bs.batch = o->batch_size < s->n_samples ? o->batch_size : s->n_samples;
    if ((rc = unet_memory_check("scoring students", &s->m.arch, &bs, s->n_samples))) return rc;
    unet_tree_build(&s->tree, &s->m.arch, &cs);
    if ((rc = weights_load(&s->w, &s->m, &s->tree, (uint64_t)o->seed))) return rc;
    char chash[17], khash[17], label[64];
    hash_hex(hash_bytes(HASH_INIT, s->m.config_text, strlen(s->m.config_text)), chash);
    weights_hash(&s->w, s->weights_hash);
    s->w.engine_owns = 1; /* hashed: from here on only forwards read the weights */
    calib_hash(&s->in, khash);
    if ((rc = db_open(&s->db, o->db)) || (rc = db_run_begin(s->db, o->prov, &s->run_id)) ||
        (rc = db_model_put(s->db, o->model, chash, s->weights_hash, s->tree.m[0].params, &s->model_id)) ||
        (rc = db_calib_put(s->db, khash, s->n_samples, o->calib ? o->calib : "synthetic", 8 * cs.height, 8 * cs.width,
                             &s->calib_id)))
        return rc;
    snprintf(label, sizeof label, "b1_%dx%d_t%d", cs.height * 8, cs.width * 8, cs.tokens);
    DbModule *mods = xmalloc((size_t)s->tree.n_modules * sizeof *mods);
    for (int i = 0; i < s->tree.n_modules; i++)
        mods[i] = (DbModule){s->tree.m[i].name, s->tree.m[i].kind, s->tree.m[i].params, s->tree.m[i].macs};
    rc = db_modules_put(s->db, s->model_id, label, mods, s->tree.n_modules);
    free(mods);
    s->nbatch = (s->n_samples + o->batch_size - 1) / o->batch_size;
    s->cache = xcalloc((size_t)s->nbatch, sizeof *s->cache);
    return rc;
}

void session_close(Session *s, int rc) {
    if (s->db && s->run_id) db_run_end(s->db, s->run_id, rc ? "failed" : "done");
    if (s->db) db_close(s->db);
    for (int b = 0; s->cache && b < s->nbatch; b++) features_free(&s->cache[b]);
    free(s->cache);
    unet_tree_free(&s->tree);
    unet_inputs_free(&s->in);
    weights_free(&s->w);
    model_source_free(&s->m);
    memset(s, 0, sizeof *s);
}

int student_init(Session *s, Student *st, const char *name, const char *kind, const Plan *p) {
    memset(st, 0, sizeof *st);
    st->name = xstrdup(name);
    st->kind = kind;
    st->plan = plan_copy(p);
    int rc = plan_apply(&s->m.arch, &st->plan, &st->arch);
    if (rc) return rc;
    ModuleTree t;
    unet_tree_build(&t, &st->arch, &s->shape);
    st->params = t.m[0].params;
    st->macs = t.m[0].macs;
    unet_tree_free(&t);
    return 0;
}

void student_free(Student *st) {
    free(st->name);
    plan_free(&st->plan);
    summary_free(&st->sum);
    memset(st, 0, sizeof *st);
}

static void collect_row(void *ctx, const char *point, int sample, double timestep, const char *metric, double value) {
    (void)sample;
    (void)timestep;
    summary_add(ctx, point, metric, value);
}

/* Computes one student's rows over the calibration set and stores them. */
static int compute(Session *s, Student *st, int64_t job) {
    EvalRows rows = {0};
    int rc = 0;
    for (int b = 0; b < s->nbatch && !rc; b++) {
        UnetInputs batch;
        int s0 = b * s->o.batch_size, cnt = s->n_samples - s0 < s->o.batch_size ? s->n_samples - s0 : s->o.batch_size;
        calib_slice(&s->in, s0, cnt, &batch);
        if (!s->cache[b].output.d) /* the teacher, once per calibration batch */
            rc = unet_forward(&s->m.arch, &s->w, &batch, &s->cache[b].output, features_keep, &s->cache[b]);
        UnetRunStats rs = {0};
        if (!rc) rc = eval_batch(&s->m.arch, &st->arch, &s->w, &batch, &s->cache[b], s0, s->o.reuse, &rows, &rs);
        s->units += rs.units;
        s->units_live += rs.units_live;
        unet_inputs_free(&batch);
    }
    DbEvalRow *dr = xmalloc((size_t)(rows.n ? rows.n : 1) * sizeof *dr);
    for (int i = 0; i < rows.n; i++) {
        const EvalRow *r = &rows.r[i];
        int bin = (int)floor(r->timestep / 100.0);
        dr[i] = (DbEvalRow){r->point, r->sample, r->timestep, bin < 0 ? 0 : bin > 9 ? 9 : bin, r->metric, r->value};
    }
    if (!rc) rc = db_job_finish(s->db, job, s->run_id, dr, rows.n);
    free(dr);
    eval_rows_free(&rows);
    return rc;
}

int session_score(Session *s, Student *st, int n, const char *what) {
    int rc = 0, pending = 0;
    int64_t *ids = xmalloc((size_t)(n ? n : 1) * sizeof *ids);
    for (int i = 0; i < n && !rc; i++) {
        char *js = plan_to_json(&st[i].plan, s->o.model), h[17];
        plan_hash(&st[i].plan, h);
        rc = db_plan_put(s->db, s->model_id, js, h, st[i].params, &st[i].plan_id);
        free(js);
        if (!rc) rc = db_job_ensure(s->db, s->model_id, st[i].plan_id, s->calib_id, METRIC_VERSION, s->o.dtype, &st[i].job_id,
                                    &st[i].done);
        ids[i] = st[i].job_id;
        pending += !st[i].done;
    }
    if (!rc && pending)
        fprintf(stderr, "%s: %d students to score (%d already in %s), %d calibration samples\n", what, pending, n - pending,
                s->o.db, s->n_samples);
    double t0 = now();
    int mine = 0;
    while (!rc && pending) {
        int64_t job;
        if ((rc = db_job_claim(s->db, s->run_id, ids, n, s->o.lease_s, &job)) || !job) break;
        int k = 0;
        while (k < n && st[k].job_id != job) k++;
        if ((rc = compute(s, &st[k], job))) break;
        st[k].done = 1;
        mine++;
        s->computed++;
        int left = 0;
        for (int i = 0; i < n; i++) left += !st[i].done;
        double el = now() - t0;
        char eta[32];
        num_duration(left * el / mine, eta, sizeof eta);
        fprintf(stderr, "%s: [%d/%d] %s  %.2f s/student, ETA %s\n", what, n - left, n, st[k].name, el / mine, eta);
    }
    /* every summary from the store: the same numbers whoever computed them */
    for (int i = 0; i < n && !rc; i++) {
        int64_t jid;
        int done;
        if ((rc = db_job_ensure(s->db, s->model_id, st[i].plan_id, s->calib_id, METRIC_VERSION, s->o.dtype, &jid, &done))) break;
        st[i].done = done;
        if (!done) continue; /* held by another process */
        summary_free(&st[i].sum);
        if ((rc = db_job_rows(s->db, jid, collect_row, &st[i].sum))) break;
        summary_finish(&st[i].sum);
    }
    free(ids);
    return rc;
}
