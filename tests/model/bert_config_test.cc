#include "tideserve/model/bert_config.h"

#include <gtest/gtest.h>

#include "model_test_util.h"

namespace tideserve {
namespace {

const std::string kPath = "models/x/config.json";

// bert-base-chinese's config.json, as published.
constexpr const char* kBertBaseChinese = R"({
  "architectures": ["BertForMaskedLM"],
  "attention_probs_dropout_prob": 0.1,
  "directionality": "bidi",
  "hidden_act": "gelu",
  "hidden_dropout_prob": 0.1,
  "hidden_size": 768,
  "initializer_range": 0.02,
  "intermediate_size": 3072,
  "layer_norm_eps": 1e-12,
  "max_position_embeddings": 512,
  "model_type": "bert",
  "num_attention_heads": 12,
  "num_hidden_layers": 12,
  "pad_token_id": 0,
  "pooler_fc_size": 768,
  "pooler_num_attention_heads": 12,
  "pooler_num_fc_layers": 3,
  "pooler_size_per_head": 128,
  "pooler_type": "first_token_transform",
  "type_vocab_size": 2,
  "vocab_size": 21128
})";

TEST(BertConfig, ParsesBertBaseChinese) {
  Result<BertConfig> config = parse_bert_config(kBertBaseChinese, kPath);
  ASSERT_TRUE(config.is_ok()) << config.status().to_string();
  EXPECT_EQ(config->hidden_size, 768);
  EXPECT_EQ(config->num_hidden_layers, 12);
  EXPECT_EQ(config->num_attention_heads, 12);
  EXPECT_EQ(config->head_size(), 64);
  EXPECT_EQ(config->intermediate_size, 3072);
  EXPECT_EQ(config->hidden_act, Activation::kGeluErf);
  EXPECT_EQ(config->layer_norm_eps, 1e-12);
  EXPECT_EQ(config->max_position_embeddings, 512);
  EXPECT_EQ(config->type_vocab_size, 2);
  EXPECT_EQ(config->vocab_size, 21128);
  EXPECT_EQ(config->pad_token_id, 0);
  EXPECT_EQ(config->model_type, "bert");
}

TEST(BertConfig, MissingKeysTakeHuggingFaceDefaults) {
  Result<BertConfig> config = parse_bert_config("{}", kPath);
  ASSERT_TRUE(config.is_ok()) << config.status().to_string();
  BertConfig defaults;
  EXPECT_EQ(config->hidden_size, defaults.hidden_size);
  EXPECT_EQ(config->vocab_size, 30522);
  EXPECT_EQ(config->num_hidden_layers, 12);
  EXPECT_EQ(config->layer_norm_eps, 1e-12);
  EXPECT_EQ(config->hidden_act, Activation::kGeluErf);
  EXPECT_EQ(config->model_type, "bert");
}

TEST(BertConfig, ActivationsAndLenientValues) {
  struct Case {
    const char* json;
    Activation act;
  };
  for (const Case& c : {Case{R"({"hidden_act":"gelu"})", Activation::kGeluErf},
                        Case{R"({"hidden_act":"gelu_new"})", Activation::kGeluTanh},
                        Case{R"({"hidden_act":"gelu_pytorch_tanh"})", Activation::kGeluTanh}}) {
    Result<BertConfig> config = parse_bert_config(c.json, kPath);
    ASSERT_TRUE(config.is_ok()) << c.json << ": " << config.status().to_string();
    EXPECT_EQ(config->hidden_act, c.act) << c.json;
  }
  // null pad_token_id keeps the default; an integral double is an integer; integer eps is fine.
  Result<BertConfig> config = parse_bert_config(
      R"({"pad_token_id":null,"hidden_size":384.0,"num_attention_heads":6,"layer_norm_eps":1,)"
      R"("position_embedding_type":"absolute","model_type":"bert"})",
      kPath);
  ASSERT_TRUE(config.is_ok()) << config.status().to_string();
  EXPECT_EQ(config->pad_token_id, 0);
  EXPECT_EQ(config->hidden_size, 384);
  EXPECT_EQ(config->layer_norm_eps, 1.0);
}

