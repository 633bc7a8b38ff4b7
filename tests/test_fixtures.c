/* test_fixtures: the whole CPU forward against diffusers. For each fixture in
 * tests/fixtures/ (made by diffusers in float64: config.json, fp16 weights,
 * io.safetensors, expected.json), the teacher's output and every feature must
 * be within 1e-4 relative L2 error of the reference; each student (expected.json)
 * must match its reference output, its parameter count, and every per-point MSE
 * against the teacher within 1e-4 relative (1e-9 absolute where it is 0). */
#include "test.h"
#include "fixture.h"
#include "backend.h"
#include "err.h"
#include "forward.h"
#include "plan.h"
#include "safetensors.h"
#include "unet.h"
#include "weights.h"
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <sys/stat.h>


/* The engine under test: every check runs on the reference engine, the fast
 * one in fp32 (both held to 1e-4), and the fast one in bf16 where the CPU
 * has it (3e-2; a student's MSE points to 10% relative where nonzero). */
static double tol = 1e-4, mse_tol = 1e-4, mse_zero = 1e-9;
static const char *engine = "cpu-ref";

typedef struct {
    const SafeTensors *io;
    int n_checked;
    double worst;
    char worst_name[256];
    cJSON *mse;            /* student: name -> MSE against teacher.<name> */
} Ctx;

static float *ref(const SafeTensors *io, const char *name, int64_t numel) {
    const StTensor *t = st_find(io, name);
    if (!t || t->numel != numel) return NULL;
    float *d = malloc((size_t)numel * sizeof(float));
    st_to_f32(t, d);
    return d;
}

static void on_teacher_feature(void *p, const char *name, const Tensor *t) {
    Ctx *c = p;
    char key[300];
    snprintf(key, sizeof key, "teacher.%s", name);
    int64_t n = tensor_numel(t);
    float *r = ref(c->io, key, n);
    /* conv_in's output is a feature point of ours (prefix reuse starts from it), not of the fixture */
    CHECK_MSG(r != NULL || !strcmp(name, "conv_in"), "no reference '%s' of %lld elements", key, (long long)n);
    if (!r) return;
    double e = rel_l2(t->d, r, n);
    CHECK_MSG(e <= tol, "%s %s: relative L2 error %.3g", engine, name, e);
    if (e > c->worst) { c->worst = e; snprintf(c->worst_name, sizeof c->worst_name, "%s", name); }
    c->n_checked++;
    free(r);
}

static void on_student_feature(void *p, const char *name, const Tensor *t) {
    Ctx *c = p;
    char key[300];
    snprintf(key, sizeof key, "teacher.%s", name);
    int64_t n = tensor_numel(t);
    float *r = ref(c->io, key, n);
    if (!r) return; /* transformer layers are compared through their attentions */
    double s = 0;
    for (int64_t i = 0; i < n; i++) { double d = (double)t->d[i] - r[i]; s += d * d; }
    cJSON_AddNumberToObject(c->mse, name, s / (double)n);
    free(r);
}

/* Prefix reuse gives bit-identical results: the student started from the
 * teacher's features equals the student run from the start, feature by feature. */
static void prefix_reuse(const Arch *teacher, const Arch *student, const Weights *w, const UnetInputs *in, const char *label) {
    Cache tc = {0}, full = {0}, part = {0};
    Tensor yt, yf, yp;
    CHECK(unet_forward(teacher, w, in, &yt, keep, &tc) == 0);
    CHECK(unet_forward(student, w, in, &yf, keep, &full) == 0);
    UnetResume res = {teacher, lookup, &tc};
    UnetRunStats st;
    CHECK(unet_forward_from(student, w, in, &res, &yp, keep, &part, &st, NULL) == 0);
    CHECK_MSG(st.start > 0 && st.units_live < st.units, "%s: started at unit %d, %d of %d live", label, st.start, st.units_live, st.units);
    CHECK_EQ_LL(part.n, full.n);
    int same = tensor_numel(&yf) == tensor_numel(&yp) && !memcmp(yf.d, yp.d, (size_t)tensor_numel(&yf) * sizeof(float));
    CHECK_MSG(same, "%s: output differs with prefix reuse", label);
    for (int i = 0; i < full.n && i < part.n; i++) {
        CHECK_MSG(!strcmp(full.name[i], part.name[i]), "%s: feature %d is %s, with reuse %s", label, i, full.name[i], part.name[i]);
        int eq = tensor_numel(&full.t[i]) == tensor_numel(&part.t[i]) &&
                 !memcmp(full.t[i].d, part.t[i].d, (size_t)tensor_numel(&full.t[i]) * sizeof(float));
        CHECK_MSG(eq, "%s: feature %s differs with prefix reuse", label, full.name[i]);
    }
    fprintf(stderr, "%s: prefix reuse starts at unit %d, computes %d of %d units\n", label, st.start, st.units_live, st.units);
    cache_free(&tc); cache_free(&full); cache_free(&part);
    tensor_free(&yt); tensor_free(&yf); tensor_free(&yp);
}

