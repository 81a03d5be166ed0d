// The CUDA resized_crop kernels' bodies (tile and direct paths), run on the host over the whole
// launch grid the launcher computes, against the CPU kernel. No GPU needed.
#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "bridgedfast/resized_crop_grid.h"
#include "check.h"
#include "grid_emulator.h"

using namespace bridgedfast;

namespace {

// Runs what resized_crop_cuda() launches, with the same plan, arguments and grids.
void emulate_resized_crop(const std::vector<ResizedCropImage>& images, const ResizedCropParams& p, void* out) {
  const ResizedCropPlan plan = plan_resized_crop(images.data(), p);
  const ResizedCropGridArgs args = resized_crop_grid_args(images.data(), p, out);
  dispatch_out_dtype(p.dtype, [&](auto tag) {
    using S = decltype(tag);
    if (plan.tile) {
      const LaunchConfig c = resized_crop_tile_launch(p);
      BF_CHECK(bftest::config_is_legal(c));
      bftest::emulate_blocks<ResizedCropTileThread, ResizedCropTileShared>(
          c, [&](auto& block, Dim3 block_idx, ResizedCropTileShared& shared) {
            resized_crop_tile_block<S>(block, args, block_idx, c.grid, shared);
          });
    }
    if (plan.direct) {
      const LaunchConfig c = resized_crop_direct_launch(p);
      BF_CHECK(bftest::config_is_legal(c));
      bftest::emulate_threads(c, [&](Dim3 block_idx, Dim3 thread_idx) {
        resized_crop_direct_thread<S>(args, block_idx, thread_idx, c.grid);
      });
    }
  });
}

struct Batch {
  std::vector<std::vector<uint8_t>> buffers;  // one per image: rows may be padded (a view)
  std::vector<ResizedCropImage> images;
};

// Images of 1..max_side pixels, some with padded rows; boxes from 1 pixel to the whole image,
// flips, eval-style windows of a larger resize, and (every `strong` images) a crop much wider
// than the output, which only the direct kernel renders.
Batch random_batch(unsigned seed, int n, int out_h, int out_w, int max_side, int strong) {
  std::mt19937 rng(seed);
  Batch b;
  b.buffers.resize(n);
  for (int i = 0; i < n; ++i) {
    int h = std::uniform_int_distribution<int>(1, max_side)(rng);
    int w = std::uniform_int_distribution<int>(1, max_side)(rng);
    if (strong > 0 && i % strong == 0) w = std::max(w, 10 * out_w);
    const int64_t stride = 3 * static_cast<int64_t>(w) + (i % 3 == 2 ? 7 : 0);
    auto& buf = b.buffers[i];
    buf.resize(static_cast<size_t>(stride * h));
    for (auto& v : buf) v = static_cast<uint8_t>(rng());
    ResizedCropImage im{};
    im.pixels = buf.data();
    im.row_stride = stride;
    im.height = h;
    im.width = w;
    const int bh = i % 7 == 0 ? 1 : std::uniform_int_distribution<int>(1, h)(rng);
    int bw = i % 7 == 0 ? 1 : std::uniform_int_distribution<int>(1, w)(rng);
    if (strong > 0 && i % strong == 0) bw = w;
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
  return b;
}

ResizedCropParams params_for(int64_t n, int out_h, int out_w, bool aa, bool channels_last, OutDType dtype) {
  ResizedCropParams p{};
  p.n = n, p.out_h = out_h, p.out_w = out_w, p.antialias = aa, p.channels_last = channels_last, p.dtype = dtype;
  const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
  for (int c = 0; c < 3; ++c) p.scale[c] = 1.0f / (255.0f * std[c]), p.shift[c] = -mean[c] / std[c];
  return p;
}

float decode(OutDType dtype, const void* out, size_t k) {
  if (dtype == OutDType::kFloat32) return static_cast<const float*>(out)[k];
  const uint16_t v = static_cast<const uint16_t*>(out)[k];
  return dtype == OutDType::kFloat16 ? half_bits_to_float(v) : bfloat16_bits_to_float(v);
}

// The emulated kernels against the CPU kernel: float32 within float rounding of the two
// summation orders; 16-bit within one rounding of the output type. Every value is written
// (the output starts as NaN).
void check_against_cpu(const Batch& b, const ResizedCropParams& p, int offset_bytes = 0) {
  const size_t total = static_cast<size_t>(p.n) * 3 * p.out_h * p.out_w;
  const size_t elem = p.dtype == OutDType::kFloat32 ? 4 : 2;
  std::vector<uint8_t> cpu(total * elem), gpu_storage(total * elem + 64, 0xff);
  // A 16-byte aligned output (vector stores) or one shifted off alignment (scalar stores).
  uint8_t* gpu = gpu_storage.data() + (16 - reinterpret_cast<uintptr_t>(gpu_storage.data()) % 16) % 16 + offset_bytes;
  resized_crop_cpu(b.images.data(), p, cpu.data());
  emulate_resized_crop(b.images, p, gpu);
  const double ulp = p.dtype == OutDType::kFloat32 ? 0.0 : p.dtype == OutDType::kFloat16 ? std::ldexp(1.0, -10)
                                                                                           : std::ldexp(1.0, -7);
  double worst = 0.0;
  for (size_t k = 0; k < total; ++k) {
    const double want = decode(p.dtype, cpu.data(), k), got = decode(p.dtype, gpu, k);
    const double err = std::fabs(got - want) - ulp * std::max(1.0, std::fabs(want));
    worst = std::isnan(got) ? 1e30 : std::max(worst, err);
  }
  BF_CHECK_NEAR(worst, 0.0, 2e-5);
}

}  // namespace

BF_TEST(emulated_tile_and_direct_kernels_match_cpu) {
  for (bool aa : {true, false}) {
    for (bool cl : {false, true}) {
      for (int out_w : {37, 44}) {  // partial 4-pixel groups (scalar stores) and whole ones (vectors)
        const Batch b = random_batch(11 + out_w + 2 * cl + aa, 23, 45, out_w, 300, 6);
        const ResizedCropPlan plan = plan_resized_crop(b.images.data(), params_for(23, 45, out_w, aa, cl, OutDType::kFloat32));
        BF_CHECK(plan.tile && plan.direct);  // both kernels run
        check_against_cpu(b, params_for(23, 45, out_w, aa, cl, OutDType::kFloat32));
      }
    }
  }
}

BF_TEST(emulated_kernels_low_precision_and_unaligned_output) {
  const Batch b = random_batch(5, 17, 36, 40, 200, 5);
  for (OutDType dtype : {OutDType::kFloat16, OutDType::kBFloat16}) {
    for (bool cl : {false, true}) check_against_cpu(b, params_for(17, 36, 40, true, cl, dtype));
  }
  // An output that is not 16-byte aligned takes the scalar stores.
  check_against_cpu(b, params_for(17, 36, 40, true, false, OutDType::kFloat32), 4);
  check_against_cpu(b, params_for(17, 36, 40, true, true, OutDType::kFloat16), 2);
}

BF_TEST(tile_path_bound_holds_at_its_limit) {
  // Downscales just inside and just outside what the tile kernel takes (64 columns: a whole
  // tile away from the crop's edges): the staged span never outgrows its shared row.
  int tile = 0, direct = 0;
  for (int crop_w = 466; crop_w <= 520; crop_w += 2) {
    std::vector<uint8_t> data(static_cast<size_t>(3) * crop_w * 40);
    for (size_t k = 0; k < data.size(); ++k) data[k] = static_cast<uint8_t>((k * 7919) >> 3);
    Batch b;
    for (int i = 0; i < 2; ++i) {
      ResizedCropImage im{};
      im.pixels = data.data(), im.height = 40, im.width = crop_w, im.row_stride = 3 * crop_w;
      im.y = AxisMap{0, 40, 20, 0}, im.x = AxisMap{0, crop_w, 64, 0}, im.flip = i;
      b.images.push_back(im);
      (tile_path_fits(im, true) ? tile : direct) += 1;
    }
    check_against_cpu(b, params_for(2, 20, 64, true, false, OutDType::kFloat32));
  }
  BF_CHECK(tile > 0 && direct > 0);
}

BF_TEST(emulated_grids_stride_past_65535_blocks) {
  // grid.y: 70000 images (one tile each); grid.x: one image of 65537 tiles; the direct kernel
  // also past 65535 blocks of one image. The output starts as NaN: every value must be written.
  {
    const int n = 70000;
    std::vector<uint8_t> data(static_cast<size_t>(n) * 36);
    std::mt19937 rng(9);
    for (auto& v : data) v = static_cast<uint8_t>(rng());
    Batch b;
    for (int i = 0; i < n; ++i) {
      ResizedCropImage im{};
      im.pixels = data.data() + 36 * static_cast<int64_t>(i), im.row_stride = 12, im.height = 3, im.width = 4;
      im.y = AxisMap{0, 3, 2, 0}, im.x = AxisMap{1, 3, 3, 0}, im.flip = i % 2;
      b.images.push_back(im);
    }
    BF_CHECK(resized_crop_tile_launch(params_for(n, 2, 3, true, false, OutDType::kFloat32)).grid.y == 65535);
    check_against_cpu(b, params_for(n, 2, 3, true, false, OutDType::kFloat32));
  }
  {
    std::vector<uint8_t> data(3 * 4 * 3);
    for (size_t k = 0; k < data.size(); ++k) data[k] = static_cast<uint8_t>(17 * k);
    Batch b;
    ResizedCropImage im{};
    im.pixels = data.data(), im.row_stride = 12, im.height = 3, im.width = 4;
    im.y = AxisMap{0, 3, kTileH * 65536 + 1, 0}, im.x = AxisMap{1, 3, 1, 0};
    b.images.push_back(im);
    const ResizedCropParams p = params_for(1, kTileH * 65536 + 1, 1, true, false, OutDType::kFloat32);
    BF_CHECK(tiles_per_image(p) > 65535 && resized_crop_tile_launch(p).grid.x == 65535);
    check_against_cpu(b, p);
  }
  {
    std::vector<uint8_t> data(3 * 40 * 3);
    for (size_t k = 0; k < data.size(); ++k) data[k] = static_cast<uint8_t>(29 * k);
    Batch b;
    ResizedCropImage im{};
    im.pixels = data.data(), im.row_stride = 120, im.height = 3, im.width = 40;
    im.y = AxisMap{0, 3, kDirectBlockH * 65536 + 3, 0}, im.x = AxisMap{0, 40, 2, 0};  // 20x narrower: direct
    b.images.push_back(im);
    const ResizedCropParams p = params_for(1, kDirectBlockH * 65536 + 3, 2, true, true, OutDType::kFloat32);
    BF_CHECK(!tile_path_fits(im, true) && resized_crop_direct_launch(p).grid.x == 65535);
    check_against_cpu(b, p);
  }
}

BF_TEST_MAIN()
