#include "tideserve/cli/embed_command.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "tideserve/cli/cli_error.h"
#include "tideserve/cli/common_options.h"
#include "tideserve/runtime/model_instance.h"

namespace tideserve::cli {

namespace {

struct EmbedArgs {
  std::string model_dir;
  std::string pooling;  // empty: the model directory's declaration, else cls
  std::string prompt_name;
  int64_t dimensions = 0;
  bool normalize = false;
  bool ids = false;
  int threads = 0;
  std::string dtype = "fp32";
  bool allow_reference_kernels = false;
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
  runtime::EmbedRequest request;
  if (!args.pooling.empty()) {
    auto pooling = runtime::parse_pooling(args.pooling);
    if (!pooling.is_ok()) return fail(pooling.status());
    request.pooling = *pooling;
  }
  if (!args.prompt_name.empty()) request.prompt_name = args.prompt_name;
  request.dimensions = args.dimensions;
  for (const std::string& input : args.inputs) {
    if (args.ids) {
      auto ids = parse_id_list(input);
      if (!ids.is_ok()) return fail(ids.status());
      request.inputs.push_back(runtime::EmbedInput::from_ids(std::move(ids).value()));
    } else {
      request.inputs.push_back(runtime::EmbedInput::from_text(input));
    }
  }
  // Texts are cut to --max-length; token id lists are taken as given.
  request.truncation = {.enabled = !args.ids, .max_length = args.max_length};
  request.normalize = args.normalize;

  runtime::ModelOptions options;
  options.model_dir = args.model_dir;
  options.warm_up = false;
  options.engine = {.threads = args.threads,
                    .precision = dtype_precision(args.dtype),
                    .auto_precision = args.dtype == "auto",
                    .allow_reference_kernels = args.allow_reference_kernels};
  options.service.task_threads = 1;
  // Every input in one job: as few engine batches as the inputs allow, none refused for capacity.
  runtime::SchedulerOptions& scheduler = options.service.scheduler;
  scheduler.max_concurrent_requests = std::max<int64_t>(
      scheduler.max_concurrent_requests, static_cast<int64_t>(request.inputs.size()));
  scheduler.max_batch_tokens = int64_t{1} << 20;
  auto instance = runtime::ModelInstance::load(options);
  if (!instance.is_ok()) return fail(instance.status());

  std::promise<Result<runtime::EmbedResult>> answer;
  (*instance)->service().embed(
      std::move(request), runtime::CancelToken(),
      [&answer](Result<runtime::EmbedResult> result) { answer.set_value(std::move(result)); });
  Result<runtime::EmbedResult> result = answer.get_future().get();
  if (!result.is_ok()) return fail(result.status());
  for (size_t s = 0; s < result->size(); ++s) {
    std::string line = "[";
    bool first = true;
    for (float v : result->row(s)) {
      if (!first) line += ',';
      first = false;
      line += fmt::format("{}", v);
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
  add_pooling_option(cmd, args->pooling);
  cmd->add_option(
      "--prompt-name", args->prompt_name,
      "One of the model's prompts (config_sentence_transformers.json) before each text");
  cmd->add_option("--dimensions", args->dimensions,
                  "Keep the first N components (Matryoshka; renormalized when normalized)")
      ->check(CLI::NonNegativeNumber);
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
  add_reference_kernels_option(cmd, args->allow_reference_kernels);
  cmd->add_option("inputs", args->inputs, "Texts (or token id lists with --ids)")->required();
  cmd->callback([args]() { throw CLI::RuntimeError(run_embed(*args)); });
}

}  // namespace tideserve::cli
