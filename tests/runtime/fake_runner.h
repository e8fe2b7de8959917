// A deterministic BatchRunner for scheduler tests: each pooled vector is computed from the
// sequence's ids, every batch is recorded, and a test can hold batches until it releases them.
// No engine, no OpenMP: ThreadSanitizer sees only the scheduler.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <vector>

#include "tideserve/runtime/scheduler.h"

namespace tideserve::runtime::testing {

inline constexpr int64_t kFakeHidden = 4;

// What the fake runner computes for one sequence (the tests' reference).
inline std::vector<float> fake_embedding(const std::vector<int32_t>& ids,
                                         const std::vector<int32_t>& type_ids,
                                         engine::Pooling pooling, bool normalize) {
  double sum = 0, type_sum = 0;
  for (int32_t id : ids) sum += id;
  for (int32_t t : type_ids) type_sum += t;
  const double len = static_cast<double>(ids.size());
  std::vector<float> out(kFakeHidden);
  out[0] = static_cast<float>(pooling == engine::Pooling::kCls ? ids[0] : sum / len);
  out[1] = static_cast<float>(len);
  out[2] = static_cast<float>(type_sum);
  out[3] = static_cast<float>((normalize ? 1000 : 0) + (pooling == engine::Pooling::kMean ? 1 : 0));
  return out;
}

struct RecordedBatch {
  std::vector<std::vector<int32_t>> sequences;  // ids of each sequence, in batch order
  int64_t tokens = 0;
};

class FakeRunner : public BatchRunner {
 public:
  Status run(const BatchInput& batch, BatchOutput& output) override {
    RecordedBatch record;
    const size_t n = batch.cu_seqlens.size() - 1;
    output.hidden_size = kFakeHidden;
    output.pooled.clear();
    for (size_t s = 0; s < n; ++s) {
      const auto begin = batch.input_ids.begin() + batch.cu_seqlens[s];
      const auto end = batch.input_ids.begin() + batch.cu_seqlens[s + 1];
      std::vector<int32_t> ids(begin, end);
      std::vector<int32_t> types(batch.token_type_ids.begin() + batch.cu_seqlens[s],
                                 batch.token_type_ids.begin() + batch.cu_seqlens[s + 1]);
      std::vector<float> e = fake_embedding(ids, types, batch.pooling[s], batch.normalize[s] != 0);
      output.pooled.insert(output.pooled.end(), e.begin(), e.end());
      record.tokens += static_cast<int64_t>(ids.size());
      record.sequences.push_back(std::move(ids));
    }
    std::unique_lock<std::mutex> lock(mutex_);
    batches_.push_back(std::move(record));
    const int64_t number = ++started_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return !holding_ || released_ >= number; });
    if (number == fail_number_) return fail_status_;
    return Status::ok();
  }

  int64_t output_size() const override { return kFakeHidden; }

  // From now on each batch waits in run() until release() lets it go.
  void hold() {
    std::lock_guard<std::mutex> lock(mutex_);
    holding_ = true;
  }
  // Lets every batch started so far finish; later ones wait again while holding.
  void release() {
    std::lock_guard<std::mutex> lock(mutex_);
    released_ = started_;
    cv_.notify_all();
  }
  // Stops holding: every batch, current and future, runs through.
  void open() {
    std::lock_guard<std::mutex> lock(mutex_);
    holding_ = false;
    cv_.notify_all();
  }
  // Waits until `count` batches have entered run(); false after a generous timeout.
  bool wait_started(int64_t count) {
    std::unique_lock<std::mutex> lock(mutex_);
    return cv_.wait_for(lock, std::chrono::seconds(60), [&] { return started_ >= count; });
  }
  // The `number`-th batch (1-based, in the order they enter run()) returns `status`.
  void fail_batch(int64_t number, Status status) {
    std::lock_guard<std::mutex> lock(mutex_);
    fail_number_ = number;
    fail_status_ = std::move(status);
  }
  std::vector<RecordedBatch> batches() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return batches_;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  bool holding_ = false;
  int64_t started_ = 0;
  int64_t released_ = 0;
  int64_t fail_number_ = 0;
  Status fail_status_;
  std::vector<RecordedBatch> batches_;
};

}  // namespace tideserve::runtime::testing
