#!/usr/bin/env bash
# cuda_diag.sh - one device call that finds where GPTQ's opt-in GPU paths lose quality, then, with the time left,
# times the decode table: from the repository root, with the binaries of bench/cuda_session.sh's tarball (which
# must hold tests/test_cuda_gptq_shadow):
#   bench/cuda_diag.sh BIN_TAR_XZ OUT_DIR [SECONDS]     (default 560)
#   1. test_cuda_gptq_shadow: tiny's GPTQ through the GPU table, each pass / descent / encode / reference target
#      checked against the host copy on the same inputs (the worst call named), with the warp-per-row columns
#      and with LB_GPU_COLUMNS=thread;
#   2. bench/cuda_gptq_isolate.sh: tiny's KL with each opt-in part left on the CPU in turn;
#   3. test_cuda_gptq (its random-layer checks and the same variants inside the test);
#   4. the Llama-3-8B-shape checkpoint (2 layers): gptq with the opt-ins, timed with its --json split;
#   5. bench/cuda_device.sh gen kernels bench eval with what is left (the decode table of #13).
set -uo pipefail
TAR=${1:?usage: bench/cuda_diag.sh BIN_TAR_XZ OUT_DIR [SECONDS]}
OUT=${2:?usage}
DEADLINE=$(($(date +%s) + ${3:-560}))
mkdir -p build "$OUT" && tar xJf "$TAR" -C build || exit 1
. "$(dirname "$0")/cuda_run_common.sh"
log "1. shadow (warp-per-row columns, then LB_GPU_COLUMNS=thread)"
timeout "$(cap 150)" build/tests/test_cuda_gptq_shadow >"$OUT/shadow.log" 2>&1
echo "shadow rc=$?" | tee -a "$OUT/run.log"
grep -vE "^  (pass|cd|ref target)" "$OUT/shadow.log" | tail -12 >>"$OUT/run.log"
if grep -q "FAIL" "$OUT/shadow.log"; then
  LB_GPU_COLUMNS=thread timeout "$(cap 150)" build/tests/test_cuda_gptq_shadow >"$OUT/shadow_thread.log" 2>&1
  echo "shadow (thread columns) rc=$?" | tee -a "$OUT/run.log"
  grep -vE "^  (pass|cd|ref target)" "$OUT/shadow_thread.log" | tail -12 >>"$OUT/run.log"
fi
log "1b. one 8B gate matrix (14336 x 4096, q4_K, 4 passes + descent) with the opt-ins: warp columns, thread columns"
for c in warp thread; do
  LB_GPU_COLUMNS=$c LB_GPU_ENCODE=1 LB_GPU_SWEEP=1 timeout "$(cap 60)" build/cuda_gptq 14336 4096 q4_K cuda "$(nproc)" >"$OUT/gate_$c.txt" 2>&1
  echo "gate ($c columns) rc=$?" >>"$OUT/run.log"; grep -v "^ *$" "$OUT/gate_$c.txt" | tail -4 | cut -c1-600 >>"$OUT/run.log"
done
log "2. isolate"
timeout "$(cap 200)" bench/cuda_gptq_isolate.sh "$OUT" >/dev/null 2>&1
echo "isolate rc=$?" >>"$OUT/run.log"
cat "$OUT/isolate.txt" >>"$OUT/run.log" 2>/dev/null
log "3. test_cuda_gptq"
timeout "$(cap 200)" build/tests/test_cuda_gptq >"$OUT/gptq.log" 2>&1
echo "test_cuda_gptq rc=$? $(tail -1 "$OUT/gptq.log")" | tee -a "$OUT/run.log"
grep -E "FAIL|^q4_k_m|^gptq" "$OUT/gptq.log" >>"$OUT/run.log"
log "3b. test_cuda_calib"
timeout "$(cap 120)" build/tests/test_cuda_calib >"$OUT/calib.log" 2>&1
echo "test_cuda_calib rc=$? $(tail -1 "$OUT/calib.log")" | tee -a "$OUT/run.log"
grep -E "FAIL" "$OUT/calib.log" | head -5 >>"$OUT/run.log"
log "4. 8B shape, 2 layers, gptq with the opt-ins (LB_CALIB_PROFILE=1)"
W=/tmp/lb-session-8b
mkdir -p "$W"
[ -f "$W/hf/config.json" ] || build/synth_checkpoint "$W/hf" models/tiny/tokenizer.json 2 --shape llama3-8b --vocab 8192 >>"$OUT/e2e.txt" 2>&1
LB_GPU_ENCODE=1 LB_GPU_SWEEP=1 LB_CALIB_PROFILE=1 /usr/bin/time -f "gptq: %e s wall, %M KB peak RSS" \
  timeout "$(cap 150)" build/lowbit quantize "$W/hf" -o "$W/gptq.gguf" --type q4_k_m --method gptq --calib build/calib.txt \
  --calib-tokens 65536 --device cuda -t "$(nproc)" --json >>"$OUT/e2e.txt" 2>&1
echo "8B gptq rc=$?" | tee -a "$OUT/run.log"
grep -E "gptq:|quantize \[" "$OUT/e2e.txt" | tail -4 >>"$OUT/run.log"
grep -o '"seconds".*"gptq_seconds": {[^}]*}' "$OUT/e2e.txt" | cut -c1-700 >>"$OUT/run.log"
if [ "$(left)" -gt 150 ]; then
  log "5. decode table"
  timeout "$(cap 400)" bench/cuda_device.sh "$OUT/dev" gen kernels bench eval >"$OUT/device.log" 2>&1
  echo "cuda_device rc=$?" | tee -a "$OUT/run.log"
fi
log done
