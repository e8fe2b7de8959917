#include "tideserve/runtime/model_instance.h"

#include <filesystem>

#include <fmt/format.h>

#include "tideserve/engine/bert_encoder.h"
#include "tideserve/model/bert_model.h"
#include "tideserve/runtime/encoder_runner.h"

namespace tideserve::runtime {

std::string model_name(const ModelOptions& options) {
  if (!options.name.empty()) return options.name;
  std::string name = std::filesystem::path(options.model_dir).filename().string();
  return name.empty() ? "model" : name;
}

ModelInstance::ModelInstance() = default;
ModelInstance::~ModelInstance() = default;

Result<std::unique_ptr<ModelInstance>> ModelInstance::load(const ModelOptions& options) {
  const auto start = Clock::now();
  std::unique_ptr<ModelInstance> instance(new ModelInstance());
  auto model = BertModel::load(options.model_dir);
  if (!model.is_ok()) return model.status();
  instance->model_ = std::move(model).value();
  auto tokenizer = text::Tokenizer::load(options.model_dir);
  if (!tokenizer.is_ok()) return tokenizer.status();
  instance->tokenizer_ = std::move(tokenizer).value();
  const BertConfig& config = instance->model_->config();
  if (static_cast<int64_t>(instance->tokenizer_->vocab_size()) > config.vocab_size) {
    return invalid_argument(
        fmt::format("{}: the tokenizer has {} tokens but the model's vocab_size is {}",
                    options.model_dir, instance->tokenizer_->vocab_size(), config.vocab_size));
  }
  const int64_t max_input_length =
      options.max_input_length > 0 ? options.max_input_length : config.max_position_embeddings;
  if (max_input_length > config.max_position_embeddings) {
    return invalid_argument(
        fmt::format("--max-input-length {} exceeds the model's max_position_embeddings {}",
                    max_input_length, config.max_position_embeddings));
  }
  const int64_t max_batch_tokens = options.service.scheduler.max_batch_tokens;
  if (max_input_length > max_batch_tokens) {
    return invalid_argument(
        fmt::format("--max-batch-tokens {} is smaller than the max input length {}",
                    max_batch_tokens, max_input_length));
  }
  auto encoder = engine::BertEncoder::create(
      *instance->model_,
      {.threads = options.engine.threads, .precision = options.engine.precision});
  if (!encoder.is_ok()) return encoder.status();
  instance->encoder_ = std::move(encoder).value();
  instance->runner_ = std::make_unique<EncoderRunner>(*instance->encoder_);
  if (options.warm_up) {
    const auto warm_up_start = Clock::now();
    TS_RETURN_IF_ERROR(warm_up(*instance->runner_, max_input_length, max_batch_tokens));
    instance->report_.warm_up_ms = ms_since(warm_up_start);
  }

  ModelInfo info;
  info.name = model_name(options);
  info.version = options.version;
  info.dtype = engine::precision_name(instance->encoder_->precision());
  info.pooling = options.pooling;
  info.vocab_size = config.vocab_size;
  info.max_input_length = max_input_length;
  instance->service_ = std::make_unique<EmbeddingService>(*instance->runner_, *instance->tokenizer_,
                                                          std::move(info), options.service);
  instance->service_->start();

  LoadReport& report = instance->report_;
  report.matmul = instance->encoder_->matmul_impl();
  report.engine_threads = instance->encoder_->threads();
  report.load_ms = ms_since(start);
  return instance;
}

}  // namespace tideserve::runtime
