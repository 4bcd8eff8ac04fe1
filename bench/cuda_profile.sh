#!/usr/bin/env bash
# cuda_profile.sh - one device call that profiles the decode path (issue 13): from the repository root, with
# bench/cuda_session.sh's binary tarball:
#   bench/cuda_profile.sh BIN_TAR_XZ OUT_DIR [SECONDS]     (default 400)
#   1. TESTS (default "attention forward kernels kernels_nomvt kernels_mvt forward_plain calib multi") through
#      bench/cuda_tests.sh's loop;
#   2. the Llama-3-8B-shape checkpoint (32 layers) at q4_k_m, q4_0 and q8_0 (kept in /tmp/lb8b, as bench/cuda_decode.sh):
#      tg128 with the default kernel choice (k_mvt where the type's Mq::MVT says), with k_mvq for every product
#      (LB_CUDA_MVT=0) and k_mvt for every one (LB_CUDA_MVT=1), alternated;
#   3. Nsight Systems (where installed) on 16 decode steps of q4_k_m inside the CUDA graph: every kernel's time in the
#      graph and the gaps between them (nsys_trace.csv, nsys_kern.csv);
#   4. every kernel of about one layer of a 8B decode step under Nsight Compute (SpeedOfLight and the warp states), with
#      the default kernel choice.
# Writes run.log (the summary) and prof.tgz (every log and report as text) to OUT_DIR.
set -uo pipefail
TAR=${1:?usage: bench/cuda_profile.sh BIN_TAR_XZ OUT_DIR [SECONDS]}
OUT=${2:?usage}
SECS=${3:-400}
DEADLINE=$(($(date +%s) + SECS))
L=/tmp/lb-prof
[ -x build/cuda_kernels ] || { mkdir -p build && tar xJf "$TAR" -C build; } || exit 1
mkdir -p "$OUT" "$L"
. "$(dirname "$0")/cuda_run_common.sh"
log "1. tests"
TESTS=${TESTS:-attention forward kernels kernels_nomvt kernels_mvt forward_plain calib multi} bash "$(dirname "$0")/cuda_tests.sh" "$TAR" "$OUT/t" $(($(left) > 300 ? 160 : $(left) / 2)) >/dev/null 2>&1
cat "$OUT/t/run.log" >>"$OUT/run.log" 2>/dev/null
mv "$OUT/t/tests.tgz" "$L/" 2>/dev/null
rm -rf "$OUT/t"
log "2. 8B shape, tg128"
tg() { # FILE ENV...: one tg128 line
  local f=$1; shift
  echo "$(basename "$f" .gguf) ${*:-default}: $(env "$@" timeout "$(cap 60)" build/cuda_bench "$f" --device cuda --pp 1 --tg 128 --reps 3 2>&1 |
    grep -E "tg128|error" | tr -s ' ')" | tee -a "$OUT/run.log"
}
for t in q4_k_m q4_0 q8_0; do
  [ "$(left)" -gt 150 ] || break
  GEN_LOG=$L/gen.log file_8b $t
  tail -1 "$L/gen.log" >>"$OUT/run.log"
  tg "$W/$t.gguf"
  tg "$W/$t.gguf" LB_CUDA_MVT=0
  tg "$W/$t.gguf" LB_CUDA_MVT=1
  if [ $t = q4_k_m ]; then
    tg "$W/$t.gguf"
    tg "$W/$t.gguf" LB_CUDA_MVT=0
  fi
done
log "3. nsys: the decode graph's kernels"
NSYS=$(command -v nsys || ls /opt/nvidia/nsight-systems/*/bin/nsys /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems*/bin/nsys 2>/dev/null | head -1)
echo "nsys: ${NSYS:-none}" >>"$OUT/run.log"
if [ -n "$NSYS" ] && [ "$(left)" -gt 150 ]; then
  timeout "$(cap 90)" "$NSYS" profile -t cuda --cuda-graph-trace=node -o "$L/dec" --force-overwrite true \
    build/cuda_bench "$W/q4_k_m.gguf" --pp 1 --tg 16 --reps 1 >"$L/nsys.log" 2>&1
  echo "-- nsys rc=$?" >>"$OUT/run.log"
  timeout "$(cap 60)" "$NSYS" stats -r cuda_gpu_kern_sum -f csv -o "$L/nsys" "$L/dec.nsys-rep" >>"$L/nsys.log" 2>&1
  timeout "$(cap 60)" "$NSYS" stats -r cuda_gpu_trace -f csv -o "$L/nsys" "$L/dec.nsys-rep" >>"$L/nsys.log" 2>&1
  ls "$L"/nsys_* >>"$OUT/run.log" 2>&1
  head -30 "$L"/nsys_cuda_gpu_kern_sum.csv 2>/dev/null | cut -c1-220 >>"$OUT/run.log"
  cp "$L"/nsys_*.csv "$OUT/" 2>/dev/null
  tail -5 "$L/nsys.log" >>"$OUT/run.log"
fi
log "4. ncu of a decode step"
if [ "$(left)" -gt 40 ] && [ -n "$NCU" ]; then
  LB_CUDA_NO_GRAPH=1 timeout "$(cap 150)" "$NCU" --clock-control none -s 1100 -c 48 --section SpeedOfLight --section WarpStateStats \
    build/cuda_bench "$W/q4_k_m.gguf" --pp 1 --tg 8 --reps 1 >"$L/ncu_step.txt" 2>&1
  echo "-- ncu decode step rc=$?" >>"$OUT/run.log"
  grep -E "^  [a-zA-Z_].*\(|Duration|DRAM Throughput" "$L/ncu_step.txt" | sed -E 's/\(const .*//; s/\(float.*//; s/ +/ /g' |
    paste - - - | head -50 >>"$OUT/run.log"
fi
log done
tar czf "$OUT/prof.tgz" -C /tmp lb-prof
