/* unet: the module tree of an Arch, as data. Every module carries its diffusers
 * name (exactly named_modules()'s string), its class name, its parameter count
 * and its MACs at a given input size, counted the way torch's FlopCounterMode
 * counts them (convolutions, linears, attention matmuls; FLOPs = 2 x MACs).
 * The tensor list it makes is the one source of truth for which weights a
 * checkpoint must hold. Tested by tests/test_unet.c against diffusers' counts. */
#ifndef UNETLAB_UNET_H
#define UNETLAB_UNET_H
#include "config.h"
#include <stdint.h>

typedef struct {
    int batch, height, width; /* latent height, width (pixels / 8) */
    int tokens;               /* encoder_hidden_states length */
} Shape;

typedef struct {
    char *name;        /* "" for the root */
    const char *kind;  /* diffusers / torch class name */
    int parent;        /* -1 for the root */
    int depth;         /* root 0 */
    int64_t params;    /* including children */
    int64_t macs;      /* including children */
} Module;

typedef struct {
    char *name;        /* name in this model's state dict */
    char *src;         /* name of the teacher tensor it is copied from */
    int ndim;
    int64_t shape[4];
    int module;        /* index of the owning leaf module */
} TensorSpec;

typedef struct {
    Module *m;
    int n_modules, cap_modules;
    TensorSpec *t;
    int n_tensors, cap_tensors;
} ModuleTree;

/* Builds the tree of `a` at shape `s`. Modules are in named_modules() order. */
void unet_tree_build(ModuleTree *tree, const Arch *a, const Shape *s);
void unet_tree_free(ModuleTree *tree);
/* Memory a float32 forward at size s needs, in bytes, estimated from the
 * architecture: its weights, the peak of its activations (the skip tensors
 * held across the down path, a few maps of the widest level, one transformer
 * layer's temporaries) and the features of every unit, which `forward
 * --features` writes and eval keeps for the teacher. An estimate to refuse a
 * run that cannot fit before it allocates for a minute, not an exact count. */
typedef struct {
    double weights, peak, features;
} UnetMemory;
void unet_memory(const Arch *a, const Shape *s, const ModuleTree *t, UnetMemory *m);
/* Refuses (ERR_RUNTIME, saying how much is needed and how much there is) a
 * CPU run WHAT of a at size s whose estimate, with the features of
 * feature_samples samples kept, exceeds the memory available. */
int unet_memory_check(const char *what, const Arch *a, const Shape *s, double feature_samples);
/* ERR_USAGE naming the size when its MAC count does not fit in 64 bits
 * (counts saturate instead of overflowing). */
int unet_tree_check(const ModuleTree *tree, const Shape *s);
int unet_tree_find(const ModuleTree *tree, const char *name); /* -1 if absent */
/* Marks removed[i] = 1 for each module i of the teacher's tree tt that the
 * student no longer has: none of its tensors is a source of the student's. */
void unet_removed(const ModuleTree *tt, const ModuleTree *student, char *removed);

#endif
