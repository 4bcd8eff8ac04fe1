#!/usr/bin/env bash
# Bad input and output safety: every case must fail with one clear "lowbit: ..." line naming the problem
# (never a crash, a hang, a NaN result with exit 0, or a lost or half-written file), and the good cases
# next to them must still work. Malformed files are made by tests/cli/badfiles.py (standard library only).
set -u
LOWBIT=${LOWBIT:-build/lowbit}
PY=${PYTHON:-python3}
BAD="$PY tests/cli/badfiles.py"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0
fail=0

ok() { pass=$((pass + 1)); }
ko() {
  fail=$((fail + 1))
  echo "FAIL $*"
}

# expect_error NAME PATTERN CMD...: the command fails cleanly and its stderr matches PATTERN
expect_error() {
  local name=$1 pattern=$2
  shift 2
  timeout 60 "$@" >"$T/out" 2>"$T/err"
  local rc=$?
  if [ $rc -ne 0 ] && [ $rc -lt 124 ] && grep -q "^lowbit: " "$T/err" && grep -Eq -- "$pattern" "$T/err" &&
    [ "$(grep -c . "$T/err")" -le 2 ]; then
    ok
  else
    ko "$name: rc=$rc, expected /$pattern/, stderr:"
    sed 's/^/    /' "$T/err" | head -10
  fi
}

# expect_ok NAME CMD...: the command succeeds
expect_ok() {
  local name=$1
  shift
  if timeout 120 "$@" >"$T/out" 2>"$T/err"; then ok; else
    ko "$name: rc=$?, stderr:"
    sed 's/^/    /' "$T/err" | head -10
  fi
}

# same_file NAME A B: A still has the content of B (the input was not destroyed)
same_file() { if cmp -s "$2" "$3"; then ok; else ko "$1: $2 was changed"; fi; }

mkdir -p "$T/m"
cp models/tiny/config.json models/tiny/tokenizer.json models/tiny/model.safetensors "$T/m/"
head -c 40000 tests/golden/data/valid.txt >"$T/calib.txt"
cp "$T/calib.txt" "$T/calib.orig"
Q=(quantize -q --type q8_0)
expect_ok "f16 gguf" "$LOWBIT" quantize -q "$T/m" -o "$T/f16.gguf" --type f16
cp "$T/f16.gguf" "$T/f16.orig"

# ---- the output is an input ----
expect_error "gguf onto itself" "is the input .*f16.gguf" "$LOWBIT" "${Q[@]}" "$T/f16.gguf" -o "$T/f16.gguf"
same_file "gguf onto itself" "$T/f16.gguf" "$T/f16.orig"
expect_error "into the checkpoint" "inside the input directory" "$LOWBIT" "${Q[@]}" "$T/m" -o "$T/m/model.safetensors"
expect_error "onto config.json" "inside the input directory" "$LOWBIT" "${Q[@]}" "$T/m" -o "$T/m/config.json"
same_file "into the checkpoint" "$T/m/model.safetensors" models/tiny/model.safetensors
ln "$T/f16.gguf" "$T/hardlink.gguf"
expect_error "hard link to the input" "is the input" "$LOWBIT" "${Q[@]}" "$T/f16.gguf" -o "$T/hardlink.gguf"
expect_error "imatrix into the checkpoint" "inside the input directory" \
  "$LOWBIT" imatrix -q "$T/m" --calib "$T/calib.txt" -o "$T/m/model.safetensors" --ctx 128 --calib-tokens 256
expect_error "imatrix onto its text" "is the input .*calib.txt" \
  "$LOWBIT" imatrix -q "$T/m" --calib "$T/calib.txt" -o "$T/calib.txt" --ctx 128 --calib-tokens 256
same_file "imatrix onto its text" "$T/calib.txt" "$T/calib.orig"
expect_error "quantize onto its calibration text" "is the input .*calib.txt" \
  "$LOWBIT" "${Q[@]}" "$T/m" -o "$T/calib.txt" --method imatrix --calib "$T/calib.txt"

cp models/tiny/config.json models/tiny/model.safetensors "$T/m/" # later cases need it whole whatever happened above

