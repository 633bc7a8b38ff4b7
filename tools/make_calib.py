#!/usr/bin/env python3
"""make_calib.py: a real calibration file for `unetlab eval --calib`, from prompts and
images, with diffusers (optional tool; needs torch, diffusers, safetensors, Pillow).

    python3 tools/make_calib.py --pipeline /ckpt/sdxl-base --prompts prompts.txt \
        --images imgs/ --timesteps 999,750,500,250,50 --out calib.safetensors

Each (prompt, image) pair gives one sample per timestep: the image encoded by the
pipeline's VAE (times its scaling factor), noised by the pipeline's scheduler at that
timestep, the prompt encoded by both SDXL text encoders (encoder_hidden_states
[B, 77, 2048], text_embeds [B, 1280]), and time_ids (H, W, 0, 0, H, W). Written as
input.sample, input.timestep, input.encoder_hidden_states, input.text_embeds and
input.time_ids (float32), the layout of tests/fixtures/*/io.safetensors.
"""
import argparse
import os


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pipeline", required=True, help="diffusers SDXL pipeline directory")
    ap.add_argument("--prompts", required=True, help="text file, one prompt per line")
    ap.add_argument("--images", required=True, help="directory of images, paired with prompts in sorted order")
    ap.add_argument("--timesteps", default="999,750,500,250,50")
    ap.add_argument("--size", type=int, default=1024, help="image side in pixels")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    import torch
    from PIL import Image
    from diffusers import StableDiffusionXLPipeline
    from safetensors.torch import save_file

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    pipe = StableDiffusionXLPipeline.from_pretrained(a.pipeline, torch_dtype=torch.float32).to(dev)
    prompts = [l.strip() for l in open(a.prompts) if l.strip()]
    files = sorted(f for f in os.listdir(a.images) if f.lower().endswith((".png", ".jpg", ".jpeg", ".webp")))
    n = min(len(prompts), len(files))
    if n == 0:
        raise SystemExit("make_calib: no (prompt, image) pairs")
    steps = [int(t) for t in a.timesteps.split(",")]
    g = torch.Generator(dev).manual_seed(a.seed)
    out = {k: [] for k in ("sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids")}
    with torch.no_grad():
        for i in range(n):
            img = Image.open(os.path.join(a.images, files[i])).convert("RGB").resize((a.size, a.size))
            x = torch.from_numpy(__import__("numpy").asarray(img)).float().permute(2, 0, 1)[None] / 127.5 - 1
            lat = pipe.vae.encode(x.to(dev)).latent_dist.sample(g) * pipe.vae.config.scaling_factor
            emb, _, pooled, _ = pipe.encode_prompt(prompts[i], device=dev, do_classifier_free_guidance=False)
            for t in steps:
                tt = torch.tensor([t], device=dev)
                noise = torch.randn(lat.shape, generator=g, device=dev)
                out["sample"].append(pipe.scheduler.add_noise(lat, noise, tt))
                out["timestep"].append(tt.float())
                out["encoder_hidden_states"].append(emb)
                out["text_embeds"].append(pooled)
                out["time_ids"].append(torch.tensor([[a.size, a.size, 0, 0, a.size, a.size]], device=dev).float())
    save_file({"input." + k: torch.cat(v).float().cpu().contiguous() for k, v in out.items()}, a.out)
    print(f"make_calib: wrote {a.out}: {n * len(steps)} samples ({n} pairs x {len(steps)} timesteps)")


if __name__ == "__main__":
    main()
