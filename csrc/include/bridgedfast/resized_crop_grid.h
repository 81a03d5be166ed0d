// The CUDA resized_crop kernels' bodies, as BF_HOST_DEVICE functions of (arguments, block index,
// thread index, shared tile) that csrc/cuda/resized_crop_cuda_kernel.cu wraps in __global__
// functions and tests/cpp/grid_emulator.h runs on the host. Torch-free and CUDA-free.
//
// Tile kernel (every image whose downscale is at most about 7.5x, i.e. every training crop):
// a block renders a 32x32 output tile in two separable passes. Per chunk of 16 source rows it
// stages the tile's source pixels in shared memory as packed RGBX words (4 bytes: one 32-bit
// shared load per tap, a quarter of a float4's shared-memory traffic), resamples them
// horizontally into a shared 16x32 float tile, one plane per channel (weights in shared
// memory), then each thread adds that chunk's vertical taps into its four output pixels held in
// registers (one conflict-free 16-byte shared load per channel and tap), and finally stores
// them normalised, as 16- or 8-byte vectors where the row allows.
// Direct kernel (stronger downscales, where a tile's source span outgrows shared memory): one
// thread per output pixel, the 2-D tap sum with weights computed as needed.
#pragma once

#include "grid.h"
#include "resized_crop.h"

