#include <torch/library.h>

#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "common.h"

namespace bridgedfast {
namespace {

// A fresh batch output is tens to hundreds of megabytes of untouched pages; faulting them in
// 4 KiB at a time costs more than the resampling. Asking for transparent huge pages before
// the kernel first writes them cuts the faults 512-fold (a hint: harmless where unsupported).
void advise_huge_pages(void* data, int64_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + static_cast<uintptr_t>(bytes)) & ~(kHuge - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#endif
}

at::Tensor resized_crop_cpu_op(const at::Tensor& data, const at::Tensor& index, const at::Tensor& boxes,
                               const at::Tensor& flip, at::IntArrayRef size, at::ArrayRef<double> mean,
                               at::ArrayRef<double> std, bool antialias, at::ScalarType out_dtype, bool channels_last,
                               const std::optional<at::Tensor>& resize) {
  TORCH_CHECK(data.device().is_cpu(), "resized_crop: data must be on the CPU for the CPU kernel, got ", data.device());
  ResizedCropParams params{};
  const std::vector<ResizedCropImage> images = check_resized_crop_inputs(
      data, index, boxes, flip, size, mean, std, antialias, out_dtype, channels_last, resize, &params);
  at::Tensor out = empty_resized_crop_output(data, params, out_dtype);
  advise_huge_pages(out.mutable_data_ptr(), out.nbytes());
  resized_crop_cpu(data.const_data_ptr<uint8_t>(), images.data(), params, out.mutable_data_ptr());
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(bridgedfast, CPU, m) { m.impl("resized_crop", &resized_crop_cpu_op); }

}  // namespace bridgedfast
