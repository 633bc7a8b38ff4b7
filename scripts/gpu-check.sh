#!/usr/bin/env bash
# gpu-check: the one prepared run on a GPU machine (issues 4, 5 and 14). Given
# the bundle made on a CPU machine by `make gpu-bundle` (build/gpu/: the
# binary and GPU test programs without debug sections, libcjson.so.1 and
# libgomp.so.1 beside them; small enough to carry), it runs each step under
# what is left of a time budget, most important first:
#   1. correctness: the GPU tests (kernels vs their CPU references,
#      cuDNN/cuBLASLt wrappers, CUPTI, the whole forward vs the CPU reference
#      on both diffusers fixtures: fp32, fp16, bf16, students, prefix reuse,
#      CUDA-graph replay), then every attention path on SDXL's shapes, checked
#      and timed side by side (which to keep);
#   2. SDXL in one process, one upload of its weights: bench 1024x1024 fp16,
#      batch 1 and 2, CUDA graph (the goals), then eager, then the CUPTI
#      profile of batch 2 (attribution gap, overhead; last, as CUPTI once
#      initialised may slow what follows);
#   3. SSD-1B, then Vega, each in one process (graph): their ratios to SDXL;
# and prints a summary table last, also written as $OUT/summary.json.
#
# Each step has a minimum (what it honestly needs: weights made and uploaded,
# warm-ups, the timed forwards) and a limit (what it may take at most), in s:
#   step                               min  limit
#   test_cuda_ops                       15     90
#   test_cuda_libs                      15     90
#   test_cuda_cupti                     10     60
#   test_cuda_forward (vs the CPU)      30    120
#   test_cuda_attn (paths, SDXL shapes) 20     90
#   sdxl-base graph, eager b1,2
#     + profile b2 (one process)        70    200
#   ssd-1b graph b1,2                   40    100
#   segmind-vega graph b1,2             30     90
# A step starts only when its minimum fits in what the budget leaves (the
# budget less 25 s for the summary and 10 s for a kill's grace); otherwise it
# is a SKIP row "needs N s, M left". Its limit is cut to what is left. Every
# command runs under `timeout -k 10 LIMIT`: one killed by its limit is a
# TIMEOUT row ("killed after N s"), never a FAIL with exit 124. On this machine
# a GPU test that says "skipped" is a FAIL: the GPU was not usable. Every bench
# and profile says --device cuda: none falls back to the CPU.
#
# Rows: section, what, result (PASS FAIL SKIP TIMEOUT MISSING), detail and,
# where the row has them, value, goal and reference (numbers: ms, GB, %).
# SDXL graph goals: batch 1 <= 18 ms, batch 2 <= 30 ms, peak memory at batch 2
# <= 7 GB; references: PyTorch on an H100 (27.3 ms, 43.5 ms). Bench rows are
# measurements (PASS = measured; the detail says whether a goal was met).
# Exit status: 1 when any row is FAIL, TIMEOUT or MISSING, else 0.
#
# Files land in $OUT (or BUNDLE/gpu-check/): log.txt, summary.json, the GPU
# tests' output (test_cuda_*.txt), bench-MODEL.json and .err (one JSON array
# per step, the batch sizes measured before a failure kept), profile.json,
# profile.db.gz. With GPU_CHECK_DOCS=DIR the
# summary is also copied to DIR/<date>-<card>.json (its name is summary.json's
# docs_name; see docs/gpu/README.md).
#
# Usage, from the repository root: scripts/gpu-check.sh [--dry-run] [BUNDLE]
# (default build/gpu).
# GPU_CHECK_BUDGET: seconds for the whole run (default 290: under 5 minutes);
# a rerun can give up to 540 (the device tool stops a command at 600).
# GPU_CHECK_DRY=1 or --dry-run: the same control flow with a stand-in for the
# binary and the tests, generated in $OUT/fake/, and no nvidia-smi: for
# testing this script without a GPU (tests/gpu_check.sh). Each step's
# behaviour comes from GPU_CHECK_FAKE, comma-separated KEY=BEHAVIOUR[@SECONDS]:
#   keys: test_cuda_ops, test_cuda_libs, test_cuda_cupti, test_cuda_forward,
#         test_cuda_attn, bench, bench.MODEL (the more specific wins),
#         profile (bench --profile, inside SDXL's bench process);
#   behaviours: pass, fail, skip (tests), hang (sleeps past its limit), stuck
#         (hangs ignoring SIGTERM: needs the SIGKILL), crash (SIGSEGV),
#         missing (tests: not in the bundle), partial (bench: batch 1, then an
#         error, exit 1), partial-hang (bench: batch 1, then hangs: the JSON
#         array is left open); a profile that fails ends its bench process;
#   SECONDS: how long the step takes (default 1); anything not named passes.
# GPU_CHECK_SCALE: real seconds per budget second (default 1; 0.02 in a dry
# run, so a 290 s budget takes under 6 s). GPU_CHECK_NO_PYTHON=1: summarise
# without python3, as on a machine without it (rows from the steps only).
set -u
dry=${GPU_CHECK_DRY:-0}
build=build/gpu
for a in "$@"; do
  case $a in
    --dry-run) dry=1 ;;
    -h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "gpu-check: unknown option '$a' (see --help)" >&2; exit 2 ;;
    *) build=$a ;;
  esac
