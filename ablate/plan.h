/* plan: a student is the teacher plus a plan of removals, applied to the
 * teacher's Arch as data (no model-specific branches). Names are the
 * teacher's diffusers module names. Tested by tests/test_config.c and the
 * student fixtures in tests/test_fixtures.c. */
#ifndef UNETLAB_PLAN_H
#define UNETLAB_PLAN_H
#include "config.h"

/* Removes one transformer layer, named as in the teacher
 * ("down_blocks.2.attentions.0.transformer_blocks.1"), from a. ERR_PLAN if
 * there is no such layer, it is already removed, or it is the attention's last. */
int plan_drop_layer(Arch *a, const char *name);
/* Applies a comma-separated list of such names. */
int plan_drop_list(Arch *a, const char *csv);

#endif
