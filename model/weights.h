/* weights: where a model comes from (--model M) and its float32 weights.
 * M is a built-in preset name, a config.json, a diffusers UNet directory
 * (config.json + diffusion_pytorch_model[.fp16].safetensors, or sharded with
 * an .index.json), a pipeline root with unet/ inside, or a single-file
 * checkpoint in the original (LDM) layout: a .safetensors file (or one whose
 * header names model.diffusion_model. tensors) holding the UNet beside the VAE
 * and text encoders, its config from NAME.config.json beside it or inferred
 * from its tensors (model/singlefile.h). Presets and bare configs get seeded
 * normal random weights. Loaded tensors are checked against the module tree:
 * a missing, extra or mis-shaped tensor is ERR_MODEL naming it. Tested by
 * tests/test_fixtures.c, tests/test_singlefile.c and tests/cli.sh. */
#ifndef UNETLAB_WEIGHTS_H
#define UNETLAB_WEIGHTS_H
#include "config.h"
#include "unet.h"
#include "safetensors.h"
#include <stdint.h>

typedef struct {
    char *spec;          /* what the user gave */
    char *config_label;  /* config.json path, "preset NAME", or "inferred from FILE" */
    char *config_text;   /* the config.json text as read (or as inferred) */
    char *dir;           /* directory holding the weights; NULL for random weights */
    char *file;          /* a single-file checkpoint (in dir); NULL otherwise */
    Arch arch;
} ModelSource;

/* Resolves spec and parses its config. ERR_MODEL naming the path on failure. */
int model_resolve(ModelSource *m, const char *spec);
void model_source_free(ModelSource *m);

typedef struct {
    int n;
    char **names;   /* sorted, teacher tensor names */
    float **data;
    int64_t *numel;
    char *origin;   /* "random (seed N)" or the weight file(s) */
    int stored_dtype; /* the files' DType (float32 if any tensor is), -1 for random weights */
    /* The fast CPU engine's state per DType (model/backend_fast.c): these
     * weights reordered for oneDNN, and its primitives; freed with them. */
    void *engine[3];
    void (*engine_free)(void *);
    /* Set by commands that only run forwards once the weights are hashed:
     * the fast engine then frees each float32 weight as soon as it holds its
     * own copy (data[i] becomes NULL), so a model is in memory once, not twice. */
    int engine_owns;
} Weights;

/* Loads (or, without a weights directory, draws with `seed`) every tensor of
 * `tree` (a teacher's tree) as float32. */
int weights_load(Weights *w, const ModelSource *m, const ModuleTree *tree, uint64_t seed);
void weights_free(Weights *w);
/* Content hash of the loaded weights (names and float32 values in name order),
 * 16 hex digits: the same for a checkpoint in F16 or F32 holding equal values. */
void weights_hash(const Weights *w, char out[17]);
/* The check weights_load makes of a checkpoint against the model its config
 * describes (separate, so that a fuzzer can drive it): every tensor the tree
 * implies is in the files, in the shard the index (map: its weight_map, NULL
 * for one file) assigns it to and no other, of the tree's shape; nothing else
 * is. src[i], from[i] and numel[i] get the file tensor of the i-th tree tensor
 * by sorted name; *stored_dtype the files' dtype (float32 if any tensor is;
 * caller sets it to -1). ERR_MODEL naming the file and tensor. The files name
 * the tensors as `names` says (NULL: by their diffusers names). */
struct cJSON;
/* How a checkpoint names the tree's tensors when not by their diffusers names
 * (a single file, model/singlefile.h): file_name[i] is the file's name of
 * tree->t[i]; the file's tensors whose names do not start with scope belong to
 * other models in it (VAE, text encoders) and are left alone. Messages then
 * give both names. */
typedef struct {
    const char *const *file_name;
    const char *scope;
} TensorNames;
int weights_match(const ModuleTree *tree, const SafeTensors *st, const char *const *files, int nf,
                  const struct cJSON *map, const char *index_path, const char *dir, const TensorNames *names,
                  const StTensor **src, const SafeTensors **from, int64_t *numel, int *stored_dtype);

/* Non-finite weights (NaN, infinity) in a checkpoint are an error at load
 * (ERR_MODEL naming the file and tensor) unless allowed here: for users who
 * study a broken checkpoint (`unetlab --allow-nonfinite-weights ...`). */
void weights_allow_nonfinite(int allow);
/* The tensor of that name; NULL if there is none (or the engine took it). */
const float *weights_find(const Weights *w, const char *name);
/* Its index in names/data; -1 if there is none. */
int weights_index(const Weights *w, const char *name);
/* The index of "prefix.leaf" (leaf alone for an empty prefix): what the
 * backends look up; a missing one is an internal error (die). */
int weights_slot(const Weights *w, const char *prefix, const char *leaf);

#endif
