#include "tideserve/jobs/batch_store.h"

#include <algorithm>
#include <random>
#include <set>

#include <fmt/format.h>

#include "tideserve/util/clock.h"
#include "tideserve/util/log.h"

namespace tideserve::jobs {

namespace {

using Argv = std::vector<std::string>;

Status redis_error(const RedisReply& reply, std::string_view what) {
  return internal_error(fmt::format("Redis refused {}: {}", what, reply.str()));
}

// A reply that must not be an error.
Result<RedisReply> checked(Result<RedisReply> reply, std::string_view what) {
  if (!reply.is_ok()) return reply.status();
  if (reply->is_error()) return redis_error(*reply, what);
  return reply;
}

// HGETALL's flat [field, value, ...] as a map.
std::map<std::string, std::string> as_map(const RedisReply& reply) {
  std::map<std::string, std::string> out;
  for (size_t i = 0; i + 1 < reply.size(); i += 2) out[reply[i].str()] = reply[i + 1].str();
  return out;
}

int64_t to_int(const std::string& s) {
  if (s.empty()) return 0;
  try {
    return std::stoll(s);
  } catch (...) {
    return 0;
  }
}

std::string field_or(const std::map<std::string, std::string>& m, const std::string& key) {
  auto it = m.find(key);
  return it == m.end() ? std::string() : it->second;
}

BatchRecord batch_from(const std::map<std::string, std::string>& m) {
  BatchRecord b;
  b.id = field_or(m, "id");
  b.status = field_or(m, "status");
  b.input_file_id = field_or(m, "input_file_id");
  b.endpoint = field_or(m, "endpoint");
  b.completion_window = field_or(m, "completion_window");
  b.metadata_json = field_or(m, "metadata");
  b.errors_json = field_or(m, "errors");
  b.output_file_id = field_or(m, "output_file_id");
  b.error_file_id = field_or(m, "error_file_id");
  for (auto [key, out] :
       {std::pair{"created_at", &b.created_at}, std::pair{"expires_at", &b.expires_at},
        std::pair{"in_progress_at", &b.in_progress_at},
        std::pair{"finalizing_at", &b.finalizing_at}, std::pair{"completed_at", &b.completed_at},
        std::pair{"failed_at", &b.failed_at}, std::pair{"expired_at", &b.expired_at},
        std::pair{"cancelling_at", &b.cancelling_at}, std::pair{"cancelled_at", &b.cancelled_at},
        std::pair{"total", &b.total}, std::pair{"completed", &b.completed},
        std::pair{"failed", &b.failed}}) {
    *out = to_int(field_or(m, key));
  }
  return b;
}

FileRecord file_from(const std::map<std::string, std::string>& m) {
  FileRecord f;
  f.id = field_or(m, "id");
  f.purpose = field_or(m, "purpose");
  f.filename = field_or(m, "filename");
  f.bytes = to_int(field_or(m, "bytes"));
  f.created_at = to_int(field_or(m, "created_at"));
  f.expires_at = to_int(field_or(m, "expires_at"));
  return f;
}

// XREADGROUP / XAUTOCLAIM entries: [[id, [field, value, ...]], ...] (a nil for an entry deleted
// while pending).
void append_entries(const RedisReply& list, const std::string& queue, std::vector<JobEntry>& out) {
  for (const RedisReply& entry : list.elements()) {
    if (!entry.is_array() || entry.size() < 2 || !entry[1].is_array()) continue;
    const auto fields = as_map(entry[1]);
    JobEntry e;
    e.queue = queue;
    e.entry_id = entry[0].str();
    e.batch_id = field_or(fields, "batch");
    e.line = to_int(field_or(fields, "line"));
    e.custom_id = field_or(fields, "custom_id");
    e.body = field_or(fields, "body");
    e.enqueued_ms = entry_time_ms(e.entry_id);
    out.push_back(std::move(e));
  }
}

// Writes one batch's outcomes and acknowledges their entries.
// KEYS: batch, results, errors, then (queue, dead stream) per queue slot.
// ARGV: group, now, batch id, then 5 per outcome: slot, entry id, line, kind, json.
constexpr std::string_view kCompleteScript = R"lua(
local status = redis.call('HGET', KEYS[1], 'status')
local open = status == 'in_progress'
local written = 0
for i = 4, #ARGV, 5 do
  local slot = tonumber(ARGV[i])
  local queue, dead = KEYS[4 + slot * 2], KEYS[5 + slot * 2]
  local id, line, kind, json = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  if open and redis.call('HEXISTS', KEYS[2], line) == 0 and
      redis.call('HEXISTS', KEYS[3], line) == 0 then
    if kind == 'ok' then
      redis.call('HSET', KEYS[2], line, json)
      redis.call('HINCRBY', KEYS[1], 'completed', 1)
    else
      redis.call('HSET', KEYS[3], line, json)
      redis.call('HINCRBY', KEYS[1], 'failed', 1)
      if kind == 'dead' then
        redis.call('XADD', dead, '*', 'batch', ARGV[3], 'line', line, 'entry', id, 'error', json)
      end
    end
    written = written + 1
  end
  redis.call('XACK', queue, ARGV[1], id)
end
local finalize = 0
if open then
  local done = tonumber(redis.call('HGET', KEYS[1], 'completed') or '0') +
      tonumber(redis.call('HGET', KEYS[1], 'failed') or '0')
  if done >= tonumber(redis.call('HGET', KEYS[1], 'total') or '0') then
    redis.call('HSET', KEYS[1], 'status', 'finalizing', 'finalizing_at', ARGV[2],
               'final_status', 'completed')
    finalize = 1
  end
end
return {written, finalize}
)lua";

// Moves a finalizing or cancelling batch to its final status with its files, whose contents
// this finalizer wrote as parts lists under its own temporary keys (renamed into place here; a
// finalizer that lost the race has its parts deleted instead).
// KEYS: batch, results, errors, ids, active, output file, error file, output parts (temporary),
// error parts (temporary), output parts, error parts.
// ARGV: expected status, final status, now, ttl, output id, output bytes, error id, error bytes,
// output filename, error filename, batch id, lines expired (counted as failed).
constexpr std::string_view kFinishScript = R"lua(
if redis.call('HGET', KEYS[1], 'status') ~= ARGV[1] then
  redis.call('DEL', KEYS[8], KEYS[9])
  return 0
end
local now, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local function file(key, id, bytes, name, parts, final_parts)
  if tonumber(bytes) == 0 then return '' end
  redis.call('HSET', key, 'id', id, 'purpose', 'batch_output', 'filename', name,
             'bytes', bytes, 'created_at', now, 'expires_at', now + ttl, 'parts', '1')
  redis.call('RENAME', parts, final_parts)
  redis.call('EXPIRE', key, ttl)
  redis.call('EXPIRE', final_parts, ttl)
  return id
end
local out = file(KEYS[6], ARGV[5], ARGV[6], ARGV[9], KEYS[8], KEYS[10])
local err = file(KEYS[7], ARGV[7], ARGV[8], ARGV[10], KEYS[9], KEYS[11])
redis.call('HSET', KEYS[1], 'status', ARGV[2], ARGV[2] .. '_at', now, 'output_file_id', out,
           'error_file_id', err)
redis.call('HINCRBY', KEYS[1], 'failed', tonumber(ARGV[12]))
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
redis.call('SREM', KEYS[5], ARGV[11])
redis.call('EXPIRE', KEYS[1], ttl)
return 1
)lua";

