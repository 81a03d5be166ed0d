// Helpers shared by the torch bindings of every op (CPU and CUDA).
#pragma once

#include <ATen/ATen.h>
#include <ATen/MemoryOverlap.h>

#include "bridgedfast/dtype.h"
#include "bridgedfast/mix_images.h"
#include "bridgedfast/resized_crop.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "output_allocator.h"

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

// out of mix_images.out: x's shape, dtype, device and (dense) layout, and no memory shared
// with x, since image i reads image N-1-i, which another thread may already have written.
inline void check_mix_images_out(const at::Tensor& out, const at::Tensor& x, const ImageBatchShape& shape) {
  TORCH_CHECK(out.device() == x.device(), "mix_images: out is on ", out.device(), " but x is on ", x.device());
  TORCH_CHECK(out.scalar_type() == x.scalar_type(), "mix_images: out has dtype ", out.scalar_type(), " but x has ",
              x.scalar_type());
  TORCH_CHECK(out.layout() == at::kStrided, "mix_images: out must be a strided (dense) tensor, got ", out.layout());
  TORCH_CHECK(out.sizes() == x.sizes(), "mix_images: out must have x's shape ", x.sizes(), ", got ", out.sizes());
  const auto format = shape.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  TORCH_CHECK(out.is_contiguous(format), "mix_images: out must be ", shape.channels_last ? "channels_last" : "NCHW",
              "-contiguous like x, got strides ", out.strides());
  TORCH_CHECK(out.numel() == 0 || at::get_overlap_status(out, x) == at::MemOverlapStatus::No,
              "mix_images: out must not share memory with x (each image reads its partner)");
}

// The per-image table of a packed batch: `data` one flat uint8 buffer (on any device), `index`
// a host int64 [N, 3] of (byte offset, height, width).
inline std::vector<ResizedCropImage> packed_resized_crop_images(const at::Tensor& data, const at::Tensor& index) {
  TORCH_CHECK(data.scalar_type() == at::kByte && data.dim() == 1 && data.is_contiguous(),
              "resized_crop: data must be a contiguous 1-D uint8 buffer, got ", data.scalar_type(), " ", data.sizes());
  TORCH_CHECK(index.device().is_cpu() && index.scalar_type() == at::kLong && index.dim() == 2 && index.size(1) == 3,
              "resized_crop: index must be a CPU int64 [N, 3] tensor (offset, height, width), got ",
              index.scalar_type(), " ", index.sizes(), " on ", index.device());
  const int64_t n = index.size(0);
  const at::Tensor index_c = index.contiguous();
  const int64_t* ix = index_c.const_data_ptr<int64_t>();
  const uint8_t* base = data.const_data_ptr<uint8_t>();
  std::vector<ResizedCropImage> images(n);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t offset = ix[3 * i], h = ix[3 * i + 1], w = ix[3 * i + 2];
    TORCH_CHECK(h > 0 && w > 0 && h <= INT32_MAX && w <= INT32_MAX && offset >= 0 && offset <= data.numel() &&
                    w <= (data.numel() - offset) / 3 / h,
                "resized_crop: image ", i, " (offset ", offset, ", ", h, "x", w, ") does not fit the ", data.numel(),
                "-byte buffer");
    images[i].pixels = base + offset;
    images[i].row_stride = 3 * w;
    images[i].height = static_cast<int32_t>(h);
    images[i].width = static_cast<int32_t>(w);
  }
  return images;
}

