#include "bridgedfast/resized_crop.h"

#include <algorithm>
#include <cstring>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define BF_X86 1
#else
#define BF_X86 0
#endif

namespace bridgedfast {
namespace {

// Taps of every output index along one axis. Columns are padded to a common `k` taps so the
// horizontal loop has a fixed trip count; rows keep their own count.
struct AxisTable {
  int k = 0;
  std::vector<int32_t> start;
  std::vector<int32_t> count;
  std::vector<float> weight;  // [len * k]
  std::vector<float> raw;     // unpadded weights while building
};

void build_rows(const ResizedCropImage& im, bool antialias, int64_t oy0, int64_t oy1, AxisTable* t) {
  t->k = axis_max_taps(im.y, antialias);
  const int64_t len = oy1 - oy0;
  t->start.resize(len);
  t->count.resize(len);
  t->weight.assign(len * t->k, 0.0f);
  for (int64_t i = 0; i < len; ++i) {
    t->count[i] = axis_taps(im.y, antialias, oy0 + i + im.y.window_start, &t->start[i], &t->weight[i * t->k]);
  }
}

// Column taps relative to the crop's first column, padded to the most taps any column has and
// shifted left near the crop's right edge so every padded window [start, start + k) stays
// inside the crop.
void build_columns(const ResizedCropImage& im, bool antialias, int64_t out_w, AxisTable* t) {
  const int bound = axis_max_taps(im.x, antialias);
  t->start.resize(out_w);
  t->count.resize(out_w);
  t->raw.resize(out_w * bound);
  int k = 1;
  for (int64_t ox = 0; ox < out_w; ++ox) {
    t->count[ox] = axis_taps(im.x, antialias, resized_column(im, ox, out_w), &t->start[ox], &t->raw[ox * bound]);
    k = std::max(k, t->count[ox]);
  }
  t->k = k;
  t->weight.assign(out_w * k, 0.0f);
  for (int64_t ox = 0; ox < out_w; ++ox) {
    const int32_t start = t->start[ox] - im.x.crop_start;
    const int32_t shifted = std::min(start, im.x.crop_len - k);
    t->start[ox] = shifted;
    std::copy_n(&t->raw[ox * bound], t->count[ox], &t->weight[ox * k + (start - shifted)]);
  }
}

// Four floats: one RGB pixel plus one lane of slack, so a pixel's three channels move as one
// SSE value. Buffers read or written this way carry kPad floats of padding at their end.
typedef float v4f __attribute__((vector_size(16)));
constexpr int64_t kPad = 4;

inline v4f load4(const float* p) {
  v4f v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline void store4(float* p, v4f v) { std::memcpy(p, &v, sizeof(v)); }

// out[ox] (RGB) = sum_j w[ox][j] * src[start[ox] + j] (RGB): the horizontal resample of one
// interleaved float row, one vector multiply-add per tap. A compile-time tap count unrolls it.
template <int K>
void resample_row_fixed(const float* src, const int32_t* start, const float* weight, int64_t out_w, float* out) {
  for (int64_t ox = 0; ox < out_w; ++ox) {
    const float* s = src + 3 * static_cast<int64_t>(start[ox]);
    const float* w = weight + K * ox;
    v4f acc = w[0] * load4(s);
    for (int j = 1; j < K; ++j) acc += w[j] * load4(s + 3 * j);
    store4(out + 3 * ox, acc);
  }
}

void resample_row_any(const float* src, const int32_t* start, const float* weight, int k, int64_t out_w, float* out) {
  for (int64_t ox = 0; ox < out_w; ++ox) {
    const float* s = src + 3 * static_cast<int64_t>(start[ox]);
    const float* w = weight + k * ox;
    v4f acc = w[0] * load4(s);
    for (int j = 1; j < k; ++j) acc += w[j] * load4(s + 3 * j);
    store4(out + 3 * ox, acc);
  }
}

void resample_row(const float* src, const AxisTable& cols, int64_t out_w, float* out) {
  const int32_t* st = cols.start.data();
  const float* w = cols.weight.data();
  switch (cols.k) {
    case 1: return resample_row_fixed<1>(src, st, w, out_w, out);
    case 2: return resample_row_fixed<2>(src, st, w, out_w, out);
    case 3: return resample_row_fixed<3>(src, st, w, out_w, out);
    case 4: return resample_row_fixed<4>(src, st, w, out_w, out);
    case 5: return resample_row_fixed<5>(src, st, w, out_w, out);
    case 6: return resample_row_fixed<6>(src, st, w, out_w, out);
    case 7: return resample_row_fixed<7>(src, st, w, out_w, out);
    default: return resample_row_any(src, st, w, cols.k, out_w, out);
  }
}

void bytes_to_floats(const uint8_t* src, int64_t len, float* out) {
  for (int64_t j = 0; j < len; ++j) out[j] = static_cast<float>(src[j]);
}

// out[j] = sum_k w[k] * rows[k][j] over len contiguous values: the vertical resample, the
// vectorised part (rows are contiguous runs of interleaved RGB).
template <typename T>
void blend_rows(const T* const* rows, const float* w, int count, int64_t len, float* out) {
  {
    const T* r = rows[0];
    const float w0 = w[0];
    for (int64_t j = 0; j < len; ++j) out[j] = w0 * static_cast<float>(r[j]);
  }
  for (int k = 1; k < count; ++k) {
    const T* r = rows[k];
    const float wk = w[k];
    for (int64_t j = 0; j < len; ++j) out[j] += wk * static_cast<float>(r[j]);
  }
}

template <typename S>
void convert_span(const float* src, int64_t len, typename S::type* dst, bool /*simd*/) {
  for (int64_t j = 0; j < len; ++j) dst[j] = S::store(src[j]);
}

#if BF_X86
// Hardware float -> half (round to nearest even, like float_to_half_bits) where the CPU has it.
__attribute__((target("avx,f16c"))) void floats_to_half_f16c(const float* src, int64_t len, uint16_t* dst) {
  int64_t j = 0;
  for (; j + 8 <= len; j += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + j), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + j), h);
  }
  for (; j < len; ++j) dst[j] = float_to_half_bits(src[j]);
}

