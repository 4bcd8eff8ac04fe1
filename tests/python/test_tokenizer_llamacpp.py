#!/usr/bin/env python3
"""lowbit's GGUF tokenizers against llama.cpp's own (llama-cpp-python, vocab only), for every
tokenizer.ggml.pre value llama.cpp accepts and for SentencePiece vocabularies.

For each value a vocabulary-only GGUF file is written with gguf-py: the vocabulary and merges of the
GPT-2-style conformance tokenizer ($LB_SHARED/conformance/tokenizers/gpt2/tokenizer.json; for the raw
UTF-8 values below, the spm_bpe one), its added
tokens typed CONTROL / USER_DEFINED, tokenizer.ggml.pre set to the value. Texts: the conformance
strings of all four styles (every third) and seeded random mixed-script text (digits, CJK, kana, Hangul, emoji with
modifiers, accents precomposed and combining, Greek, Cyrillic, Arabic, Devanagari, symbols, whitespace
runs with tabs, CR/LF, NBSP and U+3000, apostrophes and contractions) and a list of edge cases. All texts go through one
`lowbit tokenize` call per value, joined by the control token <|endoftext|>, which both tokenizers
match as a special token (llama.cpp: special=True), so every text is tokenized on its own; the id
lists must be identical.

The same for SentencePiece vocabularies (tokenizer.ggml.model "llama", llama.cpp's score-driven
merging): the spm_bpe conformance vocabulary with scores -id or seeded random, with and without
add_space_prefix, joined by </s>.

The values llama.cpp runs without byte encoding (BPE on raw UTF-8 with <0xNN> byte fallback, spaces
escaped as U+2581 for Gemma 4 and Sarvam) are compared on the spm_bpe vocabulary and its merges. Values
llama.cpp does not know must be refused by lowbit with an error naming the value.

Prints "N passed, N failed"; exits non-zero on any failure.
"""
import json
import os
import random
import re
import subprocess
import sys
import tempfile

import gguf
from llama_cpp import Llama

LOWBIT = os.environ.get("LOWBIT", "build/lowbit")
SHARED = os.environ.get("LB_SHARED", "../shared")
CONF = os.path.join(SHARED, "conformance", "tokenizers")
SEP = "<|endoftext|>"
results = {"passed": 0, "failed": 0}

# Every value llama.cpp 0.3.36's llama-vocab.cpp accepts for a BPE vocabulary, in its groups (one
# branch of its if-chain each; the first value of a group is compared on all texts, the others, which
# llama.cpp treats exactly alike, on the first ALIAS_TEXTS).
PRE_GROUPS = [g.split() for g in """default | llama3 llama-v3 llama-bpe falcon3 falcon-h1 pixtral midm-2.0 lfm2 jina-v5-nano
| minicpm5 | deepseek-llm | deepseek-coder | deepseek-v3 | spark2_5 | youtu | falcon | mpt | starcoder
| gpt-2 phi-2 jina-es jina-de gigachat jina-v2-es jina-v2-de a.x-4.0 mellum modern-bert | jais-2
| jina-v1-en jina-v2-code roberta-bpe | refact | command-r | qwen2 deepseek-r1-qwen kormo f2llmv2 | qwen35
| stablelm2 | olmo | dbrx | smaug-bpe | poro-chat | chatglm-bpe | glm4 glm5 | viking | jais | tekken | smollm
| codeshell | bloom | gpt3-finnish | exaone | exaone4 | exaone-moe | chameleon | minerva-7b | megrez
| gpt-4o llama4 kanana2 talkie | granite-embed-multi-97m | tiny_aya cohere2moe | superbpe | trillion
| granite-docling | bailingmoe bailingmoe2 llada-moe | seed-coder | hunyuan | hunyuan-dense | hy_v4 | joyai-llm
| kimi-k2 | ufakzeka | grok-2 | afmoe | laguna | minimax-m2 | solar-open | mellum2""".split("|")]
ALIAS_TEXTS = 40
# Edge cases: line/paragraph separators, NEL, joiners, private use, unassigned and control code points,
# long whitespace runs (jais-2's \s{512}), lone CRs, ligatures, titlecase letters, stacked marks.
EDGE_TEXTS = ["a\u2028b\u0085c", "x\u200dy\u200c", "\ue000\U000f0000 pua", "\u0378\u0379 unassigned", "tab\t\tend\t",
              " " * 600 + "x", "\r\rline\r", "\x01\x02ctl", "ﬁ ﬂ ㎏", "a'b 'Z' ''s", "١٢٣٤٥٦٧ ١", "x\u00a0\u00a0y",
              "\u3000\u3000z", "\U0001F469\u200d\U0001F4BB", "Ǆǅǆ ᾈ", "A\u0301\u0301B", "99999999999", " \n", "\n "]
