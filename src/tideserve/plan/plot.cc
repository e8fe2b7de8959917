#include "tideserve/plan/plot.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <limits>

#include <fmt/format.h>

namespace tideserve::plan {
namespace {

// Layout, in pixels. The SVG is kTop + panels * panel_height + kBottom tall.
constexpr double kTop = 40;     // the title
constexpr double kBottom = 46;  // the time axis labels under the last panel
constexpr double kLeft = 76;    // y tick labels and the rotated y label
constexpr double kRight = 24;
constexpr double kHeader = 26;  // per panel: its title and legend above the plot area
constexpr double kGap = 10;     // per panel: space under the plot area
constexpr double kCharW = 7.0;  // estimated width of one 12px character (DejaVu Sans)
constexpr const char* kFont = "DejaVu Sans, Arial, Helvetica, sans-serif";

std::string esc(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    const char* entity = c == '&'    ? "&amp;"
                         : c == '<'  ? "&lt;"
                         : c == '>'  ? "&gt;"
                         : c == '"'  ? "&quot;"
                         : c == '\'' ? "&apos;"
                                     : nullptr;
    if (entity) {
      out += entity;
    } else if (static_cast<unsigned char>(c) >= 0x20 || c == '\t' || c == '\n') {
      out += c;  // other control characters are not allowed in XML 1.0
    }
  }
  return out;
}

// A pixel coordinate: finite, bounded, one decimal.
std::string px(double v) {
  if (!std::isfinite(v)) v = 0;
  return fmt::format("{:.1f}", std::clamp(v, -1e5, 1e5));
}

// A tick label: `step` sets the decimals; big axes get a k/M/G/T suffix; absurd ones "1.5e300".
std::string tick_label(double v, double step, double axis_max) {
  if (std::abs(v) < step * 1e-6) v = 0;
  const double a = std::abs(axis_max);
  if (a >= 1e15 || (a > 0 && a < 1e-6)) {
    if (v == 0) return "0";
    const int e = static_cast<int>(std::floor(std::log10(std::abs(v))));
    return fmt::format("{:.3g}e{}", v / std::pow(10.0, e), e);
  }
  static constexpr struct {
    double scale;
    const char* suffix;
  } kSi[] = {{1e12, "T"}, {1e9, "G"}, {1e6, "M"}, {1e4, "k"}};
  double scale = 1;
  const char* suffix = "";
  for (const auto& si : kSi) {
    if (a >= si.scale) {
      scale = si.scale == 1e4 ? 1e3 : si.scale;
      suffix = si.suffix;
      break;
    }
  }
  const int decimals =
      std::clamp(static_cast<int>(std::ceil(-std::log10(step / scale) - 1e-9)), 0, 6);
  return fmt::format("{:.{}f}{}", v / scale, decimals, suffix);
}

double nice_step(double raw) {
  if (!(raw > 0) || !std::isfinite(raw)) return 1;
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / p;
  return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * p;
}

struct Axis {
  double lo = 0, hi = 1;
  bool log = false;
  std::vector<double> ticks;
  double step = 1;               // linear only: the tick step
  double frac(double v) const {  // 0 at lo, 1 at hi
    return log ? (std::log10(v) - std::log10(lo)) / (std::log10(hi) - std::log10(lo))
               : (v - lo) / (hi - lo);
  }
};

bool usable(double v, bool log) {
  return std::isfinite(v) && (!log || v > 0);
}

// Keeps the axis arithmetic finite (no overflowing ranges, no denormal decades).
double bounded(double v, bool log) {
  return std::clamp(v, log ? 1e-300 : -1e300, 1e300);
}

Axis y_axis(const PlotPanel& panel, double plot_h) {
  Axis axis;
  axis.log = panel.log_y;
  double mn = std::numeric_limits<double>::infinity(), mx = -mn;
  auto take = [&](double v) {
    if (!usable(v, axis.log)) return;
    v = bounded(v, axis.log);
    mn = std::min(mn, v), mx = std::max(mx, v);
  };
  for (const auto& s : panel.series)
    for (double v : s.y) take(v);
  for (const auto& l : panel.lines) take(l.y);
  const bool empty = mn > mx;
  if (axis.log) {
    if (empty) mn = 1, mx = 10;
    int e0 = static_cast<int>(std::floor(std::log10(mn)));
    int e1 = static_cast<int>(std::ceil(std::log10(mx)));
    if (e1 <= e0) ++e1;
    axis.lo = std::pow(10.0, e0), axis.hi = std::pow(10.0, e1);
    const int every = std::max(1, (e1 - e0 + 7) / 8);
    for (int e = e0; e <= e1; e += every) {
      const double d = std::pow(10.0, e);
      axis.ticks.push_back(d);
      if (e1 - e0 <= 2 && e < e1) axis.ticks.insert(axis.ticks.end(), {2 * d, 5 * d});
    }
    return axis;
  }
  if (empty) mn = 0, mx = 1;
  if (mn > 0) mn = 0;  // counts, rates and latencies read best from zero
  if (mx < 0) mx = 0;
  if (mx - mn <= 0) mx = mn + 1;
  if (!empty) mx += 0.04 * (mx - mn);  // headroom: the maximum does not sit on the frame
  const int intervals = std::clamp(static_cast<int>(plot_h / 36), 2, 8);
  axis.step = nice_step((mx - mn) / intervals);
  axis.lo = std::floor(mn / axis.step) * axis.step;
  axis.hi = std::ceil(mx / axis.step) * axis.step;
  if (!(axis.hi > axis.lo) || !std::isfinite(axis.hi - axis.lo)) axis.lo = mn, axis.hi = mx;
  const long n = std::lround((axis.hi - axis.lo) / axis.step);
  for (long i = 0; i <= n && i <= 20; ++i) axis.ticks.push_back(axis.lo + i * axis.step);
  return axis;
}

std::string clock_label(double clock_s) {
  long m = static_cast<long>(std::floor(std::fmod(clock_s, 86400.0) / 60 + 1e-6));
  m = ((m % 1440) + 1440) % 1440;
  return fmt::format("{:02d}:{:02d}", m / 60, m % 60);
}

struct Pt {
  double x, y;
};

// Splits a series at its gaps into runs of pixel points; thins each run to the min and max of
// every pixel column (in time order) when the series has more than two points per pixel.
std::vector<std::vector<Pt>> runs(const PlotSeries& s, const Axis& ya, double t0, double t1,
                                  double left, double plot_w, double top, double plot_h) {
  const size_t n = std::min(s.t_s.size(), s.y.size());
  std::vector<std::vector<Pt>> out(1);
  size_t good = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(s.t_s[i]) || !usable(s.y[i], ya.log)) {
      if (!out.back().empty()) out.emplace_back();
      continue;
    }
    const double x = left + (s.t_s[i] - t0) / (t1 - t0) * plot_w;
    const double y = top + plot_h * (1 - ya.frac(bounded(s.y[i], ya.log)));
    out.back().push_back({x, std::isfinite(y) ? y : top + plot_h});
    ++good;
  }
  if (out.back().empty()) out.pop_back();
  if (good <= 2 * plot_w) return out;
  for (auto& run : out) {
    std::vector<Pt> thin;
    for (size_t i = 0; i < run.size();) {
      const double column = std::floor(run[i].x);
      size_t lo = i, hi = i, j = i;
      for (; j < run.size() && std::floor(run[j].x) == column; ++j) {
        if (run[j].y > run[lo].y) lo = j;  // pixel y grows downwards
        if (run[j].y < run[hi].y) hi = j;
      }
      thin.push_back(run[std::min(lo, hi)]);
      if (lo != hi) thin.push_back(run[std::max(lo, hi)]);
      i = j;
    }
    run = std::move(thin);
  }
  return out;
}

