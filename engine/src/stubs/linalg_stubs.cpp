// TEMPORARY: placeholders for the linalg ops until they are implemented; delete this
// file once every function below has a real definition.
#include <smp/engine/tensor.h>

namespace smp {

Tensor Tensor::matmul(const Tensor& other) const { SMP_ERROR("linalg op not implemented yet"); }
Tensor Tensor::mm(const Tensor& other) const { SMP_ERROR("linalg op not implemented yet"); }
Tensor Tensor::bmm(const Tensor& other) const { SMP_ERROR("linalg op not implemented yet"); }
Tensor matmul(const Tensor& a, const Tensor& b) { SMP_ERROR("linalg op not implemented yet"); }
Tensor mm(const Tensor& a, const Tensor& b) { SMP_ERROR("linalg op not implemented yet"); }
Tensor bmm(const Tensor& a, const Tensor& b) { SMP_ERROR("linalg op not implemented yet"); }
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) { SMP_ERROR("linalg op not implemented yet"); }
Tensor addmm(const Tensor& self, const Tensor& m1, const Tensor& m2, const Scalar& beta, const Scalar& alpha) { SMP_ERROR("linalg op not implemented yet"); }

}  // namespace smp
