#include "tideserve/jobs/redis_client.h"

#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <limits>
#include <thread>

namespace tideserve::jobs {
namespace {

// ---- URL parsing -------------------------------------------------------------------------

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Result<std::string> percent_decode(std::string_view s, const char* what) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    const int hi = i + 2 < s.size() ? hex_value(s[i + 1]) : -1;
    const int lo = i + 2 < s.size() ? hex_value(s[i + 2]) : -1;
    if (hi < 0 || lo < 0) {
      return invalid_argument(std::string("redis URL: bad percent escape in the ") + what +
                              " (write %XX with two hex digits, e.g. %40 for '@')");
    }
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

// A decimal number in [lo, hi], digits only (no sign, no spaces).
bool parse_int(std::string_view s, long lo, long hi, int* out) {
  if (s.empty() || s.size() > 10) return false;
  long v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  if (v < lo || v > hi) return false;
  *out = static_cast<int>(v);
  return true;
}

// ---- replies -----------------------------------------------------------------------------

RedisReply copy_reply(const redisReply* r) {
  switch (r->type) {
    case REDIS_REPLY_INTEGER:
      return RedisReply::integer(r->integer);
    case REDIS_REPLY_STRING:
      return RedisReply::string(std::string(r->str, r->len));
    case REDIS_REPLY_STATUS:
      return RedisReply::status(std::string(r->str, r->len));
    case REDIS_REPLY_ERROR:
      return RedisReply::error(std::string(r->str, r->len));
    case REDIS_REPLY_ARRAY: {
      std::vector<RedisReply> elements;
      elements.reserve(r->elements);
      for (size_t i = 0; i < r->elements; ++i) elements.push_back(copy_reply(r->element[i]));
      return RedisReply::array(std::move(elements));
    }
    case REDIS_REPLY_NIL:
    default:
      return RedisReply::nil();
  }
}

// Takes ownership of a hiredis reply, copies it and frees it.
RedisReply take_reply(void* raw) {
  std::unique_ptr<redisReply, decltype(&freeReplyObject)> owned(static_cast<redisReply*>(raw),
                                                                &freeReplyObject);
  return copy_reply(owned.get());
}

void append_escaped(std::string& out, const std::string& bytes) {
  static const char kHex[] = "0123456789abcdef";
  for (unsigned char c : bytes) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20 || c >= 0x7f) {
          out += "\\x";
          out += kHex[c >> 4];
          out += kHex[c & 15];
        } else {
          out += static_cast<char>(c);
        }
    }
  }
}

void append_reply(std::string& out, const RedisReply& r) {
  switch (r.kind()) {
    case RedisReply::Kind::kNil:
      out += "(nil)";
      break;
    case RedisReply::Kind::kInteger:
      out += "(integer) " + std::to_string(r.integer());
      break;
    case RedisReply::Kind::kString:
      out += '"';
      append_escaped(out, r.str());
      out += '"';
      break;
    case RedisReply::Kind::kStatus:
      out += "(status) ";
      append_escaped(out, r.str());
      break;
    case RedisReply::Kind::kError:
      out += "(error) ";
      append_escaped(out, r.str());
      break;
    case RedisReply::Kind::kArray:
      out += '[';
      for (size_t i = 0; i < r.size(); ++i) {
        if (i > 0) out += ", ";
        append_reply(out, r[i]);
      }
      out += ']';
      break;
  }
}

// ---- connection helpers -------------------------------------------------------------------

timeval to_timeval(double seconds) {
  timeval tv{};
  const auto us = static_cast<int64_t>(seconds * 1e6);
  tv.tv_sec = static_cast<time_t>(us / 1000000);
  tv.tv_usec = static_cast<suseconds_t>(us % 1000000);
  return tv;
}

// argv as hiredis wants it: pointers and lengths, so any byte (NUL included) travels intact.
struct ArgvView {
  explicit ArgvView(const std::vector<std::string>& argv) {
    ptrs.reserve(argv.size());
    lens.reserve(argv.size());
    for (const std::string& a : argv) {
      ptrs.push_back(a.data());
      lens.push_back(a.size());
    }
  }
  int argc() const { return static_cast<int>(ptrs.size()); }
  std::vector<const char*> ptrs;
  std::vector<size_t> lens;
};

