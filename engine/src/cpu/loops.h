// Elementwise iteration for CPU kernels: coalesces dims, splits work over the pool, and
// hands a typed inner loop either contiguous spans (which the compiler vectorises) or
// strided ones.
#pragma once

#include "ops/op_utils.h"

#include <smp/engine/threading.h>

#include <array>
#include <cstdint>
#include <cstring>

namespace smp::cpu {

constexpr int64_t kGrain = 32768;  // elements per task below which threading costs more

/// Geometry of N operands (operand 0 is the output) that share one shape, after merging
/// dims that are contiguous in every operand. Strides are in bytes.
template <int N>
struct Geometry {
  int ndim = 0;
  int64_t sizes[16];
  int64_t strides[N][16];  // innermost dim last
  char* base[N];

  explicit Geometry(const std::array<const Tensor*, N>& ts) {
    const Tensor& out = *ts[0];
    int nd = static_cast<int>(out.dim());
    SMP_ASSERT(nd <= 16, "more than 16 dims");
    for (int k = 0; k < N; ++k)
      base[k] = static_cast<char*>(ts[k]->data_ptr());
    // Drop size-1 dims, then merge neighbours that are contiguous in every operand.
    for (int d = 0; d < nd; ++d) {
      if (out.size(d) == 1) continue;
      int64_t sz = out.size(d);
      bool merge = ndim > 0;
      for (int k = 0; k < N && merge; ++k) {
        int64_t s = ts[k]->stride(d) * static_cast<int64_t>(ts[k]->element_size());
        merge = strides[k][ndim - 1] == s * sz;
      }
      if (merge) {
        sizes[ndim - 1] *= sz;
        for (int k = 0; k < N; ++k)
          strides[k][ndim - 1] = ts[k]->stride(d) * static_cast<int64_t>(ts[k]->element_size());
      } else {
        sizes[ndim] = sz;
        for (int k = 0; k < N; ++k)
          strides[k][ndim] = ts[k]->stride(d) * static_cast<int64_t>(ts[k]->element_size());
        ++ndim;
      }
    }
    if (ndim == 0) {  // a single element
      sizes[0] = 1;
      for (int k = 0; k < N; ++k) strides[k][0] = 0;
      ndim = 1;
    }
  }
  int64_t inner() const { return sizes[ndim - 1]; }
  int64_t outer() const {
    int64_t n = 1;
    for (int d = 0; d < ndim - 1; ++d) n *= sizes[d];
    return n;
  }
};

/// Calls loop(ptrs, inner_strides_bytes, n) over every row of the operands, in parallel.
/// `ts[0]` is the output; all operands must have its shape.
template <int N, class Loop>
void for_each_row(const std::array<const Tensor*, N>& ts, Loop&& loop) {
  Geometry<N> g(ts);
  int64_t inner = g.inner(), outer = g.outer();
  std::array<int64_t, N> istr;
  for (int k = 0; k < N; ++k) istr[k] = g.strides[k][g.ndim - 1];
  auto rows = [&](int64_t r0, int64_t r1) {
    // Decompose r0 into a multi-index over the outer dims, then step it.
    int64_t idx[16] = {0};
    int64_t rem = r0;
    for (int d = g.ndim - 2; d >= 0; --d) {
      idx[d] = rem % g.sizes[d];
      rem /= g.sizes[d];
    }
    for (int64_t r = r0; r < r1; ++r) {
      std::array<char*, N> p;
      for (int k = 0; k < N; ++k) {
        char* b = g.base[k];
        for (int d = 0; d < g.ndim - 1; ++d) b += idx[d] * g.strides[k][d];
        p[k] = b;
      }
      loop(p, istr, inner);
      for (int d = g.ndim - 2; d >= 0; --d) {
        if (++idx[d] < g.sizes[d]) break;
        idx[d] = 0;
      }
    }
  };
  if (outer == 1) {
    // One long row: split it instead.
    parallel_for(inner, kGrain, [&](int64_t b, int64_t e) {
      std::array<char*, N> p;
      for (int k = 0; k < N; ++k) p[k] = g.base[k] + b * istr[k];
      loop(p, istr, e - b);
    });
  } else {
    int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(inner, 1));
    parallel_for(outer, grain, rows);
  }
}

/// out[i] = f(in0[i], in1[i], ...) with typed values. Inner loops where every operand is
/// contiguous or broadcast (stride 0) are specialised so the compiler vectorises them.
template <class Out, class... In, class F>
void cpu_map(const Tensor& out, std::array<const Tensor*, sizeof...(In)> ins, F f) {
  constexpr int N = 1 + sizeof...(In);
  std::array<const Tensor*, N> ts;
  ts[0] = &out;
  for (size_t k = 0; k < sizeof...(In); ++k) ts[k + 1] = ins[k];
  for_each_row<N>(ts, [&](const std::array<char*, N>& p, const std::array<int64_t, N>& s,
                          int64_t n) {
    Out* o = reinterpret_cast<Out*>(p[0]);
    bool contig = s[0] == static_cast<int64_t>(sizeof(Out));
    constexpr size_t sizes[] = {sizeof(In)...};
    for (int k = 1; k < N; ++k) contig = contig && s[k] == static_cast<int64_t>(sizes[k - 1]);
    if (contig) {
      std::apply(
          [&](auto*... in) {
            for (int64_t i = 0; i < n; ++i) o[i] = f(in[i]...);
          },
          [&]<size_t... I>(std::index_sequence<I...>) {
            return std::make_tuple(reinterpret_cast<const In*>(p[I + 1])...);
          }(std::index_sequence_for<In...>{}));
      return;
    }
    if constexpr (sizeof...(In) == 2) {
      // tensor-with-scalar-broadcast: hoist the broadcast operand
      using A = std::tuple_element_t<0, std::tuple<In...>>;
      using B = std::tuple_element_t<1, std::tuple<In...>>;
      if (s[0] == sizeof(Out) && s[1] == sizeof(A) && s[2] == 0) {
        const A* a = reinterpret_cast<const A*>(p[1]);
        const B b = *reinterpret_cast<const B*>(p[2]);
        for (int64_t i = 0; i < n; ++i) o[i] = f(a[i], b);
        return;
      }
      if (s[0] == sizeof(Out) && s[1] == 0 && s[2] == sizeof(B)) {
        const A a = *reinterpret_cast<const A*>(p[1]);
        const B* b = reinterpret_cast<const B*>(p[2]);
        for (int64_t i = 0; i < n; ++i) o[i] = f(a, b[i]);
        return;
      }
    }
    for (int64_t i = 0; i < n; ++i) {
      std::apply(
          [&](auto*... in) {
            *reinterpret_cast<Out*>(p[0] + i * s[0]) = f(*in...);
          },
          [&]<size_t... I>(std::index_sequence<I...>) {
            return std::make_tuple(reinterpret_cast<const In*>(p[I + 1] + i * s[I + 1])...);
          }(std::index_sequence_for<In...>{}));
    }
  });
}

}  // namespace smp::cpu
