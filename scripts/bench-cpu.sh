#!/usr/bin/env bash
# bench-cpu: unetlab's CPU forward side by side with PyTorch + diffusers
# (UNet2DConditionModel) on the same weights, the same inputs and the same
# threads, rounds alternating the two. A benchmark, never a test: not in CI;
# its table goes into docs/perf.md by hand. The machine should be otherwise
# idle: the CPU time other processes took during each timed process is
# recorded and shown. Run from anywhere; see --help.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYHALF=$ROOT/scripts/bench_torch.py
VENV=${BENCH_VENV:-/work/venv-bench}
BIN=$ROOT/build/unetlab
CACHE=$ROOT/build/bench-cpu
MODELS=sdxl-base,ssd-1b,segmind-vega
SIZES=256
DTYPES=fp32
THREADS=2
ROUNDS=3
WARMUP=1
BATCH=1
TOKENS=77
SEED=0
DEVICE=cpu
FORMAT=md
CHECK=1
TORCH_SPEC=${BENCH_TORCH_SPEC:-torch==2.15.0}

usage() {
    cat <<EOF
usage: scripts/bench-cpu.sh [options]
       scripts/bench-cpu.sh --setup [VENV]

Times unetlab's CPU forward against PyTorch + diffusers' UNet2DConditionModel on
the same weights (each preset exported once, seeded random, as a float32 diffusers
folder), the same inputs (one seeded file per shape, read by both: 'unetlab bench
--inputs') and the same thread count. Each round runs
'unetlab bench --warmup W --repeats 1' then 'bench_torch.py run --warmup W
--repeat 1' (fresh processes; each reports its timed forward, not its load).
Also measured in the same run: torch.matmul 2048^3 (fp32, and bf16 when asked),
best of 10, at the start and at the end; and, once per model and dtype, the
relative L2 of 'unetlab forward' against diffusers' float32 output on the inputs
file. Prints CPU model, uptime, date, commit, versions, then a markdown table
(one row per model, size, dtype and thread count) for docs/perf.md, or JSON.

  --models LIST    presets, comma-separated (default $MODELS)
  --sizes LIST     image pixels, N or HxW, comma-separated (default $SIZES; e.g. 256,512)
  --dtypes LIST    fp32, bf16 (default $DTYPES); on both sides
  --threads LIST   thread counts (default $THREADS): OMP_NUM_THREADS, torch.set_num_threads
  --rounds R       alternating rounds per case (default $ROUNDS)
  --warmup W       warm-up forwards before the timed one, each side (default $WARMUP)
  --batch B        (default $BATCH)
  --tokens L       text tokens (default $TOKENS)
  --seed S         weights and inputs seed (default $SEED)
  --device D       unetlab's CPU engine: cpu (fast, default) or ref (reference loops)
  --no-check       skip the output comparison
  --bin PATH       unetlab binary (default build/unetlab; copied into the run folder
                   with its libraries first, so a rebuild during the run does not mix)
  --venv DIR       Python venv with torch and diffusers (default \$BENCH_VENV or /work/venv-bench)
  --cache DIR      exported models, inputs and runs (default build/bench-cpu)
  --format F       md (default) or json, on stdout; progress and logs go to stderr
                   and to CACHE/runs/<stamp>/
  --setup [VENV]   make the venv (default as --venv) and exit: pip install --no-deps
                   \$BENCH_TORCH_SPEC (default $TORCH_SPEC) and torch's pure-Python
                   dependencies; if torch will not import without its nvidia-*
                   libraries, installs it with them (several GB); then diffusers,
                   safetensors, numpy, huggingface_hub
  -h, --help       this text

Example: scripts/bench-cpu.sh --models segmind-vega --sizes 256 --rounds 2
EOF
}

die() { echo "bench-cpu: $*" >&2; exit 1; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

setup_venv() {
    local v=$1
    command -v python3 >/dev/null || die "no python3 on PATH (needed to make the venv)"
    log "making venv $v with $TORCH_SPEC"
    python3 -m venv "$v"
    "$v/bin/pip" install --no-deps "$TORCH_SPEC"
    "$v/bin/pip" install filelock typing-extensions sympy networkx jinja2 fsspec mpmath markupsafe
    if "$v/bin/python" -c 'import torch; torch.randn(2,2) @ torch.randn(2,2)' 2>/dev/null; then
        echo "torch: installed with --no-deps (no nvidia-* wheels)" >"$v/bench-torch-install.txt"
    else
        log "torch does not import without its nvidia-* libraries: installing them (several GB)"
        "$v/bin/pip" install "$TORCH_SPEC"
        echo "torch: installed with its dependencies (nvidia-* wheels included): --no-deps would not import" >"$v/bench-torch-install.txt"
    fi
    "$v/bin/pip" install diffusers safetensors numpy huggingface_hub
    "$v/bin/python" -c 'import torch; from diffusers import UNet2DConditionModel; print(torch.randn(2,2) @ torch.randn(2,2))' >/dev/null ||
        die "venv $v: torch or diffusers does not import"
    "$v/bin/python" "$PYHALF" info
    cat "$v/bench-torch-install.txt"
}

while [ $# -gt 0 ]; do
    case $1 in
        -h|--help) usage; exit 0 ;;
        --setup)
            if [ $# -gt 1 ] && [ "${2#-}" = "$2" ]; then VENV=$2; fi
            setup_venv "$VENV"; exit 0 ;;
        --models|--sizes|--dtypes|--threads|--rounds|--warmup|--batch|--tokens|--seed|--device|--bin|--venv|--cache|--format)
            [ $# -gt 1 ] || die "option '$1' needs a value (see --help)"
            case $1 in
                --models) MODELS=$2 ;; --sizes) SIZES=$2 ;; --dtypes) DTYPES=$2 ;; --threads) THREADS=$2 ;;
                --rounds) ROUNDS=$2 ;; --warmup) WARMUP=$2 ;; --batch) BATCH=$2 ;; --tokens) TOKENS=$2 ;;
                --seed) SEED=$2 ;; --device) DEVICE=$2 ;; --bin) BIN=$2 ;; --venv) VENV=$2 ;;
                --cache) CACHE=$2 ;; --format) FORMAT=$2 ;;
            esac
            shift ;;
        --no-check) CHECK=0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
    shift
