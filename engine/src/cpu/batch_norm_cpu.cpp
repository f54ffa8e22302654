// CPU batch norm over (N, C, S) views of a contiguous input (S = H·W, or 1 for (N, C)).
// Parallel over channels; per-channel sums accumulate in double.
#include <smp/engine/threading.h>

#include <algorithm>
#include <cmath>

#include "cpu/loops.h"
#include "kernels.h"

namespace smp::cpu {
namespace {

// Reductions in kLanes independent double accumulators (so the compiler vectorises them
// without reassociating, converting T to double per element).
constexpr int64_t kLanes = 8;

template <class T>
inline double lane_sum(const T* p, int64_t n) {
  double acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int64_t j = 0; j < kLanes; ++j) acc[j] += static_cast<double>(p[i + j]);
  double s = 0;
  for (; i < n; ++i) s += static_cast<double>(p[i]);
  for (int64_t j = 0; j < kLanes; ++j) s += static_cast<double>(acc[j]);
  return s;
}

// Sum of (p[i] − m)².
template <class T>
inline double lane_sqdev(const T* p, int64_t n, double md) {
  double acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int64_t j = 0; j < kLanes; ++j) {
      double d = static_cast<double>(p[i + j]) - md;
      acc[j] += d * d;
    }
  double s = 0;
  for (; i < n; ++i) {
    double d = static_cast<double>(p[i]) - md;
    s += d * d;
  }
  for (int64_t j = 0; j < kLanes; ++j) s += static_cast<double>(acc[j]);
  return s;
}

// sum(d) and sum(d·(p − m)) in one pass.
template <class T>
inline void lane_dy_sums(const T* p, const T* d, int64_t n, T m, double& sd, double& sdx) {
  double a[kLanes] = {}, b[kLanes] = {}, md = static_cast<double>(m);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int64_t j = 0; j < kLanes; ++j) {
      double dv = static_cast<double>(d[i + j]);
      a[j] += dv;
      b[j] += dv * (static_cast<double>(p[i + j]) - md);
    }
  for (; i < n; ++i) {
    sd += static_cast<double>(d[i]);
    sdx += static_cast<double>(d[i]) * (static_cast<double>(p[i]) - static_cast<double>(m));
  }
  for (int64_t j = 0; j < kLanes; ++j) {
    sd += static_cast<double>(a[j]);
    sdx += static_cast<double>(b[j]);
  }
}

struct BnGeom {
  int64_t n, c, s;
  explicit BnGeom(const Tensor& in)
      : n(in.size(0)),
        c(in.size(1)),
        s(in.numel() / std::max<int64_t>(1, in.size(0) * in.size(1))) {}
};

template <class T>
void bn_forward(const Tensor& out, const Tensor& save_mean, const Tensor& save_invstd,
                const Tensor& input, const Tensor& weight, const Tensor& bias,
                const Tensor& running_mean, const Tensor& running_var, bool training,
                double momentum, double eps) {
  BnGeom g(input);
  const T* x = input.data_ptr<T>();
  T* y = out.data_ptr<T>();
  const T* w = weight.defined() ? weight.data_ptr<T>() : nullptr;
  const T* b = bias.defined() ? bias.data_ptr<T>() : nullptr;
  T* rm = running_mean.defined() ? running_mean.data_ptr<T>() : nullptr;
  T* rv = running_var.defined() ? running_var.data_ptr<T>() : nullptr;
  T* sm = training ? save_mean.data_ptr<T>() : nullptr;
  T* si = training ? save_invstd.data_ptr<T>() : nullptr;
  int64_t count = g.n * g.s;
  parallel_for(g.c, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      double mean, invstd;
      if (training) {
        double sum = 0;
        for (int64_t n = 0; n < g.n; ++n) sum += lane_sum(x + (n * g.c + c) * g.s, g.s);
        mean = sum / static_cast<double>(count);
        double sq = 0;  // two passes: exact for inputs with a large mean
        for (int64_t n = 0; n < g.n; ++n) sq += lane_sqdev(x + (n * g.c + c) * g.s, g.s, mean);
        double var = sq / static_cast<double>(count);
        invstd = 1.0 / std::sqrt(var + eps);
        sm[c] = static_cast<T>(mean);
        si[c] = static_cast<T>(invstd);
        // Running variance is unbiased, as in PyTorch.
        if (rm)
          rm[c] = static_cast<T>((1 - momentum) * static_cast<double>(rm[c]) + momentum * mean);
        if (rv) {
          double unbiased = count > 1 ? sq / static_cast<double>(count - 1) : var;
          rv[c] = static_cast<T>((1 - momentum) * static_cast<double>(rv[c]) + momentum * unbiased);
        }
      } else {
        mean = static_cast<double>(rm[c]);
        invstd = 1.0 / std::sqrt(static_cast<double>(rv[c]) + eps);
      }
      T scale = static_cast<T>(invstd * (w ? static_cast<double>(w[c]) : 1.0));
      T shift =
          static_cast<T>((b ? static_cast<double>(b[c]) : 0.0) - mean * static_cast<double>(scale));
      for (int64_t n = 0; n < g.n; ++n) {
        const T* p = x + (n * g.c + c) * g.s;
        T* q = y + (n * g.c + c) * g.s;
        for (int64_t i = 0; i < g.s; ++i) q[i] = p[i] * scale + shift;
      }
    }
  });
}

