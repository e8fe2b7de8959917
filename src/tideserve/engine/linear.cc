#include "tideserve/engine/linear.h"

#include <cstring>
#include <string>

namespace tideserve::engine {

namespace {

using dnnl::memory;
using Tag = dnnl::memory::format_tag;
using DataType = dnnl::memory::data_type;

dnnl::primitive_attr make_attr(Epilogue epilogue) {
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
  return attr;
}

}  // namespace

Result<std::unique_ptr<Linear>> Linear::create(const dnnl::engine& engine, const float* weight,
                                               const float* bias, int64_t out_features,
                                               int64_t in_features, Epilogue epilogue) {
  if (out_features <= 0 || in_features <= 0) {
    return invalid_argument("linear layer with empty shape");
  }
  std::unique_ptr<Linear> layer(new Linear());
  layer->engine_ = engine;
  layer->out_features_ = out_features;
  layer->in_features_ = in_features;
  const memory::dim k = in_features;
  const memory::dim n = out_features;
  const memory::dim runtime_m = DNNL_RUNTIME_DIM_VAL;
  dnnl::primitive_attr attr = make_attr(epilogue);
  try {
    // Weights as the math sees them: [K, N]; the HF buffer [N, K] row-major is that matrix in
    // the "ba" layout. Ask oneDNN for its preferred layout on a representative shape, then
    // build the runtime-M primitive on that layout.
    memory::desc src_probe({128, k}, DataType::f32, Tag::ab);
    memory::desc dst_probe({128, n}, DataType::f32, Tag::ab);
    memory::desc weights_any({k, n}, DataType::f32, Tag::any);
    memory::desc bias_md({1, n}, DataType::f32, Tag::ab);
    dnnl::matmul::primitive_desc probe(
        dnnl::matmul::desc(src_probe, weights_any, bias_md, dst_probe), attr, engine);
    memory::desc weights_md = probe.weights_desc();

    memory::desc src_md({runtime_m, k}, DataType::f32, {k, 1});
    memory::desc dst_md({runtime_m, n}, DataType::f32, {n, 1});
    layer->primitive_desc_ = dnnl::matmul::primitive_desc(
        dnnl::matmul::desc(src_md, weights_md, bias_md, dst_md), attr, engine);
    layer->primitive_ = dnnl::matmul(layer->primitive_desc_);

    dnnl::stream stream(engine);
    memory source({{k, n}, DataType::f32, Tag::ba}, engine, const_cast<float*>(weight));
    layer->weights_ = memory(weights_md, engine);
    dnnl::reorder(source, layer->weights_).execute(stream, source, layer->weights_);
    layer->bias_ = memory(bias_md, engine);
    std::memcpy(layer->bias_.get_data_handle(), bias, static_cast<size_t>(n) * sizeof(float));
    stream.wait();
  } catch (const dnnl::error& e) {
    return internal_error(std::string("oneDNN could not create a matmul primitive: ") + e.what());
  }
  return layer;
}

void Linear::forward(dnnl::stream& stream, const float* in, int64_t rows, float* out) const {
  memory::desc src_md({rows, in_features_}, DataType::f32, {in_features_, 1});
  memory::desc dst_md({rows, out_features_}, DataType::f32, {out_features_, 1});
  memory src(src_md, engine_, const_cast<float*>(in));
  memory dst(dst_md, engine_, out);
  primitive_.execute(stream, {{DNNL_ARG_SRC, src},
                              {DNNL_ARG_WEIGHTS, weights_},
                              {DNNL_ARG_BIAS, bias_},
                              {DNNL_ARG_DST, dst}});
}

}  // namespace tideserve::engine