template <>
void convert_span<Float16Storage>(const float* src, int64_t len, uint16_t* dst, bool simd) {
  if (simd) return floats_to_half_f16c(src, len, dst);
  for (int64_t j = 0; j < len; ++j) dst[j] = float_to_half_bits(src[j]);
}

// Copies a row from cache to the output with non-temporal stores: the output is far larger
// than the caches and this kernel never reads it back, so skipping each line's
// read-for-ownership nearly halves the memory traffic of the (store-bound) kernel.
inline void stream_bytes(void* dst, const void* src, int64_t n) {
  char* d = static_cast<char*>(dst);
  const char* s = static_cast<const char*>(src);
  const int64_t head = std::min<int64_t>(n, (16 - reinterpret_cast<uintptr_t>(d) % 16) % 16);
  std::memcpy(d, s, head);
  d += head, s += head, n -= head;
  for (; n >= 16; n -= 16, d += 16, s += 16) {
    _mm_stream_si128(reinterpret_cast<__m128i*>(d), _mm_loadu_si128(reinterpret_cast<const __m128i*>(s)));
  }
  std::memcpy(d, s, n);
}

inline void stream_fence() { _mm_sfence(); }
#else
inline void stream_bytes(void* dst, const void* src, int64_t n) { std::memcpy(dst, src, n); }
inline void stream_fence() {}
#endif

// Writes len normalised floats to the output in its dtype (through `tmp` for 16-bit ones).
template <typename S>
void write_out(const float* src, int64_t len, typename S::type* dst, uint16_t* tmp, bool simd) {
  if constexpr (S::kDType == OutDType::kFloat32) {
    stream_bytes(dst, src, len * static_cast<int64_t>(sizeof(float)));
  } else {
    convert_span<S>(src, len, tmp, simd);
    stream_bytes(dst, tmp, len * static_cast<int64_t>(sizeof(uint16_t)));
  }
}

