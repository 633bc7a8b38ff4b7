/* singlefile: see singlefile.h. The rules are data (RULE and the renames);
 * the code only walks an architecture in the LDM layout's order to number its
 * units, and reads an architecture back from the units a file holds. */
#include "singlefile.h"
#include "err.h"
#include "fileio.h"
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the rules ---------------------------------------------------------- */

/* How a name inside a unit changes. A rename ending in '.' renames that prefix
 * and keeps the rest of the name; any other renames the whole rest. */
typedef struct {
    const char *ldm, *diffusers;
} Rename;

static const Rename LEAF[] = {{"weight", "weight"}, {"bias", "bias"}, {NULL, NULL}};
static const Rename RESNET[] = {{"in_layers.0.", "norm1."},  {"in_layers.2.", "conv1."},
                                {"emb_layers.1.", "time_emb_proj."}, {"out_layers.0.", "norm2."},
                                {"out_layers.3.", "conv2."}, {"skip_connection.", "conv_shortcut."},
                                {NULL, NULL}};
/* A SpatialTransformer is diffusers' Transformer2DModel under the same names. */
static const Rename TRANSFORMER[] = {{"norm.", "norm."}, {"proj_in.", "proj_in."},
                                     {"transformer_blocks.", "transformer_blocks."}, {"proj_out.", "proj_out."},
                                     {NULL, NULL}};
static const Rename DOWNSAMPLER[] = {{"op.", "conv."}, {NULL, NULL}};
static const Rename UPSAMPLER[] = {{"conv.", "conv."}, {NULL, NULL}};

typedef enum {
    U_CONV_IN, U_TIME_1, U_TIME_2, U_ADD_1, U_ADD_2, U_NORM_OUT, U_CONV_OUT,
    U_DOWN_RESNET, U_DOWN_ATTN, U_DOWNSAMPLER, U_MID_RESNET, U_MID_ATTN, U_UP_RESNET, U_UP_ATTN, U_UPSAMPLER,
    U_KINDS
} UnitKind;

/* Where each kind of unit is named in either layout. '#' stands for an index:
 * in LDM names the entry N, then the sub-index K; in diffusers names the block
 * i, then the layer j. */
static const struct {
    const char *ldm, *diffusers;
    const Rename *inner;
} RULE[U_KINDS] = {
    [U_CONV_IN] = {"input_blocks.0.0.", "conv_in.", LEAF},
    [U_TIME_1] = {"time_embed.0.", "time_embedding.linear_1.", LEAF},
    [U_TIME_2] = {"time_embed.2.", "time_embedding.linear_2.", LEAF},
    [U_ADD_1] = {"label_emb.0.0.", "add_embedding.linear_1.", LEAF},
    [U_ADD_2] = {"label_emb.0.2.", "add_embedding.linear_2.", LEAF},
    [U_NORM_OUT] = {"out.0.", "conv_norm_out.", LEAF},
    [U_CONV_OUT] = {"out.2.", "conv_out.", LEAF},
    [U_DOWN_RESNET] = {"input_blocks.#.0.", "down_blocks.#.resnets.#.", RESNET},
    [U_DOWN_ATTN] = {"input_blocks.#.1.", "down_blocks.#.attentions.#.", TRANSFORMER},
    [U_DOWNSAMPLER] = {"input_blocks.#.0.", "down_blocks.#.downsamplers.0.", DOWNSAMPLER},
    [U_MID_RESNET] = {"middle_block.#.", "mid_block.resnets.#.", RESNET},
    [U_MID_ATTN] = {"middle_block.#.", "mid_block.attentions.#.", TRANSFORMER},
    [U_UP_RESNET] = {"output_blocks.#.0.", "up_blocks.#.resnets.#.", RESNET},
    [U_UP_ATTN] = {"output_blocks.#.1.", "up_blocks.#.attentions.#.", TRANSFORMER},
    [U_UPSAMPLER] = {"output_blocks.#.#.", "up_blocks.#.upsamplers.0.", UPSAMPLER},
};

typedef struct {
    char ldm[64], diffusers[80]; /* the unit's name prefixes; ldm without SF_PREFIX */
    const Rename *inner;
} SfUnit;

