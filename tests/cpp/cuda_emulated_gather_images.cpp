// The CUDA gather_images kernel's body, run on the host over the whole launch grid the launcher
// computes, against the CPU kernel: odd sizes and alignments, items larger than the blocks one
// item gets (grid-stride along the item), and more items than grid.y takes.
#include <algorithm>
#include <random>
#include <vector>

#include "bridgedfast/gather_images_grid.h"
#include "check.h"
#include "grid_emulator.h"

using namespace bridgedfast;

namespace {

// The kernel reads whole aligned 16-byte blocks around misaligned sources (as the GPU's memory
// granules allow); here each source sits inside 32 bytes of slack so those reads stay in bounds.
void check_case(const std::vector<std::vector<uint8_t>>& src, const std::vector<GatherItem>& items, int64_t out_size) {
  GatherSources sources{};
  std::vector<std::vector<uint8_t>> padded(src.size());
  std::vector<const uint8_t*> host(src.size());
  for (size_t s = 0; s < src.size(); ++s) {
    padded[s].assign(src[s].size() + 64, 0xee);
    std::copy(src[s].begin(), src[s].end(), padded[s].begin() + 32);
    sources.ptr[s] = host[s] = padded[s].data() + 32;
  }
  std::vector<uint8_t> cpu(out_size, 0), gpu(out_size, 1);
  gather_images_cpu(host.data(), items.data(), static_cast<int64_t>(items.size()), cpu.data(), 2);
  int64_t max_nbytes = 0;
  for (const auto& it : items) max_nbytes = std::max(max_nbytes, it.nbytes);
  for (size_t k = 0; k < gpu.size(); ++k) gpu[k] = cpu[k] ^ 0x5a;  // every covered byte must be written
  const LaunchConfig c = gather_images_launch(static_cast<int64_t>(items.size()), max_nbytes);
  BF_CHECK(bftest::config_is_legal(c));
  const GatherImagesGridArgs args{sources, items.data(), static_cast<int64_t>(items.size()), gpu.data()};
  bftest::emulate_threads(c, [&](Dim3 b, Dim3 t) { gather_images_thread(args, b, t, c.grid, c.block); });
  std::vector<bool> covered(out_size, false);
  for (const auto& it : items)
    for (int64_t k = 0; k < it.nbytes; ++k) covered[it.dst_offset + k] = true;
  size_t bad = 0;
  for (int64_t k = 0; k < out_size; ++k) bad += covered[k] ? gpu[k] != cpu[k] : gpu[k] != (cpu[k] ^ 0x5a);
  BF_CHECK(bad == 0);
}

}  // namespace

BF_TEST(emulated_gather_matches_cpu) {
  std::mt19937 rng(11);
  // The 20 MB source outgrows the 1024 blocks an item gets: threads stride along it.
  std::vector<std::vector<uint8_t>> src = {std::vector<uint8_t>(20 << 20), std::vector<uint8_t>(777)};
  for (auto& s : src)
    for (auto& v : s) v = static_cast<uint8_t>(rng());
  std::vector<GatherItem> items;
  int64_t dst = 5;
  for (int i = 0; i < 60; ++i) {
    const int64_t s = i % 2;
    const int64_t size = static_cast<int64_t>(src[s].size());
    int64_t n = (i % 7 == 0) ? std::min<int64_t>(size, 150000 + i) : static_cast<int64_t>(rng() % std::min<int64_t>(size + 1, 5000));
    if (i == 10) n = size;  // the whole 20 MB
    const int64_t start = static_cast<int64_t>(rng() % (size - n + 1));
    items.push_back({s, start, n, dst});
    dst += n + (i % 3 == 0 ? 0 : static_cast<int64_t>(rng() % 17));
  }
  BF_CHECK(gather_images_launch(60, 20 << 20).grid.x == kGatherMaxBlocksPerItem);
  check_case(src, items, dst);
}

BF_TEST(emulated_gather_strides_past_65535_items) {
  std::vector<std::vector<uint8_t>> src = {std::vector<uint8_t>(4096)};
  for (size_t k = 0; k < src[0].size(); ++k) src[0][k] = static_cast<uint8_t>(k * 31 + 7);
  std::vector<GatherItem> items;
  int64_t dst = 0;
  for (int i = 0; i < 70000; ++i) {
    const int64_t n = 1 + i % 23, start = (i * 37) % (4096 - 23);
    items.push_back({0, start, n, dst});
    dst += n;
  }
  BF_CHECK(gather_images_launch(70000, 23).grid.y == 65535);
  check_case(src, items, dst);
}

BF_TEST_MAIN()
