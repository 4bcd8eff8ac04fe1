#!/usr/bin/env bash
# Bad input to the lowbit CLI: each case must exit non-zero with one clear "lowbit: ..." line naming the
# problem, never crash (exit >= 128) or hang (each run is under `timeout`).
set -u
LOWBIT=${LOWBIT:-build/lowbit}
SHARED=${LB_SHARED:-../shared}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0
fail=0

# expect_error NAME PATTERN CMD...: the command fails cleanly and its stderr matches PATTERN
expect_error() {
  local name=$1 pattern=$2
  shift 2
  timeout 60 "$@" >"$T/out" 2>"$T/err"
  local rc=$?
  local lines
  lines=$(grep -c . "$T/err")
  if [ $rc -ne 0 ] && [ $rc -lt 124 ] && grep -q "^lowbit: " "$T/err" && grep -Eq -- "$pattern" "$T/err" && [ "$lines" -le 2 ]; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAIL $name: rc=$rc, expected /$pattern/, stderr:"
    sed 's/^/    /' "$T/err" | head -20
  fi
}

# a copy of the tiny model whose files can be replaced one by one
mkmodel() {
  mkdir -p "$T/$1"
  cp models/tiny/config.json models/tiny/tokenizer.json models/tiny/model.safetensors "$T/$1/"
}

# a copy of tiny's model.safetensors with one same-length edit of the JSON header
edit_header() { LC_ALL=C sed -e "0,/$2/s//$3/" models/tiny/model.safetensors >"$T/$1/model.safetensors"; }

mkmodel trunc_half
head -c 5000000 models/tiny/model.safetensors >"$T/trunc_half/model.safetensors"
expect_error "truncated safetensors" "model.safetensors.*(past|beyond|exceed|end)" "$LOWBIT" inspect "$T/trunc_half"

mkmodel trunc_header
head -c 100 models/tiny/model.safetensors >"$T/trunc_header/model.safetensors"
expect_error "truncated header" "model.safetensors.*header" "$LOWBIT" inspect "$T/trunc_header"

mkmodel tiny_file
printf 'abc' >"$T/tiny_file/model.safetensors"
expect_error "3-byte file" "model.safetensors" "$LOWBIT" inspect "$T/tiny_file"

mkmodel corrupt_json
edit_header corrupt_json '"__metadata__":{' '"__metadata__"::'
expect_error "corrupt header JSON" "model.safetensors.*(JSON|json|line)" "$LOWBIT" inspect "$T/corrupt_json"

mkmodel offsets
edit_header offsets '"data_offsets":\[0,4194304\]' '"data_offsets":[0,9194304]'
expect_error "data offsets past the end" "model.safetensors.*embed_tokens" "$LOWBIT" inspect "$T/offsets"

mkmodel bytelen
edit_header bytelen '"shape":\[256,768\]' '"shape":[256,767]'
expect_error "shape x dtype != byte length" "model.safetensors.*down_proj" "$LOWBIT" inspect "$T/bytelen"

mkmodel shape
edit_header shape '"shape":\[256,768\]' '"shape":[768,256]'
expect_error "shape differs from config" "down_proj.weight has shape \[768, 256\], expected \[256, 768\]" "$LOWBIT" inspect "$T/shape"

mkmodel dtype
edit_header dtype '"dtype":"F16"' '"dtype":"F17"'
expect_error "unknown dtype" "F17" "$LOWBIT" inspect "$T/dtype"

mkmodel int_dtype
edit_header int_dtype '"dtype":"F16","shape":\[256\]' '"dtype":"I16","shape":[256]'
expect_error "integer dtype for a weight" "I16" "$LOWBIT" inspect "$T/int_dtype"

# sharded checkpoint with a shard missing
mkdir -p "$T/shards"
cp "$SHARED"/models/small/config.json "$SHARED"/models/small/model.safetensors.index.json "$SHARED"/models/small/tokenizer.json "$T/shards/"
for f in "$SHARED"/models/small/model-0000[134]-of-00004.safetensors; do ln -s "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")" "$T/shards/"; done
expect_error "missing shard" "model-00002-of-00004.safetensors" "$LOWBIT" inspect "$T/shards"

