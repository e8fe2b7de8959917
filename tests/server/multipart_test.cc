// multipart/form-data: the Content-Type boundary and the body parser, on bodies written the way
// real clients write them (undici's FormData behind the openai npm client, curl -F) and on every
// kind of malformed body the parser refuses.
#include "tideserve/server/multipart.h"

#include <gtest/gtest.h>

#include <string>

namespace tideserve::server {
namespace {

using namespace std::string_literals;

std::vector<MultipartPart> parse_ok(std::string_view body, std::string_view boundary,
                                    size_t max_parts = 16) {
  auto parts = parse_multipart(body, boundary, max_parts);
  EXPECT_TRUE(parts.is_ok()) << parts.status().to_string();
  return parts.is_ok() ? std::move(parts).value() : std::vector<MultipartPart>{};
}

// The message of a refused body (the test fails when it parses or is not kInvalidArgument).
std::string refusal(std::string_view body, std::string_view boundary, size_t max_parts = 16) {
  auto parts = parse_multipart(body, boundary, max_parts);
  EXPECT_FALSE(parts.is_ok());
  if (parts.is_ok()) return "";
  EXPECT_EQ(parts.status().code(), StatusCode::kInvalidArgument);
  return parts.status().message();
}

std::string boundary_refusal(std::string_view content_type) {
  auto boundary = multipart_boundary(content_type);
  EXPECT_FALSE(boundary.is_ok()) << *boundary;
  if (boundary.is_ok()) return "";
  EXPECT_EQ(boundary.status().code(), StatusCode::kInvalidArgument);
  return boundary.status().message();
}

bool inside(std::string_view view, std::string_view body) {
  return view.data() >= body.data() && view.data() + view.size() <= body.data() + body.size();
}

// Exactly what undici (Node's fetch and FormData, which the openai npm client uses) sends for
// client.files.create({file, purpose: "batch"}): the boundary is "----formdata-undici-0" and 11
// digits, string fields carry no Content-Type, a file part gets application/octet-stream when the
// Blob has no type, every part ends in CRLF and the close delimiter is followed by CRLF.
TEST(MultipartTest, ParsesUndiciFormDataAsTheOpenAiClientSendsIt) {
  const std::string content_type = "multipart/form-data; boundary=----formdata-undici-012345678901";
  auto boundary = multipart_boundary(content_type);
  ASSERT_TRUE(boundary.is_ok()) << boundary.status().to_string();
  EXPECT_EQ(*boundary, "----formdata-undici-012345678901");
  const std::string jsonl =
      "{\"custom_id\": \"r1\", \"method\": \"POST\", \"url\": \"/v1/embeddings\", \"body\": "
      "{\"model\": \"tiny\", \"input\": \"hi\"}}\n"
      "{\"custom_id\": \"r2\", \"method\": \"POST\", \"url\": \"/v1/embeddings\", \"body\": "
      "{\"model\": \"tiny\", \"input\": \"\xe4\xbd\xa0\xe5\xa5\xbd\"}}\n";
  const std::string body =
      "------formdata-undici-012345678901\r\n"
      "Content-Disposition: form-data; name=\"purpose\"\r\n"
      "\r\n"
      "batch\r\n"
      "------formdata-undici-012345678901\r\n"
      "Content-Disposition: form-data; name=\"file\"; filename=\"batch.jsonl\"\r\n"
      "Content-Type: application/octet-stream\r\n"
      "\r\n" +
      jsonl +
      "\r\n"
      "------formdata-undici-012345678901--\r\n";
  auto parts = parse_ok(body, *boundary);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0].name, "purpose");
  EXPECT_EQ(parts[0].filename, "");
  EXPECT_EQ(parts[0].content_type, "");
  EXPECT_EQ(parts[0].data, "batch");
  EXPECT_EQ(parts[1].name, "file");
  EXPECT_EQ(parts[1].filename, "batch.jsonl");
  EXPECT_EQ(parts[1].content_type, "application/octet-stream");
  EXPECT_EQ(parts[1].data, jsonl);
  EXPECT_TRUE(inside(parts[1].data, body));  // a view, not a copy
}

