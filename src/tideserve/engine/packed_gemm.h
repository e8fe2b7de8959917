// tideserve's own fp32 GEMM for AVX2 + FMA: out = epilogue(in W^T + b), with W packed once at
// load into panels of 16 output columns, each holding its whole K dimension contiguous
// ([panel][k][16], zero-padded past the last column), so the inner kernel streams one panel
// with aligned loads and never repacks the weights per call.
//
// Why: oneDNN 2.6's gemm:jit copies (packs) the weight matrix on every call. That is a small
// cost for a 1024-token batch and a large one for a short query. bench/engine/gemm_pair runs
// the two side by side at given shapes; docs/benchmarks.md has its figures. Linear tries both
// and keeps the faster per shape.
//
// The kernel is a 6 x 16 register tile (12 accumulators). K runs in blocks of 384 values, one
// panel's block in L1, or whole up to 768 (the output is then never read back between blocks);
// blocks of 144 input rows, copied into 6-row strips, stay in L2. The epilogue runs on the tile
// in registers once the last K block is added. Threads split the output columns, so they never
// write the same value and need no barrier, and every value is the same sum in the same order
// on any thread count.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "tideserve/engine/epilogue.h"

namespace tideserve::engine {

// True on CPUs with AVX2 and FMA: the only ones the packed GEMM runs on.
bool packed_gemm_available();

class PackedWeights {
 public:
  // weight: [n, k] row-major (the Hugging Face layout), bias: [n]. Both are copied.
  PackedWeights(const float* weight, const float* bias, int64_t n, int64_t k);

  int64_t n() const { return n_; }
  int64_t k() const { return k_; }
  int64_t panels() const { return (n_ + 15) / 16; }
  const float* panel(int64_t p) const { return data_.get() + p * 16 * k_; }
  const float* bias(int64_t p) const { return bias_.get() + p * 16; }  // 16, zero-padded
  size_t bytes() const { return static_cast<size_t>(panels() * 16 * (k_ + 1)) * sizeof(float); }

 private:
  struct Free {
    void operator()(float* p) const;
  };
  int64_t n_ = 0;
  int64_t k_ = 0;
  std::unique_ptr<float[], Free> data_;
  std::unique_ptr<float[], Free> bias_;
};

// out[rows, n] (rows out_stride apart) = epilogue(in[rows, k] W^T + b). For kResidual, `out`
// holds the residual on entry. Runs on the calling thread's OpenMP thread count (one thread for
// small products). Call only where packed_gemm_available().
void packed_gemm(const float* in, int64_t rows, const PackedWeights& weights, Epilogue epilogue,
                 float* out, int64_t out_stride);

}  // namespace tideserve::engine
