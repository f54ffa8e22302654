// Internal helpers for the optimizers' fused CPU loops.
#pragma once

#include <smp/engine/tensor.h>
#include <smp/engine/threading.h>

#include <cstdint>
#include <initializer_list>

namespace smp::optim::detail {

/// The fused loops' precondition: every tensor defined, contiguous, float32, on the CPU and
/// of the same number of elements.
inline bool fusable(std::initializer_list<const Tensor*> ts) {
  int64_t n = -1;
  for (const Tensor* t : ts) {
    if (!t->defined() || !t->is_cpu() || t->dtype() != kFloat32 || !t->is_contiguous())
      return false;
    if (n >= 0 && t->numel() != n) return false;
    n = t->numel();
  }
  return true;
}

/// Runs f(begin, end) over [0, n) on the thread pool in chunks big enough to amortise the
/// hand-off (an update is a few flops per element, so small tensors run inline).
template <class F>
void for_range(int64_t n, F&& f) {
  constexpr int64_t kGrain = 1 << 15;
  if (n <= kGrain) {
    f(int64_t{0}, n);
    return;
  }
  parallel_for(n, kGrain, [&](int64_t b, int64_t e) { f(b, e); });
}

}  // namespace smp::optim::detail
