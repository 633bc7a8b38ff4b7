/* unetlab export: a student as a diffusers checkpoint: config.json,
 * diffusion_pytorch_model.safetensors (the teacher's weights minus the removed
 * modules, re-indexed to the student's names) and removal.json (what was
 * removed, the name map, params, tool version, teacher hash). */
#include "cli.h"
#include "err.h"
#include "hash.h"
#include "safetensors.h"
#include "weights.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef UNETLAB_VERSION
#define UNETLAB_VERSION "0.1.0"
#endif

static const char USAGE[] =
    "usage: unetlab export --model TEACHER --plan P --out DIR [--drop NAME,...] [--dtype fp16|bf16|fp32] [--seed S]\n"
    "\n"
    "Writes DIR/config.json (diffusers UNet2DConditionModel), DIR/diffusion_pytorch_model.safetensors\n"
    "(the teacher's weights minus the removed modules, re-indexed: a student's transformer_blocks.3\n"
    "may be the teacher's transformer_blocks.5) and DIR/removal.json (removed modules, the\n"
    "teacher-to-student name map, params, tool version, teacher hash). --dtype defaults to fp16.\n"
    "`unetlab forward --model DIR` then equals `unetlab forward --model TEACHER --plan P`.\n";

static int write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fputc('\n', f) < 0 || fclose(f))
        return err_set(ERR_OUTPUT, "cannot write '%s': %s", path, strerror(errno));
    return 0;
}

/* "a.b.weight" -> "a.b" in buf. */
static const char *module_of(const char *tensor, char *buf, size_t n) {
    snprintf(buf, n, "%s", tensor);
    char *dot = strrchr(buf, '.');
    if (dot) *dot = '\0';
    return buf;
}

int cmd_export(int argc, char **argv) {
    const char *model = NULL, *plan_path = NULL, *drop = NULL, *out = NULL, *dtype_s = "fp16", *seed_s = "0";
    const Opt opts[] = {{"--model", 1, &model}, {"--plan", 1, &plan_path}, {"--drop", 1, &drop}, {"--out", 1, &out},
                        {"--dtype", 1, &dtype_s}, {"--seed", 1, &seed_s}, {NULL, 0, NULL}};
    int rc = cli_parse(argc, argv, opts, USAGE);
    if (rc) return rc;
    if (!model || !out || (!plan_path && !drop)) return err_set(ERR_USAGE, "export: --model, --plan (or --drop) and --out are required (see unetlab export --help)");
    DType dt;
    if ((rc = cli_dtype(dtype_s, &dt))) return rc;
    long seed;
    if ((rc = cli_int("--seed", seed_s, 0, 0x7fffffffL, &seed))) return rc;

    ModelSource m;
    Plan p;
    Arch st;
    Weights w = {0};
    ModuleTree tt = {0}, ts = {0};
    char *cfg = NULL;
    plan_init(&p);
    if ((rc = model_resolve(&m, model)) || (rc = cli_student(&m.arch, plan_path, drop, &p, &st)) ||
        (rc = plan_config_json(&st, m.config_text, &cfg)))
        goto done;
    if (mkdir(out, 0755) && errno != EEXIST) { rc = err_set(ERR_OUTPUT, "cannot create '%s': %s", out, strerror(errno)); goto done; }
    Shape s = {1, 8, 8, 4};
    unet_tree_build(&tt, &m.arch, &s);
    unet_tree_build(&ts, &st, &s);
    if ((rc = weights_load(&w, &m, &tt, (uint64_t)seed))) goto done;

    /* the weights, under the student's names */
    StOut *o = xmalloc((size_t)ts.n_tensors * sizeof *o);
    for (int i = 0; i < ts.n_tensors; i++) {
        const TensorSpec *x = &ts.t[i];
        o[i] = (StOut){.name = x->name, .ndim = x->ndim, .data = weights_find(&w, x->src), .dtype = dt};
        for (int d = 0; d < x->ndim; d++) o[i].shape[d] = x->shape[d];
        if (!o[i].data) die("internal: no teacher weight '%s' for '%s'", x->src, x->name);
    }
    char *path = xasprintf("%s/diffusion_pytorch_model.safetensors", out);
    rc = st_write(path, o, ts.n_tensors);
    free(o);
    free(path);
    if (rc) goto done;
    path = xasprintf("%s/config.json", out);
    rc = write_text(path, cfg);
    free(path);
    if (rc) goto done;

    /* the manifest */
    char wh[17], ch[17], buf[512], buf2[512];
    weights_hash(&w, wh);
    hash_hex(hash_bytes(HASH_INIT, m.config_text, strlen(m.config_text)), ch);
    cJSON *man = cJSON_CreateObject();
    cJSON_AddStringToObject(man, "format", "unetlab-removal");
    cJSON_AddNumberToObject(man, "version", 1);
    char *tool = xasprintf("unetlab %s", UNETLAB_VERSION);
    cJSON_AddStringToObject(man, "tool", tool);
    free(tool);
    cJSON *te = cJSON_AddObjectToObject(man, "teacher");
    cJSON_AddStringToObject(te, "model", model);
    cJSON_AddStringToObject(te, "config_hash", ch);
    cJSON_AddStringToObject(te, "weights_hash", wh);
    cJSON_AddStringToObject(te, "weights", w.origin);
    cJSON_AddNumberToObject(te, "params", (double)tt.m[0].params);
    cJSON_AddNumberToObject(man, "student_params", (double)ts.m[0].params);
    cJSON_AddStringToObject(man, "dtype", dtype_s);
    cJSON *rm = cJSON_AddArrayToObject(man, "removed");
    for (int i = 0; i < p.n; i++) cJSON_AddItemToArray(rm, cJSON_CreateString(p.remove[i]));
    /* teacher modules that survive under another name (re-indexed) */
    cJSON *map = cJSON_AddObjectToObject(man, "renamed");
    for (int i = 0; i < ts.n_tensors; i++) {
        if (!strcmp(ts.t[i].name, ts.t[i].src)) continue;
        module_of(ts.t[i].src, buf, sizeof buf);
        module_of(ts.t[i].name, buf2, sizeof buf2);
        if (!cJSON_GetObjectItemCaseSensitive(map, buf)) cJSON_AddStringToObject(map, buf, buf2);
    }
    char *txt = cJSON_Print(man);
    cJSON_Delete(man);
    path = xasprintf("%s/removal.json", out);
    rc = write_text(path, txt);
    free(path);
    free(txt);
    if (!rc) {
        char b1[32], b2[32];
        printf("exported %s: %s -> %s parameters (%s), %d tensors\n", out, cli_commas(tt.m[0].params, b1, sizeof b1),
               cli_commas(ts.m[0].params, b2, sizeof b2), dtype_s, ts.n_tensors);
    }
done:
    free(cfg);
    unet_tree_free(&tt);
    unet_tree_free(&ts);
    weights_free(&w);
    plan_free(&p);
    model_source_free(&m);
    return rc;
}