done
[ "$dry" = 0 ] || dry=1
out=${OUT:-$build/gpu-check}
budget=${GPU_CHECK_BUDGET:-290}
reserve=25   # kept for the summary
grace=10     # timeout -k: SIGKILL this long after SIGTERM
mkdir -p "$out"
out=$(cd "$out" && pwd)
if [ "$dry" = 1 ]; then scale=${GPU_CHECK_SCALE:-0.02}; else scale=${GPU_CHECK_SCALE:-1}; fi
# the scale in millionths, so that the accounting stays in integers
scale_u=$(awk -v s="$scale" 'BEGIN { u = int(s * 1e6 + 0.5); print (u < 1 ? 0 : u) }')
if ! [[ $budget =~ ^[0-9]+$ ]] || [ "$scale_u" -lt 1 ]; then
  echo "gpu-check: GPU_CHECK_BUDGET must be whole seconds and GPU_CHECK_SCALE > 0" >&2; exit 2
fi
bin="$build/unetlab"
tests="$build/tests"
now_ms() { date +%s%3N; }
t_start=$(now_ms)
date_iso=$(date -u +%Y-%m-%dT%H:%M:%SZ)
rows="$out/rows.tsv"   # section, what, result, detail, value, goal, reference, file (for the summary)
: > "$rows"

# budget seconds since the start (real ms / scale)
nom_ms() { echo $(( ($(now_ms) - t_start) * 1000000 / scale_u )); }
# budget seconds -> real seconds for timeout and sleep ("12.345")
real_s() { local ms=$(( $1 * scale_u / 1000 )); [ $ms -lt 1 ] && ms=1; printf '%d.%03d' $((ms / 1000)) $((ms % 1000)); }
left_s() { echo $(( budget - reserve - grace - $(nom_ms) / 1000 )); }
clean() { tr '\t\n\r' '   ' <<<"$1" | tr -d '\000-\037' | sed 's/ *$//'; }
row() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$(clean "$4")" "${5:-}" "${6:-}" "${7:-}" "${8:-}" >> "$rows"; }
stamp() { echo; echo "== $* ($(( $(nom_ms) / 1000 )) s)"; }

# step SECTION WHAT MIN LIMIT OUTFILE ERRFILE|- CMD...: runs CMD under timeout
# when MIN fits in what is left (else a SKIP row, and returns 1). ERRFILE -
# sends stderr to OUTFILE too. Sets step_rc, step_s (how long it ran), step_lim.
step() {
  local sec=$1 what=$2 min=$3 max=$4 o=$5 e=$6 left t; shift 6
  left=$(left_s)
  if [ "$left" -lt "$min" ]; then
    row "$sec" "$what" SKIP "needs $min s, $(( left < 0 ? 0 : left )) left"; return 1
  fi
  step_lim=$(( left < max ? left : max )); step_max=$max
  t=$(nom_ms)
  if [ "$e" = - ]; then timeout -k "$(real_s $grace)" "$(real_s "$step_lim")" "$@" > "$o" 2>&1 < /dev/null
  else timeout -k "$(real_s $grace)" "$(real_s "$step_lim")" "$@" > "$o" 2> "$e" < /dev/null; fi
  step_rc=$?
  step_ms=$(( $(nom_ms) - t )); step_s=$(( (step_ms + 500) / 1000 ))
  return 0
}
# Whether the last step was killed by its limit (not a command that exits
# 124 or was SIGKILLed, e.g. by the OOM killer, well before it).
timed_out() { { [ "$step_rc" -eq 124 ] || [ "$step_rc" -eq 137 ]; } && [ "$step_ms" -ge $(( step_lim * 900 )) ]; }
killed_detail() {
  local d="killed after $step_lim s"
  [ "$step_lim" -lt "$step_max" ] && d+=" (its limit $step_max s, cut to what the budget left)"
  [ "$step_rc" -eq 137 ] && d+="; ignored SIGTERM, SIGKILLed $grace s later"
  printf '%s' "$d"
}
exit_detail() { # exit code, with the signal where it was one
  local d="exit $step_rc"
  [ "$step_rc" -gt 128 ] && [ "$step_rc" -lt 160 ] && d+=" (signal $(kill -l $((step_rc - 128)) 2>/dev/null || echo $((step_rc - 128))))"
  printf '%s' "$d"
}
last_line() { grep -v '^[[:space:]]*$' "$1" 2>/dev/null | tail -1 | cut -c1-200; }

