/* test_hostile: the hostile-input cases of issue 13 that need crafted tensor
 * files, made here from the fixtures with the library's own reader and writer,
 * then given to the built binary ($UNETLAB): a scalar timestep (eval divided by
 * zero), non-finite inputs and weights (an input error, a model error naming
 * the tensor, --allow-nonfinite-weights), timesteps outside the binned range
 * (said, not silently clamped), a tensor in two shards (refused, naming both),
 * and a student whose features go non-finite (stored as infinities, flagged,
 * ranked last: never NULL or 0). */
#include "test.h"
#include "testcli.h"
#include "testst.h"
#include "db.h"
#include "err.h"
#include "eval.h"
#include "safetensors.h"
#include "weights.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <sys/stat.h>

#define FX "tests/fixtures/mini-ssd"


static StOut *find(Tensors *t, const char *name) {
    for (int i = 0; i < t->n; i++)
        if (!strcmp(t->t[i].name, name)) return &t->t[i];
    return NULL;
}

/* The fixture's inputs with input.timestep replaced by ts[0..n-1] (n 0: a scalar ts[0]). */
static const char *inputs_with_timesteps(const char *name, const float *ts, int n) {
    Tensors in = load_all(FX "/io.safetensors");
    StOut *t = find(&in, "input.timestep");
    float *d = malloc(sizeof(float) * (size_t)(n ? n : 1));
    memcpy(d, ts, sizeof(float) * (size_t)(n ? n : 1));
    free((float *)t->data);
    t->data = d;
    t->ndim = n ? 1 : 0;
    t->shape[0] = n;
    Tensors keep = {0}; /* the inputs only (the fixture also holds the expected features) */
    keep.t = calloc((size_t)in.n, sizeof *keep.t);
    for (int i = 0; i < in.n; i++)
        if (!strncmp(in.t[i].name, "input.", 6)) keep.t[keep.n++] = in.t[i];
    const char *path = fmt("%s/%s", T, name);
    CHECK(st_write(path, keep.t, keep.n) == 0);
    free(keep.t);
    free_all(&in);
    return path;
}

/* A copy of the fixture model in DIR, its weights as one file or two shards, tensor
 * `nan_in` (if any) with one NaN, and `twice` (if any) also in the second shard. */
static void model_copy(const char *dir, const char *nan_in, int shards, const char *twice) {
    mkdir(dir, 0755);
    CHECK(run(fmt("cp " FX "/config.json %s/", dir), NULL) == 0);
    Tensors w = load_all(FX "/diffusion_pytorch_model.safetensors");
    if (nan_in) ((float *)find(&w, nan_in)->data)[0] = NAN;
    if (shards == 1) {
        CHECK(st_write(fmt("%s/diffusion_pytorch_model.safetensors", dir), w.t, w.n) == 0);
    } else {
        int half = w.n / 2;
        cJSON *idx = cJSON_CreateObject(), *map = cJSON_AddObjectToObject(idx, "weight_map");
        for (int i = 0; i < w.n; i++) cJSON_AddStringToObject(map, w.t[i].name, i < half ? "a.safetensors" : "b.safetensors");
        CHECK(st_write(fmt("%s/a.safetensors", dir), w.t, half) == 0);
        StOut *b = calloc((size_t)(w.n - half + 1), sizeof *b);
        int nb = 0;
        for (int i = half; i < w.n; i++) b[nb++] = w.t[i];
        if (twice) b[nb++] = *find(&w, twice);
        CHECK(st_write(fmt("%s/b.safetensors", dir), b, nb) == 0);
        free(b);
        char *txt = cJSON_Print(idx);
        FILE *f = fopen(fmt("%s/diffusion_pytorch_model.safetensors.index.json", dir), "w");
        fputs(txt, f);
        fclose(f);
        free(txt);
        cJSON_Delete(idx);
    }
    free_all(&w);
}

/* Runs cmd (stderr to T/err); exit code; *err the one stderr text. */
static int run_err(const char *cmd, char **err) {
    int rc = run(fmt("%s 2>%s/err >/dev/null", cmd, T), NULL);
    run(fmt("cat %s/err", T), err);
    return rc;
}

