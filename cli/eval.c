/* unetlab eval: layer-level losses of students against their teacher, stored
 * in the DB so that nothing is computed twice and several processes (or
 * shards on several machines) can share the work. */
#include "candidates.h"
#include "cli.h"
#include "db.h"
#include "err.h"
#include "eval.h"
#include "hash.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char USAGE[] =
    "usage: unetlab eval --model T (--plan P | --candidates KINDS [--plan BASE]) [--drop NAME,...]\n"
    "                    (--calib IN.safetensors | --synthetic N [--latent S] [--tokens L])\n"
    "                    --db DB [--shard I/N] [--batch-size K] [--seed S] [--lease SEC]\n"
    "                    [--no-reuse] [--format text|json]\n"
    "\n"
    "  --plan P         one student: the teacher minus plan P (with --candidates: the base)\n"
    "  --candidates K   every candidate of the kinds K (all, or transformer_layer,\n"
    "                   mid_block_reduction, mid_block_removal, resnet_pair, attention_level)\n"
    "  --calib IN       calibration inputs in the io.safetensors layout (N samples)\n"
    "  --synthetic N    N seeded samples: normal latents and embeddings, timesteps evenly\n"
    "                   over [0, 999] (latent S x S, default sample_size; L tokens, default 77)\n"
    "  --db DB          the SQLite store; results already there are not computed again\n"
    "  --shard I/N      this process takes candidates I, I+N, I+2N, ... (0 <= I < N)\n"
    "  --batch-size K   calibration samples per forward (default 4)\n"
    "  --lease SEC      a claimed student is reclaimable after SEC seconds (default 600)\n"
    "  --no-reuse       run every student from the start (no prefix reuse)\n"
    "\n"
    "Per student, feature point (every block output, ResNet, attention, sampler and\n"
    "transformer layer the student has, and the output) and calibration sample: MSE,\n"
    "NMSE (MSE / the teacher feature's mean square) and cosine. Summaries: feature_loss =\n"
    "sum of the block outputs' MSEs (the points Segmind's and BK-SDM's distillation\n"
    "scripts hook); nmse_sum = sum of every point's NMSE, the default ranking.\n";

typedef struct {
    char *name;     /* candidate name, plan path, or "teacher" */
    const char *kind;
    Plan plan;
    Arch arch;
    int64_t params;
    int64_t plan_id, job_id;
    int done;
} Student;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void fmt_eta(double s, char *buf, size_t n) {
    if (s < 60) snprintf(buf, n, "%.0fs", s);
    else if (s < 3600) snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
    else snprintf(buf, n, "%dh%02dm", (int)s / 3600, (int)s % 3600 / 60);
}

/* Hash of the loaded weights: names, sizes and float32 values, in name order. */
static void weights_hash(const Weights *w, char out[17]) {
    uint64_t h = HASH_INIT;
    for (int i = 0; i < w->n; i++) {
        h = hash_bytes(h, w->names[i], strlen(w->names[i]));
        h = hash_bytes(h, w->data[i], (size_t)w->numel[i] * sizeof(float));
    }
    hash_hex(h, out);
}

typedef struct {
    EvalSummary *s;
} RowsCtx;

static void collect_row(void *ctx, const char *point, int sample, double timestep, const char *metric, double value) {
    (void)sample;
    (void)timestep;
    summary_add(((RowsCtx *)ctx)->s, point, metric, value);
}

static cJSON *metric_object(const EvalSummary *s, const double *v) {
    cJSON *o = cJSON_CreateObject();
    for (int k = 0; k < s->n; k++) cJSON_AddNumberToObject(o, s->point[k], v[k]);
    return o;
}

static int cmp_summary(const void *a, const void *b) {
    double x = ((const double *)a)[0], y = ((const double *)b)[0];
    return (x > y) - (x < y);
}

