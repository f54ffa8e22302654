// CUDA kernels for the nn ops: softmax, layer and batch normalisation, pooling, the NLL
// loss, and index_select / index_add. Inputs are contiguous (the front ends see to it);
// 16-bit floats compute in float.
//
// Row-wise ops give each row to a group of G threads (a warp for short rows, a block for
// long ones) and combine within the group by shuffles, so results do not depend on the
// launch geometry.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <limits>

#include "cuda/loops.cuh"
#include "kernels.h"
#include "ops/op_utils.h"

namespace smp::cuda {
namespace {

using kernels::PoolParams;

template <class A>
__device__ inline A neg_inf() {
  return -std::numeric_limits<A>::infinity();
}

template <class T>
const T* cptr(const Tensor& t) {
  return t.defined() ? static_cast<const T*>(t.data_ptr()) : nullptr;
}
template <class T>
T* mptr(const Tensor& t) {
  return t.defined() ? static_cast<T*>(t.data_ptr()) : nullptr;
}

// Accumulating stores where several threads may hit one element.
template <class T>
__device__ inline void atomic_add(T* p, acc_t<T> v) {
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    atomicAdd(p, v);
  } else if constexpr (std::is_same_v<T, Half>) {
    atomicAdd(reinterpret_cast<__half*>(p), __float2half_rn(v));
  } else if constexpr (std::is_same_v<T, BFloat16>) {
    atomicAdd(reinterpret_cast<__nv_bfloat16*>(p), __float2bfloat16_rn(v));
  } else if constexpr (std::is_same_v<T, int64_t>) {
    atomicAdd(reinterpret_cast<unsigned long long*>(p), static_cast<unsigned long long>(v));
  } else if constexpr (std::is_same_v<T, int32_t>) {
    atomicAdd(p, static_cast<int32_t>(v));
  }
}

#define SMP_DISPATCH_ATOMIC(dt, name, ...)                                               \
  SMP_DISPATCH_SWITCH(dt, name,                                                          \
                      SMP_DTYPE_CASE(Float32, float, __VA_ARGS__)                        \
                          SMP_DTYPE_CASE(Float64, double, __VA_ARGS__)                   \
                              SMP_DTYPE_CASE(Float16, ::smp::Half, __VA_ARGS__)          \
                                  SMP_DTYPE_CASE(BFloat16, ::smp::BFloat16, __VA_ARGS__) \
                                      SMP_DTYPE_CASE(Int64, int64_t, __VA_ARGS__)        \
                                          SMP_DTYPE_CASE(Int32, int32_t, __VA_ARGS__))

/// Rows handled by one group: loops `row` over [0, rows) for the calling thread's group.
#define SMP_FOR_EACH_ROW(G, row, rows)                                                          \
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * (blockDim.x / (G)) + threadIdx.x / (G); \
       row < (rows); row += static_cast<int64_t>(gridDim.x) * (blockDim.x / (G)))

template <class F>
void launch_rows(int64_t rows, int64_t len, cudaStream_t st, F&& f) {
  // f(G, grid, block)
  if (len <= 1024)
    f(std::integral_constant<int, 32>{}, blocks_for(rows, kThreads / 32), kThreads, st);
  else
    f(std::integral_constant<int, 256>{}, blocks_for(rows, 1), 256, st);
}

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

