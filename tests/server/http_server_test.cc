// The HTTP listener in process, driven by plain blocking sockets: the drain's connection
// handling (close_listener). The real binary's drain is covered by tests/integration/drain_test.py.
#include "tideserve/server/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>

namespace tideserve::server {
namespace {

namespace http = boost::beast::http;
using Clock = std::chrono::steady_clock;

constexpr auto kWait = std::chrono::seconds(20);  // bound on every wait; never a sleep

// A blocking client socket with a receive timeout.
class Client {
 public:
  explicit Client(uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    timeval tv{static_cast<time_t>(kWait.count()), 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    connect_errno_ = connected_ ? 0 : errno;
  }
  ~Client() { close(); }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool connected() const { return connected_; }
  int connect_errno() const { return connect_errno_; }

  void send(const std::string& bytes) {
    ASSERT_EQ(::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()))
        << std::strerror(errno);
  }

  // One whole response (headers and a Content-Length body); empty on EOF, error or timeout.
  std::string read_response() {
    std::string data;
    char chunk[4096];
    for (;;) {
      const size_t end = data.find("\r\n\r\n");
      if (end != std::string::npos) {
        size_t length = 0;
        const size_t at = data.find("Content-Length: ");
        if (at != std::string::npos && at < end) length = std::stoul(data.substr(at + 16));
        if (data.size() >= end + 4 + length) return data;
      }
      const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n <= 0) return {};
      data.append(chunk, static_cast<size_t>(n));
    }
  }

  // Everything received until `marker` has come (empty on EOF, error or timeout before it).
  std::string read_until(const std::string& marker) {
    std::string data;
    char chunk[4096];
    while (data.find(marker) == std::string::npos) {
      const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n <= 0) return {};
      data.append(chunk, static_cast<size_t>(n));
    }
    return data;
  }

  // What the next recv says: "eof" (an orderly close), "data", "timeout" or the error.
  std::string next_event() {
    char c;
    const ssize_t n = ::recv(fd_, &c, 1, 0);
    if (n == 0) return "eof";
    if (n > 0) return "data";
    if (errno == EAGAIN || errno == EWOULDBLOCK) return "timeout";
    return std::strerror(errno);
  }

 private:
  int fd_;
  bool connected_ = false;
  int connect_errno_ = 0;
};

bool wait_until(const std::function<bool()>& condition) {
  const auto deadline = Clock::now() + kWait;
  while (!condition()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // a poll interval
  }
  return true;
}

// GET / answers at once; GET /hold keeps its responder until the test releases it.
class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    HttpOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    server_ = std::make_unique<HttpServer>(
        io_, options,
        [this](Request&& request, std::shared_ptr<Responder> responder) {
          if (request.target() == "/hold") {
            std::lock_guard<std::mutex> lock(mutex_);
            held_.push_back(std::move(responder));
            cv_.notify_all();
            return;
          }
          responder->send(ok(request.version()));
        },
        [](const TransportError& error, unsigned version) {
          Response r{static_cast<http::status>(error.status), version};
          r.body() = error.message;
          return r;
        });
    ASSERT_TRUE(server_->listen().is_ok());
    for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { io_.run(); });
  }

  void TearDown() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      held_.clear();
    }
    work_.reset();
    io_.stop();
    for (std::thread& t : threads_) t.join();
    server_.reset();
  }

  static Response ok(unsigned version) {
    Response r{http::status::ok, version};
    r.body() = "ok";
    return r;
  }

  std::shared_ptr<Responder> wait_held() {
    std::unique_lock<std::mutex> lock(mutex_);
    if (!cv_.wait_for(lock, kWait, [this] { return !held_.empty(); })) return nullptr;
    std::shared_ptr<Responder> responder = std::move(held_.back());
    held_.pop_back();
    return responder;  // the test's alone: the connection lives as long as its responder
  }

  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_{
      io_.get_executor()};
  std::unique_ptr<HttpServer> server_;
  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::shared_ptr<Responder>> held_;
};

constexpr const char* kGet = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

TEST_F(HttpServerTest, KeepAliveConnectionsStayOpenBeforeTheDrain) {
  Client client(server_->port());
  ASSERT_TRUE(client.connected());
  for (int i = 0; i < 3; ++i) {
    client.send(kGet);
    const std::string response = client.read_response();
    ASSERT_EQ(response.rfind("HTTP/1.1 200", 0), 0u) << response;
    EXPECT_EQ(response.find("Connection: close"), std::string::npos) << response;
  }
  EXPECT_TRUE(wait_until([&] { return server_->active_requests() == 0; }));
  EXPECT_EQ(server_->open_connections(), 1);
}

