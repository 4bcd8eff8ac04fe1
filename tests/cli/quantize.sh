#!/usr/bin/env bash
# `lowbit quantize` end to end on the bundled tiny model: the summary (text and --json), the overrides
# (--pure, --tensor-type, --output-tensor-type, --token-embedding-type) seen in the written file, the
# written file evaluated, and bad inputs: each a one-line error, a non-zero exit, and no file left behind
# (neither the output nor a temporary).
set -u
LOWBIT=${LOWBIT:-build/lowbit}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
type_of() { grep -o "{\"name\": \"$2\", \"type\": \"[a-z0-9_]*\"" <<<"$1" | grep -o '"type": "[a-z0-9_]*"' | cut -d'"' -f4; }

# a plain run: the summary names the types and the file evaluates sensibly
out=$("$LOWBIT" quantize models/tiny -o "$T/q4km.gguf" --type q4_k_m -q) || bad "quantize q4_k_m"
grep -q "^q4_k " <<<"$out" && grep -q "^q6_k " <<<"$out" && grep -q "bits per weight" <<<"$out" && ok || bad "summary: $out"
ev=$("$LOWBIT" eval "$T/q4km.gguf" --text tests/golden/data/valid.txt --chunks 4 --base models/tiny --json -q) || bad "eval q4_k_m"
kld=$(grep -o '"kld_mean": [0-9.e+-]*' <<<"$ev" | awk '{print $2}')
awk -v k="$kld" 'BEGIN { exit !(k > 0 && k < 0.05) }' && ok || bad "q4_k_m KLD $kld out of the sane range"

# --json summary and the mixture seen in the file
js=$("$LOWBIT" quantize models/tiny -o "$T/q4km2.gguf" --type q4_k_m --json -q) || bad "quantize --json"
[ "$(type_of "$js" token_embd.weight)" = q6_k ] && [ "$(type_of "$js" blk.3.attn_v.weight)" = q6_k ] &&
  [ "$(type_of "$js" blk.1.attn_v.weight)" = q4_k ] && [ "$(type_of "$js" blk.0.attn_norm.weight)" = f32 ] && ok || bad "q4_k_m mixture: $js"
grep -q '"file_bytes": [1-9]' <<<"$js" && grep -q '"peak_rss_bytes": [1-9]' <<<"$js" && ok || bad "json fields"

# overrides
js=$("$LOWBIT" quantize models/tiny -o "$T/pure.gguf" --type q4_k_m --pure --json -q) || bad "--pure"
[ "$(type_of "$js" token_embd.weight)" = q4_k ] && [ "$(type_of "$js" blk.3.attn_v.weight)" = q4_k ] && ok || bad "--pure types"
js=$("$LOWBIT" quantize models/tiny -o "$T/ovr.gguf" --type q4_0 --tensor-type 'ffn_(up|gate)=q8_0' \
  --tensor-type 'blk\.0\..*=q5_1' --output-tensor-type q8_0 --json -q) || bad "overrides"
[ "$(type_of "$js" blk.2.ffn_up.weight)" = q8_0 ] && [ "$(type_of "$js" blk.0.ffn_gate.weight)" = q8_0 ] &&
  [ "$(type_of "$js" blk.0.attn_q.weight)" = q5_1 ] && [ "$(type_of "$js" token_embd.weight)" = q8_0 ] &&
  [ "$(type_of "$js" blk.2.attn_q.weight)" = q4_0 ] && ok || bad "override types: $js"
js=$("$LOWBIT" quantize models/tiny -o "$T/emb.gguf" --type q4_0 --token-embedding-type q5_0 --json -q) || bad "--token-embedding-type"
[ "$(type_of "$js" token_embd.weight)" = q5_0 ] && ok || bad "token embedding type"
# rows that do not fit the block size fall back (conformance llama: hidden 128 < 256)
mkdir -p "$T/mistral"
cp tests/golden/conformance/arch/mistral/config.json tests/golden/conformance/tokenizers/gpt2_512/tokenizer.json "$T/mistral/"
ln -s "$PWD/tests/golden/conformance/arch/mistral/model.safetensors" "$T/mistral/"
js=$("$LOWBIT" quantize "$T/mistral" -o "$T/fb.gguf" --type q4_k_s --json -q 2>&1)
[ "$(type_of "$js" blk.0.attn_q.weight)" = q5_0 ] && grep -q '"fallback": true' <<<"$js" && ok || bad "shape fallback: $js"

