"""Golden values for elementwise and reduction ops: /usr/bin/python3 tests/reference/gen_elementwise.py

Inputs are stored beside outputs, so the C++ test recomputes from the same numbers.
Backward goldens use the cotangent `ones`, i.e. the gradient of out.sum().
"""
import torch

from golden_common import save, seeded


def main():
    seeded(0)
    t = {}
    x = torch.randn(4, 5)
    y = torch.randn(4, 5)
    p = torch.rand(4, 5) + 0.1  # positive, for log/sqrt/rsqrt
    b = torch.randn(5)
    t["x"], t["y"], t["p"], t["b"] = x, y, p, b

    # binary (with broadcasting)
    t["add"] = x + y
    t["add_alpha"] = torch.add(x, b, alpha=2.5)
    t["sub"] = x - b
    t["mul"] = x * y
    t["div"] = x / p
    t["rdiv"] = 2.0 / p
    t["maximum"] = torch.maximum(x, y)
    t["minimum"] = torch.minimum(x, b)
    t["pow3"] = x.pow(3)
    t["pow_half"] = p.pow(0.5)
    t["pow_frac"] = p.pow(1.7)

    # unary
    t["neg"] = -x
    t["exp"] = x.exp()
    t["log"] = p.log()
    t["sqrt"] = p.sqrt()
    t["rsqrt"] = p.rsqrt()
    t["abs"] = x.abs()
    t["square"] = x.square()
    t["relu"] = x.relu()
    t["sigmoid"] = x.sigmoid()
    t["tanh"] = x.tanh()
    t["gelu"] = torch.nn.functional.gelu(x)
    t["gelu_tanh"] = torch.nn.functional.gelu(x, approximate="tanh")
    t["clamp"] = x.clamp(-0.5, 0.5)
    t["clamp_min"] = x.clamp_min(0.1)
    t["where"] = torch.where(x > 0, x, y)

    # activation gradients (of out.sum())
    for name, fn in [("relu", torch.relu), ("sigmoid", torch.sigmoid), ("tanh", torch.tanh),
                     ("gelu", torch.nn.functional.gelu),
                     ("gelu_tanh", lambda v: torch.nn.functional.gelu(v, approximate="tanh"))]:
        xi = x.clone().requires_grad_(True)
        fn(xi).sum().backward()
        t["grad_" + name] = xi.grad

    # comparisons
    t["gt"] = x > y
    t["le_scalar"] = x <= 0.25

    # reductions
    big = torch.randn(64, 300)
    t["big"] = big
    t["sum_all"] = big.sum()
    t["sum_0"] = big.sum(0)
    t["sum_1"] = big.sum(1)
    t["mean_1_keep"] = big.mean(1, keepdim=True)
    t["var_1"] = big.var(1)
    t["var_all_biased"] = big.var(unbiased=False)
    t["amax_0"] = big.amax(0)
    vmax, imax = big.max(1)
    t["max_1_values"], t["max_1_indices"] = vmax, imax
    vmin, imin = big.min(0)
    t["min_0_values"], t["min_0_indices"] = vmin, imin
    t["argmax_all"] = big.argmax()
    x3 = torch.randn(3, 4, 5)
    t["x3"] = x3
    t["sum_02"] = x3.sum((0, 2))
    t["sum_t"] = x3.transpose(0, 2).sum(1)

    # float16 / bfloat16 compute in float
    t["x_f16"] = x.half()
    t["exp_f16"] = x.half().float().exp().half()  # PyTorch 1.13 has no CPU half exp
    t["mul_bf16"] = x.bfloat16() * y.bfloat16()
    t["sum_f16"] = big.half().sum(1)

    save("elementwise", t)


if __name__ == "__main__":
    main()
