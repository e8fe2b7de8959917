// The one builder of flat batches: the concatenated token ids and type ids of several sequences
// plus their cumulative lengths (cu_seqlens), which is what BertEncoder::forward reads. The
// scheduler, warm-up and the engine benchmark all build their batches with it. No oneDNN here.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace tideserve::engine {

// A view of one batch: sequence s owns tokens [cu_seqlens[s], cu_seqlens[s+1]). Positions restart
// at 0 in each sequence. token_type_ids may be empty (all 0).
struct EncoderBatch {
  std::span<const int32_t> input_ids;
  std::span<const int32_t> token_type_ids;
  std::span<const int32_t> cu_seqlens;

  int64_t num_tokens() const { return static_cast<int64_t>(input_ids.size()); }
  int64_t num_sequences() const {
    return cu_seqlens.empty() ? 0 : static_cast<int64_t>(cu_seqlens.size()) - 1;
  }
};

class FlatBatch {
 public:
  FlatBatch() { cu_seqlens_.push_back(0); }

  // Appends one sequence; empty `type_ids` means all 0, else it has one entry per id.
  void add(std::span<const int32_t> ids, std::span<const int32_t> type_ids = {}) {
    input_ids_.insert(input_ids_.end(), ids.begin(), ids.end());
    if (type_ids.empty()) {
      token_type_ids_.resize(token_type_ids_.size() + ids.size(), 0);
    } else {
      token_type_ids_.insert(token_type_ids_.end(), type_ids.begin(), type_ids.end());
    }
    cu_seqlens_.push_back(static_cast<int32_t>(input_ids_.size()));
  }
  void clear() {
    input_ids_.clear();
    token_type_ids_.clear();
    cu_seqlens_.assign(1, 0);
  }
  void reserve(size_t sequences, size_t tokens) {
    cu_seqlens_.reserve(sequences + 1);
    input_ids_.reserve(tokens);
    token_type_ids_.reserve(tokens);
  }

  int64_t num_sequences() const { return static_cast<int64_t>(cu_seqlens_.size()) - 1; }
  int64_t num_tokens() const { return static_cast<int64_t>(input_ids_.size()); }
  std::span<const int32_t> input_ids() const { return input_ids_; }
  std::span<const int32_t> token_type_ids() const { return token_type_ids_; }
  std::span<const int32_t> cu_seqlens() const { return cu_seqlens_; }
  EncoderBatch view() const { return {input_ids_, token_type_ids_, cu_seqlens_}; }

 private:
  std::vector<int32_t> input_ids_;
  std::vector<int32_t> token_type_ids_;
  std::vector<int32_t> cu_seqlens_;
};

}  // namespace tideserve::engine
