#!/usr/bin/env bash
# Quantization quality table for docs/QUALITY.md: for each type (and encoder), quantize MODEL with
# lowbit, then measure with lowbit's engine, against MODEL itself as the base, on the first 40 windows of
# 512 tokens of valid.txt and wikitext-2: perplexity, mean KL(base || quantized), top-1 agreement; plus
# bits per weight (file bytes * 8 / parameters), file size and the time to quantize. All quantized files
# are scored in one eval run per text, so the base model runs once per window.
#
# usage: bench/quality.sh MODEL_DIR NAME [TYPES...]      (from the repository root, after `make`)
#   env: ENCODERS="default ref" (default: "default"), IMATRIX=FILE, THREADS=2, OUT=bench/out
set -euo pipefail
LOWBIT=${LOWBIT:-build/lowbit}
MODEL=$1
NAME=$2
shift 2
TYPES=${*:-"f16 q8_0 q6_k q5_k_m q5_k_s q4_k_m q4_k_s q4_1 q4_0 q5_1 q5_0 iq4_nl iq4_xs q3_k_l q3_k_m q3_k_s q2_k"}
ENCODERS=${ENCODERS:-default}
THREADS=${THREADS:-2}
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
field() { grep -o "\"$2\": [-0-9.e+]*" <<<"$1" | head -1 | awk '{print $2}'; }
imat=()
suffix=""
if [ -n "${IMATRIX:-}" ]; then imat=(--imatrix "$IMATRIX"); suffix="-imat"; fi

files=()
declare -A qjson
for enc in $ENCODERS; do
  for t in $TYPES; do
    f="$OUT/$NAME-$t-$enc$suffix.gguf"
    qjson[$f]=$("$LOWBIT" quantize "$MODEL" -o "$f" --type "$t" --encoder "$enc" "${imat[@]}" -t "$THREADS" --json -q)
    files+=("$f")
  done
done
"$LOWBIT" eval "${files[@]}" --base "$MODEL" --text tests/golden/data/valid.txt --chunks 40 -t "$THREADS" --json -q >"$OUT/$NAME$suffix-valid.jsonl"
"$LOWBIT" eval "${files[@]}" --base "$MODEL" --text tests/golden/data/wikitext-2-test.txt --chunks 40 -t "$THREADS" --json -q >"$OUT/$NAME$suffix-wiki.jsonl"

echo "| model | type | encoder | bits/weight | file bytes | ppl valid | ppl wikitext2 | KLD valid | KLD wikitext2 | top-1 % valid | top-1 % wikitext2 | quantize s |"
echo "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
for f in "${files[@]}"; do
  v=$(grep -F "\"model\": \"$f\"" "$OUT/$NAME$suffix-valid.jsonl")
  w=$(grep -F "\"model\": \"$f\"" "$OUT/$NAME$suffix-wiki.jsonl")
  q=${qjson[$f]}
  b=$(basename "$f" .gguf)
  t=$(cut -d- -f2 <<<"$b")
  enc=$(cut -d- -f3 <<<"$b")
  printf "| %s | %s%s | %s | %.3f | %s | %.4f | %.3f | %.5f | %.5f | %.2f | %.2f | %.2f |\n" "$NAME" "$t" "${suffix:+ + imatrix}" "$enc" \
    "$(field "$q" bits_per_weight)" "$(field "$q" file_bytes)" "$(field "$v" ppl)" "$(field "$w" ppl)" \
    "$(field "$v" kld_mean)" "$(field "$w" kld_mean)" "$(awk -v x="$(field "$v" top1)" 'BEGIN{print 100*x}')" \
    "$(awk -v x="$(field "$w" top1)" 'BEGIN{print 100*x}')" "$(field "$q" seconds)"
done
