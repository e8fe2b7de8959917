#include "tideserve/server/api.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <optional>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <simdjson.h>
#include <boost/asio/post.hpp>

#include "tideserve/server/json_writer.h"
#include "tideserve/util/log.h"

namespace tideserve::server {

namespace http = boost::beast::http;
using Clock = std::chrono::steady_clock;
using simdjson::dom::element;
using simdjson::dom::element_type;

namespace {

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

std::string ms_header(double ms) {
  return fmt::format("{:.3f}", ms);
}

// A client error found while reading a request.
struct BadRequest {
  int status = 422;
  std::string message;
};

std::optional<element> field(element object, std::string_view key) {
  element value;
  if (object[key].get(value) != simdjson::SUCCESS) return std::nullopt;
  return value;
}

const char* type_name(element_type t) {
  switch (t) {
    case element_type::ARRAY:
      return "an array";
    case element_type::OBJECT:
      return "an object";
    case element_type::INT64:
    case element_type::UINT64:
      return "an integer";
    case element_type::DOUBLE:
      return "a number";
    case element_type::STRING:
      return "a string";
    case element_type::BOOL:
      return "a boolean";
    case element_type::NULL_VALUE:
      return "null";
  }
  return "a value";
}

std::optional<BadRequest> read_bool(element object, std::string_view key, bool& out) {
  auto v = field(object, key);
  if (!v || v->type() == element_type::NULL_VALUE) return std::nullopt;
  if (v->type() != element_type::BOOL) {
    return BadRequest{422,
                      fmt::format("'{}' must be a boolean, not {}", key, type_name(v->type()))};
  }
  out = bool(*v);
  return std::nullopt;
}

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

}  // namespace

struct Api::Call {
  Request request;
  std::shared_ptr<Responder> responder;
  Clock::time_point start = Clock::now();
  std::string route = "other";                               // route template for metrics
  std::vector<std::pair<std::string, std::string>> headers;  // extra response headers
  // Parsed body (valid while the handler runs synchronously on the IO thread).
  element body;
};

struct Api::Input {
  std::string_view text;
  std::vector<int32_t> ids;
  bool is_ids = false;
};

Api::Api(boost::asio::io_context& io, const ApiOptions& options, Metrics& metrics)
    : io_(io), options_(options), metrics_(metrics) {}

void Api::set_model(const ModelHandle& model) {
  std::lock_guard<std::mutex> lock(mutex_);
  model_ = model;
  has_model_.store(true);
}

void Api::set_ready(bool ready, const std::string& reason) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    not_ready_reason_ = reason;
  }
  ready_.store(ready);
  metrics_.set_ready(ready);
}

std::string Api::not_ready_reason() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return not_ready_reason_;
}

ModelHandle Api::model_snapshot() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return model_;
}

bool Api::check_model(const std::shared_ptr<Call>& call, Family family, ModelHandle& model) const {
  if (!has_model_.load()) {
    reply_error(call, family, 503, "model not ready: " + not_ready_reason(), "Unhealthy");
    return false;
  }
  model = model_snapshot();
  return true;
}

// ---------------------------------------------------------------------------------------------
// Responses

void Api::reply(const std::shared_ptr<Call>& call, Response&& response) const {
  response.set(http::field::server, "tideserve/" + options_.version);
  for (auto& [name, value] : call->headers) response.set(name, value);
  const double total_ms = ms_since(call->start);
  response.set("x-total-time", ms_header(total_ms));
  metrics_.observe_request(call->route, static_cast<int>(response.result_int()), total_ms / 1000.0);
  call->responder->send(std::move(response));
}

void Api::reply_json(const std::shared_ptr<Call>& call, int status, std::string body) const {
  Response response{static_cast<http::status>(status), call->request.version()};
  response.set(http::field::content_type, "application/json");
  response.body() = std::move(body);
  reply(call, std::move(response));
}

namespace {

// {"error": message}: KServe's error body, and ours where no API family applies.
std::string plain_error_body(std::string_view message) {
  std::string body = "{\"error\":";
  append_json_string(body, message);
  body += "}";
  return body;
}

}  // namespace

void Api::reply_error(const std::shared_ptr<Call>& call, Family family, int status,
                      const std::string& message, const std::string& type) const {
  std::string body;
  switch (family) {
    case Family::kSeed:
      body = "{\"detail\":";
      append_json_string(body, message);
      body += "}";
      break;
    case Family::kTei: {
      std::string t = type;
      if (t.empty()) t = status == 429 ? "Overloaded" : status >= 500 ? "Backend" : "Validation";
      body = "{\"error\":";
      append_json_string(body, message);
      body += ",\"error_type\":";
      append_json_string(body, t);
      body += "}";
      break;
    }
    case Family::kOpenAi: {
      const char* t = status == 429   ? "rate_limit_error"
                      : status == 401 ? "authentication_error"
                      : status == 404 ? "not_found_error"
                      : status >= 500 ? "server_error"
                                      : "invalid_request_error";
      body = "{\"error\":{\"message\":";
      append_json_string(body, message);
      body += ",\"type\":";
      append_json_string(body, t);
      body += ",\"param\":null,\"code\":null}}";
      break;
    }
    case Family::kKServe:
    case Family::kPlain:
      body = plain_error_body(message);
      break;
  }
  if (status == 429) call->headers.emplace_back("Retry-After", "1");
  if (status == 401) call->headers.emplace_back("WWW-Authenticate", "Bearer");
  reply_json(call, status, std::move(body));
}

