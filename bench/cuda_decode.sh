#!/usr/bin/env bash
# cuda_decode.sh - one device call for issue 13's decode and prompt table: from the repository root, with
# bench/cuda_session.sh's binary tarball:
#   bench/cuda_decode.sh BIN_TAR_XZ OUT_DIR [SECONDS]     (default 500)
#   1. test_cuda_kernels --quick with LB_CUDA_MVQ_DEEP=1 (the deeper one-token pipeline, an experiment: the same
#      bounds as the default kernels);
#   2. the weight kernels alone (cuda_kernels --quick) with LB_CUDA_MVQ_DEEP=0 and 1;
#   3. the Llama-3-8B-shape checkpoint (32 layers) at q4_k_m, q4_0, q8_0 and f16 (kept in /tmp/lb8b while the machine
#      stays warm; the q4_k_m and f16 files of bench/cuda_flash.sh are reused): cuda_bench --pp 512 --tg 128 --reps 3 of
#      each, then tg128 of q4_k_m and q4_0 with LB_CUDA_MVQ_DEEP=1, of q4_k_m with each of the defaults since run 15
#      off (LB_CUDA_FUSE=0, LB_CUDA_ATT_SPLIT=0, LB_CUDA_PDL=0) and all three off, and pp512 / tg128 of the others with
#      LB_CUDA_PDL=0;
#   4. the eval of q4_k_m against f16 with windows one to a batch and four (LB_EVAL_GPU_BATCH=512 / 2048: the rate over
#      the whole run and over the windows alone), and in an exact context (--exact, 1 window: the CPU's order, slow); if nsys is there and
#      time is left, the eval profiled.
# Writes run.log (the summary) and all.tgz (every log) to OUT_DIR.
set -uo pipefail
TAR=${1:?usage: bench/cuda_decode.sh BIN_TAR_XZ OUT_DIR [SECONDS]}
OUT=${2:?usage}
DEADLINE=$(($(date +%s) + ${3:-500}))
L=/tmp/lb-decode
W=${LB_BENCH_DIR:-/tmp/lb8b}
[ -x build/cuda_kernels ] || { mkdir -p build && tar xJf "$TAR" -C build; } || exit 1
mkdir -p "$OUT" "$L" "$W"
. "$(dirname "$0")/cuda_run_common.sh"
log "1. kernel test with the deeper pipeline"
LB_CUDA_MVQ_DEEP=1 timeout "$(cap 90)" build/tests/test_cuda_kernels --quick >"$L/t_kernels_deep.log" 2>&1
echo "test_cuda_kernels --quick (LB_CUDA_MVQ_DEEP=1) rc=$? $(tail -1 "$L/t_kernels_deep.log")" | tee -a "$OUT/run.log"
grep FAIL "$L/t_kernels_deep.log" | head -10 | cut -c1-300 >>"$OUT/run.log"
log "2. weight kernels"
for d in 0 1; do
  [ "$(left)" -gt 60 ] || break
  LB_CUDA_MVQ_DEEP=$d timeout "$(cap 90)" build/cuda_kernels --quick >"$L/kernels_$d.txt" 2>&1
  echo "-- LB_CUDA_MVQ_DEEP=$d" >>"$OUT/run.log"
  tail -30 "$L/kernels_$d.txt" >>"$OUT/run.log"
done
log "3. 8B shape"
need=0
for t in q4_k_m q4_0 q8_0 f16; do [ -f "$W/$t.gguf" ] || need=1; done
if [ $need = 1 ]; then
  [ -f "$W/hf/config.json" ] || build/synth_checkpoint "$W/hf" models/tiny/tokenizer.json --shape llama3-8b >"$L/gen.log" 2>&1
  pids=()
  for t in q4_k_m q4_0 q8_0 f16; do
    [ -f "$W/$t.gguf" ] && continue
    timeout "$(cap 200)" build/lowbit quantize "$W/hf" -o "$W/$t.gguf" --type "$t" --encoder ref -t 4 >>"$L/gen.log" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  rm -rf "$W/hf"
fi
for t in q4_k_m q4_0 q8_0 f16; do
  [ "$(left)" -gt 30 ] || break
  echo "$t: $(timeout "$(cap 60)" build/cuda_bench "$W/$t.gguf" --device cuda --pp 512 --tg 128 --reps 3 2>&1 | grep -E "pp512|tg128|error" |
    tr -s ' ' | tr '\n' ' ')" | tee -a "$OUT/run.log"
