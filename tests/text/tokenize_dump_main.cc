// tideserve_tokenize_dump: encodes every line of a corpus (one JSON string per line) and prints one
// JSON object per line: {"ids":[...],"type_ids":[...],"offsets":[[s,e],...],"bytes":[[s,e],...]}
// (offsets in code points, bytes in UTF-8 bytes) or {"error":"..."}. hf_parity.js compares the
// output with Hugging Face tokenizers; bench/tokenizer uses the same corpus.
//
//   tideserve_tokenize_dump --model DIR --corpus FILE [--pair-shift K] [--max-length N] [--left]
//                           [--summary]
// --pair-shift K encodes line i with line (i + K) % n as its pair; --summary prints only the
// counts of texts, tokens and errors.
#include <simdjson.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "tideserve/text/tokenizer.h"
#include "tideserve/util/mapped_file.h"

namespace {

using tideserve::text::Encoding;
using tideserve::text::Offset;

void append_json_string(std::string& out, std::string_view s) {
  out.push_back('"');
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
}

void append_offsets(std::string& out, const std::vector<Offset>& offsets) {
  out.push_back('[');
  for (size_t i = 0; i < offsets.size(); ++i) {
    if (i) out.push_back(',');
    out.push_back('[');
    out += std::to_string(offsets[i].start);
    out.push_back(',');
    out += std::to_string(offsets[i].end);
    out.push_back(']');
  }
  out.push_back(']');
}

template <typename T>
void append_ints(std::string& out, const std::vector<T>& values) {
  out.push_back('[');
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out.push_back(',');
    out += std::to_string(values[i]);
  }
  out.push_back(']');
}

int usage() {
  std::fprintf(stderr,
               "usage: tideserve_tokenize_dump --model DIR --corpus FILE [--pair-shift K] "
               "[--max-length N] [--left] [--summary]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_dir, corpus_path;
  long pair_shift = -1;
  size_t max_length = 0;
  bool left = false;
  bool summary = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool has_value = i + 1 < argc;
    if (arg == "--model" && has_value) {
      model_dir = argv[++i];
    } else if (arg == "--corpus" && has_value) {
      corpus_path = argv[++i];
    } else if (arg == "--pair-shift" && has_value) {
      pair_shift = std::strtol(argv[++i], nullptr, 10);
    } else if (arg == "--max-length" && has_value) {
      max_length = std::strtoul(argv[++i], nullptr, 10);
    } else if (arg == "--left") {
      left = true;
    } else if (arg == "--summary") {
      summary = true;
    } else {
      return usage();
    }
  }
  if (model_dir.empty() || corpus_path.empty()) return usage();

  auto tokenizer = tideserve::text::Tokenizer::load(model_dir);
  if (!tokenizer.is_ok()) {
    std::fprintf(stderr, "tideserve_tokenize_dump: %s\n", tokenizer.status().to_string().c_str());
    return 1;
  }
  auto corpus_text = tideserve::read_text_file(corpus_path);
  if (!corpus_text.is_ok()) {
    std::fprintf(stderr, "tideserve_tokenize_dump: %s\n", corpus_text.status().to_string().c_str());
    return 1;
  }
  std::vector<std::string> lines;
  simdjson::dom::parser parser;
  size_t pos = 0;
  const std::string& text = *corpus_text;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view value;
    if (parser.parse(text.data() + pos, end - pos).get(value) != simdjson::SUCCESS) {
      std::fprintf(stderr, "tideserve_tokenize_dump: %s line %zu is not a JSON string\n",
                   corpus_path.c_str(), lines.size() + 1);
      return 1;
    }
    lines.emplace_back(value);
    pos = end + 1;
  }

  tideserve::text::EncodeOptions options;
  options.max_length = max_length;
  options.truncation_side =
      left ? tideserve::text::TruncationSide::kLeft : tideserve::text::TruncationSide::kRight;
  Encoding encoding;
  std::string out;
  size_t tokens = 0, errors = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (pair_shift >= 0) options.pair = lines[(i + pair_shift) % lines.size()];
    out.clear();
    tideserve::Status status = (*tokenizer)->encode_into(lines[i], options, &encoding);
    if (summary) {
      tokens += status.is_ok() ? encoding.size() : 0;
      errors += !status.is_ok();
      continue;
    }
    if (!status.is_ok()) {
      out += "{\"error\":";
      append_json_string(out, status.message());
      out += "}\n";
    } else {
      out += "{\"ids\":";
      append_ints(out, encoding.ids);
      out += ",\"type_ids\":";
      append_ints(out, encoding.type_ids);
      out += ",\"offsets\":";
      append_offsets(out, encoding.char_offsets);
      out += ",\"bytes\":";
      append_offsets(out, encoding.byte_offsets);
      out += "}\n";
    }
    std::fwrite(out.data(), 1, out.size(), stdout);
  }
  if (summary) std::printf("%zu texts, %zu tokens, %zu errors\n", lines.size(), tokens, errors);
  // Every corpus line is valid input: an encode error is a failure (the sanitized corpus run
  // relies on this exit code).
  return errors > 0 ? 1 : 0;
}
