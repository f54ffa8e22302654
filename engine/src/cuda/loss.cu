// CUDA kernels for the NLL loss, forward and backward. Inputs are contiguous (the front
// end sees to it); 16-bit floats compute in float.
#include "cuda/nn_common.cuh"
#include "kernels.h"

namespace smp::cuda {
namespace {

// ---- NLL loss -----------------------------------------------------------------------------

// One block: per-sample losses (Reduction::None), their sum and the count of used targets.
// A target outside [0, C) that is not ignore_index yields NaN, since a kernel cannot throw.
template <class T>
__global__ void nll_fwd_kernel(T* out, T* total_weight, const T* in, const int64_t* target,
                               int64_t tstride, int64_t N, int64_t C, int reduction,
                               int64_t ignore_index) {
  using A = acc_t<T>;
  __shared__ A shm[32];
  A s = A(0), cnt = A(0);
  for (int64_t i = threadIdx.x; i < N; i += blockDim.x) {
    int64_t t = target[i * tstride];
    A l = A(0);
    if (t != ignore_index) {
      l = (t >= 0 && t < C) ? -convert<A>(in[i * C + t]) : A(NAN);
      cnt += A(1);
    }
    s += l;
    if (reduction == static_cast<int>(Reduction::None)) out[i] = convert<T>(l);
  }
  s = group_sum<kBnThreads>(s, shm);
  cnt = group_sum<kBnThreads>(cnt, shm);
  if (threadIdx.x == 0) {
    *total_weight = convert<T>(cnt);
    if (reduction == static_cast<int>(Reduction::Sum))
      *out = convert<T>(s);
    else if (reduction == static_cast<int>(Reduction::Mean))
      *out = convert<T>(s / cnt);
  }
}

template <class T>
__global__ void nll_bwd_kernel(T* gi, const T* go, int64_t gstride, const int64_t* target,
                               int64_t tstride, const T* total_weight, int64_t N, int64_t C,
                               int reduction, int64_t ignore_index) {
  using A = acc_t<T>;
  int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < N;
       i += stride) {
    int64_t t = target[i * tstride];
    if (t == ignore_index || t < 0 || t >= C) continue;
    A g = reduction == static_cast<int>(Reduction::None) ? convert<A>(go[i * gstride])
                                                         : convert<A>(go[0]);
    if (reduction == static_cast<int>(Reduction::Mean)) g /= convert<A>(*total_weight);
    gi[i * C + t] = convert<T>(-g);
  }
}

void nll_loss_forward_cuda(const Tensor& out, const Tensor& total_weight, const Tensor& input,
                           const Tensor& target, Reduction reduction, int64_t ignore_index) {
  DeviceGuard dg(input);
  Tensor x = contiguous(input);
  SMP_CHECK(target.dtype() == kInt64, "nll_loss: target must be int64, got {}",
            dtype_name(target.dtype()));
  int64_t N = x.size(0), C = x.dim() > 1 ? x.size(1) : 1;
  int64_t ts = target.dim() > 0 ? target.stride(0) : 0;
  SMP_DISPATCH_FLOATING_AND_HALF(x.dtype(), "nll_loss", [&] {
    nll_fwd_kernel<scalar_t><<<1, kBnThreads, 0, stream_of(input)>>>(
        mptr<scalar_t>(out), mptr<scalar_t>(total_weight), cptr<scalar_t>(x),
        target.data_ptr<int64_t>(), ts, N, C, static_cast<int>(reduction), ignore_index);
    SMP_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void nll_loss_backward_cuda(const Tensor& grad_input, const Tensor& grad_out, const Tensor& target,
                            const Tensor& total_weight, Reduction reduction, int64_t ignore_index) {
  if (grad_input.numel() == 0) return;
  DeviceGuard dg(grad_input);
  int64_t N = grad_input.size(0), C = grad_input.dim() > 1 ? grad_input.size(1) : 1;
  int64_t ts = target.dim() > 0 ? target.stride(0) : 0;
  int64_t gs = grad_out.dim() > 0 ? grad_out.stride(0) : 0;
  SMP_DISPATCH_FLOATING_AND_HALF(grad_input.dtype(), "nll_loss_backward", [&] {
    nll_bwd_kernel<scalar_t><<<blocks_for(N), kThreads, 0, stream_of(grad_input)>>>(
        mptr<scalar_t>(grad_input), cptr<scalar_t>(grad_out), gs, target.data_ptr<int64_t>(), ts,
        cptr<scalar_t>(total_weight), N, C, static_cast<int>(reduction), ignore_index);
    SMP_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace

SMP_REGISTER_KERNELS(kCUDA, {
  t.nll_loss_forward = &nll_loss_forward_cuda;
  t.nll_loss_backward = &nll_loss_backward_cuda;
});

}  // namespace smp::cuda
