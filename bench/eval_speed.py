#!/usr/bin/env python3
"""Prompt-processing speed of `lowbit eval` against llama.cpp (llama-cpp-python) on the same GGUF file and
the same windows, alternating the two engines so that machine noise hits both alike.

usage: bench/eval_speed.py MODEL.gguf [THREADS...]   (from the repository root; LOWBIT=build/lowbit)
Prints a markdown table: engine, threads, tokens/s (median of 3), lowbit / llama.cpp.
"""
import json
import os
import statistics
import subprocess
import sys
import time

from llama_cpp import Llama

LOWBIT = os.environ.get("LOWBIT", "build/lowbit")
TEXT = "tests/golden/data/valid.txt"
CTX, CHUNKS = 512, 10


def lowbit_tps(path, threads):
    out = subprocess.run([LOWBIT, "eval", path, "--text", TEXT, "--chunks", str(CHUNKS), "-t", str(threads), "--json", "-q"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)["tokens_per_second"]


def llama_tps(path, threads, toks):
    llm = Llama(model_path=path, n_ctx=CTX, n_batch=CTX, logits_all=True, verbose=False, n_threads=threads,
                n_threads_batch=threads)
    t0 = time.perf_counter()
    for w in range(CHUNKS):
        llm.reset()
        llm.eval(toks[w * CTX:(w + 1) * CTX])
    dt = time.perf_counter() - t0
    del llm
    return CHUNKS * CTX / dt


def main():
    path = sys.argv[1]
    threads = [int(t) for t in sys.argv[2:]] or [1, 2]
    probe = Llama(model_path=path, n_ctx=CTX, verbose=False, vocab_only=True)
    toks = probe.tokenize(open(TEXT, encoding="utf-8").read().encode(), add_bos=False, special=False)
    del probe
    print("| engine | threads | tokens/s (median of 3) | lowbit / llama.cpp |\n|---|--:|--:|--:|")
    for t in threads:
        a, b = [], []
        for _ in range(3):
            a.append(lowbit_tps(path, t))
            b.append(llama_tps(path, t, toks))
        ma, mb = statistics.median(a), statistics.median(b)
        print(f"| llama.cpp (llama-cpp-python) | {t} | {mb:.0f} | |")
        print(f"| lowbit eval | {t} | {ma:.0f} | {ma / mb:.2f} |", flush=True)


if __name__ == "__main__":
    main()
