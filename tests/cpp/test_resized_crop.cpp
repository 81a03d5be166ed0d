// The shared tap math of resized_crop.h against hand-computed weights, and the CPU kernel
// against a direct double-precision evaluation of the separable sum.
#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "bridgedfast/resized_crop.h"
#include "check.h"

using namespace bridgedfast;

BF_TEST(antialias_weights_by_hand) {
  // 9 -> 4: scale 2.25, support 2.25. Output 0: center 1.125, taps 0..2 with triangle weights
  // 1 - |k - 1.125 + 0.5| / 2.25 = 13/18, 15/18, 7/18, normalised by their sum 35/18.
  const AxisMap m{0, 9, 4, 0};
  float w[16];
  int32_t start = -1;
  const int count = axis_taps(m, true, 0, &start, w);
  BF_CHECK(count == 3 && start == 0);
  BF_CHECK_NEAR(w[0], 13.0 / 35.0, 1e-6);
  BF_CHECK_NEAR(w[1], 15.0 / 35.0, 1e-6);
  BF_CHECK_NEAR(w[2], 7.0 / 35.0, 1e-6);
  // Output 3 (the last): center 7.875, taps 6..8 (clipped at the crop end).
  const int last = axis_taps(m, true, 3, &start, w);
  BF_CHECK(last == 3 && start == 6);
  BF_CHECK_NEAR(w[0], (1 - 1.375 / 2.25) / ((1 - 1.375 / 2.25) + (1 - 0.375 / 2.25) + (1 - 0.625 / 2.25)), 1e-6);
  // The crop start only shifts the taps.
  const AxisMap shifted{5, 9, 4, 0};
  axis_taps(shifted, true, 3, &start, w);
  BF_CHECK(start == 11);
}

BF_TEST(bilinear_weights_by_hand) {
  // 2 -> 5 without antialias: src = 0.4 (r + 0.5) - 0.5, clamped at 0 and at the last pixel.
  const AxisMap m{3, 2, 5, 0};
  float w[4];
  int32_t start = -1;
  BF_CHECK(axis_taps(m, false, 0, &start, w) == 2 && start == 3);
  BF_CHECK_NEAR(w[0], 1.0, 1e-7);
  BF_CHECK_NEAR(w[1], 0.0, 1e-7);
  BF_CHECK(axis_taps(m, false, 2, &start, w) == 2 && start == 3);
  BF_CHECK_NEAR(w[0], 0.5, 1e-6);
  BF_CHECK_NEAR(w[1], 0.5, 1e-6);
  BF_CHECK(axis_taps(m, false, 4, &start, w) == 1 && start == 4);
  BF_CHECK_NEAR(w[0], 1.0, 0);
  // Upscaling with antialias is the same triangle (support 1), renormalised at the edge.
  BF_CHECK(axis_taps(m, true, 2, &start, w) == 2 && start == 3);
  BF_CHECK_NEAR(w[0], 0.5, 1e-6);
  BF_CHECK_NEAR(w[1], 0.5, 1e-6);
}

BF_TEST(taps_stay_in_crop_sum_to_one_and_respect_the_bound) {
  std::mt19937 rng(1);
  std::uniform_int_distribution<int> len(1, 400);
  std::vector<float> w(1024);
  int bad = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    const AxisMap m{len(rng), len(rng), len(rng), 0};
    for (bool aa : {true, false}) {
      const int bound = axis_max_taps(m, aa);
      for (int r = 0; r < m.resize_len; r += 1 + m.resize_len / 17) {
        int32_t start = 0;
        const int count = axis_taps(m, aa, r, &start, w.data());
        double sum = 0;
        for (int k = 0; k < count; ++k) sum += w[k];
        if (count < 1 || count > bound || start < m.crop_start || start + count > m.crop_start + m.crop_len ||
            std::fabs(sum - 1.0) > 1e-5) {
          ++bad;
        }
      }
    }
  }
  BF_CHECK(bad == 0);
}

