/* test_singlefile: single-file checkpoints in the original (LDM) layout as
 * --model (model/singlefile.h). The proof is made here, not assumed:
 *
 * - fixtures: each diffusers fixture is rewritten as a single file by an
 *   inverse mapping written in this file (diffusers -> LDM names, from the
 *   layout, apart from model/singlefile.c's table), with decoy VAE and text
 *   encoder tensors that must be ignored, in its fp16, in fp32 and in bf16;
 *   `unetlab forward --model single.safetensors` then equals `forward --model
 *   fixture-dir` (bf16: a diffusers directory of the same bf16 weights) bit for
 *   bit, outputs and features. The fixtures' attention heads and norm groups
 *   are not SD's, so their config is the NAME.config.json beside the file;
 * - a UNet tensor no rule places, a mappable one the model lacks and a missing
 *   one: exit 3 and one error line naming it (and, missing, its diffusers name);
 * - the real layouts: every UNet tensor of SDXL base 1.0's and SD 1.5's single
 *   files (tests/data/, made by tools/ldm_names.py from the original code's
 *   layout) maps to a tensor of the sdxl-base / sd-1.5 preset's module tree of
 *   that shape, covering the tree once; this file's inverse gives the same
 *   names; and the architecture inferred from those names and shapes alone is
 *   the preset's. SSD-1B and Segmind-Vega (other depths, no mid attention): the
 *   architecture inferred from their LDM names (made by the inverse) is the preset's;
 * - inference end to end: two small SD 1.x- and SDXL-family models (seeded
 *   random weights of a config.json) written as single files without a config
 *   beside them: forward equals the config's forward bit for bit. */
#include "test.h"
#include "testcli.h"
#include "testst.h"
#include "config.h"
#include "err.h"
#include "safetensors.h"
#include "singlefile.h"
#include "unet.h"
#include "weights.h"
#include <cjson/cJSON.h>
#include <sys/stat.h>

#define FXDIR "tests/fixtures"
#define P SF_PREFIX

/* ---- diffusers -> LDM names, the second statement of the layout ---------- */

static const char *const FIXED[][2] = {
    {"conv_in.", "input_blocks.0.0."},        {"time_embedding.linear_1.", "time_embed.0."},
    {"time_embedding.linear_2.", "time_embed.2."}, {"add_embedding.linear_1.", "label_emb.0.0."},
    {"add_embedding.linear_2.", "label_emb.0.2."}, {"conv_norm_out.", "out.0."},
    {"conv_out.", "out.2."},
};
/* ResBlock: in_layers = GroupNorm, SiLU, conv; emb_layers = SiLU, Linear; out_layers = GroupNorm, SiLU, Dropout, conv */
static const char *const RES[][2] = {
    {"norm1.", "in_layers.0."},  {"conv1.", "in_layers.2."}, {"time_emb_proj.", "emb_layers.1."},
    {"norm2.", "out_layers.0."}, {"conv2.", "out_layers.3."}, {"conv_shortcut.", "skip_connection."},
};

static int resnet_ldm(const char *unit, const char *rest, char *out, size_t size) {
    for (size_t k = 0; k < sizeof RES / sizeof *RES; k++) {
        size_t n = strlen(RES[k][0]);
        if (!strncmp(rest, RES[k][0], n)) return snprintf(out, size, P "%s%s%s", unit, RES[k][1], rest + n) < (int)size ? 0 : -1;
    }
    return -1;
}

/* A diffusers tensor name of architecture a -> its full LDM name; 0 or -1.
 * LDM entry numbers count the layers (and the downsamplers) of the blocks before. */
