#include "tideserve/server/job_worker.h"

#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <set>

#include <fmt/format.h>

#include "tideserve/server/errors.h"
#include "tideserve/server/json_writer.h"
#include "tideserve/server/openai_embeddings.h"
#include "tideserve/util/log.h"

namespace tideserve::server {

namespace {

std::string host_name() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "worker";
  return name;
}

// A client's fault: the same body would fail the same way again.
bool is_client_error(StatusCode code) {
  return code == StatusCode::kInvalidArgument || code == StatusCode::kOutOfRange ||
         code == StatusCode::kNotFound || code == StatusCode::kFailedPrecondition;
}

// The start of an output or error line: {"id": ..., "custom_id": ...
void begin_line(JsonWriter& w, const jobs::JobEntry& e) {
  w.begin_object().field("id", jobs::line_request_id(e.batch_id, e.line));
  w.field("custom_id", e.custom_id);
}

std::string response_line(const jobs::JobEntry& e, int status, std::string_view body) {
  JsonWriter w;
  w.reserve(body.size() + 160);
  begin_line(w, e);
  w.key("response").begin_object().field("status_code", status);
  w.field("request_id", e.entry_id).key("body").raw(body).end_object();
  w.key("error").null().end_object();
  return std::move(w).take();
}

std::string error_line(const jobs::JobEntry& e, std::string_view code, std::string_view message) {
  JsonWriter w;
  begin_line(w, e);
  w.key("response").null().key("error").begin_object();
  w.field("code", code).field("message", message).end_object().end_object();
  return std::move(w).take();
}

// One line being computed.
struct Slot {
  const jobs::JobEntry* entry = nullptr;
  std::shared_ptr<runtime::EmbeddingService> service;
  EmbeddingsRequest request;
  std::optional<Result<runtime::EmbedResult>> result;
};

}  // namespace

JobWorker::JobWorker(const jobs::JobsOptions& options, const jobs::RedisOptions& redis,
                     int64_t max_inputs_per_line, runtime::ModelRepository& repository,
                     Metrics& metrics)
    : options_(options),
      redis_(redis),
      max_inputs_per_line_(max_inputs_per_line),
      repository_(repository),
      metrics_(metrics),
      consumer_(options.consumer.empty() ? host_name() : options.consumer) {}

JobWorker::~JobWorker() {
  stop(Clock::now());
}

void JobWorker::start() {
  thread_ = std::thread([this] { run(); });
}

void JobWorker::stop(Clock::time_point deadline) {
  deadline_ns_.store(deadline.time_since_epoch().count());
  stopping_.store(true);
  if (thread_.joinable()) thread_.join();
}

bool JobWorker::give_up() const {
  const int64_t deadline = deadline_ns_.load();
  return stopping_.load() && deadline != 0 && Clock::now().time_since_epoch().count() >= deadline;
}

bool JobWorker::with_redis(const std::function<Status()>& op, bool finishing) {
  double backoff = 0.05;
  while (true) {
    Status st = store_ ? store_->ensure_connected() : Status::ok();
    if (!store_) {
      auto store = jobs::BatchStore::connect(redis_, options_.prefix);
      st = store.status();
      if (store.is_ok()) store_ = std::move(store).value();
    }
    if (st.is_ok()) {
      connected_.store(true);  // reached Redis (a read may block for a while next)
      st = op();
    }
    if (st.is_ok()) return true;
    connected_.store(false);
    log_event(LogLevel::kWarning, "jobs_redis_error",
              {{"consumer", consumer_}, {"error", st.message()}});
    if (st.code() != StatusCode::kUnavailable) {
      // A refused command (not a lost connection) is not cured by waiting for long.
      backoff = std::max(backoff, 1.0);
    }
    // While stopping, keep trying only until the deadline: what is not written stays pending.
    if (stopping_.load() && (!finishing || give_up())) return false;
    std::this_thread::sleep_for(std::chrono::duration<double>(backoff));
    backoff = std::min(backoff * 2, 2.0);
    if (stopping_.load() && give_up()) return false;
  }
}