// Direct evaluation: for every output pixel, sum over row taps and column taps in double.
static std::vector<double> naive(const std::vector<ResizedCropImage>& images, const ResizedCropParams& p) {
  const int64_t plane = static_cast<int64_t>(p.out_h) * p.out_w;
  std::vector<double> out(images.size() * 3 * plane);
  std::vector<float> wy(1024), wx(1024);
  for (size_t n = 0; n < images.size(); ++n) {
    const ResizedCropImage& im = images[n];
    for (int oy = 0; oy < p.out_h; ++oy) {
      int32_t y0 = 0;
      const int ny = axis_taps(im.y, p.antialias, oy + im.y.window_start, &y0, wy.data());
      for (int ox = 0; ox < p.out_w; ++ox) {
        int32_t x0 = 0;
        const int nx = axis_taps(im.x, p.antialias, resized_column(im, ox, p.out_w), &x0, wx.data());
        for (int c = 0; c < 3; ++c) {
          double acc = 0;
          for (int ky = 0; ky < ny; ++ky)
            for (int kx = 0; kx < nx; ++kx)
              acc += static_cast<double>(wy[ky]) * wx[kx] *
                     im.pixels[static_cast<int64_t>(y0 + ky) * im.row_stride + (x0 + kx) * 3 + c];
          const double v = acc * p.scale[c] + p.shift[c];
          const int64_t o = p.channels_last ? n * 3 * plane + (static_cast<int64_t>(oy) * p.out_w + ox) * 3 + c
                                            : (n * 3 + c) * plane + static_cast<int64_t>(oy) * p.out_w + ox;
          out[o] = v;
        }
      }
    }
  }
  return out;
}

struct Batch {
  std::vector<uint8_t> data;
  std::vector<ResizedCropImage> images;  // pixels point into data
};

// Boxes that force both pass orders: strong downscales (rows first) and upscales (columns
// first), flips, eval-style windows of a larger resize, 1-pixel crops; every third image has
// padded rows (a view of a wider image).
static Batch random_batch(unsigned seed, int n, int out_h, int out_w) {
  std::mt19937 rng(seed);
  Batch b;
  std::vector<int64_t> offsets;
  for (int i = 0; i < n; ++i) {
    const int h = std::uniform_int_distribution<int>(1, 150)(rng);
    const int w = std::uniform_int_distribution<int>(1, 150)(rng);
    ResizedCropImage im{};
    offsets.push_back(static_cast<int64_t>(b.data.size()));
    im.height = h;
    im.width = w;
    im.row_stride = 3 * w + (i % 3 == 2 ? 5 : 0);
    for (int64_t k = 0; k < im.row_stride * h; ++k) b.data.push_back(static_cast<uint8_t>(rng()));
    const int bh = i % 7 == 0 ? 1 : std::uniform_int_distribution<int>(1, h)(rng);
    const int bw = i % 7 == 0 ? 1 : std::uniform_int_distribution<int>(1, w)(rng);
    im.y = AxisMap{std::uniform_int_distribution<int>(0, h - bh)(rng), bh, out_h, 0};
    im.x = AxisMap{std::uniform_int_distribution<int>(0, w - bw)(rng), bw, out_w, 0};
    if (i % 5 == 1) {  // resize larger, then a window of it
      im.y.resize_len = out_h + 7;
      im.y.window_start = 3;
      im.x.resize_len = out_w + 4;
      im.x.window_start = 4;
    }
    im.flip = static_cast<int32_t>(rng() & 1u);
    b.images.push_back(im);
  }
  for (int i = 0; i < n; ++i) b.images[i].pixels = b.data.data() + offsets[i];
  return b;
}

