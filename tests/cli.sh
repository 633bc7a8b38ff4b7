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
! grep -q "forward of" "$T/err" && ok || bad "an unwritable --out was found after the forward"
expect "candidates kind named" 2 "option '--candidates': unknown kind 'bogus'" -- "$BIN" eval --model $FX/mini-ssd --candidates bogus --synthetic 1 --db "$T/k.db"
expect "inputs missing" 4 "'$T/none.safetensors'" -- "$BIN" forward --model $FX/mini-ssd --inputs "$T/none.safetensors" --out "$T/x"
expect "inputs wrong shape" 4 "'$FX/mini-ssd/io.safetensors': input 'input.encoder_hidden_states': expected shape [2, L, 64]" -- "$BIN" forward --model $FX/mini-public --inputs $FX/mini-ssd/io.safetensors --out "$T/x"
expect "inputs missing tensor" 4 "missing tensor 'input.sample'" -- "$BIN" forward --model $FX/mini-ssd --inputs "$T/o.safetensors" --out "$T/x"

# --- bench, devices and dtypes (this machine has no GPU) ---
expect "bench cpu" 0 "engine cpu" -- "$BIN" bench --model $FX/mini-ssd --height 64 --width 64 --warmup 0 --repeats 2 --device cpu
expect "bench json batches" 0 '"ms_median"' -- "$BIN" bench --model $FX/mini-ssd --height 64 --width 64 --warmup 0 --repeats 2 --batch 1,2 --format json
n=$(grep -c '"ms_median"' "$T/out"); [ "$n" -eq 2 ] && ok || bad "bench --batch 1,2 --format json: $n results, expected 2"
expect "bench csv" 0 "model,student,params,macs,batch" -- "$BIN" bench --model $FX/mini-ssd --height 64 --width 64 --warmup 0 --repeats 1 --format csv --drop up_blocks.0.attentions.0.transformer_blocks.1
[ "$(grep -c '^' "$T/out")" -eq 2 ] && grep -q "^$FX/mini-ssd,1," "$T/out" && ok || bad "bench csv: expected a header and one student row: $(cat "$T/out")"
expect "bench no model" 2 "--model is required" -- "$BIN" bench
expect "bench bad batch" 2 "'--batch': 'x'" -- "$BIN" bench --model $FX/mini-ssd --batch 1,x
expect "bench bad dtype" 2 "'--dtype': 'fp8'" -- "$BIN" bench --model $FX/mini-ssd --dtype fp8
expect "bench graph on cpu" 2 "--graph needs a GPU" -- "$BIN" bench --model $FX/mini-ssd --device cpu --graph
expect "bench --mode on cpu" 2 "--mode and --profile need a GPU" -- "$BIN" bench --model $FX/mini-ssd --device cpu --mode eager
expect "bench --mode graph on cpu" 2 "--graph needs a GPU" -- "$BIN" bench --model $FX/mini-ssd --device cpu --mode eager,graph
expect "bench bad mode" 2 "'--mode': 'replay' is not graph or eager" -- "$BIN" bench --model $FX/mini-ssd --mode graph,replay
expect "bench mode twice" 2 "'--mode': 'eager' given twice" -- "$BIN" bench --model $FX/mini-ssd --mode eager,eager
expect "bench --graph and --mode" 2 "--graph is --mode graph" -- "$BIN" bench --model $FX/mini-ssd --graph --mode graph
expect "bench --profile alone" 2 "--profile B and --profile-out FILE go together" -- "$BIN" bench --model $FX/mini-ssd --profile 2
expect "bench --db alone" 2 "--db stores the profile" -- "$BIN" bench --model $FX/mini-ssd --db "$T/b.db"
expect "bench --profile bad" 2 "'--profile': 'x'" -- "$BIN" bench --model $FX/mini-ssd --profile x --profile-out "$T/p.json"
expect "bench --profile on cpu" 2 "--mode and --profile need a GPU" -- "$BIN" bench --model $FX/mini-ssd --device cpu --profile 1 --profile-out "$T/p.json"
expect "bench --inputs" 0 "batch 2, 128x128" -- "$BIN" bench --model $FX/mini-ssd --inputs $FX/mini-ssd/io.safetensors --warmup 0 --repeats 1
expect "bench --inputs with a size" 2 "--inputs sets the size" -- "$BIN" bench --model $FX/mini-ssd --inputs $FX/mini-ssd/io.safetensors --height 64
expect "bench --inputs missing" 4 "nope.safetensors" -- "$BIN" bench --model $FX/mini-ssd --inputs "$T/nope.safetensors"
expect "bench reference engine" 0 "engine cpu-ref" -- "$BIN" bench --model $FX/mini-ssd --height 64 --width 64 --warmup 0 --repeats 1 --device ref
expect "forward fp16 on the cpu" 2 "--dtype fp16 runs on a GPU only" -- "$BIN" forward --model $FX/mini-ssd --inputs $FX/mini-ssd/io.safetensors --out "$T/o.st" --device cpu --dtype fp16
expect "forward ref in bf16" 2 "--device ref is the float32 reference engine" -- "$BIN" forward --model $FX/mini-ssd --inputs $FX/mini-ssd/io.safetensors --out "$T/o.st" --device ref --dtype bf16
expect "profile graph on cpu" 2 "--graph needs a GPU" -- "$BIN" profile --model $FX/mini-ssd --device cpu --graph
expect "profile bad device" 2 "'--device': 'tpu'" -- "$BIN" profile --model $FX/mini-ssd --device tpu
if "$BIN" version | grep -q "CUDA-enabled"; then
  expect "forward --device cuda, no GPU" 1 "forward: --device cuda: no CUDA device" -- "$BIN" forward --model $FX/mini-ssd --inputs $FX/mini-ssd/io.safetensors --out "$T/x" --device cuda
  expect "bench --device cuda, no GPU" 1 "bench: --device cuda: no CUDA device" -- "$BIN" bench --model $FX/mini-ssd --device cuda
