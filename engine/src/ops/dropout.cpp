// dropout: zero each element with probability p and scale the survivors by 1/(1−p), so the
// expected value is unchanged; identity in eval mode or with p = 0.
#include "ops/op_utils.h"

namespace smp {

Tensor dropout(const Tensor& input, double p, bool training) {
  SMP_PLACE_OP("dropout", input);
  ops::check_defined(input, "dropout", "input");
  SMP_CHECK(p >= 0.0 && p <= 1.0, "dropout: probability has to be between 0 and 1, got {}", p);
  if (!training || p == 0.0) return input;
  // The mask already holds 1/(1−p) or 0, so one multiplication does both and backward is
  // the same product; with p = 1 every keep draw fails and the mask is all zeros.
  Tensor mask = ops::empty_out(
      input.sizes(), input.is_floating_point() ? input.dtype() : default_dtype(), input.device());
  {
    NoGradGuard ng;
    mask.bernoulli_(1.0 - p);
    if (p < 1.0) mask.mul_(1.0 / (1.0 - p));
  }
  return input * mask;
}

}  // namespace smp
