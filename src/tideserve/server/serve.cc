#include "tideserve/server/serve.h"

#include <csignal>
#include <filesystem>
#include <future>
#include <memory>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include "tideserve/engine/bert_encoder.h"
#include "tideserve/model/bert_model.h"
#include "tideserve/runtime/encoder_runner.h"
#include "tideserve/runtime/scheduler.h"
#include "tideserve/server/api.h"
#include "tideserve/server/http_server.h"
#include "tideserve/server/metrics.h"
#include "tideserve/text/tokenizer.h"

namespace tideserve::server {

namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kVersion = "0.1.0";

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Everything that exists once the model is loaded, destroyed in reverse order.
struct LoadedModel {
  std::unique_ptr<BertModel> model;
  std::unique_ptr<text::Tokenizer> tokenizer;
  std::unique_ptr<engine::BertEncoder> encoder;
  std::unique_ptr<runtime::EncoderRunner> runner;
  std::unique_ptr<runtime::Scheduler> scheduler;
};

Status load_model(const ServeOptions& options, Metrics& metrics, LoadedModel& loaded,
                  int64_t& max_input_length, double& warm_up_s) {
  auto model = BertModel::load(options.model_dir);
  if (!model.is_ok()) return model.status();
  loaded.model = std::move(model).value();
  auto tokenizer = text::Tokenizer::load(options.model_dir);
  if (!tokenizer.is_ok()) return tokenizer.status();
  loaded.tokenizer = std::move(tokenizer).value();
  const BertConfig& config = loaded.model->config();
  if (static_cast<int64_t>(loaded.tokenizer->vocab_size()) > config.vocab_size) {
    return invalid_argument(
        fmt::format("{}: the tokenizer has {} tokens but the model's vocab_size "
                    "is {}",
                    options.model_dir, loaded.tokenizer->vocab_size(), config.vocab_size));
  }
  max_input_length =
      options.max_input_length > 0 ? options.max_input_length : config.max_position_embeddings;
  if (max_input_length > config.max_position_embeddings) {
    return invalid_argument(
        fmt::format("--max-input-length {} exceeds the model's "
                    "max_position_embeddings {}",
                    max_input_length, config.max_position_embeddings));
  }
  if (max_input_length > options.max_batch_tokens) {
    return invalid_argument(
        fmt::format("--max-batch-tokens {} is smaller than the max input "
                    "length {}",
                    options.max_batch_tokens, max_input_length));
  }
  auto encoder = engine::BertEncoder::create(
      *loaded.model, {.threads = options.engine_threads, .precision = options.precision});
  if (!encoder.is_ok()) return encoder.status();
  loaded.encoder = std::move(encoder).value();
  loaded.runner = std::make_unique<runtime::EncoderRunner>(*loaded.encoder);
  runtime::SchedulerOptions scheduler_options;
  scheduler_options.max_concurrent_requests = options.max_concurrent_requests;
  scheduler_options.max_batch_tokens = options.max_batch_tokens;
  scheduler_options.max_batch_requests = options.max_batch_requests;
  scheduler_options.batch_wait_us = options.batch_wait_us;
  loaded.scheduler = std::make_unique<runtime::Scheduler>(*loaded.runner, scheduler_options);
  loaded.scheduler->set_batch_observer([&metrics](const runtime::BatchStats& stats) {
    metrics.observe_batch(stats.sequences, stats.tokens);
  });
  if (options.warm_up) {
    const auto warm_up_start = Clock::now();
    TS_RETURN_IF_ERROR(
        runtime::warm_up(*loaded.runner, max_input_length, options.max_batch_tokens));
    warm_up_s = seconds_since(warm_up_start);
  }
  loaded.scheduler->start();
  return Status::ok();
}

}  // namespace

