// Writing JSON responses (reading is simdjson's job): JsonWriter for objects and arrays, and the
// fast appenders it uses for strings and float arrays.
#pragma once

#include <concepts>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

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

// Writes one JSON document; commas and quoting are its business.
//   JsonWriter w;
//   w.begin_object().field("status", "healthy").key("data").floats(v).end_object();
//   std::string body = std::move(w).take();
class JsonWriter {
 public:
  JsonWriter& begin_object() { return open('{'); }
  JsonWriter& end_object() { return close('}'); }
  JsonWriter& begin_array() { return open('['); }
  JsonWriter& end_array() { return close(']'); }
  JsonWriter& key(std::string_view name);  // inside an object, before its value

  JsonWriter& value(std::string_view s);
  JsonWriter& value(const char* s) { return value(std::string_view(s)); }
  JsonWriter& value(const std::string& s) { return value(std::string_view(s)); }
  JsonWriter& value(bool b);
  template <std::integral T>
  requires(!std::same_as<T, bool>) JsonWriter& value(T n) {
    return integer(static_cast<long long>(n));
  }
  JsonWriter& value(double d);  // shortest round-trip decimal; non-finite as null
  JsonWriter& value(float f);   // shortest decimal that reads back as this float
  JsonWriter& null();
  JsonWriter& floats(std::span<const float> values);  // [v0,v1,...]
  JsonWriter& raw(std::string_view json);             // a value already written as JSON

  template <typename T>
  JsonWriter& field(std::string_view name, const T& v) {
    key(name);
    return value(v);
  }

  std::string take() && { return std::move(out_); }
  // Bytes to come, to size the buffer of a large answer.
  void reserve(size_t bytes) { out_.reserve(bytes); }

 private:
  JsonWriter& open(char bracket);
  JsonWriter& close(char bracket);
  JsonWriter& integer(long long n);
  void separate();  // the comma before a value or key that is not the first

  std::string out_;
  std::vector<bool> first_;  // per open container: nothing written in it yet
  bool after_key_ = false;
};

}  // namespace tideserve::server
