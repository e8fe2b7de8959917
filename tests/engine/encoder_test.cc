// The encoder against golden outputs of an independent torch reference, on every fixture config.
#include "tideserve/engine/bert_encoder.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include <fmt/format.h>

#include "fixture_util.h"
#include "tideserve/engine/pooling.h"

namespace tideserve::engine {
namespace {

using tideserve::testing::cosine;
using tideserve::testing::fixture_model_names;
using tideserve::testing::fixture_models_dir;
using tideserve::testing::max_abs_diff;
using tideserve::testing::read_f32;
using tideserve::testing::read_i64_as_i32;

// The foundation issue asks for 1e-4; the engine measures ~1e-6 against the float64 reference,
// and a wrong GELU variant moves the goldens by 1.5e-4 or more, so hold a tighter line.
constexpr double kHiddenTolerance = 2e-5;
constexpr double kPooledCosine = 0.99999;

struct Golden {
  std::vector<int32_t> input_ids, token_type_ids, cu_seqlens;
  SafetensorsFile file;
};

// Our pooled rows (not normalized) and the golden's, for one pooling.
std::pair<std::vector<float>, std::vector<float>> pooled_and_golden(const EncoderOutput& out,
                                                                    const Golden& golden,
                                                                    Pooling pooling) {
  std::vector<float> pooled = pool(out.hidden, out.hidden_size, golden.cu_seqlens, pooling, false);
  std::vector<float> expected =
      read_f32(golden.file, pooling == Pooling::kCls ? "pooled_cls" : "pooled_mean");
  EXPECT_EQ(pooled.size(), expected.size());
  return {std::move(pooled), std::move(expected)};
}

class EncoderGoldenTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = fixture_models_dir() + "/" + GetParam();
    auto model = BertModel::load(dir_);
    ASSERT_TRUE(model.is_ok()) << model.status().to_string();
    model_ = std::move(model).value();
    auto golden = SafetensorsFile::open(dir_ + "/golden.safetensors");
    ASSERT_TRUE(golden.is_ok()) << golden.status().to_string();
    golden_.file = std::move(golden).value();
    golden_.input_ids = read_i64_as_i32(golden_.file, "input_ids");
    golden_.token_type_ids = read_i64_as_i32(golden_.file, "token_type_ids");
    golden_.cu_seqlens = read_i64_as_i32(golden_.file, "cu_seqlens");
  }

  EncoderBatch batch() const {
    return {golden_.input_ids, golden_.token_type_ids, golden_.cu_seqlens};
  }

  std::unique_ptr<BertEncoder> make_encoder(int threads, Precision precision = Precision::kF32) {
    // The fixtures are small enough to run single-threaded by default: force the parallel path.
    auto encoder = BertEncoder::create(
        *model_, {.threads = threads, .precision = precision, .min_parallel_layer_flops = 0});
    EXPECT_TRUE(encoder.is_ok()) << encoder.status().to_string();
    return encoder.is_ok() ? std::move(encoder).value() : nullptr;
  }

  std::string dir_;
  std::unique_ptr<BertModel> model_;
  Golden golden_;
};

TEST_P(EncoderGoldenTest, EveryLayerMatchesTorchReference) {
  auto encoder = make_encoder(2);
  ASSERT_NE(encoder, nullptr);
  const int layers = static_cast<int>(model_->config().num_hidden_layers);
  for (int k = 0; k <= layers; ++k) {
    EncoderOutput out;
    Status st = encoder->forward(batch(), out, k);
    ASSERT_TRUE(st.is_ok()) << st.to_string();
    std::vector<float> expected = read_f32(golden_.file, fmt::format("hidden_states.{}", k));
    ASSERT_EQ(out.hidden.size(), expected.size());
    double diff = max_abs_diff(out.hidden.data(), expected.data(), expected.size());
    EXPECT_LE(diff, kHiddenTolerance) << GetParam() << " after layer " << k;
  }
}

TEST_P(EncoderGoldenTest, PooledOutputsMatchTorchReference) {
  auto encoder = make_encoder(2);
  ASSERT_NE(encoder, nullptr);
  EncoderOutput out;
  ASSERT_TRUE(encoder->forward(batch(), out).is_ok());
  const int64_t h = out.hidden_size;
  for (Pooling pooling : {Pooling::kCls, Pooling::kMean}) {
    auto [pooled, expected] = pooled_and_golden(out, golden_, pooling);
    ASSERT_EQ(pooled.size(), expected.size());
    for (size_t s = 0; s + 1 < golden_.cu_seqlens.size(); ++s) {
      const float* a = pooled.data() + s * h;
      const float* b = expected.data() + s * h;
      EXPECT_GE(cosine(a, b, h), kPooledCosine) << pooling_name(pooling) << " sequence " << s;
      EXPECT_LE(max_abs_diff(a, b, h), kHiddenTolerance) << pooling_name(pooling) << " seq " << s;
    }
    // Normalized rows have unit norm and the same direction.
    std::vector<float> unit = pool(out.hidden, h, golden_.cu_seqlens, pooling, true);
    for (size_t s = 0; s + 1 < golden_.cu_seqlens.size(); ++s) {
      const float* u = unit.data() + s * h;
      EXPECT_NEAR(std::sqrt(std::inner_product(u, u + h, u, 0.0)), 1.0, 1e-5);
      EXPECT_GE(cosine(u, expected.data() + s * h, h), kPooledCosine);
    }
  }
}

