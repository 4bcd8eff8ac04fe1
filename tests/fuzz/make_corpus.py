#!/usr/bin/env python3
"""Write the seed corpora of the fuzz targets into tests/fuzz/corpus/<target>/ (standard library only; run
from the repository root). The seeds are small valid inputs: a 1-layer model as GGUF and as an HF
checkpoint, importance matrices in both layouts, tokenizers cut down from the conformance fixtures and a
few texts. Re-running it gives the same files."""
import json
import os
import struct
import sys

sys.path.insert(0, "tests/cli")
from badfiles import gguf_str, write_gguf  # noqa: E402

OUT = "tests/fuzz/corpus"
E, H, HKV, D, F, V, CTX = 8, 2, 1, 4, 16, 16, 16


def put(target, name, data):
    os.makedirs(f"{OUT}/{target}", exist_ok=True)
    with open(f"{OUT}/{target}/{name}", "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def values(n, salt):
    return [((i * 7 + salt * 13) % 17 - 8) / 16.0 for i in range(n)]


def f32(xs):
    return struct.pack(f"<{len(xs)}f", *xs)


def f16(xs):
    return struct.pack(f"<{len(xs)}e", *xs)


# (hf name, gguf name, shape in HF order)
LAYER = [("input_layernorm", "attn_norm", [E]), ("post_attention_layernorm", "ffn_norm", [E]),
         ("self_attn.q_proj", "attn_q", [H * D, E]), ("self_attn.k_proj", "attn_k", [HKV * D, E]),
         ("self_attn.v_proj", "attn_v", [HKV * D, E]), ("self_attn.o_proj", "attn_output", [E, H * D]),
         ("mlp.gate_proj", "ffn_gate", [F, E]), ("mlp.up_proj", "ffn_up", [F, E]), ("mlp.down_proj", "ffn_down", [E, F])]


def tensors():
    """(hf name, gguf name, shape) of the 1-layer model"""
    out = [("model.embed_tokens.weight", "token_embd.weight", [V, E]), ("model.norm.weight", "output_norm.weight", [E]),
           ("lm_head.weight", "output.weight", [V, E])]
    for hf, gg, shape in LAYER:
        suffix = "weight"
        out.append((f"model.layers.0.{hf}.{suffix}", f"blk.0.{gg}.{suffix}", shape))
    return out


def numel(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def gguf_model(extra=(), path="/tmp/lb_seed.gguf"):
    """the 1-layer model as GGUF bytes; `extra`: more (name, ne) f32 tensors"""
    kvs = [("general.architecture", 8, gguf_str(b"llama"))]
    for k, v in [("embedding_length", E), ("block_count", 1), ("feed_forward_length", F), ("attention.head_count", H),
                 ("attention.head_count_kv", HKV), ("context_length", CTX)]:
        kvs.append((f"llama.{k}", 4, struct.pack("<I", v)))
    kvs.append(("llama.attention.layer_norm_rms_epsilon", 6, struct.pack("<f", 1e-5)))
    kvs.append(("llama.rope.freq_base", 6, struct.pack("<f", 10000.0)))
    ts = []
    for i, (_, name, shape) in enumerate(tensors()):
        ts.append((name.encode(), list(reversed(shape)), 0, f32(values(numel(shape), i))))
    for name, ne in extra:
        ts.append((name.encode(), ne, 0, f32(values(numel(ne), 0))))
    write_gguf(path, kvs, ts)
    with open(path, "rb") as f:
        return f.read()


def safetensors_model():
    header, data = {"__metadata__": {"format": "pt"}}, b""
    for i, (name, _, shape) in enumerate(tensors()):
        b = f16(values(numel(shape), i))
        header[name] = {"dtype": "F16", "shape": shape, "data_offsets": [len(data), len(data) + len(b)]}
        data += b
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((-len(h)) % 8)
    return struct.pack("<Q", len(h)) + h + data


def hf_config():
    return json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": V, "hidden_size": E,
                       "num_hidden_layers": 1, "num_attention_heads": H, "num_key_value_heads": HKV,
                       "intermediate_size": F, "max_position_embeddings": CTX, "rms_norm_eps": 1e-5,
                       "rope_theta": 10000.0, "tie_word_embeddings": False, "hidden_act": "silu"}, indent=1)


def imatrix_dat():
    out = struct.pack("<i", 2)
    for name, n in [("blk.0.attn_q.weight", E), ("blk.0.ffn_down.weight", F)]:
        out += struct.pack("<i", len(name)) + name.encode() + struct.pack("<ii", 3, n) + f32([0.5 + i for i in range(n)])
    return out + struct.pack("<ii", 3, 4) + b"text"


def imatrix_gguf():
    kvs = [("general.type", 8, gguf_str(b"imatrix")), ("imatrix.chunk_count", 4, struct.pack("<I", 3))]
    ts = [(b"blk.0.attn_q.weight.in_sum2", [E, 1], 0, f32([1.0 + i for i in range(E)])),
          (b"blk.0.attn_q.weight.counts", [1, 1], 0, f32([3.0])),
          (b"blk.0.ffn_up.weight.in_sum2", [E, 2], 0, f32([0.25 * i for i in range(2 * E)])),
          (b"blk.0.ffn_up.weight.counts", [1, 2], 0, f32([2.0, 0.0]))]
    write_gguf("/tmp/lb_seed_im.gguf", kvs, ts)
    with open("/tmp/lb_seed_im.gguf", "rb") as f:
        return f.read()


def small_spm():
    """spm_bpe's tokenizer.json cut to its first 400 tokens and the merges among them"""
    with open("tests/golden/conformance/tokenizers/spm_bpe/tokenizer.json") as f:
        d = json.load(f)
    vocab = {k: v for k, v in d["model"]["vocab"].items() if v < 400}
    d["model"]["vocab"] = vocab
    d["model"]["merges"] = [m for m in d["model"]["merges"] if m[0] in vocab and m[1] in vocab and m[0] + m[1] in vocab]
    d["added_tokens"] = [a for a in d["added_tokens"] if a["id"] < 400]
    return json.dumps(d, ensure_ascii=False)


def main():
    model, st, cfg = gguf_model(), safetensors_model(), hf_config()
    put("model", "llama.gguf", model)
    put("model", "llama_hf", cfg.encode() + b"\n--safetensors--\n" + st)
    put("gguf", "llama.gguf", model)
    put("gguf", "imatrix.gguf", imatrix_gguf())
    put("safetensors", "model.safetensors", st)
    put("safetensors", "config.json", cfg)
    put("imatrix", "legacy.dat", imatrix_dat())
    put("imatrix", "imatrix.gguf", imatrix_gguf())
    with open("tests/golden/conformance/tokenizers/gpt2_512/tokenizer.json", "rb") as f:
        gpt2 = f.read()
    put("tokenizer", "gpt2_512.json", gpt2)
    put("tokenizer", "gpt2_512_config.json", gpt2 + b"\n--config--\n" +
        json.dumps({"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "add_bos_token": True}).encode())
    put("tokenizer", "spm_400.json", small_spm())
    put("text", "ascii.txt", "The kernel's driver: call foo(bar) at 0x1f, then return -1;\n\n  indented\ttab\n")
    put("text", "unicode.txt", "café naïve — 中文 日本語 한국어 😀👍🏽 ﬁ Ångström\u00a0nbsp\r\n")
    put("text", "special.txt", "<|endoftext|><s>[INST] hi </s><|im_start|>user\n<|im_end|>   ")
    put("text", "digits.txt", "1234567890 3.14159 1,000,000 $42.00 2024-12-04T16:49:00Z")


if __name__ == "__main__":
    main()
