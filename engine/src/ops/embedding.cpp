// embedding: rows of a (V, D) weight gathered at integer indices of any shape.
#include "ops/op_utils.h"

namespace smp {

using ops::shape_str;

// padding_idx < 0 means "no padding row" (the declared default is -1); a padding row's
// embedding is looked up normally but never receives a gradient.
Tensor embedding(const Tensor& weight, const Tensor& indices, int64_t padding_idx) {
  SMP_PLACE_OP("embedding", weight, indices);
  ops::check_dim(weight, 2, "embedding", "weight");
  ops::check_defined(indices, "embedding", "indices");
  SMP_CHECK(indices.dtype() == kInt64 || indices.dtype() == kInt32,
            "embedding: expected int64 or int32 'indices', got {}", dtype_name(indices.dtype()));
  Device dev = ops::common_device({weight, indices}, "embedding");
  int64_t V = weight.size(0), D = weight.size(1);
  SMP_CHECK(padding_idx < V, "embedding: padding_idx {} must be below the number of embeddings {}",
            padding_idx, V);
  Shape out_shape = indices.sizes();
  out_shape.push_back(D);
  Tensor flat_idx = indices.reshape({-1});
  if (!flat_idx.is_contiguous()) flat_idx = flat_idx.contiguous();
  Tensor out = ops::empty_out({flat_idx.numel(), D}, weight.dtype(), dev);

  Dtype dt = weight.dtype();
  autograd::record("EmbeddingBackward", {weight, indices}, {out},
                   [V, D, dt, flat_idx, padding_idx](const std::vector<Tensor>& g) {
                     Tensor gw = zeros({V, D}, TensorOptions(dt).device(g[0].device()));
                     if (!gw.is_meta() && g[0].numel() > 0) {
                       Tensor go = g[0].is_contiguous() ? g[0] : g[0].contiguous();
                       SMP_KERNEL(index_add, gw.device())(gw, 0, flat_idx, go);
                       if (padding_idx >= 0) ops::fill_(gw.select(0, padding_idx), 0);
                     }
                     return std::vector<Tensor>{gw, Tensor()};
                   });
  if (!out.is_meta() && out.numel() > 0) {
    Tensor w = weight.is_contiguous() ? weight.detach() : weight.detach().contiguous();
    SMP_KERNEL(index_select, dev)(out, w, 0, flat_idx);
  }
  // Reshaping after recording keeps the kernel output 2-D; the view carries the gradient back.
  return out.reshape(out_shape);
}

}  // namespace smp
