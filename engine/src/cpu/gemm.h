// Row-major GEMM over strided 2-D operands, shared by the linalg and convolution kernels.
#pragma once

#include <smp/engine/tensor.h>

#include <cstdint>
#include <functional>

namespace smp::cpu {

/// c (m,n), leading dim ldc = alpha·op(a)·op(b) + beta·c, all row-major (BLAS semantics:
/// beta = 0 never reads c). float and double. Large products are split over the pool (run
/// inline when called from a pool thread).
template <class T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
          int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc);

/// out (m,n) = beta·out + alpha·(a · b) for strided 2-D CPU views a (m,k), b (k,n) of the same
/// float dtype; out is any row-contiguous 2-D view (stride(1) == 1). Views that BLAS can read
/// as they are (either stride 1) are not copied.
void gemm_tensors(const Tensor& out, const Tensor& a, const Tensor& b, double beta, double alpha);

/// float16/bfloat16 products and convolutions run on float32 copies and round once into the
/// output, as PyTorch's CPU bfloat16 kernels accumulate in float32.
bool is_reduced_float(Dtype d);
/// An uninitialised float32 tensor shaped as t, for results (undefined stays undefined).
Tensor float32_empty(const Tensor& t);
/// A float32 copy of t (undefined stays undefined).
Tensor float32_copy(const Tensor& t);

/// Runs f(begin, end) over [0, n) split across our pool, each chunk calling GEMMs that then
/// run single-threaded: for many small independent products (per sample, per batch matrix)
/// this beats splitting each small GEMM.
void parallel_gemms(int64_t n, const std::function<void(int64_t, int64_t)>& f);

}  // namespace smp::cpu
