// TEMPORARY: placeholders for the random ops until they are implemented; delete this
// file once every function below has a real definition.
#include <smp/engine/tensor.h>

namespace smp {

Tensor& Tensor::uniform_(double from, double to) { SMP_ERROR("random op not implemented yet"); }
Tensor& Tensor::normal_(double mean, double std) { SMP_ERROR("random op not implemented yet"); }
Tensor& Tensor::bernoulli_(double p) { SMP_ERROR("random op not implemented yet"); }
Tensor rand(const Shape& shape, const TensorOptions& o) { SMP_ERROR("random op not implemented yet"); }
Tensor randn(const Shape& shape, const TensorOptions& o) { SMP_ERROR("random op not implemented yet"); }
Tensor randint(int64_t low, int64_t high, const Shape& shape, const TensorOptions& o) { SMP_ERROR("random op not implemented yet"); }
Tensor randint(int64_t high, const Shape& shape, const TensorOptions& o) { SMP_ERROR("random op not implemented yet"); }
Tensor randperm(int64_t n, const TensorOptions& o) { SMP_ERROR("random op not implemented yet"); }
Tensor rand_like(const Tensor& t, const TensorOptions& o) { SMP_ERROR("random op not implemented yet"); }
Tensor randn_like(const Tensor& t, const TensorOptions& o) { SMP_ERROR("random op not implemented yet"); }

}  // namespace smp