static void run_fixture(const char *name) {
    Fixture fx;
    if (fixture_open(&fx, name)) return;
    /* read-only views of what fx holds (fixture_close frees it) */
    const ModelSource m = fx.m;
    const UnetInputs in = fx.in;
    const Shape s = fx.s;
    const ModuleTree tree = fx.tree;
    const Weights *w = &fx.w; /* not a copy: the fast engine keeps its state in it */
    const cJSON *exp = fx.expected;
    SafeTensors io;
    int rc = st_open(&io, fx.io_path, ERR_INPUT);
    CHECK_MSG(rc == 0, "%s", err_msg());

    /* teacher: output and every feature point in io.safetensors */
    Ctx c = {.io = &io};
    Tensor y;
    rc = unet_forward(&m.arch, w, &in, &y, on_teacher_feature, &c);
    CHECK(rc == 0);
    float *r = ref(&io, "output", tensor_numel(&y));
    CHECK(r != NULL);
    double e = r ? rel_l2(y.d, r, tensor_numel(&y)) : 1;
    CHECK_MSG(e <= tol, "%s %s output: relative L2 error %.3g", engine, name, e);
    int n_ref = 0;
    for (int i = 0; i < io.n; i++) n_ref += !strncmp(io.t[i].name, "teacher.", 8);
    CHECK_MSG(c.n_checked == n_ref, "%s: %d features compared, the reference has %d", name, c.n_checked, n_ref);
    fprintf(stderr, "[%s] %s teacher: output rel L2 %.2e, %d features, worst %.2e (%s)\n", engine, name, e, c.n_checked, c.worst, c.worst_name);
    free(r);
    tensor_free(&y);

    /* students */
    CHECK_EQ_LL(tree.m[0].params, cJSON_GetObjectItem(exp, "total_params")->valuedouble);
    const cJSON *st;
    cJSON_ArrayForEach(st, cJSON_GetObjectItem(exp, "students")) {
        Arch a = m.arch;
        const cJSON *d;
        cJSON_ArrayForEach(d, cJSON_GetObjectItem(st, "drop")) CHECK(plan_remove(&a, d->valuestring) == 0);
        ModuleTree stree;
        unet_tree_build(&stree, &a, &s);
        CHECK_EQ_LL(stree.m[0].params, cJSON_GetObjectItem(st, "total_params")->valuedouble);
        unet_tree_free(&stree);
        prefix_reuse(&m.arch, &a, w, &in, st->string);
        Ctx sc = {.io = &io, .mse = cJSON_CreateObject()};
        rc = unet_forward(&a, w, &in, &y, on_student_feature, &sc);
        CHECK(rc == 0);
        char key[256];
        snprintf(key, sizeof key, "student.%s.output", st->string);
        r = ref(&io, key, tensor_numel(&y));
        CHECK_MSG(r != NULL, "%s", key);
        e = r ? rel_l2(y.d, r, tensor_numel(&y)) : 1;
        CHECK_MSG(e <= tol, "%s %s %s output: relative L2 error %.3g", engine, name, st->string, e);
        const float *tout = NULL;
        float *tref = ref(&io, "output", tensor_numel(&y));
        tout = tref;
        double out_mse = 0;
        for (int64_t i = 0; tout && i < tensor_numel(&y); i++) { double dd = (double)y.d[i] - tout[i]; out_mse += dd * dd; }
        cJSON_AddNumberToObject(sc.mse, "output", out_mse / (double)tensor_numel(&y));
        free(tref);
        free(r);
        tensor_free(&y);
        const cJSON *pt;
        int n_pts = 0;
        double worst = 0;
        cJSON_ArrayForEach(pt, cJSON_GetObjectItem(st, "mse")) {
            const cJSON *got = cJSON_GetObjectItem(sc.mse, pt->string);
            CHECK_MSG(got != NULL, "%s %s: no feature point '%s'", name, st->string, pt->string);
            if (!got) continue;
            double want = pt->valuedouble, have = got->valuedouble;
            int ok = want == 0 ? fabs(have) <= mse_zero : fabs(have - want) <= mse_tol * fabs(want);
            CHECK_MSG(ok, "%s %s %s: MSE %.10g, expected %.10g", name, st->string, pt->string, have, want);
            if (want != 0 && fabs(have - want) / fabs(want) > worst) worst = fabs(have - want) / fabs(want);
            n_pts++;
        }
        fprintf(stderr, "[%s] %s student %s: output rel L2 %.2e, %d MSE points, worst relative error %.2e\n", engine, name, st->string, e, n_pts, worst);
        cJSON_Delete(sc.mse);
    }
    st_close(&io);
    fixture_close(&fx);
}

/* The same weights as one file, as the .fp16 variant name, and sharded with an
 * index.json give the same model: the forward's output is bit-identical. */
