// Helpers shared by the op tests: golden-file cases, meta-shape checks, error capture.
#pragma once

#include <smp/smp.h>

#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "gradcheck.h"

namespace smp::test {

using OpFn = std::function<Tensor(const std::vector<Tensor>&)>;

/// The tensors of tests/golden/<name>.safetensors (written by tests/reference/gen_<...>.py).
inline std::map<std::string, Tensor> load_golden(const std::string& name) {
  return load_safetensors(std::string(SMP_TEST_GOLDEN_DIR) + "/" + name + ".safetensors");
}

/// Runs `f` on golden case `name` (keys name.in<i>, name.out, name.gout, name.grad<i>):
/// the output and every input gradient must match PyTorch's.
inline void expect_golden(const std::map<std::string, Tensor>& g, const std::string& name,
                          int n_inputs, const OpFn& f, double rtol = 1e-4, double out_atol = 1e-5,
                          double grad_atol = 1e-5) {
  SCOPED_TRACE(name);
  std::vector<Tensor> in;
  for (int i = 0; i < n_inputs; ++i)
    in.push_back(g.at(name + ".in" + std::to_string(i)).clone().requires_grad_(true));
  Tensor out = f(in);
  EXPECT_ALLCLOSE(out, g.at(name + ".out"), rtol, out_atol);
  out.backward(g.at(name + ".gout"));
  for (int i = 0; i < n_inputs; ++i)
    EXPECT_ALLCLOSE(in[i].grad(), g.at(name + ".grad" + std::to_string(i)), rtol, grad_atol);
}

/// The same op on meta tensors gives the CPU result's shape and dtype.
inline void expect_meta_matches(const OpFn& f, const std::vector<Tensor>& cpu_inputs) {
  std::vector<Tensor> meta;
  for (const auto& t : cpu_inputs)
    meta.push_back(empty(t.sizes(), TensorOptions(t.dtype()).device(Device("meta"))));
  Tensor a = f(cpu_inputs), b = f(meta);
  EXPECT_TRUE(b.is_meta());
  EXPECT_EQ(a.sizes(), b.sizes());
  EXPECT_EQ(a.dtype(), b.dtype());
}

/// The smp::Error message `f` throws, or "" if it does not throw.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace smp::test
