#!/usr/bin/env bash
# cuda_seeds.sh - bench/calib_seeds.sh on the GPU machine: from the repository root, with bench/cuda_session.sh's binary
# tarball:
#   bench/cuda_seeds.sh BIN_TAR_XZ OUT_DIR [SECONDS]     (default 300)
# tiny by AWQ and AWQ+GPTQ at q4_k_m, q3_k_m, q2_k, iq4_xs with --seed 1..5 on the GPU, every file scored by the CPU's
# eval there (the files stay in /tmp); OUT_DIR/seeds-cuda.jsonl against bench/results/cpu-seeds/seeds-cpu.jsonl.
set -uo pipefail
TAR=${1:?usage: bench/cuda_seeds.sh BIN_TAR_XZ OUT_DIR [SECONDS]}
OUT=${2:?usage}
DEADLINE=$(($(date +%s) + ${3:-300}))
[ -x build/lowbit ] || { mkdir -p build && tar xJf "$TAR" -C build; } || exit 1
mkdir -p "$OUT"
. "$(dirname "$0")/cuda_run_common.sh"
log "seeds"
FILES=/tmp/lb-seed-files LOWBIT=build/lowbit CALIB=build/calib.txt timeout "$(cap 290)" bench/calib_seeds.sh cuda "$OUT" >/dev/null 2>&1
log "done: $(wc -l <"$OUT/seeds-cuda.jsonl") files"
