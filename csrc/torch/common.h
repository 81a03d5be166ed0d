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

#include "bridgedfast/gather_images.h"

namespace bridgedfast {

// Validates gather_images' inputs (every byte range inside its source and the output, so the
// kernels never read or write out of bounds) and returns the items as a contiguous CPU tensor.
inline at::Tensor check_gather_images_inputs(const at::TensorList& sources, const at::Tensor& items,
                                             const at::Tensor& out) {
  TORCH_CHECK(out.scalar_type() == at::kByte && out.dim() == 1 && out.is_contiguous(),
              "gather_images: out must be a contiguous 1-D uint8 tensor, got ", out.scalar_type(), " ", out.sizes());
  TORCH_CHECK(items.scalar_type() == at::kLong && items.dim() == 2 && items.size(1) == 4,
              "gather_images: items must be int64 [N, 4] (source, src_offset, nbytes, dst_offset), got ",
              items.scalar_type(), " ", items.sizes());
  TORCH_CHECK(items.device().is_cpu(), "gather_images: items must be on the CPU, got ", items.device());
  for (size_t s = 0; s < sources.size(); ++s) {
    TORCH_CHECK(sources[s].scalar_type() == at::kByte && sources[s].dim() == 1 && sources[s].is_contiguous(),
                "gather_images: source ", s, " must be a contiguous 1-D uint8 tensor, got ", sources[s].scalar_type(),
                " ", sources[s].sizes());
    TORCH_CHECK(sources[s].device() == out.device(), "gather_images: source ", s, " is on ", sources[s].device(),
                " but out is on ", out.device());
  }
  at::Tensor items_c = items.contiguous();
  const auto* it = reinterpret_cast<const GatherItem*>(items_c.const_data_ptr<int64_t>());
  const int64_t num_sources = static_cast<int64_t>(sources.size());
  for (int64_t i = 0; i < items_c.size(0); ++i) {
    const GatherItem& g = it[i];
    TORCH_CHECK(g.source >= 0 && g.source < num_sources, "gather_images: item ", i, " names source ", g.source,
                " but there are ", num_sources);
    const int64_t have = sources[g.source].numel();
    TORCH_CHECK(g.nbytes >= 0 && g.src_offset >= 0 && g.src_offset <= have && g.nbytes <= have - g.src_offset,
                "gather_images: item ", i, " reads bytes [", g.src_offset, ", ", g.src_offset + g.nbytes,
                ") of source ", g.source, ", which has ", have, " bytes");
    TORCH_CHECK(g.dst_offset >= 0 && g.dst_offset <= out.numel() && g.nbytes <= out.numel() - g.dst_offset,
                "gather_images: item ", i, " writes bytes [", g.dst_offset, ", ", g.dst_offset + g.nbytes,
                ") of out, which has ", out.numel(), " bytes");
  }
  return items_c;
}

}  // namespace bridgedfast
