// Internal to libsmp (not installed; needs the CUDA toolkit): what the layers above the engine
// need from its CUDA backend to order their own CUDA work after the engine's kernels (the NCCL
// communicator's stream waits on an event recorded on the compute stream). The rest of the
// backend (cuBLAS/cuDNN handles, launch helpers) stays in engine/src/cuda/cuda_common.h.
#pragma once

#include <cuda_runtime.h>
#include <smp/engine/tensor.h>

namespace smp::cuda {

namespace detail {
[[noreturn]] void throw_cuda(const char* call, const char* file, int line, const char* what);
}  // namespace detail

}  // namespace smp::cuda

// Throws smp::Error naming the failing call, where it was, and the runtime's description of
// the error. Library code never exits.
#define SMP_CUDA_CHECK(expr)                                                                  \
  do {                                                                                        \
    cudaError_t _smp_e = (expr);                                                              \
    if (_smp_e != cudaSuccess) {                                                              \
      (void)cudaGetLastError(); /* so the next call does not report it again */               \
      ::smp::cuda::detail::throw_cuda(#expr, __FILE__, __LINE__, cudaGetErrorString(_smp_e)); \
    }                                                                                         \
  } while (0)

namespace smp::cuda {

int current_device();
/// The non-default stream all kernels of `device` run on (created on first use).
cudaStream_t compute_stream(int device);

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

}  // namespace smp::cuda
