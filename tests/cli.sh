#!/usr/bin/env bash
# CLI tests: the built binary end to end. Arguments in; exit code, the one-line
# error (naming the file and the problem) and the output out. Bad files are
# made here with printf/head/sed from the fixtures. Usage: tests/cli.sh BIN
set -u
BIN=${1:-build/unetlab}
FX=tests/fixtures
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0

ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

# expect NAME CODE 'stderr substring' -- command...
# The command must exit with CODE; on failure stderr must be exactly one line
# "unetlab: error: ..." containing the substring.
expect() {
  local name=$1 code=$2 pat=$3; shift 4
  "$@" >"$T/out" 2>"$T/err"; local rc=$?
  if [ "$rc" -ne "$code" ]; then bad "$name: exit $rc, expected $code; stderr: $(head -c 400 "$T/err")"; return; fi
  if [ "$code" -ne 0 ]; then
    local errs; errs=$(grep -c '^unetlab: error: ' "$T/err")
    if [ "$errs" -ne 1 ]; then bad "$name: expected one error line, got: $(cat "$T/err")"; return; fi
    if ! grep -F -q -- "$pat" "$T/err"; then bad "$name: error lacks '$pat': $(cat "$T/err")"; return; fi
  elif [ -n "$pat" ] && ! grep -F -q -- "$pat" "$T/out"; then
    bad "$name: stdout lacks '$pat'"; return
  fi
  ok
}

