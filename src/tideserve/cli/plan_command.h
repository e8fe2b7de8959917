#pragma once

#include <CLI/CLI.hpp>

namespace tideserve::cli {

// `tideserve plan --manifests ... --profile PROFILE [--trace CSV] [--svg OUT] [--recommend]`:
// the HPA or KEDA ScaledObject replayed against traffic (plan/simulator.h); `tideserve plan
// controller --manifests ... --metrics CSV`: the controller alone on metric values.
void add_plan_command(CLI::App& app);

}  // namespace tideserve::cli
