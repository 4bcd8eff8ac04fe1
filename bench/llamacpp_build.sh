#!/usr/bin/env bash
# Builds llama.cpp's command-line tools (llama-quantize, llama-imatrix, llama-perplexity, llama-bench,
# llama-tokenize) from the llama.cpp source that the llama-cpp-python source distribution on PyPI carries,
# so that benchmarks can run llama.cpp beside lowbit on the same files. Never part of lowbit's build.
# usage: bench/llamacpp_build.sh            prints the bin directory on its last line
#   env: LLAMACPP_DIR (default ~/.cache/lowbit/llama.cpp), LLAMACPP_PY_VERSION (default: the version in
#        tests/python/requirements.txt), JOBS (default nproc), LLAMACPP_CMAKE_ARGS (extra, e.g. -DGGML_CUDA=ON),
#        LLAMACPP_ISA=avx2 (AVX2/FMA/F16C only, in build-avx2/: the peer of lowbit's LB_KERNELS=avx2)
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${LLAMACPP_DIR:-$HOME/.cache/lowbit/llama.cpp}
VER=${LLAMACPP_PY_VERSION:-$(sed -n 's/^llama-cpp-python==//p' tests/python/requirements.txt)}
JOBS=${JOBS:-$(nproc)}
BUILD=$DIR/build
[ "${LLAMACPP_ISA:-}" = avx2 ] && BUILD=$DIR/build-avx2
TOOLS="llama-quantize llama-imatrix llama-perplexity llama-bench llama-tokenize"
mkdir -p "$DIR"
if [ ! -d "$DIR/src/vendor/llama.cpp" ]; then
  sdist=$(ls "$DIR"/llama_cpp_python-"$VER".tar.gz 2>/dev/null || true)
  if [ -z "$sdist" ]; then
    python3 -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VER" -d "$DIR"
    sdist=$(ls "$DIR"/llama_cpp_python-"$VER".tar.gz)
  fi
  rm -rf "$DIR/src.tmp" && mkdir -p "$DIR/src.tmp"
  tar -xzf "$sdist" -C "$DIR/src.tmp" --strip-components=1
  mv "$DIR/src.tmp" "$DIR/src"
fi
missing=0
for t in $TOOLS; do [ -x "$BUILD/bin/$t" ] || missing=1; done
if [ "$missing" = 1 ]; then
  # not -march=native: ggml then uses AMX wherever the CPU reports it, and where the kernel does not enable
  # AMX (some VMs) it faults; every other instruction set the CPU has is turned on by name instead
  flags=$(grep -m1 '^flags' /proc/cpuinfo || true)
  isa="-DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
  has() { grep -qw "$1" <<<"$flags"; }
  if [ "${LLAMACPP_ISA:-}" = avx2 ]; then flags=""; fi
  if has avx512f && has avx512bw && has avx512vl && has avx512dq; then isa+=" -DGGML_AVX512=ON"; fi
  has avx512_vnni && isa+=" -DGGML_AVX512_VNNI=ON"
  has avx512_bf16 && isa+=" -DGGML_AVX512_BF16=ON"
  has avx512vbmi && isa+=" -DGGML_AVX512_VBMI=ON"
  has avx_vnni && isa+=" -DGGML_AVX_VNNI=ON"
  echo "llama.cpp ISA flags: $isa" >&2
  # shellcheck disable=SC2086
  cmake -S "$DIR/src/vendor/llama.cpp" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF $isa \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF ${LLAMACPP_CMAKE_ARGS:-} >"$BUILD.cmake.log"
  cmake --build "$BUILD" -j "$JOBS" --target $TOOLS >"$BUILD.build.log"
fi
git -C "$DIR/src/vendor/llama.cpp" rev-parse --short HEAD 2>/dev/null | sed 's/^/llama.cpp commit /' >&2 || true
grep -o '"version": *"[^"]*"\|^version = .*' "$DIR/src/pyproject.toml" 2>/dev/null | head -1 >&2 || true
echo "$BUILD/bin"
