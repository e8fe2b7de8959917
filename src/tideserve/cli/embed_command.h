#pragma once

#include <CLI/CLI.hpp>

namespace tideserve::cli {

// `tideserve embed`: embeds texts (or token id lists with --ids) and prints one JSON array each.
void add_embed_command(CLI::App& app);

}  // namespace tideserve::cli