# The stand-in for a dry run: one bash script, called as unetlab or as each test.
make_fake() {
  local f="$out/fake" t b
  rm -rf "$f"; mkdir -p "$f/tests"
  cat > "$f/unetlab" <<'FAKE'
#!/usr/bin/env bash
# gpu-check's dry-run stand-in for unetlab and the GPU tests: behaves as
# GPU_CHECK_FAKE says (see scripts/gpu-check.sh --help).
me=$(basename "$0") key= model= modes=eager db= batches=1 device= pout=
look() { local kv; IFS=, read -ra kvs <<<"${GPU_CHECK_FAKE:-}"
  for kv in "${kvs[@]}"; do [ "${kv%%=*}" = "$1" ] && { echo "${kv#*=}"; return 0; }; done; return 1; }
if [ "$me" = unetlab ]; then
  sub=${1:-}; shift
  [ "$sub" = version ] && { echo "unetlab 0.1.0 (fake000-dirty, CUDA=1 DNNL=0 SAN=0 cc; CUDA-enabled build)"; exit 0; }
  while [ $# -gt 0 ]; do
    case $1 in --model) model=$2; shift ;; --graph) modes=graph ;; --mode) modes=$2; shift ;;
      --profile-out) pout=$2; shift ;; --db) db=$2; shift ;; --batch) batches=$2; shift ;;
      --device) device=$2; shift ;; esac
    shift
  done
  # on the GPU machine nothing may fall back to the CPU
  [ "$device" = cuda ] || { echo "unetlab: error: fake: $sub without --device cuda" >&2; exit 2; }
  [ -z "$key" ] && key=$sub
