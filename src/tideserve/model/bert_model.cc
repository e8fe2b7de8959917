#include "tideserve/model/bert_model.h"

#include <cstdint>
#include <filesystem>
#include <string_view>
#include <system_error>
#include <utility>

#include <fmt/format.h>

namespace tideserve {
namespace {

constexpr std::string_view kPrefix = "bert.";
constexpr std::string_view kWordEmbeddings = "embeddings.word_embeddings.weight";

std::string shape_string(const std::vector<int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

// Looks up, checks and materializes the fp32 weights of one file.
class WeightReader {
 public:
  WeightReader(const SafetensorsFile& file, std::string prefix, const std::string& config_path,
               std::vector<std::unique_ptr<std::vector<float>>>& converted)
      : file_(file), prefix_(std::move(prefix)), config_path_(config_path), converted_(converted) {}

  Status error(const std::string& problem) const {
    return invalid_argument(file_.path() + ": " + problem);
  }

  // Finds `name` (without prefix); with `legacy`, also accepts that name (LayerNorm gamma/beta).
  const TensorView* find(const std::string& name, const std::string& legacy = "") const {
    const TensorView* t = file_.find(prefix_ + name);
    if (t == nullptr && !legacy.empty()) t = file_.find(prefix_ + legacy);
    return t;
  }

  Status missing(const std::string& name) const {
    std::string message = fmt::format("missing tensor '{}{}'", prefix_, name);
    const std::string other = prefix_.empty() ? std::string(kPrefix) + name : name;
    if (file_.find(other) != nullptr) {
      message += fmt::format(
          " (the file has '{}'; tensor names must all carry the '{}' prefix or none, as "
          "'{}{}' does)",
          other, kPrefix, prefix_, kWordEmbeddings);
    }
    return error(message);
  }

  // Loads tensor `name` (or its `legacy` spelling), which must have `expected` shape; `why`
  // explains the expectation in config.json terms.
  Status load(const std::string& name, const std::vector<int64_t>& expected, const std::string& why,
              FloatTensor& out, const std::string& legacy = "") {
    const TensorView* t = find(name, legacy);
    if (t == nullptr) return missing(name);
    return materialize(*t, expected, why, out);
  }

  Status materialize(const TensorView& t, const std::vector<int64_t>& expected,
                     const std::string& why, FloatTensor& out) {
    if (t.dtype != DType::kF32 && t.dtype != DType::kF16 && t.dtype != DType::kBF16) {
      return error(fmt::format("tensor '{}' has dtype {}; expected F32, F16 or BF16", t.name,
                               dtype_name(t.dtype)));
    }
    if (t.shape != expected) {
      return error(fmt::format("tensor '{}' has shape {}, expected {} from {} ({})", t.name,
                               shape_string(t.shape), shape_string(expected), config_path_, why));
    }
    out.shape = t.shape;
    if (t.dtype == DType::kF32 && reinterpret_cast<uintptr_t>(t.data) % alignof(float) == 0) {
      out.data = reinterpret_cast<const float*>(t.data);  // zero copy: a view into the mapping
      return Status::ok();
    }
    auto values = std::make_unique<std::vector<float>>();
    values->reserve(static_cast<size_t>(t.numel()));
    Status status = convert_to_f32(t, *values);
    if (!status.is_ok()) return error(status.message());
    out.data = values->data();
    converted_.push_back(std::move(values));
    // The fp32 copy is what every reader uses from now on: the source bytes need not stay in
    // this process's RSS.
    file_.mapping().release_pages(t.data, t.nbytes);
    return Status::ok();
  }

  // Number of encoder layers the file holds: one more than the largest N in encoder.layer.N.*.
  int64_t count_layers() const {
    const std::string layer_prefix = prefix_ + "encoder.layer.";
    int64_t count = 0;
    for (const TensorView& t : file_.tensors()) {
      std::string_view name = t.name;
      if (name.substr(0, layer_prefix.size()) != layer_prefix) continue;
      name.remove_prefix(layer_prefix.size());
      int64_t index = 0;
      size_t digits = 0;
      while (digits < name.size() && name[digits] >= '0' && name[digits] <= '9' && digits < 9) {
        index = index * 10 + (name[digits] - '0');
        ++digits;
      }
      if (digits == 0 || digits >= name.size() || name[digits] != '.') continue;
      count = std::max(count, index + 1);
    }
    return count;
  }

 private:
  const SafetensorsFile& file_;
  std::string prefix_;
  const std::string& config_path_;
  std::vector<std::unique_ptr<std::vector<float>>>& converted_;
};

}  // namespace

int64_t FloatTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Result<std::unique_ptr<BertModel>> BertModel::load(const std::string& dir) {
  const std::filesystem::path base(dir);
  const std::string config_path = (base / "config.json").string();
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    // Name config.json, the first file a model directory must hold, and say why it is missing.
    if (!std::filesystem::exists(dir, ec)) {
      return not_found(config_path + ": file not found (model directory " + dir +
                       " does not exist)");
    }
    return invalid_argument(config_path + ": file not found (" + dir + " is not a directory)");
  }
  Result<std::unique_ptr<BertModel>> model =
      load_files(config_path, (base / "model.safetensors").string());
  if (model.is_ok()) (*model)->directory_ = dir;
  return model;
}

Result<std::unique_ptr<BertModel>> BertModel::load_files(const std::string& config_path,
                                                         const std::string& weights_path) {
  Result<std::string> config_text = read_text_file(config_path);
  if (!config_text.is_ok()) return config_text.status();
  Result<BertConfig> config = parse_bert_config(*config_text, config_path);
  if (!config.is_ok()) return config.status();

  Result<SafetensorsFile> file = SafetensorsFile::open(weights_path);
  if (!file.is_ok()) return file.status();

  std::unique_ptr<BertModel> model(new BertModel());
  model->directory_ = std::filesystem::path(weights_path).parent_path().string();
  model->config_ = std::move(config).value();
  model->file_ = std::move(file).value();
  const BertConfig& c = model->config_;
  const SafetensorsFile& f = model->file_;
  BertWeights& w = model->weights_;

  std::string prefix;
  const TensorView* word = f.find(std::string(kPrefix) + std::string(kWordEmbeddings));
  if (word != nullptr) {
    prefix = kPrefix;
  } else {
    word = f.find(kWordEmbeddings);
    if (word == nullptr) {
      return invalid_argument(
          fmt::format("{}: missing tensor '{}' (or '{}{}'); is this a BERT model?", weights_path,
                      kWordEmbeddings, kPrefix, kWordEmbeddings));
    }
  }
  model->weights_dtype_ = word->dtype;
  WeightReader reader(f, prefix, config_path, model->converted_);

  const int64_t h = c.hidden_size;
  const int64_t file_layers = reader.count_layers();
  if (file_layers != c.num_hidden_layers) {
    return invalid_argument(
        fmt::format("{}: num_hidden_layers is {} but {} holds {} encoder layers", config_path,
                    c.num_hidden_layers, weights_path, file_layers));
  }

  const std::string hs = fmt::format("hidden_size {}", h);
  TS_RETURN_IF_ERROR(reader.materialize(*word, {c.vocab_size, h},
                                        fmt::format("vocab_size {}, {}", c.vocab_size, hs),
                                        w.word_embeddings));
  TS_RETURN_IF_ERROR(
      reader.load("embeddings.position_embeddings.weight", {c.max_position_embeddings, h},
                  fmt::format("max_position_embeddings {}, {}", c.max_position_embeddings, hs),
                  w.position_embeddings));
  TS_RETURN_IF_ERROR(reader.load("embeddings.token_type_embeddings.weight", {c.type_vocab_size, h},
                                 fmt::format("type_vocab_size {}, {}", c.type_vocab_size, hs),
                                 w.token_type_embeddings));
  TS_RETURN_IF_ERROR(reader.load("embeddings.LayerNorm.weight", {h}, hs, w.embeddings_norm_weight,
                                 "embeddings.LayerNorm.gamma"));
  TS_RETURN_IF_ERROR(reader.load("embeddings.LayerNorm.bias", {h}, hs, w.embeddings_norm_bias,
                                 "embeddings.LayerNorm.beta"));

  const int64_t inter = c.intermediate_size;
  const std::string is = fmt::format("intermediate_size {}, {}", inter, hs);
  w.layers.resize(static_cast<size_t>(c.num_hidden_layers));
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    BertLayerWeights& l = w.layers[static_cast<size_t>(i)];
    const std::string p = fmt::format("encoder.layer.{}.", i);
    auto linear = [&](const std::string& name, int64_t out_features, int64_t in_features,
                      const std::string& why, FloatTensor& weight, FloatTensor& bias) -> Status {
      TS_RETURN_IF_ERROR(
          reader.load(p + name + ".weight", {out_features, in_features}, why, weight));
      return reader.load(p + name + ".bias", {out_features}, why, bias);
    };
    auto norm = [&](const std::string& name, FloatTensor& weight, FloatTensor& bias) -> Status {
      TS_RETURN_IF_ERROR(reader.load(p + name + ".weight", {h}, hs, weight, p + name + ".gamma"));
      return reader.load(p + name + ".bias", {h}, hs, bias, p + name + ".beta");
    };
    TS_RETURN_IF_ERROR(linear("attention.self.query", h, h, hs, l.query_weight, l.query_bias));
    TS_RETURN_IF_ERROR(linear("attention.self.key", h, h, hs, l.key_weight, l.key_bias));
    TS_RETURN_IF_ERROR(linear("attention.self.value", h, h, hs, l.value_weight, l.value_bias));
    TS_RETURN_IF_ERROR(linear("attention.output.dense", h, h, hs, l.attention_output_weight,
                              l.attention_output_bias));
    TS_RETURN_IF_ERROR(
        norm("attention.output.LayerNorm", l.attention_norm_weight, l.attention_norm_bias));
    TS_RETURN_IF_ERROR(
        linear("intermediate.dense", inter, h, is, l.intermediate_weight, l.intermediate_bias));
    TS_RETURN_IF_ERROR(linear("output.dense", h, inter, is, l.output_weight, l.output_bias));
    TS_RETURN_IF_ERROR(norm("output.LayerNorm", l.output_norm_weight, l.output_norm_bias));
  }

