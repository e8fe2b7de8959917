// The runtime between the API front ends and the engine: bounded admission, a token-budget
// batcher over a FIFO of sequences, and one engine worker thread.
//
//   submit(job) --(admission: inputs in flight <= max_concurrent_requests, else
//   kResourceExhausted)-->
//   FIFO of sequences --(engine worker: next batch = sequences in order while the sum of real
//   tokens <= max_batch_tokens and count <= max_batch_requests)--> BatchRunner::run
//   --> each job's on_done, once all its sequences are computed (or it failed / was cancelled).
//   With several models, each batch first takes a turn at the process's ComputeGate.
//
// Nothing here knows HTTP. Compute runs only on the engine worker thread. Front ends do not use
// the scheduler directly: they call the core service (embedding_service.h), which owns the jobs.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "tideserve/engine/flat_batch.h"
#include "tideserve/engine/pooling.h"
#include "tideserve/runtime/compute_gate.h"
#include "tideserve/util/clock.h"
#include "tideserve/util/status.h"

namespace tideserve::runtime {

using tideserve::Clock;

struct SchedulerOptions {
  int64_t max_concurrent_requests = 512;  // inputs admitted and not yet answered
  int64_t max_batch_tokens = 2048;        // real tokens per engine batch
  int64_t max_batch_requests = 256;       // sequences per engine batch
  int64_t batch_wait_us = 0;              // wait this long for more work before a batch
  // Shared by the schedulers of every model a process serves: one batch computes at a time, in
  // the order the workers asked (compute_gate.h). Null: this scheduler computes on its own.
  std::shared_ptr<ComputeGate> gate;
};

// One tokenized input.
struct Sequence {
  std::vector<int32_t> ids;
  std::vector<int32_t> type_ids;  // empty = all 0
  int32_t pool_skip = 0;          // leading tokens pooling leaves out (a prompt), < ids.size()
};

// What the engine worker hands to the runner: a flat batch plus how to pool each sequence.
struct BatchInput {
  std::span<const int32_t> input_ids;
  std::span<const int32_t> token_type_ids;   // same length as input_ids
  std::span<const int32_t> cu_seqlens;       // num_sequences + 1
  std::span<const engine::Pooling> pooling;  // per sequence
  std::span<const uint8_t> normalize;        // per sequence (0/1)
  std::span<const int32_t> pool_skip;        // per sequence
};

// The runner writes one output row per sequence: [num_sequences, output_size()] (an embedding,
// or a classifier's logits).
struct BatchOutput {
  std::vector<float> pooled;
  int64_t hidden_size = 0;  // the row width
};

// The engine seen from the runtime (BertEncoder + head in production; fakes in tests).
class BatchRunner {
 public:
  virtual ~BatchRunner() = default;
  virtual Status run(const BatchInput& batch, BatchOutput& output) = 0;
  virtual int64_t output_size() const = 0;  // the width of every row it writes
};

// Set once from any thread when the caller no longer wants the answer; copies share the flag.
class CancelToken {
 public:
  CancelToken() : flag_(std::make_shared<std::atomic<bool>>(false)) {}
  void cancel() const { flag_->store(true, std::memory_order_relaxed); }
  bool cancelled() const { return flag_->load(std::memory_order_relaxed); }

 private:
  std::shared_ptr<std::atomic<bool>> flag_;
};

struct JobTimings {
  double queue_ms = 0;      // admitted -> first of its sequences enters a batch
  double inference_ms = 0;  // first batch start -> last batch end, for this job
};

struct JobResult {
  Status status;  // ok, or why not (kCancelled when cancelled, kUnavailable when shut down)
  std::vector<float> embeddings;  // [num_inputs, hidden_size]: the runner's rows
  int64_t hidden_size = 0;        // the row width
  int64_t prompt_tokens = 0;
  JobTimings timings;
};

// One API request: several inputs pooled the same way.
struct Job {
  std::vector<Sequence> inputs;
  engine::Pooling pooling = engine::Pooling::kCls;
  bool normalize = false;
  // Called exactly once per admitted job, on the engine worker thread (on the thread running
  // drain() or the destructor only for a scheduler that was never started). A rejected submit
  // never calls it. Keep it cheap: post the result to an IO executor.
  std::function<void(JobResult&&)> on_done;
  // Optional (streaming): called on the engine worker with each input's row as soon as the batch
  // holding it completes, before on_done; never for a job that failed or was cancelled before
  // that input was computed. Keep it cheap: post the row to another thread.
  std::function<void(size_t input, std::span<const float> row)> on_row;
  // Cancelled from any thread when the client went away; the job's sequences not yet computed
  // are dropped before compute and on_done gets kCancelled.
  CancelToken cancel;
};

// Per-batch figures for metrics.
struct BatchStats {
  int64_t sequences = 0;
  int64_t tokens = 0;
  double inference_ms = 0;
};

class Scheduler {
 public:
  Scheduler(BatchRunner& runner, const SchedulerOptions& options);
  // Stops the worker after its current batch; jobs still queued get kUnavailable "shutting down".
  // Blocks only as long as the batch being computed.
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Starts the engine worker thread.
  void start();

