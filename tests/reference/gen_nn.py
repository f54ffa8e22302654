"""Golden values for the nn functional and indexing ops: /usr/bin/python3 tests/reference/gen_nn.py

Inputs, outputs and gradients (of sum(out * v) for a saved cotangent v) go to
tests/golden/nn.safetensors; tests/engine/nn_functional_test.cpp compares against them.
"""
import torch
import torch.nn.functional as F

from golden_common import save, seeded


def grads(out, inputs, prefix, g):
    """Backpropagates sum(out * v) and stores v and each input's gradient."""
    v = torch.randn(out.shape)
    out.backward(v)
    g[prefix + ".v"] = v
    for name, t in inputs.items():
        g[prefix + ".grad_" + name] = t.grad.clone()


def main():
    seeded(0)
    g = {}

    x = torch.randn(4, 5, requires_grad=True)
    g["softmax.x"] = x.detach().clone()
    g["softmax.dim1"] = F.softmax(x, 1).detach()
    g["softmax.dim0"] = F.softmax(x, 0).detach()
    out = F.log_softmax(x, -1)
    g["log_softmax.out"] = out.detach()
    grads(out, {"x": x}, "log_softmax", g)

    logp = F.log_softmax(torch.randn(6, 5), 1).requires_grad_()
    target = torch.tensor([0, 4, 2, -100, 1, 2])
    g["nll.input"] = logp.detach().clone()
    g["nll.target"] = target
    g["nll.none"] = F.nll_loss(logp, target, reduction="none").detach()
    g["nll.sum"] = F.nll_loss(logp, target, reduction="sum").detach()
    out = F.nll_loss(logp, target)
    g["nll.mean"] = out.detach()
    grads(out, {"input": logp}, "nll", g)

    logits = torch.randn(6, 5, requires_grad=True)
    g["ce.input"] = logits.detach().clone()
    out = F.cross_entropy(logits, target)
    g["ce.mean"] = out.detach()
    grads(out, {"input": logits}, "ce", g)

    a = torch.randn(3, 4, requires_grad=True)
    b = torch.randn(3, 4)
    g["mse.a"], g["mse.b"] = a.detach().clone(), b
    out = F.mse_loss(a, b)
    g["mse.mean"] = out.detach()
    grads(out, {"a": a}, "mse", g)

    x = torch.randn(3, 4, 6, requires_grad=True)
    w = torch.randn(6, requires_grad=True)
    bias = torch.randn(6, requires_grad=True)
    g["ln.x"], g["ln.w"], g["ln.b"] = x.detach().clone(), w.detach().clone(), bias.detach().clone()
    out = F.layer_norm(x, (6,), w, bias)
    g["ln.out"] = out.detach()
    grads(out, {"x": x, "w": w, "b": bias}, "ln", g)

    weight = torch.randn(10, 4, requires_grad=True)
    idx = torch.tensor([[1, 0, 3], [3, 9, 1]])
    g["emb.weight"], g["emb.idx"] = weight.detach().clone(), idx
    out = F.embedding(idx, weight, padding_idx=0)
    g["emb.out"] = out.detach()
    grads(out, {"weight": weight}, "emb", g)

    x = torch.randn(4, 5)
    idx = torch.tensor([3, 0, 3])
    g["index_select.x"], g["index_select.idx"] = x, idx
    g["index_select.out"] = torch.index_select(x, 1, idx)

    a, b = torch.randn(2, 3), torch.randn(2, 2).double()
    g["cat.a"], g["cat.b"] = a, b
    g["cat.out"] = torch.cat([a, b], 1)
    g["stack.out"] = torch.stack([a, a * 2], 1)

    cross_entropy_cases(g)
    save("nn", g)


def cross_entropy_cases(g):
    """Probability targets, class weights and label smoothing (PyTorch 1.13 semantics). Own
    seed, so the cases above keep their values."""
    torch.manual_seed(1)
    weight = torch.rand(5) + 0.5
    g["ce_ext.weight"] = weight
    # Index targets (N,C) with an ignored row, and (N,C,H,W) targets.
    x = torch.randn(6, 5)
    t = torch.tensor([0, 4, 2, -100, 1, 2])
    x4 = torch.randn(2, 5, 3, 2)
    t4 = torch.randint(0, 5, (2, 3, 2))
    t4[1, 0, 1] = -100
    # Probability targets (N,C) and (N,C,H,W).
    xp = torch.randn(4, 5)
    p = torch.softmax(torch.randn(4, 5), 1)
    xp4 = torch.randn(2, 5, 3, 2)
    p4 = torch.softmax(torch.randn(2, 5, 3, 2), 1)
    g["ce_ext.x"], g["ce_ext.t"], g["ce_ext.x4"], g["ce_ext.t4"] = x, t, x4, t4
    g["ce_ext.xp"], g["ce_ext.p"], g["ce_ext.xp4"], g["ce_ext.p4"] = xp, p, xp4, p4
    cases = {
        "idx": ("x", "t"),
        "idx4": ("x4", "t4"),
        "prob": ("xp", "p"),
        "prob4": ("xp4", "p4"),
    }
    # name -> (weighted, label_smoothing); every combination, each reduction.
    variants = {"plain": (False, 0.0), "w": (True, 0.0), "ls": (False, 0.1), "wls": (True, 0.1)}
    for cname, (xk, tk) in cases.items():
        for vname, (weighted, ls) in variants.items():
            for red in ("none", "sum", "mean"):
                if cname.startswith("idx") and vname == "plain":
                    continue  # covered by ce.* above
                key = f"ce_ext.{cname}.{vname}.{red}"
                inp = g[f"ce_ext.{xk}"].clone().requires_grad_()
                out = F.cross_entropy(inp, g[f"ce_ext.{tk}"], weight=weight if weighted else None,
                                      reduction=red, label_smoothing=ls)
                v = torch.randn(out.shape)
                out.backward(v)
                g[key + ".out"] = out.detach()
                g[key + ".v"] = v
                g[key + ".grad"] = inp.grad.clone()


if __name__ == "__main__":
    main()
