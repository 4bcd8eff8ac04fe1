#!/usr/bin/env bash
# Build lowbit and run something, installing what this machine lacks first.
#   ./build.sh demo   build, then run the main job on the bundled tiny model
#   ./build.sh test   build, then run every test (ctest), then the fast tests under ASan+UBSan and under
#                     clang's UBSan, then each libFuzzer target for a few seconds
#   ./build.sh        build only
# The tests use Python packages as independent references (llama.cpp's gguf reader and llama-cpp-python);
# `test` installs them into a virtualenv at $LB_VENV (default ~/.cache/lowbit/venv), once. On a fresh
# machine that builds llama.cpp from source: about 15 minutes on 2 cores, reused afterwards.
set -euo pipefail
cd "$(dirname "$0")"

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
apt_install() {
  echo "build.sh: installing $*" >&2
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

need=()
for tool in cmake make gcc; do command -v "$tool" >/dev/null 2>&1 || need+=("$tool"); done
[ ${#need[@]} -eq 0 ] || apt_install cmake make gcc libc6-dev

python_refs() {
  export LB_VENV=${LB_VENV:-$HOME/.cache/lowbit/venv}
  # llama.cpp for the tests is built for any x86-64 CPU with AVX2, never with -march=native: on CPUs that
  # report AMX where the kernel does not enable it (some VMs), a native build faults in ldtilecfg
  local llama_args="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
  llama_args+=" -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
  local stamp
  stamp="$(cat tests/python/requirements.txt; echo "CMAKE_ARGS=$llama_args")"
  # up to date when the venv was made from this very requirements.txt and llama.cpp build
  if [ "$stamp" = "$(cat "$LB_VENV/.requirements.txt" 2>/dev/null)" ] &&
     "$LB_VENV/bin/python" -c "import llama_cpp, gguf, numpy" >/dev/null 2>&1; then return; fi
  local pkgs=()
  command -v python3 >/dev/null 2>&1 || pkgs+=(python3)
  python3 -c "import venv, ensurepip" >/dev/null 2>&1 || pkgs+=(python3-venv)
  command -v g++ >/dev/null 2>&1 || pkgs+=(g++)
  [ ${#pkgs[@]} -eq 0 ] || apt_install "${pkgs[@]}" python3-dev
  echo "build.sh: installing the test references (tests/python/requirements.txt) into $LB_VENV" >&2
  [ -x "$LB_VENV/bin/python" ] || python3 -m venv "$LB_VENV"
  mkdir -p "$HOME/.cache/lowbit/wheels"
  # llama-cpp-python builds llama.cpp from source (the multimodal library is not needed); a build made with
  # other flags is replaced, not reused from pip's wheel cache
  local reinstall=()
  grep -q "CMAKE_ARGS=$llama_args" "$LB_VENV/.requirements.txt" 2>/dev/null || reinstall=(--force-reinstall --no-cache-dir)
  CMAKE_ARGS="$llama_args" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    "$LB_VENV/bin/pip" install -q "${reinstall[@]}" --find-links "$HOME/.cache/lowbit/wheels" -r tests/python/requirements.txt
  "$LB_VENV/bin/python" -c "import llama_cpp, gguf, numpy"
  echo "$stamp" >"$LB_VENV/.requirements.txt"
}

# whether clang can build a libFuzzer program with ASan+UBSan (the runtimes are a separate package)
clang_sanitizers() {
  local exe
  exe=$(mktemp)
  printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }\n' |
    clang -x c - -fsanitize=fuzzer,address,undefined -o "$exe" >/dev/null 2>&1
  local rc=$?
  rm -f "$exe"
  return $rc
}

case "${1:-build}" in
  build) make build ;;
  demo) make demo ;;
  test)
    python_refs
    export LB_PYTHON="$LB_VENV/bin/python"
    clang_sanitizers || apt_install clang libclang-rt-dev # clang with its UBSan and libFuzzer runtimes
    make test && make asan && make ubsan && make fuzz
    ;;
  *) echo "usage: ./build.sh [build|demo|test]" >&2; exit 2 ;;
esac
