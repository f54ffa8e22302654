// Losses: nll_loss (own kernel), cross_entropy (= nll_loss ∘ log_softmax), mse_loss (composed).
#include "ops/op_utils.h"

namespace smp {

using ops::shape_str;

namespace {

// (N,C) input, (N) int64 target.
Tensor nll_loss_2d(const Tensor& input, const Tensor& target_in, Reduction reduction,
                   int64_t ignore_index) {
  Device dev = ops::common_device({input, target_in}, "nll_loss");
  int64_t N = input.size(0);
  SMP_CHECK(target_in.dim() == 1 && target_in.size(0) == N,
            "nll_loss: expected a target of shape [{}] for input of shape {}, got shape {}", N,
            shape_str(input.sizes()), shape_str(target_in.sizes()));
  Tensor target = ops::contiguous_nograd(ops::cast_to(target_in, kInt64));
  Tensor out =
      ops::empty_out(reduction == Reduction::None ? Shape{N} : Shape{}, input.dtype(), dev);
  Tensor total_weight = ops::empty_out({}, input.dtype(), dev);
  Shape in_shape = input.sizes();
  autograd::record(
      "NllLossBackward", {input, target_in}, {out},
      [in_shape, target, total_weight, reduction, ignore_index](const std::vector<Tensor>& g) {
        Tensor gi = zeros(in_shape, TensorOptions(total_weight.dtype()).device(g[0].device()));
        if (!gi.is_meta() && gi.numel() > 0) SMP_KERNEL(nll_loss_backward, gi.device())
        (gi, ops::contiguous_nograd(ops::cast_to(g[0], gi.dtype())), target, total_weight,
         reduction, ignore_index);
        return std::vector<Tensor>{gi, Tensor()};
      });
  if (out.is_meta()) return out;
  SMP_KERNEL(nll_loss_forward, dev)
  (out, total_weight, ops::contiguous_nograd(input), target, reduction, ignore_index);
  return out;
}

}  // namespace

Tensor nll_loss(const Tensor& input, const Tensor& target, Reduction reduction,
                int64_t ignore_index) {
  SMP_PLACE_OP("nll_loss", input, target);
  ops::check_floating(input, "nll_loss", "input");
  ops::check_defined(target, "nll_loss", "target");
  SMP_CHECK(target.dtype() == kInt64 || target.dtype() == kInt32,
            "nll_loss: expected an int64 'target' of class indices, got {}",
            dtype_name(target.dtype()));
  SMP_CHECK(input.dim() >= 1,
            "nll_loss: expected an input of shape (N, C) or (C), got a 0-D tensor");
  if (input.dim() == 1) {  // (C) with a 0-D target
    SMP_CHECK(target.dim() == 0,
              "nll_loss: for an input of shape {} expected a 0-D target, got shape {}",
              shape_str(input.sizes()), shape_str(target.sizes()));
    Tensor r = nll_loss_2d(input.unsqueeze(0), target.reshape({1}), reduction, ignore_index);
    return reduction == Reduction::None ? r.squeeze(0) : r;
  }
  if (input.dim() == 2) return nll_loss_2d(input, target, reduction, ignore_index);
  // (N, C, d1, ...): move the class dim last and treat every position as a sample.
  Shape expect = input.sizes();
  expect.erase(expect.begin() + 1);
  SMP_CHECK(target.sizes() == expect,
            "nll_loss: expected a target of shape {} for input of shape {}, got shape {}",
            shape_str(expect), shape_str(input.sizes()), shape_str(target.sizes()));
  IntList perm{0};
  for (int64_t d = 2; d < input.dim(); ++d) perm.push_back(d);
  perm.push_back(1);
  Tensor flat = input.permute(perm).reshape({-1, input.size(1)});
  Tensor r = nll_loss_2d(flat, target.reshape({-1}), reduction, ignore_index);
  return reduction == Reduction::None ? r.reshape(expect) : r;
}

Tensor cross_entropy(const Tensor& input, const Tensor& target, Reduction reduction,
                     int64_t ignore_index) {
  SMP_PLACE_OP("cross_entropy", input, target);
  ops::check_floating(input, "cross_entropy", "input");
  SMP_CHECK(input.dim() >= 1,
            "cross_entropy: expected an input of shape (N, C) or (C), got a 0-D tensor");
  return nll_loss(log_softmax(input, input.dim() == 1 ? 0 : 1), target, reduction, ignore_index);
}

Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction) {
  SMP_PLACE_OP("mse_loss", input, target);
  ops::check_floating(input, "mse_loss", "input");
  ops::check_defined(target, "mse_loss", "target");
  Tensor sq = (input - target).square();
  switch (reduction) {
    case Reduction::None:
      return sq;
    case Reduction::Sum:
      return sq.sum();
    case Reduction::Mean:
      break;
  }
  return sq.mean();
}

}  // namespace smp
