/* inputs: the forward's input tensors (sample, timestep, encoder_hidden_states
 * and SDXL's text_embeds and time_ids) read from a safetensors file and
 * checked against the model: shapes, and finite values (a NaN or infinity is
 * an input error, exit 4). Separate from the forward so that a fuzzer
 * (tests/fuzz_inputs.c) drives exactly what `forward --inputs` and `eval
 * --calib` read. Tested by tests/cli.sh and tests/test_hostile.c. */
#include "forward.h"
#include "err.h"
#include "safetensors.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Non-finite inputs are an input error (exit 4), named with their count. */
static int check_finite(const char *name, const Tensor *t) {
    if (!t->d) return 0;
    int64_t n = t->ndim ? tensor_numel(t) : 1, bad = 0;
    for (int64_t i = 0; i < n; i++) bad += !isfinite(t->d[i]);
    return bad ? err_set(ERR_INPUT, "input '%s': %lld non-finite values (NaN or infinity) of %lld", name, (long long)bad,
                         (long long)n)
               : 0;
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
    int rc;
    if ((rc = check_finite("input.sample", s)) || (rc = check_finite("input.timestep", t)) ||
        (rc = check_finite("input.encoder_hidden_states", e)) || (rc = check_finite("input.text_embeds", &in->text_embeds)) ||
        (rc = check_finite("input.time_ids", &in->time_ids)))
        return rc;
    return 0;
}

/* Reads tensor `name` of an inputs file into a float32 Tensor; ERR_INPUT if missing. */
static int read_input(const SafeTensors *st, const char *name, int required, Tensor *out) {
    memset(out, 0, sizeof *out);
    const StTensor *t = st_find(st, name);
    if (!t && st_other_dtype(st, name))
        return err_set(ERR_INPUT, "'%s': tensor '%s' is %s, not a float type (F32, F16, BF16)", st->path, name,
                       st_other_dtype(st, name));
    if (!t) return required ? err_set(ERR_INPUT, "'%s': missing tensor '%s'", st->path, name) : 0;
    if (t->ndim > TENSOR_MAX_DIMS) return err_set(ERR_INPUT, "'%s': tensor '%s' has %d dimensions", st->path, name, t->ndim);
    out->ndim = t->ndim;
    for (int i = 0; i < t->ndim; i++) out->shape[i] = t->shape[i];
    out->d = xmalloc((size_t)(t->numel ? t->numel : 1) * sizeof(float));
    st_to_f32(t, out->d);
    return 0;
}

int unet_inputs_parse(const SafeTensors *st, const Arch *a, UnetInputs *in) {
    memset(in, 0, sizeof *in);
    int rc = read_input(st, "input.sample", 1, &in->sample);
    if (!rc) rc = read_input(st, "input.timestep", 1, &in->timestep);
    if (!rc) rc = read_input(st, "input.encoder_hidden_states", 1, &in->encoder_hidden_states);
    if (!rc) rc = read_input(st, "input.text_embeds", a->text_time, &in->text_embeds);
    if (!rc) rc = read_input(st, "input.time_ids", a->text_time, &in->time_ids);
    if (!rc && (rc = unet_check_inputs(a, in))) err_wrap(rc, "'%s': ", st->path);
    if (rc) unet_inputs_free(in);
    return rc;
}

int unet_inputs_load(const char *path, const Arch *a, UnetInputs *in) {
    memset(in, 0, sizeof *in);
    SafeTensors st;
    int rc = st_open(&st, path, ERR_INPUT);
    if (rc) return rc;
    rc = unet_inputs_parse(&st, a, in);
    st_close(&st);
    return rc;
}

void unet_inputs_free(UnetInputs *in) {
    tensor_free(&in->sample);
    tensor_free(&in->timestep);
    tensor_free(&in->encoder_hidden_states);
    tensor_free(&in->text_embeds);
    tensor_free(&in->time_ids);
}
