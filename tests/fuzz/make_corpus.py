#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into tests/fuzz/corpus/<target>/.

Run from anywhere: python3 tests/fuzz/make_corpus.py. Standard library only. The seeds are
small valid inputs, so the fuzzers start from files the readers accept: safetensors files of
every dtype, IDX files raw and gzip, the repository's config and distribution JSON files (examples/configs, tests/ddp/configs,
tests/parallel/configs), and
the test images of tests/data/files. Re-running rewrites the same bytes.
"""
import base64
import gzip
import json
import shutil
import struct
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fuzz" / "corpus"


def target(name):
    d = OUT / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


def safetensors(tensors, metadata=None):
    """tensors: list of (name, dtype, shape, raw bytes), laid out in order."""
    header, data = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


def write_safetensors():
    d = target("fuzz_safetensors")
    f32 = struct.pack("<6f", 0.5, -1.0, 2.0, 3.25, 0.0, -0.0)
    (d / "f32_2x3.safetensors").write_bytes(safetensors([("w", "F32", [2, 3], f32)]))
    (d / "all_dtypes.safetensors").write_bytes(safetensors([
        ("a_f64", "F64", [2], struct.pack("<2d", 1.0, -2.5)),
        ("b_f16", "F16", [3], struct.pack("<3H", 0x3C00, 0xC000, 0x7C00)),
        ("c_bf16", "BF16", [2], struct.pack("<2H", 0x3F80, 0xBF80)),
        ("d_i64", "I64", [2], struct.pack("<2q", -7, 1 << 40)),
        ("e_i32", "I32", [1, 2], struct.pack("<2i", 3, -4)),
        ("f_u8", "U8", [4], bytes([0, 1, 127, 255])),
        ("g_bool", "BOOL", [3], bytes([0, 1, 1])),
        ("h_scalar", "F32", [], struct.pack("<f", 9.0)),
        ("i_empty", "F32", [0, 4], b""),
    ], metadata={"format": "pt", "step": "3"}))
    (d / "metadata_only.safetensors").write_bytes(safetensors([], metadata={"k": "v"}))
    # Offsets not 8-aligned: the reader copies instead of viewing.
    (d / "misaligned.safetensors").write_bytes(safetensors([
        ("a", "U8", [3], b"abc"), ("b", "F32", [2], struct.pack("<2f", 1.0, 2.0))]))


def idx(magic, dims, payload):
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", n) for n in dims) + payload


def write_idx():
    d = target("fuzz_idx")
    labels = idx(0x0801, [5], bytes([3, 1, 4, 1, 5]))
    images = idx(0x0803, [2, 3, 4], bytes(range(24)))
    matrix = idx(0x0802, [2, 2], bytes([9, 8, 7, 6]))
    (d / "labels-idx1-ubyte").write_bytes(labels)
    (d / "images-idx3-ubyte").write_bytes(images)
    (d / "matrix-idx2-ubyte").write_bytes(matrix)
    (d / "empty-idx1-ubyte").write_bytes(idx(0x0801, [0], b""))
    # mtime=0: the same bytes on every run.
    (d / "labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels, mtime=0))
    (d / "images-idx3-ubyte.gz").write_bytes(gzip.compress(images, mtime=0))


def write_json():
    configs = sorted((ROOT / "tests" / "ddp" / "configs").glob("*.json"))
    distributions = sorted((ROOT / "examples" / "configs").glob("*.json"))
    d = target("fuzz_config")
    for f in configs:
        shutil.copy(f, d / f.name)
    # The parameters of each distribution file, as smprun hands them to every rank.
    for f in distributions:
        params = json.loads(f.read_text())["smdistributed"]["modelparallel"].get("parameters", {})
        (d / ("params_" + f.name)).write_text(json.dumps(params))
    (d / "every_key.json").write_text(json.dumps({
        "pipeline_parallel_degree": 2, "microbatches": 4, "pipeline": "simple",
        "optimize": "memory", "placement_strategy": "spread", "auto_partition": False,
        "default_partition": 1, "memory_weight": 0.5, "ddp": True, "ddp_port": None,
        "ddp_dist_backend": None, "active_microbatches": 3, "comm_timeout": 15.5,
        "trace_dir": "/tmp/t"}))
    d = target("fuzz_distribution")
    # The examples, and smprun's test files (good and bad).
    for f in distributions + sorted((ROOT / "tests" / "parallel" / "configs").glob("*.json")):
        shutil.copy(f, d / (f.parent.parent.name + "_" + f.name))


def png(width, height, bit_depth, color_type, samples, pixel, interlace=False):
    """A PNG whose pixel (x, y) has the `samples` channel values pixel(x, y), filter 0."""
    bits = bit_depth * samples

    def scanlines(xs, ys):
        out = b""
        for y in ys:
            row, acc, n = b"\0", 0, 0
            for x in xs:
                for v in pixel(x, y):
                    acc, n = (acc << bit_depth) | v, n + bit_depth
                    while n >= 8:
                        row += bytes([(acc >> (n - 8)) & 0xFF])
                        n -= 8
            if n:
                row += bytes([(acc << (8 - n)) & 0xFF])
            out += row
        return out

    if interlace:  # Adam7: (x0, y0, dx, dy) per pass; empty passes have no rows
        raw = b""
        for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4),
                               (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)):
            xs, ys = range(x0, width, dx), range(y0, height, dy)
            if len(xs) and len(ys):
                raw += scanlines(xs, ys)
    else:
        raw = scanlines(range(width), range(height))
    assert bits

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, int(interlace))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b""))


def write_images():
    files = ROOT / "tests" / "data" / "files"
    for name, ext in (("fuzz_jpeg", ".jpg"), ("fuzz_png", ".png")):
        d = target(name)
        for f in sorted(files.glob("*" + ext)):
            shutil.copy(f, d / f.name)
    d = OUT / "fuzz_png"
    # What the test images lack: 16-bit samples, Adam7 interlacing, 2-bit gray, gray + alpha.
    (d / "rgb16_interlaced.png").write_bytes(
        png(5, 3, 16, 2, 3, lambda x, y: (x * 9000, y * 20000, 65535 - x * y), interlace=True))
    (d / "gray2.png").write_bytes(png(7, 2, 2, 0, 1, lambda x, y: ((x + y) % 4,)))
    (d / "gray_alpha.png").write_bytes(png(3, 3, 8, 4, 2, lambda x, y: (x * 80, 255 - y * 100)))
    # fuzz_png's finding of 2026-12-03: after IHDR, an sCAL chunk declaring 1.9 GB in a 46-byte
    # file; libpng allocated and zeroed the declared length (2 GB RSS) before finding the file
    # short. Under the seeds test's 2 GB RSS limit it fails unless the reader skips the chunk.
    (d / "huge_scal_chunk.png").write_bytes(
        base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAA0AAAAKCAMAAABYMCT2c0JJVHNDQUznu8SJUA=="))


if __name__ == "__main__":
    write_safetensors()
    write_idx()
    write_json()
    write_images()
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"{OUT}: {sum(1 for f in OUT.rglob('*') if f.is_file())} files, {total} bytes")
