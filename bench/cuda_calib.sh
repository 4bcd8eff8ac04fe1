#!/usr/bin/env bash
# cuda_calib.sh - calibrated quantization on the GPU against the CPU (docs/QUALITY.md, docs/BENCHMARKS.md).
#   bench/cuda_calib.sh quality DEVICE OUT_DIR MODEL_NAME=PATH...   (DEVICE cpu or cuda)
#     for each model, methods imatrix and gptq, types q4_k_m q3_k_m q2_k iq4_xs (plus rtn): quantize with
#     16,384 calibration tokens of $CALIB on DEVICE (--json: time split and GPU peak in quantize.jsonl), then
#     one eval of all files against the model on valid.txt (ctx 512, 40 windows) on DEVICE (eval.json).
#   bench/cuda_calib.sh big OUT_DIR                                 (GPU only)
#     the Llama-3-8B layer shape (bench/synth_checkpoint, 2 layers, vocabulary 8192) quantized to q4_k_m by
#     imatrix and gptq on the GPU with 128 x 512 calibration tokens: per-layer time split and GPU peak.
#   bench/cuda_calib.sh gptq OUT_DIR [SHAPE]                     (GPU only; SHAPE llama3-8b (default) or llama3-70b)
#     GPTQ's algebra on the GPU: build/cuda_gptq on each matrix shape of one decoder layer (q, k, v, o, gate,
#     up, down; q4_K, 4 passes, 4 coordinate-descent sweeps as the driver runs them): the per-matrix time
#     split and the pieces (inverse factor, a sweep's updates, H e) -> gptq-SHAPE.jsonl; then (llama3-8b)
#     the whole checkpoint of GPTQ_LAYERS layers (default 2) end to end with --method gptq --device cuda and
#     65,536 calibration tokens: per-layer time from the progress lines, gptq_seconds from --json -> gptq-e2e.txt.
#     GPTQ_CPU=1 adds the same run with the solver on CPU threads (LB_GPTQ_GPU=0), cut at BIG_LIMIT;
#     GPTQ_SKIP_E2E=1 / GPTQ_ONLY_E2E=1 run only the per-matrix part / only the checkpoint.
# LOWBIT (default build/lowbit), SYNTH (default build/synth_checkpoint), CALIB (default ../shared/data/calib.txt),
# THREADS (default: all CPUs), TYPES, METHODS override the defaults; EVAL_DEVICE=cpu scores a GPU run's files with
# the CPU's eval (the engine of the development machine's tables).
set -uo pipefail
LOWBIT=${LOWBIT:-build/lowbit}
SYNTH=${SYNTH:-build/synth_checkpoint}
CALIB=${CALIB:-../shared/data/calib.txt}
THREADS=${THREADS:-$(nproc)}
TYPES=${TYPES:-q4_k_m q3_k_m q2_k iq4_xs}
METHODS=${METHODS:-imatrix gptq}
mode=${1:?usage: bench/cuda_calib.sh quality|big|gptq ...}
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
    "$LOWBIT" eval "${files[@]}" --base "$path" --text tests/golden/data/valid.txt --ctx 512 --chunks 40 \
      --device "${EVAL_DEVICE:-$dev}" -t "$THREADS" --json -q >"$out/eval-$name-$dev.json" 2>>"$out/errors.txt"
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
elif [ "$mode" = gptq ]; then
  out=$1 shape=${2:-llama3-8b}
  BENCH=${BENCH:-build/cuda_gptq}
  mkdir -p "$out"
  case $shape in
    llama3-8b) E=4096 F=14336 KV=1024 ;;
    llama3-70b) E=8192 F=28672 KV=1024 ;;
    *) echo "unknown shape $shape" >&2; exit 2 ;;
  esac
  # rows x cols of q, k, v, o, gate, up, down (rows: outputs, cols: the input dimension GPTQ factors)
  [ "${GPTQ_ONLY_E2E:-0}" = 1 ] || for m in "q $E $E" "k $KV $E" "v $KV $E" "o $E $E" "gate $F $E" "up $F $E" "down $E $F"; do
    set -- $m
    echo "== $shape $1 ($2 x $3)" >>"$out/gptq-$shape.txt"
    timeout "${BIG_LIMIT:-600}" "$BENCH" "$2" "$3" q4_K cuda "$THREADS" 2>>"$out/gptq-$shape.txt" |
      sed "s/^{/{\"shape\": \"$shape\", \"matrix\": \"$1\", /" | tee -a "$out/gptq-$shape.jsonl"
  done
  if [ "$shape" = llama3-8b ] && [ "${GPTQ_SKIP_E2E:-0}" != 1 ]; then
    W=${BIG_DIR:-/tmp/lbcal8b}
    mkdir -p "$W"
    [ -f "$W/hf/config.json" ] || "$SYNTH" "$W/hf" models/tiny/tokenizer.json "${GPTQ_LAYERS:-2}" --shape llama3-8b --vocab 8192 \
      >>"$out/gptq-e2e.txt" 2>&1
    runs=(gpu)
    [ "${GPTQ_CPU:-0}" = 1 ] && runs+=(cpu)
    for r in "${runs[@]}"; do
      echo "== gptq, solver on the $r" >>"$out/gptq-e2e.txt"
      LB_GPTQ_GPU=$([ "$r" = cpu ] && echo 0 || echo 1) /usr/bin/time -f "gptq ($r solver): %e s wall, %M KB peak RSS" \
        timeout "${BIG_LIMIT:-600}" "$LOWBIT" quantize "$W/hf" -o "$W/gptq-$r.gguf" --type q4_k_m --method gptq --calib "$CALIB" \
        --calib-tokens 65536 --device cuda -t "$THREADS" --json >>"$out/gptq-e2e.txt" 2>&1
    done
  fi
fi
