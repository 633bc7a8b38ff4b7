/* forward: see forward.h. Mirrors diffusers' UNet2DConditionModel.forward
 * step by step; comments name the diffusers module each step stands for. */
#include "forward.h"
#include "backend.h"
#include "err.h"
#include "safetensors.h"
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    const Arch *a;
    Backend *be;
    FeatureFn fn;
    void *ctx;
    int64_t B;
    Act temb_act;             /* silu(emb) [B, time_embed_dim]: what every resnet projects */
    Act enc;                  /* [B, L, D] */
    const UnetTimer *timer;   /* per-module timing, or NULL */
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

/* The observer gets a float32 host tensor in PyTorch order, whatever the backend. */
static void emit_act(const Fwd *f, const Act *x, const char *name) {
    if (!f->fn) return;
    Tensor t;
    int owned;
    f->be->to_host(f->be, x, &t, &owned);
    f->fn(f->ctx, name, &t);
    if (owned) tensor_free(&t);
}

/* Per-module timing: a module's time is inclusive of the modules it runs.
 * tic starts module `module` (the timer's begin hook sees it: the cuda
 * profilers attribute launches to it); toc ends it with the host wall time. */
static double tic(const Fwd *f, const char *module) {
    if (!f->timer) return 0;
    if (f->timer->begin) f->timer->begin(f->timer->ctx, module);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

static void toc(const Fwd *f, const char *module, double t0) {
    if (!f->timer) return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    f->timer->fn(f->timer->ctx, module, 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec - t0);
}

/* torch.nn.Linear `prefix` over the last dim of x, plus res (may be NULL). */
static Act linear(const Fwd *f, const char *prefix, const Act *x, int64_t N, int bias, const Act *res) {
    double t0 = tic(f, prefix);
    Act y = f->be->linear(f->be, prefix, x, N, bias, res);
    toc(f, prefix, t0);
    return y;
}

static Act conv(const Fwd *f, const char *prefix, const Act *x, int cout, int k, int stride, const Act *res) {
    double t0 = tic(f, prefix);
    Act y = f->be->conv(f->be, prefix, x, cout, k, stride, res);
    toc(f, prefix, t0);
    return y;
}

/* GroupNorm module `n` in place on x + add (then SiLU if silu: the activation that follows it). */
static void group_norm(const Fwd *f, const char *n, Act *x, float eps, int silu, const Act *add) {
    double t0 = tic(f, n);
    f->be->group_norm(f->be, n, x, f->a->norm_groups, eps, silu, add);
    toc(f, n, t0);
}

/* GroupNorm module `n` of x + add into a new act, x unchanged (it is still
 * needed: a resnet's skip, a transformer's residual): out of place where the
 * backend can, else a copy normalised in place (the copy left out of the
 * module's time, as it always was). */
static Act group_norm_new(const Fwd *f, const char *n, const Act *x, float eps, int silu, const Act *add) {
    if (!f->be->group_norm_out) {
        Act h = f->be->copy(f->be, x);
        group_norm(f, n, &h, eps, silu, add);
        return h;
    }
    double t0 = tic(f, n);
    Act h = f->be->group_norm_out(f->be, n, x, f->a->norm_groups, eps, silu, add);
    toc(f, n, t0);
    return h;
}

static Act layer_norm(const Fwd *f, const char *n, const Act *x) {
    double t0 = tic(f, n);
    Act y = f->be->layer_norm(f->be, n, x, 1e-5f);
    toc(f, n, t0);
    return y;
}

static void release(const Fwd *f, Act *x) { f->be->release(f->be, x); }

/* ResnetBlock2D (time_embedding_norm "default"): x is borrowed, returns new.
 * The time embedding's add is fused into norm2, the skip into conv2. */
static Act resnet(const Fwd *f, const char *p, const Act *x, int cout, float out_scale) {
    const Arch *a = f->a;
    char n[NAME_LEN];
    double t0 = tic(f, p);
    int cin = (int)x->shape[1];
    Act h = group_norm_new(f, nm(n, "%s.norm1", p), x, a->norm_eps, 1, NULL);
    Act h1 = conv(f, nm(n, "%s.conv1", p), &h, cout, 3, 1, NULL);
    release(f, &h);
    Act t = linear(f, nm(n, "%s.time_emb_proj", p), &f->temb_act, cout, 1, NULL); /* [B, cout] */
    group_norm(f, nm(n, "%s.norm2", p), &h1, a->norm_eps, 1, &t);
    release(f, &t);
    Act sc = {0};
    if (cin != cout) sc = conv(f, nm(n, "%s.conv_shortcut", p), x, cout, 1, 1, NULL);
    const Act *skip = cin != cout ? &sc : x;
    Act h2 = conv(f, nm(n, "%s.conv2", p), &h1, cout, 3, 1, out_scale == 1.0f ? skip : NULL);
    if (out_scale != 1.0f) f->be->add(f->be, &h2, skip, out_scale);
    release(f, &h1);
    if (cin != cout) release(f, &sc);
    toc(f, p, t0);
    return h2;
}

/* Attention (AttnProcessor2_0): x [B, Nq, C] attends to ctx [B, Nk, D];
 * returns new [B, Nq, C] = to_out(attention) + res. */
static Act attention(const Fwd *f, const char *p, const Act *x, const Act *ctx, int heads, const Act *res) {
    char n[NAME_LEN];
    double t0 = tic(f, p);
    int64_t C = x->shape[2];
    Act q = linear(f, nm(n, "%s.to_q", p), x, C, 0, NULL);
    Act k = linear(f, nm(n, "%s.to_k", p), ctx, C, 0, NULL);
    Act v = linear(f, nm(n, "%s.to_v", p), ctx, C, 0, NULL);
    Act o = f->be->attention(f->be, &q, &k, &v, heads);
    release(f, &q);
    release(f, &k);
    release(f, &v);
    Act y = linear(f, nm(n, "%s.to_out.0", p), &o, C, 1, res);
    release(f, &o);
    toc(f, p, t0);
    return y;
}

/* Replaces *h by g, releasing the old one. */
static void take(const Fwd *f, Act *h, Act g) {
    release(f, h);
    *h = g;
}

/* BasicTransformerBlock (layer_norm, GEGLU feed-forward) on h [B, N, C], replaced. */
static void basic_transformer(const Fwd *f, const char *p, Act *h, const Block *b) {
    char n[NAME_LEN];
    double t0 = tic(f, p);
    int64_t C = h->shape[2];
    Act t = layer_norm(f, nm(n, "%s.norm1", p), h);
    take(f, h, attention(f, nm(n, "%s.attn1", p), &t, &t, b->heads, h));
    release(f, &t);
    t = layer_norm(f, nm(n, "%s.norm2", p), h);
    take(f, h, attention(f, nm(n, "%s.attn2", p), &t, &f->enc, b->heads, h));
    release(f, &t);
    t = layer_norm(f, nm(n, "%s.norm3", p), h);
    char ff[NAME_LEN], g0[NAME_LEN];
    double tf = tic(f, nm(ff, "%s.ff", p));
    double tg = tic(f, nm(g0, "%s.ff.net.0", p)); /* GEGLU: its proj and the gating */
    Act gg;
    if (f->be->linear_geglu) { /* fused: the proj's time is the whole GEGLU's */
        double tp = tic(f, nm(n, "%s.ff.net.0.proj", p));
        gg = f->be->linear_geglu(f->be, n, &t, 4 * C);
        toc(f, n, tp);
    } else {
        Act g = linear(f, nm(n, "%s.ff.net.0.proj", p), &t, 8 * C, 1, NULL); /* [B, N, 2 x 4C] */
        gg = f->be->geglu(f->be, &g);
        release(f, &g);
    }
    release(f, &t);
    toc(f, g0, tg);
    take(f, h, linear(f, nm(n, "%s.ff.net.2", p), &gg, C, 1, h));
    release(f, &gg);
    toc(f, ff, tf);
    toc(f, p, t0);
}

/* Transformer2DModel attentions.j of block b (teacher path `bp`): x borrowed, returns new. */
static Act transformer2d(const Fwd *f, const char *bp, const Block *b, int j, const Act *x) {
    const Arch *a = f->a;
    char p[NAME_LEN], n[NAME_LEN];
    nm(p, "%s.attentions.%d", bp, b->src_attn[j]);
    double t0 = tic(f, p);
    int64_t C = x->shape[1], H = x->shape[2], Wd = x->shape[3];
    Act h = group_norm_new(f, nm(n, "%s.norm", p), x, 1e-6f, 0, NULL); /* eps fixed by diffusers */
    Act seq; /* [B, HW, C] */
    nm(n, "%s.proj_in", p);
    if (a->use_linear_projection) {
        Act s0 = f->be->to_seq(f->be, &h);
        seq = linear(f, n, &s0, C, 1, NULL);
        release(f, &s0);
    } else {
        Act t = conv(f, n, &h, (int)C, 1, 1, NULL);
        release(f, &h);
        seq = f->be->to_seq(f->be, &t);
    }
    for (int k = 0; k < b->depth[j]; k++) {
        nm(n, "%s.transformer_blocks.%d", p, b->src_tb[j][k]);
        basic_transformer(f, n, &seq, b);
        emit_act(f, &seq, n);
    }
    Act y;
    nm(n, "%s.proj_out", p);
    if (a->use_linear_projection) {
        Act t = linear(f, n, &seq, C, 1, x); /* + x: the map whose sequence this is */
        release(f, &seq);
        y = f->be->to_map(f->be, &t, H, Wd);
    } else {
        Act m = f->be->to_map(f->be, &seq, H, Wd);
        y = conv(f, n, &m, (int)C, 1, 1, x);
        release(f, &m);
    }
    toc(f, p, t0);
    return y;
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
    Act h;                         /* the hidden state (empty while dry) */
    char h_name[NAME_LEN];         /* the teacher feature h equals, while dry */
    Act sk[MAX_SKIPS];             /* skip connections, pushed by the down path */
    char sk_name[MAX_SKIPS][NAME_LEN];
    int n_sk;
    int units_live;
} Run;

static Act teacher_copy(const Run *r, const char *name) {
    const Tensor *t = r->resume->get(r->resume->ctx, name);
    if (!t) die("internal: prefix reuse needs the teacher's feature '%s'", name);
    return r->f->be->from_host(r->f->be, t);
}

/* A dry unit's feature: the teacher's, as the resume source holds it. */
static void emit_teacher(const Run *r, const char *name) {
    if (r->f->fn) r->f->fn(r->f->ctx, name, r->resume->get(r->resume->ctx, name));
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
    if (live) emit_act(r->f, &r->h, name);
    else {
        nm(r->h_name, "%s", name);
        emit_teacher(r, name);
    }
    if (push) {
        if (r->n_sk == MAX_SKIPS) die("internal: skip stack overflow");
        nm(r->sk_name[r->n_sk], "%s", name);
        r->sk[r->n_sk++] = live ? r->f->be->copy(r->f->be, &r->h) : (Act){0};
    }
}

/* Emits the teacher's transformer-layer features of a dry attention unit. */
static void dry_layers(const Run *r, const char *bp, const Block *b, int j) {
    char n[NAME_LEN];
    for (int k = 0; r->mode == RUN_EXEC && r->f->fn && k < b->depth[j]; k++)
        emit_teacher(r, nm(n, "%s.attentions.%d.transformer_blocks.%d", bp, b->src_attn[j], b->src_tb[j][k]));
}

static void attention_unit(Run *r, const char *bp, const Block *b, int j, int push) {
    char n[NAME_LEN], sig[80];
    int len = snprintf(sig, sizeof sig, "%d", b->depth[j]);
    for (int k = 0; k < b->depth[j] && len < (int)sizeof sig - 4; k++) len += snprintf(sig + len, sizeof sig - (size_t)len, ",%d", b->src_tb[j][k]);
    int live = unit_begin(r, "%s/a%d/%s", bp, b->src_attn[j], sig);
    if (live) take(r->f, &r->h, transformer2d(r->f, bp, b, j, &r->h));
    else dry_layers(r, bp, b, j);
    unit_end(r, live, nm(n, "%s.attentions.%d", bp, b->src_attn[j]), push);
}

static void run_block(Run *r, const char *bp, const Block *b, float out_scale) {
    Fwd *f = r->f;
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
            Act s = r->sk[--r->n_sk];
            if (live) take(f, &r->h, f->be->concat(f->be, &r->h, &s));
            if (s.d) release(f, &s);
        }
        if (live) take(f, &r->h, resnet(f, p, &r->h, b->out_ch, out_scale));
        unit_end(r, live, p, down && !has_attn);
        if (has_attn) attention_unit(r, bp, b, j, down);
    }
    if (b->sampler) {
        const char *kind = down ? "downsamplers" : "upsamplers";
        int live = unit_begin(r, "%s/%s", bp, kind);
        nm(p, "%s.%s.0", bp, kind);
        if (live) {
            char c[NAME_LEN];
            double t0 = tic(f, p);
            if (up) take(f, &r->h, f->be->upsample2x(f->be, &r->h));
            take(f, &r->h, conv(f, nm(c, "%s.conv", p), &r->h, b->out_ch, 3, down ? 2 : 1, NULL));
            toc(f, p, t0);
        }
        unit_end(r, live, p, down);
    }
    if (r->mode == RUN_SIG) return;
    if (r->unit > r->start) emit_act(f, &r->h, bp); /* the block's output is its last unit's */
    else {
        nm(r->h_name, "%s", bp);
        emit_teacher(r, bp);
    }
}