// The per-image table of a list of uint8 [H, W, 3] tensors on one device, read in place: rows
// may be any stride apart (a crop view), pixels must be 3 bytes apart and channels adjacent.
// An image laid out otherwise is copied into `keep` (which must outlive the kernel's launch).
inline std::vector<ResizedCropImage> list_resized_crop_images(at::TensorList list, std::vector<at::Tensor>* keep) {
  TORCH_CHECK(!list.empty(), "resized_crop: images must not be empty");
  const at::Device device = list[0].device();
  std::vector<ResizedCropImage> images(list.size());
  keep->reserve(list.size());  // pointers into `keep` stay valid
  for (size_t i = 0; i < list.size(); ++i) {
    const at::Tensor& t = list[i];
    TORCH_CHECK(t.scalar_type() == at::kByte && t.dim() == 3 && t.size(2) == 3 && t.size(0) > 0 && t.size(1) > 0,
                "resized_crop: image ", i, " must be a uint8 [H, W, 3] tensor with H, W > 0, got ", t.scalar_type(),
                " ", t.sizes());
    TORCH_CHECK(t.device() == device, "resized_crop: images must all be on one device, image 0 is on ", device,
                " and image ", i, " on ", t.device());
    TORCH_CHECK(t.size(0) <= INT32_MAX && t.size(1) <= INT32_MAX, "resized_crop: image ", i, " is too large: ",
                t.sizes());
    const at::Tensor* img = &t;
    if (t.stride(2) != 1 || (t.size(1) > 1 && t.stride(1) != 3)) {
      keep->push_back(t.contiguous());
      img = &keep->back();
    }
    images[i].pixels = img->const_data_ptr<uint8_t>();
    images[i].row_stride = img->size(0) > 1 ? img->stride(0) : 3 * img->size(1);
    images[i].height = static_cast<int32_t>(t.size(0));
    images[i].width = static_cast<int32_t>(t.size(1));
  }
  return images;
}

// Validates what both forms share (boxes, flip, size, normalisation, resize) against the table's
// image sizes, and completes the table and the parameters. boxes, flip and resize are host
// tensors: parameters are planned on the host, as the loader draws them there.
inline void check_resized_crop_params(const at::Tensor& boxes, const at::Tensor& flip, at::IntArrayRef size,
                                      at::ArrayRef<double> mean, at::ArrayRef<double> std, bool antialias,
                                      at::ScalarType out_dtype, bool channels_last,
                                      const std::optional<at::Tensor>& resize, std::vector<ResizedCropImage>& images,
                                      ResizedCropParams* params) {
  const int64_t n = static_cast<int64_t>(images.size());
  TORCH_CHECK(boxes.device().is_cpu() && boxes.scalar_type() == at::kLong && boxes.dim() == 2 && boxes.size(0) == n &&
                  boxes.size(1) == 4,
              "resized_crop: boxes must be a CPU int64 [N, 4] tensor (top, left, height, width) with N = ", n,
              ", got ", boxes.scalar_type(), " ", boxes.sizes(), " on ", boxes.device());
  TORCH_CHECK(flip.device().is_cpu() && flip.scalar_type() == at::kBool && flip.dim() == 1 && flip.size(0) == n,
              "resized_crop: flip must be a CPU bool [N] tensor with N = ", n, ", got ", flip.scalar_type(), " ",
              flip.sizes(), " on ", flip.device());
  TORCH_CHECK(size.size() == 2 && size[0] > 0 && size[1] > 0 && size[0] <= INT32_MAX && size[1] <= INT32_MAX,
              "resized_crop: size must be two positive ints (height, width), got ", size);
  TORCH_CHECK(mean.size() == 3 && std.size() == 3, "resized_crop: mean and std must have 3 values, got ", mean.size(),
              " and ", std.size());
  const OutDType dtype = to_out_dtype(out_dtype);
  params->n = n;
  params->out_h = static_cast<int32_t>(size[0]);
  params->out_w = static_cast<int32_t>(size[1]);
  params->antialias = antialias;
  params->channels_last = channels_last;
  params->dtype = dtype;
  for (int c = 0; c < 3; ++c) {
    TORCH_CHECK(std[c] != 0.0, "resized_crop: std must be non-zero, got ", std);
    params->scale[c] = static_cast<float>(1.0 / (255.0 * std[c]));
    params->shift[c] = static_cast<float>(-mean[c] / std[c]);
  }
  at::Tensor resize_c;
  if (resize.has_value()) {
    TORCH_CHECK(resize->device().is_cpu() && resize->scalar_type() == at::kLong && resize->dim() == 2 &&
                    resize->size(0) == n && resize->size(1) == 4,
                "resized_crop: resize must be a CPU int64 [N, 4] tensor (height, width, top, left), got ",
                resize->scalar_type(), " ", resize->sizes(), " on ", resize->device());
    resize_c = resize->contiguous();
  }
  const at::Tensor boxes_c = boxes.contiguous(), flip_c = flip.contiguous();
  const int64_t* bx = boxes_c.const_data_ptr<int64_t>();
  const bool* fl = flip_c.const_data_ptr<bool>();
  const int64_t* rs = resize.has_value() ? resize_c.const_data_ptr<int64_t>() : nullptr;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t h = images[i].height, w = images[i].width;
    const int64_t top = bx[4 * i], left = bx[4 * i + 1], bh = bx[4 * i + 2], bw = bx[4 * i + 3];
    // Written as differences: a sum of two huge int64s would wrap and pass (-fwrapv).
    TORCH_CHECK(bh > 0 && bw > 0 && top >= 0 && left >= 0 && bh <= h && bw <= w && top <= h - bh && left <= w - bw,
                "resized_crop: box ", i,
                " (top ", top, ", left ", left, ", height ", bh, ", width ", bw, ") is not inside its ", h, "x", w,
                " image");
    int64_t rh = size[0], rw = size[1], wy = 0, wx = 0;
    if (rs != nullptr) {
      rh = rs[4 * i], rw = rs[4 * i + 1], wy = rs[4 * i + 2], wx = rs[4 * i + 3];
      TORCH_CHECK(rh > 0 && rw > 0 && rh <= INT32_MAX && rw <= INT32_MAX && wy >= 0 && wx >= 0 && wy <= rh - size[0] &&
                      wx <= rw - size[1],
                  "resized_crop: resize ", i, " (", rh, "x", rw, ", window at ", wy, ",", wx, ") does not contain a ",
                  size[0], "x", size[1], " window");
    }
    images[i].y = AxisMap{static_cast<int32_t>(top), static_cast<int32_t>(bh), static_cast<int32_t>(rh),
                          static_cast<int32_t>(wy)};
    images[i].x = AxisMap{static_cast<int32_t>(left), static_cast<int32_t>(bw), static_cast<int32_t>(rw),
                          static_cast<int32_t>(wx)};
    images[i].flip = fl[i] ? 1 : 0;
    images[i].reserved = 0;
  }
}

