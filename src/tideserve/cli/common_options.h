// Options more than one subcommand takes, spelled and checked the same everywhere.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "tideserve/engine/precision.h"

namespace tideserve::cli {

inline CLI::Option* add_dtype_option(CLI::App* cmd, std::string& dtype) {
  return cmd
      ->add_option("--dtype", dtype,
                   "Precision of the encoder's linear layers: fp32, int8 (weights per row, "
                   "activations dynamic) or bf16 (CPUs with AVX512)")
      ->envname("DTYPE")
      ->check(CLI::IsMember({"fp32", "float32", "bf16", "bfloat16", "int8"}))
      ->capture_default_str();
}

// After the IsMember check above every spelling parses.
inline engine::Precision dtype_precision(const std::string& dtype) {
  return engine::parse_precision(dtype).value_or(engine::Precision::kF32);
}

}  // namespace tideserve::cli
