#include <torch/library.h>

#include "common.h"

namespace bridgedfast {
namespace {

void run_mix_images_cpu(const at::Tensor& input, const at::Tensor& lam, const at::Tensor& boxes,
                        const ImageBatchShape& shape, at::Tensor& out) {
  const at::Tensor lam_c = lam.contiguous();
  const at::Tensor boxes_c = boxes.contiguous();
  mix_images_cpu(to_out_dtype(input.scalar_type()), input.const_data_ptr(), out.mutable_data_ptr(), shape,
                 lam_c.const_data_ptr<float>(), boxes_c.const_data_ptr<int32_t>());
}

at::Tensor mix_images_cpu_op(const at::Tensor& x, const at::Tensor& lam, const at::Tensor& boxes) {
  ImageBatchShape shape{};
  const at::Tensor input = check_mix_images_inputs(x, lam, boxes, &shape);
  at::Tensor out = empty_cpu_output(input.sizes(), input.scalar_type(),
                                    shape.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
  run_mix_images_cpu(input, lam, boxes, shape, out);
  return out;
}

at::Tensor& mix_images_out_cpu_op(const at::Tensor& x, const at::Tensor& lam, const at::Tensor& boxes,
                                  at::Tensor& out) {
  ImageBatchShape shape{};
  const at::Tensor input = check_mix_images_inputs(x, lam, boxes, &shape);
  check_mix_images_out(out, input, shape);
  run_mix_images_cpu(input, lam, boxes, shape, out);
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(bridgedfast, CPU, m) {
  m.impl("mix_images", &mix_images_cpu_op);
  m.impl("mix_images.out", &mix_images_out_cpu_op);
}

}  // namespace bridgedfast