fi
b=
if [ "$key" = bench ]; then b=$(look "bench.$model" || look bench)
elif [ -n "$key" ]; then b=$(look "$key"); else b=$(look "$me"); key=$me; fi
b=${b:-pass}; secs=1
case $b in *@*) secs=${b#*@}; b=${b%@*} ;; esac
nap() { sleep "$(awk -v s="$1" -v u="$GC_SCALE_U" 'BEGIN { printf "%.3f", s * u / 1e6 }')"; }
hang() { echo "$1"; [ "$b" = stuck ] && trap '' TERM; exec sleep 100000; }
desc="Fake H200 (sm_90, 139.8 GiB, driver CUDA 13.0, runtime 13.0)"
obj() { # model batch mode
  local ms; ms=$(awk -v m="$1" -v b="$2" -v g="$3" 'BEGIN { x = (m == "sdxl-base" ? 16 : m == "ssd-1b" ? 10 : 6) * (b == 1 ? 1 : 1.8);
    if (g == "eager") x *= 1.3; printf "%.3f", x }')
  printf '{\n\t"model":\t"%s",\n\t"batch":\t%d,\n\t"height":\t1024,\n\t"width":\t1024,\n\t"dtype":\t"fp16",\n\t"mode":\t"%s",\n' "$1" "$2" "$3"
  printf '\t"engine":\t"cuda-events",\n\t"device":\t"%s",\n\t"attention":\t"attention: 4 shapes: cudnn 4",\n\t"ms_median":\t%s,\n\t"ms_p10":\t%s,\n\t"ms_p90":\t%s,\n' "$desc" "$ms" "$ms" "$ms"
  printf '\t"tflops":\t400,\n\t"spread":\t1.01,\n\t"unstable":\tfalse,\n\t"memory_bytes":\t{\n\t\t"weights":\t5135000000,\n'
  printf '\t\t"activations_peak":\t%d,\n\t\t"activations_held":\t900000000,\n\t\t"workspace":\t268435456,\n\t\t"device_used":\t7500000000\n\t}\n}' $(( 700000000 * $2 ))
}
nap "$secs"
case $key in
  test_cuda_*)
    case $b in
      pass) echo "$key: on $desc; cuDNN 9.10.2"
        [ "$key" = test_cuda_attn ] && echo "attn fp16 B2 Nq4096 Nk4096 h10 d64: cudnn 0.215 ms, mma 0.300 ms, flash 0.610 ms, plain 9.100 ms; auto picks cudnn"
        echo "$key: 42 passed, 0 failed" ;;
      fail) echo "$key: on $desc"; echo "fake.c:1: CHECK failed: conv fp16 3x3" >&2; echo "$key: 40 passed, 2 failed"; exit 1 ;;
      skip) echo "$key: skipped: no CUDA device (cudaGetDeviceCount: no CUDA-capable device is detected)"; echo "$key: 0 passed, 0 failed" ;;
      hang|stuck) echo "$key: on $desc"; hang "$key: case attention fp16 (flash), batch 2" ;;
      crash) echo "$key: case groupnorm bf16"; kill -SEGV $$ ;;
    esac ;;
  bench)
    echo "bench: loading $model (seeded random weights)" >&2
    mode1=${modes%%,*}
    # --profile-out: after every mode's sizes, as the real bench does
    profile() {
      local p; p=$(look profile); p=${p:-pass}; p=${p%@*}
      case $p in
        pass) [ -n "$db" ] && : > "$db"
          printf '{\n\t"profiles":\t[{\n\t\t\t"model":\t"sdxl-base",\n\t\t\t"engine":\t"cuda-cupti",\n\t\t\t"forward_ms":\t30.2,\n' > "$pout"
          printf '\t\t\t"attributed_ms":\t29.8,\n\t\t\t"kernels_busy_ms":\t29.1,\n\t\t\t"gap_ms":\t0.4,\n\t\t\t"overhead_ms":\t0.3,\n\t\t\t"untraced_ms":\t29.9,\n' >> "$pout"
          printf '\t\t\t"modules":\t[{\n\t\t\t\t\t"name":\t"up_blocks.0",\n\t\t\t\t\t"ms":\t12.5,\n\t\t\t\t\t"calls":\t400,\n\t\t\t\t\t"share":\t0.41\n\t\t\t\t}]\n\t\t}]\n}\n' >> "$pout" ;;
        fail) printf '\n]\n'; echo "unetlab: error: cupti: CUPTI_ERROR_INSUFFICIENT_PRIVILEGES (fake)" >&2; exit 1 ;;
        hang|stuck) b=$p; hang "" ;;
        crash) kill -SEGV $$ ;;
      esac
    }
    case $b in
      pass) printf '['; sep=
        for mo in ${modes//,/ }; do
          for n in ${batches//,/ }; do printf '%s\n' "$sep"; obj "$model" "$n" "$mo"; sep=,; done
        done
        [ -n "$pout" ] && profile
        printf '\n]\n' ;;
      partial) printf '[\n'; obj "$model" 1 "$mode1"; printf '\n]\n'; echo "unetlab: error: cuda: out of memory (fake) at batch 2" >&2; exit 1 ;;
      partial-hang) printf '[\n'; obj "$model" 1 "$mode1"; hang "" ;;
      fail) echo "unetlab: error: bench: --device cuda: no CUDA device (fake)" >&2; exit 1 ;;
      hang|stuck) hang "" ;;
      crash) kill -SEGV $$ ;;
    esac ;;
  *) echo "fake: nothing to do for $key $*" >&2; exit 2 ;;
esac
exit 0
FAKE
  chmod +x "$f/unetlab"
  for t in test_cuda_ops test_cuda_libs test_cuda_cupti test_cuda_forward test_cuda_attn; do
    b=$(IFS=,; for kv in ${GPU_CHECK_FAKE:-}; do [ "${kv%%=*}" = $t ] && echo "${kv#*=}"; done)
    [ "${b%@*}" = missing ] || ln -s ../unetlab "$f/tests/$t"
  done
  export GC_SCALE_U=$scale_u
  bin="$f/unetlab"; tests="$f/tests"
}

# cuDNN, cuBLASLt or CUPTI elsewhere: PyTorch's wheels carry them, as
# nvidia/<lib>/lib (CUDA 12 wheels) or nvidia/cu13/lib (CUDA 13 wheels).
wheel_libs() {
  python3 - <<'EOF' 2>/dev/null
import glob, importlib, os, site
dirs = []
def add(d):
    if os.path.isdir(d) and d not in dirs: dirs.append(d)
for m in ("nvidia.cudnn", "nvidia.cublas", "nvidia.cuda_cupti", "nvidia.cu13"):
    try: paths = list(importlib.import_module(m).__path__)
    except Exception: continue
    for p in paths:
        for sub in ("lib", "lib64"): add(os.path.join(p, sub))
roots = []
try: roots += list(importlib.import_module("nvidia").__path__)
except Exception: pass
try: roots += [os.path.join(s, "nvidia") for s in site.getsitepackages() + [site.getusersitepackages()]]
except Exception: pass
for r in roots:
    for d in sorted(glob.glob(os.path.join(r, "*", "lib")) + glob.glob(os.path.join(r, "*", "lib64"))): add(d)
print(":".join(dirs))
EOF
}

