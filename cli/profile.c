/* unetlab profile: what each module costs, measured on this machine, with the
 * parts checked against the whole. On a GPU: CUPTI kernel records attributed
 * to modules (engine 'cupti'), or CUDA events per module where CUPTI cannot
 * trace ('cuda-events'); without one, the CPU forward's wall clock per module
 * ('cpu'). The engine labels every number printed and stored. */
#include "backend.h"
#include "cli.h"
#include "err.h"
#include "eval.h"
#include "hash.h"
#include "noise.h"
#include "prof.h"
#include "weights.h"
#include "dtype.h"
#include <cjson/cJSON.h>
#ifdef UNETLAB_CUDA
#include "backend_cuda.h"
#endif
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char USAGE[] =
    "usage: unetlab profile --model M [--plan P] [--drop NAME,...] [--db DB]\n"
    "                       [--batch B --height H --width W --tokens L] [--warmup W --repeats R]\n"
    "                       [--device auto|cuda|cpu|ref] [--dtype fp16|bf16|fp32] [--graph]\n"
    "                       [--depth D] [--seed S] [--format text|json|csv]\n"
    "       unetlab profile --compare M1,M2,... [size and repeat options] [--db DB]\n"
    "\n"
    "Times every module of the forward (blocks, resnets, attentions, transformer layers,\n"
    "and the ops inside) over R repeats after W warm-ups (defaults 1 and 5), on seeded\n"
    "inputs of the given size; prints median, p10 and p90 per module, its share of the\n"
    "forward, the forward end to end, the part the top-level modules account for (the\n"
    "gap is reported), and the tracing overhead (the same forwards untraced). With --plan,\n"
    "the student is profiled too and its latency is shown measured and predicted (the\n"
    "teacher's minus the removed modules' times), with the prediction error. --compare\n"
    "profiles several models in one run: on the CPU all are loaded and take turns within\n"
    "each repeat (A, B, C, A, B, C, ...), so a slow moment of the machine hits them alike\n"
    "(their weights must fit in memory together); on a GPU they run one after another.\n"
    "\n"
    "Noise: the share of the CPUs' time other processes took during the run (from\n"
    "/proc/stat) and the spread of the forwards (p90/p10) are printed and stored with\n"
    "every row; above 10% of the CPUs or a spread of 1.5 the rows are marked unstable\n"
    "and one warning line says so (exit status unchanged).\n"
    "\n"
    "Engines, named wherever a number is printed or stored, never mixed:\n"
    "  cupti        on a GPU (--device cuda, or auto when one answers): every kernel,\n"
    "               memcpy and memset traced with CUPTI and attributed to the module that\n"
    "               launched it; a module's time is its kernels' time; the forward is timed\n"
    "               with CUDA events; with --graph one captured CUDA graph is replayed\n"
    "               (graph nodes mapped to modules at capture). --db stores every kernel.\n"
    "  cuda-events  on a GPU where CUPTI cannot trace (e.g. no profiling permission):\n"
    "               an event pair around each module of eager forwards.\n"
    "  cpu          without a GPU, or --device cpu: wall clock of the fast CPU engine's\n"
    "               forward (oneDNN and vectorised kernels).\n"
    "  cpu-ref      --device ref: wall clock of the plain-loop reference engine (fp32).\n"
    "--dtype is the run dtype: on a GPU fp16 (default), bf16 or fp32 (no TF32); on the\n"
    "CPU fp32 (default) or bf16 where the CPU has AVX512-BF16 or AMX.\n";

typedef struct {
    const char *model;
    ModelSource m;
    Shape s;
    int warmup, repeats;
    long seed;
    Prof pt, ps;              /* teacher, student */
    double plain_t, plain_s;  /* untraced medians */
    ModuleTree tt, st;
    Arch student;
    Plan plan;
    int has_student;
    char weights_hash[17], config_hash[17];
    int use_cuda, graph;      /* on the GPU: engine cupti or cuda-events */
    DType dt;
    const char *engine;       /* "cpu", "cupti", "cuda-events" */
    char device[512];         /* what ran it */
    ProfKernels kern;         /* cupti: every record, both models */
    Weights w;                /* loaded by job_load, freed by job_unload */
    UnetInputs in;
    int loaded;
    int borrowed;             /* bench --profile: m and w are the caller's, engine too */
#ifdef UNETLAB_CUDA
    CudaEngine *cuda;         /* borrowed (bench --profile), else NULL: measure_cuda makes one */
#endif
    Noise noise;              /* of the run that measured it (a compare's models share one) */
    int64_t params0;          /* the model's parameters, before it is loaded */
} Job;

