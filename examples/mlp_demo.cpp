// mlp_demo: fits y = sin(x) with a 1-32-32-1 MLP written with raw parameters and plain SGD.
// Doubles as a smoke check: exits non-zero unless the loss falls at least 10x.
//
//   mlp_demo [steps=500] [device=cpu]  (--help)
#include <smp/smp.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

namespace {

// A weight of shape (out, in) scaled like PyTorch's default (fan-in) initialisation.
smp::Tensor init_weight(int64_t out, int64_t in, smp::Device device) {
  return (smp::randn({out, in}, device) * (1.0 / std::sqrt(static_cast<double>(in))))
      .requires_grad_();
}

smp::Tensor init_bias(int64_t out, smp::Device device) {
  return smp::zeros({out}, device).requires_grad_();
}

}  // namespace

int main(int argc, char** argv) try {
  int steps = 500;
  std::string device_name = "cpu";
  CLI::App app("Fits y = sin(x) with a 1-32-32-1 MLP; exits non-zero unless the loss falls 10x.",
               "mlp_demo");
  app.add_option("steps", steps, "SGD steps (default 500)");
  app.add_option("device", device_name, "cpu or cuda (default cpu)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int help = app.exit(e);  // prints the help (status 0) or the error
    return help == 0 ? 0 : 2;
  }
  const smp::Device device(device_name);
  constexpr int64_t kSamples = 256, kHidden = 32;
  constexpr double kLr = 0.1;
  const int print_every = steps >= 10 ? steps / 10 : 1;

  smp::manual_seed(0);
  // Evenly spaced x in [-pi, pi]; the targets are computed on the host so the data is exact.
  std::vector<float> xs(kSamples), ys(kSamples);
  for (int64_t i = 0; i < kSamples; ++i) {
    xs[i] = static_cast<float>(-M_PI + 2 * M_PI * static_cast<double>(i) / (kSamples - 1));
    ys[i] = std::sin(xs[i]);
  }
  smp::Tensor x = smp::tensor<float>(xs, {kSamples, 1}).to(device);
  smp::Tensor y = smp::tensor<float>(ys, {kSamples, 1}).to(device);

  std::vector<smp::Tensor> params = {
      init_weight(kHidden, 1, device),       init_bias(kHidden, device),
      init_weight(kHidden, kHidden, device), init_bias(kHidden, device),
      init_weight(1, kHidden, device),       init_bias(1, device)};
  auto forward = [&](const smp::Tensor& in) {
    smp::Tensor h = smp::relu(smp::linear(in, params[0], params[1]));
    h = smp::relu(smp::linear(h, params[2], params[3]));
    return smp::linear(h, params[4], params[5]);
  };

  double initial = 0, loss_value = 0;
  for (int step = 0; step <= steps; ++step) {
    smp::Tensor loss = smp::mse_loss(forward(x), y);
    loss_value = loss.item<double>();
    if (step == 0) initial = loss_value;
    if (step % print_every == 0) std::printf("step %4d  loss %.6f\n", step, loss_value);
    if (step == steps) break;
    for (auto& p : params) p.mutable_grad() = smp::Tensor();
    loss.backward();
    smp::NoGradGuard no_grad;
    for (auto& p : params) p.add_(p.grad(), -kLr);
  }
  const bool ok = std::isfinite(loss_value) && loss_value * 10 <= initial;
  std::printf("final loss %.6f (initial %.6f, %.1fx lower) on %s: %s\n", loss_value, initial,
              initial / loss_value, device.str().c_str(), ok ? "OK" : "FAILED to train");
  return ok ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "mlp_demo: %s\n", e.what());
  return 2;
}
