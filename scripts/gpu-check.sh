#!/usr/bin/env bash
# gpu-check: the one prepared run on a GPU machine. Given the build/ folder
# made on a CPU machine (carried as it is: rpath, libcjson.so.1 beside the
# binary), it runs, each under its own time limit:
#   1. the GPU tests: kernels vs their CPU references, cuDNN/cuBLASLt wrappers,
#      CUPTI, and the whole forward on both diffusers fixtures (fp32, fp16,
#      bf16, students, prefix reuse, CUDA-graph replay);
#   2. bench: SDXL, SSD-1B and Segmind-Vega at 1024x1024, fp16, batch 1 and 2,
#      CUDA graph (and SDXL eager), beside the goals and PyTorch's numbers;
#   3. profile: SDXL batch 2 fp16 in graph mode with CUPTI (attribution gap,
#      tracing overhead), then the three models compared in one run;
# and prints a summary table last. Everything it writes goes to $OUT (or
# build/gpu-check/): log.txt, bench.json, profile.json, compare.txt, profile.db.
# Usage: scripts/gpu-check.sh [BUILD_DIR]     (from the repository root)
# Quick mode for a second try: GPU_CHECK_QUICK=1 skips the eager and bf16 rows.
set -u
build=${1:-build}
out=${OUT:-$build/gpu-check}
mkdir -p "$out"
exec > >(tee "$out/log.txt") 2>&1
bin="$build/unetlab"
t_start=$(date +%s)
declare -a rows=()   # summary rows: "section|what|result|detail"

stamp() { echo; echo "== $* ($(( $(date +%s) - t_start )) s)"; }
row() { rows+=("$1|$2|$3|$4"); }

stamp environment
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem,memory.total --format=csv 2>&1 | head -3
missing=$(ldd "$bin" | grep "not found")
if [ -n "$missing" ]; then
  echo "the carried binary cannot find: $missing"
  row setup "shared libraries" FAIL "$missing"
fi
"$bin" version
ldd "$bin" | grep -E "cudnn|cublasLt|cupti|cjson|gomp|sqlite" | sed 's/^/  /'

stamp "GPU tests"
for t in test_cuda_ops test_cuda_libs test_cuda_cupti test_cuda_forward; do
  if [ ! -x "$build/tests/$t" ]; then row tests "$t" MISSING "not built"; continue; fi
  timeout 150 "$build/tests/$t" > "$out/$t.txt" 2>&1; rc=$?
  cat "$out/$t.txt"
  line=$(grep -E "^$t: [0-9]+ passed" "$out/$t.txt" | tail -1)
  skip=$(grep -E "^$t: skipped" "$out/$t.txt" | head -1)
  if [ $rc -eq 0 ] && [ -n "$line" ] && [ -z "$skip" ]; then row tests "$t" PASS "${line#*: }"
  elif [ -n "$skip" ]; then row tests "$t" SKIP "${skip#*: skipped: }"
  else row tests "$t" FAIL "exit $rc; ${line#*: }"; fi
  rm -f "$out/$t.txt"
done

stamp "bench (1024x1024, fp16)"
: > "$out/bench.json"
bench() { # model mode(graph|eager) batches
  local flag=""; [ "$2" = graph ] && flag=--graph
  local j
  j=$(timeout 150 "$bin" bench --model "$1" --batch "$3" --height 1024 --width 1024 --dtype fp16 \
        --warmup 5 --repeats 20 $flag --format json); local rc=$?
  if [ $rc -ne 0 ]; then row bench "$1 $2 b$3" FAIL "exit $rc"; return; fi
  echo "$j" | tee -a "$out/bench.json"
}
bench sdxl-base graph 1,2
bench ssd-1b graph 1,2
bench segmind-vega graph 1,2
[ "${GPU_CHECK_QUICK:-0}" = 1 ] || bench sdxl-base eager 1,2

stamp "profile: SDXL batch 2, fp16, CUDA graph, CUPTI"
rm -f "$out/profile.db"
timeout 200 "$bin" profile --model sdxl-base --batch 2 --height 1024 --width 1024 --dtype fp16 --graph \
  --warmup 3 --repeats 10 --db "$out/profile.db" --format json > "$out/profile.json"; rc=$?
[ $rc -eq 0 ] || row profile "sdxl-base b2 graph" FAIL "exit $rc"
timeout 120 "$bin" profile --model sdxl-base --batch 2 --height 1024 --width 1024 --dtype fp16 --graph \
  --warmup 2 --repeats 5 --depth 1 | tail -n 25

stamp "profile --compare: SDXL, SSD-1B, Vega in one run (batch 2, fp16, graph)"
timeout 300 "$bin" profile --compare sdxl-base,ssd-1b,segmind-vega --batch 2 --height 1024 --width 1024 \
  --dtype fp16 --graph --warmup 2 --repeats 10 --db "$out/profile.db" | tee "$out/compare.txt"; rc=${PIPESTATUS[0]}