void outer_dim_inner(const Tensor& t, int64_t dim, int64_t& outer, int64_t& D, int64_t& inner) {
  outer = 1;
  inner = 1;
  D = t.dim() == 0 ? 1 : t.size(dim);
  for (int64_t d = 0; d < dim; ++d) outer *= t.size(d);
  for (int64_t d = dim + 1; d < t.dim(); ++d) inner *= t.size(d);
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

// ---- batch norm (input (N, C, S) contiguous; per-channel params in the input's dtype) ------

constexpr int kBnThreads = 512;

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

// ---- pooling (NCHW contiguous) ----------------------------------------------------------

struct PoolGeom {
  int64_t planes, H, W, OH, OW;
  int kh, kw, sh, sw, ph, pw, dh, dw;
  bool count_include_pad;
};

PoolGeom pool_geom(const Tensor& in, const Tensor& out, const PoolParams* p) {
  PoolGeom g{};
  int64_t nd = in.dim();
  g.H = in.size(nd - 2);
  g.W = in.size(nd - 1);
  g.OH = out.size(nd - 2);
  g.OW = out.size(nd - 1);
  g.planes = in.numel() / std::max<int64_t>(1, g.H * g.W);
  if (p) {
    g.kh = static_cast<int>(p->kernel[0]);
    g.kw = static_cast<int>(p->kernel[1]);
    g.sh = static_cast<int>(p->stride[0]);
    g.sw = static_cast<int>(p->stride[1]);
    g.ph = static_cast<int>(p->padding[0]);
    g.pw = static_cast<int>(p->padding[1]);
    g.dh = static_cast<int>(p->dilation[0]);
    g.dw = static_cast<int>(p->dilation[1]);
    g.count_include_pad = p->count_include_pad;
  }
  return g;
}

// indices: flat offsets h·W + w within the (n, c) plane. NaN wins, as in PyTorch.
template <class T>
__global__ void max_pool_fwd_kernel(T* out, int64_t* indices, const T* in, PoolGeom g) {
  using A = acc_t<T>;
  int64_t total = g.planes * g.OH * g.OW, stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    int64_t ow = i % g.OW, oh = (i / g.OW) % g.OH, pl = i / (g.OW * g.OH);
    const T* x = in + pl * g.H * g.W;
    int64_t hs = oh * g.sh - g.ph, ws = ow * g.sw - g.pw;
    int64_t h0 = hs, w0 = ws;
    while (h0 < 0) h0 += g.dh;
    while (w0 < 0) w0 += g.dw;
    A best = neg_inf<A>();
    int64_t bi = h0 * g.W + w0;
    for (int a = 0; a < g.kh; ++a) {
      int64_t h = hs + static_cast<int64_t>(a) * g.dh;
      if (h < 0 || h >= g.H) continue;
      for (int b = 0; b < g.kw; ++b) {
        int64_t w = ws + static_cast<int64_t>(b) * g.dw;
        if (w < 0 || w >= g.W) continue;
        A v = convert<A>(x[h * g.W + w]);
        if (v > best || v != v) {
          best = v;
          bi = h * g.W + w;
          if (v != v) {
            a = g.kh;  // NaN found: stop
            break;
          }
        }
      }
    }
    out[i] = convert<T>(best);
    indices[i] = bi;
  }
}

template <class T>
__global__ void max_pool_bwd_kernel(T* gi, const T* go, const int64_t* indices, int64_t planes,
                                    int64_t in_plane, int64_t out_plane) {
  int64_t total = planes * out_plane, stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    int64_t pl = i / out_plane;
    int64_t idx = indices[i];
    if (idx >= 0 && idx < in_plane) atomic_add(gi + pl * in_plane + idx, convert<acc_t<T>>(go[i]));
  }
}

// PyTorch's window: [oh·s − p, min(oh·s − p + k, H + p)) clipped to the input; the divisor
// counts padding unless count_include_pad is off.
__device__ inline void avg_window(int64_t o, int k, int s, int p, int64_t L, int64_t& a, int64_t& b,
                                  int64_t& padded) {
  a = o * s - p;
  b = a + k < L + p ? a + k : L + p;
  padded = b - a;
  if (a < 0) a = 0;
  if (b > L) b = L;
}

template <class T>
__global__ void avg_pool_fwd_kernel(T* out, const T* in, PoolGeom g) {
  using A = acc_t<T>;
  int64_t total = g.planes * g.OH * g.OW, stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    int64_t ow = i % g.OW, oh = (i / g.OW) % g.OH, pl = i / (g.OW * g.OH);
    const T* x = in + pl * g.H * g.W;
    int64_t h0, h1, ph, w0, w1, pw;
    avg_window(oh, g.kh, g.sh, g.ph, g.H, h0, h1, ph);
    avg_window(ow, g.kw, g.sw, g.pw, g.W, w0, w1, pw);
    A s = A(0);
    for (int64_t h = h0; h < h1; ++h)
      for (int64_t w = w0; w < w1; ++w) s += convert<A>(x[h * g.W + w]);
    int64_t div = g.count_include_pad ? ph * pw : (h1 - h0) * (w1 - w0);
    out[i] = convert<T>(div > 0 ? s / static_cast<A>(div) : A(0));
  }
}