static ResizedCropParams params_for(int64_t n, int out_h, int out_w, bool aa, bool channels_last, OutDType dtype) {
  ResizedCropParams p{};
  p.n = n;
  p.out_h = out_h;
  p.out_w = out_w;
  p.antialias = aa;
  p.channels_last = channels_last;
  p.dtype = dtype;
  const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
  for (int c = 0; c < 3; ++c) {
    p.scale[c] = 1.0f / (255.0f * std[c]);
    p.shift[c] = -mean[c] / std[c];
  }
  return p;
}

BF_TEST(cpu_kernel_matches_direct_sum) {
  // Both the run-time-picked x86 SIMD code and the portable baseline.
  for (bool simd : {true, false}) {
    const bool previous = resized_crop_cpu_set_simd(simd);
    for (bool aa : {true, false}) {
      for (bool cl : {false, true}) {
        for (int n : {1, 3, 40}) {  // few images split into row bands, many images one each
          const Batch b = random_batch(7 + n, n, 19, 23);
          const ResizedCropParams p = params_for(n, 19, 23, aa, cl, OutDType::kFloat32);
          std::vector<float> out(static_cast<size_t>(n) * 3 * 19 * 23, -1000.f);
          resized_crop_cpu(b.images.data(), p, out.data());
          const std::vector<double> ref = naive(b.images, p);
          double max_err = 0;
          for (size_t k = 0; k < out.size(); ++k) max_err = std::max(max_err, std::fabs(out[k] - ref[k]));
          BF_CHECK_NEAR(max_err, 0.0, 2e-5);
        }
      }
    }
    resized_crop_cpu_set_simd(previous);
  }
}

BF_TEST(cpu_kernel_low_precision_is_one_rounding) {
  const Batch b = random_batch(3, 12, 9, 14);
  for (int variant = 0; variant < 8; ++variant) {
    const OutDType dtype = variant % 2 ? OutDType::kBFloat16 : OutDType::kFloat16;
    const bool previous = resized_crop_cpu_set_simd(variant / 4 == 0);
    const ResizedCropParams p = params_for(12, 9, 14, true, (variant / 2) % 2 == 1, dtype);
    std::vector<uint16_t> out(12 * 3 * 9 * 14);
    resized_crop_cpu(b.images.data(), p, out.data());
    const std::vector<double> ref = naive(b.images, p);
    int bad = 0;
    for (size_t k = 0; k < out.size(); ++k) {
      const double v = dtype == OutDType::kFloat16 ? half_bits_to_float(out[k]) : bfloat16_bits_to_float(out[k]);
      const double ulp = dtype == OutDType::kFloat16 ? std::ldexp(1.0, -10) : std::ldexp(1.0, -7);
      if (std::fabs(v - ref[k]) > ulp * std::max(1.0, std::fabs(ref[k])) * 0.5 + 1e-5) ++bad;
    }
    BF_CHECK(bad == 0);
    resized_crop_cpu_set_simd(previous);
  }
}

BF_TEST(cpu_kernel_bits_do_not_depend_on_thread_count) {
  // Few images are split into row bands by thread count; the output must be the same bits.
#if defined(_OPENMP)
  const int previous = omp_get_max_threads();
  for (bool simd : {true, false}) {
    const bool previous_simd = resized_crop_cpu_set_simd(simd);
    for (bool aa : {true, false}) {
      const Batch b = random_batch(41, 3, 37, 29);
      const ResizedCropParams p = params_for(3, 37, 29, aa, false, OutDType::kFloat32);
      std::vector<float> one(static_cast<size_t>(3) * 3 * 37 * 29), many(one.size());
      omp_set_num_threads(1);
      resized_crop_cpu(b.images.data(), p, one.data());
      for (int threads : {2, 3, 8}) {
        omp_set_num_threads(threads);
        resized_crop_cpu(b.images.data(), p, many.data());
        BF_CHECK(std::memcmp(one.data(), many.data(), one.size() * sizeof(float)) == 0);
      }
    }
    resized_crop_cpu_set_simd(previous_simd);
  }
  omp_set_num_threads(previous);
#endif
}

BF_TEST_MAIN()
