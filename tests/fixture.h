/* fixture: what the fixture tests share (tests/test_fixtures.c,
 * tests/test_cuda_forward.c): loading a diffusers fixture of tests/fixtures/
 * (model, inputs, module tree, weights, expected.json), the features of one
 * forward kept by name (a FeatureFn, and a FeatureGet for prefix reuse), and
 * the relative L2 error they judge by. Include after test.h. */
#ifndef UNETLAB_FIXTURE_H
#define UNETLAB_FIXTURE_H
#include "err.h"
#include "forward.h"
#include "tensor.h"
#include "unet.h"
#include "weights.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef FIXTURES
#define FIXTURES "tests/fixtures"
#endif

typedef struct {
    char dir[256], io_path[300];
    ModelSource m;
    UnetInputs in;
    Shape s;           /* the inputs' batch, latent size and tokens */
    ModuleTree tree;   /* the teacher's, at s */
    Weights w;
    cJSON *expected;   /* expected.json */
} Fixture;

/* Loads fixture `name`; 0 on success. A failure is a failed CHECK and
 * returns -1 with nothing left to free. */
static int fixture_open(Fixture *f, const char *name) {
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "%s/%s", FIXTURES, name);
    snprintf(f->io_path, sizeof f->io_path, "%s/io.safetensors", f->dir);
    int rc = model_resolve(&f->m, f->dir);
    CHECK_MSG(rc == 0, "%s: %s", f->dir, err_msg());
    if (rc) return -1;
    rc = unet_inputs_load(f->io_path, &f->m.arch, &f->in);
    CHECK_MSG(rc == 0, "%s", err_msg());
    if (rc) { model_source_free(&f->m); return -1; }
    f->s = (Shape){(int)f->in.sample.shape[0], (int)f->in.sample.shape[2], (int)f->in.sample.shape[3],
                   (int)f->in.encoder_hidden_states.shape[1]};
    unet_tree_build(&f->tree, &f->m.arch, &f->s);
    rc = weights_load(&f->w, &f->m, &f->tree, 0);
    CHECK_MSG(rc == 0, "%s", err_msg());
    char path[300];
    snprintf(path, sizeof path, "%s/expected.json", f->dir);
    FILE *fp = fopen(path, "rb");
    CHECK_MSG(fp != NULL, "cannot open %s", path);
    char *buf = calloc(1, 1 << 20);
    size_t len = fp ? fread(buf, 1, (1 << 20) - 1, fp) : 0;
    if (fp) fclose(fp);
    f->expected = cJSON_ParseWithLength(buf, len);
    free(buf);
    CHECK_MSG(f->expected != NULL, "%s: not JSON", path);
    if (rc || !f->expected) {
        cJSON_Delete(f->expected);
        if (!rc) weights_free(&f->w);
        unet_tree_free(&f->tree);
        unet_inputs_free(&f->in);
        model_source_free(&f->m);
        return -1;
    }
    return 0;
}

static void fixture_close(Fixture *f) {
    cJSON_Delete(f->expected);
    weights_free(&f->w);
    unet_tree_free(&f->tree);
    unet_inputs_free(&f->in);
    model_source_free(&f->m);
}

typedef struct {
    char *name[256];
    Tensor t[256];
    int n;
} Cache;

static void keep(void *p, const char *name, const Tensor *t) {
    Cache *c = p;
    if (c->n < 256) { c->name[c->n] = strdup(name); c->t[c->n++] = tensor_copy(t); }
}

static const Tensor *lookup(void *p, const char *name) {
    Cache *c = p;
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->name[i], name)) return &c->t[i];
    return NULL;
}

static void cache_free(Cache *c) {
    for (int i = 0; i < c->n; i++) { free(c->name[i]); tensor_free(&c->t[i]); }
    c->n = 0;
}

/* ||a - b|| / ||b|| over n values (||a - b|| where b is all zeros). */
static double rel_l2(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) { double d = (double)a[i] - b[i]; num += d * d; den += (double)b[i] * b[i]; }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}
#endif
