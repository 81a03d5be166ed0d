#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cstring>

#include "common.h"

namespace bridgedfast {
namespace {

// The per-image table goes up through pinned memory so the copy is asynchronous on the current
// stream; the caching host allocator keeps the pinned block until the copy has run. The
// launcher reads which kernels the batch needs from the host copy.
void run_resized_crop_cuda(at::Device device, const std::vector<ResizedCropImage>& images,
                           const ResizedCropParams& params, at::Tensor& out) {
  if (params.n == 0) return;
  const c10::cuda::CUDAGuard guard(device);
  const int64_t table_bytes = static_cast<int64_t>(images.size() * sizeof(ResizedCropImage));
  at::Tensor host_table = at::empty({table_bytes}, at::TensorOptions().dtype(at::kByte).pinned_memory(true));
  std::memcpy(host_table.mutable_data_ptr(), images.data(), table_bytes);
  const at::Tensor table = host_table.to(device, /*non_blocking=*/true);
  const int err = resized_crop_cuda(images.data(), reinterpret_cast<const ResizedCropImage*>(table.const_data_ptr()),
                                    params, out.mutable_data_ptr(), at::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == 0, "resized_crop: CUDA launch failed: ", cudaGetErrorString(static_cast<cudaError_t>(err)));
}

struct ResizedCropCall {
  std::vector<ResizedCropImage> images;
  ResizedCropParams params{};
  std::vector<at::Tensor> keep;  // contiguous copies of list images with unusual strides
};

ResizedCropCall packed_call(const at::Tensor& data, const at::Tensor& index, const at::Tensor& boxes,
                            const at::Tensor& flip, at::IntArrayRef size, at::ArrayRef<double> mean,
                            at::ArrayRef<double> std, bool antialias, at::ScalarType out_dtype, bool channels_last,
                            const std::optional<at::Tensor>& resize) {
  TORCH_CHECK(data.is_cuda(), "resized_crop: data must be on a CUDA device for the CUDA kernel, got ", data.device());
  ResizedCropCall call;
  call.images = packed_resized_crop_images(data, index);
  check_resized_crop_params(boxes, flip, size, mean, std, antialias, out_dtype, channels_last, resize, call.images,
                            &call.params);
  return call;
}

ResizedCropCall list_call(at::TensorList images, const at::Tensor& boxes, const at::Tensor& flip, at::IntArrayRef size,
                          at::ArrayRef<double> mean, at::ArrayRef<double> std, bool antialias, at::ScalarType out_dtype,
                          bool channels_last, const std::optional<at::Tensor>& resize) {
  TORCH_CHECK(!images.empty(), "resized_crop: images must not be empty");
  const c10::cuda::CUDAGuard guard(images[0].device());  // copies of odd-strided images go there
  ResizedCropCall call;
  call.images = list_resized_crop_images(images, &call.keep);
  TORCH_CHECK(images[0].is_cuda(), "resized_crop: images must be on a CUDA device for the CUDA kernel, got ",
              images[0].device());
  check_resized_crop_params(boxes, flip, size, mean, std, antialias, out_dtype, channels_last, resize, call.images,
                            &call.params);
  return call;
}

at::Tensor resized_crop_cuda_op(const at::Tensor& data, const at::Tensor& index, const at::Tensor& boxes,
                                const at::Tensor& flip, at::IntArrayRef size, at::ArrayRef<double> mean,
                                at::ArrayRef<double> std, bool antialias, at::ScalarType out_dtype, bool channels_last,
                                const std::optional<at::Tensor>& resize) {
  const ResizedCropCall c =
      packed_call(data, index, boxes, flip, size, mean, std, antialias, out_dtype, channels_last, resize);
  at::Tensor out = empty_resized_crop_output(data.device(), c.params, out_dtype);
  run_resized_crop_cuda(data.device(), c.images, c.params, out);
  return out;
}

void resized_crop_into_cuda_op(const at::Tensor& data, const at::Tensor& index, const at::Tensor& boxes,
                               const at::Tensor& flip, at::IntArrayRef size, at::ArrayRef<double> mean,
                               at::ArrayRef<double> std, bool antialias, at::ScalarType out_dtype,
                               bool channels_last, const std::optional<at::Tensor>& resize, at::Tensor& out) {
  const ResizedCropCall c =
      packed_call(data, index, boxes, flip, size, mean, std, antialias, out_dtype, channels_last, resize);
  check_resized_crop_out(out, data, c.params, out_dtype);
  run_resized_crop_cuda(data.device(), c.images, c.params, out);
}

at::Tensor resized_crop_list_cuda_op(at::TensorList images, const at::Tensor& boxes, const at::Tensor& flip,
                                     at::IntArrayRef size, at::ArrayRef<double> mean, at::ArrayRef<double> std,
                                     bool antialias, at::ScalarType out_dtype, bool channels_last,
                                     const std::optional<at::Tensor>& resize) {
  const ResizedCropCall c =
      list_call(images, boxes, flip, size, mean, std, antialias, out_dtype, channels_last, resize);
  at::Tensor out = empty_resized_crop_output(images[0].device(), c.params, out_dtype);
  run_resized_crop_cuda(images[0].device(), c.images, c.params, out);
  return out;
}

void resized_crop_list_into_cuda_op(at::TensorList images, const at::Tensor& boxes, const at::Tensor& flip,
                                    at::IntArrayRef size, at::ArrayRef<double> mean, at::ArrayRef<double> std,
                                    bool antialias, at::ScalarType out_dtype, bool channels_last,
                                    const std::optional<at::Tensor>& resize, at::Tensor& out) {
  const ResizedCropCall c =
      list_call(images, boxes, flip, size, mean, std, antialias, out_dtype, channels_last, resize);
  check_resized_crop_out(out, images, c.params, out_dtype);
  run_resized_crop_cuda(images[0].device(), c.images, c.params, out);
}

}  // namespace

TORCH_LIBRARY_IMPL(bridgedfast, CUDA, m) {
  m.impl("resized_crop", &resized_crop_cuda_op);
  m.impl("resized_crop_into", &resized_crop_into_cuda_op);
  m.impl("resized_crop_list", &resized_crop_list_cuda_op);
  m.impl("resized_crop_list_into", &resized_crop_list_into_cuda_op);
}

}  // namespace bridgedfast
