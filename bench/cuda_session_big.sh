#!/usr/bin/env bash
# cuda_session_big.sh - a device call after bench/cuda_session.sh: calibrated quantization of the 70B and 405B
# layer shapes on one GPU, from the repository root, with the binaries of the same tarball:
#   bench/cuda_session_big.sh BIN_TAR_XZ OUT_DIR [SECONDS [LAYERS]]     (default 570 s, 1 layer)
#   1. the Llama-3-70B shape (hidden 8192, ffn 28672, 64/8 heads, vocabulary 128256), LAYERS layers:
#      imatrix, then gptq, q4_k_m at 65,536 calibration tokens with LB_CALIB_PROFILE=1: the progress lines
#      (one per tensor: the per-layer time), the --json time split and the peak GPU memory;
#   2. if time is left, the Llama-3.1-405B shape (hidden 16384, ffn 53248, 128/8 heads), one layer, imatrix.
# The checkpoints (4.2 GB + 1.7 GB per layer; 8.4 GB + 6.5 GB per layer) are written to /tmp on the device and
# kept there while the machine stays warm. Writes run.log and big.txt to OUT_DIR.
set -uo pipefail
TAR=${1:?usage: bench/cuda_session_big.sh BIN_TAR_XZ OUT_DIR [SECONDS [LAYERS]]}
OUT=${2:?usage}
DEADLINE=$(($(date +%s) + ${3:-570}))
LAYERS=${4:-1}
[ -x build/lowbit ] || { mkdir -p build && tar xJf "$TAR" -C build; } || exit 1
mkdir -p "$OUT"
. "$(dirname "$0")/cuda_run_common.sh"
df -h /tmp | tail -1 >>"$OUT/run.log"

run_shape() { # shape layers methods...
  local shape=$1 nl=$2 W=/tmp/lb-session-$1
  shift 2
  mkdir -p "$W"
  [ -f "$W/hf/config.json" ] || build/synth_checkpoint "$W/hf" models/tiny/tokenizer.json "$nl" --shape "$shape" --shards 4 >>"$OUT/big.txt" 2>&1
  for m in "$@"; do
    [ "$(left)" -gt 60 ] || break
    echo "== $shape $m" >>"$OUT/big.txt"
    LB_CALIB_PROFILE=1 /usr/bin/time -f "$shape $m: %e s wall, %M KB peak RSS" \
      timeout "$(cap 560)" build/lowbit quantize "$W/hf" -o "$W/$m.gguf" --type q4_k_m --method "$m" --calib build/calib.txt \
      --calib-tokens 65536 --device cuda -t "$(nproc)" --json >>"$OUT/big.txt" 2>&1
    echo "$shape $m rc=$?" | tee -a "$OUT/run.log"
    rm -f "$W/$m.gguf"
  done
}

log "1. 70B shape, $LAYERS layer(s)"
run_shape llama3-70b "$LAYERS" imatrix gptq
if [ "$(left)" -gt 200 ]; then
  log "2. 405B shape, 1 layer"
  rm -rf /tmp/lb-session-llama3-70b # the disk holds about 60 GB
  run_shape llama3-405b 1 imatrix
fi
log done
grep -E "s wall|^quantize \[" "$OUT/big.txt" | cut -c1-200 >>"$OUT/run.log"
grep -o '"seconds".*"gptq_seconds": {[^}]*}' "$OUT/big.txt" | cut -c1-900 >>"$OUT/run.log"
cat "$OUT/run.log"
