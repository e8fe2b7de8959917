#include "tideserve/server/api.h"

#include <algorithm>
#include <string_view>

#include <fmt/format.h>

#include "tideserve/util/clock.h"
#include "tideserve/util/cpus.h"
#include "tideserve/util/version.h"

namespace tideserve::server {

namespace http = boost::beast::http;

namespace {

// Constant-time comparison for the API key.
bool same_secret(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= x ^ y;
  }
  return diff == 0;
}

std::string server_header() {
  return std::string("tideserve/") + kVersion;
}

}  // namespace

std::string format_ms(double ms) {
  return fmt::format("{:.3f}", ms);
}

Api::Api(const ApiOptions& options, Metrics& metrics) : options_(options), metrics_(metrics) {
  max_inflight_bytes_ = options_.max_inflight_bytes;
  if (max_inflight_bytes_ <= 0) {
    const std::optional<int64_t> memory = cgroup_memory_limit();
    max_inflight_bytes_ = memory ? std::max<int64_t>(*memory / 4, 1 << 20) : int64_t{1} << 30;
  }
}

bool Api::hold_body(const CallPtr& call) {
  const auto bytes = static_cast<int64_t>(call->request.body().size());
  if (bytes > max_inflight_bytes_) {
    reply_error(call, 413,
                fmt::format("a request body of {} bytes is more than the {} bytes the server "
                            "holds in flight (--max-inflight-bytes)",
                            bytes, max_inflight_bytes_));
    return false;
  }
  const int64_t total = inflight_bytes_->fetch_add(bytes) + bytes;
  if (total > max_inflight_bytes_) {
    inflight_bytes_->fetch_sub(bytes);
    metrics_.add_rejected();
    reply_error(call, 429,
                fmt::format("server at capacity ({} bytes of requests in flight with this one, "
                            "limit {}); retry later",
                            total, max_inflight_bytes_));
    return false;
  }
  call->held = BytesHeld(inflight_bytes_, bytes);
  return true;
}

void Api::set_repository(runtime::ModelRepository* repository) {
  repository_.store(repository);
}

void Api::set_ready(bool ready, const std::string& reason) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    not_ready_reason_ = reason;
  }
  ready_.store(ready);
}

bool Api::ready() const {
  const runtime::ModelRepository* repository = repository_.load();
  if (options_.worker) {
    const JobsService* jobs = jobs_.load();
    if (jobs == nullptr || !jobs->consumer_connected()) return false;
  }
  return ready_.load() && repository != nullptr && repository->ready();
}

