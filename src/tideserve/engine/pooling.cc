#include "tideserve/engine/pooling.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <string>

namespace tideserve::engine {

namespace {

constexpr std::array<std::string_view, 6> kNames = {
    "cls", "mean", "max", "mean_sqrt_len_tokens", "weightedmean", "lasttoken"};

}  // namespace

Result<Pooling> parse_pooling(std::string_view name) {
  for (size_t i = 0; i < kNames.size(); ++i) {
    if (name == kNames[i]) return static_cast<Pooling>(i);
  }
  if (name == "last_token") return Pooling::kLastToken;
  return invalid_argument("unknown pooling '" + std::string(name) +
                          "' (expected cls, mean, max, mean_sqrt_len_tokens, weightedmean or "
                          "lasttoken)");
}

const char* pooling_name(Pooling pooling) {
  return kNames[static_cast<size_t>(pooling)].data();
}

std::span<const std::string_view> pooling_names() {
  return kNames;
}

void pool_sequence(const float* x, int64_t length, int64_t hidden_size, Pooling pooling,
                   int64_t skip, float* y) {
  const int64_t h = hidden_size;
  skip = std::clamp<int64_t>(skip, 0, length > 0 ? length - 1 : 0);
  switch (pooling) {
    case Pooling::kCls:
      std::copy_n(x, h, y);
      return;
    case Pooling::kLastToken:
      std::copy_n(x + (length - 1) * h, h, y);
      return;
    case Pooling::kMax:
      std::copy_n(x + skip * h, h, y);
      for (int64_t t = skip + 1; t < length; ++t) {
        const float* row = x + t * h;
        for (int64_t c = 0; c < h; ++c) y[c] = std::max(y[c], row[c]);
      }
      return;
    case Pooling::kMean:
    case Pooling::kMeanSqrtLen:
    case Pooling::kWeightedMean: {
      std::fill_n(y, h, 0.f);
      double weights = 0.0;
      for (int64_t t = skip; t < length; ++t) {
        const float w = pooling == Pooling::kWeightedMean ? static_cast<float>(t + 1) : 1.f;
        const float* row = x + t * h;
        for (int64_t c = 0; c < h; ++c) y[c] += w * row[c];
        weights += w;
      }
      const double count = static_cast<double>(length - skip);
      const double divisor = pooling == Pooling::kMean          ? count
                             : pooling == Pooling::kMeanSqrtLen ? std::sqrt(count)
                                                                : weights;
      const float inv = divisor > 0 ? static_cast<float>(1.0 / divisor) : 0.f;
      for (int64_t c = 0; c < h; ++c) y[c] *= inv;
      return;
    }
  }
}

void l2_normalize(float* y, int64_t n) {
  double norm_sq = 0.0;
  for (int64_t c = 0; c < n; ++c) norm_sq += double{y[c]} * y[c];
  if (norm_sq > 0.0) {
    const float inv_norm = static_cast<float>(1.0 / std::sqrt(norm_sq));
    for (int64_t c = 0; c < n; ++c) y[c] *= inv_norm;
  }
}

std::vector<float> pool(std::span<const float> hidden, int64_t hidden_size,
                        std::span<const int32_t> cu_seqlens, Pooling pooling, bool normalize,
                        std::span<const int32_t> skip) {
  const int64_t num_sequences =
      cu_seqlens.empty() ? 0 : static_cast<int64_t>(cu_seqlens.size()) - 1;
  std::vector<float> out(static_cast<size_t>(num_sequences * hidden_size), 0.f);
  for (int64_t s = 0; s < num_sequences; ++s) {
    const int64_t begin = cu_seqlens[s];
    const int64_t end = cu_seqlens[s + 1];
    if (end <= begin) continue;
    float* y = out.data() + s * hidden_size;
    pool_sequence(hidden.data() + begin * hidden_size, end - begin, hidden_size, pooling,
                  skip.empty() ? 0 : skip[s], y);
    if (normalize) l2_normalize(y, hidden_size);
  }
  return out;
}

}  // namespace tideserve::engine
