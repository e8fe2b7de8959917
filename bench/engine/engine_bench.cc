// tideserve's side of the engine benchmark (bench/engine/run.py drives it and the peers).
//
//   engine_bench --model DIR --threads N [--dtype fp32|bf16|int8]
//   [--fp32-kernel fastest|onednn|packed] --workload FILE --reps R --out FILE
//       runs every batch of the workload file once per repetition (after a warm-up run of the
//       first batch; the first repetition's output is the one compared),
//       prints one JSON line {"engine":"tideserve","threads":N,"times_ms":[...]} and writes the
//       CLS vector of every sequence's last hidden state to --out ([sequences, hidden] f32).
//       --fp32-kernel: the fp32 GEMM (default fastest: the one the server picks per shape).
//   engine_bench --model DIR --threads N --layers-at M --reps R
//       the per-layer figure: forward over M tokens (8 sequences) with all layers minus with no
//       layer, divided by the layer count, next to oneDNN's raw matmul at the layer's four GEMM
//       shapes (fixed M, weights in oneDNN's preferred layout, no epilogue), fp32, bf16 and int8.
//
// Workload file, int32 little-endian: batches, then per batch: sequences, their lengths, their
// token ids (concatenated). Token type ids are all 0.
#include <utility>  // must precede oneDNN headers under C++20 with g++ 12

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <oneapi/dnnl/dnnl.hpp>

#include "tideserve/engine/bert_encoder.h"
#include "tideserve/model/bert_model.h"
#include "tideserve/runtime/model_instance.h"

namespace {

using Clock = std::chrono::steady_clock;
using tideserve::engine::BertEncoder;
using tideserve::engine::EncoderOutput;
using tideserve::engine::FlatBatch;
using tideserve::engine::precision_name;

std::vector<FlatBatch> read_workload(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<int32_t> words;
  int32_t w = 0;
  while (in.read(reinterpret_cast<char*>(&w), sizeof(w))) words.push_back(w);
  size_t pos = 0;
  auto next = [&]() {
    if (pos >= words.size()) {
      fmt::print(stderr, "engine_bench: truncated workload file {}\n", path);
      std::exit(2);
    }
    return words[pos++];
  };
  std::vector<FlatBatch> batches(static_cast<size_t>(next()));
  for (FlatBatch& b : batches) {
    std::vector<int32_t> lengths(static_cast<size_t>(next()));
    for (int32_t& len : lengths) len = next();
    std::vector<int32_t> ids;
    for (int32_t len : lengths) {
      ids.clear();
      for (int32_t t = 0; t < len; ++t) ids.push_back(next());
      b.add(ids);
    }
  }
  return batches;
}

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

std::string json_list(const std::vector<double>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += fmt::format("{}{:.3f}", i ? "," : "", v[i]);
  return s + "]";
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

void check(const tideserve::Status& status) {
  if (!status.is_ok()) {
    fmt::print(stderr, "engine_bench: {}\n", status.message());
    std::exit(1);
  }
}

int run_workload(BertEncoder& encoder, const std::string& workload, int reps,
                 const std::string& out_path) {
  const std::vector<FlatBatch> batches = read_workload(workload);
  const int64_t h = encoder.config().hidden_size;
  EncoderOutput output;
  std::vector<float> cls;
  check(encoder.forward(batches.front().view(), output));  // warm-up: the first batch
  std::vector<double> times;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    for (const FlatBatch& b : batches) {
      check(encoder.forward(b.view(), output));
      for (int64_t s = 0; r == 0 && s < b.num_sequences(); ++s) {  // compared output
        const float* row = output.hidden.data() + int64_t{b.cu_seqlens()[s]} * h;
        cls.insert(cls.end(), row, row + h);
      }
    }
    times.push_back(ms_since(t0));
  }
  std::ofstream(out_path, std::ios::binary)
      .write(reinterpret_cast<const char*>(cls.data()),
             static_cast<std::streamsize>(cls.size() * sizeof(float)));
  fmt::print(
      "{{\"engine\":\"tideserve\",\"dtype\":\"{}\",\"threads\":{},\"matmul_impl\":\"{}\","
      "\"isa\":\"{}\",\"times_ms\":{}}}\n",
      precision_name(encoder.precision()), encoder.threads(), encoder.matmul_impl(),
      tideserve::engine::cpu_isa_name(), json_list(times));
  return 0;
}

// Raw oneDNN matmul [m, k] x [k, n] at a fixed m; returns the median ms (or -1 if oneDNN has no
// primitive for the data types) and the implementation name.
std::pair<double, std::string> raw_matmul(const dnnl::engine& eng, dnnl::stream& stream,
                                          dnnl::memory::data_type src_type,
                                          dnnl::memory::data_type wei_type, int64_t m, int64_t k,
                                          int64_t n, int reps) {
  using dnnl::memory;
  using Tag = memory::format_tag;
  try {
    memory::desc src_md({m, k}, src_type, Tag::ab);
    memory::desc wei_any({k, n}, wei_type, Tag::any);
    memory::desc dst_md({m, n}, memory::data_type::f32, Tag::ab);
    dnnl::primitive_attr attr;
    if (wei_type == memory::data_type::s8) attr.set_output_scales(0, {0.01f});
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src_md, wei_any, dst_md), attr, eng);
    dnnl::matmul prim(pd);
    memory src(pd.src_desc(), eng), wei(pd.weights_desc(), eng), dst(pd.dst_desc(), eng);
    std::memset(src.get_data_handle(), 1, pd.src_desc().get_size());
    std::memset(wei.get_data_handle(), 1, pd.weights_desc().get_size());
    std::vector<double> times;
    for (int r = 0; r <= reps; ++r) {
      const auto t0 = Clock::now();
      prim.execute(stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}});
      stream.wait();
      if (r > 0) times.push_back(ms_since(t0));  // the first run is a warm-up
    }
    return {median(times), pd.impl_info_str()};
  } catch (const dnnl::error& e) {
    return {-1.0, std::string("unsupported: ") + e.what()};
  }
}

