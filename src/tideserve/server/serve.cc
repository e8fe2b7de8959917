#include "tideserve/server/serve.h"

#include <csignal>
#include <future>
#include <memory>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include "tideserve/server/metrics.h"
#include "tideserve/util/clock.h"
#include "tideserve/util/log.h"
#include "tideserve/util/version.h"

namespace tideserve::server {

int serve(const ServeOptions& options) {
  const auto process_start = Clock::now();
  runtime::ModelOptions model_options = options.model;
  model_options.name = runtime::model_name(model_options);
  ApiOptions api_options = options.api;
  api_options.model_id = model_options.name;
  api_options.model_version = model_options.version;

  boost::asio::io_context io(options.io_threads);
  Metrics metrics(kVersion);
  Api api(api_options, metrics);
  api.set_ready(false, "loading model");

  HttpOptions http_options = options.http;
  http_options.on_connection_refused = [&metrics] { metrics.add_refused_connection(); };
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
            {{"host", options.http.host},
             {"port", static_cast<int>(http.port())},
             {"io_threads", options.io_threads},
             {"max_connections", static_cast<long long>(http.max_connections())},
             {"max_inflight_bytes", static_cast<long long>(api.max_inflight_bytes())}});

  std::promise<void> shutdown_requested;
  std::atomic<bool> shutdown_flag{false};
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int signal) {
    if (ec) return;
    if (!shutdown_flag.exchange(true)) {
      log_event(LogLevel::kInfo, "shutting_down",
                {{"signal", signal == SIGTERM ? "SIGTERM" : "SIGINT"},
                 {"drain_delay_s", options.lifecycle.drain_delay_s}});
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
  log_event(LogLevel::kInfo, "loading_model",
            {{"model", model_options.model_dir}, {"version", model_options.version}});
  auto loaded = runtime::ModelInstance::load(model_options);
  std::unique_ptr<runtime::ModelInstance> instance;
  int exit_code = 0;
  if (!loaded.is_ok()) {
    log_event(LogLevel::kError, "model_load_failed", {{"error", loaded.status().message()}});
    exit_code = 1;
  } else {
    instance = std::move(loaded).value();
    const runtime::LoadReport& report = instance->report();
    instance->service().set_batch_observer([&metrics](const runtime::BatchStats& stats) {
      metrics.observe_batch(stats.sequences, stats.tokens);
    });
    metrics.set_model_load_seconds(report.load_ms / 1000.0);
    metrics.set_model_info(model_options.name, model_options.version, instance->info().dtype,
                           runtime::cpu_isa_name());
    api.set_service(&instance->service());
    if (!shutdown_flag.load()) api.set_ready(true, "");
    log_event(LogLevel::kInfo, "model_loaded",
              {{"model", model_options.model_dir},
               {"model_id", model_options.name},
               {"version", model_options.version},
               {"device", "cpu"},
               {"dtype", instance->info().dtype},
               {"kind", runtime::model_kind_name(instance->info().kind)},
               {"pooling", runtime::pooling_name(instance->info().pooling)},
               {"pooling_source", instance->info().pooling_source},
               {"output_size", instance->info().output_size},
               {"cpu_isa", runtime::cpu_isa_name()},
               {"matmul", report.matmul},
               {"engine_threads", report.engine_threads},
               {"tokenization_workers", instance->service().task_threads()},
               {"duration_ms", report.load_ms},
               {"warm_up_ms", report.warm_up_ms},
               {"ready_ms", seconds_since(process_start) * 1000.0}});
    shutdown_requested.get_future().wait();
  }

  // Drain: keep answering during drain_delay, then stop accepting and finish admitted work.
  const auto drain_start = Clock::now();
  const auto deadline =
      drain_start +
      std::chrono::milliseconds(static_cast<int64_t>(options.lifecycle.shutdown_timeout_s * 1000));
  if (exit_code == 0) {
    std::this_thread::sleep_for(
        std::chrono::milliseconds(static_cast<int64_t>(options.lifecycle.drain_delay_s * 1000)));
  }
  http.stop_keep_alive();
  http.close_listener();
  // Every connection that was accepted gets its request read and answered (the engine keeps
  // running meanwhile); idle keep-alive connections are not waited for.
  while (exit_code == 0 && http.active_requests() > 0 && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const int64_t unanswered = http.active_requests();
  bool drained = true;
  if (instance) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    drained = instance->service().drain(std::max(left, std::chrono::milliseconds(0)));
  }
  signals.cancel();
  io.stop();
  for (std::thread& t : io_threads) t.join();
  log_event(LogLevel::kInfo, "shutdown_complete",
            {{"drain_ms", seconds_since(drain_start) * 1000.0},
             {"drained", drained && unanswered == 0},
             {"unanswered_requests", static_cast<long long>(unanswered)},
             {"cancelled_sequences",
              static_cast<long long>(instance ? instance->service().cancelled_inputs() : 0)},
             {"uptime_s", seconds_since(process_start)}});
  if (exit_code == 0 && (!drained || unanswered > 0)) exit_code = 1;
  return exit_code;
}

}  // namespace tideserve::server
