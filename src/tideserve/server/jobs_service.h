// The worker mode inside a server process (`serve --redis`, `serve --jobs`, `worker`): the Redis
// connections the batch routes use, the janitor that expires, cancels and finalizes batches and
// reads the queues' backlog for /metrics, and, when consuming, the job worker (job_worker.h).
//
// Redis calls block (hiredis' synchronous API), so none runs on an IO thread: the batch routes
// post their work here, to a few threads that each own one connection.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tideserve/jobs/batch_store.h"
#include "tideserve/runtime/model_repository.h"
#include "tideserve/server/metrics.h"
#include "tideserve/util/clock.h"

namespace tideserve::server {

class JobWorker;

class JobsService {
 public:
  // `max_inputs_per_line`: the /v1/embeddings client batch limit, which every line obeys too.
  JobsService(jobs::JobsOptions options, int64_t max_inputs_per_line, Metrics& metrics);
  ~JobsService();
  JobsService(const JobsService&) = delete;
  JobsService& operator=(const JobsService&) = delete;

  // Parses the Redis URL and starts the threads (and the worker when options.consume). Redis
  // need not be up yet: each connection is made, and remade, when needed.
  Status start(runtime::ModelRepository* repository);
  // SIGTERM: the worker stops reading, finishes the lines it holds and writes their results
  // (what is left at `deadline` stays pending, for another worker to reclaim).
  void stop_consuming(Clock::time_point deadline);
  // Stops every thread (tasks still queued are answered with kUnavailable).
  void stop();

  const jobs::JobsOptions& options() const { return options_; }
  int64_t max_inputs_per_line() const { return max_inputs_per_line_; }
  runtime::ModelRepository* repository() const { return repository_; }
  Metrics& metrics() { return metrics_; }
  bool consuming() const { return worker_ != nullptr; }
  // The worker's readiness: it reached Redis on its last try.
  bool consumer_connected() const;

  // Runs `task` on a jobs thread with that thread's store (or the error connecting to Redis).
  // False when too many tasks are queued already (the caller answers 503).
  using Task = std::function<void(Result<jobs::BatchStore*>)>;
  bool post(Task task);

 private:
  void run_executor();
  void run_janitor();
  Result<jobs::BatchStore*> store_for(std::unique_ptr<jobs::BatchStore>& store);

  jobs::JobsOptions options_;
  int64_t max_inputs_per_line_;
  Metrics& metrics_;
  jobs::RedisOptions redis_;
  runtime::ModelRepository* repository_ = nullptr;
  std::mutex mutex_;
  std::condition_variable wake_;          // executors: a task, or stopping
  std::condition_variable janitor_wake_;  // the janitor: stopping
  std::deque<Task> tasks_;                // guarded by mutex_
  bool stopping_ = false;                 // guarded by mutex_
  std::vector<std::thread> threads_;
  std::unique_ptr<JobWorker> worker_;
};

}  // namespace tideserve::server
