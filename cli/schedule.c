/* unetlab schedule: the progressive removal schedule. Each stage scores every
 * candidate valid for the current student (its loss increase per parameter
 * saved, or its loss increase alone), removes the best (or the K best that
 * touch different modules), and stores the stage; the same command continues
 * from the last stored stage. */
#include "candidates.h"
#include "backend.h"
#include "cli.h"
#include "err.h"
#include "fileio.h"
#include "hash.h"
#include "noise.h"
#include "numfmt.h"
#include "prof.h"
#include "session.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char USAGE[] =
    "usage: unetlab schedule --model T --db DB (--target-params N | --target-ms X | --stages K)\n"
    "                        (--calib IN | --synthetic N [--latent S] [--tokens L])\n"
    "                        [--score loss-per-ms|loss-per-param|loss] [--latency predicted|measured]\n"
    "                        [--repeats R] [--per-stage K] [--kinds K,...] [--plan BASE] [--plan-out P]\n"
    "                        [--any-plan] [--allow-unstable] [--device cpu|ref] [--dtype fp32|bf16]\n"
    "                        [--format text|json]\n"
    "\n"
    "Each stage scores every candidate valid for the current student (the loss is\n"
    "eval's block_nmse: NMSE summed over the down and up block outputs and the output,\n"
    "points every student has) and removes the best: lowest loss increase per millisecond\n"
    "saved (loss-per-ms), per parameter saved (loss-per-param, the default without a ms\n"
    "target), or lowest loss increase (loss). Milliseconds come from `unetlab profile` of the\n"
    "teacher on this machine at the calibration size (R repeats, default 5): predicted\n"
    "(the teacher's time minus the removed modules', scaled to the untraced forward; default)\n"
    "or measured (each candidate's untraced forwards), on the CPU engine that scores: --device\n"
    "cpu (the fast engine, default) or\n"
    "ref (the plain-loop reference; engine 'cpu-ref'), in --dtype fp32 (default) or bf16\n"
    "(the fast engine, where the CPU has it; a bf16 schedule is another schedule). --per-stage K removes\n"
    "the K best that share no module. Stops at --target-params N or --target-ms X (the\n"
    "student is at most that), or after --stages K in all. Stages are stored in DB as they\n"
    "finish; the same command continues from the last one. --plan-out writes the final\n"
    "plan. Only students a diffusers config can describe are chosen (so that export\n"
    "works); --any-plan lifts that.\n"
    "\n"
    "The teacher's profile is measured once and kept in DB with its noise (the share of\n"
    "the CPUs other processes took, the spread of the forwards; see `unetlab profile\n"
    "--help`). An unstable one is not scored with: the schedule stops with exit status 9\n"
    "unless --allow-unstable, and a resumed schedule whose stored profile is unstable\n"
    "measures it again. A target that no student reaches (nothing left to remove) stores\n"
    "every stage, writes the plan and exits with status 10, saying how far it got.\n";

typedef struct {
    int n;
    int stage[512];
    char *plan_json[512];
    char *chosen[512];
    int64_t params[512], macs[512];
    double loss[512], ms[512];
} Stored;

static void keep_stage(void *ctx, int stage, const char *plan_json, const char *chosen, int64_t params, int64_t macs,
                       double loss, double ms) {
    Stored *s = ctx;
    s->ms[s->n] = ms;
    if (s->n == 512) return;
    s->stage[s->n] = stage;
    s->plan_json[s->n] = xstrdup(plan_json);
    s->chosen[s->n] = xstrdup(chosen);
    s->params[s->n] = params;
    s->macs[s->n] = macs;
    s->loss[s->n++] = loss;
}

typedef struct {
    int i;
    double score;
} Ranked;

static int cmp_ranked(const void *a, const void *b) {
    const Ranked *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? -1 : 1;
    return x->i - y->i; /* ties: enumeration order, so runs are deterministic */
}