  // Admits the job or refuses it at once: kResourceExhausted when admitting it would exceed
  // max_concurrent_requests inputs in flight, kUnavailable when the scheduler is draining/stopped;
  // kInvalidArgument for a null job or on_done, an empty job, an empty sequence, a sequence longer
  // than max_batch_tokens, type_ids of the wrong length, or more inputs than
  // max_concurrent_requests (a job that could never be admitted).
  // On success on_done will be called exactly once.
  Status submit(std::shared_ptr<Job> job);

  // Refuse new jobs from now on; finish everything already admitted; then stop the worker.
  // Returns true if all admitted work finished before `timeout`. On false the worker keeps going
  // (admission stays closed); a later drain() or the destructor ends it.
  bool drain(std::chrono::milliseconds timeout);

  int64_t queue_depth() const;          // sequences waiting for a batch
  int64_t inflight_inputs() const;      // admitted inputs not yet answered
  int64_t cancelled_sequences() const;  // dropped before compute because their job was cancelled

  // Called on the worker thread after each batch (metrics).
  void set_batch_observer(std::function<void(const BatchStats&)> observer);

  const SchedulerOptions& options() const { return options_; }

 private:
  struct Pending;
  struct Slot;  // one sequence of one pending job, taken into a batch

  void worker_loop();
  // Waits (mutex_ held) while batch_wait_us allows more work to arrive for the next batch.
  void wait_for_more_locked(std::unique_lock<std::mutex>& lock);
  bool batch_full_locked() const;
  // Removes cancelled jobs from the queue (mutex_ held); they are answered by the caller.
  void drop_cancelled_locked(std::vector<std::shared_ptr<Pending>>& dropped);
  // Takes the next batch off the FIFO (mutex_ held).
  void take_batch_locked(std::vector<Slot>& slots);
  // Removes a job's sequences not yet taken from the queue (mutex_ held).
  void remove_queued_locked(const Pending& pending);
  void run_batch(std::vector<Slot>& slots, const std::function<void(const BatchStats&)>& observer);
  // Answers a job (never with mutex_ held): releases its inputs, then calls on_done.
  void finish(Pending& pending, Status status, const JobTimings& timings = {});
  // Answers every queued job with kUnavailable "shutting down".
  void answer_queued_as_shutting_down();

  BatchRunner& runner_;
  SchedulerOptions options_;
  mutable std::mutex mutex_;
  std::condition_variable work_cv_;             // worker waits for work / stop
  std::condition_variable idle_cv_;             // drain waits for an empty queue and an idle worker
  std::deque<std::shared_ptr<Pending>> queue_;  // jobs with sequences not yet taken, FIFO
  std::mutex lifecycle_mutex_;                  // start / join of worker_
  std::thread worker_;
  bool started_ = false;       // guarded by mutex_
  bool accepting_ = true;      // guarded by mutex_
  bool stopping_ = false;      // guarded by mutex_: the worker exits after its current batch
  bool busy_ = false;          // guarded by mutex_: the worker holds taken work not yet answered
  int64_t queued_tokens_ = 0;  // guarded by mutex_: tokens of the queued sequences
  std::atomic<int64_t> inflight_{0};
  std::atomic<int64_t> queued_{0};
  std::atomic<int64_t> cancelled_{0};
  std::function<void(const BatchStats&)> batch_observer_;  // guarded by mutex_
  engine::FlatBatch batch_;  // the worker's batch, reused (worker thread only)
};

// The production runner (EncoderRunner) and warm_up() are in encoder_runner.h.
}  // namespace tideserve::runtime
