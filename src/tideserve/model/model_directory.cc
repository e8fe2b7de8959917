#include "tideserve/model/model_directory.h"

#include <simdjson.h>

#include <charconv>
#include <filesystem>
#include <memory>
#include <optional>
#include <system_error>

#include <fmt/format.h>

#include "tideserve/model/safetensors.h"
#include "tideserve/util/mapped_file.h"

namespace tideserve {

namespace {

namespace fs = std::filesystem;
using simdjson::dom::element;
using simdjson::dom::element_type;

// One JSON file of the directory, parsed; errors name it.
class JsonFile {
 public:
  static Result<JsonFile> open(const fs::path& path) {
    JsonFile file;
    file.path_ = path.string();
    auto text = read_text_file(file.path_);
    if (!text.is_ok()) return text.status();
    file.parser_ = std::make_unique<simdjson::dom::parser>();
    element root;
    if (auto err = file.parser_->parse(*text).get(root); err != simdjson::SUCCESS) {
      return invalid_argument(
          fmt::format("{}: not valid JSON: {}", file.path_, simdjson::error_message(err)));
    }
    file.root_ = root;
    return file;
  }

  const std::string& path() const { return path_; }
  element root() const { return root_; }

  Status error(const std::string& problem) const {
    return invalid_argument(path_ + ": " + problem);
  }
  Status expect_object(element value, std::string_view what) const {
    if (value.type() == element_type::OBJECT) return Status::ok();
    return error(fmt::format("{} must be a JSON object", what));
  }
  // Member `key` of `object`, absent when missing or null.
  static std::optional<element> member(element object, std::string_view key) {
    element value;
    if (object.type() != element_type::OBJECT || object[key].get(value) != simdjson::SUCCESS ||
        value.is_null()) {
      return std::nullopt;
    }
    return value;
  }
  Status read_bool(element object, std::string_view key, bool& out) const {
    auto v = member(object, key);
    if (!v) return Status::ok();
    if (v->type() != element_type::BOOL) return error(fmt::format("\"{}\" must be a boolean", key));
    out = bool(*v);
    return Status::ok();
  }
  Status read_int(element object, std::string_view key, int64_t& out) const {
    auto v = member(object, key);
    if (!v) return Status::ok();
    if (v->type() != element_type::INT64 || int64_t(*v) < 0) {
      return error(fmt::format("\"{}\" must be a non-negative integer", key));
    }
    out = int64_t(*v);
    return Status::ok();
  }
  Status read_string(element object, std::string_view key, std::string& out) const {
    auto v = member(object, key);
    if (!v) return Status::ok();
    if (v->type() != element_type::STRING)
      return error(fmt::format("\"{}\" must be a string", key));
    out = std::string(std::string_view(*v));
    return Status::ok();
  }

