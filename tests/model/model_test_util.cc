#include "model_test_util.h"

#include <stdlib.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace tideserve::test {
namespace {

template <typename T>
std::string raw_bytes(const std::vector<T>& values) {
  std::string out(values.size() * sizeof(T), '\0');
  if (!values.empty()) std::memcpy(out.data(), values.data(), out.size());
  return out;
}

std::string json_shape(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ",";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

}  // namespace

std::string f32_bytes(const std::vector<float>& values) {
  return raw_bytes(values);
}
std::string f64_bytes(const std::vector<double>& values) {
  return raw_bytes(values);
}
std::string u16_bytes(const std::vector<uint16_t>& values) {
  return raw_bytes(values);
}
std::string i64_bytes(const std::vector<int64_t>& values) {
  return raw_bytes(values);
}

uint16_t f32_to_bf16_exact(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  if ((bits & 0xffffu) != 0) throw std::invalid_argument("value not exact in bf16");
  return static_cast<uint16_t>(bits >> 16);
}

uint16_t f32_to_f16_exact(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  if ((bits & 0x7fffffffu) == 0) return sign;
  const int exponent = static_cast<int>((bits >> 23) & 0xffu) - 127 + 15;
  const uint32_t mantissa = bits & 0x7fffffu;
  if (exponent <= 0 || exponent >= 31 || (mantissa & 0x1fffu) != 0) {
    throw std::invalid_argument("value not exact as a normal f16");
  }
  return static_cast<uint16_t>(sign | (exponent << 10) | (mantissa >> 13));
}

std::string safetensors_header(const std::vector<TestTensor>& tensors,
                               const std::string& metadata_json) {
  std::string header = "{";
  bool first = true;
  if (!metadata_json.empty()) {
    header += "\"__metadata__\":" + metadata_json;
    first = false;
  }
  size_t offset = 0;
  for (const TestTensor& t : tensors) {
    if (!first) header += ",";
    first = false;
    header += "\"" + t.name + "\":{\"dtype\":\"" + t.dtype + "\",\"shape\":" + json_shape(t.shape) +
              ",\"data_offsets\":[" + std::to_string(offset) + "," +
              std::to_string(offset + t.bytes.size()) + "]}";
    offset += t.bytes.size();
  }
  return header + "}";
}

std::string safetensors_bytes(const std::vector<TestTensor>& tensors, const WriteOptions& options) {
  std::string header = safetensors_header(tensors, options.metadata_json);
  while ((8 + header.size()) % 8 != static_cast<size_t>(options.data_offset_mod8)) header += ' ';
  std::string data;
  for (const TestTensor& t : tensors) data += t.bytes;
  return raw_safetensors(header, data);
}

std::string raw_safetensors(const std::string& header_json, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header_json.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xffu);
  return out + header_json + data;
}

