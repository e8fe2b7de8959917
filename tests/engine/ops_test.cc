// Each op against a plain double-precision reference written in the test.
#include "tideserve/engine/ops.h"

#include <gtest/gtest.h>

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
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

using SoftmaxFn = void (*)(float*, int64_t, float);

// The dispatched softmax (AVX2 where the CPU has it) and the portable loop, on every machine.
class SoftmaxTest : public ::testing::TestWithParam<SoftmaxFn> {};
INSTANTIATE_TEST_SUITE_P(Paths, SoftmaxTest,
                         ::testing::Values(&softmax_row, &portable::softmax_row),
                         [](const auto& info) {
                           return std::string(info.index == 0 ? "Dispatched" : "Portable");
                         });

// Every length from 1 to 70 covers the 8-wide body and every tail length.
TEST_P(SoftmaxTest, MatchesDoubleReferenceAtEveryLength) {
  const SoftmaxFn softmax_row = GetParam();
  for (int64_t n = 1; n <= 70; ++n) {
    std::vector<float> row =
        random_vector(static_cast<size_t>(n), 40 + static_cast<unsigned>(n), 3.f);
    row[static_cast<size_t>(n) / 2] = -1e30f;  // a masked-out score comes out 0
    std::vector<double> ref(row.size());
    double max_value = -1e300, sum = 0.0;
    for (size_t i = 0; i < row.size(); ++i) max_value = std::max(max_value, 0.125 * row[i]);
    for (size_t i = 0; i < row.size(); ++i) sum += (ref[i] = std::exp(0.125 * row[i] - max_value));
    softmax_row(row.data(), n, 0.125f);
    double total = 0.0;
    for (size_t i = 0; i < row.size(); ++i) {
      EXPECT_NEAR(row[i], ref[i] / sum, 2e-7 + 2e-6 * ref[i] / sum) << "n=" << n << " i=" << i;
      total += row[i];
    }
    EXPECT_NEAR(total, 1.0, 1e-5) << "n=" << n;
    if (n > 1) {
      EXPECT_EQ(row[static_cast<size_t>(n) / 2], 0.f) << "n=" << n;
    }
  }
}

TEST_P(SoftmaxTest, IsStableAndSumsToOne) {
  const SoftmaxFn softmax_row = GetParam();
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

// y = epilogue(x W^T + b) in double, rows of width n.
std::vector<double> linear_reference(const std::vector<float>& x, const std::vector<float>& w,
                                     const std::vector<float>& b,
                                     const std::vector<float>& residual, int64_t m, int64_t n,
                                     int64_t k, Epilogue epilogue) {
  std::vector<double> y(static_cast<size_t>(m * n));
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t c = 0; c < n; ++c) {
      double acc = b[c];
      for (int64_t i = 0; i < k; ++i) acc += double{x[r * k + i]} * w[c * k + i];
      if (epilogue == Epilogue::kGeluErf) acc = gelu_erf(acc);
      if (epilogue == Epilogue::kGeluTanh) acc = gelu_tanh(acc);
      if (epilogue == Epilogue::kResidual) acc += residual[r * n + c];
      y[r * n + c] = acc;
    }
  }
  return y;
}

// A CPU engine, a stream and a scratch for the Linear tests; weights [n, k] row-major.
struct LinearHarness {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  LinearScratch scratch;

  Result<std::unique_ptr<Linear>> create(const std::vector<float>& w, const std::vector<float>& b,
                                         int64_t n, int64_t k, Precision precision,
                                         Epilogue epilogue = Epilogue::kNone,
                                         int64_t out_stride = 0,
                                         Fp32Kernel kernel = Fp32Kernel::kFastest) {
    return Linear::create(engine, {.weight = w.data(),
                                   .bias = b.data(),
                                   .out_features = n,
                                   .in_features = k,
                                   .epilogue = epilogue,
                                   .precision = precision,
                                   .out_stride = out_stride,
                                   .fp32_kernel = kernel});
  }
  void forward(const Linear& linear, const std::vector<float>& x, int64_t m, float* out) {
    linear.forward(stream, x.data(), m, out, scratch);
  }
};

