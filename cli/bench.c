/* unetlab bench: how long one forward takes, end to end. On a GPU: R forwards
 * after W warm-ups timed with CUDA events (eager launches, or one CUDA graph
 * replayed with --graph), peak device memory, and the effective TFLOP/s from
 * the exact MAC count. On the CPU (no GPU, or --device cpu): wall clock,
 * labelled so. Benchmarks are recorded in docs/perf.md, never asserted. */
#include "backend.h"
#include "cli.h"
#include "dtype.h"
#include "err.h"
#include "eval.h"
#include "forward.h"
#include "noise.h"
#include "numfmt.h"
#include "prof.h"
#include "weights.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef UNETLAB_CUDA
#include "backend_cuda.h"
#include <cuda_runtime_api.h>
#include "cuda_check.h"
#endif

static const char USAGE[] =
    "usage: unetlab bench --model M [--plan P] [--drop NAME,...] [--batch B[,B...] --height H --width W --tokens L]\n"
    "                     [--inputs FILE]\n"
    "                     [--dtype fp16|bf16|fp32] [--warmup W --repeats R] [--graph | --mode graph,eager]\n"
    "                     [--device auto|cuda|cpu|ref] [--seed S] [--format text|json|csv]\n"
    "                     [--profile B --profile-out FILE [--profile-repeats R] [--db DB]]\n"
    "\n"
    "Times R forwards (default 20) after W warm-ups (default 5) on seeded inputs of the\n"
    "given size (default: the config's sample_size x 8 pixels, batch 1, 77 tokens) and\n"
    "prints the median, p10 and p90, the effective TFLOP/s (2 x the exact MAC count of\n"
    "the forward / median) and, on a GPU, peak device memory. On a GPU (--device cuda,\n"
    "or auto when one answers) each forward is timed with CUDA events in the chosen\n"
    "--dtype (default fp16; fp32 runs without TF32); --graph captures one forward into\n"
    "a CUDA graph and times its replays. Without a GPU (or --device cpu) the fast CPU\n"
    "engine is timed with the wall clock, labelled engine 'cpu', in fp32 (default) or\n"
    "bf16 (where the CPU has AVX512-BF16 or AMX); --device ref times the plain-loop\n"
    "reference engine instead (engine 'cpu-ref', fp32). --batch 1,2 measures each\n"
    "batch size in turn on one upload of the weights; each size's result is printed\n"
    "(and flushed) as soon as it is measured, so a failure at a later size keeps the\n"
    "earlier ones (the command still ends with the failure's exit code). --format json\n"
    "prints an array with one object per batch size, written one object at a time and\n"
    "closed even when a later size fails. --inputs FILE times the forward on that inputs file\n"
    "(as `unetlab forward` reads it) instead of seeded inputs; its shapes set the size.\n"
    "One process, one upload, every measurement of the model (GPU): --mode graph,eager\n"
    "times each mode in turn (each at every --batch size; --graph is --mode graph), and\n"
    "--profile B then profiles batch B with CUPTI on the same engine, last, since CUPTI\n"
    "once initialised may slow what runs after it (3 warm-ups, --profile-repeats R rounds,\n"
    "default 10; replayed as a CUDA graph when the first mode is graph), writing what\n"
    "`unetlab profile --format json` prints to --profile-out FILE and storing it in\n"
    "--db DB when given.\n"
    "Noise: the share of the CPUs' time other processes took while the forwards ran\n"
    "(/proc/stat) and the spread p90/p10 are printed with each result (JSON: others_load,\n"
    "spread, unstable); above 10% of the CPUs or a spread of 1.5 the result is marked\n"
    "unstable and one warning line says how to get a clean one.\n";

typedef struct {
    const char *engine;       /* "cuda-events" or "cpu" */
    char device[512];
    char attention[256];      /* GPU: the attention path of each shape ("" on the CPU) */
    double med, p10, p90;
    double *ms;
    int repeats;
    int have_mem;
    double mem_weights, mem_arena_peak, mem_arena, mem_workspace, mem_device_used; /* bytes */
    Noise noise;              /* of the timed forwards */
} BenchResult;

