#!/usr/bin/env bash
# lowbit bench against llama.cpp's llama-bench on the same GGUF files in the same run: for each file,
# REPS rounds alternating the two engines (lowbit first in odd rounds, llama.cpp first in even ones), each
# round one `-r 1` measurement of pp and tg per engine, so that load from other jobs falls on both alike;
# then a markdown table of means ± standard deviations over the rounds and the ratios.
# usage: bench/cpu_bench.sh FILE.gguf...        (run from the repository root)
# env: LOWBIT (build/lowbit), LLAMA_BENCH (~/.cache/lowbit/llama.cpp/build/bin/llama-bench), THREADS (2),
#      PP (512), TG (128), REPS (3), OUT (a results directory; default a temporary one, removed),
#      BASE (another lowbit binary, e.g. an older commit's: measured in the same rounds, with its own columns)
set -euo pipefail
LOWBIT=${LOWBIT:-build/lowbit}
LLAMA_BENCH=${LLAMA_BENCH:-$HOME/.cache/lowbit/llama.cpp/build/bin/llama-bench}
THREADS=${THREADS:-2}
PP=${PP:-512}
TG=${TG:-128}
REPS=${REPS:-3}
if [ -n "${OUT:-}" ]; then mkdir -p "$OUT"; else OUT=$(mktemp -d); trap 'rm -rf "$OUT"' EXIT; fi
[ -x "$LLAMA_BENCH" ] || { echo "llama-bench not found at $LLAMA_BENCH (bench/llamacpp_build.sh builds it)" >&2; exit 1; }

lb_run() { "$LOWBIT" bench "$1" -p "$PP" -n "$TG" -r 1 -t "$THREADS" --json >>"$OUT/$2.lowbit.jsonl"; }
bs_run() { [ -z "${BASE:-}" ] || "$BASE" bench "$1" -p "$PP" -n "$TG" -r 1 -t "$THREADS" --json >>"$OUT/$2.base.jsonl"; }
ll_run() { "$LLAMA_BENCH" -m "$1" -p "$PP" -n "$TG" -r 1 -t "$THREADS" -o jsonl 2>/dev/null >>"$OUT/$2.llama.jsonl"; }

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-); lowbit $(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown); $THREADS threads; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for f in "$@"; do
  n=$(basename "$f" .gguf)
  : >"$OUT/$n.lowbit.jsonl"
  : >"$OUT/$n.llama.jsonl"
  : >"$OUT/$n.base.jsonl"
  for r in $(seq 1 "$REPS"); do
    if [ $((r % 2)) -eq 1 ]; then lb_run "$f" "$n"; ll_run "$f" "$n"; bs_run "$f" "$n"
    else bs_run "$f" "$n"; ll_run "$f" "$n"; lb_run "$f" "$n"; fi
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$OUT" "$PP" "$TG" "$@" <<'PY'
import json, os, statistics, sys
out, pp, tg, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
def ms(v): return (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0)
def rows(path):
    return [json.loads(x.rstrip(",")) for x in open(path).read().split("\n") if x.strip().startswith("{")]
has_base = any(os.path.getsize(f"{out}/{os.path.basename(f)[:-5]}.base.jsonl") > 0 for f in files)
head = "| file | test | lowbit t/s | llama.cpp t/s | lowbit / llama.cpp | lowbit % of bw ceiling | llama.cpp % of bw ceiling |"
if has_base: head += " base t/s | lowbit / base |"
print(head)
print("|---|---|--:|--:|--:|--:|--:|" + ("--:|--:|" if has_base else ""))
for f in files:
    n = os.path.basename(f)[:-5]
    lb, bs = rows(f"{out}/{n}.lowbit.jsonl"), rows(f"{out}/{n}.base.jsonl")
    ll = [json.loads(l) for l in open(f"{out}/{n}.llama.jsonl") if l.strip().startswith("{")]
    for test, key in ((f"pp{pp}", "n_prompt"), (f"tg{tg}", "n_gen")):
        a = [r["tps_mean"] for r in lb if r["test"] == test]
        b = [r["avg_ts"] for r in ll if r.get(key, 0) > 0 and r.get("n_prompt" if key == "n_gen" else "n_gen", 0) == 0]
        if not a or not b: continue
        (am, asd), (bm, bsd) = ms(a), ms(b)
        pct = [r["bw_ceiling_pct"] for r in lb if r["test"] == test and r.get("bw_ceiling_pct") is not None]
        pa = f"{statistics.mean(pct):.1f} %" if pct else ""
        pb = f"{statistics.mean(pct) * bm / am:.1f} %" if pct and am > 0 else ""
        line = f"| {n} | {test} | {am:.2f} ± {asd:.2f} | {bm:.2f} ± {bsd:.2f} | {am / bm:.2f} | {pa} | {pb} |"
        c = [r["tps_mean"] for r in bs if r["test"] == test]
        if has_base:
            cm, csd = ms(c) if c else (0.0, 0.0)
            line += f" {cm:.2f} ± {csd:.2f} | {am / cm:.2f} |" if c else " | |"
        print(line)
PY
