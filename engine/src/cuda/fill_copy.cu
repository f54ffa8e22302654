// CUDA kernels for fill, copy (with dtype conversion), arange, and transfers between
// devices and to and from the host.
#include "cuda/loops.cuh"
#include "kernels.h"

namespace smp::cuda {
namespace {

template <class T>
struct FillF {
  T v;
  __device__ T operator()() const { return v; }
};

template <class T>
__global__ void arange_kernel(T* out, int64_t n, double start, double step) {
  int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    out[i] = convert<T>(start + step * static_cast<double>(i));
}

void fill_cuda(const Tensor& out, const Scalar& v) {
  SMP_DISPATCH_ALL(out.dtype(), "fill", [&] {
    scalar_t val = v.to<scalar_t>();
    gpu_map<scalar_t>(out, {}, FillF<scalar_t>{val});
  });
}

void copy_cuda(const Tensor& dst, const Tensor& src) {
  if (dst.numel() == 0) return;
  DeviceGuard g(dst);
  if (dst.dtype() == src.dtype() && dst.is_contiguous() && src.is_contiguous()) {
    if (dst.data_ptr() == src.data_ptr()) return;
    SMP_CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), dst.nbytes(),
                                   cudaMemcpyDeviceToDevice, stream_of(dst)));
    return;
  }
  SMP_DISPATCH_ALL(dst.dtype(), "copy", [&] {
    using out_t = scalar_t;
    SMP_DISPATCH_ALL(src.dtype(), "copy",
                     [&] { gpu_map<out_t, scalar_t>(dst, {&src}, ConvertF<out_t, scalar_t>{}); });
  });
}

void copy_across_devices_cuda(const Tensor& dst, const Tensor& src) {
  SMP_ASSERT(dst.is_contiguous() && src.is_contiguous() && dst.dtype() == src.dtype() &&
                 dst.nbytes() == src.nbytes(),
             "copy_across_devices: expects contiguous tensors of one dtype and size");
  if (dst.nbytes() == 0) return;
  if (dst.is_cuda() && src.is_cuda()) {
    // Peer copy on the source's stream. dst's block may have been freed by work still
    // queued on its own device, so that work finishes first; the copy is then awaited.
    {
      DeviceGuard gd(dst);
      SMP_CUDA_CHECK(cudaStreamSynchronize(stream_of(dst)));
    }
    DeviceGuard g(src);
    SMP_CUDA_CHECK(cudaMemcpyPeerAsync(dst.data_ptr(), dst.device().index(), src.data_ptr(),
                                       src.device().index(), src.nbytes(), stream_of(src)));
    SMP_CUDA_CHECK(cudaStreamSynchronize(stream_of(src)));
    return;
  }
  if (dst.is_cuda()) {
    DeviceGuard g(dst);
    cudaStream_t s = stream_of(dst);
    SMP_CUDA_CHECK(
        cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), src.nbytes(), cudaMemcpyHostToDevice, s));
    // From pageable memory the call returns once the bytes are staged, so the host buffer
    // may be reused at once. From pinned memory the DMA reads it later. Our pinned allocator
    // keeps a block from reuse until the event recorded here has passed, so with
    // non_blocking the host need not wait (PyTorch's non_blocking=True); without it, or for
    // other page-locked memory, the caller may rewrite the bytes as soon as we return: wait.
    if (src.storage() != nullptr && record_pinned_use(src.storage()->data(), s)) {
      if (!kernels::non_blocking_copy()) SMP_CUDA_CHECK(cudaStreamSynchronize(s));
      return;
    }
    cudaPointerAttributes attr{};
    if (cudaPointerGetAttributes(&attr, src.data_ptr()) == cudaSuccess) {
      if (attr.type == cudaMemoryTypeHost) SMP_CUDA_CHECK(cudaStreamSynchronize(s));
    } else {
      (void)cudaGetLastError();
    }
    return;
  }
  DeviceGuard g(src);
  cudaStream_t s = stream_of(src);
  SMP_CUDA_CHECK(
      cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), src.nbytes(), cudaMemcpyDeviceToHost, s));
  SMP_CUDA_CHECK(cudaStreamSynchronize(s));
}

void arange_cuda(const Tensor& out, const Scalar& start, const Scalar& step) {
  int64_t n = out.numel();
  if (n == 0) return;
  DeviceGuard g(out);
  SMP_DISPATCH_ALL(out.dtype(), "arange", [&] {
    arange_kernel<scalar_t><<<blocks_for(n), kThreads, 0, stream_of(out)>>>(
        static_cast<scalar_t*>(out.data_ptr()), n, start.to_double(), step.to_double());
    SMP_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace

SMP_REGISTER_KERNELS(kCUDA, {
  t.fill = &fill_cuda;
  t.copy = &copy_cuda;
  t.copy_across_devices = &copy_across_devices_cuda;
  t.arange = &arange_cuda;
});

}  // namespace smp::cuda
