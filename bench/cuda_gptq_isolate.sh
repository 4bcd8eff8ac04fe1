#!/usr/bin/env bash
# cuda_gptq_isolate.sh - which GPU part of GPTQ moves its result: tiny's q4_k_m gptq (4,096 calibration tokens of
# calib.txt, GPU statistics) with GPTQ's solver on CPU threads, on the GPU as by default, and with each GPU part
# left on CPU threads in turn (LB_GPU_SWEEP_SKIP: whole passes p, the descent c, the reference target r;
# LB_GPU_SWEEP=0 all three; LB_GPU_ENCODE=0 the encoders), each file scored against tiny (KL on valid.txt, CPU
# engine), and which files are byte-identical. Tiny's KL moves by several per cent with rounding alone (docs/
# BENCHMARKS.md, run 12): compare parts by the shadow test's objectives, not by one file's KL.
# From the repository root on the GPU machine, lowbit and calib.txt in build/:
#   bench/cuda_gptq_isolate.sh OUT_DIR
set -uo pipefail
OUT=${1:?usage: bench/cuda_gptq_isolate.sh OUT_DIR}
W=/tmp/lb-isolate
mkdir -p "$W" "$OUT"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}
variants=(cpu-solver gpu skip-p skip-c skip-r skip-pc no-sweep no-encode)
envs=("LB_GPTQ_GPU=0" "LB_GPTQ_GPU=1" "LB_GPU_SWEEP_SKIP=p" "LB_GPU_SWEEP_SKIP=c" "LB_GPU_SWEEP_SKIP=r" "LB_GPU_SWEEP_SKIP=pc"
  "LB_GPU_SWEEP=0" "LB_GPU_ENCODE=0")
files=()
for i in "${!variants[@]}"; do
  f=$W/${variants[$i]}.gguf
  # shellcheck disable=SC2086
  env ${envs[$i]} build/lowbit quantize models/tiny -o "$f" --type q4_k_m --method gptq --calib build/calib.txt --calib-tokens 4096 \
    --device cuda -t "$(nproc)" -q 2>>"$OUT/isolate.err" || echo "${variants[$i]}: quantize failed" | tee -a "$OUT/isolate.txt"
  [ -s "$f" ] && files+=("$f")
done
build/lowbit eval "${files[@]}" --base models/tiny --text tests/golden/data/valid.txt --chunks 20 -t "$(nproc)" --json -q >"$OUT/isolate.jsonl" 2>>"$OUT/isolate.err"
python3 - "$OUT/isolate.jsonl" <<'PY' | tee -a "$OUT/isolate.txt"
import json, sys
for l in open(sys.argv[1]):
    d = json.loads(l)
    print(f"{d['model'].split('/')[-1]:32s} KL {d['kld_mean']:.6f}  ppl {d['ppl']:.4f}")
PY
sha256sum "${files[@]}" | sed 's#/tmp/lb-isolate/##' | tee -a "$OUT/isolate.txt"
