// Helpers shared by front-end ops: argument checks, output allocation, dim wrapping.
#pragma once

#include <smp/engine/autograd.h>
#include <smp/engine/tensor.h>

#include <string>
#include <vector>

#include "kernels.h"
#include "placement_scope.h"

namespace smp::ops {

/// Turns a possibly negative dim into [0, ndim); error names `op` when out of range.
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op);
/// Sorted unique wrapped dims; empty `dims` means all dims.
IntList wrap_dims(const IntList& dims, int64_t ndim, const char* op);
/// Row-major strides of `shape`.
Shape contiguous_strides(const Shape& shape);
int64_t numel_of(const Shape& shape);
std::string shape_str(const Shape& s);
/// Every defined tensor is on the same device; returns it. Error names `op` and both devices.
/// Inside a placement scope meta tensors agree with any device: the result is meta when the
/// op runs elsewhere, else the real inputs' device.
Device common_device(const std::vector<Tensor>& ts, const char* op);
/// Whether tensors on `a` and `b` may meet in one op (equal, or meta inside a placement scope).
bool devices_agree(const Device& a, const Device& b);
/// Whether the op computes values into `out`: not meta, not empty, and not placed on another rank
/// (the last matters for in-place ops on a real tensor).
inline bool runs_kernel(const Tensor& out) {
  return !out.is_meta() && out.numel() > 0 && detail::computes_here();
}
void check_defined(const Tensor& t, const char* op, const char* arg);
void check_floating(const Tensor& t, const char* op, const char* arg);
void check_dim(const Tensor& t, int64_t ndim, const char* op, const char* arg);
/// A new contiguous tensor (uninitialised, or no storage on meta). Inside a placement scope it
/// takes the scope's partition, and is meta when the op runs on another rank. `pinned`: CPU
/// memory from the pinned allocator (an error naming `op` where there is none).
Tensor empty_out(const Shape& shape, Dtype dtype, Device device, bool pinned = false,
                 const char* op = "empty");
/// A view of `t` with new geometry on the same storage (no autograd). Inside a scope for another
/// rank the view of a real tensor is meta: this rank does not hold the op's output.
Tensor make_view(const Tensor& t, const Shape& sizes, const Shape& strides, int64_t offset);
/// `t` expanded (stride 0) to `shape` without autograd; `shape` must be a broadcast of t's.
Tensor expand_to(const Tensor& t, const Shape& shape);
/// `t` cast to `dtype` without autograd (returns t itself when already that dtype).
Tensor cast_to(const Tensor& t, Dtype dtype);
/// `t` itself if contiguous, else a contiguous copy made without autograd (for kernels that
/// need contiguous inputs while the op records its node on the original tensor).
Tensor contiguous_nograd(const Tensor& t);
/// Fills a tensor through its device's kernel (no-op on meta).
void fill_(const Tensor& t, const Scalar& v);
/// Copies through kernels, handling dtype and device changes (no autograd).
void copy_into(const Tensor& dst, const Tensor& src);
/// t's dims ordered outermost-first in memory (by decreasing stride, ties kept in order):
/// t.permute(of them) walks t's elements in memory order, as torch's TensorIterator does.
IntList dims_in_memory_order(const Tensor& t);
/// Sum of two gradient contributions for one tensor. A meta contribution was computed on
/// another rank, so with a real one the real one alone is this rank's sum.
Tensor sum_gradients(const Tensor& a, const Tensor& b);

}  // namespace smp::ops