// KEYS: batch. ARGV: now. in_progress -> cancelling; returns the status it leaves.
constexpr std::string_view kCancelScript = R"lua(
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return false end
if status == 'in_progress' or status == 'validating' then
  redis.call('HSET', KEYS[1], 'status', 'cancelling', 'cancelling_at', ARGV[1],
             'final_status', 'cancelled')
  return 'cancelling'
end
return status
)lua";

// KEYS: batch. ARGV: now. An in_progress batch past its expiry -> finalizing as expired.
constexpr std::string_view kExpireScript = R"lua(
if redis.call('HGET', KEYS[1], 'status') ~= 'in_progress' then return 0 end
if tonumber(redis.call('HGET', KEYS[1], 'expires_at')) > tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'status', 'finalizing', 'finalizing_at', ARGV[1],
           'final_status', 'expired')
return 1
)lua";

// KEYS: queue. ARGV: group. Trims entries below the oldest one not yet acknowledged: the oldest
// pending entry, else the one after the last delivered. XTRIM MINID leaves no tombstones, so the
// group's lag stays exact.
constexpr std::string_view kTrimScript = R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
for _, g in ipairs(groups) do
  local info = {}
  for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
  if info['name'] == ARGV[1] then
    local minid
    if tonumber(info['pending']) > 0 then
      minid = redis.call('XPENDING', KEYS[1], ARGV[1])[2]
    else
      local last = info['last-delivered-id']
      local dash = string.find(last, '-')
      minid = string.sub(last, 1, dash) .. tostring(tonumber(string.sub(last, dash + 1)) + 1)
    end
    return redis.call('XTRIM', KEYS[1], 'MINID', minid)
  end
