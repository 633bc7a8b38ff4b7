/* forward: see forward.h. Mirrors diffusers' UNet2DConditionModel.forward
 * step by step; comments name the diffusers module each step stands for. */
#include "forward.h"
#include "err.h"
#include "ops.h"
#include "safetensors.h"
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    const Arch *a;
    const Weights *w;
    FeatureFn fn;
    void *ctx;
    int64_t B;
    Tensor temb_act;          /* silu(emb) [B, time_embed_dim]: what every resnet projects */
    const Tensor *enc;        /* [B, L, D] */
    const UnetTimer *timer;   /* per-module wall-clock, or NULL */
} Fwd;

#define NAME_LEN 512

/* Formats a module path into buf[NAME_LEN]; paths are short, so a longer one is a bug. */
static char *nm(char *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *nm(char *buf, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, NAME_LEN, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= NAME_LEN) die("internal: module path longer than %d bytes", NAME_LEN);
    return buf;
}

/* The weight `prefix.leaf`; a missing one is a bug (weights_load checked the set). */
static const float *W(const Fwd *f, const char *prefix, const char *leaf) {
    char name[NAME_LEN];
    nm(name, "%s%s%s", prefix, prefix[0] ? "." : "", leaf);
    const float *p = weights_find(f->w, name);
    if (!p) die("internal: weight '%s' not loaded", name);
    return p;
}

