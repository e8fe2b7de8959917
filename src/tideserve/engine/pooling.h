// Pooling of the last hidden states into one vector per sequence, with the modes
// sentence-transformers' Pooling module defines (its config names them pooling_mode_*):
//
//   cls                   the first token's state ([CLS])
//   mean                  the mean over the pooled tokens
//   max                   the elementwise max over the pooled tokens
//   mean_sqrt_len_tokens  the sum over the pooled tokens / sqrt(their count)
//   weightedmean          sum_t (t+1) x_t / sum_t (t+1), t the position inside the sequence
//   lasttoken             the last token's state
//
// The pooled tokens are all of the sequence's, or, with a skip k (a prompt excluded from pooling:
// include_prompt false), those at positions >= k. cls and lasttoken ignore the skip, as
// sentence-transformers does (it takes token 0 whatever the mask says; the last token follows the
// prompt).
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "tideserve/util/status.h"

namespace tideserve::engine {

enum class Pooling { kCls, kMean, kMax, kMeanSqrtLen, kWeightedMean, kLastToken };

// "cls", "mean", "max", "mean_sqrt_len_tokens", "weightedmean", "lasttoken" (also "last_token",
// TEI's spelling).
Result<Pooling> parse_pooling(std::string_view name);
const char* pooling_name(Pooling pooling);
// Every name parse_pooling accepts first, for help texts and messages.
std::span<const std::string_view> pooling_names();

// Pools tokens [0, length) of one sequence, `x` its [length, hidden_size] states, into `y`
// [hidden_size]. `skip` < length.
void pool_sequence(const float* x, int64_t length, int64_t hidden_size, Pooling pooling,
                   int64_t skip, float* y);

// Scales `y` to unit L2 norm (a zero vector stays zero).
void l2_normalize(float* y, int64_t n);

// hidden: [cu_seqlens.back(), hidden_size]. Returns [num_sequences, hidden_size]; `skip`, if not
// empty, holds one count per sequence; with `normalize`, each row is scaled to unit L2 norm.
std::vector<float> pool(std::span<const float> hidden, int64_t hidden_size,
                        std::span<const int32_t> cu_seqlens, Pooling pooling, bool normalize,
                        std::span<const int32_t> skip = {});

}  // namespace tideserve::engine
