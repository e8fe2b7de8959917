// KServe Open Inference Protocol v2: /v2, /v2/health/{live,ready},
// /v2/models/{name}[/versions/{version}][/ready|/infer]. Every invalid request is 400 (an input
// over the length limit without truncation: 413).
//
// One BYTES input tensor of texts. An embedding model answers one FP32 output "embedding"
// [n, dimensions]; a classifier or reranker answers "scores" FP32 [n, num_labels] (activated
// unless parameters.raw_scores) and "label" BYTES [n], each input's best label.
#include <algorithm>

#include <fmt/format.h>

#include "tideserve/server/api.h"
#include "tideserve/server/json_writer.h"
#include "tideserve/util/version.h"

namespace tideserve::server {

namespace {

// The model and version the path names are the served ones; else the 404 says which exist.
Status check_model(const Api& api, const RouteParams& params) {
  const ApiOptions& options = api.options();
  if (!params.version.empty() && params.version != options.model_version) {
    return not_found(fmt::format("model '{}' has no version '{}'", params.name, params.version));
  }
  if (params.name != options.model_id) {
    return not_found(
        fmt::format("unknown model '{}'; this server serves '{}'", params.name, options.model_id));
  }
  return Status::ok();
}

struct InferRequest {
  runtime::EmbedRequest embed;
  bool raw_scores = false;
  std::string id;
};

// {"id"?, "inputs": [{"name", "shape": [n], "datatype": "BYTES", "data": [str]}],
//  "parameters"?: {"normalize": false, "truncate": false, "prompt_name", "prompt", "dimensions",
//                  "raw_scores": false}}
Status parse_infer(element body, int64_t max_inputs, InferRequest& request) {
  auto inputs_field = field(body, "inputs");
  if (!inputs_field || inputs_field->type() != element_type::ARRAY) {
    return invalid_argument("'inputs' must be a list of input tensors");
  }
  simdjson::dom::array tensors(*inputs_field);
  if (tensors.size() != 1)
    return invalid_argument("expected exactly one input tensor (BYTES texts)");
  element tensor = tensors.at(0).value_unsafe();
  if (tensor.type() != element_type::OBJECT)
    return invalid_argument("an input tensor must be an object");
  auto datatype = field(tensor, "datatype");
  std::string_view dt;
  if (!datatype || datatype->get_string().get(dt) != simdjson::SUCCESS || dt != "BYTES") {
    return invalid_argument("the input tensor's datatype must be \"BYTES\"");
  }
  auto shape = field(tensor, "shape");
  if (!shape || shape->type() != element_type::ARRAY) {
    return invalid_argument("the input tensor needs a shape");
  }
  int64_t count = 1;
  for (element d : simdjson::dom::array(*shape)) {
    if (d.type() != element_type::INT64 || int64_t(d) < 0 || int64_t(d) > 1000000) {
      return invalid_argument("shape entries must be non-negative integers");
    }
    count *= int64_t(d);
  }
  auto data = field(tensor, "data");
  if (!data || data->type() != element_type::ARRAY) {
    return invalid_argument("the input tensor needs data");
  }
  std::vector<runtime::EmbedInput>& inputs = request.embed.inputs;
  for (element item : simdjson::dom::array(*data)) {
    if (item.type() != element_type::STRING) return invalid_argument("BYTES data must be strings");
    inputs.push_back(runtime::EmbedInput::from_text(std::string(std::string_view(item))));
  }
  if (static_cast<int64_t>(inputs.size()) != count) {
    return invalid_argument(
        fmt::format("the shape holds {} elements but data has {}", count, inputs.size()));
  }
  if (inputs.empty()) return invalid_argument("the input tensor is empty");
  TS_RETURN_IF_ERROR(check_input_count(inputs.size(), max_inputs));
  if (auto params = field(body, "parameters"); params && params->type() == element_type::OBJECT) {
    TS_RETURN_IF_ERROR(read_bool(*params, "normalize", request.embed.normalize));
    TS_RETURN_IF_ERROR(read_bool(*params, "truncate", request.embed.truncation.enabled));
    TS_RETURN_IF_ERROR(read_bool(*params, "raw_scores", request.raw_scores));
    TS_RETURN_IF_ERROR(read_embed_options(*params, request.embed));
  }
  read_string_if_present(body, "id", request.id);
  return Status::ok();
}

// {"model_name", "model_version", "id"?, "outputs": [ -- the caller writes the outputs.
void begin_infer_answer(JsonWriter& w, const ApiOptions& options, const std::string& id) {
  w.begin_object().field("model_name", options.model_id);
  w.field("model_version", options.model_version);
  if (!id.empty()) w.field("id", id);
  w.key("outputs").begin_array();
}

}  // namespace

void kserve_server_metadata(Api& api, const CallPtr& call) {
  JsonWriter w;
  w.begin_object().field("name", "tideserve").field("version", kVersion);
  w.key("extensions").begin_array().end_array().end_object();
  api.reply_json(call, 200, std::move(w).take());
}

void kserve_live(Api& api, const CallPtr& call) {
  api.reply_json(call, 200, R"({"live":true})");
}

void kserve_ready(Api& api, const CallPtr& call) {
  if (api.ready()) return api.reply_json(call, 200, R"({"ready":true})");
  JsonWriter w;
  w.begin_object().field("ready", false).field("reason", api.not_ready_reason()).end_object();
  api.reply_json(call, 503, std::move(w).take());
}

void kserve_model_metadata(Api& api, const CallPtr& call) {
  if (Status st = check_model(api, call->params); !st.is_ok()) return api.reply_status(call, st);
  const runtime::EmbeddingService* service = api.service();
  const int64_t width = service != nullptr ? service->info().output_size : 0;
  const bool embedding =
      service == nullptr || service->info().kind == runtime::ModelKind::kEmbedding;
  JsonWriter w;
  w.begin_object().field("name", call->params.name);
  w.key("versions").begin_array().value(api.options().model_version).end_array();
  w.field("platform", "tideserve_bert");
  w.key("inputs").begin_array().begin_object().field("name", "text").field("datatype", "BYTES");
  w.key("shape").begin_array().value(-1).end_array().end_object().end_array();
  w.key("outputs").begin_array().begin_object().field("name", embedding ? "embedding" : "scores");
  w.field("datatype", "FP32").key("shape").begin_array().value(-1).value(width).end_array();
  w.end_object();
  if (!embedding) {
    w.begin_object().field("name", "label").field("datatype", "BYTES");
    w.key("shape").begin_array().value(-1).end_array().end_object();
  }
  w.end_array().end_object();
  api.reply_json(call, 200, std::move(w).take());
}

void kserve_model_ready(Api& api, const CallPtr& call) {
  if (Status st = check_model(api, call->params); !st.is_ok()) return api.reply_status(call, st);
  const bool ready = api.ready();
  JsonWriter w;
  w.begin_object().field("name", call->params.name).field("ready", ready).end_object();
  api.reply_json(call, ready ? 200 : 503, std::move(w).take());
}

void kserve_infer(Api& api, const CallPtr& call) {
  if (Status st = check_model(api, call->params); !st.is_ok()) return api.reply_status(call, st);
  InferRequest request;
  if (Status st = parse_infer(call->body, api.options().max_client_batch_size, request);
      !st.is_ok()) {
    return api.reply_status(call, st);
  }
  if (api.service()->info().kind == runtime::ModelKind::kEmbedding) {
    return api.embed(
        call, std::move(request.embed),
        [&api, id = std::move(request.id)](const CallPtr& c, runtime::EmbedResult&& r) {
          JsonWriter w;
          w.reserve(r.embeddings.size() * 12);
          begin_infer_answer(w, api.options(), id);
          w.begin_object().field("name", "embedding");
          w.field("datatype", "FP32").key("shape").begin_array();
          w.value(r.size()).value(r.hidden_size).end_array();
          w.key("data").floats(r.embeddings).end_object().end_array().end_object();
          api.reply_json(c, 200, std::move(w).take());
        });
  }
  runtime::ScoreRequest scores;
  scores.inputs = std::move(request.embed.inputs);
  scores.truncation = request.embed.truncation;
  scores.raw_scores = request.raw_scores;
  api.classify(call, std::move(scores),
               [&api, id = std::move(request.id)](const CallPtr& c, runtime::ScoreResult&& r) {
                 const std::vector<std::string>& labels = api.service()->info().labels;
                 JsonWriter w;
                 begin_infer_answer(w, api.options(), id);
                 w.begin_object().field("name", "scores").field("datatype", "FP32");
                 w.key("shape").begin_array().value(r.size()).value(r.num_labels).end_array();
                 w.key("data").floats(r.scores).end_object();
                 w.begin_object().field("name", "label").field("datatype", "BYTES");
                 w.key("shape").begin_array().value(r.size()).end_array();
                 w.key("data").begin_array();
                 for (size_t i = 0; i < r.size(); ++i) {
                   std::span<const float> row = r.row(i);
                   const auto best = std::max_element(row.begin(), row.end()) - row.begin();
                   w.value(labels[static_cast<size_t>(best)]);
                 }
                 w.end_array().end_object().end_array().end_object();
                 api.reply_json(c, 200, std::move(w).take());
               });
}

}  // namespace tideserve::server
