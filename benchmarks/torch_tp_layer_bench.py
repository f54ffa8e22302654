"""PyTorch's own tensor parallelism (torch.distributed.tensor.parallel, gloo on CPU) on one
nanoGPT-style transformer layer: the peer of tp_layer_bench.cpp, same sizes and threads.

Needs PyTorch 2.x (not Debian's 1.13), e.g.
    python3 -m venv /opt/peers && /opt/peers/bin/pip install torch numpy
    /opt/peers/bin/python benchmarks/torch_tp_layer_bench.py --tp 2 [--batch 8 --seq 128 \
        --embd 512 --heads 8 --steps 20 --threads 1]

The plan is Megatron's, as libsmp's DistributedTransformerLayer with prescaled_batch: q, k, v
and c_fc ColwiseParallel, the two c_proj RowwiseParallel, layer norms replicated, every rank
holding the same input. q, k and v are separate Linears here so that a column shard is whole
heads (DTensor would split a fused [3C, C] weight across q/k/v). Prints the median step time
over steps, the slowest rank's.
"""
import argparse
import math
import os
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, c, heads):
        super().__init__()
        self.hd = c // heads
        self.ln_1 = nn.LayerNorm(c)
        self.q, self.k, self.v = nn.Linear(c, c), nn.Linear(c, c), nn.Linear(c, c)
        self.c_proj = nn.Linear(c, c)
        self.ln_2 = nn.LayerNorm(c)
        self.c_fc = nn.Linear(c, 4 * c)
        self.mlp_proj = nn.Linear(4 * c, c)

    def attention(self, h):
        b, t, _ = h.shape
        q, k, v = self.q(h), self.k(h), self.v(h)
        heads = q.shape[-1] // self.hd  # this rank's heads once sharded
        q, k, v = (z.view(b, t, heads, self.hd).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.hd))
        mask = torch.ones(t, t, dtype=torch.bool).tril()
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, heads * self.hd)
        return self.c_proj(y)

    def forward(self, x):
        x = x + self.attention(self.ln_1(x))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))


def worker(rank, args):
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29517")
    dist.init_process_group("gloo", rank=rank, world_size=args.tp)
    torch.set_num_threads(args.threads)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor.parallel import (ColwiseParallel, RowwiseParallel,
                                                   parallelize_module)

    mesh = init_device_mesh("cpu", (args.tp,))
    torch.manual_seed(1)
    block = Block(args.embd, args.heads)
    plan = {"q": ColwiseParallel(), "k": ColwiseParallel(), "v": ColwiseParallel(),
            "c_proj": RowwiseParallel(), "c_fc": ColwiseParallel(),
            "mlp_proj": RowwiseParallel()}
    block = parallelize_module(block, mesh, plan)
    torch.manual_seed(2)
    x = torch.randn(args.batch, args.seq, args.embd, requires_grad=True)
    times = []
    for s in range(args.steps + 3):
        block.zero_grad()
        dist.barrier()
        t0 = time.perf_counter()
        block(x).sum().backward()
        dt = time.perf_counter() - t0
        if s >= 3:
            times.append(dt)
    med = torch.tensor([sorted(times)[len(times) // 2]])
    dist.all_reduce(med, op=dist.ReduceOp.MAX)
    if rank == 0:
        print(f"torch {torch.__version__} DTensor TP: tp {args.tp}, B {args.batch} T {args.seq} "
              f"C {args.embd} heads {args.heads}, {args.threads} threads: "
              f"forward+backward {med.item() * 1e3:.2f} ms (median of {args.steps}, slowest rank)")
    dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tp", type=int, default=2)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--embd", type=int, default=512)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    mp.spawn(worker, args=(args,), nprocs=args.tp)


if __name__ == "__main__":
    main()