static int bench_cpu(const Arch *a, const Weights *w, const UnetInputs *in, int warmup, BenchResult *r) {
    Backend ref, *be = cpu_backend(w, &ref);
    snprintf(r->device, sizeof r->device, "%s", cpu_engine_describe());
    r->engine = cpu_engine_name();
    int tty = isatty(2); /* a progress line redrawn in place on a terminal; none in a log */
    NoiseProbe probe;
    for (int i = 0; i < warmup + r->repeats; i++) {
        if (i == warmup) noise_start(&probe);
        double t0 = prof_now();
        int rc = unet_forward_be(be, a, in, NULL, NULL, NULL, NULL, NULL, NULL);
        if (rc) return rc;
        if (i >= warmup) r->ms[i - warmup] = prof_now() - t0;
        if (tty) fprintf(stderr, "\rbench: forward %d of %d (%s)", i + 1, warmup + r->repeats, i < warmup ? "warm-up" : "timed");
    }
    r->noise = noise_stop(&probe, r->ms, r->repeats);
    if (tty) fprintf(stderr, "\n");
    return 0;
}

#ifdef UNETLAB_CUDA
static int bench_cuda(CudaEngine *e, const Arch *a, const UnetInputs *in, int warmup, int graph, BenchResult *r) {
    int rc = 0;
    Backend *be = cuda_engine_backend(e);
    cudaStream_t s = cuda_engine_stream(e);
    snprintf(r->device, sizeof r->device, "%s", cuda_engine_describe(e));
    r->engine = "cuda-events";
    cuda_engine_trim(e); /* this size's memory only: the arena caches blocks by exact size */
    cuda_engine_reset_peak(e);
    if (graph && warmup < 1) warmup = 1; /* caches fill in an eager forward: capture must not plan */
    for (int i = 0; i < warmup && !rc; i++) rc = unet_forward_be(be, a, in, NULL, NULL, NULL, NULL, NULL, NULL);
    cudaGraph_t g = NULL;
    cudaGraphExec_t ge = NULL;
    if (!rc && graph) { /* warm-ups filled every cache: capture plans nothing and allocates nothing */
        CUDA_CHECK(cudaStreamSynchronize(s));
        CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed));
        rc = unet_forward_be(be, a, in, NULL, NULL, NULL, NULL, NULL, NULL);
        CUDA_CHECK(cudaStreamEndCapture(s, &g));
        if (!rc) {
            CUDA_CHECK(cudaGraphInstantiate(&ge, g, 0));
            CUDA_CHECK(cudaGraphLaunch(ge, s)); /* the first replay uploads the graph */
        }
    }
    cudaEvent_t ev[2];
    CUDA_CHECK(cudaEventCreate(&ev[0]));
    CUDA_CHECK(cudaEventCreate(&ev[1]));
    CUDA_CHECK(cudaStreamSynchronize(s));
    NoiseProbe probe;
    noise_start(&probe);
    for (int i = 0; i < r->repeats && !rc; i++) {
        CUDA_CHECK(cudaEventRecord(ev[0], s));
        if (ge) CUDA_CHECK(cudaGraphLaunch(ge, s));
        else rc = unet_forward_be(be, a, in, NULL, NULL, NULL, NULL, NULL, NULL);
        CUDA_CHECK(cudaEventRecord(ev[1], s));
        CUDA_CHECK(cudaEventSynchronize(ev[1]));
        float ms = 0;
        CUDA_CHECK(cudaEventElapsedTime(&ms, ev[0], ev[1]));
        r->ms[i] = ms;
    }
    r->noise = noise_stop(&probe, r->ms, r->repeats);
    CudaMemStats m;
    cuda_engine_mem(e, &m);
    r->have_mem = 1;
    r->mem_weights = (double)m.weights;
    r->mem_arena_peak = (double)m.arena_peak;
    r->mem_arena = (double)m.arena;
    r->mem_workspace = (double)m.workspace;
    r->mem_device_used = (double)m.device_used;
    snprintf(r->attention, sizeof r->attention, "%s", cuda_engine_attention(e));
    CUDA_CHECK(cudaEventDestroy(ev[0]));
    CUDA_CHECK(cudaEventDestroy(ev[1]));
    if (ge) CUDA_CHECK(cudaGraphExecDestroy(ge));
    if (g) CUDA_CHECK(cudaGraphDestroy(g));
    return rc;
}
#endif