// planar[c * w + ox] = acc[3 * ox + c] * scale[c] + shift[c]: RGB pixels to three planes.
void deinterleave_normalise_portable(const float* acc, int64_t w, const ResizedCropParams& p, float* planar,
                                     int64_t ox = 0) {
  const v4f scale = {p.scale[0], p.scale[1], p.scale[2], 0.0f};
  const v4f shift = {p.shift[0], p.shift[1], p.shift[2], 0.0f};
  for (; ox < w; ++ox) {
    const v4f v = load4(acc + 3 * ox) * scale + shift;
    planar[ox] = v[0];
    planar[w + ox] = v[1];
    planar[2 * w + ox] = v[2];
  }
}

#if BF_X86
// Eight pixels at a time: six 128-bit loads and five shuffles turn 24 interleaved floats into
// one vector per channel (lane extracts, one per value, cost more than the arithmetic).
__attribute__((target("avx2,fma"))) void deinterleave_normalise_avx2(const float* acc, int64_t w,
                                                                     const ResizedCropParams& p, float* planar) {
  const __m256 s0 = _mm256_set1_ps(p.scale[0]), s1 = _mm256_set1_ps(p.scale[1]), s2 = _mm256_set1_ps(p.scale[2]);
  const __m256 h0 = _mm256_set1_ps(p.shift[0]), h1 = _mm256_set1_ps(p.shift[1]), h2 = _mm256_set1_ps(p.shift[2]);
  int64_t ox = 0;
  for (; ox + 8 <= w; ox += 8) {
    const float* q = acc + 3 * ox;
    const __m256 m03 = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(q)), _mm_loadu_ps(q + 12), 1);
    const __m256 m14 = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(q + 4)), _mm_loadu_ps(q + 16), 1);
    const __m256 m25 = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(q + 8)), _mm_loadu_ps(q + 20), 1);
    const __m256 xy = _mm256_shuffle_ps(m14, m25, _MM_SHUFFLE(2, 1, 3, 2));
    const __m256 yz = _mm256_shuffle_ps(m03, m14, _MM_SHUFFLE(1, 0, 2, 1));
    const __m256 x = _mm256_shuffle_ps(m03, xy, _MM_SHUFFLE(2, 0, 3, 0));
    const __m256 y = _mm256_shuffle_ps(yz, xy, _MM_SHUFFLE(3, 1, 2, 0));
    const __m256 z = _mm256_shuffle_ps(yz, m25, _MM_SHUFFLE(3, 0, 3, 1));
    _mm256_storeu_ps(planar + ox, _mm256_fmadd_ps(x, s0, h0));
    _mm256_storeu_ps(planar + w + ox, _mm256_fmadd_ps(y, s1, h1));
    _mm256_storeu_ps(planar + 2 * w + ox, _mm256_fmadd_ps(z, s2, h2));
  }
  deinterleave_normalise_portable(acc, w, p, planar, ox);
}
#endif

void deinterleave_normalise(const float* acc, int64_t w, const ResizedCropParams& p, float* planar, bool simd) {
#if BF_X86
  if (simd) return deinterleave_normalise_avx2(acc, w, p, planar);
#endif
  deinterleave_normalise_portable(acc, w, p, planar);
}

// Normalises one interleaved output row (in place) and writes it as NHWC or as three NCHW
// planes (de-interleaved through `planar`).
template <typename S>
void store_row(float* acc, const ResizedCropParams& p, float* planar, uint16_t* tmp, typename S::type* dst,
               int64_t plane, bool simd) {
  const int64_t w = p.out_w;
  if (p.channels_last) {
    // planar holds the per-value scale and shift patterns here (see resized_crop_band).
    const float* scale = planar;
    const float* shift = planar + 3 * w;
    for (int64_t j = 0; j < 3 * w; ++j) acc[j] = acc[j] * scale[j] + shift[j];
    write_out<S>(acc, 3 * w, dst, tmp, simd);
    return;
  }
  deinterleave_normalise(acc, w, p, planar, simd);
  for (int c = 0; c < 3; ++c) write_out<S>(planar + c * w, w, dst + c * plane, tmp, simd);
}

