// A real redis-server for tests (header-only): Debian's binary on 127.0.0.1, an ephemeral port,
// its own temporary data dir, no RDB snapshots, optional AOF with fsync on every write. Never
// the system daemon on 6379.
//
//   RedisServer server({.aof = true});
//   std::string error;
//   if (!server.start(&error)) FAIL() << error;
//   server.kill9();      // SIGKILL: what the OOM killer or a node loss does
//   server.restart();    // same port and dir: the AOF replays
//   server.pause();      // SIGSTOP: the process hangs, the kernel still accepts connections
//   server.resume();     // SIGCONT
//
// Readiness is a PING answered +PONG (or -NOAUTH; a server still loading its AOF answers
// -LOADING), polled. The server dies with the test process: PR_SET_PDEATHSIG, which Linux ties to
// the *thread* that forked, so call start()/restart() from the test's own thread (a helper thread
// that starts one and exits kills it at once). The destructor stops it and removes the dir. Use
// TIDESERVE_REDIS_SKIP_IF_MISSING() in a test or SetUp when the binary may be absent;
// $TIDESERVE_REDIS_SERVER names another binary.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace tideserve::jobs::testing {

struct RedisServerOptions {
  bool aof = false;                     // --appendonly yes --appendfsync always
  std::vector<std::string> extra_args;  // e.g. {"--requirepass", "secret"}
  double ready_timeout_s = 10;
};

class RedisServer {
 public:
  // The redis-server binary: $TIDESERVE_REDIS_SERVER, else the first on $PATH, else /usr/bin's.
  // Empty when there is none.
  static std::string find_binary() {
    if (const char* env = std::getenv("TIDESERVE_REDIS_SERVER"); env != nullptr && *env) {
      return access(env, X_OK) == 0 ? std::string(env) : std::string();
    }
    std::string path = std::getenv("PATH") != nullptr ? std::getenv("PATH") : "";
    path += ":/usr/bin:/usr/sbin";
    std::stringstream dirs(path);
    std::string dir;
    while (std::getline(dirs, dir, ':')) {
      if (dir.empty()) continue;
      const std::string candidate = dir + "/redis-server";
      if (access(candidate.c_str(), X_OK) == 0) return candidate;
    }
    return {};
  }

  explicit RedisServer(RedisServerOptions options = {}) : options_(std::move(options)) {}
  ~RedisServer() { stop(); }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  // Makes the data dir, picks a free port and starts the server; retries with another port when
  // the bind loses a race. False with the reason in *error.
  bool start(std::string* error) {
    binary_ = find_binary();
    if (binary_.empty())
      return failed(error, "redis-server not found (apt-get install redis-server)");
    if (dir_.empty()) {
      char tmpl[] = "/tmp/tideserve-redis-XXXXXX";
      if (mkdtemp(tmpl) == nullptr) return failed(error, "mkdtemp: " + errno_text());
      dir_ = tmpl;
    }
    std::string last;
    for (int attempt = 0; attempt < 5; ++attempt) {
      port_ = pick_port();
      if (port_ == 0) return failed(error, "no free port: " + errno_text());
      if (launch(&last)) return true;
      if (last.find("already in use") == std::string::npos) break;  // not a bind race
    }
    return failed(error, last);
  }

  // Starts again on the same port and dir (after kill9()): with AOF, the data comes back.
  bool restart(std::string* error = nullptr) {
    kill9();
    std::string reason;
    for (int attempt = 0; attempt < 50; ++attempt) {  // the port can linger a moment
      if (launch(&reason)) return true;
      if (reason.find("already in use") == std::string::npos) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return failed(error, reason);
  }

  void kill9() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    reap();
  }
  void pause() {
    if (pid_ > 0 && ::kill(pid_, SIGSTOP) == 0) paused_ = true;
  }
  void resume() {
    if (pid_ > 0 && ::kill(pid_, SIGCONT) == 0) paused_ = false;
  }

