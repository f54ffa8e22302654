"""Golden values for optim: /usr/bin/python3 tests/reference/gen_optim.py

Optimizer trajectories (parameters after each of 10 steps on a small fixed problem), LR
schedule sequences and clip_grad_norm_ results go to tests/golden/optim.safetensors;
tests/optim/*_test.cpp reproduce them.

The problem: two parameters p0 (3,4) and p1 (5), loss = sum(c·p²) + sum(tanh(d·p)), which
the C++ side computes through smp's autograd.
"""
import math

import torch

from golden_common import save, seeded

STEPS = 10


def loss_fn(params, cs, ds):
    return sum((c * p * p).sum() + torch.tanh(d * p).sum() for p, c, d in zip(params, cs, ds))


def trajectory(g, name, make, init, cs, ds, skip_p1_on_even=False):
    params = [t.clone().requires_grad_() for t in init]
    opt = make(params)
    traj = [[] for _ in params]
    for k in range(STEPS):
        opt.zero_grad()
        loss_fn(params, cs, ds).backward()
        if skip_p1_on_even and k % 2 == 0:
            params[1].grad = None
        opt.step()
        for i, p in enumerate(params):
            traj[i].append(p.detach().clone())
    for i, t in enumerate(traj):
        g[f"traj.{name}.p{i}"] = torch.stack(t)


def main():
    seeded(0)
    g = {}
    init = [torch.randn(3, 4), torch.randn(5)]
    cs = [torch.rand(3, 4) + 0.5, torch.rand(5) + 0.5]
    ds = [torch.randn(3, 4), torch.randn(5)]
    for i in range(2):
        g[f"problem.p{i}"], g[f"problem.c{i}"], g[f"problem.d{i}"] = init[i], cs[i], ds[i]

    S, A, AW, AD = torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.Adadelta
    cases = {
        "sgd_plain": lambda p: S(p, lr=0.1),
        "sgd_momentum": lambda p: S(p, lr=0.05, momentum=0.9),
        "sgd_nesterov": lambda p: S(p, lr=0.05, momentum=0.8, nesterov=True),
        "sgd_weight_decay": lambda p: S(p, lr=0.1, momentum=0.5, weight_decay=0.1),
        "sgd_dampening": lambda p: S(p, lr=0.05, momentum=0.9, dampening=0.3),
        "sgd_groups": lambda p: S([{"params": [p[0]], "lr": 0.2, "momentum": 0.9},
                                   {"params": [p[1]]}], lr=0.05),
        "adam_plain": lambda p: A(p, lr=0.1),
        "adam_betas": lambda p: A(p, lr=0.05, betas=(0.8, 0.9), eps=1e-3),
        "adam_weight_decay": lambda p: A(p, lr=0.1, weight_decay=0.2),
        "adam_amsgrad": lambda p: A(p, lr=0.1, amsgrad=True),
        "adam_skip": lambda p: A(p, lr=0.1),
        "adamw_default": lambda p: AW(p, lr=0.1),
        "adamw_amsgrad": lambda p: AW(p, lr=0.05, weight_decay=0.3, amsgrad=True),
        "adadelta_default": lambda p: AD(p),
        "adadelta_weight_decay": lambda p: AD(p, lr=0.5, rho=0.8, eps=1e-4, weight_decay=0.1),
    }
    for name, make in cases.items():
        trajectory(g, name, make, init, cs, ds, skip_p1_on_even=name.endswith("_skip"))

    L = torch.optim.lr_scheduler
    scheds = {
        "steplr": lambda o: L.StepLR(o, 3, 0.5),
        "multisteplr": lambda o: L.MultiStepLR(o, [2, 5, 5, 9], 0.3),
        "cosine": lambda o: L.CosineAnnealingLR(o, 7, eta_min=0.01),
        "cosine_default": lambda o: L.CosineAnnealingLR(o, 10),
        "linear": lambda o: L.LinearLR(o, start_factor=0.25, total_iters=6),
        "linear_default": lambda o: L.LinearLR(o),
        "linear_decay": lambda o: L.LinearLR(o, start_factor=1.0, end_factor=0.1, total_iters=8),
    }
    for name, make in scheds.items():
        ps = [torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)]
        opt = S([{"params": [ps[0]]}, {"params": [ps[1]], "lr": 0.05}], lr=0.1)
        s = make(opt)
        rows = [s.get_last_lr()]
        for _ in range(20):
            opt.step()
            s.step()
            rows.append(s.get_last_lr())
            assert rows[-1] == [grp["lr"] for grp in opt.param_groups]
        g[f"sched.{name}"] = torch.tensor(rows, dtype=torch.float64)

    grads = [torch.randn(3, 4) * 3, torch.randn(5) * 3]
    g["clip.g0"], g["clip.g1"] = grads[0], grads[1]
    clips = {"l2": (1.0, 2.0), "l2_noclip": (100.0, 2.0), "inf": (0.5, math.inf),
             "l1": (2.0, 1.0), "l3": (1.0, 3.0)}
    for name, (max_norm, norm_type) in clips.items():
        ps = [torch.zeros_like(t, requires_grad=True) for t in grads]
        for p, gr in zip(ps, grads):
            p.grad = gr.clone()
        total = torch.nn.utils.clip_grad_norm_(ps, max_norm, norm_type)
        g[f"clip.{name}.total"] = total.detach().to(torch.float64)
        g[f"clip.{name}.g0"], g[f"clip.{name}.g1"] = ps[0].grad, ps[1].grad
        g[f"clip.{name}.args"] = torch.tensor([max_norm, norm_type], dtype=torch.float64)

    save("optim", g)


if __name__ == "__main__":
    main()
