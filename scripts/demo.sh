#!/usr/bin/env bash
# make demo: the whole pipeline on built-in defaults, on the CPU, in about a minute.
# SDXL's module tree from the built-in preset (no download), then on the diffusers-made
# mini fixture (SDXL's topology, tests/fixtures/mini-public): candidates, layer losses of
# every candidate, a per-module profile, a removal schedule to half the parameters, the
# student exported as a diffusers checkpoint (checked against the plan bit for bit), and
# the report (plots and tables).
# Everything lands in build/demo/ (demo.db holds every number, with its provenance).
set -euo pipefail
B=${1:-build}
U=$B/unetlab
out=$B/demo
M=tests/fixtures/mini-public
rm -rf "$out"; mkdir -p "$out"
db=$out/demo.db
step() { printf '\n== %s\n' "$*"; }

step "1. SDXL base, SSD-1B, Segmind-Vega from the built-in presets: exact params and MACs (1024x1024, batch 1)"
for m in sdxl-base ssd-1b segmind-vega; do printf '%-14s' "$m"; "$U" inspect --model "$m" --format csv | grep '^(total)'; done
printf '%-14s' "plan ssd-1b"; "$U" inspect --model sdxl-base --plan plans/ssd-1b.json --format csv | grep '^(total)'

step "2. the teacher: $M (made by diffusers), top level"
"$U" inspect --model "$M" --depth 1

step "3. what can be removed"
"$U" candidates --model "$M" --format csv >"$out/candidates.csv"
tail -n +2 "$out/candidates.csv" | cut -d, -f2 | sort | uniq -c

step "4. layer losses of every candidate on the fixture's calibration inputs (top 8 of the ranking)"
"$U" eval --model "$M" --candidates all --calib "$M/io.safetensors" --db "$db" >"$out/eval.txt" 2>"$out/eval.log"
head -n 9 "$out/eval.txt"
tail -n 1 "$out/eval.log"

step "5. per-module latency on this machine (engine cpu)"
"$U" profile --model "$M" --db "$db" --depth 1 --repeats 3 >"$out/profile.txt" 2>/dev/null
tail -n 19 "$out/profile.txt"

step "6. removal schedule to half the parameters (loss per parameter saved)"
"$U" schedule --model "$M" --db "$db" --target-params 3858466 --synthetic 2 --latent 16 --tokens 8 \
  --plan-out "$out/half.json" 2>"$out/schedule.log"

step "7. the student as a diffusers checkpoint"
"$U" export --model "$M" --plan "$out/half.json" --out "$out/student" --dtype fp16
"$U" forward --device cpu --model "$out/student" --inputs "$M/io.safetensors" --out "$out/student-out.safetensors" 2>/dev/null >/dev/null
"$U" forward --device cpu --model "$M" --plan "$out/half.json" --inputs "$M/io.safetensors" --out "$out/plan-out.safetensors" 2>/dev/null >/dev/null
cmp -s "$out/student-out.safetensors" "$out/plan-out.safetensors" && echo "export check: the exported student's forward equals the plan's, bit for bit"

step "8. the report: plots, tables, index.html"
"$U" report --db "$db" --out "$out/report" 2>&1 | tail -n 2

step "where everything went"
echo "  $db                  every result with its provenance (unetlab db query --db $db 'SELECT ...')"
echo "  $out/half.json             the schedule's final plan"
echo "  $out/student/              config.json, diffusion_pytorch_model.safetensors, removal.json"
echo "  $out/report/index.html     every plot and table, with provenance"
echo "  $out/eval.txt, profile.txt, candidates.csv   the tables above, whole"
echo "  $out/eval.log, schedule.log  progress of the long steps"