/* --format json: the array is open (its first object printed, the "]" not yet).
 * A failure that exits the process on the spot (out of memory, a CUDA error)
 * still closes it, so the sizes measured before the failure stay one valid
 * JSON document; only a kill leaves it open. */
static int json_open;
static void json_close(void) {
    if (json_open) printf("\n]\n");
    json_open = 0;
}

/* "1,2,4" -> batches; ERR_USAGE naming the bad one. */
static int parse_batches(const char *list, int *b, int max, int *n) {
    *n = 0;
    if (!list) { b[(*n)++] = 1; return 0; }
    char *copy = xstrdup(list), *save = NULL;
    int rc = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok && !rc; tok = strtok_r(NULL, ",", &save)) {
        long v;
        if (*n == max) rc = err_set(ERR_USAGE, "option '--batch': more than %d sizes", max);
        else if (!(rc = cli_int("--batch", tok, 1, 1 << 16, &v))) b[(*n)++] = (int)v;
    }
    free(copy);
    if (!rc && !*n) rc = err_set(ERR_USAGE, "option '--batch': no size given");
    return rc;
}

enum { MODE_EAGER, MODE_GRAPH };

/* --mode "graph,eager" (each once, in the order given) or --graph -> modes. */
static int parse_modes(const char *list, int graph, int *modes, int *n) {
    *n = 1;
    modes[0] = graph ? MODE_GRAPH : MODE_EAGER;
    if (!list) return 0;
    if (graph) return err_set(ERR_USAGE, "bench: --graph is --mode graph: give one of them");
    *n = 0;
    char *copy = xstrdup(list), *save = NULL;
    int rc = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok && !rc; tok = strtok_r(NULL, ",", &save)) {
        int mo = !strcmp(tok, "graph") ? MODE_GRAPH : !strcmp(tok, "eager") ? MODE_EAGER : -1;
        if (mo < 0) rc = err_set(ERR_USAGE, "option '--mode': '%s' is not graph or eager", tok);
        else if (*n == 2 || (*n == 1 && modes[0] == mo)) rc = err_set(ERR_USAGE, "option '--mode': '%s' given twice", tok);
        else modes[(*n)++] = mo;
    }
    free(copy);
    if (!rc && !*n) rc = err_set(ERR_USAGE, "option '--mode': no mode given");
    return rc;
}

#ifdef UNETLAB_CUDA
/* --profile: the CUPTI profile of the loaded model on the bench's engine. */
static int bench_profile(CudaEngine *e, const char *model, const ModelSource *m, const Weights *w, Shape s, int batch,
                         int repeats, int graph, DType dt, long seed, const char *dbpath, const char *out, int argc,
                         char **argv) {
    char h[17];
    weights_hash(w, h);
    s.batch = batch;
    fflush(stdout);
    ProfileOnEngine q = {e, model, m, h, s, 3, repeats, graph, dt, seed, dbpath, out, argc, argv};
    return profile_on_engine(&q);
}
#endif

