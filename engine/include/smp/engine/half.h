// 16-bit floating types used for storage everywhere and compute on CUDA.
// Conversions round to nearest even, as PyTorch and the hardware do.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define SMP_HOST_DEVICE __host__ __device__
#else
#define SMP_HOST_DEVICE
#endif

namespace smp {

namespace detail {
SMP_HOST_DEVICE inline uint32_t f32_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}
SMP_HOST_DEVICE inline float bits_f32(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}
}  // namespace detail

/// IEEE 754 binary16.
struct Half {
  uint16_t x = 0;
  Half() = default;
  SMP_HOST_DEVICE Half(float f) : x(from_float(f)) {}  // NOLINT: implicit like c10::Half
  SMP_HOST_DEVICE operator float() const { return to_float(x); }

  SMP_HOST_DEVICE static Half from_bits(uint16_t b) {
    Half h;
    h.x = b;
    return h;
  }
  SMP_HOST_DEVICE static uint16_t from_float(float f) {
    uint32_t u = detail::f32_bits(f);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t absu = u & 0x7fffffffu;
    if (absu >= 0x7f800000u) {  // inf or nan
      return static_cast<uint16_t>(sign | 0x7c00u | (absu > 0x7f800000u ? 0x200u : 0u));
    }
    if (absu >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow
    if (absu < 0x38800000u) {  // subnormal or zero in half
      // Add 0.5 (as float) to shift the mantissa into place; float addition rounds for us.
      float a = detail::bits_f32(absu) + 0.5f;
      return static_cast<uint16_t>(sign | (detail::f32_bits(a) - 0x3f000000u));
    }
    uint32_t mant_odd = (absu >> 13) & 1u;
    absu += 0xc8000fffu + mant_odd;  // rebias exponent (-112 << 23) and round to nearest even
    return static_cast<uint16_t>(sign | (absu >> 13));
  }
  SMP_HOST_DEVICE static float to_float(uint16_t h) {
    uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) return detail::bits_f32(sign | 0x7f800000u | (mant << 13));
    if (exp == 0) {
      if (mant == 0) return detail::bits_f32(sign);
      float f = static_cast<float>(mant) * 5.9604644775390625e-08f;  // 2^-24
      return sign ? -f : f;
    }
    return detail::bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
  }
};

/// bfloat16: the upper half of a float32.
struct BFloat16 {
  uint16_t x = 0;
  BFloat16() = default;
  SMP_HOST_DEVICE BFloat16(float f) : x(from_float(f)) {}  // NOLINT: implicit like c10::BFloat16
  SMP_HOST_DEVICE operator float() const { return detail::bits_f32(static_cast<uint32_t>(x) << 16); }

  SMP_HOST_DEVICE static BFloat16 from_bits(uint16_t b) {
    BFloat16 h;
    h.x = b;
    return h;
  }
  SMP_HOST_DEVICE static uint16_t from_float(float f) {
    uint32_t u = detail::f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // nan
    u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
    return static_cast<uint16_t>(u >> 16);
  }
};

}  // namespace smp