struct Scratch {
  AxisTable rows, cols;
  std::vector<float> buffer, line, acc, planar;
  std::vector<uint16_t> tmp;
  bool simd = false;  // the x86 AVX2/FMA/F16C code paths (the band itself is compiled for them)
  std::vector<const float*> float_rows;
  std::vector<const uint8_t*> byte_rows;
};

// Whether image `im` resamples columns first. The horizontal pass costs a vector op per pixel
// and tap, the vertical one a vector op per four values and tap, so the order that runs the
// horizontal pass on fewer rows wins: columns first when the image reads fewer source rows than
// it writes (upscaling), rows first otherwise. Decided for the whole image, never per band: the
// two orders round differently, and the bands follow the thread count, which must not change
// a single output bit.
bool columns_first(const ResizedCropImage& im, const ResizedCropParams& p, int cols_k, AxisTable* rows) {
  build_rows(im, p.antialias, 0, p.out_h, rows);
  const int64_t out_h = p.out_h, out_w = p.out_w;
  const int64_t y_lo = rows->start[0];
  const int64_t y_hi = rows->start[out_h - 1] + rows->count[out_h - 1];
  int64_t taps_y = 0;
  for (int64_t i = 0; i < out_h; ++i) taps_y += rows->count[i];
  const double crop3 = 3.0 * im.x.crop_len, row3 = 3.0 * out_w;
  const double cost_columns_first = (y_hi - y_lo) * (crop3 / 4.0 + out_w * cols_k) + taps_y * row3 / 4.0;
  const double cost_rows_first = taps_y * crop3 / 4.0 + out_h * out_w * cols_k;
  return cost_columns_first <= cost_rows_first;
}

// Output rows [oy0, oy1) of image `im`, in the order columns_first() picks for the image.
template <typename S>
void resized_crop_band(const ResizedCropImage& im, const ResizedCropParams& p, int64_t oy0,
                       int64_t oy1, typename S::type* out_image, Scratch& s) {
  const int64_t out_w = p.out_w;
  const int64_t plane = static_cast<int64_t>(p.out_h) * out_w;
  const int64_t row3 = 3 * out_w;
  build_columns(im, p.antialias, out_w, &s.cols);
  const bool by_columns = columns_first(im, p, s.cols.k, &s.rows);
  if (oy0 != 0 || oy1 != p.out_h) build_rows(im, p.antialias, oy0, oy1, &s.rows);
  const int64_t band = oy1 - oy0;
  const int64_t y_lo = s.rows.start[0];
  const int64_t y_hi = s.rows.start[band - 1] + s.rows.count[band - 1];
  const int64_t src_row_bytes = im.row_stride;
  const uint8_t* crop = im.pixels + 3 * static_cast<int64_t>(im.x.crop_start);
  const int64_t crop3 = 3 * static_cast<int64_t>(im.x.crop_len);
  s.acc.resize(row3 + kPad);
  s.planar.resize(2 * row3);
  s.tmp.resize(row3);
  if (p.channels_last) {
    for (int64_t j = 0; j < row3; ++j) s.planar[j] = p.scale[j % 3], s.planar[row3 + j] = p.shift[j % 3];
  }
  if (by_columns) {
    s.buffer.resize((y_hi - y_lo) * row3 + kPad);
    s.line.resize(crop3 + kPad);
    for (int64_t y = y_lo; y < y_hi; ++y) {
      bytes_to_floats(crop + y * src_row_bytes, crop3, s.line.data());
      resample_row(s.line.data(), s.cols, out_w, s.buffer.data() + (y - y_lo) * row3);
    }
    s.float_rows.resize(s.rows.k);
    for (int64_t i = 0; i < band; ++i) {
      for (int k = 0; k < s.rows.count[i]; ++k) s.float_rows[k] = s.buffer.data() + (s.rows.start[i] + k - y_lo) * row3;
      blend_rows(s.float_rows.data(), &s.rows.weight[i * s.rows.k], s.rows.count[i], row3, s.acc.data());
      auto* dst = out_image + (p.channels_last ? (oy0 + i) * row3 : (oy0 + i) * out_w);
      store_row<S>(s.acc.data(), p, s.planar.data(), s.tmp.data(), dst, plane, s.simd);
    }
  } else {
    s.buffer.resize(crop3 + kPad);
    s.byte_rows.resize(s.rows.k);
    for (int64_t i = 0; i < band; ++i) {
      for (int k = 0; k < s.rows.count[i]; ++k) s.byte_rows[k] = crop + (s.rows.start[i] + k) * src_row_bytes;
      blend_rows(s.byte_rows.data(), &s.rows.weight[i * s.rows.k], s.rows.count[i], crop3, s.buffer.data());
      resample_row(s.buffer.data(), s.cols, out_w, s.acc.data());
      auto* dst = out_image + (p.channels_last ? (oy0 + i) * row3 : (oy0 + i) * out_w);
      store_row<S>(s.acc.data(), p, s.planar.data(), s.tmp.data(), dst, plane, s.simd);
    }
  }
  stream_fence();  // non-temporal stores are weakly ordered: publish them before the band ends
}

