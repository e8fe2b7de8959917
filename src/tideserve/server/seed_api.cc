// The original FastAPI service's contract, unchanged: GET /health, POST /predict.
#include <algorithm>

#include <fmt/format.h>

#include "tideserve/server/api.h"
#include "tideserve/server/json_writer.h"
#include "tideserve/util/clock.h"
#include "tideserve/util/log.h"

namespace tideserve::server {

void seed_health(Api& api, const CallPtr& call) {
  JsonWriter w;
  w.begin_object();
  const bool ready = api.ready();
  if (ready) {
    w.field("status", "healthy");
  } else {
    w.field("status", "unhealthy").field("reason", api.not_ready_reason());
  }
  std::string version = api.options().model_version;
  if (const runtime::ModelRepository* repository = api.repository()) {
    if (auto model = repository->find(""); model.is_ok()) version = (*model)->info().version;
  }
  w.field("model_version", version).end_object();
  api.reply_json(call, ready ? 200 : 503, std::move(w).take());
}

namespace {

// {"text": str, "max_length": int = 128}: the seed's request model.
Status parse_predict(element body, int64_t max_input_length, runtime::EmbedRequest& request) {
  auto text = field(body, "text");
  if (!text) return invalid_argument("missing field 'text'");
  if (text->type() != element_type::STRING) {
    return invalid_argument(std::string("'text' must be a string, not ") + type_name(text->type()));
  }
  // The seed's default, within this server's limit.
  int64_t max_length = std::min<int64_t>(128, max_input_length);
  if (auto v = field(body, "max_length"); v && v->type() != element_type::NULL_VALUE) {
    if (v->type() != element_type::INT64) {
      return invalid_argument(v->type() == element_type::UINT64
                                  ? "'max_length' is too large"
                                  : std::string("'max_length' must be an integer, not ") +
                                        type_name(v->type()));
    }
    max_length = int64_t(*v);
    if (max_length < 2 || max_length > max_input_length) {
      return invalid_argument(fmt::format("'max_length' must be between 2 and {}, got {}",
                                          max_input_length, max_length));
    }
  }
  request.inputs.push_back(runtime::EmbedInput::from_text(std::string(std::string_view(*text))));
  // The seed's tokenizer call truncates; its answer is not normalized. It pools as the model
  // directory declares: a plain BERT directory declares nothing, so CLS, the seed's answer.
  request.truncation = {.enabled = true, .max_length = max_length};
  request.normalize = false;
  return Status::ok();
}

}  // namespace

void seed_predict(Api& api, const CallPtr& call) {
  runtime::EmbedRequest request;
  auto log_failure = [](const Status& st) {
    log_event(LogLevel::kWarning, "prediction_failed", {{"error", st.message()}});
  };
  if (Status st = parse_predict(call->body, call->service().info().max_input_length, request);
      !st.is_ok()) {
    return api.reply_status(call, st);
  }
  const size_t text_length = request.inputs[0].text.size();
  const std::string version = call->service().info().version;
  api.embed(
      call, std::move(request),
      [&api, version, text_length](const CallPtr& c, runtime::EmbedResult&& r) {
        const double latency_ms = ms_since(c->start);
        JsonWriter w;
        w.begin_object();
        w.field("prediction", python_nested_list(r.embeddings));
        w.key("embedding").floats(r.embeddings);
        w.key("latency_ms").raw(format_ms(latency_ms));
        w.field("model_version", version).end_object();
        log_event(
            LogLevel::kDebug, "prediction_made",
            {{"text_length", static_cast<long long>(text_length)}, {"latency_ms", latency_ms}});
        api.reply_json(c, 200, std::move(w).take());
      },
      log_failure);
}

}  // namespace tideserve::server
