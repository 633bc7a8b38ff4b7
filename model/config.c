/* config: see config.h. The field list and defaults follow diffusers'
 * UNet2DConditionModel.__init__; each field is read once, by name, below. */
#include "config.h"
#include "err.h"
#include "fileio.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>

typedef struct {
    const cJSON *root;
    const char *label;
} Cfg;

static const cJSON *field(const Cfg *c, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->root, key);
    return (v && !cJSON_IsNull(v)) ? v : NULL; /* null means "take the default" */
}

static int bad(const Cfg *c, const char *key, const char *what) {
    return err_set(ERR_MODEL, "'%s': field '%s': %s", c->label, key, what);
}

static int is_int(const cJSON *v) {
    return cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) && fabs(v->valuedouble) < 1e9;
}

static int get_int(const Cfg *c, const char *key, int def, int lo, int hi, int *out) {
    const cJSON *v = field(c, key);
    if (!v) { *out = def; return 0; }
    if (!is_int(v)) return bad(c, key, "expected an integer");
    if (v->valuedouble < lo || v->valuedouble > hi) {
        char m[96];
        snprintf(m, sizeof m, "%g is out of range [%d, %d]", v->valuedouble, lo, hi);
        return bad(c, key, m);
    }
    *out = (int)v->valuedouble;
    return 0;
}

static int get_num(const Cfg *c, const char *key, double def, double *out) {
    const cJSON *v = field(c, key);
    if (!v) { *out = def; return 0; }
    if (!cJSON_IsNumber(v)) return bad(c, key, "expected a number");
    *out = v->valuedouble;
    return 0;
}

static int get_bool(const Cfg *c, const char *key, int def, int *out) {
    const cJSON *v = field(c, key);
    if (!v) { *out = def; return 0; }
    if (!cJSON_IsBool(v)) return bad(c, key, "expected true or false");
    *out = cJSON_IsTrue(v);
    return 0;
}

/* A field this tool does not implement: accepted only absent, null or at `ok`. */
static int must_be_default(const Cfg *c, const char *key, const char *ok_str, int ok_bool, double ok_num) {
    const cJSON *v = field(c, key);
    if (!v) return 0;
    if (ok_str && cJSON_IsString(v) && !strcmp(v->valuestring, ok_str)) return 0;
    if (ok_bool >= 0 && cJSON_IsBool(v) && cJSON_IsTrue(v) == ok_bool) return 0;
    if (!isnan(ok_num) && cJSON_IsNumber(v) && v->valuedouble == ok_num) return 0;
    char m[160];
    char *s = cJSON_PrintUnformatted(v);
    snprintf(m, sizeof m, "value %.60s is not supported (only %s%s)", s ? s : "?",
             ok_str ? ok_str : ok_bool >= 0 ? (ok_bool ? "true" : "false") : !isnan(ok_num) ? "the default" : "null",
             ok_str || ok_bool >= 0 || !isnan(ok_num) ? " or null" : "");
    free(s);
    return bad(c, key, m);
}

/* An int, or a list of n ints (per down block): out[0..n-1]. */
static int get_int_or_list(const Cfg *c, const char *key, int def, int n, int lo, int hi, int *out) {
    const cJSON *v = field(c, key);
    if (!v) { for (int i = 0; i < n; i++) out[i] = def; return 0; }
    if (is_int(v)) {
        if (v->valuedouble < lo || v->valuedouble > hi) return bad(c, key, "value out of range");
        for (int i = 0; i < n; i++) out[i] = (int)v->valuedouble;
        return 0;
    }
    if (!cJSON_IsArray(v)) return bad(c, key, "expected an integer or a list of integers");
    if (cJSON_GetArraySize(v) != n) {
        char m[96];
        snprintf(m, sizeof m, "has %d entries, expected %d (one per down block)", cJSON_GetArraySize(v), n);
        return bad(c, key, m);
    }
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
        if (!is_int(e) || e->valuedouble < lo || e->valuedouble > hi) return bad(c, key, "expected integers in range in the list");
        out[i++] = (int)e->valuedouble;
    }
    return 0;
}