// Gather form: each input element sums the windows that contain it (no atomics).
template <class T>
__global__ void avg_pool_bwd_kernel(T* gi, const T* go, PoolGeom g) {
  using A = acc_t<T>;
  int64_t total = g.planes * g.H * g.W, stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    int64_t w = i % g.W, h = (i / g.W) % g.H, pl = i / (g.W * g.H);
    const T* gp = go + pl * g.OH * g.OW;
    // Windows with o·s − p ≤ h < o·s − p + k.
    int64_t oh0 = h + g.ph < g.kh ? 0 : (h + g.ph - g.kh) / g.sh + 1;
    int64_t oh1 = (h + g.ph) / g.sh + 1;
    int64_t ow0 = w + g.pw < g.kw ? 0 : (w + g.pw - g.kw) / g.sw + 1;
    int64_t ow1 = (w + g.pw) / g.sw + 1;
    if (oh1 > g.OH) oh1 = g.OH;
    if (ow1 > g.OW) ow1 = g.OW;
    A s = A(0);
    for (int64_t oh = oh0; oh < oh1; ++oh) {
      int64_t a0, a1, pa;
      avg_window(oh, g.kh, g.sh, g.ph, g.H, a0, a1, pa);
      if (h < a0 || h >= a1) continue;
      for (int64_t ow = ow0; ow < ow1; ++ow) {
        int64_t b0, b1, pb;
        avg_window(ow, g.kw, g.sw, g.pw, g.W, b0, b1, pb);
        if (w < b0 || w >= b1) continue;
        int64_t div = g.count_include_pad ? pa * pb : (a1 - a0) * (b1 - b0);
        if (div > 0) s += convert<A>(gp[oh * g.OW + ow]) / static_cast<A>(div);
      }
    }
    gi[i] = convert<T>(s);
  }
}

__device__ inline int64_t ad_start(int64_t o, int64_t in, int64_t out) { return (o * in) / out; }
__device__ inline int64_t ad_end(int64_t o, int64_t in, int64_t out) {
  return ((o + 1) * in + out - 1) / out;
}

template <class T>
__global__ void adaptive_avg_fwd_kernel(T* out, const T* in, PoolGeom g) {
  using A = acc_t<T>;
  int64_t total = g.planes * g.OH * g.OW, stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    int64_t ow = i % g.OW, oh = (i / g.OW) % g.OH, pl = i / (g.OW * g.OH);
    const T* x = in + pl * g.H * g.W;
    int64_t h0 = ad_start(oh, g.H, g.OH), h1 = ad_end(oh, g.H, g.OH);
    int64_t w0 = ad_start(ow, g.W, g.OW), w1 = ad_end(ow, g.W, g.OW);
    A s = A(0);
    for (int64_t h = h0; h < h1; ++h)
      for (int64_t w = w0; w < w1; ++w) s += convert<A>(x[h * g.W + w]);
    out[i] = convert<T>(s / static_cast<A>((h1 - h0) * (w1 - w0)));
  }
}

template <class T>
__global__ void adaptive_avg_bwd_kernel(T* gi, const T* go, PoolGeom g) {
  using A = acc_t<T>;
  int64_t total = g.planes * g.H * g.W, stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    int64_t w = i % g.W, h = (i / g.W) % g.H, pl = i / (g.W * g.H);
    const T* gp = go + pl * g.OH * g.OW;
    // Outputs whose region can contain h: [start(h; H→OH), end(h; H→OH)), checked exactly.
    int64_t oh0 = ad_start(h, g.OH, g.H), oh1 = ad_end(h, g.OH, g.H);
    int64_t ow0 = ad_start(w, g.OW, g.W), ow1 = ad_end(w, g.OW, g.W);
    A s = A(0);
    for (int64_t oh = oh0 > 0 ? oh0 - 1 : 0; oh < oh1 + 1 && oh < g.OH; ++oh) {
      int64_t a0 = ad_start(oh, g.H, g.OH), a1 = ad_end(oh, g.H, g.OH);
      if (h < a0 || h >= a1) continue;
      for (int64_t ow = ow0 > 0 ? ow0 - 1 : 0; ow < ow1 + 1 && ow < g.OW; ++ow) {
        int64_t b0 = ad_start(ow, g.W, g.OW), b1 = ad_end(ow, g.W, g.OW);
        if (w < b0 || w >= b1) continue;
        s += convert<A>(gp[oh * g.OW + ow]) / static_cast<A>((a1 - a0) * (b1 - b0));
      }
    }
    gi[i] = convert<T>(s);
  }
}