inline at::Tensor empty_resized_crop_output(at::Device device, const ResizedCropParams& p, at::ScalarType dtype) {
  const auto format = p.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  if (device.is_cpu()) return empty_cpu_output({p.n, 3, p.out_h, p.out_w}, dtype, format);
  return at::empty({p.n, 3, p.out_h, p.out_w}, at::TensorOptions().device(device).dtype(dtype), format);
}

// The kernels write every element of a dense buffer of the functional op's exact shape, dtype
// and layout; anything else (a view with gaps, the other memory format) would be written wrong.
// `inputs` are the tensors the kernel reads pixels from: out must not overlap them.
inline void check_resized_crop_out(const at::Tensor& out, at::TensorList inputs, const ResizedCropParams& p,
                                   at::ScalarType dtype) {
  TORCH_CHECK(out.device() == inputs[0].device(), "resized_crop: out is on ", out.device(), " but the images are on ",
              inputs[0].device());
  TORCH_CHECK(out.scalar_type() == dtype, "resized_crop: out has dtype ", out.scalar_type(), " but out_dtype is ",
              dtype);
  TORCH_CHECK(out.layout() == at::kStrided, "resized_crop: out must be a strided (dense) tensor, got ", out.layout());
  TORCH_CHECK(out.sizes() == at::IntArrayRef({p.n, 3, p.out_h, p.out_w}), "resized_crop: out must have shape [", p.n,
              ", 3, ", p.out_h, ", ", p.out_w, "], got ", out.sizes());
  const auto format = p.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  TORCH_CHECK(out.is_contiguous(format), "resized_crop: out must be ",
              p.channels_last ? "channels_last" : "NCHW", "-contiguous (channels_last=", p.channels_last,
              "), got strides ", out.strides());
  if (out.numel() == 0) return;
  for (size_t i = 0; i < inputs.size(); ++i) {
    // Views of other memory never overlap; get_overlap_status answers TooHard for any strided view.
    if (!out.storage().is_alias_of(inputs[i].storage())) continue;
    TORCH_CHECK(at::get_overlap_status(out, inputs[i]) == at::MemOverlapStatus::No,
                "resized_crop: out overlaps the image data", inputs.size() > 1 ? " of image " : "",
                inputs.size() > 1 ? std::to_string(i) : std::string());
  }
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
