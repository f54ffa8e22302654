"""Golden file for tests/engine/safetensors_test.cpp: /usr/bin/python3 tests/reference/gen_safetensors.py

Writes tests/golden/safetensors_reference.safetensors: one tensor per dtype (plus a 0-dim, a
zero-size and a dotted state_dict-style name) whose values are arange-based, so the C++ test
recomputes them exactly. The C++ test also saves the same tensors and checks the bytes equal
this file. Here an independent reader (torch.frombuffer over the raw layout) reads the file
back. Also writes tests/golden/safetensors_other_layout.safetensors, the same tensors laid out
the way other writers may do it (unpadded header, unaligned offsets, another data order),
which the C++ loader must accept too.
"""
import json
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden_common  # noqa: E402

NAME = "safetensors_reference"
OTHER = "safetensors_other_layout"
METADATA = {"format": "pt", "producer": "gen_safetensors.py"}

_FROM_NAME = {
    "F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8, "BOOL": torch.bool,
}


def reference_tensors():
    # Keep in sync with ReferenceTensors() in tests/engine/safetensors_test.cpp.
    return {
        "f32": torch.arange(12, dtype=torch.float32).reshape(3, 4) * 0.5 - 1.0,
        "f64": torch.arange(6, dtype=torch.float64) / 3.0,
        "f16": (torch.arange(8, dtype=torch.float32) * 0.25 - 1.0).to(torch.float16).reshape(2, 2, 2),
        "bf16": (torch.arange(-4, 4, dtype=torch.float32) * 0.5).to(torch.bfloat16),
        "i64": torch.arange(-3, 3, dtype=torch.int64) * 1000000000000,
        "i32": torch.arange(10, dtype=torch.int32).reshape(2, 5) - 5,
        "u8": torch.arange(250, 256, dtype=torch.int64).to(torch.uint8),
        "bool": torch.arange(3) % 2 == 0,  # 3 bytes: later offsets are unaligned in OTHER
        "scalar": torch.tensor(3.5, dtype=torch.float32),
        "empty": torch.zeros(0, 3, dtype=torch.float32),
        "layer1.0.conv1.weight": torch.arange(24, dtype=torch.float32).reshape(2, 3, 2, 2) / 8.0,
    }


def load(path):
    """Reads a safetensors file without golden_common's writer: (tensors, metadata)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    metadata = header.pop("__metadata__", {})
    out = {}
    for key, info in header.items():
        begin, end = info["data_offsets"]
        dtype = _FROM_NAME[info["dtype"]]
        chunk = bytearray(data[begin:end])
        if dtype == torch.bool:
            t = torch.frombuffer(chunk, dtype=torch.uint8).to(torch.bool) if chunk else torch.zeros(0, dtype=torch.bool)
        elif chunk:
            t = torch.frombuffer(chunk, dtype=dtype)
        else:
            t = torch.zeros(0, dtype=dtype)
        out[key] = t.reshape(info["shape"]).clone()
    return out, metadata


def write_other_layout(path, tensors):
    """A valid file laid out differently from ours: no header padding, a 3-byte tensor first so
    later offsets are unaligned, data in reverse-name order, keys in JSON in another order."""
    items = sorted(tensors.items(), key=lambda kv: (kv[0] != "bool", kv[0]))
    items = [items[0]] + list(reversed(items[1:]))  # "bool" first, the rest in reverse order
    header, blobs, offset = {}, [], 0
    for key, t in items:
        t = t.contiguous()
        data = t.view(torch.int16).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes()
        header[key] = {"data_offsets": [offset, offset + len(data)], "shape": list(t.shape),
                       "dtype": {v: k for k, v in _FROM_NAME.items()}[t.dtype]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = METADATA
    raw = json.dumps(header).encode()  # default separators: spaces, unpadded
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


def check_equal(got, want, what):
    assert sorted(got) == sorted(want), (what, sorted(got), sorted(want))
    for key in want:
        g, w = got[key], want[key]
        assert g.dtype == w.dtype and g.shape == w.shape and torch.equal(g, w), (what, key, g, w)


def main():
    tensors = reference_tensors()
    golden_common.save(NAME, tensors, METADATA)
    path = os.path.join(golden_common.GOLDEN_DIR, NAME + ".safetensors")
    got, meta = load(path)
    check_equal(got, tensors, path)
    assert meta == METADATA, meta
    other = os.path.join(golden_common.GOLDEN_DIR, OTHER + ".safetensors")
    write_other_layout(other, tensors)
    got, meta = load(other)
    check_equal(got, tensors, other)
    assert meta == METADATA, meta
    print(f"wrote {other}; both files read back with an independent reader")


if __name__ == "__main__":
    main()
