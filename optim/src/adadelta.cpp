// Adadelta: PyTorch 1.13's single-tensor update, fused into one pass for float32 CPU tensors
// (the op-by-op form takes ~10 passes over memory; this one reads p, g, s, a once).
#include <smp/engine/autograd.h>
#include <smp/optim/adadelta.h>

#include <cmath>

#include "fused.h"

#if defined(__AVX__)
#include <immintrin.h>
#endif

namespace smp::optim {

namespace {

// One pass over p, g, s (square_avg), a (acc_delta); same float32 operation order as PyTorch.
template <bool kL2>
void adadelta_kernel(float* __restrict p, const float* __restrict g, float* __restrict s,
                     float* __restrict a, int64_t n, float rho, float one_minus_rho, float eps,
                     float wd, float neg_lr) {
  int64_t i = 0;
#if defined(__AVX__)
  // Explicit vectors: std::sqrt's errno semantics keep the compiler from vectorising, and the
  // two square roots and a division per element make this loop compute-bound otherwise.
  const __m256 vr = _mm256_set1_ps(rho), vomr = _mm256_set1_ps(one_minus_rho);
  const __m256 ve = _mm256_set1_ps(eps), vw = _mm256_set1_ps(wd), vlr = _mm256_set1_ps(neg_lr);
  for (; i + 8 <= n; i += 8) {
    __m256 gi = _mm256_loadu_ps(g + i);
    const __m256 pi = _mm256_loadu_ps(p + i);
    if constexpr (kL2) gi = _mm256_add_ps(gi, _mm256_mul_ps(vw, pi));
    const __m256 si = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(s + i), vr),
                                    _mm256_mul_ps(_mm256_mul_ps(vomr, gi), gi));
    _mm256_storeu_ps(s + i, si);
    const __m256 ai = _mm256_loadu_ps(a + i);
    const __m256 delta = _mm256_mul_ps(
        _mm256_div_ps(_mm256_sqrt_ps(_mm256_add_ps(ai, ve)), _mm256_sqrt_ps(_mm256_add_ps(si, ve))),
        gi);
    _mm256_storeu_ps(a + i, _mm256_add_ps(_mm256_mul_ps(ai, vr),
                                          _mm256_mul_ps(_mm256_mul_ps(vomr, delta), delta)));
    _mm256_storeu_ps(p + i, _mm256_add_ps(pi, _mm256_mul_ps(vlr, delta)));
  }
#endif
  for (; i < n; ++i) {
    float gi = g[i];
    if constexpr (kL2) gi = gi + wd * p[i];
    const float si = s[i] * rho + one_minus_rho * gi * gi;
    s[i] = si;
    const float delta = std::sqrt(a[i] + eps) / std::sqrt(si + eps) * gi;
    a[i] = a[i] * rho + one_minus_rho * delta * delta;
    p[i] = p[i] + neg_lr * delta;
  }
}

}  // namespace

Options AdadeltaOptions::to_map() const {
  return {{"lr", lr()}, {"rho", rho()}, {"eps", eps()}, {"weight_decay", weight_decay()}};
}

Adadelta::Adadelta(std::vector<Tensor> params, const AdadeltaOptions& options)
    : Adadelta(std::vector<ParamGroup>{ParamGroup{std::move(params), {}}}, options) {}

Adadelta::Adadelta(std::vector<ParamGroup> groups, const AdadeltaOptions& options)
    : Optimizer(std::move(groups), options.to_map()) {
  for (const auto& g : groups_) validate(g.options);
}

void Adadelta::validate(const Options& o) const {
  auto get = [&](const char* k) {
    auto it = o.find(k);
    SMP_CHECK(it != o.end(), "Adadelta: parameter group has no option \"{}\"", k);
    return it->second;
  };
  const double lr = get("lr"), rho = get("rho"), eps = get("eps"), wd = get("weight_decay");
  SMP_CHECK(lr >= 0.0, "Adadelta: invalid learning rate: {}", lr);
  SMP_CHECK(rho >= 0.0 && rho <= 1.0, "Adadelta: invalid rho value: {}, expected [0, 1]", rho);
  SMP_CHECK(eps >= 0.0, "Adadelta: invalid epsilon value: {}", eps);
  SMP_CHECK(wd >= 0.0, "Adadelta: invalid weight_decay value: {}", wd);
}

void Adadelta::step() {
  NoGradGuard ng;
  for (auto& group : groups_) {
    const double lr = option(group, "lr"), rho = option(group, "rho");
    const double eps = option(group, "eps"), wd = option(group, "weight_decay");
    for (auto& p : group.params) {
      const Tensor& grad = p.grad();
      if (!grad.defined()) continue;
      ParamState& st = state(p);
      auto& bufs = st.buffers;
      if (!bufs.count("square_avg")) {
        bufs["square_avg"] = zeros_like(p);
        bufs["acc_delta"] = zeros_like(p);
      }
      Tensor& sq = bufs["square_avg"];
      Tensor& acc = bufs["acc_delta"];
      st.step += 1;
      if (detail::fusable({&p, &grad, &sq, &acc})) {
        float* pp = p.data_ptr<float>();
        const float* gp = grad.data_ptr<float>();
        float* sp = sq.data_ptr<float>();
        float* ap = acc.data_ptr<float>();
        const float r = static_cast<float>(rho), omr = static_cast<float>(1.0 - rho);
        const float e = static_cast<float>(eps), w = static_cast<float>(wd);
        const float neg_lr = static_cast<float>(-lr);
        const bool l2 = wd != 0.0;
        detail::for_range(p.numel(), [=](int64_t b, int64_t end) {
          if (l2)
            adadelta_kernel<true>(pp + b, gp + b, sp + b, ap + b, end - b, r, omr, e, w, neg_lr);
          else
            adadelta_kernel<false>(pp + b, gp + b, sp + b, ap + b, end - b, r, omr, e, w, neg_lr);
        });
        p.bump_version();
        continue;
      }
      Tensor g = wd != 0.0 ? grad.add(p, wd) : grad;
      sq.mul_(rho).addcmul_(g, g, 1.0 - rho);
      Tensor std_ = sq.add(eps).sqrt_();
      Tensor delta = acc.add(eps).sqrt_().div_(std_).mul_(g);
      acc.mul_(rho).addcmul_(delta, delta, 1.0 - rho);
      p.add_(delta, -lr);
    }
  }
}

}  // namespace smp::optim
