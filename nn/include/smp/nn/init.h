// smp::nn::init: in-place initialisers with PyTorch's formulas (torch.nn.init).
#pragma once

#include <smp/engine/tensor.h>

#include <string>
#include <tuple>

namespace smp::nn::init {

/// (fan_in, fan_out) of a weight: dim 1 and dim 0 sizes times the receptive field.
std::tuple<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& t);
/// Recommended gain of a nonlinearity ("linear", "conv2d", "sigmoid", "tanh", "relu",
/// "leaky_relu" with negative slope `param`, "selu").
double calculate_gain(const std::string& nonlinearity, double param = 0.01);

// All of these run without recording autograd history and return `t`.
Tensor uniform_(Tensor t, double a = 0.0, double b = 1.0);
Tensor normal_(Tensor t, double mean = 0.0, double std = 1.0);
Tensor constant_(Tensor t, double value);
Tensor zeros_(Tensor t);
Tensor ones_(Tensor t);
/// U(-bound, bound), bound = gain·√(3/fan), gain = calculate_gain(nonlinearity, a).
Tensor kaiming_uniform_(Tensor t, double a = 0.0, const std::string& mode = "fan_in",
                        const std::string& nonlinearity = "leaky_relu");
/// N(0, std²), std = gain/√fan.
Tensor kaiming_normal_(Tensor t, double a = 0.0, const std::string& mode = "fan_in",
                       const std::string& nonlinearity = "leaky_relu");
Tensor xavier_uniform_(Tensor t, double gain = 1.0);
Tensor xavier_normal_(Tensor t, double gain = 1.0);

}  // namespace smp::nn::init
