#!/usr/bin/env bash
# cuda_timeline.sh - where a decoded token's time goes on the GPU: the Llama-3-8B-shape checkpoint (made in /tmp/lb8b)
# decoded under bench/cupti_trace.cpp (CUDA_INJECTION64_PATH), per graph launch: span, time with a kernel running,
# per-kernel totals and the gaps between consecutive kernels. From the repository root, with bench/cuda_pack.sh's
# tarball (it holds libcupti_trace.so and libcupti):
#   bench/cuda_timeline.sh BIN_TAR_XZ OUT_DIR [SECONDS]     (default 400; TYPES, default "q4_k_m q4_0")
# Per type: cuda_bench --pp 16 --tg 64 untraced, then traced (trace_TYPE.txt), then traced with every decode default
# off but the graph (LB_CUDA_FUSE=0 LB_CUDA_FUSE_ACT=0 LB_CUDA_PDL=0: trace_TYPE_plain.txt). Writes run.log and the
# traces to OUT_DIR.
set -uo pipefail
TAR=${1:?usage: bench/cuda_timeline.sh BIN_TAR_XZ OUT_DIR [SECONDS]}
OUT=${2:?usage}
DEADLINE=$(($(date +%s) + ${3:-400}))
[ -x build/cuda_bench ] || { mkdir -p build && tar xJf "$TAR" -C build; } || exit 1
. "$(dirname "$0")/cuda_run_common.sh"
[ -f build/libcupti_trace.so ] || { log "no build/libcupti_trace.so in the tarball"; exit 1; }
export LD_LIBRARY_PATH=$PWD/build:$LD_LIBRARY_PATH
TRACE=$PWD/build/libcupti_trace.so
log "checkpoint"
for t in ${TYPES:-q4_k_m q4_0}; do
  [ "$(left)" -gt 60 ] || break
  file_8b $t
  b=(build/cuda_bench "$W/$t.gguf" --device cuda --pp 16 --tg 64 --reps 1)
  echo "$t untraced: $(timeout "$(cap 60)" "${b[@]}" 2>&1 | grep -E "tg64|error" | tr -s ' ')" | tee -a "$OUT/run.log"
  echo "$t traced: $(CUDA_INJECTION64_PATH=$TRACE LB_TRACE_OUT=$OUT/trace_$t.txt timeout "$(cap 90)" "${b[@]}" 2>&1 |
    grep -E "tg64|error|cupti" | tr -s ' ')" | tee -a "$OUT/run.log"
  head -4 "$OUT/trace_$t.txt" >>"$OUT/run.log" 2>/dev/null
  echo "$t traced, decode defaults off: $(LB_CUDA_FUSE=0 LB_CUDA_FUSE_ACT=0 LB_CUDA_PDL=0 CUDA_INJECTION64_PATH=$TRACE \
    LB_TRACE_OUT=$OUT/trace_${t}_plain.txt timeout "$(cap 90)" "${b[@]}" 2>&1 | grep -E "tg64|error|cupti" | tr -s ' ')" |
    tee -a "$OUT/run.log"
  head -4 "$OUT/trace_${t}_plain.txt" >>"$OUT/run.log" 2>/dev/null
  rm -f "$W/$t.gguf"
done
log done