# ---- outputs that are not regular files ----
mkfifo "$T/fifo"
expect_error "FIFO output" "is a FIFO; lowbit only replaces regular files" "$LOWBIT" "${Q[@]}" "$T/m" -o "$T/fifo"
[ -p "$T/fifo" ] && ok || ko "the FIFO was replaced"
# as root a private device node (a regression must not replace the system's /dev/null); else /dev/null itself
dev=/dev/null
[ "$(id -u)" -ne 0 ] || { mknod "$T/null" c 1 3 && dev="$T/null"; }
expect_error "device output" "is a device" "$LOWBIT" "${Q[@]}" "$T/m" -o "$dev"
[ -c "$dev" ] && ok || ko "the device $dev was replaced"
mkdir "$T/dir"
ln -s "$T/dir" "$T/dirlink"
expect_error "symlink output" "is a symbolic link" "$LOWBIT" "${Q[@]}" "$T/m" -o "$T/dirlink"
[ -L "$T/dirlink" ] && ok || ko "the symbolic link was replaced"
expect_error "directory output" "is a directory" "$LOWBIT" "${Q[@]}" "$T/m" -o "$T/dir"
expect_error "imatrix into a missing directory" "directory .*nodir does not exist" \
  "$LOWBIT" imatrix -q "$T/m" --calib "$T/calib.txt" -o "$T/nodir/im.dat" --ctx 128 --calib-tokens 256

# ---- a second writer of the same output fails at once; a temporary left by a killed run is reused ----
: >"$T/locked.gguf.lowbit-tmp"
$PY -c 'import fcntl, sys, time; f = open(sys.argv[1], "a"); fcntl.flock(f, fcntl.LOCK_EX); open(sys.argv[2], "w"); time.sleep(30)' \
  "$T/locked.gguf.lowbit-tmp" "$T/holding" &
holder=$!
for _ in $(seq 200); do [ -e "$T/holding" ] && break; sleep 0.01; done
expect_error "concurrent writer" "another process is writing" "$LOWBIT" "${Q[@]}" "$T/m" -o "$T/locked.gguf"
kill "$holder" 2>/dev/null
wait "$holder" 2>/dev/null
expect_ok "stale temporary reused" "$LOWBIT" "${Q[@]}" "$T/m" -o "$T/locked.gguf"
[ ! -e "$T/locked.gguf.lowbit-tmp" ] && [ -s "$T/locked.gguf" ] && ok || ko "stale temporary: $(ls "$T")"

# ---- signals remove the temporary file (started with default dispositions: a background job ignores SIGINT) ----
for sig in INT TERM HUP; do
  mkdir -p "$T/sig$sig"
  $PY -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])' \
    "$LOWBIT" quantize -q "$T/m" -o "$T/sig$sig/out.gguf" --type q4_k_m -t 1 >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 200); do [ -e "$T/sig$sig/out.gguf.lowbit-tmp" ] && break; sleep 0.01; done
  kill -s "$sig" "$pid"
  wait "$pid" 2>/dev/null
  rc=$?
  left=$(ls -A "$T/sig$sig")
  if [ $rc -ge 128 ] && [ -z "$left" ]; then ok; else ko "SIG$sig: rc=$rc, left: $left"; fi
done

# ---- importance matrices ----
$BAD imatrix-gguf "$T/im3d.gguf" 256,4,8 4 # counts for ne[1] only: read past them before
expect_error "3-D in_sum2" "in_sum2 has 3 dimensions" "$LOWBIT" "${Q[@]}" "$T/m" -o "$T/o.gguf" --imatrix "$T/im3d.gguf"
$BAD imatrix-gguf "$T/im4d.gguf" 256,2,2,2 2
expect_error "4-D in_sum2" "in_sum2 has 4 dimensions" "$LOWBIT" "${Q[@]}" "$T/m" -o "$T/o.gguf" --imatrix "$T/im4d.gguf"
$BAD imatrix-gguf "$T/imcounts.gguf" 256,4 9
expect_error "counts of the wrong size" "no matching f32 .counts" "$LOWBIT" "${Q[@]}" "$T/m" -o "$T/o.gguf" --imatrix "$T/imcounts.gguf"
: >"$T/empty.dat"
expect_error "empty imatrix" "importance matrix file is empty" "$LOWBIT" "${Q[@]}" "$T/m" -o "$T/o.gguf" --imatrix "$T/empty.dat"
$BAD imatrix-dat "$T/other.dat" "model.layers.0.q_proj:256"
expect_error "imatrix of another model" "covers none of the .* quantized matrices" \
  "$LOWBIT" "${Q[@]}" "$T/m" -o "$T/o.gguf" --imatrix "$T/other.dat"
