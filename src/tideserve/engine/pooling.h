// Pooling of the last hidden states into one vector per sequence.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "tideserve/util/status.h"

namespace tideserve::engine {

enum class Pooling { kCls, kMean };

Result<Pooling> parse_pooling(std::string_view name);  // "cls" | "mean"
const char* pooling_name(Pooling pooling);

// hidden: [cu_seqlens.back(), hidden_size]. Returns [num_sequences, hidden_size]; with
// `normalize`, each row is scaled to unit L2 norm (a zero row stays zero).
std::vector<float> pool(std::span<const float> hidden, int64_t hidden_size,
                        std::span<const int32_t> cu_seqlens, Pooling pooling, bool normalize);

}  // namespace tideserve::engine
