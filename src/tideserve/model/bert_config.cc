#include "tideserve/model/bert_config.h"

#include <simdjson.h>

#include <cmath>
#include <limits>

#include <fmt/format.h>

namespace tideserve {
namespace {

// Sizes above this are corruption, not a model; keeping them within int32 also keeps every
// product the engine forms from two of them within int64.
constexpr int64_t kMaxSize = std::numeric_limits<int32_t>::max();

class ConfigReader {
 public:
  ConfigReader(simdjson::dom::object root, const std::string& path) : root_(root), path_(path) {}

  Status error(const std::string& problem) const {
    return invalid_argument(path_ + ": " + problem);
  }

  // Reads an integer field into `out` if present; a size must lie in [1, kMaxSize].
  Status read_int(const char* key, int64_t& out, bool is_size) {
    simdjson::dom::element value;
    if (root_.at_key(key).get(value) != simdjson::SUCCESS) return Status::ok();
    int64_t v = 0;
    switch (value.type()) {
      case simdjson::dom::element_type::INT64:
        v = value.get_int64().value_unsafe();
        break;
      case simdjson::dom::element_type::UINT64:
        return error(
            fmt::format("\"{}\" is {}, too large", key, value.get_uint64().value_unsafe()));
      case simdjson::dom::element_type::DOUBLE: {
        // Some exporters write 768.0; accept an integral double, refuse 768.5.
        double d = value.get_double().value_unsafe();
        if (!(std::nearbyint(d) == d) || std::fabs(d) > 9.0e15) {
          return error(fmt::format("\"{}\" must be an integer, got {}", key, d));
        }
        v = static_cast<int64_t>(d);
        break;
      }
      default:
        return error(fmt::format("\"{}\" must be an integer, got {}", key, type_name(value)));
    }
    if (is_size && (v <= 0 || v > kMaxSize)) {
      return error(fmt::format("\"{}\" must be a positive size (1..{}), got {}", key, kMaxSize, v));
    }
    out = v;
    return Status::ok();
  }

  // Reads a string field; `present` tells whether it was there (null counts as absent).
  Status read_string(const char* key, std::string& out, bool& present) {
    present = false;
    simdjson::dom::element value;
    if (root_.at_key(key).get(value) != simdjson::SUCCESS || value.is_null()) return Status::ok();
    std::string_view s;
    if (value.get_string().get(s) != simdjson::SUCCESS) {
      return error(fmt::format("\"{}\" must be a string, got {}", key, type_name(value)));
    }
    out = std::string(s);
    present = true;
    return Status::ok();
  }

  Status read_positive_double(const char* key, double& out) {
    simdjson::dom::element value;
    if (root_.at_key(key).get(value) != simdjson::SUCCESS) return Status::ok();
    double d = 0;
    if (value.is_number()) {
      if (value.is_double()) {
        d = value.get_double().value_unsafe();
      } else if (value.is_int64()) {
        d = static_cast<double>(value.get_int64().value_unsafe());
      } else {
        d = static_cast<double>(value.get_uint64().value_unsafe());
      }
    } else {
      return error(fmt::format("\"{}\" must be a number, got {}", key, type_name(value)));
    }
    if (!(d > 0) || !std::isfinite(d)) {
      return error(fmt::format("\"{}\" must be a positive number, got {}", key, d));
    }
    out = d;
    return Status::ok();
  }

  simdjson::dom::object root() const { return root_; }

  static const char* type_name(simdjson::dom::element value) {
    switch (value.type()) {
      case simdjson::dom::element_type::ARRAY:
        return "an array";
      case simdjson::dom::element_type::OBJECT:
        return "an object";
      case simdjson::dom::element_type::INT64:
      case simdjson::dom::element_type::UINT64:
        return "an integer";
      case simdjson::dom::element_type::DOUBLE:
        return "a number";
      case simdjson::dom::element_type::STRING:
        return "a string";
      case simdjson::dom::element_type::BOOL:
        return "a boolean";
      case simdjson::dom::element_type::NULL_VALUE:
        return "null";
    }
    return "an unknown value";
  }

