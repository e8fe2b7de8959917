#include "tideserve/loadgen/load_generator.h"

#include <utility>  // must precede Asio under C++20 with g++ 12

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace tideserve::loadgen {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using SteadyClock = std::chrono::steady_clock;

Result<std::vector<RatePoint>> parse_rate_schedule(const std::string& csv) {
  std::vector<RatePoint> points;
  std::istringstream in(csv);
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    const size_t comma = line.find(',');
    double at = 0, rate = 0;
    try {
      if (comma == std::string::npos) throw std::invalid_argument("no comma");
      size_t used = 0;
      at = std::stod(line.substr(0, comma), &used);
      rate = std::stod(line.substr(comma + 1));
    } catch (const std::exception&) {
      if (number == 1 && points.empty()) continue;  // a header line
      return invalid_argument(fmt::format(
          "rate schedule line {}: '{}' is not 'seconds,requests_per_second'", number, line));
    }
    if (!std::isfinite(at) || !std::isfinite(rate) || at < 0 || rate < 0 ||
        (!points.empty() && at <= points.back().at_s)) {
      return invalid_argument(fmt::format(
          "rate schedule line {}: times must increase from 0 and rates be >= 0", number));
    }
    points.push_back({at, rate});
  }
  if (points.empty()) return invalid_argument("the rate schedule has no points");
  return points;
}

std::vector<double> arrival_times(Arrival arrival, double rate,
                                  const std::vector<RatePoint>& schedule, double duration_s,
                                  uint64_t seed) {
  std::vector<RatePoint> points = schedule;
  if (points.empty()) points.push_back({0, rate});
  std::vector<double> out;
  std::mt19937_64 rng(seed);
  std::exponential_distribution<double> unit(1.0);
  // Walk the piecewise-constant rate in "work" units: an arrival every unit of integrated rate
  // (exponential units for Poisson, 1 for even spacing).
  double t = points.front().at_s;
  size_t segment = 0;
  double need = arrival == Arrival::kPoisson ? unit(rng) : 0.5;  // first arrival half a gap in
  while (t < duration_s) {
    const double seg_end =
        segment + 1 < points.size() ? std::min(points[segment + 1].at_s, duration_s) : duration_s;
    const double r = points[segment].rate;
    if (r > 0 && t + need / r < seg_end) {
      t += need / r;
      out.push_back(t);
      need = arrival == Arrival::kPoisson ? unit(rng) : 1.0;
      continue;
    }
    need -= r * (seg_end - t);
    t = seg_end;
    if (segment + 1 < points.size()) ++segment;
    if (t >= duration_s) break;
  }
  return out;
}

Result<Target> parse_url(const std::string& url) {
  constexpr std::string_view kScheme = "http://";
  if (url.rfind(kScheme, 0) != 0) return invalid_argument("only http:// URLs: " + url);
  std::string rest = url.substr(kScheme.size());
  const std::string authority = rest.substr(0, rest.find('/'));
  Target t;
  const size_t colon = authority.rfind(':');
  t.host = colon == std::string::npos ? authority : authority.substr(0, colon);
  t.port = colon == std::string::npos ? "80" : authority.substr(colon + 1);
  if (t.host.empty() || t.port.empty()) return invalid_argument("no host:port in " + url);
  const size_t slash = rest.find('/');
  t.path = slash == std::string::npos ? "/" : rest.substr(slash);
  return t;
}

Result<HttpAnswer> http_get(const Target& target, const std::string& path, double timeout_s) {
  const std::string where = "http://" + target.host + ":" + target.port + path;
  try {
    asio::io_context io;
    tcp::resolver resolver(io);
    beast::tcp_stream stream(io);
    stream.expires_after(std::chrono::duration_cast<SteadyClock::duration>(
        std::chrono::duration<double>(timeout_s)));
    stream.connect(resolver.resolve(target.host, target.port));
    http::request<http::empty_body> request{http::verb::get, path, 11};
    request.set(http::field::host, target.host + ":" + target.port);
    request.set(http::field::connection, "close");
    for (const auto& [name, value] : target.headers) request.set(name, value);
    http::write(stream, request);
    beast::flat_buffer buffer;
    http::response<http::string_body> response;
    http::read(stream, buffer, response);
    return HttpAnswer{static_cast<int>(response.result_int()), std::move(response.body())};
  } catch (const std::exception& e) {
    return unavailable(where + ": " + e.what());
  }
}

