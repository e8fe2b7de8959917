#pragma once

#include <CLI/CLI.hpp>

namespace tideserve::cli {

// `tideserve bench --url URL --route ROUTE [--mode closed|open] ...`: the load generator
// (loadgen/load_generator.h) from the command line: a summary table, --json, or --profile (the
// server's capacity profile: throughput and latency against offered load).
void add_bench_command(CLI::App& app);

}  // namespace tideserve::cli
