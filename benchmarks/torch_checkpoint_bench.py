"""torch.save / torch.load of a GPT's weights and AdamW state, the peer of checkpoint_bench.cpp
(same model sizes: nanoGPT's GPT from tests/reference/gen_gpt.py, one AdamW step first).

    /opt/peers/bin/python benchmarks/torch_checkpoint_bench.py [--layers 8 --embd 512 \
        --dir /tmp/smp_checkpoint_bench --reps 3]

Prints the median seconds and MiB/s of torch.save (followed by os.fsync, as libsmp flushes)
and of torch.load.
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "reference"))
from gen_gpt import GPT  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--embd", type=int, default=512)
    p.add_argument("--dir", default="/tmp/smp_checkpoint_bench")
    p.add_argument("--reps", type=int, default=3)
    a = p.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    torch.manual_seed(1)
    net = GPT(256, 128, a.layers, 8, a.embd)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    x = torch.randint(0, 256, (1, 16))
    net(x, x)[1].backward()
    opt.step()
    state = {"model": net.state_dict(), "optimizer": opt.state_dict()}
    nbytes = sum(t.numel() * t.element_size() for t in net.parameters()) * 3
    path = os.path.join(a.dir, "torch.pt")
    w, r = [], []
    for _ in range(a.reps):
        t0 = time.perf_counter()
        with open(path, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        w.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        torch.load(path)
        r.append(time.perf_counter() - t0)
    mib = nbytes / 2**20
    ws, rs = sorted(w)[len(w) // 2], sorted(r)[len(r) // 2]
    print(f"torch {torch.__version__}: {mib:.1f} MiB; torch.save {ws:.3f} s ({mib / ws:.0f} MiB/s), "
          f"torch.load {rs:.3f} s ({mib / rs:.0f} MiB/s)")


if __name__ == "__main__":
    main()
