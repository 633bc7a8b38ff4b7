/* merge: `unetlab db merge`, shards joined by natural keys, all or nothing.
 * Tested by tests/test_db.c and tests/test_eval.c (N merged shards equal one run). */
#include "db_int.h"
#include "numfmt.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- db_merge -------------------------------------------------------------
 * ATTACH cannot run inside a transaction, so each input is first copied, as
 * it is (in a read transaction: one snapshot), into TEMP staging tables tagged
 * with its index; then one transaction re-keys everything into out by natural
 * keys. A merge is therefore all or nothing, and merging again adds nothing. */

static const char MERGE_STAGING[] =
    "CREATE TEMP TABLE in_runs AS SELECT 0 AS src, * FROM main.runs WHERE 0;"
    "CREATE TEMP TABLE in_models AS SELECT 0 AS src, * FROM main.models WHERE 0;"
    "CREATE TEMP TABLE in_modules AS SELECT 0 AS src, * FROM main.modules WHERE 0;"
    "CREATE TEMP TABLE in_plans AS SELECT 0 AS src, * FROM main.plans WHERE 0;"
    "CREATE TEMP TABLE in_candidates AS SELECT 0 AS src, * FROM main.candidates WHERE 0;"
    "CREATE TEMP TABLE in_calib AS SELECT 0 AS src, * FROM main.calib_sets WHERE 0;"
    "CREATE TEMP TABLE in_jobs AS SELECT 0 AS src, * FROM main.eval_jobs WHERE 0;"
    "CREATE TEMP TABLE in_results AS SELECT 0 AS src, * FROM main.eval_results WHERE 0;"
    "CREATE TEMP TABLE in_latency AS SELECT 0 AS src, * FROM main.latency WHERE 0;"
    "CREATE TEMP TABLE in_kernels AS SELECT 0 AS src, * FROM main.kernels WHERE 0;"
    "CREATE INDEX temp.in_results_job ON in_results(src, job_id);"
    /* (src, old id) -> id in out; fresh: the run is new to out, so its
     * latency and kernel rows are copied too (once, from one input).
     * Schedules are not merged: a schedule runs its stages in one DB. */
    "CREATE TEMP TABLE map_runs(src INTEGER, old INTEGER, uid TEXT, fresh INTEGER, new INTEGER,"
    " PRIMARY KEY (src, old));"
    "CREATE TEMP TABLE map_models(src INTEGER, old INTEGER, new INTEGER, PRIMARY KEY (src, old));"
    "CREATE TEMP TABLE map_plans(src INTEGER, old INTEGER, new INTEGER, PRIMARY KEY (src, old));"
    "CREATE TEMP TABLE map_calib(src INTEGER, old INTEGER, new INTEGER, PRIMARY KEY (src, old));"
    "CREATE TEMP TABLE map_jobs(src INTEGER, old INTEGER, new INTEGER, PRIMARY KEY (src, old));";

/* Per input, ?1 = its index. Same schema version, so `*` lines up. */
static const char *const MERGE_STAGE[] = {
    "INSERT INTO temp.in_runs SELECT ?1, * FROM src.runs",
    "INSERT INTO temp.in_models SELECT ?1, * FROM src.models",
    "INSERT INTO temp.in_modules SELECT ?1, * FROM src.modules",
    "INSERT INTO temp.in_plans SELECT ?1, * FROM src.plans",
    "INSERT INTO temp.in_candidates SELECT ?1, * FROM src.candidates",
    "INSERT INTO temp.in_calib SELECT ?1, * FROM src.calib_sets",
    "INSERT INTO temp.in_jobs SELECT ?1, * FROM src.eval_jobs WHERE status = 'done'",
    "INSERT INTO temp.in_results SELECT ?1, r.* FROM src.eval_results r JOIN src.eval_jobs j ON j.id = r.job_id"
    " WHERE j.status = 'done'",
    "INSERT INTO temp.in_latency SELECT ?1, * FROM src.latency",
    "INSERT INTO temp.in_kernels SELECT ?1, * FROM src.kernels",
};

