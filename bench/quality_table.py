#!/usr/bin/env python3
"""Markdown table for docs/QUALITY.md from `lowbit eval --json` runs of several files against one base
(one JSON line per file and text) and the quantize summaries (`lowbit quantize --json`) beside the files.

usage: bench/quality_table.py NAME VALID.jsonl WIKI.jsonl
Columns: file, bits per weight (file bytes x 8 / parameters), perplexity, KL divergence and top-1 on both
texts, seconds and peak memory of the quantize run where its summary (FILE.json) exists.
"""
import json
import os
import subprocess
import sys

LOWBIT = os.environ.get("LOWBIT", "build/lowbit")


def load(path):
    out = {}
    for line in open(path):
        line = line.strip()
        if line.startswith("{"):
            r = json.loads(line)
            out[r["model"]] = r
    return out


def main():
    name, vpath, wpath = sys.argv[1:4]
    v, w = load(vpath), load(wpath)
    print("| model | file | bits/weight | file bytes | ppl valid | ppl wikitext2 | KLD valid | KLD wikitext2 "
          "| top-1 % valid | top-1 % wikitext2 | quantize s | peak MiB |")
    print("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for f, rv in v.items():
        rw = w.get(f, {})
        size = os.path.getsize(f)
        q = {}
        summary = f[:-5] + ".json" if f.endswith(".gguf") else None
        if summary and os.path.exists(summary):
            try:
                q = json.load(open(summary))
            except ValueError:
                q = {}
        n = q.get("n_params")
        if not n:
            n = json.loads(subprocess.run([LOWBIT, "inspect", f, "--json"], check=True, capture_output=True,
                                          text=True).stdout)["n_params"]
        bpw = f"{8 * size / n:.3f}" if n else "?"
        sec = f"{q['seconds']:.0f}" if "seconds" in q else ""
        peak = f"{q['peak_rss_bytes'] / 1048576:.0f}" if "peak_rss_bytes" in q else ""
        base = os.path.basename(f)[:-5] if f.endswith(".gguf") else f
        print(f"| {name} | {base} | {bpw} | {size} | {rv['ppl']:.4f} | {rw.get('ppl', float('nan')):.3f} "
              f"| {rv.get('kld_mean', float('nan')):.5f} | {rw.get('kld_mean', float('nan')):.5f} "
              f"| {100 * rv.get('top1', float('nan')):.2f} | {100 * rw.get('top1', float('nan')):.2f} | {sec} | {peak} |")


if __name__ == "__main__":
    main()
