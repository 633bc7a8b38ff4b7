/* unet: see unet.h. One builder walks the Arch in forward order and records
 * every module and tensor; parameter counts come from the tensor shapes, so the
 * counts and the checkpoint check can never disagree. */
#include "unet.h"
#include "err.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>

typedef struct {
    ModuleTree *t;
    int64_t B;
} Ctx;

static int add_mod(Ctx *c, int parent, const char *kind, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int add_mod(Ctx *c, int parent, const char *kind, const char *fmt, ...) {
    ModuleTree *t = c->t;
    if (t->n_modules == t->cap_modules) {
        t->cap_modules = t->cap_modules ? 2 * t->cap_modules : 256;
        t->m = xrealloc(t->m, (size_t)t->cap_modules * sizeof *t->m);
    }
    char local[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(local, sizeof local, fmt, ap);
    va_end(ap);
    Module *m = &t->m[t->n_modules];
    const char *pn = parent >= 0 ? t->m[parent].name : "";
    m->name = pn[0] ? xasprintf("%s.%s", pn, local) : xstrdup(local);
    m->kind = kind;
    m->parent = parent;
    m->depth = parent >= 0 ? t->m[parent].depth + 1 : 0;
    m->params = m->macs = 0;
    return t->n_modules++;
}

/* "a.b", or "b" when a is the root's empty path; caller frees. */
static char *join(const char *a, const char *b) { return a[0] ? xasprintf("%s.%s", a, b) : xstrdup(b); }

/* A tensor `local` of module `mod`, copied from teacher module path `src`. */
static void add_tensor(Ctx *c, int mod, const char *src, const char *local, int ndim, int64_t d0, int64_t d1,
                       int64_t d2, int64_t d3) {
    ModuleTree *t = c->t;
    if (t->n_tensors == t->cap_tensors) {
        t->cap_tensors = t->cap_tensors ? 2 * t->cap_tensors : 1024;
        t->t = xrealloc(t->t, (size_t)t->cap_tensors * sizeof *t->t);
    }
    TensorSpec *s = &t->t[t->n_tensors++];
    s->name = xasprintf("%s.%s", t->m[mod].name, local);
    s->src = join(src, local);
    s->ndim = ndim;
    int64_t d[4] = {d0, d1, d2, d3};
    int64_t n = 1;
    for (int i = 0; i < 4; i++) {
        s->shape[i] = i < ndim ? d[i] : 0;
        if (i < ndim) n *= d[i];
    }
    s->module = mod;
    t->m[mod].params += n;
}

/* MAC counts saturate at INT64_MAX instead of overflowing (a size a user
 * typed can ask for more than 2^63): unet_tree_check then refuses the size. */
static int64_t mul_sat(int64_t a, int64_t b) {
    int64_t r;
    return __builtin_mul_overflow(a, b, &r) ? INT64_MAX : r;
}
static int64_t prod_sat(int n, const int64_t *f) {
    int64_t r = 1;
    for (int i = 0; i < n; i++) r = mul_sat(r, f[i]);
    return r;
}
static int64_t add_sat(int64_t a, int64_t b) {
    int64_t r;
    return __builtin_add_overflow(a, b, &r) ? INT64_MAX : r;
}

/* Leaf modules. `src` is the teacher's path of the module being added. */
static void conv(Ctx *c, int parent, const char *nm, const char *src, int cin, int cout, int k, int64_t ho, int64_t wo) {
    int m = add_mod(c, parent, "Conv2d", "%s", nm);
    char *s = join(src, nm);
    add_tensor(c, m, s, "weight", 4, cout, cin, k, k);
    add_tensor(c, m, s, "bias", 1, cout, 0, 0, 0);
    free(s);
    c->t->m[m].macs = prod_sat(6, (int64_t[]){c->B, ho, wo, cout, cin, (int64_t)k * k});
}

static void linear(Ctx *c, int parent, const char *nm, const char *src, int in, int out, int bias, int64_t rows) {
    int m = add_mod(c, parent, "Linear", "%s", nm);
    char *s = join(src, nm);
    add_tensor(c, m, s, "weight", 2, out, in, 0, 0);
    if (bias) add_tensor(c, m, s, "bias", 1, out, 0, 0, 0);
    free(s);
    c->t->m[m].macs = prod_sat(3, (int64_t[]){rows, in, out});
}

static void norm(Ctx *c, int parent, const char *kind, const char *nm, const char *src, int ch) {
    int m = add_mod(c, parent, kind, "%s", nm);
    char *s = join(src, nm);
    add_tensor(c, m, s, "weight", 1, ch, 0, 0, 0);
    add_tensor(c, m, s, "bias", 1, ch, 0, 0, 0);
    free(s);
}

/* TimestepEmbedding: linear_1, act, linear_2. */
static void timestep_embedding(Ctx *c, int parent, const char *nm, int in, int out) {
    int m = add_mod(c, parent, "TimestepEmbedding", "%s", nm);
    linear(c, m, "linear_1", nm, in, out, 1, c->B);
    linear(c, m, "linear_2", nm, out, out, 1, c->B);
}

static void resnet(Ctx *c, int parent, int idx, const char *src, int cin, int cout, int temb, int64_t h, int64_t w) {
    int m = add_mod(c, parent, "ResnetBlock2D", "%d", idx);
    norm(c, m, "GroupNorm", "norm1", src, cin);
    conv(c, m, "conv1", src, cin, cout, 3, h, w);
    linear(c, m, "time_emb_proj", src, temb, cout, 1, c->B);
    norm(c, m, "GroupNorm", "norm2", src, cout);
    conv(c, m, "conv2", src, cout, cout, 3, h, w);
    if (cin != cout) conv(c, m, "conv_shortcut", src, cin, cout, 1, h, w);
}

static void attention(Ctx *c, int parent, const char *nm, const char *src, int dim, int kv_dim, int heads,
                      int64_t n_q, int64_t n_kv) {
    (void)heads; /* MACs of the two matmuls do not depend on the head split */
    int m = add_mod(c, parent, "Attention", "%s", nm);
    char *s = join(src, nm);
    int64_t rows_q = mul_sat(c->B, n_q), rows_kv = mul_sat(c->B, n_kv);
    linear(c, m, "to_q", s, dim, dim, 0, rows_q);
    linear(c, m, "to_k", s, kv_dim, dim, 0, rows_kv);
    linear(c, m, "to_v", s, kv_dim, dim, 0, rows_kv);
    int lst = add_mod(c, m, "ModuleList", "to_out");
    char *so = xasprintf("%s.to_out", s);
    linear(c, lst, "0", so, dim, dim, 1, rows_q);
    free(so);
    free(s);
    /* scaled_dot_product_attention: Q K^T and P V, each B x heads x n_q x n_kv x head_dim */
    c->t->m[m].macs = prod_sat(5, (int64_t[]){2, c->B, n_q, n_kv, dim});
}

static void basic_transformer(Ctx *c, int parent, int idx, const char *src, int dim, int cross, int heads, int64_t n,
                              int64_t tokens) {
    int m = add_mod(c, parent, "BasicTransformerBlock", "%d", idx);
    int64_t rows = mul_sat(c->B, n);
    norm(c, m, "LayerNorm", "norm1", src, dim);
    attention(c, m, "attn1", src, dim, dim, heads, n, n);
    norm(c, m, "LayerNorm", "norm2", src, dim);
    attention(c, m, "attn2", src, dim, cross, heads, n, tokens);
    norm(c, m, "LayerNorm", "norm3", src, dim);
    int ff = add_mod(c, m, "FeedForward", "ff");
    int net = add_mod(c, ff, "ModuleList", "net");
    int geglu = add_mod(c, net, "GEGLU", "0");
    char *s0 = xasprintf("%s.ff.net.0", src), *s = xasprintf("%s.ff.net", src);
    linear(c, geglu, "proj", s0, dim, 8 * dim, 1, rows); /* GEGLU: dim -> 2 x (4 dim) */
    linear(c, net, "2", s, 4 * dim, dim, 1, rows);
    free(s0);
    free(s);
}

/* Transformer2DModel number `idx` of block `b`, at h x w. */
static void transformer2d(Ctx *c, int parent, const Arch *a, const Block *b, const char *bsrc, int idx, int64_t h,
                          int64_t w, int64_t tokens) {
    int m = add_mod(c, parent, "Transformer2DModel", "%d", idx);
    char *src = xasprintf("%s.attentions.%d", bsrc, b->src_attn[idx]);
    int C = b->out_ch;
    norm(c, m, "GroupNorm", "norm", src, C);
    if (a->use_linear_projection) linear(c, m, "proj_in", src, C, C, 1, c->B * h * w);
    else conv(c, m, "proj_in", src, C, C, 1, h, w);
    int lst = add_mod(c, m, "ModuleList", "transformer_blocks");
    for (int k = 0; k < b->depth[idx]; k++) {
        char *s = xasprintf("%s.transformer_blocks.%d", src, b->src_tb[idx][k]);
        basic_transformer(c, lst, k, s, C, b->cross_dim, b->heads, h * w, tokens);
        free(s);
    }
    if (a->use_linear_projection) linear(c, m, "proj_out", src, C, C, 1, c->B * h * w);
    else conv(c, m, "proj_out", src, C, C, 1, h, w);
    free(src);
}

/* The resnets / attentions / sampler of one block at input size h x w.
 * `skip_ch[j]` is the channel count concatenated before resnet j (up blocks). */
static void block(Ctx *c, int m, const Arch *a, const Block *b, const char *bsrc, int64_t h, int64_t w,
                  int64_t tokens, const int *skip_ch) {
    int res = add_mod(c, m, "ModuleList", "resnets");
    int att = b->n_attn ? add_mod(c, m, "ModuleList", "attentions") : -1;
    /* diffusers registers attentions before resnets; the names are what matters */
    for (int j = 0; j < b->n_resnets; j++) {
        int cin = j == 0 ? (b->type == BLOCK_UP || b->type == BLOCK_CROSSATTN_UP ? b->prev_ch : b->in_ch) : b->out_ch;
        if (skip_ch) cin += skip_ch[j];
        char *s = xasprintf("%s.resnets.%d", bsrc, b->src_resnet[j]);
        resnet(c, res, j, s, cin, b->out_ch, a->time_embed_dim, h, w);
        free(s);
    }
    for (int j = 0; j < b->n_attn; j++) transformer2d(c, att, a, b, bsrc, j, h, w, tokens);
    if (b->sampler) {
        int down = b->type == BLOCK_DOWN || b->type == BLOCK_CROSSATTN_DOWN;
        int lst = add_mod(c, m, "ModuleList", down ? "downsamplers" : "upsamplers");
        int sm = add_mod(c, lst, down ? "Downsample2D" : "Upsample2D", "0");
        char *s = xasprintf("%s.%s.0", bsrc, down ? "downsamplers" : "upsamplers");
        if (down) conv(c, sm, "conv", s, b->out_ch, b->out_ch, 3, (h + 1) / 2, (w + 1) / 2);
        else conv(c, sm, "conv", s, b->out_ch, b->out_ch, 3, 2 * h, 2 * w);
        free(s);
    }
}

void unet_tree_build(ModuleTree *t, const Arch *a, const Shape *s) {
    memset(t, 0, sizeof *t);
    Ctx c = {t, s->batch};
    int root = add_mod(&c, -1, "UNet2DConditionModel", "%s", "");
    int64_t h = s->height, w = s->width, L = s->tokens;
    int C0 = a->block_out[0];
    conv(&c, root, "conv_in", "", a->in_channels, C0, a->conv_in_kernel, h, w);
    add_mod(&c, root, "Timesteps", "time_proj");
    timestep_embedding(&c, root, "time_embedding", C0, a->time_embed_dim);
    if (a->text_time) {
        add_mod(&c, root, "Timesteps", "add_time_proj");
        timestep_embedding(&c, root, "add_embedding", a->add_in_dim, a->time_embed_dim);
    }
    /* Channel count of every skip tensor the down path pushes, in push order. */
    int skips[1 + MAX_BLOCKS * (MAX_LAYERS + 1)], ns = 0;
    skips[ns++] = C0;
    int downs = add_mod(&c, root, "ModuleList", "down_blocks");
    for (int i = 0; i < a->n_blocks; i++) {
        const Block *b = &a->down[i];
        int m = add_mod(&c, downs, block_type_name(b->type), "%d", i);
        char *src = xasprintf("down_blocks.%d", i);
        block(&c, m, a, b, src, h, w, L, NULL);
        free(src);
        for (int j = 0; j < b->n_resnets; j++) skips[ns++] = b->out_ch;
        if (b->sampler) { skips[ns++] = b->out_ch; h = (h + 1) / 2; w = (w + 1) / 2; }
    }
    if (a->has_mid) {
        int m = add_mod(&c, root, block_type_name(a->mid.type), "mid_block");
        block(&c, m, a, &a->mid, "mid_block", h, w, L, NULL);
    }
    int ups = add_mod(&c, root, "ModuleList", "up_blocks");
    for (int i = 0; i < a->n_blocks; i++) {
        const Block *b = &a->up[i];
        int m = add_mod(&c, ups, block_type_name(b->type), "%d", i);
        int skip_ch[MAX_LAYERS];
        for (int j = 0; j < b->n_resnets; j++) skip_ch[j] = ns > 0 ? skips[--ns] : 0;
        char *src = xasprintf("up_blocks.%d", i);
        block(&c, m, a, b, src, h, w, L, skip_ch);
        free(src);
        if (b->sampler) { h *= 2; w *= 2; }
    }
    norm(&c, root, "GroupNorm", "conv_norm_out", "", C0);
    conv(&c, root, "conv_out", "", C0, a->out_channels, a->conv_out_kernel, h, w);
    /* roll leaf counts up to every ancestor */
    for (int i = t->n_modules - 1; i > 0; i--) {
        Module *m = &t->m[i];
        t->m[m->parent].params += m->params;
        t->m[m->parent].macs = add_sat(t->m[m->parent].macs, m->macs);
    }
}

/* One level of the walk below: a block's feature maps at h x w. */
static void mem_block(const Block *b, double B, double h, double w, int skip_ch, UnetMemory *m, double *skips,
                      double *largest, double *temp) {
    double map = B * b->out_ch * h * w;
    double in = B * ((b->type == BLOCK_UP || b->type == BLOCK_CROSSATTN_UP ? b->prev_ch : b->in_ch) + skip_ch) * h * w;
    *largest = fmax(*largest, fmax(in, map));
    m->features += 4.0 * (b->n_resnets + b->n_attn + 1) * map; /* every unit's output and the block's */
    if (skips) *skips += b->n_resnets * map;
    if (b->n_attn) /* per transformer layer: q, k, v, the attention output and GEGLU's 8 x dim projection */
        *temp = fmax(*temp, 4.0 * B * h * w * 12.0 * b->out_ch);
}

void unet_memory(const Arch *a, const Shape *s, const ModuleTree *t, UnetMemory *m) {
    memset(m, 0, sizeof *m);
    m->weights = 4.0 * (double)t->m[0].params;
    double B = s->batch, h = s->height, w = s->width;
    double skips = B * a->block_out[0] * h * w, largest = skips, temp = 0;
    int skip_ch[1 + MAX_BLOCKS * (MAX_LAYERS + 1)], ns = 0;
    skip_ch[ns++] = a->block_out[0];
    for (int i = 0; i < a->n_blocks; i++) {
        const Block *b = &a->down[i];
        mem_block(b, B, h, w, 0, m, &skips, &largest, &temp);
        for (int j = 0; j < b->n_resnets; j++) skip_ch[ns++] = b->out_ch;
        if (b->sampler) {
            h = ceil(h / 2), w = ceil(w / 2);
            skips += B * b->out_ch * h * w;
            skip_ch[ns++] = b->out_ch;
        }
    }
    if (a->has_mid) mem_block(&a->mid, B, h, w, 0, m, NULL, &largest, &temp);
    for (int i = 0; i < a->n_blocks; i++) {
        const Block *b = &a->up[i];
        int widest = 0; /* the concat of the running map and the widest skip it takes */
        for (int j = 0; j < b->n_resnets && ns > 0; j++) widest = skip_ch[--ns] > widest ? skip_ch[ns] : widest;
        mem_block(b, B, h, w, widest, m, NULL, &largest, &temp);
        if (b->sampler) h *= 2, w *= 2;
    }
    /* the skips held across the down path, a few maps of the widest level alive at once, one layer's temporaries */
    m->peak = 4.0 * (skips + 4.0 * largest) + temp;
}

int unet_memory_check(const char *what, const Arch *a, const Shape *s, double feature_samples) {
    ModuleTree t;
    unet_tree_build(&t, a, s);
    UnetMemory m;
    unet_memory(a, s, &t, &m);
    unet_tree_free(&t);
    Shape one = *s;
    one.batch = 1;
    UnetMemory m1;
    ModuleTree t1;
    unet_tree_build(&t1, a, &one);
    unet_memory(a, &one, &t1, &m1);
    unet_tree_free(&t1);
    double feats = feature_samples * m1.features;
    char detail[200];
    snprintf(detail, sizeof detail, "weights %.1f GB + activations %.1f GB", m.weights / 1e9, m.peak / 1e9);
    if (feats > 0)
        snprintf(detail + strlen(detail), sizeof detail - strlen(detail), " + features of %.0f samples %.1f GB",
                 feature_samples, feats / 1e9);
    char w[300];
    snprintf(w, sizeof w, "%s: batch %d at %dx%d px", what, s->batch, s->height * 8, s->width * 8);
    return mem_check(w, m.weights + m.peak + feats, detail);
}

int unet_tree_check(const ModuleTree *t, const Shape *s) {
    if (t->m[0].macs < INT64_MAX) return 0;
    return err_set(ERR_USAGE, "batch %d at %dx%d px: the forward would take more than 2^63 multiply-adds; give a smaller"
                   " size", s->batch, s->height * 8, s->width * 8);
}

void unet_tree_free(ModuleTree *t) {
    for (int i = 0; i < t->n_modules; i++) free(t->m[i].name);
    for (int i = 0; i < t->n_tensors; i++) { free(t->t[i].name); free(t->t[i].src); }
    free(t->m);
    free(t->t);
    memset(t, 0, sizeof *t);
}

int unet_tree_find(const ModuleTree *t, const char *name) {
    for (int i = 0; i < t->n_modules; i++)
        if (!strcmp(t->m[i].name, name)) return i;
    return -1;
}

static int cmp_cstr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

void unet_removed(const ModuleTree *tt, const ModuleTree *st, char *removed) {
    char **src = xmalloc((size_t)(st->n_tensors ? st->n_tensors : 1) * sizeof *src);
    for (int i = 0; i < st->n_tensors; i++) src[i] = st->t[i].src;
    qsort(src, (size_t)st->n_tensors, sizeof *src, cmp_cstr);
    char *kept = xcalloc((size_t)tt->n_modules, 1);
    for (int i = 0; i < tt->n_tensors; i++)
        if (bsearch(&tt->t[i].name, src, (size_t)st->n_tensors, sizeof *src, cmp_cstr))
            for (int m = tt->t[i].module; m >= 0 && !kept[m]; m = tt->m[m].parent) kept[m] = 1;
    /* a module with no tensors of its own (Timesteps) is kept while its parent is */
    for (int i = 0; i < tt->n_modules; i++) removed[i] = !kept[i] && tt->m[i].params > 0;
    free(kept);
    free(src);
}
