// What the fuzz targets share: the source tree, and a scratch file in memory-backed /dev/shm for
// the readers that take a path.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace tideserve::fuzz {

inline std::string source_dir() {
  const char* env = std::getenv("TIDESERVE_SOURCE_DIR");
  return env != nullptr ? env : TIDESERVE_SOURCE_DIR;
}

// A path of this process's own, with `data` written to it (removed when the process exits).
inline std::string scratch_file(const std::string& name, const uint8_t* data, size_t size) {
  static const std::string path = [&] {
    const std::string dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    static std::string p = dir + "/tideserve-fuzz-" + std::to_string(getpid()) + "-" + name;
    std::atexit([] { std::remove(p.c_str()); });
    return p;
  }();
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return path;
}

}  // namespace tideserve::fuzz
