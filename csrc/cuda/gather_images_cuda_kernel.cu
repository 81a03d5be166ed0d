#include <cuda_runtime.h>

#include "bridgedfast/gather_images.h"

namespace bridgedfast {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kBytesPerBlock = kThreads * 16 * 4;  // four 16-byte vectors per thread

// grid = (blocks per item, items). Each block copies a strided share of one item: 16-byte
// vectors when source and destination agree on alignment, bytes otherwise and at the ends.
__global__ void gather_images_kernel(GatherSources sources, const GatherItem* __restrict__ items,
                                     uint8_t* __restrict__ out) {
  const GatherItem it = items[blockIdx.y];
  const uint8_t* src = sources.ptr[it.source] + it.src_offset;
  uint8_t* dst = out + it.dst_offset;
  const int64_t n = it.nbytes;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const uintptr_t src_mis = reinterpret_cast<uintptr_t>(src) & 15u;
  const uintptr_t dst_mis = reinterpret_cast<uintptr_t>(dst) & 15u;
  if (src_mis == dst_mis) {
    const int64_t head = src_mis == 0 ? 0 : (16 - static_cast<int64_t>(src_mis)) < n ? 16 - static_cast<int64_t>(src_mis) : n;
    const int64_t vecs = (n - head) / 16;
    const int64_t tail = head + vecs * 16;
    for (int64_t k = tid; k < head; k += stride) dst[k] = src[k];
    const uint4* vsrc = reinterpret_cast<const uint4*>(src + head);
    uint4* vdst = reinterpret_cast<uint4*>(dst + head);
    for (int64_t k = tid; k < vecs; k += stride) vdst[k] = vsrc[k];
    for (int64_t k = tail + tid; k < n; k += stride) dst[k] = src[k];
  } else {
    for (int64_t k = tid; k < n; k += stride) dst[k] = src[k];
  }
}

}  // namespace

int gather_images_cuda(const GatherSources& sources, const GatherItem* items, int64_t n, int64_t max_nbytes,
                       uint8_t* out, void* stream) {
  if (n == 0 || max_nbytes == 0) return static_cast<int>(cudaSuccess);
  if (n > 65535) return static_cast<int>(cudaErrorInvalidValue);  // grid.y limit; the binding splits
  int64_t per_item = (max_nbytes + kBytesPerBlock - 1) / kBytesPerBlock;
  if (per_item > 1024) per_item = 1024;
  const dim3 grid(static_cast<unsigned>(per_item), static_cast<unsigned>(n));
  gather_images_kernel<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(sources, items, out);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace bridgedfast
