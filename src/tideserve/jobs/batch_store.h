// The worker mode's data in Redis: batch files, batches, the job streams their lines go through,
// and the results. Everything a batch is lives in Redis, so any server or worker can answer for
// it and none holds state another needs.
//
// Keys (P = the prefix, "tideserve" by default):
//   P:file:<id>            hash: a file's metadata and its bytes (`content`); expires after the TTL
//   P:file:<id>:parts      list: a batch output's bytes instead, in parts of about 4 MiB
//   P:batch:<id>           hash: a batch (status, timestamps, counts, file ids, errors)
//   P:batch:<id>:results   hash line -> output line (200 answers), until the batch is finalized
//   P:batch:<id>:errors    hash line -> error line (failed requests), until then too
//   P:batch:<id>:ids       list: the custom_id of every line (for the expired lines' errors)
//   P:batches              zset: every batch by creation time (GET /v1/batches)
//   P:batches:active       set: batches not yet in a final status (the janitor's work list)
//   P:queues               set: queue names (one per model)
//   P:queue:<model>        stream: one entry per line to compute; consumer group "workers"
//   P:dead:<model>         stream: lines given up after too many deliveries, with the reason
//
// Exactly once in the output: a result is written with the line as its key, only if neither
// hash has the line yet, and the stream entry is acknowledged in the same Lua step; a line
// delivered twice (its worker died, or was slow past the visibility timeout) is written once.
// A batch is finalized (its output and error files assembled from those hashes, in line order)
// by whoever moves it out of in_progress, and again by the janitor if that one died: the files'
// ids are derived from the batch's, so finalizing twice writes the same thing.
//
// Not thread-safe: one BatchStore (one connection) per thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tideserve/jobs/redis_client.h"
#include "tideserve/util/status.h"

namespace tideserve::jobs {

// The consumer group every worker joins.
inline constexpr std::string_view kGroup = "workers";

// Limits and timings of the batch API and the workers (one default each, here).
struct JobsOptions {
  std::string redis_url;  // empty: no Redis, the batch routes answer 503
  std::string prefix = "tideserve";
  int64_t max_file_bytes = 100 << 20;  // an uploaded file (413 beyond)
  int64_t max_lines = 50000;           // lines of one batch's input file
  int64_t max_backlog = 1000000;       // lines waiting or held, all queues (429 beyond)
  double ttl_s = 7 * 86400;            // files, and batches once final
  double expiry_s = 86400;             // the completion window "24h" gives
  // The worker (tideserve worker, serve --jobs).
  bool consume = false;
  std::string consumer;               // its name in the group; empty: the host name
  double visibility_timeout_s = 300;  // a held line idle this long is reclaimed by others
  int max_deliveries = 3;             // then it goes to the dead letters and the error file
  int read_count = 32;                // lines per read
};

// Keys of one prefix.
struct Keys {
  std::string prefix;
  std::string file(std::string_view id) const { return prefix + ":file:" + std::string(id); }
  std::string parts(std::string_view id) const { return file(id) + ":parts"; }
  std::string batch(std::string_view id) const { return prefix + ":batch:" + std::string(id); }
  std::string results(std::string_view id) const { return batch(id) + ":results"; }
  std::string errors(std::string_view id) const { return batch(id) + ":errors"; }
  std::string ids(std::string_view id) const { return batch(id) + ":ids"; }
  std::string queue(std::string_view q) const { return prefix + ":queue:" + std::string(q); }
  std::string dead(std::string_view q) const { return prefix + ":dead:" + std::string(q); }
  std::string index() const { return prefix + ":batches"; }
  std::string active() const { return prefix + ":batches:active"; }
  std::string queues() const { return prefix + ":queues"; }
};

struct FileRecord {
  std::string id;
  std::string purpose;  // "batch", "batch_output"
  std::string filename;
  int64_t bytes = 0;
  int64_t created_at = 0;  // unix seconds
  int64_t expires_at = 0;
};

// Timestamps are unix seconds, 0 when the batch never got there.
struct BatchRecord {
  std::string id;
  std::string status;  // validating, failed, in_progress, finalizing, completed, expired,
                       // cancelling, cancelled
  std::string input_file_id;
  std::string endpoint;
  std::string completion_window;
  std::string metadata_json;  // the object as given, or ""
  std::string errors_json;    // {"object": "list", "data": [...]}, or ""
  std::string output_file_id;
  std::string error_file_id;
  int64_t created_at = 0, expires_at = 0, in_progress_at = 0, finalizing_at = 0, completed_at = 0,
          failed_at = 0, expired_at = 0, cancelling_at = 0, cancelled_at = 0;
  int64_t total = 0, completed = 0, failed = 0;
};

// One line to compute, as validated at submit.
struct BatchLine {
  std::string custom_id;
  std::string queue;  // the model it asks for
  std::string body;   // the request body (JSON)
};

struct NewBatch {
  std::string input_file_id;
  std::string endpoint;
  std::string completion_window;
  std::string metadata_json;
  std::vector<BatchLine> lines;
  // Validation failed: the batch is stored as failed with these errors and no lines.
  std::string errors_json;
};

// What KEDA's redis-streams scaler reads, per queue: XINFO GROUPS' lag and pending, and XLEN.
struct QueueDepth {
  std::string queue;
  int64_t lag = 0;      // entries never delivered to the group
  int64_t pending = 0;  // delivered, not acknowledged
  int64_t length = 0;   // entries in the stream (acknowledged ones until trimmed)
  int64_t depth() const { return lag + pending; }
};

// A line as a worker holds it.
struct JobEntry {
  std::string queue;
  std::string entry_id;
  std::string batch_id;
  int64_t line = 0;
  std::string custom_id;
  std::string body;
  int64_t deliveries = 1;
  int64_t enqueued_ms = 0;  // the entry id's time (Redis' clock)
};

// A line's result, to write.
struct LineOutcome {
  enum class Kind { kOk, kError, kDead };
  std::string queue;
  std::string entry_id;
  int64_t line = 0;
  Kind kind = Kind::kOk;
  std::string json;  // the output (kOk) or error (kError, kDead) file's line
};

class BatchStore {
 public:
  static Result<std::unique_ptr<BatchStore>> connect(const RedisOptions& redis, std::string prefix);
  BatchStore(std::unique_ptr<RedisClient> client, std::string prefix);