/* In out's transaction, in dependency order. `WHERE true` before ON CONFLICT:
 * SQLite's parser needs it after a SELECT with joins. */
static const char *const MERGE_STEPS[] = {
    "INSERT INTO map_runs(src, old, uid, fresh) SELECT r.src, r.id, r.uid,"
    " NOT EXISTS (SELECT 1 FROM main.runs m WHERE m.uid = r.uid)"
    " AND r.src = (SELECT min(x.src) FROM in_runs x WHERE x.uid = r.uid) FROM in_runs r",
    "INSERT INTO main.runs(uid, command_line, git_commit, build_flags, device, driver_version, cuda_version,"
    " cudnn_version, cupti_version, seed, host, pid, started_at, ended_at, status)"
    " SELECT r.uid, r.command_line, r.git_commit, r.build_flags, r.device, r.driver_version, r.cuda_version,"
    " r.cudnn_version, r.cupti_version, r.seed, r.host, r.pid, r.started_at, r.ended_at, r.status"
    " FROM in_runs r JOIN map_runs m ON m.src = r.src AND m.old = r.id WHERE m.fresh ORDER BY r.src, r.id",
    "UPDATE map_runs SET new = (SELECT id FROM main.runs m WHERE m.uid = map_runs.uid)",

    "INSERT INTO main.models(spec, config_hash, weights_hash, params, run_id, created_at)"
    " SELECT x.spec, x.config_hash, x.weights_hash, x.params, mr.new, x.created_at FROM in_models x"
    " LEFT JOIN map_runs mr ON mr.src = x.src AND mr.old = x.run_id WHERE true ORDER BY x.src, x.id"
    " ON CONFLICT(config_hash, weights_hash) DO NOTHING",
    "INSERT INTO map_models(src, old, new) SELECT x.src, x.id, m.id FROM in_models x"
    " JOIN main.models m ON m.config_hash = x.config_hash AND m.weights_hash = x.weights_hash",
    "INSERT INTO main.modules(model_id, size_label, name, kind, params, macs)"
    " SELECT mm.new, x.size_label, x.name, x.kind, x.params, x.macs FROM in_modules x"
    " JOIN map_models mm ON mm.src = x.src AND mm.old = x.model_id WHERE true ORDER BY x.src ON CONFLICT DO NOTHING",

    "INSERT INTO main.plans(model_id, plan_hash, plan_json, total_params, run_id, created_at)"
    " SELECT mm.new, x.plan_hash, x.plan_json, x.total_params, mr.new, x.created_at FROM in_plans x"
    " JOIN map_models mm ON mm.src = x.src AND mm.old = x.model_id"
    " LEFT JOIN map_runs mr ON mr.src = x.src AND mr.old = x.run_id WHERE true ORDER BY x.src, x.id"
    " ON CONFLICT(model_id, plan_hash) DO NOTHING",
    "INSERT INTO map_plans(src, old, new) SELECT x.src, x.id, p.id FROM in_plans x"
    " JOIN map_models mm ON mm.src = x.src AND mm.old = x.model_id"
    " JOIN main.plans p ON p.model_id = mm.new AND p.plan_hash = x.plan_hash",
    "INSERT INTO main.candidates(model_id, base_plan_id, name, kind, params_removed, macs_removed, plan_id)"
    " SELECT mm.new, bp.new, x.name, x.kind, x.params_removed, x.macs_removed, pp.new FROM in_candidates x"
    " JOIN map_models mm ON mm.src = x.src AND mm.old = x.model_id"
    " JOIN map_plans bp ON bp.src = x.src AND bp.old = x.base_plan_id"
    " JOIN map_plans pp ON pp.src = x.src AND pp.old = x.plan_id WHERE true ORDER BY x.src ON CONFLICT DO NOTHING",

    "INSERT INTO main.calib_sets(hash, n_samples, source, run_id, created_at, height, width)"
    " SELECT x.hash, x.n_samples, x.source, mr.new, x.created_at, x.height, x.width FROM in_calib x"
    " LEFT JOIN map_runs mr ON mr.src = x.src AND mr.old = x.run_id WHERE true ORDER BY x.src, x.id"
    " ON CONFLICT(hash) DO NOTHING",
    "INSERT INTO map_calib(src, old, new) SELECT x.src, x.id, c.id FROM in_calib x"
    " JOIN main.calib_sets c ON c.hash = x.hash",

    /* Done jobs: created pending when out lacks them, then filled from one
     * input each (the first that has it), unless out has it done already. */
    "INSERT INTO main.eval_jobs(model_id, plan_id, calib_id, metric_version, dtype)"
    " SELECT mm.new, mp.new, mc.new, x.metric_version, x.dtype FROM in_jobs x"
    " JOIN map_models mm ON mm.src = x.src AND mm.old = x.model_id"
    " JOIN map_plans mp ON mp.src = x.src AND mp.old = x.plan_id"
    " JOIN map_calib mc ON mc.src = x.src AND mc.old = x.calib_id WHERE true ORDER BY x.src, x.id"
    " ON CONFLICT(model_id, plan_id, calib_id, metric_version, dtype) DO NOTHING",
    /* A bare column beside min() takes the min row's value (SQLite documents this). */
    "INSERT INTO map_jobs(src, old, new) SELECT min(x.src), x.id, j.id FROM in_jobs x"
    " JOIN map_models mm ON mm.src = x.src AND mm.old = x.model_id"
    " JOIN map_plans mp ON mp.src = x.src AND mp.old = x.plan_id"
    " JOIN map_calib mc ON mc.src = x.src AND mc.old = x.calib_id"
    " JOIN main.eval_jobs j ON j.model_id = mm.new AND j.plan_id = mp.new AND j.calib_id = mc.new"
    " AND j.metric_version = x.metric_version AND j.dtype = x.dtype WHERE j.status <> 'done' GROUP BY j.id",
    "INSERT INTO main.eval_results(job_id, point, sample, timestep, tbin, metric, value)"
    " SELECT mj.new, r.point, r.sample, r.timestep, r.tbin, r.metric, r.value FROM map_jobs mj"
    " JOIN in_results r ON r.src = mj.src AND r.job_id = mj.old",
    "UPDATE main.eval_jobs AS j SET status = 'done', run_id = x.run_new, claimed_at = x.claimed_at,"
    " lease_until = NULL, finished_at = x.finished_at"
    " FROM (SELECT mj.new AS id, mr.new AS run_new, s.claimed_at, s.finished_at FROM map_jobs mj"
    " JOIN in_jobs s ON s.src = mj.src AND s.id = mj.old"
    " LEFT JOIN map_runs mr ON mr.src = s.src AND mr.old = s.run_id) AS x WHERE j.id = x.id",

    "INSERT INTO main.latency(run_id, model_id, plan_id, module, kind, batch, height, width, tokens, dtype, device,"
    " engine, warmup, repeats, calls, ms, ms_p10, ms_p90, share, samples, others_load, unstable, created_at)"
    " SELECT mr.new, mm.new, mp.new, x.module, x.kind, x.batch, x.height, x.width, x.tokens, x.dtype, x.device,"
    " x.engine, x.warmup, x.repeats, x.calls, x.ms, x.ms_p10, x.ms_p90, x.share, x.samples, x.others_load,"
    " x.unstable, x.created_at"
    " FROM in_latency x JOIN map_runs mr ON mr.src = x.src AND mr.old = x.run_id AND mr.fresh"
    " LEFT JOIN map_models mm ON mm.src = x.src AND mm.old = x.model_id"
    " LEFT JOIN map_plans mp ON mp.src = x.src AND mp.old = x.plan_id ORDER BY x.src, x.id",
    "INSERT INTO main.kernels(run_id, model_id, plan_id, batch, height, width, tokens, dtype, device, engine, repeat,"
    " seq, kind, name, module, grid_x, grid_y, grid_z, block_x, block_y, block_z, registers, smem_static,"
    " smem_dynamic, bytes, stream, start_ns, duration_ns, graph_node, created_at)"
    " SELECT mr.new, mm.new, mp.new, x.batch, x.height, x.width, x.tokens, x.dtype, x.device, x.engine, x.repeat,"
    " x.seq, x.kind, x.name, x.module, x.grid_x, x.grid_y, x.grid_z, x.block_x, x.block_y, x.block_z, x.registers,"
    " x.smem_static, x.smem_dynamic, x.bytes, x.stream, x.start_ns, x.duration_ns, x.graph_node, x.created_at"
    " FROM in_kernels x JOIN map_runs mr ON mr.src = x.src AND mr.old = x.run_id AND mr.fresh"
    " LEFT JOIN map_models mm ON mm.src = x.src AND mm.old = x.model_id"
    " LEFT JOIN map_plans mp ON mp.src = x.src AND mp.old = x.plan_id ORDER BY x.src, x.id",
};