/* Whether plans a and b (candidate entries over the same base) share an entry. */
static int overlap(const Plan *a, const Plan *b, const Plan *base) {
    for (int i = 0; i < a->n; i++) {
        int in_base = 0;
        for (int k = 0; k < base->n; k++) in_base |= !strcmp(a->remove[i], base->remove[k]);
        if (in_base) continue;
        for (int j = 0; j < b->n; j++)
            if (!strcmp(a->remove[i], b->remove[j])) return 1;
        /* a module and something inside it (a layer of a removed attention level) */
        for (int j = 0; j < b->n; j++) {
            size_t la = strlen(a->remove[i]), lb = strlen(b->remove[j]);
            if ((la < lb && !strncmp(a->remove[i], b->remove[j], la) && b->remove[j][la] == '.') ||
                (lb < la && !strncmp(b->remove[j], a->remove[i], lb) && a->remove[i][lb] == '.'))
                return 1;
        }
    }
    return 0;
}

static void print_stage(int stage, const char *chosen, int64_t params, int64_t macs, double loss, double ms, const char *note) {
    char b[32], m[32] = "";
    if (!isnan(ms)) snprintf(m, sizeof m, "%10.2f", ms);
    printf("%-6d %-58s %15s %12.3f %12.5g %10s  %s\n", stage, chosen, cli_commas(params, b, sizeof b), (double)macs / 1e9, loss,
           m, note);
    fflush(stdout);
}

/* Transformer layers per block of a (down_blocks.i, mid_block, up_blocks.i). */
static void layers_per_level(const Arch *a, int *out) {
    int k = 0;
    for (int i = 0; i < a->n_blocks; i++) {
        out[k] = 0;
        for (int j = 0; j < a->down[i].n_attn; j++) out[k] += a->down[i].depth[j];
        k++;
    }
    out[k] = 0;
    if (a->has_mid)
        for (int j = 0; j < a->mid.n_attn; j++) out[k] += a->mid.depth[j];
    k++;
    for (int i = 0; i < a->n_blocks; i++) {
        out[k] = 0;
        for (int j = 0; j < a->up[i].n_attn; j++) out[k] += a->up[i].depth[j];
        k++;
    }
}

/* How the plan compares with SSD-1B's and Segmind-Vega's published architectures. */
static void compare_with_paper(const Arch *teacher, const Arch *student, const Shape *s) {
    const char *names[] = {"ssd-1b", "segmind-vega"};
    Arch ref[2];
    for (int r = 0; r < 2; r++) {
        const char *txt = config_preset(names[r]);
        if (config_parse(&ref[r], txt, strlen(txt), names[r]) || ref[r].n_blocks != teacher->n_blocks ||
            memcmp(ref[r].block_out, teacher->block_out, sizeof teacher->block_out))
            return; /* the published students are SDXL's: compare only with an SDXL-shaped teacher */
    }
    int lt[2 * MAX_BLOCKS + 1], ls[2 * MAX_BLOCKS + 1], l1[2 * MAX_BLOCKS + 1], l2[2 * MAX_BLOCKS + 1];
    layers_per_level(teacher, lt);
    layers_per_level(student, ls);
    layers_per_level(&ref[0], l1);
    layers_per_level(&ref[1], l2);
    printf("\ntransformer layers per level: teacher -> this plan | SSD-1B | Segmind-Vega (architectures as published)\n");
    int n = 2 * teacher->n_blocks + 1;
    for (int k = 0; k < n; k++) {
        char lvl[32];
        if (k < teacher->n_blocks) snprintf(lvl, sizeof lvl, "down_blocks.%d", k);
        else if (k == teacher->n_blocks) snprintf(lvl, sizeof lvl, "mid_block");
        else snprintf(lvl, sizeof lvl, "up_blocks.%d", k - teacher->n_blocks - 1);
        printf("  %-14s %3d -> %3d | %3d | %3d\n", lvl, lt[k], ls[k], l1[k], l2[k]);
    }
    const Arch *all[] = {student, &ref[0], &ref[1]};
    const char *lab[] = {"this plan", "SSD-1B", "Segmind-Vega"};
    for (int r = 0; r < 3; r++) {
        ModuleTree t;
        unet_tree_build(&t, all[r], s);
        char b[32];
        printf("  %-13s mid block %-24s %15s params %10.1f GMACs (batch 1, %dx%d px)\n", lab[r],
               all[r]->has_mid ? block_type_name(all[r]->mid.type) : "(none)", cli_commas(t.m[0].params, b, sizeof b),
               (double)t.m[0].macs / 1e9, s->height * 8, s->width * 8);
        unet_tree_free(&t);
    }
}

