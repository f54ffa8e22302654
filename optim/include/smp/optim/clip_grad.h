// Gradient clipping by global norm (torch.nn.utils.clip_grad_norm_).
#pragma once

#include <smp/engine/tensor.h>

#include <vector>

namespace smp::optim {

/// Scales every defined gradient of `params` in place by min(1, max_norm / (total + 1e-6)),
/// where total is the norm_type-norm of all gradients together (norm_type may be INFINITY).
/// Returns total. Parameters without a gradient are ignored.
double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type = 2.0);

}  // namespace smp::optim