/* The root's children, down_blocks.i and up_blocks.i: modules that together run the whole forward. */
static int top_level(const ModuleTree *t, int i) {
    int p = t->m[i].parent;
    if (p == 0) return strcmp(t->m[i].kind, "ModuleList") != 0;
    return t->m[p].parent == 0 && !strcmp(t->m[p].kind, "ModuleList");
}

/* Median over repeats of the sum of the top-level modules' times. */
static double attributed(const Prof *p, const ModuleTree *t) {
    double *sum = xcalloc((size_t)p->repeats, sizeof *sum);
    for (int i = 1; i < t->n_modules; i++) {
        const ProfEntry *e = prof_find(p, t->m[i].name);
        if (!e || !top_level(t, i)) continue;
        for (int r = 0; r < p->repeats; r++) sum[r] += e->ms[r];
    }
    double m = prof_quantile(sum, p->repeats, 0.5);
    free(sum);
    return m;
}

/* Resolves the model, makes its inputs and loads its weights (hashed, then handed to the engine). */
/* What a resolved job needs besides its weights: its inputs, module trees,
 * config hash and empty profiles. who prefixes an error. */
static int job_prepare(Job *j, const char *who) {
    calib_synthetic(&j->m.arch, j->s.batch, j->s.height, j->s.width, j->s.tokens, (uint64_t)j->seed, &j->in);
    int rc = unet_check_inputs(&j->m.arch, &j->in);
    if (rc) { unet_inputs_free(&j->in); return err_wrap(rc, "%s: ", who); }
    unet_tree_build(&j->tt, &j->m.arch, &j->s);
    hash_hex(hash_bytes(HASH_INIT, j->m.config_text, strlen(j->m.config_text)), j->config_hash);
    if (j->has_student) unet_tree_build(&j->st, &j->student, &j->s);
    for (int k = 0; k < 1 + j->has_student; k++) prof_init(k ? &j->ps : &j->pt, j->repeats);
    return 0;
}

static int job_load(Job *j) {
    int rc = model_resolve(&j->m, j->model);
    if (rc || (rc = job_prepare(j, "profile"))) return rc;
    if ((rc = weights_load(&j->w, &j->m, &j->tt, (uint64_t)j->seed))) { unet_inputs_free(&j->in); return rc; }
    j->loaded = 1;
    weights_hash(&j->w, j->weights_hash);
    j->w.engine_owns = 1; /* hashed: from here on only forwards read the weights */
    return 0;
}

static void job_unload(Job *j) {
    if (!j->loaded) return;
    weights_free(&j->w);
    unet_inputs_free(&j->in);
    j->loaded = 0;
}

/* The spread of every forward measured (traced and untraced) widens the run's noise. */
static void judge_job(Job *j, Noise *n) {
    for (int who = 0; who < 1 + j->has_student; who++) {
        const Prof *p = who ? &j->ps : &j->pt;
        const char *names[] = {PROF_FORWARD, PROF_PLAIN};
        for (int k = 0; k < 2; k++) {
            const ProfEntry *e = prof_find(p, names[k]);
            if (e) noise_judge(n, e->ms, p->repeats);
        }
    }
}

/* Measures jobs[0..nj-1], loaded, on the CPU in one run: every model (and
 * student) takes its turn in every repeat, and they share one noise reading. */
static int measure_cpu(Job *jobs, int nj) {
    ProfSubject sub[32];
    Prof *p[32];
    double plain[32];
    int n = 0;
    for (int k = 0; k < nj; k++)
        for (int who = 0; who < 1 + jobs[k].has_student && n < 32; who++) {
            sub[n] = (ProfSubject){who ? &jobs[k].student : &jobs[k].m.arch, &jobs[k].w, &jobs[k].in};
            p[n++] = who ? &jobs[k].ps : &jobs[k].pt;
        }
    Prof *pp = xcalloc((size_t)n, sizeof *pp);
    for (int i = 0; i < n; i++) pp[i] = *p[i];
    NoiseProbe probe;
    noise_start(&probe);
    int rc = prof_forward(sub, n, jobs[0].warmup, jobs[0].repeats, pp, plain);
    Noise noise = noise_stop(&probe, NULL, 0);
    for (int i = 0; i < n; i++) *p[i] = pp[i]; /* the entries moved into pp; hand them back */
    free(pp);
    int i = 0;
    for (int k = 0; k < nj; k++) {
        jobs[k].plain_t = plain[i++];
        if (jobs[k].has_student) jobs[k].plain_s = plain[i++];
        judge_job(&jobs[k], &noise);
    }
    for (int k = 0; k < nj; k++) jobs[k].noise = noise;
    return rc;
}