struct SfRules {
    int n, cap;
    SfUnit *u;
};

/* pat with its '#'s replaced by a, then b. */
static void expand(char *out, size_t size, const char *pat, int a, int b) {
    const int arg[2] = {a, b};
    size_t n = 0;
    int k = 0;
    for (const char *p = pat; *p && n + 1 < size; p++) {
        if (*p != '#') { out[n++] = *p; continue; }
        int w = snprintf(out + n, size - n, "%d", arg[k < 2 ? k : 1]);
        k++;
        if (w < 0 || (size_t)w >= size - n) die("internal: LDM name pattern '%s' too long", pat);
        n += (size_t)w;
    }
    out[n] = '\0';
}

static void add_unit(SfRules *r, UnitKind kind, int n, int k, int i, int j) {
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 64;
        r->u = xrealloc(r->u, (size_t)r->cap * sizeof *r->u);
    }
    SfUnit *u = &r->u[r->n++];
    expand(u->ldm, sizeof u->ldm, RULE[kind].ldm, n, k);
    expand(u->diffusers, sizeof u->diffusers, RULE[kind].diffusers, i, j);
    u->inner = RULE[kind].inner;
}

/* The LDM layout numbers the units of the architecture in forward order:
 * input_blocks.0 is conv_in, then each down block's layers (a resnet at .0,
 * its attention at .1) and, but for the last block, its downsampler in an
 * entry of its own; middle_block.0, .1, .2 the mid block's resnet, attention,
 * resnet; output_blocks each up block's layers, the upsampler in the last
 * layer's entry after the resnet and the attention. */
SfRules *sf_rules_new(const Arch *a) {
    SfRules *r = xcalloc(1, sizeof *r);
    add_unit(r, U_CONV_IN, 0, 0, 0, 0);
    add_unit(r, U_TIME_1, 0, 0, 0, 0);
    add_unit(r, U_TIME_2, 0, 0, 0, 0);
    if (a->text_time) {
        add_unit(r, U_ADD_1, 0, 0, 0, 0);
        add_unit(r, U_ADD_2, 0, 0, 0, 0);
    }
    add_unit(r, U_NORM_OUT, 0, 0, 0, 0);
    add_unit(r, U_CONV_OUT, 0, 0, 0, 0);
    int n = 1;
    for (int i = 0; i < a->n_blocks; i++) {
        const Block *b = &a->down[i];
        for (int j = 0; j < b->n_resnets; j++, n++) {
            add_unit(r, U_DOWN_RESNET, n, 0, i, j);
            if (j < b->n_attn) add_unit(r, U_DOWN_ATTN, n, 0, i, j);
        }
        if (b->sampler) add_unit(r, U_DOWNSAMPLER, n++, 0, i, 0);
    }
    if (a->has_mid) {
        const Block *m = &a->mid;
        if (m->n_attn) { /* resnet, then (attention, resnet) per attention */
            add_unit(r, U_MID_RESNET, 0, 0, 0, 0);
            for (int j = 0; j < m->n_attn; j++) {
                add_unit(r, U_MID_ATTN, 2 * j + 1, 0, j, 0);
                add_unit(r, U_MID_RESNET, 2 * j + 2, 0, j + 1, 0);
            }
        } else {
            for (int j = 0; j < m->n_resnets; j++) add_unit(r, U_MID_RESNET, j, 0, j, 0);
        }
    }
    n = 0;
    for (int i = 0; i < a->n_blocks; i++) {
        const Block *b = &a->up[i];
        for (int j = 0; j < b->n_resnets; j++, n++) {
            add_unit(r, U_UP_RESNET, n, 0, i, j);
            if (j < b->n_attn) add_unit(r, U_UP_ATTN, n, 0, i, j);
            if (j == b->n_resnets - 1 && b->sampler) add_unit(r, U_UPSAMPLER, n, 1 + (j < b->n_attn), i, 0);
        }
    }
    return r;
}

void sf_rules_free(SfRules *r) {
    if (!r) return;
    free(r->u);
    free(r);
}