[ $rc -eq 0 ] || row profile "compare" FAIL "exit $rc"

stamp summary
python3 - "$out" "${rows[@]}" <<'EOF' || printf '%s\n' "${rows[@]}"
import json, sys, os
out, rows = sys.argv[1], [r.split("|", 3) for r in sys.argv[2:]]
goals = {("sdxl-base", 1): 18.0, ("sdxl-base", 2): 30.0}
torch = {("sdxl-base", 1, "graph"): 27.3, ("sdxl-base", 2, "graph"): 43.5, ("sdxl-base", 1, "eager"): 58.0,
         ("sdxl-base", 2, "eager"): 60.5, ("ssd-1b", 1, "eager"): 34.0, ("ssd-1b", 2, "eager"): 37.5,
         ("segmind-vega", 1, "eager"): 22.0, ("segmind-vega", 2, "eager"): 24.5}
text = open(os.path.join(out, "bench.json")).read()
dec, i, bench = json.JSONDecoder(), 0, []
while i < len(text):
    while i < len(text) and text[i].isspace(): i += 1
    if i >= len(text): break
    v, i = dec.raw_decode(text, i)
    bench += v
print("%-8s %-34s %-6s %s" % ("section", "what", "result", "detail"))
for sec, what, res, det in rows:
    print("%-8s %-34s %-6s %s" % (sec, what, res, det))
sd = {(b["batch"], b["mode"]): b["ms_median"] for b in bench if b["model"] == "sdxl-base"}
for b in bench:
    key = (b["model"], b["batch"])
    goal = goals.get(key)
    if goal is None and b["model"] != "sdxl-base" and (b["batch"], "graph") in sd:
        goal = None  # in proportion: shown as the ratio to SDXL below
    mem = b.get("memory_bytes", {})
    peak = (mem.get("weights", 0) + mem.get("activations_held", 0) + mem.get("workspace", 0)) / 1e9
    ref = torch.get((b["model"], b["batch"], b["mode"]))
    ratio = sd.get((b["batch"], b["mode"]))
    det = "median %.2f ms (p10 %.2f, p90 %.2f), %.0f TFLOP/s, %.2f GB held (device %.2f GB)" % (
        b["ms_median"], b["ms_p10"], b["ms_p90"], b["tflops"], peak, mem.get("device_used", 0) / 1e9)
    if goal: det += "; goal <= %g ms: %s" % (goal, "MET" if b["ms_median"] <= goal else "not met")
    if ref: det += "; PyTorch %g ms (%.2fx)" % (ref, ref / b["ms_median"])
    if ratio and b["model"] != "sdxl-base": det += "; SDXL/this %.2fx" % (ratio / b["ms_median"])
    if b["model"] == "sdxl-base" and b["batch"] == 2: det += "; memory goal <= 7 GB: %s" % ("MET" if peak <= 7 else "not met")
    print("%-8s %-34s %-6s %s" % ("bench", "%s b%d %s" % (b["model"], b["batch"], b["mode"]), "ok", det))
try:
    prof = json.load(open(os.path.join(out, "profile.json")))["profiles"][0]
    gap = 100 * prof["gap_ms"] / prof["forward_ms"]
    ovh = 100 * prof["overhead_ms"] / prof["untraced_ms"]
    print("%-8s %-34s %-6s %s" % ("profile", "sdxl-base b2 graph attribution", "PASS" if abs(gap) <= 3 else "FAIL",
          "forward %.2f ms (CUDA events), modules %.2f ms (CUPTI timeline), gap %.2f%% (<= 3%%), kernels busy %.2f ms, engine %s"
          % (prof["forward_ms"], prof["attributed_ms"], gap, prof.get("kernels_busy_ms", 0), prof["engine"])))
    print("%-8s %-34s %-6s %s" % ("profile", "sdxl-base b2 graph overhead", "PASS" if ovh <= 3 else "FAIL",
          "untraced %.2f ms, traced %.2f ms: %+.2f%% (<= 3%%)" % (prof["untraced_ms"], prof["forward_ms"], ovh)))
except Exception as e:
    print("%-8s %-34s %-6s %s" % ("profile", "sdxl-base b2 graph", "FAIL", "no profile.json: %s" % e))
try:
    for line in open(os.path.join(out, "compare.txt")):
        f = line.split()
        if f and f[0] in ("sdxl-base", "ssd-1b", "segmind-vega") and len(f) >= 6:
            print("%-8s %-34s %-6s %s" % ("compare", f[0] + " b2 graph (one run)", "ok", "%s ms, %s" % (f[3], " ".join(f[6:]))))
except OSError:
    print("%-8s %-34s %-6s %s" % ("compare", "sdxl : ssd-1b : vega", "FAIL", "no compare.txt"))
EOF
echo "gpu-check: $(( $(date +%s) - t_start )) s"
