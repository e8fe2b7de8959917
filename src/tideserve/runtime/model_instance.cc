#include "tideserve/runtime/model_instance.h"

#include <algorithm>
#include <filesystem>

#include <fmt/format.h>

#include "tideserve/engine/bert_encoder.h"
#include "tideserve/model/bert_model.h"
#include "tideserve/model/model_directory.h"
#include "tideserve/runtime/encoder_runner.h"

namespace tideserve::runtime {

std::string model_name(const ModelOptions& options) {
  if (!options.name.empty()) return options.name;
  std::string name = std::filesystem::path(options.model_dir).filename().string();
  return name.empty() ? "model" : name;
}

ModelInstance::ModelInstance() = default;
ModelInstance::~ModelInstance() = default;

namespace {

// The head after the encoder: the directory's modules for an embedding model, the pooler and
// classifier for the others.
Result<engine::Head> make_head(const ModelDirectory& dir, const BertModel& model) {
  engine::Head head;
  const BertWeights& w = model.weights();
  head.input_size = model.config().hidden_size;
  if (dir.kind != ModelKind::kEmbedding) {
    const std::string weights = dir.transformer_dir + "/model.safetensors";
    if (!w.has_classifier) {
      return invalid_argument(
          fmt::format("{}: config.json names BertForSequenceClassification but the file has no "
                      "'classifier.weight'",
                      weights));
    }
    if (!w.has_pooler) {
      return invalid_argument(fmt::format(
          "{}: a sequence classifier needs the pooler ('pooler.dense.weight')", weights));
    }
    const int64_t labels = w.classifier_weight.dim(0);
    if (labels != static_cast<int64_t>(dir.labels.size())) {
      return invalid_argument(
          fmt::format("{}: 'classifier.weight' scores {} labels but config.json declares {}",
                      weights, labels, dir.labels.size()));
    }
    head.pooling = engine::Pooling::kCls;
    head.steps.push_back({.dense = {w.pooler_weight.data, w.pooler_bias.data, head.input_size,
                                    head.input_size, DenseActivation::kTanh}});
    head.steps.push_back({.dense = {w.classifier_weight.data, w.classifier_bias.data,
                                    head.input_size, labels, DenseActivation::kIdentity}});
    return head;
  }
  int64_t width = head.input_size;
  for (const PostPoolingModule& m : dir.modules) {
    if (m.type == PostPoolingModule::Type::kNormalize) {
      head.steps.push_back({.normalize = true, .dense = {}});
      continue;
    }
    const DenseModule& d = m.dense;
    if (d.in_features != width) {
      return invalid_argument(
          fmt::format("{}/config.json: in_features is {} but the module "
                      "before it gives {} features",
                      d.path, d.in_features, width));
    }
    head.steps.push_back({.dense = {d.weight.data(), d.bias.empty() ? nullptr : d.bias.data(),
                                    d.in_features, d.out_features, d.activation}});
    width = d.out_features;
  }
  return head;
}

}  // namespace

Result<std::unique_ptr<ModelInstance>> ModelInstance::load(const ModelOptions& options) {
  const auto start = Clock::now();
  std::unique_ptr<ModelInstance> instance(new ModelInstance());
  auto directory = read_model_directory(options.model_dir);
  if (!directory.is_ok()) return directory.status();
  instance->directory_ = std::make_unique<ModelDirectory>(std::move(directory).value());
  const ModelDirectory& dir = *instance->directory_;
  auto model = BertModel::load(dir.transformer_dir);
  if (!model.is_ok()) return model.status();
  instance->model_ = std::move(model).value();
  auto tokenizer = text::Tokenizer::load(dir.transformer_dir);
  if (!tokenizer.is_ok()) return tokenizer.status();
  instance->tokenizer_ = std::move(tokenizer).value();
  const BertConfig& config = instance->model_->config();
  if (static_cast<int64_t>(instance->tokenizer_->vocab_size()) > config.vocab_size) {
    return invalid_argument(
        fmt::format("{}: the tokenizer has {} tokens but the model's vocab_size is {}",
                    options.model_dir, instance->tokenizer_->vocab_size(), config.vocab_size));
  }
  if (dir.pooling_dimension > 0 && dir.pooling_dimension != config.hidden_size) {
    return invalid_argument(
        fmt::format("{}: word_embedding_dimension is {} but the model's "
                    "hidden_size is {}",
                    dir.pooling_source, dir.pooling_dimension, config.hidden_size));
  }
  // The pooling: the flag, else the directory's declaration, else CLS.
  Pooling pooling = Pooling::kCls;
  std::string pooling_source =
      "no pooling declared (no 1_Pooling/config.json): CLS, the original service's pooling";
  if (options.pooling) {
    pooling = *options.pooling;
    pooling_source = "--pooling";
  } else if (!dir.pooling.empty()) {
    auto declared = engine::parse_pooling(dir.pooling);
    if (!declared.is_ok()) {
      return invalid_argument(dir.pooling_source + ": " + declared.status().message());
    }
    pooling = *declared;
    pooling_source = dir.pooling_source;
  }
  const int64_t declared_length = std::min(dir.max_seq_length, config.max_position_embeddings);
  const int64_t max_input_length = options.max_input_length > 0 ? options.max_input_length
                                   : declared_length > 0        ? declared_length
                                                                : config.max_position_embeddings;
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
  // The precision asked for, or with --dtype auto the fastest this CPU runs on optimized
  // kernels (a precision oneDNN only has a reference kernel for is refused by the encoder).
  std::vector<Precision> precisions{options.engine.precision};
  if (options.engine.auto_precision) precisions = auto_precisions();
  Status refused;
  for (Precision precision : precisions) {
    auto encoder = engine::BertEncoder::create(
        *instance->model_, {.threads = options.engine.threads,
                            .precision = precision,
                            .allow_reference_kernels = options.engine.allow_reference_kernels,
                            .fp32_kernel = options.engine.fp32_kernel});
    if (encoder.is_ok()) {
      instance->encoder_ = std::move(encoder).value();
      break;
    }
    refused = encoder.status();
  }
  if (!instance->encoder_) return refused;
  auto head = make_head(dir, *instance->model_);
  if (!head.is_ok()) return head.status();
  instance->runner_ = std::make_unique<EncoderRunner>(*instance->encoder_, std::move(head).value());
  if (options.warm_up) {
    const auto warm_up_start = Clock::now();
    TS_RETURN_IF_ERROR(warm_up(*instance->runner_, max_input_length, max_batch_tokens));
    instance->report_.warm_up_ms = ms_since(warm_up_start);
  }

  ModelInfo info;
  info.name = model_name(options);
  info.version = options.version;
  info.dtype = engine::precision_name(instance->encoder_->precision());
  info.matmul = instance->encoder_->matmul_impl();
  info.kind = dir.kind;
  info.pooling = pooling;
  info.pooling_source = dir.kind == ModelKind::kEmbedding
                            ? pooling_source
                            : "the classifier head: CLS -> pooler -> classifier";
  info.hidden_size = config.hidden_size;
  info.normalizes = dir.normalizes;
  info.vocab_size = config.vocab_size;
  info.max_input_length = max_input_length;
  info.prompts = dir.prompts;
  info.default_prompt_name = dir.default_prompt_name;
  info.include_prompt = dir.include_prompt;
  info.do_lower_case = dir.do_lower_case;
  info.labels = dir.labels;
  info.problem_type = dir.problem_type;
  info.single_label_sigmoid = dir.single_label_sigmoid;
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
