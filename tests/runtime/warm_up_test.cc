// warm_up() shapes and errors, through the fake runner.
#include <gtest/gtest.h>

#include "fake_runner.h"
#include "tideserve/runtime/encoder_runner.h"

namespace tideserve::runtime {
namespace {

using testing::FakeRunner;
using testing::RecordedBatch;

std::vector<std::vector<int64_t>> shapes(const std::vector<RecordedBatch>& batches) {
  std::vector<std::vector<int64_t>> out;
  for (const RecordedBatch& b : batches) {
    std::vector<int64_t> lengths;
    for (const auto& s : b.sequences) lengths.push_back(static_cast<int64_t>(s.size()));
    out.push_back(lengths);
  }
  return out;
}

TEST(WarmUpTest, RunsRepresentativeShapesWithinTheLimits) {
  FakeRunner runner;
  ASSERT_TRUE(warm_up(runner, 512, 16384).is_ok());
  const auto got = shapes(runner.batches());
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[0], std::vector<int64_t>{1});
  EXPECT_EQ(got[1], std::vector<int64_t>{16});
  EXPECT_EQ(got[2], std::vector<int64_t>{128});
  int64_t tokens = 0;
  for (int64_t len : got[3]) tokens += len;
  EXPECT_GT(got[3].size(), 1u);
  EXPECT_LE(tokens, 16384);
  EXPECT_GE(tokens, 256) << "the batch near the budget should be a real batch";
  // Ids start at 0 and stay small enough for any vocabulary.
  for (const RecordedBatch& b : runner.batches()) {
    for (const auto& s : b.sequences) {
      EXPECT_EQ(s[0], 0);
      for (int32_t id : s) EXPECT_LT(id, 32);
    }
  }
}

TEST(WarmUpTest, SmallLimitsAreRespected) {
  FakeRunner runner;
  ASSERT_TRUE(warm_up(runner, 8, 20).is_ok());
  for (const RecordedBatch& b : runner.batches()) {
    EXPECT_LE(b.tokens, 20);
    for (const auto& s : b.sequences) EXPECT_LE(s.size(), 8u);
  }
  const auto got = shapes(runner.batches());
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0], std::vector<int64_t>{1});
  EXPECT_EQ(got[1], std::vector<int64_t>{8});
  EXPECT_EQ(got[2], (std::vector<int64_t>{8, 8, 4}));

  FakeRunner tiny;
  ASSERT_TRUE(warm_up(tiny, 1, 1).is_ok());
  EXPECT_EQ(shapes(tiny.batches()), (std::vector<std::vector<int64_t>>{{1}}));
}

TEST(WarmUpTest, ReturnsTheFirstError) {
  FakeRunner runner;
  runner.fail_batch(2, internal_error("no memory"));
  Status st = warm_up(runner, 512, 4096);
  EXPECT_EQ(st.code(), StatusCode::kInternal);
  EXPECT_NE(st.message().find("no memory"), std::string::npos) << st.message();
  EXPECT_EQ(runner.batches().size(), 2u);
  EXPECT_EQ(warm_up(runner, 0, 4096).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tideserve::runtime