namespace bridgedfast {

constexpr int kTileW = 32;            // output columns per tile
constexpr int kTileH = 32;            // output rows per tile
constexpr int kTileThreads = 256;     // 8 threads x 4 columns per row, 32 rows
constexpr int kTilePixelsPerThread = 4;
constexpr int kTileChunkRows = 16;    // source rows staged per chunk
constexpr int kTileMaxSpan = 256;     // source pixels one staged row holds
constexpr int kTileMaxTaps = 17;      // taps per output pixel and axis (downscale <= 8x)
constexpr int kDirectBlockW = 32, kDirectBlockH = 8;

struct ResizedCropTileShared {
  uint32_t src[kTileChunkRows][kTileMaxSpan];         // staged source rows, R | G << 8 | B << 16
  alignas(16) float hpass[3][kTileChunkRows][kTileW];  // the horizontal pass of those rows, per channel
  float wx[kTileMaxTaps][kTileW];               // column weights, tap-major (no bank conflicts)
  float wy[kTileMaxTaps][kTileH];
  int32_t col_start[kTileW], col_count[kTileW];  // absolute source column of tap 0
  int32_t row_start[kTileH], row_count[kTileH];
  int32_t span_x0, span_len;  // the staged columns [span_x0, span_x0 + span_len)
  int32_t rows_y0, rows_y1;   // the source rows the tile reads
};

// A thread's four output pixels (RGB accumulators), kept across the chunk phases.
struct ResizedCropTileThread {
  float acc[kTilePixelsPerThread][3];
};

struct ResizedCropGridArgs {
  const ResizedCropImage* images;
  ResizedCropParams p;
  void* out;
  bool vector_stores;  // out_w % 4 == 0 and out 16-byte aligned: whole pixel groups as vectors
};

// Whether the tile kernel renders this image: its taps fit the shared weight tables and any 32
// adjacent output columns read at most kTileMaxSpan source columns. Tap starts grow by at most
// floor(31 * scale) + 1 over 31 columns, and the last column reads at most axis_max_taps more.
BF_HOST_DEVICE_INLINE bool tile_path_fits(const ResizedCropImage& im, bool antialias) {
  const int kx = axis_max_taps(im.x, antialias), ky = axis_max_taps(im.y, antialias);
  if (kx > kTileMaxTaps || ky > kTileMaxTaps) return false;
  return static_cast<float>(kTileW - 1) * axis_scale(im.x) + 2.0f + static_cast<float>(kx) <=
         static_cast<float>(kTileMaxSpan);
}

BF_HOST_DEVICE_INLINE int64_t tiles_per_image(const ResizedCropParams& p) {
  return ceil_div(p.out_h, kTileH) * ceil_div(p.out_w, kTileW);
}

// grid.x: tiles of one image, grid.y: images; both stride past their cap.
inline LaunchConfig resized_crop_tile_launch(const ResizedCropParams& p) {
  LaunchConfig c;
  c.grid.x = grid_cap(tiles_per_image(p), kMaxGridX);
  c.grid.y = grid_cap(p.n, kMaxGridYZ);
  c.block.x = kTileThreads;
  return c;
}

inline LaunchConfig resized_crop_direct_launch(const ResizedCropParams& p) {
  LaunchConfig c;
  c.grid.x = grid_cap(ceil_div(p.out_h, kDirectBlockH) * ceil_div(p.out_w, kDirectBlockW), kMaxGridX);
  c.grid.y = grid_cap(p.n, kMaxGridYZ);
  c.block.x = kDirectBlockW;
  c.block.y = kDirectBlockH;
  return c;
}

// Which kernels a batch needs (the host reads its image table once).
struct ResizedCropPlan {
  bool tile = false, direct = false;
};

inline ResizedCropPlan plan_resized_crop(const ResizedCropImage* images, const ResizedCropParams& p) {
  ResizedCropPlan plan;
  for (int64_t i = 0; i < p.n; ++i) (tile_path_fits(images[i], p.antialias) ? plan.tile : plan.direct) = true;
  return plan;
}

// The kernels' arguments: vector stores need rows of whole 4-pixel groups and an aligned output.
inline ResizedCropGridArgs resized_crop_grid_args(const ResizedCropImage* images, const ResizedCropParams& p,
                                                  void* out) {
  return ResizedCropGridArgs{images, p, out, p.out_w % 4 == 0 && reinterpret_cast<uintptr_t>(out) % 16 == 0};
}

// ---------------------------------------------------------------- stores

// Stores one output pixel's three normalised channels.
template <typename S>
BF_HOST_DEVICE_INLINE void store_pixel(const ResizedCropParams& p, typename S::type* image_out, int64_t oy, int64_t ox,
                                       const float v[3]) {
  const int64_t plane = static_cast<int64_t>(p.out_h) * p.out_w;
  if (p.channels_last) {
    typename S::type* dst = image_out + 3 * (oy * p.out_w + ox);
    for (int c = 0; c < 3; ++c) dst[c] = S::store(v[c]);
  } else {
    typename S::type* dst = image_out + oy * p.out_w + ox;
    for (int c = 0; c < 3; ++c) dst[c * plane] = S::store(v[c]);
  }
}

template <typename S>
BF_HOST_DEVICE_INLINE uint32_t storage_bits(float v) {
  if constexpr (sizeof(typename S::type) == 4) {
    return float_as_bits(v);
  } else {
    return S::store(v);
  }
}

// Four adjacent pixels of one row as vectors: NCHW, one 16-byte (fp32) or 8-byte (16-bit) store
// per channel plane; channels_last, twelve values in three such stores. The caller guarantees
// alignment (ox % 4 == 0, out_w % 4 == 0, a 16-byte aligned output).
template <typename S>
BF_HOST_DEVICE_INLINE void store_pixels4(const ResizedCropParams& p, typename S::type* image_out, int64_t oy,
                                         int64_t ox, const float v[4][3]) {
  using T = typename S::type;
  const int64_t plane = static_cast<int64_t>(p.out_h) * p.out_w;
  uint32_t bits[12];
  if (p.channels_last) {
    for (int k = 0; k < 4; ++k)
      for (int c = 0; c < 3; ++c) bits[3 * k + c] = storage_bits<S>(v[k][c]);
  } else {
    for (int c = 0; c < 3; ++c)
      for (int k = 0; k < 4; ++k) bits[4 * c + k] = storage_bits<S>(v[k][c]);
  }
  // Three groups of four values: the three planes (NCHW) or three runs of 4 values (NHWC).
  T* dst[3];
  if (p.channels_last) {
    T* base = image_out + 3 * (oy * p.out_w + ox);
    dst[0] = base, dst[1] = base + 4, dst[2] = base + 8;
  } else {
    T* base = image_out + oy * p.out_w + ox;
    dst[0] = base, dst[1] = base + plane, dst[2] = base + 2 * plane;
  }
  for (int g = 0; g < 3; ++g) {
    const uint32_t* b = bits + 4 * g;
    if constexpr (sizeof(T) == 4) {
      store16(dst[g], Vec16{{b[0], b[1], b[2], b[3]}});
    } else {
      store8(dst[g], b[0] | (b[1] << 16), b[2] | (b[3] << 16));
    }
  }
}

// Byte k of w as a float, exactly, in two full-rate instructions (a byte permute that builds
// 2^23 + byte, and a subtraction) instead of a quarter-rate integer-to-float conversion.
BF_HOST_DEVICE_INLINE float byte_as_float(uint32_t w, int k) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(__byte_perm(w, 0x4B000000u, 0x7440u + static_cast<uint32_t>(k))) - 8388608.0f;
#else
  return bits_as_float(0x4B000000u | ((w >> (8 * k)) & 0xffu)) - 8388608.0f;
#endif
}

