// fmt support: fmt::print("{}", tensor) prints like PyTorch's repr.
#pragma once

#include <smp/engine/tensor.h>

#include <fmt/format.h>

template <>
struct fmt::formatter<smp::Tensor> : fmt::formatter<std::string> {
  template <class Ctx>
  auto format(const smp::Tensor& t, Ctx& ctx) const {
    return fmt::formatter<std::string>::format(t.to_string(), ctx);
  }
};
