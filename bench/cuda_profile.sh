#!/usr/bin/env bash
# cuda_profile.sh - one device call that profiles the decode path (issue 13): from the repository root, with
# bench/cuda_session.sh's binary tarball:
#   bench/cuda_profile.sh BIN_TAR_XZ OUT_DIR [SECONDS]     (default 400)
#   1. TESTS (default "attention forward kernels kernels_mvt forward_plain calib multi forward_mvt forward_prefetch forward_rope kernels_nomvh") through bench/cuda_tests.sh's loop;
#   2. the Llama-3-8B-shape checkpoint (32 layers) at q4_k_m (kept in /tmp/lb8b, as bench/cuda_decode.sh): tg128 with the
#      the defaults, with the L2 prefetch of the next product's weights (LB_CUDA_PREFETCH=1, 16 and 32 MB), with the
#      rotary inside the split attention (LB_CUDA_ROPE_ATT=1), with the bulk-copy kernel (LB_CUDA_MVT=1), and all three
#      (before it: greedy text on tiny with ROPE_ATT and PREFETCH against the default's, which must be the same);
#   3. Nsight Compute, every section (--set full), on one launch of the batch-1 weight kernel of q4_k and of q8_0 on
#      the 14336 x 4096 shape (cuda_kernels --types T --batches 1 --shapes 1: weights rotated past L2);
#   4. the weight kernels alone, batch 1 (cuda_kernels --quick --batches 1; again with LB_CUDA_MVT=1; f16 and bf16 with
#      LB_CUDA_MVH=0, k_matvec);
#   5. every kernel of about one layer of a 8B decode step under Nsight Compute (SpeedOfLight and the warp states:
#      duration, DRAM share, what the warps waited on);
#   6. the 8B shape at f16: tg128 without the one-token F16 kernel k_mvh (LB_CUDA_MVH=0) and with it (the default).
# Writes run.log (the summary) and prof.tgz (every log and ncu report as text) to OUT_DIR.
set -uo pipefail
TAR=${1:?usage: bench/cuda_profile.sh BIN_TAR_XZ OUT_DIR [SECONDS]}
OUT=${2:?usage}
SECS=${3:-400}
DEADLINE=$(($(date +%s) + SECS))
L=/tmp/lb-prof
W=/tmp/lb8b
[ -x build/cuda_kernels ] || { mkdir -p build && tar xJf "$TAR" -C build; } || exit 1
mkdir -p "$OUT" "$L" "$W"
. "$(dirname "$0")/cuda_run_common.sh"
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
log "1. tests"
TESTS=${TESTS:-attention forward kernels kernels_mvt forward_plain calib multi forward_mvt forward_prefetch forward_rope kernels_nomvh} bash "$(dirname "$0")/cuda_tests.sh" "$TAR" "$OUT/t" $(($(left) > 300 ? 175 : $(left) / 2)) >/dev/null 2>&1
cat "$OUT/t/run.log" >>"$OUT/run.log" 2>/dev/null
mv "$OUT/t/tests.tgz" "$L/" 2>/dev/null
rm -rf "$OUT/t"
# the experiments that must not change a single logit: greedy text on tiny with each against the default
timeout 30 build/lowbit run models/tiny -p "Once upon a time" -n 96 --ignore-eos --device cuda -q >"$L/run_default.txt" 2>&1
for e in LB_CUDA_ROPE_ATT=1 LB_CUDA_PREFETCH=1; do
  env $e timeout 30 build/lowbit run models/tiny -p "Once upon a time" -n 96 --ignore-eos --device cuda -q >"$L/run_$e.txt" 2>&1
  cmp -s "$L/run_default.txt" "$L/run_$e.txt" && echo "run tiny $e: the default's text" || echo "run tiny $e: DIFFERENT text"
done | tee -a "$OUT/run.log"
log "2. 8B shape, tg128"
if [ ! -f "$W/q4_k_m.gguf" ]; then
  [ -f "$W/hf/config.json" ] || timeout "$(cap 60)" build/synth_checkpoint "$W/hf" models/tiny/tokenizer.json --shape llama3-8b >"$L/gen.log" 2>&1
  timeout "$(cap 120)" build/lowbit quantize "$W/hf" -o "$W/q4_k_m.gguf" --type q4_k_m --encoder ref -t 16 >>"$L/gen.log" 2>&1
  tail -2 "$L/gen.log" >>"$OUT/run.log"
