// The backend interface: one table of kernel entry points per device type.
//
// Front-end ops (engine/src/ops/) validate arguments, compute output shapes and dtypes,
// allocate outputs, record autograd, and then call a kernel from the table of the inputs'
// device. A kernel only computes: its inputs are already on one device, cast to the dtypes
// stated below, and (for elementwise kernels) expanded to the output's shape. Outputs are
// allocated by the caller; unless stated, they are contiguous.
//
// Adding a device = filling a KernelTable for it (see docs/adding-a-device.md); a null
// entry makes the op fail with "no <kernel> kernel for device <d>", never a crash.
// Meta tensors never reach a kernel: the front end stops after shape inference.
#pragma once

#include <smp/engine/random.h>
#include <smp/engine/scalar.h>
#include <smp/engine/tensor.h>

#include <cstdint>
#include <optional>

#include "unary_table.h"

namespace smp::kernels {

/// The unary ops of unary_table.h, one enumerator per functor there.
enum class UnaryOp {
#define SMP_UNARY_ENUMERATOR(Name, ...) Name,
  SMP_UNARY_OPS(SMP_UNARY_ENUMERATOR)
#undef SMP_UNARY_ENUMERATOR
};

enum class BinaryOp {
  Add,  // a + alpha·b
  Sub,  // a − alpha·b
  Mul,
  Div,
  Maximum,
  Minimum,
  Pow,  // a^b
  Eq,
  Ne,
  Lt,
  Le,
  Gt,
  Ge,  // output dtype bool
};

enum class ReduceOp { Sum, Mean, Max, Min, Prod };

struct ConvParams {
  int64_t stride[2] = {1, 1};
  int64_t padding[2] = {0, 0};
  int64_t dilation[2] = {1, 1};
  int64_t groups = 1;
};

struct PoolParams {
  int64_t kernel[2] = {1, 1};
  int64_t stride[2] = {1, 1};
  int64_t padding[2] = {0, 0};
  int64_t dilation[2] = {1, 1};
  bool ceil_mode = false;
  bool count_include_pad = true;
};

struct KernelTable {
  // ---- memory and creation -------------------------------------------------------
  /// out = value, any strides.
  void (*fill)(const Tensor& out, const Scalar& value) = nullptr;
  /// dst = src converted to dst's dtype; same device, same shape, any strides on both.
  void (*copy)(const Tensor& dst, const Tensor& src) = nullptr;
  /// dst = src across devices (one side is this table's device, the other CPU); both
  /// contiguous, same dtype and shape.
  void (*copy_across_devices)(const Tensor& dst, const Tensor& src) = nullptr;
  /// out[i] = start + i·step, out contiguous 1-D.
  void (*arange)(const Tensor& out, const Scalar& start, const Scalar& step) = nullptr;

  // ---- random: each kernel draws from the generator it is given, under its own rules ------
  // (CPU: PyTorch's mt19937 mappings, cpu/random_cpu.cpp; CUDA: Philox, cuda/random.cu).
  void (*uniform)(const Tensor& out, double from, double to, Generator& gen) = nullptr;
  void (*normal)(const Tensor& out, double mean, double std, Generator& gen) = nullptr;
  /// out = (u < p) in out's dtype.
  void (*bernoulli)(const Tensor& out, double p, Generator& gen) = nullptr;
  /// out = integers uniform in [low, high).
  void (*random_int)(const Tensor& out, int64_t low, int64_t high, Generator& gen) = nullptr;

  // ---- elementwise (inputs expanded to out's shape, any strides) -------------------
  /// out = op(in); out and in have the same dtype.
  void (*unary)(UnaryOp op, const Tensor& out, const Tensor& in) = nullptr;
  /// grad_in = grad_out · op'(x), the op's fused backward (unary_table.h); `saved` is the
  /// forward input x or output y, as the op's kSaves says. One floating dtype for all three.
  void (*unary_backward)(UnaryOp op, const Tensor& grad_in, const Tensor& grad_out,
                         const Tensor& saved) = nullptr;
  /// out = op(a, b); a and b share the compute dtype; out has it too (bool for comparisons).
  void (*binary)(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b,
                 const Scalar& alpha) = nullptr;
  /// out = op(a, s) or op(s, a) when scalar_first; out has a's dtype (bool for comparisons).
  void (*binary_scalar)(BinaryOp op, const Tensor& out, const Tensor& a, const Scalar& s,
                        bool scalar_first) = nullptr;
  void (*clamp)(const Tensor& out, const Tensor& in, std::optional<Scalar> min,
                std::optional<Scalar> max) = nullptr;
  /// out = cond ? a : b; cond is bool.
  void (*where)(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) = nullptr;
  /// out = self + value·t1·t2 (out may be self).
  void (*addcmul)(const Tensor& out, const Tensor& self, const Tensor& t1, const Tensor& t2,
                  const Scalar& value) = nullptr;
  /// out = self + value·t1/t2 (out may be self).
  void (*addcdiv)(const Tensor& out, const Tensor& self, const Tensor& t1, const Tensor& t2,
                  const Scalar& value) = nullptr;

