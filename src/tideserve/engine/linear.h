// A fully connected layer y = x W^T + b on a oneDNN matmul primitive, with its epilogue fused
// into the GEMM as post-ops: GELU (erf or tanh) and/or the residual add (the sum post-op: the
// output buffer holds the residual on entry and x W^T + b + residual on exit); or, in fp32 on
// AVX2 + FMA CPUs, on tideserve's packed GEMM (packed_gemm.h) where that is faster.
//
// The token count M changes with every batch. Creating a primitive per M would cost a JIT
// compile for every new batch shape, so the primitive is created once with a runtime M
// (DNNL_RUNTIME_DIM_VAL); bench/engine/matmul_bench measures that choice against per-M
// primitives. Where there are several candidates (converted weights in the plain "ba" layout or
// the blocked one oneDNN prefers; fp32 weights in place for oneDNN or packed for tideserve's
// GEMM), the one that runs a 128-token batch faster is kept (timed once per shape); a layout
// whose only kernel is oneDNN's reference loop is never used unless allow_reference.
//
// Precisions (the weights' storage and the GEMM's input type; accumulation and output are fp32):
//   kF32   oneDNN uses the caller's [out, in] weight buffer in place (it is the "ba" layout of
//          the [in, out] matrix; oneDNN's gemm runs it as fast as its own preferred layout here,
//          and at M=128 with N=3072 twice as fast); the packed GEMM copies it once into panels.
//   kBf16  weights converted to bfloat16 once; activations converted per call. Needs a CPU on
//          which oneDNN has a bf16 matmul (AVX512_CORE or newer); create() says so otherwise.
//   kInt8  weights quantized symmetrically per output row at load (s8), activations
//          quantized per call to u8 with one dynamic scale and zero point for the whole input
//          (the asymmetric u8 x s8 GEMM is the fastest integer path on x86). Without VNNI the
//          x86 u8 x s8 instructions add pairs of products into saturating int16, so weights keep
//          7 bits (|q| <= 63) on such CPUs and 8 bits on VNNI CPUs.
#pragma once

#include <cstdint>
#include <memory>
#include <utility>  // must precede oneDNN/Asio headers under C++20 with g++ 12
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>

#include "tideserve/engine/epilogue.h"
#include "tideserve/engine/packed_gemm.h"
#include "tideserve/engine/precision.h"
#include "tideserve/util/status.h"

namespace tideserve::engine {

// Largest weight magnitude the int8 path stores on this CPU: 127 with VNNI, 63 without.
int int8_weight_limit();

// The implementation name of tideserve's packed fp32 GEMM, beside oneDNN's ("gemm:jit").
inline constexpr const char* kPackedGemmImpl = "tideserve:avx2_packed";

struct LinearSpec {
  const float* weight = nullptr;  // [out_features, in_features] row-major (Hugging Face layout)
  const float* bias = nullptr;    // [out_features]
  int64_t out_features = 0;
  int64_t in_features = 0;
  Epilogue epilogue = Epilogue::kNone;
  Precision precision = Precision::kF32;
  // Distance between output rows; 0 = out_features. Lets several layers write column slices
  // of one wider buffer (Q, K and V into one [tokens, 3H] buffer).
  int64_t out_stride = 0;
  // Accept a oneDNN reference kernel ("ref:any": thousands of times slower) when it is the only
  // one for this precision and shape; otherwise create() refuses (kFailedPrecondition).
  bool allow_reference = false;
  Fp32Kernel fp32_kernel = Fp32Kernel::kFastest;
};

// Per-call buffers of the bf16 and int8 paths (converted activations, per-call scales). One
// scratch serves any number of layers called one after the other.
struct LinearScratch {
  std::vector<uint8_t> source;  // u8 activations or bf16 bit patterns
  std::vector<float> scales;    // int8: per-output-column scale of this call
  std::vector<float> bias;      // int8: bias divided by those scales
};

class Linear {
 public:
  // fp32 on oneDNN: `spec.weight` is used in place and must outlive the layer. Otherwise the
  // weights are converted or packed here and the caller's buffer may go away after
  // (owned_weight_bytes() > 0). The bias is always copied.
  static Result<std::unique_ptr<Linear>> create(const dnnl::engine& engine, const LinearSpec& spec);

  // out[M, out_features] (rows out_stride apart) = epilogue(in[M, in_features] W^T + b).
  // Runs on the calling thread's OpenMP thread count and returns when `out` is written.
  void forward(dnnl::stream& stream, const float* in, int64_t rows, float* out,
               LinearScratch& scratch) const;

  int64_t out_features() const { return out_features_; }
  int64_t in_features() const { return in_features_; }
  Precision precision() const { return precision_; }
  // The implementation that runs: the one oneDNN picked (e.g. "gemm:jit") or kPackedGemmImpl.
  const char* impl_name() const {
    return packed_ ? kPackedGemmImpl : primitive_desc_.impl_info_str();
  }
  // Bytes of weights this layer owns (0 for fp32 on oneDNN, whose weights are the caller's).
  size_t owned_weight_bytes() const;

 private:
  Linear() = default;

  dnnl::engine engine_;
  Precision precision_ = Precision::kF32;
  int64_t out_features_ = 0;
  int64_t in_features_ = 0;
  int64_t out_stride_ = 0;
  Epilogue epilogue_ = Epilogue::kNone;
  std::unique_ptr<PackedWeights> packed_;  // fp32 on tideserve's GEMM; no primitive then
  dnnl::matmul::primitive_desc primitive_desc_;
  dnnl::memory::desc weights_md_;  // the layout chosen for the weights
  dnnl::matmul primitive_;
  dnnl::memory weights_;
  dnnl::memory bias_;
  std::vector<float> bias_values_;   // int8: the fp32 bias, rescaled per call
  std::vector<float> weight_scale_;  // int8: per output row
  bool owns_weights_ = false;
};

}  // namespace tideserve::engine
