/* unetlab candidates / unetlab plan show: what can be removed from a model,
 * and the diffusers config of the student a plan defines. */
#include "candidates.h"
#include "cli.h"
#include "err.h"
#include "weights.h"
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char CAND_USAGE[] =
    "usage: unetlab candidates --model M [--plan P] [--drop NAME,...] [--kinds K,...]\n"
    "                          [--batch B --height H --width W --tokens L] [--format text|json|csv]\n"
    "\n"
    "Lists the removable units of the teacher M, or of the student of plan P: each with its\n"
    "canonical name (a plan entry; pairs joined by '+'), kind, the parameters and MACs it\n"
    "removes (MACs at the given size, default the config's sample_size x 8, batch 1, 77 tokens),\n"
    "and whether a diffusers config can describe the resulting student.\n"
    "  --kinds K     transformer_layer, mid_block_reduction, mid_block_removal, resnet_pair,\n"
    "                attention_level, or all (default)\n";

int cmd_candidates(int argc, char **argv) {
    const char *model = NULL, *plan_path = NULL, *drop = NULL, *kinds = "all", *fmt = "text", *batch = NULL,
               *height = NULL, *width = NULL, *tokens = NULL;
    const Opt opts[] = {{"--model", 1, &model}, {"--plan", 1, &plan_path}, {"--drop", 1, &drop},
                        {"--kinds", 1, &kinds}, {"--format", 1, &fmt}, {"--batch", 1, &batch},
                        {"--height", 1, &height}, {"--width", 1, &width}, {"--tokens", 1, &tokens},
                        {NULL, 0, NULL}};
    int rc = cli_parse(argc, argv, opts, CAND_USAGE), mask;
    if (rc) return rc;
    if (!model) return err_set(ERR_USAGE, "candidates: --model is required (see unetlab candidates --help)");
    Format f;
    if ((rc = cli_format(fmt, &f, 1)) || (rc = cand_kinds_parse("--kinds", kinds, &mask))) return rc;
    ModelSource m;
    if ((rc = model_resolve(&m, model))) { model_source_free(&m); return rc; }
    Shape s;
    Plan base;
    Arch student;
    Candidate *c = NULL;
    int n = 0;
    if ((rc = cli_shape(&m.arch, batch, height, width, tokens, &s))) goto done;
    if ((rc = cli_student(&m.arch, plan_path, drop, &base, &student))) { plan_free(&base); goto done; }
    rc = cand_enumerate(&m.arch, &base, mask, &s, &c, &n);
    plan_free(&base);
    if (rc) goto done;
    if (f == FORMAT_JSON) {
        cJSON *o = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(o, "candidates");
        cJSON_AddStringToObject(o, "model", model);
        for (int i = 0; i < n; i++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "name", c[i].name);
            cJSON_AddStringToObject(e, "kind", cand_kind_name(c[i].kind));
            cJSON_AddNumberToObject(e, "params_removed", (double)c[i].params_removed);
            cJSON_AddNumberToObject(e, "macs_removed", (double)c[i].macs_removed);
            cJSON_AddNumberToObject(e, "student_params", (double)c[i].params);
            cJSON_AddBoolToObject(e, "expressible", c[i].expressible);
            cJSON_AddItemToArray(arr, e);
        }
        char *txt = cJSON_Print(o);
        puts(txt);
        free(txt);
        cJSON_Delete(o);
    } else if (f == FORMAT_CSV) {
        printf("name,kind,params_removed,macs_removed,student_params,expressible\n");
        for (int i = 0; i < n; i++)
            printf("%s,%s,%lld,%lld,%lld,%d\n", c[i].name, cand_kind_name(c[i].kind), (long long)c[i].params_removed,
                   (long long)c[i].macs_removed, (long long)c[i].params, c[i].expressible);
    } else {
        char b1[32];
        printf("%-72s %-20s %14s %10s  %s\n", "candidate", "kind", "params", "GMACs", "config");
        for (int i = 0; i < n; i++)
            printf("%-72s %-20s %14s %10.3f  %s\n", c[i].name, cand_kind_name(c[i].kind),
                   cli_commas(-c[i].params_removed, b1, sizeof b1), -(double)c[i].macs_removed / 1e9,
                   c[i].expressible ? "yes" : "no");
        printf("\n%d candidates; params and GMACs are what each removes (batch %d, %dx%d px, %d tokens)\n", n,
               s.batch, s.height * 8, s.width * 8, s.tokens);
    }
done:
    cand_free_all(c, n);
    model_source_free(&m);
    return rc;
}

static const char PLAN_USAGE[] =
    "usage: unetlab plan show P [--model M] [--drop NAME,...]\n"
    "\n"
    "Prints the diffusers UNet2DConditionModel config.json of the student that plan P defines\n"
    "on the teacher M (default: the plan's \"teacher\" field). Exit 7 when no diffusers config\n"
    "can describe it (diffusers gives the mid block the depth of the last down block's first\n"
    "attention). The student's parameter count goes to stderr.\n";

int cmd_plan(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "show")) {
        if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) { fputs(PLAN_USAGE, stdout); return -1; }
        return err_set(ERR_USAGE, "plan: expected 'plan show P' (see unetlab plan --help)");
    }
    const char *model = NULL, *drop = NULL;
    const Opt opts[] = {{"--model", 1, &model}, {"--drop", 1, &drop}, {NULL, 0, NULL}};
    /* plan show P [options]: P is the one positional argument, right after "show" */
    if (argc < 3 || argv[2][0] == '-') {
        if (argc >= 3 && (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h"))) { fputs(PLAN_USAGE, stdout); return -1; }
        return err_set(ERR_USAGE, "plan show: a plan file is required (see unetlab plan --help)");
    }
    const char *path = argv[2];
    argv[2] = "plan show";
    int rc = cli_parse(argc - 2, argv + 2, opts, PLAN_USAGE);
    if (rc) return rc;
    Plan p;
    if ((rc = plan_load(&p, path))) return rc;
    if (drop) plan_add_csv(&p, drop);
    if (!model) model = p.teacher;
    if (!model) { plan_free(&p); return err_set(ERR_USAGE, "plan show: '%s' names no teacher; give --model", path); }
    ModelSource m;
    Arch st;
    char *cfg = NULL;
    if (!(rc = model_resolve(&m, model)) && !(rc = plan_apply(&m.arch, &p, &st)) &&
        !(rc = plan_config_json(&st, m.config_text, &cfg))) {
        puts(cfg);
        Shape s = {1, 8, 8, 4};
        ModuleTree t;
        unet_tree_build(&t, &st, &s);
        char b[32];
        fprintf(stderr, "unetlab: student of '%s' on %s: %s parameters\n", path, model, cli_commas(t.m[0].params, b, sizeof b));
        unet_tree_free(&t);
    }
    free(cfg);
    plan_free(&p);
    model_source_free(&m);
    return rc;
}
