/* unetlab eval: layer-level losses of students against their teacher, stored
 * in the DB so that nothing is computed twice and several processes (or
 * shards on several machines) can share the work. */
#include "candidates.h"
#include "cli.h"
#include "db.h"
#include "err.h"
#include "eval.h"
#include "session.h"
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
    "                    [--no-reuse] [--device cpu|ref] [--dtype fp32|bf16] [--format text|json]\n"
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
    "  --device D       cpu: the fast CPU engine (default); ref: the plain-loop reference\n"
    "                   engine (both float32; their losses agree to ~1e-6 relative)\n"
    "  --dtype T        fp32 (default) or bf16: teacher and students run in bf16 on the\n"
    "                   fast engine (CPUs with AVX512-BF16 or AMX; others run fp32 and\n"
    "                   say so). The dtype is part of each result's key: a bf16 eval\n"
    "                   never reuses fp32 results; `unetlab agree` compares the two\n"
    "\n"
    "Per student, feature point (every block output, ResNet, attention, sampler and\n"
    "transformer layer the student has, and the output) and calibration sample: MSE,\n"
    "NMSE (MSE / the teacher feature's mean square) and cosine. Summaries: feature_loss =\n"
    "sum of the block outputs' MSEs (the points Segmind's and BK-SDM's distillation\n"
    "scripts hook); nmse_sum = sum of every point's NMSE, the default ranking.\n";

static cJSON *metric_object(const EvalSummary *s, const double *v) {
    cJSON *o = cJSON_CreateObject();
    for (int k = 0; k < s->n; k++) cJSON_AddNumberToObject(o, s->point[k], v[k]);
    return o;
}

static int cmp_rank(const void *a, const void *b) {
    const double *x = a, *y = b;
    int c = (x[0] > y[0]) - (x[0] < y[0]); /* by score, then by enumeration order */
    return c ? c : (x[1] > y[1]) - (x[1] < y[1]);
}

