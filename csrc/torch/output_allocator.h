// Fresh CPU outputs without fresh pages: the ops' large CPU outputs come from a small cache of
// blocks that earlier outputs released. Every call still returns a new tensor that nothing
// else references; only memory that no tensor uses any more is handed out again.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace bridgedfast {

// An empty CPU tensor of that shape, dtype and memory format. Outputs of at least 1 MiB come
// from the cache (or a new 2 MiB-aligned block asked to use transparent huge pages); smaller
// ones from torch's default CPU allocator.
at::Tensor empty_cpu_output(at::IntArrayRef sizes, at::ScalarType dtype, at::MemoryFormat memory_format);

// Frees every cached block no tensor uses; returns the bytes freed.
int64_t release_cached_outputs();

}  // namespace bridgedfast
