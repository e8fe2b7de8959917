#pragma once

#include <CLI/CLI.hpp>

namespace tideserve::cli {

// `tideserve tokenize --model DIR [--pair TEXT_B] [--max-length N] TEXT...`: tokenizes each text
// (with the same pair, if given) and prints one JSON object per text: ids, type_ids, tokens,
// offsets (code points) and byte_offsets.
void add_tokenize_command(CLI::App& app);

}  // namespace tideserve::cli
