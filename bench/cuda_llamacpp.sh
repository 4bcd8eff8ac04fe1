#!/usr/bin/env bash
# cuda_llamacpp.sh - llama.cpp's CUDA llama-bench beside lowbit's cuda_bench on the same Llama-3-8B-shape GGUF files,
# alternating in one device call, so that the decode and prompt ratios come from one GPU. From the repository root:
#   bench/cuda_llamacpp.sh BIN_TAR_XZ OUT_DIR [SECONDS]     (default 560; carry bench/out/bin and bench/out/llsrc)
# llama.cpp: bench/out/llsrc/llama-bench.xz.aa, .ab, ... where an earlier call returned them or the development machine
# built them (a static build for sm_90, in 15 MB parts; used where ldd finds its CUDA libraries), else built here (about 210 s on an H100 machine's 16 cores) from
# bench/out/llsrc/llama.tar.xz (the llama.cpp tree of the llama-cpp-python sdist that tests/python/requirements.txt
# names, less its models, docs, tests and other backends: make it with LLSRC=1 bench/cuda_llamacpp.sh on the machine
# with PyPI) with -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_NATIVE=ON, as BASELINE.md's GPU section; the built
# binary is written to OUT_DIR/llama-bench.xz.aa, .ab, ... for the next call (not with SAVE=0). Per type of TYPES (default "q4_k_m q4_0 q8_0"; files
# made by lowbit quantize, file_8b in cuda_run_common.sh), twice round: cuda_bench --pp 512 --tg 128 --reps 3, then
# llama-bench -ngl 99 -p 512 -n 128 -r 3 -fa 1 (FA, default 1). Writes run.log, build.log to OUT_DIR.
set -uo pipefail
if [ "${LLSRC:-}" = 1 ]; then # the source tarball, on a machine that reaches PyPI
  set -e
  ver=$(sed -n 's/^llama-cpp-python==//p' tests/python/requirements.txt)
  d=$(mktemp -d)
  python3 -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$ver" -d "$d"
  tar xzf "$d"/llama_cpp_python-"$ver".tar.gz -C "$d"
  mkdir -p bench/out/llsrc
  ex=()
  for p in models docs tests examples pocs benches media gguf-py conversion tools/ui tools/server ggml/src/ggml-sycl \
    ggml/src/ggml-vulkan ggml/src/ggml-opencl ggml/src/ggml-hexagon ggml/src/ggml-metal ggml/src/ggml-et; do
    ex+=(--exclude="llama.cpp/$p")
  done
  tar cf - -C "$d/llama_cpp_python-$ver/vendor" "${ex[@]}" llama.cpp | xz -T2 -6 >bench/out/llsrc/llama.tar.xz
  rm -rf "$d"
  ls -la bench/out/llsrc/llama.tar.xz
  exit 0
fi
TAR=${1:?usage: bench/cuda_llamacpp.sh BIN_TAR_XZ OUT_DIR [SECONDS]}
OUT=${2:?usage}
DEADLINE=$(($(date +%s) + ${3:-560}))
[ -x build/cuda_bench ] || { mkdir -p build && tar xJf "$TAR" -C build; } || exit 1
. "$(dirname "$0")/cuda_run_common.sh"
LB=/tmp/llcpp/llama-bench
if [ ! -x $LB ]; then
  mkdir -p /tmp/llcpp
  if [ -f bench/out/llsrc/llama-bench.xz.aa ]; then # built elsewhere: used where its libraries resolve here
    cat bench/out/llsrc/llama-bench.xz.?? | xz -dc >$LB && chmod +x $LB
    ldd $LB | grep -q "not found" && { ldd $LB | grep "not found" >>"$OUT/run.log"; rm -f $LB; }
  fi
  if [ ! -x $LB ]; then
    log "building llama-bench"
    tar xJf bench/out/llsrc/llama.tar.xz -C /tmp/llcpp || exit 1
    { cmake -S /tmp/llcpp/llama.cpp -B /tmp/llcpp/b -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
      -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF \
      -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_HTML=OFF &&
      timeout "$(cap 400)" cmake --build /tmp/llcpp/b -j "$(nproc)" --target llama-bench; } >"$OUT/build.log" 2>&1
    cp /tmp/llcpp/b/bin/llama-bench $LB 2>/dev/null || { log "llama-bench build failed"; tail -20 "$OUT/build.log"; exit 1; }
    [ "${SAVE:-1}" = 1 ] && xz -T0 -9 -c $LB | split -b 15M - "$OUT/llama-bench.xz." # parts under the 16 MiB a returned file may have
  fi
  log "llama-bench ready"
fi
for t in ${TYPES:-q4_k_m q4_0 q8_0}; do
  [ "$(left)" -gt 60 ] || break
  file_8b "$t"
  for round in 1 2; do
    echo "$t lowbit: $(timeout "$(cap 60)" build/cuda_bench "$W/$t.gguf" --device cuda --pp 512 --tg 128 --reps 3 2>&1 |
      grep -E "pp512|tg128|error" | tr -s ' ' | tr '\n' ' ')" | tee -a "$OUT/run.log"
    echo "$t llama.cpp: $(timeout "$(cap 90)" $LB -m "$W/$t.gguf" -ngl 99 -p 512 -n 128 -r 3 -fa "${FA:-1}" 2>&1 |
      grep -E "pp512|tg128|rror" | tr -s ' ' | tr '\n' ' ')" | tee -a "$OUT/run.log"
  done
done
log done
