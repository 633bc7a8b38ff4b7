/* unetlab: the command table. Every command returns an exit code (README.md,
 * "Exit codes"); errors print one line "unetlab: error: ..." on stderr. */
#include "backend.h"
#include "cli.h"
#include "db.h"
#include "device.h"
#include "err.h"
#include "numfmt.h"
#include "singlefile.h"
#include "weights.h"
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef UNETLAB_VERSION
#define UNETLAB_VERSION "0.1.0"
#endif

typedef struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
    int forwards; /* runs forwards: OpenMP's waiting matters (bounded_spin) */
} Command;

#define UNETLAB_SPINCOUNT "10000"

static const Command COMMANDS[] = {
    {"inspect", cmd_inspect, "module tree with exact parameter counts and MACs", 0},
    {"bench", cmd_bench, "forward latency (median, p10, p90), peak memory and TFLOP/s; CUDA events on a GPU", 1},
    {"forward", cmd_forward, "CPU forward of a teacher or a student; output and per-layer features", 1},
    {"candidates", cmd_candidates, "removable units of a model or a student, with what each removes", 0},
    {"eval", cmd_eval, "layer-level losses of students vs the teacher, stored in SQLite", 1},
    {"profile", cmd_profile, "per-module latency of a model or student, measured here, parts checked against the whole", 1},
    {"schedule", cmd_schedule, "progressive removal to a parameter target, stage by stage, resumable", 1},
    {"export", cmd_export, "a student as a diffusers checkpoint (config, weights, removal manifest)", 0},
    {"db", cmd_db, "db query SQL / db merge A.db B.db -o OUT.db: the SQLite store", 0},
    {"plan", cmd_plan, "plan show P: the diffusers config of the student a plan defines", 0},
    {"report", cmd_report, "plots (gnuplot), tables (Markdown, LaTeX, CSV) and index.html from the store", 0},
    {"agree", cmd_agree, "rank agreement of the students scored under different calibration sets, and as samples are added", 0},
};

/* OpenMP threads that wait for work spin before they sleep: libgomp spins
 * 300,000 times by default, which on a machine shared with other jobs takes
 * the CPUs from them and from our own descheduled threads (a 2-core machine
 * with two busy neighbours made the mini fixture's forward 2-8x slower, with
 * p90 up to 8x the median). Passive waiting costs 2x on a quiet machine (a
 * forward opens hundreds of short parallel regions), so the spin is bounded
 * instead: 10,000 spins, as fast as the default when quiet, steady when
 * loaded (docs/perf.md, issue 12). A user's OMP_WAIT_POLICY or
 * GOMP_SPINCOUNT wins. libgomp reads its environment once, in its
 * constructor, before main runs (and before libc itself has an environment
 * that setenv could change), so the commands that run forwards re-execute
 * themselves once with the variable set (about 0.1 s, the cost of loading
 * the libraries again). Without /proc they run with libgomp's default. */
static void bounded_spin(char **argv) {
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT") || setenv("GOMP_SPINCOUNT", UNETLAB_SPINCOUNT, 1)) return;
    execv("/proc/self/exe", argv);
    unsetenv("GOMP_SPINCOUNT");
}

/* Options every command takes, removed from argv before the command parses
 * its own: --allow-nonfinite-weights (load a checkpoint with NaN or infinite
 * weights, to study it); --config FILE (the diffusers config.json of a
 * single-file checkpoint given as --model). Returns the new argc. */
static int global_options(int argc, char **argv) {
    int k = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--allow-nonfinite-weights")) { weights_allow_nonfinite(1); continue; }
        if (!strcmp(argv[i], "--config") && i + 1 < argc) { sf_config_set(argv[++i]); continue; }
        if (!strncmp(argv[i], "--config=", 9)) { sf_config_set(argv[i] + 9); continue; }
        argv[k++] = argv[i];
    }
    argv[k] = NULL;
    return k;
}

/* SIGINT and SIGTERM: the run being recorded is marked 'interrupted' (what is
 * stored is whole: every write is a transaction), one line says how to go on,
 * and the exit status is 128 + the signal (130, 143), as a shell reports it. */
