#include "tideserve/util/cpus.h"

#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>

namespace tideserve {

namespace {

std::optional<long long> parse_integer(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  long long value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// The smallest value `parse` finds in `file` on the path from this process's cgroup v2 up to the
// root, if any.
template <typename T, typename Parse>
std::optional<T> cgroup_v2_smallest(const std::string& file, Parse parse) {
  std::ifstream cgroups("/proc/self/cgroup");
  std::string line, path;
  while (std::getline(cgroups, line)) {
    if (line.rfind("0::", 0) == 0) path = line.substr(3);
  }
  if (path.empty()) return std::nullopt;
  std::optional<T> best;
  while (true) {
    std::optional<T> value = parse(read_file("/sys/fs/cgroup" + path + "/" + file));
    if (value && (!best || *value < *best)) best = value;
    if (path == "/" || path.empty()) break;
    path = path.substr(0, path.find_last_of('/'));
    if (path.empty()) path = "/";
  }
  return best;
}

std::optional<double> cgroup_v2_quota() {
  return cgroup_v2_smallest<double>("cpu.max", parse_cpu_max);
}

std::optional<double> cgroup_v1_quota() {
  for (const char* dir : {"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"}) {
    const std::string base = dir;
    auto quota = parse_cfs_quota(read_file(base + "/cpu.cfs_quota_us"),
                                 read_file(base + "/cpu.cfs_period_us"));
    if (quota) return quota;
  }
  return std::nullopt;
}

}  // namespace

std::optional<double> parse_cpu_max(std::string_view content) {
  const size_t space = content.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  auto quota = parse_integer(content.substr(0, space));  // "max" fails: no quota
  auto period = parse_integer(content.substr(space + 1));
  if (!quota || !period || *quota <= 0 || *period <= 0) return std::nullopt;
  return static_cast<double>(*quota) / static_cast<double>(*period);
}

std::optional<double> parse_cfs_quota(std::string_view quota, std::string_view period) {
  auto q = parse_integer(quota);
  auto p = parse_integer(period);
  if (!q || !p || *q <= 0 || *p <= 0) return std::nullopt;
  return static_cast<double>(*q) / static_cast<double>(*p);
}

std::optional<int64_t> parse_memory_limit(std::string_view content) {
  auto bytes = parse_integer(content);
  if (!bytes || *bytes <= 0 || *bytes >= (1LL << 60)) return std::nullopt;
  return static_cast<int64_t>(*bytes);
}

std::optional<int64_t> cgroup_memory_limit() {
  if (auto limit = cgroup_v2_smallest<int64_t>("memory.max", parse_memory_limit)) return limit;
  return parse_memory_limit(read_file("/sys/fs/cgroup/memory/memory.limit_in_bytes"));
}

int64_t resident_bytes() {
  std::ifstream in("/proc/self/statm");
  long long size = 0, resident = 0;
  if (!(in >> size >> resident)) return 0;
  return static_cast<int64_t>(resident) * static_cast<int64_t>(sysconf(_SC_PAGESIZE));
}

double process_cpu_seconds() {
  rusage usage{};
  if (getrusage(RUSAGE_SELF, &usage) != 0) return 0;
  auto seconds = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) * 1e-6;
  };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

int usable_cpus() {
  int cpus = 0;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) cpus = CPU_COUNT(&set);
  if (cpus <= 0) cpus = static_cast<int>(std::max(1L, sysconf(_SC_NPROCESSORS_ONLN)));
  std::optional<double> quota = cgroup_v2_quota();
  if (!quota) quota = cgroup_v1_quota();
  if (quota) cpus = std::min(cpus, static_cast<int>(std::ceil(*quota)));
  return std::max(cpus, 1);
}

}  // namespace tideserve
