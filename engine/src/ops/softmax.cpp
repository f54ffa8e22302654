// softmax and log_softmax along one dim; backward uses the saved output only.
#include "ops/op_utils.h"

namespace smp {

namespace {

Tensor softmax_impl(const Tensor& input, int64_t dim, bool log) {
  const char* op = log ? "log_softmax" : "softmax";
  SMP_PLACE_OP(op, input);
  ops::check_floating(input, op, "input");
  int64_t d = ops::wrap_dim(dim, input.dim(), op);
  if (input.dim() == 0) d = 0;
  Tensor out = ops::empty_out(input.sizes(), input.dtype(), input.device());
  Tensor y = out.detach();
  autograd::record(log ? "LogSoftmaxBackward" : "SoftmaxBackward", {input}, {out},
                   [y, d, log](const std::vector<Tensor>& g) {
                     Tensor gi = ops::empty_out(y.sizes(), y.dtype(), y.device());
                     if (!gi.is_meta() && gi.numel() > 0) SMP_KERNEL(softmax_backward, gi.device())
                     (gi, ops::contiguous_nograd(ops::cast_to(g[0], y.dtype())), y, d, log);
                     return std::vector<Tensor>{gi};
                   });
  if (out.is_meta() || out.numel() == 0) return out;
  SMP_KERNEL(softmax_forward, out.device())(out, ops::contiguous_nograd(input), d, log);
  return out;
}

}  // namespace

Tensor softmax(const Tensor& input, int64_t dim) { return softmax_impl(input, dim, false); }
Tensor log_softmax(const Tensor& input, int64_t dim) { return softmax_impl(input, dim, true); }
Tensor Tensor::softmax(int64_t dim) const { return softmax_impl(*this, dim, false); }
Tensor Tensor::log_softmax(int64_t dim) const { return softmax_impl(*this, dim, true); }

}  // namespace smp
