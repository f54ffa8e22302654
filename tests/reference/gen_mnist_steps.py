"""Golden weights for the mnist program's equivalence test (run with /usr/bin/python3).

Builds the PyTorch MNIST example's CNN (the layout of smp::nn::MnistNet), seeds it, saves its
initial weights to tests/golden/mnist_init.safetensors, then runs 20 SGD steps (lr 0.01,
momentum 0.9, batch 64, no shuffle: the first 1280 Fashion-MNIST training images in file
order, normalised as (x/255 - 0.1307)/0.3081, nll_loss mean) and saves the final weights to
tests/golden/mnist_sgd20.safetensors. Dropout is off (the model has no other train/eval
difference), matching `mnist --dropout off`. Each file is ~4.8 MB: fc1 alone is 9216x128.
"""
import gzip
import os
import struct
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden_common import MnistNet, save, seeded  # noqa: E402

DATA = "/usr/share/datasets/fashion-mnist"
STEPS, BATCH, LR, MOMENTUM = 20, 64, 0.01, 0.9



def read_idx(name, count):
    with gzip.open(os.path.join(DATA, name), "rb") as f:
        magic = struct.unpack(">I", f.read(4))[0]
        ndim = magic & 0xFF
        dims = struct.unpack(">" + "I" * ndim, f.read(4 * ndim))
        item = 1
        for d in dims[1:]:
            item *= d
        raw = f.read(count * item)
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).reshape(count, *dims[1:])


def main():
    seeded(0)
    n = STEPS * BATCH
    images = read_idx("train-images-idx3-ubyte.gz", n).float().unsqueeze(1)
    labels = read_idx("train-labels-idx1-ubyte.gz", n).long()
    x_all = (images / 255.0 - 0.1307) / 0.3081

    model = MnistNet(dropout=False)
    save("mnist_init", dict(model.state_dict()))
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    model.train()
    losses = []
    for step in range(STEPS):
        x = x_all[step * BATCH:(step + 1) * BATCH]
        y = labels[step * BATCH:(step + 1) * BATCH]
        opt.zero_grad()
        loss = F.nll_loss(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    print("losses:", " ".join(f"{v:.6f}" for v in losses))
    save("mnist_sgd20", dict(model.state_dict()),
         metadata={"final_loss": f"{losses[-1]:.9g}", "first_loss": f"{losses[0]:.9g}"})
    example_steps()


def example_steps(seed=1, steps=3):
    """The PyTorch example as written, seed 1, for 3 steps: DataLoader(shuffle=True), dropout
    on, Adadelta lr 1.0. `mnist --seed 1 --steps 3` must end at the same weights, which it does
    only if the initial weights, the shuffle and every dropout mask came out of the generator
    as torch's did. fc1.weight (4.7 MB) is left out: every other tensor already depends on
    all of those draws. Writes tests/golden/mnist_seed1_steps3.safetensors."""
    torch.manual_seed(seed)
    images = read_idx("train-images-idx3-ubyte.gz", 60000).float().unsqueeze(1)
    labels = read_idx("train-labels-idx1-ubyte.gz", 60000).long()
    x_all = (images / 255.0 - 0.1307) / 0.3081
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x_all, labels),
                                         batch_size=BATCH, shuffle=True)
    model = MnistNet()
    opt = torch.optim.Adadelta(model.parameters(), lr=1.0)
    model.train()
    for step, (x, y) in enumerate(loader):
        if step == steps:
            break
        opt.zero_grad()
        loss = F.nll_loss(model(x), y)
        loss.backward()
        opt.step()
    weights = {k: v for k, v in model.state_dict().items() if k != "fc1.weight"}
    save("mnist_seed1_steps3", weights, metadata={"final_loss": f"{loss.item():.9g}"})


if __name__ == "__main__":
    main()