static void on_signal(int sig) {
    const char *m = sig == SIGINT ? "\nunetlab: interrupted (SIGINT): what is stored is kept; rerun the same command to continue\n"
                                  : "\nunetlab: terminated (SIGTERM): what is stored is kept; rerun the same command to continue\n";
    ssize_t w = write(2, m, strlen(m));
    (void)w;
    db_interrupt();
    _exit(128 + sig);
}

static void usage(FILE *f) {
    fprintf(f, "usage: unetlab <command> [options]   (unetlab <command> --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof *COMMANDS; i++)
        fprintf(f, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(f, "  %-10s %s\n", "version", "version and build configuration");
    fprintf(f, "\nglobal options: --allow-nonfinite-weights  load checkpoints with NaN or infinite weights (an\n"
               "                error otherwise, naming the tensor)\n"
               "                --config FILE  the diffusers config.json of a single-file --model (default:\n"
               "                NAME.config.json beside NAME.safetensors, else inferred from its tensors)\n");
    fprintf(f, "\nexit codes: 0 ok, 1 runtime failure, 2 usage, 3 bad model (config/weights),\n"
               "            4 bad input tensors, 5 output not writable, 6 database, 7 plan,\n"
               "            8 report drawn without pictures (gnuplot missing), 9 timing too noisy to use,\n"
               "            10 schedule target not reachable, 130/143 interrupted by SIGINT/SIGTERM (the run\n"
               "            is marked interrupted; rerun the same command to continue)\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        if (argc < 2) fprintf(stderr, "unetlab: error: no command given\n");
        return argc < 2 ? ERR_USAGE : 0;
    }
    if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
        printf("unetlab %s (%s; %s)\n", UNETLAB_VERSION, prov_build(),
#ifdef UNETLAB_CUDA
               "CUDA-enabled build"
#else
               "CPU-only build"
#endif
        );
        return 0;
    }
    char **orig = xmalloc((size_t)(argc + 1) * sizeof *orig); /* as given, for bounded_spin's re-execution */
    memcpy(orig, argv, (size_t)(argc + 1) * sizeof *orig);
    argc = global_options(argc, argv);
    if (argc < 2) {
        free(orig);
        usage(stderr);
        fprintf(stderr, "unetlab: error: no command given\n");
        return ERR_USAGE;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof *COMMANDS; i++) {
        if (strcmp(argv[1], COMMANDS[i].name)) continue;
        if (COMMANDS[i].forwards) bounded_spin(orig);
        free(orig);
        struct sigaction sa = {0};
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        int rc = COMMANDS[i].fn(argc - 1, argv + 1);
        if (rc < 0) return 0; /* --help */
        if (rc) fprintf(stderr, "unetlab: error: %s\n", err_msg());
        return rc;
    }
    free(orig);
    fprintf(stderr, "unetlab: error: unknown command '%s' (see unetlab --help)\n", argv[1]);
    return ERR_USAGE;
}

int cli_parse(int argc, char **argv, const Opt *opts, const char *usage_text) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage_text, stdout);
            return -1;
        }
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        const Opt *o = NULL;
        for (int k = 0; opts[k].name; k++)
            if (strlen(opts[k].name) == len && !strncmp(opts[k].name, a, len)) o = &opts[k];
        if (!o) return err_set(ERR_USAGE, "%s: unknown option '%.*s' (see unetlab %s --help)", argv[0], (int)len, a, argv[0]);
        if (!o->takes_value) {
            if (eq) return err_set(ERR_USAGE, "%s: option '%s' takes no value", argv[0], o->name);
            *o->value = "1";
        } else if (eq) {
            *o->value = eq + 1;
        } else {
            if (i + 1 >= argc) return err_set(ERR_USAGE, "%s: option '%s' needs a value", argv[0], o->name);
            *o->value = argv[++i];
        }
    }
    return 0;
}

int cli_int(const char *flag, const char *s, long lo, long hi, long *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi)
        return err_set(ERR_USAGE, "option '%s': '%s' is not an integer in [%ld, %ld]", flag, s, lo, hi);
    *out = v;
    return 0;
}

int cli_format(const char *s, Format *f, int allow_csv) {
    if (!strcmp(s, "text")) *f = FORMAT_TEXT;
    else if (!strcmp(s, "json")) *f = FORMAT_JSON;
    else if (allow_csv && !strcmp(s, "csv")) *f = FORMAT_CSV;
    else return err_set(ERR_USAGE, "option '--format': '%s' is not one of text, json%s", s, allow_csv ? ", csv" : "");
    return 0;
}

