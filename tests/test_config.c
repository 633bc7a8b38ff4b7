/* test_config: config.json parsing. Defaults are diffusers' (an empty object
 * is SD 1.x's layout), quirks (attention_head_dim holds head counts,
 * per-layer transformer depths, asymmetric reverse depths), and each kind of
 * bad config returns ERR_MODEL with a message naming the file and the field.
 * Also the --drop plan errors (ERR_PLAN). */
#include "test.h"
#include "config.h"
#include "err.h"
#include "plan.h"

static int parse(Arch *a, const char *json) { return config_parse(a, json, strlen(json), "c.json"); }

static void defaults(void) {
    Arch a;
    CHECK(parse(&a, "{}") == 0);
    CHECK_EQ_LL(a.n_blocks, 4);
    CHECK_EQ_LL(a.block_out[3], 1280);
    CHECK(a.down[0].type == BLOCK_CROSSATTN_DOWN && a.down[3].type == BLOCK_DOWN);
    CHECK(a.up[0].type == BLOCK_UP && a.up[3].type == BLOCK_CROSSATTN_UP);
    CHECK(a.mid.type == BLOCK_MID_CROSSATTN && a.has_mid);
    CHECK_EQ_LL(a.down[0].heads, 8);            /* attention_head_dim 8 = 8 heads */
    CHECK_EQ_LL(a.down[0].cross_dim, 1280);
    CHECK_EQ_LL(a.norm_groups, 32);
    CHECK(a.use_linear_projection == 0 && a.text_time == 0 && a.flip_sin_to_cos == 1);
    CHECK_EQ_LL(a.up[0].n_resnets, 3);
    CHECK_EQ_LL(a.time_embed_dim, 1280);
    CHECK_EQ_LL(a.sample_size, 0);
    CHECK_EQ_LL(a.up[1].prev_ch, 1280);
    CHECK_EQ_LL(a.up[3].in_ch, 320);
}

static void quirks(void) {
    Arch a;
    CHECK(parse(&a, "{\"down_block_types\":[\"DownBlock2D\",\"CrossAttnDownBlock2D\"],"
                    "\"up_block_types\":[\"CrossAttnUpBlock2D\",\"UpBlock2D\"],\"block_out_channels\":[32,64],"
                    "\"attention_head_dim\":[1,4],\"transformer_layers_per_block\":[[1],[2,3]],"
                    "\"reverse_transformer_layers_per_block\":[[5,6,7],1],\"layers_per_block\":[1,2],"
                    "\"norm_num_groups\":8,\"mid_block_type\":null}") == 0);
    CHECK_EQ_LL(a.down[1].depth[0], 2);
    CHECK_EQ_LL(a.down[1].depth[1], 3);
    CHECK_EQ_LL(a.up[0].depth[2], 7);
    CHECK_EQ_LL(a.up[0].n_resnets, 3);   /* layers_per_block reversed: [2,1] + 1 */
    CHECK_EQ_LL(a.up[1].n_resnets, 2);
    CHECK_EQ_LL(a.down[0].n_resnets, 1);
    CHECK_EQ_LL(a.up[0].heads, 4);
    CHECK_EQ_LL(a.has_mid, 0);
    CHECK(parse(&a, "{\"transformer_layers_per_block\":[1,2,3,4],\"mid_block_type\":\"UNetMidBlock2D\"}") == 0);
    CHECK_EQ_LL(a.up[1].depth[0], 3); /* up depths mirror the down ones without reverse_... */
    CHECK_EQ_LL(a.up[3].depth[2], 1);
    CHECK(a.mid.type == BLOCK_MID && a.mid.n_resnets == 1 && a.mid.n_attn == 0);
    CHECK(parse(&a, "{\"act_fn\":\"swish\",\"upcast_attention\":true,\"_name_or_path\":\"x\"}") == 0);
}

