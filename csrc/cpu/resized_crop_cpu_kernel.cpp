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
  std::vector<float> buffer, line, acc, planar, vert, trans, horiz;
  std::vector<uint16_t> tmp;
  bool simd = false;  // the x86 AVX2/FMA/F16C code paths (the band itself is compiled for them)
  std::vector<const float*> float_rows;
  std::vector<const uint8_t*> byte_rows;
};

// Output rows [oy0, oy1) of image `im`. The horizontal pass costs a vector op per pixel and
// tap, the vertical one a vector op per four values and tap, so the order that runs the
// horizontal pass on fewer rows wins: columns first when the band reads fewer source rows than
// it writes (upscaling), rows first otherwise.
template <typename S>
void resized_crop_band(const uint8_t* data, const ResizedCropImage& im, const ResizedCropParams& p, int64_t oy0,
                       int64_t oy1, typename S::type* out_image, Scratch& s) {
  const int64_t out_w = p.out_w;
  const int64_t plane = static_cast<int64_t>(p.out_h) * out_w;
  const int64_t row3 = 3 * out_w;
  build_rows(im, p.antialias, oy0, oy1, &s.rows);
  build_columns(im, p.antialias, out_w, &s.cols);
  const int64_t band = oy1 - oy0;
  const int64_t y_lo = s.rows.start[0];
  const int64_t y_hi = s.rows.start[band - 1] + s.rows.count[band - 1];
  int64_t taps_y = 0;
  for (int64_t i = 0; i < band; ++i) taps_y += s.rows.count[i];
  const int64_t src_row_bytes = 3 * static_cast<int64_t>(im.width);
  const uint8_t* crop = data + im.offset + 3 * static_cast<int64_t>(im.x.crop_start);
  const int64_t crop3 = 3 * static_cast<int64_t>(im.x.crop_len);
  const double columns_first = (y_hi - y_lo) * (crop3 / 4.0 + out_w * s.cols.k) + taps_y * row3 / 4.0;
  const double rows_first = taps_y * crop3 / 4.0 + band * out_w * s.cols.k;
  s.acc.resize(row3 + kPad);
  s.planar.resize(2 * row3);
  s.tmp.resize(row3);
  if (p.channels_last) {
    for (int64_t j = 0; j < row3; ++j) s.planar[j] = p.scale[j % 3], s.planar[row3 + j] = p.shift[j % 3];
  }
  if (columns_first <= rows_first) {
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
#define BF_AVX2 __attribute__((target("avx2,fma,f16c")))

// The AVX2 band works on groups of kGroup output rows and keeps, between its passes, one
// 8-float vector per (pixel, channel) holding that value for all rows of the group. The
// horizontal pass, whose taps start at a different column for every output pixel, then costs
// a broadcast and three full-width multiply-adds per tap for eight rows at once, instead of a
// 3-of-4-lane SSE operation per tap for every single row; 8x8 transposes move data in and out
// of that layout.
constexpr int64_t kGroup = 8;

inline int64_t round_up8(int64_t v) { return (v + 7) & ~int64_t{7}; }

// Transposes the 8x8 block in r0..r7 (row i = r_i) in place.
BF_AVX2 inline void transpose8x8(__m256& r0, __m256& r1, __m256& r2, __m256& r3, __m256& r4, __m256& r5, __m256& r6,
                                 __m256& r7) {
  const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
  const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
  const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
  const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  r0 = _mm256_permute2f128_ps(s0, s4, 0x20);
  r1 = _mm256_permute2f128_ps(s1, s5, 0x20);
  r2 = _mm256_permute2f128_ps(s2, s6, 0x20);
  r3 = _mm256_permute2f128_ps(s3, s7, 0x20);
  r4 = _mm256_permute2f128_ps(s0, s4, 0x31);
  r5 = _mm256_permute2f128_ps(s1, s5, 0x31);
  r6 = _mm256_permute2f128_ps(s2, s6, 0x31);
  r7 = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// The 8x8 block src[r * src_stride + k] (r, k < 8) -> dst[k * dst_stride + r].
BF_AVX2 inline void transpose8x8(const float* src, int64_t src_stride, float* dst, int64_t dst_stride) {
  __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + src_stride);
  __m256 r2 = _mm256_loadu_ps(src + 2 * src_stride), r3 = _mm256_loadu_ps(src + 3 * src_stride);
  __m256 r4 = _mm256_loadu_ps(src + 4 * src_stride), r5 = _mm256_loadu_ps(src + 5 * src_stride);
  __m256 r6 = _mm256_loadu_ps(src + 6 * src_stride), r7 = _mm256_loadu_ps(src + 7 * src_stride);
  transpose8x8(r0, r1, r2, r3, r4, r5, r6, r7);
  _mm256_storeu_ps(dst, r0);
  _mm256_storeu_ps(dst + dst_stride, r1);
  _mm256_storeu_ps(dst + 2 * dst_stride, r2);
  _mm256_storeu_ps(dst + 3 * dst_stride, r3);
  _mm256_storeu_ps(dst + 4 * dst_stride, r4);
  _mm256_storeu_ps(dst + 5 * dst_stride, r5);
  _mm256_storeu_ps(dst + 6 * dst_stride, r6);
  _mm256_storeu_ps(dst + 7 * dst_stride, r7);
}

BF_AVX2 void bytes_to_floats_avx2(const uint8_t* src, int64_t len, float* out) {
  int64_t j = 0;
  for (; j + 8 <= len; j += 8) {
    const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + j));
    _mm256_storeu_ps(out + j, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b)));
  }
  for (; j < len; ++j) out[j] = static_cast<float>(src[j]);
}

