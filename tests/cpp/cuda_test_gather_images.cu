// CUDA gather_images against the CPU kernel on the same items (odd sizes and alignments, and
// images large enough for several blocks each); exits 77 (ctest: skipped) without a GPU.
#include <cuda_runtime.h>

#include <cstdio>
#include <random>
#include <vector>

#include "bridgedfast/gather_images.h"
#include "cuda_check.h"

using namespace bridgedfast;

BF_TEST(cuda_gather_matches_cpu) {
  std::mt19937 rng(11);
  std::vector<std::vector<uint8_t>> src = {std::vector<uint8_t>(600000), std::vector<uint8_t>(777)};
  for (auto& s : src)
    for (auto& v : s) v = static_cast<uint8_t>(rng());
  std::vector<GatherItem> items;
  int64_t dst = 5;
  for (int i = 0; i < 60; ++i) {
    const int64_t s = i % 2;
    const int64_t size = static_cast<int64_t>(src[s].size());
    const int64_t n = (i % 7 == 0) ? std::min<int64_t>(size, 150000 + i) : static_cast<int64_t>(rng() % (size + 1));
    const int64_t start = static_cast<int64_t>(rng() % (size - n + 1));
    items.push_back({s, start, n, dst});
    dst += n + (i % 3 == 0 ? 0 : static_cast<int64_t>(rng() % 17));
  }
  std::vector<uint8_t> cpu(dst, 0), gpu(dst, 1);
  const uint8_t* host_ptrs[] = {src[0].data(), src[1].data()};
  gather_images_cpu(host_ptrs, items.data(), static_cast<int64_t>(items.size()), cpu.data(), 2);

  GatherSources dev{};
  uint8_t* dev_src[2];
  for (int s = 0; s < 2; ++s) {
    cudaMalloc(&dev_src[s], src[s].size());
    cudaMemcpy(dev_src[s], src[s].data(), src[s].size(), cudaMemcpyHostToDevice);
    dev.ptr[s] = dev_src[s];
  }
  GatherItem* dev_items = nullptr;
  cudaMalloc(&dev_items, items.size() * sizeof(GatherItem));
  cudaMemcpy(dev_items, items.data(), items.size() * sizeof(GatherItem), cudaMemcpyHostToDevice);
  uint8_t* dev_out = nullptr;
  cudaMalloc(&dev_out, dst);
  cudaMemset(dev_out, 0, dst);
  int64_t max_nbytes = 0;
  for (const auto& it : items) max_nbytes = std::max(max_nbytes, it.nbytes);
  BF_CHECK(gather_images_cuda(dev, dev_items, static_cast<int64_t>(items.size()), max_nbytes, dev_out, nullptr) == 0);
  cudaMemcpy(gpu.data(), dev_out, dst, cudaMemcpyDeviceToHost);
  BF_CHECK(gpu == cpu);
  cudaFree(dev_src[0]), cudaFree(dev_src[1]), cudaFree(dev_items), cudaFree(dev_out);
}

BF_CUDA_TEST_MAIN()