/* transformer_layers_per_block[i] or reverse_...[i]: an int, or a list with an
 * entry per layer. Blocks without attention ignore it (n_layers 0), as diffusers does. */
static int get_depths(const Cfg *c, const char *key, const cJSON *e, int n_layers, int *depth) {
    if (is_int(e)) {
        if (e->valuedouble < 1 || e->valuedouble > MAX_DEPTH) return bad(c, key, "depth out of range");
        for (int j = 0; j < MAX_LAYERS; j++) depth[j] = (int)e->valuedouble;
        return 0;
    }
    if (!cJSON_IsArray(e) || cJSON_GetArraySize(e) < n_layers) {
        char m[128];
        snprintf(m, sizeof m, "each entry must be an integer or a list of %d integers (one per layer)", n_layers);
        return bad(c, key, m);
    }
    int j = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, e) {
        if (!is_int(d) || d->valuedouble < 1 || d->valuedouble > MAX_DEPTH) return bad(c, key, "depth out of range");
        if (j < MAX_LAYERS) depth[j++] = (int)d->valuedouble;
    }
    for (; j < MAX_LAYERS; j++) depth[j] = 1;
    return 0;
}

static int block_types(const Cfg *c, const char *key, const char *const *defs, int ndef, char names[][32], int *n) {
    const cJSON *v = field(c, key);
    if (!v) {
        *n = ndef;
        for (int i = 0; i < ndef; i++) snprintf(names[i], 32, "%s", defs[i]);
        return 0;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) < 1 || cJSON_GetArraySize(v) > MAX_BLOCKS)
        return bad(c, key, "expected a list of 1 to 8 block type names");
    *n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
        if (!cJSON_IsString(e) || strlen(e->valuestring) >= 32) return bad(c, key, "expected block type names");
        snprintf(names[(*n)++], 32, "%s", e->valuestring);
    }
    return 0;
}

static const char *const KNOWN[] = {
    "sample_size", "in_channels", "out_channels", "center_input_sample", "flip_sin_to_cos", "freq_shift",
    "down_block_types", "mid_block_type", "up_block_types", "only_cross_attention", "block_out_channels",
    "layers_per_block", "downsample_padding", "mid_block_scale_factor", "dropout", "act_fn",
    "norm_num_groups", "norm_eps", "cross_attention_dim", "transformer_layers_per_block",
    "reverse_transformer_layers_per_block", "encoder_hid_dim", "encoder_hid_dim_type", "attention_head_dim",
    "num_attention_heads", "dual_cross_attention", "use_linear_projection", "class_embed_type",
    "addition_embed_type", "addition_time_embed_dim", "num_class_embeds", "upcast_attention",
    "resnet_time_scale_shift", "resnet_skip_time_act", "resnet_out_scale_factor", "time_embedding_type",
    "time_embedding_dim", "time_embedding_act_fn", "timestep_post_act", "time_cond_proj_dim",
    "conv_in_kernel", "conv_out_kernel", "projection_class_embeddings_input_dim", "attention_type",
    "class_embeddings_concat", "mid_block_only_cross_attention", "cross_attention_norm",
    "addition_embed_type_num_heads", NULL,
};

