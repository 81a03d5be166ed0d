#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common.h"

namespace bridgedfast {
namespace {

void run_mix_images_cuda(const at::Tensor& input, const at::Tensor& lam, const at::Tensor& boxes,
                         const ImageBatchShape& shape, at::Tensor& out) {
  const at::Tensor lam_c = lam.contiguous();
  const at::Tensor boxes_c = boxes.contiguous();
  const int err = mix_images_cuda(to_out_dtype(input.scalar_type()), input.const_data_ptr(), out.mutable_data_ptr(),
                                  shape, lam_c.const_data_ptr<float>(), boxes_c.const_data_ptr<int32_t>(),
                                  at::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == 0, "mix_images: CUDA launch failed: ", cudaGetErrorString(static_cast<cudaError_t>(err)));
}

at::Tensor mix_images_cuda_op(const at::Tensor& x, const at::Tensor& lam, const at::Tensor& boxes) {
  ImageBatchShape shape{};
  const at::Tensor input = check_mix_images_inputs(x, lam, boxes, &shape);
  const c10::cuda::CUDAGuard guard(input.device());
  at::Tensor out = at::empty_like(input);
  run_mix_images_cuda(input, lam, boxes, shape, out);
  return out;
}

at::Tensor& mix_images_out_cuda_op(const at::Tensor& x, const at::Tensor& lam, const at::Tensor& boxes,
                                   at::Tensor& out) {
  ImageBatchShape shape{};
  const at::Tensor input = check_mix_images_inputs(x, lam, boxes, &shape);
  check_mix_images_out(out, input, shape);
  const c10::cuda::CUDAGuard guard(input.device());
  run_mix_images_cuda(input, lam, boxes, shape, out);
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(bridgedfast, CUDA, m) {
  m.impl("mix_images", &mix_images_cuda_op);
  m.impl("mix_images.out", &mix_images_out_cuda_op);
}

}  // namespace bridgedfast
