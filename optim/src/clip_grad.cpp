// clip_grad_norm_: one global norm over every gradient, then one in-place scale.
#include <smp/engine/autograd.h>
#include <smp/optim/clip_grad.h>

#include <algorithm>
#include <cmath>

#include "fused.h"

namespace smp::optim {

namespace {

// Sum of |g|^p (or max |g| for p = inf) of one gradient, in float64. Fixed-size chunks summed
// in order keep the result independent of the thread count.
double grad_accumulate(const Tensor& g, double p) {
  const bool inf = std::isinf(p);
  if (detail::fusable({&g})) {
    const float* d = g.data_ptr<float>();
    const int64_t n = g.numel();
    constexpr int64_t kChunk = 1 << 15;
    const int64_t chunks = (n + kChunk - 1) / kChunk;
    std::vector<double> part(static_cast<size_t>(chunks), 0.0);
    parallel_for(chunks, 1, [&](int64_t cb, int64_t ce) {
      for (int64_t c = cb; c < ce; ++c) {
        double acc = 0.0;
        const int64_t e = std::min(n, (c + 1) * kChunk);
        for (int64_t i = c * kChunk; i < e; ++i) {
          const double a = std::fabs(static_cast<double>(d[i]));
          if (inf)
            acc = std::max(acc, a);
          else if (p == 2.0)
            acc += a * a;
          else if (p == 1.0)
            acc += a;
          else
            acc += std::pow(a, p);
        }
        part[static_cast<size_t>(c)] = acc;
      }
    });
    double total = 0.0;
    for (double v : part) total = inf ? std::max(total, v) : total + v;
    return total;
  }
  Tensor a = g.detach().to(kFloat64).abs();
  if (inf) return a.max().item<double>();
  if (p == 2.0) return a.square().sum().item<double>();
  return a.pow(p).sum().item<double>();
}

}  // namespace

double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type) {
  SMP_CHECK(norm_type > 0.0, "clip_grad_norm_: norm_type must be positive, got {}", norm_type);
  std::vector<Tensor> grads;
  for (const auto& p : params)
    if (p.defined() && p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return 0.0;
  const bool inf = std::isinf(norm_type);
  double acc = 0.0;
  for (const auto& g : grads) {
    const double v = grad_accumulate(g, norm_type);
    acc = inf ? std::max(acc, v) : acc + v;
  }
  const double total = inf ? acc : std::pow(acc, 1.0 / norm_type);
  // PyTorch computes the coefficient as a float32 tensor and always multiplies; multiplying
  // by exactly 1 changes nothing, so that case is skipped.
  const float coef = std::min(1.0f, static_cast<float>(max_norm / (total + 1e-6)));
  if (coef < 1.0f) {
    NoGradGuard ng;
    for (auto& g : grads) g.mul_(static_cast<double>(coef));
  }
  return total;
}

}  // namespace smp::optim
