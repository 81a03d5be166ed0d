// The CUDA mix_images kernel's body, run on the host over the whole launch grid the launcher
// computes (vector and scalar paths, both layouts, every dtype), against the CPU kernel.
#include <random>
#include <vector>

#include "bridgedfast/mix_images_grid.h"
#include "check.h"
#include "grid_emulator.h"

using namespace bridgedfast;

namespace {

// Runs what mix_images_cuda() launches on the host.
template <typename S>
void emulate_mix(const MixImagesGridArgs& args, bool expect_vectors) {
  const bool vectorised = mix_can_vectorise<S>(args);
  BF_CHECK(vectorised == expect_vectors);
  const LaunchConfig c = mix_images_launch<S>(args.shape, vectorised);
  BF_CHECK(bftest::config_is_legal(c));
  bftest::emulate_threads(c, [&](Dim3 block_idx, Dim3 thread_idx) {
    if (vectorised) {
      mix_images_thread<S, true>(args, block_idx, thread_idx, c.grid);
    } else {
      mix_images_thread<S, false>(args, block_idx, thread_idx, c.grid);
    }
  });
}

// 16-byte aligned storage for `count` values of T, starting `shift` values past alignment.
template <typename T>
T* aligned(std::vector<uint8_t>& storage, size_t count, size_t shift) {
  storage.assign(count * sizeof(T) + 32 + shift * sizeof(T), 0xff);
  uint8_t* p = storage.data() + (16 - reinterpret_cast<uintptr_t>(storage.data()) % 16) % 16;
  return reinterpret_cast<T*>(p) + shift;
}

// Boxes: none (Mixup), inside, touching the edges, past the edges (clamped), a full image.
std::vector<int32_t> boxes_for(int64_t n, int64_t h, int64_t w, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> boxes(4 * n, 0);
  for (int64_t i = 0; i < n; ++i) {
    int32_t* b = &boxes[4 * i];
    switch (i % 5) {
      case 0: break;
      case 1: b[0] = 1, b[1] = static_cast<int32_t>(h - 1), b[2] = 2, b[3] = static_cast<int32_t>(w - 1); break;
      case 2: b[0] = 0, b[1] = static_cast<int32_t>(h), b[2] = 0, b[3] = static_cast<int32_t>(w); break;
      case 3: b[0] = -3, b[1] = 2, b[2] = static_cast<int32_t>(w - 2), b[3] = static_cast<int32_t>(w + 5); break;
      default: {
        const int32_t y0 = static_cast<int32_t>(rng() % h), x0 = static_cast<int32_t>(rng() % w);
        b[0] = y0, b[1] = y0 + static_cast<int32_t>(rng() % (h - y0 + 1));
        b[2] = x0, b[3] = x0 + static_cast<int32_t>(rng() % (w - x0 + 1));
      }
    }
  }
  return boxes;
}

template <typename S>
void check_case(const ImageBatchShape& s, size_t shift, bool expect_vectors, unsigned seed) {
  using T = typename S::type;
  const size_t total = static_cast<size_t>(s.n * s.c * s.h * s.w);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-2.f, 2.f);
  std::vector<uint8_t> xs, cs, gs;
  T* x = aligned<T>(xs, total, shift);
  T* cpu = aligned<T>(cs, total, 0);
  T* gpu = aligned<T>(gs, total, shift);  // all-ones bytes: NaN where nothing is written
  for (size_t k = 0; k < total; ++k) x[k] = S::store(u(rng));
  std::vector<float> lam(s.n);
  for (auto& l : lam) l = std::uniform_real_distribution<float>(0.f, 1.f)(rng);
  const std::vector<int32_t> boxes = boxes_for(s.n, s.h, s.w, seed);
  mix_images_cpu(S::kDType, x, cpu, s, lam.data(), boxes.data());
  emulate_mix<S>(MixImagesGridArgs{x, gpu, s, lam.data(), boxes.data()}, expect_vectors);
  size_t bad = 0;
  for (size_t k = 0; k < total; ++k) bad += cpu[k] != gpu[k];  // the same float math: equal bits
  BF_CHECK(bad == 0);
}

}  // namespace

BF_TEST(emulated_mix_matches_cpu_every_dtype_and_layout) {
  for (bool cl : {false, true}) {
    // Rows of 12 / 24 values: whole vectors (aligned) or not (shifted storage, odd widths).
    check_case<Float32Storage>(ImageBatchShape{6, 3, 9, 12, cl}, 0, true, 1);
    check_case<Float32Storage>(ImageBatchShape{6, 3, 9, 12, cl}, 1, false, 2);
    check_case<Float32Storage>(ImageBatchShape{4, 3, 7, 13, cl}, 0, false, 3);
    check_case<Float16Storage>(ImageBatchShape{6, 3, 5, 16, cl}, 0, true, 4);
    check_case<BFloat16Storage>(ImageBatchShape{6, 3, 5, 16, cl}, 0, true, 5);
    check_case<BFloat16Storage>(ImageBatchShape{6, 3, 5, 16, cl}, 3, false, 6);
    check_case<Float16Storage>(ImageBatchShape{2, 1, 3, 5, cl}, 0, false, 7);
    check_case<Float32Storage>(ImageBatchShape{5, 3, 4, 8, cl}, 0, true, 11);  // odd batch
    check_case<Float32Storage>(ImageBatchShape{1, 3, 4, 7, cl}, 0, false, 12);
  }
  check_case<Float32Storage>(ImageBatchShape{4, 1, 6, 8, true}, 0, true, 8);  // one channel
}

BF_TEST(emulated_mix_grids_stride_past_65535_blocks) {
  // grid.z: 70001 pairs (an odd batch: the middle image is its own partner); grid.y: 600000
  // rows of one image (75000 blocks of 8 rows).
  check_case<Float32Storage>(ImageBatchShape{140001, 1, 1, 4, false}, 0, true, 9);
  BF_CHECK(mix_images_launch<Float32Storage>(ImageBatchShape{140001, 1, 1, 4, false}, true).grid.z == 65535);
  check_case<Float32Storage>(ImageBatchShape{2, 3, 200000, 4, false}, 0, true, 10);
  BF_CHECK(mix_images_launch<Float32Storage>(ImageBatchShape{2, 3, 200000, 4, false}, true).grid.y == 65535);
}

BF_TEST_MAIN()
