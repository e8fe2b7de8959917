#include "tideserve/server/errors.h"

#include "tideserve/server/json_writer.h"

namespace tideserve::server {

int http_status(StatusCode code, Family family) {
  const bool every_invalid_is_400 = family == Family::kOpenAi || family == Family::kKServe;
  switch (code) {
    case StatusCode::kInvalidArgument:
      return every_invalid_is_400 ? 400 : 422;
    case StatusCode::kOutOfRange:
      return family == Family::kOpenAi ? 400 : 413;
    case StatusCode::kNotFound:
      return 404;
    case StatusCode::kResourceExhausted:
      return 429;
    case StatusCode::kCancelled:
      return 499;
    case StatusCode::kUnavailable:
      return 503;
    case StatusCode::kFailedPrecondition:  // the server's state forbids it (a mode, a setting)
      return 409;
    case StatusCode::kOk:
    case StatusCode::kInternal:
      break;
  }
  return 500;
}

namespace {

const char* tei_error_type(int status) {
  if (status == 429) return "Overloaded";
  if (status == 503) return "Unhealthy";
  if (status >= 500) return "Backend";
  return "Validation";
}

const char* openai_error_type(int status) {
  switch (status) {
    case 429:
      return "rate_limit_error";
    case 401:
      return "authentication_error";
    case 404:
      return "not_found_error";
    default:
      return status >= 500 ? "server_error" : "invalid_request_error";
  }
}

}  // namespace

std::string error_body(Family family, int status, std::string_view message) {
  JsonWriter w;
  w.begin_object();
  switch (family) {
    case Family::kSeed:
      w.field("detail", message);
      break;
    case Family::kTei:
      w.field("error", message).field("error_type", tei_error_type(status));
      break;
    case Family::kOpenAi:
      w.key("error").begin_object();
      w.field("message", message).field("type", openai_error_type(status));
      w.key("param").null().key("code").null();
      w.end_object();
      break;
    case Family::kKServe:
    case Family::kPlain:
      w.field("error", message);
      break;
  }
  w.end_object();
  return std::move(w).take();
}

}  // namespace tideserve::server