card=; driver=; commit=
main() {
  stamp environment
  if [ "$dry" = 1 ]; then
    make_fake
    echo "dry run: stand-in $bin, GPU_CHECK_FAKE=${GPU_CHECK_FAKE:-} (all pass), scale $scale real s per budget s, budget $budget s"
  else
    local smi
    smi=$(timeout -k 5 20 nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem,memory.total --format=csv 2>&1)
    echo "$smi" | head -3
    if [ "$(echo "$smi" | head -1 | cut -d, -f1)" = name ]; then
      card=$(echo "$smi" | sed -n 2p | cut -d, -f1 | sed 's/^ *//; s/ *$//')
      driver=$(echo "$smi" | sed -n 2p | cut -d, -f2 | sed 's/^ *//; s/ *$//')
    fi
    if [ ! -x "$bin" ]; then row setup "$bin" MISSING "no binary: make gpu-bundle on the CPU machine, carry build/gpu/"
    else
      if ldd "$bin" | grep -q "not found"; then
        local extra; extra=$(wheel_libs)
        export LD_LIBRARY_PATH="${extra}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        echo "some libraries not on the rpath; LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
      fi
      ldd "$bin" | grep -E "cudnn|cublasLt|cupti|cjson|gomp|sqlite|not found" | sed 's/^/  /'
      if ldd "$bin" | grep -q "not found"; then row setup "shared libraries" FAIL "$(ldd "$bin" | grep "not found" | paste -sd' ')"; fi
    fi
  fi
  local v; v=$(timeout -k 5 20 "$bin" version 2>&1); echo "$v"
  commit=$(sed -nE 's/^unetlab [^ ]+ \(([^,;) ]+).*/\1/p' <<<"$v" | head -1)

  stamp "GPU tests (correctness first)"
  local t min max line skip spec first
  for spec in test_cuda_ops:15:90 test_cuda_libs:15:90 test_cuda_cupti:10:60 test_cuda_forward:30:120 test_cuda_attn:20:90; do
    IFS=: read -r t min max <<<"$spec"
    if [ ! -x "$tests/$t" ]; then row tests "$t" MISSING "not in $tests"; continue; fi
    step tests "$t" "$min" "$max" "$out/$t.txt" - "$tests/$t" || continue
    cat "$out/$t.txt"
    line=$(grep -E "^$t: [0-9]+ passed" "$out/$t.txt" | tail -1)
    skip=$(grep -E "^$t: skipped: " "$out/$t.txt" | head -1)
    if timed_out; then row tests "$t" TIMEOUT "$(killed_detail); last line: $(last_line "$out/$t.txt")"
    elif [ -n "$skip" ]; then row tests "$t" FAIL "skipped on the GPU machine (the GPU was not usable): ${skip#*: skipped: }"
    elif [ "$step_rc" -eq 0 ] && [ -n "$line" ]; then row tests "$t" PASS "${line#*: } in $step_s s"
    else
      first=$(grep -m1 "CHECK failed" "$out/$t.txt" | cut -c1-200)
      row tests "$t" FAIL "$(exit_detail)${line:+; ${line#*: }}${first:+; first failure: $first}; last line: $(last_line "$out/$t.txt")"
    fi
  done

  bench() { # MODEL MODES MIN LIMIT [--profile]: one process, one upload of the weights
    local f="$out/bench-$1" what="$1 $2 b1,2" args prof=${5:-}
    args=(bench --model "$1" --batch "1,2" --height 1024 --width 1024 --dtype fp16 --device cuda --warmup 5 --repeats 20
          --mode "$2" --format json)
    if [ -n "$prof" ]; then
      what+="; profile b2"
      rm -f "$out/profile.db" "$out/profile.db.gz" "$out/profile.json"
      args+=(--profile 2 --profile-repeats 10 --profile-out "$out/profile.json" --db "$out/profile.db")
    fi
    stamp "$1 (1024x1024, fp16, $2, batch 1 and 2${prof:+, then the CUPTI profile of batch 2})"
    step bench "$what" "$3" "$4" "$f.json" "$f.err" "$bin" "${args[@]}" || {
      [ -n "$prof" ] && row profile "sdxl-base b2 graph" SKIP "its step did not start"; return; }
    cat "$f.err"; echo "bench: $(grep -c '"ms_median"' "$f.json") batch size(s) measured: $f.json"
    local how
    if timed_out; then how="TIMEOUT"; row bench "$what" TIMEOUT "$(killed_detail)" "" "" "" "bench:$f.json"
    elif [ "$step_rc" -ne 0 ]; then how="FAIL"; row bench "$what" FAIL "$(exit_detail): $(last_line "$f.err")" "" "" "" "bench:$f.json"
    else how="PASS"; row bench "$what" PASS "exit 0 in $step_s s" "" "" "" "bench:$f.json"; fi
    [ -n "$prof" ] || return
    if [ -s "$out/profile.json" ]; then row profile "sdxl-base b2 graph" PASS "written in the bench process" "" "" "" "profile:$out/profile.json"
    elif [ "$how" = TIMEOUT ]; then row profile "sdxl-base b2 graph" TIMEOUT "not written before its process was killed ($(killed_detail))"
    else row profile "sdxl-base b2 graph" FAIL "not written: $(exit_detail): $(last_line "$f.err")"; fi
  }
  bench sdxl-base graph,eager 70 200 --profile
  bench ssd-1b graph 40 100
  bench segmind-vega graph 30 90
  [ -f "$out/profile.db" ] && gzip -9f "$out/profile.db"

  # what the run's numbers depend on: the card (nvidia-smi, else the tests'
  # device line), the CUDA runtime and cuDNN the tests and benches reported
  local said
  said=$(cat "$out"/test_cuda_*.txt "$out"/bench-*.json 2>/dev/null)
  [ -z "$card" ] && card=$(sed -nE 's/^(test_cuda_[a-z]+: (on )?|device: )(.+) \(sm_[0-9]+.*/\3/p' <<<"$said" | head -1)
  local runtime cudnn
  runtime=$(grep -oE 'runtime [0-9]+\.[0-9]+' <<<"$said" | head -1 | cut -d' ' -f2)
  cudnn=$(grep -oE 'cuDNN [0-9]+\.[0-9]+\.[0-9]+' <<<"$said" | head -1 | cut -d' ' -f2)

  stamp summary
  local elapsed=$(( $(nom_ms) / 1000 ))
  if [ "${GPU_CHECK_NO_PYTHON:-0}" != 1 ] && command -v python3 > /dev/null; then
    GC_CARD=$card GC_DRIVER=$driver GC_RUNTIME=$runtime GC_CUDNN=$cudnn GC_COMMIT=$commit GC_DATE=$date_iso \
    GC_BUDGET=$budget GC_ELAPSED=$elapsed GC_DRY=$dry GC_SCALE=$scale python3 - "$out" <<'EOF'
import json, os, re, sys
out = sys.argv[1]
env = lambda k: os.environ.get(k) or None
goals = {("sdxl-base", 1): 18.0, ("sdxl-base", 2): 30.0}
MEM_GOAL_GB = 7.0
# ../shared/reference/h100-pytorch.json (H100): graph replays; eager ranges as measured there (midpoint shown)
torch = {("sdxl-base", 1, "graph"): 27.3, ("sdxl-base", 2, "graph"): 43.5, ("sdxl-base", 1, "eager"): 58.0,
         ("sdxl-base", 2, "eager"): 60.5, ("ssd-1b", 1, "eager"): 34.0, ("ssd-1b", 2, "eager"): 37.5,
         ("segmind-vega", 1, "eager"): 22.0, ("segmind-vega", 2, "eager"): 24.5}

def bench_objects(path):
    """The objects of bench's JSON array; an array left open (the command was
    killed after printing some batch sizes) keeps the objects it completed."""
    try: text = open(path, errors="replace").read()
    except OSError: return []
    dec, i, objs = json.JSONDecoder(), 0, []
    i = text.find("[")
    if i < 0: return []
    i += 1
    while i < len(text):
        while i < len(text) and text[i] in " \t\r\n,": i += 1
        if i >= len(text) or text[i] == "]": break
        try: v, i = dec.raw_decode(text, i)
        except ValueError: break
        if isinstance(v, dict): objs.append(v)
    return objs

def num(x):
    try: return None if x is None or x == "" else float(x)
    except ValueError: return None

shell = []
for l in open(os.path.join(out, "rows.tsv"), errors="replace"):
    f = l.rstrip("\n").split("\t") + [""] * 8
    shell.append(f[:8])
rows, info = [], []
def add(sec, what, res, det, value=None, goal=None, ref=None):
    rows.append({"section": sec, "what": what, "result": res, "detail": det,
                 "value": None if value is None else round(value, 4), "goal": goal, "reference": ref})

benches = {}
for f in shell:
    if f[7].startswith("bench:"): benches[f[7]] = bench_objects(f[7][6:])
sd = {(b.get("batch"), b.get("mode")): b.get("ms_median") for v in benches.values() for b in v if b.get("model") == "sdxl-base"}

for sec, what, res, det, value, goal, ref, src in shell:
    add(sec, what, res, det, num(value), num(goal), num(ref))
    if sec == "tests" and what == "test_cuda_attn":  # each path timed on SDXL's shapes: which to keep
        try:
            for l in open(os.path.join(out, "test_cuda_attn.txt"), errors="replace"):
                m = re.match(r"^attn (\S+ B\d+ .*?): (.*)$", l.rstrip("\n"))
                if m: add("attn", m.group(1), "PASS", m.group(2))
        except OSError: pass
    kind, _, path = src.partition(":")
    if kind == "bench":
        got = benches[src]
        if res == "PASS" and not got: add("bench", what, "FAIL", "exit 0 but no result in %s" % os.path.basename(path))
        for b in got:
            try:
                m, n, mode = b["model"], b["batch"], b["mode"]
                mem = b.get("memory_bytes") or {}
                peak = (mem.get("weights", 0) + mem.get("activations_peak", 0) + mem.get("workspace", 0)) / 1e9
                held = (mem.get("weights", 0) + mem.get("activations_held", 0) + mem.get("workspace", 0)) / 1e9
                ms = b["ms_median"]
                det = "median %.2f ms (p10 %.2f, p90 %.2f), %.0f TFLOP/s%s" % (
                    ms, b["ms_p10"], b["ms_p90"], b.get("tflops", 0), "; UNSTABLE" if b.get("unstable") else "")
                if mem: det += "; memory peak %.2f GB, held %.2f GB, device %.2f GB" % (peak, held, mem.get("device_used", 0) / 1e9)
                if b.get("attention"): det += "; " + b["attention"]
                goal = goals.get((m, n)) if mode == "graph" else None
                if goal: det += "; goal <= %g ms: %s" % (goal, "MET" if ms <= goal else "not met")
                ref = torch.get((m, n, mode))
                if ref: det += "; PyTorch H100 %g ms (%.2fx)" % (ref, ref / ms)
                ratio = sd.get((n, mode))
                if ratio and m != "sdxl-base": det += "; SDXL/this %.2fx" % (ratio / ms)
                add("bench", "%s b%d %s" % (m, n, mode), "PASS", det, ms, goal, ref)
                if m == "sdxl-base" and n == 2 and mode == "graph" and mem:
                    add("bench", "%s b%d %s peak memory (GB)" % (m, n, mode), "PASS",
                        "weights + activations peak + workspace %.2f GB; goal <= %g GB: %s"
                        % (peak, MEM_GOAL_GB, "MET" if peak <= MEM_GOAL_GB else "not met"), peak, MEM_GOAL_GB, None)
            except (KeyError, TypeError, ZeroDivisionError) as e:
                add("bench", what, "FAIL", "unusable result in %s: %r" % (os.path.basename(path), e))
    elif kind == "profile":
        try:
            prof = json.load(open(path, errors="replace"))["profiles"][0]
            gap = 100 * prof["gap_ms"] / prof["forward_ms"]
            ovh = 100 * prof["overhead_ms"] / prof["untraced_ms"]
            add("profile", "sdxl-base b2 graph attribution gap (%)", "PASS" if abs(gap) <= 3 else "FAIL",
                "forward %.2f ms (CUDA events), modules %.2f ms (%s), gap %.2f%% (<= 3%%), kernels busy %.2f ms"
                % (prof["forward_ms"], prof["attributed_ms"], prof["engine"], gap, prof.get("kernels_busy_ms", 0)), gap, 3.0)
            add("profile", "sdxl-base b2 graph overhead (%)", "PASS" if ovh <= 3 else "FAIL",
                "untraced %.2f ms, traced %.2f ms: %+.2f%% (<= 3%%)" % (prof["untraced_ms"], prof["forward_ms"], ovh), ovh, 3.0)
            top = [m for m in prof.get("modules", []) if m["name"].count(".") <= 1 and not m["name"].endswith("_blocks")]
            for m in sorted(top, key=lambda m: -m["ms"])[:8]:
                info.append({"name": m["name"], "ms": m["ms"], "calls": m["calls"], "share": m["share"], "after": len(rows)})
        except Exception as e:
            add("profile", "sdxl-base b2 graph", "FAIL", "no usable profile.json: %r" % e)
def line(sec, what, res, det): print("%-8s %-38s %-7s %s" % (sec, what, res, det))
line("section", "what", "result", "detail")
for i, r in enumerate(rows):
    line(r["section"], r["what"], r["result"], r["detail"])
    for m in info:
        if m["after"] == i + 1:
            line("", "  " + m["name"], "", "%.3f ms, %d kernels, %.1f%%" % (m["ms"], m["calls"], 100 * m["share"]))
card = env("GC_CARD")
slug = re.sub(r"[^a-z0-9]+", "-", (card or "unknown-card").lower()).strip("-")
date = env("GC_DATE")
summary = {"card": card, "driver": env("GC_DRIVER"), "cuda_runtime": env("GC_RUNTIME"), "cudnn": env("GC_CUDNN"),
           "commit": env("GC_COMMIT"), "date": date, "budget_s": int(os.environ["GC_BUDGET"]),
           "elapsed_s": int(os.environ["GC_ELAPSED"]), "dry_run": os.environ.get("GC_DRY") == "1",
           "docs_name": "%s-%s.json" % (date[:16].replace(":", ""), slug),
           "rows": rows, "profile_top_modules": [{k: v for k, v in m.items() if k != "after"} for m in info]}
if summary["dry_run"]: summary["scale"] = float(os.environ["GC_SCALE"])
text = json.dumps(summary, indent=1) + "\n"
open(os.path.join(out, "summary.json"), "w").write(text)
docs = os.environ.get("GPU_CHECK_DOCS")
if docs:
    os.makedirs(docs, exist_ok=True)
    open(os.path.join(docs, summary["docs_name"]), "w").write(text)
    print("summary: %s and %s" % (os.path.join(out, "summary.json"), os.path.join(docs, summary["docs_name"])))
else:
    print("summary: %s" % os.path.join(out, "summary.json"))
sys.exit(1 if any(r["result"] in ("FAIL", "TIMEOUT", "MISSING") for r in rows) else 0)
EOF
    local rc=$?
  else
    summary_sh "$runtime" "$cudnn" "$elapsed"; local rc=$?
  fi
  echo "gpu-check: $(( $(nom_ms) / 1000 )) s$([ "$dry" = 1 ] && echo " (dry run)")"
  return $rc
}

