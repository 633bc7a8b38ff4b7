#!/bin/bash
# Sharded `unetlab eval` as a Slurm job array: array task I of N scores the
# candidates I, I+N, I+2N, ... into OUTDIR/shard-I.db; once every task is
# done, `unetlab db merge` joins the shards into one DB equal to an unsharded
# run. The README's recipe; tests/slurm.sh runs it on a one-node cluster.
#
#   jid=$(sbatch --parsable --array=0-7 scripts/slurm-eval.sh OUTDIR \
#         --model /ckpt/sdxl-base --candidates all --calib calib.safetensors)
#   sbatch --dependency=afterok:$jid --wrap "unetlab db merge OUTDIR/shard-*.db -o OUTDIR/all.db"
#
# The array must be 0..N-1 (the task id is the shard). Every argument after
# OUTDIR goes to `unetlab eval` (not --shard or --db: the script sets them).
# Threads: OMP_NUM_THREADS, else --cpus-per-task, else 1. $UNETLAB names the
# binary (default: unetlab on PATH). Each task's DB is its own: a task that
# dies loses nothing stored; resubmitting the array finishes what is left.
#SBATCH --job-name=unetlab-eval
#SBATCH --output=%x-%A_%a.out
set -euo pipefail
if [ $# -lt 1 ] || [ -z "${SLURM_ARRAY_TASK_ID:-}" ] || [ -z "${SLURM_ARRAY_TASK_COUNT:-}" ]; then
  echo "slurm-eval.sh: submit as: sbatch --array=0-(N-1) $0 OUTDIR EVAL-ARGS..." >&2
  exit 2
fi
out=$1
shift
i=$SLURM_ARRAY_TASK_ID n=$SLURM_ARRAY_TASK_COUNT
if [ "$i" -ge "$n" ]; then
  echo "slurm-eval.sh: array task $i of $n: the array must be 0-$((n - 1))" >&2
  exit 2
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}
mkdir -p "$out"
exec "${UNETLAB:-unetlab}" eval "$@" --shard "$i/$n" --db "$out/shard-$i.db"
