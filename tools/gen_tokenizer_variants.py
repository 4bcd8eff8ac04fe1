#!/usr/bin/env python3
"""Make the added-token conformance fixtures: tests/golden/conformance/tokenizers/{gpt2,spm_bpe}_added.

Each is the gpt2 / spm_bpe tokenizer.json of that folder plus added tokens exercising every flag
(single_word, lstrip, rstrip, normalized, special), and cases.json holds what Hugging Face tokenizers
(pip package `tokenizers`) gives for random strings built around them: text, ids, decoded.

Usage: python3 tools/gen_tokenizer_variants.py   (from the repository root; needs `pip install tokenizers`)
"""
import json
import os
import random

import tokenizers
from tokenizers import Tokenizer

BASE = "tests/golden/conformance/tokenizers/"
EXTRA = [
    ("hello", dict(single_word=True, normalized=False, special=False)),
    ("<mask>", dict(lstrip=True, rstrip=True, normalized=False, special=True)),
    (" world", dict(normalized=True, special=False)),
    ("café", dict(rstrip=True, normalized=True, special=False)),
    ("<|endoftext|>x", dict(normalized=False, special=True)),
    ("ab cd", dict(single_word=True, lstrip=True, normalized=False, special=False)),
]
POOL = list("aAbZzs'SsTtRrEeVvMmLl  \t\n\r0123456789.,;!?()-_\"<>|/\\") + [
    "hello", "hello ", "xhello", "hello_", " world", "café", "cafe\u0301", "<mask>", "  <mask>  ",
    "<|endoftext|>", "<|endoftext|>x", "ab cd", "ab cde", "é", "中", "\u4e00\u4e01", "\U0001f600", "<s>", "▁"]


def main():
    random.seed(20240601)
    for style in ["gpt2", "spm_bpe"]:
        d = json.load(open(BASE + style + "/tokenizer.json", encoding="utf-8"))
        n = max(d["model"]["vocab"].values()) + 1
        for i, (content, flags) in enumerate(EXTRA):
            tok = dict(id=n + i, content=content, single_word=False, lstrip=False, rstrip=False)
            tok.update(flags)
            d["added_tokens"].append(tok)
        out = BASE + style + "_added/"
        os.makedirs(out, exist_ok=True)
        with open(out + "tokenizer.json", "w", encoding="utf-8") as f:
            json.dump(d, f, ensure_ascii=False)
        tk = Tokenizer.from_file(out + "tokenizer.json")
        cases = []
        for _ in range(200):
            text = "".join(random.choice(POOL) for _ in range(random.randint(1, 16)))
            ids = tk.encode(text, add_special_tokens=False).ids
            cases.append(dict(text=text, ids=ids, decoded=tk.decode(ids, skip_special_tokens=False)))
        with open(out + "cases.json", "w", encoding="utf-8") as f:
            json.dump(dict(source="Hugging Face tokenizers %s" % tokenizers.__version__, add_special_tokens=False,
                           cases=cases), f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