done

for n in "$ROUNDS" "$WARMUP" "$BATCH" "$TOKENS" "$SEED"; do
    [[ $n =~ ^[0-9]+$ ]] || die "'$n' is not a number"
done
[ "$ROUNDS" -ge 1 ] || die "--rounds must be at least 1"
case $FORMAT in md|json) ;; *) die "--format: '$FORMAT' is not md or json" ;; esac
case $DEVICE in cpu|ref) ;; *) die "--device: '$DEVICE' is not cpu or ref" ;; esac
IFS=, read -ra MODEL_L <<<"$MODELS"
IFS=, read -ra SIZE_L <<<"$SIZES"
IFS=, read -ra DTYPE_L <<<"$DTYPES"
IFS=, read -ra THREAD_L <<<"$THREADS"
for d in "${DTYPE_L[@]}"; do case $d in fp32|bf16) ;; *) die "--dtypes: '$d' is not fp32 or bf16" ;; esac; done
for t in "${THREAD_L[@]}"; do [[ $t =~ ^[1-9][0-9]*$ ]] || die "--threads: '$t' is not a positive number"; done
for s in "${SIZE_L[@]}"; do [[ $s =~ ^[0-9]+(x[0-9]+)?$ ]] || die "--sizes: '$s' is not N or HxW"; done

PY=$VENV/bin/python
[ -x "$PY" ] || die "no venv at $VENV (make it: scripts/bench-cpu.sh --setup $VENV)"
"$PY" -c 'import torch, diffusers, safetensors, numpy' 2>/dev/null ||
    die "venv $VENV cannot import torch, diffusers, safetensors and numpy (remake it: scripts/bench-cpu.sh --setup $VENV)"
[ -f "$PYHALF" ] || die "no $PYHALF"
[ -x "$BIN" ] || die "no unetlab binary at $BIN (build it: make build/unetlab)"

