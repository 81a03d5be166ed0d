// CUDA resized_crop against the CPU kernel on the same batch; exits 77 (ctest: skipped) when no
// GPU is visible, so the CUDA build is still proven by compiling and linking.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <vector>

#include "bridgedfast/resized_crop.h"
#include "cuda_check.h"

using namespace bridgedfast;
using bftest::to_device;

BF_TEST(cuda_matches_cpu) {
  std::mt19937 rng(5);
  std::vector<uint8_t> data;
  std::vector<ResizedCropImage> images;
  const int n = 37, out_h = 31, out_w = 26;
  for (int i = 0; i < n; ++i) {
    const int h = std::uniform_int_distribution<int>(1, 300)(rng), w = std::uniform_int_distribution<int>(1, 300)(rng);
    ResizedCropImage im{};
    im.offset = static_cast<int64_t>(data.size());
    im.height = h;
    im.width = w;
    for (int64_t k = 0; k < 3LL * h * w; ++k) data.push_back(static_cast<uint8_t>(rng()));
    const int bh = std::uniform_int_distribution<int>(1, h)(rng), bw = std::uniform_int_distribution<int>(1, w)(rng);
    im.y = AxisMap{std::uniform_int_distribution<int>(0, h - bh)(rng), bh, out_h + (i % 3 == 0 ? 5 : 0), i % 3 == 0 ? 2 : 0};
    im.x = AxisMap{std::uniform_int_distribution<int>(0, w - bw)(rng), bw, out_w + (i % 3 == 0 ? 3 : 0), i % 3 == 0 ? 1 : 0};
    im.flip = i % 2;
    images.push_back(im);
  }
  uint8_t* d_data = to_device(data);
  ResizedCropImage* d_images = to_device(images);
  for (bool aa : {true, false}) {
    for (bool cl : {false, true}) {
      ResizedCropParams p{};
      p.n = n, p.out_h = out_h, p.out_w = out_w, p.antialias = aa, p.channels_last = cl, p.dtype = OutDType::kFloat32;
      for (int c = 0; c < 3; ++c) p.scale[c] = 1.0f / (255.0f * 0.25f), p.shift[c] = -2.0f;
      int max_taps = 1;
      for (const auto& im : images) max_taps = std::max({max_taps, axis_max_taps(im.y, aa), axis_max_taps(im.x, aa)});
      const size_t total = static_cast<size_t>(n) * 3 * out_h * out_w;
      std::vector<float> cpu(total), gpu(total);
      resized_crop_cpu(data.data(), images.data(), p, cpu.data());
      void* workspace = nullptr;
      float* d_out = nullptr;
      cudaMalloc(&workspace, resized_crop_cuda_workspace_bytes(p, max_taps));
      cudaMalloc(&d_out, total * sizeof(float));
      BF_CHECK(resized_crop_cuda(d_data, d_images, p, max_taps, workspace, d_out, nullptr) == 0);
      BF_CHECK(cudaMemcpy(gpu.data(), d_out, total * sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess);
      double max_err = 0;
      for (size_t k = 0; k < total; ++k) max_err = std::max(max_err, (double)std::fabs(cpu[k] - gpu[k]));
      BF_CHECK_NEAR(max_err, 0.0, 1e-4);
      cudaFree(workspace), cudaFree(d_out);
    }
  }
  cudaFree(d_data), cudaFree(d_images);
}

// More row blocks than grid.y takes (65535 * 8 rows) and more images than grid.z takes: the
// kernel must stride over both and still write every output value.
BF_TEST(cuda_strides_past_grid_limits) {
  struct Case {
    int n, out_h, out_w;
  };
  for (const Case c : {Case{1, 600000, 2}, Case{70000, 2, 3}}) {
    std::mt19937 rng(9);
    std::vector<uint8_t> data(static_cast<size_t>(c.n) * 3 * 4 * 3);
    for (auto& v : data) v = static_cast<uint8_t>(rng());
    std::vector<ResizedCropImage> images(c.n);
    for (int i = 0; i < c.n; ++i) {
      ResizedCropImage im{};
      im.offset = static_cast<int64_t>(i) * 36, im.height = 3, im.width = 4;
      im.y = AxisMap{0, 3, c.out_h, 0};
      im.x = AxisMap{1, 3, c.out_w, 0};
      im.flip = i % 2;
      images[i] = im;
    }
    ResizedCropParams p{};
    p.n = c.n, p.out_h = c.out_h, p.out_w = c.out_w, p.antialias = true, p.dtype = OutDType::kFloat32;
    for (int k = 0; k < 3; ++k) p.scale[k] = 1.0f / 255.0f, p.shift[k] = 0.0f;
    int max_taps = 1;
    for (const auto& im : images) max_taps = std::max({max_taps, axis_max_taps(im.y, true), axis_max_taps(im.x, true)});
    const size_t total = static_cast<size_t>(c.n) * 3 * c.out_h * c.out_w;
    std::vector<float> cpu(total), gpu(total);
    resized_crop_cpu(data.data(), images.data(), p, cpu.data());
    uint8_t* d_data = to_device(data);
    ResizedCropImage* d_images = to_device(images);
    void* workspace = nullptr;
    float* d_out = nullptr;
    cudaMalloc(&workspace, resized_crop_cuda_workspace_bytes(p, max_taps));
    cudaMalloc(&d_out, total * sizeof(float));
    cudaMemset(d_out, 0xff, total * sizeof(float));  // NaN wherever the kernel does not write
    BF_CHECK(resized_crop_cuda(d_data, d_images, p, max_taps, workspace, d_out, nullptr) == 0);
    BF_CHECK(cudaMemcpy(gpu.data(), d_out, total * sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess);
    double max_err = 0;
    for (size_t k = 0; k < total; ++k) {
      const double err = std::fabs(static_cast<double>(cpu[k]) - gpu[k]);
      max_err = std::isnan(err) ? 1e30 : std::max(max_err, err);
    }
    BF_CHECK_NEAR(max_err, 0.0, 1e-5);
    cudaFree(d_data), cudaFree(d_images), cudaFree(workspace), cudaFree(d_out);
  }
}

BF_CUDA_TEST_MAIN()
