#include <cuda_runtime.h>

#include "bridgedfast/mix_images_grid.h"

namespace bridgedfast {
namespace {

template <typename S, bool kVector>
__global__ void mix_images_kernel(MixImagesGridArgs args) {
  mix_images_thread<S, kVector>(args, as_dim3(blockIdx), as_dim3(threadIdx), as_dim3(gridDim));
}

template <typename S>
cudaError_t launch(const MixImagesGridArgs& args, cudaStream_t stream) {
  const ImageBatchShape& s = args.shape;
  if (s.n * s.c * s.h * s.w == 0) return cudaSuccess;
  const bool vectorised = mix_can_vectorise<S>(args);
  const LaunchConfig c = mix_images_launch<S>(s, vectorised);
  if (vectorised) {
    mix_images_kernel<S, true><<<as_cuda_dim3(c.grid), as_cuda_dim3(c.block), 0, stream>>>(args);
  } else {
    mix_images_kernel<S, false><<<as_cuda_dim3(c.grid), as_cuda_dim3(c.block), 0, stream>>>(args);
  }
  return cudaGetLastError();
}

}  // namespace

int mix_images_cuda(OutDType dtype, const void* x, void* out, const ImageBatchShape& shape, const float* lam,
                    const int32_t* boxes, void* stream) {
  if (shape.h > INT32_MAX || mix_rows(shape) > INT32_MAX) return static_cast<int>(cudaErrorInvalidValue);
  cudaError_t err = cudaErrorInvalidValue;
  const MixImagesGridArgs args{x, out, shape, lam, boxes};
  dispatch_out_dtype(dtype, [&](auto tag) { err = launch<decltype(tag)>(args, static_cast<cudaStream_t>(stream)); });
  return static_cast<int>(err);
}

}  // namespace bridgedfast
