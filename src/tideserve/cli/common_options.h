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
                   "activations dynamic), bf16 (CPUs with AVX512) or auto (the fastest this CPU "
                   "runs within its accuracy bound: bf16 on AVX512-BF16/AMX, int8 with VNNI, "
                   "else fp32)")
      ->envname("DTYPE")
      ->check(CLI::IsMember({"fp32", "float32", "bf16", "bfloat16", "int8", "auto"}))
      ->capture_default_str();
}

// --allow-reference-kernels: run a precision even where oneDNN has only its reference kernel.
inline CLI::Option* add_reference_kernels_option(CLI::App* cmd, bool& allow) {
  return cmd->add_flag("--allow-reference-kernels", allow,
                       "Run a linear layer on oneDNN's reference kernel when it is the only one "
                       "for the precision (debugging: thousands of times slower; without it such "
                       "a precision is refused at load)");
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

// After the IsMember check above every spelling parses ("auto": see engine_options).
inline engine::Precision dtype_precision(const std::string& dtype) {
  return engine::parse_precision(dtype).value_or(engine::Precision::kF32);
}

}  // namespace tideserve::cli
