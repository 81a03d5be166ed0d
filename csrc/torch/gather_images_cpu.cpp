#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "common.h"

namespace bridgedfast {
namespace {

void gather_images_cpu_op(at::TensorList sources, const at::Tensor& items, const at::Tensor& out) {
  const at::Tensor items_c = check_gather_images_inputs(sources, items, out);
  std::vector<const uint8_t*> ptrs(sources.size());
  for (size_t s = 0; s < sources.size(); ++s) ptrs[s] = sources[s].const_data_ptr<uint8_t>();
  gather_images_cpu(ptrs.data(), reinterpret_cast<const GatherItem*>(items_c.const_data_ptr<int64_t>()),
                    items_c.size(0), out.mutable_data_ptr<uint8_t>(), at::get_num_threads());
}

}  // namespace

TORCH_LIBRARY_IMPL(bridgedfast, CPU, m) { m.impl("gather_images", &gather_images_cpu_op); }

}  // namespace bridgedfast
