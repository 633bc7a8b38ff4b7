/* unetlab export: a student as a diffusers checkpoint: config.json,
 * diffusion_pytorch_model.safetensors (the teacher's weights minus the removed
 * modules, re-indexed to the student's names) and removal.json (what was
 * removed, the name map, params, tool version, teacher hash); or, with
 * --format single-file, as one NAME.safetensors in Stability's original (LDM)
 * layout (the UNet only, under model.diffusion_model., named by
 * model/singlefile.c's rules for the student's architecture), with
 * NAME.config.json and NAME.removal.json beside it. */
#include "cli.h"
#include "err.h"
#include "fileio.h"
#include "hash.h"
#include "safetensors.h"
#include "singlefile.h"
#include "weights.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef UNETLAB_VERSION
#define UNETLAB_VERSION "0.1.0"
#endif

static const char USAGE[] =
    "usage: unetlab export --model TEACHER --plan P --out DIR [--drop NAME,...] [--dtype fp16|bf16|fp32]\n"
    "                      [--format diffusers|single-file] [--random-weights [--seed S]]\n"
    "\n"
    "Writes DIR/config.json (diffusers UNet2DConditionModel), DIR/diffusion_pytorch_model.safetensors\n"
    "(the teacher's weights minus the removed modules, re-indexed: a student's transformer_blocks.3\n"
    "may be the teacher's transformer_blocks.5) and DIR/removal.json (removed modules, the\n"
    "teacher-to-student name map, params, tool version, teacher hash). --dtype defaults to fp16.\n"
    "`unetlab forward --model DIR` then equals `unetlab forward --model TEACHER --plan P` (exactly\n"
    "when --dtype holds the teacher's weights: a float32 teacher written as fp16 is rounded, and\n"
    "export says so). DIR is never the teacher's directory nor one that holds it. A preset\n"
    "teacher has no trained weights: export refuses it unless --random-weights (seeded by --seed).\n"
    "\n"
    "--format single-file: --out is a file NAME.safetensors holding the UNet only, in Stability's\n"
    "original layout (model.diffusion_model.input_blocks.1.0.in_layers.0.weight, ...; the names\n"
    "the tools that read SDXL and SD 1.x single files expect), with NAME.config.json (the\n"
    "student's diffusers config: what the tensors do not say, such as its attention heads) and\n"
    "NAME.removal.json beside it. `unetlab forward --model NAME.safetensors` reads it back.\n";

/* The teacher is never written over: refuses an existing out that is, or holds,
 * the directory of the teacher's weights or config (a pipeline root holds its unet/). */
static int check_out(const char *out, const ModelSource *m) {
    char ro[PATH_MAX], rm[PATH_MAX];
    if (!realpath(out, ro)) return 0; /* not there yet: cannot be the teacher's */
    char *cfg_dir = m->dir ? NULL : path_dir(m->config_label);
    const char *teacher[] = {m->dir, cfg_dir && strncmp(m->config_label, "preset ", 7) ? cfg_dir : NULL};
    int rc = 0;
    for (int i = 0; i < 2 && !rc; i++) {
        if (!teacher[i] || !realpath(teacher[i], rm)) continue;
        size_t n = strlen(ro);
        if (!strcmp(ro, rm) || (!strncmp(rm, ro, n) && (rm[n] == '/' || !strcmp(ro, "/"))))
            rc = err_set(ERR_OUTPUT, "export: --out '%s' %s the teacher's directory '%s': writing there would replace its"
                         " files; give a new directory", out, strcmp(ro, rm) ? "holds" : "is", teacher[i]);
    }
    free(cfg_dir);
    return rc;
}

/* "a.b.weight" -> "a.b" in buf. */
static const char *module_of(const char *tensor, char *buf, size_t n) {
    snprintf(buf, n, "%s", tensor);
    char *dot = strrchr(buf, '.');
    if (dot) *dot = '\0';
    return buf;
}

