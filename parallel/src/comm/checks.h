// Internal: argument checks and raw pointers shared by the MPI and NCCL communicators.
#pragma once

#include <fmt/format.h>
#include <smp/parallel/comm.h>

#include <string>
#include <vector>

namespace smp::detail {

/// Start of a tensor's elements (host or device memory); nullptr when it has none.
inline char* raw_ptr(const Tensor& t) {
  if (t.numel() == 0 || !t.storage() || t.storage()->data() == nullptr) return nullptr;
  return static_cast<char*>(t.storage()->data()) +
         static_cast<size_t>(t.storage_offset()) * t.element_size();
}

/// Names a communicator and an operation in misuse messages.
struct OpContext {
  const char* op;
  const std::string& group;  // "WORLD [0, 1]"
  const char* backend;       // "MPI" / "NCCL"
};

[[noreturn]] inline void misuse(const OpContext& c, const std::string& msg) {
  throw CommError(fmt::format("smp: {} on {}: {}", c.op, c.group, msg));
}

/// A tensor the backend can hand to the transport: defined, contiguous, on `device_kind`
/// ("CPU" for MPI, "CUDA" for NCCL).
inline void check_tensor(const OpContext& c, const Tensor& t, const std::string& what,
                         bool want_cuda) {
  if (!t.defined()) misuse(c, fmt::format("{} is an undefined tensor", what));
  if (want_cuda ? !t.is_cuda() : !t.is_cpu())
    misuse(c, fmt::format("the {} backend takes {} tensors, {} is on {}{}", c.backend,
                          want_cuda ? "CUDA" : "CPU", what, t.device().str(),
                          want_cuda ? ""
                                    : " (smp::comm() routes CUDA tensors to NCCL, or stages "
                                      "them through host memory)"));
  if (!t.is_contiguous())
    misuse(c, fmt::format("{} (shape [{}], strides [{}]) is not contiguous; communicate "
                          ".contiguous() and copy the result back",
                          what, fmt::join(t.sizes(), ", "), fmt::join(t.strides(), ", ")));
}

inline void check_same_dtype(const OpContext& c, const Tensor& t, Dtype want,
                             const std::string& what) {
  if (t.dtype() != want)
    misuse(c, fmt::format("{} has dtype {}, expected {} like the other tensors of the call", what,
                          dtype_name(t.dtype()), dtype_name(want)));
}

inline void check_list_size(const OpContext& c, size_t got, int size, const char* what) {
  if (got != static_cast<size_t>(size))
    misuse(c, fmt::format("expected {} {} (one per rank of the group), got {}", size, what, got));
}

inline void check_root(const OpContext& c, int root, int size, const char* what) {
  if (root < 0 || root >= size)
    misuse(c, fmt::format("{} {} is not a rank of the group (size {})", what, root, size));
}

/// Avg is defined as sum / size, which needs a floating-point type; integer tensors would
/// silently floor, so they are refused.
inline void check_reduce_dtype(const OpContext& c, Dtype d, ReduceOp op) {
  if (op == ReduceOp::Avg && !is_floating_point(d))
    misuse(c, fmt::format("ReduceOp::Avg needs a floating-point tensor, got {} (reduce with Sum "
                          "and divide instead)",
                          dtype_name(d)));
}

/// reduce_scatter's arguments: one input per rank, each a tensor the backend takes
/// (`check(c, t, what)`) of the output's dtype, a dtype `op` can reduce, and this rank's input
/// as large as the output.
template <class Check>
void check_reduce_scatter_args(const OpContext& c, const std::vector<Tensor>& inputs,
                               const Tensor& output, ReduceOp op, int rank, int size,
                               const Check& check) {
  check_list_size(c, inputs.size(), size, "inputs");
  check(c, output, "the output");
  for (int i = 0; i < size; ++i) {
    check(c, inputs[i], fmt::format("inputs[{}]", i));
    check_same_dtype(c, inputs[i], output.dtype(), fmt::format("inputs[{}]", i));
  }
  check_reduce_dtype(c, output.dtype(), op);
  if (inputs[rank].numel() != output.numel())
    misuse(c, fmt::format("inputs[{}] (this rank's slot) has {} elements but the output has {}",
                          rank, inputs[rank].numel(), output.numel()));
}

/// all_to_all's arguments: one input and one output per rank, each a tensor the backend takes
/// (`check(c, t, what)`), all of one dtype, which it returns, and this rank's input to itself
/// as large as its output.
template <class Check>
Dtype check_all_to_all_args(const OpContext& c, const std::vector<Tensor>& inputs,
                            const std::vector<Tensor>& outputs, int rank, int size,
                            const Check& check) {
  check_list_size(c, inputs.size(), size, "inputs");
  check_list_size(c, outputs.size(), size, "outputs");
  const Dtype d = inputs[0].defined() ? inputs[0].dtype() : kFloat32;
  for (int i = 0; i < size; ++i) {
    check(c, inputs[i], fmt::format("inputs[{}]", i));
    check(c, outputs[i], fmt::format("outputs[{}]", i));
    check_same_dtype(c, inputs[i], d, fmt::format("inputs[{}]", i));
    check_same_dtype(c, outputs[i], d, fmt::format("outputs[{}]", i));
  }
  if (inputs[rank].numel() != outputs[rank].numel())
    misuse(c, fmt::format("inputs[{0}] and outputs[{0}] (this rank to itself) have {1} and {2} "
                          "elements; they must match",
                          rank, inputs[rank].numel(), outputs[rank].numel()));
  return d;
}

}  // namespace smp::detail