// curl -F purpose=batch -F file=@x.jsonl;type=application/jsonl: the header's boundary is 24
// dashes and 16 hex digits, so the body's lines start with 26 dashes.
TEST(MultipartTest, ParsesCurlFormat) {
  auto boundary =
      multipart_boundary("multipart/form-data; boundary=------------------------d74496d66958873e");
  ASSERT_TRUE(boundary.is_ok()) << boundary.status().to_string();
  EXPECT_EQ(*boundary, "------------------------d74496d66958873e");
  const std::string body =
      "--------------------------d74496d66958873e\r\n"
      "Content-Disposition: form-data; name=\"purpose\"\r\n"
      "\r\n"
      "batch\r\n"
      "--------------------------d74496d66958873e\r\n"
      "Content-Disposition: form-data; name=\"file\"; filename=\"x.jsonl\"\r\n"
      "Content-Type: application/jsonl\r\n"
      "\r\n"
      "{\"custom_id\": \"a\"}\n"
      "\r\n"
      "--------------------------d74496d66958873e--\r\n";
  auto parts = parse_ok(body, *boundary);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0].name, "purpose");
  EXPECT_EQ(parts[0].data, "batch");
  EXPECT_EQ(parts[1].name, "file");
  EXPECT_EQ(parts[1].filename, "x.jsonl");
  EXPECT_EQ(parts[1].content_type, "application/jsonl");
  EXPECT_EQ(parts[1].data, "{\"custom_id\": \"a\"}\n");
}

TEST(MultipartTest, BinaryDataWithCrLfNulAndPartialBoundariesIsKept) {
  // Everything that starts like a delimiter but is not one: a shorter boundary, a longer one
  // ("--XYZw"), the boundary not after CRLF, CR or LF alone before it, and NUL bytes.
  const std::string data =
      "\x00\x01\r\n\r\n--XY\r\n--XYZw\r\n-XYZ\n--XYZ\r--XYZ x--XYZ\r\n\xff\x00"s;
  const std::string body =
      "--XYZ\r\n"
      "Content-Disposition: form-data; name=\"file\"; filename=\"b.bin\"\r\n"
      "\r\n" +
      data + "\r\n--XYZ--";
  auto parts = parse_ok(body, "XYZ");
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0].data, data);
  EXPECT_EQ(parts[0].data.size(), data.size());
}

TEST(MultipartTest, DataMayEndInCrLfAndHeadersMayBeFollowedByNothing) {
  const std::string body =
      "--b\r\nContent-Disposition: form-data; name=a\r\n\r\nline\r\n\r\n--b\r\n"  // data "line\r\n"
      "Content-Disposition: form-data; name=b\r\n\r\n\r\n--b\r\n"                 // empty data
      "Content-Disposition: form-data; name=c\r\n\r\n--b\r\n"             // no empty line, no data
      "Content-Disposition: form-data; name=d\r\n\r\n\r\n\r\n--b--\r\n";  // data "\r\n"
  auto parts = parse_ok(body, "b");
  ASSERT_EQ(parts.size(), 4u);
  EXPECT_EQ(parts[0].data, "line\r\n");
  EXPECT_EQ(parts[1].data, "");
  EXPECT_EQ(parts[2].name, "c");
  EXPECT_EQ(parts[2].data, "");
  EXPECT_EQ(parts[3].data, "\r\n");
}

TEST(MultipartTest, EmptyPartBody) {
  auto parts = parse_ok(
      "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"empty.jsonl\"\r\n"
      "Content-Type: application/jsonl\r\n\r\n\r\n--b--\r\n",
      "b");
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0].filename, "empty.jsonl");
  EXPECT_TRUE(parts[0].data.empty());
}

