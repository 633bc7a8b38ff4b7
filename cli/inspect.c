/* unetlab inspect: the module tree of a model (or of a student with --drop)
 * with exact parameter counts and MACs at a given input size. */
#include "cli.h"
#include "err.h"
#include "plan.h"
#include "unet.h"
#include "weights.h"
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char USAGE[] =
    "usage: unetlab inspect --model M [--batch B] [--height H] [--width W] [--tokens L]\n"
    "                       [--plan P] [--drop NAME,...] [--depth D] [--format text|json|csv]\n"
    "\n"
    "  --model M     preset (sdxl-base, ssd-1b, segmind-vega, sd-1.5), config.json, diffusers\n"
    "                UNet directory or pipeline root with unet/\n"
    "  --batch B     batch size for MACs (default 1)\n"
    "  --height H    image height in pixels, as pipelines take it; latent = H / 8\n"
    "  --width W     (default: the config's sample_size x 8)\n"
    "  --tokens L    text tokens of encoder_hidden_states (default 77)\n"
    "  --plan P      a student: the teacher minus the removals of plan file P (JSON)\n"
    "  --drop NAMES  a student: the teacher without these transformer layers (adds to --plan)\n"
    "  --depth D     text: show modules down to D levels (default 3: transformer layers); 0 = all\n"
    "  --format F    text (indented tree), json or csv (every module)\n"
    "\n"
    "MACs count convolutions, linear layers and the two attention matmuls, as torch's\n"
    "FlopCounterMode does (FLOPs = 2 x MACs); norms and element-wise ops are not counted.\n";

/* Nesting level as a reader sees it: ModuleList containers do not count. */
static int level(const ModuleTree *t, int i) {
    int l = 0;
    for (int p = t->m[i].parent; p > 0; p = t->m[p].parent)
        if (strcmp(t->m[p].kind, "ModuleList")) l++;
    return l;
}

/* Parses the size flags shared by commands that count MACs. */
int cli_shape(const Arch *a, const char *batch, const char *height, const char *width, const char *tokens, Shape *s) {
    long v;
    int rc;
    s->batch = 1;
    s->tokens = 77;
    if (batch) { if ((rc = cli_int("--batch", batch, 1, 1 << 16, &v))) return rc; s->batch = (int)v; }
    if (tokens) { if ((rc = cli_int("--tokens", tokens, 1, 1 << 20, &v))) return rc; s->tokens = (int)v; }
    int def = a->sample_size * 8;
    const char *hw[2] = {height, width};
    int *dst[2] = {&s->height, &s->width};
    for (int i = 0; i < 2; i++) {
        const char *flag = i ? "--width" : "--height";
        if (hw[i]) {
            if ((rc = cli_int(flag, hw[i], 8, 1 << 20, &v))) return rc;
        } else {
            if (!def) return err_set(ERR_USAGE, "option '%s' is needed: the config has no sample_size", flag);
            v = def;
        }
        if (v % 8) return err_set(ERR_USAGE, "option '%s': %ld pixels is not a multiple of 8 (latent = pixels / 8)", flag, v);
        *dst[i] = (int)(v / 8);
    }
    ModuleTree t; /* a size whose work does not fit a 64-bit count is refused here, for every command */
    unet_tree_build(&t, a, s);
    rc = unet_tree_check(&t, s);
    unet_tree_free(&t);
    return rc;
}

