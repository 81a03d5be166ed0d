#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common.h"

namespace bridgedfast {
namespace {

void gather_images_cuda_op(at::TensorList sources, const at::Tensor& items, const at::Tensor& out) {
  const at::Tensor items_c = check_gather_images_inputs(sources, items, out);
  TORCH_CHECK(static_cast<int64_t>(sources.size()) <= kMaxGatherSources, "gather_images: at most ",
              kMaxGatherSources, " sources on CUDA, got ", sources.size());
  const int64_t n = items_c.size(0);
  if (n == 0) return;
  const c10::cuda::CUDAGuard guard(out.device());
  GatherSources ptrs{};
  for (size_t s = 0; s < sources.size(); ++s) ptrs.ptr[s] = sources[s].const_data_ptr<uint8_t>();
  const int64_t max_nbytes = items_c.select(1, 2).max().item<int64_t>();
  // Up through pinned memory, asynchronously on the current stream: a blocking copy would wait
  // for all earlier work on the stream (the loader's previous batch) on every call. The caching
  // host allocator keeps the pinned block until the copy has run.
  at::Tensor items_pinned = at::empty(items_c.sizes(), items_c.options().pinned_memory(true));
  items_pinned.copy_(items_c);
  const at::Tensor items_dev = items_pinned.to(out.device(), /*non_blocking=*/true);
  const auto* dev_items = reinterpret_cast<const GatherItem*>(items_dev.const_data_ptr<int64_t>());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream().stream();
  const int err = gather_images_cuda(ptrs, dev_items, n, max_nbytes, out.mutable_data_ptr<uint8_t>(), stream);
  TORCH_CHECK(err == 0, "gather_images: CUDA launch failed: ", cudaGetErrorString(static_cast<cudaError_t>(err)));
}

}  // namespace

TORCH_LIBRARY_IMPL(bridgedfast, CUDA, m) { m.impl("gather_images", &gather_images_cuda_op); }

}  // namespace bridgedfast
