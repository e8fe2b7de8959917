#include "tideserve/server/multipart.h"

#include <fmt/format.h>

#include <optional>

namespace tideserve::server {

namespace {

constexpr size_t kMaxBoundary = 70;             // RFC 2046 section 5.1.1: 1*70 bchars
constexpr size_t kMaxHeaderSection = 8 * 1024;  // a part's header lines with their CRLFs

bool is_ows(char c) {
  return c == ' ' || c == '\t';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

// RFC 9110 tchar: what a header or parameter name may hold.
bool is_tchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// Client text inside a message: printable ASCII only (a message ends up in a JSON error body,
// which must stay valid UTF-8), and short.
std::string printable(std::string_view s) {
  constexpr size_t kMax = 64;
  std::string out;
  for (size_t i = 0; i < s.size() && i < kMax; ++i) {
    const char c = s[i];
    out += c >= 0x20 && c < 0x7f ? c : '?';
  }
  if (s.size() > kMax) out += "...";
  return out;
}

struct Parameter {
  std::string name;
  std::string value;
};

// The `; name=value` parameters after a media type or disposition type (RFC 9110 section 5.6.6,
// RFC 6266). A value is a quoted-string (backslash escapes the next byte) or a bare run of bytes
// up to ';' or whitespace: stricter than tchar would refuse the unquoted boundaries ("/", "=",
// "?" are bchars) that some clients send. `what` names the header for messages.
Status parse_parameters(std::string_view rest, std::string_view what, std::vector<Parameter>& out) {
  size_t i = 0;
  auto skip_ows = [&] {
    while (i < rest.size() && is_ows(rest[i])) ++i;
  };
  while (true) {
    skip_ows();
    if (i == rest.size()) return Status::ok();
    if (rest[i] != ';') {
      return invalid_argument(
          fmt::format("{}: expected ';' before '{}'", what, printable(rest.substr(i))));
    }
    ++i;
    skip_ows();
    if (i == rest.size()) return Status::ok();  // a trailing ';' is harmless
    const size_t name_begin = i;
    while (i < rest.size() && is_tchar(rest[i])) ++i;
    Parameter parameter;
    parameter.name = std::string(rest.substr(name_begin, i - name_begin));
    skip_ows();
    if (parameter.name.empty() || i == rest.size() || rest[i] != '=') {
      return invalid_argument(fmt::format("{}: malformed parameter at '{}' (expected name=value)",
                                          what, printable(rest.substr(name_begin))));
    }
    ++i;
    skip_ows();
    if (i < rest.size() && rest[i] == '"') {
      ++i;
      bool closed = false;
      while (i < rest.size()) {
        const char c = rest[i++];
        if (c == '"') {
          closed = true;
          break;
        }
        if (c == '\\') {
          if (i == rest.size()) break;
          parameter.value += rest[i++];
        } else {
          parameter.value += c;
        }
      }
      if (!closed) {
        return invalid_argument(fmt::format("{}: the quoted value of '{}' has no closing quote",
                                            what, printable(parameter.name)));
      }
    } else {
      const size_t value_begin = i;
      while (i < rest.size() && rest[i] != ';' && rest[i] != '"' && !is_ows(rest[i])) ++i;
      parameter.value = std::string(rest.substr(value_begin, i - value_begin));
    }
    out.push_back(std::move(parameter));
  }
}

// Where a delimiter line ends: `after` is the index just past "--boundary". The line is a
// delimiter when transport padding (spaces, tabs) and CRLF follow, or "--" (the close delimiter;
// whatever follows it is epilogue). Otherwise those bytes are data that merely starts like one.
struct Delimiter {
  size_t start = 0;  // its CR (or, for an opening line at the very start of the body, its "--")
  size_t next = 0;   // the first byte after the line: the next part's first header
  bool close = false;
};

std::optional<Delimiter> finish_delimiter(std::string_view body, size_t start, size_t after) {
  if (body.substr(after, 2) == "--") return Delimiter{start, after + 2, true};
  size_t i = after;
  while (i < body.size() && is_ows(body[i])) ++i;
  if (body.substr(i, 2) == "\r\n") return Delimiter{start, i + 2, false};
  return std::nullopt;
}

// The next delimiter "\r\n--boundary" at or after `from`. Linear: a candidate that turns out to be
// data resumes the search one byte on, and padding runs after distinct candidates cannot overlap
// (padding holds no CR).
std::optional<Delimiter> next_delimiter(std::string_view body, size_t from,
                                        std::string_view crlf_dash_boundary) {
  while (true) {
    const size_t p = body.find(crlf_dash_boundary, from);
    if (p == std::string_view::npos) return std::nullopt;
    if (auto d = finish_delimiter(body, p, p + crlf_dash_boundary.size())) return d;
    from = p + 1;
  }
}

Status parse_disposition(std::string_view value, size_t index, MultipartPart& part) {
  const std::string what = fmt::format("multipart part {}: Content-Disposition", index);
  const size_t semicolon = value.find(';');
  const std::string_view type = trim(value.substr(0, semicolon));
  if (!iequals(type, "form-data")) {
    return invalid_argument(fmt::format("{} is '{}', not form-data", what, printable(type)));
  }
  std::vector<Parameter> parameters;
  if (semicolon != std::string_view::npos) {
    TS_RETURN_IF_ERROR(parse_parameters(value.substr(semicolon), what, parameters));
  }
  bool have_name = false, have_filename = false;
  for (Parameter& p : parameters) {
    // filename* (RFC 5987 encoding) is ignored: RFC 7578 section 4.2 says senders must not use it.
    const bool is_name = iequals(p.name, "name");
    if (!is_name && !iequals(p.name, "filename")) continue;
    bool& seen = is_name ? have_name : have_filename;
    if (seen) {
      return invalid_argument(fmt::format("{} has two '{}' parameters", what, printable(p.name)));
    }
    seen = true;
    (is_name ? part.name : part.filename) = std::move(p.value);
  }
  if (!have_name) return invalid_argument(fmt::format("{} has no name parameter", what));
  return Status::ok();
}

// `headers`: the header lines, each ending in CRLF, without the empty line that ends them. Every
// line is checked before Content-Disposition is read, so a malformed line is reported as such
// rather than as what it did to the header before it.
Status parse_headers(std::string_view headers, size_t index, MultipartPart& part) {
  std::optional<std::string_view> disposition;
  bool have_type = false;
  while (!headers.empty()) {
    const size_t eol = headers.find("\r\n");
    const std::string_view line = headers.substr(0, eol);
    headers.remove_prefix(eol == std::string_view::npos ? headers.size() : eol + 2);
    if (!line.empty() && is_ows(line.front())) {
      return invalid_argument(fmt::format(
          "multipart part {}: obsolete header line folding (a line starting with a space or tab) "
          "is not accepted",
          index));
    }
    if (line.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos) {
      return invalid_argument(
          fmt::format("multipart part {}: a header line holds a bare CR, LF or NUL", index));
    }
    const size_t colon = line.find(':');
    const std::string_view name = line.substr(0, colon);
    bool token = !name.empty();
    for (char c : name) token = token && is_tchar(c);
    if (colon == std::string_view::npos || !token) {
      return invalid_argument(
          fmt::format("multipart part {}: malformed header line '{}'", index, printable(line)));
    }
    const std::string_view value = trim(line.substr(colon + 1));
    const bool is_disposition = iequals(name, "content-disposition");
    if (!is_disposition && !iequals(name, "content-type")) continue;  // e.g. Content-Length
    if (is_disposition ? disposition.has_value() : have_type) {
      return invalid_argument(
          fmt::format("multipart part {}: two {} headers", index, printable(name)));
    }
    if (is_disposition) {
      disposition = value;
    } else {
      have_type = true;
      part.content_type = std::string(value);
    }
  }
  if (!disposition) {
    return invalid_argument(fmt::format(
        "multipart part {}: no Content-Disposition header (form-data with a name)", index));
  }
  return parse_disposition(*disposition, index, part);
}

// One part: everything between the line after a delimiter and the CRLF of the next delimiter.
Status parse_part(std::string_view part_bytes, size_t index, MultipartPart& part) {
  std::string_view headers;
  if (part_bytes.substr(0, 2) == "\r\n") {  // no header lines at all
    part.data = part_bytes.substr(2);
  } else {
    // Look for the empty line only where a header section within the limit could end (the
    // window holds kMaxHeaderSection bytes of header lines and then the empty line), so a large
    // file part without one is not scanned twice.
    const std::string_view window = part_bytes.substr(0, kMaxHeaderSection + 2);
    const size_t end = window.find("\r\n\r\n");
    if (end != std::string_view::npos) {
      headers = part_bytes.substr(0, end + 2);
      part.data = part_bytes.substr(end + 4);
    } else if (part_bytes.size() > kMaxHeaderSection) {
      return invalid_argument(
          fmt::format("multipart part {}: header section over {} KiB (no empty line within it)",
                      index, kMaxHeaderSection / 1024));
    } else if (part_bytes.size() >= 2 && part_bytes.substr(part_bytes.size() - 2) == "\r\n") {
      // Header lines and then the delimiter: RFC 2046 makes the empty line and the data optional.
      headers = part_bytes;
      part.data = part_bytes.substr(part_bytes.size());
    } else {
      return invalid_argument(fmt::format(
          "multipart part {}: no end of headers (the empty line before the part's data)", index));
    }
  }
  return parse_headers(headers, index, part);
}

}  // namespace

Result<std::string> multipart_boundary(std::string_view content_type) {
  const size_t semicolon = content_type.find(';');
  const std::string_view media_type = trim(content_type.substr(0, semicolon));
  if (!iequals(media_type, "multipart/form-data")) {
    return invalid_argument(
        fmt::format("Content-Type must be multipart/form-data, not '{}'", printable(media_type)));
  }
  std::vector<Parameter> parameters;
  if (semicolon != std::string_view::npos) {
    TS_RETURN_IF_ERROR(
        parse_parameters(content_type.substr(semicolon), "Content-Type", parameters));
  }
  std::optional<std::string> boundary;
  for (Parameter& p : parameters) {
    if (!iequals(p.name, "boundary")) continue;
    if (boundary) return invalid_argument("Content-Type multipart/form-data has two boundaries");
    boundary = std::move(p.value);
  }
  if (!boundary) {
    return invalid_argument("Content-Type multipart/form-data has no boundary parameter");
  }
  if (boundary->empty()) {
    return invalid_argument("Content-Type multipart/form-data has an empty boundary");
  }
  if (boundary->size() > kMaxBoundary) {
    return invalid_argument(
        fmt::format("the multipart/form-data boundary is {} characters, over the {} of RFC 2046",
                    boundary->size(), kMaxBoundary));
  }
  for (char c : *boundary) {
    // RFC 2046 allows fewer (bchars), but clients are lax; a control byte or CR/LF, though,
    // would put line breaks or NULs inside the delimiter lines.
    if (c < 0x20 || c >= 0x7f) {
      return invalid_argument("the multipart/form-data boundary holds a control or non-ASCII byte");
    }
  }
  return std::move(*boundary);
}

Result<std::vector<MultipartPart>> parse_multipart(std::string_view body, std::string_view boundary,
                                                   size_t max_parts) {
  if (boundary.empty()) return invalid_argument("empty multipart boundary");
  const std::string crlf_dash_boundary = fmt::format("\r\n--{}", boundary);
  const std::string_view dash_boundary = std::string_view(crlf_dash_boundary).substr(2);
  // The opening line starts the body or follows the preamble's last CRLF.
  std::optional<Delimiter> line;
  if (body.substr(0, dash_boundary.size()) == dash_boundary) {
    line = finish_delimiter(body, 0, dash_boundary.size());
  }
  if (!line) line = next_delimiter(body, 0, crlf_dash_boundary);
  if (!line) {
    return invalid_argument(
        fmt::format("multipart body has no opening boundary line '{}' (ending in CRLF)",
                    printable(dash_boundary)));
  }
  std::vector<MultipartPart> parts;
  while (!line->close) {
    if (parts.size() >= max_parts) {
      return invalid_argument(fmt::format("multipart body has more than {} parts", max_parts));
    }
    const size_t begin = line->next;
    line = next_delimiter(body, begin, crlf_dash_boundary);
    if (!line) {
      return invalid_argument(
          fmt::format("multipart body ends in part {} without the closing boundary '{}--'",
                      parts.size() + 1, printable(dash_boundary)));
    }
    MultipartPart part;
    TS_RETURN_IF_ERROR(parse_part(body.substr(begin, line->start - begin), parts.size() + 1, part));
    parts.push_back(std::move(part));
  }
  return parts;
}

}  // namespace tideserve::server
