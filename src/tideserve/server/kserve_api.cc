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

// The model version the path names, from the repository (404 unknown, 503 not serving yet).
Result<std::shared_ptr<runtime::EmbeddingService>> find_model(const Api& api,
                                                              const RouteParams& params) {
  const runtime::ModelRepository* repository = api.repository();
  if (repository == nullptr) return unavailable("model not ready: " + api.not_ready_reason());
  return repository->find(params.name, params.version);
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
void begin_infer_answer(JsonWriter& w, const runtime::ModelInfo& info, const std::string& id) {
  w.begin_object().field("model_name", info.name);
  w.field("model_version", info.version);
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
  auto found = find_model(api, call->params);
  if (!found.is_ok()) return api.reply_status(call, found.status());
  const runtime::ModelInfo& info = (*found)->info();
  const bool embedding = info.kind == runtime::ModelKind::kEmbedding;
  std::vector<std::string> versions;
  for (const runtime::ServedModel& m : api.repository()->served()) {
    if (m.name == info.name) versions = m.versions;
  }
  JsonWriter w;
  w.begin_object().field("name", call->params.name);
  w.key("versions").begin_array();
  for (const std::string& v : versions) w.value(v);
  w.end_array();
  w.field("platform", "tideserve_bert");
  w.key("inputs").begin_array().begin_object().field("name", "text").field("datatype", "BYTES");
  w.key("shape").begin_array().value(-1).end_array().end_object().end_array();
  w.key("outputs").begin_array().begin_object().field("name", embedding ? "embedding" : "scores");
  w.field("datatype", "FP32").key("shape").begin_array().value(-1).value(info.output_size);
  w.end_array().end_object();
  if (!embedding) {
    w.begin_object().field("name", "label").field("datatype", "BYTES");
    w.key("shape").begin_array().value(-1).end_array().end_object();
  }
  w.end_array().end_object();
  api.reply_json(call, 200, std::move(w).take());
}

// 200 when the version (else the model's newest) serves; 503 with the reason while it does not;
// 404 for a model or version the repository does not have.
void kserve_model_ready(Api& api, const CallPtr& call) {
  auto found = find_model(api, call->params);
  if (!found.is_ok() && found.status().code() != StatusCode::kUnavailable) {
    return api.reply_status(call, found.status());
  }
  JsonWriter w;
  w.begin_object().field("name", call->params.name).field("ready", found.is_ok());
  if (!found.is_ok()) w.field("reason", found.status().message());
  w.end_object();
  api.reply_json(call, found.is_ok() ? 200 : 503, std::move(w).take());
}

void kserve_infer(Api& api, const CallPtr& call) {
  InferRequest request;
  if (Status st = parse_infer(call->body, api.options().max_client_batch_size, request);
      !st.is_ok()) {
    return api.reply_status(call, st);
  }
  if (call->service().info().kind == runtime::ModelKind::kEmbedding) {
    return api.embed(
        call, std::move(request.embed),
        [&api, id = std::move(request.id)](const CallPtr& c, runtime::EmbedResult&& r) {
          JsonWriter w;
          w.reserve(r.embeddings.size() * 12);
          begin_infer_answer(w, c->service().info(), id);
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
                 const std::vector<std::string>& labels = c->service().info().labels;
                 JsonWriter w;
                 begin_infer_answer(w, c->service().info(), id);
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
