#include "tideserve/model/bert_model.h"

#include <sys/stat.h>

#include <gtest/gtest.h>

#include "model_test_util.h"

namespace tideserve {
namespace {

using test::make_tiny_bert;
using test::safetensors_bytes;
using test::TempDir;
using test::TinyBert;
using test::TinyBertOptions;
using test::write_file;

struct Written {
  std::string config;
  std::string weights;
};

Written write_model(const TempDir& dir, const TinyBert& model,
                    const test::WriteOptions& options = {}) {
  Written w{dir.file("config.json"), dir.file("model.safetensors")};
  write_file(w.config, model.config_json);
  write_file(w.weights, safetensors_bytes(model.tensors, options));
  return w;
}

bool in_mapping(const BertModel& model, const FloatTensor& t) {
  const uint8_t* begin = model.file().mapping().data();
  const uint8_t* end = begin + model.file().mapping().size();
  const auto* p = reinterpret_cast<const uint8_t*>(t.data);
  return p >= begin && p + t.numel() * sizeof(float) <= end;
}

// Every weight of `model` against the values make_tiny_bert stored (exact for every dtype).
void expect_tiny_values(const BertModel& model, const TinyBert& tiny, const std::string& prefix) {
  auto check = [&](const std::string& name, const FloatTensor& t) {
    size_t index = 0;
    while (index < tiny.tensors.size() && tiny.tensors[index].name != prefix + name) ++index;
    ASSERT_LT(index, tiny.tensors.size()) << name;
    ASSERT_NE(t.data, nullptr) << name;
    ASSERT_EQ(t.shape, tiny.tensors[index].shape) << name;
    for (int64_t i = 0; i < t.numel(); ++i) {
      ASSERT_EQ(t.data[i], test::tiny_value(index, static_cast<size_t>(i)))
          << name << "[" << i << "]";
    }
  };
  const BertWeights& w = model.weights();
  check("embeddings.word_embeddings.weight", w.word_embeddings);
  check("embeddings.position_embeddings.weight", w.position_embeddings);
  check("embeddings.token_type_embeddings.weight", w.token_type_embeddings);
  ASSERT_EQ(w.layers.size(), static_cast<size_t>(model.config().num_hidden_layers));
  for (size_t i = 0; i < w.layers.size(); ++i) {
    const BertLayerWeights& l = w.layers[i];
    const std::string p = "encoder.layer." + std::to_string(i) + ".";
    check(p + "attention.self.query.weight", l.query_weight);
    check(p + "attention.self.query.bias", l.query_bias);
    check(p + "attention.self.key.weight", l.key_weight);
    check(p + "attention.self.key.bias", l.key_bias);
    check(p + "attention.self.value.weight", l.value_weight);
    check(p + "attention.self.value.bias", l.value_bias);
    check(p + "attention.output.dense.weight", l.attention_output_weight);
    check(p + "attention.output.dense.bias", l.attention_output_bias);
    check(p + "intermediate.dense.weight", l.intermediate_weight);
    check(p + "intermediate.dense.bias", l.intermediate_bias);
    check(p + "output.dense.weight", l.output_weight);
    check(p + "output.dense.bias", l.output_bias);
  }
  if (w.has_pooler) {
    check("pooler.dense.weight", w.pooler_weight);
    check("pooler.dense.bias", w.pooler_bias);
  }
}

TEST(BertModel, LoadsF32DirectoryZeroCopy) {
  TempDir dir;
  TinyBert tiny = make_tiny_bert();
  write_model(dir, tiny);
  Result<std::unique_ptr<BertModel>> model = BertModel::load(dir.path());
  ASSERT_TRUE(model.is_ok()) << model.status().to_string();
  const BertModel& m = **model;
  EXPECT_EQ(m.directory(), dir.path());
  EXPECT_EQ(m.weights_dtype(), DType::kF32);
  EXPECT_EQ(m.config().hidden_size, 8);
  EXPECT_EQ(m.config().num_hidden_layers, 2);
  EXPECT_EQ(m.config().vocab_size, 10);
  const BertWeights& w = m.weights();
  EXPECT_EQ(w.word_embeddings.shape, (std::vector<int64_t>{10, 8}));
  EXPECT_EQ(w.layers.at(1).intermediate_weight.shape, (std::vector<int64_t>{16, 8}));
  EXPECT_EQ(w.layers.at(1).output_weight.shape, (std::vector<int64_t>{8, 16}));
  EXPECT_TRUE(w.has_pooler);
  expect_tiny_values(m, tiny, "");

  // Zero copy: every F32 weight is the tensor's own bytes in the mapping.
  EXPECT_TRUE(in_mapping(m, w.word_embeddings));
  EXPECT_EQ(reinterpret_cast<const uint8_t*>(w.word_embeddings.data),
            m.file().find("embeddings.word_embeddings.weight")->data);
  EXPECT_EQ(reinterpret_cast<const uint8_t*>(w.layers[1].output_norm_bias.data),
            m.file().find("encoder.layer.1.output.LayerNorm.bias")->data);
  for (const BertLayerWeights& l : w.layers) {
    EXPECT_TRUE(in_mapping(m, l.query_weight));
    EXPECT_TRUE(in_mapping(m, l.output_norm_weight));
  }
  EXPECT_TRUE(in_mapping(m, w.pooler_bias));
}

TEST(BertModel, MisalignedF32IsCopiedOnce) {
  TempDir dir;
  TinyBert tiny = make_tiny_bert();
  test::WriteOptions options;
  options.data_offset_mod8 = 2;
  const Written files = write_model(dir, tiny, options);
  Result<std::unique_ptr<BertModel>> model = BertModel::load_files(files.config, files.weights);
  ASSERT_TRUE(model.is_ok()) << model.status().to_string();
  const BertModel& m = **model;
  EXPECT_FALSE(in_mapping(m, m.weights().word_embeddings));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(m.weights().word_embeddings.data) % alignof(float), 0u);
  expect_tiny_values(m, tiny, "");
}

TEST(BertModel, ConvertsF16AndBF16Exactly) {
  for (const char* dtype : {"F16", "BF16"}) {
    TempDir dir;
    TinyBertOptions options;
    options.dtype = dtype;
    TinyBert tiny = make_tiny_bert(options);
    write_model(dir, tiny);
    Result<std::unique_ptr<BertModel>> model = BertModel::load(dir.path());
    ASSERT_TRUE(model.is_ok()) << dtype << ": " << model.status().to_string();
    EXPECT_STREQ(dtype_name((*model)->weights_dtype()), dtype);
    EXPECT_FALSE(in_mapping(**model, (*model)->weights().word_embeddings));
    expect_tiny_values(**model, tiny, "");
  }
}

TEST(BertModel, BertPrefixExtrasIgnoredAndLegacyNormNames) {
  TempDir dir;
  TinyBertOptions options;
  options.prefix = "bert.";
  options.extras = true;
  options.legacy_norm_names = true;
  TinyBert tiny = make_tiny_bert(options);
  test::WriteOptions write_options;
  write_options.metadata_json = R"({"format":"pt"})";
  write_model(dir, tiny, write_options);
  Result<std::unique_ptr<BertModel>> model = BertModel::load(dir.path());
  ASSERT_TRUE(model.is_ok()) << model.status().to_string();
  expect_tiny_values(**model, tiny, "bert.");
  EXPECT_EQ(reinterpret_cast<const uint8_t*>((*model)->weights().embeddings_norm_weight.data),
            (*model)->file().find("bert.embeddings.LayerNorm.gamma")->data);
  EXPECT_EQ(
      reinterpret_cast<const uint8_t*>((*model)->weights().layers[0].attention_norm_bias.data),
      (*model)->file().find("bert.encoder.layer.0.attention.output.LayerNorm.beta")->data);
}

TEST(BertModel, PoolerIsOptional) {
  TempDir dir;
  TinyBertOptions options;
  options.pooler = false;
  write_model(dir, make_tiny_bert(options));
  Result<std::unique_ptr<BertModel>> model = BertModel::load(dir.path());
  ASSERT_TRUE(model.is_ok()) << model.status().to_string();
  EXPECT_FALSE((*model)->weights().has_pooler);
  EXPECT_EQ((*model)->weights().pooler_weight.data, nullptr);
}

// ---- bad model directories --------------------------------------------------------------------

class BadModel : public ::testing::Test {
 protected:
  // Writes `tiny` (with its config) and expects load() to fail with `phrase` and `file` in the
  // message (`file` defaults to the weights file).
  void expect_error(const TinyBert& tiny, const std::string& phrase, std::string file = "") {
    const Written files = write_model(dir_, tiny);
    if (file.empty()) file = files.weights;
    expect_load_error(phrase, file);
  }
  void expect_load_error(const std::string& phrase, const std::string& file) {
    Result<std::unique_ptr<BertModel>> model = BertModel::load(dir_.path());
    ASSERT_FALSE(model.is_ok()) << "expected an error with '" << phrase << "'";
    const std::string& message = model.status().message();
    EXPECT_NE(message.find(file), std::string::npos) << "want '" << file << "' in: " << message;
    EXPECT_NE(message.find(phrase), std::string::npos) << "want '" << phrase << "' in: " << message;
  }

