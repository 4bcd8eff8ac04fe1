#!/usr/bin/env bash
# The same command gives the same file on any x86-64 CPU: GPTQ (forward passes, Hessians, Cholesky and
# the column updates) writes the same bytes with the reference kernels (LB_FORCE_REF=1, what a CPU without
# AVX2 runs) as with this CPU's fastest kernels and with them capped at AVX2, and for 1 and 2 threads.
set -u
LOWBIT=${LOWBIT:-build/lowbit}
SHARED=${LB_SHARED:-../shared}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }

args=(quantize models/tiny --type q4_k_m -q --method gptq --passes 1 --calib "$SHARED/data/calib.txt" --calib-tokens 512)
LB_FORCE_REF=1 "$LOWBIT" "${args[@]}" -t 2 -o "$T/ref.gguf" >/dev/null 2>"$T/err" || bad "reference run: $(cat "$T/err")"
LB_FORCE_REF=0 "$LOWBIT" "${args[@]}" -t 2 -o "$T/simd.gguf" >/dev/null 2>"$T/err" || bad "default run: $(cat "$T/err")"
LB_FORCE_REF=0 "$LOWBIT" "${args[@]}" -t 1 -o "$T/simd1.gguf" >/dev/null 2>"$T/err" || bad "1-thread run: $(cat "$T/err")"
LB_KERNELS=avx2 "$LOWBIT" "${args[@]}" -t 2 -o "$T/avx2.gguf" >/dev/null 2>"$T/err" || bad "avx2 run: $(cat "$T/err")"
[ -s "$T/ref.gguf" ] && cmp -s "$T/ref.gguf" "$T/simd.gguf" && ok || bad "GPTQ output differs between LB_FORCE_REF=1 and the default kernels"
[ -s "$T/simd1.gguf" ] && cmp -s "$T/simd.gguf" "$T/simd1.gguf" && ok || bad "GPTQ output differs between 1 and 2 threads"
[ -s "$T/avx2.gguf" ] && cmp -s "$T/simd.gguf" "$T/avx2.gguf" && ok || bad "GPTQ output differs between LB_KERNELS=avx2 and the default kernels"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