static void layouts(void) {
    const char *fx = FIXTURES "/mini-ssd";
    char dir[64], path[512];
    CHECK(test_tmpdir(dir, sizeof dir, "unetlab-layouts-") != NULL);
    SafeTensors st;
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", fx);
    CHECK(st_open(&st, path, ERR_MODEL) == 0);
    /* shards: tensors alternate between two files */
    StOut *o[2] = {calloc((size_t)st.n, sizeof(StOut)), calloc((size_t)st.n, sizeof(StOut))};
    int n[2] = {0, 0};
    float **data = calloc((size_t)st.n, sizeof(float *));
    cJSON *idx = cJSON_CreateObject(), *wm = cJSON_AddObjectToObject(idx, "weight_map");
    for (int i = 0; i < st.n; i++) {
        const StTensor *t = &st.t[i];
        data[i] = malloc((size_t)(t->numel ? t->numel : 1) * sizeof(float));
        st_to_f32(t, data[i]);
        StOut *x = &o[i % 2][n[i % 2]++];
        *x = (StOut){.name = t->name, .ndim = t->ndim, .data = data[i], .dtype = DTYPE_F16};
        for (int d = 0; d < t->ndim; d++) x->shape[d] = t->shape[d];
        cJSON_AddStringToObject(wm, t->name, i % 2 ? "diffusion_pytorch_model-00002-of-00002.safetensors"
                                                   : "diffusion_pytorch_model-00001-of-00002.safetensors");
    }
    char sub[3][96];
    const char *names[3] = {"sharded", "fp16", "single"};
    for (int k = 0; k < 3; k++) {
        snprintf(sub[k], sizeof sub[k], "%s/%s", dir, names[k]);
        mkdir(sub[k], 0755);
        char cfg[400];
        snprintf(cfg, sizeof cfg, "cp %s/config.json %s/", fx, sub[k]);
        CHECK(system(cfg) == 0);
    }
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model-00001-of-00002.safetensors", sub[0]);
    CHECK(st_write(path, o[0], n[0]) == 0);
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model-00002-of-00002.safetensors", sub[0]);
    CHECK(st_write(path, o[1], n[1]) == 0);
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors.index.json", sub[0]);
    char *txt = cJSON_Print(idx);
    FILE *f = fopen(path, "w");
    CHECK(f && fputs(txt, f) >= 0 && fclose(f) == 0);
    free(txt);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "cp %s/diffusion_pytorch_model.safetensors %s/diffusion_pytorch_model.fp16.safetensors && "
             "cp %s/diffusion_pytorch_model.safetensors %s/", fx, sub[1], fx, sub[2]);
    CHECK(system(cmd) == 0);
    Tensor y[3];
    for (int k = 0; k < 3; k++) {
        ModelSource m;
        UnetInputs in;
        snprintf(path, sizeof path, "%s/io.safetensors", fx);
        CHECK(model_resolve(&m, sub[k]) == 0);
        CHECK(unet_inputs_load(path, &m.arch, &in) == 0);
        Shape s = {2, 8, 8, 11};
        ModuleTree t;
        unet_tree_build(&t, &m.arch, &s);
        Weights w;
        int rc = weights_load(&w, &m, &t, 0);
        CHECK_MSG(rc == 0, "%s: %s", names[k], err_msg());
        if (!rc) CHECK(unet_forward(&m.arch, &w, &in, &y[k], NULL, NULL) == 0);
        else y[k] = tensor_new(1, 1, 0, 0, 0);
        weights_free(&w);
        unet_tree_free(&t);
        unet_inputs_free(&in);
        model_source_free(&m);
    }
    for (int k = 0; k < 2; k++) {
        int same = tensor_numel(&y[k]) == tensor_numel(&y[2]) && !memcmp(y[k].d, y[2].d, (size_t)tensor_numel(&y[2]) * sizeof(float));
        CHECK_MSG(same, "%s weights give another output than the single file", names[k]);
    }
    for (int k = 0; k < 3; k++) tensor_free(&y[k]);
    for (int i = 0; i < st.n; i++) free(data[i]);
    free(data);
    free(o[0]);
    free(o[1]);
    cJSON_Delete(idx);
    st_close(&st);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

int main(void) {
    cpu_engine_set(CPU_REF, DTYPE_F32);
    layouts();
    run_fixture("mini-public");
    run_fixture("mini-ssd");
    if (!cpu_fast_built()) {
        printf("test_fixtures: fast engine not built (DNNL=0): reference engine only\n");
        TEST_MAIN_END("test_fixtures");
    }
    cpu_engine_set(CPU_FAST, DTYPE_F32);
    engine = "cpu fp32";
    run_fixture("mini-public");
    run_fixture("mini-ssd");
    if (cpu_bf16_native()) {
        cpu_engine_set(CPU_FAST, DTYPE_BF16);
        engine = "cpu bf16";
        tol = 3e-2;
        mse_tol = 0.1;
        mse_zero = INFINITY; /* points before the first removal: bf16's own error, bounded by the feature checks */
        run_fixture("mini-public");
        run_fixture("mini-ssd");
    } else {
        printf("test_fixtures: bf16 skipped: this CPU has neither AVX512-BF16 nor AMX\n");
    }
    TEST_MAIN_END("test_fixtures");
}
