// Small helpers to write JSON responses (reading is simdjson's job).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace tideserve::server {

// Appends a JSON string literal.
void append_json_string(std::string& out, std::string_view s);
// Appends a float as the shortest decimal that round-trips (non-finite values as null).
void append_json_float(std::string& out, float value);
// Appends [v0,v1,...].
void append_json_floats(std::string& out, std::span<const float> values);
// Python's repr() of a list of lists of floats, e.g. "[[0.5, -1.25]]" (the seed /predict format:
// str(tensor.tolist()), where each float32 value is printed as a Python float).
std::string python_nested_list(std::span<const float> values);
// Standard base64 of the raw bytes (OpenAI encoding_format=base64: little-endian float32).
std::string base64_encode(std::span<const uint8_t> bytes);

}  // namespace tideserve::server
