// config.json of a Hugging Face BERT model.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "tideserve/util/status.h"

namespace tideserve {

enum class Activation { kGeluErf, kGeluTanh };  // "gelu" | "gelu_new" / "gelu_pytorch_tanh"

struct BertConfig {
  int64_t hidden_size = 768;
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 12;
  int64_t intermediate_size = 3072;
  Activation hidden_act = Activation::kGeluErf;
  double layer_norm_eps = 1e-12;
  int64_t max_position_embeddings = 512;
  int64_t type_vocab_size = 2;
  int64_t vocab_size = 30522;
  int64_t pad_token_id = 0;
  std::string model_type = "bert";

  int64_t head_size() const { return hidden_size / num_attention_heads; }
};

// Parses and validates config.json text. `path` only names the file in error messages.
// Missing keys take the Hugging Face BertConfig defaults above; wrong types, non-positive sizes,
// unsupported hidden_act / position_embedding_type and hidden_size not divisible by
// num_attention_heads are errors.
Result<BertConfig> parse_bert_config(std::string_view json, const std::string& path);

}  // namespace tideserve