static int parse_fields(Arch *a, const Cfg *c) {
    int rc;
    memset(a, 0, sizeof *a);
    const cJSON *kv;
    int unknown = 0;
    cJSON_ArrayForEach(kv, c->root) {
        if (kv->string[0] == '_') continue; /* _class_name, _diffusers_version, _name_or_path */
        int known = 0;
        for (int i = 0; KNOWN[i]; i++) known |= !strcmp(kv->string, KNOWN[i]);
        if (!known && ++unknown <= 5) err_warn("'%s': unknown field '%s' ignored", c->label, kv->string);
    }
    if (unknown > 5) err_warn("'%s': %d more unknown fields ignored", c->label, unknown - 5);
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(c->root, "_class_name");
    if (cls && !(cJSON_IsString(cls) && !strcmp(cls->valuestring, "UNet2DConditionModel")))
        return bad(c, "_class_name", "expected \"UNet2DConditionModel\"");

    /* Fields whose non-default values this tool does not implement. */
    if ((rc = must_be_default(c, "only_cross_attention", NULL, 0, NAN))) return rc;
    if ((rc = must_be_default(c, "dual_cross_attention", NULL, 0, NAN))) return rc;
    if ((rc = must_be_default(c, "encoder_hid_dim", NULL, -1, NAN))) return rc;
    if ((rc = must_be_default(c, "encoder_hid_dim_type", NULL, -1, NAN))) return rc;
    if ((rc = must_be_default(c, "class_embed_type", NULL, -1, NAN))) return rc;
    if ((rc = must_be_default(c, "num_class_embeds", NULL, -1, NAN))) return rc;
    if ((rc = must_be_default(c, "num_attention_heads", NULL, -1, NAN))) return rc; /* diffusers refuses it too */
    if ((rc = must_be_default(c, "resnet_time_scale_shift", "default", -1, NAN))) return rc;
    if ((rc = must_be_default(c, "resnet_skip_time_act", NULL, 0, NAN))) return rc;
    if ((rc = must_be_default(c, "resnet_out_scale_factor", NULL, -1, 1.0))) return rc;
    if ((rc = must_be_default(c, "time_embedding_type", "positional", -1, NAN))) return rc;
    if ((rc = must_be_default(c, "time_embedding_dim", NULL, -1, NAN))) return rc;
    if ((rc = must_be_default(c, "time_embedding_act_fn", NULL, -1, NAN))) return rc;
    if ((rc = must_be_default(c, "timestep_post_act", NULL, -1, NAN))) return rc;
    if ((rc = must_be_default(c, "time_cond_proj_dim", NULL, -1, NAN))) return rc;
    if ((rc = must_be_default(c, "attention_type", "default", -1, NAN))) return rc;
    if ((rc = must_be_default(c, "class_embeddings_concat", NULL, 0, NAN))) return rc;
    if ((rc = must_be_default(c, "mid_block_only_cross_attention", NULL, 0, NAN))) return rc;
    if ((rc = must_be_default(c, "cross_attention_norm", NULL, -1, NAN))) return rc;
    if ((rc = must_be_default(c, "downsample_padding", NULL, -1, 1.0))) return rc;

    const cJSON *act = field(c, "act_fn");
    if (act && !(cJSON_IsString(act) && (!strcmp(act->valuestring, "silu") || !strcmp(act->valuestring, "swish"))))
        return bad(c, "act_fn", "only \"silu\" (or \"swish\") is supported");
    const cJSON *ss = field(c, "sample_size");
    if (ss && !is_int(ss)) return bad(c, "sample_size", "expected an integer");
    if (ss && (ss->valuedouble < 1 || ss->valuedouble > 1 << 17)) /* latent pixels; x 8 must fit the --height range */
        return bad(c, "sample_size", "out of range [1, 131072]");
    a->sample_size = ss ? (int)ss->valuedouble : 0;
    double d;
    if ((rc = get_num(c, "dropout", 0.0, &d))) return rc; /* inference: no effect */
    if ((rc = get_int(c, "in_channels", 4, 1, 1 << 16, &a->in_channels))) return rc;
    if ((rc = get_int(c, "out_channels", 4, 1, 1 << 16, &a->out_channels))) return rc;
    if ((rc = get_bool(c, "center_input_sample", 0, &a->center_input_sample))) return rc;
    if ((rc = get_bool(c, "flip_sin_to_cos", 1, &a->flip_sin_to_cos))) return rc;
    if ((rc = get_num(c, "freq_shift", 0, &d))) return rc;
    a->freq_shift = (float)d;
    if ((rc = get_bool(c, "use_linear_projection", 0, &a->use_linear_projection))) return rc;
    const cJSON *up = field(c, "upcast_attention");
    if (up && !cJSON_IsBool(up)) return bad(c, "upcast_attention", "expected true, false or null");
    a->upcast_attention = up && cJSON_IsTrue(up);
    if ((rc = get_int(c, "conv_in_kernel", 3, 1, 15, &a->conv_in_kernel))) return rc;
    if ((rc = get_int(c, "conv_out_kernel", 3, 1, 15, &a->conv_out_kernel))) return rc;
    if (a->conv_in_kernel % 2 == 0) return bad(c, "conv_in_kernel", "must be odd");
    if (a->conv_out_kernel % 2 == 0) return bad(c, "conv_out_kernel", "must be odd");
    if ((rc = get_int(c, "norm_num_groups", 32, 1, 1 << 16, &a->norm_groups))) return rc;
    if ((rc = get_num(c, "norm_eps", 1e-5, &d))) return rc;
    if (!(d > 0)) return bad(c, "norm_eps", "must be positive");
    a->norm_eps = (float)d;
    if ((rc = get_num(c, "mid_block_scale_factor", 1.0, &d))) return rc;
    if (!(d != 0)) return bad(c, "mid_block_scale_factor", "must be non-zero");
    a->mid_scale = (float)d;

    const cJSON *add = field(c, "addition_embed_type");
    if (add) {
        if (!cJSON_IsString(add) || strcmp(add->valuestring, "text_time"))
            return bad(c, "addition_embed_type", "only \"text_time\" (SDXL) or null is supported");
        a->text_time = 1;
        if (!field(c, "addition_time_embed_dim")) return bad(c, "addition_time_embed_dim", "required with text_time");
        if (!field(c, "projection_class_embeddings_input_dim"))
            return bad(c, "projection_class_embeddings_input_dim", "required with text_time");
        if ((rc = get_int(c, "addition_time_embed_dim", 0, 2, 1 << 16, &a->add_time_dim))) return rc;
        if ((rc = get_int(c, "projection_class_embeddings_input_dim", 0, 1, 1 << 20, &a->add_in_dim))) return rc;
        if (a->add_in_dim <= 6 * a->add_time_dim)
            return bad(c, "projection_class_embeddings_input_dim", "must exceed 6 x addition_time_embed_dim (text_embeds width would be <= 0)");
    }
    return 0;
}

