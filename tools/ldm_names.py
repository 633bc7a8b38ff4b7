#!/usr/bin/env python3
"""ldm_names: every UNet tensor name and shape of a single-file checkpoint in
Stability's original (LDM) layout, for a model given by its diffusers config.

Written from the original code's layout (ldm/sgm openaimodel.UNetModel), not
from unetlab's C mapping, so that tests/test_singlefile.c can check the C
rules against an independent statement of the layout:

  time_embed.0 / .2        Linear(C0, 4 C0), Linear(4 C0, 4 C0)
  label_emb.0.0 / .0.2     (SDXL family) Linear(adm_in, 4 C0), Linear(4 C0, 4 C0)
  input_blocks.0.0         conv_in
  input_blocks.N           per level, per layer: ResBlock at .0, SpatialTransformer
                           at .1 where the level has attention; after a level but
                           the last: Downsample (.0.op) as an entry of its own
  middle_block.0 .1 .2     ResBlock, SpatialTransformer, ResBlock (a mid block
                           without attention: its ResBlock only)
  output_blocks.N          levels in reverse, layers + 1 each: ResBlock(ch + skip)
                           at .0, SpatialTransformer at .1, and in a level's last
                           layer (but the lowest level's) Upsample .conv after them
  out.0 / out.2            GroupNorm, conv_out

Usage: tools/ldm_names.py CONFIG.json > NAMES.txt   (one "name d0,d1,..." a line)
The committed lists: tests/data/sdxl-base-ldm-names.txt (../shared/models/sdxl-base.json)
and tests/data/sd15-ldm-names.txt (../shared/models/sd-1.5.json).
"""
import json
import sys

PREFIX = "model.diffusion_model."


def per_block(v, n):
    return list(v) if isinstance(v, list) else [v] * n


def main(path):
    cfg = json.load(open(path))
    boc = cfg.get("block_out_channels", [320, 640, 1280, 1280])
    n = len(boc)
    down = cfg.get("down_block_types")
    up = cfg.get("up_block_types")
    nres = per_block(cfg.get("layers_per_block", 2), n)
    ctx = cfg.get("cross_attention_dim", 1280)
    linear = bool(cfg.get("use_linear_projection", False))
    tl = per_block(cfg.get("transformer_layers_per_block", 1) or 1, n)
    # depth of level L's layer j, going down; diffusers' reverse list, or the
    # level's first depth mirrored, going up
    depth_down = [per_block(d, nres[L]) for L, d in enumerate(tl)]
    rtl = cfg.get("reverse_transformer_layers_per_block")
    if rtl:
        depth_up = [per_block(rtl[n - 1 - L], nres[L] + 1) for L in range(n)]  # indexed by level
    else:
        depth_up = [[depth_down[L][0]] * (nres[L] + 1) for L in range(n)]
    mid_type = cfg.get("mid_block_type", "UNetMidBlock2DCrossAttn")
    mid_depth = tl[-1] if isinstance(tl[-1], int) else tl[-1][0]
    mc = boc[0]
    ted = 4 * mc
    adm = cfg.get("projection_class_embeddings_input_dim") if cfg.get("addition_embed_type") == "text_time" else None

    out = []

    def t(name, *shape):
        out.append((PREFIX + name, shape))

    def linear_(p, i, o, bias=True):
        t(p + ".weight", o, i)
        if bias:
            t(p + ".bias", o)

    def conv(p, i, o, k):
        t(p + ".weight", o, i, k, k)
        t(p + ".bias", o)

    def norm(p, c):
        t(p + ".weight", c)
        t(p + ".bias", c)

    def resblock(p, ch, o):
        norm(p + ".in_layers.0", ch)
        conv(p + ".in_layers.2", ch, o, 3)
        linear_(p + ".emb_layers.1", ted, o)
        norm(p + ".out_layers.0", o)
        conv(p + ".out_layers.3", o, o, 3)
        if ch != o:
            conv(p + ".skip_connection", ch, o, 1)

    def attention(p, dim, kv):
        linear_(p + ".to_q", dim, dim, False)
        linear_(p + ".to_k", kv, dim, False)
        linear_(p + ".to_v", kv, dim, False)
        linear_(p + ".to_out.0", dim, dim)

    def spatial_transformer(p, ch, depth):
        norm(p + ".norm", ch)
        proj = (lambda q: linear_(q, ch, ch)) if linear else (lambda q: conv(q, ch, ch, 1))
        proj(p + ".proj_in")
        for d in range(depth):
            b = "%s.transformer_blocks.%d" % (p, d)
            attention(b + ".attn1", ch, ch)
            linear_(b + ".ff.net.0.proj", ch, 8 * ch)  # GEGLU: 2 x (4 ch)
            linear_(b + ".ff.net.2", 4 * ch, ch)
            attention(b + ".attn2", ch, ctx)
            for k in (1, 2, 3):
                norm(b + ".norm%d" % k, ch)
        proj(p + ".proj_out")

    linear_("time_embed.0", mc, ted)
    linear_("time_embed.2", ted, ted)
    if adm:
        linear_("label_emb.0.0", adm, ted)
        linear_("label_emb.0.2", ted, ted)
    conv("input_blocks.0.0", cfg.get("in_channels", 4), mc, cfg.get("conv_in_kernel", 3))
    chans = [mc]  # what each input block hands the output blocks
    ch, N = mc, 1
    for L in range(n):
        for j in range(nres[L]):
            resblock("input_blocks.%d.0" % N, ch, boc[L])
            ch = boc[L]
            if down[L] == "CrossAttnDownBlock2D":
                spatial_transformer("input_blocks.%d.1" % N, ch, depth_down[L][j])
            chans.append(ch)
            N += 1
        if L != n - 1:
            conv("input_blocks.%d.0.op" % N, ch, ch, 3)
            chans.append(ch)
            N += 1
    if mid_type == "UNetMidBlock2DCrossAttn":
        resblock("middle_block.0", ch, ch)
        spatial_transformer("middle_block.1", ch, mid_depth)
        resblock("middle_block.2", ch, ch)
    elif mid_type == "UNetMidBlock2D":
        resblock("middle_block.0", ch, ch)
    N = 0
    for L in reversed(range(n)):
        i = n - 1 - L  # the diffusers up block
        for j in range(nres[L] + 1):
            resblock("output_blocks.%d.0" % N, ch + chans.pop(), boc[L])
            ch = boc[L]
            k = 1
            if up[i] == "CrossAttnUpBlock2D":
                spatial_transformer("output_blocks.%d.1" % N, ch, depth_up[L][j])
                k = 2
            if L and j == nres[L]:
                conv("output_blocks.%d.%d.conv" % (N, k), ch, ch, 3)
            N += 1
    norm("out.0", ch)
    conv("out.2", mc, cfg.get("out_channels", 4), cfg.get("conv_out_kernel", 3))

    print("# UNet tensors of a single-file checkpoint of %s in the LDM layout (tools/ldm_names.py): name shape"
          % path.split("/")[-1])
    for name, shape in sorted(out):
        print(name, ",".join(str(d) for d in shape))


if __name__ == "__main__":
    main(sys.argv[1])