// At close_listener an idle keep-alive connection gets an orderly close (EOF, no reset) at
// once, while a request being answered and one still arriving are both answered, with
// Connection: close, and their connections closed after the answer.
TEST_F(HttpServerTest, CloseListenerClosesIdleKeepAliveAndAnswersTheRest) {
  Client idle(server_->port());
  ASSERT_TRUE(idle.connected());
  idle.send(kGet);
  const std::string first = idle.read_response();
  ASSERT_EQ(first.rfind("HTTP/1.1 200", 0), 0u) << first;
  ASSERT_EQ(first.find("Connection: close"), std::string::npos) << first;

  Client held(server_->port());
  ASSERT_TRUE(held.connected());
  held.send("GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
  std::shared_ptr<Responder> responder = wait_held();
  ASSERT_NE(responder, nullptr);

  Client partial(server_->port());
  ASSERT_TRUE(partial.connected());
  partial.send("GET / HTTP/1.1\r\n");
  // The partial request's connection and the held request: both busy.
  ASSERT_TRUE(wait_until([&] { return server_->active_requests() == 2; }));
  ASSERT_TRUE(wait_until([&] { return server_->open_connections() == 3; }));

  server_->stop_keep_alive();
  server_->close_listener();

  // The held answer is not sent yet, so this EOF is the drain's doing, not a side effect of
  // the other connections finishing.
  EXPECT_EQ(idle.next_event(), "eof");
  // A client that sends its next request on it anyway still reads EOF, not a reset.
  idle.send(kGet);
  EXPECT_EQ(idle.next_event(), "eof");
  idle.close();  // the server reads until the client's FIN (or a short linger), then closes
  EXPECT_TRUE(wait_until([&] { return server_->open_connections() == 2; }));
  EXPECT_FALSE(responder->cancelled());

  partial.send("Host: x\r\n\r\n");
  const std::string partial_answer = partial.read_response();
  EXPECT_EQ(partial_answer.rfind("HTTP/1.1 200", 0), 0u) << partial_answer;
  EXPECT_NE(partial_answer.find("Connection: close"), std::string::npos) << partial_answer;
  EXPECT_EQ(partial.next_event(), "eof");

  responder->send(ok(11));
  responder.reset();
  const std::string held_answer = held.read_response();
  EXPECT_EQ(held_answer.rfind("HTTP/1.1 200", 0), 0u) << held_answer;
  EXPECT_NE(held_answer.find("Connection: close"), std::string::npos) << held_answer;
  EXPECT_EQ(held.next_event(), "eof");

  EXPECT_TRUE(wait_until([&] { return server_->active_requests() == 0; }));
  EXPECT_TRUE(wait_until([&] { return server_->open_connections() == 0; }));

  Client refused(server_->port());
  EXPECT_FALSE(refused.connected());
  EXPECT_EQ(refused.connect_errno(), ECONNREFUSED);
}

// A keep-alive connection whose response is still being written when the listener closes
// becomes idle after it: it is closed then, not left open.
TEST_F(HttpServerTest, ConnectionIdleAfterItsAnswerDuringTheDrainIsClosed) {
  Client client(server_->port());
  ASSERT_TRUE(client.connected());
  client.send("GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
  std::shared_ptr<Responder> responder = wait_held();
  ASSERT_NE(responder, nullptr);

  server_->close_listener();  // without stop_keep_alive: close_listener implies it
  responder->send(ok(11));
  responder.reset();
  const std::string answer = client.read_response();
  EXPECT_EQ(answer.rfind("HTTP/1.1 200", 0), 0u) << answer;
  EXPECT_NE(answer.find("Connection: close"), std::string::npos) << answer;
  EXPECT_EQ(client.next_event(), "eof");
  EXPECT_TRUE(wait_until([&] { return server_->open_connections() == 0; }));
}

TEST_F(HttpServerTest, AStreamGoesOutInChunksAndTheConnectionStaysUsable) {
  Client client(server_->port());
  ASSERT_TRUE(client.connected());
  client.send("GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
  std::shared_ptr<Responder> responder = wait_held();
  ASSERT_NE(responder, nullptr);
  Response head{http::status::ok, 11};
  head.set(http::field::content_type, "text/event-stream");
  responder->start_stream(std::move(head));
  // The head and the first piece arrive before the stream ends.
  responder->write_stream("event: a\n\n");
  const std::string first = client.read_until("event: a");
  ASSERT_FALSE(first.empty());
  EXPECT_NE(first.find("Transfer-Encoding: chunked"), std::string::npos) << first;
  EXPECT_NE(first.find("text/event-stream"), std::string::npos) << first;
  // Pieces written from other threads keep their order.
  std::thread writer([&] {
    for (int i = 0; i < 50; ++i) responder->write_stream("event: " + std::to_string(i) + "\n\n");
    responder->end_stream();
  });
  writer.join();
  const std::string rest = client.read_until("0\r\n\r\n");
  ASSERT_FALSE(rest.empty());
  size_t at = 0;
  for (int i = 0; i < 50; ++i) {
    const size_t next = rest.find("event: " + std::to_string(i) + "\n", at);
    ASSERT_NE(next, std::string::npos) << i;
    at = next;
  }
  responder.reset();
  // Keep-alive: the next request on the same connection is answered.
  client.send(kGet);
  EXPECT_EQ(client.read_response().rfind("HTTP/1.1 200", 0), 0u);
}

TEST_F(HttpServerTest, AClientLeavingAStreamRunsItsCancelCallback) {
  auto client = std::make_unique<Client>(server_->port());
  ASSERT_TRUE(client->connected());
  client->send("GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
  std::shared_ptr<Responder> responder = wait_held();
  ASSERT_NE(responder, nullptr);
  std::atomic<bool> cancelled{false};
  responder->on_cancel([&] { cancelled.store(true); });
  responder->start_stream(Response{http::status::ok, 11});
  responder->write_stream("event: a\n\n");
  ASSERT_FALSE(client->read_until("event: a").empty());
  client.reset();  // the client goes away mid-stream
  EXPECT_TRUE(wait_until([&] { return cancelled.load(); }));
  EXPECT_TRUE(responder->cancelled());
  // Writing on and ending a stream whose client left is harmless.
  responder->write_stream("event: b\n\n");
  responder->end_stream();
  responder.reset();
  EXPECT_TRUE(wait_until([&] { return server_->active_requests() == 0; }));
}

}  // namespace
}  // namespace tideserve::server
