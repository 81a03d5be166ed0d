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
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include <jpeglib.h>

#include "jpeg_entropy.h"

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

constexpr int kMargin = 2;  // one chroma sample of 2x subsampling: the upsampler's context at the region's edges

struct ErrorManager {
  jpeg_error_mgr pub;
  jmp_buf* jump;  // where libjpeg's errors go: one buffer may serve several managers
};

void on_error(j_common_ptr cinfo) { longjmp(*reinterpret_cast<ErrorManager*>(cinfo->err)->jump, 1); }

// Warnings (corrupt data that libjpeg patched over) fail the item too: the Python fallback then
// decides as torchvision would. Nothing is printed.
void on_message(j_common_ptr cinfo, int level) {
  if (level < 0) longjmp(*reinterpret_cast<ErrorManager*>(cinfo->err)->jump, 1);
}

void silent(j_common_ptr) {}

// An error manager whose errors (and, with warnings_fail, warnings) longjmp to *jump, printing nothing.
jpeg_error_mgr* quiet_errors(ErrorManager* err, jmp_buf* jump, bool warnings_fail) {
  jpeg_std_error(&err->pub);
  err->pub.error_exit = on_error;
  if (warnings_fail) err->pub.emit_message = on_message;
  err->pub.output_message = silent;
  err->jump = jump;
  return &err->pub;
}

