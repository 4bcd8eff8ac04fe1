#!/usr/bin/env bash
# cuda_ab.sh - two builds' speed on the Llama-3-8B-shape checkpoint (made in /tmp/lb8b) in one device call, so the ratio
# comes from one machine: from the repository root, with two bench/cuda_pack.sh tarballs (A the reference, B the change)
#   bench/cuda_ab.sh A_TAR B_TAR OUT_DIR [SECONDS]     (default 500; TYPES, default "q4_k_m q4_0 q8_0 f16")
# B unpacks into build/ (the tests' binaries), A into build-a/. First TESTS (default "attention forward forward_plain")
# on B through cuda_tests.sh; then per type the file (quantized by B), cuda_bench --pp 512 --tg 128 --reps 3 with A, B,
# A, B (alternating, so drift shows), and for q4_k_m B's decode under bench/cupti_trace.cpp (trace_B.txt, tg64 after a
# 16-token prompt, where libcupti_trace.so was packed) and A's (trace_A.txt). Writes run.log and the traces to OUT_DIR.
set -uo pipefail
A_TAR=${1:?usage: bench/cuda_ab.sh A_TAR B_TAR OUT_DIR [SECONDS]}
B_TAR=${2:?usage}
OUT=${3:?usage}
DEADLINE=$(($(date +%s) + ${4:-500}))
[ -x build/cuda_bench ] || { mkdir -p build && tar xJf "$B_TAR" -C build; } || exit 1
[ -x build-a/cuda_bench ] || { mkdir -p build-a && tar xJf "$A_TAR" -C build-a; } || exit 1
. "$(dirname "$0")/cuda_run_common.sh"
log "tests (B)"
TESTS=${TESTS:-attention forward forward_plain} bash "$(dirname "$0")/cuda_tests.sh" "$B_TAR" "$OUT/t" $(($(left) / 3)) >/dev/null 2>&1
cat "$OUT/t/run.log" >>"$OUT/run.log" 2>/dev/null
rm -rf "$OUT/t"
log "8B shape"
for t in ${TYPES:-q4_k_m q4_0 q8_0 f16}; do
  [ "$(left)" -gt 60 ] || break
  file_8b $t
  for b in build-a build build-a build; do
    echo "$t ${b/build-a/A}: $(timeout "$(cap 60)" $b/cuda_bench "$W/$t.gguf" --device cuda --pp 512 --tg 128 --reps 3 2>&1 |
      grep -E "pp512|tg128|error" | tr -s ' ' | tr '\n' ' ')" | sed 's/^\([a-z0-9_]*\) build:/\1 B:/' | tee -a "$OUT/run.log"
  done
  if [ $t = q4_k_m ] && [ -f build/libcupti_trace.so ]; then
    echo "trace B: $(trace_decode build "$W/$t.gguf" "$OUT/trace_B.txt")" | tee -a "$OUT/run.log"
    echo "trace A: $(trace_decode build-a "$W/$t.gguf" "$OUT/trace_A.txt")" | tee -a "$OUT/run.log"
  fi
  rm -f "$W/$t.gguf" # the disk holds the checkpoint and one file at a time
done
log done
