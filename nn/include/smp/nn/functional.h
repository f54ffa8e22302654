// smp::nn::functional: the functional forms of the layers, thin forwards to the engine ops.
#pragma once

#include <smp/engine/tensor.h>
#include <smp/engine/unary_ops.h>
#include <smp/nn/options.h>

namespace smp::nn::functional {

using smp::adaptive_avg_pool2d;
using smp::avg_pool2d;
using smp::batch_norm;
using smp::conv2d;
using smp::cross_entropy;
using smp::dropout;
using smp::embedding;
using smp::gelu;
using smp::layer_norm;
using smp::linear;
using smp::log_softmax;
using smp::max_pool2d;
using smp::mse_loss;
using smp::nll_loss;
using smp::relu;
using smp::silu;
using smp::softmax;

/// Options of cross_entropy (libtorch's F::CrossEntropyFuncOptions): weight, ignore_index,
/// reduction, label_smoothing, each as in smp::cross_entropy.
struct CrossEntropyFuncOptions {
  SMP_ARG(Tensor, weight);
  SMP_ARG(int64_t, ignore_index) = -100;
  SMP_ARG(Reduction, reduction) = Reduction::Mean;
  SMP_ARG(double, label_smoothing) = 0.0;
};

/// F::cross_entropy(x, y, F::CrossEntropyFuncOptions().label_smoothing(0.1)).
inline Tensor cross_entropy(const Tensor& input, const Tensor& target,
                            const CrossEntropyFuncOptions& o) {
  return smp::cross_entropy(input, target, o.weight(), o.reduction(), o.ignore_index(),
                            o.label_smoothing());
}

/// max_pool2d(x, 2): a square kernel, stride = kernel.
inline Tensor max_pool2d(const Tensor& x, int64_t kernel_size) {
  return smp::max_pool2d(x, {kernel_size, kernel_size});
}
inline Tensor avg_pool2d(const Tensor& x, int64_t kernel_size) {
  return smp::avg_pool2d(x, {kernel_size, kernel_size});
}
inline Tensor adaptive_avg_pool2d(const Tensor& x, int64_t output_size) {
  return smp::adaptive_avg_pool2d(x, {output_size, output_size});
}

}  // namespace smp::nn::functional

namespace smp::nn {
namespace F = functional;
}  // namespace smp::nn