end
return 0
)lua";

// KEYS: queue. ARGV: group, consumer. Deletes the consumer only when it holds no entry.
constexpr std::string_view kLeaveScript = R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) > 0 then return 0 end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
)lua";

std::string s(std::string_view v) {
  return std::string(v);
}

}  // namespace

std::string random_id(std::string_view prefix) {
  thread_local std::mt19937_64 rng(std::random_device{}());
  return fmt::format("{}{:016x}{:08x}", prefix, rng(), static_cast<uint32_t>(rng()));
}

std::string line_request_id(std::string_view batch_id, int64_t line) {
  return fmt::format("batch_req_{}_{}", batch_id.substr(batch_id.find('_') + 1), line);
}

int64_t entry_time_ms(std::string_view entry_id) {
  const size_t dash = entry_id.find('-');
  return to_int(std::string(entry_id.substr(0, dash)));
}

Result<std::unique_ptr<BatchStore>> BatchStore::connect(const RedisOptions& redis,
                                                        std::string prefix) {
  auto client = RedisClient::connect(redis);
  if (!client.is_ok()) return client.status();
  return std::make_unique<BatchStore>(std::move(client).value(), std::move(prefix));
}

BatchStore::BatchStore(std::unique_ptr<RedisClient> client, std::string prefix)
    : client_(std::move(client)), keys_{std::move(prefix)} {}

Status BatchStore::ensure_connected() {
  if (!client_->broken()) return Status::ok();
  return client_->reconnect();
}

// ---------------------------------------------------------------------------------------------
// Files

Result<FileRecord> BatchStore::create_file(std::string_view purpose, std::string_view filename,
                                           std::string_view content, double ttl_s) {
  FileRecord f;
  f.id = random_id("file-");
  f.purpose = s(purpose);
  f.filename = s(filename);
  f.bytes = static_cast<int64_t>(content.size());
  f.created_at = unix_seconds();
  const auto ttl = static_cast<int64_t>(ttl_s);
  f.expires_at = f.created_at + ttl;
  const std::string key = keys_.file(f.id);
  auto replies = client_->pipeline(
      {{"MULTI"},
       {"HSET", key, "id", f.id, "purpose", f.purpose, "filename", f.filename, "bytes",
        std::to_string(f.bytes), "created_at", std::to_string(f.created_at), "expires_at",
        std::to_string(f.expires_at), "content", s(content)},
       {"EXPIRE", key, std::to_string(ttl)},
       {"EXEC"}});
  if (!replies.is_ok()) return replies.status();
  const RedisReply& exec = replies->back();
  if (!exec.is_array()) return redis_error(exec, "the file");
  for (const RedisReply& r : exec.elements()) {
    if (r.is_error()) return redis_error(r, "the file");
  }
  return f;
}

Result<FileRecord> BatchStore::get_file(std::string_view id) {
  auto reply = checked(client_->command({"HMGET", keys_.file(id), "id", "purpose", "filename",
                                         "bytes", "created_at", "expires_at"}),
                       "HMGET");
  if (!reply.is_ok()) return reply.status();
  if (reply->size() < 6 || (*reply)[0].is_nil()) return not_found(fmt::format("no file {}", id));
  std::map<std::string, std::string> m;
  const char* names[] = {"id", "purpose", "filename", "bytes", "created_at", "expires_at"};
  for (size_t i = 0; i < 6; ++i) m[names[i]] = (*reply)[i].str();
  return file_from(m);
}

Result<std::string> BatchStore::file_content(std::string_view id) {
  auto reply = checked(client_->command({"HMGET", keys_.file(id), "content", "parts"}), "HMGET");
  if (!reply.is_ok()) return reply.status();
  if ((*reply)[0].is_string()) return (*reply)[0].str();
  if (!(*reply)[1].is_string()) return not_found(fmt::format("no file {}", id));
  // A batch's output: its parts, a few at a time.
  std::string content;
  for (int64_t start = 0;; start += 8) {
    auto parts = checked(client_->command({"LRANGE", keys_.parts(id), std::to_string(start),
                                           std::to_string(start + 7)}),
                         "LRANGE");
    if (!parts.is_ok()) return parts.status();
    for (const RedisReply& part : parts->elements()) content += part.str();
    if (parts->size() < 8) break;
  }
  return content;
}

Status BatchStore::delete_file(std::string_view id) {
  auto reply = checked(client_->command({"DEL", keys_.file(id), keys_.parts(id)}), "DEL");
  if (!reply.is_ok()) return reply.status();
  if (reply->integer() == 0) return not_found(fmt::format("no file {}", id));
  return Status::ok();
}