STAMP=$(date +%Y%m%d-%H%M%S)
RUN=$CACHE/runs/$STAMP
mkdir -p "$RUN/bin" "$RUN/raw" "$RUN/check" "$CACHE/models" "$CACHE/inputs"
LOGF=$RUN/log.txt
MAN=$RUN/manifest.tsv   # kind model height width dtype threads round file other-cpu-seconds
: >"$MAN"
# a snapshot of the binary and the libraries its RUNPATH ($ORIGIN) finds beside it
cp "$BIN" "$RUN/bin/unetlab"
for lib in "$(dirname "$BIN")"/lib*.so*; do [ -e "$lib" ] && cp "$lib" "$RUN/bin/"; done
U=$RUN/bin/unetlab
"$U" version >/dev/null 2>&1 || die "the unetlab binary at $BIN does not run ('$BIN version' failed)"
log "run folder $RUN (log: $LOGF)"

jget() { "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); d=d[0] if isinstance(d,list) else d; print(eval(sys.argv[2], {}, {"d": d}))' "$@"; }
man() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" "$OTHER" >>"$MAN"; }
OTHER=-
HZ=$(getconf CLK_TCK)
# CPU seconds that other processes (and the hypervisor, as steal) used while one
# timed process ran: the machine's busy time from /proc/stat minus the child's own
# (bash's `times`). Near 0 on an idle machine; large means the numbers are suspect.
busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
kids() { # the CPU seconds of this shell's waited-for children; `times` must run in this shell, not in $(...)
    times >"$RUN/.times"
    tail -1 "$RUN/.times" | sed 's/[ms]/ /g' | awk '{print $1 * 60 + $2 + $3 * 60 + $4}'
}
mark() { B0=$(busy); kids >"$RUN/.k0"; }
other() {
    local b1
    b1=$(busy); kids >"$RUN/.k1"
    OTHER=$(awk -v b0="$B0" -v b1="$b1" -v k0="$(cat "$RUN/.k0")" -v k1="$(cat "$RUN/.k1")" -v hz="$HZ" 'BEGIN {x = (b1 - b0) / hz - (k1 - k0); printf "%.2f", x < 0 ? 0 : x}')
}
runq() { # runq OUTFILE CMD...: stdout to OUTFILE, stderr to the log; die naming the command on failure
    local out=$1; shift
    echo "+ $*" >>"$LOGF"
    "$@" >"$out" 2>>"$LOGF" || die "failed (exit $?): $* (see $LOGF)"
}

# ---- the machine, the versions
{
    echo -e "date\t$(date -u +%Y-%m-%d\ %H:%M:%SZ)"
    echo -e "cpu\t$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo -e "nproc\t$(nproc)"
    echo -e "cpu_flags\t$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|fma|avx512f|avx512_bf16|amx_bf16|amx_tile)$' | tr '\n' ' ' | sed 's/ $//')"
    echo -e "mem\t$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo -e "uptime_start\t$(uptime)"
    echo -e "commit\t$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)"
    echo -e "unetlab\t$("$U" version 2>&1 | head -1)"
    echo -e "unetlab_sha256\t$(sha256sum "$U" | cut -c1-16)"
    echo -e "torch_install\t$(cat "$VENV/bench-torch-install.txt" 2>/dev/null || echo unknown)"
    echo -e "device\t$DEVICE"
    echo -e "rounds\t$ROUNDS"
    echo -e "warmup\t$WARMUP"
    echo -e "batch\t$BATCH"
    echo -e "tokens\t$TOKENS"
    echo -e "seed\t$SEED"
} >"$RUN/meta.tsv"
runq "$RUN/raw/torch-info.json" "$PY" "$PYHALF" info
man info - - - - - - "$RUN/raw/torch-info.json"
while IFS=$'\t' read -r k v; do case $k in cpu|uptime_start|commit|unetlab|torch_install) log "$k: $v" ;; esac; done <"$RUN/meta.tsv"

