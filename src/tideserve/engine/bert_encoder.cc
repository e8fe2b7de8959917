#include "tideserve/engine/bert_encoder.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include <fmt/format.h>

#include "tideserve/engine/ops.h"

namespace tideserve::engine {

namespace {

int default_threads() {
  int n = omp_get_num_procs();
  return n > 0 ? n : 1;
}

}  // namespace

Result<std::unique_ptr<BertEncoder>> BertEncoder::create(const BertModel& model,
                                                         const EncoderOptions& options) {
  if (options.threads < 0) return invalid_argument("thread count must be >= 0");
  std::unique_ptr<BertEncoder> encoder(new BertEncoder());
  encoder->config_ = model.config();
  encoder->weights_ = &model.weights();
  encoder->threads_ = options.threads > 0 ? options.threads : default_threads();
  try {
    encoder->engine_ = dnnl::engine(dnnl::engine::kind::cpu, 0);
    encoder->stream_ = dnnl::stream(encoder->engine_);
  } catch (const dnnl::error& e) {
    return internal_error(std::string("oneDNN CPU engine unavailable: ") + e.what());
  }
  // Reorders run on OpenMP too: keep them on the engine's thread count.
  omp_set_num_threads(encoder->threads_);

  const BertConfig& c = encoder->config_;
  const int64_t h = c.hidden_size;
  const Activation act = c.hidden_act;
  std::vector<float> fused_weight(static_cast<size_t>(3 * h * h));
  std::vector<float> fused_bias(static_cast<size_t>(3 * h));
  for (const BertLayerWeights& w : model.weights().layers) {
    Layer layer;
    // Fused QKV: rows [0,H) = query, [H,2H) = key, [2H,3H) = value.
    const FloatTensor* parts_w[3] = {&w.query_weight, &w.key_weight, &w.value_weight};
    const FloatTensor* parts_b[3] = {&w.query_bias, &w.key_bias, &w.value_bias};
    for (int p = 0; p < 3; ++p) {
      std::memcpy(fused_weight.data() + p * h * h, parts_w[p]->data, sizeof(float) * h * h);
      std::memcpy(fused_bias.data() + p * h, parts_b[p]->data, sizeof(float) * h);
    }
    auto qkv = Linear::create(encoder->engine_, fused_weight.data(), fused_bias.data(), 3 * h, h,
                              Epilogue::kNone);
    if (!qkv.is_ok()) return qkv.status();
    layer.qkv = std::move(qkv).value();
    auto attn_out = Linear::create(encoder->engine_, w.attention_output_weight.data,
                                   w.attention_output_bias.data, h, h, Epilogue::kResidual);
    if (!attn_out.is_ok()) return attn_out.status();
    layer.attn_out = std::move(attn_out).value();
    auto ffn_up = Linear::create(
        encoder->engine_, w.intermediate_weight.data, w.intermediate_bias.data, c.intermediate_size,
        h, act == Activation::kGeluErf ? Epilogue::kGeluErf : Epilogue::kGeluTanh);
    if (!ffn_up.is_ok()) return ffn_up.status();
    layer.ffn_up = std::move(ffn_up).value();
    auto ffn_down = Linear::create(encoder->engine_, w.output_weight.data, w.output_bias.data, h,
                                   c.intermediate_size, Epilogue::kResidual);
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

const char* BertEncoder::matmul_impl() const {
  return layers_.empty() ? "none" : layers_.front().qkv->impl_name();
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
#pragma omp parallel for num_threads(threads_) schedule(static) if (end - begin > 64)
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
             static_cast<float>(config_.layer_norm_eps), batch.num_tokens(), h, out, threads_);
}

void BertEncoder::attention(const EncoderBatch& batch, const float* qkv, float* context) {
  const int64_t h = config_.hidden_size;
  const int64_t heads = config_.num_attention_heads;
  const int64_t d = config_.head_size();
  const int64_t ld_qkv = 3 * h;
  const float scale = 1.f / std::sqrt(static_cast<float>(d));
  const int64_t num_sequences = batch.num_sequences();
  const int64_t work = num_sequences * heads;
#pragma omp parallel for num_threads(threads_) schedule(dynamic, 1)
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
  omp_set_num_threads(threads_);
  const int64_t tokens = batch.num_tokens();
  const int64_t h = config_.hidden_size;
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
      layer.qkv->forward(stream_, x, tokens, qkv_.data());
      stream_.wait();
      attention(batch, qkv_.data(), context_.data());
      layer.attn_out->forward(stream_, context_.data(), tokens, x);  // x += ctx Wo^T + bo
      stream_.wait();
      layer_norm(x, layer.attn_norm_gamma, layer.attn_norm_beta, eps, tokens, h, x, threads_);
      layer.ffn_up->forward(stream_, x, tokens, intermediate_.data());
      layer.ffn_down->forward(stream_, intermediate_.data(), tokens, x);  // x += f W2^T + b2
      stream_.wait();
      layer_norm(x, layer.out_norm_gamma, layer.out_norm_beta, eps, tokens, h, x, threads_);
    }
  } catch (const dnnl::error& e) {
    return internal_error(std::string("oneDNN matmul failed: ") + e.what());
  }
  return Status::ok();
}

}  // namespace tideserve::engine
