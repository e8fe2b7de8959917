// A loaded model: the one place that builds model, tokenizer, encoder, runner and core service
// from a model directory and checks them against each other. `serve`, `embed` and the engine
// benchmark all load through it.
//
//   load: the directory's declarations (model/model_directory.h: kind, sentence-transformers
//         modules, prompts, labels) -> config.json + model.safetensors (mapped) -> tokenizer
//         (tokenizer.json | vocab.txt), checked against the model's vocabulary -> limits (max
//         input length within the model's positions and the batch budget) -> encoder in the asked
//         precision -> head (pooling, Dense / Normalize, or the classifier) -> warm-up -> service
//
// Pooling: the --pooling flag, else what the directory declares (1_Pooling/config.json), else CLS
// (the original service's answer); info().pooling_source says which.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "tideserve/engine/precision.h"
#include "tideserve/runtime/embedding_service.h"
#include "tideserve/util/status.h"

namespace tideserve {
class BertModel;
struct ModelDirectory;
namespace engine {
class BertEncoder;
}
}  // namespace tideserve

namespace tideserve::runtime {

using Precision = engine::Precision;
using engine::auto_precisions;
using engine::cpu_isa_name;
using engine::parse_precision;
using engine::precision_name;

// The engine part of a model instance's options.
struct EngineOptions {
  int threads = 0;  // 0 = usable_cpus(): the affinity mask, capped by a cgroup CPU quota
  Precision precision = Precision::kF32;
  // --dtype auto: `precision` is ignored; the first of engine::auto_precisions() whose layers
  // all get an optimized kernel.
  bool auto_precision = false;
  bool allow_reference_kernels = false;  // --allow-reference-kernels (debugging)
  engine::Fp32Kernel fp32_kernel = engine::Fp32Kernel::kFastest;  // benchmarks force one
};

struct ModelOptions {
  std::string model_dir;
  std::string name;  // the name APIs use; empty: the directory's name
  std::string version = "1";
  std::optional<Pooling> pooling;  // unset: the directory's declaration, else CLS
  int64_t max_input_length = 0;    // 0 = sentence_bert_config.json's max_seq_length, else the
                                   // model's max_position_embeddings
  bool warm_up = true;
  EngineOptions engine;
  ServiceOptions service;
};

// The name APIs use: options.name, else the directory's name, else "model".
std::string model_name(const ModelOptions& options);

// How the load went, for the model_loaded log line and metrics.
struct LoadReport {
  double load_ms = 0;     // files, tokenizer, encoder, warm-up
  double warm_up_ms = 0;  // the warm-up part of it
  std::string matmul;     // the matmul implementation oneDNN chose
  int engine_threads = 0;
};

class ModelInstance {
 public:
  // Loads, checks and warms up; the service's engine worker is started.
  static Result<std::unique_ptr<ModelInstance>> load(const ModelOptions& options);
  ~ModelInstance();
  ModelInstance(const ModelInstance&) = delete;
  ModelInstance& operator=(const ModelInstance&) = delete;

  EmbeddingService& service() { return *service_; }
  const ModelInfo& info() const { return service_->info(); }
  const LoadReport& report() const { return report_; }
  // The encoder itself, for benchmarks that time the engine alone (not thread-safe: only while
  // no request is in flight).
  engine::BertEncoder& encoder() { return *encoder_; }

 private:
  ModelInstance();

  // Destroyed in reverse order: the service (and its scheduler) before what it runs on.
  std::unique_ptr<ModelDirectory> directory_;  // holds the Dense modules' weights
  std::unique_ptr<BertModel> model_;
  std::unique_ptr<text::Tokenizer> tokenizer_;
  std::unique_ptr<engine::BertEncoder> encoder_;
  std::unique_ptr<BatchRunner> runner_;
  std::unique_ptr<EmbeddingService> service_;
  LoadReport report_;
};

}  // namespace tideserve::runtime