  // The pooler is optional, but half a pooler is a broken file.
  const bool has_pooler_weight = reader.find("pooler.dense.weight") != nullptr;
  const bool has_pooler_bias = reader.find("pooler.dense.bias") != nullptr;
  if (has_pooler_weight || has_pooler_bias) {
    TS_RETURN_IF_ERROR(reader.load("pooler.dense.weight", {h, h}, hs, w.pooler_weight));
    TS_RETURN_IF_ERROR(reader.load("pooler.dense.bias", {h}, hs, w.pooler_bias));
    w.has_pooler = true;
  }

  // The sequence-classification head, outside the encoder's prefix: all of it or none.
  const TensorView* classifier_weight = f.find("classifier.weight");
  const TensorView* classifier_bias = f.find("classifier.bias");
  if (classifier_weight != nullptr || classifier_bias != nullptr) {
    if (classifier_weight == nullptr || classifier_bias == nullptr) {
      return invalid_argument(
          fmt::format("{}: has only one of 'classifier.weight' and "
                      "'classifier.bias'",
                      weights_path));
    }
    const int64_t labels =
        classifier_weight->shape.size() == 2 ? classifier_weight->shape[0] : int64_t{0};
    if (labels <= 0) {
      return invalid_argument(
          fmt::format("{}: tensor 'classifier.weight' has shape {}, expected "
                      "[num_labels, {}]",
                      weights_path, shape_string(classifier_weight->shape), h));
    }
    TS_RETURN_IF_ERROR(reader.materialize(*classifier_weight, {labels, h},
                                          fmt::format("num_labels, {}", hs), w.classifier_weight));
    TS_RETURN_IF_ERROR(reader.materialize(*classifier_bias, {labels},
                                          fmt::format("{} labels", labels), w.classifier_bias));
    w.has_classifier = true;
  }
  return model;
}

}  // namespace tideserve
