// The CPU mix_images kernel against a direct per-element evaluation of its definition.
#include <random>
#include <vector>

#include "bridgedfast/mix_images.h"
#include "check.h"

using namespace bridgedfast;

static void check_layout(bool channels_last) {
  const int64_t n = 5, c = 3, h = 7, w = 9;
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> u(-2.f, 2.f);
  std::vector<float> x(n * c * h * w), out(x.size());
  for (auto& v : x) v = u(rng);
  const float lam[] = {0.25f, 1.0f, 0.5f, 0.9f, 0.0f};
  const int32_t boxes[] = {0, 0, 0, 0,  2, 5, 1, 8,  0, 7, 0, 9,  0, 0, 0, 0,  6, 7, 3, 4};
  mix_images_cpu(OutDType::kFloat32, x.data(), out.data(), ImageBatchShape{n, c, h, w, channels_last}, lam, boxes);
  auto at = [&](const std::vector<float>& t, int64_t i, int64_t ch, int64_t y, int64_t xx) {
    return channels_last ? t[((i * h + y) * w + xx) * c + ch] : t[((i * c + ch) * h + y) * w + xx];
  };
  for (int64_t i = 0; i < n; ++i)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t y = 0; y < h; ++y)
        for (int64_t xx = 0; xx < w; ++xx) {
          const int32_t* b = boxes + 4 * i;
          const bool inside = y >= b[0] && y < b[1] && xx >= b[2] && xx < b[3];
          const double self = at(x, i, ch, y, xx), partner = at(x, n - 1 - i, ch, y, xx);
          const double expected = inside ? partner : lam[i] * self + (1.0 - lam[i]) * partner;
          BF_CHECK_NEAR(at(out, i, ch, y, xx), expected, 1e-6);
        }
}

BF_TEST(mix_images_nchw) { check_layout(false); }
BF_TEST(mix_images_channels_last) { check_layout(true); }

BF_TEST(mix_images_half_matches_float_then_round) {
  const int64_t n = 2, c = 1, h = 2, w = 3;
  std::vector<uint16_t> x(n * c * h * w), out(x.size());
  for (size_t k = 0; k < x.size(); ++k) x[k] = float_to_half_bits(0.1f * static_cast<float>(k) - 0.2f);
  const float lam[] = {0.3f, 0.7f};
  const int32_t boxes[] = {0, 1, 0, 1, 0, 0, 0, 0};
  mix_images_cpu(OutDType::kFloat16, x.data(), out.data(), ImageBatchShape{n, c, h, w, false}, lam, boxes);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < h * w; ++k) {
      const float self = half_bits_to_float(x[i * h * w + k]);
      const float partner = half_bits_to_float(x[(n - 1 - i) * h * w + k]);
      const bool inside = i == 0 && k == 0;
      const float expected = inside ? partner : self * lam[i] + partner * (1.0f - lam[i]);
      BF_CHECK(out[i * h * w + k] == float_to_half_bits(expected));
    }
}

BF_TEST_MAIN()
