"""Golden values for the matrix products: /usr/bin/python3 tests/reference/gen_linalg.py

Each case <name> stores its inputs <name>.in<i>, the output <name>.out, a cotangent
<name>.gout and the gradients <name>.grad<i> of sum(out · gout) w.r.t. each input.
"""
import torch

from golden_common import op_case as case, save, seeded



def main():
    seeded(0)
    r = torch.randn
    out = {}
    case(out, "mm", torch.mm, r(5, 7), r(7, 3))
    case(out, "matmul_batched_broadcast", torch.matmul, r(2, 1, 3, 4), r(5, 4, 2))
    case(out, "matmul_vec_batched", torch.matmul, r(4), r(3, 4, 6))
    case(out, "matmul_folded", torch.matmul, r(2, 3, 4), r(4, 5))
    case(out, "bmm", torch.bmm, r(3, 4, 5), r(3, 5, 2))
    case(out, "linear", torch.nn.functional.linear, r(2, 3, 6), r(4, 6), r(4))
    case(out, "addmm", lambda s, a, b: torch.addmm(s, a, b, beta=0.5, alpha=2.0), r(3), r(2, 5),
         r(5, 3))
    save("linalg", out)


if __name__ == "__main__":
    main()