std::string path_data(const std::vector<std::vector<Pt>>& rs, bool step) {
  std::string d;
  for (const auto& run : rs) {
    d += fmt::format("M{} {}", px(run[0].x), px(run[0].y));
    if (run.size() == 1) d += "h0.01";  // a lone point: a dot through the round cap
    for (size_t i = 1; i < run.size(); ++i) {
      if (step) {
        d += fmt::format("H{}V{}", px(run[i].x), px(run[i].y));
      } else {
        d += fmt::format("L{} {}", px(run[i].x), px(run[i].y));
      }
    }
  }
  return d;
}

}  // namespace

std::string render_svg(const std::vector<PlotPanel>& panels, const PlotOptions& options) {
  const double width = std::max(options.width, 240);
  const double panel_h = std::max(options.panel_height, 80);
  const double height = kTop + panel_h * static_cast<double>(panels.size()) + kBottom;
  const double plot_w = width - kLeft - kRight;
  const double plot_h = panel_h - kHeader - kGap;
  const double right = kLeft + plot_w;

  // The shared time range.
  double t0 = std::numeric_limits<double>::infinity(), t1 = -t0;
  for (const auto& p : panels) {
    for (const auto& s : p.series) {
      for (double t : s.t_s) {
        if (std::isfinite(t)) t0 = std::min(t0, t), t1 = std::max(t1, t);
      }
    }
  }
  if (t0 > t1) t0 = 0, t1 = 3600;
  if (t1 - t0 < 1) t1 = t0 + 60;
  const double clock0 = std::isfinite(options.start_clock_s) ? options.start_clock_s : 0;

  // Time ticks on round clock times: the finest step that gives at most ~12 of them.
  static constexpr double kSteps[] = {60,   120,  300,   600,   900,   1200,  1800,
                                      3600, 7200, 10800, 14400, 21600, 43200, 86400};
  const double max_ticks = std::clamp(plot_w / 70, 3.0, 12.0);
  double tstep = kSteps[std::size(kSteps) - 1];
  for (double s : kSteps) {
    if ((t1 - t0) / s + 1 <= max_ticks) {
      tstep = s;
      break;
    }
  }
  while ((t1 - t0) / tstep + 1 > max_ticks) tstep *= 2;
  std::vector<double> tticks;  // in t
  for (double c = std::ceil((clock0 + t0) / tstep - 1e-9) * tstep; c <= clock0 + t1 + 1e-6;
       c += tstep) {
    tticks.push_back(c - clock0);
  }
  auto tx = [&](double t) { return kLeft + (t - t0) / (t1 - t0) * plot_w; };

  std::string o = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" "
      "viewBox=\"0 0 {0} {1}\" font-family=\"{2}\" font-size=\"12\">\n"
      "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n"
      "<text x=\"{3}\" y=\"26\" font-size=\"17\" font-weight=\"bold\" fill=\"#222\">{4}</text>\n",
      px(width), px(height), kFont, px(kLeft), esc(options.title));
  if (panels.empty()) {
    o +=
        fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#888\">no data</text>\n",
                    px(width / 2), px(kTop + 20));
  }

  for (size_t pi = 0; pi < panels.size(); ++pi) {
    const PlotPanel& panel = panels[pi];
    const double top = kHeader;  // the plot area, in the panel's coordinates
    const double bottom = top + plot_h;
    const Axis ya = y_axis(panel, plot_h);
    auto ty = [&](double v) { return bottom - plot_h * ya.frac(v); };
    o +=
        fmt::format("<g class=\"panel\" transform=\"translate(0,{})\">\n", px(kTop + panel_h * pi));
    o += fmt::format(
        "<clipPath id=\"clip{}\"><rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/></clipPath>\n",
        pi, px(kLeft), px(top - 2), px(plot_w), px(plot_h + 4));

    // Grid, ticks and the frame.
    for (double v : ya.ticks) {
      const double y = ty(v);
      o += fmt::format(
          "<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"#e6e6e6\"/>"
          "<text class=\"ytick\" x=\"{3}\" y=\"{4}\" text-anchor=\"end\" "
          "fill=\"#444\">{5}</text>\n",
          px(kLeft), px(y), px(right), px(kLeft - 6), px(y + 4),
          tick_label(v, ya.log ? v : ya.step, ya.log ? v : ya.hi));
    }
    for (double t : tticks) {
      o += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"#eeeeee\"/>\n",
                       px(tx(t)), px(top), px(bottom));
    }
    o += fmt::format(
        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#999\"/>\n",
        px(kLeft), px(top), px(plot_w), px(plot_h));
    o += fmt::format(
        "<text transform=\"translate({},{}) rotate(-90)\" text-anchor=\"middle\" "
        "fill=\"#444\">{}</text>\n",
        px(16), px(top + plot_h / 2), esc(panel.y_label));
    o += fmt::format(
        "<text x=\"{}\" y=\"18\" font-size=\"13\" font-weight=\"bold\" "
        "fill=\"#222\">{}</text>\n",
        px(kLeft), esc(panel.title));

    // Data: one path per series, the reference lines over them.
    o += fmt::format("<g clip-path=\"url(#clip{})\" fill=\"none\">\n", pi);
    bool any = false;
    for (const auto& s : panel.series) {
      const auto rs = runs(s, ya, t0, t1, kLeft, plot_w, top, plot_h);
      any = any || !rs.empty();
      o += fmt::format(
          "<path class=\"series\" d=\"{}\" stroke=\"{}\" stroke-width=\"1.8\" "
          "stroke-linejoin=\"round\" stroke-linecap=\"round\"/>\n",
          path_data(rs, s.step), esc(s.color));
    }
    for (const auto& l : panel.lines) {
      if (!usable(l.y, ya.log)) continue;
      o += fmt::format(
          "<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"{3}\" stroke-width=\"1.5\" "
          "stroke-dasharray=\"7 4\"/>\n",
          px(kLeft), px(ty(bounded(l.y, ya.log))), px(right), esc(l.color));
    }
    o += "</g>\n";
    if (!any) {
      o += fmt::format(
          "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#888\">no data</text>\n",
          px(kLeft + plot_w / 2), px(top + plot_h / 2));
    }

    // Legend, right-aligned in the header: series as solid swatches, lines as dashed ones.
    double lx = right;
    std::string legend;
    auto item = [&](const std::string& label, const std::string& color, bool dashed) {
      lx -= 24 + kCharW * static_cast<double>(label.size());
      legend += fmt::format(
          "<line x1=\"{0}\" y1=\"14\" x2=\"{1}\" y2=\"14\" stroke=\"{2}\" stroke-width=\"2.5\"{3}/>"
          "<text x=\"{4}\" y=\"18\" fill=\"#333\">{5}</text>\n",
          px(lx), px(lx + 18), esc(color), dashed ? " stroke-dasharray=\"5 3\"" : "", px(lx + 22),
          esc(label));
      lx -= 12;
    };
    for (auto it = panel.lines.rbegin(); it != panel.lines.rend(); ++it) {
      item(it->label, it->color, true);
    }
    for (auto it = panel.series.rbegin(); it != panel.series.rend(); ++it) {
      item(it->label, it->color, false);
    }
    o += legend + "</g>\n";
  }

  // The time axis under the last panel.
  if (!panels.empty()) {
    const double axis_y = kTop + panel_h * static_cast<double>(panels.size()) - kGap;
    for (double t : tticks) {
      o += fmt::format(
          "<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"#999\"/>"
          "<text class=\"xtick\" x=\"{0}\" y=\"{3}\" text-anchor=\"middle\" "
          "fill=\"#444\">{4}</text>\n",
          px(tx(t)), px(axis_y), px(axis_y + 5), px(axis_y + 19), clock_label(clock0 + t));
    }
    o += fmt::format(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#666\">time of day (HH:MM)</text>\n",
        px(kLeft + plot_w / 2), px(axis_y + 38));
  }
  o += "</svg>\n";
  return o;
}

}  // namespace tideserve::plan
