#!/usr/bin/env bash
# cuda_table.sh - one device call for issue 13's table at a commit: from the repository root, with bench/cuda_session.sh's
# binary tarball:
#   bench/cuda_table.sh BIN_TAR_XZ OUT_DIR [SECONDS]     (default 550)
#   1. TESTS (default "attention forward kernels kernels_noxs forward_plain calib multi") through
#      bench/cuda_tests.sh's loop;
#   2. the weight kernels at batch 8 and 16 against cuBLAS BF16 (cuda_kernels --quick --batches 8,16; again with the
#      environment ALT, default LB_CUDA_MVM_XS=0: k_mvm's activations from global memory), Nsight Compute
#      (every section) on one launch of the tensor-core kernel k_mvm (q4_k, batch 8, 14336 x 4096), and batch 1;
#   3. the Llama-3-8B-shape checkpoint (32 layers, made in /tmp/lb8b) at q4_k_m, q4_0, q8_0 and f16: pp512 and tg128
#      with the defaults (cuda_bench --pp 512 --tg 128 --reps 3; TYPES overrides the list), and q4_k_m's prompt of 16
#      tokens (the batch kernels) with the defaults, with ALT, and with the defaults again.
# Writes run.log (the summary) and table.tgz (every log) to OUT_DIR.
set -uo pipefail
TAR=${1:?usage: bench/cuda_table.sh BIN_TAR_XZ OUT_DIR [SECONDS]}
OUT=${2:?usage}
DEADLINE=$(($(date +%s) + ${3:-550}))
L=/tmp/lb-table
ALT=${ALT:-LB_CUDA_MVM_XS=0}
[ -x build/cuda_kernels ] || { mkdir -p build && tar xJf "$TAR" -C build; } || exit 1
mkdir -p "$OUT" "$L"
. "$(dirname "$0")/cuda_run_common.sh"
log "1. tests"
TESTS=${TESTS:-attention forward kernels kernels_noxs forward_plain calib multi} bash "$(dirname "$0")/cuda_tests.sh" "$TAR" "$OUT/t" $(($(left) > 350 ? 190 : $(left) / 2)) >/dev/null 2>&1
cat "$OUT/t/run.log" >>"$OUT/run.log" 2>/dev/null
mv "$OUT/t/tests.tgz" "$L/" 2>/dev/null
rm -rf "$OUT/t"
log "2. weight kernels"
timeout "$(cap 90)" build/cuda_kernels --quick --batches 8,16 --types q4_k,q4_0,q8_0,q6_k,q5_k >"$L/kernels_b816.txt" 2>&1
tail -43 "$L/kernels_b816.txt" >>"$OUT/run.log"
echo "-- $ALT" >>"$OUT/run.log"
env $ALT timeout "$(cap 90)" build/cuda_kernels --quick --batches 8,16 --types q4_k,q4_0,q8_0,q6_k,q5_k >"$L/kernels_alt.txt" 2>&1
grep -E "^q[0-9]_[0-9k] " "$L/kernels_alt.txt" >>"$OUT/run.log"
if [ "$(left)" -gt 200 ] && [ -n "$NCU" ]; then
  timeout "$(cap 60)" "$NCU" --clock-control none -k regex:k_mvm -s 30 -c 1 --set full --import-source no \
    build/cuda_kernels --types q4_k --batches 8 --shapes 1 >"$L/ncu_mvm.txt" 2>&1
  echo "-- ncu k_mvm q4_k batch 8 rc=$?" >>"$OUT/run.log"
  grep -E "^  [a-zA-Z_].*\(|Duration|DRAM Throughput|Achieved Occupancy|Registers Per|Issued Warp|No Eligible|L1/TEX Hit|Theoretical Occ|Executed Ipc|stalled" \
    "$L/ncu_mvm.txt" | sed -E 's/ +/ /g' | head -24 >>"$OUT/run.log"
fi
timeout "$(cap 60)" build/cuda_kernels --quick --batches 1 --types q4_k,q4_0,q8_0,q6_k >"$L/kernels_b1.txt" 2>&1
grep -E "^(type|q4_k|q4_0|q8_0|q6_k) " "$L/kernels_b1.txt" >>"$OUT/run.log"
log "3. 8B shape"
for t in ${TYPES:-q4_k_m q4_0 q8_0 f16}; do
  [ "$(left)" -gt 60 ] || break
  GEN_LOG=$L/gen.log file_8b $t
  echo "$t: $(timeout "$(cap 60)" build/cuda_bench "$W/$t.gguf" --device cuda --pp 512 --tg 128 --reps 3 2>&1 | grep -E "pp512|tg128|error" | tr -s ' ' | tr '\n' ' ')" |
    tee -a "$OUT/run.log"
  if [ $t = q4_k_m ]; then
    for a in "" "$ALT" ""; do
      echo "$t pp16 ${a:-defaults}: $(env $a timeout "$(cap 60)" build/cuda_bench "$W/$t.gguf" --device cuda --pp 16 --tg 1 --reps 5 2>&1 | grep -E "pp16|error" | tr -s ' ')" |
        tee -a "$OUT/run.log"
    done
  fi
  rm -f "$W/$t.gguf" # the disk holds the checkpoint and one file at a time
done
log done
tar czf "$OUT/table.tgz" -C /tmp lb-table
