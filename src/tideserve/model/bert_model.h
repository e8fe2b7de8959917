// A Hugging Face BERT model directory loaded for inference: config.json + model.safetensors.
// F32 weights are views into the mapped file (zero copy when 4-byte aligned); F16 / BF16 weights
// are converted to fp32 once at load and owned here.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tideserve/model/bert_config.h"
#include "tideserve/model/safetensors.h"
#include "tideserve/util/status.h"

namespace tideserve {

// A read-only fp32 tensor, row-major.
struct FloatTensor {
  const float* data = nullptr;
  std::vector<int64_t> shape;

  int64_t numel() const;
  int64_t dim(size_t i) const { return shape.at(i); }
};

// Linear layers keep the Hugging Face layout: weight [out_features, in_features], bias [out].
struct BertLayerWeights {
  FloatTensor query_weight, query_bias;
  FloatTensor key_weight, key_bias;
  FloatTensor value_weight, value_bias;
  FloatTensor attention_output_weight, attention_output_bias;
  FloatTensor attention_norm_weight, attention_norm_bias;  // attention.output.LayerNorm
  FloatTensor intermediate_weight, intermediate_bias;
  FloatTensor output_weight, output_bias;
  FloatTensor output_norm_weight, output_norm_bias;  // output.LayerNorm
};

struct BertWeights {
  FloatTensor word_embeddings;        // [vocab_size, hidden]
  FloatTensor position_embeddings;    // [max_position_embeddings, hidden]
  FloatTensor token_type_embeddings;  // [type_vocab_size, hidden]
  FloatTensor embeddings_norm_weight, embeddings_norm_bias;
  std::vector<BertLayerWeights> layers;
  bool has_pooler = false;
  FloatTensor pooler_weight, pooler_bias;  // [hidden, hidden], [hidden]; set when has_pooler
  // BertForSequenceClassification's head, saved without the "bert." prefix.
  bool has_classifier = false;
  FloatTensor classifier_weight, classifier_bias;  // [num_labels, hidden], [num_labels]
};

class BertModel {
 public:
  // Loads `dir`/config.json and `dir`/model.safetensors. Tensor names as BertModel writes them,
  // with or without the "bert." prefix. Every problem is one clear error naming the file.
  static Result<std::unique_ptr<BertModel>> load(const std::string& dir);

  // Same, from explicit files (used by tests).
  static Result<std::unique_ptr<BertModel>> load_files(const std::string& config_path,
                                                       const std::string& weights_path);

  const BertConfig& config() const { return config_; }
  const BertWeights& weights() const { return weights_; }
  const std::string& directory() const { return directory_; }
  DType weights_dtype() const { return weights_dtype_; }  // dtype of the file's weights
  // The mapped weights file; F32 tensors of weights() point into it (tests check zero copy).
  const SafetensorsFile& file() const { return file_; }
  // For a tensor that is a view into the mapping: drops its pages from this process's RSS
  // (MappedFile::release_pages; the values stay readable). Used once a layer holds its own
  // converted copy. Returns the bytes released, 0 for converted tensors.
  size_t release_pages(const FloatTensor& tensor) const {
    return file_.mapping().release_pages(tensor.data,
                                         static_cast<size_t>(tensor.numel()) * sizeof(float));
  }

 private:
  BertModel() = default;

  std::string directory_;
  BertConfig config_;
  SafetensorsFile file_;
  std::vector<std::unique_ptr<std::vector<float>>> converted_;  // storage for converted tensors
  BertWeights weights_;
  DType weights_dtype_ = DType::kF32;
};

}  // namespace tideserve
