// CUDA kernels for batch normalisation, forward (training and eval) and backward. Inputs
// are contiguous (the front end sees to it); 16-bit floats compute in float.
#include "cuda/nn_common.cuh"
#include "kernels.h"

namespace smp::cuda {
namespace {

// ---- batch norm (input (N, C, S) contiguous; per-channel params in the input's dtype) ------

// One block per channel: batch mean and biased variance, save_mean/save_invstd, running
// stats (unbiased variance, as PyTorch), then the normalised output.
template <class T>
__global__ void bn_train_fwd_kernel(T* out, T* save_mean, T* save_invstd, const T* in, const T* w,
                                    const T* b, T* rm, T* rv, int64_t N, int64_t C, int64_t S,
                                    double momentum, double eps) {
  using A = acc_t<T>;
  __shared__ A shm[32];
  int64_t cnt = N * S;
  for (int64_t c = blockIdx.x; c < C; c += gridDim.x) {
    A s = A(0);
    for (int64_t j = threadIdx.x; j < cnt; j += blockDim.x) {
      int64_t n = j / S, k = j - n * S;
      s += convert<A>(in[(n * C + c) * S + k]);
    }
    A mu = group_sum<kBnThreads>(s, shm) / static_cast<A>(cnt);
    A q = A(0);
    for (int64_t j = threadIdx.x; j < cnt; j += blockDim.x) {
      int64_t n = j / S, k = j - n * S;
      A d = convert<A>(in[(n * C + c) * S + k]) - mu;
      q += d * d;
    }
    A sq = group_sum<kBnThreads>(q, shm);
    A var = sq / static_cast<A>(cnt);
    A invstd = A(1) / ::sqrt(var + static_cast<A>(eps));
    if (threadIdx.x == 0) {
      save_mean[c] = convert<T>(mu);
      save_invstd[c] = convert<T>(invstd);
      if (rm) {
        A unbiased = cnt > 1 ? sq / static_cast<A>(cnt - 1) : var;
        A m = static_cast<A>(momentum);
        rm[c] = convert<T>((A(1) - m) * convert<A>(rm[c]) + m * mu);
        rv[c] = convert<T>((A(1) - m) * convert<A>(rv[c]) + m * unbiased);
      }
    }
    A scale = invstd * (w ? convert<A>(w[c]) : A(1));
    A shift = (b ? convert<A>(b[c]) : A(0)) - mu * scale;
    for (int64_t j = threadIdx.x; j < cnt; j += blockDim.x) {
      int64_t n = j / S, k = j - n * S;
      int64_t i = (n * C + c) * S + k;
      out[i] = convert<T>(convert<A>(in[i]) * scale + shift);
    }
  }
}

template <class T>
__global__ void bn_eval_fwd_kernel(T* out, const T* in, const T* w, const T* b, const T* rm,
                                   const T* rv, int64_t total, int64_t C, int64_t S, double eps) {
  using A = acc_t<T>;
  int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    int64_t c = (i / S) % C;
    A invstd = A(1) / ::sqrt(convert<A>(rv[c]) + static_cast<A>(eps));
    A v = (convert<A>(in[i]) - convert<A>(rm[c])) * invstd;
    if (w) v *= convert<A>(w[c]);
    if (b) v += convert<A>(b[c]);
    out[i] = convert<T>(v);
  }
}

template <class T>
__global__ void bn_bwd_kernel(T* gx, T* gw, T* gb, const T* go, const T* in, const T* w,
                              const T* mean, const T* invstd, int64_t N, int64_t C, int64_t S,
                              bool training) {
  using A = acc_t<T>;
  __shared__ A shm[32];
  int64_t cnt = N * S;
  for (int64_t c = blockIdx.x; c < C; c += gridDim.x) {
    A mu = convert<A>(mean[c]), is = convert<A>(invstd[c]);
    A s_dy = A(0), s_dyx = A(0);
    for (int64_t j = threadIdx.x; j < cnt; j += blockDim.x) {
      int64_t n = j / S, k = j - n * S;
      int64_t i = (n * C + c) * S + k;
      A dy = convert<A>(go[i]);
      s_dy += dy;
      s_dyx += dy * (convert<A>(in[i]) - mu) * is;
    }
    s_dy = group_sum<kBnThreads>(s_dy, shm);
    s_dyx = group_sum<kBnThreads>(s_dyx, shm);
    if (threadIdx.x == 0) {
      if (gw) gw[c] = convert<T>(s_dyx);
      if (gb) gb[c] = convert<T>(s_dy);
    }
    if (gx) {
      A wc = w ? convert<A>(w[c]) : A(1);
      A k1 = wc * is;
      A mdy = s_dy / static_cast<A>(cnt), mdyx = s_dyx / static_cast<A>(cnt);
      for (int64_t j = threadIdx.x; j < cnt; j += blockDim.x) {
        int64_t n = j / S, k = j - n * S;
        int64_t i = (n * C + c) * S + k;
        A dy = convert<A>(go[i]);
        A v = training ? k1 * (dy - mdy - (convert<A>(in[i]) - mu) * is * mdyx) : k1 * dy;
        gx[i] = convert<T>(v);
      }
    }
  }
}

void nc_s(const Tensor& x, int64_t& N, int64_t& C, int64_t& S) {
  N = x.size(0);
  C = x.dim() > 1 ? x.size(1) : 1;
  S = 1;
  for (int64_t d = 2; d < x.dim(); ++d) S *= x.size(d);
}

void batch_norm_forward_cuda(const Tensor& out, const Tensor& save_mean, const Tensor& save_invstd,
                             const Tensor& input, const Tensor& weight, const Tensor& bias,
                             const Tensor& running_mean, const Tensor& running_var, bool training,
                             double momentum, double eps) {
  if (out.numel() == 0) return;
  DeviceGuard g(out);
  Tensor x = contiguous(input);
  int64_t N, C, S;
  nc_s(x, N, C, S);
  cudaStream_t st = stream_of(out);
  SMP_DISPATCH_FLOATING_AND_HALF(x.dtype(), "batch_norm", [&] {
    using T = scalar_t;
    if (training) {
      unsigned grid = static_cast<unsigned>(std::min<int64_t>(C, 65535));
      bn_train_fwd_kernel<T><<<grid, kBnThreads, 0, st>>>(
          mptr<T>(out), mptr<T>(save_mean), mptr<T>(save_invstd), cptr<T>(x), cptr<T>(weight),
          cptr<T>(bias), mptr<T>(running_mean), mptr<T>(running_var), N, C, S, momentum, eps);
    } else {
      bn_eval_fwd_kernel<T><<<blocks_for(x.numel()), kThreads, 0, st>>>(
          mptr<T>(out), cptr<T>(x), cptr<T>(weight), cptr<T>(bias), cptr<T>(running_mean),
          cptr<T>(running_var), x.numel(), C, S, eps);
    }
    SMP_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void batch_norm_backward_cuda(const Tensor& grad_input, const Tensor& grad_weight,
                              const Tensor& grad_bias, const Tensor& grad_out, const Tensor& input,
                              const Tensor& weight, const Tensor& mean, const Tensor& invstd,
                              bool training) {
  if (input.numel() == 0) return;
  DeviceGuard g(input);
  Tensor x = contiguous(input), go = contiguous(grad_out);
  Tensor m = contiguous(mean), is = contiguous(invstd);
  int64_t N, C, S;
  nc_s(x, N, C, S);
  cudaStream_t st = stream_of(input);
  SMP_DISPATCH_FLOATING_AND_HALF(x.dtype(), "batch_norm_backward", [&] {
    using T = scalar_t;
    unsigned grid = static_cast<unsigned>(std::min<int64_t>(C, 65535));
    bn_bwd_kernel<T><<<grid, kBnThreads, 0, st>>>(
        mptr<T>(grad_input), mptr<T>(grad_weight), mptr<T>(grad_bias), cptr<T>(go), cptr<T>(x),
        cptr<T>(weight), cptr<T>(m), cptr<T>(is), N, C, S, training);
    SMP_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace

SMP_REGISTER_KERNELS(kCUDA, {
  t.batch_norm_forward = &batch_norm_forward_cuda;
  t.batch_norm_backward = &batch_norm_backward_cuda;
});

}  // namespace smp::cuda
