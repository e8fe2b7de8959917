#include "tideserve/runtime/scheduler.h"

#include <algorithm>
#include <string>
#include <utility>

#include <fmt/format.h>

namespace tideserve::runtime {
namespace {}  // namespace

// One admitted job. `next_input` is guarded by mutex_; the rest after admission belongs to the
// worker thread (or to whoever answers the job once it has left the queue).
struct Scheduler::Pending {
  std::shared_ptr<Job> job;
  Clock::time_point admitted;
  int64_t num_inputs = 0;
  int64_t prompt_tokens = 0;
  size_t next_input = 0;  // first input not yet taken into a batch

  std::vector<float> embeddings;  // [num_inputs, hidden], filled batch by batch
  int64_t computed = 0;
  bool started = false;
  bool answered = false;
  Clock::time_point first_batch_start;
};

struct Scheduler::Slot {
  std::shared_ptr<Pending> pending;
  size_t input = 0;
};

Scheduler::Scheduler(BatchRunner& runner, const SchedulerOptions& options)
    : runner_(runner), options_(options) {
  options_.max_concurrent_requests = std::max<int64_t>(options_.max_concurrent_requests, 1);
  options_.max_batch_tokens = std::max<int64_t>(options_.max_batch_tokens, 1);
  options_.max_batch_requests = std::max<int64_t>(options_.max_batch_requests, 1);
  options_.batch_wait_us = std::max<int64_t>(options_.batch_wait_us, 0);
}

Scheduler::~Scheduler() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    accepting_ = false;
    stopping_ = true;
  }
  work_cv_.notify_all();
  {
    std::lock_guard<std::mutex> lifecycle(lifecycle_mutex_);
    if (worker_.joinable()) worker_.join();
  }
  // The worker answers what it leaves behind; this covers a scheduler that never started.
  answer_queued_as_shutting_down();
}

void Scheduler::start() {
  std::lock_guard<std::mutex> lifecycle(lifecycle_mutex_);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (started_ || stopping_) return;
    started_ = true;
  }
  worker_ = std::thread([this] { worker_loop(); });
}

Status Scheduler::submit(std::shared_ptr<Job> job) {
  if (job == nullptr) return invalid_argument("no job");
  if (!job->on_done) return invalid_argument("job has no on_done callback");
  if (job->inputs.empty()) return invalid_argument("job has no inputs");
  const int64_t num_inputs = static_cast<int64_t>(job->inputs.size());
  if (num_inputs > options_.max_concurrent_requests) {
    // It could never be admitted: retrying (429) would not help.
    return invalid_argument(fmt::format("{} inputs in one request; at most {} can be in flight",
                                        num_inputs, options_.max_concurrent_requests));
  }
  int64_t tokens = 0;
  for (size_t i = 0; i < job->inputs.size(); ++i) {
    const Sequence& seq = job->inputs[i];
    const int64_t len = static_cast<int64_t>(seq.ids.size());
    if (len == 0) return invalid_argument(fmt::format("input {} has no tokens", i));
    if (len > options_.max_batch_tokens) {
      return invalid_argument(fmt::format("input {} has {} tokens; a batch holds at most {}", i,
                                          len, options_.max_batch_tokens));
    }
    if (!seq.type_ids.empty() && seq.type_ids.size() != seq.ids.size()) {
      return invalid_argument(fmt::format("input {} has {} token type ids for {} tokens", i,
                                          seq.type_ids.size(), seq.ids.size()));
    }
    if (seq.pool_skip < 0 || seq.pool_skip >= len) {
      return invalid_argument(
          fmt::format("input {} skips {} of its {} tokens in pooling", i, seq.pool_skip, len));
    }
    tokens += len;
  }

  auto pending = std::make_shared<Pending>();
  pending->job = std::move(job);
  pending->num_inputs = num_inputs;
  pending->prompt_tokens = tokens;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!accepting_) return unavailable("the scheduler is draining");
    const int64_t inflight = inflight_.load(std::memory_order_relaxed);
    if (inflight + num_inputs > options_.max_concurrent_requests) {
      return resource_exhausted(
          fmt::format("{} inputs in flight, limit {}", inflight, options_.max_concurrent_requests));
    }
    // Only submit (under mutex_) adds; the worker may subtract concurrently, so the check above
    // is conservative and the update must be one atomic read-modify-write.
    inflight_.fetch_add(num_inputs, std::memory_order_relaxed);
    queued_.fetch_add(num_inputs, std::memory_order_relaxed);
    queued_tokens_ += tokens;
    pending->admitted = Clock::now();
    queue_.push_back(std::move(pending));
  }
  work_cv_.notify_one();
  return Status::ok();
}