gemm() { # gemm start|end
    for t in "${THREAD_L[@]}"; do
        for d in fp32 $(printf '%s\n' "${DTYPE_L[@]}" | grep -x bf16 || true); do
            local f=$RUN/raw/gemm-$1-$d-t$t.json
            mark
            OMP_NUM_THREADS=$t MKL_NUM_THREADS=$t runq "$f" "$PY" "$PYHALF" gemm --threads "$t" --dtype "$d"
            other
            man "gemm-$1" - - - "$d" "$t" - "$f"
            OTHER=-
            log "GEMM 2048^3 $d, $t threads ($1): $(jget "$f" 'round(d["gflops"], 1)') GFLOP/s"
        done
        local g=$RUN/raw/dgemm-$1-t$t.json # the same through oneDNN, the library unetlab's engine uses
        mark
        OMP_NUM_THREADS=$t runq "$g" "$GEMMRATE" 2048 10
        other
        man "dgemm-$1" - - - - "$t" - "$g"
        OTHER=-
        log "oneDNN GEMM 2048^3, $t threads ($1): fp32 $(jget "$g" 'd["fp32_gflops"]'), bf16 $(jget "$g" 'd["bf16_gflops"]') GFLOP/s ($(jget "$g" 'd["bf16_impl"]'))"
    done
}
GEMMRATE=$ROOT/build/tools/gemm-rate
[ -x "$GEMMRATE" ] || make -C "$ROOT" --no-print-directory build/tools/gemm-rate >&2 || die "cannot build build/tools/gemm-rate (make build/tools/gemm-rate)"
gemm start

