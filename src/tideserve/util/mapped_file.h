// A read-only memory mapping of a whole file (model weights are mapped, never read into copies).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "tideserve/util/status.h"

namespace tideserve {

class MappedFile {
 public:
  MappedFile() = default;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  ~MappedFile();

  // Maps `path`; an empty file maps to size 0 with a null data pointer.
  static Result<MappedFile> open(const std::string& path);

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // Drops this process's resident pages that lie wholly inside [begin, begin + bytes) (a range
  // within the mapping) from its RSS. The bytes stay readable: a later read maps them again from
  // the page cache or the file. Returns the bytes released (0 for a range outside the mapping).
  size_t release_pages(const void* begin, size_t bytes) const;

 private:
  void reset();

  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

// Reads a whole (small) text file such as config.json.
Result<std::string> read_text_file(const std::string& path);

}  // namespace tideserve