// ---------------------------------------------------------------------------------------------
// Batches

Result<BatchRecord> BatchStore::create_batch(const NewBatch& batch, double expiry_s,
                                             int64_t max_backlog) {
  std::set<std::string> queues;
  for (const BatchLine& line : batch.lines) queues.insert(line.queue);
  if (!batch.lines.empty()) {
    auto depths = queue_depths();
    if (!depths.is_ok()) return depths.status();
    int64_t backlog = 0;
    for (const QueueDepth& d : *depths) backlog += d.depth();
    const auto lines = static_cast<int64_t>(batch.lines.size());
    if (backlog + lines > max_backlog) {
      return resource_exhausted(
          fmt::format("the job queues hold {} lines; {} more would pass the backlog limit of {} "
                      "(--jobs-max-backlog); retry later",
                      backlog, lines, max_backlog));
    }
    for (const std::string& q : queues) TS_RETURN_IF_ERROR(ensure_group(q));
  }
  BatchRecord b;
  b.id = random_id("batch_");
  b.input_file_id = batch.input_file_id;
  b.endpoint = batch.endpoint;
  b.completion_window = batch.completion_window;
  b.metadata_json = batch.metadata_json;
  b.errors_json = batch.errors_json;
  // Listed newest first to the millisecond (created_at itself is in seconds, as OpenAI's).
  const int64_t created_ms = unix_ms();
  b.created_at = created_ms / 1000;
  b.expires_at = b.created_at + static_cast<int64_t>(expiry_s);
  b.total = static_cast<int64_t>(batch.lines.size());
  const bool failed = !batch.errors_json.empty();
  if (failed) {
    b.status = "failed";
    b.failed_at = b.created_at;
    b.total = 0;
  } else {
    b.status = "in_progress";
    b.in_progress_at = b.created_at;
  }
  const std::string key = keys_.batch(b.id);
  std::vector<Argv> commands;
  commands.reserve(batch.lines.size() + 8);
  commands.push_back({"MULTI"});
  commands.push_back({"HSET",
                      key,
                      "id",
                      b.id,
                      "status",
                      b.status,
                      "input_file_id",
                      b.input_file_id,
                      "endpoint",
                      b.endpoint,
                      "completion_window",
                      b.completion_window,
                      "metadata",
                      b.metadata_json,
                      "errors",
                      b.errors_json,
                      "created_at",
                      std::to_string(b.created_at),
                      "expires_at",
                      std::to_string(b.expires_at),
                      "in_progress_at",
                      std::to_string(b.in_progress_at),
                      "failed_at",
                      std::to_string(b.failed_at),
                      "total",
                      std::to_string(b.total),
                      "completed",
                      "0",
                      "failed",
                      "0"});
  commands.push_back({"ZADD", keys_.index(), std::to_string(created_ms), b.id});
  if (failed) {
    commands.push_back({"EXPIRE", key, std::to_string(static_cast<int64_t>(expiry_s))});
  } else {
    commands.push_back({"SADD", keys_.active(), b.id});
    Argv ids = {"RPUSH", keys_.ids(b.id)};
    for (const BatchLine& line : batch.lines) ids.push_back(line.custom_id);
    commands.push_back(std::move(ids));
    Argv add_queues = {"SADD", keys_.queues()};
    for (const std::string& q : queues) add_queues.push_back(q);
    commands.push_back(std::move(add_queues));
    for (size_t i = 0; i < batch.lines.size(); ++i) {
      const BatchLine& line = batch.lines[i];
      commands.push_back({"XADD", keys_.queue(line.queue), "*", "batch", b.id, "line",
                          std::to_string(i), "custom_id", line.custom_id, "body", line.body});
    }
  }
  commands.push_back({"EXEC"});
  auto replies = client_->pipeline(commands);
  if (!replies.is_ok()) return replies.status();
  const RedisReply& exec = replies->back();
  if (!exec.is_array()) {
    // A command refused while queueing (out of memory, ...) aborts the whole transaction.
    for (const RedisReply& r : *replies) {
      if (r.is_error()) return unavailable(fmt::format("Redis refused the batch: {}", r.str()));
    }
    return unavailable("Redis refused the batch: " + exec.to_string());
  }
  for (const RedisReply& r : exec.elements()) {
    if (r.is_error()) return unavailable(fmt::format("Redis refused the batch: {}", r.str()));
  }
  return b;
}

