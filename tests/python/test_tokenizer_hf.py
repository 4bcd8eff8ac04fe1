#!/usr/bin/env python3
"""lowbit's tokenizer.json pre-tokenizers and normalizers against Hugging Face `tokenizers` itself.

Variants of the conformance tokenizers ($LB_SHARED/conformance/tokenizers: gpt2 for byte-level BPE,
spm_bpe for SentencePiece-style BPE) are written with other `pre_tokenizer` / `normalizer` entries:
Digits (individual or not), Split with regex and string patterns under every behavior and invert,
Punctuation, Whitespace, WhitespaceSplit, Metaspace (each prepend scheme, split or not), ByteLevel with
and without its regex and prefix space, in Sequences; and the normalizers NFC, NFD, NFKC, NFKD,
Lowercase, Strip, Replace (string and regex), Prepend, alone and in a Sequence. Each variant tokenizes the conformance
strings (every third) and seeded random mixed-script text, joined by the tokenizer's special token
(which both sides match before normalizing, so every text is tokenized on its own, Metaspace's "first"
scheme prepending only at the start of the whole input): one `lowbit tokenize` call must give exactly
`Tokenizer.encode(joined, add_special_tokens=False).ids`.

Prints "N passed, N failed"; exits non-zero on any failure.
"""
import copy
import json
import os
import random
import subprocess
import sys
import tempfile

from tokenizers import Tokenizer

LOWBIT = os.environ.get("LOWBIT", "build/lowbit")
SHARED = os.environ.get("LB_SHARED", "../shared")
CONF = os.path.join(SHARED, "conformance", "tokenizers")
results = {"passed": 0, "failed": 0}

BL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
BL_NORX = dict(BL, use_regex=False)
WORDS_RE = "\\p{L}+|\\p{N}{1,2}|[^\\s\\p{L}\\p{N}]+"
# Edge cases: separators, NEL, joiners, private use, unassigned and control code points, lone CRs,
# ligatures and compatibility characters, titlecase letters, stacked marks, long whitespace.
EDGE_TEXTS = ["a\u2028b\u0085c", "x\u200dy\u200c", "\ue000\U000f0000 pua", "\u0378\u0379 unassigned", "tab\t\tend\t",
              " " * 300 + "x", "\r\rline\r", "\x01\x02ctl", "ﬁ ﬂ ㎏ Ⅻ ①", "a'b 'Z' ''s", "x\u00a0\u00a0y", "\u3000\u3000z",
              "\U0001F469\u200d\U0001F4BB", "Ǆǅǆ ᾈ ΣΑΣ", "A\u0301\u0301B", " \n", "\n "]
BEHAVIORS = ["Isolated", "Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous"]


def seq(*pre):
    return {"type": "Sequence", "pretokenizers": list(pre)}


def split(pattern, behavior="Isolated", invert=False, literal=False):
    return {"type": "Split", "pattern": {"String" if literal else "Regex": pattern}, "behavior": behavior, "invert": invert}


def nseq(*norms):
    return {"type": "Sequence", "normalizers": list(norms)}