# requantization
expect_fail() {
  local name=$1 pattern=$2 file=$3
  shift 3
  timeout 120 "$@" >"$T/out" 2>"$T/err"
  local rc=$?
  if [ $rc -ne 0 ] && [ $rc -lt 124 ] && grep -q "^lowbit: " "$T/err" && grep -Eq -- "$pattern" "$T/err" &&
    [ "$(grep -c . "$T/err")" -le 2 ] && [ ! -e "$file" ] && [ -z "$(ls -A "$(dirname "$file")" 2>/dev/null | grep tmp)" ]; then
    ok
  else
    bad "$name: rc=$rc, expected /$pattern/, output file present: $([ -e "$file" ] && echo yes || echo no), stderr: $(cat "$T/err")"
  fi
}
mkdir -p "$T/o"
expect_fail "requantize refused" "already quantized.*--allow-requantize" "$T/o/x.gguf" "$LOWBIT" quantize "$T/q4km.gguf" -o "$T/o/x.gguf" --type q8_0
"$LOWBIT" quantize "$T/q4km.gguf" -o "$T/o/rq.gguf" --type q8_0 --allow-requantize -q >/dev/null 2>"$T/err" && grep -q warning "$T/err" && ok || bad "requantize allowed with a warning"
rm -f "$T/o/rq.gguf"
expect_fail "unknown type" 'unknown type "q4_k_x"' "$T/o/x.gguf" "$LOWBIT" quantize models/tiny -o "$T/o/x.gguf" --type q4_k_x
expect_fail "unknown tensor type" 'unknown tensor type "q9"' "$T/o/x.gguf" "$LOWBIT" quantize models/tiny -o "$T/o/x.gguf" --type q4_0 --tensor-type 'ffn=q9'
expect_fail "bad regex" 'invalid tensor pattern' "$T/o/x.gguf" "$LOWBIT" quantize models/tiny -o "$T/o/x.gguf" --type q4_0 --tensor-type '(ffn=q8_0'
head -c 3000000 "${LB_SHARED:-../shared}/golden/gguf/tiny-f16.gguf" >"$T/trunc.gguf"
expect_fail "truncated GGUF input" "trunc.gguf" "$T/o/x.gguf" "$LOWBIT" quantize "$T/trunc.gguf" -o "$T/o/x.gguf" --type q8_0
printf 'GGUF\x01\x00\x00\x00' >"$T/v1.gguf"
expect_fail "GGUF version 1" "version" "$T/o/x.gguf" "$LOWBIT" quantize "$T/v1.gguf" -o "$T/o/x.gguf" --type q8_0
expect_fail "unwritable output" "/nonexistent-dir/x.gguf" "$T/o/x.gguf" "$LOWBIT" quantize models/tiny -o /nonexistent-dir/x.gguf --type q8_0
# disk full: a 1 MiB file-size limit makes the writes fail with EFBIG part-way through
expect_fail "disk full" "(File too large|No space)" "$T/o/full.gguf" bash -c "trap '' XFSZ; ulimit -f 1024; exec \"$LOWBIT\" quantize models/tiny -o \"$T/o/full.gguf\" --type q8_0 -q"
head -c 5000 "${LB_SHARED:-../shared}/golden/gguf/tiny.imatrix" >"$T/trunc.imatrix"
expect_fail "truncated imatrix" "trunc.imatrix.*(truncated|bad)" "$T/o/x.gguf" "$LOWBIT" quantize models/tiny -o "$T/o/x.gguf" --type q4_k_m --imatrix "$T/trunc.imatrix"
expect_fail "imatrix of another model" "has 512 values" "$T/o/x.gguf" "$LOWBIT" quantize models/tiny -o "$T/o/x.gguf" --type q4_k_m --imatrix "${LB_SHARED:-../shared}/golden/gguf/small.imatrix"
[ -z "$(ls -A "$T/o")" ] && ok || bad "files left behind in the output directory: $(ls -A "$T/o")"

# the same output for 1 and 2 threads
"$LOWBIT" quantize models/tiny -o "$T/t1.gguf" --type q3_k_m -t 1 -q >/dev/null && "$LOWBIT" quantize models/tiny -o "$T/t2.gguf" --type q3_k_m -t 2 -q >/dev/null &&
  cmp -s "$T/t1.gguf" "$T/t2.gguf" && ok || bad "1 and 2 threads differ"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