bool cpu_has_simd() {
#if BF_X86
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#else
  return false;
#endif
}

bool& simd_enabled() {
  static bool enabled = cpu_has_simd();
  return enabled;
}

#if BF_X86
// The same band code compiled for AVX2 + FMA (everything it calls inlined into it), picked at
// run time: the build targets baseline x86-64, whose SSE2 halves the vector width.
template <typename S>
__attribute__((target("avx2,fma,f16c"), flatten)) void resized_crop_band_avx2(
    const ResizedCropImage& im, const ResizedCropParams& p, int64_t oy0, int64_t oy1,
    typename S::type* out_image, Scratch& s) {
  resized_crop_band<S>(im, p, oy0, oy1, out_image, s);
}
#endif

template <typename S>
void resized_crop_impl(const ResizedCropImage* images, const ResizedCropParams& p,
                       typename S::type* out) {
  if (p.n == 0 || p.out_h == 0 || p.out_w == 0) return;
  int threads = 1;
#if defined(_OPENMP)
  threads = omp_get_max_threads();
#endif
  // Split images into bands of rows only when there are too few images to share out.
  const int64_t bands = std::min<int64_t>(p.out_h, std::max<int64_t>(1, (4 * threads + p.n - 1) / p.n));
  const int64_t band_rows = (p.out_h + bands - 1) / bands;
  const int64_t items = p.n * bands;
  const int64_t image_elems = 3 * static_cast<int64_t>(p.out_h) * p.out_w;
  const bool simd = simd_enabled();
  BF_PRAGMA_OMP(omp parallel)
  {
    // Per thread and kept across calls: fresh multi-megabyte buffers would page-fault each batch.
    static thread_local Scratch scratch;
    scratch.simd = simd;
    BF_PRAGMA_OMP(omp for schedule(dynamic, 1))
    for (int64_t item = 0; item < items; ++item) {
      const int64_t n = item / bands;
      const int64_t oy0 = (item % bands) * band_rows;
      const int64_t oy1 = std::min<int64_t>(p.out_h, oy0 + band_rows);
      if (oy0 >= oy1) continue;
#if BF_X86
      if (simd) {
        resized_crop_band_avx2<S>(images[n], p, oy0, oy1, out + n * image_elems, scratch);
        continue;
      }
#endif
      resized_crop_band<S>(images[n], p, oy0, oy1, out + n * image_elems, scratch);
    }
  }
}

}  // namespace

bool resized_crop_cpu_set_simd(bool enabled) {
  const bool previous = simd_enabled();
  simd_enabled() = enabled && cpu_has_simd();
  return previous;
}

void resized_crop_cpu(const ResizedCropImage* images, const ResizedCropParams& params, void* out) {
  dispatch_out_dtype(params.dtype, [&](auto tag) {
    using S = decltype(tag);
    resized_crop_impl<S>(images, params, static_cast<typename S::type*>(out));
  });
}

}  // namespace bridgedfast