std::string where(const RedisOptions& o) {
  const bool ipv6 = o.host.find(':') != std::string::npos;
  return (ipv6 ? "[" + o.host + "]" : o.host) + ":" + std::to_string(o.port);
}

// ---- SHA-1 (FIPS 180-4) ------------------------------------------------------------------

uint32_t rotl(uint32_t x, int n) {
  return (x << n) | (x >> (32 - n));
}

void sha1_block(std::array<uint32_t, 5>& h, const unsigned char* block) {
  uint32_t w[80];
  for (int i = 0; i < 16; ++i) {
    w[i] = (uint32_t{block[4 * i]} << 24) | (uint32_t{block[4 * i + 1]} << 16) |
           (uint32_t{block[4 * i + 2]} << 8) | uint32_t{block[4 * i + 3]};
  }
  for (int i = 16; i < 80; ++i) w[i] = rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
  uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
  for (int i = 0; i < 80; ++i) {
    uint32_t f, k;
    if (i < 20) {
      f = (b & c) | (~b & d);
      k = 0x5a827999;
    } else if (i < 40) {
      f = b ^ c ^ d;
      k = 0x6ed9eba1;
    } else if (i < 60) {
      f = (b & c) | (b & d) | (c & d);
      k = 0x8f1bbcdc;
    } else {
      f = b ^ c ^ d;
      k = 0xca62c1d6;
    }
    const uint32_t t = rotl(a, 5) + f + e + k + w[i];
    e = d;
    d = c;
    c = rotl(b, 30);
    b = a;
    a = t;
  }
  h[0] += a;
  h[1] += b;
  h[2] += c;
  h[3] += d;
  h[4] += e;
}

}  // namespace

// ---- parse_redis_url ---------------------------------------------------------------------

Result<RedisOptions> parse_redis_url(const std::string& url) {
  const size_t scheme_end = url.find("://");
  if (scheme_end == std::string::npos) {
    return invalid_argument("redis URL '" + url +
                            "': expected redis://[[user]:password@]host[:port][/db]");
  }
  std::string scheme = url.substr(0, scheme_end);
  std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (scheme == "rediss") {
    return invalid_argument(
        "redis URL: rediss:// (TLS) is not supported: hiredis 0.14 has no TLS. Reach a TLS Redis "
        "through a sidecar such as stunnel, or the service mesh's mTLS, and point redis:// at its "
        "local plain-TCP end");
  }
  if (scheme != "redis") {
    return invalid_argument("redis URL: unsupported scheme '" + scheme +
                            "://' (only redis://[[user]:password@]host[:port][/db])");
  }
  std::string_view rest(url);
  rest.remove_prefix(scheme_end + 3);
  if (rest.find('?') != std::string_view::npos || rest.find('#') != std::string_view::npos) {
    return invalid_argument(
        "redis URL: query strings and fragments are not supported; put the db in the path "
        "(redis://host:6379/2) and timeouts in flags");
  }

  RedisOptions options;
  // The userinfo ends at the last '@' (a db path cannot hold one, an unencoded password can).
  const size_t at = rest.rfind('@');
  if (at != std::string_view::npos) {
    const std::string_view userinfo = rest.substr(0, at);
    rest.remove_prefix(at + 1);
    const size_t colon = userinfo.find(':');
    if (colon == std::string_view::npos) {
      return invalid_argument(
          "redis URL: the part before '@' needs a ':' (redis://:password@host or "
          "redis://user:password@host)");
    }
    Result<std::string> user = percent_decode(userinfo.substr(0, colon), "user name");
    if (!user.is_ok()) return user.status();
    Result<std::string> password = percent_decode(userinfo.substr(colon + 1), "password");
    if (!password.is_ok()) return password.status();
    options.username = std::move(*user);
    options.password = std::move(*password);
    if (!options.username.empty() && options.password.empty()) {
      return invalid_argument("redis URL: user '" + options.username +
                              "' without a password (ACL users authenticate with one)");
    }
  }

  std::string_view hostport = rest;
  std::string_view path;
  if (const size_t slash = rest.find('/'); slash != std::string_view::npos) {
    hostport = rest.substr(0, slash);
    path = rest.substr(slash + 1);
  }
  std::string_view port_text;
  if (!hostport.empty() && hostport.front() == '[') {  // [IPv6]:port
    const size_t close = hostport.find(']');
    if (close == std::string_view::npos) {
      return invalid_argument("redis URL: IPv6 host without its closing ']'");
    }
    options.host = std::string(hostport.substr(1, close - 1));
    const std::string_view after = hostport.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return invalid_argument("redis URL: junk after the IPv6 host");
      port_text = after.substr(1);
      if (port_text.empty()) return invalid_argument("redis URL: empty port after ':'");
    }
  } else {
    const size_t colon = hostport.find(':');
    options.host = std::string(hostport.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = hostport.substr(colon + 1);
      if (port_text.empty()) return invalid_argument("redis URL: empty port after ':'");
    }
  }
  if (options.host.empty()) return invalid_argument("redis URL '" + url + "': no host");
  if (!port_text.empty() && !parse_int(port_text, 1, 65535, &options.port)) {
    return invalid_argument("redis URL: port '" + std::string(port_text) +
                            "' is not a number in 1..65535");
  }
  if (!path.empty() && !parse_int(path, 0, std::numeric_limits<int>::max(), &options.db)) {
    return invalid_argument("redis URL: db '" + std::string(path) +
                            "' is not a non-negative number (redis://host:6379/2)");
  }
  return options;
}

