// The Prometheus metrics of the server (prometheus-cpp registry, text exposition on /metrics).
// Names carry the tideserve_ prefix and their unit.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

namespace tideserve::server {

class Metrics {
 public:
  explicit Metrics(const std::string& version);

  // One finished HTTP request on `route` (a route template such as "/v1/embeddings").
  void observe_request(std::string_view route, int status_code, double seconds);
  void observe_timings(double queue_seconds, double inference_seconds);
  void observe_batch(int64_t sequences, int64_t tokens);
  void observe_input_length(int64_t tokens);
  void add_rejected() { rejected_->Increment(); }
  void add_cancelled(int64_t n) { cancelled_->Increment(static_cast<double>(n)); }
  void add_refused_connection() { refused_connections_->Increment(); }
  void set_queue_depth(int64_t n) { queue_depth_->Set(static_cast<double>(n)); }
  void set_inflight(int64_t n) { inflight_->Set(static_cast<double>(n)); }
  void set_inflight_bytes(int64_t n) { inflight_bytes_->Set(static_cast<double>(n)); }
  void set_ready(bool ready) { ready_->Set(ready ? 1.0 : 0.0); }
  void set_model_load_seconds(double s) { model_load_->Set(s); }
  // A model version was published: tideserve_model_info{model_id, model_version, dtype, cpu_isa}
  // = 1 (lets dashboards and canary comparisons tell replicas that serve in different precisions
  // apart), tideserve_model_ready{model, version} = 1 and its memory.
  void model_loaded(const std::string& model, const std::string& version, const std::string& dtype,
                    const std::string& cpu_isa, int64_t memory_bytes);
  // It left service: its info series goes, ready and memory drop to 0.
  void model_unloaded(const std::string& model, const std::string& version);
  void add_model_load_failure(const std::string& model, const std::string& version);
  // One answered inference request on a model version (status code and latency).
  void observe_model_request(const std::string& model, const std::string& version, int status_code,
                             double seconds);

  // The worker mode's series (only in a process with --redis): the job queues' backlog as
  // Redis has it (the same value on every pod), batches and lines by status, line latency.
  void enable_jobs();
  void set_jobs_queue(const std::string& queue, int64_t lag, int64_t pending);
  void set_jobs_redis_up(bool up);
  void add_jobs_batches(const std::string& status, int64_t n = 1);
  void add_jobs_lines(const std::string& status, int64_t n = 1);
  void observe_jobs_line(double seconds);

  // The text exposition format (version 0.0.4). Brings the process series (CPU seconds,
  // resident memory) up to date first.
  std::string serialize() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* requests_;
  prometheus::Family<prometheus::Histogram>* request_duration_;
  prometheus::Histogram* queue_duration_;
  prometheus::Histogram* inference_duration_;
  prometheus::Histogram* batch_size_;
  prometheus::Histogram* batch_tokens_;
  prometheus::Histogram* input_length_;
  prometheus::Gauge* queue_depth_;
  prometheus::Gauge* inflight_;
  prometheus::Gauge* inflight_bytes_;
  prometheus::Gauge* ready_;
  prometheus::Gauge* model_load_;
  prometheus::Family<prometheus::Gauge>* model_info_ = nullptr;
  prometheus::Family<prometheus::Gauge>* model_ready_ = nullptr;
  prometheus::Family<prometheus::Gauge>* model_memory_ = nullptr;
  prometheus::Family<prometheus::Counter>* model_load_failures_ = nullptr;
  prometheus::Family<prometheus::Counter>* model_requests_ = nullptr;
  prometheus::Family<prometheus::Histogram>* model_request_duration_ = nullptr;
  prometheus::Family<prometheus::Gauge>* jobs_depth_ = nullptr;
  prometheus::Family<prometheus::Gauge>* jobs_lag_ = nullptr;
  prometheus::Family<prometheus::Gauge>* jobs_pending_ = nullptr;
  prometheus::Gauge* jobs_redis_up_ = nullptr;
  prometheus::Family<prometheus::Counter>* jobs_batches_ = nullptr;
  prometheus::Family<prometheus::Counter>* jobs_lines_ = nullptr;
  prometheus::Histogram* jobs_line_duration_ = nullptr;
  prometheus::Counter* rejected_;
  prometheus::Counter* cancelled_;
  prometheus::Counter* refused_connections_;
  // The standard process series (the names every Prometheus client library exports):
  // process_cpu_seconds_total is what a capacity profile divides by time for cores in use.
  prometheus::Counter* process_cpu_;
  prometheus::Gauge* process_resident_;
  mutable std::mutex process_mutex_;
  mutable double process_cpu_reported_ = 0;  // guarded by process_mutex_
  std::mutex info_mutex_;
  // (model, version) -> its tideserve_model_info series; guarded by info_mutex_
  std::map<std::pair<std::string, std::string>, prometheus::Gauge*> info_series_;
};

}  // namespace tideserve::server