double quantile(std::vector<double>& values, double q) {
  if (values.empty()) return 0;
  const auto rank =
      static_cast<size_t>(std::clamp<double>(std::ceil(q * static_cast<double>(values.size())) - 1,
                                             0, static_cast<double>(values.size() - 1)));
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(rank),
                   values.end());
  return values[rank];
}

Summary summarize(const std::vector<Sample>& samples, double duration_s) {
  Summary s;
  std::vector<double> latency, lag;
  std::map<int, int64_t> statuses;
  double total = 0;
  for (const Sample& x : samples) {
    ++s.requests;
    ++statuses[x.status];
    if (x.status >= 200 && x.status < 300) ++s.ok;
    if (x.status == 0 || x.status >= 400) ++s.errors;
    latency.push_back(x.latency_ms);
    lag.push_back((x.sent_s - x.scheduled_s) * 1000.0);
    total += x.latency_ms;
  }
  s.by_status.assign(statuses.begin(), statuses.end());
  s.throughput = duration_s > 0 ? static_cast<double>(s.requests - statuses[0]) / duration_s : 0;
  if (!latency.empty()) {
    s.mean_ms = total / static_cast<double>(latency.size());
    s.p50_ms = quantile(latency, 0.50);
    s.p90_ms = quantile(latency, 0.90);
    s.p99_ms = quantile(latency, 0.99);
    s.p999_ms = quantile(latency, 0.999);
    s.max_ms = *std::max_element(latency.begin(), latency.end());
    s.lag_p50_ms = quantile(lag, 0.50);
    s.lag_p99_ms = quantile(lag, 0.99);
    s.lag_max_ms = *std::max_element(lag.begin(), lag.end());
  }
  return s;
}

namespace {

// What every shard shares: the clock, the window, the samples.
struct Shared {
  Target target;
  LoadOptions options;
  SteadyClock::time_point t0;
  double end_s = 0;  // warm-up + duration
  std::mutex mutex;
  std::vector<Sample> samples;  // guarded by mutex
  std::atomic<int64_t> done{0}, errors{0};

  double now() const { return std::chrono::duration<double>(SteadyClock::now() - t0).count(); }
  void record(double scheduled, double sent, int status) {
    const double finished = now();
    done.fetch_add(1);
    if (status == 0 || status >= 400) errors.fetch_add(1);
    if (scheduled < options.warmup_s || scheduled >= end_s) return;
    std::lock_guard<std::mutex> lock(mutex);
    samples.push_back({scheduled, sent, (finished - scheduled) * 1000.0, status});
  }
};

class Shard;

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(Shard& shard, asio::io_context& io) : shard_(shard), socket_(io), timer_(io) {}
  void start(double scheduled);

 private:
  void send();
  void fail();
  void finish(int status);

  Shard& shard_;
  tcp::socket socket_;
  asio::steady_timer timer_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> request_;
  http::response<http::string_body> response_;
  bool connected_ = false;
  double scheduled_ = 0, sent_ = 0;
};

class Shard {
 public:
  Shard(Shared& shared, int index, int clients, std::vector<double> arrivals)
      : shared_(shared),
        index_(index),
        clients_(clients),
        arrivals_(std::move(arrivals)),
        arrival_timer_(io_) {}

  void run() {
    tcp::resolver resolver(io_);
    boost::system::error_code ec;
    auto results = resolver.resolve(shared_.target.host, shared_.target.port, ec);
    if (ec || results.empty()) {
      resolve_error = shared_.target.host + ":" + shared_.target.port + ": " + ec.message();
      return;
    }
    endpoint = results.begin()->endpoint();
    if (shared_.options.mode == Mode::kClosed) {
      for (int c = 0; c < clients_; ++c) {
        auto conn = std::make_shared<Connection>(*this, io_);
        conn->start(shared_.now());
      }
    } else {
      schedule_next();
    }
    io_.run();
  }

