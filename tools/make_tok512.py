#!/usr/bin/env python3
"""Cut the gpt2-style conformance tokenizer down to its first 512 ids (and the merges among them), for
tests that quantize the vocab-512 conformance checkpoints, which ship without a tokenizer.

usage: make_tok512.py SRC_TOKENIZER_JSON DST_TOKENIZER_JSON
"""
import json
import sys

t = json.load(open(sys.argv[1]))
keep = {k: v for k, v in t["model"]["vocab"].items() if v < 512}
merges = []
for m in t["model"]["merges"]:
    a, b = m.split(" ") if isinstance(m, str) else m
    if a in keep and b in keep and (a + b) in keep:
        merges.append(m)
t["model"]["vocab"] = keep
t["model"]["merges"] = merges
t["added_tokens"] = [x for x in t["added_tokens"] if x["id"] < 512]
json.dump(t, open(sys.argv[2], "w"), ensure_ascii=False)
