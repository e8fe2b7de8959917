#include "tideserve/engine/linear.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>

#include <fmt/format.h>

#include "tideserve/engine/ops.h"

namespace tideserve::engine {

namespace {

using dnnl::memory;
using Tag = dnnl::memory::format_tag;
using DataType = dnnl::memory::data_type;
using Isa = dnnl::cpu_isa;

dnnl::primitive_attr make_attr(Epilogue epilogue, Precision precision) {
  dnnl::post_ops ops;
  switch (epilogue) {
    case Epilogue::kNone:
      break;
    case Epilogue::kGeluErf:
      ops.append_eltwise(1.f, dnnl::algorithm::eltwise_gelu_erf, 0.f, 0.f);
      break;
    case Epilogue::kGeluTanh:
      ops.append_eltwise(1.f, dnnl::algorithm::eltwise_gelu_tanh, 0.f, 0.f);
      break;
    case Epilogue::kResidual:
      ops.append_sum(1.f);
      break;
  }
  dnnl::primitive_attr attr;
  attr.set_post_ops(ops);
  if (precision == Precision::kInt8) {
    // dst = scale[n] * (sum_k (x_q - zero_point) w_q + bias[n]), then the post-ops; both the
    // scales (activation scale x weight row scale) and the zero point change with every call.
    attr.set_output_scales(1 << 1, {DNNL_RUNTIME_F32_VAL});
    attr.set_zero_points(DNNL_ARG_SRC, 0, {DNNL_RUNTIME_S32_VAL});
  }
  return attr;
}

// The GEMM's input types: activations and weights (accumulation and output are fp32).
struct DataTypes {
  DataType source;
  DataType weights;
};

DataTypes data_types(Precision precision) {
  switch (precision) {
    case Precision::kBf16:
      return {DataType::bf16, DataType::bf16};
    case Precision::kInt8:
      return {DataType::u8, DataType::s8};
    case Precision::kF32:
      break;
  }
  return {DataType::f32, DataType::f32};
}

bool has_vnni(Isa isa) {
  return isa == Isa::avx2_vnni || isa == Isa::avx512_core_vnni || isa == Isa::avx512_core_bf16 ||
         isa == Isa::avx512_core_amx;
}

}  // namespace

int int8_weight_limit() {
  return has_vnni(dnnl::get_effective_cpu_isa()) ? 127 : 63;
}

namespace {

bool is_reference(std::string_view impl) {
  return impl.rfind("ref", 0) == 0;
}

// The measured choice between weight layouts, per shape: every layer of a model shares a few
// shapes, so each is timed once per process.
struct LayoutKey {
  Precision precision;
  int64_t n, k, stride;
  Epilogue epilogue;
  bool operator<(const LayoutKey& o) const {
    return std::tie(precision, n, k, stride, epilogue) <
           std::tie(o.precision, o.n, o.k, o.stride, o.epilogue);
  }
};
std::mutex layout_mutex;
std::map<LayoutKey, size_t> layout_choice;  // guarded by layout_mutex: index into the candidates

}  // namespace

Result<std::unique_ptr<Linear>> Linear::create(const dnnl::engine& engine, const LinearSpec& spec) {
  const int64_t n = spec.out_features;
  const int64_t k = spec.in_features;
  if (n <= 0 || k <= 0) return invalid_argument("linear layer with empty shape");
  if (spec.weight == nullptr || spec.bias == nullptr) {
    return invalid_argument("linear layer without weight or bias");
  }
  const int64_t out_stride = spec.out_stride > 0 ? spec.out_stride : n;
  if (out_stride < n) return invalid_argument("linear output stride below its width");
  const Precision precision = spec.precision;
  const DataType src_type = data_types(precision).source;
  const DataType wei_type = data_types(precision).weights;
  const memory::dim runtime_m = DNNL_RUNTIME_DIM_VAL;
  dnnl::primitive_attr attr = make_attr(spec.epilogue, precision);
  memory::desc bias_md({1, n}, DataType::f32, Tag::ab);
  memory::desc src_md({runtime_m, k}, src_type, {k, 1});
  memory::desc dst_md({runtime_m, n}, DataType::f32, {out_stride, 1});
  // The weights as the math sees them are [K, N]; the Hugging Face buffer [N, K] row-major is
  // that matrix in the "ba" layout.
  memory::desc hf_md({k, n}, wei_type, Tag::ba);
  try {
    // The layouts to choose from: fp32 weights are used in place (ba). Converted weights are
    // ours: ba as well, or the blocked layout oneDNN prefers for this shape at a fixed M. With a
    // runtime M, oneDNN 2.6 has no optimized kernel for blocked bf16 / int8 weights on AVX-512
    // and AMX (it falls back to ref:any, thousands of times slower), while ba runs gemm:jit;
    // elsewhere the blocked one may be faster. Reference kernels are never candidates.
    std::vector<memory::desc> layouts;
    if (precision != Precision::kF32 || spec.fp32_kernel != Fp32Kernel::kPacked) {
      layouts.push_back(hf_md);
    }
    if (precision != Precision::kF32) {
      memory::desc src_probe({128, k}, src_type, Tag::ab);
      memory::desc dst_probe({128, n}, DataType::f32, Tag::ab);
      memory::desc weights_any({k, n}, wei_type, Tag::any);
      try {
        dnnl::matmul::primitive_desc probe(
            dnnl::matmul::desc(src_probe, weights_any, bias_md, dst_probe), attr, engine);
        if (probe.weights_desc() != hf_md) layouts.push_back(probe.weights_desc());
      } catch (const dnnl::error&) {
        // No fixed-M kernel either: only ba is tried.
      }
    }
    std::vector<std::unique_ptr<Linear>> candidates;
    std::vector<std::string> refused;
    for (const memory::desc& weights_md : layouts) {
      dnnl::matmul::primitive_desc pd;
      try {
        pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(src_md, weights_md, bias_md, dst_md),
                                          attr, engine);
      } catch (const dnnl::error& e) {
        if (e.status != dnnl_unimplemented) throw;
        continue;
      }
      if (is_reference(pd.impl_info_str()) && !spec.allow_reference) {
        refused.emplace_back(pd.impl_info_str());
        continue;
      }
      std::unique_ptr<Linear> layer(new Linear());
      layer->primitive_desc_ = pd;
      layer->weights_md_ = weights_md;
      candidates.push_back(std::move(layer));
    }
    if (precision == Precision::kF32 && spec.fp32_kernel != Fp32Kernel::kOneDnn) {
      if (packed_gemm_available()) {
        candidates.emplace_back(new Linear());  // no oneDNN descriptor: the packed GEMM's
      } else if (spec.fp32_kernel == Fp32Kernel::kPacked) {
        return Status(
            StatusCode::kFailedPrecondition,
            "tideserve's packed fp32 GEMM is not available on this CPU (it needs AVX2 and "
            "FMA): use oneDNN's");
      }
    }
    if (candidates.empty()) {
      const Isa isa = dnnl::get_effective_cpu_isa();
      const bool avx512 = isa == Isa::avx512_core || isa == Isa::avx512_core_vnni ||
                          isa == Isa::avx512_core_bf16 || isa == Isa::avx512_core_amx;
      if (precision == Precision::kBf16 && (refused.empty() || !avx512)) {
        return Status(StatusCode::kFailedPrecondition,
                      fmt::format("bfloat16 matmul is not available on this CPU (oneDNN "
                                  "dispatches {}; bf16 needs avx512_core or newer): use --dtype "
                                  "fp32 or int8",
                                  cpu_isa_name()));
      }
      if (refused.empty()) {
        return internal_error(fmt::format("oneDNN has no {} matmul for [M, {}] x [{}, {}] here",
                                          precision_name(precision), k, k, n));
      }
      return Status(
          StatusCode::kFailedPrecondition,
          fmt::format("oneDNN offers only its reference kernel ({}) for a {} matmul "
                      "[M, {}] x [{}, {}] on this CPU ({}), thousands of times slower: "
                      "use --dtype fp32 (or --allow-reference-kernels to debug)",
                      refused.front(), precision_name(precision), k, k, n, cpu_isa_name()));
    }
    // A shape timed before keeps its choice: only that candidate gets its weights.
    const LayoutKey key{precision, n, k, out_stride, spec.epilogue};
    if (candidates.size() > 1) {
      std::lock_guard<std::mutex> lock(layout_mutex);
      if (auto it = layout_choice.find(key); it != layout_choice.end()) {
        std::unique_ptr<Linear> chosen = std::move(candidates[it->second]);
        candidates.clear();
        candidates.push_back(std::move(chosen));
      }
    }
    // The weights, converted once, then into each candidate's layout.
    std::vector<uint8_t> converted;
    std::vector<float> row_scales;
    if (precision == Precision::kBf16) {
      converted.resize(static_cast<size_t>(n * k) * 2);
      convert_to_bf16(spec.weight, n * k, reinterpret_cast<uint16_t*>(converted.data()));
    } else if (precision == Precision::kInt8) {
      converted.resize(static_cast<size_t>(n * k));
      const float limit = static_cast<float>(int8_weight_limit());
      row_scales.resize(static_cast<size_t>(n));
      auto* q = reinterpret_cast<int8_t*>(converted.data());
#pragma omp parallel for schedule(static)
      for (int64_t row = 0; row < n; ++row) {
        const float* w = spec.weight + row * k;
        float amax = 0.f;
        for (int64_t c = 0; c < k; ++c) amax = std::max(amax, std::fabs(w[c]));
        const float scale = amax > 0.f && std::isfinite(amax) ? amax / limit : 1.f;
        row_scales[row] = scale;
        const float inv = 1.f / scale;
        for (int64_t c = 0; c < k; ++c) {
          const float v = std::clamp(std::nearbyint(w[c] * inv), -limit, limit);
          q[row * k + c] = static_cast<int8_t>(v);
        }
      }
    }
    dnnl::stream stream(engine);
    for (std::unique_ptr<Linear>& layer : candidates) {
      layer->engine_ = engine;
      layer->precision_ = precision;
      layer->out_features_ = n;
      layer->in_features_ = k;
      layer->out_stride_ = out_stride;
      layer->epilogue_ = spec.epilogue;
      if (!layer->primitive_desc_) {
        layer->packed_ = std::make_unique<PackedWeights>(spec.weight, spec.bias, n, k);
        continue;
      }
      layer->primitive_ = dnnl::matmul(layer->primitive_desc_);
      layer->bias_ = memory(bias_md, engine);
      std::memcpy(layer->bias_.get_data_handle(), spec.bias,
                  static_cast<size_t>(n) * sizeof(float));
      if (precision == Precision::kF32) {
        layer->weights_ = memory(hf_md, engine, const_cast<float*>(spec.weight));
        continue;
      }
      if (precision == Precision::kInt8) {
        layer->weight_scale_ = row_scales;
        layer->bias_values_.assign(spec.bias, spec.bias + n);
      }
      memory source(hf_md, engine, converted.data());
      layer->weights_ = memory(layer->weights_md_, engine);
      dnnl::reorder(source, layer->weights_).execute(stream, source, layer->weights_);
      stream.wait();
      layer->owns_weights_ = true;
    }
    if (candidates.size() == 1) return std::move(candidates.front());

    // Several: the faster at a 128-token batch, measured once per shape. Each candidate is
    // timed against the best so far in interleaved pairs, and the median of the pairs' time
    // ratios decides, so a slow patch of a shared machine hits both sides of a pair.
    std::lock_guard<std::mutex> lock(layout_mutex);
    auto it = layout_choice.find(key);
    if (it == layout_choice.end()) {
      constexpr int64_t kRows = 128;
      constexpr int kPairs = 5;
      std::vector<float> in(static_cast<size_t>(kRows * k), 0.25f);
      std::vector<float> out(static_cast<size_t>(kRows * out_stride), 0.f);
      LinearScratch scratch;
      auto time_ms = [&](const Linear& layer) {
        const auto start = std::chrono::steady_clock::now();
        layer.forward(stream, in.data(), kRows, out.data(), scratch);
        return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
            .count();
      };
      size_t best = 0;
      time_ms(*candidates[0]);  // warm-up
      for (size_t c = 1; c < candidates.size(); ++c) {
        time_ms(*candidates[c]);
        std::vector<double> ratios;  // candidate's time / best's time
        for (int pair = 0; pair < kPairs; ++pair) {
          const double best_ms = time_ms(*candidates[best]);
          ratios.push_back(time_ms(*candidates[c]) / best_ms);
        }
        std::sort(ratios.begin(), ratios.end());
        if (ratios[kPairs / 2] < 1.0) best = c;
      }
      it = layout_choice.emplace(key, best).first;
    }
    return std::move(candidates[it->second]);
  } catch (const dnnl::error& e) {
    return internal_error(fmt::format("oneDNN could not create a {} matmul primitive: {}",
                                      precision_name(precision), e.what()));
  }
}

