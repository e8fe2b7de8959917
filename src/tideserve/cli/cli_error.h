#pragma once

#include <cstdio>

#include "tideserve/util/status.h"

namespace tideserve::cli {

// Prints one line "tideserve: error: ..." to stderr and returns the exit code for it.
inline int fail(const Status& status) {
  std::fprintf(stderr, "tideserve: error: %s\n", status.message().c_str());
  return 1;
}

}  // namespace tideserve::cli
