/* cli: what the commands share: option parsing, number formatting, output
 * formats. Each command lives in its own cli/<command>.c; cli/main.c holds
 * the command table. Tested by tests/cli.sh (the built binary, end to end). */
#ifndef UNETLAB_CLI_H
#define UNETLAB_CLI_H
#include "db.h"
#include "device.h"
#include "dtype.h"
#include "plan.h"
#include "unet.h"
#include "weights.h"
#include <stdint.h>

typedef enum { FORMAT_TEXT, FORMAT_JSON, FORMAT_CSV } Format;

/* One option a command takes: "--model" with a value, or a flag (no value). */
typedef struct {
    const char *name;
    int takes_value;
    const char **value;  /* set to the value, or to "1" for a flag */
} Opt;

/* Parses argv[1..] (argv[0] is the command name) against opts (NULL-name
 * terminated). --help prints usage and returns -1 (exit 0). ERR_USAGE on an
 * unknown option or a missing value. Accepts --name value and --name=value. */
int cli_parse(int argc, char **argv, const Opt *opts, const char *usage);
int cli_int(const char *flag, const char *s, long lo, long hi, long *out);
int cli_format(const char *s, Format *f, int allow_csv);
/* --dtype fp16|bf16|fp32; ERR_USAGE naming the value otherwise. */
int cli_dtype(const char *s, DType *dt);
/* --device auto|cpu|cuda, --dtype and --graph (graph: 1 when given) of command
 * cmd: *use_cuda 1 for the GPU. auto takes the GPU when this build has CUDA and
 * a device answers, else the CPU with one line on stderr saying why; cuda
 * without a usable GPU is ERR_RUNTIME naming why; --graph on the CPU and a bad
 * --dtype or --device are ERR_USAGE. */
int cli_device(const char *cmd, const char *device, const char *dtype, int graph, int *use_cuda, DType *dt);
/* --device and --dtype of the CPU-only commands (eval, schedule): cpu (the
 * fast engine, fp32, or bf16 where the CPU has it: *dt says which runs) or
 * ref (the reference engine, fp32); selects it for this process. dtype NULL:
 * fp32. */
int cli_cpu_engine(const char *cmd, const char *device, const char *dtype, DType *dt);
/* 1234567 -> "1,234,567" into buf. */
const char *cli_commas(int64_t v, char *buf, int size);

/* Size flags -> Shape (latent = pixels / 8); defaults batch 1, sample_size x 8, 77 tokens. */
int cli_shape(const Arch *a, const char *batch, const char *height, const char *width, const char *tokens, Shape *s);
/* The student of --plan P and/or --drop NAMES (a plan of transformer-layer
 * removals) on the teacher Arch; both NULL gives the teacher. *plan gets the
 * removal set (caller frees). */
int cli_student(const Arch *teacher, const char *plan_path, const char *drop, Plan *plan, Arch *student);
/* Provenance of this process's run, for the store. */
typedef struct {
    Provenance p;
    char *cmdline;
    char device[256], gpu[320];
    DeviceVersions v;
} CliProvenance;
void prov_fill(CliProvenance *p, int argc, char **argv, long seed);
void prov_free(CliProvenance *p);
#ifdef UNETLAB_CUDA
/* bench --profile: the profile of a model already loaded on its CUDA engine
 * (cli/profile.c), so one process takes every measurement of one upload:
 * the rows `profile --format json` prints, written to json_path, and stored
 * in dbpath when it is not NULL (the store's provenance from argc/argv). */
struct CudaEngine;
typedef struct {
    struct CudaEngine *engine;
    const char *model;
    const ModelSource *m;     /* resolved; only read */
    const char *weights_hash; /* of the weights the engine holds */
    Shape shape;
    int warmup, repeats, graph;
    DType dt;
    long seed;
    const char *dbpath, *json_path;
    int argc;
    char **argv;
} ProfileOnEngine;
int profile_on_engine(const ProfileOnEngine *q);
#endif
/* "git describe, build flags" of this binary. */
const char *prov_build(void);

int cmd_inspect(int argc, char **argv);
int cmd_forward(int argc, char **argv);
int cmd_candidates(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_db(int argc, char **argv);
int cmd_schedule(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_profile(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_agree(int argc, char **argv);
int cmd_bench(int argc, char **argv);

#endif