# Values whose BPE runs on raw UTF-8 (no GPT-2 byte encoding; the first three escape spaces as U+2581):
# compared on a SentencePiece-style vocabulary with merges.
RAW_UTF8_VALUES = ["gemma4", "granite-embed-multi-311m", "sarvam-moe", "whitespace"]


def check(cond, msg):
    results["passed" if cond else "failed"] += 1
    if not cond:
        print("FAIL", msg, flush=True)


def write_vocab(path, pre, style="gpt2"):
    tj = json.load(open(os.path.join(CONF, style, "tokenizer.json"), encoding="utf-8"))
    vocab, added = tj["model"]["vocab"], tj.get("added_tokens", [])
    n = max([*vocab.values(), *(a["id"] for a in added)]) + 1
    toks, types = [f"[PAD{i}]" for i in range(n)], [gguf.TokenType.UNUSED] * n
    for k, v in vocab.items():
        toks[v], types[v] = k, gguf.TokenType.NORMAL
        if len(k) == 6 and k.startswith("<0x") and k.endswith(">"):
            types[v] = gguf.TokenType.BYTE
    for a in added:
        toks[a["id"]] = a["content"]
        types[a["id"]] = gguf.TokenType.CONTROL if a["special"] else gguf.TokenType.USER_DEFINED
    w = gguf.GGUFWriter(path, "llama")
    w.add_tokenizer_model("gpt2")
    if pre is not None:
        w.add_tokenizer_pre(pre)
    w.add_token_list(toks)
    w.add_token_types(types)
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_spm(path, add_space_prefix, seed):
    """A SentencePiece GGUF (model "llama") from the spm_bpe vocabulary: scores -id, or seeded random."""
    tj = json.load(open(os.path.join(CONF, "spm_bpe", "tokenizer.json"), encoding="utf-8"))
    vocab = tj["model"]["vocab"]
    n = max(vocab.values()) + 1
    rng = random.Random(seed)
    toks, types, scores = [""] * n, [gguf.TokenType.NORMAL] * n, [0.0] * n
    for k, v in vocab.items():
        toks[v], scores[v] = k, (-float(v) if seed is None else rng.uniform(-20, 0))
        if len(k) == 6 and k.startswith("<0x") and k.endswith(">"):
            types[v] = gguf.TokenType.BYTE
    types[vocab["<unk>"]] = gguf.TokenType.UNKNOWN
    types[vocab["<s>"]] = types[vocab["</s>"]] = gguf.TokenType.CONTROL
    w = gguf.GGUFWriter(path, "llama")
    w.add_tokenizer_model("llama")
    w.add_token_list(toks)
    w.add_token_types(types)
    w.add_token_scores(scores)
    w.add_bos_token_id(vocab["<s>"])
    w.add_eos_token_id(vocab["</s>"])
    w.add_unk_token_id(vocab["<unk>"])
    w.add_add_space_prefix(add_space_prefix)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def compare(model, texts, text_path, sep, name):
    llm = Llama(model_path=model, vocab_only=True, verbose=False)
    ref = llm.tokenize(sep.join(texts).encode("utf-8"), add_bos=False, special=True)
    sep_id = llm.tokenize(sep.encode(), add_bos=False, special=True)[-1]
    del llm
    got, msg = lowbit_ids(model, text_path)
    check(got is not None, f"{name}: lowbit failed: {msg}")
    if got is not None:
        check(got == ref, f"{name}: {first_diff(texts, sep_id, ref, got)}")


def random_texts(n, seed=11):
    rng = random.Random(seed)
    pools = [
        lambda: rng.choice(["the", "The", "tokenizer", "GGUF", "CamelCase", "snake_case", "naïve", "café",
                            "e\u0301cole", "Straße", "ſpeed", "İstanbul"]),
        lambda: "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 9))),
        lambda: "".join(chr(rng.randint(0x4E00, 0x9FA5)) for _ in range(rng.randint(1, 5))),
        lambda: "".join(chr(rng.randint(0x3041, 0x3096)) for _ in range(rng.randint(1, 4))) + "カタカナ",
        lambda: "".join(chr(rng.randint(0xAC00, 0xD7A3)) for _ in range(rng.randint(1, 4))),
        lambda: rng.choice(["\U0001F600", "\U0001F44D\U0001F3FD", "\U0001F1EF\U0001F1F5", "\u2764\ufe0f", "\U0001F680"]),
        lambda: rng.choice(["αβγ Ωμέγα", "Привет мир", "مرحبا", "हिन्दी भाषा", "ไทย", "עברית"]),
        lambda: rng.choice(["$5", "+1", "<=>", "^_^", "`x`", "|a|", "~/", "€10", "©", "½", "Ⅻ", "２３", "٣٤", "...", "—",
                            "“q”", "(a)", "[b]", "{c}", "#!", "@x", "%d", "&&", "*/"]),
        lambda: rng.choice([" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n ", "\u00a0", "\u3000", "\t\t ", "    "]),
        lambda: rng.choice(["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL", "'Re", "’s", "'x", "''"]),
    ]
    out = []
    for _ in range(n):
        parts = [rng.choice(pools)() for _ in range(rng.randint(1, 14))]
        glue = [rng.choice(["", " ", " ", "", "\n"]) for _ in parts]
        out.append("".join(p + g for p, g in zip(parts, glue)))
    return out


