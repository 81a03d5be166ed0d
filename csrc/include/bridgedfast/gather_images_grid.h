// The CUDA gather_images kernel's body as a BF_HOST_DEVICE function of (arguments, block index,
// thread index), wrapped by csrc/cuda/gather_images_cuda_kernel.cu and run on the host by
// tests/cpp/grid_emulator.h. Torch-free and CUDA-free.
#pragma once

#include "gather_images.h"
#include "grid.h"

namespace bridgedfast {

struct GatherImagesGridArgs {
  GatherSources sources;
  const GatherItem* items;  // device array
  int64_t n;
  uint8_t* out;
};

constexpr int kGatherThreads = 256;
constexpr int64_t kGatherBytesPerBlock = kGatherThreads * 16 * 4;  // four 16-byte vectors per thread
constexpr uint32_t kGatherMaxBlocksPerItem = 1024;

// grid.x: blocks sharing one item (enough for its largest), grid.y: items, striding past 65535.
inline LaunchConfig gather_images_launch(int64_t n, int64_t max_nbytes) {
  LaunchConfig c;
  c.grid.x = grid_cap(ceil_div(max_nbytes, kGatherBytesPerBlock), kGatherMaxBlocksPerItem);
  c.grid.y = grid_cap(n, kMaxGridYZ);
  c.block.x = kGatherThreads;
  return c;
}

// Each block copies a strided share of its item: 16-byte vectors when source and destination
// agree on alignment, bytes otherwise and at the ends.
BF_HOST_DEVICE_INLINE void gather_images_thread(const GatherImagesGridArgs& a, Dim3 block_idx, Dim3 thread_idx,
                                                Dim3 grid_dim, Dim3 block_dim) {
  const int64_t tid = static_cast<int64_t>(block_idx.x) * block_dim.x + thread_idx.x;
  const int64_t stride = static_cast<int64_t>(grid_dim.x) * block_dim.x;
  for (int64_t i = block_idx.y; i < a.n; i += grid_dim.y) {
    const GatherItem it = a.items[i];
    const uint8_t* src = a.sources.ptr[it.source] + it.src_offset;
    uint8_t* dst = a.out + it.dst_offset;
    const int64_t n = it.nbytes;
    const int64_t src_mis = static_cast<int64_t>(reinterpret_cast<uintptr_t>(src) & 15u);
    const int64_t dst_mis = static_cast<int64_t>(reinterpret_cast<uintptr_t>(dst) & 15u);
    if (src_mis != dst_mis) {
      for (int64_t k = tid; k < n; k += stride) dst[k] = load_global(src + k);
      continue;
    }
    const int64_t head = src_mis == 0 ? 0 : (16 - src_mis < n ? 16 - src_mis : n);
    const int64_t vecs = (n - head) / 16;
    const int64_t tail = head + vecs * 16;
    for (int64_t k = tid; k < head; k += stride) dst[k] = load_global(src + k);
    for (int64_t k = tid; k < vecs; k += stride) store16(dst + head + 16 * k, load16(src + head + 16 * k));
    for (int64_t k = tail + tid; k < n; k += stride) dst[k] = load_global(src + k);
  }
}

}  // namespace bridgedfast