#ifdef UNETLAB_CUDA
/* One loaded job on the GPU: the engine uploads its weights, the teacher and student are traced in turn. */
static int measure_cuda(Job *j) {
    CudaEngine *e = j->cuda;
    int rc = e ? 0 : cuda_engine_new(&e, &j->w, &j->tt, j->dt);
    if (rc) return rc;
    snprintf(j->device, sizeof j->device, "%s", cuda_engine_describe(e));
    const Arch *a[2] = {&j->m.arch, &j->student};
    Prof p[2] = {j->pt, j->ps};
    double plain[2] = {NAN, NAN};
    NoiseProbe probe;
    noise_start(&probe);
    rc = prof_forward_cuda(e, a, 1 + j->has_student, &j->in, j->warmup, j->repeats, j->graph, 1, p, plain, &j->kern,
                           &j->engine);
    j->noise = noise_stop(&probe, NULL, 0);
    if (strcmp(j->engine, "cupti")) j->graph = 0; /* CUDA events time eager forwards: say so, not "graph" */
    j->pt = p[0], j->ps = p[1], j->plain_t = plain[0], j->plain_s = plain[1];
    judge_job(j, &j->noise);
    if (!j->cuda) cuda_engine_free(e);
    return rc;
}
#endif

/* Whether n models' weights fit in memory together (a CPU --compare loads them all). */
static int check_memory(const Job *jobs, int nj) {
    double need = 0;
    for (int k = 0; k < nj; k++) need += 4.0 * (double)jobs[k].params0; /* fp32 on the CPU engines */
    FILE *f = fopen("/proc/meminfo", "r");
    double avail = -1;
    char line[256];
    while (f && fgets(line, sizeof line, f)) {
        long long kb;
        if (sscanf(line, "MemAvailable: %lld kB", &kb) == 1) avail = 1024.0 * (double)kb;
    }
    if (f) fclose(f);
    if (avail < 0 || need <= 0.9 * avail) return 0;
    return err_set(ERR_RUNTIME,
                   "profile --compare: the %d models take turns within each repeat, so their weights are held together:"
                   " %.1f GB, and this machine has %.1f GB available; compare fewer models per run", nj, need / 1e9,
                   avail / 1e9);
}

static void job_free(Job *j) {
    if (j->borrowed) { /* only what profile_on_engine made: the inputs, trees, records */
        unet_inputs_free(&j->in);
        j->loaded = 0;
        j->m = (ModelSource){0};
    }
    job_unload(j);
    prof_free(&j->pt);
    prof_free(&j->ps);
    prof_kernels_free(&j->kern);
    unet_tree_free(&j->tt);
    unet_tree_free(&j->st);
    plan_free(&j->plan);
    model_source_free(&j->m);
}

/* Latency rows of one profile: every module with a time, then the forward
 * (traced: its modules timed) and the same forwards untraced. */
static DbLatency *rows_of(const Prof *p, const ModuleTree *t, int *n, char ***samples_out) {
    DbLatency *r = xcalloc((size_t)t->n_modules + 2, sizeof *r);
    char **samples = xcalloc((size_t)t->n_modules + 2, sizeof *samples);
    double fmed = prof_median(p, PROF_FORWARD);
    int k = 0;
    for (int i = 1; i <= t->n_modules + 1; i++) {
        int whole = i >= t->n_modules;
        const char *name = !whole ? t->m[i].name : i == t->n_modules ? PROF_FORWARD : PROF_PLAIN;
        const ProfEntry *e = prof_find(p, name);
        if (!e) continue;
        double med, p10, p90;
        prof_stats(e, p->repeats, &med, &p10, &p90);
        cJSON *a = cJSON_CreateDoubleArray(e->ms, p->repeats);
        samples[k] = cJSON_PrintUnformatted(a);
        cJSON_Delete(a);
        r[k] = (DbLatency){name, whole ? "UNet2DConditionModel" : t->m[i].kind, e->calls / p->repeats, med, p10, p90,
                           fmed > 0 && strcmp(name, PROF_PLAIN) ? med / fmed : NAN, samples[k]};
        k++;
    }
    *n = k;
    *samples_out = samples;
    return r;
}