# A safetensors file from a header text and a data section of N zero bytes.
le64() { local n=$1 i s=""; for i in 0 1 2 3 4 5 6 7; do s+=$(printf '\\x%02x' $(( (n >> (8 * i)) & 255 ))); done; printf "$s"; }
mkst() { { le64 ${#2}; printf '%s' "$2"; head -c "$3" /dev/zero; } > "$1"; }

# --- usage ---
expect "no command" 2 "" -- "$BIN"
expect "help" 0 "usage: unetlab" -- "$BIN" --help
expect "inspect help" 0 "--model M" -- "$BIN" inspect --help
expect "unknown command" 2 "unknown command 'frobnicate'" -- "$BIN" frobnicate
expect "unknown option" 2 "unknown option '--modle'" -- "$BIN" inspect --modle sdxl-base
expect "missing value" 2 "option '--model' needs a value" -- "$BIN" inspect --model
expect "bad format" 2 "'--format': 'yaml'" -- "$BIN" inspect --model sdxl-base --format yaml
expect "height not /8" 2 "not a multiple of 8" -- "$BIN" inspect --model sdxl-base --height 1001
expect "bad batch" 2 "'--batch'" -- "$BIN" inspect --model sdxl-base --batch zero
expect "unknown model" 3 "'nosuchmodel': no such file, directory or preset" -- "$BIN" inspect --model nosuchmodel
expect "device cuda" 2 "'--device'" -- "$BIN" forward --model sdxl-base --inputs x --out y --device gpu

# --- inspect: diffusers' parameter counts ---
for pair in sdxl-base:2567463684 ssd-1b:1331334404 segmind-vega:745225604 sd-1.5:859520964 \
            $FX/mini-public:7716932 $FX/mini-ssd:6159204; do
  expect "inspect ${pair%%:*} json" 0 "\"total_params\":	${pair##*:}," -- "$BIN" inspect --model "${pair%%:*}" --format json
done
expect "inspect text" 0 "total: 2,567,463,684 parameters" -- "$BIN" inspect --model sdxl-base
expect "inspect csv" 0 "down_blocks.2.attentions.1.transformer_blocks.7,BasicTransformerBlock," -- "$BIN" inspect --model sdxl-base --format csv
expect "inspect student" 0 "total: 2,532,707,844 parameters" -- "$BIN" inspect --model sdxl-base --drop mid_block.attentions.0.transformer_blocks.9
expect "inspect config file" 0 "total: 7,716,932 parameters" -- "$BIN" inspect --model $FX/mini-public/config.json

# --- forward ---
expect "forward mini-public" 0 "output and 74 features" -- "$BIN" forward --model $FX/mini-public --inputs $FX/mini-public/io.safetensors --out "$T/o.safetensors" --features
[ -s "$T/o.safetensors" ] && ok || bad "forward wrote no file"
expect "forward student" 0 "wrote" -- "$BIN" forward --model $FX/mini-ssd --inputs $FX/mini-ssd/io.safetensors --out "$T/s.safetensors" --drop up_blocks.0.attentions.0.transformer_blocks.1
expect "forward pipeline root" 0 "wrote" -- bash -c "mkdir -p '$T/pipe' && ln -sfn '$PWD/$FX/mini-ssd' '$T/pipe/unet' && '$BIN' forward --model '$T/pipe' --inputs $FX/mini-ssd/io.safetensors --out '$T/p.safetensors'"
expect "forward preset" 0 "wrote" -- "$BIN" forward --model $FX/mini-ssd/config.json --inputs $FX/mini-ssd/io.safetensors --out "$T/r.safetensors" --seed 3
if "$BIN" version | grep -q "CUDA-enabled"; then
  n=$(grep -c "running on the CPU" "$T/err"); [ "$n" -eq 1 ] && ok || bad "CUDA build without GPU: expected one fallback line on stderr, got $n"
fi
expect "drop unknown" 7 "'down_blocks.0.attentions.0.transformer_blocks.0': no such transformer layer" -- "$BIN" forward --model $FX/mini-public --inputs $FX/mini-public/io.safetensors --out "$T/x" --drop down_blocks.0.attentions.0.transformer_blocks.0
expect "drop last layer" 7 "cannot remove the last transformer layer" -- "$BIN" inspect --model $FX/mini-public --drop down_blocks.1.attentions.0.transformer_blocks.0,down_blocks.1.attentions.0.transformer_blocks.1
expect "unwritable output" 5 "cannot write '/nonexistent-dir/o.safetensors'" -- "$BIN" forward --model $FX/mini-ssd --inputs $FX/mini-ssd/io.safetensors --out /nonexistent-dir/o.safetensors
expect "inputs missing" 4 "'$T/none.safetensors'" -- "$BIN" forward --model $FX/mini-ssd --inputs "$T/none.safetensors" --out "$T/x"
expect "inputs wrong shape" 4 "'$FX/mini-ssd/io.safetensors': input 'input.encoder_hidden_states': expected shape [2, L, 64]" -- "$BIN" forward --model $FX/mini-public --inputs $FX/mini-ssd/io.safetensors --out "$T/x"
expect "inputs missing tensor" 4 "missing tensor 'input.sample'" -- "$BIN" forward --model $FX/mini-ssd --inputs "$T/o.safetensors" --out "$T/x"

# --- bad weight files: a copy of mini-ssd with its weights replaced ---
M=$T/m; mkdir -p "$M"; cp $FX/mini-ssd/config.json "$M/"
W=$M/diffusion_pytorch_model.safetensors
fwd() { "$BIN" forward --model "$M" --inputs $FX/mini-ssd/io.safetensors --out "$T/x"; }
head -c 5 $FX/mini-ssd/diffusion_pytorch_model.safetensors > "$W"
expect "weights truncated header" 3 "'$W': truncated" -- fwd
head -c 100000 $FX/mini-ssd/diffusion_pytorch_model.safetensors > "$W"
expect "weights truncated data" 3 "'$W'" -- fwd
{ le64 999999; printf '{}'; } > "$W"
expect "header larger than file" 3 "'$W': header length 999999 larger than the file" -- fwd
mkst "$W" '{"a":{"dtype":"F16","shape":[4],"data_offsets":[0,8]}}' 4
expect "offsets out of range" 3 "out of range" -- fwd
mkst "$W" '{"a":{"dtype":"F16","shape":[4],"data_offsets":[0,8]},"b":{"dtype":"F16","shape":[4],"data_offsets":[4,12]}}' 12
expect "offsets overlap" 3 "overlap" -- fwd
mkst "$W" '{"a":{"dtype":"Q7","shape":[4],"data_offsets":[0,8]}}' 8
expect "unknown dtype" 3 "dtype 'Q7'" -- fwd
mkst "$W" '{"a":{"dtype":"F16","shape":[4],' 8
expect "header not JSON" 3 "header is not JSON" -- fwd
mkst "$W" '{"conv_in.weight":{"dtype":"F32","shape":[32,4,3,3],"data_offsets":[0,4608]}}' 4608
expect "missing tensor" 3 "'$W': missing tensor 'conv_in.bias' (config expects [32])" -- fwd
cp $FX/mini-public/diffusion_pytorch_model.safetensors "$W"
expect "shape disagrees with config" 3 "'$W': tensor 'add_embedding.linear_1.weight' has shape [128, 128], config expects [128, 68]" -- fwd
P=$T/p; mkdir -p "$P"; cp $FX/mini-public/diffusion_pytorch_model.safetensors "$P/"
tr -d ' \n' < $FX/mini-public/config.json | sed 's/"transformer_layers_per_block":\[1,2,4\]/"transformer_layers_per_block":[1,2,3]/' > "$P/config.json"
expect "tensor the config lacks" 3 "'$P/diffusion_pytorch_model.safetensors': unexpected tensor 'down_blocks.2.attentions.0.transformer_blocks.3." -- "$BIN" forward --model "$P" --inputs $FX/mini-public/io.safetensors --out "$T/x"
cp $FX/mini-ssd/diffusion_pytorch_model.safetensors "$W"

# --- bad configs ---
grep -v '"addition_time_embed_dim"' $FX/mini-ssd/config.json > "$M/config.json"
expect "config missing field" 3 "'$M/config.json': field 'addition_time_embed_dim': required" -- fwd
sed 's/"layers_per_block": 2/"layers_per_block": "2"/' $FX/mini-ssd/config.json > "$M/config.json"
expect "config mistyped field" 3 "'$M/config.json': field 'layers_per_block'" -- fwd
sed 's/"UpBlock2D"/"UpBlock3D"/' $FX/mini-ssd/config.json > "$M/config.json"
expect "config unknown block type" 3 "unknown block type 'UpBlock3D'" -- fwd
printf '{"sample_size": ' > "$M/config.json"
expect "config not JSON" 3 "'$M/config.json': not valid JSON" -- fwd

echo "cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
