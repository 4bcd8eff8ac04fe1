#!/usr/bin/env bash
# cuda_flash.sh - one device call for the prompt attention kernel (cuda/flash.cu): from the repository root, with
# bench/cuda_session.sh's binary tarball (with tests/test_cuda_attention):
#   bench/cuda_flash.sh BIN_TAR_XZ OUT_DIR [SECONDS]     (default 450)
#   1. test_cuda_attention (both kernels against float64), test_cuda_forward with LB_CUDA_FLASH=1 (every model and
#      type against the CPU);
#   2. the Llama-3-8B-shape checkpoint (32 layers) at q4_k_m and f16 (as bench/cuda_device.sh gen makes them, kept in
#      /tmp/lb8b while the machine stays warm): cuda_bench --pp 512 with LB_CUDA_FLASH=0 and 1, alternating;
#   3. eval of q4_k_m against its f16 base on the GPU (issue 13's 9,000 tokens/s) with LB_CUDA_FLASH=0 and 1;
#   4. if time is left: ncu of a 512-token prompt's first layer with flash (the kernels' durations).
# Writes run.log (the summary) and all.tgz (every log) to OUT_DIR.
set -uo pipefail
TAR=${1:?usage: bench/cuda_flash.sh BIN_TAR_XZ OUT_DIR [SECONDS]}
OUT=${2:?usage}
DEADLINE=$(($(date +%s) + ${3:-450}))
L=/tmp/lb-flash
W=${LB_BENCH_DIR:-/tmp/lb8b}
[ -x build/tests/test_cuda_attention ] || { mkdir -p build && tar xJf "$TAR" -C build; } || exit 1
mkdir -p "$OUT" "$L" "$W"
. "$(dirname "$0")/cuda_run_common.sh"
log "1. tests"
timeout "$(cap 60)" build/tests/test_cuda_attention >"$L/t_attention.log" 2>&1
echo "test_cuda_attention rc=$? $(tail -1 "$L/t_attention.log")" | tee -a "$OUT/run.log"
grep -E "FAIL|^flash|^plain" "$L/t_attention.log" | cut -c1-300 >>"$OUT/run.log"
LB_CUDA_FLASH=1 LOWBIT=build/lowbit timeout "$(cap 150)" build/tests/test_cuda_forward >"$L/t_forward_flash.log" 2>&1
echo "test_cuda_forward (LB_CUDA_FLASH=1) rc=$? $(tail -1 "$L/t_forward_flash.log")" | tee -a "$OUT/run.log"
grep -E "FAIL" "$L/t_forward_flash.log" | cut -c1-300 | head -20 >>"$OUT/run.log"
log "2. 8B shape"
if [ ! -f "$W/q4_k_m.gguf" ] || [ ! -f "$W/f16.gguf" ]; then
  [ -f "$W/hf/config.json" ] || build/synth_checkpoint "$W/hf" models/tiny/tokenizer.json --shape llama3-8b >"$L/gen.log" 2>&1
  timeout "$(cap 200)" build/lowbit quantize "$W/hf" -o "$W/q4_k_m.gguf" --type q4_k_m --encoder ref -t "$(nproc)" >>"$L/gen.log" 2>&1 &
  timeout "$(cap 200)" build/lowbit quantize "$W/hf" -o "$W/f16.gguf" --type f16 -t 4 >>"$L/gen.log" 2>&1
  wait
  rm -rf "$W/hf"
fi
for r in 1 2; do
  for t in q4_k_m f16; do
    for f in 0 1; do
      [ "$(left)" -gt 30 ] || break 3
      echo "flash=$f $t: $(LB_CUDA_FLASH=$f timeout "$(cap 60)" build/cuda_bench "$W/$t.gguf" --device cuda --pp 512 --tg 4 --reps 3 2>&1 |
        grep -E "pp512|error" | tr -s ' ' | head -2)" | tee -a "$OUT/run.log"
    done
  done
done
log "3. eval"
for f in 0 1; do
  [ "$(left)" -gt 40 ] || break
  LB_CUDA_FLASH=$f timeout "$(cap 90)" build/lowbit eval "$W/q4_k_m.gguf" --base "$W/f16.gguf" --text tests/golden/data/valid.txt --ctx 512 \
    --chunks 40 --device cuda --json >"$L/eval_$f.json" 2>"$L/eval_$f.err"
  echo "eval flash=$f: $(grep -o '"ppl": [0-9.]*\|"kld_mean": [0-9.e-]*\|"top1": [0-9.]*\|"tokens_per_second": [0-9.]*' "$L/eval_$f.json" | tr '\n' ' ')" |
    tee -a "$OUT/run.log"
done
if [ "$(left)" -gt 100 ]; then
  log "4. ncu"
  NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
  LB_CUDA_FLASH=1 timeout "$(cap 90)" "$NCU" --clock-control none -c 30 --section SpeedOfLight build/cuda_bench "$W/q4_k_m.gguf" --pp 512 \
    --tg 1 --reps 1 >"$L/ncu_pp.txt" 2>&1
  grep -E "^  [a-zA-Z_].*\(|Duration" "$L/ncu_pp.txt" | sed -E 's/\(const .*//; s/ +/ /g' | paste - - | head -40 >>"$OUT/run.log"
fi
log done
tar czf "$OUT/all.tgz" -C /tmp lb-flash
