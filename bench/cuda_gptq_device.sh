#!/usr/bin/env bash
# cuda_gptq_device.sh - GPTQ's algebra on the GPU, the device machine's part in one call, from the repository
# root, with binaries built elsewhere (static CUDA runtime) in a tarball made by:
#   cp ../shared/data/calib.txt build/ && tar cJf /tmp/gptq-bin.tar.xz -C build lowbit cuda_gptq synth_checkpoint \
#     calib.txt tests/test_cuda_gptq tests/test_cuda_calib
#   bench/cuda_gptq_device.sh BIN_TAR_XZ OUT_DIR [SECONDS]     (SECONDS: the whole run's budget, default 560)
# Phases (PHASES, default "tests pieces e2e"): tests = test_cuda_gptq (the GPU pieces against the CPU's, GPTQ
# whole, tiny end to end) then test_cuda_calib; pieces = bench/cuda_calib.sh gptq OUT llama3-8b without the
# end-to-end run (every matrix shape of a layer: per-matrix time split); e2e = the Llama-3-8B-shape checkpoint
# (GPTQ_LAYERS layers, default 2) quantized with --method gptq --device cuda at 65,536 calibration tokens
# (per-layer time from the progress lines; gptq_seconds in --json); big70 (not by default) = the 70B shapes.
set -uo pipefail
TAR=${1:?usage: bench/cuda_gptq_device.sh BIN_TAR_XZ OUT_DIR [SECONDS]}
OUT=${2:?usage}
DEADLINE=$(($(date +%s) + ${3:-560}))
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p build "$OUT" && tar xJf "$TAR" -C build || exit 1
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}
left() { echo $((DEADLINE - $(date +%s))); }
stamp() { echo "== $(date -u +%T) ($(left) s left) $*" | tee -a "$OUT/run.log"; }
PHASES=${PHASES:-tests pieces e2e}
has() { [[ " $PHASES " == *" $1 "* ]]; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >>"$OUT/run.log" 2>&1
nproc >>"$OUT/run.log"
export LOWBIT=build/lowbit SYNTH=build/synth_checkpoint CALIB=build/calib.txt BENCH=build/cuda_gptq
export LB_GPTQ_GPU=${LB_GPTQ_GPU:-1}   # the CUDA solver (the default on --device cuda; 0: CPU threads)
if has tests; then
  stamp test_cuda_gptq
  LOWBIT=build/lowbit timeout $(($(left) < 240 ? $(left) : 240)) build/tests/test_cuda_gptq >"$OUT/test_gptq.log" 2>&1
  echo "test_cuda_gptq rc=$?" | tee -a "$OUT/run.log"
  grep -E "^(inv_upper|update|h_times_e|matmul|gptq|q4_k_m)|FAIL|passed" "$OUT/test_gptq.log" | tee -a "$OUT/run.log"
  stamp test_cuda_calib
  LOWBIT=build/lowbit timeout $(($(left) < 200 ? $(left) : 200)) build/tests/test_cuda_calib >"$OUT/test_calib.log" 2>&1
  echo "test_cuda_calib rc=$?" | tee -a "$OUT/run.log"
  tail -1 "$OUT/test_calib.log" | tee -a "$OUT/run.log"
fi
if has pieces; then
  stamp "pieces (llama3-8b matrix shapes)"
  BIG_LIMIT=120 GPTQ_SKIP_E2E=1 timeout $(($(left) - 10)) "$HERE/cuda_calib.sh" gptq "$OUT" llama3-8b >/dev/null
  echo "pieces rc=$?" | tee -a "$OUT/run.log"
fi
if has e2e; then
  stamp "e2e (llama3-8b shape, ${GPTQ_LAYERS:-2} layers)"
  BIG_LIMIT=$(($(left) - 15)) GPTQ_ONLY_E2E=1 timeout $(($(left) - 5)) "$HERE/cuda_calib.sh" gptq "$OUT" llama3-8b >/dev/null
  echo "e2e rc=$?" | tee -a "$OUT/run.log"
  grep -E "quantize \[|gptq \(|gptq_seconds|error|warning" "$OUT/gptq-e2e.txt" | tail -20 >>"$OUT/run.log"
fi
if has big70; then
  stamp "pieces (llama3-70b matrix shapes)"
  BIG_LIMIT=150 timeout $(($(left) - 5)) "$HERE/cuda_calib.sh" gptq "$OUT" llama3-70b >/dev/null
fi
stamp done
