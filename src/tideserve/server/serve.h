// `tideserve serve`: the lifecycle of the HTTP model service.
//
//   bind -> not ready (503 with a reason) -> load the model (mapped) -> warm up -> ready
//   SIGTERM/SIGINT -> not ready at once -> keep answering for drain_delay (endpoint removal
//   race) -> close the listener -> finish every admitted request -> exit 0 within
//   shutdown_timeout.
#pragma once

#include <cstdint>
#include <string>

#include "tideserve/engine/pooling.h"
#include "tideserve/engine/precision.h"
#include "tideserve/util/log.h"

namespace tideserve::server {

struct ServeOptions {
  std::string model_dir;
  std::string model_id;  // default: the directory's name
  std::string model_version = "1";
  std::string host = "0.0.0.0";
  int port = 8000;
  int io_threads = 1;
  int engine_threads = 0;  // 0 = usable_cpus()
  engine::Precision precision = engine::Precision::kF32;
  engine::Pooling pooling = engine::Pooling::kCls;
  int64_t max_concurrent_requests = 512;
  int64_t max_client_batch_size = 32;
  int64_t max_input_length = 0;     // 0 = the model's max_position_embeddings
  int64_t max_batch_tokens = 2048;  // see README: a CPU batch should stay short
  int64_t max_batch_requests = 256;
  int64_t batch_wait_us = 0;
  std::string api_key;
  int64_t payload_limit = 2 * 1024 * 1024;
  int header_timeout_s = 10;
  int idle_timeout_s = 60;
  int64_t max_requests_per_connection = 1000;
  double drain_delay_s = 5;
  double shutdown_timeout_s = 30;
  bool warm_up = true;
};

// Runs until a signal ends it; returns the process exit code (0 after a clean drain).
int serve(const ServeOptions& options);

}  // namespace tideserve::server
