#!/usr/bin/env bash
# The main commands on the bundled tiny model: inspect (text and --json), run (greedy output identical
# for 1 and 2 threads, and across runs; seeded sampling reproducible), eval --json fields.
set -u
LOWBIT=${LOWBIT:-build/lowbit}
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }

out=$("$LOWBIT" inspect models/tiny) || bad "inspect failed"
grep -q "Qwen2ForCausalLM" <<<"$out" && grep -q "5247232" <<<"$out" && grep -q "^model.embed_tokens.weight *8192, 256 *f16 *4194304" <<<"$out" && ok || bad "inspect text: $out"
out=$("$LOWBIT" inspect models/tiny --json) || bad "inspect --json failed"
grep -q '"n_params": 5247232' <<<"$out" && grep -q '"n_layer": 4' <<<"$out" && ok || bad "inspect --json: $out"

a=$("$LOWBIT" run models/tiny -p "The kernel" -n 24 -t 1 -q) || bad "run -t 1"
b=$("$LOWBIT" run models/tiny -p "The kernel" -n 24 -t 2 -q) || bad "run -t 2"
[ -n "$a" ] && [ "$a" = "$b" ] && [ "${a#The kernel}" != "$a" ] && [ ${#a} -gt 20 ] && ok || bad "greedy run differs by thread count: [$a] [$b]"
c=$("$LOWBIT" run models/tiny -p "The kernel" -n 24 --temp 0.8 --seed 7 -q)
d=$("$LOWBIT" run models/tiny -p "The kernel" -n 24 --temp 0.8 --seed 7 -q)
[ "$c" = "$d" ] && ok || bad "seeded sampling not reproducible"

out=$("$LOWBIT" eval models/tiny --text tests/golden/data/valid.txt --chunks 2 --json -q) || bad "eval --json"
grep -q '"chunks": 2' <<<"$out" && grep -q '"tokens_scored": 1022' <<<"$out" && grep -q '"ppl": ' <<<"$out" && ok || bad "eval --json: $out"

"$LOWBIT" --help | grep -q "inspect" && ok || bad "--help"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
