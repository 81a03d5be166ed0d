#include <torch/library.h>

#include "common.h"

namespace bridgedfast {
namespace {

// The checked table and parameters of one call, for either input form.
struct ResizedCropCall {
  std::vector<ResizedCropImage> images;
  ResizedCropParams params{};
  std::vector<at::Tensor> keep;  // contiguous copies of list images with unusual strides
};

ResizedCropCall packed_call(const at::Tensor& data, const at::Tensor& index, const at::Tensor& boxes,
                            const at::Tensor& flip, at::IntArrayRef size, at::ArrayRef<double> mean,
                            at::ArrayRef<double> std, bool antialias, at::ScalarType out_dtype, bool channels_last,
                            const std::optional<at::Tensor>& resize) {
  TORCH_CHECK(data.device().is_cpu(), "resized_crop: data must be on the CPU for the CPU kernel, got ", data.device());
  ResizedCropCall call;
  call.images = packed_resized_crop_images(data, index);
  check_resized_crop_params(boxes, flip, size, mean, std, antialias, out_dtype, channels_last, resize, call.images,
                            &call.params);
  return call;
}

ResizedCropCall list_call(at::TensorList images, const at::Tensor& boxes, const at::Tensor& flip, at::IntArrayRef size,
                          at::ArrayRef<double> mean, at::ArrayRef<double> std, bool antialias, at::ScalarType out_dtype,
                          bool channels_last, const std::optional<at::Tensor>& resize) {
  ResizedCropCall call;
  call.images = list_resized_crop_images(images, &call.keep);
  TORCH_CHECK(images[0].device().is_cpu(), "resized_crop: images must be on the CPU for the CPU kernel, got ",
              images[0].device());
  check_resized_crop_params(boxes, flip, size, mean, std, antialias, out_dtype, channels_last, resize, call.images,
                            &call.params);
  return call;
}

at::Tensor resized_crop_cpu_op(const at::Tensor& data, const at::Tensor& index, const at::Tensor& boxes,
                               const at::Tensor& flip, at::IntArrayRef size, at::ArrayRef<double> mean,
                               at::ArrayRef<double> std, bool antialias, at::ScalarType out_dtype, bool channels_last,
                               const std::optional<at::Tensor>& resize) {
  const ResizedCropCall c =
      packed_call(data, index, boxes, flip, size, mean, std, antialias, out_dtype, channels_last, resize);
  at::Tensor out = empty_resized_crop_output(data.device(), c.params, out_dtype);
  resized_crop_cpu(c.images.data(), c.params, out.mutable_data_ptr());
  return out;
}

void resized_crop_into_cpu_op(const at::Tensor& data, const at::Tensor& index, const at::Tensor& boxes,
                              const at::Tensor& flip, at::IntArrayRef size, at::ArrayRef<double> mean,
                              at::ArrayRef<double> std, bool antialias, at::ScalarType out_dtype,
                              bool channels_last, const std::optional<at::Tensor>& resize, at::Tensor& out) {
  const ResizedCropCall c =
      packed_call(data, index, boxes, flip, size, mean, std, antialias, out_dtype, channels_last, resize);
  check_resized_crop_out(out, data, c.params, out_dtype);
  resized_crop_cpu(c.images.data(), c.params, out.mutable_data_ptr());
}

at::Tensor resized_crop_list_cpu_op(at::TensorList images, const at::Tensor& boxes, const at::Tensor& flip,
                                    at::IntArrayRef size, at::ArrayRef<double> mean, at::ArrayRef<double> std,
                                    bool antialias, at::ScalarType out_dtype, bool channels_last,
                                    const std::optional<at::Tensor>& resize) {
  const ResizedCropCall c =
      list_call(images, boxes, flip, size, mean, std, antialias, out_dtype, channels_last, resize);
  at::Tensor out = empty_resized_crop_output(images[0].device(), c.params, out_dtype);
  resized_crop_cpu(c.images.data(), c.params, out.mutable_data_ptr());
  return out;
}

void resized_crop_list_into_cpu_op(at::TensorList images, const at::Tensor& boxes, const at::Tensor& flip,
                                   at::IntArrayRef size, at::ArrayRef<double> mean, at::ArrayRef<double> std,
                                   bool antialias, at::ScalarType out_dtype, bool channels_last,
                                   const std::optional<at::Tensor>& resize, at::Tensor& out) {
  const ResizedCropCall c =
      list_call(images, boxes, flip, size, mean, std, antialias, out_dtype, channels_last, resize);
  check_resized_crop_out(out, images, c.params, out_dtype);
  resized_crop_cpu(c.images.data(), c.params, out.mutable_data_ptr());
}

}  // namespace

TORCH_LIBRARY_IMPL(bridgedfast, CPU, m) {
  m.impl("resized_crop", &resized_crop_cpu_op);
  m.impl("resized_crop_into", &resized_crop_into_cpu_op);
  m.impl("resized_crop_list", &resized_crop_list_cpu_op);
  m.impl("resized_crop_list_into", &resized_crop_list_into_cpu_op);
}

}  // namespace bridgedfast
