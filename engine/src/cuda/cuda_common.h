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
#include <smp/engine/error.h>
#include <smp/engine/tensor.h>

#include <cstdint>

namespace smp::cuda {

namespace detail {
[[noreturn]] void throw_cuda(const char* call, const char* file, int line, const char* what);
const char* cublas_status_string(cublasStatus_t s);
}  // namespace detail

}  // namespace smp::cuda

// Each macro throws smp::Error naming the failing call, where it was, and the library's
// own description of the error. Library code never exits.
#define SMP_CUDA_CHECK(expr)                                                                  \
  do {                                                                                        \
    cudaError_t _smp_e = (expr);                                                              \
    if (_smp_e != cudaSuccess) {                                                              \
      (void)cudaGetLastError(); /* so the next call does not report it again */               \
      ::smp::cuda::detail::throw_cuda(#expr, __FILE__, __LINE__, cudaGetErrorString(_smp_e)); \
    }                                                                                         \
  } while (0)

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

int current_device();
/// The non-default stream all kernels of `device` run on (created on first use).
cudaStream_t compute_stream(int device);
/// Handles bound to compute_stream(device), created on first use.
cublasHandle_t cublas_handle(int device);
cudnnHandle_t cudnn_handle(int device);

/// If `ptr` starts a block of the pinned host allocator, records an event on `stream` (of the
/// current device) so the block is not reused before the stream has passed this point, and
/// returns true; false for any other memory.
bool record_pinned_use(const void* ptr, cudaStream_t stream);

/// Makes `device` current for the guard's lifetime (restores the previous one).
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  explicit DeviceGuard(const Tensor& t) : DeviceGuard(t.device().index()) {}
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = -1;
  int cur_ = -1;
};

/// The compute stream of a tensor's device.
inline cudaStream_t stream_of(const Tensor& t) { return compute_stream(t.device().index()); }

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
