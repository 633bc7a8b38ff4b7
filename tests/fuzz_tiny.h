/* fuzz_tiny: what the model-level fuzz targets share: a tiny UNet with SDXL's
 * topology (a plain block and a cross-attention block with two transformer
 * layers, a mid block, text_time conditioning; 22,624 parameters), parsed once,
 * and the preset tables config.c expects (the fuzzers need none). Its weights
 * (fp16) and inputs (4x4 latent, 2 tokens) are the seeds in tests/fuzz-seeds/. */
#ifndef UNETLAB_FUZZ_TINY_H
#define UNETLAB_FUZZ_TINY_H
#include "config.h"
#include "err.h"
#include <stdlib.h>
#include <string.h>

const char *const embedded_names[] = {NULL};
const char *const embedded_texts[] = {NULL};

static const char TINY_CONFIG[] =
    "{\"_class_name\": \"UNet2DConditionModel\", \"sample_size\": 4, \"in_channels\": 4, \"out_channels\": 4,"
    " \"block_out_channels\": [4, 8], \"down_block_types\": [\"DownBlock2D\", \"CrossAttnDownBlock2D\"],"
    " \"up_block_types\": [\"CrossAttnUpBlock2D\", \"UpBlock2D\"], \"layers_per_block\": 1,"
    " \"transformer_layers_per_block\": [1, 2], \"attention_head_dim\": [1, 1], \"cross_attention_dim\": 4,"
    " \"norm_num_groups\": 2, \"addition_embed_type\": \"text_time\", \"addition_time_embed_dim\": 2,"
    " \"projection_class_embeddings_input_dim\": 16, \"use_linear_projection\": true}";

/* The tiny Arch, parsed on first use; aborts if it does not parse (the target is broken, not the input). */
static const Arch *tiny_arch(void) {
    static Arch a;
    static int done;
    if (!done) {
        if (config_parse(&a, TINY_CONFIG, strlen(TINY_CONFIG), "tiny")) abort();
        done = 1;
    }
    return &a;
}

/* An error must be the expected code with a one-line message. */
static void expect_error(int rc, int code) {
    if (rc && (rc != code || strchr(err_msg(), '\n'))) abort();
}

/* The input as exactly size bytes of its own, so ASan sees any overread. */
static char *fuzz_copy(const uint8_t *data, size_t size) {
    char *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    return buf;
}

#endif
