#!/usr/bin/env bash
# cuda_device.sh - everything lowbit's CUDA numbers need, in one run on a GPU machine (results in
# docs/BENCHMARKS.md). Run from the repository root:
#   bench/cuda_device.sh OUT_DIR [phases...]   phases: build tests cli gen kernels bench eval ncu ncu_layer ncu_pp (default: all but ncu_layer)
# build: Release build with -DLOWBIT_CUDA=ON; tests: ctest -L cuda; gen: the Llama-3-8B-shape checkpoint
# (bench/synth_checkpoint) quantized by lowbit to f16, q8_0, q4_0 and q4_k_m (ggml's reference encoders,
# --encoder ref, the fastest) in $LB_BENCH_DIR (default /tmp/lb8b); kernels: bench/cuda_kernels (runs
# while gen quantizes, on the GPU only); bench: pp512 / tg128 of each file; eval: q4_k_m against its
# f16 base on the GPU; ncu: Nsight Compute on the decode kernels (--clock-control none); ncu_pp: the
# kernels of a 512-token prompt's first layer; ncu_layer: every kernel of about one layer of a decode step
# (SpeedOfLight: duration, DRAM throughput); cli: run/eval/imatrix on tiny with --device cuda and the errors.
# With binaries built elsewhere (no build phase, no CTest tree in build/), tests runs the test binaries
# directly. LB_KERNELS_ARGS passes arguments to cuda_kernels (--quick: the 8B shapes without the head).
set -uo pipefail
OUT=${1:?usage: bench/cuda_device.sh OUT_DIR [phases...]}
shift
PHASES=${*:-build tests cli gen kernels bench eval ncu ncu_pp}
W=${LB_BENCH_DIR:-/tmp/lb8b}
J=$(nproc)
mkdir -p "$OUT" "$W"
has() { [[ " $PHASES " == *" $1 "* ]]; }
stamp() { echo "== $(date -u +%H:%M:%S) $*" | tee -a "$OUT/timeline.txt"; }

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem,clocks.max.sm --format=csv >"$OUT/smi.txt" 2>&1
if has build; then
  stamp build
  cmake -S . -B build -DLOWBIT_CUDA=ON -DCMAKE_BUILD_TYPE=Release >"$OUT/cmake.log" 2>&1 &&
    cmake --build build -j"$J" >"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
fi
if has tests; then
  stamp tests
  if [ -f build/CTestTestfile.cmake ]; then
    (cd build && ctest -L cuda --output-on-failure -V) >"$OUT/tests.log" 2>&1
  else
    for t in build/tests/test_cuda_kernels build/tests/test_cuda_forward; do echo "== $t"; /usr/bin/time -f "$t: %e s" $t; done >"$OUT/tests.log" 2>&1
  fi
  grep -E "passed|failed|FAIL| s$" "$OUT/tests.log" | tail -12
fi
if has cli; then
  stamp cli
  {
    for d in cpu cuda; do build/lowbit run models/tiny -p "The kernel" -n 24 --device $d; done
    for d in cpu cuda; do build/lowbit eval models/tiny --text tests/golden/data/valid.txt --chunks 20 --device $d -q; done
    for d in cpu cuda; do
      /usr/bin/time -f "imatrix $d: %e s" build/lowbit imatrix models/tiny --calib tests/golden/data/valid.txt -o "$W/tiny-$d.imatrix" \
        --ctx 256 --calib-tokens 8192 --device $d -q
    done
    cmp "$W/tiny-cpu.imatrix" "$W/tiny-cuda.imatrix" && echo "imatrix files identical" || echo "imatrix files differ (rounding)"
    build/lowbit eval models/tiny --text tests/golden/data/valid.txt --chunks 1 --device cuda:7 -q
    CUDA_VISIBLE_DEVICES= build/lowbit eval models/tiny --text tests/golden/data/valid.txt --chunks 1 --device cuda -q
    build/lowbit run models/tiny -p x --device gpu
  } >"$OUT/cli.txt" 2>&1
  cat "$OUT/cli.txt"
