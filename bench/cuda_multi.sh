#!/usr/bin/env bash
# cuda_multi.sh - issue #16's runs on a machine of several GPUs (device kinds nvidia-h100-x2 ... nvidia-h200-x8), in one
# device call, from the repository root with a bench/cuda_pack.sh tarball (carry bench/out/bin):
#   bench/cuda_multi.sh BIN_TAR_XZ OUT_DIR [SECONDS [LAYERS]]     (default 570 s, 2 layers)
# 1. the GPUs and their links (nvidia-smi topo -m); NCCL from the pip package nvidia-nccl-cu12 where no libnccl.so.2 is
#    on the library path (LB_NCCL_LIB); test_cuda_multi on every GPU (the collectives, calibration over the set, the
#    pipeline against one GPU bit for bit).
# 2. the Llama-3-70B shape (hidden 8192, ffn 28672, 64/8 heads), LAYERS layers: gptq q4_k_m at 65,536 calibration
#    tokens on cuda:0, on cuda:0,1, and on cuda:all where there are more than two GPUs, each with --json (the time split)
#    and LB_CALIB_PROFILE=1; the ratio of the per-layer times is the issue's 1.8x (2 GPUs) / 6x (8 GPUs).
# 3. eval of a checkpoint larger than one GPU's free memory: the same 70B-shape checkpoint at q8_0 (embedding and head
#    included, about 2.2 GB + 0.95 GB a layer), first on cuda:0 alone, then with torch holding all but BALLAST_KEEP_GB
#    (default 3) of every GPU's free memory: cuda:0 alone must fail with the out-of-memory error, cuda:0,1 must score
#    it; tokens/s of both runs (the windows of tests/golden/data/valid.txt at ctx 512).
# 4. if time is left: one layer of the Llama-3.1-405B shape (hidden 16384, ffn 53248, 128/8 heads), gptq q4_k_m on
#    cuda:all: the per-layer time, extrapolated to 126 layers in BENCHMARKS.md.
# Writes run.log (the lines to read) and multi.txt (every tool's output) to OUT_DIR. Written before any multi-GPU
# machine was lent: checked with bash -n only.
set -uo pipefail
TAR=${1:?usage: bench/cuda_multi.sh BIN_TAR_XZ OUT_DIR [SECONDS [LAYERS]]}
OUT=${2:?usage}
DEADLINE=$(($(date +%s) + ${3:-570}))
LAYERS=${4:-2}
[ -x build/lowbit ] || { mkdir -p build && tar xJf "$TAR" -C build; } || exit 1
. "$(dirname "$0")/cuda_run_common.sh"
T=$OUT/multi.txt
G=$(nvidia-smi -L | wc -l)
log "$G GPUs"
nvidia-smi topo -m >>"$OUT/run.log" 2>&1
if ! ldconfig -p | grep -q libnccl.so.2; then
  n=$(python3 -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib", "libnccl.so.2"))' 2>/dev/null)
  [ -n "$n" ] && [ -f "$n" ] && export LB_NCCL_LIB=$n
fi
log "NCCL: ${LB_NCCL_LIB:-from the library path}"

log "1. test_cuda_multi on $G GPUs"
LOWBIT=build/lowbit timeout "$(cap 150)" build/tests/test_cuda_multi >>"$T" 2>&1
echo "test_cuda_multi rc=$? $(grep -E 'passed|failed' "$T" | tail -1)" | tee -a "$OUT/run.log"

H=/tmp/lb-multi-70b
mkdir -p "$H"
[ -f "$H/hf/config.json" ] || timeout "$(cap 120)" build/synth_checkpoint "$H/hf" models/tiny/tokenizer.json "$LAYERS" --shape llama3-70b --shards 4 >>"$T" 2>&1
sets=("cuda:0" "cuda:0,1")
[ "$G" -gt 2 ] && sets+=("cuda:all")
log "2. 70B shape, $LAYERS layers, gptq q4_k_m on ${sets[*]}"
for d in "${sets[@]}"; do
  [ "$(left)" -gt 150 ] || break
  echo "== 70b gptq $d" >>"$T"
  LB_CALIB_PROFILE=1 /usr/bin/time -f "70b gptq $d: %e s wall, %M KB peak RSS" timeout "$(cap 400)" build/lowbit quantize "$H/hf" \
    -o "$H/gptq.gguf" --type q4_k_m --method gptq --calib build/calib.txt --calib-tokens 65536 --device "$d" -t "$(nproc)" --json >>"$T" 2>&1
  echo "70b gptq $d rc=$?" | tee -a "$OUT/run.log"
  rm -f "$H/gptq.gguf"
done

if [ "$(left)" -gt 120 ]; then
  log "3. eval larger than one GPU's free memory"
  [ -f "$H/q8_0.gguf" ] || timeout "$(cap 120)" build/lowbit quantize "$H/hf" -o "$H/q8_0.gguf" --type q8_0 -t "$(nproc)" >>"$T" 2>&1
  ev() { timeout "$(cap 90)" build/lowbit eval "$H/q8_0.gguf" --text tests/golden/data/valid.txt --ctx 512 --chunks 8 --device "$1" --json; }
  echo "== eval cuda:0, all memory" >>"$T"
  ev cuda:0 >>"$T" 2>&1
  echo "eval cuda:0 (all memory) rc=$?" | tee -a "$OUT/run.log"
  python3 - "${BALLAST_KEEP_GB:-3}" "$OUT/ballast.ready" >>"$T" 2>&1 <<'EOF' &
import sys, time, torch
keep = float(sys.argv[1]) * 2**30
held = []
for i in range(torch.cuda.device_count()):
    free, total = torch.cuda.mem_get_info(i)
    held.append(torch.empty(max(0, int(free - keep)), dtype=torch.uint8, device=f"cuda:{i}"))
    print(f"ballast: GPU {i} holds {held[-1].numel() / 2**30:.1f} GiB, {keep / 2**30:.1f} GiB left free", flush=True)
open(sys.argv[2], "w").close()
time.sleep(600)
EOF
  bp=$!
  for _ in $(seq 60); do [ -f "$OUT/ballast.ready" ] && break; sleep 1; done
  echo "== eval cuda:0, ballast" >>"$T"
  ev cuda:0 >>"$T" 2>&1
  echo "eval cuda:0 (ballast) rc=$? (an out-of-memory error expected)" | tee -a "$OUT/run.log"
  echo "== eval cuda:0,1, ballast" >>"$T"
  ev cuda:0,1 >>"$T" 2>&1
  echo "eval cuda:0,1 (ballast) rc=$?" | tee -a "$OUT/run.log"
  kill "$bp" 2>/dev/null
  wait "$bp" 2>/dev/null
  rm -f "$OUT/ballast.ready"
fi

if [ "$(left)" -gt 200 ]; then
  log "4. 405B shape, one layer, gptq q4_k_m on cuda:all"
  rm -rf "$H" # the disk holds the one shape at a time
  F=/tmp/lb-multi-405b
  mkdir -p "$F"
  timeout "$(cap 150)" build/synth_checkpoint "$F/hf" models/tiny/tokenizer.json 1 --shape llama3-405b --shards 4 >>"$T" 2>&1
  LB_CALIB_PROFILE=1 /usr/bin/time -f "405b gptq cuda:all: %e s wall, %M KB peak RSS" timeout "$(cap 400)" build/lowbit quantize "$F/hf" \
    -o "$F/gptq.gguf" --type q4_k_m --method gptq --calib build/calib.txt --calib-tokens 65536 --device cuda:all -t "$(nproc)" --json >>"$T" 2>&1
  echo "405b gptq cuda:all rc=$?" | tee -a "$OUT/run.log"
  rm -rf "$F"
fi
log done
grep -E "s wall|^quantize \[|ballast:|error" "$T" | cut -c1-200 >>"$OUT/run.log"
grep -oE '^== eval.*|"ppl": [0-9.e+-]+|"tokens_per_second": [0-9.]+' "$T" >>"$OUT/run.log"
grep -o '"seconds".*"gptq_seconds": {[^}]*}' "$T" | cut -c1-900 >>"$OUT/run.log"
cat "$OUT/run.log"
