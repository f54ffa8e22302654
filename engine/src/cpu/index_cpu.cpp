// CPU kernels for index_select (gather of slices) and index_add (its adjoint).
//
// Both view the contiguous tensor as (outer, size(dim), inner): a selected slice is `inner`
// contiguous elements, so index_select is a memcpy per (outer, index) pair, whatever the dtype.
#include <cstring>

#include "cpu/loops.h"
#include "kernels.h"

namespace smp::cpu {
namespace {

struct Split3 {
  int64_t outer = 1, mid = 1, inner = 1;
};

Split3 split_at(const Shape& s, int64_t dim) {
  Split3 r;
  for (int64_t d = 0; d < static_cast<int64_t>(s.size()); ++d) {
    if (d < dim)
      r.outer *= s[d];
    else if (d == dim)
      r.mid = s[d];
    else
      r.inner *= s[d];
  }
  return r;
}

// Index values as int64, checked against the size of the indexed dimension.
std::vector<int64_t> read_index(const Tensor& index, int64_t limit, const char* op) {
  Tensor idx = index.is_contiguous() ? index : index.contiguous();
  std::vector<int64_t> v(static_cast<size_t>(idx.numel()));
  SMP_DISPATCH_INDEX(idx.dtype(), op, [&] {
    const scalar_t* p = idx.data_ptr<scalar_t>();
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<int64_t>(p[i]);
  });
  for (auto x : v)
    SMP_CHECK(x >= 0 && x < limit,
              "{}: index {} is out of range for a dimension of size {} (expected 0 <= index < {})",
              op, x, limit, limit);
  return v;
}

void index_select_cpu(const Tensor& out, const Tensor& in, int64_t dim, const Tensor& index) {
  Split3 g = split_at(in.sizes(), dim);
  std::vector<int64_t> idx = read_index(index, g.mid, "index_select");
  int64_t n = static_cast<int64_t>(idx.size());
  size_t es = in.element_size(), row = static_cast<size_t>(g.inner) * es;
  const char* src = static_cast<const char*>(in.data_ptr());
  char* dst = static_cast<char*>(out.data_ptr());
  if (g.inner == 1) {
    // Gathering single elements: a typed copy, as a memcpy call per element costs 5x more.
    auto gather = [&](auto tag) {
      using E = decltype(tag);
      const E* sp = reinterpret_cast<const E*>(src);
      E* dp = reinterpret_cast<E*>(dst);
      parallel_for(g.outer, std::max<int64_t>(1, kGrain / std::max<int64_t>(n, 1)),
                   [&](int64_t o0, int64_t o1) {
                     for (int64_t o = o0; o < o1; ++o)
                       for (int64_t i = 0; i < n; ++i)
                         dp[o * n + i] = sp[o * g.mid + idx[static_cast<size_t>(i)]];
                   });
    };
    switch (es) {
      case 8:
        return gather(uint64_t{});
      case 4:
        return gather(uint32_t{});
      case 2:
        return gather(uint16_t{});
      default:
        return gather(uint8_t{});
    }
  }
  int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(g.inner, 1));
  parallel_for(g.outer * n, grain, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      int64_t o = r / n, i = r % n;
      std::memcpy(dst + static_cast<size_t>(r) * row,
                  src + static_cast<size_t>(o * g.mid + idx[static_cast<size_t>(i)]) * row, row);
    }
  });
}

template <class T>
inline T add_elem(T a, T b) {
  if constexpr (std::is_same_v<T, bool>)
    return a || b;
  else if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>)
    return T(static_cast<float>(a) + static_cast<float>(b));
  else
    return static_cast<T>(a + b);
}

void index_add_cpu(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src_in) {
  Split3 g = split_at(out.sizes(), dim);
  std::vector<int64_t> idx = read_index(index, g.mid, "index_add");
  int64_t n = static_cast<int64_t>(idx.size());
  Tensor src = src_in.is_contiguous() && src_in.dtype() == out.dtype()
                   ? src_in
                   : ops::cast_to(src_in, out.dtype()).contiguous();
  SMP_DISPATCH_ALL(out.dtype(), "index_add", [&] {
    scalar_t* o = out.data_ptr<scalar_t>();
    const scalar_t* s = src.data_ptr<scalar_t>();
    // Duplicate indices hit the same destination, so work is split over (outer, inner)
    // and every index is visited in order by one thread: deterministic sums, no races.
    auto run = [&](int64_t o0, int64_t o1, int64_t c0, int64_t c1) {
      for (int64_t ot = o0; ot < o1; ++ot)
        for (int64_t i = 0; i < n; ++i) {
          scalar_t* d = o + (ot * g.mid + idx[static_cast<size_t>(i)]) * g.inner;
          const scalar_t* x = s + (ot * n + i) * g.inner;
          for (int64_t c = c0; c < c1; ++c) d[c] = add_elem(d[c], x[c]);
        }
    };
    if (g.outer == 1) {
      int64_t grain = std::max<int64_t>(64, kGrain / std::max<int64_t>(n, 1));
      parallel_for(g.inner, grain, [&](int64_t c0, int64_t c1) { run(0, 1, c0, c1); });
    } else {
      int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(n * g.inner, 1));
      parallel_for(g.outer, grain, [&](int64_t o0, int64_t o1) { run(o0, o1, 0, g.inner); });
    }
  });
}

}  // namespace

SMP_REGISTER_KERNELS(kCPU, {
  t.index_select = &index_select_cpu;
  t.index_add = &index_add_cpu;
});

}  // namespace smp::cpu