/* Copies input i (attached as src) into the staging tables. Messages name
 * the input: `in` is the out connection under the input's name. */
static int merge_stage(Db *in, int i) {
    int64_t v = 0;
    int rc = 0;
    if (EXEC(in, "BEGIN")) return ERR_DB;
    rc = db_schema_version(in, "src", &v);
    if (!rc && !v) rc = err_set(ERR_DB, "'%s': not a unetlab DB (no schema version)", in->path);
    if (!rc && v > DB_SCHEMA_VERSION)
        rc = err_set(ERR_DB, "'%s': schema version %" PRId64 " is newer than this unetlab's %d", in->path, v,
                     DB_SCHEMA_VERSION);
    else if (!rc && v < DB_SCHEMA_VERSION)
        rc = err_set(ERR_DB, "'%s': schema version %" PRId64 " is older than this unetlab's %d; open it once with"
                     " this unetlab to migrate it, then merge", in->path, v, DB_SCHEMA_VERSION);
    for (size_t k = 0; !rc && k < sizeof MERGE_STAGE / sizeof *MERGE_STAGE; k++) rc = run1(in, MERGE_STAGE[k], i);
    if (rc || EXEC(in, "COMMIT")) {
        rollback(in);
        return ERR_DB;
    }
    return 0;
}