struct LinearCase {
  Epilogue epilogue;
  Precision precision;
  Fp32Kernel kernel = Fp32Kernel::kFastest;
};

class LinearTest : public ::testing::TestWithParam<LinearCase> {};

// fp32 holds 1e-4 absolute. int8 is judged relative to the output's spread: per-row 7/8-bit
// weights and one 8-bit activation scale leave errors of a few per cent of the largest output.
TEST_P(LinearTest, MatchesDoubleReferenceForManyRowCounts) {
  const auto [epilogue, precision, kernel] = GetParam();
  if (kernel == Fp32Kernel::kPacked && !packed_gemm_available()) {
    GTEST_SKIP() << "the packed fp32 GEMM needs AVX2 and FMA, which this CPU lacks";
  }
  const int64_t n = 40, k = 24;
  std::vector<float> w = random_vector(n * k, 4, 0.3f), b = random_vector(n, 5);
  LinearHarness h;
  auto linear = h.create(w, b, n, k, precision, epilogue, 0, kernel);
  ASSERT_TRUE(linear.is_ok()) << linear.status().to_string();
  EXPECT_EQ((*linear)->precision(), precision);
  const bool packed = std::string((*linear)->impl_name()) == kPackedGemmImpl;
  if (kernel != Fp32Kernel::kFastest) {
    EXPECT_EQ(packed, kernel == Fp32Kernel::kPacked);
  }
  // Converted and packed weights are the layer's own; oneDNN's fp32 ones are the caller's.
  EXPECT_EQ((*linear)->owned_weight_bytes() > 0, precision != Precision::kF32 || packed);
  // One primitive serves every row count (runtime M).
  for (int64_t m : {1, 2, 7, 64, 129}) {
    std::vector<float> x = random_vector(m * k, 6 + static_cast<unsigned>(m));
    std::vector<float> residual = random_vector(m * n, 7);
    std::vector<float> y = epilogue == Epilogue::kResidual ? residual : std::vector<float>(m * n);
    h.forward(**linear, x, m, y.data());
    std::vector<double> ref = linear_reference(x, w, b, residual, m, n, k, epilogue);
    double spread = 0.0;
    for (double v : ref) spread = std::max(spread, std::fabs(v));
    const double tolerance = precision == Precision::kF32 ? 1e-4 : 0.03 * spread;
    double dot = 0.0, yy = 0.0, rr = 0.0;
    for (size_t i = 0; i < ref.size(); ++i) {
      ASSERT_NEAR(y[i], ref[i], tolerance) << "m=" << m << " index " << i;
      dot += y[i] * ref[i];
      yy += double{y[i]} * y[i];
      rr += ref[i] * ref[i];
    }
    EXPECT_GE(dot / std::sqrt(yy * rr), precision == Precision::kF32 ? 0.9999999 : 0.999)
        << "m=" << m;
  }
}

const char* epilogue_label(Epilogue epilogue) {
  static const char* const kNames[] = {"None", "GeluErf", "GeluTanh", "Residual"};
  return kNames[static_cast<int>(epilogue)];
}

std::string linear_case_name(const ::testing::TestParamInfo<LinearCase>& info) {
  static const char* const kKernels[] = {"", "OneDnn", "Packed"};
  return std::string(epilogue_label(info.param.epilogue)) +
         (info.param.precision == Precision::kF32 ? "F32" : "Int8") +
         kKernels[static_cast<int>(info.param.kernel)];
}

constexpr Fp32Kernel kOneDnn = Fp32Kernel::kOneDnn;
constexpr Fp32Kernel kPacked = Fp32Kernel::kPacked;

