#!/usr/bin/env bash
# `lowbit eval` reproduces the perplexities Hugging Face transformers computed (goldens.json "ppl", fp32,
# first 40 windows of 512 tokens) within 0.1% relative, for both models and both texts; `--base` with the
# model itself gives zero KL divergence and full top-1 agreement.
set -u
LOWBIT=${LOWBIT:-build/lowbit}
SHARED=${LB_SHARED:-../shared}
pass=0
fail=0

json_field() { grep -o "\"$2\": [-0-9.e+]*" <<<"$1" | head -1 | awk '{print $2}'; }
golden_ppl() { grep -o "\"$2\": {[^}]*}" "$1" | grep -o '"ppl": [0-9.]*' | awk '{print $2}'; }

check_ppl() {
  local model=$1 goldens=$2 text=$3 key=$4
  local out want got scored
  out=$("$LOWBIT" eval "$model" --text "$text" --chunks 40 --json -q) || { fail=$((fail + 1)); echo "FAIL eval $model $text"; return; }
  want=$(golden_ppl "$goldens" "$key")
  got=$(json_field "$out" ppl)
  scored=$(json_field "$out" tokens_scored)
  if awk -v a="$got" -v b="$want" 'BEGIN { d = (a - b) / b; if (d < 0) d = -d; exit !(d <= 0.001) }' && [ "$scored" = 20440 ]; then
    pass=$((pass + 1))
    echo "ok   $model $key: ppl $got (transformers $want), $scored positions"
  else
    fail=$((fail + 1))
    echo "FAIL $model $key: ppl $got vs transformers $want, $scored positions scored"
  fi
}

check_ppl models/tiny models/tiny/goldens.json tests/golden/data/valid.txt valid
check_ppl models/tiny models/tiny/goldens.json tests/golden/data/wikitext-2-test.txt wikitext2
check_ppl "$SHARED/models/small" tests/golden/small/goldens.json tests/golden/data/valid.txt valid
check_ppl "$SHARED/models/small" tests/golden/small/goldens.json tests/golden/data/wikitext-2-test.txt wikitext2

out=$("$LOWBIT" eval models/tiny --base models/tiny --text tests/golden/data/valid.txt --chunks 2 --json -q)
if [ "$(json_field "$out" kld_mean)" = "0.00000000" ] && [ "$(json_field "$out" top1)" = "1.000000" ]; then
  pass=$((pass + 1))
else
  fail=$((fail + 1))
  echo "FAIL self-KLD: $out"
fi
# the time split: loading (the contexts) is part of the run, and the windows' rate is at least the whole run's
if awk -v s="$(json_field "$out" seconds)" -v l="$(json_field "$out" load_seconds)" -v t="$(json_field "$out" tokens_per_second)" \
  -v w="$(json_field "$out" eval_tokens_per_second)" 'BEGIN { exit !(l != "" && w != "" && l >= 0 && l <= s && w >= t && t > 0) }'; then
  pass=$((pass + 1))
else
  fail=$((fail + 1))
  echo "FAIL time split: $out"
fi
# --exact concerns GPU contexts only: on the CPU the same numbers
x=$("$LOWBIT" eval models/tiny --base models/tiny --text tests/golden/data/valid.txt --chunks 2 --json -q --exact)
if [ -n "$x" ] && [ "$(json_field "$x" ppl)" = "$(json_field "$out" ppl)" ] && [ "$(json_field "$x" kld_mean)" = "$(json_field "$out" kld_mean)" ]; then
  pass=$((pass + 1))
else
  fail=$((fail + 1))
  echo "FAIL --exact on the CPU: $x"
fi
# an F16 KV cache on the CPU: the perplexity within 0.5 % of the F32 cache's; a GPU cache type it cannot have, and an
# unknown one, are one error line before anything loads
h=$("$LOWBIT" eval models/tiny --text tests/golden/data/valid.txt --chunks 2 --json -q --cache-type f16)
if awk -v a="$(json_field "$h" ppl)" -v b="$(json_field "$out" ppl)" 'BEGIN { d = a / b - 1; exit !(a > 0 && d < 0.005 && d > -0.005) }'; then
  pass=$((pass + 1))
else
  fail=$((fail + 1))
  echo "FAIL --cache-type f16: $h"
fi
for bad in "--cache-type f32 --device cuda" "--cache-type f16 --device cuda --exact" "--cache-type q8_0"; do
  # shellcheck disable=SC2086 # the options split on purpose
  err=$("$LOWBIT" eval models/tiny --text tests/golden/data/valid.txt --chunks 1 -q $bad 2>&1 >/dev/null) && rc=0 || rc=$?
  if [ "$rc" -eq 1 ] && [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] && grep -q "cache" <<<"$err"; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAIL eval $bad: rc=$rc '$err'"
  fi
done

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