/* The rename of `inner` that fits `rest` (a name inside a unit), from the LDM
 * side or the diffusers side; NULL if none does. */
static const Rename *find_rename(const Rename *inner, int from_ldm, const char *rest) {
    for (const Rename *r = inner; r->ldm; r++) {
        const char *from = from_ldm ? r->ldm : r->diffusers;
        size_t n = strlen(from);
        if (from[n - 1] == '.' ? !strncmp(rest, from, n) : !strcmp(rest, from)) return r;
    }
    return NULL;
}

/* name -> out through the unit whose prefix (on the side from_ldm says) it
 * starts with; head is prepended to the result. -1 if no unit places it. */
static int map_name(const SfRules *r, int from_ldm, const char *name, const char *head, char *out, size_t size) {
    out[0] = '\0';
    for (int i = 0; i < r->n; i++) {
        const SfUnit *u = &r->u[i];
        const char *pre = from_ldm ? u->ldm : u->diffusers, *to = from_ldm ? u->diffusers : u->ldm;
        size_t n = strlen(pre);
        if (strncmp(name, pre, n)) continue;
        const Rename *rn = find_rename(u->inner, from_ldm, name + n);
        if (!rn) continue;
        const char *from_in = from_ldm ? rn->ldm : rn->diffusers, *to_in = from_ldm ? rn->diffusers : rn->ldm;
        size_t k = strlen(from_in);
        const char *tail = from_in[k - 1] == '.' ? name + n + k : "";
        int w = snprintf(out, size, "%s%s%s%s", head, to, to_in, tail);
        if (w >= 0 && (size_t)w < size) return 0;
        out[0] = '\0';
        return -1;
    }
    return -1;
}

int sf_to_diffusers(const SfRules *r, const char *ldm, char *out, size_t size) {
    size_t p = strlen(SF_PREFIX);
    if (strncmp(ldm, SF_PREFIX, p)) { out[0] = '\0'; return -1; }
    return map_name(r, 1, ldm + p, "", out, size);
}

int sf_to_ldm(const SfRules *r, const char *diffusers, char *out, size_t size) {
    return map_name(r, 0, diffusers, SF_PREFIX, out, size);
}

char *sf_ldm_dup(const SfRules *r, const char *diffusers) {
    char b[512];
    if (sf_to_ldm(r, diffusers, b, sizeof b)) die("internal: no LDM name for '%s'", diffusers);
    return xstrdup(b);
}

/* ---- reading the architecture from the tensors -------------------------- */

#define SF_MAX_ENTRY 128 /* entries of input_blocks / output_blocks / middle_block looked at */

/* What one LDM entry (input_blocks.N, output_blocks.N) or middle_block unit holds. */
typedef struct {
    int resnet, attn, down; /* a resnet (at .0), an attention (at .1), a downsampler (.0.op) */
    int upsampler;          /* an upsampler (.K.conv) */
    int64_t ch;             /* the resnet's output channels, 0 unknown */
    int depth;              /* transformer_blocks in the attention */
    int64_t cross;          /* the attention's attn2.to_k width, 0 unknown */
    int proj_ndim;          /* its proj_in.weight's dimensions, 0 unknown */
} Entry;

static int present(const Entry *e) { return e->resnet || e->attn || e->down || e->upsampler; }

/* "12." at s: 12 into *v (below SF_MAX_ENTRY, no leading zeros), *after past the dot. */
static int parse_index(const char *s, int *v, const char **after) {
    int n = 0, k = 0;
    for (; s[k] >= '0' && s[k] <= '9'; k++) {
        n = 10 * n + (s[k] - '0');
        if (n >= SF_MAX_ENTRY) return 0;
    }
    if (k == 0 || s[k] != '.' || (k > 1 && s[0] == '0')) return 0;
    *v = n;
    *after = s + k + 1;
    return 1;
}

static void note_resnet(Entry *e, const char *rest, const StTensor *t) {
    e->resnet = 1;
    /* its output channels: the first dimension of conv1, norm2, conv2 or time_emb_proj */
    static const char *const out_ch[] = {"in_layers.2.weight", "out_layers.0.weight", "out_layers.3.weight",
                                         "emb_layers.1.weight"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(rest, out_ch[i]) && t->ndim >= 1 && !e->ch) e->ch = t->shape[0];
}

