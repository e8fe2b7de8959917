// An SVG a person can read: panels stacked on one shared time axis (traffic, replicas, p99),
// each with its series, a y axis with round ticks, optional horizontal reference lines (the
// SLO) and a legend; the time axis in hours and minutes of the replay's clock.
#pragma once

#include <string>
#include <vector>

namespace tideserve::plan {

struct PlotSeries {
  std::string label;
  std::vector<double> t_s;  // seconds from the start (same length as y)
  std::vector<double> y;    // NaN: a gap
  std::string color = "#1f77b4";
  bool step = false;  // a step line (replica counts) instead of straight segments
};

struct PlotLine {
  std::string label;
  double y = 0;
  std::string color = "#d62728";
};

struct PlotPanel {
  std::string title;
  std::string y_label;
  std::vector<PlotSeries> series;
  std::vector<PlotLine> lines;
  bool log_y = false;
};

struct PlotOptions {
  std::string title;
  int width = 1200;
  int panel_height = 220;
  double start_clock_s = 0;  // seconds after midnight at t = 0 (for the time axis labels)
};

std::string render_svg(const std::vector<PlotPanel>& panels, const PlotOptions& options);

}  // namespace tideserve::plan
