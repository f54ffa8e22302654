// CUDA devices, streams and library handles. Nothing here touches the CUDA runtime before
// first use, so a process on a machine without a GPU loads libsmp and runs on the CPU.
#include <smp/engine/cuda.h>
#include <smp/engine/device.h>

#include <array>
#include <atomic>
#include <mutex>

#include "cuda/cuda_common.h"
#include "kernels.h"
#include "ops/op_utils.h"

namespace smp::cuda {

namespace detail {

void throw_cuda(const char* call, const char* file, int line, const char* what) {
  throw Error(fmt::format("CUDA error: {} failed at {}:{}: {}", call, file, line, what));
}

const char* cublas_status_string(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS:
      return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR:
      return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR:
      return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR:
      return "CUBLAS_STATUS_LICENSE_ERROR";
    default:
      return "unknown cuBLAS status";
  }
}

}  // namespace detail

namespace {

constexpr int kMaxDevices = 64;

struct DeviceState {
  std::once_flag stream_once, cublas_once, cudnn_once;
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  cudnnHandle_t cudnn = nullptr;
};

// Leaked on purpose: handles must not be destroyed after the CUDA runtime shut down.
std::array<DeviceState, kMaxDevices>& states() {
  static auto* s = new std::array<DeviceState, kMaxDevices>();
  return *s;
}

DeviceState& state(int device) {
  SMP_CHECK(device >= 0 && device < device_count(),
            "cuda:{} does not exist; this process sees {} CUDA device(s)", device, device_count());
  return states()[static_cast<size_t>(device)];
}

std::atomic<bool> g_allow_tf32{false};

}  // namespace

int current_device() {
  int d = 0;
  SMP_CUDA_CHECK(cudaGetDevice(&d));
  return d;
}

cudaStream_t compute_stream(int device) {
  DeviceState& s = state(device);
  std::call_once(s.stream_once, [&] {
    DeviceGuard g(device);
    SMP_CUDA_CHECK(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking));
  });
  return s.stream;
}

cublasHandle_t cublas_handle(int device) {
  DeviceState& s = state(device);
  cudaStream_t stream = compute_stream(device);
  std::call_once(s.cublas_once, [&] {
    DeviceGuard g(device);
    SMP_CUBLAS_CHECK(cublasCreate(&s.cublas));
    SMP_CUBLAS_CHECK(cublasSetStream(s.cublas, stream));
  });
  return s.cublas;
}

cudnnHandle_t cudnn_handle(int device) {
  DeviceState& s = state(device);
  cudaStream_t stream = compute_stream(device);
  std::call_once(s.cudnn_once, [&] {
    DeviceGuard g(device);
    SMP_CUDNN_CHECK(cudnnCreate(&s.cudnn));
    SMP_CUDNN_CHECK(cudnnSetStream(s.cudnn, stream));
  });
  return s.cudnn;
}

DeviceGuard::DeviceGuard(int device) : cur_(device) {
  SMP_CUDA_CHECK(cudaGetDevice(&prev_));
  if (prev_ != device) SMP_CUDA_CHECK(cudaSetDevice(device));
}

DeviceGuard::~DeviceGuard() {
  if (prev_ >= 0 && prev_ != cur_) (void)cudaSetDevice(prev_);
}

Tensor contiguous(const Tensor& t) {
  if (t.is_contiguous()) return t;
  Tensor c = ops::empty_out(t.sizes(), t.dtype(), t.device());
  SMP_KERNEL(copy, t.device())(c, t);
  return c;
}

Workspace::Workspace(size_t nbytes, int device) : nbytes_(nbytes) {
  if (nbytes == 0) return;
  Allocator* a = get_allocator(kCUDA);
  SMP_ASSERT(a != nullptr, "no CUDA allocator registered");
  ptr_ = a->allocate_on(nbytes, device);
}

Workspace::~Workspace() {
  if (ptr_) get_allocator(kCUDA)->deallocate(ptr_, nbytes_);
}

// ---- public switches (smp/engine/cuda.h, smp/engine/device.h) ------------------------

int device_count() {
  // Queried once: a machine without a driver answers an error, which means "no devices".
  static const int n = [] {
    int c = 0;
    if (cudaGetDeviceCount(&c) != cudaSuccess) {
      (void)cudaGetLastError();
      return 0;
    }
    return c;
  }();
  return n;
}

bool is_available() { return device_count() > 0; }

namespace {
std::atomic<int> g_default_device{0};
}
void set_device(int index) {
  SMP_CHECK(index >= 0 && index < device_count(),
            "cuda::set_device({}): this process sees {} CUDA device(s)", index, device_count());
  g_default_device.store(index);
  SMP_CUDA_CHECK(cudaSetDevice(index));
}
int get_device() { return g_default_device.load(); }
void set_allow_tf32(bool allow) { g_allow_tf32.store(allow); }
bool allow_tf32() { return g_allow_tf32.load(); }
bool is_compiled() { return true; }

void synchronize() {
  if (!is_available()) return;
  SMP_CUDA_CHECK(cudaStreamSynchronize(compute_stream(current_device())));
}

}  // namespace smp::cuda
