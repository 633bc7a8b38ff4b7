/* db: the SQLite store. Nothing else in unetlab touches SQLite. WAL mode, a
 * schema with a version number and migrations, prepared statements only, one
 * transaction per batch of rows. Every stored row ties to a run with its
 * provenance. Work items (eval jobs) are claimed atomically, so several
 * processes can share one DB, and a job's results land in the same
 * transaction that marks it done, so a killed run loses nothing and
 * duplicates nothing. db is a leaf: it knows no model types, only rows.
 * Tested by tests/test_db.c (schema, claims from 4 processes, SIGKILL,
 * merge) and by the eval CLI tests. */
#ifndef UNETLAB_DB_H
#define UNETLAB_DB_H
#include <stdint.h>
#include <stdio.h>

#define DB_SCHEMA_VERSION 5

typedef struct Db Db;

/* Opens (creating when absent) the DB at path, migrating an older schema up
 * to DB_SCHEMA_VERSION. ERR_DB naming the path: not a SQLite DB (corrupt),
 * read-only when writing is needed, a newer schema version than this build
 * knows ("schema version 7 is newer than this unetlab's 1"). */
int db_open(Db **db, const char *path);
void db_close(Db *db);
const char *db_path(const Db *db);

/* Provenance of one run of a command. Strings may be NULL (stored as NULL). */
typedef struct {
    const char *command_line;
    const char *git_commit;
    const char *build_flags;
    const char *device;          /* "cpu: <model name>" or the GPU's name */
    const char *driver_version;
    const char *cuda_version;
    const char *cudnn_version;
    const char *cupti_version;
    int64_t seed;
} Provenance;

/* Inserts a run row (started_at = now, UTC ISO-8601, status 'running', host, pid). */
int db_run_begin(Db *db, const Provenance *p, int64_t *run_id);
/* Sets ended_at = now and status ('done', 'failed', 'interrupted'). */
int db_run_end(Db *db, int64_t run_id, const char *status);
/* Marks the run this process is recording (the latest db_run_begin not yet
 * ended) 'interrupted', through a connection of its own: for a signal
 * handler about to exit. Best effort: a run it cannot mark is marked 'died'
 * by the next db_open on this host. */
void db_interrupt(void);

/* Models are keyed by (config_hash, weights_hash); returns the existing id when present. */
int db_model_put(Db *db, const char *spec, const char *config_hash, const char *weights_hash, int64_t params,
                 int64_t *model_id);

typedef struct {
    const char *name;
    const char *kind;
    int64_t params;
    int64_t macs;
} DbModule;
/* Stores the module rows of a model at a given input size label (e.g.
 * "b1_1024x1024_t77"), replacing none that exist (INSERT OR IGNORE). */
int db_modules_put(Db *db, int64_t model_id, const char *size_label, const DbModule *m, int n);

/* Plans are keyed by (model_id, plan_hash); plan_json is the canonical JSON text. */
int db_plan_put(Db *db, int64_t model_id, const char *plan_json, const char *plan_hash, int64_t total_params,
                int64_t *plan_id);

typedef struct {
    const char *name;            /* canonical candidate name */
    const char *kind;            /* transformer_layer, mid_block_reduction, ... */
    int64_t params_removed;
    int64_t macs_removed;
    int64_t plan_id;             /* the student plan this candidate makes */
} DbCandidate;
/* Stores candidates of (model_id, base_plan_id); existing ones are kept. */
int db_candidates_put(Db *db, int64_t model_id, int64_t base_plan_id, const DbCandidate *c, int n);

/* Calibration sets are keyed by content hash; height and width are the image
 * size in pixels (8x the latent's; 0: unknown, stored NULL), filled in where an
 * older row lacks them. */
int db_calib_put(Db *db, const char *hash, int n_samples, const char *source, int height, int width, int64_t *calib_id);

/* An eval job: (model, plan, calib, metric_version, dtype) is unique, dtype
 * the one its forwards run in ("fp32", "bf16"). Creates it 'pending' if
 * absent. *done says whether its results are already stored. */
int db_job_ensure(Db *db, int64_t model_id, int64_t plan_id, int64_t calib_id, int metric_version, const char *dtype,
                  int64_t *job_id, int *done);

