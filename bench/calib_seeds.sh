#!/usr/bin/env bash
# calib_seeds.sh - GPU-against-CPU quality over several calibration draws (docs/QUALITY.md): a single file's KL on
# tiny moves by several percent with rounding-sized changes (docs/BENCHMARKS.md, run 12), so the GPU and CPU paths are
# also compared by their mean over seeds (--seed picks the calibration windows). From the repository root:
#   bench/calib_seeds.sh DEVICE OUT_DIR      (DEVICE cpu or cuda)
# quantizes tiny by each of $METHODS (default awq awq+gptq) at each of $TYPES (default q4_k_m q3_k_m q2_k iq4_xs) with
# --seed 1..$SEEDS (default 5) at 16,384 calibration tokens of $CALIB on DEVICE, scores every file with the CPU's eval
# (valid.txt, ctx 512, 40 windows, against models/tiny) and writes OUT_DIR/seeds-DEVICE.jsonl (one line per file: method,
# type, seed, kld_mean, ppl, quantize seconds). LOWBIT (default build/lowbit), CALIB (default ../shared/data/calib.txt),
# THREADS (default: all CPUs) override the defaults; FILES (default OUT_DIR/files-DEVICE) is where the files go (on the GPU
# machine outside OUT_DIR: a call brings back at most 64 MiB).
set -uo pipefail
DEV=${1:?usage: bench/calib_seeds.sh cpu|cuda OUT_DIR}
OUT=${2:?usage}
LOWBIT=${LOWBIT:-build/lowbit}
CALIB=${CALIB:-../shared/data/calib.txt}
THREADS=${THREADS:-$(nproc)}
F=${FILES:-$OUT/files-$DEV}
mkdir -p "$F"
: >"$OUT/seeds-$DEV.jsonl"
for m in ${METHODS:-awq awq+gptq}; do
  for t in ${TYPES:-q4_k_m q3_k_m q2_k iq4_xs}; do
    for seed in $(seq 1 "${SEEDS:-5}"); do
      f=$F/tiny-$m-$t-s$seed.gguf
      q=$("$LOWBIT" quantize models/tiny -o "$f" --type "$t" --method "$m" --calib "$CALIB" --calib-tokens 16384 --seed "$seed" \
        --device "$DEV" -t "$THREADS" --json -q 2>>"$OUT/errors.txt" | grep -o '"seconds": [0-9.]*' | head -1 | awk '{print $2}')
      e=$("$LOWBIT" eval "$f" --base models/tiny --text tests/golden/data/valid.txt --ctx 512 --chunks 40 -t "$THREADS" --json -q \
        2>>"$OUT/errors.txt")
      k=$(grep -o '"kld_mean": [0-9.e-]*' <<<"$e" | awk '{print $2}')
      p=$(grep -o '"ppl": [0-9.]*' <<<"$e" | head -1 | awk '{print $2}')
      echo "{\"device\": \"$DEV\", \"method\": \"$m\", \"type\": \"$t\", \"seed\": $seed, \"kld_mean\": ${k:-null}, \"ppl\": ${p:-null}, \"quantize_seconds\": ${q:-null}}" |
        tee -a "$OUT/seeds-$DEV.jsonl"
    done
  done
done