int cmd_eval(int argc, char **argv) {
    const char *model = NULL, *plan_path = NULL, *cands = NULL, *drop = NULL, *calib = NULL, *synth = NULL,
               *dbpath = NULL, *fmt = "text", *shard = NULL, *bs_s = "4", *seed_s = "0", *lease_s = "600",
               *latent_s = "0", *tokens_s = "77", *noreuse = NULL, *device = "cpu", *dtype_s = NULL;
    const Opt opts[] = {{"--model", 1, &model}, {"--plan", 1, &plan_path}, {"--candidates", 1, &cands},
                        {"--drop", 1, &drop}, {"--calib", 1, &calib}, {"--synthetic", 1, &synth},
                        {"--db", 1, &dbpath}, {"--format", 1, &fmt}, {"--shard", 1, &shard},
                        {"--batch-size", 1, &bs_s}, {"--seed", 1, &seed_s}, {"--lease", 1, &lease_s},
                        {"--latent", 1, &latent_s}, {"--tokens", 1, &tokens_s}, {"--no-reuse", 0, &noreuse},
                        {"--device", 1, &device}, {"--dtype", 1, &dtype_s}, {NULL, 0, NULL}};
    int rc = cli_parse(argc, argv, opts, USAGE);
    if (rc) return rc;
    if (!model || !dbpath) return err_set(ERR_USAGE, "eval: --model and --db are required (see unetlab eval --help)");
    if (!!calib == !!synth) return err_set(ERR_USAGE, "eval: give exactly one of --calib and --synthetic");
    if (!cands && !plan_path && !drop) return err_set(ERR_USAGE, "eval: give --plan, --drop or --candidates");
    Format f;
    DType dt = DTYPE_F32;
    long bs, seed, lease, latent, tokens, nsyn = 0, si = 0, sn = 1;
    int mask = 0;
    if ((rc = cli_format(fmt, &f, 0)) || (rc = cli_int("--batch-size", bs_s, 1, 4096, &bs)) ||
        (rc = cli_int("--seed", seed_s, 0, 0x7fffffffL, &seed)) || (rc = cli_int("--lease", lease_s, 1, 1L << 30, &lease)) ||
        (rc = cli_int("--latent", latent_s, 0, 1 << 14, &latent)) || (rc = cli_int("--tokens", tokens_s, 1, 1 << 16, &tokens)) ||
        (synth && (rc = cli_int("--synthetic", synth, 1, 1 << 20, &nsyn))) || (cands && (rc = cand_kinds_parse("--candidates", cands, &mask))))
        return rc;
    if ((rc = cli_cpu_engine("eval", device, dtype_s, &dt))) return rc;
    if (shard) {
        char *end;
        si = strtol(shard, &end, 10);
        if (*end != '/' || (sn = strtol(end + 1, &end, 10)) < 1 || *end || si < 0 || si >= sn)
            return err_set(ERR_USAGE, "option '--shard': '%s' is not I/N with 0 <= I < N", shard);
    }

    CliProvenance prov;
    prov_fill(&prov, argc, argv, seed);
    SessionOptions so = {model, calib, (int)nsyn, (int)latent, (int)tokens, seed, dbpath, (int)bs, (int)lease, !noreuse, &prov.p,
                         dtype_name(dt)};
    Session S;
    Student *st = NULL;
    int ns = 0;
    Plan base;
    plan_init(&base);
    if ((rc = session_open(&S, &so))) goto done;
    Arch base_arch;
    if ((rc = cli_student(&S.m.arch, plan_path, drop, &base, &base_arch))) goto done;
    if (cands) {
        Candidate *c;
        int nc;
        if ((rc = cand_enumerate(&S.m.arch, &base, mask, &S.shape, &c, &nc))) goto done;
        st = xcalloc((size_t)nc + 1, sizeof *st);
        for (int i = 0; i < nc && !rc; i++)
            if (i % sn == si) /* --shard: a deterministic split of the enumeration order */
                rc = student_init(&S, &st[ns++], c[i].name, cand_kind_name(c[i].kind), &c[i].plan);
        /* the candidates, for users of the store */
        char *js = plan_to_json(&base, model), h[17];
        plan_hash(&base, h);
        int64_t base_id = 0;
        if (!rc) rc = db_plan_put(S.db, S.model_id, js, h, 0, &base_id);
        free(js);
        DbCandidate *dc = xcalloc((size_t)nc + 1, sizeof *dc);
        for (int i = 0; i < nc; i++) {
            char *pj = plan_to_json(&c[i].plan, model), ph[17];
            plan_hash(&c[i].plan, ph);
            if (!rc) rc = db_plan_put(S.db, S.model_id, pj, ph, c[i].params, &dc[i].plan_id);
            free(pj);
            dc[i].name = c[i].name;
            dc[i].kind = cand_kind_name(c[i].kind);
            dc[i].params_removed = c[i].params_removed;
            dc[i].macs_removed = c[i].macs_removed;
        }
        if (!rc) rc = db_candidates_put(S.db, S.model_id, base_id, dc, nc);
        free(dc);
        cand_free_all(c, nc);
    } else {
        st = xcalloc(1, sizeof *st);
        rc = student_init(&S, &st[ns++], plan_path ? plan_path : "drop", "plan", &base);
    }
    if (rc) goto done;
    if ((rc = session_score(&S, st, ns, "eval"))) goto done;
    if (S.computed)
        fprintf(stderr, "eval: computed %d students; prefix reuse ran %d of %d forward units (%.0f%%)%s\n", S.computed,
                S.units_live, S.units, S.units ? 100.0 * S.units_live / S.units : 0.0, noreuse ? " (--no-reuse)" : "");

    /* report from the store (ranked by nmse_sum), so a rerun prints the same */
    double (*order)[2] = xmalloc((size_t)(ns + 1) * sizeof *order);
    int nd = 0;
    for (int i = 0; i < ns; i++)
        if (st[i].done) { order[nd][0] = st[i].sum.nmse_sum; order[nd][1] = i; nd++; }
    qsort(order, (size_t)nd, sizeof *order, cmp_rank);
    if (f == FORMAT_JSON) {
        cJSON *o = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(o, "students");
        cJSON_AddStringToObject(o, "model", model);
        cJSON_AddNumberToObject(o, "calibration_samples", S.n_samples);
        cJSON_AddStringToObject(o, "ranking", "nmse_sum");
        for (int r = 0; r < nd; r++) {
            const Student *x = &st[(int)order[r][1]];
            cJSON *e = cJSON_CreateObject(), *pl = cJSON_AddArrayToObject(e, "plan");
            for (int k = 0; k < x->plan.n; k++) cJSON_AddItemToArray(pl, cJSON_CreateString(x->plan.remove[k]));
            cJSON_AddStringToObject(e, "name", x->name);
            cJSON_AddStringToObject(e, "kind", x->kind);
            cJSON_AddNumberToObject(e, "total_params", (double)x->params);
            cJSON_AddNumberToObject(e, "feature_loss", x->sum.feature_loss);
            cJSON_AddNumberToObject(e, "nmse_sum", x->sum.nmse_sum);
            cJSON_AddNumberToObject(e, "block_nmse", x->sum.block_nmse);
            cJSON_AddNumberToObject(e, "nonfinite", x->sum.nonfinite);
            cJSON_AddItemToObject(e, "mse", metric_object(&x->sum, x->sum.mse));
            cJSON_AddItemToObject(e, "nmse", metric_object(&x->sum, x->sum.nmse));
            cJSON_AddItemToObject(e, "cosine", metric_object(&x->sum, x->sum.cosine));
            cJSON_AddItemToArray(arr, e);
        }
        char *txt = cJSON_Print(o);
        puts(txt);
        free(txt);
        cJSON_Delete(o);
    } else {
        char b[32];
        int nonfinite = 0;
        printf("%-4s %-64s %-20s %15s %12s %12s %12s\n", "rank", "student", "kind", "params", "nmse_sum",
               "feature_loss", "output_mse");
        for (int r = 0; r < nd; r++) {
            const Student *x = &st[(int)order[r][1]];
            double out_mse = NAN;
            for (int k = 0; k < x->sum.n; k++)
                if (!strcmp(x->sum.point[k], "output")) out_mse = x->sum.mse[k];
            printf("%-4d %-64s %-20s %15s %12.5g %12.5g %12.5g%s\n", r + 1, x->name, x->kind,
                   cli_commas(x->params, b, sizeof b), x->sum.nmse_sum, x->sum.feature_loss, out_mse,
                   x->sum.nonfinite ? "  NON-FINITE" : "");
            nonfinite += x->sum.nonfinite > 0;
        }
        if (nonfinite)
            printf("\n%d student%s went non-finite (NaN or infinity in a feature): losses +Inf, cosine -Inf,"
                   " ranked last\n", nonfinite, nonfinite > 1 ? "s" : "");
        if (nd < ns) printf("\n%d of %d students are not done yet (other processes hold them)\n", ns - nd, ns);
    }
    free(order);
done:
    for (int i = 0; i < ns; i++) student_free(&st[i]);
    free(st);
    plan_free(&base);
    session_close(&S, rc);
    prov_free(&prov);
    return rc;
}