// out[j] = sum_k w[k] * rows[k][j] for j < len8 (a multiple of 8): the vertical resample of
// one output row from float source rows, the sums kept in registers across the taps.
BF_AVX2 void vertical_row_avx2(const float* const* rows, const float* w, int count, int64_t len8, float* out) {
  int64_t j = 0;
  for (; j + 32 <= len8; j += 32) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    for (int k = 0; k < count; ++k) {
      const __m256 wk = _mm256_set1_ps(w[k]);
      const float* r = rows[k] + j;
      a0 = _mm256_fmadd_ps(wk, _mm256_loadu_ps(r), a0);
      a1 = _mm256_fmadd_ps(wk, _mm256_loadu_ps(r + 8), a1);
      a2 = _mm256_fmadd_ps(wk, _mm256_loadu_ps(r + 16), a2);
      a3 = _mm256_fmadd_ps(wk, _mm256_loadu_ps(r + 24), a3);
    }
    _mm256_storeu_ps(out + j, a0);
    _mm256_storeu_ps(out + j + 8, a1);
    _mm256_storeu_ps(out + j + 16, a2);
    _mm256_storeu_ps(out + j + 24, a3);
  }
  for (; j < len8; j += 8) {
    __m256 a = _mm256_setzero_ps();
    for (int k = 0; k < count; ++k) a = _mm256_fmadd_ps(_mm256_set1_ps(w[k]), _mm256_loadu_ps(rows[k] + j), a);
    _mm256_storeu_ps(out + j, a);
  }
}

// horiz[(c * w8 + ox) * 8 + r] = (sum_j w[ox][j] * trans[(3 (start[ox] + j) + c) * 8 + r]) * scale[c]
// + shift[c]: the horizontal resample and the normalisation of a whole group of rows.
template <int K>
BF_AVX2 void horizontal_group_fixed(const float* trans, const int32_t* start, const float* weight, int k_any,
                                    int64_t out_w, int64_t w8, const ResizedCropParams& p, float* horiz) {
  const int k = K > 0 ? K : k_any;
  const __m256 sc0 = _mm256_set1_ps(p.scale[0]), sc1 = _mm256_set1_ps(p.scale[1]), sc2 = _mm256_set1_ps(p.scale[2]);
  const __m256 sh0 = _mm256_set1_ps(p.shift[0]), sh1 = _mm256_set1_ps(p.shift[1]), sh2 = _mm256_set1_ps(p.shift[2]);
  for (int64_t ox = 0; ox < out_w; ++ox) {
    const float* t = trans + 24 * static_cast<int64_t>(start[ox]);
    const float* w = weight + k * ox;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps();
    for (int j = 0; j < k; ++j) {
      const __m256 wj = _mm256_set1_ps(w[j]);
      a0 = _mm256_fmadd_ps(wj, _mm256_loadu_ps(t + 24 * j), a0);
      a1 = _mm256_fmadd_ps(wj, _mm256_loadu_ps(t + 24 * j + 8), a1);
      a2 = _mm256_fmadd_ps(wj, _mm256_loadu_ps(t + 24 * j + 16), a2);
    }
    _mm256_storeu_ps(horiz + 8 * ox, _mm256_fmadd_ps(a0, sc0, sh0));
    _mm256_storeu_ps(horiz + 8 * (w8 + ox), _mm256_fmadd_ps(a1, sc1, sh1));
    _mm256_storeu_ps(horiz + 8 * (2 * w8 + ox), _mm256_fmadd_ps(a2, sc2, sh2));
  }
  for (int64_t ox = out_w; ox < w8; ++ox) {  // padding the output transposes read, never stored
    for (int c = 0; c < 3; ++c) _mm256_storeu_ps(horiz + 8 * (c * w8 + ox), _mm256_setzero_ps());
  }
}

