// CPU layer norm over rows: input viewed as (M, N), statistics per row.
//
// forward:  y = (x − μ)·rstd·w + b,  rstd = 1/sqrt(var + eps) (biased variance)
// backward: x̂ = (x − μ)·rstd, ĝ = gy·w,
//           gx = rstd · (ĝ − mean(ĝ) − x̂·mean(ĝ·x̂));  gw = Σ_rows gy·x̂;  gb = Σ_rows gy
// Row statistics accumulate in float (float32/16, bf16) or double (float64).
// GCC 12 reports false "maybe uninitialized" inside Eigen's AVX-512 packet code.
#if !defined(__clang__)  // clang has no such warning and would warn about the pragma
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <Eigen/Core>
#include <cmath>
#include <vector>

#include "cpu/loops.h"
#include "kernels.h"

namespace smp::cpu {
namespace {

template <class T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <class T>
constexpr bool kEigen = std::is_same_v<T, float> || std::is_same_v<T, double>;
template <class T>
using RowVec = Eigen::Array<T, Eigen::Dynamic, 1>;

template <class T, class S>
void forward_impl(T* y, S* mean, S* rstd, const T* x, const T* w, const T* b, int64_t M, int64_t N,
                  double eps) {
  using A = acc_t<T>;
  if constexpr (kEigen<T>) {  // vectorised rows for float/double
    int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(N, 1));
    parallel_for(M, grain, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        Eigen::Map<const RowVec<T>> xr(x + r * N, N);
        Eigen::Map<RowVec<T>> yr(y + r * N, N);
        T mu = xr.mean();
        T rs = T(1) / std::sqrt((xr - mu).square().mean() + static_cast<T>(eps));
        if (w && b)
          yr = (xr - mu) * rs * Eigen::Map<const RowVec<T>>(w, N) +
               Eigen::Map<const RowVec<T>>(b, N);
        else if (w)
          yr = (xr - mu) * rs * Eigen::Map<const RowVec<T>>(w, N);
        else if (b)
          yr = (xr - mu) * rs + Eigen::Map<const RowVec<T>>(b, N);
        else
          yr = (xr - mu) * rs;
        mean[r] = static_cast<S>(mu);
        rstd[r] = static_cast<S>(rs);
      }
    });
    return;
  }
  int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(N, 1));
  parallel_for(M, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * N;
      T* yr = y + r * N;
      // Two passes (mean, then centred squares) avoid the cancellation of E[x²] − E[x]².
      A s = 0;
      for (int64_t j = 0; j < N; ++j) s += static_cast<A>(xr[j]);
      A mu = s / static_cast<A>(N);
      A v = 0;
      for (int64_t j = 0; j < N; ++j) {
        A d = static_cast<A>(xr[j]) - mu;
        v += d * d;
      }
      A rs = A(1) / std::sqrt(v / static_cast<A>(N) + static_cast<A>(eps));
      if (w && b) {
        for (int64_t j = 0; j < N; ++j)
          yr[j] = static_cast<T>((static_cast<A>(xr[j]) - mu) * rs * static_cast<A>(w[j]) +
                                 static_cast<A>(b[j]));
      } else if (w) {
        for (int64_t j = 0; j < N; ++j)
          yr[j] = static_cast<T>((static_cast<A>(xr[j]) - mu) * rs * static_cast<A>(w[j]));
      } else {
        for (int64_t j = 0; j < N; ++j)
          yr[j] =
              static_cast<T>((static_cast<A>(xr[j]) - mu) * rs + (b ? static_cast<A>(b[j]) : A(0)));
      }
      mean[r] = static_cast<S>(mu);
      rstd[r] = static_cast<S>(rs);
    }
  });
}

template <class T>
const T* ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

void layer_norm_forward_cpu(const Tensor& out, const Tensor& mean, const Tensor& rstd,
                            const Tensor& input, const Tensor& weight, const Tensor& bias,
                            int64_t M, int64_t N, double eps) {
  SMP_DISPATCH_FLOATING_AND_HALF(input.dtype(), "layer_norm", [&] {
    using S = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    forward_impl<scalar_t, S>(out.data_ptr<scalar_t>(), mean.data_ptr<S>(), rstd.data_ptr<S>(),
                              input.data_ptr<scalar_t>(), ptr_or_null<scalar_t>(weight),
                              ptr_or_null<scalar_t>(bias), M, N, eps);
  });
}

