/* plan: see plan.h. */
#include "plan.h"
#include "err.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Finds the block that a teacher path "down_blocks.I", "up_blocks.I" or
 * "mid_block" names; *rest points after it. */
static Block *find_block(Arch *a, const char *name, const char **rest) {
    int i, n = 0;
    if (sscanf(name, "down_blocks.%d%n", &i, &n) == 1 && n && i >= 0 && i < a->n_blocks) { *rest = name + n; return &a->down[i]; }
    n = 0;
    if (sscanf(name, "up_blocks.%d%n", &i, &n) == 1 && n && i >= 0 && i < a->n_blocks) { *rest = name + n; return &a->up[i]; }
    if (!strncmp(name, "mid_block", 9) && a->has_mid) { *rest = name + 9; return &a->mid; }
    return NULL;
}

int plan_drop_layer(Arch *a, const char *name) {
    const char *rest;
    Block *b = find_block(a, name, &rest);
    int j, k, n = 0;
    if (!b || sscanf(rest, ".attentions.%d.transformer_blocks.%d%n", &j, &k, &n) != 2 || rest[n] != '\0')
        return err_set(ERR_PLAN, "'%s': not a transformer layer of this model (expected e.g. down_blocks.1.attentions.0.transformer_blocks.0)", name);
    int ja = -1;
    for (int x = 0; x < b->n_attn; x++)
        if (b->src_attn[x] == j) ja = x;
    int ka = -1;
    for (int x = 0; ja >= 0 && x < b->depth[ja]; x++)
        if (b->src_tb[ja][x] == k) ka = x;
    if (ka < 0) return err_set(ERR_PLAN, "'%s': no such transformer layer in this model (or already removed)", name);
    if (b->depth[ja] == 1)
        return err_set(ERR_PLAN, "'%s': cannot remove the last transformer layer of its attention", name);
    for (int x = ka; x + 1 < b->depth[ja]; x++) b->src_tb[ja][x] = b->src_tb[ja][x + 1];
    b->depth[ja]--;
    return 0;
}

int plan_drop_list(Arch *a, const char *csv) {
    char *s = xstrdup(csv), *save = NULL;
    int rc = 0;
    for (char *tok = strtok_r(s, ",", &save); tok && !rc; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ') tok++;
        if (*tok) rc = plan_drop_layer(a, tok);
    }
    free(s);
    return rc;
}
