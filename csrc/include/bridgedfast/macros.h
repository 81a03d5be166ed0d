// Portability macros shared by the CPU kernels, the CUDA kernels and the C++ tests.
// Nothing here depends on torch: this header is part of the torch-free kernel core.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define BF_HOST_DEVICE __host__ __device__
#define BF_HOST_DEVICE_INLINE __host__ __device__ __forceinline__
#else
#define BF_HOST_DEVICE
#define BF_HOST_DEVICE_INLINE inline
#endif

#if defined(_OPENMP)
#define BF_PRAGMA_OMP(x) _Pragma(#x)
#else
#define BF_PRAGMA_OMP(x)
#endif