static int ldm_of(const Arch *a, const char *d, char *out, size_t size) {
    for (size_t k = 0; k < sizeof FIXED / sizeof *FIXED; k++) {
        size_t n = strlen(FIXED[k][0]);
        if (!strncmp(d, FIXED[k][0], n)) return snprintf(out, size, P "%s%s", FIXED[k][1], d + n) < (int)size ? 0 : -1;
    }
    int i, j, pos = 0;
    char kind[32], unit[64];
    if (sscanf(d, "down_blocks.%d.%31[a-z].%d.%n", &i, kind, &j, &pos) == 3 && pos && i < a->n_blocks) {
        int n = 1;
        for (int b = 0; b < i; b++) n += a->down[b].n_resnets + a->down[b].sampler;
        if (!strcmp(kind, "resnets")) {
            snprintf(unit, sizeof unit, "input_blocks.%d.0.", n + j);
            return resnet_ldm(unit, d + pos, out, size);
        }
        if (!strcmp(kind, "attentions")) return snprintf(out, size, P "input_blocks.%d.1.%s", n + j, d + pos) < (int)size ? 0 : -1;
        if (!strcmp(kind, "downsamplers") && !strncmp(d + pos, "conv.", 5)) /* Downsample's conv is called op */
            return snprintf(out, size, P "input_blocks.%d.0.op.%s", n + a->down[i].n_resnets, d + pos + 5) < (int)size ? 0 : -1;
        return -1;
    }
    pos = 0;
    if (sscanf(d, "mid_block.%31[a-z].%d.%n", kind, &j, &pos) == 2 && pos) {
        /* TimestepEmbedSequential(ResBlock, SpatialTransformer, ResBlock): resnet r at 2r, attention at 2a + 1 */
        if (!strcmp(kind, "resnets")) {
            snprintf(unit, sizeof unit, "middle_block.%d.", a->mid.n_attn ? 2 * j : j);
            return resnet_ldm(unit, d + pos, out, size);
        }
        if (!strcmp(kind, "attentions")) return snprintf(out, size, P "middle_block.%d.%s", 2 * j + 1, d + pos) < (int)size ? 0 : -1;
        return -1;
    }
    pos = 0;
    if (sscanf(d, "up_blocks.%d.%31[a-z].%d.%n", &i, kind, &j, &pos) == 3 && pos && i < a->n_blocks) {
        int n = 0;
        for (int b = 0; b < i; b++) n += a->up[b].n_resnets;
        if (!strcmp(kind, "resnets")) {
            snprintf(unit, sizeof unit, "output_blocks.%d.0.", n + j);
            return resnet_ldm(unit, d + pos, out, size);
        }
        if (!strcmp(kind, "attentions")) return snprintf(out, size, P "output_blocks.%d.1.%s", n + j, d + pos) < (int)size ? 0 : -1;
        if (!strcmp(kind, "upsamplers")) /* after the last layer's resnet (and attention), in its entry */
            return snprintf(out, size, P "output_blocks.%d.%d.%s", n + a->up[i].n_resnets - 1, a->up[i].n_attn ? 2 : 1,
                            d + pos) < (int)size ? 0 : -1;
        return -1;
    }
    return -1;
}

/* ---- files --------------------------------------------------------------- */


static int same_bytes(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    char *x = slurp(a, &na), *y = slurp(b, &nb);
    int same = x && y && na == nb && na > 0 && !memcmp(x, y, na);
    free(x);
    free(y);
    return same;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

/* Decoys: other models' tensors that a single file holds beside the UNet (and,
 * by add_i64, an I64 one, which the reader keeps apart). */
static float decoy_data[77 * 16];
static const StOut DECOYS[] = {
    {"first_stage_model.decoder.conv_in.weight", 4, {8, 4, 3, 3}, decoy_data, DTYPE_F16},
    {"conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight", 2, {77, 16}, decoy_data, DTYPE_F32},
};
#define NDECOYS ((int)(sizeof DECOYS / sizeof *DECOYS))

/* Appends an I64 tensor [n] of 0..n-1 to the safetensors file at path, as SD 1.x
 * single files carry one (position_ids), rewriting its header by hand: the
 * library's writer writes float tensors only. */
static void add_i64(const char *path, const char *name, int n) {
    size_t size = 0;
    unsigned char *buf = (unsigned char *)slurp(path, &size);
    CHECK(buf != NULL && size > 8);
    if (!buf || size <= 8) { free(buf); return; }
    uint64_t hn = 0;
    for (int i = 7; i >= 0; i--) hn = (hn << 8) | buf[i];
    cJSON *h = cJSON_ParseWithLength((const char *)buf + 8, (size_t)hn);
    long data = (long)size - 8 - (long)hn;
    cJSON *e = cJSON_AddObjectToObject(h, name), *shape = cJSON_AddArrayToObject(e, "shape"),
          *offs = cJSON_AddArrayToObject(e, "data_offsets");
    cJSON_AddStringToObject(e, "dtype", "I64");
    cJSON_AddItemToArray(shape, cJSON_CreateNumber(n));
    cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)data));
    cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)data + 8.0 * n));
    char *text = cJSON_PrintUnformatted(h);
    uint64_t tn = strlen(text);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f) {
        for (int i = 0; i < 8; i++) fputc((int)((tn >> (8 * i)) & 0xff), f);
        fputs(text, f);
        fwrite(buf + 8 + hn, 1, (size_t)data, f);
        for (int64_t i = 0; i < n; i++) fwrite(&i, 8, 1, f); /* little-endian on x86-64 */
        fclose(f);
    }
    free(text);
    cJSON_Delete(h);
    free(buf);
}

/* Writes w's tensors as a single file under their LDM names (a's layout),
 * stored as dtype (-1: as they were), with the decoys, without the tensor
 * named `skip` and with `extra` (both full LDM names; NULL for none). */
