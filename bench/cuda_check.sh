#!/usr/bin/env bash
# cuda_check.sh - one short device call after a change to GPTQ's GPU paths: from the repository root, with the binaries
# of bench/cuda_session.sh's tarball (with tests/test_cuda_gptq_shadow):
#   bench/cuda_check.sh BIN_TAR_XZ OUT_DIR [SECONDS]     (default 400)
#   1. test_cuda_gptq, test_cuda_gptq_shadow, test_cuda_calib;
#   2. one 8B gate matrix (14336 x 4096, q4_K, 4 passes + descent): the phase split;
#   3. the Llama-3-8B-shape checkpoint (2 layers, vocabulary 8192): gptq and imatrix at 65,536 tokens with
#      LB_CALIB_PROFILE=1 (the time split in --json); then gptq with LB_GPU_STAGES=0 (per point) and LB_GPU_CD_PREC=f32 if time is left (same file?).
# Writes run.log (the summary) and all.tgz (every log) to OUT_DIR: two files, within what a call brings back.
set -uo pipefail
TAR=${1:?usage: bench/cuda_check.sh BIN_TAR_XZ OUT_DIR [SECONDS]}
OUT=${2:?usage}
DEADLINE=$(($(date +%s) + ${3:-400}))
L=/tmp/lb-check
mkdir -p build "$OUT" "$L" && tar xJf "$TAR" -C build || exit 1
export LOWBIT=build/lowbit
. "$(dirname "$0")/cuda_run_common.sh"
log "1. tests"
for t in gptq gptq_shadow calib; do
  timeout "$(cap 150)" build/tests/test_cuda_$t >"$L/t_$t.log" 2>&1
  echo "test_cuda_$t rc=$? $(tail -1 "$L/t_$t.log")" | tee -a "$OUT/run.log"
  grep -E "FAIL|KL\(base|^q4_k_m|^gptq |^pass  |^cd  |^ref target  " "$L/t_$t.log" | cut -c1-300 >>"$OUT/run.log"
done
log "2. gate matrix"
timeout "$(cap 60)" build/cuda_gptq 14336 4096 q4_K cuda "$(nproc)" >"$L/gate.txt" 2>&1
tail -1 "$L/gate.txt" | cut -c1-500 >>"$OUT/run.log"
log "3. 8B shape, 2 layers"
W=/tmp/lb-session-8b
mkdir -p "$W"
[ -f "$W/hf/config.json" ] || build/synth_checkpoint "$W/hf" models/tiny/tokenizer.json 2 --shape llama3-8b --vocab 8192 >>"$L/e2e.txt" 2>&1
for m in gptq imatrix; do
  [ "$(left)" -gt 40 ] || break
  echo "== $m" >>"$L/e2e.txt"
  LB_CALIB_PROFILE=1 /usr/bin/time -f "$m: %e s wall, %M KB peak RSS" timeout "$(cap 150)" build/lowbit quantize "$W/hf" -o "$W/$m.gguf" \
    --type q4_k_m --method "$m" --calib build/calib.txt --calib-tokens 65536 --device cuda -t "$(nproc)" --json >>"$L/e2e.txt" 2>&1
  echo "$m rc=$?" | tee -a "$OUT/run.log"
done
if [ "$(left)" -gt 60 ]; then # the same gptq with GPTQ's stages per point (LB_GPU_STAGES=0), for the ratio in this run
  echo "== gptq-stages" >>"$L/e2e.txt"
  LB_GPU_STAGES=0 LB_CALIB_PROFILE=1 /usr/bin/time -f "gptq-stages: %e s wall, %M KB peak RSS" timeout "$(cap 150)" build/lowbit quantize \
    "$W/hf" -o "$W/gptq-stages.gguf" --type q4_k_m --method gptq --calib build/calib.txt --calib-tokens 65536 --device cuda \
    -t "$(nproc)" --json >>"$L/e2e.txt" 2>&1
  echo "gptq-stages rc=$?" | tee -a "$OUT/run.log"
  cmp "$W/gptq.gguf" "$W/gptq-stages.gguf" >/dev/null 2>&1 && echo "gptq-stages: the same file" | tee -a "$OUT/run.log" ||
    echo "gptq-stages: a DIFFERENT file" | tee -a "$OUT/run.log"
fi
if [ "$(left)" -gt 60 ]; then # and with the descent's products in plain F32 (LB_GPU_CD_PREC=f32)
  echo "== gptq-cdsplit" >>"$L/e2e.txt"
  LB_GPU_CD_PREC=f32 LB_CALIB_PROFILE=1 /usr/bin/time -f "gptq-cdsplit: %e s wall, %M KB peak RSS" timeout "$(cap 150)" build/lowbit \
    quantize "$W/hf" -o "$W/gptq-cdsplit.gguf" --type q4_k_m --method gptq --calib build/calib.txt --calib-tokens 65536 \
    --device cuda -t "$(nproc)" --json >>"$L/e2e.txt" 2>&1
  echo "gptq-cdsplit rc=$?" | tee -a "$OUT/run.log"
fi
grep -E "gptq:|gptq-stages:|gptq-cdsplit:|imatrix:|quantize \[(9|11|21)/" "$L/e2e.txt" >>"$OUT/run.log"
grep -o '"seconds".*"gptq_seconds": {[^}]*}' "$L/e2e.txt" | cut -c1-600 >>"$OUT/run.log"
log done
tar czf "$OUT/all.tgz" -C /tmp lb-check