static void emit(const Fwd *f, const Tensor *t, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void emit(const Fwd *f, const Tensor *t, const char *fmt, ...) {
    if (!f->fn) return;
    char name[NAME_LEN];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(name, NAME_LEN, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= NAME_LEN) die("internal: module path longer than %d bytes", NAME_LEN);
    f->fn(f->ctx, name, t);
}

/* Per-module timing: a module's time is inclusive of the modules it runs. */
static double tic(const Fwd *f) {
    if (!f->timer) return 0;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

static void toc(const Fwd *f, const char *module, double t0) {
    if (f->timer) f->timer->fn(f->timer->ctx, module, tic(f) - t0);
}

/* torch.nn.Linear over the rows of x [..., K] -> new [rows, N] (ndim 2). */
static Tensor linear(const Fwd *f, const char *prefix, const float *x, int64_t rows, int64_t K, int64_t N, int bias) {
    double t0 = tic(f);
    Tensor y = tensor_new(2, rows, N, 0, 0);
    op_linear(x, rows, K, W(f, prefix, "weight"), bias ? W(f, prefix, "bias") : NULL, N, y.d);
    toc(f, prefix, t0);
    return y;
}

static Tensor conv(const Fwd *f, const char *prefix, const Tensor *x, int cout, int k, int stride) {
    double t0 = tic(f);
    Tensor y = op_conv2d(x, W(f, prefix, "weight"), W(f, prefix, "bias"), cout, k, stride, (k - 1) / 2);
    toc(f, prefix, t0);
    return y;
}

/* GroupNorm module `n` in place on x (then SiLU if silu: the activation that follows it). */
static void group_norm(const Fwd *f, const char *n, Tensor *x, float eps, int silu) {
    double t0 = tic(f);
    op_group_norm(x, f->a->norm_groups, W(f, n, "weight"), W(f, n, "bias"), eps, silu);
    toc(f, n, t0);
}

static void layer_norm(const Fwd *f, const char *n, const float *x, int64_t rows, int64_t C, float *y) {
    double t0 = tic(f);
    op_layer_norm(x, rows, C, W(f, n, "weight"), W(f, n, "bias"), 1e-5f, y);
    toc(f, n, t0);
}

/* ResnetBlock2D (time_embedding_norm "default"): x is borrowed, returns new. */
static Tensor resnet(const Fwd *f, const char *p, const Tensor *x, int cout, float out_scale) {
    const Arch *a = f->a;
    char n[NAME_LEN];
    double t0 = tic(f);
    int cin = (int)x->shape[1];
    Tensor h = tensor_copy(x);
    group_norm(f, nm(n, "%s.norm1", p), &h, a->norm_eps, 1);
    nm(n, "%s.conv1", p);
    Tensor h1 = conv(f, n, &h, cout, 3, 1);
    tensor_free(&h);
    nm(n, "%s.time_emb_proj", p);
    Tensor t = linear(f, n, f->temb_act.d, f->B, a->time_embed_dim, cout, 1); /* [B, cout] */
    int64_t S = h1.shape[2] * h1.shape[3];
    for (int64_t b = 0; b < f->B; b++)
        for (int64_t c = 0; c < cout; c++) {
            float v = t.d[b * cout + c], *q = h1.d + (b * cout + c) * S;
            for (int64_t s = 0; s < S; s++) q[s] += v;
        }
    tensor_free(&t);
    group_norm(f, nm(n, "%s.norm2", p), &h1, a->norm_eps, 1);
    nm(n, "%s.conv2", p);
    Tensor h2 = conv(f, n, &h1, cout, 3, 1);
    tensor_free(&h1);
    int64_t cnt = tensor_numel(&h2);
    if (cin != cout) {
        nm(n, "%s.conv_shortcut", p);
        Tensor sc = conv(f, n, x, cout, 1, 1);
        op_add(h2.d, sc.d, cnt);
        tensor_free(&sc);
    } else {
        op_add(h2.d, x->d, cnt);
    }
    if (out_scale != 1.0f)
        for (int64_t i = 0; i < cnt; i++) h2.d[i] /= out_scale;
    toc(f, p, t0);
    return h2;
}

/* Attention (AttnProcessor2_0): x [B*Nq, C] attends to ctx [B*Nk, D]; returns new [B*Nq, C]. */
static Tensor attention(const Fwd *f, const char *p, const float *x, int64_t Nq, int64_t C, const float *ctx,
                        int64_t Nk, int64_t D, int heads) {
    char n[NAME_LEN];
    double t0 = tic(f);
    int64_t B = f->B;
    nm(n, "%s.to_q", p);
    Tensor q = linear(f, n, x, B * Nq, C, C, 0);
    nm(n, "%s.to_k", p);
    Tensor k = linear(f, n, ctx, B * Nk, D, C, 0);
    nm(n, "%s.to_v", p);
    Tensor v = linear(f, n, ctx, B * Nk, D, C, 0);
    Tensor o = tensor_new(2, B * Nq, C, 0, 0);
    op_attention(q.d, k.d, v.d, B, Nq, Nk, C, heads, o.d);
    tensor_free(&q);
    tensor_free(&k);
    tensor_free(&v);
    nm(n, "%s.to_out.0", p);
    Tensor y = linear(f, n, o.d, B * Nq, C, C, 1);
    tensor_free(&o);
    toc(f, p, t0);
    return y;
}

/* BasicTransformerBlock (layer_norm, GEGLU feed-forward), in place on h [B*N, C]. */
static void basic_transformer(const Fwd *f, const char *p, float *h, int64_t N, int64_t C, const Block *b) {
    char n[NAME_LEN];
    double t0 = tic(f);
    int64_t rows = f->B * N, cnt = rows * C;
    Tensor t = tensor_new(2, rows, C, 0, 0);
    layer_norm(f, nm(n, "%s.norm1", p), h, rows, C, t.d);
    nm(n, "%s.attn1", p);
    Tensor a1 = attention(f, n, t.d, N, C, t.d, N, C, b->heads);
    op_add(h, a1.d, cnt);
    tensor_free(&a1);
    layer_norm(f, nm(n, "%s.norm2", p), h, rows, C, t.d);
    nm(n, "%s.attn2", p);
    Tensor a2 = attention(f, n, t.d, N, C, f->enc->d, f->enc->shape[1], f->enc->shape[2], b->heads);
    op_add(h, a2.d, cnt);
    tensor_free(&a2);
    layer_norm(f, nm(n, "%s.norm3", p), h, rows, C, t.d);
    double tf = tic(f);
    nm(n, "%s.ff.net.0.proj", p);
    Tensor g = linear(f, n, t.d, rows, C, 8 * C, 1); /* [rows, 2 x 4C] */
    Tensor gg = tensor_new(2, rows, 4 * C, 0, 0);
    op_geglu(g.d, rows, 4 * C, gg.d);
    tensor_free(&g);
    toc(f, nm(n, "%s.ff.net.0", p), tf); /* GEGLU: its proj and the gating */
    nm(n, "%s.ff.net.2", p);
    Tensor ff = linear(f, n, gg.d, rows, 4 * C, C, 1);
    tensor_free(&gg);
    toc(f, nm(n, "%s.ff", p), tf);
    op_add(h, ff.d, cnt);
    tensor_free(&ff);
    tensor_free(&t);
    toc(f, p, t0);
}

/* Transformer2DModel attentions.j of block b (teacher path `bp`): x borrowed, returns new. */
static Tensor transformer2d(const Fwd *f, const char *bp, const Block *b, int j, const Tensor *x) {
    const Arch *a = f->a;
    char p[NAME_LEN], n[NAME_LEN];
    nm(p, "%s.attentions.%d", bp, b->src_attn[j]);
    double t0 = tic(f);
    int64_t B = f->B, C = x->shape[1], H = x->shape[2], Wd = x->shape[3], N = H * Wd;
    Tensor h = tensor_copy(x);
    group_norm(f, nm(n, "%s.norm", p), &h, 1e-6f, 0); /* eps fixed by diffusers */
    Tensor seq = tensor_new(3, B, N, C, 0); /* [B, HW, C] */
    nm(n, "%s.proj_in", p);
    if (a->use_linear_projection) {
        op_nchw_to_nlc(h.d, B, C, N, seq.d);
        Tensor t = linear(f, n, seq.d, B * N, C, C, 1);
        memcpy(seq.d, t.d, (size_t)(B * N * C) * sizeof(float));
        tensor_free(&t);
    } else {
        Tensor t = conv(f, n, &h, (int)C, 1, 1);
        op_nchw_to_nlc(t.d, B, C, N, seq.d);
        tensor_free(&t);
    }
    tensor_free(&h);
    for (int k = 0; k < b->depth[j]; k++) {
        nm(n, "%s.transformer_blocks.%d", p, b->src_tb[j][k]);
        basic_transformer(f, n, seq.d, N, C, b);
        emit(f, &seq, "%s", n);
    }
    Tensor y = tensor_new(4, B, C, H, Wd);
    nm(n, "%s.proj_out", p);
    if (a->use_linear_projection) {
        Tensor t = linear(f, n, seq.d, B * N, C, C, 1);
        op_nlc_to_nchw(t.d, B, C, N, y.d);
        tensor_free(&t);
    } else {
        op_nlc_to_nchw(seq.d, B, C, N, y.d);
        Tensor t = conv(f, n, &y, (int)C, 1, 1);
        tensor_free(&y);
        y = t;
    }
    tensor_free(&seq);
    op_add(y.d, x->d, tensor_numel(&y));
    toc(f, p, t0);
    return y;
}

/* Replaces *h by g, freeing the old one. */
static void take(Tensor *h, Tensor g) {
    tensor_free(h);
    *h = g;
}

int unet_check_inputs(const Arch *a, const UnetInputs *in) {
    const Tensor *s = &in->sample;
    int nd = 0;
    for (int i = 0; i < a->n_blocks; i++) nd += a->down[i].sampler;
    int64_t mult = (int64_t)1 << nd;
    if (s->ndim != 4 || s->shape[1] != a->in_channels || s->shape[0] < 1)
        return err_set(ERR_INPUT, "input 'input.sample': expected shape [B, %d, H, W]", a->in_channels);
    if (s->shape[2] % mult || s->shape[3] % mult || s->shape[2] < 1 || s->shape[3] < 1)
        return err_set(ERR_INPUT, "input 'input.sample': height and width must be multiples of %lld (the UNet downsamples %d times), got %lld x %lld",
                       (long long)mult, nd, (long long)s->shape[2], (long long)s->shape[3]);
    int64_t B = s->shape[0];
    const Tensor *t = &in->timestep;
    if (!(t->ndim == 1 && (t->shape[0] == B || t->shape[0] == 1)) && !(t->ndim == 0 && t->d))
        return err_set(ERR_INPUT, "input 'input.timestep': expected shape [%lld] or [1]", (long long)B);
    int cross = 0;
    for (int i = 0; i < a->n_blocks; i++) {
        if (a->down[i].n_attn) cross = a->down[i].cross_dim;
        if (a->up[i].n_attn) cross = a->up[i].cross_dim;
    }
    if (a->has_mid && a->mid.n_attn) cross = a->mid.cross_dim;
    const Tensor *e = &in->encoder_hidden_states;
    if (e->ndim != 3 || e->shape[0] != B || e->shape[1] < 1 || (cross && e->shape[2] != cross))
        return err_set(ERR_INPUT, "input 'input.encoder_hidden_states': expected shape [%lld, L, %d]", (long long)B, cross);
    for (int i = 0; i < a->n_blocks; i++)
        if ((a->down[i].n_attn && a->down[i].cross_dim != cross) || (a->up[i].n_attn && a->up[i].cross_dim != cross))
            return err_set(ERR_INPUT, "model has per-block cross_attention_dim values; one encoder_hidden_states cannot feed them all");
    if (a->text_time) {
        const Tensor *te = &in->text_embeds, *ti = &in->time_ids;
        if (ti->ndim != 2 || ti->shape[0] != B)
            return err_set(ERR_INPUT, "input 'input.time_ids': expected shape [%lld, 6]", (long long)B);
        int64_t want = a->add_in_dim - ti->shape[1] * a->add_time_dim;
        if (te->ndim != 2 || te->shape[0] != B || te->shape[1] != want)
            return err_set(ERR_INPUT, "input 'input.text_embeds': expected shape [%lld, %lld] (projection_class_embeddings_input_dim %d - %lld time ids x %d)",
                           (long long)B, (long long)want, a->add_in_dim, (long long)ti->shape[1], a->add_time_dim);
    }
    return 0;
}

/* The forward as a sequence of units (conv_in, each resnet, attention and
 * sampler of each block, the output head). Units are walked three ways:
 *   RUN_SIG   record each unit's signature (which teacher module, which layers);
 *   RUN_DRY   a unit before `start`: the student equals the teacher there, so
 *             the state is tracked by the names of teacher features only;
 *   RUN_LIVE  compute (the state is first rebuilt from the teacher's features
 *             when the walk turns live at `start`).
 * This is the prefix reuse of unet_forward_from: a student identical to its
 * teacher up to some unit starts there from the teacher's activations. */
#define MAX_SKIPS (1 + MAX_BLOCKS * (MAX_LAYERS + 1))
#define MAX_UNITS (2 + 3 * MAX_BLOCKS * (2 * MAX_LAYERS + 1) + 2 * MAX_LAYERS + 1)
enum { RUN_SIG, RUN_EXEC };

typedef struct {
    Fwd *f;
    int mode;
    int unit, start;
    char (*sig)[96];               /* RUN_SIG: signature of each unit */
    const UnetResume *resume;
    Tensor h;                      /* the hidden state (empty while dry) */
    char h_name[NAME_LEN];         /* the teacher feature h equals, while dry */
    Tensor sk[MAX_SKIPS];          /* skip connections, pushed by the down path */
    char sk_name[MAX_SKIPS][NAME_LEN];
    int n_sk;
    int units_live;
} Run;

static Tensor teacher_copy(const Run *r, const char *name) {
    const Tensor *t = r->resume->get(r->resume->ctx, name);
    if (!t) die("internal: prefix reuse needs the teacher's feature '%s'", name);
    return tensor_copy(t);
}

/* Starts a unit; returns 1 when it must be computed. */
static int unit_begin(Run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int unit_begin(Run *r, const char *fmt, ...) {
    int u = r->unit++;
    if (u >= MAX_UNITS) die("internal: more than %d forward units", MAX_UNITS);
    if (r->mode == RUN_SIG) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->sig[u], sizeof r->sig[u], fmt, ap);
        va_end(ap);
        return 0;
    }
    if (u < r->start) return 0;
    if (u == r->start && r->start > 0) { /* turn live: rebuild the state from the teacher's features */
        r->h = teacher_copy(r, r->h_name);
        for (int i = 0; i < r->n_sk; i++) r->sk[i] = teacher_copy(r, r->sk_name[i]);
    }
    r->units_live++;
    return 1;
}

/* Ends a unit whose output (h) is the feature `name`; push: the down path keeps it as a skip. */
static void unit_end(Run *r, int live, const char *name, int push) {
    if (r->mode == RUN_SIG) return;
    if (live) emit(r->f, &r->h, "%s", name);
    else {
        nm(r->h_name, "%s", name);
        if (r->f->fn) emit(r->f, r->resume->get(r->resume->ctx, name), "%s", name);
    }
    if (push) {
        if (r->n_sk == MAX_SKIPS) die("internal: skip stack overflow");
        nm(r->sk_name[r->n_sk], "%s", name);
        r->sk[r->n_sk++] = live ? tensor_copy(&r->h) : (Tensor){0};
    }
}

/* Emits the teacher's transformer-layer features of a dry attention unit. */
static void dry_layers(const Run *r, const char *bp, const Block *b, int j) {
    char n[NAME_LEN];
    for (int k = 0; r->mode == RUN_EXEC && r->f->fn && k < b->depth[j]; k++) {
        nm(n, "%s.attentions.%d.transformer_blocks.%d", bp, b->src_attn[j], b->src_tb[j][k]);
        emit(r->f, r->resume->get(r->resume->ctx, n), "%s", n);
    }
}

static void attention_unit(Run *r, const char *bp, const Block *b, int j, int push) {
    char n[NAME_LEN], sig[80];
    int len = snprintf(sig, sizeof sig, "%d", b->depth[j]);
    for (int k = 0; k < b->depth[j] && len < (int)sizeof sig - 4; k++) len += snprintf(sig + len, sizeof sig - (size_t)len, ",%d", b->src_tb[j][k]);
    int live = unit_begin(r, "%s/a%d/%s", bp, b->src_attn[j], sig);
    if (live) take(&r->h, transformer2d(r->f, bp, b, j, &r->h));
    else dry_layers(r, bp, b, j);
    unit_end(r, live, nm(n, "%s.attentions.%d", bp, b->src_attn[j]), push);
}

static void run_block(Run *r, const char *bp, const Block *b, float out_scale) {
    int up = b->type == BLOCK_UP || b->type == BLOCK_CROSSATTN_UP;
    int down = b->type == BLOCK_DOWN || b->type == BLOCK_CROSSATTN_DOWN;
    int mid = !up && !down;
    char p[NAME_LEN];
    for (int j = 0; j < b->n_resnets; j++) {
        if (mid && j > 0) attention_unit(r, bp, b, j - 1, 0); /* UNetMidBlock2DCrossAttn: resnet, (attention, resnet)... */
        int has_attn = !mid && j < b->n_attn;
        nm(p, "%s.resnets.%d", bp, b->src_resnet[j]);
        int live = unit_begin(r, "%s/r%d/%d", bp, b->src_resnet[j], b->type);
        if (up && r->mode == RUN_EXEC) {
            if (r->n_sk == 0) die("internal: skip stack underflow at %s", p);
            Tensor s = r->sk[--r->n_sk];
            if (live) take(&r->h, op_concat_channels(&r->h, &s));
            tensor_free(&s);
        }
        if (live) take(&r->h, resnet(r->f, p, &r->h, b->out_ch, out_scale));
        unit_end(r, live, p, down && !has_attn);
        if (has_attn) attention_unit(r, bp, b, j, down);
    }
    if (b->sampler) {
        const char *kind = down ? "downsamplers" : "upsamplers";
        int live = unit_begin(r, "%s/%s", bp, kind);
        if (live) {
            double t0 = tic(r->f);
            nm(p, "%s.%s.0.conv", bp, kind);
            if (up) take(&r->h, op_upsample2x(&r->h));
            take(&r->h, conv(r->f, p, &r->h, b->out_ch, 3, down ? 2 : 1));
            toc(r->f, nm(p, "%s.%s.0", bp, kind), t0);
        }
        unit_end(r, live, nm(p, "%s.%s.0", bp, kind), down);
    }
    if (r->mode == RUN_SIG) return;
    if (r->unit > r->start) emit(r->f, &r->h, "%s", bp); /* the block's output is its last unit's */
    else {
        nm(r->h_name, "%s", bp);
        if (r->f->fn) emit(r->f, r->resume->get(r->resume->ctx, bp), "%s", bp);
    }
}

/* Walks every unit of a; in RUN_EXEC computes from unit r->start on. */
static void walk(Run *r, const Arch *a, const UnetInputs *in) {
    Fwd *f = r->f;
    char bp[64];
    int live = unit_begin(r, "conv_in");
    if (live) {
        r->h = tensor_copy(&in->sample);
        if (a->center_input_sample)
            for (int64_t i = 0; i < tensor_numel(&r->h); i++) r->h.d[i] = 2 * r->h.d[i] - 1;
        take(&r->h, conv(f, "conv_in", &r->h, a->block_out[0], a->conv_in_kernel, 1));
    }
    unit_end(r, live, "conv_in", 1);
    double t0 = tic(f);
    for (int i = 0; i < a->n_blocks; i++, t0 = tic(f)) {
        run_block(r, nm(bp, "down_blocks.%d", i), &a->down[i], 1.0f);
        toc(f, bp, t0);
    }
    if (a->has_mid) {
        run_block(r, "mid_block", &a->mid, a->mid_scale);
        toc(f, "mid_block", t0);
    }
    for (int i = 0; i < a->n_blocks; i++) {
        t0 = tic(f);
        run_block(r, nm(bp, "up_blocks.%d", i), &a->up[i], 1.0f);
        toc(f, bp, t0);
    }
    if (unit_begin(r, "head")) { /* conv_norm_out (+ conv_act, SiLU), conv_out: always live (start never passes it) */
        group_norm(f, "conv_norm_out", &r->h, a->norm_eps, 1);
        take(&r->h, conv(f, "conv_out", &r->h, a->out_channels, a->conv_out_kernel, 1));
    }
}

/* Number of units of a, with their signatures in sig. */
static int signatures(const Arch *a, char (*sig)[96]) {
    Fwd f = {a, NULL, NULL, NULL, 0, {0}, NULL, NULL};
    Run r = {.f = &f, .mode = RUN_SIG, .sig = sig};
    walk(&r, a, NULL);
    return r.unit;
}

int unet_forward_from(const Arch *a, const Weights *w, const UnetInputs *in, const UnetResume *resume, Tensor *out,
                      FeatureFn fn, void *ctx, UnetRunStats *stats, const UnetTimer *timer) {
    int rc = unet_check_inputs(a, in);
    if (rc) return rc;
    Fwd f = {a, w, fn, ctx, in->sample.shape[0], {0}, &in->encoder_hidden_states, timer};
    int64_t B = f.B;
    int C0 = a->block_out[0], T = a->time_embed_dim;
    Run r = {.f = &f, .mode = RUN_EXEC, .resume = resume};
    static _Thread_local char sa[MAX_UNITS][96], sb[MAX_UNITS][96];
    int n = signatures(a, sa);
    if (resume) { /* first unit where the student differs from its teacher */
        int nt = signatures(resume->teacher, sb);
        while (r.start < n - 1 && r.start < nt - 1 && !strcmp(sa[r.start], sb[r.start])) r.start++;
    }

    /* time_proj + time_embedding */
    float *ts = xmalloc((size_t)B * sizeof(float));
    for (int64_t b = 0; b < B; b++) ts[b] = in->timestep.d[in->timestep.ndim && in->timestep.shape[0] == B ? b : 0];
    double t0 = tic(&f);
    Tensor temb = tensor_new(2, B, C0, 0, 0);
    op_timestep_embedding(ts, B, C0, a->flip_sin_to_cos, a->freq_shift, temb.d);
    free(ts);
    toc(&f, "time_proj", t0);
    t0 = tic(&f);
    Tensor e1 = linear(&f, "time_embedding.linear_1", temb.d, B, C0, T, 1);
    op_silu(e1.d, B * T);
    Tensor emb = linear(&f, "time_embedding.linear_2", e1.d, B, T, T, 1);
    tensor_free(&e1);
    toc(&f, "time_embedding", t0);
    tensor_free(&temb);
    if (a->text_time) { /* add_time_proj + add_embedding on [text_embeds, sinusoid(time_ids)] */
        int64_t nid = in->time_ids.shape[1], te = in->text_embeds.shape[1], D = a->add_time_dim;
        t0 = tic(&f);
        Tensor tid = tensor_new(2, B * nid, D, 0, 0);
        op_timestep_embedding(in->time_ids.d, B * nid, (int)D, a->flip_sin_to_cos, a->freq_shift, tid.d);
        toc(&f, "add_time_proj", t0);
        t0 = tic(&f);
        Tensor cat = tensor_new(2, B, a->add_in_dim, 0, 0);
        for (int64_t b = 0; b < B; b++) {
            memcpy(cat.d + b * a->add_in_dim, in->text_embeds.d + b * te, (size_t)te * sizeof(float));
            memcpy(cat.d + b * a->add_in_dim + te, tid.d + b * nid * D, (size_t)(nid * D) * sizeof(float));
        }
        tensor_free(&tid);
        Tensor a1 = linear(&f, "add_embedding.linear_1", cat.d, B, a->add_in_dim, T, 1);
        op_silu(a1.d, B * T);
        Tensor a2 = linear(&f, "add_embedding.linear_2", a1.d, B, T, T, 1);
        op_add(emb.d, a2.d, B * T);
        tensor_free(&cat);
        tensor_free(&a1);
        tensor_free(&a2);
        toc(&f, "add_embedding", t0);
    }
    op_silu(emb.d, B * T); /* each resnet applies SiLU to temb before time_emb_proj */
    f.temb_act = emb;

    walk(&r, a, in);
    for (int i = 0; i < r.n_sk; i++) tensor_free(&r.sk[i]); /* a student may leave skips unused */
    *out = r.h;
    tensor_free(&f.temb_act);
    if (stats) { stats->units = n; stats->units_live = r.units_live; stats->start = r.start; }
    return 0;
}

int unet_forward(const Arch *a, const Weights *w, const UnetInputs *in, Tensor *out, FeatureFn fn, void *ctx) {
    return unet_forward_from(a, w, in, NULL, out, fn, ctx, NULL, NULL);
}

/* Reads tensor `name` of an inputs file into a float32 Tensor; ERR_INPUT if missing. */
static int read_input(const SafeTensors *st, const char *name, int required, Tensor *out) {
    memset(out, 0, sizeof *out);
    const StTensor *t = st_find(st, name);
    if (!t) return required ? err_set(ERR_INPUT, "'%s': missing tensor '%s'", st->path, name) : 0;
    if (t->ndim > TENSOR_MAX_DIMS) return err_set(ERR_INPUT, "'%s': tensor '%s' has %d dimensions", st->path, name, t->ndim);
    out->ndim = t->ndim;
    for (int i = 0; i < t->ndim; i++) out->shape[i] = t->shape[i];
    out->d = xmalloc((size_t)(t->numel ? t->numel : 1) * sizeof(float));
    st_to_f32(t, out->d);
    return 0;
}

int unet_inputs_load(const char *path, const Arch *a, UnetInputs *in) {
    memset(in, 0, sizeof *in);
    SafeTensors st;
    int rc = st_open(&st, path, ERR_INPUT);
    if (rc) return rc;
    if (!rc) rc = read_input(&st, "input.sample", 1, &in->sample);
    if (!rc) rc = read_input(&st, "input.timestep", 1, &in->timestep);
    if (!rc) rc = read_input(&st, "input.encoder_hidden_states", 1, &in->encoder_hidden_states);
    if (!rc) rc = read_input(&st, "input.text_embeds", a->text_time, &in->text_embeds);
    if (!rc) rc = read_input(&st, "input.time_ids", a->text_time, &in->time_ids);
    st_close(&st);
    if (!rc && (rc = unet_check_inputs(a, in))) err_wrap(rc, "'%s': ", path);
    return rc;
}

void unet_inputs_free(UnetInputs *in) {
    tensor_free(&in->sample);
    tensor_free(&in->timestep);
    tensor_free(&in->encoder_hidden_states);
    tensor_free(&in->text_embeds);
    tensor_free(&in->time_ids);
}