static void write_single(const char *path, const Arch *a, const Tensors *w, int dtype, const char *skip, const char *extra) {
    StOut *o = calloc((size_t)w->n + NDECOYS + 1, sizeof *o);
    char **names = calloc((size_t)w->n, sizeof *names);
    int n = 0;
    for (int i = 0; i < w->n; i++) {
        char buf[512];
        int rc = ldm_of(a, w->t[i].name, buf, sizeof buf);
        CHECK_MSG(rc == 0, "no LDM name for '%s'", w->t[i].name);
        if (rc || (skip && !strcmp(buf, skip))) continue;
        names[i] = strdup(buf);
        o[n] = w->t[i];
        o[n].name = names[i];
        if (dtype >= 0) o[n].dtype = (DType)dtype;
        n++;
    }
    for (int k = 0; k < NDECOYS; k++) o[n++] = DECOYS[k];
    if (extra) o[n++] = (StOut){extra, 1, {4}, decoy_data, DTYPE_F16};
    CHECK_MSG(st_write(path, o, n) == 0, "%s", err_msg());
    for (int i = 0; i < w->n; i++) free(names[i]);
    free(names);
    free(o);
    add_i64(path, "cond_stage_model.transformer.text_model.embeddings.position_ids", 77);
}

/* Runs cmd with stderr to T/err; the exit code; *err its stderr. */
static int run_err(const char *cmd, char **err) {
    int rc = run(fmt("%s 2>%s/err >/dev/null", cmd, T), NULL);
    run(fmt("cat %s/err", T), err);
    return rc;
}

/* An error the user sees: exit 3, one line "unetlab: error: ..." holding each of s1, s2 (NULL: none). */
static void check_model_error(const char *cmd, const char *s1, const char *s2) {
    char *err = NULL;
    int rc = run_err(cmd, &err);
    int lines = 0;
    for (const char *p = err; *p; p++) lines += *p == '\n';
    CHECK_MSG(rc == 3 && lines == 1 && !strncmp(err, "unetlab: error: ", 16) && strstr(err, s1) && (!s2 || strstr(err, s2)),
              "%s: exit %d, stderr '%s' (want exit 3 and one error line naming '%s'%s%s)", cmd, rc, err, s1,
              s2 ? " and " : "", s2 ? s2 : "");
    free(err);
}

/* ---- fixtures: forward of the single file == forward of the directory ---- */