 private:
  simdjson::dom::object root_;
  const std::string& path_;
};

}  // namespace

Result<BertConfig> parse_bert_config(std::string_view json, const std::string& path) {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  simdjson::error_code err = parser.parse(json.data(), json.size()).get(root);
  if (err != simdjson::SUCCESS) {
    return invalid_argument(
        fmt::format("{}: not valid JSON: {}", path, simdjson::error_message(err)));
  }
  simdjson::dom::object obj;
  if (root.get_object().get(obj) != simdjson::SUCCESS) {
    return invalid_argument(path + ": config is not a JSON object");
  }
  ConfigReader reader(obj, path);
  BertConfig config;

  std::string model_type;
  bool has_model_type = false;
  TS_RETURN_IF_ERROR(reader.read_string("model_type", model_type, has_model_type));
  if (has_model_type && model_type != "bert") {
    return reader.error(fmt::format(
        "model_type \"{}\" is not supported (only \"bert\" models can be loaded)", model_type));
  }
  config.model_type = "bert";

  TS_RETURN_IF_ERROR(reader.read_int("hidden_size", config.hidden_size, true));
  TS_RETURN_IF_ERROR(reader.read_int("num_hidden_layers", config.num_hidden_layers, true));
  TS_RETURN_IF_ERROR(reader.read_int("num_attention_heads", config.num_attention_heads, true));
  TS_RETURN_IF_ERROR(reader.read_int("intermediate_size", config.intermediate_size, true));
  TS_RETURN_IF_ERROR(
      reader.read_int("max_position_embeddings", config.max_position_embeddings, true));
  TS_RETURN_IF_ERROR(reader.read_int("type_vocab_size", config.type_vocab_size, true));
  TS_RETURN_IF_ERROR(reader.read_int("vocab_size", config.vocab_size, true));
  TS_RETURN_IF_ERROR(reader.read_positive_double("layer_norm_eps", config.layer_norm_eps));

  // pad_token_id may be null in exported configs; keep the default then.
  simdjson::dom::element pad;
  if (obj.at_key("pad_token_id").get(pad) == simdjson::SUCCESS && !pad.is_null()) {
    TS_RETURN_IF_ERROR(reader.read_int("pad_token_id", config.pad_token_id, false));
    if (config.pad_token_id < 0 || config.pad_token_id >= config.vocab_size) {
      return reader.error(fmt::format("\"pad_token_id\" {} is outside the vocabulary [0, {})",
                                      config.pad_token_id, config.vocab_size));
    }
  }

  std::string act;
  bool has_act = false;
  TS_RETURN_IF_ERROR(reader.read_string("hidden_act", act, has_act));
  if (has_act) {
    if (act == "gelu") {
      config.hidden_act = Activation::kGeluErf;
    } else if (act == "gelu_new" || act == "gelu_pytorch_tanh") {
      config.hidden_act = Activation::kGeluTanh;
    } else {
      return reader.error(fmt::format(
          "hidden_act \"{}\" is not supported (supported: gelu, gelu_new, gelu_pytorch_tanh)",
          act));
    }
  }

  std::string position_type;
  bool has_position_type = false;
  TS_RETURN_IF_ERROR(
      reader.read_string("position_embedding_type", position_type, has_position_type));
  if (has_position_type && position_type != "absolute") {
    return reader.error(fmt::format(
        "position_embedding_type \"{}\" is not supported (only \"absolute\")", position_type));
  }

  if (config.hidden_size % config.num_attention_heads != 0) {
    return reader.error(fmt::format("hidden_size {} is not divisible by num_attention_heads {}",
                                    config.hidden_size, config.num_attention_heads));
  }
  return config;
}

}  // namespace tideserve
