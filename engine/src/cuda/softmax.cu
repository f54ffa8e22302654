// CUDA kernels for softmax and log-softmax along one dim, forward and backward. Inputs are
// contiguous (the front end sees to it); 16-bit floats compute in float.
#include "cuda/nn_common.cuh"
#include "kernels.h"

namespace smp::cuda {
namespace {

// ---- softmax ------------------------------------------------------------------------------

// Rows of D contiguous elements (the softmax dim is innermost).
template <class T, int G>
__global__ void softmax_rows_kernel(T* out, const T* in, int64_t rows, int64_t D, bool log) {
  using A = acc_t<T>;
  __shared__ A shm[32];
  const int lane = static_cast<int>(threadIdx.x % G);
  SMP_FOR_EACH_ROW(G, row, rows) {
    const T* x = in + row * D;
    T* y = out + row * D;
    A mx = neg_inf<A>();
    for (int64_t j = lane; j < D; j += G) {
      A v = convert<A>(x[j]);
      mx = (mx != mx) ? mx : (v != v || v > mx ? v : mx);
    }
    mx = group_max<G>(mx, shm);
    A sum = A(0);
    for (int64_t j = lane; j < D; j += G) sum += ::exp(convert<A>(x[j]) - mx);
    sum = group_sum<G>(sum, shm);
    if (log) {
      A lse = ::log(sum);
      for (int64_t j = lane; j < D; j += G) y[j] = convert<T>(convert<A>(x[j]) - mx - lse);
    } else {
      A inv = A(1) / sum;
      for (int64_t j = lane; j < D; j += G) y[j] = convert<T>(::exp(convert<A>(x[j]) - mx) * inv);
    }
  }
}

// (outer, D, inner) with inner > 1: one thread per (outer, inner) column; neighbouring
// threads read neighbouring elements.
template <class T>
__global__ void softmax_cols_kernel(T* out, const T* in, int64_t outer, int64_t D, int64_t inner,
                                    bool log) {
  using A = acc_t<T>;
  int64_t n = outer * inner, stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < n;
       t += stride) {
    int64_t o = t / inner, i = t - o * inner;
    const T* x = in + o * D * inner + i;
    T* y = out + o * D * inner + i;
    A mx = neg_inf<A>();
    for (int64_t j = 0; j < D; ++j) {
      A v = convert<A>(x[j * inner]);
      mx = (mx != mx) ? mx : (v != v || v > mx ? v : mx);
    }
    A sum = A(0);
    for (int64_t j = 0; j < D; ++j) sum += ::exp(convert<A>(x[j * inner]) - mx);
    if (log) {
      A lse = ::log(sum);
      for (int64_t j = 0; j < D; ++j)
        y[j * inner] = convert<T>(convert<A>(x[j * inner]) - mx - lse);
    } else {
      A inv = A(1) / sum;
      for (int64_t j = 0; j < D; ++j)
        y[j * inner] = convert<T>(::exp(convert<A>(x[j * inner]) - mx) * inv);
    }
  }
}

// softmax: gi = y·(g − Σ g·y); log_softmax: gi = g − exp(y)·Σ g.
template <class T, int G>
__global__ void softmax_bwd_rows_kernel(T* gi, const T* go, const T* yv, int64_t rows, int64_t D,
                                        bool log) {
  using A = acc_t<T>;
  __shared__ A shm[32];
  const int lane = static_cast<int>(threadIdx.x % G);
  SMP_FOR_EACH_ROW(G, row, rows) {
    const T* g = go + row * D;
    const T* y = yv + row * D;
    T* d = gi + row * D;
    A s = A(0);
    for (int64_t j = lane; j < D; j += G)
      s += log ? convert<A>(g[j]) : convert<A>(g[j]) * convert<A>(y[j]);
    s = group_sum<G>(s, shm);
    for (int64_t j = lane; j < D; j += G) {
      A gj = convert<A>(g[j]), yj = convert<A>(y[j]);
      d[j] = convert<T>(log ? gj - ::exp(yj) * s : yj * (gj - s));
    }
  }
}

template <class T>
__global__ void softmax_bwd_cols_kernel(T* gi, const T* go, const T* yv, int64_t outer, int64_t D,
                                        int64_t inner, bool log) {
  using A = acc_t<T>;
  int64_t n = outer * inner, stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < n;
       t += stride) {
    int64_t o = t / inner, i = t - o * inner, base = o * D * inner + i;
    A s = A(0);
    for (int64_t j = 0; j < D; ++j) {
      int64_t k = base + j * inner;
      s += log ? convert<A>(go[k]) : convert<A>(go[k]) * convert<A>(yv[k]);
    }
    for (int64_t j = 0; j < D; ++j) {
      int64_t k = base + j * inner;
      A gj = convert<A>(go[k]), yj = convert<A>(yv[k]);
      gi[k] = convert<T>(log ? gj - ::exp(yj) * s : yj * (gj - s));
    }
  }
}

void softmax_forward_cuda(const Tensor& out, const Tensor& in, int64_t dim, bool log) {
  if (out.numel() == 0) return;
  DeviceGuard g(out);
  Tensor x = contiguous(in);
  int64_t outer, D, inner;
  outer_dim_inner(x, dim, outer, D, inner);
  cudaStream_t st = stream_of(out);
  SMP_DISPATCH_FLOATING_AND_HALF(x.dtype(), "softmax", [&] {
    auto* y = mptr<scalar_t>(out);
    const auto* xp = cptr<scalar_t>(x);
    if (inner == 1) {
      launch_rows(outer, D, st, [&](auto G, unsigned grid, int block, cudaStream_t s) {
        softmax_rows_kernel<scalar_t, decltype(G)::value>
            <<<grid, block, 0, s>>>(y, xp, outer, D, log);
      });
    } else {
      softmax_cols_kernel<scalar_t>
          <<<blocks_for(outer * inner), kThreads, 0, st>>>(y, xp, outer, D, inner, log);
    }
    SMP_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void softmax_backward_cuda(const Tensor& grad_input, const Tensor& grad_out, const Tensor& out,
                           int64_t dim, bool log) {
  if (grad_input.numel() == 0) return;
  DeviceGuard g(grad_input);
  Tensor go = contiguous(grad_out), y = contiguous(out);
  int64_t outer, D, inner;
  outer_dim_inner(y, dim, outer, D, inner);
  cudaStream_t st = stream_of(grad_input);
  SMP_DISPATCH_FLOATING_AND_HALF(y.dtype(), "softmax_backward", [&] {
    auto* gi = mptr<scalar_t>(grad_input);
    const auto* gp = cptr<scalar_t>(go);
    const auto* yp = cptr<scalar_t>(y);
    if (inner == 1) {
      launch_rows(outer, D, st, [&](auto G, unsigned grid, int block, cudaStream_t s) {
        softmax_bwd_rows_kernel<scalar_t, decltype(G)::value>
            <<<grid, block, 0, s>>>(gi, gp, yp, outer, D, log);
      });
    } else {
      softmax_bwd_cols_kernel<scalar_t>
          <<<blocks_for(outer * inner), kThreads, 0, st>>>(gi, gp, yp, outer, D, inner, log);
    }
    SMP_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace

SMP_REGISTER_KERNELS(kCUDA, {
  t.softmax_forward = &softmax_forward_cuda;
  t.softmax_backward = &softmax_backward_cuda;
});

}  // namespace smp::cuda
