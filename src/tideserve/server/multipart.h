// multipart/form-data bodies (RFC 7578 on top of RFC 2046 section 5.1), for the routes that take
// uploads (the OpenAI Files API, POST /v1/files). The whole body is already in memory, so a part's
// data is a view into it rather than a copy; a file upload can be large and is read once.
//
// Parsing is strict where ambiguity could let two readers disagree about a part (line endings
// must be CRLF, no obsolete header folding, no repeated Content-Disposition or name) and lenient
// where it costs nothing (any preamble and epilogue, transport padding after a boundary, header
// names in any case). Every fault is kInvalidArgument with a message saying what is wrong.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "tideserve/util/status.h"

namespace tideserve::server {

struct MultipartPart {
  std::string name;          // Content-Disposition name
  std::string filename;      // Content-Disposition filename ("" when absent)
  std::string content_type;  // the part's Content-Type ("" when absent)
  std::string_view data;     // the part's body: a view into the parsed body
};

// The boundary parameter of a multipart/form-data Content-Type header value (quoted or not, the
// media type and parameter names in any case). kInvalidArgument when the media type is another
// one, or the boundary is missing, empty, over the 70 characters of RFC 2046 or holds a control
// or non-ASCII byte.
Result<std::string> multipart_boundary(std::string_view content_type);

// Splits `body` into its parts, in order. The preamble before the first boundary and the epilogue
// after the closing one are ignored; part data is binary-safe (only CRLF "--" boundary followed
// by optional spaces and CRLF, or by "--", ends a part). kInvalidArgument on malformed input: no
// opening boundary, a part without the empty line that ends its headers or with a header section
// over 8 KiB, a part without a Content-Disposition: form-data header with a name, no closing
// boundary "--boundary--", or more than `max_parts` parts.
Result<std::vector<MultipartPart>> parse_multipart(std::string_view body, std::string_view boundary,
                                                   size_t max_parts = 16);

}  // namespace tideserve::server
