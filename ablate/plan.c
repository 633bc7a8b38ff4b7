/* plan: see plan.h. Every removal edits the Arch's block lists and shifts the
 * src_* maps, so survivors keep pointing at the teacher weights they use. */
#include "plan.h"
#include "err.h"
#include "fileio.h"
#include "rng.h"
#include "unet.h"
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void plan_init(Plan *p) { memset(p, 0, sizeof *p); }

void plan_free(Plan *p) {
    for (int i = 0; i < p->n; i++) free(p->remove[i]);
    free(p->remove);
    free(p->teacher);
    memset(p, 0, sizeof *p);
}

Plan plan_copy(const Plan *p) {
    Plan c = {p->n, xmalloc((size_t)(p->n ? p->n : 1) * sizeof(char *)), p->teacher ? xstrdup(p->teacher) : NULL};
    for (int i = 0; i < p->n; i++) c.remove[i] = xstrdup(p->remove[i]);
    return c;
}

void plan_add(Plan *p, const char *name) {
    int at = 0;
    while (at < p->n && strcmp(p->remove[at], name) < 0) at++;
    if (at < p->n && !strcmp(p->remove[at], name)) return;
    p->remove = xrealloc(p->remove, (size_t)(p->n + 1) * sizeof(char *));
    memmove(p->remove + at + 1, p->remove + at, (size_t)(p->n - at) * sizeof(char *));
    p->remove[at] = xstrdup(name);
    p->n++;
}

void plan_add_csv(Plan *p, const char *csv) {
    char *s = xstrdup(csv), *save = NULL;
    for (char *tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ') tok++;
        if (*tok) plan_add(p, tok);
    }
    free(s);
}

int plan_parse(Plan *p, const char *json, size_t len, const char *label) {
    plan_init(p);
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) return err_set(ERR_PLAN, "'%s': not valid JSON", label);
    int rc = 0;
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(root, "format");
    const cJSON *rm = cJSON_GetObjectItemCaseSensitive(root, "remove");
    if (!cJSON_IsObject(root)) rc = err_set(ERR_PLAN, "'%s': expected a JSON object", label);
    else if (fmt && !(cJSON_IsString(fmt) && !strcmp(fmt->valuestring, "unetlab-plan")))
        rc = err_set(ERR_PLAN, "'%s': field 'format': expected \"unetlab-plan\"", label);
    else if (!cJSON_IsArray(rm)) rc = err_set(ERR_PLAN, "'%s': field 'remove': expected a list of module names", label);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "teacher");
    if (!rc && t && !cJSON_IsString(t)) rc = err_set(ERR_PLAN, "'%s': field 'teacher': expected a string", label);
    if (!rc && t) p->teacher = xstrdup(t->valuestring);
    const cJSON *e;
    if (!rc) cJSON_ArrayForEach(e, rm) {
        if (!cJSON_IsString(e) || !e->valuestring[0]) { rc = err_set(ERR_PLAN, "'%s': field 'remove': expected module names (strings)", label); break; }
        plan_add(p, e->valuestring);
    }
    cJSON_Delete(root);
    if (rc) plan_free(p);
    return rc;
}

int plan_load(Plan *p, const char *path) {
    char *buf;
    size_t n;
    plan_init(p);
    int rc = file_read_all(path, 16u << 20, ERR_PLAN, &buf, &n);
    if (rc) return rc;
    rc = plan_parse(p, buf, n, path);
    free(buf);
    return rc;
}

char *plan_to_json(const Plan *p, const char *teacher) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "format", "unetlab-plan");
    cJSON_AddNumberToObject(o, "version", 1);
    if (teacher) cJSON_AddStringToObject(o, "teacher", teacher);
    cJSON *a = cJSON_AddArrayToObject(o, "remove");
    for (int i = 0; i < p->n; i++) cJSON_AddItemToArray(a, cJSON_CreateString(p->remove[i]));
    char *txt = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    char *s = xstrdup(txt);
    free(txt);
    return s;
}

