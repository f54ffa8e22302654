// TEMPORARY: placeholders for the nn ops until they are implemented; delete this
// file once every function below has a real definition.
#include <smp/engine/tensor.h>

namespace smp {

Tensor Tensor::index_select(int64_t dim, const Tensor& index) const { SMP_ERROR("nn op not implemented yet"); }
Tensor Tensor::softmax(int64_t dim) const { SMP_ERROR("nn op not implemented yet"); }
Tensor Tensor::log_softmax(int64_t dim) const { SMP_ERROR("nn op not implemented yet"); }
Tensor index_select(const Tensor& a, int64_t dim, const Tensor& index) { SMP_ERROR("nn op not implemented yet"); }
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) { SMP_ERROR("nn op not implemented yet"); }
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) { SMP_ERROR("nn op not implemented yet"); }
Tensor layer_norm(const Tensor& input, const Shape& normalized_shape, const Tensor& weight, const Tensor& bias, double eps) { SMP_ERROR("nn op not implemented yet"); }
Tensor dropout(const Tensor& input, double p, bool training) { SMP_ERROR("nn op not implemented yet"); }
Tensor embedding(const Tensor& weight, const Tensor& indices, int64_t padding_idx) { SMP_ERROR("nn op not implemented yet"); }
Tensor softmax(const Tensor& input, int64_t dim) { SMP_ERROR("nn op not implemented yet"); }
Tensor log_softmax(const Tensor& input, int64_t dim) { SMP_ERROR("nn op not implemented yet"); }
Tensor nll_loss(const Tensor& input, const Tensor& target, Reduction reduction, int64_t ignore_index) { SMP_ERROR("nn op not implemented yet"); }
Tensor cross_entropy(const Tensor& input, const Tensor& target, Reduction reduction, int64_t ignore_index) { SMP_ERROR("nn op not implemented yet"); }
Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction) { SMP_ERROR("nn op not implemented yet"); }

}  // namespace smp
