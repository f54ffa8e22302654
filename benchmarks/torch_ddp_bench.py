"""PyTorch 1.13 DistributedDataParallel (gloo, CPU) peer for libsmp's data parallelism.

Two measurements, each with N processes on this machine, one thread per process:
  1. `mnist`-like training throughput: the MNIST example's CNN, Adadelta, batch B per rank on
     random data (the data path is not what is compared), samples/s over all ranks;
  2. the overlap figures of benchmarks/ddp_overlap.cpp: median step time of compute alone,
     of the gradient allreduces alone, and of DDP, and the hidden fraction
     (compute + comm - ddp) / comm.

  /usr/bin/python3 benchmarks/torch_ddp_bench.py --procs 2 --batch-size 16 --steps 100
"""
import argparse
import os
import statistics
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from torch_mnist_bench import Net


def timed(args, fn):
    times = []
    for s in range(args.steps + 3):
        dist.barrier()
        t0 = time.perf_counter()
        fn()
        if s >= 3:
            times.append(time.perf_counter() - t0)
    t = torch.tensor([statistics.median(times)], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.item()


def worker(rank, args):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(args.port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=args.procs)
    torch.manual_seed(1 + rank)
    x = torch.randn(args.batch_size, 1, 28, 28)
    y = torch.randint(0, 10, (args.batch_size,))

    plain = Net()
    plain.dropout1.p = plain.dropout2.p = 0.0
    popt = torch.optim.SGD(plain.parameters(), lr=0.01)

    def plain_step():
        popt.zero_grad()
        F.nll_loss(plain(x), y).backward()
        popt.step()

    t_compute = timed(args, plain_step)

    net = Net()
    net.dropout1.p = net.dropout2.p = 0.0
    ddp = torch.nn.parallel.DistributedDataParallel(net, bucket_cap_mb=args.bucket_cap_mb)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.01)

    def ddp_step():
        opt.zero_grad()
        F.nll_loss(ddp(x), y).backward()
        opt.step()

    t_ddp = timed(args, ddp_step)

    grads = [p.detach().clone().reshape(-1) for p in net.parameters()]
    flat = torch.cat(grads)

    def comm_step():
        dist.all_reduce(flat)

    t_comm = timed(args, comm_step)

    # Throughput with Adadelta, as `mnist` trains.
    net2 = Net()
    ddp2 = torch.nn.parallel.DistributedDataParallel(net2, bucket_cap_mb=args.bucket_cap_mb)
    opt2 = torch.optim.Adadelta(ddp2.parameters(), lr=1.0)
    for _ in range(5):
        opt2.zero_grad()
        F.nll_loss(ddp2(x), y).backward()
        opt2.step()
    dist.barrier()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        opt2.zero_grad()
        F.nll_loss(ddp2(x), y).backward()
        opt2.step()
    dist.barrier()
    secs = time.perf_counter() - t0
    if rank == 0:
        print(f"torch DDP (gloo): {args.procs} procs, batch {args.batch_size} per rank, "
              f"1 thread per rank, median of {args.steps} steps")
        print(f"  compute alone          {1e3 * t_compute:8.2f} ms")
        print(f"  allreduce alone        {1e3 * t_comm:8.2f} ms")
        print(f"  ddp                    {1e3 * t_ddp:8.2f} ms")
        hidden = (t_compute + t_comm - t_ddp) / t_comm
        print(f"  communication hidden   {100 * hidden:8.0f} %")
        sps = args.steps * args.batch_size * args.procs / secs
        print(f"  Adadelta training      {sps:8.0f} samples/s (all ranks)")
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--bucket-cap-mb", type=float, default=25)
    ap.add_argument("--port", type=int, default=29517)
    args = ap.parse_args()
    mp.spawn(worker, args=(args,), nprocs=args.procs)


if __name__ == "__main__":
    main()