else
  expect "forward --device cuda, CPU build" 1 "built without CUDA" -- "$BIN" forward --model $FX/mini-ssd --inputs $FX/mini-ssd/io.safetensors --out "$T/x" --device cuda
fi

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

# --- plans, candidates, eval, the store ---
expect "plan show ssd-1b" 0 '"mid_block_type":	"UNetMidBlock2D"' -- "$BIN" plan show plans/ssd-1b.json
"$BIN" plan show plans/ssd-1b.json > "$T/ssd.json" 2>/dev/null
expect "ssd-1b plan builds SSD-1B" 0 '"total_params":	1331334404,' -- "$BIN" inspect --model "$T/ssd.json" --format json
"$BIN" plan show plans/segmind-vega.json > "$T/vega.json" 2>/dev/null
expect "vega plan builds Vega" 0 '"total_params":	745225604,' -- "$BIN" inspect --model "$T/vega.json" --format json
expect "plan via inspect" 0 "total: 1,331,334,404 parameters" -- "$BIN" inspect --model sdxl-base --plan plans/ssd-1b.json
n=$("$BIN" candidates --model sdxl-base --format csv | grep -c ',transformer_layer,'); [ "$n" -eq 70 ] && ok || bad "sdxl-base: $n transformer-layer candidates, expected 70"
n=$("$BIN" candidates --model sdxl-base --format csv | grep -c ',resnet_pair,'); [ "$n" -eq 7 ] && ok || bad "sdxl-base: $n resnet pairs, expected 7"
expect "candidates of a student" 0 "mid_block_removal" -- "$BIN" candidates --model sdxl-base --plan plans/ssd-1b.json --kinds mid_block_removal,transformer_layer
expect "candidates bad kind" 2 "unknown kind 'layers'" -- "$BIN" candidates --model sdxl-base --kinds layers
expect "plan unknown module" 7 "'down_blocks.7.resnets.0': no such module" -- "$BIN" inspect --model sdxl-base --drop down_blocks.7.resnets.0
printf '{"remove": ["up_blocks.0.attentions.0.transformer_blocks.99"]}' > "$T/p1.json"
expect "plan file unknown layer" 7 "no such transformer layer" -- "$BIN" plan show "$T/p1.json" --model sdxl-base
printf '{"remove": ["down_blocks.1.resnets.0", "up_blocks.1.resnets.1"]}' > "$T/p2.json"
expect "pair changing shapes" 7 "changes the shape of 'down_blocks.1.resnets.1.norm1.weight' (teacher [640], student [320])" -- "$BIN" inspect --model sdxl-base --plan "$T/p2.json"
printf '{"remove": ["down_blocks.1.resnets.1"]}' > "$T/p3.json"
expect "unpaired resnet" 7 "down_blocks.1 keeps 1 ResNets but up_blocks.1 keeps 3" -- "$BIN" inspect --model sdxl-base --plan "$T/p3.json"
printf '{"remove": "mid_block"}' > "$T/p4.json"
expect "plan bad field" 7 "'$T/p4.json': field 'remove'" -- "$BIN" inspect --model sdxl-base --plan "$T/p4.json"
expect "plan missing file" 7 "cannot read '$T/none.json'" -- "$BIN" inspect --model sdxl-base --plan "$T/none.json"
printf '{"remove": []}' > "$T/p5.json"
expect "plan not expressible" 7 "no diffusers config can describe this student" -- "$BIN" plan show "$T/p5.json" --model sdxl-base --drop mid_block.attentions.0.transformer_blocks.0
EV="eval --model $FX/mini-ssd --plan $T/p5.json"
expect "eval calib wrong shape" 4 "'$FX/mini-public/io.safetensors': input 'input.encoder_hidden_states'" -- "$BIN" $EV --calib $FX/mini-public/io.safetensors --db "$T/e.db"
expect "eval needs one calib" 2 "exactly one of --calib and --synthetic" -- "$BIN" $EV --db "$T/e.db"
expect "eval bad shard" 2 "'--shard': '2/2'" -- "$BIN" $EV --synthetic 1 --db "$T/e.db" --shard 2/2
expect "eval bad device" 2 "'--device': 'cuda' is not one of cpu, ref" -- "$BIN" $EV --synthetic 1 --db "$T/e.db" --device cuda
expect "eval on the reference engine" 0 "" -- "$BIN" $EV --synthetic 1 --latent 8 --tokens 4 --db "$T/eref.db" --device ref
expect "schedule bad device" 2 "'--device': 'x' is not one of cpu, ref" -- "$BIN" schedule --model $FX/mini-ssd --db "$T/s.db" --stages 1 --synthetic 1 --device x
expect "eval synthetic" 0 '"total_params":	6159204' -- "$BIN" $EV --synthetic 2 --latent 8 --tokens 5 --db "$T/e.db" --format json
head -c 4096 /dev/urandom > "$T/corrupt.db"
expect "corrupt db" 6 "'$T/corrupt.db'" -- "$BIN" $EV --synthetic 1 --latent 8 --db "$T/corrupt.db"
! grep -q "db\.c:\|PRAGMA\|sqlite3_" "$T/err" && ok || bad "DB message shows internals: $(cat "$T/err")"
expect "unwritable db" 6 "'/nonexistent-dir/x.db'" -- "$BIN" $EV --synthetic 1 --latent 8 --db /nonexistent-dir/x.db
cp "$T/e.db" "$T/new.db"; sqlite3 "$T/new.db" "UPDATE meta SET value = '99' WHERE key = 'schema_version'" 2>/dev/null || true
if command -v sqlite3 >/dev/null; then
  expect "newer schema" 6 "newer than this unetlab's" -- "$BIN" $EV --synthetic 1 --latent 8 --db "$T/new.db"
