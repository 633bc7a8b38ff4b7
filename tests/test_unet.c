/* test_unet: the module tree against diffusers. Totals: the parameter counts
 * diffusers reports for SDXL base, SSD-1B, Segmind-Vega, SD 1.5 and the two
 * fixtures, and the FLOPs torch's FlopCounterMode reports at 1024x1024 (within
 * 0.5%). Per module: every module's count equals the sum of the tensors under
 * its name in the diffusers-made fixture checkpoints. */
#include "test.h"
#include "err.h"
#include "safetensors.h"
#include "unet.h"
#include "weights.h"
#include <stdlib.h>

static void totals(const char *model, int64_t params, double flops, int px, int n_layers) {
    ModelSource m;
    int rc = model_resolve(&m, model);
    CHECK_MSG(rc == 0, "%s: %s", model, err_msg());
    if (rc) return;
    Shape s = {1, px / 8, px / 8, 77};
    ModuleTree t;
    unet_tree_build(&t, &m.arch, &s);
    CHECK_MSG(t.m[0].params == params, "%s: %lld params, diffusers has %lld", model, (long long)t.m[0].params, (long long)params);
    if (flops > 0) {
        double f = 2.0 * (double)t.m[0].macs;
        CHECK_MSG(fabs(f / flops - 1) <= 0.005, "%s: %.4g FLOPs, FlopCounterMode %.4g", model, f, flops);
        if (flops != floor(flops / 1e9) * 1e9) /* an exact count was given: equal to the FLOP */
            CHECK_MSG(f == flops, "%s: %.0f FLOPs, FlopCounterMode %.0f", model, f, flops);
    }
    int layers = 0;
    for (int i = 0; i < t.n_modules; i++) layers += !strcmp(t.m[i].kind, "BasicTransformerBlock");
    CHECK_MSG(layers == n_layers, "%s: %d transformer layers, expected %d", model, layers, n_layers);
    CHECK_EQ_LL(layers, arch_total_depth(&m.arch));
    unet_tree_free(&t);
    model_source_free(&m);
}

/* Every module's count equals the sum of the checkpoint tensors under its name. */
static void per_module(const char *dir) {
    char path[256];
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
    ModelSource m;
    CHECK(model_resolve(&m, dir) == 0);
    Shape s = {1, 32, 32, 8};
    ModuleTree t;
    unet_tree_build(&t, &m.arch, &s);
    SafeTensors st;
    CHECK(st_open(&st, path, ERR_MODEL) == 0);
    int64_t file_total = 0;
    for (int k = 0; k < st.n; k++) file_total += st.t[k].numel;
    CHECK_EQ_LL(t.m[0].params, file_total);
    int bad = 0;
    for (int i = 1; i < t.n_modules; i++) {
        size_t len = strlen(t.m[i].name);
        int64_t sum = 0;
        for (int k = 0; k < st.n; k++)
            if (!strncmp(st.t[k].name, t.m[i].name, len) && st.t[k].name[len] == '.') sum += st.t[k].numel;
        if (sum != t.m[i].params) {
            bad++;
            fprintf(stderr, "%s: module %s: %lld params, checkpoint has %lld\n", dir, t.m[i].name, (long long)t.m[i].params, (long long)sum);
        }
    }
    CHECK_MSG(bad == 0, "%s: %d modules disagree with the checkpoint", dir, bad);
    CHECK_MSG(t.n_modules > 300, "%s: only %d modules", dir, t.n_modules);
    st_close(&st);
    unet_tree_free(&t);
    model_source_free(&m);
}

/* Names are named_modules()' strings; spot-check a few of SDXL's. */
static void names(void) {
    ModelSource m;
    CHECK(model_resolve(&m, "sdxl-base") == 0);
    Shape s = {1, 128, 128, 77};
    ModuleTree t;
    unet_tree_build(&t, &m.arch, &s);
    static const char *const want[][2] = {
        {"conv_in", "Conv2d"}, {"time_embedding", "TimestepEmbedding"}, {"add_embedding.linear_1", "Linear"},
        {"down_blocks.0", "DownBlock2D"}, {"down_blocks.0.downsamplers.0", "Downsample2D"},
        {"down_blocks.2.attentions.1.transformer_blocks.9", "BasicTransformerBlock"},
        {"down_blocks.2.attentions.1.transformer_blocks.9.attn2.to_out.0", "Linear"},
        {"down_blocks.1.resnets.0.conv_shortcut", "Conv2d"}, {"mid_block", "UNetMidBlock2DCrossAttn"},
        {"mid_block.attentions.0.transformer_blocks.9.ff.net.0.proj", "Linear"},
        {"up_blocks.0.upsamplers.0", "Upsample2D"}, {"up_blocks.2.resnets.2", "ResnetBlock2D"},
        {"conv_norm_out", "GroupNorm"}, {"conv_out", "Conv2d"},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        int k = unet_tree_find(&t, want[i][0]);
        CHECK_MSG(k >= 0 && !strcmp(t.m[k].kind, want[i][1]), "%s (%s)", want[i][0], k >= 0 ? t.m[k].kind : "absent");
    }
    CHECK(unet_tree_find(&t, "down_blocks.2.attentions.1.transformer_blocks.10") < 0);
    CHECK(unet_tree_find(&t, "down_blocks.0.attentions.0") < 0);
    CHECK(unet_tree_find(&t, "up_blocks.2.upsamplers.0") < 0);
    /* SDXL down_blocks.2.attentions.0.transformer_blocks.0: 4 x 1280^2 (attn1) + 1280^2 + 2 x 2048 x 1280 + 1280^2
     * (attn2) + 1280 x 10240 + 10240 + 5120 x 1280 + 1280 (ff) + 2 x 1280 (to_out biases) + 6 x 1280 (norms) */
    int k = unet_tree_find(&t, "down_blocks.2.attentions.0.transformer_blocks.0");
    int64_t c = 1280, want_p = 4 * c * c + 2 * c * c + 2 * 2048 * c + c * 10240 + 10240 + 5120 * c + c + 2 * c + 6 * c;
    CHECK_EQ_LL(k >= 0 ? t.m[k].params : -1, want_p);
    unet_tree_free(&t);
    model_source_free(&m);
}

int main(void) {
    /* FLOPs: FlopCounterMode's exact counts, ../shared/reference/h100-pytorch.json (flops_b1) */
    totals("sdxl-base", 2567463684LL, 6761236398080.0, 1024, 70);
    totals("ssd-1b", 1331334404LL, 4207761817600.0, 1024, 34);
    totals("segmind-vega", 745225604LL, 2822440878080.0, 1024, 15);
    totals("sd-1.5", 859520964LL, 0.803e12, 512, 16);
    totals("tests/fixtures/mini-public", 7716932LL, 0, 256, 4 + 8 + 4 + 12 + 6);
    totals("tests/fixtures/mini-ssd", 6159204LL, 0, 128, 4 + 8 + 10 + 4);
    per_module("tests/fixtures/mini-public");
    per_module("tests/fixtures/mini-ssd");
    names();
    TEST_MAIN_END("test_unet");
}