  // ---- reductions --------------------------------------------------------------------
  /// out has in's rank with size 1 in every reduced dim (keepdim form); `dims` sorted,
  /// unique, non-empty. Sum/Mean/Prod accumulate in double for float32 on CPU where cheap.
  void (*reduce)(ReduceOp op, const Tensor& out, const Tensor& in, const IntList& dims) = nullptr;
  /// Max/Min along one dim: values (in's dtype) and indices (int64), keepdim form.
  void (*reduce_arg)(ReduceOp op, const Tensor& values, const Tensor& indices, const Tensor& in,
                     int64_t dim) = nullptr;

  // ---- linear algebra ------------------------------------------------------------------
  /// out (m,n) = beta·self + alpha·(a (m,k) · b (k,n)); self undefined means beta = 0.
  /// a and b may be any strided 2-D views (transposes are free); out contiguous; float types.
  void (*addmm)(const Tensor& out, const Tensor& self, const Tensor& a, const Tensor& b,
                const Scalar& beta, const Scalar& alpha) = nullptr;
  /// out (B,m,n) = a (B,m,k) · b (B,k,n); a and b any strides.
  void (*bmm)(const Tensor& out, const Tensor& a, const Tensor& b) = nullptr;

  // ---- convolution and pooling (NCHW, contiguous inputs) --------------------------------
  void (*conv2d_forward)(const Tensor& out, const Tensor& input, const Tensor& weight,
                         const Tensor& bias, const ConvParams& p) = nullptr;
  /// Fills whichever of grad_input, grad_weight, grad_bias are defined.
  void (*conv2d_backward)(const Tensor& grad_input, const Tensor& grad_weight,
                          const Tensor& grad_bias, const Tensor& grad_out, const Tensor& input,
                          const Tensor& weight, const ConvParams& p) = nullptr;
  /// indices: int64 flat offsets within each (n, c) plane of the input.
  void (*max_pool2d_forward)(const Tensor& out, const Tensor& indices, const Tensor& input,
                             const PoolParams& p) = nullptr;
  void (*max_pool2d_backward)(const Tensor& grad_input, const Tensor& grad_out,
                              const Tensor& indices) = nullptr;
  void (*avg_pool2d_forward)(const Tensor& out, const Tensor& input, const PoolParams& p) = nullptr;
  void (*avg_pool2d_backward)(const Tensor& grad_input, const Tensor& grad_out,
                              const PoolParams& p) = nullptr;
  void (*adaptive_avg_pool2d_forward)(const Tensor& out, const Tensor& input) = nullptr;
  void (*adaptive_avg_pool2d_backward)(const Tensor& grad_input, const Tensor& grad_out) = nullptr;

  // ---- normalisation ---------------------------------------------------------------------
  /// input (N,C,...). Training: batch stats into save_mean/save_invstd (C), running stats
  /// updated in place if defined. Eval: normalise with running stats (save_* untouched).
  /// weight/bias may be undefined.
  void (*batch_norm_forward)(const Tensor& out, const Tensor& save_mean, const Tensor& save_invstd,
                             const Tensor& input, const Tensor& weight, const Tensor& bias,
                             const Tensor& running_mean, const Tensor& running_var, bool training,
                             double momentum, double eps) = nullptr;
  /// Fills whichever grads are defined. In eval mode mean/invstd are the running stats' forms.
  void (*batch_norm_backward)(const Tensor& grad_input, const Tensor& grad_weight,
                              const Tensor& grad_bias, const Tensor& grad_out, const Tensor& input,
                              const Tensor& weight, const Tensor& mean, const Tensor& invstd,
                              bool training) = nullptr;
  /// input viewed as (M, N) rows; mean/rstd (M) float32-or-input dtype.
  void (*layer_norm_forward)(const Tensor& out, const Tensor& mean, const Tensor& rstd,
                             const Tensor& input, const Tensor& weight, const Tensor& bias,
                             int64_t M, int64_t N, double eps) = nullptr;
  void (*layer_norm_backward)(const Tensor& grad_input, const Tensor& grad_weight,
                              const Tensor& grad_bias, const Tensor& grad_out, const Tensor& input,
                              const Tensor& mean, const Tensor& rstd, const Tensor& weight,
                              int64_t M, int64_t N) = nullptr;

