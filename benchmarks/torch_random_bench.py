"""PyTorch 1.13's CPU random fills, the peer of `engine_bench --benchmark_filter=Random` (same calls and
sizes, median of R runs after one warm-up). Run with Debian's torch: /usr/bin/python3.

  /usr/bin/python3 benchmarks/torch_random_bench.py [--threads T] [--reps R]
"""
import argparse
import time

import torch
import torch.nn.functional as F


def median_ms(reps, f):
    f()
    t = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        t.append(time.perf_counter() - t0)
    return sorted(t)[len(t) // 2] * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    act, hidden, big = torch.randn(64, 64, 12, 12), torch.randn(64, 128), torch.empty(1 << 20)
    r = args.reps
    print(f"random (median of {r}, ms): "
          f"dropout 64x64x12x12 p=0.25 {median_ms(r, lambda: F.dropout(act, 0.25, True)):.3f}, "
          f"dropout 64x128 p=0.5 {median_ms(r, lambda: F.dropout(hidden, 0.5, True)):.3f}, "
          f"uniform_ 1M {median_ms(r, lambda: big.uniform_()):.3f}, "
          f"normal_ 1M {median_ms(r, lambda: big.normal_()):.3f}, "
          f"bernoulli_ 1M {median_ms(r, lambda: big.bernoulli_(0.5)):.3f}")


if __name__ == "__main__":
    main()
