// The CUDA mix_images kernel's body as a BF_HOST_DEVICE function of (arguments, block index,
// thread index), wrapped by csrc/cuda/mix_images_cuda_kernel.cu and run on the host by
// tests/cpp/grid_emulator.h. Torch-free and CUDA-free.
//
// Image n and its partner j = N-1-n are mixed together: both outputs read the same two inputs,
// so one thread reads each input value once and writes two outputs (a third less traffic than
// mixing each image on its own, which reads every image twice). An image is a stack of "rows":
// contiguous runs of memory that share one y (a channel row in NCHW, a whole pixel row in NHWC).
// grid.z strides over pairs, grid.y (8 rows a block) over rows, grid.x (32 threads a block)
// along a row in 16-byte vectors where rows allow. The CutMix box becomes an element range per
// row, so the per-element work is two compares and a multiply-add: no division anywhere but
// one 32-bit modulo per row.
#pragma once

#include "grid.h"
#include "mix_images.h"

namespace bridgedfast {

struct MixImagesGridArgs {
  const void* x;
  void* out;
  ImageBatchShape shape;
  const float* lam;
  const int32_t* boxes;
};

constexpr int kMixBlockX = 32, kMixBlockY = 8;

// Rows per image and values per row (see above).
BF_HOST_DEVICE_INLINE int64_t mix_rows(const ImageBatchShape& s) { return s.channels_last ? s.h : s.c * s.h; }
BF_HOST_DEVICE_INLINE int64_t mix_row_len(const ImageBatchShape& s) { return s.channels_last ? s.w * s.c : s.w; }

// Values per 16-byte vector for storage S.
template <typename S>
constexpr int mix_vector_width() {
  return static_cast<int>(16 / sizeof(typename S::type));
}

// Whether whole rows can move as 16-byte vectors: every row starts 16-byte aligned.
template <typename S>
inline bool mix_can_vectorise(const MixImagesGridArgs& a) {
  return mix_row_len(a.shape) % mix_vector_width<S>() == 0 && reinterpret_cast<uintptr_t>(a.x) % 16 == 0 &&
         reinterpret_cast<uintptr_t>(a.out) % 16 == 0;
}

template <typename S>
inline LaunchConfig mix_images_launch(const ImageBatchShape& s, bool vectorised) {
  const int64_t units = vectorised ? mix_row_len(s) / mix_vector_width<S>() : mix_row_len(s);
  LaunchConfig c;
  c.grid.x = grid_cap(ceil_div(units, kMixBlockX), kMaxGridX);
  c.grid.y = grid_cap(ceil_div(mix_rows(s), kMixBlockY), kMaxGridYZ);
  c.grid.z = grid_cap((s.n + 1) / 2, kMaxGridYZ);  // pairs (the middle image of an odd batch alone)
  c.block.x = kMixBlockX;
  c.block.y = kMixBlockY;
  return c;
}

// The element range of row y that box (y0, y1, x0, x1) covers, in values ([b0, b1), empty if none).
BF_HOST_DEVICE_INLINE void mix_box_span(const int32_t* box, int32_t y, int64_t w, int64_t col, int64_t* b0,
                                        int64_t* b1) {
  const bool row_in_box = y >= box[0] && y < box[1];
  *b0 = row_in_box ? (box[2] < 0 ? 0 : box[2] > w ? w : box[2]) * col : 0;
  *b1 = row_in_box ? (box[3] < 0 ? 0 : box[3] > w ? w : box[3]) * col : 0;
}

// mix_value on V values packed in a 16-byte vector (or one scalar value when V == 1).
template <typename S, int V>
BF_HOST_DEVICE_INLINE Vec16 mix_vector(const Vec16& self, const Vec16& partner, float lam, int64_t e0, int64_t b0,
                                       int64_t b1) {
  using T = typename S::type;
  Vec16 out;
  for (int k = 0; k < V; ++k) {
    const bool in_box = e0 + k >= b0 && e0 + k < b1;
    if constexpr (V == 4) {
      out.w[k] = float_as_bits(mix_value(bits_as_float(self.w[k]), bits_as_float(partner.w[k]), lam, in_box));
    } else {
      const int word = k / 2, shift = 16 * (k % 2);
      const T ss = static_cast<T>(self.w[word] >> shift), pp = static_cast<T>(partner.w[word] >> shift);
      const uint32_t m = S::store(mix_value(S::load(ss), S::load(pp), lam, in_box));
      out.w[word] = (k % 2 == 0) ? m : (out.w[word] | (m << 16));
    }
  }
  return out;
}

template <typename S, bool kVector>
BF_HOST_DEVICE_INLINE void mix_images_thread(const MixImagesGridArgs& a, Dim3 block_idx, Dim3 thread_idx,
                                             Dim3 grid_dim) {
  using T = typename S::type;
  constexpr int V = kVector ? mix_vector_width<S>() : 1;
  const ImageBatchShape& s = a.shape;
  const T* x = static_cast<const T*>(a.x);
  T* out = static_cast<T*>(a.out);
  const int64_t rows = mix_rows(s), len = mix_row_len(s), image = rows * len;
  const int64_t col = s.channels_last ? s.c : 1;  // values per box column
  const int32_t h = static_cast<int32_t>(s.h);
  const int64_t units = len / V;
  for (int64_t n = block_idx.z; n < (s.n + 1) / 2; n += grid_dim.z) {
    const int64_t j = s.n - 1 - n;  // n's partner; j == n for the middle image of an odd batch
    const float lam_n = a.lam[n], lam_j = a.lam[j];
    for (int64_t r = static_cast<int64_t>(block_idx.y) * kMixBlockY + thread_idx.y; r < rows;
         r += static_cast<int64_t>(grid_dim.y) * kMixBlockY) {
      const int32_t y = s.channels_last ? static_cast<int32_t>(r) : static_cast<int32_t>(r) % h;
      int64_t b0n, b1n, b0j, b1j;
      mix_box_span(a.boxes + 4 * n, y, s.w, col, &b0n, &b1n);
      mix_box_span(a.boxes + 4 * j, y, s.w, col, &b0j, &b1j);
      const T* xn = x + n * image + r * len;
      const T* xj = x + j * image + r * len;
      T* on = out + n * image + r * len;
      T* oj = out + j * image + r * len;
      for (int64_t u = static_cast<int64_t>(block_idx.x) * kMixBlockX + thread_idx.x; u < units;
           u += static_cast<int64_t>(grid_dim.x) * kMixBlockX) {
        const int64_t e0 = u * V;
        if constexpr (kVector) {
          const Vec16 vn = load16(xn + e0), vj = load16(xj + e0);
          store16(on + e0, mix_vector<S, V>(vn, vj, lam_n, e0, b0n, b1n));
          if (j != n) store16(oj + e0, mix_vector<S, V>(vj, vn, lam_j, e0, b0j, b1j));
        } else {
          const float fn = S::load(xn[e0]), fj = S::load(xj[e0]);
          on[e0] = S::store(mix_value(fn, fj, lam_n, e0 >= b0n && e0 < b1n));
          if (j != n) oj[e0] = S::store(mix_value(fj, fn, lam_j, e0 >= b0j && e0 < b1j));
        }
      }
    }
  }
}

}  // namespace bridgedfast
