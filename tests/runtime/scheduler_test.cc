// The scheduler against a fake runner: budgets, FIFO order, backpressure, cancellation, failure,
// drain, shutdown and concurrency. Synchronization is by holding the runner and waiting on
// conditions; times appear only as generous upper bounds.
#include "tideserve/runtime/scheduler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "fake_runner.h"

namespace tideserve::runtime {
namespace {

using testing::fake_embedding;
using testing::FakeRunner;
using testing::kFakeHidden;
using testing::RecordedBatch;

constexpr auto kLongWait = std::chrono::seconds(60);

// A sequence of `len` tokens whose first id is `tag` (so batches can be traced back to inputs).
Sequence seq(int32_t tag, int len) {
  Sequence s;
  s.ids.assign(static_cast<size_t>(len), 1);
  s.ids[0] = tag;
  for (int i = 1; i < len; ++i) s.ids[i] = (tag + i) % 97;
  return s;
}

int32_t tag_of(int job, int input) {
  return job * 16 + input + 1;
}

// Collects the answers of every job, keyed by job number.
class Collector {
 public:
  struct Outcome {
    int calls = 0;
    JobResult result;
    std::thread::id thread;
  };

  std::shared_ptr<Job> job(int number, std::vector<Sequence> inputs,
                           engine::Pooling pooling = engine::Pooling::kCls,
                           bool normalize = false) {
    auto job = std::make_shared<Job>();
    job->inputs = std::move(inputs);
    job->pooling = pooling;
    job->normalize = normalize;
    job->on_done = [this, number](JobResult&& result) {
      std::lock_guard<std::mutex> lock(mutex_);
      Outcome& outcome = outcomes_[number];
      ++outcome.calls;
      outcome.result = std::move(result);
      outcome.thread = std::this_thread::get_id();
      ++answered_;
      cv_.notify_all();
    };
    return job;
  }

  // A job of `num_inputs` sequences of `len` tokens, tagged by job number and input index.
  std::shared_ptr<Job> tagged(int number, int num_inputs, int len) {
    std::vector<Sequence> inputs;
    for (int i = 0; i < num_inputs; ++i) inputs.push_back(seq(tag_of(number, i), len));
    return job(number, std::move(inputs));
  }

  bool wait_answered(int64_t count) {
    std::unique_lock<std::mutex> lock(mutex_);
    return cv_.wait_for(lock, kLongWait, [&] { return answered_ >= count; });
  }
  int64_t answered() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return answered_;
  }
  Outcome outcome(int number) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = outcomes_.find(number);
    return it == outcomes_.end() ? Outcome{} : it->second;
  }
  std::map<int, Outcome> outcomes() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return outcomes_;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::map<int, Outcome> outcomes_;
  int64_t answered_ = 0;
};

// The embeddings the fake runner must produce for a job, in input order.
std::vector<float> expected_embeddings(const Job& job) {
  std::vector<float> out;
  for (const Sequence& s : job.inputs) {
    std::vector<int32_t> types =
        s.type_ids.empty() ? std::vector<int32_t>(s.ids.size(), 0) : s.type_ids;
    std::vector<float> e = fake_embedding(s.ids, types, job.pooling, job.normalize);
    out.insert(out.end(), e.begin(), e.end());
  }
  return out;
}

void expect_ok(const Collector::Outcome& outcome, const Job& job) {
  EXPECT_EQ(outcome.calls, 1);
  ASSERT_TRUE(outcome.result.status.is_ok()) << outcome.result.status.to_string();
  EXPECT_EQ(outcome.result.hidden_size, kFakeHidden);
  EXPECT_EQ(outcome.result.embeddings, expected_embeddings(job));
  int64_t tokens = 0;
  for (const Sequence& s : job.inputs) tokens += static_cast<int64_t>(s.ids.size());
  EXPECT_EQ(outcome.result.prompt_tokens, tokens);
  EXPECT_GE(outcome.result.timings.queue_ms, 0);
  EXPECT_GE(outcome.result.timings.inference_ms, 0);
}

