#!/usr/bin/env python3
"""Small malformed files for tests/cli/hardening.sh, made with the standard library only.

  badfiles.py poison FILE.safetensors TENSOR INDEX nan|inf      set one element of a tensor in place
  badfiles.py gguf-f32 FILE.gguf KEY VALUE                      overwrite a scalar f32 KV in place
  badfiles.py imatrix-gguf OUT NE0,NE1[,NE2...] [COUNTS]        a GGUF imatrix with one in_sum2 tensor
  badfiles.py imatrix-dat OUT NAME:N [NAME:N ...]               a legacy .dat imatrix (values 1.0)
  badfiles.py gguf-name OUT HEXNAME                             a GGUF holding one tensor of that name
"""
import json
import math
import struct
import sys

F16 = {"nan": b"\x00\x7e", "inf": b"\x00\x7c"}
BF16 = {"nan": b"\xc0\x7f", "inf": b"\x80\x7f"}
F32 = {"nan": struct.pack("<f", math.nan), "inf": struct.pack("<f", math.inf)}


def poison(path, tensor, index, what):
    with open(path, "r+b") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        t = header[tensor]
        size = {"F16": 2, "BF16": 2, "F32": 4}[t["dtype"]]
        value = {"F16": F16, "BF16": BF16, "F32": F32}[t["dtype"]][what]
        f.seek(8 + n + t["data_offsets"][0] + size * int(index))
        f.write(value)


# ---- GGUF ----

def gguf_str(s):
    return struct.pack("<Q", len(s)) + s


def skip_value(b, pos, vt):
    fixed = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    if vt in fixed:
        return pos + fixed[vt]
    if vt == 8:
        return pos + 8 + struct.unpack_from("<Q", b, pos)[0]
    et, n = struct.unpack_from("<IQ", b, pos)
    pos += 12
    for _ in range(n):
        pos = skip_value(b, pos, et)
    return pos


def gguf_f32(path, key, value):
    with open(path, "rb") as f:
        b = bytearray(f.read())
    n_kv = struct.unpack_from("<Q", b, 16)[0]
    pos = 24
    for _ in range(n_kv):
        kl = struct.unpack_from("<Q", b, pos)[0]
        k = bytes(b[pos + 8:pos + 8 + kl]).decode()
        pos += 8 + kl
        vt = struct.unpack_from("<I", b, pos)[0]
        pos += 4
        if k == key:
            if vt != 6:
                sys.exit(f"{key} has value type {vt}, not f32")
            struct.pack_into("<f", b, pos, float(value))
            with open(path, "wb") as f:
                f.write(b)
            return
        pos = skip_value(b, pos, vt)
    sys.exit(f"{key} not found")


def write_gguf(path, kvs, tensors):
    """kvs: [(key, type, packed value)]; tensors: [(name bytes, ne list, ggml type, data bytes)]"""
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    for k, vt, v in kvs:
        out += gguf_str(k.encode()) + struct.pack("<I", vt) + v
    offset, datas = 0, b""
    for name, ne, gt, data in tensors:
        out += gguf_str(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", x) for x in ne)
        out += struct.pack("<IQ", gt, offset)
        pad = (-len(data)) % 32
        datas += data + b"\0" * pad
        offset += len(data) + pad
    out += b"\0" * ((-len(out)) % 32)
    with open(path, "wb") as f:
        f.write(out + datas)


def imatrix_gguf(path, dims, counts=None):
    ne = [int(x) for x in dims.split(",")]
    n = math.prod(ne)
    n_mat = n // ne[0] if counts is None else int(counts)
    kvs = [("general.type", 8, gguf_str(b"imatrix")), ("imatrix.chunk_count", 4, struct.pack("<I", 1))]
    tensors = [(b"blk.0.attn_q.weight.in_sum2", ne, 0, struct.pack(f"<{n}f", *([1.0] * n))),
               (b"blk.0.attn_q.weight.counts", [1, n_mat], 0, struct.pack(f"<{n_mat}f", *([1.0] * n_mat)))]
    write_gguf(path, kvs, tensors)


def imatrix_dat(path, entries):
    out = struct.pack("<i", len(entries))
    for e in entries:
        name, n = e.rsplit(":", 1)
        n = int(n)
        out += struct.pack("<i", len(name)) + name.encode() + struct.pack("<ii", 1, n) + struct.pack(f"<{n}f", *([1.0] * n))
    out += struct.pack("<i", 1) + struct.pack("<i", 4) + b"test"
    with open(path, "wb") as f:
        f.write(out)


def gguf_name(path, hexname):
    kvs = [("general.architecture", 8, gguf_str(b"llama"))]
    write_gguf(path, kvs, [(bytes.fromhex(hexname), [32], 0, b"\0" * 128)])


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"poison": poison, "gguf-f32": gguf_f32, "imatrix-gguf": imatrix_gguf,
     "imatrix-dat": lambda p, *e: imatrix_dat(p, e), "gguf-name": gguf_name}[cmd](*args)