  // Closed loop: whether a client that just got its answer sends again.
  bool keep_going() const { return shared_.now() < shared_.end_s; }
  // Open loop: a connection is free; it takes the oldest waiting arrival, else waits.
  void idle(std::shared_ptr<Connection> conn) {
    if (!backlog_.empty()) {
      const double scheduled = backlog_.front();
      backlog_.pop_front();
      conn->start(scheduled);
      return;
    }
    idle_.push_back(std::move(conn));
  }
  int64_t not_sent() const { return static_cast<int64_t>(backlog_.size()) + stranded_; }

  Shared& shared() { return shared_; }
  const std::string& next_body() {
    static const std::string empty;
    const auto& bodies = shared_.target.bodies;
    if (bodies.empty()) return empty;
    return bodies[(next_body_++ * static_cast<size_t>(shared_.options.threads) +
                   static_cast<size_t>(index_)) %
                  bodies.size()];
  }
  tcp::endpoint endpoint;
  std::string resolve_error;

 private:
  void schedule_next() {
    if (next_arrival_ >= arrivals_.size()) {
      // Every arrival is out; what is in flight or still waits for a connection gets twice the
      // request timeout, then the shard ends.
      arrival_timer_.expires_after(std::chrono::duration_cast<SteadyClock::duration>(
          std::chrono::duration<double>(2 * shared_.options.timeout_s)));
      arrival_timer_.async_wait([this](const boost::system::error_code& ec) {
        if (ec) return;
        stranded_ = static_cast<int64_t>(backlog_.size());
        backlog_.clear();
        idle_.clear();
        io_.stop();
      });
      if (idle_.size() == static_cast<size_t>(opened_) && backlog_.empty()) {
        arrival_timer_.cancel();
        idle_.clear();  // nothing in flight: the connections close and run() returns
      }
      return;
    }
    const double at = arrivals_[next_arrival_];
    arrival_timer_.expires_at(shared_.t0 + std::chrono::duration_cast<SteadyClock::duration>(
                                               std::chrono::duration<double>(at)));
    arrival_timer_.async_wait([this, at](const boost::system::error_code& ec) {
      if (ec) return;
      ++next_arrival_;
      if (!idle_.empty()) {
        auto conn = std::move(idle_.back());
        idle_.pop_back();
        conn->start(at);
      } else if (opened_ < clients_) {
        ++opened_;
        std::make_shared<Connection>(*this, io_)->start(at);
      } else {
        backlog_.push_back(at);
      }
      schedule_next();
    });
  }

 public:
  // Open loop: called when a request ends; after the last arrival, ends the shard once idle.
  void after_request(std::shared_ptr<Connection> conn) {
    idle(std::move(conn));
    if (next_arrival_ >= arrivals_.size() && backlog_.empty() &&
        idle_.size() == static_cast<size_t>(opened_)) {
      arrival_timer_.cancel();
      idle_.clear();
    }
  }

 private:
  Shared& shared_;
  int index_;
  int clients_;
  std::vector<double> arrivals_;
  size_t next_arrival_ = 0;
  asio::io_context io_;
  asio::steady_timer arrival_timer_;
  std::vector<std::shared_ptr<Connection>> idle_;
  std::deque<double> backlog_;
  int opened_ = 0;
  int64_t stranded_ = 0;
  size_t next_body_ = 0;
};

void Connection::start(double scheduled) {
  scheduled_ = scheduled;
  if (connected_) return send();
  socket_.async_connect(shard_.endpoint,
                        [self = shared_from_this()](const boost::system::error_code& ec) {
                          if (ec) return self->fail();
                          self->connected_ = true;
                          self->socket_.set_option(tcp::no_delay(true));
                          self->send();
                        });
}

void Connection::send() {
  Shared& shared = shard_.shared();
  const Target& t = shared.target;
  request_ = {};
  request_.method(http::string_to_verb(t.method));
  request_.target(t.path);
  request_.version(11);
  request_.set(http::field::host, t.host + ":" + t.port);
  for (const auto& [name, value] : t.headers) request_.set(name, value);
  const std::string& body = shard_.next_body();
  if (!body.empty()) {
    request_.set(http::field::content_type, "application/json");
    request_.body() = body;
  }
  request_.prepare_payload();
  response_ = {};
  sent_ = shared.now();
  timer_.expires_after(std::chrono::duration_cast<SteadyClock::duration>(
      std::chrono::duration<double>(shared.options.timeout_s)));
  timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (!ec) self->socket_.close();  // the pending read fails: counted as an error
  });
  http::async_write(
      socket_, request_, [self = shared_from_this()](const boost::system::error_code& ec, size_t) {
        if (ec) return self->fail();
        http::async_read(self->socket_, self->buffer_, self->response_,
                         [self](const boost::system::error_code& ec2, size_t) {
                           if (ec2) return self->fail();
                           if (!self->response_.keep_alive()) {
                             boost::system::error_code ignored;
                             self->socket_.close(ignored);
                             self->connected_ = false;
                           }
                           self->finish(static_cast<int>(self->response_.result_int()));
                         });
      });
}