static void fixture(const char *name, const char *missing, const char *missing_diffusers) {
    char dir[256], io[300], ref[300];
    snprintf(dir, sizeof dir, FXDIR "/%s", name);
    snprintf(io, sizeof io, "%s/io.safetensors", dir);
    snprintf(ref, sizeof ref, "%s/%s-ref.st", T, name);
    Arch a;
    int rc = config_load(&a, fmt("%s/config.json", dir));
    CHECK_MSG(rc == 0, "%s", err_msg());
    if (rc) return;
    Tensors w = load_all(fmt("%s/diffusion_pytorch_model.safetensors", dir));
    if (!w.n) return;
    CHECK(w.t[0].dtype == DTYPE_F16); /* the fixtures are stored as fp16 */
    const char *FWD = "%s forward --device cpu --model %s --inputs %s --out %s --features";
    char *err;
    CHECK_MSG(run_err(fmt(FWD, BIN, dir, io, ref), &err) == 0, "%s: %s", dir, err);
    free(err);

    /* fp16 as stored, fp32, bf16 (against a diffusers directory of the same bf16 weights) */
    static const struct { const char *tag; int dtype; } V[] = {{"fp16", -1}, {"fp32", DTYPE_F32}, {"bf16", DTYPE_BF16}};
    for (int v = 0; v < 3; v++) {
        char single[300], side[300], out[300], want[300];
        snprintf(single, sizeof single, "%s/%s-%s.safetensors", T, name, V[v].tag);
        snprintf(side, sizeof side, "%s/%s-%s.config.json", T, name, V[v].tag);
        snprintf(out, sizeof out, "%s/%s-%s.st", T, name, V[v].tag);
        write_single(single, &a, &w, V[v].dtype, NULL, NULL);
        CHECK(run(fmt("cp %s/config.json %s", dir, side), NULL) == 0);
        snprintf(want, sizeof want, "%s", ref);
        if (V[v].dtype == DTYPE_BF16) { /* rounded to bf16: the reference is a directory of those weights */
            char bdir[300];
            snprintf(bdir, sizeof bdir, "%s/%s-bf16-dir", T, name);
            snprintf(want, sizeof want, "%s/%s-bf16-ref.st", T, name);
            mkdir(bdir, 0755);
            CHECK(run(fmt("cp %s/config.json %s/", dir, bdir), NULL) == 0);
            StOut *o = malloc((size_t)w.n * sizeof *o);
            for (int i = 0; i < w.n; i++) o[i] = w.t[i], o[i].dtype = DTYPE_BF16;
            CHECK(st_write(fmt("%s/diffusion_pytorch_model.safetensors", bdir), o, w.n) == 0);
            free(o);
            CHECK_MSG(run_err(fmt(FWD, BIN, bdir, io, want), &err) == 0, "%s: %s", bdir, err);
            free(err);
        }
        CHECK_MSG(run_err(fmt(FWD, BIN, single, io, out), &err) == 0, "%s: %s", single, err);
        free(err);
        CHECK_MSG(same_bytes(out, want), "%s %s: forward of the single file differs from the directory's", name, V[v].tag);
    }

    /* --config (a global option) instead of the file beside it: the same forward; a --config that is not there, named */
    {
        char single[300], out[300];
        snprintf(single, sizeof single, "%s/%s-fp16.safetensors", T, name);
        snprintf(out, sizeof out, "%s/%s-config.st", T, name);
        CHECK(run(fmt("mv %s/%s-fp16.config.json %s/%s-moved.json", T, name, T, name), NULL) == 0);
        CHECK_MSG(run_err(fmt("%s forward --device cpu --config %s/%s-moved.json --model %s --inputs %s --out %s --features", BIN, T, name,
                              single, io, out), &err) == 0, "%s --config: %s", single, err);
        free(err);
        CHECK_MSG(same_bytes(out, ref), "%s: forward with --config differs from the directory's", name);
        check_model_error(fmt("%s inspect --config %s/none.json --model %s", BIN, T, single), "none.json", NULL);
        /* a diffusers directory keeps its own config: --config is said to be unused there */
        char *werr = NULL;
        CHECK(run_err(fmt("%s inspect --config %s/%s-moved.json --model %s/%s", BIN, T, name, FXDIR, name), &werr) == 0 &&
              strstr(werr, "is for single-file checkpoints"));
        free(werr);
    }

    /* in-process: the config beside the file is the one used, and the weights hash as the directory's */
    ModelSource md = {0}, ms = {0};
    char single[300];
    snprintf(single, sizeof single, "%s/%s-fp32.safetensors", T, name);
    if (model_resolve(&md, dir) == 0 && model_resolve(&ms, single) == 0) {
        CHECK(!memcmp(&md.arch, &ms.arch, sizeof md.arch));
        CHECK(strstr(ms.config_label, "-fp32.config.json") != NULL);
        CHECK(ms.dir && ms.file && !strcmp(ms.file, single));
        Shape s = {1, 8, 8, 4};
        ModuleTree t;
        unet_tree_build(&t, &md.arch, &s);
        Weights wd, ws;
        CHECK(weights_load(&wd, &md, &t, 0) == 0);
        CHECK(weights_load(&ws, &ms, &t, 0) == 0);
        char hd[17], hs[17];
        weights_hash(&wd, hd);
        weights_hash(&ws, hs);
        CHECK_MSG(!strcmp(hd, hs), "%s: weights hash %s (single file) vs %s (directory)", name, hs, hd);
        CHECK(ws.stored_dtype == DTYPE_F32);
        weights_free(&wd);
        weights_free(&ws);
        unet_tree_free(&t);
    } else {
        CHECK_MSG(0, "resolving %s or %s: %s", dir, single, err_msg());
    }
    model_source_free(&md);
    model_source_free(&ms);

    /* a UNet tensor no rule places; a mappable one the model lacks; a missing one */
    const char *bad = fmt("%s/%s-extra.safetensors", T, name);
    write_single(bad, &a, &w, -1, NULL, P "input_blocks.99.0.foo.weight");
    CHECK(run(fmt("cp %s/config.json %s/%s-extra.config.json", dir, T, name), NULL) == 0);
    check_model_error(fmt(FWD, BIN, bad, io, fmt("%s/x.st", T)), "'" P "input_blocks.99.0.foo.weight' has no diffusers name", bad);
    bad = fmt("%s/%s-more.safetensors", T, name);
    write_single(bad, &a, &w, -1, NULL, P "input_blocks.1.0.in_layers.0.scale");
    CHECK(run(fmt("cp %s/config.json %s/%s-more.config.json", dir, T, name), NULL) == 0);
    check_model_error(fmt(FWD, BIN, bad, io, fmt("%s/x.st", T)), "unexpected tensor '" P "input_blocks.1.0.in_layers.0.scale'", bad);
    bad = fmt("%s/%s-missing.safetensors", T, name);
    write_single(bad, &a, &w, -1, missing, NULL);
    CHECK(run(fmt("cp %s/config.json %s/%s-missing.config.json", dir, T, name), NULL) == 0);
    check_model_error(fmt(FWD, BIN, bad, io, fmt("%s/x.st", T)), fmt("missing tensor '%s' (diffusers '%s';", missing,
                      missing_diffusers), bad);
    free_all(&w);
}

/* ---- the real layouts: name lists and inference ------------------------- */