fi
expect "db query" 0 "unetlab-plan" -- "$BIN" db query --db "$T/e.db" "SELECT plan_json FROM plans" --format json
expect "db query writes" 6 "'$T/e.db'" -- "$BIN" db query --db "$T/e.db" "DELETE FROM runs"
expect "db merge missing input" 6 "'$T/none.db'" -- "$BIN" db merge "$T/none.db" -o "$T/m.db"

# --- hostile paths (issue 13): what an output replaces, what an input is ---
FWD="forward --model $FX/mini-ssd --inputs $FX/mini-ssd/io.safetensors"
expect "out to /dev/null" 0 "" -- "$BIN" $FWD --out /dev/null
[ -c /dev/null ] && ok || bad "forward --out /dev/null replaced the device node"
: > "$T/target.st"; ln -s target.st "$T/link.st"
expect "out through a symlink" 0 "" -- "$BIN" $FWD --out "$T/link.st"
[ -L "$T/link.st" ] && [ -s "$T/target.st" ] && ok || bad "--out through a symlink: the link was replaced or its target not written"
expect "out is a directory" 5 "cannot write '$T': it is a directory" -- "$BIN" $FWD --out "$T"
expect "out temp file named" 5 "its temporary file '$T/none/o.st.tmp." -- "$BIN" $FWD --out "$T/none/o.st"
mkfifo "$T/fifo"
expect "fifo as inputs" 4 "cannot read '$T/fifo': it is a FIFO, not a regular file" -- timeout 20 "$BIN" $FWD --out "$T/x" --inputs "$T/fifo"
expect "fifo as calib" 4 "cannot read '$T/fifo': it is a FIFO" -- timeout 20 "$BIN" eval --model $FX/mini-ssd --plan "$T/p5.json" --calib "$T/fifo" --db "$T/f.db"
expect "fifo as plan" 7 "cannot read '$T/fifo': it is a FIFO" -- timeout 20 "$BIN" inspect --model sdxl-base --plan "$T/fifo"
mkdir "$T/sharded" && cp $FX/mini-ssd/config.json "$T/sharded/" && mkfifo "$T/sharded/a.safetensors"
printf '{"weight_map": {"conv_in.weight": "a.safetensors"}}' > "$T/sharded/diffusion_pytorch_model.safetensors.index.json"
expect "fifo as a shard" 3 "cannot read '$T/sharded/a.safetensors': it is a FIFO" -- timeout 20 "$BIN" forward --model "$T/sharded" --inputs $FX/mini-ssd/io.safetensors --out "$T/x"
expect "fifo as config" 3 "it is a FIFO" -- timeout 20 "$BIN" inspect --model "$T/fifo"

