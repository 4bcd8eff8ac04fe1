#!/usr/bin/env python3
"""Prompt and generation speed of lowbit (`lowbit bench`) against llama.cpp through llama-cpp-python on the
same GGUF files, for when llama-bench is not at hand: rounds alternate the engines (lowbit first in odd
rounds), each round one prompt of PP tokens in one batch and TG tokens generated one at a time from an
empty context, after one warm-up of each. llama.cpp runs with n_batch = n_ubatch = PP, logits of the last
token only, F16 KV cache, no flash attention (llama-cpp-python's defaults otherwise).

usage: bench/llamacpp_speed.py FILE.gguf...  (from the repository root)
env: LOWBIT (build/lowbit), THREADS (2), PP (512), TG (128), REPS (3)
Prints a markdown table of means ± standard deviations and the ratio lowbit / llama.cpp.
"""
import json
import os
import statistics
import subprocess
import sys
import time

from llama_cpp import Llama

LOWBIT = os.environ.get("LOWBIT", "build/lowbit")
THREADS, PP, TG, REPS = (int(os.environ.get(k, d)) for k, d in (("THREADS", 2), ("PP", 512), ("TG", 128), ("REPS", 3)))


def lowbit_round(path):
    out = subprocess.run([LOWBIT, "bench", path, "-p", str(PP), "-n", str(TG), "-r", "1", "-t", str(THREADS), "--json"],
                         check=True, capture_output=True, text=True).stdout
    rows = json.loads(out)
    return {r["test"][:2]: r for r in rows}


def llama_round(llm, toks):
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(toks[:PP])
    pp = PP / (time.perf_counter() - t0)
    llm.reset()
    t0 = time.perf_counter()
    for i in range(TG):
        llm.eval(toks[i:i + 1])
    tg = TG / (time.perf_counter() - t0)
    return pp, tg


def ms(v):
    return statistics.mean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)


def main():
    print(f"load before: {open('/proc/loadavg').read().split()[:3]}", flush=True)
    print(f"| file | test | lowbit t/s | llama.cpp t/s | lowbit / llama.cpp | lowbit % of bw ceiling |\n|---|---|--:|--:|--:|--:|")
    for path in sys.argv[1:]:
        llm = Llama(model_path=path, n_ctx=max(PP, TG) + 8, n_batch=PP, n_ubatch=PP, verbose=False, n_threads=THREADS,
                    n_threads_batch=THREADS)
        toks = [(i * 2654435761) % 8000 + 1 for i in range(max(PP, TG))]
        llama_round(llm, toks)  # warm-up
        lb, ll = [], []
        for r in range(REPS):
            if r % 2 == 0:
                lb.append(lowbit_round(path))
                ll.append(llama_round(llm, toks))
            else:
                ll.append(llama_round(llm, toks))
                lb.append(lowbit_round(path))
        del llm
        name = os.path.basename(path)
        for k, test, idx in (("pp", f"pp{PP}", 0), ("tg", f"tg{TG}", 1)):
            (am, asd), (bm, bsd) = ms([x[k]["tps_mean"] for x in lb]), ms([x[idx] for x in ll])
            pct = [x[k]["bw_ceiling_pct"] for x in lb if x[k].get("bw_ceiling_pct") is not None]
            p = f"{statistics.mean(pct):.1f} %" if pct else ""
            print(f"| {name} | {test} | {am:.2f} ± {asd:.2f} | {bm:.2f} ± {bsd:.2f} | {am / bm:.2f} | {p} |", flush=True)
    print(f"load after: {open('/proc/loadavg').read().split()[:3]}", flush=True)


if __name__ == "__main__":
    main()
