#!/usr/bin/env bash
# make demo: the main job on embedded defaults, start to end, on any machine.
# 1. SDXL's module tree, from the built-in preset (no download): exact params and MACs;
# 2. SSD-1B and Segmind-Vega beside it: what the paper's removals took away;
# 3. a CPU forward of the diffusers-made mini fixture (SDXL's topology), teacher and a
#    student without two transformer layers, with every feature point written out.
set -euo pipefail
B=${1:-build}
U=$B/unetlab
out=$B/demo
mkdir -p "$out"
echo "== 1. SDXL base: module tree (top two levels), 1024x1024, batch 1"
"$U" inspect --model sdxl-base --depth 2
echo
echo "== 2. the paper's students, same size"
for m in sdxl-base ssd-1b segmind-vega; do
  printf '%-14s' "$m"; "$U" inspect --model "$m" | tail -n 1
done
echo
echo "== 3. CPU forward of tests/fixtures/mini-public (diffusers-made, SDXL topology)"
"$U" forward --device cpu --model tests/fixtures/mini-public --inputs tests/fixtures/mini-public/io.safetensors \
  --out "$out/teacher.safetensors" --features
"$U" forward --device cpu --model tests/fixtures/mini-public --inputs tests/fixtures/mini-public/io.safetensors \
  --out "$out/student.safetensors" --features \
  --drop mid_block.attentions.0.transformer_blocks.0,down_blocks.2.attentions.1.transformer_blocks.2
"$U" inspect --model tests/fixtures/mini-public --drop mid_block.attentions.0.transformer_blocks.0,down_blocks.2.attentions.1.transformer_blocks.2 | tail -n 1
echo
echo "demo done: features in $out/ (safetensors, one float32 tensor per diffusers module path)"