/* Atomically claims one job among job_ids[0..n-1] that is 'pending', or
 * 'running' but abandoned (its claimer's run is on this host and its pid is
 * no longer alive, or its lease of lease_s seconds ran out). Sets it
 * 'running' for run_id. *job_id = 0 when none is left to claim. */
int db_job_claim(Db *db, int64_t run_id, const int64_t *job_ids, int n, int lease_s, int64_t *job_id);

typedef struct {
    const char *point;           /* feature point, or "output" */
    int sample;                  /* index in the calibration set */
    double timestep;
    int tbin;                    /* timestep bin: floor(timestep / 100) */
    const char *metric;          /* "mse", "nmse", "cosine" */
    double value;
} DbEvalRow;
/* In one transaction: inserts the rows of job_id and marks it 'done' by run_id.
 * A job already 'done' is left as it is (its rows are not duplicated). */
int db_job_finish(Db *db, int64_t job_id, int64_t run_id, const DbEvalRow *rows, int n);

/* Callback per stored result of a job: one row at a time. */
typedef void (*DbRowFn)(void *ctx, const char *point, int sample, double timestep, const char *metric, double value);
int db_job_rows(Db *db, int64_t job_id, DbRowFn fn, void *ctx);

/* Runs one SQL statement read-only (the connection is opened query_only) and
 * prints its rows as text (aligned), csv, or json (an array of objects). */
int db_query(Db *db, const char *sql, const char *format, FILE *out);

/* Latency of one forward configuration, per module. */
typedef struct {
    int batch, height, width, tokens;   /* height, width: image pixels */
    const char *dtype, *device, *engine; /* engine: "cpu" (wall clock), "cuda-events", "cupti" */
    int warmup, repeats;
    double others_load;                 /* share of its CPUs' time other processes took while it ran (0..1), NaN unknown */
    int unstable;                       /* judged too noisy to trust (profile/noise.h) */
} DbLatencyKey;

typedef struct {
    const char *module, *kind;          /* "(forward)" for the whole forward */
    int64_t calls;
    double ms, ms_p10, ms_p90;          /* median and spread over repeats */
    double share;                       /* of the forward's median */
    const char *samples;                /* JSON array of the per-repeat values */
} DbLatency;

/* Stores n latency rows of one run (model_id, plan_id may be 0) in one transaction. */
int db_latency_put(Db *db, int64_t run_id, int64_t model_id, int64_t plan_id, const DbLatencyKey *k, const DbLatency *r,
                   int n);

/* One GPU activity of a traced forward (engine "cupti"): a kernel, memcpy or
 * memset, in the order of its start within its repeat. */
typedef struct {
    int repeat;                         /* which timed repeat, from 0 */
    int seq;                            /* its place in the repeat, by start, from 0 */
    const char *kind;                   /* "kernel", "memcpy" or "memset" */
    const char *name;                   /* kernel name as the driver reports it (mangled); "memcpy HtoD" etc. */
    const char *module;                 /* the module that launched it; NULL: outside any module */
    int grid[3], block[3];              /* kernels only (stored NULL for the others) */
    int registers;                      /* per thread; kernels only */
    int smem_static, smem_dynamic;      /* bytes per block; kernels only */
    int64_t bytes;                      /* memcpy and memset only */
    int64_t stream;                     /* CUPTI stream id */
    int64_t start_ns;                   /* from the first start of its repeat */
    int64_t duration_ns;
    int64_t graph_node;                 /* CUPTI graph node id; 0: not launched by a graph (stored NULL) */
} DbKernel;

/* Stores n kernel rows of one run (model_id, plan_id may be 0) under the
 * forward configuration k (its warmup and repeats are not stored here), in
 * one transaction: all of them or, on any error, none. */
int db_kernels_put(Db *db, int64_t run_id, int64_t model_id, int64_t plan_id, const DbLatencyKey *k,
                   const DbKernel *rows, int n);

/* A removal schedule: keyed by (model, calibration set, key), where key hashes
 * the options that decide its stages, so the same command continues it. */
int db_schedule_put(Db *db, int64_t model_id, int64_t calib_id, const char *key, const char *options,
                    int64_t *schedule_id);

