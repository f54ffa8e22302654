// CPU softmax / log-softmax along one dim of a contiguous tensor, forward and backward.
//
// The tensor is viewed as (outer, D, inner). With inner == 1 (the usual last-dim case) each
// row is reduced on its own; otherwise `inner` columns are processed side by side so the
// loops run along contiguous memory. Max is subtracted first (numerical stability);
// accumulation is in float for float32/16 and double for float64.
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

struct Geom {
  int64_t outer = 1, D = 1, inner = 1;
};

Geom geom(const Tensor& t, int64_t dim) {
  Geom g;
  for (int64_t d = 0; d < t.dim(); ++d) {
    if (d < dim)
      g.outer *= t.size(d);
    else if (d == dim)
      g.D = t.size(d);
    else
      g.inner *= t.size(d);
  }
  return g;
}

template <class T>
constexpr bool kEigen = std::is_same_v<T, float> || std::is_same_v<T, double>;

template <class T>
using RowArr = Eigen::Array<T, Eigen::Dynamic, 1>;
template <class T>
using Mat = Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// float/double: Eigen's packet exp/log vectorise the row; half types take the scalar loop.
template <class T>
void softmax_rows(T* out, const T* in, const Geom& g, bool log) {
  using A = acc_t<T>;
  if constexpr (kEigen<T>) {
    int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(g.D, 1));
    parallel_for(g.outer, grain, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        Eigen::Map<const RowArr<T>> x(in + r * g.D, g.D);
        Eigen::Map<RowArr<T>> y(out + r * g.D, g.D);
        T mx = x.maxCoeff();
        if (log) {
          T lse = mx + std::log((x - mx).exp().sum());
          y = x - lse;
        } else {
          y = (x - mx).exp();
          y *= T(1) / y.sum();
        }
      }
    });
    return;
  }
  int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(g.D, 1));
  parallel_for(g.outer, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* x = in + r * g.D;
      T* y = out + r * g.D;
      A mx = -INFINITY;
      for (int64_t j = 0; j < g.D; ++j) mx = std::max<A>(mx, static_cast<A>(x[j]));
      A sum = 0;
      if (log) {
        for (int64_t j = 0; j < g.D; ++j) sum += std::exp(static_cast<A>(x[j]) - mx);
        A lse = mx + std::log(sum);
        for (int64_t j = 0; j < g.D; ++j) y[j] = static_cast<T>(static_cast<A>(x[j]) - lse);
      } else {
        for (int64_t j = 0; j < g.D; ++j) {
          A e = std::exp(static_cast<A>(x[j]) - mx);
          y[j] = static_cast<T>(e);
          sum += e;
        }
        A inv = A(1) / sum;
        for (int64_t j = 0; j < g.D; ++j) y[j] = static_cast<T>(static_cast<A>(y[j]) * inv);
      }
    }
  });
}

template <class T>
void softmax_cols(T* out, const T* in, const Geom& g, bool log) {
  using A = acc_t<T>;
  if constexpr (kEigen<T>) {
    int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(g.D * g.inner, 1));
    parallel_for(g.outer, grain, [&](int64_t o0, int64_t o1) {
      for (int64_t o = o0; o < o1; ++o) {
        Eigen::Map<const Mat<T>> x(in + o * g.D * g.inner, g.D, g.inner);
        Eigen::Map<Mat<T>> y(out + o * g.D * g.inner, g.D, g.inner);
        Eigen::Array<T, 1, Eigen::Dynamic> mx = x.colwise().maxCoeff();
        y = x.rowwise() - mx;
        if (log) {
          Eigen::Array<T, 1, Eigen::Dynamic> lse = y.exp().colwise().sum().log();
          y.rowwise() -= lse;
        } else {
          y = y.exp();
          Eigen::Array<T, 1, Eigen::Dynamic> inv = y.colwise().sum().inverse();
          y.rowwise() *= inv;
        }
      }
    });
    return;
  }
  int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(g.D * g.inner, 1));
  parallel_for(g.outer, grain, [&](int64_t o0, int64_t o1) {
    std::vector<A> mx(static_cast<size_t>(g.inner)), sum(static_cast<size_t>(g.inner));
    for (int64_t o = o0; o < o1; ++o) {
      const T* x = in + o * g.D * g.inner;
      T* y = out + o * g.D * g.inner;
      std::fill(mx.begin(), mx.end(), -INFINITY);
      std::fill(sum.begin(), sum.end(), A(0));
      for (int64_t j = 0; j < g.D; ++j)
        for (int64_t c = 0; c < g.inner; ++c)
          mx[c] = std::max<A>(mx[c], static_cast<A>(x[j * g.inner + c]));
      for (int64_t j = 0; j < g.D; ++j)
        for (int64_t c = 0; c < g.inner; ++c)
          sum[c] += std::exp(static_cast<A>(x[j * g.inner + c]) - mx[c]);
      if (log) {
        for (int64_t c = 0; c < g.inner; ++c) mx[c] += std::log(sum[c]);
        for (int64_t j = 0; j < g.D; ++j)
          for (int64_t c = 0; c < g.inner; ++c)
            y[j * g.inner + c] = static_cast<T>(static_cast<A>(x[j * g.inner + c]) - mx[c]);
      } else {
        for (int64_t c = 0; c < g.inner; ++c) sum[c] = A(1) / sum[c];
        for (int64_t j = 0; j < g.D; ++j)
          for (int64_t c = 0; c < g.inner; ++c)
            y[j * g.inner + c] =
                static_cast<T>(std::exp(static_cast<A>(x[j * g.inner + c]) - mx[c]) * sum[c]);
      }
    }
  });
}

