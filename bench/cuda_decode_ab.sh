#!/usr/bin/env bash
# cuda_decode_ab.sh - one device call for the decode experiments that are off by default: the GPU tests that cover them
# and the default decode (kernels, forward, attention, calib, multi), test_cuda_kernels under LB_CUDA_MVT_R1=1 and
# test_cuda_attention under LB_CUDA_ATT_FUSE=1, the batch-1 kernel table (cuda_kernels) with and without
# LB_CUDA_MVT_R1=1, then the forward test under each alternative and tg128 alternating with the defaults
# (bench/cuda_env_ab.sh). From the repository root, with a bench/cuda_pack.sh tarball whose commit is in
# bench/out/bin/commit.txt (carry bench/out/bin):
#   OUT=... bash bench/cuda_decode_ab.sh [SECONDS]     (default 520)
# ALTS (default "LB_CUDA_NORM_FUSE=1;LB_CUDA_ATT_FUSE=1;LB_CUDA_MVT_R1=1") and TYPES (default "q4_0 q4_k_m") go to
# cuda_env_ab.sh. Writes OUT/run.log, OUT/kern1.txt, OUT/gen.log and OUT/rest.tgz (the tests' logs, the decode traces).
set -u
BIN=bench/out/bin/bin.tar.xz
T0=$(date +%s)
mkdir -p build && tar xJf $BIN -C build
R=$OUT/run.log
cat bench/out/bin/commit.txt >$R
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader >>$R
TESTS="kernels forward attention calib multi" bash bench/cuda_tests.sh $BIN $OUT/t 80 >/dev/null 2>&1
cat $OUT/t/run.log >>$R
LB_CUDA_MVT_R1=1 TESTS="kernels" bash bench/cuda_tests.sh $BIN $OUT/t1 30 >/dev/null 2>&1
sed 's/^/[R1] /' $OUT/t1/run.log >>$R
LB_CUDA_ATT_FUSE=1 TESTS="attention" bash bench/cuda_tests.sh $BIN $OUT/t2 20 >/dev/null 2>&1
sed 's/^/[ATT_FUSE] /' $OUT/t2/run.log >>$R
timeout 40 build/cuda_kernels --types q4_k,q4_0,q6_k,q8_0 --batches 1 --shapes 4 >$OUT/kern1.txt 2>&1
echo "[LB_CUDA_MVT_R1=1]" >>$OUT/kern1.txt
LB_CUDA_MVT_R1=1 timeout 40 build/cuda_kernels --types q4_k,q4_0,q6_k,q8_0 --batches 1 --shapes 4 >>$OUT/kern1.txt 2>&1
left=$((${1:-520} - ($(date +%s) - T0)))
echo "== A/B ($left s left)" >>$R
ALTS="${ALTS:-LB_CUDA_NORM_FUSE=1;LB_CUDA_ATT_FUSE=1;LB_CUDA_MVT_R1=1}" TESTS=forward TYPES="${TYPES:-q4_0 q4_k_m}" \
  bash bench/cuda_env_ab.sh $BIN $OUT/ab $left >/dev/null 2>&1
cat $OUT/ab/run.log >>$R
cat $OUT/ab/gen.log >$OUT/gen.log 2>/dev/null
cd $OUT && tar czf rest.tgz t/tests.tgz t1/tests.tgz t2/tests.tgz ab/trace_* 2>/dev/null
rm -rf t t1 t2 ab
echo "== done $(($(date +%s) - T0)) s" >>$R
