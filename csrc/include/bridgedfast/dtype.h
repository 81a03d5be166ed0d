// Float32 <-> float16 / bfloat16 conversion on raw 16-bit storage, round-to-nearest-even,
// identical on host and device, so CPU and CUDA kernels write bit-identical low-precision
// outputs from the same float value. Kernels compute in float and convert once on store.
#pragma once

#include <cstring>

#include "macros.h"

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

namespace bridgedfast {

enum class OutDType : int32_t { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

BF_HOST_DEVICE_INLINE uint32_t float_as_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
#endif
}

BF_HOST_DEVICE_INLINE float bits_as_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
#endif
}

// Keeps the `keep` high bits of `value`, rounding the dropped low bits to nearest, ties to
// even. The carry may ripple into the exponent, which is exactly IEEE rounding behaviour.
BF_HOST_DEVICE_INLINE uint32_t round_shift_right_even(uint32_t value, int shift) {
  const uint32_t q = value >> shift;
  const uint32_t rem = value & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1);
  return q + ((rem > half || (rem == half && (q & 1u))) ? 1u : 0u);
}

BF_HOST_DEVICE_INLINE uint16_t float_to_half_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __half_as_ushort(__float2half_rn(f));
#else
  const uint32_t x = float_as_bits(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) return static_cast<uint16_t>(sign | (ax > 0x7f800000u ? 0x7e00u : 0x7c00u));
  if (ax >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds past 65504
  if (ax >= 0x38800000u) {  // normal half: rebias the exponent (127 - 15 = 112)
    return static_cast<uint16_t>(sign | round_shift_right_even(ax - 0x38000000u, 13));
  }
  if (ax < 0x33000000u) return static_cast<uint16_t>(sign);  // below half of the smallest subnormal
  // Subnormal half: value = m * 2^-24 with m = round(mantissa * 2^(e - 126)).
  const uint32_t e = ax >> 23;
  const uint32_t mant = (ax & 0x7fffffu) | 0x800000u;
  return static_cast<uint16_t>(sign | round_shift_right_even(mant, static_cast<int>(126u - e)));
#endif
}

BF_HOST_DEVICE_INLINE float half_bits_to_float(uint16_t h) {
#if defined(__CUDA_ARCH__)
  return __half2float(__ushort_as_half(h));
#else
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu;
  const uint32_t m = h & 0x3ffu;
  if (e == 0x1fu) return bits_as_float(sign | 0x7f800000u | (m << 13));
  if (e == 0) {
    const float v = static_cast<float>(m) * 5.9604644775390625e-08f;  // m * 2^-24, exact
    return sign ? -v : v;
  }
  return bits_as_float(sign | ((e + 112u) << 23) | (m << 13));
#endif
}

BF_HOST_DEVICE_INLINE uint16_t float_to_bfloat16_bits(float f) {
  const uint32_t x = float_as_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>(((x >> 16) & 0x8000u) | 0x7fc0u);
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

BF_HOST_DEVICE_INLINE float bfloat16_bits_to_float(uint16_t b) {
  return bits_as_float(static_cast<uint32_t>(b) << 16);
}

// Storage traits: kernels are templated on one of these and compute in float.
struct Float32Storage {
  using type = float;
  static constexpr OutDType kDType = OutDType::kFloat32;
  BF_HOST_DEVICE_INLINE static float load(float v) { return v; }
  BF_HOST_DEVICE_INLINE static float store(float v) { return v; }
};

struct Float16Storage {
  using type = uint16_t;
  static constexpr OutDType kDType = OutDType::kFloat16;
  BF_HOST_DEVICE_INLINE static float load(uint16_t v) { return half_bits_to_float(v); }
  BF_HOST_DEVICE_INLINE static uint16_t store(float v) { return float_to_half_bits(v); }
};

struct BFloat16Storage {
  using type = uint16_t;
  static constexpr OutDType kDType = OutDType::kBFloat16;
  BF_HOST_DEVICE_INLINE static float load(uint16_t v) { return bfloat16_bits_to_float(v); }
  BF_HOST_DEVICE_INLINE static uint16_t store(float v) { return float_to_bfloat16_bits(v); }
};

// Calls `fn(StorageTag{})` for the runtime dtype; returns false for an unknown dtype.
template <typename Fn>
inline bool dispatch_out_dtype(OutDType dtype, Fn&& fn) {
  switch (dtype) {
    case OutDType::kFloat32: fn(Float32Storage{}); return true;
    case OutDType::kFloat16: fn(Float16Storage{}); return true;
    case OutDType::kBFloat16: fn(BFloat16Storage{}); return true;
  }
  return false;
}

}  // namespace bridgedfast
