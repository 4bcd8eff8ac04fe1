#!/usr/bin/env bash
# The main commands on the bundled tiny model: inspect (text and --json), run (greedy output identical
# for 1 and 2 threads, and across runs; seeded sampling reproducible), eval --json fields, bench rows.
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

# bench: rows for every thread count and test, each with CPU, kernels, commit and threads; CSV; bad options
out=$("$LOWBIT" bench models/tiny -p 16 -n 4 -r 2 -t 1,2 --json --no-bandwidth) || bad "bench --json failed"
rows=$(grep -c '"test": ' <<<"$out")
[ "$rows" -eq 4 ] && grep -q '"test": "pp16"' <<<"$out" && grep -q '"test": "tg4"' <<<"$out" && grep -q '"threads": 2' <<<"$out" &&
  grep -q '"cpu": ' <<<"$out" && grep -q '"isa": "[a-z0-9]*"' <<<"$out" && grep -q '"commit": "[0-9a-z+]*"' <<<"$out" &&
  grep -q '"kv_cache": "f32"' <<<"$out" &&
  python3 -c 'import json,sys; r=json.load(sys.stdin); assert all(x["tps_mean"] > 0 for x in r)' <<<"$out" && ok || bad "bench --json: $out"
out=$(LB_FORCE_REF=1 "$LOWBIT" bench models/tiny -p 8 -n 0 -r 1 -t 1 --csv --cache-type f16) || bad "bench --csv failed"
[ "$(wc -l <<<"$out")" -eq 2 ] && grep -q "^model,size_mib" <<<"$out" && grep -q ",ref," <<<"$out" && grep -q ",f16$" <<<"$out" && ok ||
  bad "bench --csv: $out"
err=$("$LOWBIT" bench models/tiny -t 0 2>&1) && bad "bench -t 0 accepted" || { grep -q "\-t" <<<"$err" && ok || bad "bench -t 0: $err"; }
err=$("$LOWBIT" bench models/tiny -p 0 -n 0 2>&1) && bad "bench -p 0 -n 0 accepted" || ok

"$LOWBIT" --help | grep -q "inspect" && ok || bad "--help"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