// ---------------------------------------------------------------- tile kernel phases

struct TileCoord {
  int64_t n;    // image
  int32_t oy0;  // first output row of the tile
  int32_t ox0;  // first output column
};

BF_HOST_DEVICE_INLINE TileCoord tile_coord(const ResizedCropParams& p, int64_t n, int64_t tile) {
  const int64_t tiles_x = ceil_div(p.out_w, kTileW);
  const int64_t ty = tile / tiles_x;
  return TileCoord{n, static_cast<int32_t>(ty * kTileH), static_cast<int32_t>((tile - ty * tiles_x) * kTileW)};
}

// Phase 1: threads 0..31 build the taps of the tile's columns, 32..63 those of its rows.
BF_HOST_DEVICE_INLINE void tile_build_taps(const ResizedCropGridArgs& a, const TileCoord& t, uint32_t tid,
                                           ResizedCropTileShared& sh, ResizedCropTileThread& st) {
  for (auto& px : st.acc) px[0] = px[1] = px[2] = 0.0f;
  const ResizedCropImage& im = a.images[t.n];
  float w[kTileMaxTaps];
  int32_t start = 0;
  if (tid < static_cast<uint32_t>(kTileW)) {
    const int64_t ox = t.ox0 + static_cast<int64_t>(tid);
    int count = 0;
    if (ox < a.p.out_w) count = axis_taps(im.x, a.p.antialias, resized_column(im, ox, a.p.out_w), &start, w);
    sh.col_start[tid] = start;
    sh.col_count[tid] = count;
    for (int k = 0; k < count; ++k) sh.wx[k][tid] = w[k];
  } else if (tid < static_cast<uint32_t>(kTileW + kTileH)) {
    const uint32_t r = tid - kTileW;
    const int64_t oy = t.oy0 + static_cast<int64_t>(r);
    int count = 0;
    if (oy < a.p.out_h) count = axis_taps(im.y, a.p.antialias, oy + im.y.window_start, &start, w);
    sh.row_start[r] = start;
    sh.row_count[r] = count;
    for (int k = 0; k < count; ++k) sh.wy[k][r] = w[k];
  }
}

// Phase 2: thread 0 finds the source span the tile reads (every other thread waits).
BF_HOST_DEVICE_INLINE void tile_find_span(uint32_t tid, ResizedCropTileShared& sh) {
  if (tid != 0) return;
  int32_t x0 = INT32_MAX, x1 = INT32_MIN, y0 = INT32_MAX, y1 = INT32_MIN;
  for (int i = 0; i < kTileW; ++i) {
    if (sh.col_count[i] == 0) continue;
    x0 = sh.col_start[i] < x0 ? sh.col_start[i] : x0;
    x1 = sh.col_start[i] + sh.col_count[i] > x1 ? sh.col_start[i] + sh.col_count[i] : x1;
  }
  for (int i = 0; i < kTileH; ++i) {
    if (sh.row_count[i] == 0) continue;
    y0 = sh.row_start[i] < y0 ? sh.row_start[i] : y0;
    y1 = sh.row_start[i] + sh.row_count[i] > y1 ? sh.row_start[i] + sh.row_count[i] : y1;
  }
  sh.span_x0 = x0;
  sh.span_len = x1 - x0;  // <= kTileMaxSpan by tile_path_fits
  sh.rows_y0 = y0;
  sh.rows_y1 = y1;
}

BF_HOST_DEVICE_INLINE int tile_chunks(const ResizedCropTileShared& sh) {
  return static_cast<int>(ceil_div(sh.rows_y1 - sh.rows_y0, kTileChunkRows));
}

// Phase 3 (per chunk): stage source rows [y, y + 16) of the span as floats. Warp w takes rows
// w, w + 8; its lanes take adjacent pixels: 96 contiguous bytes per load instruction.
BF_HOST_DEVICE_INLINE void tile_stage(const ResizedCropGridArgs& a, const TileCoord& t, int chunk, uint32_t tid,
                                      ResizedCropTileShared& sh) {
  constexpr int kWarps = kTileThreads / 32;
  const ResizedCropImage& im = a.images[t.n];
  const int32_t y_first = sh.rows_y0 + chunk * kTileChunkRows;
  const int rows = sh.rows_y1 - y_first < kTileChunkRows ? sh.rows_y1 - y_first : kTileChunkRows;
  for (int i = static_cast<int>(tid) / 32; i < rows; i += kWarps) {
    const uint8_t* row = im.pixels + static_cast<int64_t>(y_first + i) * im.row_stride + 3 * static_cast<int64_t>(sh.span_x0);
    for (int px = static_cast<int>(tid) % 32; px < sh.span_len; px += 32) {
      const uint8_t* s = row + 3 * px;
      sh.src[i][px] = static_cast<uint32_t>(load_global(s)) | static_cast<uint32_t>(load_global(s + 1)) << 8 |
                      static_cast<uint32_t>(load_global(s + 2)) << 16;
    }
  }
}

