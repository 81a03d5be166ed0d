// decode_jpegs: a batch of JPEGs decoded by libjpeg-turbo on the CPU, each straight into its slot of
// one packed uint8 buffer, on `threads` OpenMP threads with no GIL and no Python per image.
//
// Each item decodes only a region of its image (the crop the augmentation will read), optionally at
// 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling): rows above the region are skipped
// (jpeg_skip_scanlines: entropy-decoded, no inverse DCT or colour conversion), columns outside it
// are not reconstructed (jpeg_crop_scanline), and decoding stops after the region's last row. The
// region is widened by a margin of kMargin pixels on every side before it goes to libjpeg, so that
// the chroma upsampling at the region's edges sees the same neighbours as in a full decode: the
// region's pixels are then exactly those of a full decode at the same scale (tests/test_decode_op.py
// checks this against torchvision's decode_jpeg).
//
// Built only where libjpeg-turbo's headers were found (setup.py defines BRIDGEDFAST_WITH_JPEG);
// otherwise the op does not exist and the loader decodes with torchvision, one call per image.
#if defined(BRIDGEDFAST_WITH_JPEG)

#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <csetjmp>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include <jpeglib.h>

namespace bridgedfast {
namespace {

// Columns of an item: where the bytes are, where the pixels go, what the decode must give.
enum Col : int64_t {
  kSource = 0,  // index into sources
  kOffset,      // first byte of the JPEG in that source
  kNbytes,      // its length
  kDst,         // first byte of the region's pixels in out (region_h * region_w * 3 bytes)
  kHeight,      // the decoded image's height at this scale (the index's, checked against the file)
  kWidth,
  kScale,       // 1, 2, 4 or 8: decode at 1/scale (libjpeg's scale_denom)
  kTop,         // the region, in the decoded image's pixels
  kLeft,
  kRegionH,
  kRegionW,
  kColumns,
};

// Status per item (returned to Python, which names the image and falls back or raises).
enum Status : int32_t { kOk = 0, kUndecodable = 1, kWrongSize = 2 };

constexpr int kMargin = 16;  // >= one iMCU at full scale: the upsampler's context at the region's edges

struct ErrorManager {
  jpeg_error_mgr pub;
  jmp_buf jump;
};

void on_error(j_common_ptr cinfo) { longjmp(reinterpret_cast<ErrorManager*>(cinfo->err)->jump, 1); }

// Warnings (corrupt data that libjpeg patched over) fail the item too: the Python fallback then
// decides as torchvision would. Nothing is printed.
void on_message(j_common_ptr cinfo, int level) {
  if (level < 0) longjmp(reinterpret_cast<ErrorManager*>(cinfo->err)->jump, 1);
}

void silent(j_common_ptr) {}

// Decodes one item; all state lives in this frame, so longjmp out of libjpeg leaks nothing but
// the row buffer, which is owned by the caller.
int32_t decode_one(const uint8_t* data, int64_t nbytes, const int64_t* it, uint8_t* out, std::vector<uint8_t>& row) {
  jpeg_decompress_struct cinfo;
  ErrorManager err;
  cinfo.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = on_error;
  err.pub.emit_message = on_message;
  err.pub.output_message = silent;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    return kUndecodable;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(nbytes));
  jpeg_read_header(&cinfo, TRUE);
  cinfo.out_color_space = JCS_RGB;  // gray and YCbCr convert; CMYK/YCCK fail (the fallback handles them)
  cinfo.scale_num = 1;
  cinfo.scale_denom = static_cast<unsigned int>(it[kScale]);
  jpeg_calc_output_dimensions(&cinfo);
  if (static_cast<int64_t>(cinfo.output_height) != it[kHeight] ||
      static_cast<int64_t>(cinfo.output_width) != it[kWidth] || cinfo.output_components != 3) {
    jpeg_destroy_decompress(&cinfo);
    return kWrongSize;
  }
  jpeg_start_decompress(&cinfo);
  const int64_t height = it[kHeight], width = it[kWidth];
  const int64_t top = it[kTop], left = it[kLeft], rh = it[kRegionH], rw = it[kRegionW];
  JDIMENSION x0 = static_cast<JDIMENSION>(std::max<int64_t>(0, left - kMargin));
  JDIMENSION cw = static_cast<JDIMENSION>(std::min<int64_t>(width, left + rw + kMargin) - x0);
  if (cw < static_cast<JDIMENSION>(width)) jpeg_crop_scanline(&cinfo, &x0, &cw);  // widens to iMCU edges
  const int64_t y0 = std::max<int64_t>(0, top - kMargin);
  if (y0 > 0) jpeg_skip_scanlines(&cinfo, static_cast<JDIMENSION>(y0));
  row.resize(static_cast<size_t>(cw) * 3);
  const size_t skip_cols = static_cast<size_t>(left - static_cast<int64_t>(x0)) * 3;
  const size_t row_bytes = static_cast<size_t>(rw) * 3;
  for (int64_t y = y0; y < top + rh; ++y) {
    JSAMPROW ptr = row.data();
    if (jpeg_read_scanlines(&cinfo, &ptr, 1) != 1) {  // suspension cannot happen with a memory source
      jpeg_destroy_decompress(&cinfo);
      return kUndecodable;
    }
    if (y >= top) std::memcpy(out + static_cast<size_t>(y - top) * row_bytes, row.data() + skip_cols, row_bytes);
  }
  jpeg_abort_decompress(&cinfo);  // the rows below the region are never decoded
  jpeg_destroy_decompress(&cinfo);
  return kOk;
}

at::Tensor decode_jpegs_cpu_op(at::TensorList sources, const at::Tensor& items, const at::Tensor& out,
                               int64_t threads) {
  TORCH_CHECK(items.device().is_cpu() && items.scalar_type() == at::kLong && items.dim() == 2 &&
                  items.size(1) == kColumns,
              "decode_jpegs: items must be a CPU int64 [N, ", static_cast<int64_t>(kColumns), "] tensor, got ",
              items.scalar_type(), " ", items.sizes(), " on ", items.device());
  TORCH_CHECK(out.device().is_cpu() && out.scalar_type() == at::kByte && out.dim() == 1 && out.is_contiguous(),
              "decode_jpegs: out must be a contiguous 1-D uint8 CPU tensor");
  std::vector<const uint8_t*> ptrs(sources.size());
  std::vector<int64_t> sizes(sources.size());
  for (size_t s = 0; s < sources.size(); ++s) {
    TORCH_CHECK(sources[s].device().is_cpu() && sources[s].scalar_type() == at::kByte && sources[s].dim() == 1 &&
                    sources[s].is_contiguous(),
                "decode_jpegs: source ", s, " must be a contiguous 1-D uint8 CPU tensor");
    ptrs[s] = sources[s].const_data_ptr<uint8_t>();
    sizes[s] = sources[s].numel();
  }
  const at::Tensor items_c = items.contiguous();
  const int64_t n = items_c.size(0);
  const int64_t* rows = items_c.const_data_ptr<int64_t>();
  const int64_t capacity = out.numel();
  // Every bound checked before any thread writes (as differences: no int64 sum can wrap).
  for (int64_t i = 0; i < n; ++i) {
    const int64_t* it = rows + i * kColumns;
    const int64_t src = it[kSource];
    const bool scale_ok = it[kScale] == 1 || it[kScale] == 2 || it[kScale] == 4 || it[kScale] == 8;
    const bool in_source = src >= 0 && src < static_cast<int64_t>(sources.size()) && it[kOffset] >= 0 &&
                           it[kNbytes] > 0 && it[kOffset] <= sizes[src] && it[kNbytes] <= sizes[src] - it[kOffset];
    const bool region_ok = it[kHeight] > 0 && it[kWidth] > 0 && it[kHeight] <= (1 << 16) &&
                           it[kWidth] <= (1 << 16) && it[kTop] >= 0 && it[kLeft] >= 0 && it[kRegionH] > 0 &&
                           it[kRegionW] > 0 && it[kRegionH] <= it[kHeight] - it[kTop] &&
                           it[kRegionW] <= it[kWidth] - it[kLeft];
    TORCH_CHECK(scale_ok && in_source && region_ok, "decode_jpegs: item ", i, " ",
                at::IntArrayRef(it, kColumns), " is out of range of its source or image, or has a bad scale");
    const int64_t need = it[kRegionH] * it[kRegionW] * 3;  // <= 2^16 * 2^16 * 3: no overflow
    TORCH_CHECK(it[kDst] >= 0 && it[kDst] <= capacity && need <= capacity - it[kDst], "decode_jpegs: item ", i,
                " writes past the end of out");
  }
  at::Tensor status = at::zeros({n}, at::kInt);
  int32_t* st = status.mutable_data_ptr<int32_t>();
  uint8_t* dst = out.mutable_data_ptr<uint8_t>();
  const int nthreads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, std::max<int64_t>(n, 1))));
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<uint8_t> row;
#pragma omp for schedule(dynamic, 1)
    for (int64_t i = 0; i < n; ++i) {
      const int64_t* it = rows + i * kColumns;
      st[i] = decode_one(ptrs[it[kSource]] + it[kOffset], it[kNbytes], it, dst + it[kDst], row);
    }
  }
  return status;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(bridgedfast, m) {
  m.def("decode_jpegs(Tensor[] sources, Tensor items, Tensor(a!) out, int threads) -> Tensor");
}

TORCH_LIBRARY_IMPL(bridgedfast, CPU, m) { m.impl("decode_jpegs", &decode_jpegs_cpu_op); }

}  // namespace bridgedfast

#endif  // BRIDGEDFAST_WITH_JPEG
