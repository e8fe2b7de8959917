// Why Linear uses one runtime-M matmul primitive: the token count M of a batch changes with
// every batch, so the alternatives are (a) one primitive per distinct M, paying primitive
// creation (and a JIT compile) the first time each M appears, or (b) one primitive created with
// M = DNNL_RUNTIME_DIM_VAL. This benchmark measures, at BERT-base shapes:
//   BM_create_fixed_m     creating a per-M primitive with oneDNN's primitive cache disabled
//   BM_execute_fixed_m    running a per-M primitive
//   BM_execute_runtime_m  running the runtime-M primitive (what the engine does), weights in the
//                         Hugging Face [out, in] buffer as they are in the file ("ba")
//   BM_execute_runtime_m_ab  the same with the weights reordered into "ab", the layout oneDNN
//                         reports as preferred for gemm:jit (what the engine did before it used
//                         the mapped weights in place)
// Run: build/release/bench/engine/matmul_bench  (compare the execute rows for each M).
#include <utility>

#include <benchmark/benchmark.h>
#include <omp.h>

#include <vector>

#include <oneapi/dnnl/dnnl.hpp>

namespace {

using dnnl::memory;
using Tag = memory::format_tag;
using DataType = memory::data_type;

constexpr int64_t kIn = 768;
constexpr int64_t kOut = 3072;

dnnl::primitive_attr gelu_attr() {
  dnnl::post_ops ops;
  ops.append_eltwise(1.f, dnnl::algorithm::eltwise_gelu_erf, 0.f, 0.f);
  dnnl::primitive_attr attr;
  attr.set_post_ops(ops);
  return attr;
}

dnnl::matmul::primitive_desc make_desc(const dnnl::engine& eng, memory::dim m,
                                       Tag weights_tag = Tag::ba) {
  memory::desc src({m, kIn}, DataType::f32, {kIn, 1});
  memory::desc weights({kIn, kOut}, DataType::f32, weights_tag);
  memory::desc bias({1, kOut}, DataType::f32, Tag::ab);
  memory::desc dst({m, kOut}, DataType::f32, {kOut, 1});
  return dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, weights, bias, dst), gelu_attr(),
                                      eng);
}

struct Buffers {
  explicit Buffers(int64_t m)
      : src(m * kIn, 0.5f), weights(kIn * kOut, 0.01f), bias(kOut, 0.1f), dst(m * kOut) {}
  std::vector<float> src, weights, bias, dst;
};

void run(benchmark::State& state, const dnnl::engine& eng, const dnnl::matmul& prim, int64_t m,
         Buffers& b, Tag weights_tag = Tag::ba) {
  dnnl::stream stream(eng);
  memory src({{m, kIn}, DataType::f32, Tag::ab}, eng, b.src.data());
  memory weights({{kIn, kOut}, DataType::f32, weights_tag}, eng, b.weights.data());
  memory bias({{1, kOut}, DataType::f32, Tag::ab}, eng, b.bias.data());
  memory dst({{m, kOut}, DataType::f32, Tag::ab}, eng, b.dst.data());
  for (auto _ : state) {
    prim.execute(stream, {{DNNL_ARG_SRC, src},
                          {DNNL_ARG_WEIGHTS, weights},
                          {DNNL_ARG_BIAS, bias},
                          {DNNL_ARG_DST, dst}});
    stream.wait();
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * m * kIn * kOut, benchmark::Counter::kIsIterationInvariantRate,
                         benchmark::Counter::kIs1000);
}

void BM_create_fixed_m(benchmark::State& state) {
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  const int old_capacity = dnnl::get_primitive_cache_capacity();
  dnnl::set_primitive_cache_capacity(0);
  for (auto _ : state) {
    dnnl::matmul prim(make_desc(eng, state.range(0)));
    benchmark::DoNotOptimize(prim);
  }
  dnnl::set_primitive_cache_capacity(old_capacity);
}

void BM_execute_fixed_m(benchmark::State& state) {
  const int64_t m = state.range(0);
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::matmul prim(make_desc(eng, m));
  Buffers b(m);
  run(state, eng, prim, m, b);
}

void BM_execute_runtime_m(benchmark::State& state) {
  const int64_t m = state.range(0);
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::matmul prim(make_desc(eng, DNNL_RUNTIME_DIM_VAL));
  Buffers b(m);
  run(state, eng, prim, m, b);
}

void BM_execute_runtime_m_ab(benchmark::State& state) {
  const int64_t m = state.range(0);
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::matmul prim(make_desc(eng, DNNL_RUNTIME_DIM_VAL, Tag::ab));
  Buffers b(m);
  run(state, eng, prim, m, b, Tag::ab);
}

BENCHMARK(BM_create_fixed_m)->Arg(128)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_execute_fixed_m)->Arg(16)->Arg(128)->Arg(1024)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_execute_runtime_m)->Arg(16)->Arg(128)->Arg(1024)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_execute_runtime_m_ab)->Arg(16)->Arg(128)->Arg(1024)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
