#!/usr/bin/env bash
# The worked example of `unetlab agree` (issue 16, docs/agree.md): the same
# candidates scored under cheap and dearer settings, then compared.
#   scripts/agree-example.sh [--unetlab BIN] [--out DIR] [--sdxl]
# Minis (seconds): mini-public and mini-ssd, every candidate, at 64 and 128 px,
# 4 and 16 synthetic samples, fp32 and bf16, a 4-stage schedule; then agree
# and report per model. --sdxl adds sdxl-base (preset weights; ~1 h on 2
# cores, 11 GB): 256 px with 2 samples in fp32 and bf16, 8 samples, 512 px
# with 2 samples, and a 4-stage schedule. Each model gets DIR/MODEL.db,
# DIR/MODEL-agree.txt and .json, and DIR/MODEL-report/. Logs: DIR/log.
set -euo pipefail
U=build/unetlab
OUT=build/agree-example
SDXL=0
while [ $# -gt 0 ]; do
  case "$1" in
    --unetlab) U=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --sdxl) SDXL=1; shift ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "agree-example.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUT"
log() { echo "$(date -u +%FT%TZ) $*" | tee -a "$OUT/log"; }
log "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), $(nproc) CPUs; uptime: $(uptime)"
log "unetlab: $("$U" --version 2>&1 | head -1)"

# eval MODEL DB ARGS...: every candidate under one setting
ev() { local m=$1 db=$2; shift 2; log "eval $m $*"; "$U" eval --model "$m" --candidates all --db "$db" "$@" >>"$OUT/log" 2>&1; }

finish() { # agree and report of one model's DB
  local name=$1 db=$2
  log "agree $name"
  "$U" agree --db "$db" --no-store --format json >"$OUT/$name-agree.json"
  "$U" agree --db "$db" | tee "$OUT/$name-agree.txt"
  "$U" report --db "$db" --out "$OUT/$name-report" >>"$OUT/log" 2>&1 || log "report $name: exit $?"
}

for m in mini-public mini-ssd; do
  F=tests/fixtures/$m DB=$OUT/$m.db
  rm -f "$DB" "$DB"-*
  S="--tokens 8"
  ev "$F" "$DB" --synthetic 4 --latent 8 $S
  ev "$F" "$DB" --synthetic 4 --latent 8 $S --dtype bf16
  ev "$F" "$DB" --synthetic 16 --latent 8 $S
  ev "$F" "$DB" --synthetic 4 --latent 16 $S
  log "schedule $m"
  "$U" schedule --model "$F" --db "$DB" --synthetic 4 --latent 8 $S --stages 4 >>"$OUT/log" 2>&1
  finish "$m" "$DB"
done

if [ "$SDXL" = 1 ]; then
  DB=$OUT/sdxl-base.db
  ev sdxl-base "$DB" --synthetic 2 --latent 32
  ev sdxl-base "$DB" --synthetic 2 --latent 32 --dtype bf16
  ev sdxl-base "$DB" --synthetic 8 --latent 32
  log "schedule sdxl-base"
  "$U" schedule --model sdxl-base --db "$DB" --synthetic 2 --latent 32 --stages 4 >>"$OUT/log" 2>&1
  ev sdxl-base "$DB" --synthetic 2 --latent 64
  finish sdxl-base "$DB"
fi
log done
