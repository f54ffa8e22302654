// conv2d: NCHW input, (O, C/groups, kH, kW) weight, optional bias; stride, padding,
// dilation and groups as in torch.nn.functional.conv2d. Unbatched (C,H,W) input is treated
// as a batch of one.
#include "ops/op_utils.h"

namespace smp {

using ops::shape_str;

namespace {

// The tensor itself when contiguous, else a contiguous copy (no autograd: kernels only).
Tensor contiguous_data(const Tensor& t) {
  if (!t.defined() || t.is_contiguous() || t.is_meta()) return t.defined() ? t.detach() : t;
  Tensor c = ops::empty_out(t.sizes(), t.dtype(), t.device());
  ops::copy_into(c, t);
  return c;
}

IntList pair_arg(const IntList& v, const char* op, const char* name) {
  SMP_CHECK(v.size() == 1 || v.size() == 2, "{}: expected {} to have 1 or 2 values, got {}", op,
            name, shape_str(v));
  return v.size() == 1 ? IntList{v[0], v[0]} : v;
}

}  // namespace

Tensor conv2d(const Tensor& input, const Tensor& weight, const Tensor& bias, IntList stride,
              IntList padding, IntList dilation, int64_t groups) {
  SMP_PLACE_OP("conv2d", input, weight, bias);
  ops::check_defined(input, "conv2d", "input");
  ops::check_defined(weight, "conv2d", "weight");
  if (input.dim() == 3)
    return conv2d(input.unsqueeze(0), weight, bias, stride, padding, dilation, groups).squeeze(0);
  SMP_CHECK(input.dim() == 4, "conv2d: expected a 4-D input (N, C, H, W), got {}",
            shape_str(input.sizes()));
  SMP_CHECK(weight.dim() == 4, "conv2d: expected a 4-D weight (O, C/groups, kH, kW), got {}",
            shape_str(weight.sizes()));
  SMP_CHECK(input.dtype() == weight.dtype() && (!bias.defined() || bias.dtype() == input.dtype()),
            "conv2d: input, weight and bias must share one dtype, got {}, {}{}",
            dtype_name(input.dtype()), dtype_name(weight.dtype()),
            bias.defined() ? std::string(" and ") + dtype_name(bias.dtype()) : std::string());
  ops::check_floating(input, "conv2d", "input");
  Device dev = ops::common_device({input, weight, bias}, "conv2d");
  IntList st = pair_arg(stride, "conv2d", "stride"), pad = pair_arg(padding, "conv2d", "padding"),
          dil = pair_arg(dilation, "conv2d", "dilation");
  SMP_CHECK(groups >= 1, "conv2d: groups must be positive, got {}", groups);
  for (int d = 0; d < 2; ++d) {
    SMP_CHECK(st[d] >= 1, "conv2d: stride must be positive, got {}", shape_str(st));
    SMP_CHECK(pad[d] >= 0, "conv2d: padding must be non-negative, got {}", shape_str(pad));
    SMP_CHECK(dil[d] >= 1, "conv2d: dilation must be positive, got {}", shape_str(dil));
  }
  int64_t n = input.size(0), c = input.size(1), o = weight.size(0);
  SMP_CHECK(c == weight.size(1) * groups,
            "conv2d: input has {} channels, but weight {} with groups={} expects {}", c,
            shape_str(weight.sizes()), groups, weight.size(1) * groups);
  SMP_CHECK(o % groups == 0, "conv2d: out_channels {} must be divisible by groups {}", o, groups);
  if (bias.defined())
    SMP_CHECK(bias.dim() == 1 && bias.size(0) == o, "conv2d: expected a bias of shape [{}], got {}",
              o, shape_str(bias.sizes()));
  Shape out_shape{n, o, 0, 0};
  for (int d = 0; d < 2; ++d) {
    int64_t in = input.size(2 + d) + 2 * pad[d], eff = dil[d] * (weight.size(2 + d) - 1) + 1;
    SMP_CHECK(in >= eff,
              "conv2d: the padded input {}x{} is smaller than the (dilated) kernel {}x{} (input "
              "{}, weight {})",
              input.size(2) + 2 * pad[0], input.size(3) + 2 * pad[1],
              dil[0] * (weight.size(2) - 1) + 1, dil[1] * (weight.size(3) - 1) + 1,
              shape_str(input.sizes()), shape_str(weight.sizes()));
    out_shape[2 + d] = (in - eff) / st[d] + 1;
  }
  kernels::ConvParams p;
  for (int d = 0; d < 2; ++d) {
    p.stride[d] = st[d];
    p.padding[d] = pad[d];
    p.dilation[d] = dil[d];
  }
  p.groups = groups;

  Tensor out = ops::empty_out(out_shape, input.dtype(), dev);
  Tensor x = contiguous_data(input), w = contiguous_data(weight);
  bool gx = input.requires_grad(), gw = weight.requires_grad(),
       gb = bias.defined() && bias.requires_grad();
  autograd::record(
      "Conv2dBackward", {input, weight, bias}, {out}, [=](const std::vector<Tensor>& g) {
        Tensor g_x = gx ? ops::empty_out(x.sizes(), x.dtype(), x.device()) : Tensor();
        Tensor g_w = gw ? ops::empty_out(w.sizes(), w.dtype(), w.device()) : Tensor();
        Tensor g_b = gb ? ops::empty_out({w.size(0)}, w.dtype(), w.device()) : Tensor();
        if (g[0].is_meta()) return std::vector<Tensor>{g_x, g_w, g_b};
        if (g[0].numel() == 0) {
          for (const Tensor& t : {g_x, g_w, g_b})
            if (t.defined()) ops::fill_(t, 0);
          return std::vector<Tensor>{g_x, g_w, g_b};
        }
        Tensor go = contiguous_data(g[0]);
        SMP_KERNEL(conv2d_backward, go.device())(g_x, g_w, g_b, go, x, w, p);
        return std::vector<Tensor>{g_x, g_w, g_b};
      });
  if (out.is_meta() || out.numel() == 0) return out;
  SMP_KERNEL(conv2d_forward, dev)(out, x, w, bias.defined() ? contiguous_data(bias) : Tensor(), p);
  return out;
}

}  // namespace smp
