#!/usr/bin/env bash
# cuda_8b_full.sh - the whole Llama-3-8B-shape checkpoint (32 layers, vocabulary 128256, 16 GB of BF16 in 4 shards)
# quantized to q4_k_m on one GPU end to end, as issue 14's targets state them: 65,536 calibration tokens (128 x 512)
# of calib.txt, reading the checkpoint included. From the repository root, with bench/cuda_session.sh's tarball:
#   bench/cuda_8b_full.sh BIN_TAR_XZ OUT_DIR STEP [SECONDS]     (default 570)
#   STEP gen:  unpack the binaries, write the checkpoint to /tmp/lb-8b-full/hf (kept while the machine stays warm),
#              then --method imatrix, then `lowbit imatrix --device cuda` (the importance matrix alone);
#   STEP gptq: --method gptq (the checkpoint of a gen step before, on the same warm machine).
# Before each quantization the page cache is dropped where the machine lets us (root), so the checkpoint is read
# from disk; run.log says whether it was. The progress lines give the per-layer times; --json the split.
# Writes run.log and all.tgz to OUT_DIR.
set -uo pipefail
TAR=${1:?usage: bench/cuda_8b_full.sh BIN_TAR_XZ OUT_DIR STEP [SECONDS]}
OUT=${2:?usage}
STEP=${3:?usage}
DEADLINE=$(($(date +%s) + ${4:-570}))
L=/tmp/lb-8b-log
W=/tmp/lb-8b-full
[ -x build/lowbit ] || { mkdir -p build && tar xJf "$TAR" -C build; } || exit 1
mkdir -p "$OUT" "$L" "$W"
. "$(dirname "$0")/cuda_run_common.sh"
df -h /tmp | tail -1 >>"$OUT/run.log"
nproc >>"$OUT/run.log"

quant() { # method
  local m=$1
  sync
  if echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then echo "$m: page cache dropped" | tee -a "$OUT/run.log"
  else echo "$m: page cache NOT dropped (not root)" | tee -a "$OUT/run.log"; fi
  echo "== $m" >>"$L/$m.txt"
  /usr/bin/time -f "$m: %e s wall, %M KB peak RSS" timeout "$(cap 560)" build/lowbit quantize "$W/hf" -o "$W/$m.gguf" \
    --type q4_k_m --method "$m" --calib build/calib.txt --calib-tokens 65536 --device cuda -t "$(nproc)" --json >>"$L/$m.txt" 2>&1
  echo "$m rc=$?" | tee -a "$OUT/run.log"
  grep -E "^quantize \[.*(attn_norm|output)|s wall" "$L/$m.txt" | cut -c1-200 >>"$OUT/run.log"
  grep -o '"seconds".*"gptq_seconds": {[^}]*}' "$L/$m.txt" | cut -c1-700 >>"$OUT/run.log"
  rm -f "$W/$m.gguf"
}

case $STEP in
gen)
  log "gen: the checkpoint"
  [ -f "$W/hf/config.json" ] || /usr/bin/time -f "synth: %e s" build/synth_checkpoint "$W/hf" models/tiny/tokenizer.json 32 \
    --shape llama3-8b --shards 4 >>"$OUT/run.log" 2>&1
  du -sh "$W/hf" >>"$OUT/run.log"
  log "imatrix"
  quant imatrix
  if [ "$(left)" -gt 120 ]; then # lowbit imatrix on the GPU (the layerwise statistics): the importance matrix alone
    log "lowbit imatrix"
    /usr/bin/time -f "lowbit imatrix: %e s wall, %M KB peak RSS" timeout "$(cap 300)" build/lowbit imatrix "$W/hf" --calib build/calib.txt \
      --calib-tokens 65536 -o "$W/imatrix.dat" --device cuda -t "$(nproc)" >"$L/lbimatrix.txt" 2>&1
    echo "lowbit imatrix rc=$? $(tail -2 "$L/lbimatrix.txt" | tr '\n' ' ')" | tee -a "$OUT/run.log"
  fi ;;
gptq)
  [ -f "$W/hf/config.json" ] || { echo "no checkpoint: run the gen step first on this machine" | tee -a "$OUT/run.log"; exit 1; }
  log "gptq"
  quant gptq ;;
*) echo "STEP: gen or gptq" >&2; exit 2 ;;
esac
log done
tar czf "$OUT/all.tgz" -C /tmp lb-8b-log