INSTANTIATE_TEST_SUITE_P(
    Epilogues, LinearTest,
    ::testing::Values(LinearCase{Epilogue::kNone, Precision::kF32},
                      LinearCase{Epilogue::kGeluErf, Precision::kF32},
                      LinearCase{Epilogue::kGeluTanh, Precision::kF32},
                      LinearCase{Epilogue::kResidual, Precision::kF32},
                      LinearCase{Epilogue::kNone, Precision::kF32, kOneDnn},
                      LinearCase{Epilogue::kGeluErf, Precision::kF32, kOneDnn},
                      LinearCase{Epilogue::kGeluTanh, Precision::kF32, kOneDnn},
                      LinearCase{Epilogue::kResidual, Precision::kF32, kOneDnn},
                      LinearCase{Epilogue::kNone, Precision::kF32, kPacked},
                      LinearCase{Epilogue::kGeluErf, Precision::kF32, kPacked},
                      LinearCase{Epilogue::kGeluTanh, Precision::kF32, kPacked},
                      LinearCase{Epilogue::kResidual, Precision::kF32, kPacked},
                      LinearCase{Epilogue::kNone, Precision::kInt8},
                      LinearCase{Epilogue::kGeluErf, Precision::kInt8},
                      LinearCase{Epilogue::kGeluTanh, Precision::kInt8},
                      LinearCase{Epilogue::kResidual, Precision::kInt8}),
    linear_case_name);

TEST(LinearLayoutTest, OutputStrideWritesAColumnSliceOfAWiderBuffer) {
  const int64_t n = 8, k = 16, m = 5, stride = 3 * n;
  std::vector<float> w = random_vector(n * k, 11), b = random_vector(n, 12);
  std::vector<float> x = random_vector(m * k, 13);
  LinearHarness h;
  auto linear = h.create(w, b, n, k, Precision::kF32, Epilogue::kNone, stride);
  ASSERT_TRUE(linear.is_ok()) << linear.status().to_string();
  std::vector<float> out(m * stride, -7.f);
  h.forward(**linear, x, m, out.data() + n);  // the middle slice
  std::vector<double> ref = linear_reference(x, w, b, {}, m, n, k, Epilogue::kNone);
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t c = 0; c < stride; ++c) {
      const float got = out[r * stride + c];
      if (c >= n && c < 2 * n) {
        EXPECT_NEAR(got, ref[r * n + c - n], 1e-4) << r << "," << c;
      } else {
        EXPECT_EQ(got, -7.f) << "wrote outside its slice at " << r << "," << c;
      }
    }
  }
  EXPECT_FALSE(h.create(w, b, n, k, Precision::kF32, Epilogue::kNone, n - 1).is_ok());
}

// tideserve's packed fp32 GEMM at the edges of its blocking: K past one and two 384-value
// blocks, rows past one 144-row block and not a multiple of the 6-row tile, a last panel
// narrower than 16 columns, and a column slice of a wider output, for every epilogue.
std::string epilogue_name(const ::testing::TestParamInfo<Epilogue>& info) {
  return epilogue_label(info.param);
}

class PackedGemmTest : public ::testing::TestWithParam<Epilogue> {
 protected:
  void SetUp() override {
    if (!packed_gemm_available()) GTEST_SKIP() << "no AVX2 + FMA on this CPU: no packed GEMM";
  }
};