int serve(const ServeOptions& options) {
  const auto process_start = Clock::now();
  ApiOptions api_options;
  api_options.model_id = options.model_id.empty()
                             ? std::filesystem::path(options.model_dir).filename().string()
                             : options.model_id;
  if (api_options.model_id.empty()) api_options.model_id = "model";
  api_options.model_version = options.model_version;
  api_options.version = kVersion;
  api_options.api_key = options.api_key;
  api_options.pooling = options.pooling;
  api_options.max_client_batch_size = options.max_client_batch_size;
  api_options.max_concurrent_requests = options.max_concurrent_requests;
  api_options.max_batch_tokens = options.max_batch_tokens;
  api_options.max_batch_requests = options.max_batch_requests;
  api_options.max_input_length = options.max_input_length;

  boost::asio::io_context io(options.io_threads);
  Metrics metrics(kVersion);
  Api api(io, api_options, metrics);
  api.set_ready(false, "loading model");

  HttpOptions http_options;
  http_options.host = options.host;
  http_options.port = static_cast<uint16_t>(options.port);
  http_options.payload_limit = options.payload_limit;
  http_options.header_timeout = std::chrono::seconds(options.header_timeout_s);
  http_options.idle_timeout = std::chrono::seconds(options.idle_timeout_s);
  http_options.max_requests_per_connection = options.max_requests_per_connection;
  HttpServer http(
      io, http_options,
      [&api](Request&& request, std::shared_ptr<Responder> responder) {
        api.handle(std::move(request), std::move(responder));
      },
      [&api](const TransportError& error, unsigned version) {
        return api.transport_error(error, version);
      });
  if (Status st = http.listen(); !st.is_ok()) {
    log_event(LogLevel::kError, "startup_failed", {{"error", st.message()}});
    return 1;
  }
  log_event(LogLevel::kInfo, "listening",
            {{"host", options.host},
             {"port", static_cast<int>(http.port())},
             {"io_threads", options.io_threads}});

  std::promise<void> shutdown_requested;
  std::atomic<bool> shutdown_flag{false};
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int signal) {
    if (ec) return;
    if (!shutdown_flag.exchange(true)) {
      log_event(LogLevel::kInfo, "shutting_down",
                {{"signal", signal == SIGTERM ? "SIGTERM" : "SIGINT"},
                 {"drain_delay_s", options.drain_delay_s}});
      api.set_ready(false, "shutting down");
      // From now on every response says Connection: close, so clients reconnect (to another
      // replica once the endpoint is gone) instead of reusing a connection we will close.
      http.stop_keep_alive();
      shutdown_requested.set_value();
    }
  });

  std::vector<std::thread> io_threads;
  for (int i = 0; i < options.io_threads; ++i) io_threads.emplace_back([&io] { io.run(); });

  // Load and warm up off the IO threads: liveness answers meanwhile.
  LoadedModel loaded;
  log_event(LogLevel::kInfo, "loading_model",
            {{"model", options.model_dir}, {"version", options.model_version}});
  const auto load_start = Clock::now();
  int64_t max_input_length = 0;
  double warm_up_s = 0;
  Status load_status = load_model(options, metrics, loaded, max_input_length, warm_up_s);
  int exit_code = 0;
  if (!load_status.is_ok()) {
    log_event(LogLevel::kError, "model_load_failed", {{"error", load_status.message()}});
    exit_code = 1;
  } else {
    const double load_s = seconds_since(load_start);
    metrics.set_model_load_seconds(load_s);
    metrics.set_model_info(api_options.model_id, options.model_version,
                           engine::precision_name(loaded.encoder->precision()),
                           engine::cpu_isa_name());
    ModelHandle handle;
    handle.tokenizer = loaded.tokenizer.get();
    handle.scheduler = loaded.scheduler.get();
    handle.hidden_size = loaded.model->config().hidden_size;
    handle.dtype = engine::precision_name(loaded.encoder->precision());
    handle.vocab_size = loaded.model->config().vocab_size;
    handle.max_position_embeddings = loaded.model->config().max_position_embeddings;
    api.set_max_input_length(max_input_length);
    api.set_model(handle);
    if (!shutdown_flag.load()) api.set_ready(true, "");
    log_event(LogLevel::kInfo, "model_loaded",
              {{"model", options.model_dir},
               {"model_id", api_options.model_id},
               {"version", options.model_version},
               {"device", "cpu"},
               {"dtype", engine::precision_name(loaded.encoder->precision())},
               {"cpu_isa", engine::cpu_isa_name()},
               {"matmul", loaded.encoder->matmul_impl()},
               {"engine_threads", loaded.encoder->threads()},
               {"duration_ms", load_s * 1000.0},
               {"warm_up_ms", warm_up_s * 1000.0},
               {"ready_ms", seconds_since(process_start) * 1000.0}});
    shutdown_requested.get_future().wait();
  }

  // Drain: keep answering during drain_delay, then stop accepting and finish admitted work.
  const auto drain_start = Clock::now();
  const auto deadline = drain_start + std::chrono::milliseconds(
                                          static_cast<int64_t>(options.shutdown_timeout_s * 1000));
  if (exit_code == 0) {
    std::this_thread::sleep_for(
        std::chrono::milliseconds(static_cast<int64_t>(options.drain_delay_s * 1000)));
  }
  http.stop_keep_alive();
  http.close_listener();
  // Every connection that was accepted gets its request read and answered (the scheduler keeps
  // running meanwhile); idle keep-alive connections are not waited for.
  while (exit_code == 0 && http.active_requests() > 0 && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const int64_t unanswered = http.active_requests();
  bool drained = true;
  if (loaded.scheduler) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    drained = loaded.scheduler->drain(std::max(left, std::chrono::milliseconds(0)));
  }
  signals.cancel();
  io.stop();
  for (std::thread& t : io_threads) t.join();
  log_event(
      LogLevel::kInfo, "shutdown_complete",
      {{"drain_ms", seconds_since(drain_start) * 1000.0},
       {"drained", drained && unanswered == 0},
       {"unanswered_requests", static_cast<long long>(unanswered)},
       {"cancelled_sequences",
        static_cast<long long>(loaded.scheduler ? loaded.scheduler->cancelled_sequences() : 0)},
       {"uptime_s", seconds_since(process_start)}});
  if (exit_code == 0 && (!drained || unanswered > 0)) exit_code = 1;
  return exit_code;
}

}  // namespace tideserve::server