int cmd_eval(int argc, char **argv) {
    const char *model = NULL, *plan_path = NULL, *cands = NULL, *drop = NULL, *calib = NULL, *synth = NULL,
               *dbpath = NULL, *fmt = "text", *shard = NULL, *bs_s = "4", *seed_s = "0", *lease_s = "600",
               *latent_s = "0", *tokens_s = "77", *noreuse = NULL;
    const Opt opts[] = {{"--model", 1, &model}, {"--plan", 1, &plan_path}, {"--candidates", 1, &cands},
                        {"--drop", 1, &drop}, {"--calib", 1, &calib}, {"--synthetic", 1, &synth},
                        {"--db", 1, &dbpath}, {"--format", 1, &fmt}, {"--shard", 1, &shard},
                        {"--batch-size", 1, &bs_s}, {"--seed", 1, &seed_s}, {"--lease", 1, &lease_s},
                        {"--latent", 1, &latent_s}, {"--tokens", 1, &tokens_s}, {"--no-reuse", 0, &noreuse},
                        {NULL, 0, NULL}};
    int rc = cli_parse(argc, argv, opts, USAGE);
    if (rc) return rc;
    if (!model || !dbpath) return err_set(ERR_USAGE, "eval: --model and --db are required (see unetlab eval --help)");
    if (!!calib == !!synth) return err_set(ERR_USAGE, "eval: give exactly one of --calib and --synthetic");
    if (!cands && !plan_path && !drop) return err_set(ERR_USAGE, "eval: give --plan, --drop or --candidates");
    Format f;
    long bs, seed, lease, latent, tokens, nsyn = 0, si = 0, sn = 1;
    int mask = 0;
    if ((rc = cli_format(fmt, &f, 0)) || (rc = cli_int("--batch-size", bs_s, 1, 4096, &bs)) ||
        (rc = cli_int("--seed", seed_s, 0, 0x7fffffffL, &seed)) || (rc = cli_int("--lease", lease_s, 1, 1L << 30, &lease)) ||
        (rc = cli_int("--latent", latent_s, 0, 1 << 14, &latent)) || (rc = cli_int("--tokens", tokens_s, 1, 1 << 16, &tokens)) ||
        (synth && (rc = cli_int("--synthetic", synth, 1, 1 << 20, &nsyn))) || (cands && (rc = cand_kinds_parse(cands, &mask))))
        return rc;
    if (shard) {
        char *end;
        si = strtol(shard, &end, 10);
        if (*end != '/' || (sn = strtol(end + 1, &end, 10)) < 1 || *end || si < 0 || si >= sn)
            return err_set(ERR_USAGE, "option '--shard': '%s' is not I/N with 0 <= I < N", shard);
    }

    ModelSource m;
    Weights w = {0};
    UnetInputs in = {0};
    ModuleTree tree = {0};
    Student *st = NULL;
    int ns = 0;
    Db *db = NULL;
    FeatureSet *cache = NULL;
    int nbatch = 0;
    CliProvenance prov;
    prov_fill(&prov, argc, argv, seed);
    int64_t run_id = 0;
    if ((rc = model_resolve(&m, model))) goto done;

    /* the students */
    Plan base;
    Arch base_arch;
    if ((rc = cli_student(&m.arch, plan_path, drop, &base, &base_arch))) { plan_free(&base); goto done; }
    if (cands) {
        Candidate *c;
        int nc;
        Shape s1 = {1, m.arch.sample_size > 0 ? m.arch.sample_size : 64, m.arch.sample_size > 0 ? m.arch.sample_size : 64, (int)tokens};
        rc = cand_enumerate(&m.arch, &base, mask, &s1, &c, &nc);
        if (rc) { plan_free(&base); goto done; }
        st = xcalloc((size_t)nc + 1, sizeof *st);
        for (int i = 0; i < nc; i++) {
            if (i % sn != si) continue; /* --shard: a deterministic split of the enumeration order */
            Student *s = &st[ns++];
            s->name = xstrdup(c[i].name);
            s->kind = cand_kind_name(c[i].kind);
            s->plan = plan_copy(&c[i].plan);
            s->params = c[i].params;
        }
        cand_free_all(c, nc);
        plan_free(&base);
    } else {
        st = xcalloc(1, sizeof *st);
        st[0].name = xstrdup(plan_path ? plan_path : "drop");
        st[0].kind = "plan";
        st[0].plan = base;
        ns = 1;
    }
    for (int i = 0; i < ns; i++) {
        if ((rc = plan_apply(&m.arch, &st[i].plan, &st[i].arch))) goto done;
        Shape s1 = {1, 8, 8, 4};
        ModuleTree t;
        unet_tree_build(&t, &st[i].arch, &s1);
        st[i].params = t.m[0].params;
        unet_tree_free(&t);
    }

    /* calibration, weights */
    if (calib) rc = unet_inputs_load(calib, &m.arch, &in);
    else {
        calib_synthetic(&m.arch, (int)nsyn, (int)latent, (int)tokens, (uint64_t)seed, &in);
        if ((rc = unet_check_inputs(&m.arch, &in))) err_wrap(rc, "--synthetic: ");
    }
    if (rc) goto done;
    int N = calib_samples(&in);
    Shape cs = {1, (int)in.sample.shape[2], (int)in.sample.shape[3], (int)in.encoder_hidden_states.shape[1]};
    unet_tree_build(&tree, &m.arch, &cs);
    if ((rc = weights_load(&w, &m, &tree, (uint64_t)seed))) goto done;

    /* the store: model, modules, calibration set, plans, candidates, jobs */
    char chash[17], whash[17], khash[17], label[64];
    hash_hex(hash_bytes(HASH_INIT, m.config_text, strlen(m.config_text)), chash);
    weights_hash(&w, whash);
    calib_hash(&in, khash);
    int64_t model_id, calib_id, base_plan_id = 0;
    if ((rc = db_open(&db, dbpath)) || (rc = db_run_begin(db, &prov.p, &run_id)) ||
        (rc = db_model_put(db, model, chash, whash, tree.m[0].params, &model_id)) ||
        (rc = db_calib_put(db, khash, N, calib ? calib : "synthetic", &calib_id)))
        goto done;
    snprintf(label, sizeof label, "b1_%dx%d_t%d", cs.height * 8, cs.width * 8, cs.tokens);
    DbModule *mods = xmalloc((size_t)tree.n_modules * sizeof *mods);
    for (int i = 0; i < tree.n_modules; i++) mods[i] = (DbModule){tree.m[i].name, tree.m[i].kind, tree.m[i].params, tree.m[i].macs};
    rc = db_modules_put(db, model_id, label, mods, tree.n_modules);
    free(mods);
    if (rc) goto done;
    if (cands) {
        Plan bp;
        Arch ba;
        cli_student(&m.arch, plan_path, drop, &bp, &ba);
        char *js = plan_to_json(&bp, model), h[17];
        plan_hash(&bp, h);
        rc = db_plan_put(db, model_id, js, h, 0, &base_plan_id);
        free(js);
        plan_free(&bp);
        if (rc) goto done;
    }
    int64_t *job_ids = xmalloc((size_t)(ns ? ns : 1) * sizeof *job_ids);
    DbCandidate *dc = xcalloc((size_t)ns + 1, sizeof *dc);
    int todo = 0;
    for (int i = 0; i < ns; i++) {
        char *js = plan_to_json(&st[i].plan, model), h[17];
        plan_hash(&st[i].plan, h);
        rc = db_plan_put(db, model_id, js, h, st[i].params, &st[i].plan_id);
        free(js);
        if (!rc) rc = db_job_ensure(db, model_id, st[i].plan_id, calib_id, METRIC_VERSION, &st[i].job_id, &st[i].done);
        if (rc) { free(job_ids); free(dc); goto done; }
        job_ids[i] = st[i].job_id;
        todo += !st[i].done;
        dc[i] = (DbCandidate){st[i].name, st[i].kind, tree.m[0].params - st[i].params, 0, st[i].plan_id};
    }
    if (cands) rc = db_candidates_put(db, model_id, base_plan_id, dc, ns);
    free(dc);
    if (rc) { free(job_ids); goto done; }
    fprintf(stderr, "eval: %d students (%d already in %s), %d calibration samples, teacher features cached in memory per batch\n",
            ns, ns - todo, dbpath, N);

    /* claim, compute, store: one transaction per student */
    nbatch = (int)((N + bs - 1) / bs);
    cache = xcalloc((size_t)nbatch, sizeof *cache);
    double t0 = now();
    int computed = 0, live = 0, units = 0;
    for (;;) {
        int64_t job;
        if ((rc = db_job_claim(db, run_id, job_ids, ns, (int)lease, &job))) break;
        if (!job) break;
        int k = 0;
        while (k < ns && st[k].job_id != job) k++;
        EvalRows rows = {0};
        for (int b = 0; b < nbatch && !rc; b++) {
            UnetInputs batch;
            int s0 = b * (int)bs, cnt = N - s0 < bs ? N - s0 : (int)bs;
            calib_slice(&in, s0, cnt, &batch);
            if (!cache[b].output.d) /* the teacher, once per calibration batch */
                rc = unet_forward(&m.arch, &w, &batch, &cache[b].output, features_keep, &cache[b]);
            UnetRunStats rs = {0};
            if (!rc) rc = eval_batch(&m.arch, &st[k].arch, &w, &batch, &cache[b], s0, !noreuse, &rows, &rs);
            live += rs.units_live;
            units += rs.units;
            unet_inputs_free(&batch);
        }
        DbEvalRow *dr = xmalloc((size_t)(rows.n ? rows.n : 1) * sizeof *dr);
        for (int i = 0; i < rows.n; i++) {
            const EvalRow *r = &rows.r[i];
            int bin = (int)floor(r->timestep / 100.0);
            dr[i] = (DbEvalRow){r->point, r->sample, r->timestep, bin < 0 ? 0 : bin > 9 ? 9 : bin, r->metric, r->value};
        }
        if (!rc) rc = db_job_finish(db, job, run_id, dr, rows.n);
        free(dr);
        eval_rows_free(&rows);
        if (rc) break;
        st[k].done = 1;
        computed++;
        double el = now() - t0, rate = computed / el;
        char eta[32];
        int left = 0;
        for (int i = 0; i < ns; i++) left += !st[i].done;
        fmt_eta(left / rate, eta, sizeof eta);
        fprintf(stderr, "eval: [%d/%d] %s  %.2f s/student, ETA %s (this process; others may share the work)\n",
                ns - left, ns, st[k].name, el / computed, eta);
    }
    if (rc) goto done;
    if (computed)
        fprintf(stderr, "eval: computed %d students in %.2f s; prefix reuse ran %d of %d forward units (%.0f%%)%s\n",
                computed, now() - t0, live, units, units ? 100.0 * live / units : 0.0, noreuse ? " (--no-reuse)" : "");

    /* report from the store, so a rerun prints the same */
    EvalSummary *sum = xcalloc((size_t)ns + 1, sizeof *sum);
    double (*order)[2] = xmalloc((size_t)(ns + 1) * sizeof *order);
    int nd = 0;
    for (int i = 0; i < ns; i++) {
        int dummy;
        int64_t jid;
        if ((rc = db_job_ensure(db, model_id, st[i].plan_id, calib_id, METRIC_VERSION, &jid, &dummy))) break;
        if (!dummy) continue;
        RowsCtx rctx = {&sum[i]};
        if ((rc = db_job_rows(db, jid, collect_row, &rctx))) break;
        summary_finish(&sum[i]);
        order[nd][0] = sum[i].nmse_sum;
        order[nd++][1] = i;
    }
    if (!rc) {
        qsort(order, (size_t)nd, sizeof *order, cmp_summary);
        if (f == FORMAT_JSON) {
            cJSON *o = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(o, "students");
            cJSON_AddStringToObject(o, "model", model);
            cJSON_AddNumberToObject(o, "calibration_samples", N);
            cJSON_AddStringToObject(o, "ranking", "nmse_sum");
            for (int r = 0; r < nd; r++) {
                int i = (int)order[r][1];
                cJSON *e = cJSON_CreateObject(), *pl = cJSON_AddArrayToObject(e, "plan");
                for (int k = 0; k < st[i].plan.n; k++) cJSON_AddItemToArray(pl, cJSON_CreateString(st[i].plan.remove[k]));
                cJSON_AddStringToObject(e, "name", st[i].name);
                cJSON_AddStringToObject(e, "kind", st[i].kind);
                cJSON_AddNumberToObject(e, "total_params", (double)st[i].params);
                cJSON_AddNumberToObject(e, "feature_loss", sum[i].feature_loss);
                cJSON_AddNumberToObject(e, "nmse_sum", sum[i].nmse_sum);
                cJSON_AddItemToObject(e, "mse", metric_object(&sum[i], sum[i].mse));
                cJSON_AddItemToObject(e, "nmse", metric_object(&sum[i], sum[i].nmse));
                cJSON_AddItemToObject(e, "cosine", metric_object(&sum[i], sum[i].cosine));
                cJSON_AddItemToArray(arr, e);
            }
            char *txt = cJSON_Print(o);
            puts(txt);
            free(txt);
            cJSON_Delete(o);
        } else {
            char b[32];
            printf("%-4s %-64s %-20s %15s %12s %12s %12s\n", "rank", "student", "kind", "params", "nmse_sum",
                   "feature_loss", "output_mse");
            for (int r = 0; r < nd; r++) {
                int i = (int)order[r][1];
                double out_mse = NAN;
                for (int k = 0; k < sum[i].n; k++)
                    if (!strcmp(sum[i].point[k], "output")) out_mse = sum[i].mse[k];
                printf("%-4d %-64s %-20s %15s %12.5g %12.5g %12.5g\n", r + 1, st[i].name, st[i].kind,
                       cli_commas(st[i].params, b, sizeof b), sum[i].nmse_sum, sum[i].feature_loss, out_mse);
            }
            if (nd < ns) printf("\n%d of %d students are not done yet (other processes may hold them)\n", ns - nd, ns);
        }
    }
    for (int i = 0; i < ns; i++) summary_free(&sum[i]);
    free(sum);
    free(order);
    free(job_ids);
done:
    if (db && run_id) db_run_end(db, run_id, rc ? "failed" : "done");
    if (db) db_close(db);
    for (int b = 0; cache && b < nbatch; b++) features_free(&cache[b]);
    free(cache);
    for (int i = 0; i < ns; i++) { free(st[i].name); plan_free(&st[i].plan); }
    free(st);
    unet_tree_free(&tree);
    unet_inputs_free(&in);
    weights_free(&w);
    model_source_free(&m);
    prov_free(&prov);
    return rc;
}