static int store(Job *j, const char *dbpath, const CliProvenance *prov) {
    Db *db;
    int64_t run, model_id, plan_id = 0;
    int rc = db_open(&db, dbpath);
    if (rc) return rc;
    if (!(rc = db_run_begin(db, &prov->p, &run)) &&
        !(rc = db_model_put(db, j->model, j->config_hash, j->weights_hash, j->tt.m[0].params, &model_id))) {
        /* the module tree at the profiled size, per image, so params and MACs stand beside the times */
        char label[64];
        Shape s1 = j->s;
        s1.batch = 1;
        ModuleTree t1;
        unet_tree_build(&t1, &j->m.arch, &s1);
        snprintf(label, sizeof label, "b1_%dx%d_t%d", s1.height * 8, s1.width * 8, s1.tokens);
        DbModule *mods = xmalloc((size_t)t1.n_modules * sizeof *mods);
        for (int i = 0; i < t1.n_modules; i++) mods[i] = (DbModule){t1.m[i].name, t1.m[i].kind, t1.m[i].params, t1.m[i].macs};
        rc = db_modules_put(db, model_id, label, mods, t1.n_modules);
        free(mods);
        unet_tree_free(&t1);
        DbLatencyKey key = {j->s.batch, j->s.height * 8, j->s.width * 8, j->s.tokens,
                            dtype_name(j->dt), j->device, j->engine, j->warmup, j->repeats,
                            j->noise.others_load, j->noise.unstable};
        for (int who = 0; who < 1 + j->has_student && !rc; who++) {
            const Prof *p = who ? &j->ps : &j->pt;
            const ModuleTree *t = who ? &j->tt : &j->tt; /* rows carry teacher names: a student's modules are the teacher's */
            if (who) {
                char *js = plan_to_json(&j->plan, j->model), h[17];
                plan_hash(&j->plan, h);
                rc = db_plan_put(db, model_id, js, h, j->st.m[0].params, &plan_id);
                free(js);
                if (rc) break;
            }
            int n;
            char **samples;
            DbLatency *r = rows_of(p, t, &n, &samples);
            rc = db_latency_put(db, run, model_id, who ? plan_id : 0, &key, r, n);
            int nk = 0;
            DbKernel *kr = xcalloc((size_t)j->kern.n + 1, sizeof *kr);
            for (int i = 0; i < j->kern.n; i++) {
                const ProfKernel *k = &j->kern.k[i];
                if (k->model != who) continue;
                kr[nk++] = (DbKernel){k->repeat, k->seq, k->kind, k->name, k->module, {k->grid[0], k->grid[1], k->grid[2]},
                                      {k->block[0], k->block[1], k->block[2]}, k->registers, k->smem_static,
                                      k->smem_dynamic, (int64_t)k->bytes, (int64_t)k->stream, (int64_t)k->start_ns,
                                      (int64_t)k->duration_ns, (int64_t)k->graph_node};
            }
            if (!rc && nk) rc = db_kernels_put(db, run, model_id, who ? plan_id : 0, &key, kr, nk);
            free(kr);
            for (int i = 0; i < n; i++) free(samples[i]);
            free(samples);
            free(r);
        }
        db_run_end(db, run, rc ? "failed" : "done");
    }
    db_close(db);
    return rc;
}

static const char *engine_what(const char *engine) {
    return !strcmp(engine, "cupti") ? "kernel time from CUPTI records" : !strcmp(engine, "cuda-events") ? "CUDA events per module" : "wall clock";
}

