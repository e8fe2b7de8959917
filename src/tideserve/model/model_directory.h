// What a model directory declares beyond the BERT weights: which job its head does and, for a
// sentence-transformers directory, how its embeddings are made. Read once at load, before the
// weights; every problem is one error naming the file.
//
//   kind, from config.json `architectures`:
//     BertModel, BertForMaskedLM, BertForPreTraining, or none  -> embedding
//     BertForSequenceClassification with 2+ labels              -> classifier
//     BertForSequenceClassification with 1 label                -> reranker (a cross-encoder)
//     anything else                                             -> refused, naming it
//   sentence-transformers (modules.json): Transformer (its path holds the BERT directory), then
//     Pooling (1_Pooling/config.json: mode and include_prompt), then Dense and Normalize modules
//     in order; sentence_bert_config.json (max_seq_length, do_lower_case) and
//     config_sentence_transformers.json (prompts, default_prompt_name). Without modules.json, a
//     1_Pooling/config.json still declares the pooling.
//   classifier / reranker: id2label (else num_labels), problem_type.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "tideserve/util/status.h"

namespace tideserve {

enum class ModelKind { kEmbedding, kClassifier, kReranker };
const char* model_kind_name(ModelKind kind);  // "embedding", "classifier", "reranker"

// How a classifier's logits become scores (transformers' problem_type).
enum class ProblemType { kSingleLabel, kMultiLabel, kRegression };
const char* problem_type_name(ProblemType type);

enum class DenseActivation { kIdentity, kTanh, kRelu, kSigmoid, kGelu };

// A sentence-transformers Dense module: y = activation(W x + b), weights in fp32.
struct DenseModule {
  std::string path;  // the module directory
  int64_t in_features = 0;
  int64_t out_features = 0;
  DenseActivation activation = DenseActivation::kTanh;
  std::vector<float> weight;  // [out_features, in_features]
  std::vector<float> bias;    // [out_features], empty without bias
};

// One module after pooling, in modules.json order.
struct PostPoolingModule {
  enum class Type { kDense, kNormalize } type = Type::kNormalize;
  DenseModule dense;  // for kDense
};

struct ModelDirectory {
  std::string root;             // the directory given
  std::string transformer_dir;  // config.json, model.safetensors and the tokenizer
  std::string architecture;     // config.json architectures[0], or "" when it names none
  ModelKind kind = ModelKind::kEmbedding;

  // Embedding models.
  bool sentence_transformers = false;  // modules.json was found
  std::string pooling;                 // the declared mode (engine/pooling.h names), "" if none
  std::string pooling_source;          // the file that declared it
  int64_t pooling_dimension = 0;       // its word_embedding_dimension (0: not given)
  bool include_prompt = true;
  std::vector<PostPoolingModule> modules;
  bool normalizes = false;     // a Normalize module is the last one: outputs are unit vectors
  int64_t max_seq_length = 0;  // sentence_bert_config.json; 0: not declared
  bool do_lower_case = false;  // lowercase the text before tokenizing (sentence-transformers')
  std::vector<std::pair<std::string, std::string>> prompts;  // name -> text, in file order
  std::string default_prompt_name;                           // "" if none

  // Classifier and reranker models.
  std::vector<std::string> labels;  // by id
  ProblemType problem_type = ProblemType::kSingleLabel;
  // One label: its score is the logit's sigmoid (a cross-encoder's default), unless config.json's
  // sentence_transformers.activation_fn says Identity (or problem_type is regression).
  bool single_label_sigmoid = true;

  const std::string* find_prompt(const std::string& name) const;
};

// Reads the description (not the BERT weights; Dense weights are read here, they are small).
Result<ModelDirectory> read_model_directory(const std::string& dir);

}  // namespace tideserve