// Phase 4 (per chunk): the horizontal pass of the staged rows, one (row, column) per item.
BF_HOST_DEVICE_INLINE void tile_horizontal(int chunk, uint32_t tid, ResizedCropTileShared& sh) {
  const int32_t y_first = sh.rows_y0 + chunk * kTileChunkRows;
  for (int item = static_cast<int>(tid); item < kTileChunkRows * kTileW; item += kTileThreads) {
    const int i = item / kTileW, col = item % kTileW;
    if (y_first + i >= sh.rows_y1) continue;
    const int count = sh.col_count[col];
    if (count == 0) {  // past the output's right edge: never stored, but read by tile_vertical
      sh.hpass[0][i][col] = sh.hpass[1][i][col] = sh.hpass[2][i][col] = 0.0f;
      continue;
    }
    const uint32_t* s = &sh.src[i][sh.col_start[col] - sh.span_x0];
    float r = 0.0f, g = 0.0f, b = 0.0f;
    for (int k = 0; k < count; ++k) {
      const float w = sh.wx[k][col];
      const uint32_t px = s[k];
      r += w * byte_as_float(px, 0);
      g += w * byte_as_float(px, 1);
      b += w * byte_as_float(px, 2);
    }
    sh.hpass[0][i][col] = r;
    sh.hpass[1][i][col] = g;
    sh.hpass[2][i][col] = b;
  }
}

// Phase 5 (per chunk): each thread adds the chunk's vertical taps into its 4 pixels.
BF_HOST_DEVICE_INLINE void tile_vertical(int chunk, uint32_t tid, ResizedCropTileShared& sh,
                                         ResizedCropTileThread& st) {
  const int row = static_cast<int>(tid) / (kTileW / kTilePixelsPerThread);
  const int col0 = (static_cast<int>(tid) % (kTileW / kTilePixelsPerThread)) * kTilePixelsPerThread;
  const int count = sh.row_count[row];
  const int32_t y_first = sh.rows_y0 + chunk * kTileChunkRows;
  const int32_t start = sh.row_start[row];
  int k0 = y_first - start, k1 = y_first + kTileChunkRows - start;
  k0 = k0 < 0 ? 0 : k0;
  k1 = k1 > count ? count : k1;
  for (int k = k0; k < k1; ++k) {
    const float w = sh.wy[k][row];
    const int i = start + k - y_first;
    for (int c = 0; c < 3; ++c) {
      const Float4 h = load_float4(&sh.hpass[c][i][col0]);  // the thread's 4 pixels, one channel
      for (int j = 0; j < kTilePixelsPerThread; ++j) st.acc[j][c] += w * h.v[j];
    }
  }
}

// Phase 6: normalise and store the thread's pixels.
template <typename S>
BF_HOST_DEVICE_INLINE void tile_store(const ResizedCropGridArgs& a, const TileCoord& t, uint32_t tid,
                                      const ResizedCropTileThread& st) {
  const ResizedCropParams& p = a.p;
  const int64_t oy = t.oy0 + static_cast<int64_t>(tid) / (kTileW / kTilePixelsPerThread);
  const int64_t ox = t.ox0 + (static_cast<int64_t>(tid) % (kTileW / kTilePixelsPerThread)) * kTilePixelsPerThread;
  if (oy >= p.out_h || ox >= p.out_w) return;
  typename S::type* image_out = static_cast<typename S::type*>(a.out) + t.n * 3 * static_cast<int64_t>(p.out_h) * p.out_w;
  float v[kTilePixelsPerThread][3];
  for (int j = 0; j < kTilePixelsPerThread; ++j)
    for (int c = 0; c < 3; ++c) v[j][c] = st.acc[j][c] * p.scale[c] + p.shift[c];
  if (a.vector_stores) {  // out_w % 4 == 0, so all four pixels are inside the row
    store_pixels4<S>(p, image_out, oy, ox, v);
    return;
  }
  for (int j = 0; j < kTilePixelsPerThread && ox + j < p.out_w; ++j) store_pixel<S>(p, image_out, oy, ox + j, v[j]);
}