void plan_hash(const Plan *p, char out[17]) {
    uint64_t h = rng_hash("unetlab-plan/1");
    for (int i = 0; i < p->n; i++) h ^= rng_hash(p->remove[i]) * (uint64_t)(2 * i + 1) + (uint64_t)i;
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

/* The block a teacher path starts with; *rest points after it. */
static Block *find_block(Arch *a, const char *name, const char **rest, int *is_mid) {
    int i, n = 0;
    *is_mid = 0;
    if (sscanf(name, "down_blocks.%d%n", &i, &n) == 1 && n && i >= 0 && i < a->n_blocks) { *rest = name + n; return &a->down[i]; }
    n = 0;
    if (sscanf(name, "up_blocks.%d%n", &i, &n) == 1 && n && i >= 0 && i < a->n_blocks) { *rest = name + n; return &a->up[i]; }
    if (!strncmp(name, "mid_block", 9)) { *rest = name + 9; *is_mid = 1; return &a->mid; }
    return NULL;
}

/* Position x of the surviving module copied from teacher index `src`, or -1. */
static int find_src(const int *map, int n, int src) {
    for (int x = 0; x < n; x++)
        if (map[x] == src) return x;
    return -1;
}

static int drop_layer(Block *b, const char *name, int j, int k) {
    int ja = find_src(b->src_attn, b->n_attn, j);
    int ka = ja >= 0 ? find_src(b->src_tb[ja], b->depth[ja], k) : -1;
    if (ka < 0) return err_set(ERR_PLAN, "'%s': no such transformer layer in this model (or already removed)", name);
    if (b->depth[ja] == 1)
        return err_set(ERR_PLAN, "'%s': cannot remove the last transformer layer of its attention (remove the attentions of the block instead)", name);
    for (int x = ka; x + 1 < b->depth[ja]; x++) b->src_tb[ja][x] = b->src_tb[ja][x + 1];
    b->depth[ja]--;
    return 0;
}

static int drop_resnet(Block *b, const char *name, int j) {
    int x = find_src(b->src_resnet, b->n_resnets, j);
    if (x < 0) return err_set(ERR_PLAN, "'%s': no such ResNet in this model (or already removed)", name);
    if (b->n_resnets == 1) return err_set(ERR_PLAN, "'%s': cannot remove the last ResNet of a block", name);
    int has_attn = b->n_attn > 0;
    for (int y = x; y + 1 < b->n_resnets; y++) {
        b->src_resnet[y] = b->src_resnet[y + 1];
        if (has_attn) {
            b->src_attn[y] = b->src_attn[y + 1];
            b->depth[y] = b->depth[y + 1];
            memcpy(b->src_tb[y], b->src_tb[y + 1], sizeof b->src_tb[y]);
        }
    }
    b->n_resnets--;
    if (has_attn) b->n_attn--;
    return 0;
}

int plan_remove(Arch *a, const char *name) {
    const char *rest;
    int mid, j, k, n = 0;
    Block *b = find_block(a, name, &rest, &mid);
    if (!b || (mid && !a->has_mid)) return err_set(ERR_PLAN, "'%s': no such module in this model", name);
    if (sscanf(rest, ".attentions.%d.transformer_blocks.%d%n", &j, &k, &n) == 2 && rest[n] == '\0')
        return drop_layer(b, name, j, k);
    n = 0;
    if (!mid && sscanf(rest, ".resnets.%d%n", &j, &n) == 1 && rest[n] == '\0') return drop_resnet(b, name, j);
    if (!strcmp(rest, ".attentions")) {
        if (b->n_attn == 0) return err_set(ERR_PLAN, "'%s': this block has no attentions (left)", name);
        b->n_attn = 0;
        if (mid) { b->type = BLOCK_MID; b->n_resnets = 1; } /* UNetMidBlock2D: one ResNet */
        else b->type = b->type == BLOCK_CROSSATTN_DOWN ? BLOCK_DOWN : BLOCK_UP;
        return 0;
    }
    if (mid && !*rest) { a->has_mid = 0; return 0; }
    return err_set(ERR_PLAN, "'%s': not a removable module (a transformer layer, X.resnets.J, X.attentions, mid_block.attentions or mid_block)", name);
}

/* Removals apply finest first: layers, ResNets, attention levels, a whole mid block. */
static int rank(const char *name) {
    if (strstr(name, ".transformer_blocks.")) return 0;
    if (strstr(name, ".resnets.")) return 1;
    return strcmp(name, "mid_block") ? 2 : 3;
}

int plan_apply(const Arch *teacher, const Plan *p, Arch *student) {
    *student = *teacher;
    for (int r = 0; r < 4; r++)
        for (int i = 0; i < p->n; i++)
            if (rank(p->remove[i]) == r) {
                int rc = plan_remove(student, p->remove[i]);
                if (rc) return rc;
            }
    return plan_check(teacher, student);
}

static int cmp_spec(const void *x, const void *y) {
    return strcmp(((const TensorSpec *)x)->name, ((const TensorSpec *)y)->name);
}

static void shape_str(const int64_t *s, int nd, char *buf, size_t size) {
    size_t n = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < nd && n < size; i++) n += (size_t)snprintf(buf + n, size - n, "%s%lld", i ? ", " : "", (long long)s[i]);
    if (n < size) snprintf(buf + n, size - n, "]");
}