/* Walks every unit of a; in RUN_EXEC computes from unit r->start on. */
static void walk(Run *r, const Arch *a, const UnetInputs *in) {
    Fwd *f = r->f;
    char bp[64];
    int live = unit_begin(r, "conv_in");
    if (live) {
        Act x = f->be->from_host(f->be, &in->sample);
        if (a->center_input_sample) f->be->affine(f->be, &x, 2.0f, -1.0f);
        r->h = conv(f, "conv_in", &x, a->block_out[0], a->conv_in_kernel, 1, NULL);
        release(f, &x);
    }
    unit_end(r, live, "conv_in", 1);
    for (int i = 0; i < a->n_blocks; i++) {
        double t0 = tic(f, nm(bp, "down_blocks.%d", i));
        run_block(r, bp, &a->down[i], 1.0f);
        toc(f, bp, t0);
    }
    if (a->has_mid) {
        double t0 = tic(f, "mid_block");
        run_block(r, "mid_block", &a->mid, a->mid_scale);
        toc(f, "mid_block", t0);
    }
    for (int i = 0; i < a->n_blocks; i++) {
        double t0 = tic(f, nm(bp, "up_blocks.%d", i));
        run_block(r, bp, &a->up[i], 1.0f);
        toc(f, bp, t0);
    }
    if (unit_begin(r, "head")) { /* conv_norm_out (+ conv_act, SiLU), conv_out: always live (start never passes it) */
        group_norm(f, "conv_norm_out", &r->h, a->norm_eps, 1, NULL);
        take(f, &r->h, conv(f, "conv_out", &r->h, a->out_channels, a->conv_out_kernel, 1, NULL));
    }
}

