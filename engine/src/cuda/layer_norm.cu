// CUDA kernels for layer normalisation, forward and backward. Inputs are contiguous (the
// front end sees to it); 16-bit floats compute in float.
#include "cuda/nn_common.cuh"
#include "kernels.h"

namespace smp::cuda {
namespace {

// ---- layer norm ---------------------------------------------------------------------------

// S: dtype of mean/rstd (float, or double for double inputs).
template <class T, class S, int G>
__global__ void layer_norm_fwd_kernel(T* out, S* mean, S* rstd, const T* in, const T* w, const T* b,
                                      int64_t M, int64_t N, double eps) {
  using A = acc_t<T>;
  __shared__ A shm[32];
  const int lane = static_cast<int>(threadIdx.x % G);
  SMP_FOR_EACH_ROW(G, row, M) {
    const T* x = in + row * N;
    T* y = out + row * N;
    A s = A(0);
    for (int64_t j = lane; j < N; j += G) s += convert<A>(x[j]);
    A mu = group_sum<G>(s, shm) / static_cast<A>(N);
    A q = A(0);
    for (int64_t j = lane; j < N; j += G) {
      A d = convert<A>(x[j]) - mu;
      q += d * d;
    }
    A var = group_sum<G>(q, shm) / static_cast<A>(N);
    A r = A(1) / ::sqrt(var + static_cast<A>(eps));
    for (int64_t j = lane; j < N; j += G) {
      A v = (convert<A>(x[j]) - mu) * r;
      if (w) v *= convert<A>(w[j]);
      if (b) v += convert<A>(b[j]);
      y[j] = convert<T>(v);
    }
    if (lane == 0) {
      mean[row] = static_cast<S>(mu);
      rstd[row] = static_cast<S>(r);
    }
  }
}

// dx = rstd·(g·w − mean(g·w) − x̂·mean(g·w·x̂)) per row.
template <class T, class S, int G>
__global__ void layer_norm_bwd_input_kernel(T* gx, const T* go, const T* in, const S* mean,
                                            const S* rstd, const T* w, int64_t M, int64_t N) {
  using A = acc_t<T>;
  __shared__ A shm[32];
  const int lane = static_cast<int>(threadIdx.x % G);
  SMP_FOR_EACH_ROW(G, row, M) {
    const T* x = in + row * N;
    const T* g = go + row * N;
    A mu = static_cast<A>(mean[row]), r = static_cast<A>(rstd[row]);
    A s1 = A(0), s2 = A(0);
    for (int64_t j = lane; j < N; j += G) {
      A gw = convert<A>(g[j]) * (w ? convert<A>(w[j]) : A(1));
      s1 += gw;
      s2 += gw * (convert<A>(x[j]) - mu) * r;
    }
    s1 = group_sum<G>(s1, shm) / static_cast<A>(N);
    s2 = group_sum<G>(s2, shm) / static_cast<A>(N);
    for (int64_t j = lane; j < N; j += G) {
      A gw = convert<A>(g[j]) * (w ? convert<A>(w[j]) : A(1));
      A xh = (convert<A>(x[j]) - mu) * r;
      gx[row * N + j] = convert<T>(r * (gw - s1 - xh * s2));
    }
  }
}

// Partial column sums of g·x̂ and g over a chunk of rows: partial[(chunk, j)].
template <class T, class S>
__global__ void layer_norm_bwd_params_kernel(acc_t<T>* pw, acc_t<T>* pb, const T* go, const T* in,
                                             const S* mean, const S* rstd, int64_t M, int64_t N,
                                             int64_t rows_per_chunk) {
  using A = acc_t<T>;
  int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t c = blockIdx.y;
  if (j >= N) return;
  int64_t r0 = c * rows_per_chunk, r1 = r0 + rows_per_chunk < M ? r0 + rows_per_chunk : M;
  A sw = A(0), sb = A(0);
  for (int64_t i = r0; i < r1; ++i) {
    A g = convert<A>(go[i * N + j]);
    sw += g * (convert<A>(in[i * N + j]) - static_cast<A>(mean[i])) * static_cast<A>(rstd[i]);
    sb += g;
  }
  pw[c * N + j] = sw;
  pb[c * N + j] = sb;
}

template <class T>
__global__ void sum_chunks_kernel(T* out, const acc_t<T>* partial, int64_t chunks, int64_t N) {
  using A = acc_t<T>;
  int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < N;
       j += stride) {
    A s = A(0);
    for (int64_t c = 0; c < chunks; ++c) s += partial[c * N + j];
    out[j] = convert<T>(s);
  }
}

template <class F>
void dispatch_stats(Dtype in, Dtype stat, F&& f) {
  SMP_DISPATCH_FLOATING_AND_HALF(in, "layer_norm", [&] {
    if (stat == kFloat32) {
      f(scalar_t{}, float{});
    } else {
      SMP_CHECK(stat == kFloat64 && in == kFloat64,
                "layer_norm: statistics dtype {} does not fit input dtype {}", dtype_name(stat),
                dtype_name(in));
      if constexpr (std::is_same_v<scalar_t, double>) f(double{}, double{});
    }
  });
}

void layer_norm_forward_cuda(const Tensor& out, const Tensor& mean, const Tensor& rstd,
                             const Tensor& input, const Tensor& weight, const Tensor& bias,
                             int64_t M, int64_t N, double eps) {
  if (M == 0 || N == 0) return;
  DeviceGuard g(out);
  Tensor x = contiguous(input);
  Tensor w = weight.defined() ? contiguous(weight) : Tensor();
  Tensor b = bias.defined() ? contiguous(bias) : Tensor();
  cudaStream_t st = stream_of(out);
  dispatch_stats(x.dtype(), mean.dtype(), [&](auto tt, auto ss) {
    using T = decltype(tt);
    using S = decltype(ss);
    launch_rows(M, N, st, [&](auto G, unsigned grid, int block, cudaStream_t s) {
      layer_norm_fwd_kernel<T, S, decltype(G)::value>
          <<<grid, block, 0, s>>>(mptr<T>(out), mptr<S>(mean), mptr<S>(rstd), cptr<T>(x),
                                  cptr<T>(w), cptr<T>(b), M, N, eps);
    });
    SMP_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void layer_norm_backward_cuda(const Tensor& grad_input, const Tensor& grad_weight,
                              const Tensor& grad_bias, const Tensor& grad_out, const Tensor& input,
                              const Tensor& mean, const Tensor& rstd, const Tensor& weight,
                              int64_t M, int64_t N) {
  if (N == 0) return;
  DeviceGuard g(input);
  Tensor go = contiguous(grad_out), x = contiguous(input);
  Tensor w = weight.defined() ? contiguous(weight) : Tensor();
  cudaStream_t st = stream_of(input);
  if (M == 0) {
    for (const Tensor& t : {grad_weight, grad_bias})
      if (t.defined()) SMP_KERNEL(fill, t.device())(t, 0);
    return;
  }
  dispatch_stats(x.dtype(), mean.dtype(), [&](auto tt, auto ss) {
    using T = decltype(tt);
    using S = decltype(ss);
    using A = acc_t<T>;
    if (grad_input.defined()) {
      launch_rows(M, N, st, [&](auto G, unsigned grid, int block, cudaStream_t s) {
        layer_norm_bwd_input_kernel<T, S, decltype(G)::value>
            <<<grid, block, 0, s>>>(mptr<T>(grad_input), cptr<T>(go), cptr<T>(x), cptr<S>(mean),
                                    cptr<S>(rstd), cptr<T>(w), M, N);
      });
      SMP_CUDA_KERNEL_LAUNCH_CHECK();
    }
    if (grad_weight.defined() || grad_bias.defined()) {
      int64_t rows_per_chunk = 128;
      int64_t chunks = std::min<int64_t>((M + rows_per_chunk - 1) / rows_per_chunk, 1024);
      rows_per_chunk = (M + chunks - 1) / chunks;
      Workspace ws(2 * static_cast<size_t>(chunks * N) * sizeof(A), input.device().index());
      A* pw = static_cast<A*>(ws.data());
      A* pb = pw + chunks * N;
      dim3 grid(static_cast<unsigned>((N + kThreads - 1) / kThreads),
                static_cast<unsigned>(chunks));
      layer_norm_bwd_params_kernel<T, S><<<grid, kThreads, 0, st>>>(
          pw, pb, cptr<T>(go), cptr<T>(x), cptr<S>(mean), cptr<S>(rstd), M, N, rows_per_chunk);
      SMP_CUDA_KERNEL_LAUNCH_CHECK();
      if (grad_weight.defined())
        sum_chunks_kernel<T>
            <<<blocks_for(N), kThreads, 0, st>>>(mptr<T>(grad_weight), pw, chunks, N);
      if (grad_bias.defined())
        sum_chunks_kernel<T><<<blocks_for(N), kThreads, 0, st>>>(mptr<T>(grad_bias), pb, chunks, N);
      SMP_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
}

}  // namespace

SMP_REGISTER_KERNELS(kCUDA, {
  t.layer_norm_forward = &layer_norm_forward_cuda;
  t.layer_norm_backward = &layer_norm_backward_cuda;
});

}  // namespace smp::cuda
