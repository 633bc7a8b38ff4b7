/* config: diffusers UNet2DConditionModel config.json -> Arch, the resolved
 * architecture (every block, every layer, every transformer depth spelled out).
 * A student is an Arch too: the teacher's with modules removed, each surviving
 * module remembering which teacher module it was copied from (src_*).
 * Tested by tests/test_config.c and fuzzed by tests/fuzz_config.c. */
#ifndef UNETLAB_CONFIG_H
#define UNETLAB_CONFIG_H
#include <stddef.h>
#include <stdint.h>

#define MAX_BLOCKS 8
#define MAX_LAYERS 8   /* resnets in one block */
#define MAX_DEPTH 64   /* transformer layers in one attention */

typedef enum {
    BLOCK_DOWN,            /* DownBlock2D */
    BLOCK_CROSSATTN_DOWN,  /* CrossAttnDownBlock2D */
    BLOCK_UP,              /* UpBlock2D */
    BLOCK_CROSSATTN_UP,    /* CrossAttnUpBlock2D */
    BLOCK_MID_CROSSATTN,   /* UNetMidBlock2DCrossAttn: resnet, (attention, resnet) x n */
    BLOCK_MID,             /* UNetMidBlock2D without attention: resnets only */
} BlockType;

typedef struct {
    BlockType type;
    int n_resnets;
    int n_attn;                   /* 0, or attentions.0..n_attn-1 */
    int depth[MAX_LAYERS];        /* transformer layers in attentions.j */
    int in_ch, out_ch, prev_ch;   /* diffusers' in_channels, out_channels, prev_output_channel */
    int heads, cross_dim;
    int sampler;                  /* has downsamplers.0 / upsamplers.0 */
    /* teacher index each surviving module was copied from (identity for a teacher) */
    int src_resnet[MAX_LAYERS];
    int src_attn[MAX_LAYERS];
    int src_tb[MAX_LAYERS][MAX_DEPTH];
} Block;

typedef struct {
    int in_channels, out_channels, sample_size; /* sample_size 0: config has none */
    int n_blocks;
    int block_out[MAX_BLOCKS];
    int norm_groups;
    float norm_eps;
    int flip_sin_to_cos;
    float freq_shift;
    int use_linear_projection;
    int conv_in_kernel, conv_out_kernel;
    int center_input_sample;
    float mid_scale;              /* mid_block_scale_factor */
    int time_embed_dim;           /* 4 x block_out[0] */
    int text_time;                /* addition_embed_type == "text_time" */
    int add_time_dim, add_in_dim; /* addition_time_embed_dim, projection_class_embeddings_input_dim */
    int upcast_attention;
    Block down[MAX_BLOCKS], up[MAX_BLOCKS], mid;
    int has_mid;
    int src_has_mid_attn;         /* teacher's mid block had attentions */
} Arch;

/* Parses a config.json text (label names it in messages). Fields absent take
 * diffusers' defaults; an unsupported value is ERR_MODEL naming the field;
 * unknown keys get a warning on stderr, as diffusers does. */
int config_parse(Arch *a, const char *json, size_t len, const char *label);
int config_load(Arch *a, const char *path);
/* Resolves a built-in preset name (sdxl-base, ssd-1b, segmind-vega, sd-1.5);
 * returns NULL if there is none of that name. */
const char *config_preset(const char *name);
const char *const *config_preset_names(void);
const char *block_type_name(BlockType t);
/* Sets o[key] = v (o takes v), replacing a value already there: writing a
 * config over a preset's or the teacher's. */
struct cJSON;
void config_json_set(struct cJSON *o, const char *key, struct cJSON *v);
/* Total transformer layers in the model. */
int arch_total_depth(const Arch *a);

#endif
