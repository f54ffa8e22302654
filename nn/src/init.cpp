#include <smp/engine/autograd.h>
#include <smp/engine/error.h>
#include <smp/nn/init.h>

#include <cmath>

namespace smp::nn::init {

std::tuple<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& t) {
  SMP_CHECK(t.dim() >= 2,
            "calculate_fan_in_and_fan_out: needs a tensor of at least 2 dims, got {} dims",
            t.dim());
  int64_t receptive = 1;
  for (int64_t d = 2; d < t.dim(); ++d) receptive *= t.size(d);
  return {t.size(1) * receptive, t.size(0) * receptive};
}

double calculate_gain(const std::string& nl, double param) {
  if (nl == "linear" || nl == "conv1d" || nl == "conv2d" || nl == "conv3d" || nl == "sigmoid")
    return 1.0;
  if (nl == "tanh") return 5.0 / 3.0;
  if (nl == "relu") return std::sqrt(2.0);
  if (nl == "leaky_relu") return std::sqrt(2.0 / (1.0 + param * param));
  if (nl == "selu") return 3.0 / 4.0;
  SMP_ERROR("calculate_gain: unsupported nonlinearity '{}'", nl);
}

namespace {
int64_t fan_of(const Tensor& t, const std::string& mode) {
  auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  SMP_CHECK(mode == "fan_in" || mode == "fan_out",
            "kaiming init: mode must be 'fan_in' or 'fan_out', got '{}'", mode);
  return mode == "fan_in" ? fan_in : fan_out;
}
}  // namespace

Tensor uniform_(Tensor t, double a, double b) {
  NoGradGuard ng;
  t.uniform_(a, b);
  return t;
}

Tensor normal_(Tensor t, double mean, double std) {
  NoGradGuard ng;
  t.normal_(mean, std);
  return t;
}

Tensor constant_(Tensor t, double value) {
  NoGradGuard ng;
  t.fill_(value);
  return t;
}

Tensor zeros_(Tensor t) { return constant_(std::move(t), 0.0); }
Tensor ones_(Tensor t) { return constant_(std::move(t), 1.0); }

Tensor kaiming_uniform_(Tensor t, double a, const std::string& mode,
                        const std::string& nonlinearity) {
  double std = calculate_gain(nonlinearity, a) / std::sqrt(static_cast<double>(fan_of(t, mode)));
  double bound = std::sqrt(3.0) * std;
  return uniform_(std::move(t), -bound, bound);
}

Tensor kaiming_normal_(Tensor t, double a, const std::string& mode,
                       const std::string& nonlinearity) {
  double std = calculate_gain(nonlinearity, a) / std::sqrt(static_cast<double>(fan_of(t, mode)));
  return normal_(std::move(t), 0.0, std);
}

Tensor xavier_uniform_(Tensor t, double gain) {
  auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  double std = gain * std::sqrt(2.0 / static_cast<double>(fan_in + fan_out));
  double bound = std::sqrt(3.0) * std;
  return uniform_(std::move(t), -bound, bound);
}

Tensor xavier_normal_(Tensor t, double gain) {
  auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  double std = gain * std::sqrt(2.0 / static_cast<double>(fan_in + fan_out));
  return normal_(std::move(t), 0.0, std);
}

}  // namespace smp::nn::init