TEST(MultipartTest, QuotedParametersWithEscapesTokensAndAnyCase) {
  const std::string body =
      "--b\r\n"
      "content-disposition: Form-Data; NAME=\"a \\\"quoted\\\" name; with=semicolon\"; "
      "FileName=\"C:\\\\dir\\\\x.jsonl\"; filename*=UTF-8''ignored.jsonl\r\n"
      "CONTENT-TYPE:application/jsonl  \r\n"
      "Content-Length: 2\r\n"  // other headers are ignored
      "\r\n"
      "{}\r\n"
      "--b\r\n"
      "Content-Disposition:form-data;name=purpose ; filename = plain.txt;\r\n"
      "\r\n"
      "batch\r\n"
      "--b--\r\n";
  auto parts = parse_ok(body, "b");
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0].name, "a \"quoted\" name; with=semicolon");
  EXPECT_EQ(parts[0].filename, "C:\\dir\\x.jsonl");
  EXPECT_EQ(parts[0].content_type, "application/jsonl");
  EXPECT_EQ(parts[0].data, "{}");
  EXPECT_EQ(parts[1].name, "purpose");
  EXPECT_EQ(parts[1].filename, "plain.txt");
  EXPECT_EQ(parts[1].data, "batch");
}

TEST(MultipartTest, PreambleEpilogueAndTransportPaddingAreIgnored) {
  const std::string body =
      "This is the preamble.\r\n--b\r\nnot a delimiter\r\n"
      "--b \t\r\n"
      "Content-Disposition: form-data; name=x\r\n\r\n"
      "1\r\n"
      "--b--   trailing\r\nepilogue\r\n--b\r\nContent-Disposition: form-data; name=y\r\n\r\n";
  // The preamble's last line "--b" counts: it is the opening boundary, and "not a delimiter" is
  // then a part without an end of headers. Without that line the opening one is the padded one.
  EXPECT_NE(refusal(body, "b").find("part 1: no end of headers"), std::string::npos);
  const std::string fixed = "preamble --b\r\n" + body.substr(body.find("--b \t"));
  auto parts = parse_ok(fixed, "b");
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0].name, "x");
  EXPECT_EQ(parts[0].data, "1");
}

TEST(MultipartTest, EmptyFormHasNoParts) {
  EXPECT_TRUE(parse_ok("--b--\r\n", "b").empty());
  EXPECT_TRUE(parse_ok("--b--", "b").empty());
}

TEST(MultipartTest, BoundaryFromContentType) {
  auto b = multipart_boundary("multipart/form-data; boundary=abc");
  ASSERT_TRUE(b.is_ok());
  EXPECT_EQ(*b, "abc");
  b = multipart_boundary("Multipart/Form-Data ; charset=utf-8; BOUNDARY=\"a b'()+_,-./:=?\"");
  ASSERT_TRUE(b.is_ok()) << b.status().to_string();
  EXPECT_EQ(*b, "a b'()+_,-./:=?");
  b = multipart_boundary("multipart/form-data;boundary=\"quoted\\\"esc\";");
  ASSERT_TRUE(b.is_ok()) << b.status().to_string();
  EXPECT_EQ(*b, "quoted\"esc");
  b = multipart_boundary("multipart/form-data; boundary=x/y=z?");  // bchars, unquoted
  ASSERT_TRUE(b.is_ok()) << b.status().to_string();
  EXPECT_EQ(*b, "x/y=z?");
  b = multipart_boundary("multipart/form-data; boundary=" + std::string(70, 'a'));
  ASSERT_TRUE(b.is_ok()) << b.status().to_string();
  EXPECT_EQ(b->size(), 70u);
}

