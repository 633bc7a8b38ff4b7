/* weights: see weights.h. */
#include "weights.h"
#include "err.h"
#include "fileio.h"
#include "hash.h"
#include "rng.h"
#include "safetensors.h"
#include "singlefile.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int is_dir(const char *p) { struct stat s; return stat(p, &s) == 0 && S_ISDIR(s.st_mode); }
static int is_file(const char *p) { struct stat s; return stat(p, &s) == 0 && S_ISREG(s.st_mode); }
static int exists(const char *p) { struct stat s; return stat(p, &s) == 0; }

static int read_config(ModelSource *m) {
    size_t n;
    int rc = file_read_all(m->config_label, 64u << 20, ERR_MODEL, &m->config_text, &n);
    return rc ? rc : config_parse(&m->arch, m->config_text, n, m->config_label);
}

int model_resolve(ModelSource *m, const char *spec) {
    memset(m, 0, sizeof *m);
    m->spec = xstrdup(spec);
    const char *preset = config_preset(spec);
    int rc, single = is_file(spec) && sf_is_single_file(spec);
    if (sf_config_get() && !single) /* the flag is global: say where it does not reach */
        err_warn("--config '%s' is for single-file checkpoints; '%s' is not one and keeps its own config", sf_config_get(),
                 spec);
    if (preset && !exists(spec)) {
        m->config_label = xasprintf("preset %s", spec);
        m->config_text = xstrdup(preset);
        rc = config_parse(&m->arch, preset, strlen(preset), m->config_label);
    } else if (single) {
        m->file = xstrdup(spec);
        m->dir = path_dir(spec); /* a model with a dir has trained weights */
        rc = sf_resolve(spec, &m->arch, &m->config_text, &m->config_label);
    } else if (exists(spec) && !is_dir(spec)) { /* a file; anything but a regular one is refused when read */
        m->config_label = xstrdup(spec);
        rc = read_config(m);
    } else if (is_dir(spec)) {
        char *unet = xasprintf("%s/unet", spec), *cfg = xasprintf("%s/config.json", spec);
        char *ucfg = xasprintf("%s/config.json", unet);
        if (is_file(cfg)) { m->dir = xstrdup(spec); m->config_label = cfg; cfg = NULL; }
        else if (is_file(ucfg)) { m->dir = unet; unet = NULL; m->config_label = ucfg; ucfg = NULL; }
        free(unet); free(cfg); free(ucfg);
        if (!m->dir) return err_set(ERR_MODEL, "'%s': no config.json (nor unet/config.json) in this directory", spec);
        rc = read_config(m);
    } else {
        const char *const *names = config_preset_names();
        char list[256] = "";
        for (int i = 0; names[i]; i++) {
            strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
            strncat(list, names[i], sizeof list - strlen(list) - 1);
        }
        return err_set(ERR_MODEL, "'%s': no such file, directory or preset (presets: %s)", spec, list);
    }
    return rc;
}

