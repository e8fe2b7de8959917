// How many CPUs this process can actually use. In a container the affinity mask usually still
// lists every core of the node while a CPU quota (Kubernetes `limits.cpu`) caps the time: an
// engine sized to the node's cores would oversubscribe the quota and be throttled. So the count
// is the affinity mask's, lowered to the cgroup quota rounded up. Likewise the memory a process
// may use is its cgroup's limit (Kubernetes `limits.memory`), not the node's.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace tideserve {

// The affinity count, capped by the cgroup v2 `cpu.max` (this cgroup and its ancestors) or
// cgroup v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`; at least 1.
int usable_cpus();

// "200000 100000" -> 2.0 CPUs; "max 100000", empty or malformed -> nullopt (no quota).
std::optional<double> parse_cpu_max(std::string_view content);
// cgroup v1: quota "-1" means none; otherwise quota / period.
std::optional<double> parse_cfs_quota(std::string_view quota, std::string_view period);

// The smallest cgroup v2 `memory.max` from this process's cgroup up to the root, else cgroup v1
// `memory.limit_in_bytes`; nullopt when there is no limit.
std::optional<int64_t> cgroup_memory_limit();
// "536870912" -> 512 MiB; "max", empty, malformed, or v1's "no limit" (>= 2^60) -> nullopt.
std::optional<int64_t> parse_memory_limit(std::string_view content);

// The process's resident memory now (/proc/self/statm), in bytes; 0 when unreadable.
int64_t resident_bytes();

// CPU time this process has used so far (user + system, all threads), in seconds.
double process_cpu_seconds();

}  // namespace tideserve
