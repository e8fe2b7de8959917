#include "tideserve/cli/bench_command.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "tideserve/cli/cli_error.h"
#include "tideserve/loadgen/load_generator.h"
#include "tideserve/util/log.h"
#include "tideserve/util/mapped_file.h"

namespace tideserve::cli {

namespace {

struct BenchArgs {
  std::string url = "http://127.0.0.1:8000";
  std::string route = "/embed";
  std::string texts_file;
  std::string bodies_file;
  std::string model;
  std::string api_key;
  int batch = 1;
  std::string mode = "closed";
  std::string arrival = "poisson";
  std::string schedule_file;
  loadgen::LoadOptions load;
  std::string json_out;
  std::string samples_out;
  std::string profile_out;
  double slo_p99_ms = 250;
  double profile_start_rate = 5;
  double profile_step = 1.5;
  double profile_step_seconds = 10;
  int profile_max_steps = 20;
  bool quiet = false;
};

const std::vector<std::string>& default_texts() {
  static const std::vector<std::string> texts = {
      "今天天气很好，我们去公园散步吧",
      "the quick brown fox jumps over the lazy dog",
      "模型服务需要在流量高峰时自动扩容",
      "how many replicas does this service need at nine in the morning?",
      "这家餐厅的菜很好吃，价格也不贵",
      "a batch of embeddings for the search index, computed overnight",
      "深度学习模型的推理延迟和吞吐量",
      "tidal traffic: two peaks a day and a quiet night",
  };
  return texts;
}

std::string json_string(const std::string& s) {
  std::string out;
  append_json_string(out, s);
  return out;
}

// The non-empty lines of `path`; `what` names one in the error for a file without any.
Result<std::vector<std::string>> read_lines(const std::string& path, const char* what) {
  std::ifstream in(path);
  if (!in) return not_found(path + ": cannot be read");
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) lines.push_back(line);
  }
  if (lines.empty()) return invalid_argument(path + ": no " + what + " (one per line)");
  return lines;
}

// The request bodies for the route, one per text (or per --batch texts).
Result<std::vector<std::string>> make_bodies(const BenchArgs& a) {
  if (!a.bodies_file.empty()) return read_lines(a.bodies_file, "JSON body");
  std::vector<std::string> texts = default_texts();
  if (!a.texts_file.empty()) {
    auto lines = read_lines(a.texts_file, "text");
    if (!lines.is_ok()) return lines.status();
    texts = std::move(lines).value();
  }
  std::vector<std::string> bodies;
  const std::string model = a.model.empty() ? "" : json_string(a.model);
  for (size_t i = 0; i < texts.size(); ++i) {
    std::string list;
    for (int b = 0; b < a.batch; ++b) {
      list += (b ? "," : "") + json_string(texts[(i + static_cast<size_t>(b)) % texts.size()]);
    }
    if (a.route == "/predict") {
      bodies.push_back("{\"text\":" + json_string(texts[i]) + "}");
    } else if (a.route == "/embed") {
      bodies.push_back("{\"inputs\":[" + list + "]}");
    } else if (a.route == "/v1/embeddings") {
      bodies.push_back("{\"input\":[" + list + "]" + (model.empty() ? "" : ",\"model\":" + model) +
                       "}");
    } else if (a.route.rfind("/v2/models/", 0) == 0) {
      bodies.push_back(
          fmt::format("{{\"inputs\":[{{\"name\":\"text\",\"shape\":[{}],\"datatype\":\"BYTES\","
                      "\"data\":[{}]}}]}}",
                      a.batch, list));
    } else {
      return invalid_argument("no body template for " + a.route +
                              " (/predict, /embed, /v1/embeddings, /v2/models/{name}/infer): "
                              "give --bodies FILE");
    }
  }
  return bodies;
}

void write_summary_json(std::string& out, const loadgen::Summary& s) {
  out += fmt::format(
      "\"requests\":{},\"ok\":{},\"errors\":{},\"throughput\":{:.3f},\"p50_ms\":{:.3f},"
      "\"p90_ms\":{:.3f},\"p99_ms\":{:.3f},\"p999_ms\":{:.3f},\"max_ms\":{:.3f},\"mean_ms\":{:.3f},"
      "\"lag_p50_ms\":{:.3f},\"lag_p99_ms\":{:.3f},\"lag_max_ms\":{:.3f},\"by_status\":{{",
      s.requests, s.ok, s.errors, s.throughput, s.p50_ms, s.p90_ms, s.p99_ms, s.p999_ms, s.max_ms,
      s.mean_ms, s.lag_p50_ms, s.lag_p99_ms, s.lag_max_ms);
  for (size_t i = 0; i < s.by_status.size(); ++i) {
    out += fmt::format("{}\"{}\":{}", i ? "," : "", s.by_status[i].first, s.by_status[i].second);
  }
  out += "}";
}