mkmodel arch
sed -e 's/Qwen2ForCausalLM/GPTNeoXForCausalLM/' -e 's/"qwen2"/"gpt_neox"/' models/tiny/config.json >"$T/arch/config.json"
expect_error "unsupported architecture" "GPTNeoXForCausalLM" "$LOWBIT" inspect "$T/arch"

mkmodel rope
sed -e 's/"rope_type": "default"/"rope_type": "yarn", "factor": 4.0/' models/tiny/config.json >"$T/rope/config.json"
expect_error "unsupported rope type" "yarn" "$LOWBIT" inspect "$T/rope"

mkmodel noconfig
rm "$T/noconfig/config.json"
expect_error "missing config.json" "config.json" "$LOWBIT" inspect "$T/noconfig"

expect_error "no such model" "nonexistent" "$LOWBIT" inspect "$T/nonexistent"

# tokenizer problems surface in eval / run
mkmodel notok
rm "$T/notok/tokenizer.json"
expect_error "missing tokenizer.json" "tokenizer.json" "$LOWBIT" run "$T/notok" -p "hello" -n 2

mkmodel badtok
printf '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [' >"$T/badtok/tokenizer.json"
expect_error "invalid tokenizer.json" "tokenizer.json" "$LOWBIT" run "$T/badtok" -p "hello" -n 2

# text problems
: >"$T/empty.txt"
expect_error "empty text" "empty" "$LOWBIT" eval models/tiny --text "$T/empty.txt"
printf 'A short text.\n' >"$T/short.txt"
expect_error "text shorter than one window" "fewer than one 512-token window" "$LOWBIT" eval models/tiny --text "$T/short.txt"
printf 'valid start \xff\xfe then garbage\n' >"$T/latin1.txt"
expect_error "non-UTF-8 text" "not valid UTF-8.*offset 12" "$LOWBIT" eval models/tiny --text "$T/latin1.txt"
expect_error "missing text file" "cannot open" "$LOWBIT" eval models/tiny --text "$T/none.txt"

# option problems
expect_error "unknown command" "unknown command" "$LOWBIT" frobnicate
expect_error "bad --ctx" "--ctx expects an integer" "$LOWBIT" eval models/tiny --text "$T/short.txt" --ctx 1
expect_error "bad -n" "-n expects an integer" "$LOWBIT" run models/tiny -p hi -n lots
expect_error "base with another vocabulary" "vocabulary" "$LOWBIT" eval models/tiny --base tests/golden/conformance/arch/mistral --text tests/golden/data/valid.txt --chunks 1
expect_error "quantize on an unknown device" "unknown device 'gpu'" "$LOWBIT" quantize models/tiny -o "$T/dev.gguf" --type q4_k_m --method imatrix --calib tests/golden/data/valid.txt --device gpu
# calibration on a GPU where there is none (CI): one line before any work, no output (tests/cuda covers the GPU)
if ! nvidia-smi -L >/dev/null 2>&1; then
  expect_error "quantize --device cuda without a GPU" "CUDA" "$LOWBIT" quantize models/tiny -o "$T/gpu.gguf" --type q4_k_m --method gptq --calib tests/golden/data/valid.txt --device cuda
  [ ! -e "$T/gpu.gguf" ] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL quantize --device cuda left an output"; }
  # round-to-nearest on a GPU (its block encoders) too: the same error, not a silent CPU run
  expect_error "rtn --device cuda without a GPU" "CUDA" "$LOWBIT" quantize models/tiny -o "$T/gpu-rtn.gguf" --type q4_k_m --device cuda
  [ ! -e "$T/gpu-rtn.gguf" ] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL rtn --device cuda left an output"; }
  # eval and run with their layers split over GPUs: the same one line
  expect_error "eval on a set of GPUs without a GPU" "CUDA" "$LOWBIT" eval models/tiny --text tests/golden/data/valid.txt --chunks 1 --device cuda:0,1
  expect_error "run on every GPU without a GPU" "CUDA" "$LOWBIT" run models/tiny -p hi -n 2 --device cuda:all
fi
expect_error "eval on a repeated GPU" "more than once|twice|repeat|distinct" "$LOWBIT" eval models/tiny --text tests/golden/data/valid.txt --device cuda:1,1

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