// Every sentence-transformers pooling mode, with and without a skipped prefix (a prompt left out
// of pooling), against the goldens the fixture script computes with torch from the documented
// semantics. cls and lasttoken ignore the skip.
TEST_P(EncoderGoldenTest, EveryPoolingModeMatchesTorchReference) {
  auto encoder = make_encoder(2);
  ASSERT_NE(encoder, nullptr);
  EncoderOutput out;
  ASSERT_TRUE(encoder->forward(batch(), out).is_ok());
  const int64_t h = out.hidden_size;
  const std::vector<int32_t> skip = read_i64_as_i32(golden_.file, "pool_skip");
  ASSERT_EQ(skip.size() + 1, golden_.cu_seqlens.size());
  ASSERT_TRUE(std::any_of(skip.begin(), skip.end(), [](int32_t k) { return k > 0; }));
  struct Case {
    Pooling pooling;
    bool skipped;
    const char* golden;
  };
  const Case cases[] = {
      {Pooling::kCls, false, "pooled_cls"},
      {Pooling::kMean, false, "pooled_mean"},
      {Pooling::kMax, false, "pooled_max"},
      {Pooling::kMeanSqrtLen, false, "pooled_mean_sqrt_len_tokens"},
      {Pooling::kWeightedMean, false, "pooled_weightedmean"},
      {Pooling::kLastToken, false, "pooled_lasttoken"},
      {Pooling::kMean, true, "pooled_mean_skip"},
      {Pooling::kMax, true, "pooled_max_skip"},
      {Pooling::kMeanSqrtLen, true, "pooled_mean_sqrt_len_tokens_skip"},
      {Pooling::kWeightedMean, true, "pooled_weightedmean_skip"},
      {Pooling::kCls, true, "pooled_cls"},
      {Pooling::kLastToken, true, "pooled_lasttoken"},
  };
  for (const Case& c : cases) {
    std::vector<float> pooled =
        pool(out.hidden, h, golden_.cu_seqlens, c.pooling, false,
             c.skipped ? std::span<const int32_t>(skip) : std::span<const int32_t>());
    std::vector<float> expected = read_f32(golden_.file, c.golden);
    ASSERT_EQ(pooled.size(), expected.size()) << c.golden;
    EXPECT_LE(max_abs_diff(pooled.data(), expected.data(), expected.size()), kHiddenTolerance)
        << GetParam() << " " << c.golden << (c.skipped ? " (with skip)" : "");
  }
  // A skip changes the mean-like modes: the goldens with and without it differ.
  std::vector<float> plain = read_f32(golden_.file, "pooled_mean");
  std::vector<float> skipped = read_f32(golden_.file, "pooled_mean_skip");
  EXPECT_GT(max_abs_diff(plain.data(), skipped.data(), plain.size()), 1e-3);
}

TEST(PoolingNames, EveryModeRoundTrips) {
  for (std::string_view name : pooling_names()) {
    auto parsed = parse_pooling(name);
    ASSERT_TRUE(parsed.is_ok()) << name;
    EXPECT_EQ(pooling_name(*parsed), name);
  }
  EXPECT_EQ(*parse_pooling("last_token"), Pooling::kLastToken);
  EXPECT_FALSE(parse_pooling("splade").is_ok());
}