for m in "${MODEL_L[@]}"; do
    # ---- the model: exported once, seeded random float32 weights, as a diffusers folder
    dir=$CACHE/models/$m-seed$SEED
    if [ ! -f "$dir/.complete" ]; then
        log "$m: exporting the preset (seed $SEED, fp32) to $dir"
        rm -rf "$dir" "$dir.tmp"
        printf '{"format": "unetlab-plan", "version": 1, "teacher": "%s", "remove": []}\n' "$m" >"$CACHE/models/$m.noop-plan.json"
        runq "$RUN/raw/export-$m.txt" "$U" export --model "$m" --plan "$CACHE/models/$m.noop-plan.json" --out "$dir.tmp" --dtype fp32 --seed "$SEED"
        mv "$dir.tmp" "$dir"
        touch "$dir/.complete"
    fi
    first=1
    for s in "${SIZE_L[@]}"; do
        h=${s%x*}; w=${s#*x}
        inp=$CACHE/inputs/$m-b$BATCH-${h}x$w-t$TOKENS-s$SEED.safetensors
        if [ ! -f "$inp" ]; then
            runq "$RUN/raw/inputs-$m-${h}x$w.json" "$PY" "$PYHALF" inputs --model "$dir" --out "$inp.tmp" --batch "$BATCH" --height "$h" --width "$w" --tokens "$TOKENS" --seed "$SEED"
            mv "$inp.tmp" "$inp"
        fi
        insp=$RUN/raw/inspect-$m-${h}x$w.json
        runq "$insp" "$U" inspect --model "$dir" --batch "$BATCH" --height "$h" --width "$w" --tokens "$TOKENS" --format json
        man inspect "$m" "$h" "$w" - - - "$insp"
        if [ $first = 1 ]; then # unetlab's CPU engine held about 2 x the fp32 weights (Vega: 5.8 GiB anonymous)
            need=$(jget "$insp" 'int(d["total_params"] * 4 * 2.2 / 2**20)')
            avail=$(awk '/MemAvailable/ {print int($2 / 1024)}' /proc/meminfo)
            [ "$need" -lt "$avail" ] || log "warning: $m may not fit: unetlab's CPU engine needs about $need MiB (2 x fp32 weights), $avail MiB available"
        fi

        # ---- once per model (its first size) and dtype: do the two outputs agree?
        if [ "$CHECK" = 1 ] && [ $first = 1 ]; then
            t=${THREAD_L[0]}
            ref=$RUN/check/$m-${h}x$w-torch-fp32.safetensors
            log "$m ${h}x$w: check: torch fp32 forward"
            OMP_NUM_THREADS=$t MKL_NUM_THREADS=$t runq "$RUN/raw/check-$m-torch-fp32.json" "$PY" "$PYHALF" run --model "$dir" --inputs "$inp" --dtype fp32 --threads "$t" --warmup 0 --repeat 1 --out "$ref"
            for d in "${DTYPE_L[@]}"; do
                uo=$RUN/check/$m-${h}x$w-unetlab-$d.safetensors
                log "$m ${h}x$w: check: unetlab forward $d"
                OMP_NUM_THREADS=$t runq "$RUN/raw/check-$m-unetlab-$d.txt" "$U" forward --model "$dir" --inputs "$inp" --out "$uo" --device "$DEVICE" --dtype "$d"
                f=$RUN/raw/check-$m-$d-unetlab-vs-torch-fp32.json
                runq "$f" "$PY" "$PYHALF" compare "$uo" "$ref"
                man check-unetlab "$m" "$h" "$w" "$d" "$t" - "$f"
                log "$m ${h}x$w $d: relative L2 of unetlab ($d) vs torch fp32: $(jget "$f" '"%.3g" % d["rel_l2"]')"
                if [ "$d" != fp32 ]; then
                    to=$RUN/check/$m-${h}x$w-torch-$d.safetensors
                    OMP_NUM_THREADS=$t MKL_NUM_THREADS=$t runq "$RUN/raw/check-$m-torch-$d.json" "$PY" "$PYHALF" run --model "$dir" --inputs "$inp" --dtype "$d" --threads "$t" --warmup 0 --repeat 1 --out "$to"
                    f=$RUN/raw/check-$m-$d-torch-vs-torch-fp32.json
                    runq "$f" "$PY" "$PYHALF" compare "$to" "$ref"
                    man check-torch "$m" "$h" "$w" "$d" "$t" - "$f"
                    log "$m ${h}x$w $d: relative L2 of torch ($d) vs torch fp32: $(jget "$f" '"%.3g" % d["rel_l2"]')"
                fi
            done
        fi
        first=0

        # ---- the rounds: unetlab, then torch, R times
        for d in "${DTYPE_L[@]}"; do
            for t in "${THREAD_L[@]}"; do
                for ((r = 1; r <= ROUNDS; r++)); do
                    fu=$RUN/raw/$m-${h}x$w-$d-t$t-r$r-unetlab.json
                    mark
                    OMP_NUM_THREADS=$t runq "$fu" "$U" bench --model "$dir" --device "$DEVICE" --dtype "$d" --inputs "$inp" \
                        --warmup "$WARMUP" --repeats 1 --format json
                    other
                    man unetlab "$m" "$h" "$w" "$d" "$t" "$r" "$fu"
                    ou=$OTHER
                    ft=$RUN/raw/$m-${h}x$w-$d-t$t-r$r-torch.json
                    mark
                    OMP_NUM_THREADS=$t MKL_NUM_THREADS=$t runq "$ft" "$PY" "$PYHALF" run --model "$dir" --inputs "$inp" \
                        --dtype "$d" --threads "$t" --warmup "$WARMUP" --repeat 1
                    other
                    man torch "$m" "$h" "$w" "$d" "$t" "$r" "$ft"
                    log "$m ${h}x$w $d ${t}t round $r/$ROUNDS: unetlab $(jget "$fu" '"%.3f" % (d["ms_median"] / 1e3)') s, torch $(jget "$ft" '"%.3f" % d["median_s"]') s (CPU s taken by others meanwhile: $ou, $OTHER)"
                    if awk -v a="$ou" -v b="$OTHER" 'BEGIN {exit !(a > 1 || b > 1)}'; then
                        log "warning: other processes used the CPUs during this round: its times are suspect"
                    fi
                    OTHER=-
                done
            done
        done
    done
done

gemm end
echo -e "uptime_end\t$(uptime)" >>"$RUN/meta.tsv"
"$PY" "$PYHALF" report --run "$RUN" --format "$FORMAT" | tee "$RUN/report.$FORMAT"
log "done: $RUN/report.$FORMAT"