BF_AVX2 void horizontal_group(const float* trans, const AxisTable& cols, int64_t out_w, int64_t w8,
                              const ResizedCropParams& p, float* horiz) {
  const int32_t* st = cols.start.data();
  const float* w = cols.weight.data();
  switch (cols.k) {
    case 1: return horizontal_group_fixed<1>(trans, st, w, 1, out_w, w8, p, horiz);
    case 2: return horizontal_group_fixed<2>(trans, st, w, 2, out_w, w8, p, horiz);
    case 3: return horizontal_group_fixed<3>(trans, st, w, 3, out_w, w8, p, horiz);
    case 4: return horizontal_group_fixed<4>(trans, st, w, 4, out_w, w8, p, horiz);
    case 5: return horizontal_group_fixed<5>(trans, st, w, 5, out_w, w8, p, horiz);
    case 6: return horizontal_group_fixed<6>(trans, st, w, 6, out_w, w8, p, horiz);
    case 7: return horizontal_group_fixed<7>(trans, st, w, 7, out_w, w8, p, horiz);
    default: return horizontal_group_fixed<0>(trans, st, w, cols.k, out_w, w8, p, horiz);
  }
}

// Streams n bytes from cache to the output with 32-byte non-temporal stores (see stream_bytes).
BF_AVX2 void stream_bytes_avx2(void* dst, const void* src, int64_t n) {
  char* d = static_cast<char*>(dst);
  const char* s = static_cast<const char*>(src);
  const int64_t head = std::min<int64_t>(n, (32 - reinterpret_cast<uintptr_t>(d) % 32) % 32);
  std::memcpy(d, s, head);
  d += head, s += head, n -= head;
  for (; n >= 32; n -= 32, d += 32, s += 32) {
    _mm256_stream_si256(reinterpret_cast<__m256i*>(d), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s)));
  }
  std::memcpy(d, s, n);
}

template <typename S>
BF_AVX2 void write_out_avx2(const float* src, int64_t len, typename S::type* dst, uint16_t* tmp) {
  if constexpr (S::kDType == OutDType::kFloat32) {
    stream_bytes_avx2(dst, src, len * static_cast<int64_t>(sizeof(float)));
  } else {
    convert_span<S>(src, len, tmp, true);
    stream_bytes_avx2(dst, tmp, len * static_cast<int64_t>(sizeof(uint16_t)));
  }
}

// The output transposes of a group store straight to the output with non-temporal stores when
// every row of every plane starts on a cache line (NCHW float32, width a multiple of 16: the
// usual training batch).
// Sixteen columns at a time, so that each row's 64-byte line is written whole and at once: the
// write-combining buffers then flush full lines instead of halves (a read-modify-write).
BF_AVX2 void transpose16x8_stream(const float* src, float* dst, int64_t dst_stride, int64_t rows) {
  alignas(64) float block[128];
  transpose8x8(src, 8, block, 16);
  transpose8x8(src + 64, 8, block + 8, 16);
  for (int64_t r = 0; r < rows; ++r) {
    _mm256_stream_ps(dst + r * dst_stride, _mm256_load_ps(block + 16 * r));
    _mm256_stream_ps(dst + r * dst_stride + 8, _mm256_load_ps(block + 16 * r + 8));
  }
}

