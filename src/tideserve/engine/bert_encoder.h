// The BERT encoder on flat token batches: a batch is the concatenation of its sequences' tokens
// plus cumulative sequence lengths (cu_seqlens), so no GEMM ever sees padding.
//
//   embeddings (word + position + token type) -> LayerNorm
//   per layer: Q, K, V projections (into one [tokens, 3H] buffer) -> attention per sequence and
//              head over its real length
//              -> output projection (+bias +residual fused) -> LayerNorm
//              -> FFN up (+bias +GELU fused) -> FFN down (+bias +residual fused) -> LayerNorm
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>

#include "tideserve/engine/flat_batch.h"
#include "tideserve/engine/linear.h"
#include "tideserve/model/bert_model.h"
#include "tideserve/util/status.h"

namespace tideserve::engine {

struct EncoderOptions {
  int threads = 0;  // 0 = usable_cpus(): the affinity mask, capped by a cgroup CPU quota
  // Precision of the four linear layers of every encoder layer; embeddings, LayerNorm,
  // attention and pooling stay fp32.
  Precision precision = Precision::kF32;
  // A batch whose GEMM work per layer is below this runs on one thread (0: always `threads`).
  // 20 MFLOP is ~0.3 ms of one core here, the scale at which fork/join and wake-ups eat the gain.
  double min_parallel_layer_flops = 20e6;
  // Run a linear layer on oneDNN's reference kernel when nothing else exists for the precision
  // (debugging only: thousands of times slower); otherwise create() refuses the precision.
  bool allow_reference_kernels = false;
  // fp32 only: the faster GEMM per shape, or one forced (benchmarks and tests).
  Fp32Kernel fp32_kernel = Fp32Kernel::kFastest;
};

struct EncoderOutput {
  std::vector<float> hidden;  // [num_tokens, hidden_size], row-major
  int64_t num_tokens = 0;
  int64_t hidden_size = 0;
};

class BertEncoder {
 public:
  // Prepares the weights and primitives. `model` must outlive the encoder: embedding and
  // LayerNorm tables, and in fp32 the linear weights too, stay views into it. Returns
  // kFailedPrecondition when the CPU cannot run `options.precision`.
  static Result<std::unique_ptr<BertEncoder>> create(const BertModel& model,
                                                     const EncoderOptions& options = {});

  // Checks a batch against the model's limits (ids in vocab, lengths within positions, ...).
  Status validate(const EncoderBatch& batch) const;

  // Runs the embeddings and the first `num_layers` layers (-1: all) and writes the last hidden
  // states. Not thread-safe: one caller at a time (the runtime's engine worker).
  Status forward(const EncoderBatch& batch, EncoderOutput& output, int num_layers = -1);

  const BertConfig& config() const { return config_; }
  int threads() const { return threads_; }
  Precision precision() const { return precision_; }
  // The implementations oneDNN runs the linear layers on, distinct, in layer order
  // ("gemm:jit" or "gemm:jit,brg:avx512_core_amx").
  std::string matmul_impl() const;
  // Bytes of converted weights the encoder owns (0 in fp32: the weights are the model's).
  size_t owned_weight_bytes() const;

 private:
  struct Layer {
    // Q, K and V write column slices [0,H), [H,2H), [2H,3H) of one [tokens, 3H] buffer.
    std::unique_ptr<Linear> query, key, value;  // [H, H], bias
    std::unique_ptr<Linear> attn_out;           // [H, H], bias + residual
    std::unique_ptr<Linear> ffn_up;             // [I, H], bias + GELU
    std::unique_ptr<Linear> ffn_down;           // [H, I], bias + residual
    const float* attn_norm_gamma = nullptr;
    const float* attn_norm_beta = nullptr;
    const float* out_norm_gamma = nullptr;
    const float* out_norm_beta = nullptr;
  };

  BertEncoder() = default;
  void embed(const EncoderBatch& batch, float* out) const;
  void attention(const EncoderBatch& batch, const float* qkv, float* context);

  BertConfig config_;
  const BertWeights* weights_ = nullptr;
  int threads_ = 1;
  int batch_threads_ = 1;  // threads_ or 1, per batch
  double min_parallel_layer_flops_ = 0;
  Precision precision_ = Precision::kF32;
  dnnl::engine engine_;
  dnnl::stream stream_;
  std::vector<Layer> layers_;
  // Workspace, grown on demand and reused across batches.
  std::vector<float> qkv_;
  std::vector<float> context_;
  std::vector<float> intermediate_;
  LinearScratch linear_scratch_;
  std::vector<std::vector<float>> scores_;  // one [L, L] scratch per thread
};

}  // namespace tideserve::engine
