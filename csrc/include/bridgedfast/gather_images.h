// gather_images: copies byte ranges (encoded or raw images) out of one or more source buffers
// (memory-mapped store shards, or a GPU-resident store) into one output buffer, the packed
// batch the fused augmentation op reads. Torch-free.
#pragma once

#include <cstddef>

#include "macros.h"

namespace bridgedfast {

// One copy: `nbytes` bytes from sources[source] + src_offset to out + dst_offset. The torch
// binding passes these as the rows of an int64 [N, 4] tensor in exactly this order.
struct GatherItem {
  int64_t source;
  int64_t src_offset;
  int64_t nbytes;
  int64_t dst_offset;
};
static_assert(sizeof(GatherItem) == 4 * sizeof(int64_t), "GatherItem must match an int64 [N, 4] row");

// The CUDA kernel takes its source pointers by value (no extra host->device copy per batch).
constexpr int kMaxGatherSources = 32;
struct GatherSources {
  const uint8_t* ptr[kMaxGatherSources];
};

// CPU: items are copied in parallel on `num_threads` OpenMP threads (<= 0: the default).
// The caller has checked every range lies inside its source and the output.
void gather_images_cpu(const uint8_t* const* sources, const GatherItem* items, int64_t n, uint8_t* out,
                       int num_threads);

// CUDA: `items` is a device array; sources/out are device pointers; `max_nbytes` (the largest
// item, known on the host) sizes the grid; any n in one launch (grid.y strides). Returns the
// cudaError_t of the launch (0 on success). The kernel body: gather_images_grid.h.
int gather_images_cuda(const GatherSources& sources, const GatherItem* items, int64_t n, int64_t max_nbytes,
                       uint8_t* out, void* stream);

}  // namespace bridgedfast
