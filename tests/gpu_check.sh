#!/usr/bin/env bash
# gpu_check tests: scripts/gpu-check.sh in its dry run (a stand-in for the
# binary and the GPU tests, no GPU, about 20 s), in several scenarios: a test
# that hangs is a TIMEOUT (one that ignores SIGTERM too), one that says
# "skipped" on the GPU machine a FAIL, a step that does not fit in what the
# budget leaves a SKIP saying what it needs, a bench that fails or is killed
# after batch 1 keeps batch 1's row, summary.json parses and lists every row
# with its numbers, the exit status is nonzero when a row FAILed. Then the
# real binary (BIN, when built): bench --format json keeps the batch sizes
# measured before a failure, as one valid JSON array. Usage: tests/gpu_check.sh [BIN]
# shellcheck disable=SC2015 # `check && ok || bad`: ok always succeeds
set -u
BIN=${1:-build/unetlab}
SCRIPT=scripts/gpu-check.sh
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
PY=$(command -v python3 || true)

# scenario NAME [ENV=VALUE...] [-- ARGS...]: a dry run into $T/NAME; its exit status in $T/NAME.rc
scenario() {
  local name=$1 envs=() args=(); shift
  while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
  [ "${1:-}" = -- ] && { shift; args=("$@"); }
  env OUT="$T/$name" GPU_CHECK_DRY=1 GPU_CHECK_BUDGET=290 GPU_CHECK_SCALE=0.02 GPU_CHECK_FAKE= \
    GPU_CHECK_DOCS= GPU_CHECK_NO_PYTHON= "${envs[@]}" bash "$SCRIPT" "${args[@]}" > "$T/$name.out" 2>&1
  echo $? > "$T/$name.rc"
}
# row NAME SECTION WHAT RESULT [DETAIL-SUBSTRING]: that row is in the summary table
row() {
  local p; p=$(printf '%-8s %-38s %-7s ' "$2" "$3" "$4")
  if grep -F -- "$p" "$T/$1/log.txt" | grep -q -F -- "${5:-}"; then ok
  else bad "$1: no row '$2 | $3 | $4${5:+ | ...$5...}'; the table: $(sed -n '/^section /,$p' "$T/$1/log.txt" | cut -c1-120 | paste -sd'|')"; fi
}
norow() { # NAME SECTION WHAT: no such row
  local p; p=$(printf '%-8s %-38s ' "$2" "$3")
  if grep -q -F -- "$p" "$T/$1/log.txt"; then bad "$1: unexpected row '$2 | $3'"; else ok; fi
}
rc_is() { local rc; rc=$(cat "$T/$1.rc"); [ "$rc" = "$2" ] && ok || bad "$1: exit $rc, expected $2; output: $(tail -5 "$T/$1.out")"; }
# the table's rows (not the profile's module lines, not the header)
table_rows() { sed -n '/^section  *what  *result/,/^summary: /p' "$T/$1/log.txt" | cut -c49-55 | grep -c -E '^(PASS|FAIL|SKIP|TIMEOUT|MISSING)'; }
# js NAME PYTHON-EXPRESSION: true when the expression holds of d = summary.json (python3 only)
js() {
  local r
  r=$("$PY" -c 'import json, sys; d = json.load(open(sys.argv[1])); rows = d["rows"]
row = lambda w: [r for r in rows if r["what"] == w][0]
print("yes" if eval(sys.argv[2]) else "no")' "$T/$1/summary.json" "$2" 2>&1)
  [ "$r" = yes ] && ok || bad "$1: summary.json: $2: $r"
}
# summary.json is one JSON document listing every row of the table
json_ok() {
  local n; n=$(table_rows "$1")
  if [ -n "$PY" ]; then js "$1" "len(rows) == $n and all(set(r) == {'section', 'what', 'result', 'detail', 'value', 'goal', 'reference'} for r in rows)"
  elif command -v jq > /dev/null; then
    [ "$(jq '.rows | length' "$T/$1/summary.json" 2>&1)" = "$n" ] && ok || bad "$1: summary.json (jq): not $n rows"
  else
    [ "$(grep -c '"section": ' "$T/$1/summary.json")" -eq "$n" ] && ok || bad "$1: summary.json: not $n rows"
  fi
}

[ -f "$SCRIPT" ] || { echo "gpu_check: skipped: no $SCRIPT (run from the repository root)"; exit 0; }
bash -n "$SCRIPT" && ok || bad "bash -n $SCRIPT"
bash "$SCRIPT" --help | grep -q GPU_CHECK_FAKE && ok || bad "--help does not describe GPU_CHECK_FAKE"
bash "$SCRIPT" --frobnicate > /dev/null 2>&1; [ $? -eq 2 ] && ok || bad "an unknown option does not exit 2"

# --- mixed: a skipping test, two hanging tests, a failing test, SDXL's
# process failing at batch 2 (so no profile), SSD-1B hanging until what the
# budget leaves runs out, Vega not started
scenario mixed GPU_CHECK_FAKE="test_cuda_libs=skip,test_cuda_cupti=hang,test_cuda_forward=fail,test_cuda_attn=hang,bench.sdxl-base=partial@40,bench.ssd-1b=hang"
rc_is mixed 1
SD="sdxl-base graph,eager b1,2; profile b2"
row mixed tests test_cuda_ops PASS "42 passed, 0 failed"
row mixed tests test_cuda_libs FAIL "skipped on the GPU machine (the GPU was not usable): no CUDA device"
row mixed tests test_cuda_cupti TIMEOUT "killed after 60 s"
row mixed tests test_cuda_cupti TIMEOUT "last line: test_cuda_cupti: case attention fp16"
row mixed tests test_cuda_forward FAIL "exit 1; 40 passed, 2 failed; first failure: fake.c:1: CHECK failed: conv fp16 3x3"
row mixed tests test_cuda_attn TIMEOUT "killed after 90 s"
row mixed bench "$SD" FAIL "exit 1: unetlab: error: cuda: out of memory (fake) at batch 2"
row mixed bench "sdxl-base b1 graph" PASS "goal <= 18 ms: MET; PyTorch H100 27.3 ms"
norow mixed bench "sdxl-base b2 graph"
norow mixed bench "sdxl-base b1 eager"
row mixed profile "sdxl-base b2 graph" FAIL "not written: exit 1: unetlab: error: cuda: out of memory"
row mixed bench "ssd-1b graph b1,2" TIMEOUT "(its limit 100 s, cut to what the budget left)"
row mixed bench "segmind-vega graph b1,2" SKIP "needs 30 s, "
json_ok mixed
if [ -n "$PY" ]; then
  js mixed 'row("sdxl-base b1 graph")["value"] == 16 and row("sdxl-base b1 graph")["goal"] == 18 and row("sdxl-base b1 graph")["reference"] == 27.3'
  js mixed 'row("test_cuda_cupti")["result"] == "TIMEOUT" and row("test_cuda_libs")["result"] == "FAIL" and row("test_cuda_libs")["value"] is None'
  js mixed 'd["commit"] == "fake000-dirty" and d["card"] == "Fake H200" and d["driver"] is None and d["cuda_runtime"] == "13.0" and d["cudnn"] == "9.10.2"'
  js mixed '__import__("re").fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", d["date"]) and d["budget_s"] == 290 and 200 <= d["elapsed_s"] <= 290 and d["dry_run"]'
fi

# --- all pass, --dry-run given as an option, the summary copied to GPU_CHECK_DOCS
scenario pass GPU_CHECK_DRY=0 GPU_CHECK_DOCS="$T/docs" -- --dry-run
rc_is pass 0
if grep -E '^(tests|bench|profile|attn) ' "$T/pass/log.txt" | cut -c49-55 | grep -q -E '^(FAIL|SKIP|TIMEOUT|MISSING)'; then
  bad "pass: a row that is not PASS: $(grep -E '(FAIL|SKIP|TIMEOUT|MISSING) ' "$T/pass/log.txt" | head -3)"
else ok; fi
for w in test_cuda_ops test_cuda_libs test_cuda_cupti test_cuda_forward test_cuda_attn; do row pass tests $w PASS; done
for w in "$SD" "ssd-1b graph b1,2" "segmind-vega graph b1,2"; do row pass bench "$w" PASS "exit 0 in"; done
row pass attn "fp16 B2 Nq4096 Nk4096 h10 d64" PASS "cudnn 0.215 ms, mma 0.300 ms, flash 0.610 ms, plain 9.100 ms; auto picks cudnn"
row pass bench "sdxl-base b2 graph" PASS "goal <= 30 ms: MET; PyTorch H100 43.5 ms"
row pass bench "sdxl-base b2 eager" PASS "PyTorch H100 60.5 ms"
row pass bench "sdxl-base b1 graph" PASS "device 7.50 GB; attention: 4 shapes: cudnn 4"
row pass bench "sdxl-base b2 graph peak memory (GB)" PASS "goal <= 7 GB: MET"
row pass bench "ssd-1b b2 graph" PASS "SDXL/this 1.60x"
row pass bench "segmind-vega b2 graph" PASS "SDXL/this 2.67x"
row pass profile "sdxl-base b2 graph" PASS "written in the bench process"
row pass profile "sdxl-base b2 graph attribution gap (%)" PASS
row pass profile "sdxl-base b2 graph overhead (%)" PASS
[ -f "$T/pass/profile.db.gz" ] && ok || bad "pass: no profile.db.gz"
json_ok pass
if [ -n "$PY" ]; then
  js pass 'row("sdxl-base b2 graph")["value"] == 28.8 and row("sdxl-base b2 graph")["goal"] == 30 and row("sdxl-base b2 graph")["reference"] == 43.5'
  js pass 'row("sdxl-base b2 graph peak memory (GB)")["goal"] == 7 and 6.7 < row("sdxl-base b2 graph peak memory (GB)")["value"] < 6.9'
  js pass 'row("sdxl-base b2 graph overhead (%)")["goal"] == 3 and row("segmind-vega b2 graph")["value"] == 10.8'
  js pass 'd["docs_name"].endswith("-fake-h200.json") and d["profile_top_modules"][0]["name"] == "up_blocks.0"'
  js pass '[r["what"] for r in rows if r["section"] == "bench" and r["what"].startswith("sdxl-base b")][:5] == ["sdxl-base b1 graph", "sdxl-base b2 graph", "sdxl-base b2 graph peak memory (GB)", "sdxl-base b1 eager", "sdxl-base b2 eager"]'
fi
docs=$(ls "$T/docs" 2>/dev/null)
if [[ $docs == 20[0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9][0-9][0-9]-fake-h200.json ]] && cmp -s "$T/docs/$docs" "$T/pass/summary.json"; then ok
else bad "pass: GPU_CHECK_DOCS: expected DATE-fake-h200.json equal to summary.json, got '$docs'"; fi

# --- the profile fails inside SDXL's process: the benches printed before it
# are kept, the next models still run
scenario proffail GPU_CHECK_FAKE="profile=fail"
rc_is proffail 1
row proffail bench "$SD" FAIL "CUPTI_ERROR_INSUFFICIENT_PRIVILEGES"
row proffail profile "sdxl-base b2 graph" FAIL "not written: exit 1: unetlab: error: cupti: CUPTI_ERROR_INSUFFICIENT_PRIVILEGES"
row proffail bench "sdxl-base b2 graph" PASS "goal <= 30 ms"
row proffail bench "sdxl-base b1 eager" PASS
row proffail bench "ssd-1b graph b1,2" PASS
json_ok proffail

# --- a tight budget: a test that ignores SIGTERM, one that crashes, one
# missing, SDXL's process killed after batch 1 (its JSON array left open)
scenario tight GPU_CHECK_BUDGET=250 \
  GPU_CHECK_FAKE="test_cuda_ops=stuck,test_cuda_libs=crash,test_cuda_forward=missing,bench.sdxl-base=partial-hang"
rc_is tight 1
row tight tests test_cuda_ops TIMEOUT "ignored SIGTERM, SIGKILLed 10 s later"
row tight tests test_cuda_libs FAIL "exit 139 (signal SEGV); last line: test_cuda_libs: case groupnorm bf16"
row tight tests test_cuda_cupti PASS
row tight tests test_cuda_forward MISSING
row tight bench "$SD" TIMEOUT "cut to what the budget left"
row tight bench "sdxl-base b1 graph" PASS "median 16.00 ms"
row tight profile "sdxl-base b2 graph" TIMEOUT "not written before its process was killed"
row tight bench "ssd-1b graph b1,2" SKIP "needs 40 s, "
json_ok tight
[ -n "$PY" ] && js tight 'row("sdxl-base b1 graph")["value"] == 16 and row("test_cuda_forward")["result"] == "MISSING"'

# --- without python3: the steps' rows, still one JSON document; a FAIL still exits 1
scenario nopy GPU_CHECK_NO_PYTHON=1 GPU_CHECK_FAKE="profile=fail,bench.ssd-1b=pass@3"
rc_is nopy 1
row nopy profile "sdxl-base b2 graph" FAIL
row nopy bench "ssd-1b graph b1,2" PASS "exit 0 in"
json_ok nopy
[ -n "$PY" ] && js nopy 'len(rows) == 9 and d["commit"] == "fake000-dirty" and d["cudnn"] == "9.10.2" and rows[0]["value"] is None'
scenario nopy-pass GPU_CHECK_NO_PYTHON=1
rc_is nopy-pass 0

# --- the real binary: bench --format json prints each batch size when it is
# measured; a failure at batch 2 (out of memory under ulimit -v) keeps batch
# 1, the array closed, and exits 1
if [ -x "$BIN" ]; then
  bash -c "ulimit -v 1000000; OMP_NUM_THREADS=2 exec '$BIN' bench --model tests/fixtures/mini-ssd --height 128 --width 128 \
    --warmup 0 --repeats 1 --batch 1,800 --device cpu --format json" > "$T/bench.json" 2> "$T/bench.err"; rc=$?
  if [ ! -s "$T/bench.json" ] && ! grep -q "could not allocate" "$T/bench.err"; then
    echo "note: bench under ulimit -v printed nothing (exit $rc): $(tail -1 "$T/bench.err"); not counted"
  else
    [ $rc -eq 1 ] && grep -q "out of memory: could not allocate" "$T/bench.err" && ok \
      || bad "bench batch 1,800 under ulimit -v: exit $rc, expected 1 (out of memory): $(tail -1 "$T/bench.err")"
    if [ -n "$PY" ]; then
      r=$("$PY" -c 'import json, sys; d = json.load(open(sys.argv[1])); print([b["batch"] for b in d])' "$T/bench.json" 2>&1)
      [ "$r" = "[1]" ] && ok || bad "bench's JSON after a failure at batch 2: $r"
    else
      [ "$(grep -c '"ms_median"' "$T/bench.json")" -eq 1 ] && [ "$(tail -1 "$T/bench.json")" = "]" ] && ok \
        || bad "bench's JSON after a failure at batch 2: $(cat "$T/bench.json")"
    fi
  fi
else
  echo "note: no $BIN: the real bench's partial output not checked"
fi

echo "gpu_check: $pass passed, $fail failed"
[ $fail -eq 0 ]
