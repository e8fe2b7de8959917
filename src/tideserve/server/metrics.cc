#include "tideserve/server/metrics.h"

#include <prometheus/text_serializer.h>

#include "tideserve/util/cpus.h"

namespace tideserve::server {

namespace {

// Latency buckets from 0.5 ms to 30 s, about four per decade, fine enough for p50..p99.9.
prometheus::Histogram::BucketBoundaries latency_buckets() {
  return {0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03,
          0.05,   0.075, 0.1,   0.15,  0.2,   0.3,    0.5,  0.75,  1.0,  1.5,
          2.0,    3.0,   5.0,   7.5,   10.0,  15.0,   20.0, 30.0};
}

prometheus::Histogram::BucketBoundaries powers_of_two(double max) {
  prometheus::Histogram::BucketBoundaries b;
  for (double v = 1; v <= max; v *= 2) b.push_back(v);
  return b;
}

}  // namespace

Metrics::Metrics(const std::string& version) : registry_(std::make_shared<prometheus::Registry>()) {
  using prometheus::BuildCounter;
  using prometheus::BuildGauge;
  using prometheus::BuildHistogram;
  requests_ = &BuildCounter()
                   .Name("tideserve_requests_total")
                   .Help("HTTP requests answered, by route and status code")
                   .Register(*registry_);
  request_duration_ = &BuildHistogram()
                           .Name("tideserve_request_duration_seconds")
                           .Help("Time from a request's arrival to its response, by route")
                           .Register(*registry_);
  queue_duration_ = &BuildHistogram()
                         .Name("tideserve_queue_duration_seconds")
                         .Help("Time a request waited for the engine")
                         .Register(*registry_)
                         .Add({}, latency_buckets());
  inference_duration_ = &BuildHistogram()
                             .Name("tideserve_inference_duration_seconds")
                             .Help("Engine time of a request (its batches)")
                             .Register(*registry_)
                             .Add({}, latency_buckets());
  batch_size_ = &BuildHistogram()
                     .Name("tideserve_batch_size")
                     .Help("Sequences per engine batch")
                     .Register(*registry_)
                     .Add({}, powers_of_two(1024));
  batch_tokens_ = &BuildHistogram()
                       .Name("tideserve_batch_tokens")
                       .Help("Real (unpadded) tokens per engine batch")
                       .Register(*registry_)
                       .Add({}, powers_of_two(65536));
  input_length_ = &BuildHistogram()
                       .Name("tideserve_input_length_tokens")
                       .Help("Tokens per input after tokenization")
                       .Register(*registry_)
                       .Add({}, powers_of_two(8192));
  queue_depth_ = &BuildGauge()
                      .Name("tideserve_queue_depth")
                      .Help("Inputs waiting for an engine batch")
                      .Register(*registry_)
                      .Add({});
  inflight_ = &BuildGauge()
                   .Name("tideserve_inflight_requests")
                   .Help("Inputs admitted and not yet answered")
                   .Register(*registry_)
                   .Add({});
  inflight_bytes_ = &BuildGauge()
                         .Name("tideserve_inflight_bytes")
                         .Help("Bytes of request bodies held by requests in flight")
                         .Register(*registry_)
                         .Add({});
  ready_ = &BuildGauge()
                .Name("tideserve_ready")
                .Help("1 when the model is loaded and warm and the server is not draining")
                .Register(*registry_)
                .Add({});
  model_load_ = &BuildGauge()
                     .Name("tideserve_model_load_duration_seconds")
                     .Help("Time to load and warm up the model")
                     .Register(*registry_)
                     .Add({});
  rejected_ = &BuildCounter()
                   .Name("tideserve_rejected_requests_total")
                   .Help("Requests refused with 429 because the server was at capacity")
                   .Register(*registry_)
                   .Add({});
  cancelled_ = &BuildCounter()
                    .Name("tideserve_cancelled_requests_total")
                    .Help("Inputs dropped before compute because their client went away")
                    .Register(*registry_)
                    .Add({});
  refused_connections_ = &BuildCounter()
                              .Name("tideserve_refused_connections_total")
                              .Help("Connections answered 503 and closed: over --max-connections")
                              .Register(*registry_)
                              .Add({});
  process_cpu_ = &BuildCounter()
                      .Name("process_cpu_seconds_total")
                      .Help("User and system CPU time spent by the process in seconds")
                      .Register(*registry_)
                      .Add({});
  process_resident_ = &BuildGauge()
                           .Name("process_resident_memory_bytes")
                           .Help("Resident memory size in bytes")
                           .Register(*registry_)
                           .Add({});
  model_info_ = &BuildGauge()
                     .Name("tideserve_model_info")
                     .Help("A model version serving; the value is always 1")
                     .Register(*registry_);
  model_ready_ = &BuildGauge()
                      .Name("tideserve_model_ready")
                      .Help("1 while the model version serves, 0 once it left service")
                      .Register(*registry_);
  model_memory_ = &BuildGauge()
                       .Name("tideserve_model_memory_bytes")
                       .Help("Resident memory the model version's load added (0 once unloaded)")
                       .Register(*registry_);
  model_load_failures_ = &BuildCounter()
                              .Name("tideserve_model_load_failures_total")
                              .Help(
                                  "Loads of a model version that failed (files, shapes, "
                                  "warm-up, memory limit); version empty: its tideserve.json")
                              .Register(*registry_);
  model_requests_ = &BuildCounter()
                         .Name("tideserve_model_requests_total")
                         .Help("Inference requests answered, by model, version and status code")
                         .Register(*registry_);
  model_request_duration_ = &BuildHistogram()
                                 .Name("tideserve_model_request_duration_seconds")
                                 .Help(
                                     "Time from an inference request's arrival to its response, "
                                     "by model and version")
                                 .Register(*registry_);
  BuildGauge()
      .Name("tideserve_build_info")
      .Help("Build information; the value is always 1")
      .Register(*registry_)
      .Add({{"version", version}})
      .Set(1.0);
}

void Metrics::model_loaded(const std::string& model, const std::string& version,
                           const std::string& dtype, const std::string& cpu_isa,
                           int64_t memory_bytes) {
  {
    std::lock_guard<std::mutex> lock(info_mutex_);
    prometheus::Gauge*& info = info_series_[{model, version}];
    if (info == nullptr) {
      info = &model_info_->Add({{"model_id", model},
                                {"model_version", version},
                                {"dtype", dtype},
                                {"cpu_isa", cpu_isa}});
    }
    info->Set(1.0);
  }
  model_ready_->Add({{"model", model}, {"version", version}}).Set(1.0);
  model_memory_->Add({{"model", model}, {"version", version}})
      .Set(static_cast<double>(memory_bytes));
  // Its failure counter exists from 0, so that increase() sees a version's first failure.
  model_load_failures_->Add({{"model", model}, {"version", version}});
}

void Metrics::model_unloaded(const std::string& model, const std::string& version) {
  {
    std::lock_guard<std::mutex> lock(info_mutex_);
    auto it = info_series_.find({model, version});
    if (it != info_series_.end()) {
      model_info_->Remove(it->second);
      info_series_.erase(it);
    }
  }
  model_ready_->Add({{"model", model}, {"version", version}}).Set(0.0);
  model_memory_->Add({{"model", model}, {"version", version}}).Set(0.0);
}

void Metrics::add_model_load_failure(const std::string& model, const std::string& version) {
  model_load_failures_->Add({{"model", model}, {"version", version}}).Increment();
}

void Metrics::observe_model_request(const std::string& model, const std::string& version,
                                    int status_code, double seconds) {
  model_requests_
      ->Add({{"model", model}, {"version", version}, {"code", std::to_string(status_code)}})
      .Increment();
  model_request_duration_->Add({{"model", model}, {"version", version}}, latency_buckets())
      .Observe(seconds);
}

void Metrics::observe_request(std::string_view route, int status_code, double seconds) {
  const std::string r(route);
  requests_->Add({{"route", r}, {"code", std::to_string(status_code)}}).Increment();
  request_duration_->Add({{"route", r}}, latency_buckets()).Observe(seconds);
}

void Metrics::observe_timings(double queue_seconds, double inference_seconds) {
  queue_duration_->Observe(queue_seconds);
  inference_duration_->Observe(inference_seconds);
}

void Metrics::observe_batch(int64_t sequences, int64_t tokens) {
  batch_size_->Observe(static_cast<double>(sequences));
  batch_tokens_->Observe(static_cast<double>(tokens));
}

void Metrics::observe_input_length(int64_t tokens) {
  input_length_->Observe(static_cast<double>(tokens));
}

void Metrics::enable_jobs() {
  using prometheus::BuildCounter;
  using prometheus::BuildGauge;
  using prometheus::BuildHistogram;
  jobs_depth_ = &BuildGauge()
                     .Name("tideserve_jobs_queue_depth")
                     .Help(
                         "Batch lines waiting or held by a worker (the group's lag + pending), "
                         "by queue (model); every pod reports the same value from Redis")
                     .Register(*registry_);
  jobs_lag_ = &BuildGauge()
                   .Name("tideserve_jobs_queue_lag")
                   .Help("Batch lines not yet delivered to a worker (XINFO GROUPS lag), by queue")
                   .Register(*registry_);
  jobs_pending_ = &BuildGauge()
                       .Name("tideserve_jobs_queue_pending")
                       .Help("Batch lines delivered and not yet acknowledged (XPENDING), by queue")
                       .Register(*registry_);
  jobs_redis_up_ = &BuildGauge()
                        .Name("tideserve_jobs_redis_up")
                        .Help("1 when the last Redis round trip of the job janitor succeeded")
                        .Register(*registry_)
                        .Add({});
  jobs_batches_ = &BuildCounter()
                       .Name("tideserve_jobs_batches_total")
                       .Help(
                           "Batches this process created (in_progress, failed) or moved to a "
                           "final status (completed, expired, cancelled)")
                       .Register(*registry_);
  jobs_lines_ = &BuildCounter()
                     .Name("tideserve_jobs_lines_total")
                     .Help(
                         "Batch lines this worker finished, by status: completed, failed (an "
                         "error answer), dead_lettered, retried (a transient failure, left for "
                         "redelivery), reclaimed (taken over from an idle consumer), skipped "
                         "(their batch no longer in progress)")
                     .Register(*registry_);
  for (const char* status :
       {"completed", "failed", "dead_lettered", "retried", "reclaimed", "skipped"}) {
    jobs_lines_->Add({{"status", status}});
  }
  jobs_line_duration_ = &BuildHistogram()
                             .Name("tideserve_jobs_line_duration_seconds")
                             .Help("Time from a line's queueing to its result being written")
                             .Register(*registry_)
                             .Add({}, prometheus::Histogram::BucketBoundaries{
                                          0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800,
                                          3600, 7200, 21600, 86400});
}

void Metrics::set_jobs_queue(const std::string& queue, int64_t lag, int64_t pending) {
  if (jobs_depth_ == nullptr) return;
  jobs_depth_->Add({{"queue", queue}}).Set(static_cast<double>(lag + pending));
  jobs_lag_->Add({{"queue", queue}}).Set(static_cast<double>(lag));
  jobs_pending_->Add({{"queue", queue}}).Set(static_cast<double>(pending));
}

void Metrics::set_jobs_redis_up(bool up) {
  if (jobs_redis_up_ != nullptr) jobs_redis_up_->Set(up ? 1.0 : 0.0);
}

void Metrics::add_jobs_batches(const std::string& status, int64_t n) {
  if (jobs_batches_ != nullptr) {
    jobs_batches_->Add({{"status", status}}).Increment(static_cast<double>(n));
  }
}

void Metrics::add_jobs_lines(const std::string& status, int64_t n) {
  if (jobs_lines_ != nullptr)
    jobs_lines_->Add({{"status", status}}).Increment(static_cast<double>(n));
}

void Metrics::observe_jobs_line(double seconds) {
  if (jobs_line_duration_ != nullptr) jobs_line_duration_->Observe(seconds);
}

std::string Metrics::serialize() const {
  {
    std::lock_guard lock(process_mutex_);
    const double cpu = process_cpu_seconds();
    if (cpu > process_cpu_reported_) {
      process_cpu_->Increment(cpu - process_cpu_reported_);
      process_cpu_reported_ = cpu;
    }
    process_resident_->Set(static_cast<double>(resident_bytes()));
  }
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace tideserve::server
