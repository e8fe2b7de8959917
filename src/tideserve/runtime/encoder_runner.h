// The production BatchRunner: BertEncoder forward over the flat batch, then per sequence its
// pooling (the head's, else the sequence's setting), the head's layers (engine/head.h) and, when
// the sequence asks, L2 normalization. Plus warm_up(), run once before a server takes traffic.
#pragma once

#include <cstdint>

#include "tideserve/engine/bert_encoder.h"
#include "tideserve/engine/head.h"
#include "tideserve/runtime/scheduler.h"
#include "tideserve/util/status.h"

namespace tideserve::runtime {

class EncoderRunner : public BatchRunner {
 public:
  // `encoder` (and the weights `head` points to) must outlive the runner. Without a head the
  // rows are the pooled hidden states. Like the encoder, run() is for one thread at a time (the
  // scheduler's engine worker).
  explicit EncoderRunner(engine::BertEncoder& encoder, engine::Head head = {});

  Status run(const BatchInput& batch, BatchOutput& output) override;
  int64_t output_size() const override { return head_.output_size(); }
  const engine::Head& head() const { return head_; }

 private:
  engine::BertEncoder& encoder_;
  engine::Head head_;
  engine::EncoderOutput hidden_;  // last hidden states, reused across batches
};

// Runs a few representative shapes through `runner` so that the first real request does not pay
// for first-touch allocations and primitive setup: single sequences of 1, 16 and 128 tokens (each
// capped at max_sequence_length), then one multi-sequence batch near the token budget (capped so
// the whole warm-up stays well under a second for BERT-base on two cores). Token ids are 0, 1, 2,
// ... (modulo a small range every vocabulary holds). Returns the first error.
Status warm_up(BatchRunner& runner, int64_t max_sequence_length, int64_t max_batch_tokens);

}  // namespace tideserve::runtime