static void inputs(void) {
    char *err;
    char EV[512]; /* fmt's buffers rotate: this one is kept */
    snprintf(EV, sizeof EV, "%s eval --model " FX " --drop up_blocks.0.attentions.0.transformer_blocks.1 --db %s/h.db", BIN, T);
    /* a scalar timestep, which forward accepts, made eval divide by zero */
    const float t500 = 500;
    const char *scalar = inputs_with_timesteps("scalar.st", &t500, 0);
    CHECK_MSG(run_err(fmt("%s --calib %s", EV, scalar), &err) == 0, "eval with a scalar timestep: %s", err);
    free(err);
    CHECK(run_err(fmt("%s forward --model " FX " --inputs %s --out %s/o.st", BIN, scalar, T), &err) == 0);
    free(err);
    /* non-finite inputs: an input error naming the tensor, for forward and eval alike */
    const float nan2[2] = {NAN, 10}, inf2[2] = {INFINITY, 10};
    const char *tn = inputs_with_timesteps("nan.st", nan2, 2), *ti = inputs_with_timesteps("inf.st", inf2, 2);
    CHECK(run_err(fmt("%s --calib %s", EV, tn), &err) == 4 &&
          strstr(err, "input 'input.timestep': 1 non-finite values (NaN or infinity) of 2"));
    free(err);
    CHECK(run_err(fmt("%s forward --model " FX " --inputs %s --out %s/o.st", BIN, ti, T), &err) == 4 &&
          strstr(err, "input 'input.timestep': 1 non-finite values"));
    free(err);
    /* timesteps outside [0, 1000) are said, not silently clamped into bins 0 and 9 */
    const float out2[2] = {-5, 5000};
    const char *to = inputs_with_timesteps("out.st", out2, 2);
    CHECK(run_err(fmt("%s --calib %s", EV, to), &err) == 0 &&
          strstr(err, "unetlab: warning: '") && strstr(err, "2 of 2 timesteps are outside [0, 1000)"));
    free(err);
}

static void weights(void) {
    char *err;
    const char *nanw = "up_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight";
    const char *dir = fmt("%s/nanmodel", T);
    model_copy(dir, nanw, 1, NULL);
    char F[512];
    snprintf(F, sizeof F, "forward --model %s --inputs " FX "/io.safetensors --out %s/o.st", dir, T);
    CHECK(run_err(fmt("%s %s", BIN, F), &err) == 3 && strstr(err, "/nanmodel/diffusion_pytorch_model.safetensors': tensor '") &&
          strstr(err, nanw) && strstr(err, "has 1 non-finite values (NaN or infinity)") &&
          strstr(err, "--allow-nonfinite-weights"));
    free(err);
    CHECK(run_err(fmt("%s --allow-nonfinite-weights %s", BIN, F), &err) == 0);
    free(err);

    /* a tensor in two shards: refused, naming both files (the index assigns it to one) */
    const char *sh = fmt("%s/sharded", T);
    model_copy(sh, NULL, 2, "conv_in.weight");
    CHECK(run_err(fmt("%s forward --model %s --inputs " FX "/io.safetensors --out %s/o.st", BIN, sh, T), &err) == 3 &&
          strstr(err, "/sharded/b.safetensors': tensor 'conv_in.weight' is also in '") && strstr(err, "/sharded/a.safetensors'"));
    free(err);
    const char *sh2 = fmt("%s/sharded2", T); /* the same shards without the duplicate load */
    model_copy(sh2, NULL, 2, NULL);
    CHECK(run_err(fmt("%s forward --model %s --inputs " FX "/io.safetensors --out %s/o.st", BIN, sh2, T), &err) == 0);
    free(err);
}

/* A student whose features go non-finite while the teacher's do not (its
 * forward runs on weights with a NaN the teacher's never saw): +Inf losses,
 * -Inf cosine, counted, stored as infinities (not NULL), ranked after a finite one. */
