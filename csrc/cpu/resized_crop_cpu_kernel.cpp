#include "bridgedfast/resized_crop.h"

#include <algorithm>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
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

// Column taps relative to the crop's first column, shifted left near the crop's right edge so
// that every padded window [start, start + k) stays inside the crop.
void build_columns(const ResizedCropImage& im, bool antialias, int64_t out_w, AxisTable* t) {
  const int k = axis_max_taps(im.x, antialias);
  t->k = k;
  t->start.resize(out_w);
  t->weight.assign(out_w * k, 0.0f);
  std::vector<float> w(k);
  for (int64_t ox = 0; ox < out_w; ++ox) {
    int32_t start = 0;
    const int count = axis_taps(im.x, antialias, resized_column(im, ox, out_w), &start, w.data());
    start -= im.x.crop_start;
    const int32_t shifted = std::min(start, im.x.crop_len - k);
    t->start[ox] = shifted;
    for (int j = 0; j < count; ++j) t->weight[ox * k + (start - shifted) + j] = w[j];
  }
}

// out[3*ox + c] = sum_j w[ox][j] * src[3*(start[ox] + j) + c]: the horizontal resample of one
// interleaved RGB row. A compile-time tap count lets the compiler unroll the tap loop.
template <int K, typename T>
void resample_row_fixed(const T* src, const int32_t* start, const float* weight, int64_t out_w, float* out) {
  for (int64_t ox = 0; ox < out_w; ++ox) {
    const T* s = src + 3 * static_cast<int64_t>(start[ox]);
    const float* w = weight + K * ox;
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f;
    for (int j = 0; j < K; ++j) {
      a0 += w[j] * static_cast<float>(s[3 * j]);
      a1 += w[j] * static_cast<float>(s[3 * j + 1]);
      a2 += w[j] * static_cast<float>(s[3 * j + 2]);
    }
    out[3 * ox] = a0;
    out[3 * ox + 1] = a1;
    out[3 * ox + 2] = a2;
  }
}

template <typename T>
void resample_row_any(const T* src, const AxisTable& cols, int64_t out_w, float* out) {
  const int k = cols.k;
  for (int64_t ox = 0; ox < out_w; ++ox) {
    const T* s = src + 3 * static_cast<int64_t>(cols.start[ox]);
    const float* w = cols.weight.data() + k * ox;
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f;
    for (int j = 0; j < k; ++j) {
      a0 += w[j] * static_cast<float>(s[3 * j]);
      a1 += w[j] * static_cast<float>(s[3 * j + 1]);
      a2 += w[j] * static_cast<float>(s[3 * j + 2]);
    }
    out[3 * ox] = a0;
    out[3 * ox + 1] = a1;
    out[3 * ox + 2] = a2;
  }
}

template <typename T>
void resample_row(const T* src, const AxisTable& cols, int64_t out_w, float* out) {
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
    default: return resample_row_any(src, cols, out_w, out);
  }
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

// Normalises one interleaved output row and writes it as NHWC or as three NCHW planes.
template <typename S>
void store_row(const float* acc, const ResizedCropParams& p, typename S::type* dst, int64_t plane) {
  const int64_t w = p.out_w;
  if (p.channels_last) {
    for (int64_t ox = 0; ox < w; ++ox) {
      for (int c = 0; c < 3; ++c) dst[3 * ox + c] = S::store(acc[3 * ox + c] * p.scale[c] + p.shift[c]);
    }
    return;
  }
  for (int c = 0; c < 3; ++c) {
    typename S::type* d = dst + c * plane;
    const float sc = p.scale[c], sh = p.shift[c];
    for (int64_t ox = 0; ox < w; ++ox) d[ox] = S::store(acc[3 * ox + c] * sc + sh);
  }
}

struct Scratch {
  AxisTable rows, cols;
  std::vector<float> buffer, acc;
  std::vector<const float*> float_rows;
  std::vector<const uint8_t*> byte_rows;
};

// Output rows [oy0, oy1) of image `im`. The horizontal pass is scalar-ish and the vertical
// one vectorises, so the order that runs the horizontal pass on fewer rows wins: columns
// first when the band reads fewer source rows than it writes, rows first otherwise.
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
  // Weights: a scalar multiply-add costs about four vector lanes.
  const double columns_first = 4.0 * (y_hi - y_lo) * row3 * s.cols.k + static_cast<double>(taps_y) * row3;
  const double rows_first = static_cast<double>(taps_y) * crop3 + 4.0 * band * row3 * s.cols.k;
  s.acc.resize(row3);
  if (columns_first <= rows_first) {
    s.buffer.resize((y_hi - y_lo) * row3);
    for (int64_t y = y_lo; y < y_hi; ++y) {
      resample_row(crop + y * src_row_bytes, s.cols, out_w, s.buffer.data() + (y - y_lo) * row3);
    }
    s.float_rows.resize(s.rows.k);
    for (int64_t i = 0; i < band; ++i) {
      for (int k = 0; k < s.rows.count[i]; ++k) s.float_rows[k] = s.buffer.data() + (s.rows.start[i] + k - y_lo) * row3;
      blend_rows(s.float_rows.data(), &s.rows.weight[i * s.rows.k], s.rows.count[i], row3, s.acc.data());
      auto* dst = out_image + (p.channels_last ? (oy0 + i) * row3 : (oy0 + i) * out_w);
      store_row<S>(s.acc.data(), p, dst, plane);
    }
  } else {
    s.buffer.resize(crop3);
    s.byte_rows.resize(s.rows.k);
    for (int64_t i = 0; i < band; ++i) {
      for (int k = 0; k < s.rows.count[i]; ++k) s.byte_rows[k] = crop + (s.rows.start[i] + k) * src_row_bytes;
      blend_rows(s.byte_rows.data(), &s.rows.weight[i * s.rows.k], s.rows.count[i], crop3, s.buffer.data());
      resample_row(s.buffer.data(), s.cols, out_w, s.acc.data());
      auto* dst = out_image + (p.channels_last ? (oy0 + i) * row3 : (oy0 + i) * out_w);
      store_row<S>(s.acc.data(), p, dst, plane);
    }
  }
}

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
  BF_PRAGMA_OMP(omp parallel)
  {
    Scratch scratch;
    BF_PRAGMA_OMP(omp for schedule(dynamic, 1))
    for (int64_t item = 0; item < items; ++item) {
      const int64_t n = item / bands;
      const int64_t oy0 = (item % bands) * band_rows;
      const int64_t oy1 = std::min<int64_t>(p.out_h, oy0 + band_rows);
      if (oy0 >= oy1) continue;
      resized_crop_band<S>(data, images[n], p, oy0, oy1, out + n * image_elems, scratch);
    }
  }
}

}  // namespace

void resized_crop_cpu(const uint8_t* data, const ResizedCropImage* images, const ResizedCropParams& params,
                      void* out) {
  dispatch_out_dtype(params.dtype, [&](auto tag) {
    using S = decltype(tag);
    resized_crop_impl<S>(data, images, params, static_cast<typename S::type*>(out));
  });
}

}  // namespace bridgedfast
