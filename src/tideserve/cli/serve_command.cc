#include "tideserve/cli/serve_command.h"

#include <utility>  // before Asio under C++20 with g++ 12

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "tideserve/cli/cli_error.h"
#include "tideserve/cli/common_options.h"
#include "tideserve/jobs/batch_store.h"
#include "tideserve/loadgen/load_generator.h"
#include "tideserve/server/serve.h"
#include "tideserve/util/log.h"

namespace tideserve::cli {

namespace {

struct ServeArgs {
  server::ServeOptions options;
  std::string pooling;  // empty: the model directory's declaration, else cls
  std::string dtype = "fp32";
  std::string log_level = "info";
  std::string model_control = "";  // empty: poll with a repository, none with --model
  std::string memory_limit = "0";
  std::vector<std::string> pins;  // NAME=VERSION
  // Whole seconds on the command line; the HTTP layer's defaults.
  int header_timeout_s = static_cast<int>(server::HttpOptions{}.header_timeout.count());
  int idle_timeout_s = static_cast<int>(server::HttpOptions{}.idle_timeout.count());
};

// "6Gi", "512Mi", "800M", "2G", "1048576" -> bytes; "0": the default; "none": no limit (-1).
Result<int64_t> parse_memory_size(const std::string& text) {
  if (text == "none") return int64_t{-1};
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  const std::string unit = text.substr(digits);
  static const std::pair<const char*, int64_t> kUnits[] = {
      {"", 1},     {"Ki", 1LL << 10}, {"Mi", 1LL << 20}, {"Gi", 1LL << 30},     {"Ti", 1LL << 40},
      {"K", 1000}, {"M", 1000000},    {"G", 1000000000}, {"T", 1000000000000LL}};
  for (const auto& [name, scale] : kUnits) {
    if (digits == 0 || digits > 15 || unit != name) continue;
    return static_cast<int64_t>(std::stoll(text.substr(0, digits))) * scale;
  }
  return invalid_argument("bad --memory-limit '" + text +
                          "' (bytes, or with Ki, Mi, Gi, Ti, K, M, G, T; 0: the cgroup limit less "
                          "a margin; none: no limit)");
}

int run_serve(ServeArgs& args) {
  server::ServeOptions& o = args.options;
  runtime::RepositoryOptions& repository = o.repository;
  if (repository.root.empty() && o.model.model_dir.empty()) {
    return fail(invalid_argument("serve needs --model DIR or --model-repository DIR"));
  }
  const std::string control = !args.model_control.empty() ? args.model_control
                              : repository.root.empty()   ? "none"
                                                          : "poll";
  const auto mode = runtime::parse_model_control(control);
  if (!mode) {
    return fail(invalid_argument("bad --model-control '" + control + "' (poll, explicit or none)"));
  }
  repository.control = *mode;
  if (repository.root.empty() && repository.control != runtime::ModelControl::kNone) {
    return fail(invalid_argument("--model-control " + control +
                                 " needs --model-repository (--model serves one fixed model)"));
  }
  auto memory = parse_memory_size(args.memory_limit);
  if (!memory.is_ok()) return fail(memory.status());
  repository.memory_limit = *memory;
  for (const std::string& pin : args.pins) {
    const size_t eq = pin.find('=');
    const auto version = eq == std::string::npos
                             ? std::nullopt
                             : runtime::parse_version_number(std::string_view(pin).substr(eq + 1));
    if (eq == 0 || !version) {
      return fail(
          invalid_argument("bad --pin-version '" + pin + "' (NAME=VERSION, a positive integer)"));
    }
    repository.pinned_versions[pin.substr(0, eq)] = *version;
  }
  if (!o.api.admin_key.empty() && o.api.admin_key == o.api.api_key) {
    return fail(invalid_argument("--admin-key must differ from --api-key"));
  }
  if (!args.pooling.empty()) {
    auto pooling = runtime::parse_pooling(args.pooling);
    if (!pooling.is_ok()) return fail(pooling.status());
    o.model.pooling = *pooling;
  }
  o.model.engine.precision = dtype_precision(args.dtype);
  o.model.engine.auto_precision = args.dtype == "auto";
  o.http.header_timeout = std::chrono::seconds(args.header_timeout_s);
  o.http.idle_timeout = std::chrono::seconds(args.idle_timeout_s);
  LogLevel level = LogLevel::kInfo;
  if (!parse_log_level(args.log_level, level)) {
    return fail(
        invalid_argument("bad --log-level '" + args.log_level + "' (debug, info, warning, error)"));
  }
  set_log_level(level);
  return server::serve(o);
}

// The batch API's and the job worker's options (serve and worker).
void add_jobs_options(CLI::App* cmd, jobs::JobsOptions& j, bool worker) {
  cmd->add_option("--redis", j.redis_url,
                  worker ? "Redis of the job streams: redis://[[user]:password@]host[:port][/db] "
                           "(no TLS: reach a TLS Redis through a sidecar or the mesh)"
                         : "Redis for the batch API (/v1/files, /v1/batches): "
                           "redis://[[user]:password@]host[:port][/db]; without it those routes "
                           "answer 503 (no TLS: reach a TLS Redis through a sidecar or the mesh)")
      ->envname("REDIS_URL");
  if (!worker) {
    cmd->add_flag("--jobs", j.consume,
                  "Also run the job worker in this process (one machine: API and worker in one)")
        ->envname("JOBS");
  }
  cmd->add_option("--jobs-prefix", j.prefix, "Prefix of every Redis key of the batch API")
      ->envname("JOBS_PREFIX")
      ->capture_default_str();
  cmd->add_option("--jobs-consumer", j.consumer,
                  "The worker's name in the consumer group (default: the host name, which is the "
                  "pod name on Kubernetes)")
      ->envname("JOBS_CONSUMER");
  cmd->add_option("--jobs-visibility-timeout", j.visibility_timeout_s,
                  "Seconds a line held by a worker may idle before another reclaims it (the "
                  "holder renews its claim while it computes)")
      ->envname("JOBS_VISIBILITY_TIMEOUT")
      ->check(CLI::Range(0.5, 86400.0))
      ->capture_default_str();
  cmd->add_option("--jobs-max-deliveries", j.max_deliveries,
                  "Deliveries of a line before it goes to the dead letters and the error file")
      ->envname("JOBS_MAX_DELIVERIES")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  cmd->add_option("--jobs-read-count", j.read_count, "Lines a worker reads at once")
      ->envname("JOBS_READ_COUNT")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  cmd->add_option("--jobs-max-file-bytes", j.max_file_bytes,
                  "Bytes of an uploaded batch file (413 beyond)")
      ->envname("JOBS_MAX_FILE_BYTES")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 32))
      ->capture_default_str();
  cmd->add_option("--jobs-max-lines", j.max_lines, "Lines of a batch's input file")
      ->envname("JOBS_MAX_LINES")
      ->check(CLI::Range(int64_t{1}, int64_t{10000000}))
      ->capture_default_str();
  cmd->add_option("--jobs-max-backlog", j.max_backlog,
                  "Lines waiting or held in all job queues; a batch that would pass it is 429")
      ->envname("JOBS_MAX_BACKLOG")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40))
      ->capture_default_str();
  cmd->add_option("--jobs-ttl", j.ttl_s, "Seconds files, and batches once final, are kept in Redis")
      ->envname("JOBS_TTL")
      ->check(CLI::Range(1.0, 365.0 * 86400))
      ->capture_default_str();
  cmd->add_option("--jobs-completion-window-seconds", j.expiry_s,
                  "Seconds the completion window \"24h\" gives a batch before it expires")
      ->envname("JOBS_COMPLETION_WINDOW_SECONDS")
      ->check(CLI::Range(1.0, 30.0 * 86400))
      ->capture_default_str();
}

