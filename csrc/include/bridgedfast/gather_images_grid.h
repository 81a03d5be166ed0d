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

// (lo:hi >> shift) low word: the 4 bytes that start `shift / 8` bytes into lo.
BF_HOST_DEVICE_INLINE uint32_t funnel_right(uint32_t lo, uint32_t hi, uint32_t shift) {
#if defined(__CUDA_ARCH__)
  return __funnelshift_r(lo, hi, shift);
#else
  return shift == 0 ? lo : (lo >> shift) | (hi << (32 - shift));
#endif
}

// The 16 bytes that start m bytes into the 32-byte window (lo, hi), 0 < m < 16. q = m / 4 is the
// same for a whole item, so the switch never diverges and the words stay in registers.
BF_HOST_DEVICE_INLINE Vec16 window16(const Vec16& lo, const Vec16& hi, int m) {
  const uint32_t w[8] = {lo.w[0], lo.w[1], lo.w[2], lo.w[3], hi.w[0], hi.w[1], hi.w[2], hi.w[3]};
  const uint32_t r = 8u * static_cast<uint32_t>(m & 3);
  Vec16 out;
  switch (m >> 2) {
#define BF_WINDOW_CASE(Q)                                                         \
  case Q:                                                                         \
    for (int i = 0; i < 4; ++i) out.w[i] = funnel_right(w[Q + i], w[Q + i + 1], r); \
    break;
    BF_WINDOW_CASE(0)
    BF_WINDOW_CASE(1)
    BF_WINDOW_CASE(2)
    default:
      BF_WINDOW_CASE(3)
#undef BF_WINDOW_CASE
  }
  return out;
}

// Each block copies a strided share of its item in 16-byte stores to the aligned part of the
// destination (bytes at its two ends). Where the source sits at another alignment, each vector
// comes from the two aligned 16-byte source blocks it straddles, shifted into place: 16 bytes
// in flight per thread either way, never a byte-at-a-time loop. Those aligned blocks may reach
// up to 15 bytes past either end of the item's source range, never past the 16-byte granule
// holding a source byte, so never onto another page.
BF_HOST_DEVICE_INLINE void gather_images_thread(const GatherImagesGridArgs& a, Dim3 block_idx, Dim3 thread_idx,
                                                Dim3 grid_dim, Dim3 block_dim) {
  const int64_t tid = static_cast<int64_t>(block_idx.x) * block_dim.x + thread_idx.x;
  const int64_t stride = static_cast<int64_t>(grid_dim.x) * block_dim.x;
  for (int64_t i = block_idx.y; i < a.n; i += grid_dim.y) {
    const GatherItem it = a.items[i];
    const uint8_t* src = a.sources.ptr[it.source] + it.src_offset;
    uint8_t* dst = a.out + it.dst_offset;
    const int64_t n = it.nbytes;
    const int64_t dst_mis = static_cast<int64_t>(reinterpret_cast<uintptr_t>(dst) & 15u);
    const int64_t head = dst_mis == 0 ? 0 : (16 - dst_mis < n ? 16 - dst_mis : n);
    const int64_t vecs = (n - head) / 16;
    const int64_t tail = head + vecs * 16;
    for (int64_t k = tid; k < head; k += stride) dst[k] = load_global(src + k);
    for (int64_t k = tail + tid; k < n; k += stride) dst[k] = load_global(src + k);
    const uint8_t* s = src + head;
    uint8_t* d = dst + head;
    const int m = static_cast<int>(reinterpret_cast<uintptr_t>(s) & 15u);
    if (m == 0) {
      for (int64_t k = tid; k < vecs; k += stride) store16(d + 16 * k, load16(s + 16 * k));
    } else {
      const uint8_t* base = s - m;
      for (int64_t k = tid; k < vecs; k += stride) {
        store16(d + 16 * k, window16(load16(base + 16 * k), load16(base + 16 * k + 16), m));
      }
    }
  }
}

}  // namespace bridgedfast
