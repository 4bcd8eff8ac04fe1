#!/usr/bin/env bash
# Quality on the real model (docs/QUALITY.md): SmolLM2-135M-Instruct's F16 base (bench/smollm2_fetch.sh)
# quantized by lowbit with each method and by current llama.cpp with its own importance matrix over the
# same calibration text, all scored in one eval run per text against the F16 base (perplexity, KL
# divergence, top-1) by bench/quality_calib.sh.
#
# usage: bench/quality_smollm2.sh "TYPES" "METHODS"        (run from the repository root)
#   env: CALIB_TOKENS (lowbit, default 16384), LLAMA_IMAT_CHUNKS (llama-imatrix windows of 512 tokens over
#        calib.txt, default 128 = lowbit's default 65,536 tokens), THREADS (default 2), CHUNKS (eval windows,
#        default 40), OUT (default bench/out/smollm2), REUSE=1 (keep files already made)
set -euo pipefail
cd "$(dirname "$0")/.."
TYPES=${1:-"q8_0 q4_k_m q4_0 iq4_xs q3_k_m q2_k"}
METHODS=${2:-"rtn imatrix gptq awq"}
THREADS=${THREADS:-2}
OUT=${OUT:-bench/out/smollm2}
CALIB=${CALIB:-../shared/data/calib.txt}
mkdir -p "$OUT"
{ read -r Q41; read -r BASE; } < <(bench/smollm2_fetch.sh)
BIN=$(bench/llamacpp_build.sh | tail -1)
IMAT=$OUT/llamacpp.imatrix
if [ "${REUSE:-0}" != 1 ] || [ ! -s "$IMAT" ]; then
  /usr/bin/time -f "llama-imatrix: %e s, peak %M KiB" "$BIN/llama-imatrix" -m "$BASE" -f "$CALIB" -o "$IMAT" -c 512 \
    --chunks "${LLAMA_IMAT_CHUNKS:-128}" -t "$THREADS" >"$OUT/llama-imatrix.log" 2>&1
  tail -1 "$OUT/llama-imatrix.log" >&2
fi
llama_files=()
for t in $TYPES; do
  [ "$t" = q8_0 ] && continue
  f=$OUT/llamacpp-$t-imat.gguf
  if [ "${REUSE:-0}" != 1 ] || [ ! -s "$f" ]; then
    "$BIN/llama-quantize" --imatrix "$IMAT" "$BASE" "$f" "${t^^}" "$THREADS" >"$OUT/llama-quantize-$t.log" 2>&1
  fi
  llama_files+=("$f")
done
OUT=$OUT CALIB=$CALIB CALIB_TOKENS=${CALIB_TOKENS:-16384} bench/quality_calib.sh "$BASE" smollm2 "$TYPES" "$METHODS" "${llama_files[@]}"
