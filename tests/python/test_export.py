#!/usr/bin/env python3
"""`lowbit export` (a model written as a Hugging Face directory) checked against independent references:

- llama.cpp's F16 GGUF of models/tiny (written by llama.cpp's converter) exported to F16 gives back every
  tensor of the original transformers checkpoint bit for bit, under transformers' names;
- llama.cpp's q4_k_m GGUF of `small` (arch "llama": q/k rows in llama.cpp's permuted order) exported to
  F32 equals gguf-py's own dequantization of each tensor, with q/k rows in the original checkpoint's
  order: each exported q_proj/k_proj row correlates with the same row of the original bf16 checkpoint
  as closely as 4-bit rounding allows (a wrong row order would not);
- the tokenizer.json made from the GGUF vocabulary, loaded by Hugging Face `tokenizers`, encodes the
  conformance strings exactly as the original tokenizer.json does;
- bad requests (an existing output, a quantized dtype) fail with a message and leave nothing behind.

Prints "N passed, N failed"; exits non-zero on any failure.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize
from tokenizers import Tokenizer

LOWBIT = os.environ.get("LOWBIT", "build/lowbit")
SHARED = os.environ.get("LB_SHARED", "../shared")
results = {"passed": 0, "failed": 0}


def check(cond, msg):
    if cond:
        results["passed"] += 1
    else:
        results["failed"] += 1
        print("FAIL", msg, flush=True)


def read_safetensors(path):
    """name -> numpy array, parsed from the file layout directly (u64 header length, JSON header, data)."""
    with open(path, "rb") as f:
        blob = f.read()
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    base = 8 + n
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        raw = np.frombuffer(blob, dtype=np.uint8, count=e - b, offset=base + b)
        if t["dtype"] == "BF16":
            a = (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            a = raw.view({"F16": np.float16, "F32": np.float32}[t["dtype"]])
        out[name] = (t["dtype"], a.reshape(t["shape"]))
    return out


def export(src, dst, *extra):
    return subprocess.run([LOWBIT, "export", src, "-o", dst, *extra], capture_output=True, text=True)


def test_tiny_roundtrip(tmp):
    dst = os.path.join(tmp, "tiny")
    r = export(f"{SHARED}/golden/gguf/tiny-f16.gguf", dst, "--dtype", "f16")
    check(r.returncode == 0, f"export tiny-f16.gguf: {r.stderr}")
    if r.returncode:
        return
    got = read_safetensors(os.path.join(dst, "model.safetensors"))
    want = read_safetensors("models/tiny/model.safetensors")
    check(set(got) == set(want), f"tensor names differ: {sorted(set(got) ^ set(want))[:6]}")
    for name, (_, w) in want.items():
        if name not in got:
            continue
        dt, g = got[name]
        check(dt == "F16" and g.shape == w.shape, f"{name}: {dt} {g.shape} vs {w.shape}")
        check(g.shape == w.shape and np.array_equal(g.view(np.uint16), w.astype(np.float16).view(np.uint16)),
              f"{name}: values differ from the original checkpoint")
    cfg = json.load(open(os.path.join(dst, "config.json")))
    orig = json.load(open("models/tiny/config.json"))
    for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
              "vocab_size", "tie_word_embeddings"):
        check(cfg.get(k) == orig.get(k), f"config {k}: {cfg.get(k)} vs {orig.get(k)}")
    check(cfg["architectures"] == ["Qwen2ForCausalLM"], f"architectures {cfg['architectures']}")
    # tokenizer.json from the GGUF vocabulary against the original, through Hugging Face tokenizers
    mine = Tokenizer.from_file(os.path.join(dst, "tokenizer.json"))
    ref = Tokenizer.from_file("models/tiny/tokenizer.json")
    cases = json.load(open(f"{SHARED}/conformance/tokenizers/gpt2/cases.json"))
    texts = [c["text"] for c in (cases["cases"] if isinstance(cases, dict) else cases)]
    bad = [t for t in texts if mine.encode(t, add_special_tokens=False).ids != ref.encode(t, add_special_tokens=False).ids]
    check(not bad, f"{len(bad)} of {len(texts)} strings tokenize differently, e.g. {bad[:1]!r}")
    check(mine.get_vocab() == ref.get_vocab(), "vocabularies differ")


def test_small_permuted(tmp):
    src = f"{SHARED}/golden/gguf/small-q4_k_m-imat.gguf"
    dst = os.path.join(tmp, "small")
    r = export(src, dst, "--dtype", "f32")
    check(r.returncode == 0, f"export small q4_k_m: {r.stderr}")
    if r.returncode:
        return
    got = read_safetensors(os.path.join(dst, "model.safetensors"))
    orig = read_safetensors(f"{SHARED}/models/small/model.safetensors") if os.path.exists(
        f"{SHARED}/models/small/model.safetensors") else {}
    if not orig:
        idx = json.load(open(f"{SHARED}/models/small/model.safetensors.index.json"))
        for shard in sorted(set(idx["weight_map"].values())):
            orig.update(read_safetensors(f"{SHARED}/models/small/{shard}"))
    check(set(got) == set(orig), f"tensor names differ: {sorted(set(got) ^ set(orig))[:6]}")
    reader = GGUFReader(src)
    gg = {t.name: t for t in reader.tensors}
    names = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
             "ffn_down": "mlp.down_proj"}
    for layer in (0, 5):
        for gname, hname in names.items():
            t = gg[f"blk.{layer}.{gname}.weight"]
            deq = dequantize(t.data, t.tensor_type).reshape(int(t.shape[1]), int(t.shape[0]))
            hf = f"model.layers.{layer}.{hname}.weight"
            e = got[hf][1]
            o = orig[hf][1]
            if gname in ("attn_q", "attn_k"):  # gguf-py's dequantized rows put back in transformers' order
                heads = 8 if gname == "attn_q" else 4
                d = deq.shape[0] // heads
                deq = deq.reshape(heads, d // 2, 2, -1).swapaxes(1, 2).reshape(deq.shape)
            check(np.array_equal(e, deq.astype(np.float32)), f"{hf}: differs from gguf-py's dequantization")
            corr = np.array([np.corrcoef(e[i], o[i])[0, 1] for i in range(0, e.shape[0], 7)])
            check(corr.min() > 0.9, f"{hf}: row correlation with the original down to {corr.min():.3f}")


def test_errors(tmp):
    dst = os.path.join(tmp, "exists")
    os.mkdir(dst)
    r = export("models/tiny", dst)
    check(r.returncode != 0 and "already exists" in r.stderr, f"existing output accepted: {r.stderr}")
    dst = os.path.join(tmp, "q")
    r = export("models/tiny", dst, "--dtype", "q4_0")
    check(r.returncode != 0 and "--dtype" in r.stderr and not os.path.exists(dst), f"q4_0 dtype: {r.stderr}")
    r = export(f"{SHARED}/golden/gguf/tiny-f16.gguf", os.path.join(tmp, "no", "such", "dir"))
    check(r.returncode != 0 and "cannot create" in r.stderr, f"missing parent: {r.stderr}")
    check(not [f for f in os.listdir(tmp) if ".tmp." in f], "temporary directory left behind")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        test_tiny_roundtrip(tmp)
        test_small_permuted(tmp)
        test_errors(tmp)
    print(f"{results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