def conformance_texts():
    texts = []
    for style in sorted(os.listdir(CONF)):
        f = os.path.join(CONF, style, "cases.json")
        if os.path.exists(f):
            texts += [c["text"] for c in json.load(open(f, encoding="utf-8"))["cases"]]
    return [t for t in texts if t and "<|" not in t and "\0" not in t]


def lowbit_ids(model, text_path):
    out = subprocess.run([LOWBIT, "tokenize", model, "--text", text_path, "--json"], capture_output=True, text=True)
    if out.returncode != 0:
        return None, out.stderr.strip()
    return json.loads(out.stdout)["ids"], ""


def first_diff(texts, sep_id, ref, got):
    """The text whose ids differ first, with both id lists."""
    def pieces(ids):
        cur, res = [], []
        for i in ids:
            if i == sep_id:
                res.append(cur)
                cur = []
            else:
                cur.append(i)
        return res + [cur]
    for t, a, b in zip(texts, pieces(ref), pieces(got)):
        if a != b:
            return f"{t!r}: llama.cpp {a}, lowbit {b}"
    return f"piece counts differ ({len(pieces(ref))} vs {len(pieces(got))})"


def main():
    texts = EDGE_TEXTS + random_texts(150) + conformance_texts()[::3]
    joined = SEP.join(texts)
    with tempfile.TemporaryDirectory() as tmp:
        text_path = os.path.join(tmp, "texts.txt")
        with open(text_path, "w", encoding="utf-8", newline="") as f:
            f.write(joined)
        alias_path = os.path.join(tmp, "alias.txt")
        with open(alias_path, "w", encoding="utf-8", newline="") as f:
            f.write(SEP.join(texts[:ALIAS_TEXTS]))
        model = os.path.join(tmp, "vocab.gguf")
        n_values = 0
        runs = [(g[0], True) for g in PRE_GROUPS] + [(p, False) for g in PRE_GROUPS for p in g[1:]] + [(None, False)]
        for pre, full in runs:
            write_vocab(model, pre)
            these = texts if full else texts[:ALIAS_TEXTS]
            compare(model, these, text_path if full else alias_path, SEP, pre if pre is not None else "(no pre)")
            n_values += 1
        spm_path = os.path.join(tmp, "spm_texts.txt")
        with open(spm_path, "w", encoding="utf-8", newline="") as f:
            f.write("</s>".join(texts))
        for asp, seed in ((True, None), (False, None), (True, 3)):
            write_spm(model, asp, seed)
            compare(model, texts, spm_path, "</s>", f"SentencePiece add_space_prefix={asp} scores={seed or '-id'}")
        # llama.cpp aborts when a raw-UTF-8 BPE word holds a space next to another char (find_bpe_rank
        # asserts), which "whitespace" (no escaping) meets at every run of spaces: it gets runs of one
        ws_texts = [re.sub(r"\s+", lambda m: m.group(0) if " " not in m.group(0) else " ", t) for t in texts]
        ws_path = os.path.join(tmp, "ws_texts.txt")
        with open(ws_path, "w", encoding="utf-8", newline="") as f:
            f.write("</s>".join(ws_texts))
        for pre in RAW_UTF8_VALUES:
            write_vocab(model, pre, "spm_bpe")
            ws = pre == "whitespace"
            compare(model, ws_texts if ws else texts, ws_path if ws else spm_path, "</s>", f"{pre} (raw UTF-8 BPE)")
            n_values += 1
        for pre in ["mystery-pre"]:
            write_vocab(model, pre)
            got, msg = lowbit_ids(model, text_path)
            check(got is None and f'"{pre}"' in msg and "not supported" in msg, f"{pre}: wanted a clear error, got {msg!r}")
    print(f"{n_values} pre values compared with llama.cpp: {len(PRE_GROUPS)} on {len(texts)} texts "
          f"({len(joined.encode())} bytes), the rest on {ALIAS_TEXTS}")
    print(f"{results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