static void nonfinite_student(void) {
    ModelSource m;
    CHECK(model_resolve(&m, FX) == 0);
    UnetInputs in;
    CHECK(unet_inputs_load(FX "/io.safetensors", &m.arch, &in) == 0);
    Shape s = {1, (int)in.sample.shape[2], (int)in.sample.shape[3], (int)in.encoder_hidden_states.shape[1]};
    ModuleTree tt;
    unet_tree_build(&tt, &m.arch, &s);
    Weights w;
    CHECK(weights_load(&w, &m, &tt, 0) == 0);
    FeatureSet tf = {0};
    CHECK(unet_forward(&m.arch, &w, &in, &tf.output, features_keep, &tf) == 0);
    EvalRows good = {0}, bad = {0};
    CHECK(eval_batch(&m.arch, &m.arch, &w, &in, &tf, 0, 0, &good, NULL) == 0);
    Weights w2; /* its own copy: an engine keeps what it made of the weights it ran */
    CHECK(weights_load(&w2, &m, &tt, 0) == 0);
    for (int i = 0; i < w2.n; i++)
        if (!strcmp(w2.names[i], "up_blocks.1.resnets.0.conv1.weight")) w2.data[i][0] = NAN;
    CHECK(eval_batch(&m.arch, &m.arch, &w2, &in, &tf, 0, 0, &bad, NULL) == 0);
    weights_free(&w2);
    EvalSummary sg = {0}, sb = {0};
    int inf_mse = 0, neg_cos = 0;
    for (int i = 0; i < good.n; i++) summary_add(&sg, good.r[i].point, good.r[i].metric, good.r[i].value);
    for (int i = 0; i < bad.n; i++) {
        summary_add(&sb, bad.r[i].point, bad.r[i].metric, bad.r[i].value);
        CHECK_MSG(!isnan(bad.r[i].value), "%s %s: NaN", bad.r[i].point, bad.r[i].metric);
        inf_mse += !strcmp(bad.r[i].metric, "mse") && bad.r[i].value == INFINITY;
        neg_cos += !strcmp(bad.r[i].metric, "cosine") && bad.r[i].value == -INFINITY;
    }
    summary_finish(&sg);
    summary_finish(&sb);
    CHECK(sg.nonfinite == 0 && sb.nonfinite > 0 && sb.nonfinite == inf_mse && neg_cos == inf_mse);
    CHECK(isfinite(sg.block_nmse) && sb.block_nmse == INFINITY && sg.block_nmse < sb.block_nmse);
    /* stored as infinities, read back as such */
    Db *db;
    CHECK(db_open(&db, fmt("%s/nf.db", T)) == 0);
    Provenance prov = {.command_line = "test"};
    int64_t run_id, model, plan, calib, job;
    int done;
    CHECK(db_run_begin(db, &prov, &run_id) == 0 && db_model_put(db, "m", "c", "w", 1, &model) == 0 &&
          db_plan_put(db, model, "{}", "h", 1, &plan) == 0 && db_calib_put(db, "k", 2, "x", 0, 0, &calib) == 0 &&
          db_job_ensure(db, model, plan, calib, 1, "fp32", &job, &done) == 0);
    DbEvalRow *rows = calloc((size_t)bad.n, sizeof *rows);
    for (int i = 0; i < bad.n; i++)
        rows[i] = (DbEvalRow){bad.r[i].point, bad.r[i].sample, bad.r[i].timestep, 0, bad.r[i].metric, bad.r[i].value};
    CHECK(db_job_finish(db, job, run_id, rows, bad.n) == 0);
    free(rows);
    db_close(db);
    char *q;
    CHECK(run(fmt("%s db query --db %s/nf.db --format csv \"SELECT count(*) FILTER (WHERE value IS NULL),"
                  " count(*) FILTER (WHERE value = 9e999), count(*) FILTER (WHERE value = -9e999) FROM eval_results\"",
                  BIN, T), &q) == 0);
    CHECK_MSG(strstr(q, fmt("\n0,%d,%d", 2 * inf_mse, neg_cos)), "stored: %s (want 0 NULL, %d +Inf, %d -Inf)", q, 2 * inf_mse,
              neg_cos);
    free(q);
    summary_free(&sg);
    summary_free(&sb);
    eval_rows_free(&good);
    eval_rows_free(&bad);
    features_free(&tf);
    weights_free(&w);
    unet_tree_free(&tt);
    unet_inputs_free(&in);
    model_source_free(&m);
}

int main(void) {
    cli_setup("hostile");
    inputs();
    weights();
    nonfinite_student();
    cli_cleanup();
    TEST_MAIN_END("test_hostile");
}
