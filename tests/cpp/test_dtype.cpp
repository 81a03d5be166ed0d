// Low-precision conversions of csrc/include/bridgedfast/dtype.h against the compiler's own
// IEEE binary16 (_Float16) and against hand-computed bfloat16 values.
#include <cstring>
#include <random>

#include "bridgedfast/dtype.h"
#include "check.h"

using namespace bridgedfast;

static uint16_t reference_half_bits(float f) {
  const _Float16 h = static_cast<_Float16>(f);  // IEEE round-to-nearest-even
  uint16_t bits;
  std::memcpy(&bits, &h, sizeof(bits));
  return bits;
}

BF_TEST(half_roundtrip_every_bit_pattern) {
  int mismatches = 0;
  for (uint32_t h = 0; h < 0x10000u; ++h) {
    const uint16_t bits = static_cast<uint16_t>(h);
    _Float16 ref;
    std::memcpy(&ref, &bits, sizeof(ref));
    const float f = half_bits_to_float(bits);
    const float expected = static_cast<float>(ref);
    const bool both_nan = std::isnan(f) && std::isnan(expected);
    if (!both_nan && float_as_bits(f) != float_as_bits(expected)) ++mismatches;
    if (!std::isnan(f) && float_to_half_bits(f) != bits) ++mismatches;
  }
  BF_CHECK(mismatches == 0);
}

BF_TEST(half_rounding_matches_compiler_on_random_floats) {
  std::mt19937 rng(1234);
  std::uniform_int_distribution<uint32_t> any_bits;
  int mismatches = 0;
  for (int i = 0; i < 2000000; ++i) {
    const float f = bits_as_float(any_bits(rng));
    if (std::isnan(f)) continue;
    if (float_to_half_bits(f) != reference_half_bits(f)) ++mismatches;
  }
  // Ties and the overflow / subnormal boundaries, where rounding bugs hide.
  const float edges[] = {65504.f, 65519.99f, 65520.f, 1e9f, 6.1035156e-05f, 5.9604645e-08f, 2.9802322e-08f,
                         2.9802326e-08f, 1.0009766f, 1.0014648f, 0.33333334f, -0.0f, 2049.f, 2051.f};
  for (float f : edges) {
    if (float_to_half_bits(f) != reference_half_bits(f)) ++mismatches;
    if (float_to_half_bits(-f) != reference_half_bits(-f)) ++mismatches;
  }
  BF_CHECK(mismatches == 0);
}

BF_TEST(bfloat16_hand_values) {
  BF_CHECK(float_to_bfloat16_bits(1.0f) == 0x3f80);
  BF_CHECK(float_to_bfloat16_bits(-2.0f) == 0xc000);
  // 1 + 2^-8 is exactly halfway between bf16 1.0 and 1.0078125: ties to even (1.0).
  BF_CHECK(float_to_bfloat16_bits(1.00390625f) == 0x3f80);
  // 1.0078125 + 2^-8 is halfway with an odd lower neighbour: rounds up to 1.015625.
  BF_CHECK(float_to_bfloat16_bits(1.01171875f) == 0x3f82);
  BF_CHECK(float_to_bfloat16_bits(bits_as_float(0x7fc00001u)) == 0x7fc0);
  BF_CHECK(bfloat16_bits_to_float(0x4049) == 3.140625f);
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1000.f, 1000.f);
  for (int i = 0; i < 100000; ++i) {
    const float f = u(rng);
    const float r = bfloat16_bits_to_float(float_to_bfloat16_bits(f));
    BF_CHECK_NEAR(r, f, std::fabs(f) * (1.0 / 256.0));
  }
}

BF_TEST_MAIN()
