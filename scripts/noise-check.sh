#!/usr/bin/env bash
# noise-check: do unetlab's timings survive a busy machine? Runs the same two
# measurements twice, first on the quiet machine, then with NEIGHBOURS busy
# processes (pure CPU spinners, started and stopped by this script, each
# bounded by `timeout`):
#   1. profile --compare sdxl-base,ssd-1b,segmind-vega (the models take turns
#      within each repeat): the speed ratios SDXL:SSD-1B and SDXL:Vega;
#   2. profile of sdxl-base with the student of plans/ssd-1b.json: the tracing
#      overhead (traced vs untraced forward) and the student's prediction
#      error (teacher minus removed modules vs measured);
# and prints both runs side by side with the noise unetlab measured (others'
# share of the CPUs, p90/p10) and whether it marked the rows unstable.
# A benchmark, never a test: results go into docs/perf.md by hand. Needs
# python3 (to read the JSON) and ~20 GB of memory (the three models' fp32
# weights are held together so that they can take turns).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/build/unetlab
SIZE=128
REPEATS=5
NEIGHBOURS=2
OUT=
DB=

usage() {
    cat <<EOF
usage: scripts/noise-check.sh [--size PX] [--repeats R] [--neighbours N] [--bin UNETLAB] [--out FILE] [--db DB]

Quiet run, then the same with N busy neighbour processes (default 2, on a 2-core
machine: as many as it has cores); prints the SDXL:SSD-1B and SDXL:Vega speed
ratios, the tracing overhead and the student's prediction error of both, and the
noise unetlab recorded. --out FILE also writes the table there (Markdown); --db DB
also stores the quiet run's comparison there (for `unetlab report`).
Defaults: --size 128 (px), --repeats 5, --bin build/unetlab.
EOF
}

while [ $# -gt 0 ]; do
    case $1 in
    --size) SIZE=$2; shift 2 ;;
    --repeats) REPEATS=$2; shift 2 ;;
    --neighbours) NEIGHBOURS=$2; shift 2 ;;
    --bin) BIN=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --db) DB=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "noise-check: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done
[ -x "$BIN" ] || { echo "noise-check: no unetlab binary at '$BIN' (run make)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "noise-check: python3 is needed to read the JSON" >&2; exit 2; }

TMP=$(mktemp -d /tmp/noise-check.XXXXXX)
PIDS=()
stop_neighbours() {
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    PIDS=()
}
trap 'stop_neighbours; rm -rf "$TMP"' EXIT

measure() { # $1: label (quiet|loaded)
    local l=$1
    echo "noise-check: $l: profile --compare sdxl-base,ssd-1b,segmind-vega at ${SIZE}px, $REPEATS repeats" >&2
    local store=()
    [ "$l" = quiet ] && [ -n "$DB" ] && store=(--db "$DB")
    "$BIN" profile --compare sdxl-base,ssd-1b,segmind-vega --height "$SIZE" --width "$SIZE" --repeats "$REPEATS" \
        "${store[@]}" --format json >"$TMP/$l-compare.json" 2>"$TMP/$l-compare.err"
    echo "noise-check: $l: profile sdxl-base with the student of plans/ssd-1b.json" >&2
    "$BIN" profile --model sdxl-base --plan "$ROOT/plans/ssd-1b.json" --height "$SIZE" --width "$SIZE" \
        --repeats "$REPEATS" --format json >"$TMP/$l-student.json" 2>"$TMP/$l-student.err"
    grep -h '^unetlab: warning' "$TMP/$l-compare.err" "$TMP/$l-student.err" >&2 || true
}

START=$(date -u +%Y-%m-%dT%H:%M:%SZ)
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
UPTIME_BEFORE=$(uptime)
measure quiet
for i in $(seq 1 "$NEIGHBOURS"); do
    timeout 3600 sh -c 'while :; do :; done' &
    PIDS+=($!)
done
sleep 2
measure loaded
stop_neighbours

python3 - "$TMP" "$NEIGHBOURS" "$SIZE" "$REPEATS" "$CPU" "$START" "$UPTIME_BEFORE" "$(nproc)" "${OUT:-}" <<'EOF'
import json, sys
tmp, nb, size, rep, cpu, start, up, ncpu, out = sys.argv[1:10]
def load(l):
    c = json.load(open(f"{tmp}/{l}-compare.json"))["profiles"]
    s = json.load(open(f"{tmp}/{l}-student.json"))["profiles"][0]
    ms = {p["model"]: p["untraced_ms"] for p in c}
    return {
        "sdxl_ssd": ms["sdxl-base"] / ms["ssd-1b"], "sdxl_vega": ms["sdxl-base"] / ms["segmind-vega"],
        "ms": ms, # as profile prints them: the student's traced forward against its untraced one and its prediction
        "overhead": 100 * s["overhead_ms"] / s["untraced_ms"],
        "error": 100 * (s["predicted_ms"] - s["forward_ms"]) / s["forward_ms"],
        "cmp_load": c[0]["others_load"], "cmp_spread": c[0]["spread"], "cmp_unstable": c[0]["unstable"],
        "st_load": s["others_load"], "st_spread": s["spread"], "st_unstable": s["unstable"],
    }
q, l = load("quiet"), load("loaded")
def pct(a, b): return f"{100 * (b - a) / a:+.1f}%"
rows = [
    ("SDXL:SSD-1B speed (untraced)", f"{q['sdxl_ssd']:.3f}x", f"{l['sdxl_ssd']:.3f}x", pct(q['sdxl_ssd'], l['sdxl_ssd']) + " (goal within 10%)"),
    ("SDXL:Vega speed (untraced)", f"{q['sdxl_vega']:.3f}x", f"{l['sdxl_vega']:.3f}x", pct(q['sdxl_vega'], l['sdxl_vega']) + " (goal within 10%)"),
    ("sdxl-base ms (untraced)", f"{q['ms']['sdxl-base']:.1f}", f"{l['ms']['sdxl-base']:.1f}", pct(q['ms']['sdxl-base'], l['ms']['sdxl-base'])),
    ("compare: others' load, p90/p10", f"{100*q['cmp_load']:.0f}%, {q['cmp_spread']:.2f}", f"{100*l['cmp_load']:.0f}%, {l['cmp_spread']:.2f}", ""),
    ("compare: marked unstable", str(q['cmp_unstable']).lower(), str(l['cmp_unstable']).lower(), ""),
    ("tracing overhead (student run)", f"{q['overhead']:+.2f}%", f"{l['overhead']:+.2f}%", "goal within 3 points"),
    ("student prediction error", f"{q['error']:+.2f}%", f"{l['error']:+.2f}%", "goal within 5 points"),
    ("student run: others' load, p90/p10", f"{100*q['st_load']:.0f}%, {q['st_spread']:.2f}", f"{100*l['st_load']:.0f}%, {l['st_spread']:.2f}", ""),
    ("student run: marked unstable", str(q['st_unstable']).lower(), str(l['st_unstable']).lower(), ""),
]
lines = [f"noise-check {start}: {cpu}, {ncpu} CPUs; {size}x{size} px, {rep} repeats; loaded = {nb} busy neighbours",
         f"uptime before: {up.strip()}", "",
         f"| measurement | quiet | loaded ({nb} neighbours) | change |", "|---|---|---|---|"]
lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
print("\n".join(lines))
if out:
    open(out, "w").write("\n".join(lines) + "\n")
EOF