Result<BatchRecord> BatchStore::get_batch(std::string_view id) {
  auto reply = checked(client_->command({"HGETALL", keys_.batch(id)}), "HGETALL");
  if (!reply.is_ok()) return reply.status();
  if (reply->size() == 0) return not_found(fmt::format("no batch {}", id));
  return batch_from(as_map(*reply));
}

Result<std::vector<BatchRecord>> BatchStore::list_batches(std::string_view after, int64_t limit,
                                                          bool& has_more) {
  has_more = false;
  int64_t start = 0;
  if (!after.empty()) {
    auto rank = checked(client_->command({"ZREVRANK", keys_.index(), s(after)}), "ZREVRANK");
    if (!rank.is_ok()) return rank.status();
    if (rank->is_nil()) return not_found(fmt::format("no batch {} (the 'after' cursor)", after));
    start = rank->integer() + 1;
  }
  std::vector<BatchRecord> out;
  // Batches whose hash expired are dropped from the index as they are met.
  while (static_cast<int64_t>(out.size()) < limit + 1) {
    const int64_t want = limit + 1 - static_cast<int64_t>(out.size());
    auto ids = checked(client_->command({"ZREVRANGE", keys_.index(), std::to_string(start),
                                         std::to_string(start + want - 1)}),
                       "ZREVRANGE");
    if (!ids.is_ok()) return ids.status();
    if (ids->size() == 0) break;
    std::vector<Argv> reads;
    for (const RedisReply& id : ids->elements())
      reads.push_back({"HGETALL", keys_.batch(id.str())});
    auto replies = client_->pipeline(reads);
    if (!replies.is_ok()) return replies.status();
    Argv gone = {"ZREM", keys_.index()};
    for (size_t i = 0; i < replies->size(); ++i) {
      if ((*replies)[i].size() == 0) {
        gone.push_back((*ids)[i].str());
      } else {
        out.push_back(batch_from(as_map((*replies)[i])));
      }
    }
    start += static_cast<int64_t>(ids->size());
    if (gone.size() > 2) {
      TS_RETURN_IF_ERROR(checked(client_->command(gone), "ZREM").status());
      start -= static_cast<int64_t>(gone.size() - 2);
    }
  }
  if (static_cast<int64_t>(out.size()) > limit) {
    has_more = true;
    out.resize(static_cast<size_t>(limit));
  }
  return out;
}

Result<BatchRecord> BatchStore::cancel_batch(std::string_view id) {
  auto reply = checked(
      client_->eval_script(s(kCancelScript), {keys_.batch(id)}, {std::to_string(unix_seconds())}),
      "the cancel");
  if (!reply.is_ok()) return reply.status();
  if (reply->is_nil()) return not_found(fmt::format("no batch {}", id));
  const std::string& status = reply->str();
  if (status != "cancelling" && status != "cancelled") {
    return Status(StatusCode::kFailedPrecondition,
                  fmt::format("batch {} is {} and cannot be cancelled", id, status));
  }
  return get_batch(id);
}

