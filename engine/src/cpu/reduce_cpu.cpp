// CPU kernels for reductions: sum/mean/prod/max/min over any set of dims, and max/min with
// indices along one dim.
//
// The input's dims are split into kept and reduced groups and each group is coalesced.
// Three loops cover the shapes that matter:
//   - everything reduced: fixed-size chunks in parallel, partials combined in order (so the
//     result does not depend on the thread count);
//   - the kept innermost dim is contiguous (bias gradients, (N,C)->(C)): blocks of outputs
//     accumulate whole input rows at a time, which vectorises;
//   - otherwise each output reduces its own (often contiguous) rows.
// Float sums accumulate in double, 8 lanes wide, so they agree closely with PyTorch's
// cascaded float sums.
#include "cpu/loops.h"
#include "kernels.h"

// GCC 12 flags Eigen's AVX-512 packet math (_mm512_undefined_*) as maybe-uninitialized: a
// known false positive, reported where the templates are instantiated, i.e. in this file.
#if !defined(__clang__)  // clang has no such warning and would warn about the pragma
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <Eigen/Core>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

namespace smp::cpu {
namespace {

using kernels::ReduceOp;

template <class T>
constexpr bool is_reduced_float_v = std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>;

// Accumulator type: double for floating sums/products, int64 for integer ones, and the
// value type itself (float for 16-bit floats) for max/min.
template <ReduceOp OP, class T>
using red_acc_t = std::conditional_t<
    OP == ReduceOp::Max || OP == ReduceOp::Min,
    std::conditional_t<is_reduced_float_v<T>, float,
                       std::conditional_t<std::is_same_v<T, bool>, uint8_t, T>>,
    std::conditional_t<is_reduced_float_v<T> || std::is_floating_point_v<T>, double, int64_t>>;

template <ReduceOp OP, class A>
struct Reducer {
  static A init() {
    if constexpr (OP == ReduceOp::Sum || OP == ReduceOp::Mean)
      return A(0);
    else if constexpr (OP == ReduceOp::Prod)
      return A(1);
    else if constexpr (OP == ReduceOp::Max)
      return std::numeric_limits<A>::has_infinity ? -std::numeric_limits<A>::infinity()
                                                  : std::numeric_limits<A>::lowest();
    else
      return std::numeric_limits<A>::has_infinity ? std::numeric_limits<A>::infinity()
                                                  : std::numeric_limits<A>::max();
  }
  static A step(A a, A x) {
    if constexpr (OP == ReduceOp::Sum || OP == ReduceOp::Mean)
      return a + x;
    else if constexpr (OP == ReduceOp::Prod)
      return a * x;
    else {
      // NaN wins and then stays (x > NaN is false); branch-free so loops vectorise.
      if constexpr (OP == ReduceOp::Max)
        return ((x > a) | (x != x)) ? x : a;
      else
        return ((x < a) | (x != x)) ? x : a;
    }
  }
};

// Reduces n elements at p with the given stride (elements); 8 independent lanes when
// contiguous so the compiler vectorises and rounding error grows slowly.
// float32 sums add in float within short runs and in double across them: float-width
// vector throughput with error close to a double accumulation.
template <ReduceOp OP, class T>
constexpr bool kSplitSum =
    (OP == ReduceOp::Sum || OP == ReduceOp::Mean) && std::is_same_v<T, float>;

template <ReduceOp OP, class A, class T>
A reduce_row(const T* p, int64_t n, int64_t stride, A acc) {
  using R = Reducer<OP, A>;
  if constexpr (kSplitSum<OP, T>) {
    if (stride == 1) {
      constexpr int L = 16;
      constexpr int64_t kBlock = L * 32;
      for (int64_t b0 = 0; b0 < n; b0 += kBlock) {
        int64_t m = std::min(kBlock, n - b0);
        const float* q = p + b0;
        float lane[L] = {};
        int64_t i = 0;
        for (; i + L <= m; i += L)
          for (int j = 0; j < L; ++j) lane[j] += q[i + j];
        float tail = 0;
        for (; i < m; ++i) tail += q[i];
        for (int w = L / 2; w > 0; w /= 2)
          for (int j = 0; j < w; ++j) lane[j] += lane[j + w];
        acc += static_cast<double>(lane[0]) + static_cast<double>(tail);
      }
      return acc;
    }
  }
  if constexpr ((OP == ReduceOp::Max || OP == ReduceOp::Min) && std::is_floating_point_v<A>) {
    if (stride == 1) {
      if constexpr (std::is_same_v<T, A>) {
        // Eigen's packet max/min (GCC will not if-convert a float compare-select loop).
        Eigen::Map<const Eigen::Array<A, Eigen::Dynamic, 1>> row(p, n);
        A m = OP == ReduceOp::Max ? row.template maxCoeff<Eigen::PropagateNaN>()
                                  : row.template minCoeff<Eigen::PropagateNaN>();
        return R::step(acc, m);
      }
    }
  }
  if (stride == 1) {
    A lane[8];
    for (auto& l : lane) l = R::init();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
      for (int j = 0; j < 8; ++j) lane[j] = R::step(lane[j], static_cast<A>(p[i + j]));
    for (; i < n; ++i) lane[0] = R::step(lane[0], static_cast<A>(p[i]));
    A a = R::step(R::step(R::step(lane[0], lane[1]), R::step(lane[2], lane[3])),
                  R::step(R::step(lane[4], lane[5]), R::step(lane[6], lane[7])));
    return R::step(acc, a);
  }
  for (int64_t i = 0; i < n; ++i) acc = R::step(acc, static_cast<A>(p[i * stride]));
  return acc;
}

struct Dims {
  int n = 0;
  int64_t size[16];
  int64_t in_stride[16];
  int64_t out_stride[16];
  void push(int64_t s, int64_t is, int64_t os) {
    // Merge with the previous dim when they walk memory as one.
    if (n > 0 && in_stride[n - 1] == is * s && out_stride[n - 1] == os * s) {
      size[n - 1] *= s;
      in_stride[n - 1] = is;
      out_stride[n - 1] = os;
      return;
    }
    size[n] = s;
    in_stride[n] = is;
    out_stride[n] = os;
    ++n;
  }
  int64_t numel() const {
    int64_t m = 1;
    for (int d = 0; d < n; ++d) m *= size[d];
    return m;
  }
  // Offsets of linear index i (row-major over this group).
  void offsets(int64_t i, int64_t& in_off, int64_t& out_off) const {
    in_off = 0;
    out_off = 0;
    for (int d = n - 1; d >= 0; --d) {
      int64_t k = i % size[d];
      i /= size[d];
      in_off += k * in_stride[d];
      out_off += k * out_stride[d];
    }
  }
};

template <ReduceOp OP, class T>
T finish(red_acc_t<OP, T> a, int64_t count) {
  using A = red_acc_t<OP, T>;
  if constexpr (OP == ReduceOp::Mean)
    return static_cast<T>(static_cast<A>(a / static_cast<A>(count)));
  else
    return static_cast<T>(a);
}

template <ReduceOp OP, class T>
void reduce_typed(const Tensor& out, const Tensor& in, const IntList& dims) {
  using A = red_acc_t<OP, T>;
  using R = Reducer<OP, A>;
  const T* src = static_cast<const T*>(in.data_ptr());
  T* dst = static_cast<T*>(out.data_ptr());
  std::vector<bool> reduced(static_cast<size_t>(in.dim()), false);
  for (auto d : dims) reduced[static_cast<size_t>(d)] = true;
  Dims kept, red;
  for (int64_t d = 0; d < in.dim(); ++d) {
    if (in.size(d) == 1) continue;
    if (reduced[static_cast<size_t>(d)])
      red.push(in.size(d), in.stride(d), 0);
    else
      kept.push(in.size(d), in.stride(d), out.stride(d));
  }
  const int64_t count = red.numel();
  const int64_t nout = kept.numel();

  // Reduces every reduced element for the input offset `base`, rows along the innermost
  // reduced dim.
  auto reduce_all = [&](int64_t base) {
    A acc = R::init();
    if (red.n == 0) return R::step(acc, static_cast<A>(src[base]));
    int64_t rows = count / red.size[red.n - 1];
    for (int64_t r = 0; r < rows; ++r) {
      int64_t off = 0;
      int64_t rem = r;
      for (int d = red.n - 2; d >= 0; --d) {
        off += (rem % red.size[d]) * red.in_stride[d];
        rem /= red.size[d];
      }
      acc = reduce_row<OP, A>(src + base + off, red.size[red.n - 1], red.in_stride[red.n - 1], acc);
    }
    return acc;
  };

  if (nout == 1) {
    if (red.n <= 1) {
      // One (possibly strided) run: split it into fixed chunks.
      int64_t stride = red.n == 1 ? red.in_stride[0] : 1;
      constexpr int64_t kChunk = 1 << 16;
      int64_t nchunks = (count + kChunk - 1) / kChunk;
      std::vector<A> partial(static_cast<size_t>(nchunks), R::init());
      parallel_for(nchunks, 1, [&](int64_t b, int64_t e) {
        for (int64_t c = b; c < e; ++c) {
          int64_t lo = c * kChunk, len = std::min(kChunk, count - lo);
          partial[static_cast<size_t>(c)] =
              reduce_row<OP, A>(src + lo * stride, len, stride, R::init());
        }
      });
      A acc = R::init();
      for (auto p : partial) acc = R::step(acc, p);
      dst[0] = finish<OP, T>(acc, count);
      return;
    }
    dst[0] = finish<OP, T>(reduce_all(0), count);
    return;
  }

  bool outer_path =
      kept.n > 0 && kept.in_stride[kept.n - 1] == 1 && kept.size[kept.n - 1] >= 8 && red.n > 0;
  if (outer_path) {
    // Blocks of B contiguous outputs each accumulate whole input rows.
    constexpr int64_t B = 256;
    int64_t inner = kept.size[kept.n - 1];
    int64_t out_inner_stride = kept.out_stride[kept.n - 1];
    int64_t nblocks = (inner + B - 1) / B;
    Dims kouter = kept;
    kouter.n -= 1;
    int64_t tasks = kouter.numel() * nblocks;
    int64_t work_per_task = std::min(inner, B) * count;
    int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(work_per_task, 1));
    using P = std::conditional_t<kSplitSum<OP, T>, float, A>;
    using RP = Reducer<OP, P>;
    constexpr int64_t kFlush = kSplitSum<OP, T> ? 32 : std::numeric_limits<int64_t>::max();
    parallel_for(tasks, grain, [&](int64_t t0, int64_t t1) {
      A acc[B];
      P part[B];
      for (int64_t t = t0; t < t1; ++t) {
        int64_t ko = t / nblocks, blk = t % nblocks;
        int64_t in_off, out_off;
        kouter.offsets(ko, in_off, out_off);
        int64_t j0 = blk * B, len = std::min(B, inner - j0);
        in_off += j0;
        out_off += j0 * out_inner_stride;
        for (int64_t j = 0; j < len; ++j) {
          acc[j] = R::init();
          part[j] = RP::init();
        }
        int64_t since = 0;
        auto flush = [&] {
          for (int64_t j = 0; j < len; ++j) {
            acc[j] = R::step(acc[j], static_cast<A>(part[j]));
            part[j] = RP::init();
          }
          since = 0;
        };
        for (int64_t r = 0; r < count; ++r) {
          int64_t off = 0, rem = r;
          for (int d = red.n - 1; d >= 0; --d) {
            off += (rem % red.size[d]) * red.in_stride[d];
            rem /= red.size[d];
          }
          const T* p = src + in_off + off;
          for (int64_t j = 0; j < len; ++j) part[j] = RP::step(part[j], static_cast<P>(p[j]));
          if (++since == kFlush) flush();
        }
        flush();
        for (int64_t j = 0; j < len; ++j)
          dst[out_off + j * out_inner_stride] = finish<OP, T>(acc[j], count);
      }
    });
    return;
  }