int run_layers(BertEncoder& encoder, int64_t m, int reps) {
  const tideserve::BertConfig& c = encoder.config();
  const int64_t h = c.hidden_size, inter = c.intermediate_size;
  const int64_t seqs = 8, len = m / seqs;
  FlatBatch b;
  std::vector<int32_t> ids;
  for (int64_t s = 0; s < seqs; ++s) {
    ids.clear();
    for (int64_t t = 0; t < len; ++t)
      ids.push_back(static_cast<int32_t>((s * 131 + t * 7) % c.vocab_size));
    b.add(ids);
  }
  EncoderOutput output;
  auto time_forward = [&](int layers) {
    check(encoder.forward(b.view(), output, layers));
    std::vector<double> times;
    for (int r = 0; r < reps; ++r) {
      const auto t0 = Clock::now();
      check(encoder.forward(b.view(), output, layers));
      times.push_back(ms_since(t0));
    }
    return median(times);
  };
  const int layers = c.num_hidden_layers;
  const double layer_ms = (time_forward(layers) - time_forward(0)) / layers;
  const double gemm_flops = 2.0 * m * h * (3 * h + h + 2 * inter);
  const double attn_flops = 2.0 * 2.0 * seqs * len * len * h;  // QK^T and PV over all heads

  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(eng);
  omp_set_num_threads(encoder.threads());
  const int64_t shapes[4][2] = {{h, 3 * h}, {h, h}, {h, inter}, {inter, h}};
  using DT = dnnl::memory::data_type;
  struct Variant {
    const char* name;
    DT src, wei;
  } variants[3] = {
      {"f32", DT::f32, DT::f32}, {"bf16", DT::bf16, DT::bf16}, {"int8", DT::u8, DT::s8}};
  std::string raw_json;
  for (const Variant& v : variants) {
    double total_ms = 0;
    std::string impl;
    bool ok = true;
    for (const auto& shape : shapes) {
      auto [ms, name] = raw_matmul(eng, stream, v.src, v.wei, m, shape[0], shape[1], reps);
      if (ms < 0) ok = false;
      total_ms += ms;
      if (impl.empty()) impl = name;
    }
    std::replace(impl.begin(), impl.end(), '"', '\'');
    raw_json += fmt::format("{}\"{}\":{{\"ms\":{:.3f},\"gflops\":{:.1f},\"impl\":\"{}\"}}",
                            raw_json.empty() ? "" : ",", v.name, ok ? total_ms : -1.0,
                            ok ? gemm_flops / total_ms / 1e6 : 0.0, impl);
  }
  fmt::print(
      "{{\"engine\":\"tideserve\",\"dtype\":\"{}\",\"threads\":{},\"tokens\":{},"
      "\"layer_ms\":{:.3f},\"layer_gemm_gflop\":{:.3f},\"layer_attention_gflop\":{:.3f},"
      "\"raw\":{{{}}}}}\n",
      precision_name(encoder.precision()), encoder.threads(), m, layer_ms, gemm_flops / 1e9,
      attn_flops / 1e9, raw_json);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_dir, workload, out_path;
  int threads = 1, reps = 5;
  int64_t layers_at = 0;
  tideserve::engine::Precision precision = tideserve::engine::Precision::kF32;
  tideserve::engine::Fp32Kernel fp32_kernel = tideserve::engine::Fp32Kernel::kFastest;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--model")
      model_dir = value;
    else if (flag == "--threads")
      threads = std::stoi(value);
    else if (flag == "--dtype") {
      auto parsed = tideserve::engine::parse_precision(value);
      if (!parsed) {
        fmt::print(stderr, "engine_bench: unknown dtype {}\n", value);
        return 2;
      }
      precision = *parsed;
    } else if (flag == "--fp32-kernel") {
      if (value == "fastest") {
        fp32_kernel = tideserve::engine::Fp32Kernel::kFastest;
      } else if (value == "onednn") {
        fp32_kernel = tideserve::engine::Fp32Kernel::kOneDnn;
      } else if (value == "packed") {
        fp32_kernel = tideserve::engine::Fp32Kernel::kPacked;
      } else {
        fmt::print(stderr, "engine_bench: unknown fp32 kernel {}\n", value);
        return 2;
      }
    } else if (flag == "--workload")
      workload = value;
    else if (flag == "--reps")
      reps = std::stoi(value);
    else if (flag == "--out")
      out_path = value;
    else if (flag == "--layers-at")
      layers_at = std::stoll(value);
    else {
      fmt::print(stderr, "engine_bench: unknown flag {}\n", flag);
      return 2;
    }
  }
  // Loaded as `serve` loads it; the encoder is then timed alone (no request is in flight).
  tideserve::runtime::ModelOptions options;
  options.model_dir = model_dir;
  options.warm_up = false;
  options.engine = {.threads = threads, .precision = precision, .fp32_kernel = fp32_kernel};
  options.service.scheduler.max_batch_tokens = int64_t{1} << 20;
  auto instance = tideserve::runtime::ModelInstance::load(options);
  if (!instance.is_ok()) check(instance.status());
  BertEncoder& encoder = (*instance)->encoder();
  if (layers_at > 0) return run_layers(encoder, layers_at, reps);
  return run_workload(encoder, workload, reps, out_path);
}