static void bad(void) {
    Arch a;
    CHECK_ERR(parse(&a, "{"), ERR_MODEL, "'c.json': not valid JSON");
    CHECK_ERR(parse(&a, "[1]"), ERR_MODEL, "expected a JSON object");
    CHECK_ERR(parse(&a, "{\"down_block_types\":[\"DownBlock3D\",\"DownBlock2D\",\"DownBlock2D\",\"DownBlock2D\"]}"),
              ERR_MODEL, "'down_block_types': unknown block type 'DownBlock3D'");
    CHECK_ERR(parse(&a, "{\"up_block_types\":[\"UpBlock2D\",\"Up\",\"UpBlock2D\",\"UpBlock2D\"]}"), ERR_MODEL,
              "'up_block_types': unknown block type 'Up'");
    CHECK_ERR(parse(&a, "{\"mid_block_type\":\"UNetMidBlock2DSimpleCrossAttn\"}"), ERR_MODEL, "'mid_block_type'");
    CHECK_ERR(parse(&a, "{\"block_out_channels\":\"320\"}"), ERR_MODEL, "field 'block_out_channels'");
    CHECK_ERR(parse(&a, "{\"block_out_channels\":[320,640]}"), ERR_MODEL, "field 'block_out_channels'");
    CHECK_ERR(parse(&a, "{\"layers_per_block\":2.5}"), ERR_MODEL, "field 'layers_per_block'");
    CHECK_ERR(parse(&a, "{\"layers_per_block\":[2,2]}"), ERR_MODEL, "'layers_per_block': has 2 entries, expected 4");
    CHECK_ERR(parse(&a, "{\"norm_eps\":\"small\"}"), ERR_MODEL, "field 'norm_eps': expected a number");
    CHECK_ERR(parse(&a, "{\"in_channels\":true}"), ERR_MODEL, "field 'in_channels': expected an integer");
    CHECK_ERR(parse(&a, "{\"use_linear_projection\":1}"), ERR_MODEL, "field 'use_linear_projection'");
    CHECK_ERR(parse(&a, "{\"addition_embed_type\":\"text_time\",\"projection_class_embeddings_input_dim\":2816}"),
              ERR_MODEL, "field 'addition_time_embed_dim': required");
    CHECK_ERR(parse(&a, "{\"addition_embed_type\":\"text\"}"), ERR_MODEL, "field 'addition_embed_type'");
    CHECK_ERR(parse(&a, "{\"resnet_time_scale_shift\":\"scale_shift\"}"), ERR_MODEL, "field 'resnet_time_scale_shift'");
    CHECK_ERR(parse(&a, "{\"time_embedding_type\":\"fourier\"}"), ERR_MODEL, "field 'time_embedding_type'");
    CHECK_ERR(parse(&a, "{\"num_attention_heads\":8}"), ERR_MODEL, "field 'num_attention_heads'");
    CHECK_ERR(parse(&a, "{\"only_cross_attention\":true}"), ERR_MODEL, "field 'only_cross_attention'");
    CHECK_ERR(parse(&a, "{\"class_embed_type\":\"timestep\"}"), ERR_MODEL, "field 'class_embed_type'");
    CHECK_ERR(parse(&a, "{\"act_fn\":\"gelu\"}"), ERR_MODEL, "field 'act_fn'");
    CHECK_ERR(parse(&a, "{\"transformer_layers_per_block\":[[1,1],[2,2],[4,4],[1]]}"), ERR_MODEL,
              "'reverse_transformer_layers_per_block': required");
    CHECK_ERR(parse(&a, "{\"transformer_layers_per_block\":[1,[2],1,1]}"), ERR_MODEL, "list of 2 integers");
    CHECK_ERR(parse(&a, "{\"transformer_layers_per_block\":0}"), ERR_MODEL, "'transformer_layers_per_block'");
    CHECK_ERR(parse(&a, "{\"norm_num_groups\":7}"), ERR_MODEL, "multiple of norm_num_groups");
    CHECK_ERR(parse(&a, "{\"attention_head_dim\":7}"), ERR_MODEL, "multiple of the head count");
    CHECK_ERR(parse(&a, "{\"_class_name\":\"UNet2DModel\"}"), ERR_MODEL, "field '_class_name'");
    CHECK_ERR(config_load(&a, "/nonexistent/config.json"), ERR_MODEL, "cannot read '/nonexistent/config.json'");
    /* sizes whose products overflowed a 32- or 64-bit count (issue 13) */
    CHECK_ERR(parse(&a, "{\"block_out_channels\":[536870912,640,1280,1280]}"), ERR_MODEL, "'block_out_channels': expected integers in [1, 65536]");
    CHECK_ERR(parse(&a, "{\"block_out_channels\":[320,640,1280,268435456]}"), ERR_MODEL, "'block_out_channels'");
    CHECK_ERR(parse(&a, "{\"sample_size\":-8}"), ERR_MODEL, "field 'sample_size': out of range [1, 131072]");
    CHECK_ERR(parse(&a, "{\"sample_size\":999999999}"), ERR_MODEL, "field 'sample_size': out of range");
    CHECK_ERR(parse(&a, "{\"cross_attention_dim\":[1280,1280,1280,99999999]}"), ERR_MODEL, "'cross_attention_dim'");
    CHECK_ERR(parse(&a, "{\"attention_head_dim\":100000}"), ERR_MODEL, "'attention_head_dim': value out of range");
}