bool Scheduler::drain(std::chrono::milliseconds timeout) {
  bool started;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    accepting_ = false;
    started = started_;
  }
  work_cv_.notify_all();  // ends a batch_wait_us wait: nothing more will arrive
  if (!started) {
    // No worker to finish the admitted work: answer it now rather than never.
    bool had_work;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      had_work = !queue_.empty();
    }
    answer_queued_as_shutting_down();
    return !had_work;
  }
  bool finished;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    finished = idle_cv_.wait_for(lock, timeout, [this] { return queue_.empty() && !busy_; });
    if (finished) stopping_ = true;
  }
  if (!finished) return false;
  work_cv_.notify_all();
  std::lock_guard<std::mutex> lifecycle(lifecycle_mutex_);
  if (worker_.joinable()) worker_.join();
  return true;
}

int64_t Scheduler::queue_depth() const {
  return queued_.load(std::memory_order_relaxed);
}

int64_t Scheduler::inflight_inputs() const {
  return inflight_.load(std::memory_order_relaxed);
}

int64_t Scheduler::cancelled_sequences() const {
  return cancelled_.load(std::memory_order_relaxed);
}

void Scheduler::set_batch_observer(std::function<void(const BatchStats&)> observer) {
  std::lock_guard<std::mutex> lock(mutex_);
  batch_observer_ = std::move(observer);
}

bool Scheduler::batch_full_locked() const {
  return queued_.load(std::memory_order_relaxed) >= options_.max_batch_requests ||
         queued_tokens_ >= options_.max_batch_tokens;
}

void Scheduler::wait_for_more_locked(std::unique_lock<std::mutex>& lock) {
  if (options_.batch_wait_us <= 0 || queue_.empty()) return;
  // The wait counts from when the oldest queued work arrived: a backlog built up during the
  // previous batch goes at once.
  const Clock::time_point deadline =
      queue_.front()->admitted + std::chrono::microseconds(options_.batch_wait_us);
  work_cv_.wait_until(lock, deadline,
                      [this] { return stopping_ || !accepting_ || batch_full_locked(); });
}

void Scheduler::remove_queued_locked(const Pending& pending) {
  auto it = std::find_if(queue_.begin(), queue_.end(),
                         [&](const std::shared_ptr<Pending>& p) { return p.get() == &pending; });
  if (it == queue_.end()) return;
  int64_t tokens = 0;
  const int64_t sequences = pending.num_inputs - static_cast<int64_t>(pending.next_input);
  for (size_t i = pending.next_input; i < pending.job->inputs.size(); ++i) {
    tokens += static_cast<int64_t>(pending.job->inputs[i].ids.size());
  }
  queued_.fetch_sub(sequences, std::memory_order_relaxed);
  queued_tokens_ -= tokens;
  queue_.erase(it);
}

void Scheduler::drop_cancelled_locked(std::vector<std::shared_ptr<Pending>>& dropped) {
  for (const std::shared_ptr<Pending>& p : queue_) {
    if (p->job->cancel.cancelled()) dropped.push_back(p);
  }
  for (const std::shared_ptr<Pending>& p : dropped) {
    cancelled_.fetch_add(p->num_inputs - static_cast<int64_t>(p->next_input),
                         std::memory_order_relaxed);
    remove_queued_locked(*p);
  }
}

void Scheduler::take_batch_locked(std::vector<Slot>& slots) {
  int64_t tokens = 0;
  int64_t count = 0;
  while (!queue_.empty() && count < options_.max_batch_requests) {
    Pending& p = *queue_.front();
    const std::vector<Sequence>& inputs = p.job->inputs;
    bool budget_full = false;
    while (p.next_input < inputs.size() && count < options_.max_batch_requests) {
      const int64_t len = static_cast<int64_t>(inputs[p.next_input].ids.size());
      if (tokens + len > options_.max_batch_tokens) {
        budget_full = true;
        break;
      }
      slots.push_back({queue_.front(), p.next_input});
      tokens += len;
      ++count;
      ++p.next_input;
    }
    const bool job_taken = p.next_input == inputs.size();
    if (job_taken) queue_.pop_front();  // the slots keep it alive
    if (!job_taken || budget_full) break;
  }
  // Every admitted sequence fits max_batch_tokens, so a batch takes at least one when any wait.
  TS_CHECK(!slots.empty() || queue_.empty());
  queued_.fetch_sub(count, std::memory_order_relaxed);
  queued_tokens_ -= tokens;
}

void Scheduler::finish(Pending& pending, Status status, const JobTimings& timings) {
  TS_CHECK(!pending.answered);
  pending.answered = true;
  JobResult result;
  if (status.is_ok()) {
    result.embeddings = std::move(pending.embeddings);
    result.hidden_size = runner_.output_size();
    result.prompt_tokens = pending.prompt_tokens;
    result.timings = timings;
  }
  result.status = std::move(status);
  // Release the capacity first: whoever reacts to on_done may submit again at once.
  inflight_.fetch_sub(pending.num_inputs, std::memory_order_relaxed);
  pending.job->on_done(std::move(result));
}