static void arch_print(const char *what, const Arch *a) {
    fprintf(stderr, "  %s: in %d out %d groups %d linear %d text_time %d add %d/%d mid %d(%s, depth %d heads %d cross %d)\n",
            what, a->in_channels, a->out_channels, a->norm_groups, a->use_linear_projection, a->text_time, a->add_time_dim,
            a->add_in_dim, a->has_mid, block_type_name(a->mid.type), a->mid.depth[0], a->mid.heads, a->mid.cross_dim);
    for (int i = 0; i < 2 * a->n_blocks; i++) {
        const Block *b = i < a->n_blocks ? &a->down[i] : &a->up[i - a->n_blocks];
        fprintf(stderr, "    %s %d: %s ch %d resnets %d attn %d heads %d cross %d depths", i < a->n_blocks ? "down" : "up",
                i % a->n_blocks, block_type_name(b->type), b->out_ch, b->n_resnets, b->n_attn, b->heads, b->cross_dim);
        for (int j = 0; j < b->n_attn; j++) fprintf(stderr, " %d", b->depth[j]);
        fputc('\n', stderr);
    }
}

static void check_same_arch(const char *what, const Arch *got, const Arch *want) {
    int same = !memcmp(got, want, sizeof *got);
    CHECK_MSG(same, "%s: the inferred architecture differs from the preset's", what);
    if (!same) {
        arch_print("inferred", got);
        arch_print("preset", want);
    }
}

/* The architecture inferred from tensors t (names and shapes): ERR_* code. */
static int infer(const StTensor *t, int n, const char *label, Arch *a) {
    char *text = NULL;
    int rc = sf_infer_config(t, n, label, &text);
    if (!rc) rc = config_parse(a, text, strlen(text), label);
    CHECK_MSG(rc == 0, "%s: %s", label, err_msg());
    free(text);
    return rc;
}

static int cmp_src(const void *x, const void *y) {
    return strcmp((*(const TensorSpec *const *)x)->src, (*(const TensorSpec *const *)y)->src);
}

/* Every name of list maps to a tree tensor of preset, of its shape, each tree tensor once. */
static void name_list(const char *list, const char *preset, int expect_n) {
    size_t len;
    char *text = slurp(list, &len);
    CHECK_MSG(text != NULL, "cannot read %s", list);
    if (!text) return;
    int cap = 4096, n = 0;
    StTensor *t = calloc((size_t)cap, sizeof *t);
    for (char *line = strtok(text, "\n"); line && n < cap; line = strtok(NULL, "\n")) {
        if (line[0] == '#') continue;
        char *sp = strchr(line, ' ');
        if (!sp) continue;
        *sp = '\0';
        StTensor *x = &t[n++];
        x->name = strdup(line);
        x->dtype = DTYPE_F16;
        x->numel = 1;
        for (char *d = sp + 1; *d && x->ndim < ST_MAX_DIMS; d = strchr(d, ',') ? strchr(d, ',') + 1 : d + strlen(d)) {
            x->shape[x->ndim] = atoll(d);
            x->numel *= x->shape[x->ndim++];
        }
    }
    free(text);
    CHECK_EQ_LL(n, expect_n);

    ModelSource m;
    if (model_resolve(&m, preset)) { CHECK_MSG(0, "%s: %s", preset, err_msg()); return; }
    ModuleTree tree;
    Shape s = {1, 8, 8, 4};
    unet_tree_build(&tree, &m.arch, &s);
    CHECK_EQ_LL(tree.n_tensors, n);
    const TensorSpec **by = malloc((size_t)tree.n_tensors * sizeof *by);
    for (int i = 0; i < tree.n_tensors; i++) by[i] = &tree.t[i];
    qsort(by, (size_t)tree.n_tensors, sizeof *by, cmp_src);
    char *covered = calloc((size_t)tree.n_tensors, 1);
    SfRules *r = sf_rules_new(&m.arch);
    int mapped = 0, shaped = 0, once = 0, inverse = 0;
    for (int i = 0; i < n; i++) {
        char d[512], back[512];
        if (sf_to_diffusers(r, t[i].name, d, sizeof d)) { CHECK_MSG(0, "%s: '%s' has no diffusers name", list, t[i].name); continue; }
        TensorSpec key = {.src = d};
        const TensorSpec *kp = &key, **hit = bsearch(&kp, by, (size_t)tree.n_tensors, sizeof *by, cmp_src);
        if (!hit) { CHECK_MSG(0, "%s: '%s' -> '%s', not in %s's tree", list, t[i].name, d, preset); continue; }
        mapped++;
        int same = (*hit)->ndim == t[i].ndim;
        for (int k = 0; same && k < t[i].ndim; k++) same = (*hit)->shape[k] == t[i].shape[k];
        if (same) shaped++;
        else CHECK_MSG(0, "%s: '%s' -> '%s': shapes differ", list, t[i].name, d);
        if (!covered[hit - by]++) once++;
        else CHECK_MSG(0, "%s: '%s' -> '%s' a second time", list, t[i].name, d);
        if (!ldm_of(&m.arch, d, back, sizeof back) && !strcmp(back, t[i].name)) inverse++;
        else CHECK_MSG(0, "%s: '%s' -> '%s', which this test's layout names '%s'", list, t[i].name, d, back);
    }
    CHECK_EQ_LL(mapped, n);
    CHECK_EQ_LL(shaped, n);
    CHECK_EQ_LL(once, tree.n_tensors); /* and so every tree tensor is covered */
    CHECK_EQ_LL(inverse, n);
    /* sf_to_ldm is sf_to_diffusers' inverse on the tree */
    int round = 0;
    for (int i = 0; i < tree.n_tensors; i++) {
        char l[512], d[512];
        round += !sf_to_ldm(r, tree.t[i].src, l, sizeof l) && !sf_to_diffusers(r, l, d, sizeof d) && !strcmp(d, tree.t[i].src);
    }
    CHECK_EQ_LL(round, tree.n_tensors);
    Arch inf;
    if (!infer(t, n, list, &inf)) check_same_arch(list, &inf, &m.arch);
    sf_rules_free(r);
    free(covered);
    free(by);
    unet_tree_free(&tree);
    model_source_free(&m);
    for (int i = 0; i < n; i++) free(t[i].name);
    free(t);
}

