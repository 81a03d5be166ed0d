// Helpers shared by the torch bindings of every op (CPU and CUDA).
#pragma once

#include <ATen/ATen.h>

#include "bridgedfast/dtype.h"
#include "bridgedfast/mix_images.h"

namespace bridgedfast {

inline OutDType to_out_dtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return OutDType::kFloat32;
    case at::kHalf: return OutDType::kFloat16;
    case at::kBFloat16: return OutDType::kBFloat16;
    default: TORCH_CHECK(false, "bridgedfast: unsupported floating dtype ", t, " (use float32, float16 or bfloat16)");
  }
}

// Validates mix_images' inputs and returns x made dense in its own memory format.
inline at::Tensor check_mix_images_inputs(const at::Tensor& x, const at::Tensor& lam, const at::Tensor& boxes,
                                          ImageBatchShape* shape) {
  TORCH_CHECK(x.dim() == 4, "mix_images: x must be a [N, C, H, W] batch, got ", x.dim(), "D");
  to_out_dtype(x.scalar_type());
  TORCH_CHECK(lam.scalar_type() == at::kFloat && lam.dim() == 1 && lam.size(0) == x.size(0),
              "mix_images: lam must be float32 [N] with N = ", x.size(0), ", got ", lam.scalar_type(), " ",
              lam.sizes());
  TORCH_CHECK(boxes.scalar_type() == at::kInt && boxes.dim() == 2 && boxes.size(0) == x.size(0) &&
                  boxes.size(1) == 4,
              "mix_images: boxes must be int32 [N, 4] (y0, y1, x0, x1) with N = ", x.size(0), ", got ",
              boxes.scalar_type(), " ", boxes.sizes());
  TORCH_CHECK(lam.device() == x.device() && boxes.device() == x.device(),
              "mix_images: x, lam and boxes must be on one device, got ", x.device(), ", ", lam.device(), ", ",
              boxes.device());
  const bool channels_last = x.size(1) > 1 && x.is_contiguous(at::MemoryFormat::ChannelsLast) && !x.is_contiguous();
  *shape = ImageBatchShape{x.size(0), x.size(1), x.size(2), x.size(3), channels_last};
  return x.contiguous(channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
}

}  // namespace bridgedfast
