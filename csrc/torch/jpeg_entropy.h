// Baseline Huffman decoding of the MCUs of a JPEG with a restart marker after every MCU, for
// decode_jpegs_cpu.cpp: it takes the place of libjpeg-turbo's own entropy decoder (its
// `decode_mcu` method), which falls back to a byte-at-a-time path for every file with restart
// markers. Each MCU's bytes stand alone (the DC predictions restart at each marker), so MCU j of
// the image libjpeg decodes can be read from anywhere in the source file: libjpeg is given a JPEG
// header alone for the band of MCUs around a region, and this decoder reads each of those MCUs
// from the original file.
//
// The coefficients are those libjpeg's decoder produces (Annex F.2.2 of the JPEG standard; the
// same DC accumulation and sign extension), so the pixels are libjpeg's: tests/test_decode_op.py
// checks them against torchvision. Anything this decoder does not accept (an unknown code, a
// marker inside an MCU, an MCU that reads past its bytes, a coefficient past the 64th) fails the
// image, and the caller decodes the file with libjpeg's own decoder, which then judges it.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include <jpeglib.h>
#include <jerror.h>

namespace bridgedfast {
namespace jpeg_entropy {

constexpr int kFastBits = 11;  // codes of up to 11 bits (with their coefficients' bits, up to two of them): one lookup

// Position in the block (row-major) of the k-th coefficient in zigzag order; positions 64 and on
// (past the block, written only while decoding a damaged block, which then fails) go to 63.
constexpr uint8_t kNatural[96] = {
    0,  1,  8,  16, 9,  2,  3,  10, 17, 24, 32, 25, 18, 11, 4,  5,  12, 19, 26, 33, 40, 48, 41, 34,
    27, 20, 13, 6,  7,  14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
    58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63, 63, 63, 63, 63, 63, 63, 63, 63,
    63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63};

// Lookup entries for the next kFastBits bits. Table::fast: (symbol << 8) | code bits, 0 where the
// code is longer. Table::coef (AC): (kCoef) one or (kCoef | kPair) two whole coefficients with
// their zero runs, (v2 << 24) | (v1 << 16) | (run2 << 12) | (run1 << 8) | flags | bits, where v1
// and v2 (int8; v2 = 0 for one) are the coefficients and bits what the entry reads in all; 0
// where the next bits do not hold a whole coefficient.
constexpr int32_t kCoef = 64, kPair = 128;

struct Table {
  int32_t fast[1 << kFastBits];  // symbols: (symbol << 8) | code bits, 0 where the code is longer
  int32_t coef[1 << kFastBits];  // AC: whole coefficients, 0 where the next bits do not hold one
  int32_t maxcode[18];    // the largest code of each length, -1 where there is none
  int32_t valoffset[17];  // symbol index = code + valoffset[length]
  uint8_t values[256];
};

inline int32_t extend(uint32_t v, int s) {  // F.2.2.1: the s-bit value v as a signed coefficient
  return v < (1u << (s - 1)) ? static_cast<int32_t>(v) - (1 << s) + 1 : static_cast<int32_t>(v);
}

// Builds the lookup tables of a Huffman table; false where libjpeg would refuse it (too many
// symbols, a code that does not fit its length, a DC symbol over 15).
inline bool build(const JHUFF_TBL* h, bool dc, Table* t) {
  if (h == nullptr) return false;
  int total = 0, last = 0;
  for (int l = 1; l <= 16; ++l) {
    total += h->bits[l];
    if (h->bits[l]) last = l;
  }
  if (total > 256) return false;
  std::memset(t->fast, 0, sizeof(t->fast));
  if (!dc) std::memset(t->coef, 0, sizeof(t->coef));
  std::memcpy(t->values, h->huffval, 256);
  int32_t code = 0;
  int k = 0;
  for (int l = 1; l <= 16; ++l) {
    t->valoffset[l] = k - code;
    for (int i = 0; i < h->bits[l]; ++i, ++code, ++k) {
      const int sym = h->huffval[k];
      if (dc && sym > 15) return false;
      if (l > kFastBits) continue;
      const int spare = kFastBits - l;
      for (int f = 0; f < (1 << spare); ++f) t->fast[(code << spare) | f] = (sym << 8) | l;
    }
    t->maxcode[l] = h->bits[l] ? code - 1 : -1;
    if (l <= last && code >= (1 << l)) return false;  // no code may be all ones (libjpeg's rule)
    code <<= 1;
  }
  t->maxcode[17] = INT32_MAX;
  if (dc) return true;
  // AC: where the next bits hold a whole coefficient (code and value, the value within int8), the
  // entry gives it, and the following one too where it also fits.
  constexpr int kMask = (1 << kFastBits) - 1;
  int32_t one[1 << kFastBits] = {};  // (v << 16) | (run << 8) | bits, or 0
  for (int idx = 0; idx <= kMask; ++idx) {
    const int32_t e = t->fast[idx];
    const int l = e & 31, sym = (e >> 8) & 255, run = sym >> 4, s = sym & 15;
    if (e == 0 || s == 0 || s > 7 || l + s > kFastBits) continue;
    const uint32_t bits = static_cast<uint32_t>(idx >> (kFastBits - l - s)) & ((1u << s) - 1);
    one[idx] = static_cast<int32_t>(static_cast<uint32_t>(extend(bits, s) & 255) << 16) | (run << 8) | (l + s);
  }
  for (int idx = 0; idx <= kMask; ++idx) {
    const int32_t first = one[idx];
    if (first == 0) continue;
    const int used = first & 31;
    const int32_t second = one[(idx << used) & kMask];  // the rest of the bits, zeros after them
    if (second != 0 && used + (second & 31) <= kFastBits) {
      t->coef[idx] = static_cast<int32_t>((static_cast<uint32_t>((second >> 16) & 255) << 24) |
                                          (static_cast<uint32_t>((second >> 8) & 15) << 12)) |
                     (first & 0xFF0F00) | kCoef | kPair | (used + (second & 31));
    } else {
      t->coef[idx] = (first & 0xFF0F00) | kCoef | used;
    }
  }
  return true;
}

// Reads the bits of one MCU, left-aligned in acc, from its bytes with the stuffing (the 0x00 after
// each 0xFF) taken out and kPadding zero bytes after them (unstuff()): refilling then needs no
// branch, and reading past the end reads zeros, which `overrun` detects afterwards.
constexpr size_t kPadding = 8 + 64 * 4;  // a refill's 8 bytes after the most one block can read (64 x 31 bits)

struct Bits {
  const uint8_t* q;     // the next byte not wholly in acc
  const uint8_t* begin;
  size_t bytes;         // the MCU's bytes (unstuffed)
  uint64_t acc = 0;
  int n = 0;  // valid bits in acc (after refill(): 56 to 63)

