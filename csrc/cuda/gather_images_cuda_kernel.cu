#include <cuda_runtime.h>

#include "bridgedfast/gather_images_grid.h"

namespace bridgedfast {
namespace {

__global__ void gather_images_kernel(GatherImagesGridArgs args) {
  gather_images_thread(args, as_dim3(blockIdx), as_dim3(threadIdx), as_dim3(gridDim), as_dim3(blockDim));
}

}  // namespace

int gather_images_cuda(const GatherSources& sources, const GatherItem* items, int64_t n, int64_t max_nbytes,
                       uint8_t* out, void* stream) {
  if (n == 0 || max_nbytes == 0) return static_cast<int>(cudaSuccess);
  const LaunchConfig c = gather_images_launch(n, max_nbytes);
  gather_images_kernel<<<as_cuda_dim3(c.grid), as_cuda_dim3(c.block), 0, static_cast<cudaStream_t>(stream)>>>(
      GatherImagesGridArgs{sources, items, n, out});
  return static_cast<int>(cudaGetLastError());
}

}  // namespace bridgedfast