 private:
  std::string path_;
  std::unique_ptr<simdjson::dom::parser> parser_;
  element root_;
};

bool path_exists(const fs::path& path) {
  std::error_code ec;
  return fs::exists(path, ec);
}

// "sentence_transformers.models.Dense" -> "Dense".
std::string_view last_component(std::string_view name) {
  const size_t dot = name.rfind('.');
  return dot == std::string_view::npos ? name : name.substr(dot + 1);
}

Status read_pooling(const fs::path& dir, ModelDirectory& out) {
  auto file = JsonFile::open(dir / "config.json");
  if (!file.is_ok()) return file.status();
  element root = file->root();
  TS_RETURN_IF_ERROR(file->expect_object(root, "the pooling config"));
  // The modes in the order sentence-transformers concatenates them.
  static constexpr std::pair<std::string_view, std::string_view> kModes[] = {
      {"pooling_mode_cls_token", "cls"},
      {"pooling_mode_max_tokens", "max"},
      {"pooling_mode_mean_tokens", "mean"},
      {"pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len_tokens"},
      {"pooling_mode_weightedmean_tokens", "weightedmean"},
      {"pooling_mode_lasttoken", "lasttoken"},
  };
  std::vector<std::string_view> enabled;
  for (const auto& [key, mode] : kModes) {
    bool on = false;
    TS_RETURN_IF_ERROR(file->read_bool(root, key, on));
    if (on) enabled.push_back(mode);
  }
  if (enabled.empty()) {
    std::string mode;
    TS_RETURN_IF_ERROR(file->read_string(root, "pooling_mode", mode));
    if (mode.empty()) return file->error("no pooling_mode_* is true: the pooling is not declared");
    out.pooling = mode;  // checked against the engine's modes at load
  } else if (enabled.size() > 1) {
    return file->error(fmt::format(
        "pooling modes {} are all enabled; tideserve serves one pooling mode per model, not their "
        "concatenation",
        fmt::join(enabled, " + ")));
  } else {
    out.pooling = std::string(enabled.front());
  }
  out.pooling_source = file->path();
  TS_RETURN_IF_ERROR(file->read_int(root, "word_embedding_dimension", out.pooling_dimension));
  TS_RETURN_IF_ERROR(file->read_bool(root, "include_prompt", out.include_prompt));
  return Status::ok();
}

Result<DenseActivation> parse_activation(const JsonFile& file, std::string_view name) {
  const std::string_view base = last_component(name);
  if (base == "Identity") return DenseActivation::kIdentity;
  if (base == "Tanh") return DenseActivation::kTanh;
  if (base == "ReLU") return DenseActivation::kRelu;
  if (base == "Sigmoid") return DenseActivation::kSigmoid;
  if (base == "GELU") return DenseActivation::kGelu;
  return file.error(fmt::format(
      "activation_function \"{}\" is not supported (Identity, Tanh, ReLU, Sigmoid, GELU)", name));
}

Status read_dense(const fs::path& dir, DenseModule& dense) {
  auto file = JsonFile::open(dir / "config.json");
  if (!file.is_ok()) return file.status();
  element root = file->root();
  TS_RETURN_IF_ERROR(file->expect_object(root, "the Dense config"));
  dense.path = dir.string();
  TS_RETURN_IF_ERROR(file->read_int(root, "in_features", dense.in_features));
  TS_RETURN_IF_ERROR(file->read_int(root, "out_features", dense.out_features));
  if (dense.in_features <= 0 || dense.out_features <= 0) {
    return file->error("in_features and out_features must be positive integers");
  }
  bool bias = true;
  TS_RETURN_IF_ERROR(file->read_bool(root, "bias", bias));
  std::string activation = "torch.nn.modules.activation.Tanh";  // the module's default
  TS_RETURN_IF_ERROR(file->read_string(root, "activation_function", activation));
  auto act = parse_activation(*file, activation);
  if (!act.is_ok()) return act.status();
  dense.activation = *act;

  const fs::path weights = dir / "model.safetensors";
  if (!path_exists(weights) && path_exists(dir / "pytorch_model.bin")) {
    return invalid_argument(fmt::format(
        "{}: only pytorch_model.bin is there; tideserve reads safetensors (save the module with "
        "safe_serialization or convert it)",
        weights.string()));
  }
  auto st = SafetensorsFile::open(weights.string());
  if (!st.is_ok()) return st.status();
  auto load = [&](const char* name, std::vector<int64_t> shape, std::vector<float>& out) -> Status {
    const TensorView* t = st->find(name);
    if (t == nullptr)
      return invalid_argument(fmt::format("{}: missing tensor '{}'", weights.string(), name));
    if (t->shape != shape) {
      return invalid_argument(fmt::format("{}: tensor '{}' has shape [{}], expected [{}] from {}",
                                          weights.string(), name, fmt::join(t->shape, ", "),
                                          fmt::join(shape, ", "), file->path()));
    }
    Status converted = convert_to_f32(*t, out);
    if (!converted.is_ok()) return invalid_argument(weights.string() + ": " + converted.message());
    return Status::ok();
  };
  TS_RETURN_IF_ERROR(load("linear.weight", {dense.out_features, dense.in_features}, dense.weight));
  if (bias) TS_RETURN_IF_ERROR(load("linear.bias", {dense.out_features}, dense.bias));
  return Status::ok();
}

Status read_modules(const fs::path& root_dir, ModelDirectory& out) {
  auto file = JsonFile::open(root_dir / "modules.json");
  if (!file.is_ok()) return file.status();
  if (file->root().type() != element_type::ARRAY) return file->error("must be a JSON array");
  size_t index = 0;
  for (element module : simdjson::dom::array(file->root())) {
    TS_RETURN_IF_ERROR(file->expect_object(module, fmt::format("module {}", index)));
    std::string type, path;
    TS_RETURN_IF_ERROR(file->read_string(module, "type", type));
    TS_RETURN_IF_ERROR(file->read_string(module, "path", path));
    const std::string_view base = last_component(type);
    const fs::path dir = path.empty() ? root_dir : root_dir / path;
    const bool first = index == 0;
    if (base == "Transformer") {
      if (!first) return file->error("the Transformer module must come first");
      out.transformer_dir = dir.string();
    } else if (first) {
      return file->error(
          fmt::format("module 0 is \"{}\"; tideserve serves directories whose first module is the "
                      "Transformer (a BERT encoder)",
                      type));
    } else if (base == "Pooling") {
      if (index != 1) return file->error("the Pooling module must follow the Transformer");
      TS_RETURN_IF_ERROR(read_pooling(dir, out));
    } else if (base == "Dense" || base == "Normalize") {
      if (out.pooling.empty()) return file->error(fmt::format("{} comes before Pooling", base));
      PostPoolingModule& m = out.modules.emplace_back();
      if (base == "Dense") {
        m.type = PostPoolingModule::Type::kDense;
        TS_RETURN_IF_ERROR(read_dense(dir, m.dense));
      }
    } else {
      return file->error(fmt::format(
          "module {} has type \"{}\"; tideserve serves Transformer, Pooling, Dense and Normalize "
          "modules",
          index, type));
    }
    ++index;
  }
  if (out.transformer_dir.empty()) return file->error("no Transformer module");
  if (out.pooling.empty()) return file->error("no Pooling module");
  out.normalizes =
      !out.modules.empty() && out.modules.back().type == PostPoolingModule::Type::kNormalize;
  return Status::ok();
}

Status read_sentence_bert_config(const fs::path& path, ModelDirectory& out) {
  if (!path_exists(path)) return Status::ok();
  auto file = JsonFile::open(path);
  if (!file.is_ok()) return file.status();
  TS_RETURN_IF_ERROR(file->expect_object(file->root(), "the config"));
  TS_RETURN_IF_ERROR(file->read_int(file->root(), "max_seq_length", out.max_seq_length));
  return file->read_bool(file->root(), "do_lower_case", out.do_lower_case);
}

Status read_prompts(const fs::path& path, ModelDirectory& out) {
  if (!path_exists(path)) return Status::ok();
  auto file = JsonFile::open(path);
  if (!file.is_ok()) return file.status();
  element root = file->root();
  TS_RETURN_IF_ERROR(file->expect_object(root, "the config"));
  if (auto prompts = JsonFile::member(root, "prompts")) {
    TS_RETURN_IF_ERROR(file->expect_object(*prompts, "\"prompts\""));
    for (auto [key, value] : simdjson::dom::object(*prompts)) {
      if (value.type() != element_type::STRING) {
        return file->error(fmt::format("prompt \"{}\" must be a string", std::string_view(key)));
      }
      out.prompts.emplace_back(std::string(key), std::string(std::string_view(value)));
    }
  }
  TS_RETURN_IF_ERROR(file->read_string(root, "default_prompt_name", out.default_prompt_name));
  if (!out.default_prompt_name.empty() && out.find_prompt(out.default_prompt_name) == nullptr) {
    return file->error(fmt::format("default_prompt_name \"{}\" is not one of the prompts",
                                   out.default_prompt_name));
  }
  return Status::ok();
}

// config.json: the architecture, and for a classifier its labels and problem type.
Status read_head(const fs::path& config_path, bool sentence_transformers, ModelDirectory& out) {
  // A missing or unreadable config.json is the BERT loader's to report.
  if (!path_exists(config_path)) return Status::ok();
  auto file = JsonFile::open(config_path);
  if (!file.is_ok()) return Status::ok();
  element root = file->root();
  if (root.type() != element_type::OBJECT) return Status::ok();
  if (auto archs = JsonFile::member(root, "architectures")) {
    if (archs->type() != element_type::ARRAY)
      return file->error("\"architectures\" must be a list");
    for (element a : simdjson::dom::array(*archs)) {
      if (a.type() != element_type::STRING)
        return file->error("\"architectures\" must hold strings");
      if (out.architecture.empty()) out.architecture = std::string(std::string_view(a));
    }
  }
  const std::string& arch = out.architecture;
  if (arch.empty() || arch == "BertModel" || arch == "BertForMaskedLM" ||
      arch == "BertForPreTraining") {
    out.kind = ModelKind::kEmbedding;
    return Status::ok();
  }
  if (arch != "BertForSequenceClassification") {
    return file->error(fmt::format(
        "architectures names \"{}\"; tideserve serves BERT encoders (BertModel, BertForMaskedLM, "
        "BertForPreTraining) as embedding models and BertForSequenceClassification as a "
        "classifier or reranker",
        arch));
  }
  if (sentence_transformers) {
    return file->error(
        "a sentence-transformers directory (modules.json) with a BertForSequenceClassification "
        "transformer: serve the classifier directory itself");
  }
  if (auto id2label = JsonFile::member(root, "id2label")) {
    TS_RETURN_IF_ERROR(file->expect_object(*id2label, "\"id2label\""));
    std::vector<std::pair<int64_t, std::string>> entries;
    for (auto [key, value] : simdjson::dom::object(*id2label)) {
      int64_t id = -1;
      const std::string_view k(key);
      auto [ptr, ec] = std::from_chars(k.data(), k.data() + k.size(), id);
      if (ec != std::errc() || ptr != k.data() + k.size() || id < 0 ||
          value.type() != element_type::STRING) {
        return file->error("\"id2label\" must map label ids (\"0\", \"1\", ...) to names");
      }
      entries.emplace_back(id, std::string(std::string_view(value)));
    }
    out.labels.assign(entries.size(), "");
    for (auto& [id, name] : entries) {
      if (id >= static_cast<int64_t>(entries.size()) || !out.labels[id].empty()) {
        return file->error("\"id2label\" ids must be 0..N-1, each once");
      }
      out.labels[id] = std::move(name);
    }
  }
  int64_t num_labels = 0;
  TS_RETURN_IF_ERROR(file->read_int(root, "num_labels", num_labels));
  if (out.labels.empty()) {
    for (int64_t i = 0; i < num_labels; ++i) out.labels.push_back(fmt::format("LABEL_{}", i));
  } else if (num_labels > 0 && num_labels != static_cast<int64_t>(out.labels.size())) {
    return file->error(
        fmt::format("num_labels {} but id2label holds {} labels", num_labels, out.labels.size()));
  }
  if (out.labels.empty()) {
    return file->error("BertForSequenceClassification without id2label or num_labels");
  }
  std::string problem;
  TS_RETURN_IF_ERROR(file->read_string(root, "problem_type", problem));
  if (problem.empty() || problem == "single_label_classification") {
    out.problem_type = ProblemType::kSingleLabel;
  } else if (problem == "multi_label_classification") {
    out.problem_type = ProblemType::kMultiLabel;
  } else if (problem == "regression") {
    out.problem_type = ProblemType::kRegression;
  } else {
    return file->error(fmt::format("problem_type \"{}\" is unknown", problem));
  }
  out.kind = out.labels.size() == 1 ? ModelKind::kReranker : ModelKind::kClassifier;
  // sentence-transformers' CrossEncoder records its activation in config.json (newer versions
  // under "sentence_transformers", older ones as sbert_ce_default_activation_function).
  std::string activation;
  if (auto st = JsonFile::member(root, "sentence_transformers")) {
    TS_RETURN_IF_ERROR(file->read_string(*st, "activation_fn", activation));
  }
  if (activation.empty()) {
    TS_RETURN_IF_ERROR(file->read_string(root, "sbert_ce_default_activation_function", activation));
  }
  if (!activation.empty()) {
    const std::string_view base = last_component(activation);
    if (base != "Sigmoid" && base != "Identity") {
      return file->error(
          fmt::format("the cross-encoder activation \"{}\" is not supported (Sigmoid or Identity)",
                      activation));
    }
    out.single_label_sigmoid = base == "Sigmoid";
  } else {
    out.single_label_sigmoid = out.problem_type != ProblemType::kRegression;
  }
  return Status::ok();
}

}  // namespace

const char* model_kind_name(ModelKind kind) {
  switch (kind) {
    case ModelKind::kEmbedding:
      return "embedding";
    case ModelKind::kClassifier:
      return "classifier";
    case ModelKind::kReranker:
      return "reranker";
  }
  return "embedding";
}

const char* problem_type_name(ProblemType type) {
  switch (type) {
    case ProblemType::kSingleLabel:
      return "single_label_classification";
    case ProblemType::kMultiLabel:
      return "multi_label_classification";
    case ProblemType::kRegression:
      return "regression";
  }
  return "single_label_classification";
}

const std::string* ModelDirectory::find_prompt(const std::string& name) const {
  for (const auto& [key, text] : prompts) {
    if (key == name) return &text;
  }
  return nullptr;
}

Result<ModelDirectory> read_model_directory(const std::string& dir) {
  ModelDirectory out;
  out.root = dir;
  out.transformer_dir = dir;
  const fs::path root(dir);
  if (path_exists(root / "modules.json")) {
    out.sentence_transformers = true;
    TS_RETURN_IF_ERROR(read_modules(root, out));
    TS_RETURN_IF_ERROR(read_sentence_bert_config(
        fs::path(out.transformer_dir) / "sentence_bert_config.json", out));
    TS_RETURN_IF_ERROR(read_prompts(root / "config_sentence_transformers.json", out));
  } else if (path_exists(root / "1_Pooling" / "config.json")) {
    // A pooling config without modules.json (some exports keep only it): still the declaration.
    TS_RETURN_IF_ERROR(read_pooling(root / "1_Pooling", out));
  }
  TS_RETURN_IF_ERROR(
      read_head(fs::path(out.transformer_dir) / "config.json", out.sentence_transformers, out));
  return out;
}

}  // namespace tideserve