  inline void refill() {
    uint64_t w;
    std::memcpy(&w, q, 8);
    acc |= __builtin_bswap64(w) >> n;  // bits past the whole bytes taken are the next ones: taking them again is a no-op
    q += (63 - n) >> 3;
    n |= 56;
  }
  inline void skip(int k) {
    acc <<= k;
    n -= k;
  }
  inline uint32_t take(int k) {  // k in 1..16
    const uint32_t v = static_cast<uint32_t>(acc >> (64 - k));
    skip(k);
    return v;
  }
  // Whether more bits were used than the MCU has.
  inline bool overrun() const { return 8 * static_cast<size_t>(q - begin) - static_cast<size_t>(n) > 8 * bytes; }
};

// The MCU's bytes [p, end) without stuffing, then kPadding zeros, into buf; false for a marker
// (0xFF not followed by 0x00) inside them.
inline bool unstuff(const uint8_t* p, const uint8_t* end, std::vector<uint8_t>* buf, size_t* bytes) {
  if (buf->size() < static_cast<size_t>(end - p) + kPadding) buf->resize(static_cast<size_t>(end - p) + kPadding);
  uint8_t* out = buf->data();
  size_t n = 0;
  while (p < end) {
    const void* hit = std::memchr(p, 0xFF, static_cast<size_t>(end - p));
    const uint8_t* ff = hit ? static_cast<const uint8_t*>(hit) : end;
    std::memcpy(out + n, p, static_cast<size_t>(ff - p));
    n += static_cast<size_t>(ff - p);
    if (ff == end) break;
    if (ff + 1 >= end || ff[1] != 0) return false;
    out[n++] = 0xFF;
    p = ff + 2;
  }
  std::memset(out + n, 0, kPadding);
  *bytes = n;
  return true;
}

// A symbol whose code is longer than kFastBits (at least 16 bits must be in acc), or -1 for a code
// the table does not have.
inline int long_symbol(Bits& b, const Table& t) {
  const int32_t code16 = static_cast<int32_t>(b.acc >> 48);
  for (int l = kFastBits + 1; l <= 16; ++l) {
    const int32_t c = code16 >> (16 - l);
    if (c <= t.maxcode[l]) {
      b.skip(l);
      return t.values[(c + t.valoffset[l]) & 255];
    }
  }
  return -1;
}

inline int symbol(Bits& b, const Table& t) {  // the next symbol (at least 16 bits must be in acc), or -1
  const int32_t e = t.fast[b.acc >> (64 - kFastBits)];
  if (e) {
    b.skip(e & 31);
    return (e >> 8) & 255;
  }
  return long_symbol(b, t);
}

// One 8x8 block: its DC difference added to pred, its coefficients written to blk (which libjpeg
// has zeroed; a scratch block where libjpeg discards the MCU). False if the data is not valid.
inline bool block(Bits& b, const Table& dc, const Table& ac, int32_t& pred, JCOEF* blk) {
  b.refill();
  const int s = symbol(b, dc);
  if (s < 0) return false;
  if (s) pred += extend(b.take(s), s);  // s <= 15: validated with the table
  blk[0] = static_cast<JCOEF>(pred);
  int k = 1;
  while (k < 64) {
    b.refill();  // every step reads at most 31 bits
    const uint32_t peek = static_cast<uint32_t>(b.acc >> (64 - kFastBits));
    const int32_t c = ac.coef[peek];
    // One or two whole coefficients in one lookup, without a branch between them; not where the
    // first is the block's last (the bits after it are the next block's).
    if ((c & kCoef) && k + ((c >> 8) & 15) < 63) {
      k += (c >> 8) & 15;
      blk[kNatural[k]] = static_cast<int8_t>(c >> 16);
      k += 1 + ((c >> 12) & 15);
      blk[kNatural[k]] = static_cast<int8_t>(c >> 24);  // one coefficient: a 0 where nothing is yet
      k += (c >> 7) & 1;
      b.skip(c & 31);
      if (k > 64) return false;
      continue;
    }
    const int rs = symbol(b, ac);
    if (rs < 0) return false;
    const int run = rs >> 4, size = rs & 15;
    if (size == 0) {
      if (run != 15) break;  // end of block
      k += 16;               // sixteen zeros
      continue;
    }
    k += run;
    if (k > 63) return false;
    blk[kNatural[k]] = static_cast<JCOEF>(extend(b.take(size), size));
    ++k;
  }
  return !b.overrun();
}

// Where the MCUs libjpeg asks for are: MCU j of the decoded image (raster order, `cols` per row) is
// MCU (r0 + j / cols) * mcus_x + c0 + j % cols of the source, whose bytes run from starts[k] to
// starts[k + 1] - 2 (its restart marker, or the EOI after the last, is not part of it).
struct Source {
  const uint8_t* data = nullptr;
  const std::vector<size_t>* starts = nullptr;
  int64_t r0 = 0, c0 = 0, rows = 0, cols = 0, mcus_x = 0;
  int64_t next = 0;  // the MCU libjpeg asks for next
  std::vector<uint8_t> bytes;  // the MCU's bytes, unstuffed (Bits)
  int blocks = 0;    // blocks per MCU
  int component[D_MAX_BLOCKS_IN_MCU] = {};
  Table dc[NUM_HUFF_TBLS], ac[NUM_HUFF_TBLS];
  int dc_of[MAX_COMPS_IN_SCAN] = {}, ac_of[MAX_COMPS_IN_SCAN] = {};
};

[[noreturn]] inline void fail(j_decompress_ptr cinfo) {
  cinfo->err->msg_code = JERR_BAD_HUFF_TABLE;  // any error code: the caller only sees "failed"
  (*cinfo->err->error_exit)(reinterpret_cast<j_common_ptr>(cinfo));
  __builtin_unreachable();
}

inline boolean decode_mcu(j_decompress_ptr cinfo, JBLOCKROW* mcu) {
  Source& src = *static_cast<Source*>(cinfo->client_data);
  const int64_t j = src.next++;
  if (j >= src.rows * src.cols) fail(cinfo);
  const size_t k = static_cast<size_t>((src.r0 + j / src.cols) * src.mcus_x + src.c0 + j % src.cols);
  const std::vector<size_t>& starts = *src.starts;
  size_t nbytes = 0;
  if (!unstuff(src.data + starts[k], src.data + starts[k + 1] - 2, &src.bytes, &nbytes)) fail(cinfo);
  Bits b{src.bytes.data(), src.bytes.data(), nbytes};
  int32_t pred[MAX_COMPS_IN_SCAN] = {0, 0, 0, 0};  // a restart before every MCU
  JCOEF scratch[DCTSIZE2];                          // where a discarded MCU's blocks go
  for (int i = 0; i < src.blocks; ++i) {
    const int c = src.component[i];
    const Table &dc = src.dc[src.dc_of[c]], &ac = src.ac[src.ac_of[c]];
    if (!block(b, dc, ac, pred[c], mcu ? mcu[i][0] : scratch)) fail(cinfo);
  }
  return TRUE;
}

// The methods libjpeg calls on its entropy decoder (struct jpeg_entropy_decoder in jpegint.h, the
// same since IJG libjpeg 6b in every libjpeg-turbo): only decode_mcu is replaced.
struct DecoderMethods {
  void (*start_pass)(j_decompress_ptr cinfo);
  boolean (*decode_mcu)(j_decompress_ptr cinfo, JBLOCKROW* MCU_data);
};
#if defined(__has_include)
#if __has_include(<jpegint.h>)  // installed by some distributions (Debian's libjpeg62-turbo-dev): check
#include <jpegint.h>
#include <cstddef>
static_assert(offsetof(jpeg_entropy_decoder, decode_mcu) == offsetof(DecoderMethods, decode_mcu),
              "libjpeg's entropy decoder methods are not where this decoder expects them");
#endif
#endif

// Makes libjpeg take the MCUs of a started decompression (jpeg_start_decompress returned, nothing
// read yet) from src: false (and libjpeg's own decoder kept) where the scan is not a baseline
// 8-bit interleaved scan of rows x cols MCUs with tables this decoder accepts.
inline bool install(j_decompress_ptr cinfo, Source* src) {
  if (cinfo->progressive_mode || cinfo->arith_code || cinfo->data_precision != 8 || cinfo->entropy == nullptr ||
      cinfo->comps_in_scan != cinfo->num_components || cinfo->blocks_in_MCU > D_MAX_BLOCKS_IN_MCU ||
      static_cast<int64_t>(cinfo->MCUs_per_row) != src->cols ||
      static_cast<int64_t>(cinfo->MCU_rows_in_scan) != src->rows)
    return false;
  bool built_dc[NUM_HUFF_TBLS] = {}, built_ac[NUM_HUFF_TBLS] = {};
  for (int c = 0; c < cinfo->comps_in_scan; ++c) {
    const int d = cinfo->cur_comp_info[c]->dc_tbl_no, a = cinfo->cur_comp_info[c]->ac_tbl_no;
    if (d < 0 || d >= NUM_HUFF_TBLS || a < 0 || a >= NUM_HUFF_TBLS) return false;
    if (!built_dc[d] && !build(cinfo->dc_huff_tbl_ptrs[d], true, &src->dc[d])) return false;
    if (!built_ac[a] && !build(cinfo->ac_huff_tbl_ptrs[a], false, &src->ac[a])) return false;
    built_dc[d] = built_ac[a] = true;
    src->dc_of[c] = d;
    src->ac_of[c] = a;
  }
  src->blocks = cinfo->blocks_in_MCU;
  for (int i = 0; i < src->blocks; ++i) {
    if (cinfo->MCU_membership[i] < 0 || cinfo->MCU_membership[i] >= cinfo->comps_in_scan) return false;
    src->component[i] = cinfo->MCU_membership[i];
  }
  src->next = 0;
  cinfo->client_data = src;
  reinterpret_cast<DecoderMethods*>(cinfo->entropy)->decode_mcu = decode_mcu;
  return true;
}

}  // namespace jpeg_entropy
}  // namespace bridgedfast
