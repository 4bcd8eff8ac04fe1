#!/usr/bin/env bash
# cuda_ncu.sh - Nsight Compute's full set on single one-token products of bench/cuda_kernels, in one device call: from
# the repository root, with a bench/cuda_pack.sh tarball,
#   KERNELS="q6_k:2 q4_k:4" bench/cuda_ncu.sh BIN_TAR_XZ OUT_DIR [SECONDS]     (default 200)
# KERNELS: TYPE:SHAPE pairs (cuda_kernels --shape: 1 = 14336 x 4096, 2 = 4096 x 14336, 3 = 128256 x 4096, 4 = 4096 x
# 4096); the 21st launch of the product's kernel (k_mvt or k_mvq, REGEX) at batch 1. Writes each report (ncu_TYPE_SHAPE.txt)
# and, in run.log, its throughput, occupancy, issue and stall lines.
set -uo pipefail
TAR=${1:?usage: KERNELS=... bench/cuda_ncu.sh BIN_TAR_XZ OUT_DIR [SECONDS]}
OUT=${2:?usage}
DEADLINE=$(($(date +%s) + ${3:-200}))
[ -x build/cuda_kernels ] || { mkdir -p build && tar xJf "$TAR" -C build; } || exit 1
. "$(dirname "$0")/cuda_run_common.sh"
[ -n "$NCU" ] || { log "no ncu"; exit 1; }
for k in ${KERNELS:-q6_k:2 q6_k:3 q4_k:4}; do
  [ "$(left)" -gt 30 ] || break
  t=${k%:*} s=${k#*:} f=$OUT/ncu_${t}_$s.txt
  timeout "$(cap 90)" "$NCU" --clock-control none -k "regex:${REGEX:-k_mv[tq]}" -s 20 -c 1 --set full --import-source no \
    build/cuda_kernels --types "$t" --batches 1 --shape "$s" >"$f" 2>&1
  echo "-- ncu $t shape $s rc=$?" >>"$OUT/run.log"
  grep -E "^  [a-zA-Z_].*\(|Duration|DRAM Throughput|Memory Throughput|Compute \(SM\)|Registers Per|Achieved Occupancy|Theoretical Occ|Issued Warp|Warp Cycles Per Issued|No Eligible|Stall|L1/TEX Hit|L2 Hit|Block Limit|stalled|spends" \
    "$f" | sed -E 's/ +/ /g; s/\(unsigned char.*//' | head -60 >>"$OUT/run.log"
done
log done