/* As strict as diffusers' reader (Python's json.loads), no stricter: one object, nothing
 * after it, no byte order mark; a key given twice keeps its last value; a plan is not a config. */
static void strict(void) {
    Arch a;
    CHECK_ERR(parse(&a, "\xef\xbb\xbf{}"), ERR_MODEL, "'c.json': starts with a UTF-8 byte order mark");
    CHECK_ERR(parse(&a, "{} x"), ERR_MODEL, "'c.json': text after the JSON object (at byte 3)");
    CHECK_ERR(parse(&a, "{\"in_channels\": 4}{\"in_channels\": 8}"), ERR_MODEL, "text after the JSON object (at byte 18)");
    CHECK(parse(&a, "{\"in_channels\": 4} \n\t\r") == 0);
    CHECK(parse(&a, "{\"in_channels\": 3, \"out_channels\": 4, \"in_channels\": 8}") == 0);
    CHECK_EQ_LL(a.in_channels, 8);
    CHECK_ERR(parse(&a, "{\"format\": \"unetlab-plan\", \"version\": 1, \"remove\": []}"), ERR_MODEL,
              "'c.json': is a unetlab plan, not a UNet config: give it as --plan");
}

static void drop(void) {
    Arch a;
    CHECK(config_parse(&a, config_preset("sdxl-base"), strlen(config_preset("sdxl-base")), "sdxl") == 0);
    int before = arch_total_depth(&a);
    CHECK(plan_remove(&a, "down_blocks.2.attentions.0.transformer_blocks.3") == 0);
    CHECK(plan_remove(&a, "mid_block.attentions.0.transformer_blocks.0") == 0);
    CHECK_EQ_LL(arch_total_depth(&a), before - 2);
    CHECK_EQ_LL(a.down[2].depth[0], 9);
    CHECK_EQ_LL(a.down[2].src_tb[0][3], 4); /* survivors keep their teacher indices */
    CHECK_EQ_LL(a.mid.src_tb[0][0], 1);
    CHECK_ERR(plan_remove(&a, "down_blocks.2.attentions.0.transformer_blocks.3"), ERR_PLAN, "already removed");
    CHECK_ERR(plan_remove(&a, "down_blocks.0.attentions.0.transformer_blocks.0"), ERR_PLAN, "no such transformer layer");
    CHECK_ERR(plan_remove(&a, "down_blocks.9.attentions.0.transformer_blocks.0"), ERR_PLAN, "no such module");
    CHECK_ERR(plan_remove(&a, "down_blocks.1.attentions.0.transformer_blocks.0x"), ERR_PLAN, "not a removable module");
    CHECK(plan_remove(&a, "down_blocks.1.attentions.0.transformer_blocks.0") == 0);
    CHECK_ERR(plan_remove(&a, "down_blocks.1.attentions.0.transformer_blocks.1"), ERR_PLAN, "last transformer layer");
}

int main(void) {
    defaults();
    quirks();
    bad();
    strict();
    drop();
    TEST_MAIN_END("test_config");
}