  TempDir dir_;
};

TEST_F(BadModel, MissingDirectory) {
  const std::string missing = dir_.file("no-such-model");
  Result<std::unique_ptr<BertModel>> model = BertModel::load(missing);
  ASSERT_FALSE(model.is_ok());
  EXPECT_EQ(model.status().code(), StatusCode::kNotFound);
  const std::string& message = model.status().message();
  EXPECT_NE(message.find(missing + "/config.json: file not found"), std::string::npos) << message;
  EXPECT_NE(message.find("model directory " + missing + " does not exist"), std::string::npos)
      << message;

  write_file(dir_.file("plain-file"), "x");
  model = BertModel::load(dir_.file("plain-file"));
  ASSERT_FALSE(model.is_ok());
  EXPECT_NE(model.status().message().find("is not a directory"), std::string::npos)
      << model.status().message();
}

TEST_F(BadModel, MissingConfigJson) {
  write_file(dir_.file("model.safetensors"), safetensors_bytes(make_tiny_bert().tensors));
  expect_load_error("not found", dir_.file("config.json"));
}

TEST_F(BadModel, MissingSafetensors) {
  write_file(dir_.file("config.json"), make_tiny_bert().config_json);
  expect_load_error("not found", dir_.file("model.safetensors"));
}

TEST_F(BadModel, BadConfigJson) {
  TinyBert tiny = make_tiny_bert();
  tiny.config_json = R"({"hidden_size": 8, "num_attention_heads": 3})";
  expect_error(tiny, "not divisible by num_attention_heads", dir_.file("config.json"));
  tiny.config_json = "{ not json";
  expect_error(tiny, "not valid JSON", dir_.file("config.json"));
}

TEST_F(BadModel, TruncatedSafetensors) {
  const Written files = write_model(dir_, make_tiny_bert());
  std::string bytes = safetensors_bytes(make_tiny_bert().tensors);
  write_file(files.weights, bytes.substr(0, bytes.size() - 3));
  expect_load_error("truncated", files.weights);
}

TEST_F(BadModel, NoWordEmbeddings) {
  TinyBert tiny = make_tiny_bert();
  tiny.erase("embeddings.word_embeddings.weight");
  expect_error(tiny, "missing tensor 'embeddings.word_embeddings.weight'");
}

TEST_F(BadModel, MissingTensorIsNamed) {
  TinyBert tiny = make_tiny_bert();
  tiny.erase("encoder.layer.1.attention.self.key.bias");
  expect_error(tiny, "missing tensor 'encoder.layer.1.attention.self.key.bias'");

  TinyBertOptions options;
  options.prefix = "bert.";
  tiny = make_tiny_bert(options);
  tiny.erase("bert.embeddings.LayerNorm.bias");
  expect_error(tiny, "missing tensor 'bert.embeddings.LayerNorm.bias'");
}

TEST_F(BadModel, MixedPrefixes) {
  TinyBertOptions options;
  options.prefix = "bert.";
  TinyBert tiny = make_tiny_bert(options);
  tiny.find("bert.encoder.layer.0.output.dense.weight")->name =
      "encoder.layer.0.output.dense.weight";
  expect_error(tiny,
               "missing tensor 'bert.encoder.layer.0.output.dense.weight' (the file has "
               "'encoder.layer.0.output.dense.weight'; tensor names must all carry the 'bert.' "
               "prefix or none");
}

TEST_F(BadModel, WrongShapeNamesTensorExpectedAndActual) {
  TinyBert tiny = make_tiny_bert();
  test::TestTensor* t = tiny.find("encoder.layer.0.intermediate.dense.weight");
  t->shape = {8, 16};  // transposed: same bytes, wrong layout
  expect_error(tiny,
               "tensor 'encoder.layer.0.intermediate.dense.weight' has shape [8, 16], expected "
               "[16, 8]");
}

TEST_F(BadModel, VocabSizeContradictsEmbeddings) {
  TinyBertOptions options;
  TinyBert tiny = make_tiny_bert(options);
  options.vocab = 12;
  tiny.config_json = test::tiny_config_json(options);
  expect_error(tiny,
               "tensor 'embeddings.word_embeddings.weight' has shape [10, 8], expected [12, 8] "
               "from " +
                   dir_.file("config.json") + " (vocab_size 12, hidden_size 8)");
}

TEST_F(BadModel, MaxPositionsAndTypeVocabContradictEmbeddings) {
  TinyBertOptions options;
  TinyBert tiny = make_tiny_bert(options);
  options.max_positions = 32;
  tiny.config_json = test::tiny_config_json(options);
  expect_error(tiny, "max_position_embeddings 32");
  options.max_positions = 16;
  options.type_vocab = 1;
  tiny.config_json = test::tiny_config_json(options);
  expect_error(tiny, "'embeddings.token_type_embeddings.weight' has shape [2, 8], expected [1, 8]");
}

TEST_F(BadModel, IntermediateSizeContradictsTensors) {
  TinyBertOptions options;
  TinyBert tiny = make_tiny_bert(options);
  options.intermediate = 32;
  tiny.config_json = test::tiny_config_json(options);
  expect_error(tiny, "intermediate_size 32");
}

TEST_F(BadModel, LayerCountContradictsConfig) {
  TinyBertOptions options;
  TinyBert tiny = make_tiny_bert(options);
  options.layers = 3;
  tiny.config_json = test::tiny_config_json(options);
  expect_error(
      tiny,
      "num_hidden_layers is 3 but " + dir_.file("model.safetensors") + " holds 2 encoder layers",
      dir_.file("config.json"));
  options.layers = 1;
  tiny.config_json = test::tiny_config_json(options);
  expect_error(tiny, "num_hidden_layers is 1 but", dir_.file("config.json"));
}

TEST_F(BadModel, NonFloatWeightDtype) {
  TinyBert tiny = make_tiny_bert();
  test::TestTensor* t = tiny.find("encoder.layer.0.attention.self.query.bias");
  t->dtype = "I64";  // 8 floats = 32 bytes = 4 int64: shape must say 4
  t->shape = {4};
  expect_error(tiny,
               "tensor 'encoder.layer.0.attention.self.query.bias' has dtype I64; expected F32, "
               "F16 or BF16");
  t->dtype = "F64";
  expect_error(tiny, "has dtype F64; expected F32, F16 or BF16");
}

TEST_F(BadModel, HalfAPooler) {
  TinyBert tiny = make_tiny_bert();
  tiny.erase("pooler.dense.bias");
  expect_error(tiny, "missing tensor 'pooler.dense.bias'");
}

TEST_F(BadModel, UnsupportedDtypeInWeights) {
  TinyBert tiny = make_tiny_bert();
  tiny.find("pooler.dense.bias")->dtype = "F8_E4M3";
  tiny.find("pooler.dense.bias")->shape = {32};
  expect_error(tiny, "unsupported dtype 'F8_E4M3'");
}

}  // namespace
}  // namespace tideserve
