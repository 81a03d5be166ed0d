// resized_crop: the whole per-image input transform in one pass over uint8 HWC RGB images:
// crop a box, resize it bilinearly (optionally antialiased), take a window of the resized
// image (the center crop of an eval transform), flip horizontally, then (x/255 - mean)/std,
// written as one float32/16/bf16 NCHW or NHWC batch. Torch-free.
//
// The sampling is PyTorch's: without antialias, interpolate(mode="bilinear",
// align_corners=False); with it, _upsample_bilinear2d_aa, a triangle filter whose support grows
// with the downscale factor, its weights normalised to sum to one and clipped to the crop.
#pragma once

#include <cmath>

#include "dtype.h"
#include "macros.h"

namespace bridgedfast {

// How one output axis samples one source axis: output pixel o reads resized pixel
// r = o + window_start of the source span [crop_start, crop_start + crop_len) resized to
// resize_len pixels. A plain resized_crop has resize_len = output size and window_start = 0.
struct AxisMap {
  int32_t crop_start;
  int32_t crop_len;
  int32_t resize_len;
  int32_t window_start;
};

// One image and how it maps to its output. Plain data: copied to the GPU as is. `pixels` is
// an address on the device the kernel runs on: one image of a packed buffer, one tensor of a
// list, or one image of an NHWC batch; rows may be `row_stride` bytes apart (a view), pixels
// are 3 bytes (RGB) apart.
struct ResizedCropImage {
  const uint8_t* pixels;  // pixel (0, 0), channel 0
  int64_t row_stride;     // bytes from one row to the next (3 * width when dense)
  int32_t height, width;
  AxisMap y, x;
  int32_t flip;  // 1: mirror the output horizontally (after the resize)
  int32_t reserved;
};

struct ResizedCropParams {
  int64_t n;
  int32_t out_h, out_w;
  bool antialias;
  bool channels_last;
  OutDType dtype;
  // out = resampled * scale[c] + shift[c], i.e. scale = 1 / (255 std), shift = -mean / std.
  float scale[3];
  float shift[3];
};

BF_HOST_DEVICE_INLINE float axis_scale(const AxisMap& m) {
  return static_cast<float>(m.crop_len) / static_cast<float>(m.resize_len);
}

// An upper bound of the taps any output pixel of this axis reads (torch's max interp size).
BF_HOST_DEVICE_INLINE int axis_max_taps(const AxisMap& m, bool antialias) {
  int bound = 2;
  if (antialias) {
    const float scale = axis_scale(m);
    const float support = scale >= 1.0f ? scale : 1.0f;
    bound = static_cast<int>(ceilf(support)) * 2 + 1;
  }
  return bound < m.crop_len ? bound : m.crop_len;
}

BF_HOST_DEVICE_INLINE float triangle_filter(float t) {
  t = t < 0.0f ? -t : t;
  return t < 1.0f ? 1.0f - t : 0.0f;
}

// The taps of resized pixel r along one axis: source pixels start + k (absolute in the image)
// for k < count. Antialias: weight_k = triangle((rel_start + k - center + 0.5) * invscale) / total;
// bilinear: weights (1 - lambda, lambda). axis_tap_weight() evaluates one weight, so a kernel
// can compute them where it needs them (the GPU's fallback path) instead of storing them.
struct AxisTaps {
  int32_t start, count;
  int32_t rel_start;  // start - crop_start
  bool antialias;
  float center, invscale, total;  // antialias
  float lambda;                   // bilinear
};

BF_HOST_DEVICE_INLINE float antialias_tap(const AxisTaps& t, int k) {
  return triangle_filter((static_cast<float>(t.rel_start + k) - t.center + 0.5f) * t.invscale);
}

BF_HOST_DEVICE_INLINE AxisTaps axis_tap_span(const AxisMap& m, bool antialias, int64_t r) {
  AxisTaps t{};
  t.antialias = antialias;
  const float scale = axis_scale(m);
  if (antialias) {
    t.center = scale * (static_cast<float>(r) + 0.5f);
    const float support = scale >= 1.0f ? scale : 1.0f;
    t.invscale = scale >= 1.0f ? 1.0f / scale : 1.0f;
    int64_t lo = static_cast<int64_t>(t.center - support + 0.5f);  // truncation, as torch does
    int64_t hi = static_cast<int64_t>(t.center + support + 0.5f);
    lo = lo < 0 ? 0 : lo;
    hi = hi > m.crop_len ? m.crop_len : hi;
    t.rel_start = static_cast<int32_t>(lo);
    t.count = static_cast<int32_t>(hi - lo);
    float total = 0.0f;
    for (int k = 0; k < t.count; ++k) total += antialias_tap(t, k);
    t.total = total;
    t.start = m.crop_start + t.rel_start;
    return t;
  }
  // align_corners=False: source coordinate clamped at 0, right neighbour clamped at the edge.
  float src = scale * (static_cast<float>(r) + 0.5f) - 0.5f;
  src = src < 0.0f ? 0.0f : src;
  int64_t i0 = static_cast<int64_t>(src);
  if (i0 > m.crop_len - 1) i0 = m.crop_len - 1;
  t.rel_start = static_cast<int32_t>(i0);
  t.start = m.crop_start + t.rel_start;
  if (i0 >= m.crop_len - 1) {
    t.count = 1;
    t.lambda = 0.0f;
    return t;
  }
  const float lambda = src - static_cast<float>(i0);
  t.lambda = lambda > 1.0f ? 1.0f : lambda;
  t.count = 2;
  return t;
}

BF_HOST_DEVICE_INLINE float axis_tap_weight(const AxisTaps& t, int k) {
  if (t.antialias) {
    const float w = antialias_tap(t, k);
    return t.total != 0.0f ? w / t.total : w;
  }
  return k == 0 ? 1.0f - t.lambda : t.lambda;
}

// The taps of resized pixel r with their weights: *start as above, w[k] for k < the returned
// count (w holds axis_max_taps() floats); the weights sum to one.
BF_HOST_DEVICE_INLINE int axis_taps(const AxisMap& m, bool antialias, int64_t r, int32_t* start, float* w) {
  const AxisTaps t = axis_tap_span(m, antialias, r);
  for (int k = 0; k < t.count; ++k) w[k] = axis_tap_weight(t, k);
  *start = t.start;
  return t.count;
}

// The resized pixel that output column `ox` shows (flip mirrors the output row).
BF_HOST_DEVICE_INLINE int64_t resized_column(const ResizedCropImage& im, int64_t ox, int64_t out_w) {
  return (im.flip ? out_w - 1 - ox : ox) + im.x.window_start;
}

// CPU (OpenMP over images and bands of output rows). `images`: n entries with host addresses;
// `out`: n*3*out_h*out_w elements of params.dtype.
void resized_crop_cpu(const ResizedCropImage* images, const ResizedCropParams& params, void* out);

// The CPU kernel picks its x86 AVX2/FMA/F16C code at run time; false forces the portable
// baseline (for tests). Returns the previous setting.
bool resized_crop_cpu_set_simd(bool enabled);

// CUDA: `host_images` and `device_images` hold the same n entries (device addresses), the first
// in host memory (the launcher reads which kernels the batch needs from it), the second on the
// device; `out` is a device pointer, `stream` a cudaStream_t. Returns the cudaError_t of the
// launches (0 on success). See resized_crop_grid.h for the kernels.
int resized_crop_cuda(const ResizedCropImage* host_images, const ResizedCropImage* device_images,
                      const ResizedCropParams& params, void* out, void* stream);

}  // namespace bridgedfast