// Decodes one item; all state lives in this frame, so longjmp out of libjpeg leaks nothing but
// the row buffer (and mcus), which the caller owns. mcus: where the MCUs come from when not from
// data's own entropy-coded bytes (jpeg_entropy.h); data then may hold the JPEG's header alone.
int32_t decode_region(const uint8_t* data, int64_t nbytes, const int64_t* it, uint8_t* out, std::vector<uint8_t>& row,
                      jpeg_entropy::Source* mcus = nullptr) {
  jpeg_decompress_struct cinfo;
  ErrorManager err;
  jmp_buf jump;
  cinfo.err = quiet_errors(&err, &jump, true);
  if (setjmp(jump)) {
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
  if (mcus != nullptr && !jpeg_entropy::install(&cinfo, mcus)) {
    jpeg_destroy_decompress(&cinfo);
    return kUndecodable;
  }
  const int64_t width = it[kWidth];
  const int64_t top = it[kTop], left = it[kLeft], rh = it[kRegionH], rw = it[kRegionW];
  JDIMENSION x0 = static_cast<JDIMENSION>(std::max<int64_t>(0, left - kMargin));
  JDIMENSION cw = static_cast<JDIMENSION>(std::min<int64_t>(width, left + rw + kMargin) - x0);
  if (cw < static_cast<JDIMENSION>(width)) jpeg_crop_scanline(&cinfo, &x0, &cw);  // widens to iMCU edges
  const int64_t y0 = std::max<int64_t>(0, top - kMargin);
  if (y0 > 0) jpeg_skip_scanlines(&cinfo, static_cast<JDIMENSION>(y0));
  row.resize(static_cast<size_t>(cw) * 3);
  const size_t skip_cols = static_cast<size_t>(left - static_cast<int64_t>(x0)) * 3;
  const size_t row_bytes = static_cast<size_t>(rw) * 3;
  const size_t spill = static_cast<size_t>(cw) * 3 - skip_cols - row_bytes;  // decoded right of the region
  // Rows strictly inside the region are decoded in place: libjpeg writes the columns left of the
  // region over the previous row's end (kept in `saved` and put back) and those right of it over
  // the next row's start (written after). The first and last rows, whose spill would leave the
  // slot, and regions too narrow to hold a spill, go through `row`.
  uint8_t saved[3 * 64];  // the left spill: at most an iMCU (32 px) and the margin
  const bool in_place = skip_cols <= row_bytes && spill <= row_bytes && skip_cols <= sizeof(saved);
  for (int64_t y = y0; y < top + rh; ++y) {
    const bool direct = in_place && y > top && y < top + rh - 1;
    uint8_t* dst = out + static_cast<size_t>(y - top) * row_bytes;
    JSAMPROW ptr = direct ? dst - skip_cols : row.data();
    if (direct) std::memcpy(saved, ptr, skip_cols);
    if (jpeg_read_scanlines(&cinfo, &ptr, 1) != 1) {  // suspension cannot happen with a memory source
      jpeg_destroy_decompress(&cinfo);
      return kUndecodable;
    }
    if (direct) {
      std::memcpy(dst - skip_cols, saved, skip_cols);
    } else if (y >= top) {
      std::memcpy(dst, row.data() + skip_cols, row_bytes);
    }
  }
  jpeg_abort_decompress(&cinfo);  // the rows below the region are never decoded
  jpeg_destroy_decompress(&cinfo);
  return kOk;
}


// ---- JPEGs with a restart marker after every MCU (what bridgedfast's stores write) ----------------
// Each MCU's entropy-coded bytes then stand alone (the DC predictors restart at each marker), so
// the MCUs around a region can be cut out of the file and put back together as a small, valid JPEG
// of just that band of rows and columns: libjpeg then entropy-decodes only those MCUs, not every
// row above the region and every column beside it. The cut keeps kMargin pixels (at the decoded
// scale) around the region where the image has them, so its pixels are those of a whole decode.

struct Layout {
  int64_t height = 0, width = 0;   // the frame's size in pixels
  int64_t mcu_h = 0, mcu_w = 0;    // an MCU's size in pixels
  int64_t hmax = 1;                // the largest horizontal sampling factor
  int64_t mcus_y = 0, mcus_x = 0;  // MCUs per column and per row
  size_t sof = 0;                  // offset of the SOF marker (0xFF, 0xC0/0xC1)
  size_t scan = 0;                 // first byte of the entropy-coded data
};

inline int64_t be16(const uint8_t* p) { return (static_cast<int64_t>(p[0]) << 8) | p[1]; }

// True for a sequential (baseline or extended Huffman) JPEG whose first scan holds every component
// and whose restart interval is one MCU.
bool parse_layout(const uint8_t* d, size_t n, Layout* L) {
  if (n < 4 || d[0] != 0xFF || d[1] != 0xD8) return false;
  size_t i = 2;
  int64_t restart = 0, components = 0, hmax = 1, vmax = 1;
  bool have_sof = false;
  while (i + 4 <= n) {
    if (d[i] != 0xFF) return false;
    const uint8_t m = d[i + 1];
    if (m == 0xFF) { ++i; continue; }  // fill byte
    const int64_t len = be16(d + i + 2);
    if (len < 2 || i + 2 + static_cast<size_t>(len) > n) return false;
    const uint8_t* seg = d + i + 4;
    if (m == 0xC0 || m == 0xC1) {
      if (len < 8) return false;
      L->height = be16(seg + 1);
      L->width = be16(seg + 3);
      components = seg[5];
      if (components < 1 || components > 4 || len != 8 + 3 * components || L->height <= 0 || L->width <= 0) return false;
      for (int64_t c = 0; c < components; ++c) {
        hmax = std::max<int64_t>(hmax, seg[6 + 3 * c + 1] >> 4);
        vmax = std::max<int64_t>(vmax, seg[6 + 3 * c + 1] & 15);
      }
      L->sof = i;
      have_sof = true;
    } else if ((m >= 0xC2 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC)) {
      return false;  // progressive, lossless or arithmetic: not cut
    } else if (m == 0xDD) {
      if (len != 4) return false;
      restart = be16(seg);
    } else if (m == 0xDA) {
      if (!have_sof || restart != 1 || len < 3 || seg[0] != components) return false;
      if (hmax < 1 || vmax < 1 || hmax > 4 || vmax > 4) return false;
      L->hmax = hmax;
      L->mcu_h = components == 1 ? 8 : 8 * vmax;  // a one-component scan's MCU is one block
      L->mcu_w = components == 1 ? 8 : 8 * hmax;
      L->mcus_y = (L->height + L->mcu_h - 1) / L->mcu_h;
      L->mcus_x = (L->width + L->mcu_w - 1) / L->mcu_w;
      L->scan = i + 2 + static_cast<size_t>(len);
      return true;
    } else if (m == 0xD9 || (m >= 0xD0 && m <= 0xD7) || m == 0x01) {
      return false;
    }
    i += 2 + static_cast<size_t>(len);
  }
  return false;
}

// starts[k] = first byte of MCU k of the entropy-coded data, for k <= last, and where MCU last
// ends (+2, its restart marker or the EOI after it). False if the markers are not where a one-MCU
// restart interval puts them (then the caller decodes the file as it is, and libjpeg judges it).
bool find_starts(const uint8_t* d, size_t n, const Layout& L, int64_t last, std::vector<size_t>* starts) {
  starts->clear();
  starts->push_back(L.scan);
  size_t i = L.scan;
  while (static_cast<int64_t>(starts->size()) <= last + 1) {
    const void* hit = std::memchr(d + i, 0xFF, n - i);
    if (hit == nullptr) return false;
    i = static_cast<size_t>(static_cast<const uint8_t*>(hit) - d);
    if (i + 1 >= n) return false;
    const uint8_t m = d[i + 1];
    if (m == 0x00 || m == 0xFF) { i += 1 + (m == 0x00); continue; }  // stuffed byte / fill
    const int64_t k = static_cast<int64_t>(starts->size()) - 1;      // the MCU this marker ends
    if (m == 0xD9 && k == L.mcus_y * L.mcus_x - 1) {                 // EOI after the last MCU
      starts->push_back(i + 2);
      break;
    }
    if (m != 0xD0 + (k & 7)) return false;
    starts->push_back(i + 2);
    i += 2;
  }
  return static_cast<int64_t>(starts->size()) > last + 1;
}

// The JPEG of MCU rows [r0, r1) x columns [c0, c1), h x w pixels: the file's header with that size
// in its SOF, then (with_data) those MCUs' bytes renumbered between restart markers, then EOI.
// Without the data, libjpeg decodes it with jpeg_entropy's decoder reading the MCUs from the file.
void cut(const uint8_t* d, const Layout& L, int64_t r0, int64_t r1, int64_t c0, int64_t c1, int64_t h, int64_t w,
         const std::vector<size_t>& starts, bool with_data, std::vector<uint8_t>* out) {
  out->assign(d, d + L.scan);                                  // SOI .. SOS, then the new size in SOF
  (*out)[L.sof + 5] = static_cast<uint8_t>(h >> 8);
  (*out)[L.sof + 6] = static_cast<uint8_t>(h & 255);
  (*out)[L.sof + 7] = static_cast<uint8_t>(w >> 8);
  (*out)[L.sof + 8] = static_cast<uint8_t>(w & 255);
  int64_t j = 0;
  for (int64_t r = r0; with_data && r < r1; ++r) {
    for (int64_t c = c0; c < c1; ++c, ++j) {
      const int64_t k = r * L.mcus_x + c;
      if (j > 0) {
        out->push_back(0xFF);
        out->push_back(static_cast<uint8_t>(0xD0 + ((j - 1) & 7)));
      }
      out->insert(out->end(), d + starts[k], d + starts[k + 1] - 2);  // without its marker
    }
  }
  out->push_back(0xFF);
  out->push_back(0xD9);
}

struct Scratch {
  std::vector<uint8_t> row, cut;
  std::vector<size_t> starts;
  std::unique_ptr<jpeg_entropy::Source> mcus{new jpeg_entropy::Source};
};

// own_entropy: the MCUs of restart-marked JPEGs are Huffman-decoded by jpeg_entropy.h, not by
// libjpeg (whose decoder takes its slower path on files with restart markers), where there are at
// least min_mcus of them: below that, building jpeg_entropy's lookup tables (per image: each file
// has its own Huffman tables) costs more than its faster decoding saves. Forced on every crop (one
// thread, TrainAugment crops of 64 photo-like q90 JPEGs, 40 interleaved repeats) it ran at 0.71x
// libjpeg's decoder on 100 px images, 0.94x at 200 px, 1.02x at 300 px, 1.08-1.12x at 400 px.
int32_t decode_one(const uint8_t* data, int64_t nbytes, const int64_t* it, uint8_t* out, Scratch& s,
                   bool own_entropy, int64_t min_mcus) {
  Layout L;
  const int64_t scale = it[kScale];
  if (parse_layout(data, static_cast<size_t>(nbytes), &L) && (L.height + scale - 1) / scale == it[kHeight] &&
      (L.width + scale - 1) / scale == it[kWidth]) {
    // The region with its margin, in full-size pixels, rounded out to whole MCUs.
    const int64_t y0 = std::max<int64_t>(0, (it[kTop] - kMargin) * scale);
    const int64_t y1 = std::min<int64_t>(L.height, (it[kTop] + it[kRegionH] + kMargin) * scale);
    const int64_t x0 = std::max<int64_t>(0, (it[kLeft] - kMargin) * scale);
    const int64_t x1 = std::min<int64_t>(L.width, (it[kLeft] + it[kRegionW] + kMargin) * scale);
    int64_t r0 = y0 / L.mcu_h, r1 = (y1 + L.mcu_h - 1) / L.mcu_h;
    int64_t c0 = x0 / L.mcu_w, c1 = (x1 + L.mcu_w - 1) / L.mcu_w;
    // libjpeg upsamples chroma "fancily" (from both neighbours) only in rows of more than two
    // samples: a band that narrow (a partial last MCU) is widened, so that it upsamples as the
    // whole image does.
    while ((c1 == L.mcus_x ? L.width : c1 * L.mcu_w) - c0 * L.mcu_w < 3 * L.hmax * scale && (c0 > 0 || c1 < L.mcus_x)) {
      if (c0 > 0) --c0; else ++c1;
    }
    // MCU edges (multiples of 8 px) fall on the decoded grid at every scale (1/2, 1/4, 1/8), so the
    // band's decoded image is the whole image's, cut at whole pixels.
    const bool band = r0 != 0 || c0 != 0 || r1 != L.mcus_y || c1 != L.mcus_x;
    const bool own = own_entropy && (r1 - r0) * (c1 - c0) >= min_mcus;
    if ((band || own) && find_starts(data, static_cast<size_t>(nbytes), L, (r1 - 1) * L.mcus_x + c1 - 1, &s.starts)) {
      const int64_t h = r1 == L.mcus_y ? L.height - r0 * L.mcu_h : (r1 - r0) * L.mcu_h;
      const int64_t w = c1 == L.mcus_x ? L.width - c0 * L.mcu_w : (c1 - c0) * L.mcu_w;
      int64_t item[kColumns];
      std::copy(it, it + kColumns, item);
      item[kHeight] = (h + scale - 1) / scale;
      item[kWidth] = (w + scale - 1) / scale;
      item[kTop] = it[kTop] - r0 * L.mcu_h / scale;
      item[kLeft] = it[kLeft] - c0 * L.mcu_w / scale;
      const uint8_t* jpeg = data;
      int64_t jpeg_bytes = nbytes;
      if (band) {
        cut(data, L, r0, r1, c0, c1, h, w, s.starts, !own, &s.cut);
        jpeg = s.cut.data();
        jpeg_bytes = static_cast<int64_t>(s.cut.size());
      }
      jpeg_entropy::Source* mcus = nullptr;
      if (own) {
        mcus = s.mcus.get();
        mcus->data = data;
        mcus->starts = &s.starts;
        mcus->r0 = r0, mcus->c0 = c0, mcus->rows = r1 - r0, mcus->cols = c1 - c0, mcus->mcus_x = L.mcus_x;
      }
      if (decode_region(jpeg, jpeg_bytes, item, out, s.row, mcus) == kOk) return kOk;
      // Not decoded this way: decode the file itself with libjpeg, which then names what is wrong.
    }
  }
  return decode_region(data, nbytes, it, out, s.row);
}

at::Tensor decode_jpegs_cpu_op(at::TensorList sources, const at::Tensor& items, const at::Tensor& out,
                               int64_t threads, bool own_entropy, int64_t own_entropy_min_mcus) {
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
    Scratch scratch;
#pragma omp for schedule(dynamic, 1)
    for (int64_t i = 0; i < n; ++i) {
      const int64_t* it = rows + i * kColumns;
      st[i] = decode_one(ptrs[it[kSource]] + it[kOffset], it[kNbytes], it, dst + it[kDst], scratch, own_entropy,
                         own_entropy_min_mcus);
    }
  }
  return status;
}


