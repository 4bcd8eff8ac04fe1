#!/usr/bin/env bash
# cuda_mvm_batch.sh - the batch-8/16 products under k_mvm's alternatives in one device call: the GPU tests of TESTS
# (cuda_tests.sh, TEST_S seconds, default 200), then build/cuda_kernels's batch table (14336 x 4096 and the other
# shapes it times, against cuBLAS BF16 in the same process) with the defaults and under each of ALTS (';'-separated),
# ROUNDS times round (default 2), while S seconds last (default 500). From the repository root, with a
# bench/cuda_pack.sh tarball (carry bench/out/bin):
#   ALTS="LB_CUDA_MVM_P=4;LB_CUDA_MVM_P=8" TESTS="kernels kernels_p4 kernels_p8" OUT=... bash bench/cuda_mvm_batch.sh
# PREV: another build's cuda_kernels, xz-compressed (carried beside bench/out/bin, e.g. bench/out/prev_k/cuda_kernels.xz),
# timed first in each round ("prev") against this build's defaults and ALTS. Each table gets KT seconds (default 30).
# Writes OUT/run.log (the card, the tests' lines, then each table headed by its environment), OUT/tests.tgz and
# OUT/res.txt (registers, stack and spills of every k_mvm instance, from the toolkit's cuobjdump).
set -u
B=bench/out/bin/bin.tar.xz
DEADLINE=$(($(date +%s) + ${S:-500}))
mkdir -p build && tar xJf $B -C build || exit 1
. "$(dirname "$0")/cuda_run_common.sh"
TESTS="${TESTS:-kernels}" bash bench/cuda_tests.sh $B "$OUT/t" "${TEST_S:-200}" >/dev/null 2>&1
grep -v "gpu - ref" "$OUT/t/run.log" >>"$OUT/run.log" 2>/dev/null
cp "$OUT/t/tests.tgz" "$OUT/tests.tgz" 2>/dev/null
rm -rf "$OUT/t"
/usr/local/cuda/bin/cuobjdump -res-usage build/cuda_kernels 2>&1 | grep -A1 "k_mvm" >"$OUT/res.txt"
IFS=';' read -r -a alts <<<"${ALTS:?set ALTS}"
envs=("" "${alts[@]}")
if [ -n "${PREV:-}" ]; then
  mkdir -p prev && xz -dc "$PREV" >prev/cuda_kernels && chmod +x prev/cuda_kernels && envs=(prev "${envs[@]}")
fi
kt=${KT:-30}
for round in $(seq "${ROUNDS:-2}"); do
  for e in "${envs[@]}"; do
    [ "$(left)" -gt $((kt + 5)) ] || break 2
    log "round $round: ${e:-defaults}"
    bin=build/cuda_kernels
    [ "$e" = prev ] && bin=prev/cuda_kernels e=
    env $e LD_LIBRARY_PATH=$PWD/build:$LD_LIBRARY_PATH timeout "$kt" $bin --types "${KTYPES:-q4_k,q4_0}" --batches "${BATCHES:-8,16}" >>"$OUT/run.log" 2>&1
  done
done
log done
cat "$OUT/run.log"
