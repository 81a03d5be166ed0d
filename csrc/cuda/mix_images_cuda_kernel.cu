#include <cuda_runtime.h>

#include "bridgedfast/mix_images.h"

namespace bridgedfast {
namespace {

// One thread per element in memory order, so loads and stores coalesce in either layout.
template <typename S, bool kChannelsLast>
__global__ void mix_images_kernel(const typename S::type* __restrict__ x, typename S::type* __restrict__ out,
                                  ImageBatchShape s, const float* __restrict__ lam,
                                  const int32_t* __restrict__ boxes) {
  const int64_t image = s.c * s.h * s.w;
  const int64_t total = s.n * image;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t n = i / image;
    const int64_t within = i - n * image;
    int64_t y, xx;
    if (kChannelsLast) {
      xx = (within / s.c) % s.w;
      y = within / (s.c * s.w);
    } else {
      xx = within % s.w;
      y = (within / s.w) % s.h;
    }
    const int64_t j = s.n - 1 - n;
    const float self = S::load(x[i]);
    const float partner = S::load(x[j * image + within]);
    out[i] = S::store(mix_value(self, partner, lam[n], in_mix_box(boxes + 4 * n, y, xx)));
  }
}

template <typename S>
cudaError_t launch(const void* x, void* out, const ImageBatchShape& s, const float* lam,
                   const int32_t* boxes, cudaStream_t stream) {
  using T = typename S::type;
  const int64_t total = s.n * s.c * s.h * s.w;
  if (total == 0) return cudaSuccess;
  const int threads = 256;
  const int64_t blocks = (total + threads - 1) / threads;
  const unsigned grid = static_cast<unsigned>(blocks < 65535 * 8 ? blocks : 65535 * 8);
  if (s.channels_last) {
    mix_images_kernel<S, true><<<grid, threads, 0, stream>>>(static_cast<const T*>(x), static_cast<T*>(out), s,
                                                             lam, boxes);
  } else {
    mix_images_kernel<S, false><<<grid, threads, 0, stream>>>(static_cast<const T*>(x), static_cast<T*>(out), s,
                                                              lam, boxes);
  }
  return cudaGetLastError();
}

}  // namespace

int mix_images_cuda(OutDType dtype, const void* x, void* out, const ImageBatchShape& shape,
                    const float* lam, const int32_t* boxes, void* stream) {
  cudaError_t err = cudaErrorInvalidValue;
  dispatch_out_dtype(dtype, [&](auto tag) {
    err = launch<decltype(tag)>(x, out, shape, lam, boxes, static_cast<cudaStream_t>(stream));
  });
  return static_cast<int>(err);
}

}  // namespace bridgedfast
