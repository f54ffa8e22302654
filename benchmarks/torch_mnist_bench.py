"""PyTorch 1.13 training throughput of the MNIST example's CNN, the baseline for `mnist`.

Same recipe as our program: Fashion-MNIST training images (uint8 in memory, batches
converted and normalised as (x/255 - 0.1307)/0.3081 inside the timed loop, shuffled),
batch 64, Adadelta lr 1.0, dropout on, CPU. Times N steps after W warm-up steps and prints
samples/s and the process's peak RSS (ru_maxrss). Run with Debian's torch: /usr/bin/python3.

  /usr/bin/python3 benchmarks/torch_mnist_bench.py --threads 2 --steps 200 [--json FILE]
"""
import argparse
import gzip
import json
import os
import resource
import struct
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    """pytorch/examples mnist/main.py's Net."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
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


def read_idx(path):
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        magic = struct.unpack(">I", f.read(4))[0]
        dims = struct.unpack(">" + "I" * (magic & 0xFF), f.read(4 * (magic & 0xFF)))
        raw = f.read()
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).reshape(*dims)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def example_epoch(args):
    """One epoch of pytorch/examples mnist/main.py as written: seed, DataLoader(shuffle=True)
    over the normalised images, Net(), Adadelta, train, test. The draws from the default
    generator come in the example's order, which `mnist --seed S` reproduces."""
    torch.manual_seed(args.seed)

    def dataset(images, labels):
        x = (images.float().unsqueeze(1) / 255.0 - 0.1307) / 0.3081  # ToTensor, Normalize
        return torch.utils.data.TensorDataset(x, labels.long())

    train_ds = dataset(read_idx(os.path.join(args.data, "train-images-idx3-ubyte.gz")),
                       read_idx(os.path.join(args.data, "train-labels-idx1-ubyte.gz")))
    test_ds = dataset(read_idx(os.path.join(args.data, "t10k-images-idx3-ubyte.gz")),
                      read_idx(os.path.join(args.data, "t10k-labels-idx1-ubyte.gz")))
    train_loader = torch.utils.data.DataLoader(train_ds, batch_size=args.batch_size, shuffle=True)
    test_loader = torch.utils.data.DataLoader(test_ds, batch_size=1000)
    model = Net()
    opt = torch.optim.Adadelta(model.parameters(), lr=1.0)
    model.train()
    t0 = time.perf_counter()
    for data, target in train_loader:
        opt.zero_grad()
        loss = F.nll_loss(model(data), target)
        loss.backward()
        opt.step()
    secs = time.perf_counter() - t0
    model.eval()
    correct = 0
    with torch.no_grad():
        for data, target in test_loader:
            correct += (model(data).argmax(1) == target).sum().item()
    print(f"torch mnist one epoch (seed {args.seed}): {secs:.1f} s, final loss {loss.item():.4f}, "
          f"test accuracy {correct / len(test_ds):.4f}, peak RSS {peak_rss_mb():.0f} MB")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--epoch", action="store_true",
                    help="instead: one epoch of the PyTorch example as written (DataLoader, "
                         "same draws as `mnist --seed S`), reporting test accuracy")
    ap.add_argument("--json", help="also write the figures as JSON here")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    if args.epoch:
        return example_epoch(args)
    torch.manual_seed(args.seed)
    images = read_idx(os.path.join(args.data, "train-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(args.data, "train-labels-idx1-ubyte.gz")).long()
    n = images.shape[0]
    model = Net()
    opt = torch.optim.Adadelta(model.parameters(), lr=1.0)
    model.train()
    order = torch.randperm(n)
    b = args.batch_size

    def step(i):
        idx = order[(i * b) % (n - b):(i * b) % (n - b) + b]
        x = ((images[idx].float().unsqueeze(1) / 255.0) - 0.1307) / 0.3081
        y = labels[idx]
        opt.zero_grad()
        loss = F.nll_loss(model(x), y)
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
           "steps": args.steps, "batch_size": b, "train_seconds": secs,
           "samples_per_second": args.steps * b / secs, "final_loss": loss,
           "peak_rss_mb": peak_rss_mb()}
    print(f"torch mnist: {args.steps} steps x {b} in {secs:.2f} s = "
          f"{res['samples_per_second']:.0f} samples/s, {args.threads} threads, "
          f"peak RSS {res['peak_rss_mb']:.0f} MB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
