// Adadelta: the optimizer of PyTorch's MNIST example.
#pragma once

#include <smp/optim/optimizer.h>

#include <utility>

namespace smp::optim {

/// Options of Adadelta (torch.optim.Adadelta defaults).
struct AdadeltaOptions {
  AdadeltaOptions(double lr = 1.0) : lr_(lr) {}  // NOLINT: implicit, as libtorch's
  SMP_OPTIM_ARG(double, lr);
  SMP_OPTIM_ARG(double, rho) = 0.9;
  SMP_OPTIM_ARG(double, eps) = 1e-6;
  SMP_OPTIM_ARG(double, weight_decay) = 0;

 public:
  Options to_map() const;
};

/// PyTorch 1.13's single-tensor Adadelta: g += wd·p; s = ρ·s + (1−ρ)·g²;
/// δ = √(a + eps) / √(s + eps) · g; a = ρ·a + (1−ρ)·δ²; p −= lr·δ.
/// State buffers "square_avg" and "acc_delta".
class Adadelta : public Optimizer {
 public:
  Adadelta(std::vector<Tensor> params, const AdadeltaOptions& options = {});
  Adadelta(std::vector<ParamGroup> groups, const AdadeltaOptions& options = {});
  void step() override;

 protected:
  void validate(const Options& o) const override;
};

}  // namespace smp::optim