Response Api::transport_error(const TransportError& error, unsigned version) const {
  Response response{static_cast<http::status>(error.status), version};
  response.set(http::field::content_type, "application/json");
  response.set(http::field::server, "tideserve/" + options_.version);
  response.body() = plain_error_body(error.message);
  metrics_.observe_request("other", error.status, 0.0);
  return response;
}

bool Api::check_auth(const std::shared_ptr<Call>& call, Family family) const {
  if (options_.api_key.empty()) return true;
  const auto auth = call->request[http::field::authorization];
  std::string_view header(auth.data(), auth.size());
  constexpr std::string_view kBearer = "Bearer ";
  if (header.size() > kBearer.size() && header.substr(0, kBearer.size()) == kBearer &&
      same_secret(header.substr(kBearer.size()), options_.api_key)) {
    return true;
  }
  reply_error(call, family, 401,
              header.empty() ? "missing Authorization: Bearer <key> header" : "invalid API key");
  return false;
}

// ---------------------------------------------------------------------------------------------
// Routing

void Api::handle(Request&& request, std::shared_ptr<Responder> responder) {
  auto call = std::make_shared<Call>();
  call->request = std::move(request);
  call->responder = std::move(responder);
  route(call);
}

void Api::route(const std::shared_ptr<Call>& call) {
  const auto target_view = call->request.target();
  const std::string_view raw_target(target_view.data(), target_view.size());
  const std::string target(raw_target.substr(0, raw_target.find('?')));
  const http::verb method = call->request.method();

  struct Route {
    std::string_view path;
    http::verb method;
    Family family;
  };
  static const Route kRoutes[] = {
      {"/health", http::verb::get, Family::kSeed},
      {"/predict", http::verb::post, Family::kSeed},
      {"/embed", http::verb::post, Family::kTei},
      {"/tokenize", http::verb::post, Family::kTei},
      {"/info", http::verb::get, Family::kTei},
      {"/v1/embeddings", http::verb::post, Family::kOpenAi},
      {"/v1/models", http::verb::get, Family::kOpenAi},
      {"/metrics", http::verb::get, Family::kPlain},
      {"/v2", http::verb::get, Family::kKServe},
      {"/v2/health/live", http::verb::get, Family::kKServe},
      {"/v2/health/ready", http::verb::get, Family::kKServe},
  };
  const Route* found = nullptr;
  for (const Route& r : kRoutes) {
    if (r.path == target) found = &r;
  }
  const bool kserve_model = target.rfind("/v2/models/", 0) == 0;
  if (found == nullptr && !kserve_model) {
    call->route = "other";
    return reply_error(call, Family::kPlain, 404, "no route " + target);
  }
  Family family = found != nullptr ? found->family : Family::kKServe;
  if (found != nullptr) {
    call->route = std::string(found->path);
    const bool head_ok = found->method == http::verb::get && method == http::verb::head;
    if (method != found->method && !head_ok) {
      call->headers.emplace_back("Allow", std::string(http::to_string(found->method)));
      return reply_error(
          call, family, 405,
          fmt::format("method {} not allowed on {}; use {}", std::string(http::to_string(method)),
                      target, std::string(http::to_string(found->method))));
    }
  }
  if (method == http::verb::post) {
    const auto ct = call->request[http::field::content_type];
    std::string_view content_type(ct.data(), ct.size());
    if (!content_type.empty() && content_type.substr(0, 16) != "application/json") {
      return reply_error(
          call, family, 415,
          "unsupported media type '" + std::string(content_type) + "'; send application/json");
    }
  }
  if (found == nullptr) return kserve(call, target);
  const std::string_view path = found->path;
  if (path == "/health") return health(call);
  if (path == "/metrics") return metrics(call);
  if (path == "/info") return info(call);
  if (path == "/v2" || path == "/v2/health/live" || path == "/v2/health/ready") {
    return kserve(call, target);
  }
  if (!check_auth(call, family)) return;
  if (path == "/predict") return predict(call);
  if (path == "/embed") return embed(call);
  if (path == "/tokenize") return tokenize(call);
  if (path == "/v1/embeddings") return openai_embeddings(call);
  if (path == "/v1/models") return openai_models(call);
}

// ---------------------------------------------------------------------------------------------
// Shared request machinery