int cmd_inspect(int argc, char **argv) {
    const char *model = NULL, *batch = NULL, *height = NULL, *width = NULL, *tokens = NULL, *fmt = "text",
               *depth = "3", *drop = NULL, *plan_path = NULL;
    const Opt opts[] = {{"--model", 1, &model}, {"--batch", 1, &batch}, {"--height", 1, &height},
                        {"--width", 1, &width}, {"--tokens", 1, &tokens}, {"--format", 1, &fmt},
                        {"--depth", 1, &depth}, {"--drop", 1, &drop}, {"--plan", 1, &plan_path},
                        {NULL, 0, NULL}};
    int rc = cli_parse(argc, argv, opts, USAGE);
    if (rc) return rc;
    if (!model) return err_set(ERR_USAGE, "inspect: --model is required (see unetlab inspect --help)");
    Format f;
    long maxdepth;
    if ((rc = cli_format(fmt, &f, 1)) || (rc = cli_int("--depth", depth, 0, 100, &maxdepth))) return rc;
    ModelSource m;
    if ((rc = model_resolve(&m, model))) { model_source_free(&m); return rc; }
    Plan plan;
    Arch teacher = m.arch;
    rc = cli_student(&teacher, plan_path, drop, &plan, &m.arch);
    plan_free(&plan);
    if (rc) { model_source_free(&m); return rc; }
    Shape s;
    if ((rc = cli_shape(&m.arch, batch, height, width, tokens, &s))) { model_source_free(&m); return rc; }
    ModuleTree t;
    unet_tree_build(&t, &m.arch, &s);
    const Module *root = &t.m[0];
    char b1[32], b2[32];
    if (f == FORMAT_JSON) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", model);
        cJSON_AddStringToObject(o, "config", m.config_label);
        cJSON_AddNumberToObject(o, "batch", s.batch);
        cJSON_AddNumberToObject(o, "height", s.height * 8);
        cJSON_AddNumberToObject(o, "width", s.width * 8);
        cJSON_AddNumberToObject(o, "tokens", s.tokens);
        cJSON_AddNumberToObject(o, "total_params", (double)root->params);
        cJSON_AddNumberToObject(o, "total_macs", (double)root->macs);
        cJSON *mods = cJSON_AddArrayToObject(o, "modules");
        for (int i = 1; i < t.n_modules; i++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "name", t.m[i].name);
            cJSON_AddStringToObject(e, "kind", t.m[i].kind);
            cJSON_AddNumberToObject(e, "params", (double)t.m[i].params);
            cJSON_AddNumberToObject(e, "macs", (double)t.m[i].macs);
            cJSON_AddItemToArray(mods, e);
        }
        char *txt = cJSON_Print(o);
        puts(txt);
        free(txt);
        cJSON_Delete(o);
    } else if (f == FORMAT_CSV) {
        printf("name,kind,params,macs\n");
        for (int i = 0; i < t.n_modules; i++)
            printf("%s,%s,%lld,%lld\n", i ? t.m[i].name : "(total)", t.m[i].kind, (long long)t.m[i].params,
                   (long long)t.m[i].macs);
    } else {
        printf("model: %s (config %s)%s\n", model, m.config_label, plan_path || drop ? ", a student (--plan/--drop)" : "");
        printf("input: batch %d, %d x %d px (latent %d x %d), %d tokens\n\n", s.batch, s.height * 8, s.width * 8,
               s.height, s.width, s.tokens);
        printf("%-62s %-26s %15s %12s\n", "module", "kind", "params", "GMACs");
        for (int i = 1; i < t.n_modules; i++) {
            if (!strcmp(t.m[i].kind, "ModuleList")) continue;
            int l = level(&t, i);
            if (maxdepth && l >= maxdepth) continue;
            printf("%*s%-*s %-26s %15s %12.3f\n", 2 * l, "", 62 - 2 * l, t.m[i].name, t.m[i].kind,
                   cli_commas(t.m[i].params, b1, sizeof b1), (double)t.m[i].macs / 1e9);
        }
        printf("\ntotal: %s parameters, %s MACs = %.4g FLOPs (FLOPs = 2 x MACs, as torch's FlopCounterMode counts)\n",
               cli_commas(root->params, b1, sizeof b1), cli_commas(root->macs, b2, sizeof b2), 2.0 * (double)root->macs);
    }
    unet_tree_free(&t);
    model_source_free(&m);
    return 0;
}