// Output rows [oy0, oy1) of image `im`, kGroup rows at a time: the source rows the group reads
// as floats in `line` (each converted once, though several output rows read it), the vertical
// pass per row into `vert` ([8][crop3 padded]), transpose to `trans` ([crop3 padded][8]), the
// horizontal pass and normalisation into `horiz` ([3][w8][8]), transpose out and store.
template <typename S>
BF_AVX2 void resized_crop_band_avx2(const uint8_t* data, const ResizedCropImage& im, const ResizedCropParams& p,
                                    int64_t oy0, int64_t oy1, typename S::type* out_image, Scratch& s) {
  const int64_t out_w = p.out_w;
  const int64_t w8 = round_up8(out_w);
  const int64_t plane = static_cast<int64_t>(p.out_h) * out_w;
  build_rows(im, p.antialias, oy0, oy1, &s.rows);
  build_columns(im, p.antialias, out_w, &s.cols);
  const int64_t src_row_bytes = 3 * static_cast<int64_t>(im.width);
  const uint8_t* crop = data + im.offset + 3 * static_cast<int64_t>(im.x.crop_start);
  const int64_t crop3 = 3 * static_cast<int64_t>(im.x.crop_len);
  const int64_t crop8 = round_up8(crop3);
  const bool direct = S::kDType == OutDType::kFloat32 && !p.channels_last && out_w % 16 == 0 &&
                      reinterpret_cast<uintptr_t>(out_image) % 64 == 0;
  s.vert.resize(kGroup * crop8);
  s.trans.resize(crop8 * kGroup);
  s.horiz.resize(3 * w8 * kGroup);
  s.planar.resize(kGroup * 3 * w8);
  s.acc.resize(3 * out_w);
  s.tmp.resize(3 * out_w);
  s.float_rows.resize(s.rows.k);
  for (int64_t g0 = oy0; g0 < oy1; g0 += kGroup) {
    const int64_t rows = std::min<int64_t>(kGroup, oy1 - g0);
    const int64_t i0 = g0 - oy0, i1 = i0 + rows - 1;
    const int64_t y_lo = s.rows.start[i0], y_hi = s.rows.start[i1] + s.rows.count[i1];
    s.line.resize((y_hi - y_lo) * crop8);
    for (int64_t y = y_lo; y < y_hi; ++y) {
      float* line = s.line.data() + (y - y_lo) * crop8;
      bytes_to_floats_avx2(crop + y * src_row_bytes, crop3, line);
      std::fill(line + crop3, line + crop8, 0.0f);
    }
    // The source pixels come from DRAM in short runs (one crop row each) that the hardware
    // prefetcher follows poorly: ask for the next group's rows while this group computes.
    if (g0 + kGroup < oy1) {
      const int64_t j1 = std::min<int64_t>(i1 + kGroup, oy1 - oy0 - 1);
      for (int64_t y = y_hi; y < s.rows.start[j1] + s.rows.count[j1]; ++y) {
        const uint8_t* row = crop + y * src_row_bytes;
        for (int64_t b = 0; b < crop3; b += 64) _mm_prefetch(reinterpret_cast<const char*>(row + b), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(row + crop3 - 1), _MM_HINT_T0);
      }
    }
    for (int64_t r = 0; r < kGroup; ++r) {
      float* v = s.vert.data() + r * crop8;
      if (r >= rows) {
        std::fill(v, v + crop8, 0.0f);
        continue;
      }
      const int64_t i = i0 + r;
      for (int k = 0; k < s.rows.count[i]; ++k) s.float_rows[k] = s.line.data() + (s.rows.start[i] + k - y_lo) * crop8;
      vertical_row_avx2(s.float_rows.data(), &s.rows.weight[i * s.rows.k], s.rows.count[i], crop8, v);
    }
    for (int64_t j = 0; j < crop8; j += 8) transpose8x8(s.vert.data() + j, crop8, s.trans.data() + j * kGroup, kGroup);
    horizontal_group(s.trans.data(), s.cols, out_w, w8, p, s.horiz.data());
    if (direct) {
      for (int64_t c = 0; c < 3; ++c) {
        float* dst = reinterpret_cast<float*>(out_image) + c * plane + g0 * out_w;
        for (int64_t ox = 0; ox < out_w; ox += 16) {
          transpose16x8_stream(s.horiz.data() + (c * w8 + ox) * kGroup, dst + ox, out_w, rows);
        }
      }
      continue;
    }
    for (int64_t c = 0; c < 3; ++c) {
      for (int64_t ox = 0; ox < w8; ox += 8) {
        transpose8x8(s.horiz.data() + (c * w8 + ox) * kGroup, kGroup, s.planar.data() + c * w8 + ox, 3 * w8);
      }
    }
    for (int64_t r = 0; r < rows; ++r) {
      const float* planes = s.planar.data() + r * 3 * w8;
      const int64_t oy = g0 + r;
      if (p.channels_last) {
        for (int64_t ox = 0; ox < out_w; ++ox) {
          for (int64_t c = 0; c < 3; ++c) s.acc[3 * ox + c] = planes[c * w8 + ox];
        }
        write_out_avx2<S>(s.acc.data(), 3 * out_w, out_image + oy * 3 * out_w, s.tmp.data());
      } else {
        for (int64_t c = 0; c < 3; ++c) {
          write_out_avx2<S>(planes + c * w8, out_w, out_image + c * plane + oy * out_w, s.tmp.data());
        }
      }
    }
  }
  stream_fence();  // non-temporal stores are weakly ordered: publish them before the band ends
}
#endif

template <typename S>
void resized_crop_impl(const uint8_t* data, const ResizedCropImage* images, const ResizedCropParams& p,
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
        resized_crop_band_avx2<S>(data, images[n], p, oy0, oy1, out + n * image_elems, scratch);
        continue;
      }
#endif
      resized_crop_band<S>(data, images[n], p, oy0, oy1, out + n * image_elems, scratch);
    }
  }
}

}  // namespace

bool resized_crop_cpu_set_simd(bool enabled) {
  const bool previous = simd_enabled();
  simd_enabled() = enabled && cpu_has_simd();
  return previous;
}

void resized_crop_cpu(const uint8_t* data, const ResizedCropImage* images, const ResizedCropParams& params,
                      void* out) {
  dispatch_out_dtype(params.dtype, [&](auto tag) {
    using S = decltype(tag);
    resized_crop_impl<S>(data, images, params, static_cast<typename S::type*>(out));
  });
}

}  // namespace bridgedfast