void model_source_free(ModelSource *m) {
    free(m->spec);
    free(m->config_label);
    free(m->config_text);
    free(m->dir);
    free(m->file);
    memset(m, 0, sizeof *m);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Initial scale of a random tensor: weights ~ N(0, 1/fan_in) keep activations
 * of a deep random UNet finite; norm scales ~ N(1, 0.1); biases ~ N(0, 0.02). */
static void draw(const TensorSpec *s, uint64_t seed, float *out, int64_t n) {
    Rng r = rng_for(seed, s->src);
    const char *leaf = strrchr(s->name, '.');
    int is_bias = leaf && !strcmp(leaf, ".bias");
    int is_norm = strstr(s->name, "norm") != NULL && s->ndim == 1;
    if (is_norm && !is_bias) rng_normal(&r, out, n, 1.0f, 0.1f);
    else if (is_bias) rng_normal(&r, out, n, 0.0f, 0.02f);
    else {
        int64_t fan_in = 1;
        for (int i = 1; i < s->ndim; i++) fan_in *= s->shape[i];
        rng_normal(&r, out, n, 0.0f, (float)(1.0 / sqrt((double)fan_in)));
    }
}

static void shape_str(const int64_t *shape, int ndim, char *buf, size_t size) {
    size_t n = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && n < size; i++) n += (size_t)snprintf(buf + n, size - n, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (n < size) snprintf(buf + n, size - n, "]");
}

/* The weight files of a diffusers UNet directory: one file or an index's
 * shards; *map (the index's weight_map, tensor -> file name) NULL for one file. */
static int weight_files(const char *dir, char ***files, int *nfiles, cJSON **map, char **index_path) {
    static const char *const single[] = {"diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"};
    static const char *const index[] = {"diffusion_pytorch_model.safetensors.index.json",
                                        "diffusion_pytorch_model.fp16.safetensors.index.json"};
    *files = NULL;
    *nfiles = 0;
    *map = NULL;
    *index_path = NULL;
    for (int i = 0; i < 2; i++) {
        char *p = xasprintf("%s/%s", dir, single[i]);
        if (is_file(p)) { *files = xmalloc(sizeof(char *)); (*files)[0] = p; *nfiles = 1; return 0; }
        free(p);
    }
    for (int i = 0; i < 2; i++) {
        char *p = xasprintf("%s/%s", dir, index[i]);
        if (!is_file(p)) { free(p); continue; }
        char *buf;
        size_t got;
        int rrc = file_read_all(p, 256u << 20, ERR_MODEL, &buf, &got);
        if (rrc) { free(p); return rrc; }
        cJSON *root = cJSON_ParseWithLength(buf, got);
        free(buf);
        const cJSON *wm = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
        if (!cJSON_IsObject(wm)) {
            cJSON_Delete(root);
            int rc = err_set(ERR_MODEL, "'%s': field 'weight_map': missing or not an object", p);
            free(p);
            return rc;
        }
        const cJSON *e;
        cJSON_ArrayForEach(e, wm) {
            if (!cJSON_IsString(e) || strchr(e->valuestring, '/')) {
                int rc = err_set(ERR_MODEL, "'%s': field 'weight_map': entry '%s' is not a file name in this directory", p, e->string);
                cJSON_Delete(root);
                free(p);
                return rc;
            }
            int seen = 0;
            char *full = xasprintf("%s/%s", dir, e->valuestring);
            for (int k = 0; k < *nfiles; k++) seen |= !strcmp((*files)[k], full);
            if (seen) { free(full); continue; }
            *files = xrealloc(*files, (size_t)(*nfiles + 1) * sizeof(char *));
            (*files)[(*nfiles)++] = full;
        }
        *map = cJSON_DetachItemViaPointer(root, (cJSON *)wm);
        cJSON_Delete(root);
        *index_path = p;
        return 0;
    }
    return err_set(ERR_MODEL, "'%s': no diffusion_pytorch_model[.fp16].safetensors nor .safetensors.index.json", dir);
}

int weights_match(const ModuleTree *tree, const SafeTensors *st, const char *const *files, int nf, const cJSON *map,
                  const char *index_path, const char *dir, const TensorNames *tn, const StTensor **src,
                  const SafeTensors **from, int64_t *numel, int *stored_dtype) {
    int n = tree->n_tensors, rc = 0;
    const TensorSpec **spec = xmalloc((size_t)n * sizeof *spec);
    const char **names = xmalloc((size_t)n * sizeof *names); /* sorted, as a Weights' names */
    /* sorted, as the files name them: the diffusers names themselves unless tn says otherwise */
    const char **in_file = tn ? xmalloc((size_t)n * sizeof *in_file) : names;
    for (int i = 0; i < n; i++) {
        spec[i] = &tree->t[i];
        names[i] = tree->t[i].src;
        if (tn) in_file[i] = tn->file_name[i];
    }
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    if (tn) qsort(in_file, (size_t)n, sizeof *in_file, cmp_str);
    size_t scope = tn && tn->scope ? strlen(tn->scope) : 0;
    /* every tensor the config implies: present, of that shape (checked first) */
    for (int i = 0; i < n && !rc; i++) {
        const TensorSpec *s = spec[i];
        const char *fname = tn ? tn->file_name[i] : s->src; /* its name in the files */
        const StTensor *t = NULL;
        char want[96], got[96], also[600] = "";
        shape_str(s->shape, s->ndim, want, sizeof want);
        if (tn) snprintf(also, sizeof also, "diffusers '%s'; ", s->src);
        int f = 0;
        if (map) { /* the shard the index assigns it to, and no other */
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(map, s->src);
            if (!e) { rc = err_set(ERR_MODEL, "'%s': no entry for tensor '%s' (config expects %s)", index_path, s->src, want); break; }
            for (; f < nf && cJSON_IsString(e); f++) {
                const char *base = strrchr(files[f], '/');
                if (!strcmp(base ? base + 1 : files[f], e->valuestring)) break;
            }
            if (!cJSON_IsString(e)) f = nf;
            if (f == nf) { rc = err_set(ERR_MODEL, "'%s': entry for tensor '%s' names no shard", index_path, s->src); break; }
            if (!(t = st_find(&st[f], fname))) {
                rc = err_set(ERR_MODEL, "'%s': missing tensor '%s' (the index assigns it to this file; config expects %s)",
                             files[f], s->src, want);
                break;
            }
            for (int k = 0; k < nf && !rc; k++)
                if (k != f && st_find(&st[k], fname))
                    rc = err_set(ERR_MODEL, "'%s': tensor '%s' is also in '%s', the file the index assigns it to: a tensor"
                                 " belongs to one shard", files[k], s->src, files[f]);
            if (rc) break;
            f++; /* as after the search below: files[f - 1] holds t */
        } else {
            for (f = 0; f < nf && !t; f++) t = st_find(&st[f], fname);
        }
        if (!t) {
            const char *other = NULL;
            for (int k = 0; k < nf && !other; k++) other = st_other_dtype(&st[k], fname);
            if (other)
                rc = err_set(ERR_MODEL, "'%s': tensor '%s' is %s, not a float type (F32, F16, BF16; %sconfig expects %s)",
                             nf == 1 ? files[0] : dir, fname, other, also, want);
            else
                rc = err_set(ERR_MODEL, "'%s': missing tensor '%s' (%sconfig expects %s)", nf == 1 ? files[0] : dir, fname,
                             also, want);
            break;
        }
        if (*stored_dtype < 0 || t->dtype == DTYPE_F32) *stored_dtype = (int)t->dtype;
        int same = t->ndim == s->ndim;
        for (int d = 0; same && d < s->ndim; d++) same = t->shape[d] == s->shape[d];
        if (!same) {
            shape_str(t->shape, t->ndim, got, sizeof got);
            if (tn) snprintf(also, sizeof also, " (diffusers '%s')", s->src);
            rc = err_set(ERR_MODEL, "'%s': tensor '%s'%s has shape %s, config expects %s", files[f - 1], fname, also, got,
                         want);
            break;
        }
        const char **slot = bsearch(&s->src, names, (size_t)n, sizeof *names, cmp_str);
        src[slot - names] = t;
        from[slot - names] = &st[f - 1];
        numel[slot - names] = t->numel;
    }
    /* nothing in the files that the config does not describe (of the UNet's, in a file holding more) */
    for (int f = 0; f < nf && !rc; f++)
        for (int k = 0; k < st[f].n && !rc; k++)
            if ((!scope || !strncmp(st[f].t[k].name, tn->scope, scope)) &&
                !bsearch(&st[f].t[k].name, in_file, (size_t)n, sizeof *in_file, cmp_str))
                rc = err_set(ERR_MODEL, "'%s': unexpected tensor '%s' (not in the model that the config describes)", files[f], st[f].t[k].name);
    /* tensors of other dtypes are kept apart by the reader; in the model's scope none belongs */
    for (int f = 0; f < nf && !rc; f++)
        for (int k = 0; k < st[f].n_other && !rc; k++)
            if (!scope || !strncmp(st[f].other[k].name, tn->scope, scope))
                rc = err_set(ERR_MODEL, "'%s': unexpected %s tensor '%s' (not in the model that the config describes)",
                             files[f], st[f].other[k].other, st[f].other[k].name);
    free(spec);
    free(names);
    if (tn) free(in_file);
    return rc;
}

static int g_allow_nonfinite;
void weights_allow_nonfinite(int allow) { g_allow_nonfinite = allow; }

int weights_load(Weights *w, const ModelSource *m, const ModuleTree *tree, uint64_t seed) {
    memset(w, 0, sizeof *w);
    w->stored_dtype = -1;
    int n = tree->n_tensors, rc = 0;
    /* sorted index of the tree's tensors */
    const TensorSpec **spec = xmalloc((size_t)n * sizeof *spec);
    for (int i = 0; i < n; i++) spec[i] = &tree->t[i];
    w->n = n;
    w->names = xcalloc((size_t)n, sizeof(char *));
    w->data = xcalloc((size_t)n, sizeof(float *));
    w->numel = xcalloc((size_t)n, sizeof(int64_t));
    for (int i = 0; i < n; i++) w->names[i] = spec[i]->src;
    qsort(w->names, (size_t)n, sizeof(char *), cmp_str);
    for (int i = 0; i < n; i++) w->names[i] = xstrdup(w->names[i]);

    if (!m->dir) {
        w->origin = xasprintf("random normal weights (seed %llu)", (unsigned long long)seed);
        /* each tensor has its own stream (seed, name): the same values on any thread count */
#pragma omp parallel for schedule(dynamic)
        for (int i = 0; i < n; i++) {
            const TensorSpec *s = spec[i];
            int64_t cnt = 1;
            for (int d = 0; d < s->ndim; d++) cnt *= s->shape[d];
            float *buf = xmalloc_big((size_t)cnt * sizeof(float));
            draw(s, seed, buf, cnt);
            char **slot = bsearch(&s->src, w->names, (size_t)n, sizeof(char *), cmp_str);
            w->data[slot - w->names] = buf;
            w->numel[slot - w->names] = cnt;
        }
        free(spec);
        return 0;
    }

    char **files, *index_path, **ldm = NULL;
    int nf;
    cJSON *map;
    if (m->file) { /* a single file: its UNet tensors under their original names */
        files = xmalloc(sizeof *files);
        files[0] = xstrdup(m->file);
        nf = 1;
        map = NULL;
        index_path = NULL;
        SfRules *r = sf_rules_new(&m->arch);
        ldm = xcalloc((size_t)n, sizeof *ldm);
        for (int i = 0; i < n; i++) ldm[i] = sf_ldm_dup(r, tree->t[i].src);
        sf_rules_free(r);
    } else if ((rc = weight_files(m->dir, &files, &nf, &map, &index_path))) {
        free(spec);
        weights_free(w);
        return rc;
    }
    const TensorNames names = {(const char *const *)ldm, SF_PREFIX};
    SafeTensors *st = xcalloc((size_t)nf, sizeof *st);
    size_t olen = 0;
    for (int f = 0; f < nf && !rc; f++) {
        rc = st_open(&st[f], files[f], ERR_MODEL);
        olen += strlen(files[f]) + 2;
    }
    w->origin = xcalloc(olen + 1, 1);
    for (int f = 0; f < nf; f++) {
        if (f) strcat(w->origin, ", ");
        strcat(w->origin, files[f]);
    }
    const StTensor **src = xcalloc((size_t)n, sizeof *src); /* by index in names */
    const SafeTensors **from = xcalloc((size_t)n, sizeof *from);
    if (!rc) rc = weights_match(tree, st, (const char *const *)files, nf, map, index_path, m->dir, ldm ? &names : NULL,
                                      src, from, w->numel, &w->stored_dtype);
    /* then convert, on every thread, each tensor's file pages dropped once it is
     * converted: the file and its float32 copy are never both resident */
    if (!rc) {
        int first_bad = n; /* the first tensor (by name) holding a NaN or an infinity */
        int64_t *nonfinite = xcalloc((size_t)n, sizeof *nonfinite);
#pragma omp parallel for schedule(dynamic)
        for (int i = 0; i < n; i++) {
            float *buf = xmalloc_big((size_t)src[i]->numel * sizeof(float));
            st_to_f32(src[i], buf);
            st_release(from[i], src[i]);
            w->data[i] = buf;
            int64_t bad = 0;
            for (int64_t k = 0; k < src[i]->numel; k++) bad += !isfinite(buf[k]);
            nonfinite[i] = bad;
        }
        for (int i = 0; i < n; i++)
            if (nonfinite[i] && first_bad == n) first_bad = i;
        if (first_bad < n && !g_allow_nonfinite) {
            int64_t total = 0, tensors = 0;
            for (int i = 0; i < n; i++) total += nonfinite[i], tensors += nonfinite[i] > 0;
            rc = err_set(ERR_MODEL, "'%s': tensor '%s' has %lld non-finite values (NaN or infinity) of %lld (%lld in %lld"
                         " tensors in all): refusing to compute with them; --allow-nonfinite-weights runs anyway",
                         from[first_bad]->path, w->names[first_bad], (long long)nonfinite[first_bad],
                         (long long)src[first_bad]->numel, (long long)total, (long long)tensors);
        }
        free(nonfinite);
    }
    for (int f = 0; f < nf; f++) { st_close(&st[f]); free(files[f]); }
    for (int i = 0; ldm && i < n; i++) free(ldm[i]);
    free(ldm);
    cJSON_Delete(map);
    free(index_path);
    free(src);
    free(from);
    free(st);
    free(files);
    free(spec);
    if (rc) weights_free(w);
    return rc;
}

void weights_free(Weights *w) {
    for (int i = 0; i < 3; i++)
        if (w->engine[i]) w->engine_free(w->engine[i]);
    for (int i = 0; i < w->n; i++) {
        free(w->names[i]);
        free(w->data[i]);
    }
    free(w->names);
    free(w->data);
    free(w->numel);
    free(w->origin);
    memset(w, 0, sizeof *w);
}

int weights_index(const Weights *w, const char *name) {
    char **slot = bsearch(&name, w->names, (size_t)w->n, sizeof(char *), cmp_str);
    return slot ? (int)(slot - w->names) : -1;
}

int weights_slot(const Weights *w, const char *prefix, const char *leaf) {
    char name[512];
    int n = snprintf(name, sizeof name, "%s%s%s", prefix, prefix[0] ? "." : "", leaf);
    if (n < 0 || n >= (int)sizeof name) die("internal: weight name '%s.%s' too long", prefix, leaf);
    int i = weights_index(w, name);
    if (i < 0) die("internal: weight '%s' not loaded", name);
    return i;
}

const float *weights_find(const Weights *w, const char *name) {
    int i = weights_index(w, name);
    return i >= 0 ? w->data[i] : NULL;
}

void weights_hash(const Weights *w, char out[17]) {
    uint64_t h = HASH_INIT;
    for (int i = 0; i < w->n; i++) {
        h = hash_bytes(h, w->names[i], strlen(w->names[i]));
        h = hash_bytes(h, w->data[i], (size_t)w->numel[i] * sizeof(float));
    }
    hash_hex(h, out);
}
