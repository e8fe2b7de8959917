// The Redis client (jobs/redis_client.h) against a real redis-server started per test
// (tests/jobs/redis_server.h): URL parsing, replies, binary safety, pipelines and transactions,
// scripts, the Streams commands the worker relies on, timeouts, crashes and restarts.
#include "tideserve/jobs/redis_client.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "redis_server.h"

namespace tideserve::jobs {
namespace {

using testing::RedisServer;
using testing::RedisServerOptions;
using Clock = std::chrono::steady_clock;

RedisServerOptions with_aof() {
  RedisServerOptions o;
  o.aof = true;
  return o;
}
RedisServerOptions with_args(std::vector<std::string> args) {
  RedisServerOptions o;
  o.extra_args = std::move(args);
  return o;
}

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// ---- without a server --------------------------------------------------------------------

TEST(ParseRedisUrlTest, AcceptsTheDocumentedForms) {
  struct Case {
    std::string url, host;
    int port;
    std::string username, password;
    int db;
  };
  const std::vector<Case> cases = {
      {"redis://localhost", "localhost", 6379, "", "", 0},
      {"redis://redis.jobs.svc:6380", "redis.jobs.svc", 6380, "", "", 0},
      {"redis://10.0.0.7:6379/3", "10.0.0.7", 6379, "", "", 3},
      {"redis://h/", "h", 6379, "", "", 0},
      {"redis://:s3cret@h", "h", 6379, "", "s3cret", 0},
      {"redis://worker:s3cret@h:7000/15", "h", 7000, "worker", "s3cret", 15},
      {"redis://:p%40ss%3Aw%2Frd@h", "h", 6379, "", "p@ss:w/rd", 0},  // percent-encoded
      {"redis://:p@ss@h:1", "h", 1, "", "p@ss", 0},                   // last '@' ends userinfo
      {"redis://u:a:b@h", "h", 6379, "u", "a:b", 0},                  // first ':' splits
      {"redis://[::1]:6390/2", "::1", 6390, "", "", 2},
      {"redis://[::1]", "::1", 6379, "", "", 0},
      {"REDIS://H", "H", 6379, "", "", 0},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.url);
    Result<RedisOptions> o = parse_redis_url(c.url);
    ASSERT_TRUE(o.is_ok()) << o.status().to_string();
    EXPECT_EQ(o->host, c.host);
    EXPECT_EQ(o->port, c.port);
    EXPECT_EQ(o->username, c.username);
    EXPECT_EQ(o->password, c.password);
    EXPECT_EQ(o->db, c.db);
    EXPECT_EQ(o->command_timeout_s, 5);  // the defaults stay
    EXPECT_EQ(o->keepalive_s, 15);
  }
}

TEST(ParseRedisUrlTest, RefusesWithAReason) {
  struct Case {
    std::string url, message_part;
  };
  const std::vector<Case> cases = {
      {"rediss://h:6380", "no TLS"},
      {"rediss://h:6380", "stunnel"},
      {"unix:///run/redis.sock", "unsupported scheme"},
      {"http://h", "unsupported scheme"},
      {"localhost:6379", "expected redis://"},
      {"", "expected redis://"},
      {"redis://", "no host"},
      {"redis://:6379", "no host"},
      {"redis://:pw@", "no host"},
      {"redis://h:", "empty port"},
      {"redis://h:0", "1..65535"},
      {"redis://h:65536", "1..65535"},
      {"redis://h:63x9", "1..65535"},
      {"redis://h:-1", "1..65535"},
      {"redis://h/x", "db 'x'"},
      {"redis://h/-1", "db '-1'"},
      {"redis://h/1/2", "db '1/2'"},
      {"redis://h/99999999999", "db"},
      {"redis://h?db=2", "query strings"},
      {"redis://pw@h", "needs a ':'"},
      {"redis://user:@h", "without a password"},
      {"redis://:p%4@h", "percent escape"},
      {"redis://:p%zz@h", "percent escape"},
      {"redis://[::1:6379", "closing ']'"},
      {"redis://[::1]x", "junk after"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.url);
    Result<RedisOptions> o = parse_redis_url(c.url);
    ASSERT_FALSE(o.is_ok());
    EXPECT_EQ(o.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(o.status().message().find(c.message_part), std::string::npos) << o.status().message();
  }
}

TEST(Sha1Test, KnownAnswers) {
  // FIPS 180 / RFC 3174 vectors, plus the padding edges (55, 56, 63, 64 bytes).
  EXPECT_EQ(sha1_hex(""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
  EXPECT_EQ(sha1_hex("abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
  EXPECT_EQ(sha1_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
  EXPECT_EQ(sha1_hex("The quick brown fox jumps over the lazy dog"),
            "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12");
  EXPECT_EQ(sha1_hex(std::string(1000000, 'a')), "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
  EXPECT_EQ(sha1_hex(std::string(55, 'a')), "c1c8bbdc22796e28c0e15163d20899b65621d65a");
  EXPECT_EQ(sha1_hex(std::string(56, 'a')), "c2db330f6083854c99d4b5bfb6e8f29f201be699");
  EXPECT_EQ(sha1_hex(std::string(63, 'a')), "03f09f5b158a7a8cdad920bddc29b81c18a551f5");
  EXPECT_EQ(sha1_hex(std::string(64, 'a')), "0098ba824b5c16427bd7a1122a5a442a25ec644d");
  EXPECT_EQ(sha1_hex(std::string("\0\xff", 2)), sha1_hex(std::string("\0\xff", 2)));
}

TEST(RedisReplyTest, ToStringShowsKindsAndEscapes) {
  const RedisReply r = RedisReply::array({RedisReply::nil(), RedisReply::integer(-3),
                                          RedisReply::string(std::string("a\0\"\n", 4)),
                                          RedisReply::status("OK"), RedisReply::error("ERR no"),
                                          RedisReply::array({RedisReply::string("x")})});
  EXPECT_EQ(r.to_string(),
            R"([(nil), (integer) -3, "a\x00\"\n", (status) OK, (error) ERR no, ["x"]])");
  EXPECT_TRUE(RedisReply::status("OK").is_status("OK"));
  EXPECT_FALSE(RedisReply::string("OK").is_status("OK"));
  EXPECT_TRUE(RedisReply::error("NOSCRIPT No matching script").is_error_code("NOSCRIPT"));
  EXPECT_FALSE(RedisReply::error("NOSCRIPTS x").is_error_code("NOSCRIPT"));
  EXPECT_TRUE(RedisReply().is_nil());
}

TEST(RedisClientTest, ARefusedConnectionIsUnavailable) {
  RedisOptions o;
  o.port = 1;  // nothing listens on 127.0.0.1:1
  Result<std::unique_ptr<RedisClient>> c = RedisClient::connect(o);
  ASSERT_FALSE(c.is_ok());
  EXPECT_EQ(c.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(c.status().message().find("127.0.0.1:1"), std::string::npos) << c.status().message();
}

// ---- against a real redis-server ---------------------------------------------------------

class RedisTest : public ::testing::Test {
 protected:
  // Starts the server; call from the test body (so each test can choose AOF / extra args).
  void start(RedisServerOptions options = {}) {
    server_ = std::make_unique<RedisServer>(std::move(options));
    std::string error;
    ASSERT_TRUE(server_->start(&error)) << error;
  }
  void SetUp() override { TIDESERVE_REDIS_SKIP_IF_MISSING(); }

  RedisOptions options() const {
    RedisOptions o;
    o.port = server_->port();
    o.command_timeout_s = 2;
    return o;
  }
  std::unique_ptr<RedisClient> connect(RedisOptions o) {
    Result<std::unique_ptr<RedisClient>> c = RedisClient::connect(o);
    EXPECT_TRUE(c.is_ok()) << c.status().to_string();
    return c.is_ok() ? std::move(*c) : nullptr;
  }
  std::unique_ptr<RedisClient> connect() { return connect(options()); }

  // A command that must not fail at the transport level.
  static RedisReply run(RedisClient& c, const std::vector<std::string>& argv) {
    Result<RedisReply> r = c.command(argv);
    EXPECT_TRUE(r.is_ok()) << argv[0] << ": " << r.status().to_string();
    return r.is_ok() ? std::move(*r) : RedisReply::error("transport: " + r.status().message());
  }

  std::unique_ptr<RedisServer> server_;
};

// The value of `field` in a flat [field, value, field, value, ...] reply (XINFO, XPENDING).
const RedisReply* field(const RedisReply& flat, const std::string& name) {
  for (size_t i = 0; i + 1 < flat.size(); i += 2) {
    if (flat[i].str() == name) return &flat[i + 1];
  }
  return nullptr;
}

TEST_F(RedisTest, CommandsAndBinarySafeValues) {
  ASSERT_NO_FATAL_FAILURE(start());
  auto c = connect();
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(run(*c, {"PING"}).is_status("PONG"));

  const std::string key("k\0ey\r\n", 6);
  const std::string value("\0\x01\xff\r\n$3\r\n*-1\r\n\0", 16);  // NULs and RESP-looking bytes
  EXPECT_TRUE(run(*c, {"SET", key, value}).is_status("OK"));
  const RedisReply got = run(*c, {"GET", key});
  ASSERT_TRUE(got.is_string()) << got.to_string();
  EXPECT_EQ(got.str(), value);
  EXPECT_EQ(run(*c, {"STRLEN", key}).integer(), 16);
  EXPECT_TRUE(run(*c, {"GET", "k"}).is_nil());  // the key is not cut at the NUL
  EXPECT_TRUE(run(*c, {"GET", "missing"}).is_nil());
  EXPECT_EQ(run(*c, {"INCRBY", "n", "41"}).integer(), 41);
  EXPECT_EQ(run(*c, {"INCR", "n"}).integer(), 42);
  const std::string big(1 << 20, 'z');  // 1 MiB, more than one socket read
  EXPECT_TRUE(run(*c, {"SET", "big", big}).is_status("OK"));
  EXPECT_EQ(run(*c, {"GET", "big"}).str(), big);
  const RedisReply list = run(*c, {"MGET", "n", "missing", key});
  ASSERT_TRUE(list.is_array());
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[0].str(), "42");
  EXPECT_TRUE(list[1].is_nil());
  EXPECT_EQ(list[2].str(), value);

  Result<RedisReply> empty = c->command({});
  EXPECT_EQ(empty.status().code(), StatusCode::kInvalidArgument);
}

TEST_F(RedisTest, AnErrorReplyIsAnAnswerNotAStatus) {
  ASSERT_NO_FATAL_FAILURE(start());
  auto c = connect();
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(run(*c, {"SET", "s", "text"}).is_status("OK"));
  Result<RedisReply> r = c->command({"INCR", "s"});
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_TRUE(r->is_error());
  EXPECT_TRUE(r->is_error_code("ERR")) << r->to_string();
  EXPECT_TRUE(run(*c, {"LPUSH", "s", "x"}).is_error_code("WRONGTYPE"));
  EXPECT_TRUE(run(*c, {"NO-SUCH-COMMAND"}).is_error_code("ERR"));
  EXPECT_FALSE(c->broken());
  EXPECT_TRUE(run(*c, {"PING"}).is_status("PONG"));  // the connection is still in step
}

TEST_F(RedisTest, PipelineKeepsOrderAndErrorSlots) {
  ASSERT_NO_FATAL_FAILURE(start());
  auto c = connect();
  ASSERT_NE(c, nullptr);
  std::vector<std::vector<std::string>> commands = {
      {"SET", "a", "1"}, {"INCR", "a"}, {"HSET", "a", "f", "v"}, {"GET", "a"}, {"GET", "none"}};
  for (int i = 0; i < 200; ++i) commands.push_back({"RPUSH", "list", std::to_string(i)});
  Result<std::vector<RedisReply>> r = c->pipeline(commands);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  ASSERT_EQ(r->size(), commands.size());
  EXPECT_TRUE((*r)[0].is_status("OK"));
  EXPECT_EQ((*r)[1].integer(), 2);
  EXPECT_TRUE((*r)[2].is_error_code("WRONGTYPE"));
  EXPECT_EQ((*r)[3].str(), "2");
  EXPECT_TRUE((*r)[4].is_nil());
  EXPECT_EQ(r->back().integer(), 200);
  EXPECT_TRUE(c->pipeline({})->empty());
  EXPECT_EQ(c->pipeline({{"PING"}, {}}).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(RedisTest, MultiExecInAPipeline) {
  ASSERT_NO_FATAL_FAILURE(start());
  auto c = connect();
  ASSERT_NE(c, nullptr);
  Result<std::vector<RedisReply>> r = c->pipeline({{"MULTI"},
                                                   {"INCR", "x"},
                                                   {"INCR", "x"},
                                                   {"SET", "t", "v"},
                                                   {"INCR", "t"},  // fails at EXEC, alone
                                                   {"EXEC"}});
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  ASSERT_EQ(r->size(), 6u);
  EXPECT_TRUE((*r)[0].is_status("OK"));
  for (int i = 1; i <= 4; ++i) EXPECT_TRUE((*r)[i].is_status("QUEUED")) << (*r)[i].to_string();
  const RedisReply& exec = (*r)[5];
  ASSERT_TRUE(exec.is_array()) << exec.to_string();
  ASSERT_EQ(exec.size(), 4u);
  EXPECT_EQ(exec[0].integer(), 1);
  EXPECT_EQ(exec[1].integer(), 2);
  EXPECT_TRUE(exec[2].is_status("OK"));
  EXPECT_TRUE(exec[3].is_error_code("ERR")) << exec[3].to_string();

  // A command refused while queueing aborts the whole transaction (EXECABORT).
  r = c->pipeline({{"MULTI"}, {"INCR", "x"}, {"NO-SUCH-COMMAND"}, {"EXEC"}});
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_TRUE((*r)[2].is_error());
  EXPECT_TRUE((*r)[3].is_error_code("EXECABORT")) << (*r)[3].to_string();
  EXPECT_EQ(run(*c, {"GET", "x"}).str(), "2");
}

TEST_F(RedisTest, EvalScriptUsesEvalshaAndFallsBackOnNoscript) {
  ASSERT_NO_FATAL_FAILURE(start());
  auto c = connect();
  ASSERT_NE(c, nullptr);
  const std::string script =
      "redis.call('SET', KEYS[1], ARGV[1]); return {redis.call('INCR', KEYS[2]), ARGV[2]}";
  // Our SHA-1 is the one Redis computes.
  const RedisReply loaded = run(*c, {"SCRIPT", "LOAD", script});
  ASSERT_TRUE(loaded.is_string()) << loaded.to_string();
  EXPECT_EQ(loaded.str(), sha1_hex(script));

  Result<RedisReply> r = c->eval_script(script, {"k", "n"}, {"v", std::string("b\0in", 4)});
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  ASSERT_TRUE(r->is_array()) << r->to_string();
  EXPECT_EQ((*r)[0].integer(), 1);
  EXPECT_EQ((*r)[1].str(), std::string("b\0in", 4));

  // After SCRIPT FLUSH the EVALSHA answers NOSCRIPT; eval_script sends the text instead...
  EXPECT_TRUE(run(*c, {"SCRIPT", "FLUSH"}).is_status("OK"));
  EXPECT_TRUE(run(*c, {"EVALSHA", sha1_hex(script), "0"}).is_error_code("NOSCRIPT"));
  r = c->eval_script(script, {"k", "n"}, {"v2", "x"});
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  ASSERT_TRUE(r->is_array()) << r->to_string();
  EXPECT_EQ((*r)[0].integer(), 2);
  EXPECT_EQ(run(*c, {"GET", "k"}).str(), "v2");
  // ... which caches it again.
  const RedisReply exists = run(*c, {"SCRIPT", "EXISTS", sha1_hex(script)});
  ASSERT_EQ(exists.size(), 1u);
  EXPECT_EQ(exists[0].integer(), 1);

  // A script's own error is an error reply, not a Status.
  r = c->eval_script("return redis.error_reply('BADJOB no such batch')", {}, {});
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_TRUE(r->is_error_code("BADJOB")) << r->to_string();
}

TEST_F(RedisTest, StreamsRoundTripForTheWorker) {
  ASSERT_NO_FATAL_FAILURE(start());
  auto c = connect();
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(run(*c, {"XGROUP", "CREATE", "jobs", "workers", "$", "MKSTREAM"}).is_status("OK"));
  EXPECT_TRUE(
      run(*c, {"XGROUP", "CREATE", "jobs", "workers", "$", "MKSTREAM"}).is_error_code("BUSYGROUP"));
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    const RedisReply id = run(*c, {"XADD", "jobs", "*", "input", "text " + std::to_string(i),
                                   "payload", std::string("\0\1", 2)});
    ASSERT_TRUE(id.is_string()) << id.to_string();
    ids.push_back(id.str());
  }

  auto group_field = [&](const std::string& name) {
    const RedisReply groups = run(*c, {"XINFO", "GROUPS", "jobs"});
    EXPECT_EQ(groups.size(), 1u) << groups.to_string();
    const RedisReply* v = groups.size() == 1 ? field(groups[0], name) : nullptr;
    EXPECT_NE(v, nullptr) << name << " missing in " << groups.to_string();
    return v != nullptr ? *v : RedisReply::nil();
  };
  EXPECT_EQ(group_field("lag").integer(), 3);  // Redis 7.0: entries not yet delivered
  EXPECT_EQ(group_field("pending").integer(), 0);

  // c1 reads two entries.
  RedisReply read =
      run(*c, {"XREADGROUP", "GROUP", "workers", "c1", "COUNT", "2", "STREAMS", "jobs", ">"});
  ASSERT_TRUE(read.is_array()) << read.to_string();
  ASSERT_EQ(read.size(), 1u);           // one stream
  EXPECT_EQ(read[0][0].str(), "jobs");  // [name, entries]
  const RedisReply& entries = read[0][1];
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0][0].str(), ids[0]);  // [id, [field, value, ...]]
  EXPECT_EQ(entries[0][1][1].str(), "text 0");
  EXPECT_EQ(entries[0][1][3].str(), std::string("\0\1", 2));
  EXPECT_EQ(entries[1][0].str(), ids[1]);
  EXPECT_EQ(group_field("lag").integer(), 1);
  EXPECT_EQ(group_field("pending").integer(), 2);

  // Summary form: [count, smallest id, greatest id, [[consumer, count]]].
  RedisReply pending = run(*c, {"XPENDING", "jobs", "workers"});
  ASSERT_EQ(pending.size(), 4u) << pending.to_string();
  EXPECT_EQ(pending[0].integer(), 2);
  EXPECT_EQ(pending[1].str(), ids[0]);
  EXPECT_EQ(pending[3][0][0].str(), "c1");
  EXPECT_EQ(pending[3][0][1].str(), "2");  // a bulk string, not an integer

  EXPECT_EQ(run(*c, {"XACK", "jobs", "workers", ids[0]}).integer(), 1);
  EXPECT_EQ(run(*c, {"XACK", "jobs", "workers", ids[0]}).integer(), 0);  // idempotent

  // XAUTOCLAIM: nothing has been idle for an hour; everything has been idle for 0 ms.
  RedisReply claim = run(*c, {"XAUTOCLAIM", "jobs", "workers", "c2", "3600000", "0-0"});
  ASSERT_EQ(claim.size(), 3u) << claim.to_string();  // 7.0: [next, entries, deleted ids]
  EXPECT_EQ(claim[0].str(), "0-0");
  EXPECT_EQ(claim[1].size(), 0u);
  claim = run(*c, {"XAUTOCLAIM", "jobs", "workers", "c2", "0", "0-0", "COUNT", "10"});
  ASSERT_EQ(claim.size(), 3u) << claim.to_string();
  ASSERT_EQ(claim[1].size(), 1u) << claim.to_string();
  EXPECT_EQ(claim[1][0][0].str(), ids[1]);
  EXPECT_EQ(claim[2].size(), 0u);

  // Extended form: [[id, consumer, idle ms, delivery count]]: c2 owns it, delivered twice.
  pending = run(*c, {"XPENDING", "jobs", "workers", "-", "+", "10"});
  ASSERT_EQ(pending.size(), 1u) << pending.to_string();
  EXPECT_EQ(pending[0][0].str(), ids[1]);
  EXPECT_EQ(pending[0][1].str(), "c2");
  EXPECT_EQ(pending[0][3].integer(), 2);

  // The rest: c2 reads the third entry; lag 0; ack everything; nothing pending.
  read = run(*c, {"XREADGROUP", "GROUP", "workers", "c2", "COUNT", "10", "STREAMS", "jobs", ">"});
  ASSERT_EQ(read[0][1].size(), 1u) << read.to_string();
  EXPECT_EQ(read[0][1][0][0].str(), ids[2]);
  EXPECT_EQ(group_field("lag").integer(), 0);
  EXPECT_EQ(run(*c, {"XACK", "jobs", "workers", ids[1], ids[2]}).integer(), 2);
  EXPECT_EQ(run(*c, {"XPENDING", "jobs", "workers"})[0].integer(), 0);
  // Nothing new: a non-blocking XREADGROUP answers nil.
  EXPECT_TRUE(run(*c, {"XREADGROUP", "GROUP", "workers", "c2", "STREAMS", "jobs", ">"}).is_nil());
  EXPECT_EQ(run(*c, {"XLEN", "jobs"}).integer(), 3);
}

TEST_F(RedisTest, AuthAclUserAndSelect) {
  ASSERT_NO_FATAL_FAILURE(start(with_args({"--requirepass", "top secret"})));
  RedisOptions o = options();
  {  // no password: connect works, commands answer NOAUTH (error replies)
    auto c = connect(o);
    ASSERT_NE(c, nullptr);
    EXPECT_TRUE(run(*c, {"PING"}).is_error_code("NOAUTH")) << run(*c, {"PING"}).to_string();
  }
  o.password = "wrong";
  Result<std::unique_ptr<RedisClient>> bad = RedisClient::connect(o);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(bad.status().message().find("AUTH"), std::string::npos);
  EXPECT_EQ(bad.status().message().find("wrong"), std::string::npos);  // no password in logs

  Result<RedisOptions> url =
      parse_redis_url("redis://:top%20secret@127.0.0.1:" + std::to_string(server_->port()) + "/3");
  ASSERT_TRUE(url.is_ok()) << url.status().to_string();
  auto c = connect(*url);
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(run(*c, {"SET", "in3", "yes"}).is_status("OK"));
  EXPECT_TRUE(run(*c, {"ACL", "SETUSER", "worker", "on", ">pw", "~*", "+@all"}).is_status("OK"));

  RedisOptions acl = options();
  acl.username = "worker";
  acl.password = "pw";
  auto w = connect(acl);  // db 0
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(run(*w, {"ACL", "WHOAMI"}).str(), "worker");
  EXPECT_TRUE(run(*w, {"GET", "in3"}).is_nil());
  EXPECT_TRUE(run(*w, {"SELECT", "3"}).is_status("OK"));
  EXPECT_EQ(run(*w, {"GET", "in3"}).str(), "yes");

  acl.db = 99;  // beyond `databases 16`
  Result<std::unique_ptr<RedisClient>> no_db = RedisClient::connect(acl);
  ASSERT_FALSE(no_db.is_ok());
  EXPECT_EQ(no_db.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(no_db.status().message().find("SELECT 99"), std::string::npos);
}

TEST_F(RedisTest, ConnectsWithEachKeepaliveAndTimeoutSetting) {
  ASSERT_NO_FATAL_FAILURE(start());
  for (int keepalive : {0, 7, 15}) {     // off, set on the fd, hiredis' own 15 s
    for (double timeout : {0.0, 1.5}) {  // no timeouts (redisConnect), both set
      SCOPED_TRACE("keepalive " + std::to_string(keepalive) + " timeout " +
                   std::to_string(timeout));
      RedisOptions o = options();
      o.keepalive_s = keepalive;
      o.connect_timeout_s = timeout;
      o.command_timeout_s = timeout;
      auto c = connect(o);
      ASSERT_NE(c, nullptr);
      EXPECT_TRUE(run(*c, {"PING"}).is_status("PONG"));
    }
  }
}

TEST_F(RedisTest, APausedServerTimesOutAsUnavailable) {
  ASSERT_NO_FATAL_FAILURE(start());
  RedisOptions o = options();
  o.command_timeout_s = 0.3;
  auto c = connect(o);
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(run(*c, {"PING"}).is_status("PONG"));

  server_->pause();  // SIGSTOP: the socket stays open, nothing answers
  const auto t0 = Clock::now();
  Result<RedisReply> r = c->command({"SET", "during", "pause"});
  const double took = seconds_since(t0);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(r.status().message().find("timed out"), std::string::npos) << r.status().message();
  EXPECT_GE(took, 0.25);
  EXPECT_LT(took, 1.5);
  EXPECT_TRUE(c->broken());
  const auto t1 = Clock::now();
  EXPECT_EQ(c->command({"PING"}).status().code(), StatusCode::kUnavailable);  // fails fast
  EXPECT_LT(seconds_since(t1), 0.1);

  server_->resume();
  ASSERT_TRUE(c->reconnect().is_ok());
  EXPECT_FALSE(c->broken());
  EXPECT_TRUE(run(*c, {"PING"}).is_status("PONG"));
  // The SET sent before the timeout ran when the server woke: a timeout is "unknown", not "no".
  EXPECT_EQ(run(*c, {"GET", "during"}).str(), "pause");
}

TEST_F(RedisTest, AcknowledgedXaddSurvivesKill9WithAofAlways) {
  ASSERT_NO_FATAL_FAILURE(start(with_aof()));
  auto c = connect();
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(run(*c, {"XGROUP", "CREATE", "jobs", "workers", "$", "MKSTREAM"}).is_status("OK"));
  const RedisReply id = run(*c, {"XADD", "jobs", "*", "input", "keep me"});
  ASSERT_TRUE(id.is_string()) << id.to_string();

  server_->kill9();
  Result<RedisReply> dead = c->command({"PING"});
  ASSERT_FALSE(dead.is_ok());
  EXPECT_EQ(dead.status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(c->broken());
  EXPECT_EQ(c->reconnect().code(), StatusCode::kUnavailable);  // refused while it is down

  std::string error;
  ASSERT_TRUE(server_->restart(&error)) << error;
  ASSERT_TRUE(c->reconnect().is_ok());
  const RedisReply range = run(*c, {"XRANGE", "jobs", "-", "+"});
  ASSERT_EQ(range.size(), 1u) << range.to_string();
  EXPECT_EQ(range[0][0].str(), id.str());
  EXPECT_EQ(range[0][1][1].str(), "keep me");
  EXPECT_EQ(run(*c, {"XINFO", "GROUPS", "jobs"}).size(), 1u);  // the group came back too
}

TEST_F(RedisTest, WithRetryRidesOutARestart) {
  ASSERT_NO_FATAL_FAILURE(start(with_aof()));
  auto c = connect();
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(run(*c, {"SET", "n", "10"}).is_status("OK"));

  // The client learns of the restart on its next command: one failed try, a reconnect, done.
  std::string error;
  ASSERT_TRUE(server_->restart(&error)) << error;
  Result<RedisReply> r = with_retry(*c, {"INCR", "n"}, 3, 0.01);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->integer(), 11);

  // Down for a while: the retries back off until it is back. (The retrying runs on a helper
  // thread: the server must be started from this one, see redis_server.h.)
  server_->kill9();
  const auto t0 = Clock::now();
  double took = 0;
  std::thread retrier([&] {
    r = with_retry(*c, {"INCR", "n"}, 10, 0.02, 0.2);
    took = seconds_since(t0);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const bool restarted = server_->restart(&error);
  retrier.join();
  ASSERT_TRUE(restarted) << error;
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->integer(), 12);
  EXPECT_GE(took, 0.25);

  // Exhausted: the last reason is in the message.
  server_->kill9();
  r = with_retry(*c, {"PING"}, 3, 0.01);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(r.status().message().find("after 3 attempts"), std::string::npos)
      << r.status().message();
  ASSERT_TRUE(server_->restart(&error)) << error;

  // A Redis error reply is an answer: returned after one try (the script ran once).
  r = with_retry(*c,
                 {"EVAL", "redis.call('INCR', 'tries'); return redis.error_reply('ERR no')", "0"},
                 5, 0.01);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_TRUE(r->is_error_code("ERR"));
  EXPECT_EQ(run(*c, {"GET", "tries"}).str(), "1");
}

}  // namespace
}  // namespace tideserve::jobs