// ---- RedisReply --------------------------------------------------------------------------

RedisReply RedisReply::integer(int64_t value) {
  RedisReply r;
  r.kind_ = Kind::kInteger;
  r.integer_ = value;
  return r;
}

RedisReply RedisReply::string(std::string value) {
  RedisReply r;
  r.kind_ = Kind::kString;
  r.str_ = std::move(value);
  return r;
}

RedisReply RedisReply::status(std::string value) {
  RedisReply r;
  r.kind_ = Kind::kStatus;
  r.str_ = std::move(value);
  return r;
}

RedisReply RedisReply::error(std::string message) {
  RedisReply r;
  r.kind_ = Kind::kError;
  r.str_ = std::move(message);
  return r;
}

RedisReply RedisReply::array(std::vector<RedisReply> elements) {
  RedisReply r;
  r.kind_ = Kind::kArray;
  r.elements_ = std::move(elements);
  return r;
}

bool RedisReply::is_error_code(std::string_view prefix) const {
  if (kind_ != Kind::kError || str_.size() < prefix.size()) return false;
  if (str_.compare(0, prefix.size(), prefix) != 0) return false;
  return str_.size() == prefix.size() || str_[prefix.size()] == ' ';
}

std::string RedisReply::to_string() const {
  std::string out;
  append_reply(out, *this);
  return out;
}

// ---- RedisClient -------------------------------------------------------------------------

Result<std::unique_ptr<RedisClient>> RedisClient::connect(const RedisOptions& options) {
  if (options.port < 1 || options.port > 65535) {
    return invalid_argument("redis: port " + std::to_string(options.port) + " out of 1..65535");
  }
  std::unique_ptr<RedisClient> client(new RedisClient(options));
  TS_RETURN_IF_ERROR(client->open());
  return client;
}

RedisClient::~RedisClient() {
  close();
}

void RedisClient::close() {
  if (context_ != nullptr) redisFree(context_);
  context_ = nullptr;
}

Status RedisClient::fail(const char* what) {
  std::string reason = "unknown error";
  int err = 0;
  if (context_ != nullptr) {
    err = context_->err;
    if (context_->errstr[0] != '\0') reason = context_->errstr;
  }
  close();
  std::string message = std::string("redis ") + where(options_) + ": " + what + ": ";
  // hiredis reports a socket timeout (SO_RCVTIMEO) as an I/O error with EAGAIN's text.
  if (err == REDIS_ERR_IO && reason.find("temporarily unavailable") != std::string::npos) {
    char seconds[32];
    std::snprintf(seconds, sizeof(seconds), "%g", options_.command_timeout_s);
    message += std::string("timed out: no reply within ") + seconds + " s (command_timeout_s)";
  } else if (err == REDIS_ERR_EOF) {
    message += "the server closed the connection (" + reason + ")";
  } else {
    message += reason;
  }
  return unavailable(message + "; the connection is dropped until reconnect()");
}

