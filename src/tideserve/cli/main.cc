// tideserve: one binary, several subcommands.
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>

#include "tideserve/cli/bench_command.h"
#include "tideserve/cli/embed_command.h"
#include "tideserve/cli/plan_command.h"
#include "tideserve/cli/serve_command.h"
#include "tideserve/cli/tokenize_command.h"
#include "tideserve/util/version.h"

int main(int argc, char** argv) {
  CLI::App app{"tideserve: a model server for transformer encoders (BERT family)", "tideserve"};
  app.require_subcommand(0, 1);
  app.set_version_flag("--version", tideserve::kVersion);
  tideserve::cli::add_serve_command(app);
  tideserve::cli::add_worker_command(app);
  tideserve::cli::add_embed_command(app);
  tideserve::cli::add_tokenize_command(app);
  tideserve::cli::add_healthcheck_command(app);
  tideserve::cli::add_bench_command(app);
  tideserve::cli::add_plan_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::RuntimeError& e) {
    return e.get_exit_code();  // a subcommand ran; its exit code
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "tideserve: error: %s (see --help)\n", e.what());
    return 2;
  }
  // No subcommand: say what there is to run.
  std::fprintf(stderr, "tideserve: error: a subcommand is required (see --help)\n");
  return 2;
}
