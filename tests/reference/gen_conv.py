"""Golden values for convolution, pooling and batch norm: /usr/bin/python3 tests/reference/gen_conv.py

Same layout as gen_linalg.py: <name>.in<i>, .out, .gout, .grad<i>; batch-norm cases also
store the running stats after the update (<name>.running_mean / .running_var).
"""
import torch
import torch.nn.functional as F

from golden_common import op_case as case, save, seeded



def main():
    seeded(0)
    r = torch.randn
    out = {}
    case(out, "conv_basic", lambda x, w, b: F.conv2d(x, w, b), r(2, 3, 7, 6), r(4, 3, 3, 3), r(4))
    case(out, "conv_strided", lambda x, w, b: F.conv2d(x, w, b, stride=(2, 1), padding=(1, 2),
                                                       dilation=(2, 1), groups=2),
         r(2, 4, 9, 8), r(6, 2, 3, 2), r(6))
    case(out, "conv_1x1", lambda x, w: F.conv2d(x, w), r(2, 5, 4, 3), r(3, 5, 1, 1))
    case(out, "max_pool", lambda x: F.max_pool2d(x, 3, 2, 1, ceil_mode=True), r(2, 3, 8, 7))
    case(out, "max_pool_dilated", lambda x: F.max_pool2d(x, 2, 1, 0, dilation=2), r(1, 2, 6, 6))
    case(out, "avg_pool", lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True,
                                                 count_include_pad=False), r(2, 3, 8, 7))
    case(out, "avg_pool_pad", lambda x: F.avg_pool2d(x, (2, 3), (2, 2), (1, 1)), r(1, 2, 5, 7))
    case(out, "adaptive_avg_pool", lambda x: F.adaptive_avg_pool2d(x, (3, 4)), r(2, 3, 5, 7))
    for name, shape in (("bn_train4d", (4, 3, 5, 6)), ("bn_train2d", (8, 5))):
        c = shape[1]
        rm, rv = r(c), torch.rand(c) + 0.5
        out[f"{name}.running_mean_before"] = rm.clone()
        out[f"{name}.running_var_before"] = rv.clone()
        case(out, name, lambda x, w, b: F.batch_norm(x, rm, rv, w, b, training=True, momentum=0.2,
                                                     eps=1e-4),
             r(*shape) * 3 + 1, r(c), r(c))
        out[f"{name}.running_mean"] = rm
        out[f"{name}.running_var"] = rv
    rm, rv = r(3), torch.rand(3) + 0.5
    out["bn_eval.running_mean"] = rm
    out["bn_eval.running_var"] = rv
    case(out, "bn_eval", lambda x, w, b: F.batch_norm(x, rm, rv, w, b, training=False),
         r(2, 3, 4, 4), r(3), r(3))
    save("conv", out)


if __name__ == "__main__":
    main()
