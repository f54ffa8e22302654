// TEMPORARY: placeholders for the reduction ops until they are implemented; delete this
// file once every function below has a real definition.
#include <smp/engine/tensor.h>

namespace smp {

Tensor Tensor::sum() const { SMP_ERROR("reduction op not implemented yet"); }
Tensor Tensor::sum(const IntList& dims, bool keepdim) const { SMP_ERROR("reduction op not implemented yet"); }
Tensor Tensor::mean() const { SMP_ERROR("reduction op not implemented yet"); }
Tensor Tensor::mean(const IntList& dims, bool keepdim) const { SMP_ERROR("reduction op not implemented yet"); }
Tensor Tensor::max() const { SMP_ERROR("reduction op not implemented yet"); }
std::tuple<Tensor, Tensor> Tensor::max(int64_t dim, bool keepdim) const { SMP_ERROR("reduction op not implemented yet"); }
Tensor Tensor::min() const { SMP_ERROR("reduction op not implemented yet"); }
std::tuple<Tensor, Tensor> Tensor::min(int64_t dim, bool keepdim) const { SMP_ERROR("reduction op not implemented yet"); }
Tensor Tensor::argmax() const { SMP_ERROR("reduction op not implemented yet"); }
Tensor Tensor::argmax(int64_t dim, bool keepdim) const { SMP_ERROR("reduction op not implemented yet"); }
Tensor Tensor::amax(const IntList& dims, bool keepdim) const { SMP_ERROR("reduction op not implemented yet"); }
Tensor Tensor::var(bool unbiased) const { SMP_ERROR("reduction op not implemented yet"); }
Tensor Tensor::var(const IntList& dims, bool unbiased, bool keepdim) const { SMP_ERROR("reduction op not implemented yet"); }
Tensor sum(const Tensor& a) { SMP_ERROR("reduction op not implemented yet"); }
Tensor sum(const Tensor& a, const IntList& dims, bool keepdim) { SMP_ERROR("reduction op not implemented yet"); }
Tensor mean(const Tensor& a) { SMP_ERROR("reduction op not implemented yet"); }
Tensor mean(const Tensor& a, const IntList& dims, bool keepdim) { SMP_ERROR("reduction op not implemented yet"); }
Tensor var(const Tensor& a, const IntList& dims, bool unbiased, bool keepdim) { SMP_ERROR("reduction op not implemented yet"); }
Tensor argmax(const Tensor& a, int64_t dim, bool keepdim) { SMP_ERROR("reduction op not implemented yet"); }
Tensor sum_to(const Tensor& grad, const Shape& shape) { SMP_ERROR("reduction op not implemented yet"); }

}  // namespace smp
