#!/usr/bin/env bash
# Runs every test program and the CLI tests of build dir $1, sums their
# "N passed, N failed" lines and prints the total last. Exit 1 on any failure.
set -u
build=${1:-build}
export UNETLAB="$build/unetlab"
pass=0; fail=0; broken=(); skipped=(); skipped_sh=()
for t in "$build"/tests/test_*; do
  [ -x "$t" ] || continue
  out=$("$t" 2>&1); rc=$?
  line=$(printf '%s\n' "$out" | grep -E '^[a-z_]+: [0-9]+ passed, [0-9]+ failed' | tail -n 1)
  skip=$(printf '%s\n' "$out" | grep -E '^[a-z_]+: skipped: ' | head -n 1)
  [ -n "$skip" ] && { skipped+=("$(basename "$t")"); printf '%s\n' "$skip"; }
  printf '%s\n' "${line:-$(basename "$t"): no result line (exit $rc)}"
  if [ -n "$line" ]; then
    p=$(sed -E 's/.*: ([0-9]+) passed.*/\1/' <<<"$line"); f=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$line")
    pass=$((pass + p)); fail=$((fail + f))
  fi
  if [ $rc -ne 0 ] || [ -z "$line" ]; then
    broken+=("$(basename "$t")"); printf '%s\n' "$out" | grep -v -E '^[a-z_]+: [0-9]+ passed' | tail -n 30
    [ -z "$line" ] && fail=$((fail + 1))
  fi
done
# the shell tests: their last line is "NAME: N passed, N failed" (or "NAME: skipped: why")
for sh in cli slurm gpu_check; do
  out=$(tests/$sh.sh "$build/unetlab" 2>&1); rc=$?
  line=$(printf '%s\n' "$out" | tail -n 1)
  printf '%s\n' "$line"
  if [[ $line == "$sh: skipped: "* ]] && [ $rc -eq 0 ]; then skipped_sh+=("$sh.sh"); continue; fi
  p=$(sed -nE 's/.*: ([0-9]+) passed.*/\1/p' <<<"$line"); f=$(sed -nE 's/.* ([0-9]+) failed.*/\1/p' <<<"$line")
  pass=$((pass + ${p:-0})); fail=$((fail + ${f:-1}))
  [ $rc -ne 0 ] && { broken+=("$sh.sh"); printf '%s\n' "$out" | grep -E '^(FAIL|---)' | head -40; }
done
echo
[ ${#skipped[@]} -gt 0 ] && echo "skipped (no GPU here): ${skipped[*]}"
[ ${#skipped_sh[@]} -gt 0 ] && echo "skipped (see their line above): ${skipped_sh[*]}"
[ ${#broken[@]} -gt 0 ] && echo "failing: ${broken[*]}"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ] && [ ${#broken[@]} -eq 0 ]
