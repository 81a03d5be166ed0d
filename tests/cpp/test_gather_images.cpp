// The CPU gather kernel against a byte-by-byte copy of its definition.
#include <random>
#include <vector>

#include "bridgedfast/gather_images.h"
#include "check.h"

using namespace bridgedfast;

BF_TEST(gather_images_copies_each_range) {
  std::mt19937 rng(7);
  std::vector<std::vector<uint8_t>> src = {std::vector<uint8_t>(300), std::vector<uint8_t>(41)};
  for (auto& s : src)
    for (auto& v : s) v = static_cast<uint8_t>(rng());
  const uint8_t* ptrs[] = {src[0].data(), src[1].data()};
  std::vector<GatherItem> items;
  int64_t dst = 3;
  for (int i = 0; i < 25; ++i) {
    const int64_t s = rng() % 2;
    const int64_t size = static_cast<int64_t>(src[s].size());
    const int64_t n = rng() % (size + 1);
    const int64_t start = rng() % (size - n + 1);
    items.push_back({s, start, n, dst});
    dst += n + static_cast<int64_t>(rng() % 5);
  }
  std::vector<uint8_t> out(dst, 0xAB), expected(dst, 0xAB);
  for (const auto& it : items)
    for (int64_t k = 0; k < it.nbytes; ++k) expected[it.dst_offset + k] = src[it.source][it.src_offset + k];
  for (int threads : {1, 2, 0}) {
    std::fill(out.begin(), out.end(), 0xAB);
    gather_images_cpu(ptrs, items.data(), static_cast<int64_t>(items.size()), out.data(), threads);
    BF_CHECK(out == expected);
  }
}

BF_TEST(gather_images_no_items_touches_nothing) {
  std::vector<uint8_t> out(8, 1);
  gather_images_cpu(nullptr, nullptr, 0, out.data(), 2);
  BF_CHECK(out == std::vector<uint8_t>(8, 1));
}

BF_TEST_MAIN()
