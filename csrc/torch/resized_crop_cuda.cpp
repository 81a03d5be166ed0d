#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cstring>

#include "common.h"

namespace bridgedfast {
namespace {

void run_resized_crop_cuda(const at::Tensor& data, const std::vector<ResizedCropImage>& images,
                           const ResizedCropParams& params, bool antialias, at::Tensor& out) {
  if (params.n == 0) return;
  int max_taps = 1;
  for (const auto& im : images) {
    max_taps = std::max({max_taps, axis_max_taps(im.y, antialias), axis_max_taps(im.x, antialias)});
  }
  // The per-image table goes up through pinned memory so the copy is asynchronous on the
  // current stream; the caching host allocator keeps it alive until the copy has run.
  const int64_t table_bytes = static_cast<int64_t>(images.size() * sizeof(ResizedCropImage));
  at::Tensor host_table = at::empty({table_bytes}, at::TensorOptions().dtype(at::kByte).pinned_memory(true));
  std::memcpy(host_table.mutable_data_ptr(), images.data(), table_bytes);
  const at::Tensor table = host_table.to(data.device(), /*non_blocking=*/true);
  at::Tensor workspace =
      at::empty({resized_crop_cuda_workspace_bytes(params, max_taps)}, data.options().dtype(at::kByte));
  const int err = resized_crop_cuda(data.const_data_ptr<uint8_t>(),
                                    reinterpret_cast<const ResizedCropImage*>(table.const_data_ptr()), params,
                                    max_taps, workspace.mutable_data_ptr(), out.mutable_data_ptr(),
                                    at::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == 0, "resized_crop: CUDA launch failed: ", cudaGetErrorString(static_cast<cudaError_t>(err)));
}

at::Tensor resized_crop_cuda_op(const at::Tensor& data, const at::Tensor& index, const at::Tensor& boxes,
                                const at::Tensor& flip, at::IntArrayRef size, at::ArrayRef<double> mean,
                                at::ArrayRef<double> std, bool antialias, at::ScalarType out_dtype, bool channels_last,
                                const std::optional<at::Tensor>& resize) {
  TORCH_CHECK(data.is_cuda(), "resized_crop: data must be on a CUDA device for the CUDA kernel, got ", data.device());
  ResizedCropParams params{};
  const std::vector<ResizedCropImage> images = check_resized_crop_inputs(
      data, index, boxes, flip, size, mean, std, antialias, out_dtype, channels_last, resize, &params);
  const c10::cuda::CUDAGuard guard(data.device());
  at::Tensor out = empty_resized_crop_output(data, params, out_dtype);
  run_resized_crop_cuda(data, images, params, antialias, out);
  return out;
}

void resized_crop_into_cuda_op(const at::Tensor& data, const at::Tensor& index, const at::Tensor& boxes,
                               const at::Tensor& flip, at::IntArrayRef size, at::ArrayRef<double> mean,
                               at::ArrayRef<double> std, bool antialias, at::ScalarType out_dtype,
                               bool channels_last, const std::optional<at::Tensor>& resize, at::Tensor& out) {
  TORCH_CHECK(data.is_cuda(), "resized_crop: data must be on a CUDA device for the CUDA kernel, got ", data.device());
  ResizedCropParams params{};
  const std::vector<ResizedCropImage> images = check_resized_crop_inputs(
      data, index, boxes, flip, size, mean, std, antialias, out_dtype, channels_last, resize, &params);
  check_resized_crop_out(out, data, params, out_dtype);
  const c10::cuda::CUDAGuard guard(data.device());
  run_resized_crop_cuda(data, images, params, antialias, out);
}

}  // namespace

TORCH_LIBRARY_IMPL(bridgedfast, CUDA, m) {
  m.impl("resized_crop", &resized_crop_cuda_op);
  m.impl("resized_crop_into", &resized_crop_into_cuda_op);
}

}  // namespace bridgedfast
