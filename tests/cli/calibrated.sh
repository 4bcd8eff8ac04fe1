#!/usr/bin/env bash
# Calibrated quantization end to end on the bundled tiny model (calibration on calib.txt, evaluation on
# valid.txt, never the same text): every method writes a file, beats round-to-nearest at the same type in
# KL divergence against the original, gives byte-identical files for any thread count and for a fixed
# seed, works from a GGUF F16 input, and refuses missing calibration text.
set -u
LOWBIT=${LOWBIT:-build/lowbit}
SHARED=${LB_SHARED:-../shared}
CALIB="$SHARED/data/calib.txt"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
field() { grep -o "\"$2\": [-0-9.e+]*" <<<"$1" | head -1 | awk '{print $2}'; }

q() { "$LOWBIT" quantize models/tiny --type q4_k_m -q "$@" >/dev/null 2>"$T/err" || { bad "quantize $*: $(cat "$T/err")"; return 1; }; }
q -o "$T/rtn.gguf"
files=("$T/rtn.gguf")
for m in imatrix gptq awq awq+gptq; do
  f="$T/$m.gguf"
  q -o "$f" --method "$m" --calib "$CALIB" --calib-tokens 8192 -t 2 && files+=("$f")
done
# GPTQ aimed at each matrix's own output on the quantized model's inputs instead of the unquantized model's
q -o "$T/gptq-own.gguf" --method gptq --own-target --calib "$CALIB" --calib-tokens 8192 -t 2 && files+=("$T/gptq-own.gguf")
! cmp -s "$T/gptq-own.gguf" "$T/gptq.gguf" && ok || bad "gptq --own-target gives the same file as the default target"
# coordinate descent over the codes alone, the sub-block scales left as the passes chose them
q -o "$T/gptq-codes.gguf" --method gptq --codes-only-cd --calib "$CALIB" --calib-tokens 8192 -t 2 && files+=("$T/gptq-codes.gguf")
! cmp -s "$T/gptq-codes.gguf" "$T/gptq.gguf" && ok || bad "gptq --codes-only-cd gives the same file as the default"
out=$("$LOWBIT" eval "${files[@]}" --base models/tiny --text tests/golden/data/valid.txt --chunks 8 --json -q)
rtn=$(grep -F "\"model\": \"$T/rtn.gguf\"" <<<"$out")
for m in imatrix gptq gptq-own gptq-codes awq awq+gptq; do
  r=$(grep -F "\"model\": \"$T/$m.gguf\"" <<<"$out")
  if awk -v a="$(field "$r" kld_mean)" -v b="$(field "$rtn" kld_mean)" 'BEGIN { exit !(a < b) }'; then ok
  else bad "$m KLD $(field "$r" kld_mean) not below rtn $(field "$rtn" kld_mean)"; fi
  echo "$m: KLD $(field "$r" kld_mean) (rtn $(field "$rtn" kld_mean))"
done

# determinism: thread count and seed. 3 threads split the work differently from 2 and take no longer on
# a 2-core machine than 2 do (1 thread would double the time); the seed only chooses the windows, so the
# cheapest method shows it
q -o "$T/g3.gguf" --method gptq --calib "$CALIB" --calib-tokens 8192 -t 3 && cmp -s "$T/g3.gguf" "$T/gptq.gguf" && ok || bad "gptq: 2 and 3 threads differ"
# a layer stage's matrices solved side by side (as on a set of GPUs, here two solvers on CPU threads): the same file
js=$(LB_CALIB_SOLVERS=2 "$LOWBIT" quantize models/tiny --type q4_k_m -q -o "$T/gs.gguf" --method gptq --calib "$CALIB" --calib-tokens 8192 -t 2 --json) \
  && cmp -s "$T/gs.gguf" "$T/gptq.gguf" && ok || bad "gptq: two solvers differ from one"
[ "$(field "$js" gptq_solvers)" = 2 ] && [ "$(field "$js" gpus)" = 0 ] && ok || bad "gptq with two solvers: the report says gptq_solvers $(field "$js" gptq_solvers), gpus $(field "$js" gpus)"
# the report's time split: setup before the first layer, the layers' F32 copies, within the run's seconds
awk -v s="$(field "$js" seconds)" -v u="$(field "$js" setup_seconds)" -v c="$(field "$js" convert_seconds)" -v h="$(field "$js" head_seconds)" \
  -v w="$(field "$js" windows_seconds)" 'BEGIN { exit !(u > 0 && u < s && c >= 0 && c < s && h >= 0 && h < s && w >= 0 && w <= u) }' && ok ||
  bad "gptq --json: setup_seconds $(field "$js" setup_seconds), convert_seconds $(field "$js" convert_seconds), head_seconds $(field "$js" head_seconds) against seconds $(field "$js" seconds)"
q -o "$T/a3.gguf" --method awq --calib "$CALIB" --calib-tokens 8192 -t 3 && cmp -s "$T/a3.gguf" "$T/awq.gguf" && ok || bad "awq: 2 and 3 threads differ"
q -o "$T/i2.gguf" --method imatrix --calib "$CALIB" --calib-tokens 8192 -t 2 --seed 2 && ! cmp -s "$T/i2.gguf" "$T/imatrix.gguf" && ok || bad "another seed should pick other windows"
q -o "$T/i1.gguf" --method imatrix --calib "$CALIB" --calib-tokens 8192 -t 1 && cmp -s "$T/i1.gguf" "$T/imatrix.gguf" && ok || bad "imatrix: 1 and 2 threads differ"

# GGUF F16 input (llama.cpp's conversion of the same checkpoint), with little calibration text: 2,048
# tokens, under 16 per column of every matrix, where the default damping rises to 0.3 (with 0.01 this run
# does worse than round-to-nearest)
if "$LOWBIT" quantize "$SHARED/golden/gguf/tiny-f16.gguf" -o "$T/gg.gguf" --type q4_k_m --method gptq --calib "$CALIB" --calib-tokens 2048 -q >/dev/null 2>"$T/err"; then
  r=$("$LOWBIT" eval "$T/gg.gguf" --base models/tiny --text tests/golden/data/valid.txt --chunks 8 --json -q)
  awk -v a="$(field "$r" kld_mean)" -v b="$(field "$rtn" kld_mean)" 'BEGIN { exit !(a < b) }' && ok || bad "gptq from GGUF F16: KLD $(field "$r" kld_mean)"
else
  bad "gptq from GGUF F16: $(cat "$T/err")"
fi

# errors
"$LOWBIT" quantize models/tiny -o "$T/x.gguf" --type q4_k_m --method gptq -q 2>"$T/err" && bad "gptq without --calib accepted" ||
  { grep -q "needs calibration text" "$T/err" && [ ! -e "$T/x.gguf" ] && ok || bad "missing calib: $(cat "$T/err")"; }
"$LOWBIT" quantize models/tiny -o "$T/x.gguf" --type q4_k_m --method gptq --calib "$T/none.txt" -q 2>"$T/err" && bad "missing calib file accepted" ||
  { grep -q "cannot open" "$T/err" && [ ! -e "$T/x.gguf" ] && ok || bad "missing calib file: $(cat "$T/err")"; }
"$LOWBIT" quantize models/tiny -o "$T/x.gguf" --type q4_k_m --method sparsegpt --calib "$CALIB" -q 2>"$T/err" && bad "unknown method accepted" ||
  { grep -q -- "--method expects" "$T/err" && ok || bad "unknown method: $(cat "$T/err")"; }

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