static void note_attention(Entry *e, const char *rest, const StTensor *t) {
    e->attn = 1;
    int k;
    const char *after;
    if (!strncmp(rest, "transformer_blocks.", 19) && parse_index(rest + 19, &k, &after)) {
        if (k + 1 > e->depth) e->depth = k + 1;
        if (!strcmp(after, "attn2.to_k.weight") && t->ndim == 2) e->cross = t->shape[1];
    }
    if (!strcmp(rest, "proj_in.weight")) e->proj_ndim = t->ndim;
}

/* One block as the entries describe it. */
typedef struct {
    int layers, attn, sampler, first; /* first: its first LDM entry */
    int64_t ch;
    int depth[MAX_LAYERS];
} Level;

/* int64 -> int for the config, saturating: config_parse then refuses the value by name. */
static int clampi(int64_t v) { return v > INT_MAX / 2 ? INT_MAX / 2 : v < 0 ? 0 : (int)v; }

static int uniform(const int *d, int n) {
    for (int j = 1; j < n; j++)
        if (d[j] != d[0]) return 0;
    return 1;
}

/* A block's per-layer depths: one number when they agree (as presets write them), else a list. */
static cJSON *depths_json(const int *d, int n) { return uniform(d, n) ? cJSON_CreateNumber(d[0]) : cJSON_CreateIntArray(d, n); }

/* Groups the entries of input_blocks (from 1) or output_blocks (from 0) into
 * blocks, each ending at its sampler; the last block has none. Stops at the
 * first entry holding nothing: what follows is left to the name check. */
static int group(const char *label, const char *what, const Entry *e, int from, Level *lv, int *nlv, int *end) {
    int n = 0, k;
    Level *b = &lv[0];
    memset(lv, 0, MAX_BLOCKS * sizeof *lv);
    for (k = from; k < SF_MAX_ENTRY && present(&e[k]); k++) {
        const Entry *x = &e[k];
        if (x->down) { /* input_blocks: an entry of its own after the block's layers */
            if (x->resnet || x->attn)
                return err_set(ERR_MODEL, "'%s': %s.%d holds both a downsampler and a layer", label, what, k);
            if (!b->layers) return err_set(ERR_MODEL, "'%s': %s.%d: a downsampler that follows no layer", label, what, k);
            b->sampler = 1;
            if (++n == MAX_BLOCKS) return err_set(ERR_MODEL, "'%s': more than %d blocks in %s", label, MAX_BLOCKS, what);
            b = &lv[n];
            continue;
        }
        if (!x->resnet) return err_set(ERR_MODEL, "'%s': %s.%d has no resnet (%s.%d.0)", label, what, k, what, k);
        if (x->attn && !x->depth)
            return err_set(ERR_MODEL, "'%s': %s.%d.1 (an attention) has no transformer_blocks", label, what, k);
        if (b->layers == MAX_LAYERS - 1)
            return err_set(ERR_MODEL, "'%s': more than %d layers in the block ending at %s.%d", label, MAX_LAYERS - 1, what, k);
        if (b->layers && x->attn != b->attn)
            return err_set(ERR_MODEL, "'%s': %s.%d: attention on some layers of a block only, a block diffusers does not"
                           " build", label, what, k);
        if (!b->layers) b->first = k, b->ch = x->ch;
        b->attn = x->attn;
        b->depth[b->layers++] = x->depth;
        if (x->upsampler) { /* output_blocks: in the block's last layer */
            b->sampler = 1;
            if (++n == MAX_BLOCKS) return err_set(ERR_MODEL, "'%s': more than %d blocks in %s", label, MAX_BLOCKS, what);
            b = &lv[n];
        }
    }
    if (b->layers) n++;
    *end = k;
    if (!n) return err_set(ERR_MODEL, "'%s': no %s.%d (no UNet layers)", label, what, from);
    if (lv[n - 1].sampler)
        return err_set(ERR_MODEL, "'%s': the last block of %s has a %s, which diffusers' last block has not", label, what,
                       from ? "downsampler" : "upsampler");
    *nlv = n;
    return 0;
}

