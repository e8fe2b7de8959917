// The job worker: a consumer in the "workers" group of every served model's job stream. It reads
// lines (or reclaims ones idle past the visibility timeout), computes them through the same core
// service /v1/embeddings uses (lines of many batches together: the scheduler batches them by
// token budget), writes each result keyed by its batch and line and acknowledges its entry in
// one Lua step, and finalizes a batch when its last line is done.
//
// A line is answered as /v1/embeddings would answer its body: a 200 body in the output file, a
// client error (400 / 404 / 413) in the error file at once. A transient failure (429, 503, 500)
// is not acknowledged: the line is delivered again after the visibility timeout, and past
// --jobs-max-deliveries it goes to the dead-letter stream and the error file with its reason.
// While it computes, the worker renews its claim on what it holds (heartbeat), so a slow batch is
// not stolen.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tideserve/jobs/batch_store.h"
#include "tideserve/runtime/model_repository.h"
#include "tideserve/server/metrics.h"
#include "tideserve/util/clock.h"

namespace tideserve::server {

class JobWorker {
 public:
  JobWorker(const jobs::JobsOptions& options, const jobs::RedisOptions& redis,
            int64_t max_inputs_per_line, runtime::ModelRepository& repository, Metrics& metrics);
  ~JobWorker();

  void start();
  // Stops reading, finishes what it holds (results written, entries acknowledged) unless
  // `deadline` passes first, and joins.
  void stop(Clock::time_point deadline);
  bool connected() const { return connected_.load(); }

 private:
  void run();
  // Computes and writes one read's entries; false when Redis failed on the way (what was not
  // written stays pending).
  bool process(std::vector<jobs::JobEntry>& entries);
  // Retries `op` over reconnects until it succeeds or the worker must give up: once stopping,
  // at once for a read (`finishing` false), else at the stop's deadline.
  bool with_redis(const std::function<Status()>& op, bool finishing = true);
  bool give_up() const;

  jobs::JobsOptions options_;
  jobs::RedisOptions redis_;
  int64_t max_inputs_per_line_;
  runtime::ModelRepository& repository_;
  Metrics& metrics_;
  std::string consumer_;
  std::unique_ptr<jobs::BatchStore> store_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> connected_{false};
  std::atomic<int64_t> deadline_ns_{0};  // 0: none yet
  std::thread thread_;
};

}  // namespace tideserve::server
