"""Helpers for the golden-file generators (run with Debian's python3-torch: /usr/bin/python3).

Each gen_<family>.py builds a dict name -> torch.Tensor and calls save(); the C++ tests read
the files with smp::load_safetensors. The writer is our own (the safetensors package is not
in Debian): 8-byte little-endian header length, JSON header, raw little-endian data.
"""
import json
import os
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F

GOLDEN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden")

_DTYPES = {
    torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL",
}


def save(name, tensors, metadata=None):
    """Writes tests/golden/<name>.safetensors with the tensors sorted by key."""
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for key in sorted(tensors):
        t = tensors[key].detach().contiguous().cpu()
        data = t.view(torch.int16).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes()
        header[key] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape),
                       "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)  # align data to 8 bytes, as safetensors does
    os.makedirs(GOLDEN_DIR, exist_ok=True)
    path = os.path.join(GOLDEN_DIR, name + ".safetensors")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)
    print(f"wrote {path}: {len(tensors)} tensors, {offset} bytes of data")


def seeded(seed=0):
    torch.manual_seed(seed)
    torch.set_default_dtype(torch.float32)


def op_case(out, name, fn, *inputs):
    """Runs fn on copies of inputs and stores name.in<i>, .out, .gout (a random cotangent) and
    .grad<i> — the layout tests/common/op_test_utils.h's expect_golden reads."""
    inputs = [x.clone().requires_grad_(True) for x in inputs]
    y = fn(*inputs)
    gout = torch.randn_like(y)
    y.backward(gout)
    for i, x in enumerate(inputs):
        out[f"{name}.in{i}"] = x.detach()
        out[f"{name}.grad{i}"] = x.grad
    out[f"{name}.out"] = y.detach()
    out[f"{name}.gout"] = gout


class MnistNet(nn.Module):
    """pytorch/examples mnist/main.py's Net (smp::nn::MnistNet); dropout=False sets p = 0."""

    def __init__(self, dropout=True):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25 if dropout else 0.0)
        self.dropout2 = nn.Dropout(0.5 if dropout else 0.0)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)
