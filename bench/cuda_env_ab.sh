#!/usr/bin/env bash
# cuda_env_ab.sh - one build's speed on the Llama-3-8B-shape checkpoint (made in /tmp/lb8b) with its defaults and under
# other environments, alternating in one device call, so the ratios come from one machine: from the repository root,
#   ALTS="VAR=V VAR=V;VAR=V" bench/cuda_env_ab.sh BIN_TAR_XZ OUT_DIR [SECONDS]     (default 400)
# ALTS: alternatives separated by ';'. First each test of TESTS (default "forward") under each alternative (cuda_tests.sh
# with the alternative's variables set); then per type of TYPES (default "q4_k_m q4_0"): cuda_bench --pp 512 --tg 128
# --reps 3 (BENCH replaces those arguments: "--pp 64 --tg 128 --depth 128 --reps 3", say) with the defaults and each
# alternative, twice round; for the first type also the decode traced by
# bench/cupti_trace.cpp under each (trace_0.txt for the defaults, trace_1.txt ... in ALTS's order). Writes run.log and
# the traces to OUT_DIR. The files are removed after their type's runs unless KEEP=1; TRACE=0 skips the traces.
set -uo pipefail
TAR=${1:?usage: ALTS=... bench/cuda_env_ab.sh BIN_TAR_XZ OUT_DIR [SECONDS]}
OUT=${2:?usage}
DEADLINE=$(($(date +%s) + ${3:-400}))
[ -x build/cuda_bench ] || { mkdir -p build && tar xJf "$TAR" -C build; } || exit 1
. "$(dirname "$0")/cuda_run_common.sh"
IFS=';' read -r -a alts <<<"${ALTS:?set ALTS}"
envs=("" "${alts[@]}")
for i in "${!alts[@]}"; do
  log "tests with ${alts[$i]}"
  env ${alts[$i]} TESTS="${TESTS:-forward}" bash "$(dirname "$0")/cuda_tests.sh" "$TAR" "$OUT/t$i" $(($(left) / 4)) >/dev/null 2>&1
  sed "s/^/[${alts[$i]}] /" "$OUT/t$i/run.log" 2>/dev/null | grep -v "max |gpu" >>"$OUT/run.log"
  rm -rf "$OUT/t$i"
done
log "8B shape"
first=1
for t in ${TYPES:-q4_k_m q4_0}; do
  [ "$(left)" -gt 60 ] || break
  file_8b $t
  for round in 1 2; do
    for e in "${envs[@]}"; do
      echo "$t [${e:-defaults}]: $(env $e timeout "$(cap 60)" build/cuda_bench "$W/$t.gguf" --device cuda ${BENCH:---pp 512 --tg 128 --reps 3} 2>&1 |
        grep -E "^pp|^tg|error" | tr -s ' ' | tr '\n' ' ')" | tee -a "$OUT/run.log"
    done
  done
  if [ $first = 1 ] && [ "${TRACE:-1}" = 1 ] && [ -f build/libcupti_trace.so ]; then
    for i in "${!envs[@]}"; do
      echo "trace [${envs[$i]:-defaults}]: $(trace_decode build "$W/$t.gguf" "$OUT/trace_$i.txt" ${envs[$i]})" | tee -a "$OUT/run.log"
    done
  fi
  first=0
  [ "${KEEP:-0}" = 1 ] || rm -f "$W/$t.gguf"
done
log done
