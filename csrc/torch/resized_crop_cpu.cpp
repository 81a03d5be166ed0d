#include <torch/library.h>

#include "common.h"

namespace bridgedfast {
namespace {

void resized_crop_into_cpu_op(const at::Tensor& data, const at::Tensor& index, const at::Tensor& boxes,
                              const at::Tensor& flip, at::IntArrayRef size, at::ArrayRef<double> mean,
                              at::ArrayRef<double> std, bool antialias, at::ScalarType out_dtype,
                              bool channels_last, const std::optional<at::Tensor>& resize, at::Tensor& out) {
  TORCH_CHECK(data.device().is_cpu(), "resized_crop: data must be on the CPU for the CPU kernel, got ", data.device());
  ResizedCropParams params{};
  const std::vector<ResizedCropImage> images = check_resized_crop_inputs(
      data, index, boxes, flip, size, mean, std, antialias, out_dtype, channels_last, resize, &params);
  check_resized_crop_out(out, data, params, out_dtype);
  resized_crop_cpu(data.const_data_ptr<uint8_t>(), images.data(), params, out.mutable_data_ptr());
}

at::Tensor resized_crop_cpu_op(const at::Tensor& data, const at::Tensor& index, const at::Tensor& boxes,
                               const at::Tensor& flip, at::IntArrayRef size, at::ArrayRef<double> mean,
                               at::ArrayRef<double> std, bool antialias, at::ScalarType out_dtype, bool channels_last,
                               const std::optional<at::Tensor>& resize) {
  TORCH_CHECK(data.device().is_cpu(), "resized_crop: data must be on the CPU for the CPU kernel, got ", data.device());
  ResizedCropParams params{};
  const std::vector<ResizedCropImage> images = check_resized_crop_inputs(
      data, index, boxes, flip, size, mean, std, antialias, out_dtype, channels_last, resize, &params);
  at::Tensor out = empty_resized_crop_output(data, params, out_dtype);
  advise_huge_pages(out.mutable_data_ptr(), out.nbytes());
  resized_crop_cpu(data.const_data_ptr<uint8_t>(), images.data(), params, out.mutable_data_ptr());
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(bridgedfast, CPU, m) {
  m.impl("resized_crop", &resized_crop_cpu_op);
  m.impl("resized_crop_into", &resized_crop_into_cpu_op);
}

}  // namespace bridgedfast