void softmax_forward_cpu(const Tensor& out, const Tensor& in, int64_t dim, bool log) {
  Geom g = geom(in, dim);
  SMP_DISPATCH_FLOATING_AND_HALF(in.dtype(), log ? "log_softmax" : "softmax", [&] {
    if (g.inner == 1)
      softmax_rows(out.data_ptr<scalar_t>(), in.data_ptr<scalar_t>(), g, log);
    else
      softmax_cols(out.data_ptr<scalar_t>(), in.data_ptr<scalar_t>(), g, log);
  });
}

// softmax:     gx = y · (gy − Σ gy·y)
// log_softmax: gx = gy − exp(y) · Σ gy
template <class T>
void softmax_backward_impl(T* gx, const T* gy, const T* y, const Geom& g, bool log) {
  using A = acc_t<T>;
  if constexpr (kEigen<T>) {
    if (g.inner == 1) {
      int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(g.D, 1));
      parallel_for(g.outer, grain, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          Eigen::Map<const RowArr<T>> yr(y + r * g.D, g.D), gr(gy + r * g.D, g.D);
          Eigen::Map<RowArr<T>> o(gx + r * g.D, g.D);
          if (log)
            o = gr - yr.exp() * gr.sum();
          else
            o = yr * (gr - (gr * yr).sum());
        }
      });
      return;
    }
  }
  int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(g.D * g.inner, 1));
  parallel_for(g.outer, grain, [&](int64_t o0, int64_t o1) {
    std::vector<A> s(static_cast<size_t>(g.inner));
    for (int64_t o = o0; o < o1; ++o) {
      int64_t base = o * g.D * g.inner;
      std::fill(s.begin(), s.end(), A(0));
      for (int64_t j = 0; j < g.D; ++j)
        for (int64_t c = 0; c < g.inner; ++c) {
          int64_t k = base + j * g.inner + c;
          s[c] += log ? static_cast<A>(gy[k]) : static_cast<A>(gy[k]) * static_cast<A>(y[k]);
        }
      for (int64_t j = 0; j < g.D; ++j)
        for (int64_t c = 0; c < g.inner; ++c) {
          int64_t k = base + j * g.inner + c;
          A yv = static_cast<A>(y[k]), gv = static_cast<A>(gy[k]);
          gx[k] = static_cast<T>(log ? gv - std::exp(yv) * s[c] : yv * (gv - s[c]));
        }
    }
  });
}

void softmax_backward_cpu(const Tensor& grad_input, const Tensor& grad_out, const Tensor& out,
                          int64_t dim, bool log) {
  Geom g = geom(out, dim);
  SMP_DISPATCH_FLOATING_AND_HALF(out.dtype(), "softmax_backward", [&] {
    softmax_backward_impl(grad_input.data_ptr<scalar_t>(), grad_out.data_ptr<scalar_t>(),
                          out.data_ptr<scalar_t>(), g, log);
  });
}

}  // namespace

SMP_REGISTER_KERNELS(kCPU, {
  t.softmax_forward = &softmax_forward_cpu;
  t.softmax_backward = &softmax_backward_cpu;
});

}  // namespace smp::cpu