Status RedisClient::open() {
  close();
  context_ = options_.connect_timeout_s > 0
                 ? redisConnectWithTimeout(options_.host.c_str(), options_.port,
                                           to_timeval(options_.connect_timeout_s))
                 : redisConnect(options_.host.c_str(), options_.port);
  if (context_ == nullptr) {
    return unavailable("redis " + where(options_) + ": cannot allocate a connection");
  }
  if (context_->err != 0) return fail("cannot connect");

  // hiredis 0.14's connect timeout bounds the connect only: the socket then blocks forever on a
  // hung server unless SO_RCVTIMEO/SO_SNDTIMEO are set, which redisSetTimeout does.
  const timeval command_tv =
      to_timeval(options_.command_timeout_s > 0 ? options_.command_timeout_s : 0.0);
  if (redisSetTimeout(context_, command_tv) != REDIS_OK) return fail("cannot set the timeout");
  if (options_.keepalive_s > 0) {
    if (redisEnableKeepAlive(context_) != REDIS_OK) return fail("cannot enable TCP keepalive");
    // hiredis 0.14 fixes the interval at REDIS_KEEPALIVE_INTERVAL (15 s); set ours on the fd.
    if (options_.keepalive_s != REDIS_KEEPALIVE_INTERVAL) {
      const int idle = options_.keepalive_s;
      const int interval = std::max(1, idle / 3);
      const int count = 3;
      if (setsockopt(context_->fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle)) != 0 ||
          setsockopt(context_->fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof(interval)) != 0 ||
          setsockopt(context_->fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof(count)) != 0) {
        close();
        return unavailable("redis " + where(options_) + ": cannot set TCP keepalive to " +
                           std::to_string(idle) + " s: " + std::strerror(errno));
      }
    }
  }

  if (!options_.password.empty()) {
    std::vector<std::string> auth = {"AUTH"};
    if (!options_.username.empty()) auth.push_back(options_.username);
    auth.push_back(options_.password);
    Result<RedisReply> reply = command(auth);
    if (!reply.is_ok()) return reply.status();
    if (reply->is_error()) {
      close();
      return Status(StatusCode::kFailedPrecondition,
                    "redis " + where(options_) + ": AUTH" +
                        (options_.username.empty() ? "" : " as '" + options_.username + "'") +
                        " refused: " + reply->str() +
                        " (check the password in the redis URL or its secret)");
    }
  }
  if (options_.db != 0) {
    Result<RedisReply> reply = command({"SELECT", std::to_string(options_.db)});
    if (!reply.is_ok()) return reply.status();
    if (reply->is_error()) {
      close();
      return invalid_argument("redis " + where(options_) + ": SELECT " +
                              std::to_string(options_.db) + " refused: " + reply->str() +
                              " (the server's `databases` setting bounds the db number)");
    }
  }
  return Status::ok();
}

Status RedisClient::reconnect() {
  return open();
}

Result<RedisReply> RedisClient::command(const std::vector<std::string>& argv) {
  if (argv.empty()) return invalid_argument("redis: empty command");
  if (context_ == nullptr) {
    return unavailable("redis " + where(options_) + ": connection broken; call reconnect()");
  }
  ArgvView view(argv);
  void* raw = redisCommandArgv(context_, view.argc(), view.ptrs.data(), view.lens.data());
  if (raw == nullptr) return fail(argv[0].c_str());
  return take_reply(raw);
}

