// Adam and AdamW (decoupled weight decay), with bias correction and AMSGrad.
#pragma once

#include <smp/optim/optimizer.h>

#include <tuple>
#include <utility>

namespace smp::optim {

/// (beta1, beta2): decay rates of Adam's first and second moment averages.
using Betas = std::tuple<double, double>;

/// Options of Adam (torch.optim.Adam defaults).
struct AdamOptions {
  AdamOptions(double lr = 1e-3) : lr_(lr) {}  // NOLINT: implicit, as libtorch's
  SMP_OPTIM_ARG(double, lr);
  SMP_OPTIM_ARG(Betas, betas) = {0.9, 0.999};
  SMP_OPTIM_ARG(double, eps) = 1e-8;
  SMP_OPTIM_ARG(double, weight_decay) = 0;
  SMP_OPTIM_ARG(bool, amsgrad) = false;

 public:
  Options to_map() const;
};

/// Options of AdamW: as Adam's, but weight_decay defaults to 0.01.
struct AdamWOptions {
  AdamWOptions(double lr = 1e-3) : lr_(lr) {}  // NOLINT: implicit, as libtorch's
  SMP_OPTIM_ARG(double, lr);
  SMP_OPTIM_ARG(Betas, betas) = {0.9, 0.999};
  SMP_OPTIM_ARG(double, eps) = 1e-8;
  SMP_OPTIM_ARG(double, weight_decay) = 1e-2;
  SMP_OPTIM_ARG(bool, amsgrad) = false;

 public:
  Options to_map() const;
};

/// PyTorch 1.13's single-tensor Adam: g += wd·p (L2); m = β1·m + (1−β1)·g;
/// v = β2·v + (1−β2)·g²; p −= lr/(1−β1ᵗ) · m / (√v̂/√(1−β2ᵗ) + eps), v̂ = v or running max of v.
class Adam : public Optimizer {
 public:
  Adam(std::vector<Tensor> params, const AdamOptions& options = {});
  Adam(std::vector<ParamGroup> groups, const AdamOptions& options = {});
  void step() override;

 protected:
  Adam(std::vector<ParamGroup> groups, Options defaults, bool decoupled);
  Dtype step_dtype() const override { return kFloat32; }
  void validate(const Options& o) const override;

 private:
  bool decoupled_ = false;
};

/// Adam with decoupled weight decay: p *= 1 − lr·wd before the Adam update (no L2 term).
class AdamW : public Adam {
 public:
  AdamW(std::vector<Tensor> params, const AdamWOptions& options = {});
  AdamW(std::vector<ParamGroup> groups, const AdamWOptions& options = {});
};

}  // namespace smp::optim
