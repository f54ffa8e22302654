"""Golden draws of PyTorch's CPU generator: what each random op returns after a seed, and what a
sequence of ops returns, so the tests can check that smp::manual_seed(s) gives the same numbers
as torch.manual_seed(s). Writes tests/golden/random.safetensors."""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden_common import save  # noqa: E402


def main():
    out = {}

    def case(name, seed, fn):
        torch.manual_seed(seed)
        out[name] = fn()

    case("uniform_f32", 1, lambda: torch.empty(1000).uniform_(-0.123456, 0.987654))
    case("uniform_f64", 2, lambda: torch.empty(1000, dtype=torch.float64).uniform_(-0.123456, 0.987654))
    case("uniform_f16", 3, lambda: torch.empty(300, dtype=torch.float16).uniform_(-0.3, 0.7))
    case("uniform_bf16", 4, lambda: torch.empty(300, dtype=torch.bfloat16).uniform_(-0.3, 0.7))
    # A transposed tensor is filled in memory order.
    case("uniform_transposed", 5, lambda: torch.empty(6, 4).t().uniform_())
    case("normal_f32", 6, lambda: torch.empty(1037).normal_(0.3, 1.7))
    case("normal_f64", 7, lambda: torch.empty(1037, dtype=torch.float64).normal_(0.3, 1.7))
    # Fewer than 16 elements or not contiguous: the scalar Box-Muller, whose second sample
    # the generator keeps for the next call.
    case("normal_small", 8, lambda: torch.cat([torch.randn(3), torch.randn(3), torch.randn(1)]))
    case("normal_transposed_f64",
         9, lambda: torch.empty(8, 5, dtype=torch.float64).t().normal_(-0.3, 1.7))
    case("bernoulli_f32", 10, lambda: torch.empty(1000).bernoulli_(0.3))
    case("bernoulli_f64", 11, lambda: torch.empty(999, dtype=torch.float64).bernoulli_(0.75))
    case("dropout", 12, lambda: F.dropout(torch.ones(64, 10), 0.25, True))
    case("randint_small", 13, lambda: torch.randint(-5, 7, (500,)))
    case("randint_wide", 14, lambda: torch.randint(0, 2**33 + 5, (50,)))
    case("randperm_100", 15, lambda: torch.randperm(100))
    case("randperm_60000_head", 16, lambda: torch.randperm(60000)[:1000])
    case("generator_randperm_60000_tail",
         0, lambda: torch.randperm(60000, generator=torch.Generator().manual_seed(17))[-1000:])

    # One stream through several ops: each op must consume exactly as many words as torch's.
    def sequence():
        parts = [torch.rand(5), torch.randn(20), torch.randint(0, 10, (7,)).float(),
                 torch.empty(9).bernoulli_(0.5), torch.randn(5, dtype=torch.float64).float(),
                 torch.randperm(11).float(), torch.rand(3, dtype=torch.float64).float(),
                 torch.randn(2)]
        return torch.cat(parts)
    case("sequence", 18, sequence)
    # The random_() draws torch's DataLoader makes on the default generator (int64, full range).
    case("random_int64", 19, lambda: torch.empty(4, dtype=torch.int64).random_())
    save("random", out)


if __name__ == "__main__":
    main()