# The summary without python3: the steps' rows (no per-batch numbers).
summary_sh() {
  js() { if [ -z "$1" ]; then printf null; else local s=${1//\\/\\\\}; printf '"%s"' "${s//\"/\\\"}"; fi; }
  jn() { if [[ $1 =~ ^-?[0-9]+(\.[0-9]+)?$ ]]; then printf '%s' "$1"; else printf null; fi; }
  local sec what res det value goal ref sep="" bad=0 slug docs_name
  printf '%-8s %-38s %-7s %s\n' section what result detail
  slug=$(tr '[:upper:]' '[:lower:]' <<<"${card:-unknown-card}" | sed -E 's/[^a-z0-9]+/-/g; s/^-//; s/-$//')
  docs_name="$(cut -c1-16 <<<"$date_iso" | tr -d :)-$slug.json"
  {
    printf '{\n "card": %s,\n "driver": %s,\n "cuda_runtime": %s,\n "cudnn": %s,\n "commit": %s,\n' \
      "$(js "$card")" "$(js "$driver")" "$(js "$1")" "$(js "$2")" "$(js "$commit")"
    printf ' "date": %s,\n "budget_s": %d,\n "elapsed_s": %d,\n "dry_run": %s,\n "docs_name": %s,\n "rows": [' \
      "$(js "$date_iso")" "$budget" "$3" "$([ "$dry" = 1 ] && echo true || echo false)" "$(js "$docs_name")"
    while IFS=$'\037' read -r sec what res det value goal ref _; do
      printf '%s\n  {"section": %s, "what": %s, "result": %s, "detail": %s, "value": %s, "goal": %s, "reference": %s}' \
        "$sep" "$(js "$sec")" "$(js "$what")" "$(js "$res")" "$(js "$det")" "$(jn "$value")" "$(jn "$goal")" "$(jn "$ref")"
      sep=,
    done < <(tr '\t' '\037' < "$rows") # not whitespace: empty fields stay fields
    printf '\n ],\n "profile_top_modules": []\n}\n'
  } > "$out/summary.json"
  while IFS=$'\037' read -r sec what res det _; do
    printf '%-8s %-38s %-7s %s\n' "$sec" "$what" "$res" "$det"
    case $res in FAIL|TIMEOUT|MISSING) bad=1 ;; esac
  done < <(tr '\t' '\037' < "$rows")
  if [ -n "${GPU_CHECK_DOCS:-}" ]; then
    mkdir -p "$GPU_CHECK_DOCS" && cp "$out/summary.json" "$GPU_CHECK_DOCS/$docs_name"
  fi
  echo "summary: $out/summary.json (without python3: the steps only, no per-batch numbers)"
  return $bad
}

main 2>&1 | tee "$out/log.txt"
exit "${PIPESTATUS[0]}"
