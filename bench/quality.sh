#!/usr/bin/env bash
# Quantization quality table for docs/QUALITY.md: for each model and type, quantize with lowbit (default
# encoder, and optionally the ggml reference encoder), then measure bits per weight, file size,
# perplexity on valid.txt and wikitext-2, KL divergence and top-1 agreement against the original
# checkpoint (all by lowbit's engine, 40 windows of 512 tokens), and the time to quantize.
#
# usage: bench/quality.sh MODEL_DIR NAME [TYPES...]      (run from the repository root, after `make`)
#   env: ENCODERS="default ref" (default: "default"), THREADS=2, OUT=bench/out
set -euo pipefail
LOWBIT=${LOWBIT:-build/lowbit}
MODEL=$1
NAME=$2
shift 2
TYPES=${*:-"f16 q8_0 q6_k q5_k_m q5_k_s q4_k_m q4_k_s q4_0 q4_1 q5_0 q5_1 iq4_nl iq4_xs q3_k_l q3_k_m q3_k_s q2_k"}
ENCODERS=${ENCODERS:-default}
THREADS=${THREADS:-2}
OUT=${OUT:-bench/out}
VALID=tests/golden/data/valid.txt
WIKI=tests/golden/data/wikitext-2-test.txt
mkdir -p "$OUT"

field() { grep -o "\"$2\": [-0-9.e+]*" <<<"$1" | head -1 | awk '{print $2}'; }

echo "| model | type | encoder | bits/weight | file bytes | ppl valid | ppl wikitext2 | KLD valid | KLD wikitext2 | top-1 % valid | top-1 % wikitext2 | quantize s |"
echo "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
for enc in $ENCODERS; do
  for t in $TYPES; do
    f="$OUT/$NAME-$t-$enc.gguf"
    q=$("$LOWBIT" quantize "$MODEL" -o "$f" --type "$t" --encoder "$enc" -t "$THREADS" --json -q)
    v=$("$LOWBIT" eval "$f" --base "$MODEL" --text "$VALID" --chunks 40 -t "$THREADS" --json -q)
    w=$("$LOWBIT" eval "$f" --base "$MODEL" --text "$WIKI" --chunks 40 -t "$THREADS" --json -q)
    printf "| %s | %s | %s | %.3f | %s | %.4f | %.3f | %.5f | %.5f | %.2f | %.2f | %.2f |\n" "$NAME" "$t" "$enc" \
      "$(field "$q" bits_per_weight)" "$(field "$q" file_bytes)" "$(field "$v" ppl)" "$(field "$w" ppl)" \
      "$(field "$v" kld_mean)" "$(field "$w" kld_mean)" "$(awk -v x="$(field "$v" top1)" 'BEGIN{print 100*x}')" \
      "$(awk -v x="$(field "$w" top1)" 'BEGIN{print 100*x}')" "$(field "$q" seconds)"
  done
done
