// The precision the encoder's linear layers run in (engine/linear.h says what each one does).
// No oneDNN in this header, so the server and the CLI can name these.
#pragma once

#include <optional>
#include <string_view>
#include <vector>

namespace tideserve::engine {

enum class Precision { kF32, kBf16, kInt8 };

// Which GEMM an fp32 layer runs: the faster of oneDNN's (weights in place) and tideserve's packed
// one (weights copied; AVX2 + FMA only), measured per shape at load, or one of them (benchmarks
// and tests; kPacked is refused on CPUs without AVX2 and FMA).
enum class Fp32Kernel { kFastest, kOneDnn, kPacked };

// "float32", "bfloat16", "int8" (the names /info reports).
const char* precision_name(Precision precision);
// Accepts fp32|float32, bf16|bfloat16, int8.
std::optional<Precision> parse_precision(std::string_view name);

// The instruction set oneDNN dispatches to on this CPU, e.g. "avx2", "avx512_core_vnni": what
// decides which precisions run, and how fast.
const char* cpu_isa_name();

// --dtype auto: the precisions to try on this CPU, fastest first, each within its accuracy bound
// (engine tests): bf16 where oneDNN dispatches AVX512-BF16 or AMX, int8 (8-bit weights) where it
// has VNNI (AVX-VNNI, AVX512-VNNI), then fp32. The encoder takes the first whose every layer gets
// an optimized kernel.
std::vector<Precision> auto_precisions();

}  // namespace tideserve::engine