static int parse_blocks(Arch *a, const Cfg *c) {
    static const char *const def_down[] = {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"};
    static const char *const def_up[] = {"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"};
    char down[MAX_BLOCKS][32], upn[MAX_BLOCKS][32];
    int nd, nu, rc;
    if ((rc = block_types(c, "down_block_types", def_down, 4, down, &nd))) return rc;
    if ((rc = block_types(c, "up_block_types", def_up, 4, upn, &nu))) return rc;
    if (nu != nd) return bad(c, "up_block_types", "must have as many entries as down_block_types");
    int n = a->n_blocks = nd;

    const cJSON *boc = field(c, "block_out_channels");
    if (!boc) {
        static const int def[] = {320, 640, 1280, 1280};
        if (n != 4) return bad(c, "block_out_channels", "required when there are not 4 blocks");
        memcpy(a->block_out, def, sizeof def);
    } else {
        if (!cJSON_IsArray(boc) || cJSON_GetArraySize(boc) != n)
            return bad(c, "block_out_channels", "expected a list with one entry per down block");
        int i = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, boc) {
            if (!is_int(e) || e->valuedouble < 1 || e->valuedouble > 1 << 16)
                return bad(c, "block_out_channels", "expected integers in [1, 65536]");
            a->block_out[i++] = (int)e->valuedouble;
        }
    }
    for (int i = 0; i < n; i++)
        if (a->block_out[i] % a->norm_groups)
            return bad(c, "block_out_channels", "each entry must be a multiple of norm_num_groups");
    a->time_embed_dim = 4 * a->block_out[0];

    int layers[MAX_BLOCKS], heads[MAX_BLOCKS], cross[MAX_BLOCKS];
    if ((rc = get_int_or_list(c, "layers_per_block", 2, n, 1, MAX_LAYERS, layers))) return rc;
    for (int i = 0; i < n; i++)
        if (layers[i] + 1 > MAX_LAYERS) return bad(c, "layers_per_block", "too many layers");
    /* diffusers' quirk: attention_head_dim holds head counts (num_attention_heads = attention_head_dim). */
    if ((rc = get_int_or_list(c, "attention_head_dim", 8, n, 1, 1 << 12, heads))) return rc;
    if ((rc = get_int_or_list(c, "cross_attention_dim", 1280, n, 1, 1 << 16, cross))) return rc;

    /* transformer depth per down block and layer */
    int tdepth[MAX_BLOCKS][MAX_LAYERS] = {{0}}, nested = 0, mid_depth;
    const cJSON *tl = field(c, "transformer_layers_per_block");
    if (!tl || is_int(tl)) {
        int v = tl ? (int)tl->valuedouble : 1;
        if (v < 1 || v > MAX_DEPTH) return bad(c, "transformer_layers_per_block", "depth out of range");
        for (int i = 0; i < n; i++)
            for (int j = 0; j < layers[i]; j++) tdepth[i][j] = v;
        mid_depth = v;
    } else {
        if (!cJSON_IsArray(tl) || cJSON_GetArraySize(tl) != n)
            return bad(c, "transformer_layers_per_block", "expected an integer or a list with one entry per down block");
        for (int i = 0; i < n; i++) {
            const cJSON *e = cJSON_GetArrayItem(tl, i);
            nested |= cJSON_IsArray(e);
            int attn = !strcmp(down[i], "CrossAttnDownBlock2D");
            if ((rc = get_depths(c, "transformer_layers_per_block", e, attn ? layers[i] : 0, tdepth[i]))) return rc;
        }
        const cJSON *last = cJSON_GetArrayItem(tl, n - 1); /* the mid block takes the first entry of the last */
        mid_depth = is_int(last) ? (int)last->valuedouble : cJSON_GetArraySize(last) ? tdepth[n - 1][0] : 1;
    }
    int rdepth[MAX_BLOCKS][MAX_LAYERS] = {{0}};
    const cJSON *rtl = field(c, "reverse_transformer_layers_per_block");
    if (rtl) {
        if (!cJSON_IsArray(rtl) || cJSON_GetArraySize(rtl) != n)
            return bad(c, "reverse_transformer_layers_per_block", "expected a list with one entry per up block");
        for (int i = 0; i < n; i++)
            if ((rc = get_depths(c, "reverse_transformer_layers_per_block", cJSON_GetArrayItem(rtl, i),
                                 !strcmp(upn[i], "CrossAttnUpBlock2D") ? layers[n - 1 - i] + 1 : 0, rdepth[i])))
                return rc;
    } else {
        if (nested) /* diffusers raises here too */
            return bad(c, "reverse_transformer_layers_per_block", "required when transformer_layers_per_block has per-layer lists");
        for (int i = 0; i < n; i++)
            for (int j = 0; j < layers[n - 1 - i] + 1; j++) rdepth[i][j] = tdepth[n - 1 - i][0];
    }

    int ch = a->block_out[0];
    for (int i = 0; i < n; i++) {
        Block *b = &a->down[i];
        if (!strcmp(down[i], "DownBlock2D")) b->type = BLOCK_DOWN;
        else if (!strcmp(down[i], "CrossAttnDownBlock2D")) b->type = BLOCK_CROSSATTN_DOWN;
        else return err_set(ERR_MODEL, "'%s': field 'down_block_types': unknown block type '%s'", c->label, down[i]);
        b->in_ch = ch;
        b->out_ch = ch = a->block_out[i];
        b->n_resnets = layers[i];
        b->n_attn = b->type == BLOCK_CROSSATTN_DOWN ? layers[i] : 0;
        for (int j = 0; j < b->n_attn; j++) b->depth[j] = tdepth[i][j];
        b->heads = heads[i];
        b->cross_dim = cross[i];
        b->sampler = i != n - 1;
        if (b->n_attn && b->out_ch % b->heads)
            return bad(c, "attention_head_dim", "block channels must be a multiple of the head count");
    }
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(c->root, "mid_block_type");
    Block *m = &a->mid;
    m->in_ch = m->out_ch = a->block_out[n - 1];
    m->heads = heads[n - 1];
    m->cross_dim = cross[n - 1];
    a->has_mid = 1;
    if (!mt || (cJSON_IsString(mt) && !strcmp(mt->valuestring, "UNetMidBlock2DCrossAttn"))) {
        m->type = BLOCK_MID_CROSSATTN;
        m->n_resnets = 2;
        m->n_attn = 1;
        m->depth[0] = mid_depth;
        if (m->out_ch % m->heads) return bad(c, "attention_head_dim", "block channels must be a multiple of the head count");
    } else if (cJSON_IsString(mt) && !strcmp(mt->valuestring, "UNetMidBlock2D")) {
        m->type = BLOCK_MID; /* diffusers builds it with num_layers=0, add_attention=False: one resnet */
        m->n_resnets = 1;
    } else if (cJSON_IsNull(mt)) {
        a->has_mid = 0;
    } else {
        return err_set(ERR_MODEL, "'%s': field 'mid_block_type': unknown block type '%s'", c->label,
                       cJSON_IsString(mt) ? mt->valuestring : "(not a string)");
    }
    a->src_has_mid_attn = m->n_attn > 0;

    int out = a->block_out[n - 1];
    for (int i = 0; i < n; i++) {
        Block *b = &a->up[i];
        if (!strcmp(upn[i], "UpBlock2D")) b->type = BLOCK_UP;
        else if (!strcmp(upn[i], "CrossAttnUpBlock2D")) b->type = BLOCK_CROSSATTN_UP;
        else return err_set(ERR_MODEL, "'%s': field 'up_block_types': unknown block type '%s'", c->label, upn[i]);
        b->prev_ch = out;
        b->out_ch = out = a->block_out[n - 1 - i];
        b->in_ch = a->block_out[n - 1 - (i + 1 < n ? i + 1 : n - 1)];
        b->n_resnets = layers[n - 1 - i] + 1;
        b->n_attn = b->type == BLOCK_CROSSATTN_UP ? b->n_resnets : 0;
        for (int j = 0; j < b->n_attn; j++) b->depth[j] = rdepth[i][j];
        b->heads = heads[n - 1 - i];
        b->cross_dim = cross[n - 1 - i];
        b->sampler = i != n - 1;
        if (b->n_attn && b->out_ch % b->heads)
            return bad(c, "attention_head_dim", "block channels must be a multiple of the head count");
    }
    /* a teacher: every module is its own source */
    Block *all[] = {&a->mid};
    for (int i = 0; i < 2 * n + 1; i++) {
        Block *b = i < n ? &a->down[i] : i < 2 * n ? &a->up[i - n] : all[0];
        for (int j = 0; j < MAX_LAYERS; j++) {
            b->src_resnet[j] = b->src_attn[j] = j;
            for (int k = 0; k < MAX_DEPTH; k++) b->src_tb[j][k] = k;
        }
    }
    return 0;
}