template <class T>
void bn_backward(const Tensor& grad_input, const Tensor& grad_weight, const Tensor& grad_bias,
                 const Tensor& grad_out, const Tensor& input, const Tensor& weight,
                 const Tensor& mean_t, const Tensor& invstd_t, bool training) {
  BnGeom g(input);
  const T* x = input.data_ptr<T>();
  const T* dy = grad_out.data_ptr<T>();
  const T* w = weight.defined() ? weight.data_ptr<T>() : nullptr;
  const T* mu = mean_t.data_ptr<T>();
  const T* is = invstd_t.data_ptr<T>();
  T* gx = grad_input.defined() ? grad_input.data_ptr<T>() : nullptr;
  T* gw = grad_weight.defined() ? grad_weight.data_ptr<T>() : nullptr;
  T* gb = grad_bias.defined() ? grad_bias.data_ptr<T>() : nullptr;
  double count = static_cast<double>(g.n * g.s);
  parallel_for(g.c, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      double m = static_cast<double>(mu[c]), inv = static_cast<double>(is[c]);
      double sum_dy = 0, sum_dy_xhat = 0;
      T mt0 = static_cast<T>(m);
      for (int64_t n = 0; n < g.n; ++n)
        lane_dy_sums(x + (n * g.c + c) * g.s, dy + (n * g.c + c) * g.s, g.s, mt0, sum_dy,
                     sum_dy_xhat);
      sum_dy_xhat *= inv;
      if (gw) gw[c] = static_cast<T>(sum_dy_xhat);
      if (gb) gb[c] = static_cast<T>(sum_dy);
      if (!gx) continue;
      double wc = w ? static_cast<double>(w[c]) : 1.0;
      // Training: dx = w·invstd·(dy − mean(dy) − x̂·mean(dy·x̂)); eval: dx = w·invstd·dy.
      T a = static_cast<T>(wc * inv);
      T mdy = training ? static_cast<T>(sum_dy / count) : T(0);
      T k = training ? static_cast<T>(sum_dy_xhat / count * inv) : T(0);
      T mt = static_cast<T>(m);
      for (int64_t n = 0; n < g.n; ++n) {
        const T* p = x + (n * g.c + c) * g.s;
        const T* d = dy + (n * g.c + c) * g.s;
        T* q = gx + (n * g.c + c) * g.s;
        for (int64_t i = 0; i < g.s; ++i) q[i] = a * (d[i] - mdy - (p[i] - mt) * k);
      }
    }
  });
}

void batch_norm_forward_cpu(const Tensor& out, const Tensor& save_mean, const Tensor& save_invstd,
                            const Tensor& input, const Tensor& weight, const Tensor& bias,
                            const Tensor& running_mean, const Tensor& running_var, bool training,
                            double momentum, double eps) {
  SMP_DISPATCH_FLOATING(input.dtype(), "batch_norm", [&] {
    bn_forward<scalar_t>(out, save_mean, save_invstd, input, weight, bias, running_mean,
                         running_var, training, momentum, eps);
  });
}

void batch_norm_backward_cpu(const Tensor& grad_input, const Tensor& grad_weight,
                             const Tensor& grad_bias, const Tensor& grad_out, const Tensor& input,
                             const Tensor& weight, const Tensor& mean, const Tensor& invstd,
                             bool training) {
  SMP_DISPATCH_FLOATING(input.dtype(), "batch_norm_backward", [&] {
    bn_backward<scalar_t>(grad_input, grad_weight, grad_bias, grad_out, input, weight, mean, invstd,
                          training);
  });
}

}  // namespace

SMP_REGISTER_KERNELS(kCPU, {
  t.batch_norm_forward = &batch_norm_forward_cpu;
  t.batch_norm_backward = &batch_norm_backward_cpu;
});

}  // namespace smp::cpu
