#!/usr/bin/env bash
# cuda_pack.sh - the binaries a device call runs, from build-cuda (cmake -DLOWBIT_CUDA=ON), into one tarball that
# bench/cuda_table.sh, cuda_tests.sh, cuda_profile.sh and cuda_timeline.sh unpack into build/ on the GPU machine:
#   bench/cuda_pack.sh [BUILD_DIR] [OUT]     (defaults build-cuda, bench/out/bin/bin.tar.xz; carry bench/out/bin)
# Adds ../shared/data/calib.txt (the calibration tests' text) and, where built, libcupti_trace.so with the toolkit's
# libcupti (cuda_timeline.sh loads them; the GPU machine's own CUPTI may be another version).
set -euo pipefail
B=${1:-build-cuda}
OUT=${2:-bench/out/bin/bin.tar.xz}
cp "$(dirname "$0")/../../shared/data/calib.txt" "$B/"
files=(lowbit cuda_gptq cuda_bench cuda_kernels synth_checkpoint calib.txt tests/test_cuda_gptq tests/test_cuda_gptq_shadow
  tests/test_cuda_calib tests/test_cuda_kernels tests/test_cuda_forward tests/test_cuda_multi tests/test_cuda_attention)
extra=()
if [ -f "$B/libcupti_trace.so" ]; then
  files+=(libcupti_trace.so)
  cupti=$(ldd "$B/libcupti_trace.so" | awk '/libcupti/ {print $3}')
  [ -n "$cupti" ] && extra=(-C "$(dirname "$cupti")" "$(basename "$cupti")")
fi
mkdir -p "$(dirname "$OUT")"
rm -f "$OUT"
tar cf - -C "$B" "${files[@]}" "${extra[@]}" | xz -T2 -6 --lzma2=dict=128MiB >"$OUT"
ls -la "$OUT"