def byte_level_variants():
    """(name, normalizer, pre_tokenizer) on the byte-level vocabulary."""
    v = [
        ("Digits individual + ByteLevel (SmolLM2)", None, seq({"type": "Digits", "individual_digits": True}, BL)),
        ("Digits contiguous + ByteLevel", None, seq({"type": "Digits", "individual_digits": False}, BL)),
        ("ByteLevel prefix space", None, dict(BL, add_prefix_space=True)),
        ("ByteLevel no regex, prefix space", None, dict(BL_NORX, add_prefix_space=True)),
        ("Punctuation + ByteLevel", None, seq({"type": "Punctuation", "behavior": "Isolated"}, BL)),
        ("Punctuation contiguous + ByteLevel", None, seq({"type": "Punctuation", "behavior": "Contiguous"}, BL)),
        ("Whitespace + ByteLevel no regex", None, seq({"type": "Whitespace"}, BL_NORX)),
        ("WhitespaceSplit + ByteLevel no regex", None, seq({"type": "WhitespaceSplit"}, BL_NORX)),
        ("Split Onig features", None, seq(split("(?i:'s|'t|the)|[A-Z]?[a-z]+|\\p{Lu}++|\\d{1,3}(?=(?:\\d{3})*\\b)|"
                                               "\\s+(?!\\S)|\\s+|[^\\s\\w]+|\\w"), BL_NORX)),
        ("Split Digits + Punctuation + Split", None,
         seq({"type": "Digits", "individual_digits": True}, {"type": "Punctuation", "behavior": "MergedWithPrevious"},
             split(" ", "MergedWithNext", literal=True), BL_NORX)),
    ]
    real = {  # Split regexes of published tokenizer.json files
        "BLOOM": " ?[^(\\s|[.,!?…。，、।۔،])]+",
        "GPT-4o": "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|"
                  "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|"
                  "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        "Bailing (possessive)": "'(?i:[sdmt]|ll|ve|re)|[^\\r\\n\\p{L}\\p{N}]?+\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]++[\\r\\n]*|"
                                "\\s*[\\r\\n]|\\s+(?!\\S)|\\s+",
        # Llama-3's regex with a redundant last alternative: the regex engine, not the hand-written splitter
        "Llama-3 via the engine": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                                  "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+|\\s+",
    }
    for name, rgx in real.items():
        v.append((f"Split {name}", None, seq(split(rgx), BL_NORX)))
    v.append(("DeepSeek-V3 Splits", None, seq(split("\\p{N}{1,3}"), split("[一-龥\u3040-ゟ゠-ヿ]+"),
                                           split("[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?"
                                                 "[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"), BL_NORX)))
    for b in BEHAVIORS:
        for inv in (False, True):
            v.append((f"Split regex {b} invert={inv}", None, seq(split(WORDS_RE, b, inv), BL_NORX)))
        v.append((f"Split string {b}", None, seq(split(" ", b, literal=True), BL_NORX)))
    norms = {
        "NFC": {"type": "NFC"}, "NFD": {"type": "NFD"}, "NFKC": {"type": "NFKC"}, "NFKD": {"type": "NFKD"},
        "Lowercase": {"type": "Lowercase"}, "Strip": {"type": "Strip", "strip_left": True, "strip_right": True},
        "Strip right": {"type": "Strip", "strip_left": False, "strip_right": True},
        "Replace": {"type": "Replace", "pattern": {"String": "  "}, "content": "\t"},
        "Prepend": {"type": "Prepend", "prepend": "¶"},
        "Replace regex": {"type": "Replace", "pattern": {"Regex": " {2,}|\\p{Nd}+"}, "content": "#"},
        "Replace regex, folded": {"type": "Replace", "pattern": {"Regex": "(?i:the)|\\s(?=\\n)"}, "content": "ðe"},
    }
    for name, n in norms.items():
        v.append((f"normalizer {name}", n, BL))
    v.append(("normalizer Sequence NFKC Lowercase Strip Replace", nseq(norms["NFKC"], norms["Lowercase"], norms["Strip"],
                                                                   norms["Replace"]), BL))
    return v


def metaspace_variants():
    v = []
    for scheme in ("always", "first", "never"):
        for spl in (True, False):
            ms = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": scheme, "split": spl}
            v.append((f"Metaspace {scheme} split={spl}", None, ms))
    v.append(("Digits + Metaspace", None, seq({"type": "Digits", "individual_digits": True},
                                              {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first",
                                               "split": True})))
    return v