void add_serve_options(CLI::App* cmd, const std::shared_ptr<ServeArgs>& args, bool worker) {
  server::ServeOptions& o = args->options;
  runtime::ModelOptions& model = o.model;
  runtime::SchedulerOptions& scheduler = o.model.service.scheduler;
  cmd->add_option("--model", model.model_dir,
                  "Model directory: a repository of one model (ignored with --model-repository)")
      ->envname("MODEL_NAME");
  cmd->add_option("--model-repository", o.repository.root,
                  "Repository of models: DIR/<name>/<version>/ (a model directory each), "
                  "DIR/<name>/tideserve.json optional")
      ->envname("MODEL_REPOSITORY");
  cmd->add_option("--model-control", args->model_control,
                  "poll (default with a repository: new versions load, removed ones unload), "
                  "explicit (the repository API loads and unloads) or none")
      ->envname("MODEL_CONTROL")
      ->check(CLI::IsMember({"poll", "explicit", "none"}));
  cmd->add_option("--repository-poll-seconds", o.repository.poll_seconds,
                  "Seconds between reads of the repository (--model-control poll)")
      ->envname("REPOSITORY_POLL_SECONDS")
      ->check(CLI::Range(0.05, 86400.0))
      ->capture_default_str();
  cmd->add_option("--pin-version", args->pins,
                  "NAME=VERSION: that model serves exactly that version, whatever its "
                  "tideserve.json says (repeatable; env: comma-separated)")
      ->envname("PIN_VERSIONS")
      ->delimiter(',');
  cmd->add_option("--default-model", o.repository.default_model,
                  "The model of requests that name none (default: the only model)")
      ->envname("DEFAULT_MODEL");
  cmd->add_option("--memory-limit", args->memory_limit,
                  "Refuse a model load that would take resident memory past this (6Gi, 800M; 0: "
                  "the cgroup limit less a tenth, at most 1 GiB; none: no check)")
      ->envname("MEMORY_LIMIT")
      ->capture_default_str();
  cmd->add_option("--admin-key", o.api.admin_key,
                  "Bearer key of the repository routes (/v2/repository/...); without it they are "
                  "off. Must differ from --api-key")
      ->envname("ADMIN_KEY");
  cmd->add_option("--model-id", model.name, "Model name in APIs (default: directory name)")
      ->envname("MODEL_ID");
  cmd->add_option("--model-version", model.version, "Model version reported by the APIs")
      ->envname("MODEL_VERSION")
      ->capture_default_str();
  cmd->add_option("--host", o.http.host, "Listen address")->envname("HOST")->capture_default_str();
  cmd->add_option("--port", o.http.port, "Listen port (0: any free port)")
      ->envname("PORT")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  cmd->add_option("--io-threads", o.io_threads, "HTTP IO threads")
      ->envname("IO_THREADS")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  cmd->add_option("--threads", model.engine.threads,
                  "Engine threads (0 = usable CPUs: affinity, capped by a cgroup CPU quota)")
      ->envname("TIDESERVE_THREADS")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  cmd->add_option("--tokenization-workers", model.service.task_threads,
                  "Threads that tokenize and serialize off the IO threads (0 = a quarter of the "
                  "usable CPUs, 1 to 4)")
      ->envname("TOKENIZATION_WORKERS")
      ->check(CLI::Range(0, 64))
      ->capture_default_str();
  add_dtype_option(cmd, args->dtype);
  add_reference_kernels_option(cmd, model.engine.allow_reference_kernels);
  add_pooling_option(cmd, args->pooling)->envname("POOLING");
  cmd->add_option("--max-concurrent-requests", scheduler.max_concurrent_requests,
                  "Inputs in flight before 429")
      ->envname("MAX_CONCURRENT_REQUESTS")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30))
      ->capture_default_str();
  cmd->add_option("--max-client-batch-size", o.api.max_client_batch_size, "Inputs per request")
      ->envname("MAX_CLIENT_BATCH_SIZE")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20))
      ->capture_default_str();
  cmd->add_option("--max-input-length", model.max_input_length,
                  "Tokens per input (0 = the model's max_position_embeddings)")
      ->envname("MAX_INPUT_LENGTH")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 20))
      ->capture_default_str();
  cmd->add_option("--max-tokenize-tokens", o.api.max_tokenize_tokens,
                  "Tokens one /tokenize request may answer, all inputs together (413 beyond)")
      ->envname("MAX_TOKENIZE_TOKENS")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30))
      ->capture_default_str();
  cmd->add_option("--max-inflight-bytes", o.api.max_inflight_bytes,
                  "Bytes of request bodies held in flight; a body that would pass it is 429 (0: a "
                  "quarter of the cgroup memory limit, else 1 GiB)")
      ->envname("MAX_INFLIGHT_BYTES")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40))
      ->capture_default_str();
  cmd->add_option("--max-connections", o.http.max_connections,
                  "Connections open at once; beyond it a new one gets 503 and is closed (0: the "
                  "open-files limit less 64)")
      ->envname("MAX_CONNECTIONS")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 20))
      ->capture_default_str();
  cmd->add_option("--max-chunks-per-document", model.service.max_chunks_per_document,
                  "Chunks one document may make with \"chunking\" (413 beyond)")
      ->envname("MAX_CHUNKS_PER_DOCUMENT")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20))
      ->capture_default_str();
  cmd->add_option("--max-document-bytes", model.service.max_document_bytes,
                  "Bytes of one document with \"chunking\" (413 beyond; the payload limit applies "
                  "too)")
      ->envname("MAX_DOCUMENT_BYTES")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30))
      ->capture_default_str();
  cmd->add_option("--max-batch-tokens", scheduler.max_batch_tokens, "Real tokens per engine batch")
      ->envname("MAX_BATCH_TOKENS")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24))
      ->capture_default_str();
  cmd->add_option("--max-batch-requests", scheduler.max_batch_requests, "Inputs per engine batch")
      ->envname("MAX_BATCH_REQUESTS")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20))
      ->capture_default_str();
  cmd->add_option("--batch-wait-us", scheduler.batch_wait_us,
                  "Wait for more work before a batch (us)")
      ->envname("BATCH_WAIT_US")
      ->check(CLI::Range(int64_t{0}, int64_t{1000000}))
      ->capture_default_str();
  cmd->add_option("--api-key", o.api.api_key, "Bearer key required on inference routes")
      ->envname("API_KEY");
  cmd->add_option("--payload-limit", o.http.payload_limit,
                  "Request body limit in bytes (413 beyond)")
      ->envname("PAYLOAD_LIMIT")
      ->check(CLI::Range(int64_t{1024}, int64_t{1} << 30))
      ->capture_default_str();
  cmd->add_option("--header-timeout", args->header_timeout_s,
                  "Seconds to receive a whole request once it started")
      ->envname("HEADER_TIMEOUT")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  cmd->add_option("--idle-timeout", args->idle_timeout_s,
                  "Seconds a keep-alive connection may idle")
      ->envname("IDLE_TIMEOUT")
      ->check(CLI::Range(1, 86400))
      ->capture_default_str();
  cmd->add_option("--max-requests-per-connection", o.http.max_requests_per_connection,
                  "Keep-alive cap")
      ->envname("MAX_REQUESTS_PER_CONNECTION")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30))
      ->capture_default_str();
  cmd->add_option("--drain-delay", o.lifecycle.drain_delay_s,
                  "Seconds to keep answering after SIGTERM before closing the listener")
      ->envname("DRAIN_DELAY")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  cmd->add_option("--shutdown-timeout", o.lifecycle.shutdown_timeout_s,
                  "Seconds after SIGTERM by which the process exits")
      ->envname("SHUTDOWN_TIMEOUT")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  cmd->add_option("--log-level", args->log_level, "debug, info, warning or error")
      ->envname("LOG_LEVEL")
      ->check(CLI::IsMember({"debug", "info", "warning", "error"}))
      ->capture_default_str();
  add_jobs_options(cmd, o.jobs, worker);
  cmd->callback([args]() { throw CLI::RuntimeError(run_serve(*args)); });
}

}  // namespace

