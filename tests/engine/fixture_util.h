// Loads a fixture model directory and its golden.safetensors (written by
// tools/make_fixture_model.py from an independent torch reference).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "tideserve/model/safetensors.h"

namespace tideserve::testing {

inline std::string source_dir() {
  const char* env = std::getenv("TIDESERVE_SOURCE_DIR");
  return env != nullptr ? env : TIDESERVE_SOURCE_DIR;
}

inline std::string fixture_models_dir() {
  return source_dir() + "/tests/fixtures/models";
}

inline std::vector<std::string> fixture_model_names() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(fixture_models_dir(), ec)) {
    if (std::filesystem::exists(entry.path() / "golden.safetensors")) {
      names.push_back(entry.path().filename().string());
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

inline std::vector<int32_t> read_i64_as_i32(const SafetensorsFile& file, const std::string& name) {
  const TensorView* t = file.find(name);
  EXPECT_NE(t, nullptr) << "golden has no tensor " << name;
  if (t == nullptr) return {};
  EXPECT_EQ(t->dtype, DType::kI64);
  std::vector<int32_t> out(static_cast<size_t>(t->numel()));
  for (size_t i = 0; i < out.size(); ++i) {
    int64_t v;
    std::memcpy(&v, t->data + i * 8, 8);
    out[i] = static_cast<int32_t>(v);
  }
  return out;
}

inline std::vector<float> read_f32(const SafetensorsFile& file, const std::string& name) {
  const TensorView* t = file.find(name);
  EXPECT_NE(t, nullptr) << "golden has no tensor " << name;
  if (t == nullptr) return {};
  std::vector<float> out;
  EXPECT_TRUE(convert_to_f32(*t, out).is_ok());
  return out;
}

inline double max_abs_diff(const float* a, const float* b, size_t n) {
  double m = 0.0;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(double{a[i]} - double{b[i]}));
  return m;
}

inline double cosine(const float* a, const float* b, size_t n) {
  double dot = 0.0, na = 0.0, nb = 0.0;
  for (size_t i = 0; i < n; ++i) {
    dot += double{a[i]} * b[i];
    na += double{a[i]} * a[i];
    nb += double{b[i]} * b[i];
  }
  return dot / std::sqrt(na * nb);
}

}  // namespace tideserve::testing