void JobWorker::run() {
  log_event(LogLevel::kInfo, "jobs_worker_started",
            {{"consumer", consumer_},
             {"visibility_timeout_s", options_.visibility_timeout_s},
             {"max_deliveries", options_.max_deliveries}});
  // Connect before the models serve, so the worker is ready as soon as they do.
  with_redis([] { return Status::ok(); }, /*finishing=*/false);
  std::set<std::string> grouped;
  auto last_reclaim = Clock::now() - std::chrono::hours(1);
  const auto reclaim_every =
      std::chrono::duration<double>(std::clamp(options_.visibility_timeout_s / 4, 0.1, 5.0));
  while (!stopping_.load()) {
    std::vector<std::string> queues;
    for (const runtime::ServedModel& m : repository_.served()) queues.push_back(m.name);
    if (queues.empty()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    std::vector<jobs::JobEntry> entries;
    const bool ok = with_redis(
        [&]() -> Status {
          for (const std::string& q : queues) {
            if (grouped.count(q)) continue;
            TS_RETURN_IF_ERROR(store_->ensure_group(q));
            grouped.insert(q);
          }
          if (Clock::now() - last_reclaim >= reclaim_every) {
            last_reclaim = Clock::now();
            const auto min_idle = static_cast<int64_t>(options_.visibility_timeout_s * 1000);
            for (const std::string& q : queues) {
              auto got = store_->reclaim(consumer_, q, min_idle, options_.read_count);
              if (!got.is_ok()) return got.status();
              for (jobs::JobEntry& e : *got) entries.push_back(std::move(e));
            }
            if (!entries.empty()) {
              metrics_.add_jobs_lines("reclaimed", static_cast<int64_t>(entries.size()));
            }
          }
          if (!entries.empty()) return Status::ok();
          auto got = store_->read(consumer_, queues, options_.read_count, 500);
          if (!got.is_ok()) {
            grouped.clear();  // Redis may have come back empty: make the groups again
            return got.status();
          }
          entries = std::move(got).value();
          return Status::ok();
        },
        /*finishing=*/false);
    if (!ok || entries.empty()) continue;
    // Once read, entries are this worker's: finish them even when a stop comes meanwhile.
    process(entries);
  }
  // Leave the group where nothing is held (a held line stays for another worker to reclaim).
  int64_t left = 0;
  for (const std::string& q : grouped) {
    if (!store_ || store_->client().broken()) break;
    auto gone = store_->leave_group(consumer_, q);
    left += gone.is_ok() && *gone ? 1 : 0;
  }
  log_event(LogLevel::kInfo, "jobs_worker_stopped",
            {{"consumer", consumer_}, {"left_groups", static_cast<long long>(left)}});
}

bool JobWorker::process(std::vector<jobs::JobEntry>& entries) {
  // Lines of batches no longer in progress (cancelled, expired) are acknowledged unread.
  std::vector<std::string> batch_ids;
  for (const jobs::JobEntry& e : entries) batch_ids.push_back(e.batch_id);
  std::sort(batch_ids.begin(), batch_ids.end());
  batch_ids.erase(std::unique(batch_ids.begin(), batch_ids.end()), batch_ids.end());
  std::map<std::string, std::string> statuses;
  if (!with_redis([&]() -> Status {
        auto got = store_->batch_statuses(batch_ids);
        if (!got.is_ok()) return got.status();
        statuses = std::move(got).value();
        return Status::ok();
      })) {
    return false;
  }
  std::vector<const jobs::JobEntry*> skipped;
  // Each batch's outcomes, with the entries they answer (for the line latency).
  struct Written {
    std::vector<jobs::LineOutcome> outcomes;
    std::vector<const jobs::JobEntry*> entries;
  };
  std::map<std::string, Written> by_batch;
  std::vector<Slot> slots;
  slots.reserve(entries.size());
  auto outcome = [&](const jobs::JobEntry& e, jobs::LineOutcome::Kind kind, std::string json) {
    Written& written = by_batch[e.batch_id];
    written.outcomes.push_back({e.queue, e.entry_id, e.line, kind, std::move(json)});
    written.entries.push_back(&e);
  };
  for (const jobs::JobEntry& e : entries) {
    if (statuses[e.batch_id] != "in_progress") {
      skipped.push_back(&e);
      continue;
    }
    if (e.deliveries > options_.max_deliveries) {
      outcome(e, jobs::LineOutcome::Kind::kDead,
              error_line(e, "max_deliveries_exceeded",
                         fmt::format("delivered {} times (--jobs-max-deliveries {}) without a "
                                     "result: each time its worker failed transiently or "
                                     "stopped before writing it",
                                     e.deliveries, options_.max_deliveries)));
      continue;
    }
    Slot slot;
    slot.entry = &e;
    element body;
    bool malformed = false;
    Status st = parse_json_object(e.body, body, malformed);
    if (st.is_ok()) st = parse_embeddings(body, max_inputs_per_line_, slot.request);
    if (st.is_ok()) {
      auto service = repository_.find(e.queue);
      if (!service.is_ok()) {
        // Unloaded since the read: leave the line for a worker that serves it.
        metrics_.add_jobs_lines("retried");
        continue;
      }
      slot.service = std::move(service).value();
      slots.push_back(std::move(slot));
      continue;
    }
    const int status = http_status(st.code(), Family::kOpenAi);
    outcome(e, jobs::LineOutcome::Kind::kError,
            response_line(e, status, error_body(Family::kOpenAi, status, st.message())));
  }
  if (!skipped.empty()) {
    if (!with_redis([&] { return store_->ack(skipped); })) return false;
    metrics_.add_jobs_lines("skipped", static_cast<int64_t>(skipped.size()));
  }

  // Compute every line at once: the scheduler batches them together by token budget. A line
  // refused for capacity (429: the HTTP path shares the admission limit) is tried again here for
  // a while before it is left for redelivery.
  std::mutex mutex;
  std::condition_variable done;
  size_t outstanding = 0;
  auto submit = [&](Slot& slot) {
    slot.result.reset();
    runtime::EmbedRequest request = slot.request.embed;
    {
      std::lock_guard lock(mutex);
      ++outstanding;
    }
    slot.service->embed(std::move(request), runtime::CancelToken(),
                        [&, s = &slot](Result<runtime::EmbedResult> r) {
                          std::lock_guard lock(mutex);
                          s->result = std::move(r);
                          --outstanding;
                          done.notify_all();
                        });
  };
  for (Slot& slot : slots) submit(slot);
  const auto started = Clock::now();
  const auto retry_for =
      std::chrono::duration<double>(std::clamp(options_.visibility_timeout_s / 2, 0.5, 30.0));
  const auto heartbeat_every =
      std::chrono::duration<double>(std::max(0.05, options_.visibility_timeout_s / 3));
  auto last_heartbeat = Clock::now();
  while (true) {
    std::vector<Slot*> again;
    {
      std::unique_lock lock(mutex);
      done.wait_for(lock, std::chrono::milliseconds(50), [&] { return outstanding == 0; });
      if (outstanding == 0) {
        for (Slot& slot : slots) {
          if (slot.result && !slot.result->is_ok() &&
              slot.result->status().code() == StatusCode::kResourceExhausted &&
              Clock::now() - started < retry_for && !give_up()) {
            again.push_back(&slot);
          }
        }
        if (again.empty()) break;
      }
    }
    if (!again.empty()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      for (Slot* slot : again) submit(*slot);
    }
    if (Clock::now() - last_heartbeat >= heartbeat_every) {
      last_heartbeat = Clock::now();
      std::vector<const jobs::JobEntry*> held;
      for (const Slot& slot : slots) held.push_back(slot.entry);
      if (store_ && !store_->client().broken()) {
        if (Status st = store_->heartbeat(consumer_, held); !st.is_ok()) {
          log_event(LogLevel::kWarning, "jobs_heartbeat_failed", {{"error", st.message()}});
        }
      }
    }
  }
  int64_t retried = 0;
  for (Slot& slot : slots) {
    const jobs::JobEntry& e = *slot.entry;
    Result<runtime::EmbedResult>& r = *slot.result;
    if (r.is_ok()) {
      outcome(
          e, jobs::LineOutcome::Kind::kOk,
          response_line(
              e, 200, embeddings_json(r.value(), slot.request.base64, slot.service->info().name)));
      continue;
    }
    const Status& st = r.status();
    if (is_client_error(st.code())) {
      const int status = http_status(st.code(), Family::kOpenAi);
      outcome(e, jobs::LineOutcome::Kind::kError,
              response_line(e, status, error_body(Family::kOpenAi, status, st.message())));
    } else {
      ++retried;  // not acknowledged: delivered again after the visibility timeout
      log_event(LogLevel::kWarning, "jobs_line_retried",
                {{"batch", e.batch_id},
                 {"line", static_cast<long long>(e.line)},
                 {"deliveries", static_cast<long long>(e.deliveries)},
                 {"error", st.message()}});
    }
  }
  if (retried > 0) metrics_.add_jobs_lines("retried", retried);

  // Write each batch's outcomes (and acknowledge them) in one step; retried over Redis outages
  // until written, never acknowledged before.
  bool all_written = true;
  for (const auto& batch : by_batch) {
    const std::string& batch_id = batch.first;  // a named reference: lambdas capture it
    const std::vector<jobs::LineOutcome>& list = batch.second.outcomes;
    bool finalize = false;
    if (!with_redis([&]() -> Status {
          auto r = store_->complete(batch_id, list);
          if (!r.is_ok()) return r.status();
          finalize = *r;
          return Status::ok();
        })) {
      all_written = false;
      continue;
    }
    const int64_t now = unix_ms();
    for (size_t i = 0; i < list.size(); ++i) {
      metrics_.add_jobs_lines(list[i].kind == jobs::LineOutcome::Kind::kOk      ? "completed"
                              : list[i].kind == jobs::LineOutcome::Kind::kError ? "failed"
                                                                                : "dead_lettered");
      const int64_t waited = now - batch.second.entries[i]->enqueued_ms;
      metrics_.observe_jobs_line(static_cast<double>(std::max<int64_t>(0, waited)) / 1000.0);
    }
    if (finalize) {
      std::string final_status;
      // A failure here is the janitor's to repair: the batch stays finalizing until then.
      if (with_redis([&]() -> Status {
            auto r = store_->finalize(batch_id, options_.ttl_s);
            if (!r.is_ok()) return r.status();
            final_status = *r;
            return Status::ok();
          }) &&
          !final_status.empty()) {
        metrics_.add_jobs_batches(final_status);
        log_event(LogLevel::kInfo, "batch_finalized",
                  {{"batch", batch_id}, {"status", final_status}, {"consumer", consumer_}});
      }
    }
  }
  return all_written;
}

}  // namespace tideserve::server
