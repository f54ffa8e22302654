// layer_norm over the trailing `normalized_shape` dims, with optional affine weight and bias.
#include "ops/op_utils.h"

namespace smp {

using ops::shape_str;

namespace {

// The kernel's view of an optional parameter: contiguous, in the input's dtype.
Tensor param_for_kernel(const Tensor& p, Dtype dt) {
  return p.defined() ? ops::contiguous_nograd(ops::cast_to(p, dt)) : Tensor();
}

}  // namespace

Tensor layer_norm(const Tensor& input, const Shape& normalized_shape, const Tensor& weight,
                  const Tensor& bias, double eps) {
  SMP_PLACE_OP("layer_norm", input, weight, bias);
  ops::check_floating(input, "layer_norm", "input");
  int64_t k = static_cast<int64_t>(normalized_shape.size());
  SMP_CHECK(k >= 1, "layer_norm: normalized_shape must not be empty");
  bool match = input.dim() >= k;
  for (int64_t i = 0; match && i < k; ++i)
    match = input.size(input.dim() - k + i) == normalized_shape[static_cast<size_t>(i)];
  SMP_CHECK(match,
            "layer_norm: normalized_shape {} does not match the trailing dims of input shape {}",
            shape_str(normalized_shape), shape_str(input.sizes()));
  for (auto [p, name] : {std::pair{&weight, "weight"}, std::pair{&bias, "bias"}}) {
    if (!p->defined()) continue;
    SMP_CHECK(p->sizes() == normalized_shape,
              "layer_norm: expected '{}' of shape {} (normalized_shape), got {}", name,
              shape_str(normalized_shape), shape_str(p->sizes()));
    ops::check_floating(*p, "layer_norm", name);
  }
  Device dev = ops::common_device({input, weight, bias}, "layer_norm");
  int64_t N = ops::numel_of(normalized_shape);
  int64_t M = N == 0 ? 0 : input.numel() / N;
  Dtype dt = input.dtype();
  Dtype stat_dt = dt == kFloat64 ? kFloat64 : kFloat32;

  Tensor out = ops::empty_out(input.sizes(), dt, dev);
  Tensor mean = ops::empty_out({M}, stat_dt, dev);
  Tensor rstd = ops::empty_out({M}, stat_dt, dev);
  Tensor x = ops::contiguous_nograd(input.detach());
  Tensor w = param_for_kernel(weight.defined() ? weight.detach() : Tensor(), dt);
  Tensor b = param_for_kernel(bias.defined() ? bias.detach() : Tensor(), dt);

  bool need_x = input.requires_grad();
  bool need_w = weight.defined() && weight.requires_grad();
  bool need_b = bias.defined() && bias.requires_grad();
  Dtype w_dt = weight.defined() ? weight.dtype() : dt, b_dt = bias.defined() ? bias.dtype() : dt;
  autograd::record("LayerNormBackward", {input, weight, bias}, {out},
                   [x, w, mean, rstd, M, N, need_x, need_w, need_b, w_dt, b_dt,
                    normalized_shape](const std::vector<Tensor>& g) {
                     Device d = g[0].device();
                     Tensor gx = need_x ? ops::empty_out(x.sizes(), x.dtype(), d) : Tensor();
                     Tensor gw = need_w ? ops::empty_out(normalized_shape, x.dtype(), d) : Tensor();
                     Tensor gb = need_b ? ops::empty_out(normalized_shape, x.dtype(), d) : Tensor();
                     if (!d.is_meta() && M > 0 && (need_x || need_w || need_b)) {
                       SMP_KERNEL(layer_norm_backward, d)
                       (gx, gw, gb, ops::contiguous_nograd(ops::cast_to(g[0], x.dtype())), x, mean,
                        rstd, w, M, N);
                     } else if (!d.is_meta()) {
                       if (gw.defined()) ops::fill_(gw, 0);
                       if (gb.defined()) ops::fill_(gb, 0);
                     }
                     return std::vector<Tensor>{gx, gw.defined() ? gw.to(w_dt) : gw,
                                                gb.defined() ? gb.to(b_dt) : gb};
                   });
  if (out.is_meta() || M == 0) return out;
  SMP_KERNEL(layer_norm_forward, dev)(out, mean, rstd, x, w, b, M, N, eps);
  return out;
}

}  // namespace smp
