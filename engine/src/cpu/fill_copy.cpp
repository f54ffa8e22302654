// CPU kernels for fill, copy (with dtype conversion) and arange.
#include "cpu/loops.h"
#include "kernels.h"

namespace smp::cpu {
namespace {

template <class To, class From>
inline To convert(From v) {
  if constexpr (std::is_same_v<To, bool>)
    return static_cast<float>(v) != 0.0f;
  else if constexpr (std::is_same_v<From, Half> || std::is_same_v<From, BFloat16>)
    return static_cast<To>(static_cast<float>(v));
  else if constexpr (std::is_same_v<To, Half> || std::is_same_v<To, BFloat16>)
    return To(static_cast<float>(v));
  else
    return static_cast<To>(v);
}

void fill_cpu(const Tensor& out, const Scalar& v) {
  SMP_DISPATCH_ALL(out.dtype(), "fill", [&] {
    scalar_t val = v.to<scalar_t>();
    cpu_map<scalar_t>(out, {}, [val]() { return val; });
  });
}

void copy_cpu(const Tensor& dst, const Tensor& src) {
  if (dst.dtype() == src.dtype() && dst.is_contiguous() && src.is_contiguous()) {
    auto* d = static_cast<char*>(dst.data_ptr());
    const auto* s = static_cast<const char*>(src.data_ptr());
    int64_t nbytes = static_cast<int64_t>(dst.nbytes());
    if (d == s) return;
    parallel_for(nbytes, 1 << 20, [&](int64_t b, int64_t e) { std::memcpy(d + b, s + b, e - b); });
    return;
  }
  SMP_DISPATCH_ALL(dst.dtype(), "copy", [&] {
    using out_t = scalar_t;
    SMP_DISPATCH_ALL(src.dtype(), "copy", [&] {
      cpu_map<out_t, scalar_t>(dst, {&src}, [](scalar_t x) { return convert<out_t>(x); });
    });
  });
}

void arange_cpu(const Tensor& out, const Scalar& start, const Scalar& step) {
  SMP_DISPATCH_ALL_NO_HALF(out.dtype(), "arange", [&] {
    auto* p = out.data_ptr<scalar_t>();
    double s = start.to_double(), st = step.to_double();
    for (int64_t i = 0; i < out.numel(); ++i)
      p[i] = static_cast<scalar_t>(s + st * static_cast<double>(i));
  });
}

}  // namespace

SMP_REGISTER_KERNELS(kCPU, {
  t.fill = &fill_cpu;
  t.copy = &copy_cpu;
  t.arange = &arange_cpu;
});

}  // namespace smp::cpu
