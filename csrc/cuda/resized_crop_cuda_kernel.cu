#include <cuda_runtime.h>

#include "bridgedfast/resized_crop.h"

namespace bridgedfast {
namespace {

// Workspace layout: for each image, out_h row entries then out_w column entries, each with a
// start, a count and max_taps weights.
struct TapTables {
  int32_t* start;
  int32_t* count;
  float* weight;
};

__host__ __device__ inline TapTables tap_tables(void* workspace, int64_t entries, int max_taps) {
  char* base = static_cast<char*>(workspace);
  TapTables t;
  t.weight = reinterpret_cast<float*>(base);
  t.start = reinterpret_cast<int32_t*>(base + entries * max_taps * sizeof(float));
  t.count = t.start + entries;
  return t;
}

// One thread per (image, row or column): the same axis_taps() the CPU kernel uses.
__global__ void build_taps_kernel(const ResizedCropImage* __restrict__ images, ResizedCropParams p, int max_taps,
                                  TapTables t) {
  const int64_t per_image = static_cast<int64_t>(p.out_h) + p.out_w;
  const int64_t entries = p.n * per_image;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < entries;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const ResizedCropImage im = images[e / per_image];
    const int64_t i = e % per_image;
    int32_t start = 0;
    int count;
    if (i < p.out_h) {
      count = axis_taps(im.y, p.antialias, i + im.y.window_start, &start, t.weight + e * max_taps);
    } else {
      count = axis_taps(im.x, p.antialias, resized_column(im, i - p.out_h, p.out_w), &start, t.weight + e * max_taps);
    }
    t.start[e] = start;
    t.count[e] = count;
  }
}

// One thread per output pixel: the separable sum over its row taps of its column taps, all
// three channels at once (they sit together in HWC), normalised and stored once.
template <typename S, bool kChannelsLast>
__global__ void resized_crop_kernel(const uint8_t* __restrict__ data, const ResizedCropImage* __restrict__ images,
                                    ResizedCropParams p, int max_taps, TapTables t,
                                    typename S::type* __restrict__ out) {
  const int64_t ox = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (ox >= p.out_w) return;
  const int64_t per_image = static_cast<int64_t>(p.out_h) + p.out_w;
  const int64_t plane = static_cast<int64_t>(p.out_h) * p.out_w;
  // Grid-stride over images and rows: grid.z and grid.y stop at 65535.
  const int64_t oy_first = blockIdx.y * static_cast<int64_t>(blockDim.y) + threadIdx.y;
  const int64_t oy_stride = static_cast<int64_t>(gridDim.y) * blockDim.y;
  for (int64_t n = blockIdx.z; n < p.n; n += gridDim.z) {
    for (int64_t oy = oy_first; oy < p.out_h; oy += oy_stride) {
      const ResizedCropImage& im = images[n];
      const uint8_t* src = data + im.offset;
      const int64_t row_bytes = 3 * static_cast<int64_t>(im.width);
      const int64_t ye = n * per_image + oy;
      const int64_t xe = n * per_image + p.out_h + ox;
      const int y0 = t.start[ye], ny = t.count[ye];
      const int x0 = t.start[xe], nx = t.count[xe];
      const float* wy = t.weight + ye * max_taps;
      const float* wx = t.weight + xe * max_taps;
      float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f;
      for (int ky = 0; ky < ny; ++ky) {
        const uint8_t* row = src + (y0 + ky) * row_bytes + 3 * static_cast<int64_t>(x0);
        float r0 = 0.0f, r1 = 0.0f, r2 = 0.0f;
        for (int kx = 0; kx < nx; ++kx) {
          const float w = wx[kx];
          r0 += w * static_cast<float>(__ldg(row + 3 * kx));
          r1 += w * static_cast<float>(__ldg(row + 3 * kx + 1));
          r2 += w * static_cast<float>(__ldg(row + 3 * kx + 2));
        }
        const float w = wy[ky];
        a0 += w * r0;
        a1 += w * r1;
        a2 += w * r2;
      }
      const float v0 = a0 * p.scale[0] + p.shift[0];
      const float v1 = a1 * p.scale[1] + p.shift[1];
      const float v2 = a2 * p.scale[2] + p.shift[2];
      typename S::type* dst = out + n * 3 * plane;
      if (kChannelsLast) {
        const int64_t o = 3 * (oy * p.out_w + ox);
        dst[o] = S::store(v0);
        dst[o + 1] = S::store(v1);
        dst[o + 2] = S::store(v2);
      } else {
        const int64_t o = oy * p.out_w + ox;
        dst[o] = S::store(v0);
        dst[o + plane] = S::store(v1);
        dst[o + 2 * plane] = S::store(v2);
      }
    }
  }
}

template <typename S>
cudaError_t launch(const uint8_t* data, const ResizedCropImage* images, const ResizedCropParams& p, int max_taps,
                   void* workspace, void* out, cudaStream_t stream) {
  using T = typename S::type;
  const int64_t entries = p.n * (static_cast<int64_t>(p.out_h) + p.out_w);
  const TapTables t = tap_tables(workspace, entries, max_taps);
  {
    const int threads = 256;
    const int64_t blocks = (entries + threads - 1) / threads;
    build_taps_kernel<<<static_cast<unsigned>(blocks < 65535 * 8 ? blocks : 65535 * 8), threads, 0, stream>>>(
        images, p, max_taps, t);
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  const dim3 block(32, 8);
  const int64_t row_blocks = (p.out_h + block.y - 1) / block.y;
  const dim3 grid(static_cast<unsigned>((p.out_w + block.x - 1) / block.x),
                  static_cast<unsigned>(row_blocks < 65535 ? row_blocks : 65535),
                  static_cast<unsigned>(p.n < 65535 ? p.n : 65535));
  if (p.channels_last) {
    resized_crop_kernel<S, true><<<grid, block, 0, stream>>>(data, images, p, max_taps, t, static_cast<T*>(out));
  } else {
    resized_crop_kernel<S, false><<<grid, block, 0, stream>>>(data, images, p, max_taps, t, static_cast<T*>(out));
  }
  return cudaGetLastError();
}

}  // namespace

int64_t resized_crop_cuda_workspace_bytes(const ResizedCropParams& params, int max_taps) {
  const int64_t entries = params.n * (static_cast<int64_t>(params.out_h) + params.out_w);
  return entries * (static_cast<int64_t>(max_taps) * sizeof(float) + 2 * sizeof(int32_t));
}

int resized_crop_cuda(const uint8_t* data, const ResizedCropImage* images, const ResizedCropParams& params,
                      int max_taps, void* workspace, void* out, void* stream) {
  if (params.n == 0 || params.out_h == 0 || params.out_w == 0) return 0;
  cudaError_t err = cudaErrorInvalidValue;
  dispatch_out_dtype(params.dtype, [&](auto tag) {
    err = launch<decltype(tag)>(data, images, params, max_taps, workspace, out, static_cast<cudaStream_t>(stream));
  });
  return static_cast<int>(err);
}

}  // namespace bridgedfast
