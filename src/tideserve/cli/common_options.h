// Options more than one subcommand takes, spelled and checked the same everywhere.
#pragma once

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "tideserve/engine/pooling.h"
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

// --pooling: empty (the default) lets the model directory decide.
inline CLI::Option* add_pooling_option(CLI::App* cmd, std::string& pooling) {
  std::vector<std::string> names(engine::pooling_names().begin(), engine::pooling_names().end());
  names.push_back("last_token");
  return cmd
      ->add_option("--pooling", pooling,
                   "Pooling of the last hidden states: cls, mean, max, mean_sqrt_len_tokens, "
                   "weightedmean or lasttoken (default: what the model directory declares in "
                   "1_Pooling/config.json, else cls)")
      ->check(CLI::IsMember(names));
}

// After the IsMember check above every spelling parses.
inline engine::Precision dtype_precision(const std::string& dtype) {
  return engine::parse_precision(dtype).value_or(engine::Precision::kF32);
}

}  // namespace tideserve::cli
