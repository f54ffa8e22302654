// Adam / AdamW: PyTorch 1.13's single-tensor update, fused into one pass for float32 CPU.
#include <smp/engine/autograd.h>
#include <smp/optim/adam.h>

#include <algorithm>
#include <cmath>

#include "fused.h"

#if defined(__AVX__)
#include <immintrin.h>
#endif

namespace smp::optim {

namespace {

Options adam_map(double lr, const Betas& betas, double eps, double wd, bool amsgrad) {
  return {{"lr", lr},   {"betas0", std::get<0>(betas)}, {"betas1", std::get<1>(betas)},
          {"eps", eps}, {"weight_decay", wd},           {"amsgrad", amsgrad ? 1.0 : 0.0}};
}

struct AdamStep {
  float beta1, beta2, one_minus_beta1, one_minus_beta2, wd, eps, bc2_sqrt, neg_step_size;
  float decay;  // AdamW's 1 − lr·wd (1 for Adam)
  bool l2, amsgrad;
};

// One pass over p, g, m, v (and v̂); PyTorch's float32 operation order. decay is 1 and l2_wd 0
// when unused, which are exact identities, so one kernel serves Adam and AdamW.
template <bool kAmsgrad>
void adam_kernel(float* __restrict p, const float* __restrict g, float* __restrict m,
                 float* __restrict v, float* __restrict vmax, int64_t n, const AdamStep& s) {
  const float l2_wd = s.l2 ? s.wd : 0.0f;
  int64_t i = 0;
#if defined(__AVX__)
  // Explicit vectors: std::sqrt's errno semantics keep the compiler from vectorising.
  const __m256 b1 = _mm256_set1_ps(s.beta1), b2 = _mm256_set1_ps(s.beta2);
  const __m256 omb1 = _mm256_set1_ps(s.one_minus_beta1), omb2 = _mm256_set1_ps(s.one_minus_beta2);
  const __m256 wd = _mm256_set1_ps(l2_wd), eps = _mm256_set1_ps(s.eps);
  const __m256 bc2 = _mm256_set1_ps(s.bc2_sqrt), nss = _mm256_set1_ps(s.neg_step_size);
  const __m256 decay = _mm256_set1_ps(s.decay);
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_mul_ps(_mm256_loadu_ps(p + i), decay);
    const __m256 gi = _mm256_add_ps(_mm256_loadu_ps(g + i), _mm256_mul_ps(wd, x));
    const __m256 mi =
        _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(m + i), b1), _mm256_mul_ps(omb1, gi));
    __m256 vi = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(v + i), b2),
                              _mm256_mul_ps(_mm256_mul_ps(omb2, gi), gi));
    _mm256_storeu_ps(m + i, mi);
    _mm256_storeu_ps(v + i, vi);
    if constexpr (kAmsgrad) {
      vi = _mm256_max_ps(_mm256_loadu_ps(vmax + i), vi);
      _mm256_storeu_ps(vmax + i, vi);
    }
    const __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), bc2), eps);
    _mm256_storeu_ps(p + i, _mm256_add_ps(x, _mm256_div_ps(_mm256_mul_ps(nss, mi), denom)));
  }
#endif
  for (; i < n; ++i) {
    const float x = p[i] * s.decay;
    const float gi = g[i] + l2_wd * x;
    const float mi = m[i] * s.beta1 + s.one_minus_beta1 * gi;
    float vi = v[i] * s.beta2 + s.one_minus_beta2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    if constexpr (kAmsgrad) {
      vi = std::max(vmax[i], vi);
      vmax[i] = vi;
    }
    const float denom = std::sqrt(vi) / s.bc2_sqrt + s.eps;
    p[i] = x + s.neg_step_size * mi / denom;
  }
}

void adam_fused(Tensor& p, const Tensor& g, Tensor& m, Tensor& v, Tensor* vmax, const AdamStep& s) {
  float* pp = p.data_ptr<float>();
  const float* gp = g.data_ptr<float>();
  float* mp = m.data_ptr<float>();
  float* vp = v.data_ptr<float>();
  float* xp = vmax ? vmax->data_ptr<float>() : nullptr;
  detail::for_range(p.numel(), [=, &s](int64_t b, int64_t e) {
    if (xp)
      adam_kernel<true>(pp + b, gp + b, mp + b, vp + b, xp + b, e - b, s);
    else
      adam_kernel<false>(pp + b, gp + b, mp + b, vp + b, nullptr, e - b, s);
  });
  p.bump_version();
}

}  // namespace

Options AdamOptions::to_map() const {
  return adam_map(lr(), betas(), eps(), weight_decay(), amsgrad());
}
Options AdamWOptions::to_map() const {
  return adam_map(lr(), betas(), eps(), weight_decay(), amsgrad());
}

Adam::Adam(std::vector<Tensor> params, const AdamOptions& options)
    : Adam(std::vector<ParamGroup>{ParamGroup{std::move(params), {}}}, options.to_map(), false) {}
