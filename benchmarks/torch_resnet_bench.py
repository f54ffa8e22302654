"""PyTorch 1.13 training throughput of torchvision's ResNet-18, the baseline for `resnet18`.

Same recipe as `resnet18 --dataset fashion-mnist --image-size 64 --batch-size 32`:
Fashion-MNIST images resized bilinearly to SIZE x SIZE inside the timed loop, the one
channel replicated to 3, normalised with (0.2860, 0.3530), resnet18(num_classes=10), SGD
lr 1e-3 momentum 0.9, cross-entropy, CPU. Times N steps after W warm-up steps; prints
samples/s and peak RSS. Run with /usr/bin/python3.

  /usr/bin/python3 benchmarks/torch_resnet_bench.py --threads 2 --steps 20 [--json FILE]
"""
import argparse
import json
import os
import resource
import time

import torch
import torch.nn.functional as F
import torchvision

from torch_mnist_bench import read_idx


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--json")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    images = read_idx(os.path.join(args.data, "train-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(args.data, "train-labels-idx1-ubyte.gz")).long()
    n, b, s = images.shape[0], args.batch_size, args.image_size
    model = torchvision.models.resnet18(num_classes=10)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    model.train()
    order = torch.randperm(n)

    def step(i):
        idx = order[(i * b) % (n - b):(i * b) % (n - b) + b]
        x = (images[idx].float().unsqueeze(1) / 255.0 - 0.2860) / 0.3530
        x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False)
        x = x.expand(-1, 3, -1, -1).contiguous()
        opt.zero_grad()
        loss = F.cross_entropy(model(x), labels[idx])
        loss.backward()
        opt.step()
        return loss.item()

    for i in range(args.warmup):
        step(i)
    t0 = time.perf_counter()
    for i in range(args.warmup, args.warmup + args.steps):
        loss = step(i)
    secs = time.perf_counter() - t0
    res = {"framework": f"torch {torch.__version__}", "threads": args.threads,
           "steps": args.steps, "batch_size": b, "image_size": s, "train_seconds": secs,
           "samples_per_second": args.steps * b / secs, "final_loss": loss,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    print(f"torch resnet18: {args.steps} steps x {b} at {s}x{s} in {secs:.2f} s = "
          f"{res['samples_per_second']:.1f} samples/s, {args.threads} threads, "
          f"peak RSS {res['peak_rss_mb']:.0f} MB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
