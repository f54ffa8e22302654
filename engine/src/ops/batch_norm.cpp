// batch_norm over (N, C) or (N, C, ...) inputs. Training (or no running stats) normalises
// with the batch's statistics and updates the running stats in place with momentum and
// the unbiased variance, as PyTorch; eval normalises with the running stats.
#include "ops/op_utils.h"

namespace smp {

using ops::shape_str;

namespace {

Tensor contiguous_data(const Tensor& t) {
  if (!t.defined()) return t;
  if (t.is_contiguous() || t.is_meta()) return t.detach();
  Tensor c = ops::empty_out(t.sizes(), t.dtype(), t.device());
  ops::copy_into(c, t);
  return c;
}

void check_channel_vector(const Tensor& t, int64_t c, Dtype dt, const char* name) {
  if (!t.defined()) return;
  SMP_CHECK(t.dim() == 1 && t.size(0) == c, "batch_norm: expected {} of shape [{}], got {}", name,
            c, shape_str(t.sizes()));
  SMP_CHECK(t.dtype() == dt, "batch_norm: expected {} of dtype {}, got {}", name, dtype_name(dt),
            dtype_name(t.dtype()));
}

}  // namespace

Tensor batch_norm(const Tensor& input, const Tensor& running_mean, const Tensor& running_var,
                  const Tensor& weight, const Tensor& bias, bool training, double momentum,
                  double eps) {
  SMP_PLACE_OP("batch_norm", input, running_mean, running_var, weight, bias);
  ops::check_defined(input, "batch_norm", "input");
  SMP_CHECK(input.dim() >= 2,
            "batch_norm: expected an input of at least 2 dims (N, C, ...), got {}",
            shape_str(input.sizes()));
  ops::check_floating(input, "batch_norm", "input");
  SMP_CHECK(running_mean.defined() == running_var.defined(),
            "batch_norm: running_mean and running_var must both be given or both be undefined");
  int64_t c = input.size(1);
  Dtype dt = input.dtype();
  check_channel_vector(weight, c, dt, "weight");
  check_channel_vector(bias, c, dt, "bias");
  check_channel_vector(running_mean, c, dt, "running_mean");
  check_channel_vector(running_var, c, dt, "running_var");
  Device dev = ops::common_device({input, weight, bias, running_mean, running_var}, "batch_norm");
  bool batch_stats = training || !running_mean.defined();
  if (batch_stats) {
    int64_t per_channel = input.numel() / std::max<int64_t>(1, c);
    SMP_CHECK(per_channel > 1 || input.numel() == 0,
              "batch_norm: expected more than 1 value per channel when training, got input {}",
              shape_str(input.sizes()));
  }

  if (training && running_mean.defined())
    SMP_CHECK(running_mean.is_contiguous() && running_var.is_contiguous(),
              "batch_norm: running stats must be contiguous to be updated in place");

  Tensor out = ops::empty_out(input.sizes(), dt, dev);
  Tensor save_mean = ops::empty_out({c}, dt, dev), save_invstd = ops::empty_out({c}, dt, dev);
  Tensor x = contiguous_data(input), w = contiguous_data(weight);
  Tensor rm = running_mean.defined() ? running_mean.detach() : Tensor();
  Tensor rv = running_var.defined() ? running_var.detach() : Tensor();
  bool gx = input.requires_grad(), gw = weight.defined() && weight.requires_grad(),
       gb = bias.defined() && bias.requires_grad();
  autograd::record("BatchNormBackward", {input, weight, bias}, {out},
                   [=](const std::vector<Tensor>& g) {
                     Tensor g_x = gx ? ops::empty_out(x.sizes(), dt, g[0].device()) : Tensor();
                     Tensor g_w = gw ? ops::empty_out({c}, dt, g[0].device()) : Tensor();
                     Tensor g_b = gb ? ops::empty_out({c}, dt, g[0].device()) : Tensor();
                     if (g[0].is_meta()) return std::vector<Tensor>{g_x, g_w, g_b};
                     if (g[0].numel() == 0) {
                       for (const Tensor& t : {g_x, g_w, g_b})
                         if (t.defined()) ops::fill_(t, 0);
                       return std::vector<Tensor>{g_x, g_w, g_b};
                     }
                     Tensor mean = save_mean, invstd = save_invstd;
                     if (!batch_stats) {
                       mean = contiguous_data(rm);
                       invstd = (rv + eps).rsqrt().contiguous();
                     }
                     SMP_KERNEL(batch_norm_backward, g[0].device())
                     (g_x, g_w, g_b, contiguous_data(g[0]), x, w, mean, invstd, batch_stats);
                     return std::vector<Tensor>{g_x, g_w, g_b};
                   });
  if (out.is_meta() || out.numel() == 0) return out;
  // Running stats are updated in place: make the update visible to in-place checks.
  if (training && running_mean.defined()) {
    running_mean.bump_version();
    running_var.bump_version();
  }
  SMP_KERNEL(batch_norm_forward, dev)
  (out, save_mean, save_invstd, x, w, contiguous_data(bias), training ? rm : contiguous_data(rm),
   training ? rv : contiguous_data(rv), batch_stats, momentum, eps);
  return out;
}

}  // namespace smp
