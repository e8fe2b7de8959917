#include "tideserve/engine/ops.h"

#include <cmath>

namespace tideserve::engine {

void layer_norm(const float* in, const float* gamma, const float* beta, float eps, int64_t rows,
                int64_t cols, float* out, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (rows > 16)
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = in + r * cols;
    float* y = out + r * cols;
    float sum = 0.f;
    for (int64_t c = 0; c < cols; ++c) sum += x[c];
    const float mean = sum / static_cast<float>(cols);
    float sq = 0.f;
    for (int64_t c = 0; c < cols; ++c) {
      const float d = x[c] - mean;
      sq += d * d;
    }
    const float inv_std = 1.f / std::sqrt(sq / static_cast<float>(cols) + eps);
    for (int64_t c = 0; c < cols; ++c) y[c] = (x[c] - mean) * inv_std * gamma[c] + beta[c];
  }
}

void softmax_row(float* row, int64_t n, float scale) {
  float max_value = row[0] * scale;
  for (int64_t i = 0; i < n; ++i) {
    row[i] *= scale;
    if (row[i] > max_value) max_value = row[i];
  }
  float sum = 0.f;
  for (int64_t i = 0; i < n; ++i) {
    row[i] = std::exp(row[i] - max_value);
    sum += row[i];
  }
  const float inv = 1.f / sum;
  for (int64_t i = 0; i < n; ++i) row[i] *= inv;
}

void add_inplace(float* out, const float* in, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] += in[i];
}

}  // namespace tideserve::engine
