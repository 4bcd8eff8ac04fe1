#!/usr/bin/env bash
# cuda_session.sh - one device call that checks everything built without a GPU and times it, from the repository
# root, with binaries built elsewhere (bench/out/bin/bin.tar.xz: lowbit cuda_gptq cuda_bench cuda_kernels
# synth_checkpoint calib.txt tests/test_cuda_{gptq,calib,kernels,forward,multi}):
#   cp ../shared/data/calib.txt build-cuda/ && tar cf - -C build-cuda lowbit cuda_gptq cuda_bench cuda_kernels synth_checkpoint \
#     calib.txt tests/test_cuda_{gptq,calib,kernels,forward,multi} | xz -T2 -6 --lzma2=dict=128MiB >bench/out/bin/bin.tar.xz
# (the large dictionary finds the device code the ten binaries share: 8 MB instead of 36)
#   bench/cuda_session.sh BIN_TAR_XZ OUT_DIR [SECONDS]     (default 570)
# In order, each step cut by what is left:
#   1. test_cuda_gptq with the opt-in paths on (LB_GPU_ENCODE=1 LB_GPU_SWEEP=1: encoders, passes, descent,
#      reference target, AWQ, round-to-nearest on the GPU), test_cuda_multi, test_cuda_forward plain and with
#      LB_CUDA_FLASH=0 (ops.cu's attention for prompts), test_cuda_calib;
#   2. the Llama-3-8B-shape checkpoint (2 layers, vocabulary 8192): gptq and imatrix at 65,536 tokens with the
#      opt-in paths and LB_CALIB_PROFILE=1 (the time split in --json);
#   3. pp512 of the 8B-shape q4_k_m with and without flash attention (LB_CUDA_FLASH=1 / 0), if time is left;
#   4. test_cuda_kernels --quick last (the longest, and unchanged since its last full run).
# Writes at most 8 files to OUT_DIR: run.log (the summary), tests.log, calib.log, e2e.txt, kernels.log, all.tgz.
set -uo pipefail
TAR=${1:?usage: bench/cuda_session.sh BIN_TAR_XZ OUT_DIR [SECONDS]}
OUT=${2:?usage}
DEADLINE=$(($(date +%s) + ${3:-570}))
mkdir -p build "$OUT" && tar xJf "$TAR" -C build || exit 1
export NCCL_NVLS_ENABLE=0 LOWBIT=build/lowbit
. "$(dirname "$0")/cuda_run_common.sh"

log "1. GPU tests"
for t in gptq multi forward; do
  LB_GPU_ENCODE=1 LB_GPU_SWEEP=1 timeout "$(cap 200)" build/tests/test_cuda_$t >"$OUT/t_$t.log" 2>&1
  echo "test_cuda_$t rc=$? $(tail -1 "$OUT/t_$t.log")" | tee -a "$OUT/run.log"
done
LB_CUDA_FLASH=0 timeout "$(cap 120)" build/tests/test_cuda_forward >"$OUT/t_forward_noflash.log" 2>&1
echo "test_cuda_forward (LB_CUDA_FLASH=0) rc=$? $(tail -1 "$OUT/t_forward_noflash.log")" | tee -a "$OUT/run.log"
timeout "$(cap 150)" build/tests/test_cuda_calib >"$OUT/calib.log" 2>&1
echo "test_cuda_calib rc=$? $(tail -1 "$OUT/calib.log")" | tee -a "$OUT/run.log"
cat "$OUT"/t_*.log >"$OUT/tests.log" && rm -f "$OUT"/t_*.log
grep -E "FAIL|^(encode|AWQ|ref target|gptq|q4_k_m|rtn|imatrix|NCCL)" "$OUT/tests.log" | head -40 >>"$OUT/run.log"

log "2. 8B shape, 2 layers"
W=/tmp/lb-session-8b
mkdir -p "$W"
[ -f "$W/hf/config.json" ] || build/synth_checkpoint "$W/hf" models/tiny/tokenizer.json 2 --shape llama3-8b --vocab 8192 >>"$OUT/e2e.txt" 2>&1
for m in gptq imatrix; do
  [ "$(left)" -gt 60 ] || break
  echo "== $m" >>"$OUT/e2e.txt"
  LB_GPU_ENCODE=1 LB_GPU_SWEEP=1 LB_CALIB_PROFILE=1 /usr/bin/time -f "$m: %e s wall, %M KB peak RSS" \
    timeout "$(cap 300)" build/lowbit quantize "$W/hf" -o "$W/$m.gguf" --type q4_k_m --method "$m" --calib build/calib.txt \
    --calib-tokens 65536 --device cuda -t "$(nproc)" --json >>"$OUT/e2e.txt" 2>&1
  echo "$m rc=$?" | tee -a "$OUT/run.log"
done
grep -E "gptq:|imatrix:" "$OUT/e2e.txt" >>"$OUT/run.log"
grep -o '"seconds".*"gptq_seconds": {[^}]*}' "$OUT/e2e.txt" | cut -c1-900 >>"$OUT/run.log"

if [ "$(left)" -gt 90 ] && [ -f "$W/gptq.gguf" ]; then
  log "3. pp512 with and without flash attention (the 2-layer file)"
  for f in 0 1; do
    LB_CUDA_FLASH=$f timeout "$(cap 40)" build/cuda_bench "$W/gptq.gguf" --device cuda --pp 512 --tg 16 --reps 3 2>&1 | tail -3 |
      sed "s/^/flash=$f: /" | tee -a "$OUT/run.log"
  done
fi

if [ "$(left)" -gt 60 ]; then
  log "4. kernels"
  timeout "$(cap 400)" build/tests/test_cuda_kernels >"$OUT/kernels.log" 2>&1
  echo "test_cuda_kernels rc=$? $(tail -1 "$OUT/kernels.log")" | tee -a "$OUT/run.log"
fi
log done
tar czf "$OUT/all.tgz" -C "$OUT" tests.log calib.log e2e.txt 2>/dev/null
cat "$OUT/run.log"
