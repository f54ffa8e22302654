// 2-D pooling over (N, C, H, W) or (C, H, W): max (indices kept for backward), average
// (ceil_mode, count_include_pad) and adaptive average. Output sizes follow PyTorch's
// pooling_output_shape, so the same model gives the same shapes here and there.
#include "ops/op_utils.h"

namespace smp {

using ops::shape_str;

namespace {

Tensor contiguous_data(const Tensor& t) {
  if (t.is_contiguous() || t.is_meta()) return t.detach();
  Tensor c = ops::empty_out(t.sizes(), t.dtype(), t.device());
  ops::copy_into(c, t);
  return c;
}

IntList pair_arg(const IntList& v, const char* op, const char* name) {
  SMP_CHECK(v.size() == 1 || v.size() == 2, "{}: expected {} to have 1 or 2 values, got {}", op,
            name, shape_str(v));
  return v.size() == 1 ? IntList{v[0], v[0]} : v;
}

void check_pool_input(const Tensor& input, const char* op) {
  ops::check_defined(input, op, "input");
  SMP_CHECK(input.dim() == 3 || input.dim() == 4,
            "{}: expected a 3-D (C, H, W) or 4-D (N, C, H, W) input, got {}", op,
            shape_str(input.sizes()));
  ops::check_floating(input, op, "input");
}

int64_t pool_out_size(int64_t in, int64_t k, int64_t pad, int64_t stride, int64_t dil, bool ceil) {
  int64_t num = in + 2 * pad - dil * (k - 1) - 1 + (ceil ? stride - 1 : 0);
  int64_t out = (num >= 0 ? num / stride : -((-num + stride - 1) / stride)) + 1;
  // The last window must start inside the input or its left padding.
  if (ceil && (out - 1) * stride >= in + pad) --out;
  return out;
}

kernels::PoolParams pool_params(const Tensor& input, IntList kernel_size, IntList stride,
                                IntList padding, IntList dilation, bool ceil_mode, const char* op,
                                Shape& out_shape) {
  IntList k = pair_arg(kernel_size, op, "kernel_size");
  IntList s = stride.empty() ? k : pair_arg(stride, op, "stride");
  IntList pad = pair_arg(padding, op, "padding"), dil = pair_arg(dilation, op, "dilation");
  kernels::PoolParams p;
  out_shape = input.sizes();
  for (int d = 0; d < 2; ++d) {
    SMP_CHECK(k[d] >= 1, "{}: kernel_size must be positive, got {}", op, shape_str(k));
    SMP_CHECK(s[d] >= 1, "{}: stride must be positive, got {}", op, shape_str(s));
    SMP_CHECK(dil[d] >= 1, "{}: dilation must be positive, got {}", op, shape_str(dil));
    SMP_CHECK(pad[d] >= 0 && pad[d] <= k[d] / 2,
              "{}: padding should be at most half of the kernel size, got padding {} for kernel {}",
              op, shape_str(pad), shape_str(k));
    int64_t in = input.size(input.dim() - 2 + d);
    int64_t o = pool_out_size(in, k[d], pad[d], s[d], dil[d], ceil_mode);
    SMP_CHECK(o >= 1,
              "{}: the output would be empty for input {} (kernel {}, stride {}, padding {})", op,
              shape_str(input.sizes()), shape_str(k), shape_str(s), shape_str(pad));
    out_shape[input.dim() - 2 + d] = o;
    p.kernel[d] = k[d];
    p.stride[d] = s[d];
    p.padding[d] = pad[d];
    p.dilation[d] = dil[d];
  }
  p.ceil_mode = ceil_mode;
  return p;
}

}  // namespace

Tensor max_pool2d(const Tensor& input, IntList kernel_size, IntList stride, IntList padding,
                  IntList dilation, bool ceil_mode) {
  SMP_PLACE_OP("max_pool2d", input);
  check_pool_input(input, "max_pool2d");
  Shape out_shape;
  kernels::PoolParams p =
      pool_params(input, std::move(kernel_size), std::move(stride), std::move(padding),
                  std::move(dilation), ceil_mode, "max_pool2d", out_shape);
  Device dev = input.device();
  Tensor out = ops::empty_out(out_shape, input.dtype(), dev);
  Tensor indices = ops::empty_out(out_shape, kInt64, dev);
  Shape in_shape = input.sizes();
  Dtype dt = input.dtype();
  autograd::record("MaxPool2dBackward", {input}, {out}, [=](const std::vector<Tensor>& g) {
    Tensor gi = ops::empty_out(in_shape, dt, g[0].device());
    if (gi.is_meta()) return std::vector<Tensor>{gi};
    SMP_KERNEL(max_pool2d_backward, gi.device())(gi, contiguous_data(g[0]), indices);
    return std::vector<Tensor>{gi};
  });
  if (out.is_meta() || out.numel() == 0) return out;
  SMP_KERNEL(max_pool2d_forward, dev)(out, indices, contiguous_data(input), p);
  return out;
}

Tensor avg_pool2d(const Tensor& input, IntList kernel_size, IntList stride, IntList padding,
                  bool ceil_mode, bool count_include_pad) {
  SMP_PLACE_OP("avg_pool2d", input);
  check_pool_input(input, "avg_pool2d");
  Shape out_shape;
  kernels::PoolParams p =
      pool_params(input, std::move(kernel_size), std::move(stride), std::move(padding), {1, 1},
                  ceil_mode, "avg_pool2d", out_shape);
  p.count_include_pad = count_include_pad;
  Device dev = input.device();
  Tensor out = ops::empty_out(out_shape, input.dtype(), dev);
  Shape in_shape = input.sizes();
  Dtype dt = input.dtype();
  autograd::record("AvgPool2dBackward", {input}, {out}, [=](const std::vector<Tensor>& g) {
    Tensor gi = ops::empty_out(in_shape, dt, g[0].device());
    if (gi.is_meta() || gi.numel() == 0) return std::vector<Tensor>{gi};
    SMP_KERNEL(avg_pool2d_backward, gi.device())(gi, contiguous_data(g[0]), p);
    return std::vector<Tensor>{gi};
  });
  if (out.is_meta() || out.numel() == 0) return out;
  SMP_KERNEL(avg_pool2d_forward, dev)(out, contiguous_data(input), p);
  return out;
}

Tensor adaptive_avg_pool2d(const Tensor& input, IntList output_size) {
  SMP_PLACE_OP("adaptive_avg_pool2d", input);
  check_pool_input(input, "adaptive_avg_pool2d");
  IntList os = pair_arg(output_size, "adaptive_avg_pool2d", "output_size");
  SMP_CHECK(os[0] >= 1 && os[1] >= 1, "adaptive_avg_pool2d: output_size must be positive, got {}",
            shape_str(os));
  for (int64_t d = input.dim() - 2; d < input.dim(); ++d)
    SMP_CHECK(input.size(d) > 0, "adaptive_avg_pool2d: expected non-empty spatial dims, got {}",
              shape_str(input.sizes()));
  Shape out_shape = input.sizes();
  out_shape[input.dim() - 2] = os[0];
  out_shape[input.dim() - 1] = os[1];
  Device dev = input.device();
  Tensor out = ops::empty_out(out_shape, input.dtype(), dev);
  Shape in_shape = input.sizes();
  Dtype dt = input.dtype();
  autograd::record("AdaptiveAvgPool2dBackward", {input}, {out}, [=](const std::vector<Tensor>& g) {
    Tensor gi = ops::empty_out(in_shape, dt, g[0].device());
    if (gi.is_meta() || gi.numel() == 0) return std::vector<Tensor>{gi};
    SMP_KERNEL(adaptive_avg_pool2d_backward, gi.device())(gi, contiguous_data(g[0]));
    return std::vector<Tensor>{gi};
  });
  if (out.is_meta() || out.numel() == 0) return out;
  SMP_KERNEL(adaptive_avg_pool2d_forward, dev)(out, contiguous_data(input));
  return out;
}

}  // namespace smp
