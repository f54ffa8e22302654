// Losses: nll_loss (own kernel), cross_entropy (nll_loss ∘ log_softmax; weights, label smoothing
// and probability targets composed from differentiable ops), mse_loss (composed).
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

namespace {

// weight (C) shaped to broadcast against an input whose class dim is `class_dim`.
Tensor class_weight_view(const Tensor& weight, int64_t ndim, int64_t class_dim) {
  Shape shape(static_cast<size_t>(ndim), 1);
  shape[static_cast<size_t>(class_dim)] = weight.size(0);
  return weight.reshape(shape);
}

// weight[target] per sample, shaped like target, 0 where target == ignore_index.
Tensor target_weights(const Tensor& weight, const Tensor& target, const Tensor& counted) {
  // Ignored entries may hold any value; index with class 0 there and zero the result.
  Tensor safe = where(counted, target, Scalar(int64_t{0}));
  Tensor w = index_select(weight, 0, safe.reshape({-1})).reshape(target.sizes());
  return where(counted, w, Scalar(0.0));
}

// nll_loss with class weights, as PyTorch's: mean divides by Σ weight[target] over counted
// samples, not by their number.
Tensor weighted_nll(const Tensor& logp, const Tensor& target, const Tensor& weight,
                    const Tensor& counted, Reduction reduction, int64_t ignore_index) {
  // The unweighted kernel checks the targets and gives 0 for ignored ones.
  Tensor per_sample = nll_loss(logp, target, Reduction::None, ignore_index);
  Tensor w = target_weights(weight, target, counted);
  Tensor loss = per_sample * w;
  switch (reduction) {
    case Reduction::None:
      return loss;
    case Reduction::Sum:
      return loss.sum();
    case Reduction::Mean:
      break;
  }
  return loss.sum() / w.sum();
}

// Index targets with label smoothing ε: (1-ε)·nll + ε/C · Σ_c -w_c·logp_c (PyTorch 1.13's
// cross_entropy_loss_label_smoothing, including its normalisation of the mean).
Tensor smoothed_index_loss(const Tensor& logp, const Tensor& target, const Tensor& weight,
                           Reduction reduction, int64_t ignore_index, double eps) {
  int64_t class_dim = logp.dim() == 1 ? 0 : 1;
  int64_t C = logp.size(class_dim);
  Tensor counted = target.ne(Scalar(ignore_index));
  Tensor nll = weight.defined()
                   ? weighted_nll(logp, target, weight, counted, reduction, ignore_index)
                   : nll_loss(logp, target, reduction, ignore_index);
  Tensor smooth = weight.defined()
                      ? -(logp * class_weight_view(weight, logp.dim(), class_dim)).sum({class_dim})
                      : -logp.sum({class_dim});
  smooth = where(counted, smooth, Scalar(0.0));
  Tensor smooth_red;
  switch (reduction) {
    case Reduction::None:
      smooth_red = smooth;
      break;
    case Reduction::Sum:
      smooth_red = smooth.sum();
      break;
    case Reduction::Mean:
      smooth_red = smooth.sum() / (weight.defined() ? target_weights(weight, target, counted).sum()
                                                    : counted.to(logp.dtype()).sum());
      break;
  }
  return (1.0 - eps) * nll + smooth_red * (eps / static_cast<double>(C));
}

// Class-probability targets of input's shape: -Σ_c w_c·target_c·logp_c per sample; the mean
// divides by the number of samples (numel / C) whatever the weights.
Tensor probability_target_loss(const Tensor& logp, const Tensor& target, const Tensor& weight,
                               Reduction reduction, double eps) {
  int64_t class_dim = logp.dim() == 1 ? 0 : 1;
  int64_t C = logp.size(class_dim);
  Tensor p = eps > 0.0 ? target * (1.0 - eps) + eps / static_cast<double>(C) : target;
  Tensor prod = logp * p;
  if (weight.defined()) prod = prod * class_weight_view(weight, logp.dim(), class_dim);
  switch (reduction) {
    case Reduction::None:
      return -prod.sum({class_dim});
    case Reduction::Sum:
      return -prod.sum();
    case Reduction::Mean:
      break;
  }
  // No samples: 0/0 = nan, as PyTorch.
  return -prod.sum() / static_cast<double>(logp.numel() / C);
}

}  // namespace

Tensor cross_entropy(const Tensor& input, const Tensor& target, const Tensor& weight,
                     Reduction reduction, int64_t ignore_index, double label_smoothing) {
  SMP_PLACE_OP("cross_entropy", input, target, weight);
  ops::check_floating(input, "cross_entropy", "input");
  ops::check_defined(target, "cross_entropy", "target");
  ops::common_device({input, target, weight}, "cross_entropy");
  SMP_CHECK(input.dim() >= 1,
            "cross_entropy: expected an input of shape (N, C), (N, C, d1, ...) or (C), got a 0-D "
            "tensor");
  SMP_CHECK(label_smoothing >= 0.0 && label_smoothing <= 1.0,
            "cross_entropy: label_smoothing must be between 0.0 and 1.0, got {}", label_smoothing);
  int64_t class_dim = input.dim() == 1 ? 0 : 1;
  int64_t C = input.size(class_dim);
  Tensor w;
  if (weight.defined()) {
    SMP_CHECK(weight.dim() == 1 && weight.size(0) == C,
              "cross_entropy: expected a weight of shape [{}] (one per class of input {}), got "
              "shape {}",
              C, shape_str(input.sizes()), shape_str(weight.sizes()));
    ops::check_floating(weight, "cross_entropy", "weight");
    w = weight.to(input.dtype());
  }
  Tensor logp = log_softmax(input, class_dim);

  // A target of input's shape holds class probabilities (PyTorch's rule).
  if (target.sizes() == input.sizes()) {
    SMP_CHECK(target.is_floating_point(),
              "cross_entropy: a target of the input's shape {} holds class probabilities and "
              "must be floating point, got {}",
              shape_str(input.sizes()), dtype_name(target.dtype()));
    SMP_CHECK(ignore_index < 0,
              "cross_entropy: ignore_index is not supported with class-probability targets, got "
              "ignore_index={}",
              ignore_index);
    return probability_target_loss(logp, target, w, reduction, label_smoothing);
  }
  Shape index_shape = input.sizes();
  index_shape.erase(index_shape.begin() + class_dim);
  SMP_CHECK(target.sizes() == index_shape && !target.is_floating_point(),
            "cross_entropy: for an input of shape {} expected class indices (int64) of shape {} "
            "or class probabilities of shape {}, got a {} target of shape {}",
            shape_str(input.sizes()), shape_str(index_shape), shape_str(input.sizes()),
            dtype_name(target.dtype()), shape_str(target.sizes()));
  if (label_smoothing > 0.0)
    return smoothed_index_loss(logp, target, w, reduction, ignore_index, label_smoothing);
  if (w.defined())
    return weighted_nll(logp, target, w, target.ne(Scalar(ignore_index)), reduction, ignore_index);
  return nll_loss(logp, target, reduction, ignore_index);
}

Tensor cross_entropy(const Tensor& input, const Tensor& target, Reduction reduction,
                     int64_t ignore_index, double label_smoothing) {
  return cross_entropy(input, target, Tensor(), reduction, ignore_index, label_smoothing);
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
