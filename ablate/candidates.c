/* candidates: see candidates.h. Each candidate is tried by applying it (the
 * same plan_apply every command uses), so "removable" means exactly "the
 * student builds from the teacher's weights". */
#include "candidates.h"
#include "err.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct { CandKind k; const char *name; } KINDS[] = {
    {CAND_TRANSFORMER_LAYER, "transformer_layer"}, {CAND_MID_REDUCTION, "mid_block_reduction"},
    {CAND_MID_REMOVAL, "mid_block_removal"},       {CAND_RESNET_PAIR, "resnet_pair"},
    {CAND_ATTENTION_LEVEL, "attention_level"},
};

const char *cand_kind_name(CandKind k) {
    for (size_t i = 0; i < sizeof KINDS / sizeof *KINDS; i++)
        if (KINDS[i].k == k) return KINDS[i].name;
    return "?";
}

int cand_kinds_parse(const char *flag, const char *s, int *mask) {
    *mask = 0;
    char *c = xstrdup(s), *save = NULL;
    int rc = 0;
    for (char *tok = strtok_r(c, ",", &save); tok && !rc; tok = strtok_r(NULL, ",", &save)) {
        int found = !strcmp(tok, "all") ? CAND_ALL : 0;
        for (size_t i = 0; i < sizeof KINDS / sizeof *KINDS; i++)
            if (!strcmp(tok, KINDS[i].name)) found = KINDS[i].k;
        if (!found)
            rc = err_set(ERR_USAGE, "option '%s': unknown kind '%s' (transformer_layer, mid_block_reduction, mid_block_removal, resnet_pair, attention_level, all)", flag, tok);
        *mask |= found;
    }
    free(c);
    return rc;
}

typedef struct {
    const Arch *teacher;
    const Plan *base;
    const Shape *s;
    int64_t base_params, base_macs;
    Candidate *c;
    int n, cap;
} List;

static void totals(const Arch *a, const Shape *s, int64_t *params, int64_t *macs) {
    ModuleTree t;
    unet_tree_build(&t, a, s);
    *params = t.m[0].params;
    *macs = t.m[0].macs;
    unet_tree_free(&t);
}

/* Adds the candidate `name` (entries joined by '+') when it applies cleanly. */
static void try_add(List *l, const char *name, CandKind kind) {
    Plan p = plan_copy(l->base);
    char *parts = xstrdup(name), *save = NULL;
    for (char *tok = strtok_r(parts, "+", &save); tok; tok = strtok_r(NULL, "+", &save)) plan_add(&p, tok);
    free(parts);
    Arch st;
    if (plan_apply(l->teacher, &p, &st)) { plan_free(&p); return; }
    if (l->n == l->cap) l->c = xrealloc(l->c, (size_t)(l->cap = l->cap ? 2 * l->cap : 64) * sizeof *l->c);
    Candidate *c = &l->c[l->n++];
    c->name = xstrdup(name);
    c->kind = kind;
    c->plan = p;
    int64_t macs;
    totals(&st, l->s, &c->params, &macs);
    c->params_removed = l->base_params - c->params;
    c->macs_removed = l->base_macs - macs;
    char *cfg = NULL;
    c->expressible = plan_config_json(&st, "{}", &cfg) == 0;
    free(cfg);
}

static void block_candidates(List *l, const char *bp, const Block *b, int is_mid, int mask) {
    char name[256];
    if (mask & CAND_TRANSFORMER_LAYER)
        for (int j = 0; j < b->n_attn; j++)
            for (int k = 0; b->depth[j] > 1 && k < b->depth[j]; k++) {
                snprintf(name, sizeof name, "%s.attentions.%d.transformer_blocks.%d", bp, b->src_attn[j], b->src_tb[j][k]);
                try_add(l, name, CAND_TRANSFORMER_LAYER);
            }
    if (is_mid) {
        if ((mask & CAND_MID_REDUCTION) && b->n_attn) try_add(l, "mid_block.attentions", CAND_MID_REDUCTION);
        if (mask & CAND_MID_REMOVAL) try_add(l, "mid_block", CAND_MID_REMOVAL);
    } else if ((mask & CAND_ATTENTION_LEVEL) && b->n_attn) {
        snprintf(name, sizeof name, "%s.attentions", bp);
        try_add(l, name, CAND_ATTENTION_LEVEL);
    }
}

int cand_enumerate(const Arch *teacher, const Plan *base, int mask, const Shape *s, Candidate **out, int *n) {
    *out = NULL;
    *n = 0;
    Arch a;
    int rc = plan_apply(teacher, base, &a);
    if (rc) return rc;
    List l = {teacher, base, s, 0, 0, NULL, 0, 0};
    totals(&a, s, &l.base_params, &l.base_macs);
    char bp[64], name[256];
    for (int i = 0; i < a.n_blocks; i++) {
        snprintf(bp, sizeof bp, "down_blocks.%d", i);
        block_candidates(&l, bp, &a.down[i], 0, mask);
    }
    if (a.has_mid) block_candidates(&l, "mid_block", &a.mid, 1, mask);
    for (int i = 0; i < a.n_blocks; i++) {
        snprintf(bp, sizeof bp, "up_blocks.%d", i);
        block_candidates(&l, bp, &a.up[i], 0, mask);
    }
    if (mask & CAND_RESNET_PAIR)
        for (int i = 0; i < a.n_blocks; i++) {
            int u = a.n_blocks - 1 - i;
            for (int x = 0; x < a.down[i].n_resnets; x++)
                for (int y = 0; y < a.up[u].n_resnets; y++) {
                    snprintf(name, sizeof name, "down_blocks.%d.resnets.%d+up_blocks.%d.resnets.%d", i,
                             a.down[i].src_resnet[x], u, a.up[u].src_resnet[y]);
                    try_add(&l, name, CAND_RESNET_PAIR);
                }
        }
    *out = l.c;
    *n = l.n;
    return 0;
}

void cand_free_all(Candidate *c, int n) {
    for (int i = 0; i < n; i++) {
        free(c[i].name);
        plan_free(&c[i].plan);
    }
    free(c);
}
