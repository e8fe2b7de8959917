#include "tideserve/cli/tokenize_command.h"

#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "tideserve/text/tokenizer.h"
#include "tideserve/util/log.h"
#include "tideserve/util/status.h"

namespace tideserve::cli {

namespace {

struct TokenizeArgs {
  std::string model_dir;
  std::optional<std::string> pair;
  size_t max_length = 0;
  std::string truncation_side = "right";
  bool no_special_tokens = false;
  std::vector<std::string> texts;
};

void append_offsets(std::string& out, const std::vector<text::Offset>& offsets) {
  out.push_back('[');
  for (size_t i = 0; i < offsets.size(); ++i) {
    out += fmt::format("{}[{},{}]", i ? "," : "", offsets[i].start, offsets[i].end);
  }
  out.push_back(']');
}

int report_error(const Status& status) {
  std::fprintf(stderr, "tideserve: error: %s\n", status.message().c_str());
  return 1;
}

int run_tokenize(const TokenizeArgs& args) {
  auto tokenizer = text::Tokenizer::load(args.model_dir);
  if (!tokenizer.is_ok()) return report_error(tokenizer.status());
  text::EncodeOptions options;
  if (args.pair) options.pair = *args.pair;
  options.max_length = args.max_length;
  options.truncation_side =
      args.truncation_side == "left" ? text::TruncationSide::kLeft : text::TruncationSide::kRight;
  options.add_special_tokens = !args.no_special_tokens;
  text::Encoding encoding;
  for (const std::string& input : args.texts) {
    Status status = (*tokenizer)->encode_into(input, options, &encoding);
    if (!status.is_ok()) return report_error(status);
    std::string line = "{\"ids\":[";
    for (size_t i = 0; i < encoding.size(); ++i) {
      line += fmt::format("{}{}", i ? "," : "", encoding.ids[i]);
    }
    line += "],\"type_ids\":[";
    for (size_t i = 0; i < encoding.size(); ++i) {
      line += fmt::format("{}{}", i ? "," : "", encoding.type_ids[i]);
    }
    line += "],\"tokens\":[";
    for (size_t i = 0; i < encoding.size(); ++i) {
      if (i) line.push_back(',');
      append_json_string(line, encoding.tokens[i]);
    }
    line += "],\"offsets\":";
    append_offsets(line, encoding.char_offsets);
    line += ",\"byte_offsets\":";
    append_offsets(line, encoding.byte_offsets);
    line += "}\n";
    std::fwrite(line.data(), 1, line.size(), stdout);
  }
  return 0;
}

}  // namespace

void add_tokenize_command(CLI::App& app) {
  auto args = std::make_shared<TokenizeArgs>();
  CLI::App* cmd = app.add_subcommand(
      "tokenize", "Tokenize texts like the model's Hugging Face tokenizer; one JSON object each");
  cmd->add_option("--model", args->model_dir, "Model directory (tokenizer.json or vocab.txt)")
      ->envname("MODEL_NAME")
      ->required();
  cmd->add_option("--pair", args->pair, "Second sequence (type id 1) for every text");
  cmd->add_option("--max-length", args->max_length,
                  "Truncate to this many tokens, special tokens included (0 = no limit)")
      ->capture_default_str();
  cmd->add_option("--truncation-side", args->truncation_side, "Which end truncation removes")
      ->check(CLI::IsMember({"right", "left"}))
      ->capture_default_str();
  cmd->add_flag("--no-special-tokens", args->no_special_tokens, "Do not add [CLS] and [SEP]");
  cmd->add_option("texts", args->texts, "Texts to tokenize")->required();
  cmd->callback([args]() { throw CLI::RuntimeError(run_tokenize(*args)); });
}

}  // namespace tideserve::cli