static void print_text(const Job *j, int maxdepth) {
    const Prof *p = j->has_student ? &j->ps : &j->pt;
    const ProfEntry *fw = prof_find(p, PROF_FORWARD);
    double fmed, f10, f90;
    prof_stats(fw, p->repeats, &fmed, &f10, &f90);
    char b[32];
    printf("profile: %s%s on %s (engine %s: %s; %s%s), batch %d, %dx%d px, %d tokens, median of %d after %d warm-up\n\n",
           j->model, j->has_student ? " (student)" : "", j->device, j->engine, engine_what(j->engine),
           dtype_name(j->dt), j->use_cuda ? (j->graph ? ", CUDA graph" : ", eager") : "",
           j->s.batch, j->s.height * 8, j->s.width * 8, j->s.tokens, j->repeats, j->warmup);
    printf("%-62s %-24s %14s %9s %10s %10s %10s %6s %6s\n", "module", "kind", "params", "GMACs", "ms", "p10", "p90",
           strcmp(j->engine, "cupti") ? "calls" : "kernels", "share");
    for (int i = 1; i < j->tt.n_modules; i++) {
        const ProfEntry *e = prof_find(p, j->tt.m[i].name);
        if (!e) continue;
        int l = 0;
        for (int a = j->tt.m[i].parent; a > 0; a = j->tt.m[a].parent) l += strcmp(j->tt.m[a].kind, "ModuleList") != 0;
        if (maxdepth && l >= maxdepth) continue;
        double med, p10, p90;
        prof_stats(e, p->repeats, &med, &p10, &p90);
        int same = !j->has_student; /* a student's module may hold fewer layers than the teacher's of that name */
        printf("%*s%-*s %-24s %14s %9s %10.3f %10.3f %10.3f %6lld %5.1f%%\n", 2 * l, "", 62 - 2 * l, j->tt.m[i].name,
               j->tt.m[i].kind, same ? cli_commas(j->tt.m[i].params, b, sizeof b) : "-",
               same ? (snprintf(b + 16, 16, "%.3f", (double)j->tt.m[i].macs / 1e9), b + 16) : "-", med, p10, p90,
               (long long)(e->calls / p->repeats), 100 * med / fmed);
    }
    double att = attributed(p, &j->tt), plain = j->has_student ? j->plain_s : j->plain_t;
    const ModuleTree *t = j->has_student ? &j->st : &j->tt;
    printf("\nforward: %.3f ms median (p10 %.3f, p90 %.3f); %s params, %.3f GMACs\n", fmed, f10, f90,
           cli_commas(t->m[0].params, b, sizeof b), (double)t->m[0].macs / 1e9);
    printf("attributed to the top-level modules: %.3f ms; gap %.3f ms (%.2f%%)%s\n", att, fmed - att, 100 * (fmed - att) / fmed,
           !strcmp(j->engine, "cupti") ? " (forward: CUDA events; modules: kernel time)" : "");
    const ProfEntry *busy = prof_find(p, PROF_BUSY);
    if (busy) {
        double bmed, b10, b90;
        prof_stats(busy, p->repeats, &bmed, &b10, &b90);
        printf("kernels busy: %.3f ms (%.1f%% of the forward); a module's time includes the idle gap before each of its"
               " records\n", bmed, 100 * bmed / fmed);
    }
    printf("tracing overhead: untraced %.3f ms, traced %.3f ms: %+.3f ms (%+.2f%%)\n", plain, fmed, fmed - plain,
           100 * (fmed - plain) / plain);
    char nd[96];
    noise_describe(&j->noise, nd, sizeof nd);
    printf("noise: %s during the run%s\n", nd, j->noise.unstable ? ": UNSTABLE, rows marked so" : "");
    if (j->has_student) {
        char *removed = xcalloc((size_t)j->tt.n_modules, 1);
        unet_removed(&j->tt, &j->st, removed);
        double pred = prof_predict(&j->pt, &j->tt, removed), tmed, t10, t90;
        prof_stats(prof_find(&j->pt, PROF_FORWARD), j->pt.repeats, &tmed, &t10, &t90);
        printf("student: measured %.3f ms, predicted %.3f ms (teacher %.3f ms minus the removed modules), error %+.2f%%\n",
               fmed, pred, tmed, 100 * (pred - fmed) / fmed);
        free(removed);
    }
}

/* One profile as `profile --format json` prints it (an element of "profiles");
 * with CSV, its module rows are printed as they are met. */
