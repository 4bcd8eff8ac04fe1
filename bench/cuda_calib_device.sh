#!/usr/bin/env bash
# cuda_calib_device.sh - the GPU machine's part of the calibration-on-the-GPU numbers, in one run, from the
# repository root, with the binaries built elsewhere (CUDA runtime static) in $PACK as NAME.xz, and
# $PACK/small-q6k.gguf (models/small as q6_k: the repository plus models must stay under the run's size
# limit) and $PACK/calib.txt.xz. Logs under OUT_DIR (few files); quantized files in /tmp.
#   bench/cuda_calib_device.sh PACK OUT_DIR [SECONDS]   (SECONDS: the whole run's budget, default 540)
# PHASES (default "tests quality forward big"); "files" quantizes on the GPU the files the CPU evaluates (tiny:
# imatrix and gptq at four types, tarred; small: gptq q3_k_m and q2_k) and leaves them under OUT_DIR.
set -uo pipefail
PACK=${1:?usage: bench/cuda_calib_device.sh PACK OUT_DIR [SECONDS]}
OUT=${2:?usage}
DEADLINE=$(($(date +%s) + ${3:-540}))
B=/tmp/lbcal
mkdir -p "$B" "$OUT"
left() { echo $((DEADLINE - $(date +%s))); }
stamp() { echo "== $(date -u +%T) ($(left) s left) $*" | tee -a "$OUT/run.log"; }
python3 - "$PACK" "$B" <<'P'
import lzma, os, sys
for n in os.listdir(sys.argv[1]):
    if n.endswith('.xz'):
        open(os.path.join(sys.argv[2], n[:-3]), 'wb').write(lzma.open(os.path.join(sys.argv[1], n)).read())
P
chmod +x "$B"/*
PHASES=${PHASES:-tests quality forward big}
has() { [[ " $PHASES " == *" $1 "* ]]; }
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv >>"$OUT/run.log" 2>&1
nproc >>"$OUT/run.log"
"$B/lowbit" --help >/dev/null 2>&1 || { stamp "the carried lowbit does not run here"; "$B/lowbit" --help 2>&1 | head -3 >>"$OUT/run.log"; exit 1; }
export LOWBIT=$B/lowbit SYNTH=$B/synth_checkpoint CALIB=$B/calib.txt FILES=/tmp/lbcal-files

if has tests; then
stamp test_cuda_calib
timeout $(($(left) < 200 ? $(left) : 200)) "$B/test_cuda_calib" >"$OUT/tests.log" 2>&1
echo "test_cuda_calib rc=$?" | tee -a "$OUT/run.log"
tail -1 "$OUT/tests.log" | tee -a "$OUT/run.log"
fi

if has files; then
  stamp files
  F=/tmp/lbcal-files
  TYPES="q4_k_m q3_k_m q2_k iq4_xs" METHODS="imatrix gptq" timeout $(($(left) - 20)) "$(dirname "$0")"/cuda_calib.sh quality cuda \
    "$OUT/q" tiny=models/tiny >/dev/null
  TYPES="q3_k_m q2_k" METHODS="gptq" timeout $(($(left) - 20)) "$(dirname "$0")"/cuda_calib.sh quality cuda \
    "$OUT/q" small="$PACK/small-q6k.gguf" >/dev/null
  (cd $F && sha256sum *-cuda.gguf) >>"$OUT/run.log"
  (cd $F && tar cf "$OUT/tiny-a.tar" tiny-*-q4_k_m-cuda.gguf tiny-*-q3_k_m-cuda.gguf &&
    tar cf "$OUT/tiny-b.tar" tiny-*-q2_k-cuda.gguf tiny-*-iq4_xs-cuda.gguf && cp small-gptq-*-cuda.gguf "$OUT/")
  rm -rf "$OUT/q"
fi

if has quality; then
stamp quality
timeout $(($(left) > 250 ? $(left) - 150 : 100)) "$(dirname "$0")"/cuda_calib.sh quality cuda "$OUT/q" tiny=models/tiny small="$PACK/small-q6k.gguf"
echo "quality rc=$?" | tee -a "$OUT/run.log"
fi

if has forward; then
stamp test_cuda_forward
timeout $(($(left) < 100 ? $(left) : 100)) "$B/test_cuda_forward" >>"$OUT/tests.log" 2>&1
echo "test_cuda_forward rc=$?" | tee -a "$OUT/run.log"
fi

if has big; then
stamp big
BIG_LIMIT=$(($(left) / 2 - 10)) BIG_METHODS="imatrix gptq" timeout $(($(left) - 5)) "$(dirname "$0")"/cuda_calib.sh big "$OUT"
fi
stamp done
