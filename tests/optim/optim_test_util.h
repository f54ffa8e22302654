// Shared helpers of the optim tests: the golden file and the fixed test problem.
#pragma once

#include <gtest/gtest.h>
#include <smp/engine/autograd.h>
#include <smp/engine/serialize.h>
#include <smp/engine/tensor.h>
#include <smp/optim/optimizer.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

namespace smp::optim::test {

inline const std::map<std::string, Tensor>& golden() {
  static const auto g = load_safetensors(std::string(SMP_TEST_GOLDEN_DIR) + "/optim.safetensors");
  return g;
}

inline Tensor gold(const std::string& key) {
  auto it = golden().find(key);
  if (it == golden().end()) throw std::runtime_error("golden key missing: " + key);
  return it->second;
}

/// "" when |a − b| ≤ atol + rtol·|b| everywhere, else the first mismatch.
inline std::string close(const Tensor& a, const Tensor& b, double rtol, double atol) {
  if (a.sizes() != b.sizes()) return "shapes differ";
  auto x = a.to_vector<double>();
  auto y = b.to_vector<double>();
  for (size_t i = 0; i < x.size(); ++i)
    if (!(std::abs(x[i] - y[i]) <= atol + rtol * std::abs(y[i])))
      return "element " + std::to_string(i) + ": " + std::to_string(x[i]) + " vs " +
             std::to_string(y[i]);
  return "";
}

/// The golden problem: loss = Σ_i sum(c_i·p_i²) + sum(tanh(d_i·p_i)).
struct Problem {
  std::vector<Tensor> c, d, init;
  Problem() {
    for (int i = 0; i < 2; ++i) {
      const std::string s = std::to_string(i);
      init.push_back(gold("problem.p" + s));
      c.push_back(gold("problem.c" + s));
      d.push_back(gold("problem.d" + s));
    }
  }
  /// Fresh leaf copies of the initial parameters, as `dtype`.
  std::vector<Tensor> params(Dtype dtype = kFloat32) const {
    std::vector<Tensor> ps;
    for (const auto& t : init) ps.push_back(t.to(dtype).clone().requires_grad_());
    return ps;
  }
  /// Sets every parameter's .grad() to the gradient of the loss (accumulating, as backward).
  void backward(const std::vector<Tensor>& ps) const {
    Tensor loss;
    for (size_t i = 0; i < ps.size(); ++i) {
      Tensor ci = c[i].to(ps[i].dtype()), di = d[i].to(ps[i].dtype());
      Tensor term = (ci * ps[i] * ps[i]).sum() + tanh(di * ps[i]).sum();
      loss = loss.defined() ? loss + term : term;
    }
    loss.backward();
  }
};

}  // namespace smp::optim::test
