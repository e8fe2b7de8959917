// A synchronous Redis client on hiredis 0.14 (Debian bookworm's): the foundation of the worker
// mode's jobs/ layer (Redis Streams consumer groups, batch files and batches).
//
// Threading: a RedisClient is NOT thread-safe. It owns one TCP connection; give each thread its
// own client (connections are cheap for Redis). RedisReply values are plain values and may be
// moved or copied between threads freely.
//
// Errors, in two kinds that callers must keep apart:
//  - a Redis error reply (-ERR, -WRONGTYPE, -NOSCRIPT, -BUSYGROUP, ...) is an answer: command()
//    returns an OK Result holding a RedisReply of kind kError, and the connection stays usable;
//  - an I/O error, EOF or timeout is a Status kUnavailable: the connection is then broken (the
//    protocol stream may be out of step), every later call fails fast with kUnavailable until
//    reconnect() succeeds. with_retry() does that reconnecting for one command.
//
// TLS: hiredis 0.14 has none. A TLS Redis (rediss://) is reached through a sidecar (stunnel, or
// the service mesh's mTLS) that this client talks plain TCP to on localhost.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tideserve/util/status.h"

struct redisContext;  // hiredis' connection; only redis_client.cc includes hiredis.h

namespace tideserve::jobs {

struct RedisOptions {
  std::string host = "127.0.0.1";
  int port = 6379;
  std::string password;  // AUTH password (empty: no AUTH)
  std::string username;  // Redis 6+ ACL user (empty: AUTH <password>, the "default" user)
  int db = 0;            // SELECT db after connecting (0: no SELECT)
  double connect_timeout_s = 2;
  double command_timeout_s = 5;  // per socket read/write; <= 0: block forever
  int keepalive_s = 15;          // TCP keepalive idle time; <= 0: keepalive off
};

// redis://[[user]:password@]host[:port][/db]. User and password may be percent-encoded (%40 for
// '@'); the host may be an IPv6 literal in brackets. Refused with a message that says why:
// rediss:// (hiredis 0.14 has no TLS), other schemes, query strings, a missing host, a bad port
// or db, userinfo without ':'.
Result<RedisOptions> parse_redis_url(const std::string& url);

// One reply, copied out of hiredis' redisReply (which is freed at once): nil, integer, bulk
// string, status (+OK, +PONG, +QUEUED), error (-ERR ...), or array of replies.
class RedisReply {
 public:
  enum class Kind { kNil, kInteger, kString, kStatus, kError, kArray };

  RedisReply() = default;  // nil
  static RedisReply nil() { return RedisReply(); }
  static RedisReply integer(int64_t value);
  static RedisReply string(std::string value);
  static RedisReply status(std::string value);
  static RedisReply error(std::string message);
  static RedisReply array(std::vector<RedisReply> elements);

  Kind kind() const { return kind_; }
  bool is_nil() const { return kind_ == Kind::kNil; }
  bool is_integer() const { return kind_ == Kind::kInteger; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_status() const { return kind_ == Kind::kStatus; }
  bool is_error() const { return kind_ == Kind::kError; }
  bool is_array() const { return kind_ == Kind::kArray; }
  // A status reply equal to `expected` (e.g. "OK", "PONG", "QUEUED").
  bool is_status(std::string_view expected) const {
    return kind_ == Kind::kStatus && str_ == expected;
  }
  // An error reply whose first word is `prefix` (e.g. "NOSCRIPT", "BUSYGROUP", "WRONGTYPE").
  bool is_error_code(std::string_view prefix) const;

  int64_t integer() const { return integer_; }     // kInteger; 0 otherwise
  const std::string& str() const { return str_; }  // the bytes of kString, kStatus, kError
  const std::vector<RedisReply>& elements() const { return elements_; }  // kArray
  size_t size() const { return elements_.size(); }
  const RedisReply& operator[](size_t i) const { return elements_[i]; }

  // For logs and test failures: (nil), (integer) 3, "bytes" with escapes, (status) OK,
  // (error) ERR ..., [a, b, ...]. Not a wire format.
  std::string to_string() const;

 private:
  Kind kind_ = Kind::kNil;
  int64_t integer_ = 0;
  std::string str_;
  std::vector<RedisReply> elements_;
};

class RedisClient {
 public:
  // Connects (connect_timeout_s), sets the command timeout and TCP keepalive, then AUTH and
  // SELECT. kUnavailable when the server cannot be reached; kFailedPrecondition when AUTH is
  // refused; kInvalidArgument when SELECT is.
  static Result<std::unique_ptr<RedisClient>> connect(const RedisOptions& options);

  ~RedisClient();
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  // One command, argument by argument: binary safe (embedded NULs, CR LF) and no format string.
  Result<RedisReply> command(const std::vector<std::string>& argv);

  // Sends every command, then reads one reply each, in order (one round trip). Error replies
  // stay in their slot; an I/O error fails the whole call and breaks the connection (which
  // commands ran is then unknown). MULTI ... EXEC inside gives a transaction in one round trip.
  Result<std::vector<RedisReply>> pipeline(const std::vector<std::vector<std::string>>& commands);

  // EVALSHA <sha1(script)> with the keys and args; on NOSCRIPT (a fresh or flushed server) EVAL
  // of the script text, which also caches it for the next EVALSHA.
  Result<RedisReply> eval_script(const std::string& script, const std::vector<std::string>& keys,
                                 const std::vector<std::string>& args);

  // Drops the connection and opens a new one with the same options (AUTH, SELECT again).
  Status reconnect();

  // True after an I/O error or timeout until reconnect() succeeds.
  bool broken() const { return context_ == nullptr; }
  const RedisOptions& options() const { return options_; }

 private:
  explicit RedisClient(RedisOptions options) : options_(std::move(options)) {}
  Status open();
  Status fail(const char* what);  // reads the context's error, breaks the connection
  void close();

  RedisOptions options_;
  redisContext* context_ = nullptr;
};

// Runs `argv`, and on kUnavailable (I/O error, timeout, refused connection) reconnects and tries
// again, up to `attempts` tries in all, sleeping backoff_s, 2*backoff_s, ... (capped at
// max_backoff_s) between them. A Redis error reply is an answer and is returned at once, never
// retried; so is any other Status. Retrying after a timeout may run the command twice: use it
// for idempotent commands, or for ones whose duplicates the caller tolerates (an XADD with an
// explicit id, XACK, a script that checks before it writes).
Result<RedisReply> with_retry(RedisClient& client, const std::vector<std::string>& argv,
                              int attempts = 5, double backoff_s = 0.05,
                              double max_backoff_s = 1.0);

// SHA-1 of `data` as 40 lowercase hex digits (what EVALSHA and SCRIPT LOAD use).
std::string sha1_hex(std::string_view data);

}  // namespace tideserve::jobs