# unknown fields: a name with a newline cannot forge a line, and 200 of them give 6 warnings, not 200
mkdir "$T/many" && cp $FX/mini-ssd/diffusion_pytorch_model.safetensors "$T/many/"
fields='"x\nunetlab: error: forged": 1'; for i in $(seq 1 200); do fields+=", \"u$i\": $i"; done
sed "0,/{/s//{$fields, /" $FX/mini-ssd/config.json > "$T/many/config.json"
expect "many unknown fields" 0 "" -- "$BIN" inspect --model "$T/many"
[ "$(grep -c '^unetlab: warning: ' "$T/err")" -eq 6 ] && ! grep -q '^unetlab: error' "$T/err" && grep -q "196 more unknown fields" "$T/err" \
  && ok || bad "unknown fields: $(head -c 600 "$T/err")"

# export never writes over its teacher, never exports random weights unasked, says what it rounds
mkdir -p "$T/pipe2" && cp -r $FX/mini-public "$T/pipe2/unet"
printf '{"teacher": "elsewhere", "remove": ["down_blocks.1.attentions.0.transformer_blocks.0"]}' > "$T/pe.json"
sum_before=$(cat "$T/pipe2/unet/config.json" "$T/pipe2/unet/diffusion_pytorch_model.safetensors" | md5sum)
expect "export onto the teacher" 5 "--out '$T/pipe2/unet' is the teacher's directory" -- "$BIN" export --model "$T/pipe2/unet" --plan "$T/pe.json" --out "$T/pipe2/unet"
expect "export onto the pipeline's unet" 5 "is the teacher's directory" -- "$BIN" export --model "$T/pipe2" --plan "$T/pe.json" --out "$T/pipe2/unet"
expect "export onto the pipeline root" 5 "--out '$T/pipe2' holds the teacher's directory" -- "$BIN" export --model "$T/pipe2" --plan "$T/pe.json" --out "$T/pipe2"
[ "$(cat "$T/pipe2/unet/config.json" "$T/pipe2/unet/diffusion_pytorch_model.safetensors" | md5sum)" = "$sum_before" ] && ok || bad "export changed the teacher"
expect "export of a preset" 2 "'ssd-1b' has no trained weights (preset ssd-1b)" -- "$BIN" export --model ssd-1b --plan "$T/pe.json" --out "$T/rnd"
[ ! -e "$T/rnd" ] && ok || bad "export of a preset wrote '$T/rnd'"
expect "export warns" 0 "exported" -- "$BIN" export --model "$T/pipe2" --plan "$T/pe.json" --out "$T/exp-bf16" --dtype bf16
grep -q "the plan names 'elsewhere' as its teacher" "$T/err" && grep -q "the teacher's weights are fp16 and the student is written as bf16" "$T/err" \
  && ok || bad "export warnings: $(cat "$T/err")"
