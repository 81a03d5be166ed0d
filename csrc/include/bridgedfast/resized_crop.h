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

// One image of a packed batch and how it maps to its output. Plain data: copied to the GPU as is.
struct ResizedCropImage {
  int64_t offset;  // byte offset of pixel (0, 0) in the packed buffer
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

// The taps of resized pixel r: source pixels *start + k (absolute in the image) for
// k < returned count, with weights w[k] summing to one. `w` holds axis_max_taps() floats.
BF_HOST_DEVICE_INLINE int axis_taps(const AxisMap& m, bool antialias, int64_t r, int32_t* start, float* w) {
  const float scale = axis_scale(m);
  if (antialias) {
    const float center = scale * (static_cast<float>(r) + 0.5f);
    const float support = scale >= 1.0f ? scale : 1.0f;
    const float invscale = scale >= 1.0f ? 1.0f / scale : 1.0f;
    int64_t lo = static_cast<int64_t>(center - support + 0.5f);  // truncation, as torch does
    int64_t hi = static_cast<int64_t>(center + support + 0.5f);
    lo = lo < 0 ? 0 : lo;
    hi = hi > m.crop_len ? m.crop_len : hi;
    const int count = static_cast<int>(hi - lo);
    float total = 0.0f;
    for (int k = 0; k < count; ++k) {
      w[k] = triangle_filter((static_cast<float>(lo + k) - center + 0.5f) * invscale);
      total += w[k];
    }
    if (total != 0.0f) {
      for (int k = 0; k < count; ++k) w[k] /= total;
    }
    *start = m.crop_start + static_cast<int32_t>(lo);
    return count;
  }
  // align_corners=False: source coordinate clamped at 0, right neighbour clamped at the edge.
  float src = scale * (static_cast<float>(r) + 0.5f) - 0.5f;
  src = src < 0.0f ? 0.0f : src;
  int64_t i0 = static_cast<int64_t>(src);
  if (i0 > m.crop_len - 1) i0 = m.crop_len - 1;
  *start = m.crop_start + static_cast<int32_t>(i0);
  if (i0 >= m.crop_len - 1) {
    w[0] = 1.0f;
    return 1;
  }
  float lambda = src - static_cast<float>(i0);
  lambda = lambda > 1.0f ? 1.0f : lambda;
  w[0] = 1.0f - lambda;
  w[1] = lambda;
  return 2;
}

// The resized pixel that output column `ox` shows (flip mirrors the output row).
BF_HOST_DEVICE_INLINE int64_t resized_column(const ResizedCropImage& im, int64_t ox, int64_t out_w) {
  return (im.flip ? out_w - 1 - ox : ox) + im.x.window_start;
}

// CPU (OpenMP over images and bands of output rows). `data` is the packed uint8 buffer,
// `images` n entries, `out` n*3*out_h*out_w elements of params.dtype.
void resized_crop_cpu(const uint8_t* data, const ResizedCropImage* images, const ResizedCropParams& params,
                      void* out);

// The CPU kernel picks its x86 AVX2/FMA/F16C code at run time; false forces the portable
// baseline (for tests). Returns the previous setting.
bool resized_crop_cpu_set_simd(bool enabled);

// CUDA: `data`, `images` (n entries) and `out` are device pointers; `workspace` is a device
// buffer of resized_crop_cuda_workspace_bytes() bytes; `max_taps` the largest axis_max_taps over
// the batch; `stream` a cudaStream_t. Returns the cudaError_t of the launches (0 on success).
int64_t resized_crop_cuda_workspace_bytes(const ResizedCropParams& params, int max_taps);
int resized_crop_cuda(const uint8_t* data, const ResizedCropImage* images, const ResizedCropParams& params,
                      int max_taps, void* workspace, void* out, void* stream);

}  // namespace bridgedfast
