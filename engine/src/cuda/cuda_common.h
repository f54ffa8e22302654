// Shared pieces of the CUDA backend: error checks that throw, the current device, one
// compute stream per device, and cuBLAS / cuDNN handles bound to that stream.
//
// Every kernel of this backend runs on the compute stream of its tensors' device, so work
// on one device is ordered without host synchronisation and the caching allocator can
// hand a freed block to the next allocation at once.
#pragma once

// CMake defines these for CUDA sources (see the root CMakeLists.txt); repeated here for a
// .cu file compiled some other way, which then must include this header first.
#if defined(__CUDACC__)
#ifndef FMT_CONSTEVAL
#define FMT_CONSTEVAL
#endif
#ifndef FMT_USE_CONSTEXPR
#define FMT_USE_CONSTEXPR 1
#endif
#endif

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <smp/engine/detail/cuda_stream.h>  // SMP_CUDA_CHECK, compute_stream, DeviceGuard
#include <smp/engine/error.h>
#include <smp/engine/tensor.h>

#include <cstdint>

namespace smp::cuda {

namespace detail {
const char* cublas_status_string(cublasStatus_t s);
}  // namespace detail

}  // namespace smp::cuda

// Like SMP_CUDA_CHECK (smp/engine/detail/cuda_stream.h), each macro throws smp::Error naming
// the failing call, where it was, and the library's own description of the error.
#define SMP_CUBLAS_CHECK(expr)                                                            \
  do {                                                                                    \
    cublasStatus_t _smp_s = (expr);                                                       \
    if (_smp_s != CUBLAS_STATUS_SUCCESS)                                                  \
      ::smp::cuda::detail::throw_cuda(#expr, __FILE__, __LINE__,                          \
                                      ::smp::cuda::detail::cublas_status_string(_smp_s)); \
  } while (0)

#define SMP_CUDNN_CHECK(expr)                                                                  \
  do {                                                                                         \
    cudnnStatus_t _smp_s = (expr);                                                             \
    if (_smp_s != CUDNN_STATUS_SUCCESS)                                                        \
      ::smp::cuda::detail::throw_cuda(#expr, __FILE__, __LINE__, cudnnGetErrorString(_smp_s)); \
  } while (0)

/// After a kernel launch: reports a bad launch configuration at the launch site.
#define SMP_CUDA_KERNEL_LAUNCH_CHECK() SMP_CUDA_CHECK(cudaGetLastError())

namespace smp::cuda {

/// Handles bound to compute_stream(device), created on first use.
cublasHandle_t cublas_handle(int device);
cudnnHandle_t cudnn_handle(int device);

/// If `ptr` starts a block of the pinned host allocator, records an event on `stream` (of the
/// current device) so the block is not reused before the stream has passed this point, and
/// returns true; false for any other memory.
bool record_pinned_use(const void* ptr, cudaStream_t stream);

/// A contiguous copy of `t` on its device (t itself when already contiguous), no autograd.
Tensor contiguous(const Tensor& t);

/// Device scratch memory from the caching allocator, freed when the object dies.
class Workspace {
 public:
  Workspace(size_t nbytes, int device);
  ~Workspace();
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  void* data() const { return ptr_; }
  size_t size() const { return nbytes_; }

 private:
  void* ptr_ = nullptr;
  size_t nbytes_ = 0;
};

/// Threads per block for our own elementwise and per-element kernels.
constexpr int kThreads = 256;

/// Blocks for a grid-stride loop over n items (grid-stride loops cover the rest).
inline unsigned int blocks_for(int64_t n, int threads = kThreads) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  if (b > (int64_t{1} << 20)) b = int64_t{1} << 20;
  return static_cast<unsigned int>(b);
}

}  // namespace smp::cuda
