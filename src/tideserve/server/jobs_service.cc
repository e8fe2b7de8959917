#include "tideserve/server/jobs_service.h"

#include <chrono>

#include "tideserve/server/job_worker.h"
#include "tideserve/util/log.h"

namespace tideserve::server {

namespace {

constexpr int kExecutorThreads = 2;
constexpr size_t kMaxQueuedTasks = 256;

}  // namespace

JobsService::JobsService(jobs::JobsOptions options, int64_t max_inputs_per_line, Metrics& metrics)
    : options_(std::move(options)), max_inputs_per_line_(max_inputs_per_line), metrics_(metrics) {}

JobsService::~JobsService() {
  stop();
}

Status JobsService::start(runtime::ModelRepository* repository) {
  repository_ = repository;
  auto redis = jobs::parse_redis_url(options_.redis_url);
  if (!redis.is_ok()) return invalid_argument("--redis: " + redis.status().message());
  redis_ = *redis;
  metrics_.enable_jobs();
  for (int i = 0; i < kExecutorThreads; ++i) threads_.emplace_back([this] { run_executor(); });
  threads_.emplace_back([this] { run_janitor(); });
  if (options_.consume) {
    worker_ =
        std::make_unique<JobWorker>(options_, redis_, max_inputs_per_line_, *repository, metrics_);
    worker_->start();
  }
  // Whether an accepted batch survives a Redis crash is Redis' configuration: say so once.
  auto store = jobs::BatchStore::connect(redis_, options_.prefix);
  if (store.is_ok()) {
    auto aof = (*store)->client().command({"CONFIG", "GET", "appendfsync"});
    auto on = (*store)->client().command({"CONFIG", "GET", "appendonly"});
    if (aof.is_ok() && on.is_ok() && aof->size() == 2 && on->size() == 2 &&
        (on->elements()[1].str() != "yes" || aof->elements()[1].str() != "always")) {
      log_event(LogLevel::kWarning, "jobs_redis_not_durable",
                {{"appendonly", on->elements()[1].str()},
                 {"appendfsync", aof->elements()[1].str()},
                 {"hint",
                  "a Redis crash can lose accepted batches; run it with --appendonly yes "
                  "--appendfsync always"}});
    }
  }
  log_event(LogLevel::kInfo, "jobs_enabled",
            {{"redis", redis_.host + ":" + std::to_string(redis_.port)},
             {"prefix", options_.prefix},
             {"consume", options_.consume},
             {"reachable", store.is_ok()}});
  return Status::ok();
}

void JobsService::stop_consuming(Clock::time_point deadline) {
  if (worker_) worker_->stop(deadline);
}

void JobsService::stop() {
  stop_consuming(Clock::now());
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
  }
  wake_.notify_all();
  janitor_wake_.notify_all();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  // Tasks nobody ran are answered, so no call waits for ever.
  std::deque<Task> left;
  {
    std::lock_guard lock(mutex_);
    left.swap(tasks_);
  }
  for (Task& task : left) task(unavailable("the server is shutting down"));
}

bool JobsService::consumer_connected() const {
  return worker_ != nullptr && worker_->connected();
}

bool JobsService::post(Task task) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ || tasks_.size() >= kMaxQueuedTasks) return false;
    tasks_.push_back(std::move(task));
  }
  wake_.notify_one();
  return true;
}

Result<jobs::BatchStore*> JobsService::store_for(std::unique_ptr<jobs::BatchStore>& store) {
  if (store) {
    // A connection may have been closed by a Redis that restarted since its last use: a PING
    // finds out before the request does, and the reconnect below repairs it. (The batch routes
    // are not the hot path: one more round trip each is cheap.)
    if (!store->client().broken()) (void)store->client().command({"PING"});
    if (Status st = store->ensure_connected(); !st.is_ok()) {
      return unavailable("Redis is unreachable: " + st.message());
    }
    return store.get();
  }
  auto made = jobs::BatchStore::connect(redis_, options_.prefix);
  if (!made.is_ok()) return unavailable("Redis is unreachable: " + made.status().message());
  store = std::move(made).value();
  return store.get();
}

void JobsService::run_executor() {
  std::unique_ptr<jobs::BatchStore> store;
  while (true) {
    Task task;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !tasks_.empty(); });
      if (stopping_) return;
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task(store_for(store));
  }
}

void JobsService::run_janitor() {
  std::unique_ptr<jobs::BatchStore> store;
  while (true) {
    auto s = store_for(store);
    bool up = s.is_ok();
    if (up) {
      auto finalized = (*s)->tick(options_.ttl_s);
      if (finalized.is_ok()) {
        for (const std::string& status : *finalized) {
          metrics_.add_jobs_batches(status);
          log_event(LogLevel::kInfo, "batch_finalized", {{"status", status}, {"by", "janitor"}});
        }
      }
      auto depths = (*s)->queue_depths();
      up = finalized.is_ok() && depths.is_ok();
      if (depths.is_ok()) {
        for (const jobs::QueueDepth& d : *depths) {
          metrics_.set_jobs_queue(d.queue, d.lag, d.pending);
        }
      }
    }
    metrics_.set_jobs_redis_up(up);
    std::unique_lock lock(mutex_);
    if (janitor_wake_.wait_for(lock, std::chrono::seconds(1), [&] { return stopping_; })) return;
  }
}

}  // namespace tideserve::server
