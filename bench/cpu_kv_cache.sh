#!/usr/bin/env bash
# cpu_kv_cache.sh - the CPU's F32 and F16 KV caches side by side on small, alternating, from the repository root:
#   bench/cpu_kv_cache.sh [ROUNDS]     (default 3)
# per round and cache type: `lowbit eval` of wikitext-2 in 2,048-token windows (4 of them; the windows' tokens/s and
# the perplexity) and `lowbit run` of a 1,832-token prompt (the first 5,600 bytes of wikitext-2) plus 128 generated
# tokens (prompt and generation tokens/s). env: LOWBIT (build/lowbit), SMALL (../shared/models/small), THREADS (2).
set -euo pipefail
LOWBIT=${LOWBIT:-build/lowbit}
SMALL=${SMALL:-../shared/models/small}
THREADS=${THREADS:-2}
TEXT=tests/golden/data/wikitext-2-test.txt
PROMPT=$(head -c 5600 "$TEXT")
echo "lowbit $(git rev-parse --short HEAD 2>/dev/null || echo unknown); $THREADS threads; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "${1:-3}"); do
  for ct in f32 f16; do
    e=$("$LOWBIT" eval "$SMALL" --text "$TEXT" --ctx 2048 --chunks 4 -q -t "$THREADS" --cache-type $ct --json |
      grep -o '"ppl": [0-9.]*\|"eval_tokens_per_second": [0-9.]*' | tr '\n' ' ')
    g=$("$LOWBIT" run "$SMALL" -p "$PROMPT" -n 128 --ignore-eos -t "$THREADS" --cache-type $ct 2>&1 >/dev/null | tail -1)
    echo "round $r $ct: eval ctx 2048: $e| run: $g"
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