/* Number of units of a, with their signatures in sig. */
static int signatures(const Arch *a, char (*sig)[96]) {
    Fwd f = {.a = a};
    Run r = {.f = &f, .mode = RUN_SIG, .sig = sig};
    walk(&r, a, NULL);
    return r.unit;
}

int unet_forward_be(Backend *be, const Arch *a, const UnetInputs *in, const UnetResume *resume, Tensor *out,
                    FeatureFn fn, void *ctx, UnetRunStats *stats, const UnetTimer *timer) {
    int rc = unet_check_inputs(a, in);
    if (rc) return rc;
    Fwd f = {.a = a, .be = be, .fn = fn, .ctx = ctx, .B = in->sample.shape[0], .timer = timer};
    int64_t B = f.B;
    int C0 = a->block_out[0], T = a->time_embed_dim;
    Run r = {.f = &f, .mode = RUN_EXEC, .resume = resume};
    static _Thread_local char sa[MAX_UNITS][96], sb[MAX_UNITS][96];
    int n = signatures(a, sa);
    if (resume) { /* first unit where the student differs from its teacher */
        int nt = signatures(resume->teacher, sb);
        while (r.start < n - 1 && r.start < nt - 1 && !strcmp(sa[r.start], sb[r.start])) r.start++;
    }
    be->begin(be);
    f.enc = be->from_host(be, &in->encoder_hidden_states);

    /* time_proj + time_embedding */
    float *ts = xmalloc((size_t)B * sizeof(float));
    for (int64_t b = 0; b < B; b++) ts[b] = in->timestep.d[in->timestep.ndim && in->timestep.shape[0] == B ? b : 0];
    double t0 = tic(&f, "time_proj");
    Act temb = be->timestep_embedding(be, ts, B, C0, a->flip_sin_to_cos, a->freq_shift); /* [B, C0] */
    free(ts);
    toc(&f, "time_proj", t0);
    t0 = tic(&f, "time_embedding");
    Act e1 = linear(&f, "time_embedding.linear_1", &temb, T, 1, NULL);
    be->silu(be, &e1);
    Act emb = linear(&f, "time_embedding.linear_2", &e1, T, 1, NULL);
    release(&f, &e1);
    toc(&f, "time_embedding", t0);
    release(&f, &temb);
    if (a->text_time) { /* add_time_proj + add_embedding on [text_embeds, sinusoid(time_ids)] */
        int64_t nid = in->time_ids.shape[1], D = a->add_time_dim;
        t0 = tic(&f, "add_time_proj");
        Act tid = be->timestep_embedding(be, in->time_ids.d, B * nid, (int)D, a->flip_sin_to_cos, a->freq_shift);
        tid.shape[0] = B; /* [B * nid, D] read as [B, nid * D]: the same rows */
        tid.shape[1] = nid * D;
        toc(&f, "add_time_proj", t0);
        t0 = tic(&f, "add_embedding");
        Act te = be->from_host(be, &in->text_embeds);
        Act cat = be->concat(be, &te, &tid); /* [B, add_in_dim] */
        release(&f, &te);
        release(&f, &tid);
        Act a1 = linear(&f, "add_embedding.linear_1", &cat, T, 1, NULL);
        be->silu(be, &a1);
        take(&f, &emb, linear(&f, "add_embedding.linear_2", &a1, T, 1, &emb));
        release(&f, &cat);
        release(&f, &a1);
        toc(&f, "add_embedding", t0);
    }
    be->silu(be, &emb); /* each resnet applies SiLU to temb before time_emb_proj */
    f.temb_act = emb;

    walk(&r, a, in);
    for (int i = 0; i < r.n_sk; i++) /* a student may leave skips unused */
        if (r.sk[i].d) release(&f, &r.sk[i]);
    if (out) {
        Tensor t;
        int owned;
        be->to_host(be, &r.h, &t, &owned);
        *out = owned ? t : tensor_copy(&t);
    } else if (be->keep_output) {
        be->keep_output(be, &r.h);
    }
    release(&f, &r.h);
    release(&f, &f.temb_act);
    release(&f, &f.enc);
    if (stats) { stats->units = n; stats->units_live = r.units_live; stats->start = r.start; }
    return 0;
}

int unet_forward_from(const Arch *a, const Weights *w, const UnetInputs *in, const UnetResume *resume, Tensor *out,
                      FeatureFn fn, void *ctx, UnetRunStats *stats, const UnetTimer *timer) {
    Backend ref;
    return unet_forward_be(cpu_backend(w, &ref), a, in, resume, out, fn, ctx, stats, timer);
}

int unet_forward(const Arch *a, const Weights *w, const UnetInputs *in, Tensor *out, FeatureFn fn, void *ctx) {
    return unet_forward_from(a, w, in, NULL, out, fn, ctx, NULL, NULL);
}


