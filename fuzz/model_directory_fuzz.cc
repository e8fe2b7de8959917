// A sentence-transformers directory whose modules.json, pooling config, Dense config and prompts
// file come from the fuzzer (split at 0xFF bytes), read by read_model_directory: every problem is
// an error naming a file, never a crash.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string_view>

#include "fuzz_util.h"
#include "tideserve/model/model_directory.h"

namespace fs = std::filesystem;

namespace {

// A copy of the fixture of this process's own, removed at exit.
const fs::path& directory() {
  static const fs::path dir = [] {
    static const fs::path d =
        fs::temp_directory_path() / ("tideserve-fuzz-dir-" + std::to_string(getpid()));
    fs::remove_all(d);
    fs::copy(tideserve::fuzz::source_dir() + "/tests/fixtures/kinds/st_mean_dense_norm", d,
             fs::copy_options::recursive);
    std::atexit([] {
      std::error_code ec;
      fs::remove_all(d, ec);
    });
    return d;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const char* kFiles[] = {"modules.json", "1_Pooling/config.json", "2_Dense/config.json",
                                 "config_sentence_transformers.json", "config.json"};
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  for (const char* name : kFiles) {
    const size_t split = rest.find('\xFF');
    std::ofstream(directory() / name, std::ios::trunc | std::ios::binary) << rest.substr(0, split);
    rest = split == std::string_view::npos ? std::string_view() : rest.substr(split + 1);
  }
  (void)tideserve::read_model_directory(directory().string());
  return 0;
}