Result<std::vector<QueueDepth>> BatchStore::queue_depths() {
  auto names = checked(client_->command({"SMEMBERS", keys_.queues()}), "SMEMBERS");
  if (!names.is_ok()) return names.status();
  std::vector<std::string> queues;
  for (const RedisReply& n : names->elements()) queues.push_back(n.str());
  std::sort(queues.begin(), queues.end());
  std::vector<Argv> commands;
  for (const std::string& q : queues) {
    commands.push_back({"XINFO", "GROUPS", keys_.queue(q)});
    commands.push_back({"XLEN", keys_.queue(q)});
  }
  std::vector<QueueDepth> out;
  if (commands.empty()) return out;
  auto replies = client_->pipeline(commands);
  if (!replies.is_ok()) return replies.status();
  for (size_t i = 0; i < queues.size(); ++i) {
    QueueDepth d;
    d.queue = queues[i];
    d.length = (*replies)[2 * i + 1].integer();
    const RedisReply& groups = (*replies)[2 * i];
    for (const RedisReply& g : groups.elements()) {
      int64_t lag = -1, pending = 0;
      bool ours = false;
      for (size_t k = 0; k + 1 < g.size(); k += 2) {
        const std::string& name = g[k].str();
        if (name == "name") ours = g[k + 1].str() == kGroup;
        if (name == "pending") pending = g[k + 1].integer();
        if (name == "lag" && g[k + 1].is_integer()) lag = g[k + 1].integer();
      }
      if (!ours) continue;
      d.pending = pending;
      // Redis answers nil when it cannot know the lag (entries deleted inside the range): then
      // every entry not pending counts as waiting, an upper bound.
      d.lag = lag >= 0 ? lag : std::max<int64_t>(0, d.length - pending);
    }
    out.push_back(std::move(d));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Workers

Status BatchStore::ensure_group(std::string_view queue) {
  auto reply =
      client_->command({"XGROUP", "CREATE", keys_.queue(queue), s(kGroup), "0", "MKSTREAM"});
  if (!reply.is_ok()) return reply.status();
  if (reply->is_error() && !reply->is_error_code("BUSYGROUP")) {
    return redis_error(*reply, "XGROUP CREATE");
  }
  return Status::ok();
}

Result<std::vector<JobEntry>> BatchStore::read(std::string_view consumer,
                                               const std::vector<std::string>& queues, int count,
                                               int64_t block_ms) {
  std::vector<JobEntry> out;
  if (queues.empty()) return out;
  Argv argv = {"XREADGROUP", "GROUP",
               s(kGroup),    s(consumer),
               "COUNT",      std::to_string(count),
               "BLOCK",      std::to_string(block_ms),
               "STREAMS"};
  for (const std::string& q : queues) argv.push_back(keys_.queue(q));
  for (size_t i = 0; i < queues.size(); ++i) argv.push_back(">");
  auto reply = client_->command(argv);
  if (!reply.is_ok()) return reply.status();
  if (reply->is_error()) {
    // The stream or group was deleted under us (FLUSHALL, a Redis that lost its data): make
    // the groups again and read next time.
    if (reply->is_error_code("NOGROUP")) {
      for (const std::string& q : queues) TS_RETURN_IF_ERROR(ensure_group(q));
      return out;
    }
    return redis_error(*reply, "XREADGROUP");
  }
  const std::string key_prefix = keys_.queue("");
  for (const RedisReply& stream : reply->elements()) {
    if (!stream.is_array() || stream.size() < 2) continue;
    const std::string queue = stream[0].str().substr(key_prefix.size());
    append_entries(stream[1], queue, out);
  }
  return out;
}

Result<std::vector<JobEntry>> BatchStore::reclaim(std::string_view consumer, std::string_view queue,
                                                  int64_t min_idle_ms, int count) {
  std::vector<JobEntry> out;
  auto reply =
      client_->command({"XAUTOCLAIM", keys_.queue(queue), s(kGroup), s(consumer),
                        std::to_string(min_idle_ms), "0-0", "COUNT", std::to_string(count)});
  if (!reply.is_ok()) return reply.status();
  if (reply->is_error()) {
    if (reply->is_error_code("NOGROUP")) return out;
    return redis_error(*reply, "XAUTOCLAIM");
  }
  if (!reply->is_array() || reply->size() < 2) return out;
  append_entries((*reply)[1], s(queue), out);
  if (out.empty()) return out;
  // Their delivery counts, XAUTOCLAIM having added this one.
  std::vector<Argv> counts;
  for (const JobEntry& e : out) {
    counts.push_back({"XPENDING", keys_.queue(queue), s(kGroup), e.entry_id, e.entry_id, "1"});
  }
  auto replies = client_->pipeline(counts);
  if (!replies.is_ok()) return replies.status();
  for (size_t i = 0; i < out.size(); ++i) {
    const RedisReply& r = (*replies)[i];
    if (r.is_array() && r.size() == 1 && r[0].size() >= 4) out[i].deliveries = r[0][3].integer();
  }
  return out;
}

Status BatchStore::heartbeat(std::string_view consumer,
                             const std::vector<const JobEntry*>& entries) {
  return per_queue(entries, {"XCLAIM", s(kGroup), s(consumer), "0"}, {"JUSTID"});
}

Result<bool> BatchStore::leave_group(std::string_view consumer, std::string_view queue) {
  auto reply =
      checked(client_->eval_script(s(kLeaveScript), {keys_.queue(queue)}, {s(kGroup), s(consumer)}),
              "leaving the group");
  if (!reply.is_ok()) return reply.status();
  return reply->integer() == 1;
}

Result<std::map<std::string, std::string>> BatchStore::batch_statuses(
    const std::vector<std::string>& ids) {
  std::map<std::string, std::string> out;
  if (ids.empty()) return out;
  std::vector<Argv> commands;
  for (const std::string& id : ids) commands.push_back({"HGET", keys_.batch(id), "status"});
  auto replies = client_->pipeline(commands);
  if (!replies.is_ok()) return replies.status();
  for (size_t i = 0; i < ids.size(); ++i) out[ids[i]] = (*replies)[i].str();
  return out;
}

Status BatchStore::ack(const std::vector<const JobEntry*>& entries) {
  return per_queue(entries, {"XACK", s(kGroup)}, {});
}

Status BatchStore::per_queue(const std::vector<const JobEntry*>& entries, const Argv& head,
                             const Argv& tail) {
  std::map<std::string, Argv> by_queue;
  for (const JobEntry* e : entries) {
    Argv& argv = by_queue[e->queue];
    if (argv.empty()) {
      argv = {head[0], keys_.queue(e->queue)};
      argv.insert(argv.end(), head.begin() + 1, head.end());
    }
    argv.push_back(e->entry_id);
  }
  if (by_queue.empty()) return Status::ok();
  std::vector<Argv> commands;
  for (auto& [queue, argv] : by_queue) {
    argv.insert(argv.end(), tail.begin(), tail.end());
    commands.push_back(std::move(argv));
  }
  return client_->pipeline(commands).status();
}

Result<bool> BatchStore::complete(std::string_view batch_id,
                                  const std::vector<LineOutcome>& outcomes) {
  Argv keys = {keys_.batch(batch_id), keys_.results(batch_id), keys_.errors(batch_id)};
  Argv args = {s(kGroup), std::to_string(unix_seconds()), s(batch_id)};
  std::map<std::string, int> slots;
  for (const LineOutcome& o : outcomes) {
    auto [it, added] = slots.emplace(o.queue, static_cast<int>(slots.size()));
    if (added) {
      keys.push_back(keys_.queue(o.queue));
      keys.push_back(keys_.dead(o.queue));
    }
    const char* kind = o.kind == LineOutcome::Kind::kOk      ? "ok"
                       : o.kind == LineOutcome::Kind::kError ? "error"
                                                             : "dead";
    args.insert(args.end(),
                {std::to_string(it->second), o.entry_id, std::to_string(o.line), kind, o.json});
  }
  auto reply = checked(client_->eval_script(s(kCompleteScript), keys, args), "the results");
  if (!reply.is_ok()) return reply.status();
  return reply->size() == 2 && (*reply)[1].integer() == 1;
}

Result<std::string> BatchStore::finalize(std::string_view batch_id, double ttl_s) {
  auto head =
      checked(client_->command({"HMGET", keys_.batch(batch_id), "status", "final_status", "total"}),
              "HMGET");
  if (!head.is_ok()) return head.status();
  const std::string status = (*head)[0].str();
  std::string final_status = (*head)[1].str();
  const int64_t total = to_int((*head)[2].str());
  if (status != "finalizing" && status != "cancelling") return std::string();
  if (final_status.empty()) final_status = status == "cancelling" ? "cancelled" : "completed";
  const bool expired = final_status == "expired";
  const std::string base(batch_id.substr(batch_id.find('_') + 1));
  const std::string output_id = "file-" + base + "-output";
  const std::string error_id = "file-" + base + "-errors";
  // This finalizer's own part lists: another one racing it writes its own.
  const std::string token = random_id("");
  const std::string output_tmp = keys_.file(output_id) + ":parts:" + token;
  const std::string error_tmp = keys_.file(error_id) + ":parts:" + token;
  // Lines are read a range at a time and the files written in parts, so neither this process
  // nor one Redis value holds a whole output (50,000 lines of 768 floats are ~400 MB).
  constexpr int64_t kRange = 1000;
  constexpr size_t kPartBytes = 4 << 20;
  int64_t output_bytes = 0, error_bytes = 0, expired_lines = 0;
  std::string output, error;
  auto flush = [&](std::string& part, const std::string& key, int64_t& bytes, bool last) -> Status {
    if (part.empty() || (!last && part.size() < kPartBytes)) return Status::ok();
    bytes += static_cast<int64_t>(part.size());
    auto replies = client_->pipeline({{"RPUSH", key, part}, {"EXPIRE", key, "3600"}});
    part.clear();
    if (!replies.is_ok()) return replies.status();
    if ((*replies)[0].is_error()) return redis_error((*replies)[0], "a part of the batch's files");
    return Status::ok();
  };
  for (int64_t start = 0; start < total; start += kRange) {
    const int64_t end = std::min(total, start + kRange);
    Argv results = {"HMGET", keys_.results(batch_id)};
    Argv errors = {"HMGET", keys_.errors(batch_id)};
    for (int64_t line = start; line < end; ++line) {
      results.push_back(std::to_string(line));
      errors.push_back(std::to_string(line));
    }
    std::vector<Argv> reads = {results, errors};
    if (expired) {
      reads.push_back(
          {"LRANGE", keys_.ids(batch_id), std::to_string(start), std::to_string(end - 1)});
    }
    auto replies = client_->pipeline(reads);
    if (!replies.is_ok()) return replies.status();
    for (const RedisReply& r : *replies) {
      if (r.is_error()) return redis_error(r, "the batch's results");
    }
    for (int64_t line = start; line < end; ++line) {
      const auto i = static_cast<size_t>(line - start);
      if ((*replies)[0][i].is_string()) {
        output.append((*replies)[0][i].str()).push_back('\n');
      } else if ((*replies)[1][i].is_string()) {
        error.append((*replies)[1][i].str()).push_back('\n');
      } else if (expired && i < (*replies)[2].size()) {
        // An expired batch's unfinished line gets an error, as OpenAI words it.
        ++expired_lines;
        error.append(R"({"id":")").append(line_request_id(batch_id, line));
        error.append(R"(","custom_id":)");
        append_json_string(error, (*replies)[2][i].str());
        error.append(
            R"(,"response":null,"error":{"code":"batch_expired","message":"This request could )"
            R"(not be executed before the completion window expired."}})"
            "\n");
      }
    }
    TS_RETURN_IF_ERROR(flush(output, output_tmp, output_bytes, false));
    TS_RETURN_IF_ERROR(flush(error, error_tmp, error_bytes, false));
  }
  TS_RETURN_IF_ERROR(flush(output, output_tmp, output_bytes, true));
  TS_RETURN_IF_ERROR(flush(error, error_tmp, error_bytes, true));
  auto done = checked(
      client_->eval_script(
          s(kFinishScript),
          {keys_.batch(batch_id), keys_.results(batch_id), keys_.errors(batch_id),
           keys_.ids(batch_id), keys_.active(), keys_.file(output_id), keys_.file(error_id),
           output_tmp, error_tmp, keys_.parts(output_id), keys_.parts(error_id)},
          {status, final_status, std::to_string(unix_seconds()),
           std::to_string(static_cast<int64_t>(ttl_s)), output_id, std::to_string(output_bytes),
           error_id, std::to_string(error_bytes), fmt::format("{}_output.jsonl", batch_id),
           fmt::format("{}_error.jsonl", batch_id), s(batch_id), std::to_string(expired_lines)}),
      "the batch's files");
  if (!done.is_ok()) return done.status();
  return done->integer() == 1 ? final_status : std::string();
}

