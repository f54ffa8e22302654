"""PyTorch baseline for engine_bench's conv2d case (MNIST CNN conv2, forward+backward).

    /usr/bin/python3 benchmarks/torch_conv_bench.py --threads N [--reps R]
"""
import argparse
import time

import torch
import torch.nn.functional as F


def median_seconds(reps, f):
    f()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--reps", type=int, default=10)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(64, 32, 26, 26, requires_grad=True)
    w = (torch.randn(64, 32, 3, 3) * 0.05).requires_grad_(True)
    b = torch.zeros(64, requires_grad=True)
    gout = torch.randn(64, 64, 24, 24)

    def fwd():
        with torch.no_grad():
            F.conv2d(x, w, b)

    def both():
        F.conv2d(x, w, b).backward(gout)

    print(f"threads: {torch.get_num_threads()} (torch {torch.__version__}, "
          f"mkldnn {torch.backends.mkldnn.is_available()})")
    f, fb = median_seconds(args.reps, fwd), median_seconds(args.reps, both)
    print(f"conv2d 64x32x26x26 * 64x32x3x3 (median of {args.reps}): forward {f * 1e3:.2f} ms, "
          f"forward+backward {fb * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
