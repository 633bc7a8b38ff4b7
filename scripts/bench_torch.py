#!/usr/bin/env python3
"""The PyTorch half of scripts/bench-cpu.sh: diffusers' UNet2DConditionModel on the CPU.

A benchmark, never a test. Subcommands (each prints one JSON object on stdout,
progress on stderr):

  inputs   write an inputs file (input.sample, input.timestep,
           input.encoder_hidden_states, input.text_embeds, input.time_ids; float32),
           seeded normal values; unetlab reads the same file (`bench --inputs`)
  run      load a diffusers UNet folder, W warm-ups, R timed forwards on an inputs
           file; --out writes the last forward's output ('output', float32)
  gemm     fp32 (or bf16) torch.matmul of N x N x N, best of a few: the machine's
           GEMM rate with the given threads
  compare  relative L2 of two files' 'output' tensors
  report   the markdown table (or JSON) of a bench-cpu.sh run folder
  info     torch / diffusers versions and torch's CPU build

Run with the venv made by `scripts/bench-cpu.sh --setup`.
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np



def log(msg):
    print(f"bench_torch: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- inputs ----
def rng_normal(seed, name, n):
    """n float32 normal values, seeded by (seed, name); both sides read the file."""
    key = int.from_bytes(name.encode(), "little") % (1 << 32)
    return np.random.default_rng([seed, key]).standard_normal(n, dtype=np.float32)


def cross_dim(cfg):
    c = cfg.get("cross_attention_dim", 1280)
    return int(c[-1] if isinstance(c, list) else c)


def cmd_inputs(a):
    from safetensors.numpy import save_file

    cfg = json.load(open(os.path.join(a.model, "config.json")))
    if a.height % 8 or a.width % 8:
        sys.exit("bench_torch: --height and --width are pixels, multiples of 8")
    n, lh, lw, L = a.batch, a.height // 8, a.width // 8, a.tokens
    cin, cross = int(cfg.get("in_channels", 4)), cross_dim(cfg)
    t = {
        "input.sample": rng_normal(a.seed, "calibration/sample", n * cin * lh * lw).reshape(n, cin, lh, lw),
        "input.timestep": np.array([round(999.0 * i / (n - 1)) if n > 1 else 500.0 for i in range(n)], dtype=np.float32),
        "input.encoder_hidden_states": rng_normal(a.seed, "calibration/encoder_hidden_states", n * L * cross).reshape(n, L, cross),
    }
    if cfg.get("addition_embed_type") == "text_time":
        te = int(cfg["projection_class_embeddings_input_dim"]) - 6 * int(cfg["addition_time_embed_dim"])
        t["input.text_embeds"] = rng_normal(a.seed, "calibration/text_embeds", n * te).reshape(n, te)
        ids = [a.height, a.width, 0, 0, a.height, a.width]  # original size, crop, target (pixels)
        t["input.time_ids"] = np.array([ids] * n, dtype=np.float32)
    save_file({k: np.ascontiguousarray(v) for k, v in t.items()}, a.out)
    print(json.dumps({"inputs": a.out, "seed": a.seed, "shapes": {k: list(v.shape) for k, v in t.items()}}))


# ------------------------------------------------------------------- run ----
def set_threads(n):
    import torch

    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass


def load_unet(folder, dtype):
    """UNet2DConditionModel from config.json on the meta device, then every tensor
    copied out of the safetensors file (nothing stays mapped) and assigned."""
    import torch
    from diffusers import UNet2DConditionModel
    from safetensors import safe_open

    cfg = UNet2DConditionModel.load_config(folder)
    with torch.device("meta"):
        model = UNet2DConditionModel.from_config(cfg)
    path = os.path.join(folder, "diffusion_pytorch_model.safetensors")
    sd = {}
    with safe_open(path, framework="pt") as f:
        for k in f.keys():
            x = f.get_tensor(k)
            sd[k] = x.to(dtype) if x.dtype != dtype else x.clone()
            del x
    missing, unexpected = model.load_state_dict(sd, strict=True, assign=True)
    del sd
    left = [n for n, p in list(model.named_parameters()) + list(model.named_buffers()) if p.is_meta]
    if left:
        sys.exit(f"bench_torch: '{path}' left {len(left)} tensors unset, e.g. {left[0]}")
    return model.eval()


def load_inputs(path, dtype, text_time):
    import torch
    from safetensors.torch import load_file

    t = {k: v.clone() for k, v in load_file(path).items()}
    for k in ("input.sample", "input.timestep", "input.encoder_hidden_states"):
        if k not in t:
            sys.exit(f"bench_torch: '{path}': missing tensor '{k}'")
    kw = {
        "sample": t["input.sample"].to(dtype),
        "timestep": t["input.timestep"].float(),
        "encoder_hidden_states": t["input.encoder_hidden_states"].to(dtype),
    }
    if text_time:
        for k in ("input.text_embeds", "input.time_ids"):
            if k not in t:
                sys.exit(f"bench_torch: '{path}': missing tensor '{k}' (text_time model)")
        kw["added_cond_kwargs"] = {"text_embeds": t["input.text_embeds"].to(dtype), "time_ids": t["input.time_ids"].to(dtype)}
    return kw


def cmd_run(a):
    import torch
    import diffusers

    set_threads(a.threads)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[a.dtype]
    t0 = time.perf_counter()
    model = load_unet(a.model, dtype)
    load_s = time.perf_counter() - t0
    kw = load_inputs(a.inputs, dtype, model.config.addition_embed_type == "text_time")
    procs = sorted({type(p).__name__ for p in model.attn_processors.values()})
    log(f"loaded {a.model} ({a.dtype}) in {load_s:.2f} s; {a.threads} threads; attention {','.join(procs)}")
    times, y = [], None
    with torch.inference_mode():
        for i in range(a.warmup + a.repeat):
            t0 = time.perf_counter()
            y = model(**kw, return_dict=False)[0]
            dt = time.perf_counter() - t0
            if i >= a.warmup:
                times.append(dt)
            log(f"forward {i + 1} of {a.warmup + a.repeat} ({'warm-up' if i < a.warmup else 'timed'}): {dt:.3f} s")
    if a.out:
        from safetensors.torch import save_file

        save_file({"output": y.float().contiguous()}, a.out)
    print(json.dumps({
        "side": "torch", "model": a.model, "dtype": a.dtype, "threads": torch.get_num_threads(),
        "torch": torch.__version__, "diffusers": diffusers.__version__, "attention": procs,
        "load_s": round(load_s, 3), "warmup": a.warmup, "repeats": a.repeat,
        "times_s": [round(x, 6) for x in times], "median_s": statistics.median(times), "out": a.out,
    }))


# ------------------------------------------------------------------ gemm ----
def cmd_gemm(a):
    import torch

    set_threads(a.threads)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[a.dtype]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.size, a.size, generator=g).to(dtype)
    w = torch.randn(a.size, a.size, generator=g).to(dtype)
    for _ in range(3):  # warm-up: thread pool, clocks
        torch.matmul(x, w)
    best = float("inf")
    for _ in range(a.tries):
        t0 = time.perf_counter()
        torch.matmul(x, w)
        best = min(best, time.perf_counter() - t0)
    gflops = 2.0 * a.size**3 / best / 1e9
    print(json.dumps({"gemm": a.size, "dtype": a.dtype, "threads": torch.get_num_threads(), "best_s": best,
                      "gflops": gflops, "tries": a.tries}))


# --------------------------------------------------------------- compare ----
def cmd_compare(a):
    from safetensors.numpy import load_file

    x = load_file(a.a)["output"].astype(np.float64)
    r = load_file(a.b)["output"].astype(np.float64)
    if x.shape != r.shape:
        sys.exit(f"bench_torch: output shapes differ: {list(x.shape)} vs {list(r.shape)}")
    rel = float(np.linalg.norm(x - r) / max(np.linalg.norm(r), 1e-300))
    print(json.dumps({"rel_l2": rel, "max_abs": float(np.max(np.abs(x - r))), "shape": list(x.shape)}))


def cmd_info(a):
    import torch
    import diffusers

    print(json.dumps({"torch": torch.__version__, "diffusers": diffusers.__version__,
                      "python": sys.version.split()[0], "parallel": torch.__config__.parallel_info().strip().splitlines()[:6]}))


# ---------------------------------------------------------------- report ----
def _median(xs):
    return statistics.median(xs) if xs else float("nan")


def cmd_report(a):
    """The table of a bench-cpu.sh run folder: meta.tsv, manifest.tsv and raw/."""
    meta = {}
    for line in open(os.path.join(a.run, "meta.tsv")):
        k, _, v = line.rstrip("\n").partition("\t")
        meta[k] = v
    rows = [line.rstrip("\n").split("\t") for line in open(os.path.join(a.run, "manifest.tsv")) if line.strip()]
    load = lambda f: (lambda d: d[0] if isinstance(d, list) else d)(json.load(open(f)))
    info, gemm, dgemm, macs, checks, cases = {}, {}, {}, {}, {}, {}
    loads = []
    for row in rows:
        kind, model, h, w, dt, th, rnd, f = row[:8]
        ld = float(row[8]) if len(row) > 8 and row[8] not in ("", "-") else None
        d = load(f)
        if kind == "info":
            info = d
        elif kind.startswith("gemm-"):
            gemm[(kind[5:], dt, int(th))] = d["gflops"]
        elif kind.startswith("dgemm-"):  # oneDNN's GEMM: what unetlab's engine can reach
            dgemm[(kind[6:], int(th))] = d
        elif kind == "inspect":
            macs[(model, int(h), int(w))] = d["total_macs"]
        elif kind.startswith("check-"):
            checks[(kind[6:], model, dt)] = d["rel_l2"]
        else:
            c = cases.setdefault((model, int(h), int(w), dt, int(th)),
                                 {"unetlab": [], "torch": [], "udev": "", "udtype": "", "other_unetlab": [], "other_torch": []})
            if ld is not None:
                c["other_" + kind].append(ld)
                loads.append(ld)
            if kind == "unetlab":
                c["unetlab"].append(d["ms_samples"][0] / 1e3 if d.get("ms_samples") else d["ms_median"] / 1e3)
                c["udev"], c["udtype"], c["umacs"] = d.get("device", ""), d.get("dtype", ""), d.get("macs")
            else:
                c["torch"].append(d["median_s"])
                c["attention"] = ",".join(d.get("attention", []))
    out = []
    for (model, h, w, dt, th), c in cases.items():
        mc = macs.get((model, h, w))
        if mc is not None and c.get("umacs") is not None and c["umacs"] != mc:
            log(f"warning: {model} {h}x{w}: inspect says {mc} MACs, bench {c['umacs']}")
        mu, mt = _median(c["unetlab"]), _median(c["torch"])
        flop = 2.0 * mc if mc is not None else float("nan")
        out.append({
            "model": model, "height": h, "width": w, "batch": int(meta.get("batch", 1)), "tokens": int(meta.get("tokens", 77)),
            "dtype": dt, "unetlab_dtype": c["udtype"], "threads": th, "gflop_per_forward": flop / 1e9,
            "unetlab_s": c["unetlab"], "torch_s": c["torch"], "unetlab_median_s": mu, "torch_median_s": mt,
            "ratio_unetlab_over_torch": mu / mt, "unetlab_gflops": flop / mu / 1e9, "torch_gflops": flop / mt / 1e9,
            "gemm_fp32_gflops_start": gemm.get(("start", "fp32", th)), "gemm_fp32_gflops_end": gemm.get(("end", "fp32", th)),
            "gemm_bf16_gflops_start": gemm.get(("start", "bf16", th)), "gemm_bf16_gflops_end": gemm.get(("end", "bf16", th)),
            "onednn_gemm_gflops_start": (dgemm.get(("start", th)) or {}).get(f"{dt}_gflops"),
            "onednn_gemm_gflops_end": (dgemm.get(("end", th)) or {}).get(f"{dt}_gflops"),
            "rel_l2_unetlab_vs_torch_fp32": checks.get(("unetlab", model, dt)),
            "rel_l2_torch_vs_torch_fp32": checks.get(("torch", model, dt)) if dt != "fp32" else 0.0,
            "unetlab_device": c["udev"], "torch_attention": c.get("attention", ""), "other_cpu_s_unetlab": c["other_unetlab"], "other_cpu_s_torch": c["other_torch"],
        })
    if a.format == "json":
        print(json.dumps({"meta": meta, "torch": info, "cases": out}, indent=1))
        return
    date = meta.get("date", "?")[:10]
    print(f"Machine: {meta.get('cpu')}, {meta.get('nproc')} CPUs ({meta.get('cpu_flags')}), {meta.get('mem')}; "
          f"date {meta.get('date')}; commit {meta.get('commit')}")
    print(f"unetlab: {meta.get('unetlab')}, binary sha256 {meta.get('unetlab_sha256')}, --device {meta.get('device')}"
          + (f", engine: {out[0]['unetlab_device']}" if out else ""))
    print(f"PyTorch {info.get('torch')}, diffusers {info.get('diffusers')}, Python {info.get('python')} "
          f"({meta.get('torch_install')}); attention: {out[0]['torch_attention'] if out else '?'}")
    print(f"uptime at start: {meta.get('uptime_start', '').strip()}")
    print(f"uptime at end:   {meta.get('uptime_end', '').strip()}")
    if loads:
        print(f"CPU seconds used by other processes (and steal) while each timed process ran (its load included): "
              f"{min(loads):.2f} to {max(loads):.2f}; 0 on an idle machine; a sample whose process shared the CPUs "
              f"can be several times slower (OpenMP threads wait on preempted ones): rerun on an idle machine")
    print(f"Each side: fresh process per round, {meta.get('warmup')} warm-up then 1 timed forward (load not counted); "
          f"{meta.get('rounds')} rounds alternating unetlab, torch; batch {meta.get('batch')}, {meta.get('tokens')} tokens, "
          f"seed {meta.get('seed')}; GFLOP/s = 2 x MACs (unetlab inspect) / median. GEMM: torch.matmul 2048^3, best of 10, "
          f"at the start / end of the run; oneDNN GEMM: build/tools/gemm-rate 2048^3 (dnnl_sgemm, or a bf16 matmul for bf16 rows), "
          f"best of 10, the better of start and end; 'of GEMM' = unetlab GFLOP/s / that.")
    print()
    print("| date | commit | model | px | dtype | threads | unetlab s (median; samples) | torch s (median; samples) "
          "| unetlab / torch | unetlab GFLOP/s | torch GFLOP/s | torch fp32 GEMM GFLOP/s (start/end) "
          "| oneDNN GEMM GFLOP/s, this dtype | unetlab of GEMM | rel L2 vs torch fp32 | others' CPU s, max (unetlab / torch) |")
    print("|---|---|---|---|---|---:|---|---|---:|---:|---:|---|---:|---:|---|---|")
    f3 = lambda xs: ", ".join(f"{x:.3f}" for x in xs)
    mx = lambda xs: f"{max(xs):.1f}" if xs else "?"
    for r in out:
        dts = r["dtype"] + (f" (unetlab ran {r['unetlab_dtype']})" if r["unetlab_dtype"] and r["unetlab_dtype"] != r["dtype"] else "")
        g0, g1 = r["gemm_fp32_gflops_start"], r["gemm_fp32_gflops_end"]
        gs = f"{g0:.1f} / {g1:.1f}" if g0 is not None and g1 is not None else "?"
        dg = [x for x in (r["onednn_gemm_gflops_start"], r["onednn_gemm_gflops_end"]) if x]
        dgs = f"{max(dg):.1f}" if dg else "?"
        share = f"{100 * r['unetlab_gflops'] / max(dg):.0f}%" if dg else "?"
        rl = r["rel_l2_unetlab_vs_torch_fp32"]
        rls = "not checked" if rl is None else f"{rl:.2g}"
        if r["dtype"] != "fp32" and r["rel_l2_torch_vs_torch_fp32"] is not None:
            rls += f" (torch {r['dtype']}: {r['rel_l2_torch_vs_torch_fp32']:.2g})"
        print(f"| {date} | {meta.get('commit')} | {r['model']} | {r['height']}x{r['width']} | {dts} | {r['threads']} "
              f"| {r['unetlab_median_s']:.3f} ({f3(r['unetlab_s'])}) | {r['torch_median_s']:.3f} ({f3(r['torch_s'])}) "
              f"| {r['ratio_unetlab_over_torch']:.2f}x | {r['unetlab_gflops']:.1f} | {r['torch_gflops']:.1f} | {gs} | {dgs} | {share} | {rls} "
              f"| {mx(r['other_cpu_s_unetlab'])} / {mx(r['other_cpu_s_torch'])} |")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("inputs", help="write the seeded inputs file of one shape")
    s.add_argument("--model", required=True, help="diffusers UNet folder (its config.json gives the dimensions)")
    s.add_argument("--out", required=True)
    s.add_argument("--batch", type=int, default=1)
    s.add_argument("--height", type=int, required=True, help="pixels (latent = pixels / 8)")
    s.add_argument("--width", type=int, required=True)
    s.add_argument("--tokens", type=int, default=77)
    s.add_argument("--seed", type=int, default=0, help="as unetlab bench --seed (default 0)")
    s.set_defaults(fn=cmd_inputs)
    s = sub.add_parser("run", help="time forwards of a diffusers UNet")
    s.add_argument("--model", required=True, help="diffusers UNet folder: config.json + diffusion_pytorch_model.safetensors")
    s.add_argument("--inputs", required=True)
    s.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--warmup", type=int, default=1)
    s.add_argument("--repeat", type=int, default=1)
    s.add_argument("--out", help="write the last forward's output here ('output', float32)")
    s.set_defaults(fn=cmd_run)
    s = sub.add_parser("gemm", help="torch.matmul rate, best of --tries")
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--size", type=int, default=2048)
    s.add_argument("--tries", type=int, default=10)
    s.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    s.set_defaults(fn=cmd_gemm)
    s = sub.add_parser("compare", help="relative L2 of A's 'output' against B's")
    s.add_argument("a")
    s.add_argument("b")
    s.set_defaults(fn=cmd_compare)
    s = sub.add_parser("report", help="the table of a bench-cpu.sh run folder")
    s.add_argument("--run", required=True, help="the run folder (meta.tsv, manifest.tsv, raw/)")
    s.add_argument("--format", choices=["md", "json"], default="md")
    s.set_defaults(fn=cmd_report)
    s = sub.add_parser("info", help="versions")
    s.set_defaults(fn=cmd_info)
    a = p.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