Result<std::vector<std::string>> BatchStore::tick(double ttl_s, double stale_finalizing_s) {
  auto members = checked(client_->command({"SMEMBERS", keys_.active()}), "SMEMBERS");
  if (!members.is_ok()) return members.status();
  std::vector<std::string> ids;
  for (const RedisReply& m : members->elements()) ids.push_back(m.str());
  std::vector<std::string> finalized;
  if (!ids.empty()) {
    std::vector<Argv> reads;
    for (const std::string& id : ids) {
      reads.push_back({"HMGET", keys_.batch(id), "status", "expires_at", "finalizing_at"});
    }
    auto replies = client_->pipeline(reads);
    if (!replies.is_ok()) return replies.status();
    const int64_t now = unix_seconds();
    for (size_t i = 0; i < ids.size(); ++i) {
      const RedisReply& r = (*replies)[i];
      const std::string status = r.size() > 0 ? r[0].str() : "";
      bool run = false;
      if (status.empty()) {
        TS_RETURN_IF_ERROR(
            checked(client_->command({"SREM", keys_.active(), ids[i]}), "SREM").status());
      } else if (status == "in_progress" && now >= to_int(r[1].str())) {
        auto expired = checked(
            client_->eval_script(s(kExpireScript), {keys_.batch(ids[i])}, {std::to_string(now)}),
            "the expiry");
        if (!expired.is_ok()) return expired.status();
        run = expired->integer() == 1;
      } else if (status == "cancelling") {
        run = true;
      } else if (status == "finalizing" && now - to_int(r[2].str()) >= stale_finalizing_s) {
        run = true;
      }
      if (run) {
        auto final_status = finalize(ids[i], ttl_s);
        if (!final_status.is_ok()) return final_status.status();
        if (!final_status->empty()) finalized.push_back(*final_status);
      }
    }
  }
  auto queues = checked(client_->command({"SMEMBERS", keys_.queues()}), "SMEMBERS");
  if (!queues.is_ok()) return queues.status();
  for (const RedisReply& q : queues->elements()) TS_RETURN_IF_ERROR(trim(q.str()));
  return finalized;
}

Status BatchStore::trim(std::string_view queue) {
  return checked(client_->eval_script(s(kTrimScript), {keys_.queue(queue)}, {s(kGroup)}),
                 "the trim")
      .status();
}

}  // namespace tideserve::jobs