int plan_check(const Arch *teacher, const Arch *student) {
    for (int i = 0; i < student->n_blocks; i++) {
        int nd = student->down[i].n_resnets, nu = student->up[student->n_blocks - 1 - i].n_resnets;
        if (nu != nd + 1)
            return err_set(ERR_PLAN, "down_blocks.%d keeps %d ResNets but up_blocks.%d keeps %d: an up block has its down block's ResNets + 1 (remove ResNets in down/up pairs)",
                           i, nd, student->n_blocks - 1 - i, nu);
    }
    Shape s = {1, 8, 8, 4};
    ModuleTree t, st;
    unet_tree_build(&t, teacher, &s);
    unet_tree_build(&st, student, &s);
    qsort(t.t, (size_t)t.n_tensors, sizeof *t.t, cmp_spec);
    int rc = 0;
    for (int i = 0; i < st.n_tensors && !rc; i++) {
        TensorSpec key = {.name = st.t[i].src};
        const TensorSpec *src = bsearch(&key, t.t, (size_t)t.n_tensors, sizeof *t.t, cmp_spec);
        if (!src) die("internal: student tensor '%s' has no teacher source '%s'", st.t[i].name, st.t[i].src);
        int same = src->ndim == st.t[i].ndim;
        for (int d = 0; same && d < src->ndim; d++) same = src->shape[d] == st.t[i].shape[d];
        if (!same) {
            char a[64], b[64];
            shape_str(src->shape, src->ndim, a, sizeof a);
            shape_str(st.t[i].shape, st.t[i].ndim, b, sizeof b);
            rc = err_set(ERR_PLAN, "the plan changes the shape of '%s' (teacher %s, student %s): its weights would not fit", src->name, a, b);
        }
    }
    unet_tree_free(&t);
    unet_tree_free(&st);
    return rc;
}

static cJSON *depth_list(const Block *b) {
    if (!b->n_attn) return cJSON_CreateNumber(1); /* ignored by diffusers for blocks without attention */
    cJSON *l = cJSON_CreateArray();
    for (int j = 0; j < b->n_attn; j++) cJSON_AddItemToArray(l, cJSON_CreateNumber(b->depth[j]));
    return l;
}

int plan_config_json(const Arch *s, const char *teacher_config, char **out) {
    *out = NULL;
    int n = s->n_blocks;
    const Block *last = &s->down[n - 1];
    int mid_attn = s->has_mid && s->mid.n_attn;
    if (mid_attn && last->n_attn && last->depth[0] != s->mid.depth[0])
        return err_set(ERR_PLAN, "no diffusers config can describe this student: its mid block has %d transformer layers but down_blocks.%d.attentions.0 has %d, and diffusers' config gives both the same number (transformer_layers_per_block[-1][0])",
                       s->mid.depth[0], n - 1, last->depth[0]);
    cJSON *c = cJSON_Parse(teacher_config);
    if (!c) return err_set(ERR_PLAN, "teacher config is not valid JSON");
    cJSON *down = cJSON_CreateArray(), *up = cJSON_CreateArray(), *lpb = cJSON_CreateArray();
    cJSON *tl = cJSON_CreateArray(), *rtl = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        cJSON_AddItemToArray(down, cJSON_CreateString(block_type_name(s->down[i].type)));
        cJSON_AddItemToArray(up, cJSON_CreateString(block_type_name(s->up[i].type)));
        cJSON_AddItemToArray(lpb, cJSON_CreateNumber(s->down[i].n_resnets));
        cJSON *d = depth_list(&s->down[i]);
        if (i == n - 1 && mid_attn && !last->n_attn) { cJSON_Delete(d); d = cJSON_CreateNumber(s->mid.depth[0]); }
        cJSON_AddItemToArray(tl, d);
        cJSON_AddItemToArray(rtl, depth_list(&s->up[i]));
    }
    config_json_set(c, "down_block_types", down);
    config_json_set(c, "up_block_types", up);
    config_json_set(c, "layers_per_block", lpb);
    config_json_set(c, "transformer_layers_per_block", tl);
    config_json_set(c, "reverse_transformer_layers_per_block", rtl);
    config_json_set(c, "mid_block_type", s->has_mid ? cJSON_CreateString(block_type_name(s->mid.type)) : cJSON_CreateNull());
    char *txt = cJSON_Print(c);
    cJSON_Delete(c);
    *out = xstrdup(txt);
    free(txt);
    return 0;
}