  // ---- softmax and losses ------------------------------------------------------------------
  /// Softmax (or log-softmax) along `dim` of a contiguous input.
  void (*softmax_forward)(const Tensor& out, const Tensor& in, int64_t dim, bool log) = nullptr;
  /// grad_input from grad_out and the forward output.
  void (*softmax_backward)(const Tensor& grad_input, const Tensor& grad_out, const Tensor& out,
                           int64_t dim, bool log) = nullptr;
  /// input (N,C) log-probs, target (N) int64. out: 0-dim (Mean/Sum) or (N) (None);
  /// total_weight: 0-dim count of non-ignored targets.
  void (*nll_loss_forward)(const Tensor& out, const Tensor& total_weight, const Tensor& input,
                           const Tensor& target, Reduction reduction,
                           int64_t ignore_index) = nullptr;
  /// grad_input (N,C) zero-filled by the caller.
  void (*nll_loss_backward)(const Tensor& grad_input, const Tensor& grad_out, const Tensor& target,
                            const Tensor& total_weight, Reduction reduction,
                            int64_t ignore_index) = nullptr;

  // ---- indexing ------------------------------------------------------------------------------
  /// out = in gathered along `dim` at `index` (1-D int64/int32); in contiguous.
  void (*index_select)(const Tensor& out, const Tensor& in, int64_t dim,
                       const Tensor& index) = nullptr;
  /// out[index[i]] along dim += src[i]; out contiguous; duplicates accumulate.
  void (*index_add)(const Tensor& out, int64_t dim, const Tensor& index,
                    const Tensor& src) = nullptr;
};

/// The table of a device type (entries null until a backend registers them).
KernelTable& table(DeviceType type);

/// Whether host-to-device copies on this thread may return before a pinned source has been
/// read (Tensor::to(..., non_blocking = true) sets it for its copy).
bool non_blocking_copy();
class NonBlockingCopyScope {
 public:
  explicit NonBlockingCopyScope(bool on);
  ~NonBlockingCopyScope();
  NonBlockingCopyScope(const NonBlockingCopyScope&) = delete;
  NonBlockingCopyScope& operator=(const NonBlockingCopyScope&) = delete;

 private:
  bool prev_;
};

/// Fetches a kernel, failing with a clear error where the device has none.
template <class Fn>
Fn get(Fn KernelTable::*entry, const Device& d, const char* name) {
  Fn fn = table(d.type()).*entry;
  SMP_CHECK(fn != nullptr, "{}: no kernel for device {} in this build", name, d.str());
  return fn;
}

}  // namespace smp::kernels

/// SMP_KERNEL(fill, tensor.device())(args...) — call a kernel for a device.
#define SMP_KERNEL(entry, device) \
  ::smp::kernels::get(&::smp::kernels::KernelTable::entry, (device), #entry)

/// At file scope in a backend: SMP_REGISTER_KERNELS(kCPU, { t.fill = &fill_cpu; ... })
#define SMP_REGISTER_KERNELS_CAT2(a, b) a##b
#define SMP_REGISTER_KERNELS_CAT(a, b) SMP_REGISTER_KERNELS_CAT2(a, b)
#define SMP_REGISTER_KERNELS(devtype, ...)                                             \
  static const bool SMP_REGISTER_KERNELS_CAT(smp_kernels_registered_, __LINE__) = [] { \
    ::smp::kernels::KernelTable& t = ::smp::kernels::table(devtype);                   \
    __VA_ARGS__;                                                                       \
    return true;                                                                       \
  }()