[ ! -e "$T/o.gguf" ] && ok || ko "imatrix of another model: an output was written"
$BAD imatrix-dat "$T/part.dat" "blk.0.attn_q.weight:256" "blk.1.ffn_down.weight:768"
expect_ok "partial imatrix" "$LOWBIT" quantize "$T/m" -o "$T/o.gguf" --type q8_0 --imatrix "$T/part.dat"
grep -q "importance matrix .*part.dat: 2 of 29 quantized matrices covered" "$T/err" && ok || ko "partial imatrix: $(cat "$T/err")"

# ---- requantizing: the report follows the tensor types, not the option ----
expect_ok "allow-requantize on f16" "$LOWBIT" quantize -q "$T/f16.gguf" -o "$T/r.gguf" --type q8_0 --allow-requantize --json
if grep -q '"requantized": false' "$T/out" && ! grep -q "already quantized" "$T/err"; then ok; else ko "f16 reported as requantized"; fi
expect_ok "allow-requantize on q8_0" "$LOWBIT" quantize -q "$T/r.gguf" -o "$T/r2.gguf" --type q4_0 --allow-requantize --json
grep -q '"requantized": true' "$T/out" && ok || ko "q8_0 input not reported as requantized"

# ---- GGUF hyperparameters ----
for kv in "qwen2.rope.freq_base 0" "qwen2.rope.freq_base -1" "qwen2.rope.freq_base nan" \
  "qwen2.attention.layer_norm_rms_epsilon inf" "qwen2.attention.layer_norm_rms_epsilon nan"; do
  set -- $kv
  cp "$T/f16.orig" "$T/hp.gguf"
  $BAD gguf-f32 "$T/hp.gguf" "$1" "$2"
  expect_error "GGUF $1 = $2" "$1 (must be|is missing or not) a positive finite number" \
    "$LOWBIT" eval -q "$T/hp.gguf" --text "$T/calib.txt" --ctx 128 --chunks 1
done

# ---- NaN / Inf weights: refused naming the tensor and element, unless --allow-nonfinite ----
mkdir -p "$T/nan"
cp "$T/m/"* "$T/nan/"
$BAD poison "$T/nan/model.safetensors" model.embed_tokens.weight 488 nan # the first tensor quantized: fails fast
expect_error "quantize NaN weight" "tensor token_embd.weight: element \[1, 232\] is NaN" "$LOWBIT" "${Q[@]}" "$T/nan" -o "$T/o.gguf"
for t in q4_k_m q6_k q4_0 iq4_nl f16; do
  expect_error "quantize --type $t NaN weight" "element \[1, 232\] is NaN" "$LOWBIT" quantize -q --type "$t" "$T/nan" -o "$T/o.gguf"
done
expect_error "awq NaN weight" "embed_tokens.weight: element \[1, 232\] is NaN" \
  "$LOWBIT" quantize -q --type q4_k_m --method awq --calib "$T/calib.txt" --calib-tokens 256 "$T/nan" -o "$T/o.gguf"
expect_error "eval NaN weight" "model.embed_tokens.weight: element \[1, 232\] is NaN" \
  "$LOWBIT" eval -q "$T/nan" --text "$T/calib.txt" --ctx 128 --chunks 1
expect_error "imatrix NaN weight" "element \[1, 232\] is NaN" \
  "$LOWBIT" imatrix -q "$T/nan" --calib "$T/calib.txt" -o "$T/im.dat" --ctx 128 --calib-tokens 256
expect_ok "quantize --allow-nonfinite" "$LOWBIT" quantize -q --type f16 "$T/nan" -o "$T/nan.gguf" --allow-nonfinite
expect_error "eval of a NaN GGUF" "token_embd.weight: element \[1, 232\] is NaN" \
  "$LOWBIT" eval -q "$T/nan.gguf" --text "$T/calib.txt" --ctx 128 --chunks 1
