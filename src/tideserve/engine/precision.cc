#include "tideserve/engine/precision.h"

namespace tideserve::engine {

const char* precision_name(Precision precision) {
  switch (precision) {
    case Precision::kBf16:
      return "bfloat16";
    case Precision::kInt8:
      return "int8";
    case Precision::kF32:
      break;
  }
  return "float32";
}

std::optional<Precision> parse_precision(std::string_view name) {
  if (name == "fp32" || name == "float32") return Precision::kF32;
  if (name == "bf16" || name == "bfloat16") return Precision::kBf16;
  if (name == "int8") return Precision::kInt8;
  return std::nullopt;
}

}  // namespace tideserve::engine
