#!/usr/bin/env bash
# cuda_mvm_batch.sh - the batch-8/16 products under k_mvm's alternatives in one device call: the GPU tests of TESTS
# (cuda_tests.sh, TEST_S seconds, default 200), then build/cuda_kernels's batch table (14336 x 4096 and the other
# shapes it times, against cuBLAS BF16 in the same process) with the defaults and under each of ALTS (';'-separated),
# ROUNDS times round (default 2), while S seconds last (default 500). From the repository root, with a
# bench/cuda_pack.sh tarball (carry bench/out/bin):
#   ALTS="LB_CUDA_MVM_P=4;LB_CUDA_MVM_P=8" TESTS="kernels kernels_p4 kernels_p8" OUT=... bash bench/cuda_mvm_batch.sh
# Writes OUT/run.log (the card, the tests' lines, then each table headed by its environment) and OUT/tests.tgz.
set -u
B=bench/out/bin/bin.tar.xz
DEADLINE=$(($(date +%s) + ${S:-500}))
mkdir -p build && tar xJf $B -C build || exit 1
. "$(dirname "$0")/cuda_run_common.sh"
TESTS="${TESTS:-kernels}" bash bench/cuda_tests.sh $B "$OUT/t" "${TEST_S:-200}" >/dev/null 2>&1
grep -v "gpu - ref" "$OUT/t/run.log" >>"$OUT/run.log" 2>/dev/null
cp "$OUT/t/tests.tgz" "$OUT/tests.tgz" 2>/dev/null
rm -rf "$OUT/t"
IFS=';' read -r -a alts <<<"${ALTS:?set ALTS}"
envs=("" "${alts[@]}")
for round in $(seq "${ROUNDS:-2}"); do
  for e in "${envs[@]}"; do
    [ "$(left)" -gt 35 ] || break 2
    log "round $round: ${e:-defaults}"
    env $e timeout 30 build/cuda_kernels --types "${KTYPES:-q4_k,q4_0}" --batches "${BATCHES:-8,16}" >>"$OUT/run.log" 2>&1
  done
done
log done
cat "$OUT/run.log"
