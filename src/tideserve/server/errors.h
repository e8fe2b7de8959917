// How an error travels to a client: the one table from (status code, API family) to the HTTP
// status, and each family's error body.
//
//   family  | body                                              | invalid argument
//   seed    | {"detail": message}                               | 422
//   TEI     | {"error": message, "error_type": ...}             | 422
//   OpenAI  | {"error": {"message", "type", "param", "code"}}   | 400 (every invalid request)
//   KServe  | {"error": message}                                | 400 (every invalid request)
//   plain   | {"error": message} (routes of no family, transport errors)
#pragma once

#include <string>
#include <string_view>

#include "tideserve/util/status.h"

namespace tideserve::server {

enum class Family { kSeed, kTei, kOpenAi, kKServe, kPlain };

// kInvalidArgument -> 422 (400 in OpenAI and KServe), kOutOfRange (an input or an answer over
// a length bound) -> 413 (400 in OpenAI), kNotFound -> 404, kResourceExhausted -> 429,
// kCancelled -> 499, kUnavailable -> 503, anything else -> 500.
int http_status(StatusCode code, Family family);

// The family's error body for an answer with this HTTP status (TEI's error_type and OpenAI's type
// follow from the status).
std::string error_body(Family family, int status, std::string_view message);

}  // namespace tideserve::server