int cmd_export(int argc, char **argv) {
    const char *model = NULL, *plan_path = NULL, *drop = NULL, *out = NULL, *dtype_s = "fp16", *seed_s = "0",
               *random = NULL, *format = "diffusers";
    const Opt opts[] = {{"--model", 1, &model}, {"--plan", 1, &plan_path}, {"--drop", 1, &drop}, {"--out", 1, &out},
                        {"--dtype", 1, &dtype_s}, {"--seed", 1, &seed_s}, {"--random-weights", 0, &random},
                        {"--format", 1, &format}, {NULL, 0, NULL}};
    int rc = cli_parse(argc, argv, opts, USAGE);
    if (rc) return rc;
    if (!model || !out || (!plan_path && !drop)) return err_set(ERR_USAGE, "export: --model, --plan (or --drop) and --out are required (see unetlab export --help)");
    int single = !strcmp(format, "single-file");
    if (!single && strcmp(format, "diffusers"))
        return err_set(ERR_USAGE, "option '--format': '%s' is not one of diffusers, single-file", format);
    size_t stem = sf_stem_len(out);
    if (single && (stem == 0 || stem == strlen(out)))
        return err_set(ERR_USAGE, "export: --format single-file writes one file: --out '%s' must end in .safetensors", out);
    DType dt;
    if ((rc = cli_dtype(dtype_s, &dt))) return rc;
    long seed;
    if ((rc = cli_int("--seed", seed_s, 0, 0x7fffffffL, &seed))) return rc;

    ModelSource m;
    Plan p;
    Arch st;
    Weights w = {0};
    ModuleTree tt = {0}, ts = {0};
    char *cfg = NULL, *p_weights = NULL, *p_config = NULL, *p_manifest = NULL;
    plan_init(&p);
    if ((rc = model_resolve(&m, model)) || (rc = cli_student(&m.arch, plan_path, drop, &p, &st)) ||
        (rc = plan_config_json(&st, m.config_text, &cfg)))
        goto done;
    /* where it goes: DIR/NAME, or NAME.safetensors with NAME.config.json and NAME.removal.json beside it */
    p_weights = single ? xstrdup(out) : xasprintf("%s/diffusion_pytorch_model.safetensors", out);
    p_config = single ? sf_sidecar_path(out) : xasprintf("%s/config.json", out);
    p_manifest = single ? xasprintf("%.*s.removal.json", (int)stem, out) : xasprintf("%s/removal.json", out);
    /* a single file beside a single-file teacher is fine, over it is not; into a
     * teacher's diffusers directory never */
    char rt[PATH_MAX], ro[PATH_MAX];
    if (single && m.file) {
        if (realpath(m.file, rt) && realpath(out, ro) && !strcmp(rt, ro))
            rc = err_set(ERR_OUTPUT, "export: --out '%s' is the teacher's file: writing there would replace it; give a"
                         " new name", out);
    } else {
        char *dir = single ? path_dir(out) : NULL;
        rc = check_out(single ? dir : out, &m);
        free(dir);
    }
    if (rc) goto done;
    if (!m.dir && !random) {
        rc = err_set(ERR_USAGE, "export: '%s' has no trained weights (%s): the student would hold seeded random numbers;"
                     " give a checkpoint directory as --model, or --random-weights to export random ones", model,
                     m.config_label);
        goto done;
    }
    if (p.teacher && strcmp(p.teacher, model))
        err_warn("export: the plan names '%s' as its teacher; exporting from '%s'", p.teacher, model);
    if (!single && mkdir(out, 0755) && errno != EEXIST) {
        rc = err_set(ERR_OUTPUT, "cannot create '%s': %s", out, strerror(errno));
        goto done;
    }
    Shape s = {1, 8, 8, 4};
    unet_tree_build(&tt, &m.arch, &s);
    unet_tree_build(&ts, &st, &s);
    if ((rc = weights_load(&w, &m, &tt, (uint64_t)seed))) goto done;
    if (w.stored_dtype >= 0 && w.stored_dtype != (int)dt && dt != DTYPE_F32)
        err_warn("export: the teacher's weights are %s and the student is written as %s: its outputs will differ"
                 " from the plan's forward by that rounding (--dtype %s keeps them exact)",
                 dtype_name((DType)w.stored_dtype), dtype_s, dtype_name((DType)w.stored_dtype));

    /* the weights, under the student's names (diffusers', or the LDM layout's for its architecture) */
    StOut *o = xmalloc((size_t)ts.n_tensors * sizeof *o);
    char **ldm = single ? xcalloc((size_t)ts.n_tensors, sizeof *ldm) : NULL;
    SfRules *rules = single ? sf_rules_new(&st) : NULL;
    for (int i = 0; i < ts.n_tensors; i++) {
        const TensorSpec *x = &ts.t[i];
        o[i] = (StOut){.name = x->name, .ndim = x->ndim, .data = weights_find(&w, x->src), .dtype = dt};
        for (int d = 0; d < x->ndim; d++) o[i].shape[d] = x->shape[d];
        if (!o[i].data) die("internal: no teacher weight '%s' for '%s'", x->src, x->name);
        if (single) o[i].name = ldm[i] = sf_ldm_dup(rules, x->name);
    }
    sf_rules_free(rules);
    rc = st_write(p_weights, o, ts.n_tensors);
    for (int i = 0; ldm && i < ts.n_tensors; i++) free(ldm[i]);
    free(ldm);
    free(o);
    if (rc) goto done;
    if ((rc = out_write_text(p_config, cfg))) goto done;

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
    cJSON_AddStringToObject(man, "layout", single ? "single-file (LDM names, model.diffusion_model.)" : "diffusers");
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
    rc = out_write_text(p_manifest, txt);
    free(txt);
    if (!rc) {
        char b1[32], b2[32];
        printf("exported %s: %s -> %s parameters (%s), %d tensors\n", out, cli_commas(tt.m[0].params, b1, sizeof b1),
               cli_commas(ts.m[0].params, b2, sizeof b2), dtype_s, ts.n_tensors);
    }
done:
    free(p_weights);
    free(p_config);
    free(p_manifest);
    free(cfg);
    unet_tree_free(&tt);
    unet_tree_free(&ts);
    weights_free(&w);
    plan_free(&p);
    model_source_free(&m);
    return rc;
}