void write_file(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

TempDir::TempDir() {
  std::string pattern =
      (std::filesystem::temp_directory_path() / "tideserve_model_XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

float tiny_value(size_t index, size_t i) {
  return static_cast<float>(static_cast<int>((index * 7 + i) % 17) - 8) * 0.125f;
}

TestTensor* TinyBert::find(const std::string& name) {
  for (TestTensor& t : tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

void TinyBert::erase(const std::string& name) {
  for (auto it = tensors.begin(); it != tensors.end(); ++it) {
    if (it->name == name) {
      tensors.erase(it);
      return;
    }
  }
  throw std::invalid_argument("no tensor " + name);
}

std::string tiny_config_json(const TinyBertOptions& o) {
  return "{\n"
         "  \"architectures\": [\"BertModel\"],\n"
         "  \"attention_probs_dropout_prob\": 0.1,\n"
         "  \"hidden_act\": \"gelu\",\n"
         "  \"hidden_dropout_prob\": 0.1,\n"
         "  \"hidden_size\": " +
         std::to_string(o.hidden) +
         ",\n"
         "  \"initializer_range\": 0.02,\n"
         "  \"intermediate_size\": " +
         std::to_string(o.intermediate) +
         ",\n"
         "  \"layer_norm_eps\": 1e-12,\n"
         "  \"max_position_embeddings\": " +
         std::to_string(o.max_positions) +
         ",\n"
         "  \"model_type\": \"bert\",\n"
         "  \"num_attention_heads\": " +
         std::to_string(o.heads) +
         ",\n"
         "  \"num_hidden_layers\": " +
         std::to_string(o.layers) +
         ",\n"
         "  \"pad_token_id\": 0,\n"
         "  \"position_embedding_type\": \"absolute\",\n"
         "  \"torch_dtype\": \"float32\",\n"
         "  \"transformers_version\": \"4.40.0\",\n"
         "  \"type_vocab_size\": " +
         std::to_string(o.type_vocab) +
         ",\n"
         "  \"use_cache\": true,\n"
         "  \"vocab_size\": " +
         std::to_string(o.vocab) + "\n}\n";
}

TinyBert make_tiny_bert(const TinyBertOptions& o) {
  TinyBert model;
  model.config_json = tiny_config_json(o);
  const std::string ln_w = o.legacy_norm_names ? "gamma" : "weight";
  const std::string ln_b = o.legacy_norm_names ? "beta" : "bias";
  const int64_t h = o.hidden;
  auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    const size_t index = model.tensors.size();
    const size_t n = static_cast<size_t>(numel(shape));
    std::string bytes;
    if (o.dtype == "F32") {
      std::vector<float> v(n);
      for (size_t i = 0; i < n; ++i) v[i] = tiny_value(index, i);
      bytes = f32_bytes(v);
    } else {
      std::vector<uint16_t> v(n);
      for (size_t i = 0; i < n; ++i) {
        v[i] = o.dtype == "F16" ? f32_to_f16_exact(tiny_value(index, i))
                                : f32_to_bf16_exact(tiny_value(index, i));
      }
      bytes = u16_bytes(v);
    }
    model.tensors.push_back({o.prefix + name, o.dtype, std::move(shape), std::move(bytes)});
  };
  add("embeddings.word_embeddings.weight", {o.vocab, h});
  add("embeddings.position_embeddings.weight", {o.max_positions, h});
  add("embeddings.token_type_embeddings.weight", {o.type_vocab, h});
  add("embeddings.LayerNorm." + ln_w, {h});
  add("embeddings.LayerNorm." + ln_b, {h});
  for (int64_t i = 0; i < o.layers; ++i) {
    const std::string p = "encoder.layer." + std::to_string(i) + ".";
    for (const char* qkv : {"query", "key", "value"}) {
      add(p + "attention.self." + qkv + ".weight", {h, h});
      add(p + "attention.self." + qkv + ".bias", {h});
    }
    add(p + "attention.output.dense.weight", {h, h});
    add(p + "attention.output.dense.bias", {h});
    add(p + "attention.output.LayerNorm." + ln_w, {h});
    add(p + "attention.output.LayerNorm." + ln_b, {h});
    add(p + "intermediate.dense.weight", {o.intermediate, h});
    add(p + "intermediate.dense.bias", {o.intermediate});
    add(p + "output.dense.weight", {h, o.intermediate});
    add(p + "output.dense.bias", {h});
    add(p + "output.LayerNorm." + ln_w, {h});
    add(p + "output.LayerNorm." + ln_b, {h});
  }
  if (o.pooler) {
    add("pooler.dense.weight", {h, h});
    add("pooler.dense.bias", {h});
  }
  if (o.extras) {
    std::vector<int64_t> ids(static_cast<size_t>(o.max_positions));
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int64_t>(i);
    model.tensors.push_back(
        {o.prefix + "embeddings.position_ids", "I64", {1, o.max_positions}, i64_bytes(ids)});
    model.tensors.push_back({"cls.predictions.bias",
                             "F32",
                             {o.vocab},
                             f32_bytes(std::vector<float>(static_cast<size_t>(o.vocab), 0.5f))});
    model.tensors.push_back({"cls.predictions.transform.dense.weight",
                             "F32",
                             {h, h},
                             f32_bytes(std::vector<float>(static_cast<size_t>(h * h), 0.25f))});
  }
  return model;
}

}  // namespace tideserve::test
