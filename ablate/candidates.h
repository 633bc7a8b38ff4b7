/* candidates: the removable units of a model (a teacher, or the student of a
 * base plan), each a canonical name, a kind, the plan entries it adds, and
 * what it removes in parameters and MACs. Kinds:
 *   transformer_layer    one X.attentions.J.transformer_blocks.K (its attention keeps >= 1)
 *   mid_block_reduction  mid_block.attentions: UNetMidBlock2DCrossAttn -> one ResNet
 *   mid_block_removal    mid_block: no mid block
 *   resnet_pair          down_blocks.I.resnets.J+up_blocks.U.resnets.K, wherever every
 *                        survivor keeps its weight shapes (checked, not assumed)
 *   attention_level      X.attentions: all attentions of one block
 * Tested by tests/test_plan.c. */
#ifndef UNETLAB_CANDIDATES_H
#define UNETLAB_CANDIDATES_H
#include "config.h"
#include "plan.h"
#include "unet.h"

typedef enum {
    CAND_TRANSFORMER_LAYER = 1 << 0,
    CAND_MID_REDUCTION = 1 << 1,
    CAND_MID_REMOVAL = 1 << 2,
    CAND_RESNET_PAIR = 1 << 3,
    CAND_ATTENTION_LEVEL = 1 << 4,
    CAND_ALL = 0x1f,
} CandKind;

typedef struct {
    char *name;          /* entries joined by '+' */
    CandKind kind;
    Plan plan;           /* base plan + this candidate's entries */
    int64_t params;      /* the student's total */
    int64_t params_removed, macs_removed;
    int expressible;     /* a diffusers config can describe the student */
} Candidate;

const char *cand_kind_name(CandKind k);
/* Parses "transformer_layer,resnet_pair" (or "all") into a mask; ERR_USAGE naming a bad kind. */
int cand_kinds_parse(const char *flag, const char *s, int *mask);

/* Every candidate of the kinds in mask on teacher + base, MACs at shape s.
 * *out is a new array of *n candidates (cand_free_all). */
int cand_enumerate(const Arch *teacher, const Plan *base, int mask, const Shape *s, Candidate **out, int *n);
void cand_free_all(Candidate *c, int n);

#endif
