// TEMPORARY: placeholders for the conv ops until they are implemented; delete this
// file once every function below has a real definition.
#include <smp/engine/tensor.h>

namespace smp {

Tensor conv2d(const Tensor& input, const Tensor& weight, const Tensor& bias, IntList stride, IntList padding, IntList dilation, int64_t groups) { SMP_ERROR("conv op not implemented yet"); }
Tensor max_pool2d(const Tensor& input, IntList kernel_size, IntList stride, IntList padding, IntList dilation, bool ceil_mode) { SMP_ERROR("conv op not implemented yet"); }
Tensor avg_pool2d(const Tensor& input, IntList kernel_size, IntList stride, IntList padding, bool ceil_mode, bool count_include_pad) { SMP_ERROR("conv op not implemented yet"); }
Tensor adaptive_avg_pool2d(const Tensor& input, IntList output_size) { SMP_ERROR("conv op not implemented yet"); }
Tensor batch_norm(const Tensor& input, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight, const Tensor& bias, bool training, double momentum, double eps) { SMP_ERROR("conv op not implemented yet"); }

}  // namespace smp
