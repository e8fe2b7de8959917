// Each op against a plain double-precision reference written in the test.
#include "tideserve/engine/ops.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "tideserve/engine/linear.h"
#include "tideserve/engine/pooling.h"

namespace tideserve::engine {
namespace {

std::vector<float> random_vector(size_t n, unsigned seed, float scale = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

TEST(OpsTest, LayerNormMatchesDoubleReference) {
  const int64_t rows = 37, cols = 96;
  std::vector<float> x = random_vector(rows * cols, 1, 3.f);
  for (int64_t c = 0; c < cols; ++c) x[c] += 100.f;  // a row with a large mean
  std::vector<float> gamma = random_vector(cols, 2), beta = random_vector(cols, 3);
  std::vector<float> y(x.size());
  layer_norm(x.data(), gamma.data(), beta.data(), 1e-5f, rows, cols, y.data(), 2);
  for (int64_t r = 0; r < rows; ++r) {
    double mean = 0, var = 0;
    for (int64_t c = 0; c < cols; ++c) mean += x[r * cols + c];
    mean /= cols;
    for (int64_t c = 0; c < cols; ++c) var += std::pow(x[r * cols + c] - mean, 2);
    var /= cols;
    for (int64_t c = 0; c < cols; ++c) {
      double expected = (x[r * cols + c] - mean) / std::sqrt(var + 1e-5) * gamma[c] + beta[c];
      ASSERT_NEAR(y[r * cols + c], expected, 2e-5) << r << "," << c;
    }
  }
  // In place gives the same answer.
  layer_norm(x.data(), gamma.data(), beta.data(), 1e-5f, rows, cols, x.data(), 1);
  EXPECT_EQ(x, y);
}

TEST(OpsTest, SoftmaxIsStableAndSumsToOne) {
  std::vector<float> row = {1000.f, 1001.f, 999.f, -1e30f};
  softmax_row(row.data(), 4, 1.f);
  double e0 = std::exp(-1.0), e2 = std::exp(-2.0), sum = e0 + 1.0 + e2;
  EXPECT_NEAR(row[0], e0 / sum, 1e-6);
  EXPECT_NEAR(row[1], 1.0 / sum, 1e-6);
  EXPECT_NEAR(row[2], e2 / sum, 1e-6);
  EXPECT_EQ(row[3], 0.f);
  std::vector<float> scaled = {2.f, 4.f};
  softmax_row(scaled.data(), 2, 0.5f);
  EXPECT_NEAR(scaled[1], 1.0 / (1.0 + std::exp(-1.0)), 1e-6);
}

double gelu_erf(double x) {
  return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
}
double gelu_tanh(double x) {
  return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

class LinearTest : public ::testing::TestWithParam<Epilogue> {};

TEST_P(LinearTest, MatchesNaiveReferenceForManyRowCounts) {
  const Epilogue epilogue = GetParam();
  const int64_t n = 40, k = 24;
  std::vector<float> w = random_vector(n * k, 4, 0.3f), b = random_vector(n, 5);
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  auto linear = Linear::create(engine, w.data(), b.data(), n, k, epilogue);
  ASSERT_TRUE(linear.is_ok()) << linear.status().to_string();
  // One primitive serves every row count (runtime M).
  for (int64_t m : {1, 2, 7, 64, 129}) {
    std::vector<float> x = random_vector(m * k, 6 + static_cast<unsigned>(m));
    std::vector<float> residual = random_vector(m * n, 7);
    std::vector<float> y = epilogue == Epilogue::kResidual ? residual : std::vector<float>(m * n);
    (*linear)->forward(stream, x.data(), m, y.data());
    stream.wait();
    for (int64_t r = 0; r < m; ++r) {
      for (int64_t c = 0; c < n; ++c) {
        double acc = b[c];
        for (int64_t i = 0; i < k; ++i) acc += double{x[r * k + i]} * w[c * k + i];
        if (epilogue == Epilogue::kGeluErf) acc = gelu_erf(acc);
        if (epilogue == Epilogue::kGeluTanh) acc = gelu_tanh(acc);
        if (epilogue == Epilogue::kResidual) acc += residual[r * n + c];
        ASSERT_NEAR(y[r * n + c], acc, 1e-4) << "m=" << m << " r=" << r << " c=" << c;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Epilogues, LinearTest,
                         ::testing::Values(Epilogue::kNone, Epilogue::kGeluErf, Epilogue::kGeluTanh,
                                           Epilogue::kResidual));

TEST(PoolingTest, ClsMeanAndNormalize) {
  // Two sequences of lengths 2 and 1, hidden size 2.
  std::vector<float> hidden = {1, 2, 3, 4, -6, 8};
  std::vector<int32_t> cu = {0, 2, 3};
  EXPECT_EQ(pool(hidden, 2, cu, Pooling::kCls, false), (std::vector<float>{1, 2, -6, 8}));
  EXPECT_EQ(pool(hidden, 2, cu, Pooling::kMean, false), (std::vector<float>{2, 3, -6, 8}));
  std::vector<float> unit = pool(hidden, 2, cu, Pooling::kCls, true);
  EXPECT_NEAR(unit[2], -0.6f, 1e-7);
  EXPECT_NEAR(unit[3], 0.8f, 1e-7);
  std::vector<float> zeros = {0, 0};
  std::vector<int32_t> one = {0, 1};
  EXPECT_EQ(pool(zeros, 2, one, Pooling::kMean, true), (std::vector<float>{0, 0}));
  EXPECT_TRUE(parse_pooling("mean").is_ok());
  EXPECT_FALSE(parse_pooling("max").is_ok());
}

}  // namespace
}  // namespace tideserve::engine
