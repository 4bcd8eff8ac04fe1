#!/usr/bin/env python3
"""AutoRound (PyPI `auto-round`) quantizing an HF checkpoint into a GGUF file, calibrated on the first
windows of a text, for the peer rows of docs/QUALITY.md. Runs on the CPU (or a GPU where torch sees one);
never part of lowbit's build or tests.

usage: PYTHON bench/autoround_gguf.py HF_DIR CALIB.txt OUT_DIR FORMAT [iters=0] [windows=32] [ctx=512] [alg_ext=0]
  FORMAT: an AutoRound GGUF format such as gguf:q4_k_m, gguf:q3_k_m, gguf:q2_k_s.
Calibration: the text tokenized once by the checkpoint's own tokenizer, the first `windows` windows of `ctx`
tokens (llama-imatrix's choice of windows). Prints one JSON line: the GGUF written and the seconds taken.
"""
import glob
import json
import os
import sys
import time

import torch
from auto_round import AutoRound
from transformers import AutoModelForCausalLM, AutoTokenizer


def main():
    hf, calib, out, fmt = sys.argv[1:5]
    iters = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    windows = int(sys.argv[6]) if len(sys.argv) > 6 else 32
    ctx = int(sys.argv[7]) if len(sys.argv) > 7 else 512
    alg_ext = len(sys.argv) > 8 and sys.argv[8] == "1"
    tok = AutoTokenizer.from_pretrained(hf)
    ids = tok(open(calib, encoding="utf-8").read(), add_special_tokens=False)["input_ids"]
    if len(ids) < windows * ctx:
        sys.exit(f"autoround_gguf: {calib} has {len(ids)} tokens, fewer than {windows} x {ctx}")
    data = [torch.tensor([ids[w * ctx:(w + 1) * ctx]]) for w in range(windows)]
    model = AutoModelForCausalLM.from_pretrained(hf, torch_dtype=torch.float32)
    t0 = time.time()
    kw = {"enable_alg_ext": True} if alg_ext else {}
    ar = AutoRound(model, tok, dataset=data, nsamples=windows, seqlen=ctx, iters=iters, batch_size=min(8, windows),
                   device_map="cuda" if torch.cuda.is_available() else "cpu", **kw)
    ar.quantize_and_save(out, format=fmt)
    secs = time.time() - t0
    files = sorted(glob.glob(os.path.join(out, "**", "*.gguf"), recursive=True))
    print(json.dumps({"format": fmt, "iters": iters, "alg_ext": alg_ext, "windows": windows, "ctx": ctx,
                      "gguf": files, "seconds": round(secs, 1), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