namespace {

thread_local simdjson::dom::parser json_parser;

// Parses the body into `out`; on failure returns the client error.
std::optional<BadRequest> parse_body(const std::string& body, element& out) {
  if (body.empty()) return BadRequest{400, "empty request body; send a JSON object"};
  simdjson::padded_string padded(body);
  auto error = json_parser.parse(padded).get(out);
  if (error == simdjson::UTF8_ERROR) return BadRequest{400, "request body is not valid UTF-8"};
  if (error == simdjson::NUMBER_ERROR) {
    return BadRequest{400, "malformed JSON: a number is malformed or beyond 64 bits"};
  }
  if (error) {
    return BadRequest{400, std::string("malformed JSON: ") + simdjson::error_message(error)};
  }
  if (out.type() != element_type::OBJECT) {
    return BadRequest{
        422, std::string("the request body must be a JSON object, not ") + type_name(out.type())};
  }
  return std::nullopt;
}

}  // namespace

bool Api::begin_inference(const std::shared_ptr<Call>& call, Family family, int bad_json_status,
                          ModelHandle& model, simdjson::dom::element& body) const {
  if (!check_model(call, family, model)) return false;
  if (auto bad = parse_body(call->request.body(), body)) {
    reply_error(call, family, bad_json_status > 0 ? bad_json_status : bad->status, bad->message);
    return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------

void Api::health(const std::shared_ptr<Call>& call) const {
  std::string body;
  if (ready_.load()) {
    body = "{\"status\":\"healthy\",\"model_version\":";
    append_json_string(body, options_.model_version);
    body += "}";
    return reply_json(call, 200, std::move(body));
  }
  body = "{\"status\":\"unhealthy\",\"reason\":";
  append_json_string(body, not_ready_reason());
  body += ",\"model_version\":";
  append_json_string(body, options_.model_version);
  body += "}";
  reply_json(call, 503, std::move(body));
}

void Api::metrics(const std::shared_ptr<Call>& call) const {
  const ModelHandle model = model_snapshot();
  if (model.scheduler != nullptr) {
    metrics_.set_queue_depth(model.scheduler->queue_depth());
    metrics_.set_inflight(model.scheduler->inflight_inputs());
  }
  Response response{http::status::ok, call->request.version()};
  response.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
  response.body() = metrics_.serialize();
  reply(call, std::move(response));
}

void Api::info(const std::shared_ptr<Call>& call) const {
  const ModelHandle model = model_snapshot();
  std::string body = "{\"model_id\":";
  append_json_string(body, options_.model_id);
  body += ",\"model_version\":";
  append_json_string(body, options_.model_version);
  body += ",\"model_dtype\":";
  append_json_string(body, model.dtype);
  body += fmt::format(
      ",\"model_type\":{{\"embedding\":{{\"pooling\":\"{}\"}}}},\"hidden_size\":{}"
      ",\"max_input_length\":{},\"max_concurrent_requests\":{},\"max_client_batch_size\":{}"
      ",\"max_batch_tokens\":{},\"max_batch_requests\":{},\"ready\":{},\"version\":",
      engine::pooling_name(options_.pooling), model.hidden_size, options_.max_input_length,
      options_.max_concurrent_requests, options_.max_client_batch_size, options_.max_batch_tokens,
      options_.max_batch_requests, ready_.load() ? "true" : "false");
  append_json_string(body, options_.version);
  body += "}";
  reply_json(call, 200, std::move(body));
}

// ---------------------------------------------------------------------------------------------
// Inference pipeline shared by the families

void Api::reply_status(const std::shared_ptr<Call>& call, Family family,
                       const Status& status) const {
  int code = 500;
  switch (status.code()) {
    case StatusCode::kOutOfRange:
      code = 413;
      break;
    case StatusCode::kInvalidArgument:
      code = 422;
      break;
    case StatusCode::kNotFound:
      code = 404;
      break;
    case StatusCode::kUnavailable:
      code = 503;
      break;
    default:
      code = 500;
  }
  // OpenAI answers every invalid request with 400.
  if (family == Family::kOpenAi && (code == 413 || code == 422)) code = 400;
  reply_error(call, family, code, status.message());
}

Status Api::encode_inputs(const ModelHandle& model, const std::vector<Input>& inputs, bool truncate,
                          text::TruncationSide side, int64_t max_length,
                          std::vector<runtime::Sequence>& sequences) const {
  sequences.clear();
  sequences.resize(inputs.size());
  text::EncodeOptions options;
  options.truncation = true;
  options.truncation_side = side;
  options.max_length = truncate ? static_cast<size_t>(max_length) : 0;
  text::Encoding encoding;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Input& input = inputs[i];
    runtime::Sequence& seq = sequences[i];
    if (input.is_ids) {
      if (input.ids.empty()) return invalid_argument(fmt::format("input {} is empty", i));
      for (int32_t id : input.ids) {
        if (id < 0 || id >= model.vocab_size) {
          return invalid_argument(
              fmt::format("input {} has token id {} outside the vocabulary "
                          "[0, {})",
                          i, id, model.vocab_size));
        }
      }
      seq.ids = input.ids;
      if (static_cast<int64_t>(seq.ids.size()) > max_length) {
        if (!truncate) {
          return out_of_range(fmt::format("input {} has {} tokens; the maximum is {}", i,
                                          seq.ids.size(), max_length));
        }
        if (side == text::TruncationSide::kLeft) {
          seq.ids.erase(seq.ids.begin(), seq.ids.end() - max_length);
        } else {
          seq.ids.resize(static_cast<size_t>(max_length));
        }
      }
    } else {
      if (input.text.empty())
        return invalid_argument(fmt::format("input {} is an empty string", i));
      Status st = model.tokenizer->encode_into(input.text, options, &encoding);
      if (!st.is_ok()) {
        return invalid_argument(fmt::format("input {}: {}", i, st.message()));
      }
      if (static_cast<int64_t>(encoding.ids.size()) > max_length) {
        return out_of_range(
            fmt::format("input {} has {} tokens; the maximum is {} (ask for truncation to cut it)",
                        i, encoding.ids.size(), max_length));
      }
      seq.ids = encoding.ids;
      seq.type_ids = encoding.type_ids;
    }
  }
  return Status::ok();
}

void Api::run_job(const std::shared_ptr<Call>& call, Family family, const ModelHandle& model,
                  std::vector<runtime::Sequence>&& sequences, engine::Pooling pooling,
                  bool normalize, double tokenize_ms, Finish finish) {
  auto job = std::make_shared<runtime::Job>();
  for (const runtime::Sequence& seq : sequences) {
    metrics_.observe_input_length(static_cast<int64_t>(seq.ids.size()));
  }
  const auto num_inputs = static_cast<int64_t>(sequences.size());
  job->inputs = std::move(sequences);
  job->pooling = pooling;
  job->normalize = normalize;
  std::weak_ptr<runtime::Job> weak_job = job;
  job->on_done = [this, call, family, tokenize_ms, weak_job, num_inputs,
                  finish = std::move(finish)](runtime::JobResult&& result) mutable {
    auto job_alive = weak_job.lock();
    const bool cancelled = job_alive != nullptr && job_alive->cancelled.load();
    boost::asio::post(io_, [this, call, family, tokenize_ms, cancelled, num_inputs,
                            finish = std::move(finish), result = std::move(result)]() mutable {
      if (!result.status.is_ok()) {
        if (cancelled) {
          metrics_.add_cancelled(num_inputs);
          return reply_error(call, family, 499, "client closed the request");
        }
        return reply_status(call, family, result.status);
      }
      metrics_.observe_timings(result.timings.queue_ms / 1000.0,
                               result.timings.inference_ms / 1000.0);
      call->headers.emplace_back("x-tokenization-time", ms_header(tokenize_ms));
      call->headers.emplace_back("x-queue-time", ms_header(result.timings.queue_ms));
      call->headers.emplace_back("x-inference-time", ms_header(result.timings.inference_ms));
      call->headers.emplace_back("x-prompt-tokens", std::to_string(result.prompt_tokens));
      finish(call, std::move(result));
    });
  };
  Status st = model.scheduler->submit(job);
  if (!st.is_ok()) {
    if (st.code() == StatusCode::kUnavailable) {
      if (!ready_.load()) return reply_error(call, family, 503, "server is shutting down");
      metrics_.add_rejected();
      return reply_error(call, family, 429,
                         "server at capacity (" + st.message() + "); retry later", "Overloaded");
    }
    return reply_status(call, family, st);
  }
  call->responder->on_cancel([weak_job] {
    if (auto j = weak_job.lock()) j->cancelled.store(true);
  });
}

// ---------------------------------------------------------------------------------------------
// Seed-compatible /predict

void Api::predict(const std::shared_ptr<Call>& call) {
  ModelHandle model;
  element body;
  if (!begin_inference(call, Family::kSeed, 0, model, body)) return;
  auto text = field(body, "text");
  if (!text) return reply_error(call, Family::kSeed, 422, "missing field 'text'");
  if (text->type() != element_type::STRING) {
    return reply_error(call, Family::kSeed, 422,
                       std::string("'text' must be a string, not ") + type_name(text->type()));
  }
  // The seed's default, within this server's limit.
  int64_t max_length = std::min<int64_t>(128, options_.max_input_length);
  if (auto v = field(body, "max_length"); v && v->type() != element_type::NULL_VALUE) {
    if (v->type() != element_type::INT64) {
      return reply_error(
          call, Family::kSeed, 422,
          v->type() == element_type::UINT64
              ? "'max_length' is too large"
              : std::string("'max_length' must be an integer, not ") + type_name(v->type()));
    }
    max_length = int64_t(*v);
    if (max_length < 2 || max_length > options_.max_input_length) {
      return reply_error(call, Family::kSeed, 422,
                         fmt::format("'max_length' must be between 2 and {}, got {}",
                                     options_.max_input_length, max_length));
    }
  }
  std::vector<Input> inputs(1);
  inputs[0].text = std::string_view(*text);
  const size_t text_length = inputs[0].text.size();
  std::vector<runtime::Sequence> sequences;
  const auto t0 = Clock::now();
  Status st =
      encode_inputs(model, inputs, true, text::TruncationSide::kRight, max_length, sequences);
  const double tokenize_ms = ms_since(t0);
  if (!st.is_ok()) {
    log_event(LogLevel::kWarning, "prediction_failed", {{"error", st.message()}});
    return reply_status(call, Family::kSeed, st);
  }
  const std::string version = options_.model_version;
  run_job(call, Family::kSeed, model, std::move(sequences), engine::Pooling::kCls, false,
          tokenize_ms,
          [this, version, text_length](const std::shared_ptr<Call>& c, runtime::JobResult&& r) {
            const double latency_ms = ms_since(c->start);
            std::string out = "{\"prediction\":";
            append_json_string(out, python_nested_list(r.embeddings));
            out += ",\"embedding\":";
            append_json_floats(out, r.embeddings);
            out += fmt::format(",\"latency_ms\":{:.3f},\"model_version\":", latency_ms);
            append_json_string(out, version);
            out += "}";
            log_event(
                LogLevel::kDebug, "prediction_made",
                {{"text_length", static_cast<long long>(text_length)}, {"latency_ms", latency_ms}});
            reply_json(c, 200, std::move(out));
          });
}

// ---------------------------------------------------------------------------------------------
// TEI-style /embed and /tokenize

namespace {

// "inputs": a string or a non-empty list of strings.
std::optional<BadRequest> read_text_inputs(element body, std::string_view key, int64_t max_batch,
                                           std::vector<std::string_view>& out) {
  auto v = field(body, key);
  if (!v) return BadRequest{422, fmt::format("missing field '{}'", key)};
  if (v->type() == element_type::STRING) {
    out.push_back(std::string_view(*v));
    return std::nullopt;
  }
  if (v->type() != element_type::ARRAY) {
    return BadRequest{422, fmt::format("'{}' must be a string or a list of strings, not {}", key,
                                       type_name(v->type()))};
  }
  for (element item : simdjson::dom::array(*v)) {
    if (item.type() != element_type::STRING) {
      return BadRequest{
          422, fmt::format("'{}' must hold strings only, found {}", key, type_name(item.type()))};
    }
    out.push_back(std::string_view(item));
  }
  if (out.empty()) return BadRequest{422, fmt::format("'{}' is an empty list", key)};
  if (static_cast<int64_t>(out.size()) > max_batch) {
    return BadRequest{
        422, fmt::format("{} inputs in one request; the maximum is {}", out.size(), max_batch)};
  }
  return std::nullopt;
}

}  // namespace

void Api::embed(const std::shared_ptr<Call>& call) {
  ModelHandle model;
  element body;
  if (!begin_inference(call, Family::kTei, 0, model, body)) return;
  std::vector<std::string_view> texts;
  if (auto bad = read_text_inputs(body, "inputs", options_.max_client_batch_size, texts)) {
    return reply_error(call, Family::kTei, bad->status, bad->message);
  }
  bool normalize = true, truncate = false;
  if (auto bad = read_bool(body, "normalize", normalize)) {
    return reply_error(call, Family::kTei, bad->status, bad->message);
  }
  if (auto bad = read_bool(body, "truncate", truncate)) {
    return reply_error(call, Family::kTei, bad->status, bad->message);
  }
  text::TruncationSide side = text::TruncationSide::kRight;
  if (auto v = field(body, "truncation_direction"); v && v->type() != element_type::NULL_VALUE) {
    std::string_view dir;
    if (v->get_string().get(dir) != simdjson::SUCCESS ||
        (dir != "Right" && dir != "Left" && dir != "right" && dir != "left")) {
      return reply_error(call, Family::kTei, 422,
                         "'truncation_direction' must be \"Right\" or \"Left\"");
    }
    side = (dir == "Left" || dir == "left") ? text::TruncationSide::kLeft
                                            : text::TruncationSide::kRight;
  }
  std::vector<Input> inputs(texts.size());
  for (size_t i = 0; i < texts.size(); ++i) inputs[i].text = texts[i];
  std::vector<runtime::Sequence> sequences;
  const auto t0 = Clock::now();
  Status st = encode_inputs(model, inputs, truncate, side, options_.max_input_length, sequences);
  if (!st.is_ok()) return reply_status(call, Family::kTei, st);
  run_job(call, Family::kTei, model, std::move(sequences), options_.pooling, normalize,
          ms_since(t0), [this](const std::shared_ptr<Call>& c, runtime::JobResult&& r) {
            std::string out = "[";
            const size_t h = static_cast<size_t>(r.hidden_size);
            for (size_t i = 0; i * h < r.embeddings.size(); ++i) {
              if (i > 0) out.push_back(',');
              append_json_floats(out, std::span<const float>(r.embeddings).subspan(i * h, h));
            }
            out += "]";
            reply_json(c, 200, std::move(out));
          });
}

void Api::tokenize(const std::shared_ptr<Call>& call) {
  ModelHandle model;
  element body;
  if (!begin_inference(call, Family::kTei, 0, model, body)) return;
  std::vector<std::string_view> texts;
  if (auto bad = read_text_inputs(body, "inputs", options_.max_client_batch_size, texts)) {
    return reply_error(call, Family::kTei, bad->status, bad->message);
  }
  bool add_special = true;
  if (auto bad = read_bool(body, "add_special_tokens", add_special)) {
    return reply_error(call, Family::kTei, bad->status, bad->message);
  }
  text::EncodeOptions options;
  options.add_special_tokens = add_special;
  std::string out = "[";
  for (size_t i = 0; i < texts.size(); ++i) {
    auto encoding = model.tokenizer->encode(texts[i], options);
    if (!encoding.is_ok()) {
      return reply_error(call, Family::kTei, 422,
                         fmt::format("input {}: {}", i, encoding.status().message()));
    }
    if (i > 0) out.push_back(',');
    out.push_back('[');
    for (size_t t = 0; t < encoding->ids.size(); ++t) {
      if (t > 0) out.push_back(',');
      const bool special = encoding->special_tokens_mask[t] != 0;
      out += fmt::format("{{\"id\":{},\"text\":", encoding->ids[t]);
      append_json_string(out, encoding->tokens[t]);
      out += fmt::format(",\"special\":{}", special ? "true" : "false");
      if (special) {
        out += ",\"start\":null,\"stop\":null}";
      } else {
        out += fmt::format(",\"start\":{},\"stop\":{}}}", encoding->char_offsets[t].start,
                           encoding->char_offsets[t].end);
      }
    }
    out.push_back(']');
  }
  out += "]";
  reply_json(call, 200, std::move(out));
}

// ---------------------------------------------------------------------------------------------
// OpenAI /v1/embeddings, /v1/models

void Api::openai_embeddings(const std::shared_ptr<Call>& call) {
  ModelHandle model;
  element body;
  if (!begin_inference(call, Family::kOpenAi, 400, model, body)) return;
  auto input = field(body, "input");
  if (!input) return reply_error(call, Family::kOpenAi, 400, "missing field 'input'");
  std::vector<Input> inputs;
  auto bad_input = [&](const std::string& m) { reply_error(call, Family::kOpenAi, 400, m); };
  auto read_ids = [&](element list, Input& out) -> bool {
    for (element id : simdjson::dom::array(list)) {
      if (id.type() != element_type::INT64) {
        bad_input("token ids must be integers");
        return false;
      }
      const int64_t v = int64_t(id);
      if (v < 0 || v > INT32_MAX) {
        bad_input(fmt::format("token id {} is out of range", v));
        return false;
      }
      out.ids.push_back(static_cast<int32_t>(v));
    }
    out.is_ids = true;
    return true;
  };
  if (input->type() == element_type::STRING) {
    inputs.emplace_back().text = std::string_view(*input);
  } else if (input->type() == element_type::ARRAY) {
    simdjson::dom::array list(*input);
    if (list.size() == 0) return bad_input("'input' is an empty list");
    element first = list.at(0).value_unsafe();
    if (first.type() == element_type::INT64 || first.type() == element_type::UINT64) {
      if (!read_ids(*input, inputs.emplace_back())) return;
    } else {
      for (element item : list) {
        if (item.type() == element_type::STRING) {
          inputs.emplace_back().text = std::string_view(item);
        } else if (item.type() == element_type::ARRAY) {
          if (!read_ids(item, inputs.emplace_back())) return;
        } else {
          return bad_input(std::string("'input' items must be strings or token id lists, not ") +
                           type_name(item.type()));
        }
      }
    }
  } else {
    return bad_input(std::string("'input' must be a string, a list of strings or token id "
                                 "lists, not ") +
                     type_name(input->type()));
  }
  if (static_cast<int64_t>(inputs.size()) > options_.max_client_batch_size) {
    return bad_input(fmt::format("{} inputs in one request; the maximum is {}", inputs.size(),
                                 options_.max_client_batch_size));
  }
  bool base64 = false;
  if (auto v = field(body, "encoding_format"); v && v->type() != element_type::NULL_VALUE) {
    std::string_view format;
    if (v->get_string().get(format) != simdjson::SUCCESS ||
        (format != "float" && format != "base64")) {
      return bad_input("'encoding_format' must be \"float\" or \"base64\"");
    }
    base64 = format == "base64";
  }
  if (auto v = field(body, "dimensions"); v && v->type() != element_type::NULL_VALUE) {
    if (v->type() != element_type::INT64 || int64_t(*v) != model.hidden_size) {
      return bad_input(
          fmt::format("'dimensions' is not supported: this model's embeddings have {} dimensions",
                      model.hidden_size));
    }
  }
  std::string model_name = options_.model_id;
  if (auto v = field(body, "model"); v && v->type() == element_type::STRING) {
    model_name = std::string(std::string_view(*v));
  }
  std::vector<runtime::Sequence> sequences;
  const auto t0 = Clock::now();
  Status st = encode_inputs(model, inputs, false, text::TruncationSide::kRight,
                            options_.max_input_length, sequences);
  if (!st.is_ok()) return reply_status(call, Family::kOpenAi, st);
  run_job(call, Family::kOpenAi, model, std::move(sequences), options_.pooling, true, ms_since(t0),
          [this, base64, model_name](const std::shared_ptr<Call>& c, runtime::JobResult&& r) {
            std::string out = "{\"object\":\"list\",\"data\":[";
            const size_t h = static_cast<size_t>(r.hidden_size);
            for (size_t i = 0; i * h < r.embeddings.size(); ++i) {
              if (i > 0) out.push_back(',');
              out += fmt::format("{{\"object\":\"embedding\",\"index\":{},\"embedding\":", i);
              auto row = std::span<const float>(r.embeddings).subspan(i * h, h);
              if (base64) {
                std::vector<uint8_t> bytes(row.size() * sizeof(float));
                std::memcpy(bytes.data(), row.data(), bytes.size());
                append_json_string(out, base64_encode(bytes));
              } else {
                append_json_floats(out, row);
              }
              out += "}";
            }
            out += "],\"model\":";
            append_json_string(out, model_name);
            out += fmt::format(",\"usage\":{{\"prompt_tokens\":{},\"total_tokens\":{}}}}}",
                               r.prompt_tokens, r.prompt_tokens);
            reply_json(c, 200, std::move(out));
          });
}

void Api::openai_models(const std::shared_ptr<Call>& call) const {
  std::string out = "{\"object\":\"list\",\"data\":[{\"id\":";
  append_json_string(out, options_.model_id);
  out += ",\"object\":\"model\",\"created\":0,\"owned_by\":\"tideserve\"}]}";
  reply_json(call, 200, std::move(out));
}

// ---------------------------------------------------------------------------------------------
// KServe Open Inference Protocol v2

void Api::kserve(const std::shared_ptr<Call>& call, const std::string& target) {
  const http::verb method = call->request.method();
  if (target == "/v2") {
    call->route = "/v2";
    std::string out = "{\"name\":\"tideserve\",\"version\":";
    append_json_string(out, options_.version);
    out += ",\"extensions\":[]}";
    return reply_json(call, 200, std::move(out));
  }
  if (target == "/v2/health/live") return reply_json(call, 200, "{\"live\":true}");
  if (target == "/v2/health/ready") {
    if (ready_.load()) return reply_json(call, 200, "{\"ready\":true}");
    std::string out = "{\"ready\":false,\"reason\":";
    append_json_string(out, not_ready_reason());
    out += "}";
    return reply_json(call, 503, std::move(out));
  }
  // /v2/models/{name}[/versions/{version}][/ready|/infer]
  std::string_view rest = std::string_view(target).substr(std::strlen("/v2/models/"));
  const size_t slash = rest.find('/');
  const std::string name(rest.substr(0, slash));
  std::string_view tail = slash == std::string_view::npos ? "" : rest.substr(slash);
  if (tail.rfind("/versions/", 0) == 0) {
    std::string_view after = tail.substr(std::strlen("/versions/"));
    const size_t s2 = after.find('/');
    const std::string version(after.substr(0, s2));
    if (version != options_.model_version) {
      call->route = "/v2/models/{name}";
      return reply_error(call, Family::kKServe, 404,
                         "model '" + name + "' has no version '" + version + "'");
    }
    tail = s2 == std::string_view::npos ? "" : after.substr(s2);
  }
  if (tail.empty()) {
    call->route = "/v2/models/{name}";
  } else if (tail == "/ready") {
    call->route = "/v2/models/{name}/ready";
  } else if (tail == "/infer") {
    call->route = "/v2/models/{name}/infer";
  } else {
    call->route = "other";
    return reply_error(call, Family::kKServe, 404, "no route " + target);
  }
  const http::verb expected = tail == "/infer" ? http::verb::post : http::verb::get;
  if (method != expected && !(expected == http::verb::get && method == http::verb::head)) {
    call->headers.emplace_back("Allow", std::string(http::to_string(expected)));
    return reply_error(
        call, Family::kKServe, 405,
        fmt::format("method {} not allowed on {}", std::string(http::to_string(method)), target));
  }
  if (name != options_.model_id) {
    return reply_error(
        call, Family::kKServe, 404,
        "unknown model '" + name + "'; this server serves '" + options_.model_id + "'");
  }
  if (tail == "/ready") {
    std::string out = "{\"name\":";
    append_json_string(out, name);
    out += fmt::format(",\"ready\":{}}}", ready_.load() ? "true" : "false");
    return reply_json(call, ready_.load() ? 200 : 503, std::move(out));
  }
  if (tail == "/infer") {
    if (!check_auth(call, Family::kKServe)) return;
    return kserve_infer(call);
  }
  const ModelHandle model = model_snapshot();
  std::string out = "{\"name\":";
  append_json_string(out, name);
  out += ",\"versions\":[";
  append_json_string(out, options_.model_version);
  out += fmt::format(
      "],\"platform\":\"tideserve_bert\",\"inputs\":[{{\"name\":\"text\",\"datatype\":\"BYTES\","
      "\"shape\":[-1]}}],\"outputs\":[{{\"name\":\"embedding\",\"datatype\":\"FP32\","
      "\"shape\":[-1,{}]}}]}}",
      model.hidden_size);
  reply_json(call, 200, std::move(out));
}

void Api::kserve_infer(const std::shared_ptr<Call>& call) {
  ModelHandle model;
  element body;
  if (!begin_inference(call, Family::kKServe, 400, model, body)) return;
  auto bad = [&](const std::string& m) { reply_error(call, Family::kKServe, 400, m); };
  auto inputs_field = field(body, "inputs");
  if (!inputs_field || inputs_field->type() != element_type::ARRAY) {
    return bad("'inputs' must be a list of input tensors");
  }
  simdjson::dom::array tensors(*inputs_field);
  if (tensors.size() != 1) return bad("expected exactly one input tensor (BYTES texts)");
  element tensor = tensors.at(0).value_unsafe();
  if (tensor.type() != element_type::OBJECT) return bad("an input tensor must be an object");
  auto datatype = field(tensor, "datatype");
  std::string_view dt;
  if (!datatype || datatype->get_string().get(dt) != simdjson::SUCCESS || dt != "BYTES") {
    return bad("the input tensor's datatype must be \"BYTES\"");
  }
  auto shape = field(tensor, "shape");
  if (!shape || shape->type() != element_type::ARRAY) return bad("the input tensor needs a shape");
  int64_t count = 1;
  for (element d : simdjson::dom::array(*shape)) {
    if (d.type() != element_type::INT64 || int64_t(d) < 0 || int64_t(d) > 1000000) {
      return bad("shape entries must be non-negative integers");
    }
    count *= int64_t(d);
  }
  auto data = field(tensor, "data");
  if (!data || data->type() != element_type::ARRAY) return bad("the input tensor needs data");
  std::vector<Input> inputs;
  for (element item : simdjson::dom::array(*data)) {
    if (item.type() != element_type::STRING) return bad("BYTES data must be strings");
    inputs.emplace_back().text = std::string_view(item);
  }
  if (static_cast<int64_t>(inputs.size()) != count) {
    return bad(fmt::format("the shape holds {} elements but data has {}", count, inputs.size()));
  }
  if (inputs.empty()) return bad("the input tensor is empty");
  if (static_cast<int64_t>(inputs.size()) > options_.max_client_batch_size) {
    return reply_error(call, Family::kKServe, 422,
                       fmt::format("{} inputs in one request; the maximum is {}", inputs.size(),
                                   options_.max_client_batch_size));
  }
  bool normalize = false, truncate = false;
  if (auto params = field(body, "parameters"); params && params->type() == element_type::OBJECT) {
    if (auto b = read_bool(*params, "normalize", normalize)) return bad(b->message);
    if (auto b = read_bool(*params, "truncate", truncate)) return bad(b->message);
  }
  std::string id;
  if (auto v = field(body, "id"); v && v->type() == element_type::STRING) {
    id = std::string(std::string_view(*v));
  }
  std::vector<runtime::Sequence> sequences;
  const auto t0 = Clock::now();
  Status st = encode_inputs(model, inputs, truncate, text::TruncationSide::kRight,
                            options_.max_input_length, sequences);
  if (!st.is_ok()) return reply_status(call, Family::kKServe, st);
  run_job(call, Family::kKServe, model, std::move(sequences), options_.pooling, normalize,
          ms_since(t0), [this, id](const std::shared_ptr<Call>& c, runtime::JobResult&& r) {
            std::string out = "{\"model_name\":";
            append_json_string(out, options_.model_id);
            out += ",\"model_version\":";
            append_json_string(out, options_.model_version);
            if (!id.empty()) {
              out += ",\"id\":";
              append_json_string(out, id);
            }
            const size_t h = static_cast<size_t>(r.hidden_size);
            out += fmt::format(
                ",\"outputs\":[{{\"name\":\"embedding\",\"datatype\":\"FP32\",\"shape\":[{},{}],"
                "\"data\":",
                h == 0 ? 0 : r.embeddings.size() / h, h);
            append_json_floats(out, r.embeddings);
            out += "}]}";
            reply_json(c, 200, std::move(out));
          });
}
}  // namespace tideserve::server
