# cuda_run_common.sh - sourced by the device-call scripts (cuda_session.sh, cuda_session_big.sh, cuda_diag.sh,
# cuda_check.sh) once they have set OUT and DEADLINE: the CUDA libraries' path, the seconds left (left), a timeout
# cut by them (cap SECONDS), a timestamped line in OUT/run.log (log), Nsight Compute's path (NCU, empty without it), and
# the card and commit at its top, and file_8b (the synthetic checkpoint's files, below).
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}
W=${W:-/tmp/lb8b} # file_8b's directory
mkdir -p "$OUT"
left() { echo $((DEADLINE - $(date +%s))); }
cap() { local l; l=$(left); [ "$l" -gt "$1" ] && echo "$1" || echo $((l > 5 ? l - 5 : 1)); }
log() { echo "== $(date -u +%T) ($(left) s left) $*" | tee -a "$OUT/run.log"; }
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >>"$OUT/run.log" 2>&1
git log -1 --format='commit %h' >>"$OUT/run.log" 2>/dev/null

# file_8b TYPE: $W/TYPE.gguf made (unless there) from the Llama-3-8B-shape checkpoint $W/hf (made once; kept between
# calls on a warm machine; SHAPE_ARGS replaces "--shape llama3-8b", e.g. "1 --shape llama3.2-1b" to try a script here),
# f16 without --encoder ref; the tools' output to GEN_LOG (default OUT/gen.log).
file_8b() {
  local t=$1 enc=(--encoder ref) log=${GEN_LOG:-$OUT/gen.log}
  [ "$t" = f16 ] && enc=()
  mkdir -p "$W"
  [ -f "$W/hf/config.json" ] || timeout "$(cap 60)" build/synth_checkpoint "$W/hf" models/tiny/tokenizer.json ${SHAPE_ARGS:---shape llama3-8b} >>"$log" 2>&1
  [ -f "$W/$t.gguf" ] || timeout "$(cap 90)" build/lowbit quantize "$W/hf" -o "$W/$t.gguf" --type "$t" "${enc[@]}" -t 16 >>"$log" 2>&1
}

# trace_decode BIN_DIR GGUF OUT_FILE [VAR=V ...]: BIN_DIR/cuda_bench's decode (tg64 after a 16-token prompt) under
# bench/cupti_trace.cpp (build/libcupti_trace.so, where packed) with the variables given, the trace to OUT_FILE; prints
# its median-step line
trace_decode() {
  local b=$1 f=$2 o=$3
  shift 3
  [ -f build/libcupti_trace.so ] || return 0
  env "$@" LD_LIBRARY_PATH=$PWD/build:$LD_LIBRARY_PATH CUDA_INJECTION64_PATH=$PWD/build/libcupti_trace.so LB_TRACE_OUT=$o \
    timeout "$(cap 60)" "$b/cuda_bench" "$f" --device cuda --pp 16 --tg 64 --reps 1 >/dev/null 2>&1
  head -2 "$o" 2>/dev/null | tail -1
}
