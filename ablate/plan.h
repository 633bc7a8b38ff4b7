/* plan: a student is the teacher plus a plan of removals, applied to the
 * teacher's Arch as data (no model-specific branches). A plan is a set of
 * teacher module names, each one of:
 *   X.attentions.J.transformer_blocks.K   one transformer layer
 *   down_blocks.I.resnets.J               a ResNet and its attention (pairs with an up one)
 *   up_blocks.I.resnets.J                 likewise, on the up path
 *   down_blocks.I.attentions              every attention of a block (CrossAttn*Block2D -> *Block2D)
 *   up_blocks.I.attentions                likewise
 *   mid_block.attentions                  UNetMidBlock2DCrossAttn -> UNetMidBlock2D (one ResNet)
 *   mid_block                             no mid block at all
 * A plan is valid when every surviving module keeps its weight shapes and the
 * down and up paths still pair up (up block = down block's ResNets + 1).
 * Stored as JSON: {"format": "unetlab-plan", "version": 1, "teacher": "...",
 * "remove": [...]}. Tested by tests/test_plan.c and the fixture students. */
#ifndef UNETLAB_PLAN_H
#define UNETLAB_PLAN_H
#include "config.h"
#include <stdint.h>

typedef struct {
    int n;
    char **remove;   /* sorted, unique */
    char *teacher;   /* the plan file's "teacher" field, or NULL */
} Plan;

void plan_init(Plan *p);
void plan_free(Plan *p);
Plan plan_copy(const Plan *p);
/* Adds a removal (no-op if present); keeps the list sorted. */
void plan_add(Plan *p, const char *name);
/* Parses a plan JSON file / text; ERR_PLAN naming the file and field. */
int plan_load(Plan *p, const char *path);
int plan_parse(Plan *p, const char *json, size_t len, const char *label);
/* Canonical JSON text (new string): {"format":"unetlab-plan","version":1,"teacher":T,"remove":[...]}. */
char *plan_to_json(const Plan *p, const char *teacher);
/* 16 hex digits identifying the removal set (FNV-1a 64 of the sorted names). */
void plan_hash(const Plan *p, char out[17]);

/* Applies the plan to a copy of the teacher's Arch: *student. ERR_PLAN naming
 * the entry that names nothing removable, or the first surviving tensor whose
 * shape would change. */
int plan_apply(const Arch *teacher, const Plan *p, Arch *student);
/* Removes one entry from a (used by plan_apply; a may already be a student). */
int plan_remove(Arch *a, const char *name);
/* Appends the comma-separated names of a --drop list to p. */
void plan_add_csv(Plan *p, const char *csv);
/* Whether a student Arch is a valid network built from the teacher's weights:
 * ERR_PLAN naming the first tensor of changed shape or the unpaired blocks. */
int plan_check(const Arch *teacher, const Arch *student);
/* Writes the diffusers config.json of student into a new string, starting
 * from the teacher's config text. ERR_PLAN when diffusers' config cannot say
 * it (its mid block's depth is tied to the last down block's first attention). */
int plan_config_json(const Arch *student, const char *teacher_config, char **out);

#endif