// The tile kernel's block program. `Block` runs a phase on every thread of the block, then
// synchronises: on the GPU, the calling thread and __syncthreads(); in the emulator, a loop
// over all threads. Shared-memory reads and writes never cross threads within one phase.
template <typename S, typename Block>
BF_HOST_DEVICE_INLINE void resized_crop_tile_block(Block& block, const ResizedCropGridArgs& a, Dim3 block_idx,
                                                   Dim3 grid_dim, ResizedCropTileShared& sh) {
  const int64_t tiles = tiles_per_image(a.p);
  for (int64_t n = block_idx.y; n < a.p.n; n += grid_dim.y) {
    if (!tile_path_fits(a.images[n], a.p.antialias)) continue;  // the direct kernel's image
    for (int64_t tile = block_idx.x; tile < tiles; tile += grid_dim.x) {
      const TileCoord t = tile_coord(a.p, n, tile);
      block.phase([&](uint32_t tid, ResizedCropTileThread& st) { tile_build_taps(a, t, tid, sh, st); });
      block.phase([&](uint32_t tid, ResizedCropTileThread&) { tile_find_span(tid, sh); });
      const int chunks = tile_chunks(sh);
      for (int chunk = 0; chunk < chunks; ++chunk) {
        block.phase([&](uint32_t tid, ResizedCropTileThread&) { tile_stage(a, t, chunk, tid, sh); });
        block.phase([&](uint32_t tid, ResizedCropTileThread&) { tile_horizontal(chunk, tid, sh); });
        block.phase([&](uint32_t tid, ResizedCropTileThread& st) { tile_vertical(chunk, tid, sh, st); });
      }
      block.phase([&](uint32_t tid, ResizedCropTileThread& st) { tile_store<S>(a, t, tid, st); });
    }
  }
}

// ---------------------------------------------------------------- direct kernel

// One output pixel per thread (grid.x strides over 32x8 pixel tiles, grid.y over images), for
// the images tile_path_fits() refuses. Weights are evaluated where used: no tables at all.
template <typename S>
BF_HOST_DEVICE_INLINE void resized_crop_direct_thread(const ResizedCropGridArgs& a, Dim3 block_idx, Dim3 thread_idx,
                                                      Dim3 grid_dim) {
  const ResizedCropParams& p = a.p;
  const int64_t tiles_x = ceil_div(p.out_w, kDirectBlockW);
  const int64_t tiles = ceil_div(p.out_h, kDirectBlockH) * tiles_x;
  for (int64_t n = block_idx.y; n < p.n; n += grid_dim.y) {
    const ResizedCropImage& im = a.images[n];
    if (tile_path_fits(im, p.antialias)) continue;
    typename S::type* image_out = static_cast<typename S::type*>(a.out) + n * 3 * static_cast<int64_t>(p.out_h) * p.out_w;
    for (int64_t tile = block_idx.x; tile < tiles; tile += grid_dim.x) {
      const int64_t ty = tile / tiles_x;
      const int64_t oy = ty * kDirectBlockH + thread_idx.y;
      const int64_t ox = (tile - ty * tiles_x) * kDirectBlockW + thread_idx.x;
      if (oy >= p.out_h || ox >= p.out_w) continue;
      const AxisTaps ty_taps = axis_tap_span(im.y, p.antialias, oy + im.y.window_start);
      const AxisTaps tx_taps = axis_tap_span(im.x, p.antialias, resized_column(im, ox, p.out_w));
      float acc[3] = {0.0f, 0.0f, 0.0f};
      for (int ky = 0; ky < ty_taps.count; ++ky) {
        const uint8_t* row = im.pixels + static_cast<int64_t>(ty_taps.start + ky) * im.row_stride + 3 * static_cast<int64_t>(tx_taps.start);
        float r = 0.0f, g = 0.0f, b = 0.0f;
        for (int kx = 0; kx < tx_taps.count; ++kx) {
          const float w = axis_tap_weight(tx_taps, kx);
          r += w * static_cast<float>(load_global(row + 3 * kx));
          g += w * static_cast<float>(load_global(row + 3 * kx + 1));
          b += w * static_cast<float>(load_global(row + 3 * kx + 2));
        }
        const float w = axis_tap_weight(ty_taps, ky);
        acc[0] += w * r;
        acc[1] += w * g;
        acc[2] += w * b;
      }
      float v[3];
      for (int c = 0; c < 3; ++c) v[c] = acc[c] * p.scale[c] + p.shift[c];
      store_pixel<S>(p, image_out, oy, ox, v);
    }
  }
}

}  // namespace bridgedfast