fi
KPID=
if has gen; then
  stamp gen
  if has kernels; then stamp kernels; build/cuda_kernels ${LB_KERNELS_ARGS:-} >"$OUT/kernels.txt" 2>&1 & KPID=$!; fi
  [ -f "$W/hf/config.json" ] || /usr/bin/time -f "synth: %e s" build/synth_checkpoint "$W/hf" models/tiny/tokenizer.json --shape llama3-8b >"$OUT/gen.log" 2>&1
  stamp quantize
  quant() {
    [ -f "$W/$1.gguf" ] || /usr/bin/time -f "$1: %e s, %M KB peak" build/lowbit quantize "$W/hf" -o "$W/$1.gguf" --type $1 --encoder ref \
      -t "$J" >"$OUT/gen_$1.log" 2>&1
  }
  quant q4_k_m & QPID=$! # the longest (CPU-bound); the others beside it
  for t in q4_0 q8_0 f16; do quant $t; done
  wait $QPID
  tail -qn1 "$OUT"/gen_*.log
  rm -rf "$W/hf"
elif has kernels; then
  stamp kernels
  build/cuda_kernels >"$OUT/kernels.txt" 2>&1
fi
[ -n "$KPID" ] && wait "$KPID"
has kernels && tail -62 "$OUT/kernels.txt"
if has bench; then
  stamp bench
  for t in q4_k_m q4_0 q8_0 f16; do build/cuda_bench "$W/$t.gguf" --device cuda --pp 512 --tg 128 --reps 3 2>&1 | tee -a "$OUT/bench.txt"; done
fi
if has eval; then
  stamp eval
  build/lowbit eval "$W/q4_k_m.gguf" --base "$W/f16.gguf" --text tests/golden/data/valid.txt --ctx 512 --chunks 40 \
    --device cuda --json 2>"$OUT/eval.err" | tee "$OUT/eval.json"
  tail -2 "$OUT/eval.err"
fi
if has ncu; then
  stamp ncu
  NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
  LB_CUDA_NO_GRAPH=1 timeout ${LB_NCU_TIMEOUT:-240} "$NCU" --clock-control none -k regex:k_mv -s 40 -c ${LB_NCU_COUNT:-7} --section SpeedOfLight \
    --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats \
    build/cuda_bench "$W/q4_k_m.gguf" --pp 1 --tg 8 --reps 1 >"$OUT/ncu.txt" 2>&1
  grep -E "k_mv|Duration|Memory Throughput|DRAM Throughput|Achieved Occupancy|Registers Per|L1/TEX Hit|Compute \(SM\)" "$OUT/ncu.txt" | head -60
fi
if has ncu_layer; then
  stamp ncu_layer
  NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
  LB_CUDA_NO_GRAPH=1 timeout ${LB_NCU_TIMEOUT:-240} "$NCU" --clock-control none -s 1100 -c 48 --section SpeedOfLight \
    build/cuda_bench "$W/q4_k_m.gguf" --pp 1 --tg 8 --reps 1 >"$OUT/ncu.txt" 2>&1
  grep -E "^  [a-zA-Z_].*\(|Duration|DRAM Throughput" "$OUT/ncu.txt" | sed -E 's/\(const .*//; s/ +/ /g' | paste - - - | head -50
fi
if has ncu_pp; then
  stamp ncu_pp
  NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
  timeout 90 "$NCU" --clock-control none -c 30 --section SpeedOfLight build/cuda_bench "$W/q4_k_m.gguf" --pp 512 --tg 1 --reps 1 \
    >"$OUT/ncu_pp.txt" 2>&1
  grep -E "^  [a-zA-Z_].*\(|Duration" "$OUT/ncu_pp.txt" | sed -E 's/\(const .*//; s/ +/ /g' | paste - - | head -40
fi
stamp done
# a device call brings back at most 8 files: beyond that, everything goes into one tarball, with the summaries beside it
if [ "$(find "$OUT" -maxdepth 1 -type f | wc -l)" -gt 6 ]; then
  tar czf "$OUT.tgz" -C "$(dirname "$OUT")" "$(basename "$OUT")" &&
    find "$OUT" -maxdepth 1 -type f ! -name bench.txt ! -name timeline.txt ! -name eval.json -delete && mv "$OUT.tgz" "$OUT/all.tgz"
fi
