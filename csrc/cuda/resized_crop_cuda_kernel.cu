#include <cuda_runtime.h>

#include "bridgedfast/resized_crop_grid.h"

namespace bridgedfast {
namespace {

template <typename S>
__global__ void __launch_bounds__(kTileThreads) resized_crop_tile_kernel(ResizedCropGridArgs args) {
  __shared__ ResizedCropTileShared shared;
  DeviceBlock<ResizedCropTileThread> block;
  resized_crop_tile_block<S>(block, args, as_dim3(blockIdx), as_dim3(gridDim), shared);
}

template <typename S>
__global__ void resized_crop_direct_kernel(ResizedCropGridArgs args) {
  resized_crop_direct_thread<S>(args, as_dim3(blockIdx), as_dim3(threadIdx), as_dim3(gridDim));
}

template <typename S>
cudaError_t launch(const ResizedCropPlan& plan, const ResizedCropGridArgs& args, cudaStream_t stream) {
  if (plan.tile) {
    const LaunchConfig c = resized_crop_tile_launch(args.p);
    resized_crop_tile_kernel<S><<<as_cuda_dim3(c.grid), as_cuda_dim3(c.block), 0, stream>>>(args);
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  if (plan.direct) {
    const LaunchConfig c = resized_crop_direct_launch(args.p);
    resized_crop_direct_kernel<S><<<as_cuda_dim3(c.grid), as_cuda_dim3(c.block), 0, stream>>>(args);
  }
  return cudaGetLastError();
}

}  // namespace

int resized_crop_cuda(const ResizedCropImage* host_images, const ResizedCropImage* device_images,
                      const ResizedCropParams& params, void* out, void* stream) {
  if (params.n == 0 || params.out_h == 0 || params.out_w == 0) return 0;
  const ResizedCropPlan plan = plan_resized_crop(host_images, params);
  const ResizedCropGridArgs args = resized_crop_grid_args(device_images, params, out);
  cudaError_t err = cudaErrorInvalidValue;
  dispatch_out_dtype(params.dtype, [&](auto tag) {
    err = launch<decltype(tag)>(plan, args, static_cast<cudaStream_t>(stream));
  });
  return static_cast<int>(err);
}

}  // namespace bridgedfast
