// tideserve's packed fp32 GEMM against oneDNN's runtime-M matmul (the two candidates Linear
// chooses between), run in pairs: each repetition runs one and then the other on the same
// buffers, so a slow patch of a shared machine hits both. Prints one line per shape with the
// median GFLOP/s of each and the median of the per-pair time ratios.
//
//   gemm_pair [--reps R] M,K,N ...      (default: the BERT-base shapes at M = 16, 128, 1024)
//
// Weights are [N, K] (the Hugging Face layout, which oneDNN runs in place as "ba"), no epilogue.
// Thread count: OMP_NUM_THREADS. The first line is the core's fp32 FMA peak (12 independent
// 8-wide FMA chains, one thread), the ceiling for any fp32 GEMM here.
#include <utility>  // must precede oneDNN headers under C++20 with g++ 12

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <immintrin.h>
#include <oneapi/dnnl/dnnl.hpp>

#include "tideserve/engine/packed_gemm.h"

namespace {

using dnnl::memory;
using Clock = std::chrono::steady_clock;

// GFLOP/s of 12 independent chains of 8-wide FMAs on this thread, the best of 5 runs. The
// chains are 12 named variables so that they stay in registers.
__attribute__((target("avx2,fma"))) double fma_peak_gflops() {
  __m256 a0 = _mm256_set1_ps(0.f), a1 = _mm256_set1_ps(1.f), a2 = _mm256_set1_ps(2.f),
         a3 = _mm256_set1_ps(3.f), a4 = _mm256_set1_ps(4.f), a5 = _mm256_set1_ps(5.f),
         a6 = _mm256_set1_ps(6.f), a7 = _mm256_set1_ps(7.f), a8 = _mm256_set1_ps(8.f),
         a9 = _mm256_set1_ps(9.f), a10 = _mm256_set1_ps(10.f), a11 = _mm256_set1_ps(11.f);
  const __m256 scale = _mm256_set1_ps(1.0000001f), shift = _mm256_set1_ps(1e-7f);
  constexpr long kIterations = 20'000'000;
  double best = 0;
  for (int run = 0; run < 5; ++run) {
    const auto start = Clock::now();
    for (long i = 0; i < kIterations; ++i) {
#define TS_CHAIN(a) a = _mm256_fmadd_ps(a, scale, shift)
      TS_CHAIN(a0);
      TS_CHAIN(a1);
      TS_CHAIN(a2);
      TS_CHAIN(a3);
      TS_CHAIN(a4);
      TS_CHAIN(a5);
      TS_CHAIN(a6);
      TS_CHAIN(a7);
      TS_CHAIN(a8);
      TS_CHAIN(a9);
      TS_CHAIN(a10);
      TS_CHAIN(a11);
#undef TS_CHAIN
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    best = std::max(best, kIterations * 12.0 * 16.0 / seconds / 1e9);
  }
  const __m256 sum =
      _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                                  _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7))),
                    _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
  if (_mm256_cvtss_f32(sum) == 42.f) std::printf(" ");  // keeps the chains live
  return best;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void compare(int64_t m, int64_t k, int64_t n, int reps) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-0.5f, 0.5f);
  std::vector<float> w(static_cast<size_t>(n * k)), x(static_cast<size_t>(m * k)), bias(n, 0.1f);
  for (float& v : w) v = dist(rng);
  for (float& v : x) v = dist(rng);
  std::vector<float> ours(static_cast<size_t>(m * n)), theirs(ours.size());
  const tideserve::engine::PackedWeights packed(w.data(), bias.data(), n, k);

  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(eng);
  const memory::dim runtime = DNNL_RUNTIME_DIM_VAL;
  memory::desc weights_md({k, n}, memory::data_type::f32, memory::format_tag::ba);
  memory::desc bias_md({1, n}, memory::data_type::f32, memory::format_tag::ab);
  dnnl::matmul::primitive_desc pd(
      dnnl::matmul::desc({{runtime, k}, memory::data_type::f32, {k, 1}}, weights_md, bias_md,
                         {{runtime, n}, memory::data_type::f32, {n, 1}}),
      eng);
  dnnl::matmul matmul(pd);
  memory src({{m, k}, memory::data_type::f32, {k, 1}}, eng, x.data());
  memory weights(weights_md, eng, w.data());
  memory bias_mem(bias_md, eng, bias.data());
  memory dst({{m, n}, memory::data_type::f32, {n, 1}}, eng, theirs.data());
  auto run_ours = [&] {
    tideserve::engine::packed_gemm(x.data(), m, packed, tideserve::engine::Epilogue::kNone,
                                   ours.data(), n);
  };
  auto run_theirs = [&] {
    matmul.execute(stream, {{DNNL_ARG_SRC, src},
                            {DNNL_ARG_WEIGHTS, weights},
                            {DNNL_ARG_BIAS, bias_mem},
                            {DNNL_ARG_DST, dst}});
    stream.wait();
  };
  run_ours();  // warm-up, and the outputs are compared
  run_theirs();
  double diff = 0;
  for (size_t i = 0; i < ours.size(); ++i)
    diff = std::max(diff, double{std::fabs(ours[i] - theirs[i])});
  std::vector<double> a, b, ratio;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    run_ours();
    const auto t1 = Clock::now();
    run_theirs();
    const auto t2 = Clock::now();
    a.push_back(std::chrono::duration<double>(t1 - t0).count());
    b.push_back(std::chrono::duration<double>(t2 - t1).count());
    ratio.push_back(b.back() / a.back());
  }
  const double gflop = 2.0 * m * k * n / 1e9;
  std::printf("| %lld | %lld | %lld | %d | %.1f | %.1f (%s) | %.2fx | %.1e |\n",
              static_cast<long long>(m), static_cast<long long>(k), static_cast<long long>(n),
              omp_get_max_threads(), gflop / median(a), gflop / median(b), pd.impl_info_str(),
              median(ratio), diff);
}

}  // namespace

int main(int argc, char** argv) {
  if (!tideserve::engine::packed_gemm_available()) {
    std::printf(
        "gemm_pair: the packed GEMM is not available on this CPU (it needs AVX2 and FMA)\n");
    return 0;
  }
  int reps = 30;
  std::vector<std::vector<long long>> shapes;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--reps" && i + 1 < argc) {
      reps = std::stoi(argv[++i]);
      continue;
    }
    long long m = 0, k = 0, n = 0;
    if (std::sscanf(arg.c_str(), "%lld,%lld,%lld", &m, &k, &n) != 3 || m <= 0 || k <= 0 || n <= 0) {
      std::fprintf(stderr, "gemm_pair: expected M,K,N, got %s\n", arg.c_str());
      return 2;
    }
    shapes.push_back({m, k, n});
  }
  if (shapes.empty()) {
    for (long long m : {16, 128, 1024}) {
      shapes.push_back({m, 768, 768});
      shapes.push_back({m, 768, 3072});
      shapes.push_back({m, 3072, 768});
    }
  }
  std::printf("fp32 FMA peak of one core: %.1f GFLOP/s\n\n", fma_peak_gflops());
  std::printf(
      "| M | K | N | threads | packed GFLOP/s | oneDNN GFLOP/s | oneDNN time / packed time "
      "(median of pairs) | max abs diff |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n");
  for (const auto& s : shapes) compare(s[0], s[1], s[2], reps);
  return 0;
}