def random_texts(n, seed=5):
    rng = random.Random(seed)
    pools = [
        lambda: rng.choice(["the", "The", "THE", "tokenizer", "CamelCase", "snake_case", "naïve", "Café", "e\u0301cole",
                            "Straße", "ſpeed", "İstanbul", "ﬁne", "Ⅻ", "½", "²", "ｆｕｌｌ"]),
        lambda: "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 9))),
        lambda: "".join(chr(rng.randint(0x4E00, 0x9FA5)) for _ in range(rng.randint(1, 4))),
        lambda: "".join(chr(rng.randint(0xAC00, 0xD7A3)) for _ in range(rng.randint(1, 3))),
        lambda: rng.choice(["\U0001F600", "\U0001F44D\U0001F3FD", "αβγ Ωμέγα", "Привет", "हिन्दी", "١٢٣"]),
        lambda: rng.choice(["$5", "+1", "<=>", "^_^", "`x`", "|a|", "~/", "€10", "...", "—", "“q”", "(a)", "#!", "%d"]),
        lambda: rng.choice([" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n ", "\u00a0", "\u3000", "    "]),
        lambda: rng.choice(["'s", "'t", "'S", "'LL", "’s", "'x"]),
    ]
    out = []
    for _ in range(n):
        parts = [rng.choice(pools)() for _ in range(rng.randint(1, 12))]
        out.append("".join(p + rng.choice(["", " ", " ", "\n"]) for p in parts))
    return out


def conformance_texts():
    texts = []
    for style in sorted(os.listdir(CONF)):
        f = os.path.join(CONF, style, "cases.json")
        if os.path.exists(f):
            texts += [c["text"] for c in json.load(open(f, encoding="utf-8"))["cases"]]
    return [t for t in texts if t and "<|" not in t and "</s>" not in t and "<s>" not in t and "<unk>" not in t]


def check(cond, msg):
    results["passed" if cond else "failed"] += 1
    if not cond:
        print("FAIL", msg, flush=True)


def run_variant(tmp, base, sep, name, norm, pre, texts):
    tj = copy.deepcopy(base)
    tj["normalizer"], tj["pre_tokenizer"] = norm, pre
    d = os.path.join(tmp, "v")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "tokenizer.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False)
    hf = Tokenizer.from_file(path)
    joined = sep.join(texts)
    want = hf.encode(joined, add_special_tokens=False).ids
    sep_id = hf.token_to_id(sep)
    text_path = os.path.join(tmp, "texts.txt")
    with open(text_path, "w", encoding="utf-8", newline="") as f:
        f.write(joined)
    out = subprocess.run([LOWBIT, "tokenize", path, "--text", text_path, "--json"], capture_output=True, text=True)
    if out.returncode != 0:
        check(False, f"{name}: lowbit failed (status {out.returncode}): {out.stderr.strip()}")
        return
    got = json.loads(out.stdout)["ids"]
    if got == want:
        check(True, name)
        return
    def pieces(ids):
        res, cur = [], []
        for i in ids:
            if i == sep_id:
                res.append(cur)
                cur = []
            else:
                cur.append(i)
        return res + [cur]
    bad = next(((t, r, p) for t, r, p in zip(texts, pieces(want), pieces(got)) if r != p), None)
    check(False, f"{name}: " + (f"{bad[0]!r}: tokenizers {bad[1]}, lowbit {bad[2]}" if bad else "piece counts differ"))


def main():
    texts = EDGE_TEXTS + random_texts(150) + conformance_texts()[::3]
    gpt2 = json.load(open(os.path.join(CONF, "gpt2", "tokenizer.json"), encoding="utf-8"))
    spm = json.load(open(os.path.join(CONF, "spm_bpe", "tokenizer.json"), encoding="utf-8"))
    n = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, norm, pre in byte_level_variants():
            run_variant(tmp, gpt2, "<|endoftext|>", name, norm, pre, texts)
            n += 1
        for name, norm, pre in metaspace_variants():
            run_variant(tmp, spm, "</s>", name, norm, pre, texts)
            n += 1
    print(f"{n} tokenizer.json variants x {len(texts)} texts compared with tokenizers")
    print(f"{results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