void add_serve_command(CLI::App& app) {
  auto args = std::make_shared<ServeArgs>();
  add_serve_options(app.add_subcommand("serve", "Serve a model over HTTP"), args, false);
}

void add_worker_command(CLI::App& app) {
  auto args = std::make_shared<ServeArgs>();
  args->options.api.worker = true;
  args->options.jobs.consume = true;
  args->options.http.port = 8081;
  add_serve_options(
      app.add_subcommand("worker",
                         "Compute batch jobs from Redis (the OpenAI Batch API's lines); its port "
                         "answers only the probes and /metrics"),
      args, true);
}

void add_healthcheck_command(CLI::App& app) {
  auto url = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand(
      "healthcheck", "Exit 0 when the server's health URL answers 200, else 1 (for HEALTHCHECK)");
  cmd->add_option("--url", *url, "Health URL (default http://127.0.0.1:$PORT/health)")
      ->envname("HEALTHCHECK_URL");
  cmd->callback([url]() {
    std::string target = *url;
    if (target.empty()) {
      const char* port = std::getenv("PORT");
      target =
          std::string("http://127.0.0.1:") + (port != nullptr && *port ? port : "8000") + "/health";
    }
    std::string error;
    auto parsed = loadgen::parse_url(target);
    if (!parsed.is_ok()) {
      error = parsed.status().message();
    } else if (auto answer = loadgen::http_get(*parsed, parsed->path); !answer.is_ok()) {
      error = answer.status().message();
    } else if (answer->status == 200) {
      throw CLI::RuntimeError(0);
    } else {
      error = target + " answered " + std::to_string(answer->status);
    }
    std::fprintf(stderr, "tideserve: unhealthy: %s\n", error.c_str());
    throw CLI::RuntimeError(1);
  });
}

}  // namespace tideserve::cli
