// `tideserve serve`: the lifecycle of the HTTP model service.
//
//   bind -> not ready (503 with a reason) -> load the models (the model repository: mapped,
//   warmed up) -> ready -> the repository loads, swaps and unloads versions as its model control
//   says (SIGHUP: rescan)
//   SIGTERM/SIGINT -> not ready at once -> keep answering for drain_delay (endpoint removal
//   race) -> close the listener -> finish every admitted request -> exit 0 within
//   shutdown_timeout.
// With --redis the batch API answers from Redis; with --jobs (and as `tideserve worker`) the job
// worker consumes the models' job streams too, and on SIGTERM stops reading and finishes the
// lines it holds before the models drain.
#pragma once

#include "tideserve/jobs/batch_store.h"
#include "tideserve/runtime/model_instance.h"
#include "tideserve/runtime/model_repository.h"
#include "tideserve/server/api.h"
#include "tideserve/server/http_server.h"

namespace tideserve::server {

struct LifecycleOptions {
  double drain_delay_s = 5;
  double shutdown_timeout_s = 30;
};

// Options nested by layer; each default is defined once, in its layer's struct.
struct ServeOptions {
  // Every model's options: engine, scheduler, task pool, pooling, limits; with no repository
  // root also the one model's directory, name and version.
  runtime::ModelOptions model;
  // root, model control, poll interval, memory limit, default model (its `defaults` are `model`)
  runtime::RepositoryOptions repository;
  HttpOptions http;
  ApiOptions api;  // model_id and model_version are filled from `model`; api.worker: a worker
  // The batch API and the job worker: on with jobs.redis_url; the worker with jobs.consume.
  jobs::JobsOptions jobs;
  int io_threads = 1;
  LifecycleOptions lifecycle;
};

// Runs until a signal ends it; returns the process exit code (0 after a clean drain).
int serve(const ServeOptions& options);

}  // namespace tideserve::server