TEST(MultipartTest, BoundaryRefusals) {
  EXPECT_EQ(boundary_refusal("application/json; boundary=x"),
            "Content-Type must be multipart/form-data, not 'application/json'");
  EXPECT_EQ(boundary_refusal("multipart/mixed; boundary=x"),
            "Content-Type must be multipart/form-data, not 'multipart/mixed'");
  EXPECT_EQ(boundary_refusal(""), "Content-Type must be multipart/form-data, not ''");
  EXPECT_EQ(boundary_refusal("multipart/form-data"),
            "Content-Type multipart/form-data has no boundary parameter");
  EXPECT_EQ(boundary_refusal("multipart/form-data; charset=utf-8"),
            "Content-Type multipart/form-data has no boundary parameter");
  EXPECT_EQ(boundary_refusal("multipart/form-data; boundary="),
            "Content-Type multipart/form-data has an empty boundary");
  EXPECT_EQ(boundary_refusal("multipart/form-data; boundary=\"\""),
            "Content-Type multipart/form-data has an empty boundary");
  EXPECT_EQ(boundary_refusal("multipart/form-data; boundary=" + std::string(71, 'a')),
            "the multipart/form-data boundary is 71 characters, over the 70 of RFC 2046");
  EXPECT_EQ(boundary_refusal("multipart/form-data; boundary=a; boundary=b"),
            "Content-Type multipart/form-data has two boundaries");
  EXPECT_EQ(boundary_refusal("multipart/form-data; boundary=\"a\rb\""),
            "the multipart/form-data boundary holds a control or non-ASCII byte");
  EXPECT_EQ(boundary_refusal("multipart/form-data; boundary=\"abc"),
            "Content-Type: the quoted value of 'boundary' has no closing quote");
  EXPECT_EQ(boundary_refusal("multipart/form-data; boundary"),
            "Content-Type: malformed parameter at 'boundary' (expected name=value)");
  EXPECT_EQ(boundary_refusal("multipart/form-data; boundary=\"a\"b"),
            "Content-Type: expected ';' before 'b'");
}

TEST(MultipartTest, MalformedBodies) {
  const std::string cd = "Content-Disposition: form-data; name=a\r\n";
  EXPECT_EQ(refusal("", "b"), "multipart body has no opening boundary line '--b' (ending in CRLF)");
  EXPECT_EQ(refusal("hello --b\r\n", "b"),
            "multipart body has no opening boundary line '--b' (ending in CRLF)");
  EXPECT_EQ(refusal("--b\n" + cd + "\n1\n--b--\n", "b"),  // LF line ends
            "multipart body has no opening boundary line '--b' (ending in CRLF)");
  EXPECT_EQ(refusal("--b\r\n" + cd + "\r\n1\r\n", "b"),
            "multipart body ends in part 1 without the closing boundary '--b--'");
  EXPECT_EQ(refusal("--b\r\n" + cd + "\r\n1\r\n--b\r\n" + cd + "\r\n2\r\n--b", "b"),
            "multipart body ends in part 2 without the closing boundary '--b--'");
  EXPECT_EQ(refusal("--b\r\n" + cd + "\r\n1--b--\r\n", "b"),  // not after CRLF
            "multipart body ends in part 1 without the closing boundary '--b--'");
  EXPECT_EQ(refusal("--b\r\nContent-Disposition: form-data; name=a\r\n--b--", "b"),
            "multipart part 1: no end of headers (the empty line before the part's data)");
  EXPECT_EQ(refusal("--b\r\nContent-Disposition: form-data; name=a\r\n1\r\n\r\n\r\n--b--", "b"),
            "multipart part 1: malformed header line '1'");
  EXPECT_EQ(refusal("--b\r\n\r\ndata\r\n--b--", "b"),
            "multipart part 1: no Content-Disposition header (form-data with a name)");
  EXPECT_EQ(refusal("--b\r\nContent-Type: text/plain\r\n\r\ndata\r\n--b--", "b"),
            "multipart part 1: no Content-Disposition header (form-data with a name)");
  EXPECT_EQ(refusal("--b\r\n" + cd +
                        "\r\n1\r\n--b\r\nContent-Disposition: form-data\r\n\r\n"
                        "2\r\n--b--",
                    "b"),
            "multipart part 2: Content-Disposition has no name parameter");
  EXPECT_EQ(refusal("--b\r\nContent-Disposition: form-data; filename=\"x\"\r\n\r\n\r\n--b--", "b"),
            "multipart part 1: Content-Disposition has no name parameter");
  EXPECT_EQ(refusal("--b\r\nContent-Disposition: attachment; name=a\r\n\r\n\r\n--b--", "b"),
            "multipart part 1: Content-Disposition is 'attachment', not form-data");
  EXPECT_EQ(refusal("--b\r\nContent-Disposition: form-data; name=a; name=c\r\n\r\n\r\n--b--", "b"),
            "multipart part 1: Content-Disposition has two 'name' parameters");
  EXPECT_EQ(refusal("--b\r\n" + cd + cd + "\r\n\r\n--b--", "b"),
            "multipart part 1: two Content-Disposition headers");
  EXPECT_EQ(refusal("--b\r\nContent-Disposition: form-data; name=\"a\r\n\r\n\r\n--b--", "b"),
            "multipart part 1: Content-Disposition: the quoted value of 'name' has no closing "
            "quote");
  EXPECT_EQ(refusal("--b\r\nContent-Disposition: form-data;\r\n name=a\r\n\r\n\r\n--b--", "b"),
            "multipart part 1: obsolete header line folding (a line starting with a space or "
            "tab) is not accepted");
  EXPECT_EQ(refusal("--b\r\nContent-Disposition: form-data; name=a\nX: y\r\n\r\n\r\n--b--", "b"),
            "multipart part 1: a header line holds a bare CR, LF or NUL");
  EXPECT_EQ(refusal("--b\r\nContent-Disposition : form-data; name=a\r\n\r\n\r\n--b--", "b"),
            "multipart part 1: malformed header line 'Content-Disposition : form-data; name=a'");
  EXPECT_EQ(refusal("--b\r\n" + cd + "\r\n1\r\n--b--", ""), "empty multipart boundary");
}