  int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(count, 1));
  parallel_for(nout, grain, [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; ++o) {
      int64_t in_off, out_off;
      kept.offsets(o, in_off, out_off);
      dst[out_off] = finish<OP, T>(reduce_all(in_off), count);
    }
  });
}

void reduce_cpu(ReduceOp op, const Tensor& out, const Tensor& in, const IntList& dims) {
  SMP_CHECK(out.dtype() == in.dtype(), "reduce: output dtype {} differs from input dtype {}",
            dtype_name(out.dtype()), dtype_name(in.dtype()));
  SMP_DISPATCH_ALL(in.dtype(), "reduce", [&] {
    switch (op) {
      case ReduceOp::Sum:
        return reduce_typed<ReduceOp::Sum, scalar_t>(out, in, dims);
      case ReduceOp::Mean:
        return reduce_typed<ReduceOp::Mean, scalar_t>(out, in, dims);
      case ReduceOp::Prod:
        return reduce_typed<ReduceOp::Prod, scalar_t>(out, in, dims);
      case ReduceOp::Max:
        return reduce_typed<ReduceOp::Max, scalar_t>(out, in, dims);
      case ReduceOp::Min:
        return reduce_typed<ReduceOp::Min, scalar_t>(out, in, dims);
    }
  });
}

template <ReduceOp OP, class T>
void reduce_arg_typed(const Tensor& values, const Tensor& indices, const Tensor& in, int64_t dim) {
  using A = red_acc_t<OP, T>;
  Tensor c = in.is_contiguous() ? in : in.contiguous();
  const T* src = static_cast<const T*>(c.data_ptr());
  T* vals = static_cast<T*>(values.data_ptr());
  int64_t* idx = indices.data_ptr<int64_t>();
  int64_t K = c.size(dim), outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= c.size(d);
  for (int64_t d = dim + 1; d < c.dim(); ++d) inner *= c.size(d);
  int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(K, 1));
  if (inner == 1) {
    // Contiguous rows: a vectorised value pass, then find its first position.
    parallel_for(outer, grain, [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) {
        const T* p = src + o * K;
        A best = reduce_row<OP, A>(p, K, 1, Reducer<OP, A>::init());
        int64_t bi = 0;
        if (best != best) {
          while (static_cast<A>(p[bi]) == static_cast<A>(p[bi])) ++bi;
        } else {
          while (static_cast<A>(p[bi]) != best) ++bi;
        }
        vals[o] = static_cast<T>(best);
        idx[o] = bi;
      }
    });
    return;
  }
  parallel_for(outer * inner, grain, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      int64_t o = t / inner, i = t % inner;
      const T* p = src + o * K * inner + i;
      A best = static_cast<A>(p[0]);
      int64_t bi = 0;
      bool best_nan = false;
      if constexpr (std::is_floating_point_v<A>) best_nan = std::isnan(best);
      for (int64_t k = 1; k < K && !best_nan; ++k) {
        A x = static_cast<A>(p[k * inner]);
        bool better;
        if constexpr (OP == ReduceOp::Max)
          better = x > best;
        else
          better = x < best;
        if constexpr (std::is_floating_point_v<A>) {
          if (std::isnan(x)) {
            better = true;
            best_nan = true;
          }
        }
        if (better) {
          best = x;
          bi = k;
        }
      }
      vals[t] = static_cast<T>(best);
      idx[t] = bi;
    }
  });
}

void reduce_arg_cpu(ReduceOp op, const Tensor& values, const Tensor& indices, const Tensor& in,
                    int64_t dim) {
  SMP_CHECK(op == ReduceOp::Max || op == ReduceOp::Min, "reduce_arg: only max and min");
  SMP_CHECK(in.size(dim) > 0, "reduce_arg: cannot reduce an empty dimension");
  SMP_DISPATCH_ALL(in.dtype(), "reduce_arg", [&] {
    if (op == ReduceOp::Max)
      reduce_arg_typed<ReduceOp::Max, scalar_t>(values, indices, in, dim);
    else
      reduce_arg_typed<ReduceOp::Min, scalar_t>(values, indices, in, dim);
  });
}

}  // namespace

SMP_REGISTER_KERNELS(kCPU, {
  t.reduce = &reduce_cpu;
  t.reduce_arg = &reduce_arg_cpu;
});

}  // namespace smp::cpu
