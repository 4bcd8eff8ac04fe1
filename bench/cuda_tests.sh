#!/usr/bin/env bash
# cuda_tests.sh - every GPU test (tests/cuda) from binaries built elsewhere, in one device call: from the repository
# root, with bench/cuda_session.sh's binary tarball:
#   bench/cuda_tests.sh BIN_TAR_XZ OUT_DIR [SECONDS]     (default 400)
# test_cuda_attention, test_cuda_gptq, test_cuda_gptq_shadow, test_cuda_calib, test_cuda_forward (and again with
# LB_CUDA_FLASH=0: ops.cu's attention for prompts, and with LB_CUDA_ATT_SPLIT=0 LB_CUDA_FUSE=0 LB_CUDA_PDL=0
# LB_CUDA_FUSE_ACT=0 LB_CUDA_MVH=0 LB_CUDA_MVT=0: the decode path before run 15's defaults), test_cuda_calib again with LB_CUDA_PDL=0, test_cuda_multi,
# test_cuda_kernels --quick (and with LB_CUDA_MVQ_DEEP=1) (TESTS overrides the list; "forward_noflash" / "forward_plain" / "calib_plain" /
# "kernels_deep" are those variants; "forward_split" runs with LB_CUDA_ATT_ONE=0 (the split decode attention at every context), "forward_one32" with LB_CUDA_ATT_ONE=32 (two decode graphs, crossing at position 32); "attention_hbN" / "forward_hbN" with LB_CUDA_ATT_HB=N (N heads a decode attention block); "kernels_pN" / "forward_pN" with LB_CUDA_MVM_P=N (k_mvm's step groups of N warps for every product, split in clusters; N = 0: never), "kernels_p4ns" with LB_CUDA_MVM_P=4 LB_CUDA_MVM_SPLIT=0; "kernels_nomvh" runs with LB_CUDA_MVH=0, "kernels_mvt" / "forward_mvt" with LB_CUDA_MVT=1 (k_mvt for every one-token product), "kernels_nomvt" with LB_CUDA_MVT=0 (k_mvq for all), "kernels_noq6k" with LB_CUDA_MVM_Q6K=0 (q6_K's batches on dp4a), "kernels_noxs" with LB_CUDA_MVM_XS=0 (k_mvm's activations from global memory), "kernels_noxsmt1" with that and LB_CUDA_MVM_MT=1, "kernels_mvtst4" / "forward_mvtst4" with LB_CUDA_MVT=1 LB_CUDA_MVT_ST=4 (k_mvt everywhere at four stages), "kernels_mvmmt1" / "forward_mvmmt1" with LB_CUDA_MVM_MT=1 (k_mvm's 16-row blocks), "kernels_rmaj" with LB_CUDA_MVM_RMAJ=1 (k_mvm's row-major copies)), each cut at its share of the time. Writes run.log (each test's last line,
# its FAIL lines and its wall time) and tests.tgz (every log) to OUT_DIR.
set -uo pipefail
TAR=${1:?usage: bench/cuda_tests.sh BIN_TAR_XZ OUT_DIR [SECONDS]}
OUT=${2:?usage}
DEADLINE=$(($(date +%s) + ${3:-400}))
L=/tmp/lb-tests
[ -x build/tests/test_cuda_attention ] || { mkdir -p build && tar xJf "$TAR" -C build; } || exit 1
mkdir -p "$OUT" "$L"
. "$(dirname "$0")/cuda_run_common.sh"
export LOWBIT=build/lowbit
for t in ${TESTS:-attention gptq gptq_shadow calib calib_plain forward forward_noflash forward_plain forward_split multi kernels kernels_deep}; do
  [ "$(left)" -gt 15 ] || { echo "$t: not run (time)" | tee -a "$OUT/run.log"; continue; }
  bin=build/tests/test_cuda_${t%_*} args=() envs=()
  [ "$t" = gptq_shadow ] && bin=build/tests/test_cuda_gptq_shadow
  [[ $t = kernels* ]] && args=(--quick)
  [ "$t" = forward_noflash ] && envs=(LB_CUDA_FLASH=0)
  [ "$t" = forward_plain ] && envs=(LB_CUDA_ATT_SPLIT=0 LB_CUDA_FUSE=0 LB_CUDA_PDL=0 LB_CUDA_FUSE_ACT=0 LB_CUDA_MVH=0 LB_CUDA_MVT=0 LB_CUDA_MVM_XS=0 LB_CUDA_MVM_Q6K=0 LB_CUDA_ROPE_FUSE=0 LB_CUDA_MVM_MT=1)
  [ "$t" = forward_split ] && envs=(LB_CUDA_ATT_ONE=0)
  [ "$t" = forward_one32 ] && envs=(LB_CUDA_ATT_ONE=32)
  [[ $t = attention_hb? || $t = forward_hb? ]] && envs=(LB_CUDA_ATT_HB=${t: -1})
  [[ $t = kernels_p? || $t = forward_p? ]] && envs=(LB_CUDA_MVM_P=${t: -1})
  [ "$t" = kernels_p4ns ] && envs=(LB_CUDA_MVM_P=4 LB_CUDA_MVM_SPLIT=0)
  [ "$t" = calib_plain ] && envs=(LB_CUDA_PDL=0)
  [ "$t" = kernels_deep ] && envs=(LB_CUDA_MVQ_DEEP=1)
  [ "$t" = kernels_nomvh ] && envs=(LB_CUDA_MVH=0)
  [ "$t" = kernels_mvt ] && envs=(LB_CUDA_MVT=1)
  [ "$t" = forward_mvt ] && envs=(LB_CUDA_MVT=1)
  [ "$t" = kernels_nomvt ] && envs=(LB_CUDA_MVT=0)
  [ "$t" = kernels_noq6k ] && envs=(LB_CUDA_MVM_Q6K=0)
  [ "$t" = kernels_rmaj ] && envs=(LB_CUDA_MVM_RMAJ=1)
  [ "$t" = kernels_noxs ] && envs=(LB_CUDA_MVM_XS=0)
  [ "$t" = kernels_noxsmt1 ] && envs=(LB_CUDA_MVM_XS=0 LB_CUDA_MVM_MT=1)
  [ "$t" = kernels_mvtst4 ] && envs=(LB_CUDA_MVT=1 LB_CUDA_MVT_ST=4)
  [ "$t" = forward_mvtst4 ] && envs=(LB_CUDA_MVT=1 LB_CUDA_MVT_ST=4)
  [ "$t" = kernels_mvmmt1 ] && envs=(LB_CUDA_MVM_MT=1)
  [ "$t" = forward_mvmmt1 ] && envs=(LB_CUDA_MVM_MT=1)
  t0=$(date +%s%N)
  env "${envs[@]}" timeout "$(cap 200)" "$bin" "${args[@]}" >"$L/$t.log" 2>&1
  rc=$?
  echo "test_cuda_$t rc=$rc $(tail -1 "$L/$t.log") ($((($(date +%s%N) - t0) / 1000000)) ms)" | tee -a "$OUT/run.log"
  grep -E "FAIL" "$L/$t.log" | cut -c1-300 | head -12 >>"$OUT/run.log"
done
grep -hE "^(flash|plain|split|one) T" "$L/attention.log" >>"$OUT/run.log" 2>/dev/null
log done
tar czf "$OUT/tests.tgz" -C /tmp lb-tests
