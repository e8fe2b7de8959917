// A fully connected layer y = x W^T + b on a oneDNN matmul primitive, with its epilogue fused
// into the GEMM as post-ops: GELU (erf or tanh) and/or the residual add (the sum post-op: the
// output buffer holds the residual on entry and x W^T + b + residual on exit).
//
// The token count M changes with every batch. Creating a primitive per M would cost a JIT
// compile for every new batch shape, so the primitive is created once with a runtime M
// (DNNL_RUNTIME_DIM_VAL); bench/engine_bench measures that choice against per-M primitives.
// The weights are reordered once, at construction, into the layout the primitive prefers.
#pragma once

#include <cstdint>
#include <memory>
#include <utility>  // must precede oneDNN/Asio headers under C++20 with g++ 12

#include <oneapi/dnnl/dnnl.hpp>

#include "tideserve/util/status.h"

namespace tideserve::engine {

enum class Epilogue {
  kNone,
  kGeluErf,
  kGeluTanh,
  kResidual,  // out = x W^T + b + out
};

class Linear {
 public:
  // `weight` is [out_features, in_features] row-major (the Hugging Face layout), `bias`
  // [out_features]. Both are copied/reordered here; the caller's buffers may go away after.
  static Result<std::unique_ptr<Linear>> create(const dnnl::engine& engine, const float* weight,
                                                const float* bias, int64_t out_features,
                                                int64_t in_features, Epilogue epilogue);

  // out[M, out_features] = epilogue(in[M, in_features] W^T + b). Runs on the calling thread's
  // OpenMP thread count.
  void forward(dnnl::stream& stream, const float* in, int64_t rows, float* out) const;

  int64_t out_features() const { return out_features_; }
  int64_t in_features() const { return in_features_; }
  // The implementation oneDNN picked (e.g. "gemm:jit"), for logs and benchmarks.
  const char* impl_name() const { return primitive_desc_.impl_info_str(); }

 private:
  Linear() = default;

  dnnl::engine engine_;
  int64_t out_features_ = 0;
  int64_t in_features_ = 0;
  dnnl::matmul::primitive_desc primitive_desc_;
  dnnl::matmul primitive_;
  dnnl::memory weights_;
  dnnl::memory bias_;
};

}  // namespace tideserve::engine
