#include "tideserve/cli/embed_command.h"

#include <charconv>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "tideserve/cli/cli_error.h"
#include "tideserve/cli/common_options.h"
#include "tideserve/engine/bert_encoder.h"
#include "tideserve/engine/pooling.h"
#include "tideserve/model/bert_model.h"
#include "tideserve/text/tokenizer.h"

namespace tideserve::cli {

namespace {

struct EmbedArgs {
  std::string model_dir;
  std::string pooling = "cls";
  bool normalize = false;
  bool ids = false;
  int threads = 0;
  std::string dtype = "fp32";
  int64_t max_length = 0;
  std::vector<std::string> inputs;
};

// "101, 2023,102" -> ids. Any other character, or an empty list, is an error.
Result<std::vector<int32_t>> parse_id_list(const std::string& text) {
  std::vector<int32_t> ids;
  const char* p = text.data();
  const char* end = p + text.size();
  while (p < end) {
    while (p < end && (*p == ' ' || *p == ',')) ++p;
    if (p == end) break;
    int32_t id = 0;
    auto [next, ec] = std::from_chars(p, end, id);
    if (ec != std::errc()) return invalid_argument("bad token id list '" + text + "'");
    if (next < end && *next != ',' && *next != ' ') {
      return invalid_argument("bad token id list '" + text + "'");
    }
    ids.push_back(id);
    p = next;
  }
  if (ids.empty()) return invalid_argument("empty token id list");
  return ids;
}

int run_embed(const EmbedArgs& args) {
  auto pooling = engine::parse_pooling(args.pooling);
  if (!pooling.is_ok()) return fail(pooling.status());
  auto model = BertModel::load(args.model_dir);
  if (!model.is_ok()) return fail(model.status());
  auto encoder = engine::BertEncoder::create(
      **model, {.threads = args.threads, .precision = dtype_precision(args.dtype)});
  if (!encoder.is_ok()) return fail(encoder.status());

  std::unique_ptr<text::Tokenizer> tokenizer;
  if (!args.ids) {
    auto loaded = text::Tokenizer::load(args.model_dir);
    if (!loaded.is_ok()) return fail(loaded.status());
    tokenizer = std::move(loaded).value();
  }
  const int64_t max_length =
      args.max_length > 0 ? args.max_length : (*model)->config().max_position_embeddings;
  std::vector<int32_t> input_ids, type_ids;
  std::vector<int32_t> cu_seqlens = {0};
  for (const std::string& input : args.inputs) {
    if (args.ids) {
      auto ids = parse_id_list(input);
      if (!ids.is_ok()) return fail(ids.status());
      input_ids.insert(input_ids.end(), ids->begin(), ids->end());
      type_ids.resize(input_ids.size(), 0);
    } else {
      text::EncodeOptions options;
      options.max_length = static_cast<size_t>(max_length);
      auto encoding = tokenizer->encode(input, options);
      if (!encoding.is_ok()) return fail(encoding.status());
      input_ids.insert(input_ids.end(), encoding->ids.begin(), encoding->ids.end());
      type_ids.insert(type_ids.end(), encoding->type_ids.begin(), encoding->type_ids.end());
    }
    cu_seqlens.push_back(static_cast<int32_t>(input_ids.size()));
  }
  engine::EncoderOutput output;
  Status st = (*encoder)->forward({input_ids, type_ids, cu_seqlens}, output);
  if (!st.is_ok()) return fail(st);
  std::vector<float> pooled =
      engine::pool(output.hidden, output.hidden_size, cu_seqlens, *pooling, args.normalize);
  const int64_t h = output.hidden_size;
  for (size_t s = 0; s + 1 < cu_seqlens.size(); ++s) {
    std::string line = "[";
    for (int64_t c = 0; c < h; ++c) {
      if (c > 0) line += ',';
      line += fmt::format("{}", pooled[s * h + c]);
    }
    line += "]\n";
    std::fwrite(line.data(), 1, line.size(), stdout);
  }
  return 0;
}

}  // namespace

void add_embed_command(CLI::App& app) {
  auto args = std::make_shared<EmbedArgs>();
  CLI::App* cmd = app.add_subcommand("embed", "Embed texts and print one JSON array per input");
  cmd->add_option("--model", args->model_dir, "Model directory (config.json, model.safetensors)")
      ->envname("MODEL_NAME")
      ->required();
  cmd->add_option("--pooling", args->pooling, "Pooling of the last hidden states")
      ->check(CLI::IsMember({"cls", "mean"}))
      ->capture_default_str();
  cmd->add_flag("--normalize", args->normalize, "L2-normalize each embedding");
  cmd->add_flag("--ids", args->ids, "Inputs are comma-separated token id lists, not text");
  cmd->add_option("--max-length", args->max_length,
                  "Truncate texts to this many tokens (0 = the model's max_position_embeddings)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--threads", args->threads,
                  "Engine threads (0 = usable CPUs: affinity, capped by a cgroup CPU quota)")
      ->envname("TIDESERVE_THREADS")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  add_dtype_option(cmd, args->dtype);
  cmd->add_option("inputs", args->inputs, "Texts (or token id lists with --ids)")->required();
  cmd->callback([args]() { throw CLI::RuntimeError(run_embed(*args)); });
}

}  // namespace tideserve::cli