  RedisClient& client() { return *client_; }
  const Keys& keys() const { return keys_; }
  // Reconnects when the connection broke (kUnavailable when Redis is still unreachable).
  Status ensure_connected();

  // ---- files ----
  Result<FileRecord> create_file(std::string_view purpose, std::string_view filename,
                                 std::string_view content, double ttl_s);
  Result<FileRecord> get_file(std::string_view id);  // kNotFound when absent or expired
  Result<std::string> file_content(std::string_view id);
  Status delete_file(std::string_view id);  // kNotFound when absent

  // ---- batches ----
  // Stores the batch and queues its lines in one MULTI (all or nothing): in_progress, or failed
  // when `batch.errors_json` is set. kResourceExhausted when the lines would take the backlog
  // past `max_backlog`; kUnavailable when Redis did not answer (no batch was given an id).
  Result<BatchRecord> create_batch(const NewBatch& batch, double expiry_s, int64_t max_backlog);
  Result<BatchRecord> get_batch(std::string_view id);  // kNotFound
  // Newest first; `after` (a batch id, or "") starts after that one.
  Result<std::vector<BatchRecord>> list_batches(std::string_view after, int64_t limit,
                                                bool& has_more);
  // in_progress -> cancelling (the janitor then finalizes it as cancelled, with what was done).
  // A batch already cancelling or cancelled is returned as it is; any other final one is
  // kFailedPrecondition.
  Result<BatchRecord> cancel_batch(std::string_view id);
  Result<std::vector<QueueDepth>> queue_depths();

  // ---- workers ----
  // Creates the group at the stream's start (MKSTREAM): lines queued before any worker ran are
  // delivered too. An existing group is fine.
  Status ensure_group(std::string_view queue);
  // XREADGROUP of new entries; an empty list after `block_ms` with none.
  Result<std::vector<JobEntry>> read(std::string_view consumer,
                                     const std::vector<std::string>& queues, int count,
                                     int64_t block_ms);
  // XAUTOCLAIM of entries idle past `min_idle_ms` (their consumer died or stalled), with their
  // delivery counts (XPENDING), now this consumer's.
  Result<std::vector<JobEntry>> reclaim(std::string_view consumer, std::string_view queue,
                                        int64_t min_idle_ms, int count);
  // Resets the idle time of entries this consumer holds (XCLAIM ... JUSTID), so a long batch is
  // not reclaimed while it computes.
  Status heartbeat(std::string_view consumer, const std::vector<const JobEntry*>& entries);
  // A worker that stops leaves the group when it holds nothing (XGROUP DELCONSUMER, which
  // would drop its pending entries: checked in the same script), so pods that come and go do
  // not pile up as consumers. True when it left.
  Result<bool> leave_group(std::string_view consumer, std::string_view queue);
  // The status of each batch ("" when it is gone).
  Result<std::map<std::string, std::string>> batch_statuses(const std::vector<std::string>& ids);
  // Acknowledges entries without a result (their batch is no longer in progress).
  Status ack(const std::vector<const JobEntry*>& entries);
  // Writes the outcomes of one batch's lines and acknowledges their entries, in one Lua step.
  // Results of a batch no longer in progress are dropped (acknowledged only). True when this
  // call completed the batch (in_progress -> finalizing): the caller then finalizes it.
  Result<bool> complete(std::string_view batch_id, const std::vector<LineOutcome>& outcomes);
  // Assembles the output and error files of a batch that is finalizing or cancelling and moves
  // it to its final status, which it returns ("" when another process got there first, or the
  // batch is in any other status: then nothing changes).
  Result<std::string> finalize(std::string_view batch_id, double ttl_s);
  // The janitor, run by every server and worker about once a second: batches past their
  // expiry -> expired (their unfinished lines get batch_expired errors), cancelling ones ->
  // cancelled, ones left finalizing by a process that died -> finalized; each queue trimmed of
  // acknowledged entries (never an unacknowledged one). Returns the final statuses it set.
  Result<std::vector<std::string>> tick(double ttl_s, double stale_finalizing_s = 10);
  Status trim(std::string_view queue);

 private:
  // One command per queue of `entries`: head[0], the queue's key, head[1...], the entries' ids,
  // tail (XACK, XCLAIM ... JUSTID), in one pipeline.
  Status per_queue(const std::vector<const JobEntry*>& entries,
                   const std::vector<std::string>& head, const std::vector<std::string>& tail);

  std::unique_ptr<RedisClient> client_;
  Keys keys_;
};

// The id of a line's answer in the output and error files: "batch_req_<the batch id's hex>_<line>"
// (derived, so a line written twice or finalized twice keeps one id).
std::string line_request_id(std::string_view batch_id, int64_t line);
// A random id: `prefix` + 24 hex digits.
std::string random_id(std::string_view prefix);
// "1712345678901-3" -> 1712345678901 (0 when malformed).
int64_t entry_time_ms(std::string_view entry_id);

}  // namespace tideserve::jobs