int sf_infer_config(const StTensor *t, int n, const char *label, char **config_text) {
    *config_text = NULL;
    Entry *in = xcalloc(3 * SF_MAX_ENTRY, sizeof *in), *out = in + SF_MAX_ENTRY, *mid = out + SF_MAX_ENTRY;
    const StTensor *conv_in = NULL, *conv_out = NULL, *label_emb = NULL;
    size_t plen = strlen(SF_PREFIX);
    for (int i = 0; i < n; i++) {
        if (strncmp(t[i].name, SF_PREFIX, plen)) continue;
        const char *name = t[i].name + plen, *rest;
        int e, k;
        if (!strcmp(name, "input_blocks.0.0.weight")) conv_in = &t[i];
        else if (!strcmp(name, "out.2.weight")) conv_out = &t[i];
        else if (!strcmp(name, "label_emb.0.0.weight")) label_emb = &t[i];
        else if (!strncmp(name, "input_blocks.", 13) && parse_index(name + 13, &e, &rest) && e > 0 &&
                 parse_index(rest, &k, &rest)) {
            if (k == 0 && find_rename(RESNET, 1, rest)) note_resnet(&in[e], rest, &t[i]);
            else if (k == 0 && find_rename(DOWNSAMPLER, 1, rest)) in[e].down = 1;
            else if (k == 1 && find_rename(TRANSFORMER, 1, rest)) note_attention(&in[e], rest, &t[i]);
        } else if (!strncmp(name, "output_blocks.", 14) && parse_index(name + 14, &e, &rest) &&
                   parse_index(rest, &k, &rest)) {
            if (k == 0 && find_rename(RESNET, 1, rest)) note_resnet(&out[e], rest, &t[i]);
            else if (k == 1 && find_rename(TRANSFORMER, 1, rest)) note_attention(&out[e], rest, &t[i]);
            else if (k >= 1 && find_rename(UPSAMPLER, 1, rest)) out[e].upsampler = 1;
        } else if (!strncmp(name, "middle_block.", 13) && parse_index(name + 13, &k, &rest)) {
            if (find_rename(RESNET, 1, rest)) note_resnet(&mid[k], rest, &t[i]);
            else if (find_rename(TRANSFORMER, 1, rest)) note_attention(&mid[k], rest, &t[i]);
        }
    }

    Level down[MAX_BLOCKS], up[MAX_BLOCKS];
    int nd = 0, nu = 0, in_end = 0, out_end = 0, rc = 0;
    cJSON *root = NULL;
    if (!conv_in || conv_in->ndim != 4) {
        rc = err_set(ERR_MODEL, "'%s': no 4-d tensor '" SF_PREFIX "input_blocks.0.0.weight' (conv_in) to read the"
                     " architecture from", label);
        goto done;
    }
    if (!conv_out || conv_out->ndim != 4) {
        rc = err_set(ERR_MODEL, "'%s': no 4-d tensor '" SF_PREFIX "out.2.weight' (conv_out) to read the architecture"
                     " from", label);
        goto done;
    }
    if ((rc = group(label, "input_blocks", in, 1, down, &nd, &in_end)) ||
        (rc = group(label, "output_blocks", out, 0, up, &nu, &out_end)))
        goto done;
    if (nu != nd) {
        rc = err_set(ERR_MODEL, "'%s': %d blocks in output_blocks, %d in input_blocks: not a UNet diffusers builds", label,
                     nu, nd);
        goto done;
    }
    for (int i = 0; i < nd; i++) {
        if (!down[i].ch) {
            rc = err_set(ERR_MODEL, "'%s': cannot read the channels of input_blocks.%d (no conv1, norm2, conv2 or"
                         " time_emb_proj weight)", label, down[i].first);
            goto done;
        }
        if (up[i].layers != down[nd - 1 - i].layers + 1) { /* diffusers: an up block has one layer more than its down block */
            rc = err_set(ERR_MODEL, "'%s': the up block at output_blocks.%d has %d layers; diffusers gives it %d (the layers"
                         " of the down block at input_blocks.%d, plus one)", label, up[i].first, up[i].layers,
                         down[nd - 1 - i].layers + 1, down[nd - 1 - i].first);
            goto done;
        }
    }
    /* the mid block: a resnet (UNetMidBlock2D), resnet-attention-resnet (UNetMidBlock2DCrossAttn), or none */
    int nm = 0;
    while (nm < SF_MAX_ENTRY && present(&mid[nm])) nm++;
    int mid_attn = nm == 3 && mid[0].resnet && !mid[0].attn && mid[1].attn && !mid[1].resnet && mid[2].resnet &&
                   !mid[2].attn;
    if (nm && !mid_attn && !(nm == 1 && mid[0].resnet && !mid[0].attn)) {
        rc = err_set(ERR_MODEL, "'%s': middle_block has %d units, not a mid block diffusers builds (a resnet; or a resnet,"
                     " an attention and a resnet)", label, nm);
        goto done;
    }

    /* one cross-attention width and one kind of projection for all attentions
     * (of the entries read as blocks: any other is left to the name check) */
    int64_t cross = 0;
    int proj = 0;
    for (int k = 0; k < in_end + out_end + nm; k++) {
        const Entry *x = k < in_end ? &in[k] : k < in_end + out_end ? &out[k - in_end] : &mid[k - in_end - out_end];
        if (x->cross && cross && x->cross != cross) {
            rc = err_set(ERR_MODEL, "'%s': attentions with different cross-attention widths (%lld and %lld): not"
                         " inferred; give the config as NAME.config.json beside the file", label, (long long)cross,
                         (long long)x->cross);
            goto done;
        }
        if (x->proj_ndim && proj && x->proj_ndim != proj) {
            rc = err_set(ERR_MODEL, "'%s': both linear and 1x1-convolution proj_in in its attentions", label);
            goto done;
        }
        if (x->cross) cross = x->cross;
        if (x->proj_ndim) proj = x->proj_ndim;
    }
    int sdxl = label_emb != NULL;
    if (!sdxl && proj == 2) { /* SD 2.x: head dim 64, and upcast_attention for some: nothing in the tensors says */
        rc = err_set(ERR_MODEL, "'%s': linear attention projections without label_emb (a Stable Diffusion 2.x layout):"
                     " its attention heads cannot be read from the tensors (SD 1.x and the SDXL family can); give its"
                     " diffusers config as NAME.config.json beside the file", label);
        goto done;
    }
    if (sdxl && label_emb->ndim != 2) {
        rc = err_set(ERR_MODEL, "'%s': tensor '" SF_PREFIX "label_emb.0.0.weight' is not 2-d", label);
        goto done;
    }

    /* attention heads: the SDXL family's are 64 wide, SD 1.x has 8 per attention */
    int heads[MAX_BLOCKS];
    for (int i = 0; i < nd; i++) {
        int64_t ch = down[i].ch;
        int attn = down[i].attn || up[nd - 1 - i].attn || (i == nd - 1 && mid_attn);
        if (sdxl && attn && ch % 64) {
            rc = err_set(ERR_MODEL, "'%s': the attentions of block %d are %lld channels wide, not a multiple of the SDXL"
                         " family's head size 64: give the config as NAME.config.json beside the file", label, i,
                         (long long)ch);
            goto done;
        }
        heads[i] = sdxl ? (ch >= 64 ? clampi(ch / 64) : 1) : 8;
    }

    /* transformer depths, written as diffusers reads them back: per down block
     * (the mid block takes the first of the last block's), and per up block
     * (reverse_...) where they are not the down block's mirrored */
    int md = mid_attn ? mid[1].depth : 1, tdepth[MAX_BLOCKS], nested = 0;
    cJSON *tl = cJSON_CreateArray(), *rtl = cJSON_CreateArray();
    for (int i = 0; i < nd; i++) {
        const Level *b = &down[i];
        if (b->attn) {
            cJSON_AddItemToArray(tl, depths_json(b->depth, b->layers));
            nested |= !uniform(b->depth, b->layers);
            tdepth[i] = b->depth[0];
        } else {
            tdepth[i] = i == nd - 1 ? md : 1;
            cJSON_AddItemToArray(tl, cJSON_CreateNumber(tdepth[i]));
        }
    }
    int reverse = nested;
    for (int i = 0; i < nu; i++) {
        const Level *b = &up[i];
        cJSON_AddItemToArray(rtl, b->attn ? depths_json(b->depth, b->layers) : cJSON_CreateNumber(1));
        for (int j = 0; b->attn && j < b->layers; j++) reverse |= b->depth[j] != tdepth[nd - 1 - i];
    }
    if (mid_attn && tdepth[nd - 1] != md) {
        cJSON_Delete(tl);
        cJSON_Delete(rtl);
        rc = err_set(ERR_MODEL, "'%s': middle_block.1 has %d transformer layers, input_blocks.%d.1 %d: diffusers' config"
                     " gives the mid block the depth of the last down block's first attention", label, md,
                     down[nd - 1].first, tdepth[nd - 1]);
        goto done;
    }

    /* the closest preset's config, with everything the tensors tell replaced */
    const char *base = config_preset(sdxl ? "sdxl-base" : "sd-1.5");
    if (!base) die("internal: preset %s missing", sdxl ? "sdxl-base" : "sd-1.5");
    root = cJSON_Parse(base);
    if (!root) die("internal: preset %s is not JSON", sdxl ? "sdxl-base" : "sd-1.5");
    cJSON_DeleteItemFromObjectCaseSensitive(root, "_diffusers_version");
    cJSON *dt = cJSON_CreateArray(), *ut = cJSON_CreateArray();
    int boc[MAX_BLOCKS], layers[MAX_BLOCKS], same_layers = 1;
    for (int i = 0; i < nd; i++) {
        cJSON_AddItemToArray(dt, cJSON_CreateString(down[i].attn ? "CrossAttnDownBlock2D" : "DownBlock2D"));
        cJSON_AddItemToArray(ut, cJSON_CreateString(up[i].attn ? "CrossAttnUpBlock2D" : "UpBlock2D"));
        boc[i] = clampi(down[i].ch);
        layers[i] = down[i].layers;
        same_layers &= layers[i] == layers[0];
    }
    config_json_set(root, "down_block_types", dt);
    config_json_set(root, "up_block_types", ut);
    config_json_set(root, "mid_block_type", !nm ? cJSON_CreateNull()
                                    : cJSON_CreateString(mid_attn ? "UNetMidBlock2DCrossAttn" : "UNetMidBlock2D"));
    config_json_set(root, "block_out_channels", cJSON_CreateIntArray(boc, nd));
    config_json_set(root, "layers_per_block", same_layers ? cJSON_CreateNumber(layers[0]) : cJSON_CreateIntArray(layers, nd));
    config_json_set(root, "attention_head_dim", sdxl ? cJSON_CreateIntArray(heads, nd) : cJSON_CreateNumber(8));
    config_json_set(root, "transformer_layers_per_block", tl);
    if (reverse) config_json_set(root, "reverse_transformer_layers_per_block", rtl);
    else {
        cJSON_Delete(rtl);
        cJSON_DeleteItemFromObjectCaseSensitive(root, "reverse_transformer_layers_per_block");
    }
    if (cross) config_json_set(root, "cross_attention_dim", cJSON_CreateNumber(clampi(cross)));
    if (proj) config_json_set(root, "use_linear_projection", cJSON_CreateBool(proj == 2));
    config_json_set(root, "in_channels", cJSON_CreateNumber(clampi(conv_in->shape[1])));
    config_json_set(root, "conv_in_kernel", cJSON_CreateNumber(clampi(conv_in->shape[2])));
    config_json_set(root, "out_channels", cJSON_CreateNumber(clampi(conv_out->shape[0])));
    config_json_set(root, "conv_out_kernel", cJSON_CreateNumber(clampi(conv_out->shape[2])));
    if (sdxl) config_json_set(root, "projection_class_embeddings_input_dim", cJSON_CreateNumber(clampi(label_emb->shape[1])));
    *config_text = cJSON_Print(root);
    if (!*config_text) die("out of memory printing an inferred config");
done:
    cJSON_Delete(root);
    free(in);
    return rc;
}