static cJSON *job_json(const Job *j, Format f) {
    const Prof *p = j->has_student ? &j->ps : &j->pt;
    int n;
    char **samples;
    DbLatency *r = rows_of(p, &j->tt, &n, &samples);
    cJSON *e = cJSON_CreateObject(), *mods = cJSON_CreateArray();
    cJSON_AddStringToObject(e, "model", j->model);
    cJSON_AddBoolToObject(e, "student", j->has_student);
    cJSON_AddStringToObject(e, "engine", j->engine);
    cJSON_AddStringToObject(e, "device", j->device);
    cJSON_AddStringToObject(e, "dtype", dtype_name(j->dt));
    cJSON_AddBoolToObject(e, "graph", j->graph);
    cJSON_AddNumberToObject(e, "batch", j->s.batch);
    cJSON_AddNumberToObject(e, "height", j->s.height * 8);
    cJSON_AddNumberToObject(e, "width", j->s.width * 8);
    cJSON_AddNumberToObject(e, "repeats", j->repeats);
    if (isnan(j->noise.others_load)) cJSON_AddNullToObject(e, "others_load");
    else cJSON_AddNumberToObject(e, "others_load", j->noise.others_load);
    cJSON_AddNumberToObject(e, "spread", j->noise.spread);
    cJSON_AddBoolToObject(e, "unstable", j->noise.unstable);
    const ModuleTree *t = j->has_student ? &j->st : &j->tt;
    cJSON_AddNumberToObject(e, "params", (double)t->m[0].params);
    cJSON_AddNumberToObject(e, "macs", (double)t->m[0].macs);
    double att = attributed(p, &j->tt);
    for (int i = 0; i < n; i++) {
        int mi = unet_tree_find(&j->tt, r[i].module);
        int64_t params = mi >= 0 && !j->has_student ? j->tt.m[mi].params : -1;
        int64_t macs = mi >= 0 && !j->has_student ? j->tt.m[mi].macs : -1;
        if (!strcmp(r[i].module, PROF_FORWARD)) {
            cJSON_AddNumberToObject(e, "forward_ms", r[i].ms);
            cJSON_AddNumberToObject(e, "forward_ms_p10", r[i].ms_p10);
            cJSON_AddNumberToObject(e, "forward_ms_p90", r[i].ms_p90);
            cJSON_AddNumberToObject(e, "attributed_ms", att);
            const ProfEntry *busy = prof_find(p, PROF_BUSY);
            if (busy) {
                double bmed, b10, b90;
                prof_stats(busy, p->repeats, &bmed, &b10, &b90);
                cJSON_AddNumberToObject(e, "kernels_busy_ms", bmed);
            }
            cJSON_AddNumberToObject(e, "gap_ms", r[i].ms - att);
            double plain = j->has_student ? j->plain_s : j->plain_t;
            cJSON_AddNumberToObject(e, "overhead_ms", r[i].ms - plain);
            continue;
        }
        if (!strcmp(r[i].module, PROF_PLAIN)) {
            cJSON_AddNumberToObject(e, "untraced_ms", r[i].ms);
            cJSON_AddNumberToObject(e, "untraced_ms_p10", r[i].ms_p10);
            cJSON_AddNumberToObject(e, "untraced_ms_p90", r[i].ms_p90);
            continue;
        }
        if (f == FORMAT_CSV)
            printf("%s,%d,%s,%s,%lld,%lld,%.6g,%.6g,%.6g,%lld,%.6g,%s,%.4g,%d\n", j->model, j->has_student,
                   r[i].module, r[i].kind, (long long)params, (long long)macs, r[i].ms, r[i].ms_p10,
                   r[i].ms_p90, (long long)r[i].calls, r[i].share, j->engine, j->noise.others_load,
                   j->noise.unstable);
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "name", r[i].module);
        cJSON_AddStringToObject(m, "kind", r[i].kind);
        if (params >= 0) cJSON_AddNumberToObject(m, "params", (double)params);
        if (macs >= 0) cJSON_AddNumberToObject(m, "macs", (double)macs);
        cJSON_AddNumberToObject(m, "ms", r[i].ms);
        cJSON_AddNumberToObject(m, "ms_p10", r[i].ms_p10);
        cJSON_AddNumberToObject(m, "ms_p90", r[i].ms_p90);
        cJSON_AddNumberToObject(m, "calls", (double)r[i].calls);
        cJSON_AddNumberToObject(m, "share", r[i].share);
        cJSON_AddItemToArray(mods, m);
    }
    if (j->has_student) {
        char *removed = xcalloc((size_t)j->tt.n_modules, 1);
        unet_removed(&j->tt, &j->st, removed);
        cJSON_AddNumberToObject(e, "predicted_ms", prof_predict(&j->pt, &j->tt, removed));
        free(removed);
    }
    cJSON_AddItemToObject(e, "modules", mods);
    for (int i = 0; i < n; i++) free(samples[i]);
    free(samples);
    free(r);
    return e;
}

