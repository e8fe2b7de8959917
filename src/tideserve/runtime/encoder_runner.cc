#include "tideserve/runtime/encoder_runner.h"

#include <algorithm>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "tideserve/engine/pooling.h"

namespace tideserve::runtime {

EncoderRunner::EncoderRunner(engine::BertEncoder& encoder, engine::Head head)
    : encoder_(encoder), head_(std::move(head)) {
  head_.input_size = encoder_.config().hidden_size;
}

Status EncoderRunner::run(const BatchInput& batch, BatchOutput& output) {
  const size_t num_sequences = batch.cu_seqlens.empty() ? 0 : batch.cu_seqlens.size() - 1;
  if (batch.pooling.size() != num_sequences || batch.normalize.size() != num_sequences ||
      (!batch.pool_skip.empty() && batch.pool_skip.size() != num_sequences)) {
    return invalid_argument(fmt::format(
        "batch of {} sequences has {} pooling, {} normalize and {} skip settings", num_sequences,
        batch.pooling.size(), batch.normalize.size(), batch.pool_skip.size()));
  }
  engine::EncoderBatch encoder_batch{batch.input_ids, batch.token_type_ids, batch.cu_seqlens};
  TS_RETURN_IF_ERROR(encoder_.forward(encoder_batch, hidden_));
  const int64_t hidden = hidden_.hidden_size;
  output.pooled.resize(num_sequences * static_cast<size_t>(hidden));
  for (size_t s = 0; s < num_sequences; ++s) {
    const int64_t begin = batch.cu_seqlens[s];
    const int64_t length = int64_t{batch.cu_seqlens[s + 1]} - begin;
    engine::pool_sequence(hidden_.hidden.data() + begin * hidden, length, hidden,
                          head_.pooling.value_or(batch.pooling[s]),
                          batch.pool_skip.empty() ? 0 : batch.pool_skip[s],
                          output.pooled.data() + s * hidden);
  }
  head_.apply(output.pooled, static_cast<int64_t>(num_sequences));
  const int64_t width = head_.output_size();
  output.hidden_size = width;
  for (size_t s = 0; s < num_sequences; ++s) {
    if (batch.normalize[s] != 0) engine::l2_normalize(output.pooled.data() + s * width, width);
  }
  return Status::ok();
}

namespace {

// Warm-up token ids cycle through [0, kWarmUpIdRange): small enough for any vocabulary.
constexpr int32_t kWarmUpIdRange = 32;
// The near-budget batch holds at most this many tokens. The whole warm-up is 1 + 16 + 128 + 256
// tokens: for BERT-base (~0.17 GFLOP per token) ~0.6 s on this project's 2-core AVX2 machine
// (docs/benchmarks.md); the batch exercises the multi-sequence path and sizes the workspaces
// beyond one sequence. The longest input is not warmed up: a 512-token pass cost another second
// of every start and exercises nothing the shorter ones do not (the weights are all read by the
// first pass; a longer sequence only grows buffers).
constexpr int64_t kWarmUpBatchTokenCap = 256;

Status run_shape(BatchRunner& runner, const std::vector<int64_t>& lengths) {
  engine::FlatBatch batch;
  std::vector<int32_t> ids;
  for (int64_t len : lengths) {
    ids.clear();
    for (int64_t t = 0; t < len; ++t) ids.push_back(static_cast<int32_t>(t % kWarmUpIdRange));
    batch.add(ids);
  }
  std::vector<engine::Pooling> pooling(lengths.size(), engine::Pooling::kMean);
  std::vector<uint8_t> normalize(lengths.size(), 1);
  BatchOutput output;
  Status status = runner.run(
      {batch.input_ids(), batch.token_type_ids(), batch.cu_seqlens(), pooling, normalize, {}},
      output);
  if (!status.is_ok()) {
    return Status(status.code(), fmt::format("warm-up batch of {} sequences, {} tokens: {}",
                                             lengths.size(), batch.num_tokens(), status.message()));
  }
  return Status::ok();
}

}  // namespace

Status warm_up(BatchRunner& runner, int64_t max_sequence_length, int64_t max_batch_tokens) {
  if (max_sequence_length <= 0 || max_batch_tokens <= 0) {
    return invalid_argument(
        fmt::format("warm-up needs positive lengths (max sequence {}, max "
                    "batch tokens {})",
                    max_sequence_length, max_batch_tokens));
  }
  const int64_t longest = std::min(max_sequence_length, max_batch_tokens);
  int64_t previous = 0;
  for (int64_t len : {int64_t{1}, int64_t{16}, int64_t{128}}) {
    len = std::min(len, longest);
    if (len <= previous) continue;
    TS_RETURN_IF_ERROR(run_shape(runner, {len}));
    previous = len;
  }
  // Several sequences of a typical length filling the (capped) budget.
  const int64_t budget = std::min(max_batch_tokens, kWarmUpBatchTokenCap);
  const int64_t typical = std::min<int64_t>(longest, 64);
  std::vector<int64_t> lengths;
  for (int64_t left = budget; left > 0; left -= typical) lengths.push_back(std::min(left, typical));
  if (lengths.size() > 1) TS_RETURN_IF_ERROR(run_shape(runner, lengths));
  return Status::ok();
}

}  // namespace tideserve::runtime
