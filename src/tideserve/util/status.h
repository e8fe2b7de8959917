// Status and Result<T>: how errors travel on every path that untrusted input can reach.
// Exceptions never cross a layer boundary; impossible internal states abort via TS_CHECK.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace tideserve {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,  // the caller sent something malformed
  kNotFound,         // a file, tensor or route that does not exist
  kOutOfRange,       // a length or index beyond a limit
  kFailedPrecondition,
  kResourceExhausted,  // over capacity right now: retrying later can succeed (HTTP 429)
  kCancelled,          // the caller went away before the answer (HTTP 499)
  kUnavailable,        // not ready, draining, shutting down (HTTP 503)
  kInternal,
};

const char* status_code_name(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok() { return Status(); }

  bool is_ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string to_string() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status invalid_argument(std::string message) {
  return Status(StatusCode::kInvalidArgument, std::move(message));
}
inline Status not_found(std::string message) {
  return Status(StatusCode::kNotFound, std::move(message));
}
inline Status out_of_range(std::string message) {
  return Status(StatusCode::kOutOfRange, std::move(message));
}
inline Status resource_exhausted(std::string message) {
  return Status(StatusCode::kResourceExhausted, std::move(message));
}
inline Status cancelled_error(std::string message) {
  return Status(StatusCode::kCancelled, std::move(message));
}
inline Status unavailable(std::string message) {
  return Status(StatusCode::kUnavailable, std::move(message));
}
inline Status internal_error(std::string message) {
  return Status(StatusCode::kInternal, std::move(message));
}

// A value or the Status that explains why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}         // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {  // NOLINT: implicit by design
    if (status_.is_ok()) status_ = internal_error("Result built from an OK status without value");
  }

  bool is_ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() { return *value_; }
  const T& operator*() const { return *value_; }

 private:
  std::optional<T> value_;
  Status status_;
};

[[noreturn]] void check_failed(const char* file, int line, const char* condition);

}  // namespace tideserve

// Aborts on a broken internal invariant (never on bad input: that returns a Status).
#define TS_CHECK(condition)                                                      \
  do {                                                                           \
    if (!(condition)) ::tideserve::check_failed(__FILE__, __LINE__, #condition); \
  } while (0)

#define TS_RETURN_IF_ERROR(expr)                \
  do {                                          \
    ::tideserve::Status ts_status_ = (expr);    \
    if (!ts_status_.is_ok()) return ts_status_; \
  } while (0)
