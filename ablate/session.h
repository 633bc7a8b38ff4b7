/* session: what `eval` and `schedule` share. A session holds the teacher
 * (config, weights), the calibration set, the teacher-feature cache (one
 * FeatureSet per calibration batch, computed at first use), and the store
 * (run row with provenance, model, calibration set). session_score brings a
 * set of students to 'scored': results already in the DB are read, the rest
 * are claimed, computed and stored one student per transaction, so killed
 * runs resume and concurrent processes share the work. Tested through
 * tests/test_eval.c and tests/test_schedule.c. */
#ifndef UNETLAB_SESSION_H
#define UNETLAB_SESSION_H
#include "db.h"
#include "eval.h"
#include "plan.h"
#include "weights.h"

typedef struct {
    const char *model;         /* --model as given */
    const char *calib;         /* a file, or NULL for synthetic */
    int synthetic, latent, tokens;
    long seed;
    const char *db;
    int batch_size, lease_s, reuse;
    const Provenance *prov;
    const char *dtype;         /* the forwards' dtype, as cli_cpu_engine set it: "fp32" or "bf16"; part of each job's key */
} SessionOptions;

typedef struct {
    SessionOptions o;
    ModelSource m;
    Weights w;
    UnetInputs in;
    int n_samples;
    Shape shape;               /* the calibration size, batch 1 */
    ModuleTree tree;           /* the teacher at that shape */
    Db *db;
    int64_t run_id, model_id, calib_id;
    char weights_hash[17];
    FeatureSet *cache;
    int nbatch;
    int computed, units, units_live;
} Session;

typedef struct {
    char *name;
    const char *kind;
    Plan plan;
    Arch arch;
    int64_t params, macs;      /* at the calibration size, batch 1 */
    int64_t plan_id, job_id;
    int done;
    EvalSummary sum;           /* valid after session_score */
} Student;

int session_open(Session *s, const SessionOptions *o);
/* Ends the run row ('done' or 'failed' by rc) and frees everything. */
void session_close(Session *s, int rc);
/* A student of plan p (copied): applies it, counts params and MACs. ERR_PLAN if invalid. */
int student_init(Session *s, Student *st, const char *name, const char *kind, const Plan *p);
void student_free(Student *st);
/* Scores students[0..n-1]: every one ends with its summary. `what` labels progress lines. */
int session_score(Session *s, Student *st, int n, const char *what);

#endif