/* ---- the file ----------------------------------------------------------- */

size_t sf_stem_len(const char *path) {
    size_t n = strlen(path);
    return n >= 12 && !strcasecmp(path + n - 12, ".safetensors") ? n - 12 : n;
}

char *sf_sidecar_path(const char *path) { return xasprintf("%.*s.config.json", (int)sf_stem_len(path), path); }

int sf_is_single_file(const char *path) {
    if (sf_stem_len(path) < strlen(path)) return 1;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC); /* never blocks on a FIFO swapped in meanwhile */
    if (fd < 0) return 0;
    struct stat sb;
    unsigned char len[8];
    int found = 0;
    if (!fstat(fd, &sb) && S_ISREG(sb.st_mode) && sb.st_size > 8 && read(fd, len, 8) == 8) {
        uint64_t h = 0;
        for (int i = 7; i >= 0; i--) h = (h << 8) | len[i];
        if (h >= 2 && h <= (uint64_t)sb.st_size - 8 && h <= 100u * 1000u * 1000u) { /* the reader's header limit */
            char *buf = xmalloc((size_t)h);
            ssize_t got = read(fd, buf, (size_t)h);
            found = got > 0 && buf[0] == '{' && memmem(buf, (size_t)got, "\"" SF_PREFIX, strlen(SF_PREFIX) + 1);
            free(buf);
        }
    }
    close(fd);
    return found;
}