TEST_P(EncoderGoldenTest, SequenceAloneEqualsSequenceInsideBatch) {
  auto encoder = make_encoder(2);
  ASSERT_NE(encoder, nullptr);
  EncoderOutput full;
  ASSERT_TRUE(encoder->forward(batch(), full).is_ok());
  const int64_t h = full.hidden_size;
  const auto& cu = golden_.cu_seqlens;
  for (size_t s = 0; s + 1 < cu.size(); ++s) {
    std::span<const int32_t> ids(golden_.input_ids.data() + cu[s], cu[s + 1] - cu[s]);
    std::span<const int32_t> types(golden_.token_type_ids.data() + cu[s], cu[s + 1] - cu[s]);
    std::vector<int32_t> one_cu = {0, cu[s + 1] - cu[s]};
    EncoderOutput alone;
    ASSERT_TRUE(encoder->forward({ids, types, one_cu}, alone).is_ok());
    double diff =
        max_abs_diff(alone.hidden.data(), full.hidden.data() + cu[s] * h, alone.hidden.size());
    EXPECT_LE(diff, 1e-5) << "sequence " << s;
  }
  // And in reverse order, interleaved with itself.
  std::vector<int32_t> ids, types, rev_cu = {0};
  for (size_t s = cu.size() - 1; s-- > 0;) {
    ids.insert(ids.end(), golden_.input_ids.begin() + cu[s], golden_.input_ids.begin() + cu[s + 1]);
    types.insert(types.end(), golden_.token_type_ids.begin() + cu[s],
                 golden_.token_type_ids.begin() + cu[s + 1]);
    rev_cu.push_back(static_cast<int32_t>(ids.size()));
  }
  EncoderOutput reversed;
  ASSERT_TRUE(encoder->forward({ids, types, rev_cu}, reversed).is_ok());
  const size_t n = cu.size() - 1;
  for (size_t r = 0; r < n; ++r) {
    const size_t s = n - 1 - r;
    double diff = max_abs_diff(reversed.hidden.data() + rev_cu[r] * h,
                               full.hidden.data() + cu[s] * h, (cu[s + 1] - cu[s]) * h);
    EXPECT_LE(diff, 1e-5) << "sequence " << s << " in reversed batch";
  }
}

TEST_P(EncoderGoldenTest, ThreadCountDoesNotChangeTheAnswer) {
  auto one = make_encoder(1);
  auto two = make_encoder(2);
  ASSERT_NE(one, nullptr);
  ASSERT_NE(two, nullptr);
  EXPECT_EQ(one->threads(), 1);
  EXPECT_EQ(two->threads(), 2);
  EncoderOutput a, b;
  ASSERT_TRUE(one->forward(batch(), a).is_ok());
  ASSERT_TRUE(two->forward(batch(), b).is_ok());
  EXPECT_LE(max_abs_diff(a.hidden.data(), b.hidden.data(), a.hidden.size()), 1e-5);
  // With the default small-batch threshold the fixture batch runs on one thread: same answer.
  auto adaptive = BertEncoder::create(*model_, {.threads = 2});
  ASSERT_TRUE(adaptive.is_ok());
  EncoderOutput c;
  ASSERT_TRUE((*adaptive)->forward(batch(), c).is_ok());
  EXPECT_LE(max_abs_diff(c.hidden.data(), b.hidden.data(), c.hidden.size()), 1e-5);
}

// The reduced precisions against the same float64 goldens, on the lines: pooled-output
// cosine >= 0.999 for int8 and >= 0.9999 for bf16, on both poolings and every sequence.
void expect_pooled_cosine(const EncoderOutput& out, const Golden& golden, double bound,
                          const std::string& label) {
  const int64_t h = out.hidden_size;
  for (Pooling pooling : {Pooling::kCls, Pooling::kMean}) {
    auto [pooled, expected] = pooled_and_golden(out, golden, pooling);
    ASSERT_EQ(pooled.size(), expected.size());
    double worst = 1.0;
    for (size_t s = 0; s + 1 < golden.cu_seqlens.size(); ++s) {
      worst = std::min(worst, cosine(pooled.data() + s * h, expected.data() + s * h, h));
    }
    EXPECT_GE(worst, bound) << label << " " << pooling_name(pooling);
    ::testing::Test::RecordProperty(label + "_" + pooling_name(pooling) + "_min_cosine",
                                    fmt::format("{:.7f}", worst));
  }
}

TEST_P(EncoderGoldenTest, Int8PooledOutputsStayWithinAccuracy) {
  auto encoder = make_encoder(2, Precision::kInt8);
  ASSERT_NE(encoder, nullptr);
  EXPECT_EQ(encoder->precision(), Precision::kInt8);
  EXPECT_GT(encoder->owned_weight_bytes(), 0u);
  EncoderOutput out;
  ASSERT_TRUE(encoder->forward(batch(), out).is_ok());
  expect_pooled_cosine(out, golden_, 0.999, GetParam() + "_int8");
  // And the quantized encoder is as batch-invariant as the fp32 one is not required to be:
  // one activation scale per call means a sequence's answer depends on its batch mates only
  // through that scale, so a sequence alone stays close to itself inside the batch.
  const auto& cu = golden_.cu_seqlens;
  std::span<const int32_t> ids(golden_.input_ids.data(), cu[1]);
  std::span<const int32_t> types(golden_.token_type_ids.data(), cu[1]);
  std::vector<int32_t> one_cu = {0, cu[1]};
  EncoderOutput alone;
  ASSERT_TRUE(encoder->forward({ids, types, one_cu}, alone).is_ok());
  std::vector<float> a = pool(alone.hidden, out.hidden_size, one_cu, Pooling::kMean, false);
  std::vector<float> b = pool(out.hidden, out.hidden_size, cu, Pooling::kMean, false);
  EXPECT_GE(cosine(a.data(), b.data(), out.hidden_size), 0.999);
}

