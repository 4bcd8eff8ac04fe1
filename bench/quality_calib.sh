#!/usr/bin/env bash
# Calibrated quantization quality for docs/QUALITY.md: for each type and method, quantize MODEL with
# lowbit calibrated on calib.txt, then score every file (and llama.cpp's own imatrix files, if given) in
# one eval run per text against MODEL as the base: perplexity, KL divergence, top-1 agreement on the first
# 40 windows of valid.txt and wikitext-2 (never the calibration text); plus bits per weight, seconds and
# peak memory to quantize.
#
# usage: bench/quality_calib.sh MODEL_DIR NAME "TYPES" "METHODS" [LLAMACPP_FILES...]
#   env: CALIB_TOKENS (default 65536), THREADS=2, OUT=bench/out, CHUNKS (eval windows per text, default 40),
#        VALID / WIKI (the two texts, default tests/golden/data/{valid,wikitext-2-test}.txt), REUSE=1 keeps a file (and its quantize
#        summary, OUT/NAME-TYPE-METHOD.json) already made by an earlier run instead of making it again
set -euo pipefail
LOWBIT=${LOWBIT:-build/lowbit}
MODEL=$1
NAME=$2
TYPES=$3
METHODS=$4
shift 4
THREADS=${THREADS:-2}
OUT=${OUT:-bench/out}
CALIB_TOKENS=${CALIB_TOKENS:-65536}
CALIB=${CALIB:-../shared/data/calib.txt}
CHUNKS=${CHUNKS:-40}
VALID=${VALID:-tests/golden/data/valid.txt}
WIKI=${WIKI:-tests/golden/data/wikitext-2-test.txt}
mkdir -p "$OUT"
field() { grep -o "\"$2\": [-0-9.e+]*" <<<"$1" | head -1 | awk '{print $2}'; }
files=()
declare -A qjson
for t in $TYPES; do
  for m in $METHODS; do
    f="$OUT/$NAME-$t-$m.gguf"
    if [ "${REUSE:-0}" != 1 ] || [ ! -s "$f" ] || [ ! -s "${f%.gguf}.json" ]; then
      "$LOWBIT" quantize "$MODEL" -o "$f" --type "$t" --method "$m" --calib "$CALIB" --calib-tokens "$CALIB_TOKENS" \
        -t "$THREADS" --json -q >"${f%.gguf}.json"
    fi
    qjson[$f]=$(cat "${f%.gguf}.json")
    files+=("$f")
  done
done
files+=("$@")
"$LOWBIT" eval "${files[@]}" --base "$MODEL" --text "$VALID" --chunks "$CHUNKS" -t "$THREADS" --json -q >"$OUT/$NAME-calib-valid.jsonl"
"$LOWBIT" eval "${files[@]}" --base "$MODEL" --text "$WIKI" --chunks "$CHUNKS" -t "$THREADS" --json -q >"$OUT/$NAME-calib-wiki.jsonl"
echo "| model | file | bits/weight | file bytes | ppl valid | ppl wikitext2 | KLD valid | KLD wikitext2 | top-1 % valid | top-1 % wikitext2 | quantize s | peak MiB |"
echo "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
for f in "${files[@]}"; do
  v=$(grep -F "\"model\": \"$f\"" "$OUT/$NAME-calib-valid.jsonl")
  w=$(grep -F "\"model\": \"$f\"" "$OUT/$NAME-calib-wiki.jsonl")
  q=${qjson[$f]:-}
  n=$(field "$("$LOWBIT" inspect "$f" --json)" n_params)
  bytes=$(stat -c %s "$f")
  printf "| %s | %s | %.3f | %s | %.4f | %.3f | %.5f | %.5f | %.2f | %.2f | %s | %s |\n" "$NAME" "$(basename "$f" .gguf)" \
    "$(awk -v b="$bytes" -v n="$n" 'BEGIN{print 8*b/n}')" "$bytes" "$(field "$v" ppl)" "$(field "$w" ppl)" \
    "$(field "$v" kld_mean)" "$(field "$w" kld_mean)" "$(awk -v x="$(field "$v" top1)" 'BEGIN{print 100*x}')" \
    "$(awk -v x="$(field "$w" top1)" 'BEGIN{print 100*x}')" "${q:+$(field "$q" seconds)}" \
    "${q:+$(awk -v x="$(field "$q" peak_rss_bytes)" 'BEGIN{printf "%.0f", x/1048576}')}"
done
