#!/usr/bin/env bash
# cuda_quality_files.sh - the GPU's part of the GPU-against-CPU quality table (docs/QUALITY.md): from the repository
# root, with bench/cuda_session.sh's binary tarball and small stored as q6_k (bench/out/q/small-q6k.gguf, carried):
#   bench/cuda_quality_files.sh BIN_TAR_XZ OUT_DIR [SECONDS]     (default 300)
# quantizes on the GPU, at 16,384 calibration tokens of calib.txt as bench/cuda_calib.sh quality does: tiny by imatrix
# and gptq at q4_k_m, q3_k_m, q2_k, iq4_xs, and small by gptq at q3_k_m and q2_k (what fits the 64 MiB a call brings
# back), and returns them as tiny-a.tar, tiny-b.tar and the two small files, with run.log (sha256 of each, the
# --json lines); the development machine then evaluates them beside its own CPU-made files.
set -uo pipefail
TAR=${1:?usage: bench/cuda_quality_files.sh BIN_TAR_XZ OUT_DIR [SECONDS]}
OUT=${2:?usage}
DEADLINE=$(($(date +%s) + ${3:-300}))
[ -x build/lowbit ] || { mkdir -p build && tar xJf "$TAR" -C build; } || exit 1
mkdir -p "$OUT"
. "$(dirname "$0")/cuda_run_common.sh"
F=/tmp/lbq-files
rm -rf "$F" /tmp/lbq && mkdir -p "$F"
export LOWBIT=build/lowbit CALIB=build/calib.txt FILES=$F
log "tiny"
TYPES="q4_k_m q3_k_m q2_k iq4_xs" METHODS="imatrix gptq" timeout "$(cap 200)" bench/cuda_calib.sh quality cuda /tmp/lbq tiny=models/tiny \
  >/dev/null 2>&1
log "small"
TYPES="q3_k_m q2_k" METHODS="gptq" timeout "$(cap 200)" bench/cuda_calib.sh quality cuda /tmp/lbq small=bench/out/q/small-q6k.gguf \
  >/dev/null 2>&1
cut -c1-600 /tmp/lbq/quantize.jsonl >>"$OUT/run.log"
(cd "$F" && sha256sum ./*-cuda.gguf) >>"$OUT/run.log"
(cd "$F" && tar cf "$OUT/tiny-a.tar" tiny-*-q4_k_m-cuda.gguf tiny-*-q3_k_m-cuda.gguf &&
  tar cf "$OUT/tiny-b.tar" tiny-*-q2_k-cuda.gguf tiny-*-iq4_xs-cuda.gguf && cp small-gptq-*-cuda.gguf "$OUT/")
ls -la "$OUT" >>"$OUT/run.log"
log done
