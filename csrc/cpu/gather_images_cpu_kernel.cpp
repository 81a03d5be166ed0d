#include <cstring>

#include "bridgedfast/gather_images.h"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace bridgedfast {

void gather_images_cpu(const uint8_t* const* sources, const GatherItem* items, int64_t n, uint8_t* out,
                       int num_threads) {
#if defined(_OPENMP)
  if (num_threads <= 0) num_threads = omp_get_max_threads();
#endif
  (void)num_threads;
  // Dynamic: item sizes vary, and a first touch of a memory-mapped page may fault to disk.
  BF_PRAGMA_OMP(omp parallel for schedule(dynamic, 1) num_threads(num_threads) if (n > 1))
  for (int64_t i = 0; i < n; ++i) {
    const GatherItem& it = items[i];
    std::memcpy(out + it.dst_offset, sources[it.source] + it.src_offset, static_cast<size_t>(it.nbytes));
  }
}

}  // namespace bridgedfast
