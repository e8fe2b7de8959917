#include "tideserve/engine/pooling.h"

#include <cmath>
#include <string>

namespace tideserve::engine {

Result<Pooling> parse_pooling(std::string_view name) {
  if (name == "cls") return Pooling::kCls;
  if (name == "mean") return Pooling::kMean;
  return invalid_argument("unknown pooling '" + std::string(name) + "' (expected cls or mean)");
}

const char* pooling_name(Pooling pooling) {
  return pooling == Pooling::kCls ? "cls" : "mean";
}

std::vector<float> pool(std::span<const float> hidden, int64_t hidden_size,
                        std::span<const int32_t> cu_seqlens, Pooling pooling, bool normalize) {
  const int64_t num_sequences =
      cu_seqlens.empty() ? 0 : static_cast<int64_t>(cu_seqlens.size()) - 1;
  std::vector<float> out(static_cast<size_t>(num_sequences * hidden_size), 0.f);
  for (int64_t s = 0; s < num_sequences; ++s) {
    const int64_t begin = cu_seqlens[s];
    const int64_t end = cu_seqlens[s + 1];
    float* y = out.data() + s * hidden_size;
    if (pooling == Pooling::kCls) {
      const float* x = hidden.data() + begin * hidden_size;
      for (int64_t c = 0; c < hidden_size; ++c) y[c] = x[c];
    } else {
      for (int64_t t = begin; t < end; ++t) {
        const float* x = hidden.data() + t * hidden_size;
        for (int64_t c = 0; c < hidden_size; ++c) y[c] += x[c];
      }
      const float inv = end > begin ? 1.f / static_cast<float>(end - begin) : 0.f;
      for (int64_t c = 0; c < hidden_size; ++c) y[c] *= inv;
    }
    if (normalize) {
      double norm_sq = 0.0;
      for (int64_t c = 0; c < hidden_size; ++c) norm_sq += double{y[c]} * y[c];
      if (norm_sq > 0.0) {
        const float inv_norm = static_cast<float>(1.0 / std::sqrt(norm_sq));
        for (int64_t c = 0; c < hidden_size; ++c) y[c] *= inv_norm;
      }
    }
  }
  return out;
}

}  // namespace tideserve::engine