Result<std::vector<RedisReply>> RedisClient::pipeline(
    const std::vector<std::vector<std::string>>& commands) {
  std::vector<RedisReply> replies;
  if (commands.empty()) return replies;
  for (const auto& argv : commands) {
    if (argv.empty()) return invalid_argument("redis: empty command in a pipeline");
  }
  if (context_ == nullptr) {
    return unavailable("redis " + where(options_) + ": connection broken; call reconnect()");
  }
  for (const auto& argv : commands) {
    ArgvView view(argv);
    if (redisAppendCommandArgv(context_, view.argc(), view.ptrs.data(), view.lens.data()) !=
        REDIS_OK) {
      return fail("pipeline append");
    }
  }
  replies.reserve(commands.size());
  for (size_t i = 0; i < commands.size(); ++i) {
    void* raw = nullptr;
    if (redisGetReply(context_, &raw) != REDIS_OK || raw == nullptr) {
      return fail(
          ("pipeline reply " + std::to_string(i + 1) + " of " + std::to_string(commands.size()))
              .c_str());
    }
    replies.push_back(take_reply(raw));
  }
  return replies;
}

Result<RedisReply> RedisClient::eval_script(const std::string& script,
                                            const std::vector<std::string>& keys,
                                            const std::vector<std::string>& args) {
  std::vector<std::string> argv;
  argv.reserve(3 + keys.size() + args.size());
  argv.push_back("EVALSHA");
  argv.push_back(sha1_hex(script));
  argv.push_back(std::to_string(keys.size()));
  argv.insert(argv.end(), keys.begin(), keys.end());
  argv.insert(argv.end(), args.begin(), args.end());
  Result<RedisReply> reply = command(argv);
  if (!reply.is_ok() || !reply->is_error_code("NOSCRIPT")) return reply;
  argv[0] = "EVAL";
  argv[1] = script;
  return command(argv);
}

// ---- with_retry --------------------------------------------------------------------------

Result<RedisReply> with_retry(RedisClient& client, const std::vector<std::string>& argv,
                              int attempts, double backoff_s, double max_backoff_s) {
  attempts = std::max(1, attempts);
  double delay = std::max(0.0, backoff_s);
  Status last = unavailable("redis: no attempt made");
  for (int attempt = 0; attempt < attempts; ++attempt) {
    if (attempt > 0) {
      std::this_thread::sleep_for(std::chrono::duration<double>(delay));
      delay = std::min(delay * 2, std::max(0.0, max_backoff_s));
    }
    if (client.broken()) {
      Status s = client.reconnect();
      if (!s.is_ok()) {
        if (s.code() != StatusCode::kUnavailable) return s;
        last = std::move(s);
        continue;
      }
    }
    Result<RedisReply> reply = client.command(argv);
    if (reply.is_ok() || reply.status().code() != StatusCode::kUnavailable) return reply;
    last = reply.status();
  }
  return Status(StatusCode::kUnavailable, "redis: " + argv.front() + " failed after " +
                                              std::to_string(attempts) +
                                              " attempts: " + last.message());
}

// ---- SHA-1 -------------------------------------------------------------------------------

std::string sha1_hex(std::string_view data) {
  std::array<uint32_t, 5> h = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0};
  const auto* bytes = reinterpret_cast<const unsigned char*>(data.data());
  size_t full = data.size() / 64;
  for (size_t i = 0; i < full; ++i) sha1_block(h, bytes + 64 * i);

  // The tail, 0x80, zeros, and the length in bits (big endian) fill one or two blocks.
  unsigned char tail[128] = {};
  const size_t rest = data.size() - 64 * full;
  if (rest > 0) std::memcpy(tail, bytes + 64 * full, rest);
  tail[rest] = 0x80;
  const size_t tail_len = rest + 1 + 8 <= 64 ? 64 : 128;
  const uint64_t bits = static_cast<uint64_t>(data.size()) * 8;
  for (int i = 0; i < 8; ++i) tail[tail_len - 1 - i] = static_cast<unsigned char>(bits >> (8 * i));
  for (size_t off = 0; off < tail_len; off += 64) sha1_block(h, tail + off);

  static const char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(40);
  for (uint32_t word : h) {
    for (int shift = 28; shift >= 0; shift -= 4) out += kHex[(word >> shift) & 15];
  }
  return out;
}

}  // namespace tideserve::jobs
