// What follows the encoder for each sequence: pooling into one vector, then the model's
// post-pooling layers, in order.
//
//   embedding model:  pooling (per request)  -> sentence-transformers Dense / Normalize modules
//   classifier:       CLS -> pooler (tanh dense) -> classifier (dense): the logits
//
// The layers' weights belong to the model (BertModel, ModelDirectory): they must outlive the head.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "tideserve/engine/pooling.h"
#include "tideserve/model/model_directory.h"

namespace tideserve::engine {

// y = activation(W x + b), W [out_features, in_features] row-major, b optional.
struct DenseLayer {
  const float* weight = nullptr;
  const float* bias = nullptr;
  int64_t in_features = 0;
  int64_t out_features = 0;
  DenseActivation activation = DenseActivation::kIdentity;
};

struct HeadStep {
  bool normalize = false;  // an L2 normalization, else `dense`
  DenseLayer dense;
};

struct Head {
  std::optional<Pooling> pooling;  // set: every sequence is pooled this way (classifiers: CLS)
  std::vector<HeadStep> steps;
  int64_t input_size = 0;  // the encoder's hidden size

  // Each dense layer must take what the one before gives (the model loader checks it).
  int64_t output_size() const;
  // rows: [n, input_size] pooled vectors; on return [n, output_size()].
  void apply(std::vector<float>& rows, int64_t n) const;
};

}  // namespace tideserve::engine
