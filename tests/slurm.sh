#!/usr/bin/env bash
# The README's Slurm recipe, run for real: starts a one-node cluster on this
# machine (munged on a private socket, slurmctld and slurmd with a config
# written here, on ports of their own; all stopped and removed at the end),
# submits scripts/slurm-eval.sh as a 3-task array on the mini fixture, merges
# the shard DBs and checks that every stored result equals one unsharded run.
#   tests/slurm.sh [BIN]      (BIN: the unetlab binary, default build/unetlab)
# Needs root and Debian's slurm-wlm and munge (.ci/run installs them); where
# it cannot run it says why in one line, "slurm: skipped: ...", and passes.
set -u
BIN=$(realpath "${1:-build/unetlab}")
cd "$(dirname "$0")/.."
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
skip() { echo "slurm: skipped: $*"; exit 0; }

[ "$(id -u)" = 0 ] || skip "not root (slurmd runs jobs as their user; the test starts its own daemons as root)"
for c in munged slurmctld slurmd sbatch squeue sinfo; do
  command -v "$c" >/dev/null || skip "'$c' not found (apt-get install slurm-wlm munge)"
done

T=$(mktemp -d /tmp/unetlab-slurm.XXXXXX)
chmod 755 "$T"
cleanup() {
  for p in slurmd slurmctld munged; do
    [ -s "$T/run/$p.pid" ] && kill "$(cat "$T/run/$p.pid")" 2>/dev/null
  done
  sleep 1
  rm -rf "$T"
}
trap cleanup EXIT
mkdir -p "$T/state" "$T/spool" "$T/log" "$T/run" "$T/m"
chmod 711 "$T/m"
head -c 1024 /dev/urandom > "$T/munge.key"
chmod 600 "$T/munge.key"
port=$((20000 + RANDOM % 20000))
host=$(hostname -s)
cat > "$T/slurm.conf" <<EOF
ClusterName=unetlab-test
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$T/m/munge.sock
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/run/slurmctld.pid
SlurmdPidFile=$T/run/slurmd.pid
SlurmctldLogFile=$T/log/slurmctld.log
SlurmdLogFile=$T/log/slurmd.log
SlurmctldPort=$port
SlurmdPort=$((port + 1))
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$T/slurm.conf
munged --force -S "$T/m/munge.sock" --key-file="$T/munge.key" --log-file="$T/log/munged.log" \
  --pid-file="$T/run/munged.pid" --seed-file="$T/m/seed" 2>"$T/log/munged.err" \
  || skip "munged did not start: $(tail -n 1 "$T/log/munged.err")"
slurmctld 2>"$T/log/slurmctld.err" || skip "slurmctld did not start: $(tail -n 1 "$T/log/slurmctld.err")"
slurmd 2>"$T/log/slurmd.err" || skip "slurmd did not start: $(tail -n 1 "$T/log/slurmd.err")"
up=0
for _ in $(seq 60); do
  sinfo -h -o %t 2>/dev/null | grep -qx idle && { up=1; break; }
  sleep 0.5
done
[ $up = 1 ] || skip "the node did not come up idle within 30 s: $(sinfo -h -o '%t %E' 2>&1 | head -n 1)"

# the recipe: an array of 3 shards, then the merge
FX=tests/fixtures/mini-public
ARGS=(--model "$FX" --candidates all --synthetic 4 --latent 8 --tokens 4)
jid=$(UNETLAB=$BIN sbatch --parsable --array=0-2 -o "$T/task-%a.out" scripts/slurm-eval.sh "$T/shards" "${ARGS[@]}" 2>"$T/sbatch.err")
[ -n "$jid" ] && ok || bad "sbatch: $(cat "$T/sbatch.err")"
for _ in $(seq 600); do
  [ -z "$(squeue -h -j "$jid" 2>/dev/null)" ] && break
  sleep 0.5
done
[ -z "$(squeue -h -j "$jid" 2>/dev/null)" ] && ok || bad "the array did not finish within 300 s: $(squeue -h -j "$jid")"
for i in 0 1 2; do
  [ -s "$T/shards/shard-$i.db" ] && ok || bad "task $i wrote no DB: $(tail -n 3 "$T/task-$i.out" 2>/dev/null)"
done
"$BIN" db merge "$T"/shards/shard-*.db -o "$T/merged.db" >/dev/null 2>"$T/merge.err" && ok || bad "merge: $(cat "$T/merge.err")"
"$BIN" eval "${ARGS[@]}" --db "$T/one.db" >/dev/null 2>"$T/one.err" && ok || bad "unsharded eval: $(tail -n 1 "$T/one.err")"

# every result of the merged DB equals the unsharded run's, by the students' plan hash
Q="SELECT p.plan_hash, r.point, r.sample, r.timestep, r.metric, r.value FROM eval_results r
   JOIN eval_jobs j ON j.id = r.job_id JOIN plans p ON p.id = j.plan_id WHERE j.status = 'done' ORDER BY 1, 2, 3, 5"
"$BIN" db query --db "$T/merged.db" --format csv "$Q" > "$T/merged.csv" 2>&1
"$BIN" db query --db "$T/one.db" --format csv "$Q" > "$T/one.csv" 2>&1
n=$(($(wc -l < "$T/one.csv") - 1))
[ "$n" -gt 1000 ] && ok || bad "the unsharded run stored $n results"
cmp -s "$T/merged.csv" "$T/one.csv" && ok || bad "merged shards differ from one run: $(diff "$T/merged.csv" "$T/one.csv" | head -n 4)"
tasks=$("$BIN" db query --db "$T/merged.db" --format csv "SELECT count(*) FROM runs WHERE command_line LIKE '%--shard%'" | tail -n 1)
[ "$tasks" = 3 ] && ok || bad "the merged DB holds $tasks shard runs, not 3"
grep -q "slurm-eval.sh" README.md && ok || bad "README.md does not show scripts/slurm-eval.sh"

echo "slurm: $pass passed, $fail failed ($n results of 3 shards compared with one run)"
[ "$fail" -eq 0 ]