/* A key given twice: Python's json (so diffusers) keeps the last value; so do we, and say so. */
static void last_key_wins(cJSON *root, const char *label) {
    for (cJSON *kv = root->child; kv;) {
        cJSON *next = kv->next, *later = next;
        while (later && strcmp(later->string, kv->string)) later = later->next;
        if (later) {
            err_warn("'%s': field '%s' given twice: the last value is used, as diffusers does", label, kv->string);
            cJSON_Delete(cJSON_DetachItemViaPointer(root, kv));
        }
        kv = next;
    }
}

int config_parse(Arch *a, const char *json, size_t len, const char *label) {
    /* as strict as diffusers' reader (Python's json.loads): one JSON value and nothing after it, no BOM */
    if (len >= 3 && !memcmp(json, "\xef\xbb\xbf", 3))
        return err_set(ERR_MODEL, "'%s': starts with a UTF-8 byte order mark, which diffusers' reader rejects", label);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root) return err_set(ERR_MODEL, "'%s': not valid JSON", label);
    while (end && end < json + len && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')) end++;
    if (end && end < json + len && *end) {
        cJSON_Delete(root);
        return err_set(ERR_MODEL, "'%s': text after the JSON object (at byte %td)", label, end - json);
    }
    int rc = 0;
    if (!cJSON_IsObject(root)) rc = err_set(ERR_MODEL, "'%s': expected a JSON object", label);
    const cJSON *fmt = rc ? NULL : cJSON_GetObjectItemCaseSensitive(root, "format");
    if ((cJSON_IsString(fmt) && !strcmp(fmt->valuestring, "unetlab-plan")) ||
        (!rc && cJSON_GetObjectItemCaseSensitive(root, "remove") && !cJSON_GetObjectItemCaseSensitive(root, "_class_name")))
        rc = err_set(ERR_MODEL, "'%s': is a unetlab plan, not a UNet config: give it as --plan, and the teacher as --model",
                     label);
    if (!rc) last_key_wins(root, label);
    Cfg c = {root, label};
    if (!rc) rc = parse_fields(a, &c);
    if (!rc) rc = parse_blocks(a, &c);
    cJSON_Delete(root);
    return rc;
}

