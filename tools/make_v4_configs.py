#!/usr/bin/env python3
"""Rewrite transformers-5 config.json files (rope_parameters, dtype) into the transformers-4 layout
(rope_theta at top level, rope_scaling, torch_dtype), as checkpoints saved by transformers 4 have them.

usage: make_v4_configs.py SRC_CONFIG DST_CONFIG
"""
import json
import sys


def to_v4(cfg):
    out = {k: v for k, v in cfg.items() if k not in ("rope_parameters", "dtype")}
    out["transformers_version"] = "4.46.0"
    rp = dict(cfg.get("rope_parameters") or {})
    if "dtype" in cfg:
        out["torch_dtype"] = cfg["dtype"]
    out["rope_theta"] = rp.pop("rope_theta", 10000.0)
    prf = rp.pop("partial_rotary_factor", None)
    if prf is not None:
        out["partial_rotary_factor"] = prf
    rtype = rp.get("rope_type", "default")
    out["rope_scaling"] = None if rtype == "default" else rp
    return out


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    with open(sys.argv[2], "w") as f:
        json.dump(to_v4(cfg), f, indent=2)
        f.write("\n")