int db_merge(const char *out, const char *const *inputs, int n) {
    Db *db;
    int rc = db_open(&db, out);
    if (rc) return rc;
    struct stat so, si;
    int have_out = stat(out, &so) == 0;
    if (EXEC(db, MERGE_STAGING)) rc = ERR_DB;
    for (int i = 0; !rc && i < n; i++) {
        /* ATTACH would create a missing file; say so instead. */
        if (stat(inputs[i], &si)) {
            rc = err_set(ERR_DB, "'%s': cannot read: %s", inputs[i], strerror(errno));
            break;
        }
        if (!S_ISREG(si.st_mode)) {
            rc = err_set(ERR_DB, "'%s': not a regular file", inputs[i]);
            break;
        }
        if (have_out && si.st_dev == so.st_dev && si.st_ino == so.st_ino) {
            rc = err_set(ERR_DB, "'%s': is the merge output itself", inputs[i]);
            break;
        }
        Db in = *db;
        in.path = inputs[i];
        sqlite3_stmt *st = NULL;
        rc = PREP(&in, &st, "ATTACH DATABASE ?1 AS src") || bind_text(&in, st, 1, inputs[i]) || STEP(&in, st) < 0;
        fin(st);
        if (rc) {
            rc = ERR_DB;
            break;
        }
        rc = merge_stage(&in, i);
        if (!rc && EXEC(&in, "DETACH DATABASE src")) rc = ERR_DB;
    }
    if (!rc && EXEC(db, "BEGIN IMMEDIATE")) rc = ERR_DB;
    for (size_t k = 0; !rc && k < sizeof MERGE_STEPS / sizeof *MERGE_STEPS; k++) rc = run1(db, MERGE_STEPS[k], 0);
    if (!rc && EXEC(db, "COMMIT")) rc = ERR_DB;
    if (rc) rollback(db);
    db_close(db);
    return rc;
}
