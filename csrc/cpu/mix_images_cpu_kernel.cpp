#include "bridgedfast/mix_images.h"

#include <algorithm>

namespace bridgedfast {
namespace {

// Mixes out[k] = lam * self[k] + (1 - lam) * partner[k] over [begin, end): the hot loop,
// contiguous and branch-free so the compiler vectorises it.
template <typename S>
void mix_span(const typename S::type* self, const typename S::type* partner, typename S::type* out,
              int64_t begin, int64_t end, float lam) {
  for (int64_t k = begin; k < end; ++k) {
    out[k] = S::store(mix_value(S::load(self[k]), S::load(partner[k]), lam, false));
  }
}

template <typename S>
void mix_images_impl(const typename S::type* x, typename S::type* out, const ImageBatchShape& s,
                     const float* lam, const int32_t* boxes) {
  const int64_t image = s.c * s.h * s.w;
  // A "row" is a contiguous run in memory that shares y: one channel row in NCHW, all
  // channels of one pixel row in NHWC. Box columns scale by `col` accordingly.
  const int64_t rows_per_y = s.channels_last ? 1 : s.c;
  const int64_t row_len = s.channels_last ? s.w * s.c : s.w;
  const int64_t col = s.channels_last ? s.c : 1;
  const int64_t row_stride = s.channels_last ? row_len : s.h * s.w;
  BF_PRAGMA_OMP(omp parallel for collapse(2) schedule(static))
  for (int64_t n = 0; n < s.n; ++n) {
    for (int64_t y = 0; y < s.h; ++y) {
      const int64_t j = s.n - 1 - n;
      const int32_t* box = boxes + 4 * n;
      const bool row_in_box = y >= box[0] && y < box[1];
      const int64_t b0 = row_in_box ? std::clamp<int64_t>(box[2], 0, s.w) * col : 0;
      const int64_t b1 = row_in_box ? std::clamp<int64_t>(box[3], 0, s.w) * col : 0;
      for (int64_t r = 0; r < rows_per_y; ++r) {
        const int64_t offset = r * row_stride + y * (s.channels_last ? row_len : s.w);
        const auto* self = x + n * image + offset;
        const auto* partner = x + j * image + offset;
        auto* dst = out + n * image + offset;
        mix_span<S>(self, partner, dst, 0, b0, lam[n]);
        std::copy(partner + b0, partner + std::max(b0, b1), dst + b0);
        mix_span<S>(self, partner, dst, std::max(b0, b1), row_len, lam[n]);
      }
    }
  }
}

}  // namespace

void mix_images_cpu(OutDType dtype, const void* x, void* out, const ImageBatchShape& shape,
                    const float* lam, const int32_t* boxes) {
  dispatch_out_dtype(dtype, [&](auto tag) {
    using S = decltype(tag);
    using T = typename S::type;
    mix_images_impl<S>(static_cast<const T*>(x), static_cast<T*>(out), shape, lam, boxes);
  });
}

}  // namespace bridgedfast
