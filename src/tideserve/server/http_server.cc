#include "tideserve/server/http_server.h"

#include <sys/resource.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <deque>
#include <limits>
#include <mutex>
#include <optional>
#include <vector>

#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>

namespace tideserve::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;

class HttpServer::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(std::shared_ptr<Shared> shared, tcp::socket socket)
      : shared_(std::move(shared)), stream_(std::move(socket)) {
    shared_->open_connections.fetch_add(1);
    set_busy(true);  // a new connection is here to send a request: a drain waits for it
  }
  ~Session() {
    set_busy(false);
    {
      std::lock_guard<std::mutex> lock(shared_->sessions_mutex);
      shared_->sessions.erase(this);
    }
    shared_->open_connections.fetch_sub(1);
  }

  bool server_closed() const { return shared_->closed.load(); }

  void start() {
    {
      std::lock_guard<std::mutex> lock(shared_->sessions_mutex);
      shared_->sessions.emplace(this, weak_from_this());
    }
    asio::dispatch(stream_.get_executor(),
                   [self = shared_from_this()] { self->wait_for_request(); });
  }

  // Called by close_listener, from any thread: a keep-alive connection idle between requests
  // is closed; one busy with a request is left alone (it closes after its answer).
  void close_if_idle() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
      if (!self->idle_ || self->closing_idle_) return;
      self->closing_idle_ = true;
      self->stream_.cancel();  // the pending read ends (operation_aborted) unless bytes came
    });
  }

  // Called through the Responder, from any thread.
  void send(Response&& response) {
    asio::post(stream_.get_executor(),
               [self = shared_from_this(), r = std::move(response)]() mutable {
                 self->write(std::move(r));
               });
  }

  bool cancelled() const { return cancelled_.load(); }

  // Streaming, through the Responder, from any thread; everything runs on the strand in order.
  void start_stream(Response&& head) {
    asio::post(stream_.get_executor(), [self = shared_from_this(), h = std::move(head)]() mutable {
      self->begin_stream(std::move(h));
    });
  }
  void write_stream(std::string piece) {
    asio::post(stream_.get_executor(), [self = shared_from_this(), p = std::move(piece)]() mutable {
      if (self->stream_failed_) return;
      self->pieces_.push_back(std::move(p));
      self->pump_stream();
    });
  }
  void end_stream() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
      self->stream_ending_ = true;
      self->pump_stream();
    });
  }

  // `request` is the number of the request the callback belongs to; once that request is
  // answered the callback is dropped (it must not outlive the answer: it holds the job).
  void on_cancel(int64_t request, std::function<void()> callback) {
    asio::post(stream_.get_executor(),
               [self = shared_from_this(), request, cb = std::move(callback)]() mutable {
                 if (request != self->requests_ || self->answered_) return;
                 if (self->cancelled_.load()) {
                   cb();
                 } else {
                   self->cancel_callback_ = std::move(cb);
                 }
               });
  }

  int64_t request_number() const { return requests_; }

 private:
  class SessionResponder : public Responder {
   public:
    explicit SessionResponder(std::shared_ptr<Session> session)
        : session_(std::move(session)), request_(session_->request_number()) {}
    ~SessionResponder() override {
      if (streaming_) {
        end_stream();  // a stream left open ends here
        return;
      }
      if (!sent_.exchange(true) && !session_->server_closed()) {
        Response r{http::status::internal_server_error, 11};
        r.set(http::field::content_type, "application/json");
        r.body() = R"({"error":"internal error: the request was not answered"})";
        session_->send(std::move(r));
      }
    }
    void send(Response&& response) override {
      if (!sent_.exchange(true)) session_->send(std::move(response));
    }
    void start_stream(Response&& head) override {
      if (sent_.exchange(true)) return;
      streaming_ = true;
      session_->start_stream(std::move(head));
    }
    void write_stream(std::string piece) override {
      if (streaming_ && !ended_) session_->write_stream(std::move(piece));
    }
    void end_stream() override {
      if (streaming_ && !ended_.exchange(true)) session_->end_stream();
    }
    bool cancelled() const override { return session_->cancelled(); }
    void on_cancel(std::function<void()> callback) override {
      session_->on_cancel(request_, std::move(callback));
    }

   private:
    std::shared_ptr<Session> session_;
    int64_t request_;
    std::atomic<bool> sent_{false};
    std::atomic<bool> streaming_{false};
    std::atomic<bool> ended_{false};
  };

  // A keep-alive connection may sit idle for idle_timeout; once the first bytes of a request
  // arrive, the whole request must arrive within header_timeout. A new connection is not idle:
  // it was accepted to send a request, and a drain waits for it.
  void wait_for_request() {
    if (buffer_.size() > 0) {  // pipelined: the next request is already arriving
      set_busy(true);
      read_request();
      return;
    }
    if (requests_ > 0 && shared_->draining.load()) return close_idle();
    idle_ = requests_ > 0;
    stream_.expires_after(requests_ == 0 ? shared_->options.header_timeout
                                         : shared_->options.idle_timeout);
    stream_.async_read_some(buffer_.prepare(4096),
                            [self = shared_from_this()](beast::error_code ec, size_t n) {
                              self->idle_ = false;
                              if (ec == asio::error::operation_aborted && self->closing_idle_) {
                                return self->close_idle();
                              }
                              if (ec) return self->close();
                              // Bytes that came as close_if_idle cancelled the read are a
                              // request: it is answered (with Connection: close).
                              self->buffer_.commit(n);
                              self->set_busy(true);
                              self->read_request();
                            });
  }

  // Closes a keep-alive connection idle between requests, during a drain: FIN, then read and
  // drop whatever the client still sends until it closes its side (or kLinger passes), so that
  // a request sent just as we closed does not turn our close into a reset.
  void close_idle() {
    closing_idle_ = true;
    char c;
    if (::recv(stream_.socket().native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT) > 0) {
      set_busy(true);  // a request is arriving after all: answer it (Connection: close)
      return read_request();
    }
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.expires_after(kLinger);
    linger();
  }

  void linger() {
    buffer_.clear();
    stream_.async_read_some(buffer_.prepare(4096),
                            [self = shared_from_this()](beast::error_code ec, size_t) {
                              if (ec) return self->close();  // EOF, timeout, reset
                              self->linger();
                            });
  }

  void read_request() {
    parser_.emplace();
    parser_->body_limit(static_cast<uint64_t>(shared_->options.payload_limit));
    body_limit_ = shared_->options.payload_limit;
    parser_->header_limit(shared_->options.header_limit);
    stream_.expires_after(shared_->options.header_timeout);
    if (!shared_->options.payload_limit_for) {
      http::async_read(
          stream_, buffer_, *parser_,
          [self = shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
      return;
    }
    // A route with its own body limit: the header first (with no limit: Beast checks a
    // Content-Length against it as the header ends, before the target is known; boost::none
    // would not do, Beast 1.74 compares a length with it as less than any), then the body under
    // the target's.
    parser_->body_limit(std::numeric_limits<uint64_t>::max());
    http::async_read_header(
        stream_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, size_t) {
          if (ec) return self->on_read(ec);
          const auto target = self->parser_->get().target();
          const int64_t own = self->shared_->options.payload_limit_for(
              std::string_view(target.data(), target.size()));
          const int64_t limit = own > 0 ? own : self->shared_->options.payload_limit;
          self->body_limit_ = limit;
          const auto length = self->parser_->content_length();
          if (length && *length > static_cast<uint64_t>(limit)) {
            return self->on_read(http::error::body_limit);
          }
          self->parser_->body_limit(static_cast<uint64_t>(limit));  // chunked bodies too
          // A client that asked to hear first (curl does for bodies over 1 MB) is told to go on,
          // instead of waiting a second for a 100 that never comes.
          const auto expect = self->parser_->get()[http::field::expect];
          if (beast::iequals(expect, "100-continue")) {
            static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
            return asio::async_write(self->stream_,
                                     asio::buffer(kContinue.data(), kContinue.size()),
                                     [self](beast::error_code ec2, size_t) {
                                       if (ec2) return self->on_read(ec2);
                                       self->read_body();
                                     });
          }
          self->read_body();
        });
  }

  void read_body() {
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == asio::error::operation_aborted || ec == asio::error::connection_reset ||
        ec == asio::error::eof) {
      return close();
    }
    if (ec) {
      TransportError error;
      if (ec == http::error::body_limit) {
        error = {413, "request body exceeds the payload limit of " + std::to_string(body_limit_) +
                          " bytes"};
      } else if (ec == http::error::header_limit) {
        error = {431, "request headers exceed " + std::to_string(shared_->options.header_limit) +
                          " bytes"};
      } else {
        error = {400, "malformed HTTP request: " + ec.message()};
      }
      Response r = shared_->error_handler(error, 11);
      r.keep_alive(false);
      return write(std::move(r), /*force_close=*/true);
    }
    ++requests_;
    answered_ = false;
    stream_.expires_never();
    Request request = parser_->release();
    request_keep_alive_ = request.keep_alive();
    request_version_ = request.version();
    request_is_head_ = request.method() == http::verb::head;
    watch_for_disconnect();
    shared_->handler(std::move(request), std::make_shared<SessionResponder>(shared_from_this()));
  }

  // While the answer is pending, notice a client that closes its connection.
  void watch_for_disconnect() {
    if (buffer_.size() > 0) return;  // pipelined bytes already here: the client is alive
    waiting_ = true;
    stream_.socket().async_wait(
        tcp::socket::wait_read, [self = shared_from_this()](beast::error_code ec) {
          if (ec || !self->waiting_) return;
          char c;
          ssize_t n =
              ::recv(self->stream_.socket().native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
          if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
            self->cancelled_.store(true);
            if (self->cancel_callback_) {
              auto cb = std::move(self->cancel_callback_);
              self->cancel_callback_ = nullptr;
              cb();
            }
          }
          // n > 0: the client pipelined its next request; it is alive. Stop watching.
        });
  }

  // The answer is complete: stop watching for a disconnect (no write may be in flight: the
  // cancel ends every operation on the socket) and drop the cancel callback.
  void stop_watching() {
    if (waiting_) {
      waiting_ = false;
      beast::error_code ignored;
      stream_.socket().cancel(ignored);
    }
    cancel_callback_ = nullptr;
    answered_ = true;
  }

  bool keep_alive_after(bool force_close) const {
    return !force_close && !cancelled_.load() && request_keep_alive_ &&
           shared_->keep_alive.load() && !shared_->draining.load() &&
           requests_ < shared_->options.max_requests_per_connection;
  }

  // After the last byte of an answer: the next request, or the end of the connection.
  void answered(beast::error_code ec, bool keep_alive) {
    set_busy(false);
    if (ec || !keep_alive) return close();
    wait_for_request();
  }

  void begin_stream(Response&& head) {
    // The disconnect watch stays on while the stream runs: a client that leaves cancels the work.
    stream_keep_alive_ = keep_alive_after(false) && request_version_ >= 11;
    stream_head_.emplace(head.result(), request_version_);
    for (const auto& field : head) stream_head_->set(field.name_string(), field.value());
    stream_head_->keep_alive(stream_keep_alive_);
    stream_head_->chunked(true);
    stream_serializer_.emplace(*stream_head_);
    stream_writing_ = true;
    stream_.expires_after(kWriteTimeout);
    http::async_write_header(
        stream_, *stream_serializer_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->stream_written(ec); });
  }

  void stream_written(beast::error_code ec) {
    stream_writing_ = false;
    if (ec) {
      stream_failed_ = true;
      pieces_.clear();
      stop_watching();
      return answered(ec, false);
    }
    pump_stream();
  }

  // Writes the next queued piece, or the last chunk once the stream is ending and drained.
  void pump_stream() {
    if (stream_writing_ || stream_failed_ || !stream_serializer_) return;
    if (!pieces_.empty()) {
      stream_writing_ = true;
      stream_.expires_after(kWriteTimeout);
      asio::async_write(stream_, http::make_chunk(asio::buffer(pieces_.front())),
                        [self = shared_from_this()](beast::error_code ec, size_t) {
                          self->pieces_.pop_front();
                          self->stream_written(ec);
                        });
      return;
    }
    if (!stream_ending_) return;
    stop_watching();
    stream_failed_ = true;  // nothing more goes out on this stream
    stream_writing_ = true;
    stream_.expires_after(kWriteTimeout);
    asio::async_write(stream_, http::make_chunk_last(),
                      [self = shared_from_this()](beast::error_code ec, size_t) {
                        self->stream_writing_ = false;
                        self->stream_serializer_.reset();
                        self->stream_head_.reset();
                        self->stream_failed_ = false;
                        self->stream_ending_ = false;
                        self->answered(ec, self->stream_keep_alive_);
                      });
  }

  void write(Response&& response, bool force_close = false) {
    stop_watching();
    const bool keep_alive = keep_alive_after(force_close);
    response_.emplace(std::move(response));
    response_->version(request_version_);
    response_->keep_alive(keep_alive);
    if (request_is_head_) {  // the GET answer's headers, without its body
      const size_t length = response_->body().size();
      response_->body().clear();
      response_->content_length(length);
    } else {
      response_->prepare_payload();
    }
    stream_.expires_after(kWriteTimeout);
    http::async_write(stream_, *response_,
                      [self = shared_from_this(), keep_alive](beast::error_code ec, size_t) {
                        self->response_.reset();
                        self->answered(ec, keep_alive);
                      });
  }

  // Busy: a request is on its way in or waiting for its answer (what a drain waits for).
  void set_busy(bool busy) {
    if (busy == busy_) return;
    busy_ = busy;
    shared_->active_requests.fetch_add(busy ? 1 : -1);
  }

  void close() {
    set_busy(false);
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.socket().close(ignored);
  }

  static constexpr std::chrono::seconds kLinger{2};
  static constexpr std::chrono::seconds kWriteTimeout{30};

  std::shared_ptr<Shared> shared_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  int64_t body_limit_ = 0;  // the limit the request being read is under
  std::optional<Response> response_;
  // A streamed answer: its head, serializer, the pieces not yet written.
  std::optional<http::response<http::empty_body>> stream_head_;
  std::optional<http::response_serializer<http::empty_body>> stream_serializer_;
  std::deque<std::string> pieces_;
  bool stream_writing_ = false;
  bool stream_ending_ = false;
  bool stream_failed_ = false;
  bool stream_keep_alive_ = false;
  int64_t requests_ = 0;
  bool request_keep_alive_ = true;
  unsigned request_version_ = 11;
  bool request_is_head_ = false;
  bool waiting_ = false;
  bool answered_ = false;
  bool busy_ = false;
  bool idle_ = false;          // waiting for the next request on a kept-alive connection
  bool closing_idle_ = false;  // close_if_idle asked to close it
  std::atomic<bool> cancelled_{false};
  std::function<void()> cancel_callback_;
};