expect_ok "eval --allow-nonfinite" "$LOWBIT" eval -q "$T/nan" --text "$T/calib.txt" --ctx 128 --chunks 1 --allow-nonfinite
grep -q "perplexity  nan" "$T/out" && ok || ko "eval --allow-nonfinite: $(cat "$T/out")"
cp "$T/m/"* "$T/nan/"
$BAD poison "$T/nan/model.safetensors" model.layers.0.post_attention_layernorm.weight 7 inf
expect_error "infinite norm weight" "post_attention_layernorm.weight: element 7 is infinite" "$LOWBIT" "${Q[@]}" "$T/nan" -o "$T/o.gguf"
expect_error "imatrix non-finite statistics" "importance matrix .* is (NaN|infinite)" \
  "$LOWBIT" imatrix -q "$T/nan" --calib "$T/calib.txt" -o "$T/im.dat" --ctx 128 --calib-tokens 256 --allow-nonfinite
[ ! -e "$T/im.dat" ] && ok || ko "a non-finite importance matrix was written"

# ---- tensors the architecture does not use; layer counts the file cannot hold ----
mkdir -p "$T/l2"
cp "$T/m/"* "$T/l2/"
sed -i 's/"num_hidden_layers": 4/"num_hidden_layers": 2/' "$T/l2/config.json"
expect_error "unused layers" "tensors the architecture does not use \(model.layers.2.*config.json does not describe" \
  "$LOWBIT" "${Q[@]}" "$T/l2" -o "$T/o.gguf"
sed -i 's/"num_hidden_layers": 2/"num_hidden_layers": 2147483647/' "$T/l2/config.json"
expect_error "huge layer count" "says 2147483647 layers, but the checkpoint has only [0-9]+ tensors" \
  "$LOWBIT" "${Q[@]}" "$T/l2" -o "$T/o.gguf"

$PY -c 'import sys; sys.path[:0] = ["tests/fuzz", "tests/cli"]; import make_corpus as m
m.gguf_model(path=sys.argv[1]); m.gguf_model([("blk.1.attn_q.weight", [8, 8])], path=sys.argv[2])' "$T/one.gguf" "$T/extra.gguf"
expect_ok "1-layer GGUF" "$LOWBIT" inspect "$T/one.gguf"
expect_error "unused GGUF tensor" "1 tensor the architecture does not use \(blk.1.attn_q.weight\): the GGUF metadata" \
  "$LOWBIT" quantize -q --type q8_0 "$T/extra.gguf" -o "$T/o.gguf"

# ---- inputs that would block; context lengths ----
mkfifo "$T/textfifo"
expect_error "--text FIFO" "textfifo: not a regular file" "$LOWBIT" eval -q "$T/m" --text "$T/textfifo" --ctx 128
expect_error "--calib FIFO" "textfifo: not a regular file" \
  "$LOWBIT" imatrix -q "$T/m" --calib "$T/textfifo" -o "$T/im.dat" --ctx 128
expect_error "--imatrix FIFO" "not a regular file" "$LOWBIT" "${Q[@]}" "$T/m" -o "$T/o.gguf" --imatrix "$T/textfifo"
expect_error "FIFO model" "textfifo" "$LOWBIT" inspect "$T/textfifo"
expect_error "eval --ctx beyond max_position_embeddings" "--ctx 4096 exceeds the max_position_embeddings \(2048\)" \
  "$LOWBIT" eval -q "$T/m" --text "$T/calib.txt" --ctx 4096
expect_error "imatrix --ctx beyond max_position_embeddings" "context of 4096 tokens exceeds .*max_position_embeddings 2048" \
  "$LOWBIT" imatrix -q "$T/m" --calib "$T/calib.txt" -o "$T/im.dat" --ctx 4096 --calib-tokens 8192

# ---- JSON output stays valid UTF-8 ----
bad=$(printf '%s/m\xff' "$T")
cp -r "$T/m" "$bad"
expect_ok "inspect --json, non-UTF-8 path" "$LOWBIT" inspect "$bad" --json
if $PY -c 'import json,sys; json.loads(sys.stdin.buffer.read().decode("utf-8"))' <"$T/out"; then ok; else ko "inspect --json is not UTF-8 JSON"; fi
$BAD gguf-name "$T/badname.gguf" 626c6b2eff
expect_error "GGUF tensor name not UTF-8" "not valid UTF-8" "$LOWBIT" inspect "$T/badname.gguf" --json

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