/* A preset's LDM names (by this test's inverse) and shapes: the inferred architecture is the preset's. */
static void infer_preset(const char *preset) {
    ModelSource m;
    if (model_resolve(&m, preset)) { CHECK_MSG(0, "%s: %s", preset, err_msg()); return; }
    ModuleTree tree;
    Shape s = {1, 8, 8, 4};
    unet_tree_build(&tree, &m.arch, &s);
    StTensor *t = calloc((size_t)tree.n_tensors, sizeof *t);
    SfRules *r = sf_rules_new(&m.arch);
    int ok = 0;
    for (int i = 0; i < tree.n_tensors; i++) {
        char l[512], d[512];
        CHECK_MSG(ldm_of(&m.arch, tree.t[i].src, l, sizeof l) == 0, "%s: no LDM name for '%s'", preset, tree.t[i].src);
        t[i].name = strdup(l);
        t[i].ndim = tree.t[i].ndim;
        for (int k = 0; k < t[i].ndim; k++) t[i].shape[k] = tree.t[i].shape[k];
        ok += !sf_to_diffusers(r, l, d, sizeof d) && !strcmp(d, tree.t[i].src);
    }
    CHECK_EQ_LL(ok, tree.n_tensors);
    Arch inf;
    if (!infer(t, tree.n_tensors, preset, &inf)) check_same_arch(preset, &inf, &m.arch);
    sf_rules_free(r);
    for (int i = 0; i < tree.n_tensors; i++) free(t[i].name);
    free(t);
    unet_tree_free(&tree);
    model_source_free(&m);
}

/* ---- inference end to end: small models without a config beside them ---- */

/* What inference must read back: each written as the presets write what the tensors cannot say. */
static const char TINY_SD[] = /* SD 1.x family: 8 heads, 1x1-conv projections, no mid block */
    "{\"_class_name\": \"UNet2DConditionModel\", \"attention_head_dim\": 8, \"block_out_channels\": [64, 96],"
    " \"cross_attention_dim\": 24, \"down_block_types\": [\"CrossAttnDownBlock2D\", \"DownBlock2D\"],"
    " \"up_block_types\": [\"UpBlock2D\", \"CrossAttnUpBlock2D\"], \"layers_per_block\": 1, \"mid_block_type\": null,"
    " \"norm_num_groups\": 32, \"sample_size\": 64}";
static const char TINY_XL[] = /* SDXL family: 64-wide heads, linear projections, label_emb, per-block depths */
    "{\"_class_name\": \"UNet2DConditionModel\", \"attention_head_dim\": [1, 2], \"block_out_channels\": [64, 128],"
    " \"cross_attention_dim\": 32, \"down_block_types\": [\"DownBlock2D\", \"CrossAttnDownBlock2D\"],"
    " \"up_block_types\": [\"CrossAttnUpBlock2D\", \"UpBlock2D\"], \"layers_per_block\": 1,"
    " \"transformer_layers_per_block\": [1, 2], \"use_linear_projection\": true, \"addition_embed_type\": \"text_time\","
    " \"addition_time_embed_dim\": 256, \"projection_class_embeddings_input_dim\": 1600, \"norm_num_groups\": 32,"
    " \"sample_size\": 128}";

