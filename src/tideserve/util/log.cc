#include "tideserve/util/log.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <mutex>

#include <fmt/format.h>

namespace tideserve {

namespace {

const char* level_name(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

std::string utc_timestamp() {
  auto now = std::chrono::system_clock::now();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
}

std::atomic<int> min_level{static_cast<int>(LogLevel::kInfo)};

}  // namespace

void set_log_level(LogLevel level) {
  min_level.store(static_cast<int>(level));
}

bool log_enabled(LogLevel level) {
  return static_cast<int>(level) >= min_level.load();
}

bool parse_log_level(std::string_view name, LogLevel& level) {
  if (name == "debug")
    level = LogLevel::kDebug;
  else if (name == "info")
    level = LogLevel::kInfo;
  else if (name == "warning" || name == "warn")
    level = LogLevel::kWarning;
  else if (name == "error")
    level = LogLevel::kError;
  else
    return false;
  return true;
}

void append_json_string(std::string& out, std::string_view s) {
  out.push_back('"');
  for (unsigned char c : s) {
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
        if (c < 0x20) {
          out += fmt::format("\\u{:04x}", c);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
}

std::string format_log_line(LogLevel level, std::string_view event,
                            std::initializer_list<LogField> fields) {
  std::string line = "{\"ts\":";
  append_json_string(line, utc_timestamp());
  line += ",\"level\":";
  append_json_string(line, level_name(level));
  line += ",\"event\":";
  append_json_string(line, event);
  for (const LogField& f : fields) {
    line.push_back(',');
    append_json_string(line, f.key);
    line.push_back(':');
    if (const auto* s = std::get_if<std::string_view>(&f.value)) {
      append_json_string(line, *s);
    } else if (const auto* d = std::get_if<double>(&f.value)) {
      if (std::isfinite(*d)) {
        line += fmt::format("{:.3f}", *d);
      } else {
        line += "null";
      }
    } else if (const auto* i = std::get_if<long long>(&f.value)) {
      line += fmt::format("{}", *i);
    } else if (const auto* b = std::get_if<bool>(&f.value)) {
      line += *b ? "true" : "false";
    }
  }
  line += "}\n";
  return line;
}

void log_event(LogLevel level, std::string_view event, std::initializer_list<LogField> fields) {
  if (!log_enabled(level)) return;
  static std::mutex mutex;
  std::string line = format_log_line(level, event, fields);
  std::lock_guard<std::mutex> lock(mutex);
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fflush(stdout);
}

}  // namespace tideserve