int cmd_profile(int argc, char **argv) {
    const char *model = NULL, *compare = NULL, *plan_path = NULL, *drop = NULL, *dbpath = NULL, *batch = NULL,
               *height = NULL, *width = NULL, *tokens = NULL, *warm_s = "1", *rep_s = "5", *depth_s = "2",
               *seed_s = "0", *fmt = "text", *device = "auto", *dtype_s = NULL, *graph = NULL;
    const Opt opts[] = {{"--model", 1, &model}, {"--compare", 1, &compare}, {"--plan", 1, &plan_path},
                        {"--device", 1, &device}, {"--dtype", 1, &dtype_s}, {"--graph", 0, &graph},
                        {"--drop", 1, &drop}, {"--db", 1, &dbpath}, {"--batch", 1, &batch}, {"--height", 1, &height},
                        {"--width", 1, &width}, {"--tokens", 1, &tokens}, {"--warmup", 1, &warm_s},
                        {"--repeats", 1, &rep_s}, {"--depth", 1, &depth_s}, {"--seed", 1, &seed_s},
                        {"--format", 1, &fmt}, {NULL, 0, NULL}};
    int rc = cli_parse(argc, argv, opts, USAGE);
    if (rc) return rc;
    if (!!model == !!compare) return err_set(ERR_USAGE, "profile: give --model M or --compare M1,M2,... (see unetlab profile --help)");
    if (compare && (plan_path || drop)) return err_set(ERR_USAGE, "profile: --compare takes no --plan");
    long warm, rep, depth, seed;
    Format f;
    if ((rc = cli_int("--warmup", warm_s, 0, 1000, &warm)) || (rc = cli_int("--repeats", rep_s, 1, 10000, &rep)) ||
        (rc = cli_int("--depth", depth_s, 0, 100, &depth)) || (rc = cli_int("--seed", seed_s, 0, 0x7fffffffL, &seed)) ||
        (rc = cli_format(fmt, &f, 1)))
        return rc;
    DType dt;
    int use_cuda;
    if ((rc = cli_device("profile", device, dtype_s, graph != NULL, &use_cuda, &dt))) return rc;
    CliProvenance prov;
    prov_fill(&prov, argc, argv, seed);
    char *list = xstrdup(model ? model : compare), *save = NULL;
    Job jobs[16];
    int nj = 0;
    for (char *tok = strtok_r(list, ",", &save); tok && nj < 16; tok = strtok_r(NULL, ",", &save)) {
        Job *j = &jobs[nj++];
        memset(j, 0, sizeof *j);
        j->model = tok;
        j->warmup = (int)warm;
        j->repeats = (int)rep;
        j->seed = seed;
        j->use_cuda = use_cuda;
        j->graph = graph != NULL;
        j->dt = dt;
        j->engine = cpu_engine_name();
        snprintf(j->device, sizeof j->device, "%s", prov.device);
        plan_init(&j->plan);
        if ((rc = model_resolve(&j->m, tok))) break;
        if ((rc = cli_shape(&j->m.arch, batch, height, width, tokens, &j->s))) break;
        if (plan_path || drop) {
            if ((rc = cli_student(&j->m.arch, plan_path, drop, &j->plan, &j->student))) break;
            j->has_student = 1;
        }
        ModuleTree t;
        unet_tree_build(&t, &j->m.arch, &j->s);
        j->params0 = t.m[0].params;
        unet_tree_free(&t);
        if (!use_cuda && (rc = unet_memory_check("profile", &j->m.arch, &j->s, 0))) break;
        model_source_free(&j->m); /* job_load resolves it again, with the weights */
    }
    if (!rc && save && *save) rc = err_set(ERR_USAGE, "option '--compare': more than 16 models");
    if (!rc && !use_cuda && nj > 1) rc = check_memory(jobs, nj);
    fprintf(stderr, "profile: %s%s, %d warm-up + 2 x %d rounds%s\n", model ? model : compare,
            plan_path || drop ? " and the student" : "", (int)warm, (int)rep,
            nj > 1 && !use_cuda ? ", the models taking turns" : "");
#ifdef UNETLAB_CUDA
    for (int k = 0; k < nj && !rc && use_cuda; k++) { /* each model on its own engine, one after another */
        if (!(rc = job_load(&jobs[k]))) rc = measure_cuda(&jobs[k]);
        job_unload(&jobs[k]);
    }
#endif
    if (!use_cuda) {
        for (int k = 0; k < nj && !rc; k++) rc = job_load(&jobs[k]);
        if (!rc) rc = measure_cpu(jobs, nj);
        for (int k = 0; k < nj; k++) job_unload(&jobs[k]);
    }
    for (int k = 0; k < nj && !rc && dbpath; k++) rc = store(&jobs[k], dbpath, &prov);
    for (int k = 0; k < nj && !rc; k++) {
        char what[256];
        snprintf(what, sizeof what, "the profile of %s%s", jobs[k].model, jobs[k].has_student ? " and its student" : "");
        if (!use_cuda && nj > 1) snprintf(what, sizeof what, "the profile --compare of %s", compare);
        noise_warn(&jobs[k].noise, what);
        if (!use_cuda && nj > 1) break; /* one reading for the whole run */
    }
    if (!rc) {
        if (f == FORMAT_JSON || f == FORMAT_CSV) {
            cJSON *o = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(o, "profiles");
            if (f == FORMAT_CSV)
                printf("model,student,module,kind,params,macs,ms,ms_p10,ms_p90,calls,share,engine,others_load,unstable\n");
            for (int k = 0; k < nj; k++) cJSON_AddItemToArray(arr, job_json(&jobs[k], f));
            if (f == FORMAT_JSON) {
                char *txt = cJSON_Print(o);
                puts(txt);
                free(txt);
            }
            cJSON_Delete(o);
        } else if (compare) {
            char b[32], nd[96];
            printf("%-20s %16s %12s %12s %10s %10s  (untraced forwards; engine %s, %s; batch %d, %s; %s)\n", "model",
                   "params", "GMACs", "ms", "p10", "p90", jobs[0].engine, jobs[0].device, jobs[0].s.batch,
                   dtype_name(jobs[0].dt), use_cuda ? "one after another" : "the models took turns in each repeat");
            double base = 0;
            for (int k = 0; k < nj; k++) {
                double med, p10, p90;
                prof_stats(prof_find(&jobs[k].pt, PROF_PLAIN), jobs[k].repeats, &med, &p10, &p90);
                if (!k) base = med;
                printf("%-20s %16s %12.3f %12.3f %10.3f %10.3f  x%.3f of %s%s\n", jobs[k].model,
                       cli_commas(jobs[k].tt.m[0].params, b, sizeof b), (double)jobs[k].tt.m[0].macs / 1e9, med, p10, p90,
                       med / base, jobs[0].model, jobs[k].noise.unstable ? "  UNSTABLE" : "");
                if (use_cuda || k == nj - 1) {
                    noise_describe(&jobs[k].noise, nd, sizeof nd);
                    printf("%s%s%s\n", use_cuda ? "  noise: " : "noise: ", nd, jobs[k].noise.unstable ? " (unstable)" : "");
                }
            }
        } else {
            print_text(&jobs[0], (int)depth);
        }
    }
    for (int k = 0; k < nj; k++) job_free(&jobs[k]);
    free(list);
    prov_free(&prov);
    return rc;
}

