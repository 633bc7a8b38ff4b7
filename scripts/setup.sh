#!/usr/bin/env bash
# Installs the Debian packages unetlab needs, only those missing.
# Needs root (or sudo) the first time; prints what it does.
set -eu
need=()
for p in libsqlite3-dev libcjson-dev libdnnl-dev gnuplot-nox make gcc g++; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
[ ${#need[@]} -eq 0 ] && exit 0
echo "setup: installing ${need[*]}" >&2
sudo=""
[ "$(id -u)" -ne 0 ] && sudo=sudo
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
