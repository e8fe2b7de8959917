// TEI-style routes: POST /embed, POST /tokenize, GET /info.
#include <algorithm>

#include <fmt/format.h>

#include "tideserve/server/api.h"
#include "tideserve/server/json_writer.h"
#include "tideserve/util/version.h"

namespace tideserve::server {

namespace {

// {"inputs": str | [str], "normalize": true, "truncate": false, "truncation_direction": "Right",
//  "prompt_name"?, "prompt"?, "dimensions"?, "chunking"?, "stream": false}
Status parse_embed(element body, int64_t max_inputs, runtime::EmbedRequest& request, bool& stream) {
  std::vector<std::string> texts;
  TS_RETURN_IF_ERROR(read_text_inputs(body, "inputs", max_inputs, texts));
  request.normalize = true;
  TS_RETURN_IF_ERROR(read_bool(body, "normalize", request.normalize));
  TS_RETURN_IF_ERROR(read_truncation(body, false, request.truncation));
  TS_RETURN_IF_ERROR(read_bool(body, "stream", stream));
  TS_RETURN_IF_ERROR(read_chunking(body, request));
  for (std::string& text : texts) {
    request.inputs.push_back(runtime::EmbedInput::from_text(std::move(text)));
  }
  return read_embed_options(body, request);
}

// Without chunking: [[floats] per input]. With it, per input {"chunks": [{"index", "input",
// "chunk", offsets, "tokens", "embedding"}], "embedding"?: the document's vector}.
void write_embed_answer(JsonWriter& w, const runtime::EmbedResult& r) {
  w.begin_array();
  if (r.chunks.empty()) {
    for (size_t i = 0; i < r.size(); ++i) w.floats(r.row(i));
    w.end_array();
    return;
  }
  for (size_t row = 0, input = 0; row < r.chunks.size(); ++input) {
    w.begin_object().key("chunks").begin_array();
    for (; row < r.chunks.size() && r.chunks[row].input == input; ++row) {
      w.begin_object().field("index", row);
      write_chunk_span(w, r.chunks[row]);
      w.field("tokens", r.token_counts[row]).key("embedding").floats(r.row(row)).end_object();
    }
    w.end_array();
    if (input < r.num_documents()) w.key("embedding").floats(r.document_row(input));
    w.end_object();
  }
  w.end_array();
}

}  // namespace

void tei_embed(Api& api, const CallPtr& call) {
  runtime::EmbedRequest request;
  bool stream = false;
  if (Status st = parse_embed(call->body, api.options().max_client_batch_size, request, stream);
      !st.is_ok()) {
    return api.reply_status(call, st);
  }
  if (!stream) {
    return api.embed(call, std::move(request), [&api](const CallPtr& c, runtime::EmbedResult&& r) {
      JsonWriter w;
      w.reserve(r.embeddings.size() * 12);
      write_embed_answer(w, r);
      api.reply_json(c, 200, std::move(w).take());
    });
  }
  // One "embedding" event per row (input, or chunk) as its batch completes; then a "document"
  // event per document (document_embedding), then "done" with usage and timings.
  api.embed_stream(
      call, std::move(request),
      [](const runtime::EmbeddingService::Row& row) {
        JsonWriter w;
        w.reserve(row.values.size() * 12 + 128);
        w.begin_object().field("index", row.index);
        if (row.chunk) write_chunk_span(w, *row.chunk);
        w.field("tokens", row.tokens).key("embedding").floats(row.values).end_object();
        return sse_event("embedding", std::move(w).take());
      },
      [](const runtime::EmbedResult& r) {
        std::string out;
        for (size_t d = 0; d < r.num_documents(); ++d) {
          JsonWriter w;
          w.begin_object().field("input", d).key("embedding").floats(r.document_row(d));
          out += sse_event("document", std::move(w.end_object()).take());
        }
        JsonWriter w;
        w.begin_object();
        write_usage(w, r.prompt_tokens);
        w.key("timings").begin_object().field("tokenize_ms", r.timings.tokenize_ms);
        w.field("queue_ms", r.timings.queue_ms).field("inference_ms", r.timings.inference_ms);
        w.end_object().field("rows", r.size()).end_object();
        return out + sse_event("done", std::move(w).take());
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
  call->service().tokenize(
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

// One model's info (the one `?model=` or x-model names, else the default model), and "models":
// every model serving with its versions.
void tei_info(Api& api, const CallPtr& call) {
  const runtime::ModelRepository* repository = api.repository();
  std::shared_ptr<runtime::EmbeddingService> service;
  std::vector<runtime::ServedModel> served;
  if (repository != nullptr) {
    auto [name, version] = Api::requested_model(*call);
    // ?model=NAME (among the query's parameters)
    for (const auto& [key, value] : Api::query_params(*call)) {
      if (key == "model" && value) name = std::string(*value);
    }
    auto found = repository->find(name, version);
    if (!found.is_ok() && !name.empty()) return api.reply_status(call, found.status());
    if (found.is_ok()) service = std::move(found).value();
    served = repository->served();
    if (!service && !served.empty()) {
      auto first = repository->find(served.front().name);
      if (first.is_ok()) service = std::move(first).value();
    }
  }
  const runtime::ModelInfo info = service != nullptr ? service->info() : runtime::ModelInfo{};
  const runtime::ServiceOptions options =
      service != nullptr ? service->options() : runtime::ServiceOptions{};
  JsonWriter w;
  w.begin_object();
  w.field("model_id", service != nullptr ? info.name : api.options().model_id);
  w.field("model_version", service != nullptr ? info.version : api.options().model_version);
  w.field("model_dtype", info.dtype).field("matmul", info.matmul);
  // TEI's model_type: {"embedding": {"pooling"}} or {"classifier"|"reranker": {"id2label",
  // "label2id"}}.
  w.key("model_type").begin_object().key(runtime::model_kind_name(info.kind)).begin_object();
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
    w.end_object().field("problem_type", runtime::problem_type_name(info.problem_type));
  }
  w.end_object().end_object();
  w.field("hidden_size", info.hidden_size).field("output_size", info.output_size);
  w.field("max_input_length", info.max_input_length);
  w.field("max_concurrent_requests", options.scheduler.max_concurrent_requests);
  w.field("max_client_batch_size", api.options().max_client_batch_size);
  w.field("max_batch_tokens", options.scheduler.max_batch_tokens);
  w.field("max_batch_requests", options.scheduler.max_batch_requests);
  w.field("tokenization_workers", service != nullptr ? service->task_threads() : 0);
  w.key("models").begin_array();
  for (const runtime::ServedModel& m : served) {
    w.begin_object().field("name", m.name).key("versions").begin_array();
    for (const std::string& v : m.versions) w.value(v);
    w.end_array().end_object();
  }
  w.end_array();
  w.field("ready", api.ready()).field("version", kVersion).end_object();
  api.reply_json(call, 200, std::move(w).take());
}

}  // namespace tideserve::server