TEST(MultipartTest, HeaderSectionLimitIs8KiB) {
  // Header lines of exactly 8192 bytes with their CRLFs pass; one byte more is refused, and so is
  // a large part with no empty line at all (without scanning it for one).
  auto body_with_headers = [](size_t header_bytes) {
    std::string headers = "Content-Disposition: form-data; name=a\r\n";
    const std::string filler = "X-Filler: ";
    headers +=
        filler + std::string(header_bytes - headers.size() - filler.size() - 2, 'f') + "\r\n";
    EXPECT_EQ(headers.size(), header_bytes);
    return "--b\r\n" + headers + "\r\ndata\r\n--b--\r\n";
  };
  const std::string at_limit = body_with_headers(8192);
  auto parts = parse_ok(at_limit, "b");
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0].data, "data");
  EXPECT_EQ(refusal(body_with_headers(8193), "b"),
            "multipart part 1: header section over 8 KiB (no empty line within it)");
  EXPECT_EQ(refusal("--b\r\n" + std::string(1 << 20, 'h') + "\r\n--b--", "b"),
            "multipart part 1: header section over 8 KiB (no empty line within it)");
}

TEST(MultipartTest, MaxParts) {
  std::string body;
  for (int i = 0; i < 3; ++i) {
    body += "--b\r\nContent-Disposition: form-data; name=p" + std::to_string(i) + "\r\n\r\nv\r\n";
  }
  body += "--b--\r\n";
  EXPECT_EQ(parse_ok(body, "b", 3).size(), 3u);
  EXPECT_EQ(refusal(body, "b", 2), "multipart body has more than 2 parts");
  EXPECT_EQ(refusal(body, "b", 0), "multipart body has more than 0 parts");
  EXPECT_EQ(parse_ok("--b--\r\n", "b", 0).size(), 0u);
  // The limit stops the parse before it reads the rest: a 17th part is refused even when it is
  // malformed.
  std::string many;
  for (int i = 0; i < 17; ++i) many += "--b\r\nContent-Disposition: form-data; name=x\r\n\r\n\r\n";
  EXPECT_EQ(refusal(many + "--b\r\n\r\n", "b"), "multipart body has more than 16 parts");
}

TEST(MultipartTest, ManyNearDelimitersStayLinear) {
  // 4 MiB of "\r\n--b" candidates that are not delimiters, and of padding after them: a quadratic
  // search would take minutes.
  std::string data;
  while (data.size() < (4u << 20)) data += "\r\n--bx\r\n--b  x";
  const std::string body =
      "--b\r\nContent-Disposition: form-data; name=f\r\n\r\n" + data + "\r\n--b--\r\n";
  auto parts = parse_ok(body, "b");
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0].data.size(), data.size());
}

}  // namespace
}  // namespace tideserve::server
