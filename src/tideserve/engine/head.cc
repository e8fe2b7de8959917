#include "tideserve/engine/head.h"

#include <oneapi/dnnl/dnnl.h>

#include <cmath>

namespace tideserve::engine {

namespace {

float activate(float x, DenseActivation activation) {
  switch (activation) {
    case DenseActivation::kIdentity:
      return x;
    case DenseActivation::kTanh:
      return std::tanh(x);
    case DenseActivation::kRelu:
      return x > 0.f ? x : 0.f;
    case DenseActivation::kSigmoid:
      return 1.f / (1.f + std::exp(-x));
    case DenseActivation::kGelu:
      return 0.5f * x * (1.f + std::erf(x * static_cast<float>(M_SQRT1_2)));
  }
  return x;
}

}  // namespace

int64_t Head::output_size() const {
  int64_t size = input_size;
  for (const HeadStep& step : steps) {
    if (!step.normalize) size = step.dense.out_features;
  }
  return size;
}

void Head::apply(std::vector<float>& rows, int64_t n) const {
  std::vector<float> next;
  int64_t width = input_size;
  for (const HeadStep& step : steps) {
    if (step.normalize) {
      for (int64_t r = 0; r < n; ++r) l2_normalize(rows.data() + r * width, width);
      continue;
    }
    const DenseLayer& d = step.dense;
    next.assign(static_cast<size_t>(n * d.out_features), 0.f);
    if (n > 0) {
      // next[n, out] = rows[n, in] W^T
      dnnl_sgemm('N', 'T', n, d.out_features, d.in_features, 1.f, rows.data(), d.in_features,
                 d.weight, d.in_features, 0.f, next.data(), d.out_features);
    }
    for (int64_t r = 0; r < n; ++r) {
      float* y = next.data() + r * d.out_features;
      for (int64_t c = 0; c < d.out_features; ++c) {
        y[c] = activate(d.bias != nullptr ? y[c] + d.bias[c] : y[c], d.activation);
      }
    }
    rows.swap(next);
    width = d.out_features;
  }
}

}  // namespace tideserve::engine