static void tiny(const char *tag, const char *config) {
    const char *cfg = fmt("%s/tiny-%s.json", T, tag);
    char single[300], io[300], a[300], b[300];
    snprintf(single, sizeof single, "%s/tiny-%s.safetensors", T, tag);
    snprintf(io, sizeof io, "%s/tiny-%s-io.st", T, tag);
    snprintf(a, sizeof a, "%s/tiny-%s-a.st", T, tag);
    snprintf(b, sizeof b, "%s/tiny-%s-b.st", T, tag);
    write_text(cfg, config);
    ModelSource m, ms;
    if (model_resolve(&m, cfg)) { CHECK_MSG(0, "%s: %s", cfg, err_msg()); return; }
    Shape s = {1, 8, 8, 4};
    ModuleTree tree;
    unet_tree_build(&tree, &m.arch, &s);
    Weights w;
    CHECK(weights_load(&w, &m, &tree, 0) == 0); /* what forward --seed 0 draws */
    Tensors all = {0};
    all.t = calloc((size_t)w.n, sizeof *all.t);
    for (int i = 0; i < tree.n_tensors; i++) {
        const TensorSpec *x = &tree.t[i];
        all.t[all.n] = (StOut){x->src, x->ndim, {0}, weights_find(&w, x->src), DTYPE_F32};
        for (int k = 0; k < x->ndim; k++) all.t[all.n].shape[k] = x->shape[k];
        all.n++;
    }
    write_single(single, &m.arch, &all, DTYPE_F32, NULL, NULL);
    free(all.t);
    if (model_resolve(&ms, single) == 0) {
        check_same_arch(single, &ms.arch, &m.arch);
        CHECK(strstr(ms.config_label, "inferred") != NULL);
    } else {
        CHECK_MSG(0, "%s: %s", single, err_msg());
    }
    model_source_free(&ms);

    /* inputs: 16 x 16 latents, 5 tokens; SDXL's text_embeds and time_ids */
    static float buf[4 * 16 * 16];
    for (int i = 0; i < 4 * 16 * 16; i++) buf[i] = sinf(0.37f * (float)i);
    const float ts = 421;
    StOut in[5] = {{"input.sample", 4, {1, 4, 16, 16}, buf, DTYPE_F32}, {"input.timestep", 1, {1}, &ts, DTYPE_F32},
                   {"input.encoder_hidden_states", 3, {1, 5, m.arch.down[m.arch.n_blocks - 1].cross_dim}, buf, DTYPE_F32},
                   {"input.text_embeds", 2, {1, m.arch.add_in_dim - 6 * m.arch.add_time_dim}, buf, DTYPE_F32},
                   {"input.time_ids", 2, {1, 6}, buf, DTYPE_F32}};
    CHECK(st_write(io, in, m.arch.text_time ? 5 : 3) == 0);
    char *err;
    CHECK_MSG(run_err(fmt("%s forward --device cpu --model %s --seed 0 --inputs %s --out %s --features", BIN, cfg, io, a), &err) == 0,
              "%s: %s", cfg, err);
    free(err);
    CHECK_MSG(run_err(fmt("%s forward --device cpu --model %s --inputs %s --out %s --features", BIN, single, io, b), &err) == 0,
              "%s: %s", single, err);
    free(err);
    CHECK_MSG(same_bytes(a, b), "tiny %s: forward of the single file differs from the config's", tag);
    weights_free(&w);
    unet_tree_free(&tree);
    model_source_free(&m);
}

/* ---- export --format single-file: the student loads back and equals its plan's forward ---- */

static void exported(const char *name, const char *removals) {
    char dir[256], plan[300], stu[300], a[300], b[300];
    snprintf(dir, sizeof dir, FXDIR "/%s", name);
    snprintf(plan, sizeof plan, "%s/%s-plan.json", T, name);
    snprintf(stu, sizeof stu, "%s/%s-student.safetensors", T, name);
    snprintf(a, sizeof a, "%s/%s-student.st", T, name);
    snprintf(b, sizeof b, "%s/%s-plan.st", T, name);
    write_text(plan, fmt("{\"format\": \"unetlab-plan\", \"version\": 1, \"remove\": [%s]}", removals));
    char *err;
    CHECK_MSG(run_err(fmt("%s export --model %s --plan %s --out %s --format single-file", BIN, dir, plan, stu), &err) == 0,
              "export %s: %s", name, err);
    free(err);
    CHECK(run(fmt("test -s %s/%s-student.config.json && test -s %s/%s-student.removal.json", T, name, T, name), NULL) == 0);
    /* every tensor under the LDM prefix, named by the rules for the student's architecture */
    SafeTensors st;
    if (st_open(&st, stu, ERR_MODEL) == 0) {
        int under = 0;
        for (int i = 0; i < st.n; i++) under += !strncmp(st.t[i].name, P, strlen(P));
        CHECK_MSG(st.n > 100 && under == st.n, "%s: %d of %d tensors under " P, stu, under, st.n);
        st_close(&st);
    } else CHECK_MSG(0, "%s", err_msg());
    const char *FWD = "%s forward --device cpu --model %s %s --inputs %s/io.safetensors --out %s";
    CHECK_MSG(run_err(fmt(FWD, BIN, stu, "", dir, a), &err) == 0, "%s: %s", stu, err);
    free(err);
    CHECK_MSG(run_err(fmt(FWD, BIN, dir, fmt("--plan %s", plan), dir, b), &err) == 0, "%s --plan: %s", dir, err);
    free(err);
    CHECK_MSG(same_bytes(a, b), "%s: the exported single file's forward differs from the plan's", name);
}

