#include "tideserve/server/request_json.h"

#include <fmt/format.h>

namespace tideserve::server {

namespace {

thread_local simdjson::dom::parser json_parser;

}  // namespace

Status parse_json_object(const std::string& body, element& out, bool& malformed) {
  malformed = true;
  if (body.empty()) return invalid_argument("empty request body; send a JSON object");
  simdjson::padded_string padded(body);
  auto error = json_parser.parse(padded).get(out);
  if (error == simdjson::UTF8_ERROR) return invalid_argument("request body is not valid UTF-8");
  if (error == simdjson::NUMBER_ERROR) {
    return invalid_argument("malformed JSON: a number is malformed or beyond 64 bits");
  }
  if (error)
    return invalid_argument(std::string("malformed JSON: ") + simdjson::error_message(error));
  malformed = false;
  if (out.type() != element_type::OBJECT) {
    return invalid_argument(std::string("the request body must be a JSON object, not ") +
                            type_name(out.type()));
  }
  return Status::ok();
}

std::optional<element> field(element object, std::string_view key) {
  element value;
  if (object[key].get(value) != simdjson::SUCCESS) return std::nullopt;
  return value;
}

const char* type_name(element_type type) {
  switch (type) {
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

Status read_bool(element object, std::string_view key, bool& out) {
  auto v = field(object, key);
  if (!v || v->type() == element_type::NULL_VALUE) return Status::ok();
  if (v->type() != element_type::BOOL) {
    return invalid_argument(
        fmt::format("'{}' must be a boolean, not {}", key, type_name(v->type())));
  }
  out = bool(*v);
  return Status::ok();
}

Status read_choice(element object, std::string_view key,
                   std::initializer_list<std::string_view> choices, std::string_view& out) {
  auto v = field(object, key);
  if (!v || v->type() == element_type::NULL_VALUE) return Status::ok();
  std::string_view s;
  if (v->get_string().get(s) == simdjson::SUCCESS) {
    for (std::string_view c : choices) {
      if (s == c) {
        out = s;
        return Status::ok();
      }
    }
  }
  std::string names;
  for (std::string_view c : choices) {
    if (!names.empty()) names += " or ";
    names += fmt::format("\"{}\"", c);
  }
  return invalid_argument(fmt::format("'{}' must be {}", key, names));
}

void read_string_if_present(element object, std::string_view key, std::string& out) {
  if (auto v = field(object, key); v && v->type() == element_type::STRING) {
    out = std::string(std::string_view(*v));
  }
}

Status check_input_count(size_t count, int64_t max_inputs) {
  if (static_cast<int64_t>(count) > max_inputs) {
    return invalid_argument(
        fmt::format("{} inputs in one request; the maximum is {}", count, max_inputs));
  }
  return Status::ok();
}

Status read_text_inputs(element object, std::string_view key, int64_t max_inputs,
                        std::vector<std::string>& out) {
  auto v = field(object, key);
  if (!v) return invalid_argument(fmt::format("missing field '{}'", key));
  if (v->type() == element_type::STRING) {
    out.emplace_back(std::string_view(*v));
    return Status::ok();
  }
  if (v->type() != element_type::ARRAY) {
    return invalid_argument(fmt::format("'{}' must be a string or a list of strings, not {}", key,
                                        type_name(v->type())));
  }
  for (element item : simdjson::dom::array(*v)) {
    if (item.type() != element_type::STRING) {
      return invalid_argument(
          fmt::format("'{}' must hold strings only, found {}", key, type_name(item.type())));
    }
    out.emplace_back(std::string_view(item));
  }
  if (out.empty()) return invalid_argument(fmt::format("'{}' is an empty list", key));
  return check_input_count(out.size(), max_inputs);
}

}  // namespace tideserve::server