HttpServer::HttpServer(asio::io_context& io, const HttpOptions& options, Handler handler,
                       ErrorHandler error_handler)
    : io_(io), shared_(std::make_shared<Shared>()), acceptor_(asio::make_strand(io)) {
  shared_->options = options;
  shared_->handler = std::move(handler);
  shared_->error_handler = std::move(error_handler);
}

HttpServer::~HttpServer() {
  shared_->closed.store(true);
}

Status HttpServer::listen() {
  beast::error_code ec;
  const HttpOptions& options = shared_->options;
  auto address = asio::ip::make_address(options.host, ec);
  if (ec) return invalid_argument("bad listen address '" + options.host + "'");
  tcp::endpoint endpoint(address, options.port);
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return invalid_argument("cannot listen on " + options.host + ":" +
                            std::to_string(options.port) + ": " + ec.message());
  }
  bound_port_ = acceptor_.local_endpoint().port();
  int64_t limit = options.max_connections;
  if (limit <= 0) {
    rlimit files{};
    const int64_t soft = ::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur != RLIM_INFINITY
                             ? static_cast<int64_t>(files.rlim_cur)
                             : int64_t{1} << 20;
    limit = std::clamp<int64_t>(soft - kReservedFds, 16, int64_t{1} << 20);
  }
  shared_->max_connections = limit;
  accept_next();
  return Status::ok();
}

