// CPU kernels for the negative log-likelihood loss, forward and backward.
// input (N,C) contiguous log-probabilities, target (N) contiguous int64.
#include "cpu/loops.h"
#include "kernels.h"

namespace smp::cpu {
namespace {

inline void check_target(int64_t t, int64_t C) {
  SMP_CHECK(t >= 0 && t < C,
            "nll_loss: target {} is out of bounds for {} classes (expected 0 <= target < {})", t, C,
            C);
}

void nll_loss_forward_cpu(const Tensor& out, const Tensor& total_weight, const Tensor& input,
                          const Tensor& target, Reduction reduction, int64_t ignore_index) {
  int64_t N = input.size(0), C = input.size(1);
  const int64_t* tg = target.data_ptr<int64_t>();
  SMP_DISPATCH_FLOATING_AND_HALF(input.dtype(), "nll_loss", [&] {
    const scalar_t* x = input.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    double sum = 0, count = 0;
    for (int64_t n = 0; n < N; ++n) {
      int64_t t = tg[n];
      if (t == ignore_index) {
        if (reduction == Reduction::None) o[n] = static_cast<scalar_t>(0.0f);
        continue;
      }
      check_target(t, C);
      double v = -static_cast<double>(x[n * C + t]);
      if (reduction == Reduction::None) o[n] = static_cast<scalar_t>(v);
      sum += v;
      count += 1;
    }
    // Mean over zero non-ignored targets is 0/0 = nan, as in PyTorch.
    if (reduction == Reduction::Mean)
      o[0] = static_cast<scalar_t>(sum / count);
    else if (reduction == Reduction::Sum)
      o[0] = static_cast<scalar_t>(sum);
    total_weight.data_ptr<scalar_t>()[0] = static_cast<scalar_t>(count);
  });
}

void nll_loss_backward_cpu(const Tensor& grad_input, const Tensor& grad_out, const Tensor& target,
                           const Tensor& total_weight, Reduction reduction, int64_t ignore_index) {
  int64_t N = grad_input.size(0), C = grad_input.size(1);
  const int64_t* tg = target.data_ptr<int64_t>();
  SMP_DISPATCH_FLOATING_AND_HALF(grad_input.dtype(), "nll_loss_backward", [&] {
    scalar_t* gi = grad_input.data_ptr<scalar_t>();
    const scalar_t* go = grad_out.data_ptr<scalar_t>();
    double scale = 1.0;
    if (reduction == Reduction::Mean)
      scale = 1.0 / static_cast<double>(total_weight.data_ptr<scalar_t>()[0]);
    for (int64_t n = 0; n < N; ++n) {
      int64_t t = tg[n];
      if (t == ignore_index) continue;
      check_target(t, C);
      double g = static_cast<double>(reduction == Reduction::None ? go[n] : go[0]);
      gi[n * C + t] = static_cast<scalar_t>(-g * scale);
    }
  });
}

}  // namespace

SMP_REGISTER_KERNELS(kCPU, {
  t.nll_loss_forward = &nll_loss_forward_cpu;
  t.nll_loss_backward = &nll_loss_backward_cpu;
});

}  // namespace smp::cpu