void max_pool2d_forward_cuda(const Tensor& out, const Tensor& indices, const Tensor& input,
                             const PoolParams& p) {
  if (out.numel() == 0) return;
  DeviceGuard dg(out);
  Tensor x = contiguous(input);
  PoolGeom g = pool_geom(x, out, &p);
  SMP_DISPATCH_FLOATING_AND_HALF(x.dtype(), "max_pool2d", [&] {
    max_pool_fwd_kernel<scalar_t><<<blocks_for(out.numel()), kThreads, 0, stream_of(out)>>>(
        mptr<scalar_t>(out), indices.data_ptr<int64_t>(), cptr<scalar_t>(x), g);
    SMP_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void max_pool2d_backward_cuda(const Tensor& grad_input, const Tensor& grad_out,
                              const Tensor& indices) {
  if (grad_input.numel() == 0) return;
  DeviceGuard dg(grad_input);
  SMP_KERNEL(fill, grad_input.device())(grad_input, 0);
  if (grad_out.numel() == 0) return;
  Tensor go = contiguous(grad_out), idx = contiguous(indices);
  PoolGeom g = pool_geom(grad_input, go, nullptr);
  SMP_DISPATCH_FLOATING_AND_HALF(go.dtype(), "max_pool2d_backward", [&] {
    max_pool_bwd_kernel<scalar_t><<<blocks_for(go.numel()), kThreads, 0, stream_of(grad_input)>>>(
        mptr<scalar_t>(grad_input), cptr<scalar_t>(go), idx.data_ptr<int64_t>(), g.planes,
        g.H * g.W, g.OH * g.OW);
    SMP_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void avg_pool2d_forward_cuda(const Tensor& out, const Tensor& input, const PoolParams& p) {
  if (out.numel() == 0) return;
  DeviceGuard dg(out);
  Tensor x = contiguous(input);
  PoolGeom g = pool_geom(x, out, &p);
  SMP_DISPATCH_FLOATING_AND_HALF(x.dtype(), "avg_pool2d", [&] {
    avg_pool_fwd_kernel<scalar_t><<<blocks_for(out.numel()), kThreads, 0, stream_of(out)>>>(
        mptr<scalar_t>(out), cptr<scalar_t>(x), g);
    SMP_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void avg_pool2d_backward_cuda(const Tensor& grad_input, const Tensor& grad_out,
                              const PoolParams& p) {
  if (grad_input.numel() == 0) return;
  DeviceGuard dg(grad_input);
  Tensor go = contiguous(grad_out);
  PoolGeom g = pool_geom(grad_input, go, &p);
  SMP_DISPATCH_FLOATING_AND_HALF(go.dtype(), "avg_pool2d_backward", [&] {
    avg_pool_bwd_kernel<scalar_t>
        <<<blocks_for(grad_input.numel()), kThreads, 0, stream_of(grad_input)>>>(
            mptr<scalar_t>(grad_input), cptr<scalar_t>(go), g);
    SMP_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void adaptive_avg_pool2d_forward_cuda(const Tensor& out, const Tensor& input) {
  if (out.numel() == 0) return;
  DeviceGuard dg(out);
  Tensor x = contiguous(input);
  PoolGeom g = pool_geom(x, out, nullptr);
  SMP_DISPATCH_FLOATING_AND_HALF(x.dtype(), "adaptive_avg_pool2d", [&] {
    adaptive_avg_fwd_kernel<scalar_t><<<blocks_for(out.numel()), kThreads, 0, stream_of(out)>>>(
        mptr<scalar_t>(out), cptr<scalar_t>(x), g);
    SMP_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void adaptive_avg_pool2d_backward_cuda(const Tensor& grad_input, const Tensor& grad_out) {
  if (grad_input.numel() == 0) return;
  DeviceGuard dg(grad_input);
  Tensor go = contiguous(grad_out);
  PoolGeom g = pool_geom(grad_input, go, nullptr);
  SMP_DISPATCH_FLOATING_AND_HALF(go.dtype(), "adaptive_avg_pool2d_backward", [&] {
    adaptive_avg_bwd_kernel<scalar_t>
        <<<blocks_for(grad_input.numel()), kThreads, 0, stream_of(grad_input)>>>(
            mptr<scalar_t>(grad_input), cptr<scalar_t>(go), g);
    SMP_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

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

// ---- index_select / index_add ---------------------------------------------------------------

// in (outer, D, inner) → out (outer, K, inner). An index outside [-D, D) reads 0, since a
// kernel cannot throw; the front end validates indices it can see.
template <class T, class I>
__global__ void index_select_kernel(T* out, const T* in, const I* index, int64_t istride,
                                    int64_t outer, int64_t D, int64_t K, int64_t inner) {
  int64_t total = outer * K * inner, stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    int64_t r = i % inner, k = (i / inner) % K, o = i / (inner * K);
    int64_t idx = static_cast<int64_t>(index[k * istride]);
    if (idx < 0) idx += D;
    out[i] = (idx >= 0 && idx < D) ? in[(o * D + idx) * inner + r] : T(0);
  }
}

template <class T, class I>
__global__ void index_add_kernel(T* out, const T* src, const I* index, int64_t istride,
                                 int64_t outer, int64_t D, int64_t K, int64_t inner) {
  int64_t total = outer * K * inner, stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    int64_t r = i % inner, k = (i / inner) % K, o = i / (inner * K);
    int64_t idx = static_cast<int64_t>(index[k * istride]);
    if (idx < 0) idx += D;
    if (idx >= 0 && idx < D) atomic_add(out + (o * D + idx) * inner + r, convert<acc_t<T>>(src[i]));
  }
}

void index_select_cuda(const Tensor& out, const Tensor& in, int64_t dim, const Tensor& index) {
  if (out.numel() == 0) return;
  DeviceGuard dg(out);
  Tensor x = contiguous(in);
  int64_t outer, D, inner;
  outer_dim_inner(x, dim, outer, D, inner);
  int64_t K = index.numel(), is = index.dim() > 0 ? index.stride(0) : 0;
  SMP_DISPATCH_ALL(x.dtype(), "index_select", [&] {
    using T = scalar_t;
    SMP_DISPATCH_INDEX(index.dtype(), "index_select", [&] {
      index_select_kernel<T, scalar_t><<<blocks_for(out.numel()), kThreads, 0, stream_of(out)>>>(
          mptr<T>(out), cptr<T>(x), cptr<scalar_t>(index), is, outer, D, K, inner);
      SMP_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

void index_add_cuda(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) {
  if (src.numel() == 0) return;
  DeviceGuard dg(out);
  SMP_CHECK(out.is_contiguous(), "index_add: the destination must be contiguous");
  Tensor s = contiguous(src);
  int64_t outer, D, inner;
  outer_dim_inner(out, dim, outer, D, inner);
  int64_t K = index.numel(), is = index.dim() > 0 ? index.stride(0) : 0;
  SMP_DISPATCH_ATOMIC(out.dtype(), "index_add", [&] {
    using T = scalar_t;
    SMP_DISPATCH_INDEX(index.dtype(), "index_add", [&] {
      index_add_kernel<T, scalar_t><<<blocks_for(s.numel()), kThreads, 0, stream_of(out)>>>(
          mptr<T>(out), cptr<T>(s), cptr<scalar_t>(index), is, outer, D, K, inner);
      SMP_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

}  // namespace

SMP_REGISTER_KERNELS(kCUDA, {
  t.softmax_forward = &softmax_forward_cuda;
  t.softmax_backward = &softmax_backward_cuda;
  t.layer_norm_forward = &layer_norm_forward_cuda;
  t.layer_norm_backward = &layer_norm_backward_cuda;
  t.batch_norm_forward = &batch_norm_forward_cuda;
  t.batch_norm_backward = &batch_norm_backward_cuda;
  t.max_pool2d_forward = &max_pool2d_forward_cuda;
  t.max_pool2d_backward = &max_pool2d_backward_cuda;
  t.avg_pool2d_forward = &avg_pool2d_forward_cuda;
  t.avg_pool2d_backward = &avg_pool2d_backward_cuda;
  t.adaptive_avg_pool2d_forward = &adaptive_avg_pool2d_forward_cuda;
  t.adaptive_avg_pool2d_backward = &adaptive_avg_pool2d_backward_cuda;
  t.nll_loss_forward = &nll_loss_forward_cuda;
  t.nll_loss_backward = &nll_loss_backward_cuda;
  t.index_select = &index_select_cuda;
  t.index_add = &index_add_cuda;
});

}  // namespace smp::cuda
