#!/usr/bin/env bash
# cuda_device_carried.sh - one device call with binaries built elsewhere (static CUDA runtime), for the
# decode kernels' numbers in docs/BENCHMARKS.md. Run from the repository root with the binaries' tarball:
#   bench/cuda_device_carried.sh BIN_TAR_XZ OUT_DIR [seconds]
# Unpacks lowbit, cuda_bench, cuda_kernels, synth_checkpoint and tests/test_cuda_* into build/, then, inside
# the time limit (default 270 s): the 8B checkpoint's generation and quantization (bench/cuda_device.sh gen,
# CPU) beside the GPU tests, the GPU tests again with LB_CUDA_NO_MMA=1 and the kernels alone (cuda_kernels
# --quick); then tg128/pp512 of the four files and Nsight Compute on about one layer of a decode step. Logs: OUT_DIR/all.tgz
# plus the main ones beside it (the device tool returns at most 8 files).
set -u
TAR=${1:?usage: bench/cuda_device_carried.sh BIN_TAR_XZ OUT_DIR [seconds]}
OUT=${2:?usage}
LIMIT=${3:-270}
HERE=$(cd "$(dirname "$0")" && pwd)
R=/tmp/lb-carried
rm -rf "$R" && mkdir -p build "$R" "$OUT" && tar xJf "$TAR" -C build || exit 1
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}
body() {
  (bash "$HERE/cuda_device.sh" "$R/g" gen >"$R/gen_out.txt" 2>&1) &
  local G=$!
  LB_KERNELS_ARGS=--quick bash "$HERE/cuda_device.sh" "$R/k" tests kernels >"$R/k_out.txt" 2>&1
  LB_CUDA_NO_MMA=1 /usr/bin/time -f "no-mma test_cuda_kernels: %e s" build/tests/test_cuda_kernels >"$R/k/tests_nomma.log" 2>&1
  tail -2 "$R/k/tests_nomma.log" >>"$R/k_out.txt"
  wait $G
  LB_NCU_TIMEOUT=80 bash "$HERE/cuda_device.sh" "$R/b" bench ncu_layer >"$R/b_out.txt" 2>&1
}
export -f body
export HERE R
timeout "$LIMIT" bash -c body
echo "body rc=$? (124: stopped at ${LIMIT} s)" >>"$R/k_out.txt"
cat "$R"/k_out.txt "$R"/gen_out.txt "$R"/b_out.txt >"$OUT/summary.txt" 2>/dev/null
cp "$R/k/tests.log" "$R/k/kernels.txt" "$R/b/bench.txt" "$R/b/ncu.txt" "$OUT/" 2>/dev/null
tar czf "$OUT/all.tgz" -C "$R" . 2>/dev/null
cat "$OUT/summary.txt"
