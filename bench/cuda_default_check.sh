#!/usr/bin/env bash
# cuda_default_check.sh - one device call after a change of defaults, sized by its seconds S (default 540): the GPU
# tests (TESTS below, 45 % of S), tg128 on the 8B shape alternating the defaults with ALTS (bench/cuda_env_ab.sh, AB_S
# seconds, default 150, the files kept), the batch-8/16 kernel table against cuBLAS, tg128 at depth 128 (positions 128-255) alternating
# with DEPTH_ALTS, then Nsight Compute's full set on four launches of the decode's attention, RMSNorm and SwiGLU
# kernels in the graph, each step where the time left allows. From the repository root, with a bench/cuda_pack.sh
# tarball whose commit is in bench/out/bin/commit.txt (carry bench/out/bin):
#   S=540 ALTS="LB_CUDA_ATT_ONE=0;LB_CUDA_ATT_ONE=64" DEPTH_ALTS="LB_CUDA_ATT_ONE=0" OUT=... bash bench/cuda_default_check.sh
# Writes OUT/tests_run.log, OUT/kern816.txt, OUT/ncu_att.txt and OUT/logs.tgz (t: the tests' logs; ab, ab2: run.log,
# traces; a call returns at most 8 files), and prints the summary lines, the tests' last.
set -u
T0=$(date +%s)
S=${S:-540}
B=bench/out/bin/bin.tar.xz
R() { echo $((S - $(date +%s) + T0)); }
mkdir -p build "$OUT" && tar xJf $B -C build || exit 1
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
TESTS="${TESTS:-attention kernels forward forward_split forward_one32 calib multi gptq gptq_shadow forward_plain calib_plain kernels_deep}" \
  bash bench/cuda_tests.sh $B "$OUT/t" $((S * 45 / 100)) >/dev/null 2>&1
export KEEP=1 TYPES="${TYPES:-q4_0 q4_k_m}"
[ "$(R)" -gt 90 ] && ALTS="${ALTS:-LB_CUDA_ATT_ONE=0}" TESTS=none bash bench/cuda_env_ab.sh $B "$OUT/ab" "${AB_S:-150}" >/dev/null 2>&1
[ "$(R)" -gt 20 ] && timeout 30 build/cuda_kernels --types q4_k,q4_0 --batches 8,16 >"$OUT/kern816.txt" 2>&1
[ "$(R)" -gt 60 ] && ALTS="${DEPTH_ALTS:-LB_CUDA_ATT_ONE=0}" TESTS=none TRACE=0 BENCH="--pp 16 --tg 128 --depth 128 --reps 3" \
  bash bench/cuda_env_ab.sh $B "$OUT/ab2" $(($(R) - 30)) >/dev/null 2>&1
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
f=/tmp/lb8b/q4_k_m.gguf
[ -f $f ] || f=/tmp/lb8b/q4_0.gguf
[ "$(R)" -gt 25 ] && [ -n "$NCU" ] && [ -f $f ] &&
  timeout $(($(R) - 3)) "$NCU" --clock-control none -k regex:"k_att_one|k_att_split|k_rmsnorm_act|k_silu_act" -s 700 -c 4 \
    --set full build/cuda_bench $f --device cuda --pp 64 --tg 16 --reps 1 >"$OUT/ncu_att.txt" 2>&1
for l in ab ab2; do grep -v "^\[" "$OUT/$l/run.log" 2>/dev/null; done
cat "$OUT/kern816.txt" 2>/dev/null
grep -E "^  k_|Duration|Achieved Occupancy|Registers Per|Dynamic Shared Memory Per|Grid Size" "$OUT/ncu_att.txt" 2>/dev/null | head -40
grep -v "gpu - ref" "$OUT/t/run.log" 2>/dev/null # last: the tests' lines stay in the call's output tail
# a call returns at most 8 files: the logs and traces in one archive beside kern816.txt and ncu_att.txt
cp "$OUT/t/run.log" "$OUT/tests_run.log" 2>/dev/null
tar czf "$OUT/logs.tgz" -C "$OUT" t ab ab2 2>/dev/null && rm -rf "$OUT/t" "$OUT/ab" "$OUT/ab2"
echo "== done $(($(date +%s) - T0)) s"