template <class T, class S>
void backward_impl(T* gx, T* gw, T* gb, const T* gy, const T* x, const S* mean, const S* rstd,
                   const T* w, int64_t M, int64_t N) {
  using A = acc_t<T>;
  if constexpr (kEigen<T>) {
    if (gx) {
      int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(N, 1));
      parallel_for(M, grain, [&](int64_t r0, int64_t r1) {
        RowVec<T> g(N), xh(N);
        for (int64_t r = r0; r < r1; ++r) {
          Eigen::Map<const RowVec<T>> xr(x + r * N, N);
          Eigen::Map<const RowVec<T>> gr(gy + r * N, N);
          T rs = static_cast<T>(rstd[r]);
          xh = (xr - static_cast<T>(mean[r])) * rs;
          if (w)
            g = gr * Eigen::Map<const RowVec<T>>(w, N);
          else
            g = gr;
          T m1 = g.mean(), m2 = (g * xh).mean();
          Eigen::Map<RowVec<T>> o(gx + r * N, N);
          o = rs * (g - m1 - xh * m2);
        }
      });
      gx = nullptr;  // done; the column sums below still run
    }
  }
  if (gx) {
    int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(N, 1));
    parallel_for(M, grain, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const T* xr = x + r * N;
        const T* gr = gy + r * N;
        A mu = static_cast<A>(mean[r]), rs = static_cast<A>(rstd[r]);
        A s1 = 0, s2 = 0;  // Σ ĝ, Σ ĝ·x̂
        for (int64_t j = 0; j < N; ++j) {
          A g = static_cast<A>(gr[j]) * (w ? static_cast<A>(w[j]) : A(1));
          s1 += g;
          s2 += g * (static_cast<A>(xr[j]) - mu) * rs;
        }
        A m1 = s1 / static_cast<A>(N), m2 = s2 / static_cast<A>(N);
        T* o = gx + r * N;
        for (int64_t j = 0; j < N; ++j) {
          A g = static_cast<A>(gr[j]) * (w ? static_cast<A>(w[j]) : A(1));
          A xh = (static_cast<A>(xr[j]) - mu) * rs;
          o[j] = static_cast<T>(rs * (g - m1 - xh * m2));
        }
      }
    });
  }
  if (!gw && !gb) return;
  // Column sums over rows: each task sums a band of rows into its own partial row, then the
  // partials are added in task order, so the result does not depend on scheduling.
  int64_t tasks = std::max<int64_t>(1, std::min<int64_t>(get_num_threads(), M));
  std::vector<A> pw(static_cast<size_t>(tasks * N), A(0)), pb(static_cast<size_t>(tasks * N), A(0));
  int64_t rows_per = (M + tasks - 1) / tasks;
  parallel_for(tasks, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      A* aw = pw.data() + t * N;
      A* ab = pb.data() + t * N;
      for (int64_t r = t * rows_per; r < std::min(M, (t + 1) * rows_per); ++r) {
        const T* xr = x + r * N;
        const T* gr = gy + r * N;
        A mu = static_cast<A>(mean[r]), rs = static_cast<A>(rstd[r]);
        for (int64_t j = 0; j < N; ++j) {
          A g = static_cast<A>(gr[j]);
          aw[j] += g * (static_cast<A>(xr[j]) - mu) * rs;
          ab[j] += g;
        }
      }
    }
  });
  for (int64_t j = 0; j < N; ++j) {
    A sw = 0, sb = 0;
    for (int64_t t = 0; t < tasks; ++t) {
      sw += pw[static_cast<size_t>(t * N + j)];
      sb += pb[static_cast<size_t>(t * N + j)];
    }
    if (gw) gw[j] = static_cast<T>(sw);
    if (gb) gb[j] = static_cast<T>(sb);
  }
}

template <class T>
T* mut_ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

void layer_norm_backward_cpu(const Tensor& grad_input, const Tensor& grad_weight,
                             const Tensor& grad_bias, const Tensor& grad_out, const Tensor& input,
                             const Tensor& mean, const Tensor& rstd, const Tensor& weight,
                             int64_t M, int64_t N) {
  SMP_DISPATCH_FLOATING_AND_HALF(input.dtype(), "layer_norm_backward", [&] {
    using S = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    backward_impl<scalar_t, S>(mut_ptr_or_null<scalar_t>(grad_input),
                               mut_ptr_or_null<scalar_t>(grad_weight),
                               mut_ptr_or_null<scalar_t>(grad_bias), grad_out.data_ptr<scalar_t>(),
                               input.data_ptr<scalar_t>(), mean.data_ptr<S>(), rstd.data_ptr<S>(),
                               ptr_or_null<scalar_t>(weight), M, N);
  });
}

}  // namespace

SMP_REGISTER_KERNELS(kCPU, {
  t.layer_norm_forward = &layer_norm_forward_cpu;
  t.layer_norm_backward = &layer_norm_backward_cpu;
});

}  // namespace smp::cpu