  // SIGKILL (the data dir goes anyway; SIGTERM would wait for the server's next cron tick, up to
  // 100 ms), then removes the data dir.
  void stop() {
    kill9();
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
      dir_.clear();
    }
  }

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  const std::string& dir() const { return dir_; }
  bool running() const { return pid_ > 0; }
  std::string log() const {
    std::ifstream in(dir_ + "/redis.log");
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  // One PING on a fresh connection; true once the server is ready.
  bool ping(int timeout_ms = 200) const { return ping_port(port_, timeout_ms); }

 private:
  static std::string errno_text() { return std::strerror(errno); }
  static bool failed(std::string* error, const std::string& message) {
    if (error != nullptr) *error = message;
    return false;
  }

  // A port the kernel just handed out for 127.0.0.1 (closed again: redis binds it next).
  static int pick_port() {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return 0;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof(addr);
    int port = 0;
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
        getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      port = ntohs(addr.sin_port);
    }
    ::close(fd);
    return port;
  }

  static bool ping_port(int port, int timeout_ms) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    bool ok = false;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
      static const char kPing[] = "*1\r\n$4\r\nPING\r\n";
      if (send(fd, kPing, sizeof(kPing) - 1, MSG_NOSIGNAL) == sizeof(kPing) - 1) {
        char buf[64];
        std::string got;
        while (got.find("\r\n") == std::string::npos) {
          const ssize_t n = recv(fd, buf, sizeof(buf), 0);
          if (n <= 0) break;
          got.append(buf, static_cast<size_t>(n));
        }
        // Ready: +PONG, or -NOAUTH from a server with a password (not -LOADING: the AOF replay).
        ok = got.rfind("+PONG\r\n", 0) == 0 || got.rfind("-NOAUTH", 0) == 0;
      }
    }
    ::close(fd);
    return ok;
  }

  void reap() {
    if (pid_ > 0) waitpid(pid_, nullptr, 0);
    pid_ = -1;
    paused_ = false;
  }

  bool launch(std::string* error) {
    const std::string log_path = dir_ + "/redis.log";
    std::vector<std::string> args = {binary_,
                                     "--bind",
                                     "127.0.0.1",
                                     "--port",
                                     std::to_string(port_),
                                     "--dir",
                                     dir_,
                                     "--logfile",
                                     log_path,
                                     "--save",
                                     "",
                                     "--daemonize",
                                     "no",
                                     "--appendonly",
                                     options_.aof ? "yes" : "no",
                                     "--appendfsync",
                                     "always"};
    args.insert(args.end(), options_.extra_args.begin(), options_.extra_args.end());
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    // Truncate the log so a stale "already in use" is not read for this launch.
    { std::ofstream(log_path, std::ios::trunc); }

    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid < 0) return failed(error, "fork: " + errno_text());
    if (pid == 0) {  // the child: async-signal-safe calls only until exec
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
      const int null_fd = open("/dev/null", O_RDWR);
      if (null_fd >= 0) {
        dup2(null_fd, 0);
        dup2(null_fd, 1);
        dup2(null_fd, 2);
      }
      close_range(3, ~0U, 0);  // no test sockets (hiredis' are not CLOEXEC) leak into the server
      execv(argv[0], argv.data());
      _exit(127);
    }
    pid_ = pid;
    paused_ = false;

    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::duration<double>(options_.ready_timeout_s);
    while (std::chrono::steady_clock::now() < deadline) {
      int wstatus = 0;
      if (waitpid(pid_, &wstatus, WNOHANG) == pid_) {
        pid_ = -1;
        std::string text = log();
        return failed(error,
                      "redis-server on port " + std::to_string(port_) + " exited (" +
                          (WIFEXITED(wstatus) ? "status " + std::to_string(WEXITSTATUS(wstatus))
                                              : "signal " + std::to_string(WTERMSIG(wstatus))) +
                          "): " + text.substr(text.size() > 2000 ? text.size() - 2000 : 0));
      }
      if (ping_port(port_, 200)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    kill9();
    return failed(error, "redis-server on port " + std::to_string(port_) +
                             " did not answer PING within " +
                             std::to_string(options_.ready_timeout_s) + " s: " + log());
  }

  RedisServerOptions options_;
  std::string binary_;
  std::string dir_;
  int port_ = 0;
  pid_t pid_ = -1;
  bool paused_ = false;
};

}  // namespace tideserve::jobs::testing

// Skips the current test (from its body or SetUp) when there is no redis-server binary.
#define TIDESERVE_REDIS_SKIP_IF_MISSING()                                                    \
  do {                                                                                       \
    if (::tideserve::jobs::testing::RedisServer::find_binary().empty()) {                    \
      GTEST_SKIP() << "redis-server is not installed (apt-get install redis-server, or set " \
                      "TIDESERVE_REDIS_SERVER): skipping a test that needs a real Redis";    \
    }                                                                                        \
  } while (0)