size_t Linear::owned_weight_bytes() const {
  if (packed_) return packed_->bytes();
  return owns_weights_ ? weights_.get_desc().get_size() : 0;
}

void Linear::forward(dnnl::stream& stream, const float* in, int64_t rows, float* out,
                     LinearScratch& scratch) const {
  if (packed_) {
    packed_gemm(in, rows, *packed_, epilogue_, out, out_stride_);
    return;
  }
  const int64_t k = in_features_;
  const int64_t n = out_features_;
  const DataType src_type = data_types(precision_).source;
  memory::desc src_md({rows, k}, src_type, {k, 1});
  memory::desc dst_md({rows, n}, DataType::f32, {out_stride_, 1});
  memory dst(dst_md, engine_, out);
  const size_t count = static_cast<size_t>(rows * k);
  switch (precision_) {
    case Precision::kF32: {
      memory src(src_md, engine_, const_cast<float*>(in));
      primitive_.execute(stream, {{DNNL_ARG_SRC, src},
                                  {DNNL_ARG_WEIGHTS, weights_},
                                  {DNNL_ARG_BIAS, bias_},
                                  {DNNL_ARG_DST, dst}});
      break;
    }
    case Precision::kBf16: {
      scratch.source.resize(count * 2);
      convert_to_bf16(in, rows * k, reinterpret_cast<uint16_t*>(scratch.source.data()));
      memory src(src_md, engine_, scratch.source.data());
      primitive_.execute(stream, {{DNNL_ARG_SRC, src},
                                  {DNNL_ARG_WEIGHTS, weights_},
                                  {DNNL_ARG_BIAS, bias_},
                                  {DNNL_ARG_DST, dst}});
      break;
    }
    case Precision::kInt8: {
      scratch.source.resize(count);
      QuantParams q = quantize_u8(in, rows * k, scratch.source.data());
      scratch.scales.resize(static_cast<size_t>(n));
      scratch.bias.resize(static_cast<size_t>(n));
      for (int64_t c = 0; c < n; ++c) {
        scratch.scales[c] = q.scale * weight_scale_[c];
        scratch.bias[c] = bias_values_[c] / scratch.scales[c];
      }
      memory src(src_md, engine_, scratch.source.data());
      memory scales({{n}, DataType::f32, Tag::a}, engine_, scratch.scales.data());
      memory bias({{1, n}, DataType::f32, Tag::ab}, engine_, scratch.bias.data());
      memory zero_point({{1}, DataType::s32, Tag::a}, engine_, &q.zero_point);
      primitive_.execute(stream, {{DNNL_ARG_SRC, src},
                                  {DNNL_ARG_WEIGHTS, weights_},
                                  {DNNL_ARG_BIAS, bias},
                                  {DNNL_ARG_DST, dst},
                                  {DNNL_ARG_ATTR_OUTPUT_SCALES, scales},
                                  {DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC, zero_point}});
      break;
    }
  }
  stream.wait();
}

}  // namespace tideserve::engine
