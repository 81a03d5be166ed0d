// mix_images: the image half of Mixup/CutMix in one pass. Each image i is mixed with its
// partner j = N-1-i (the batch reversed, as timm does):
//   out[i] = inside box_i ? x[j] : lam_i * x[i] + (1 - lam_i) * x[j]
// Mixup samples carry an empty box, CutMix samples lam_i = 1 and their box. Torch-free.
#pragma once

#include "dtype.h"
#include "macros.h"

namespace bridgedfast {

// A dense image batch, contiguous either as NCHW or as NHWC (channels_last).
struct ImageBatchShape {
  int64_t n, c, h, w;
  bool channels_last;
};

// Box i is boxes[4*i .. 4*i+3] = (y0, y1, x0, x1), half-open, in output pixels.
BF_HOST_DEVICE_INLINE bool in_mix_box(const int32_t* box, int64_t y, int64_t x) {
  return y >= box[0] && y < box[1] && x >= box[2] && x < box[3];
}

BF_HOST_DEVICE_INLINE float mix_value(float self, float partner, float lam, bool in_box) {
  return in_box ? partner : self * lam + partner * (1.0f - lam);
}

// CPU (OpenMP over image rows). `x` and `out` hold n*c*h*w elements of `dtype`.
void mix_images_cpu(OutDType dtype, const void* x, void* out, const ImageBatchShape& shape,
                    const float* lam, const int32_t* boxes);

// CUDA (kernel body: mix_images_grid.h): all pointers are device pointers; `stream` is a
// cudaStream_t. Returns the cudaError_t of the launch (0 on success).
int mix_images_cuda(OutDType dtype, const void* x, void* out, const ImageBatchShape& shape,
                    const float* lam, const int32_t* boxes, void* stream);

}  // namespace bridgedfast