int cmd_bench(int argc, char **argv) {
    const char *model = NULL, *plan_path = NULL, *drop = NULL, *batch = NULL, *height = NULL, *width = NULL,
               *tokens = NULL, *dtype_s = NULL, *warmup_s = "5", *repeats_s = "20", *graph = NULL,
               *device = "auto", *seed_s = "0", *fmt_s = "text", *inputs = NULL, *modes_s = NULL, *prof_b = NULL,
               *prof_out = NULL, *prof_rep = "10", *dbpath = NULL;
    const Opt opts[] = {{"--model", 1, &model},   {"--plan", 1, &plan_path},   {"--drop", 1, &drop},
                        {"--batch", 1, &batch},   {"--height", 1, &height},    {"--width", 1, &width},
                        {"--tokens", 1, &tokens}, {"--dtype", 1, &dtype_s},    {"--warmup", 1, &warmup_s},
                        {"--repeats", 1, &repeats_s}, {"--graph", 0, &graph},  {"--device", 1, &device},
                        {"--seed", 1, &seed_s},   {"--format", 1, &fmt_s},     {"--inputs", 1, &inputs},
                        {"--mode", 1, &modes_s},  {"--profile", 1, &prof_b},   {"--profile-out", 1, &prof_out},
                        {"--profile-repeats", 1, &prof_rep},                   {"--db", 1, &dbpath},
                        {NULL, 0, NULL}};
    int rc = cli_parse(argc, argv, opts, USAGE);
    if (rc) return rc;
    if (!model) return err_set(ERR_USAGE, "bench: --model is required (see unetlab bench --help)");
    if (inputs && (batch || height || width || tokens))
        return err_set(ERR_USAGE, "bench: --inputs sets the size: give it without --batch, --height, --width, --tokens");
    long warmup, repeats, seed, prof_batch = 0, prof_repeats;
    Format fmt;
    DType dt;
    int use_cuda, batches[16], nb, modes[2], nm;
    if ((rc = cli_int("--warmup", warmup_s, 0, 100000, &warmup)) || (rc = cli_int("--repeats", repeats_s, 1, 100000, &repeats)) ||
        (rc = cli_int("--seed", seed_s, 0, 0x7fffffffL, &seed)) || (rc = cli_format(fmt_s, &fmt, 1)) ||
        (rc = parse_batches(batch, batches, 16, &nb)) || (rc = parse_modes(modes_s, graph != NULL, modes, &nm)) ||
        (prof_b && (rc = cli_int("--profile", prof_b, 1, 1 << 16, &prof_batch))) ||
        (rc = cli_int("--profile-repeats", prof_rep, 1, 10000, &prof_repeats)))
        return rc;
    if (!prof_b != !prof_out) return err_set(ERR_USAGE, "bench: --profile B and --profile-out FILE go together");
    if (dbpath && !prof_b) return err_set(ERR_USAGE, "bench: --db stores the profile of --profile B; give both");
    if (prof_b && inputs) return err_set(ERR_USAGE, "bench: --profile runs on seeded inputs: give it without --inputs");
    int any_graph = modes[0] == MODE_GRAPH || (nm > 1 && modes[1] == MODE_GRAPH);
    if ((rc = cli_device("bench", device, dtype_s, any_graph, &use_cuda, &dt))) return rc;
    if (!use_cuda && (modes_s || prof_b))
        return err_set(ERR_USAGE, "bench: --mode and --profile need a GPU (--device cuda); this run is on the CPU"
                                  " (unetlab profile times modules on the CPU)");
    if (prof_out) { /* before minutes of loading: the file can be written */
        FILE *pf = fopen(prof_out, "w");
        if (!pf) return err_set(ERR_OUTPUT, "bench: --profile-out '%s': %s", prof_out, strerror(errno));
        fclose(pf);
    }

    ModelSource m;
    Weights w = {0};
    ModuleTree tt = {0};
    Plan plan;
    Arch student;
    Shape s;
    UnetInputs file_in = {0};
    int printed = 0; /* JSON: objects written so far; the array opens with the first */
    static int at_exit;
#ifdef UNETLAB_CUDA
    CudaEngine *e = NULL;
#endif
    if ((rc = model_resolve(&m, model))) goto done;
    rc = cli_student(&m.arch, plan_path, drop, &plan, &student);
    plan_free(&plan);
    if (rc) goto done;
    if (inputs) { /* its shapes set the size; one batch */
        if ((rc = unet_inputs_load(inputs, &m.arch, &file_in))) goto done;
        s = (Shape){(int)file_in.sample.shape[0], (int)file_in.sample.shape[2], (int)file_in.sample.shape[3],
                    (int)file_in.encoder_hidden_states.shape[1]};
        batches[0] = s.batch;
        nb = 1;
    } else if ((rc = cli_shape(&m.arch, NULL, height, width, tokens, &s))) goto done;
    unet_tree_build(&tt, &m.arch, &s);
    if (!use_cuda) { /* before a minute of allocating what cannot fit: the largest batch asked */
        Shape big = s;
        for (int i = 0; i < nb; i++) big.batch = batches[i] > big.batch ? batches[i] : big.batch;
        if ((rc = unet_memory_check("bench", &m.arch, &big, 0))) goto done;
    }
    fprintf(stderr, "bench: loading %s (%s weights)\n", model, m.dir ? "checkpoint" : "seeded random");
    if ((rc = weights_load(&w, &m, &tt, (uint64_t)seed))) goto done;
    w.engine_owns = 1; /* only forwards read them */
#ifdef UNETLAB_CUDA
    if (use_cuda && (rc = cuda_engine_new(&e, &w, &tt, dt))) goto done;
#endif
    if (fmt == FORMAT_CSV)
        printf("model,student,params,macs,batch,height,width,dtype,mode,engine,repeats,ms_median,ms_p10,ms_p90,tflops,"
               "weights_bytes,activations_peak_bytes,workspace_bytes,device_used_bytes,others_load,spread,unstable\n");
    for (int run = 0; run < nm * nb && !rc; run++) {
        int bi = run % nb, mode_graph = modes[run / nb] == MODE_GRAPH;
        s.batch = batches[bi];
        UnetInputs in = file_in;
        if (!inputs) calib_synthetic(&m.arch, s.batch, s.height, s.width, s.tokens, (uint64_t)seed, &in);
        if ((rc = unet_check_inputs(&m.arch, &in))) { err_wrap(rc, "bench: "); if (!inputs) unet_inputs_free(&in); break; }
        BenchResult r = {.repeats = (int)repeats};
        r.ms = xcalloc((size_t)repeats, sizeof(double));
#ifdef UNETLAB_CUDA
        if (use_cuda) rc = bench_cuda(e, &student, &in, (int)warmup, mode_graph, &r);
        else
#endif
            rc = bench_cpu(&student, &w, &in, (int)warmup, &r);
        if (!inputs) unet_inputs_free(&in);
        if (rc) { free(r.ms); break; }
        prof_stats(&(ProfEntry){.ms = r.ms}, r.repeats, &r.med, &r.p10, &r.p90);
        char what[256];
        snprintf(what, sizeof what, "the bench of %s at batch %d", model, s.batch);
        noise_warn(&r.noise, what);
        ModuleTree st;
        unet_tree_build(&st, &student, &s);
        int64_t macs = st.m[0].macs, params = st.m[0].params;
        unet_tree_free(&st);
        double tflops = 2.0 * (double)macs / (r.med * 1e-3) / 1e12;
        const char *dts = dtype_name(dt);
        const char *mode = use_cuda ? (mode_graph ? "graph" : "eager") : "cpu";
        char pb[32], mb[32];
        if (fmt == FORMAT_JSON) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "model", model);
            cJSON_AddBoolToObject(o, "student", plan_path || drop);
            cJSON_AddNumberToObject(o, "params", (double)params);
            cJSON_AddNumberToObject(o, "macs", (double)macs);
            cJSON_AddNumberToObject(o, "batch", s.batch);
            cJSON_AddNumberToObject(o, "height", s.height * 8);
            cJSON_AddNumberToObject(o, "width", s.width * 8);
            cJSON_AddNumberToObject(o, "tokens", s.tokens);
            cJSON_AddStringToObject(o, "dtype", dts);
            cJSON_AddStringToObject(o, "mode", mode);
            cJSON_AddStringToObject(o, "engine", r.engine);
            cJSON_AddStringToObject(o, "device", r.device);
            if (r.attention[0]) cJSON_AddStringToObject(o, "attention", r.attention);
            cJSON_AddNumberToObject(o, "warmup", (double)warmup);
            cJSON_AddNumberToObject(o, "repeats", r.repeats);
            cJSON_AddNumberToObject(o, "ms_median", r.med);
            cJSON_AddNumberToObject(o, "ms_p10", r.p10);
            cJSON_AddNumberToObject(o, "ms_p90", r.p90);
            cJSON_AddItemToObject(o, "ms_samples", cJSON_CreateDoubleArray(r.ms, r.repeats));
            cJSON_AddNumberToObject(o, "tflops", tflops);
            if (isnan(r.noise.others_load)) cJSON_AddNullToObject(o, "others_load");
            else cJSON_AddNumberToObject(o, "others_load", r.noise.others_load);
            cJSON_AddNumberToObject(o, "spread", r.noise.spread);
            cJSON_AddBoolToObject(o, "unstable", r.noise.unstable);
            if (r.have_mem) {
                cJSON *mm = cJSON_AddObjectToObject(o, "memory_bytes");
                cJSON_AddNumberToObject(mm, "weights", r.mem_weights);
                cJSON_AddNumberToObject(mm, "activations_peak", r.mem_arena_peak);
                cJSON_AddNumberToObject(mm, "activations_held", r.mem_arena);
                cJSON_AddNumberToObject(mm, "workspace", r.mem_workspace);
                cJSON_AddNumberToObject(mm, "device_used", r.mem_device_used);
            }
            char *txt = cJSON_Print(o); /* now, not after the last size: a later failure keeps this one */
            if (!printed && !at_exit) at_exit = !atexit(json_close);
            printf("%s%s", printed++ ? ",\n" : "[\n", txt);
            json_open = 1;
            free(txt);
            cJSON_Delete(o);
        } else if (fmt == FORMAT_CSV) {
            printf("%s,%d,%lld,%lld,%d,%d,%d,%s,%s,%s,%d,%.4f,%.4f,%.4f,%.4g,", model, plan_path || drop,
                   (long long)params, (long long)macs, s.batch, s.height * 8, s.width * 8, dts, mode, r.engine,
                   r.repeats, r.med, r.p10, r.p90, tflops);
            if (r.have_mem) printf("%.0f,%.0f,%.0f,%.0f,", r.mem_weights, r.mem_arena_peak, r.mem_workspace, r.mem_device_used);
            else printf(",,,,");
            printf("%.4g,%.4g,%d\n", r.noise.others_load, r.noise.spread, r.noise.unstable);
        } else {
            printf("%s%s: %s params, %s MACs per forward; batch %d, %dx%d, %s, %s\n", model,
                   plan_path || drop ? " (student)" : "", num_commas(params, pb, sizeof pb),
                   num_commas(macs, mb, sizeof mb), s.batch, s.height * 8, s.width * 8, dts, mode);
            printf("device: %s (engine %s)\n", r.device, r.engine);
            if (r.attention[0]) printf("%s\n", r.attention);
            printf("forward: median %.3f ms, p10 %.3f, p90 %.3f over %d repeats after %ld warm-ups; %.4g TFLOP/s\n",
                   r.med, r.p10, r.p90, r.repeats, warmup, tflops);
            char nd[96];
            noise_describe(&r.noise, nd, sizeof nd);
            printf("noise: %s while timed%s\n", nd, r.noise.unstable ? ": UNSTABLE" : "");
            if (r.have_mem)
                printf("memory: weights %.2f GiB + activations peak %.2f GiB (arena holds %.2f) + workspace %.2f GiB;"
                       " device in use %.2f GiB (cudaMemGetInfo, context included)\n",
                       r.mem_weights / 1073741824.0, r.mem_arena_peak / 1073741824.0, r.mem_arena / 1073741824.0,
                       r.mem_workspace / 1073741824.0, r.mem_device_used / 1073741824.0);
            if (run + 1 < nm * nb) printf("\n");
        }
        fflush(stdout);
        free(r.ms);
    }
#ifdef UNETLAB_CUDA
    if (!rc && prof_b) /* last: CUPTI, once initialised, may slow every launch after it */
        rc = bench_profile(e, model, &m, &w, s, (int)prof_batch, (int)prof_repeats, modes[0] == MODE_GRAPH, dt, seed,
                           dbpath, prof_out, argc, argv);
#endif
    json_close(); /* closed on a failure too: the sizes measured before it */
done:
#ifdef UNETLAB_CUDA
    cuda_engine_free(e);
#endif
    unet_inputs_free(&file_in);
    weights_free(&w);
    unet_tree_free(&tt);
    model_source_free(&m);
    return rc;
}