// The sum of a metric family's samples in an exposition ("name" or "name{...}").
double metric_sum(const std::string& text, const std::string& name) {
  double total = 0;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(name, 0) != 0) continue;
    const char next = line.size() > name.size() ? line[name.size()] : '\0';
    if (next != ' ' && next != '{') continue;
    try {
      total += std::stod(line.substr(line.rfind(' ') + 1));
    } catch (const std::exception&) {
    }
  }
  return total;
}

// A JSON number with `decimals`, or null for NaN (not measured).
std::string optional_number(double v, int decimals) {
  return std::isnan(v) ? "null" : fmt::format("{:.{}f}", v, decimals);
}

// The generator fell behind its own schedule: its figures describe it, not the server.
bool lagging(const loadgen::Summary& s) {
  return s.lag_p99_ms > 5 && s.lag_p99_ms > 0.05 * s.p99_ms;
}

int run_bench(BenchArgs& a) {
  auto target = loadgen::parse_url(a.url);
  if (!target.is_ok()) return fail(target.status());
  target->path = a.route;
  if (!a.api_key.empty()) target->headers.emplace_back("Authorization", "Bearer " + a.api_key);
  if (!a.model.empty() && a.route.rfind("/v2/", 0) != 0) {
    target->headers.emplace_back("x-model", a.model);
  }
  auto bodies = make_bodies(a);
  if (!bodies.is_ok()) return fail(bodies.status());
  target->bodies = std::move(bodies).value();
  a.load.mode = a.mode == "open" ? loadgen::Mode::kOpen : loadgen::Mode::kClosed;
  a.load.arrival =
      a.arrival == "constant" ? loadgen::Arrival::kConstant : loadgen::Arrival::kPoisson;
  if (!a.schedule_file.empty()) {
    auto text = read_text_file(a.schedule_file);
    if (!text.is_ok()) return fail(text.status());
    auto schedule = loadgen::parse_rate_schedule(*text);
    if (!schedule.is_ok()) return fail(schedule.status());
    a.load.schedule = std::move(schedule).value();
    a.load.mode = loadgen::Mode::kOpen;
  }
  const bool tty = !a.quiet && isatty(STDERR_FILENO) == 1;
  auto progress = [tty](const loadgen::Progress& p) {
    if (!tty) return;
    std::fprintf(stderr,
                 "\r%6.1f s  %8lld done  %7.1f req/s  p50 %7.1f ms  p99 %7.1f ms  %lld errors ",
                 p.elapsed_s, static_cast<long long>(p.done),
                 p.elapsed_s > 0 ? static_cast<double>(p.done) / p.elapsed_s : 0.0, p.p50_ms,
                 p.p99_ms, static_cast<long long>(p.errors));
    std::fflush(stderr);
  };

  if (!a.profile_out.empty()) {
    // The capacity profile: open-loop Poisson steps of growing rate until p99 passes the SLO,
    // errors pass 1 %, or the server no longer keeps up (goodput, the 2xx answers completed within
    // the step, < 90 % of offered).
    std::string json = fmt::format("{{\"url\":{},\"route\":{},\"slo_p99_ms\":{},\"steps\":[",
                                   json_string(a.url), json_string(a.route), a.slo_p99_ms);
    double rate = a.profile_start_rate, capacity = 0;
    fmt::print(
        "| offered req/s | throughput | p50 ms | p90 ms | p99 ms | errors | mean batch | "
        "generator lag p99 ms |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for (int step = 0; step < a.profile_max_steps; ++step, rate *= a.profile_step) {
      loadgen::LoadOptions o = a.load;
      o.mode = loadgen::Mode::kOpen;
      o.arrival = loadgen::Arrival::kPoisson;
      o.schedule.clear();
      o.rate = rate;
      o.duration_s = a.profile_step_seconds;
      o.warmup_s = std::min(2.0, a.profile_step_seconds / 5);
      o.seed = a.load.seed + static_cast<uint64_t>(step);
      o.concurrency = std::max(a.load.concurrency, 64);
      auto before = loadgen::http_get(*target, "/metrics");
      const auto started = std::chrono::steady_clock::now();
      auto r = loadgen::run_load(*target, o, progress);
      if (tty) std::fprintf(stderr, "\n");
      if (!r.is_ok()) return fail(r.status());
      auto after = loadgen::http_get(*target, "/metrics");
      const double wall_s =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      // The server's CPU in use (cores) over the step, warm-up included, and its resident memory:
      // what a CPU- or memory-Utilization HPA target sees of a replica at this load.
      double mean_batch = std::nan(""), cpu_cores = std::nan(""), memory_bytes = std::nan("");
      if (before.is_ok() && after.is_ok()) {
        const double cpu = metric_sum(after->body, "process_cpu_seconds_total") -
                           metric_sum(before->body, "process_cpu_seconds_total");
        if (cpu > 0 && wall_s > 0) cpu_cores = cpu / wall_s;
        const double rss = metric_sum(after->body, "process_resident_memory_bytes");
        if (rss > 0) memory_bytes = rss;
        const double batches = metric_sum(after->body, "tideserve_batch_size_count") -
                               metric_sum(before->body, "tideserve_batch_size_count");
        const double seqs = metric_sum(after->body, "tideserve_batch_size_sum") -
                            metric_sum(before->body, "tideserve_batch_size_sum");
        if (batches > 0) mean_batch = seqs / batches;
      }
      const loadgen::Summary s = loadgen::summarize(r->samples, r->duration_s);
      const double error_ratio =
          s.requests > 0 ? static_cast<double>(s.errors) / static_cast<double>(s.requests) : 1;
      // Goodput: the 2xx answers that completed within the measured window, per second. What
      // the server sustained; `throughput` also counts 429s and the answers that drained after.
      int64_t good = 0;
      const double window_end = o.warmup_s + r->duration_s;
      for (const loadgen::Sample& x : r->samples) {
        if (x.status >= 200 && x.status < 300 &&
            x.scheduled_s + x.latency_ms / 1000 <= window_end) {
          ++good;
        }
      }
      const double goodput = r->duration_s > 0 ? static_cast<double>(good) / r->duration_s : 0;
      const bool within = s.p99_ms <= a.slo_p99_ms && error_ratio <= 0.01 &&
                          goodput >= 0.9 * r->offered_rate && r->not_sent == 0;
      fmt::print("| {:.1f} | {:.1f} | {:.1f} | {:.1f} | {:.1f} | {} | {:.2f} | {:.2f} |\n",
                 r->offered_rate, s.throughput, s.p50_ms, s.p90_ms, s.p99_ms, s.errors, mean_batch,
                 s.lag_p99_ms);
      std::fflush(stdout);
      json += fmt::format(
          "{}{{\"offered_rate\":{:.3f},\"within_slo\":{},\"not_sent\":{},"
          "\"goodput\":{:.3f},\"mean_batch_size\":{},\"cpu_cores\":{},\"memory_bytes\":{},",
          step ? "," : "", r->offered_rate, within ? "true" : "false", r->not_sent, goodput,
          optional_number(mean_batch, 3), optional_number(cpu_cores, 3),
          optional_number(memory_bytes, 0));
      write_summary_json(json, s);
      json += "}";
      if (lagging(s)) {
        std::fprintf(stderr,
                     "tideserve bench: the generator lagged its schedule (p99 %.1f ms) at "
                     "%.1f req/s: give it --threads\n",
                     s.lag_p99_ms, r->offered_rate);
      }
      if (!within) break;
      capacity = goodput;
    }
    json += fmt::format("],\"capacity_rps\":{:.3f}}}\n", capacity);
    std::ofstream(a.profile_out) << json;
    fmt::print("capacity within p99 <= {} ms: {:.1f} req/s (profile: {})\n", a.slo_p99_ms, capacity,
               a.profile_out);
    return 0;
  }

  auto result = loadgen::run_load(*target, a.load, progress);
  if (tty) std::fprintf(stderr, "\n");
  if (!result.is_ok()) return fail(result.status());
  const loadgen::Summary s = loadgen::summarize(result->samples, result->duration_s);
  const bool open = a.load.mode == loadgen::Mode::kOpen;
  fmt::print(
      "| route | mode | requests | throughput req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | "
      "max ms | errors |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
  fmt::print("| {} | {} | {} | {:.1f} | {:.2f} | {:.2f} | {:.2f} | {:.2f} | {:.2f} | {} |\n",
             a.route,
             open ? fmt::format("open {:.1f} req/s offered", result->offered_rate)
                  : fmt::format("closed, {} clients", a.load.concurrency),
             s.requests, s.throughput, s.p50_ms, s.p90_ms, s.p99_ms, s.p999_ms, s.max_ms, s.errors);
  std::string statuses;
  for (const auto& [status, count] : s.by_status) {
    statuses += fmt::format("{}{}: {}", statuses.empty() ? "" : ", ",
                            status == 0 ? "no answer" : std::to_string(status), count);
  }
  fmt::print("statuses: {}\n", statuses.empty() ? "none" : statuses);
  if (open) {
    fmt::print(
        "generator lag behind its schedule: p50 {:.2f} ms, p99 {:.2f} ms, max {:.2f} ms; "
        "not sent at the end: {}\n",
        s.lag_p50_ms, s.lag_p99_ms, s.lag_max_ms, result->not_sent);
    if (lagging(s) || result->not_sent > 0) {
      std::fprintf(stderr,
                   "tideserve bench: warning: the generator fell behind its schedule (lag p99 "
                   "%.1f ms, %lld not sent): the server is saturated or the generator needs "
                   "--threads / --concurrency\n",
                   s.lag_p99_ms, static_cast<long long>(result->not_sent));
    }
  }
  if (!a.samples_out.empty()) {
    // Every request of the measured window: what per-window percentiles are computed from.
    std::ofstream out(a.samples_out);
    out << "scheduled_s,sent_s,latency_ms,status\n";
    for (const loadgen::Sample& x : result->samples) {
      out << fmt::format("{:.6f},{:.6f},{:.3f},{}\n", x.scheduled_s, x.sent_s, x.latency_ms,
                         x.status);
    }
  }
  if (!a.json_out.empty()) {
    std::string json = fmt::format(
        "{{\"url\":{},\"route\":{},\"mode\":\"{}\",\"concurrency\":{},\"duration_s\":{},"
        "\"offered_rate\":{:.3f},\"not_sent\":{},",
        json_string(a.url), json_string(a.route), open ? "open" : "closed", a.load.concurrency,
        result->duration_s, result->offered_rate, result->not_sent);
    write_summary_json(json, s);
    json += "}\n";
    std::ofstream(a.json_out) << json;
  }
  return 0;
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  CLI::App* cmd = app.add_subcommand(
      "bench",
      "Load a tideserve (or compatible) endpoint: closed loop (N clients back to back) or open "
      "loop (Poisson or even arrivals at a rate or a rate schedule); prints a summary, writes "
      "JSON, or steps the rate up for a capacity profile (--profile)");
  cmd->add_option("--url", a->url, "Server base URL")->capture_default_str();
  cmd->add_option("--route", a->route,
                  "/predict, /embed, /v1/embeddings or /v2/models/{name}/infer (bodies made from "
                  "the texts), or any route with --bodies")
      ->capture_default_str();
  cmd->add_option("--texts", a->texts_file, "File of texts, one per line (default: built-in)");
  cmd->add_option("--bodies", a->bodies_file,
                  "File of request bodies, one JSON per line, sent in turn (instead of --texts)");
  cmd->add_option("--batch", a->batch, "Texts per request")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  cmd->add_option("--model", a->model, "Model the requests name (OpenAI model, x-model header)");
  cmd->add_option("--api-key", a->api_key, "Bearer key")->envname("API_KEY");
  cmd->add_option("--mode", a->mode, "closed or open")
      ->check(CLI::IsMember({"closed", "open"}))
      ->capture_default_str();
  cmd->add_option("--concurrency,-c", a->load.concurrency,
                  "closed: clients; open: connections at most")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  cmd->add_option("--rate", a->load.rate, "open: requests per second")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--arrival", a->arrival, "open: poisson or constant")
      ->check(CLI::IsMember({"poisson", "constant"}))
      ->capture_default_str();
  cmd->add_option("--schedule", a->schedule_file,
                  "open: a rate schedule, CSV lines 'seconds,requests_per_second' (a header "
                  "line allowed), the rate holding until the next line")
      ->check(CLI::ExistingFile);
  cmd->add_option("--duration", a->load.duration_s, "Measured seconds")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--warmup", a->load.warmup_s, "Seconds run first and not measured")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--threads", a->load.threads, "Generator threads (each its share of the load)")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  cmd->add_option("--seed", a->load.seed, "Seed of the Poisson arrivals")->capture_default_str();
  cmd->add_option("--timeout", a->load.timeout_s, "Seconds per request before it counts as failed")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--json", a->json_out, "Write the summary as JSON to this file");
  cmd->add_option("--samples", a->samples_out,
                  "Write every measured request as CSV: scheduled_s,sent_s,latency_ms,status "
                  "(seconds from the start, warm-up included; status 0: no answer)");
  cmd->add_option("--profile", a->profile_out,
                  "Capacity profile: open-loop steps from --profile-start-rate, x --profile-step "
                  "each, until p99 > --slo-p99-ms, errors > 1% or goodput (2xx completed within "
                  "the step) < 90% of offered; "
                  "the steps (with the mean batch size from /metrics) as JSON to this file");
  cmd->add_option("--slo-p99-ms", a->slo_p99_ms, "The p99 the profile holds to")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--profile-start-rate", a->profile_start_rate, "First step's requests/s")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--profile-step", a->profile_step, "Rate factor between steps")
      ->check(CLI::Range(1.05, 10.0))
      ->capture_default_str();
  cmd->add_option("--profile-step-seconds", a->profile_step_seconds, "Seconds per step")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--profile-max-steps", a->profile_max_steps, "Steps at most")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  cmd->add_flag("--quiet,-q", a->quiet, "No live progress line (none either when not a TTY)");
  cmd->callback([a]() { throw CLI::RuntimeError(run_bench(*a)); });
}

}  // namespace tideserve::cli