TEST_P(EncoderGoldenTest, Bf16PooledOutputsStayWithinAccuracyOrTheCpuSaysNo) {
  auto encoder = BertEncoder::create(
      *model_, {.threads = 2, .precision = Precision::kBf16, .min_parallel_layer_flops = 0});
  if (!encoder.is_ok()) {
    EXPECT_EQ(encoder.status().code(), StatusCode::kFailedPrecondition)
        << encoder.status().to_string();
    EXPECT_NE(encoder.status().message().find(cpu_isa_name()), std::string::npos);
    GTEST_SKIP() << "no bf16 matmul on " << cpu_isa_name() << " (the refusal was checked)";
  }
  EncoderOutput out;
  ASSERT_TRUE((*encoder)->forward(batch(), out).is_ok());
  expect_pooled_cosine(out, golden_, 0.9999, GetParam() + "_bf16");
}

INSTANTIATE_TEST_SUITE_P(Fixtures, EncoderGoldenTest, ::testing::ValuesIn(fixture_model_names()),
                         [](const auto& info) { return info.param; });

TEST(EncoderFixtures, AllFourConfigsArePresent) {
  // The golden tests above are parameterized over the directory; make sure it is not empty.
  EXPECT_GE(fixture_model_names().size(), 4u);
}

class EncoderValidationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto model = BertModel::load(fixture_models_dir() + "/bert_tiny_f32");
    ASSERT_TRUE(model.is_ok()) << model.status().to_string();
    model_ = std::move(model).value();
    auto encoder = BertEncoder::create(*model_, {.threads = 1});
    ASSERT_TRUE(encoder.is_ok());
    encoder_ = std::move(encoder).value();
  }

  Status run(std::vector<int32_t> ids, std::vector<int32_t> types, std::vector<int32_t> cu) {
    EncoderOutput out;
    return encoder_->forward({ids, types, cu}, out);
  }

  std::unique_ptr<BertModel> model_;
  std::unique_ptr<BertEncoder> encoder_;
};

TEST_F(EncoderValidationTest, RejectsBadBatchesWithClearErrors) {
  const int32_t vocab = static_cast<int32_t>(model_->config().vocab_size);
  const int32_t max_len = static_cast<int32_t>(model_->config().max_position_embeddings);
  Status st = run({1, vocab, 2}, {}, {0, 3});
  EXPECT_EQ(st.code(), StatusCode::kOutOfRange);
  EXPECT_NE(st.message().find("outside the vocabulary"), std::string::npos) << st.message();
  EXPECT_EQ(run({1, -1}, {}, {0, 2}).code(), StatusCode::kOutOfRange);
  st = run({1, 2}, {0, 2}, {0, 2});
  EXPECT_NE(st.message().find("token type id 2"), std::string::npos) << st.message();
  EXPECT_EQ(run({1, 2}, {0}, {0, 2}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(run({1, 2}, {}, {0, 3}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(run({1, 2}, {}, {0, 0, 2}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(run({1, 2}, {}, {0}).code(), StatusCode::kInvalidArgument);
  std::vector<int32_t> too_long(max_len + 1, 1);
  st = run(too_long, {}, {0, max_len + 1});
  EXPECT_EQ(st.code(), StatusCode::kOutOfRange);
  EXPECT_NE(st.message().find(fmt::format("at most {}", max_len)), std::string::npos);
  std::vector<int32_t> exactly(max_len, 1);
  EXPECT_TRUE(run(exactly, {}, {0, max_len}).is_ok());
  EncoderOutput out;
  std::vector<int32_t> ids = {1}, cu = {0, 1};
  EXPECT_EQ(encoder_->forward({ids, {}, cu}, out, 99).code(), StatusCode::kInvalidArgument);
}

TEST(EncoderOptionsTest, NegativeThreadCountIsRejected) {
  auto model = BertModel::load(fixture_models_dir() + "/bert_tiny_f32");
  ASSERT_TRUE(model.is_ok()) << model.status().to_string();
  EXPECT_FALSE(BertEncoder::create(**model, {.threads = -1}).is_ok());
  auto all = BertEncoder::create(**model, {});
  ASSERT_TRUE(all.is_ok());
  EXPECT_GE((*all)->threads(), 1);
}

}  // namespace
}  // namespace tideserve::engine