std::string Api::not_ready_reason() const {
  if (options_.worker && ready_.load()) {
    const JobsService* jobs = jobs_.load();
    if (jobs == nullptr || !jobs->consumer_connected()) return "the job worker cannot reach Redis";
  }
  if (ready_.load()) {
    std::string reason = "loading models";
    if (const runtime::ModelRepository* repository = repository_.load()) {
      if (repository->ready(&reason)) return "";
    }
    return reason;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  return not_ready_reason_;
}

std::pair<std::string, std::string> Api::requested_model(const Call& call) {
  if (call.family == Family::kKServe && !call.params.name.empty()) {
    return {call.params.name, call.params.version};
  }
  std::string named;
  // The body is parsed only for the routes that run on a model.
  if (call.route != nullptr && call.route->model && call.body.type() == element_type::OBJECT) {
    read_string_if_present(call.body, "model", named);
  }
  if (named.empty()) {
    const auto header = call.request["x-model"];
    named.assign(header.data(), header.size());
  }
  std::string version;
  if (const size_t colon = named.rfind(':');
      colon != std::string::npos && colon + 1 < named.size()) {
    const std::string_view tail = std::string_view(named).substr(colon + 1);
    if (std::all_of(tail.begin(), tail.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      version = std::string(tail);
      named.resize(colon);
    }
  }
  const auto header = call.request["x-model-version"];
  if (!header.empty()) version.assign(header.data(), header.size());
  return {named, version};
}

std::vector<Api::QueryParam> Api::query_params(const Call& call) {
  const auto target = call.request.target();
  const std::string_view url(target.data(), target.size());
  const size_t q = url.find('?');
  std::string_view query = q == std::string_view::npos ? std::string_view() : url.substr(q + 1);
  std::vector<QueryParam> params;
  while (!query.empty()) {
    const std::string_view param = query.substr(0, query.find('&'));
    const size_t eq = param.find('=');
    if (eq == std::string_view::npos) {
      params.emplace_back(param, std::nullopt);
    } else {
      params.emplace_back(param.substr(0, eq), param.substr(eq + 1));
    }
    query.remove_prefix(std::min(query.size(), param.size() + 1));
  }
  return params;
}

// ---------------------------------------------------------------------------------------------
// Replies

void Api::reply(const CallPtr& call, Response&& response) {
  response.set(http::field::server, server_header());
  for (auto& [name, value] : call->headers) response.set(name, value);
  const double total_ms = ms_since(call->start);
  response.set("x-total-time", format_ms(total_ms));
  observe(*call, static_cast<int>(response.result_int()), total_ms / 1000.0);
  call->responder->send(std::move(response));
}

void Api::reply_json(const CallPtr& call, int status, std::string body) {
  Response response{static_cast<http::status>(status), call->request.version()};
  response.set(http::field::content_type, "application/json");
  response.body() = std::move(body);
  reply(call, std::move(response));
}

void Api::reply_error(const CallPtr& call, int status, std::string_view message) {
  if (status == 429) call->headers.emplace_back("Retry-After", "1");
  if (status == 401) call->headers.emplace_back("WWW-Authenticate", "Bearer");
  reply_json(call, status, error_body(call->family, status, message));
}

void Api::reply_status(const CallPtr& call, const Status& status) {
  reply_error(call, http_status(status.code(), call->family), status.message());
}

Response Api::transport_error(const TransportError& error, unsigned version) const {
  Response response{static_cast<http::status>(error.status), version};
  response.set(http::field::content_type, "application/json");
  response.set(http::field::server, server_header());
  response.body() = error_body(Family::kPlain, error.status, error.message);
  metrics_.observe_request("other", error.status, 0.0);
  return response;
}

// ---------------------------------------------------------------------------------------------
// Dispatch

void Api::observe(const Call& call, int status, double seconds) {
  metrics_.observe_request(call.label, status, seconds);
  if (call.model) {
    const runtime::ModelInfo& info = call.model->info();
    metrics_.observe_model_request(info.name, info.version, status, seconds);
  }
}

bool Api::check_auth(const CallPtr& call, const std::string& key) {
  if (key.empty()) return true;
  const auto auth = call->request[http::field::authorization];
  std::string_view header(auth.data(), auth.size());
  constexpr std::string_view kBearer = "Bearer ";
  if (header.size() > kBearer.size() && header.substr(0, kBearer.size()) == kBearer &&
      same_secret(header.substr(kBearer.size()), key)) {
    return true;
  }
  reply_error(call, 401,
              header.empty() ? "missing Authorization: Bearer <key> header" : "invalid API key");
  return false;
}

void Api::handle(Request&& request, std::shared_ptr<Responder> responder) {
  auto call = std::make_shared<Call>();
  call->request = std::move(request);
  call->responder = std::move(responder);
  const auto target_view = call->request.target();
  const std::string_view raw_target(target_view.data(), target_view.size());
  const std::string_view path = raw_target.substr(0, raw_target.find('?'));
  const http::verb method = call->request.method();

  if (options_.worker && path != "/health" && path != "/v2/health/live" &&
      path != "/v2/health/ready" && path != "/metrics") {
    return reply_error(call, 404,
                       fmt::format("no route {}: a worker answers only /health, /v2/health/live, "
                                   "/v2/health/ready and /metrics (the API is `tideserve serve`)",
                                   path));
  }
  RouteTable::Match match = api_routes().match(method, path);
  if (match.route == nullptr) {
    if (match.allow.empty()) return reply_error(call, 404, fmt::format("no route {}", path));
    call->family = match.family;
    call->headers.emplace_back("Allow", match.allow);
    return reply_error(call, 405,
                       fmt::format("method {} not allowed on {}; use {}",
                                   std::string(http::to_string(method)), path, match.allow));
  }
  const Route& route = *match.route;
  call->route = &route;
  call->family = route.family;
  call->label = route.pattern;
  call->params = std::move(match.params);
  if (method == http::verb::post) {
    const auto ct = call->request[http::field::content_type];
    std::string_view content_type(ct.data(), ct.size());
    if (route.multipart) {
      if (content_type.substr(0, 19) != "multipart/form-data") {
        return reply_error(
            call, 415,
            fmt::format("unsupported media type '{}'; send multipart/form-data", content_type));
      }
    } else if (!content_type.empty() && content_type.substr(0, 16) != "application/json") {
      return reply_error(
          call, 415,
          fmt::format("unsupported media type '{}'; send application/json", content_type));
    }
  }
  if (route.auth == Auth::kAdmin && options_.admin_key.empty()) {
    return reply_error(call, 404,
                       fmt::format("no route {} (the repository routes need --admin-key)", path));
  }
  if (route.auth != Auth::kNone &&
      !check_auth(call, route.auth == Auth::kAdmin ? options_.admin_key : options_.api_key)) {
    return;
  }
  if (route.multipart && !hold_body(call)) return;
  if (route.model) {
    runtime::ModelRepository* models = repository();
    if (models == nullptr) return reply_error(call, 503, "model not ready: " + not_ready_reason());
    if (!hold_body(call)) return;
    bool malformed = false;
    if (Status st = parse_json_object(call->request.body(), call->body, malformed); !st.is_ok()) {
      return malformed ? reply_error(call, 400, st.message()) : reply_status(call, st);
    }
    const auto [name, version] = requested_model(*call);
    auto found = models->find(name, version);
    if (!found.is_ok()) {
      if (!models->ready() && found.status().code() != StatusCode::kInvalidArgument) {
        return reply_error(call, 503, "model not ready: " + not_ready_reason());
      }
      return reply_status(call, found.status());
    }
    call->model = std::move(found).value();
  }
  route.handler(*this, call);
}

// ---------------------------------------------------------------------------------------------
// The inference path every family shares

void Api::cancel_on_disconnect(const CallPtr& call, const runtime::CancelToken& token) {
  call->responder->on_cancel([token] { token.cancel(); });
}

void Api::count_failure(const Status& status, int64_t num_inputs) {
  if (status.code() == StatusCode::kResourceExhausted) metrics_.add_rejected();
  if (status.code() == StatusCode::kCancelled) metrics_.add_cancelled(num_inputs);
}

std::string sse_event(std::string_view name, std::string_view json) {
  std::string out;
  out.reserve(name.size() + json.size() + 16);
  out.append("event: ").append(name).append("\ndata: ").append(json).append("\n\n");
  return out;
}

void Api::embed_stream(const CallPtr& call, runtime::EmbedRequest&& request, RowEvent row,
                       StreamFinish finish) {
  runtime::CancelToken cancel;
  cancel_on_disconnect(call, cancel);
  const auto n = static_cast<int64_t>(request.inputs.size());
  // The service runs the row callbacks and the final one one after another: no lock needed.
  auto started = std::make_shared<bool>(false);
  auto start = [call, started] {
    if (*started) return;
    *started = true;
    Response head{http::status::ok, call->request.version()};
    head.set(http::field::server, server_header());
    head.set(http::field::content_type, "text/event-stream; charset=utf-8");
    head.set(http::field::cache_control, "no-cache");
    head.set("x-accel-buffering", "no");  // proxies: pass events on as they come
    for (auto& [name, value] : call->headers) head.set(name, value);
    call->responder->start_stream(std::move(head));
  };
  call->service().embed_stream(
      std::move(request), cancel,
      [call, start, row = std::move(row)](runtime::EmbeddingService::Row&& r) {
        start();
        call->responder->write_stream(row(r));
      },
      [this, call, n, started, start,
       finish = std::move(finish)](Result<runtime::EmbedResult> result) {
        if (!result.is_ok()) {
          const Status& st = result.status();
          count_failure(st, n);
          if (!*started) return reply_status(call, st);
          const int status = http_status(st.code(), call->family);
          call->responder->write_stream(
              sse_event("error", error_body(call->family, status, st.message())));
          call->responder->end_stream();
          observe(*call, status, ms_since(call->start) / 1000.0);
          return;
        }
        const runtime::EmbedResult& r = result.value();
        for (int64_t tokens : r.token_counts) metrics_.observe_input_length(tokens);
        metrics_.observe_timings(r.timings.queue_ms / 1000.0, r.timings.inference_ms / 1000.0);
        start();
        call->responder->write_stream(finish(r));
        call->responder->end_stream();
        observe(*call, 200, ms_since(call->start) / 1000.0);
      });
}

template <typename R>
std::function<void(Result<R>)> Api::answer(const CallPtr& call, int64_t num_inputs,
                                           std::function<void(const CallPtr&, R&&)> finish,
                                           FailureHook on_failure) {
  return [this, call, num_inputs, finish = std::move(finish),
          on_failure = std::move(on_failure)](Result<R> result) {
    if (!result.is_ok()) {
      const Status& st = result.status();
      count_failure(st, num_inputs);
      if (on_failure) on_failure(st);
      return reply_status(call, st);
    }
    R& r = result.value();
    for (int64_t tokens : r.token_counts) metrics_.observe_input_length(tokens);
    metrics_.observe_timings(r.timings.queue_ms / 1000.0, r.timings.inference_ms / 1000.0);
    call->headers.emplace_back("x-tokenization-time", format_ms(r.timings.tokenize_ms));
    call->headers.emplace_back("x-queue-time", format_ms(r.timings.queue_ms));
    call->headers.emplace_back("x-inference-time", format_ms(r.timings.inference_ms));
    call->headers.emplace_back("x-prompt-tokens", std::to_string(r.prompt_tokens));
    finish(call, std::move(r));
  };
}

void Api::embed(const CallPtr& call, runtime::EmbedRequest&& request, EmbedFinish finish,
                FailureHook on_failure) {
  runtime::CancelToken cancel;
  cancel_on_disconnect(call, cancel);
  const auto n = static_cast<int64_t>(request.inputs.size());
  call->service().embed(
      std::move(request), cancel,
      answer<runtime::EmbedResult>(call, n, std::move(finish), std::move(on_failure)));
}

void Api::classify(const CallPtr& call, runtime::ScoreRequest&& request, ScoreFinish finish) {
  runtime::CancelToken cancel;
  cancel_on_disconnect(call, cancel);
  const auto n = static_cast<int64_t>(request.inputs.size());
  call->service().classify(std::move(request), cancel,
                           answer<runtime::ScoreResult>(call, n, std::move(finish), nullptr));
}

void Api::rerank(const CallPtr& call, runtime::RerankRequest&& request, ScoreFinish finish) {
  runtime::CancelToken cancel;
  cancel_on_disconnect(call, cancel);
  const auto n = static_cast<int64_t>(request.documents.size());
  call->service().rerank(std::move(request), cancel,
                         answer<runtime::ScoreResult>(call, n, std::move(finish), nullptr));
}

Status read_truncation(element object, bool truncate_default, runtime::Truncation& truncation) {
  truncation.enabled = truncate_default;
  TS_RETURN_IF_ERROR(read_bool(object, "truncate", truncation.enabled));
  std::string_view direction = "Right";
  TS_RETURN_IF_ERROR(
      read_choice(object, "truncation_direction", {"Right", "Left", "right", "left"}, direction));
  truncation.side = (direction == "Left" || direction == "left") ? runtime::TruncationSide::kLeft
                                                                 : runtime::TruncationSide::kRight;
  return Status::ok();
}

void write_usage(JsonWriter& w, int64_t prompt_tokens) {
  w.key("usage").begin_object().field("prompt_tokens", prompt_tokens);
  w.field("total_tokens", prompt_tokens).end_object();
}

Status read_chunking(element object, runtime::EmbedRequest& request) {
  auto v = field(object, "chunking");
  if (!v || v->type() == element_type::NULL_VALUE) return Status::ok();
  if (v->type() != element_type::OBJECT) {
    return invalid_argument(std::string("'chunking' must be an object, not ") +
                            type_name(v->type()));
  }
  runtime::Chunking& c = request.chunking.emplace();
  for (auto [key, out] :
       {std::pair{"max_tokens", &c.max_tokens}, std::pair{"overlap", &c.overlap}}) {
    auto n = field(*v, key);
    if (!n || n->type() == element_type::NULL_VALUE) continue;
    if (n->type() != element_type::INT64 || int64_t(*n) < 0) {
      return invalid_argument(fmt::format("'chunking.{}' must be a non-negative integer", key));
    }
    *out = int64_t(*n);
  }
  TS_RETURN_IF_ERROR(read_bool(*v, "sentences", c.sentences));
  return read_bool(*v, "document_embedding", c.document_embedding);
}

void write_chunk_span(JsonWriter& w, const runtime::ChunkSpan& span) {
  w.field("input", span.input).field("chunk", span.chunk);
  w.field("char_start", span.char_start).field("char_end", span.char_end);
  w.field("byte_start", span.byte_start).field("byte_end", span.byte_end);
}

Status read_embed_options(element object, runtime::EmbedRequest& request) {
  for (auto [key, out] :
       {std::pair{"prompt_name", &request.prompt_name}, std::pair{"prompt", &request.prompt}}) {
    auto v = field(object, key);
    if (!v || v->type() == element_type::NULL_VALUE) continue;
    if (v->type() != element_type::STRING) {
      return invalid_argument(
          fmt::format("'{}' must be a string, not {}", key, type_name(v->type())));
    }
    *out = std::string(std::string_view(*v));
  }
  if (auto v = field(object, "dimensions"); v && v->type() != element_type::NULL_VALUE) {
    if (v->type() != element_type::INT64 || int64_t(*v) <= 0) {
      return invalid_argument("'dimensions' must be a positive integer");
    }
    request.dimensions = int64_t(*v);
  }
  return Status::ok();
}

// ---------------------------------------------------------------------------------------------
// /metrics

void metrics_route(Api& api, const CallPtr& call) {
  int64_t queued = 0, inflight = 0;
  if (const runtime::ModelRepository* models = api.repository()) {
    for (const auto& service : models->services()) {
      queued += service->queue_depth();
      inflight += service->inflight_inputs();
    }
  }
  api.metrics().set_queue_depth(queued);
  api.metrics().set_inflight(inflight);
  api.metrics().set_inflight_bytes(api.inflight_bytes());
  api.metrics().set_ready(api.ready());
  Response response{http::status::ok, call->request.version()};
  response.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
  response.body() = api.metrics().serialize();
  api.reply(call, std::move(response));
}

}  // namespace tideserve::server
