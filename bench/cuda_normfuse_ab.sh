#!/usr/bin/env bash
# cuda_normfuse_ab.sh - one device call for the RMSNorm inside the one-token products (LB_CUDA_NORM_FUSE=1): the GPU tests
# that cover it and the default decode (kernels, forward, attention, calib, multi), then the forward test under it and
# tg128 alternating with the defaults (bench/cuda_env_ab.sh; Q4_0, then Q4_K_M where time is left). From the repository
# root, with a bench/cuda_pack.sh tarball whose commit is in bench/out/bin/commit.txt (carry bench/out/bin):
#   OUT=... bash bench/cuda_normfuse_ab.sh [SECONDS]     (default 192; about 200 s with the 8B files made)
# ALTS (default LB_CUDA_NORM_FUSE=1) and TYPES (default "q4_0 q4_k_m") are passed to cuda_env_ab.sh.
# Writes OUT/run.log, OUT/gen.log and OUT/rest.tgz (the tests' logs and the decode traces).
set -u
BIN=bench/out/bin/bin.tar.xz
T0=$(date +%s)
mkdir -p build && tar xJf $BIN -C build
R=$OUT/run.log
cat bench/out/bin/commit.txt >$R
TESTS="kernels forward attention calib multi" bash bench/cuda_tests.sh $BIN $OUT/t 75 >/dev/null 2>&1
cat $OUT/t/run.log >>$R
left=$((${1:-192} - ($(date +%s) - T0)))
echo "== A/B ($left s left)" >>$R
ALTS="${ALTS:-LB_CUDA_NORM_FUSE=1}" TESTS=forward TYPES="${TYPES:-q4_0 q4_k_m}" bash bench/cuda_env_ab.sh $BIN $OUT/ab $left >/dev/null 2>&1
cat $OUT/ab/run.log >>$R
cat $OUT/ab/gen.log >$OUT/gen.log 2>/dev/null
cd $OUT && tar czf rest.tgz t/tests.tgz ab/trace_* 2>/dev/null
rm -rf t ab
echo "== done $(($(date +%s) - T0)) s" >>$R
