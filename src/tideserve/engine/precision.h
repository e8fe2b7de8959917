// The precision the encoder's linear layers run in (engine/linear.h says what each one does).
// A plain enum with no oneDNN in sight, so the server and the CLI can name it.
#pragma once

#include <optional>
#include <string_view>

namespace tideserve::engine {

enum class Precision { kF32, kBf16, kInt8 };

// "float32", "bfloat16", "int8" (the names /info reports).
const char* precision_name(Precision precision);
// Accepts fp32|float32, bf16|bfloat16, int8.
std::optional<Precision> parse_precision(std::string_view name);

}  // namespace tideserve::engine
