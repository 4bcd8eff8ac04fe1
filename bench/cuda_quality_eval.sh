#!/usr/bin/env bash
# cuda_quality_eval.sh - the GPU's part of the GPU-against-CPU quality table (docs/QUALITY.md) for what the files
# brought back could not cover: from the repository root, with bench/cuda_session.sh's binary tarball and small
# stored as q6_k (bench/out/q/small-q6k.gguf, carried):
#   bench/cuda_quality_eval.sh BIN_TAR_XZ OUT_DIR [SECONDS]     (default 300)
# quantizes on the GPU at 16,384 calibration tokens of calib.txt (bench/cuda_calib.sh quality): tiny by awq and
# awq+gptq, small by imatrix, gptq, awq and awq+gptq, each at q4_k_m, q3_k_m, q2_k, iq4_xs (and RTN), and scores
# every file on the device machine with the CPU's eval (EVAL_DEVICE=cpu: valid.txt, ctx 512, 40 windows, against the
# unquantized model), the engine the development machine scores its CPU-made files with; the RTN files, made and
# scored on both machines, check that the two machines' CPU evals agree. Writes run.log and q.tgz (the jsonl and
# eval json) to OUT_DIR.
set -uo pipefail
TAR=${1:?usage: bench/cuda_quality_eval.sh BIN_TAR_XZ OUT_DIR [SECONDS]}
OUT=${2:?usage}
DEADLINE=$(($(date +%s) + ${3:-300}))
[ -x build/lowbit ] || { mkdir -p build && tar xJf "$TAR" -C build; } || exit 1
mkdir -p "$OUT"
. "$(dirname "$0")/cuda_run_common.sh"
Q=/tmp/lbq-eval
rm -rf "$Q" && mkdir -p "$Q"
export LOWBIT=build/lowbit CALIB=build/calib.txt EVAL_DEVICE=cpu
log "tiny"
METHODS="awq awq+gptq" timeout "$(cap 120)" bench/cuda_calib.sh quality cuda "$Q" tiny=models/tiny >/dev/null 2>&1
log "small"
METHODS="imatrix gptq awq awq+gptq" timeout "$(cap 240)" bench/cuda_calib.sh quality cuda "$Q" small=bench/out/q/small-q6k.gguf \
  >/dev/null 2>&1
log "scores"
cut -c1-400 "$Q/quantize.jsonl" >>"$OUT/run.log"
for f in "$Q"/eval-*.json; do
  python3 -c 'import json,sys
for l in open(sys.argv[1]):
    l=l.strip()
    if not l.startswith("{"): continue
    d=json.loads(l); print(d["model"].split("/")[-1], d.get("kld_mean"), d.get("ppl"), d.get("top1"))' "$f" >>"$OUT/run.log" 2>&1 ||
    head -c 2000 "$f" >>"$OUT/run.log"
done
head -c 3000 "$Q/errors.txt" >>"$OUT/run.log" 2>/dev/null
log done
tar czf "$OUT/q.tgz" -C "$Q" --exclude files .
