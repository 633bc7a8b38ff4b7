/* forward: the UNet2DConditionModel forward for any Arch (teacher or
 * student), on any backend (model/backend.h); unet_forward and
 * unet_forward_from run the CPU engine this process selected (cpu_engine_set:
 * the fast one by default, or the float32 reference), with a feature
 * observer called at every feature point: each resnet, attention
 * (Transformer2DModel), transformer layer, down/upsampler, block output and
 * the mid block. Features are named after
 * the teacher module the student's module was copied from, so teacher and
 * student features compare by name. Tested by tests/test_fixtures.c against
 * diffusers' float64 references. */
#ifndef UNETLAB_FORWARD_H
#define UNETLAB_FORWARD_H
#include "config.h"
#include "tensor.h"
#include "weights.h"

typedef struct {
    Tensor sample;        /* [B, in_channels, H, W] */
    Tensor timestep;      /* [B] (or [1]: broadcast) */
    Tensor encoder_hidden_states; /* [B, L, cross_attention_dim] */
    Tensor text_embeds;   /* [B, T] (text_time models) */
    Tensor time_ids;      /* [B, 6] (text_time models) */
} UnetInputs;

/* Called at each feature point; t is borrowed for the duration of the call. */
typedef void (*FeatureFn)(void *ctx, const char *name, const Tensor *t);

/* Checks the inputs against the Arch: ERR_INPUT naming the tensor and the
 * shape expected. */
int unet_check_inputs(const Arch *a, const UnetInputs *in);
/* Reads input.* tensors of an io/calibration safetensors file (float32, float16
 * or bfloat16) and checks them against a. ERR_INPUT naming the file. */
int unet_inputs_load(const char *path, const Arch *a, UnetInputs *in);
/* The same from an open safetensors file (messages name st->path). */
struct SafeTensors;
int unet_inputs_parse(const struct SafeTensors *st, const Arch *a, UnetInputs *in);
void unet_inputs_free(UnetInputs *in);
/* Prefix reuse: a student that equals its teacher up to some unit of the
 * forward (a resnet, attention, sampler) starts there, from the teacher's
 * features at that point (get returns them by name; they must come from the
 * same inputs). Features before the start are the teacher's, emitted as such. */
typedef const Tensor *(*FeatureGet)(void *ctx, const char *name);
typedef struct {
    const Arch *teacher;
    FeatureGet get;
    void *ctx;
} UnetResume;

typedef struct {
    int units, units_live, start; /* units of the forward, units computed, first computed */
} UnetRunStats;

/* Per-module timing: fn(ctx, module, ms) after each module the forward runs
 * (blocks, resnets, attentions, transformer layers, samplers, and the ops
 * inside), under its diffusers name (the teacher's, for a student), with the
 * host wall time it took (inclusive of its children's; on the cpu backend
 * that is its compute time, on cuda only its launch time). begin (may be
 * NULL) is called when the module starts: GPU profilers scope launches there. */
typedef void (*TimeFn)(void *ctx, const char *module, double ms);
typedef struct {
    TimeFn fn;
    void *ctx;
    void (*begin)(void *ctx, const char *module);
} UnetTimer;

/* unet_forward with prefix reuse (resume may be NULL), counts (stats may be
 * NULL) and per-module timing (timer may be NULL). */
int unet_forward_from(const Arch *a, const Weights *w, const UnetInputs *in, const UnetResume *resume, Tensor *out,
                      FeatureFn fn, void *ctx, UnetRunStats *stats, const UnetTimer *timer);
/* unet_forward_from on any backend (model/backend.h; the weights are the
 * backend's). out may be NULL: the output stays on the device, unread. */
struct Backend;
int unet_forward_be(struct Backend *be, const Arch *a, const UnetInputs *in, const UnetResume *resume, Tensor *out,
                    FeatureFn fn, void *ctx, UnetRunStats *stats, const UnetTimer *timer);
/* Runs the forward; *out gets a new [B, out_channels, H, W] tensor. */
int unet_forward(const Arch *a, const Weights *w, const UnetInputs *in, Tensor *out, FeatureFn fn, void *ctx);

#endif
