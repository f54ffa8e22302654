// Stochastic gradient descent with momentum, dampening, Nesterov and L2 weight decay.
#pragma once

#include <smp/optim/optimizer.h>

#include <utility>

namespace smp::optim {

/// Options of SGD (torch.optim.SGD); lr has no default, as in PyTorch.
struct SGDOptions {
  SGDOptions(double lr) : lr_(lr) {}  // NOLINT: implicit, as libtorch's
  SMP_OPTIM_ARG(double, lr);
  SMP_OPTIM_ARG(double, momentum) = 0;
  SMP_OPTIM_ARG(double, dampening) = 0;
  SMP_OPTIM_ARG(double, weight_decay) = 0;
  SMP_OPTIM_ARG(bool, nesterov) = false;

 public:
  Options to_map() const;
};

/// PyTorch 1.13's single-tensor SGD: d = g + wd·p; buf = d on the first step, else
/// buf = momentum·buf + (1 − dampening)·d; d = nesterov ? d + momentum·buf : buf; p −= lr·d.
class SGD : public Optimizer {
 public:
  SGD(std::vector<Tensor> params, const SGDOptions& options);
  SGD(std::vector<ParamGroup> groups, const SGDOptions& options);
  void step() override;

 protected:
  void validate(const Options& o) const override;
  bool uses_step() const override { return false; }
};

}  // namespace smp::optim
