// What a CUDA kernel's body needs to run on the CPU too: launch geometry as plain structs,
// and 16/8-byte vector loads and stores. The kernels in csrc/cuda are thin __global__ wrappers
// around BF_HOST_DEVICE functions of (arguments, block index, thread index[, shared tile]);
// tests/cpp/grid_emulator.h walks the same launch grid on the host and calls the same
// functions, so CI checks every kernel body without a GPU. Torch-free and CUDA-free.
#pragma once

#include <cstdint>
#include <cstring>

#include "dtype.h"
#include "macros.h"

#if !defined(__CUDA_ARCH__)
#include <cstdio>
#include <cstdlib>
#endif

namespace bridgedfast {

struct Dim3 {
  uint32_t x = 1, y = 1, z = 1;
};

// How a launcher starts a kernel: the emulator walks exactly this grid.
struct LaunchConfig {
  Dim3 grid;
  Dim3 block;
};

// The largest grid.y / grid.z a launch may use; kernels stride past it.
constexpr uint32_t kMaxGridYZ = 65535;
// The launchers also cap grid.x here and stride past it: more blocks than this would only
// queue behind the resident ones.
constexpr uint32_t kMaxGridX = 65535;

BF_HOST_DEVICE_INLINE uint32_t grid_cap(int64_t blocks, uint32_t cap) {
  return blocks < 1 ? 1u : blocks > cap ? cap : static_cast<uint32_t>(blocks);
}

BF_HOST_DEVICE_INLINE int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

#if defined(__CUDA_ARCH__)
#define BF_CHECK_ALIGNED(ptr, bytes)
#else
// A misaligned vector access faults on the GPU; the emulator stops on it instead of passing.
#define BF_CHECK_ALIGNED(ptr, bytes)                                                                  \
  do {                                                                                                \
    if (reinterpret_cast<uintptr_t>(ptr) % (bytes) != 0) {                                            \
      std::fprintf(stderr, "%s:%d: misaligned %d-byte vector access at %p\n", __FILE__, __LINE__,     \
                   static_cast<int>(bytes), static_cast<const void*>(ptr));                           \
      std::abort();                                                                                   \
    }                                                                                                 \
  } while (0)
#endif

// 16 bytes as four 32-bit words (one LDG.128 / STG.128 on the GPU).
struct Vec16 {
  uint32_t w[4];
};

BF_HOST_DEVICE_INLINE Vec16 load16(const void* src) {
  BF_CHECK_ALIGNED(src, 16);
  Vec16 v;
#if defined(__CUDA_ARCH__)
  const uint4 u = *reinterpret_cast<const uint4*>(src);
  v.w[0] = u.x, v.w[1] = u.y, v.w[2] = u.z, v.w[3] = u.w;
#else
  std::memcpy(&v, src, 16);
#endif
  return v;
}

BF_HOST_DEVICE_INLINE void store16(void* dst, const Vec16& v) {
  BF_CHECK_ALIGNED(dst, 16);
#if defined(__CUDA_ARCH__)
  *reinterpret_cast<uint4*>(dst) = make_uint4(v.w[0], v.w[1], v.w[2], v.w[3]);
#else
  std::memcpy(dst, &v, 16);
#endif
}

BF_HOST_DEVICE_INLINE void store8(void* dst, uint32_t lo, uint32_t hi) {
  BF_CHECK_ALIGNED(dst, 8);
#if defined(__CUDA_ARCH__)
  *reinterpret_cast<uint2*>(dst) = make_uint2(lo, hi);
#else
  const uint32_t v[2] = {lo, hi};
  std::memcpy(dst, v, 8);
#endif
}

#if defined(__CUDACC__)
// The GPU side of a block program (see resized_crop_tile_block): each thread runs the phase
// for itself, then the block synchronises. `state` is the thread's registers across phases.
template <typename State>
struct DeviceBlock {
  State state;
  template <typename F>
  __device__ __forceinline__ void phase(F&& f) {
    f(threadIdx.x, state);
    __syncthreads();
  }
};

__device__ __forceinline__ Dim3 as_dim3(const uint3& v) { return Dim3{v.x, v.y, v.z}; }
__device__ __forceinline__ Dim3 as_dim3(const dim3& v) { return Dim3{v.x, v.y, v.z}; }
inline dim3 as_cuda_dim3(const Dim3& v) { return dim3(v.x, v.y, v.z); }
#endif

// Four floats from 16-byte aligned memory (one LDS.128 / LDG.128 on the GPU).
struct Float4 {
  float v[4];
};

BF_HOST_DEVICE_INLINE Float4 load_float4(const float* src) {
  BF_CHECK_ALIGNED(src, 16);
#if defined(__CUDA_ARCH__)
  const float4 f = *reinterpret_cast<const float4*>(src);
  return Float4{{f.x, f.y, f.z, f.w}};
#else
  Float4 f;
  std::memcpy(f.v, src, 16);
  return f;
#endif
}

// A read-only global load (the texture path on the GPU).
template <typename T>
BF_HOST_DEVICE_INLINE T load_global(const T* p) {
#if defined(__CUDA_ARCH__)
  return __ldg(p);
#else
  return *p;
#endif
}

}  // namespace bridgedfast