#ifdef UNETLAB_CUDA
int profile_on_engine(const ProfileOnEngine *q) {
    Job j;
    memset(&j, 0, sizeof j);
    j.model = q->model;
    j.m = *q->m; /* borrowed: job_free leaves it */
    j.borrowed = 1;
    j.cuda = q->engine;
    j.engine = cpu_engine_name(); /* measure_cuda names the real one */
    j.s = q->shape;
    j.warmup = q->warmup;
    j.repeats = q->repeats;
    j.seed = q->seed;
    j.use_cuda = 1;
    j.graph = q->graph;
    j.dt = q->dt;
    plan_init(&j.plan);
    snprintf(j.weights_hash, sizeof j.weights_hash, "%s", q->weights_hash);
    int rc = job_prepare(&j, "bench --profile");
    if (!rc) {
        fprintf(stderr, "bench --profile: %s batch %d, %d warm-up + 2 x %d rounds on the loaded engine\n", j.model,
                j.s.batch, j.warmup, j.repeats);
        rc = measure_cuda(&j);
    }
    CliProvenance prov;
    prov_fill(&prov, q->argc, q->argv, q->seed);
    if (!rc && q->dbpath) rc = store(&j, q->dbpath, &prov);
    if (!rc) {
        char what[256];
        snprintf(what, sizeof what, "the profile of %s", j.model);
        noise_warn(&j.noise, what);
        FILE *f = fopen(q->json_path, "w");
        if (!f) rc = err_set(ERR_OUTPUT, "bench --profile-out '%s': %s", q->json_path, strerror(errno));
        else {
            cJSON *o = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(o, "profiles");
            cJSON_AddItemToArray(arr, job_json(&j, FORMAT_JSON));
            char *txt = cJSON_Print(o);
            int bad = fprintf(f, "%s\n", txt) < 0;
            bad |= fclose(f) != 0;
            if (bad) rc = err_set(ERR_OUTPUT, "bench --profile-out '%s': write failed", q->json_path);
            free(txt);
            cJSON_Delete(o);
        }
    }
    job_free(&j);
    prov_free(&prov);
    return rc;
}
#endif