void HttpServer::accept_next() {
  acceptor_.async_accept(asio::make_strand(io_), [this](beast::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (!ec) {
      beast::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      if (shared_->open_connections.load() >= shared_->max_connections) {
        refuse(std::move(socket));
      } else {
        std::make_shared<Session>(shared_, std::move(socket))->start();
      }
    }
    accept_next();
  });
}

void HttpServer::refuse(tcp::socket socket) {
  struct Refusal {
    tcp::socket socket;
    Response response;
  };
  auto refusal = std::make_shared<Refusal>(Refusal{
      std::move(socket),
      shared_->error_handler({503, "too many connections (the limit is " +
                                       std::to_string(shared_->max_connections) + "); retry later"},
                             11)});
  refusal->response.set(http::field::retry_after, "1");
  refusal->response.keep_alive(false);
  refusal->response.prepare_payload();
  if (shared_->options.on_connection_refused) shared_->options.on_connection_refused();
  // Whatever the client sent is not read: the answer goes out and the connection ends.
  http::async_write(refusal->socket, refusal->response, [refusal](beast::error_code, size_t) {
    beast::error_code ignored;
    refusal->socket.shutdown(tcp::socket::shutdown_send, ignored);
    refusal->socket.close(ignored);
  });
}

void HttpServer::close_listener() {
  shared_->keep_alive.store(false);
  shared_->draining.store(true);  // before the sweep: a connection idle after it closes itself
  asio::post(acceptor_.get_executor(), [this] {
    beast::error_code ignored;
    acceptor_.close(ignored);
  });
  std::vector<std::shared_ptr<Session>> sessions;
  {
    std::lock_guard<std::mutex> lock(shared_->sessions_mutex);
    sessions.reserve(shared_->sessions.size());
    for (auto& entry : shared_->sessions) {
      if (auto session = entry.second.lock()) sessions.push_back(std::move(session));
    }
  }
  // Outside the lock: dropping the last reference runs ~Session, which takes it.
  for (auto& session : sessions) session->close_if_idle();
}

}  // namespace tideserve::server
