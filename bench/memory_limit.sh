#!/usr/bin/env bash
# Quantizing a checkpoint larger than the memory the process may use: builds a synthetic bf16 checkpoint
# (bench/synth_checkpoint.c; SHAPE tinyllama: TinyLlama-1.1B's, about 2.2 GB, or mid: about 0.57 GB, in
# 3 shards) and quantizes it to q4_k_m inside a
# cgroup-v1 memory cgroup (memory and memory+swap limited): by round-to-nearest under LIMIT_MIB, by GPTQ on
# CALIB_TOKENS calibration tokens under GPTQ_LIMIT_MIB. Prints per run: wall time, lowbit's peak RSS, the
# cgroup's peak usage (page cache of the memory-mapped checkpoint and of the output included) and failcnt
# (how often usage hit the limit), and whether `lowbit inspect` loads the output. Needs root and the cgroup-v1 memory
# controller. A benchmark (docs/BENCHMARKS.md), not a test.
#
# usage: bench/memory_limit.sh [DIR] [LIMIT_MIB] [GPTQ_LIMIT_MIB]
#        DIR holds the checkpoint and the outputs (default /tmp); limits default to 1024 and LIMIT_MIB
# env:   LOWBIT, SYNTH (binaries; default build/), LB_SHARED (default ../shared), CALIB_TOKENS (default 2048),
#        THREADS (default 2), GPTQ_ARGS (default "--passes 1 --cd-sweeps 0": plain GPTQ; the refinement
#        lowbit adds by default costs many times the time, not memory beyond one float (cols, cols) matrix),
#        KEEP=1 keeps (and reuses) the checkpoint, SHAPE (default tinyllama)
set -euo pipefail
DIR=${1:-/tmp}
LIMIT_MIB=${2:-1024}
GPTQ_LIMIT_MIB=${3:-$LIMIT_MIB}
LOWBIT=${LOWBIT:-build/lowbit}
SYNTH=${SYNTH:-build/synth_checkpoint}
SHARED=${LB_SHARED:-../shared}
CALIB_TOKENS=${CALIB_TOKENS:-2048}
THREADS=${THREADS:-2}
GPTQ_ARGS=${GPTQ_ARGS:---passes 1 --cd-sweeps 0}
SHAPE=${SHAPE:-tinyllama}
CKPT=$DIR/lowbit-synth-$SHAPE
OUT=$DIR/lowbit-synth-q4_k_m.gguf
CG=/sys/fs/cgroup/memory/lowbit-bench-$$

[ -d /sys/fs/cgroup/memory ] || { echo "no cgroup-v1 memory controller" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "needs root (cgroup limits)" >&2; exit 1; }
avail=$(df -Pk "$DIR" | awk 'NR == 2 { print $4 }')
[ -d "$CKPT" ] || [ "$avail" -gt 3500000 ] || { echo "$DIR: less than 3.5 GB free" >&2; exit 1; }

cleanup() {
  [ -d "$CG" ] && rmdir "$CG" 2>/dev/null || true
  rm -f "$OUT" "$OUT".tmp.* "$DIR"/lowbit-synth-run.*
  [ "${KEEP:-0}" = 1 ] || rm -rf "$CKPT"
}
trap cleanup EXIT

[ -d "$CKPT" ] || "$SYNTH" "$CKPT" "$SHARED/models/small/tokenizer.json" --shape "$SHAPE" --shards 3
ckpt_bytes=$(cat "$CKPT"/*.safetensors | wc -c)
mkdir "$CG"
echo "checkpoint $CKPT: $ckpt_bytes bytes ($((ckpt_bytes >> 20)) MiB)"
echo "| run | limit MiB | wall s | lowbit peak RSS MiB | cgroup peak MiB | failcnt | output bytes | inspect |"
echo "|---|--:|--:|--:|--:|--:|--:|---|"

# limit MIB: memory and memory+swap of the cgroup (memsw is raised first when the limit goes up)
limit() {
  local b=$(($1 << 20))
  if [ -e "$CG/memory.memsw.limit_in_bytes" ]; then
    echo "$b" > "$CG/memory.memsw.limit_in_bytes" 2>/dev/null || true
    echo "$b" > "$CG/memory.limit_in_bytes"
    echo "$b" > "$CG/memory.memsw.limit_in_bytes"
  else
    echo "$b" > "$CG/memory.limit_in_bytes"
  fi
}

# run NAME LIMIT_MIB CMD...: CMD inside the cgroup, the checkpoint dropped from the page cache first (pages
# already cached would be charged to whoever read them first, not to the cgroup)
run() {
  local name=$1 mib=$2 rc=0
  shift 2
  limit "$mib"
  sync "$CKPT"/*.safetensors
  for f in "$CKPT"/*.safetensors; do dd if="$f" iflag=nocache count=0 status=none; done
  echo 0 > "$CG/memory.max_usage_in_bytes"
  echo 0 > "$CG/memory.failcnt"
  local t0 t1
  t0=$(date +%s.%N)
  sh -c 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"' _ "$CG" "$@" > "$DIR/lowbit-synth-run.json" 2> "$DIR/lowbit-synth-run.err" || rc=$?
  t1=$(date +%s.%N)
  local peak fail rss ok=no bytes=0
  peak=$(($(cat "$CG/memory.max_usage_in_bytes") >> 20))
  fail=$(cat "$CG/memory.failcnt")
  rss=$(grep -o '"peak_rss_bytes": [0-9]*' "$DIR/lowbit-synth-run.json" | awk '{ printf "%.1f", $2 / 1048576 }' || true)
  if [ "$rc" -eq 0 ] && sh -c 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"' _ "$CG" "$LOWBIT" inspect "$OUT" > /dev/null 2>&1; then
    ok=yes
    bytes=$(wc -c < "$OUT")
  fi
  if [ "$rc" -ne 0 ]; then
    echo "$name: exit status $rc$([ "$rc" -eq 137 ] && echo ' (killed: out of memory)'): $(tail -c 400 "$DIR/lowbit-synth-run.err")" >&2
    rss="-"
  fi
  printf '| %s | %d | %.1f | %s | %d | %s | %s | %s |\n' "$name" "$mib" "$(echo "$t1 - $t0" | bc)" "${rss:-?}" "$peak" "$fail" \
    "$bytes" "$ok"
  rm -f "$OUT" "$OUT".tmp.* # a killed run leaves its temporary file
}

run "rtn q4_k_m" "$LIMIT_MIB" "$LOWBIT" quantize "$CKPT" -o "$OUT" --type q4_k_m -t "$THREADS" --json -q
run "gptq q4_k_m, $CALIB_TOKENS calibration tokens" "$GPTQ_LIMIT_MIB" "$LOWBIT" quantize "$CKPT" -o "$OUT" --type q4_k_m --method gptq \
  --calib "$SHARED/data/calib.txt" --calib-tokens "$CALIB_TOKENS" $GPTQ_ARGS -t "$THREADS" --json -q
