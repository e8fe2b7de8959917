// The production runner through the scheduler on a fixture model: a sequence embedded in a mixed
// batch (other sequences, other pooling settings) equals BertEncoder::forward + pool on it alone.
// Not built under ThreadSanitizer: the engine's OpenMP runtime (libgomp) is not TSan-instrumented.
#include "tideserve/runtime/encoder_runner.h"

#include <gtest/gtest.h>

#include <cmath>
#include <mutex>

#include "tideserve/engine/bert_encoder.h"
#include "tideserve/engine/pooling.h"
#include "tideserve/model/bert_model.h"

namespace tideserve::runtime {
namespace {

std::string fixture_dir() {
  const char* env = std::getenv("TIDESERVE_SOURCE_DIR");
  return std::string(env != nullptr ? env : TIDESERVE_SOURCE_DIR) +
         "/tests/fixtures/models/bert_tiny_f32";
}

Sequence make_sequence(int len, int seed, bool with_types) {
  Sequence s;
  for (int t = 0; t < len; ++t) {
    s.ids.push_back((seed * 31 + t * 7) % 128);
    if (with_types) s.type_ids.push_back(t >= len / 2 ? 1 : 0);
  }
  return s;
}

class EncoderRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto model = BertModel::load(fixture_dir());
    ASSERT_TRUE(model.is_ok()) << model.status().to_string();
    model_ = std::move(model).value();
    auto encoder = engine::BertEncoder::create(*model_, {.threads = 2});
    ASSERT_TRUE(encoder.is_ok()) << encoder.status().to_string();
    encoder_ = std::move(encoder).value();
  }

  // forward + pool on the sequence alone.
  std::vector<float> reference(const Sequence& s, engine::Pooling pooling, bool normalize) {
    const std::vector<int32_t> cu{0, static_cast<int32_t>(s.ids.size())};
    engine::EncoderOutput out;
    Status st = encoder_->forward({s.ids, s.type_ids, cu}, out);
    EXPECT_TRUE(st.is_ok()) << st.to_string();
    return engine::pool(out.hidden, out.hidden_size, cu, pooling, normalize);
  }

  std::unique_ptr<BertModel> model_;
  std::unique_ptr<engine::BertEncoder> encoder_;
};

TEST_F(EncoderRunnerTest, MixedBatchMatchesEachSequenceAlone) {
  EncoderRunner runner(*encoder_);
  ASSERT_EQ(runner.output_size(), model_->config().hidden_size);
  SchedulerOptions options;
  options.max_batch_requests = 5;
  options.batch_wait_us = 60'000'000;  // the batch goes when all five sequences are there
  Scheduler scheduler(runner, options);
  std::mutex mutex;
  std::vector<BatchStats> stats;
  std::vector<JobResult> results(3);
  scheduler.set_batch_observer([&](const BatchStats& s) {
    std::lock_guard<std::mutex> lock(mutex);
    stats.push_back(s);
  });
  scheduler.start();

  std::vector<std::shared_ptr<Job>> jobs;
  auto add = [&](std::vector<Sequence> inputs, engine::Pooling pooling, bool normalize) {
    auto job = std::make_shared<Job>();
    job->inputs = std::move(inputs);
    job->pooling = pooling;
    job->normalize = normalize;
    const size_t index = jobs.size();
    job->on_done = [&, index](JobResult&& r) {
      std::lock_guard<std::mutex> lock(mutex);
      results[index] = std::move(r);
    };
    jobs.push_back(job);
  };
  add({make_sequence(5, 1, false)}, engine::Pooling::kCls, false);
  add({make_sequence(17, 2, true), make_sequence(3, 3, false)}, engine::Pooling::kMean, true);
  add({make_sequence(40, 4, true), make_sequence(1, 5, false)}, engine::Pooling::kMean, false);
  for (const auto& job : jobs) ASSERT_TRUE(scheduler.submit(job).is_ok());
  ASSERT_TRUE(scheduler.drain(std::chrono::seconds(60)));

  std::lock_guard<std::mutex> lock(mutex);
  ASSERT_EQ(stats.size(), 1u) << "all five sequences should share one batch";
  EXPECT_EQ(stats[0].sequences, 5);
  EXPECT_EQ(stats[0].tokens, 5 + 17 + 3 + 40 + 1);
  const int64_t hidden = runner.output_size();
  for (size_t j = 0; j < jobs.size(); ++j) {
    const JobResult& r = results[j];
    ASSERT_TRUE(r.status.is_ok()) << r.status.to_string();
    ASSERT_EQ(r.hidden_size, hidden);
    ASSERT_EQ(r.embeddings.size(), jobs[j]->inputs.size() * static_cast<size_t>(hidden));
    for (size_t i = 0; i < jobs[j]->inputs.size(); ++i) {
      const std::vector<float> expected =
          reference(jobs[j]->inputs[i], jobs[j]->pooling, jobs[j]->normalize);
      double diff = 0;
      for (int64_t c = 0; c < hidden; ++c) {
        diff = std::max(diff, std::abs(double{r.embeddings[i * hidden + c]} - expected[c]));
      }
      EXPECT_LE(diff, 1e-5) << "job " << j << " input " << i;
    }
  }
}

TEST_F(EncoderRunnerTest, EngineErrorsReachTheJob) {
  EncoderRunner runner(*encoder_);
  Scheduler scheduler(runner, SchedulerOptions{});
  scheduler.start();
  auto job = std::make_shared<Job>();
  job->inputs.push_back(make_sequence(4, 1, false));
  job->inputs[0].ids[2] = 100000;  // outside the vocabulary
  std::mutex mutex;
  Status status;
  job->on_done = [&](JobResult&& r) {
    std::lock_guard<std::mutex> lock(mutex);
    status = r.status;
  };
  ASSERT_TRUE(scheduler.submit(job).is_ok());
  ASSERT_TRUE(scheduler.drain(std::chrono::seconds(60)));
  std::lock_guard<std::mutex> lock(mutex);
  EXPECT_EQ(status.code(), StatusCode::kOutOfRange) << status.to_string();
}

TEST_F(EncoderRunnerTest, WarmUpRunsOnTheFixtureModel) {
  EncoderRunner runner(*encoder_);
  const int64_t max_len = model_->config().max_position_embeddings;
  EXPECT_TRUE(warm_up(runner, max_len, 16384).is_ok());
  EXPECT_TRUE(warm_up(runner, max_len, 100).is_ok());
  // A length beyond the model's positions is the engine's error, returned, not a crash.
  EXPECT_FALSE(warm_up(runner, max_len + 1, 16384).is_ok());
}

}  // namespace
}  // namespace tideserve::runtime
