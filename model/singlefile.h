/* singlefile: Stable Diffusion checkpoints as one .safetensors file in
 * Stability's original (LDM) layout, as most SDXL-family and SD 1.x models on
 * users' disks are: the UNet's tensors under "model.diffusion_model." with
 * their original names (input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight,
 * middle_block.0.in_layers.2.weight, out.2.weight), beside the VAE
 * (first_stage_model.) and the text encoders (conditioner. / cond_stage_model.),
 * which this tool ignores.
 *
 * The names are mapped to diffusers' by one table of rules, the mapping of
 * diffusers' single-file loader (convert_ldm_unet_checkpoint): where each unit
 * of the LDM layout goes (input_blocks.N.0 is the resnet of a down block's
 * layer, input_blocks.N.1 its attention, input_blocks.N.0.op its downsampler,
 * output_blocks.N.K.conv an upsampler, ...) and how the names inside a unit
 * change (a resnet's in_layers.2 is conv1). Which LDM entry N is which block's
 * layer follows from the architecture: the layers of every block in order, a
 * down block's downsampler after its last layer, an up block's upsampler in
 * its last layer's entry.
 *
 * The architecture is the diffusers config.json given by --config (a global
 * option), else NAME.config.json beside the file when there is one (NAME: the path without .safetensors), else inferred
 * from the file's tensors: which entries exist, channels and kernels from the
 * convolutions, transformer depths from the transformer_blocks present,
 * cross_attention_dim from attn2.to_k, the SDXL family's add_embedding from
 * label_emb, linear or 1x1-conv projections from proj_in. What the tensors do
 * not say comes from the closest preset (sdxl-base for files with label_emb,
 * sd-1.5 otherwise): attention heads (SDXL: head dim 64; SD 1.x: 8 heads),
 * norm groups, addition_time_embed_dim. An SD 2.x file (linear projections,
 * no label_emb) needs its NAME.config.json: its heads and upcast_attention are
 * in no tensor, and guessing would compute a different model without a word.
 * Tested by tests/test_singlefile.c (against tests/data/, the real SDXL base and
 * SD 1.5 layouts written by tools/ldm_names.py) and tests/cli.sh. */
#ifndef UNETLAB_SINGLEFILE_H
#define UNETLAB_SINGLEFILE_H
#include "config.h"
#include "safetensors.h"
#include <stddef.h>

/* The UNet's tensors in a single file; everything else in it is ignored. */
#define SF_PREFIX "model.diffusion_model."

/* 1 if path, a regular file, is a single-file checkpoint: its name ends in
 * .safetensors, or its safetensors header names a model.diffusion_model. tensor. */
int sf_is_single_file(const char *path);
/* The length of path less a trailing ".safetensors" (any case); strlen(path) without one. */
size_t sf_stem_len(const char *path);
/* NAME.config.json for NAME.safetensors (or for any other file name NAME), allocated:
 * where export writes a single file's config and the loader looks for it. */
char *sf_sidecar_path(const char *path);

/* The config a single file's architecture comes from, for this process
 * (`--config FILE`, a global option): before NAME.config.json and inference. */
void sf_config_set(const char *path);
/* That --config, or NULL. */
const char *sf_config_get(void);

/* The architecture of single file `path`: its config text (from the
 * NAME.config.json beside it, or inferred) parsed into *a, after checking
 * that the rules place every UNet tensor of the file. *config_label names
 * where the config came from. Caller frees the strings (also on failure).
 * ERR_MODEL naming the file and the tensor. */
int sf_resolve(const char *path, Arch *a, char **config_text, char **config_label);

/* The diffusers config.json text of the UNet whose tensors (full LDM names and
 * shapes; data unused; other models' tensors skipped) are t[0..n-1], inferred
 * as described above. ERR_MODEL naming label when the tensors are not a layout
 * diffusers builds or what they leave open cannot be told. */
int sf_infer_config(const StTensor *t, int n, const char *label, char **config_text);

/* The name rules of one architecture: every unit of its LDM layout. */
typedef struct SfRules SfRules;
SfRules *sf_rules_new(const Arch *a);
void sf_rules_free(SfRules *r);
/* A full LDM name (model.diffusion_model....) -> its diffusers name in out;
 * -1 when no rule places it (out is then ""). */
int sf_to_diffusers(const SfRules *r, const char *ldm, char *out, size_t size);
/* A diffusers name -> its full LDM name in out; -1 when no rule places it. */
int sf_to_ldm(const SfRules *r, const char *diffusers, char *out, size_t size);
/* The full LDM name of a diffusers name of the rules' own model, allocated
 * (its absence is an internal error: the rules are made from that model). */
char *sf_ldm_dup(const SfRules *r, const char *diffusers);

#endif