done
for t in q4_k_m q4_0; do
  [ "$(left)" -gt 30 ] || break
  echo "$t LB_CUDA_MVQ_DEEP=1: $(LB_CUDA_MVQ_DEEP=1 timeout "$(cap 60)" build/cuda_bench "$W/$t.gguf" --device cuda --pp 1 --tg 128 --reps 3 2>&1 |
    grep -E "tg128|error" | tr -s ' ')" | tee -a "$OUT/run.log"
done
# the defaults since run 15 one at a time off (fused q/k/v and gate/up, the split attention, programmatic dependent
# launch), all three off (run 14's path)
for e in LB_CUDA_FUSE=0 LB_CUDA_ATT_SPLIT=0 LB_CUDA_PDL=0 "LB_CUDA_PDL=0 LB_CUDA_FUSE=0 LB_CUDA_ATT_SPLIT=0"; do
  [ "$(left)" -gt 30 ] || break
  echo "q4_k_m $e: $(env $e timeout "$(cap 60)" build/cuda_bench "$W/q4_k_m.gguf" --device cuda --pp 1 --tg 128 --reps 3 2>&1 |
    grep -E "tg128|error" | tr -s ' ')" | tee -a "$OUT/run.log"
done
for t in q4_0 q8_0 f16; do
  [ "$(left)" -gt 30 ] || break
  echo "$t LB_CUDA_PDL=0: $(LB_CUDA_PDL=0 timeout "$(cap 60)" build/cuda_bench "$W/$t.gguf" --device cuda --pp 512 --tg 128 --reps 3 2>&1 |
    grep -E "pp512|tg128|error" | tr -s ' ' | tr '\n' ' ')" | tee -a "$OUT/run.log"
done
for b in 512 2048; do # eval with a base: windows one to a batch (the default), and four
  [ "$(left)" -gt 40 ] || break
  LB_EVAL_GPU_BATCH=$b timeout "$(cap 90)" build/lowbit eval "$W/q4_k_m.gguf" --base "$W/f16.gguf" --text tests/golden/data/valid.txt \
    --ctx 512 --chunks 40 --device cuda --json >"$L/eval_$b.json" 2>"$L/eval_$b.err"
  echo "eval LB_EVAL_GPU_BATCH=$b: $(grep -o '"ppl": [0-9.]*\|"kld_mean": [0-9.e-]*\|"seconds": [0-9.]*\|"tokens_per_second": [0-9.]*\|"load_seconds": [0-9.]*\|"eval_tokens_per_second": [0-9.]*' \
    "$L/eval_$b.json" | tr '\n' ' ')" | tee -a "$OUT/run.log"
done
if [ "$(left)" -gt 60 ]; then # an exact context (exact.cu: the CPU's operations in its order)
  timeout "$(cap 90)" build/lowbit eval "$W/q4_k_m.gguf" --base "$W/f16.gguf" --text tests/golden/data/valid.txt --ctx 512 --chunks 1 \
    --device cuda --exact --json >"$L/eval_exact.json" 2>"$L/eval_exact.err"
  echo "eval --exact (1 window): $(grep -o '"ppl": [0-9.]*\|"kld_mean": [0-9.e-]*\|"load_seconds": [0-9.]*\|"eval_tokens_per_second": [0-9.]*' \
    "$L/eval_exact.json" | tr '\n' ' ') $(tail -1 "$L/eval_exact.err" | cut -c1-200)" | tee -a "$OUT/run.log"
fi
NSYS=$(command -v nsys || ls /opt/nvidia/nsight-systems/*/bin/nsys /usr/local/cuda/bin/nsys 2>/dev/null | head -1)
if [ -n "$NSYS" ] && [ "$(left)" -gt 90 ]; then
  log "4. eval profile"
  timeout "$(cap 80)" "$NSYS" profile -o "$L/eval" --force-overwrite true --stats=true build/lowbit eval "$W/q4_k_m.gguf" --base "$W/f16.gguf" \
    --text tests/golden/data/valid.txt --ctx 512 --chunks 8 --device cuda -q >"$L/nsys.txt" 2>&1
  grep -A 30 "cuda_gpu_kern_sum" "$L/nsys.txt" | cut -c1-220 >>"$OUT/run.log"
  grep -A 12 "cuda_api_sum" "$L/nsys.txt" | cut -c1-220 >>"$OUT/run.log"
  rm -f "$L"/eval.nsys-rep "$L"/eval.sqlite
else
  echo "nsys: ${NSYS:-not found}, $(left) s left: no eval profile" >>"$OUT/run.log"
fi
log done
tar czf "$OUT/all.tgz" -C /tmp lb-decode
