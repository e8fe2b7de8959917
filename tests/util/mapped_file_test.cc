// MappedFile: mapping, and release_pages() dropping pages from RSS without losing their bytes.
#include "tideserve/util/mapped_file.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace tideserve {
namespace {

// Resident kB of the mapping that starts at `start`, from /proc/self/smaps.
long rss_kb(const void* start) {
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  char prefix[32];
  std::snprintf(prefix, sizeof prefix, "%lx-", reinterpret_cast<unsigned long>(start));
  bool in_vma = false;
  while (std::getline(smaps, line)) {
    if (line.rfind(prefix, 0) == 0) {
      in_vma = true;
    } else if (in_vma && line.rfind("Rss:", 0) == 0) {
      return std::stol(line.substr(4));
    }
  }
  return -1;
}

class MappedFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    page_ = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    path_ = (std::filesystem::temp_directory_path() /
             ("tideserve_mapped_" + std::to_string(getpid()) + ".bin"))
                .string();
    bytes_.resize(8 * page_);
    for (size_t i = 0; i < bytes_.size(); ++i) bytes_[i] = static_cast<char>(i * 31 + 7);
    std::ofstream(path_, std::ios::binary).write(bytes_.data(), bytes_.size());
  }
  void TearDown() override { std::filesystem::remove(path_); }

  size_t page_ = 4096;
  std::string path_;
  std::vector<char> bytes_;
};

TEST_F(MappedFileTest, ReleasePagesDropsWholePagesAndKeepsTheBytes) {
  auto file = MappedFile::open(path_);
  ASSERT_TRUE(file.is_ok()) << file.status().to_string();
  const uint8_t* data = file->data();
  long sum = 0;
  for (size_t i = 0; i < file->size(); i += 64) sum += data[i];  // fault every page in
  EXPECT_GT(sum, 0);
  const long before = rss_kb(data);
  ASSERT_GE(before, static_cast<long>(8 * page_ / 1024)) << "smaps shows the mapping resident";

  // From the middle of page 1 to the middle of page 6: pages 2..5 are wholly inside.
  const size_t released = file->release_pages(data + page_ + 100, 5 * page_);
  EXPECT_EQ(released, 4 * page_);
  EXPECT_EQ(rss_kb(data), before - static_cast<long>(4 * page_ / 1024));
  // Every byte reads back unchanged.
  EXPECT_EQ(std::memcmp(data, bytes_.data(), bytes_.size()), 0);

  // Ranges outside the mapping, or holding no whole page, release nothing.
  EXPECT_EQ(file->release_pages(data + page_ + 1, page_ - 2), 0u);
  EXPECT_EQ(file->release_pages(bytes_.data(), page_), 0u);
  EXPECT_EQ(file->release_pages(data + page_, file->size()), 0u);
}

}  // namespace
}  // namespace tideserve
