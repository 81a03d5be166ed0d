// Runs a CUDA kernel's body on the host: walks every block and thread of the launch grid the
// launcher computes (csrc/include/bridgedfast/*_grid.h) and calls the same BF_HOST_DEVICE
// functions the __global__ wrappers call. Kernels with shared memory run as block programs,
// phase by phase: every thread finishes a phase before any starts the next, as after
// __syncthreads(). Vector loads and stores abort on a misaligned address (grid.h).
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "bridgedfast/grid.h"

namespace bftest {

using bridgedfast::Dim3;
using bridgedfast::LaunchConfig;

inline uint64_t blocks_of(const LaunchConfig& c) {
  return static_cast<uint64_t>(c.grid.x) * c.grid.y * c.grid.z;
}

inline bool config_is_legal(const LaunchConfig& c) {
  const uint64_t threads = static_cast<uint64_t>(c.block.x) * c.block.y * c.block.z;
  return c.grid.x >= 1 && c.grid.y >= 1 && c.grid.z >= 1 && c.grid.y <= 65535 && c.grid.z <= 65535 &&
         threads >= 1 && threads <= 1024 && c.block.z <= 64;
}

// fn(block_idx, thread_idx) for every thread of the grid (kernels without shared memory).
template <typename Fn>
void emulate_threads(const LaunchConfig& c, Fn&& fn) {
  for (uint32_t bz = 0; bz < c.grid.z; ++bz)
    for (uint32_t by = 0; by < c.grid.y; ++by)
      for (uint32_t bx = 0; bx < c.grid.x; ++bx)
        for (uint32_t tz = 0; tz < c.block.z; ++tz)
          for (uint32_t ty = 0; ty < c.block.y; ++ty)
            for (uint32_t tx = 0; tx < c.block.x; ++tx) fn(Dim3{bx, by, bz}, Dim3{tx, ty, tz});
}

// The host side of a block program: phase(f) runs f(thread, state) for every thread in turn.
// Each thread's registers (`State`) persist across phases, as on the GPU.
template <typename State>
struct EmulatedBlock {
  std::vector<State> states;
  explicit EmulatedBlock(uint32_t threads) : states(threads) {}
  template <typename F>
  void phase(F&& f) {
    for (uint32_t t = 0; t < states.size(); ++t) f(t, states[t]);
  }
};

// program(block, block_idx, shared) for every block of the grid. Each block's shared memory
// starts as all-ones bytes (NaN floats, -1 ints): a read of something no phase wrote shows.
template <typename State, typename Shared, typename Program>
void emulate_blocks(const LaunchConfig& c, Program&& program) {
  EmulatedBlock<State> block(c.block.x * c.block.y * c.block.z);
  std::vector<Shared> shared(1);
  for (uint32_t bz = 0; bz < c.grid.z; ++bz)
    for (uint32_t by = 0; by < c.grid.y; ++by)
      for (uint32_t bx = 0; bx < c.grid.x; ++bx) {
        std::memset(static_cast<void*>(&shared[0]), 0xff, sizeof(Shared));
        program(block, Dim3{bx, by, bz}, shared[0]);
      }
}

}  // namespace bftest
