#!/usr/bin/env bash
# cuda_decode_ab.sh - one device call for decode alternatives (environment switches): the GPU tests at the defaults
# (kernels, forward, attention, calib, multi), test_cuda_kernels under each alternative, the batch-1 kernel table
# (cuda_kernels) at the defaults and under each, then the forward test under each and tg128 alternating with the
# defaults (bench/cuda_env_ab.sh). From the repository root, with a bench/cuda_pack.sh tarball whose commit is in
# bench/out/bin/commit.txt (carry bench/out/bin):
#   ALTS="VAR=V;VAR=V VAR=V" OUT=... bash bench/cuda_decode_ab.sh [SECONDS]     (default 520)
# ALTS and TYPES (default "q4_0 q4_k_m") go to cuda_env_ab.sh. Writes OUT/run.log, OUT/kern1.txt, OUT/gen.log and
# OUT/rest.tgz (the tests' logs, the decode traces). Run 45 (BENCHMARKS.md) is this script's first use.
set -u
: "${ALTS:?set ALTS}"
BIN=bench/out/bin/bin.tar.xz
T0=$(date +%s)
mkdir -p build && tar xJf $BIN -C build
R=$OUT/run.log
cat bench/out/bin/commit.txt >$R
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader >>$R
TESTS="kernels forward attention calib multi" bash bench/cuda_tests.sh $BIN $OUT/t 80 >/dev/null 2>&1
cat $OUT/t/run.log >>$R
timeout 40 build/cuda_kernels --types q4_k,q4_0,q6_k,q8_0 --batches 1 --shapes 4 >$OUT/kern1.txt 2>&1
IFS=';' read -r -a alts <<<"$ALTS"
for i in "${!alts[@]}"; do
  env ${alts[$i]} TESTS="kernels" bash bench/cuda_tests.sh $BIN $OUT/k$i 30 >/dev/null 2>&1
  sed "s/^/[${alts[$i]}] /" $OUT/k$i/run.log >>$R
  echo "[${alts[$i]}]" >>$OUT/kern1.txt
  env ${alts[$i]} timeout 40 build/cuda_kernels --types q4_k,q4_0,q6_k,q8_0 --batches 1 --shapes 4 >>$OUT/kern1.txt 2>&1
done
left=$((${1:-520} - ($(date +%s) - T0)))
echo "== A/B ($left s left)" >>$R
TESTS=forward TYPES="${TYPES:-q4_0 q4_k_m}" bash bench/cuda_env_ab.sh $BIN $OUT/ab $left >/dev/null 2>&1
cat $OUT/ab/run.log >>$R
cat $OUT/ab/gen.log >$OUT/gen.log 2>/dev/null
cd $OUT && tar czf rest.tgz t/tests.tgz k*/tests.tgz ab/trace_* 2>/dev/null
rm -rf t k[0-9]* ab
echo "== done $(($(date +%s) - T0)) s" >>$R
