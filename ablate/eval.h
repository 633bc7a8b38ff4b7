/* eval: layer-level losses of a student against its teacher on calibration
 * inputs. For every feature point the student still has (block outputs, each
 * ResNet, attention, sampler and transformer layer) and for the output, per
 * calibration sample: MSE, MSE normalised by the teacher feature's mean
 * square (NMSE), and cosine similarity. Teacher features are computed once per
 * calibration batch and kept in memory (TeacherCache) for every student of the
 * run; students start from them where they equal the teacher (prefix reuse).
 * Tested by tests/test_eval.c against the fixtures' expected.json. */
#ifndef UNETLAB_EVAL_H
#define UNETLAB_EVAL_H
#include "forward.h"
#include <stdint.h>

#define METRIC_VERSION 1

/* Seeded synthetic calibration: N samples of normal latents [N,C,lh,lw] (the
 * config's sample_size where lh, lw are 0), normal text embeddings of
 * `tokens` tokens, timesteps spread evenly over [0, 999], and SDXL time ids
 * (size, crop 0, size) for text_time models. */
void calib_synthetic(const Arch *a, int n, int lh, int lw, int tokens, uint64_t seed, UnetInputs *in);
/* Content hash of the inputs (shapes and values). */
void calib_hash(const UnetInputs *in, char out[17]);
int calib_samples(const UnetInputs *in);
/* Samples [start, start+count) of all, as views copied into *out (free with unet_inputs_free). */
void calib_slice(const UnetInputs *all, int start, int count, UnetInputs *out);

/* The teacher's output and features of one calibration batch, by name. */
typedef struct {
    int n, cap;
    char **name;
    Tensor *t;
    Tensor output;
} FeatureSet;

void features_keep(void *ctx, const char *name, const Tensor *t); /* a FeatureFn filling a FeatureSet */
const Tensor *features_get(void *ctx, const char *name);         /* a FeatureGet over a FeatureSet */
void features_free(FeatureSet *f);

/* One metric row. */
typedef struct {
    char *point;
    int sample;        /* index in the whole calibration set */
    double timestep;
    const char *metric; /* "mse", "nmse", "cosine" */
    double value;
} EvalRow;

typedef struct {
    EvalRow *r;
    int n, cap;
} EvalRows;

/* Runs student (with prefix reuse from teacher) on one batch whose teacher
 * features are tf, and appends its rows; sample0 is the batch's first index. */
int eval_batch(const Arch *teacher, const Arch *student, const Weights *w, const UnetInputs *batch,
               const FeatureSet *tf, int sample0, int reuse, EvalRows *rows, UnetRunStats *stats);
void eval_rows_free(EvalRows *rows);

/* Summary of a student over the calibration set: per point and metric the mean
 * over samples. feature_loss: the sum of the per-point MSEs over the block
 * outputs (down_blocks.i, mid_block, up_blocks.i), the points Segmind's and
 * BK-SDM's distillation scripts hook; nmse_sum: the sum of NMSEs over every
 * point the student has (balanced: one large layer cannot drown the rest);
 * block_nmse: the NMSE summed over the points every student of a teacher has
 * (the down and up block outputs and the output), so students that remove
 * different modules compare on the same points: the schedule's loss. */
typedef struct {
    int n;
    char **point;
    double *mse, *nmse, *cosine; /* means over samples ("output" is a point too) */
    double *sum;                 /* internal: [n][3] sums, then [n][3] counts */
    double feature_loss, nmse_sum;
    double block_nmse;           /* NMSE summed over down_blocks.i, up_blocks.i and the output */
    int nonfinite;               /* (point, sample) pairs whose student feature was not finite:
                                  * their MSE and NMSE are +Inf, their cosine -Inf (ranked last) */
} EvalSummary;

void summary_add(EvalSummary *s, const char *point, const char *metric, double value);
void summary_finish(EvalSummary *s);
void summary_free(EvalSummary *s);
/* True for the block-output points of the feature loss. */
int eval_is_block_output(const char *point);

#endif
