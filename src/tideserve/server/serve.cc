#include "tideserve/server/serve.h"

#include <csignal>
#include <functional>
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
  runtime::RepositoryOptions repository_options = options.repository;
  repository_options.defaults = options.model;
  runtime::ModelOptions& model_options = repository_options.defaults;
  model_options.name = runtime::model_name(model_options);
  ApiOptions api_options = options.api;
  api_options.model_id =
      repository_options.root.empty() ? model_options.name : repository_options.default_model;
  api_options.model_version = repository_options.root.empty() ? model_options.version : "";

  boost::asio::io_context io(options.io_threads);
  Metrics metrics(kVersion);
  Api api(api_options, metrics);
  api.set_ready(false, "loading models");

  runtime::ModelRepository::Observer observer;
  observer.loaded = [&metrics](runtime::EmbeddingService& service,
                               const runtime::LoadReport& report, int64_t memory) {
    service.set_batch_observer([&metrics](const runtime::BatchStats& stats) {
      metrics.observe_batch(stats.sequences, stats.tokens);
    });
    metrics.set_model_load_seconds(report.load_ms / 1000.0);
    metrics.model_loaded(service.info().name, service.info().version, service.info().dtype,
                         runtime::cpu_isa_name(), memory);
  };
  observer.load_failed = [&metrics](const std::string& name, const std::string& version,
                                    const Status&) {
    metrics.add_model_load_failure(name, version);
  };
  observer.unloaded = [&metrics](const std::string& name, const std::string& version) {
    metrics.model_unloaded(name, version);
  };
  runtime::ModelRepository repository(repository_options, std::move(observer));
  api.set_repository(&repository);
  std::unique_ptr<JobsService> jobs;
  if (!options.jobs.redis_url.empty()) {
    jobs = std::make_unique<JobsService>(options.jobs, api_options.max_client_batch_size, metrics);
  } else if (options.jobs.consume) {
    log_event(LogLevel::kError, "startup_failed",
              {{"error", "the job worker needs Redis: --redis URL (env REDIS_URL)"}});
    return 1;
  }

  HttpOptions http_options = options.http;
  // A batch file may be larger than any inference body (multipart's own bytes on top).
  const int64_t file_limit = options.jobs.max_file_bytes + (64 << 10);
  if (jobs && file_limit > http_options.payload_limit) {
    http_options.payload_limit_for = [file_limit](std::string_view target) -> int64_t {
      return target == "/v1/files" ? file_limit : 0;
    };
  }
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
  // SIGHUP: read the repository again (poll and explicit model control).
  boost::asio::signal_set hangup(io, SIGHUP);
  std::function<void(const boost::system::error_code&, int)> on_hangup =
      [&](const boost::system::error_code& ec, int) {
        if (ec) return;
        repository.rescan();
        hangup.async_wait(on_hangup);
      };
  hangup.async_wait(on_hangup);

  std::vector<std::thread> io_threads;
  for (int i = 0; i < options.io_threads; ++i) io_threads.emplace_back([&io] { io.run(); });
  if (jobs) {
    if (Status st = jobs->start(&repository); !st.is_ok()) {
      log_event(LogLevel::kError, "startup_failed", {{"error", st.message()}});
      shutdown_flag.store(true);
      signals.cancel();
      hangup.cancel();
      io.stop();
      for (std::thread& t : io_threads) t.join();
      return 1;
    }
    api.set_jobs(jobs.get());
  }

  // Load and warm up off the IO threads: liveness answers meanwhile.
  int exit_code = 0;
  if (Status st = repository.start(); !st.is_ok()) {
    if (!repository_options.root.empty()) {
      log_event(LogLevel::kError, "model_load_failed", {{"error", st.message()}});
    }
    exit_code = 1;
  } else {
    if (!shutdown_flag.load()) api.set_ready(true, "");
    std::string reason;
    const bool ready = repository.ready(&reason);
    log_event(LogLevel::kInfo, "serving",
              {{"model_repository", repository_options.root},
               {"model_control", runtime::model_control_name(repository_options.control)},
               {"models", static_cast<long long>(repository.served().size())},
               {"ready", ready},
               {"reason", reason},
               {"memory_limit_bytes", static_cast<long long>(repository.memory_limit())},
               {"ready_ms", seconds_since(process_start) * 1000.0}});
    shutdown_requested.get_future().wait();
  }

  // Drain: keep answering during drain_delay, then stop accepting and finish admitted work.
  const auto drain_start = Clock::now();
  const auto deadline =
      drain_start +
      std::chrono::milliseconds(static_cast<int64_t>(options.lifecycle.shutdown_timeout_s * 1000));
  // A worker has no Service endpoints to leave: it starts finishing what it holds at once.
  if (exit_code == 0 && !options.api.worker) {
    std::this_thread::sleep_for(
        std::chrono::milliseconds(static_cast<int64_t>(options.lifecycle.drain_delay_s * 1000)));
  }
  if (jobs) jobs->stop_consuming(deadline);
  http.stop_keep_alive();
  http.close_listener();
  // Every connection that was accepted gets its request read and answered (the engine keeps
  // running meanwhile); idle keep-alive connections are not waited for.
  while (exit_code == 0 && http.active_requests() > 0 && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const int64_t unanswered = http.active_requests();
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  const bool drained = repository.drain(std::max(left, std::chrono::milliseconds(0)));
  int64_t cancelled = 0;
  for (const auto& service : repository.services()) cancelled += service->cancelled_inputs();
  if (jobs) jobs->stop();
  signals.cancel();
  hangup.cancel();
  io.stop();
  for (std::thread& t : io_threads) t.join();
  log_event(LogLevel::kInfo, "shutdown_complete",
            {{"drain_ms", seconds_since(drain_start) * 1000.0},
             {"drained", drained && unanswered == 0},
             {"unanswered_requests", static_cast<long long>(unanswered)},
             {"cancelled_sequences", static_cast<long long>(cancelled)},
             {"uptime_s", seconds_since(process_start)}});
  if (exit_code == 0 && (!drained || unanswered > 0)) exit_code = 1;
  return exit_code;
}

}  // namespace tideserve::server
