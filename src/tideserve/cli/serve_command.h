#pragma once

#include <CLI/CLI.hpp>

namespace tideserve::cli {

// `tideserve serve`: the HTTP model service. Every flag has an environment variable.
void add_serve_command(CLI::App& app);
// `tideserve worker`: the job worker (batch lines from Redis) with the model flags of serve.
void add_worker_command(CLI::App& app);

// `tideserve healthcheck [--url URL]`: exit 0 when the URL answers 200 (container HEALTHCHECK).
void add_healthcheck_command(CLI::App& app);

}  // namespace tideserve::cli
