#include "tideserve/engine/precision.h"

#include <utility>  // must precede oneDNN headers under C++20 with g++ 12

#include <oneapi/dnnl/dnnl.hpp>

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

const char* cpu_isa_name() {
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::sse41:
      return "sse41";
    case dnnl::cpu_isa::avx:
      return "avx";
    case dnnl::cpu_isa::avx2:
      return "avx2";
    case dnnl::cpu_isa::avx2_vnni:
      return "avx2_vnni";
    case dnnl::cpu_isa::avx512_mic:
      return "avx512_mic";
    case dnnl::cpu_isa::avx512_mic_4ops:
      return "avx512_mic_4ops";
    case dnnl::cpu_isa::avx512_core:
      return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni:
      return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16:
      return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx:
      return "avx512_core_amx";
    default:
      break;
  }
  return "unknown";
}

std::vector<Precision> auto_precisions() {
  const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
  std::vector<Precision> out;
  if (isa == dnnl::cpu_isa::avx512_core_bf16 || isa == dnnl::cpu_isa::avx512_core_amx) {
    out.push_back(Precision::kBf16);
  }
  if (isa == dnnl::cpu_isa::avx2_vnni || isa == dnnl::cpu_isa::avx512_core_vnni ||
      isa == dnnl::cpu_isa::avx512_core_bf16 || isa == dnnl::cpu_isa::avx512_core_amx) {
    out.push_back(Precision::kInt8);
  }
  out.push_back(Precision::kF32);
  return out;
}

}  // namespace tideserve::engine
