#!/usr/bin/env bash
# lowbit tokenize: the ids of the tiny model's golden texts (Hugging Face transformers' tokenizer output,
# from models/tiny/goldens.json) through -p, --text, --ids and --json, from the HF directory, its
# tokenizer.json and llama.cpp's GGUF of it; and clean one-line errors for bad input.
set -u
LOWBIT=${LOWBIT:-build/lowbit}
SHARED=${LB_SHARED:-../shared}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0
fail=0

ok() {
  if [ "$2" = "$3" ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL $1: got '$2', want '$3'"; fi
}

expect_error() {
  local name=$1 pattern=$2
  shift 2
  timeout 60 "$@" >"$T/out" 2>"$T/err"
  local rc=$?
  if [ $rc -ne 0 ] && [ $rc -lt 124 ] && grep -q "^lowbit: " "$T/err" && grep -Eq -- "$pattern" "$T/err"; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAIL $name: rc=$rc, expected /$pattern/, stderr:"
    sed 's/^/    /' "$T/err" | head -5
  fi
}

# the tokenizer entries of models/tiny/goldens.json (Hugging Face transformers' ids)
n=0
printf '%b' 'Hello world' >"$T/t$n.txt"; echo '5033 319 1794' >"$T/t$n.ids"; n=$((n + 1))
printf '%b' '  two  spaces and\ttab\n\nnewlines' >"$T/t$n.txt"; echo '221 868 221 422 2350 320 198 7561 199 199 3604 76 989' >"$T/t$n.ids"; n=$((n + 1))
printf '%b' 'naïve café – “quotes”' >"$T/t$n.txt"; echo '2243 128 108 548 280 833 128 103 221 4558 242 221 4558 251 380 6157 4558 252' >"$T/t$n.ids"; n=$((n + 1))
printf '%b' '数字 123456789 and 3.14159' >"$T/t$n.txt"; echo '163 244 109 7738 246 3032 7980 21 22 23 24 25 320 480 14 2885 1762 25' >"$T/t$n.ids"; n=$((n + 1))
printf '%b' 'def f(x):\n    return x**2  # square' >"$T/t$n.txt"; echo '1873 296 8 88 6007 275 2018 4990 2807 18 221 3505 4239' >"$T/t$n.ids"; n=$((n + 1))
printf '%b' "don't won't it's I'm" >"$T/t$n.txt"; echo '5397 1346 3458 1346 499 481 498 7 77' >"$T/t$n.ids"; n=$((n + 1))
printf '%b' 'emoji 🚀🔥 done' >"$T/t$n.txt"; echo '353 79 74 73 221 173 254 249 223 173 254 243 99 3543' >"$T/t$n.ids"; n=$((n + 1))
printf '%b' '<|endoftext|>after' >"$T/t$n.txt"; echo '0 5159' >"$T/t$n.ids"; n=$((n + 1))
for model in models/tiny models/tiny/tokenizer.json "$SHARED/golden/gguf/tiny-q8_0.gguf"; do
  for ((i = 0; i < n; i++)); do
    ok "$model case $i --ids" "$("$LOWBIT" tokenize "$model" --text "$T/t$i.txt" --ids)" "$(cat "$T/t$i.ids")"
  done
done
ok "-p" "$("$LOWBIT" tokenize models/tiny -p "Hello world" --ids)" "5033 319 1794"
ok "--json" "$("$LOWBIT" tokenize models/tiny -p "Hello world" --json)" '{"n_tokens": 3, "ids": [5033, 319, 1794]}'
ok "token lines" "$("$LOWBIT" tokenize models/tiny -p "Hello world" | tr -s ' ' | tr '\n' ';')" ' 5033 "Hel"; 319 "lo"; 1794 "Ġworld";'

expect_error "no model" "MODEL and exactly one of" "$LOWBIT" tokenize -p hi
expect_error "both inputs" "exactly one of" "$LOWBIT" tokenize models/tiny -p hi --text "$T/t0.txt"
expect_error "ids and json" "exclude each other" "$LOWBIT" tokenize models/tiny -p hi --ids --json
expect_error "unknown option" "unknown option" "$LOWBIT" tokenize models/tiny -p hi --frob
expect_error "missing model" "none|No such|cannot open" "$LOWBIT" tokenize "$T/none" -p hi
printf 'ok \xff\n' >"$T/bad.txt"
expect_error "non-UTF-8 text" "not valid UTF-8" "$LOWBIT" tokenize models/tiny --text "$T/bad.txt"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
