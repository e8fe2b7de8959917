// TEI-style routes: POST /embed, POST /tokenize, GET /info.
#include <fmt/format.h>

#include "tideserve/server/api.h"
#include "tideserve/server/json_writer.h"
#include "tideserve/util/version.h"

namespace tideserve::server {

namespace {

// {"inputs": str | [str], "normalize": true, "truncate": false, "truncation_direction": "Right",
//  "prompt_name"?, "prompt"?, "dimensions"?}
Status parse_embed(element body, int64_t max_inputs, runtime::EmbedRequest& request) {
  std::vector<std::string> texts;
  TS_RETURN_IF_ERROR(read_text_inputs(body, "inputs", max_inputs, texts));
  bool normalize = true, truncate = false;
  TS_RETURN_IF_ERROR(read_bool(body, "normalize", normalize));
  TS_RETURN_IF_ERROR(read_bool(body, "truncate", truncate));
  std::string_view direction = "Right";
  TS_RETURN_IF_ERROR(
      read_choice(body, "truncation_direction", {"Right", "Left", "right", "left"}, direction));
  for (std::string& text : texts) {
    request.inputs.push_back(runtime::EmbedInput::from_text(std::move(text)));
  }
  request.normalize = normalize;
  request.truncation.enabled = truncate;
  request.truncation.side = (direction == "Left" || direction == "left")
                                ? runtime::TruncationSide::kLeft
                                : runtime::TruncationSide::kRight;
  return read_embed_options(body, request);
}

}  // namespace

void tei_embed(Api& api, const CallPtr& call) {
  runtime::EmbedRequest request;
  if (Status st = parse_embed(call->body, api.options().max_client_batch_size, request);
      !st.is_ok()) {
    return api.reply_status(call, st);
  }
  api.embed(call, std::move(request), [&api](const CallPtr& c, runtime::EmbedResult&& r) {
    JsonWriter w;
    w.reserve(r.embeddings.size() * 12);
    w.begin_array();
    for (size_t i = 0; i < r.size(); ++i) w.floats(r.row(i));
    w.end_array();
    api.reply_json(c, 200, std::move(w).take());
  });
}

void tei_tokenize(Api& api, const CallPtr& call) {
  runtime::TokenizeRequest request;
  Status st =
      read_text_inputs(call->body, "inputs", api.options().max_client_batch_size, request.inputs);
  if (st.is_ok()) st = read_bool(call->body, "add_special_tokens", request.add_special_tokens);
  if (!st.is_ok()) return api.reply_status(call, st);
  request.max_tokens = api.options().max_tokenize_tokens;
  runtime::CancelToken cancel;
  api.cancel_on_disconnect(call, cancel);
  // The answer is built on the service's task pool, where the callback runs.
  api.service()->tokenize(
      std::move(request), cancel, [&api, call](Result<runtime::TokenizeResult> result) {
        if (!result.is_ok()) return api.reply_status(call, result.status());
        call->headers.emplace_back("x-tokenization-time", format_ms(result->tokenize_ms));
        JsonWriter w;
        w.begin_array();
        for (const text::Encoding& encoding : result->encodings) {
          w.begin_array();
          for (size_t t = 0; t < encoding.ids.size(); ++t) {
            const bool special = encoding.special_tokens_mask[t] != 0;
            w.begin_object().field("id", encoding.ids[t]).field("text", encoding.tokens[t]);
            w.field("special", special);
            if (special) {
              w.key("start").null().key("stop").null();
            } else {
              w.field("start", encoding.char_offsets[t].start)
                  .field("stop", encoding.char_offsets[t].end);
            }
            w.end_object();
          }
          w.end_array();
        }
        w.end_array();
        api.reply_json(call, 200, std::move(w).take());
      });
}

void tei_info(Api& api, const CallPtr& call) {
  const runtime::EmbeddingService* service = api.service();
  const runtime::ModelInfo info = service != nullptr ? service->info() : runtime::ModelInfo{};
  const runtime::ServiceOptions options =
      service != nullptr ? service->options() : runtime::ServiceOptions{};
  JsonWriter w;
  w.begin_object();
  w.field("model_id", api.options().model_id).field("model_version", api.options().model_version);
  w.field("model_dtype", info.dtype);
  // TEI's model_type: {"embedding": {"pooling"}} or {"classifier"|"reranker": {"id2label",
  // "label2id"}}.
  w.key("model_type").begin_object().key(model_kind_name(info.kind)).begin_object();
  if (info.kind == runtime::ModelKind::kEmbedding) {
    w.field("pooling", runtime::pooling_name(info.pooling));
    w.field("pooling_source", info.pooling_source);
    w.field("normalized", info.normalizes);
    w.key("prompts").begin_object();
    for (const auto& [name, text] : info.prompts) w.field(name, text);
    w.end_object();
    if (info.default_prompt_name.empty()) {
      w.key("default_prompt_name").null();
    } else {
      w.field("default_prompt_name", info.default_prompt_name);
    }
  } else {
    w.key("id2label").begin_object();
    for (size_t i = 0; i < info.labels.size(); ++i) w.field(std::to_string(i), info.labels[i]);
    w.end_object().key("label2id").begin_object();
    for (size_t i = 0; i < info.labels.size(); ++i) w.field(info.labels[i], i);
    w.end_object().field("problem_type", problem_type_name(info.problem_type));
  }
  w.end_object().end_object();
  w.field("hidden_size", info.hidden_size).field("output_size", info.output_size);
  w.field("max_input_length", info.max_input_length);
  w.field("max_concurrent_requests", options.scheduler.max_concurrent_requests);
  w.field("max_client_batch_size", api.options().max_client_batch_size);
  w.field("max_batch_tokens", options.scheduler.max_batch_tokens);
  w.field("max_batch_requests", options.scheduler.max_batch_requests);
  w.field("tokenization_workers", service != nullptr ? service->task_threads() : 0);
  w.field("ready", api.ready()).field("version", kVersion).end_object();
  api.reply_json(call, 200, std::move(w).take());
}

}  // namespace tideserve::server
