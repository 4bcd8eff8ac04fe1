#!/usr/bin/env bash
# cuda_ncu.sh - Nsight Compute's full set on single products of bench/cuda_kernels, in one device call: from the
# repository root, with a bench/cuda_pack.sh tarball,
#   KERNELS="q6_k:2 q4_k:4 q4_k:1:16" bench/cuda_ncu.sh BIN_TAR_XZ OUT_DIR [SECONDS]     (default 200)
# KERNELS: TYPE:SHAPE[:BATCH] (cuda_kernels --shape: 1 = 14336 x 4096, 2 = 4096 x 14336, 3 = 128256 x 4096, 4 = 4096 x
# 4096; batch 1 unless given); the 21st launch of the product's kernel (k_mvt, k_mvq or k_mvm: REGEX). Writes each
# report (ncu_TYPE_SHAPE_BATCH.txt) and, in run.log, its throughput, occupancy, issue and stall lines.
set -uo pipefail
TAR=${1:?usage: KERNELS=... bench/cuda_ncu.sh BIN_TAR_XZ OUT_DIR [SECONDS]}
OUT=${2:?usage}
DEADLINE=$(($(date +%s) + ${3:-200}))
[ -x build/cuda_kernels ] || { mkdir -p build && tar xJf "$TAR" -C build; } || exit 1
. "$(dirname "$0")/cuda_run_common.sh"
[ -n "$NCU" ] || { log "no ncu"; exit 1; }
for k in ${KERNELS:-q6_k:2 q6_k:3 q4_k:4}; do
  [ "$(left)" -gt 30 ] || break
  IFS=: read -r t s b <<<"$k"
  b=${b:-1} f=$OUT/ncu_${t}_${s}_$b.txt
  timeout "$(cap 90)" "$NCU" --clock-control none -k "regex:${REGEX:-k_mv[tqm]}" -s 20 -c 1 --set full --import-source no \
    build/cuda_kernels --types "$t" --batches "$b" --shape "$s" >"$f" 2>&1
  echo "-- ncu $t shape $s batch $b rc=$?" >>"$OUT/run.log"
  grep -E "^  [a-zA-Z_].*\(|Duration|DRAM Throughput|Memory Throughput|Compute \(SM\)|Registers Per|Achieved Occupancy|Theoretical Occ|Issued Warp|Warp Cycles Per Issued|No Eligible|Stall|L1/TEX Hit|L2 Hit|Block Limit|stalled|spends" \
    "$f" | sed -E 's/ +/ /g; s/\(unsigned char.*//' | head -60 >>"$OUT/run.log"
done
log done
