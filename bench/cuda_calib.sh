#!/usr/bin/env bash
# cuda_calib.sh - calibrated quantization on the GPU against the CPU (docs/QUALITY.md, docs/BENCHMARKS.md).
#   bench/cuda_calib.sh quality DEVICE OUT_DIR MODEL_NAME=PATH...   (DEVICE cpu or cuda)
#     for each model, methods imatrix and gptq, types q4_k_m q3_k_m q2_k iq4_xs (plus rtn): quantize with
#     16,384 calibration tokens of $CALIB on DEVICE (--json: time split and GPU peak in quantize.jsonl), then
#     one eval of all files against the model on valid.txt (ctx 512, 40 windows) on DEVICE (eval.json).
#   bench/cuda_calib.sh big OUT_DIR                                 (GPU only)
#     the Llama-3-8B layer shape (bench/synth_checkpoint, 2 layers, vocabulary 8192) quantized to q4_k_m by
#     imatrix and gptq on the GPU with 128 x 512 calibration tokens: per-layer time split and GPU peak.
# LOWBIT (default build/lowbit), SYNTH (default build/synth_checkpoint), CALIB (default ../shared/data/calib.txt),
# THREADS (default: all CPUs), TYPES, METHODS override the defaults.
set -uo pipefail
LOWBIT=${LOWBIT:-build/lowbit}
SYNTH=${SYNTH:-build/synth_checkpoint}
CALIB=${CALIB:-../shared/data/calib.txt}
THREADS=${THREADS:-$(nproc)}
TYPES=${TYPES:-q4_k_m q3_k_m q2_k iq4_xs}
METHODS=${METHODS:-imatrix gptq}
mode=${1:?usage: bench/cuda_calib.sh quality|big ...}
shift

if [ "$mode" = quality ]; then
  dev=$1 out=$2
  shift 2
  files_dir=${FILES:-$out/files}
  mkdir -p "$out" "$files_dir"
  for spec in "$@"; do
    name=${spec%%=*} path=${spec#*=}
    extra=()
    [[ $path == *.gguf ]] && extra=(--allow-requantize)
    files=()
    for t in $TYPES; do
      f="$files_dir/$name-rtn-$t.gguf"
      "$LOWBIT" quantize "$path" -o "$f" --type "$t" -t "$THREADS" -q "${extra[@]}" >/dev/null && files+=("$f")
      for m in $METHODS; do
        f="$files_dir/$name-$m-$t-$dev.gguf"
        echo "{\"model\": \"$name\", \"method\": \"$m\", \"type\": \"$t\", \"device\": \"$dev\", \"quantize\": $(
          "$LOWBIT" quantize "$path" -o "$f" --type "$t" --method "$m" --calib "$CALIB" --calib-tokens 16384 \
            --device "$dev" -t "$THREADS" --json -q "${extra[@]}" 2>>"$out/errors.txt" || echo null), \"sha256\": \"$(
          sha256sum "$f" 2>/dev/null | cut -c1-16)\"}" | tee -a "$out/quantize.jsonl"
        [ -f "$f" ] && files+=("$f")
      done
    done
    "$LOWBIT" eval "${files[@]}" --base "$path" --text tests/golden/data/valid.txt --ctx 512 --chunks 40 --device "$dev" \
      -t "$THREADS" --json -q >"$out/eval-$name-$dev.json" 2>>"$out/errors.txt"
  done
elif [ "$mode" = big ]; then
  out=$1 W=${BIG_DIR:-/tmp/lbcal8b}
  mkdir -p "$out" "$W"
  [ -f "$W/hf/config.json" ] || "$SYNTH" "$W/hf" models/tiny/tokenizer.json 2 --shape llama3-8b --vocab 8192 >>"$out/big.txt" 2>&1
  # progress lines (per tensor, elapsed) go to big.txt too: a run cut short by a time limit still shows its pace
  for m in ${BIG_METHODS:-imatrix gptq}; do
    echo "== $m" >>"$out/big.txt"
    /usr/bin/time -f "$m: %e s wall, %M KB peak RSS" timeout "${BIG_LIMIT:-600}" "$LOWBIT" quantize "$W/hf" -o "$W/$m.gguf" \
      --type q4_k_m --method "$m" --calib "$CALIB" --calib-tokens 65536 --device cuda -t "$THREADS" --json >>"$out/big.txt" 2>&1
  done
fi