// The same JPEG re-encoded losslessly (its DCT coefficients copied, not decoded to pixels) as a
// sequential JPEG with a restart marker after every MCU and optimised Huffman tables: it decodes
// to the same pixels, and decode_jpegs can cut any region out of it. Empty if it does not decode.
at::Tensor jpeg_add_restarts_op(const at::Tensor& data) {
  TORCH_CHECK(data.device().is_cpu() && data.scalar_type() == at::kByte && data.dim() == 1 && data.is_contiguous(),
              "jpeg_add_restarts: data must be a contiguous 1-D uint8 CPU tensor");
  jpeg_decompress_struct src;
  jpeg_compress_struct dst;
  ErrorManager src_err, dst_err;
  jmp_buf jump;  // one landing place for both: setjmp may not sit inside a || expression
  src.err = quiet_errors(&src_err, &jump, true);
  dst.err = quiet_errors(&dst_err, &jump, false);
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  jpeg_create_decompress(&src);
  jpeg_create_compress(&dst);
  if (setjmp(jump)) {
    jpeg_destroy_compress(&dst);
    jpeg_destroy_decompress(&src);
    std::free(buffer);
    return at::empty({0}, at::kByte);
  }
  jpeg_mem_src(&src, data.const_data_ptr<uint8_t>(), static_cast<unsigned long>(data.numel()));
  jpeg_read_header(&src, TRUE);
  jvirt_barray_ptr* coefficients = jpeg_read_coefficients(&src);
  jpeg_copy_critical_parameters(&src, &dst);
  dst.restart_interval = 1;
  dst.optimize_coding = TRUE;
  jpeg_mem_dest(&dst, &buffer, &size);
  jpeg_write_coefficients(&dst, coefficients);
  jpeg_finish_compress(&dst);
  jpeg_finish_decompress(&src);
  at::Tensor out = at::empty({static_cast<int64_t>(size)}, at::kByte);
  std::memcpy(out.mutable_data_ptr<uint8_t>(), buffer, size);
  jpeg_destroy_compress(&dst);
  jpeg_destroy_decompress(&src);
  std::free(buffer);
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(bridgedfast, m) {
  m.def("decode_jpegs(Tensor[] sources, Tensor items, Tensor(a!) out, int threads, bool own_entropy=True, int own_entropy_min_mcus=64) -> Tensor");
  m.def("jpeg_add_restarts(Tensor data) -> Tensor");
}

TORCH_LIBRARY_IMPL(bridgedfast, CPU, m) {
  m.impl("decode_jpegs", &decode_jpegs_cpu_op);
  m.impl("jpeg_add_restarts", &jpeg_add_restarts_op);
}

}  // namespace bridgedfast

#endif  // BRIDGEDFAST_WITH_JPEG