void Scheduler::run_batch(std::vector<Slot>& slots,
                          const std::function<void(const BatchStats&)>& observer) {
  const int64_t hidden = runner_.output_size();
  engine::FlatBatch& batch = batch_;  // reused across batches (worker thread only)
  batch.clear();
  std::vector<engine::Pooling> pooling;
  std::vector<uint8_t> normalize;
  std::vector<int32_t> pool_skip;
  pooling.reserve(slots.size());
  normalize.reserve(slots.size());
  pool_skip.reserve(slots.size());
  for (const Slot& slot : slots) {
    const Job& job = *slot.pending->job;
    const Sequence& seq = job.inputs[slot.input];
    batch.add(seq.ids, seq.type_ids);
    pooling.push_back(job.pooling);
    normalize.push_back(job.normalize ? 1 : 0);
    pool_skip.push_back(seq.pool_skip);
  }

  const Clock::time_point batch_start = Clock::now();
  for (Slot& slot : slots) {
    Pending& p = *slot.pending;
    if (!p.started) {
      p.started = true;
      p.first_batch_start = batch_start;
      p.embeddings.assign(static_cast<size_t>(p.num_inputs * hidden), 0.f);
    }
  }
  BatchInput input{
      batch.input_ids(), batch.token_type_ids(), batch.cu_seqlens(), pooling, normalize, pool_skip};
  BatchOutput output;
  Status status = runner_.run(input, output);
  const Clock::time_point batch_end = Clock::now();
  if (status.is_ok() &&
      output.pooled.size() != static_cast<size_t>(static_cast<int64_t>(slots.size()) * hidden)) {
    status = internal_error(fmt::format("the runner wrote {} values for {} sequences of {}",
                                        output.pooled.size(), slots.size(), hidden));
  }
  if (observer) {
    observer(BatchStats{static_cast<int64_t>(slots.size()), batch.num_tokens(),
                        ms_between(batch_start, batch_end)});
  }

  if (!status.is_ok()) {
    // Every job in the batch fails; their sequences still queued are never computed.
    std::vector<Pending*> failed;
    for (const Slot& slot : slots) {
      Pending* p = slot.pending.get();
      if (std::find(failed.begin(), failed.end(), p) == failed.end()) failed.push_back(p);
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (Pending* p : failed) remove_queued_locked(*p);
    }
    for (Pending* p : failed) finish(*p, status);
    return;
  }
  for (size_t s = 0; s < slots.size(); ++s) {
    Pending& p = *slots[s].pending;
    std::copy_n(output.pooled.begin() + static_cast<std::ptrdiff_t>(s * hidden), hidden,
                p.embeddings.begin() + static_cast<std::ptrdiff_t>(slots[s].input * hidden));
    if (p.job->on_row) {
      p.job->on_row(slots[s].input,
                    std::span<const float>(output.pooled)
                        .subspan(s * static_cast<size_t>(hidden), static_cast<size_t>(hidden)));
    }
    if (++p.computed == p.num_inputs) {
      finish(p, Status::ok(),
             JobTimings{ms_between(p.admitted, p.first_batch_start),
                        ms_between(p.first_batch_start, batch_end)});
    }
  }
}

void Scheduler::answer_queued_as_shutting_down() {
  std::deque<std::shared_ptr<Pending>> rest;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    rest.swap(queue_);
    queued_.store(0, std::memory_order_relaxed);
    queued_tokens_ = 0;
  }
  for (const std::shared_ptr<Pending>& p : rest) {
    finish(*p, unavailable("shutting down"));
  }
}

void Scheduler::worker_loop() {
  std::vector<Slot> slots;
  std::vector<std::shared_ptr<Pending>> dropped;
  for (;;) {
    std::function<void(const BatchStats&)> observer;
    ComputeGate::Turn turn;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      work_cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) break;
      wait_for_more_locked(lock);
      if (stopping_) break;
      if (options_.gate) {
        // Wait for this model's turn without the lock: submits keep arriving and join the batch
        // taken once the turn comes.
        lock.unlock();
        turn = options_.gate->acquire();
        lock.lock();
        if (stopping_) break;
      }
      drop_cancelled_locked(dropped);
      take_batch_locked(slots);
      busy_ = true;
      observer = batch_observer_;
    }
    for (const std::shared_ptr<Pending>& p : dropped) {
      finish(*p, cancelled_error("request cancelled"));
    }
    dropped.clear();
    if (!slots.empty()) run_batch(slots, observer);
    turn.release();
    slots.clear();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      busy_ = false;
    }
    idle_cv_.notify_all();
  }
  answer_queued_as_shutting_down();
}

}  // namespace tideserve::runtime