/* The teacher's per-module latency a schedule scores with, stored once (the
 * first json given wins) so a resumed schedule uses the same numbers;
 * *stored gets the stored text (caller frees) or NULL. json NULL only reads. */
int db_schedule_latency(Db *db, int64_t schedule_id, const char *json, char **stored);
/* Replaces it (a re-measured profile, when the stored one was unstable). */
int db_schedule_latency_set(Db *db, int64_t schedule_id, const char *json);

typedef struct {
    int stage;                   /* 1, 2, ... */
    int64_t plan_id;             /* the student after this stage */
    const char *chosen;          /* the candidate(s) removed, joined by ' ' */
    int64_t params, macs;
    double loss, ms;             /* ms NaN where no latency was used */
} DbStage;

typedef struct {
    const char *candidate, *kind;
    double loss, increase;       /* the candidate student's loss, and its increase over the stage's start */
    int64_t params_saved;
    double ms_saved, score;
    int chosen;
} DbStageScore;

/* Stores a finished stage and every candidate's score in one transaction; a
 * stage already stored (by another process) is left as it is. */
int db_stage_put(Db *db, int64_t schedule_id, const DbStage *s, const DbStageScore *c, int n);
typedef void (*DbStageFn)(void *ctx, int stage, const char *plan_json, const char *chosen, int64_t params, int64_t macs,
                          double loss, double ms);
/* The stored stages of a schedule, in order. */
int db_stages(Db *db, int64_t schedule_id, DbStageFn fn, void *ctx);

/* Merges the rows of inputs[0..n-1] into out (created if absent): models,
 * plans, candidates, calibration sets, runs and done jobs with their results,
 * and the latency and kernel rows of runs new to out, re-keyed by their
 * natural keys so that N shards merged equal one run. */
int db_merge(const char *out, const char *const *inputs, int n);

/* ---- reads for reports (`unetlab report`) ------------------------------
 * Each walks its rows in the stated order and calls fn once per row; strings
 * are valid only during the call; a NULL REAL comes back as NaN. ERR_DB
 * naming the path on any SQLite failure. */

/* db_open for a file that must exist: ERR_DB "'path': cannot read: ..." when
 * it does not (db_open would create it). */
int db_open_existing(Db **db, const char *path);

typedef struct {
    int64_t id;
    const char *command_line, *git_commit, *build_flags, *device, *driver_version, *host, *started_at, *ended_at,
        *status;
} DbRun;
typedef void (*DbRunFn)(void *ctx, const DbRun *r);
/* Every run, by id. */
int db_runs(Db *db, DbRunFn fn, void *ctx);

typedef struct {
    int64_t id;
    const char *spec;
    int64_t params, run_id;
    const char *created_at;
} DbModelRow;
typedef void (*DbModelFn)(void *ctx, const DbModelRow *m);
/* Every model, by id. */
int db_models(Db *db, DbModelFn fn, void *ctx);

typedef void (*DbSizeFn)(void *ctx, const char *size_label, int64_t params, int64_t macs);
/* The root module's (name '') params and MACs of a model at each stored size label. */
int db_model_sizes(Db *db, int64_t model_id, DbSizeFn fn, void *ctx);

typedef struct {
    int64_t id, run_id, model_id, plan_id; /* plan_id 0: the model itself */
    int64_t plan_params, model_params;     /* plans.total_params (0 when no plan), models.params */
    const char *spec;
    int batch, height, width, tokens;      /* height, width: image pixels */
    const char *dtype, *device, *engine;
    double ms, ms_p10, ms_p90;             /* the traced forward (module '(forward)') */
    double untraced_ms, untraced_p10, untraced_p90; /* the same forwards untraced ('(untraced)'); NaN when not stored */
    double others_load;                    /* NaN when not measured (stores older than schema 3) */
    int unstable;
    int repeats;
    const char *created_at;
} DbForward;
typedef void (*DbForwardFn)(void *ctx, const DbForward *f);
/* Every '(forward)' latency row, oldest first (created_at, id). */
int db_forwards(Db *db, DbForwardFn fn, void *ctx);

typedef void (*DbLatencyRowFn)(void *ctx, const char *module, const char *kind, double ms, double ms_p10, double ms_p90,
                               int64_t calls);