void expect_config_error(const std::string& json, const std::string& phrase) {
  Result<BertConfig> config = parse_bert_config(json, kPath);
  ASSERT_FALSE(config.is_ok()) << json;
  const std::string& message = config.status().message();
  EXPECT_NE(message.find(kPath), std::string::npos) << message;
  EXPECT_NE(message.find(phrase), std::string::npos) << "want '" << phrase << "' in: " << message;
}

TEST(BertConfig, NotJsonOrNotAnObject) {
  expect_config_error("", "not valid JSON");
  expect_config_error("{\"hidden_size\": 768", "not valid JSON");
  expect_config_error("{\"hidden_size\": 99999999999999999999999}", "not valid JSON");
  expect_config_error("[768]", "not a JSON object");
}

TEST(BertConfig, WrongTypes) {
  expect_config_error(R"({"hidden_size":"768"})",
                      "\"hidden_size\" must be an integer, got a string");
  expect_config_error(R"({"num_hidden_layers":[12]})",
                      "\"num_hidden_layers\" must be an integer, got an array");
  expect_config_error(R"({"vocab_size":21128.5})", "\"vocab_size\" must be an integer");
  expect_config_error(R"({"vocab_size":null})", "\"vocab_size\" must be an integer, got null");
  expect_config_error(R"({"hidden_act":1})", "\"hidden_act\" must be a string");
  expect_config_error(R"({"layer_norm_eps":"1e-12"})", "\"layer_norm_eps\" must be a number");
  expect_config_error(R"({"model_type":true})", "\"model_type\" must be a string, got a boolean");
}

TEST(BertConfig, NonPositiveOrHugeSizes) {
  expect_config_error(R"({"hidden_size":0})", "\"hidden_size\" must be a positive size");
  expect_config_error(R"({"num_attention_heads":-12})",
                      "\"num_attention_heads\" must be a positive size");
  expect_config_error(R"({"intermediate_size":-1})", "\"intermediate_size\" must be a positive");
  expect_config_error(R"({"max_position_embeddings":0})", "\"max_position_embeddings\" must be");
  expect_config_error(R"({"type_vocab_size":0})", "\"type_vocab_size\" must be");
  expect_config_error(R"({"num_hidden_layers":0})", "\"num_hidden_layers\" must be");
  expect_config_error(R"({"vocab_size":4294967296})", "\"vocab_size\" must be a positive size");
  expect_config_error(R"({"vocab_size":18446744073709551615})", "too large");
  expect_config_error(R"({"layer_norm_eps":0})", "\"layer_norm_eps\" must be a positive number");
  expect_config_error(R"({"layer_norm_eps":-1e-12})", "must be a positive number");
  expect_config_error(R"({"pad_token_id":-1})", "\"pad_token_id\" -1 is outside the vocabulary");
  expect_config_error(R"({"vocab_size":10,"pad_token_id":10})", "outside the vocabulary");
}

TEST(BertConfig, HiddenSizeNotDivisibleByHeads) {
  expect_config_error(R"({"hidden_size":100,"num_attention_heads":12})",
                      "hidden_size 100 is not divisible by num_attention_heads 12");
}

TEST(BertConfig, UnsupportedActivationPositionTypeAndModelType) {
  expect_config_error(R"({"hidden_act":"relu"})", "hidden_act \"relu\" is not supported");
  expect_config_error(R"({"hidden_act":"silu"})", "\"silu\"");
  expect_config_error(R"({"position_embedding_type":"relative_key"})",
                      "position_embedding_type \"relative_key\" is not supported");
  expect_config_error(R"({"model_type":"roberta"})", "model_type \"roberta\" is not supported");
}

TEST(BertConfig, EveryTruncationIsAnErrorOrValidNeverACrash) {
  const std::string full = kBertBaseChinese;
  for (size_t n = 0; n < full.size(); ++n) {
    Result<BertConfig> config = parse_bert_config(full.substr(0, n), kPath);
    if (!config.is_ok()) {
      EXPECT_NE(config.status().message().find(kPath), std::string::npos);
    }
  }
}

}  // namespace
}  // namespace tideserve
