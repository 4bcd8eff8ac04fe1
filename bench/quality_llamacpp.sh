#!/usr/bin/env bash
# The GGUF files llama.cpp wrote (../shared/golden/gguf) measured by lowbit's engine against the same
# base checkpoint as bench/quality.sh, so the two tables compare files, not engines.
# usage: bench/quality_llamacpp.sh MODEL_DIR NAME FILE...      (run from the repository root)
set -euo pipefail
LOWBIT=${LOWBIT:-build/lowbit}
MODEL=$1
NAME=$2
shift 2
THREADS=${THREADS:-2}
field() { grep -o "\"$2\": [-0-9.e+]*" <<<"$1" | head -1 | awk '{print $2}'; }
echo "| model | llama.cpp file | bits/weight | file bytes | ppl valid | ppl wikitext2 | KLD valid | KLD wikitext2 | top-1 % valid | top-1 % wikitext2 |"
echo "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|"
for f in "$@"; do
  n=$("$LOWBIT" inspect "$f" --json | grep -o '"n_params": [0-9]*' | awk '{print $2}')
  bytes=$(stat -c %s "$f")
  v=$("$LOWBIT" eval "$f" --base "$MODEL" --text tests/golden/data/valid.txt --chunks 40 -t "$THREADS" --json -q)
  w=$("$LOWBIT" eval "$f" --base "$MODEL" --text tests/golden/data/wikitext-2-test.txt --chunks 40 -t "$THREADS" --json -q)
  printf "| %s | %s | %.3f | %s | %.4f | %.3f | %.5f | %.5f | %.2f | %.2f |\n" "$NAME" "$(basename "$f")" \
    "$(awk -v b="$bytes" -v n="$n" 'BEGIN{print 8*b/n}')" "$bytes" "$(field "$v" ppl)" "$(field "$w" ppl)" \
    "$(field "$v" kld_mean)" "$(field "$w" kld_mean)" "$(awk -v x="$(field "$v" top1)" 'BEGIN{print 100*x}')" \
    "$(awk -v x="$(field "$w" top1)" 'BEGIN{print 100*x}')"
done
