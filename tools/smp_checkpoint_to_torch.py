#!/usr/bin/env python3
"""Converts a libsmp checkpoint (smp::save_checkpoint, docs/checkpoints.md) to PyTorch files:
the model as one state dict and the optimizer state in torch.optim's own layout.

    python3 tools/smp_checkpoint_to_torch.py CKPT_DIR [--tag TAG] --model model.pt \
        [--optimizer optimizer.pt]

Any layout (partial or full, any pp x tp x dp): every tensor is put together from the slices
the manifest lists, as resume_from_checkpoint does. The optimizer state keyed by parameter
name ("state.<param>.<buffer>") becomes {"state": {i: {...}}, "param_groups": [...]} with i the
parameter's index in model.parameters() order (the manifest's "parameters"), so
torch.optim.<Optimizer>(model.parameters()).load_state_dict(torch.load("optimizer.pt")) takes
it. Needs only torch (Debian's python3-torch 1.13 or later); the CRC-32 of every file is
checked.
"""
import argparse
import json
import os
import struct
import zlib

import torch

_DTYPES = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16,
           "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8,
           "BOOL": torch.bool}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, d in header.items():
        if name == "__metadata__":
            continue
        a, b = d["data_offsets"]
        dtype = _DTYPES[d["dtype"]]
        buf = bytearray(raw[base + a:base + b])
        t = torch.frombuffer(buf, dtype=dtype) if b > a else torch.empty(0, dtype=dtype)
        out[name] = t.reshape(d["shape"]).clone()
    return out


def assemble(ckpt, manifest, prefix):
    """Every tensor of the files whose name starts with prefix, whole."""
    full, cache = {}, {}
    for fname, entry in manifest["files"].items():
        if not fname.startswith(prefix):
            continue
        path = os.path.join(ckpt, fname)
        with open(path, "rb") as f:
            data = f.read()
        if zlib.crc32(data) != entry["crc32"] or len(data) != entry["bytes"]:
            raise SystemExit(f"{path}: size or CRC-32 does not match the manifest")
        cache[fname] = read_safetensors(path)
        for key, d in entry["tensors"].items():
            piece = cache[fname][key]
            if key not in full:
                full[key] = torch.zeros(d["global_shape"], dtype=piece.dtype)
            t = full[key]
            if "shard" not in d:
                t.copy_(piece)
                continue
            s = d["shard"]
            dim, blocks = s["dim"], s["blocks"]
            block = t.shape[dim] // blocks
            part = block // s["parts"]
            local = piece.shape[dim] // blocks
            for b in range(blocks):
                t.narrow(dim, b * block + s["index"] * part, part).copy_(
                    piece.narrow(dim, b * local, local))
    return full


def main():
    p = argparse.ArgumentParser()
    p.add_argument("path")
    p.add_argument("--tag")
    p.add_argument("--model", required=True)
    p.add_argument("--optimizer")
    a = p.parse_args()
    tag = a.tag or open(os.path.join(a.path, "newest")).read().strip()
    ckpt = os.path.join(a.path, tag)
    manifest = json.load(open(os.path.join(ckpt, "manifest.json")))
    if manifest.get("format") != "libsmp-checkpoint":
        raise SystemExit(f"{ckpt}: not a libsmp checkpoint")
    torch.save(assemble(ckpt, manifest, "model"), a.model)
    if a.optimizer:
        flat = assemble(ckpt, manifest, "optimizer")
        index = {name: i for i, name in enumerate(manifest["parameters"])}
        state, groups = {}, {}
        for key, t in flat.items():
            if key.startswith("param_groups."):
                _, g, option = key.split(".", 2)
                groups.setdefault(int(g), {})[option] = t.item()
                continue
            name, buffer = key[len("state."):].rsplit(".", 1)
            entry = state.setdefault(index[name], {})
            # torch.optim keeps Adam's step as a float tensor, the others' as a number.
            entry[buffer] = t.to(torch.float32) if buffer == "step" else t
        param_groups = []
        for g in sorted(groups):
            o = groups[g]
            if "betas0" in o:
                o["betas"] = (o.pop("betas0"), o.pop("betas1"))
            for flag in ("amsgrad", "nesterov", "maximize"):
                if flag in o:
                    o[flag] = bool(o[flag])
            o["params"] = list(range(len(manifest["parameters"]))) if len(groups) == 1 else []
            param_groups.append(o)
        torch.save({"state": state, "param_groups": param_groups}, a.optimizer)
    print(f"{ckpt}: wrote {a.model}" + (f" and {a.optimizer}" if a.optimizer else ""))


if __name__ == "__main__":
    main()