fi
for e in LB_CUDA_FUSE_ACT=1 LB_CUDA_PREFETCH=1 LB_CUDA_ROPE_ATT=1 LB_CUDA_MVT=1 "LB_CUDA_MVT=1 LB_CUDA_PREFETCH=1 LB_CUDA_ROPE_ATT=1" "LB_CUDA_PREFETCH=1 LB_CUDA_PREFETCH_MB=32" LB_CUDA_FUSE_ACT=1; do
  [ "$(left)" -gt 30 ] || break
  echo "q4_k_m $e: $(env $e timeout "$(cap 60)" build/cuda_bench "$W/q4_k_m.gguf" --device cuda --pp 1 --tg 128 --reps 3 2>&1 |
    grep -E "tg128|error" | tr -s ' ')" | tee -a "$OUT/run.log"
done
log "3. ncu of the batch-1 weight kernel"
for t in q4_k q8_0; do
  [ "$(left)" -gt 60 ] && [ -n "$NCU" ] || break
  timeout "$(cap 90)" "$NCU" --clock-control none -k regex:k_mv -s 30 -c 1 --set full --import-source no \
    build/cuda_kernels --types $t --batches 1 --shapes 1 >"$L/ncu_$t.txt" 2>&1
  echo "-- ncu $t rc=$?" >>"$OUT/run.log"
  grep -E "^  [a-zA-Z_].*\(|Duration|DRAM Throughput|Memory Throughput|Achieved Occupancy|Registers Per|Warp Cycles Per Issued|Issued Warp|No Eligible|Stall|L1/TEX Hit|L2 Hit|Block Limit|Theoretical Occ|Executed Ipc" \
    "$L/ncu_$t.txt" | sed -E 's/ +/ /g' | head -40 >>"$OUT/run.log"
done
log "4. weight kernels, batch 1"
timeout "$(cap 60)" build/cuda_kernels --quick --batches 1 >"$L/kernels.txt" 2>&1
tail -45 "$L/kernels.txt" >>"$OUT/run.log"
echo "-- LB_CUDA_MVT=1" >>"$OUT/run.log"
LB_CUDA_MVT=1 timeout "$(cap 60)" build/cuda_kernels --quick --batches 1 >"$L/kernels_mvt.txt" 2>&1
tail -45 "$L/kernels_mvt.txt" >>"$OUT/run.log"
echo "-- LB_CUDA_MVH=0" >>"$OUT/run.log"
LB_CUDA_MVH=0 timeout "$(cap 60)" build/cuda_kernels --quick --batches 1 --types f16,bf16 >"$L/kernels_mvh.txt" 2>&1
tail -8 "$L/kernels_mvh.txt" >>"$OUT/run.log"
log "5. ncu of a decode step"
if [ "$(left)" -gt 40 ] && [ -n "$NCU" ]; then
  LB_CUDA_NO_GRAPH=1 timeout "$(cap 150)" "$NCU" --clock-control none -s 1100 -c 48 --section SpeedOfLight --section WarpStateStats \
    build/cuda_bench "$W/q4_k_m.gguf" --pp 1 --tg 8 --reps 1 >"$L/ncu_step.txt" 2>&1
  echo "-- ncu decode step rc=$?" >>"$OUT/run.log"
  grep -E "^  [a-zA-Z_].*\(|Duration|DRAM Throughput" "$L/ncu_step.txt" | sed -E 's/\(const .*//; s/\(float.*//; s/ +/ /g' |
    paste - - - | head -50 >>"$OUT/run.log"
fi
log "6. 8B F16, tg128 with and without k_mvh"
if [ "$(left)" -gt 90 ] && [ ! -f "$W/f16.gguf" ]; then
  [ -f "$W/hf/config.json" ] || timeout "$(cap 60)" build/synth_checkpoint "$W/hf" models/tiny/tokenizer.json --shape llama3-8b >>"$L/gen.log" 2>&1
  timeout "$(cap 90)" build/lowbit quantize "$W/hf" -o "$W/f16.gguf" --type f16 -t 16 >>"$L/gen.log" 2>&1
fi
for e in LB_CUDA_MVH=0 LB_CUDA_MVH=1; do
  [ "$(left)" -gt 25 ] && [ -f "$W/f16.gguf" ] || break
  echo "f16 $e: $(env $e timeout "$(cap 60)" build/cuda_bench "$W/f16.gguf" --device cuda --pp 1 --tg 128 --reps 3 2>&1 |
    grep -E "tg128|error" | tr -s ' ')" | tee -a "$OUT/run.log"
done
log done
tar czf "$OUT/prof.tgz" -C /tmp lb-prof