void Connection::fail() {
  boost::system::error_code ignored;
  socket_.close(ignored);
  connected_ = false;
  buffer_.clear();
  finish(0);
}

void Connection::finish(int status) {
  timer_.cancel();
  Shared& shared = shard_.shared();
  shared.record(scheduled_, sent_ != 0 ? sent_ : scheduled_, status);
  sent_ = 0;
  if (shared.options.mode == Mode::kClosed) {
    if (!shard_.keep_going()) return;  // the last reference goes and the connection closes
    if (status != 0) return start(shared.now());
    // A failed connection: retry after a pause rather than spin against a server that is down.
    timer_.expires_after(std::chrono::milliseconds(10));
    timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (!ec) self->start(self->shard_.shared().now());
    });
    return;
  }
  shard_.after_request(shared_from_this());
}

}  // namespace

Result<LoadResult> run_load(const Target& target, const LoadOptions& options,
                            const std::function<void(const Progress&)>& on_progress) {
  if (options.concurrency < 1) return invalid_argument("concurrency must be at least 1");
  if (options.threads < 1) return invalid_argument("threads must be at least 1");
  if (options.duration_s <= 0) return invalid_argument("duration must be positive");
  Shared shared;
  shared.target = target;
  shared.options = options;
  shared.end_s = options.warmup_s + options.duration_s;
  const int shards = std::min(options.threads, options.concurrency);
  shared.options.threads = shards;

  std::vector<double> arrivals;
  if (options.mode == Mode::kOpen) {
    arrivals =
        arrival_times(options.arrival, options.rate, options.schedule, shared.end_s, options.seed);
  }
  std::vector<std::unique_ptr<Shard>> parts;
  for (int i = 0; i < shards; ++i) {
    std::vector<double> mine;
    for (size_t a = static_cast<size_t>(i); a < arrivals.size(); a += static_cast<size_t>(shards)) {
      mine.push_back(arrivals[a]);
    }
    const int clients = options.concurrency / shards + (i < options.concurrency % shards ? 1 : 0);
    parts.push_back(std::make_unique<Shard>(shared, i, clients, std::move(mine)));
  }
  shared.t0 = SteadyClock::now();
  std::vector<std::thread> threads;
  std::atomic<int> running{shards};
  for (auto& part : parts) {
    threads.emplace_back([&part, &running] {
      part->run();
      running.fetch_sub(1);
    });
  }
  auto next_tick = SteadyClock::now() + std::chrono::seconds(1);
  while (running.load() > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (!on_progress || SteadyClock::now() < next_tick) continue;
    next_tick += std::chrono::seconds(1);
    Progress p;
    p.elapsed_s = shared.now();
    p.done = shared.done.load();
    p.errors = shared.errors.load();
    std::vector<double> latency;
    {
      std::lock_guard<std::mutex> lock(shared.mutex);
      latency.reserve(shared.samples.size());
      for (const Sample& s : shared.samples) latency.push_back(s.latency_ms);
    }
    p.p50_ms = quantile(latency, 0.5);
    p.p99_ms = quantile(latency, 0.99);
    on_progress(p);
  }
  for (std::thread& t : threads) t.join();
  for (auto& part : parts) {
    if (!part->resolve_error.empty()) return unavailable("cannot resolve " + part->resolve_error);
  }
  LoadResult result;
  result.samples = std::move(shared.samples);
  result.duration_s = options.duration_s;
  int64_t offered = 0;
  for (double a : arrivals) offered += a >= options.warmup_s ? 1 : 0;
  result.offered_rate =
      options.mode == Mode::kOpen ? static_cast<double>(offered) / options.duration_s : 0;
  for (auto& part : parts) result.not_sent += part->not_sent();
  return result;
}

}  // namespace tideserve::loadgen