expect "plan as a model" 3 "is a unetlab plan, not a UNet config: give it as --plan" -- "$BIN" inspect --model "$T/pe.json"
expect "eval on random weights" 0 "" -- "$BIN" eval --model $FX/mini-ssd/config.json --plan "$T/p5.json" --synthetic 1 --latent 8 --tokens 4 --db "$T/rw.db"
grep -q "^unetlab: warning: '$FX/mini-ssd/config.json' has no trained weights" "$T/err" && ok || bad "eval on random weights: no warning: $(cat "$T/err")"

# the store: a typo never creates a DB; the user's bad SQL is a usage error
expect "db query typo" 6 "'$T/typo.db': cannot read" -- "$BIN" db query --db "$T/typo.db" "SELECT 1"
[ ! -e "$T/typo.db" ] && ok || bad "db query created '$T/typo.db'"
expect "db query bad SQL" 2 'db query: the SQL does not compile: near "SELEC": syntax error' -- "$BIN" db query --db "$T/e.db" "SELEC 1"

# sizes whose work does not fit a 64-bit count: refused, not printed negative
expect "huge size" 2 "batch 65536 at 1048576x1048576 px: the forward would take more than 2^63 multiply-adds" -- "$BIN" inspect --model sdxl-base --height 1048576 --width 1048576 --batch 65536

# SIGINT: one line, exit 130, the run marked interrupted, what was stored kept
"$BIN" eval --model $FX/mini-ssd --candidates all --synthetic 4 --db "$T/int.db" >/dev/null 2>"$T/int.err" &
pid=$!
for i in $(seq 1 200); do # until the run is recorded (its first student stored)
  [ "$("$BIN" db query --db "$T/int.db" --format csv "SELECT count(*) FROM eval_jobs WHERE status = 'done'" 2>/dev/null | tail -n 1)" -ge 1 ] 2>/dev/null && break
  sleep 0.1
done
kill -INT $pid; wait $pid; rc=$?
[ $rc -eq 130 ] && grep -q '^unetlab: interrupted (SIGINT): what is stored is kept; rerun the same command to continue$' "$T/int.err" \
  && ok || bad "SIGINT: exit $rc, stderr: $(tail -c 300 "$T/int.err")"
expect "interrupted run" 0 "interrupted" -- "$BIN" db query --db "$T/int.db" "SELECT status FROM runs"
[ "$("$BIN" db query --db "$T/int.db" --format csv "SELECT count(*) FROM eval_jobs WHERE status = 'done'" | tail -n 1)" -ge 1 ] \
  && ok || bad "SIGINT lost the stored students"

# memory: a run that cannot fit is refused before it allocates, saying how much it needs and how much there is
expect "bench too big" 1 "bench: batch 4096 at 1024x1024 px needs about" -- "$BIN" bench --model sdxl-base --batch 4096 --height 1024 --width 1024 --device cpu
grep -q "estimated from the module tree); this machine has .* GB available (MemAvailable)" "$T/err" && ok || bad "memory refusal: $(cat "$T/err")"

# out of memory anyway (an address-space limit the estimate cannot see): one error line with the size
if ! "$BIN" version | grep -q "SAN=1"; then # AddressSanitizer reserves more address space than the limit allows
  expect "out of memory" 1 "out of memory: could not allocate" -- bash -c "ulimit -v 3000000; exec '$BIN' bench --model sdxl-base --height 64 --width 64 --device cpu"
else ok; fi

# single-file checkpoints (LDM layout; tests/test_singlefile.c proves the forward): what is not one, said
expect "single file without a UNet" 3 "$FX/mini-ssd/diffusion_pytorch_model.safetensors': no UNet tensors (none named model.diffusion_model.*)" -- "$BIN" inspect --model $FX/mini-ssd/diffusion_pytorch_model.safetensors
CI='"model.diffusion_model.input_blocks.0.0.weight":{"dtype":"F32","shape":[32,4,3,3],"data_offsets":[0,4608]}'
mkst "$T/conv-in-only.safetensors" "{$CI}" 4608
expect "single file, no conv_out" 3 "conv-in-only.safetensors': no 4-d tensor 'model.diffusion_model.out.2.weight' (conv_out)" -- "$BIN" inspect --model "$T/conv-in-only.safetensors"
mkst "$T/ckpt.bin" "{$CI,\"first_stage_model.decoder.conv_in.bias\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[4608,4616]}}" 4616
expect "single file by its header" 3 "ckpt.bin': no 4-d tensor 'model.diffusion_model.out.2.weight'" -- "$BIN" inspect --model "$T/ckpt.bin"

echo "cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