int cli_dtype(const char *s, DType *dt) {
    if (dtype_parse(s, dt)) return err_set(ERR_USAGE, "option '--dtype': '%s' is not one of fp16, bf16, fp32", s);
    return 0;
}

static int pick_device(const char *cmd, const char *s, int *use_cuda);

/* --device and --dtype together: the GPU runs fp16 (default), bf16 or fp32;
 * the CPU's fast engine fp32 (default) or bf16 where the CPU has it in
 * hardware; the reference engine (--device ref) fp32 only. Selects the CPU
 * engine that unet_forward_from runs in this process. */
int cli_device(const char *cmd, const char *s, const char *dtype, int graph, int *use_cuda, DType *dt) {
    *use_cuda = 0;
    int rc = 0, ref = !strcmp(s, "ref");
    if (dtype && (rc = cli_dtype(dtype, dt))) return rc;
    if ((rc = pick_device(cmd, ref ? "cpu" : s, use_cuda))) return rc;
    if (graph && !*use_cuda) return err_set(ERR_USAGE, "%s: --graph needs a GPU (CUDA graphs); this run is on the CPU", cmd);
    if (*use_cuda) {
        if (!dtype) *dt = DTYPE_F16;
        return 0;
    }
    if (!dtype) *dt = DTYPE_F32;
    if (*dt == DTYPE_F16)
        return err_set(ERR_USAGE, "%s: --dtype fp16 runs on a GPU only; the CPU runs fp32, or bf16 where it has AVX512-BF16 or AMX", cmd);
    if (ref && *dt != DTYPE_F32)
        return err_set(ERR_USAGE, "%s: --device ref is the float32 reference engine; --dtype %s needs the fast engine (--device cpu)", cmd, dtype_name(*dt));
    if (!ref && !cpu_fast_built())
        fprintf(stderr, "unetlab: built without oneDNN: the CPU runs the reference engine, in fp32\n");
    else if (*dt == DTYPE_BF16 && !cpu_bf16_native()) {
        fprintf(stderr, "unetlab: this CPU has neither AVX512-BF16 nor AMX: running fp32, not bf16\n");
        *dt = DTYPE_F32;
    }
    if (!cpu_fast_built()) *dt = DTYPE_F32;
    cpu_engine_set(ref ? CPU_REF : CPU_FAST, *dt);
    return 0;
}

int cli_cpu_engine(const char *cmd, const char *s, const char *dtype, DType *dt) {
    if (strcmp(s, "cpu") && strcmp(s, "ref"))
        return err_set(ERR_USAGE, "option '--device': '%s' is not one of cpu, ref (%s runs on the CPU)", s, cmd);
    int use_cuda;
    return cli_device(cmd, s, dtype ? dtype : "fp32", 0, &use_cuda, dt); /* the CPU */
}

static int pick_device(const char *cmd, const char *s, int *use_cuda) {
    *use_cuda = 0;
    if (strcmp(s, "auto") && strcmp(s, "cpu") && strcmp(s, "cuda"))
        return err_set(ERR_USAGE, "option '--device': '%s' is not one of auto, cpu, ref, cuda", s);
    if (!strcmp(s, "cpu")) return 0;
    char desc[256];
    if (!device_cuda_built()) {
        if (!strcmp(s, "cuda")) return err_set(ERR_RUNTIME, "%s: --device cuda: this unetlab was built without CUDA", cmd);
        return 0;
    }
    if (device_probe(desc, sizeof desc) == 0) {
        if (!strcmp(s, "cuda")) return err_set(ERR_RUNTIME, "%s: --device cuda: %s", cmd, desc);
        fprintf(stderr, "unetlab: %s; running on the CPU\n", desc);
        return 0;
    }
    *use_cuda = 1;
    return 0;
}

const char *cli_commas(int64_t v, char *buf, int size) { return num_commas(v, buf, (size_t)size); }

int cli_student(const Arch *teacher, const char *plan_path, const char *drop, Plan *plan, Arch *student) {
    int rc = 0;
    plan_init(plan);
    if (plan_path && (rc = plan_load(plan, plan_path))) return rc;
    if (drop) plan_add_csv(plan, drop);
    return plan_apply(teacher, plan, student);
}
