#!/usr/bin/env python3
"""llama.cpp's perplexity of a GGUF file under lowbit's protocol (the whole text tokenized at once, no BOS,
non-overlapping windows of CTX tokens from the start, every position after the first scored), through
llama-cpp-python, so that `lowbit eval` can be compared with llama.cpp on the same windows.
llama-perplexity itself scores only the second half of each window, hence this script.

usage: LB_PYTHON bench/llamacpp_ppl.py MODEL.gguf TEXT [windows=10] [ctx=512] [threads=2]
Prints one JSON line: tokens in the text, windows, positions scored, perplexity, mean NLL.
"""
import json
import sys

import numpy as np
from llama_cpp import Llama


def llama_ppl(path, text, windows=10, ctx=512, threads=2):
    """Perplexity of the first `windows` windows of `text` under lowbit's protocol, and the text's token ids."""
    llm = Llama(model_path=path, n_ctx=ctx, n_batch=ctx, logits_all=True, verbose=False,
                n_threads=threads, seed=1)
    toks = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
    windows = min(windows, len(toks) // ctx)
    nll, n = 0.0, 0
    for w in range(windows):
        win = toks[w * ctx:(w + 1) * ctx]
        llm.reset()
        llm.eval(win)
        logits = np.asarray(llm.scores[:ctx], dtype=np.float64)
        mx = logits.max(axis=1, keepdims=True)
        lse = np.log(np.exp(logits - mx).sum(axis=1)) + mx[:, 0]
        idx = np.arange(ctx - 1)
        nll += float((lse[idx] - logits[idx, np.asarray(win[1:])]).sum())
        n += ctx - 1
    del llm
    return {"text_tokens": len(toks), "windows": windows, "tokens_scored": n, "ppl": float(np.exp(nll / n)),
            "nll": nll / n}


def main():
    path, text_path = sys.argv[1], sys.argv[2]
    windows = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    ctx = int(sys.argv[4]) if len(sys.argv) > 4 else 512
    threads = int(sys.argv[5]) if len(sys.argv) > 5 else 2
    text = open(text_path, encoding="utf-8").read()
    print(json.dumps({"model": path, **llama_ppl(path, text, windows, ctx, threads)}))


if __name__ == "__main__":
    main()