int config_load(Arch *a, const char *path) {
    char *buf;
    size_t n;
    int rc = file_read_all(path, 64u << 20, ERR_MODEL, &buf, &n);
    if (rc) return rc;
    rc = config_parse(a, buf, n, path);
    free(buf);
    return rc;
}

const char *block_type_name(BlockType t) {
    switch (t) {
    case BLOCK_DOWN: return "DownBlock2D";
    case BLOCK_CROSSATTN_DOWN: return "CrossAttnDownBlock2D";
    case BLOCK_UP: return "UpBlock2D";
    case BLOCK_CROSSATTN_UP: return "CrossAttnUpBlock2D";
    case BLOCK_MID_CROSSATTN: return "UNetMidBlock2DCrossAttn";
    case BLOCK_MID: return "UNetMidBlock2D";
    }
    return "?";
}

int arch_total_depth(const Arch *a) {
    int t = 0;
    for (int i = 0; i < a->n_blocks; i++)
        for (int j = 0; j < MAX_LAYERS; j++) t += (j < a->down[i].n_attn ? a->down[i].depth[j] : 0) +
                                                 (j < a->up[i].n_attn ? a->up[i].depth[j] : 0);
    if (a->has_mid)
        for (int j = 0; j < a->mid.n_attn; j++) t += a->mid.depth[j];
    return t;
}

/* Built-in presets, generated from the presets/ JSON files by tools/embed.c. */
extern const char *const embedded_names[];
extern const char *const embedded_texts[];

const char *config_preset(const char *name) {
    for (int i = 0; embedded_names[i]; i++)
        if (!strcmp(embedded_names[i], name)) return embedded_texts[i];
    return NULL;
}

const char *const *config_preset_names(void) { return embedded_names; }

void config_json_set(cJSON *o, const char *key, cJSON *v) {
    if (cJSON_GetObjectItemCaseSensitive(o, key)) cJSON_ReplaceItemInObjectCaseSensitive(o, key, v);
    else cJSON_AddItemToObject(o, key, v);
}
