#include "tideserve/engine/bert_encoder.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include <fmt/format.h>

#include "tideserve/engine/ops.h"
#include "tideserve/util/cpus.h"

namespace tideserve::engine {

Result<std::unique_ptr<BertEncoder>> BertEncoder::create(const BertModel& model,
                                                         const EncoderOptions& options) {
  if (options.threads < 0) return invalid_argument("thread count must be >= 0");
  std::unique_ptr<BertEncoder> encoder(new BertEncoder());
  encoder->config_ = model.config();
  encoder->weights_ = &model.weights();
  encoder->threads_ = options.threads > 0 ? options.threads : usable_cpus();
  encoder->min_parallel_layer_flops_ = options.min_parallel_layer_flops;
  try {
    encoder->engine_ = dnnl::engine(dnnl::engine::kind::cpu, 0);
    encoder->stream_ = dnnl::stream(encoder->engine_);
  } catch (const dnnl::error& e) {
    return internal_error(std::string("oneDNN CPU engine unavailable: ") + e.what());
  }
  // Reorders run on OpenMP too: keep them on the engine's thread count.
  omp_set_num_threads(encoder->threads_);

  encoder->precision_ = options.precision;
  const BertConfig& c = encoder->config_;
  const int64_t h = c.hidden_size;
  const Epilogue gelu =
      c.hidden_act == Activation::kGeluErf ? Epilogue::kGeluErf : Epilogue::kGeluTanh;
  auto make = [&](const FloatTensor& weight, const FloatTensor& bias, Epilogue epilogue,
                  int64_t out_stride = 0) {
    auto linear =
        Linear::create(encoder->engine_, {.weight = weight.data,
                                          .bias = bias.data,
                                          .out_features = weight.dim(0),
                                          .in_features = weight.dim(1),
                                          .epilogue = epilogue,
                                          .precision = options.precision,
                                          .out_stride = out_stride,
                                          .allow_reference = options.allow_reference_kernels,
                                          .fp32_kernel = options.fp32_kernel});
    // A converted layer never reads the model's fp32 weights again: keep them out of RSS.
    if (linear.is_ok() && (*linear)->owned_weight_bytes() > 0) model.release_pages(weight);
    return linear;
  };
  for (const BertLayerWeights& w : model.weights().layers) {
    Layer layer;
    auto query = make(w.query_weight, w.query_bias, Epilogue::kNone, 3 * h);
    if (!query.is_ok()) return query.status();
    layer.query = std::move(query).value();
    auto key = make(w.key_weight, w.key_bias, Epilogue::kNone, 3 * h);
    if (!key.is_ok()) return key.status();
    layer.key = std::move(key).value();
    auto value = make(w.value_weight, w.value_bias, Epilogue::kNone, 3 * h);
    if (!value.is_ok()) return value.status();
    layer.value = std::move(value).value();
    auto attn_out = make(w.attention_output_weight, w.attention_output_bias, Epilogue::kResidual);
    if (!attn_out.is_ok()) return attn_out.status();
    layer.attn_out = std::move(attn_out).value();
    auto ffn_up = make(w.intermediate_weight, w.intermediate_bias, gelu);
    if (!ffn_up.is_ok()) return ffn_up.status();
    layer.ffn_up = std::move(ffn_up).value();
    auto ffn_down = make(w.output_weight, w.output_bias, Epilogue::kResidual);
    if (!ffn_down.is_ok()) return ffn_down.status();
    layer.ffn_down = std::move(ffn_down).value();
    layer.attn_norm_gamma = w.attention_norm_weight.data;
    layer.attn_norm_beta = w.attention_norm_bias.data;
    layer.out_norm_gamma = w.output_norm_weight.data;
    layer.out_norm_beta = w.output_norm_bias.data;
    encoder->layers_.push_back(std::move(layer));
  }
  encoder->scores_.resize(static_cast<size_t>(encoder->threads_));
  return encoder;
}

std::string BertEncoder::matmul_impl() const {
  std::vector<std::string> names;
  for (const Layer& layer : layers_) {
    for (const Linear* linear : {layer.query.get(), layer.key.get(), layer.value.get(),
                                 layer.attn_out.get(), layer.ffn_up.get(), layer.ffn_down.get()}) {
      if (std::find(names.begin(), names.end(), linear->impl_name()) == names.end()) {
        names.emplace_back(linear->impl_name());
      }
    }
  }
  std::string out;
  for (const std::string& name : names) out += (out.empty() ? "" : ",") + name;
  return out.empty() ? "none" : out;
}

size_t BertEncoder::owned_weight_bytes() const {
  size_t bytes = 0;
  for (const Layer& layer : layers_) {
    for (const Linear* linear : {layer.query.get(), layer.key.get(), layer.value.get(),
                                 layer.attn_out.get(), layer.ffn_up.get(), layer.ffn_down.get()}) {
      bytes += linear->owned_weight_bytes();
    }
  }
  return bytes;
}

Status BertEncoder::validate(const EncoderBatch& batch) const {
  const int64_t tokens = batch.num_tokens();
  if (batch.cu_seqlens.size() < 2) return invalid_argument("batch has no sequence");
  if (!batch.token_type_ids.empty() &&
      static_cast<int64_t>(batch.token_type_ids.size()) != tokens) {
    return invalid_argument(fmt::format("token_type_ids has {} entries for {} tokens",
                                        batch.token_type_ids.size(), tokens));
  }
  if (batch.cu_seqlens.front() != 0 || batch.cu_seqlens.back() != tokens) {
    return invalid_argument(
        fmt::format("cu_seqlens must run from 0 to the token count {}", tokens));
  }
  for (size_t s = 0; s + 1 < batch.cu_seqlens.size(); ++s) {
    const int64_t len = int64_t{batch.cu_seqlens[s + 1]} - batch.cu_seqlens[s];
    if (len <= 0) return invalid_argument(fmt::format("sequence {} is empty", s));
    if (len > config_.max_position_embeddings) {
      return out_of_range(fmt::format("sequence {} has {} tokens; the model takes at most {}", s,
                                      len, config_.max_position_embeddings));
    }
  }
  for (int64_t t = 0; t < tokens; ++t) {
    const int32_t id = batch.input_ids[t];
    if (id < 0 || id >= config_.vocab_size) {
      return out_of_range(
          fmt::format("token id {} is outside the vocabulary [0, {})", id, config_.vocab_size));
    }
    if (!batch.token_type_ids.empty()) {
      const int32_t type = batch.token_type_ids[t];
      if (type < 0 || type >= config_.type_vocab_size) {
        return out_of_range(
            fmt::format("token type id {} is outside [0, {})", type, config_.type_vocab_size));
      }
    }
  }
  return Status::ok();
}

void BertEncoder::embed(const EncoderBatch& batch, float* out) const {
  const int64_t h = config_.hidden_size;
  const BertWeights& w = *weights_;
  const int64_t num_sequences = batch.num_sequences();
  for (int64_t s = 0; s < num_sequences; ++s) {
    const int64_t begin = batch.cu_seqlens[s];
    const int64_t end = batch.cu_seqlens[s + 1];
#pragma omp parallel for num_threads(batch_threads_) schedule(static) if (end - begin > 64)
    for (int64_t t = begin; t < end; ++t) {
      const float* word = w.word_embeddings.data + int64_t{batch.input_ids[t]} * h;
      const float* position = w.position_embeddings.data + (t - begin) * h;
      const int64_t type = batch.token_type_ids.empty() ? 0 : batch.token_type_ids[t];
      const float* token_type = w.token_type_embeddings.data + type * h;
      float* y = out + t * h;
      for (int64_t c = 0; c < h; ++c) y[c] = word[c] + position[c] + token_type[c];
    }
  }
  layer_norm(out, w.embeddings_norm_weight.data, w.embeddings_norm_bias.data,
             static_cast<float>(config_.layer_norm_eps), batch.num_tokens(), h, out,
             batch_threads_);
}

void BertEncoder::attention(const EncoderBatch& batch, const float* qkv, float* context) {
  const int64_t h = config_.hidden_size;
  const int64_t heads = config_.num_attention_heads;
  const int64_t d = config_.head_size();
  const int64_t ld_qkv = 3 * h;
  const float scale = 1.f / std::sqrt(static_cast<float>(d));
  const int64_t num_sequences = batch.num_sequences();
  const int64_t work = num_sequences * heads;
#pragma omp parallel for num_threads(batch_threads_) schedule(dynamic, 1)
  for (int64_t item = 0; item < work; ++item) {
    const int64_t s = item / heads;
    const int64_t head = item % heads;
    const int64_t begin = batch.cu_seqlens[s];
    const int64_t len = int64_t{batch.cu_seqlens[s + 1]} - begin;
    std::vector<float>& scores = scores_[static_cast<size_t>(omp_get_thread_num())];
    if (static_cast<int64_t>(scores.size()) < len * len) scores.resize(len * len);
    const float* q = qkv + begin * ld_qkv + head * d;
    const float* k = q + h;
    const float* v = q + 2 * h;
    // scores[L, L] = Q K^T (scale applied inside the softmax)
    dnnl_sgemm('N', 'T', len, len, d, 1.f, q, ld_qkv, k, ld_qkv, 0.f, scores.data(), len);
    for (int64_t r = 0; r < len; ++r) softmax_row(scores.data() + r * len, len, scale);
    // context[L, d] = P V, written into this head's columns
    dnnl_sgemm('N', 'N', len, d, len, 1.f, scores.data(), len, v, ld_qkv, 0.f,
               context + begin * h + head * d, h);
  }
}

Status BertEncoder::forward(const EncoderBatch& batch, EncoderOutput& output, int num_layers) {
  TS_RETURN_IF_ERROR(validate(batch));
  const int64_t layer_count = static_cast<int64_t>(layers_.size());
  if (num_layers < 0) num_layers = static_cast<int>(layer_count);
  if (num_layers > layer_count) {
    return invalid_argument(
        fmt::format("asked for {} layers; the model has {}", num_layers, layer_count));
  }
  const int64_t tokens = batch.num_tokens();
  const int64_t h = config_.hidden_size;
  // A small batch runs on one thread: below the threshold a parallel region's fork and join
  // cost more than the split saves (the bundled tiny model's requests; never BERT-base's).
  const double layer_flops =
      2.0 * static_cast<double>(tokens) * h * (4.0 * h + 2.0 * config_.intermediate_size);
  batch_threads_ = layer_flops < min_parallel_layer_flops_ ? 1 : threads_;
  omp_set_num_threads(batch_threads_);
  const float eps = static_cast<float>(config_.layer_norm_eps);
  output.num_tokens = tokens;
  output.hidden_size = h;
  output.hidden.resize(static_cast<size_t>(tokens * h));
  qkv_.resize(static_cast<size_t>(tokens * 3 * h));
  context_.resize(static_cast<size_t>(tokens * h));
  intermediate_.resize(static_cast<size_t>(tokens * config_.intermediate_size));

  float* x = output.hidden.data();  // the residual stream, updated in place
  embed(batch, x);
  try {
    for (int i = 0; i < num_layers; ++i) {
      const Layer& layer = layers_[i];
      LinearScratch& scratch = linear_scratch_;
      layer.query->forward(stream_, x, tokens, qkv_.data(), scratch);
      layer.key->forward(stream_, x, tokens, qkv_.data() + h, scratch);
      layer.value->forward(stream_, x, tokens, qkv_.data() + 2 * h, scratch);
      attention(batch, qkv_.data(), context_.data());
      // x += context Wo^T + bo
      layer.attn_out->forward(stream_, context_.data(), tokens, x, scratch);
      layer_norm(x, layer.attn_norm_gamma, layer.attn_norm_beta, eps, tokens, h, x, batch_threads_);
      layer.ffn_up->forward(stream_, x, tokens, intermediate_.data(), scratch);
      // x += f W2^T + b2
      layer.ffn_down->forward(stream_, intermediate_.data(), tokens, x, scratch);
      layer_norm(x, layer.out_norm_gamma, layer.out_norm_beta, eps, tokens, h, x, batch_threads_);
    }
  } catch (const dnnl::error& e) {
    return internal_error(std::string("oneDNN matmul failed: ") + e.what());
  }
  return Status::ok();
}

}  // namespace tideserve::engine
