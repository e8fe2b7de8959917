// The HTTP/1.1 listener (Boost.Beast on Asio IO threads). It owns connections, limits and
// timeouts; what a request means is the Handler's business. A handler answers asynchronously
// through a Responder, from any thread; the response is written on the connection's strand.
#pragma once

#include <utility>  // must precede Asio under C++20 with g++ 12

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http.hpp>

#include "tideserve/util/status.h"

namespace tideserve::server {

using Request = boost::beast::http::request<boost::beast::http::string_body>;
using Response = boost::beast::http::response<boost::beast::http::string_body>;

struct HttpOptions {
  std::string host = "0.0.0.0";
  uint16_t port = 8000;
  int64_t payload_limit = 2 * 1024 * 1024;  // body bytes (413 beyond)
  // A request target's own body limit, read once its header is in (> 0; else payload_limit):
  // the batch file upload takes files larger than any inference body.
  std::function<int64_t(std::string_view target)> payload_limit_for;
  uint32_t header_limit = 16 * 1024;        // header bytes (431 beyond)
  std::chrono::seconds header_timeout{10};  // to receive a whole request once it started
  std::chrono::seconds idle_timeout{60};    // keep-alive connection with no request
  int64_t max_requests_per_connection = 1000;
  // Connections open at once; a new one beyond it is answered 503 (Connection: close) and closed.
  // 0: the open-files limit (RLIMIT_NOFILE) less kReservedFds for the model files and the rest.
  int64_t max_connections = 0;
  // Called (on an IO thread) for each connection refused that way: the caller counts them.
  std::function<void()> on_connection_refused;
};

// File descriptors max_connections = 0 leaves for everything that is not a client connection.
inline constexpr int64_t kReservedFds = 64;

// Answers one request exactly once: with send(), or as a stream (start_stream, write_stream...,
// end_stream). `cancelled()` turns true when the client closed its connection while the answer was
// pending.
class Responder {
 public:
  virtual ~Responder() = default;
  virtual void send(Response&& response) = 0;
  virtual bool cancelled() const = 0;
  // Registers a callback run (once, on an IO thread) when the client goes away before the answer
  // is complete (send(), or a stream's end).
  virtual void on_cancel(std::function<void()> callback) = 0;

  // Streaming, in chunked transfer encoding: `head`'s status and headers (its body is ignored)
  // go out at once, then each piece in order as the socket takes it, then the end. Pieces wait in
  // the connection's queue, never in the caller: what is buffered is what the caller wrote. A
  // client that stops reading for the write timeout (30 s) is disconnected. The defaults gather
  // the pieces into one send() (for responders that cannot stream).
  virtual void start_stream(Response&& head) { stream_head_ = std::move(head); }
  virtual void write_stream(std::string piece) { stream_head_.body() += piece; }
  virtual void end_stream() { send(std::move(stream_head_)); }

 private:
  Response stream_head_;
};

// Errors of the transport itself (body too large, bad request line, ...): the server answers
// them without calling the handler, through this hook so the API layer shapes the JSON body.
struct TransportError {
  int status = 400;
  std::string message;
};

class HttpServer {
 public:
  using Handler = std::function<void(Request&& request, std::shared_ptr<Responder> responder)>;
  using ErrorHandler = std::function<Response(const TransportError& error, unsigned version)>;

  HttpServer(boost::asio::io_context& io, const HttpOptions& options, Handler handler,
             ErrorHandler error_handler);
  ~HttpServer();

  // Binds and listens; the bound port is port() (useful with port 0).
  Status listen();
  uint16_t port() const { return bound_port_; }

  // From now on responses carry "Connection: close" and keep-alive connections end after their
  // current request (for a drain behind a load balancer).
  void stop_keep_alive() { shared_->keep_alive.store(false); }
  // Stops accepting new connections and ends keep-alive. Connections with a request on its way
  // in or not yet answered finish it (the response says Connection: close); keep-alive
  // connections idle between requests are closed now, cleanly (FIN, not a reset), instead of
  // staying open until the process exits under a client that may be about to send on them.
  void close_listener();
  // Connections open now, and connections with a request on its way in or not yet fully
  // answered, new connections included (what a drain waits for).
  int64_t open_connections() const { return shared_->open_connections.load(); }
  // The connection limit in force (max_connections, or the one derived from the fd limit).
  int64_t max_connections() const { return shared_->max_connections; }
  int64_t active_requests() const { return shared_->active_requests.load(); }

 private:
  class Session;
  // What sessions share with the server; sessions may outlive the HttpServer object while the
  // io_context tears down, so they hold this, never the server.
  struct Shared {
    HttpOptions options;
    Handler handler;
    ErrorHandler error_handler;
    std::atomic<bool> keep_alive{true};
    std::atomic<bool> closed{false};  // the server is gone: pending responders send nothing
    // The listener is closed: a connection that falls idle between requests is closed.
    std::atomic<bool> draining{false};
    std::atomic<int64_t> open_connections{0};
    int64_t max_connections = 0;  // set by listen()
    std::atomic<int64_t> active_requests{0};
    // Every open connection, for close_listener to reach the idle ones.
    std::mutex sessions_mutex;
    std::unordered_map<const Session*, std::weak_ptr<Session>> sessions;
  };
  void accept_next();
  // Answers a connection over the limit with 503 and closes it.
  void refuse(boost::asio::ip::tcp::socket socket);

  boost::asio::io_context& io_;
  std::shared_ptr<Shared> shared_;
  boost::asio::ip::tcp::acceptor acceptor_;
  uint16_t bound_port_ = 0;
};

}  // namespace tideserve::server
