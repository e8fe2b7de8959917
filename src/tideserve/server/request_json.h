// Reading request bodies (simdjson DOM): the helpers every API family's parser shares. Client
// faults come back as a Status (kInvalidArgument with a message naming the field), which the
// error table (errors.h) turns into the family's HTTP status.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <simdjson.h>

#include "tideserve/util/status.h"

namespace tideserve::server {

using simdjson::dom::element;
using simdjson::dom::element_type;

// Parses a request body into `out` (a view into a per-thread parser: valid until the thread
// parses the next body). A body that is empty, not JSON or not UTF-8 sets `malformed` (400 in
// every family); one that is JSON but not an object is kInvalidArgument.
Status parse_json_object(const std::string& body, element& out, bool& malformed);

// The member `key` of an object, if present.
std::optional<element> field(element object, std::string_view key);
// "a string", "an integer", ...: for messages.
const char* type_name(element_type type);

// An optional boolean member (absent or null leaves `out` as it was).
Status read_bool(element object, std::string_view key, bool& out);
// An optional string member that must be one of `choices` (absent or null leaves `out`).
Status read_choice(element object, std::string_view key,
                   std::initializer_list<std::string_view> choices, std::string_view& out);
// An optional string member (absent or null leaves `out`); other types are ignored.
void read_string_if_present(element object, std::string_view key, std::string& out);
// `key`: a string or a non-empty list of strings, at most `max_inputs` of them.
Status read_text_inputs(element object, std::string_view key, int64_t max_inputs,
                        std::vector<std::string>& out);
// The client batch limit, as every family words it.
Status check_input_count(size_t count, int64_t max_inputs);

}  // namespace tideserve::server
