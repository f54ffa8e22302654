"""Golden files for tests/nn (MnistNet and ResNet-18 vs PyTorch / torchvision).

Run: /usr/bin/python3 tests/reference/gen_nn_modules.py  → tests/golden/nn_mnist.safetensors,
tests/golden/nn_resnet18.safetensors.

Weights too large to store (MnistNet's fc1.weight, all of ResNet-18) are filled on both sides
with one deterministic formula, computed in float64 with the C library's sin/cos (Python's
math module here, std::sin/std::cos in C++) and rounded to float32. For the tensor number k
(position in named_parameters(), then named_buffers() order continues the count) with flat
index i:
  u = frac(sin(12.9898 * i + 78.233 * k) * 43758.5453)   (a hash, uniform-looking in [0, 1))
  r = 2 * u - 1
  weight of >= 2 dims:        sqrt(6 / fan_in) * r       (He-like scale keeps ResNet sane)
  batch-norm weight:          1 + 0.1 * r
  any other 1-dim parameter:  0.1 * r                    (biases)
  running_mean buffer:        0.1 * r
  running_var buffer:         1 + 0.5 * u
  num_batches_tracked:        0
(A smooth formula such as sin(0.1 i) makes neighbouring weights coherent and the network
ill-conditioned: activations and gradients explode and float32 noise dominates.)
Large results are stored as checksums (float64 [sum, sum of |x|, sqrt(sum of x²)]) plus the
elements at the flat indices (j * 7919 + 13) % numel for j = 0..15.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from golden_common import MnistNet, save, seeded

N_SAMPLES = 16


def hash_u(i, k):
    x = math.sin(12.9898 * i + 78.233 * k) * 43758.5453
    return x - math.floor(x)


def formula_values(n, k, kind, fan_in=1):
    u = [hash_u(i, k) for i in range(n)]
    if kind == "weight":
        a = math.sqrt(6.0 / fan_in)
        v = [a * (2 * x - 1) for x in u]
    elif kind == "bn_weight":
        v = [1.0 + 0.1 * (2 * x - 1) for x in u]
    elif kind in ("bias", "running_mean"):
        v = [0.1 * (2 * x - 1) for x in u]
    elif kind == "running_var":
        v = [1.0 + 0.5 * x for x in u]
    else:
        raise ValueError(kind)
    return torch.tensor(v, dtype=torch.float64).to(torch.float32)


def formula_fill(t, k, kind):
    fan_in = t[0].numel() if t.dim() >= 2 else 1
    with torch.no_grad():
        t.copy_(formula_values(t.numel(), k, kind, fan_in).view(t.shape))


def fill_model(model):
    """Fills every parameter and buffer of a model by the formula (see the docstring)."""
    bn_names = {n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    k = 0
    for name, p in model.named_parameters():
        owner, leaf = name.rsplit(".", 1)
        if p.dim() >= 2:
            formula_fill(p, k, "weight")
        elif owner in bn_names and leaf == "weight":
            formula_fill(p, k, "bn_weight")
        else:
            formula_fill(p, k, "bias")
        k += 1
    for name, b in model.named_buffers():
        leaf = name.rsplit(".", 1)[1]
        if leaf == "num_batches_tracked":
            b.zero_()
        else:
            formula_fill(b, k, leaf)
        k += 1


def checksum(t):
    f = t.detach().reshape(-1).to(torch.float64)
    return torch.tensor([f.sum().item(), f.abs().sum().item(), f.square().sum().sqrt().item()],
                        dtype=torch.float64)


def samples(t):
    f = t.detach().reshape(-1)
    idx = torch.tensor([(j * 7919 + 13) % f.numel() for j in range(N_SAMPLES)])
    return f[idx].to(torch.float32)


def put_summary(out, prefix, t):
    out[prefix + ".checksum"] = checksum(t)
    out[prefix + ".samples"] = samples(t)



def gen_mnist():
    seeded(0)
    net = MnistNet()
    net.eval()  # dropout off: the C++ side uses MnistNet(false)
    # fc1.weight (1.2M values) follows the formula; parameter number 4 in named_parameters.
    formula_fill(net.fc1.weight, 4, "weight")
    x = torch.rand(8, 1, 28, 28)
    x = (x - 0.1307) / 0.3081
    y = torch.randint(0, 10, (8,))
    out = net(x)
    loss = F.nll_loss(out, y)
    loss.backward()
    g = {"input": x, "target": y, "output": out, "loss": loss.detach()}
    for name, p in net.named_parameters():
        if name == "fc1.weight":
            put_summary(g, "grad." + name, p.grad)
        else:
            g["weight." + name] = p
            g["grad." + name] = p.grad
    save("nn_mnist", g)


def gen_resnet18():
    seeded(0)
    model = torchvision.models.resnet18(num_classes=10)
    # torchvision's initialisation from torch.manual_seed(0), before fill_model overwrites it:
    # smp::nn::ResNet18 built after smp::manual_seed(0) must hold the same weights.
    init = {}
    for name, p in model.named_parameters():
        put_summary(init, "init." + name, p.detach())
    fill_model(model)
    x = torch.randn(2, 3, 64, 64)
    y = torch.tensor([3, 7])
    g = {"input": x, "target": y}
    model.eval()
    with torch.no_grad():
        g["eval_output_before"] = model(x)
    model.train()
    out = model(x)
    loss = F.cross_entropy(out, y)
    loss.backward()
    g["train_output"] = out
    g["loss"] = loss.detach()
    lr = 0.1
    with torch.no_grad():
        for name, p in model.named_parameters():
            put_summary(g, "grad." + name, p.grad)
            p -= lr * p.grad
            put_summary(g, "updated." + name, p)
    for name, b in model.named_buffers():
        g["buffer." + name] = b
    model.eval()
    with torch.no_grad():
        g["eval_output_after"] = model(x)
    g.update(init)
    save("nn_resnet18", g)


if __name__ == "__main__":
    torch.set_num_threads(1)
    gen_mnist()
    gen_resnet18()
