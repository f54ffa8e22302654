// SGD: PyTorch 1.13's single-tensor update, fused into one pass for float32 CPU tensors.
#include <smp/engine/autograd.h>
#include <smp/optim/sgd.h>

#include "fused.h"

namespace smp::optim {

Options SGDOptions::to_map() const {
  return {{"lr", lr()},
          {"momentum", momentum()},
          {"dampening", dampening()},
          {"weight_decay", weight_decay()},
          {"nesterov", nesterov() ? 1.0 : 0.0}};
}

SGD::SGD(std::vector<Tensor> params, const SGDOptions& options)
    : SGD(std::vector<ParamGroup>{ParamGroup{std::move(params), {}}}, options) {}

SGD::SGD(std::vector<ParamGroup> groups, const SGDOptions& options)
    : Optimizer(std::move(groups), options.to_map()) {
  for (const auto& g : groups_) validate(g.options);
}

void SGD::validate(const Options& o) const {
  auto get = [&](const char* k) {
    auto it = o.find(k);
    SMP_CHECK(it != o.end(), "SGD: parameter group has no option \"{}\"", k);
    return it->second;
  };
  const double lr = get("lr"), momentum = get("momentum"), dampening = get("dampening");
  const double wd = get("weight_decay");
  SMP_CHECK(lr >= 0.0, "SGD: invalid learning rate: {}", lr);
  SMP_CHECK(momentum >= 0.0, "SGD: invalid momentum value: {}", momentum);
  SMP_CHECK(wd >= 0.0, "SGD: invalid weight_decay value: {}", wd);
  SMP_CHECK(get("nesterov") == 0.0 || (momentum > 0.0 && dampening == 0.0),
            "SGD: Nesterov momentum requires a momentum and zero dampening, got momentum {} and "
            "dampening {}",
            momentum, dampening);
}

namespace {

// One pass over p, g (and the momentum buffer). wd = 0 adds exactly 0, so it needs no branch;
// the momentum variants are template flags so each loop vectorises branch-free.
template <bool kMomentum, bool kFirst, bool kNesterov>
void sgd_kernel(float* __restrict p, const float* __restrict g, float* __restrict buf, int64_t n,
                float neg_lr, float momentum, float one_minus_damp, float wd) {
  for (int64_t i = 0; i < n; ++i) {
    float d = g[i] + wd * p[i];
    if constexpr (kMomentum) {
      const float m = kFirst ? d : buf[i] * momentum + one_minus_damp * d;
      buf[i] = m;
      d = kNesterov ? d + momentum * m : m;
    }
    p[i] = p[i] + neg_lr * d;
  }
}

template <bool kMomentum, bool kFirst, bool kNesterov>
void sgd_fused_as(Tensor& p, const Tensor& g, Tensor* buf, float lr, float momentum,
                  float dampening, float wd) {
  float* pp = p.data_ptr<float>();
  const float* gp = g.data_ptr<float>();
  float* bp = buf ? buf->data_ptr<float>() : nullptr;
  detail::for_range(p.numel(), [=](int64_t b, int64_t e) {
    sgd_kernel<kMomentum, kFirst, kNesterov>(pp + b, gp + b, bp ? bp + b : nullptr, e - b, -lr,
                                             momentum, 1.0f - dampening, wd);
  });
  p.bump_version();
}

void sgd_fused(Tensor& p, const Tensor& g, Tensor* buf, bool first, float lr, float momentum,
               float dampening, float wd, bool nesterov) {
  if (!buf) return sgd_fused_as<false, false, false>(p, g, buf, lr, momentum, dampening, wd);
  if (first) {
    if (nesterov) return sgd_fused_as<true, true, true>(p, g, buf, lr, momentum, dampening, wd);
    return sgd_fused_as<true, true, false>(p, g, buf, lr, momentum, dampening, wd);
  }
  if (nesterov) return sgd_fused_as<true, false, true>(p, g, buf, lr, momentum, dampening, wd);
  sgd_fused_as<true, false, false>(p, g, buf, lr, momentum, dampening, wd);
}

}  // namespace

void SGD::step() {
  NoGradGuard ng;
  for (auto& group : groups_) {
    const double lr = option(group, "lr"), momentum = option(group, "momentum");
    const double dampening = option(group, "dampening"), wd = option(group, "weight_decay");
    const bool nesterov = option(group, "nesterov") != 0.0;
    for (auto& p : group.params) {
      const Tensor& grad = p.grad();
      if (!grad.defined()) continue;
      Tensor* buf = nullptr;
      bool first = false;
      if (momentum != 0.0) {
        auto& bufs = state(p).buffers;
        auto it = bufs.find("momentum_buffer");
        first = it == bufs.end();
        if (first) {
          // Allocated here, written by the update below (it starts as a copy of d).
          it = bufs.emplace("momentum_buffer", empty_like(p)).first;
        }
        buf = &it->second;
      }
      if (detail::fusable({&p, &grad}) && (!buf || detail::fusable({&p, buf}))) {
        sgd_fused(p, grad, buf, first, static_cast<float>(lr), static_cast<float>(momentum),
                  static_cast<float>(dampening), static_cast<float>(wd), nesterov);
        continue;
      }
      Tensor d = wd != 0.0 ? grad.add(p, wd) : grad;
      if (buf) {
        if (first)
          buf->copy_(d);
        else
          buf->mul_(momentum).add_(d, 1.0 - dampening);
        d = nesterov ? d.add(*buf, momentum) : *buf;
      }
      p.add_(d, -lr);
    }
  }
}

}  // namespace smp::optim
