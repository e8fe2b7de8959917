// JSON-lines logger: one object per line on stdout, {"ts":..., "level":..., "event":..., fields}.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <variant>

namespace tideserve {

using LogValue = std::variant<std::string_view, double, long long, bool>;

struct LogField {
  std::string_view key;
  LogValue value;
  LogField(std::string_view k, std::string_view v) : key(k), value(v) {}
  LogField(std::string_view k, const char* v) : key(k), value(std::string_view(v)) {}
  LogField(std::string_view k, const std::string& v) : key(k), value(std::string_view(v)) {}
  LogField(std::string_view k, double v) : key(k), value(v) {}
  LogField(std::string_view k, float v) : key(k), value(static_cast<double>(v)) {}
  LogField(std::string_view k, int v) : key(k), value(static_cast<long long>(v)) {}
  LogField(std::string_view k, long v) : key(k), value(static_cast<long long>(v)) {}
  LogField(std::string_view k, long long v) : key(k), value(v) {}
  LogField(std::string_view k, unsigned long v) : key(k), value(static_cast<long long>(v)) {}
  LogField(std::string_view k, bool v) : key(k), value(v) {}
};

enum class LogLevel { kDebug, kInfo, kWarning, kError };

// Lines below this level are dropped (default kInfo).
void set_log_level(LogLevel level);
bool log_enabled(LogLevel level);
// "debug" | "info" | "warning" | "error"; false for anything else.
bool parse_log_level(std::string_view name, LogLevel& level);

// Builds the line without writing it (used by tests and by log_event).
std::string format_log_line(LogLevel level, std::string_view event,
                            std::initializer_list<LogField> fields);

// Writes one line to stdout, atomically with respect to other log_event calls.
void log_event(LogLevel level, std::string_view event, std::initializer_list<LogField> fields = {});

// Appends `s` to `out` as a JSON string literal (quotes included), escaping as RFC 8259 requires.
void append_json_string(std::string& out, std::string_view s);

}  // namespace tideserve