/* Per-module latency of the teacher (medians by module name), the whole
 * forward under PROF_FORWARD, as JSON text: what the schedule scores with,
 * with the noise of its measurement and how stages get their milliseconds. */
static char *profile_teacher(Session *S, int repeats, int measured) {
    UnetInputs one;
    calib_slice(&S->in, 0, 1, &one);
    Prof p;
    prof_init(&p, repeats);
    double plain;
    ProfSubject sub = {&S->m.arch, &S->w, &one};
    fprintf(stderr, "schedule: profiling the teacher on this machine (engine %s: %s), %d repeats\n", cpu_engine_name(),
            cpu_engine_describe(), repeats);
    NoiseProbe probe;
    noise_start(&probe);
    int rc = prof_forward(&sub, 1, 1, repeats, &p, &plain);
    Noise n = noise_stop(&probe, NULL, 0);
    unet_inputs_free(&one);
    char *txt = NULL;
    if (!rc) {
        for (int k = 0; k < 2; k++) {
            const ProfEntry *e = prof_find(&p, k ? PROF_PLAIN : PROF_FORWARD);
            if (e) noise_judge(&n, e->ms, repeats);
        }
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "engine", cpu_engine_name());
        cJSON_AddStringToObject(o, "stage_ms", measured ? "measured" : "predicted");
        cJSON_AddBoolToObject(o, "unstable", n.unstable);
        if (isnan(n.others_load)) cJSON_AddNullToObject(o, "others_load");
        else cJSON_AddNumberToObject(o, "others_load", n.others_load);
        cJSON_AddNumberToObject(o, "spread", n.spread);
        cJSON *m = cJSON_AddObjectToObject(o, "ms");
        for (int i = 0; i < p.n; i++) cJSON_AddNumberToObject(m, p.e[i].name, prof_median(&p, p.e[i].name));
        char *t = cJSON_PrintUnformatted(o);
        txt = xstrdup(t);
        free(t);
        cJSON_Delete(o);
        noise_warn(&n, "the schedule's teacher profile");
    }
    prof_free(&p);
    return txt;
}

/* Whether a stored teacher profile was judged unstable. */
static int profile_unstable(const char *json) {
    cJSON *o = cJSON_Parse(json);
    int u = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "unstable"));
    cJSON_Delete(o);
    return u;
}

/* The stored per-module medians as a one-sample profile, so prof_predict serves here too. */
static void prof_from_json(Prof *p, const cJSON *ms) {
    prof_init(p, 1);
    const cJSON *e;
    cJSON_ArrayForEach(e, ms) prof_add(p, e->string, e->valuedouble);
    p->cur = -1;
}

/* The student's predicted latency: the teacher's minus its removed modules' (prof_predict). */
static double predict_ms(const Prof *teacher, const ModuleTree *tt, const Arch *student, const Shape *s) {
    ModuleTree st;
    unet_tree_build(&st, student, s);
    char *removed = xcalloc((size_t)tt->n_modules, 1);
    unet_removed(tt, &st, removed);
    double v = prof_predict(teacher, tt, removed);
    free(removed);
    unet_tree_free(&st);
    /* module times come from the traced forward; the student's latency is wanted on the
     * untraced scale (what bench and the report's measured series show): the teacher's
     * untraced median scaled by the traced prediction's share of the traced forward */
    double plain = prof_median(teacher, PROF_PLAIN), traced = prof_median(teacher, PROF_FORWARD);
    return isfinite(plain) && traced > 0 ? v * plain / traced : v;
}

