#!/usr/bin/env python3
"""GGUF files written by `lowbit quantize` read by llama.cpp's own tools, as independent references:

- gguf-py (llama.cpp's reader) parses every file: tensor names, ggml types and shapes equal what lowbit
  reported, and the metadata llama.cpp needs is present with the types it demands;
- llama-cpp-python (a current llama.cpp) loads every file, tokenizes the text to exactly as many tokens as
  lowbit does, and its perplexity over the first windows of valid.txt agrees with lowbit's: within 0.5% for
  f16/bf16/q8_0 and 2% for the lower-bit types (both round activations to 8 bits inside the products of
  quantized weights, but not in the same way or order; on llama.cpp's own files the two engines agree
  within 0.13%, see tests/unit/test_gguf_eval.c);
- for `small` (arch "llama") this checks the q/k row permutation end to end.

Prints "N passed, N failed"; exits non-zero on any failure.
"""
import json
import os
import subprocess
import sys
import tempfile

from gguf import GGUFReader, GGMLQuantizationType

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
import llamacpp_ppl  # noqa: E402  llama.cpp's perplexity under lowbit's protocol (bench/llamacpp_ppl.py)

LOWBIT = os.environ.get("LOWBIT", "build/lowbit")
SHARED = os.environ.get("LB_SHARED", "../shared")
TEXT = "tests/golden/data/valid.txt"
CTX, WINDOWS = 512, 4
results = {"passed": 0, "failed": 0}


def check(cond, msg):
    if cond:
        results["passed"] += 1
    else:
        results["failed"] += 1
        print("FAIL", msg, flush=True)


def lowbit(*args):
    out = subprocess.run([LOWBIT, *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def llama_ppl(path, text):
    r = llamacpp_ppl.llama_ppl(path, text, WINDOWS, CTX, 2)
    check(r["windows"] == WINDOWS, f"{path}: only {r['windows']} windows of {CTX} tokens in the text")
    return r["ppl"], r["text_tokens"]


def check_gguf_py(path, report):
    r = GGUFReader(path)
    got = {t.name: t for t in r.tensors}
    check(len(got) == len(report["tensors"]), f"{path}: {len(got)} tensors, lowbit wrote {len(report['tensors'])}")
    for t in report["tensors"]:
        g = got.get(t["name"])
        if g is None:
            check(False, f"{path}: {t['name']} missing for gguf-py")
            continue
        want_type = GGMLQuantizationType[t["type"].upper()]
        check(g.tensor_type == want_type and [int(x) for x in g.shape] == [x for x in t["ne"] if x != 1 or len(g.shape) > 1][:len(g.shape)],
              f"{path}: {t['name']} is {g.tensor_type.name} {list(g.shape)} for gguf-py, lowbit wrote {t['type']} {t['ne']}")
    fields = r.fields
    arch = bytes(fields["general.architecture"].parts[-1]).decode()
    check(arch == report["architecture"], f"{path}: general.architecture {arch}")
    for key in ["general.file_type", "general.quantization_version", f"{arch}.block_count", f"{arch}.embedding_length",
                f"{arch}.attention.head_count", f"{arch}.context_length", f"{arch}.feed_forward_length"]:
        check(key in fields and fields[key].types[0].name == "UINT32", f"{path}: {key} missing or not u32")
    for key in [f"{arch}.rope.freq_base", f"{arch}.attention.layer_norm_rms_epsilon"]:
        check(key in fields and fields[key].types[0].name == "FLOAT32", f"{path}: {key} missing or not f32")
    for key in ["tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type"]:
        check(key in fields, f"{path}: {key} missing")


def run(model, name, types, tmp):
    text = open(TEXT, encoding="utf-8").read()
    for t in types:
        path = os.path.join(tmp, f"{name}-{t}.gguf")
        report = lowbit("quantize", model, "-o", path, "--type", t, "--json", "-q")
        check_gguf_py(path, report)
        ev = lowbit("eval", path, "--text", TEXT, "--chunks", str(WINDOWS), "--json", "-q")
        ppl, n_tok = llama_ppl(path, text)
        tol = 0.005 if t in ("f16", "bf16", "q8_0") else 0.02
        rel = abs(ppl - ev["ppl"]) / ev["ppl"]
        check(n_tok == ev["n_tokens"], f"{name} {t}: llama.cpp tokenizes valid.txt to {n_tok} tokens, lowbit to {ev['n_tokens']}")
        check(rel <= tol, f"{name} {t}: llama.cpp ppl {ppl:.4f} vs lowbit {ev['ppl']:.4f} ({100 * rel:.3f}% apart)")
        print(f"{name:5s} {t:7s} {report['bits_per_weight']:.3f} bpw  llama.cpp ppl {ppl:9.4f}  lowbit {ev['ppl']:9.4f}  "
              f"({100 * rel:.3f}% apart)", flush=True)
        os.remove(path)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        run("models/tiny", "tiny", ["f16", "bf16", "q8_0", "q6_k", "q5_k_m", "q5_k_s", "q4_k_m", "q4_k_s", "q4_0", "q4_1",
                                    "q5_0", "q5_1", "iq4_nl", "iq4_xs", "q3_k_l", "q3_k_m", "q3_k_s", "q2_k"], tmp)
        run(os.path.join(SHARED, "models/small"), "small", ["q8_0", "q4_k_m", "q3_k_s"], tmp)
    print(f"{results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