int main(void) {
    cli_setup("singlefile");
    for (int i = 0; i < 77 * 16; i++) decoy_data[i] = (float)(i % 7) - 3;

    fixture("mini-public", P "output_blocks.1.1.transformer_blocks.0.attn2.to_k.weight",
            "up_blocks.0.attentions.1.transformer_blocks.0.attn2.to_k.weight");
    fixture("mini-ssd", P "input_blocks.3.0.op.weight", "down_blocks.0.downsamplers.0.conv.weight");

    name_list("tests/data/sdxl-base-ldm-names.txt", "sdxl-base", 1680);
    name_list("tests/data/sd15-ldm-names.txt", "sd-1.5", 686);
    infer_preset("ssd-1b");
    infer_preset("segmind-vega");

    tiny("sd", TINY_SD);
    tiny("xl", TINY_XL);

    /* students with every kind of removal: a transformer layer, an attention level, a resnet pair, the mid block */
    exported("mini-public", "\"mid_block.attentions\", \"down_blocks.0.resnets.0\", \"up_blocks.2.resnets.2\","
                            " \"up_blocks.1.attentions\", \"down_blocks.2.attentions.1.transformer_blocks.3\"");
    exported("mini-ssd", "\"mid_block\", \"down_blocks.0.resnets.1\", \"up_blocks.2.resnets.2\","
                         " \"up_blocks.1.attentions.0.transformer_blocks.1\"");
    char *err;
    CHECK(run_err(fmt("%s export --model %s/mini-ssd --drop mid_block --out %s/x.st --format single-file", BIN, FXDIR, T),
                  &err) == 2 && strstr(err, "must end in .safetensors"));
    free(err);
    CHECK(run_err(fmt("%s export --model %s/mini-ssd-student.safetensors --drop up_blocks.1.attentions"
                      " --out %s/mini-ssd-student.safetensors --format single-file", BIN, T, T), &err) == 5 &&
          strstr(err, "is the teacher's file"));
    free(err);
    /* an I64 tensor the reader keeps apart is still a tensor the model does not have: in a diffusers
     * directory, and in a single file's UNet (outside it, as the position_ids above, it is left alone) */
    CHECK(system(fmt("rm -rf %s/i64 && cp -r %s/mini-ssd %s/i64", T, FXDIR, T)) == 0);
    add_i64(fmt("%s/i64/diffusion_pytorch_model.safetensors", T), "down_blocks.0.position_ids", 4);
    CHECK(run_err(fmt("%s forward --model %s/i64 --inputs %s/mini-ssd/io.safetensors --out %s/o.st --device cpu", BIN,
                      T, FXDIR, T), &err) == 3 &&
          strstr(err, "unexpected I64 tensor 'down_blocks.0.position_ids'"));
    free(err);
    CHECK(system(fmt("cp %s/mini-ssd-student.safetensors %s/i64.safetensors && cp %s/mini-ssd-student.config.json"
                     " %s/i64.config.json", T, T, T, T)) == 0);
    add_i64(fmt("%s/i64.safetensors", T), P "input_blocks.0.0.ids", 4);
    CHECK(run_err(fmt("%s forward --model %s/i64.safetensors --inputs %s/mini-ssd/io.safetensors --out %s/o.st"
                      " --device cpu", BIN, T, FXDIR, T), &err) == 3 &&
          strstr(err, "unexpected I64 tensor '" P "input_blocks.0.0.ids'"));
    free(err);
    CHECK(run_err(fmt("%s export --model %s/mini-ssd --drop mid_block --out %s/x --format onnx", BIN, FXDIR, T), &err) == 2 &&
          strstr(err, "not one of diffusers, single-file"));
    free(err);

    /* what is a single file: by name, or by its header's names */
    CHECK(sf_is_single_file(FXDIR "/mini-ssd/config.json") == 0);
    CHECK(run(fmt("cp %s/tiny-sd.safetensors %s/tiny-sd.ckpt-as-st", T, T), NULL) == 0);
    CHECK(sf_is_single_file(fmt("%s/tiny-sd.ckpt-as-st", T)) == 1);
    CHECK(sf_is_single_file(FXDIR "/mini-ssd/io.safetensors") == 1); /* by its name: then refused for its tensors */
    ModelSource m;
    CHECK_ERR(model_resolve(&m, FXDIR "/mini-ssd/io.safetensors"), ERR_MODEL, "no UNet tensors");
    model_source_free(&m);

    cli_cleanup();
    TEST_MAIN_END("test_singlefile");
}