Adam::Adam(std::vector<ParamGroup> groups, const AdamOptions& options)
    : Adam(std::move(groups), options.to_map(), false) {}
Adam::Adam(std::vector<ParamGroup> groups, Options defaults, bool decoupled)
    : Optimizer(std::move(groups), std::move(defaults)), decoupled_(decoupled) {
  for (const auto& g : groups_) validate(g.options);
}

AdamW::AdamW(std::vector<Tensor> params, const AdamWOptions& options)
    : Adam(std::vector<ParamGroup>{ParamGroup{std::move(params), {}}}, options.to_map(), true) {}
AdamW::AdamW(std::vector<ParamGroup> groups, const AdamWOptions& options)
    : Adam(std::move(groups), options.to_map(), true) {}

void Adam::validate(const Options& o) const {
  const char* who = decoupled_ ? "AdamW" : "Adam";
  auto get = [&](const char* k) {
    auto it = o.find(k);
    SMP_CHECK(it != o.end(), "{}: parameter group has no option \"{}\"", who, k);
    return it->second;
  };
  const double lr = get("lr"), eps = get("eps"), b0 = get("betas0"), b1 = get("betas1");
  const double wd = get("weight_decay");
  get("amsgrad");
  SMP_CHECK(lr >= 0.0, "{}: invalid learning rate: {}", who, lr);
  SMP_CHECK(eps >= 0.0, "{}: invalid epsilon value: {}", who, eps);
  SMP_CHECK(b0 >= 0.0 && b0 < 1.0, "{}: invalid beta parameter at index 0: {}, expected [0, 1)",
            who, b0);
  SMP_CHECK(b1 >= 0.0 && b1 < 1.0, "{}: invalid beta parameter at index 1: {}, expected [0, 1)",
            who, b1);
  SMP_CHECK(wd >= 0.0, "{}: invalid weight_decay value: {}", who, wd);
}

void Adam::step() {
  NoGradGuard ng;
  for (auto& group : groups_) {
    const double lr = option(group, "lr"), beta1 = option(group, "betas0");
    const double beta2 = option(group, "betas1"), eps = option(group, "eps");
    const double wd = option(group, "weight_decay");
    const bool amsgrad = option(group, "amsgrad") != 0.0;
    for (auto& p : group.params) {
      const Tensor& grad = p.grad();
      if (!grad.defined()) continue;
      ParamState& st = state(p);
      auto& bufs = st.buffers;
      if (!bufs.count("exp_avg")) {
        bufs["exp_avg"] = zeros_like(p);
        bufs["exp_avg_sq"] = zeros_like(p);
        if (amsgrad) bufs["max_exp_avg_sq"] = zeros_like(p);
      }
      if (amsgrad && !bufs.count("max_exp_avg_sq")) bufs["max_exp_avg_sq"] = zeros_like(p);
      Tensor& m = bufs["exp_avg"];
      Tensor& v = bufs["exp_avg_sq"];
      Tensor* vmax = amsgrad ? &bufs["max_exp_avg_sq"] : nullptr;
      st.step += 1;
      const double step = static_cast<double>(st.step);
      const double bc1 = 1.0 - std::pow(beta1, step);
      const double bc2_sqrt = std::sqrt(1.0 - std::pow(beta2, step));
      const double step_size = lr / bc1;

      if (detail::fusable({&p, &grad, &m, &v}) && (!vmax || detail::fusable({&p, vmax}))) {
        AdamStep s{};
        s.beta1 = static_cast<float>(beta1);
        s.beta2 = static_cast<float>(beta2);
        s.one_minus_beta1 = static_cast<float>(1.0 - beta1);
        s.one_minus_beta2 = static_cast<float>(1.0 - beta2);
        s.wd = static_cast<float>(wd);
        s.eps = static_cast<float>(eps);
        s.bc2_sqrt = static_cast<float>(bc2_sqrt);
        s.neg_step_size = static_cast<float>(-step_size);
        s.decay = decoupled_ ? static_cast<float>(1.0 - lr * wd) : 1.0f;
        s.l2 = !decoupled_ && wd != 0.0;
        s.amsgrad = amsgrad;
        adam_fused(p, grad, m, v, vmax, s);
        continue;
      }
      if (decoupled_) p.mul_(1.0 - lr * wd);
      Tensor g = (!decoupled_ && wd != 0.0) ? grad.add(p, wd) : grad;
      m.mul_(beta1).add_(g, 1.0 - beta1);
      v.mul_(beta2).addcmul_(g, g, 1.0 - beta2);
      Tensor denom;
      if (vmax) {
        vmax->copy_(maximum(*vmax, v));
        denom = vmax->sqrt().div_(bc2_sqrt).add_(eps);
      } else {
        denom = v.sqrt().div_(bc2_sqrt).add_(eps);
      }
      p.addcdiv_(m, denom, -step_size);
    }
  }
}

}  // namespace smp::optim