static const char *g_config; /* --config */
void sf_config_set(const char *path) { g_config = path; }
const char *sf_config_get(void) { return g_config; }

int sf_resolve(const char *path, Arch *a, char **config_text, char **config_label) {
    *config_text = *config_label = NULL;
    SafeTensors st;
    int rc = st_open(&st, path, ERR_MODEL);
    if (rc) return rc;
    /* the UNet's tensors: a run of the sorted names */
    int first = 0, n = 0;
    size_t plen = strlen(SF_PREFIX);
    while (first < st.n && strncmp(st.t[first].name, SF_PREFIX, plen) < 0) first++;
    while (first + n < st.n && !strncmp(st.t[first + n].name, SF_PREFIX, plen)) n++;
    if (!n) {
        rc = err_set(ERR_MODEL, "'%s': no UNet tensors (none named " SF_PREFIX "*): not a single-file Stable Diffusion"
                     " checkpoint (a diffusers UNet is given as its directory)", path);
        st_close(&st);
        return rc;
    }
    char *side = g_config ? xstrdup(g_config) : sf_sidecar_path(path);
    struct stat sb;
    size_t len = 0;
    int inferred = !g_config && stat(side, &sb) != 0; /* a --config that is not there is an error naming it */
    if (!inferred) { /* the user's word on what the tensors do not say (heads, norm groups) */
        *config_label = side;
        side = NULL;
        rc = file_read_all(*config_label, 64u << 20, ERR_MODEL, config_text, &len);
    } else {
        *config_label = xasprintf("inferred from %s", path);
        rc = sf_infer_config(st.t + first, n, path, config_text);
        if (!rc) len = strlen(*config_text);
    }
    free(side);
    if (!rc) rc = config_parse(a, *config_text, len, *config_label);
    if (!rc) { /* every UNet tensor has a diffusers name; whether the model has it, weights_load checks */
        SfRules *r = sf_rules_new(a);
        char buf[512];
        for (int i = first; i < first + n && !rc; i++)
            if (sf_to_diffusers(r, st.t[i].name, buf, sizeof buf))
                rc = err_set(ERR_MODEL, "'%s': UNet tensor '%s' has no diffusers name: no rule of the LDM layout places"
                             " it in the model %s%s%s", path, st.t[i].name, inferred ? "its tensors describe" : "'",
                             inferred ? "" : *config_label, inferred ? "" : "' describes");
        sf_rules_free(r);
    }
    st_close(&st);
    return rc;
}