std::set<int32_t> tags_seen(const std::vector<RecordedBatch>& batches) {
  std::set<int32_t> tags;
  for (const RecordedBatch& b : batches) {
    for (const auto& s : b.sequences) tags.insert(s[0]);
  }
  return tags;
}

TEST(SchedulerTest, RejectsInvalidJobs) {
  FakeRunner runner;
  SchedulerOptions options;
  options.max_batch_tokens = 8;
  options.max_concurrent_requests = 4;
  Scheduler scheduler(runner, options);
  scheduler.start();
  Collector c;
  EXPECT_EQ(scheduler.submit(nullptr).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(scheduler.submit(c.job(0, {})).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(scheduler.submit(c.job(1, {seq(1, 2), Sequence{}})).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(scheduler.submit(c.job(2, {seq(1, 9)})).code(), StatusCode::kInvalidArgument);
  Sequence bad_types = seq(1, 3);
  bad_types.type_ids = {0, 1};
  EXPECT_EQ(scheduler.submit(c.job(3, {bad_types})).code(), StatusCode::kInvalidArgument);
  // More inputs than can ever be in flight: retrying would never help.
  EXPECT_EQ(scheduler.submit(c.tagged(4, 5, 1)).code(), StatusCode::kInvalidArgument);
  auto no_callback = c.tagged(5, 1, 1);
  no_callback->on_done = nullptr;
  EXPECT_EQ(scheduler.submit(no_callback).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(scheduler.inflight_inputs(), 0);
  // A sequence of exactly max_batch_tokens is fine.
  ASSERT_TRUE(scheduler.submit(c.job(6, {seq(1, 8)})).is_ok());
  ASSERT_TRUE(c.wait_answered(1));
  EXPECT_TRUE(c.outcome(6).result.status.is_ok());
  EXPECT_TRUE(scheduler.drain(kLongWait));
}

TEST(SchedulerTest, BatchesRespectTokenAndCountBudgets) {
  FakeRunner runner;
  SchedulerOptions options;
  options.max_batch_tokens = 10;
  options.max_batch_requests = 3;
  Scheduler scheduler(runner, options);
  scheduler.start();
  Collector c;
  runner.hold();
  ASSERT_TRUE(scheduler.submit(c.tagged(0, 1, 2)).is_ok());
  ASSERT_TRUE(runner.wait_started(1));
  // Queued behind the held batch: a mix of lengths, one job of 5 inputs that must span batches.
  std::vector<std::shared_ptr<Job>> jobs = {c.tagged(1, 1, 7), c.tagged(2, 5, 3),
                                            c.tagged(3, 2, 10), c.tagged(4, 3, 1),
                                            c.tagged(5, 1, 4)};
  for (const auto& job : jobs) ASSERT_TRUE(scheduler.submit(job).is_ok());
  EXPECT_EQ(scheduler.queue_depth(), 12);
  runner.open();
  ASSERT_TRUE(c.wait_answered(6));

  const std::vector<RecordedBatch> batches = runner.batches();
  std::set<size_t> batches_with_job2;
  for (size_t b = 0; b < batches.size(); ++b) {
    EXPECT_LE(batches[b].tokens, 10) << "batch " << b;
    EXPECT_LE(batches[b].sequences.size(), 3u) << "batch " << b;
    for (const auto& s : batches[b].sequences) {
      if (s[0] / 16 == 2) batches_with_job2.insert(b);
    }
  }
  EXPECT_GE(batches_with_job2.size(), 2u) << "job 2 has 15 tokens: it cannot fit one batch";
  for (size_t j = 0; j < jobs.size(); ++j) {
    expect_ok(c.outcome(static_cast<int>(j) + 1), *jobs[j]);
  }
  EXPECT_EQ(scheduler.queue_depth(), 0);
  EXPECT_EQ(scheduler.inflight_inputs(), 0);
}

TEST(SchedulerTest, SequencesEnterBatchesInFifoOrder) {
  FakeRunner runner;
  SchedulerOptions options;
  options.max_batch_requests = 3;
  Scheduler scheduler(runner, options);
  scheduler.start();
  Collector c;
  runner.hold();
  ASSERT_TRUE(scheduler.submit(c.tagged(0, 1, 1)).is_ok());
  ASSERT_TRUE(runner.wait_started(1));
  for (int j = 1; j <= 10; ++j) ASSERT_TRUE(scheduler.submit(c.tagged(j, 2, 3)).is_ok());
  runner.open();
  ASSERT_TRUE(c.wait_answered(11));
  std::vector<int32_t> order;
  const std::vector<RecordedBatch> batches = runner.batches();
  for (const RecordedBatch& b : batches) {
    for (const auto& s : b.sequences) order.push_back(s[0]);
  }
  std::vector<int32_t> expected{tag_of(0, 0)};
  for (int j = 1; j <= 10; ++j) {
    expected.push_back(tag_of(j, 0));
    expected.push_back(tag_of(j, 1));
  }
  EXPECT_EQ(order, expected);
  // 20 queued sequences, 3 per batch: 7 batches after the first.
  EXPECT_EQ(batches.size(), 8u);
}

TEST(SchedulerTest, BackpressureRejectsAtOnceThenRecovers) {
  FakeRunner runner;
  SchedulerOptions options;
  options.max_concurrent_requests = 5;
  Scheduler scheduler(runner, options);
  scheduler.start();
  Collector c;
  runner.hold();
  ASSERT_TRUE(scheduler.submit(c.tagged(0, 1, 2)).is_ok());
  ASSERT_TRUE(runner.wait_started(1));
  ASSERT_TRUE(scheduler.submit(c.tagged(1, 3, 2)).is_ok());
  ASSERT_TRUE(scheduler.submit(c.tagged(2, 1, 2)).is_ok());
  EXPECT_EQ(scheduler.inflight_inputs(), 5);
  EXPECT_EQ(scheduler.queue_depth(), 4);

  const auto before = Clock::now();
  Status rejected = scheduler.submit(c.tagged(3, 1, 2));
  const auto elapsed = Clock::now() - before;
  EXPECT_EQ(rejected.code(), StatusCode::kResourceExhausted) << rejected.to_string();
  EXPECT_LT(elapsed, std::chrono::seconds(5)) << "a rejection must not wait for capacity";
  EXPECT_EQ(scheduler.submit(c.tagged(4, 2, 2)).code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(scheduler.inflight_inputs(), 5);

  runner.open();
  ASSERT_TRUE(c.wait_answered(3));
  EXPECT_EQ(scheduler.inflight_inputs(), 0);
  EXPECT_EQ(c.outcome(3).calls, 0) << "a rejected job is never answered";
  ASSERT_TRUE(scheduler.submit(c.tagged(5, 5, 2)).is_ok());
  ASSERT_TRUE(c.wait_answered(4));
  EXPECT_TRUE(c.outcome(5).result.status.is_ok());
  EXPECT_TRUE(scheduler.drain(kLongWait));
}

TEST(SchedulerTest, InflightCountsFollowTheJobs) {
  FakeRunner runner;
  SchedulerOptions options;
  options.max_batch_requests = 2;
  Scheduler scheduler(runner, options);
  scheduler.start();
  Collector c;
  runner.hold();
  ASSERT_TRUE(scheduler.submit(c.tagged(0, 3, 2)).is_ok());
  ASSERT_TRUE(runner.wait_started(1));
  // Two of job 0's inputs are in the running batch, one waits.
  EXPECT_EQ(scheduler.inflight_inputs(), 3);
  EXPECT_EQ(scheduler.queue_depth(), 1);
  ASSERT_TRUE(scheduler.submit(c.tagged(1, 2, 2)).is_ok());
  EXPECT_EQ(scheduler.inflight_inputs(), 5);
  EXPECT_EQ(scheduler.queue_depth(), 3);
  runner.release();
  ASSERT_TRUE(runner.wait_started(2));
  // Batch 2 holds job 0's last input and job 1's first: job 0 is still not answered.
  EXPECT_EQ(c.answered(), 0);
  EXPECT_EQ(scheduler.inflight_inputs(), 5);
  EXPECT_EQ(scheduler.queue_depth(), 1);
  runner.release();
  ASSERT_TRUE(c.wait_answered(1));
  ASSERT_TRUE(runner.wait_started(3));
  EXPECT_EQ(scheduler.inflight_inputs(), 2);
  EXPECT_EQ(scheduler.queue_depth(), 0);
  runner.open();
  ASSERT_TRUE(c.wait_answered(2));
  EXPECT_EQ(scheduler.inflight_inputs(), 0);
}

TEST(SchedulerTest, CancelledJobsAreDroppedBeforeCompute) {
  FakeRunner runner;
  SchedulerOptions options;
  options.max_batch_requests = 2;
  Scheduler scheduler(runner, options);
  scheduler.start();
  Collector c;
  runner.hold();
  ASSERT_TRUE(scheduler.submit(c.tagged(0, 1, 2)).is_ok());
  ASSERT_TRUE(runner.wait_started(1));
  auto cancelled = c.tagged(1, 3, 2);
  auto kept = c.tagged(2, 1, 2);
  ASSERT_TRUE(scheduler.submit(cancelled).is_ok());
  ASSERT_TRUE(scheduler.submit(kept).is_ok());
  cancelled->cancel.cancel();
  runner.open();
  ASSERT_TRUE(c.wait_answered(3));

  const Collector::Outcome out = c.outcome(1);
  EXPECT_EQ(out.calls, 1);
  EXPECT_EQ(out.result.status.code(), StatusCode::kCancelled);
  EXPECT_EQ(out.result.status.message(), "request cancelled");
  EXPECT_EQ(scheduler.cancelled_sequences(), 3);
  expect_ok(c.outcome(2), *kept);
  const std::set<int32_t> tags = tags_seen(runner.batches());
  for (int i = 0; i < 3; ++i) EXPECT_EQ(tags.count(tag_of(1, i)), 0u);
  EXPECT_EQ(scheduler.inflight_inputs(), 0);
  EXPECT_EQ(scheduler.queue_depth(), 0);
}

TEST(SchedulerTest, JobCancelledMidwayDropsItsRemainingSequences) {
  FakeRunner runner;
  SchedulerOptions options;
  options.max_batch_requests = 2;
  Scheduler scheduler(runner, options);
  scheduler.start();
  Collector c;
  runner.hold();
  auto job = c.tagged(0, 5, 2);
  ASSERT_TRUE(scheduler.submit(job).is_ok());
  ASSERT_TRUE(runner.wait_started(1));  // inputs 0 and 1 are being computed
  job->cancel.cancel();
  runner.open();
  ASSERT_TRUE(c.wait_answered(1));
  EXPECT_EQ(c.outcome(0).result.status.code(), StatusCode::kCancelled);
  EXPECT_EQ(scheduler.cancelled_sequences(), 3);
  EXPECT_TRUE(scheduler.drain(kLongWait));
  EXPECT_EQ(runner.batches().size(), 1u);
  EXPECT_EQ(scheduler.inflight_inputs(), 0);
}

TEST(SchedulerTest, RunnerFailureFailsEveryJobOfTheBatch) {
  FakeRunner runner;
  SchedulerOptions options;
  options.max_batch_requests = 4;
  Scheduler scheduler(runner, options);
  scheduler.start();
  Collector c;
  runner.hold();
  runner.fail_batch(2, internal_error("engine exploded"));
  ASSERT_TRUE(scheduler.submit(c.tagged(0, 1, 2)).is_ok());
  ASSERT_TRUE(runner.wait_started(1));
  // Batch 2 = job 1 (2 inputs) + job 2 (1) + job 3's first input; job 3's other 3 inputs would go
  // into batch 3 but the job has already failed, so they are never computed.
  ASSERT_TRUE(scheduler.submit(c.tagged(1, 2, 2)).is_ok());
  ASSERT_TRUE(scheduler.submit(c.tagged(2, 1, 2)).is_ok());
  ASSERT_TRUE(scheduler.submit(c.tagged(3, 4, 2)).is_ok());
  auto after = c.tagged(4, 1, 2);
  ASSERT_TRUE(scheduler.submit(after).is_ok());
  runner.open();
  ASSERT_TRUE(c.wait_answered(5));
  EXPECT_TRUE(c.outcome(0).result.status.is_ok());
  for (int j = 1; j <= 3; ++j) {
    const Collector::Outcome out = c.outcome(j);
    EXPECT_EQ(out.calls, 1);
    EXPECT_EQ(out.result.status.code(), StatusCode::kInternal) << "job " << j;
    EXPECT_EQ(out.result.status.message(), "engine exploded");
    EXPECT_TRUE(out.result.embeddings.empty());
  }
  expect_ok(c.outcome(4), *after);
  const std::set<int32_t> tags = tags_seen(runner.batches());
  for (int i = 1; i < 4; ++i) EXPECT_EQ(tags.count(tag_of(3, i)), 0u);
  EXPECT_EQ(scheduler.inflight_inputs(), 0);
  EXPECT_EQ(scheduler.queue_depth(), 0);
}

TEST(SchedulerTest, DrainFinishesAdmittedWorkThenRefuses) {
  FakeRunner runner;
  SchedulerOptions options;
  options.max_batch_requests = 2;
  Scheduler scheduler(runner, options);
  scheduler.start();
  Collector c;
  runner.hold();
  std::vector<std::shared_ptr<Job>> jobs;
  for (int j = 0; j < 6; ++j) jobs.push_back(c.tagged(j, 2, 3));
  ASSERT_TRUE(scheduler.submit(jobs[0]).is_ok());
  ASSERT_TRUE(runner.wait_started(1));
  for (int j = 1; j < 6; ++j) ASSERT_TRUE(scheduler.submit(jobs[j]).is_ok());
  bool drained = false;
  std::thread drainer([&] { drained = scheduler.drain(kLongWait); });
  runner.open();
  drainer.join();
  EXPECT_TRUE(drained);
  EXPECT_EQ(c.answered(), 6);  // every answer came before drain returned
  for (int j = 0; j < 6; ++j) expect_ok(c.outcome(j), *jobs[j]);
  EXPECT_EQ(scheduler.submit(c.tagged(9, 1, 1)).code(), StatusCode::kUnavailable);
  EXPECT_EQ(scheduler.inflight_inputs(), 0);
  EXPECT_TRUE(scheduler.drain(kLongWait));  // again: nothing left
}

TEST(SchedulerTest, DrainTimesOutWhileTheRunnerIsBlocked) {
  FakeRunner runner;
  Scheduler scheduler(runner, SchedulerOptions{});
  scheduler.start();
  Collector c;
  runner.hold();
  ASSERT_TRUE(scheduler.submit(c.tagged(0, 1, 2)).is_ok());
  ASSERT_TRUE(runner.wait_started(1));
  ASSERT_TRUE(scheduler.submit(c.tagged(1, 1, 2)).is_ok());
  const auto before = Clock::now();
  EXPECT_FALSE(scheduler.drain(std::chrono::milliseconds(50)));
  EXPECT_LT(Clock::now() - before, std::chrono::seconds(30));
  EXPECT_EQ(scheduler.submit(c.tagged(2, 1, 2)).code(), StatusCode::kUnavailable);
  runner.open();
  EXPECT_TRUE(scheduler.drain(kLongWait));
  EXPECT_EQ(c.answered(), 2);
  EXPECT_TRUE(c.outcome(0).result.status.is_ok());
  EXPECT_TRUE(c.outcome(1).result.status.is_ok());
}

TEST(SchedulerTest, DestructorAnswersJobsOfANeverStartedScheduler) {
  FakeRunner runner;
  Collector c;
  {
    Scheduler scheduler(runner, SchedulerOptions{});
    for (int j = 0; j < 3; ++j) ASSERT_TRUE(scheduler.submit(c.tagged(j, 2, 2)).is_ok());
  }
  EXPECT_EQ(c.answered(), 3);
  for (int j = 0; j < 3; ++j) {
    const Collector::Outcome out = c.outcome(j);
    EXPECT_EQ(out.calls, 1);
    EXPECT_EQ(out.result.status.code(), StatusCode::kUnavailable);
    EXPECT_EQ(out.result.status.message(), "shutting down");
  }
  EXPECT_TRUE(runner.batches().empty());
}

TEST(SchedulerTest, DestructorWithoutDrainAnswersEveryPendingJob) {
  FakeRunner runner;
  SchedulerOptions options;
  options.max_batch_requests = 1;
  Collector c;
  auto scheduler = std::make_unique<Scheduler>(runner, options);
  scheduler->start();
  runner.hold();
  ASSERT_TRUE(scheduler->submit(c.tagged(0, 1, 2)).is_ok());
  ASSERT_TRUE(runner.wait_started(1));
  for (int j = 1; j < 8; ++j) ASSERT_TRUE(scheduler->submit(c.tagged(j, 1, 2)).is_ok());
  std::thread destroyer([&] { scheduler.reset(); });
  runner.open();
  destroyer.join();
  EXPECT_EQ(c.answered(), 8);
  EXPECT_TRUE(c.outcome(0).result.status.is_ok());
  for (const auto& [number, out] : c.outcomes()) {
    EXPECT_EQ(out.calls, 1) << "job " << number;
    if (!out.result.status.is_ok()) {
      EXPECT_EQ(out.result.status.code(), StatusCode::kUnavailable);
      EXPECT_EQ(out.result.status.message(), "shutting down");
    }
  }
}

TEST(SchedulerTest, ConcurrentSubmitsAreAllAnsweredOnceAndCorrectly) {
  FakeRunner runner;
  SchedulerOptions options;
  options.max_concurrent_requests = 64;
  options.max_batch_tokens = 48;
  options.max_batch_requests = 8;
  Scheduler scheduler(runner, options);
  std::atomic<int64_t> batches_observed{0};
  scheduler.set_batch_observer([&](const BatchStats&) { batches_observed.fetch_add(1); });
  scheduler.start();
  Collector c;
  constexpr int kThreads = 8;
  constexpr int kJobsPerThread = 500;
  std::vector<std::vector<std::shared_ptr<Job>>> jobs(kThreads);
  std::atomic<int64_t> rejections{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(1234 + t);
      for (int j = 0; j < kJobsPerThread; ++j) {
        const int number = t * kJobsPerThread + j;
        const int num_inputs = std::uniform_int_distribution<int>(1, 4)(rng);
        std::vector<Sequence> inputs;
        for (int i = 0; i < num_inputs; ++i) {
          Sequence s = seq(tag_of(number, i), std::uniform_int_distribution<int>(1, 20)(rng));
          if (rng() % 2 == 0) s.type_ids.assign(s.ids.size(), 1);
          inputs.push_back(std::move(s));
        }
        const auto pooling = rng() % 2 == 0 ? engine::Pooling::kCls : engine::Pooling::kMean;
        auto job = c.job(number, std::move(inputs), pooling, rng() % 2 == 0);
        for (;;) {
          Status st = scheduler.submit(job);
          if (st.is_ok()) break;
          ASSERT_EQ(st.code(), StatusCode::kResourceExhausted) << st.to_string();
          rejections.fetch_add(1);
          std::this_thread::yield();  // capacity frees as the worker answers; retry
        }
        jobs[t].push_back(std::move(job));
        EXPECT_LE(scheduler.inflight_inputs(), 64);
        EXPECT_GE(scheduler.queue_depth(), 0);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  ASSERT_TRUE(c.wait_answered(kThreads * kJobsPerThread));
  EXPECT_TRUE(scheduler.drain(kLongWait));
  const auto outcomes = c.outcomes();
  ASSERT_EQ(outcomes.size(), static_cast<size_t>(kThreads * kJobsPerThread));
  for (int t = 0; t < kThreads; ++t) {
    for (int j = 0; j < kJobsPerThread; ++j) {
      const int number = t * kJobsPerThread + j;
      expect_ok(outcomes.at(number), *jobs[t][j]);
    }
  }
  const std::vector<RecordedBatch> batches = runner.batches();
  for (const RecordedBatch& b : batches) {
    EXPECT_LE(b.tokens, 48);
    EXPECT_LE(b.sequences.size(), 8u);
  }
  EXPECT_EQ(batches_observed.load(), static_cast<int64_t>(batches.size()));
  EXPECT_EQ(scheduler.inflight_inputs(), 0);
  EXPECT_EQ(scheduler.queue_depth(), 0);
}

TEST(SchedulerTest, OnDoneRunsOnTheWorkerThread) {
  FakeRunner runner;
  Scheduler scheduler(runner, SchedulerOptions{});
  scheduler.start();
  Collector c;
  ASSERT_TRUE(scheduler.submit(c.tagged(0, 1, 1)).is_ok());
  ASSERT_TRUE(c.wait_answered(1));
  EXPECT_NE(c.outcome(0).thread, std::this_thread::get_id());
}

TEST(SchedulerTest, BatchWaitGathersSequencesIntoOneBatch) {
  FakeRunner runner;
  SchedulerOptions options;
  options.max_batch_requests = 4;
  options.batch_wait_us = 60'000'000;  // longer than the test: only a full batch can end it
  Scheduler scheduler(runner, options);
  scheduler.start();
  Collector c;
  for (int j = 0; j < 4; ++j) ASSERT_TRUE(scheduler.submit(c.tagged(j, 1, 2)).is_ok());
  ASSERT_TRUE(c.wait_answered(4));
  const std::vector<RecordedBatch> batches = runner.batches();
  ASSERT_EQ(batches.size(), 1u);
  EXPECT_EQ(batches[0].sequences.size(), 4u);
}

TEST(SchedulerTest, BatchWaitEndsWhenTheTokenBudgetFills) {
  FakeRunner runner;
  SchedulerOptions options;
  options.max_batch_tokens = 6;
  options.batch_wait_us = 60'000'000;
  Scheduler scheduler(runner, options);
  scheduler.start();
  Collector c;
  ASSERT_TRUE(scheduler.submit(c.tagged(0, 1, 2)).is_ok());
  ASSERT_TRUE(scheduler.submit(c.tagged(1, 1, 4)).is_ok());
  ASSERT_TRUE(c.wait_answered(2));
  const std::vector<RecordedBatch> batches = runner.batches();
  ASSERT_EQ(batches.size(), 1u);
  EXPECT_EQ(batches[0].tokens, 6);
}

TEST(SchedulerTest, DrainCutsTheBatchWaitShort) {
  FakeRunner runner;
  SchedulerOptions options;
  options.batch_wait_us = 60'000'000;
  Scheduler scheduler(runner, options);
  scheduler.start();
  Collector c;
  ASSERT_TRUE(scheduler.submit(c.tagged(0, 1, 2)).is_ok());
  ASSERT_TRUE(scheduler.submit(c.tagged(1, 2, 2)).is_ok());
  const auto before = Clock::now();
  EXPECT_TRUE(scheduler.drain(kLongWait));
  EXPECT_LT(Clock::now() - before, std::chrono::seconds(30));
  const std::vector<RecordedBatch> batches = runner.batches();
  ASSERT_EQ(batches.size(), 1u);
  EXPECT_EQ(batches[0].sequences.size(), 3u);
}

TEST(SchedulerTest, BatchObserverSeesEveryBatch) {
  FakeRunner runner;
  SchedulerOptions options;
  options.max_batch_requests = 3;
  options.max_batch_tokens = 12;
  Scheduler scheduler(runner, options);
  std::mutex mutex;
  std::vector<BatchStats> stats;
  scheduler.set_batch_observer([&](const BatchStats& s) {
    std::lock_guard<std::mutex> lock(mutex);
    stats.push_back(s);
  });
  scheduler.start();
  Collector c;
  runner.hold();
  ASSERT_TRUE(scheduler.submit(c.tagged(0, 1, 5)).is_ok());
  ASSERT_TRUE(runner.wait_started(1));
  for (int j = 1; j < 10; ++j) ASSERT_TRUE(scheduler.submit(c.tagged(j, 1 + j % 3, j)).is_ok());
  runner.fail_batch(3, internal_error("one bad batch"));  // observed too
  runner.open();
  ASSERT_TRUE(c.wait_answered(10));
  EXPECT_TRUE(scheduler.drain(kLongWait));
  const std::vector<RecordedBatch> batches = runner.batches();
  std::lock_guard<std::mutex> lock(mutex);
  ASSERT_EQ(stats.size(), batches.size());
  for (size_t b = 0; b < batches.size(); ++b) {
    EXPECT_EQ(stats[b].sequences, static_cast<int64_t>(batches[b].sequences.size()));
    EXPECT_EQ(stats[b].tokens, batches[b].tokens);
    EXPECT_GE(stats[b].inference_ms, 0);
  }
}

// Counts the batches computing at once across every runner that shares `running`.
class OverlapRunner : public BatchRunner {
 public:
  OverlapRunner(std::atomic<int>& running, std::atomic<int>& most)
      : running_(running), most_(most) {}
  Status run(const BatchInput& batch, BatchOutput& output) override {
    const int now = ++running_;
    int seen = most_.load();
    while (now > seen && !most_.compare_exchange_weak(seen, now)) {
    }
    std::this_thread::sleep_for(std::chrono::microseconds(300));
    Status st = inner_.run(batch, output);
    --running_;
    return st;
  }
  int64_t output_size() const override { return inner_.output_size(); }

 private:
  FakeRunner inner_;
  std::atomic<int>& running_;
  std::atomic<int>& most_;
};

TEST(SchedulerTest, SchedulersSharingAGateNeverComputeAtOnce) {
  std::atomic<int> running{0}, most{0};
  OverlapRunner runner_a(running, most), runner_b(running, most);
  SchedulerOptions options;
  options.max_batch_requests = 1;
  options.gate = std::make_shared<ComputeGate>();
  Scheduler a(runner_a, options), b(runner_b, options);
  a.start();
  b.start();
  Collector ca, cb;
  auto flood = [](Scheduler& s, Collector& c) {
    for (int j = 0; j < 40; ++j) ASSERT_TRUE(s.submit(c.tagged(j, 2, 3)).is_ok());
  };
  std::thread ta([&] { flood(a, ca); });
  std::thread tb([&] { flood(b, cb); });
  ta.join();
  tb.join();
  ASSERT_TRUE(ca.wait_answered(40));
  ASSERT_TRUE(cb.wait_answered(40));
  EXPECT_EQ(most.load(), 1);
  // A worker gives its turn back before it goes idle, which drain waits for.
  EXPECT_TRUE(a.drain(kLongWait));
  EXPECT_TRUE(b.drain(kLongWait));
  EXPECT_EQ(options.gate->waiting(), 0);
}

TEST(SchedulerTest, ABusyModelCannotStarveAnotherSharingTheGate) {
  FakeRunner busy_runner, quiet_runner;
  SchedulerOptions options;
  options.max_batch_requests = 1;  // one sequence per batch: each job is its own turn
  options.gate = std::make_shared<ComputeGate>();
  Scheduler busy(busy_runner, options), quiet(quiet_runner, options);
  busy.start();
  quiet.start();
  Collector c;
  busy_runner.hold();
  ASSERT_TRUE(busy.submit(c.tagged(0, 1, 4)).is_ok());
  ASSERT_TRUE(busy_runner.wait_started(1));  // the busy model holds the turn
  for (int j = 1; j <= 30; ++j) ASSERT_TRUE(busy.submit(c.tagged(j, 1, 4)).is_ok());
  std::atomic<int64_t> busy_batches_before_quiet{-1};
  auto job = c.tagged(100, 1, 4);
  auto done = job->on_done;
  job->on_done = [&, done](JobResult&& r) {
    busy_batches_before_quiet = static_cast<int64_t>(busy_runner.batches().size());
    done(std::move(r));
  };
  ASSERT_TRUE(quiet.submit(job).is_ok());
  // The quiet model's worker has asked for its turn behind the busy one's batch.
  for (int i = 0; i < 6000 && options.gate->waiting() < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(options.gate->waiting(), 2);
  busy_runner.open();
  ASSERT_TRUE(c.wait_answered(32));
  // 30 more busy batches were queued, yet the quiet job ran right after the one computing.
  EXPECT_EQ(busy_batches_before_quiet.load(), 1);
  expect_ok(c.outcome(100), *job);
  for (int j = 0; j <= 30; ++j) EXPECT_TRUE(c.outcome(j).result.status.is_ok());
}

}  // namespace
}  // namespace tideserve::runtime