/* The latency rows of one run, model and plan (plan_id 0: plan_id NULL), in stored order. */
int db_latency_rows(Db *db, int64_t run_id, int64_t model_id, int64_t plan_id, DbLatencyRowFn fn, void *ctx);

typedef struct {
    int64_t id, model_id, calib_id, run_id;
    const char *spec;
    int64_t model_params;
    const char *options, *latency;  /* latency: the teacher profile JSON it scores with, or NULL */
    const char *created_at;
    int n_stages;
    const char *last_at;            /* its last stage's created_at (or its own) */
} DbSchedule;
typedef void (*DbScheduleFn)(void *ctx, const DbSchedule *s);
/* Every schedule, least recently extended first (so the last one is the latest). */
int db_schedules(Db *db, DbScheduleFn fn, void *ctx);

typedef struct {
    int stage;
    int64_t plan_id;
    const char *chosen;
    int64_t params, macs;
    double loss, ms;
    int64_t run_id;
    const char *created_at;
} DbStageRow;
typedef void (*DbStageRowFn)(void *ctx, const DbStageRow *s);
/* The stages of a schedule, in order. */
int db_schedule_stages(Db *db, int64_t schedule_id, DbStageRowFn fn, void *ctx);

typedef struct {
    int stage;
    const char *candidate, *kind;
    double loss, increase;
    int64_t params_saved;
    double ms_saved, score;
    int chosen;
    int has_params_saved;
} DbScoreRow;
typedef void (*DbScoreRowFn)(void *ctx, const DbScoreRow *s);
/* Every candidate score of a schedule, by stage, then score (lowest first, NULL last), then name. */
int db_schedule_scores(Db *db, int64_t schedule_id, DbScoreRowFn fn, void *ctx);

/* The plan with this removal-set hash (plans.plan_hash) whose eval finished
 * last (one with a done eval job first); *found 0 when no plan has it. */
int db_plan_find(Db *db, const char *plan_hash, int64_t *plan_id, int *found);

typedef struct {
    int64_t job_id;                 /* 0: the plan has no done eval job */
    int64_t run_id, calib_id;
    int n_samples;
    char calib_source[512], calib_hash[32], finished_at[40], spec[512];
    char *plan_json;                /* caller frees */
} DbEvalJob;
typedef void (*DbPointFn)(void *ctx, const char *point, double mean, int n);
/* The latest done eval job of plan_id (*job; job_id 0 when none) and, per
 * feature point, the mean of metric over its samples (NULLs skipped). */
int db_plan_point_means(Db *db, int64_t plan_id, const char *metric, DbEvalJob *job, DbPointFn fn, void *ctx);

typedef struct {
    int64_t job_id, model_id, plan_id, calib_id;
    const char *spec, *plan_json, *calib_source;
    int n_samples;
    const char *dtype, *calib_hash, *plan_hash, *config_hash, *weights_hash;
    int height, width;              /* the calibration set's image size; 0 when not stored */
} DbDoneJob;
typedef void (*DbDoneJobFn)(void *ctx, const DbDoneJob *j);
/* Every done eval job of metric_version, ordered by model, calibration set, dtype and plan. */
int db_done_jobs(Db *db, int metric_version, DbDoneJobFn fn, void *ctx);

/* One row of `unetlab agree` (schema 5's agree_results; the schema says what
 * each kind fills). Strings may be NULL, doubles NaN and ints -1: stored NULL. */
typedef struct {
    const char *model, *kind, *metric, *setting_a, *setting_b;
    int samples, of_samples, bin, students, bootstrap, stage;
    double kendall_tau, tau_lo, tau_hi, spearman_rho, rho_lo, rho_hi, top5, top10, top20;
    const char *candidate;
    double measured, predicted;
} DbAgreeRow;
/* Stores rows of run_id in one transaction: all of them or none. */
int db_agree_put(Db *db, int64_t run_id, const DbAgreeRow *rows, int n);
typedef void (*DbAgreeFn)(void *ctx, const DbAgreeRow *r);
/* The rows of the latest run that stored any (*run_id; 0 and no call when
 * none), in stored order. */
int db_agree_rows(Db *db, int64_t *run_id, DbAgreeFn fn, void *ctx);

#endif