/* The student's measured latency (median of `repeats` forwards on the CPU engine). */
static double measure_ms(Session *S, const Arch *student, int repeats) {
    UnetInputs one;
    calib_slice(&S->in, 0, 1, &one);
    Prof p;
    prof_init(&p, repeats);
    double plain = NAN;
    ProfSubject sub = {student, &S->w, &one};
    prof_forward(&sub, 1, 0, repeats, &p, &plain);
    unet_inputs_free(&one);
    prof_free(&p);
    return plain;
}

/* How the schedule knows a student's latency: not at all (NaN), measured, or predicted. */
typedef struct {
    int need, measured, repeats;
    Session *S;
    Prof teacher;              /* the stored medians of the teacher's modules */
    ModuleTree tt;             /* the teacher at the calibration size, batch 1 */
    Shape s;
} Latency;

static double student_ms(const Latency *L, const Arch *student) {
    if (!L->need) return NAN;
    return L->measured ? measure_ms(L->S, student, L->repeats) : predict_ms(&L->teacher, &L->tt, student, &L->s);
}

int cmd_schedule(int argc, char **argv) {
    const char *model = NULL, *dbpath = NULL, *tparams = NULL, *tms = NULL, *stages_s = NULL, *calib = NULL,
               *synth = NULL, *score = NULL, *per_s = "1", *kinds = "all", *plan_path = NULL,
               *drop = NULL, *plan_out = NULL, *any = NULL, *latency = NULL, *fmt = "text", *seed_s = "0",
               *bs_s = "4", *lease_s = "600", *latent_s = "0", *tokens_s = "77", *rep_s = "5", *device = "cpu", *dtype_s = NULL,
               *allow_unstable = NULL;
    const Opt opts[] = {{"--model", 1, &model}, {"--db", 1, &dbpath}, {"--target-params", 1, &tparams},
                        {"--target-ms", 1, &tms}, {"--stages", 1, &stages_s}, {"--calib", 1, &calib},
                        {"--synthetic", 1, &synth}, {"--score", 1, &score}, {"--per-stage", 1, &per_s},
                        {"--kinds", 1, &kinds}, {"--plan", 1, &plan_path}, {"--drop", 1, &drop},
                        {"--plan-out", 1, &plan_out}, {"--any-plan", 0, &any}, {"--latency", 1, &latency},
                        {"--format", 1, &fmt}, {"--seed", 1, &seed_s}, {"--batch-size", 1, &bs_s},
                        {"--lease", 1, &lease_s}, {"--latent", 1, &latent_s}, {"--tokens", 1, &tokens_s},
                        {"--repeats", 1, &rep_s}, {"--device", 1, &device}, {"--dtype", 1, &dtype_s}, {"--allow-unstable", 0, &allow_unstable},
                        {NULL, 0, NULL}};
    int rc = cli_parse(argc, argv, opts, USAGE);
    if (rc) return rc;
    if (!model || !dbpath) return err_set(ERR_USAGE, "schedule: --model and --db are required (see unetlab schedule --help)");
    if (!!tparams + !!stages_s + !!tms != 1) return err_set(ERR_USAGE, "schedule: give one of --target-params, --target-ms and --stages");
    if (!score) score = tms ? "loss-per-ms" : "loss-per-param";
    if (latency && strcmp(latency, "predicted") && strcmp(latency, "measured"))
        return err_set(ERR_USAGE, "option '--latency': '%s' is not one of predicted, measured", latency);
    int measured = latency && !strcmp(latency, "measured");
    if (!!calib == !!synth) return err_set(ERR_USAGE, "schedule: give exactly one of --calib and --synthetic");
    int by_param = !strcmp(score, "loss-per-param"), by_ms = !strcmp(score, "loss-per-ms");
    if (!by_param && !by_ms && strcmp(score, "loss"))
        return err_set(ERR_USAGE, "option '--score': '%s' is not one of loss-per-ms, loss-per-param, loss", score);
    int need_ms = by_ms || tms;
    long target = 0, max_stages = 0, per, seed, bs, lease, latent, tokens, nsyn = 0, rep;
    double target_ms = 0;
    if (tms) {
        char *end;
        target_ms = strtod(tms, &end);
        if (*end || !(target_ms > 0)) return err_set(ERR_USAGE, "option '--target-ms': '%s' is not a positive number", tms);
    }
    int mask;
    Format f;
    DType dt = DTYPE_F32;
    if ((tparams && (rc = cli_int("--target-params", tparams, 1, 0x7fffffffffffL, &target))) ||
        (stages_s && (rc = cli_int("--stages", stages_s, 1, 500, &max_stages))) ||
        (rc = cli_int("--per-stage", per_s, 1, 64, &per)) || (rc = cli_int("--seed", seed_s, 0, 0x7fffffffL, &seed)) ||
        (rc = cli_int("--batch-size", bs_s, 1, 4096, &bs)) || (rc = cli_int("--lease", lease_s, 1, 1L << 30, &lease)) ||
        (rc = cli_int("--latent", latent_s, 0, 1 << 14, &latent)) || (rc = cli_int("--tokens", tokens_s, 1, 1 << 16, &tokens)) ||
        (synth && (rc = cli_int("--synthetic", synth, 1, 1 << 20, &nsyn))) || (rc = cand_kinds_parse("--kinds", kinds, &mask)) ||
        (rc = cli_int("--repeats", rep_s, 1, 1000, &rep)) ||
        (rc = cli_format(fmt, &f, 0)) || (rc = cli_cpu_engine("schedule", device, dtype_s, &dt)))
        return rc;

    if (plan_out && (rc = out_probe(plan_out))) return rc; /* before the stages, not after them */
    CliProvenance prov;
    prov_fill(&prov, argc, argv, seed);
    SessionOptions so = {model, calib, (int)nsyn, (int)latent, (int)tokens, seed, dbpath, (int)bs, (int)lease, 1, &prov.p,
                         dtype_name(dt)};
    Session S;
    Plan cur;
    plan_init(&cur);
    Stored stored = {0};
    Latency L = {0};
    cJSON *out = f == FORMAT_JSON ? cJSON_CreateObject() : NULL, *jstages = out ? cJSON_AddArrayToObject(out, "stages") : NULL;
    if ((rc = session_open(&S, &so))) goto done;
    Arch tmp;
    if ((rc = cli_student(&S.m.arch, plan_path, drop, &cur, &tmp))) goto done;
    Shape cs = S.shape;

    /* the schedule's identity: what decides its stages (not the target, which only says when to stop) */
    char *base_json = plan_to_json(&cur, NULL);
    /* the dtype joins the key only when not fp32, so schedules stored before it keep theirs */
    char dts[32] = "";
    if (dt != DTYPE_F32) snprintf(dts, sizeof dts, ",\"dtype\":\"%s\"", dtype_name(dt));
    char *options = xasprintf("{\"score\":\"%s\",\"per_stage\":%ld,\"kinds\":\"%s\",\"any_plan\":%s,\"base\":%s,\"metric_version\":%d%s}",
                              score, per, kinds, any ? "true" : "false", base_json, METRIC_VERSION, dts);
    free(base_json);
    char key[17];
    hash_hex(hash_bytes(HASH_INIT, options, strlen(options)), key);
    int64_t sched_id;
    rc = db_schedule_put(S.db, S.model_id, S.calib_id, key, options, &sched_id);
    free(options);
    if (rc || (rc = db_stages(S.db, sched_id, keep_stage, &stored))) goto done;
    L = (Latency){need_ms, measured, (int)rep, &S, {0}, {0}, S.shape};
    if (need_ms) { /* the teacher's profile, measured once per schedule and kept in the DB */
        char *have = NULL;
        if ((rc = db_schedule_latency(S.db, sched_id, NULL, &have))) goto done;
        if (have && profile_unstable(have)) { /* stored unstable: measure again, keep the new one */
            fprintf(stderr, "schedule: the stored teacher profile is marked unstable: measuring it again\n");
            char *mine = profile_teacher(&S, (int)rep, measured);
            rc = mine ? db_schedule_latency_set(S.db, sched_id, mine) : ERR_RUNTIME;
            if (!rc) { free(have); have = mine; } else free(mine);
            if (rc) { free(have); goto done; }
        }
        if (!have) {
            char *mine = profile_teacher(&S, (int)rep, measured);
            if (!mine) { rc = ERR_RUNTIME; goto done; }
            rc = db_schedule_latency(S.db, sched_id, mine, &have);
            free(mine);
            if (rc) goto done;
        }
        if (profile_unstable(have) && !allow_unstable) {
            free(have);
            rc = err_set(ERR_UNSTABLE, "schedule: the teacher profile is unstable (stored so in '%s'): not scoring with it;"
                         " rerun on a quiet machine (the same command measures it again) or pass --allow-unstable", dbpath);
            goto done;
        }
        cJSON *lat = cJSON_Parse(have);
        free(have);
        prof_from_json(&L.teacher, cJSON_GetObjectItemCaseSensitive(lat, "ms"));
        cJSON_Delete(lat);
        unet_tree_build(&L.tt, &S.m.arch, &L.s);
    }
    if (f == FORMAT_TEXT) printf("%-6s %-58s %15s %12s %12s %10s\n", "stage", "removed", "params", "GMACs", "loss", need_ms ? (measured ? "ms measured" : "ms predicted") : "");
    Student t0;
    if ((rc = student_init(&S, &t0, "start", "plan", &cur))) { student_free(&t0); goto done; }
    if (f == FORMAT_TEXT)
        print_stage(0, "(start)", t0.params, t0.macs, 0.0,
                    student_ms(&L, &t0.arch), "");
    int64_t start_params = t0.params;
    double start_ms = student_ms(&L, &t0.arch);
    student_free(&t0);
    for (int i = 0; i < stored.n; i++) {
        if (f == FORMAT_TEXT)
            print_stage(stored.stage[i], stored.chosen[i], stored.params[i], stored.macs[i], stored.loss[i], stored.ms[i], "(stored)");
        if (jstages) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddNumberToObject(e, "stage", stored.stage[i]);
            cJSON_AddStringToObject(e, "removed", stored.chosen[i]);
            cJSON_AddNumberToObject(e, "params", (double)stored.params[i]);
            cJSON_AddNumberToObject(e, "macs", (double)stored.macs[i]);
            cJSON_AddNumberToObject(e, "loss", stored.loss[i]);
            cJSON_AddItemToArray(jstages, e);
        }
    }
    if (stored.n) { /* continue from the last stored stage */
        plan_free(&cur);
        if ((rc = plan_parse(&cur, stored.plan_json[stored.n - 1], strlen(stored.plan_json[stored.n - 1]), "stored stage"))) goto done;
    }
    int stage = stored.n ? stored.stage[stored.n - 1] : 0;
    struct timespec ts0;
    clock_gettime(CLOCK_MONOTONIC, &ts0);
    int ran = 0, reached = 0;
    int64_t last_params = 0;
    double last_ms = NAN;
    for (;;) {
        Student cs_st;
        if ((rc = student_init(&S, &cs_st, "current", "plan", &cur))) { student_free(&cs_st); break; }
        int64_t cur_params = cs_st.params;
        double cur_ms = student_ms(&L, &cs_st.arch);
        last_params = cur_params, last_ms = cur_ms;
        if ((target && cur_params <= target) || (tms && cur_ms <= target_ms) || (max_stages && stage >= max_stages)) {
            reached = 1;
            student_free(&cs_st);
            break;
        }
        Candidate *c;
        int nc;
        if ((rc = cand_enumerate(&S.m.arch, &cur, mask, &cs, &c, &nc))) { student_free(&cs_st); break; }
        /* the current student first, then every usable candidate */
        Student *st = xcalloc((size_t)nc + 1, sizeof *st);
        int ns = 0;
        st[ns++] = cs_st;
        for (int i = 0; i < nc && !rc; i++)
            if (any || c[i].expressible) rc = student_init(&S, &st[ns++], c[i].name, cand_kind_name(c[i].kind), &c[i].plan);
        cand_free_all(c, nc);
        if (!rc && ns == 1) fprintf(stderr, "schedule: no candidate left at stage %d\n", stage + 1);
        char what[64];
        snprintf(what, sizeof what, "schedule stage %d", stage + 1);
        int all_done = 0;
        while (!rc && ns > 1 && !all_done) { /* students another process holds: wait for them */
            if ((rc = session_score(&S, st, ns, what))) break;
            all_done = 1;
            for (int i = 0; i < ns; i++) all_done &= st[i].done;
            if (!all_done) sleep(1);
        }
        if (rc || ns == 1) {
            for (int i = 0; i < ns; i++) student_free(&st[i]);
            free(st);
            break;
        }
        double base_loss = st[0].sum.block_nmse;
        Ranked *rk = xmalloc((size_t)ns * sizeof *rk);
        double *ms = xcalloc((size_t)ns, sizeof *ms);
        ms[0] = cur_ms;
        for (int i = 1; i < ns; i++) {
            ms[i] = student_ms(&L, &st[i].arch);
            double inc = st[i].sum.block_nmse - base_loss, saved = (double)(cur_params - st[i].params);
            double saved_ms = cur_ms - ms[i];
            rk[i - 1] = (Ranked){i, by_param ? (saved > 0 ? inc / saved : INFINITY)
                                    : by_ms ? (saved_ms > 0 ? inc / saved_ms : INFINITY) : inc};
        }
        qsort(rk, (size_t)(ns - 1), sizeof *rk, cmp_ranked);
        /* the best, then the next best that share no module with those chosen and still apply together */
        int chosen[64], nch = 0;
        Plan next = plan_copy(&cur);
        for (int r = 0; r < ns - 1 && nch < per; r++) {
            const Student *x = &st[rk[r].i];
            int clash = 0;
            for (int k = 0; k < nch && !clash; k++) clash = overlap(&x->plan, &st[chosen[k]].plan, &cur);
            if (clash) continue;
            Plan trial = plan_copy(&next);
            for (int e = 0; e < x->plan.n; e++) plan_add(&trial, x->plan.remove[e]);
            Arch ta;
            char *cfg = NULL;
            int ok = plan_apply(&S.m.arch, &trial, &ta) == 0 && (any || plan_config_json(&ta, "{}", &cfg) == 0);
            free(cfg);
            if (ok) { plan_free(&next); next = trial; chosen[nch++] = rk[r].i; }
            else plan_free(&trial);
        }
        Student nx;
        rc = student_init(&S, &nx, "next", "plan", &next);
        if (!rc && nch > 1) rc = session_score(&S, &nx, 1, what);
        double loss = nch == 1 ? st[chosen[0]].sum.block_nmse : nx.sum.block_nmse;
        char names[2048] = "";
        for (int k = 0; k < nch; k++) {
            if (k) strncat(names, " ", sizeof names - strlen(names) - 1);
            strncat(names, st[chosen[k]].name, sizeof names - strlen(names) - 1);
        }
        DbStageScore *sc = xcalloc((size_t)ns, sizeof *sc);
        for (int r = 0; r < ns - 1; r++) {
            const Student *x = &st[rk[r].i];
            int is = 0;
            for (int k = 0; k < nch; k++) is |= chosen[k] == rk[r].i;
            sc[r] = (DbStageScore){x->name, x->kind, x->sum.block_nmse, x->sum.block_nmse - base_loss, cur_params - x->params,
                                   cur_ms - ms[rk[r].i], rk[r].score, is};
        }
        int64_t plan_id = 0;
        if (!rc) {
            char *js = plan_to_json(&next, model), h[17];
            plan_hash(&next, h);
            rc = db_plan_put(S.db, S.model_id, js, h, nx.params, &plan_id);
            free(js);
        }
        stage++;
        double next_ms = nch == 1 ? ms[chosen[0]] : student_ms(&L, &nx.arch);
        free(ms);
        DbStage ds = {stage, plan_id, names, nx.params, nx.macs, loss, next_ms};
        if (!rc) rc = db_stage_put(S.db, sched_id, &ds, sc, ns - 1);
        if (!rc) {
            ran++;
            if (f == FORMAT_TEXT) print_stage(stage, names, nx.params, nx.macs, loss, next_ms, "");
            if (jstages) {
                cJSON *e = cJSON_CreateObject();
                cJSON_AddNumberToObject(e, "stage", stage);
                cJSON_AddStringToObject(e, "removed", names);
                cJSON_AddNumberToObject(e, "params", (double)nx.params);
                cJSON_AddNumberToObject(e, "macs", (double)nx.macs);
                cJSON_AddNumberToObject(e, "loss", loss);
                if (need_ms) cJSON_AddNumberToObject(e, "ms", next_ms);
                cJSON_AddItemToArray(jstages, e);
            }
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            double el = (double)(ts.tv_sec - ts0.tv_sec) + 1e-9 * (double)(ts.tv_nsec - ts0.tv_nsec), per_stage = el / ran;
            /* stages left: from the progress per stage so far toward the target; while
             * the target is not reached at least one more stage runs */
            double left = target ? (double)(nx.params - target) / fmax(1.0, (double)(start_params - nx.params) / stage)
                        : tms    ? (next_ms - target_ms) / fmax(1e-9, (start_ms - next_ms) / stage)
                                 : (double)(max_stages - stage);
            int reached = (target && nx.params <= target) || (tms && next_ms <= target_ms) || (max_stages && stage >= max_stages);
            char eta[32];
            if (reached)
                fprintf(stderr, "schedule: stage %d stored (%.1f s/stage); %s reached\n", stage, per_stage,
                        target ? "the parameter target" : tms ? "the millisecond target" : "the last stage");
            else
                fprintf(stderr, "schedule: stage %d stored (%.1f s/stage); about %.0f more stage%s, ETA ~%s (later stages score"
                        " fewer candidates)\n", stage, per_stage, fmax(1.0, ceil(left)), fmax(1.0, ceil(left)) > 1 ? "s" : "",
                        num_duration(fmax(1.0, ceil(left)) * per_stage, eta, sizeof eta));
        }
        free(sc);
        free(rk);
        student_free(&nx);
        plan_free(&cur);
        cur = next;
        for (int i = 0; i < ns; i++) student_free(&st[i]);
        free(st);
        if (rc) break;
    }
    if (rc) goto done;
    Arch fin;
    if ((rc = plan_apply(&S.m.arch, &cur, &fin))) goto done;
    if (plan_out) {
        char *js = plan_to_json(&cur, model);
        rc = out_write_text(plan_out, js);
        free(js);
        if (rc) goto done;
        fprintf(stderr, "schedule: final plan written to %s\n", plan_out);
    }
    if (out) {
        cJSON *pl = cJSON_AddArrayToObject(out, "plan");
        for (int k = 0; k < cur.n; k++) cJSON_AddItemToArray(pl, cJSON_CreateString(cur.remove[k]));
        char *txt = cJSON_Print(out);
        puts(txt);
        free(txt);
    } else {
        Shape s1024 = {1, S.m.arch.sample_size ? S.m.arch.sample_size : cs.height, S.m.arch.sample_size ? S.m.arch.sample_size : cs.width, 77};
        compare_with_paper(&S.m.arch, &fin, &s1024);
    }
    if (!reached && (target || tms)) {
        char b1[32], b2[32];
        if (target)
            rc = err_set(ERR_TARGET, "schedule: target %s params not reached: nothing left to remove after stage %d; the"
                         " smallest student has %s params (its stages are stored in '%s')", cli_commas(target, b1, sizeof b1),
                         stage, cli_commas(last_params, b2, sizeof b2), dbpath);
        else
            rc = err_set(ERR_TARGET, "schedule: target %.6g ms not reached: nothing left to remove after stage %d; the"
                         " fastest student takes %.3f ms (%s; its stages are stored in '%s')", target_ms, stage, last_ms,
                         measured ? "measured" : "predicted", dbpath);
    }
done:
    prof_free(&L.teacher);
    unet_tree_free(&L.tt);
    cJSON_Delete(out);
    for (int i = 0; i < stored.n; i++) { free(stored.plan_json[i]); free(stored.chosen[i]); }
    plan_free(&cur);
    session_close(&S, rc);
    prov_free(&prov);
    return rc;
}
