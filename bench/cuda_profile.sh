#!/usr/bin/env bash
# cuda_profile.sh - one device call that profiles the decode path (issue 13): from the repository root, with
# bench/cuda_session.sh's binary tarball:
#   bench/cuda_profile.sh BIN_TAR_XZ OUT_DIR [SECONDS]     (default 400)
#   1. TESTS (default "attention forward kernels") through bench/cuda_tests.sh's loop;
#   2. Nsight Compute, every section (--set full), on one launch of the batch-1 weight kernel of q4_k and of q8_0 on
#      the 14336 x 4096 shape (cuda_kernels --types T --batches 1 --shapes 1: weights rotated past L2);
#   3. the weight kernels alone, batch 1 (cuda_kernels --quick --batches 1);
#   4. a 2-layer Llama-3-8B-shape checkpoint (vocabulary 32000) at q4_k_m: tg128, and every kernel of one decode
#      step under Nsight Compute (SpeedOfLight and the warp states: duration, DRAM share, what the warps waited on).
# Writes run.log (the summary) and prof.tgz (every log and ncu report as text) to OUT_DIR.
set -uo pipefail
TAR=${1:?usage: bench/cuda_profile.sh BIN_TAR_XZ OUT_DIR [SECONDS]}
OUT=${2:?usage}
SECS=${3:-400}
DEADLINE=$(($(date +%s) + SECS))
L=/tmp/lb-prof
W=/tmp/lb8b2
[ -x build/cuda_kernels ] || { mkdir -p build && tar xJf "$TAR" -C build; } || exit 1
mkdir -p "$OUT" "$L" "$W"
. "$(dirname "$0")/cuda_run_common.sh"
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
log "1. tests"
TESTS=${TESTS:-attention forward kernels} bash "$(dirname "$0")/cuda_tests.sh" "$TAR" "$OUT/t" $(($(left) > 200 ? 150 : $(left) / 2)) >/dev/null 2>&1
cat "$OUT/t/run.log" >>"$OUT/run.log" 2>/dev/null
mv "$OUT/t/tests.tgz" "$L/" 2>/dev/null
rm -rf "$OUT/t"
log "2. ncu of the batch-1 weight kernel"
for t in q4_k q8_0; do
  [ "$(left)" -gt 60 ] && [ -n "$NCU" ] || break
  timeout "$(cap 90)" "$NCU" --clock-control none -k regex:k_mv -s 30 -c 1 --set full --import-source no \
    build/cuda_kernels --types $t --batches 1 --shapes 1 >"$L/ncu_$t.txt" 2>&1
  echo "-- ncu $t rc=$?" >>"$OUT/run.log"
  grep -E "^  [a-zA-Z_].*\(|Duration|DRAM Throughput|Memory Throughput|Achieved Occupancy|Registers Per|Warp Cycles Per Issued|Issued Warp|No Eligible|Stall|L1/TEX Hit|L2 Hit|Block Limit|Theoretical Occ|Executed Ipc" \
    "$L/ncu_$t.txt" | sed -E 's/ +/ /g' | head -40 >>"$OUT/run.log"
done
log "3. weight kernels, batch 1"
timeout "$(cap 60)" build/cuda_kernels --quick --batches 1 >"$L/kernels.txt" 2>&1
tail -45 "$L/kernels.txt" >>"$OUT/run.log"
log "4. 2-layer 8B shape"
if [ ! -f "$W/q4_k_m.gguf" ]; then
  timeout "$(cap 60)" build/synth_checkpoint "$W/hf" models/tiny/tokenizer.json 2 --shape llama3-8b --vocab 32000 >"$L/gen.log" 2>&1
  timeout "$(cap 90)" build/lowbit quantize "$W/hf" -o "$W/q4_k_m.gguf" --type q4_k_m --encoder ref -t 16 >>"$L/gen.log" 2>&1
fi
echo "q4_k_m 2 layers: $(timeout "$(cap 60)" build/cuda_bench "$W/q4_k_m.gguf" --device cuda --pp 1 --tg 128 --reps 3 2>&1 |
  grep -E "tg128|error" | tr -s ' ')" | tee -a "$OUT/run.log"
if [ "$(left)" -gt 40 ] && [ -n "$NCU" ]; then
  LB_CUDA_NO_GRAPH=1 timeout "$(cap 120)" "$NCU" --clock-control none -s 200 -c 40 --section SpeedOfLight --section WarpStateStats \
    build/cuda_bench "$W/q4_k_m.gguf" --pp 1 --tg 8 --reps 1 >"$L/ncu_step.txt" 2>&1
  echo "-- ncu decode step rc=$?" >>"$OUT/run.log"
  grep -E "^  [a-zA-Z_].*\(|Duration|DRAM Throughput" "$L/ncu_step.txt" | sed -E 's/\(const .*//; s/\(float.*//; s/ +/ /g' |
    paste - - - | head -45 >>"$OUT/run.log"
fi
log done
tar czf "$OUT/prof.tgz" -C /tmp lb-prof