TEST_P(PackedGemmTest, MatchesDoubleReferenceAcrossBlockEdges) {
  const Epilogue epilogue = GetParam();
  struct Shape {
    int64_t rows, n, k;
  };
  for (const Shape& s : {Shape{150, 40, 800}, Shape{7, 64, 384}, Shape{1, 16, 1}, Shape{13, 3, 5},
                         Shape{6, 200, 769}}) {
    std::vector<float> w = random_vector(s.n * s.k, 41, 0.1f), b = random_vector(s.n, 42);
    std::vector<float> x = random_vector(s.rows * s.k, 43);
    const PackedWeights packed(w.data(), b.data(), s.n, s.k);
    const int64_t stride = s.n + 5, offset = 2;  // columns [2, 2 + n) of a wider buffer
    std::vector<float> residual = random_vector(s.rows * s.n, 44);
    std::vector<float> out(static_cast<size_t>(s.rows * stride), -7.f);
    for (int64_t r = 0; r < s.rows; ++r) {
      for (int64_t c = 0; c < s.n; ++c) out[r * stride + offset + c] = residual[r * s.n + c];
    }
    packed_gemm(x.data(), s.rows, packed, epilogue, out.data() + offset, stride);
    std::vector<double> ref = linear_reference(x, w, b, residual, s.rows, s.n, s.k, epilogue);
    for (int64_t r = 0; r < s.rows; ++r) {
      for (int64_t c = 0; c < stride; ++c) {
        const float got = out[r * stride + c];
        if (c >= offset && c < offset + s.n) {
          const double want = ref[r * s.n + c - offset];
          ASSERT_NEAR(got, want, 2e-5 * (1 + std::fabs(want)))
              << s.rows << "x" << s.n << "x" << s.k << " at " << r << "," << c - offset;
        } else {
          ASSERT_EQ(got, -7.f) << "wrote outside its slice at " << r << "," << c;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Epilogues, PackedGemmTest,
                         ::testing::Values(Epilogue::kNone, Epilogue::kGeluErf, Epilogue::kGeluTanh,
                                           Epilogue::kResidual),
                         epilogue_name);

// Threads split the output columns, so each value is the same sum in the same order: the result
// is bit for bit the same on any thread count (and past one 144-row block).
TEST_F(PackedGemmTest, SameBitsOnEveryThreadCount) {
  const int64_t n = 200, k = 400;
  std::vector<float> w = random_vector(n * k, 51, 0.1f), b = random_vector(n, 52);
  const PackedWeights packed(w.data(), b.data(), n, k);
  const int saved = omp_get_max_threads();
  for (int64_t rows : {37, 300}) {
    std::vector<float> x = random_vector(rows * k, 53);
    std::vector<float> one(static_cast<size_t>(rows * n));
    omp_set_num_threads(1);
    packed_gemm(x.data(), rows, packed, Epilogue::kGeluErf, one.data(), n);
    for (int threads : {2, 3}) {
      std::vector<float> many(one.size(), 0.f);
      omp_set_num_threads(threads);
      packed_gemm(x.data(), rows, packed, Epilogue::kGeluErf, many.data(), n);
      EXPECT_EQ(many, one) << rows << " rows, " << threads << " threads";
    }
  }
  omp_set_num_threads(saved);
}

// The vectorized GELUs (erf by Abramowitz and Stegun 7.1.26, tanh through e^(2u)) against the
// exact functions from -12 to 12, through a 1 x 16 identity layer; a NaN stays NaN.
TEST_F(PackedGemmTest, GeluMatchesTheExactFunctionsOverTheirRange) {
  std::vector<float> x;
  for (int i = -1200; i <= 1200; ++i) x.push_back(static_cast<float>(i) / 100.f);
  x.push_back(std::numeric_limits<float>::quiet_NaN());
  const int64_t rows = static_cast<int64_t>(x.size()), n = 16;
  std::vector<float> w(n, 1.f), b(n, 0.f);
  const PackedWeights packed(w.data(), b.data(), n, 1);
  for (Epilogue epilogue : {Epilogue::kGeluErf, Epilogue::kGeluTanh}) {
    std::vector<float> y(static_cast<size_t>(rows * n));
    packed_gemm(x.data(), rows, packed, epilogue, y.data(), n);
    double worst = 0;
    for (int64_t r = 0; r + 1 < rows; ++r) {
      const double want = epilogue == Epilogue::kGeluErf ? gelu_erf(x[r]) : gelu_tanh(x[r]);
      for (int64_t c = 0; c < n; ++c) {
        const double error = std::fabs(y[r * n + c] - want) / std::max(1.0, std::fabs(want));
        worst = std::max(worst, error);
        ASSERT_LE(error, 1e-6) << "x=" << x[r];
      }
    }
    EXPECT_TRUE(std::isnan(y[(rows - 1) * n]));
    std::printf("gelu %s: worst relative error %.2e\n",
                epilogue == Epilogue::kGeluErf ? "erf" : "tanh", worst);
  }
}

// Without VNNI, x86's u8 x s8 multiply adds pairs of products into a saturating int16: with
// 8-bit weights 255 * 127 * 2 overflows. The int8 path keeps weights within 63 on such CPUs;
// this case would come out wrong by orders of magnitude if it did not.
TEST(LinearInt8Test, ExtremeValuesDoNotSaturate) {
  const int64_t n = 4, k = 64, m = 3;
  std::vector<float> w(n * k, 1.f), b(n, 0.f);
  for (int64_t c = 0; c < k; ++c) w[1 * k + c] = -1.f;  // row 1 at the negative limit
  // Activations 0 and 2.55 map exactly to u8 0 and 255 (scale 0.01, zero point 0).
  std::vector<float> x(m * k);
  for (int64_t i = 0; i < m * k; ++i) x[i] = (i % 3 == 0) ? 0.f : 2.55f;
  LinearHarness h;
  auto linear = h.create(w, b, n, k, Precision::kInt8);
  ASSERT_TRUE(linear.is_ok()) << linear.status().to_string();
  std::vector<float> y(m * n);
  h.forward(**linear, x, m, y.data());
  std::vector<double> ref = linear_reference(x, w, b, {}, m, n, k, Epilogue::kNone);
  for (size_t i = 0; i < ref.size(); ++i) {
    EXPECT_NEAR(y[i], ref[i], 1e-3 * std::fabs(ref[i]))
        << "index " << i << " on " << cpu_isa_name();
  }
  EXPECT_TRUE(int8_weight_limit() == 63 || int8_weight_limit() == 127);
}

// Why the limit is 63 without VNNI, on oneDNN itself: u8 255 x s8 127, summed in pairs, overflows
// the int16 that AVX2's vpmaddubsw saturates into (2 * 255 * 127 = 64,770 > 32,767); with 63 the
// pairs fit (32,130). If a oneDNN update stops saturating here, this test says the 7-bit limit
// can go.
// oneDNN's raw u8 x s8 -> s32 matmul of a [2, k] source of 255s with a [k, 8] weight that is
// `weight` everywhere: dot(w) is the first output, 255 * w * k when nothing saturates.
class RawU8S8Dot {
 public:
  explicit RawU8S8Dot(int64_t k)
      : k_(k),
        engine_(dnnl::engine::kind::cpu, 0),
        stream_(engine_),
        src_md_({kM, k}, dnnl::memory::data_type::u8, dnnl::memory::format_tag::ab),
        wei_md_({k, kN}, dnnl::memory::data_type::s8, dnnl::memory::format_tag::ab),
        dst_md_({kM, kN}, dnnl::memory::data_type::s32, dnnl::memory::format_tag::ab),
        matmul_(
            dnnl::matmul::primitive_desc(dnnl::matmul::desc(src_md_, wei_md_, dst_md_), engine_)) {}

  int32_t operator()(int8_t weight) {
    std::vector<uint8_t> src(kM * k_, 255);
    std::vector<int8_t> wei(k_ * kN, weight);
    std::vector<int32_t> dst(kM * kN);
    dnnl::memory s(src_md_, engine_, src.data()), w(wei_md_, engine_, wei.data()),
        d(dst_md_, engine_, dst.data());
    matmul_.execute(stream_, {{DNNL_ARG_SRC, s}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, d}});
    stream_.wait();
    return dst[0];
  }

 private:
  static constexpr int64_t kM = 2, kN = 8;
  int64_t k_;
  dnnl::engine engine_;
  dnnl::stream stream_;
  dnnl::memory::desc src_md_, wei_md_, dst_md_;
  dnnl::matmul matmul_;
};

TEST(LinearInt8Test, RawU8S8MatmulSaturatesWithEightBitWeightsWithoutVnni) {
  const int64_t k = 64;
  RawU8S8Dot dot(k);
  EXPECT_EQ(dot(63), 255 * 63 * k) << "the 7-bit limit must always be exact";
  if (int8_weight_limit() != 63) {
    // engine_test_without_vnni runs this with ONEDNN_MAX_CPU_ISA=AVX2 on every machine.
    GTEST_SKIP() << cpu_isa_name() << " has VNNI: no int16 saturation to show";
  }
  EXPECT_NE(dot(127), 255 * 127 * k) << "no saturation on " << cpu_isa_name();
}

TEST(LinearInt8Test, RawU8S8MatmulIsExactWithEightBitWeightsOnVnni) {
  if (int8_weight_limit() == 63) {
    GTEST_SKIP() << cpu_isa_name() << " has no VNNI: 8-bit weights would saturate";
  }
  RawU8S8Dot dot(64);
  EXPECT_EQ(dot(63), 255 * 63 * 64);
  EXPECT_EQ(dot(127), 255 * 127 * 64) << cpu_isa_name();
}

// bf16 runs where oneDNN has a bf16 matmul (AVX512_CORE and newer); elsewhere create() must
// refuse with a message that names the CPU instead of failing later or silently using fp32.
TEST(LinearBf16Test, RunsWithinBf16AccuracyOrSaysTheCpuCannot) {
  const int64_t n = 32, k = 48, m = 9;
  std::vector<float> w = random_vector(n * k, 21, 0.3f), b = random_vector(n, 22);
  std::vector<float> x = random_vector(m * k, 23);
  LinearHarness h;
  auto linear = h.create(w, b, n, k, Precision::kBf16);
  if (!linear.is_ok()) {
    EXPECT_EQ(linear.status().code(), StatusCode::kFailedPrecondition);
    EXPECT_NE(linear.status().message().find("bfloat16 matmul is not available"), std::string::npos)
        << linear.status().message();
    EXPECT_NE(linear.status().message().find(cpu_isa_name()), std::string::npos);
    GTEST_SKIP() << "no bf16 matmul on " << cpu_isa_name() << " (the refusal was checked)";
  }
  std::vector<float> y(m * n);
  h.forward(**linear, x, m, y.data());
  std::vector<double> ref = linear_reference(x, w, b, {}, m, n, k, Epilogue::kNone);
  for (size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR(y[i], ref[i], 0.05) << "index " << i;
}

TEST(QuantizeTest, RoundTripWithinHalfAStepAndZeroIsExact) {
  std::vector<float> x = random_vector(1000, 31, 2.f);
  x[10] = 0.f;
  std::vector<uint8_t> q(x.size());
  QuantParams p = quantize_u8(x.data(), static_cast<int64_t>(x.size()), q.data());
  float lo = *std::min_element(x.begin(), x.end());
  float hi = *std::max_element(x.begin(), x.end());
  EXPECT_NEAR(p.scale, (hi - lo) / 255.f, 1e-6);
  const float inv = 1.f / p.scale, zero = static_cast<float>(p.zero_point);
  // 1000 values: all in the AVX2 path's 8-wide body where it runs.
  const bool fused = ops_use_avx2();
  for (size_t i = 0; i < x.size(); ++i) {
    // Exactly the documented rounding (clamp, half to even) of x * inv + zero: one rounding on
    // the AVX2 path (FMA), two on the portable one.
    const float v = std::clamp(fused ? std::fma(x[i], inv, zero) : x[i] * inv + zero, 0.f, 255.f);
    EXPECT_EQ(q[i], static_cast<uint8_t>(std::nearbyint(v))) << i;
    const float back = p.scale * (static_cast<int32_t>(q[i]) - p.zero_point);
    // Half a step from rounding, plus the zero point's own rounding.
    EXPECT_LE(std::fabs(back - x[i]), p.scale * 1.0001f) << i;
  }
  EXPECT_EQ(q[10], p.zero_point);
  // All non-negative: zero point 0 and the largest value at 255.
  std::vector<float> pos = {0.f, 1.f, 3.f};
  std::vector<uint8_t> qp(3);
  QuantParams pp = quantize_u8(pos.data(), 3, qp.data());
  EXPECT_EQ(pp.zero_point, 0);
  EXPECT_EQ(qp[2], 255);
  // Constant zeros and non-finite input do not divide by zero or crash.
  std::vector<float> zeros(5, 0.f);
  std::vector<uint8_t> qz(5);
  EXPECT_EQ(quantize_u8(zeros.data(), 5, qz.data()).scale, 1.f);
  std::vector<float> denormal = {0.f, 1e-39f, -1e-39f};
  std::vector<uint8_t> qd(3);
  EXPECT_EQ(quantize_u8(denormal.data(), 3, qd.data()).scale, 1.f);
  // A range that is not finite keeps scale 1; -inf puts the zero point at 255; a NaN lands on 0
  // (ops.cc). Nine values: the SIMD body and the tail.
  std::vector<float> bad = {1.f, NAN, -INFINITY, 2.f, 0.f, NAN, 3.f, -INFINITY, NAN};
  std::vector<uint8_t> qb(bad.size());
  QuantParams pb = quantize_u8(bad.data(), static_cast<int64_t>(bad.size()), qb.data());
  EXPECT_EQ(pb.scale, 1.f);
  EXPECT_EQ(pb.zero_point, 255);
  for (size_t i = 0; i < bad.size(); ++i) {
    EXPECT_EQ(qb[i], std::isfinite(bad[i]) ? 255 : 0) << i << ": " << bad[i];
  }
}

TEST(QuantizeTest, PortableLoopRoundsHalfToEvenWithTwoRoundings) {
  // Ties: x * 1 + 0 lands exactly on .5; half to even gives 0, 2, 2, 4 (not 1, 2, 3, 4).
  std::vector<float> ties = {0.5f, 1.5f, 2.5f, 3.5f, -1.f, 300.f, NAN, 254.5f};
  std::vector<uint8_t> q(ties.size());
  portable::quantize_values(ties.data(), static_cast<int64_t>(ties.size()), 1.f, 0.f, q.data());
  EXPECT_EQ(q, (std::vector<uint8_t>{0, 2, 2, 4, 0, 255, 0, 254}));
  std::vector<float> x = random_vector(257, 33, 3.f);
  std::vector<uint8_t> qx(x.size());
  const float inv = 41.3f, zero = 127.f;
  portable::quantize_values(x.data(), static_cast<int64_t>(x.size()), inv, zero, qx.data());
  for (size_t i = 0; i < x.size(); ++i) {
    const float v = std::clamp(x[i] * inv + zero, 0.f, 255.f);
    EXPECT_EQ(qx[i], static_cast<uint8_t>(std::nearbyint(v))) << i;
  }
}

TEST(Bf16Test, RoundsToNearestEven) {
  EXPECT_EQ(to_bf16(1.f), 0x3f80);
  EXPECT_EQ(to_bf16(-2.f), 0xc000);
  // 1 + 2^-8 is halfway between bf16 1.0 and 1.0078125: ties go to the even mantissa (1.0).
  EXPECT_EQ(to_bf16(1.f + 1.f / 256), 0x3f80);
  // 1 + 3 * 2^-8 is halfway between 1.0078125 (odd) and 1.015625 (even): rounds up.
  EXPECT_EQ(to_bf16(1.f + 3.f / 256), 0x3f82);
  EXPECT_EQ(to_bf16(1.f + 1.5f / 256), 0x3f81);
  EXPECT_EQ(to_bf16(INFINITY), 0x7f80);
  const uint16_t nan = to_bf16(NAN);
  EXPECT_EQ(nan & 0x7f80, 0x7f80);
  EXPECT_NE(nan & 0x007f, 0);
}

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
  EXPECT_TRUE(parse_pooling("max").is_ok());
  EXPECT_FALSE(parse_pooling("maximum").is_ok());
}

// Every linear layer shape the encoder creates (BERT-base: Q/K/V into one [tokens, 3H] buffer,
// the attention output and FFN down with the residual, FFN up with GELU; and a fixture-sized
// model), in each precision: oneDNN must pick an optimized kernel, never its reference loop.
// A precision this CPU cannot run must be refused cleanly, and is reported as skipped.
class LinearKernelTest : public ::testing::TestWithParam<Precision> {};

TEST_P(LinearKernelTest, EveryEncoderShapeGetsAnOptimizedKernel) {
  const Precision precision = GetParam();
  struct Shape {
    int64_t n, k, stride;
    Epilogue epilogue;
  };
  std::vector<Shape> shapes;
  for (int64_t h : {768, 64}) {
    shapes.push_back({h, h, 3 * h, Epilogue::kNone});
    shapes.push_back({h, h, 0, Epilogue::kResidual});
    shapes.push_back({4 * h, h, 0, Epilogue::kGeluErf});
    shapes.push_back({4 * h, h, 0, Epilogue::kGeluTanh});
    shapes.push_back({h, 4 * h, 0, Epilogue::kResidual});
  }
  LinearHarness h;
  std::vector<std::string> impls;
  for (const Shape& s : shapes) {
    std::vector<float> w = random_vector(s.n * s.k, 31, 0.05f), b = random_vector(s.n, 32);
    auto linear = h.create(w, b, s.n, s.k, precision, s.epilogue, s.stride);
    if (!linear.is_ok()) {
      ASSERT_EQ(precision, Precision::kBf16) << linear.status().to_string();
      EXPECT_EQ(linear.status().code(), StatusCode::kFailedPrecondition);
      EXPECT_NE(linear.status().message().find(cpu_isa_name()), std::string::npos);
      GTEST_SKIP() << "no bf16 matmul on " << cpu_isa_name() << " (the refusal was checked)";
    }
    const std::string impl = (*linear)->impl_name();
    EXPECT_NE(impl.rfind("ref", 0), 0u) << precision_name(precision) << " [" << s.n << ", " << s.k
                                        << "]: oneDNN's reference kernel " << impl;
    // It computes: one row against the double reference.
    std::vector<float> x = random_vector(s.k, 33);
    const int64_t width = s.stride > 0 ? s.stride : s.n;
    std::vector<float> y(static_cast<size_t>(width), 0.f);
    h.forward(**linear, x, 1, y.data());
    std::vector<double> ref =
        linear_reference(x, w, b, std::vector<float>(s.n, 0.f), 1, s.n, s.k, s.epilogue);
    double spread = 0;
    for (double v : ref) spread = std::max(spread, std::fabs(v));
    const double tol = precision == Precision::kF32 ? 1e-4 : 0.05 * spread + 1e-3;
    for (int64_t c = 0; c < s.n; ++c) EXPECT_NEAR(y[c], ref[c], tol) << "column " << c;
    if (std::find(impls.begin(), impls.end(), impl) == impls.end()) impls.push_back(impl);
  }
  std::string all;
  for (const std::string& i : impls) all += " " + i;
  std::printf("%s on %s:%s\n", precision_name(precision), cpu_isa_name(), all.c_str());
}

INSTANTIATE_TEST_SUITE_P(Precisions, LinearKernelTest,
                         ::testing::Values(Precision::kF32, Precision::kInt8, Precision::kBf16),
                         [](const auto& info) { return std::string(precision_name(info.param)); });

TEST(LinearKernelTest, AutoTriesTheFastestPrecisionFirstAndAlwaysEndsWithFp32) {
  const std::vector<Precision> order = auto_precisions();
  ASSERT_FALSE(order.empty());
  EXPECT_EQ(order.back(), Precision::kF32);
  const std::string isa = cpu_isa_name();
  const bool bf16 = isa == "avx512_core_bf16" || isa == "avx512_core_amx";
  const bool vnni = bf16 || isa == "avx2_vnni" || isa == "avx512_core_vnni";
  EXPECT_EQ(order.front(), bf16 ? Precision::kBf16 : vnni ? Precision::kInt8 : Precision::kF32);
  EXPECT_EQ(order.size(), 1u + (bf16 ? 1 : 0) + (vnni ? 1 : 0));
}

}  // namespace
}  // namespace tideserve::engine
